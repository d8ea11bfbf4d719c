"""The data set of closed cases for the national overload system (Order 62 Art. 44).

rules-cn.md §5 (from 超限运输车辆行驶公路管理规定, 交通运输部令2016年第62号, Art. 44, whose
text is not in shared/law/ and was not checked): within a number of working days of closing
a case (row ``report_within`` of the rule table ``enforcement.yaml``), its data goes to the
national system — the plate, the vehicle type, the company, the transport certificate
number, the driver, the source unit and loading slip when known, the decision, and other
material. The center knows the plate, the vehicle (axle code and kind),
the decision, the fine, and where, when and by which device it was captured; the company,
certificate, driver, source unit and loading slip come from registers the center does not
hold yet and are exported as null. The national system's own exchange format is not known
here: this is a plain JSON and CSV rendering of the fields, one row per case.
"""

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from center.cases import utc
from center.law_models import Capture, Case, CaseCapture, DeviceRecord

FIELDS = (
    "case_id", "plate", "plate_colour", "vehicle_type", "axle_code", "company",
    "transport_certificate", "driver", "source_unit", "loading_slip", "decision",
    "fine_yuan", "decided_by", "closed_at", "report_due", "captured_at", "place", "road",
    "stake", "direction", "latitude", "longitude", "device_id", "certificate_number",
    "gross_kg", "limit_kg", "tolerance_kg", "excess_kg", "first_violation", "cases_12m",
    "attached_captures",
)
UNKNOWN = ("company", "transport_certificate", "driver", "source_unit", "loading_slip")
"""Fields of Art. 44 the center holds no register for: always null for now."""
NOTE = ("Order 62 Art. 44 data set as summarised in rules-cn.md §5 (the article's text was "
        "not checked); company, transport_certificate, driver, source_unit and loading_slip "
        "are null where unknown; report_due counts Monday to Friday only (public holidays "
        "not known).")


def add_working_days(day: date, n: int) -> date:
    """``n`` working days (Monday to Friday) after ``day``; public holidays not known."""
    while n > 0:
        day += timedelta(days=1)
        if day.weekday() < 5:
            n -= 1
    return day


def _iso(t: datetime | None) -> str | None:
    return None if t is None else utc(t).isoformat().replace("+00:00", "Z")


def closed_rows(session: Session, report_working_days: int) -> list[dict]:
    """One row per closed case, oldest closing first; ``report_due`` is
    ``report_working_days`` working days after closing (``rules.enforcement.report_within``).
    """
    cases = session.scalars(select(Case).where(Case.status == "closed")
                            .order_by(Case.closed_at, Case.id)).all()
    rows = []
    for case in cases:
        best = session.get(Capture, case.best_capture_id)
        record = session.scalars(select(DeviceRecord).where(
            DeviceRecord.device_id == best.device_id)).first()
        attached = session.scalars(select(CaseCapture).where(
            CaseCapture.case_id == case.id, CaseCapture.role == "attached")).all()
        closed = utc(case.closed_at) if case.closed_at else None
        row = {
            "case_id": case.id, "plate": case.plate, "plate_colour": case.plate_colour,
            "vehicle_type": (best.grade or {}).get("kind"), "axle_code": best.axle_code,
            **dict.fromkeys(UNKNOWN),
            "decision": case.decision, "fine_yuan": case.decision_fine_yuan,
            "decided_by": case.decided_by, "closed_at": _iso(closed),
            "report_due": add_working_days(closed.date(), report_working_days).isoformat()
            if closed else None,
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


def to_json(rows: list[dict]) -> str:
    """The data set as one JSON object: what it is, when it was made, the cases."""
    return json.dumps({"dataset": "order62-art44", "generated_at": _iso(datetime.now(UTC)),
                       "note": NOTE, "fields": list(FIELDS), "cases": rows},
                      ensure_ascii=False, indent=1) + "\n"


def to_csv(rows: list[dict]) -> str:
    """The data set as CSV with a header row; null is an empty cell."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue()
