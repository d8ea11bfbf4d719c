"""The procedure after review, walked on real databases (SQLite and PostgreSQL) from a
stored packet to a closed case: two officers, the notice, the defence window, the
decision with its documents rendered to PDF and read back with pdftotext, service by the
letter channel, payment with its late surcharge, and the refusals that leave everything
as it was."""

import email
import hashlib
import re
import socket
import subprocess
from datetime import date, timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from center_factory import (
    REGISTRY_CSV,
    STAFF_CSV,
    T0,
    center_engine,
    make_packet,
    store_packets,
)
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from center import audit, owner, procedure
from center.cases import CaseError, process_pending
from center.law_models import AuditEntry, Case
from center.notify import EmailSettings, LetterSettings, NotifySettings
from center.procedure_models import CaseDocument, CaseProcedure, CaseStep, Delivery
from center.registry import import_registry
from center.settings import AuthoritySettings, CenterSettings, LawSettings, ProcedureSettings
from center.staff import import_staff
from center.vehicles import import_vehicles

VEHICLES_CSV = """\
plate,plate_colour,kind,licence_mass_kg,air_suspension,axle_code,owner_kind,owner_name,\
owner_id_number,address,phone,email,transport_certificate
浙A12345,yellow,,,false,157,person,王五,,浙江省杭州市上城区示例街2号,,,
浙B77777,yellow,,,false,157,company,杭州示例物流有限公司,91330100MA2B3C4D5N,\
浙江省杭州市西湖区示例路1号,0571-88880000,fleet@example.com,330100123456
"""
WEBSITE = "https://zhichao.example.gov.cn"
"""The authority's public pages, printed on the notice with the look-up path."""
DAY = date(2026, 6, 2)
"""The day the officers first take up the cases (the captures are of 1 June)."""


@pytest.fixture
def center(center_db_url: str, tmp_path: Path):
    """A migrated center with the device, staff and vehicle registers imported."""
    engine = center_engine(center_db_url)
    files = {"devices.csv": REGISTRY_CSV, "staff.csv": STAFF_CSV,
             "vehicles.csv": VEHICLES_CSV}
    for name, body in files.items():
        (tmp_path / name).write_text(body, encoding="utf-8")
    with Session(engine) as s, s.begin():
        import_registry(s, tmp_path / "devices.csv", today=date(2026, 2, 1))
        import_staff(s, tmp_path / "staff.csv")
        import_vehicles(s, tmp_path / "vehicles.csv")
    yield engine, tmp_path
    engine.dispose()


def settings_for(url_engine, tmp_path: Path, benchmark: str) -> CenterSettings:
    return CenterSettings(
        database=str(url_engine.url.render_as_string(hide_password=False)),
        law=LawSettings(benchmark=benchmark),
        procedure=ProcedureSettings(
            authority=AuthoritySettings(website=WEBSITE),
            notify=NotifySettings(channels=["letter"],
                                  letter=LetterSettings(folder=tmp_path / "letters"))))


def open_case(engine, settings: CenterSettings, *, plate: str, gross_kg: float,
              sequence: int, days_later: int = 0) -> int:
    """A case from one stored packet of a 157 of ``gross_kg``, captured ``days_later``
    days after 1 June (another trip when more than the trip window apart)."""
    packet = make_packet(plate=plate, gross_kg=gross_kg, sequence=sequence,
                         captured_at=T0 + timedelta(days=days_later, minutes=sequence))
    if sequence == 1:
        store_packets(engine, [packet])
    else:
        _store_more(engine, packet)
    process_pending(engine, settings)
    with Session(engine) as s:
        return s.scalars(select(Case.id).where(Case.plate == plate)
                         .order_by(Case.id.desc())).first()


def _store_more(engine, packet) -> None:
    from center.ingest_models import StoredPacket  # noqa: PLC0415
    from evidence.packet import canonical_bytes, packet_hash  # noqa: PLC0415
    meta = canonical_bytes(packet)
    with engine.begin() as conn:
        conn.execute(StoredPacket.__table__.insert().values(
            device_id=packet.device_id, sequence=packet.sequence, hash=packet_hash(meta),
            previous_hash=packet.previous_hash, captured_at=packet.captured_at, lane=1,
            suspected_overload=True, meta=meta, signature=b"s", received_at=T0))


def step(engine, settings, day: date, name: str, case_id: int, *officers: str, **kw):
    """Take one step in its own transaction on ``day``."""
    desk = procedure.desk_for(settings, today=day)
    with Session(engine) as s, s.begin():
        fn = getattr(procedure, name)
        if name == "decide":
            return fn(s, case_id, officers, desk, **kw).status
        return getattr(fn(s, case_id, officers[0], desk, **kw), "status", None)


