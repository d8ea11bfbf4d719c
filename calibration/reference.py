"""Calibration from reference trucks: static weights, passes matched to them, a chain fitted.

A technician weighs two or three trucks on a static scale (axle by axle), then drives each
several times over the strips at several speeds. Each pass the unit weighed is matched to
the truck it was (:func:`match_runs`: axle count, axle spacings, how the load is shared
between the axles, and the gross weight within a wide band); then one robust fit
(:func:`fit_chain`) gives, at once:

- a gain per lane and row of strips (each row weighs every axle on its own, so each row's
  gain is seen separately; the two halves of a row share it, because the static scale
  does not give left and right wheel loads apart),
- a factor by speed, one slope over the speeds driven (1 at their median: the row gains
  carry the level), kept as factors every 10 km/h from below the slowest run to beyond the
  fastest,
- a factor by pavement temperature, linear over the temperatures seen, when they span
  enough degrees to see a slope; held at its end values beyond them. It corrects what
  the datasheet's coefficient leaves, and is drawn towards none: one day's runs see a
  few degrees only.

The model is multiplicative and fitted in logarithms: ``log(static / row estimate) =
gain[lane, row] + s · (v − v0) + slope · (T − T0)``, with a soft-L1 loss so that one odd
pass does not pull the factors. The standard uncertainty of each stage comes from the fit's
covariance. Everything is relative to the chain the passes were weighed with: the new
chain is the old one times the corrections.
"""

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from calibration.chain import (
    FACTOR_MAX,
    FACTOR_MIN,
    Chain,
    ChannelGain,
    SpeedFactor,
    TemperatureCurve,
)
from drivers.strips import StripArray

Progress = Callable[[str], None]

MIN_TEMPERATURE_SPAN_C = 5.0
"""A temperature slope is fitted only from runs spanning at least this many degrees."""
TEMPERATURE_PRIOR_PCT_PER_C = 0.05
"""How far the strips' temperature slope may differ from the datasheet's, which the unit
already applies (%/°C, 1σ). An assumption: a datasheet gives the type's slope, and a
strip of that type in its slot follows it within a fifth of a polymer strip's 0.25 %/°C.
Chosen on the calibration study's day-0 data (``docs/calibration.md``, "The fit")."""
MIN_SPEED_SPAN_KMH = 10.0
"""A speed slope is fitted only from runs spanning at least this many km/h."""
SPEED_REACH = 0.5
"""The speed stage reaches this share of the driven speeds' span beyond each end."""
SPEED_MIN_KMH, SPEED_MAX_KMH = 5.0, 150.0
"""The speed stage's points stay within these, however far the runs reach."""


@dataclass(frozen=True)
class ReferenceTruck:
    """A truck weighed on a static scale: its axle loads, and optionally its spacings."""

    name: str
    axle_loads_kg: tuple[float, ...]
    spacings_m: tuple[float, ...] | None = None
    axle_code: str | None = None

    @property
    def gvw_kg(self) -> float:
        """Static gross weight: the sum of the axles."""
        return float(sum(self.axle_loads_kg))

    @property
    def n_axles(self) -> int:
        return len(self.axle_loads_kg)


