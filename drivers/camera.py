"""Cameras through OpenCV: read continuously into a ring, so a trigger finds its frame.

A :class:`Camera` owns one source — an RTSP URL, a USB index (``usb:0``) or a video file
(the simulated camera) — and reads it without pause in a reader thread, putting every
frame into a :class:`~drivers.frame_ring.FrameRing`. When the weighing loop reports that
an axle crossed at host time ``t_s``, :meth:`Camera.frame_at` returns the frame nearest
to that moment.

Why two threads per camera: OpenCV's ``open`` and ``read`` block inside the backend,
sometimes for good (a camera that accepts the connection and never speaks). The reader
thread makes those calls; a supervisor thread watches the clock, gives up on a call that
overruns ``open_timeout_s`` or ``read_timeout_s``, reports the timeout and reconnects
with a doubling delay (0.1 s … 5 s) on a fresh reader. A reader that is stuck inside the
backend is abandoned (it releases its capture if the call ever returns), so ``stop()``
never hangs. The backend's own timeouts (``CAP_PROP_OPEN_TIMEOUT_MSEC``,
``CAP_PROP_READ_TIMEOUT_MSEC``) are set too where it honours them (FFmpeg: RTSP, network
streams and files), so a stuck reader is the exception.

A file is played at its own frame rate, paced in real time unless ``realtime=False``,
and looped when ``loop=True``; a file that ends without looping is a lost stream, opened
again after the reconnect delay, like a camera that went away.
"""

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from drivers.backoff import Backoff
from drivers.base import DeviceStatus
from drivers.errors import DeviceError
from drivers.frame_ring import Frame, FrameRing, Match, StreamClock
from drivers.readings import ReadingsQueue
from zhichao.errors import ConfigError
from zhichao.settings import validate

BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 5.0
MAX_FAILED_READS = 3
"""Failed reads in a row after which a live stream counts as lost."""
MAX_STUCK_READERS = 2
"""Abandoned readers still blocked in the backend before no new one is started."""
FPS_WINDOW_S = 2.0
WATCH_PERIOD_S = 0.02
STOP_JOIN_S = 1.0
NETWORK_SCHEMES = ("http", "https", "rtmp", "rtp", "udp", "tcp", "srt")
LOW_FPS_SHARE = 0.8
"""Frames measured below this share of the stream's nominal rate: frames are lost."""
STALL_MIN_S = 2.0
"""Frames missing for this long (at least) after they flowed: the stream stalled."""
RING_SPAN_MIN_S = 6.0
"""A ring cut shorter than this by its byte bound is named: the roadside unit knows a
vehicle up to a batch of the signal loop (4 s by default) plus the vehicle's own length
after its first axle, and then wants the frame of that first axle from the ring."""

SourceKind = Literal["usb", "rtsp", "network", "file"]
Role = Literal["front", "rear", "overview"]
"""What a camera is for: the front plate, the rear plate, or the whole scene."""


@dataclass(frozen=True)
class Source:
    """Where a camera's frames come from; ``shown`` is the URL with its password hidden."""

    kind: SourceKind
    target: int | str
    shown: str

    @property
    def is_file(self) -> bool:
        """A recorded file: paced by the reader, and its end is an end, not an error."""
        return self.kind == "file"


def parse_source(url: str, name: str = "camera") -> Source:
    """Tell a USB index, an RTSP or other network URL and a file path apart.

    Examples
    --------
    >>> parse_source("usb:0")
    Source(kind='usb', target=0, shown='usb:0')
    >>> parse_source("rtsp://admin:secret@10.0.0.7:554/main").shown
    'rtsp://admin:***@10.0.0.7:554/main'
    >>> parse_source("file:///data/lane1.avi").target
    '/data/lane1.avi'
    """
    if url.startswith("usb:"):
        index = url[4:]
        if not index.isdigit():
            raise ConfigError(f"Option 'url' of camera '{name}' must be usb:N with N a device "
                              f"index of 0 or more (got {url!r})")
        return Source("usb", int(index), url)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("rtsp", "rtsps"):
        return Source("rtsp", url, _hide_password(url))
    if scheme in NETWORK_SCHEMES:
        return Source("network", url, _hide_password(url))
    if scheme == "file":
        return Source("file", parts.path, parts.path)
    if scheme == "" or len(scheme) == 1:  # a path (a one-letter scheme is a drive letter)
        return Source("file", url, url)
    raise ConfigError(f"Option 'url' of camera '{name}' must be rtsp://..., usb:N, a file "
                      f"path or one of {', '.join(NETWORK_SCHEMES)} (got {_hide_password(url)!r})")


