"""Staff log-in on the real app (SQLite and PostgreSQL): argon2 hashes, sessions kept by
the center, the cookie's flags, CSRF, the security headers of every response, and the
password command."""

import contextlib
import http.client
import io
import json
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from web_factory import PASSWORD, log_in, web_center

from center.staff import import_staff
from center.web import auth
from center.web_models import StaffPassword, WebSession
from zhichao.cli import main


@pytest.fixture
def web(center_db_url, tmp_path):
    w = web_center(center_db_url, tmp_path)
    yield w
    w.engine.dispose()


def sessions(web) -> int:
    with Session(web.engine) as s:
        return s.scalar(select(func.count()).select_from(WebSession))


def test_a_wrong_password_and_an_unknown_officer_get_the_same_answer(web):
    answers = []
    for officer, password in (("ZF001", "not the password"), ("NOBODY", PASSWORD),
                              ("ADM01", ""), ("x" * 40, PASSWORD)):
        r = web.client.post("/staff/login", data={"officer_id": officer,
                                                  "password": password})
        answers.append((r.status_code, "officer id or password not accepted" in r.text))
    assert answers[:2] == [(401, True), (401, True)]
    assert all(code in (401, 422) for code, _ in answers) and sessions(web) == 0


def test_the_stored_password_is_an_argon2_hash_and_the_cookie_is_http_only(web):
    with Session(web.engine) as s:
        stored = s.get(StaffPassword, "ZF001").hash
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    r = web.client.post("/staff/login", data={"officer_id": "ZF001", "password": PASSWORD},
                        follow_redirects=False)
    cookie = r.headers["set-cookie"]
    assert r.status_code == 303 and r.headers["location"] == "/staff"
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    token = re.search(r"zhichao_session=([^;]+)", cookie).group(1)
    with Session(web.engine) as s:
        assert s.get(WebSession, token) is None  # the table keeps its hash only
        assert sessions(web) == 1


def test_log_out_needs_the_session_csrf_token_and_ends_the_session(web):
    csrf = log_in(web.client, "ZF001")
    assert web.client.post("/staff/logout", data={"csrf": "forged"}).status_code == 403
    assert sessions(web) == 1 and web.client.get("/staff.json").status_code == 200
    r = web.client.post("/staff/logout", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and sessions(web) == 0
    assert web.client.get("/staff.json").status_code == 401


def test_anonymous_goes_to_the_log_in_page_and_comes_back(web):
    r = web.client.get("/staff", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/staff/login?next=/staff"
    assert web.client.get("/staff.json").status_code == 401
    page = web.client.get("/staff/login?next=https://evil.example/")
    assert 'value="/staff"' in page.text  # no redirect off the site


def test_an_officer_made_inactive_is_out_at_once(web, tmp_path):
    log_in(web.client, "ZF002")
    staff = tmp_path / "staff2.csv"
    staff.write_text("officer_id,name,credential_number,roles,active,valid_from,valid_to\n"
                     "ZF002,李四,浙33010012346,reviewer,false,2026-01-01,2028-12-31\n",
                     encoding="utf-8")
    with Session(web.engine) as s, s.begin():
        import_staff(s, staff)
    assert web.client.get("/staff.json").status_code == 401


def test_every_response_carries_the_security_headers(web):
    for path in ("/", "/devices", "/devices.json", "/staff/login", "/static/app.css"):
        headers = web.client.get(path).headers
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp, path
        assert "frame-ancestors 'none'" in csp and headers["x-content-type-options"] == \
            "nosniff", path


def test_the_password_command_reads_standard_input(web, monkeypatch, capsys):
    config = web.folder / "center.yaml"
    config.write_text(f"database: {web.settings.database}\n", encoding="utf-8")
    monkeypatch.setattr("sys.stdin", io.StringIO("a new long password\n"))
    assert main(["center", "staff", "password", "ZF001", "--config", str(config)]) == 0
    assert "password of ZF001 set" in capsys.readouterr().out
    r = web.client.post("/staff/login", data={"officer_id": "ZF001",
                                              "password": "a new long password"},
                        follow_redirects=False)
    assert r.status_code == 303
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["center", "staff", "password", "ZF001", "--config", str(config)]) == 2
    assert f"{auth.PASSWORD_MIN} to {auth.PASSWORD_MAX} characters" in capsys.readouterr().err


def test_center_web_serves_until_ctrl_c_and_stops_without_a_traceback(tmp_path):
    """`zhichao center web` in its own process: it says where its pages are only once they
    answer (the first request after the line is served), and SIGINT stops it with status
    0 and no traceback."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "center.yaml"
    config.write_text(f"database: center.db\nweb:\n  port: {port}\n", encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "zhichao.cli", "center", "web",
                             "--config", str(config)], stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stderr], daemon=True).start()
    seen = []
    try:
        deadline = time.monotonic() + 60
        while not any("center pages on" in x for x in seen):
            assert proc.poll() is None and time.monotonic() < deadline, seen
            with contextlib.suppress(queue.Empty):
                seen.append(lines.get(timeout=0.5))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:  # no proxy on the way: a direct connection on the loopback
            conn.request("GET", "/devices.json")
            assert json.load(conn.getresponse()) == {"devices": []}
        finally:
            conn.close()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
        time.sleep(0.2)  # the reader thread takes the last lines
        err = "".join(seen) + "".join(iter_queue(lines))
    finally:
        proc.kill()
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert "stopped serving the pages" in err


def iter_queue(q: "queue.Queue[str]") -> list[str]:
    """What the queue holds now."""
    out = []
    with contextlib.suppress(queue.Empty):
        while True:
            out.append(q.get_nowait())
    return out
