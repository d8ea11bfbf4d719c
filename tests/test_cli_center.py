"""``zhichao center``: the real command line on a temporary SQLite center — registry import,
processing stored packets, review, export — and the example settings."""

import csv
import gc
import io
import json
import socket
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml
from center_factory import REGISTRY_CSV, STAFF_CSV, T0, make_packet
from center_factory import store_packets as store_in
from pydantic import BaseModel
from sqlalchemy import update
from sqlalchemy.orm import Session

from center.cases import process_pending
from center.db import make_engine
from center.law_models import Case, DeviceRecord
from center.settings import CenterSettings, load_center_settings
from center.spreadsheet import FORMULA_STARTS
from overload import load_rules, period_end
from zhichao.cli import main
from zhichao.resources import config_dir


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A center settings file (SQLite beside it) and a registry file."""
    config = tmp_path / "center.yaml"
    config.write_text("database: center.db\nlaw:\n  process_interval_s: 0.1\n",
                      encoding="utf-8")
    (tmp_path / "devices.csv").write_text(REGISTRY_CSV, encoding="utf-8")
    (tmp_path / "staff.csv").write_text(STAFF_CSV, encoding="utf-8")
    return config


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["center", *args])
    out, err = capsys.readouterr()
    return code, out, err


def store_packets(database: Path, packets) -> None:
    """Put packets into the ingestion's table, as the receiver would."""
    engine = make_engine(database)
    store_in(engine, packets)
    engine.dispose()


def take(capsys, site: Path, case_id: int, *steps: tuple[str, ...]) -> None:
    """Take each step (name, options...) of the procedure from the command line."""
    for name, *options in steps:
        code, _, err = cli(capsys, "cases", name, str(case_id), *options,
                           "--config", str(site))
        assert code == 0, (name, err)


def to_decision(capsys, site: Path, case_id: int) -> None:
    """Import the staff register, then review, approve, notify, and the defence waived."""
    assert cli(capsys, "staff", "import", str(site.parent / "staff.csv"),
               "--config", str(site))[0] == 0
    take(capsys, site, case_id, ("review", "--officer", "ZF001", "--note", "ok"),
         ("approve", "--officer", "ZF002"), ("notify", "--officer", "ZF001"),
         ("defence", "--officer", "ZF001", "--outcome", "waived"))


DECIDE = ("decide", "--officer", "ZF001", "--officer", "ZF002")


