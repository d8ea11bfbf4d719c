"""China Standard Time, the clock of the law's days: a certificate's validity, a notice's
date, a deadline, the day of a capture. Times are stored UTC; a day is always China's."""

from datetime import UTC, date, datetime, timedelta, timezone

CST = timezone(timedelta(hours=8), "CST")
"""China Standard Time (UTC+8, no summer time)."""


def day_of(t: datetime) -> date:
    """The calendar day in China of a moment (a naive time is taken as UTC, as SQLite
    gives stored times back)."""
    return (t if t.tzinfo is not None else t.replace(tzinfo=UTC)).astimezone(CST).date()


def today() -> date:
    """Today in China."""
    return datetime.now(CST).date()
