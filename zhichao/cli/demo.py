"""``zhichao demo``: a whole simulated site on the real path, from the road to the cases.

Three processes, as a site and its center run them (``zhichao/cli/demo_site.py``):
``zhichao sim`` starts the twins (a strip-sensor digitiser on a pseudo-terminal, a live
RTSP camera per lane, a GPS receiver); ``zhichao edge run --send`` is the roadside unit
(signal loop, frames at the axle times, plates read by OCR from the camera frames,
overload screen, signed packets into the outbox and over ZeroMQ with CURVE); ``zhichao
center run`` verifies and stores them, reads plates the unit left unread, checks each
capture against its device's record and the law, and opens cases. At the end: what was
weighed, the cases awaiting review, and how the cases compare with what really passed;
then the center's web pages are served on 127.0.0.1 until Ctrl-C, with a staff log-in
made for this run, so the cases can be reviewed in a browser (``--no-serve``: end there).
"""

import argparse
import tempfile
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session

from center.db import make_engine
from center.law_models import Capture, Case
from center.settings import load_center_settings
from sim.site import LEAD_S
from zhichao.cli.demo_site import (
    CENTER_CATCH_UP_S,
    EDGE_TAIL_S,
    STAFF,
    CaseScore,
    RealPathSite,
    SiteError,
    free_port,
)
from zhichao.errors import ConfigError

ACTION_STYLE = {"none": "green", "warning": "yellow", "fine": "bold red"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``zhichao demo``."""
    p = sub.add_parser("demo", help="run a simulated site end to end on the real path",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=45.0,
                   help="seconds of simulated traffic, run in real time (default 45)")
    p.add_argument("--seed", type=int, default=7, help="traffic seed")
    p.add_argument("--lanes", type=int, default=2, choices=range(1, 5), metavar="N",
                   help="lanes (1-4, default 2)")
    p.add_argument("--flow", type=float, default=1800.0, metavar="N",
                   help="vehicles per lane and hour (default 1800: a busy road)")
    p.add_argument("--overloaded-share", type=float, default=0.3, metavar="P",
                   help="share of loaded trucks that are overloaded (default 0.3)")
    p.add_argument("--keep", type=Path, metavar="DIR",
                   help="keep the keys, settings, logs, outbox and the center's database in "
                        "DIR (default: a temporary folder, removed at the end)")
    p.add_argument("--no-serve", action="store_true",
                   help="end after the figures instead of serving the center's pages")
    p.add_argument("--web-port", type=int, metavar="N",
                   help="serve the pages on this port of 127.0.0.1 (default: a free one)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo; returns the exit status."""
    if args.web_port is not None and not 0 < args.web_port <= 65535:
        raise ConfigError(f"--web-port {args.web_port}: must be 1 to 65535")
    console = Console()
    if not console.is_terminal:  # piped or logged: no terminal width to fit, keep rows whole
        console = Console(width=120)
    with tempfile.TemporaryDirectory(prefix="zhichao-demo-") as tmp:
        folder = args.keep or Path(tmp)
        site = RealPathSite(folder, seconds=args.seconds, seed=args.seed, lanes=args.lanes,
                            flow=args.flow, overloaded_share=args.overloaded_share)
        console.print(f"[bold]zhichao demo[/]: {args.lanes} lanes, {args.seconds:.0f} s of "
                      f"traffic at {args.flow:.0f} vehicles per lane and hour (seed "
                      f"{args.seed}); sim, roadside unit and center in processes of their "
                      f"own, in {folder}")
        site.prepare()
        site.start()
        _follow(site, console)
        console.print(_passes_table(site))
        console.print(_cases_table(site))
        _summary(console, site, site.score())
        if args.keep:
            console.print(f"kept in {folder}: zhichao center cases list --config "
                          f"{folder / 'center.yaml'}; logs *.log")
        if not args.no_serve:
            _serve(console, site, args.web_port)
        elif args.keep:
            console.print(f"the pages: zhichao center web --config {folder / 'center.yaml'}")
            console.print(_logins_table(site))
    return 0


def _logins_table(site: RealPathSite) -> Table:
    """The staff's log-ins, made for this run."""
    table = Table(title="staff log-ins (made for this run)", header_style="bold")
    for name in ("officer", "name", "role", "password"):
        table.add_column(name, no_wrap=True)
    for officer, name, role in STAFF:
        table.add_row(officer, name, role, site.passwords.get(officer, ""))
    return table


def _serve(console: Console, site: RealPathSite, port: int | None) -> None:
    """Serve the demo center's pages on 127.0.0.1 until Ctrl-C or SIGTERM (its folder
    stays until then)."""
    from center.web.serve import ServeError, address, serve_in_foreground  # noqa: PLC0415

    settings = load_center_settings(site.folder / "center.yaml")
    port = port or free_port()
    console.print(_logins_table(site))
    try:  # where the pages are is said once they answer
        serve_in_foreground(settings, "127.0.0.1", port, on_ready=lambda: console.print(
            f"\n[bold]the center's pages[/]: {address(settings, '127.0.0.1', port)}"
            f"/staff — log in as ZF001 to review a case, as ZF002 to approve it; "
            f"the public map at /map. Ctrl-C stops."))
    except ServeError as exc:
        raise SiteError(f"{exc}; try --web-port N") from None
    console.print("stopped serving the pages.")


def _follow(site: RealPathSite, console: Console) -> None:
    """Wait for the site's run with a progress bar of the unit's time and passes, then
    for the center to process what it stored; say so if it did not in time."""
    total = site.seconds + LEAD_S + EDGE_TAIL_S
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(),
               TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
               TextColumn("{task.fields[passes]} vehicles committed"))
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("road → unit → center", total=total, passes=0)
        left = site.finish(
            tick=lambda s, n: progress.update(task, completed=min(s, total), passes=n),
            waiting=lambda n: progress.update(
                task, completed=total, description=f"center: {n} packets to process"))
    if left:
        console.print(f"[yellow]the center had {left} stored packets still to process "
                      f"after {CENTER_CATCH_UP_S:.0f} s; they stay stored and its next "
                      f"start processes them[/]")


