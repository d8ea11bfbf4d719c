"""The owner's pages on the real app and a real database (SQLite and PostgreSQL): a case
taken to ``notified`` by the procedure's own steps, its code read back from the notice
PDF, the look-up (one answer for a wrong code and an unknown plate, a rate limit), the
statement with attachments (types by their bytes, sizes, counts, the deadline, CSRF),
the evidence photo with other vehicles' plates blacked out, and pages without inline
script or style."""

import hashlib
import re
import subprocess
from datetime import date, datetime, timedelta, timezone

import cv2
import numpy as np
import pytest
from center_factory import T0, make_packet
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session
from web_factory import web_center

from center import owner, procedure
from center.cases import process_pending
from center.ingest_models import StoredPacket
from center.law_models import AuditEntry, Case
from center.procedure_models import CaseDocument, CaseProcedure
from center.web import owner_pages
from center.web.app import create_app
from center.web_models import CaseAccess, OwnerAttachment, OwnerStatement
from evidence.packet import ImageRef, canonical_bytes, packet_hash

CST = timezone(timedelta(hours=8))
DAY = date(2026, 6, 2)
"""The day the case is reviewed, approved and notified (defence until 9 June)."""
INSIDE = datetime(2026, 6, 9, 23, 55, tzinfo=CST)
"""The last minutes of the window's last day, China time (15:55 UTC)."""
AFTER = datetime(2026, 6, 10, 0, 5, tzinfo=CST)
"""Just after it (still 9 June in UTC)."""
PLATE = "浙B77777"
OWN = (100, 330, 220, 370)
"""The case vehicle's plate in its photo (x0, y0, x1, y1): yellow."""
OTHER = (420, 180, 540, 220)
"""Another vehicle's plate in the same photo: blue."""
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
CODE = re.compile(r"查询码[:：]?([A-Z2-9]{5}-[A-Z2-9]{5})")
INLINE = re.compile(r"<style|style=|<script(?![^>]*\bsrc=)|\son[a-z]+=", re.IGNORECASE)


def two_plates() -> bytes:
    """A scene with the case vehicle's yellow plate and another vehicle's blue one."""
    rng = np.random.default_rng(7)
    img = rng.integers(60, 120, (480, 640, 3), dtype=np.uint8)
    cv2.rectangle(img, OWN[:2], OWN[2:], (0, 200, 230), -1)
    cv2.putText(img, "B77777", (OWN[0] + 8, OWN[3] - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.8,
                (0, 0, 0), 2)
    cv2.rectangle(img, OTHER[:2], OTHER[2:], (200, 80, 20), -1)
    cv2.putText(img, "C55555", (OTHER[0] + 8, OTHER[3] - 10), cv2.FONT_HERSHEY_SIMPLEX,
                0.8, (255, 255, 255), 2)
    ok, jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return jpeg.tobytes()


def add_case(wc) -> tuple[int, bytes]:
    """A fourth case: a packet whose photo shows two plates, its own plate box right."""
    jpeg = two_plates()
    sha = hashlib.sha256(jpeg).hexdigest()
    path = wc.settings.images_dir / sha[:2] / sha
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg)
    packet = make_packet(plate=PLATE, gross_kg=60_000, sequence=10,
                         captured_at=T0 - timedelta(days=5))
    cx, cy = (OWN[0] + OWN[2]) / 2, (OWN[1] + OWN[3]) / 2
    plate = packet.plate.model_copy(update={"box": [cx, cy, OWN[2] - OWN[0],
                                                    OWN[3] - OWN[1], 0.0]})
    packet = packet.model_copy(update={"plate": plate, "images": [
        ImageRef(role="front", sha256=sha, size=len(jpeg))]})
    meta = canonical_bytes(packet)
    with wc.engine.begin() as conn:
        conn.execute(insert(StoredPacket).values(
            device_id=packet.device_id, sequence=packet.sequence, hash=packet_hash(meta),
            previous_hash=packet.previous_hash, captured_at=packet.captured_at, lane=1,
            suspected_overload=True, meta=meta, signature=b"s", received_at=T0))
    process_pending(wc.engine, wc.settings)
    with Session(wc.engine) as s:
        case_id = s.scalars(select(Case.id).where(Case.plate == PLATE)
                            .order_by(Case.id.desc())).first()
    return case_id, jpeg