@dataclass(frozen=True)
class WeighedPass:
    """One vehicle as the unit weighed it (a line of ``zhichao edge run --json``)."""

    lane: int                 # 0-based
    t_s: float
    speed_kmh: float
    temperature_c: float | None
    axle_loads_kg: np.ndarray
    row_loads_kg: np.ndarray  # (n_axles, rows); NaN where a row missed an axle
    spacings_m: np.ndarray
    axle_code: str | None = None
    flags: frozenset[str] = frozenset()

    @property
    def gvw_kg(self) -> float:
        return float(np.sum(self.axle_loads_kg))

    @property
    def n_axles(self) -> int:
        return len(self.axle_loads_kg)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "WeighedPass":
        """From the unit's vehicle dict (lane 1-based, speed in m/s); ValueError if a
        field is missing or of the wrong shape."""
        loads = np.asarray(d["axle_loads_kg"], float)
        rows = np.asarray([[np.nan if x is None else x for x in r]
                           for r in d.get("row_loads_kg") or []], float)
        if rows.size == 0:
            rows = loads[:, None]
        if rows.shape[0] != loads.size:
            raise ValueError(f"row_loads_kg has {rows.shape[0]} axles, axle_loads_kg "
                             f"{loads.size}")
        temperature = d.get("temperature_c")
        return cls(lane=int(d["lane"]) - 1, t_s=float(d.get("t_s", 0.0)),
                   speed_kmh=float(d["speed_mps"]) * 3.6,
                   temperature_c=None if temperature is None else float(temperature),
                   axle_loads_kg=loads, row_loads_kg=rows,
                   spacings_m=np.asarray(d.get("spacings_m") or [], float),
                   axle_code=d.get("axle_code"), flags=frozenset(d.get("flags") or ()))

    @classmethod
    def from_vehicle(cls, v: Any) -> "WeighedPass":
        """From a signal-loop vehicle (duck-typed: lane, t_s, speed_mps, loads, ...)."""
        return cls(lane=int(v.lane), t_s=float(v.t_s), speed_kmh=float(v.speed_mps) * 3.6,
                   temperature_c=v.temperature_c, axle_loads_kg=np.asarray(v.axle_loads_kg),
                   row_loads_kg=np.asarray(v.row_loads_kg), spacings_m=np.asarray(v.spacings_m),
                   axle_code=v.axle_code, flags=frozenset(v.flags))


@dataclass(frozen=True)
class Run:
    """A pass matched to the reference truck that made it."""

    truck: ReferenceTruck
    weighed: WeighedPass

    @property
    def gvw_error_pct(self) -> float:
        """(measured − static) / static, % — as the unit weighed it."""
        return 100.0 * (self.weighed.gvw_kg / self.truck.gvw_kg - 1.0)

    @property
    def axle_errors_pct(self) -> np.ndarray:
        return 100.0 * (self.weighed.axle_loads_kg / np.asarray(self.truck.axle_loads_kg) - 1)

    def errors_with(self, factor: float) -> tuple[float, np.ndarray]:
        """The gross-weight and axle errors (%) had the pass been weighed ``factor`` times
        heavier (a fit's correction)."""
        static = np.asarray(self.truck.axle_loads_kg)
        return (100.0 * (self.weighed.gvw_kg * factor / self.truck.gvw_kg - 1),
                100.0 * (self.weighed.axle_loads_kg * factor / static - 1))


@dataclass(frozen=True)
class MatchRules:
    """How alike a pass must be to a reference truck to be taken as its run."""

    gvw_tolerance: float = 0.25
    spacing_tolerance_m: float = 0.3
    share_tolerance: float = 0.08


def _fits(truck: ReferenceTruck, p: WeighedPass, rules: MatchRules) -> str | None:
    """Why ``p`` is not a run of ``truck``, or None if it may be."""
    if p.n_axles != truck.n_axles:
        return f"{p.n_axles} axles, {truck.name} has {truck.n_axles}"
    if abs(p.gvw_kg / truck.gvw_kg - 1) > rules.gvw_tolerance:
        return f"gross {p.gvw_kg:.0f} kg is far from {truck.name}'s {truck.gvw_kg:.0f} kg"
    share = np.asarray(truck.axle_loads_kg) / truck.gvw_kg
    if np.max(np.abs(p.axle_loads_kg / max(p.gvw_kg, 1.0) - share)) > rules.share_tolerance:
        return f"the load is shared between the axles unlike {truck.name}"
    if (truck.spacings_m is not None and p.spacings_m.size == len(truck.spacings_m)
            and np.nanmax(np.abs(p.spacings_m - np.asarray(truck.spacings_m)))
            > rules.spacing_tolerance_m):
        return f"axle spacings unlike {truck.name}'s"
    return None


