"""Staff pages: a case with its evidence, checks, grade, documents and procedure steps;
a capture without a case, where staff key in a plate the reader missed; the evidence's
files (photos, the plate crop, documents, owners' attachments), to staff only.

Each step of the procedure is a form posted to ``/staff/cases/{id}/{step}`` with the
session's CSRF token; the logged-in officer takes the step on today's date in China, in
one transaction, through :mod:`center.procedure`, which refuses what the law refuses. A
refused step shows the case again with the one-line reason (409) and changes nothing; a
step taken goes back to the case (303). Forms are shown for the steps the procedure table
allows from the case's state, and the officer's role.
"""

import io
import math
import re
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from center import procedure
from center.cases import (
    CASE_ID_MAX,
    DECIDED,
    PACKETS,
    CaseError,
    capture_to_dict,
    case_detail,
    case_to_dict,
    get_case,
    utc,
)
from center.law_models import Capture, Case, CaseCapture
from center.plate_entry import PLATE_MAX, key_in_plate, plate_entries
from center.procedure import (
    DEFENCE_OUTCOMES,
    NO_PENALTY_REASONS,
    PARTY_FIELDS,
    Desk,
    StepError,
    amount_due,
    desk_for,
)
from center.procedure_models import CaseDocument, CaseProcedure
from center.settings import CenterSettings
from center.web import auth
from center.web.pages import (
    DB,
    ROLES,
    AnyStaff,
    LoginOrNone,
    check_csrf,
    page,
    refused,
    settings_of,
    staff,
)
from center.web_models import OwnerAttachment, OwnerStatement
from evidence.packet import Packet, PacketError, decode_packet
from overload.plates import PLATE_COLOURS
from zhichao.errors import ZhichaoError

router = APIRouter(tags=["staff"])

Reviewer = Annotated[auth.Login, Depends(staff("reviewer"))]
"""A handler's log-in: an officer with the role reviewer (every step but legal review)."""
LegalReviewer = Annotated[auth.Login, Depends(staff("legal_reviewer"))]
"""A handler's log-in: a legal reviewer (法制审核)."""


def _file_staff(login: LoginOrNone) -> auth.Login:
    """A file's guard: 401 for anyone not logged in (a photo or a PDF is no page to send
    to the log-in form)."""
    if login is None:
        raise HTTPException(status_code=401, detail="log in first")
    return login


_file_staff.roles = frozenset(ROLES)  # any member of staff (the route walk reads it)
FileStaff = Annotated[auth.Login, Depends(_file_staff)]
"""A file handler's log-in: any member of staff."""

SHA256 = re.compile(r"[0-9a-f]{64}")
"""An evidence photo's name: the SHA-256 of its bytes, lower-case hex."""
STORED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
"""An owner's attachment as stored: a generated name, no path in it."""
NOTE_MAX = 2000
"""The longest note, statement or answer a form takes (the procedure's own bound)."""
NUMBER_MAX = 20
"""The longest amount a form takes, in characters."""
HISTORY_MAX = 50
"""Earlier captures and cases of the plate shown on a case page, newest first."""
CROP_MARGIN = 0.25
"""The plate crop reaches this share of the plate's size beyond its box on each side."""
CROP_WIDTH = 480
"""The plate crop is scaled down to at most this many pixels wide."""
SAFE_TYPES = ("image/jpeg", "image/png", "application/pdf")
"""Attachment media types served as themselves (always as a download); any other type is
served as application/octet-stream."""
STEPS = ("review", "approve", "party", "notify", "defence", "legal-review", "decide",
         "serve", "pay", "close", "reject")
"""The steps of :mod:`center.procedure` as the page's forms post them."""

Csrf = Annotated[str, Form(max_length=128)]
Note = Annotated[str, Form(max_length=NOTE_MAX)]
Short = Annotated[str, Form(max_length=64)]


# --- the case page --------------------------------------------------------------------

def _iso(t: datetime) -> str:
    """A stored time as ISO text in UTC (SQLite gives back naive times, written as UTC)."""
    return utc(t).isoformat().replace("+00:00", "Z")


def _valid_id(value: int) -> bool:
    return 1 <= value <= CASE_ID_MAX


