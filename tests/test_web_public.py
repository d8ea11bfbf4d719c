"""The public pages (SQLite and PostgreSQL): every public JSON holds published fields
only, the downloads parse (GeoJSON, CSV safe for a spreadsheet, Atom), the map draws every
device, the monthly figures equal counts made here from the raw rows, the benchmark page
shows the rule tables, and no page carries inline script or style."""

import csv
import io
import re
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from center_factory import T0, make_packet
from fastapi.testclient import TestClient
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session
from web_factory import CASES, WebCenter, web_center

from center.cases import law_rules, process_pending, utc
from center.db import bulk_insert
from center.ingest_models import Device, StoredPacket
from center.law_models import Capture, Case, CaseCapture
from center.public_figures import monthly_figures
from center.registry import import_registry
from center.settings import LawSettings, WebSettings
from center.web.app import create_app
from evidence.packet import canonical_bytes, packet_hash
from overload import grade

DEVICE = {"device_id", "road", "stake", "direction", "latitude", "longitude", "notice_date",
          "notice_document", "notice_url", "enforcement_start", "active", "suspensions"}
"""The published fields of a device, written out here (not imported) so that a field the
pages add fails this test until it is added on purpose."""
SUSPENSION = {"starts", "ends", "reason"}
FIGURES = {"month", "vehicles_weighed", "captures_over_limit", "cases_opened",
           "fines_decided_yuan"}
MAP = {"frame", "devices", "tiles_configured", "width", "height", "projection", "west",
       "east", "south", "north", "step_deg", "meridians", "parallels", "x", "y", "label",
       "label_side"}
GEOJSON = {"type", "features", "id", "geometry", "coordinates", "properties"}
BENCHMARK = {"benchmark", "tolerance", "example_accuracy_class", "examples", "others", "id",
             "title", "rounding", "rounding_note", "bands", "zero_fine", "cap", "total_cap",
             "dimensions", "description", "from", "to", "action", "action_text",
             "applies_to", "rate_yuan", "per_kg", "rate_per_tonne_yuan", "source", "verify",
             "note", "cap_yuan", "kind", "percent_of_limit", "mpe", "accuracy_class",
             "percent_of_measured", "axle_code", "gross_kg", "limit_kg", "tolerance_kg",
             "excess_kg", "band", "fine_yuan", "steps", "cite", "detail"}
ALLOWED = {
    "/index.json": set(),
    "/devices.json": {"devices"} | DEVICE | SUSPENSION,
    "/devices/D1.json": {"device", "months", "totals"} | DEVICE | SUSPENSION | FIGURES,
    "/devices/D2.json": {"device", "months", "totals"} | DEVICE | SUSPENSION | FIGURES,
    "/devices/D3.json": {"device", "months", "totals"} | DEVICE | SUSPENSION | FIGURES,
    "/map.json": MAP | DEVICE | SUSPENSION,
    "/benchmark.json": BENCHMARK,
    "/devices.geojson": GEOJSON | DEVICE | SUSPENSION,
}
SECRETS = ("JD-2026-001", "JD-2026-002", "2026-01-10", "2027-01-14", "2026-01-20",
           "张三", "王五", "杭州示例物流有限公司", "91330100MA2B3C4D5N", "浙A12345", "浙B77777",
           "浙C11111", "certificate", "review_date", "officer", "owner", "decided_by")
"""What the registry, the staff and vehicle registers and the cases hold that the public
must not see: certificate numbers and dates, review and sign dates, officers', owners'
names, plates of cases, and the names of such fields."""
FORMULA_ROAD = '=HYPERLINK("http://evil.example/x","G104")'
EXTRA_REGISTRY = f"""\
device_id,road,stake,direction,latitude,longitude,review_date,certificate_number,\
accuracy_class,certificate_valid_from,certificate_valid_to,signs_installed,notice_date,\
notice_document,notice_url,enforcement_start,active,suspensions
D3,"{FORMULA_ROAD.replace('"', '""')}",K5+100,north,29.80,120.50,2026-01-10,JD-2026-003,5,\
2026-01-15,2027-01-14,2026-01-20,,,,,false,
"""
"""A third device: not in use, never announced, with a road that a spreadsheet would run
as a formula."""
PUBLIC_HTML = ("/", "/devices", "/devices/D1", "/devices/D2", "/devices/D3", "/map",
               "/benchmark", "/devices/NOPE")


