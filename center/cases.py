"""From stored packets to cases: grade, decide evidence, group one trip into one case.

Each stored packet becomes one capture: graded with ``overload`` under the center's
benchmark and tolerance policy (the device's accuracy class from the registry, for the
``mpe`` policy), and checked against the registry at its capture time
(:mod:`center.legality`). An evidential capture over the limit opens a case awaiting
review, or joins the case of the same plate whose captures lie within ``trip_window_h``:
repeated captures of one continuous trip are one act (行政处罚法 Art. 29), one case, the
capture with the largest graded excess as its evidence and the others attached. Each case
counts the vehicle's cases (acts) that passed review, and their evidential overload
captures, in the look-back of the rule tables (``enforcement.yaml``: ``repeat_window``, and
more than ``repeat_more_than`` is the repeat of 公路安全保护条例 Art. 66), and is marked a
first violation when the plate has no earlier case that passed review (行政处罚法 Art. 33:
the decision to waive is staff's). A case awaiting review is no established act, so it
counts for neither; both are recounted on every refresh and by :func:`recount`, which the
procedure calls after each step.

Grading takes the vehicle register's facts (:mod:`center.vehicles`: kind, licence mass,
air suspension) for the capture's plate and colour, and the grade records them under
``register`` (or that none was found). Legality takes the device's registry row in force
on the capture's day in China (:func:`center.registry.device_on`).
The notice lead time of the legality checks comes from the same table. Processing a packet
whose capture exists does nothing, so a packet seen twice counts once.
"""

import functools
import logging
import math
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from threading import Event

from sqlalchemy import (
    BigInteger,
    Engine,
    LargeBinary,
    String,
    and_,
    column,
    func,
    select,
    table,
    text,
    tuple_,
)
from sqlalchemy.orm import Session

from center import audit
from center.law_models import (
    AuditEntry,
    Capture,
    Case,
    CaseCapture,
    DeviceRecord,
    DeviceSuspension,
    UtcTime,
    VehicleRow,
)
from center.legality import Check, PlateFacts, evidential, grammar_fits, local_day
from center.procedure_models import CaseDocument, CaseProcedure, CaseStep, Delivery
from center.registry import device_on
from center.settings import CenterSettings, LawSettings
from center.unread_plates import needs_reading
from center.vehicles import grading_facts, lookup
from evidence.packet import Packet, PacketError, decode_packet
from overload import RuleBook, RuleError, grade, load_rules
from overload.plates import PlateGrammar, load_plate_grammar
from overload.tables import Benchmark
from zhichao.errors import ZhichaoError

log = logging.getLogger("zhichao.center.cases")

SYSTEM = "center"
"""The actor of audit entries the center writes by itself."""

PACKETS = table("packets", column("id", BigInteger), column("device_id", String),
                column("sequence", BigInteger), column("captured_at", UtcTime),
                column("meta", LargeBinary))
"""The ingestion's packet table (migration 0001_ingest), as far as cases read it."""


class CaseError(ZhichaoError):
    """A case cannot be found, or cannot be moved to the state asked."""


@dataclass(frozen=True)
class CaptureResult:
    """What processing one packet did."""

    device_id: str
    sequence: int
    capture_id: int
    new: bool
    evidential: bool
    over: bool
    case_id: int | None
    reasons: tuple[str, ...]


