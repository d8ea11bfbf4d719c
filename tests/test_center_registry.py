"""The device registry: import from CSV or YAML, row-numbered errors, nothing half-imported,
re-import adds versions (SQLite and PostgreSQL)."""

import argparse
import json
from datetime import date
from pathlib import Path

import pytest
from center_factory import REGISTRY_CSV, center_engine
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from center.db import make_engine, upgrade
from center.law_models import AuditEntry, DeviceRecord
from center.registry import (
    RegistryError,
    count_devices,
    device_history,
    device_on,
    import_registry,
    is_latest,
    list_devices,
    read_registry,
)
from zhichao.cli import center as center_cli
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
    assert (result.added, result.updated, result.unchanged) == (0, 1, 1)  # D1 unchanged
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
                                              DeviceRecord.certificate_number)
                                       .where(is_latest())).all())
    assert numbers == {"D1": "JD-2026-001", "D2": "JD-2026-099", "D3": "JD-3"}
    engine.dispose()


def test_the_shipped_example_registry_reads():
    rows = read_registry(config_dir() / "registry.example.csv")
    assert [r.device_id for r in rows] == ["demo-site-01", "demo-site-02"]
    assert rows[0].suspensions[0].reason == "sensor repair"


# Values checked by meaning, encodings, and registries of many devices (issue 17).

def csv_with(**cells: str) -> str:
    """REGISTRY_CSV with cells of its first device (D1) replaced, by column."""
    lines = REGISTRY_CSV.splitlines()
    header = lines[0].split(",")
    first = lines[1].split(",")
    for column, value in cells.items():
        first[header.index(column)] = value
    return "\n".join([lines[0], ",".join(first), *lines[2:]]) + "\n"


@pytest.mark.parametrize(("cells", "words"), [
    ({"accuracy_class": "banana"},
     "devices.csv row 2: accuracy_class 'banana' is not an accuracy class of the tolerance "
     "table (known: 0.2, 0.5, 1, 2, 5, 10)"),
    ({"notice_url": "javascript:alert(1)"},
     "devices.csv row 2: notice_url 'javascript:alert(1)' must be an http:// or https:// "
     "address"),
    ({"notice_url": "https://"}, "devices.csv row 2: notice_url 'https://' must be an http"),
    ({"notice_url": "https://example.gov.cn@elsewhere.example/n/1"},
     "devices.csv row 2: notice_url 'https://example.gov.cn@elsewhere.example/n/1' must be"),
    ({"review_date": "0"}, "devices.csv row 2: review_date '0' is not a date (YYYY-MM-DD)"),
    ({"road": "G60\x00"},
     "devices.csv row 2: road 'G60\\x00' holds a control character (NUL, tab, line break…)"),
    ({"review_date": "1999-12-31"},
     "devices.csv row 2: review_date 1999-12-31 is before 2000-01-01"),
    ({"signs_installed": "2099-01-01"},
     "devices.csv row 2: signs_installed 2099-01-01 is more than a year ahead"),
])
def test_values_are_checked_by_meaning(tmp_path, cells, words):
    with pytest.raises(RegistryError) as err:
        read_registry(write(tmp_path, "devices.csv", csv_with(**cells)))
    assert words in str(err.value)


def test_a_class_written_as_a_number_is_the_table_key(tmp_path):
    d1, _ = read_registry(write(tmp_path, "devices.csv", csv_with(accuracy_class="5.0")))
    assert d1.accuracy_class == "5"


@pytest.mark.parametrize(("edit", "words"), [
    (("review_date: 2026-02-01", "review_date: 0"),
     "devices.yaml row 1 (D3): review_date 0 is not a date (YYYY-MM-DD)"),
    (('accuracy_class: "5"', "accuracy_class: banana"),
     "devices.yaml row 1 (D3): accuracy_class 'banana' is not an accuracy class"),
    (("notice_url: https://example.gov.cn/n/3", "notice_url: 'javascript:alert(1)'"),
     "devices.yaml row 1 (D3): notice_url 'javascript:alert(1)' must be an http"),
])
def test_yaml_values_are_checked_by_meaning(tmp_path, edit, words):
    with pytest.raises(RegistryError) as err:
        read_registry(write(tmp_path, "devices.yaml", YAML.replace(*edit)))
    assert words in str(err.value)