def _packets(session: Session, packet_ids: list[int]) -> dict[int, Packet]:
    """The stored packets of these ids, decoded (one that cannot be read is left out)."""
    ids = [i for i in packet_ids if i is not None]
    rows = session.execute(select(PACKETS.c.id, PACKETS.c.meta).where(
        PACKETS.c.id.in_(ids))).all() if ids else []
    out = {}
    for pid, meta in rows:
        try:
            out[pid] = decode_packet(bytes(meta))
        except PacketError:
            continue
    return out


def _has_box(packet: Packet | None) -> bool:
    plate = packet.plate if packet is not None else None
    return plate is not None and plate.box[2] > 0 and plate.box[3] > 0


def axle_diagram(packet: Packet, limit_kg: float | None) -> dict[str, Any]:
    """The pass's axles as geometry for the page's SVG: a wheel and a load bar per axle
    along the measured spacings, and the gross mass against the limit."""
    v = packet.vehicle
    loads = list(v.axle_loads_kg)
    n = len(loads)
    gaps = list(v.spacings_m) if len(v.spacings_m) == n - 1 else [1.0] * max(n - 1, 0)
    length = sum(gaps) or 1.0
    left, width, base, tall = 40.0, 560.0, 150.0, 110.0
    top = max([*loads, 1.0]) * 1.1
    at, xs = 0.0, [left]
    for g in gaps:
        at += g
        xs.append(left + width * at / length)
    axles = [{"x": round(x, 1), "load_kg": load, "label": f"{load / 1000:.1f} t",
              "height": round(tall * load / top, 1), "y": round(base - tall * load / top, 1),
              "tyres": v.tyres[i] if i < len(v.tyres) else None}
             for i, (x, load) in enumerate(zip(xs, loads, strict=True))]
    spans = [{"x": round((xs[i] + xs[i + 1]) / 2, 1), "label": f"{g:.2f} m"}
             for i, g in enumerate(gaps)] if len(xs) > 1 else []
    most = max(v.gross_kg, limit_kg or 0.0, 1.0)
    return {
        "axles": axles, "spans": spans, "base": base, "width": 640, "height": 260,
        "gross_kg": v.gross_kg, "limit_kg": limit_kg, "speed_kmh": v.speed_kmh,
        "flags": list(v.flags), "axle_groups": list(v.axle_groups),
        "spacings_m": list(v.spacings_m), "tyres": list(v.tyres),
        "gross_bar": round(width * v.gross_kg / most, 1),
        "limit_x": round(left + width * limit_kg / most, 1) if limit_kg else None,
        "over": limit_kg is not None and v.gross_kg > limit_kg,
    }


def _span(values: list[float], digits: int) -> str:
    """A list of numbers in a few characters: its one value, or its least–greatest."""
    low, high = min(values), max(values)
    return f"{low:.{digits}f}" if low == high else f"{low:.{digits}f}–{high:.{digits}f}"


def calibration_view(packet: Packet) -> dict[str, Any]:
    """The calibration the pass was weighed with, as the packet says: the chain's version,
    digest, who applied it, its verification certificate, and one row per stage with its
    factors in brief (count, least–greatest) and the speeds or temperatures of a curve.
    A packet of the older form (no chain) gives its factor set alone. Every text here
    came from the roadside unit: the page escapes it."""
    cal = packet.calibration
    stages = [{"kind": s.kind, "version": s.version, "unit": s.unit,
               "fitted_from": s.fitted_from, "uncertainty_pct": s.uncertainty_pct,
               "approved_by": s.approved_by,
               "approved_at": _iso(s.approved_at) if s.approved_at else None,
               "count": len(s.factors), "factors": _span(s.factors, 4),
               "points": _span(s.points, 1) if s.points else None,
               "points_unit": {"speed_factor": "km/h", "temperature_curve": "°C"}.get(
                   s.kind, "")} for s in cal.stages]
    return {"schema": packet.schema_, "has_chain": cal.has_chain, "version": cal.version,
            "digest": cal.chain_digest,
            "digest_short": cal.chain_digest[:12] if cal.chain_digest else None,
            "factor_set": cal.factor_set, "certificate": cal.certificate,
            "certificate_valid_from": _day_text(cal.certificate_valid_from),
            "certificate_valid_to": _day_text(cal.certificate_valid_to),
            "applied_by": cal.applied_by,
            "applied_at": _iso(cal.applied_at) if cal.applied_at else None,
            "stages": stages}


def _day_text(day: date | None) -> str | None:
    return day.isoformat() if day is not None else None


