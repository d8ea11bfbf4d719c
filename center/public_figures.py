"""The monthly figures of one enforcement device that the public may see: per calendar
month in China Standard Time, the vehicles it weighed (its stored packets), its captures
over the limit, the cases opened from them and the fines decided in them — the openness
the rectification of profit-driven enforcement (逐利执法) asks for, so that anyone can set
a device's cases and fines against its traffic.

Every figure counts in the month of the weighing: a case in the month of the capture that
is its evidence, a fine in the month of the case's capture (decided later or not). So a
month's row describes that month's traffic, and later decisions fill in earlier months. A
month appears only if the device weighed a vehicle in it (the months it was in use).

Two grouped queries per device, each through the index that leads with the device id
(``uq_packets_device_seq``, ``uq_captures_device_seq``), then the case of each capture by
its unique ``case_captures.capture_id``: fast with 100 000 cases.
"""

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from center.cases import PACKETS
from center.law_models import Capture, Case, CaseCapture

FIGURES = ("month", "vehicles_weighed", "captures_over_limit", "cases_opened",
           "fines_decided_yuan")
"""The names of a month's figures, in the order the pages show them (the public pages'
allow-list)."""
CHINA_ZONE = "Asia/Shanghai"
"""The zone of China Standard Time (UTC+8 all year since 1991), for PostgreSQL."""


@dataclass(frozen=True)
class MonthFigures:
    """One calendar month (CST, ``YYYY-MM``) of one device."""

    month: str
    vehicles_weighed: int = 0
    captures_over_limit: int = 0
    cases_opened: int = 0
    fines_decided_yuan: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain data with exactly the names of :data:`FIGURES`."""
        return asdict(self)


def cst_month(column: Any, dialect: str) -> ColumnElement[str]:
    """``YYYY-MM`` of a UTC time column in China Standard Time, computed by the database
    (so the grouping happens there): PostgreSQL converts to the zone, SQLite (which keeps
    UTC text) adds eight hours."""
    if dialect == "postgresql":
        return func.to_char(func.timezone(CHINA_ZONE, column), "YYYY-MM")
    return func.strftime("%Y-%m", column, "+8 hours")


def _weighed(session: Session, device_id: str, dialect: str) -> dict[str, int]:
    """Stored packets of the device per month: every vehicle it weighed and sent."""
    month = cst_month(PACKETS.c.captured_at, dialect).label("month")
    rows = session.execute(select(month, func.count()).select_from(PACKETS)
                           .where(PACKETS.c.device_id == device_id).group_by(month))
    return {m: int(n) for m, n in rows}


def _graded(session: Session, device_id: str, dialect: str
            ) -> dict[str, tuple[int, int, float]]:
    """Per month: captures over the limit, cases whose evidence they are, and the fines
    decided in those cases (a decision of no penalty counts 0)."""
    month = cst_month(Capture.captured_at, dialect).label("month")
    query = (select(month,
                    func.sum(case((Capture.over, 1), else_=0)),
                    func.count(Case.id),
                    func.sum(Case.decision_fine_yuan))
             .select_from(Capture)
             .outerjoin(CaseCapture, (CaseCapture.capture_id == Capture.id)
                        & (CaseCapture.role == "evidence"))
             .outerjoin(Case, Case.id == CaseCapture.case_id)
             .where(Capture.device_id == device_id)
             .group_by(month))
    return {m: (int(over or 0), int(cases or 0), float(fines or 0))
            for m, over, cases, fines in session.execute(query)}


def monthly_figures(session: Session, device_id: str) -> list[MonthFigures]:
    """The device's figures per calendar month (CST), oldest first, for the months it
    weighed a vehicle (a month with captures but no stored packet — packets purged —
    appears too, with the packets it has)."""
    dialect = session.get_bind().dialect.name
    weighed = _weighed(session, device_id, dialect)
    graded = _graded(session, device_id, dialect)
    months = sorted(set(weighed) | {m for m, (over, cases, _) in graded.items()
                                    if over or cases})
    return [MonthFigures(m, weighed.get(m, 0), *graded.get(m, (0, 0, 0.0)))
            for m in months]
