"""A simulated serial device fails where its caller sees it, never silently, and loses
bytes to a busy reader only when it runs on its own clock."""

import os
import select
import time
from collections.abc import Iterator

import pytest

from drivers.strips import StripArray
from sim.serial_twins import WRITE_TIMEOUT_S, DigitiserTwin, SerialTwin


def test_a_frame_larger_than_the_format_holds_is_refused_at_once():
    with pytest.raises(ValueError, match=r"frame_samples 10000 × 16 channels exceeds"):
        DigitiserTwin(StripArray(), [], frame_samples=10_000)


class Broken(SerialTwin):
    """A twin whose stream fails after one chunk."""

    def _chunks(self) -> Iterator[tuple[float, bytes]]:
        yield 0.0, b"ok"
        raise RuntimeError("renderer failed")


def test_a_failing_stream_is_kept_logged_and_ends_the_twin(caplog):
    twin = Broken(speed=float("inf"))
    twin.start()
    try:
        assert twin.finished.wait(5.0)
    finally:
        twin.stop()
    assert isinstance(twin.error, RuntimeError) and "renderer failed" in str(twin.error)
    assert "Broken stopped" in caplog.text


class Burst(SerialTwin):
    """A twin that sends 256 kB at once, far more than a pty holds."""

    def _chunks(self) -> Iterator[tuple[float, bytes]]:
        for k in range(64):
            yield 0.0, bytes([k]) * 4096


def read_all(twin: SerialTwin, pause_s: float, deadline_s: float = 20.0) -> bytes:
    """Open the twin's pty as a driver does (the port is raw already), let the twin go,
    wait ``pause_s`` before reading (a busy reader), then read until nothing more comes."""
    fd = os.open(twin.path, os.O_RDONLY | os.O_NOCTTY)
    try:
        twin.release()
        time.sleep(pause_s)
        got, end = bytearray(), time.monotonic() + deadline_s
        while time.monotonic() < end and select.select([fd], [], [], 0.5)[0]:
            got += os.read(fd, 65536)
        return bytes(got)
    finally:
        os.close(fd)


@pytest.mark.parametrize("speed", [float("inf"), 1e6])
def test_a_busy_reader_loses_nothing_at_full_speed_only(speed):
    """At ``speed=inf`` the reader sets the pace (the demo's digitiser); at a finite
    speed the device sends on its own clock and a reader away for longer than the
    twin's write timeout loses bytes, as on a real line."""
    twin = Burst(speed=speed)
    twin.start(hold=True)
    try:
        got = read_all(twin, pause_s=WRITE_TIMEOUT_S * 8)
    finally:
        twin.stop()
    if speed == float("inf"):
        assert got == b"".join(bytes([k]) * 4096 for k in range(64))
        assert twin.pty.dropped_bytes == 0
    else:
        assert len(got) < 64 * 4096 and twin.pty.dropped_bytes > 0
