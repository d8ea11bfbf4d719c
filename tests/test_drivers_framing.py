"""Every serial codec through the generic framer: properties over random frames, garbage,
splits and single-bit faults (hypothesis, derandomised so failures reproduce).

Each case gives a strategy of valid encoded frames; what the framer decodes is compared
with the codec's own ``decode`` of those bytes (a key per case, since a sample frame
holds a numpy array)."""

import contextlib
import json
import math
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from drivers import digitiser, toledo, wim_records, xk3190
from drivers.crc import CRC16_TABLE, crc16_ccitt, crc16_ccitt_fast
from drivers.errors import ProtocolError
from drivers.framing import BAD, FRAME, NEED_MORE, Codec, Framer, find_sync
from drivers.wim_records import VehicleRecord, Wim1Format

PROPERTY = settings(deadline=None, derandomize=True, max_examples=60,
                    suppress_health_check=[HealthCheck.too_slow])
FEWER = settings(PROPERTY, max_examples=30)


# Strategies of valid frames, per protocol ---------------------------------------------

@st.composite
def digitiser_frames(draw: st.DrawFn) -> bytes:
    c = draw(st.integers(1, 6))
    n = draw(st.integers(1, 24))
    x = draw(arrays(np.int16, (c, n)))
    return digitiser.encode_frame(x, draw(st.integers(0, 2**32 - 1)),
                                  draw(st.integers(0, 2**64 - 1)))


FLAG_WORDS = ("speed_change", "straddling", "weaving", "merged", "data_gap", "x2")


@st.composite
def vehicle_records(draw: st.DrawFn) -> VehicleRecord:
    n = draw(st.integers(1, 8))
    loads = tuple(float(w) for w in draw(st.lists(st.integers(0, 60_000), min_size=n,
                                                  max_size=n)))
    spacings = tuple(k / 100 for k in draw(st.lists(st.integers(50, 2500), min_size=n - 1,
                                                    max_size=n - 1)))
    ms = draw(st.integers(0, 80 * 365 * 86_400_000))
    return VehicleRecord(
        sequence=draw(st.integers(0, 2**32 - 1)),
        time_utc=datetime(2000, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms),
        lane=draw(st.integers(0, 9)), speed_kmh=draw(st.integers(0, 2500)) / 10,
        axle_loads_kg=loads, spacings_m=spacings, gross_kg=sum(loads),
        flags=tuple(draw(st.lists(st.sampled_from(FLAG_WORDS), max_size=3, unique=True))))


toledo_status = st.builds(
    toledo.ToledoStatus, decimal_code=st.integers(0, 7), increment_code=st.integers(1, 3),
    net=st.booleans(), negative=st.booleans(), out_of_range=st.booleans(),
    motion=st.booleans(), kg=st.booleans(), not_zeroed=st.booleans(),
    unit_code=st.integers(0, 2), print_request=st.booleans(), expanded=st.booleans())


@dataclass(frozen=True)
class Case:
    """One protocol under test."""

    codec: Codec
    frames: st.SearchStrategy[bytes]
    closer: bytes
    key: Callable[[Any], Any] = lambda item: item
    data_bits: int = 8      # bits per byte that carry data (7: bit 7 is parity, masked)


def _sample_key(f: digitiser.SampleFrame) -> tuple:
    return f.sequence, f.t_device_us, f.samples.shape, f.samples.tobytes()


LONG_RECORD = VehicleRecord(sequence=1, time_utc=datetime(2026, 1, 1, tzinfo=UTC), lane=0,
                            speed_kmh=50.0, axle_loads_kg=(5000.0,) * 12,
                            spacings_m=(1.3,) * 11, gross_kg=60_000.0)
CASES = {
    "digitiser": Case(digitiser.CODEC, digitiser_frames(),
                      digitiser.encode_frame(np.zeros((2, 200), np.int16), 99, 0), _sample_key),
    "wim1": Case(wim_records.make_codec("wim1"), vehicle_records().map(Wim1Format().encode),
                 Wim1Format().encode(LONG_RECORD)),
    "xk3190": Case(xk3190.CODEC, st.builds(xk3190.encode_reading,
                                           st.integers(-999_999, 999_999),
                                           st.integers(0, 4)), xk3190.encode_reading(7)),
    "toledo": Case(toledo.CODEC, st.builds(toledo.encode_frame, st.integers(0, 999_999),
                                           st.integers(0, 999_999), toledo_status),
                   toledo.encode_frame(7), data_bits=7),
}
"""``closer``: a valid frame at least as long as any frame the strategy draws. A stream
goes on after what is under test; a frame cut short (in the garbage) holds the frames
after it back until as many bytes as its header claims have arrived, and the closer
makes sure they have."""
NAMES = sorted(CASES)


