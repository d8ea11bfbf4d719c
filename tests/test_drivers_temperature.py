"""The pavement temperature probe against a real pymodbus server (the twin), over TCP on
127.0.0.1 and over RTU between two linked pseudo-terminals: each encoding and scale read
back; broken-wire values and jumps refused, counted and logged once; a stale value gives
None; a server that goes away and comes back is reconnected; settings errors name the
option. Every wait is bounded."""

import argparse
import doctest
import json
import logging
import math
import re
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

import drivers.temperature
import zhichao.cli.edge
from drivers.errors import ProtocolError
from drivers.registry import open_device
from drivers.temperature import (
    TemperatureProbe,
    TemperatureProbeSettings,
    decode_temperature,
    encode_temperature,
)
from sim.sensor import Climate
from sim.temperature_twin import BROKEN_WIRE_C, TemperatureTwin
from zhichao.errors import ConfigError

POLL_S = 0.02
FIXED = {"url": "tcp://127.0.0.1:1502"}


def settings(**options: Any) -> TemperatureProbeSettings:
    """Probe settings for the tests: a fast poll, short timeouts."""
    options = {"poll_interval_s": POLL_S, "timeout_s": 0.3, "stale_after_s": 5.0,
               **FIXED, **options}
    return TemperatureProbeSettings.model_validate(options)


