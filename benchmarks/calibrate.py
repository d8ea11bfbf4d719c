"""Calibration on the simulated site: reference trucks, before and after, and days of drift.

The simulated strips are polymer piezo strips as they are (:mod:`sim.sensor`): each
channel's own gain, a sensitivity that changes with pavement temperature and with speed,
each channel drifting slowly; the unit corrects temperature with its site's datasheet
coefficient only. The study:

1. Day 0, before calibration: a day of traffic weighed with the factory chain; the
   COST 323 class of the unflagged vehicles' gross weights (plan r2, environment I).
2. Reference trucks (two trucks × ten runs per lane, 40–80 km/h, spread over the working
   day) weighed, matched to their static weights and a chain fitted
   (:mod:`calibration.reference`); the same day's traffic weighed again with it.
3. ``--days`` more days (traffic sampled over each whole day: a day in seconds of signal),
   weighed twice from the same signal: with the calibrated chain as it was (tracking off,
   alarm only) and with drift tracking on (a technician approves each proposed lane
   correction on a weekly visit). Per day: the class of the last seven days' gross
   weights, each lane's drift and alarm.

    python benchmarks/calibrate.py                      # a table
    python benchmarks/calibrate.py --report out/ --json # the HTML report; JSON, the table on stderr
    python benchmarks/calibrate.py --cache days/ --drift estimator=window
        # the weighed days kept in days/: a second run with other tracker settings
        # replays them in seconds instead of rendering them again

The figures are of a simulation whose sensor effects are stated assumptions (see
``sim/sensor.py``); they show the procedure works on such a sensor, not a real site's class.
"""

import sys
from pathlib import Path

# Run as a file, this folder would come first on sys.path and its signal.py would stand in
# for the standard library's module: take the folder off, put the project on.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import hashlib
import json
import os
import pickle
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from calibration.accuracy import AccuracyResult, assess
from calibration.chain import Certificate, Chain
from calibration.drift import DriftSettings, DriftTracker, lane_correction
from calibration.reference import (
    Fit,
    ReferenceTruck,
    WeighedPass,
    approve,
    fit_chain,
    match_runs,
)
from calibration.report import DriftPoint, PassPoint, write_report
from drivers.strips import StripArray
from edge.settings import EdgeSettings
from edge.signal.vehicles import Vehicle
from edge.weighing import load_rules_for, signal_loop
from sim.days import DayTraffic, sample_day
from sim.reference import default_trucks, reference_runs
from sim.render import Renderer
from sim.score import match
from sim.sensor import SENSOR_TYPES, Climate, GainDrift, SensorResponse, SensorState
from sim.traffic import VehicleTruth

DEVICE = "sim-unit-01"
TRUTH = SENSOR_TYPES["piezo_polymer"]
DATASHEET_SHARE = 0.9
"""The unit's strips follow 90 % of the datasheet's temperature slope (an assumption: the
datasheet is of the type, not of these strips)."""
START = date(2026, 9, 15)
SLOT_S = 8.0
BLOCK_S = 1.0
EVAL_DAYS = 7
"""Each day's class is of the gross weights of the last seven days: a week of traffic."""


@dataclass(frozen=True)
class Study:
    """The simulated site and its sensor, as they are."""

    lanes: int = 2
    seed: int = 1
    per_lane: int = 300
    days: int = 90
    visit_days: int = 7
    start: date = START
    response: SensorResponse = TRUTH
    climate: Climate = field(default_factory=Climate)
    drift: GainDrift = field(default_factory=GainDrift)
    drift_settings: DriftSettings = field(default_factory=DriftSettings)

    @property
    def site(self) -> StripArray:
        return StripArray(lanes=self.lanes,
                          temp_coeff_per_c=self.response.temp_linear_per_c * DATASHEET_SHARE)

    def settings(self) -> EdgeSettings:
        return EdgeSettings(device_id=DEVICE, site=self.site)


WEIGHING_SOURCES = ("sim", "edge", "drivers", "calibration/chain.py",
                    "calibration/reference.py", "config/rules")
"""What a weighed day depends on besides the study's settings: a change here is a new key."""