def _hide_password(url: str) -> str:
    """The URL without its password: status pages and logs must not leak it."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def open_capture(source: Source, open_timeout_s: float, read_timeout_s: float
                 ) -> cv2.VideoCapture:
    """Open ``source`` with OpenCV, asking the backend to honour both timeouts.

    FFmpeg (RTSP, network streams, files) takes ``CAP_PROP_OPEN_TIMEOUT_MSEC`` and
    ``CAP_PROP_READ_TIMEOUT_MSEC`` at open; a USB camera is opened with the default
    backend (V4L2 on Linux) and relies on the camera's watchdog alone.
    """
    if source.kind == "usb":
        cap = cv2.VideoCapture(int(source.target))
    else:
        if source.is_file and not Path(str(source.target)).is_file():
            raise DeviceError(f"cannot open {source.shown}: no such file")
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, max(1, round(open_timeout_s * 1000)),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, max(1, round(read_timeout_s * 1000))]
        cap = cv2.VideoCapture(str(source.target), cv2.CAP_FFMPEG, params)
    if not cap.isOpened():
        cap.release()
        raise DeviceError(f"cannot open {source.shown}{_missing_backend(source)}")
    return cap


def _missing_backend(source: Source) -> str:
    """Why OpenCV may have refused, when the reason is the build rather than the camera."""
    if source.kind != "usb" and not cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG):
        return " (this OpenCV build has no FFMPEG backend)"
    return ""


Opener = Callable[[Source, float, float], cv2.VideoCapture]


class _Reader:
    """One connection: the thread that opens the source and reads it until it is lost.

    ``busy_since`` is set while the thread is inside a backend call, so the supervisor
    can tell a slow camera from a stuck one; ``abandoned`` tells the thread that nobody
    listens any more.
    """

    def __init__(self, number: int):
        self.number = number
        self.phase: Literal["open", "read"] = "open"
        self.busy_since: float | None = None
        self.abandoned = threading.Event()
        self.done = threading.Event()
        self.error: str | None = None
        self.fatal = False
        self.opened = False
        self.thread: threading.Thread | None = None

    def enter(self, phase: Literal["open", "read"]) -> None:
        """A backend call starts now."""
        self.phase = phase
        self.busy_since = time.monotonic()

    def leave(self) -> None:
        """The backend call returned."""
        self.busy_since = None

    def alive(self) -> bool:
        """The thread still runs (maybe blocked in the backend)."""
        return self.thread is not None and self.thread.is_alive()


class Camera:
    """One camera read continuously into a ring of frames (a :class:`drivers.base.Device`).

    Parameters
    ----------
    name : the camera's name in status, logs and errors.
    url : ``rtsp://...``, ``usb:N``, a video file path (or ``file://``), or another
        network URL FFmpeg reads.
    offset_s : the camera's latency: its frames are stamped this much after the moment
        they show, so a trigger at ``t_s`` looks for the frame at ``t_s + offset_s``.
    max_frames, max_bytes : bounds of the ring.
    open_timeout_s, read_timeout_s : longest wait for the source to open and for one frame.
    realtime : pace a file at its frame rate (else read it as fast as it decodes).
    loop : play a file again from the start when it ends.
    max_readings : readings kept for :meth:`readings` before the oldest are dropped.
    lane, role, distance_m, jpeg_quality, max_dt_s, roi : where the camera stands and
        how its frames are used (see :class:`CameraSettings`).
    opener : how a source is opened (:func:`open_capture`; tests pass a blocking one).

    All of them are kept, validated, as :attr:`settings` (a :class:`CameraSettings`).

    Examples
    --------
    >>> cam = Camera("lane1", "usb:0", offset_s=0.12)
    >>> cam.get_status().connected, cam.get_status().extra["state"]
    (False, 'stopped')
    """

    def __init__(self, name: str, url: str, *, offset_s: float = 0.0,
                 max_frames: int = 250, max_bytes: int = 256 * 2**20,
                 open_timeout_s: float = 5.0, read_timeout_s: float = 5.0,
                 realtime: bool = True, loop: bool = False, max_readings: int = 1000,
                 lane: int | None = None, role: Role = "front", distance_m: float = 0.0,
                 jpeg_quality: int = 90, max_dt_s: float = 0.1,
                 roi: tuple[int, int, int, int] | None = None,
                 opener: Opener = open_capture):
        for option, value in (("open_timeout_s", open_timeout_s),
                              ("read_timeout_s", read_timeout_s),
                              ("max_readings", max_readings)):
            if not value > 0:
                raise ConfigError(f"Option '{option}' of camera '{name}' must be above 0 "
                                  f"(got {value})")
        self.settings: CameraSettings = validate(CameraSettings, {
            "url": url, "offset_s": offset_s, "max_frames": max_frames,
            "max_bytes": max_bytes, "open_timeout_s": open_timeout_s,
            "read_timeout_s": read_timeout_s, "realtime": realtime, "loop": loop,
            "max_readings": max_readings, "lane": lane, "role": role,
            "distance_m": distance_m, "jpeg_quality": jpeg_quality, "max_dt_s": max_dt_s,
            "roi": roi}, f"camera '{name}'")
        self.name = name
        self.source = parse_source(url, name)
        self.offset_s = float(offset_s)
        self.open_timeout_s = float(open_timeout_s)
        self.read_timeout_s = float(read_timeout_s)
        self.realtime = realtime
        self.loop = loop
        self.ring = FrameRing(max_frames, max_bytes, name=name)
        self._opener = opener
        self._clock = StreamClock()
        self._stop = threading.Event()
        self._lock = threading.Condition(threading.Lock())
        self._write_lock = threading.Lock()  # one writer at a time, even a stale reader
        self._readings: ReadingsQueue[dict[str, Any]] = ReadingsQueue(int(max_readings),
                                                                       stop=self._stop)
        self._recent_t_s: deque[float] = deque()
        self._status = DeviceStatus(name)
        self._state = "stopped"
        self._failures = 0
        self._nominal_fps = 0.0
        self._started_at: float | None = None
        self._supervisor: threading.Thread | None = None
        self._reader: _Reader | None = None
        self._stuck: list[_Reader] = []

    @classmethod
    def from_settings(cls, name: str, settings: "CameraSettings", *,
                      opener: Opener = open_capture) -> "Camera":
        """The camera a validated settings section describes (not started)."""
        camera = cls(name, settings.url,
                     **settings.model_dump(exclude={"kind", "url", "process"}), opener=opener)
        camera.settings = settings  # as given, ``process`` included
        return camera

    # -- Device protocol -------------------------------------------------------------

    def start(self) -> None:
        """Start reading in the background; connection errors show in :meth:`get_status`."""
        if self._supervisor is not None and self._supervisor.is_alive():
            return
        self._stop.clear()
        self._started_at = time.monotonic()
        self._set_state("connecting")
        self._supervisor = threading.Thread(target=self._supervise, daemon=True,
                                            name=f"camera-{self.name}")
        self._supervisor.start()

    def stop(self) -> None:
        """Stop reading and close the source; returns within about two seconds.

        A reader blocked inside the backend is left behind (a daemon thread that
        releases its capture when the backend returns) rather than waited for.
        """
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        self._readings.wake()
        if self._supervisor is not None:
            self._supervisor.join(STOP_JOIN_S)  # it only ever waits on events: quick
        reader = self._reader
        if reader is not None and reader.thread is not None:
            reader.abandoned.set()
            reader.thread.join(STOP_JOIN_S)
        self._set_state("stopped", connected=False)

    def readings(self, timeout_s: float = 0.0) -> list[dict[str, Any]]:
        """One small dict per frame since the last call — times and shape, never pixels.

        Keys: ``camera``, ``index``, ``t_s`` (host time the frame shows), ``t_host_s``
        (arrival), ``t_device_s`` (source clock or ``None``), ``shape``.
        """
        return self._readings.get(timeout_s)

    def get_status(self) -> DeviceStatus:
        """Counts and health now: connection, frames, failed reads, measured fps, ring."""
        with self._lock:
            status = DeviceStatus(**{**self._status.as_dict(), "extra": {}})
            fps = self._fps_locked()
            state, nominal_fps = self._state, self._nominal_fps
        started = self._started_at
        status.extra = {
            "url": self.source.shown, "state": state, "fps": fps, "nominal_fps": nominal_fps,
            "ring_frames": len(self.ring), "ring_bytes": self.ring.nbytes,
            "ring_span_s": self.ring.span_s, "ring_dropped": self.ring.dropped,
            "ring_dropped_for_bytes": self.ring.dropped_for_bytes,
            "max_frames": self.ring.max_frames, "max_bytes": self.ring.max_bytes,
            "offset_s": self.offset_s,
            "readings_dropped": self._readings.dropped,
            "stuck_readers": sum(r.alive() for r in self._stuck),
            "running_s": time.monotonic() - started if started is not None else 0.0,
        }
        return status

    def diagnose(self, status: DeviceStatus | None = None, seconds: float | None = None
                 ) -> list[str]:
        """Plain-words hints for a technician (see :func:`diagnose`); ``status`` and
        ``seconds`` default to now and the time since :meth:`start`."""
        status = status if status is not None else self.get_status()
        return diagnose(status, seconds if seconds is not None
                        else status.extra.get("running_s", 0.0))

    # -- triggers --------------------------------------------------------------------

    def match_at(self, t_s: float, wait_s: float = 0.0, max_dt_s: float | None = None
                 ) -> Match:
        """The frame that shows host time ``t_s`` (corrected by ``offset_s``).

        When that moment is not in the ring yet, wait up to ``wait_s`` for it to arrive.
        Raises ``DeviceError`` saying why no frame fits: too old, not yet, a gap, empty.
        """
        found = self.ring.find(t_s, self.offset_s, max_dt_s)
        if not isinstance(found, Match) and found.reason in ("not_yet", "empty") and wait_s > 0:
            self.ring.wait_newer(t_s + self.offset_s, wait_s)
            found = self.ring.find(t_s, self.offset_s, max_dt_s)
        if isinstance(found, Match):
            return found
        raise DeviceError(f"Camera '{self.name}' ({self.source.shown}): {found.describe()}")

    def frame_at(self, t_s: float, wait_s: float = 0.0, max_dt_s: float | None = None
                 ) -> tuple[np.ndarray, float]:
        """``(image, dt_s)`` of the frame nearest to ``t_s``; the image is read-only."""
        match = self.match_at(t_s, wait_s, max_dt_s)
        return match.frame.image, match.dt_s

    def wait_ready(self, timeout_s: float) -> None:
        """Wait for the first frame; ``DeviceError`` if an attempt fails or time runs out.

        For start-up checks (``zhichao edge probe``): the reader keeps retrying after
        this raises, so a camera that comes up later still starts to deliver.
        """
        with self._lock:
            failures = self._failures
            self._lock.wait_for(lambda: self._status.frames > 0 or self._failures > failures
                                or self._stop.is_set(), timeout_s)
            frames, error = self._status.frames, self._status.last_error
        if frames == 0:
            why = error if error else f"no frame within {timeout_s:g} s"
            raise DeviceError(f"Camera '{self.name}' ({self.source.shown}) is not ready: {why}")

    # -- supervisor ------------------------------------------------------------------

    def _supervise(self) -> None:
        """Run readers one after the other, with a doubling delay between lost ones."""
        backoff, number = Backoff(BACKOFF_MIN_S, BACKOFF_MAX_S), 0
        while not self._stop.is_set():
            self._stuck = [r for r in self._stuck if r.alive()]
            if len(self._stuck) >= MAX_STUCK_READERS:
                self._fail(f"{len(self._stuck)} earlier connections are still blocked in "
                           f"the OpenCV backend; not opening another")
            else:
                number += 1
                reader = self._run_reader(number)
                if reader.fatal or self._stop.is_set():
                    break
                if reader.opened:
                    backoff.reset()  # it worked for a while: retry quickly
                self._fail(reader.error or "stream lost")
            self._stop.wait(backoff.next())

    def _run_reader(self, number: int) -> _Reader:
        """Start a reader and watch it until it ends, overruns a timeout, or we stop."""
        reader = _Reader(number)
        reader.thread = threading.Thread(target=self._read_source, args=(reader,),
                                         daemon=True, name=f"camera-{self.name}-{number}")
        self._reader = reader
        self._set_state("connecting")
        reader.thread.start()
        while not reader.done.wait(WATCH_PERIOD_S) and not self._stop.is_set():
            overrun = self._overrun(reader)
            if overrun:
                reader.error = overrun
                reader.abandoned.set()
                self._stuck.append(reader)
                break
        if reader.fatal:
            self._fail(reader.error or "fatal error", fatal=True)
        return reader

    def _overrun(self, reader: _Reader) -> str | None:
        """A timeout message when the reader's backend call has run too long."""
        since = reader.busy_since
        if since is None:
            return None
        limit_s = self.open_timeout_s if reader.phase == "open" else self.read_timeout_s
        if time.monotonic() - since <= limit_s:
            return None
        if reader.phase == "open":
            return f"open timed out after {limit_s:g} s"
        return f"no frame within the read timeout of {limit_s:g} s"

    def _fail(self, error: str, *, fatal: bool = False) -> None:
        """Record a lost or failed connection."""
        with self._lock:
            self._status.last_error = f"{self.source.shown}: {error}"
            self._failures += 1
            self._recent_t_s.clear()
            self._state = "failed" if fatal else "waiting"
            self._status.connected = False
            self._lock.notify_all()

    def _set_state(self, state: str, *, connected: bool | None = None) -> None:
        with self._lock:
            self._state = state
            if connected is not None:
                self._status.connected = connected

    # -- reader thread ---------------------------------------------------------------

    def _read_source(self, reader: _Reader) -> None:
        """Body of a reader thread: open, then read until lost, stopped or abandoned."""
        cap = None
        try:
            reader.enter("open")
            t_open = time.monotonic()
            try:
                cap = self._opener(self.source, self.open_timeout_s, self.read_timeout_s)
            except DeviceError as exc:
                if time.monotonic() - t_open >= self.open_timeout_s:
                    raise DeviceError(f"open timed out after {self.open_timeout_s:g} s") from exc
                raise
            reader.leave()
            if reader.abandoned.is_set() or self._stop.is_set():
                return
            reader.opened = True
            self._on_connected(reader, cap)
            self._read_frames(reader, cap)
        except DeviceError as exc:
            reader.error = str(exc)
        except ConfigError as exc:  # the ring cannot hold this camera's frames
            reader.error, reader.fatal = str(exc), True
        except cv2.error as exc:
            reader.error = f"OpenCV error: {exc}"
        finally:
            reader.leave()
            if cap is not None:
                cap.release()
            reader.done.set()

    def _on_connected(self, reader: _Reader, cap: cv2.VideoCapture) -> None:
        """Count a reconnection (every successful open after the first); note the frame
        rate the stream announces, to tell lost frames from a slow camera."""
        self._clock.reset()
        nominal_fps = cap.get(cv2.CAP_PROP_FPS)
        with self._lock:
            self._nominal_fps = nominal_fps if 0 < nominal_fps < 1000 else 0.0
            if reader.number > 1:
                self._status.reconnects += 1
            self._state = "connected"
            self._status.connected = True

    def _read_frames(self, reader: _Reader, cap: cv2.VideoCapture) -> None:
        """Read frames until the stream is lost (raises) or we stop; pace files.

        A live stream is lost after ``MAX_FAILED_READS`` failed reads in a row, each
        counted as a bad frame; for a file the first failed read is its end (FFmpeg
        skips damaged frames inside a file by itself).
        """
        pacer = _FilePacer(cap) if self.source.is_file else None
        failed = 0
        while not (self._stop.is_set() or reader.abandoned.is_set()):
            reader.enter("read")
            ok, image = cap.read()
            reader.leave()
            if reader.abandoned.is_set():
                return
            if ok and image is not None and image.size > 0:
                failed = 0
                t_device_s = self._stream_time_s(pacer, cap)
                if not self._stop.is_set():
                    self._accept(reader, image, t_device_s)
            elif pacer is not None:
                self._end_of_file(pacer, cap)
            else:
                failed += 1
                self._count_bad_frame()
                if failed >= MAX_FAILED_READS:
                    raise DeviceError(f"{failed} failed reads in a row")

    def _stream_time_s(self, pacer: "_FilePacer | None", cap: cv2.VideoCapture
                       ) -> float | None:
        """The source's time of the frame just read; for a file, wait until it is due.

        A live stream's position is trusted only when positive (some backends report 0
        when they know no time); the wait for a file ends early when we are stopped.
        """
        if pacer is None:
            pos_ms = cap.get(cv2.CAP_PROP_POS_MSEC)
            return pos_ms / 1000 if pos_ms > 0 else None
        t_device_s = pacer.stream_time_s(cap)
        if self.realtime:
            wait_s = pacer.due_in_s(t_device_s)
            if wait_s > 0:
                self._stop.wait(wait_s)
        return t_device_s

    def _end_of_file(self, pacer: "_FilePacer", cap: cv2.VideoCapture) -> None:
        """Loop the file, or report the end as a lost stream."""
        if not self.loop:
            raise DeviceError(f"end of file after {pacer.frames_read} frames")
        if pacer.frames_read == 0:
            raise DeviceError("the file holds no frame")
        pacer.rewind(cap)

    def _accept(self, reader: _Reader, image: np.ndarray, t_device_s: float | None) -> None:
        """Time-stamp a frame, put it in the ring and queue its reading.

        Under the writer lock, and only for a reader still listened to: a reader the
        supervisor gave up on may come back from the backend with one last frame.
        """
        with self._write_lock:
            if reader.abandoned.is_set():
                return
            t_host_s = time.monotonic()
            t_s = self._clock.to_host(t_device_s, t_host_s)
            index = self._status.frames
            self.ring.push(Frame(image, t_s, t_host_s, t_device_s, index))
            self._publish(index, image.shape, t_s, t_host_s, t_device_s)

    def _publish(self, index: int, shape: tuple[int, ...], t_s: float, t_host_s: float,
                 t_device_s: float | None) -> None:
        """Count the frame and queue its reading (caller holds the writer lock)."""
        reading = {"camera": self.name, "index": index, "t_s": t_s, "t_host_s": t_host_s,
                   "t_device_s": t_device_s, "shape": tuple(shape)}
        with self._lock:
            self._status.frames += 1
            self._status.last_frame_at = t_host_s
            self._recent_t_s.append(t_s)
            while self._recent_t_s[0] < t_s - FPS_WINDOW_S:
                self._recent_t_s.popleft()
            self._lock.notify_all()
        self._readings.put(reading)

    def _count_bad_frame(self) -> None:
        with self._lock:
            self._status.bad_frames += 1

    def _fps_locked(self) -> float:
        """Frames per second over the last two seconds of frames (caller holds the lock)."""
        times = self._recent_t_s
        if len(times) < 2 or time.monotonic() - times[-1] > FPS_WINDOW_S:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])


