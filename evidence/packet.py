"""The evidence packet of one vehicle pass: its fields, and their canonical bytes.

A packet is what a roadside unit says about one vehicle: where and when it was weighed,
what the sensors measured, what plate was read, with which calibration and software, and
which images were taken. Images travel beside the packet; the packet names each by its
SHA-256, so the signature over the packet's bytes covers them too.

The canonical bytes (:func:`canonical_bytes`) are JSON with sorted keys, no spaces, UTF-8
text and no NaN: the same packet gives the same bytes on every machine, which is what the
signature and the hash chain are computed over. Times are UTC, written with microseconds
and a ``Z``.
"""

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
)

from zhichao.errors import ZhichaoError

SCHEMA_MAJOR = 1
SCHEMA_MINOR = 1
SCHEMA = f"zhichao.evidence/{SCHEMA_MAJOR}.{SCHEMA_MINOR}"
"""The schema this code writes; it reads every minor version of the same major. 1.1 added
the clock's uncertainty, each image's camera and capture time, the cameras that gave no
frame, and the plate's province confidence, front/rear agreement and unread state."""
GENESIS_HASH = "0" * 64
"""``previous_hash`` of a device's first packet."""

ImageRole = Literal["front", "side", "rear", "plate", "overview"]
FrontRear = Literal["agree", "conflict", "front only", "rear only"]
ClockStatus = Literal["synced", "holdover", "free_running", "unknown"]
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class PacketError(ZhichaoError):
    """A packet is malformed, altered, unsigned by a known key, or of an unknown schema."""


class PacketVersionError(PacketError):
    """A packet's schema has a major version this code does not read."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _utc_text(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


UtcTime = Annotated[datetime, PlainSerializer(_utc_text, return_type=str)]
Base64Bytes = Annotated[bytes, PlainSerializer(
    lambda b: base64.b64encode(b).decode("ascii"), return_type=str)]


class ImageRef(_Frozen):
    """One image of the pass, named by the SHA-256 of its file's bytes."""

    role: ImageRole
    sha256: Sha256Hex
    size: int = Field(ge=1)
    media_type: Literal["image/jpeg", "image/png"] = "image/jpeg"
    camera: str | None = Field(None, max_length=64)
    """The camera device that took it (its name in the unit's settings)."""
    captured_at: UtcTime | None = None
    """The frame's own capture time, on the unit's clock."""


class MissingImage(_Frozen):
    """A camera that should have given a frame of the pass and did not, and why: a
    missing picture is recorded, never passed over in silence."""

    camera: str = Field(max_length=64)
    role: ImageRole
    reason: str = Field(max_length=200)


class VehicleRecord(_Frozen):
    """What the weighing measured; ``raw_record`` is the controller's or digitiser's own
    bytes for the pass, kept so the measurement can be re-derived."""

    axle_loads_kg: list[float]
    axle_groups: list[int]
    """Number of axles in each group, front to back (sums to the axle count)."""
    spacings_m: list[float]
    speed_kmh: float = Field(ge=0)
    gross_kg: float = Field(ge=0)
    axle_code: str | None
    tyres: list[str] = []
    flags: list[str] = []
    raw_record: Base64Bytes = b""

    @field_validator("raw_record", mode="before")
    @classmethod
    def _from_base64(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True)
            except ValueError as exc:
                raise ValueError("raw_record is not base64") from exc
        return value


class PlateRecord(_Frozen):
    """The plate as read at the roadside (the center may read it again). ``unread``: the
    unit had no reading in time (its reader was busy); the text is then empty and the
    center reads the packet's images itself."""

    text: str = Field(max_length=16)
    colour: str = Field(max_length=16)
    confidence: float = Field(ge=0, le=1)
    box: list[float] = Field(min_length=5, max_length=5)
    """Centre x, y, long side, short side (px) and angle (degrees) in the plate image."""
    province_confidence: float | None = Field(None, ge=0, le=1)
    front_rear: FrontRear | None = None
    """Front and rear plates compared; None where only one camera was read."""
    image: ImageRole | None = None
    """Which of the packet's images the plate was read from."""
    votes: int | None = Field(None, ge=0, le=100)
    frames: int | None = Field(None, ge=0, le=100)
    """Frames that read this text, of the frames read."""
    unread: bool = False


