"""Reload of a running unit (SIGHUP): a real ``zhichao edge run --send`` process weighing
the records of a simulated WIM controller on a pseudo-terminal, told to reload by
signal while it weighs. New rule tables and live options take effect, an option that
needs a restart is named and kept, a broken file is refused with the option named, and
no packet is lost: the sequences go on without a gap."""

import json
import logging
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

import overload
from drivers.strips import StripArray
from edge.reload import changed_options, is_live, merged
from edge.screening import screen
from edge.settings import EdgeSettings, load_edge_settings
from edge.unit import RoadsideUnit
from evidence.keys import make_keys
from evidence.signing import SignedPacket, load_signing_key, verify
from sim.serial_twins import WimControllerTwin
from sim.traffic import generate_traffic
from tests.test_systemd import Manager
from zhichao.resources import config_dir


class Output:
    """The lines of one pipe of a process, read by a thread as they come."""

    def __init__(self, pipe: object) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: object) -> None:
        for line in pipe:  # type: ignore[attr-defined]
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def snapshot(self) -> list[str]:
        with self._lock:
            return list(self.lines)

    def wait(self, ok: object, timeout_s: float, what: str) -> list[str]:
        """The lines once ``ok(lines)`` holds; AssertionError after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            lines = self.snapshot()
            if ok(lines):  # type: ignore[operator]
                return lines
            time.sleep(0.1)
        raise AssertionError(f"{what} not within {timeout_s} s; got {self.snapshot()[-20:]}")


def vehicles(lines: list[str]) -> list[dict]:
    return [v for v in map(json.loads, lines) if "summary" not in v]


def lower_limits(folder: Path, by_kg: int) -> None:
    """The site's own tables: every total-mass limit ``by_kg`` lower."""
    path = folder / "limits.yaml"
    path.write_text(re.sub(r"limit_kg: (\d+)", lambda m: f"limit_kg: {int(m[1]) - by_kg}",
                           path.read_text(encoding="utf-8")), encoding="utf-8")


def settings_text(port: str, rules: Path, site: str, endpoint: str) -> str:
    return yaml.safe_dump({
        "device_id": "unit-7", "site": {"lanes": 2}, "plates": {"workers": 0},
        "rules": {"folder": str(rules)},
        "evidence": {"site": site, "outbox": "outbox.db", "signing_key": "keys/unit.sign",
                     "curve_secret_key": "keys/unit.key_secret",
                     "center_public_key": "keys/center.key", "endpoints": [endpoint]},
        "devices": {"controller": {"kind": "serial", "protocol": "wim_records",
                                   "port": port}}})


def packet_sites(outbox: Path, key_file: Path) -> dict[int, str]:
    """Sequence → the site each stored packet names, every packet verified."""
    public = load_signing_key(key_file).public_key()
    with sqlite3.connect(outbox) as db:
        rows = db.execute("SELECT sequence, meta, signature FROM packets").fetchall()
    return {seq: verify(SignedPacket(meta, sig, ()), public).site for seq, meta, sig in rows}


def test_live_and_restart_options_are_told_apart():
    old = EdgeSettings()
    new = EdgeSettings(unit={"frame_wait_s": 1.5}, evidence={
        "site": "G60", "endpoints": ["tcp://127.0.0.1:5999"]}, site={"lanes": 2})
    changed = changed_options(old, new)
    assert changed == ["evidence.endpoints", "evidence.site", "site.lanes",
                       "unit.frame_wait_s"]
    assert [o for o in changed if is_live(o)] == ["evidence.site", "unit.frame_wait_s"]
    after = merged(old, new, ["evidence.site", "unit.frame_wait_s"])
    assert after.unit.frame_wait_s == 1.5 and after.evidence.site == "G60"
    assert after.evidence.endpoints == old.evidence.endpoints and after.site.lanes == 4


def test_a_reload_keeps_the_unit_s_parts_and_applies_only_live_options(tmp_path, caplog):
    """In-process, on the real objects: the signal loop, the devices, the outbox and the
    sender are the same after a reload; live options are in force at once; an option
    that needs a restart keeps its old value; a broken file changes nothing."""
    make_keys(tmp_path / "keys", "center", curve_only=True)
    make_keys(tmp_path / "keys", "unit")
    config = tmp_path / "edge.yaml"
    config.write_text(settings_text("loop://", config_dir() / "rules", "G60 K1",
                                    "tcp://127.0.0.1:9"))
    unit = RoadsideUnit(load_edge_settings(config), tmp_path, send=True,
                        settings_file=config)
    parts = (unit.loop, unit.devices["controller"], unit.link, unit.link.outbox,
             unit.link.sender, unit.plates, unit.timebase)
    try:
        data = yaml.safe_load(config.read_text())
        data["unit"] = {"frame_wait_s": 1.25}
        data["evidence"].update(keep_light_days=2.0, direction="west")
        data["devices"]["controller"]["port"] = "loop://?other"
        data["signal"] = {"hi_counts": 300}
        config.write_text(yaml.safe_dump(data))
        with caplog.at_level(logging.INFO, "edge.reload"):
            done = unit.reload()
        assert done.ok and done.applied == ["evidence.direction", "evidence.keep_light_days",
                                            "unit.frame_wait_s"]
        assert done.restart == ["devices.controller.port", "signal.hi_counts"]
        assert "needs a restart: devices.controller.port" in caplog.text
        assert (unit.loop, unit.devices["controller"], unit.link, unit.link.outbox,
                unit.link.sender, unit.plates, unit.timebase) == parts
        assert unit.settings.unit.frame_wait_s == 1.25
        assert unit.link.outbox.keep_light_days == 2.0 and unit.link.evidence.direction == "west"
        assert unit.settings.devices["controller"]["port"] == "loop://"
        assert unit.loop.settings.hi_counts == unit.settings.signal.hi_counts != 300
        config.write_text(config.read_text().replace("keep_light_days: 2.0",
                                                     "keep_light_days: 9000"))
        refused = unit.reload()
        assert not refused.ok and "evidence.keep_light_days" in refused.error
        assert unit.link.outbox.keep_light_days == 2.0 and unit.reloads == 2
    finally:
        unit.stop(wait_s=0.0)


