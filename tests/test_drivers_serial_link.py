"""The serial transport for real: twins write into pseudo-terminals, the driver reads
them through pyserial. Samples and records arrive as sent; a device unplugged and
plugged back is reconnected; the technician's diagnosis names silence, a wrong baud rate
and noise. Every wait is bounded."""

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from drivers import xk3190
from drivers.base import DeviceStatus
from drivers.digitiser import SequenceTracker
from drivers.errors import DeviceError
from drivers.serial_link import SerialDevice, diagnose, digitiser_framer, wim_framer
from drivers.strips import StripArray
from sim.serial_twins import (
    EPOCH,
    Corruption,
    DigitiserTwin,
    PtyPort,
    SerialTwin,
    WimControllerTwin,
    XK3190Twin,
)
from sim.traffic import generate_traffic
from zhichao.errors import ConfigError

pytestmark = pytest.mark.timeout(30)


@contextlib.contextmanager
def reading(device: SerialDevice) -> Iterator[SerialDevice]:
    """A started device, stopped afterwards whatever happens."""
    device.start()
    try:
        yield device
    finally:
        device.stop()


def wait_for(condition: Callable[[], bool], timeout_s: float) -> bool:
    """Whether ``condition`` became true within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def collect(device: SerialDevice, count: int, timeout_s: float) -> list:
    """At least ``count`` decoded frames, or what arrived within ``timeout_s``."""
    deadline, out = time.monotonic() + timeout_s, []
    while len(out) < count and time.monotonic() < deadline:
        out += device.frames(timeout_s=0.1)
    return out


@contextlib.contextmanager
def plugged(twin: SerialTwin, hold: bool = False) -> Iterator[SerialTwin]:
    twin.start(hold=hold)
    try:
        yield twin
    finally:
        twin.stop()


# Data arrive as sent ---------------------------------------------------------------------

def test_digitiser_samples_arrive_equal_to_the_rendered_samples():
    site = StripArray(lanes=2)
    twin = DigitiserTwin(site, generate_traffic(site, 30.0, seed=3), frame_samples=100,
                         speed=5.0, render_seed=3)
    with plugged(twin, hold=True), reading(SerialDevice("dig", twin.path, digitiser_framer,
                                                        baudrate=921_600)) as device:
        assert device.wait_connected(3.0)
        twin.release()
        frames = collect(device, 150, timeout_s=10.0)
        status = device.get_status()
    assert len(frames) >= 150
    tracker = SequenceTracker()
    for f in frames:
        assert tracker.update(f.sequence) == 0
        assert f.samples.shape == (site.n_channels, 100)
        assert f.t_device_us == round(f.sequence * 100 * 1e6 / site.fs_hz)
        np.testing.assert_array_equal(f.samples, twin.expected(f.sequence))
    assert frames[0].sequence == 0                       # held until the driver read
    assert status.bad_frames == 0 and status.garbage_bytes == 0 and status.connected


def test_vehicle_records_arrive_equal_to_what_the_controller_sent():
    site = StripArray(lanes=4)
    truth = generate_traffic(site, 300.0, seed=5)
    twin = WimControllerTwin(site, truth, speed=200.0, baudrate=115_200)
    with plugged(twin, hold=True), reading(SerialDevice("wim", twin.path, wim_framer,
                                                        baudrate=115_200)) as device:
        assert device.wait_connected(3.0)
        twin.release()
        records = collect(device, len(twin.records), timeout_s=10.0)
        status = device.get_status()
    assert len(records) == len(twin.records) == len(truth) > 100
    assert records == twin.records
    by_lane_and_time = {(v.lane, round(v.t0_s, 3)): v for v in truth}
    for r in records:
        v = by_lane_and_time[(r.lane, round((r.time_utc - EPOCH).total_seconds(), 3))]
        assert r.axle_loads_kg == tuple(float(round(w)) for w in v.axle_loads_kg)
        assert r.gross_kg == sum(r.axle_loads_kg)
        assert r.speed_kmh == round(v.speed_mps * 3.6, 1)
    assert status.frames == len(records) and status.bad_frames == 0


def test_socket_and_loop_urls_work_too():
    done = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def serve() -> None:       # a serial-to-Ethernet converter: a stream, over TCP
            conn, _ = server.accept()
            with conn:
                while not done.wait(0.02):
                    conn.sendall(xk3190.encode_reading(4_200))

        threading.Thread(target=serve, daemon=True).start()
        with reading(SerialDevice("tcp", f"socket://127.0.0.1:{port}",
                                  xk3190.make_framer)) as device:
            got = [r["weight_kg"] for r in device.readings(timeout_s=3.0, count=3)]
            done.set()
    assert got[:3] == [4200.0] * 3
    with reading(SerialDevice("loop", "loop://", xk3190.make_framer, queue_size=3)) as dev:
        assert dev.wait_connected(2.0)
        dev.write(b"".join(xk3190.encode_reading(w) for w in range(10)))
        assert wait_for(lambda: dev.get_status().frames == 10, 3.0)
        assert [r["weight_kg"] for r in dev.readings()] == [7.0, 8.0, 9.0]
        assert dev.get_status().extra["dropped_readings"] == 7


# Unplugged and plugged back ----------------------------------------------------------------

def test_an_unplugged_device_is_reported_and_reconnected(tmp_path):
    site = StripArray(lanes=4)
    link = tmp_path / "ttyWIM"
    twin = WimControllerTwin(site, generate_traffic(site, 600.0, seed=8), speed=60.0,
                             link=link)
    twin.start(hold=True)
    device = SerialDevice("wim", str(link), wim_framer, baudrate=115_200)
    try:
        with reading(device):
            assert device.wait_connected(3.0)
            twin.release()
            before = collect(device, 5, timeout_s=5.0)
            assert len(before) >= 5
            twin.stop()                                               # unplugged
            assert wait_for(lambda: not device.get_status().connected, 3.0)
            down = device.get_status()
            assert down.last_error and str(link) in down.last_error
            assert any(h.startswith("not connected") for h in device.diagnose())
            time.sleep(0.5)                                           # retries fail
            assert device.get_status().extra["open_failures"] >= 1
            twin.start()                                              # a new pty
            assert link.resolve() == Path(twin.pty.slave_path)
            after = collect(device, 5, timeout_s=8.0)
            status = device.get_status()
            hints = device.diagnose()
    finally:
        twin.stop()
    assert len(after) >= 5 and after[0].sequence > before[-1].sequence
    assert status.connected and status.reconnects >= 1
    assert any(h.startswith("intermittent") for h in hints), hints


def test_stop_returns_promptly_and_retries_double_while_the_port_is_missing(tmp_path):
    device = SerialDevice("ghost", str(tmp_path / "ttyNONE"), xk3190.make_framer,
                          retry_min_s=0.1, retry_max_s=5.0)
    device.start()
    time.sleep(1.2)                  # attempts at 0, 0.1, 0.3, 0.7 s; the next at 1.5 s
    t0 = time.monotonic()
    device.stop()
    assert time.monotonic() - t0 < 1.0
    status = device.get_status()
    assert not status.connected and "cannot open" in status.last_error
    assert 3 <= status.extra["open_failures"] <= 5


# Diagnosis ---------------------------------------------------------------------------------

def test_diagnose_silence():
    pty = PtyPort()
    try:
        with reading(SerialDevice("mute", pty.path, xk3190.make_framer)) as device:
            assert device.wait_connected(3.0)
            time.sleep(0.3)
            hints = device.diagnose()
    finally:
        pty.close()
    assert len(hints) == 1 and hints[0].startswith("no bytes at all"), hints
    assert "wiring" in hints[0] and "power" in hints[0] and "port name" in hints[0]


def test_diagnose_a_wrong_baud_rate_as_garbage():
    twin = XK3190Twin(speed=4.0, baudrate=9600)
    with plugged(twin), reading(SerialDevice("scale", twin.path, xk3190.make_framer,
                                             baudrate=115_200)) as device:
        assert wait_for(lambda: device.get_status().extra["bytes_in"] > 200, 5.0)
        hints = device.diagnose()
        status = device.get_status()
    assert status.frames == 0
    assert len(hints) == 1 and hints[0].startswith("garbage"), hints
    assert "wrong baud rate or protocol? tried 115200 8N1" in hints[0]


def test_diagnose_checksum_noise():
    twin = XK3190Twin(speed=8.0, corruption=Corruption(flip_rate=0.3), seed=11)
    with plugged(twin), reading(SerialDevice("scale", twin.path, xk3190.make_framer)
                                ) as device:
        assert wait_for(lambda: device.get_status().frames >= 30, 5.0)
        hints = device.diagnose()
    assert any("noise on the line or wrong parity" in h for h in hints), hints


def test_diagnose_a_healthy_line_and_a_stalled_one():
    ok = DeviceStatus("s", connected=True, frames=100, last_frame_at=100.0,
                      extra={"bytes_in": 1200, "checksum_errors": 0})
    assert diagnose(ok, 10.0, now_s=100.1)[0].startswith("ok: 100 frames in 10 s (10.0/s)")
    stalled = diagnose(ok, 10.0, now_s=130.0)
    assert stalled == ["intermittent: frames flowed but none for 30 s: the device stopped "
                       "sending or the line was cut"]
    foreign = DeviceStatus("s", connected=True, frames=100, garbage_bytes=900,
                           extra={"bytes_in": 2100, "checksum_errors": 0})
    assert "not frames" in diagnose(foreign, 10.0, now_s=0.0)[0]


# Settings ----------------------------------------------------------------------------------

def test_a_device_from_its_settings_section():
    device = SerialDevice.from_config("scale", {
        "protocol": "toledo", "port": "loop://", "baudrate": 4800, "bytesize": 7,
        "parity": "E", "options": {"count": 3}})
    assert device.get_status().extra["link"] == "4800 7E1"
    assert device.framer.stage.__self__.count == 3


@pytest.mark.parametrize(("section", "message"), [
    ({"protocol": "xk3190", "port": "loop://", "baud": 9600},
     r"settings: option 'scale\.baud' is not a known option \(a typo\?\) \(got 9600\)"),
    ({"protocol": "xk3190", "port": "loop://", "parity": "X"},
     r"option 'scale\.parity' must be 'N', 'E' or 'O' \(got 'X'\)"),
    ({"protocol": "modbus", "port": "loop://"}, r"option 'scale\.protocol'"),
    ({"protocol": "xk3190"}, r"option 'scale\.port' is required but missing"),
    ({"protocol": "xk3190", "port": "loop://", "options": {"windw": 5}},
     r"option 'scale\.options' \{'windw': 5\} does not suit protocol 'xk3190'"),
])
def test_wrong_settings_are_refused_naming_the_option_and_value(section, message):
    with pytest.raises(ConfigError, match=message):
        SerialDevice.from_config("scale", section)


def test_writing_to_a_device_that_is_not_open_is_a_device_error():
    device = SerialDevice("scale", "loop://", xk3190.make_framer)
    with pytest.raises(DeviceError, match=r"scale: cannot write, port loop:// is not open"):
        device.write(b"T\r\n")
