"""The vehicle register: import (CSV, YAML, encodings, row-named errors, all or nothing),
look-up, the commands, and grading at the center with the register's facts — air
suspension and licence mass change the limit (SQLite and PostgreSQL)."""

import argparse
import json
from pathlib import Path

import pytest
from center_factory import REGISTRY_CSV, center_engine, make_packet
from sqlalchemy import select
from sqlalchemy.orm import Session

from center.cases import process_packets
from center.law_models import AuditEntry, Capture, Case, VehicleRow
from center.registry import RegistryError, import_registry
from center.settings import LawSettings
from center.vehicles import (
    VehicleError,
    import_vehicles,
    list_vehicles,
    lookup,
    read_vehicles,
)
from zhichao.cli import center as center_cli
from zhichao.resources import config_dir

HEADER = ("plate,plate_colour,kind,licence_mass_kg,air_suspension,axle_code,owner_kind,"
          "owner_name,owner_id_number,address,phone,email,transport_certificate")
VEHICLES_CSV = HEADER + """
浙A12345,yellow,combination,49000,true,157,company,杭州示例物流有限公司,91330100MA2B3C4D5N,\
杭州市西湖区示例路1号,0571-88880000,fleet@example.com,330100123456
浙A23456,yellow,truck,26000,true,15,company,杭州示例物流有限公司,91330100MA2B3C4D5N,,,,
浙A34567,yellow,truck,32000,true,115,person,王五,330106198001011235,,13800000000,,
浙B34567,yellow,truck,16000,false,12,person,赵六,11010519491231002X,,,,330200654321
"""
YAML = """\
vehicles:
  - plate: 浙C11111
    plate_colour: yellow
    kind: truck
    licence_mass_kg: 18000
    owner_kind: company
    owner_name: 宁波示例运输有限公司
    owner_id_number: 91330200MA2B3C4D5U
  - {plate: 浙C22222, owner_kind: person, owner_name: 钱七, air_suspension: true}
"""
LAW = LawSettings()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_and_yaml_rows_read(tmp_path):
    rows = read_vehicles(write(tmp_path, "vehicles.csv", VEHICLES_CSV))
    assert [(r.plate, r.kind, r.licence_mass_kg, r.air_suspension) for r in rows] == [
        ("浙A12345", "combination", 49000, True), ("浙A23456", "truck", 26000, True),
        ("浙A34567", "truck", 32000, True), ("浙B34567", "truck", 16000, False)]
    assert rows[0].owner_kind == "company" and rows[0].email == "fleet@example.com"
    assert rows[3].owner_id_number == "11010519491231002X"
    assert rows[2].owner_id_number == "330106198001011235"
    c1, c2 = read_vehicles(write(tmp_path, "vehicles.yaml", YAML))
    assert (c1.plate, c1.licence_mass_kg, c2.air_suspension, c2.kind) == (
        "浙C11111", 18000, True, None)


def csv_with(**cells: str) -> str:
    """VEHICLES_CSV with cells of its first vehicle replaced, by column."""
    lines = VEHICLES_CSV.splitlines()
    names = lines[0].split(",")
    first = lines[1].split(",")
    for column, value in cells.items():
        first[names.index(column)] = value
    return "\n".join([lines[0], ",".join(first), *lines[2:]]) + "\n"


@pytest.mark.parametrize(("cells", "words"), [
    ({"plate": "ABC"}, "vehicles.csv row 2: plate 'ABC' is not a number plate (GA 36)"),
    ({"plate_colour": "green"},
     "vehicles.csv row 2: plate_colour 'green' is not a colour plate 浙A12345 comes in"),
    ({"plate_colour": "pink"}, "vehicles.csv row 2: plate_colour 'pink' must be 'blue'"),
    ({"kind": "tractor"}, "vehicles.csv row 2: kind 'tractor' must be 'truck' or "
     "'combination'"),
    ({"licence_mass_kg": "0"}, "vehicles.csv row 2: licence_mass_kg '0' must be greater than 0"),
    ({"licence_mass_kg": "4900000"}, "row 2: licence_mass_kg '4900000' must be less than or "
     "equal to 100000"),
    ({"licence_mass_kg": "nan"}, "row 2: licence_mass_kg 'nan' is not a finite number"),
    ({"air_suspension": "maybe"}, "row 2: air_suspension 'maybe' is not true or false"),
    ({"axle_code": "1x7"}, "row 2: axle_code '1x7' must be 2 to 12 digits 1-9"),
    ({"owner_kind": "ship"}, "row 2: owner_kind 'ship' must be 'person' or 'company'"),
    ({"owner_name": ""}, "row 2: owner_name is required but missing"),
    ({"owner_id_number": "33010619800101123"},
     "row 2: owner_id_number '33010619800101123' is not a unified social credit code"),
    ({"owner_id_number": "91330100MA2B3C4D5E"},
     "row 2: owner_id_number '91330100MA2B3C4D5E' fails the credit code's check character"),
    ({"email": "fleet@"}, "row 2: email 'fleet@' is not an e-mail address"),
    ({"phone": "call me"}, "row 2: phone 'call me' is not a telephone number"),
    ({"address": "路\x00"}, "row 2: address '路\\x00' holds a control character"),
    ({"transport_certificate": "9" * 65}, "row 2: transport_certificate '" + "9" * 65
     + "' String should have at most 64 characters"),
])
def test_bad_values_are_named_by_row_and_column(tmp_path, cells, words):
    with pytest.raises(VehicleError) as err:
        read_vehicles(write(tmp_path, "vehicles.csv", csv_with(**cells)))
    assert words in str(err.value)


