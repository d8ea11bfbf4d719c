"""The calibration report: one HTML page and its PNG plots, for the technician and the file.

A calibration is only worth what it can show. The report puts side by side the chain the
unit weighed with before and the chain fitted (or applied) after, and shows from the
numbers why the second is better: each reference run's gross-weight error against speed,
pavement temperature and lane, each axle's error by its position, the errors of ordinary
traffic, the COST 323 class before and after (with the sentences a technician can check by
hand), and, when the unit has been watched over days, its drift, the alarms and the
corrections applied.

The page is self-contained apart from the PNG files beside it: no script, no external
style, font or image, so it opens offline and can be filed with the verification papers.
Every text that comes from a file (a stage's ``fitted_from``, the notes) is escaped by
Jinja2's autoescape. The plots are drawn by Matplotlib on ``Figure`` objects with the Agg
canvas: no display, no global pyplot state, nothing left open.
"""

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import jinja2
import numpy as np

from calibration.accuracy import AccuracyResult, CriterionResult
from calibration.chain import Chain

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from calibration.reference import Run

TEMPLATES_DIR = Path(__file__).parent / "templates"
TEMPLATE = "report.html"

WIDTH_IN, HEIGHT_IN, DPI = 8.0, 4.5, 100
"""800 × 450 pixels: readable on a screen and in print, a few tens of kB each."""
MAX_LISTED_FACTORS = 8
"""A stage with more factors than this is shown as its first few and its range."""
TRAFFIC_BINS = 40
TRAFFIC_PERCENTILES = (0.5, 99.5)
"""The traffic histogram spans these percentiles of all its errors: one wild vehicle must
not squeeze the rest into a single bar. Values outside are counted in the legend."""
MIN_SLOPE_POINTS = 3
"""A slope (error per 10 km/h, per 10 °C) is stated only from at least this many runs with
at least two distinct x values."""

FIGURE_FILES = ("speed.png", "temperature.png", "lane.png", "axles.png", "traffic.png",
                "drift.png")
"""Every PNG the report may write; one not written this time is removed, so that an old
plot never sits beside a new page."""

BEFORE, AFTER = "before", "after"
COLOURS = {BEFORE: "#c0392b", AFTER: "#1f6fb2"}
MARKERS = {BEFORE: "x", AFTER: "o"}
OTHER_COLOURS = ("#2a9d3f", "#8e44ad", "#d68910", "#17a2b8", "#555555")
"""Series other than before and after, in turn: none looks like either of those two."""


@dataclass(frozen=True)
class PassPoint:
    """One reference run, weighed with the chain before and with the chain after."""

    lane: int                       # 1-based
    truck: str
    speed_kmh: float
    temperature_c: float | None
    gvw_error_before_pct: float
    gvw_error_after_pct: float
    axle_errors_before_pct: list[float]
    axle_errors_after_pct: list[float]

    @classmethod
    def of_run(cls, run: "Run", factor: float) -> "PassPoint":
        """A reference run as weighed, and as ``factor`` (the fit's correction) would weigh it."""
        gvw_after, axles_after = run.errors_with(factor)
        return cls(lane=run.weighed.lane + 1, truck=run.truck.name,
                   speed_kmh=run.weighed.speed_kmh, temperature_c=run.weighed.temperature_c,
                   gvw_error_before_pct=run.gvw_error_pct, gvw_error_after_pct=gvw_after,
                   axle_errors_before_pct=run.axle_errors_pct.tolist(),
                   axle_errors_after_pct=axles_after.tolist())


@dataclass(frozen=True)
class DriftPoint:
    """One day of one lane's drift tracking, with tracking on or off."""

    day: int
    lane: int                       # 1-based
    tracking: bool
    drift_pct: float | None
    alarm: bool
    applied_pct: float | None
    class_value: float | None


@dataclass(frozen=True)
class Plot:
    """A figure of the report: its file and what it shows."""

    file: str
    title: str
    caption: str


# Numbers as people read them --------------------------------------------------------------


def _pct(value: float | None, signed: bool = True, digits: int = 2) -> str:
    """``+0.21 %``, ``−3.10 %`` (a true minus sign), ``—`` for nothing."""
    if value is None or not math.isfinite(value):
        return "—"
    value = value if round(value, digits) != 0 else 0.0  # no "−0.00 %"
    text = f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
    return text.replace("-", "−") + " %"


