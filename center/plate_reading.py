"""The center reads the plates a roadside unit could not: same reader, the packet's images.

A roadside unit whose plate reader was busy sends its suspected overload anyway, with
``plate.unread`` (or no plate at all) and its front and rear images. Before such a packet
is graded, the center loads those images from its store (files named by their SHA-256,
:meth:`center.ingest.Ingestor.image_path`), reads the front frames with
:meth:`plates.reader.PlateReader.read_vehicle` and the rear ones with
:meth:`~plates.reader.PlateReader.read`, compares them
(:func:`plates.reader.compare_front_rear`) and uses that reading, marked as read at the
center. Images of other roles (side, overview, a plate crop) are not read.

Every image is bounded before it is decoded: its file size (``law.plate_read_max_bytes``),
its digest (the file must be the image the packet names) and its pixel count from the
header alone (``law.plate_read_max_pixels``, Pillow reads no pixels to tell it). An image
refused, missing or undecodable is one reason on that packet's capture ("no readable
plate: ..."), never an exception that stops the batch. Only a reader that cannot start
(its package missing) raises: that is the center's fault, not the packet's, and the
packets stay pending until it is fixed.

Time: one engine per process, loaded on first need (about 1 s). Reading one vehicle, a
front and a rear frame of 1 280 × 720 px, took on this 2-core machine (shared, busy)
220–265 ms with a drawn yellow plate on a grey frame, and 344 ms median, 582 ms p95, over
the 59 real street scenes of the shared data set (each read as front and as rear); the
text detector over the whole frame is most of it. That is acceptable in the cases thread,
without a worker thread of its own: :func:`center.cases.process_pending` first captures
the packets that need no reading (:func:`center.unread_plates.needs_reading`), then reads
the others one at a time, each between transactions, so no lock and no transaction is held
meanwhile and the receiver (its own thread and connection) goes on storing and
acknowledging; before each reading it captures the packets stored since that need none,
so a packet whose unit read its plate never waits behind a reading. Only the packets
whose unit was too busy to read are read here, a minority of the suspected overloads,
themselves a minority of the traffic. What it costs: a backlog of 500 unread packets
takes about 3 minutes to read, and the reader takes CPU from the receiver while it runs
(ONNX Runtime's threads do not spin between runs).
"""

import functools
import hashlib
import io
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from center.unread_plates import READ_ROLES, needs_reading
from evidence.packet import ImageRef, Packet, PlateRecord
from overload.plates import load_plate_grammar
from plates.engines import Engine, load_engine
from plates.reader import PlateReader, PlateReading, ReaderOptions, compare_front_rear, vote
from zhichao.errors import ZhichaoError

MAX_FRAMES_PER_SIDE = 4
"""At most this many front and this many rear images are read per packet: a unit sends
one or two per camera, and a packet naming dozens would only cost time."""

_engine_lock = threading.Lock()
_engine: list[Engine] = []
"""The process's one engine, once started (a list, so no ``global`` is needed)."""


@dataclass(frozen=True)
class ReadLimits:
    """The bounds of an image the center agrees to decode."""

    max_bytes: int
    max_pixels: int


@dataclass(frozen=True)
class CenterPlate:
    """The plate the center read from a packet's images, or why there is none.

    ``record`` is the reading in the packet's own form (None: no plate read); ``rear``
    the texts read on the rear images (for the words of a conflict); ``reason`` says why
    there is no record, or which images could not be used beside one.
    """

    record: PlateRecord | None
    rear: tuple[str, ...] = ()
    reason: str | None = None


class ImageRefusedError(ZhichaoError):
    """An image the center will not or cannot read: too large, missing, altered or not
    decodable. Its message is the reason recorded on the capture."""


def _shared_engine() -> Engine:
    """The process's one engine (onnx), started on first need; PlateEngineError if its
    package is missing (never downloaded)."""
    with _engine_lock:
        if not _engine:
            _engine.append(load_engine("onnx"))
        return _engine[0]


@functools.cache
def center_reader(rules_folder: Path | None = None) -> PlateReader:
    """The reader for the grammar of ``rules_folder`` (default: the shipped tables), on
    the process's one engine. No second look in more light (``ReaderOptions``): what
    the center reads becomes evidence, and a lit frame can give a confident wrong plate
    where the frame as taken gave none."""
    return PlateReader(_shared_engine(), load_plate_grammar(rules_folder),
                       ReaderOptions(second_look=False))


