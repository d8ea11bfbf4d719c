"""Latency of the real path: how long after a vehicle's last axle its evidence is a case.

A simulated site at real-time speed, each part its own process (``RealPathSite``:
``zhichao sim``, ``zhichao center run``, ``zhichao edge run --send --json``). For every
vehicle the unit committed, on the host's monotonic clock (all processes share it):

- at the edge, from the unit's JSON lines: last axle, weighed (the signal loop's batch
  ran and the vehicle was assembled), frames taken, plate read (or given up), committed
  to the outbox;
- at the center, from its database: the packet stored (``packets.received_at``: taken as
  the store's batch begins, before its images are named and its rows committed) and the
  case visible (``cases.created_at``; for a capture attached to an existing case, its
  ``captures.processed_at``; for vehicles that are no case, the capture processed).
  Both are written in the processing transaction, a few milliseconds before its commit.

Each stage, and each end-to-end span, as count, median, 99th percentile and largest (s);
and two stages split: last axle → weighed for lanes that were clear and for vehicles
whose lane's next vehicle was already on the strips, frames → plate as waiting for the
(one) plate reader and reading.

The center writes UTC wall times; they are put on the monotonic clock with the offset
``time.time() - time.monotonic()`` measured in this process before and after the run (the
difference is reported: a wall clock that stepped during the run makes center times
wrong by as much).

The goal: p99 of last axle → case visible at most the unit's ``signal.batch_s`` (as the
sim writes the settings) + 2 s. The baseline of the ratio is that goal, from the same
run's settings.

    python benchmarks/latency.py                 # 60 s of traffic, a table
    python benchmarks/latency.py --seconds 30 --json --keep /tmp/latency
"""

import sys
from pathlib import Path

# Run as a file, this folder comes first on sys.path, and benchmarks/signal.py would
# stand in for the standard library's `signal` module: take the folder off first.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session

from center.db import make_engine
from center.ingest_models import StoredPacket
from center.law_models import Capture, Case, CaseCapture
from edge.settings import load_edge_settings
from zhichao.cli.demo_site import DEVICE_ID, RealPathSite

GOAL_MARGIN_S = 2.0
"""The goal of last axle → case visible, beyond the signal loop's batch_s (s)."""

EDGE_STAGES = (("last_axle", "weighed"), ("weighed", "frames"), ("frames", "plate"),
               ("plate", "committed"))
"""Consecutive times of the unit's JSON lines, each a stage."""


def wall_minus_mono() -> tuple[float, float]:
    """``time.time() - time.monotonic()`` (s), from the tightest of 200 readings, and the
    width of that reading's bracket (s)."""
    best = (0.0, float("inf"))
    for _ in range(200):
        m0 = time.monotonic()
        w = time.time()
        m1 = time.monotonic()
        if m1 - m0 < best[1]:
            best = (w - 0.5 * (m0 + m1), m1 - m0)
    return best


def center_times(db: Path, offset_s: float) -> dict[int, dict[str, Any]]:
    """By sequence, the unit's packets at the center on the monotonic clock: stored,
    processed (capture) and case visible (None when no case), and whether the center
    read the plate."""
    def mono(t: datetime | None) -> float | None:
        return None if t is None else t.timestamp() - offset_s

    engine = make_engine(str(db))
    out: dict[int, dict[str, Any]] = {}
    try:
        with Session(engine) as session:
            for seq, received in session.execute(select(
                    StoredPacket.sequence, StoredPacket.received_at).where(
                    StoredPacket.device_id == DEVICE_ID)):
                out[seq] = {"stored": mono(_aware(received)), "processed": None,
                            "case": None, "center_plate": False}
            rows = session.execute(select(Capture, Case.created_at).outerjoin(
                CaseCapture, CaseCapture.capture_id == Capture.id).outerjoin(
                Case, Case.id == CaseCapture.case_id).where(Capture.device_id == DEVICE_ID))
            for capture, created in rows:
                row = out.setdefault(capture.sequence, {"stored": None})
                row["processed"] = mono(capture.processed_at)
                row["center_plate"] = capture.plate_source == "center"
                # the capture that opened the case: the case's creation (after the
                # capture); one attached later: when it was processed
                row["case"] = None if created is None else max(
                    mono(created), row["processed"])
    finally:
        engine.dispose()
    return out


