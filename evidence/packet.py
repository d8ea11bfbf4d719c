"""The evidence packet of one vehicle pass: its fields, and their canonical bytes.

A packet is what a roadside unit says about one vehicle: where and when it was weighed,
what the sensors measured, what plate was read, with which calibration and software, and
which images were taken. Images travel beside the packet; the packet names each by its
SHA-256, so the signature over the packet's bytes covers them too.

The canonical bytes (:func:`canonical_bytes`) are JSON with sorted keys, no spaces, UTF-8
text and no NaN: the same packet gives the same bytes on every machine, which is what the
signature and the hash chain are computed over. Times are UTC, written with microseconds
and a ``Z``.

Bytes from outside are bounded before they are parsed (:func:`check_bounds`): their length,
the nesting of their arrays and objects, the length of each number and the number of
values, and no text holds a NUL character; then the schema gives every field its range
(a sequence within a signed 64-bit integer, a lane within the lanes a road has, finite
numbers). Whatever is wrong is a :class:`PacketError` whose ``kind`` names the bound or
check that failed.
"""

import base64
import hashlib
import json
import re
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

from zhichao.errors import ZhichaoError

SCHEMA_MAJOR = 1
SCHEMA_MINOR = 2
SCHEMA = f"zhichao.evidence/{SCHEMA_MAJOR}.{SCHEMA_MINOR}"
"""The schema this code writes; it reads every minor version of the same major. 1.1 added
the clock's uncertainty, each image's camera and capture time, the cameras that gave no
frame, and the plate's province confidence, front/rear agreement and unread state. 1.2
added the calibration's stage chain (each stage's factors, fit, uncertainty and approval),
its digest and its verification certificate's dates; a 1.0 or 1.1 packet reads with no
chain (its ``factor_set`` kept), which the center judges as no calibration shown."""
GENESIS_HASH = "0" * 64
"""``previous_hash`` of a device's first packet."""

ImageRole = Literal["front", "side", "rear", "plate", "overview"]
FrontRear = Literal["agree", "conflict", "front only", "rear only"]
ClockStatus = Literal["synced", "holdover", "free_running", "unknown"]
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


MAX_META_BYTES = 1_000_000
"""The longest packet metadata read (the canonical JSON, images apart): a pass's packet is a
few kB, its controller's raw record included."""
MAX_DEPTH = 32
"""The deepest nesting of arrays and objects read: a packet nests 3 deep, its signal
parameters a few more; Python's own parser recurses once per level."""
MAX_NUMBER_CHARS = 32
"""The longest number read, in characters: a float's shortest repr has at most 24, a 64-bit
integer 20; Python's int() of a long digit string costs time quadratic in its length."""
MAX_VALUES = 20_000
"""The most values (array items and object members) a packet may hold."""
SEQUENCE_MAX = 2**63 - 1
"""The largest sequence: the database's BIGINT (signed 64-bit)."""
LANE_MAX = 99
"""The largest lane number (lanes are numbered from 1 on each carriageway)."""


