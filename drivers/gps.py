"""Time from a GPS (or BeiDou) receiver: NMEA 0183 ``RMC`` and ``ZDA`` sentences.

A receiver sends, once a second, lines of printable ASCII::

    $GPRMC,083012.00,A,3954.1234,N,11623.4567,E,0.0,0.0,010526,,,A*XX\\r\\n
    $GPZDA,083012.00,01,05,2026,00,00*XX\\r\\n

(talker ``GP``, ``GN``, ``BD``, ``GB``... any two letters). ``XX`` is the XOR of the bytes
between ``$`` and ``*`` (NMEA 0183 §5.3, as in :func:`drivers.wim_records.nmea_checksum`).
RMC gives time, status ``A`` (valid fix) or ``V`` (warning) and the date ``ddmmyy``; ZDA
gives time and a four-digit year but no fix status, so a ZDA is usable only while a
recent RMC says ``A`` (the timebase's rule). Other sentences (GGA, GSV...) whose
checksum holds are passed on as ``kind: "nmea"`` readings and otherwise ignored; a bad
checksum or a malformed RMC/ZDA is a bad frame with its reason, never an exception out
of the reader.

Each reading carries ``t_host_s``, the host monotonic time when its line was received:
stamped by the framer's stage right after the read that completed the line. Without a
PPS line, a sentence arrives some time after the second it names (the receiver computes,
then sends at the baud rate): that latency window bounds the accuracy of GPS time, not
the clock of the receiver. A PPS edge marks the second itself; capturing it is up to the
host (a kernel PPS source) and is not read by this driver.
"""

import re
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from drivers.errors import ProtocolError
from drivers.framing import BAD, FRAME, NEED_MORE, Codec, Framer, Status, find_byte
from drivers.wim_records import nmea_checksum

MAX_SENTENCE_BYTES = 82
"""NMEA 0183 limits a sentence to 82 characters, ``$`` to ``\\n``; a little is allowed
beyond it for receivers that overrun (proprietary sentences)."""
MAX_LINE_BYTES = 128
_HEX = b"0123456789ABCDEF"
_TIME = re.compile(r"(\d\d)(\d\d)(\d\d)(\.\d{1,6})?\Z")
_ADDRESS = re.compile(r"[A-Z]{2}[A-Z]{3}\Z|P[A-Z0-9]{1,8}\Z")


@dataclass(frozen=True)
class GpsReading:
    """A time sentence: ``sentence`` RMC or ZDA, ``utc`` the second (and fraction) it
    names, ``valid`` the RMC status A (for ZDA: its fields were complete),
    ``t_host_s`` host monotonic time of receipt."""

    sentence: str
    utc: datetime
    valid: bool
    talker: str = "GP"
    t_host_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": "gps", "sentence", "utc", "valid", "t_host_s"}``."""
        return {"kind": "gps", "sentence": self.sentence, "utc": self.utc,
                "valid": self.valid, "talker": self.talker, "t_host_s": self.t_host_s}


@dataclass(frozen=True)
class OtherSentence:
    """A well-formed sentence this driver does not read (GGA, GSV...)."""

    address: str
    t_host_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": "nmea", "sentence": address, "t_host_s"}``."""
        return {"kind": "nmea", "sentence": self.address, "t_host_s": self.t_host_s}


def encode_sentence(fields: list[str]) -> bytes:
    """``$`` + comma-joined fields + ``*XX\\r\\n``.

    Examples
    --------
    >>> encode_sentence(["GPZDA", "083012.00", "01", "05", "2026", "00", "00"])
    b'$GPZDA,083012.00,01,05,2026,00,00*6C\\r\\n'
    """
    payload = ",".join(fields).encode("ascii")
    return b"$" + payload + f"*{nmea_checksum(payload):02X}\r\n".encode("ascii")


def rmc(utc: datetime, valid: bool = True, talker: str = "GP") -> bytes:
    """The RMC sentence of ``utc`` (position fixed at an example point)."""
    t = utc.astimezone(UTC)
    return encode_sentence([f"{talker}RMC", _hhmmss(t), "A" if valid else "V",
                            "3954.1234", "N", "11623.4567", "E", "0.0", "0.0",
                            t.strftime("%d%m%y"), "", "", "A" if valid else "N"])


def zda(utc: datetime, talker: str = "GP") -> bytes:
    """The ZDA sentence of ``utc`` (local zone 00:00)."""
    t = utc.astimezone(UTC)
    return encode_sentence([f"{talker}ZDA", _hhmmss(t), f"{t.day:02d}", f"{t.month:02d}",
                            f"{t.year:04d}", "00", "00"])


def _hhmmss(t: datetime) -> str:
    """``hhmmss.ss`` of ``t``, hundredths truncated as receivers do."""
    return f"{t:%H%M%S}.{t.microsecond // 10_000:02d}"


find_start = find_byte(ord("$"))


