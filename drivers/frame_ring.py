"""A bounded ring of timestamped camera frames, so a trigger can pick the frame it needs.

The weighing loop learns that an axle crossed the first sensor row at host time ``t_s``
some milliseconds after the fact; by then the camera has moved on. Each camera therefore
keeps its last seconds of frames here, and :meth:`FrameRing.nearest` answers "which frame
shows the moment ``t_s``" — or says why none does (too old, not yet, a gap).

Times are host-monotonic seconds. A frame's time ``t_s`` comes from the device or stream
clock fitted onto the host clock by :class:`StreamClock` (Klipper's ``bulk_sensor.py``
idea: device clocks are steady, the arrival of bytes at the host is not), or is the
arrival time when the source gives no clock of its own.

One writer (the camera's reader thread) and any number of readers share a ring. Frames
are stored by reference, never copied: the writer hands over a fresh array per frame and
the ring marks it read-only, so a reader that wants to draw on an image copies it first.

Examples
--------
>>> import numpy as np
>>> ring = FrameRing(max_frames=3, max_bytes=10_000)
>>> for i in range(5):
...     ring.push(Frame(np.zeros((2, 2), np.uint8), t_s=float(i), t_host_s=float(i), index=i))
>>> len(ring), ring.oldest_s, ring.newest_s
(3, 2.0, 4.0)
>>> ring.nearest(3.2).frame.index, round(ring.nearest(3.2).dt_s, 3)
(3, -0.2)
>>> ring.find(0.5).reason, ring.find(9.0).reason
('too_old', 'not_yet')
"""

import threading
from collections import deque
from dataclasses import dataclass
from typing import Literal

import numpy as np

from zhichao.errors import ConfigError

MissReason = Literal["empty", "too_old", "not_yet", "gap"]


@dataclass(frozen=True)
class Frame:
    """One image and when it was taken.

    ``image`` is the array the capture produced (height × width × channels, uint8),
    read-only once in a ring. ``t_s`` is the host-monotonic time the image shows;
    ``t_host_s`` when the host received it; ``t_device_s`` the source's own clock
    (stream position for files, ``None`` when the source gives none); ``index`` counts
    frames since the camera started.
    """

    image: np.ndarray
    t_s: float
    t_host_s: float
    t_device_s: float | None = None
    index: int = 0

    @property
    def nbytes(self) -> int:
        """Memory held by the pixels."""
        return int(self.image.nbytes)


@dataclass(frozen=True)
class Match:
    """The frame nearest to the asked time; ``dt_s`` = frame time − asked time."""

    frame: Frame
    dt_s: float


@dataclass(frozen=True)
class Miss:
    """Why no frame shows the asked time, and what the ring covered then."""

    reason: MissReason
    t_s: float
    oldest_s: float | None = None
    newest_s: float | None = None
    nearest_dt_s: float | None = None

    def describe(self) -> str:
        """A sentence for a log or an error message."""
        if self.reason == "empty":
            return f"no frame at {self.t_s:.3f} s: the ring is empty"
        cover = f"the ring covers {self.oldest_s:.3f}..{self.newest_s:.3f} s"
        if self.reason == "too_old":
            return f"no frame at {self.t_s:.3f} s: too old, {cover}"
        if self.reason == "not_yet":
            return f"no frame at {self.t_s:.3f} s: not yet, {cover}"
        return (f"no frame at {self.t_s:.3f} s: gap in the stream, the nearest frame is "
                f"{self.nearest_dt_s:+.3f} s away ({cover})")