def state(engine, case_id: int) -> tuple:
    """Everything a refused step must leave as it was."""
    with Session(engine) as s:
        count = lambda model: s.scalar(select(func.count()).select_from(model))  # noqa: E731
        case = s.get(Case, case_id)
        return (case.status, case.decision, case.decision_fine_yuan, count(AuditEntry),
                count(CaseStep), count(CaseDocument), count(Delivery))


def refused(engine, settings, day, name, case_id, *officers, match: str, **kw) -> None:
    before = state(engine, case_id)
    with pytest.raises(CaseError, match=match) as caught:
        step(engine, settings, day, name, case_id, *officers, **kw)
    assert "\n" not in str(caught.value)  # one line
    assert state(engine, case_id) == before


def pdf_text(engine, case_id: int, kind: str) -> str:
    """The document's PDF as pdftotext reads it, with all white space removed."""
    with Session(engine) as s:
        pdf = s.scalars(select(CaseDocument.pdf).where(
            CaseDocument.case_id == case_id, CaseDocument.kind == kind)).one()
    out = subprocess.run(["pdftotext", "-layout", "-", "-"], input=pdf, capture_output=True,
                         check=True, timeout=60).stdout.decode("utf-8")
    return re.sub(r"第\d+页共\d+页", "", re.sub(r"\s+", "", out))  # page footers out


def documents(engine, case_id: int) -> list[str]:
    with Session(engine) as s:
        return list(s.scalars(select(CaseDocument.kind).where(
            CaseDocument.case_id == case_id).order_by(CaseDocument.id)))


def review_and_notify(engine, settings, case_id: int) -> None:
    assert step(engine, settings, DAY, "review", case_id, "ZF001") == "reviewed"
    assert step(engine, settings, DAY, "approve", case_id, "ZF002") == "approved"
    assert step(engine, settings, DAY, "notify", case_id, "ZF001") == "notified"


def test_a_national_case_walks_from_capture_to_paid_with_its_documents(center):
    engine, tmp = center
    settings = settings_for(engine, tmp, "national")
    case_id = open_case(engine, settings, plate="浙A12345", gross_kg=55_400, sequence=1)
    review_and_notify(engine, settings, case_id)
    with Session(engine) as s:
        rec = s.get(CaseProcedure, case_id)
        fine, until = s.get(Case, case_id).fine_yuan, rec.defence_until
        assert (rec.party_name, rec.party_kind, rec.hearing_right) == ("王五", "person", False)
    assert fine == 3000 and until == date(2026, 6, 9)  # 5 working days (Art. 64(一), 85)
    refused(engine, settings, until, "decide", case_id, "ZF001", "ZF002",
            match="is notified; decide needs it heard")
    refused(engine, settings, until, "defence", case_id, "ZF001", outcome="lapsed",
            match="lapses only after")
    after = until + timedelta(days=1)
    assert step(engine, settings, after, "defence", case_id, "ZF001",
                outcome="lapsed") == "heard"
    refused(engine, settings, after, "decide", case_id, "ZF001", "ZF001",
            match="two different officers")
    assert step(engine, settings, after, "decide", case_id, "ZF001", "ZF002") == "decided"
    assert step(engine, settings, after, "serve", case_id, "ZF002") == "served"
    refused(engine, settings, after, "close", case_id, "ZF001", match="fine is owed")
    assert step(engine, settings, after, "pay", case_id, "ZF002", amount_yuan=3000) == "paid"
    assert step(engine, settings, after, "close", case_id, "ZF001") == "closed"

    assert documents(engine, case_id) == ["notice", "decision"]
    notice = pdf_text(engine, case_id, "notice")
    code = re.search(r"案件查询码：([A-Z2-9]{5}-[A-Z2-9]{5})", notice)
    assert f"{WEBSITE}/case" in notice  # where the party looks it up
    with Session(engine) as s:  # the notice carries the owner's look-up code, which finds it
        assert code and owner.find_case(s, "浙A12345", code.group(1)).id == case_id
    decision = pdf_text(engine, case_id, "decision")
    with Session(engine) as s:
        facts = s.scalars(select(CaseDocument.facts).where(
            CaseDocument.case_id == case_id, CaseDocument.kind == "decision")).one()
        letters = s.scalars(select(Delivery).where(Delivery.case_id == case_id)).all()
    for article in facts["basis"]["articles"]:
        assert re.sub(r"\s+", "", article) in decision
    for words in ("浙A12345", facts["basis"]["band_id"], "叁仟元整", "行政复议", "行政诉讼",
                  "王五", "第七十二条"):
        assert words in decision, words
    assert [(d.channel, d.ok) for d in letters] == [("letter", True), ("letter", True)]
    assert len(list((tmp / "letters").rglob("*.pdf"))) == 2
    with Session(engine) as s:
        assert audit.verify(s)[1] is None
        for doc_id in s.scalars(select(CaseDocument.id).where(
                CaseDocument.case_id == case_id)):
            assert procedure.regenerate(s, doc_id)  # the same bytes again