@pytest.mark.parametrize("encoding", ["utf-8-sig", "gbk", "gb18030", "utf-16"])
def test_files_excel_writes_are_read(tmp_path, encoding):
    path = tmp_path / "devices.csv"
    path.write_bytes(REGISTRY_CSV.replace("\n", "\r\n").encode(encoding))
    d1, d2 = read_registry(path)
    assert d1.notice_document == "浙交〔2026〕1号" and d2.suspensions[0].reason == "repair"


def test_excel_unicode_text_is_tab_separated_utf16(tmp_path):
    path = tmp_path / "devices.csv"
    text = REGISTRY_CSV.replace(",", "\t").replace("\n", "\r\n")
    path.write_bytes(text.encode("utf-16"))
    assert [d.device_id for d in read_registry(path)] == ["D1", "D2"]


def test_a_yaml_file_in_gbk_is_read(tmp_path):
    path = tmp_path / "devices.yaml"
    path.write_bytes(YAML.encode("gbk"))
    (d3,) = read_registry(path)
    assert d3.notice_document == "杭交〔2026〕3号"


def test_an_encoding_can_be_chosen_and_a_wrong_one_names_the_line(tmp_path):
    path = tmp_path / "devices.csv"
    path.write_bytes(REGISTRY_CSV.encode("gbk"))
    assert len(read_registry(path, encoding="gbk")) == 2
    with pytest.raises(RegistryError) as err:
        read_registry(path, encoding="utf-8")
    assert f"{path} line 2: not utf-8" in str(err.value)
    path.write_bytes(REGISTRY_CSV.encode("gbk") + b"D9,\x81\x20,K1\n")
    with pytest.raises(RegistryError) as err:
        read_registry(path)
    assert f"{path} line 4: not utf-8 nor gb18030" in str(err.value)
    path.write_bytes(REGISTRY_CSV.encode("utf-16-le"))
    with pytest.raises(RegistryError, match="UTF-16 without a byte order mark"):
        read_registry(path)
    with pytest.raises(RegistryError, match="unknown encoding 'klingon'"):
        read_registry(path, encoding="klingon")


def many_devices(n: int, *, cert: str = "JD") -> str:
    """A registry CSV of n devices D00000…, every tenth with a suspension."""
    lines = [REGISTRY_CSV.splitlines()[0]]
    for i in range(n):
        stop = "2026-05-30..2026-06-02 repair" if i % 10 == 0 else ""
        lines.append(f"D{i:05d},G60,K{i}+000,east,30.25,120.16,2026-01-10,{cert}-{i},5,"
                     f"2026-01-15,2027-01-14,2026-01-20,2026-02-01,浙交〔2026〕1号,"
                     f"https://example.gov.cn/n/{i},2026-03-01,true,{stop}")
    return "\n".join(lines) + "\n"


def test_many_devices_import_in_chunks_and_list_in_pages(center_db_url, tmp_path):
    engine = center_engine(center_db_url)
    path = write(tmp_path, "many.csv", many_devices(300))
    with Session(engine) as session, session.begin():
        result = import_registry(session, path, chunk_rows=64)
    assert (result.added, result.updated, len(result.devices)) == (300, 0, 300)
    again = many_devices(350, cert="NEW").replace(
        "2026-05-30..2026-06-02 repair", "2026-07-01.. works")
    with Session(engine) as session, session.begin():
        result = import_registry(session, write(tmp_path, "more.csv", again), chunk_rows=64)
    assert (result.added, result.updated) == (50, 300)
    with Session(engine) as session:
        page = list_devices(session, limit=100, offset=250)
        assert [r.device_id for r, _ in page] == [f"D{i:05d}" for i in range(250, 350)]
        assert page[0][0].certificate_number == "NEW-250"
        assert [(s.starts, s.reason) for s in page[0][1]] == [(date(2026, 7, 1), "works")]
        assert page[1][1] == []
        assert len(list_devices(session, limit=1000)) == 350
    engine.dispose()