def _num(value: float | None, digits: int = 2) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.{digits}f}".replace("-", "−")


def _compact(values: Sequence[float], digits: int) -> str:
    """All values if they are few; else the first few, the count and the range."""
    shown = [f"{v:.{digits}f}" for v in values[:MAX_LISTED_FACTORS]]
    if len(values) <= MAX_LISTED_FACTORS:
        return ", ".join(shown)
    return (f"{', '.join(shown[:4])}, … ({len(values)} values, "
            f"{min(values):.{digits}f}–{max(values):.{digits}f})")


def _when(value: datetime | None) -> str:
    return value.isoformat(sep=" ", timespec="minutes") if value is not None else "—"


# The chains -------------------------------------------------------------------------------


def _stage_row(index: int, stage: Any) -> dict[str, str]:
    points = getattr(stage, "speeds_kmh", None) or getattr(stage, "temperatures_c", None)
    point_unit = " km/h" if hasattr(stage, "speeds_kmh") else " °C"
    approved = (f"{stage.approved_by}, {_when(stage.approved_at)}" if stage.approved_by
                else "not approved")
    return {"index": str(index), "kind": stage.kind, "version": stage.version,
            "unit": stage.unit,
            "points": _compact(points, 1) + point_unit if points else "—",
            "factors": _compact(stage.factors, 4),
            "uncertainty": f"±{stage.uncertainty_pct:.2f} %",
            "fitted_from": stage.fitted_from, "approved": approved}


def _chain_view(label: str, chain: Chain, proposed: bool) -> dict[str, Any]:
    """The chain's identity and stages as the page shows them. An unapplied chain after
    calibration is the proposal: only ``zhichao calibrate apply`` with a name applies it."""
    cert = chain.certificate
    certificate = (f"{cert.number}, valid {cert.valid_from} to {cert.valid_to}"
                   + (f", issued by {cert.issuer}" if cert.issuer else "")
                   if cert is not None else "none")
    unapplied = "not applied: proposed" if proposed else "not recorded"
    applied = (f"{chain.applied_by}, {_when(chain.applied_at)}" if chain.applied_by
               else unapplied)
    return {"label": label, "device_id": chain.device_id, "version": chain.version,
            "digest": chain.digest(), "digest_short": chain.digest()[:12],
            "certificate": certificate, "applied": applied, "note": chain.note,
            "stages": [_stage_row(i, s) for i, s in enumerate(chain.stages, 1)]}


def chain_changes(before: Chain, after: Chain) -> list[str]:
    """What the second chain does differently, stage kind by stage kind."""
    if before.digest() == after.digest():
        return ["The chain is unchanged."]
    lines = [f"The chain goes from version {before.version} ({len(before.stages)} stage(s)) "
             f"to {after.version} ({len(after.stages)} stage(s))."]
    old = {s.kind: s for s in before.stages}
    new = {s.kind: s for s in after.stages}
    for kind in [*old, *(k for k in new if k not in old)]:
        a, b = old.get(kind), new.get(kind)
        if a is None and b is not None:
            lines.append(f"Added {kind} {b.version} ({len(b.factors)} factor(s) "
                         f"{min(b.factors):.4f}–{max(b.factors):.4f}, from {b.fitted_from}).")
        elif b is None and a is not None:
            lines.append(f"Removed {kind} {a.version}.")
        elif a is not None and b is not None and a != b:
            lines.append(f"Replaced {kind} {a.version} by {b.version} (factors now "
                         f"{min(b.factors):.4f}–{max(b.factors):.4f}, were "
                         f"{min(a.factors):.4f}–{max(a.factors):.4f}).")
    return lines


# Why: the numbers before and after ------------------------------------------------------------


def _assessment(accuracy: Mapping[str, AccuracyResult], when: str) -> AccuracyResult | None:
    """The assessment named ``when`` ("before", "after"), else the first whose name starts
    with it ("after (same runs)")."""
    if when in accuracy:
        return accuracy[when]
    return next((r for k, r in accuracy.items() if k.startswith(when)), None)


def _gvw(result: AccuracyResult) -> CriterionResult | None:
    return next((c for c in result.criteria if c.criterion == "gvw"), None)


