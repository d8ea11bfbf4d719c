"""``zhichao edge doctor``: each fault put in on purpose is found, with its fix.

Real parts wherever they can run here: serial devices are simulated twins on
pseudo-terminals, the center is a real receiver on 127.0.0.1 (a closed port for the
unreachable one), keys are real files with real modes, the nearly full disk is a real
tmpfs, the outbox a real SQLite file. The one part played is the kernel clock's
discipline: a test cannot set the host clock's sync state (no daemon to stop or start
here, and doing so would move the clock under every process of the machine), so
recorded ``adjtimex`` readings are passed in where the state must be one or the other.
"""

import json
import shutil
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import yaml
import zmq
from small_disks import fill, tmpfs

from calibration.chain import Certificate, Chain, save_chain
from center.db import make_engine, upgrade
from center.ingest import enrol_from_files
from center.receiver import Receiver
from center.settings import CenterSettings, ReceiverSettings
from drivers.strips import StripArray
from edge.doctor import (
    Finding,
    Limits,
    Listened,
    PingResult,
    Probes,
    check_calibration,
    check_centers,
    check_clock_fit,
    check_devices,
    check_disk,
    check_host_clock,
    check_keys,
    check_outbox,
    check_rules,
    china_today,
    examine,
    listen,
)
from edge.outbox import Outbox
from edge.settings import EdgeSettings, RulesSettings, load_edge_settings
from edge.timebase import Timebase
from edge.timebase.kernel import STA_PLL, STA_UNSYNC, TIME_ERROR, TIME_OK, KernelClock
from evidence.keys import make_keys
from evidence.signing import load_signing_key
from overload import load_rules
from sim.evidence import draft
from sim.serial_twins import DigitiserTwin, GpsTwin, XK3190Twin
from sim.traffic import generate_traffic
from zhichao.cli import main
from zhichao.health import exit_status

pytestmark = pytest.mark.timeout(30)

SYNCED = KernelClock(state=TIME_OK, status_flags=STA_PLL, maxerror_us=8_000,
                     esterror_us=1_000, offset_us=12.0, freq_ppm=-3.2)
"""A reading of a kernel chrony keeps: STA_UNSYNC clear, max error 8 ms."""
UNSYNCED = KernelClock(state=TIME_ERROR, status_flags=STA_UNSYNC, maxerror_us=16_000_000,
                       esterror_us=16_000_000, offset_us=0.0, freq_ppm=0.0)
"""A reading of a kernel no daemon ever disciplined (what a fresh box shows)."""
STALE = KernelClock(state=TIME_OK, status_flags=STA_PLL, maxerror_us=400_000,
                    esterror_us=1_000, offset_us=0.0, freq_ppm=-3.2)
"""Synced once, then the daemon stopped: max error grown to 400 ms, STA_UNSYNC not yet."""


def by_check(findings: list[Finding], check: str) -> Finding:
    """The one finding of ``check``."""
    (found,) = [f for f in findings if f.check == check]
    return found


@pytest.fixture(scope="module")
def center(tmp_path_factory):
    """A real center receiver on 127.0.0.1 with unit-1 enrolled; its key folder."""
    root = tmp_path_factory.mktemp("center")
    make_keys(root / "keys", "center", curve_only=True)
    make_keys(root / "keys", "unit-1")
    with zmq.Context.instance().socket(zmq.ROUTER) as probe:
        port = probe.bind_to_random_port("tcp://127.0.0.1")
    settings = CenterSettings(
        database=str(root / "center.db"), images_dir=root / "images",
        receiver=ReceiverSettings(listen=[f"tcp://127.0.0.1:{port}"],
                                  server_secret_key=root / "keys" / "center.key_secret"))
    engine = make_engine(settings.database)
    upgrade(engine)
    enrol_from_files(engine, "unit-1", root / "keys" / "unit-1.sign.pub",
                     root / "keys" / "unit-1.key")
    receiver = Receiver(settings, engine)
    receiver.start()
    yield {"endpoint": f"tcp://127.0.0.1:{port}", "keys": root / "keys"}
    receiver.stop(10.0)
    engine.dispose()


