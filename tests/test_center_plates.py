"""Plates at the center: the center reads the plates a busy roadside unit left unread, from
the packet's real JPEG images in its store, and judges every plate by what the packet says
(GA 36 grammar for its colour, confidence floors, front against rear). Real SQLite file
and real PostgreSQL, the real reader; no mocks."""

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from center_factory import REGISTRY_CSV, center_engine, make_packet, store_packets
from sqlalchemy import select
from sqlalchemy.orm import Session

from center.cases import process_pending
from center.law_models import Capture, Case
from center.registry import import_registry
from center.settings import CenterSettings
from evidence.packet import ImageRef, Packet, PlateRecord
from sim.plates import draw_plate

pytestmark = pytest.mark.timeout(240)


def frame_jpeg(text: str | None, colour: str = "yellow", seed: int = 0,
               size: tuple[int, int] = (1280, 720)) -> bytes:
    """A grey camera frame (1280 × 720 px) with the drawn plate pasted on it (none: an
    empty road), as JPEG."""
    rng = np.random.default_rng(seed)
    image = np.clip(118 + rng.normal(0, 4, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    if text is not None:
        plate = draw_plate(text, colour, px_per_mm=0.5)  # type: ignore[arg-type]
        h, w = plate.shape[:2]
        image[430:430 + h, 560:560 + w] = plate
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


class Store:
    """The center's image folder: files named by their SHA-256, as ingest writes them."""

    def __init__(self, root: Path):
        self.root = root

    def put(self, role: str, data: bytes) -> ImageRef:
        sha = hashlib.sha256(data).hexdigest()
        path = self.root / sha[:2] / sha
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return ImageRef(role=role, sha256=sha, size=len(data))  # type: ignore[arg-type]


UNREAD = PlateRecord(text="", colour="", confidence=0.0, box=[0, 0, 0, 0, 0], unread=True)


def unread_packet(sequence: int, images: list[ImageRef], plate: PlateRecord | None = UNREAD
                  ) -> Packet:
    """A suspected overload (55.4 t on six axles) whose plate the unit left unread."""
    return make_packet(sequence=sequence).model_copy(update={"plate": plate,
                                                             "images": images})


@pytest.fixture
def center(center_db_url, tmp_path):
    engine = center_engine(center_db_url)
    registry = tmp_path / "devices.csv"
    registry.write_text(REGISTRY_CSV, encoding="utf-8")
    with Session(engine) as session, session.begin():
        import_registry(session, registry)
    settings = CenterSettings(database=center_db_url, images_dir=tmp_path / "images")
    yield engine, settings, Store(settings.images_dir)
    engine.dispose()


def captures(engine) -> dict[int, Capture]:
    with Session(engine) as session:
        return {c.sequence: c for c in session.scalars(select(Capture))}


def plate_check(capture: Capture) -> dict:
    return next(c for c in capture.checks if c["id"] == "plate")


def test_the_center_reads_an_unread_plate_and_opens_the_case(center):
    engine, settings, store = center
    images = [store.put("front", frame_jpeg("浙A12345")),
              store.put("rear", frame_jpeg("浙A12345", seed=1))]
    store_packets(engine, [unread_packet(1, images),
                           unread_packet(2, images[:1], plate=None)])
    assert process_pending(engine, settings) == 2
    got = captures(engine)
    both, front = got[1], got[2]
    assert (both.plate, both.plate_source, both.plate_front_rear, both.plate_colour) == \
        ("浙A12345", "center", "agree", "yellow")
    assert both.plate_confidence >= settings.law.min_plate_confidence
    assert both.plate_province_confidence >= settings.law.min_province_confidence
    assert both.evidential and both.over, [c for c in both.checks if not c["ok"]]
    assert "read by the center" in plate_check(both)["text"]
    # only a front camera: no comparison to make
    assert (front.plate, front.plate_source, front.plate_front_rear) == \
        ("浙A12345", "center", None)
    with Session(engine) as session:
        (case,) = session.scalars(select(Case)).all()
        assert (case.plate, case.status) == ("浙A12345", "awaiting_review")


def test_the_edges_own_reading_is_kept_as_the_edges(center):
    engine, settings, store = center
    images = [store.put("front", frame_jpeg("浙A12345"))]
    store_packets(engine, [make_packet(sequence=1).model_copy(update={"images": images})])
    process_pending(engine, settings)
    capture = captures(engine)[1]
    assert (capture.plate, capture.plate_source, capture.evidential) == \
        ("浙A12345", "edge", True)


def test_images_without_a_plate_give_no_readable_plate(center):
    engine, settings, store = center
    images = [store.put("front", frame_jpeg(None)), store.put("rear", frame_jpeg(None, seed=2))]
    store_packets(engine, [unread_packet(1, images)])
    process_pending(engine, settings)
    capture = captures(engine)[1]
    assert not capture.evidential and capture.plate is None and capture.plate_source is None
    text = plate_check(capture)["text"]
    assert text == "no readable plate: the reader found no plate on 1 front and 1 rear images"
    with Session(engine) as session:
        assert session.scalars(select(Case)).all() == []


def test_front_and_rear_in_conflict_are_not_evidence(center):
    engine, settings, store = center
    images = [store.put("front", frame_jpeg("浙A12345")),
              store.put("rear", frame_jpeg("浙A12346", seed=1))]
    edge_says = PlateRecord(text="浙A12345", colour="yellow", confidence=0.95,
                            box=[10, 10, 100, 30, 0], province_confidence=0.99,
                            front_rear="conflict", image="front")
    store_packets(engine, [unread_packet(1, images),
                           unread_packet(2, images[:1], plate=edge_says)])
    process_pending(engine, settings)
    center_read, edge_read = captures(engine)[1], captures(engine)[2]
    assert center_read.plate_front_rear == "conflict" and not center_read.evidential
    assert plate_check(center_read)["text"] == \
        "front plate 浙A12345 and rear plate 浙A12346 disagree"
    assert (edge_read.plate_source, edge_read.plate_front_rear) == ("edge", "conflict")
    assert not edge_read.evidential
    assert plate_check(edge_read)["text"].startswith("front plate 浙A12345 and the rear plate "
                                                     "disagree")


@pytest.mark.parametrize(("text", "colour"), [
    ("=HYPERLINK(1)", "yellow"),   # a spreadsheet formula is no plate
    ("浙A1234", "yellow"),         # one character short
    ("浙A12345", "green"),         # an ordinary serial on a new-energy plate's colour
])
def test_a_text_outside_the_grammar_is_no_plate(center, text, colour):
    engine, settings, store = center
    plate = PlateRecord(text=text, colour=colour, confidence=0.99, box=[10, 10, 100, 30, 0])
    images = [store.put("front", frame_jpeg("浙A12345"))]
    store_packets(engine, [unread_packet(1, images, plate=plate)])
    process_pending(engine, settings)
    capture = captures(engine)[1]
    assert not capture.evidential and capture.plate is None
    assert capture.plate_source == "edge"
    assert plate_check(capture)["text"] == (f"plate text {text!r} read as {colour!r} fits no "
                                            "GA 36 plate of that colour: not a plate")


def test_a_bad_image_does_not_stop_the_batch(center):
    engine, settings, store = center
    good = store.put("front", frame_jpeg("浙A12345"))
    corrupt = store.put("front", b"\xff\xd8\xff\xe0 not a JPEG at all" * 40)
    huge = store.put("front", frame_jpeg("浙B54321", seed=3, size=(1920, 1080)))
    missing = ImageRef(role="front", sha256="ab" * 32, size=10)
    store_packets(engine, [unread_packet(1, [corrupt]), unread_packet(2, [good]),
                           unread_packet(3, [missing]), unread_packet(4, [huge])])
    small = settings.model_copy(update={"law": settings.law.model_copy(
        update={"plate_read_max_pixels": 1280 * 720})})
    assert process_pending(engine, small) == 4
    got = captures(engine)
    assert got[2].evidential and got[2].plate == "浙A12345"
    assert not any(got[k].evidential for k in (1, 3, 4))
    assert plate_check(got[1])["text"] == (
        f"no readable plate: front image {corrupt.sha256[:12]} cannot be decoded: not a JPEG "
        "or PNG image")
    assert plate_check(got[3])["text"] == \
        "no readable plate: front image abababababab is not in the image store"
    assert plate_check(got[4])["text"] == (
        f"no readable plate: front image {huge.sha256[:12]} is 1920 × 1080 px, above the "
        "921600 pixels read at the center")


def test_image_files_above_the_byte_bound_are_refused_with_the_reason(center):
    engine, settings, store = center
    image = store.put("front", frame_jpeg("浙A12345"))
    store_packets(engine, [unread_packet(1, [image])])
    law = settings.law.model_copy(update={"plate_read_max_bytes": image.size - 1})
    process_pending(engine, settings.model_copy(update={"law": law}))
    capture = captures(engine)[1]
    assert not capture.evidential
    assert plate_check(capture)["text"] == (
        f"no readable plate: front image {image.sha256[:12]} has {image.size} bytes, above "
        f"the {image.size - 1} read at the center")
