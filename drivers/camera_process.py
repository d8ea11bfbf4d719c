"""A camera read in a process of its own, so one camera can never hold up another.

OpenCV's FFmpeg backend opens every capture of a process under one lock. A camera that
accepts the connection and never answers keeps that lock for its whole open timeout, and
again at each retry, and the other cameras of the unit cannot open meanwhile: measured by
``benchmarks/cameras.py``, three healthy cameras beside one stuck camera got no frame at
all in eight seconds, and four healthy cameras opened one after the other (4.2 s to the
last first frame, against 0.85 s for one). Opens in separate processes do not share the
lock, and a process stuck in the backend can be killed, which a thread cannot.

A :class:`ProcessCamera` runs an ordinary :class:`~drivers.camera.Camera` (reader,
watchdog, reconnects) in a child process (``spawn``: no inherited threads or OpenCV
state) and offers the same interface in the parent: every frame comes back through a
pipe with its times and index and goes into the parent's own
:class:`~drivers.frame_ring.FrameRing`, so ``frame_at``/``match_at`` work the same; the
child's status follows every ``STATUS_PERIOD_S``. Host-monotonic times are the same in
both processes (``CLOCK_MONOTONIC`` is system-wide), so a frame's ``t_s`` means the same
moment in the parent. The pipe copies each frame once (about 0.7 MB at 640 × 352); shared
memory would save that copy, at the price of slot management.
"""

import multiprocessing
import multiprocessing.connection
import threading
import time
from dataclasses import fields
from typing import Any

import numpy as np

from drivers.base import DeviceStatus
from drivers.camera import Camera, CameraSettings, diagnose, parse_source
from drivers.errors import DeviceError
from drivers.frame_ring import Frame, FrameRing
from drivers.readings import ReadingsQueue
from zhichao.settings import validate

STATUS_PERIOD_S = 0.2
"""How often the child sends its camera's status."""
STOP_JOIN_S = 2.0
"""How long a stopping child is waited for before it is killed."""
SPAWN = multiprocessing.get_context("spawn")


