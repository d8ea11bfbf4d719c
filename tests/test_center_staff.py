"""The staff register: import (CSV, YAML, row-named errors, all or nothing), officers who may
act and those who may not, roles, and the commands (SQLite and PostgreSQL)."""

import argparse
import json
from datetime import date
from pathlib import Path

import pytest
from center_factory import center_engine
from sqlalchemy import select
from sqlalchemy.orm import Session

from center.law_models import StaffRow
from center.staff import (
    StaffError,
    StaffImportError,
    get_officer,
    has_role,
    import_staff,
    list_staff,
    read_staff,
)
from zhichao.cli import center as center_cli
from zhichao.resources import config_dir

STAFF_CSV = """\
officer_id,name,credential_number,roles,active,valid_from,valid_to
ZF001,张三,浙33010012345,reviewer,true,2026-01-01,2028-12-31
ZF002,李四,浙33010012346,reviewer;legal_reviewer,true,2026-01-01,
FS001,赵六,,legal_reviewer,true,,
ADM01,王芳,,administrator,true,,
OLD01,钱七,浙33010000001,reviewer,true,2020-01-01,2025-12-31
OFF01,孙八,浙33010000002,reviewer,false,,
"""
YAML = """\
staff:
  - officer_id: ZF010
    name: 周九
    credential_number: 浙33010099999
    roles: [reviewer, administrator]
  - {officer_id: ADM02, name: 吴十, roles: [administrator]}
"""
DAY = date(2026, 6, 1)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_and_yaml_rows_read(tmp_path):
    rows = read_staff(write(tmp_path, "staff.csv", STAFF_CSV))
    assert [r.officer_id for r in rows] == ["ZF001", "ZF002", "FS001", "ADM01", "OLD01",
                                            "OFF01"]
    assert rows[1].roles == ["legal_reviewer", "reviewer"]
    assert rows[0].valid_to == date(2028, 12, 31) and rows[2].credential_number is None
    a, b = read_staff(write(tmp_path, "staff.yaml", YAML))
    assert a.roles == ["administrator", "reviewer"] and b.credential_number is None


def test_the_shipped_example_staff_reads():
    rows = read_staff(config_dir() / "staff.example.csv")
    assert {r.officer_id for r in rows} == {"ZF001", "ZF002", "FS001", "ADM01"}


@pytest.mark.parametrize(("line", "words"), [
    ("ZF003,某,,reviewer,true,,", "staff.csv row 8: role reviewer needs credential_number "
     "(执法证号, 行政处罚法（2021） 第四十二条)"),
    ("ZF003,某,X1,judge,true,,", "staff.csv row 8: roles.0 'judge' must be 'reviewer', "
     "'legal_reviewer' or 'administrator'"),
    ("ZF003,某,X1,,true,,", "staff.csv row 8: roles is required but missing"),
    ("ZF 3,某,X1,reviewer,true,,", "staff.csv row 8: officer_id 'ZF 3' must be letters"),
    ("ZF003,某,X1,reviewer,true,2027-01-01,2026-01-01",
     "staff.csv row 8: valid_to 2026-01-01 is before valid_from 2027-01-01"),
    ("ZF003,某,X1,reviewer,true,1990-01-01,", "row 8: valid_from 1990-01-01 is before 2000"),
    ("ZF003,某,X1,reviewer,soon,,", "row 8: active 'soon' is not true or false"),
    ("ZF001,某,X1,reviewer,true,,", "row 8: officer_id 'ZF001' is also in staff.csv row 2"),
    ("ZF003,,X1,reviewer,true,,", "row 8: name is required but missing"),
])
def test_bad_rows_are_named(tmp_path, line, words):
    with pytest.raises(StaffImportError) as err:
        read_staff(write(tmp_path, "staff.csv", STAFF_CSV + line + "\n"))
    assert words in str(err.value)
    assert str(err.value).count("\nstaff.csv row") == 1


def test_a_yaml_row_is_named_with_its_officer(tmp_path):
    with pytest.raises(StaffImportError, match=r"staff.yaml row 2 \(ADM02\): roles.0 'boss'"):
        read_staff(write(tmp_path, "staff.yaml", YAML.replace("roles: [administrator]",
                                                              "roles: [boss]")))


def test_gbk_is_read(tmp_path):
    path = tmp_path / "staff.csv"
    path.write_bytes(STAFF_CSV.encode("gbk"))
    assert read_staff(path)[0].name == "张三"


@pytest.fixture
def engine(center_db_url, tmp_path):
    engine = center_engine(center_db_url)
    with Session(engine) as session, session.begin():
        import_staff(session, write(tmp_path, "staff.csv", STAFF_CSV), actor="王芳")
    yield engine
    engine.dispose()


