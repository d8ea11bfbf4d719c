"""The staff lists on the real app (SQLite and PostgreSQL): the queue with each filter,
paging and its JSON twin, bad filter values refused in one line; what falls due; the
registers with their history and imports (a bad row named and nothing written, then a good
import); roles, anonymous requests and a forged CSRF token refused with nothing written;
no inline script or style in any page."""

import html
import re
from datetime import date, timedelta

import pytest
from center_factory import T0, make_packet
from sqlalchemy import event, func, insert, select
from sqlalchemy.orm import Session
from web_factory import log_in, web_center

from center.cases import process_pending
from center.ingest_models import Device, StoredPacket
from center.law_models import AuditEntry, DeviceRecord, VehicleRow
from center.procedure import approve, desk_for, review
from evidence.packet import canonical_bytes, packet_hash

GOOD_REGISTRY = """\
device_id,road,stake,direction,latitude,longitude,review_date,certificate_number,\
accuracy_class,certificate_valid_from,certificate_valid_to,signs_installed,notice_date,\
notice_document,notice_url,enforcement_start,active,suspensions,effective_from
D1,G60,K123+450,east,30.25,120.16,2026-01-10,JD-2026-101,5,2026-06-10,2027-06-09,\
2026-01-20,2026-02-01,浙交〔2026〕1号,https://example.gov.cn/n/1,2026-03-01,true,,2026-06-10
D3,S13,K5+100,north,30.50,120.50,2026-01-10,JD-2026-003,5,2026-01-15,2027-01-14,\
2026-01-20,2026-02-01,浙交〔2026〕3号,,2026-03-01,true,,
"""
BAD_REGISTRY = GOOD_REGISTRY + """\
D4,S14,K9+000,south,30.60,120.60,2026-01-10,JD-2026-004,5,2026-13-01,2027-01-14,\
2026-01-20,2026-02-01,浙交〔2026〕4号,,2026-03-01,true,,
"""
BAD_VEHICLES = """\
plate,plate_colour,kind,licence_mass_kg,air_suspension,axle_code,owner_kind,owner_name,\
owner_id_number,address,phone,email,transport_certificate
浙C55555,yellow,,,false,157,person,钱七,,浙江省杭州市示例路3号,,,
浙C66666,yellow,,,false,157,robot,孙八,,浙江省杭州市示例路4号,,,
"""
GOOD_VEHICLES = BAD_VEHICLES.replace("robot", "person")


@pytest.fixture
def web(center_db_url, tmp_path):
    w = web_center(center_db_url, tmp_path)
    yield w
    w.client.close()
    w.engine.dispose()


def queue_json(web, query: str = "") -> dict:
    r = web.client.get(f"/staff.json{query}")
    assert r.status_code == 200, r.text
    return r.json()


def one_line_refusal(r, status: int = 422) -> str:
    """The refusal's message: one line, no traceback."""
    assert r.status_code == status, r.text[:300]
    assert "Traceback" not in r.text
    if r.headers["content-type"].startswith("application/json"):
        message = r.json().get("message") or r.json().get("detail")
    else:
        found = re.search(r'<p class="error" role="alert">([^<]*)</p>', r.text)
        assert found, r.text[:500]
        message = html.unescape(found.group(1))
    assert message and "\n" not in message
    return message


def rows(engine, model) -> int:
    with Session(engine) as s:
        return s.scalar(select(func.count()).select_from(model))


def suspended_capture(web) -> None:
    """A packet of device D2 during its suspension (2026-05-30..06-02), processed."""
    packet = make_packet(device_id="D2", sequence=7, plate="浙C12345", gross_kg=60_000,
                         captured_at=T0 + timedelta(hours=1))
    meta = canonical_bytes(packet)
    with web.engine.begin() as conn:
        conn.execute(insert(Device).values(device_id="D2", sign_public_key="pem2",
                                           curve_public_key="m" * 40, enrolled_at=T0))
        conn.execute(insert(StoredPacket).values(
            device_id="D2", sequence=7, hash=packet_hash(meta),
            previous_hash=packet.previous_hash, captured_at=packet.captured_at, lane=1,
            suspected_overload=True, meta=meta, signature=b"s", received_at=T0))
    process_pending(web.engine, web.settings)


# --- the queue -----------------------------------------------------------------------------