def _evidence(capture: dict, packet: Packet | None, entries: dict[int, list[dict]]) -> dict:
    """A capture's photos, plate crop, axle diagram, calibration and keyed-in plates, for
    the page."""
    images = [] if packet is None else [
        {"sha256": i.sha256, "role": i.role, "media_type": i.media_type,
         "url": f"/staff/images/{i.sha256}"} for i in packet.images]
    return {**capture, "images": images,
            "plate_crop": f"/staff/captures/{capture['id']}/plate.jpg"
            if _has_box(packet) else None,
            "plate_read": None if packet is None or packet.plate is None else {
                "text": packet.plate.text, "colour": packet.plate.colour,
                "confidence": packet.plate.confidence, "unread": packet.plate.unread},
            "diagram": axle_diagram(packet, capture["limit_kg"]) if packet else None,
            "calibration": calibration_view(packet) if packet else None,
            "plate_entries": entries.get(capture["id"], [])}


def _history(session: Session, case: Case) -> dict[str, list[dict]]:
    """The plate's other captures and cases, newest first (at most HISTORY_MAX each)."""
    captures = session.execute(select(Capture, CaseCapture.case_id).outerjoin(
        CaseCapture, CaseCapture.capture_id == Capture.id).where(
        Capture.plate == case.plate, (CaseCapture.case_id != case.id)
        | CaseCapture.case_id.is_(None)).order_by(Capture.captured_at.desc())
        .limit(HISTORY_MAX)).all()
    cases = session.scalars(select(Case).where(Case.plate == case.plate, Case.id != case.id)
                            .order_by(Case.first_at.desc()).limit(HISTORY_MAX)).all()
    return {"captures": [{"id": c.id, "captured_at": _iso(c.captured_at),
                          "device_id": c.device_id, "gross_kg": c.gross_kg,
                          "excess_kg": c.excess_kg, "evidential": c.evidential,
                          "over": c.over, "case_id": case_id} for c, case_id in captures],
            "cases": [case_to_dict(c) for c in cases]}


def _statements(session: Session, case_id: int) -> list[dict]:
    """The owner's statements submitted online, with their attachments."""
    rows = session.scalars(select(OwnerStatement).where(OwnerStatement.case_id == case_id)
                           .order_by(OwnerStatement.id)).all()
    out = []
    for s in rows:
        files = session.scalars(select(OwnerAttachment).where(
            OwnerAttachment.statement_id == s.id).order_by(OwnerAttachment.id)).all()
        out.append({"id": s.id, "submitted_at": _iso(s.submitted_at), "text": s.text,
            "attachments": [{"id": f.id, "name": f.original_name, "media_type": f.media_type,
                             "size": f.size, "sha256": f.sha256,
                             "url": f"/staff/attachments/{f.id}"} for f in files]})
    return out


def steps_allowed(case: Case, rec: CaseProcedure | None, desk: Desk) -> list[str]:
    """The steps the procedure table allows from the case's state (party: a filed case not
    yet decided; legal review: only where the table asked for one)."""
    owed = (case.decision_fine_yuan or 0) > 0
    out = []
    for step in STEPS:
        name = step.replace("-", "_")
        if step == "party":
            ok = rec is not None and case.status not in DECIDED
        else:
            ok = desk.procedure.step_allowed(name, case.status, penalty=owed)
        if name == "legal_review":
            ok = ok and rec is not None and rec.legal_review_required
        if ok:
            out.append(step)
    return out


def _forms(session: Session, case: Case, desk: Desk) -> dict[str, Any]:
    """What the step forms need: the steps allowed, the choices the table offers, the
    amount due, the party's facts as filed."""
    rec = session.get(CaseProcedure, case.id)
    due = None
    if rec is not None and case.status == "served" and (case.decision_fine_yuan or 0) > 0:
        fine, surcharge = amount_due(rec, case, desk)
        due = {"fine_yuan": fine, "surcharge_yuan": surcharge,
               "total_yuan": round(fine + surcharge, 2)}
    party = {} if rec is None else {
        key: ("yes" if rec.party_consent else "no") if key == "consent"
        else getattr(rec, column) or "" for key, (column, _) in PARTY_FIELDS.items()}
    return {"allowed": steps_allowed(case, rec, desk), "today": desk.today,
            "reject_reasons": dict(desk.procedure.reject_reasons),
            "defence_outcomes": list(DEFENCE_OUTCOMES),
            "no_penalty_reasons": list(NO_PENALTY_REASONS), "amount_due": due,
            "party": party, "party_bounds": {k: b for k, (_, b) in PARTY_FIELDS.items()}}


