"""A plate keyed in by staff for a capture whose plate the reader missed or misread.

The officer types the plate they read on the photos; the text must be a plate under GA 36
for its colour. The capture is then judged again with that plate, as
:func:`center.cases.process_packets` judges a packet (the device's checks, the pass's
own, the grade with the vehicle register's facts of the plate), except that the plate
check says it was typed by staff and by whom. A capture now evidential and over the limit
that belongs to no case opens its case, or joins its trip's case, by the same functions
the center uses for packets. Every keyed plate is a row of ``plate_entries`` (the plate
before it kept) and an entry of the audit log.

A capture already in a case keeps its plate: the case was made on it, and a misread plate
there is a reason to reject the case (``plate_misread``), not to change it under review.
"""

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from center import audit
from center.cases import (
    CASE_ID_MAX,
    PACKETS,
    CaseError,
    device_record_on,
    grade_packet,
    law_rules,
    lock_plates,
    open_or_join,
    plate_grammar,
    vehicle_facts,
)
from center.china_time import today as china_today
from center.law_models import Capture, CaseCapture
from center.legality import PlateFacts, evidential, grammar_fits
from center.settings import CenterSettings
from center.staff import Officer, StaffError, get_officer
from center.web_models import PlateEntry
from evidence.packet import Packet, PacketError, PlateRecord, decode_packet
from overload.plates import PLATE_COLOURS
from zhichao.errors import ZhichaoError

PLATE_MAX = 16
"""The longest plate text accepted (GA 36 plates have 7 or 8 characters)."""
SOURCE = "staff"
"""``captures.plate_source`` of a plate keyed in by staff."""


class PlateEntryError(ZhichaoError):
    """A keyed-in plate is refused; the message says why in one line."""


def key_in_plate(session: Session, capture_id: int, plate: str, colour: str,  # noqa: PLR0917
                 officer_id: str, settings: CenterSettings) -> Capture:
    """Set the capture's plate to one an officer typed, judge the capture again with it,
    and open or join its case when it is now evidence of an overload; recorded in
    ``plate_entries`` and audited, in the session's transaction (the caller commits)."""
    capture = _capture(session, capture_id)
    text = _plate_text(plate, colour, settings)
    officer = _officer(session, officer_id)
    in_case = session.scalar(select(CaseCapture.case_id).where(
        CaseCapture.capture_id == capture.id))
    if in_case is not None:
        raise PlateEntryError(f"capture {capture.id} is evidence of case {in_case}: its "
                              "plate stays as the case was made on it (reject the case as "
                              "plate_misread if it is wrong)")
    packet = _packet(session, capture)
    read = packet.plate.text.strip() if packet.plate is not None else ""
    previous = capture.plate or read or None  # what the reader read, kept
    _judge(session, capture, packet, text=text, colour=colour, officer=officer,
           settings=settings)
    now = datetime.now(UTC)
    session.add(PlateEntry(capture_id=capture.id, plate=text, colour=colour,
                           officer_id=officer.officer_id, at=now, previous=previous))
    case_id, made = None, ""
    if capture.evidential and capture.over:
        lock_plates(session, {text})  # plate locks before the audit chain's lock
        law = settings.law
        case_id = open_or_join(session, capture, law, law_rules(law)).id
        made = f"; case {case_id}"
    audit.append(session, case_id, "plate_keyed",
                 f"capture {capture.id} ({capture.device_id} #{capture.sequence}): plate "
                 f"{text} ({colour}) typed by {officer.officer_id} {officer.name}"
                 f"; before: {previous or 'none'}; evidential "
                 f"{'yes' if capture.evidential else 'no'}, over "
                 f"{'yes' if capture.over else 'no'}{made}", actor=_actor(officer), at=now)
    session.flush()
    return capture


def _actor(officer: Officer) -> str:
    return f"{officer.officer_id} {officer.name} ({officer.credential_number})"


def _capture(session: Session, capture_id: int) -> Capture:
    """The capture, or a one-line refusal (an id outside the key's range included)."""
    if not 1 <= capture_id <= CASE_ID_MAX:
        raise CaseError(f"capture id {capture_id} out of range (1 to {CASE_ID_MAX})")
    capture = session.get(Capture, capture_id)
    if capture is None:
        raise CaseError(f"capture {capture_id} does not exist")
    return capture