def test_a_bad_row_among_many_is_reported_and_nothing_is_written(center_db_url, tmp_path):
    engine = center_engine(center_db_url)
    text = many_devices(200).replace("D00150,G60,K150+000,east,30.25", "D00150,G60,K150+000,"
                                     "east,north").replace("K170+000,east,30.25,120.16,"
                                     "2026-01-10,JD-170,5,", "K170+000,east,30.25,120.16,"
                                     "2026-01-10,JD-170,banana,")
    with pytest.raises(RegistryError) as err, Session(engine) as session, session.begin():
        import_registry(session, write(tmp_path, "many.csv", text), chunk_rows=64)
    assert "many.csv row 152: latitude 'north' is not a number" in str(err.value)
    assert "many.csv row 172: accuracy_class 'banana'" in str(err.value)
    with Session(engine) as session:
        assert list_devices(session) == []
    engine.dispose()


def test_a_nul_in_a_cell_is_refused_on_both_databases(center_db_url, tmp_path):
    engine = center_engine(center_db_url)
    text = REGISTRY_CSV.replace("repair", "re\x00pair")
    with pytest.raises(RegistryError, match=r"row 3: suspensions.0.reason 're\\x00pair' holds"), \
            Session(engine) as session, session.begin():
        import_registry(session, write(tmp_path, "devices.csv", text))
    engine.dispose()


def test_a_yaml_registry_is_read_a_device_at_a_time(tmp_path):
    item = YAML.split("devices:\n", 1)[1]
    text = "devices:\n" + "".join(item.replace("D3", f"D{i:03d}") for i in range(300))
    devices = read_registry(write(tmp_path, "devices.yaml", text))
    assert [d.device_id for d in devices] == [f"D{i:03d}" for i in range(300)]
    assert all(len(d.suspensions) == 2 for d in devices)
    plain = read_registry(write(tmp_path, "list.yaml", text.replace("devices:\n", "")
                                .replace("\n  ", "\n").removeprefix("  ")))
    assert len(plain) == 300


@pytest.mark.parametrize(("text", "words"), [
    (YAML + "  - *first\n", "line 21 not valid YAML: an alias (*name) is not read"),
    (YAML.replace("  - device_id: D3", "  - &first\n    device_id: D3") + "  - *first\n",
     "not valid YAML: an alias"),
    ("devices:\n  - " + "[" * 20 + "]" * 20 + "\n", "not valid YAML: nested deeper than 8"),
    (YAML + "others: 1\n", "expected a list of devices"),
    (YAML + "  - [\n", "not valid YAML"),
])
def test_bad_yaml_structures_are_refused(tmp_path, text, words):
    with pytest.raises(RegistryError) as err:
        read_registry(write(tmp_path, "devices.yaml", text))
    assert words in str(err.value)


# History: a changed row adds a version in force from its day (issue 18).

def _renewed(number: str, start: str, end: str, effective: str | None) -> str:
    """REGISTRY_CSV with D1's certificate renewed (and an effective_from column)."""
    header, d1, d2 = REGISTRY_CSV.splitlines()
    d1 = d1.replace("JD-2026-001", number).replace("2026-01-15,2027-01-14", f"{start},{end}")
    return "\n".join([header + ",effective_from", d1 + f",{effective or ''}",
                      d2 + f",{effective or ''}"]) + "\n"


