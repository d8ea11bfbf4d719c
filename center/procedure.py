"""The procedure after review: a state machine whose steps, deadlines and conditions come
from the procedure table (``config/rules/procedure.yaml``, a province's file overriding
it), so the law stays data and this module only enforces it.

captured → reviewed → approved (立案: two enforcement officers, 行政处罚法 Art. 42) →
notified (告知, Arts. 44, 45, 63) → heard (defence received, waived or lapsed) →
legally reviewed (法制审核, Art. 58, when the table asks for it) → decided → served
(Art. 61) → paid (Art. 67; late surcharge Art. 72) → closed. A decision of no penalty
(首违不罚 Art. 33 with a commitment and a reminder, or a 批评教育 band) and a 警告 are
served and closed without payment; a case is rejected with a reason code before it is
decided.

Every step is refused with a one-line reason, and nothing changed, when it is out of
order, taken by an officer who may not take it (unknown, inactive, without a credential
or the role; the same officer twice where two are needed), early (a decision inside the
defence window unless the party waived it), or against the grade (a fine above the cap,
other than the graded one without a reason, or heavier than the one proposed before the
defence, Art. 45). Each step taken is a row of ``case_steps`` and an entry of the
hash-chained audit log; each document rendered is stored with its SHA-256.

Days are China Standard Time calendar days, counted by the table's calendar; ``Desk.today``
is the day a step is taken on (a test walks a case through months by moving it).
"""

import math
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from center import audit
from center.case_documents import document_facts, facts_from_json, facts_to_json
from center.cases import (
    FEN,
    SYSTEM,
    CaseError,
    check_fine,
    get_case,
    law_rules,
    recount,
    recount_plate,
)
from center.china_time import CST
from center.china_time import today as china_today
from center.documents import render as render_document
from center.law_models import Case
from center.notify import Attachment, Message, Notifier, Recipient, build_notifier, undeliverable
from center.owner import issue_code
from center.procedure_models import CaseDocument, CaseProcedure, CaseStep, Delivery
from center.settings import AuthoritySettings, CenterSettings, LawSettings
from center.staff import Officer, StaffError, get_officer
from center.vehicles import lookup as lookup_vehicle
from overload import RuleBook
from overload.procedure import Procedure


class StepError(CaseError):
    """A step of the procedure is refused; the message says why in one line."""


@dataclass(frozen=True)
class Desk:
    """What every step needs besides the case: the rule tables and the procedure table,
    the authority, how parties are reached, and the day the step is taken on."""

    rules: RuleBook
    procedure: Procedure
    law: LawSettings
    authority: AuthoritySettings
    notifier: Notifier | None
    today: date
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def on(self, day: date) -> "Desk":
        """The same desk on another day (for a step recorded, or a test walking time)."""
        return replace(self, today=day, now=datetime.now(UTC))


def desk_for(settings: CenterSettings, *, today: date | None = None,
             notifier: Notifier | None = None, notify: bool = True) -> Desk:
    """The desk of a center's settings: the procedure table named there (or the
    benchmark's), the authority, its notifier (``notify=False``: none, for commands that
    send nothing)."""
    rules = law_rules(settings.law)
    table = settings.procedure.table or settings.law.benchmark
    if notifier is None and notify:
        notifier = build_notifier(settings.procedure.notify, settings.base_dir)
    return Desk(rules, rules.procedure(table), settings.law, settings.procedure.authority,
                notifier, today or china_today())


# --- guards -------------------------------------------------------------------------

def _case(session: Session, case_id: int, step: str, desk: Desk) -> Case:
    """The case, locked for this transaction where the database can, if ``step`` may be
    taken from its state."""
    case = get_case(session, case_id)
    row = desk.procedure.steps[step]
    owed = (case.decision_fine_yuan or 0) > 0
    if not desk.procedure.step_allowed(step, case.status, penalty=owed):
        allowed = [s for s in row.from_states
                   if desk.procedure.step_allowed(step, s, penalty=owed)]
        raise StepError(f"case {case_id} is {case.status}; {step} needs it "
                        f"{' or '.join(allowed)}" + (" (a fine is owed)" if owed and
                                                     case.status in row.from_states else ""))
    return case


def _record(session: Session, case_id: int) -> CaseProcedure:
    rec = session.get(CaseProcedure, case_id)
    if rec is None:
        raise StepError(f"case {case_id} has no procedure record: it was not approved")
    return rec