def unit_folder(tmp_path: Path, center: dict, *, devices: dict | None = None,
                certificate: Certificate | None = None, endpoint: str | None = None
                ) -> Path:
    """A unit's folder as it is installed: its keys (copied with their modes), a
    calibration chain under ``certificate`` (default: valid for a year from last month)
    and edge.yaml; the settings file's path."""
    keys = tmp_path / "keys"
    keys.mkdir()
    for name in ("unit-1.sign", "unit-1.key", "unit-1.key_secret", "center.key"):
        shutil.copy2(center["keys"] / name, keys / name)
    today = china_today()
    cert = certificate or Certificate(number="JJG907-2026-0042",
                                      valid_from=today - timedelta(days=30),
                                      valid_to=today + timedelta(days=335))
    save_chain(Chain(device_id="unit-1", version="v1", certificate=cert),
               tmp_path / "chain.json")
    settings = tmp_path / "edge.yaml"
    settings.write_text(yaml.safe_dump({
        "device_id": "unit-1", "calibration_file": "chain.json",
        "plates": {"workers": 0},
        "evidence": {"outbox": "outbox.db", "signing_key": "keys/unit-1.sign",
                     "curve_secret_key": "keys/unit-1.key_secret",
                     "center_public_key": "keys/center.key", "certificate": cert.number,
                     "endpoints": [endpoint or center["endpoint"]]},
        "devices": devices or {}}))
    return settings


@pytest.fixture
def scale():
    """An XK3190 weighing indicator twin on a pseudo-terminal, sending 10 times a second."""
    twin = XK3190Twin(speed=4.0)
    port = twin.start()
    twin.command(31_000.0)
    yield port
    twin.stop()


# -- the whole unit ------------------------------------------------------------------------


def test_a_well_unit_has_no_error_and_says_what_it_saw(tmp_path, center, scale):
    settings_file = unit_folder(tmp_path, center, devices={
        "scale": {"kind": "serial", "protocol": "xk3190", "port": scale}})
    findings = examine(load_edge_settings(settings_file), tmp_path,
                       limits=Limits(seconds=2.0), probes=Probes(read_kernel=lambda: SYNCED))
    assert exit_status(findings) == 0, [f for f in findings if not f.ok]
    assert not [f for f in findings if f.severity == "error"]
    device = by_check(findings, "device scale")
    assert device.ok and scale in device.what and "readings in" in device.what, device
    assert by_check(findings, "host clock").ok
    assert "max error 8 ms" in by_check(findings, "host clock").what
    assert by_check(findings, f"center {center['endpoint']}").ok
    assert "answered a ping over CURVE" in by_check(findings, f"center {center['endpoint']}").what
    assert by_check(findings, "certificate").ok
    rules = by_check(findings, "rule tables")
    assert rules.ok and rules.severity == "info" and "digest" in rules.what
    assert "equal to the center's" in rules.what and center["endpoint"] in rules.what
    assert all(by_check(findings, f"key {k}").ok for k in (
        "signing_key", "curve_secret_key", "center_public_key"))


def test_exit_status_fails_on_errors_only():
    warning = Finding("disk", False, "warning", "7 % free", "free space")
    error = Finding("host clock", False, "error", "not synchronised", "enable chrony")
    fine = Finding("outbox", True, "info", "0 packets pending")
    assert exit_status([fine, warning]) == 0
    assert exit_status([fine, warning, error]) == 1


# -- device unplugged ----------------------------------------------------------------------


def test_an_unplugged_serial_device_is_an_error_naming_its_port(tmp_path):
    twin = XK3190Twin(speed=4.0, link=tmp_path / "ttyUSB0")
    port = twin.start()
    twin.stop()  # unplugged: the port the settings name is gone
    settings = EdgeSettings.model_validate({"devices": {
        "scale": {"kind": "serial", "protocol": "xk3190", "port": port}}})
    heard, setup = listen(settings, tmp_path, 1.0, Timebase(settings.time))
    (finding,) = setup + check_devices(settings, heard)
    assert not finding.ok and finding.severity == "error"
    assert port in finding.what and "not connected" in finding.what
    assert "check the cable" in finding.fix and f"devices.scale.port: {port}" in finding.fix


def test_the_command_line_prints_one_json_object_and_fails(tmp_path, center, capsys):
    port = str(tmp_path / "ttyUSB7")
    settings_file = unit_folder(tmp_path, center, devices={
        "scale": {"kind": "serial", "protocol": "xk3190", "port": port}})
    status = main(["edge", "doctor", "--config", str(settings_file), "--seconds", "1",
                   "--json"])
    report = json.loads(capsys.readouterr().out)
    assert status == 1 and report["unit"] == "unit-1" and not report["ok"]
    device = by_check([Finding(**f) for f in report["findings"]], "device scale")
    assert device.severity == "error" and port in device.what
    assert set(report["findings"][0]) == {"check", "ok", "severity", "what", "fix"}
    assert report["errors"] >= 1