def test_a_changed_row_adds_a_version_from_its_day_and_the_old_one_stays(center_db_url,
                                                                         tmp_path):
    engine = center_engine(center_db_url)
    with Session(engine) as session, session.begin():
        import_registry(session, write(tmp_path, "devices.csv", REGISTRY_CSV))
    renewed = _renewed("JD-2027-001", "2027-01-10", "2028-01-09", "2027-01-10")
    with Session(engine) as session, session.begin():
        result = import_registry(session, write(tmp_path, "renewed.csv", renewed),
                                 today=date(2026, 12, 20))
    assert (result.added, result.updated, result.unchanged) == (0, 1, 1)
    with Session(engine) as session, session.begin():  # the same file again: nothing new
        again = import_registry(session, write(tmp_path, "again.csv", renewed),
                                today=date(2026, 12, 21))
    assert (again.updated, again.unchanged) == (0, 2)
    with Session(engine) as session:
        history = device_history(session, "D1")
        assert [(r.version, r.effective_from, r.certificate_number) for r in history] == [
            (1, date(2000, 1, 1), "JD-2026-001"), (2, date(2027, 1, 10), "JD-2027-001")]
        assert device_on(session, "D1", date(2026, 6, 1)).certificate_number == "JD-2026-001"
        assert device_on(session, "D1", date(2027, 1, 9)).version == 1
        assert device_on(session, "D1", date(2027, 1, 10)).version == 2
        assert device_on(session, "D1", date(1999, 12, 31)) is None
        assert device_on(session, "D9", date(2026, 6, 1)) is None
        assert [r.version for r in device_history(session, "D2")] == [1]
        current = {r.device_id: r for r, _ in list_devices(session)}
        assert current["D1"].certificate_number == "JD-2027-001"
        assert count_devices(session) == 2
        audit = session.scalars(select(AuditEntry.detail)).all()
        assert "0 added, 1 changed (a new version each), 1 unchanged" in audit[1]
    engine.dispose()


def test_without_effective_from_a_change_is_in_force_from_the_import_day(center_db_url,
                                                                         tmp_path):
    engine = center_engine(center_db_url)
    with Session(engine) as session, session.begin():
        import_registry(session, write(tmp_path, "devices.csv", REGISTRY_CSV))
    changed = REGISTRY_CSV.replace("JD-2026-002", "JD-2026-099")
    with Session(engine) as session, session.begin():
        import_registry(session, write(tmp_path, "changed.csv", changed),
                        today=date(2026, 7, 3))
    with Session(engine) as session:
        (_, second) = device_history(session, "D2")
        assert (second.version, second.effective_from) == (2, date(2026, 7, 3))
    engine.dispose()


def test_a_version_before_the_latest_is_refused_with_its_row_and_nothing_changes(
        center_db_url, tmp_path):
    engine = center_engine(center_db_url)
    with Session(engine) as session, session.begin():
        import_registry(session, write(tmp_path, "devices.csv", REGISTRY_CSV))
    with Session(engine) as session, session.begin():
        import_registry(session, write(tmp_path, "v2.csv", _renewed(
            "JD-2027-001", "2027-01-10", "2028-01-09", "2026-12-01")))
    earlier = _renewed("JD-X", "2026-01-15", "2027-01-14", "2026-11-30").replace(
        "JD-2026-002", "JD-2026-777")
    with pytest.raises(RegistryError) as err, Session(engine) as session, session.begin():
        import_registry(session, write(tmp_path, "earlier.csv", earlier))
    assert ("earlier.csv row 2: effective_from 2026-11-30 is before 2026-12-01, from which "
            "version 2 of device D1 is in force; a new version starts on or after it") \
        in str(err.value)
    assert "row 3" not in str(err.value)
    undated = REGISTRY_CSV.replace("JD-2026-001", "JD-Y")
    with pytest.raises(RegistryError, match="row 2: the import day 2026-11-01 is before "
                       "2026-12-01"), Session(engine) as session, session.begin():
        import_registry(session, write(tmp_path, "undated.csv", undated),
                        today=date(2026, 11, 1))
    with Session(engine) as session:
        assert [r.version for r in device_history(session, "D1")] == [1, 2]
        assert [r.certificate_number for r in device_history(session, "D2")] == ["JD-2026-002"]
    engine.dispose()


