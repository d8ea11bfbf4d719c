"""The register map of a WIM controller that serves its vehicle records over Modbus.

A weighing controller that already weighs publishes each vehicle as a block of 16-bit
registers, and a *new-record counter* it increments once the block is written. Vendors
differ in where the block is, how 32-bit values are split over two registers, and in what
unit and resolution each value is given; this module holds that knowledge as data (a YAML
file validated by :class:`RegisterMap`, see ``config/devices/wim_modbus.example.yaml``)
and as pure functions between registers and a :class:`WimRecord`. The polling thread is
in :mod:`drivers.modbus_wim`, the simulated controller in :mod:`sim.modbus_twin`.

Word and byte order: Modbus sends each register high byte first (``byte_order: big``);
a 32-bit value takes two registers, the high word at the lower address with
``word_order: big`` ("ABCD") or the low word first with ``little`` ("CDAB"). Some devices
also swap the bytes inside each register (``byte_order: little``: "BADC", "DCBA").

Examples
--------
>>> [hex(w) for w in encode_value(0x12345678, "u32", word_order="little")]
['0x5678', '0x1234']
>>> decode_value([0x5678, 0x1234], "u32", word_order="little") == 0x12345678
True
>>> decode_value([0x3412], "u16", byte_order="little") == 0x1234
True
"""

import math
import struct
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from drivers.errors import ProtocolError
from zhichao.settings import load_model

FieldType = Literal["u16", "i16", "u32", "i32", "f32"]
Order = Literal["big", "little"]
WORDS: dict[str, int] = {"u16": 1, "i16": 1, "u32": 2, "i32": 2, "f32": 2}
_STRUCT: dict[str, str] = {"u16": "H", "i16": "h", "u32": "I", "i32": "i", "f32": "f"}

MAX_REGISTERS_PER_READ = 125
"""Most registers one read may ask for (Modbus Application Protocol V1.1b3, 6.3 and 6.4)."""

MODICON_BASES: dict[int, str] = {30001: "input", 300001: "input",
                                 40001: "holding", 400001: "holding"}
"""Register numbers in the Modicon style (30001 = the first input register, 40001 = the
first holding register, six-digit forms for addresses above 9998) and their table."""


class FieldRule(NamedTuple):
    """What a field of a given name may be."""

    units: dict[str, float]  # unit → SI factor (kg, m, m/s, s); the first is the default
    integer: bool            # a count, number or code: an integer type with scale 1
    array: bool              # may hold several values (``count`` > 1)
    required: bool


FieldName = Literal["sequence", "time_s", "time_ms", "lane", "speed", "axle_count",
                    "axle_weight", "axle_spacing", "gross_weight", "flags"]
FIELD_RULES: dict[str, FieldRule] = {
    "sequence": FieldRule({"": 1.0}, integer=True, array=False, required=True),
    "time_s": FieldRule({"s": 1.0}, integer=True, array=False, required=True),
    "time_ms": FieldRule({"ms": 1.0}, integer=True, array=False, required=False),
    "lane": FieldRule({"": 1.0}, integer=True, array=False, required=True),
    "speed": FieldRule({"km/h": 1 / 3.6, "m/s": 1.0}, integer=False, array=False,
                       required=True),
    "axle_count": FieldRule({"": 1.0}, integer=True, array=False, required=True),
    "axle_weight": FieldRule({"kg": 1.0, "t": 1000.0}, integer=False, array=True,
                             required=True),
    "axle_spacing": FieldRule({"m": 1.0, "dm": 0.1, "cm": 0.01, "mm": 0.001}, integer=False,
                              array=True, required=False),
    "gross_weight": FieldRule({"kg": 1.0, "t": 1000.0}, integer=False, array=False,
                              required=False),
    "flags": FieldRule({"": 1.0}, integer=True, array=False, required=False),
}
"""The fields a record block may hold. ``time_s`` is unix seconds (UTC) of the device
clock, ``time_ms`` the milliseconds (0-999) to add; ``lane`` counts from
``record.first_lane``; ``flags`` is the controller's own bit field, passed on as is."""