def test_officers_who_may_act_and_those_who_may_not(engine):
    with Session(engine) as session:
        zhang = get_officer(session, "ZF001", role="reviewer", on=DAY)
        assert (zhang.name, zhang.credential_number) == ("张三", "浙33010012345")
        assert has_role(zhang, "reviewer") and not has_role(zhang, "legal_reviewer")
        assert get_officer(session, "FS001", role="legal_reviewer", on=DAY).name == "赵六"
        assert get_officer(session, "ADM01", on=DAY).roles == {"administrator"}
        for officer_id, role, words in (
                ("NOBODY", None, "officer 'NOBODY' is not in the staff register"),
                ("OFF01", None, "officer OFF01 (孙八) is inactive in the staff register"),
                ("OLD01", None, "officer OLD01 (钱七) was valid to 2025-12-31, before "
                 "2026-06-01"),
                ("ZF001", "legal_reviewer", "officer ZF001 (张三) does not hold the role "
                 "legal_reviewer (holds: reviewer)"),
                ("ADM01", "reviewer", "does not hold the role reviewer")):
            with pytest.raises(StaffError) as err:
                get_officer(session, officer_id, role=role, on=DAY)
            assert str(err.value) == words or words in str(err.value)
        with pytest.raises(StaffError, match="valid from 2026-01-01, after 2025-12-31"):
            get_officer(session, "ZF001", on=date(2025, 12, 31))
        with pytest.raises(StaffError, match="unknown role 'judge'"):
            has_role(zhang, "judge")
        assert get_officer(session, "OLD01", check=False).name == "钱七"


def test_an_enforcement_officer_without_a_credential_cannot_act(engine):
    with Session(engine) as session, session.begin():  # as if edited in the database
        row = session.scalars(select(StaffRow).where(StaffRow.officer_id == "ZF001")).one()
        row.credential_number = None
    with Session(engine) as session, pytest.raises(
            StaffError, match=r"ZF001 \(张三\) has no enforcement credential number "
            r"\(执法证号\), which 行政处罚法（2021） 第四十二条 requires"):
        get_officer(session, "ZF001", role="reviewer", on=DAY)


def test_reimport_updates_and_a_bad_file_changes_nothing(engine, tmp_path):
    changed = STAFF_CSV.replace("OFF01,孙八,浙33010000002,reviewer,false",
                                "OFF01,孙八,浙33010000002,reviewer,true")
    with Session(engine) as session, session.begin():
        result = import_staff(session, write(tmp_path, "s2.csv", changed))
        more = import_staff(session, write(tmp_path, "more.yaml", YAML))
    assert (result.added, result.updated, more.added) == (0, 6, 2)
    bad = changed.replace("张三", "张三丰") + "X9,某,,reviewer,true,,\n"
    with pytest.raises(StaffImportError), Session(engine) as session, session.begin():
        import_staff(session, write(tmp_path, "bad.csv", bad))
    with Session(engine) as session:
        assert get_officer(session, "OFF01", on=DAY).active
        assert get_officer(session, "ZF001", on=DAY).name == "张三"
        assert len(list_staff(session)) == 8
        dry = import_staff(session, write(tmp_path, "dry.csv", STAFF_CSV + "ZF099,新,X,reviewer,"
                                          "true,,\n"), dry_run=True)
        assert (dry.added, dry.updated) == (1, 6)
        assert len(list_staff(session)) == 8


def cli(capsys, *argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    center_cli.add_parser(sub)
    args = parser.parse_args(["center", *argv])
    code = args.run(args)
    return code, capsys.readouterr().out


def test_staff_commands(capsys, center_db_url, tmp_path):
    site = write(tmp_path, "center.yaml", f"database: {center_db_url}\n")
    path = write(tmp_path, "staff.csv", STAFF_CSV)
    code, out = cli(capsys, "staff", "import", str(path), "--config", str(site))
    assert code == 0 and "6 officers added, 0 updated (ZF001, ZF002, FS001" in out
    code, out = cli(capsys, "staff", "list", "--json", "--config", str(site))
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows[0] == {"officer_id": "ADM01", "name": "王芳", "credential_number": None,
                       "roles": ["administrator"], "active": True, "valid_from": None,
                       "valid_to": None}
    assert [r["officer_id"] for r in rows] == ["ADM01", "FS001", "OFF01", "OLD01", "ZF001",
                                               "ZF002"]
    code, out = cli(capsys, "staff", "list", "--config", str(site))
    assert "staff register" in out and "张三" in out
    bad = write(tmp_path, "bad.csv", STAFF_CSV + "ZF003,某,,reviewer,true,,\n")
    with pytest.raises(StaffImportError, match="row 8: role reviewer needs"):
        cli(capsys, "staff", "import", str(bad), "--config", str(site))
    code, out = cli(capsys, "staff", "import", str(path), "--dry-run", "--config", str(site))
    assert "checked, nothing written: 0 officers would be added, 6 updated" in out