def test_a_zhejiang_company_case_waits_its_15_days_passes_legal_review_and_pays_late(center):
    engine, tmp = center
    settings = settings_for(engine, tmp, "zhejiang")
    case_id = open_case(engine, settings, plate="浙B77777", gross_kg=95_000, sequence=1)
    review_and_notify(engine, settings, case_id)
    with Session(engine) as s:
        until = s.get(CaseProcedure, case_id).defence_until
        # 20-50 %: 14 whole tonnes × 300; above 50 %: 21 whole tonnes × 500 (Art. 53)
        assert s.get(Case, case_id).fine_yuan == 14 * 300 + 21 * 500 == 14_700
    assert until == DAY + timedelta(days=15)  # 浙江省公路条例 Art. 40
    assert step(engine, settings, DAY + timedelta(days=3), "defence", case_id, "ZF002",
                outcome="received", text="车辆当日装载的是钢材，过磅有误。",
                answer="称重设备检定合格，记录完整，申辩理由不成立。") == "heard"
    refused(engine, settings, until, "decide", case_id, "ZF001", "ZF002",
            match="was not waived")
    after = until + timedelta(days=1)
    refused(engine, settings, after, "decide", case_id, "ZF001", "ZF002",
            match="legal review is required")  # 14 700 yuan: at least the table's 10 000
    refused(engine, settings, after, "legal_review", case_id, "ZF001", passed=True,
            note="同意", match="role legal_reviewer")
    assert step(engine, settings, after, "legal_review", case_id, "FS001", passed=False,
                note="证据目录缺少称重记录哈希，退回补正") == "heard"
    refused(engine, settings, after, "decide", case_id, "ZF001", "ZF002",
            match="legal review is required")
    assert step(engine, settings, after, "legal_review", case_id, "FS001", passed=True,
                note="事实清楚，证据确凿，适用依据正确，程序合法") == "legally_reviewed"
    for fine, words in ((15_000, "must not exceed"), (40_000, "at most 30000"),
                        (7_000, "give the reason")):
        refused(engine, settings, after, "decide", case_id, "ZF001", "ZF002",
                fine_yuan=fine, match=words)
    assert step(engine, settings, after, "decide", case_id, "ZF001", "ZF002") == "decided"
    assert documents(engine, case_id) == ["notice", "defence_record", "decision",
                                          "credit_repair", "compliance_advice"]
    assert step(engine, settings, after, "serve", case_id, "ZF001") == "served"
    with Session(engine) as s:
        pay_by = s.get(CaseProcedure, case_id).pay_by
        served = s.scalars(select(Delivery).where(Delivery.case_id == case_id)
                           .order_by(Delivery.id.desc())).first()
    assert served.ok and served.channel == "letter"
    batch = sorted(p.name for p in (tmp / "letters").rglob(f"case{case_id}-decision-*.pdf"))
    assert len(batch) == 3  # 三书同达: decision, credit repair, compliance advice together
    late = pay_by + timedelta(days=3)
    refused(engine, settings, late, "pay", case_id, "ZF001", amount_yuan=14_700,
            match="16023.00 yuan is due")  # 3 % of 14 700 a day for 3 days (Art. 72(一))
    assert step(engine, settings, late, "pay", case_id, "ZF001",
                amount_yuan=16_023) == "paid"
    assert step(engine, settings, late, "close", case_id, "ZF002") == "closed"
    decision = pdf_text(engine, case_id, "decision")
    for words in ("浙B77777", "杭州示例物流有限公司", "壹万肆仟柒佰元整",
                  "本档计罚部分14700千克，每1000千克罚款300元",
                  "zhejiang.mass.above-50pct", "第五十三条", "行政复议", "行政诉讼",
                  "车辆当日装载的是钢材"):
        assert words in decision, words
    with Session(engine) as s:
        steps = [(t.step, t.outcome) for t in s.scalars(select(CaseStep).where(
            CaseStep.case_id == case_id).order_by(CaseStep.id))]
    assert steps == [("review", None), ("approve", None), ("notify", None),
                     ("defence", "received"), ("legal_review", "not_passed"),
                     ("legal_review", "passed"), ("decide", "penalty"), ("serve", None),
                     ("pay", None), ("close", None)]


