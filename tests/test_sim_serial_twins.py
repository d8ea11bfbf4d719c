"""A simulated serial device fails where its caller sees it, never silently."""

from collections.abc import Iterator

import pytest

from drivers.strips import StripArray
from sim.serial_twins import DigitiserTwin, SerialTwin


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