class _FilePacer:
    """Plays a file at its own frame rate: stream times from the file, loops kept apart.

    The stream time of a frame is its position in the file (``CAP_PROP_POS_MSEC``) plus
    the length of the loops already played, so it never goes back when the file loops.
    """

    def __init__(self, cap: cv2.VideoCapture):
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.period_s = 1.0 / fps if fps > 0 else 0.04
        self.loop_offset_s = 0.0
        self.last_pos_s = 0.0
        self.frames_read = 0
        self._base: tuple[float, float] | None = None  # (host time, stream time) at start

    def stream_time_s(self, cap: cv2.VideoCapture) -> float:
        """Stream time of the frame just read."""
        self.last_pos_s = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000
        self.frames_read += 1
        return self.loop_offset_s + self.last_pos_s

    def due_in_s(self, t_device_s: float) -> float:
        """Seconds until the frame is due; re-bases when reading fell far behind."""
        now = time.monotonic()
        if self._base is None:
            self._base = (now, t_device_s)
        due = self._base[0] + (t_device_s - self._base[1])
        if now - due > 0.5:  # decoding lagged: restart the schedule instead of bursting
            self._base = (now, t_device_s)
            return 0.0
        return due - now

    def rewind(self, cap: cv2.VideoCapture) -> None:
        """Back to the first frame; the next loop's stream times follow on this one's."""
        if not cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
            raise DeviceError("cannot rewind the file to loop it")
        self.loop_offset_s += self.last_pos_s + self.period_s
        self.frames_read = 0


