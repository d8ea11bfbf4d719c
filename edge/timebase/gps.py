"""UTC from a GPS receiver's time sentences: the offset of the host's wall clock.

Each RMC or ZDA names a UTC second and arrives some latency ``λ`` after it, with ``λ``
in the receiver's window ``[lo, hi]`` (``gps_latency_min_ms``, ``gps_latency_max_ms``).
With ``D = wall(t_receipt) − utc_named`` (the host's wall clock at the sentence's
monotonic receipt time), the offset ``θ = UTC − wall`` satisfies ``lo − D <= θ <= hi −
D`` for every sentence that kept to the window.

A busy host notes a sentence late (the reading thread waits for a core): its ``D`` is
too large, never too small, as a frame's receive delay in :mod:`edge.timebase.clockfit`.
So the bound rests on the quickest sentence of the last ``gps_window_s``, which needs
only one sentence in the window noted on time::

    lo − min(D)  <=  θ  <=  hi − min(D)

The estimate is the middle of that interval and the uncertainty its half-width (widened
by the host's possible drift over the window): the latency window bounds the accuracy.
(Bounding θ from above by the slowest sentence, ``hi − max(D)``, would narrow it where
the latency scatters, and put it wrong by as much as a sentence was noted late.)

A sentence quicker than the window allows (``D`` below the slowest by more than its
width) means the wall clock was stepped back: the estimate restarts from it. One later
than the window allows was noted late, or the wall clock stepped forward: it is held
aside, and only when sentences of ``STEP_CONFIRM_S`` later still say so is it a step,
and the estimate restarts from them; else they are dropped (``late``).

ZDA carries no fix status: it counts only while the last RMC, within ``gps_fresh_s``,
said ``A``. A PPS edge (:meth:`GpsClock.feed_pps`, when ``gps_pps`` is set) marks the
second itself; the offset then comes from the edge, within ``gps_pps_uncertainty_ms``.
Capturing the edge is the host's business (a kernel PPS source); it is not tested here.
"""

import math
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edge.timebase.settings import TimeSettings

STEP_CONFIRM_S = 0.5
"""Sentences later than the window allows must go on for this long (the next second's,
not only the RMC and ZDA of one write) before they count as a step of the wall clock."""


@dataclass(frozen=True)
class GpsSample:
    """One usable sentence: receipt time (host monotonic), ``D = wall − utc`` (s)."""

    t_mono_s: float
    wall_minus_utc_s: float


def wall_minus_mono() -> float:
    """The wall clock minus the monotonic clock now (s)."""
    return time.time() - time.monotonic()


