"""The demo's second half: the weighed vehicles as signed evidence, over ZeroMQ with CURVE,
into a center on SQLite, checked against the law and turned into cases.

The simulated site has one roadside unit per direction: ``demo-east`` (lanes 1 and 2),
announced and signed like any device in service, and ``demo-west`` (lanes 3 and 4), whose
public notice was never published — so its captures are stored and graded, but none is
evidence, and the reason is listed. Everything runs on 127.0.0.1 in a temporary folder:
keys, outboxes, the center's database and its image files.
"""

import threading
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import zmq
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from center.cases import list_cases, process_pending
from center.db import make_engine, upgrade
from center.ingest import enrol_from_files
from center.ingest_models import StoredPacket
from center.law_models import Capture
from center.receiver import run_receiver
from center.registry import import_registry
from center.settings import CenterSettings, ReceiverSettings
from edge.outbox import Outbox
from edge.packets import draft_packet
from edge.sender import Sender, SenderOptions, curve_keys
from edge.signal.vehicles import Vehicle
from evidence.keys import make_keys
from evidence.packet import CalibrationRecord, PlateRecord, ProcessingTrail
from evidence.signing import load_signing_key
from overload import RuleBook
from sim.plates import draw_plate, random_plate_text
from zhichao import __version__

DEVICES = {"demo-east": (1, 2), "demo-west": (3, 4)}
"""Roadside units of the demo site and the lanes (1-based) each watches."""
UNANNOUNCED = "demo-west"
"""The unit whose location was never published: none of its captures is evidence."""
DIRECTIONS = {"demo-east": "east", "demo-west": "west"}
CERTIFICATES = {"demo-east": "JD-DEMO-001", "demo-west": "JD-DEMO-002"}
DELIVERY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Delivered:
    """What the evidence half did: packets sent, stored, cases opened, and per unit how
    many captures over the limit are not evidence."""

    packets: int
    with_images: int
    stored: int
    cases: int
    not_evidence: dict[str, int]
    seconds: float


def registry_rows(today: date) -> str:
    """The demo devices' registry as CSV: east complete, west without its public notice."""
    header = ("device_id,road,stake,direction,latitude,longitude,review_date,"
              "certificate_number,accuracy_class,certificate_valid_from,certificate_valid_to,"
              "signs_installed,notice_date,notice_document,notice_url,enforcement_start,"
              "active,suspensions")
    d = {k: (today - timedelta(days=n)).isoformat()
         for k, n in (("review", 120), ("cert", 100), ("signs", 90), ("notice", 80),
                      ("start", 60))}
    valid_to = (today + timedelta(days=265)).isoformat()
    east = (f"demo-east,G60 沪昆高速,K123+450,上行 (east),30.2500,120.1600,{d['review']},"
            f"JD-DEMO-001,5,{d['cert']},{valid_to},{d['signs']},{d['notice']},"
            f"浙交〔2026〕1号,,{d['start']},true,")
    west = (f"demo-west,G60 沪昆高速,K123+450,下行 (west),30.2500,120.1600,{d['review']},"
            f"JD-DEMO-002,5,{d['cert']},{valid_to},{d['signs']},,,,{d['start']},true,")
    return "\n".join((header, east, west)) + "\n"


