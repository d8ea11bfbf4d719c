"""Findings of a health check, shared by ``zhichao edge doctor`` and ``center doctor``:
what was looked at, whether it is well, how bad if not, what was seen (with the numbers)
and what to do about it; the exit status and the JSON summary of a list of them."""

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import timedelta, timezone
from typing import Any, Literal, NamedTuple

Severity = Literal["error", "warning", "info"]

CST = timezone(timedelta(hours=8), "CST")
"""China Standard Time: a certificate's days are China's (as the center judges them)."""


@dataclass(frozen=True)
class Finding:
    """One thing the doctor found: what it looked at, whether it is well, how bad it is
    if not, what it saw (with the numbers) and what the technician does about it."""

    check: str
    ok: bool
    severity: Severity
    what: str
    fix: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A plain dict for ``--json``."""
        return asdict(self)


def good(check: str, what: str) -> Finding:
    """A finding of something well: nothing to fix."""
    return Finding(check, True, "info", what, "")


def bad(check: str, severity: Severity, what: str, fix: str) -> Finding:
    """A finding of something wrong, with its fix."""
    return Finding(check, False, severity, what, fix)


class DiskUsage(NamedTuple):
    """What :func:`shutil.disk_usage` returns: bytes in all, used and free."""

    total: int
    used: int
    free: int


def exit_status(findings: Iterable[Finding]) -> int:
    """1 when anything is an error (warnings alone do not fail the unit), else 0."""
    return 1 if any(f.severity == "error" and not f.ok for f in findings) else 0


def summary(findings: list[Finding]) -> dict[str, Any]:
    """The whole report as one JSON-ready object."""
    errors = sum(1 for f in findings if not f.ok and f.severity == "error")
    warnings = sum(1 for f in findings if not f.ok and f.severity == "warning")
    return {"ok": errors == 0, "errors": errors, "warnings": warnings,
            "findings": [f.to_dict() for f in findings]}


def duration_words(seconds: float) -> str:
    """Seconds in the largest unit that reads well."""
    if seconds >= 2 * 86_400:
        return f"{seconds / 86_400:.1f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"