def match_runs(trucks: Sequence[ReferenceTruck], passes: Iterable[WeighedPass],
               rules: MatchRules | None = None
               ) -> tuple[list[Run], list[tuple[WeighedPass, str]]]:
    """Passes matched to trucks, and the passes set aside with the reason.

    A flagged pass (braking, weaving, straddling ...) is set aside: it is not weighed to
    the device's class. A pass like two trucks is set aside as ambiguous.
    """
    rules = rules or MatchRules()
    runs, refused = [], []
    for p in passes:
        if p.flags:
            refused.append((p, "flagged: " + ", ".join(sorted(p.flags))))
            continue
        fits = [t for t in trucks if _fits(t, p, rules) is None]
        if len(fits) == 1:
            runs.append(Run(fits[0], p))
        elif fits:
            refused.append((p, "like " + " and ".join(t.name for t in fits)))
        else:
            refused.append((p, "no reference truck: " + "; ".join(
                str(_fits(t, p, rules)) for t in trucks)))
    return runs, refused


@dataclass(frozen=True)
class Fit:
    """A fitted calibration: the corrections, their uncertainty, and the new chain."""

    chain: Chain
    row_gain: dict[tuple[int, int], float]      # (lane, row) -> correction factor
    speeds_kmh: list[float]
    speed_factors: list[float]
    temperatures_c: list[float]
    temperature_factors: list[float]
    uncertainty_pct: dict[str, float]
    residual_pct: np.ndarray                     # per run and row, after the fit
    n_runs: int
    notes: list[str] = field(default_factory=list)

    def correction(self, p: WeighedPass) -> float:
        """The factor the fit puts on a pass's gross weight (rows averaged)."""
        rows = p.row_loads_kg
        gains = np.array([self.row_gain.get((p.lane, r), 1.0) for r in range(rows.shape[1])])
        per_row = np.nansum(rows, axis=0) * gains
        seen = np.isfinite(rows).all(axis=0)
        base = np.nansum(rows, axis=0)[seen].mean() if seen.any() else p.gvw_kg
        level = per_row[seen].mean() / base if seen.any() else 1.0
        speed = float(np.interp(p.speed_kmh, self.speeds_kmh, self.speed_factors))
        temp = (float(np.interp(p.temperature_c, self.temperatures_c,
                                self.temperature_factors))
                if self.temperatures_c and p.temperature_c is not None else 1.0)
        return level * speed * temp


def _speed_points(speeds: np.ndarray, step_kmh: float) -> np.ndarray:
    """Where the speed stage keeps its factors: every ``step_kmh`` over the speeds driven
    and half as far again beyond each end (traffic is faster and slower than the runs;
    the stage holds its end values beyond the last point)."""
    lo, hi = float(speeds.min()), float(speeds.max())
    reach = (hi - lo) * SPEED_REACH
    start, stop = max(lo - reach, SPEED_MIN_KMH), min(hi + reach, SPEED_MAX_KMH)
    n = max(round((stop - start) / step_kmh), 1)
    return np.linspace(start, stop, n + 1)


