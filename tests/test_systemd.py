"""systemd integration: ``sd_notify`` through real unix datagram sockets, the unit files of
``deploy/systemd/`` checked by ``systemd-analyze verify``, and real ``zhichao edge run`` and
``zhichao center run`` processes telling a socket that stands in for systemd that they are
ready, alive and stopping."""

import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from zhichao.cli import main
from zhichao.systemd import Notifier, notify_address, sd_notify, watchdog_interval

ROOT = Path(__file__).resolve().parents[1]
UNITS = ROOT / "deploy" / "systemd"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


class Manager:
    """The listening end of ``NOTIFY_SOCKET``, as systemd has it: an AF_UNIX datagram
    socket; each datagram one notification."""

    def __init__(self, address: str | bytes):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.received: list[str] = []

    def next(self, timeout_s: float) -> str | None:
        """The next datagram, or None if none comes within ``timeout_s``."""
        self.sock.settimeout(timeout_s)
        try:
            message = self.sock.recv(4096).decode()
        except TimeoutError:
            return None
        self.received.append(message)
        return message

    def wait_for(self, line: str, timeout_s: float) -> str:
        """The first datagram from now holding ``line`` as one of its lines."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            message = self.next(left)
            if message is not None and line in message.splitlines():
                return message
        raise AssertionError(f"no {line!r} within {timeout_s} s; got {self.received}")

    def pending(self) -> list[str]:
        """What was sent and not yet read, without waiting."""
        self.sock.setblocking(False)
        out = []
        try:
            while True:
                out.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            return out


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[tuple[Manager, str]]:
    """A socket bound at a path in tmp_path, and the NOTIFY_SOCKET value naming it."""
    path = tmp_path / "notify.sock"
    m = Manager(str(path))
    yield m, str(path)
    m.sock.close()


@pytest.fixture
def abstract_manager() -> Iterator[tuple[Manager, str]]:
    """A socket in the abstract namespace (no file), as systemd's own is named '@...'."""
    name = f"zhichao-test-{uuid.uuid4().hex}"
    m = Manager(b"\0" + name.encode())
    yield m, "@" + name
    m.sock.close()


# -- sd_notify ------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["manager", "abstract_manager"])
def test_each_notification_arrives_as_sent(which, request):
    m, address = request.getfixturevalue(which)
    env = {"NOTIFY_SOCKET": address}
    for message in ("READY=1", "WATCHDOG=1", "STATUS=12 vehicles weighed", "STOPPING=1"):
        assert sd_notify(message, env) is True
        assert m.next(5.0) == message


def test_the_abstract_name_is_addressed_with_a_nul_byte():
    assert notify_address({"NOTIFY_SOCKET": "@sd-notify"}) == b"\0sd-notify"
    assert notify_address({"NOTIFY_SOCKET": "/run/systemd/notify"}) == "/run/systemd/notify"
    assert notify_address({}) is None
    assert notify_address({"NOTIFY_SOCKET": ""}) is None


def test_without_notify_socket_nothing_is_sent_and_nothing_fails(manager):
    m, _ = manager
    assert sd_notify("READY=1", {}) is False
    n = Notifier(env={})
    assert not n.enabled and n.watchdog_s is None
    n.ready("up")
    n.status("still up")
    n.tick(lambda: pytest.fail("no status line is worked out outside systemd"))
    n.stopping()
    assert m.pending() == []


def test_a_socket_that_is_gone_is_logged_not_raised(tmp_path, caplog):
    env = {"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}
    with caplog.at_level(logging.WARNING, logger="zhichao.systemd"):
        assert sd_notify("READY=1", env) is False
        Notifier(env=env).ready()
    assert "cannot notify systemd" in caplog.text and "gone.sock" in caplog.text


def test_the_watchdog_is_petted_at_half_its_interval():
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000",
                              "WATCHDOG_PID": str(os.getpid())}) == 15.0
    # inherited from a parent the watchdog is meant for: not ours
    assert watchdog_interval({"WATCHDOG_USEC": "30000000",
                              "WATCHDOG_PID": str(os.getpid() + 1)}) is None
    for bad in ({}, {"WATCHDOG_USEC": ""}, {"WATCHDOG_USEC": "0"},
                {"WATCHDOG_USEC": "-5"}, {"WATCHDOG_USEC": "soon"}):
        assert watchdog_interval(bad) is None, bad


