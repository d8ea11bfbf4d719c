"""Finished vehicle records from a WIM controller that weighs by itself, as text lines.

Controllers that already turn sensor signals into vehicles send one record per vehicle.
Each vendor has its own line; a format is one small class behind the
:class:`RecordFormat` protocol, registered by name in :data:`FORMATS`. The one shipped,
``wim1``, is our documented format (``docs/protocols.md``), NMEA-like::

    $WIM1,<seq>,<time>,<lane>,<speed>,<axles>,<w1;w2;...>,<s1;s2;...>,<gross>,<flags>*<XX>\\r\\n

``seq``     record number, 0..4294967295 (wraps)
``time``    UTC time the front axle crossed, ISO 8601 with a ``Z``: 2026-05-01T08:30:12.345Z
``lane``    lane number as counted on the road, 1 = the first (``VehicleRecord.lane`` is
            0-based like the rest of zhichao)
``speed``   km/h, one decimal
``axles``   number of axles, 1..20
``w1;...``  axle loads, whole kg, one per axle
``s1;...``  axle spacings, m, two decimals, one fewer than the axles (empty for one axle)
``gross``   gross vehicle weight, whole kg: the sum of the axle loads within 1 kg
``flags``   ``;``-separated lower-case words (``speed_change``, ``straddling``...) or empty
``XX``      XOR of every byte between ``$`` and ``*``, two upper-case hex digits

Every byte is printable ASCII. A record whose fields disagree (a weight count that is not
the axle count, a gross that is not the sum) is a :class:`~drivers.errors.ProtocolError`
naming the field, counted as a bad frame.
"""

import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import reduce
from operator import xor
from typing import Any, ClassVar, Protocol

from drivers.errors import ProtocolError
from drivers.framing import BAD, FRAME, NEED_MORE, Codec, Status, find_byte

MAX_LINE_BYTES = 512
MAX_AXLES = 20
GROSS_TOLERANCE_KG = 1.0
"""How far ``gross`` may differ from the sum of the axle loads (rounding)."""
_FLAG = re.compile(r"[a-z][a-z0-9_]*\Z")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z\Z")
_UINT = re.compile(r"\d{1,10}\Z")
_DECIMAL = re.compile(r"\d{1,6}(\.\d{1,3})?\Z")
_HEX = b"0123456789ABCDEF"


@dataclass(frozen=True)
class VehicleRecord:
    """One vehicle as a WIM controller weighed it."""

    sequence: int
    time_utc: datetime
    lane: int                           # 0-based
    speed_kmh: float
    axle_loads_kg: tuple[float, ...]
    spacings_m: tuple[float, ...]
    gross_kg: float
    flags: tuple[str, ...] = ()

    @property
    def n_axles(self) -> int:
        """Number of axles."""
        return len(self.axle_loads_kg)

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-ready dict (time as ISO 8601 text)."""
        out = asdict(self)
        out.update(kind="vehicle", time_utc=iso_utc(self.time_utc),
                   axle_loads_kg=list(self.axle_loads_kg), spacings_m=list(self.spacings_m),
                   flags=list(self.flags))
        return out


def iso_utc(t: datetime) -> str:
    """``t`` as ISO 8601 UTC with milliseconds and a ``Z``."""
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check_consistency(r: VehicleRecord, tolerance_kg: float = GROSS_TOLERANCE_KG) -> None:
    """Raise :class:`ProtocolError` naming the field when a record contradicts itself."""
    where = f"vehicle record {r.sequence}"
    if not 1 <= r.n_axles <= MAX_AXLES:
        raise ProtocolError(f"{where}: field 'axles' must be 1..{MAX_AXLES} (got {r.n_axles})")
    if len(r.spacings_m) != r.n_axles - 1:
        raise ProtocolError(f"{where}: field 'spacings' has {len(r.spacings_m)} values, "
                            f"expected {r.n_axles - 1} for {r.n_axles} axles")
    total = sum(r.axle_loads_kg)
    if abs(r.gross_kg - total) > tolerance_kg:
        raise ProtocolError(f"{where}: field 'gross' is {r.gross_kg:g} kg but the axle "
                            f"loads sum to {total:g} kg (allowed difference "
                            f"{tolerance_kg:g} kg)")


class RecordFormat(Protocol):
    """A vendor's vehicle record format: framing, decoding and (for twins) encoding."""

    name: str
    max_record_bytes: int

    def find_start(self, buf: bytes, start: int) -> int:
        """Next index where a record may begin (see :mod:`drivers.framing`)."""

    def check(self, buf: bytes, start: int) -> tuple[Status, int]:
        """NEED_MORE / BAD / FRAME for the record at ``start``."""

    def decode(self, record: bytes) -> VehicleRecord:
        """The record of one whole line that passed :meth:`check`."""

    def encode(self, record: VehicleRecord) -> bytes:
        """The bytes the controller sends for ``record``."""


