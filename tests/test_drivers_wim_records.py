"""Vehicle record lines of a WIM controller: the documented line, the field checks with
messages that name the field, another vendor's format as one small class, and records
made from the simulator's truth."""

import json
from datetime import UTC, datetime
from typing import ClassVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.errors import ProtocolError
from drivers.framing import BAD, FRAME, NEED_MORE, Framer
from drivers.strips import StripArray
from drivers.wim_records import (
    FORMATS,
    NmeaLineFormat,
    VehicleRecord,
    Wim1Format,
    make_codec,
    nmea_checksum,
)
from sim.serial_twins import vehicle_record
from sim.traffic import generate_traffic

WIM1 = Wim1Format()
T0 = datetime(2026, 5, 1, 8, 30, 12, 345000, tzinfo=UTC)
RECORD = VehicleRecord(sequence=17, time_utc=T0, lane=1, speed_kmh=64.8,
                       axle_loads_kg=(6500.0, 9800.0, 9700.0), spacings_m=(3.4, 1.35),
                       gross_kg=26_000.0, flags=("speed_change",))


def line(payload: str) -> bytes:
    """A line with a correct checksum around ``payload``."""
    return f"${payload}*{nmea_checksum(payload.encode()):02X}\r\n".encode()


def test_the_line_is_as_documented():
    text = WIM1.encode(RECORD)
    assert text == line("WIM1,17,2026-05-01T08:30:12.345Z,2,64.8,3,6500;9800;9700,3.40;1.35,"
                        "26000,speed_change")
    assert WIM1.check(text, 0) == (FRAME, len(text))
    assert WIM1.decode(text) == RECORD


@settings(deadline=None, derandomize=True, max_examples=200)
@given(st.integers(1, 6).flatmap(lambda n: st.tuples(
    st.lists(st.integers(0, 50_000), min_size=n, max_size=n),
    st.lists(st.integers(60, 1800), min_size=n - 1, max_size=n - 1),
    st.integers(0, 1500), st.integers(0, 7), st.integers(0, 10**9))))
def test_decode_of_encode_is_the_record(fields):
    loads, spacings_cm, speed_dkmh, lane, ms = fields
    record = VehicleRecord(
        sequence=ms % 2**32, time_utc=datetime.fromtimestamp(ms / 1000, UTC), lane=lane,
        speed_kmh=speed_dkmh / 10, axle_loads_kg=tuple(map(float, loads)),
        spacings_m=tuple(s / 100 for s in spacings_cm), gross_kg=float(sum(loads)))
    assert WIM1.decode(WIM1.encode(record)) == record


FIELD_ERRORS = {
    "weights": ("WIM1,5,2026-05-01T08:30:12.345Z,1,60.0,3,7000;9000,3.00;1.30,16000,",
                r"record '5': field 'weights' has 2 values, field 'axles' says 3"),
    "spacings": ("WIM1,5,2026-05-01T08:30:12.345Z,1,60.0,2,7000;9000,3.00;1.30,16000,",
                 r"field 'spacings' has 2 values, expected 1 for 2 axles"),
    "gross": ("WIM1,5,2026-05-01T08:30:12.345Z,1,60.0,2,7000;9000,3.00,16050,",
              r"field 'gross' is 16050 kg but the axle loads sum to 16000 kg"),
    "lane": ("WIM1,5,2026-05-01T08:30:12.345Z,0,60.0,2,7000;9000,3.00,16000,",
             r"field 'lane' counts from 1 \(got 0\)"),
    "time": ("WIM1,5,2026-05-01T16:30:12.345+08:00,1,60.0,2,7000;9000,3.00,16000,",
             r"field 'time' is not a valid value \(got '2026-05-01T16:30:12.345\+08:00'\)"),
    "speed": ("WIM1,5,2026-05-01T08:30:12.345Z,1,fast,2,7000;9000,3.00,16000,",
              r"field 'speed' is not a valid value \(got 'fast'\)"),
    "weight": ("WIM1,5,2026-05-01T08:30:12.345Z,1,60.0,2,7000;-9000,3.00,16000,",
               r"field 'weights' holds '-9000'"),
    "flags": ("WIM1,5,2026-05-01T08:30:12.345Z,1,60.0,2,7000;9000,3.00,16000,Over Load",
              r"field 'flags' must be lower-case words"),
    "count": ("WIM1,5,2026-05-01T08:30:12.345Z,1,60.0,2,7000;9000,3.00,16000",
              r"8 fields after WIM1, expected 9"),
    "type": ("WIM2,5,2026-05-01T08:30:12.345Z,1,60.0,2,7000;9000,3.00,16000,",
             r"record type 'WIM2' is not 'WIM1'"),
}