def diagnose(status: DeviceStatus, seconds: float, now_s: float | None = None) -> list[str]:
    """Plain-words hints about a camera after ``seconds`` of reading, one per finding, or
    a single ``ok`` line.

    ``status`` is a :meth:`Camera.get_status` (its ``extra`` gives the URL, measured and
    nominal fps, stuck readers); ``now_s`` is the host monotonic time (default: now), to
    tell a stream that stalled.

    Examples
    --------
    >>> lost = DeviceStatus("front", connected=True, frames=500, last_frame_at=99.9,
    ...                     extra={"url": "rtsp://10.0.0.7/main", "fps": 12.0,
    ...                            "nominal_fps": 25.0})
    >>> print(diagnose(lost, 40.0, now_s=100.0)[0])  # doctest: +NORMALIZE_WHITESPACE
    frames arrive at 12.0 fps, the stream announces 25 fps: frames are lost on the
    network or this machine cannot decode them in time; check the link's bandwidth
    and the CPU load, or lower the camera's resolution or bit rate
    """
    x, hints = status.extra, []
    url = x.get("url", "?")
    error = status.last_error or "no answer"
    if status.frames == 0:
        hints.append(_first_frame_hint(status, seconds, url, error))
    else:
        hints += _flow_hints(status, seconds, now_s)
    stuck = x.get("stuck_readers", 0)
    if stuck:
        hints.append(f"stuck: {stuck} connection(s) to {url} hang inside the OpenCV "
                     "backend (the camera accepts the connection and never answers); "
                     "power-cycle the camera; its reader is abandoned and retried")
    if status.reconnects:
        hints.append(f"intermittent: the stream dropped and came back {status.reconnects} "
                     "time(s): check the cable, PoE power and the network switch")
    if not hints:
        rate = status.frames / seconds if seconds > 0 else 0.0
        hints.append(f"ok: {status.frames} frames in {seconds:.0f} s ({rate:.1f}/s), "
                     "no problem seen")
    return hints