def test_the_queue_lists_cases_oldest_first_and_its_json_says_what_the_page_shows(web):
    log_in(web.client, "ZF001")
    data = queue_json(web)
    assert data["count"] == 3 and data["kind"] == "cases"
    assert [r["id"] for r in data["rows"]] == web.cases  # a day apart, oldest first
    assert [r["first_at"] for r in data["rows"]] == sorted(r["first_at"] for r in data["rows"])
    assert {r["site"] for r in data["rows"]} == {"D1"}
    assert data["filters"]["status"] == "awaiting_review" and data["awaiting"] == ["review"]
    page = web.client.get("/staff").text
    assert '<table class="grid" data-keys="queue">' in page
    hrefs = re.findall(r'<tr data-href="/staff/cases/(\d+)">', page)
    assert [int(h) for h in hrefs] == [r["id"] for r in data["rows"]]
    for r in data["rows"]:
        assert r["plate"] in page and r["first_at_cst"] in page
    assert f'<span class="count">{data["count"]}</span>' in page


def test_each_filter_of_the_queue(web):
    log_in(web.client, "ZF001")
    every = queue_json(web)["rows"]
    assert queue_json(web, "?site=D1")["count"] == 3
    assert queue_json(web, "?site=D2")["rows"] == []
    second = queue_json(web, "?day=2026-06-02")  # T0 + 1 day, in China
    assert [r["id"] for r in second["rows"]] == [web.cases[1]]
    assert queue_json(web, "?day=2026-05-31")["count"] == 0
    band = every[0]["band"]
    assert band
    same = queue_json(web, f"?band={band}")
    assert [r["id"] for r in same["rows"]] == [r["id"] for r in every if r["band"] == band]
    assert queue_json(web, "?status=reviewed")["count"] == 0
    assert queue_json(web, "?status=reviewed")["awaiting"] == ["approve"]
    assert queue_json(web, "?evidential=no")["count"] == 0
    suspended_capture(web)  # D2, suspended that day: over the limit, no evidence, no case
    captures = queue_json(web, "?evidential=no")
    assert captures["kind"] == "captures" and captures["count"] == 1
    held = captures["rows"][0]
    assert (held["site"], held["plate"], held["sequence"]) == ("D2", "浙C12345", 7)
    assert any("repair" in f or "suspend" in f for f in held["failed"]), held["failed"]
    assert queue_json(web, "?evidential=no&site=D1")["count"] == 0
    assert queue_json(web, "?evidential=no&day=2026-06-01")["count"] == 1
    page = web.client.get("/staff?evidential=no").text
    assert "浙C12345" in page and "data-keys" not in page  # no case to open: no keys
    assert queue_json(web)["count"] == 3  # it opened no case
    both = queue_json(web, f"?site=D1&day=2026-06-01&band={band}&status=awaiting_review")
    assert [r["id"] for r in both["rows"]] == [web.cases[0]]


@pytest.mark.parametrize("query", [
    "?day=2026-13-01", "?day=yesterday", "?limit=501", "?limit=0", "?limit=abc",
    "?offset=-1", "?band=no.such.band", "?status=lost", "?evidential=maybe",
    "?site=" + "x" * 65, "?sites=D1"])
def test_a_bad_filter_is_refused_in_one_line(web, query):
    log_in(web.client, "ZF001")
    message = one_line_refusal(web.client.get(f"/staff{query}"))
    assert one_line_refusal(web.client.get(f"/staff.json{query}")) == message


def test_paging_keeps_the_filters_and_the_count(web):
    log_in(web.client, "ZF001")
    first = queue_json(web, "?limit=2&site=D1")
    assert first["count"] == 3 and len(first["rows"]) == 2
    assert first["pages"]["previous"] is None and "offset=2" in first["pages"]["next"]
    assert "site=D1" in first["pages"]["next"]
    rest = queue_json(web, "?limit=2&offset=2&site=D1")
    assert [r["id"] for r in first["rows"] + rest["rows"]] == web.cases
    assert rest["pages"]["next"] is None and rest["pages"]["from"] == 3
    assert queue_json(web, "?offset=10")["rows"] == []
    assert 'rel="next"' in web.client.get("/staff?limit=2").text


