"""Benchmark of the center's web pages on a large center: ``--cases`` cases (100 000 by
default) in PostgreSQL (``--pg URL`` or ZHICHAO_TEST_PG; a new database, dropped at the
end), then the staff queue page, a staff case page and the public ``/devices.geojson``,
each asked ``--requests`` times in-process (FastAPI's TestClient on the real app, a staff
member logged in), p50 and p95 of the server's time.

The center is built the fast way: ``--devices`` devices imported from a registry CSV, a
few dozen real packets turned into captures and cases by the center's own processing
(``center.cases.process_pending``: real grades and legality checks), then every other
packet, capture and case copied from those in the database itself (``INSERT … SELECT``
over ``generate_series``: plates, devices, times and states varied), so building 100 000
cases takes seconds, not the hours of grading each one. A third of the cases await
review; each vehicle has about three.

Baseline: ``/static/app.css`` (the app, its middleware and the test client, no page, no
database), asked in the same turns as the pages, so a slow spell of the machine hits all
alike; each page's figures are also given as ratios to it. Goal: queue and case page p95
≤ 200 ms.

    python benchmarks/web.py --json --pg postgresql://postgres@127.0.0.1:5432/postgres
    python benchmarks/web.py --cases 200 --requests 20        # a quick look
"""

import sys
from pathlib import Path

# Run as a file, this folder comes first on sys.path, and benchmarks/signal.py would stand
# in for the standard library's `signal` module: take the folder off before importing.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks.timing

import argparse
import functools
import hashlib
import os
import re
import statistics
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta

import cv2
import numpy as np
import psycopg
from fastapi.testclient import TestClient
from rich.console import Console
from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.orm import Session

from benchmarks.timing import report
from calibration.chain import Certificate, Chain, ChannelGain
from center.cases import process_pending
from center.db import make_engine, upgrade
from center.ingest_models import Device, StoredPacket
from center.law_models import Case
from center.registry import import_registry
from center.settings import CenterSettings, WebSettings
from center.staff import import_staff
from center.web import auth
from center.web.app import create_app
from edge.packets import calibration_record
from evidence.packet import (
    GENESIS_HASH,
    CalibrationRecord,
    ImageRef,
    Packet,
    PlateRecord,
    ProcessingTrail,
    VehicleRecord,
    canonical_bytes,
    packet_hash,
)

GOAL_P95_S = 0.200
"""The issue's goal for the queue and the case page."""
SEED_CASES = 40
"""Real packets graded by the center before the copies (each device's first ones)."""
PASSWORD = "benchmark password, long enough"
OFFICER = "ZF001"
T_END = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
"""The newest capture; the others reach back a minute apart."""
REGISTRY_HEADER = (
    "device_id,road,stake,direction,latitude,longitude,review_date,certificate_number,"
    "accuracy_class,certificate_valid_from,certificate_valid_to,signs_installed,"
    "notice_date,notice_document,notice_url,enforcement_start,active,suspensions")
STAFF_CSV = ("officer_id,name,credential_number,roles,active,valid_from,valid_to\n"
             f"{OFFICER},张三,浙33010012345,reviewer,true,2025-01-01,2028-12-31\n")


# --- the center ---------------------------------------------------------------------------

def new_database(server: str) -> tuple[str, str]:
    """A new, empty PostgreSQL database on ``server``: (its SQLAlchemy URL, its name)."""
    name = f"zhichao_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = server.rsplit("/", 1)[0].split("://", 1)[1]
    return f"postgresql+psycopg://{base}/{name}", name


def drop_database(server: str, name: str) -> None:
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def write_registry(path: Path, devices: int) -> None:
    """``devices`` devices along a road of Zhejiang, announced and certified."""
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write(REGISTRY_HEADER + "\n")
        for i in range(devices):
            f.write(f"ZJ-{i:05d},G60 沪昆高速,K{100 + i}+{i % 10}00,上行,"
                    f"{29.5 + (i % 97) * 0.01:.4f},{119.5 + (i // 97) * 0.02:.4f},"
                    f"2025-01-10,JD-2025-{i:05d},5,2025-01-15,2027-12-31,2025-01-20,"
                    f"2025-02-01,浙交〔2025〕{i + 1}号,,2025-03-01,true,\n")