class PacketError(ZhichaoError):
    """A packet is malformed, altered, unsigned by a known key, or of an unknown schema.
    ``kind`` names what failed, the same for every packet that fails the same way (the
    center counts refusals by it); ``summary`` says it in words, with its limit."""

    def __init__(self, message: str, kind: str = "malformed", summary: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.summary = summary or message


class PacketVersionError(PacketError):
    """A packet's schema has a major version this code does not read."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "schema", "schema of another major version")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


Text64 = Annotated[str, Field(max_length=64)]
Load = Annotated[float, Field(ge=-1_000_000, le=1_000_000)]
"""An axle load as measured: noise can make an empty axle slightly negative."""
Spacing = Annotated[float, Field(ge=0, le=1_000)]


def _utc_text(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


UtcTime = Annotated[datetime, PlainSerializer(_utc_text, return_type=str)]
Base64Bytes = Annotated[bytes, PlainSerializer(
    lambda b: base64.b64encode(b).decode("ascii"), return_type=str)]


class ImageRef(_Frozen):
    """One image of the pass, named by the SHA-256 of its file's bytes."""

    role: ImageRole
    sha256: Sha256Hex
    size: int = Field(ge=1, le=SEQUENCE_MAX)
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

    axle_loads_kg: list[Load] = Field(max_length=32)
    axle_groups: list[Annotated[int, Field(ge=1, le=32)]] = Field(max_length=32)
    """Number of axles in each group, front to back (sums to the axle count)."""
    spacings_m: list[Spacing] = Field(max_length=32)
    speed_kmh: float = Field(ge=0, le=400)
    gross_kg: float = Field(ge=0, le=1_000_000)
    axle_code: str | None = Field(max_length=32)
    tyres: list[Text64] = Field([], max_length=32)
    flags: list[Text64] = Field([], max_length=32)
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
    box: list[Annotated[float, Field(ge=-100_000, le=100_000)]] = Field(min_length=5,
                                                                         max_length=5)
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


MAX_STAGES = 16
"""The most calibration stages a packet carries (a chain has four kinds; a few lane-gain
corrections may stack)."""
MAX_FACTORS = 256
"""The most factors of one stage: one per digitiser channel at most."""
MAX_POINTS = 32
"""The most speeds or temperatures a curve stage is given at."""
FACTOR_MIN, FACTOR_MAX = 0.5, 2.0
"""A calibration factor's range, as the unit's chain allows (``calibration.chain``; this
layer may not import it): outside it, a fault of the fit or the file, not a sensor."""
Factor = Annotated[float, Field(ge=FACTOR_MIN, le=FACTOR_MAX)]
Point = Annotated[float, Field(ge=-60, le=250)]
"""A curve's point: a pavement temperature (°C, from −60) or a speed (km/h, to 250)."""


def _aware_utc(value: datetime | None, what: str) -> datetime | None:
    """A time from outside must say its zone: a naive one is refused, not guessed."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"{what} needs a time zone (UTC)")
    return value.astimezone(UTC)


class CalibrationStageRecord(_Frozen):
    """One stage of the calibration chain the pass was weighed with: what kind of
    correction, its numbers, what it was fitted from, how sure, and who approved it.
    ``points`` are the speeds (km/h) or temperatures (°C) a curve's factors are given at;
    empty for a gain (one factor per channel or lane)."""

    kind: str = Field(pattern=r"^[a-z][a-z_]{0,31}$")
    version: str = Field(min_length=1, max_length=64)
    unit: str = Field("factor", max_length=32)
    fitted_from: str = Field("", max_length=200)
    uncertainty_pct: float = Field(0.0, ge=0, le=100)
    approved_by: str | None = Field(None, max_length=64)
    approved_at: UtcTime | None = None
    factors: list[Factor] = Field(min_length=1, max_length=MAX_FACTORS)
    points: list[Point] = Field([], max_length=MAX_POINTS)

    @field_validator("approved_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return _aware_utc(value, "approved_at")

    @model_validator(mode="after")
    def _curve(self) -> "CalibrationStageRecord":
        if self.points and len(self.points) != len(self.factors):
            raise ValueError(f"{len(self.points)} points but {len(self.factors)} factors")
        return self


class CalibrationRecord(_Frozen):
    """Which calibration weighed the pass, and the verification certificate that covers
    it. From 1.2 the stage chain itself: its version, digest (SHA-256 of the unit's chain
    file, naming it exactly), every stage, who applied it, and the certificate's number
    and dates, so the center can judge whether the certificate covered the capture's day.
    ``factor_set`` is the older form ("settings": factors from the unit's settings file,
    no chain); a packet with no ``chain_digest`` carries no chain."""

    version: str = Field(max_length=64)
    factor_set: str | None = Field(None, max_length=64)
    certificate: str = Field(max_length=200)
    certificate_valid_from: date | None = None
    certificate_valid_to: date | None = None
    chain_digest: Sha256Hex | None = None
    stages: list[CalibrationStageRecord] = Field([], max_length=MAX_STAGES)
    applied_by: str | None = Field(None, max_length=64)
    applied_at: UtcTime | None = None

    @field_validator("applied_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return _aware_utc(value, "applied_at")

    @property
    def has_chain(self) -> bool:
        """The record names a stage chain (a 1.2 unit with one; not the older form)."""
        return self.chain_digest is not None


class ProcessingTrail(_Frozen):
    """How the pass was processed: software, signal-stage parameters, rule tables."""

    software_version: str = Field(max_length=64)
    signal_parameters: dict[str, Any] = Field({}, max_length=256)
    rules_digest: str = Field(max_length=200)


class Packet(_Frozen):
    """One vehicle pass as evidence. ``suspected_overload`` passes carry images; the
    others are light traffic records without any."""

    schema_: str = Field(SCHEMA, alias="schema")
    device_id: str = Field(min_length=1, max_length=64)
    site: str = Field(max_length=200)
    lane: int = Field(ge=1, le=LANE_MAX)
    direction: str = Field(max_length=64)
    captured_at: UtcTime
    clock_status: ClockStatus
    clock_uncertainty_ms: float | None = Field(None, ge=0, le=1e9)
    """How far ``captured_at`` may be from the true time (from the clock's error bound
    and the digitiser's fit); None from a unit that does not know."""
    sequence: int = Field(ge=1, le=SEQUENCE_MAX)
    previous_hash: Sha256Hex
    suspected_overload: bool
    vehicle: VehicleRecord
    plate: PlateRecord | None = None
    calibration: CalibrationRecord
    trail: ProcessingTrail
    images: list[ImageRef] = Field([], max_length=64)
    missing_images: list[MissingImage] = Field([], max_length=64)

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True,
                              allow_inf_nan=False)

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


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NUMBER = re.compile(rb"[-+0-9.eE]{%d,}" % (MAX_NUMBER_CHARS + 1))
_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def check_bounds(meta: bytes) -> None:
    """PacketError unless ``meta`` is within every bound that keeps parsing it cheap and
    safe: :data:`MAX_META_BYTES`, :data:`MAX_DEPTH`, :data:`MAX_NUMBER_CHARS` and
    :data:`MAX_VALUES`. Runs before any parser: it only scans the bytes (strings removed,
    then the brackets counted), never recursing.

    Examples
    --------
    >>> check_bounds(b'{"a":[1,2,{"b":"[[["}]}')
    >>> try:
    ...     check_bounds(b"[" * 40 + b"]" * 40)
    ... except PacketError as exc:
    ...     print(exc.kind, exc)
    too_deep packet nests arrays and objects 33 deep at byte 32; the limit is 32
    """
    if len(meta) > MAX_META_BYTES:
        raise PacketError(f"packet metadata has {len(meta)} bytes; the limit is "
                          f"{MAX_META_BYTES}", "too_large",
                          f"metadata too large (limit {MAX_META_BYTES} bytes)")
    if _NUL.search(meta):
        raise PacketError("packet has a NUL character (\\u0000) in a text; no text of a "
                          "packet holds one, and PostgreSQL cannot store one",
                          "nul_character", "NUL character in a text")
    bare = _STRING.sub(b'""', meta)
    long = _NUMBER.search(bare)
    if long is not None:
        raise PacketError(f"packet has a number of {len(long.group())} characters; the "
                          f"limit is {MAX_NUMBER_CHARS}", "number_too_long",
                          f"number too long (limit {MAX_NUMBER_CHARS} characters)")
    values = bare.count(b",") + bare.count(b":")
    if values > MAX_VALUES:
        raise PacketError(f"packet has {values} values; the limit is {MAX_VALUES}",
                          "too_many_values", f"too many values (limit {MAX_VALUES})")
    brackets = bare.translate(None, _NOT_BRACKET)
    if len(brackets) <= 2 * MAX_DEPTH:
        return  # cannot nest deeper than the limit
    depth = 0
    for n, b in enumerate(brackets):
        if b in b"[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise PacketError(f"packet nests arrays and objects {depth} deep at byte "
                                  f"{_nth_bracket(bare, n)}; the limit is {MAX_DEPTH}",
                                  "too_deep", f"nesting too deep (limit {MAX_DEPTH})")
        else:
            depth -= 1