def test_the_command_line_prints_a_table_with_the_fixes(tmp_path, center, capsys):
    settings_file = unit_folder(tmp_path, center)
    (tmp_path / "keys" / "unit-1.sign").chmod(0o644)
    status = main(["edge", "doctor", "--config", str(settings_file), "--seconds", "0.2"])
    out = " ".join(capsys.readouterr().out.split())
    assert status == 1
    assert "ERROR" in out and "chmod 600" in out.replace("│ ", "").replace(" │", "")


# -- clock unsynchronised ------------------------------------------------------------------


def quiet(settings: EdgeSettings, reading: KernelClock) -> Listened:
    """What a listen without devices leaves: a timebase reading ``reading``."""
    return Listened(Timebase(settings.time, read_kernel=lambda: reading))


def test_an_unsynchronised_host_clock_is_an_error_with_its_fix():
    # the kernel's sync state cannot be set from a test (see the module's docstring):
    # recorded readings of each state are passed in
    settings = EdgeSettings()
    (unsynced,) = check_host_clock(settings, quiet(settings, UNSYNCED), lambda: UNSYNCED)
    assert not unsynced.ok and unsynced.severity == "error"
    assert "not synchronised" in unsynced.what and "STA_UNSYNC" in unsynced.what
    assert "enable chrony/NTP" in unsynced.fix and "GPS" in unsynced.fix
    (stale,) = check_host_clock(settings, quiet(settings, STALE), lambda: STALE)
    assert stale.severity == "error" and "400 ms is above 100 ms" in stale.what
    assert "restart the time daemon" in stale.fix
    (synced,) = check_host_clock(settings, quiet(settings, SYNCED), lambda: SYNCED)
    assert synced.ok


def test_a_fresh_gps_vouches_while_the_kernel_is_unsynchronised(tmp_path):
    gps = GpsTwin()
    port = gps.start()
    try:
        settings = EdgeSettings.model_validate({"devices": {
            "gps": {"kind": "serial", "protocol": "nmea", "port": port}}})
        heard, _ = listen(settings, tmp_path, 2.5,
                          Timebase(settings.time, read_kernel=lambda: UNSYNCED))
    finally:
        gps.stop()
    kernel, fix = check_host_clock(settings, heard, lambda: UNSYNCED)
    assert kernel.severity == "warning" and "the GPS vouches" in kernel.what
    assert fix.check == "gps" and fix.ok and "fresh" in fix.what
    assert by_check(check_devices(settings, heard), "device gps").ok


def test_the_real_kernel_clock_is_judged_as_the_timebase_judges_it(tmp_path):
    """The host's own clock, unplayed: whatever its state, the doctor agrees with the
    timebase (these machines' kernels are unsynchronised, so this is the real fault)."""
    settings = EdgeSettings()
    (finding,) = check_host_clock(settings, Listened(Timebase(settings.time)),
                                  Probes().read_kernel)
    assert finding.ok == (Timebase(settings.time).state().source == "kernel")


# -- disk nearly full ----------------------------------------------------------------------


def test_a_nearly_full_disk_is_an_error_and_a_filling_one_a_warning(tmp_path):
    with tmpfs(tmp_path / "data", "4m") as data:
        evidence = EdgeSettings.model_validate(
            {"evidence": {"outbox": str(data / "outbox" / "outbox.db")}}).evidence
        (roomy,) = check_disk(evidence, Limits(), shutil.disk_usage)
        assert roomy.ok and str(data) in roomy.what
        fill(data, 0.06)
        (filling,) = check_disk(evidence, Limits(), shutil.disk_usage)
        assert filling.severity == "warning" and "below 10 %" in filling.what
        fill(data, 0.01)
        (full,) = check_disk(evidence, Limits(), shutil.disk_usage)
        assert not full.ok and full.severity == "error" and "below 2 %" in full.what
        assert str(data) in full.what and "never delete the outbox" in full.fix


# -- keys ----------------------------------------------------------------------------------