def photo() -> tuple[bytes, str]:
    """A JPEG photo of a pass and its SHA-256."""
    img = np.random.default_rng(1).integers(60, 120, (480, 640, 3), dtype=np.uint8)
    cv2.rectangle(img, (260, 330), (380, 370), (0, 200, 230), -1)
    ok, jpeg = cv2.imencode(".jpg", img)
    assert ok
    data = jpeg.tobytes()
    return data, hashlib.sha256(data).hexdigest()


@functools.cache
def device_calibration(device_id: str) -> CalibrationRecord:
    """The device's calibration chain as its packets carry it: channel gains under the
    registry's certificate (valid 2025-01-15 to 2027-12-31, as :func:`write_registry`)."""
    number = f"JD-2025-{int(device_id[3:]):05d}"
    stamp = datetime(2025, 1, 12, tzinfo=UTC)
    chain = Chain(device_id=device_id, version="2025-01", applied_by="bench",
                  applied_at=stamp,
                  certificate=Certificate(number=number, valid_from=date(2025, 1, 15),
                                          valid_to=date(2027, 12, 31)),
                  stages=[ChannelGain(version="2025-01", fitted_from="reference trucks",
                                      uncertainty_pct=0.5, approved_by="bench",
                                      approved_at=stamp, factors=[1.0, 1.01, 0.99, 1.0])])
    return calibration_record(chain)


def seed_packet(device_id: str, sequence: int, at: datetime, sha: str, size: int) -> Packet:
    """A six-axle truck (157) over its 49 t limit, its plate read at the roadside."""
    gross = 52_000.0 + 400 * (sequence % 30)
    return Packet(
        device_id=device_id, site=device_id, lane=1 + sequence % 2, direction="east",
        captured_at=at, clock_status="synced", sequence=sequence, previous_hash=GENESIS_HASH,
        suspected_overload=True,
        vehicle=VehicleRecord(axle_loads_kg=[gross / 6] * 6, axle_groups=[1, 2, 3],
                              spacings_m=[3.4, 1.35, 7.0, 1.31, 1.31], speed_kmh=62.0,
                              gross_kg=gross, axle_code="157", flags=[]),
        plate=PlateRecord(text=f"浙A{sequence:05d}", colour="yellow", confidence=0.96,
                          box=[10, 10, 100, 30, 0]),
        calibration=device_calibration(device_id),
        trail=ProcessingTrail(software_version="0.1.0", rules_digest="0" * 64),
        images=[ImageRef(role="front", sha256=sha, size=size)])


def seed(engine: Engine, settings: CenterSettings, folder: Path, devices: int) -> None:
    """Registry, staff, enrolled devices and SEED_CASES real cases from real packets."""
    registry, staff = folder / "devices.csv", folder / "staff.csv"
    write_registry(registry, devices)
    staff.write_text(STAFF_CSV, encoding="utf-8")
    with Session(engine) as s, s.begin():
        import_registry(s, registry)
        import_staff(s, staff)
        auth.set_password(s, OFFICER, PASSWORD)
    jpeg, sha = photo()
    image = settings.images_dir / sha[:2] / sha
    image.parent.mkdir(parents=True, exist_ok=True)
    image.write_bytes(jpeg)
    with engine.begin() as conn:
        conn.execute(insert(Device), [
            {"device_id": f"ZJ-{i:05d}", "sign_public_key": "pem",
             "curve_public_key": f"k{i:039d}",
             "enrolled_at": T_END - timedelta(days=400)} for i in range(devices)])
        for n in range(1, SEED_CASES + 1):
            p = seed_packet(f"ZJ-{(n - 1) % devices:05d}", n,
                            T_END - timedelta(days=n % 60, hours=n % 24), sha, len(jpeg))
            meta = canonical_bytes(p)
            conn.execute(insert(StoredPacket).values(
                device_id=p.device_id, sequence=p.sequence, hash=packet_hash(meta),
                previous_hash=p.previous_hash, captured_at=p.captured_at, lane=p.lane,
                suspected_overload=True, meta=meta, signature=b"s", received_at=p.captured_at))
    process_pending(engine, settings)


