"""Mettler Toledo continuous output (the "Toledo" format many indicators also offer).

18 bytes a frame, 7-bit characters (links often run 7E1; the codec masks bit 7 so an
8N1 port that delivers the parity bit there reads the same)::

    byte  1    2    3    4    5..10           11..16        17   18
          STX  SWA  SWB  SWC  displayed weight tare weight  CR   CHK
          0x02                six digits, no sign or point         0x0D

``CHK`` is the two's complement of the 7-bit sum of bytes 1..17 (STX and CR included),
so the 7-bit sum of all 18 bytes is 0.

Status word A: bits 0-2 where the decimal point is (code 0 ``XXXX00``, 1 ``XXXXX0``,
2 ``XXXXXX``, 3 ``XXXXX.X`` ... 7 ``X.XXXXX``: the weight is the digits × 10**(2 - code));
bits 3-4 the increment size (1: ×1, 2: ×2, 3: ×5); bit 5 always 1, bit 6 always 0.

Status word B: bit 0 net (1) or gross (0); bit 1 sign (1 = negative); bit 2 out of range;
bit 3 motion; bit 4 unit, 1 = kg, 0 = lb (when SWC bits 0-2 are 0); bit 5 always 1;
bit 6 not zeroed since power-up.

Status word C: bits 0-2 unit code (0: lb or kg as SWB bit 4 says, 1: grams,
2: metric tonnes — other codes, ounces and custom units, are refused); bit 3 print
request; bit 4 expanded display (×10); bit 5 always 1. ``docs/protocols.md`` lists which
of these bits were confirmed against manuals and which are not.
"""

from dataclasses import dataclass
from typing import Any

from drivers.errors import ProtocolError
from drivers.framing import (
    BAD,
    FRAME,
    MASK_7BIT,
    NEED_MORE,
    Codec,
    Framer,
    Status,
    find_byte,
)
from drivers.scale import ScaleReading, Stability

STX, CR = 0x02, 0x0D
FRAME_BYTES = 18
LB_KG = 0.45359237
"""One international avoirdupois pound in kg (exact by definition, 1959)."""
INCREMENTS = {1: 1, 2: 2, 3: 5}
"""SWA bits 3-4 → increment size."""
UNIT_CODES: dict[int, tuple[str, float]] = {1: ("g", 0.001), 2: ("t", 1000.0)}
"""SWC bits 0-2 (other than 0) → unit name and kg per unit."""
_DIGITS = b"0123456789"


@dataclass(frozen=True)
class ToledoStatus:
    """The three status words, decoded."""

    decimal_code: int = 2     # SWA bits 0-2: weight = digits × 10**(2 - decimal_code)
    increment_code: int = 1   # SWA bits 3-4
    net: bool = False
    negative: bool = False
    out_of_range: bool = False
    motion: bool = False
    kg: bool = True           # SWB bit 4
    not_zeroed: bool = False  # SWB bit 6
    unit_code: int = 0        # SWC bits 0-2
    print_request: bool = False
    expanded: bool = False

    def words(self) -> bytes:
        """SWA, SWB, SWC as sent."""
        swa = 0x20 | self.decimal_code | self.increment_code << 3
        swb = (0x20 | self.net | self.negative << 1 | self.out_of_range << 2
               | self.motion << 3 | self.kg << 4 | self.not_zeroed << 6)
        swc = 0x20 | self.unit_code | self.print_request << 3 | self.expanded << 4
        return bytes([swa, swb, swc])

    @classmethod
    def from_words(cls, swa: int, swb: int, swc: int) -> "ToledoStatus":
        """The status of the three words as received (7-bit)."""
        return cls(decimal_code=swa & 7, increment_code=swa >> 3 & 3, net=bool(swb & 1),
                   negative=bool(swb & 2), out_of_range=bool(swb & 4), motion=bool(swb & 8),
                   kg=bool(swb & 16), not_zeroed=bool(swb & 64), unit_code=swc & 7,
                   print_request=bool(swc & 8), expanded=bool(swc & 16))


def checksum(body: bytes) -> int:
    """The byte that brings the 7-bit sum of ``body`` and itself to 0."""
    return -sum(body) & 0x7F