def _officer(session: Session, officer_id: str, desk: Desk, *, role: str, case_id: int,
             step: str) -> Officer:
    """The officer, if the staff register lets them take this step on this day."""
    try:
        return get_officer(session, officer_id, role=role, on=desk.today)
    except StaffError as exc:
        raise StepError(f"case {case_id}: {step}: {exc}") from None


def _step_officers(session: Session, case_id: int, step: str) -> set[str]:
    return set(session.scalars(select(CaseStep.officer_id).where(
        CaseStep.case_id == case_id, CaseStep.step == step)))


def _take(session: Session, case: Case, step: str, desk: Desk, detail: str, *,
          officer: Officer | None, outcome: str | None = None, note: str = "",
          actor: str | None = None) -> None:
    """Move the case along ``step`` (to the table's state), record it and audit it."""
    before = case.status
    case.status = desk.procedure.steps[step].to
    session.flush()
    recount_plate(session, case.plate, desk.rules)  # Art. 66 and Art. 33 count passed cases
    who = actor or (f"{officer.officer_id} {officer.name} ({officer.credential_number})"
                    if officer else SYSTEM)
    session.add(CaseStep(case_id=case.id, step=step, at=desk.now,
                         officer_id=officer.officer_id if officer else None,
                         credential=officer.credential_number if officer else None,
                         actor=who, outcome=outcome, note=note))
    source = desk.procedure.steps[step].cite()
    audit.append(session, case.id, step, f"{before} → {case.status} on {desk.today}: "
                 f"{detail} ({source})" + (f"; note: {note}" if note else ""), actor=who,
                 at=desk.now)
    session.flush()


def _not_blank(text: str, what: str, case_id: int, bound: int = 2000) -> str:
    text = (text or "").strip()
    if not text:
        raise StepError(f"case {case_id}: {what} is required")
    if len(text) > bound:
        raise StepError(f"case {case_id}: {what} is longer than {bound} characters")
    return text


def _bounded(text: str, what: str, case_id: int, bound: int = 2000) -> str:
    text = (text or "").strip()
    if len(text) > bound:
        raise StepError(f"case {case_id}: {what} is longer than {bound} characters")
    return text


# --- the steps ------------------------------------------------------------------------

def review(session: Session, case_id: int, officer_id: str, desk: Desk,
           note: str = "") -> Case:
    """The first officer reviews the evidence and finds it a case (行政处罚法 Art. 41 ¶2:
    every record reviewed before it is evidence)."""
    case = _case(session, case_id, "review", desk)
    officer = _officer(session, officer_id, desk, role="reviewer", case_id=case_id, step="review")
    _take(session, case, "review", desk, officer=officer, detail="evidence reviewed",
          note=_bounded(note, "note", case_id))
    case.decided_by, case.decided_at = officer.officer_id, desk.now
    return case


def approve(session: Session, case_id: int, officer_id: str, desk: Desk,
            note: str = "") -> Case:
    """A second officer, not the reviewer, approves: the case is filed (立案) with its
    party from the vehicle register, its number, the decision deadline (Art. 60) and the
    limitation of the act (Art. 36)."""
    case = _case(session, case_id, "approve", desk)
    officer = _officer(session, officer_id, desk, role="reviewer", case_id=case_id, step="approve")
    if officer.officer_id in _step_officers(session, case_id, "review"):
        raise StepError(f"case {case_id}: {officer.officer_id} reviewed it and cannot also "
                        "approve it (two officers, 行政处罚法 第四十二条)")
    act_day = case.first_at.astimezone(CST).date()
    limitation = desk.procedure.due("limitation", act_day)
    if desk.today > limitation.date:
        raise StepError(f"case {case_id}: the act of {act_day} is past its limitation on "
                        f"{limitation.date} ({limitation.deadline.source.cite()})")
    vehicle = lookup_vehicle(session, case.plate, case.plate_colour)
    rec = CaseProcedure(
        case_id=case.id, procedure=desk.procedure.name,
        number=f"{desk.authority.number_prefix}〔{desk.today.year}〕{case.id:06d}号",
        filed_on=desk.today, decide_by=desk.procedure.due("decide_within", desk.today).date,
        limitation_on=limitation.date, public_notice=False, party_consent=False,
        hearing_right=False,
        hearing_requested=False, legal_review_required=False,
        **_party(case, vehicle))
    session.add(rec)
    _take(session, case, "approve", desk, officer=officer,
          detail=f"filed as {rec.number}; party {rec.party_name} "
          f"({'from the vehicle register' if vehicle else 'not in the vehicle register'}); "
          f"decide by {rec.decide_by}", note=_bounded(note, "note", case_id))
    return case


