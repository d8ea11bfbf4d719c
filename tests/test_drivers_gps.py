"""GPS time sentences: RMC and ZDA parsed, checksums and fields checked (a bad one is a
bad frame with its reason, never an exception), and a receiver twin read for real
through a pseudo-terminal by the serial driver, into the timebase."""

import time
from datetime import UTC, datetime, timedelta

import pytest

from drivers import gps
from drivers.framing import Framer
from drivers.registry import open_device
from drivers.serial_link import PROTOCOLS, SerialDevice
from edge.timebase import Timebase, TimeSettings
from edge.timebase.kernel import STA_UNSYNC, TIME_ERROR, KernelClock
from sim.serial_twins import GpsTwin

pytestmark = pytest.mark.timeout(30)

UTC_T = datetime(2026, 5, 1, 8, 30, 12, 500_000, tzinfo=UTC)
THIS_MACHINE = KernelClock(state=TIME_ERROR, status_flags=STA_UNSYNC, maxerror_us=16_000_000,
                           esterror_us=16_000_000, offset_us=0.0, freq_ppm=0.0)
"""adjtimex as recorded on the test machines: no daemon, STA_UNSYNC set."""


def feed(data: bytes) -> tuple[Framer, list]:
    framer = gps.make_framer()
    return framer, framer.feed(data)


def test_rmc_and_zda_round_trip_with_their_receipt_time():
    before = time.monotonic()
    framer, out = feed(gps.rmc(UTC_T) + gps.zda(UTC_T, talker="BD"))
    assert [r.sentence for r in out] == ["RMC", "ZDA"]
    assert all(r.utc == UTC_T and r.valid for r in out)
    assert out[1].talker == "BD"
    assert all(before <= r.t_host_s <= time.monotonic() for r in out)
    d = out[0].to_dict()
    assert d["kind"] == "gps" and d["utc"].tzinfo is UTC and d["sentence"] == "RMC"
    assert framer.frames == 2 and framer.bad_frames == 0


def test_a_receivers_sentences_parse():
    """The RMC and ZDA examples of the u-blox receiver description (checksums as
    printed there), and an RMC without a fix."""
    lines = (b"$GPRMC,083559.00,A,4717.11437,N,00833.91522,E,0.004,77.52,091202,,,A*57\r\n"
             b"$GPZDA,082710.00,16,09,2002,00,00*64\r\n"
             b"$GPRMC,083559.00,V,,,,,,,091202,,,N*77\r\n")
    framer, out = feed(lines)
    assert framer.bad_frames == 0, framer.last_error
    assert out[0].utc == datetime(2002, 12, 9, 8, 35, 59, tzinfo=UTC) and out[0].valid
    assert out[1].utc == datetime(2002, 9, 16, 8, 27, 10, tzinfo=UTC)
    assert out[2].sentence == "RMC" and not out[2].valid


def test_other_sentences_pass_as_nmea_readings():
    line = gps.encode_sentence(["GPGGA", "083012.00", "3954.1", "N", "11623.4", "E", "1"])
    framer, out = feed(line)
    assert out[0].to_dict()["kind"] == "nmea" and out[0].address == "GPGGA"
    assert framer.bad_frames == 0


@pytest.mark.parametrize(("fields", "reason"), [
    (["GPRMC", "083012.00", "X", "", "", "", "", "", "", "010526"], "'status' must be A or V"),
    (["GPRMC", "083012.00", "A", "", "", "", "", "", "", "1526"], "'date' must be ddmmyy"),
    (["GPRMC", "0830", "A", "", "", "", "", "", "", "010526"], "'time' must be hhmmss"),
    (["GPRMC", "083012.00", "A"], "at least 9 expected"),
    (["GPZDA", "083012.00", "31", "02", "2026", "00", "00"], "not a valid UTC time"),
    (["GPZDA", "235960.00", "31", "12", "2026", "00", "00"], "leap second"),
    (["GPZDA", "083012.00", "01", "05", "26"], "'year' must be 4 digits"),
    (["gpzda", "083012.00"], "not a talker and type"),
])
def test_a_malformed_sentence_is_a_bad_frame_with_its_reason(fields, reason):
    good = gps.zda(UTC_T)
    framer, out = feed(gps.encode_sentence(fields) + good)
    assert [r.sentence for r in out] == ["ZDA"]          # the next one still comes
    assert framer.bad_frames == 1 and reason in framer.last_error


