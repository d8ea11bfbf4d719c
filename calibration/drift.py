"""Drift from traffic: the steer axles of trucks as a reference that passes every day.

The steer axle of a 5- or 6-axle tractor-semitrailer carries the engine and cab and little
of the payload (the fifth wheel sits behind it), so its load varies least of any axle in
traffic. The median of many such axles in a lane over a few days is a slowly moving
reference: when it moves away from its value right after calibration, the strips have
drifted (or the temperature correction no longer fits the season).

Some of the payload still reaches the steer axle through the fifth wheel, so a season
with more loaded tractors has heavier steer axles. With ``steer_line`` (on by default)
each code's steer load is learned as a straight line of the rest of the vehicle's weight,
``steer = α + β·rest`` (the reason FHWA's LTPP reads class 9 front-axle weights against
gross weight). A scale that has moved by a factor ``g`` reads ``g·steer`` and ``g·rest``,
so ``(steer - β·rest) / α`` is ``g`` for every tractor whatever it carries, and the
tracker takes the median of that. In the simulator's fleet it takes the spread of a steer
load from about 9 % to 6 %: the same reference week then pins the scale down as well as
twice as many tractors would.

:class:`DriftTracker` learns the reference lines over the first ``reference_days`` after
a calibration. Its ``estimator`` then gives each day's drift in one of two ways:

- ``trend`` (the default): a level and a rate per lane (:class:`Trend`, a Kalman filter
  on each day's median), so that a noisy day is pooled with the days before it as far as
  they still tell of today, and the drift is carried ``lead_days`` ahead;
- ``window``: the median of the last ``window_days`` days' trucks, which trails a
  steady drift by half its length.

The alarm is raised when the drift expected ``lead_days`` ahead exceeds ``alarm_pct``;
beyond ``propose_pct`` a lane-gain correction is proposed, which a technician approves
(:meth:`DriftTracker.applied` is told when a correction goes into the chain, so what is
kept is rescaled and the drift is measured from there on). These defaults were chosen on
the calibration study's tuning seeds (``docs/calibration.md``).

What no estimator removes is the reference's own error: the tractors of the reference
week are a sample of the fleet, and their median is uncertain by about 0.2–0.4 % at
300 trucks a lane a day; the tracker holds the unit to that reference ever after.
"""

import math
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy.stats import theilslopes

from calibration.chain import FACTOR_MAX, FACTOR_MIN, Chain, LaneGain

MEDIAN_SE = math.sqrt(math.pi / 2)
"""The median's standard error is this times the mean's (σ/√n), for normal data."""
MAD_SIGMA = 1.4826
"""σ of normal data is this times its median absolute deviation."""


TRACTORS = ("127", "129", "155", "157", "159")
"""5- and 6-axle tractor-semitrailers: their steer axles carry the least of the payload."""
RIGID = ("12", "15", "112", "115", "125", "1127")
"""The other trucks: more of their payload reaches the steer axle, which the steer line
takes out (``steer_line``); without it their steer loads vary with what they carry."""