def keys(value) -> set[str]:
    """Every key of every object in a JSON document."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in keys(v)}
    return set()


def add_packets(engine, items: list[tuple[str, int, datetime, str, float]]) -> None:
    """Store packets (device, sequence, time, plate, gross) as the receiver would."""
    with engine.begin() as conn:
        conn.execute(insert(Device).values(device_id="D2", sign_public_key="pem2",
                                           curve_public_key="m" * 40, enrolled_at=T0))
        for device, seq, at, plate, gross in items:
            packet = make_packet(device_id=device, sequence=seq, captured_at=at, plate=plate,
                                 gross_kg=gross)
            meta = canonical_bytes(packet)
            conn.execute(insert(StoredPacket).values(
                device_id=device, sequence=seq, hash=packet_hash(meta),
                previous_hash=packet.previous_hash, captured_at=at, lane=1,
                suspected_overload=True, meta=meta, signature=b"s", received_at=T0))


EXTRA_PACKETS = [
    ("D1", 10, datetime(2026, 6, 30, 15, 59, tzinfo=UTC), "浙C11111", 52_000),  # June 30 CST
    ("D1", 11, datetime(2026, 6, 30, 16, 0, tzinfo=UTC), "浙C22222", 40_000),   # July 1 CST
    ("D1", 12, datetime(2026, 7, 15, 3, 0, tzinfo=UTC), "浙C33333", 60_000),
    ("D1", 13, datetime(2026, 5, 31, 16, 30, tzinfo=UTC), "浙C44444", 70_000),  # June 1 CST
    ("D2", 1, datetime(2026, 8, 10, 4, 0, tzinfo=UTC), "浙C55555", 58_000),
    ("D2", 2, datetime(2026, 8, 11, 4, 0, tzinfo=UTC), "浙C66666", 45_000),
    ("D2", 3, datetime(2026, 6, 1, 5, 0, tzinfo=UTC), "浙C77777", 60_000),  # D2 suspended
]
"""Packets around a month's end in China time (UTC+8) on two devices, over and under, and
one over the limit while its device is suspended (no case)."""


@pytest.fixture
def public(center_db_url: str, tmp_path: Path) -> WebCenter:
    """The web center of web_factory with a third (inactive, formula-named) device, more
    packets across month ends, and fines decided in two cases."""
    wc = web_center(center_db_url, tmp_path)
    (tmp_path / "more.csv").write_text(EXTRA_REGISTRY, encoding="utf-8")
    with Session(wc.engine) as s, s.begin():
        import_registry(s, tmp_path / "more.csv")
    add_packets(wc.engine, EXTRA_PACKETS)
    process_pending(wc.engine, wc.settings)
    with Session(wc.engine) as s, s.begin():
        for case_id, fine in ((wc.cases[0], 3000.0), (wc.cases[1], 0.0)):
            s.execute(update(Case).where(Case.id == case_id).values(
                decision_fine_yuan=fine, decision="fine"))
        s.execute(update(Case).where(Case.plate == "浙C33333").values(
            decision_fine_yuan=4500.0, decision="fine"))
    return wc


def cst_month(t: datetime) -> str:
    return (utc(t) + timedelta(hours=8)).strftime("%Y-%m")


def counted(engine, device_id: str) -> dict[str, dict]:
    """The monthly figures of a device counted here, row by row, in Python."""
    with Session(engine) as s:
        packets = s.scalars(select(StoredPacket.captured_at)
                            .where(StoredPacket.device_id == device_id)).all()
        captures = s.execute(select(Capture.id, Capture.captured_at, Capture.over)
                             .where(Capture.device_id == device_id)).all()
        evidence = dict(s.execute(select(CaseCapture.capture_id, CaseCapture.case_id)
                                  .where(CaseCapture.role == "evidence")).all())
        fines = dict(s.execute(select(Case.id, Case.decision_fine_yuan)).all())
    months: dict[str, Counter] = {}
    for t in packets:
        months.setdefault(cst_month(t), Counter())["vehicles_weighed"] += 1
    for capture_id, t, over in captures:
        row = months.setdefault(cst_month(t), Counter())
        row["captures_over_limit"] += int(over)
        if capture_id in evidence:
            row["cases_opened"] += 1
            row["fines_decided_yuan"] += fines[evidence[capture_id]] or 0
    return {m: {"month": m, "vehicles_weighed": c["vehicles_weighed"],
                "captures_over_limit": c["captures_over_limit"],
                "cases_opened": c["cases_opened"],
                "fines_decided_yuan": float(c["fines_decided_yuan"])}
            for m, c in sorted(months.items())}


def test_public_json_holds_published_fields_only(public: WebCenter):
    bodies = {}
    for path, allowed in ALLOWED.items():
        r = public.client.get(path)
        assert r.status_code == 200, (path, r.text)
        found = keys(r.json())
        assert found <= allowed, f"{path} shows unpublished fields {found - allowed}"
        bodies[path] = r.text
    for path in ("/devices.csv", "/notices.atom", *PUBLIC_HTML):
        bodies[path] = public.client.get(path).text
    for path, text in bodies.items():
        for secret in SECRETS:
            assert secret not in text, f"{path} shows {secret!r}"


def test_monthly_figures_equal_counts_made_from_the_rows(public: WebCenter):
    expected_d1 = counted(public.engine, "D1")
    assert list(expected_d1) == ["2026-06", "2026-07"]
    june = expected_d1["2026-06"]
    assert june["vehicles_weighed"] == len(CASES) + 2  # the factory's three, 10 and 13
    assert expected_d1["2026-07"]["vehicles_weighed"] == 2  # 11 (midnight CST) and 12
    assert june["fines_decided_yuan"] == 3000.0
    assert expected_d1["2026-07"]["fines_decided_yuan"] == 4500.0
    assert expected_d1["2026-07"]["cases_opened"] == 1  # 11 is under the limit
    with Session(public.engine) as s:
        for device in ("D1", "D2", "D3"):
            assert [m.to_dict() for m in monthly_figures(s, device)] == \
                list(counted(public.engine, device).values()), device
    page = public.client.get("/devices/D1.json").json()
    assert page["months"] == list(expected_d1.values())
    assert page["totals"]["cases_opened"] == sum(m["cases_opened"] for m in page["months"])
    d2 = public.client.get("/devices/D2.json").json()["months"]
    assert d2 == list(counted(public.engine, "D2").values())
    assert [(m["month"], m["captures_over_limit"], m["cases_opened"]) for m in d2] == \
        [("2026-06", 1, 0), ("2026-08", 1, 1)]
    assert public.client.get("/devices/D3.json").json()["months"] == []  # never in use
    html = public.client.get("/devices/D1").text
    assert "2026-06" in html and "2026-07" in html and "repair" not in html
    assert "repair" in public.client.get("/devices/D2").text  # D2's suspension, published


def test_device_page_refuses_unknown_and_overlong_ids(public: WebCenter):
    assert public.client.get("/devices/NOPE").status_code == 404
    assert public.client.get("/devices/NOPE.json").json() == {
        "message": "no device 'NOPE' in the registry"}
    assert public.client.get("/devices/" + "X" * 65 + ".json").status_code == 404


def test_geojson_has_every_device_as_a_point(public: WebCenter):
    r = public.client.get("/devices.geojson")
    assert r.headers["content-type"].startswith("application/geo+json")
    doc = r.json()
    assert doc["type"] == "FeatureCollection"
    by_id = {f["properties"]["device_id"]: f for f in doc["features"]}
    assert set(by_id) == {"D1", "D2", "D3"}
    assert by_id["D1"]["geometry"] == {"type": "Point", "coordinates": [120.16, 30.25]}
    assert by_id["D3"]["properties"]["active"] is False
    assert set(by_id["D2"]["properties"]) == DEVICE


def test_csv_neutralises_a_formula_and_opens_in_a_chinese_excel(public: WebCenter):
    r = public.client.get("/devices.csv")
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    assert r.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert set(rows[0]) == DEVICE
    by_id = {row["device_id"]: row for row in rows}
    assert set(by_id) == {"D1", "D2", "D3"}
    assert by_id["D3"]["road"] == "'" + FORMULA_ROAD
    assert by_id["D1"]["notice_document"] == "浙交〔2026〕1号"
    assert by_id["D2"]["suspensions"] == "2026-05-30..2026-06-02 repair"
    assert by_id["D3"]["active"] == "false"
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in rows
                   for cell in row.values())


def test_atom_feed_has_an_entry_per_noticed_device(public: WebCenter):
    r = public.client.get("/notices.atom")
    assert r.headers["content-type"].startswith("application/atom+xml")
    feed = ET.fromstring(r.content)
    ns = {"a": "http://www.w3.org/2005/Atom"}
    assert feed.tag == "{http://www.w3.org/2005/Atom}feed"
    entries = feed.findall("a:entry", ns)
    ids = [e.findtext("a:id", namespaces=ns) for e in entries]
    assert sorted(ids) == ["urn:zhichao:device:D1:notice:2026-02-01",
                           "urn:zhichao:device:D2:notice:2026-02-01"]  # D3: no notice
    updated = [e.findtext("a:updated", namespaces=ns) for e in entries]
    assert updated == sorted(updated, reverse=True)
    d1 = entries[ids.index("urn:zhichao:device:D1:notice:2026-02-01")]
    links = {x.get("rel"): x.get("href") for x in d1.findall("a:link", ns)}
    assert links["alternate"] == "https://example.gov.cn/n/1"
    d2 = entries[ids.index("urn:zhichao:device:D2:notice:2026-02-01")]
    assert d2.find("a:link", ns).get("href").endswith("/devices/D2")
    assert feed.findtext("a:updated", namespaces=ns) == "2026-02-01T00:00:00+08:00"


def test_map_draws_a_marker_per_device_offline(public: WebCenter):
    html = public.client.get("/map").text
    markers = re.findall(r'data-device-id="([^"]+)"', html)
    assert sorted(markers) == ["D1", "D2", "D3"]
    assert "No base layer" in html and "tiles are configured" not in html
    assert 'href="/devices/D3"' in html and 'class="marker inactive"' in html
    layout = public.client.get("/map.json").json()
    frame = layout["frame"]
    for d in layout["devices"]:
        assert 0 < d["x"] < frame["width"] and 0 < d["y"] < frame["height"], d
        assert frame["west"] < d["longitude"] < frame["east"]
        assert frame["south"] < d["latitude"] < frame["north"]
    assert frame["meridians"] and frame["parallels"]
    by_id = {d["device_id"]: d for d in layout["devices"]}
    assert by_id["D2"]["x"] > by_id["D1"]["x"]  # east is right
    assert by_id["D1"]["y"] < by_id["D3"]["y"]  # north is up
    tiled = public.settings.model_copy(update={"web": WebSettings(
        uploads_dir=public.folder / "uploads", tile_url="https://tiles.example/{z}/{x}/{y}.png")})
    html = TestClient(create_app(tiled, public.engine)).get("/map").text
    assert "tiles are configured" in html
    assert len(re.findall(r"data-device-id=", html)) == 3
    assert "tiles.example" not in html  # no tile, no third-party script


def test_benchmark_in_force_from_the_rule_tables(public: WebCenter):
    rules = law_rules(public.settings.law)
    page = public.client.get("/benchmark.json").json()
    assert page["benchmark"]["id"] == "national"
    assert [b["id"] for b in page["benchmark"]["bands"]] == \
        [b.id for b in rules.benchmark("national").mass.bands]
    fine = page["benchmark"]["bands"][1]
    assert fine["rate_per_tonne_yuan"] == 500 and fine["source"].startswith("超限运输车辆")
    assert page["benchmark"]["cap"]["cap_yuan"] == 30000
    assert page["tolerance"]["id"] == "none"
    assert {o["id"] for o in page["others"]} == set(rules.benchmarks) - {"national"}
    for example in page["examples"]:
        g = grade("157", example["gross_kg"], rules)
        assert (example["action"], example["fine_yuan"]) == (g.action, g.fine_yuan)
    assert any(e["fine_yuan"] == 30000 for e in page["examples"])  # the cap shows
    html = public.client.get("/benchmark").text
    assert "第四十三条" in html and "3 000" in html
    law = LawSettings(benchmark="zhejiang", tolerance="mpe")
    other = public.settings.model_copy(update={"law": law})
    page = TestClient(create_app(other, public.engine)).get("/benchmark.json").json()
    assert len(page["benchmark"]["bands"]) == 3
    assert page["benchmark"]["bands"][1]["rate_per_tonne_yuan"] == 300
    assert page["example_accuracy_class"] is not None and page["tolerance"]["mpe"]
    assert keys(page) <= BENCHMARK


INLINE = (re.compile(r"\sstyle\s*=", re.I), re.compile(r"<style", re.I),
          re.compile(r"\son[a-z]+\s*=", re.I), re.compile(r"<script(?![^>]*\ssrc=)", re.I),
          re.compile(r"<script[^>]*>[^<]+</script>", re.I), re.compile(r"javascript:", re.I))


def test_no_inline_script_or_style_on_any_public_page(public: WebCenter):
    for path in PUBLIC_HTML:
        r = public.client.get(path)
        assert "text/html" in r.headers["content-type"], path
        assert "'unsafe-inline'" not in r.headers["content-security-policy"]
        for pattern in INLINE:
            assert not pattern.search(r.text), (path, pattern.pattern)
    css = public.client.get("/static/public.css")
    assert css.status_code == 200 and "marker" in css.text


def test_figures_add_up_over_many_months(center_db_url: str, tmp_path: Path):
    """5 000 captures and cases of one device and a neighbour's over a year and more: the
    grouped queries count each once, in its China-time month (how fast they are with
    100 000 cases: benchmarks/web.py)."""
    wc = web_center(center_db_url, tmp_path)
    n = 5_000
    start = datetime(2025, 1, 1, tzinfo=UTC)
    captures, cases, links = [], [], []
    for i in range(n):
        at = start + timedelta(minutes=140 * i)
        cid = 1_000_000 + i
        captures.append({"id": cid, "device_id": "D1" if i % 4 else "D2", "sequence": 10_000 + i,
                         "captured_at": at, "gross_kg": 55_400.0, "over": True,
                         "evidential": True, "checks": [], "processed_at": at})
        cases.append({"id": 1_000_000 + i, "plate": "X", "status": "awaiting_review",
                      "created_at": at, "first_at": at, "last_at": at, "best_capture_id": cid,
                      "first_violation": True, "captures_12m": 1, "cases_12m": 1,
                      "repeat_over_limit": False, "action": "fine",
                      "decision_fine_yuan": 3000.0 if i % 3 == 0 else None})
        links.append({"case_id": 1_000_000 + i, "capture_id": cid, "role": "evidence"})
    with wc.engine.begin() as conn:
        bulk_insert(conn, Capture.__table__, captures)
        bulk_insert(conn, Case.__table__, cases)
        bulk_insert(conn, CaseCapture.__table__, links)
    with Session(wc.engine) as s:
        months = monthly_figures(s, "D1")
    assert len(months) > 12
    d1 = [c for c in captures if c["device_id"] == "D1"]
    assert sum(m.cases_opened for m in months) == len(d1) + len(CASES)  # and the factory's
    assert sum(m.captures_over_limit for m in months) == len(d1) + len(CASES)
    assert sum(m.fines_decided_yuan for m in months) == \
        sum(c["decision_fine_yuan"] or 0 for c, x in zip(cases, captures, strict=True)
            if x["device_id"] == "D1")
