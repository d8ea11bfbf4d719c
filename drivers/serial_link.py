"""A serial device in a thread of its own: open, read, frame, queue, reconnect.

The transport half of every serial driver (the codec half is a pure
:class:`~drivers.framing.Codec`, as Klipper's ``serialhdl.py`` sits beside
``msgproto.py``). :class:`SerialDevice` opens its port with ``serial.serial_for_url``
(so ``/dev/ttyUSB0``, ``socket://host:port`` and ``loop://`` all work), reads with a
short timeout, feeds a :class:`~drivers.framing.Framer`, and keeps the decoded readings
in a bounded queue (the oldest dropped and counted when nobody takes them). When the
port disappears or fails it closes it, waits 0.1 s and tries again, doubling the wait up
to 5 s while it keeps failing. :func:`diagnose` turns the counts into hints a technician
can act on.
"""

import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Literal

import serial
from pydantic import BaseModel, ConfigDict, Field

from drivers import digitiser, gps, toledo, wim_records, xk3190
from drivers.backoff import Backoff
from drivers.base import DeviceStatus
from drivers.errors import DeviceError
from drivers.framing import Framer
from drivers.readings import ReadingsQueue
from zhichao.errors import ConfigError
from zhichao.settings import validate

RETRY_MIN_S = 0.1
RETRY_MAX_S = 5.0
CHECKSUM_NOISE_SHARE = 0.02
"""Share of checksum failures among frames above which the line is called noisy."""
GARBAGE_SHARE = 0.2
"""Share of bytes outside frames above which something else is on the line."""
STALL_MIN_S = 2.0
"""Frames missing for this long (at least) after they flowed: the stream stalled."""


def digitiser_framer() -> Framer[digitiser.SampleFrame]:
    """A framer of raw sample frames."""
    return Framer(digitiser.CODEC, stage=_stamp_receipt)


def _stamp_receipt(frame: digitiser.SampleFrame) -> digitiser.SampleFrame:
    """The frame with its receipt time (the framer runs this right after the read that
    completed it), for the unit's fit of the digitiser's clock."""
    return replace(frame, t_host_s=time.monotonic())


def wim_framer(record_format: str = "wim1") -> Framer[wim_records.VehicleRecord]:
    """A framer of vehicle record lines of ``record_format`` (a name in
    :data:`drivers.wim_records.FORMATS`)."""
    return Framer(wim_records.make_codec(record_format))


PROTOCOLS: dict[str, Callable[..., Framer]] = {
    "digitiser": digitiser_framer,
    "wim_records": wim_framer,
    "xk3190": xk3190.make_framer,
    "toledo": toledo.make_framer,
    "nmea": gps.make_framer,
}
"""Framer factories by protocol name; a settings section's ``options`` go to them."""


