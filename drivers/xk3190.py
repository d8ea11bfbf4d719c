"""Yaohua XK3190 indicators (A9, A12, DS...): the continuous output, ``tF = 0``.

The indicator sends its displayed weight over and over, 12 bytes a frame::

    byte   1     2      3..8           9          10..11           12
           STX   sign   six digits     decimals   XOR, 2 hex chars ETX
           0x02  + or - weight, MSD    0..4       high, low nibble 0x03

``decimals`` is the number of decimal places of the six digits; the checksum is the XOR
of bytes 2..9 (sign through decimals), each nibble sent as an ASCII hex digit 0-9A-F
(upper case), high nibble first. The weight is in the indicator's display unit: kg on
truck scales, or t when so set up (``unit_kg=1000``).

The frame carries no motion flag: :class:`drivers.scale.Stability` judges stability
from the last readings.
"""

from functools import partial
from typing import Any

from drivers.errors import ProtocolError
from drivers.framing import BAD, FRAME, NEED_MORE, Codec, Framer, Status, find_byte
from drivers.scale import ScaleReading, Stability

STX, ETX = 0x02, 0x03
FRAME_BYTES = 12
MAX_DECIMALS = 4
_DIGITS = b"0123456789"
_HEX = b"0123456789ABCDEF"
_ALLOWED = (bytes([STX]), b"+-", *([_DIGITS] * 6), b"01234", _HEX, _HEX, bytes([ETX]))
"""The bytes each position of a frame may hold."""


def xor_checksum(body: bytes) -> bytes:
    """XOR of ``body`` as two upper-case hex characters, high nibble first."""
    value = 0
    for byte in body:
        value ^= byte
    return f"{value:02X}".encode("ascii")


def encode_reading(counts: int, decimals: int = 0) -> bytes:
    """The frame of a display of ``counts`` (signed, at most six digits) with
    ``decimals`` places.

    Examples
    --------
    >>> encode_reading(-1234, decimals=1)
    b'\\x02-001234118\\x03'
    """
    if abs(counts) > 999_999 or not 0 <= decimals <= MAX_DECIMALS:
        raise ValueError(f"XK3190 shows six digits and 0..4 decimals "
                         f"(got {counts}, {decimals})")
    body = f"{'-' if counts < 0 else '+'}{abs(counts):06d}{decimals}".encode("ascii")
    return bytes([STX]) + body + xor_checksum(body) + bytes([ETX])


find_start = find_byte(STX)


def check(buf: bytes, start: int) -> tuple[Status, int]:
    """Each byte in its allowed set, then the checksum (see :mod:`drivers.framing`)."""
    frame = buf[start:start + FRAME_BYTES]
    for allowed, byte in zip(_ALLOWED, frame, strict=False):
        if byte not in allowed:
            return BAD, 0
    if len(frame) < FRAME_BYTES:
        return NEED_MORE, 0
    ok = xor_checksum(frame[1:9]) == frame[9:11]
    return (FRAME, FRAME_BYTES) if ok else (BAD, FRAME_BYTES)


def decode(frame: bytes, unit_kg: float = 1.0) -> ScaleReading:
    """The reading of one frame that passed :func:`check`; ``unit_kg`` is the display
    unit in kg (1 for kg, 1000 for t)."""
    if len(frame) != FRAME_BYTES:
        raise ProtocolError(f"xk3190: a frame is {FRAME_BYTES} bytes (got {len(frame)})")
    decimals = frame[8] - 0x30
    counts = int(frame[2:8]) * (-1 if frame[1] == ord("-") else 1)
    return ScaleReading(weight_kg=counts * unit_kg / 10**decimals,
                        resolution_kg=unit_kg / 10**decimals, motion=None,
                        protocol="xk3190")


CODEC: Codec[ScaleReading] = Codec("xk3190", find_start, check, decode, FRAME_BYTES)
"""The XK3190 continuous output in kg, for :class:`drivers.framing.Framer`."""


def make_codec(unit_kg: float = 1.0) -> Codec[ScaleReading]:
    """The codec for an indicator whose display unit is ``unit_kg`` kilograms."""
    if unit_kg <= 0:
        raise ValueError(f"unit_kg must be above 0 (got {unit_kg})")
    return Codec("xk3190", find_start, check, partial(decode, unit_kg=unit_kg), FRAME_BYTES)


def make_framer(unit_kg: float = 1.0, **stability: Any) -> Framer[ScaleReading]:
    """A framer that sets ``stable`` from a window of readings (options of
    :class:`drivers.scale.Stability`: ``count``, ``tolerance_divisions``, ``division_kg``).
    """
    return Framer(make_codec(unit_kg), stage=Stability(**stability).apply)