def test_a_first_violation_ends_without_penalty_with_a_commitment_and_a_reminder(center):
    engine, tmp = center
    settings = settings_for(engine, tmp, "national")
    case_id = open_case(engine, settings, plate="浙A12345", gross_kg=49_800, sequence=1)
    review_and_notify(engine, settings, case_id)
    assert step(engine, settings, DAY, "defence", case_id, "ZF001",
                outcome="waived") == "heard"
    refused(engine, settings, DAY, "decide", case_id, "ZF001", "ZF002",
            no_penalty="first_violation", match="commitment")
    assert step(engine, settings, DAY, "decide", case_id, "ZF001", "ZF002",
                no_penalty="first_violation",
                commitment="承诺今后按核定载质量装载，不再超限运输。") == "decided"
    assert step(engine, settings, DAY, "serve", case_id, "ZF001") == "served"
    assert step(engine, settings, DAY, "close", case_id, "ZF002") == "closed"
    with Session(engine) as s:
        rec = s.get(CaseProcedure, case_id)
        assert (rec.decision_kind, rec.decision_reason) == ("no_penalty", "first_violation")
        reminder = rec.reminder_on
        desk = procedure.desk_for(settings, today=reminder - timedelta(days=2), notify=False)
        due = procedure.due(s, desk)
    assert reminder == DAY + timedelta(days=30)
    assert [(i.case_id, i.what, i.due) for i in due] == \
        [(case_id, "首违不罚 follow-up reminder", reminder)]
    text_ = pdf_text(engine, case_id, "no_penalty_decision")
    assert "承诺今后按核定载质量装载" in text_ and "第三十三条" in text_

    second = open_case(engine, settings, plate="浙A12345", gross_kg=49_800, sequence=2,
                       days_later=3)
    later = DAY + timedelta(days=3)
    for name, officer in (("review", "ZF001"), ("approve", "ZF002"), ("notify", "ZF001")):
        step(engine, settings, later, name, second, officer)
    step(engine, settings, later, "defence", second, "ZF001", outcome="waived")
    refused(engine, settings, later, "decide", second, "ZF001", "ZF002",
            no_penalty="first_violation", commitment="再次承诺", match="not a first violation")


def test_a_zhejiang_case_within_20_percent_ends_in_education_with_no_penalty(center):
    engine, tmp = center
    settings = settings_for(engine, tmp, "zhejiang")
    case_id = open_case(engine, settings, plate="浙A12345", gross_kg=55_400, sequence=1)
    with Session(engine) as s:
        assert (s.get(Case, case_id).action, s.get(Case, case_id).fine_yuan) == \
            ("education", None)
    review_and_notify(engine, settings, case_id)
    step(engine, settings, DAY, "defence", case_id, "ZF001", outcome="waived")
    refused(engine, settings, DAY, "decide", case_id, "ZF001", "ZF002",
            match="批评教育")
    assert step(engine, settings, DAY, "decide", case_id, "ZF001", "ZF002",
                no_penalty="education") == "decided"
    assert step(engine, settings, DAY, "serve", case_id, "ZF001") == "served"
    refused(engine, settings, DAY, "pay", case_id, "ZF001", amount_yuan=0,
            match="nothing to pay")
    assert step(engine, settings, DAY, "close", case_id, "ZF002") == "closed"
    assert documents(engine, case_id) == ["notice", "defence_record", "no_penalty_decision"]
    assert "批评教育" in pdf_text(engine, case_id, "no_penalty_decision")


def test_steps_out_of_order_or_by_the_wrong_officer_are_refused_and_change_nothing(center):
    engine, tmp = center
    settings = settings_for(engine, tmp, "national")
    case_id = open_case(engine, settings, plate="浙A12345", gross_kg=55_400, sequence=1)
    refused(engine, settings, DAY, "notify", case_id, "ZF001",
            match="is awaiting_review; notify needs it approved")
    refused(engine, settings, DAY, "review", case_id, "ADM01", match="role reviewer")
    refused(engine, settings, DAY, "review", case_id, "NOBODY", match="not in the staff")
    step(engine, settings, DAY, "review", case_id, "ZF001")
    refused(engine, settings, DAY, "approve", case_id, "ZF001",
            match="cannot also approve it")
    refused(engine, settings, DAY, "pay", case_id, "ZF001", amount_yuan=3000,
            match="is reviewed; pay needs it served")
    refused(engine, settings, DAY, "reject", case_id, "ZF002", reason="bored",
            match="reason must be one of")
    assert step(engine, settings, DAY, "reject", case_id, "ZF002",
                reason="plate_misread", note="号牌被遮挡") == "rejected"
    refused(engine, settings, DAY, "approve", case_id, "ZF002", match="is rejected")