class ProcessCamera:
    """A :class:`~drivers.camera.Camera` in a child process, with the same interface.

    Examples
    --------
    >>> cam = ProcessCamera("lane1", CameraSettings(url="usb:0", offset_s=0.1))
    >>> cam.settings.offset_s, cam.get_status().extra["state"]
    (0.1, 'stopped')
    """

    match_at = Camera.match_at
    frame_at = Camera.frame_at

    def __init__(self, name: str, settings: CameraSettings) -> None:
        self.name = name
        self.settings = settings
        self.source = parse_source(settings.url, name)
        self.offset_s = settings.offset_s
        self.ring = FrameRing(settings.max_frames, settings.max_bytes, name=name)
        self._stop = threading.Event()
        self._readings: ReadingsQueue[dict[str, Any]] = ReadingsQueue(
            settings.max_readings, stop=self._stop)
        self._cond = threading.Condition()
        self._status = DeviceStatus(name, extra={"url": self.source.shown, "state": "stopped"})
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: multiprocessing.connection.Connection | None = None
        self._child_stop: Any = None
        self._receiver: threading.Thread | None = None
        self._frames = 0

    @classmethod
    def from_config(cls, name: str, section: dict[str, Any], source: str = "settings",
                    where: str | None = None) -> "ProcessCamera":
        """A process camera from its settings section (validated as for a Camera)."""
        return cls(name, validate(CameraSettings, section, source,
                                  prefix=where or f"cameras.{name}"))

    # -- Device protocol -------------------------------------------------------------

    def start(self) -> None:
        """Start the child process; its camera connects and reconnects there."""
        if self._process is not None and self._process.is_alive():
            return
        self._stop.clear()
        parent, child = SPAWN.Pipe(duplex=False)
        self._child_stop = SPAWN.Event()
        self._process = SPAWN.Process(
            target=_child_main, name=f"camera-{self.name}", daemon=True,
            args=(self.name, self.settings.model_dump(), child, self._child_stop))
        self._process.start()
        child.close()
        self._conn = parent
        self._receiver = threading.Thread(target=self._receive, daemon=True,
                                          name=f"camera-{self.name}-receiver")
        self._receiver.start()

    def stop(self) -> None:
        """Stop the child (killed if it does not end within ``STOP_JOIN_S``)."""
        self._stop.set()
        self._readings.wake()
        if self._child_stop is not None:
            self._child_stop.set()
        if self._process is not None:
            self._process.join(STOP_JOIN_S)
            if self._process.is_alive():
                self._process.kill()  # stuck in the backend: what a thread cannot do
                self._process.join(STOP_JOIN_S)
        if self._receiver is not None:
            self._receiver.join(STOP_JOIN_S)
        with self._cond:
            self._status.connected = False
            self._status.extra["state"] = "stopped"
            self._cond.notify_all()

    def readings(self, timeout_s: float = 0.0) -> list[dict[str, Any]]:
        """One small dict per frame since the last call, as :meth:`Camera.readings`."""
        return self._readings.get(timeout_s)

    def get_status(self) -> DeviceStatus:
        """The child camera's last status, with the parent's ring and the child's pid."""
        with self._cond:
            status = DeviceStatus(**{**self._status.as_dict()})
        status.extra.update({"ring_frames": len(self.ring), "ring_bytes": self.ring.nbytes,
                             "ring_span_s": self.ring.span_s,
                             "readings_dropped": self._readings.dropped,
                             "pid": self._process.pid if self._process else None})
        return status

    def diagnose(self, status: DeviceStatus | None = None, seconds: float | None = None
                 ) -> list[str]:
        """The camera's hints (see :func:`drivers.camera.diagnose`)."""
        status = status if status is not None else self.get_status()
        return diagnose(status, seconds if seconds is not None
                        else status.extra.get("running_s", 0.0))

    def wait_ready(self, timeout_s: float) -> None:
        """Wait for the first frame; ``DeviceError`` when the child reports a failed
        attempt first, or the time runs out."""
        with self._cond:
            self._cond.wait_for(lambda: self._frames > 0 or self._status.last_error
                                is not None or self._stop.is_set(), timeout_s)
            frames, error = self._frames, self._status.last_error
        if frames == 0:
            why = error if error else f"no frame within {timeout_s:g} s"
            raise DeviceError(f"Camera '{self.name}' ({self.source.shown}) is not ready: {why}")

    # -- the parent's receiver -------------------------------------------------------

    def _receive(self) -> None:
        """Take frames and statuses from the child until it ends or we stop."""
        conn = self._conn
        assert conn is not None
        try:
            while not self._stop.is_set():
                if not conn.poll(0.1):
                    continue
                message = conn.recv()
                if message[0] == "frame":
                    self._take_frame(message[1], conn.recv_bytes())
                else:
                    self._take_status(message[1])
        except (EOFError, OSError):
            pass  # the child ended (stopped or killed)
        finally:
            conn.close()

    def _take_frame(self, meta: dict[str, Any], data: bytes) -> None:
        """Rebuild the frame, put it in the ring and queue its reading."""
        image = np.frombuffer(data, np.uint8).reshape(meta["shape"])
        self.ring.push(Frame(image, meta["t_s"], meta["t_host_s"], meta["t_device_s"],
                             meta["index"]))
        self._readings.put({"camera": self.name, **meta, "shape": tuple(meta["shape"])})
        with self._cond:
            self._frames += 1
            self._cond.notify_all()

    def _take_status(self, status: dict[str, Any]) -> None:
        with self._cond:
            self._status = DeviceStatus(**status)
            self._cond.notify_all()


def _child_main(name: str, settings: dict[str, Any],
                conn: multiprocessing.connection.Connection, stop: Any) -> None:
    """The child process: run the camera, send each new frame and the status."""
    cam = Camera.from_settings(name, CameraSettings(**settings))
    cam.start()
    last_status = 0.0
    try:
        while not stop.is_set():
            for reading in cam.readings(timeout_s=0.05):
                _send_frame(cam, reading, conn)
            if time.monotonic() - last_status >= STATUS_PERIOD_S:
                conn.send(("status", _plain(cam.get_status())))
                last_status = time.monotonic()
    except (BrokenPipeError, OSError):
        pass  # the parent went away
    finally:
        cam.stop()
        conn.close()


def _send_frame(cam: Camera, reading: dict[str, Any],
                conn: multiprocessing.connection.Connection) -> None:
    """The frame of one reading, if the ring still holds it: its times, then its pixels."""
    try:
        match = cam.ring.find(reading["t_s"])
    except ValueError:
        return
    frame = getattr(match, "frame", None)
    if frame is None or frame.index != reading["index"]:
        return
    meta = {"index": frame.index, "t_s": frame.t_s, "t_host_s": frame.t_host_s,
            "t_device_s": frame.t_device_s, "shape": list(frame.image.shape)}
    conn.send(("frame", meta))
    conn.send_bytes(memoryview(np.ascontiguousarray(frame.image)).cast("B"))


def _plain(status: DeviceStatus) -> dict[str, Any]:
    """A status as the keyword arguments of :class:`DeviceStatus` (picklable)."""
    return {f.name: getattr(status, f.name) for f in fields(status)}
