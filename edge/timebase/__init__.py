"""Trusted time for the roadside unit: which clock vouches for a capture time, and how far.

Every evidence packet carries a :class:`ClockState`: ``synced``, ``holdover`` or
``free_running``, an uncertainty in ms, the source (``kernel``, ``gps``, ``none``) and
since when. :class:`Timebase` combines the sources by one rule:

1. the kernel clock, when a time daemon keeps it synced (:mod:`edge.timebase.kernel`);
2. else a GPS receiver, while its time sentences are fresh (:mod:`edge.timebase.gps`):
   status ``synced``, source ``gps``, the wall clock corrected by the GPS offset;
3. else holdover from the last good source, its bound growing with an assumed drift;
4. else, or after ``holdover_max_s``, ``free_running``.

An unsynchronised clock is never marked trusted. A digitiser's own clock is mapped onto
the host's by :class:`~edge.timebase.clockfit.DeviceClockFit`; this module then turns
host monotonic times into UTC (:meth:`Timebase.to_utc`).
"""

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from edge.timebase.clockfit import DeviceClockFit
from edge.timebase.gps import GpsClock
from edge.timebase.kernel import (
    STA_UNSYNC,
    TIME_ERROR,
    ClockState,
    KernelClock,
    LastSync,
    holdover_state,
    kernel_state,
    kernel_synced,
    read_kernel_clock,
)
from edge.timebase.settings import ClockFitSettings, TimeSettings

__all__ = ["ClockFitSettings", "ClockState", "DeviceClockFit", "GpsClock", "KernelClock",
           "LastSync", "TimeSettings", "Timebase", "read_kernel_clock"]


class Timebase:
    """The unit's judgement of its clock, from the kernel and a GPS receiver.

    ``read_kernel`` reads the kernel clock (default: the real ``adjtimex``); recorded
    readings can be played through it.

    Examples
    --------
    >>> tb = Timebase(TimeSettings())
    >>> tb.state().status in ("synced", "holdover", "free_running")
    True
    >>> tb.to_utc(time.monotonic()).tzinfo is UTC
    True
    """

    def __init__(self, settings: TimeSettings | None = None,
                 read_kernel: Callable[[], KernelClock] = read_kernel_clock,
                 gps_name: str = "gps") -> None:
        self.settings = settings or TimeSettings()
        self.read_kernel = read_kernel
        self.gps = GpsClock(self.settings, gps_name)
        self._last: LastSync | None = None
        self._kernel: KernelClock | None = None

    def feed_gps(self, reading: Any, wall_minus_mono_s: float | None = None) -> bool:
        """A reading of the ``nmea`` protocol; whether it was usable."""
        return self.gps.feed(reading, wall_minus_mono_s)

    def feed_pps(self, t_mono_s: float, wall_minus_mono_s: float | None = None) -> None:
        """A PPS edge's host monotonic time (see :meth:`GpsClock.feed_pps`)."""
        self.gps.feed_pps(t_mono_s, wall_minus_mono_s)

    def state(self, t_mono: float | None = None) -> ClockState:
        """The clock state at host monotonic ``t_mono`` (default now), by the rule of
        the module: kernel synced, else fresh GPS, else holdover, else free-running."""
        t = time.monotonic() if t_mono is None else t_mono
        kernel = self._kernel = self.read_kernel()
        now = self._wall_utc(t)
        if kernel_synced(kernel, self.settings):
            state = kernel_state(kernel, self._last, t, self.settings, now)
        elif self.gps.fresh(t):
            age_s = max(t - (self.gps.last_t_mono_s or t), 0.0)
            bound_ms = (self.gps.uncertainty_s
                        + age_s * self.settings.free_drift_ppm * 1e-6) * 1e3
            state = ClockState("synced", bound_ms, "gps", self._gps_utc(t))
        else:
            drift = (self.settings.free_drift_ppm if self._last and self._last.source == "gps"
                     else self.settings.holdover_drift_ppm)
            return holdover_state(self._last, t, drift, self.settings)
        self._last = LastSync(t, state.since or now, state.uncertainty_ms, state.source)
        return state

    def to_utc(self, t_mono: float) -> datetime:
        """Aware UTC of host monotonic ``t_mono``: the wall clock, corrected by the GPS
        offset while GPS is (or, in holdover, was) the source."""
        source = self.state(t_mono).source
        if source == "gps":
            return self._gps_utc(t_mono)
        if source == "none" and self._last is not None and self._last.source == "gps":
            return self._gps_utc(t_mono)
        return self._wall_utc(t_mono)

    def _wall_utc(self, t_mono: float) -> datetime:
        return datetime.fromtimestamp(t_mono + time.time() - time.monotonic(), UTC)

    def _gps_utc(self, t_mono: float) -> datetime:
        offset = self.gps.offset_s if self.gps.last_t_mono_s is not None else 0.0
        return datetime.fromtimestamp(t_mono + time.time() - time.monotonic() + offset, UTC)

    def describe(self, t_mono: float | None = None) -> str:
        """Plain words for a technician: the kernel, the GPS, and the verdict."""
        t = time.monotonic() if t_mono is None else t_mono
        state = self.state(t)
        parts = [_describe_kernel(self._kernel, self.settings), self.gps.describe(t)]
        verdict = f"clock {state.status}"
        if state.status != "free_running":
            verdict += f" by {state.source}, ± {state.uncertainty_ms:.3g} ms"
        if state.status != "synced" and state.since is not None:
            verdict += f", last synced {state.since:%Y-%m-%d %H:%M:%S} UTC"
        return "; ".join([*parts, verdict])


def _describe_kernel(k: KernelClock | None, settings: TimeSettings) -> str:
    """The kernel clock in plain words."""
    if k is None:
        return "kernel clock not read yet"
    if k.status_flags & STA_UNSYNC:
        return f"kernel clock unsynchronised (STA_UNSYNC, {k.state_name})"
    if k.state == TIME_ERROR:
        return "kernel clock in error (TIME_ERROR)"
    maxerror_ms = k.maxerror_us / 1000.0
    if maxerror_ms >= settings.synced_maxerror_ms:
        return (f"kernel clock synchronised once but its max error {maxerror_ms:.3g} ms is "
                f"above {settings.synced_maxerror_ms:g} ms: is the time daemon running?")
    flags = ", ".join(f for f in k.flag_names() if f != "STA_NANO") or "no flags"
    return f"kernel clock synced ({k.state_name}, {flags}), max error {maxerror_ms:.3g} ms"
