"""The Modbus register map: the shipped example loads and documents every option, the
codec round-trips any record the fields can hold in every word and byte order and address
numbering, implausible blocks are refused, and every bad map file stops with one message
naming the file, the option and the value (Klipper's SHOULD_FAIL cases)."""

import copy
import doctest
import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import drivers.modbus_map
from drivers.errors import ProtocolError
from drivers.modbus_map import (
    FIELD_RULES,
    AckRegister,
    CounterRegister,
    RecordBlock,
    RecordField,
    RegisterMap,
    WimRecord,
    counter_advance,
    counters_to_read,
    decode_record,
    decode_value,
    encode_record,
    encode_value,
    load_register_map,
)
from zhichao.errors import ConfigError
from zhichao.resources import config_dir

EXAMPLE = config_dir() / "devices" / "wim_modbus.example.yaml"
SEEDED = settings(deadline=None, derandomize=True, database=None, max_examples=150)
ORDERS = st.sampled_from(["big", "little"])
TYPE_RANGES = {"u16": (0, 0xFFFF), "i16": (-0x8000, 0x7FFF), "u32": (0, 0xFFFF_FFFF),
               "i32": (-0x8000_0000, 0x7FFF_FFFF)}


EXAMPLE_DATA = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))


def example_data() -> dict[str, Any]:
    return copy.deepcopy(EXAMPLE_DATA)


def make_map(data: dict[str, Any] | None = None, **top: Any) -> RegisterMap:
    data = copy.deepcopy(data or example_data())
    data.update(top)
    return RegisterMap.model_validate(data)