def test_a_world_readable_key_is_an_error_naming_the_file_and_chmod(tmp_path, center):
    settings_file = unit_folder(tmp_path, center)
    evidence = load_edge_settings(settings_file).evidence.resolved(tmp_path)
    assert all(f.ok for f in check_keys(evidence))
    evidence.signing_key.chmod(0o644)
    evidence.curve_secret_key.chmod(0o640)
    sign, curve, public = check_keys(evidence)
    assert sign.severity == "error" and str(evidence.signing_key) in sign.what
    assert "others" in sign.what and "0644" in sign.what
    assert f"chmod 600 {evidence.signing_key}" in sign.fix
    assert curve.severity == "error" and "group" in curve.what and "others" not in curve.what
    assert public.ok  # a public key may be read by anyone
    evidence.center_public_key.unlink()
    missing = check_keys(evidence)[2]
    assert missing.severity == "error" and "missing" in missing.what
    assert "from the center" in missing.fix


# -- center unreachable --------------------------------------------------------------------


def test_an_unreachable_center_is_an_error_naming_the_endpoint(tmp_path, center):
    with zmq.Context.instance().socket(zmq.ROUTER) as probe:
        port = probe.bind_to_random_port("tcp://127.0.0.1")
    closed = f"tcp://127.0.0.1:{port}"  # closed again: nothing listens
    settings_file = unit_folder(tmp_path, center, endpoint=closed)
    evidence = load_edge_settings(settings_file).evidence.resolved(tmp_path)
    start = time.monotonic()
    (finding,) = check_centers(evidence, Limits(center_timeout_s=1.0))
    assert time.monotonic() - start < 3.0
    assert finding.severity == "error" and closed in finding.what
    assert "unreachable" in finding.what and "network" in finding.fix


def test_a_center_that_does_not_know_the_unit_refuses_its_key(tmp_path, center):
    settings_file = unit_folder(tmp_path, center)
    keys = tmp_path / "keys"
    for name in ("unit-1.key", "unit-1.key_secret"):
        (keys / name).unlink()
    make_keys(tmp_path / "other", "stranger", curve_only=True)
    for suffix in (".key", ".key_secret"):
        shutil.copy2(tmp_path / "other" / f"stranger{suffix}", keys / f"unit-1{suffix}")
    evidence = load_edge_settings(settings_file).evidence.resolved(tmp_path)
    (finding,) = check_centers(evidence, Limits(center_timeout_s=2.0))
    assert finding.severity == "error" and center["endpoint"] in finding.what
    assert "refused this unit's key" in finding.what and "enrol the unit" in finding.fix


# -- rule tables against the center's ------------------------------------------------------


def test_rule_tables_other_than_the_centers_are_found_with_the_fix(tmp_path, center,
                                                                   rules_copy):
    settings_file = unit_folder(tmp_path, center)
    same = load_edge_settings(settings_file)
    answers: dict = {}
    check_centers(same.evidence.resolved(tmp_path), Limits(center_timeout_s=2.0), answers)
    assert answers[center["endpoint"]].rules_digest == load_rules().digest
    (equal,) = check_rules(same, answers)
    assert equal.ok and "equal to the center's" in equal.what

    limits = rules_copy / "limits.yaml"
    text = limits.read_text(encoding="utf-8")
    limits.write_text(text.replace("limit_kg: 18000", "limit_kg: 18500", 1), encoding="utf-8")
    changed = same.model_copy(update={"rules": RulesSettings(folder=rules_copy)})
    (finding,) = check_rules(changed, answers)
    assert not finding.ok and finding.severity == "warning"
    assert center["endpoint"] in finding.what and load_rules().digest[:16] in finding.what
    assert finding.fix.startswith("the unit grades with other rule tables than the center: "
                                  "copy config/rules from the center")


def test_a_center_that_tells_no_digest_is_not_compared(tmp_path):
    settings = EdgeSettings()
    old = {"tcp://127.0.0.1:1": PingResult(0.01, True, True)}  # a pong of one frame
    (finding,) = check_rules(settings, old)
    assert finding.ok and "did not tell its digest" in finding.what
    (silent,) = check_rules(settings, {"tcp://127.0.0.1:1": PingResult(None, True)})
    assert silent.ok and "no center answered" in silent.what


# -- calibration ---------------------------------------------------------------------------