def _slope_per_10(x: Sequence[float], y: Sequence[float]) -> float | None:
    """The least-squares slope of y on x, per 10 units of x, or None if x does not vary."""
    xs, ys = np.asarray(x, float), np.asarray(y, float)
    if xs.size < MIN_SLOPE_POINTS or np.unique(xs).size < 2:
        return None
    return float(np.polyfit(xs, ys, 1)[0] * 10)


def _runs_why(runs: Sequence[PassPoint]) -> list[str]:
    """The reference runs' mean, spread, speed and temperature dependence, before → after."""
    if not runs:
        return []
    before = np.array([r.gvw_error_before_pct for r in runs])
    after = np.array([r.gvw_error_after_pct for r in runs])
    def spread(a: np.ndarray) -> float:
        return float(np.std(a, ddof=1)) if a.size > 1 else float("nan")

    lines = [f"Over the {len(runs)} reference runs the mean gross-weight error went from "
             f"{_pct(float(before.mean()))} to {_pct(float(after.mean()))}, the spread "
             f"(standard deviation) from {_pct(spread(before), False)} to "
             f"{_pct(spread(after), False)}."]
    speeds = [r.speed_kmh for r in runs]
    sb, sa = _slope_per_10(speeds, before), _slope_per_10(speeds, after)
    if sb is not None and sa is not None:
        lines.append(f"The error changed by {_pct(sb)} per 10 km/h of speed before and by "
                     f"{_pct(sa)} after.")
    warm = [r for r in runs if r.temperature_c is not None]
    temps = [r.temperature_c for r in warm if r.temperature_c is not None]
    tb = _slope_per_10(temps, [r.gvw_error_before_pct for r in warm])
    ta = _slope_per_10(temps, [r.gvw_error_after_pct for r in warm])
    if tb is not None and ta is not None:
        lines.append(f"It changed by {_pct(tb)} per 10 °C of pavement temperature before "
                     f"and by {_pct(ta)} after.")
    lanes = sorted({r.lane for r in runs})
    if len(lanes) > 1:
        means = {when: [float(np.mean([getattr(r, f"gvw_error_{when}_pct") for r in runs
                                       if r.lane == lane])) for lane in lanes]
                 for when in (BEFORE, AFTER)}
        gap = {when: _pct(max(m) - min(m), False) for when, m in means.items()}
        lines.append(f"The lanes' mean errors lay {gap[BEFORE]} apart before and "
                     f"{gap[AFTER]} after.")
    return lines


def _accuracy_why(accuracy: Mapping[str, AccuracyResult]) -> list[str]:
    """The COST 323 gross-weight statistics and class, before → after."""
    before, after = _assessment(accuracy, BEFORE), _assessment(accuracy, AFTER)
    if before is None or after is None:
        return []
    line = f"COST 323 class {before.class_name} → {after.class_name}"
    gb, ga = _gvw(before), _gvw(after)
    if gb is not None and ga is not None:
        line = (f"In the accuracy test (gross weight, {gb.n} → {ga.n} vehicles) the mean "
                f"error went from {_pct(gb.mean)} to {_pct(ga.mean)}, the spread from "
                f"{_pct(gb.std, False)} to {_pct(ga.std, False)}, d_min from "
                f"{_pct(gb.d_min, False)} to {_pct(ga.d_min, False)}: " + line)
    return [f"{line} ({_verdict(before, after)}; plan {after.plan}, environment {after.env})."]


def _verdict(before: AccuracyResult, after: AccuracyResult) -> str:
    """Better, the same or worse, in words; within one class, by the tolerance met (a unit
    whose factory chain was already in the class is still nearer its edge)."""
    if after.class_value != before.class_value:
        return "better" if after.class_value < before.class_value else "worse"
    gb, ga = _gvw(before), _gvw(after)
    if gb is None or ga is None or math.isclose(gb.d_min, ga.d_min, abs_tol=0.005):
        return "the same"
    change = "smaller" if ga.d_min < gb.d_min else "larger"
    return (f"the same class, met with a {change} tolerance: d_min "
            f"{_pct(gb.d_min, False)} → {_pct(ga.d_min, False)}")


# The drift ----------------------------------------------------------------------------------