def test_an_edited_or_deleted_audit_row_is_found_by_verify(center):
    engine, tmp = center
    settings = settings_for(engine, tmp, "national")
    case_id = open_case(engine, settings, plate="浙A12345", gross_kg=55_400, sequence=1)
    review_and_notify(engine, settings, case_id)
    with Session(engine) as s:
        checked, broken = audit.verify(s)
        ids = list(s.scalars(select(AuditEntry.id).order_by(AuditEntry.id)))
    assert broken is None and checked == len(ids) >= 6
    victim = ids[len(ids) // 2]
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET detail = detail || ' (edited)' WHERE id = :i"),
                     {"i": victim})
    with Session(engine) as s:
        checked, broken = audit.verify(s)
    assert broken.entry_id == victim and "edited" in broken.reason and checked == ids.index(victim)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE id = :i"), {"i": victim})
    with Session(engine) as s:
        broken = audit.verify(s)[1]
    assert broken.entry_id == ids[ids.index(victim) + 1] and "deleted" in broken.reason


def test_a_party_nobody_reaches_is_served_by_public_notice_and_the_window_waits(center):
    engine, tmp = center
    settings = settings_for(engine, tmp, "zhejiang")
    case_id = open_case(engine, settings, plate="浙C55555", gross_kg=63_700, sequence=1)
    review_and_notify(engine, settings, case_id)  # not in the vehicle register: no address
    with Session(engine) as s:
        rec = s.get(CaseProcedure, case_id)
        tried = [(d.channel, d.ok) for d in s.scalars(select(Delivery).where(
            Delivery.case_id == case_id).order_by(Delivery.id))]
        served_on, until, public = rec.notified_on, rec.defence_until, rec.public_notice
    assert tried == [("letter", False), ("public", True)] and public
    assert served_on == DAY + timedelta(days=30)  # 公告送达: thirty days (verify)
    assert until == served_on + timedelta(days=15)
    assert documents(engine, case_id) == ["notice", "public_notice"]
    text_ = pdf_text(engine, case_id, "public_notice")
    assert "浙C55555" in text_ and "经过三十日" in text_
    assert "查询码" not in text_  # the code is the party's: a public notice never prints it


def test_a_notice_goes_by_e_mail_to_a_party_who_agreed(center, monkeypatch):
    """A real SMTP server on 127.0.0.1 (aiosmtpd) receives the notice with its PDF."""
    class Inbox:
        def __init__(self) -> None:
            self.received: list[bytes] = []

        async def handle_DATA(self, server, session, envelope):  # noqa: N802
            self.received.append(envelope.content)
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, ready_timeout=5)
    controller.start()
    try:
        engine, tmp = center
        settings = settings_for(engine, tmp, "national").model_copy(update={
            "procedure": ProcedureSettings(notify=NotifySettings(
                channels=["email", "letter"], letter=LetterSettings(folder=tmp / "letters"),
                email=EmailSettings(host="127.0.0.1", port=port,
                                    sender="notice@example.gov.cn", timeout_s=5)))})
        case_id = open_case(engine, settings, plate="浙B77777", gross_kg=55_400, sequence=1)
        step(engine, settings, DAY, "review", case_id, "ZF001")
        step(engine, settings, DAY, "approve", case_id, "ZF002")
        step(engine, settings, DAY, "set_party", case_id, "ZF001", consent="yes")
        assert step(engine, settings, DAY, "notify", case_id, "ZF001") == "notified"
    finally:
        controller.stop()
    (raw,) = inbox.received
    message = email.message_from_bytes(raw)
    (pdf,) = [p.get_payload(decode=True) for p in message.walk()
              if p.get_content_type() == "application/pdf"]
    with Session(engine) as s:
        stored = s.scalars(select(CaseDocument.sha256).where(
            CaseDocument.case_id == case_id, CaseDocument.kind == "notice")).one()
        tried = [(d.channel, d.ok, d.address) for d in s.scalars(select(Delivery).where(
            Delivery.case_id == case_id))]
    assert hashlib.sha256(pdf).hexdigest() == stored
    assert tried == [("email", True, "fleet@example.com")]