def fit_chain(runs: Sequence[Run], before: Chain, site: StripArray, *, version: str,
              fitted_from: str, speed_step_kmh: float = 10.0,
              temperature_prior_pct_per_c: float = TEMPERATURE_PRIOR_PCT_PER_C,
              progress: Progress | None = None) -> Fit:
    """Fit corrections to the chain the runs were weighed with; the proposed chain.

    A few parameters, each seen by every run: the row gains, one speed slope and one
    temperature slope. Two trucks times ten runs cannot pin down a factor per speed band
    nor a temperature slope over one working day's few degrees; such factors follow the
    bounce of the few runs in them, and the traffic, at other speeds and hours, inherits
    that noise as a bias (``docs/calibration.md``, "The fit"). The temperature slope is
    therefore a correction to the datasheet's that the unit already applies, drawn
    towards none with a spread of ``temperature_prior_pct_per_c`` (1σ): the runs move it
    as far as they show it.

    Raises ValueError when the runs cannot determine a calibration (fewer than four runs,
    no row that saw every axle).
    """
    say = progress or (lambda _msg: None)
    if len(runs) < 4:
        raise ValueError(f"{len(runs)} runs matched; at least 4 are needed")
    obs = []   # (run index, lane, row, log(static/row estimate))
    for i, run in enumerate(runs):
        rows = run.weighed.row_loads_kg
        for r in range(rows.shape[1]):
            if np.isfinite(rows[:, r]).all() and rows[:, r].sum() > 0:
                obs.append((i, run.weighed.lane, r,
                            np.log(run.truck.gvw_kg / rows[:, r].sum())))
    if not obs:
        raise ValueError("no run has a row of strips that weighed every axle")
    idx = np.array([o[0] for o in obs])
    keys = sorted({(o[1], o[2]) for o in obs})
    key_of = np.array([keys.index((o[1], o[2])) for o in obs])
    y = np.array([o[3] for o in obs])
    speeds = np.array([runs[i].weighed.speed_kmh for i in idx])
    v0 = float(np.median(speeds))
    fit_speed = float(np.ptp(speeds)) >= MIN_SPEED_SPAN_KMH
    temps = np.array([np.nan if runs[i].weighed.temperature_c is None
                      else runs[i].weighed.temperature_c for i in idx])
    notes = []
    span = float(np.nanmax(temps) - np.nanmin(temps)) if np.isfinite(temps).any() else 0.0
    fit_temp = span >= MIN_TEMPERATURE_SPAN_C and np.isfinite(temps).all()
    t0 = float(np.nanmedian(temps)) if fit_temp else 0.0
    if not fit_temp:
        notes.append(f"runs span {span:.1f} °C of pavement temperature, below "
                     f"{MIN_TEMPERATURE_SPAN_C:.0f} °C: no temperature correction fitted")
    if not fit_speed:
        notes.append(f"runs span {np.ptp(speeds):.0f} km/h, below {MIN_SPEED_SPAN_KMH:.0f} "
                     "km/h: no speed correction fitted")
    n_keys = len(keys)
    design = np.hstack([np.eye(n_keys)[key_of],
                        (speeds - v0)[:, None] if fit_speed else np.zeros((len(y), 0)),
                        (temps - t0)[:, None] if fit_temp else np.zeros((len(y), 0))])
    say(f"fitting {design.shape[1]} parameters to {len(y)} row estimates of {len(runs)} runs")
    scale = max(float(np.median(np.abs(y - np.median(y)))) * 1.4826, 0.002)
    beta = least_squares(lambda b: design @ b - y, np.zeros(design.shape[1]),
                         loss="soft_l1", f_scale=scale).x
    # the runs' own scatter, then the slope's prior as one more run in those units
    scale = max(float(np.median(np.abs(y - design @ beta))) * 1.4826, 0.0005)
    prior = np.zeros((1 if fit_temp else 0, design.shape[1]))
    if fit_temp:
        prior[0, -1] = scale / (temperature_prior_pct_per_c / 100.0)
    full = np.vstack([design, prior])
    target = np.concatenate([y, np.zeros(len(prior))])
    result = least_squares(lambda b: full @ b - target, beta, loss="soft_l1", f_scale=scale)
    beta, resid = result.x, y - design @ result.x
    dof = max(len(y) - design.shape[1], 1)
    cov = np.linalg.pinv(full.T @ full) * float(np.sum(resid**2) / dof)
    sd = np.sqrt(np.clip(np.diag(cov), 0, None))
    gains = {k: float(np.exp(beta[j])) for j, k in enumerate(keys)}
    speed_slope = float(beta[n_keys]) if fit_speed else 0.0
    points = (_speed_points(np.array([r.weighed.speed_kmh for r in runs]), speed_step_kmh)
              if fit_speed else np.array([v0]))
    speed_factors = np.exp(speed_slope * (points - v0))
    slope = float(beta[-1]) if fit_temp else 0.0
    t_points = [float(np.nanmin(temps)), float(np.nanmax(temps))] if fit_temp else []
    t_factors = [float(np.exp(slope * (t - t0))) for t in t_points]
    reach = float(np.max(np.abs(points - v0)))
    unc = {"channel_gain": 100 * float(sd[:n_keys].max()),
           "speed_factor": 100 * float(sd[n_keys] * reach) if fit_speed else 0.0,
           "temperature_curve": 100 * float(sd[-1] * span / 2) if fit_temp else 0.0}
    chain = _proposed(before, site, gains=gains, centres=points, speed=speed_factors,
                      t_points=t_points, t_factors=t_factors, unc=unc, version=version,
                      fitted_from=fitted_from)
    say(f"fitted: rows {min(gains.values()):.4f}–{max(gains.values()):.4f}, "
        f"speed {100 * speed_slope:+.3f} %/(km/h), "
        f"temperature slope {100 * slope:+.3f} %/°C")
    return Fit(chain=chain, row_gain=gains, speeds_kmh=points.tolist(),
               speed_factors=speed_factors.tolist(), temperatures_c=t_points,
               temperature_factors=t_factors, uncertainty_pct=unc,
               residual_pct=100 * (np.exp(resid) - 1), n_runs=len(runs), notes=notes)