class RecordField(BaseModel):
    """One value (or a run of ``count`` values) inside the record block."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: FieldName
    offset: int = Field(ge=0, description="registers from the start of the record block")
    type: FieldType = "u16"
    count: int = Field(1, ge=1, le=32, description="values in a row (axle arrays)")
    scale: float = Field(1.0, gt=0, description="what one count is worth, in `unit`")
    unit: str | None = Field(None, description="unit of `scale`; default: the name's first")

    @model_validator(mode="after")
    def _fits_its_name(self) -> "RecordField":
        rule = FIELD_RULES[self.name]
        if self.unit is not None and self.unit not in rule.units:
            allowed = ", ".join(repr(u) for u in rule.units)
            raise ValueError(f"field '{self.name}': unit must be one of {allowed} "
                             f"(got {self.unit!r})")
        if rule.integer and (self.type == "f32" or self.scale != 1.0):
            raise ValueError(f"field '{self.name}' is a count: it must be an integer type "
                             f"with scale 1 (got type {self.type}, scale {self.scale})")
        if not rule.array and self.count != 1:
            raise ValueError(f"field '{self.name}' holds one value: count must be 1 "
                             f"(got {self.count})")
        return self

    @property
    def words(self) -> int:
        """Registers the field takes in the block."""
        return WORDS[self.type] * self.count

    @property
    def si_per_count(self) -> float:
        """What one count is worth in SI units (kg, m, m/s, s), or 1 for counts."""
        rule = FIELD_RULES[self.name]
        return self.scale * rule.units[self.unit if self.unit is not None else
                                       next(iter(rule.units))]


class RecordBlock(BaseModel):
    """Where the controller puts the latest vehicle record(s), and their layout."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: int = Field(ge=0, description="first register of the (first) block")
    length: int = Field(ge=1, le=1000, description="registers per record")
    slots: int = Field(1, ge=1, le=256, description="records kept, in a ring; 1: the last")
    first_lane: int = Field(1, ge=0, le=255, description="the controller's number of lane 0")
    fields: list[RecordField]

    @field_validator("slots")
    @classmethod
    def _slots_power_of_two(cls, slots: int) -> int:
        if slots & (slots - 1):
            raise ValueError(f"must be a power of two, so that the ring of slots follows "
                             f"the counter through its wrap (got {slots})")
        return slots

    @field_validator("fields")
    @classmethod
    def _fields_fit(cls, fields: list[RecordField], info: ValidationInfo
                    ) -> list[RecordField]:
        _check_names(fields)
        if "length" in info.data:
            _check_layout(fields, info.data["length"])
        return fields


def _check_names(fields: list[RecordField]) -> None:
    """Each name once, every required name present, one spacing fewer than axles."""
    names = [f.name for f in fields]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise ValueError(f"field '{doubled[0]}' is given more than once (got "
                         f"{names.count(doubled[0])} times)")
    missing = [n for n, rule in FIELD_RULES.items() if rule.required and n not in names]
    if missing:
        raise ValueError(f"the record needs the fields {', '.join(missing)} "
                         f"(got {', '.join(names) or 'none'})")
    by_name = {f.name: f for f in fields}
    if "axle_spacing" in by_name and (
            by_name["axle_spacing"].count != by_name["axle_weight"].count - 1):
        raise ValueError(f"field 'axle_spacing' must have one value fewer than "
                         f"'axle_weight' ({by_name['axle_weight'].count - 1}) "
                         f"(got count {by_name['axle_spacing'].count})")


