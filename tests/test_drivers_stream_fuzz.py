"""Serial streams of any bytes through the real framer (issue 17: every parser of outside
input fuzzed): the GPS's NMEA sentences and the digitiser's frames.

tests/test_drivers_framing.py feeds random garbage to the digitiser and the WIM and scale
codecs; here the NMEA codec gets the same, and both get what random bytes almost never
hold: lines whose checksum holds around any fields (times, dates and statuses valid or
not), and digitiser frames whose CRCs hold around any version and shape. Garbage never
raises; each sentence or frame is one frame or one bad frame, every byte is a frame's,
garbage or buffered."""

from dataclasses import replace
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from drivers import digitiser, gps
from drivers.errors import ProtocolError
from drivers.framing import Framer
from drivers.wim_records import nmea_checksum

BOUNDED = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.too_slow])
LONG = settings(BOUNDED, max_examples=5000)

PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="$")
FIELD = st.one_of(
    st.text(PRINTABLE, max_size=12),
    st.sampled_from(["A", "V", "", "083012.00", "235959.999999", "240000", "000060",
                     "083012.1234567", "010526", "290223", "310426", "0000", "2026", "9999",
                     "00", "13", "32", "-1", "1e9"]),
    st.integers(0, 999_999).map(lambda n: f"{n:06d}"),
    st.integers(0, 99).map(lambda n: f"{n:02d}"))
ADDRESS = st.one_of(
    st.sampled_from(["GPRMC", "GNRMC", "BDRMC", "GPZDA", "GNZDA", "GPGGA", "GPGSV", "PGRMZ",
                     "P", "gprmc", "GP", "GPRMCX", ""]),
    st.text(PRINTABLE, max_size=7))


def sentence(address: str, fields: list[str]) -> bytes:
    """``$address,fields*XX\\r\\n`` with its checksum right."""
    payload = ",".join([address, *fields]).encode("ascii")
    return b"$" + payload + b"*%02X\r\n" % nmea_checksum(payload)


SENTENCES = st.builds(sentence, ADDRESS, st.lists(FIELD, max_size=14))
"""Lines whose checksum holds, their fields anything printable."""


def decoded(line: bytes) -> object | None:
    """What the codec makes of one line alone: its reading, or None for a bad frame."""
    if gps.check(line, 0) != (gps.FRAME, len(line)):
        return None
    try:
        return gps.decode(line)
    except ProtocolError:
        return None


def unstamped(item: object) -> object:
    return replace(item, t_host_s=None)


def feed_in_parts(framer: Framer, data: bytes, cuts: list[int]) -> list:
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    return [x for a, b in pairwise(bounds) for x in framer.feed(data[a:b])]


def accounted(framer: Framer) -> None:
    assert framer.bytes_in == framer.frame_bytes + framer.garbage_bytes + framer.buffered
    assert framer.buffered <= framer.max_buffer_bytes


# NMEA --------------------------------------------------------------------------------------

def nmea_garbage(stream: bytes, cuts: list[int]) -> None:
    framer = gps.make_framer()
    out = feed_in_parts(framer, stream, cuts)
    accounted(framer)
    assert framer.frames == len(out)
    assert all(isinstance(x, gps.GpsReading | gps.OtherSentence) for x in out)
    assert all(x.t_host_s is not None for x in out)


@BOUNDED
@given(st.lists(st.binary(max_size=60) | SENTENCES | st.sampled_from(
    [b"$", b"\r\n", b"*", b"\n", b"$GPRMC,"]), max_size=12), st.lists(st.integers(0, 2000),
                                                                     max_size=6))
def test_any_bytes_through_the_nmea_framer_never_raise(parts, cuts):
    nmea_garbage(b"".join(parts), cuts)


@BOUNDED
@given(st.lists(SENTENCES, min_size=1, max_size=10), st.lists(st.integers(0, 2000),
                                                              max_size=6))
def test_each_sentence_whose_checksum_holds_is_one_reading_or_one_bad_frame(lines, cuts):
    framer = gps.make_framer()
    out = feed_in_parts(framer, b"".join(lines), cuts)
    accounted(framer)
    expected = [decoded(line) for line in lines]
    assert [unstamped(x) for x in out] == [x for x in expected if x is not None]
    assert framer.frames + framer.bad_frames == len(lines)
    assert framer.buffered == 0


@BOUNDED
@given(SENTENCES, st.data())
def test_a_sentence_with_any_byte_changed_is_refused_or_still_a_valid_line(line, data):
    at = data.draw(st.integers(0, len(line) - 1))
    bad = bytearray(line)
    bad[at] = data.draw(st.integers(0, 255))
    framer = gps.make_framer()
    out = framer.feed(bytes(bad))
    accounted(framer)
    assert len(out) <= 1
    if out:  # only a change the checksum cannot see: the line decodes as it reads
        assert unstamped(out[0]) == decoded(bytes(bad)) or bytes(bad) == line


# Digitiser ---------------------------------------------------------------------------------

@st.composite
def any_version_frames(draw: st.DrawFn) -> bytes:
    """A frame whose CRCs hold, of any version byte and shape."""
    c = draw(st.integers(1, 4))
    n = draw(st.integers(1, 16))
    x = draw(arrays(np.int16, (c, n)))
    return digitiser.encode_frame(x, draw(st.integers(0, 2**32 - 1)),
                                  draw(st.integers(0, 2**64 - 1)),
                                  version=draw(st.integers(0, 255)))


@BOUNDED
@given(st.lists(any_version_frames(), min_size=1, max_size=6), st.lists(
    st.integers(0, 5000), max_size=6))
def test_digitiser_frames_of_any_version_are_read_or_counted_bad(frames, cuts):
    framer = Framer(digitiser.CODEC)
    out = feed_in_parts(framer, b"".join(frames), cuts)
    accounted(framer)
    readable = [f for f in frames if f[2] >> 4 == digitiser.MAJOR_VERSION]
    assert [(f.sequence, f.samples.tobytes()) for f in out] == [
        (d.sequence, d.samples.tobytes()) for d in map(digitiser.decode, readable)]
    assert framer.bad_frames >= len(frames) - len(readable)


@BOUNDED
@given(st.lists(st.binary(max_size=80) | any_version_frames() | st.just(digitiser.SYNC)
                | any_version_frames().flatmap(lambda f: st.integers(0, len(f)).map(
                    lambda k: f[:k])), max_size=10),
       st.lists(st.integers(0, 5000), max_size=6))
def test_any_bytes_through_the_digitiser_framer_never_raise(parts, cuts):
    framer = Framer(digitiser.CODEC)
    out = feed_in_parts(framer, b"".join(parts), cuts)
    accounted(framer)
    assert framer.frames == len(out)
    assert all(f.samples.dtype == np.int16 and f.samples.ndim == 2 for f in out)


# Longer runs ------------------------------------------------------------------------------

@pytest.mark.slow
@LONG
@given(st.lists(st.binary(max_size=60) | SENTENCES | any_version_frames()
                | st.sampled_from([b"$", b"\r\n", digitiser.SYNC]), max_size=16),
       st.lists(st.integers(0, 4000), max_size=8))
def test_any_serial_bytes_long_run(parts, cuts):
    stream = b"".join(parts)
    nmea_garbage(stream, cuts)
    framer = Framer(digitiser.CODEC)
    feed_in_parts(framer, stream, cuts)
    accounted(framer)