class DriftSettings(BaseModel):
    """How drift is tracked from traffic, and when it raises the alarm."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    codes: tuple[str, ...] | None = Field(
        None, description="axle-type codes (GB 1589) whose steer axles are tracked; "
        "unset: the 5- and 6-axle tractor-semitrailers, and with steer_line the other "
        "trucks too (each code against its own line: twice the axles of the tractors "
        "alone)")
    reference_days: int = Field(7, ge=1, le=60, description="days after a calibration "
                                "over which the reference median is learned")
    window_days: int = Field(7, ge=1, le=60, description="days of steer axles in each "
                             "day's median (longer: steadier, but later)")
    min_axles: int = Field(100, ge=10, description="fewer steer axles in the window: no "
                           "drift figure that day (too uncertain)")
    alarm_pct: float = Field(1.0, gt=0, le=20, description="drift beyond this raises the "
                             "alarm: the unit is leaving its accuracy class")
    propose_pct: float = Field(0.3, gt=0, le=20, description="drift beyond this proposes a "
                               "lane-gain correction (window: shrunk by how sure the drift is)")
    estimator: Literal["window", "trend"] = Field(
        "trend", description="window: each day's drift is the median of the last "
        "window_days; trend: a level and a rate per lane, followed day by day (a Kalman "
        "filter) and carried forward to the middle of the next visit's interval")
    level_sd_pct_per_day: float = Field(
        0.02, gt=0, le=5, description="trend: how far a lane's scale may wander in a day "
        "beyond its rate (%, 1σ; an assumption about the strips, not a measured value)")
    rate_sd_pct_per_day2: float = Field(
        0.002, ge=0, le=1, description="trend: how far its rate may change in a day "
        "(%/day a day, 1σ; an assumption)")
    rate_prior_pct_per_day: float = Field(
        0.05, gt=0, le=5, description="trend: the spread of the rate expected right after "
        "a calibration (%/day, 1σ; an assumption)")
    lead_days: float = Field(
        3.5, ge=0, le=60, description="trend: the alarm and a proposal look this many days "
        "ahead (half the interval between visits: the drift at the middle of it, when no "
        "correction will have come yet)")
    steer_line: bool = Field(True, description="learn each code's steer load as a line "
                             "of the rest of the vehicle's weight, so that a change of "
                             "payloads is not read as drift (off: the plain medians)")
    min_steer_kg: float = Field(3000.0, ge=0, description="lighter steer axles are left "
                                "out (a light truck's, or a misread code)")
    max_steer_kg: float = Field(12000.0, gt=0)

    @property
    def tracked_codes(self) -> tuple[str, ...]:
        """The codes set, or those the steer line makes fit to track."""
        if self.codes is not None:
            return self.codes
        return TRACTORS + RIGID if self.steer_line else TRACTORS

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
    se_pct: float | None = None  # standard error of the drift (the median's, the level's)
    rate_pct_per_day: float | None = None  # the trend estimator's rate of drift
    ahead_pct: float | None = None  # the drift expected lead_days ahead (trend), else drift


class DriftTracker:
    """Steer-axle medians per lane and axle code, the references after calibration,
    alarms, proposals.

    Each code's steer axles are compared with that code's own reference line (a 6x4
    tractor's steer axle is not a 4x2's), and the lane's drift is the median of every
    truck's ratio to its line: the spread between codes does not blur the median.
    """

    def __init__(self, lanes: int, settings: DriftSettings | None = None) -> None:
        self.settings = settings or DriftSettings()
        self.lanes = lanes
        self._days: list[deque] = [deque() for _ in range(lanes)]  # (day, [Steer])
        self._today: list[list[Steer]] = [[] for _ in range(lanes)]
        self._learned: list[list[Steer]] = [[] for _ in range(lanes)]
        self._reference: list[dict[str, SteerLine]] = [{} for _ in range(lanes)]
        self._trend: list[Trend | None] = [None] * lanes
        self._calibrated_day = 0
        self.series: list[DayDrift] = []

    @property
    def reference_kg(self) -> list[float | None]:
        """Each lane's reference, all codes pooled (for people; the drift is per code)."""
        return [float(np.median([x.steer_kg for x in learned])) if ref else None
                for learned, ref in zip(self._learned, self._reference, strict=True)]

    def add(self, lane: int, axle_code: str | None, steer_kg: float,
            rest_kg: float | None = None) -> bool:
        """Take one vehicle's steer axle if it is a tracked tractor's; True if taken.
        ``rest_kg`` is the rest of its weight (gross minus steer axle): with it, the
        payload's share of the steer load is taken out (see the module's docstring);
        without it, the steer load is compared as it is."""
        s = self.settings
        if axle_code not in s.tracked_codes or not (s.min_steer_kg <= steer_kg <= s.max_steer_kg):
            return False
        if not s.steer_line:
            rest_kg = None
        elif rest_kg is not None and not (np.isfinite(rest_kg) and 0 <= rest_kg <= REST_MAX_KG):
            return False
        if 0 <= lane < self.lanes and np.isfinite(steer_kg):
            self._today[lane].append(Steer(str(axle_code), float(steer_kg),
                                           None if rest_kg is None else float(rest_kg)))
            return True
        return False

    def end_day(self, day: int) -> list[DayDrift]:
        """Close ``day``: each lane's window, drift and alarm."""
        out = [self._end_lane(day, lane) for lane in range(self.lanes)]
        self.series += out
        return out

    def _end_lane(self, day: int, lane: int) -> DayDrift:
        s = self.settings
        loads, self._today[lane] = self._today[lane], []
        window = self._days[lane]
        window.append((day, loads))
        while window and window[0][0] <= day - s.window_days:
            window.popleft()
        # the references are learned over reference_days, and on until there are enough
        period_over = day >= self._calibrated_day + s.reference_days - 1
        learning = not period_over or not self._reference[lane]
        if learning:
            self._learned[lane] += loads
            if period_over and len(self._learned[lane]) >= s.min_axles:
                self._reference[lane] = {
                    code: SteerLine.fit(items) for code, items in _by_code(
                        self._learned[lane]).items() if len(items) >= MIN_PER_CODE}
        kept = [x for _, items in window for x in items]
        median = float(np.median([x.steer_kg for x in kept])) if kept else None
        rate = None
        if s.estimator == "trend":
            drift, se, rate = self._follow(day, lane, loads, learning)
        elif learning or len(kept) < s.min_axles:
            drift, se = None, None
        else:
            drift, se = _drift(kept, self._reference[lane])
        ahead = drift if drift is None or rate is None else drift + rate * s.lead_days
        return DayDrift(day, lane, len(kept), median, self.reference_kg[lane], drift,
                        ahead is not None and abs(ahead) > s.alarm_pct, se, rate, ahead)

    def _follow(self, day: int, lane: int, loads: list["Steer"], learning: bool
                ) -> tuple[float | None, float | None, float | None]:
        """The trend estimator's day: started once the reference is learned (at no drift,
        as uncertain as the reference's median), then carried forward over the days since
        the last (a day the unit was down is still a day of drift) and told the day's own
        median, as far as that day's trucks are worth."""
        s, ref = self.settings, self._reference[lane]
        trend = self._trend[lane]
        if trend is None:
            if learning or not ref:
                return None, None, None
            _, se_ref = _drift(self._learned[lane], ref)
            trend = self._trend[lane] = Trend.start(day, se_ref or 0.0,
                                                    s.rate_prior_pct_per_day)
            return trend.level, trend.level_se, trend.rate
        for _ in range(max(day - trend.day, 1)):
            trend.predict(s.level_sd_pct_per_day, s.rate_sd_pct_per_day2)
        trend.day = day
        d, se = _drift(loads, ref, min_per_code=1)
        if d is not None and se and len(loads) >= MIN_PER_DAY:
            trend.update(d, se)
        return trend.level, trend.level_se, trend.rate

    def latest(self) -> list[DayDrift | None]:
        """Each lane's most recent figure."""
        last: list[DayDrift | None] = [None] * self.lanes
        for p in self.series:
            last[p.lane] = p
        return last

    def proposal(self) -> list[float] | None:
        """Lane factors that undo each lane's drift where it exceeds ``propose_pct``;
        None when no lane needs one.

        The drift measured is the true one plus the noise of the medians, so the
        correction is shrunk by d² / (d² + se²): nearly all of a drift well above its
        standard error, little of one no larger than the noise (a correction must not
        chase the noise of the medians, nor wait until the drift is certain).

        The trend estimator's level is already weighed against its noise (the filter's
        estimate); its proposal undoes the drift ``lead_days`` ahead at the rate it
        follows, unshrunk."""
        s = self.settings
        factors, any_lane = [], False
        for p in self.latest():
            d = p.ahead_pct if p is not None else None
            if p is None or d is None or abs(d) <= s.propose_pct:
                factors.append(1.0)
                continue
            if s.estimator == "window":
                se = p.se_pct or 0.0
                d = d * d * d / (d * d + se * se)
            factors.append(float(np.clip(1.0 / (1.0 + d / 100.0), FACTOR_MIN, FACTOR_MAX)))
            any_lane = True
        return factors if any_lane else None

    def applied(self, factors: list[float]) -> None:
        """A lane correction went into the chain: rescale what the windows keep."""
        for lane, f in enumerate(factors):
            self._days[lane] = deque((d, [x.scaled(f) for x in items])
                                     for d, items in self._days[lane])
            if (trend := self._trend[lane]) is not None:
                trend.scaled(f)

    def recalibrated(self, day: int) -> None:
        """A new calibration from reference trucks: learn the references again from ``day``."""
        self._calibrated_day = day
        self._learned = [[] for _ in range(self.lanes)]
        self._reference = [{} for _ in range(self.lanes)]
        self._days = [deque() for _ in range(self.lanes)]
        self._trend = [None] * self.lanes


