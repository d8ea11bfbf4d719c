"""Captures to cases with the real rule tables: grading, legality, one trip one case, the
Art. 66 count, the Art. 33 first violation, idempotence, review (SQLite and PostgreSQL)."""

from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from center_factory import REGISTRY_CSV, STAFF_CSV, T0, center_engine, make_packet, store_packets
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from center import procedure, web_models  # noqa: F401 (web_models: its tables)
from center.cases import (
    CaseError,
    case_detail,
    law_rules,
    list_cases,
    process_packets,
    process_pending,
    recount_plate,
)
from center.db import Base
from center.ingest_models import Device, StoredPacket
from center.law_models import AuditEntry, Capture, Case, CaseCapture
from center.registry import import_registry
from center.settings import CenterSettings, LawSettings
from center.staff import import_staff

# A device announced long ago, so that captures over a year back are evidence too.
OLD = "D0,G60,K1+000,east,30,120,2024-01-01,JD-0,5,2024-01-01,2027-12-31,2024-01-01," \
      "2024-01-01,浙交〔2024〕1号,,2024-02-01,true,\n"
LAW = LawSettings()


@pytest.fixture
def engine(center_db_url, tmp_path):
    engine = center_engine(center_db_url)
    path = tmp_path / "devices.csv"
    path.write_text(REGISTRY_CSV + OLD, encoding="utf-8")
    staff = tmp_path / "staff.csv"
    staff.write_text(STAFF_CSV, encoding="utf-8")
    with Session(engine) as session, session.begin():
        import_registry(session, path)
        import_staff(session, staff)
    yield engine
    engine.dispose()


def run(engine, packets, law=LAW):
    with Session(engine) as session, session.begin():
        return process_packets(session, [(None, p) for p in packets], law)


DAY = date(2026, 6, 2)


def desk(law=LAW):
    return procedure.desk_for(CenterSettings(database="unused", law=law), today=DAY,
                              notify=False)


def confirm(engine, case_id, law=LAW):
    """Pass a case through review: reviewed by one officer, approved by another (the
    procedure recounts the plate's cases)."""
    with Session(engine) as session, session.begin():
        procedure.review(session, case_id, "ZF001", desk(law))
        procedure.approve(session, case_id, "ZF002", desk(law))


def counts(engine, case_id):
    with Session(engine) as session:
        case = session.get(Case, case_id)
        return (case.first_violation, case.cases_12m, case.captures_12m,
                case.repeat_over_limit)


def test_grade_with_the_real_tables_and_the_centers_benchmark(engine):
    (r,) = run(engine, [make_packet(gross_kg=55400)])
    assert r.new and r.evidential and r.over and r.case_id is not None
    with Session(engine) as session:
        capture = session.get(Capture, r.capture_id)
        assert (capture.limit_kg, capture.excess_kg, capture.action, capture.fine_yuan) == \
            (49000, 6400, "fine", 3000)
        assert capture.grade["benchmark"] == "national"
        assert "national.mass.fine" in {rule["id"] for rule in capture.grade["rules"]}
        case = session.get(Case, r.case_id)
        assert (case.status, case.plate, case.action, case.fine_yuan) == \
            ("awaiting_review", "浙A12345", "fine", 3000)
    # Zhejiang's benchmark: 13.1 % over is education, no fine.
    (z,) = run(engine, [make_packet(sequence=2, plate="浙B1", gross_kg=55400)],
               LAW.model_copy(update={"benchmark": "zhejiang"}))
    with Session(engine) as session:
        assert session.get(Capture, z.capture_id).fine_yuan is None


def test_mpe_tolerance_takes_the_devices_accuracy_class(engine):
    law = LAW.model_copy(update={"tolerance": "mpe"})
    (r,) = run(engine, [make_packet(gross_kg=55400)], law)  # D1 is class 5: 2 770 kg
    with Session(engine) as session:
        capture = session.get(Capture, r.capture_id)
        assert capture.tolerance_kg == pytest.approx(2770)
        assert capture.excess_kg == pytest.approx(3630) and capture.fine_yuan == 1500


