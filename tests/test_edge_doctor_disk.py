"""The edge doctor on an outbox whose disk fills, on real small tmpfs file systems: the
disk's room against the outbox's own reserve, and — from a real ``zhichao edge run
--send`` process's metrics page — the light records it dropped, the evidence it holds
and its disk-full alarm, raised and then cleared once room returns."""

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from drivers.strips import StripArray
from edge.doctor import Limits, check_outbox_disk
from edge.outbox import RESERVE_BYTES
from edge.settings import EdgeSettings
from evidence.keys import make_keys
from sim.serial_twins import WimControllerTwin
from sim.traffic import generate_traffic
from tests.small_disks import fill, tmpfs
from zhichao.cli import main

MIB = 2**20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_outbox_disk_is_nearly_full_then_full_by_the_outbox_s_own_reserve(tmp_path):
    with tmpfs(tmp_path / "data", "96m") as data:
        evidence = EdgeSettings.model_validate(
            {"evidence": {"outbox": str(data / "outbox.db"), "keep_light_days": 3}}).evidence
        (roomy,) = check_outbox_disk(evidence, None, Limits(), shutil.disk_usage)
        assert roomy.ok and "room for new packets" in roomy.what
        fill(data, 40 / 96)
        (nearly,) = check_outbox_disk(evidence, None, Limits(), shutil.disk_usage)
        assert nearly.severity == "warning" and "nearly full" in nearly.what
        fill(data, 1 / 96)
        free = shutil.disk_usage(data).free
        assert free < RESERVE_BYTES
        (full,) = check_outbox_disk(evidence, None, Limits(), shutil.disk_usage)
        assert not full.ok and full.severity == "error" and str(data) in full.what
        assert f"{free / MIB:.1f} MiB free" in full.what and "drops the light records" in \
            full.what
        assert "never the outbox file" in full.fix and "keep_light_days (now 3)" in full.fix
        assert "do not restart" in full.fix


def test_a_metrics_page_that_does_not_answer_is_said_not_guessed(tmp_path):
    evidence = EdgeSettings.model_validate(
        {"evidence": {"outbox": str(tmp_path / "outbox.db")}}).evidence
    room, running = check_outbox_disk(evidence, f"127.0.0.1:{free_port()}",
                                      Limits(metrics_timeout_s=0.5), shutil.disk_usage)
    assert room.ok and running.ok and "not known" in running.what


class Lines:
    """JSON lines of a process's stdout, read by a thread as they come."""

    def __init__(self, pipe: object) -> None:
        self.items: list[dict] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read, args=(pipe,), daemon=True).start()

    def _read(self, pipe: object) -> None:
        for line in pipe:  # type: ignore[attr-defined]
            with self._lock:
                self.items.append(json.loads(line))

    def wait(self, ok: object, timeout_s: float, what: str) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                items = list(self.items)
            if ok(items):  # type: ignore[operator]
                return items
            time.sleep(0.1)
        raise AssertionError(f"{what}: not within {timeout_s} s ({len(self.items)} lines)")


def doctor(config: Path, capsys: pytest.CaptureFixture) -> dict[str, dict]:
    """``zhichao edge doctor --seconds 0 --json`` (the unit left running); its outbox
    findings by check."""
    capsys.readouterr()
    main(["edge", "doctor", "--config", str(config), "--seconds", "0", "--json"])
    found = json.loads(capsys.readouterr().out)["findings"]
    return {f["check"]: f for f in found if f["check"].startswith("outbox disk")}


@pytest.mark.timeout(240)
def test_the_doctor_reports_what_a_running_unit_dropped_when_its_disk_filled(
        tmp_path, capsys):
    make_keys(tmp_path / "keys", "center", curve_only=True)
    make_keys(tmp_path / "keys", "unit")
    site = StripArray(lanes=2)
    twin = WimControllerTwin(site, generate_traffic(site, 900.0, seed=5), speed=8.0)
    port = twin.start(hold=True)
    with tmpfs(tmp_path / "data", "96m") as data:
        config = tmp_path / "edge.yaml"
        config.write_text(yaml.safe_dump({
            "device_id": "unit-9", "site": {"lanes": 2}, "plates": {"workers": 0},
            "unit": {"metrics_address": f"127.0.0.1:{free_port()}"},
            "evidence": {"outbox": str(data / "outbox.db"), "signing_key": "keys/unit.sign",
                         "curve_secret_key": "keys/unit.key_secret",
                         "center_public_key": "keys/center.key",
                         "endpoints": [f"tcp://127.0.0.1:{free_port()}"]},
            "devices": {"controller": {"kind": "serial", "protocol": "wim_records",
                                       "port": port}}}))
        log = (tmp_path / "edge.log").open("w")
        proc = subprocess.Popen([sys.executable, "-m", "zhichao.cli", "edge", "run",
                                 "--config", str(config), "--seconds", "inf", "--json",
                                 "--send"], cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=log, text=True)
        out = Lines(proc.stdout)
        try:
            twin.release()
            out.wait(lambda v: sum(x.get("sequence") is not None for x in v) >= 3, 90.0,
                     "three packets stored")
            fill(data, 1 / 96)  # below the outbox's 4 MiB reserve
            out.wait(lambda v: sum(x.get("sequence") is None for x in v) >= 2, 60.0,
                     "light records dropped")
            full = doctor(config, capsys)
            (data / "ballast").unlink()  # room again: the next put clears the alarm
            n = len(out.items)
            out.wait(lambda v: any(x.get("sequence") is not None for x in v[n:]), 60.0,
                     "a packet stored again")
            cleared = doctor(config, capsys)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                twin.stop()
                log.close()
    assert proc.returncode == 0, (tmp_path / "edge.log").read_text()
    room, policy = full["outbox disk"], full["outbox disk policy"]
    assert room["severity"] == "error" and "the outbox's disk is full" in room["what"]
    assert policy["severity"] == "error" and not policy["ok"]
    assert "disk-full alarm is raised" in policy["what"] and "make room on" in policy["fix"]
    dropped = int(policy["what"].split("dropped ")[1].split()[0])
    assert dropped >= 1  # a pass printed without a sequence may be evidence held, not dropped
    room, policy = cleared["outbox disk"], cleared["outbox disk policy"]
    assert room["ok"] and policy["severity"] == "warning"
    assert "disk-full alarm is cleared" in policy["what"] and "holds 0 packets" in \
        policy["what"] and "lost 0" in policy["what"]
    assert int(policy["what"].split("dropped ")[1].split()[0]) >= dropped
    assert "keep_light_days" in policy["fix"]