def test_devices_import_and_list(capsys, site, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    code, out, _ = cli(capsys, "devices", "import", str(site.parent / "devices.csv"),
                       "--config", str(site), "--by", "王五")
    assert code == 0 and "2 devices added, 0 updated (D1, D2)" in out
    code, out, _ = cli(capsys, "devices", "list", "--config", str(site), "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["device_id"] for r in rows] == ["D1", "D2"]
    assert rows[1]["suspensions"] == [{"starts": "2026-05-30", "ends": "2026-06-02",
                                       "reason": "repair"}]
    code, out, _ = cli(capsys, "devices", "list", "--config", str(site))
    assert code == 0 and "K123+450" in out and "JD-2026-002" in out


def test_a_bad_registry_file_is_one_error_per_row_and_exit_2(capsys, site):
    bad = site.parent / "bad.csv"
    bad.write_text(REGISTRY_CSV.replace("30.10", "x"), encoding="utf-8")
    code, _, err = cli(capsys, "devices", "import", str(bad), "--config", str(site))
    assert code == 2
    assert "bad.csv row 3: latitude 'x' is not a number" in err
    code, out, _ = cli(capsys, "devices", "list", "--config", str(site), "--json")
    assert out == ""


def test_run_process_review_export(capsys, site, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    assert cli(capsys, "devices", "import", str(tmp_path / "devices.csv"),
               "--config", str(site))[0] == 0
    store_packets(tmp_path / "center.db", [
        make_packet(sequence=1),
        make_packet(sequence=2, captured_at=T0 + timedelta(hours=1), gross_kg=57000),
        make_packet(sequence=3, captured_at=T0 + timedelta(hours=2), plate=None),
    ])
    code, _, _ = cli(capsys, "run", "--config", str(site), "--process-only", "--seconds", "1.5")
    assert code == 0
    code, out, _ = cli(capsys, "cases", "list", "--config", str(site), "--json")
    (case,) = [json.loads(line) for line in out.splitlines()]
    assert (case["plate"], case["status"], case["fine_yuan"], case["first_violation"]) == \
        ("浙A12345", "awaiting_review", 4000, True)

    code, out, _ = cli(capsys, "cases", "show", str(case["id"]), "--config", str(site),
                       "--json")
    detail = json.loads(out)
    assert [c["role"] for c in detail["captures"]] == ["attached", "evidence"]
    assert {k["id"] for k in detail["captures"][1]["checks"]} >= {"notice", "certificate"}
    assert any(r["id"] == "national.mass.fine" for r in detail["captures"][1]["grade"]["rules"])
    code, out, _ = cli(capsys, "cases", "show", str(case["id"]), "--config", str(site))
    assert "legality" in out and "rules applied" in out
    assert "浙江省公路条例（2020） 第三十八条 第一款" in out

    to_decision(capsys, site, case["id"])
    code, _, err = cli(capsys, "cases", "review", str(case["id"]), "--officer", "ZF001",
                       "--config", str(site))
    assert code == 2 and "is heard; review needs it awaiting_review" in err
    code, _, err = cli(capsys, "cases", "reject", "99", "--officer", "ZF001", "--reason",
                       "other", "--config", str(site))
    assert code == 2 and "case 99 does not exist" in err
    code, out, _ = cli(capsys, "export", "--closed", "--config", str(site))
    assert json.loads(out)["cases"] == []
    take(capsys, site, case["id"],
         ("party", "--officer", "ZF001", "--driver", "赵师傅", "--loading-slip", "ZD-0601-7"),
         (*DECIDE, "--fine-yuan", "3500", "--note", "first act, load corrected at once"),
         ("serve", "--officer", "ZF001"), ("pay", "--officer", "ZF002", "--amount-yuan", "3500"),
         ("close", "--officer", "ZF001"))
    code, out, _ = cli(capsys, "audit", "verify", "--config", str(site))
    assert code == 0 and "audit chain holds" in out

    code, out, _ = cli(capsys, "export", "--closed", "--config", str(site))
    data = json.loads(out)
    (row,) = data["cases"]
    assert (row["plate"], row["axle_code"], row["vehicle_type"], row["decision"],
            row["fine_yuan"]) == ("浙A12345", "157", "combination", "fine", 3500)
    assert (row["driver"], row["company"], row["loading_slip"]) == (
        "赵师傅", None, "ZD-0601-7")  # a person's case names no company
    assert row["place"] == "G60 K123+450 east" and row["device_id"] == "D1"
    assert row["attached_captures"] == 1
    closed = date.fromisoformat(row["closed_at"][:10])
    rules = load_rules()
    assert row["report_due"] == period_end(closed, 7, "working_days",
                                           rules.calendar).date.isoformat()
    out_csv = tmp_path / "art44.csv"
    assert cli(capsys, "export", "--closed", "--format", "csv", "--out", str(out_csv),
               "--config", str(site))[0] == 0
    (csv_row,) = csv.DictReader(out_csv.open(encoding="utf-8"))
    assert csv_row["plate"] == "浙A12345" and csv_row["company"] == "" \
        and csv_row["fine_yuan"] == "3500.0"


def _case_to_decide(capsys, site: Path) -> int:
    """A case of 浙A12345 graded 3 000 yuan (55 400 kg on a 157 combination), heard and
    waiting for its decision."""
    assert cli(capsys, "devices", "import", str(site.parent / "devices.csv"),
               "--config", str(site))[0] == 0
    store_packets(site.parent / "center.db", [make_packet(sequence=1)])
    engine = make_engine(site.parent / "center.db")
    assert process_pending(engine, load_center_settings(site)) == 1
    engine.dispose()
    _, out, _ = cli(capsys, "cases", "list", "--config", str(site), "--json")
    (case,) = [json.loads(line) for line in out.splitlines()]
    assert (case["action"], case["fine_yuan"]) == ("fine", 3000)
    to_decision(capsys, site, case["id"])
    return case["id"]


def test_a_fine_is_refused_unless_the_law_allows_it(capsys, site):
    case_id = _case_to_decide(capsys, site)
    close = ("cases", *DECIDE, str(case_id), "--config", str(site))
    for fine, words in (
            ("99999", "must be at most 30000 yuan, the cap of rule national.total-cap "
                      "(公路安全保护条例（2011） 第六十四条) (got 99999)"),
            ("30001", "must be at most 30000 yuan"),
            ("-500", "must be 0 or more (got -500)"),
            ("inf", "must be a finite number of yuan (got inf)"),
            ("nan", "must be a finite number of yuan (got nan)"),
            ("3500", "must not exceed the graded fine of benchmark national"),
            ("2000", "2000 is below the graded fine of benchmark national"),
            ("0", "0 is below the graded fine"),
    ):
        code, out, err = cli(capsys, *close, "--fine-yuan", fine, "--note", "  "
                             if fine in ("2000", "0") else "")
        assert (code, out, err.count("\n")) == (2, "", 1), fine
        assert f"case {case_id}: --fine-yuan" in err and words in err, (fine, err)
        assert "--note" in err or fine not in ("2000", "0")
    code, out, _ = cli(capsys, "cases", "list", "--config", str(site), "--json")
    assert json.loads(out)["status"] == "heard"  # nothing refused was recorded
    assert cli(capsys, *close, "--fine-yuan", "2000", "--note", "行政处罚法 第三十二条: "
               "unloaded the excess at once")[0] == 0
    code, out, _ = cli(capsys, "cases", "show", str(case_id), "--config", str(site), "--json")
    detail = json.loads(out)
    assert detail["case"]["decision_fine_yuan"] == 2000
    assert "unloaded the excess at once" in detail["audit"][-1]["detail"]


def test_the_graded_fine_closes_without_a_reason(capsys, site):
    case_id = _case_to_decide(capsys, site)
    take(capsys, site, case_id, (*DECIDE, "--fine-yuan", "3000"))


def test_a_case_id_out_of_range_is_one_line(capsys, site):
    for command in (("show", "12345678901234567890"), ("show", "-1"),
                    ("review", "12345678901234567890", "--officer", "x")):
        code, out, err = cli(capsys, "cases", *command, "--config", str(site))
        assert (code, out, err.count("\n")) == (2, "", 1), command
        assert f"case id {command[1]} out of range (1 to {2**63 - 1})" in err


def _formula_case(capsys, site: Path) -> None:
    """A closed case whose plate, registry fields and decision begin with formula
    characters (a plate stored before the center checked plates against the grammar, a
    registry edited by hand)."""
    case_id = _case_to_decide(capsys, site)
    take(capsys, site, case_id, ("party", "--officer", "ZF001", "--driver", "=cmd|' /C calc'!A0"),
         DECIDE, ("serve", "--officer", "ZF001"),
         ("pay", "--officer", "ZF002", "--amount-yuan", "3000"), ("close", "--officer", "ZF001"))
    engine = make_engine(site.parent / "center.db")
    with Session(engine) as session, session.begin():
        session.execute(update(Case).values(plate='=HYPERLINK("http://x.example/","浙A")'))
        session.execute(update(DeviceRecord).where(DeviceRecord.device_id == "D1").values(
            road="+G60", stake="-1+cmd|' /C calc'!A0", direction="@SUM(A1:A9)",
            certificate_number="\tJD-2026-001", longitude=-120.16))
        session.execute(update(Case).values(decision="=1+2"))
    engine.dispose()


def test_the_csv_export_neutralises_formulas(capsys, site, tmp_path):
    _formula_case(capsys, site)
    out_csv = tmp_path / "art44.csv"
    assert cli(capsys, "export", "--closed", "--format", "csv", "--out", str(out_csv),
               "--config", str(site))[0] == 0
    text = out_csv.read_text(encoding="utf-8")
    header, row = list(csv.reader(io.StringIO(text)))
    cells = dict(zip(header, row, strict=True))
    numeric = {"case_id", "fine_yuan", "latitude", "longitude", "gross_kg", "limit_kg",
               "tolerance_kg", "excess_kg", "cases_12m", "attached_captures"}
    for name, cell in cells.items():
        if cell.startswith(FORMULA_STARTS):
            assert name in numeric and float(cell) == float(cell), (name, cell)
    assert cells["longitude"] == "-120.16"  # a number the center holds stays a number
    assert cells["plate"] == '\'=HYPERLINK("http://x.example/","浙A")'
    assert (cells["road"], cells["stake"], cells["direction"], cells["certificate_number"],
            cells["decision"]) == ("'+G60", "'-1+cmd|' /C calc'!A0", "'@SUM(A1:A9)",
                                   "'\tJD-2026-001", "'=1+2")
    assert cells["place"] == "'+G60 -1+cmd|' /C calc'!A0 @SUM(A1:A9)"
    assert cells["driver"] == "'=cmd|' /C calc'!A0"
    # every text cell is quoted in the file, numbers are bare
    assert ',"\'+G60",' in text and ",30.25,-120.16," in text


def test_no_export_carries_a_number_that_is_not_finite(capsys, site, tmp_path):
    _formula_case(capsys, site)
    engine = make_engine(site.parent / "center.db")
    with Session(engine) as session, session.begin():  # a fine closed before it was checked
        session.execute(update(Case).values(decision_fine_yuan=float("inf")))
    engine.dispose()
    for fmt in ("json", "csv"):
        code, out, err = cli(capsys, "export", "--closed", "--format", fmt,
                             "--config", str(site))
        assert (code, out, err.count("\n")) == (2, "", 1), fmt
        assert "fine_yuan is inf, not a finite number" in err


def test_report_due_counts_working_days_of_the_calendar():
    friday = T0.date() + timedelta(days=4)  # 2026-06-05 is a Friday
    due = period_end(friday, 7, "working_days", load_rules().calendar)
    # 8-12 June, then 15 and 16 June: the Dragon Boat Festival (19 June) is later
    assert due.date.isoformat() == "2026-06-16" and not due.provisional


def test_bad_settings_file_is_named(capsys, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("law:\n  notice_lead_dayz: 3\n", encoding="utf-8")
    code, _, err = cli(capsys, "cases", "list", "--config", str(config))
    assert code == 2 and "law.notice_lead_dayz" in err and "c.yaml" in err


def test_a_number_the_law_sets_is_no_setting_and_says_where_it_went(capsys, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("law:\n  repeat_more_than: 5\n", encoding="utf-8")
    code, _, err = cli(capsys, "cases", "list", "--config", str(config))
    assert code == 2 and err.count("\n") == 1
    assert "c.yaml: option 'law' 'repeat_more_than' is no longer a setting" in err
    assert "'repeat_more_than' of the rule table enforcement.yaml" in err


def test_a_bad_value_in_the_centers_enforcement_table_is_one_line(capsys, tmp_path, rules_copy):
    path = rules_copy / "enforcement.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("value: 7\n", "value: -7\n"), encoding="utf-8")
    config = tmp_path / "c.yaml"
    config.write_text(f"database: center.db\nlaw:\n  rules_folder: {rules_copy.name}\n",
                      encoding="utf-8")
    for command in (("export", "--closed"), ("run", "--process-only", "--seconds", "0.1")):
        code, out, err = cli(capsys, *command, "--config", str(config))
        assert (code, out, err.count("\n")) == (2, "", 1), command
        assert "enforcement.yaml: option 'report_within.value' must be greater than or equal " \
            "to 0 (got -7)" in err


def _options(model: type[BaseModel], prefix: str = "") -> set[str]:
    names = set()
    for name, field in model.model_fields.items():
        names.add(prefix + name)
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            names |= _options(field.annotation, f"{prefix}{name}.")
    return names


def test_the_example_settings_list_every_option_with_its_default():
    path = config_dir() / "center.example.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    listed = set()

    def walk(node, prefix=""):
        for key, value in node.items():
            listed.add(prefix + key)
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")

    walk(data)
    assert listed == _options(CenterSettings)
    example, default = load_center_settings(path), CenterSettings()
    assert example.law == default.law
    assert example.receiver.listen == default.receiver.listen



def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_with_the_receiver_listens_and_stops(capsys, tmp_path):
    assert main(["keys", "new", "--name", "center", "--out", str(tmp_path / "keys"),
                 "--curve-only"]) == 0
    port = _free_port()
    config = tmp_path / "c.yaml"
    config.write_text(f"database: center.db\nreceiver:\n  listen: [tcp://127.0.0.1:{port}]\n"
                      "  server_secret_key: keys/center.key_secret\n", encoding="utf-8")
    started = time.monotonic()
    frozen = gc.get_freeze_count()
    assert main(["center", "run", "--config", str(config), "--seconds", "1"]) == 0
    assert time.monotonic() - started < 30
    assert (tmp_path / "center.db").is_file()
    assert gc.get_freeze_count() == frozen  # run in-process, it leaves the heap as found


def test_run_without_the_server_key_names_the_file(capsys, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("database: center.db\nreceiver:\n  server_secret_key: none.key\n",
                      encoding="utf-8")
    code = main(["center", "run", "--config", str(config), "--seconds", "5"])
    assert code == 2 and "none.key" in capsys.readouterr().err


def test_center_run_takes_its_start_up_heap_out_of_the_collectors_sight():
    """`center run` freezes what start-up made before it receives; a fresh process
    (not pytest's) shows how much that is and that the young generation starts empty."""
    code = ("import gc, sys\n"
            "import center.receiver, center.cases\n"
            "from center.service import settle_heap\n"
            "before = gc.get_freeze_count()\n"
            "settle_heap()\n"
            "print(before, gc.get_freeze_count(), gc.get_count()[0])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    before, frozen, young = map(int, out)
    assert before == 0 and frozen > 50_000 and young < 100


def test_due_documents_and_a_tampered_audit_log_from_the_command_line(capsys, site, tmp_path):
    case_id = _case_to_decide(capsys, site)
    code, out, _ = cli(capsys, "due", "--within", "120", "--json", "--config", str(site))
    due = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [(d["case_id"], d["what"]) for d in due] == [(case_id, "decide")]
    assert due[0]["source"].startswith("中华人民共和国行政处罚法（2021） 第六十条")
    take(capsys, site, case_id, DECIDE)
    code, out, _ = cli(capsys, "cases", "documents", str(case_id), "--out",
                       str(tmp_path / "docs"), "--config", str(site))
    written = sorted(p.name for p in (tmp_path / "docs").iterdir())
    # no vehicle register row, so no address: the notice was served by public notice
    assert code == 0 and written == [f"case{case_id}-{n}-{kind}.pdf" for n, kind in (
        (1, "notice"), (2, "public_notice"), (3, "defence_record"), (4, "decision"))]
    assert (tmp_path / "docs" / written[3]).read_bytes().startswith(b"%PDF-")
    assert cli(capsys, "audit", "verify", "--config", str(site))[0] == 0
    engine = make_engine(site.parent / "center.db")
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE audit_log SET actor = 'someone else' WHERE action = "
                             "'decide'")
    engine.dispose()
    code, out, _ = cli(capsys, "audit", "verify", "--config", str(site))
    assert code == 1 and "audit chain broken at entry" in out and "edited" in out


def test_run_receive_only_stores_but_makes_no_case_and_the_flags_exclude(capsys, site,
                                                                          tmp_path):
    assert main(["keys", "new", "--name", "center", "--out", str(tmp_path / "keys"),
                 "--curve-only"]) == 0
    port = _free_port()
    site.write_text(site.read_text(encoding="utf-8") + "receiver:\n  listen: "
                    f"[tcp://127.0.0.1:{port}]\n  server_secret_key: keys/center.key_secret\n",
                    encoding="utf-8")
    assert cli(capsys, "devices", "import", str(tmp_path / "devices.csv"),
               "--config", str(site))[0] == 0
    store_packets(tmp_path / "center.db", [make_packet(sequence=1)])
    codes: list[int] = []
    run = threading.Thread(target=lambda: codes.append(main(
        ["center", "run", "--receive-only", "--config", str(site), "--seconds", "1.5"])))
    run.start()
    deadline = time.monotonic() + 20
    while not listening(port) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert listening(port), "the receiver of --receive-only does not listen"
    run.join(30)
    assert codes == [0]
    code, out, _ = cli(capsys, "cases", "list", "--config", str(site), "--json")
    assert (code, out) == (0, ""), "--receive-only made a case"
    assert cli(capsys, "run", "--config", str(site), "--process-only",
               "--seconds", "1.5")[0] == 0
    code, out, _ = cli(capsys, "cases", "list", "--config", str(site), "--json")
    assert [json.loads(line)["plate"] for line in out.splitlines()] == ["浙A12345"]

    with pytest.raises(SystemExit) as stopped:
        main(["center", "run", "--receive-only", "--process-only", "--config", str(site)])
    assert stopped.value.code == 2
    assert "--process-only: not allowed with argument --receive-only" in \
        capsys.readouterr().err


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
