"""``zhichao center doctor``: each fault put in on purpose is found, with its fix.

Real parts throughout: center databases made by the center's own migrations (a SQLite
file, and a PostgreSQL database when ZHICHAO_TEST_PG names a server), registries imported
by the center's importer, key files made by ``zhichao keys new``'s code, a real image
folder, and a small tmpfs (mounted as root; skipped elsewhere) for a nearly full or a
read-only disk. The one part played is the time now (``Probes.now``): the stored packets
carry fixed past times, and "silent for an hour" is measured from a chosen now.
"""

import json
import shutil
from datetime import date, datetime, timedelta
from pathlib import Path

from center_factory import REGISTRY_CSV, T0, center_engine
from small_disks import fill, tmpfs
from sqlalchemy import Engine, insert, text
from sqlalchemy.orm import Session

from center.db import make_engine, upgrade
from center.doctor import (
    Limits,
    Probes,
    check_center_key,
    check_database,
    check_disks,
    check_image_store,
    check_migrations,
    check_refusals,
    check_rotation,
    check_silent_units,
    examine,
    exit_status,
)
from center.ingest_models import Device, Refusal, StoredPacket
from center.registry import import_registry
from center.settings import CenterSettings, load_center_settings
from evidence.keys import make_keys
from zhichao.cli import main

D3_INACTIVE = REGISTRY_CSV.splitlines()[1].replace("D1,", "D3,", 1).replace(",true,", ",false,")
"""D1's registry line for a unit D3 out of service (active false)."""


def settings_for(tmp_path: Path, database: str) -> CenterSettings:
    """A center's settings on ``database`` with its image folder and CURVE key made."""
    make_keys(tmp_path / "keys", "center", curve_only=True)
    (tmp_path / "images").mkdir()
    return CenterSettings.model_validate({
        "database": database, "images_dir": str(tmp_path / "images"),
        "receiver": {"server_secret_key": str(tmp_path / "keys" / "center.key_secret")}})


def enrol(engine: Engine, device_id: str, enrolled_at: datetime,
          received: list[datetime] = ()) -> None:
    """A unit enrolled at ``enrolled_at`` whose packets (sequences 1, 2, …) arrived at
    ``received``: rows as the receiver writes them (the signature is not read here)."""
    with engine.begin() as conn:
        conn.execute(insert(Device).values(device_id=device_id, sign_public_key="pem",
                                           curve_public_key=device_id.ljust(40, "k"),
                                           enrolled_at=enrolled_at))
        for seq, at in enumerate(received, start=1):
            conn.execute(insert(StoredPacket).values(
                device_id=device_id, sequence=seq, hash=f"{seq:064x}",
                previous_hash="0" * 64, captured_at=at, lane=1, suspected_overload=False,
                meta=b"m", signature=b"s", received_at=at))


def import_devices(engine: Engine, folder: Path) -> None:
    """D1 and D2 active, D3 inactive, through the center's registry import."""
    path = folder / "devices.csv"
    path.write_text(REGISTRY_CSV + D3_INACTIVE + "\n", encoding="utf-8")
    with Session(engine) as session, session.begin():
        import_registry(session, path)


def problems(findings) -> dict[str, str]:
    """The findings that are not ok: check → severity."""
    return {f.check: f.severity for f in findings if not f.ok}


# -- a well center, and the command line ---------------------------------------------------


def test_a_well_center_has_no_error(tmp_path, center_db_url):
    """Migrated database, image folder, key 0600, units that sent minutes ago: every
    finding is ok (the real disk's may warn on a full build machine, never more)."""
    settings = settings_for(tmp_path, center_db_url)
    engine = center_engine(center_db_url)
    now = T0 + timedelta(minutes=5)
    enrol(engine, "D1", T0 - timedelta(days=3), [T0 - timedelta(hours=5), T0])
    engine.dispose()
    findings = examine(settings, probes=Probes(now=lambda: now))
    assert {k: v for k, v in problems(findings).items() if k != "disk"} == {}
    assert exit_status(findings) == 0
    checks = [f.check for f in findings]
    assert checks[:3] == ["database", "migrations", "image store"]
    assert {"disk", "units", "key server_secret_key", "refusals"} <= set(checks)