class CalibrationRecord(_Frozen):
    """Which calibration weighed the pass, and the device's verification certificate."""

    version: str
    factor_set: str
    certificate: str


class ProcessingTrail(_Frozen):
    """How the pass was processed: software, signal-stage parameters, rule tables."""

    software_version: str
    signal_parameters: dict[str, Any] = {}
    rules_digest: str


class Packet(_Frozen):
    """One vehicle pass as evidence. ``suspected_overload`` passes carry images; the
    others are light traffic records without any."""

    schema_: str = Field(SCHEMA, alias="schema")
    device_id: str = Field(min_length=1, max_length=64)
    site: str
    lane: int = Field(ge=1)
    direction: str
    captured_at: UtcTime
    clock_status: ClockStatus
    clock_uncertainty_ms: float | None = Field(None, ge=0)
    """How far ``captured_at`` may be from the true time (from the clock's error bound
    and the digitiser's fit); None from a unit that does not know."""
    sequence: int = Field(ge=1)
    previous_hash: Sha256Hex
    suspected_overload: bool
    vehicle: VehicleRecord
    plate: PlateRecord | None = None
    calibration: CalibrationRecord
    trail: ProcessingTrail
    images: list[ImageRef] = []
    missing_images: list[MissingImage] = []

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @field_validator("captured_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("captured_at needs a time zone (UTC)")
        return value.astimezone(UTC)


def canonical_bytes(packet: Packet) -> bytes:
    """The packet's one encoding: sorted keys, no spaces, UTF-8, no NaN."""
    data = packet.model_dump(mode="json", by_alias=True)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def packet_hash(meta: bytes) -> str:
    """The hash a device's next packet carries as ``previous_hash``: SHA-256 of the
    canonical bytes."""
    return hashlib.sha256(meta).hexdigest()


def decode_packet(meta: bytes) -> Packet:
    """Canonical bytes → Packet; PacketVersionError for another major version,
    PacketError naming the field for anything else wrong.

    A good packet is parsed and validated in one pass (pydantic's JSON parser, twice as
    fast: the center decodes every packet); anything else is parsed again the slow way,
    which names the schema or the field that is wrong."""
    try:
        packet = Packet.model_validate_json(meta)
    except ValueError:
        packet = None
    if packet is not None and _schema_major(packet.schema_) == SCHEMA_MAJOR:
        return packet
    try:
        data = json.loads(meta.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PacketError(f"packet is not UTF-8 JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise PacketError("packet is not a JSON object")
    schema = data.get("schema")
    major = _schema_major(schema)
    if major != SCHEMA_MAJOR:
        raise PacketVersionError(f"packet schema {schema!r} has major version {major}; "
                                 f"this center reads {SCHEMA_MAJOR}.x only")
    try:
        return Packet.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "packet"
        raise PacketError(f"packet field {where}: {first['msg']}") from exc


def _schema_major(schema: object) -> int | None:
    prefix = "zhichao.evidence/"
    if not isinstance(schema, str) or not schema.startswith(prefix):
        raise PacketError(f"packet schema {schema!r} is not {prefix}MAJOR.MINOR")
    try:
        return int(schema[len(prefix):].split(".")[0])
    except ValueError as exc:
        raise PacketError(f"packet schema {schema!r} is not {prefix}MAJOR.MINOR") from exc


def image_ref(role: ImageRole, data: bytes, media_type: str = "image/jpeg", *,
              camera: str | None = None, captured_at: datetime | None = None) -> ImageRef:
    """The reference a packet carries for one image's bytes."""
    return ImageRef(role=role, sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                    media_type=media_type, camera=camera,  # type: ignore[arg-type]
                    captured_at=captured_at)