def _passes_table(site: RealPathSite) -> Table:
    """One row per vehicle the unit committed: lane, speed, axles, weight, screen, plate."""
    table = Table(title="vehicles weighed at the roadside", header_style="bold")
    for name in ("lane", "km/h", "axles", "gross t", "limit t", "screen", "plate",
                 "clock", "images", "flags"):
        table.add_column(name, no_wrap=name != "flags")
    for p in site.edge_passes():
        action = p["action"]
        plate = p["plate"] if p["plate_status"] == "read" else f"({p['plate_status']})"
        table.add_row(str(p["lane"]), f"{p['speed_mps'] * 3.6:.0f}", p["axle_code"] or "?",
                      f"{p['gross_kg'] / 1000:.1f}",
                      f"{p['limit_kg'] / 1000:.1f}" if p["limit_kg"] else "",
                      f"[{ACTION_STYLE.get(action, 'magenta')}]{action}[/]", escape(plate),
                      p["clock_status"] + (f" ±{p['clock_uncertainty_ms']:.0f} ms"
                                           if p["clock_uncertainty_ms"] is not None else ""),
                      str(len(p["images"])), " ".join(p["flags"]))
    return table


def _cases_table(site: RealPathSite) -> Table:
    """The center's cases as staff would first see them."""
    table = Table(title="cases awaiting review at the center", header_style="bold")
    for name in ("case", "plate", "read at", "captured (UTC)", "gross t", "excess t",
                 "action", "fine ¥"):
        table.add_column(name, no_wrap=True)
    engine = make_engine(str(site.center_db))
    try:
        with Session(engine) as session:
            for case in session.scalars(select(Case).order_by(Case.id)):
                best = session.get(Capture, case.best_capture_id) \
                    if case.best_capture_id else None
                table.add_row(
                    str(case.id), escape(case.plate or ""),
                    (best.plate_source or "") if best else "",
                    best.captured_at.strftime("%H:%M:%S") if best else "",
                    f"{best.gross_kg / 1000:.1f}" if best else "",
                    f"{(best.excess_kg or 0) / 1000:.1f}" if best else "",
                    case.action or "",
                    f"{case.fine_yuan:,.0f}" if case.fine_yuan is not None else "")
    finally:
        engine.dispose()
    return table


def _summary(console: Console, site: RealPathSite, score: CaseScore) -> None:
    """What the unit did, and the cases against what really passed."""
    summary = site.edge_summary()
    evidence = summary.get("evidence") or {}
    lag = summary.get("loop_lag", {})
    console.print(
        f"\n[bold]roadside unit[/]: {summary.get('weighed', 0)} vehicles weighed, "
        f"{summary.get('suspected', 0)} suspected overloads; plates read "
        f"{summary.get('plates_read', 0)}, unreadable {summary.get('plates_unreadable', 0)}, "
        f"left to the center {summary.get('plates_unread', 0)}; signal loop lag p99 "
        f"{lag.get('p99_s', 0) * 1000:.0f} ms; {evidence.get('acked', 0)} packets "
        f"acknowledged by the center, {evidence.get('pending', 0)} pending.")
    console.print(
        f"[bold]center[/]: {score.cases} cases. Of the {len(score.overloaded)} overloaded "
        f"trucks driven and weighed cleanly, {len(score.with_case)} became cases with "
        f"their own plate ({score.share:.0%}); cases with another vehicle's plate: "
        f"{len(score.wrong_plate_cases)}."
        + (f" Missed: {', '.join(score.missed)}." if score.missed else "")
        + (f" Weighed within the limit though over it: {', '.join(score.weighed_under)}."
           if score.weighed_under else "")
        + (f" Weighed over the limit though within it: {', '.join(score.weighed_over)}."
           if score.weighed_over else ""))