MIN_PER_CODE = 20
"""A code with fewer steer axles (in the reference or the window) is left out."""
MIN_PER_DAY = 10
"""The trend estimator skips a day with fewer trucks than this (a lane closed)."""
INNOVATION_MAX = 4.0
"""A day's median further than this many standard errors from the trend's forecast is
taken as this far (one odd day, a convoy of one kind of truck, moves it only so much)."""
REST_MAX_KG = 200_000.0
"""A vehicle's weight beyond its steer axle above this is a misreading, not a tractor."""
BETA_MAX = 0.2
"""The payload's share of a steer axle's load is clipped to 0 … this: a fifth wheel sits
well behind the steer axle, so a larger slope learned from a week's traffic is noise."""


@dataclass(frozen=True)
class Steer:
    """One tractor's steer axle as weighed, and the rest of its weight (None: unknown)."""

    code: str
    steer_kg: float
    rest_kg: float | None

    def scaled(self, f: float) -> "Steer":
        """As a scale ``f`` times larger would have weighed it."""
        return Steer(self.code, self.steer_kg * f,
                     None if self.rest_kg is None else self.rest_kg * f)


@dataclass(frozen=True)
class SteerLine:
    """One code's steer load as a line of the rest of the weight: ``α + β·rest``."""

    alpha_kg: float
    beta: float

    @classmethod
    def fit(cls, items: list[Steer]) -> "SteerLine":
        """A robust line (Theil–Sen) through the reference days' tractors; the plain
        median (β = 0) where the rest of the weight is not known."""
        steer = np.array([x.steer_kg for x in items])
        rest = np.array([np.nan if x.rest_kg is None else x.rest_kg for x in items])
        known = np.isfinite(rest)
        if known.sum() < MIN_PER_CODE or np.ptp(rest[known]) <= 0:
            return cls(float(np.median(steer)), 0.0)
        beta = float(np.clip(theilslopes(steer[known], rest[known]).slope, 0.0, BETA_MAX))
        return cls(float(np.median(steer[known] - beta * rest[known])), beta)

    def ratio(self, x: Steer) -> float:
        """The scale's factor this tractor shows: its steer load, less the payload's
        share, over the reference's."""
        rest = 0.0 if x.rest_kg is None else x.rest_kg
        return (x.steer_kg - self.beta * rest) / self.alpha_kg