class FrameRing:
    """The last frames of one camera, bounded by a count and by bytes.

    ``max_frames`` caps the count and ``max_bytes`` the pixel memory; the oldest frames
    go first when either would be exceeded. Frames must arrive in time order.

    Every frame pushed out is counted in :attr:`dropped`, and in :attr:`dropped_for_bytes`
    when the byte bound pushed it out before the count bound was reached: then the ring
    spans fewer seconds than ``max_frames`` would (high-resolution frames), which a
    technician must know, since a vehicle weighed later than that span has no frame.
    """

    def __init__(self, max_frames: int = 250, max_bytes: int = 256 * 2**20,
                 name: str = "camera"):
        _check_above_zero(name, "max_frames", max_frames)
        _check_above_zero(name, "max_bytes", max_bytes)
        self.name = name
        self.max_frames = int(max_frames)
        self.max_bytes = int(max_bytes)
        self._frames: deque[Frame] = deque()
        self._times: deque[float] = deque()  # t_s of each frame, for the binary search
        self._nbytes = 0
        self._changed = threading.Condition(threading.Lock())
        self.dropped = 0
        """Frames pushed out, oldest first, by either bound."""
        self.dropped_for_bytes = 0
        """... of them by the byte bound, with fewer than ``max_frames`` frames held."""

    def push(self, frame: Frame) -> None:
        """Add the newest frame, dropping the oldest ones to stay within both bounds.

        Raises ``ConfigError`` when one frame alone is larger than ``max_bytes`` (the
        ring could never hold it) and ``ValueError`` when the frame is older than the
        newest one already held (a broken clock upstream).
        """
        if frame.nbytes > self.max_bytes:
            raise ConfigError(
                f"Option 'max_bytes' of camera '{self.name}' must hold one frame of "
                f"{frame.nbytes} bytes (shape {frame.image.shape}) (got {self.max_bytes})")
        frame.image.flags.writeable = False
        with self._changed:
            if self._times and frame.t_s < self._times[-1]:
                raise ValueError(f"frame {frame.index} of camera '{self.name}' at "
                                 f"{frame.t_s:.6f} s is older than the newest frame "
                                 f"({self._times[-1]:.6f} s): frames must come in time order")
            while self._frames and (len(self._frames) >= self.max_frames
                                    or self._nbytes + frame.nbytes > self.max_bytes):
                self.dropped_for_bytes += len(self._frames) < self.max_frames
                self.dropped += 1
                self._nbytes -= self._frames.popleft().nbytes
                self._times.popleft()
            self._frames.append(frame)
            self._times.append(frame.t_s)
            self._nbytes += frame.nbytes
            self._changed.notify_all()

    def find(self, t_s: float, offset_s: float = 0.0,
             max_dt_s: float | None = None) -> Match | Miss:
        """The frame nearest to ``t_s + offset_s``, or why there is none.

        ``offset_s`` is the camera's latency correction: a camera whose frames are
        stamped 0.2 s after the moment they show has ``offset_s = 0.2``. A frame counts
        when it lies within ``max_dt_s`` of the asked time; by default one mean frame
        interval of the ring (or exactly, for a ring of one frame).
        """
        t_want = t_s + offset_s
        with self._changed:
            if not self._frames:
                return Miss("empty", t_want)
            i = _nearest_index(self._times, t_want)
            frame = self._frames[i]
            oldest, newest = self._times[0], self._times[-1]
            limit = self._mean_interval_s() if max_dt_s is None else max_dt_s
        dt = frame.t_s - t_want
        if abs(dt) <= limit:
            return Match(frame, dt)
        reason: MissReason = ("too_old" if t_want < oldest
                              else "not_yet" if t_want > newest else "gap")
        return Miss(reason, t_want, oldest, newest, dt)

    def nearest(self, t_s: float, offset_s: float = 0.0,
                max_dt_s: float | None = None) -> Match | None:
        """:meth:`find`, with ``None`` when no frame shows the asked time."""
        found = self.find(t_s, offset_s, max_dt_s)
        return found if isinstance(found, Match) else None

    def wait_newer(self, t_s: float, timeout_s: float) -> bool:
        """Wait until a frame at or after ``t_s`` is held; False at the timeout."""
        with self._changed:
            return self._changed.wait_for(
                lambda: bool(self._times) and self._times[-1] >= t_s, timeout_s)

    def frames(self) -> list[Frame]:
        """The frames held now, oldest first (references, not copies)."""
        with self._changed:
            return list(self._frames)

    def clear(self) -> None:
        """Forget every frame."""
        with self._changed:
            self._frames.clear()
            self._times.clear()
            self._nbytes = 0

    def __len__(self) -> int:
        with self._changed:
            return len(self._frames)

    @property
    def nbytes(self) -> int:
        """Pixel memory held now."""
        with self._changed:
            return self._nbytes

    @property
    def oldest_s(self) -> float | None:
        """Time of the oldest frame held."""
        with self._changed:
            return self._times[0] if self._times else None

    @property
    def newest_s(self) -> float | None:
        """Time of the newest frame held."""
        with self._changed:
            return self._times[-1] if self._times else None

    @property
    def span_s(self) -> float:
        """Seconds between the oldest and the newest frame held (0 when fewer than two)."""
        with self._changed:
            return self._times[-1] - self._times[0] if len(self._times) > 1 else 0.0

    def _mean_interval_s(self) -> float:
        """Mean spacing of the frames held (caller holds the lock)."""
        n = len(self._times)
        return (self._times[-1] - self._times[0]) / (n - 1) if n > 1 else 0.0


