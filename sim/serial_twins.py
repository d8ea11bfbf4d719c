"""Simulated serial devices that speak the real bytes into a pseudo-terminal.

Each twin opens a pty pair, sets it raw, and writes its device's frames to the master
side from a thread of its own; a driver opens the slave side (:attr:`SerialTwin.path`)
as it would open ``/dev/ttyUSB0``. Closing the pty is the device being unplugged;
:meth:`SerialTwin.start` again plugs it back in on a new pty (re-pointing a stable
symlink when one is given, since a new pty has a new path).

- :class:`DigitiserTwin` streams raw sample frames rendered by :class:`sim.render.Renderer`
  at real-time pace times ``speed``, on a device clock that may run fast or slow, start
  at an offset and send late by a random jitter;
- :class:`WimControllerTwin` sends one vehicle record per vehicle of the traffic truth,
  when the vehicle has left the sensors;
- :class:`XK3190Twin` and :class:`ToledoTwin` show a weight that swings, then settles on
  the commanded value;
- :class:`GpsTwin` sends NMEA RMC and ZDA once a second, a set latency after each UTC
  second of the host's wall clock (shifted by ``offset_s`` when asked).

Faults a technician meets, on demand: :class:`Corruption` flips bits, drops bytes and
inserts garbage at given rates (seeded); a twin at another baud rate than the driver
sets is heard through a simulated UART (:func:`uart_resample`) as the driver's port
would hear it — garbage. A pty carries no bits, only bytes, and keeps only the speed of
the settings a driver makes (not the data bits or parity), so this is how a twin learns
the rate the driver chose.
"""

import contextlib
import logging
import math
import os
import select
import termios
import threading
import time
import tty
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from drivers import digitiser, gps, toledo, xk3190
from drivers.strips import StripArray
from drivers.wim_records import VehicleRecord, Wim1Format
from sim.render import Renderer, SensorNoise
from sim.traffic import VehicleTruth

log = logging.getLogger("zhichao.sim")

BAUD_OF_CODE = {getattr(termios, name): int(name[1:]) for name in dir(termios)
                if name.startswith("B") and name[1:].isdigit()}
"""termios speed constants → baud rate."""
WRITE_TIMEOUT_S = 0.2
"""How long a twin waits for the pty to take bytes before it drops them (nobody reads)."""


class PtyPort:
    """The device end of a pseudo-terminal pair; the driver opens :attr:`path`.

    ``link``, when given, is a symlink re-pointed at the slave, so that a driver keeps
    one path across unplug and replug.
    """

    def __init__(self, link: Path | None = None) -> None:
        self.master_fd, self.slave_fd = os.openpty()
        tty.setraw(self.slave_fd)
        os.set_blocking(self.master_fd, False)
        self.slave_path = os.ttyname(self.slave_fd)
        self.link = Path(link) if link is not None else None
        if self.link is not None:
            tmp = self.link.with_name(self.link.name + ".new")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(self.slave_path)
            tmp.replace(self.link)
        self.dropped_bytes = 0
        self.closed = False

    @property
    def path(self) -> str:
        """What a driver opens: the symlink if any, else the slave's device path."""
        return str(self.link) if self.link is not None else self.slave_path

    def rx_baud(self) -> int | None:
        """The baud rate the driver set on its end (None once closed)."""
        if self.closed:
            return None
        return BAUD_OF_CODE.get(termios.tcgetattr(self.slave_fd)[5])

    def write(self, data: bytes, timeout_s: float | None = WRITE_TIMEOUT_S,
              stop: threading.Event | None = None) -> int:
        """Write ``data``, waiting up to ``timeout_s`` for room; bytes that do not fit
        in time are dropped (a UART sends whether anyone listens or not). With
        ``timeout_s`` None it waits as long as it takes, until ``stop`` is set or the
        port is closed: a flow-controlled link, which loses nothing to a slow reader."""
        view = memoryview(data)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while view and not self.closed and not (stop is not None and stop.is_set()):
            left = 0.1 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                break
            if not select.select([], [self.master_fd], [], left)[1]:
                if deadline is None:
                    continue
                break
            try:
                view = view[os.write(self.master_fd, view):]
            except BlockingIOError:
                continue
        self.dropped_bytes += len(view)
        return len(data) - len(view)

    def close(self) -> None:
        """Unplug: close both ends (the driver's reads fail from now on)."""
        if not self.closed:
            self.closed = True
            os.close(self.master_fd)
            os.close(self.slave_fd)