def _party(case: Case, vehicle) -> dict:
    """The party's facts from the vehicle register, or the plate's owner, unknown."""
    if vehicle is None:
        return {"party_kind": "person", "party_name": f"{case.plate} 号车辆所有人"}
    return {"party_kind": vehicle.owner_kind, "party_name": vehicle.owner_name,
            "party_id_number": vehicle.owner_id_number, "party_address": vehicle.address,
            "party_phone": vehicle.phone, "party_email": vehicle.email,
            "vehicle_kind": vehicle.kind,
            "transport_certificate": vehicle.transport_certificate}


PARTY_FIELDS = {"kind": ("party_kind", 8), "name": ("party_name", 128),
                "id_number": ("party_id_number", 64), "address": ("party_address", 500),
                "phone": ("party_phone", 32), "email": ("party_email", 254),
                "driver": ("driver", 128), "source_unit": ("source_unit", 256),
                "loading_slip": ("loading_slip", 128),
                "transport_certificate": ("transport_certificate", 64),
                "consent": ("party_consent", 3)}
"""Facts of the party and the trip staff may set on a filed case (Order 62 Art. 44 asks
for the driver, the source unit and the loading slip when known)."""


def set_party(session: Session, case_id: int, officer_id: str, desk: Desk,
              **facts: str) -> CaseProcedure:
    """Set the party's or the trip's facts before the decision (each bounded), audited."""
    rec = _record(session, case_id)
    case = get_case(session, case_id)
    if case.status in ("decided", "served", "paid", "closed", "rejected"):
        raise StepError(f"case {case_id} is {case.status}: its party can no longer change")
    officer = _officer(session, officer_id, desk, role="reviewer", case_id=case_id, step="party")
    changed = []
    for key, value in facts.items():
        if key not in PARTY_FIELDS:
            raise StepError(f"case {case_id}: unknown fact {key!r} (one of "
                            f"{', '.join(PARTY_FIELDS)})")
        column, bound = PARTY_FIELDS[key]
        text = _bounded(value, key, case_id, bound)
        if key == "kind" and text not in ("person", "company"):
            raise StepError(f"case {case_id}: kind must be person or company (got {text!r})")
        if key == "consent":
            if text not in ("yes", "no"):
                raise StepError(f"case {case_id}: consent must be yes or no (the party's "
                                f"signed agreement to electronic service, 行政处罚法 第六十一条 "
                                f"第二款; got {text!r})")
            rec.party_consent = text == "yes"
        else:
            setattr(rec, column, text or None)
        changed.append(f"{key}={text!r}")
    if not changed:
        raise StepError(f"case {case_id}: no fact given")
    audit.append(session, case_id, "party", "; ".join(changed),
                 actor=f"{officer.officer_id} {officer.name}", at=desk.now)
    return rec


# --- documents and delivery -------------------------------------------------------------

def _document(session: Session, case: Case, rec: CaseProcedure, kind: str, desk: Desk, *,
              officers: tuple[Officer, ...] | None = None,
              lookup_code: str | None = None) -> CaseDocument:
    """Render one document of the case from its stored facts, store it with its hash.
    ``officers``: the two who sign (default: those who reviewed and approved it);
    ``lookup_code``: the owner's look-up code, printed on a notice."""
    facts = document_facts(session, case, rec, kind, desk, officers=officers,
                           lookup_code=lookup_code)
    rendered = render_document(kind, facts)
    doc = CaseDocument(case_id=case.id, kind=kind, created_at=desk.now,
                       sha256=rendered.sha256, facts=facts_to_json(facts),
                       html=rendered.html, pdf=rendered.pdf)
    session.add(doc)
    session.flush()
    audit.append(session, case.id, "document", f"{kind} rendered, PDF SHA-256 "
                 f"{rendered.sha256}", actor=SYSTEM, at=desk.now)
    return doc


def regenerate(session: Session, document_id: int) -> bool:
    """Whether rendering a stored document's facts again gives the same PDF bytes."""
    doc = session.get(CaseDocument, document_id)
    if doc is None:
        raise CaseError(f"document {document_id} does not exist")
    return render_document(doc.kind, facts_from_json(doc.facts)).sha256 == doc.sha256


