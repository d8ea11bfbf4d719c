"""Raw sample frames of a strip-sensor digitiser: a binary format of our own, version 1.0.

The digitiser samples every channel at the site's ``fs_hz`` and sends blocks of samples
as frames (all integers little-endian; ``docs/protocols.md`` has the same table)::

    offset  size      field
    0       2         sync word 0xA5 0x5A
    2       1         version: major in the high nibble, minor in the low (0x10 = 1.0)
    3       4         sequence, u32, +1 per frame, wrapping at 2**32
    7       8         device time of the frame's first sample, µs, u64
    15      1         channel count c, u8, 1..255
    16      2         samples per channel n, u16, 1..65535 (c * n <= 65536)
    18      2         header CRC-16 over bytes 2..17
    20      2*c*n     samples, int16, interleaved by sample: s0c0 s0c1 ... s0c(c-1) s1c0 ...
    20+2cn  2         frame CRC-16 over bytes 2..(19 + 2cn): everything after the sync

CRC-16 is CRC-16/CCITT-FALSE (:mod:`drivers.crc`). The header has a CRC of its own so
that a corrupted length is rejected at once: otherwise the framer would wait for as many
bytes as the wrong length claims (up to 128 KiB) before the frame CRC could refuse it,
delaying every frame behind it. A minor version keeps the layout; an unknown major
version is refused by :func:`decode`, naming it.
"""

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from drivers.crc import crc16_ccitt_fast
from drivers.errors import ProtocolError
from drivers.framing import BAD, FRAME, NEED_MORE, Codec, Status, find_sync

SYNC = b"\xa5\x5a"
VERSION = 0x10
"""Version written by :func:`encode_frame`: 1.0."""
MAJOR_VERSION = 1
"""The major version this decoder reads."""
HEADER = struct.Struct("<BIQBHH")   # version, sequence, t_device_us, c, n, header CRC
HEADER_BYTES = len(SYNC) + HEADER.size  # 20
CRC_BYTES = 2
MAX_SAMPLES_PER_FRAME = 65536
"""Channels × samples per channel in one frame at most."""
MAX_FRAME_BYTES = HEADER_BYTES + 2 * MAX_SAMPLES_PER_FRAME + CRC_BYTES
SEQUENCE_MODULO = 2**32