def uart_bits(data: bytes) -> np.ndarray:
    """Line levels, one per bit, of ``data`` sent 8N1 back to back (idle = 1)."""
    frames = np.ones((len(data), 10), dtype=np.uint8)
    frames[:, 0] = 0
    frames[:, 1:9] = np.unpackbits(np.frombuffer(data, np.uint8)[:, None], axis=1,
                                   bitorder="little")
    return np.concatenate([[1, 1], frames.ravel(), [1]])


def uart_resample(data: bytes, tx_baud: int, rx_baud: int) -> bytes:
    """What a UART at ``rx_baud`` reads from ``data`` sent 8N1 at ``tx_baud``.

    The receiver waits for a falling edge, samples the middle of its start bit (a high
    level there is a false start), of eight data bits and of the stop bit; a low stop
    bit is a framing error, delivered as NUL as Linux does without ``IGNPAR``/``PARMRK``.

    Examples
    --------
    >>> uart_resample(b"hello", 9600, 9600)
    b'hello'
    >>> set(uart_resample(b"\\x02+0012340000\\x03", 9600, 115200)) <= {0, 0xFF, 0xF0, 0x80}
    True
    """
    if tx_baud == rx_baud:
        return data
    sig = uart_bits(data)
    bit = tx_baud / rx_baud          # one receiver bit, in transmitter bits
    falls = np.flatnonzero((sig[1:] == 0) & (sig[:-1] == 1)) + 1
    offsets = (np.arange(10) + 0.5) * bit

    def level(t: np.ndarray) -> np.ndarray:
        idx = t.astype(np.int64)
        return np.where(idx < len(sig), sig[np.minimum(idx, len(sig) - 1)], 1)

    out, t_free = bytearray(), 0.0
    for edge in falls:
        if edge < t_free:
            continue
        samples = level(edge + offsets)
        if samples[0]:
            continue                 # a glitch, not a start bit
        byte = int(np.packbits(samples[1:9], bitorder="little")[0])
        out.append(byte if samples[9] else 0)
        t_free = edge + 9.5 * bit
    return bytes(out)


@dataclass(frozen=True)
class Corruption:
    """Faults injected per chunk (one frame or record): each rate is a probability."""

    flip_rate: float = 0.0      # one bit of the chunk flipped
    drop_rate: float = 0.0      # one byte of the chunk lost
    garbage_rate: float = 0.0   # 1..garbage_max_bytes random bytes before the chunk
    garbage_max_bytes: int = 16