def test_the_queue_asks_the_database_the_same_number_of_times_for_any_page_size(web):
    """One query for the page and one for the count: none per row."""
    log_in(web.client, "ZF001")
    counts = []
    for limit in (1, 3):
        seen = []

        def count(*_args, seen=seen):
            seen.append(1)
        event.listen(web.engine, "before_cursor_execute", count)
        try:
            queue_json(web, f"?limit={limit}")
        finally:
            event.remove(web.engine, "before_cursor_execute", count)
        counts.append(len(seen))
    assert counts[0] == counts[1]


# --- what falls due ------------------------------------------------------------------------

def test_the_due_list_overdue_first_and_bounded(web):
    """Case 1 filed on 2026-06-05 (decide within 90 days: overdue by now), case 2 filed
    today (due in 90 days): with 366 days both, overdue first; with 7 days only case 1."""
    desk = desk_for(web.settings, notify=False)
    with Session(web.engine) as s, s.begin():
        for case_id, day in ((web.cases[0], date(2026, 6, 5)), (web.cases[1], desk.today)):
            review(s, case_id, "ZF001", desk.on(day))
            approve(s, case_id, "ZF002", desk.on(day))
    log_in(web.client, "FS001")
    r = web.client.get("/staff/due.json?days=366")
    assert r.status_code == 200
    data = r.json()
    decide = [i for i in data["items"] if i["what"] == "decide"]
    assert [i["case_id"] for i in decide] == web.cases[:2]
    assert [i["overdue"] for i in decide] == [True, False] and data["overdue"] >= 1
    overdue = [i["overdue"] for i in data["items"]]
    assert overdue == sorted(overdue, reverse=True)  # overdue first
    assert all(i["what"] and "第六十条" in i["source"] for i in decide)
    week = web.client.get("/staff/due.json").json()
    assert week["days"] == 7 and [i["case_id"] for i in week["items"]] == [web.cases[0]]
    page = web.client.get("/staff/due?days=366").text
    assert all(f'/staff/cases/{i["case_id"]}' in page for i in data["items"])
    assert 'class="overdue"' in page
    one_line_refusal(web.client.get("/staff/due?days=367"))
    one_line_refusal(web.client.get("/staff/due.json?days=-1"))


# --- registers and imports -------------------------------------------------------------------

def upload(client, path: str, csrf: str, body: str, name: str = "devices.csv"):
    return client.post(path, data={"csrf": csrf},
                       files={"file": (name, body.encode("utf-8"), "text/csv")})


def test_a_registry_import_with_a_bad_row_names_it_and_writes_nothing_then_a_good_one(web):
    csrf = log_in(web.client, "ADM01")
    before, audit = rows(web.engine, DeviceRecord), rows(web.engine, AuditEntry)
    r = upload(web.client, "/staff/devices/import", csrf, BAD_REGISTRY)
    assert r.status_code == 422
    assert "devices.csv row 4: certificate_valid_from" in r.text and "2026-13-01" in r.text
    assert "zhichao-import" not in r.text and "/tmp" not in r.text
    assert rows(web.engine, DeviceRecord) == before and rows(web.engine, AuditEntry) == audit
    r = upload(web.client, "/staff/devices/import", csrf, GOOD_REGISTRY)
    assert r.status_code == 200, r.text[:500]
    assert "added 1" in r.text and "updated 1" in r.text
    data = web.client.get("/staff/devices.json").json()
    assert data["count"] == 3
    assert {d["device_id"]: d["version"] for d in data["devices"]} == {"D1": 2, "D2": 1, "D3": 1}
    assert [s["reason"] for s in data["devices"][1]["suspensions"]] == ["repair"]
    history = web.client.get("/staff/devices/D1.json").json()
    assert [v["version"] for v in history["versions"]] == [1, 2]
    assert [v["certificate_number"] for v in history["versions"]] == ["JD-2026-001",
                                                                       "JD-2026-101"]
    assert history["versions"][1]["effective_from"] == "2026-06-10"
    page = web.client.get("/staff/devices/D1").text
    assert "JD-2026-001" in page and "JD-2026-101" in page
    assert web.client.get("/staff/devices/D2.json").json()["suspensions"][0]["reason"] == \
        "repair"
    assert one_line_refusal(web.client.get("/staff/devices/D9"), 404)