def _clip(factors: Iterable[float]) -> list[float]:
    return [float(np.clip(f, FACTOR_MIN, FACTOR_MAX)) for f in factors]


def _proposed(before: Chain, site: StripArray, *, gains: dict[tuple[int, int], float],
              centres: np.ndarray, speed: np.ndarray, t_points: list[float],
              t_factors: list[float], unc: dict[str, float], version: str,
              fitted_from: str) -> Chain:
    """The chain the fit proposes: the old stages times the corrections, not approved."""
    table = site.channel_table()
    old_gain = before.channel_factors(site.n_channels)
    new_gain = [old_gain[c] * gains.get((int(table[c, 0]), int(table[c, 1])), 1.0)
                for c in range(site.n_channels)]
    lanes = sorted({lane + 1 for lane, _ in gains})
    source = f"{fitted_from}; lanes {', '.join(map(str, lanes))}"
    chain = before.with_stage(ChannelGain(
        version=version, fitted_from=source, factors=_clip(new_gain),
        uncertainty_pct=round(unc["channel_gain"], 4)), version)
    old_speed = before.stage("speed_factor")
    speed_f = [s * (old_speed.at(c) if old_speed else 1.0) for c, s in zip(
        centres, speed, strict=True)]
    chain = chain.with_stage(SpeedFactor(
        version=version, fitted_from=source, speeds_kmh=[round(c, 2) for c in centres],
        factors=_clip(speed_f), uncertainty_pct=round(unc["speed_factor"], 4)), version)
    if t_points:
        old_t = before.stage("temperature_curve")
        t_f = [f * (old_t.at(t) if old_t else 1.0) for t, f in zip(t_points, t_factors,
                                                                     strict=True)]
        chain = chain.with_stage(TemperatureCurve(
            version=version, fitted_from=source, temperatures_c=[round(t, 2) for t in t_points],
            factors=_clip(t_f), uncertainty_pct=round(unc["temperature_curve"], 4)), version)
    return chain


def approve(chain: Chain, by: str, when: datetime | None = None) -> Chain:
    """The chain with every unapproved stage approved by ``by``, and applied by them."""
    when = when or datetime.now(UTC)
    stages = [s if s.approved_by else s.model_copy(update={"approved_by": by,
                                                           "approved_at": when})
              for s in chain.stages]
    return chain.model_copy(update={"stages": stages, "applied_by": by, "applied_at": when})
