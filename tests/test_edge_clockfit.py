"""A device clock fitted to the host's: the fitted host times of device instants fall
within the stated uncertainty — on synthetic arrivals (one-sided delays, a clock 100 ppm
fast, offsets, jitter of several shapes) and through a real pseudo-terminal with the
digitiser twin; the fit restarts when the device clock steps."""

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers import digitiser
from drivers.framing import Framer
from drivers.serial_link import SerialDevice
from drivers.strips import StripArray
from edge.timebase.clockfit import DeviceClockFit, envelope_line, lower_hull, transmit_s
from edge.timebase.settings import ClockFitSettings
from sim.serial_twins import DigitiserTwin

pytestmark = pytest.mark.timeout(60)


def arrivals(rng: np.random.Generator, n: int, *, rate_hz: float, ppm: float,
             device_offset_s: float, jitter: str, scale_s: float, floor_s: float
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true host instants, device times, receipt times) of ``n`` frames: the device
    clock runs ``ppm`` fast; each frame arrives ``floor_s`` plus a one-sided jitter late."""
    t_true = 1000.0 + np.arange(n) / rate_hz
    t_device = device_offset_s + (t_true - 1000.0) * (1 + ppm * 1e-6)
    if jitter == "exponential":
        delay = rng.exponential(scale_s, n)
    elif jitter == "uniform":
        delay = rng.uniform(0, 2 * scale_s, n)
    else:   # mostly quick, one frame in ten held up to 20 times longer (a busy host)
        delay = rng.exponential(scale_s, n) + (rng.random(n) < 0.1) * rng.uniform(
            0, 20 * scale_s, n)
    return t_true, t_device, t_true + floor_s + delay


def violations(fit: DeviceClockFit, t_device: np.ndarray, t_true: np.ndarray) -> list:
    """The instants whose fitted host time is further from the truth than stated."""
    out = []
    for d, h in zip(t_device, t_true, strict=True):
        err, bound = fit.host_time(d) - h, fit.uncertainty_s(d)
        if abs(err) > bound:
            out.append((d, err, bound))
    return out


CASES = st.fixed_dictionaries({
    "ppm": st.floats(-300, 300), "device_offset_s": st.floats(0, 1e5),
    "jitter": st.sampled_from(["exponential", "uniform", "bursts"]),
    "scale_s": st.floats(1e-5, 1.5e-3), "rate_hz": st.sampled_from([10.0, 50.0, 100.0])})


@settings(max_examples=60, deadline=None, derandomize=True)
@given(case=CASES, floor_share=st.floats(0, 0.5), n=st.integers(64, 800),
       seed=st.integers(0, 2**32 - 1))
def test_fitted_times_fall_within_the_stated_uncertainty(case, floor_share, n, seed):
    """Checked as the frames come (each frame's own instant, and 0.5 s ahead), and at the
    end over the whole window. The quickest frames come within ``latency_max_ms``: the
    fixed floor is at most half of it, the jitter's scale below it."""
    s = ClockFitSettings()
    floor_s = floor_share * s.latency_max_ms * 1e-3
    t_true, t_device, t_recv = arrivals(np.random.default_rng(seed), n, floor_s=floor_s,
                                        **case)
    ppm = case["ppm"]
    fit = DeviceClockFit(s)
    bad = []
    for k in range(n):
        assert fit.add(t_device[k], t_recv[k])
        if fit.ready:
            bad += violations(fit, t_device[k:k + 1], t_true[k:k + 1])
            ahead = t_device[k] + 0.5 * (1 + ppm * 1e-6)
            bad += violations(fit, np.array([ahead]), np.array([t_true[k] + 0.5]))
    window = slice(n - fit.n_points, n)
    bad += violations(fit, t_device[window], t_true[window])
    assert not bad, bad[:3]
    assert fit.restarts == 0
    if fit.n_points >= 256 and case["scale_s"] < 1e-3:
        assert abs(fit.drift_ppm - ppm) < 30


def test_a_plain_least_squares_line_is_late_by_the_mean_delay_and_the_envelope_is_not():
    rng = np.random.default_rng(7)
    t_true, t_device, t_recv = arrivals(rng, 500, rate_hz=100.0, ppm=100.0,
                                        device_offset_s=3.0, jitter="exponential",
                                        scale_s=2e-3, floor_s=0.0)
    slope, intercept = np.polyfit(t_device, t_recv, 1)
    late_s = float(np.mean(intercept + slope * t_device - t_true))
    fit = DeviceClockFit()
    for d, r in zip(t_device, t_recv, strict=True):
        fit.add(d, r)
    envelope_err = np.array([fit.host_time(d) for d in t_device]) - t_true
    assert late_s == pytest.approx(2e-3, rel=0.15)          # the mean delay
    assert np.abs(envelope_err).max() < 0.2e-3
    assert fit.drift_ppm == pytest.approx(100.0, abs=5.0)
    assert fit.residual_s == pytest.approx(np.sqrt(2) * 2e-3, rel=0.2)   # RMS of exp(2 ms)


def test_the_bound_grows_away_from_the_window():
    fit = DeviceClockFit()
    for k in range(200):
        fit.add(k * 0.01, 50.0 + k * 0.01 + (k % 5) * 1e-4)
    centre, end, ahead = (fit.uncertainty_s(t) for t in (0.995, 1.99, 5.0))
    assert centre < end < ahead
    assert end == pytest.approx(2 * centre, rel=1e-9)
    assert ahead == pytest.approx(centre * (1 + 2 * 4.005 / 1.99), rel=1e-9)


def test_known_transmission_time_is_taken_off():
    """A 3222-byte frame at 921600 baud arrives 35 ms after it was sent: subtracted,
    the fit gives the send instants."""
    tx = transmit_s(3222, 921_600)
    fit = DeviceClockFit()
    for k in range(50):
        fit.add(k * 0.1, 7.0 + k * 0.1 + tx, min_delay_s=tx)
    assert fit.host_time(2.0) == pytest.approx(9.0, abs=1e-9)


@pytest.mark.parametrize(("step", "restarts"), [("reset", 1), ("forward", 1), ("none", 0)])
def test_the_fit_restarts_when_the_device_clock_steps(step, restarts):
    """A digitiser that restarts (its clock back to 0) or whose clock is set forward by
    half a second: the old window would map the new instants wrongly by the step."""
    rng = np.random.default_rng(11)
    t_true, t_device, t_recv = arrivals(rng, 600, rate_hz=100.0, ppm=100.0,
                                        device_offset_s=40.0, jitter="exponential",
                                        scale_s=3e-4, floor_s=0.0)
    if step == "reset":
        t_device[300:] -= t_device[300]           # the clock starts again at 0
    elif step == "forward":
        t_device[300:] += 0.5
    fit = DeviceClockFit()
    for k in range(600):
        fit.add(t_device[k], t_recv[k])
    assert fit.restarts == restarts
    assert not violations(fit, t_device[-fit.n_points:], t_true[-fit.n_points:])
    assert fit.n_points == (300 if restarts else fit.settings.window_points)


def test_a_stalled_frame_is_left_out():
    fit = DeviceClockFit()
    for k in range(100):
        fit.add(k * 0.1, 3.0 + k * 0.1)
    assert not fit.add(10.0, 3.0 + 10.0 + 2.5)                 # 2.5 s late: a stall
    assert fit.late_points == 1 and fit.restarts == 0
    assert fit.host_time(10.0) == pytest.approx(13.0, abs=1e-9)


def test_before_enough_points_the_host_rate_is_assumed_with_the_kernel_tolerance():
    fit = DeviceClockFit()
    fit.add(0.0, 10.0)
    fit.add(0.1, 10.1005)
    assert not fit.ready
    assert fit.host_time(0.2) == pytest.approx(10.2)
    assert fit.uncertainty_s(0.2) == pytest.approx(2e-3 + 0.5e-3 + 500e-6 * (0.1 + 0.15))
    with pytest.raises(ValueError, match="no points"):
        DeviceClockFit().host_time(0.0)


def test_lower_hull_and_envelope_lie_under_every_point():
    rng = np.random.default_rng(3)
    x = np.cumsum(rng.uniform(0.01, 0.1, 300))
    y = 0.5 * x + rng.exponential(0.01, 300)
    hull = lower_hull(x, y)
    assert hull[0] == 0 and hull[-1] == 299
    intercept, slope = envelope_line(x, y)
    assert np.all(y - (intercept + slope * x) >= -1e-12)


# Through a real pty ----------------------------------------------------------------------

def stamped(frame: digitiser.SampleFrame) -> tuple[float, digitiser.SampleFrame]:
    """The frame with its receipt time, taken right after the read that completed it."""
    return time.monotonic(), frame


def test_through_a_pty_fitted_frame_starts_fall_within_the_uncertainty():
    """A digitiser whose clock is 100 ppm fast and 5 s ahead, sending each frame up to
    3 ms late, read for 4 s at real time: the fitted host time of every frame's first
    sample, as known when the frame came, is within the stated bound of when the twin's
    clock really read that instant."""
    site = StripArray(lanes=1)
    n = 200
    twin = DigitiserTwin(site, [], frame_samples=n, speed=1.0, clock_ppm=100.0,
                         clock_offset_s=5.0, jitter_s=0.003, jitter_seed=5)
    frame_s = n / site.fs_hz
    twin.start(hold=True)
    device = SerialDevice("dig", twin.path, lambda: Framer(digitiser.CODEC, stage=stamped),
                          baudrate=921_600)
    device.start()
    got: list[tuple[float, digitiser.SampleFrame]] = []
    try:
        assert device.wait_connected(3.0)
        twin.release()
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            got += device.frames(timeout_s=0.1)
    finally:
        device.stop()
        twin.stop()
    assert len(got) > 150
    fit = DeviceClockFit()
    errors, bounds = [], []
    for t_recv, frame in got:
        t_first = frame.t_device_us * 1e-6
        fit.add(t_first + frame_s, t_recv)          # sent once its last sample was taken
        if fit.ready:
            errors.append(fit.host_time(t_first) - twin.host_time_of(t_first))
            bounds.append(fit.uncertainty_s(t_first))
    errors, bounds = np.array(errors), np.array(bounds)
    print(f"pty fit: {len(got)} frames, |error| max {np.abs(errors).max() * 1e3:.3f} ms, "
          f"median {np.median(np.abs(errors)) * 1e3:.3f} ms; bound median "
          f"{np.median(bounds) * 1e3:.2f} ms, min {bounds.min() * 1e3:.2f} ms; "
          f"drift {fit.drift_ppm:.0f} ppm; residual RMS {fit.residual_s * 1e3:.2f} ms")
    assert np.all(np.abs(errors) <= bounds), (errors[np.abs(errors) > bounds], bounds)
    assert fit.restarts == 0
    assert abs(fit.drift_ppm - 100.0) < 200      # 4 s of ms jitter: the rate is rough
