"""What every device driver offers the rest of the system, and ``zhichao edge probe``.

A driver owns its connection in a thread of its own: it opens the device, reads, decodes
frames with a codec of pure functions, reconnects with a doubling delay when the device
goes away, and keeps counts. Callers only take decoded readings and ask for the status.
"""

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


@dataclass
class DeviceStatus:
    """Health of one device, as a technician reads it (Klipper's ``get_status``)."""

    name: str
    connected: bool = False
    frames: int = 0           # decoded readings/frames since start
    bad_frames: int = 0       # checksum, length or field errors
    garbage_bytes: int = 0    # bytes skipped while looking for a frame start
    reconnects: int = 0
    last_error: str | None = None
    last_frame_at: float | None = None  # host monotonic time of the last good frame
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A plain dict (for JSON and tables)."""
        return asdict(self)


class Device(Protocol):
    """A running driver: started, read, asked for health, stopped."""

    name: str

    def start(self) -> None:
        """Open the device and start reading in the background."""

    def stop(self) -> None:
        """Stop reading and close the device; returns within a second or two."""

    def readings(self, timeout_s: float = 0.0) -> list[dict[str, Any]]:
        """Decoded readings since the last call (waiting up to ``timeout_s`` for one)."""

    def get_status(self) -> DeviceStatus:
        """Counts and health now."""

    def diagnose(self, status: DeviceStatus, seconds: float) -> list[str]:
        """Plain-words hints for a technician from ``status`` after ``seconds`` of
        reading: what looks wrong and what to check, or one ``ok`` line. Each driver
        knows its own failures (a serial line's baud rate, a register map, a camera's
        stream), so the hints live with it."""
