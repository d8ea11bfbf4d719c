"""Static scale indicators: the XK3190 and Toledo continuous outputs byte by byte, the
stability rule, and each twin → pseudo-terminal → driver, stable only once settled."""

import contextlib
import time
from collections.abc import Iterator

import pytest

from drivers import toledo, xk3190
from drivers.errors import ProtocolError
from drivers.framing import BAD, FRAME, NEED_MORE, Framer
from drivers.scale import ScaleReading, Stability
from drivers.serial_link import SerialDevice
from sim.serial_twins import ScaleTwin, ToledoTwin, XK3190Twin

# XK3190 ------------------------------------------------------------------------------


def test_xk3190_frame_bytes():
    frame = xk3190.encode_reading(25_140, decimals=0)
    assert frame == b"\x02+0251400" + xk3190.xor_checksum(b"+0251400") + b"\x03"
    assert len(frame) == 12
    x = 0
    for b in frame[1:9]:
        x ^= b
    assert frame[9:11] == f"{x:02X}".encode()
    assert xk3190.check(frame, 0) == (FRAME, 12)


@pytest.mark.parametrize(("counts", "decimals", "unit_kg", "weight_kg", "step_kg"), [
    (25_140, 0, 1.0, 25_140.0, 1.0),
    (-1234, 1, 1.0, -123.4, 0.1),
    (2514, 2, 1000.0, 25_140.0, 10.0),       # an indicator showing t: 25.14 t
    (0, 4, 1.0, 0.0, 0.0001),
])
def test_xk3190_weights_and_units(counts, decimals, unit_kg, weight_kg, step_kg):
    r = xk3190.make_codec(unit_kg).decode(xk3190.encode_reading(counts, decimals))
    assert r.weight_kg == pytest.approx(weight_kg, abs=1e-9)
    assert r.resolution_kg == pytest.approx(step_kg)
    assert r.motion is None and r.stable is False and r.protocol == "xk3190"


def test_xk3190_refuses_what_is_not_a_frame():
    good = xk3190.encode_reading(100)
    assert xk3190.check(good[:7], 0) == (NEED_MORE, 0)
    assert xk3190.check(b"\x02 000100", 0) == (BAD, 0)               # no sign
    assert xk3190.check(good[:8] + b"5" + good[9:], 0)[0] == BAD     # 5 decimals
    lower = good[:9] + good[9:11].lower() + good[11:]
    if lower != good:
        assert xk3190.check(lower, 0) == (BAD, 0)
    with pytest.raises(ValueError, match="above 0"):
        xk3190.make_codec(0)
    with pytest.raises(ValueError, match="six digits"):
        xk3190.encode_reading(1_000_000)


# Toledo ------------------------------------------------------------------------------


def test_toledo_frame_bytes_and_checksum():
    frame = toledo.encode_frame(12_340, 500, toledo.ToledoStatus(net=True))
    assert len(frame) == 18 and frame[0] == 0x02 and frame[16] == 0x0D
    assert frame[4:16] == b"012340000500"
    assert frame[1] == 0b0101010 and frame[2] == 0b0110001 and frame[3] == 0b0100000
    assert sum(frame) % 128 == 0
    assert toledo.check(frame, 0) == (FRAME, 18)


@pytest.mark.parametrize(("code", "weight_kg"), [
    (0, 1_234_500.0), (1, 123_450.0), (2, 12_345.0), (3, 1234.5), (4, 123.45),
    (5, 12.345), (6, 1.2345), (7, 0.12345)])
def test_toledo_decimal_point_codes(code, weight_kg):
    r = toledo.decode(toledo.encode_frame(12_345, 0, toledo.ToledoStatus(decimal_code=code)))
    assert r.weight_kg == pytest.approx(weight_kg)


@pytest.mark.parametrize(("increment_code", "step"), [(1, 1), (2, 2), (3, 5)])
def test_toledo_increment_size_is_the_resolution(increment_code, step):
    status = toledo.ToledoStatus(decimal_code=1, increment_code=increment_code)
    assert toledo.decode(toledo.encode_frame(2000, 0, status)).resolution_kg == 10 * step


def test_toledo_status_bits_units_and_sign():
    lb = toledo.decode(toledo.encode_frame(1000, 0, toledo.ToledoStatus(kg=False)))
    assert lb.unit == "lb" and lb.weight_kg == pytest.approx(453.59237)
    grams = toledo.decode(toledo.encode_frame(1000, 0, toledo.ToledoStatus(unit_code=1)))
    assert grams.unit == "g" and grams.weight_kg == pytest.approx(1.0)
    tonnes = toledo.decode(toledo.encode_frame(25, 0, toledo.ToledoStatus(unit_code=2)))
    assert tonnes.unit == "t" and tonnes.weight_kg == 25_000.0
    neg = toledo.decode(toledo.encode_frame(40, 0, toledo.ToledoStatus(negative=True)))
    assert neg.weight_kg == -40.0
    net = toledo.decode(toledo.encode_frame(9000, 3000, toledo.ToledoStatus(net=True)))
    assert net.net and net.tare_kg == 3000.0
    over = toledo.decode(toledo.encode_frame(0, 0, toledo.ToledoStatus(out_of_range=True,
                                                                        motion=True)))
    assert over.out_of_range and over.motion


@pytest.mark.parametrize(("status", "message"), [
    (toledo.ToledoStatus(unit_code=3), "SWC unit code 3"),
    (toledo.ToledoStatus(increment_code=0), "SWA increment code 0 is not defined"),
])
def test_toledo_statuses_it_cannot_read_are_named(status, message):
    framer = Framer(toledo.CODEC)
    assert framer.feed(toledo.encode_frame(100, 0, status)) == []
    assert framer.bad_frames == 1 and message in framer.last_error
    with pytest.raises(ProtocolError, match=message):
        toledo.decode(toledo.encode_frame(100, 0, status))