def case_context(session: Session, settings: CenterSettings, case_id: int) -> dict:
    """Everything the case page shows (and its JSON twin says)."""
    detail = case_detail(session, case_id)
    case = get_case(session, case_id)
    packets = _packets(session, [c["packet_id"] for c in detail["captures"]])
    entries = plate_entries(session, [c["id"] for c in detail["captures"]])
    captures = [_evidence(c, packets.get(c["packet_id"]), entries)
                for c in detail["captures"]]
    desk = desk_for(settings, notify=False)
    return {**detail, "captures": captures, "history": _history(session, case),
            "statements": _statements(session, case_id),
            "forms": _forms(session, case, desk), "error": None}


def _case_page(request: Request, session: Session, case_id: int, login: auth.Login, *,
               error: str | None = None, status_code: int = 200) -> Response:
    try:
        context = case_context(session, settings_of(request), case_id)
    except CaseError as exc:
        return refused(request, 404, str(exc), login)
    return page(request, "staff/case.html", {**context, "error": error}, status_code,
                login=login)


@router.get("/staff/cases/{case_id}", name="staff_case")
@router.get("/staff/cases/{case_id}.json", name="staff_case_json")
def case_page(request: Request, *, login: AnyStaff, session: DB, case_id: int) -> Response:
    """A case: evidence, checks, grade, history, procedure, documents, audit, the steps."""
    return _case_page(request, session, case_id, login)


# --- the steps ------------------------------------------------------------------------

def _one_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _step(request: Request, session: Session, login: auth.Login, case_id: int, csrf: str,
          *, take: Callable[[Session, Desk, str], object]) -> Response:
    """Take one step in one transaction as the logged-in officer, today in China; a
    refusal shows the case again with its reason (409), nothing changed."""
    check_csrf(login, csrf)
    try:
        get_case(session, case_id)
    except CaseError as exc:
        return refused(request, 404, str(exc), login)
    desk = desk_for(settings_of(request))
    try:
        take(session, desk, login.officer.officer_id)
        session.commit()
    except ZhichaoError as exc:
        session.rollback()
        return _case_page(request, session, case_id, login, error=_one_line(exc),
                          status_code=409)
    return RedirectResponse(f"/staff/cases/{case_id}", status_code=303)


def _yuan(text: str, what: str) -> float | None:
    """An amount typed in a form: blank is None; anything but a finite number refused."""
    text = text.strip().replace(" ", "").replace(",", "")
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise StepError(f"{what} must be a number of yuan (got {text[:NUMBER_MAX]!r})") \
            from None
    if not math.isfinite(value):
        raise StepError(f"{what} must be a finite number of yuan")
    return value


@router.post("/staff/cases/{case_id}/review", name="staff_case_review")
def review(request: Request, *, login: Reviewer, session: DB, case_id: int, csrf: Csrf,
           note: Note = "") -> Response:
    """The first officer reviews the evidence (行政处罚法 Art. 41 ¶2)."""
    def take(s: Session, d: Desk, o: str) -> object:
        return procedure.review(s, case_id, o, d, note=note)
    return _step(request, session, login, case_id, csrf, take=take)


@router.post("/staff/cases/{case_id}/approve", name="staff_case_approve")
def approve(request: Request, *, login: Reviewer, session: DB, case_id: int, csrf: Csrf,
            note: Note = "") -> Response:
    """A second officer approves and the case is filed (Art. 42)."""
    def take(s: Session, d: Desk, o: str) -> object:
        return procedure.approve(s, case_id, o, d, note=note)
    return _step(request, session, login, case_id, csrf, take=take)