def test_an_expired_certificate_is_an_error_and_one_ending_soon_a_warning(tmp_path, center):
    today = china_today()
    expired = Certificate(number="JJG907-2025-0007", valid_from=today - timedelta(days=400),
                          valid_to=today - timedelta(days=3))
    settings_file = unit_folder(tmp_path, center, certificate=expired)
    settings = load_edge_settings(settings_file)
    (finding,) = check_calibration(settings, tmp_path, Limits(), today)
    assert finding.severity == "error" and "expired 3 days ago" in finding.what
    assert "JJG907-2025-0007" in finding.what and "not evidence" in finding.what
    assert "verified" in finding.fix
    ending = expired.model_copy(update={"valid_to": today + timedelta(days=12)})
    save_chain(Chain(device_id="unit-1", version="v2", certificate=ending),
               tmp_path / "chain.json")
    (soon,) = check_calibration(settings, tmp_path, Limits(), today)
    assert soon.severity == "warning" and "ends in 12 days" in soon.what


def test_no_certificate_or_no_chain_means_captures_are_not_evidence(tmp_path, center):
    settings = load_edge_settings(unit_folder(tmp_path, center))
    save_chain(Chain(device_id="unit-1", version="v1"), tmp_path / "chain.json")
    (bare,) = check_calibration(settings, tmp_path, Limits(), date.today())
    assert bare.severity == "error" and "no verification certificate" in bare.what
    assert "not evidence" in bare.what
    factors = settings.model_copy(update={"calibration_file": None})
    (none,) = check_calibration(factors, tmp_path, Limits(), date.today())
    assert none.severity == "error" and "not as evidence" in none.what


# -- outbox --------------------------------------------------------------------------------


def test_an_old_backlog_and_refused_packets_are_warnings(tmp_path, center):
    settings = load_edge_settings(unit_folder(tmp_path, center))
    evidence = settings.evidence.resolved(tmp_path)
    (empty,) = check_outbox(evidence, Limits(), time.time())
    assert empty.ok and "no outbox yet" in empty.what
    outbox = Outbox(evidence.outbox, load_signing_key(evidence.signing_key))
    for n in range(1, 4):
        outbox.put(draft("unit-1", n))
    outbox.mark_refused([1], "not in the registry")
    outbox.close()
    fresh, _ = check_outbox(evidence, Limits(), time.time())
    assert fresh.ok and "2 packets pending" in fresh.what
    later = datetime.now(UTC).timestamp() + 3 * 3600  # the same outbox, three hours on
    backlog, refused = check_outbox(evidence, Limits(), later)
    assert backlog.severity == "warning" and "the oldest 3.0 h old" in backlog.what
    assert refused.severity == "warning" and "not in the registry" in refused.what


def test_a_chain_applied_after_its_verification_is_an_error(tmp_path, center):
    settings = load_edge_settings(unit_folder(tmp_path, center))
    today = china_today()
    cert = Certificate(number="JJG907-2026-0042", valid_from=today - timedelta(days=30),
                       valid_to=today + timedelta(days=335))
    adjusted = datetime.now(UTC) - timedelta(days=2)
    save_chain(Chain(device_id="unit-1", version="v3", certificate=cert, applied_by="Li",
                     applied_at=adjusted), tmp_path / "chain.json")
    (finding,) = check_calibration(settings, tmp_path, Limits(), today)
    assert finding.severity == "error" and "adjusted after it was verified" in finding.what


# -- the digitiser's clock -----------------------------------------------------------------


def test_a_sending_digitiser_gets_its_clock_fitted(tmp_path):
    site = StripArray(lanes=1)
    twin = DigitiserTwin(site, generate_traffic(site, 20.0, seed=5), speed=1.0,
                         render_seed=5)
    settings = EdgeSettings.model_validate({"site": {"lanes": 1}, "devices": {
        "digitiser": {"kind": "serial", "protocol": "digitiser", "port": twin.start()}}})
    try:
        heard, _ = listen(settings, tmp_path, 2.0, Timebase(settings.time))
    finally:
        twin.stop()
    assert by_check(check_devices(settings, heard), "device digitiser").ok
    (fit,) = check_clock_fit(heard, Limits(fit_uncertainty_warn_ms=1e6))
    assert fit.ok and "digitiser clock fitted on" in fit.what and "ppm" in fit.what
    (strict,) = check_clock_fit(heard, Limits(fit_uncertainty_warn_ms=1e-6))
    assert strict.severity == "warning" and "looser than" in strict.what


def test_seconds_zero_leaves_the_devices_of_a_running_unit_alone(tmp_path, scale):
    settings = EdgeSettings.model_validate({"devices": {
        "scale": {"kind": "serial", "protocol": "xk3190", "port": scale}}})
    heard, setup = listen(settings, tmp_path, 0.0, Timebase(settings.time))
    (finding,) = setup + check_devices(settings, heard)
    assert finding.ok and "not opened" in finding.what