def _drift_summary(drift: Sequence[DriftPoint]) -> list[dict[str, str]]:
    """Per lane and tracking mode: the days, first alarm, corrections, worst drift and class."""
    rows = []
    for lane in sorted({p.lane for p in drift}):
        for tracking in (True, False):
            points = sorted((p for p in drift if p.lane == lane and p.tracking == tracking),
                            key=lambda p: p.day)
            if not points:
                continue
            alarms = [p.day for p in points if p.alarm]
            applied = [p for p in points if p.applied_pct is not None]
            drifts = [abs(p.drift_pct) for p in points if p.drift_pct is not None]
            classes = [p.class_value for p in points if p.class_value is not None]
            corrections = "; ".join(f"day {p.day}: {_pct(p.applied_pct)}" for p in applied)
            rows.append({
                "lane": str(lane), "tracking": "on" if tracking else "off",
                "days": f"{points[0].day}–{points[-1].day} ({len(points)})",
                "first_alarm": f"day {alarms[0]}" if alarms else "none",
                "alarms": str(len(alarms)),
                "corrections": corrections or "none",
                "worst_drift": _pct(max(drifts), False) if drifts else "—",
                "worst_class": f"{max(classes):g}" if classes else "—",
                "last_class": f"{classes[-1]:g}" if classes else "—"})
    return rows


def _drift_why(rows: Sequence[dict[str, str]]) -> list[str]:
    """One sentence per lane: when the alarm fires with tracking off and on."""
    lines = []
    for lane in dict.fromkeys(r["lane"] for r in rows):
        mode = {r["tracking"]: r for r in rows if r["lane"] == lane}
        parts = [f"with tracking {m}, first alarm: {mode[m]['first_alarm']}, corrections: "
                 f"{mode[m]['corrections']}" for m in ("off", "on") if m in mode]
        lines.append(f"Lane {lane}: " + "; ".join(parts) + ".")
    return lines


# The plots ----------------------------------------------------------------------------------