def _check_layout(fields: list[RecordField], length: int) -> None:
    """Every field inside the block, no two on the same register."""
    for i, f in enumerate(fields):
        if f.offset + f.words > length:
            raise ValueError(f"field '{f.name}' (record.fields.{i}, offset {f.offset}, "
                             f"{f.words} registers) ends beyond the block's length {length} "
                             f"(got offset {f.offset})")
    ordered = sorted(enumerate(fields), key=lambda item: item[1].offset)
    for (_, a), (i, b) in pairwise(ordered):
        if b.offset < a.offset + a.words:
            raise ValueError(f"field '{b.name}' (record.fields.{i}, offset {b.offset}) "
                             f"overlaps field '{a.name}' (registers {a.offset}-"
                             f"{a.offset + a.words - 1}) (got offset {b.offset})")


class CounterRegister(BaseModel):
    """The register the controller increments once a new record is in the block."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: int = Field(ge=0)
    type: Literal["u16", "u32"] = "u16"


class AckRegister(BaseModel):
    """A holding register the poller writes after it has read the new record(s)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: int = Field(ge=0, description="a holding register (4xxxx in Modicon numbers)")
    type: Literal["u16", "u32"] = "u16"
    value: Literal["counter"] | int = Field(
        "counter", description="'counter': the counter value read; or a constant")

    @field_validator("value")
    @classmethod
    def _value_fits(cls, value: str | int, info: ValidationInfo) -> str | int:
        type_ = info.data.get("type", "u32")
        top = (1 << (16 * WORDS[type_])) - 1
        if isinstance(value, int) and not 0 <= value <= top:
            raise ValueError(f"must be 'counter' or 0..{top} for a {type_} register "
                             f"(got {value})")
        return value