COPY_PACKETS = """
INSERT INTO packets (device_id, sequence, hash, previous_hash, captured_at, lane,
                     suspected_overload, meta, signature, received_at, chain_ok)
SELECT 'ZJ-' || lpad(((g - 1) % :devices)::text, 5, '0'), 1000000 + g,
       md5(g::text) || md5((g + 1)::text), p.previous_hash,
       :t_end - g * interval '1 minute', p.lane, true, p.meta, p.signature,
       :t_end - g * interval '1 minute', p.chain_ok
FROM generate_series(1, :n) AS g, packets AS p WHERE p.id = :template
"""
COPY_CAPTURES = """
INSERT INTO captures (packet_id, device_id, sequence, captured_at, plate, plate_colour,
    plate_confidence, plate_source, plate_province_confidence, plate_front_rear, gross_kg,
    axle_code, limit_kg, tolerance_kg, excess_kg, over, action, fine_yuan, grade,
    grade_error, evidential, checks, processed_at)
SELECT k.id, k.device_id, k.sequence, k.captured_at,
       '浙A' || lpad(((k.sequence - 1000000) % :vehicles)::text, 5, '0'), c.plate_colour,
       c.plate_confidence, c.plate_source, c.plate_province_confidence, c.plate_front_rear,
       c.gross_kg, c.axle_code, c.limit_kg, c.tolerance_kg, c.excess_kg, c.over, c.action,
       c.fine_yuan, c.grade, c.grade_error, c.evidential, c.checks, k.received_at
FROM packets AS k, captures AS c WHERE k.sequence > 1000000 AND c.id = :template
"""
COPY_CASES = """
INSERT INTO cases (plate, plate_colour, status, created_at, first_at, last_at,
    best_capture_id, first_violation, captures_12m, cases_12m, repeat_over_limit, action,
    fine_yuan)
SELECT k.plate, k.plate_colour,
       CASE WHEN k.sequence % 3 = 0 THEN 'awaiting_review'
            WHEN k.sequence % 3 = 1 THEN 'rejected' ELSE 'closed' END,
       k.processed_at, k.captured_at, k.captured_at, k.id, false, 2, 2, false, t.action,
       t.fine_yuan
FROM captures AS k, cases AS t WHERE k.sequence > 1000000 AND t.id = :template
"""
COPY_LINKS = """
INSERT INTO case_captures (case_id, capture_id, role)
SELECT id, best_capture_id, 'evidence' FROM cases WHERE id > :last
"""


def copy_cases(engine: Engine, n: int, devices: int) -> None:
    """``n`` more packets, captures and cases, copied in the database from the first."""
    with engine.begin() as conn:
        template = conn.execute(text("SELECT id, best_capture_id FROM cases ORDER BY id "
                                     "LIMIT 1")).one()
        packet = conn.execute(text("SELECT packet_id FROM captures WHERE id = :c"),
                              {"c": template.best_capture_id}).scalar_one()
        last = conn.execute(text("SELECT max(id) FROM cases")).scalar_one()
        conn.execute(text(COPY_PACKETS), {"n": n, "devices": devices, "t_end": T_END,
                                          "template": packet})
        conn.execute(text(COPY_CAPTURES), {"vehicles": max(1, n // 3),
                                           "template": template.best_capture_id})
        conn.execute(text(COPY_CASES), {"template": template.id})
        conn.execute(text(COPY_LINKS), {"last": last})
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))


# --- timing -------------------------------------------------------------------------------

def percentile(times: list[float], q: float) -> float:
    """The q-quantile (0..1) of the times, nearest rank."""
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def log_in(client: TestClient) -> None:
    r = client.post("/staff/login", data={"officer_id": OFFICER, "password": PASSWORD},
                    follow_redirects=False)
    if r.status_code != 303:
        raise SystemExit(f"log-in failed: {r.status_code} {r.text[:200]}")