def nmea_checksum(payload: bytes) -> int:
    """XOR of the bytes of ``payload`` (the part between ``$`` and ``*``).

    Examples
    --------
    >>> f"{nmea_checksum(b'GPGLL,5300.97914,N,00259.98174,E,125926,A'):02X}"
    '28'
    """
    return reduce(xor, payload, 0)


class NmeaLineFormat:
    """Lines ``$<fields>*XX\\r\\n`` with an XOR checksum; subclasses give the fields.

    A subclass sets ``talker`` (the first field) and implements :meth:`parse_fields` and
    :meth:`format_fields`.
    """

    talker: ClassVar[str] = ""
    name: ClassVar[str] = ""
    max_record_bytes: int = MAX_LINE_BYTES
    find_start = staticmethod(find_byte(ord("$")))

    def check(self, buf: bytes, start: int) -> tuple[Status, int]:
        """A whole printable line whose checksum holds, or why not."""
        head = buf[start:start + 1]
        if head != b"$":
            return (BAD, 0) if head else (NEED_MORE, 0)
        end = buf.find(b"\n", start)
        stop = end if end >= 0 else len(buf)
        if buf.find(b"$", start + 1, stop) >= 0 or stop - start > self.max_record_bytes:
            return BAD, 0    # another record starts before this one ended, or too long
        if end < 0:
            return NEED_MORE, 0
        n = end + 1 - start
        line = buf[start:end + 1]
        if n < 6 or line[-2] != 0x0D or line[-5] != 0x2A:   # \r and *
            return BAD, 0
        payload, digits = line[1:-5], line[-4:-2]
        if not payload.isascii() or not all(0x20 <= b < 0x7F for b in payload):
            return BAD, 0
        if digits[0] not in _HEX or digits[1] not in _HEX:
            return BAD, 0
        return (FRAME, n) if nmea_checksum(payload) == int(digits, 16) else (BAD, n)

    def decode(self, record: bytes) -> VehicleRecord:
        """Split the fields and hand them to :meth:`parse_fields`."""
        fields = record[1:-5].decode("ascii").split(",")
        if fields[0] != self.talker:
            raise ProtocolError(f"{self.name}: record type {fields[0]!r} is not "
                                f"{self.talker!r}")
        return self.parse_fields(fields[1:])

    def encode(self, record: VehicleRecord) -> bytes:
        """``$talker,fields*XX\\r\\n``."""
        payload = ",".join([self.talker, *self.format_fields(record)]).encode("ascii")
        return b"$" + payload + f"*{nmea_checksum(payload):02X}\r\n".encode("ascii")

    def parse_fields(self, fields: list[str]) -> VehicleRecord:
        """The record of the fields after the talker."""
        raise NotImplementedError

    def format_fields(self, record: VehicleRecord) -> list[str]:
        """The fields after the talker."""
        raise NotImplementedError


def _field(fields: dict[str, str], key: str, pattern: re.Pattern, where: str) -> str:
    """The text of field ``key``, checked against ``pattern``."""
    text = fields[key]
    if not pattern.match(text):
        raise ProtocolError(f"{where}: field {key!r} is not a valid value (got {text!r})")
    return text


def _numbers(fields: dict[str, str], key: str, pattern: re.Pattern, where: str
             ) -> tuple[float, ...]:
    """The ``;``-separated numbers of field ``key`` (empty text: none)."""
    text = fields[key]
    parts = text.split(";") if text else []
    for part in parts:
        if not pattern.match(part):
            raise ProtocolError(f"{where}: field {key!r} holds {part!r}, not a number of "
                                f"the form allowed (got {text!r})")
    return tuple(float(p) for p in parts)


