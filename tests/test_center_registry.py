"""The device registry: import from CSV or YAML, row-numbered errors, nothing half-imported,
re-import updates (SQLite and PostgreSQL)."""

from datetime import date
from pathlib import Path

import pytest
from center_factory import REGISTRY_CSV, center_engine
from sqlalchemy import select
from sqlalchemy.orm import Session

from center.law_models import AuditEntry, DeviceRecord
from center.registry import RegistryError, import_registry, list_devices, read_registry
from zhichao.resources import config_dir

YAML = """\
devices:
  - device_id: D3
    road: S13
    stake: K5+200
    direction: north
    latitude: 29.9
    longitude: 119.5
    review_date: 2026-02-01
    certificate_number: JD-3
    accuracy_class: "5"
    certificate_valid_from: 2026-02-01
    certificate_valid_to: 2027-01-31
    signs_installed: 2026-02-05
    notice_date: 2026-02-10
    notice_document: 杭交〔2026〕3号
    notice_url: https://example.gov.cn/n/3
    enforcement_start: 2026-03-01
    suspensions:
      - {starts: 2026-04-01, ends: 2026-04-03, reason: calibration}
      - {starts: 2026-08-01, reason: road works}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_rows_read_with_dates_and_suspensions(tmp_path):
    d1, d2 = read_registry(write(tmp_path, "devices.csv", REGISTRY_CSV))
    assert (d1.device_id, d1.stake, d1.latitude) == ("D1", "K123+450", 30.25)
    assert d1.certificate_valid_to == date(2027, 1, 14) and d1.notice_url.endswith("/n/1")
    assert d1.suspensions == [] and d2.notice_url is None
    (stop,) = d2.suspensions
    assert (stop.starts, stop.ends, stop.reason) == (date(2026, 5, 30), date(2026, 6, 2),
                                                     "repair")


def test_yaml_rows_read(tmp_path):
    (d3,) = read_registry(write(tmp_path, "devices.yaml", YAML))
    assert d3.active and d3.review_date == date(2026, 2, 1)
    assert [(s.starts, s.ends) for s in d3.suspensions] == [
        (date(2026, 4, 1), date(2026, 4, 3)), (date(2026, 8, 1), None)]


def test_every_bad_row_is_named_by_its_row(tmp_path):
    lines = REGISTRY_CSV.splitlines()
    header, good = lines[0], lines[1]
    bad_date = good.replace("D1,", "D4,").replace("2027-01-14", "2025-13-01")
    bad_lat = good.replace("D1,", "D5,").replace("30.25", "north")
    dup = good
    text = "\n".join([header, good, good.replace("D1,", "D3,"), bad_date, bad_lat, dup]) + "\n"
    with pytest.raises(RegistryError) as err:
        read_registry(write(tmp_path, "devices.csv", text))
    message = str(err.value)
    assert message.startswith("nothing imported:")
    assert "devices.csv row 4: certificate_valid_to '2025-13-01' is not a date (YYYY-MM-DD)" \
        in message
    assert "devices.csv row 5: latitude 'north' is not a number" in message
    assert "devices.csv row 6: device_id 'D1' is also in devices.csv row 2" in message
    assert "row 3" not in message


@pytest.mark.parametrize(("edit", "words"), [
    (lambda t: t.replace("road,", "raod,"), "row 1: unknown column(s) raod"),
    (lambda t: t.replace(",2026-05-30..2026-06-02 repair", ",2026-05-30 repair"),
     "row 3: suspension '2026-05-30 repair' is not FROM..TO reason"),
    (lambda t: t.replace("..2026-06-02 repair", "..2026-05-01 repair"),
     "row 3: suspensions.0 suspension ends 2026-05-01 before it starts 2026-05-30"),
    (lambda t: t.replace("2026-01-15,2027-01-14", "2027-01-15,2026-01-14", 1),
     "row 2: certificate_valid_to 2026-01-14 is before certificate_valid_from 2027-01-15"),
    (lambda t: t.replace("D1,G60,K123+450", "D1,G60,"), "row 2: stake is required but missing"),
    (lambda t: t.replace(",true,\n", ",maybe,\n", 1), "row 2: active 'maybe' is not true or"),
])
def test_bad_csv_values(tmp_path, edit, words):
    with pytest.raises(RegistryError, match=None) as err:
        read_registry(write(tmp_path, "devices.csv", edit(REGISTRY_CSV)))
    assert words in str(err.value)


def test_bad_yaml_row_names_its_place_and_device(tmp_path):
    text = YAML.replace("latitude: 29.9", "latitude: 99.9").replace("notice_url:", "notice_ur:")
    with pytest.raises(RegistryError) as err:
        read_registry(write(tmp_path, "devices.yaml", text))
    assert "devices.yaml row 1 (D3): latitude 99.9 must be less than or equal to 90" \
        in str(err.value)
    assert "devices.yaml row 1 (D3): notice_ur" in str(err.value)


@pytest.mark.parametrize(("name", "text", "words"), [
    ("devices.txt", "x", "unknown format '.txt'"),
    ("devices.yaml", "devices: [", "not valid YAML"),
    ("devices.yaml", "a: 1", "expected a list of devices"),
    ("devices.csv", "", "empty file"),
])
def test_unreadable_files(tmp_path, name, text, words):
    with pytest.raises(RegistryError) as err:
        read_registry(write(tmp_path, name, text))
    assert words in str(err.value)


def test_import_then_reimport_updates_and_a_bad_file_changes_nothing(center_db_url, tmp_path):
    engine = center_engine(center_db_url)
    csv_path = write(tmp_path, "devices.csv", REGISTRY_CSV)
    with Session(engine) as session, session.begin():
        result = import_registry(session, csv_path, actor="tester")
    assert (result.added, result.updated, result.devices) == (2, 0, ("D1", "D2"))
    with Session(engine) as session, session.begin():
        import_registry(session, write(tmp_path, "more.yaml", YAML))
    changed = REGISTRY_CSV.replace("JD-2026-002", "JD-2026-099").replace(
        ",2026-05-30..2026-06-02 repair", ",")
    with Session(engine) as session, session.begin():
        result = import_registry(session, write(tmp_path, "devices2.csv", changed))
    assert (result.added, result.updated) == (0, 2)
    with Session(engine) as session:
        devices = {r.device_id: (r, s) for r, s in list_devices(session)}
        assert sorted(devices) == ["D1", "D2", "D3"]
        assert devices["D2"][0].certificate_number == "JD-2026-099"
        assert devices["D2"][1] == []  # suspensions replaced by the file's (none)
        assert len(devices["D3"][1]) == 2
        audit = session.scalars(select(AuditEntry.actor)).all()
        assert audit == ["tester", "import", "import"]

    half_bad = changed.replace("JD-2026-099", "JD-NEW") + \
        "D7,G1,K1,east,30,120,not-a-date,,,,,,,,,,true,\n"
    with pytest.raises(RegistryError, match="row 4: review_date 'not-a-date'"), \
            Session(engine) as session, session.begin():
        import_registry(session, write(tmp_path, "bad.csv", half_bad))
    with Session(engine) as session:
        numbers = dict(session.execute(select(DeviceRecord.device_id,
                                              DeviceRecord.certificate_number)).all())
    assert numbers == {"D1": "JD-2026-001", "D2": "JD-2026-099", "D3": "JD-3"}
    engine.dispose()


def test_the_shipped_example_registry_reads():
    rows = read_registry(config_dir() / "registry.example.csv")
    assert [r.device_id for r in rows] == ["demo-site-01", "demo-site-02"]
    assert rows[0].suspensions[0].reason == "sensor repair"