class DayCache:
    """Days already weighed, kept on disk, so that other tracker settings replay them.

    Rendering and weighing a day of traffic is nearly all of the study's time; the drift
    tracker only reads what was weighed. Each entry's name carries a digest of the study
    (everything but the tracker's settings and the number of days) and of the sources the
    weighing runs through (:data:`WEIGHING_SOURCES`), so a changed simulator never reads
    an old day. The files are pickles: keep the folder your own.
    """

    def __init__(self, folder: Path | None, study: Study) -> None:
        self.folder = folder
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        root = Path(__file__).resolve().parents[1]
        what = {k: repr(v) for k, v in asdict(study).items()
                if k not in ("drift_settings", "days")}
        what["constants"] = repr((DEVICE, TRUTH, DATASHEET_SHARE, SLOT_S, BLOCK_S))
        h = hashlib.sha256(json.dumps(what, sort_keys=True).encode())
        for path in sorted(_files(root / s for s in WEIGHING_SOURCES)):
            h.update(str(path.relative_to(root)).encode() + path.read_bytes())
        self.key = h.hexdigest()[:16]

    def get(self, name: str, make: Callable[[], object]) -> object:
        """The entry ``name``, made (and kept) if it is not there yet."""
        if self.folder is None:
            return make()
        path = self.folder / f"{self.key}-{name}.pickle"
        if path.exists():
            return pickle.loads(path.read_bytes())
        value = make()
        part = path.with_suffix(f".{os.getpid()}.part")
        part.write_bytes(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
        part.replace(path)
        return value


def _files(paths: Iterable[Path]) -> Iterable[Path]:
    """Every file under ``paths`` (files as they are, folders walked), caches aside."""
    for p in paths:
        if p.is_file():
            yield p
        elif p.is_dir():
            yield from (f for f in p.rglob("*") if f.is_file() and "__pycache__" not in f.parts)


def weigh(study: Study, vehicles: Sequence[VehicleTruth], states: dict[int, SensorState],
          temperature_at: Callable[[float], float], *, chain: Chain, rules: object
          ) -> list[Vehicle]:
    """Render the vehicles as the sensor saw them and weigh them with ``chain`` through the
    unit's own signal loop, each block with its pavement temperature."""
    site = study.site
    loop = signal_loop(study.settings(), rules, chain)
    renderer = Renderer(site, list(vehicles), seed=study.seed, response=study.response,
                        states=states)
    end_s = max(v.t0_s for v in vehicles) + SLOT_S
    step = round(BLOCK_S * site.fs_hz)
    out: list[Vehicle] = []
    for start in range(0, round(end_s * site.fs_hz), step):
        block = renderer.render(start, step)
        out += loop.process(block, start_index=start,
                            temperature_c=temperature_at(start / site.fs_hz))
    return out + loop.flush()


def reweigh(v: Vehicle, chain_from: Chain, chain_to: Chain) -> Vehicle:
    """The vehicle as ``chain_to`` would weigh it, where the two chains differ only in
    their per-vehicle stages (speed, temperature, lane): the loop's arithmetic exactly."""
    temp = v.temperature_c if v.temperature_c is not None else 20.0
    ratio = (chain_to.vehicle_factor(v.lane, v.speed_mps, temp)
             / chain_from.vehicle_factor(v.lane, v.speed_mps, temp))
    return replace(v, axle_loads_kg=v.axle_loads_kg * ratio, row_loads_kg=v.row_loads_kg * ratio)


def counted(truth: Sequence[VehicleTruth], measured: Sequence[Vehicle]
            ) -> list[tuple[int, int]]:
    """Pairs (truth, measured) of the vehicles an accuracy counts: matched, unflagged and
    weighed with the right axle count."""
    return [(i, j) for i, j in match(truth, measured)
            if not measured[j].flags and measured[j].n_axles == truth[i].n_axles]


def gvw_errors(truth: Sequence[VehicleTruth], measured: Sequence[Vehicle]) -> np.ndarray:
    """Gross-weight errors (%) of the vehicles an accuracy counts (:func:`counted`)."""
    return np.array([100.0 * (measured[j].gvw_kg / truth[i].gvw_kg - 1.0)
                     for i, j in counted(truth, measured)])


def traffic_day(study: Study, day: int) -> DayTraffic:
    """Day ``day``'s sampled traffic and the sensor each vehicle found."""
    return sample_day(study.site, day, study.start, study.per_lane, seed=study.seed,
                      climate=study.climate, drift=study.drift, response=study.response,
                      slot_s=SLOT_S)


def reference_day(study: Study, trucks: Sequence[ReferenceTruck]):
    """The reference runs of calibration day 0, spread over 08:00–17:00, one per slot."""
    runs = reference_runs(study.site, trucks_as_sim(trucks), runs_per_truck=10,
                          seed=study.seed)
    runs = [replace(v, t0_s=1.0 + k * SLOT_S) for k, v in enumerate(runs)]
    on = datetime.combine(study.start, datetime.min.time())
    times = [on + timedelta(hours=8 + 9 * k / len(runs)) for k in range(len(runs))]
    temps = [study.climate.pavement_c(t) for t in times]
    states = {v.vehicle_id: SensorState(temps[k], study.drift.channel_gains(
        study.site.n_channels, (t - on).total_seconds() / 86400, study.seed,
        channels_per_lane=study.site.channels_per_lane))
        for k, (v, t) in enumerate(zip(runs, times, strict=True))}
    return runs, states, (lambda t: temps[min(int(t // SLOT_S), len(temps) - 1)]), temps


_SIM_TRUCKS = {t.name: t for t in default_trucks()}


def trucks_as_sim(trucks: Sequence[ReferenceTruck]) -> list:
    """The simulator's trucks behind the static weights (to drive them over the strips)."""
    return [_SIM_TRUCKS[t.name] for t in trucks]


def static_weights() -> list[ReferenceTruck]:
    """The reference trucks as the static scale gave them (what a technician types in)."""
    return [ReferenceTruck(t.name, tuple(t.static_axle_kg), tuple(t.spacings_m), t.code)
            for t in default_trucks()]


@dataclass
class Outcome:
    """What the study measured."""

    before: AccuracyResult
    after: AccuracyResult
    fit: Fit
    chain_before: Chain
    chain_after: Chain
    runs: list
    errors: dict[str, np.ndarray]
    daily: list[dict]
    drift: list[dict]
    figures: dict


def calibrate(study: Study, rules: object, progress: Callable[[str], None],
              cache: DayCache | None = None) -> tuple:
    """Steps 1 and 2: the factory chain's class, the fitted chain, and its class."""
    if cache is not None:
        return cache.get("calibration", lambda: calibrate(study, rules, progress))
    factory = Chain.identity(DEVICE)
    day0 = traffic_day(study, 0)
    progress("day 0: weighing traffic with the factory chain")
    measured0 = weigh(study, day0.vehicles, day0.states, day0.temperature_at,
                      chain=factory, rules=rules)
    before_err = gvw_errors(day0.vehicles, measured0)
    trucks = static_weights()
    runs, states, temp_at, temps = reference_day(study, trucks)
    progress(f"reference runs: {len(runs)} passes of {len(trucks)} trucks, "
             f"{min(temps):.1f}–{max(temps):.1f} °C")
    weighed = weigh(study, runs, states, temp_at, chain=factory, rules=rules)
    matched, refused = match_runs(trucks, [WeighedPass.from_vehicle(v) for v in weighed])
    fit = fit_chain(matched, factory, study.site, version="cal-1",
                    fitted_from=f"{len(matched)} runs of {len(trucks)} reference trucks, "
                                f"{study.start}", progress=progress)
    chain = approve(fit.chain, "technician (simulated)",
                    datetime.combine(study.start, datetime.min.time(), UTC))
    chain = chain.model_copy(update={"certificate": Certificate(
        number="JJG907-SIM-0001", valid_from=study.start,
        valid_to=study.start + timedelta(days=365), issuer="simulated metrology institute")})
    progress("day 0: weighing the same traffic with the calibrated chain")
    measured1 = weigh(study, day0.vehicles, day0.states, day0.temperature_at,
                      chain=chain, rules=rules)
    after_err = gvw_errors(day0.vehicles, measured1)
    return factory, chain, fit, matched, refused, before_err, after_err


def weighed_day(study: Study, day: int, chain: Chain, rules: object,
                cache: DayCache | None = None) -> tuple[DayTraffic, list[Vehicle]]:
    """Day ``day``'s traffic and the vehicles as ``chain`` weighed them."""
    def make() -> tuple[DayTraffic, list[Vehicle]]:
        traffic = traffic_day(study, day)
        return traffic, weigh(study, traffic.vehicles, traffic.states, traffic.temperature_at,
                              chain=chain, rules=rules)
    if cache is None:
        return make()
    digest = hashlib.sha256(chain.model_dump_json().encode()).hexdigest()[:12]
    return cache.get(f"day{day}-{digest}", make)


def track(study: Study, chain: Chain, rules: object, progress: Callable[[str], None],
          cache: DayCache | None = None):
    """Step 3: the days after calibration, tracking off and on, from the same signal."""
    lanes = study.lanes
    off, on = DriftTracker(lanes, study.drift_settings), DriftTracker(lanes, study.drift_settings)
    chain_on, daily, drift = chain, [], []
    recent: dict[str, deque] = {"off": deque(maxlen=EVAL_DAYS), "on": deque(maxlen=EVAL_DAYS)}
    for day in range(1, study.days + 1):
        traffic, weighed = weighed_day(study, day, chain, rules, cache)
        weighed_on = [reweigh(v, chain, chain_on) for v in weighed]
        row = {"day": day, "date": str(traffic.date),
               "temperature_c": [round(min(traffic.temperatures_c), 1),
                                 round(max(traffic.temperatures_c), 1)]}
        for mode, tracker, vehicles in (("off", off, weighed), ("on", on, weighed_on)):
            for v in vehicles:
                if not v.flags and v.n_axles:
                    tracker.add(v.lane, v.axle_code, float(v.axle_loads_kg[0]),
                                float(v.gvw_kg - v.axle_loads_kg[0]))
            points = tracker.end_day(day)
            recent[mode].append(gvw_errors(traffic.vehicles, vehicles))
            errs = np.concatenate(recent[mode])
            result = assess({"gvw": errs}, "r2", "I")
            row[mode] = {"class": result.class_name, "class_value": result.class_value,
                         "mean": round(float(errs.mean()), 3),
                         "std": round(float(errs.std(ddof=1)), 3), "n": int(errs.size)}
            for p in points:
                drift.append({"day": day, "lane": p.lane + 1, "tracking": mode == "on",
                              "drift_pct": p.drift_pct, "alarm": p.alarm,
                              "applied_pct": None, "class_value": result.class_value})
        if day % study.visit_days == 0 and (factors := on.proposal()) is not None:
            chain_on = lane_correction(
                chain_on, factors, version=f"cal-1+drift-{day}",
                fitted_from=f"steer axles of trucks in traffic to day {day} "
                            f"({study.drift_settings.estimator})",
                uncertainty_pct=max(p.se_pct or 0.0 for p in on.latest() if p),
                approved_by="technician (simulated)",
                approved_at=datetime.combine(traffic.date, datetime.min.time(), UTC))
            on.applied(factors)
            for d in drift[-2 * lanes:]:
                if d["tracking"]:
                    d["applied_pct"] = round(100 * (factors[d["lane"] - 1] - 1), 3)
            row["correction"] = [round(f, 5) for f in factors]
        daily.append(row)
        progress(f"day {day}: class off {row['off']['class']} (mean {row['off']['mean']:+.2f} %), "
                 f"on {row['on']['class']} (mean {row['on']['mean']:+.2f} %)")
    return daily, drift, chain_on


def _stats(result: AccuracyResult) -> str:
    """The gross-weight criterion's mean, spread and smallest tolerance met, in words."""
    c = result.criteria[0]
    return f"{c.mean:+.2f}, {c.std:.2f}, {c.d_min:.2f} (n {c.n})"


def first_day(daily: list[dict], test: Callable[[dict], bool]) -> int | None:
    return next((d["day"] for d in daily if test(d)), None)


def run_study(study: Study, progress: Callable[[str], None] = lambda _m: None,
              cache: Path | None = None) -> Outcome:
    """The whole study; figures for the README and the report's inputs. With ``cache``,
    days weighed before with the same study and sources are read from there."""
    rules = load_rules_for(study.settings())
    t0 = time.perf_counter()
    days = DayCache(cache, study) if cache is not None else None
    factory, chain, fit, matched, _refused, before_err, after_err = calibrate(
        study, rules, progress, days)
    before, after = assess({"gvw": before_err}, "r2", "I"), assess({"gvw": after_err}, "r2", "I")
    daily, drift, chain_on = (track(study, chain, rules, progress, days) if study.days
                              else ([], [], chain))
    target = after.class_value
    alarm_off = first_day(daily, lambda d: any(x["alarm"] for x in drift
                                               if x["day"] == d["day"] and not x["tracking"]))
    figures = {
        "runs matched": len(matched),
        "class before (day 0 traffic)": before.class_name,
        "class after (day 0 traffic)": after.class_name,
        "gvw before: mean, std, d_min (%)": _stats(before),
        "gvw after: mean, std, d_min (%)": _stats(after),
        "days": study.days,
        "tracking on: days outside the class": sum(d["on"]["class_value"] > target for d in daily),
        "tracking off: first day outside the class": first_day(
            daily, lambda d: d["off"]["class_value"] > target),
        "tracking off: first alarm day": alarm_off,
        "corrections approved": sum("correction" in d for d in daily),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return Outcome(before, after, fit, factory, chain_on if study.days else chain, matched,
                   {"before": before_err, "after": after_err}, daily, drift, figures)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=90,
                        help="days watched after the calibration (default 90)")
    parser.add_argument("--per-lane", type=int, default=300, help="trucks a lane a day")
    parser.add_argument("--lanes", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1, help="the simulated site: its "
                        "strips, their drift and its traffic (1-8 tuned the tracker)")
    parser.add_argument("--report", type=Path, help="write the HTML report here")
    parser.add_argument("--json", action="store_true", help="print the figures and each "
                        "day's classes as JSON, last")
    parser.add_argument("--cache", type=Path, help="keep the weighed days in this folder "
                        "and read them from there on the next run (same study, same code)")
    parser.add_argument("--drift", action="append", default=[], metavar="KEY=VALUE",
                        help="a drift tracker setting (calibration.drift.DriftSettings), "
                        "e.g. estimator=window or propose_pct=0.5; may be repeated")
    args = parser.parse_args()
    try:
        tracker = DriftSettings(**dict(_setting(x) for x in args.drift))
    except ValueError as exc:
        parser.error(f"--drift: {exc}")
    study = Study(lanes=args.lanes, seed=args.seed, per_lane=args.per_lane, days=args.days,
                  drift_settings=tracker)
    console = Console(stderr=True)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("calibration study", total=study.days + 3)
        outcome = run_study(study, lambda msg: (bar.update(task, advance=1, description=msg)),
                            cache=args.cache)
    table = Table(title="Calibration on the simulated site (COST 323, r2, environment I)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for k, v in outcome.figures.items():
        table.add_row(k, str(v))
    Console(stderr=args.json).print(table)  # with --json, stdout is the JSON alone
    if args.report:
        write(outcome, args.report)
    if args.json:
        print(json.dumps({"figures": outcome.figures, "daily": outcome.daily}, default=str))
    return 0


def _setting(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` as a pair (pydantic converts and checks the value)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"{text!r} is not KEY=VALUE")
    return key.strip(), value.strip()


def write(outcome: Outcome, out: Path) -> Path:
    """The HTML report of the study (calibration.report)."""
    points = [PassPoint.of_run(r, outcome.fit.correction(r.weighed)) for r in outcome.runs]
    drift = [DriftPoint(**d) for d in outcome.drift]
    return write_report(out, title="Calibration on the simulated site",
                        chain_before=outcome.chain_before,
                        chain_after=outcome.chain_after, runs=points,
                        accuracy={"before": outcome.before, "after": outcome.after},
                        traffic_errors=outcome.errors, drift=drift,
                        notes=outcome.fit.notes, figures=outcome.figures)


if __name__ == "__main__":
    raise SystemExit(main())