def notify(wc, case_id: int) -> None:
    """Review, approve and notify the case with the procedure's functions, on DAY."""
    desk = procedure.desk_for(wc.settings, today=DAY)
    for name, officer in (("review", "ZF001"), ("approve", "ZF002"), ("notify", "ZF001")):
        with Session(wc.engine) as s, s.begin():
            getattr(procedure, name)(s, case_id, officer, desk)


def notice_code(wc, case_id: int) -> str:
    """The look-up code as pdftotext reads it from the notice PDF."""
    with Session(wc.engine) as s:
        pdf = s.scalars(select(CaseDocument.pdf).where(
            CaseDocument.case_id == case_id, CaseDocument.kind == "notice")).one()
    text = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True,
                          check=True, timeout=60).stdout.decode("utf-8")
    found = CODE.search(re.sub(r"\s+", "", text))
    assert found, text[-800:]
    return found.group(1)


@pytest.fixture
def oc(center_db_url, tmp_path, monkeypatch):
    """A center whose fourth case (two plates in its photo) is notified, its app with
    small limits, the clock inside the defence window; (center, case id, code, photo)."""
    wc = web_center(center_db_url, tmp_path)
    case_id, jpeg = add_case(wc)
    notify(wc, case_id)
    web = wc.settings.web.model_copy(update={"max_attachments": 2,
                                             "max_attachment_bytes": 100_000,
                                             "owner_attempts_per_hour": 50})
    wc.settings = wc.settings.model_copy(update={"web": web})
    wc.client = TestClient(create_app(wc.settings, wc.engine))
    monkeypatch.setattr(owner_pages, "clock", lambda: INSIDE)
    yield wc, case_id, notice_code(wc, case_id), jpeg
    wc.engine.dispose()


def look_up(client, plate: str, code: str):
    return client.post("/case/lookup", data={"plate": plate, "code": code},
                       follow_redirects=False)


def enter(client, code: str) -> str:
    """Look the case up; the statement form's CSRF token."""
    r = look_up(client, PLATE, code)
    assert r.status_code == 303, r.text
    page = client.get("/case/view")
    assert page.status_code == 200
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def send(client, csrf: str, text: str = "车辆当日所载为不可解体物品，附通行证。", files=()):
    return client.post("/case/statement", data={"csrf": csrf, "text": text},
                       files=[("files", f) for f in files], follow_redirects=False)


def png() -> bytes:
    ok, data = cv2.imencode(".png", np.full((20, 30, 3), 200, np.uint8))
    assert ok
    return data.tobytes()


def stored(wc) -> tuple[int, int, list]:
    with Session(wc.engine) as s:
        return (s.scalar(select(func.count()).select_from(OwnerStatement)),
                s.scalar(select(func.count()).select_from(OwnerAttachment)),
                sorted(p.name for p in wc.settings.web.uploads_dir.glob("*"))
                if wc.settings.web.uploads_dir.exists() else [])