def test_not_evidence_is_kept_with_reasons_and_opens_no_case(engine):
    results = run(engine, [
        make_packet(device_id="D2"),                       # suspended that day
        make_packet(device_id="D9"),                       # not registered
        make_packet(sequence=2, flags=("straddling",)),    # abnormal driving
        make_packet(sequence=3, gross_kg=40000),           # evidence, but not over
        make_packet(sequence=4, code=None),                # cannot be graded
    ])
    assert [r.case_id for r in results] == [None] * 5
    assert [r.evidential for r in results] == [False, False, False, True, True]
    assert "device suspended from 2026-05-30 to 2026-06-02 (repair)" in results[0].reasons[0]
    assert results[1].reasons[0].startswith("device D9 is not in the registry")
    assert "straddling" in results[2].reasons[0]
    assert not results[3].over and not results[4].over
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Case)) == 0
        assert session.scalar(select(func.count()).select_from(Capture)) == 5
        light = session.get(Capture, results[3].capture_id)
        assert (light.limit_kg, light.excess_kg, light.grade) == (49000, 0, None)
        ungraded = session.scalars(select(Capture).where(Capture.sequence == 4,
                                                         Capture.device_id == "D1")).one()
        assert ungraded.grade_error.startswith("no axle code")


def test_one_trip_is_one_case_with_the_largest_excess_as_evidence(engine):
    results = run(engine, [
        make_packet(sequence=1, gross_kg=52000),
        make_packet(sequence=2, captured_at=T0 + timedelta(hours=2), gross_kg=56000),
        make_packet(sequence=3, captured_at=T0 + timedelta(hours=5), gross_kg=51000),
        make_packet(sequence=4, captured_at=T0 + timedelta(hours=11, minutes=1)),
        make_packet(sequence=5, captured_at=T0 + timedelta(hours=1), plate="浙C99999"),
    ])
    trip = {r.case_id for r in results[:3]}
    assert len(trip) == 1
    assert len({results[0].case_id, results[3].case_id, results[4].case_id}) == 3
    with Session(engine) as session:
        case = session.get(Case, results[0].case_id)
        assert case.best_capture_id == results[1].capture_id
        assert (case.fine_yuan, case.first_at, case.last_at) == (
            3500, T0, T0 + timedelta(hours=5))
        roles = dict(session.execute(select(CaseCapture.capture_id, CaseCapture.role).where(
            CaseCapture.case_id == case.id)).all())
        assert roles == {results[0].capture_id: "attached", results[1].capture_id: "evidence",
                         results[2].capture_id: "attached"}
        actions = session.scalars(select(AuditEntry.action).where(
            AuditEntry.case_id == case.id).order_by(AuditEntry.id)).all()
        assert actions == ["case_opened", "capture_attached", "capture_attached"]
        later = session.get(Case, results[3].case_id)
        assert later.first_violation and case.first_violation  # nothing passed review yet
    confirm(engine, case.id)
    with Session(engine) as session, session.begin():
        recounted = recount_plate(session, "浙A12345", law_rules(LAW))
        assert {c.id for c in recounted} == {case.id, results[3].case_id}
    assert counts(engine, results[3].case_id)[0] is False
    assert counts(engine, case.id)[:3] == (True, 1, 3)


def test_art66_counts_a_year_of_acts_and_art33_marks_the_first(engine):
    days = (-400, -300, -200, -100, -10)
    opened, ids = [], []
    for i, d in enumerate(days):
        (r,) = run(engine, [make_packet(device_id="D0", sequence=i + 1,
                                        captured_at=T0 + timedelta(days=d))])
        opened.append(counts(engine, r.case_id))
        confirm(engine, r.case_id)
        ids.append(r.case_id)
    # awaiting review, a case counts only the earlier ones that passed review
    assert [o[1] for o in opened] == [0, 1, 2, 3, 3]
    assert [o[0] for o in opened] == [True, False, False, False, False]
    # once confirmed and recounted, it counts itself
    after = [counts(engine, i) for i in ids]
    assert [a[0] for a in after] == [True, False, False, False, False]
    assert [a[1] for a in after] == [1, 2, 3, 4, 4]
    assert [a[2] for a in after] == [1, 2, 3, 4, 4]
    assert [a[3] for a in after] == [False, False, False, True, True]
    (now,) = run(engine, [make_packet(device_id="D0", sequence=9, captured_at=T0)])
    assert counts(engine, now.case_id)[1:] == (4, 4, True)