def test_a_persons_id_number_is_checked_by_its_check_character(tmp_path):
    text = VEHICLES_CSV.replace("330106198001011235", "330106198001011234")
    with pytest.raises(VehicleError, match="row 4: owner_id_number '330106198001011234' fails "
                       "the identity card number's check character"):
        read_vehicles(write(tmp_path, "vehicles.csv", text))
    text = VEHICLES_CSV.replace("11010519491231002X", "11010519491231002x")
    assert read_vehicles(write(tmp_path, "lower.csv", text))[3].owner_id_number.endswith("X")


def test_every_bad_row_is_named_and_a_repeated_plate_too(tmp_path):
    lines = VEHICLES_CSV.splitlines()
    text = "\n".join([*lines, lines[1], lines[2].replace("person", "robot")
                      .replace("company", "robot")]) + "\n"
    with pytest.raises(VehicleError) as err:
        read_vehicles(write(tmp_path, "vehicles.csv", text))
    message = str(err.value)
    assert message.startswith("nothing imported:")
    assert "vehicles.csv row 6: plate '浙A12345 yellow' is also in vehicles.csv row 2" in message
    assert "vehicles.csv row 7: owner_kind 'robot'" in message
    assert "row 3:" not in message


def test_yaml_rows_are_named_with_their_plate(tmp_path):
    with pytest.raises(VehicleError, match=r"vehicles.yaml row 2 \(浙C22222\): owner_kind "
                       "'boat' must be"):
        read_vehicles(write(tmp_path, "vehicles.yaml", YAML.replace("person", "boat")))
    with pytest.raises(RegistryError, match="expected a list of vehicles"):
        read_vehicles(write(tmp_path, "vehicles.yaml", "devices: []\n"))


@pytest.mark.parametrize("encoding", ["utf-8-sig", "gbk", "utf-16"])
def test_files_a_spreadsheet_writes_are_read(tmp_path, encoding):
    path = tmp_path / "vehicles.csv"
    path.write_bytes(VEHICLES_CSV.replace("\n", "\r\n").encode(encoding))
    rows = read_vehicles(path)
    assert rows[0].owner_name == "杭州示例物流有限公司" and len(rows) == 4


def test_the_shipped_example_register_reads():
    rows = read_vehicles(config_dir() / "vehicles.example.csv")
    assert [r.plate for r in rows] == ["浙A12345", "浙A23456", "浙B34567"]


def test_import_is_all_or_nothing_and_reimport_updates(center_db_url, tmp_path):
    engine = center_engine(center_db_url)
    with Session(engine) as session, session.begin():
        result = import_vehicles(session, write(tmp_path, "vehicles.csv", VEHICLES_CSV),
                                 actor="王芳", chunk_rows=2)
    assert (result.added, result.updated, len(result.plates)) == (4, 0, 4)
    changed = VEHICLES_CSV.replace("49000,true,157", "46000,false,149")
    with Session(engine) as session:
        dry = import_vehicles(session, write(tmp_path, "v2.csv", changed), dry_run=True)
        assert (dry.added, dry.updated) == (0, 4)
        assert lookup(session, "浙A12345", "yellow").licence_mass_kg == 49000
    with Session(engine) as session, session.begin():
        import_vehicles(session, write(tmp_path, "v2.csv", changed))
        import_vehicles(session, write(tmp_path, "more.yaml", YAML))
    bad = changed.replace("46000", "45000") + \
        "浙D1,yellow,truck,,,,nobody,x,,,,,\n"
    with pytest.raises(VehicleError, match="row 6: plate '浙D1' is not a number plate"), \
            Session(engine) as session, session.begin():
        import_vehicles(session, write(tmp_path, "bad.csv", bad), chunk_rows=1)
    with Session(engine) as session:
        row = lookup(session, "浙A12345", "yellow")
        assert (row.licence_mass_kg, row.air_suspension, row.axle_code) == (46000, False, "149")
        assert len(list_vehicles(session)) == 6
        assert [v.plate for v in list_vehicles(session, limit=2, offset=1)] == [
            "浙A23456", "浙A34567"]
        audit = session.scalars(select(AuditEntry.detail).where(
            AuditEntry.action == "vehicles_import")).all()
        assert audit[0].endswith("4 added, 0 updated") and len(audit) == 3
    engine.dispose()