@router.post("/staff/cases/{case_id}/party", name="staff_case_party")
def party(request: Request, *, login: Reviewer, session: DB, case_id: int, csrf: Csrf,
          kind: Short = "", name: Annotated[str, Form(max_length=128)] = "",
          id_number: Short = "", address: Annotated[str, Form(max_length=500)] = "",
          phone: Short = "", email: Annotated[str, Form(max_length=254)] = "",
          driver: Annotated[str, Form(max_length=128)] = "",
          source_unit: Annotated[str, Form(max_length=256)] = "",
          loading_slip: Annotated[str, Form(max_length=128)] = "",
          transport_certificate: Short = "", consent: Short = "") -> Response:
    """The party's or the trip's facts (blank fields are left as they are)."""
    given = {"kind": kind, "name": name, "id_number": id_number, "address": address,
             "phone": phone, "email": email, "driver": driver, "source_unit": source_unit,
             "loading_slip": loading_slip, "transport_certificate": transport_certificate,
             "consent": consent}
    facts = {k: v for k, v in given.items() if v.strip()}

    def take(s: Session, d: Desk, o: str) -> object:
        return procedure.set_party(s, case_id, o, d, **facts)
    return _step(request, session, login, case_id, csrf, take=take)


@router.post("/staff/cases/{case_id}/notify", name="staff_case_notify")
def notify(request: Request, *, login: Reviewer, session: DB, case_id: int,
           csrf: Csrf) -> Response:
    """The notice (告知) rendered and delivered; the defence window opens."""
    def take(s: Session, d: Desk, o: str) -> object:
        return procedure.notify(s, case_id, o, d)
    return _step(request, session, login, case_id, csrf, take=take)


@router.post("/staff/cases/{case_id}/defence", name="staff_case_defence")
def defence(request: Request, *, login: Reviewer, session: DB, case_id: int, csrf: Csrf,
            outcome: Short, text: Note = "", answer: Note = "",
            hearing: Annotated[str, Form(max_length=3)] = "") -> Response:
    """The defence received, waived or lapsed; a hearing asked for."""
    def take(s: Session, d: Desk, o: str) -> object:
        return procedure.defence(s, case_id, o, d, outcome=outcome, text=text, answer=answer,
                                 hearing=hearing in ("on", "yes"))
    return _step(request, session, login, case_id, csrf, take=take)


@router.post("/staff/cases/{case_id}/legal-review", name="staff_case_legal_review")
def legal_review(request: Request, *, login: LegalReviewer, session: DB, case_id: int,
                 csrf: Csrf, passed: Annotated[str, Form(max_length=3)],
                 note: Note = "") -> Response:
    """法制审核 by a legal reviewer (Art. 58)."""
    def take(s: Session, d: Desk, o: str) -> object:
        return procedure.legal_review(s, case_id, o, d, passed=passed == "yes", note=note)
    return _step(request, session, login, case_id, csrf, take=take)


@router.post("/staff/cases/{case_id}/decide", name="staff_case_decide")
def decide(request: Request, *, login: Reviewer, session: DB, case_id: int, csrf: Csrf,
           cosigner: Annotated[str, Form(max_length=32)], no_penalty: Short = "",
           fine_yuan: Annotated[str, Form(max_length=NUMBER_MAX)] = "",
           commitment: Note = "", note: Note = "") -> Response:
    """The decision, by the logged-in officer and a second officer who signs with them."""
    def take(s: Session, d: Desk, o: str) -> object:
        return procedure.decide(s, case_id, (o, cosigner.strip()), d,
                                no_penalty=no_penalty or None,
                                fine_yuan=_yuan(fine_yuan, f"case {case_id}: the fine"),
                                commitment=commitment, note=note)
    return _step(request, session, login, case_id, csrf, take=take)


@router.post("/staff/cases/{case_id}/serve", name="staff_case_serve")
def serve(request: Request, *, login: Reviewer, session: DB, case_id: int,
          csrf: Csrf) -> Response:
    """The decision served (Art. 61)."""
    def take(s: Session, d: Desk, o: str) -> object:
        return procedure.serve(s, case_id, o, d)
    return _step(request, session, login, case_id, csrf, take=take)


@router.post("/staff/cases/{case_id}/pay", name="staff_case_pay")
def pay(request: Request, *, login: Reviewer, session: DB, case_id: int, csrf: Csrf,
        amount_yuan: Annotated[str, Form(max_length=NUMBER_MAX)]) -> Response:
    """The payment the collecting bank reports."""
    def take(s: Session, d: Desk, o: str) -> object:
        amount = _yuan(amount_yuan, f"case {case_id}: the amount paid")
        if amount is None:
            raise StepError(f"case {case_id}: the amount paid is required")
        return procedure.pay(s, case_id, o, d, amount_yuan=amount)
    return _step(request, session, login, case_id, csrf, take=take)