def test_cases_awaiting_review_are_no_history(engine):
    """Art. 66 and Art. 33 count established acts only: two cases of one plate, neither
    reviewed, are each a first violation with no act in the look-back."""
    packets = [make_packet(device_id="D0", sequence=i + 1, captured_at=T0 + timedelta(days=d))
               for i, d in enumerate((-20, -10))]
    results = run(engine, packets)
    assert [counts(engine, r.case_id) for r in results] == [(True, 0, 0, False)] * 2


def edit_enforcement(folder: Path, *changes: tuple[str, str]) -> LawSettings:
    """Change values of a rules copy's enforcement.yaml; law settings reading that copy.
    (The center loads a folder once: edit a copy before its first use.)"""
    path = folder / "enforcement.yaml"
    text = path.read_text(encoding="utf-8")
    for old, new in changes:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")
    return LAW.model_copy(update={"rules_folder": folder})


def test_the_notice_lead_time_comes_from_the_centers_rule_tables(engine, rules_copy):
    # D1's notice (2026-02-01) was 28 days before its enforcement began (2026-03-01):
    # evidence under the shipped 15 days, not under 29.
    (shipped,) = run(engine, [make_packet(sequence=1)])
    assert shipped.evidential and shipped.case_id is not None
    law = edit_enforcement(rules_copy, ("value: 15\n", "value: 29\n"))
    (edited,) = run(engine, [make_packet(sequence=2, plate="浙B22222")], law)
    assert not edited.evidential and edited.case_id is None
    (reason,) = edited.reasons
    assert reason.startswith("public notice 2026-02-01 (浙交〔2026〕1号) was 28 days before "
                             "the start of enforcement on 2026-03-01; 29 are required "
                             "(enforcement.notice-lead)")
    assert reason.endswith("浙江省公路条例（2020） 第三十八条 第一款)")


def test_the_art66_count_comes_from_the_centers_rule_tables(engine, rules_copy):
    law = edit_enforcement(rules_copy, ("value: 365\n", "value: 200\n"),
                           ("value: 3\n", "value: 1\n"))
    results = []
    for i, d in enumerate((-290, -100, -10)):
        (r,) = run(engine, [make_packet(device_id="D0", sequence=i + 1,
                                        captured_at=T0 + timedelta(days=d))], law)
        confirm(engine, r.case_id, law)
        results.append(r)
    with Session(engine) as session:
        cases = [session.get(Case, r.case_id) for r in results]
        assert [c.cases_12m for c in cases] == [1, 2, 2]
        assert [c.repeat_over_limit for c in cases] == [False, True, True]
        opened = session.scalars(select(AuditEntry.detail).where(
            AuditEntry.case_id == cases[2].id, AuditEntry.action == "case_opened")).one()
        assert opened.endswith("1 acts and 1 captures in 200 days")


def test_a_rejected_case_is_no_earlier_violation(engine):
    (first,) = run(engine, [make_packet(sequence=1)])
    with Session(engine) as session, session.begin():
        procedure.reject(session, first.case_id, "ZF002", desk(), reason="plate_misread")
    (second,) = run(engine, [make_packet(sequence=2, captured_at=T0 + timedelta(days=2))])
    assert counts(engine, second.case_id)[:2] == (True, 0)
    confirm(engine, second.case_id)
    assert counts(engine, second.case_id)[:2] == (True, 1)