class GpsClock:
    """The offset UTC − host wall clock, from a receiver's sentences.

    Examples
    --------
    >>> from datetime import UTC, datetime
    >>> clock = GpsClock(TimeSettings())
    >>> utc = datetime(2026, 5, 1, 8, 30, 12, tzinfo=UTC)
    >>> wall_minus_mono = utc.timestamp() - 1000.0 + 0.040  # wall runs 40 ms ahead of UTC
    >>> clock.feed({"sentence": "RMC", "utc": utc, "valid": True, "t_host_s": 1000.1},
    ...            wall_minus_mono)
    True
    >>> round(clock.offset_s, 3), round(clock.uncertainty_s, 3)   # true offset -0.040
    (-0.04, 0.1)
    """

    def __init__(self, settings: TimeSettings, name: str = "gps") -> None:
        self.settings = settings
        self.name = name
        self._samples: deque[GpsSample] = deque()
        self._pps: deque[tuple[float, float]] = deque(maxlen=4)   # (t_mono, wall−mono)
        self._pps_offset: tuple[float, float] | None = None        # (t_mono, θ)
        self._rmc_valid_at: float | None = None
        self.sentences = 0
        self.used = 0
        self.invalid = 0
        self.contradictions = 0
        self.late = 0
        self._held: list[GpsSample] = []

    # Feeding ---------------------------------------------------------------------------

    def feed(self, reading: Any, wall_minus_mono_s: float | None = None) -> bool:
        """Take one reading of the ``nmea`` protocol (a dict or a
        :class:`drivers.gps.GpsReading`); whether it entered the estimate.

        ``wall_minus_mono_s`` is the wall clock minus the monotonic clock at its receipt
        (default: now, right for a reading fed as it comes).
        """
        r = reading if isinstance(reading, dict) else reading.to_dict()
        if r.get("kind", "gps") != "gps" or r.get("t_host_s") is None:
            return False
        self.sentences += 1
        t_mono = float(r["t_host_s"])
        if r["sentence"] == "RMC":
            self._rmc_valid_at = t_mono if r["valid"] else None
        if not (r["valid"] and self._fix_valid(t_mono)):
            self.invalid += 1
            return False
        offset = wall_minus_mono() if wall_minus_mono_s is None else wall_minus_mono_s
        utc: datetime = r["utc"]
        self._add(GpsSample(t_mono, t_mono + offset - utc.timestamp()))
        self._match_pps(t_mono, utc)
        self.used += 1
        return True

    def feed_pps(self, t_mono_s: float, wall_minus_mono_s: float | None = None) -> None:
        """A PPS edge captured at host monotonic ``t_mono_s``; the next sentence names
        its second. Ignored unless ``gps_pps`` is set."""
        if self.settings.gps_pps:
            offset = wall_minus_mono() if wall_minus_mono_s is None else wall_minus_mono_s
            self._pps.append((t_mono_s, offset))

    def _fix_valid(self, t_mono: float) -> bool:
        """The last RMC said A, recently enough."""
        return (self._rmc_valid_at is not None
                and t_mono - self._rmc_valid_at <= self.settings.gps_fresh_s)

    def _add(self, sample: GpsSample) -> None:
        """Keep the sample and those of the last ``gps_window_s``; restart from it when
        it is quicker than the window allows; hold it aside when later (see the
        module's docstring)."""
        window = [x for x in self._samples
                  if sample.t_mono_s - x.t_mono_s <= self.settings.gps_window_s]
        if window:
            d = [x.wall_minus_utc_s for x in window]
            width = self._width_s(sample.t_mono_s - window[0].t_mono_s)
            if sample.wall_minus_utc_s < max(d) - width:   # the wall clock stepped back
                self._restart([sample])
                return
            if sample.wall_minus_utc_s > min(d) + width:   # noted late, or a step forward
                self._hold(sample)
                return
        self.late += len(self._held)
        self._held = []
        self._samples = deque([*window, sample])

    def _hold(self, sample: GpsSample) -> None:
        """Set aside a sentence later than the window allows, with those held before
        that agree with it; once they span ``STEP_CONFIRM_S``, the wall clock stepped."""
        agree = [x for x in self._held if abs(x.wall_minus_utc_s - sample.wall_minus_utc_s)
                 <= self._width_s(sample.t_mono_s - x.t_mono_s)]
        self.late += len(self._held) - len(agree)
        self._held = [*agree, sample]
        if sample.t_mono_s - self._held[0].t_mono_s >= STEP_CONFIRM_S:
            self._restart(self._held)

    def _restart(self, samples: list[GpsSample]) -> None:
        """The sentences before contradict these: the estimate starts again from them."""
        self.contradictions += 1
        self._samples = deque(samples)
        self._held = []

    def _width_s(self, span_s: float) -> float:
        """How far apart two sentences' ``D`` may be, ``span_s`` apart, both on time."""
        s = self.settings
        return ((s.gps_latency_max_ms - s.gps_latency_min_ms) * 1e-3
                + 2 * s.free_drift_ppm * 1e-6 * span_s)

    def _match_pps(self, t_mono: float, utc: datetime) -> None:
        """The edge that preceded this sentence within the latency window marks the
        sentence's whole second."""
        window_s = self.settings.gps_latency_max_ms * 1e-3
        for t_edge, offset in reversed(self._pps):
            if 0.0 <= t_mono - t_edge <= window_s:
                second = math.floor(utc.timestamp())
                self._pps_offset = (t_mono, second - (t_edge + offset))
                return

    # The estimate ----------------------------------------------------------------------

    def _interval(self) -> tuple[float, float]:
        """Bounds of θ = UTC − wall from the quickest sentence, widened by the host's
        drift over the window."""
        s = self.settings
        quickest = min(x.wall_minus_utc_s for x in self._samples)
        span = self._samples[-1].t_mono_s - self._samples[0].t_mono_s
        slack = s.free_drift_ppm * 1e-6 * span
        return (s.gps_latency_min_ms * 1e-3 - quickest - slack,
                s.gps_latency_max_ms * 1e-3 - quickest + slack)

    def _pps_fresh(self) -> bool:
        return (self._pps_offset is not None and self._samples
                and self._samples[-1].t_mono_s - self._pps_offset[0]
                <= self.settings.gps_fresh_s)

    @property
    def last_t_mono_s(self) -> float | None:
        """Receipt time of the newest usable sentence."""
        return self._samples[-1].t_mono_s if self._samples else None

    def fresh(self, t_mono_s: float) -> bool:
        """A usable sentence came within ``gps_fresh_s`` of ``t_mono_s``, before or after
        it: a vehicle is timed a second or two after its first axle crossed, when newer
        sentences are in already."""
        return any(abs(t_mono_s - x.t_mono_s) <= self.settings.gps_fresh_s
                   for x in self._samples)

    @property
    def offset_s(self) -> float:
        """UTC − host wall clock (s), from the PPS edge when fresh, else the sentences."""
        if not self._samples:
            raise ValueError(f"GPS on {self.name}: no valid time sentence yet")
        if self._pps_fresh():
            return self._pps_offset[1]   # type: ignore[index]
        lo, hi = self._interval()
        return (lo + hi) / 2

    @property
    def uncertainty_s(self) -> float:
        """Half-width of the interval the offset lies in (s)."""
        if not self._samples:
            return float("inf")
        if self._pps_fresh():
            return self.settings.gps_pps_uncertainty_ms * 1e-3
        lo, hi = self._interval()
        return (hi - lo) / 2

    def describe(self, t_mono_s: float) -> str:
        """Plain words for a technician."""
        last = self.last_t_mono_s
        if last is None:
            return (f"GPS on {self.name}: no valid time yet ({self.sentences} sentences, "
                    f"{self.invalid} without a valid fix)")
        how = "PPS" if self._pps_fresh() else "sentences"
        state = "fresh" if self.fresh(t_mono_s) else f"stale ({t_mono_s - last:.0f} s old)"
        late = f"; {self.late} sentences noted too late, not used" if self.late else ""
        return (f"GPS on {self.name} {state}, offset {self.offset_s:+.3f} s "
                f"± {self.uncertainty_s:.3g} s (from {how}){late}")