class Corrupter:
    """Applies a :class:`Corruption` with a seeded RNG and counts what it did."""

    def __init__(self, corruption: Corruption, seed: int = 0) -> None:
        self.c = corruption
        self.rng = np.random.default_rng(seed)
        self.flipped = 0
        self.dropped = 0
        self.garbage_chunks = 0
        self.garbage_bytes = 0

    def apply(self, chunk: bytes) -> tuple[bytes, bool]:
        """(the bytes as sent, whether the chunk itself was damaged)."""
        u = self.rng.random(3)
        out, damaged = bytearray(chunk), False
        if u[0] < self.c.flip_rate and out:
            i = int(self.rng.integers(len(out) * 8))
            out[i // 8] ^= 1 << (i % 8)
            self.flipped += 1
            damaged = True
        if u[1] < self.c.drop_rate and out:
            del out[int(self.rng.integers(len(out)))]
            self.dropped += 1
            damaged = True
        if u[2] < self.c.garbage_rate:
            junk = self.rng.bytes(int(self.rng.integers(1, self.c.garbage_max_bytes + 1)))
            out[:0] = junk
            self.garbage_chunks += 1
            self.garbage_bytes += len(junk)
        return bytes(out), damaged


class SerialTwin:
    """A simulated serial device: a stream of timed chunks written to a pty by a thread.

    Subclasses implement :meth:`_chunks`: an iterator of ``(t_s, bytes)``, ``t_s`` the
    device time the chunk is due (s since the stream began). ``speed`` runs the device
    clock that many times faster than real time (``inf``: as fast as the pty takes
    bytes). ``baudrate`` is the twin's line speed, None for a link where the rate does
    not matter (USB). The stream goes on across :meth:`stop`/:meth:`start`.
    """

    def __init__(self, *, speed: float = 1.0, link: Path | None = None,
                 baudrate: int | None = None, corruption: Corruption | None = None,
                 seed: int = 0, epoch_s: float | None = None) -> None:
        self.speed = speed
        self.epoch_s = epoch_s
        """Host-monotonic instant of device time 0, shared with a site's other twins
        (None: when the stream starts)."""
        self.link = link
        self.baudrate = baudrate
        self.corrupter = Corrupter(corruption, seed) if corruption else None
        self.chunks_sent = 0
        self.bytes_sent = 0
        self.damaged_chunks = 0
        self.pty: PtyPort | None = None
        self._stream: Iterator[tuple[float, bytes]] | None = None
        self._next: tuple[float, bytes] | None = None
        self._offset_s: float | None = None
        self._stop = threading.Event()
        self._go = threading.Event()
        self._thread: threading.Thread | None = None
        self.finished = threading.Event()
        self.error: Exception | None = None

    @property
    def path(self) -> str:
        """The path a driver opens (valid after :meth:`start`)."""
        if self.pty is None:
            raise RuntimeError("the twin has no pty: call start() first")
        return self.pty.path

    def start(self, hold: bool = False) -> str:
        """Plug in: open a new pty and stream into it; the path to open.

        With ``hold``, the stream waits for :meth:`release` (so that a test can open
        the driver first: a port being opened discards what was waiting in it).
        """
        self.stop()
        self.pty = PtyPort(self.link)
        self._stop.clear()
        if hold:
            self._go.clear()
        else:
            self._go.set()
        self._offset_s = None
        self._thread = threading.Thread(target=self._run, name=type(self).__name__,
                                        daemon=True)
        self._thread.start()
        return self.pty.path

    def release(self) -> None:
        """Start the stream held by ``start(hold=True)``."""
        self._go.set()

    def stop(self) -> None:
        """Unplug: stop streaming and close the pty (within a second)."""
        self._stop.set()
        self._go.set()
        if self._thread is not None:
            self._thread.join(1.0)
            self._thread = None
        if self.pty is not None:
            self.pty.close()

    def __enter__(self) -> "SerialTwin":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _chunks(self) -> Iterator[tuple[float, bytes]]:
        raise NotImplementedError

    def _run(self) -> None:
        """Stream, keeping any failure where a caller sees it rather than letting the
        thread die in silence."""
        try:
            self._stream_chunks()
        except Exception as exc:  # a twin must not fail unseen: keep it, log it, end
            self.error = exc
            log.exception("%s stopped", type(self).__name__)
            self.finished.set()

    def _stream_chunks(self) -> None:
        """Send each chunk when it is due, until stopped or the stream ends."""
        self._go.wait()
        if self._stream is None:
            self._stream = self._chunks()
        while not self._stop.is_set():
            if self._next is None:
                self._next = next(self._stream, None)
                if self._next is None:
                    self.finished.set()
                    return
            t_s, data = self._next
            if self._offset_s is None:
                self._offset_s = self.epoch_s if self.epoch_s is not None \
                    else time.monotonic() - t_s / self.speed
            wait_s = self._offset_s + t_s / self.speed - time.monotonic()
            if wait_s > 0 and self._stop.wait(wait_s):
                return
            self._send(data)
            self._next = None

    def _send(self, data: bytes) -> None:
        """Corrupt as asked, pass through the simulated UART, write."""
        if self.corrupter is not None:
            data, damaged = self.corrupter.apply(data)
            self.damaged_chunks += damaged
        pty = self.pty
        if pty is None:
            return
        rx_baud = pty.rx_baud()
        if self.baudrate is not None and rx_baud is not None:
            data = uart_resample(data, self.baudrate, rx_baud)
        # as fast as the pty takes bytes: the reader sets the pace, and nothing is dropped
        # while it is busy (a slow machine would otherwise lose frames)
        timeout_s = None if math.isinf(self.speed) else WRITE_TIMEOUT_S
        self.bytes_sent += pty.write(data, timeout_s, self._stop)
        self.chunks_sent += 1


class DigitiserTwin(SerialTwin):
    """A strip-sensor digitiser: raw sample frames of ``frame_samples`` per channel.

    Frame ``k`` holds samples ``[k n, (k + 1) n)`` of the renderer and is sent when its
    last sample has been taken; its device time is ``clock_offset_s + k n / fs_hz`` in
    µs. The device clock runs ``clock_ppm`` fast (negative: slow) against the host's, so
    the frame is due ``(k + 1) n / fs_hz / (1 + clock_ppm 1e-6)`` s after the stream
    began; each write then waits a further uniform random ``[0, jitter_s)`` (a busy
    device, seeded by ``jitter_seed``). :meth:`host_time_of` gives the true host time of
    any device instant, to check a clock fit against. Defaults: an exact clock at 0, no
    jitter.
    """

    def __init__(self, site: StripArray, vehicles: list[VehicleTruth], *,
                 frame_samples: int = 100, duration_s: float | None = None,
                 render_seed: int = 0, noise: SensorNoise | None = None,
                 clock_ppm: float = 0.0, clock_offset_s: float = 0.0,
                 jitter_s: float = 0.0, jitter_seed: int = 0, **twin: object) -> None:
        super().__init__(**twin)  # type: ignore[arg-type]
        if clock_offset_s < 0 or jitter_s < 0 or not -1e5 < clock_ppm < 1e5:
            raise ValueError(f"clock_offset_s and jitter_s must be 0 or more, clock_ppm "
                             f"within ±1e5 (got {clock_offset_s}, {jitter_s}, {clock_ppm})")
        self.clock_rate = 1.0 + clock_ppm * 1e-6
        self.clock_offset_s = clock_offset_s
        self.jitter_s = jitter_s
        self._jitter_rng = np.random.default_rng(jitter_seed)
        if frame_samples * site.n_channels > digitiser.MAX_SAMPLES_PER_FRAME:
            raise ValueError(
                f"frame_samples {frame_samples} × {site.n_channels} channels exceeds the "
                f"{digitiser.MAX_SAMPLES_PER_FRAME} samples a digitiser frame can hold")
        self.site = site
        self.renderer = Renderer(site, vehicles, seed=render_seed, noise=noise)
        self.frame_samples = frame_samples
        self.duration_s = duration_s

    def expected(self, sequence: int) -> np.ndarray:
        """The samples frame ``sequence`` carries, ``(channels, frame_samples)``."""
        n = self.frame_samples
        return self.renderer.render(sequence * n, n)

    def host_time_of(self, t_device_s: float) -> float:
        """The host monotonic time when the device clock read ``t_device_s`` (valid
        from the first frame after the last plug-in)."""
        if self._offset_s is None:
            raise RuntimeError("the twin has not sent a frame since it was plugged in")
        return self._offset_s + (t_device_s - self.clock_offset_s) / self.clock_rate / self.speed

    def _send(self, data: bytes) -> None:
        """Send late by the jitter (one-sided: a device never sends early)."""
        if self.jitter_s > 0 and self._stop.wait(self._jitter_rng.uniform(0, self.jitter_s)):
            return
        super()._send(data)

    def _chunks(self) -> Iterator[tuple[float, bytes]]:
        n, fs = self.frame_samples, self.site.fs_hz
        total = None if self.duration_s is None else round(self.duration_s * fs) // n
        per_block = max(1, 2000 // n)         # render a few frames at once
        seq = 0
        while total is None or seq < total:
            block = self.renderer.render(seq * n, n * per_block)
            for j in range(per_block):
                t_us = round(self.clock_offset_s * 1e6 + (seq * n) * 1e6 / fs)
                frame = digitiser.encode_frame(block[:, j * n:(j + 1) * n], seq, t_us)
                due_s = (seq + 1) * n / fs
                yield (due_s if self.clock_rate == 1.0 else due_s / self.clock_rate), frame
                seq += 1
                if total is not None and seq >= total:
                    return


FLAG_OF_DRIVING = {"accelerating": "speed_change", "braking": "speed_change",
                   "weaving": "weaving", "straddling": "straddling"}
"""How a controller flags the simulator's kinds of bad driving."""
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def vehicle_record(v: VehicleTruth, sequence: int, epoch: datetime = EPOCH
                   ) -> VehicleRecord:
    """The record a controller sends for ``v``, at the format's resolution: loads in
    whole kg (gross their sum), spacings in cm, speed in 0.1 km/h, time in ms."""
    loads = tuple(float(round(w)) for w in v.axle_loads_kg)
    t = epoch + timedelta(milliseconds=round(v.t0_s * 1000))
    flags = (FLAG_OF_DRIVING[v.bad],) if v.bad in FLAG_OF_DRIVING else ()
    return VehicleRecord(
        sequence=sequence, time_utc=t, lane=v.lane,
        speed_kmh=round(v.speed_mps * 3.6, 1), axle_loads_kg=loads,
        spacings_m=tuple(round(float(s), 2) for s in v.spacings_m), gross_kg=sum(loads),
        flags=flags)


class WimControllerTwin(SerialTwin):
    """A WIM controller that sends a record line per vehicle, ``delay_s`` after the
    vehicle's last axle crossed the last row."""

    def __init__(self, site: StripArray, vehicles: list[VehicleTruth], *,
                 record_format: Wim1Format | None = None, epoch: datetime = EPOCH,
                 delay_s: float = 0.2, **twin: object) -> None:
        super().__init__(**twin)  # type: ignore[arg-type]
        self.format = record_format or Wim1Format()
        last_row_m = site.row_positions_m()[-1]
        done = [float(v.time_at(np.array(v.axle_pos_m[-1] + last_row_m))) + delay_s
                for v in vehicles]
        order = np.argsort(done, kind="stable")
        self.records = [vehicle_record(vehicles[i], k, epoch) for k, i in enumerate(order)]
        self.due_s = [done[i] for i in order]

    def _chunks(self) -> Iterator[tuple[float, bytes]]:
        for t_s, record in zip(self.due_s, self.records, strict=True):
            yield t_s, self.format.encode(record)


class ScaleTwin(SerialTwin):
    """An indicator on a static scale: after :meth:`command`, the weight swings around
    the new value for ``settle_s`` (a damped 1.5 Hz swing) and then stays on it.

    Shows ``rate_hz`` readings a second, rounded to ``division_kg``.
    """

    SWING_HZ = 1.5

    def __init__(self, *, rate_hz: float = 10.0, division_kg: float = 10.0,
                 settle_s: float = 2.0, baudrate: int | None = 9600,
                 **twin: object) -> None:
        super().__init__(baudrate=baudrate, **twin)  # type: ignore[arg-type]
        self.rate_hz = rate_hz
        self.division_kg = division_kg
        self.settle_s = settle_s
        self._lock = threading.Lock()
        self._from_kg = self._to_kg = 0.0
        self._commanded_at_s: float | None = None
        self._clock_s = 0.0

    def command(self, weight_kg: float) -> None:
        """Put ``weight_kg`` on the scale (from the current device time)."""
        with self._lock:
            self._from_kg = self._weight_at(self._clock_s)
            self._to_kg = weight_kg
            self._commanded_at_s = self._clock_s

    def _weight_at(self, t_s: float) -> float:
        """The true weight at device time ``t_s``."""
        if self._commanded_at_s is None:
            return self._to_kg
        age = t_s - self._commanded_at_s
        if age >= self.settle_s:
            return self._to_kg
        swing = (self._from_kg - self._to_kg) * (1 - age / self.settle_s)
        return self._to_kg + swing * np.cos(2 * np.pi * self.SWING_HZ * age)

    def reading(self, t_s: float) -> tuple[float, bool]:
        """(displayed weight, in motion) at device time ``t_s``."""
        with self._lock:
            self._clock_s = t_s
            shown = round(self._weight_at(t_s) / self.division_kg) * self.division_kg
            moving = (self._commanded_at_s is not None
                      and t_s - self._commanded_at_s < self.settle_s)
        return shown, moving

    def _encode(self, weight_kg: float, moving: bool) -> bytes:
        raise NotImplementedError

    def _chunks(self) -> Iterator[tuple[float, bytes]]:
        k = 0
        while True:
            t_s = k / self.rate_hz
            yield t_s, self._encode(*self.reading(t_s))
            k += 1


class XK3190Twin(ScaleTwin):
    """A Yaohua XK3190 in continuous output ``tF = 0``, showing whole kg."""

    def _encode(self, weight_kg: float, moving: bool) -> bytes:
        return xk3190.encode_reading(round(weight_kg), decimals=0)


class ToledoTwin(ScaleTwin):
    """A Toledo continuous output in kg with its motion bit; ``wire_parity`` adds the
    even parity bit a 7E1 line puts in bit 7 of what an 8N1 port reads."""

    def __init__(self, *, wire_parity: bool = False, **twin: object) -> None:
        super().__init__(**twin)  # type: ignore[arg-type]
        self.wire_parity = wire_parity

    def _encode(self, weight_kg: float, moving: bool) -> bytes:
        frame = toledo.encode_reading(weight_kg, motion=moving)
        if self.wire_parity:
            frame = bytes(b | (bin(b).count("1") & 1) << 7 for b in frame)
        return frame


class GpsTwin(SerialTwin):
    """A GPS receiver with a valid fix: RMC then ZDA once a second, ``latency_s`` after
    each UTC second, where UTC is the host's wall clock plus ``offset_s`` (so a test can
    make GPS time differ from the host's by a known amount). ``valid=False`` sends RMC
    status V (no fix). It runs on the host's clocks, not on a stream time of its own:
    each second is scheduled from the wall clock as it is then (a stepped wall clock is
    followed), and :attr:`seconds_sent` lists the seconds named.
    """

    def __init__(self, *, latency_s: float = 0.05, offset_s: float = 0.0,
                 valid: bool = True, talker: str = "GN", baudrate: int | None = 9600,
                 **twin: object) -> None:
        super().__init__(baudrate=baudrate, **twin)  # type: ignore[arg-type]
        if not 0 <= latency_s < 1:
            raise ValueError(f"latency_s must be within [0, 1) s (got {latency_s})")
        self.latency_s = latency_s
        self.offset_s = offset_s
        self.valid = valid
        self.talker = talker
        self.seconds_sent: list[datetime] = []

    def sentences(self, utc: datetime) -> bytes:
        """What the receiver sends for UTC second ``utc``."""
        return gps.rmc(utc, self.valid, self.talker) + gps.zda(utc, self.talker)

    def _stream_chunks(self) -> None:
        """Each next UTC second, wait until it is ``latency_s`` old, send its sentences."""
        self._go.wait()
        while not self._stop.is_set():
            second = math.floor(time.time() + self.offset_s) + 1
            wait_s = second - self.offset_s + self.latency_s - time.time()
            if self._stop.wait(max(wait_s, 0.0)):
                return
            utc = datetime.fromtimestamp(second, UTC)
            self._send(self.sentences(utc))
            self.seconds_sent.append(utc)
