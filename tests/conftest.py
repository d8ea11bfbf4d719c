"""Shared fixtures. Keep each one small; several layers add theirs here."""

import faulthandler
import multiprocessing
import os
import shutil
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from overload import RuleBook, load_rules
from zhichao.resources import rules_dir


@pytest.fixture(scope="session")
def rules() -> RuleBook:
    """The shipped rule tables, loaded once."""
    return load_rules()


@pytest.fixture
def rules_copy(tmp_path: Path) -> Path:
    """A writable copy of the shipped rules folder, for tests that change one value."""
    folder = tmp_path / "rules"
    shutil.copytree(rules_dir(), folder)
    return folder


def _pg_server() -> str | None:
    """The PostgreSQL server URL the tests may use (ZHICHAO_TEST_PG), or None."""
    return os.environ.get("ZHICHAO_TEST_PG") or None


@pytest.fixture(params=["sqlite", "postgresql"])
def center_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new, empty center database: a SQLite file, and a fresh PostgreSQL database when
    ZHICHAO_TEST_PG names a server (e.g. postgresql://postgres@127.0.0.1:5432/postgres)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'center.db'}"
        return
    server = _pg_server()
    if server is None:
        pytest.skip("ZHICHAO_TEST_PG is not set: no PostgreSQL server to test against")
    name = f"zhichao_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = server.rsplit("/", 1)[0]
    try:
        yield f"postgresql+psycopg://{base.split('://', 1)[1]}/{name}"
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# How long the test process may take to exit once the last test has run. A thread or
# child process a test left behind would otherwise hold the process open until CI's
# own limit; instead every thread's stack is printed and the process ends with status 1.
EXIT_BOUND_S = 120


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Name what the tests left running, then bound the time the exit may take."""
    threads = [t for t in threading.enumerate()
               if t is not threading.main_thread() and t.is_alive() and not t.daemon]
    children = multiprocessing.active_children()
    if threads or children:
        print(f"\nleft running after the tests: threads {[t.name for t in threads]}, "
              f"child processes {[p.name for p in children]}", file=sys.stderr)
    faulthandler.dump_traceback_later(EXIT_BOUND_S, exit=True)
