"""The host clock's NTP state as the kernel keeps it, read with ``adjtimex(2)``.

A time daemon (chrony, ntpd, systemd-timesyncd) disciplines the kernel clock and tells
the kernel how good it is: ``STA_UNSYNC`` clear once synchronised, ``maxerror`` the
bound on the clock's error, which the kernel itself grows by 500 ppm each second no
daemon updates it (and sets ``STA_UNSYNC`` when it reaches 16 s). The call is made
read-only (``modes = 0``), so it needs no privilege and changes nothing.

:func:`read_kernel_clock` returns a :class:`KernelClock`; :func:`kernel_state` is the pure
mapping from such a reading, plus what the unit remembers of its last sync, to a
:class:`ClockState` (``synced``, ``holdover`` or ``free_running`` with a bound in ms).
"""

import ctypes
import ctypes.util
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from edge.timebase.settings import TimeSettings

# Return values of adjtimex (the clock state), <sys/timex.h>
TIME_OK, TIME_INS, TIME_DEL, TIME_OOP, TIME_WAIT, TIME_ERROR = range(6)
STATE_NAMES = {TIME_OK: "TIME_OK", TIME_INS: "TIME_INS", TIME_DEL: "TIME_DEL",
               TIME_OOP: "TIME_OOP", TIME_WAIT: "TIME_WAIT", TIME_ERROR: "TIME_ERROR"}

# timex.status bits, <linux/timex.h>
STA_PLL, STA_PPSFREQ, STA_PPSTIME, STA_FLL = 0x0001, 0x0002, 0x0004, 0x0008
STA_INS, STA_DEL, STA_UNSYNC, STA_FREQHOLD = 0x0010, 0x0020, 0x0040, 0x0080
STA_PPSSIGNAL, STA_PPSJITTER, STA_PPSWANDER, STA_PPSERROR = 0x0100, 0x0200, 0x0400, 0x0800
STA_CLOCKERR, STA_NANO, STA_MODE, STA_CLK = 0x1000, 0x2000, 0x4000, 0x8000
FLAG_NAMES = {STA_PLL: "STA_PLL", STA_PPSFREQ: "STA_PPSFREQ", STA_PPSTIME: "STA_PPSTIME",
              STA_FLL: "STA_FLL", STA_INS: "STA_INS", STA_DEL: "STA_DEL",
              STA_UNSYNC: "STA_UNSYNC", STA_FREQHOLD: "STA_FREQHOLD",
              STA_PPSSIGNAL: "STA_PPSSIGNAL", STA_PPSJITTER: "STA_PPSJITTER",
              STA_PPSWANDER: "STA_PPSWANDER", STA_PPSERROR: "STA_PPSERROR",
              STA_CLOCKERR: "STA_CLOCKERR", STA_NANO: "STA_NANO", STA_MODE: "STA_MODE",
              STA_CLK: "STA_CLK"}
FREQ_SCALE = 65536.0
"""``timex.freq`` and ``tolerance`` are ppm with 16 fractional bits."""

Status = Literal["synced", "holdover", "free_running"]
Source = Literal["kernel", "gps", "none"]


class _Timeval(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long))


class _Timex(ctypes.Structure):
    """``struct timex`` of <linux/timex.h> (208 bytes on 64-bit Linux; ctypes adds the
    padding between ``int`` and ``long`` members as the C compiler does)."""

    _fields_ = (("modes", ctypes.c_uint), ("offset", ctypes.c_long),
                ("freq", ctypes.c_long), ("maxerror", ctypes.c_long),
                ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                ("constant", ctypes.c_long), ("precision", ctypes.c_long),
                ("tolerance", ctypes.c_long), ("time", _Timeval), ("tick", ctypes.c_long),
                ("ppsfreq", ctypes.c_long), ("jitter", ctypes.c_long),
                ("shift", ctypes.c_int), ("stabil", ctypes.c_long),
                ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long),
                ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long),
                ("tai", ctypes.c_int), ("_reserved", ctypes.c_int * 11))


@dataclass(frozen=True)
class KernelClock:
    """One reading of the kernel's clock discipline.

    ``state`` is adjtimex's return value (``TIME_OK`` ... ``TIME_ERROR``);
    ``status_flags`` the ``STA_*`` bits; ``maxerror_us`` / ``esterror_us`` the kernel's
    maximum and estimated error; ``offset_us`` the remaining phase offset the daemon
    asked to slew; ``freq_ppm`` the frequency correction in force; ``tolerance_ppm``
    the kernel's frequency tolerance.
    """

    state: int
    status_flags: int
    maxerror_us: int
    esterror_us: int
    offset_us: float
    freq_ppm: float
    tolerance_ppm: float = 500.0
    tai_s: int = 0

    @property
    def unsynchronised(self) -> bool:
        """STA_UNSYNC is set: no daemon vouches for this clock."""
        return bool(self.status_flags & STA_UNSYNC)

    @property
    def state_name(self) -> str:
        """``TIME_OK`` and so on."""
        return STATE_NAMES.get(self.state, f"state {self.state}")

    def flag_names(self) -> list[str]:
        """The set ``STA_*`` flags by name."""
        return [name for bit, name in FLAG_NAMES.items() if self.status_flags & bit]

    def to_dict(self) -> dict[str, object]:
        """A plain dict, for the evidence trail and for recording a reading."""
        return {"state": self.state_name, "flags": self.flag_names(),
                "maxerror_us": self.maxerror_us, "esterror_us": self.esterror_us,
                "offset_us": self.offset_us, "freq_ppm": self.freq_ppm}