def check(buf: bytes, start: int) -> tuple[Status, int]:
    """A whole printable line ``$...*XX\\r\\n`` whose checksum holds, or why not (see
    :mod:`drivers.framing`)."""
    end = buf.find(b"\n", start)
    stop = end if end >= 0 else len(buf)
    if buf.find(b"$", start + 1, stop) >= 0 or stop - start > MAX_LINE_BYTES:
        return BAD, 0     # another sentence starts before this one ended, or too long
    if end < 0:
        return NEED_MORE, 0
    line = buf[start:end + 1]
    n = len(line)
    if n < 6 or line[-2] != 0x0D or line[-5] != 0x2A:      # \r and *
        return BAD, 0
    payload, digits = line[1:-5], line[-4:-2]
    if not all(0x20 <= b < 0x7F for b in payload):
        return BAD, 0
    if digits[0] not in _HEX or digits[1] not in _HEX:
        return BAD, 0
    return (FRAME, n) if nmea_checksum(payload) == int(digits, 16) else (BAD, n)


def decode(line: bytes) -> GpsReading | OtherSentence:
    """The reading of one line that passed :func:`check`; a malformed RMC or ZDA is a
    :class:`ProtocolError` naming the field and the text."""
    fields = line[1:-5].decode("ascii").split(",")
    address = fields[0]
    if not _ADDRESS.match(address):
        raise ProtocolError(f"nmea: sentence address {address!r} is not a talker and type")
    kind = address[2:]
    if kind == "RMC":
        return _decode_rmc(address, fields[1:])
    if kind == "ZDA":
        return _decode_zda(address, fields[1:])
    return OtherSentence(address)


def _decode_rmc(address: str, f: list[str]) -> GpsReading:
    """RMC: time, status A/V, ..., date ddmmyy (field 9)."""
    if len(f) < 9:
        raise ProtocolError(f"nmea: {address} has {len(f)} fields, at least 9 expected")
    if f[1] not in ("A", "V"):
        raise ProtocolError(f"nmea: {address} field 'status' must be A or V (got {f[1]!r})")
    date = f[8]
    if not re.fullmatch(r"\d{6}", date):
        raise ProtocolError(f"nmea: {address} field 'date' must be ddmmyy (got {date!r})")
    day, month, yy = int(date[:2]), int(date[2:4]), int(date[4:])
    utc = _utc(address, f[0], day, month, 2000 + yy)
    return GpsReading("RMC", utc, f[1] == "A", address[:2])


def _decode_zda(address: str, f: list[str]) -> GpsReading:
    """ZDA: time, day, month, year (four digits), zone hours and minutes."""
    if len(f) < 4:
        raise ProtocolError(f"nmea: {address} has {len(f)} fields, at least 4 expected")
    for name, text, digits in (("day", f[1], 2), ("month", f[2], 2), ("year", f[3], 4)):
        if not re.fullmatch(rf"\d{{{digits}}}", text):
            raise ProtocolError(f"nmea: {address} field {name!r} must be {digits} digits "
                                f"(got {text!r})")
    utc = _utc(address, f[0], int(f[1]), int(f[2]), int(f[3]))
    return GpsReading("ZDA", utc, True, address[:2])


def _utc(address: str, hhmmss: str, day: int, month: int, year: int) -> datetime:
    """Aware UTC of the fields; a leap second (60) or an impossible date is refused."""
    m = _TIME.match(hhmmss)
    if m is None:
        raise ProtocolError(f"nmea: {address} field 'time' must be hhmmss[.ss] "
                            f"(got {hhmmss!r})")
    hh, mm, ss = int(m[1]), int(m[2]), int(m[3])
    frac = float(m[4]) if m[4] else 0.0
    if ss == 60:
        raise ProtocolError(f"nmea: {address} names leap second {hhmmss!r}: skipped "
                            f"(a second 60 cannot be stored)")
    try:
        t = datetime(year, month, day, hh, mm, ss, tzinfo=UTC)
    except ValueError as exc:
        raise ProtocolError(f"nmea: {address} time {hhmmss} date {day:02d}.{month:02d}."
                            f"{year} is not a valid UTC time: {exc}") from None
    return t + timedelta(seconds=frac)


CODEC: Codec[GpsReading | OtherSentence] = Codec("nmea", find_start, check, decode,
                                                 MAX_LINE_BYTES)
"""NMEA 0183 time sentences, for :class:`drivers.framing.Framer`."""


def stamp(item: GpsReading | OtherSentence) -> GpsReading | OtherSentence:
    """The item with its receipt time: the framer runs this right after the read that
    completed the line."""
    return replace(item, t_host_s=time.monotonic())


def make_framer() -> Framer[GpsReading | OtherSentence]:
    """A framer of NMEA sentences, each stamped with its host monotonic receipt time."""
    return Framer(CODEC, stage=stamp)