def _figure(rows: int = 1, height: float = HEIGHT_IN,
            ratios: Sequence[float] | None = None) -> tuple["Figure", Any]:
    """A figure on the Agg canvas (no display, no pyplot state) and its axes: one, or a
    column of ``rows`` sharing the x axis."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415 (heavy:
    from matplotlib.figure import Figure  # noqa: PLC0415  only when a report is drawn)

    fig = Figure(figsize=(WIDTH_IN, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    if rows == 1:
        return fig, fig.subplots()
    return fig, fig.subplots(rows, 1, sharex=True, squeeze=False,
                             gridspec_kw={"height_ratios": ratios})[:, 0]


def _save(fig: "Figure", path: Path) -> None:
    fig.savefig(path, dpi=DPI, format="png", metadata={"Software": None})
    fig.clear()


def _reference_lines(ax: "Axes", delta: float | None) -> None:
    """The zero line, and the class tolerance ±δ where there is one."""
    ax.axhline(0.0, color="0.3", linewidth=0.8)
    if delta is not None:
        for sign in (-1, 1):
            ax.axhline(sign * delta, color="0.45", linestyle="--", linewidth=0.9,
                       label=f"±δ = {delta:g} %" if sign > 0 else None)
    ax.grid(True, alpha=0.3)


def _before_after_scatter(path: Path, runs: Sequence[PassPoint], x: Sequence[float],
                          xlabel: str, delta: float | None) -> None:
    fig, ax = _figure()
    for when in (BEFORE, AFTER):
        y = [getattr(r, f"gvw_error_{when}_pct") for r in runs]
        ax.scatter(x, y, marker=MARKERS[when], s=28, color=COLOURS[when],
                   facecolors="none" if when == AFTER else None, label=when)
    _reference_lines(ax, delta)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("gross-weight error, %")
    ax.legend(loc="best", fontsize="small")
    _save(fig, path)


def _paired_boxes(path: Path, groups: Sequence[int], data: Mapping[str, list[list[float]]],
                  *, xlabel: str, ylabel: str, delta: float | None) -> None:
    """Box plots side by side, before and after, for each group (lane, axle position)."""
    fig, ax = _figure()
    positions = np.arange(1, len(groups) + 1, dtype=float)
    for offset, when in ((-0.18, BEFORE), (0.18, AFTER)):
        kept = [(p + offset, d) for p, d in zip(positions, data[when], strict=True) if d]
        if not kept:
            continue
        ax.boxplot([d for _, d in kept], positions=[p for p, _ in kept], widths=0.3,
                   manage_ticks=False, patch_artist=True,
                   boxprops={"facecolor": COLOURS[when], "alpha": 0.35},
                   medianprops={"color": COLOURS[when]},
                   flierprops={"marker": MARKERS[when], "markeredgecolor": COLOURS[when]})
        ax.plot([], [], color=COLOURS[when], linewidth=6, alpha=0.35, label=when)
    _reference_lines(ax, delta)
    ax.set_xticks(positions, [str(g) for g in groups])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(loc="best", fontsize="small")
    _save(fig, path)


def _traffic_plot(path: Path, series: Mapping[str, np.ndarray], delta: float | None) -> None:
    fig, ax = _figure()
    everything = np.concatenate(list(series.values()))
    lo, hi = np.percentile(everything, TRAFFIC_PERCENTILES)
    if hi <= lo:
        lo, hi = lo - 1.0, hi + 1.0
    bins = np.linspace(lo, hi, TRAFFIC_BINS + 1)
    others = itertools.cycle(OTHER_COLOURS)
    for key, values in series.items():
        outside = int(np.sum((values < lo) | (values > hi)))
        label = (f"{key} (n = {values.size}, mean {values.mean():+.2f} %, "
                 f"std {values.std(ddof=1) if values.size > 1 else 0.0:.2f} %"
                 + (f", {outside} outside" if outside else "") + ")")
        ax.hist(values, bins=bins, histtype="step", linewidth=1.4,
                color=COLOURS.get(key) or next(others),
                label=label.replace("-", "−").replace("$", r"\$"))  # "$" is not mathtext
    ax.axvline(0.0, color="0.3", linewidth=0.8)
    if delta is not None:
        for sign in (-1, 1):
            ax.axvline(sign * delta, color="0.45", linestyle="--", linewidth=0.9,
                       label=f"±δ = {delta:g} %" if sign > 0 else None)
    ax.set_xlabel("gross-weight error of unflagged vehicles, %")
    ax.set_ylabel("vehicles")
    ax.grid(True, alpha=0.3)
    ax.set_ylim(0, ax.get_ylim()[1] * (1.15 + 0.07 * len(series)))  # room for the legend
    ax.legend(loc="upper left", fontsize="x-small")
    _save(fig, path)


def _drift_plot(path: Path, drift: Sequence[DriftPoint]) -> None:
    """Per lane: drift by day (tracking on and off), alarms, corrections; below, the class."""
    lanes = sorted({p.lane for p in drift})
    fig, axes = _figure(rows=2 * len(lanes), height=max(HEIGHT_IN, 3.0 * len(lanes)),
                        ratios=[2.0, 1.0] * len(lanes))
    styles = {True: ("#1f6fb2", "-", "tracking on"), False: ("#c0392b", "--", "tracking off")}
    for i, lane in enumerate(lanes):
        ax, ax_class = axes[2 * i], axes[2 * i + 1]
        for tracking, (colour, line, label) in styles.items():
            pts = sorted((p for p in drift if p.lane == lane and p.tracking == tracking),
                         key=lambda p: p.day)
            if not pts:
                continue
            days = [p.day for p in pts]
            ax.plot(days, [np.nan if p.drift_pct is None else p.drift_pct for p in pts],
                    color=colour, linestyle=line, linewidth=1.2, label=label)
            alarm = [p for p in pts if p.alarm]
            ax.scatter([p.day for p in alarm],
                       [0.0 if p.drift_pct is None else p.drift_pct for p in alarm],
                       marker="v", s=30, color=colour, zorder=3,
                       label=f"alarm ({label})" if alarm else None)
            for p in pts:
                if p.applied_pct is not None:
                    ax.axvline(p.day, color=colour, linestyle=":", linewidth=1.0)
            if any(p.applied_pct is not None for p in pts):
                ax.plot([], [], color=colour, linestyle=":", label=f"correction ({label})")
            ax_class.step(days, [np.nan if p.class_value is None else p.class_value
                                 for p in pts], where="mid", color=colour, linestyle=line,
                          label=label)
        ax.axhline(0.0, color="0.3", linewidth=0.8)
        ax.set_ylabel(f"lane {lane}\ndrift, %")
        ax.grid(True, alpha=0.3)
        ax_class.set_ylabel("class value")
        ax_class.grid(True, alpha=0.3)
    axes[-1].set_xlabel("day")
    legend = {}
    for ax in axes:
        handles, labels = ax.get_legend_handles_labels()
        legend.update(zip(labels, handles, strict=True))
    fig.legend(list(legend.values()), list(legend), loc="outside upper center", ncol=3,
               fontsize="small")
    _save(fig, path)


def _delta_after(accuracy: Mapping[str, AccuracyResult]) -> float | None:
    """The gross-weight tolerance ±δ of the class reached after calibration, if assessed."""
    after = _assessment(accuracy, AFTER)
    gvw = _gvw(after) if after is not None else None
    return gvw.delta if gvw is not None else None


def _axle_groups(runs: Sequence[PassPoint]) -> tuple[list[int], dict[str, list[list[float]]]]:
    """Axle errors by position (1st, 2nd, ...), before and after."""
    most = max((len(r.axle_errors_before_pct) for r in runs), default=0)
    positions = list(range(1, most + 1))
    data = {when: [[float(r_errors[i]) for r in runs
                    if i < len(r_errors := getattr(r, f"axle_errors_{when}_pct"))]
                   for i in range(most)] for when in (BEFORE, AFTER)}
    return positions, data


def _plots(out_dir: Path, runs: Sequence[PassPoint], accuracy: Mapping[str, AccuracyResult],
           traffic: Mapping[str, np.ndarray], drift: Sequence[DriftPoint]) -> list[Plot]:
    """Draw every figure there are data for; return them in the page's order."""
    delta = _delta_after(accuracy)
    tol = " Dashed: the gross-weight tolerance ±δ of the class reached after." \
        if delta is not None else ""
    plots = []
    if runs:
        _before_after_scatter(out_dir / "speed.png", runs, [r.speed_kmh for r in runs],
                              "speed, km/h", delta)
        plots.append(Plot("speed.png", "Gross-weight error against speed",
                          "Each reference run, weighed with the chain before (×) and after "
                          f"(○).{tol}"))
        warm = [r for r in runs if r.temperature_c is not None]
        if warm:
            _before_after_scatter(out_dir / "temperature.png", warm,
                                  [float(r.temperature_c or 0.0) for r in warm],
                                  "pavement temperature, °C", delta)
            plots.append(Plot("temperature.png", "Gross-weight error against pavement "
                              "temperature", f"{len(warm)} of {len(runs)} runs had a "
                              f"pavement temperature.{tol}"))
        lanes = sorted({r.lane for r in runs})
        by_lane = {when: [[getattr(r, f"gvw_error_{when}_pct") for r in runs if r.lane == lane]
                          for lane in lanes] for when in (BEFORE, AFTER)}
        _paired_boxes(out_dir / "lane.png", lanes, by_lane, xlabel="lane",
                      ylabel="gross-weight error, %", delta=delta)
        plots.append(Plot("lane.png", "Gross-weight error by lane",
                          f"Box: quartiles and median; whiskers: 1.5 × the quartile range.{tol}"))
        positions, by_axle = _axle_groups(runs)
        if positions:
            _paired_boxes(out_dir / "axles.png", positions, by_axle,
                          xlabel="axle (from the front)", ylabel="axle-load error, %",
                          delta=None)
            plots.append(Plot("axles.png", "Axle error by axle position",
                              "Each axle's error against its static load, 1st axle first; "
                              "a position holds the runs of trucks with that many axles."))
    if traffic:
        _traffic_plot(out_dir / "traffic.png", traffic, delta)
        plots.append(Plot("traffic.png", "Gross-weight errors of unflagged traffic",
                          f"One outline per series.{tol}"))
    if drift:
        _drift_plot(out_dir / "drift.png", drift)
        plots.append(Plot("drift.png", "Drift by day",
                          "For each lane: above, the drift the tracked steer axles show "
                          "(▼ alarm, dotted line: a correction applied); below, the day's "
                          "class value (the gross-weight tolerance of the class, %)."))
    return plots