def test_a_first_version_takes_its_effective_from(tmp_path, center_db_url):
    engine = center_engine(center_db_url)
    text = _renewed("JD-2026-001", "2026-01-15", "2027-01-14", "2026-02-01")
    with Session(engine) as session, session.begin():
        import_registry(session, write(tmp_path, "devices.csv", text))
    with Session(engine) as session:
        assert device_on(session, "D1", date(2026, 1, 31)) is None
        assert device_on(session, "D1", date(2026, 2, 1)).version == 1
    engine.dispose()


def test_migration_0004_makes_each_existing_row_version_1_from_the_earliest_day(
        center_db_url):
    engine = make_engine(center_db_url)
    upgrade(engine, "0003_plate_source")
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO device_records (device_id, road, stake, direction, latitude, "
            "longitude, review_date, certificate_number, active, updated_at) VALUES "
            "('D1', 'G60', 'K1', 'east', 30, 120, :review, 'JD-1', :yes, :now)"),
            {"review": date(2026, 1, 10), "yes": True, "now": "2026-01-10 00:00:00+00:00"})
    upgrade(engine)
    with Session(engine) as session:
        (row,) = device_history(session, "D1")
        assert (row.version, row.effective_from, row.certificate_number) == (
            1, date(2000, 1, 1), "JD-1")
        assert device_on(session, "D1", date(2020, 1, 1)).review_date == date(2026, 1, 10)
    engine.dispose()


def history_cli(capsys, *argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    center_cli.add_parser(sub)
    args = parser.parse_args(["center", "devices", *argv])
    code = args.run(args)
    return code, capsys.readouterr().out


def test_devices_history_and_list_commands(capsys, center_db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # a table as wide as its cells
    site = write(tmp_path, "center.yaml", f"database: {center_db_url}\n")
    engine = center_engine(center_db_url)
    with Session(engine) as session, session.begin():
        import_registry(session, write(tmp_path, "devices.csv", REGISTRY_CSV))
        import_registry(session, write(tmp_path, "renewed.csv", _renewed(
            "JD-2027-001", "2027-01-10", "2028-01-09", "2027-01-10")))
    engine.dispose()
    code, out = history_cli(capsys, "history", "D1", "--json", "--config", str(site))
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [(r["version"], r["effective_from"], r["certificate_number"])
                          for r in rows] == [(1, "2000-01-01", "JD-2026-001"),
                                             (2, "2027-01-10", "JD-2027-001")]
    code, out = history_cli(capsys, "history", "D1", "--config", str(site))
    assert "device D1: every version" in out and "2027-01-10" in out
    with pytest.raises(RegistryError, match="device D9 is not in the registry"):
        history_cli(capsys, "history", "D9", "--config", str(site))
    code, out = history_cli(capsys, "list", "--json", "--config", str(site))
    listed = [json.loads(line) for line in out.splitlines()]
    assert [(d["device_id"], d["version"]) for d in listed] == [("D1", 2), ("D2", 1)]


def test_migration_0004_downgrades_to_each_devices_latest_row(center_db_url, tmp_path):
    from alembic import command  # noqa: PLC0415
    from alembic.config import Config  # noqa: PLC0415

    from center.db import MIGRATIONS  # noqa: PLC0415

    engine = make_engine(center_db_url)
    upgrade(engine)  # head: the downgrade passes through 0005 too
    with Session(engine) as session, session.begin():
        import_registry(session, write(tmp_path, "devices.csv", REGISTRY_CSV))
        import_registry(session, write(tmp_path, "renewed.csv", _renewed(
            "JD-2027-001", "2027-01-10", "2028-01-09", "2027-01-10")))
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0003_plate_source")
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT device_id, certificate_number FROM device_records "
                                 "ORDER BY device_id")).all()
    assert [tuple(r) for r in rows] == [("D1", "JD-2027-001"), ("D2", "JD-2026-002")]
    engine.dispose()