def test_lookup_by_plate_and_colour(center_db_url, tmp_path):
    engine = center_engine(center_db_url)
    text = VEHICLES_CSV + "浙A12345,blue,truck,4500,false,12,person,孙八,,,,,\n"
    with Session(engine) as session, session.begin():
        import_vehicles(session, write(tmp_path, "vehicles.csv", text))
    with Session(engine) as session:
        assert lookup(session, "浙A12345", "blue").owner_name == "孙八"
        assert lookup(session, "浙A12345", "yellow").owner_name == "杭州示例物流有限公司"
        assert lookup(session, "浙A12345", "unknown") is None  # two colours: no guess
        assert lookup(session, "浙B34567", None).owner_name == "赵六"
        assert lookup(session, "浙Z99999", "yellow") is None
    engine.dispose()


# Grading at the center with the register's facts (issue 18: worked examples).

@pytest.fixture
def engine(center_db_url, tmp_path):
    engine = center_engine(center_db_url)
    with Session(engine) as session, session.begin():
        import_registry(session, write(tmp_path, "devices.csv", REGISTRY_CSV))
        import_vehicles(session, write(tmp_path, "vehicles.csv", VEHICLES_CSV))
    yield engine
    engine.dispose()


def graded(engine, packet, law=LAW):
    """Process one packet; its capture and case (None without one)."""
    with Session(engine) as session, session.begin():
        (r,) = process_packets(session, [(None, packet)], law)
    with Session(engine) as session:
        capture = session.get(Capture, r.capture_id)
        case = session.get(Case, r.case_id) if r.case_id else None
        session.expunge_all()
    return capture, case


def test_air_suspension_raises_a_3_axle_trucks_limit_by_1000_kg(engine):
    # 浙A23456: a 3-axle truck with air suspension in the register: 26 000 kg, not 25 000;
    # 26 500 kg is 500 kg over (a warning), where the same pass unregistered is a fine.
    capture, case = graded(engine, make_packet(plate="浙A23456", code="15", gross_kg=26500))
    assert (capture.limit_kg, capture.excess_kg, capture.action, capture.fine_yuan) == (
        26000, 500, "warning", None)
    rules = [r["id"] for r in capture.grade["rules"]]
    assert "limit.air-suspension.truck" in rules
    assert capture.grade["register"] == {
        "found": True, "plate": "浙A23456", "plate_colour": "yellow", "kind": "truck",
        "licence_mass_kg": 26000, "air_suspension": True, "axle_code": "15",
        "source": "vehicle register"}
    assert case.action == "warning"
    other, _ = graded(engine, make_packet(sequence=2, plate="浙E55555", code="15",
                                          gross_kg=26500))
    assert (other.limit_kg, other.action, other.fine_yuan) == (25000, "fine", 500)
    assert other.grade["register"]["found"] is False
    assert other.grade["register"]["note"].startswith("no entry in the vehicle register")


def test_air_suspension_of_a_4_axle_truck(engine):
    capture, _ = graded(engine, make_packet(plate="浙A34567", code="115", gross_kg=32500))
    assert (capture.limit_kg, capture.excess_kg, capture.action) == (32000, 500, "warning")


def test_a_6_axle_157_with_air_suspension_keeps_49_t(engine):
    # The tables raise the limit for air suspension only on 3- and 4-axle trucks and the
    # 4-axle combination (limits.yaml, GB 1589-2016 4.3): the register's fact is taken and
    # recorded, and no rule of the tables applies it to a 6-axle combination.
    capture, case = graded(engine, make_packet(plate="浙A12345", code="157", gross_kg=55400))
    assert (capture.limit_kg, capture.excess_kg, capture.fine_yuan) == (49000, 6400, 3000)
    assert capture.grade["register"]["air_suspension"] is True
    assert not any(r["id"].startswith("limit.air-suspension") for r in capture.grade["rules"])
    assert case.fine_yuan == 3000