def test_tick_sends_watchdog_at_most_every_half_interval_and_status_when_due(manager):
    m, address = manager
    now = [100.0]
    n = Notifier(env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "4000000"},
                 clock=lambda: now[0], status_every_s=10.0)
    assert n.watchdog_s == 2.0
    n.ready("started\nwith a second line")
    assert m.next(5.0) == "READY=1\nSTATUS=started with a second line"
    asked = []

    def summary() -> str:
        asked.append(now[0])
        return f"at {now[0]:g}"

    for t in (100.0, 100.5, 101.9, 102.0, 103.0, 104.1, 110.0, 110.1):
        now[0] = t
        n.tick(summary)
    assert m.pending() == ["WATCHDOG=1",                    # 100: the first at once
                           "WATCHDOG=1",                    # 102: 2 s later
                           "WATCHDOG=1",                    # 104.1
                           "WATCHDOG=1", "STATUS=at 110"]   # 110: and the status is due
    assert asked == [110.0]
    n.stopping("flushing")
    assert m.next(5.0) == "STOPPING=1\nSTATUS=flushing"


# -- the unit files -------------------------------------------------------------------


def directives(path: Path) -> dict[str, list[str]]:
    """Every ``Key=value`` of a unit file (a key may repeat), comments left out."""
    out: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.mark.parametrize(("name", "state", "extra_groups"), [
    ("zhichao-edge", "/var/lib/zhichao-edge", "dialout"),
    ("zhichao-center", "/var/lib/zhichao-center", None)])
def test_unit_runs_as_its_own_user_with_a_watchdog_and_writes_one_folder(
        name, state, extra_groups):
    d = {k: v[-1] for k, v in directives(UNITS / f"{name}.service").items()}
    assert d["Type"] == "notify" and d["Restart"] == "on-failure"
    assert re.fullmatch(r"\d+s", d["WatchdogSec"]) and re.fullmatch(r"\d+s", d["RestartSec"])
    assert d["User"] == d["Group"] == "zhichao" and "DynamicUser" not in d
    assert (d["ProtectSystem"], d["ProtectHome"], d["PrivateTmp"], d["NoNewPrivileges"]) == (
        "strict", "yes", "yes", "yes")
    assert d["ReadWritePaths"] == state and d["StateDirectory"] == Path(state).name
    assert d["ConfigurationDirectory"] == Path(state).name
    assert d["StandardOutput"] == "journal"
    assert d["ExecStart"].startswith("/opt/zhichao/.venv/bin/zhichao ")
    assert f"--config /etc/{name}/" in d["ExecStart"]
    assert d["ExecReload"] == "/bin/kill -HUP $MAINPID"
    if extra_groups:
        assert extra_groups in d["SupplementaryGroups"].split()
    if name == "zhichao-edge":  # the command's default is a trial run of 60 s
        assert "--send" in d["ExecStart"] and "--seconds inf" in d["ExecStart"]


def verify(unit: Path) -> list[str]:
    """``systemd-analyze verify`` of one unit file: its lines about that file (the host's
    own units may have complaints of their own, which are not ours)."""
    done = subprocess.run([SYSTEMD_ANALYZE, "verify", str(unit)], capture_output=True,
                          text=True, timeout=120, check=False)
    return [line for line in (done.stdout + done.stderr).splitlines() if unit.name in line]


def runnable_copy(unit: Path, folder: Path) -> Path:
    """The unit with ExecStart's program replaced by one that exists here (verify insists
    that it does), its arguments kept."""
    text = unit.read_text(encoding="utf-8").replace(
        "ExecStart=/opt/zhichao/.venv/bin/zhichao ",
        f"ExecStart={Path(sys.executable).resolve()} ")
    copy = folder / unit.name
    copy.write_text(text, encoding="utf-8")
    return copy