class SerialSettings(BaseModel):
    """One serial device's settings section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    protocol: Literal["digitiser", "wim_records", "xk3190", "toledo", "nmea"]
    port: str = Field(min_length=1, description="device path or pyserial URL")
    baudrate: int = Field(9600, gt=0)
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    read_timeout_s: float = Field(0.05, gt=0, le=1.0)
    queue_size: int = Field(10_000, ge=1)
    retry_min_s: float = Field(RETRY_MIN_S, gt=0)
    retry_max_s: float = Field(RETRY_MAX_S, gt=0)
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="options of the protocol's framer")


def link_text(baudrate: int, bytesize: int, parity: str, stopbits: int) -> str:
    """Line settings as technicians write them: ``9600 8N1``."""
    return f"{baudrate} {bytesize}{parity}{stopbits}"


class SerialDevice:
    """A serial device read by a background thread (implements
    :class:`drivers.base.Device`).

    Examples
    --------
    >>> from drivers.xk3190 import encode_reading
    >>> dev = SerialDevice("scale", "loop://", xk3190.make_framer)
    >>> dev.start()
    >>> dev.wait_connected(2.0)
    True
    >>> dev.write(encode_reading(25_000) * 5)
    >>> [r["weight_kg"] for r in dev.readings(timeout_s=2.0, count=5)]
    [25000.0, 25000.0, 25000.0, 25000.0, 25000.0]
    >>> dev.stop()
    """

    def __init__(self, name: str, port: str, framer_factory: Callable[[], Framer], *,
                 baudrate: int = 9600, bytesize: int = 8, parity: str = "N",
                 stopbits: int = 1, read_timeout_s: float = 0.05, queue_size: int = 10_000,
                 retry_min_s: float = RETRY_MIN_S, retry_max_s: float = RETRY_MAX_S) -> None:
        self.name = name
        self.port = port
        self.line = {"baudrate": baudrate, "bytesize": bytesize, "parity": parity,
                     "stopbits": stopbits}
        self.read_timeout_s = read_timeout_s
        self.retry_min_s, self.retry_max_s = retry_min_s, retry_max_s
        self.framer = framer_factory()
        self._stop = threading.Event()
        self._queue: ReadingsQueue[Any] = ReadingsQueue(queue_size, stop=self._stop)
        self._thread: threading.Thread | None = None
        self._serial: serial.SerialBase | None = None
        self._connected = False
        self._reconnects = 0
        self._open_failures = 0
        self._last_error: str | None = None
        self._last_frame_at: float | None = None
        self._started_at: float | None = None

    @classmethod
    def from_config(cls, name: str, section: dict[str, Any], source: str = "settings"
                    ) -> "SerialDevice":
        """A device from its settings section; a wrong or unknown option is a
        :class:`~zhichao.errors.ConfigError` naming it and the value."""
        s = validate(SerialSettings, section, source, prefix=name)
        factory = PROTOCOLS[s.protocol]
        try:
            factory(**s.options)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: option '{name}.options' {s.options!r} does not "
                              f"suit protocol {s.protocol!r}: {exc}") from None
        return cls(name, s.port, lambda: factory(**s.options), baudrate=s.baudrate,
                   bytesize=s.bytesize, parity=s.parity, stopbits=s.stopbits,
                   read_timeout_s=s.read_timeout_s, queue_size=s.queue_size,
                   retry_min_s=s.retry_min_s, retry_max_s=s.retry_max_s)

    # Device protocol ---------------------------------------------------------------

    def start(self) -> None:
        """Start the reading thread (the port is opened there, and reopened as needed)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._started_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"serial-{self.name}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop reading and close the port; returns within ``timeout_s``."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._queue.wake()

    def readings(self, timeout_s: float = 0.0, count: int = 1) -> list[dict[str, Any]]:
        """Decoded readings as plain dicts (see :meth:`frames`)."""
        return [item.to_dict() for item in self.frames(timeout_s, count)]

    def frames(self, timeout_s: float = 0.0, count: int = 1) -> list[Any]:
        """Decoded frames queued since the last call, waiting up to ``timeout_s`` for
        at least ``count`` of them (fewer when the time runs out)."""
        return self._queue.get(timeout_s, count)

    def get_status(self) -> DeviceStatus:
        """Counts and health now."""
        f = self.framer
        running_s = time.monotonic() - self._started_at if self._started_at else 0.0
        return DeviceStatus(
            name=self.name, connected=self._connected, frames=f.frames,
            bad_frames=f.bad_frames, garbage_bytes=f.garbage_bytes,
            reconnects=self._reconnects, last_error=self._last_error,
            last_frame_at=self._last_frame_at,
            extra={"port": self.port, "link": link_text(**self.line),
                   "protocol": f.codec.name, "bytes_in": f.bytes_in,
                   "checksum_errors": f.checksum_errors, "dropped_readings": self._queue.dropped,
                   "queued": len(self._queue), "open_failures": self._open_failures,
                   "running_s": running_s})

    # For technicians and tests ----------------------------------------------------

    def diagnose(self, status: DeviceStatus | None = None, seconds: float | None = None
                 ) -> list[str]:
        """Hints from ``status`` (default: the counts now) after ``seconds`` (default:
        since :meth:`start`); see :func:`diagnose`."""
        status = status if status is not None else self.get_status()
        return diagnose(status, seconds if seconds is not None
                        else status.extra.get("running_s", 0.0))

    def wait_connected(self, timeout_s: float) -> bool:
        """Whether the port is open, waiting up to ``timeout_s`` for it."""
        deadline = time.monotonic() + timeout_s
        while not self._connected and time.monotonic() < deadline:
            time.sleep(0.01)
        return self._connected

    def write(self, data: bytes) -> None:
        """Send bytes to the device (commands; and ``loop://`` tests)."""
        port = self._serial
        if port is None:
            raise DeviceError(f"{self.name}: cannot write, port {self.port} is not open "
                              f"({self._last_error or 'not started'})")
        port.write(data)

    # The thread --------------------------------------------------------------------

    def _run(self) -> None:
        """Open, read until the port fails, wait, again, until stopped.

        The wait starts at ``retry_min_s`` after a connection that delivered bytes and
        doubles, up to ``retry_max_s``, while the port cannot be opened or fails before
        a single byte (so a port that opens but cannot be read is not hammered).
        """
        backoff, ever_connected = Backoff(self.retry_min_s, self.retry_max_s), False
        while not self._stop.is_set():
            port = self._open()
            healthy = False
            if port is not None:
                self._reconnects += ever_connected
                ever_connected = True
                healthy = self._pump(port)
            if self._stop.wait(backoff.reset() if healthy else backoff.next()):
                break

    def _open(self) -> serial.SerialBase | None:
        """The opened port, or None (the reason kept as ``last_error``)."""
        try:
            port = serial.serial_for_url(self.port, timeout=self.read_timeout_s,
                                         **self.line)
        except (serial.SerialException, OSError, ValueError) as exc:
            self._open_failures += 1
            errno = getattr(exc, "errno", None)  # pyserial repeats the port thrice otherwise
            reason = os.strerror(errno) if isinstance(errno, int) else str(exc)
            self._last_error = f"cannot open {self.port}: {reason}"
            return None
        self._serial, self._connected = port, True
        return port

    def _pump(self, port: serial.SerialBase) -> bool:
        """Read and frame until stopped or the port fails; then close it. Whether any
        byte came."""
        bytes_before = self.framer.bytes_in
        try:
            while not self._stop.is_set():
                data = port.read(port.in_waiting or 1)
                if data:
                    self._deliver(self.framer.feed(data))
        except (serial.SerialException, OSError) as exc:
            self._last_error = f"{self.port}: {exc}"
        finally:
            self._connected, self._serial = False, None
            port.close()
            self.framer.discard()   # a frame cut by the loss must not join new bytes
        return self.framer.bytes_in > bytes_before

    def _deliver(self, items: list[Any]) -> None:
        """Queue decoded items (dropping the oldest when full) and wake readers."""
        if self.framer.last_error is not None:
            self._last_error = self.framer.last_error
        if not items:
            return
        self._last_frame_at = time.monotonic()
        self._queue.put_many(items)


