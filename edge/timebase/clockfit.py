"""A device's clock fitted to the host's: host time of any device instant, with a bound.

A digitiser stamps each frame with its own clock (the time of the frame's first
sample); the host notes when the frame arrived (monotonic). The two clocks differ by an
offset and a rate (a crystal 100 ppm fast gains 0.36 s an hour), so the host time of a
device instant is a line ``t_host = a + b t_device``, fitted over a sliding window — as
Klipper fits its micro-controllers' clocks (``klippy/clocksync.py``) and its bulk
sensors' (``bulk_sensor.py``).

A frame never arrives before it was sent: the receive delay (transmission at the baud
rate, the UART's hold-back, USB polling, scheduling) is one-sided. A least-squares line
through the arrivals would be late by the mean delay and tilted by any change of it.
So the fit is the **lower envelope**: the line under every point that lies closest to
them all (the linear program of Moon, Skelly and Towsley, "Estimation and removal of
clock skew from network delay measurements", 1999) — the edge of the points' lower
convex hull above their mean device time. The known part of the delay (the frame's
bytes at the baud rate, :func:`transmit_s`) is subtracted by the caller (``min_delay_s``);
what remains is not seen by any fit, and ``latency_max_ms`` bounds it.

The bound (:meth:`DeviceClockFit.uncertainty_s`): let ``e(t)`` be the fitted line minus
the true host time (a line too). Every point lies on or above the fit, and above the
truth by its delay ``d >= 0``. In the first and the last quarter of the window the
quickest frame has ``d <= L`` (``latency_max_ms``, the assumption), so there ``e <= L``;
and the lowest point of each quarter sits ``r`` above the fit (observed), so there
``e >= -r``. With ``S`` the largest such ``r``, a line bounded so at points at least half
the window apart satisfies ``|e(t)| <= (L + S)(1 + 2|t - t_c| / span)``, ``t_c`` the
window's centre: ``L + S`` inside, growing linearly outside.

A device clock that steps (a digitiser restarted, its clock set) is seen as a device
time that goes back, or a frame that would have arrived before it was sent by more than
the bound: the window restarts from that point.
"""

import itertools
from collections import deque
from dataclasses import dataclass

import numpy as np

from edge.timebase.settings import KERNEL_TOLERANCE_PPM, ClockFitSettings


def transmit_s(n_bytes: int, baudrate: int, bits_per_byte: int = 10) -> float:
    """Time a frame of ``n_bytes`` takes on a line of ``baudrate`` (8N1: 10 bits a byte):
    the known part of its receive delay, from its last byte's send to its receipt.

    Examples
    --------
    >>> round(transmit_s(3222, 921_600) * 1000, 2)   # a 16-channel 100-sample frame, ms
    34.96
    """
    return n_bytes * bits_per_byte / baudrate


@dataclass(frozen=True)
class Line:
    """``t_host = y0 + intercept + slope (t_device - x0)``, kept relative to the window's
    first point (``x0``, ``y0``) so that large clock values lose no precision."""

    x0: float
    y0: float
    intercept: float
    slope: float

    def at(self, t_device_s: float) -> float:
        """Host time of a device instant."""
        return self.y0 + self.intercept + self.slope * (t_device_s - self.x0)


def lower_hull(x: np.ndarray, y: np.ndarray) -> list[int]:
    """Indices of the lower convex hull of points sorted by strictly increasing ``x``
    (Andrew's monotone chain), left to right.

    Examples
    --------
    >>> lower_hull(np.array([0.0, 1, 2, 3]), np.array([0.0, -1, 1, 0]))
    [0, 1, 3]
    """
    hull: list[int] = []
    for i in range(len(x)):
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            cross = (x[b] - x[a]) * (y[i] - y[a]) - (y[b] - y[a]) * (x[i] - x[a])
            if cross > 0:
                break
            hull.pop()
        hull.append(i)
    return hull