# The page -----------------------------------------------------------------------------------


def _clean_traffic(traffic: Mapping[str, Iterable[float]]) -> dict[str, np.ndarray]:
    """Finite values only; series with none are left out."""
    out = {}
    for key, values in traffic.items():
        arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values,
                         dtype=float).ravel()
        arr = arr[np.isfinite(arr)]
        if arr.size:
            out[str(key)] = arr
    return out


def _traffic_rows(traffic: Mapping[str, np.ndarray]) -> list[dict[str, str]]:
    return [{"key": key, "n": str(v.size), "mean": _pct(float(v.mean())),
             "std": _pct(float(v.std(ddof=1)), False) if v.size > 1 else "—",
             "p95": _pct(float(np.percentile(np.abs(v), 95)), False)}
            for key, v in traffic.items()]


def _accuracy_view(key: str, result: AccuracyResult) -> dict[str, Any]:
    rows = [{"criterion": c.criterion, "n": str(c.n), "mean": _pct(c.mean),
             "std": _pct(c.std, False), "pi0": _pct(c.pi0, False, 1),
             "d_min": _pct(c.d_min, False), "class": c.class_name,
             "delta": f"±{c.delta:g} %", "pi": _pct(c.pi, False, 1),
             "accepted": "yes" if c.accepted else "no"} for c in result.criteria]
    return {"key": key, "class_name": result.class_name, "plan": result.plan,
            "env": result.env, "initial": result.initial, "accepted": result.accepted,
            "rows": rows, "explain": result.explain()}