def test_any_corrupted_byte_is_refused_and_counted():
    """Every single-byte change of a sentence (bit flips of each byte) is never read as a
    different time: a bad frame, garbage, or (a flip the checksum cannot see) nothing
    else."""
    line = gps.rmc(UTC_T)
    for i in range(len(line)):
        for bit in range(7):
            bad = bytearray(line)
            bad[i] ^= 1 << bit
            framer, out = feed(bytes(bad) + gps.zda(UTC_T))
            assert out[-1].sentence == "ZDA"
            times = [r for r in out[:-1] if getattr(r, "utc", None) not in (None, UTC_T)]
            assert not times, (i, bit, bytes(bad))
            assert framer.bad_frames + framer.garbage_bytes > 0 or out[:-1] == [], (i, bit)


def test_bad_checksum_is_counted_as_such():
    line = bytearray(gps.zda(UTC_T))
    line[-4:-2] = b"00" if line[-4:-2] != b"00" else b"01"
    framer, out = feed(bytes(line))
    assert out == [] and framer.checksum_errors == 1
    assert "checksum failed" in framer.last_error


def test_nmea_is_a_serial_protocol_of_the_settings():
    assert "nmea" in PROTOCOLS
    device = open_device("gps1", {"kind": "serial", "protocol": "nmea",
                                  "port": "/dev/ttyUSB9", "baudrate": 9600})
    assert isinstance(device, SerialDevice)
    assert device.get_status().extra["protocol"] == "nmea"


# Through a real pty ----------------------------------------------------------------------

def test_gps_twin_through_a_pty_sets_the_timebase():
    """A receiver whose UTC is 0.25 s ahead of the host's wall clock, sending 60 ms after
    each second: the readings come once a second, RMC and ZDA, each received about 60 ms
    after its second; the timebase (the kernel unsynchronised, as recorded here) takes
    GPS as its source and finds the offset within its stated uncertainty."""
    settings = TimeSettings()
    twin = GpsTwin(latency_s=0.06, offset_s=0.25)
    timebase = Timebase(settings, read_kernel=lambda: THIS_MACHINE, gps_name="gps1")
    twin.start(hold=True)
    device = SerialDevice.from_config("gps1", {"protocol": "nmea", "port": twin.path,
                                               "baudrate": 9600})
    device.start()
    readings = []
    try:
        assert device.wait_connected(3.0)
        twin.release()
        deadline = time.monotonic() + 3.2
        while time.monotonic() < deadline:
            for r in device.readings(timeout_s=0.1):
                readings.append(r)
                timebase.feed_gps(r)
        status = device.get_status()
    finally:
        device.stop()
        twin.stop()
    assert status.bad_frames == 0 and status.frames == len(readings)
    assert [r["sentence"] for r in readings[:2]] == ["RMC", "ZDA"]
    assert len(readings) >= 4 and {r["utc"] for r in readings} <= set(twin.seconds_sent)
    wall_minus_mono = time.time() - time.monotonic()
    for r in readings:
        latency_s = r["t_host_s"] + wall_minus_mono + 0.25 - r["utc"].timestamp()
        assert 0.06 <= latency_s < 0.06 + 0.1, latency_s
    now = time.monotonic()
    state = timebase.state(now)
    assert (state.status, state.source) == ("synced", "gps")
    assert abs(timebase.gps.offset_s - 0.25) <= state.uncertainty_ms / 1000
    assert state.uncertainty_ms <= 100.0 + 1.0
    gap_s = (timebase.to_utc(now) - datetime.fromtimestamp(now + wall_minus_mono, UTC))
    assert abs(gap_s - timedelta(seconds=0.25)) <= timedelta(milliseconds=state.uncertainty_ms)
    text = timebase.describe(now)
    assert "STA_UNSYNC" in text and "GPS on gps1 fresh" in text
    print(text)