@router.post("/staff/cases/{case_id}/close", name="staff_case_close")
def close(request: Request, *, login: Reviewer, session: DB, case_id: int,
          csrf: Csrf) -> Response:
    """The case closed, paid or served with nothing to pay."""
    def take(s: Session, d: Desk, o: str) -> object:
        return procedure.close(s, case_id, o, d)
    return _step(request, session, login, case_id, csrf, take=take)


@router.post("/staff/cases/{case_id}/reject", name="staff_case_reject")
def reject(request: Request, *, login: Reviewer, session: DB, case_id: int, csrf: Csrf,
           reason: Short, note: Note = "") -> Response:
    """The case rejected with a reason code of the procedure table and a note."""
    def take(s: Session, d: Desk, o: str) -> object:
        return procedure.reject(s, case_id, o, d, reason=reason, note=note)
    return _step(request, session, login, case_id, csrf, take=take)


# --- a capture, and keying in its plate --------------------------------------------------

def capture_context(session: Session, capture_id: int) -> dict:
    """A capture as its page shows it: evidence, checks, grade, keyed-in plates, its case."""
    capture = session.get(Capture, capture_id) if _valid_id(capture_id) else None
    if capture is None:
        raise CaseError(f"capture {capture_id} does not exist")
    data = capture_to_dict(capture)
    packets = _packets(session, [capture.packet_id])
    case_id = session.scalar(select(CaseCapture.case_id).where(
        CaseCapture.capture_id == capture_id))
    return {"capture": _evidence(data, packets.get(capture.packet_id),
                                 plate_entries(session, [capture_id])),
            "case_id": case_id, "colours": list(PLATE_COLOURS), "plate_max": PLATE_MAX,
            "error": None}


def _capture_page(request: Request, session: Session, capture_id: int, login: auth.Login,
                  *, error: str | None = None, status_code: int = 200) -> Response:
    try:
        context = capture_context(session, capture_id)
    except CaseError as exc:
        return refused(request, 404, str(exc), login)
    return page(request, "staff/case_capture.html", {**context, "error": error},
                status_code, login=login)


@router.get("/staff/captures/{capture_id}", name="staff_capture")
@router.get("/staff/captures/{capture_id}.json", name="staff_capture_json")
def capture_page(request: Request, *, login: AnyStaff, session: DB,
                 capture_id: int) -> Response:
    """A capture, with or without a case; the form to key in its plate when it has none."""
    return _capture_page(request, session, capture_id, login)


@router.post("/staff/captures/{capture_id}/plate", name="staff_capture_plate")
def plate_post(request: Request, *, login: Reviewer, session: DB, capture_id: int, csrf: Csrf,
               plate: Annotated[str, Form(max_length=32)],
               colour: Annotated[str, Form(max_length=16)]) -> Response:
    """Key in the plate an officer read on the photos; the capture judged again, and its
    case opened or joined when it is now evidence of an overload."""
    check_csrf(login, csrf)
    if not _valid_id(capture_id) or session.get(Capture, capture_id) is None:
        return refused(request, 404, f"capture {capture_id} does not exist", login)
    try:
        key_in_plate(session, capture_id, plate, colour, login.officer.officer_id,
                     settings_of(request))
        session.commit()
    except ZhichaoError as exc:
        session.rollback()
        return _capture_page(request, session, capture_id, login, error=_one_line(exc),
                             status_code=409)
    case_id = session.scalar(select(CaseCapture.case_id).where(
        CaseCapture.capture_id == capture_id))
    target = f"/staff/cases/{case_id}" if case_id else f"/staff/captures/{capture_id}"
    return RedirectResponse(target, status_code=303)


# --- files: photos, plate crops, documents, attachments ----------------------------------

def _not_found(what: str) -> Response:
    return Response(f"{what}\n", status_code=404, media_type="text/plain; charset=utf-8")