class Trend:
    """One lane's drift as a level (%) and a rate (%/day) with their covariance: a
    local linear trend followed by a Kalman filter.

    The strips' scale moves slowly and mostly one way, so a day's median, noisy on its
    own, is pooled with the days before it as far as they still tell of today: by how far
    the level may have wandered since (``level_sd``) and the rate changed
    (``rate_sd``). The rate carries the level forward: no window's lag.
    """

    def __init__(self, day: int, level: float, rate: float, cov: np.ndarray) -> None:
        self.day = day  # the day the estimate stands at
        self.x = np.array([level, rate], dtype=float)
        self.p = np.asarray(cov, dtype=float)

    @classmethod
    def start(cls, day: int, level_se: float, rate_sd: float) -> "Trend":
        """At the reference: no drift, as sure as the reference is; the rate unknown."""
        return cls(day, 0.0, 0.0, np.diag([level_se ** 2, rate_sd ** 2]))

    @property
    def level(self) -> float:
        return float(self.x[0])

    @property
    def rate(self) -> float:
        return float(self.x[1])

    @property
    def level_se(self) -> float:
        return math.sqrt(max(float(self.p[0, 0]), 0.0))

    def predict(self, level_sd: float, rate_sd: float) -> None:
        """A day on: the level moves by the rate, both a little less certain."""
        f = np.array([[1.0, 1.0], [0.0, 1.0]])
        self.x = f @ self.x
        self.p = f @ self.p @ f.T + np.diag([level_sd ** 2, rate_sd ** 2])

    def update(self, measured: float, se: float) -> None:
        """A day's median of the drift, with its standard error."""
        s = self.p[0, 0] + se * se
        innovation = float(np.clip(measured - self.x[0], -INNOVATION_MAX * math.sqrt(s),
                                   INNOVATION_MAX * math.sqrt(s)))
        gain = self.p[:, 0] / s
        self.x = self.x + gain * innovation
        self.p = self.p - np.outer(gain, self.p[0, :])

    def scaled(self, f: float) -> None:
        """A lane correction ``f`` went in: the level it left, the rate in its terms."""
        self.x = np.array([100.0 * ((1.0 + self.x[0] / 100.0) * f - 1.0), self.x[1] * f])


def _by_code(items: list[Steer]) -> dict[str, list[Steer]]:
    out: dict[str, list[Steer]] = {}
    for x in items:
        out.setdefault(x.code, []).append(x)
    return out


def _drift(items: list[Steer], reference: dict[str, SteerLine], *,
           min_per_code: int = MIN_PER_CODE) -> tuple[float | None, float | None]:
    """The drift (%) and its standard error: the median of every tractor's ratio to its
    code's reference line (codes with too few tractors in the window left out)."""
    ratios = [reference[code].ratio(x) for code, xs in _by_code(items).items()
              if code in reference and len(xs) >= min_per_code for x in xs]
    if not ratios:
        return None, None
    a = np.asarray(ratios)
    median = float(np.median(a))
    sigma = MAD_SIGMA * float(np.median(np.abs(a - median)))  # a misweighed axle or two
    return 100.0 * (median - 1.0), 100.0 * MEDIAN_SE * sigma / math.sqrt(a.size)


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