def start_bytes(case: Case) -> bytes:
    """Bytes that begin a frame of the case, to salt garbage with."""
    return {"digitiser": digitiser.SYNC, "wim1": b"$", "xk3190": b"\x02",
            "toledo": b"\x02"}[next(k for k, v in CASES.items() if v is case)]


@st.composite
def garbage(draw: st.DrawFn, case: Case, max_size: int = 120) -> bytes:
    """Random bytes salted with frame starts (and pieces of frames), holding no frame."""
    parts = draw(st.lists(st.one_of(
        st.binary(max_size=24), st.just(start_bytes(case)),
        case.frames.flatmap(lambda f: st.integers(0, len(f) - 1).map(lambda k: f[:k]))),
        max_size=8))
    junk = b"".join(parts)[:max_size]
    # no frame inside, and none completed by the start of the next one: a frame cut one
    # byte short is whole again when its last byte equals the next frame's first (CRC
    # high byte 0xA5, Toledo checksum 0x02), and then it is rightly decoded
    assume(not Framer(case.codec).feed(junk + start_bytes(case)))
    return junk


def keys(case: Case, items: list) -> list:
    return [case.key(i) for i in items]


def expected(case: Case, frames: list[bytes]) -> list:
    return [case.key(case.codec.decode(f)) for f in frames]


def feed_in_parts(framer: Framer, data: bytes, cuts: list[int]) -> list:
    """What ``framer`` decodes from ``data`` read in parts cut at ``cuts`` (any ints)."""
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    return [x for a, b in pairwise(bounds) for x in framer.feed(data[a:b])]


def every_frame_in(case: Case, buf: bytes) -> set:
    """Keys of every valid frame at any position of ``buf`` (the brute-force reference)."""
    if case.codec.byte_table is not None:
        buf = buf.translate(case.codec.byte_table)
    found = set()
    for i in range(len(buf)):
        status, n = case.codec.check(buf, i)
        if status == FRAME:
            with contextlib.suppress(ProtocolError):
                found.add(case.key(case.codec.decode(buf[i:i + n])))
    return found


# CRC ---------------------------------------------------------------------------------

def test_crc_check_value_and_table():
    assert crc16_ccitt(b"123456789") == crc16_ccitt_fast(b"123456789") == 0x29B1
    assert len(CRC16_TABLE) == 256 and CRC16_TABLE[1] == 0x1021


@PROPERTY
@given(st.binary(max_size=2000), st.integers(0, 0xFFFF))
def test_the_c_crc_equals_the_table_crc(data, init):
    assert crc16_ccitt_fast(data, init) == crc16_ccitt(data, init)


@PROPERTY
@given(st.binary(max_size=300), st.integers(0, 300))
def test_the_crc_continues_across_a_split(data, k):
    assert crc16_ccitt(data[k:], crc16_ccitt(data[:k])) == crc16_ccitt(data)


# Properties of every framer ------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_codecs_round_trip(name):
    case = CASES[name]

    @PROPERTY
    @given(case.frames)
    def check(frame):
        assert case.codec.check(frame, 0) == (FRAME, len(frame))
        for k in range(len(frame)):
            assert case.codec.check(frame[:k], 0)[0] == NEED_MORE
        item = case.codec.decode(frame)
        assert keys(case, Framer(case.codec).feed(frame)) == [case.key(item)]

    check()


@pytest.mark.parametrize("name", NAMES)
def test_random_garbage_never_crashes_and_yields_only_real_frames(name):
    case = CASES[name]

    @PROPERTY
    @given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=6))
    def check(junk, cuts):
        salted = junk.replace(b"\x00", start_bytes(case))  # frame starts, often
        framer = Framer(case.codec)
        out = feed_in_parts(framer, salted, cuts)
        assert set(keys(case, out)) <= every_frame_in(case, salted)
        assert framer.bytes_in == framer.frame_bytes + framer.garbage_bytes + framer.buffered

    check()


def hidden_frames_are_recovered(case: Case, config: settings) -> None:
    """Frames between garbage chunks, fed in reads of any size, all come out in order."""

    @config
    @given(st.lists(st.tuples(garbage(case), case.frames), min_size=1, max_size=5),
           garbage(case), st.integers(1, 64))
    def check(pieces, tail, chunk):
        stream = b"".join(g + f for g, f in pieces) + tail + case.closer
        framer = Framer(case.codec)
        out = [x for i in range(0, len(stream), chunk)
               for x in framer.feed(stream[i:i + chunk])]
        assert keys(case, out) == expected(case, [f for _, f in pieces] + [case.closer])
        assert framer.frames == len(pieces) + 1
        assert framer.buffered == 0
        assert framer.garbage_bytes == sum(len(g) for g, _ in pieces) + len(tail)

    check()


