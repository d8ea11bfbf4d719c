"""``zhichao demo``: a whole simulated site, from strip-sensor samples to cases at a center.

Simulated traffic → strip-sensor samples → digitiser frames over a pseudo-terminal → the
serial driver → the signal loop → vehicles → grades against the benchmark in force, with
a progress bar, a table of every vehicle and a summary that also scores the measurements
against the simulation's truth. Then (:mod:`zhichao.cli.demo_center`) every vehicle becomes a
signed packet in its roadside unit's outbox, travels over ZeroMQ with CURVE to a center on
SQLite, and the center checks each capture against its device's record and opens cases;
one unit's location was never published, so its captures are shown as not evidence.
"""

import argparse
import math
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

import overload
from drivers.errors import DeviceError
from drivers.serial_link import SerialDevice, digitiser_framer
from edge.settings import EdgeSettings, load_edge_settings
from edge.signal.vehicles import Vehicle
from edge.weighing import load_rules_for, signal_loop
from sim.render import Renderer
from sim.score import score
from sim.serial_twins import DigitiserTwin
from sim.traffic import generate_traffic
from zhichao.cli import demo_center

DIGITISER_FRAME_S = 0.1
"""Signal per frame the simulated digitiser sends (a few kB, as real ones do)."""

ACTION_STYLE = {"none": "green", "warning": "yellow", "fine": "bold red"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``zhichao demo``."""
    p = sub.add_parser("demo", help="run a simulated site end to end",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--duration-s", type=float, default=90.0, help="simulated seconds")
    p.add_argument("--seed", type=int, default=7, help="traffic and noise seed")
    p.add_argument("--config", type=Path, help="edge settings (default: built-in example)")
    p.add_argument("--benchmark", default="national", help="benchmark table to grade with")
    p.add_argument("--tolerance", default="none", help="tolerance policy")
    p.add_argument("--block-s", type=float, default=1.0, help="seconds per sample block")
    p.add_argument("--via", choices=("serial", "direct"), default="serial",
                   help="serial: the samples go as digitiser frames over a pseudo-terminal "
                        "through the serial driver (default); direct: straight to the loop")
    p.add_argument("--center", choices=("on", "off"), default="on",
                   help="on: send the vehicles as signed evidence to a center on this "
                        "machine and list its cases (default); off: stop after grading")
    p.add_argument("--keep", type=Path, metavar="DIR",
                   help="keep the keys, outboxes and the center's database in DIR (default: "
                        "a temporary folder, removed at the end)")
    p.set_defaults(run=run)


def _weigh(settings: EdgeSettings, rules: overload.RuleBook, *, duration_s: float, seed: int,
           block_s: float, console: Console) -> tuple[list, list[Vehicle], float]:
    """Simulate the site and run the loop over it, with a progress bar."""
    site = settings.site
    truth = generate_traffic(site, duration_s, seed=seed)
    renderer = Renderer(site, truth, seed=seed)
    loop = signal_loop(settings, rules)
    n_blocks = int(np.ceil(duration_s / block_s))
    vehicles: list[Vehicle] = []
    busy = 0.0
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(),
               TextColumn("{task.completed}/{task.total} s"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("weighing", total=n_blocks)
        for block in renderer.blocks(duration_s, block_s):
            t = time.perf_counter()
            vehicles += loop.process(block)
            busy += time.perf_counter() - t
            progress.advance(task)
    vehicles += loop.flush()
    return truth, vehicles, busy


def _weigh_via_serial(settings: EdgeSettings, rules: overload.RuleBook, *,
                      duration_s: float, seed: int, block_s: float, console: Console
                      ) -> tuple[list, list[Vehicle], float]:
    """Simulate the site as a digitiser on a pseudo-terminal, read it with the serial
    driver, and run the loop over the frames it decodes, with a progress bar."""
    site = settings.site
    truth = generate_traffic(site, duration_s, seed=seed)
    frame_samples = max(1, round(DIGITISER_FRAME_S * site.fs_hz))
    twin = DigitiserTwin(site, truth, speed=math.inf, render_seed=seed,
                         frame_samples=frame_samples, duration_s=duration_s)
    device = SerialDevice("digitiser", twin.start(hold=True), digitiser_framer,
                          queue_size=int(duration_s * site.fs_hz / frame_samples) + 16)
    loop = signal_loop(settings, rules)
    vehicles: list[Vehicle] = []
    busy = 0.0
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(),
               TextColumn("{task.completed:.0f}/{task.total:.0f} s"), TimeRemainingColumn())
    device.start()
    try:
        if not device.wait_connected(5.0):
            raise DeviceError(f"the serial driver could not open the simulated digitiser: "
                              f"{device.get_status().last_error}")
        twin.release()
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("weighing (digitiser → serial)", total=duration_s)
            done_s = 0.0
            while done_s < duration_s - block_s / 2:
                frames = device.frames(timeout_s=2.0, count=1)
                if not frames and twin.finished.is_set():
                    break
                for frame in frames:
                    t = time.perf_counter()
                    start = round(frame.t_device_us * site.fs_hz / 1e6)
                    vehicles += loop.process(frame.samples, start_index=start)
                    busy += time.perf_counter() - t
                    done_s = (start + frame.n_samples) / site.fs_hz
                progress.update(task, completed=done_s)
    finally:
        device.stop()
        twin.stop()
    vehicles += loop.flush()
    status = device.get_status()
    if status.bad_frames or loop.stats.gaps:
        console.print(f"[yellow]serial link: {status.bad_frames} bad frames, "
                      f"{loop.stats.gaps} gaps[/]")
    return truth, vehicles, busy


def _table(vehicles: list[Vehicle], grades: "Graded", start: datetime) -> Table:
    """One row per vehicle: when, where, how fast, what, how heavy, what it gets."""
    table = Table(title="vehicles weighed", header_style="bold", pad_edge=False)
    for name, justify in (("time", "left"), ("lane", "right"), ("km/h", "right"),
                          ("axles", "left"), ("gross t", "right"), ("limit t", "right"),
                          ("excess t", "right"), ("action", "left"), ("fine ¥", "right")):
        table.add_column(name, justify=justify, no_wrap=True)
    table.add_column("flags", overflow="fold")
    for i, v in enumerate(vehicles):
        action = str(grades.action[i])
        fine = grades.fine_yuan[i]
        table.add_row(
            (start + timedelta(seconds=v.t_s)).strftime("%H:%M:%S"), str(v.lane + 1),
            f"{v.speed_mps * 3.6:.0f}", v.axle_code, f"{v.gvw_kg / 1000:.1f}",
            _tonnes(grades.limit_kg[i]), _tonnes(grades.excess_kg[i], positive=True),
            f"[{ACTION_STYLE.get(action, 'magenta')}]{action}[/]",
            f"{fine:,.0f}" if np.isfinite(fine) else "",
            " ".join(sorted(v.flags)),
        )
    return table


def _tonnes(kg: float, positive: bool = False) -> str:
    """kg as tonnes for the table; blank where not applicable."""
    if not np.isfinite(kg) or (positive and kg <= 0):
        return ""
    return f"{kg / 1000:.1f}"


@dataclass(frozen=True)
class Graded:
    """Per vehicle: limit, graded excess, action and fine; NaN/'unknown' where the axle
    code could not be read, so the vehicle cannot be graded."""

    limit_kg: np.ndarray
    excess_kg: np.ndarray
    action: np.ndarray
    fine_yuan: np.ndarray


def grade_vehicles(vehicles: list[Vehicle], rules: overload.RuleBook, benchmark: str,
                   tolerance: str) -> Graded:
    """Grade every vehicle whose axle code the tables know, all at once."""
    n = len(vehicles)
    codes = np.array([v.axle_code for v in vehicles], dtype=object)
    known = np.array([not v.flags & {"unknown_code"} for v in vehicles], dtype=bool)
    out = Graded(np.full(n, np.nan), np.full(n, np.nan), np.full(n, "unknown", dtype=object),
                 np.full(n, np.nan))
    if known.any():
        gross = np.array([v.gvw_kg for v in vehicles], dtype=float)
        tyres = [v.tyres for v, ok in zip(vehicles, known, strict=True) if ok]
        table = overload.grade_many(codes[known], gross[known], rules, benchmark=benchmark,
                                    tolerance=tolerance, tyres=tyres)
        out.limit_kg[known] = table.limit_kg
        out.excess_kg[known] = table.excess_kg
        out.action[known] = table.action
        out.fine_yuan[known] = table.fine_yuan
    return out


def run(args: argparse.Namespace) -> int:
    """Run the demo; returns the exit status."""
    console = Console()
    if not console.is_terminal:  # piped or logged: no terminal width to fit, keep rows whole
        console = Console(width=120)
    settings = load_edge_settings(args.config) if args.config else EdgeSettings()
    rules = load_rules_for(settings)
    site = settings.site
    console.print(f"[bold]zhichao demo[/]: {site.lanes} lanes, {site.n_channels} strip "
                  f"channels at {site.fs_hz:.0f} Hz, {args.duration_s:.0f} s of simulated "
                  f"traffic (seed {args.seed}); benchmark [cyan]{args.benchmark}[/], "
                  f"tolerance [cyan]{args.tolerance}[/]")
    weigh = _weigh_via_serial if args.via == "serial" else _weigh
    truth, vehicles, busy = weigh(settings, rules, duration_s=args.duration_s, seed=args.seed,
                                  block_s=args.block_s, console=console)
    grades = grade_vehicles(vehicles, rules, args.benchmark, args.tolerance)
    start = datetime.now().replace(microsecond=0)
    console.print(_table(vehicles, grades, start))
    _summary(console, site, truth=truth, vehicles=vehicles, grades=grades, busy=busy,
             duration_s=args.duration_s, rules=rules)
    if args.center == "on":
        _to_center(args, vehicles, grades, rules, console)
    return 0


def _to_center(args: argparse.Namespace, vehicles: list[Vehicle], grades: "Graded",
               rules: overload.RuleBook, console: Console) -> None:
    """Send the vehicles as evidence to a center and show what it made of them."""
    over = np.nan_to_num(np.asarray(grades.excess_kg, float), nan=0.0) > 0
    with tempfile.TemporaryDirectory(prefix="zhichao-demo-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        began = demo_center.today_utc() - timedelta(seconds=args.duration_s)  # just passed
        done = demo_center.deliver(vehicles, over, start=began,
                                   folder=folder, rules=rules,
                                   seed=args.seed, console=console)
        console.print(demo_center.cases_table(folder))
        kept_out = ", ".join(f"{n} of {d}" for d, n in sorted(done.not_evidence.items()))
        console.print(
            f"\n[bold]center[/]: {done.packets} packets signed and sent over ZeroMQ with "
            f"CURVE ({done.with_images} suspected overloads with images, the rest light "
            f"records), {done.stored} stored, {done.cases} cases awaiting review, "
            f"{done.seconds:.1f} s. Not evidence: {kept_out or 'none'}.")
        reasons = demo_center.not_evidence_reasons(folder)
        if reasons:
            console.print(f"[yellow]{demo_center.UNANNOUNCED}[/] captures are kept but are "
                          "not evidence: " + "; ".join(reasons))
        if args.keep:
            console.print(f"kept in {folder}: zhichao center cases list --config … "
                          f"(database {folder / 'center.db'})")


def _summary(console: Console, site: object, *, truth: list, vehicles: list[Vehicle],
             grades: "Graded", busy: float, duration_s: float,
             rules: overload.RuleBook) -> None:
    """Counts by action, fines, flags, speed of the loop, accuracy against the truth."""
    action = np.asarray(grades.action)
    fines = np.asarray(grades.fine_yuan, float)
    flagged = sum(1 for v in vehicles if v.flags)
    s = score(site, truth, vehicles).summary()
    console.print(
        f"\n[bold]summary[/]: {len(vehicles)} vehicles weighed "
        f"({len(truth)} passed), {int((action == 'none').sum())} within the limit, "
        f"[yellow]{_count(int((action == 'warning').sum()), 'warning')}[/], "
        f"[bold red]{_count(int((action == 'fine').sum()), 'fine')}[/] totalling "
        f"¥{np.nansum(fines):,.0f}; {flagged} with quality flags.\n"
        f"signal loop: {duration_s / max(busy, 1e-9):,.0f}× real time; against the "
        f"simulation's truth: gross weight error {s['gvw_error_mean_pct']:+.2f} % mean, "
        f"{s['gvw_error_std_pct']:.2f} % std, axle counts wrong "
        f"{s['wrong_axle_count_pct']:.1f} %. Rule tables {rules.digest[:12]}."
    )


def _count(n: int, noun: str) -> str:
    """'1 fine', '3 fines'."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