def test_processing_twice_does_nothing(engine):
    packets = [make_packet(sequence=1), make_packet(sequence=2,
                                                    captured_at=T0 + timedelta(hours=1))]
    first = run(engine, [*packets, packets[0]])
    assert [r.new for r in first] == [True, True, False]
    assert first[2] == replace(first[0], new=False)
    first = first[:2]
    again = run(engine, packets)
    assert [r.new for r in again] == [False, False]
    assert [(r.capture_id, r.case_id) for r in again] == \
        [(r.capture_id, r.case_id) for r in first]
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Capture)) == 2
        assert session.scalar(select(func.count()).select_from(Case)) == 1
        assert session.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.case_id.is_not(None))) == 2  # opened, attached: once each


def test_process_pending_reads_the_stored_packets(engine, tmp_path: Path):
    packets = [make_packet(sequence=s, captured_at=T0 + timedelta(minutes=s))
               for s in (1, 2, 3)]
    store_packets(engine, packets)
    settings = CenterSettings(database="unused", law=LAW)
    assert process_pending(engine, settings, batch=2) == 3
    assert process_pending(engine, settings) == 0
    with Session(engine) as session:
        ids = session.scalars(select(Capture.packet_id).order_by(Capture.sequence)).all()
        assert len(ids) == 3 and None not in ids
        assert session.scalar(select(func.count()).select_from(Case)) == 1


def test_review_moves_and_audits_and_refuses_wrong_moves(engine):
    (r,) = run(engine, [make_packet()])
    with Session(engine) as session, session.begin():
        procedure.review(session, r.case_id, "ZF001", desk(), "checked the photos")
        with pytest.raises(CaseError, match="is reviewed; review needs it awaiting_review"):
            procedure.review(session, r.case_id, "ZF002", desk())
        procedure.approve(session, r.case_id, "ZF002", desk())
    with Session(engine) as session, session.begin():
        with pytest.raises(CaseError, match="case 999 does not exist"):
            procedure.review(session, 999, "ZF001", desk())
        with pytest.raises(CaseError, match="' ' is not in the staff register"):
            procedure.reject(session, r.case_id, " ", desk(), reason="other")
    with Session(engine) as session:
        detail = case_detail(session, r.case_id)
        assert detail["case"]["status"] == "approved"
        assert [(a["actor"].split()[0], a["action"]) for a in detail["audit"]] == [
            ("center", "case_opened"), ("ZF001", "review"), ("ZF002", "approve")]
        assert "checked the photos" in detail["audit"][1]["detail"]
        assert [s["officer_id"] for s in detail["steps"]] == ["ZF001", "ZF002"]
        assert detail["procedure"]["party_name"] == "浙A12345 号车辆所有人"
        (capture,) = detail["captures"]
        assert capture["role"] == "evidence" and len(capture["checks"]) == 14
        assert [c.id for c in list_cases(session, "approved")] == [r.case_id]
        assert list_cases(session, "awaiting_review") == []


def test_a_late_capture_joins_a_reviewed_case_without_changing_its_evidence(engine):
    (first,) = run(engine, [make_packet(sequence=2, captured_at=T0 + timedelta(hours=1))])
    with Session(engine) as session, session.begin():
        procedure.review(session, first.case_id, "ZF001", desk())
    (late,) = run(engine, [make_packet(sequence=1, gross_kg=60000)])
    assert late.case_id == first.case_id
    with Session(engine) as session:
        case = session.get(Case, first.case_id)
        assert (case.best_capture_id, case.fine_yuan, case.first_at) == (
            first.capture_id, 3000, T0)
        detail = session.scalars(select(AuditEntry.detail).where(
            AuditEntry.action == "capture_attached")).one()
        assert "case already reviewed" in detail


