"""``zhichao demo``: the whole simulated site through the real CLI, in-process and once as a
real process; a bad settings file ends in one line and exit status 2."""

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from center.ingest_models import StoredImage, StoredPacket
from center.law_models import Capture, Case
from zhichao.cli import main

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["demo", "--duration-s", "30", "--seed", "7"]
COLUMNS = ("time", "lane", "km/h", "axles", "gross t", "limit t", "excess t", "action",
           "fine ¥", "flags")
SUMMARY = re.compile(
    r"summary: (?P<weighed>\d+) vehicles weighed \((?P<passed>\d+) passed\), "
    r"(?P<none>\d+) within the limit, (?P<warnings>\d+) warnings?, (?P<fines>\d+) fines? "
    r"totalling ¥(?P<total>[\d,]+)")
ROW = re.compile(r"^│\d\d:\d\d:\d\d")


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")


def rows(out: str) -> list[list[str]]:
    """Table rows without the time of day: lane, km/h, axles, gross, ..., flags."""
    return [[cell.strip() for cell in line.strip("│").split("│")][1:]
            for line in out.splitlines() if ROW.match(line)]


def check_report(out: str) -> tuple[re.Match, list[list[str]]]:
    header = next(line for line in out.splitlines() if "time" in line and "action" in line)
    for column in COLUMNS:
        assert column in header
    summary = SUMMARY.search(" ".join(out.split()))  # the summary may wrap
    assert summary, out[-800:]
    table = rows(out)
    n = int(summary["weighed"])
    assert n == len(table) >= 5
    assert abs(n - int(summary["passed"])) <= 1
    actions = [row[6] for row in table]
    assert int(summary["none"]) == actions.count("none")
    assert int(summary["warnings"]) == actions.count("warning")
    assert int(summary["fines"]) == actions.count("fine")
    fines = sum(int(row[7].replace(",", "")) for row in table if row[7])
    assert int(summary["total"].replace(",", "")) == fines
    assert set(actions) <= {"none", "warning", "fine", "unknown"}
    return summary, table


def test_demo_in_process(capsys):
    assert main(ARGS) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert captured.out.startswith("zhichao demo: 4 lanes, 16 strip channels")
    summary, _ = check_report(captured.out)
    assert int(summary["fines"]) + int(summary["warnings"]) >= 1  # 30 % run overloaded
    words = " ".join(captured.out.split())
    accuracy = re.search(r"gross weight error ([+-][\d.]+) % mean, ([\d.]+) % std, axle "
                         r"counts wrong ([\d.]+) %", words)
    assert accuracy, words[-400:]
    mean, std, wrong = map(float, accuracy.groups())
    assert abs(mean) < 3.0 and std < 10.0 and wrong < 10.0


def test_demo_as_a_process_gives_the_same_vehicles(capsys):
    assert main(ARGS) == 0
    in_process = rows(capsys.readouterr().out)
    env = {**os.environ, "COLUMNS": "200", "PYTHONHASHSEED": "12345"}
    proc = subprocess.run([sys.executable, "-m", "zhichao.cli", *ARGS], cwd=ROOT, env=env,
                          capture_output=True, text=True, encoding="utf-8", timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    _, table = check_report(proc.stdout)
    assert table == in_process


def test_demo_with_a_site_file(tmp_path, capsys):
    path = tmp_path / "edge.yaml"
    path.write_text("site:\n  lanes: 1\n", encoding="utf-8")
    assert main(["demo", "--duration-s", "60", "--seed", "3", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("zhichao demo: 1 lanes, 4 strip channels")
    _, table = check_report(out)
    assert {row[0] for row in table} == {"1"}


BAD_FILES = {
    "typo": ("site:\n  lanez: 2\n", "site.lanez"),
    "bad YAML": ("site:\n  lanes: 2\n signal: [\n", "line 3"),
    "negative": ("signal:\n  hi_counts: -1\n", "signal.hi_counts"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_demo_with_a_bad_file_says_so_in_one_line(tmp_path, capsys, case):
    text, names = BAD_FILES[case]
    path = tmp_path / "edge.yaml"
    path.write_text(text, encoding="utf-8")
    assert main(["demo", "--config", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ") and str(path) in lines[0] and names in lines[0]
    assert "Traceback" not in captured.err


def test_demo_with_a_missing_file_as_a_process(tmp_path):
    path = tmp_path / "missing.yaml"
    proc = subprocess.run([sys.executable, "-m", "zhichao.cli", "demo", "--config", str(path)],
                          cwd=ROOT, env={**os.environ, "COLUMNS": "200"}, capture_output=True,
                          text=True, encoding="utf-8", timeout=60, check=False)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [f"error: {path}: cannot read: No such file "
                                                "or directory"]


CENTER = re.compile(
    r"center: (?P<packets>\d+) packets signed and sent over ZeroMQ with CURVE "
    r"\((?P<images>\d+) suspected overloads with images, the rest light records\), "
    r"(?P<stored>\d+) stored, (?P<cases>\d+) cases awaiting review")


def test_demo_sends_every_vehicle_to_the_center_and_lists_its_cases(tmp_path, capsys):
    """Every weighed vehicle is stored once at the center; suspected overloads carry images
    stored under their SHA-256; the announced unit's evidential overloads are cases; the
    unannounced unit's overloads are kept, not evidence, for want of a public notice."""
    assert main([*ARGS, "--seed", "11", "--duration-s", "90", "--keep", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    words = " ".join(out.split())
    found = CENTER.search(words)
    assert found, words[-800:]
    _, table = check_report(out)
    assert int(found["packets"]) == int(found["stored"]) == len(table)
    over = sum(1 for row in table if row[5])
    assert int(found["images"]) == over
    engine = create_engine(f"sqlite:///{tmp_path / 'center.db'}")
    with Session(engine) as session:
        stored = session.scalars(select(StoredPacket)).all()
        assert len(stored) == len(table)
        assert len({(p.device_id, p.sequence) for p in stored}) == len(stored)
        captures = session.scalars(select(Capture).where(Capture.over.is_(True))).all()
        east = [c for c in captures if c.device_id == "demo-east"]
        west = [c for c in captures if c.device_id == "demo-west"]
        assert east and west, "the seed must put overloads on both units"
        assert all(not c.evidential for c in west)
        for c in west:
            failed = [check["id"] for check in c.checks if not check["ok"]]
            assert failed == ["notice"], failed
        evidential = [c for c in east if c.evidential]
        cases = session.scalars(select(Case)).all()
        assert int(found["cases"]) == len(cases) >= 1
        assert {c.best_capture_id for c in cases} <= {c.id for c in evidential}
        images = session.scalars(select(StoredImage)).all()
        assert len(images) == 2 * over
    engine.dispose()
    for image in images:
        path = next((tmp_path / "images").rglob(image.sha256))
        assert hashlib.sha256(path.read_bytes()).hexdigest() == image.sha256
    assert "demo-west captures are kept but are not evidence: public notice" in words
