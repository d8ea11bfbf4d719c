"""A plate reader that cannot keep up never slows the weighing: on the real path (sim,
unit and center each their own process), one reader process with a queue of one job,
deliberately starved of CPU time — stopped (SIGSTOP) for 2 s of every 2.2 s while the
road runs. Weighing keeps real time, no vehicle is lost, and the plates the unit could not
read in time are read at the center from the packets' images."""

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from center.db import make_engine
from center.law_models import Capture
from zhichao.cli.demo_site import RealPathSite, unaccounted

READER_NICE = 19
"""The reader's priority in this test: how the starver tells it from the unit's cameras."""


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc)."""
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            with contextlib.suppress(OSError):
                kids = [int(k) for k in (task / "children").read_text().split()]
                out += kids
                todo += kids
    return out


def nice_of(pid: int) -> int | None:
    with contextlib.suppress(OSError, IndexError, ValueError):
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])
    return None


def starve(pid: int, stop: threading.Event, starved_pids: list[int]) -> None:
    """Stop the unit's plate reader for 2 s of every 2.2 s until ``stop`` is set."""
    while not stop.is_set():
        readers = [p for p in descendants(pid) if nice_of(p) == READER_NICE]
        starved_pids[:] = sorted(set(starved_pids) | set(readers))
        for p in readers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGSTOP)
        stop.wait(2.0)
        for p in readers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGCONT)
        stop.wait(0.2)


@pytest.fixture(scope="module")
def starved(tmp_path_factory):
    site = RealPathSite(tmp_path_factory.mktemp("backlog"), seconds=45.0, seed=5, flow=2400,
                        overloaded_share=0.6, plate_workers=1, plate_queue=1,
                        plate_nice=READER_NICE)
    site.prepare()
    site.start()
    stop, pids = threading.Event(), []
    while "edge" not in site.procs:
        time.sleep(0.1)
    starver = threading.Thread(target=starve, args=(site.procs["edge"].pid, stop, pids),
                               daemon=True)
    starver.start()
    try:
        site.finish()
    finally:
        stop.set()
        starver.join(5.0)
    assert pids, "the plate reader was never found to starve"
    return site


def test_the_weighing_keeps_real_time_and_loses_no_vehicle(starved):
    summary = starved.edge_summary()
    assert summary["loop_lag"]["frames"] > 0
    assert summary["loop_lag"]["p99_s"] < 0.5, summary["loop_lag"]
    assert summary["gaps"] == 0 and summary["blocks_dropped"] == 0
    passes = starved.edge_passes()
    truth = starved.truth()
    assert len(truth) >= 30
    assert unaccounted(truth, passes) == []


def test_the_backlog_was_real_and_its_plates_are_read_at_the_center(starved):
    summary = starved.edge_summary()
    assert summary["plates_unread"] >= 5, summary
    passes = starved.edge_passes()
    plates = {(v["lane"], round(v["t0_mono_s"], 3)): v["plate"] for v in starved.truth()}
    unread = {p["sequence"] for p in passes if p["suspected"] and p["plate_status"] == "unread"}
    assert unread
    engine = make_engine(str(starved.center_db))
    with Session(engine) as session:
        late = list(session.scalars(select(Capture).where(Capture.sequence.in_(unread))))
    engine.dispose()
    read_late = [c for c in late if c.plate_source == "center" and c.plate]
    assert len(read_late) >= 0.8 * len(unread), [(c.sequence, c.plate) for c in late]
    truth_plates = set(plates.values())
    assert all(c.plate in truth_plates for c in read_late)