@pytest.mark.timeout(240)
def test_sighup_reloads_rules_and_live_options_and_refuses_a_broken_file(tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(config_dir() / "rules", rules)
    make_keys(tmp_path / "keys", "center", curve_only=True)
    make_keys(tmp_path / "keys", "unit")
    site = StripArray(lanes=2)
    twin = WimControllerTwin(site, generate_traffic(site, 600.0, seed=3), speed=5.0)
    port = twin.start(hold=True)
    config = tmp_path / "edge.yaml"
    config.write_text(settings_text(port, rules, "G60 K1", "tcp://127.0.0.1:9"))
    notify = tmp_path / "notify.sock"
    m = Manager(str(notify))
    env = {**os.environ, "NOTIFY_SOCKET": str(notify)}
    env.pop("WATCHDOG_USEC", None)
    proc = subprocess.Popen([sys.executable, "-m", "zhichao.cli", "edge", "run", "--config",
                             str(config), "--seconds", "inf", "--json", "--send"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    out, err = Output(proc.stdout), Output(proc.stderr)
    try:
        m.wait_for("READY=1", 90.0)
        twin.release()
        before = vehicles(out.wait(lambda lines: len(lines) >= 4, 60.0, "4 vehicles"))
        old_rules = overload.load_rules(rules)

        # rule tables and live options changed, and one option that needs a restart
        lower_limits(rules, 1000)
        config.write_text(settings_text(port, rules, "G60 K2", "tcp://127.0.0.1:10"))
        proc.send_signal(signal.SIGHUP)
        m.wait_for("RELOADING=1", 20.0)
        ready = m.wait_for("READY=1", 20.0)
        assert "STATUS=unit unit-7: weighing (reload 1: applied)" in ready.splitlines()
        time.sleep(0.3)  # lines of vehicles committed before the reload: read by now
        n_reload = len(out.snapshot())
        new_rules = overload.load_rules(rules)
        assert new_rules.digest != old_rules.digest
        lines = err.wait(lambda s: any("reloaded" in x for x in s), 10.0, "reload logged")
        assert any("needs a restart: evidence.endpoints" in x for x in lines)
        assert any(f"digest {old_rules.digest} -> {new_rules.digest}" in x for x in lines)
        after = vehicles(out.wait(lambda s: len(s) >= n_reload + 4, 60.0, "4 more"))[n_reload:]

        # a broken file: refused, the option named, the unit goes on as it was
        config.write_text(config.read_text().replace("workers: 0", "workers: 0\n"
                                                     "unit:\n  frame_wait_s: -1"))
        proc.send_signal(signal.SIGHUP)
        m.wait_for("RELOADING=1", 20.0)
        ready = m.wait_for("READY=1", 20.0)
        assert "STATUS=unit unit-7: weighing (reload 2: refused, old settings kept)" \
            in ready.splitlines()
        lines = err.wait(lambda s: any("reload refused" in x for x in s), 10.0, "refusal")
        refusal = next(x for x in lines if "reload refused" in x)
        assert str(config) in refusal and "frame_wait_s" in refusal
        time.sleep(0.3)
        n_broken = len(out.snapshot())
        later = vehicles(out.wait(lambda s: len(s) >= n_broken + 3, 60.0, "3 more"))[n_broken:]
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        twin.stop()
        m.sock.close()
    assert proc.returncode == 0, "\n".join(err.snapshot())
    *weighed, summary = map(json.loads, out.snapshot())
    assert summary["summary"]["weighed"] == len(weighed)

    # screened with the tables in force when weighed: old, then the lowered ones to the end
    def limit(v: dict, book: overload.RuleBook) -> float | None:
        return screen(v, book)["limit_kg"]

    assert all(v["limit_kg"] == limit(v, old_rules) for v in before)
    graded = [v for v in after + later if v["limit_kg"] is not None]
    assert graded and all(v["limit_kg"] == limit(v, new_rules) == limit(v, old_rules) - 1000
                          for v in graded)

    # no packet lost: every vehicle committed with the next sequence, each one stored
    sequences = [v["sequence"] for v in weighed]
    assert sequences == list(range(1, len(weighed) + 1))
    sites = packet_sites(tmp_path / "outbox.db", tmp_path / "keys" / "unit.sign")
    assert sorted(sites) == sequences
    assert {sites[v["sequence"]] for v in before} == {"G60 K1"}
    assert {sites[v["sequence"]] for v in after + later} == {"G60 K2"}