def set_field(data: dict[str, Any], name: str, **changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(data)
    for spec in data["record"]["fields"]:
        if spec["name"] == name:
            spec.update(changes)
    return data


# ---------------------------------------------------------------------------- example


def test_the_example_loads():
    m = load_register_map(EXAMPLE)
    assert (m.counter_pdu, m.ack_pdu, m.slot_pdu(1)) == (0, 3, 100)
    assert m.field("axle_weight").count == 10 and m.field("axle_spacing").count == 9
    assert m.resolution("speed") == pytest.approx(0.1 / 3.6)
    assert m.registers_end() == 132


def test_the_example_documents_every_option():
    data = example_data()
    assert set(data) == set(RegisterMap.model_fields)
    for section, model in (("counter", CounterRegister), ("ack", AckRegister),
                           ("record", RecordBlock)):
        assert set(data[section]) == set(model.model_fields), section
    assert {f["name"] for f in data["record"]["fields"]} == set(FIELD_RULES)
    keys = set().union(*(f.keys() for f in data["record"]["fields"]))
    assert keys == set(RecordField.model_fields)


def test_the_doctests_run():
    result = doctest.testmod(drivers.modbus_map)
    assert result.failed == 0 and result.attempted >= 7


# ---------------------------------------------------------------------------- values


@pytest.mark.parametrize(("word_order", "byte_order", "wire"), [
    ("big", "big", [0x1234, 0x5678]),       # ABCD
    ("little", "big", [0x5678, 0x1234]),    # CDAB
    ("big", "little", [0x3412, 0x7856]),    # BADC
    ("little", "little", [0x7856, 0x3412]),  # DCBA
])
def test_32_bit_values_in_each_word_and_byte_order(word_order, byte_order, wire):
    orders = {"word_order": word_order, "byte_order": byte_order}
    assert encode_value(0x12345678, "u32", **orders) == wire
    assert decode_value(wire, "u32", **orders) == 0x12345678


def test_signed_and_float_registers():
    assert encode_value(-2, "i32") == [0xFFFF, 0xFFFE]
    assert decode_value([0xFFFE, 0xFFFF], "i32", word_order="little") == -2
    assert encode_value(1.0, "f32") == [0x3F80, 0x0000]
    assert decode_value([0x0000, 0x3F80], "f32", word_order="little") == 1.0
    assert decode_value([0x8000], "i16") == -32768


@SEEDED
@given(st.sampled_from(sorted(TYPE_RANGES)), st.data(), ORDERS, ORDERS)
def test_any_integer_survives_the_registers(type_, data, word_order, byte_order):
    lo, hi = TYPE_RANGES[type_]
    value = data.draw(st.integers(lo, hi))
    orders = {"word_order": word_order, "byte_order": byte_order}
    wire = encode_value(value, type_, **orders)
    assert all(0 <= w <= 0xFFFF for w in wire)
    assert decode_value(wire, type_, **orders) == value


@SEEDED
@given(st.floats(width=32, allow_nan=False), ORDERS, ORDERS)
def test_any_float32_survives_the_registers(value, word_order, byte_order):
    orders = {"word_order": word_order, "byte_order": byte_order}
    assert decode_value(encode_value(value, "f32", **orders), "f32", **orders) == value


@pytest.mark.parametrize(("value", "type_"), [(65536, "u16"), (-1, "u32"), (40000, "i16")])
def test_a_value_that_does_not_fit_is_refused(value, type_):
    with pytest.raises(ProtocolError, match=f"{value}.*{type_}"):
        encode_value(value, type_)


def test_a_register_out_of_range_or_a_wrong_count_is_refused():
    with pytest.raises(ProtocolError, match=re.escape("0..65535")):
        decode_value([70000], "u16")
    with pytest.raises(ProtocolError, match="2 registers"):
        decode_value([1], "u32")


# ---------------------------------------------------------------------------- records

FIELD_TYPES = {"sequence": ["u16", "u32"], "time_s": ["u32"], "time_ms": ["u16"],
               "lane": ["u16"], "speed": ["u16", "u32", "f32"], "axle_count": ["u16"],
               "axle_weight": ["u16", "u32", "i32"], "axle_spacing": ["u16", "u32"],
               "gross_weight": ["u32", "i32"], "flags": ["u16", "u32"]}
SCALES = {"speed": (0.1, "km/h"), "axle_weight": (10, "kg"), "axle_spacing": (1, "cm"),
          "gross_weight": (10, "kg")}


@st.composite
def maps(draw) -> RegisterMap:
    """Maps with any field types, laid out one after the other, in any order."""
    data = example_data()
    data.update(word_order=draw(ORDERS), byte_order=draw(ORDERS))
    offset = 0
    for spec in data["record"]["fields"]:
        spec["type"] = draw(st.sampled_from(FIELD_TYPES[spec["name"]]))
        if spec["type"] == "f32":
            spec.update(scale=1.0, unit="m/s")
        elif spec["name"] in SCALES:
            spec["scale"], spec["unit"] = SCALES[spec["name"]]
        spec["offset"] = offset
        offset += {"u16": 1}.get(spec["type"], 2) * spec.get("count", 1)
    data["record"]["length"] = offset + draw(st.integers(0, 3))
    return make_map(data)


MAPS = maps()


@st.composite
def records_on_the_grid(draw, m: RegisterMap) -> WimRecord:
    """Any record whose values the fields hold exactly (counts times resolution)."""
    hi = {f.name: TYPE_RANGES.get(f.type, (0, 0))[1] for f in m.record.fields}
    n = draw(st.integers(1, m.field("axle_weight").count))
    weight_counts = draw(st.lists(st.integers(0, min(hi["axle_weight"], 20_000)),
                                  min_size=n, max_size=n))
    loads = tuple(c * m.resolution("axle_weight") for c in weight_counts)
    if m.field("speed").type == "f32":
        speed = draw(st.floats(0.125, 80.0, width=32))
    else:
        speed = draw(st.integers(1, hi["speed"])) * m.resolution("speed")
    return WimRecord(
        sequence=draw(st.integers(0, hi["sequence"])),
        t_s=draw(st.integers(0, hi["time_s"])) + draw(st.integers(0, 999)) / 1000,
        lane=draw(st.integers(0, hi["lane"] - m.record.first_lane)),
        speed_mps=speed, axle_loads_kg=loads,
        spacings_m=tuple(draw(st.integers(1, hi["axle_spacing"])) * m.resolution(
            "axle_spacing") for _ in range(n - 1)),
        gvw_kg=math.fsum(loads), flags=draw(st.integers(0, hi["flags"])))


@SEEDED
@given(st.data())
def test_any_record_within_the_field_ranges_survives_the_registers(data):
    m = data.draw(MAPS)
    record = data.draw(records_on_the_grid(m))
    back = decode_record(m, encode_record(m, record))
    assert (back.sequence, back.lane, back.flags) == (record.sequence, record.lane,
                                                      record.flags)
    assert back.t_s == pytest.approx(record.t_s, abs=1e-6)
    assert back.speed_mps == pytest.approx(record.speed_mps, rel=1e-6)
    assert back.axle_loads_kg == pytest.approx(record.axle_loads_kg, rel=1e-9, abs=1e-9)
    assert back.spacings_m == pytest.approx(record.spacings_m, rel=1e-9)
    assert back.gvw_kg == pytest.approx(record.gvw_kg, abs=m.resolution("gross_weight"))


@SEEDED
@given(MAPS, st.lists(st.floats(0, 60_000), min_size=1, max_size=10),
       st.floats(0.5, 60.0), st.floats(0, 2e9))
def test_a_record_off_the_grid_comes_back_within_half_a_step(m, loads, speed_mps, t_s):
    spacings = tuple(1.2 + i for i in range(len(loads) - 1))
    record = WimRecord(sequence=5, t_s=t_s, lane=2, speed_mps=speed_mps,
                       axle_loads_kg=tuple(loads), spacings_m=spacings,
                       gvw_kg=math.fsum(loads))
    back = decode_record(m, encode_record(m, record))
    half = {name: m.resolution(name) / 2 + 1e-9 for name in
            ("axle_weight", "axle_spacing", "gross_weight")}
    assert all(abs(a - b) <= half["axle_weight"]
               for a, b in zip(back.axle_loads_kg, loads, strict=True))
    assert all(abs(a - b) <= half["axle_spacing"]
               for a, b in zip(back.spacings_m, spacings, strict=True))
    assert abs(back.gvw_kg - record.gvw_kg) <= half["gross_weight"]
    assert back.speed_mps == pytest.approx(speed_mps, abs=m.resolution("speed") / 2 + 1e-6)
    assert abs(back.t_s - t_s) <= 0.0005 + 1e-6


BASES = [(0, 0), (1, 1), (40001, 40001), (400001, 400001)]


@SEEDED
@given(st.sampled_from(BASES), st.integers(0, 9000), st.integers(0, 500), ORDERS)
def test_each_address_numbering_names_the_same_protocol_addresses(base, counter_at,
                                                                  gap, word_order):
    base_number, shift = base
    data = example_data()
    data.update(address_base=base_number, word_order=word_order)
    data["counter"]["address"] = counter_at + shift
    data["ack"]["address"] = counter_at + 2 + shift
    data["record"]["address"] = counter_at + 3 + gap + shift
    m = make_map(data)
    assert m.counter_pdu == counter_at and m.ack_pdu == counter_at + 2
    assert m.slot_pdu(1) == counter_at + 3 + gap


def test_input_registers_take_their_ack_in_holding_numbers():
    data = example_data()
    data.update(table="input", address_base=30001)
    data["counter"]["address"] = 30001
    data["record"]["address"] = 30101
    data["ack"]["address"] = 40001  # the same protocol address as the counter, other table
    m = make_map(data)
    assert (m.counter_pdu, m.ack_pdu, m.slot_pdu(7)) == (0, 0, 100)


def test_a_ring_of_slots_follows_the_counter_through_its_wrap():
    data = example_data()
    data["record"]["slots"] = 4
    data["counter"]["type"] = "u16"
    m = make_map(data)
    slots = [(m.slot_pdu(c) - 100) // 32 for c in (65534, 65535, 0, 1, 2)]
    assert slots == [1, 2, 3, 0, 1]
    assert counters_to_read(1, 3, slots=4, bits=16) == [65535, 0, 1]
    assert counters_to_read(9, 7, slots=4, bits=16) == [6, 7, 8, 9]


@pytest.mark.parametrize(("previous", "current", "bits", "expected"), [
    (0, 0, 16, (0, False)), (5, 6, 16, (1, False)), (65535, 0, 16, (1, False)),
    (0xFFFF_FFF0, 0x10, 32, (0x20, False)), (1000, 3, 16, (3, True)), (10, 0, 32, (0, True)),
])
def test_counter_advance(previous, current, bits, expected):
    assert counter_advance(previous, current, bits=bits) == expected


# ---------------------------------------------------------------------------- refusals

GOOD = WimRecord(sequence=3, t_s=1.7e9, lane=0, speed_mps=20.0,
                 axle_loads_kg=(6000.0, 9000.0), spacings_m=(3.6,), gvw_kg=15000.0)


def corrupt(m: RegisterMap, offset: int, value: int) -> list[int]:
    registers = encode_record(m, GOOD)
    registers[offset] = value
    return registers


@pytest.mark.parametrize(("offset", "value", "says"), [
    (7, 0, "axle count must be 1..10 (got 0)"), (7, 11, "(got 11)"),
    (28, 9999, "gross weight must equal the axle sum"), (6, 0, "speed must be above 0"),
    (5, 0, "lane must be 1 or more (got 0)"), (4, 1000, "time_ms must be 0..999"),
    (18, 0, "axle spacings must be above 0"),
])
def test_an_implausible_block_is_refused(offset, value, says):
    m = make_map()
    assert decode_record(m, encode_record(m, GOOD)) == GOOD
    with pytest.raises(ProtocolError, match=re.escape(says)):
        decode_record(m, corrupt(m, offset, value))


def test_a_nan_or_negative_load_is_refused():
    m = make_map(set_field(set_field(example_data(), "speed", type="f32", unit="m/s",
                                     offset=30), "axle_weight", type="i16"))
    nan = encode_record(m, GOOD)
    nan[30:32] = [0x7FC0, 0]
    with pytest.raises(ProtocolError, match="not finite"):
        decode_record(m, nan)
    negative = encode_record(m, GOOD)
    negative[9] = 0xFFFF
    with pytest.raises(ProtocolError, match="axle weights must be 0 or more"):
        decode_record(m, negative)


def test_a_short_block_and_too_many_axles_are_refused():
    m = make_map()
    with pytest.raises(ProtocolError, match="32 registers"):
        decode_record(m, [0] * 31)
    with pytest.raises(ProtocolError, match="11 axles"):
        encode_record(m, WimRecord(sequence=1, t_s=0, lane=0, speed_mps=1,
                                   axle_loads_kg=(1.0,) * 11, spacings_m=(1.0,) * 10,
                                   gvw_kg=11.0))


def test_a_map_without_optional_fields_fills_in_the_gross_and_no_spacings():
    data = example_data()
    data["record"]["fields"] = [f for f in data["record"]["fields"]
                                if f["name"] not in ("time_ms", "axle_spacing",
                                                     "gross_weight", "flags")]
    m = make_map(data)
    back = decode_record(m, encode_record(m, GOOD))
    assert (back.gvw_kg, back.spacings_m, back.flags, back.t_s) == (15000.0, (), 0, 1.7e9)


# ---------------------------------------------------------------------------- config


def mutate(path: str, value: Any):
    """A change of one option of the example (path like 'record.fields.3.offset')."""
    def apply(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return apply


def add_field(spec: dict[str, Any]):
    return lambda data: data["record"]["fields"].append(spec)


# SHOULD_FAIL: (change to the example, option named, value named, what else it says)
SHOULD_FAIL = {
    "unknown option": (mutate("word_ordr", "big"), "word_ordr", "'big'",
                       "not a known option"),
    "unknown option in a field": (mutate("record.fields.4.sacle", 0.1),
                                  "record.fields.4.sacle", "0.1", "not a known option"),
    "unknown option in the counter": (mutate("counter.adress", 1), "counter.adress", "1",
                                      "not a known option"),
    "bad word order": (mutate("word_order", "middle"), "word_order", "'middle'",
                       "'big' or 'little'"),
    "bad byte order": (mutate("byte_order", "ABCD"), "byte_order", "'ABCD'",
                       "'big' or 'little'"),
    "overlapping fields": (mutate("record.fields.4.offset", 5), "record.fields",
                           "offset 5", "'speed' (record.fields.4, offset 5) overlaps field "
                           "'lane'"),
    "overlapping 32-bit field": (mutate("record.fields.1.offset", 1), "record.fields",
                                 "offset 1", "overlaps field 'sequence'"),
    "field outside the block": (mutate("record.fields.7.offset", 24), "record.fields",
                                "offset 24", "beyond the block's length 32"),
    "block too short": (mutate("record.length", 20), "record.fields", "offset 18",
                        "beyond the block's length 20"),
    "unknown field name": (add_field({"name": "temperature", "offset": 30}),
                           "record.fields.10.name", "'temperature'", "must be"),
    "field twice": (add_field({"name": "lane", "offset": 30}), "record.fields", "2 times",
                    "'lane' is given more than once"),
    "required field missing": (lambda d: d["record"]["fields"].pop(5), "record.fields",
                               "sequence, time_s", "needs the fields axle_count"),
    "wrong unit": (mutate("record.fields.4.unit", "mph"), "record.fields.4", "'mph'",
                   "unit must be one of 'km/h', 'm/s'"),
    "a count scaled": (mutate("record.fields.3.scale", 2), "record.fields.3", "scale 2",
                       "is a count"),
    "a count as float": (mutate("record.fields.0.type", "f32"), "record.fields.0",
                         "type f32", "integer type"),
    "bad type": (mutate("record.fields.0.type", "u64"), "record.fields.0.type", "'u64'",
                 "must be"),
    "an array of speeds": (mutate("record.fields.4.count", 2), "record.fields.4",
                           "(got 2)", "count must be 1"),
    "spacings not one fewer": (mutate("record.fields.7.count", 10), "record.fields",
                               "count 10", "one value fewer than 'axle_weight' (9)"),
    "slots not a power of two": (mutate("record.slots", 3), "record.slots", "3",
                                 "power of two"),
    "zero scale": (mutate("record.fields.4.scale", 0), "record.fields.4.scale", "0",
                   "greater than 0"),
    "address below the base": (mutate("counter.address", 40000), "counter.address",
                               "40000", "must lie in 40001.."),
    "modicon base against the table": (mutate("table", "input"), "address_base", "40001",
                                       "numbers holding registers"),
    "base not allowed": (mutate("address_base", 2), "address_base", "2", "must be"),
    "counter in the record block": (mutate("counter.address", 40110), "counter.address",
                                    "40110", "protocol addresses 109-110, which overlap "
                                    "the record block (100-131)"),
    "ack on the counter": (mutate("ack.address", 40002), "ack.address", "40002",
                           "overlap the counter (0-1)"),
    "ack value too big": (mutate("ack.value", 70000), "ack.value", "70000", "0..65535"),
    "device id 0": (mutate("device_id", 0), "device_id", "0", "greater than or equal to 1"),
    "counter type": (mutate("counter.type", "i16"), "counter.type", "'i16'", "'u16'"),
    "too long a read": (mutate("max_registers_per_read", 126), "max_registers_per_read",
                        "126", "less than or equal to 125"),
}


@pytest.mark.parametrize("case", SHOULD_FAIL)
def test_should_fail(tmp_path: Path, case: str):
    change, option, value, says = SHOULD_FAIL[case]
    data = example_data()
    change(data)
    path = tmp_path / "map.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_register_map(path)
    message = str(info.value)
    assert message.startswith(f"{path}:"), message
    assert "\n" not in message, message
    if option is not None:
        assert re.search(rf"option '{re.escape(option)}'", message), message
    assert value in message, message
    assert says in message, message


def test_a_missing_map_file_is_named(tmp_path: Path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_register_map(tmp_path / "nowhere.yaml")