def _first_frame_hint(status: DeviceStatus, seconds: float, url: str, error: str) -> str:
    """Why not a single frame came: nothing there, no stream behind it, or silence."""
    if "timed out" in error or "read timeout" in error:
        return (f"no frames: {url} accepts the connection but sends no picture ({error}): "
                "check the stream path and codec (H.264/H.265/MJPEG), the user's rights, "
                "and that the camera is not at its client limit")
    if not status.connected:
        return (f"unreachable: {error}: check the URL (address, port, path), user and "
                "password, that the camera is powered and answers a ping, or that the "
                "file exists")
    return (f"no frames: connected to {url} but no frame in {seconds:.0f} s: check the "
            "stream path and codec, and that the camera is not at its client limit")


def _flow_hints(status: DeviceStatus, seconds: float, now_s: float | None) -> list[str]:
    """Hints for a camera whose frames do come: too few, or they stopped."""
    x, hints = status.extra, []
    fps, nominal = x.get("fps", 0.0), x.get("nominal_fps", 0.0)
    if nominal > 0 and 0 < fps < LOW_FPS_SHARE * nominal:
        hints.append(f"frames arrive at {fps:.1f} fps, the stream announces {nominal:g} "
                     "fps: frames are lost on the network or this machine cannot decode "
                     "them in time; check the link's bandwidth and the CPU load, or lower "
                     "the camera's resolution or bit rate")
    now_s = time.monotonic() if now_s is None else now_s
    quiet_s = now_s - status.last_frame_at if status.last_frame_at is not None else 0.0
    if quiet_s > max(STALL_MIN_S, seconds / 4):
        hints.append(f"stalled: frames flowed but none for {quiet_s:.0f} s: "
                     f"{status.last_error or 'the camera stopped sending'}")
    if status.bad_frames:
        hints.append(f"{status.bad_frames} failed read(s): a damaged stream or a "
                     "flaky link")
    hints += _ring_hints(x)
    return hints


