"""PulseDetector, the first stream stage: simulated and crafted samples through the real
detector. Blocks equal at once for any split (ObsPy's realtime tests), areas and edges of
known pulses, and the pulses it must refuse (too low, too long) or mark (saturated)."""

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.strips import StripArray
from edge.signal.pulses import INT16_MAX, PulseDetector
from edge.signal.settings import SignalSettings
from sim.render import render
from sim.traffic import generate_traffic

FS_HZ = 10_000.0
BASE = 500
SITE = StripArray(lanes=1)
RECORDING_S = 20.0
SPLITS = settings(max_examples=25, deadline=None, derandomize=True, database=None)


@functools.cache
def recording() -> np.ndarray:
    """20 s of one lane with the default dynamics, drift and noise (seeded)."""
    truth = generate_traffic(SITE, RECORDING_S, seed=3)
    assert len(truth) >= 2
    return render(SITE, truth, RECORDING_S, seed=3)


@functools.cache
def whole() -> tuple[np.ndarray, PulseDetector]:
    det = PulseDetector(SITE.n_channels, SITE.fs_hz)
    return det.push(recording()), det


def feed(x: np.ndarray, sizes: list[int], **kw) -> tuple[np.ndarray, PulseDetector]:
    """Push ``x`` in consecutive blocks of ``sizes`` samples (the rest as one last block)."""
    det = PulseDetector(x.shape[0], FS_HZ, **kw)
    cuts = np.cumsum(sizes)
    cuts = cuts[cuts < x.shape[1]]
    out = [det.push(block) for block in np.split(x, cuts, axis=1)]
    return np.concatenate(out), det


def flat(n: int = 100_000, channels: int = 1, base: int = BASE) -> np.ndarray:
    return np.full((channels, n), base, np.int16)


def assert_same_pulses(got: np.ndarray, want: np.ndarray) -> None:
    assert got.size == want.size
    np.testing.assert_array_equal(got["channel"], want["channel"])
    for name in ("t_c", "t_on", "t_off"):
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=1e-9, err_msg=name)
    np.testing.assert_allclose(got["area"], want["area"], rtol=1e-12)
    np.testing.assert_allclose(got["peak"], want["peak"], rtol=1e-6)
    np.testing.assert_array_equal(got["saturated"], want["saturated"])


def test_the_recording_has_pulses_on_every_channel():
    pulses, det = whole()
    assert set(pulses["channel"].tolist()) == set(range(SITE.n_channels))
    assert det.stats.pulses == pulses.size
    assert np.all(np.diff(pulses["t_c"]) >= 0)
    assert np.all((pulses["t_on"] < pulses["t_c"]) & (pulses["t_c"] < pulses["t_off"]))


# Block sizes: single samples, shorter than a frame, around a frame, and long.
BLOCK = st.one_of(
    st.just(1),
    st.integers(2, 64),
    st.integers(65, 4095),
    st.integers(4090, 4100),
    st.integers(4101, 60_000),
)


@SPLITS
@given(st.lists(BLOCK, min_size=1, max_size=30))
def test_blocks_give_the_same_pulses_as_the_whole_recording(sizes):
    want, det_whole = whole()
    got, det = feed(recording(), sizes)
    assert_same_pulses(got, want)
    assert det.complete_through_s == det_whole.complete_through_s
    for name in ("samples", "pulses", "below_hi", "too_long"):
        assert getattr(det.stats, name) == getattr(det_whole.stats, name), name


def test_one_sample_at_a_time_over_a_vehicle_gives_the_same_pulses():
    # The first second in one block, then single samples up to 1.2 s, across the first
    # vehicle's front axle (over the first row at 1.05 s), then the rest.
    x = recording()[:, : 40_000]
    want, _ = feed(x, [x.shape[1]])
    got, _ = feed(x, [10_000] + [1] * 2_000)
    assert np.any((want["t_c"] > 1.0) & (want["t_c"] < 1.2))
    assert_same_pulses(got, want)