def one_flipped_bit_is_rejected(case: Case, config: settings) -> None:
    """A frame with any one data bit flipped is refused; the frame after it is not."""

    @config
    @given(case.frames, case.frames, st.data())
    def check(frame, following, data):
        byte = data.draw(st.integers(0, len(frame) - 1))
        bit = data.draw(st.integers(0, case.data_bits - 1))
        bad = bytearray(frame)
        bad[byte] ^= 1 << bit
        framer = Framer(case.codec)
        out = framer.feed(bytes(bad) + following)
        assert keys(case, out) == expected(case, [following])
        assert framer.garbage_bytes >= len(frame)      # none of the bad frame was taken

    check()


@pytest.mark.parametrize("name", NAMES)
def test_every_frame_hidden_between_garbage_is_recovered(name):
    hidden_frames_are_recovered(CASES[name], FEWER)


@pytest.mark.parametrize("name", NAMES)
def test_any_single_flipped_bit_is_rejected_and_the_next_frame_recovered(name):
    one_flipped_bit_is_rejected(CASES[name], PROPERTY)


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", NAMES)
def test_many_more_examples_of_hidden_frames_and_flipped_bits(name):
    many = settings(PROPERTY, max_examples=600)
    hidden_frames_are_recovered(CASES[name], many)
    one_flipped_bit_is_rejected(CASES[name], many)


@pytest.mark.parametrize("name", NAMES)
def test_splitting_the_stream_anywhere_changes_nothing(name):
    case = CASES[name]

    @PROPERTY
    @given(st.lists(st.tuples(st.binary(max_size=30), case.frames), min_size=1, max_size=4),
           st.lists(st.integers(0, 10_000), max_size=8))
    def check(pieces, cuts):
        stream = b"".join(g + f for g, f in pieces)
        whole = Framer(case.codec)
        at_once = keys(case, whole.feed(stream))
        split = Framer(case.codec)
        in_parts = feed_in_parts(split, stream, cuts)
        assert keys(case, in_parts) == at_once
        assert split.counts() == whole.counts()

    check()


# The framer itself ---------------------------------------------------------------------

def test_a_partial_sync_word_at_the_end_is_kept():
    find = find_sync(b"\xa5\x5a")
    assert find(b"xx\xa5", 0) == 2
    assert find(b"xx\xa5\x5a", 0) == 2
    assert find(b"xx\x5a", 0) == 3
    assert find(b"", 0) == 0


def test_the_buffer_stays_bounded_and_what_is_dropped_counts_as_garbage():
    codec = Codec("toy", find_sync(b"S"), lambda buf, i: (NEED_MORE, 0), bytes, 10)
    framer = Framer(codec)
    framer.feed(b"S" + b"x" * 100)
    assert framer.buffered == 20
    assert framer.garbage_bytes == 81
    assert framer.bytes_in == framer.garbage_bytes + framer.buffered


def test_a_frame_that_fails_decoding_is_a_bad_frame_with_its_message():
    x = np.zeros((2, 3), np.int16)
    future = digitiser.encode_frame(x, 5, 0, version=0x21)
    framer = Framer(digitiser.CODEC)
    out = framer.feed(future + digitiser.encode_frame(x, 6, 0))
    assert [f.sequence for f in out] == [6]
    assert framer.bad_frames == 1 and framer.checksum_errors == 0
    assert "version 2.1 is unknown" in framer.last_error


def test_checksum_failures_are_counted_apart_from_structure_failures():
    frame = bytearray(xk3190.encode_reading(1000))
    frame[4] ^= 0x01                          # still a digit: only the checksum sees it
    framer = Framer(xk3190.CODEC)
    assert framer.feed(bytes(frame) + b"\x02?") == []
    assert framer.checksum_errors == 1
    assert framer.bad_frames == 2             # the second: '?' is no sign
    assert xk3190.check(b"\x02?", 0) == (BAD, 0)
    assert xk3190.check(bytes(frame), 0) == (BAD, len(frame))


def test_the_benchmark_ends_with_its_figures_as_json():
    """benchmarks/serial.py runs (a smoke test: speed is the benchmark's business)."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "serial.py"), "--frames", "300",
         "--repeat", "1", "--json"], cwd=root, capture_output=True, text=True, timeout=120,
        check=False)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    for key in ("x_site_rate", "frames_per_s", "mb_per_s", "ratio_to_baseline"):
        assert math.isfinite(figures[key]) and figures[key] > 0, key
    assert figures["frames_decoded"] > 0.95 * 300