def _ring_hints(x: dict[str, Any]) -> list[str]:
    """A ring whose byte bound, not its frame count, decides how far back it reaches,
    when that is less than :data:`RING_SPAN_MIN_S`: worked out from the frames' size and
    rate, so it is said before the ring has filled.

    >>> print(_ring_hints({"ring_frames": 20, "ring_bytes": 20 * 6_220_800, "fps": 25.0,
    ...                    "ring_dropped_for_bytes": 0, "max_frames": 250,
    ...                    "max_bytes": 268_435_456})[0])  # doctest: +NORMALIZE_WHITESPACE
    the ring holds 43 frames of 6.2 MB (max_bytes 268435456), 1.7 s at 25 fps, not
    max_frames (250): a vehicle known more than 1.7 s after it crossed gets no frame
    from this camera (0 frames pushed out by the byte bound so far); raise max_bytes if
    memory allows, or lower the stream's resolution
    """
    frames, nbytes = x.get("ring_frames", 0), x.get("ring_bytes", 0)
    fps = x.get("fps") or x.get("nominal_fps") or 0.0
    max_frames, max_bytes = x.get("max_frames", 0), x.get("max_bytes", 0)
    if not (frames and nbytes and fps > 0 and max_frames and max_bytes):
        return []
    per_frame = nbytes / frames
    holds = min(max_frames, int(max_bytes // per_frame))
    span_s = holds / fps
    if holds >= max_frames or span_s >= RING_SPAN_MIN_S:
        return []
    return [f"the ring holds {holds} frames of {per_frame / 1e6:.1f} MB (max_bytes "
            f"{max_bytes}), {span_s:.1f} s at {fps:.0f} fps, not max_frames ({max_frames}): "
            f"a vehicle known more than {span_s:.1f} s after it crossed gets no frame from "
            f"this camera ({x.get('ring_dropped_for_bytes', 0)} frames pushed out by the "
            "byte bound so far); raise max_bytes if memory allows, or lower the stream's "
            "resolution"]


class CameraSettings(BaseModel):
    """One camera's settings section: where its frames come from, how they are read, and
    where it stands at the roadside (the roadside unit picks frames with it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["camera"] = Field(
        "camera", description="the driver that reads this device (sections of the edge "
        "settings' devices: name it)")
    url: str = Field(
        min_length=1, description="rtsp://..., usb:N, a video file or another network URL "
        "FFmpeg reads; the password is hidden in status and logs")
    loop: bool = Field(False, description="play a video file again when it ends (the "
                       "simulated camera); a live camera never ends")
    realtime: bool = Field(True, description="pace a video file at its own frame rate, as "
                           "a live camera delivers; off reads it as fast as it decodes")
    offset_s: float = Field(
        0.0, ge=-5.0, le=5.0, description="the camera's latency: a frame is stamped this "
        "much after the moment it shows, so a trigger at t looks at t + offset_s")
    open_timeout_s: float = Field(
        5.0, gt=0, le=60.0, description="longest wait for the source to open before the "
        "attempt counts as failed and is retried")
    read_timeout_s: float = Field(
        5.0, gt=0, le=60.0, description="longest wait for one frame before the stream "
        "counts as lost and is reopened")
    max_frames: int = Field(
        250, ge=1, le=100_000, description="frames the ring keeps: enough to cover the "
        "time from a crossing to its trigger (10 s at 25 fps by default)")
    max_bytes: int = Field(
        256 * 2**20, ge=2**16, le=2**34, description="bytes the ring keeps at most, so a "
        "high resolution cannot take the unit's memory; the oldest frames go first, "
        "counted (ring_dropped in the status). A 1920x1080 frame is 6.2 MB: the default "
        "(256 MiB) holds 43 of them, 1.7 s at 25 fps, less than a digitiser's batch "
        "(signal.batch_s) back; `edge doctor` names a ring its bytes cut below 6 s")
    max_readings: int = Field(
        1000, ge=1, le=1_000_000, description="frame readings kept for a slow consumer "
        "before the oldest are dropped (counted)")
    lane: int | None = Field(
        None, ge=1, le=16, description="the lane the camera watches, from 1; none: all "
        "lanes (an overview camera)")
    role: Role = Field(
        "front", description="front: the front plate; rear: the rear plate (trailers "
        "carry theirs at the back); overview: the whole vehicle and scene, for review")
    distance_m: float = Field(
        0.0, ge=-50.0, le=100.0, description="from the first sensor row to the spot the "
        "camera sees, along the lane (negative: before the sensors); the frame wanted is "
        "the one at axle time + distance_m / speed")
    jpeg_quality: int = Field(
        90, ge=30, le=100, description="JPEG quality of the evidence images: below 30 "
        "plates smear, 100 only grows the packets")
    max_dt_s: float = Field(
        0.1, gt=0, le=2.0, description="how far the nearest frame may be from the wanted "
        "moment before the camera counts as missing for that vehicle")
    roi: tuple[int, int, int, int] | None = Field(
        None, description="x, y, width, height in pixels where plates are looked for; "
        "none: the whole frame")
    process: bool = Field(
        True, description="read the camera in a process of its own: OpenCV opens one "
        "stream at a time per process, so in threads a camera stuck opening holds up every "
        "other (benchmarks/cameras.py: none of 4 delivered within 4.5 s beside one); a "
        "process per camera costs a copy of each frame through a pipe")

    @field_validator("url")
    @classmethod
    def _url_parses(cls, url: str) -> str:
        """A URL the driver can read: checked at start-up, not at the first frame."""
        try:
            parse_source(url)
        except ConfigError as exc:
            raise ValueError("must" + str(exc).split(" must", 1)[-1]) from None
        return url

    @field_validator("roi")
    @classmethod
    def _roi_is_a_box(cls, roi: tuple[int, int, int, int] | None
                      ) -> tuple[int, int, int, int] | None:
        """A box inside the picture's first quadrant with an area."""
        if roi is not None and (roi[0] < 0 or roi[1] < 0 or roi[2] <= 0 or roi[3] <= 0):
            raise ValueError(f"must be x, y at 0 or more and width, height above 0 "
                             f"(got {list(roi)})")
        return roi

    def wanted_t_s(self, axle_t_s: float, speed_mps: float) -> float:
        """The host time whose frame shows the vehicle on this camera's spot.

        Examples
        --------
        >>> CameraSettings(url="usb:0", distance_m=12.0).wanted_t_s(100.0, 20.0)
        100.6
        """
        if not speed_mps > 0:
            return axle_t_s
        return axle_t_s + self.distance_m / speed_mps


def camera_from_config(name: str, section: Mapping[str, Any], where: str | None = None,
                       source: str = "settings") -> Camera:
    """A camera from its settings section, validated as :class:`CameraSettings`: an
    unknown option, a value out of range or of the wrong type stops start-up with a
    :class:`~zhichao.errors.ConfigError` naming the section and the option.

    Examples
    --------
    >>> camera_from_config("lane1", {"url": "usb:0", "offset_s": 0.1}).settings.offset_s
    0.1
    >>> camera_from_config("lane1", {"url": "usb:0", "ofset_s": 0.1})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    zhichao.errors.ConfigError: settings: option 'cameras.lane1.ofset_s' is not a known ...
    """
    settings = validate(CameraSettings, dict(section), source,
                        prefix=where or f"cameras.{name}")
    return Camera.from_settings(name, settings)