def _nearest_index(times: deque[float], t_s: float) -> int:
    """Index of the time nearest to ``t_s`` in sorted ``times`` (binary search).

    A deque indexes in O(1) near its ends and O(n/64) inside, cheap for rings of a few
    hundred frames; the search touches only log2(n) entries.
    """
    lo, hi = 0, len(times)
    while lo < hi:
        mid = (lo + hi) // 2
        if times[mid] < t_s:
            lo = mid + 1
        else:
            hi = mid
    if lo == 0:
        return 0
    if lo == len(times):
        return lo - 1
    return lo if times[lo] - t_s < t_s - times[lo - 1] else lo - 1


class StreamClock:
    """Maps a source's own clock onto host time: ``t_host ≈ t_device + offset``.

    A frame reaches the host some variable time after the moment it shows (encoding,
    network, decoding, scheduling). The smallest ``t_host − t_device`` seen over the last
    ``window`` frames is the best estimate of the fixed part of that delay (the
    minimum-delay filter of NTP), so the mapped times keep the device's even spacing
    without the host's jitter; the window slides, so slow drift between the clocks is
    followed. A device clock that goes backwards (a file looping, a reconnection) or
    falls behind by more than ``max_lag_s`` (a stall) restarts the fit. Mapped times never
    decrease, and a frame without a device time keeps its arrival time.

    Examples
    --------
    >>> clock = StreamClock()
    >>> [round(clock.to_host(d, h), 3) for d, h in [(0.0, 10.03), (0.1, 10.11), (0.2, 10.25)]]
    [10.03, 10.11, 10.21]
    """

    def __init__(self, window: int = 128, max_lag_s: float = 0.5):
        self.window = window
        self.max_lag_s = max_lag_s
        self._offsets: deque[float] = deque(maxlen=window)
        self._last_device_s: float | None = None
        self._last_out_s = float("-inf")

    def reset(self) -> None:
        """Forget the fit (a new connection has a new clock)."""
        self._offsets.clear()
        self._last_device_s = None

    def to_host(self, t_device_s: float | None, t_host_s: float) -> float:
        """Host time of a frame with device time ``t_device_s`` received at ``t_host_s``."""
        if t_device_s is None:
            return self._monotonic(t_host_s)
        offset = t_host_s - t_device_s
        backwards = self._last_device_s is not None and t_device_s <= self._last_device_s
        if backwards or (self._offsets and offset - min(self._offsets) > self.max_lag_s):
            self._offsets.clear()
        self._offsets.append(offset)
        self._last_device_s = t_device_s
        return self._monotonic(t_device_s + min(self._offsets))

    def _monotonic(self, t_s: float) -> float:
        """Never step back: a new minimum offset must not reorder frames already out."""
        self._last_out_s = max(t_s, self._last_out_s + 1e-6)
        return self._last_out_s


def _check_above_zero(name: str, option: str, value: float) -> None:
    """Klipper-style settings check, naming the camera, the option and the value."""
    if not value > 0:
        raise ConfigError(f"Option '{option}' of camera '{name}' must be above 0 (got {value})")