def utc(t: datetime) -> datetime:
    """An aware UTC time (SQLite gives back naive ones, written as UTC)."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


@functools.cache
def _rules(folder: Path | None, vendor: str) -> RuleBook:
    return load_rules(folder, vendor=vendor)


def law_rules(law: LawSettings) -> RuleBook:
    """The rule tables the center grades with (loaded once per folder and vendor)."""
    return _rules(law.rules_folder, law.vendor)


def grade_packet(packet: Packet, record: DeviceRecord | None, law: LawSettings,
                 rules: RuleBook, *, registered: VehicleRow | None = None,
                 plate: tuple[str | None, str | None] = (None, None)
                 ) -> tuple[dict | None, str | None]:
    """The packet's grade as plain data, or why it could not be graded. ``registered``:
    the vehicle register's entry of the plate (``plate``: text and colour), whose kind,
    licence mass and air suspension grading takes; the grade records them under
    ``register``. A kind of the register for which the tables have no limit of the
    measured axle count (a register naming a truck for a six-axle pass) cannot be right
    for this pass: the pass is graded as its axle code says, and the grade says so."""
    vehicle = packet.vehicle
    if not vehicle.axle_code:
        return None, "no axle code in the packet: cannot be graded"
    tyres = vehicle.tyres if len(vehicle.tyres) == len(vehicle.axle_loads_kg) else None
    accuracy = record.accuracy_class if record is not None else None
    policy = rules.tolerance_policy(law.tolerance)
    facts = grading_facts(registered, *plate)
    given = {} if registered is None else {
        "kind": registered.kind, "licence_mass_kg": registered.licence_mass_kg,
        "air_suspension": registered.air_suspension}

    def graded(**extra: object) -> dict:
        return grade(vehicle.axle_code, vehicle.gross_kg, rules, benchmark=law.benchmark,
                     tolerance=law.tolerance,
                     accuracy_class=accuracy if policy.kind == "mpe" else None, tyres=tyres,
                     **extra).to_dict()

    try:
        try:
            data = graded(**given)
        except RuleError as exc:
            if not given.get("kind"):
                raise
            data = graded(**{**given, "kind": None})
            facts["kind_refused"] = f"{exc}: graded as the axle code says"
    except RuleError as exc:
        return None, str(exc)
    if registered is not None and registered.axle_code not in (None, vehicle.axle_code):
        facts["axle_code_differs"] = (f"the register's axle code {registered.axle_code} is "
                                      f"not the measured {vehicle.axle_code}")
    data["register"] = facts
    return data, None


def device_record_on(session: Session, device_id: str, cache: dict, captured_at: datetime
                     ) -> tuple[DeviceRecord | None, list[DeviceSuspension], date | None]:
    """The device's registry row in force on the capture's day in China, its
    suspensions, and — when no row is in force that day — the day its first version is in
    force from (None: the device is not in the registry at all). Cached per device and
    day for one batch."""
    day = local_day(captured_at)
    key = ("device", device_id, day)
    if key not in cache:
        record = device_on(session, device_id, day)
        first = None if record is not None else session.scalar(
            select(func.min(DeviceRecord.effective_from)).where(
                DeviceRecord.device_id == device_id))
        if ("stops", device_id) not in cache:
            cache[("stops", device_id)] = list(session.scalars(select(DeviceSuspension).where(
                DeviceSuspension.device_id == device_id)))
        cache[key] = (record, cache[("stops", device_id)], first)
    return cache[key]


def vehicle_facts(session: Session, plate: str | None, colour: str | None, cache: dict
                  ) -> VehicleRow | None:
    """The vehicle register's entry of a capture's plate, cached for one batch."""
    if not plate:
        return None
    key = ("vehicle", plate, colour)
    if key not in cache:
        cache[key] = lookup(session, plate, colour)
    return cache[key]


@functools.cache
def plate_grammar(folder: Path | None) -> PlateGrammar:
    """The GA 36 plate grammar of the rules folder (loaded once per folder)."""
    return load_plate_grammar(folder)


def _plate_source(packet: Packet, facts: PlateFacts | None) -> str | None:
    """Who read the plate judged: the center (its reading of an unread plate), the edge
    (the unit's reading), or nobody."""
    if facts is not None:
        return "center" if facts.record is not None else None
    plate = packet.plate
    return "edge" if plate is not None and not plate.unread and plate.text.strip() else None


def _capture(session: Session, packet_id: int | None, packet: Packet, law: LawSettings, *,
             rules: RuleBook, cache: dict, facts: PlateFacts | None = None) -> Capture:
    """Grade and judge one packet into a new capture row (added; the caller flushes).
    ``facts``: the center's reading of a plate the unit left unread. A plate text that
    no GA 36 template accepts is kept in the checks' words only, never as the plate."""
    record, suspensions, first_from = device_record_on(session, packet.device_id, cache,
                                                packet.captured_at)
    grammar = plate_grammar(law.rules_folder)
    verdict = evidential(
        record, suspensions, packet.captured_at, rules.enforcement.notice_lead, packet=packet,
        device_id=packet.device_id, abnormal_driving=law.abnormal_driving_flags,
        faulty_measurement=law.faulty_measurement_flags, trusted_clocks=law.trusted_clocks,
        min_plate_confidence=law.min_plate_confidence,
        min_province_confidence=law.min_province_confidence, plate=facts, grammar=grammar,
        first_from=first_from)
    plate = facts.record if facts is not None else packet.plate
    text = plate.text.strip() if plate else ""
    judged = text if text and grammar_fits(text, plate.colour, grammar) else None
    colour = plate.colour if plate else None
    graded, error = grade_packet(packet, record, law, rules, plate=(judged, colour),
                           registered=vehicle_facts(session, judged, colour, cache))
    capture = Capture(
        packet_id=packet_id, device_id=packet.device_id, sequence=packet.sequence,
        captured_at=utc(packet.captured_at),
        plate=judged,
        plate_colour=plate.colour if plate else None,
        plate_confidence=plate.confidence if plate else None,
        plate_source=_plate_source(packet, facts),
        plate_province_confidence=plate.province_confidence if plate else None,
        plate_front_rear=plate.front_rear if plate else None,
        gross_kg=packet.vehicle.gross_kg, axle_code=packet.vehicle.axle_code,
        limit_kg=graded["limit_kg"] if graded else None,
        tolerance_kg=graded["tolerance_kg"] if graded else None,
        excess_kg=graded["excess_kg"] if graded else None,
        over=bool(graded and graded["over"]),
        action=graded["action"] if graded else None,
        fine_yuan=graded["fine_yuan"] if graded else None,
        grade=graded if graded and graded["over"] else None, grade_error=error,
        evidential=verdict.evidential,
        checks=[c.to_dict() for c in verdict.checks], processed_at=datetime.now(UTC))
    session.add(capture)
    return capture


def _audit(session: Session, case_id: int | None, action: str, detail: str,
           actor: str = SYSTEM) -> None:
    audit.append(session, case_id, action, detail, actor=actor)


def _trip_case(session: Session, capture: Capture, window: timedelta) -> Case | None:
    """The case of the same plate whose captures lie within the trip window, if any."""
    t = utc(capture.captured_at)
    return session.scalars(select(Case).where(
        Case.plate == capture.plate, Case.status != "rejected",
        Case.first_at <= t + window, Case.last_at >= t - window,
    ).order_by(Case.last_at.desc())).first()


NOT_PASSED = ("awaiting_review", "reviewed", "rejected")
"""Case states that are no established act: not yet through review (the first officer's
review alone is not enough: 行政处罚法 Art. 42 wants two), or rejected."""
DECIDED = ("decided", "served", "paid", "closed", "rejected")
"""Case states whose counts no longer change (the decision was made on them)."""


def _passed() -> object:
    """The condition that a case has passed review and was not rejected."""
    return Case.status.not_in(NOT_PASSED)


def _history(session: Session, plate: str, at: datetime, rules: RuleBook
             ) -> tuple[int, int]:
    """The plate's cases that passed review, and their evidential overload captures, in
    the look-back window ending at ``at`` (Art. 66: a case still awaiting review or
    rejected is no established act)."""
    since = at - timedelta(days=rules.enforcement.repeat_window.value)
    captures = session.scalar(select(func.count()).select_from(Capture).join(
        CaseCapture, CaseCapture.capture_id == Capture.id).join(
        Case, Case.id == CaseCapture.case_id).where(
        Case.plate == plate, _passed(), Capture.evidential, Capture.over,
        Capture.captured_at > since, Capture.captured_at <= at)) or 0
    cases = session.scalar(select(func.count()).select_from(Case).where(
        Case.plate == plate, _passed(),
        Case.first_at > since, Case.first_at <= at)) or 0
    return captures, cases


def recount(session: Session, case: Case, rules: RuleBook) -> None:
    """Recount the case's Art. 66 history (acts and captures in the look-back, and whether
    they are more than allowed) and its first-violation mark (行政处罚法 Art. 33: no
    earlier case of the plate that passed review), from the cases as they stand now. The
    procedure calls this after each step, since a review elsewhere changes both."""
    case.captures_12m, case.cases_12m = _history(session, case.plate, utc(case.last_at),
                                                 rules)
    case.repeat_over_limit = case.cases_12m > rules.enforcement.repeat_more_than.value
    earlier = session.scalar(select(func.count()).select_from(Case).where(
        Case.plate == case.plate, _passed(), Case.id != case.id,
        Case.first_at < utc(case.first_at))) or 0
    case.first_violation = earlier == 0
    session.flush()


def recount_plate(session: Session, plate: str, rules: RuleBook) -> list[Case]:
    """:func:`recount` every case of the plate not yet decided (a review of one case
    changes the counts of the others); the cases recounted."""
    cases = list(session.scalars(select(Case).where(Case.plate == plate,
                                                    Case.status.not_in(DECIDED))))
    for case in cases:
        recount(session, case, rules)
    return cases


def _refresh(session: Session, case: Case, rules: RuleBook) -> None:
    """Best capture (largest graded excess, then earliest), its grade, roles and counts."""
    rows = session.execute(select(Capture, CaseCapture).join(
        CaseCapture, CaseCapture.capture_id == Capture.id).where(
        CaseCapture.case_id == case.id)).all()
    best = max((c for c, _ in rows), key=lambda c: (c.excess_kg or 0,
                                                     -utc(c.captured_at).timestamp()))
    if case.status == "awaiting_review":
        case.best_capture_id = best.id
        case.action = best.action or "none"
        case.fine_yuan = best.fine_yuan
        for c, link in rows:
            link.role = "evidence" if c.id == case.best_capture_id else "attached"
    times = [utc(c.captured_at) for c, _ in rows]
    case.first_at, case.last_at = min(times), max(times)
    recount(session, case, rules)


def _lock_plate(session: Session, plate: str) -> None:
    """On PostgreSQL, serialise case-making for one plate across center processes until
    the transaction ends (SQLite has one writer at a time anyway)."""
    if session.get_bind().dialect.name == "postgresql":
        key = zlib.crc32(plate.encode("utf-8"))
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def lock_plates(session: Session, plates: set[str]) -> None:
    """Every plate lock this transaction will take, taken first and in one order, before
    the audit chain's lock (center.audit): two center processes then never wait on each
    other in a circle."""
    for plate in sorted(plates, key=lambda p: zlib.crc32(p.encode("utf-8"))):
        _lock_plate(session, plate)


def open_or_join(session: Session, capture: Capture, law: LawSettings,
                  rules: RuleBook) -> Case:
    """Attach the capture to its trip's case, or open a new case for it."""
    _lock_plate(session, capture.plate)
    t = utc(capture.captured_at)
    case = _trip_case(session, capture, timedelta(hours=law.trip_window_h))
    if case is not None:
        session.add(CaseCapture(case_id=case.id, capture_id=capture.id, role="attached"))
        session.flush()
        late = "" if case.status == "awaiting_review" else f" (case already {case.status})"
        _audit(session, case.id, "capture_attached",
               f"capture {capture.id} ({capture.device_id} #{capture.sequence}, "
               f"{t:%Y-%m-%d %H:%M:%S} UTC) attached: same plate within "
               f"{law.trip_window_h} h{late}")
        _refresh(session, case, rules)
        return case
    case = Case(plate=capture.plate, plate_colour=capture.plate_colour,
                status="awaiting_review", created_at=datetime.now(UTC), first_at=t, last_at=t,
                best_capture_id=capture.id, first_violation=False, captures_12m=0,
                cases_12m=0, repeat_over_limit=False, action=capture.action or "none",
                fine_yuan=capture.fine_yuan)
    session.add(case)
    session.flush()
    session.add(CaseCapture(case_id=case.id, capture_id=capture.id, role="evidence"))
    session.flush()
    _refresh(session, case, rules)  # recounts: first violation, Art. 66 history
    first = "; first violation (行政处罚法 Art. 33)" if case.first_violation else ""
    _audit(session, case.id, "case_opened",
           f"capture {capture.id} ({capture.device_id} #{capture.sequence}): {case.action}, "
           f"excess {capture.excess_kg} kg{first}; {case.cases_12m} acts and "
           f"{case.captures_12m} captures in {rules.enforcement.repeat_window.value} days")
    return case


def _existing(session: Session, packets: Sequence[tuple[int | None, Packet]]
              ) -> dict[tuple[str, int], tuple[Capture, int | None]]:
    """Captures already made for any of the packets, with their case, by (device, seq)."""
    keys = {(p.device_id, p.sequence) for _, p in packets}
    found = {}
    for device in {d for d, _ in keys}:
        sequences = [q for d, q in keys if d == device]
        rows = session.execute(select(Capture, CaseCapture.case_id).outerjoin(
            CaseCapture, CaseCapture.capture_id == Capture.id).where(
            Capture.device_id == device, Capture.sequence.in_(sequences))).all()
        found.update({(c.device_id, c.sequence): (c, case_id) for c, case_id in rows})
    return found


def _center_plates(packets: Sequence[Packet], law: LawSettings, images_dir: Path | None
                   ) -> dict[tuple[str, int], PlateFacts]:
    """The center's readings of the plates these packets' units left unread (see
    :mod:`center.plate_reading`: its time per vehicle, and why the cases thread may
    spend it)."""
    # imported here: the reader's runtime (ONNX, OpenCV) loads only where plates are read,
    # not in every command that lists cases
    from center.plate_reading import ReadLimits, read_plates  # noqa: PLC0415
    limits = ReadLimits(law.plate_read_max_bytes, law.plate_read_max_pixels)
    read = read_plates(packets, images_dir, limits, law.rules_folder)
    return {key: PlateFacts(found.record, "the center", found.reason, found.rear)
            for key, found in read.items()}


def _unread(packet: Packet) -> bool:
    return packet.plate is None or packet.plate.unread


def process_packets(session: Session, packets: Sequence[tuple[int | None, Packet]],
                    settings: CenterSettings | LawSettings, *,
                    images_dir: Path | None = None,
                    plates: dict[tuple[str, int], PlateFacts] | None = None
                    ) -> list[CaptureResult]:
    """Grade, judge and case each (stored packet id, packet) in the session's transaction
    (the caller commits); results in the order given. The captures are written together,
    then cases are made oldest capture first. A packet with a capture already (or given
    twice) is left as it is.

    Plates the units left unread are taken from ``plates`` (the center's readings by
    (device, sequence), as :func:`process_pending` makes them outside any transaction),
    or else read here first from the images under ``images_dir`` (default: the
    settings' ``images_dir``; with law settings alone, none, and such a plate stays
    unread), before the transaction writes anything: on SQLite the receiver is not
    locked out while the reader works."""
    law = settings.law if isinstance(settings, CenterSettings) else settings
    if images_dir is None and isinstance(settings, CenterSettings):
        images_dir = settings.images_dir
    rules = law_rules(law)
    cache: dict = {}
    existing = _existing(session, packets)
    if plates is None:
        todo = {(p.device_id, p.sequence): p for _, p in packets}
        plates = _center_plates([p for key, p in todo.items() if key not in existing
                                 and _unread(p)], law, images_dir)
    made: dict[tuple[str, int], Capture] = {}
    order = sorted(range(len(packets)), key=lambda i: packets[i][1].captured_at)
    for i in order:
        packet_id, packet = packets[i]
        key = (packet.device_id, packet.sequence)
        if key not in existing and key not in made:
            made[key] = _capture(session, packet_id, packet, law, rules=rules, cache=cache,
                                 facts=plates.get(key))
    session.flush()
    lock_plates(session, {c.plate for c in made.values()
                           if c.evidential and c.over and c.plate})
    cases: dict[tuple[str, int], int | None] = {}
    for key, capture in sorted(made.items(), key=lambda kv: kv[1].captured_at):
        opened = capture.evidential and capture.over and capture.plate
        cases[key] = open_or_join(session, capture, law, rules).id if opened else None
    results, seen = [], set()
    for _, packet in packets:
        key = (packet.device_id, packet.sequence)
        if key in existing:
            results.append(_result(existing[key][0], existing[key][1], new=False))
        else:
            results.append(_result(made[key], cases[key], new=key not in seen))
        seen.add(key)
    return results


def _result(capture: Capture, case_id: int | None, *, new: bool) -> CaptureResult:
    reasons = tuple(f"{c['text']} ({c['source']})" for c in capture.checks if not c["ok"])
    return CaptureResult(capture.device_id, capture.sequence, capture.id, new,
                         capture.evidential, capture.over, case_id, reasons)


def _unreadable(session: Session, row, error: PacketError) -> None:
    """A stored packet this center cannot decode: a capture that is no evidence, so it is
    not tried again, and the reason."""
    check = Check("packet", False, f"stored packet cannot be read: {error}",
                  "行政处罚法（2021） 第四十一条 第二款")
    session.add(Capture(packet_id=row.id, device_id=row.device_id, sequence=row.sequence,
                        captured_at=utc(row.captured_at), gross_kg=0.0, over=False,
                        grade_error=str(error), evidential=False, checks=[check.to_dict()],
                        processed_at=datetime.now(UTC)))
    session.flush()


def _claim(session: Session, batch: int, *, after: int | None = None,
           packet_id: int | None = None) -> list:
    """Up to ``batch`` stored packets without a capture, oldest row first (those with a
    row id above ``after``, or the one row ``packet_id``, when given), claimed for the
    session's transaction. On PostgreSQL each row is locked ``FOR UPDATE OF packets SKIP
    LOCKED`` until the transaction ends: a row another center process holds is passed
    over, never waited for, so two processors take disjoint packets. A row whose lock
    came free only after this statement's snapshot may have been captured by its holder
    meanwhile: the captures are looked up again after the lock (a new snapshot) and such
    rows dropped. On SQLite nothing is locked: it has one writer at a time, and the
    unique capture key keeps the rest."""
    query = select(PACKETS).outerjoin(Capture, and_(
        Capture.device_id == PACKETS.c.device_id,
        Capture.sequence == PACKETS.c.sequence)).where(Capture.id.is_(None))
    if after is not None:
        query = query.where(PACKETS.c.id > after)
    if packet_id is not None:
        query = query.where(PACKETS.c.id == packet_id)
    query = query.order_by(PACKETS.c.id).limit(batch)
    if session.get_bind().dialect.name != "postgresql":
        return list(session.execute(query).all())
    rows = list(session.execute(query.with_for_update(of=PACKETS, skip_locked=True)).all())
    if not rows:
        return rows
    done = {tuple(r) for r in session.execute(select(Capture.device_id, Capture.sequence)
            .where(tuple_(Capture.device_id, Capture.sequence).in_(
                [(r.device_id, r.sequence) for r in rows])))}
    return [r for r in rows if (r.device_id, r.sequence) not in done]


def _capture_ready(engine: Engine, settings: CenterSettings, batch: int,
                   after: int | None = None
                   ) -> tuple[int, list[tuple[int, Packet]], list[int]]:
    """Claim up to ``batch`` pending packets (:func:`_claim`, row ids above ``after``
    when given), and in the same transaction capture and case those whose plate the
    center need not read, and mark the undecodable ones. Returns how many that was, the
    packets whose plate the center reads (:func:`center.unread_plates.needs_reading`),
    left pending and unlocked when this returns, and the row ids claimed."""
    with Session(engine) as session, session.begin():
        rows = _claim(session, batch, after=after)
        ready, to_read, bad = [], [], []
        for row in rows:
            try:
                packet = decode_packet(bytes(row.meta))
            except PacketError as exc:
                log.warning("packet %s #%s: %s", row.device_id, row.sequence, exc)
                bad.append((row, exc))
                continue
            (to_read if needs_reading(packet) else ready).append((row.id, packet))
        if ready:
            process_packets(session, ready, settings, plates={})
        for row, exc in bad:
            _unreadable(session, row, exc)
    return len(ready) + len(bad), to_read, [row.id for row in rows]


def _capture_read(engine: Engine, settings: CenterSettings, item: tuple[int, Packet]
                  ) -> int:
    """Read one packet's plate at the center, no transaction open meanwhile, then claim
    the packet again (:func:`_claim`) and capture and case it in a transaction of its
    own; 1 if this stored its capture, 0 if another center process holds the packet or
    has captured it meanwhile (this reading is then thrown away: the work done twice)."""
    plates = _center_plates([item[1]], settings.law, settings.images_dir)
    with Session(engine) as session, session.begin():
        if not _claim(session, 1, packet_id=item[0]):
            return 0
        results = process_packets(session, [item], settings, plates=plates)
    return int(results[0].new)


def process_pending(engine: Engine, settings: CenterSettings, batch: int = 500,
                    stored: Event | None = None) -> int:
    """Process every stored packet that has no capture yet; returns how many this call
    captured. A batch's packets are claimed, and those that need no plate read at the
    center captured and cased, in one transaction; then the plates their units left
    unread are read, one packet at a time, each packet claimed again and committed in a
    transaction of its own once read. No transaction stays open while the reader works,
    and a failure leaves the packets not yet committed pending.

    Before each reading, the packets stored since (row ids above the batch's: those the
    ``stored`` event announces, or, without the event, whatever a look finds) that need
    no reading are captured first, so a packet whose unit read its plate never waits
    behind a reading.

    Any number of processes may run this on one PostgreSQL database (``center run
    --process-only``). The claims are row locks (``FOR UPDATE OF packets SKIP LOCKED``,
    :func:`_claim`) held by the transaction that captures and cases the packets, so two
    processes never capture the same packet: the other passes over the locked rows and
    takes the next. What can be done twice is a plate reading: a packet waiting for its
    reading is unlocked, another process may claim it and read its plate too. Nothing is
    stored twice: whoever commits first stores the capture; the other's claim after its
    reading finds the capture and stores nothing (and the unique capture key would refuse
    a second). Cases of one plate are made under a lock of the plate
    (:func:`lock_plates`), so two processes never open two cases of one trip."""
    done = 0
    while True:
        n, to_read, claimed = _capture_ready(engine, settings, batch)
        done += n
        last_id = claimed[-1] if claimed else 0
        again = len(claimed) == batch  # more may be pending: another round after readings
        look = False
        while to_read:
            if look or stored is None or stored.is_set():
                if stored is not None:
                    stored.clear()
                n, more, newer = _capture_ready(engine, settings, batch, after=last_id)
                if newer:
                    last_id = newer[-1]
                done += n
                room = batch - len(to_read)
                to_read += more[:room]  # the rest stays pending for the next round
                look = len(newer) == batch
                again = again or look or len(more) > room
            done += _capture_read(engine, settings, to_read.pop(0))
        if not again:
            return done


def process_forever(engine: Engine, settings: CenterSettings, stop: Event,
                    stored: Event | None = None) -> None:
    """Call :func:`process_pending` whenever ``stored`` is set (the receiver of this
    process committed a batch), and at least every ``process_interval_s`` (the only clock
    when packets are stored by another process), until ``stop`` is set. An error is
    logged, at most once per interval, and tried again next time (the packets stay
    pending)."""
    logged_at = float("-inf")
    while not stop.is_set():
        started = time.monotonic()
        if stored is not None:
            stored.clear()
        try:
            n = process_pending(engine, settings, stored=stored)
            if n:
                log.info("processed %d stored packets", n)
        except Exception:  # keep serving; the packets stay pending and are retried
            if time.monotonic() - logged_at >= settings.law.process_interval_s:
                logged_at = time.monotonic()
                log.exception("processing stored packets failed; retrying")
        _wait_for_work(stop, stored, started + settings.law.process_interval_s)


STOP_CHECK_S = 0.2
"""While waiting for ``stored``, ``stop`` is looked at this often."""


def _wait_for_work(stop: Event, stored: Event | None, until: float) -> None:
    """Wait until the monotonic time ``until``, or until ``stored`` or ``stop`` is set."""
    if stored is None:
        stop.wait(max(0.0, until - time.monotonic()))
        return
    while not stop.is_set() and not stored.is_set():
        left = until - time.monotonic()
        if left <= 0:
            return
        stored.wait(min(left, STOP_CHECK_S))


CASE_ID_MAX = 2**63 - 1
"""The largest id a case can have (the databases' 64-bit integer key)."""


def get_case(session: Session, case_id: int) -> Case:
    """The case, or CaseError naming the id (an id outside 1 … 2^63 − 1 included)."""
    if not 1 <= case_id <= CASE_ID_MAX:
        raise CaseError(f"case id {case_id} out of range (1 to {CASE_ID_MAX})")
    case = session.get(Case, case_id)
    if case is None:
        raise CaseError(f"case {case_id} does not exist")
    return case


FEN = 0.005
"""Two fines differing by less than this many yuan (half a fen) are the same fine."""


def check_fine(case: Case, fine_yuan: float, note: str,
               benchmark: Benchmark | None) -> None:
    """CaseError unless ``fine_yuan`` may be decided for ``case``: a finite number, 0 or
    more, and — under ``benchmark``, the discretion benchmark in force — within its cap
    (``total_cap``: 公路安全保护条例 Art. 64, at most 30 000 yuan) and equal to the graded
    fine, or lower (no fine: 0) only with the reason in ``note`` (行政处罚法 Art. 32: lighter
    or reduced penalty; Art. 33: no penalty). Without ``benchmark`` only the first two are
    checked."""
    where = f"case {case.id}: --fine-yuan"
    if not math.isfinite(fine_yuan):
        raise CaseError(f"{where} must be a finite number of yuan (got {fine_yuan})")
    if fine_yuan < 0:
        raise CaseError(f"{where} must be 0 or more (got {fine_yuan:g})")
    if benchmark is None:
        return
    cap = benchmark.total_cap
    if fine_yuan > cap.cap_yuan:
        raise CaseError(f"{where} must be at most {cap.cap_yuan:g} yuan, the cap of rule "
                        f"{cap.id} ({cap.source.cite()}) (got {fine_yuan:g})")
    graded = case.fine_yuan or 0.0
    rule = f"the graded fine of benchmark {benchmark.id} ({benchmark.title})"
    if fine_yuan > graded + FEN:
        raise CaseError(f"{where} must not exceed {rule}, {graded:g} yuan (got {fine_yuan:g})")
    if fine_yuan < graded - FEN and not note.strip():
        raise CaseError(f"{where} {fine_yuan:g} is below {rule}, {graded:g} yuan: give the "
                        "reason with --note (行政处罚法 第三十二条 lighter or reduced, "
                        "第三十三条 no penalty)")


def list_cases(session: Session, status: str | None = None) -> list[Case]:
    """Cases, newest capture first, of one status or all."""
    query = select(Case).order_by(Case.last_at.desc(), Case.id.desc())
    if status is not None:
        query = query.where(Case.status == status)
    return list(session.scalars(query))


def case_detail(session: Session, case_id: int) -> dict:
    """Everything staff review a case with: the case, each capture with its grade (every
    rule applied) and its legality checks, the device's record, and the audit trail."""
    case = get_case(session, case_id)
    rows = session.execute(select(Capture, CaseCapture.role).join(
        CaseCapture, CaseCapture.capture_id == Capture.id).where(
        CaseCapture.case_id == case_id).order_by(Capture.captured_at)).all()
    trail = session.scalars(select(AuditEntry).where(AuditEntry.case_id == case_id)
                            .order_by(AuditEntry.id)).all()
    return {
        "case": case_to_dict(case),
        "captures": [{**capture_to_dict(c), "role": role} for c, role in rows],
        **procedure_detail(session, case_id),
        "audit": [{"at": _iso(a.at), "actor": a.actor, "action": a.action,
                   "detail": a.detail, "hash": a.entry_hash} for a in trail],
    }


def procedure_detail(session: Session, case_id: int) -> dict:
    """The case's procedure as plain data: its record (party, deadlines, decision,
    service, payment), each step and by whom, its documents and every delivery."""
    rec = session.get(CaseProcedure, case_id)
    steps = session.scalars(select(CaseStep).where(CaseStep.case_id == case_id)
                            .order_by(CaseStep.id)).all()
    docs = session.execute(select(CaseDocument.id, CaseDocument.kind, CaseDocument.sha256,
                                  CaseDocument.created_at).where(
        CaseDocument.case_id == case_id).order_by(CaseDocument.id)).all()
    sent = session.scalars(select(Delivery).where(Delivery.case_id == case_id)
                           .order_by(Delivery.id)).all()
    record = None if rec is None else {
        c.name: _day(getattr(rec, c.name)) for c in CaseProcedure.__table__.columns}
    return {
        "procedure": record,
        "steps": [{"step": t.step, "at": _iso(t.at), "officer_id": t.officer_id,
                   "credential": t.credential, "actor": t.actor, "outcome": t.outcome,
                   "note": t.note} for t in steps],
        "documents": [{"id": i, "kind": k, "sha256": h, "created_at": _iso(t)}
                      for i, k, h, t in docs],
        "deliveries": [{"document_id": x.document_id, "channel": x.channel,
                        "address": x.address, "ok": x.ok, "detail": x.detail,
                        "at": _iso(x.at)} for x in sent],
    }


def _day(value: object) -> object:
    """A date as ISO text, anything else as it is."""
    return value.isoformat() if isinstance(value, date) else value


def _iso(t: datetime | None) -> str | None:
    return None if t is None else utc(t).isoformat().replace("+00:00", "Z")


def case_to_dict(case: Case) -> dict:
    """A case as plain data."""
    return {
        "id": case.id, "plate": case.plate, "plate_colour": case.plate_colour,
        "status": case.status, "created_at": _iso(case.created_at),
        "first_at": _iso(case.first_at), "last_at": _iso(case.last_at),
        "best_capture_id": case.best_capture_id, "action": case.action,
        "fine_yuan": case.fine_yuan, "first_violation": case.first_violation,
        "captures_12m": case.captures_12m, "cases_12m": case.cases_12m,
        "repeat_over_limit": case.repeat_over_limit, "decided_by": case.decided_by,
        "decided_at": _iso(case.decided_at), "decision": case.decision,
        "decision_fine_yuan": case.decision_fine_yuan, "closed_at": _iso(case.closed_at),
    }


def capture_to_dict(c: Capture) -> dict:
    """A capture as plain data, with its whole grade and every legality check."""
    return {
        "id": c.id, "packet_id": c.packet_id, "device_id": c.device_id,
        "sequence": c.sequence, "captured_at": _iso(c.captured_at), "plate": c.plate,
        "plate_colour": c.plate_colour, "plate_confidence": c.plate_confidence,
        "plate_source": c.plate_source, "plate_province_confidence":
        c.plate_province_confidence, "plate_front_rear": c.plate_front_rear,
        "gross_kg": c.gross_kg, "axle_code": c.axle_code, "limit_kg": c.limit_kg,
        "tolerance_kg": c.tolerance_kg, "excess_kg": c.excess_kg, "over": c.over,
        "action": c.action, "fine_yuan": c.fine_yuan, "evidential": c.evidential,
        "checks": c.checks, "grade": c.grade, "grade_error": c.grade_error,
        "vehicle_register": (c.grade or {}).get("register"),
    }