def envelope_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(intercept, slope) of the line under all points closest to them in sum: the
    lower hull's edge over the mean of ``x`` (``x`` strictly increasing, 2 points or
    more)."""
    hull = lower_hull(x, y)
    xm = float(x.mean())
    for a, b in itertools.pairwise(hull):
        if x[b] >= xm:
            slope = (y[b] - y[a]) / (x[b] - x[a])
            return float(y[a] - slope * x[a]), float(slope)
    a, b = hull[-2], hull[-1]
    slope = (y[b] - y[a]) / (x[b] - x[a])
    return float(y[a] - slope * x[a]), float(slope)


def quarter_spread(x: np.ndarray, r: np.ndarray) -> float:
    """The largest, over the window's quarters holding points, of the least residual
    above the envelope: how far the quickest frame of a stretch sits above the fit."""
    span = x[-1] - x[0]
    if span <= 0:
        return 0.0
    q = np.minimum(((x - x[0]) * 4 // span).astype(np.int64), 3)
    lows = [float(r[q == k].min()) for k in range(4) if np.any(q == k)]
    return max(*lows, 0.0)


class DeviceClockFit:
    """Host monotonic time of a device clock's instants, fitted over a sliding window.

    Feed each frame with :meth:`add` (device instant the frame was complete and sent,
    host receipt time, the known transmission time); ask :meth:`host_time` and
    :meth:`uncertainty_s` for any device instant (a frame's first sample, an axle's
    edge).

    Examples
    --------
    >>> fit = DeviceClockFit()
    >>> for k in range(100):       # device 100 ppm fast, 1 ms of delay every 3rd frame
    ...     _ = fit.add(10.0 + k * 0.1, 500.0 + k * 0.1 / 1.0001 + 0.001 * (k % 3 == 0))
    >>> round(fit.drift_ppm), round(fit.host_time(12.0), 6), round(fit.uncertainty_s(12.0), 4)
    (100, 501.9998, 0.0032)
    """

    def __init__(self, settings: ClockFitSettings | None = None) -> None:
        self.settings = settings or ClockFitSettings()
        self._x: deque[float] = deque()
        self._y: deque[float] = deque()
        self._origin: tuple[float, float] | None = None
        self._cache: tuple[Line, float, float, float, float, float] | None = None
        self.restarts = 0
        self.late_points = 0
        self.points_in = 0

    # Feeding ---------------------------------------------------------------------------

    def add(self, t_device_s: float, t_host_s: float, min_delay_s: float = 0.0) -> bool:
        """Add a frame sent at device time ``t_device_s`` and received at host monotonic
        ``t_host_s``, ``min_delay_s`` its known transmission time. Whether it entered
        the fit (a frame later than ``max_delay_s`` does not)."""
        self.points_in += 1
        y = t_host_s - min_delay_s
        if self._origin is not None and (t_device_s - self._origin[0] <= self._x[-1]
                                         or (self.ready and self._contradicts(t_device_s, y))):
            # the device clock went back, or stepped forward: a fit of too few points
            # proves neither (one frame held up in a burst would look like a step)
            self.restart()
            self.restarts += 1
        if self.ready and y - self.host_time(t_device_s) > self.settings.max_delay_s:
            self.late_points += 1
            return False
        if self._origin is None:
            self._origin = (t_device_s, y)
        self._x.append(t_device_s - self._origin[0])
        self._y.append(y - self._origin[1])
        self._trim()
        self._cache = None
        return True

    def restart(self) -> None:
        """Forget the window (a new device clock)."""
        self._x.clear()
        self._y.clear()
        self._origin = None
        self._cache = None

    def _contradicts(self, t_device_s: float, y: float) -> bool:
        """The point arrived earlier than the fit allows by more than its bound: the
        device clock stepped forward."""
        return y < self.host_time(t_device_s) - self.uncertainty_s(t_device_s)

    def _trim(self) -> None:
        """Keep at most ``window_points`` within ``window_s`` of the newest."""
        s = self.settings
        while len(self._x) > s.window_points or self._x[-1] - self._x[0] > s.window_s:
            self._x.popleft()
            self._y.popleft()

    # The fit ---------------------------------------------------------------------------

    @property
    def n_points(self) -> int:
        """Points in the window."""
        return len(self._x)

    @property
    def ready(self) -> bool:
        """Enough points that the rate is fitted, not assumed."""
        return len(self._x) >= self.settings.min_points

    def _fit(self) -> tuple[Line, float, float, float, float, float]:
        """(line, L + S, centre, span, residual RMS, rate allowance) of the window,
        cached until the next point. Below ``min_points`` the host rate is assumed
        (slope 1) and the kernel's tolerance covers the rate error."""
        if self._cache is not None:
            return self._cache
        if not self._x or self._origin is None:
            raise ValueError("the clock fit has no points yet: add frames first")
        x, y = np.fromiter(self._x, float), np.fromiter(self._y, float)
        latency_s = self.settings.latency_max_ms * 1e-3
        if len(x) >= self.settings.min_points:
            intercept, slope = envelope_line(x, y)
            allowance = 0.0
        else:
            slope, allowance = 1.0, KERNEL_TOLERANCE_PPM * 1e-6
            intercept = float((y - x).min())
        r = y - (intercept + slope * x)
        spread = quarter_spread(x, r) if allowance == 0.0 else float(r.max())
        line = Line(self._origin[0], self._origin[1], intercept, slope)
        rms = float(np.sqrt(np.mean(r**2)))
        self._cache = (line, latency_s + spread, float((x[0] + x[-1]) / 2),
                       float(x[-1] - x[0]), rms, allowance)
        return self._cache

    def host_time(self, t_device_s: float) -> float:
        """Host monotonic time (s) when the device clock read ``t_device_s``."""
        return self._fit()[0].at(t_device_s)

    def uncertainty_s(self, t_device_s: float | None = None) -> float:
        """Bound on ``|host_time(t) - true host time|`` at device instant ``t`` (default:
        the newest point), holding while the quickest frame of each quarter window was
        delayed at most ``latency_max_ms`` beyond its transmission time."""
        line, base, centre, span, _, allowance = self._fit()
        x = (t_device_s - line.x0) if t_device_s is not None else self._x[-1]
        if allowance:
            return base + allowance * (span + abs(x - centre))
        if span <= 0:
            return float("inf")
        return base * (1.0 + 2.0 * abs(x - centre) / span)

    @property
    def drift_ppm(self) -> float:
        """How fast the device clock runs against the host's, ppm (positive: fast)."""
        return (1.0 / self._fit()[0].slope - 1.0) * 1e6

    @property
    def residual_s(self) -> float:
        """RMS of the receive delays above the envelope (the jitter's size), s."""
        return self._fit()[4]

    def get_status(self) -> dict[str, object]:
        """A plain dict for the evidence trail and a technician."""
        out: dict[str, object] = {"points": self.n_points, "restarts": self.restarts,
                                  "late_points": self.late_points, "ready": self.ready}
        if self._x:
            out.update(drift_ppm=self.drift_ppm, residual_s=self.residual_s,
                       uncertainty_s=self.uncertainty_s())
        return out