def _run_rows(runs: Sequence[PassPoint]) -> list[dict[str, str]]:
    return [{"lane": str(r.lane), "truck": r.truck, "speed": _num(r.speed_kmh, 1),
             "temperature": _num(r.temperature_c, 1),
             "before": _pct(r.gvw_error_before_pct), "after": _pct(r.gvw_error_after_pct)}
            for r in runs]


def _environment() -> jinja2.Environment:
    """Jinja2 over the shipped template, escaping every value put into the page."""
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
                              autoescape=True, undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


_EMPTY: Mapping[str, Any] = MappingProxyType({})


def write_report(out_dir: Path, *, title: str, chain_before: Chain, chain_after: Chain,
                 runs: Sequence[PassPoint], accuracy: Mapping[str, AccuracyResult],
                 traffic_errors: Mapping[str, np.ndarray] = _EMPTY,
                 drift: Sequence[DriftPoint] = (), notes: Sequence[str] = (),
                 figures: Mapping[str, Any] = _EMPTY) -> Path:
    """Write ``out_dir/index.html`` and its PNG plots; return the page's path.

    ``runs``: the reference runs, weighed before and after; ``accuracy``: COST 323
    assessments by name ("before" and "after", or the first names starting with them, are
    compared in the page's summary, and the gross-weight ±δ of "after" is drawn);
    ``traffic_errors``: gross-weight errors (%) of unflagged vehicles by series;
    ``drift``: days of drift tracking; ``notes``: sentences shown as they are;
    ``figures``: key numbers shown as a table. A plot without data is not drawn.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    traffic = _clean_traffic(traffic_errors)
    plots = _plots(out_dir, runs, accuracy, traffic, drift)
    drawn = {p.file for p in plots}
    for name in FIGURE_FILES:
        if name not in drawn:
            (out_dir / name).unlink(missing_ok=True)
    drift_rows = _drift_summary(drift)
    why = [*_accuracy_why(accuracy), *_runs_why(runs), *chain_changes(chain_before, chain_after),
           *_drift_why(drift_rows)]
    page = _environment().get_template(TEMPLATE).render(
        title=title,
        chains=[_chain_view("Before", chain_before, proposed=False),
                _chain_view("After", chain_after, proposed=True)],
        why=why, plots=plots,
        accuracy=[_accuracy_view(k, r) for k, r in accuracy.items()],
        traffic=_traffic_rows(traffic), drift=drift_rows,
        notes=[str(n) for n in notes],
        figures=[(str(k), str(v)) for k, v in figures.items()],
        runs=_run_rows(runs),
        temperature_missing=sum(r.temperature_c is None for r in runs))
    index = out_dir / "index.html"
    tmp = index.with_name(index.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(index)
    return index
