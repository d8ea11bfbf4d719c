"""A unit weighs at the pavement temperature its probe reads: the probe a real pymodbus
server on 127.0.0.1 (the twin), the vehicles rendered by the simulator and weighed by the
unit's own signal loop through its sample-reading path. When the probe's reading goes
stale, the unit falls back to its setting and says so once."""

import logging
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from drivers.temperature import TemperatureProbeSettings
from edge.settings import EdgeSettings
from edge.unit import RoadsideUnit
from sim.render import render
from sim.temperature_twin import TemperatureTwin
from sim.traffic import Dynamics, VehicleTruth
from zhichao.errors import ConfigError

PROBE = {"kind": "temperature", "poll_interval_s": 0.02, "timeout_s": 0.3,
         "stale_after_s": 0.5}


def wait_for(predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.01)
    return predicate()


@pytest.fixture
def twin() -> Iterator[TemperatureTwin]:
    t = TemperatureTwin(TemperatureProbeSettings(url="tcp://127.0.0.1:1502"))
    t.set_value(31.5)
    t.start()
    yield t
    t.close()


def unit_with_probe(twin: TemperatureTwin, tmp_path, fixed_c: float | None = 12.0
                    ) -> RoadsideUnit:
    settings = EdgeSettings.model_validate({
        "plates": {"workers": 0}, "site": {"lanes": 1},
        "pavement_temperature_c": fixed_c,
        "devices": {"pavement": {**PROBE, "url": twin.url}}})
    return RoadsideUnit(settings, tmp_path)


def truck() -> VehicleTruth:
    return VehicleTruth(
        vehicle_id=0, lane=0, name="test truck", code="12", t0_s=1.0, speed_mps=20.0,
        accel_mps2=0.0, axle_pos_m=np.array([0.0, 4.5]),
        axle_loads_kg=np.array([6_000.0, 10_000.0]), tyres=("single", "dual"),
        tyre_pressure_pa=830e3, track_m=1.95, lateral_offset_m=0.0, lateral_speed_mps=0.0,
        dynamics=Dynamics())


def weigh_one(unit: RoadsideUnit) -> dict:
    """Render one truck and hand its samples to the unit as the digitiser's readings."""
    site = unit.settings.site
    samples = render(site, [truck()], 4.0)
    step = int(site.fs_hz)
    vehicles = []
    for start in range(0, samples.shape[1], step):
        vehicles += unit._take("digitiser", {  # the reading a digitiser driver queues
            "kind": "samples", "samples": samples[:, start:start + step],
            "t_device_us": start / site.fs_hz * 1e6})
    vehicles += [unit._from_loop(v) for v in unit.loop.flush()]
    assert len(vehicles) == 1, vehicles
    return vehicles[0]


def test_the_unit_weighs_at_the_probes_temperature_then_falls_back_to_its_setting(
        twin, tmp_path, caplog):
    unit = unit_with_probe(twin, tmp_path)
    assert unit.probe is not None
    unit.probe.start()
    try:
        assert wait_for(lambda: unit.probe.latest() is not None)
        caplog.set_level(logging.INFO, logger="edge.unit")
        warm = weigh_one(unit)
        assert warm["temperature_c"] == pytest.approx(31.5)
        assert warm["temperature_source"] == "probe"
        twin.go_silent()
        assert wait_for(lambda: unit.probe.latest() is None, timeout_s=3.0)
        cold = weigh_one(unit)
    finally:
        unit.probe.stop()
    assert cold["temperature_c"] == 12.0 and cold["temperature_source"] == "setting"
    fallback = [r for r in caplog.records if "pavement_temperature_c (12.0 °C)" in r.message]
    assert len(fallback) == 1 and fallback[0].levelno == logging.WARNING
    assert "stale" in fallback[0].message or "no plausible" in fallback[0].message
    # the same samples weighed at two temperatures: the site's datasheet correction
    site = unit.settings.site
    assert sum(warm["axle_loads_kg"]) / sum(cold["axle_loads_kg"]) == pytest.approx(
        site.sensitivity(12.0) / site.sensitivity(31.5), rel=2e-4)


def test_two_probes_on_one_unit_are_refused(twin, tmp_path):
    settings = EdgeSettings.model_validate({
        "plates": {"workers": 0}, "site": {"lanes": 1},
        "devices": {"a": {**PROBE, "url": twin.url}, "b": {**PROBE, "url": twin.url}}})
    with pytest.raises(ConfigError, match="a, b are all temperature probes"):
        RoadsideUnit(settings, tmp_path)