def _deliver(session: Session, case: Case, rec: CaseProcedure, docs: list[CaseDocument],
             desk: Desk, *, what: str) -> bool:
    """Send the documents to the party by the notifier's channels, every attempt
    recorded; whether one reached the party (if not, the caller serves by public
    notice: :func:`_publish`)."""
    recipient = Recipient(rec.party_name, rec.party_email, rec.party_phone, rec.party_address,
                          rec.party_consent)
    message = Message(case.id, what, f"{desk.authority.name} {DOC_TITLES[what]} {rec.number}",
                      f"{rec.party_name}：关于车辆 {case.plate} 的{DOC_TITLES[what]}，见附件。",
                      tuple(Attachment(f"{rec.number}-{d.kind}.pdf", d.pdf, "application/pdf")
                            for d in docs))
    attempts = desk.notifier.deliver(message, recipient) if desk.notifier else []
    for a in attempts:
        session.add(Delivery(case_id=case.id, document_id=docs[0].id, channel=a.channel,
                             address=a.address, ok=a.ok, detail=a.detail, at=a.at))
    reached = bool(attempts) and not undeliverable(attempts)
    tried = "; ".join(f"{a.channel} {'ok' if a.ok else 'failed'}: {a.detail}"
                      for a in attempts) or "no channel configured"
    audit.append(session, case.id, "delivery", f"{what} to {rec.party_name}: {tried}",
                 actor=SYSTEM, at=desk.now)
    session.flush()
    return reached


def _publish(session: Session, case: Case, rec: CaseProcedure, desk: Desk) -> None:
    """Serve by public notice (公告送达) what no channel delivered: the public notice is
    rendered (with the dates already counted from the day it counts as served) and
    recorded as a delivery."""
    notice = _document(session, case, rec, "public_notice", desk)
    session.add(Delivery(case_id=case.id, document_id=notice.id, channel="public",
                         address=desk.authority.name, ok=True,
                         detail=f"公告送达: the party could not be reached; served on "
                         f"{_deemed_served(desk)}", at=desk.now))
    rec.public_notice = True
    session.flush()


def _deemed_served(desk: Desk) -> date:
    """The day a document served by public notice today counts as served (the table's
    ``public_notice`` period)."""
    return desk.procedure.due("public_notice", desk.today).date


DOC_TITLES = {"notice": "违法行为通知书", "decision": "行政处罚决定书",
              "no_penalty_decision": "不予行政处罚决定书"}


# --- notice, defence, legal review ---------------------------------------------------------

def notify(session: Session, case_id: int, officer_id: str, desk: Desk) -> Case:
    """Tell the party the facts, the evidence, the rule and band applied, the proposed
    outcome and their rights (Arts. 44, 45, 63): the notice is rendered and delivered, the
    defence window opens. The notice carries a new look-up code (:func:`center.owner.
    issue_code`) with which the party sees the case and states a defence online; the
    notice's stored facts hold that code, as the PDF the party receives does."""
    case = _case(session, case_id, "notify", desk)
    rec = _record(session, case_id)
    officer = _officer(session, officer_id, desk, role="reviewer", case_id=case_id, step="notify")
    rec.proposed_action, rec.proposed_fine_yuan = case.action, case.fine_yuan
    rec.notified_on = desk.today
    rec.defence_until = desk.procedure.due("defence_window", desk.today).date
    rec.hearing_right = desk.procedure.hearing_right(
        case.fine_yuan or 0.0, rec.party_kind, revokes_certificate=case.repeat_over_limit)
    notice = _document(session, case, rec, "notice", desk,
                       lookup_code=issue_code(session, case.id))
    reached = _deliver(session, case, rec, [notice], desk, what="notice")
    if not reached:  # the party is told only once the public notice counts as served
        rec.notified_on = _deemed_served(desk)
        rec.defence_until = desk.procedure.due("defence_window", rec.notified_on).date
        _publish(session, case, rec, desk)
    how = "delivered" if reached else "served by public notice"
    _take(session, case, "notify", desk, officer=officer,
          detail=f"notice {notice.sha256[:12]} {how}"
          f"; proposed {case.action} {case.fine_yuan or 0:g} yuan; defence until "
          f"{rec.defence_until}; hearing right {'yes' if rec.hearing_right else 'no'}")
    return case


DEFENCE_OUTCOMES = ("received", "waived", "lapsed")