def test_the_command_line_gives_a_table_or_json_and_exit_1_on_an_error(tmp_path, capsys,
                                                                       monkeypatch):
    """``zhichao center doctor --config FILE [--json]``: a missing key is an error (exit
    1, the JSON names it); made, exit 0 and the table."""
    monkeypatch.setenv("COLUMNS", "200")
    config = tmp_path / "center.yaml"
    config.write_text("database: center.db\nimages_dir: images\n", encoding="utf-8")
    upgrade(engine := make_engine(tmp_path / "center.db"))
    engine.dispose()
    (tmp_path / "images").mkdir()
    assert main(["center", "doctor", "--config", str(config), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert not report["ok"] and report["errors"] == 1
    (key,) = [f for f in report["findings"] if not f["ok"]]
    assert key["check"] == "key server_secret_key" and "zhichao keys new" in key["fix"]
    make_keys(tmp_path / "keys", "center", curve_only=True)
    assert main(["center", "doctor", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "migrations" in out and "center.key_secret" in out


# -- the database and its migrations -------------------------------------------------------


def test_a_missing_sqlite_file_is_an_error_and_is_not_made(tmp_path):
    settings = load_settings(tmp_path, "database: nothing-here.db\n")
    engine, (finding,) = check_database(settings, Limits())
    assert engine is None and finding.severity == "error"
    assert "nothing-here.db" in finding.what and "zhichao center" in finding.fix
    assert not (tmp_path / "nothing-here.db").exists()
    findings = examine(settings)
    assert exit_status(findings) == 1 and "not checked" in findings[-1].what


def test_a_file_that_is_not_a_database_is_an_error(tmp_path):
    (tmp_path / "center.db").write_bytes(b"this is not SQLite " * 100)
    settings = load_settings(tmp_path, "database: center.db\n")
    engine, (finding,) = check_database(settings, Limits())
    assert engine is None and finding.severity == "error"
    assert "cannot be opened" in finding.what and "integrity_check" in finding.fix


def test_an_unreachable_postgresql_is_an_error_without_its_password(tmp_path):
    """A port nobody listens on: refused at once, the URL shown without the password."""
    settings = CenterSettings(database="postgresql://zc:s3cret@127.0.0.1:1/zhichao")
    engine, (finding,) = check_database(settings, Limits(connect_timeout_s=2))
    assert engine is None and finding.severity == "error"
    assert "s3cret" not in finding.what and "127.0.0.1:1" in finding.what
    assert "systemctl status postgresql" in finding.fix and "pg_hba.conf" in finding.fix


def test_migrations_behind_unknown_or_none_are_errors_and_the_fix_works(tmp_path,
                                                                        center_db_url):
    """An empty database, one at an older migration, one at a revision this code does not
    know: each an error; the fix given (any center command) brings it to the head."""
    engine = make_engine(center_db_url)
    (empty,) = check_migrations(engine)
    assert empty.severity == "error" and "no zhichao tables" in empty.what
    upgrade(engine, "0005_procedure")
    (behind,) = check_migrations(engine)
    assert behind.severity == "error" and "0005_procedure, behind" in behind.what
    assert "zhichao center devices list" in behind.fix
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    (ahead,) = check_migrations(engine)
    assert ahead.severity == "error" and "does not know" in ahead.what
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0005_procedure'"))
    config = tmp_path / "center.yaml"
    config.write_text(f"database: '{center_db_url}'\n", encoding="utf-8")
    assert main(["center", "devices", "list", "--config", str(config), "--json"]) == 0
    (now_ok,) = check_migrations(engine)
    engine.dispose()
    assert now_ok.ok and "the code's head" in now_ok.what


def load_settings(folder: Path, text_: str) -> CenterSettings:
    """Settings from a file in ``folder`` (paths in it relative to the folder)."""
    path = folder / "center.yaml"
    path.write_text(text_, encoding="utf-8")
    return load_center_settings(path)


# -- image store and disk ------------------------------------------------------------------


def test_an_image_store_missing_or_read_only_is_an_error(tmp_path):
    """Missing: an error naming images_dir. On a read-only file system (root writes
    through any mode bits, a read-only mount it cannot): an error naming the cause."""
    (missing,) = check_image_store(tmp_path / "images")
    assert missing.severity == "error" and "images_dir" in missing.what
    with tmpfs(tmp_path / "ro", "1m", "ro") as ro:
        (read_only,) = check_image_store(ro)
    assert read_only.severity == "error" and "cannot be written" in read_only.what
    assert "Read-only" in read_only.what and "read-write" in read_only.fix
    (tmp_path / "images").mkdir()
    (fine,) = check_image_store(tmp_path / "images")
    assert fine.ok and not list((tmp_path / "images").iterdir())  # its probe file gone


def test_a_nearly_full_disk_is_an_error_and_a_filling_one_a_warning(tmp_path):
    """Images and the SQLite database on one small tmpfs: one finding names both; 6 %
    free is a warning, 1 % an error. A database elsewhere gets a finding of its own."""
    with tmpfs(tmp_path / "data", "4m") as data:
        places = {"image store": data / "images", "database": data / "center.db"}
        (roomy,) = check_disks(places, Limits(), shutil.disk_usage)
        assert roomy.ok and "image store" in roomy.what and "database" in roomy.what
        fill(data, 0.06)
        (filling,) = check_disks(places, Limits(), shutil.disk_usage)
        assert filling.severity == "warning" and "below 10 %" in filling.what
        fill(data, 0.01)
        (full,) = check_disks(places, Limits(), shutil.disk_usage)
        assert full.severity == "error" and "below 2 %" in full.what
        assert "never delete images" in full.fix
        split = check_disks({"image store": data, "database": tmp_path / "center.db"},
                            Limits(), shutil.disk_usage)
    assert [f.severity for f in split] == ["error", "info"]


# -- units silent --------------------------------------------------------------------------


def test_silent_units_are_named_with_their_last_packet(tmp_path, center_db_url):
    """D1 sent two hours ago (warning), D5 (not in the registry) ten minutes ago (fine),
    D3 never but is inactive in the registry (not expected), D4 never since its
    enrolment two days ago (error), D2 never but is suspended for a repair (2026-05-30 to
    06-02; not expected). A day later D1 and D5 are errors too: every unit expected is
    silent. After D2's repair it is expected again."""
    engine = center_engine(center_db_url)
    import_devices(engine, tmp_path)
    now = T0 + timedelta(hours=2)
    enrol(engine, "D1", T0 - timedelta(days=5), [T0 - timedelta(hours=3), T0])
    enrol(engine, "D2", T0 - timedelta(days=5))
    enrol(engine, "D5", T0 - timedelta(days=5), [T0, now - timedelta(minutes=10)])
    enrol(engine, "D3", T0 - timedelta(days=5))
    enrol(engine, "D4", now - timedelta(days=2))
    findings = check_silent_units(engine, Limits(), now)
    assert problems(findings) == {"unit D4": "error", "unit D1": "warning"}
    d4, d1 = findings
    assert "2.0 days" in d4.what and "no packet since enrolled" in d4.what
    assert "(not in the registry)" in d4.what and "zhichao edge doctor" in d4.fix
    assert "last packet 2026-06-01 02:00 UTC" in d1.what and "2.0 h" in d1.what
    later = check_silent_units(engine, Limits(), now + timedelta(days=1))
    assert problems(later) == {"unit D1": "error", "unit D4": "error", "unit D5": "error",
                               "units": "error"}
    assert "every one is silent" in later[0].what and "receiver" in later[0].fix
    assert later[0].what.startswith("5 units enrolled, 3 expected to send (1 inactive in "
                                    "the registry, 1 suspended today)")
    repaired = check_silent_units(engine, Limits(), now + timedelta(days=2))
    engine.dispose()
    assert problems(repaired) == {"unit D1": "error", "unit D2": "error",
                                  "unit D4": "error", "unit D5": "error", "units": "error"}


def test_silent_units_past_the_named_ones_are_counted_in_one(tmp_path):
    engine = center_engine(f"sqlite:///{tmp_path / 'center.db'}")
    for n in range(5):
        enrol(engine, f"U{n}", T0, [T0])
    findings = check_silent_units(engine, Limits(silent_named=3), T0 + timedelta(hours=2))
    engine.dispose()
    assert [f.check for f in findings] == ["units", "unit U0", "unit U1", "unit U2", "units"]
    assert findings[-1].what.startswith("2 more units silent") and "U4" in findings[-1].what


# -- the key -------------------------------------------------------------------------------


def test_the_center_key_missing_readable_or_public_only_is_an_error(tmp_path):
    make_keys(tmp_path, "center", curve_only=True)
    secret = tmp_path / "center.key_secret"
    (fine,) = check_center_key(secret)
    assert fine.ok and "0600" in fine.what
    secret.chmod(0o644)
    (readable,) = check_center_key(secret)
    assert readable.severity == "error" and "group and others" in readable.what
    assert f"chmod 600 {secret}" in readable.fix
    (public,) = check_center_key(tmp_path / "center.key")
    assert public.severity == "error" and "no secret key" in public.what
    (missing,) = check_center_key(tmp_path / "other.key_secret")
    assert missing.severity == "error" and "--curve-only" in missing.fix


def test_a_rotations_new_key_is_checked_and_its_end_is_said(tmp_path):
    make_keys(tmp_path, "center", curve_only=True)
    new = tmp_path / "new"
    new.mkdir()
    make_keys(new, "center", curve_only=True)
    (new / "center.key_secret").chmod(0o640)
    settings = CenterSettings(
        database="sqlite:///unused.db", images_dir=tmp_path / "images",
        receiver={"server_secret_key": tmp_path / "center.key_secret",
                  "listen": ["tcp://127.0.0.1:5760"],
                  "rotation": {"server_secret_key": new / "center.key_secret",
                               "listen": ["tcp://127.0.0.1:5761"],
                               "old_key_until": date(2026, 12, 31)}})
    key, during = check_rotation(settings, date(2026, 12, 31))
    assert key.check == "key rotation.server_secret_key" and key.severity == "error"
    assert "group" in key.what and "chmod 600" in key.fix
    assert during.ok and "5761" in during.what
    (new / "center.key_secret").chmod(0o600)
    key, after = check_rotation(settings, date(2027, 1, 1))
    assert key.ok
    assert after.severity == "warning" and "remove the rotation section" in after.fix
    assert check_rotation(settings.model_copy(update={"receiver": settings.receiver.model_copy(
        update={"rotation": None})}), date(2027, 1, 1)) == []


# -- refusals ------------------------------------------------------------------------------


def refuse(engine: Engine, reason: str, at: datetime, n: int = 1) -> None:
    """``n`` refusals of ``reason`` at ``at``, as the receiver writes them."""
    with engine.begin() as conn:
        conn.execute(insert(Refusal), [{"at": at, "peer": "k" * 40, "device_id": None,
                                        "sequence": None, "reason": reason,
                                        "detail": "put in by the test"}] * n)


def test_refusals_of_the_last_hour_by_reason(center_db_url):
    """Older refusals do not count; a few are said for the record with what each reason
    means; many are a warning."""
    engine = center_engine(center_db_url)
    now = T0 + timedelta(hours=3)
    (none,) = check_refusals(engine, Limits(), now)
    assert none.ok and "no message refused" in none.what
    refuse(engine, "unknown_key", now - timedelta(hours=2), 500)
    refuse(engine, "unknown_key", now - timedelta(minutes=5), 2)
    refuse(engine, "plate", now - timedelta(minutes=1))
    (few,) = check_refusals(engine, Limits(), now)
    assert few.ok and few.what.startswith("3 messages refused in the last 60 min")
    assert "2 unknown_key, 1 plate" in few.what and "devices enrol" in few.fix
    refuse(engine, "signature", now - timedelta(minutes=30), 70)
    (many,) = check_refusals(engine, Limits(), now)
    engine.dispose()
    assert many.severity == "warning" and "70 signature" in many.what
    assert "--replace" in many.fix