def _jpeg(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return data.tobytes()


def _plate_images(text: str, colour: str, rng: np.random.Generator) -> tuple[bytes, bytes]:
    """A front view (the plate on a grey vehicle front) and the plate crop, as JPEGs."""
    plate = draw_plate(text, colour, px_per_mm=0.5)      # type: ignore[arg-type]
    front = np.full((480, 640, 3), 0, np.uint8)
    front[:] = rng.integers(60, 160, 3).astype(np.uint8)
    h, w = plate.shape[:2]
    front[300: 300 + h, 320 - w // 2: 320 - w // 2 + w] = plate
    return _jpeg(front), _jpeg(plate)


def _free_port() -> int:
    with zmq.Context.instance().socket(zmq.ROUTER) as probe:
        return probe.bind_to_random_port("tcp://127.0.0.1")


def deliver(vehicles: list[Vehicle], over: np.ndarray, *, start: datetime, folder: Path,
            rules: RuleBook, seed: int, console: Console) -> Delivered:
    """Send every vehicle from its unit's outbox to a center started here, wait until all
    are stored, and let the center make its cases."""
    t0 = time.perf_counter()
    group_threshold_m = rules.group_threshold_m
    trail = ProcessingTrail(software_version=__version__, rules_digest=rules.digest)
    keys = folder / "keys"
    make_keys(keys, "center", curve_only=True)
    for device in DEVICES:
        make_keys(keys, device)
    settings = CenterSettings(
        database=str(folder / "center.db"), images_dir=folder / "images",
        receiver=ReceiverSettings(listen=[f"tcp://127.0.0.1:{_free_port()}"],
                                  server_secret_key=keys / "center.key_secret"))
    engine = make_engine(settings.database)
    upgrade(engine)
    registry = folder / "registry.csv"
    registry.write_text(registry_rows(start.date()), encoding="utf-8")
    with Session(engine) as session:
        import_registry(session, registry, actor="demo")
        session.commit()
    for device in DEVICES:
        enrol_from_files(engine, device, keys / f"{device}.sign.pub", keys / f"{device}.key")

    stop = threading.Event()
    receiver = threading.Thread(target=run_receiver, args=(settings, stop), daemon=True,
                                name="center-receiver")
    receiver.start()
    server_public, _ = curve_keys(keys / "center.key", "center key")
    rng = np.random.default_rng(seed)
    units: dict[str, tuple[Outbox, Sender]] = {}
    total = with_images = 0
    try:
        for device, lanes in DEVICES.items():
            outbox = Outbox(folder / f"{device}.outbox", load_signing_key(keys / f"{device}.sign"))
            public, secret = curve_keys(keys / f"{device}.key_secret", "device key")
            sender = Sender(outbox, settings.receiver.listen, server_public=server_public,
                            client_public=public, client_secret=secret,
                            options=SenderOptions(heartbeat_s=1.0))
            items = []
            for i, v in enumerate(vehicles):
                if v.lane + 1 not in lanes:
                    continue
                colour = "yellow" if v.n_axles >= 3 else "blue"
                text = random_plate_text(rng, colour)    # type: ignore[arg-type]
                plate = PlateRecord(text=text, colour=colour, confidence=0.97,
                                    box=[110.0, 35.0, 220.0, 70.0, 0.0])
                images = []
                if over[i]:
                    front, crop = _plate_images(text, colour, rng)
                    images = [("front", front), ("plate", crop)]
                items.append(draft_packet(
                    device, site="G60 沪昆高速 K123+450", direction=DIRECTIONS[device],
                    lane=v.lane + 1, captured_at=start + timedelta(seconds=float(v.t_s)),
                    clock_status="synced", speed_mps=v.speed_mps,
                    axle_loads_kg=v.axle_loads_kg, spacings_m=v.spacings_m, tyres=v.tyres,
                    axle_code=None if "unknown_code" in v.flags else v.axle_code,
                    flags=v.flags, group_threshold_m=group_threshold_m,
                    suspected=bool(over[i]), plate=plate, images=images,
                    calibration=CalibrationRecord(version="demo", factor_set="default",
                                                  certificate=CERTIFICATES[device]),
                    trail=trail))
                with_images += bool(images)
            if items:
                outbox.put_many(items)
            total += len(items)
            units[device] = (outbox, sender)
            sender.start()
        stored = _wait_stored(engine, total, console)
        process_pending(engine, settings)
    finally:
        for outbox, sender in units.values():
            sender.stop()
            outbox.close()
        stop.set()
        receiver.join(timeout=10.0)
    with Session(engine) as session:
        cases = len(list_cases(session))
        rows = session.execute(select(Capture.device_id, func.count()).where(
            Capture.over.is_(True), Capture.evidential.is_(False))
            .group_by(Capture.device_id)).all()
    engine.dispose()
    return Delivered(total, with_images, stored, cases, {d: n for d, n in rows},
                     time.perf_counter() - t0)


def _wait_stored(engine: Engine, total: int, console: Console) -> int:
    """Wait, with a progress bar, until the center has stored ``total`` packets."""
    stored = 0
    deadline = time.monotonic() + DELIVERY_TIMEOUT_S
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(),
               TextColumn("{task.completed}/{task.total} packets"))
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("evidence → center (ZeroMQ, CURVE)", total=total)
        while stored < total and time.monotonic() < deadline:
            with Session(engine) as session:
                stored = session.scalar(select(func.count()).select_from(StoredPacket)) or 0
            progress.update(task, completed=stored)
            time.sleep(0.1)
    if stored < total:
        console.print(f"[bold red]only {stored} of {total} packets reached the center in "
                      f"{DELIVERY_TIMEOUT_S:.0f} s[/]")
    return stored


def cases_table(folder: Path) -> Table:
    """The center's cases as staff would first see them, with why captures were kept out."""
    engine = make_engine(folder / "center.db")
    table = Table(title="cases awaiting review at the center", header_style="bold")
    for name in ("case", "plate", "unit", "captured (UTC)", "gross t", "excess t", "action",
                 "fine ¥", "first violation"):
        table.add_column(name, no_wrap=True)
    with Session(engine) as session:
        for case in list_cases(session):
            best = session.get(Capture, case.best_capture_id) if case.best_capture_id else None
            table.add_row(
                str(case.id), escape(case.plate), best.device_id if best else "",
                best.captured_at.strftime("%H:%M:%S") if best else "",
                f"{best.gross_kg / 1000:.1f}" if best else "",
                f"{(best.excess_kg or 0) / 1000:.1f}" if best else "", case.action or "",
                f"{case.fine_yuan:,.0f}" if case.fine_yuan is not None else "",
                "yes" if case.first_violation else "no")
    engine.dispose()
    return table


def not_evidence_reasons(folder: Path, device: str = UNANNOUNCED) -> list[str]:
    """The failed checks of one of ``device``'s captures over the limit, in words."""
    engine = make_engine(folder / "center.db")
    with Session(engine) as session:
        capture = session.scalar(select(Capture).where(
            Capture.device_id == device, Capture.over.is_(True),
            Capture.evidential.is_(False)).limit(1))
        reasons = [c["text"] for c in (capture.checks if capture else []) if not c["ok"]]
    engine.dispose()
    return reasons


def today_utc() -> datetime:
    """Now, to the second, in UTC: the demo's captures are timed from it."""
    return datetime.now(UTC).replace(microsecond=0)