def test_a_licence_mass_below_the_table_limit_is_the_limit(engine):
    # 浙B34567: a 2-axle truck licensed for 16 000 kg: 17 500 kg is over by 1 500 kg, which
    # the table's 18 000 kg alone would not see.
    capture, case = graded(engine, make_packet(plate="浙B34567", code="12", gross_kg=17500))
    assert (capture.limit_kg, capture.excess_kg, capture.over) == (16000, 1500, True)
    assert "limit.licence-mass-cap" in [r["id"] for r in capture.grade["rules"]]
    assert case is not None and case.fine_yuan == 500
    unregistered, none = graded(engine, make_packet(sequence=2, plate="浙E66666", code="12",
                                                    gross_kg=17500))
    assert (unregistered.limit_kg, unregistered.over, none) == (18000, False, None)


def test_a_register_kind_the_pass_cannot_have_is_noted_and_the_code_grades(engine, tmp_path):
    text = HEADER + "\n浙F10000,yellow,truck,,false,,company,某公司,,,,,\n"
    with Session(engine) as session, session.begin():
        import_vehicles(session, write(tmp_path, "truck.csv", text))
    capture, _ = graded(engine, make_packet(plate="浙F10000", code="157", gross_kg=55400))
    assert capture.limit_kg == 49000 and capture.grade_error is None
    register = capture.grade["register"]
    assert register["kind_refused"] == ("limits.yaml has no total-mass limit for a truck with "
                                        "6 axles: graded as the axle code says")


def test_the_register_axle_code_differing_from_the_pass_is_noted(engine):
    capture, _ = graded(engine, make_packet(plate="浙A12345", code="159", gross_kg=55400))
    assert capture.grade["register"]["axle_code_differs"] == (
        "the register's axle code 157 is not the measured 159")


# The commands (parsed by a parser built here; zhichao.cli wires them in).

def cli(capsys, *argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    center_cli.add_parser(sub)
    args = parser.parse_args(["center", *argv])
    code = args.run(args)
    return code, capsys.readouterr().out


@pytest.fixture
def site(center_db_url, tmp_path):
    config = tmp_path / "center.yaml"
    config.write_text(f"database: {center_db_url}\n", encoding="utf-8")
    return config


def test_vehicle_commands(capsys, site, tmp_path):
    path = write(tmp_path, "vehicles.csv", VEHICLES_CSV)
    code, out = cli(capsys, "vehicles", "import", str(path), "--dry-run", "--config", str(site))
    assert code == 0 and "checked, nothing written: 4 vehicles would be added" in out
    code, out = cli(capsys, "vehicles", "list", "--json", "--config", str(site))
    assert out == ""
    code, out = cli(capsys, "vehicles", "import", str(path), "--by", "王芳",
                    "--config", str(site))
    assert "4 vehicles added, 0 updated (浙A12345, 浙A23456, 浙A34567, 浙B34567)" in out
    code, out = cli(capsys, "vehicles", "list", "--json", "--config", str(site))
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["plate"] for r in rows] == ["浙A12345", "浙A23456", "浙A34567", "浙B34567"]
    assert rows[0]["transport_certificate"] == "330100123456" and "id" not in rows[0]
    code, out = cli(capsys, "vehicles", "list", "--limit", "1", "--offset", "1", "--json",
                    "--config", str(site))
    assert [json.loads(line)["plate"] for line in out.splitlines()] == ["浙A23456"]
    code, out = cli(capsys, "vehicles", "list", "--limit", "1", "--offset", "1",
                    "--config", str(site))
    assert "vehicles 2–2 of 4" in out
    code, out = cli(capsys, "vehicles", "show", "浙B34567", "--config", str(site))
    assert "赵六" in out and "16000" in out
    with pytest.raises(VehicleError, match="plate 浙Z1 is not in the vehicle register"):
        cli(capsys, "vehicles", "show", "浙Z1", "--config", str(site))
    bad = write(tmp_path, "bad.csv", csv_with(kind="tractor"))
    with pytest.raises(VehicleError, match=r"bad\.csv row 2: kind 'tractor'"):
        cli(capsys, "vehicles", "import", str(bad), "--config", str(site))


def test_vehicle_rows_are_bounded_in_the_database(center_db_url, tmp_path):
    """Every bound of the file fits its column (PostgreSQL refuses a longer string)."""
    engine = center_engine(center_db_url)
    long = csv_with(owner_name="名" * 128, address="址" * 256, email="a" * 240 + "@example.com",
                    transport_certificate="9" * 64, phone="1" * 32)
    with Session(engine) as session, session.begin():
        import_vehicles(session, write(tmp_path, "long.csv", long))
    with Session(engine) as session:
        row = session.scalars(select(VehicleRow).where(VehicleRow.plate == "浙A12345")).one()
        assert len(row.address) == 256 and len(row.owner_name) == 128
    engine.dispose()