def time_pages(client: TestClient, paths: dict[str, str], requests: int
               ) -> dict[str, list[float]]:
    """Each path asked ``requests`` times, in turns; every answer must be 200."""
    times: dict[str, list[float]] = {name: [] for name in paths}
    for path in paths.values():  # warm: templates compiled, plans cached
        r = client.get(path)
        if r.status_code != 200:
            raise SystemExit(f"{path}: {r.status_code} {r.text[:300]}")
    for _ in range(requests):
        for name, path in paths.items():
            t = time.perf_counter()
            r = client.get(path)
            times[name].append(time.perf_counter() - t)
            assert r.status_code == 200, (path, r.status_code)
    return times


def middle_case(engine: Engine) -> int:
    """A case awaiting review from the middle of the table (its vehicle has others)."""
    with Session(engine) as s:
        count = s.scalar(select(func.count()).select_from(Case)) or 1
        return s.scalar(select(Case.id).where(Case.status == "awaiting_review",
                                              Case.id >= count // 2).order_by(Case.id)
                        .limit(1)) or 1


def run(url: str, cases: int, devices: int, requests: int, folder: Path) -> dict:
    """Build the center, then time its pages; the figures."""
    engine = make_engine(url)
    upgrade(engine)
    settings = CenterSettings(database=url, images_dir=folder / "images",
                              web=WebSettings(uploads_dir=folder / "uploads"))
    t = time.perf_counter()
    seed(engine, settings, folder, devices)
    copy_cases(engine, max(0, cases - SEED_CASES), devices)
    built_s = time.perf_counter() - t
    with Session(engine) as s:
        total = s.scalar(select(func.count()).select_from(Case))
    case_id = middle_case(engine)
    client = TestClient(create_app(settings, engine))
    log_in(client)
    paths = {"baseline": "/static/app.css", "queue": "/staff",
             "queue_filtered": f"/staff?site=ZJ-{devices // 2:05d}&offset=100",
             "case": f"/staff/cases/{case_id}", "geojson": "/devices.geojson"}
    times = time_pages(client, paths, requests)
    client.close()
    engine.dispose()
    figures: dict = {"cases": total, "devices": devices, "requests": requests,
                     "build_s": round(built_s, 2), "case_id": case_id}
    base50, base95 = percentile(times["baseline"], 0.5), percentile(times["baseline"], 0.95)
    for name, values in times.items():
        p50, p95 = percentile(values, 0.5), percentile(values, 0.95)
        figures[f"{name}_p50_ms"] = round(p50 * 1000, 2)
        figures[f"{name}_p95_ms"] = round(p95 * 1000, 2)
        figures[f"{name}_mean_ms"] = round(statistics.fmean(values) * 1000, 2)
        if name != "baseline":
            figures[f"{name}_p50_x_baseline"] = round(p50 / base50, 1)
            figures[f"{name}_p95_x_baseline"] = round(p95 / base95, 1)
    for name in ("queue", "case"):
        figures[f"{name}_p95_within_goal"] = percentile(times[name], 0.95) <= GOAL_P95_S
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100_000, help="cases (default 100 000)")
    parser.add_argument("--devices", type=int, default=300,
                        help="devices in the registry (default 300)")
    parser.add_argument("--requests", type=int, default=200,
                        help="requests per page (default 200)")
    parser.add_argument("--pg", default=os.environ.get("ZHICHAO_TEST_PG"),
                        help="PostgreSQL server URL (default: ZHICHAO_TEST_PG)")
    parser.add_argument("--json", action="store_true", help="one JSON line at the end")
    args = parser.parse_args(argv)
    if not args.pg:
        parser.error("needs PostgreSQL: --pg URL or ZHICHAO_TEST_PG")
    if args.cases < SEED_CASES or args.devices < 1 or args.requests < 1:
        parser.error(f"--cases ≥ {SEED_CASES}, --devices ≥ 1, --requests ≥ 1")
    if not re.match(r"postgres(ql)?://", args.pg):
        parser.error("--pg: a postgresql:// URL")
    console = Console(stderr=args.json)
    url, name = new_database(args.pg)
    try:
        with tempfile.TemporaryDirectory(prefix="zhichao-bench-web-") as tmp:
            figures = run(url, args.cases, args.devices, args.requests, Path(tmp))
    finally:
        drop_database(args.pg, name)
    figures["day"] = date.today().isoformat()
    report(f"web pages, {figures['cases']} cases in PostgreSQL", figures, console, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