def _nth_bracket(bare: bytes, n: int) -> int:
    """Where the ``n``-th bracket (from 0) is in ``bare`` (for the message)."""
    seen = -1
    for i, b in enumerate(bare):
        if b in b"[]{}":
            seen += 1
            if seen == n:
                return i
    return len(bare)


def decode_packet(meta: bytes) -> Packet:
    """Canonical bytes → Packet; PacketVersionError for another major version,
    PacketError naming the bound or the field for anything else wrong.

    The bytes are bounded first (:func:`check_bounds`). A good packet is then parsed and
    validated in one pass (pydantic's JSON parser, twice as fast: the center decodes every
    packet); anything else is parsed again the slow way, which names the schema or the
    field that is wrong."""
    check_bounds(meta)
    try:
        packet = Packet.model_validate_json(meta)
    except ValueError:
        packet = None
    if packet is not None and _schema_major(packet.schema_) == SCHEMA_MAJOR:
        return packet
    try:
        data = json.loads(meta.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PacketError(f"packet is not UTF-8 JSON: {exc}", "malformed",
                          "not UTF-8 JSON") from exc
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
        field = ".".join(str(p) for p in first["loc"] if not isinstance(p, int)) or "packet"
        raise PacketError(f"packet field {where}: {first['msg']}", "field",
                          f"field {field} out of its range or type") from exc


def _no_constant(name: str) -> float:
    """json.loads' hook for NaN and Infinity, which no packet carries."""
    raise ValueError(f"{name} is not a JSON number")


def _schema_major(schema: object) -> int | None:
    prefix = "zhichao.evidence/"
    if not isinstance(schema, str) or not schema.startswith(prefix):
        raise PacketError(f"packet schema {str(schema)[:40]!r} is not {prefix}MAJOR.MINOR",
                          "schema", "schema not named")
    major = schema[len(prefix):].split(".")[0]
    if not (major.isascii() and major.isdigit()) or len(major) > 4:
        raise PacketError(f"packet schema {schema[:40]!r} is not {prefix}MAJOR.MINOR",
                          "schema", "schema not named")
    return int(major)


def image_ref(role: ImageRole, data: bytes, media_type: str = "image/jpeg", *,
              camera: str | None = None, captured_at: datetime | None = None) -> ImageRef:
    """The reference a packet carries for one image's bytes."""
    return ImageRef(role=role, sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                    media_type=media_type, camera=camera,  # type: ignore[arg-type]
                    captured_at=captured_at)