def defence(session: Session, case_id: int, officer_id: str, desk: Desk, *, outcome: str,
            text: str = "", answer: str = "", hearing: bool = False) -> Case:
    """The party's statement and defence (陈述、申辩) received and answered, waived, or
    lapsed once the window closed; a hearing asked for where the party has the right.
    Whether the table then asks for a legal review is settled here."""
    case = _case(session, case_id, "defence", desk)
    rec = _record(session, case_id)
    officer = _officer(session, officer_id, desk, role="reviewer", case_id=case_id, step="defence")
    if outcome not in DEFENCE_OUTCOMES:
        raise StepError(f"case {case_id}: defence must be one of {', '.join(DEFENCE_OUTCOMES)}"
                        f" (got {outcome!r})")
    if outcome == "lapsed" and desk.today <= rec.defence_until:
        raise StepError(f"case {case_id}: the defence window is open until "
                        f"{rec.defence_until}; it lapses only after that")
    if outcome == "received":
        rec.defence_text = _not_blank(text, "the party's statement (--text)", case_id)
        rec.defence_answer = _not_blank(answer, "the answer to it (--answer)", case_id)
    if hearing:
        if not rec.hearing_right:
            raise StepError(f"case {case_id}: the proposed outcome carries no hearing right "
                            f"({desk.procedure.steps['notify'].cite()})")
        by = desk.procedure.due("hearing_request", rec.notified_on).date
        if desk.today > by:
            raise StepError(f"case {case_id}: a hearing had to be asked for by {by}")
    rec.defence, rec.defence_on, rec.hearing_requested = outcome, desk.today, hearing
    need, why = desk.procedure.legal_review_needed(
        case.fine_yuan or 0.0, hearing_held=hearing, revokes_certificate=case.repeat_over_limit)
    rec.legal_review_required, rec.legal_review_reason = need, why
    if outcome != "lapsed":
        _document(session, case, rec, "defence_record", desk)
    _take(session, case, "defence", desk, officer=officer, detail=f"defence {outcome}"
          + ("; hearing asked for" if hearing else "")
          + f"; legal review {'required: ' + why if need else 'not required'}",
          outcome=outcome)
    return case


def legal_review(session: Session, case_id: int, officer_id: str, desk: Desk, *,
                 passed: bool, note: str = "") -> Case:
    """法制审核 (Art. 58) by a legal reviewer who took no other step on the case; a
    review not passed is recorded and the case stays where it is: no decision without one
    passed."""
    case = _case(session, case_id, "legal_review", desk)
    rec = _record(session, case_id)
    officer = _officer(session, officer_id, desk, role="legal_reviewer", case_id=case_id,
                       step="legal_review")
    if not rec.legal_review_required:
        raise StepError(f"case {case_id}: the procedure table asks for no legal review here")
    took = set(session.scalars(select(CaseStep.officer_id).where(
        CaseStep.case_id == case_id, CaseStep.step != "legal_review")))
    if officer.officer_id in took:
        raise StepError(f"case {case_id}: {officer.officer_id} took part in the case and "
                        "cannot also review it for legality "
                        f"({desk.procedure.steps['legal_review'].cite()})")
    note = _not_blank(note, "the legal reviewer's opinion (--note)", case_id)
    if not passed:
        session.add(CaseStep(case_id=case.id, step="legal_review", at=desk.now,
                             officer_id=officer.officer_id,
                             credential=officer.credential_number,
                             actor=f"{officer.officer_id} {officer.name}",
                             outcome="not_passed", note=note))
        audit.append(session, case.id, "legal_review", f"not passed: {note}",
                     actor=f"{officer.officer_id} {officer.name}", at=desk.now)
        return case
    _take(session, case, "legal_review", desk, officer=officer, detail="legal review passed",
          outcome="passed", note=note)
    return case


# --- decision, service, payment, the ends -----------------------------------------------

NO_PENALTY_REASONS = ("first_violation", "education")
"""Why a case may end without a penalty: 首违不罚 (行政处罚法 Art. 33 ¶1) or a 批评教育
band of the benchmark (e.g. 浙江省公路条例 Art. 53(一))."""


def _two_officers(session: Session, case_id: int, officer_ids: tuple[str, ...], step: str,
                  desk: Desk) -> list[Officer]:
    if len(set(officer_ids)) < 2:
        raise StepError(f"case {case_id}: {step} needs two different officers (行政处罚法 "
                        f"第四十二条); got {', '.join(officer_ids) or 'none'}")
    return [_officer(session, o, desk, role="reviewer", case_id=case_id, step=step)
            for o in officer_ids[:2]]


