"""A center with cases, registers and staff who can log in, for the web pages' tests: the
real app on a real database (SQLite or PostgreSQL), photos stored as the receiver stores
them (``images_dir/ab/abcdef…``)."""

import hashlib
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np
from center_factory import (
    REGISTRY_CSV,
    STAFF_CSV,
    T0,
    center_engine,
    make_packet,
    store_packets,
)
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from center.cases import process_pending
from center.law_models import Case
from center.notify import LetterSettings, NotifySettings
from center.registry import import_registry
from center.settings import CenterSettings, LawSettings, ProcedureSettings, WebSettings
from center.staff import import_staff
from center.vehicles import import_vehicles
from center.web import auth
from center.web.app import create_app
from evidence.packet import ImageRef

PASSWORD = "correct horse battery staple"
"""Every test officer's password."""
VEHICLES_CSV = """\
plate,plate_colour,kind,licence_mass_kg,air_suspension,axle_code,owner_kind,owner_name,\
owner_id_number,address,phone,email,transport_certificate
浙A12345,yellow,,,false,157,person,王五,,浙江省杭州市上城区示例街2号,,,
浙B77777,yellow,,,false,157,company,杭州示例物流有限公司,91330100MA2B3C4D5N,\
浙江省杭州市西湖区示例路1号,0571-88880000,fleet@example.com,330100123456
"""
CASES = (("浙A12345", 55_400), ("浙B77777", 63_700), ("浙A12345", 49_800))
"""The plates and gross masses of the stored packets (157 combinations, limit 49 t), a
day apart, so each is its own case."""


@dataclass
class WebCenter:
    """A center behind its web app: settings, database, app, and the case ids."""

    settings: CenterSettings
    engine: Engine
    client: TestClient
    cases: list[int]
    folder: Path


def photo(seed: int, text: str) -> bytes:
    """A JPEG photo of a pass: a grey scene with a yellow plate drawn on it."""
    rng = np.random.default_rng(seed)
    img = rng.integers(60, 120, (480, 640, 3), dtype=np.uint8)
    cv2.rectangle(img, (260, 330), (380, 370), (0, 200, 230), -1)
    cv2.putText(img, text, (268, 360), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 2)
    ok, jpeg = cv2.imencode(".jpg", img)
    assert ok
    return jpeg.tobytes()


def store(engine: Engine, images_dir: Path, packets_and_photos) -> None:
    """Store packets as the receiver would, and their photos where it puts them."""
    store_packets(engine, [packet for packet, _ in packets_and_photos])
    for _, jpeg in packets_and_photos:
        sha = hashlib.sha256(jpeg).hexdigest()
        path = images_dir / sha[:2] / sha
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(jpeg)


def web_center(url: str, folder: Path, benchmark: str = "national") -> WebCenter:
    """A migrated center with devices, staff (each with the password above), vehicles,
    three cases awaiting review, and its app under a test client."""
    engine = center_engine(url)
    for name, body in {"devices.csv": REGISTRY_CSV, "staff.csv": STAFF_CSV,
                       "vehicles.csv": VEHICLES_CSV}.items():
        (folder / name).write_text(body, encoding="utf-8")
    with Session(engine) as s, s.begin():
        import_registry(s, folder / "devices.csv")
        import_staff(s, folder / "staff.csv")
        import_vehicles(s, folder / "vehicles.csv")
        for officer in ("ZF001", "ZF002", "FS001", "ADM01"):
            auth.set_password(s, officer, PASSWORD)
    settings = CenterSettings(
        database=url, images_dir=folder / "images", law=LawSettings(benchmark=benchmark),
        procedure=ProcedureSettings(notify=NotifySettings(
            channels=["letter"], letter=LetterSettings(folder=folder / "letters"))),
        web=WebSettings(uploads_dir=folder / "uploads"))
    items = []
    for i, (plate, gross) in enumerate(CASES, start=1):
        jpeg = photo(i, plate[1:])
        packet = make_packet(plate=plate, gross_kg=gross, sequence=i,
                             captured_at=T0 + timedelta(days=i - 1))
        ref = ImageRef(role="front", sha256=hashlib.sha256(jpeg).hexdigest(), size=len(jpeg))
        items.append((packet.model_copy(update={"images": [ref]}), jpeg))
    store(engine, settings.images_dir, items)
    process_pending(engine, settings)
    with Session(engine) as s:
        cases = list(s.scalars(select(Case.id).order_by(Case.id)))
    client = TestClient(create_app(settings, engine))
    return WebCenter(settings, engine, client, cases, folder)


CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def log_in(client: TestClient, officer: str) -> str:
    """Log the client in as ``officer``; the session's CSRF token (read from a page, as
    a browser's form carries it)."""
    r = client.post("/staff/login", data={"officer_id": officer, "password": PASSWORD},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    page = client.get("/staff")
    found = CSRF.search(page.text)
    assert found, page.text[:500]
    return found.group(1)