def _aware(t: datetime) -> datetime:
    """SQLite gives back naive times, written as UTC."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


def spread(values: list[float]) -> dict[str, Any]:
    """Count, median, 99th percentile and largest of ``values`` (s)."""
    if not values:
        return {"n": 0, "p50_s": None, "p99_s": None, "max_s": None}
    v = np.asarray(values)
    return {"n": int(v.size), "p50_s": round(float(np.percentile(v, 50)), 4),
            "p99_s": round(float(np.percentile(v, 99)), 4), "max_s": round(float(v.max()), 4)}


def measure(passes: list[dict[str, Any]], center: dict[int, dict[str, Any]]
            ) -> dict[str, Any]:
    """Stages and end-to-end latencies of the committed passes (s)."""
    stages: dict[str, list[float]] = {f"{a}→{b}": [] for a, b in EDGE_STAGES}
    stages |= {"committed→stored": [], "stored→case visible": [],
               "stored→capture processed (no case)": []}
    ends: dict[str, list[float]] = {k: [] for k in (
        "last_axle→committed", "last_axle→stored", "last_axle→case visible",
        "last_axle→capture processed (no case)", "last_axle→capture processed (all)")}
    lost = 0
    for p in passes:
        t = p["times"]
        for a, b in EDGE_STAGES:
            if t[a] is not None and t[b] is not None:
                stages[f"{a}→{b}"].append(t[b] - t[a])
        ends["last_axle→committed"].append(t["committed"] - t["last_axle"])
        c = center.get(p["sequence"])
        if c is None or c["stored"] is None:
            lost += 1
            continue
        stages["committed→stored"].append(c["stored"] - t["committed"])
        ends["last_axle→stored"].append(c["stored"] - t["last_axle"])
        if c["processed"] is not None:
            ends["last_axle→capture processed (all)"].append(c["processed"] - t["last_axle"])
        if c["case"] is not None:
            stages["stored→case visible"].append(c["case"] - c["stored"])
            ends["last_axle→case visible"].append(c["case"] - t["last_axle"])
        elif c["processed"] is not None:
            stages["stored→capture processed (no case)"].append(c["processed"] - c["stored"])
            ends["last_axle→capture processed (no case)"].append(
                c["processed"] - t["last_axle"])
    return {"stages": {k: spread(v) for k, v in stages.items()},
            "end_to_end": {k: spread(v) for k, v in ends.items()}, "not_stored": lost}


def weighing_split(passes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Last axle → weighed of passes whose lane was clear when they were weighed, and of
    those the next vehicle of whose lane had already reached the strips (the loop holds
    a lane's pulses until it has been silent long enough, so a close follower holds its
    leader until the follower itself is done)."""
    clear, followed = [], []
    by_lane: dict[int, list[dict[str, Any]]] = {}
    for p in passes:
        by_lane.setdefault(p["lane"], []).append(p)
    for lane in by_lane.values():
        lane.sort(key=lambda p: p["times"]["first_axle"])
        for p, after in zip(lane, [*lane[1:], None], strict=True):
            t = p["times"]
            held = after is not None and after["times"]["first_axle"] < t["weighed"]
            (followed if held else clear).append(t["weighed"] - t["last_axle"])
    return {"last_axle→weighed, lane clear": spread(clear),
            "last_axle→weighed, next vehicle already on the strips": spread(followed)}