def _ready_to_decide(case: Case, rec: CaseProcedure, desk: Desk) -> None:
    if rec.defence != "waived" and rec.defence_until and desk.today <= rec.defence_until:
        raise StepError(f"case {case.id}: the defence window is open until "
                        f"{rec.defence_until} and was not waived: no decision before it "
                        f"closes ({desk.procedure.deadlines['defence_window'].source.cite()})")
    if rec.legal_review_required and case.status != "legally_reviewed":
        raise StepError(f"case {case.id}: a legal review is required ({rec.legal_review_reason})"
                        f" and has not passed ({desk.procedure.steps['legal_review'].cite()})")


def _penalty(case: Case, rec: CaseProcedure, fine_yuan: float | None, note: str,
             desk: Desk) -> float:
    """The fine decided: the graded one unless lower with a reason, within the cap, and
    never heavier than the one proposed before the defence (Art. 45)."""
    if case.action == "education":
        raise StepError(f"case {case.id}: the band is 批评教育 (no penalty); decide it with "
                        "--no-penalty education")
    if case.action == "warning":
        if fine_yuan not in (None, 0):
            raise StepError(f"case {case.id}: the grade is a warning (警告); no fine can be "
                            f"decided (got {fine_yuan:g})")
        return 0.0
    fine = case.fine_yuan if fine_yuan is None else fine_yuan
    benchmark = desk.rules.benchmark(desk.law.benchmark)
    check_fine(case, fine, note, benchmark)
    proposed = rec.proposed_fine_yuan or 0.0
    if fine > proposed + FEN:
        raise StepError(f"case {case.id}: {fine:g} yuan is heavier than the {proposed:g} yuan "
                        "proposed in the notice "
                        f"({desk.procedure.no_heavier_after_defence.cite()})")
    return fine


def _no_penalty(session: Session, case: Case, rec: CaseProcedure, desk: Desk, *,
                reason: str, commitment: str) -> None:
    if reason not in NO_PENALTY_REASONS:
        raise StepError(f"case {case.id}: --no-penalty must be one of "
                        f"{', '.join(NO_PENALTY_REASONS)} (got {reason!r})")
    if reason == "education" and case.action != "education":
        raise StepError(f"case {case.id}: the grade is {case.action}, not a 批评教育 band")
    if reason == "first_violation":
        recount(session, case, desk.rules)
        rule = desk.procedure.first_violation
        if not case.first_violation:
            raise StepError(f"case {case.id}: {case.plate} has an earlier case: not a first "
                            f"violation ({rule.source.cite()})")
        if case.action not in rule.minor_actions:
            raise StepError(f"case {case.id}: a {case.action} grade is not minor under the "
                            f"table (minor: {', '.join(rule.minor_actions)}; "
                            f"{rule.source.cite()})")
        rec.commitment = _not_blank(commitment, "the party's commitment (--commitment)",
                                    case.id)
        rec.reminder_on = desk.procedure.due("reminder_after", desk.today).date


def decide(session: Session, case_id: int, officer_ids: tuple[str, ...], desk: Desk, *,
           no_penalty: str | None = None, fine_yuan: float | None = None,
           commitment: str = "", note: str = "") -> Case:
    """Decide with reasons, by two officers: the graded penalty (a fine, or a 警告), or no
    penalty; the decision documents are rendered (for a company fined, with the 信用修复
    and 合规建议 notices: 三书同达), and the day of service falls due (Art. 61)."""
    case = _case(session, case_id, "decide", desk)
    rec = _record(session, case_id)
    officers = _two_officers(session, case_id, officer_ids, "decide", desk)
    _ready_to_decide(case, rec, desk)
    note = _bounded(note, "note", case_id)
    if no_penalty is not None:
        if fine_yuan not in (None, 0):
            raise StepError(f"case {case_id}: no penalty and a fine of {fine_yuan:g} yuan")
        _no_penalty(session, case, rec, desk, reason=no_penalty, commitment=commitment)
        rec.decision_kind, rec.decision_reason = "no_penalty", no_penalty
        case.decision, case.decision_fine_yuan = f"no_penalty:{no_penalty}", 0.0
        kinds = ["no_penalty_decision"]
    else:
        fine = _penalty(case, rec, fine_yuan, note, desk)
        rec.decision_kind, rec.decision_reason = "penalty", case.action
        case.decision, case.decision_fine_yuan = case.action, fine
        kinds = ["decision"] + (["credit_repair", "compliance_advice"]
                                if rec.party_kind == "company" and fine > 0 else [])
    rec.decided_on = desk.today
    rec.serve_by = desk.procedure.due("serve_within", desk.today).date
    case.decided_at = desk.now
    case.decided_by = " & ".join(o.officer_id for o in officers)
    late = f"; {desk.today - rec.decide_by} past the deadline" if desk.today > rec.decide_by \
        else ""
    for kind in kinds:
        _document(session, case, rec, kind, desk, officers=tuple(officers))
    _take(session, case, "decide", desk, officer=officers[0],
          detail=f"{case.decision}, fine {case.decision_fine_yuan:g} yuan, by "
          f"{case.decided_by}; serve by {rec.serve_by}{late}", outcome=rec.decision_kind,
          note=note, actor=" & ".join(f"{o.officer_id} {o.name} ({o.credential_number})"
                                      for o in officers))
    return case