def test_a_stored_packet_that_cannot_be_read_is_kept_as_no_evidence(engine):
    with engine.begin() as conn:
        conn.execute(insert(Device).values(device_id="D1", sign_public_key="pem",
                                           curve_public_key="k" * 40, enrolled_at=T0))
        conn.execute(insert(StoredPacket).values(
            device_id="D1", sequence=7, hash="0" * 64, previous_hash="0" * 64,
            captured_at=T0, lane=1, suspected_overload=True,
            meta=b'{"schema":"zhichao.evidence/9.0"}', signature=b"s", received_at=T0))
    settings = CenterSettings(database="unused", law=LAW)
    assert process_pending(engine, settings) == 1
    assert process_pending(engine, settings) == 0
    with Session(engine) as session:
        capture = session.scalars(select(Capture)).one()
        assert not capture.evidential and capture.captured_at == T0
        assert "major version 9" in capture.checks[0]["text"]


LAW_TABLES = {"device_records", "device_suspensions", "captures", "cases", "case_captures",
              "audit_log", "vehicles", "staff", "case_steps", "case_procedure",
              "case_documents", "case_deliveries", "staff_passwords", "web_sessions",
              "case_access", "owner_statements", "owner_attachments", "plate_entries"}


def _tables_of(diff) -> set[str]:
    """Table names a compare_metadata difference is about."""
    found = set()
    for part in diff if isinstance(diff, list) else [diff]:
        for item in part:
            names = {item} if isinstance(item, str) else {
                getattr(item, "name", None), getattr(getattr(item, "table", None), "name", None)}
            found |= names & LAW_TABLES
    return found


def test_the_models_are_what_the_migrations_build(engine):
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert [d for d in diffs if _tables_of(d)] == []
    assert set(Base.metadata.tables) >= LAW_TABLES


# The registry's history at the center (issue 18: the device as it stood that day).

def test_a_renewed_certificate_leaves_an_old_capture_its_certificate_of_that_day(
        engine, tmp_path):
    (before,) = run(engine, [make_packet(sequence=1)])
    header, d1, d2 = REGISTRY_CSV.splitlines()[:3]
    renewed = "\n".join([
        header + ",effective_from",
        d1.replace("JD-2026-001", "JD-2027-001").replace("2026-01-15,2027-01-14",
                                                         "2027-01-10,2028-01-09")
        + ",2027-01-10",
        d2 + ","]) + "\n"
    path = tmp_path / "renewed.csv"
    path.write_text(renewed, encoding="utf-8")
    with Session(engine) as session, session.begin():
        import_registry(session, path)
    late, new = run(engine, [
        make_packet(sequence=2, plate="浙B22222", captured_at=T0 + timedelta(days=1)),
        make_packet(sequence=3, plate="浙B33333",
                    captured_at=T0 + timedelta(days=245))])  # 2027-02-01
    assert late.evidential and new.evidential
    with Session(engine) as session:
        def check(result, which):
            capture = session.get(Capture, result.capture_id)
            return next(c["text"] for c in capture.checks if c["id"] == which)
        for old in (before, late):
            assert check(old, "registered") == ("device D1 is in the registry (version 1, in "
                                                "force from 2000-01-01)")
            assert check(old, "certificate").startswith(
                "verification certificate JD-2026-001 valid 2026-01-15 to 2027-01-14")
        assert check(new, "registered").endswith("(version 2, in force from 2027-01-10)")
        assert check(new, "certificate").startswith(
            "verification certificate JD-2027-001 valid 2027-01-10 to 2028-01-09")


def test_a_capture_before_a_devices_first_version_is_no_evidence(engine, tmp_path):
    text = REGISTRY_CSV.splitlines()[0] + ",effective_from\n" + \
        "D5,G60,K9+000,east,30,120,2026-01-10,JD-5,5,2026-01-15,2027-01-14,2026-01-20," \
        "2026-02-01,浙交〔2026〕5号,,2026-03-01,true,,2026-07-01\n"
    path = tmp_path / "d5.csv"
    path.write_text(text, encoding="utf-8")
    with Session(engine) as session, session.begin():
        import_registry(session, path)
    (r,) = run(engine, [make_packet(device_id="D5")])
    assert not r.evidential and r.case_id is None
    assert r.reasons[0].startswith("device D5 has no registry row in force on 2026-06-01: "
                                   "its first version is in force from 2026-07-01")