def encode_frame(weight_digits: int, tare_digits: int = 0,
                 status: ToledoStatus | None = None) -> bytes:
    """The frame of a display of ``weight_digits`` (no sign, at most six digits).

    Examples
    --------
    >>> frame = encode_frame(12340, 0, ToledoStatus(motion=True))
    >>> frame
    b'\\x02*8 012340000000\\r%'
    >>> sum(frame) % 128
    0
    """
    if not (0 <= weight_digits <= 999_999 and 0 <= tare_digits <= 999_999):
        raise ValueError(f"weight and tare are six unsigned digits "
                         f"(got {weight_digits}, {tare_digits})")
    body = (bytes([STX]) + (status or ToledoStatus()).words()
            + f"{weight_digits:06d}{tare_digits:06d}".encode("ascii") + bytes([CR]))
    return body + bytes([checksum(body)])


def encode_reading(weight_kg: float, *, decimals: int = 0, motion: bool = False,
                   tare_kg: float = 0.0) -> bytes:
    """A gross (or net, when ``tare_kg``) display in kg with ``decimals`` places
    (-2..5; -1 shows ``XXXXX0``)."""
    code = decimals + 2
    digits = round(abs(weight_kg) * 10**decimals)
    status = ToledoStatus(decimal_code=code, motion=motion, negative=weight_kg < 0,
                          net=tare_kg != 0)
    return encode_frame(digits, round(tare_kg * 10**decimals), status)


find_start = find_byte(STX)


def check(buf: bytes, start: int) -> tuple[Status, int]:
    """Structure (STX, SWA bits 5-6, digits, CR), then the checksum (see
    :mod:`drivers.framing`). ``buf`` is already masked to 7 bits by the framer."""
    frame = buf[start:start + FRAME_BYTES]
    n = len(frame)
    if n == 0:
        return NEED_MORE, 0
    if frame[0] != STX or (n > 1 and frame[1] & 0x60 != 0x20):
        return BAD, 0
    digits = frame[4:16]
    if digits.lstrip(_DIGITS):
        return BAD, 0
    if n < FRAME_BYTES:
        return NEED_MORE, 0
    if frame[16] != CR:
        return BAD, 0
    return (FRAME, FRAME_BYTES) if sum(frame) & 0x7F == 0 else (BAD, FRAME_BYTES)


def _unit(s: ToledoStatus) -> tuple[str, float]:
    """Unit name and kg per unit from SWB bit 4 and SWC bits 0-2."""
    if s.unit_code == 0:
        return ("kg", 1.0) if s.kg else ("lb", LB_KG)
    if s.unit_code not in UNIT_CODES:
        raise ProtocolError(f"toledo: SWC unit code {s.unit_code} (ounces, pennyweight, "
                            f"long tons or custom) is not a truck weight; set the "
                            f"indicator to kg, lb, g or t")
    return UNIT_CODES[s.unit_code]


def _kg(digits: int, unit_kg: float, decimal_code: int) -> float:
    """``digits`` shown with ``decimal_code``, in kg (dividing, so 0.1 steps are exact
    decimals: 123 with one decimal is 12.3, not 123 * 0.1)."""
    if decimal_code <= 2:
        return digits * unit_kg * 10 ** (2 - decimal_code)
    return digits * unit_kg / 10 ** (decimal_code - 2)


def decode(frame: bytes) -> ScaleReading:
    """The reading of one frame that passed :func:`check`, in kg."""
    s = ToledoStatus.from_words(frame[1], frame[2], frame[3])
    if s.increment_code not in INCREMENTS:
        raise ProtocolError(f"toledo: SWA increment code {s.increment_code} is not "
                            f"defined (1: ×1, 2: ×2, 3: ×5)")
    unit, unit_kg = _unit(s)
    weight_kg = _kg(int(frame[4:10]), unit_kg, s.decimal_code)
    return ScaleReading(weight_kg=-weight_kg if s.negative else weight_kg,
                        tare_kg=_kg(int(frame[10:16]), unit_kg, s.decimal_code),
                        resolution_kg=_kg(INCREMENTS[s.increment_code], unit_kg,
                                          s.decimal_code),
                        motion=s.motion, net=s.net, out_of_range=s.out_of_range, unit=unit,
                        protocol="toledo")


CODEC: Codec[ScaleReading] = Codec("toledo", find_start, check, decode, FRAME_BYTES,
                                   byte_table=MASK_7BIT)
"""The Toledo continuous output, for :class:`drivers.framing.Framer`."""


def make_framer(**stability: Any) -> Framer[ScaleReading]:
    """A framer that sets ``stable`` from the motion bit (through
    :class:`drivers.scale.Stability`, which also takes ``count`` etc.)."""
    return Framer(CODEC, stage=Stability(**stability).apply)
