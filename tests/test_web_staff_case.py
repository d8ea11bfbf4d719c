"""The staff case page and its steps, on SQLite and PostgreSQL: the page and its JSON twin
say the same, the evidence's files go to staff only, a case walks from review to closed
through the page's forms, a refused step or a forged token changes nothing, and a plate
keyed in for a capture without one opens its case, audited with who typed it."""

import hashlib
import html
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from center_factory import T0, make_packet
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session
from web_factory import WebCenter, log_in, photo, web_center

from center import procedure
from center.cases import process_packets
from center.ingest_models import StoredPacket
from center.law_models import AuditEntry, Capture, Case, CaseCapture
from center.procedure_models import CaseProcedure
from center.web_models import OwnerAttachment, OwnerStatement, PlateEntry
from evidence.packet import ImageRef, canonical_bytes, packet_hash

ALERT = re.compile(r'role="alert">([^<]*)<')


@pytest.fixture
def center(center_db_url: str, tmp_path: Path) -> WebCenter:
    return web_center(center_db_url, tmp_path)


def _status(center: WebCenter, case_id: int) -> str:
    with Session(center.engine) as s:
        return s.get(Case, case_id).status


def _audit_count(center: WebCenter) -> int:
    with Session(center.engine) as s:
        return s.scalar(select(func.count()).select_from(AuditEntry))


def _post(center: WebCenter, case_id: int, step: str, **form: str):
    return center.client.post(f"/staff/cases/{case_id}/{step}", data=form,
                              follow_redirects=False)


def _alert(response) -> str:
    found = ALERT.search(response.text)
    assert found, response.text[:800]
    return html.unescape(found.group(1))


# --- the page and its twin -------------------------------------------------------------

def test_page_and_json_twin_carry_the_same_facts(center: WebCenter) -> None:
    log_in(center.client, "ZF002")
    case_id = center.cases[0]
    page = center.client.get(f"/staff/cases/{case_id}")
    twin = center.client.get(f"/staff/cases/{case_id}.json")
    assert page.status_code == twin.status_code == 200
    text, data = html.unescape(page.text), twin.json()
    assert 'class="case-page"' in page.text
    assert data["case"]["id"] == case_id and data["case"]["status"] == "awaiting_review"
    assert data["case"]["plate"] in text and data["case"]["status"] in text
    assert f"{data['case']['fine_yuan']:,.0f}".replace(",", " ") in text
    assert f"{data['case']['cases_12m']} acts" in text
    capture = data["captures"][0]
    for image in capture["images"]:
        assert f'src="{image["url"]}"' in page.text
    assert capture["plate_crop"] and f'src="{capture["plate_crop"]}"' in page.text
    for check in capture["checks"]:
        assert check["text"] in text and check["source"] in text
    for rule in capture["grade"]["rules"]:
        assert rule["id"] in text and rule["detail"] in text
    diagram = capture["diagram"]
    assert len(diagram["axles"]) == 6 and diagram["limit_kg"] == capture["limit_kg"]
    assert "<svg" in page.text and all(a["label"] in text for a in diagram["axles"])
    for entry in data["audit"]:
        assert entry["detail"] in text
    history = data["history"]
    assert [c["id"] for c in history["cases"]] == [center.cases[2]]  # the same plate's other
    assert f'href="/staff/cases/{center.cases[2]}"' in page.text
    assert data["forms"]["allowed"] == ["review", "reject"]
    assert 'id="review"' in page.text and 'id="reject"' in page.text
    assert 'id="approve"' not in page.text
    for code in data["forms"]["reject_reasons"]:
        assert f'value="{code}"' in page.text


def test_unknown_and_out_of_range_case_is_404(center: WebCenter) -> None:
    log_in(center.client, "ZF001")
    for case_id in (999, 2**63, 0):
        r = center.client.get(f"/staff/cases/{case_id}")
        assert r.status_code == 404
        assert str(case_id) in _alert(r)
    assert center.client.get("/staff/cases/999.json").status_code == 404