def _plate_text(plate: str, colour: str, settings: CenterSettings) -> str:
    """The plate typed, trimmed, if GA 36 has a plate of that text and colour (a colour
    must be named: staff see it on the photo)."""
    text = (plate or "").strip().upper()
    if colour not in PLATE_COLOURS:
        raise PlateEntryError(f"colour must be one of {', '.join(PLATE_COLOURS)} "
                              f"(got {colour[:20]!r})")
    if not text or len(text) > PLATE_MAX:
        raise PlateEntryError(f"a plate has 1 to {PLATE_MAX} characters (got {len(text)})")
    if not grammar_fits(text, colour, plate_grammar(settings.law.rules_folder)):
        raise PlateEntryError(f"{text} fits no GA 36 plate of colour {colour}")
    return text


def _officer(session: Session, officer_id: str) -> Officer:
    """The officer, if the staff register lets them review today (China's day)."""
    try:
        return get_officer(session, officer_id, role="reviewer", on=china_today())
    except StaffError as exc:
        raise PlateEntryError(f"plate entry: {exc}") from None


def _packet(session: Session, capture: Capture) -> Packet:
    """The stored packet the capture was made from (judging needs the whole pass)."""
    meta = None if capture.packet_id is None else session.scalar(
        select(PACKETS.c.meta).where(PACKETS.c.id == capture.packet_id))
    if meta is None:
        raise PlateEntryError(f"capture {capture.id} has no stored packet to judge again")
    try:
        return decode_packet(bytes(meta))
    except PacketError as exc:
        raise PlateEntryError(f"capture {capture.id}: its packet cannot be read: "
                              f"{exc}") from None


def _judge(session: Session, capture: Capture, packet: Packet, *, text: str, colour: str,
           officer: Officer, settings: CenterSettings) -> None:
    """Judge and grade the capture again with the typed plate, as the center judges a
    packet; the plate check names the officer who typed it."""
    law, cache = settings.law, {}
    rules = law_rules(law)
    record, suspensions, first_from = device_record_on(session, packet.device_id, cache,
                                                packet.captured_at)
    box = packet.plate.box if packet.plate is not None else [0.0] * 5
    typed = PlateRecord(text=text, colour=colour, confidence=1.0, box=box,
                        image=packet.plate.image if packet.plate is not None else None)
    who = f"{officer.officer_id} {officer.name}"
    by = f"staff ({who}, typed from the photos)"
    verdict = evidential(
        record, suspensions, packet.captured_at, rules.enforcement.notice_lead, packet=packet,
        device_id=packet.device_id, abnormal_driving=law.abnormal_driving_flags,
        faulty_measurement=law.faulty_measurement_flags, trusted_clocks=law.trusted_clocks,
        min_plate_confidence=law.min_plate_confidence,
        min_province_confidence=law.min_province_confidence,
        plate=PlateFacts(typed, by), grammar=plate_grammar(law.rules_folder),
        first_from=first_from)
    checks = [c.to_dict() for c in verdict.checks]
    for c in checks:
        if c["id"] == "plate" and c["ok"]:
            c["text"] = f"plate {text} ({colour}) typed by staff {who} from the photos"
    graded, error = grade_packet(packet, record, law, rules, plate=(text, colour),
                           registered=vehicle_facts(session, text, colour, cache))
    capture.plate, capture.plate_colour, capture.plate_source = text, colour, SOURCE
    capture.plate_confidence = capture.plate_province_confidence = None
    capture.plate_front_rear = None
    capture.limit_kg = graded["limit_kg"] if graded else None
    capture.tolerance_kg = graded["tolerance_kg"] if graded else None
    capture.excess_kg = graded["excess_kg"] if graded else None
    capture.over = bool(graded and graded["over"])
    capture.action = graded["action"] if graded else None
    capture.fine_yuan = graded["fine_yuan"] if graded else None
    capture.grade = graded if graded and graded["over"] else None
    capture.grade_error = error
    capture.evidential, capture.checks = verdict.evidential, checks
    capture.processed_at = datetime.now(UTC)
    session.flush()


def plate_entries(session: Session, capture_ids: list[int]) -> dict[int, list[dict]]:
    """The plates keyed in for these captures, oldest first, by capture id, with who typed
    each (for the pages)."""
    rows = session.scalars(select(PlateEntry).where(PlateEntry.capture_id.in_(capture_ids))
                           .order_by(PlateEntry.id)).all() if capture_ids else []
    out: dict[int, list[dict]] = {}
    for r in rows:
        try:
            name = get_officer(session, r.officer_id, check=False).name
        except StaffError:
            name = ""
        out.setdefault(r.capture_id, []).append({
            "plate": r.plate, "colour": r.colour, "officer_id": r.officer_id,
            "officer_name": name, "at": r.at.replace(tzinfo=UTC).isoformat()
            if r.at.tzinfo is None else r.at.astimezone(UTC).isoformat(),
            "previous": r.previous})
    return out
