"""The renderer: the area method's physics holds in the samples it draws, and drawing the
same recording in blocks or at once gives the same samples."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.strips import StripArray
from sim.render import Renderer, SensorNoise, render
from sim.traffic import G_MPS2, Dynamics, VehicleTruth, generate_traffic

SITE = StripArray(lanes=1)
BASE = 500.0  # SensorNoise.none()'s baseline
SPLITS = settings(max_examples=20, deadline=None, derandomize=True, database=None)


def truck(speed_mps: float, loads_kg: tuple[float, float], tyres: tuple[str, str],
          pressure_kpa: float = 830.0, offset_m: float = 0.0) -> VehicleTruth:
    """A two-axle truck, its front axle over the first row at t = 1 s, 4.5 m wheelbase."""
    return VehicleTruth(
        vehicle_id=0, lane=0, name="test truck", code="12", t0_s=1.0, speed_mps=speed_mps,
        accel_mps2=0.0, axle_pos_m=np.array([0.0, 4.5]), axle_loads_kg=np.array(loads_kg),
        tyres=tyres, tyre_pressure_pa=pressure_kpa * 1e3, track_m=1.95,
        lateral_offset_m=offset_m, lateral_speed_mps=0.0, dynamics=Dynamics())


def wheel_integrals(v: VehicleTruth, temperature_c: float = 20.0, site: StripArray = SITE
                    ) -> np.ndarray:
    """Force-time integral on every channel of every axle's crossing of the channel's row,
    counts·s above the baseline, ``(axles, channels)``."""
    x = render(site, [v], 4.0, noise=SensorNoise.none(), temperature_c=temperature_c)
    y = x.astype(np.float64) - BASE
    t = np.arange(x.shape[1]) / site.fs_hz
    rows = site.channel_table()[:, 1]
    out = np.zeros((v.n_axles, site.n_channels))
    for axle in range(v.n_axles):
        for row, row_m in enumerate(site.row_positions_m()):
            t_c = v.time_at(np.array(v.axle_pos_m[axle] + row_m))
            near = np.abs(t - t_c) < 0.3 * site.row_spacing_m / v.speed_mps
            out[axle, rows == row] = y[rows == row][:, near].sum(axis=1) / site.fs_hz
    return out


@pytest.mark.parametrize(("speed_mps", "loads_kg", "tyres"), [
    (22.0, (6_500.0, 11_000.0), ("single", "dual")),     # patches longer than the strip
    (8.0, (3_000.0, 2_000.0), ("single", "dual")),        # a dual patch shorter than it
    (30.0, (7_000.0, 9_000.0), ("single", "wide_base")),
    (2.5, (5_000.0, 10_000.0), ("single", "dual")),       # crawling
])
def test_a_wheel_pass_integrates_to_load_times_strip_width_over_speed(speed_mps, loads_kg,
                                                                      tyres):
    v = truck(speed_mps, loads_kg, tyres)
    got = wheel_integrals(v)
    wheel_n = np.array(loads_kg) * G_MPS2 / 2
    want = SITE.counts_per_newton * wheel_n * SITE.strip_width_m / speed_mps
    assert got.shape == (2, SITE.n_channels)
    for axle in range(2):  # each wheel on its own half, in both rows
        np.testing.assert_allclose(got[axle], want[axle], rtol=0.002)


def test_the_integral_follows_the_sensitivity_at_the_temperature():
    v = truck(20.0, (6_000.0, 10_000.0), ("single", "dual"))
    cold, hot = wheel_integrals(v, temperature_c=-10.0), wheel_integrals(v, temperature_c=40.0)
    ratio = SITE.sensitivity(40.0) / SITE.sensitivity(-10.0)
    assert ratio > 1.02
    np.testing.assert_allclose(hot / cold, ratio, rtol=0.002)


def test_wheels_over_the_lane_centre_and_boundary_are_shared_and_conserved():
    site = StripArray(lanes=2)
    # the left wheel on lane 0's centre line, the right one over the boundary to lane 1
    v = truck(20.0, (6_000.0, 10_000.0), ("single", "dual"), offset_m=0.975)
    got = wheel_integrals(v, site=site)
    wheel = np.array([6_000.0, 10_000.0]) * G_MPS2 / 2 * site.strip_width_m / 20.0
    for row in range(site.rows):
        lane0_left = site.channel(0, row, "left")
        lane1_left = site.channel(1, row, "left")
        in_row = site.channel_table()[:, 1] == row
        np.testing.assert_allclose(got[:, lane0_left], wheel / 2, rtol=0.003)
        assert np.all(got[:, lane1_left] > 0.5 * wheel)
        np.testing.assert_allclose(got[:, in_row].sum(axis=1), 2 * wheel, rtol=0.003)
        assert got[:, site.channel(1, row, "right")] == pytest.approx([0.0, 0.0], abs=1e-9)


@pytest.fixture(scope="module")
def scene() -> tuple[StripArray, list[VehicleTruth]]:
    site = StripArray(lanes=2)
    return site, generate_traffic(site, 20.0, seed=2)


@SPLITS
@given(st.lists(st.integers(1, 30_000), min_size=1, max_size=12))
def test_noiseless_blocks_are_the_recording_cut_in_pieces(scene, sizes):
    site, truth = scene
    renderer = Renderer(site, truth, seed=2, noise=SensorNoise.none())
    n = round(8.0 * site.fs_hz)
    whole = renderer.render(0, n)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    starts = starts[starts < n]
    parts = [renderer.render(int(a), int(min(b, n) - a))
             for a, b in zip(starts, [*starts[1:], n], strict=True)]
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), whole)
    assert whole.dtype == np.int16 and whole.shape == (site.n_channels, n)
    assert (whole != BASE).any()


def test_rendering_is_reproducible_for_a_seed(scene):
    site, truth = scene
    a = render(site, truth, 20.0, seed=2)
    b = render(site, truth, 20.0, seed=2)
    c = render(site, truth, 20.0, seed=3)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    assert np.abs(a.astype(float) - c).max() < 1_000  # only noise and baselines differ


def test_the_default_noise_has_the_stated_spread(scene):
    site, _ = scene
    noise = SensorNoise()
    x = Renderer(site, [], seed=4).render(0, 20_000).astype(np.float64)
    assert np.all((x.min(axis=1) > noise.baseline_counts[0] - noise.drift_counts - 60)
                  & (x.max(axis=1) < noise.baseline_counts[1] + noise.drift_counts + 60))
    detrended = x - x.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(detrended.std(axis=1), noise.noise_counts, rtol=0.1)