def wait_for(predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def first_reading(probe: TemperatureProbe, timeout_s: float = 5.0) -> dict[str, Any]:
    readings = probe.readings(timeout_s=timeout_s)
    assert readings, probe.get_status()
    return readings[0]


@pytest.fixture
def rig() -> Iterator[Callable[..., tuple[TemperatureTwin, TemperatureProbe]]]:
    """A started twin and a started probe of the same settings, closed after the test."""
    made: list[tuple[TemperatureTwin, TemperatureProbe]] = []

    def make(transport: str = "tcp", value_c: float | None = 20.0, *,
             twin_options: dict[str, Any] | None = None,
             clock: Callable[[], datetime] | None = None, **options: Any
             ) -> tuple[TemperatureTwin, TemperatureProbe]:
        s = settings(**options)
        twin_settings = s.model_copy(update=twin_options or {})
        twin = TemperatureTwin(twin_settings, transport=transport)  # type: ignore[arg-type]
        if clock is not None:
            twin.clock = clock
        twin.set_value(value_c)
        twin.start()
        probe = TemperatureProbe(s.model_copy(update={"url": twin.url}))
        made.append((twin, probe))
        probe.start()
        return twin, probe

    yield make
    for twin, probe in made:
        probe.stop()
        twin.close()


# ---------------------------------------------------------------------------- settings


def test_defaults_are_a_usual_transmitter():
    s = TemperatureProbeSettings(url="rtu:///dev/ttyUSB1?baud=9600")
    assert (s.unit_id, s.address, s.register_type, s.encoding) == (1, 0, "input", "int16")
    assert (s.counts_scale, s.offset_c, s.poll_interval_s, s.stale_after_s) == \
        (0.1, 0.0, 10.0, 120.0)
    assert s.plausible_c == (-40.0, 85.0) and s.max_rate_c_per_min == 5.0
    assert TemperatureProbeSettings(url="tcp://h", encoding="float32").counts_scale == 1.0


@pytest.mark.parametrize(("option", "value", "says"), [
    ("url", "ftp://10.0.0.7", "scheme must be 'tcp' or 'rtu' (got 'ftp')"),
    ("register", -1, "greater than or equal to 0 (got -1)"),
    ("register_type", "coil", "'input' or 'holding' (got 'coil')"),
    ("encoding", "int32", "'int16', 'uint16' or 'float32' (got 'int32')"),
    ("word_order", "middle", "'big' or 'little' (got 'middle')"),
    ("scale", 0, "must not be 0"),
    ("scale", float("nan"), "must be a finite number"),
    ("unit_id", 300, "less than or equal to 255 (got 300)"),
    ("poll_interval_s", 0, "greater than or equal to 0.01 (got 0)"),
    ("poll_interval_s", 3600, "less than or equal to 600 (got 3600)"),
    ("stale_after_s", 5, "must be above poll_interval_s (10)"),
    ("plausible_c", [85, -40], "low below high (got [85.0, -40.0])"),
    ("max_rate_c_per_min", -5, "greater than 0 (got -5)"),
    ("registr", 3, "is not a known option (a typo?) (got 3)"),
])
def test_settings_errors_name_the_option_and_the_value(option, value, says):
    section = {"kind": "temperature", "url": "tcp://10.0.0.7", option: value}
    with pytest.raises(ConfigError) as info:
        open_device("pavement", section, source="edge.yaml")
    message = str(info.value)
    assert f"edge.yaml: option 'devices.pavement.{option}'" in message, message
    assert says in message, message


HOSTILE = [float("inf"), float("-inf"), float("nan"), 1e308, -1e308, 10**30, 2**63, -1, 0,
           "x", "", "1e999", "nan", "\x00", "ipc://", "htp://x", [], [1, 2], [None],
           [1, 2, 3], ["a", "b"], {}, {"a": 1}, None, True, "💥" * 50]
OPTIONS = ["url", "unit_id", "register", "register_type", "encoding", "word_order", "scale",
           "offset_c", "poll_interval_s", "timeout_s", "stale_after_s", "plausible_c",
           "max_rate_c_per_min", "jump_margin_c"]


@pytest.mark.parametrize("option", OPTIONS)
def test_any_hostile_value_is_a_config_error_or_a_working_probe(option):
    for value in HOSTILE:
        section = {"kind": "temperature", "url": "tcp://10.0.0.7", option: value}
        try:
            probe = open_device("pavement", section, source="edge.yaml")
        except ConfigError as exc:
            named = re.search(rf"option 'devices\.pavement\.{option}(\.[01])?' ", str(exc))
            assert named, (value, str(exc))
            continue
        assert isinstance(probe, TemperatureProbe)
        s = probe.settings
        assert all(math.isfinite(v) for v in (s.counts_scale, s.offset_c, s.timeout_s,
                                              s.poll_interval_s, s.stale_after_s,
                                              *s.plausible_c, s.max_rate_c_per_min,
                                              s.jump_margin_c)), (option, value)
        assert s.counts_scale != 0 and s.plausible_c[0] < s.plausible_c[1]


def test_the_registry_builds_a_probe_of_the_section():
    device = open_device("pavement", {"kind": "temperature", "url": "tcp://10.0.0.7:1502",
                                      "register": 3, "register_type": "holding",
                                      "encoding": "uint16", "offset_c": -50},
                         source="edge.yaml")
    assert isinstance(device, TemperatureProbe) and device.name == "pavement"
    assert (device.endpoint.host, device.endpoint.port) == ("10.0.0.7", 1502)
    assert (device.settings.address, device.settings.offset_c) == (3, -50.0)
    assert device.latest() is None and "no plausible reading yet" in device.why_no_value()


# ---------------------------------------------------------------------------- codec


@pytest.mark.parametrize("options", [
    {"encoding": "int16"}, {"encoding": "int16", "scale": 0.01},
    {"encoding": "uint16", "offset_c": -50.0}, {"encoding": "uint16", "scale": 0.01,
                                                "offset_c": -100.0},
    {"encoding": "float32"}, {"encoding": "float32", "word_order": "little"},
])
def test_the_codec_round_trips_within_half_a_count(options):
    s = settings(**options)
    half = abs(s.counts_scale) / 2 + 1e-9 if s.encoding != "float32" else 1e-5
    for value_c in [-39.99, -20.0, -0.05, 0.0, 0.04, 17.3, 60.55, 84.99]:
        words = encode_temperature(value_c, s)
        assert len(words) == s.words and all(0 <= w <= 0xFFFF for w in words)
        assert abs(decode_temperature(words, s) - value_c) <= half, (value_c, words)


def test_the_codec_refuses_a_float_that_is_no_number():
    s = settings(encoding="float32")
    with pytest.raises(ProtocolError, match="not a temperature"):
        decode_temperature([0x7FC0, 0x0000], s)  # a quiet NaN
    with pytest.raises(ProtocolError, match="takes 2 registers"):
        decode_temperature([0x41B4], s)


def test_a_broken_wire_saturates_an_unsigned_register():
    s = settings(encoding="uint16", offset_c=-50.0)
    assert encode_temperature(BROKEN_WIRE_C, s) == [0]
    assert decode_temperature([0], s) == -50.0  # still outside -40..85: refused


def test_the_doctests_run():
    result = doctest.testmod(drivers.temperature)
    assert result.attempted >= 5 and result.failed == 0


# ---------------------------------------------------------------------------- end to end


@pytest.mark.parametrize(("options", "value_c", "resolution_c"), [
    ({"encoding": "int16"}, -12.34, 0.1),
    ({"encoding": "int16", "scale": 0.01, "register": 7}, -12.34, 0.01),
    ({"encoding": "uint16", "offset_c": -50.0, "register_type": "holding"}, 23.45, 0.1),
    ({"encoding": "float32", "register": 100}, 23.456, 1e-5),
    ({"encoding": "float32", "word_order": "little", "register_type": "holding",
      "unit_id": 17}, -7.125, 1e-5),
])
def test_reads_each_encoding_through_the_server(rig, options, value_c, resolution_c):
    twin, probe = rig(value_c=value_c, **options)
    reading = first_reading(probe)
    assert reading["kind"] == "temperature" and reading["device"] == "temperature"
    assert abs(reading["temperature_c"] - value_c) <= resolution_c / 2 + 1e-9
    assert probe.latest() == reading["temperature_c"]
    assert probe.why_no_value() is None
    status = probe.get_status()
    assert status.connected and status.frames >= 1 and status.bad_frames == 0
    assert status.extra["failed_reads"] == 0 and twin.requests >= 1


def test_rtu_over_a_pty_reads_the_simulated_climate(rig):
    noon = datetime(2026, 7, 20, 6, 0, tzinfo=UTC)  # 14:00 in China: the warmest hour
    twin, probe = rig("rtu", value_c=None, clock=lambda: noon)
    assert twin.url.startswith("rtu:///") and "baud=115200" in twin.url
    reading = first_reading(probe)
    expected = Climate().pavement_c(noon)
    assert expected > 35.0  # a summer afternoon on asphalt
    assert abs(reading["temperature_c"] - expected) <= 0.05 + 1e-9


def test_a_broken_wire_is_refused_counted_and_logged_once(rig, caplog):
    twin, probe = rig(value_c=21.0)
    assert first_reading(probe)["temperature_c"] == 21.0
    caplog.set_level(logging.WARNING, logger="drivers.temperature")
    twin.break_wire()
    assert wait_for(lambda: probe.get_status().extra["implausible"] >= 10)
    assert all(r["temperature_c"] == 21.0 for r in probe.readings())
    assert probe.latest() == 21.0  # the last good value holds until it is stale
    status = probe.get_status()
    assert status.bad_frames == status.extra["implausible"]
    assert status.extra["last_refused_c"] == BROKEN_WIRE_C
    assert "-200 °C is outside -40..85 °C" in status.last_error
    refused = [r for r in caplog.records if "value refused" in r.getMessage()]
    assert len(refused) == 1, [r.getMessage() for r in refused]
    assert "-200 °C" in refused[0].getMessage()
    assert any("broken wire" in h for h in probe.diagnose())
    twin.break_wire(False)
    twin.set_value(21.2)
    assert wait_for(lambda: probe.get_status().extra["last_c"] == 21.2)


def test_a_jump_is_refused_until_the_last_value_is_stale(rig):
    twin, probe = rig(value_c=20.0, stale_after_s=1.0)
    assert first_reading(probe)["temperature_c"] == 20.0
    twin.set_value(20.4)  # within the margin: noise, accepted
    assert wait_for(lambda: probe.latest() == 20.4)
    twin.set_value(30.0)  # 9.6 °C within a poll: a loose contact
    assert wait_for(lambda: probe.get_status().extra["jumps"] >= 5)
    assert probe.latest() == 20.4 and probe.get_status().extra["implausible"] == 0
    assert any("jumped" in h for h in probe.diagnose())
    t_jump = time.monotonic()
    assert wait_for(lambda: probe.latest() == 30.0, timeout_s=5.0)
    assert time.monotonic() - t_jump >= 0.5  # only once 20.4 had gone stale (1 s)


def test_a_stale_value_gives_none_and_says_why(rig):
    twin, probe = rig(value_c=18.5, stale_after_s=0.5)
    first_reading(probe)
    now_s = time.monotonic()  # the probe goes on polling: its last value is newer
    assert probe.latest(now_s) == 18.5
    assert probe.latest(now_s + 0.51) is None
    assert re.search(r"18\.5 °C is \d s old \(stale after 0\.5 s\)$",
                     probe.why_no_value(now_s + 0.51))
    twin.go_silent()
    assert wait_for(lambda: probe.latest() is None)
    why = probe.why_no_value()
    assert "stale after 0.5 s" in why and "no answer" in why, why
    status = probe.get_status()
    assert status.extra["failed_reads"] >= 1 and status.extra["last_age_s"] >= 0.5  # rounded
    twin.go_silent(False)
    assert wait_for(lambda: probe.latest() == 18.5)


def test_a_server_that_stops_and_comes_back_is_reconnected(rig):
    twin, probe = rig(value_c=15.0)
    assert first_reading(probe)["temperature_c"] == 15.0
    twin.stop()
    assert wait_for(lambda: not probe.get_status().connected)
    twin.set_value(15.3)
    twin.start()
    assert wait_for(lambda: probe.get_status().extra["last_c"] == 15.3, timeout_s=8.0)
    status = probe.get_status()
    assert status.connected and status.reconnects == 1
    assert any("came back 1 time" in h for h in probe.diagnose())


def test_a_wrong_register_is_a_failed_read_on_a_live_connection(rig):
    _, probe = rig(register=6, twin_options={"address": 5})
    assert wait_for(lambda: probe.get_status().extra["failed_reads"] >= 3)
    status = probe.get_status()
    assert status.connected and status.frames == 0 and status.reconnects == 0
    assert "exception code 2 reading input register 6 of unit 1" in status.last_error
    hints = probe.diagnose()
    assert "check register, register_type (input or holding) and unit_id" in hints[0]


def test_the_wrong_table_is_a_failed_read(rig):
    _, probe = rig(register_type="holding", twin_options={"register_type": "input"})
    assert wait_for(lambda: probe.get_status().extra["failed_reads"] >= 2)
    assert "reading holding register 0" in probe.get_status().last_error


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_nobody_there_is_said_and_stop_is_quick():
    probe = TemperatureProbe(settings(url=f"tcp://127.0.0.1:{free_port()}"))
    probe.start()
    try:
        assert wait_for(lambda: probe.get_status().last_error is not None)
        assert probe.latest() is None
    finally:
        t0 = time.monotonic()
        probe.stop()
        assert time.monotonic() - t0 < 1.5
    status = probe.get_status()
    assert not status.connected and status.frames == 0
    assert probe.diagnose(status, 1.0)[0].startswith("could not reach the probe")


def test_stop_is_bounded_while_a_serial_probe_is_silent(rig):
    twin, probe = rig("rtu", value_c=10.0, timeout_s=0.5)
    first_reading(probe)
    twin.go_silent()
    assert wait_for(lambda: probe.get_status().extra["failed_reads"] >= 1)
    t0 = time.monotonic()
    probe.stop()
    assert time.monotonic() - t0 < 0.5 + 1.0


def test_a_healthy_probe_is_ok_and_a_restarted_one_counts_afresh(rig):
    twin, probe = rig(value_c=12.0)
    first_reading(probe)
    assert wait_for(lambda: probe.get_status().frames >= 3)
    hint = probe.diagnose()
    assert len(hint) == 1 and hint[0].startswith("ok:") and "last 12 °C" in hint[0]
    probe.stop()
    assert probe.latest() == 12.0  # kept while the unit decides what to do
    twin.go_silent()  # so the new run's first read cannot come before the checks
    probe.start()
    assert probe.latest() is None and probe.get_status().frames == 0
    assert wait_for(lambda: probe.get_status().extra["reads"] >= 1)
    assert probe.latest() is None  # the old run's value is not this run's
    twin.go_silent(False)
    assert first_reading(probe)["temperature_c"] == 12.0
    assert 0 <= probe.get_status().extra["last_age_s"] < 1.0


def edge_command(*argv: str) -> int:
    """``zhichao edge ...`` through its own parser (the whole CLI's parser imports every
    command's modules: seconds more for nothing here)."""
    parser = argparse.ArgumentParser(prog="zhichao")
    zhichao.cli.edge.add_parser(parser.add_subparsers())
    args = parser.parse_args(["edge", *argv])
    return args.run(args)


def test_zhichao_edge_probe_shows_a_configured_probe(rig, tmp_path, capsys):
    twin, _ = rig(value_c=16.7)
    config = tmp_path / "edge.yaml"
    config.write_text(f"devices:\n  pavement: {{kind: temperature, url: '{twin.url}', "
                      "poll_interval_s: 0.05}\n", encoding="utf-8")
    code = edge_command("probe", "--config", str(config), "--device", "pavement",
                        "--seconds", "0.5", "--json")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0, lines[-1]
    readings, counts = lines[:-1], lines[-1]
    assert readings and all(r["kind"] == "temperature" and r["temperature_c"] == 16.7
                            and r["device"] == "pavement" for r in readings)
    assert counts["frames"] == len(readings) and counts["bad_frames"] == 0
    assert counts["hints"][0].startswith("ok:")
    config.write_text("devices:\n  pavement: {kind: temperature, url: 'tcp://127.0.0.1', "
                      "plausible_c: [50, 10]}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"option 'devices\.pavement\.plausible_c'"):
        edge_command("probe", "--config", str(config), "--device", "pavement")
