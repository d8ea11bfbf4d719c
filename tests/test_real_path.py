"""The real path, each part its own process: ``zhichao sim`` (digitiser on a pty, a live
RTSP camera per lane, a GPS receiver), ``zhichao edge run --send`` (the roadside unit) and
``zhichao center run`` (SQLite), started by ``zhichao demo`` as a technician would start
them, scored against the simulation's truth.

The run takes about two minutes: the site runs in real time, since its cameras are live.
"""

import json
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from center.db import make_engine
from center.law_models import Capture, Case
from zhichao.cli.demo_site import RealPathSite, match_pass, unaccounted

SECONDS = 120.0


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """``zhichao demo`` on a busy road with many overloaded trucks, its folder kept."""
    folder = tmp_path_factory.mktemp("demo")
    done = subprocess.run(
        [sys.executable, "-m", "zhichao.cli", "demo", "--seconds", str(SECONDS), "--seed",
         "21", "--flow", "3000", "--overloaded-share", "0.7", "--keep", str(folder),
         "--no-serve"],
        capture_output=True, text=True, timeout=SECONDS + 150, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return RealPathSite(folder, seconds=SECONDS), done.stdout


def test_overloaded_trucks_become_cases_with_the_plate_read_from_the_cameras(demo):
    site, stdout = demo
    strict, clear = site.score(0.0), site.score(0.05)
    print(json.dumps({"strict": strict.to_dict(), "over_5pct": clear.to_dict()},
                     ensure_ascii=False))
    assert len(strict.overloaded) >= 25, "too few overloaded trucks to judge"
    assert strict.share >= 0.95, strict.to_dict()
    assert clear.share >= 0.95, clear.to_dict()
    assert strict.wrong_plate_cases == [] and strict.not_weighed == []
    assert "cases awaiting review at the center" in stdout


def test_every_case_rests_on_camera_images_and_a_plate_read_by_ocr(demo):
    site, _ = demo
    engine = make_engine(str(site.center_db))
    with Session(engine) as session:
        cases = list(session.scalars(select(Case)))
        best = [session.get(Capture, c.best_capture_id) for c in cases]
        packets = {(p["lane"], p["sequence"]): p for p in site.edge_passes()}
    engine.dispose()
    assert cases and all(c is not None and c.evidential for c in best)
    assert {c.plate_source for c in best} <= {"edge", "center"}
    read = [p for p in packets.values() if p["suspected"] and p["plate_status"] == "read"]
    assert all(len(p["images"]) == 2 for p in read)  # front and rear camera frames
    assert all(p["plate"] for p in read)


def test_nothing_is_lost_between_the_digitiser_and_the_center(demo):
    site, _ = demo
    summary = site.edge_summary()
    truth = site.truth()
    assert summary["gaps"] == 0 and summary["blocks_dropped"] == 0
    assert summary["evidence"]["acked"] == summary["committed"] == len(site.edge_passes())
    assert summary["evidence"]["pending"] == 0 and summary["evidence"]["lost"] == 0
    assert unaccounted(truth, site.edge_passes()) == []


def test_capture_times_fall_within_their_stated_uncertainty(demo):
    """Each pass's UTC capture time (GPS-timed: these machines' kernels are not synced)
    against the moment the simulated front axle crossed, on this machine's clocks."""
    site, _ = demo
    wall_minus_mono = time.time() - time.monotonic()
    passes = site.edge_passes()
    errors = []
    for v in site.truth():
        p = match_pass(v, passes)
        true_utc = datetime.fromtimestamp(v["t0_mono_s"] + wall_minus_mono, UTC)
        error_ms = abs((datetime.fromisoformat(p["captured_at"]) - true_utc)
                       .total_seconds()) * 1000
        errors.append((error_ms, p["clock_uncertainty_ms"], p["clock_status"]))
    assert all(status == "synced" and u is not None for _, u, status in errors)
    assert all(e <= u for e, u, _ in errors), max(errors)