def load_frame(images_dir: Path, ref: ImageRef, limits: ReadLimits) -> np.ndarray:
    """The BGR pixels of one stored image, bounded; ImageRefusedError with the reason."""
    name = f"{ref.role} image {ref.sha256[:12]}"
    path = Path(images_dir) / ref.sha256[:2] / ref.sha256
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise ImageRefusedError(f"{name} has {size} bytes, above the "
                               f"{limits.max_bytes} read at the center")
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ImageRefusedError(f"{name} is not in the image store") from exc
    except OSError as exc:
        raise ImageRefusedError(f"{name} cannot be read ({exc.strerror or exc})") from exc
    if hashlib.sha256(data).hexdigest() != ref.sha256:
        raise ImageRefusedError(f"{name}: the stored file is not the image the packet names")
    return _decode(name, data, limits.max_pixels)


def _decode(name: str, data: bytes, max_pixels: int) -> np.ndarray:
    """Pixels of an image whose header says it is small enough (Pillow reads the header
    only; OpenCV then decodes)."""
    try:
        with Image.open(io.BytesIO(data)) as header:
            width, height = header.size
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError,
            ValueError) as exc:
        raise ImageRefusedError(f"{name} cannot be decoded: not a JPEG or PNG image") from exc
    if width * height > max_pixels:
        raise ImageRefusedError(f"{name} is {width} × {height} px, above the {max_pixels} "
                           "pixels read at the center")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageRefusedError(f"{name} cannot be decoded ({len(data)} bytes)")
    return image


def _frames(packet: Packet, images_dir: Path, limits: ReadLimits
            ) -> tuple[dict[str, list[np.ndarray]], list[str]]:
    """The front and rear frames that could be loaded, and why the others could not."""
    frames: dict[str, list[np.ndarray]] = {role: [] for role in READ_ROLES}
    problems = []
    for role in READ_ROLES:
        for ref in [r for r in packet.images if r.role == role][:MAX_FRAMES_PER_SIDE]:
            try:
                frames[role].append(load_frame(images_dir, ref, limits))
            except ImageRefusedError as exc:
                problems.append(str(exc))
    return frames, problems


def _record(reading: PlateReading, front_rear: str | None, role: str) -> PlateRecord:
    """A reading in the packet's form."""
    return PlateRecord(text=reading.text, colour=reading.colour,
                       confidence=round(float(reading.confidence), 4),
                       box=reading.box.as_list(),
                       province_confidence=round(float(reading.province_confidence), 4),
                       front_rear=front_rear, image=role)  # type: ignore[arg-type]


def read_frames(reader: PlateReader, front: Sequence[np.ndarray], rear: Sequence[np.ndarray]
                ) -> CenterPlate:
    """The plate of one vehicle from its front and rear frames: the front's vote, compared
    with every rear reading; the rear's own vote when the front shows none."""
    try:
        vehicle = reader.read_vehicle(front)
        rear_reads = [reader.read(frame) for frame in rear]
    except (cv2.error, ValueError, ZhichaoError) as exc:
        return CenterPlate(None, reason=f"the plate reader failed on the images: {exc}")
    compared = compare_front_rear(vehicle, rear_reads)
    side = compared.status if rear else None
    if vehicle.reading is not None:
        return CenterPlate(_record(vehicle.reading, side, "front"), compared.rear)
    voted = vote([found[0] for found in rear_reads if found], len(rear)).reading
    if voted is not None:
        return CenterPlate(_record(voted, "rear only" if front else None, "rear"),
                           compared.rear)
    return CenterPlate(None, reason=f"the reader found no plate on {len(front)} front and "
                       f"{len(rear)} rear images")


def read_packet_plate(packet: Packet, images_dir: Path | None, limits: ReadLimits,
                      rules_folder: Path | None = None) -> CenterPlate:
    """The plate of a packet the roadside unit did not read, from its stored images."""
    if images_dir is None:
        return CenterPlate(None, reason="no image store to read the images from")
    frames, problems = _frames(packet, images_dir, limits)
    if not frames["front"] and not frames["rear"]:
        return CenterPlate(None, reason="; ".join(problems) or "no front or rear image")
    found = read_frames(center_reader(rules_folder), frames["front"], frames["rear"])
    if problems:
        extra = "; ".join(problems)
        reason = f"{found.reason}; {extra}" if found.reason else extra
        return CenterPlate(found.record, found.rear, reason)
    return found


def read_plates(packets: Sequence[Packet], images_dir: Path | None, limits: ReadLimits,
                rules_folder: Path | None = None) -> dict[tuple[str, int], CenterPlate]:
    """The center's reading of every packet that needs one, by (device, sequence)."""
    return {(p.device_id, p.sequence): read_packet_plate(p, images_dir, limits, rules_folder)
            for p in packets if needs_reading(p)}