def test_imports_refuse_reviewers_anonymous_forged_tokens_and_bad_uploads(web):
    before = rows(web.engine, DeviceRecord)
    r = upload(web.client, "/staff/devices/import", "x", GOOD_REGISTRY)
    assert r.status_code == 401
    csrf = log_in(web.client, "ZF001")
    assert upload(web.client, "/staff/devices/import", csrf, GOOD_REGISTRY).status_code == 403
    assert upload(web.client, "/staff/vehicles/import", csrf, GOOD_VEHICLES,
                  "vehicles.csv").status_code == 403
    assert 'action="/staff/devices/import"' not in web.client.get("/staff/devices").text
    csrf = log_in(web.client, "ADM01")
    assert 'action="/staff/devices/import"' in web.client.get("/staff/devices").text
    forged = upload(web.client, "/staff/devices/import", "forged-" + "0" * 36, GOOD_REGISTRY)
    assert forged.status_code == 403
    assert upload(web.client, "/staff/devices/import", csrf, GOOD_REGISTRY,
                  "devices.exe").status_code == 415
    big = GOOD_REGISTRY + "#" * 5_100_000
    assert upload(web.client, "/staff/devices/import", csrf, big).status_code == 413
    r = web.client.post("/staff/devices/import", data={"csrf": csrf})
    one_line_refusal(r)
    assert rows(web.engine, DeviceRecord) == before


def test_the_vehicle_register_and_its_import(web):
    csrf = log_in(web.client, "ZF002")
    data = web.client.get("/staff/vehicles.json").json()
    assert data["count"] == 2 and {v["plate"] for v in data["vehicles"]} == {"浙A12345",
                                                                                  "浙B77777"}
    assert "浙B77777" in web.client.get("/staff/vehicles").text
    assert web.client.get("/staff/vehicles.json?limit=1").json()["vehicles"][0]["plate"] \
        == data["vehicles"][0]["plate"]
    one_line_refusal(web.client.get("/staff/vehicles?limit=9999"))
    assert upload(web.client, "/staff/vehicles/import", csrf, GOOD_VEHICLES,
                  "vehicles.csv").status_code == 403
    csrf = log_in(web.client, "ADM01")
    r = upload(web.client, "/staff/vehicles/import", csrf, BAD_VEHICLES, "vehicles.csv")
    assert r.status_code == 422 and "vehicles.csv row 3" in r.text
    assert rows(web.engine, VehicleRow) == 2
    r = upload(web.client, "/staff/vehicles/import", csrf, GOOD_VEHICLES, "vehicles.csv")
    assert r.status_code == 200 and "added 2" in r.text
    assert web.client.get("/staff/vehicles.json").json()["count"] == 4


def test_the_staff_register_is_for_administrators(web):
    assert web.client.get("/staff/staff.json").status_code == 401
    r = web.client.get("/staff/staff", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/staff/login")
    log_in(web.client, "ZF001")
    assert web.client.get("/staff/staff.json").status_code == 403
    assert web.client.get("/staff/staff").status_code == 403
    log_in(web.client, "ADM01")
    data = web.client.get("/staff/staff.json").json()
    assert [o["officer_id"] for o in data["officers"]] == ["ADM01", "FS001", "ZF001", "ZF002"]
    assert "浙33010012347" in web.client.get("/staff/staff").text


@pytest.mark.parametrize("path", ["/staff", "/staff/due", "/staff/devices", "/staff/vehicles",
                                  "/staff/devices/D1"])
def test_anonymous_requests_get_401_or_the_log_in_page(web, path):
    assert web.client.get(path + ".json").status_code == 401
    r = web.client.get(path, follow_redirects=False)
    assert r.status_code == 303 and "/staff/login" in r.headers["location"]


def test_no_inline_script_or_style_in_any_list_page(web):
    log_in(web.client, "ADM01")
    for path in ("/staff", "/staff?evidential=no", "/staff/due?days=366", "/staff/devices",
                 "/staff/devices/D2", "/staff/vehicles", "/staff/staff",
                 "/staff/oversight?until=2026-06-03", "/staff?day=bad"):
        text = web.client.get(path).text
        assert "<html" in text, path
        assert not re.search(r"\sstyle\s*=", text, re.I), path
        assert not re.search(r"\son[a-z]+\s*=", text, re.I), path
        assert not re.search(r"<script(?![^>]*\ssrc=)[^>]*>", text, re.I), path
        assert "<style" not in text.lower(), path