def _media_type(head: bytes) -> str | None:
    """The photo's type from its first bytes (JPEG or PNG), or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    return None


def _photo_path(settings: CenterSettings, sha256: str) -> Path | None:
    if not SHA256.fullmatch(sha256) or settings.images_dir is None:
        return None
    path = Path(settings.images_dir) / sha256[:2] / sha256
    return path if path.is_file() else None


@router.get("/staff/images/{sha256}", name="staff_image")
def image(request: Request, *, login: FileStaff, sha256: str) -> Response:
    """An evidence photo by the SHA-256 of its bytes."""
    path = _photo_path(settings_of(request), sha256)
    if path is None:
        return _not_found("no such image")
    with path.open("rb") as f:
        kind = _media_type(f.read(8))
    if kind is None:
        return _not_found("not a JPEG or PNG image")
    return FileResponse(path, media_type=kind)


def crop_plate(session: Session, settings: CenterSettings, capture_id: int) -> bytes | None:
    """The plate cut from the photo it was read on (the box the reader gave, with a
    margin), as JPEG; None when there is no box or no photo within the reader's limits."""
    capture = session.get(Capture, capture_id) if _valid_id(capture_id) else None
    if capture is None or capture.packet_id is None:
        return None
    packet = _packets(session, [capture.packet_id]).get(capture.packet_id)
    if packet is None or not _has_box(packet):
        return None
    plate = packet.plate
    refs = [i for i in packet.images if plate.image is None or i.role == plate.image]
    path = _photo_path(settings, refs[0].sha256) if refs else None
    law = settings.law
    if path is None or path.stat().st_size > law.plate_read_max_bytes:
        return None
    try:
        with Image.open(path, formats=("JPEG", "PNG")) as img:
            if img.width * img.height > law.plate_read_max_pixels:
                return None
            box = _crop_box(plate.box, img.width, img.height)
            if box is None:
                return None
            part = img.crop(box).convert("RGB")
    except (OSError, Image.DecompressionBombError):
        return None
    part.thumbnail((CROP_WIDTH, CROP_WIDTH))
    out = io.BytesIO()
    part.save(out, "JPEG", quality=90)
    return out.getvalue()


def _crop_box(box: list[float], width: int, height: int) -> tuple[int, int, int, int] | None:
    """The upright rectangle around the reader's turned box (centre, long and short
    side, angle), with a margin, inside the image; None when nothing is left."""
    cx, cy, long_side, short_side, angle = box
    a = math.radians(angle)
    half_w = (abs(long_side * math.cos(a)) + abs(short_side * math.sin(a))) / 2
    half_h = (abs(long_side * math.sin(a)) + abs(short_side * math.cos(a))) / 2
    half_w, half_h = half_w * (1 + 2 * CROP_MARGIN), half_h * (1 + 2 * CROP_MARGIN)
    left, top = max(0, int(cx - half_w)), max(0, int(cy - half_h))
    right, bottom = min(width, math.ceil(cx + half_w)), min(height, math.ceil(cy + half_h))
    return (left, top, right, bottom) if right > left and bottom > top else None


@router.get("/staff/captures/{capture_id}/plate.jpg", name="staff_plate_crop")
def plate_crop(request: Request, *, login: FileStaff, session: DB, capture_id: int) -> Response:
    """The plate crop of a capture, beside the text read."""
    data = crop_plate(session, settings_of(request), capture_id)
    if data is None:
        return _not_found("no plate box or photo for this capture")
    return Response(data, media_type="image/jpeg")


@router.get("/staff/documents/{document_id}.pdf", name="staff_document")
def document_pdf(request: Request, *, login: FileStaff, session: DB, document_id: int) -> Response:
    """A case document's PDF, as rendered and hashed when it was made."""
    doc = session.get(CaseDocument, document_id) if _valid_id(document_id) else None
    if doc is None:
        return _not_found(f"document {document_id} does not exist")
    name = f"case-{doc.case_id}-{doc.kind}-{doc.id}.pdf"
    return Response(doc.pdf, media_type="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/staff/attachments/{attachment_id}", name="staff_attachment")
def attachment(request: Request, *, login: FileStaff, session: DB,
               attachment_id: int) -> Response:
    """A file an owner attached to a statement, always as a download (never shown in the
    page: it comes from outside)."""
    row = session.get(OwnerAttachment, attachment_id) if _valid_id(attachment_id) else None
    if row is None or not STORED_NAME.fullmatch(row.stored_name):
        return _not_found(f"attachment {attachment_id} does not exist")
    path = Path(settings_of(request).web.uploads_dir) / row.stored_name
    if not path.is_file():
        return _not_found(f"attachment {attachment_id} is not in the uploads folder")
    kind = row.media_type if row.media_type in SAFE_TYPES else "application/octet-stream"
    return FileResponse(path, media_type=kind, filename=row.original_name,
                        content_disposition_type="attachment")