@pytest.mark.parametrize("field", FIELD_ERRORS)
def test_an_inconsistent_record_is_a_protocol_error_naming_the_field(field):
    payload, message = FIELD_ERRORS[field]
    text = line(payload)
    assert WIM1.check(text, 0) == (FRAME, len(text))      # the checksum holds ...
    with pytest.raises(ProtocolError, match=message) as refused:   # ... the content not
        WIM1.decode(text)
    framer = Framer(make_codec("wim1"))
    assert framer.feed(text + WIM1.encode(RECORD)) == [RECORD]
    assert framer.bad_frames == 1
    assert framer.last_error == str(refused.value)


def test_gross_within_a_kilogram_of_the_sum_is_accepted_and_the_tolerance_is_a_setting():
    text = line("WIM1,5,2026-05-01T08:30:12.345Z,1,60.0,2,7000;9000,3.00,16001,")
    assert WIM1.decode(text).gross_kg == 16001
    with pytest.raises(ProtocolError, match=r"allowed difference 0\.5 kg"):
        Wim1Format(gross_tolerance_kg=0.5).decode(text)


def test_framing_refuses_lower_case_checksums_cut_lines_and_endless_lines():
    good = WIM1.encode(RECORD)
    lower = good[:-4] + good[-4:-2].lower() + b"\r\n"
    if lower != good:
        assert WIM1.check(lower, 0) == (BAD, 0)
    cut = good[:30]
    assert WIM1.check(cut, 0) == (NEED_MORE, 0)
    assert WIM1.check(cut + good, 0) == (BAD, 0)           # a new record began
    assert WIM1.check(b"$" + b"A" * 600, 0) == (BAD, 0)
    no_cr = good[:-2] + b"\n"
    assert WIM1.check(no_cr, 0) == (BAD, 0)
    bad_sum = good[:-4] + (b"00" if good[-4:-2] != b"00" else b"01") + b"\r\n"
    assert WIM1.check(bad_sum, 0) == (BAD, len(bad_sum))


class AcmeFormat(NmeaLineFormat):
    """Another vendor: ``$ACME,<seq>,<lane>,<gross>*XX`` — the whole adapter."""

    talker: ClassVar[str] = "ACME"
    name: ClassVar[str] = "acme"

    def parse_fields(self, fields: list[str]) -> VehicleRecord:
        seq, lane, gross = (int(f) for f in fields)
        return VehicleRecord(seq, T0, lane, 0.0, (float(gross),), (), float(gross))

    def format_fields(self, record: VehicleRecord) -> list[str]:
        return [str(record.sequence), str(record.lane), f"{record.gross_kg:.0f}"]


def test_another_vendors_format_is_one_small_class():
    acme = AcmeFormat()
    record = VehicleRecord(3, T0, 2, 0.0, (12_000.0,), (), 12_000.0)
    assert acme.encode(record) == line("ACME,3,2,12000")
    assert Framer(make_codec(acme)).feed(b"noise" + acme.encode(record)) == [record]


def test_an_unknown_format_name_lists_the_known_ones():
    assert "wim1" in FORMATS
    with pytest.raises(ProtocolError, match=r"'wim9' is unknown \(known: wim1\)"):
        make_codec("wim9")


def test_to_dict_is_plain_json():
    d = RECORD.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["time_utc"] == "2026-05-01T08:30:12.345Z" and d["lane"] == 1


def test_records_made_from_the_simulators_truth_keep_its_values():
    site = StripArray(lanes=2)
    truth = generate_traffic(site, 120.0, seed=4)
    assert len(truth) > 10
    for i, v in enumerate(truth):
        r = WIM1.decode(WIM1.encode(vehicle_record(v, i)))
        assert r.lane == v.lane and r.n_axles == v.n_axles
        np.testing.assert_allclose(r.axle_loads_kg, v.axle_loads_kg, atol=0.5)
        np.testing.assert_allclose(r.spacings_m, v.spacings_m, atol=0.005)
        assert r.speed_kmh == pytest.approx(v.speed_mps * 3.6, abs=0.05)
        assert r.gross_kg == pytest.approx(v.gvw_kg, abs=0.5 * v.n_axles)
        assert abs((r.time_utc - datetime(2026, 1, 1, tzinfo=UTC)).total_seconds()
                   - v.t0_s) < 0.0006