def test_the_code_printed_on_the_notice_finds_the_case(oc):
    wc, case_id, code, _ = oc
    with Session(wc.engine) as s:
        access = s.get(CaseAccess, case_id)
        facts = s.scalars(select(CaseDocument.facts).where(
            CaseDocument.case_id == case_id, CaseDocument.kind == "notice")).one()
        until = s.get(CaseProcedure, case_id).defence_until
    assert until == date(2026, 6, 9)
    assert facts["lookup_code"] == code  # the notice's facts hold it, as its PDF does
    assert code.replace("-", "") not in access.code_hash and len(access.code_hash) == 64
    raw = code.replace("-", "")
    assert owner._code_hash(case_id, raw) != owner._code_hash(case_id + 1, raw)  # keyed

    r = look_up(wc.client, " " + PLATE.lower(), code.lower().replace("-", " "))
    assert r.status_code == 303 and r.headers["location"] == "/case/view"
    cookie = r.headers["set-cookie"]
    for attribute in ("HttpOnly", "SameSite=strict", "Path=/case", "Max-Age=1800"):
        assert attribute.lower() in cookie.lower(), cookie
    assert "secure" not in cookie.lower()  # no TLS here
    page = wc.client.get("/case/view")
    assert page.status_code == 200 and PLATE in page.text and str(until) in page.text
    data = wc.client.get("/case/view.json").json()
    assert data["case"]["id"] == case_id and data["open"] is True
    assert data["basis"]["band_id"] and data["facts"]["gross_kg"] == 60_000
    assert "lookup_code" not in str(data)

    docs = data["documents"]
    assert [d["kind"] for d in docs] == ["notice"]
    pdf = wc.client.get(f"/case/document/{docs[0]['id']}")
    assert pdf.headers["content-type"] == "application/pdf"
    assert hashlib.sha256(pdf.content).hexdigest() == docs[0]["sha256"]
    with Session(wc.engine) as s:
        others = s.scalars(select(CaseDocument.id).where(CaseDocument.case_id != case_id))
        for doc_id in others:
            assert wc.client.get(f"/case/document/{doc_id}").status_code == 404

    assert wc.client.post("/case/leave", data={"csrf": "forged"}).status_code == 403
    anonymous = TestClient(wc.client.app)
    assert anonymous.get("/case/view", follow_redirects=False).headers["location"] == "/case"
    assert anonymous.get("/case/view.json").status_code == 401
    assert anonymous.get("/case/photo/0").status_code == 401
    forged = TestClient(wc.client.app, cookies={"zhichao_owner": "eyJjIjoxfQ.forged.sig"})
    assert forged.get("/case/view.json").status_code == 401


def test_a_wrong_code_and_an_unknown_plate_answer_alike(oc):
    wc, case_id, code, _ = oc
    wrong = "ABCDE-FGHJK" if code != "ABCDE-FGHJK" else "ABCDE-FGHJM"
    answers = [look_up(wc.client, PLATE, wrong), look_up(wc.client, "浙Z00000", code),
               look_up(wc.client, "浙Z00000", "nonsense!"), look_up(wc.client, "浙A12345", code)]
    assert {r.status_code for r in answers} == {404}
    messages = {re.search(r'role="alert">([^<]+)<', r.text).group(1) for r in answers}
    assert messages == {owner_pages.NOT_FOUND}
    bodies = {re.sub(r'name="plate" value="[^"]*"', "", r.text) for r in answers}
    assert len(bodies) == 1  # nothing but the plate typed differs
    assert "set-cookie" not in {k.lower() for r in answers for k in r.headers}
    with Session(wc.engine) as s:
        assert owner.find_case(s, PLATE, wrong) is None
        assert owner.find_case(s, PLATE, code).id == case_id


def test_look_ups_over_the_rate_get_429_with_retry_after(oc):
    wc, _, code, _ = oc
    web = wc.settings.web.model_copy(update={"owner_attempts_per_hour": 3})
    client = TestClient(create_app(wc.settings.model_copy(update={"web": web}), wc.engine))
    for _ in range(3):
        assert look_up(client, PLATE, "ABCDE-FGHJK").status_code in (303, 404)
    over = look_up(client, PLATE, code)  # even the right code, once over
    assert over.status_code == 429 and int(over.headers["retry-after"]) > 3000
    assert "Too many attempts" in over.text
    limiter = owner.RateLimiter(2, window_s=10)
    assert limiter.hit("a", 0) is None and limiter.hit("a", 1) is None
    assert limiter.hit("a", 2) == pytest.approx(8) and limiter.hit("b", 2) is None
    assert limiter.hit("a", 10.5) is None  # the first attempt left the window