def diagnose(status: DeviceStatus, seconds: float, now_s: float | None = None) -> list[str]:
    """Plain-language hints about a serial device after ``seconds`` of reading.

    ``status`` is a :meth:`SerialDevice.get_status` (its ``extra`` gives the bytes
    received, checksum failures, port and line settings); ``now_s`` is the host
    monotonic time (default: now), to tell a stalled stream. One line per finding, or
    a single ``ok`` line.

    Examples
    --------
    >>> silent = DeviceStatus("scale", connected=True,
    ...                       extra={"bytes_in": 0, "port": "/dev/ttyS0", "link": "9600 8N1"})
    >>> print(diagnose(silent, 10.0)[0])  # doctest: +NORMALIZE_WHITESPACE
    no bytes at all in 10 s on /dev/ttyS0: check wiring (device TX to port RX,
    common ground), power, port name
    """
    x = status.extra
    bytes_in, port, link = x.get("bytes_in", 0), x.get("port", "?"), x.get("link", "?")
    hints = []
    if not status.connected and status.last_error:
        hints.append(f"not connected: {status.last_error}: check the port name, that the "
                     f"adapter is plugged in and that no other program holds it")
    if bytes_in == 0:
        hints.append(f"no bytes at all in {seconds:.0f} s on {port}: check wiring (device "
                     f"TX to port RX, common ground), power, port name")
    elif status.frames == 0:
        hints.append(f"garbage: {bytes_in} bytes but no valid frame in {seconds:.0f} s: "
                     f"wrong baud rate or protocol? tried {link}, protocol "
                     f"{x.get('protocol', '?')}; set the rate and format the device sends")
    else:
        hints += _quality_hints(status, seconds, now_s)
    if not hints:
        rate = status.frames / seconds if seconds > 0 else 0.0
        hints.append(f"ok: {status.frames} frames in {seconds:.0f} s ({rate:.1f}/s), "
                     f"no problem seen")
    return hints


def _quality_hints(status: DeviceStatus, seconds: float, now_s: float | None) -> list[str]:
    """Hints for a device whose frames do arrive: noise, foreign bytes, interruptions."""
    x, hints = status.extra, []
    checksum_errors = x.get("checksum_errors", 0)
    if checksum_errors > CHECKSUM_NOISE_SHARE * (status.frames + checksum_errors):
        hints.append(f"checksum failures: {checksum_errors} of "
                     f"{status.frames + checksum_errors} frames: noise on the line or "
                     f"wrong parity (tried {x.get('link', '?')}); check shielding, ground, "
                     f"cable length and the parity setting")
    elif status.garbage_bytes > GARBAGE_SHARE * x.get("bytes_in", 0):
        hints.append(f"{status.garbage_bytes} of {x.get('bytes_in', 0)} bytes are not "
                     f"frames: another device or output mode on the line, or bytes lost")
    if status.reconnects:
        hints.append(f"intermittent: the port went away and came back {status.reconnects} "
                     f"time(s): loose connector, USB adapter resetting or power dips")
    now_s = time.monotonic() if now_s is None else now_s
    quiet_s = now_s - status.last_frame_at if status.last_frame_at is not None else 0.0
    if quiet_s > max(STALL_MIN_S, seconds / 4):
        hints.append(f"intermittent: frames flowed but none for {quiet_s:.0f} s: the "
                     f"device stopped sending or the line was cut")
    return hints