class Wim1Format(NmeaLineFormat):
    """``$WIM1``: zhichao's own documented record line (see the module docstring)."""

    talker: ClassVar[str] = "WIM1"
    name: ClassVar[str] = "wim1"
    FIELDS: ClassVar[tuple[str, ...]] = ("seq", "time", "lane", "speed", "axles", "weights",
                                         "spacings", "gross", "flags")

    def __init__(self, gross_tolerance_kg: float = GROSS_TOLERANCE_KG) -> None:
        self.gross_tolerance_kg = gross_tolerance_kg

    def parse_fields(self, fields: list[str]) -> VehicleRecord:
        """Typed and consistent, or a :class:`ProtocolError` naming the field."""
        if len(fields) != len(self.FIELDS):
            raise ProtocolError(f"{self.name}: {len(fields)} fields after WIM1, expected "
                                f"{len(self.FIELDS)} ({', '.join(self.FIELDS)})")
        f = dict(zip(self.FIELDS, fields, strict=True))
        where = f"vehicle record {f['seq']!r}"
        seq = int(_field(f, "seq", _UINT, where))
        time_utc = datetime.fromisoformat(_field(f, "time", _TIME, where))
        lane = int(_field(f, "lane", _UINT, where))
        axles = int(_field(f, "axles", _UINT, where))
        flags = tuple(f["flags"].split(";")) if f["flags"] else ()
        if lane < 1:
            raise ProtocolError(f"{where}: field 'lane' counts from 1 (got {lane})")
        if any(not _FLAG.match(flag) for flag in flags):
            raise ProtocolError(f"{where}: field 'flags' must be lower-case words "
                                f"separated by ';' (got {f['flags']!r})")
        weights = _numbers(f, "weights", _UINT, where)
        if len(weights) != axles:
            raise ProtocolError(f"{where}: field 'weights' has {len(weights)} values, "
                                f"field 'axles' says {axles}")
        record = VehicleRecord(
            sequence=seq, time_utc=time_utc, lane=lane - 1,
            speed_kmh=float(_field(f, "speed", _DECIMAL, where)), axle_loads_kg=weights,
            spacings_m=_numbers(f, "spacings", _DECIMAL, where),
            gross_kg=float(_field(f, "gross", _UINT, where)), flags=flags)
        check_consistency(record, self.gross_tolerance_kg)
        return record

    def format_fields(self, record: VehicleRecord) -> list[str]:
        """Fields as the controller writes them (rounded to the format's resolution)."""
        return [str(record.sequence), iso_utc(record.time_utc), str(record.lane + 1),
                f"{record.speed_kmh:.1f}", str(record.n_axles),
                ";".join(f"{w:.0f}" for w in record.axle_loads_kg),
                ";".join(f"{s:.2f}" for s in record.spacings_m), f"{record.gross_kg:.0f}",
                ";".join(record.flags)]


FORMATS: dict[str, type[NmeaLineFormat]] = {Wim1Format.name: Wim1Format}
"""Record formats by name, as a site's settings name them."""


def make_codec(fmt: str | RecordFormat = "wim1") -> Codec[VehicleRecord]:
    """The framer codec of a record format, given by name or as an instance.

    Examples
    --------
    >>> from drivers.framing import Framer
    >>> fmt = Wim1Format()
    >>> line = fmt.encode(VehicleRecord(
    ...     sequence=3, time_utc=datetime(2026, 5, 1, 8, 30, 12, 345000, tzinfo=UTC), lane=0,
    ...     speed_kmh=72.4, axle_loads_kg=(7000, 11000), spacings_m=(3.6,),
    ...     gross_kg=18000))
    >>> line
    b'$WIM1,3,2026-05-01T08:30:12.345Z,1,72.4,2,7000;11000,3.60,18000,*57\\r\\n'
    >>> [r.gross_kg for r in Framer(make_codec("wim1")).feed(line)]
    [18000.0]
    """
    if isinstance(fmt, str):
        if fmt not in FORMATS:
            raise ProtocolError(f"vehicle record format {fmt!r} is unknown "
                                f"(known: {', '.join(sorted(FORMATS))})")
        fmt = FORMATS[fmt]()
    return Codec(fmt.name, fmt.find_start, fmt.check, fmt.decode, fmt.max_record_bytes)
