"""Frames out of a byte stream: a generic framer over a codec of pure functions.

A codec answers two questions about a buffer, without state and without copying
(Klipper's ``msgproto.check_packet`` is the model):

``find_start(buf, start) -> int``
    the first index at or after ``start`` where a frame could begin; ``len(buf)`` when
    there is none. When the buffer ends in the middle of a multi-byte sync word, the index
    of that partial sync, so that it is kept for the next read.
``check(buf, start) -> (status, n)``
    about the candidate frame at ``start``: ``(NEED_MORE, 0)`` when more bytes are needed
    to decide; ``(FRAME, n)`` when ``buf[start:start + n]`` is a whole frame whose checksum
    holds; ``(BAD, n)`` when it is not a frame: ``n`` is the candidate's length when a
    whole candidate failed its checksum, 0 when it failed on its structure (a field that
    cannot be, a length out of range). ``check`` never asks for more than the codec's
    ``max_frame_bytes``, so the framer's buffer stays bounded.

The :class:`Framer` keeps the bytes of an unfinished frame between reads, skips garbage,
resynchronises on the next start after a bad frame (one byte on, so a frame that begins
inside the bad one is found), and counts. It never raises on input: a frame that passes
its checksum but not :func:`decode` (a :class:`~drivers.errors.ProtocolError`) counts as
a bad frame too, and the message is kept as ``last_error``.

Byte accounting holds at every moment: ``bytes_in == frame_bytes + garbage_bytes +
buffered`` — every byte received is either in a good frame, skipped, or still waiting.
"""

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Generic, TypeVar

from drivers.errors import ProtocolError

T = TypeVar("T")

BytesLike = bytes | bytearray | memoryview


class Status(IntEnum):
    """What :func:`check` says about the candidate frame at a position."""

    NEED_MORE = 0
    BAD = 1
    FRAME = 2


NEED_MORE, BAD, FRAME = Status.NEED_MORE, Status.BAD, Status.FRAME


@dataclass(frozen=True)
class Codec(Generic[T]):
    """The pure functions of one protocol, handed to a :class:`Framer`.

    ``byte_table``, when set, is applied to every byte received (``bytes.translate``)
    before framing: a 7-bit protocol read on an 8-bit link masks the parity bit with it.
    """

    name: str
    find_start: Callable[[bytes, int], int]
    check: Callable[[bytes, int], tuple[Status, int]]
    decode: Callable[[bytes], T]
    max_frame_bytes: int
    byte_table: bytes | None = None


MASK_7BIT = bytes(b & 0x7F for b in range(256))
"""``bytes.translate`` table clearing bit 7: a 7E1 device read by an 8N1 port delivers
its parity bit there."""


def find_byte(value: int) -> Callable[[bytes, int], int]:
    """A ``find_start`` for protocols whose frames begin with one byte ``value``."""
    mark = bytes([value])

    def find_start(buf: bytes, start: int) -> int:
        i = buf.find(mark, start)
        return len(buf) if i < 0 else i

    return find_start


def find_sync(sync: bytes) -> Callable[[bytes, int], int]:
    """A ``find_start`` for frames that begin with the multi-byte word ``sync``; a
    buffer that ends with the beginning of ``sync`` keeps that tail."""

    def find_start(buf: bytes, start: int) -> int:
        i = buf.find(sync, start)
        if i >= 0:
            return i
        for k in range(min(len(sync) - 1, len(buf) - start), 0, -1):
            if buf.endswith(sync[:k]):
                return len(buf) - k
        return len(buf)

    return find_start


class Framer(Generic[T]):
    """Turns chunks of bytes into decoded frames, whatever the chunks' boundaries.

    ``stage``, when given, is applied to each decoded frame in order (a stream stage
    with state of its own, such as a scale's stability window); it may return a new
    frame. The buffer holds at most ``max_buffer_bytes`` (default twice the codec's
    largest frame); anything older is dropped as garbage.

    Examples
    --------
    >>> from drivers.xk3190 import CODEC, encode_reading
    >>> framer = Framer(CODEC)
    >>> frame = encode_reading(12340, decimals=0)
    >>> [r.weight_kg for r in framer.feed(b"noise" + frame[:5])]
    []
    >>> [r.weight_kg for r in framer.feed(frame[5:] + frame)]
    [12340.0, 12340.0]
    >>> (framer.frames, framer.bad_frames, framer.garbage_bytes)
    (2, 0, 5)
    """

    def __init__(self, codec: Codec[T], *, stage: Callable[[T], T] | None = None,
                 max_buffer_bytes: int | None = None) -> None:
        self.codec = codec
        self.stage = stage
        self.max_buffer_bytes = max_buffer_bytes or 2 * codec.max_frame_bytes
        self._pending = b""
        self.frames = 0
        self.bad_frames = 0
        self.checksum_errors = 0
        self.garbage_bytes = 0
        self.frame_bytes = 0
        self.bytes_in = 0
        self.last_error: str | None = None

    @property
    def buffered(self) -> int:
        """Bytes held for a frame that is not complete yet."""
        return len(self._pending)

    def counts(self) -> dict[str, Any]:
        """The counters as a plain dict."""
        return {"frames": self.frames, "bad_frames": self.bad_frames,
                "checksum_errors": self.checksum_errors, "garbage_bytes": self.garbage_bytes,
                "frame_bytes": self.frame_bytes, "bytes_in": self.bytes_in,
                "buffered": self.buffered, "last_error": self.last_error}

    def feed(self, data: BytesLike) -> list[T]:
        """Decoded frames completed by ``data``, in order; never raises on bad input."""
        chunk = bytes(data)
        if self.codec.byte_table is not None:
            chunk = chunk.translate(self.codec.byte_table)
        self.bytes_in += len(chunk)
        buf = self._pending + chunk if self._pending else chunk
        out: list[T] = []
        pos = self._scan(buf, out)
        self._pending = buf[pos:]
        self._bound_buffer()
        return out

    def discard(self) -> None:
        """Forget a partly received frame (counted as garbage): after a lost connection
        its tail will never come."""
        self.garbage_bytes += len(self._pending)
        self._pending = b""

    def _scan(self, buf: bytes, out: list[T]) -> int:
        """Frames of ``buf`` appended to ``out``; the position where scanning stopped."""
        find_start, check, decode = self.codec.find_start, self.codec.check, self.codec.decode
        end, pos = len(buf), 0
        while True:
            start = find_start(buf, pos)
            self.garbage_bytes += start - pos
            pos = start
            if pos >= end:
                return pos
            status, n = check(buf, pos)
            if status == FRAME:
                try:
                    item = decode(buf[pos:pos + n])
                except ProtocolError as exc:
                    self._bad(str(exc))
                else:
                    self.frames += 1
                    self.frame_bytes += n
                    pos += n
                    out.append(self.stage(item) if self.stage is not None else item)
                    continue
            elif status == NEED_MORE:
                return pos
            else:
                self.checksum_errors += n > 0
                self._bad(f"{self.codec.name}: "
                          + (f"checksum failed on a {n}-byte frame" if n else
                             "bytes after a frame start are not a frame"))
            self.garbage_bytes += 1     # resynchronise one byte on
            pos += 1

    def _bad(self, reason: str) -> None:
        self.bad_frames += 1
        self.last_error = reason

    def _bound_buffer(self) -> None:
        """Drop the oldest bytes beyond ``max_buffer_bytes`` (counted as garbage)."""
        excess = len(self._pending) - self.max_buffer_bytes
        if excess > 0:
            self._pending = self._pending[excess:]
            self.garbage_bytes += excess