def test_stats_do_not_depend_on_the_split():
    # frames carried into the next block (here while a long pulse is open) count once
    x = flat()
    x[0, 20_000:55_000] += 1_000   # 3.5 s: open across several blocks
    _, det_whole = feed(x, [x.shape[1]])
    _, det = feed(x, [10_000] * 10)
    assert det.stats == det_whole.stats
    assert det.stats.too_long == 1 and det.stats.baseline_holds > 0


@pytest.mark.parametrize(("height", "duration", "base"), [
    (1_000, 40, 500), (300, 7, 500), (5_000, 1_234, 500), (2_000, 25, -3_000), (12_000, 3, 0),
])
def test_area_of_a_rectangular_pulse_is_height_times_duration(height, duration, base):
    x = flat(channels=3, base=base)
    start = 50_000
    x[2, start:start + duration] += height
    pulses, det = feed(x, [x.shape[1]])
    assert pulses.size == 1 and det.stats.pulses == 1
    p = pulses[0]
    assert p["channel"] == 2
    assert p["area"] == pytest.approx(height * duration / FS_HZ, rel=1e-12)
    assert p["peak"] == pytest.approx(height)
    assert p["t_c"] == pytest.approx((start + (duration - 1) / 2) / FS_HZ, abs=1e-9)
    # half-peak crossings halfway between the last idle and the first loaded sample
    assert p["t_on"] == pytest.approx((start - 0.5) / FS_HZ, abs=1e-9)
    assert p["t_off"] == pytest.approx((start + duration - 0.5) / FS_HZ, abs=1e-9)
    assert not p["saturated"]


@pytest.mark.parametrize(("height", "reported"), [(200, False), (249, False), (250, True),
                                                  (400, True)])
def test_a_pulse_must_reach_hi_counts(height, reported):
    s = SignalSettings()
    assert s.lo_counts < 200 and s.hi_counts == 250
    x = flat()
    x[0, 50_000:50_040] += height
    pulses, det = feed(x, [x.shape[1]])
    assert pulses.size == int(reported)
    assert det.stats.below_hi == int(not reported)


def test_a_peak_below_hi_counts_is_counted_not_reported_in_any_split():
    x = flat()
    x[0, 30_000:30_040] += 200
    x[0, 60_000:60_040] += 1_000
    for sizes in ([x.shape[1]], [4_096] * 30, [1_000] * 100, [30_010, 20]):
        pulses, det = feed(x, sizes)
        assert pulses.size == 1 and pulses["t_c"][0] == pytest.approx(6.00195)
        assert det.stats.below_hi == 1


def ramp_with_pulses(slope_counts_per_s: float, duration_s: float = 60.0,
                     height: int = 2_000) -> tuple[np.ndarray, np.ndarray]:
    """A baseline rising at ``slope``; pulses of ``height`` × 40 samples every 5 s."""
    t = np.arange(int(duration_s * FS_HZ)) / FS_HZ
    x = np.rint(BASE + slope_counts_per_s * t)[None, :]
    starts = np.arange(5, int(duration_s), 5) * int(FS_HZ)
    for s in starts:
        x[0, s:s + 40] += height
    return x.astype(np.int16), starts


def test_baseline_drift_makes_no_pulse():
    x, _ = ramp_with_pulses(2.0, height=0)
    assert x[0, -1] - x[0, 0] >= 115  # well above lo_counts: a fixed baseline would fire
    for sizes in ([x.shape[1]], [10_000] * 60):
        pulses, det = feed(x, sizes)
        assert pulses.size == 0
        assert det.stats.below_hi == 0


def test_areas_stay_right_on_a_drifting_baseline():
    x, starts = ramp_with_pulses(2.0)
    pulses, _ = feed(x, [10_000] * 60)
    assert pulses.size == starts.size
    np.testing.assert_allclose(pulses["t_c"], (starts + 19.5) / FS_HZ, atol=1e-6)
    want = 2_000 * 40 / FS_HZ
    # The baseline lags a ramp by slope × tau (10 counts here: 0.5 %); had it stayed at
    # its first value, the last pulse would be 110 counts (5.5 %) too large.
    np.testing.assert_allclose(pulses["area"], want, rtol=0.015)


