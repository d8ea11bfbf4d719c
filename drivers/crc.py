"""CRC-16/CCITT-FALSE: the check of the digitiser's raw sample frames.

Parameters (Rocksoft model, as catalogued by Greg Cook's "CRC RevEng" list): width 16,
poly 0x1021, init 0xFFFF, not reflected in or out, xorout 0x0000, check 0x29B1.

:func:`crc16_ccitt` is the plain table-driven reference in Python; :func:`crc16_ccitt_fast`
is the same function computed in C by :func:`binascii.crc_hqx` (which is exactly this
CRC when started from 0xFFFF). The frame parser uses the fast one: in Python the table
loop costs about 0.1 µs a byte, which alone would hold a 4-lane site's raw stream to a
few times real time. The tests check that both agree on any input.
"""

import binascii

Buffer = bytes | bytearray | memoryview
"""What the CRC functions read (``collections.abc.Buffer`` arrives only in Python 3.12)."""

CRC16_INIT = 0xFFFF
CRC16_POLY = 0x1021


def _table(poly: int) -> tuple[int, ...]:
    """The 256 remainders of ``byte << 8`` for a non-reflected 16-bit CRC of ``poly``."""
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ poly) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return tuple(table)


CRC16_TABLE: tuple[int, ...] = _table(CRC16_POLY)
"""Remainder of each high byte, so one table look-up replaces eight shift steps."""


def crc16_ccitt(data: Buffer, crc: int = CRC16_INIT) -> int:
    """CRC-16/CCITT-FALSE of ``data``, continuing from ``crc`` (the reference version).

    Examples
    --------
    >>> hex(crc16_ccitt(b"123456789"))
    '0x29b1'
    >>> crc16_ccitt(b"6789", crc16_ccitt(b"12345")) == crc16_ccitt(b"123456789")
    True
    """
    table = CRC16_TABLE
    for byte in memoryview(data).cast("B"):
        crc = ((crc << 8) & 0xFF00) ^ table[(crc >> 8) ^ byte]
    return crc


def crc16_ccitt_fast(data: Buffer, crc: int = CRC16_INIT) -> int:
    """The same CRC computed in C (``binascii.crc_hqx``), for the hot path.

    Examples
    --------
    >>> hex(crc16_ccitt_fast(b"123456789"))
    '0x29b1'
    """
    return binascii.crc_hqx(data, crc)