def _decision_docs(session: Session, case_id: int) -> list[CaseDocument]:
    kinds = ("decision", "no_penalty_decision", "credit_repair", "compliance_advice")
    return list(session.scalars(select(CaseDocument).where(
        CaseDocument.case_id == case_id, CaseDocument.kind.in_(kinds))
        .order_by(CaseDocument.id)))


def serve(session: Session, case_id: int, officer_id: str, desk: Desk) -> Case:
    """Serve the decision (Art. 61): delivered by the notifier's channels or by public
    notice; a fine falls due for payment from the day of service (Art. 67)."""
    case = _case(session, case_id, "serve", desk)
    rec = _record(session, case_id)
    officer = _officer(session, officer_id, desk, role="reviewer", case_id=case_id, step="serve")
    docs = _decision_docs(session, case_id)
    what = "no_penalty_decision" if rec.decision_kind == "no_penalty" else "decision"
    reached = _deliver(session, case, rec, docs, desk, what=what)
    rec.served_on = desk.today if reached else _deemed_served(desk)
    if (case.decision_fine_yuan or 0) > 0:
        rec.pay_by = desk.procedure.due("pay_within", rec.served_on).date
    if not reached:
        _publish(session, case, rec, desk)
    late = f"; {desk.today - rec.serve_by} past the deadline" if desk.today > rec.serve_by \
        else ""
    how = "delivered" if reached else "served by public notice"
    _take(session, case, "serve", desk, officer=officer,
          detail=f"{len(docs)} documents {how}"
          + (f"; pay by {rec.pay_by}" if rec.pay_by else "") + late)
    return case


def amount_due(rec: CaseProcedure, case: Case, desk: Desk) -> tuple[float, float]:
    """The fine and the late surcharge owed on the desk's day (Art. 72(一): a share of the
    fine a day past the deadline, never more than the fine)."""
    fine = case.decision_fine_yuan or 0.0
    late_days = max(0, (desk.today - rec.pay_by).days) if rec.pay_by else 0
    return fine, desk.procedure.late_surcharge(fine, late_days) if late_days else 0.0


def pay(session: Session, case_id: int, officer_id: str, desk: Desk, *,
        amount_yuan: float) -> Case:
    """Record the payment the collecting bank reports: the fine, plus the late surcharge
    when paid after the deadline; any other amount is refused with the amount due."""
    case = _case(session, case_id, "pay", desk)
    rec = _record(session, case_id)
    officer = _officer(session, officer_id, desk, role="reviewer", case_id=case_id, step="pay")
    fine, surcharge = amount_due(rec, case, desk)
    if fine <= 0:
        raise StepError(f"case {case_id}: nothing to pay (decision {case.decision})")
    if not (math.isfinite(amount_yuan) and abs(amount_yuan - (fine + surcharge)) < FEN):
        raise StepError(f"case {case_id}: {fine + surcharge:.2f} yuan is due on {desk.today}"
                        f" (fine {fine:g}" + (f" + late surcharge {surcharge:.2f}, "
                        f"{desk.procedure.late_surcharge_rule.source.cite()}" if surcharge
                        else "") + f"); got {amount_yuan:g}")
    rec.paid_on, rec.paid_yuan, rec.surcharge_yuan = desk.today, amount_yuan, surcharge
    _take(session, case, "pay", desk, officer=officer, detail=f"paid {amount_yuan:.2f} yuan"
          + (f" including a late surcharge of {surcharge:.2f}" if surcharge else ""))
    return case