def plate_split(passes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Frames → plate as waiting for the reader and reading, for one reader process (it
    takes a job when it arrives or when the reader finished the one before, whichever is
    later; the unit notices results at its next poll, within 50 ms)."""
    waits, reads = [], []
    free_at = -float("inf")
    done = sorted((p["times"] for p in passes if p["plate_status"] != "unread"
                   and p["times"]["plate"] is not None), key=lambda t: t["plate"])
    for t in done:
        start = max(t["frames"], free_at)
        waits.append(start - t["frames"])
        reads.append(t["plate"] - start)
        free_at = t["plate"]
    return {"frames→plate: waiting for the reader": spread(waits),
            "frames→plate: reading": spread(reads)}


def edge_summary(site: RealPathSite) -> dict[str, Any]:
    """The unit's closing counts (its last JSON line), or {} when it printed none."""
    for line in reversed(site.log("edge").read_text(encoding="utf-8").splitlines()):
        if line.startswith('{"summary"'):
            return json.loads(line)["summary"]
    return {}


def run(args: argparse.Namespace, folder: Path, console: Console) -> dict[str, Any]:
    """One real-path run in ``folder``; the figures."""
    site = RealPathSite(folder, seconds=args.seconds, seed=args.seed, flow=args.flow)
    site.prepare()
    offset_before = wall_minus_mono()
    console.print(f"real path: {args.seconds:g} s of traffic, {args.flow:g} vehicles per "
                  f"lane per hour, {site.lanes} lanes, seed {args.seed} (in {folder})")
    site.start()
    site.finish()
    offset_after = wall_minus_mono()
    offset = 0.5 * (offset_before[0] + offset_after[0])
    batch_s = load_edge_settings(folder / "edge.yaml").signal.batch_s
    passes = site.edge_passes()
    center = center_times(site.center_db, offset)
    figures = measure(passes, center)
    figures["of_which"] = weighing_split(passes) | (
        plate_split(passes) if site.plate_workers == 1 else {})
    goal = batch_s + GOAL_MARGIN_S
    p99 = figures["end_to_end"]["last_axle→case visible"]["p99_s"]
    summary = edge_summary(site)
    return {
        "seconds": args.seconds, "flow_per_lane_h": args.flow, "lanes": site.lanes,
        "seed": args.seed, "committed": len(passes), "batch_s": batch_s,
        "process_interval_s": site.process_interval_s, "plate_workers": site.plate_workers,
        "goal_s": goal, "p99_case_visible_s": p99,
        "ratio_to_goal": None if p99 is None else round(p99 / goal, 3),
        "goal_met": None if p99 is None else p99 <= goal,
        "center_read_plates": sum(1 for c in center.values() if c["center_plate"]),
        "plates": {s: sum(1 for p in passes if p["plate_status"] == s)
                   for s in ("read", "unread", "unreadable")},
        "loop_lag": summary.get("loop_lag"),
        "wall_minus_mono_s": round(offset, 6),
        "wall_step_s": round(offset_after[0] - offset_before[0], 6),
        "offset_bracket_s": max(offset_before[1], offset_after[1]),
        **figures}


def _s(x: float | None) -> str:
    return "" if x is None else f"{x:.3f}"


def show(result: dict[str, Any], console: Console) -> None:
    """The stages and end-to-end latencies as a table, then the goal."""
    table = Table(title=f"latency of the real path ({result['committed']} vehicles "
                        "committed), seconds", show_header=True)
    for name, justify in (("from → to", "left"), ("n", "right"), ("p50", "right"),
                          ("p99", "right"), ("max", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for group in ("stages", "of_which", "end_to_end"):
        for key, s in result[group].items():
            table.add_row(key, str(s["n"]), _s(s["p50_s"]), _s(s["p99_s"]), _s(s["max_s"]))
        table.add_section()
    console.print(table)
    met = {True: "[green]met[/]", False: "[red]not met[/]", None: "no case to judge"}
    console.print(f"goal: p99 last axle → case visible ≤ batch_s {result['batch_s']:g} + "
                  f"{GOAL_MARGIN_S:g} = {result['goal_s']:g} s; p99 "
                  f"{_s(result['p99_case_visible_s'])} s, ratio "
                  f"{result['ratio_to_goal']}: {met[result['goal_met']]}")
    console.print(f"plates {result['plates']}; loop lag {result['loop_lag']}; packets not "
                  f"stored {result['not_stored']}; wall clock stepped "
                  f"{1e3 * result['wall_step_s']:.3f} ms during the run")


def main() -> None:
    """Run the site once and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="traffic (default 60)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--flow", type=float, default=1800.0,
                        help="vehicles per lane per hour (default 1800)")
    parser.add_argument("--json", action="store_true", help="end with one JSON object")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="run in DIR and keep it (logs, databases); default: a "
                             "temporary folder, removed")
    args = parser.parse_args()
    console = Console(stderr=args.json)
    if args.keep is not None:
        result = run(args, args.keep, console)
    else:
        with tempfile.TemporaryDirectory(prefix="zhichao-latency-") as tmp:
            result = run(args, Path(tmp), console)
    show(result, console)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