def test_page_has_no_inline_script_or_style(center: WebCenter) -> None:
    log_in(center.client, "ZF001")
    pages = [center.client.get(f"/staff/cases/{center.cases[0]}").text,
             center.client.get("/staff/captures/1").text]
    for text in pages:
        assert not re.search(r"\sstyle\s*=", text, re.I)
        assert not re.search(r"<style", text, re.I)
        assert not re.search(r"\son[a-z]+\s*=", text, re.I)
        for script in re.findall(r"<script([^>]*)>(.*?)</script>", text, re.S | re.I):
            assert 'src="/static/' in script[0] and not script[1].strip()
        assert "javascript:" not in text


def test_anonymous_gets_the_login_page_or_401(center: WebCenter) -> None:
    r = center.client.get(f"/staff/cases/{center.cases[0]}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/staff/login")
    assert center.client.get(f"/staff/cases/{center.cases[0]}.json").status_code == 401
    r = _post(center, center.cases[0], "review", csrf="x")
    assert r.status_code == 401
    assert _status(center, center.cases[0]) == "awaiting_review"


# --- files ------------------------------------------------------------------------------

def test_images_and_plate_crop_to_staff_only(center: WebCenter) -> None:
    client = center.client
    sha = hashlib.sha256(photo(1, "A12345")).hexdigest()
    crop = "/staff/captures/1/plate.jpg"
    assert client.get(f"/staff/images/{sha}").status_code == 401
    assert client.get(crop).status_code == 401
    log_in(client, "FS001")
    r = client.get(f"/staff/images/{sha}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert hashlib.sha256(r.content).hexdigest() == sha
    r = client.get(crop)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.content.startswith(b"\xff\xd8")
    for bad in ("0" * 63, "G" * 64, sha.upper(), "..%2F..%2Fetc%2Fpasswd", "1" * 64):
        assert client.get(f"/staff/images/{bad}").status_code == 404, bad
    assert client.get("/staff/captures/999/plate.jpg").status_code == 404
    assert client.get(f"/staff/captures/{2**64}/plate.jpg").status_code == 404


def test_owner_statement_and_attachment_download(center: WebCenter) -> None:
    case_id = center.cases[0]
    folder = center.settings.web.uploads_dir
    folder.mkdir(parents=True, exist_ok=True)
    body = b"%PDF-1.4 a slip\n"
    (folder / "a1b2c3.pdf").write_bytes(body)
    with Session(center.engine) as s, s.begin():
        statement = OwnerStatement(case_id=case_id, submitted_at=datetime.now(UTC),
                                   text="货物为轻泡货，申请复核。")
        s.add(statement)
        s.flush()
        s.add(OwnerAttachment(statement_id=statement.id, stored_name="a1b2c3.pdf",
                              original_name="过磅单.pdf", media_type="application/pdf",
                              size=len(body), sha256=hashlib.sha256(body).hexdigest()))
        s.add(OwnerAttachment(statement_id=statement.id, stored_name="../escape",
                              original_name="x.html", media_type="text/html", size=1,
                              sha256="0" * 64))
    client = center.client
    assert client.get("/staff/attachments/1").status_code == 401
    log_in(client, "ZF001")
    page = client.get(f"/staff/cases/{case_id}")
    assert "货物为轻泡货，申请复核。" in page.text and "过磅单.pdf" in page.text
    r = client.get("/staff/attachments/1")
    assert r.status_code == 200 and r.content == body
    assert r.headers["content-disposition"].startswith("attachment")
    assert client.get("/staff/attachments/2").status_code == 404  # a name with a path
    assert client.get("/staff/attachments/99").status_code == 404


# --- the steps --------------------------------------------------------------------------

def test_case_walks_from_review_to_closed_through_the_page(center: WebCenter) -> None:
    case_id, client = center.cases[0], center.client
    csrf = log_in(client, "ZF001")
    assert _post(center, case_id, "review", csrf=csrf, note="photos clear").status_code == 303
    assert _status(center, case_id) == "reviewed"
    client.cookies.clear()
    csrf2 = log_in(client, "ZF002")
    assert _post(center, case_id, "approve", csrf=csrf2).status_code == 303
    assert _post(center, case_id, "party", csrf=csrf2, driver="赵六",
                 loading_slip="LS-001").status_code == 303
    assert _post(center, case_id, "notify", csrf=csrf2).status_code == 303
    assert _status(center, case_id) == "notified"
    page = client.get(f"/staff/cases/{case_id}.json").json()
    assert page["forms"]["allowed"] == ["party", "defence", "reject"]
    assert page["procedure"]["driver"] == "赵六" and page["documents"]
    assert _post(center, case_id, "defence", csrf=csrf2, outcome="waived").status_code == 303
    # legal review is not required for this fine: the legal reviewer is refused with why
    client.cookies.clear()
    fs = log_in(client, "FS001")
    r = _post(center, case_id, "legal-review", csrf=fs, passed="yes", note="ok")
    assert r.status_code == 409 and "no legal review" in _alert(r)
    assert _post(center, case_id, "decide", csrf=fs, cosigner="ZF002").status_code == 403
    client.cookies.clear()
    csrf = log_in(client, "ZF001")
    assert "second officer" in client.get(f"/staff/cases/{case_id}").text
    r = _post(center, case_id, "decide", csrf=csrf, cosigner="ZF001")
    assert r.status_code == 409 and "two different officers" in _alert(r)
    assert _post(center, case_id, "decide", csrf=csrf, cosigner="ZF002").status_code == 303
    assert _status(center, case_id) == "decided"
    assert _post(center, case_id, "serve", csrf=csrf).status_code == 303
    due = client.get(f"/staff/cases/{case_id}.json").json()["forms"]["amount_due"]
    assert due["total_yuan"] == 3000
    assert _post(center, case_id, "pay", csrf=csrf, amount_yuan="3000").status_code == 303
    assert _post(center, case_id, "close", csrf=csrf).status_code == 303
    data = client.get(f"/staff/cases/{case_id}.json").json()
    assert data["case"]["status"] == "closed" and data["forms"]["allowed"] == []
    assert [s["step"] for s in data["steps"]] == ["review", "approve", "notify", "defence",
                                                 "decide", "serve", "pay", "close"]
    assert data["steps"][0]["officer_id"] == "ZF001"
    assert data["steps"][1]["officer_id"] == "ZF002"
    assert data["case"]["decided_by"] == "ZF001 & ZF002"
    kinds = {d["kind"] for d in data["documents"]}
    assert {"notice", "decision"} <= kinds
    pdf = client.get(f"/staff/documents/{data['documents'][0]['id']}.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert pdf.headers["content-disposition"].startswith("attachment")
    assert client.get("/staff/documents/999999.pdf").status_code == 404
    client.cookies.clear()
    assert client.get(f"/staff/documents/{data['documents'][0]['id']}.pdf").status_code == 401


def test_refused_step_shows_its_reason_and_changes_nothing(center: WebCenter) -> None:
    case_id = center.cases[0]
    csrf = log_in(center.client, "ZF001")
    before = _audit_count(center)
    r = _post(center, case_id, "pay", csrf=csrf, amount_yuan="100")
    assert r.status_code == 409
    assert _alert(r).startswith(f"case {case_id} is awaiting_review; pay needs it served")
    assert 'class="case-page"' in r.text
    r = _post(center, case_id, "reject", csrf=csrf, reason="no_such_code")
    assert r.status_code == 409 and "reason must be one of" in _alert(r)
    assert _post(center, case_id, "review", csrf=csrf).status_code == 303
    before = _audit_count(center)
    r = _post(center, case_id, "approve", csrf=csrf)  # the reviewer cannot also approve
    assert r.status_code == 409 and "cannot also approve" in _alert(r)
    assert _status(center, case_id) == "reviewed" and _audit_count(center) == before
    r = center.client.post(f"/staff/cases/{case_id}/approve.json", data={"csrf": csrf})
    assert r.status_code in (404, 405)
    assert _post(center, 999, "review", csrf=csrf).status_code == 404


def test_reject_with_a_reason_code(center: WebCenter) -> None:
    case_id = center.cases[1]
    csrf = log_in(center.client, "ZF002")
    r = _post(center, case_id, "reject", csrf=csrf, reason="measurement_doubtful",
              note="axle 3 reads high")
    assert r.status_code == 303 and r.headers["location"] == f"/staff/cases/{case_id}"
    data = center.client.get(f"/staff/cases/{case_id}.json").json()
    assert data["case"]["status"] == "rejected"
    assert data["steps"][-1]["outcome"] == "measurement_doubtful"


def test_forged_csrf_is_403_and_changes_nothing(center: WebCenter) -> None:
    case_id = center.cases[0]
    log_in(center.client, "ZF001")
    before = _audit_count(center)
    for form in ({"csrf": "forged"}, {}):
        r = _post(center, case_id, "review", **form)
        assert r.status_code in (403, 422)
    assert _post(center, case_id, "review", csrf="forged").status_code == 403
    r = center.client.post("/staff/captures/1/plate",
                           data={"csrf": "forged", "plate": "浙C54321", "colour": "yellow"})
    assert r.status_code == 403
    assert _status(center, case_id) == "awaiting_review" and _audit_count(center) == before


def test_wrong_role_is_403(center: WebCenter) -> None:
    case_id = center.cases[0]
    csrf = log_in(center.client, "FS001")
    assert _post(center, case_id, "review", csrf=csrf).status_code == 403
    center.client.cookies.clear()
    csrf = log_in(center.client, "ZF001")
    r = _post(center, case_id, "legal-review", csrf=csrf, passed="yes", note="x")
    assert r.status_code == 403
    assert _status(center, case_id) == "awaiting_review"


# --- keying in a plate ------------------------------------------------------------------

def _capture_without_plate(center: WebCenter) -> int:
    """A stored pass whose plate nobody read, captured (the center's reader not asked)."""
    jpeg = photo(9, "C54321")
    sha = hashlib.sha256(jpeg).hexdigest()
    path = center.settings.images_dir / sha[:2] / sha
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg)
    packet = make_packet(plate=None, gross_kg=58_000, sequence=10,
                         captured_at=T0 + timedelta(days=10))
    packet = packet.model_copy(update={"images": [ImageRef(role="front", sha256=sha,
                                                           size=len(jpeg))]})
    meta = canonical_bytes(packet)
    with Session(center.engine) as s, s.begin():
        packet_id = s.execute(insert(StoredPacket).values(
            device_id="D1", sequence=packet.sequence, hash=packet_hash(meta),
            previous_hash=packet.previous_hash, captured_at=packet.captured_at, lane=1,
            suspected_overload=True, meta=meta, signature=b"s", received_at=T0)
            .returning(StoredPacket.id)).scalar_one()
        [result] = process_packets(s, [(packet_id, packet)], center.settings, plates={})
    assert not result.evidential and result.case_id is None
    return result.capture_id


def test_key_in_plate_opens_its_case_and_says_who_typed_it(center: WebCenter) -> None:
    capture_id = _capture_without_plate(center)
    client = center.client
    csrf = log_in(client, "ZF002")
    page = client.get(f"/staff/captures/{capture_id}")
    assert page.status_code == 200 and 'id="plate"' in page.text
    assert "no readable plate" in html.unescape(page.text)
    assert client.get(f"/staff/captures/{capture_id}/plate.jpg").status_code == 404
    r = client.post(f"/staff/captures/{capture_id}/plate",
                    data={"csrf": csrf, "plate": "浙C5432", "colour": "yellow"})
    assert r.status_code == 409 and "fits no GA 36 plate" in _alert(r)
    r = client.post(f"/staff/captures/{capture_id}/plate",
                    data={"csrf": csrf, "plate": "浙C54321", "colour": "green"})
    assert r.status_code == 409 and "colour green" in _alert(r)
    r = client.post(f"/staff/captures/{capture_id}/plate",
                    data={"csrf": csrf, "plate": " 浙c54321 ", "colour": "yellow"},
                    follow_redirects=False)
    assert r.status_code == 303
    with Session(center.engine) as s:
        capture = s.get(Capture, capture_id)
        case_id = s.scalar(select(CaseCapture.case_id).where(
            CaseCapture.capture_id == capture_id))
        entry = s.scalars(select(PlateEntry)).one()
        trail = s.scalars(select(AuditEntry).where(AuditEntry.action == "plate_keyed")).one()
        opened = s.scalars(select(AuditEntry).where(AuditEntry.case_id == case_id)).all()
        case = s.get(Case, case_id)
    assert r.headers["location"] == f"/staff/cases/{case_id}"
    assert capture.plate == "浙C54321" and capture.plate_source == "staff"
    assert capture.evidential and capture.over
    assert case.plate == "浙C54321" and case.status == "awaiting_review"
    assert (entry.officer_id, entry.plate, entry.previous) == ("ZF002", "浙C54321", None)
    assert trail.actor.startswith("ZF002 李四") and "typed by ZF002" in trail.detail
    assert [a.action for a in opened] == ["case_opened", "plate_keyed"]
    assert trail.case_id == case_id and trail.detail.endswith(f"case {case_id}")
    plate_check = next(c for c in capture.checks if c["id"] == "plate")
    assert plate_check["ok"] and "typed by staff ZF002" in plate_check["text"]
    data = client.get(f"/staff/cases/{case_id}.json").json()
    [typed] = data["captures"][0]["plate_entries"]
    assert typed["officer_id"] == "ZF002" and typed["officer_name"] == "李四"
    text = client.get(f"/staff/cases/{case_id}").text
    assert "人工录入 Typed" in text and "ZF002 李四" in text and "typed by ZF002" in text
    # in a case now: the plate stays as the case was made on it
    r = client.post(f"/staff/captures/{capture_id}/plate",
                    data={"csrf": csrf, "plate": "浙C54322", "colour": "yellow"})
    assert r.status_code == 409 and f"evidence of case {case_id}" in _alert(r)


def test_key_in_plate_needs_a_reviewer(center: WebCenter) -> None:
    capture_id = _capture_without_plate(center)
    csrf = log_in(center.client, "FS001")
    r = center.client.post(f"/staff/captures/{capture_id}/plate",
                           data={"csrf": csrf, "plate": "浙C54321", "colour": "yellow"})
    assert r.status_code == 403
    page = center.client.get(f"/staff/captures/{capture_id}.json")
    assert page.status_code == 200 and page.json()["capture"]["plate"] is None
    assert center.client.get("/staff/captures/999").status_code == 404


def test_legal_review_through_the_page(center: WebCenter) -> None:
    """Where the table asks for 法制审核 (here set on the record, as a hearing or a large
    fine would), only a legal reviewer's form is shown and taken; not passed keeps the
    case where it is."""
    case_id = center.cases[1]
    desk = procedure.desk_for(center.settings)
    with Session(center.engine) as s, s.begin():
        procedure.review(s, case_id, "ZF001", desk)
        procedure.approve(s, case_id, "ZF002", desk)
        procedure.notify(s, case_id, "ZF001", desk)
        procedure.defence(s, case_id, "ZF001", desk, outcome="waived")
        rec = s.get(CaseProcedure, case_id)
        rec.legal_review_required, rec.legal_review_reason = True, "test: required"
    csrf = log_in(center.client, "ZF001")
    page = center.client.get(f"/staff/cases/{case_id}")
    assert 'id="legal-review"' not in page.text and "legal reviewer must review" in page.text
    r = _post(center, case_id, "decide", csrf=csrf, cosigner="ZF002")
    assert r.status_code == 409 and "legal review is required" in _alert(r)
    center.client.cookies.clear()
    csrf = log_in(center.client, "FS001")
    assert 'id="legal-review"' in center.client.get(f"/staff/cases/{case_id}").text
    r = _post(center, case_id, "legal-review", csrf=csrf, passed="yes", note="")
    assert r.status_code == 409 and "opinion" in _alert(r)
    assert _post(center, case_id, "legal-review", csrf=csrf, passed="no",
                 note="证据不足 evidence thin").status_code == 303
    assert _status(center, case_id) == "heard"
    assert _post(center, case_id, "legal-review", csrf=csrf, passed="yes",
                 note="合法 lawful").status_code == 303
    assert _status(center, case_id) == "legally_reviewed"
    data = center.client.get(f"/staff/cases/{case_id}.json").json()
    assert [s["outcome"] for s in data["steps"] if s["step"] == "legal_review"] == [
        "not_passed", "passed"]
    assert "decide" in data["forms"]["allowed"]