def close(session: Session, case_id: int, officer_id: str, desk: Desk) -> Case:
    """Close a case paid, or served with nothing to pay (no penalty, a 警告)."""
    case = _case(session, case_id, "close", desk)
    rec = _record(session, case_id)
    officer = _officer(session, officer_id, desk, role="reviewer", case_id=case_id, step="close")
    if case.status != "paid" and (case.decision_fine_yuan or 0) > 0:
        raise StepError(f"case {case_id}: a fine of {case.decision_fine_yuan:g} yuan is "
                        f"not paid (due by {rec.pay_by})")
    case.closed_at = desk.now
    _take(session, case, "close", desk, officer=officer, detail=f"closed: {case.decision}")
    return case


def reject(session: Session, case_id: int, officer_id: str, desk: Desk, *, reason: str,
           note: str = "") -> Case:
    """Reject a case before its decision, with a reason code of the table and a note."""
    case = _case(session, case_id, "reject", desk)
    officer = _officer(session, officer_id, desk, role="reviewer", case_id=case_id, step="reject")
    reasons = desk.procedure.reject_reasons
    if reason not in reasons:
        raise StepError(f"case {case_id}: reason must be one of {', '.join(reasons)} "
                        f"(got {reason!r})")
    rec = session.get(CaseProcedure, case_id)
    if rec is not None:
        rec.reject_reason = reason
    case.decision, case.closed_at = f"rejected:{reason}", desk.now
    _take(session, case, "reject", desk, officer=officer, detail=f"rejected: {reasons[reason]}",
          outcome=reason, note=_bounded(note, "note", case_id))
    return case


# --- what falls due ---------------------------------------------------------------------

REMINDER_SHOWN_DAYS = 30
"""A 首违不罚 reminder stays on the list this many days past its day (a case closed long
ago drops off)."""


@dataclass(frozen=True)
class DueItem:
    """One deadline of one open case: what must happen by when, and how it stands."""

    case_id: int
    plate: str
    status: str
    what: str
    due: date
    days_left: int
    source: str

    @property
    def overdue(self) -> bool:
        return self.days_left < 0


def _items(case: Case, rec: CaseProcedure, desk: Desk) -> list[tuple[str, date, str]]:
    """The deadlines that bind a case in its state: (what, by when, source)."""
    d, steps = desk.procedure.deadlines, case.status
    out = []
    if steps in ("approved", "notified", "heard", "legally_reviewed"):
        out.append(("decide", rec.decide_by, d["decide_within"].source.cite()))
    if steps == "notified" and rec.defence_until:
        out.append(("defence window closes", rec.defence_until,
                    d["defence_window"].source.cite()))
    if steps == "decided" and rec.serve_by:
        out.append(("serve the decision", rec.serve_by, d["serve_within"].source.cite()))
    if steps == "served" and rec.pay_by:
        out.append(("payment", rec.pay_by, d["pay_within"].source.cite()))
    if rec.reminder_on and steps in ("decided", "served", "closed") and \
            rec.reminder_on >= desk.today - timedelta(days=REMINDER_SHOWN_DAYS):
        out.append(("首违不罚 follow-up reminder", rec.reminder_on,
                    d["reminder_after"].source.cite()))
    return out


def due(session: Session, desk: Desk, within_days: int = 7) -> list[DueItem]:
    """Every deadline of an open case that falls within ``within_days`` of the desk's day
    or is past, soonest first; cases awaiting review are listed against the act's
    limitation (Art. 36)."""
    horizon = desk.today + timedelta(days=within_days)
    items: list[DueItem] = []
    reminders_since = desk.today - timedelta(days=REMINDER_SHOWN_DAYS)
    rows = session.execute(select(Case, CaseProcedure).join(
        CaseProcedure, CaseProcedure.case_id == Case.id).where(or_(
            Case.status.not_in(("closed", "rejected")),
            CaseProcedure.reminder_on >= reminders_since))).all()
    for case, rec in rows:
        for what, day, source in _items(case, rec, desk):
            items.append(DueItem(case.id, case.plate, case.status, what, day,
                                 (day - desk.today).days, source))
    unfiled = session.scalars(select(Case).where(Case.status.in_(("awaiting_review",
                                                                 "reviewed")))).all()
    for case in unfiled:
        limit = desk.procedure.due("limitation", case.first_at.astimezone(CST).date())
        items.append(DueItem(case.id, case.plate, case.status, "file before limitation",
                             limit.date, (limit.date - desk.today).days,
                             limit.deadline.source.cite()))
    return sorted((i for i in items if i.due <= horizon), key=lambda i: (i.due, i.case_id))