needs_analyze = pytest.mark.skipif(SYSTEMD_ANALYZE is None,
                                   reason="systemd-analyze is not installed (Debian: systemd)")


@needs_analyze
@pytest.mark.parametrize("name", ["zhichao-edge", "zhichao-center"])
def test_systemd_analyze_verify_finds_nothing_wrong(name, tmp_path):
    complaints = verify(runnable_copy(UNITS / f"{name}.service", tmp_path))
    assert complaints == []


@needs_analyze
def test_systemd_analyze_verify_would_see_a_wrong_directive(tmp_path):
    """The check above can fail: a misspelt key and a bad value are named."""
    copy = runnable_copy(UNITS / "zhichao-edge.service", tmp_path)
    copy.write_text(copy.read_text(encoding="utf-8").replace(
        "Type=notify", "Type=notfy\nWatchdogSecs=30s"), encoding="utf-8")
    complaints = "\n".join(verify(copy))
    assert "WatchdogSecs" in complaints and "notfy" in complaints


# -- real processes -------------------------------------------------------------------


def start(args: list[str], cwd: Path, notify: str) -> subprocess.Popen:
    """``zhichao ARGS`` in a process of its own, under a stand-in for systemd: a watchdog
    of 2 s (petted every second)."""
    env = {**os.environ, "NOTIFY_SOCKET": notify, "WATCHDOG_USEC": "2000000"}
    env.pop("WATCHDOG_PID", None)
    return subprocess.Popen([sys.executable, "-m", "zhichao.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ready_alive_stopping(proc: subprocess.Popen, m: Manager) -> tuple[str, str]:
    """READY=1 (start-up on a busy machine: up to 90 s), two WATCHDOG=1 a second or so
    apart, then SIGTERM and STOPPING=1; the process ends by itself with status 0. Its
    READY datagram and its output."""
    try:
        ready = m.wait_for("READY=1", 90.0)
        m.wait_for("WATCHDOG=1", 10.0)
        first = time.monotonic()
        m.wait_for("WATCHDOG=1", 10.0)
        assert 0.5 <= time.monotonic() - first < 5.0
        proc.send_signal(signal.SIGTERM)
        m.wait_for("STOPPING=1", 30.0)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    return ready, out


def test_center_run_tells_systemd_ready_alive_and_stopping(tmp_path, manager, capsys):
    m, address = manager
    assert main(["keys", "new", "--name", "center", "--out", str(tmp_path / "keys"),
                 "--curve-only"]) == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "c.yaml").write_text(
        f"database: center.db\nreceiver:\n  listen: [tcp://127.0.0.1:{port}]\n"
        "  server_secret_key: keys/center.key_secret\n", encoding="utf-8")
    proc = start(["center", "run", "--config", "c.yaml"], tmp_path, address)
    ready, _ = ready_alive_stopping(proc, m)
    assert "STATUS=running cases, receiver; up 0 h 00 min" in ready.splitlines()


def test_edge_run_tells_systemd_ready_alive_and_stopping(tmp_path, manager):
    """The service's own way of running (``--seconds inf``): SIGTERM ends it as Ctrl-C
    does, with the run's closing counts."""
    m, address = manager
    (tmp_path / "edge.yaml").write_text(yaml.safe_dump({
        "device_id": "k1234", "plates": {"workers": 0},
        "devices": {"controller": {"kind": "serial", "protocol": "wim_records",
                                   "port": "loop://"}}}), encoding="utf-8")
    proc = start(["edge", "run", "--config", "edge.yaml", "--seconds", "inf"], tmp_path,
                 address)
    ready, out = ready_alive_stopping(proc, m)
    assert "STATUS=unit k1234: weighing" in ready.splitlines()
    assert "0 vehicles weighed" in out