class RegisterMap(BaseModel):
    """Everything the poller needs to know about one controller model's registers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device_id: int = Field(1, ge=1, le=255, description="Modbus unit/slave id")
    table: Literal["holding", "input"] = "holding"
    address_base: Literal[0, 1, 30001, 40001, 300001, 400001] = 0
    word_order: Order = "big"
    byte_order: Order = "big"
    max_registers_per_read: int = Field(MAX_REGISTERS_PER_READ, ge=1,
                                        le=MAX_REGISTERS_PER_READ)
    counter: CounterRegister
    record: RecordBlock
    ack: AckRegister | None = None

    @model_validator(mode="after")
    def _addresses_fit(self) -> "RegisterMap":
        table = MODICON_BASES.get(self.address_base)
        if table is not None and table != self.table:
            raise ValueError(f"option 'address_base' {self.address_base} numbers {table} "
                             f"registers but option 'table' is {self.table!r} "
                             f"(got {self.address_base})")
        counter = self._span("counter", "counter.address", self.counter.address,
                             WORDS[self.counter.type])
        block = self._span("record block", "record.address", self.record.address,
                           self.record.length * self.record.slots)
        _no_overlap(counter, block)
        if self.ack is not None:
            ack = self._span("ack", "ack.address", self.ack.address, WORDS[self.ack.type],
                             base=self.ack_base)
            if self.table == "holding":
                _no_overlap(ack, counter)
                _no_overlap(ack, block)
        return self

    def _span(self, what: str, option: str, address: int, words: int,
              base: int | None = None) -> "_Span":
        """The protocol addresses of ``words`` registers from ``address`` (numbered
        from ``base``, by default ``address_base``)."""
        base = self.address_base if base is None else base
        pdu = address - base
        if pdu < 0 or pdu + words > 65536:
            raise ValueError(f"option '{option}' must lie in {base}..{base + 65536 - words} "
                             f"with address_base {self.address_base} (got {address})")
        return _Span(what, option, address, range(pdu, pdu + words))

    @property
    def ack_base(self) -> int:
        """Numbering of the ack register: a holding register, so 4xxxx in Modicon style."""
        return {30001: 40001, 300001: 400001}.get(self.address_base, self.address_base)

    @property
    def counter_pdu(self) -> int:
        """Protocol (0-based) address of the counter."""
        return self.counter.address - self.address_base

    @property
    def counter_bits(self) -> int:
        """Width of the counter, after which it wraps to 0."""
        return 16 * WORDS[self.counter.type]

    @property
    def ack_pdu(self) -> int | None:
        """Protocol address of the ack register, or None without handshake."""
        return None if self.ack is None else self.ack.address - self.ack_base

    def slot_pdu(self, counter: int) -> int:
        """Protocol address of the block holding the record numbered ``counter``."""
        slot = (counter - 1) % (1 << self.counter_bits) % self.record.slots
        return self.record.address - self.address_base + slot * self.record.length

    def field(self, name: str) -> RecordField | None:
        """The field called ``name``, or None when the controller does not give it."""
        return next((f for f in self.record.fields if f.name == name), None)

    def resolution(self, name: str) -> float:
        """SI value of one count of field ``name`` (kg, m, m/s, s): what a round trip
        through the registers may lose, twice over."""
        spec = self.field(name)
        if spec is None:
            raise KeyError(f"the map has no field {name!r}")
        return spec.si_per_count

    def registers_end(self) -> int:
        """One past the highest protocol address the map uses (a simulator's size)."""
        block = self.record.address - self.address_base
        ends = [self.counter_pdu + WORDS[self.counter.type],
                block + self.record.length * self.record.slots]
        if self.ack is not None and self.ack_pdu is not None:
            ends.append(self.ack_pdu + WORDS[self.ack.type])
        return max(ends)


class _Span(NamedTuple):
    """Registers one part of the map takes, and the option that put them there."""

    what: str
    option: str
    address: int
    pdu: range


def _no_overlap(a: _Span, b: _Span) -> None:
    """Raise, naming ``a``'s option, when two parts of the map share a register."""
    if a.pdu.start < b.pdu.stop and b.pdu.start < a.pdu.stop:
        raise ValueError(f"option '{a.option}' puts the {a.what} on protocol addresses "
                         f"{a.pdu.start}-{a.pdu.stop - 1}, which overlap the {b.what} "
                         f"({b.pdu.start}-{b.pdu.stop - 1}) (got {a.address})")


def load_register_map(path: Path) -> RegisterMap:
    """Read and validate a register map file (errors name the file, option and value)."""
    return load_model(Path(path), RegisterMap)


# ---------------------------------------------------------------------------- values


def _reorder(words: Sequence[int], *, word_order: Order, byte_order: Order) -> list[int]:
    """Between wire order and big-endian order; its own inverse."""
    out = list(words)[::-1] if word_order == "little" else list(words)
    if byte_order == "little":
        out = [((w & 0xFF) << 8) | (w >> 8) for w in out]
    return out


def decode_value(registers: Sequence[int], type_: FieldType, *, word_order: Order = "big",
                 byte_order: Order = "big") -> int | float:
    """The value of type ``type_`` that ``registers`` (as read) hold."""
    if len(registers) != WORDS[type_]:
        raise ProtocolError(f"a {type_} takes {WORDS[type_]} registers "
                            f"(got {len(registers)})")
    if any(not 0 <= w <= 0xFFFF for w in registers):
        raise ProtocolError(f"registers hold 0..65535 (got {list(registers)})")
    words = _reorder(registers, word_order=word_order, byte_order=byte_order)
    raw = b"".join(w.to_bytes(2, "big") for w in words)
    return struct.unpack(f">{_STRUCT[type_]}", raw)[0]


def encode_value(value: float, type_: FieldType, *, word_order: Order = "big",
                 byte_order: Order = "big") -> list[int]:
    """The registers, in wire order, that hold ``value`` as ``type_``."""
    try:
        raw = struct.pack(f">{_STRUCT[type_]}", value)
    except (struct.error, OverflowError) as exc:
        raise ProtocolError(f"{value!r} does not fit a {type_}: {exc}") from None
    words = [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]
    return _reorder(words, word_order=word_order, byte_order=byte_order)


# ---------------------------------------------------------------------------- records


@dataclass(frozen=True)
class WimRecord:
    """One vehicle as a WIM controller reports it, in SI units.

    ``t_s`` is the controller's clock (unix seconds, UTC) when the vehicle passed;
    ``lane`` counts from 0; ``flags`` is the controller's own bit field, uninterpreted.
    """

    sequence: int
    t_s: float
    lane: int
    speed_mps: float
    axle_loads_kg: tuple[float, ...]
    spacings_m: tuple[float, ...]
    gvw_kg: float
    flags: int = 0

    @property
    def n_axles(self) -> int:
        """Number of axles."""
        return len(self.axle_loads_kg)

    def as_reading(self) -> dict[str, Any]:
        """A plain dict (what the driver queues)."""
        out = asdict(self)
        out["axle_loads_kg"] = list(self.axle_loads_kg)
        out["spacings_m"] = list(self.spacings_m)
        return out


def _field_values(reg_map: RegisterMap, spec: RecordField, registers: Sequence[int]
                  ) -> list[int | float]:
    """The ``count`` raw values of one field."""
    step = WORDS[spec.type]
    return [decode_value(registers[spec.offset + i * step: spec.offset + (i + 1) * step],
                         spec.type, word_order=reg_map.word_order,
                         byte_order=reg_map.byte_order) for i in range(spec.count)]


def decode_record(reg_map: RegisterMap, registers: Sequence[int]) -> WimRecord:
    """The record one block of registers holds; ``ProtocolError`` when it cannot be a
    vehicle (axle count out of range, NaN, negative load, gross far from the axle sum)."""
    if len(registers) != reg_map.record.length:
        raise ProtocolError(f"a record block is {reg_map.record.length} registers "
                            f"(got {len(registers)})")
    raw = {f.name: _field_values(reg_map, f, registers) for f in reg_map.record.fields}
    si = {f.name: [v * f.si_per_count for v in raw[f.name]] for f in reg_map.record.fields}
    n = int(raw["axle_count"][0])
    room = len(raw["axle_weight"])
    if not 1 <= n <= room:
        raise ProtocolError(f"axle count must be 1..{room} (got {n})")
    loads = tuple(si["axle_weight"][:n])
    record = WimRecord(
        sequence=int(raw["sequence"][0]),
        t_s=float(raw["time_s"][0]) + 0.001 * float(raw.get("time_ms", [0])[0]),
        lane=int(raw["lane"][0]) - reg_map.record.first_lane,
        speed_mps=float(si["speed"][0]),
        axle_loads_kg=loads,
        spacings_m=tuple(si["axle_spacing"][:n - 1]) if "axle_spacing" in si else (),
        gvw_kg=float(si["gross_weight"][0]) if "gross_weight" in si else math.fsum(loads),
        flags=int(raw.get("flags", [0])[0]),
    )
    _check_plausible(reg_map, record, raw)
    return record


def _check_plausible(reg_map: RegisterMap, record: WimRecord, raw: dict[str, list]
                     ) -> None:
    """Raise ``ProtocolError`` for values no vehicle can have."""
    numbers = (record.speed_mps, record.gvw_kg, *record.axle_loads_kg, *record.spacings_m)
    problems = []
    if not all(math.isfinite(x) for x in numbers):
        problems.append(f"values not finite (got {numbers})")
    if not 0 <= raw.get("time_ms", [0])[0] <= 999:
        problems.append(f"time_ms must be 0..999 (got {raw['time_ms'][0]})")
    if record.lane < 0:
        problems.append(f"lane must be {reg_map.record.first_lane} or more "
                        f"(got {record.lane + reg_map.record.first_lane})")
    if not record.speed_mps > 0:
        problems.append(f"speed must be above 0 (got {record.speed_mps} m/s)")
    if any(not x >= 0 for x in record.axle_loads_kg):
        problems.append(f"axle weights must be 0 or more (got {record.axle_loads_kg})")
    if any(not x > 0 for x in record.spacings_m):
        problems.append(f"axle spacings must be above 0 (got {record.spacings_m})")
    if reg_map.field("gross_weight") is not None:
        total = math.fsum(record.axle_loads_kg)
        slack = (record.n_axles * reg_map.resolution("axle_weight")
                 + reg_map.resolution("gross_weight") + 1e-6 * abs(total))
        if not abs(record.gvw_kg - total) <= slack:
            problems.append(f"gross weight must equal the axle sum {total:g} kg within "
                            f"{slack:g} kg (got {record.gvw_kg:g} kg)")
    if problems:
        raise ProtocolError(f"record {record.sequence}: " + "; ".join(problems))


def _field_physical(reg_map: RegisterMap, record: WimRecord) -> dict[str, list[float]]:
    """What each field holds for ``record``, in SI units (counts for count fields)."""
    weights = reg_map.field("axle_weight")
    room = weights.count if weights is not None else 0
    if not 1 <= record.n_axles <= room:
        raise ProtocolError(f"record {record.sequence} has {record.n_axles} axles; the map "
                            f"has room for 1..{room}")
    has_ms = reg_map.field("time_ms") is not None
    seconds = math.floor(record.t_s) if has_ms else round(record.t_s)
    ms = round((record.t_s - seconds) * 1000) if has_ms else 0
    seconds, ms = (seconds + 1, 0) if ms >= 1000 else (seconds, ms)
    sequence_spec = reg_map.field("sequence")
    wrap = 1 << (16 * WORDS[sequence_spec.type]) if sequence_spec is not None else 1 << 32
    spacings = list(record.spacings_m) + [0.0] * (room - 1 - len(record.spacings_m))
    return {
        "sequence": [record.sequence % wrap], "time_s": [seconds], "time_ms": [ms],
        "lane": [record.lane + reg_map.record.first_lane], "speed": [record.speed_mps],
        "axle_count": [record.n_axles],
        "axle_weight": list(record.axle_loads_kg) + [0.0] * (room - record.n_axles),
        "axle_spacing": spacings, "gross_weight": [record.gvw_kg], "flags": [record.flags],
    }


def encode_record(reg_map: RegisterMap, record: WimRecord) -> list[int]:
    """The record block (registers in wire order) that holds ``record``: the twin's side
    of :func:`decode_record`. Values are rounded to the field's resolution; the sequence
    wraps at the width of its field; unused axle slots and gaps are 0."""
    physical = _field_physical(reg_map, record)
    registers = [0] * reg_map.record.length
    for spec in reg_map.record.fields:
        words: list[int] = []
        for value in physical[spec.name]:
            counts = value / spec.si_per_count
            words += encode_value(counts if spec.type == "f32" else round(counts),
                                  spec.type, word_order=reg_map.word_order,
                                  byte_order=reg_map.byte_order)
        registers[spec.offset:spec.offset + spec.words] = words
    return registers


# ---------------------------------------------------------------------------- counter


def counter_advance(previous: int, current: int, *, bits: int) -> tuple[int, bool]:
    """Records the controller produced between two counter readings, and whether the
    counter went backwards (the controller restarted and counts again from 0).

    A step of more than half the counter's range is taken as a restart, not a wrap.

    Examples
    --------
    >>> counter_advance(65534, 1, bits=16)
    (3, False)
    >>> counter_advance(500, 2, bits=16)
    (2, True)
    """
    step = (current - previous) % (1 << bits)
    if step <= 1 << (bits - 1):
        return step, False
    return current, True


def counters_to_read(current: int, advance: int, *, slots: int, bits: int) -> list[int]:
    """Counter values whose records the controller still holds, oldest first: at most
    ``slots`` of the ``advance`` new ones; the others are gone (missed).

    Examples
    --------
    >>> counters_to_read(10, 3, slots=1, bits=16)
    [10]
    >>> counters_to_read(1, 3, slots=4, bits=16)
    [65535, 0, 1]
    """
    keep = min(advance, slots)
    return [(current - k) % (1 << bits) for k in range(keep - 1, -1, -1)]