def even_parity(frame: bytes) -> bytes:
    return bytes(b | (bin(b).count("1") & 1) << 7 for b in frame)


def test_toledo_with_parity_bits_read_on_an_8_bit_port_decodes_the_same():
    frame = toledo.encode_reading(18_250, motion=False)
    wired = even_parity(frame)
    assert wired != frame
    assert Framer(toledo.CODEC).feed(b"\xff\x80" + wired) == [toledo.decode(frame)]


# Stability ---------------------------------------------------------------------------


def reading(weight_kg: float, motion: bool | None = None, out_of_range: bool = False
            ) -> ScaleReading:
    return ScaleReading(weight_kg, 10.0, motion=motion, out_of_range=out_of_range)


def test_stability_needs_count_readings_within_the_tolerance():
    s = Stability(count=5, tolerance_divisions=1.0)
    flags = [s.apply(reading(w)).stable for w in
             (1000, 1000, 1000, 1000, 1010, 1010, 1020, 1020, 1020, 1020, 1020)]
    assert flags == [False] * 4 + [True, True, False, False, True, True, True]


def test_stability_with_a_set_division_and_tolerance():
    s = Stability(count=3, tolerance_divisions=2.0, division_kg=20.0)
    assert [s.update(w, 1.0) for w in (0, 40, 20, 61)] == [False, False, True, False]
    with pytest.raises(ValueError, match="count >= 1"):
        Stability(count=0)


def test_the_indicators_motion_flag_decides_and_out_of_range_is_never_stable():
    s = Stability(count=3)
    assert s.apply(reading(500, motion=False)).stable is True      # at once
    assert s.apply(reading(500, motion=True)).stable is False
    assert s.apply(reading(500, motion=False, out_of_range=True)).stable is False


# Twins through a pseudo-terminal -----------------------------------------------------

TARGET_KG = 31_460.0
CONNECT_GARBAGE_BYTES = 60
"""Garbage allowed at connection: a frame the twin sent while the driver was setting the
port up is heard at the pty's previous speed (a real line does the same)."""


@contextlib.contextmanager
def twin_and_driver(twin: ScaleTwin, framer_factory, **link) -> Iterator[SerialDevice]:
    """The twin plugged in and a driver reading it, both stopped afterwards."""
    twin.start()
    device = SerialDevice("scale", twin.path, framer_factory, **link)
    device.start()
    try:
        assert device.wait_connected(3.0)
        yield device
    finally:
        device.stop()
        twin.stop()


def settle_run(twin: ScaleTwin, device: SerialDevice) -> list[dict]:
    """Readings from just before a commanded weight until well after it settled: as
    many as the twin sends in 1.5 s of its own time after the settling, counted rather
    than timed, so that a machine that stalls for a moment does not cut them short."""
    assert device.readings(timeout_s=3.0, count=6)             # idle at zero, flowing
    twin.command(TARGET_KG)
    wanted = round((twin.settle_s + 1.5) * twin.rate_hz)
    deadline, out = time.monotonic() + 10 * (twin.settle_s + 1.5) / twin.speed, []
    while time.monotonic() < deadline:
        out += device.readings(timeout_s=0.2)
        moving_from = next((i for i, r in enumerate(out) if r["weight_kg"] != 0), None)
        if moving_from is not None and len(out) - moving_from >= wanted:
            break
    return out


def check_settling(readings: list[dict], twin: ScaleTwin) -> int:
    """Stable only at the target and only once settled; the unstable readings in
    between. Returns how many readings the motion lasted."""
    moving_from = next(i for i, r in enumerate(readings) if r["weight_kg"] != 0)
    after = readings[moving_from:]
    first_stable = next(i for i, r in enumerate(after) if r["stable"])
    assert all(r["weight_kg"] == TARGET_KG for r in after[first_stable:])
    assert all(r["stable"] for r in after[first_stable:])
    assert first_stable >= 0.9 * twin.settle_s * twin.rate_hz
    return first_stable


@pytest.mark.timeout(30)
def test_xk3190_twin_is_stable_only_after_settling():
    twin = XK3190Twin(settle_s=2.0, speed=4.0)
    with twin_and_driver(twin, xk3190.make_framer) as device:
        readings = settle_run(twin, device)
        status = device.get_status()
    first_stable = check_settling(readings, twin)
    # no motion bit: the window of 5 readings within a division confirms it afterwards
    assert first_stable >= twin.settle_s * twin.rate_hz + 4 - 2
    assert status.bad_frames == 0 and status.garbage_bytes <= CONNECT_GARBAGE_BYTES


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("wire_parity", "line"), [
    (False, {"bytesize": 8, "parity": "N"}),
    (True, {"bytesize": 8, "parity": "N"}),     # a 7E1 line read by an 8N1 port
    (False, {"bytesize": 7, "parity": "E"}),    # set up as the indicator is
])
def test_toledo_twin_is_stable_only_after_settling(wire_parity, line):
    twin = ToledoTwin(settle_s=2.0, speed=4.0, wire_parity=wire_parity)
    with twin_and_driver(twin, toledo.make_framer, **line) as device:
        readings = settle_run(twin, device)
        status = device.get_status()
    check_settling(readings, twin)
    assert all(not r["stable"] for r in readings if r["motion"])
    assert status.bad_frames == 0 and status.garbage_bytes <= CONNECT_GARBAGE_BYTES