@pytest.mark.parametrize("sizes", [[100_000], [10_000] * 10, [777] * 130, [4_096] * 25])
def test_a_pulse_longer_than_max_pulse_s_is_dropped_and_counted(sizes):
    assert SignalSettings().max_pulse_s == 3.0
    x = flat()
    x[0, 20_000:55_000] += 1_000   # 3.5 s: a fault, not a wheel
    x[0, 70_000:70_040] += 1_000   # a wheel after it
    pulses, det = feed(x, sizes)
    assert det.stats.too_long == 1
    assert pulses.size == 1
    assert pulses["t_c"][0] == pytest.approx((70_000 + 19.5) / FS_HZ)
    assert pulses["area"][0] == pytest.approx(4.0, rel=1e-12)


def test_a_too_long_pulse_leaves_no_tail_when_another_channel_holds_the_cut():
    # The cut is held back by channel 1; channel 0's dropped run must not come back,
    # cut short, as a pulse of its own.
    x = flat(channels=2)
    x[0, 20_000:55_000] += 1_000   # too long, ends inside the first block
    x[1, 57_330:57_370] += 1_000   # a wheel open at the end of the first block (14 frames)
    x[0, 80_000:80_040] += 1_000
    want, _ = feed(x, [x.shape[1]])
    got, _ = feed(x, [14 * 4_096])
    assert want.size == 2
    assert_same_pulses(got, want)


@pytest.mark.parametrize("sizes", [[100_000], [333] * 400])
def test_a_clipped_pulse_is_marked_saturated(sizes):
    x = flat(channels=2)
    x[0, 50_000:50_040] = INT16_MAX
    x[1, 50_000:50_040] += 20_000
    pulses, _ = feed(x, sizes)
    by_channel = {int(p["channel"]): p for p in pulses}
    assert by_channel[0]["saturated"]
    assert not by_channel[1]["saturated"]
    assert by_channel[0]["peak"] == pytest.approx(INT16_MAX - BASE)


def test_a_pulse_at_the_first_sample_has_its_rising_edge_there():
    x = flat()
    x[0, :40] += 1_000
    pulses, _ = feed(x, [x.shape[1]])
    assert pulses.size == 1
    assert -1 / FS_HZ <= pulses["t_on"][0] <= pulses["t_c"][0] < pulses["t_off"][0]
    assert pulses["t_off"][0] == pytest.approx(39.5 / FS_HZ, abs=1e-9)


@functools.cache
def crafted() -> np.ndarray:
    """Three channels of what the detector must refuse or mark, amid ordinary wheels:
    runs longer than max_pulse_s, peaks under hi_counts, clipped peaks, a run at the
    very first sample."""
    rng = np.random.default_rng(11)
    x = flat(160_000, channels=3).astype(np.int32)
    for start in rng.integers(1_000, 155_000, 40):    # wheels, light and heavy
        ch, n = rng.integers(0, 3), rng.integers(3, 600)
        x[ch, start:start + n] += rng.choice([150, 600, 3_000, 40_000])
    x[0, :30] += 900
    x[0, 20_000:55_000] += 1_000                      # too long
    x[2, 90_000:125_000] += 700                       # too long
    x[1, 40_000:72_000] += 400                        # too long
    return np.clip(x, -32768, INT16_MAX).astype(np.int16)


@SPLITS
@given(st.lists(BLOCK, min_size=1, max_size=30))
def test_refused_and_marked_pulses_are_the_same_in_any_split(sizes):
    x = crafted()
    want, det_whole = feed(x, [x.shape[1]])
    got, det = feed(x, sizes)
    assert want.size > 20 and det_whole.stats.too_long >= 3 and det_whole.stats.below_hi >= 5
    assert want["saturated"].any()
    assert_same_pulses(got, want)
    assert det.stats == det_whole.stats