@dataclass(frozen=True)
class ClockState:
    """How far a capture time can be trusted.

    ``status``: ``synced`` (a source vouches for the clock now), ``holdover`` (it did,
    ``since`` then; the bound has grown with the assumed drift) or ``free_running``
    (no bound can be vouched for: ``uncertainty_ms`` is then ``inf``).
    ``source``: ``kernel``, ``gps`` or ``none``. ``since``: for ``synced`` the time of
    this judgement, otherwise the last moment a source vouched for the clock (None when
    never).
    """

    status: Status
    uncertainty_ms: float
    source: Source
    since: datetime | None = None

    def to_dict(self) -> dict[str, object]:
        """A plain dict for the evidence packet."""
        return {"status": self.status, "uncertainty_ms": self.uncertainty_ms,
                "source": self.source,
                "since": None if self.since is None else self.since.isoformat()}


@dataclass(frozen=True)
class LastSync:
    """What the unit remembers of the last moment a source vouched for its clock:
    host monotonic time, UTC then, the bound then (ms) and the source."""

    t_mono_s: float
    utc: datetime
    bound_ms: float
    source: Source


def _libc() -> ctypes.CDLL:
    """The C library, found once."""
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def read_kernel_clock() -> KernelClock:
    """Read the kernel clock's discipline now (``adjtimex`` with ``modes = 0``).

    Raises :class:`OSError` when the call fails (it does not without privilege: a
    read-only call is allowed to every user).
    """
    tx = _Timex()
    ret = _libc().adjtimex(ctypes.byref(tx))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"adjtimex (read-only) failed: {os.strerror(err)}")
    offset_us = tx.offset / 1000.0 if tx.status & STA_NANO else float(tx.offset)
    return KernelClock(state=ret, status_flags=tx.status, maxerror_us=tx.maxerror,
                       esterror_us=tx.esterror, offset_us=offset_us,
                       freq_ppm=tx.freq / FREQ_SCALE, tolerance_ppm=tx.tolerance / FREQ_SCALE,
                       tai_s=tx.tai)


def kernel_synced(clock: KernelClock, settings: TimeSettings) -> bool:
    """Whether the kernel vouches for its clock well enough: STA_UNSYNC clear, not
    ``TIME_ERROR``, and ``maxerror`` below ``synced_maxerror_ms``."""
    return (not clock.unsynchronised and clock.state != TIME_ERROR
            and clock.maxerror_us < settings.synced_maxerror_ms * 1000.0)


def holdover_state(last: LastSync | None, t_mono_s: float, drift_ppm: float,
                   settings: TimeSettings) -> ClockState:
    """``holdover`` from ``last`` with a bound grown by ``drift_ppm`` for the time
    since, or ``free_running`` once that is beyond ``holdover_max_s`` (or never synced).

    Examples
    --------
    >>> t0 = datetime(2026, 5, 1, tzinfo=UTC)
    >>> last = LastSync(100.0, t0, bound_ms=5.0, source="kernel")
    >>> holdover_state(last, 1100.0, 20.0, TimeSettings()).uncertainty_ms  # 5 + 1000 s × 20 µs/s
    25.0
    >>> holdover_state(last, 100.0 + 3601, 20.0, TimeSettings()).status
    'free_running'
    """
    if last is None:
        return ClockState("free_running", float("inf"), "none", None)
    elapsed_s = max(t_mono_s - last.t_mono_s, 0.0)
    if elapsed_s > settings.holdover_max_s:
        return ClockState("free_running", float("inf"), "none", last.utc)
    bound_ms = last.bound_ms + elapsed_s * drift_ppm * 1e-3
    return ClockState("holdover", bound_ms, last.source, last.utc)


def kernel_state(clock: KernelClock, last: LastSync | None, t_mono_s: float,
                 settings: TimeSettings, now_utc: datetime | None = None) -> ClockState:
    """The clock state from a kernel reading and the last sync remembered.

    Synced (bound: the kernel's ``maxerror``) when :func:`kernel_synced`; otherwise
    :func:`holdover_state` from ``last`` at ``holdover_drift_ppm`` (the kernel keeps
    the frequency it learnt) — or at ``free_drift_ppm`` when ``last`` came from GPS.
    Never synced while STA_UNSYNC is set.
    """
    if kernel_synced(clock, settings):
        now = now_utc or datetime.now(UTC)
        return ClockState("synced", clock.maxerror_us / 1000.0, "kernel", now)
    drift = settings.holdover_drift_ppm
    if last is not None and last.source == "gps":
        drift = settings.free_drift_ppm
    return holdover_state(last, t_mono_s, drift, settings)