@dataclass(frozen=True)
class SampleFrame:
    """One block of samples of every channel.

    ``samples`` is int16 ``counts``, shape ``(n_channels, n_samples)``, read-only (a
    view of the frame's bytes); ``t_device_us`` is the device clock at the first sample.
    """

    sequence: int
    t_device_us: int
    samples: np.ndarray
    version: int = VERSION
    t_host_s: float | None = None
    """Host monotonic time the frame's last byte was read: with ``t_device_us`` one point
    of the digitiser's clock against the host's."""

    @property
    def n_channels(self) -> int:
        """Channels in the frame."""
        return self.samples.shape[0]

    @property
    def n_samples(self) -> int:
        """Samples per channel in the frame."""
        return self.samples.shape[1]

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (the samples stay a numpy array)."""
        return {"kind": "samples", "sequence": self.sequence, "t_device_us": self.t_device_us,
                "version": self.version, "samples": self.samples, "t_host_s": self.t_host_s}


def encode_frame(samples: np.ndarray, sequence: int, t_device_us: int,
                 version: int = VERSION) -> bytes:
    """The bytes of one frame of ``samples`` (shape ``(channels, n)``, int16 counts).

    Examples
    --------
    >>> x = np.array([[1, 2, 3], [-1, -2, -3]], dtype=np.int16)
    >>> frame = encode_frame(x, sequence=7, t_device_us=1_000)
    >>> len(frame), frame[:2].hex(), frame[20:24].hex()
    (34, 'a55a', '0100ffff')
    >>> decode(frame).samples.tolist()
    [[1, 2, 3], [-1, -2, -3]]
    """
    x = np.asarray(samples)
    if x.ndim != 2 or x.dtype != np.int16:
        raise ValueError(f"samples must be 2-D int16 (channels, n), got {x.dtype} {x.shape}")
    c, n = x.shape
    if not (1 <= c <= 255 and 1 <= n <= 65535 and c * n <= MAX_SAMPLES_PER_FRAME):
        raise ValueError(f"a frame holds 1..255 channels of 1..65535 samples, at most "
                         f"{MAX_SAMPLES_PER_FRAME} in all (got {c} × {n})")
    fields = HEADER.pack(version, sequence % SEQUENCE_MODULO, t_device_us, c, n, 0)[:-2]
    head = fields + crc16_ccitt_fast(fields).to_bytes(2, "little")
    body = head + x.T.astype("<i2").tobytes()
    return SYNC + body + crc16_ccitt_fast(body).to_bytes(2, "little")


find_start = find_sync(SYNC)


def check(buf: bytes, start: int) -> tuple[Status, int]:
    """Whether ``buf[start:]`` begins with a whole frame whose CRCs hold (see
    :mod:`drivers.framing`)."""
    avail = len(buf) - start
    if buf[start:start + 2] != SYNC[:min(avail, 2)]:
        return BAD, 0
    if avail < HEADER_BYTES:
        return NEED_MORE, 0
    view = memoryview(buf)
    if crc16_ccitt_fast(view[start + 2:start + 18]) != int.from_bytes(
            buf[start + 18:start + 20], "little"):
        return BAD, 0
    c = buf[start + 15]
    n = buf[start + 16] | buf[start + 17] << 8
    if c == 0 or n == 0 or c * n > MAX_SAMPLES_PER_FRAME:
        return BAD, 0
    total = HEADER_BYTES + 2 * c * n + CRC_BYTES
    if avail < total:
        return NEED_MORE, 0
    end = start + total - CRC_BYTES
    if crc16_ccitt_fast(view[start + 2:end]) != (buf[end] | buf[end + 1] << 8):
        return BAD, total
    return FRAME, total


def decode(frame: bytes) -> SampleFrame:
    """The :class:`SampleFrame` of one whole frame that passed :func:`check`.

    Raises :class:`ProtocolError` for a major version other than 1 or a length that
    does not match the header.
    """
    version, sequence, t_us, c, n, _ = HEADER.unpack_from(frame, 2)
    if version >> 4 != MAJOR_VERSION:
        raise ProtocolError(
            f"digitiser frame {sequence}: version {version >> 4}.{version & 0xF} is unknown "
            f"(this driver reads major version {MAJOR_VERSION})")
    if len(frame) != HEADER_BYTES + 2 * c * n + CRC_BYTES:
        raise ProtocolError(f"digitiser frame {sequence}: {len(frame)} bytes, the header "
                            f"says {c} channels × {n} samples")
    samples = np.frombuffer(frame, dtype="<i2", count=c * n, offset=HEADER_BYTES)
    return SampleFrame(sequence, t_us, samples.reshape(n, c).T, version)


CODEC: Codec[SampleFrame] = Codec("digitiser", find_start, check, decode, MAX_FRAME_BYTES)
"""The digitiser protocol, for :class:`drivers.framing.Framer`."""


def missing_frames(previous: int | None, sequence: int) -> int:
    """Frames lost between two frames received in a row (0 when consecutive).

    Sequence numbers wrap at 2**32. A jump backwards (the digitiser restarted) is not a
    loss; it is reported as -1.

    Examples
    --------
    >>> missing_frames(41, 42), missing_frames(41, 45), missing_frames(2**32 - 1, 0)
    (0, 3, 0)
    >>> missing_frames(100, 3)
    -1
    """
    if previous is None:
        return 0
    gap = (sequence - previous - 1) % SEQUENCE_MODULO
    return -1 if gap >= SEQUENCE_MODULO // 2 else gap


class SequenceTracker:
    """Counts frames lost between the frames received, and digitiser restarts."""

    def __init__(self) -> None:
        self.previous: int | None = None
        self.lost_frames = 0
        self.gaps = 0
        self.restarts = 0

    def update(self, sequence: int) -> int:
        """Frames lost just before ``sequence`` (-1 when the digitiser restarted)."""
        missing = missing_frames(self.previous, sequence)
        self.previous = sequence
        if missing < 0:
            self.restarts += 1
        elif missing:
            self.gaps += 1
            self.lost_frames += missing
        return missing
