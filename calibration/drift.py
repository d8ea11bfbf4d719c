"""Drift from traffic: the steer axles of tractors as a reference that passes every day.

The steer axle of a 5- or 6-axle tractor-semitrailer carries the engine and cab and little
of the payload (the fifth wheel sits behind it), so its load varies least of any axle in
traffic. The median of many such axles in a lane over a few days is a slowly moving
reference: when it moves away from its value right after calibration, the strips have
drifted (or the temperature correction no longer fits the season).

:class:`DriftTracker` keeps, per lane, the steer-axle loads of the last ``window_days``
days; learns the reference median over the first ``reference_days`` after a calibration;
and each day gives the drift in % with an alarm beyond ``alarm_pct``. Beyond
``propose_pct`` it proposes a lane-gain correction, which a technician approves
(:meth:`DriftTracker.applied` is told when a correction goes into the chain, so the loads
kept are rescaled and the drift is measured from there on).
"""

import math
from collections import deque
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from calibration.chain import FACTOR_MAX, FACTOR_MIN, Chain, LaneGain

MEDIAN_SE = math.sqrt(math.pi / 2)
"""The median's standard error is this times the mean's (σ/√n), for normal data."""


class DriftSettings(BaseModel):
    """How drift is tracked from traffic, and when it raises the alarm."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    codes: tuple[str, ...] = Field(
        ("127", "129", "155", "157", "159"), description="axle-type codes (GB 1589) of the "
        "5- and 6-axle tractor-semitrailers whose steer axles are tracked")
    reference_days: int = Field(7, ge=1, le=60, description="days after a calibration "
                                "over which the reference median is learned")
    window_days: int = Field(14, ge=1, le=60, description="days of steer axles in each "
                             "day's median (longer: steadier, but later)")
    min_axles: int = Field(100, ge=10, description="fewer steer axles in the window: no "
                           "drift figure that day (too uncertain)")
    alarm_pct: float = Field(1.0, gt=0, le=20, description="drift beyond this raises the "
                             "alarm: the unit is leaving its accuracy class")
    propose_pct: float = Field(0.5, gt=0, le=20, description="drift beyond this, and beyond "
                               "twice its standard error, proposes a lane-gain correction")
    min_steer_kg: float = Field(3000.0, ge=0, description="lighter steer axles are not "
                                "tractors' (a misread code)")
    max_steer_kg: float = Field(12000.0, gt=0)

    @model_validator(mode="after")
    def _bounds(self) -> "DriftSettings":
        if self.propose_pct > self.alarm_pct:
            raise ValueError(f"propose_pct ({self.propose_pct}) must not exceed alarm_pct "
                             f"({self.alarm_pct}): a correction comes before the alarm")
        return self


@dataclass(frozen=True)
class DayDrift:
    """One lane's drift on one day."""

    day: int
    lane: int            # 0-based
    n: int               # steer axles in the window
    median_kg: float | None
    reference_kg: float | None
    drift_pct: float | None
    alarm: bool
    se_pct: float | None = None  # standard error of the drift (the window median's)


class DriftTracker:
    """Steer-axle medians per lane, the reference after calibration, alarms, proposals."""

    def __init__(self, lanes: int, settings: DriftSettings | None = None) -> None:
        self.settings = settings or DriftSettings()
        self.lanes = lanes
        self._days: list[deque] = [deque() for _ in range(lanes)]   # (day, loads)
        self._today: list[list[float]] = [[] for _ in range(lanes)]
        self._reference: list[list[float]] = [[] for _ in range(lanes)]
        self.reference_kg: list[float | None] = [None] * lanes
        self._calibrated_day = 0
        self.series: list[DayDrift] = []

    def add(self, lane: int, axle_code: str | None, steer_kg: float) -> bool:
        """Take one vehicle's steer axle if it is a tracked tractor's; True if taken."""
        s = self.settings
        if axle_code not in s.codes or not (s.min_steer_kg <= steer_kg <= s.max_steer_kg):
            return False
        if 0 <= lane < self.lanes and np.isfinite(steer_kg):
            self._today[lane].append(float(steer_kg))
            return True
        return False

    def end_day(self, day: int) -> list[DayDrift]:
        """Close ``day``: each lane's window median, drift and alarm."""
        s, out = self.settings, []
        for lane in range(self.lanes):
            loads, self._today[lane] = self._today[lane], []
            window = self._days[lane]
            window.append((day, loads))
            while window and window[0][0] <= day - s.window_days:
                window.popleft()
            learning = day < self._calibrated_day + s.reference_days
            if learning:
                self._reference[lane].extend(loads)
                if len(self._reference[lane]) >= s.min_axles:
                    self.reference_kg[lane] = float(np.median(self._reference[lane]))
            kept = np.concatenate([np.asarray(x, float) for _, x in window]) if window \
                else np.empty(0)
            median = float(np.median(kept)) if kept.size else None
            ref = self.reference_kg[lane]
            drift = (100.0 * (median / ref - 1.0)
                     if median is not None and ref and not learning
                     and kept.size >= s.min_axles else None)
            se = (100.0 * MEDIAN_SE * float(np.std(kept)) / math.sqrt(kept.size) / ref
                  if drift is not None else None)
            point = DayDrift(day, lane, int(kept.size), median, ref, drift,
                             drift is not None and abs(drift) > s.alarm_pct, se)
            self.series.append(point)
            out.append(point)
        return out

    def latest(self) -> list[DayDrift | None]:
        """Each lane's most recent figure."""
        last: list[DayDrift | None] = [None] * self.lanes
        for p in self.series:
            last[p.lane] = p
        return last

    def proposal(self) -> list[float] | None:
        """Lane factors that bring each lane's median back to its reference, where the
        drift exceeds ``propose_pct`` and twice its standard error (a correction must not
        chase the noise of the median); None when no lane needs one."""
        factors, any_lane = [], False
        for p in self.latest():
            if (p is None or p.drift_pct is None
                    or abs(p.drift_pct) <= max(self.settings.propose_pct, 2 * (p.se_pct or 0))):
                factors.append(1.0)
                continue
            factors.append(float(np.clip(p.reference_kg / p.median_kg, FACTOR_MIN, FACTOR_MAX)))
            any_lane = True
        return factors if any_lane else None

    def applied(self, factors: list[float]) -> None:
        """A lane correction went into the chain: rescale what the window keeps."""
        for lane, f in enumerate(factors):
            self._days[lane] = deque((d, [x * f for x in loads]) for d, loads in self._days[lane])

    def recalibrated(self, day: int) -> None:
        """A new calibration from reference trucks: learn the reference again from ``day``."""
        self._calibrated_day = day
        self._reference = [[] for _ in range(self.lanes)]
        self.reference_kg = [None] * self.lanes
        self._days = [deque() for _ in range(self.lanes)]


def lane_correction(chain: Chain, factors: list[float], *, version: str, fitted_from: str,
                    uncertainty_pct: float, approved_by: str | None = None,
                    approved_at: datetime | None = None) -> Chain:
    """The chain with its lane gains multiplied by ``factors`` (a new version)."""
    old = chain.stage("lane_gain")
    base = list(old.factors) if old is not None else [1.0] * len(factors)
    stage = LaneGain(version=version, fitted_from=fitted_from,
                     factors=[float(np.clip(a * b, FACTOR_MIN, FACTOR_MAX))
                              for a, b in zip(base, factors, strict=True)],
                     uncertainty_pct=round(uncertainty_pct, 4), approved_by=approved_by,
                     approved_at=approved_at)
    return chain.with_stage(stage, version)