def test_a_statement_with_a_pdf_and_a_png_is_stored_under_generated_names(oc):
    wc, case_id, code, _ = oc
    csrf = enter(wc.client, code)
    image = png()
    r = send(wc.client, csrf, files=[("通行证.pdf", PDF, "application/pdf"),
                                     ("../../etc/照片.png", image, "image/png")])
    assert r.status_code == 303, r.text
    with Session(wc.engine) as s:
        statement = s.scalars(select(OwnerStatement)).one()
        files = s.scalars(select(OwnerAttachment).order_by(OwnerAttachment.id)).all()
        audit = s.scalars(select(AuditEntry).where(AuditEntry.action == "owner_statement")).one()
    assert statement.case_id == case_id and "不可解体" in statement.text
    assert [(f.original_name, f.media_type, f.size) for f in files] == [
        ("通行证.pdf", "application/pdf", len(PDF)), ("照片.png", "image/png", len(image))]
    for f, data in zip(files, (PDF, image), strict=True):
        assert re.fullmatch(r"[0-9a-f]{32}\.(pdf|png)", f.stored_name)
        on_disk = (wc.settings.web.uploads_dir / f.stored_name).read_bytes()
        assert on_disk == data and f.sha256 == hashlib.sha256(data).hexdigest()
    assert audit.actor == "owner (online)" and files[0].sha256 in audit.detail
    page = wc.client.get("/case/view?sent=1")
    assert "通行证.pdf" in page.text and "received" in page.text
    assert wc.client.get(f"/static/{files[0].stored_name}").status_code == 404


@pytest.mark.parametrize("files, reason", [
    ([("invoice.pdf", b"MZ\x90\x00\x03\x00\x00\x00" + b"\x00" * 200, "application/pdf")],
     "is not a PDF, JPEG or PNG file"),
    ([("big.pdf", PDF + b"0" * 100_000, "application/pdf")], "larger than the 100000 bytes"),
    ([(f"p{i}.pdf", PDF, "application/pdf") for i in range(3)],
     "3 attachments; at most 2"),
], ids=["executable-named-pdf", "too-big", "too-many"])
def test_a_wrong_attachment_is_refused_with_its_reason_and_nothing_stored(oc, files, reason):
    wc, _, code, _ = oc
    csrf = enter(wc.client, code)
    r = send(wc.client, csrf, files=files)
    assert r.status_code == 400 and reason in r.text, r.text[-2000:]
    assert stored(wc) == (0, 0, [])


def test_text_csrf_and_the_deadline_are_enforced(oc, monkeypatch):
    wc, _, code, _ = oc
    csrf = enter(wc.client, code)
    assert send(wc.client, csrf, text="  ").status_code == 400
    too_long = send(wc.client, csrf, text="字" * (owner.TEXT_MAX + 1))
    assert too_long.status_code == 400 and "at most 5000" in too_long.text
    assert send(wc.client, "forged").status_code == 403
    assert send(TestClient(wc.client.app), csrf).status_code == 401
    assert stored(wc) == (0, 0, [])
    monkeypatch.setattr(owner_pages, "clock", lambda: AFTER)
    late = send(wc.client, csrf, files=[("a.pdf", PDF, "application/pdf")])
    assert late.status_code == 403 and "the defence window closed on 2026-06-09" in late.text
    assert stored(wc) == (0, 0, [])
    page = wc.client.get("/case/view")
    assert 'action="/case/statement"' not in page.text and "closed on 2026-06-09" in page.text


def test_the_photo_masks_other_plates_and_keeps_the_own_one(oc):
    wc, _, code, original = oc
    enter(wc.client, code)
    r = wc.client.get("/case/photo/0")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    masked = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
    before = cv2.imdecode(np.frombuffer(original, np.uint8), cv2.IMREAD_COLOR)

    def region(img, box):
        return img[box[1]:box[3], box[0]:box[2]].astype(float)
    assert region(masked, OTHER).mean() < 5  # blacked out
    assert abs(region(masked, OTHER) - region(before, OTHER)).mean() > 60
    kept = abs(region(masked, OWN) - region(before, OWN)).mean()
    assert kept < 12 and region(masked, OWN).mean() > 100  # kept (JPEG noise only)
    assert wc.client.get("/case/photo/1").status_code == 404


def test_the_pages_carry_no_inline_script_or_style(oc):
    wc, _, code, _ = oc
    pages = [wc.client.get("/case"), look_up(wc.client, PLATE, "ABCDE-FGHJK")]
    enter(wc.client, code)
    pages.append(wc.client.get("/case/view"))
    for r in pages:
        assert not INLINE.search(r.text), INLINE.search(r.text)
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert "/static/owner.css" in r.text
    assert wc.client.get("/static/owner.css").status_code == 200
