"""The data set of closed cases for the national overload system (Order 62 Art. 44).

rules-cn.md §5 (from 超限运输车辆行驶公路管理规定, 交通运输部令2016年第62号, Art. 44, whose
text is not in shared/law/ and was not checked): within a number of working days of closing
a case (row ``report_within`` of the rule table ``enforcement.yaml``), its data goes to the
national system — the plate, the vehicle type, the company, the transport certificate
number, the driver, the source unit and loading slip when known, the decision, and other
material. The center knows the plate, the vehicle (axle code and kind),
the decision, the fine, and where, when and by which device it was captured (the device
as the registry stood on the capture day); the company and the transport certificate come
from the case's party (the vehicle register at filing, or what staff set), the driver, the
source unit and the loading slip from what staff recorded on the case; each is null where
nobody knows it. The national system's own exchange format is not known
here: this is a plain JSON and CSV rendering of the fields, one row per case.

Both renderings are safe to open where the data set goes. In CSV every text cell is quoted,
and a text cell that begins with a character a spreadsheet takes as the start of a formula
(``=``, ``+``, ``-``, ``@``, tab, carriage return, or the full-width ``＝ ＋ － ＠`` a Chinese
input method types) is prefixed with a single quote, as the OWASP guidance on CSV injection
says: a plate or road ``=HYPERLINK(…)`` is shown as text, never run. Numbers the center
holds as numbers (mass, fine, coordinates) are written bare, so a negative longitude stays
a number: it is data the center computed or parsed as a number, not text from outside. A
number that is not finite (NaN, infinity) has no place in either rendering: the export is
refused with an ExportError naming the case and the field, rather than writing a value
that JSON cannot carry or quietly writing null for a value the center does hold.
"""

import csv
import io
import json
import math
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from center.cases import utc
from center.china_time import CST
from center.law_models import Capture, Case, CaseCapture
from center.procedure_models import CaseProcedure
from center.registry import device_on
from center.spreadsheet import csv_cell
from overload import RuleBook, period_end
from zhichao.errors import ZhichaoError

FIELDS = (
    "case_id", "plate", "plate_colour", "vehicle_type", "axle_code", "company",
    "transport_certificate", "driver", "source_unit", "loading_slip", "decision",
    "fine_yuan", "decided_by", "closed_at", "report_due", "report_due_provisional",
    "captured_at", "place", "road",
    "stake", "direction", "latitude", "longitude", "device_id", "certificate_number",
    "gross_kg", "limit_kg", "tolerance_kg", "excess_kg", "first_violation", "cases_12m",
    "attached_captures",
)
NOTE = ("Order 62 Art. 44 data set as summarised in rules-cn.md §5 (the article's text was "
        "not checked); company, transport_certificate, driver, source_unit and loading_slip "
        "are null where unknown; report_due counts working days by the rule tables' "
        "calendar (statutory holidays and adjusted working weekends of each listed year; "
        "a year not listed counts Monday to Friday and its date is marked provisional).")





class ExportError(ZhichaoError):
    """The data set cannot be written as it stands."""


def _report_due(closed: datetime | None, within: int, rules: RuleBook) -> dict:
    if closed is None:
        return {"report_due": None, "report_due_provisional": None}
    due = period_end(closed.astimezone(CST).date(), within, "working_days", rules.calendar)
    return {"report_due": due.date.isoformat(), "report_due_provisional": due.provisional}


def _iso(t: datetime | None) -> str | None:
    return None if t is None else utc(t).isoformat().replace("+00:00", "Z")


def closed_rows(session: Session, rules: RuleBook) -> list[dict]:
    """One row per closed case, oldest closing first; ``report_due`` is the rule tables'
    ``enforcement.report_within`` working days after closing, counted by their calendar
    (``report_due_provisional`` when a year's holidays are not listed)."""
    within = rules.enforcement.report_within.value
    cases = session.scalars(select(Case).where(Case.status == "closed")
                            .order_by(Case.closed_at, Case.id)).all()
    rows = []
    for case in cases:
        best = session.get(Capture, case.best_capture_id)
        record = device_on(session, best.device_id,
                           utc(best.captured_at).astimezone(CST).date())
        rec = session.get(CaseProcedure, case.id)
        attached = session.scalars(select(CaseCapture).where(
            CaseCapture.case_id == case.id, CaseCapture.role == "attached")).all()
        closed = utc(case.closed_at) if case.closed_at else None
        row = {
            "case_id": case.id, "plate": case.plate, "plate_colour": case.plate_colour,
            "vehicle_type": (best.grade or {}).get("kind"), "axle_code": best.axle_code,
            "company": rec.party_name if rec and rec.party_kind == "company" else None,
            "transport_certificate": rec.transport_certificate if rec else None,
            "driver": rec.driver if rec else None,
            "source_unit": rec.source_unit if rec else None,
            "loading_slip": rec.loading_slip if rec else None,
            "decision": case.decision, "fine_yuan": case.decision_fine_yuan,
            "decided_by": case.decided_by, "closed_at": _iso(closed),
            **_report_due(closed, within, rules),
            "captured_at": _iso(best.captured_at),
            "place": " ".join((record.road, record.stake, record.direction)) if record
            else None,
            "road": record.road if record else None,
            "stake": record.stake if record else None,
            "direction": record.direction if record else None,
            "latitude": record.latitude if record else None,
            "longitude": record.longitude if record else None,
            "device_id": best.device_id,
            "certificate_number": record.certificate_number if record else None,
            "gross_kg": best.gross_kg, "limit_kg": best.limit_kg,
            "tolerance_kg": best.tolerance_kg, "excess_kg": best.excess_kg,
            "first_violation": case.first_violation, "cases_12m": case.cases_12m,
            "attached_captures": len(attached),
        }
        rows.append(row)
    return rows


def check_finite(rows: list[dict]) -> None:
    """ExportError naming the case and field of the first number that is not finite."""
    for row in rows:
        for name, value in row.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ExportError(f"case {row['case_id']}: {name} is {value}, not a finite "
                                  "number; the data set carries none (correct the case)")


def to_json(rows: list[dict]) -> str:
    """The data set as one JSON object: what it is, when it was made, the cases; strict
    JSON (no NaN or Infinity: ExportError)."""
    check_finite(rows)
    return json.dumps({"dataset": "order62-art44", "generated_at": _iso(datetime.now(UTC)),
                       "note": NOTE, "fields": list(FIELDS), "cases": rows},
                      ensure_ascii=False, indent=1, allow_nan=False) + "\n"


def to_csv(rows: list[dict]) -> str:
    """The data set as CSV with a header row; null is an empty cell, every text cell is
    quoted and neutralised (:func:`csv_cell`), numbers are bare; ExportError for a number
    that is not finite."""
    check_finite(rows)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n",
                            quoting=csv.QUOTE_NONNUMERIC)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: csv_cell(v) for k, v in row.items()})
    return out.getvalue()
