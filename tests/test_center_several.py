"""Several centers on one PostgreSQL database: two receivers (``center run --receive-only``)
and two processors (``center run --process-only``), each a process of its own on the same
database and image store, four roadside units sending to both receivers over real CURVE
sockets. One receiver and one processor are killed with SIGKILL mid-run and started again.
Every packet is stored once and captured once, every trip's case opened once, and the
counts equal the units' outboxes. The claims themselves (row locks, SKIP LOCKED) are
checked on two open transactions, and on the plates the center reads: a reading done
twice is stored once."""

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
import zmq.auth
from center_factory import REGISTRY_CSV, T0, center_engine, make_packet, store_packets
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from test_center_plates import Store, frame_jpeg, unread_packet

from center.cases import _capture_read, _claim, process_pending
from center.db import make_engine
from center.ingest import enrol_from_files
from center.ingest_models import StoredPacket
from center.law_models import AuditEntry, Capture, Case, CaseCapture
from center.registry import import_registry
from center.service import run_center
from center.settings import CenterSettings
from edge.outbox import Outbox
from edge.sender import Sender, SenderOptions
from evidence.keys import make_keys
from evidence.packet import Packet, decode_packet, image_ref
from evidence.signing import load_signing_key
from sim.evidence import fake_jpeg
from zhichao.errors import ConfigError

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent
UNITS = ("U1", "U2", "U3", "U4")
PER_UNIT = 160
"""Packets each unit weighs over the run."""
GROUP = 5
"""Packets per outbox transaction (one signal block)."""
PAUSE_S = 0.12
"""Between two blocks: a unit's packets come over about 4 s."""
TRIP_CAPTURES = 3
"""Captures of one plate in one trip, at three of the units, minutes apart."""
SENDING = SenderOptions(ack_timeout_s=0.5, resend_max_s=2.0, heartbeat_s=0.5,
                        failover_s=1.5, poll_ms=5)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped after the test."""
    server = os.environ.get("ZHICHAO_TEST_PG")
    if not server:
        pytest.skip("ZHICHAO_TEST_PG is not set: several centers share one PostgreSQL "
                    "database, and SQLite has one writer")
    name = f"zhichao_several_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://{server.rsplit('/', 1)[0].split('://', 1)[1]}/{name}"
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``condition`` until true; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout_s} s")
        time.sleep(0.05)


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def registry_csv() -> str:
    """The four units in the registry, each like D1 (in force on T0's day) under its own
    certificate number (the one :func:`center_factory.make_packet` writes)."""
    header, d1 = REGISTRY_CSV.splitlines()[:2]
    rows = [d1.replace("D1,", f"{u},", 1).replace("JD-2026-001", f"JD-{u}") for u in UNITS]
    return "\n".join([header, *rows]) + "\n"


@dataclass(frozen=True)
class Pass:
    """One vehicle a unit weighs: its plate, time and weight; ``trip`` names the trip
    (case) an evidential overload belongs to, None for a light record."""

    unit: str
    at_s: float
    plate: str
    gross_kg: float
    trip: str | None


def traffic() -> dict[str, list[Pass]]:
    """Each unit's passes in order: light records, single overloads (a case each), and
    trips of TRIP_CAPTURES overloads of one plate at different units minutes apart (one
    case); plate 浙A20000 makes two trips two days apart (two cases)."""
    passes: dict[str, list[Pass]] = {u: [] for u in UNITS}
    for n in range(PER_UNIT * len(UNITS)):
        unit = UNITS[n % len(UNITS)]
        k = n // len(UNITS)
        at_s = n * 7.0
        if n % 5:
            passes[unit].append(Pass(unit, at_s, f"浙B{10000 + n}", 30_000.0, None))
        elif n % 3:
            passes[unit].append(Pass(unit, at_s, f"浙C{10000 + n}", 55_400.0, f"one-{n}"))
        else:
            trip = n // 15  # the 1st, 2nd and 3rd such overloads of a stretch: one trip
            plate = "浙A20000" if trip in (0, 1) else f"浙A{20000 + trip}"
            day = 2 * 86_400.0 if trip == 1 else 0.0
            passes[unit].append(Pass(unit, day + trip * 600.0 + k, plate, 56_000.0 + k,
                                     f"trip-{trip}"))
    return passes


def draft(p: Pass, n: int) -> tuple[Packet, tuple[bytes, ...]]:
    """The unit's draft of a pass (sequence and chain set by the outbox): an overload
    with one real image, a light record without."""
    packet = make_packet(device_id=p.unit, captured_at=T0 + timedelta(seconds=p.at_s),
                         plate=p.plate, gross_kg=p.gross_kg, images=0)
    if p.trip is None:
        return packet.model_copy(update={"suspected_overload": False}), ()
    image = fake_jpeg(4_000, UNITS.index(p.unit) * 100_000 + n)  # each its own bytes
    return packet.model_copy(update={"images": [image_ref("front", image)]}), (image,)


def committed(path: Path) -> dict[int, str]:
    """Sequence → hash of every packet the outbox file has committed."""
    db = sqlite3.connect(path)
    try:
        return dict(db.execute("SELECT sequence, hash FROM packets").fetchall())
    finally:
        db.close()


class Centers:
    """Center processes started as systemd would start them: ``zhichao center run`` with a
    settings file, stdout and stderr into a log file each, up once it sends READY=1 to
    its own notification socket (an abstract one, ``NOTIFY_SOCKET=@name``)."""

    def __init__(self, tmp: Path, url: str) -> None:
        self.tmp, self.url = tmp, url
        self.procs: dict[str, subprocess.Popen] = {}
        self.notify: dict[str, socket.socket] = {}
        self.starts: Counter[str] = Counter()

    def config(self, name: str, port: int) -> Path:
        path = self.tmp / f"{name}.yaml"
        path.write_text(
            f"database: {self.url}\nimages_dir: {self.tmp / 'images'}\n"
            f"receiver:\n  listen: ['tcp://127.0.0.1:{port}']\n"
            f"  server_secret_key: {self.tmp / 'keys' / 'center.key_secret'}\n"
            f"  batch_wait_ms: 10\n  heartbeat_s: 1.0\n"
            f"law:\n  process_interval_s: 0.3\n", encoding="utf-8")
        return path

    def start(self, name: str, flag: str, port: int) -> None:
        """Start the process; :meth:`ready` waits for it."""
        self.starts[name] += 1
        address = f"zhichao-test-{uuid.uuid4().hex}"
        if name in self.notify:
            self.notify.pop(name).close()
        self.notify[name] = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify[name].bind(b"\0" + address.encode())
        log = (self.tmp / f"{name}.{self.starts[name]}.log").open("w")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "zhichao.cli", "center", "run", flag,
             "--config", str(self.config(name, port))],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp,
            env={**os.environ, "NOTIFY_SOCKET": f"@{address}"})
        log.close()

    def ready(self, name: str, timeout_s: float = 30.0) -> None:
        """Wait for the process's READY=1 (its threads started, SIGTERM handled)."""
        sock = self.notify[name]
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                if "READY=1" in sock.recv(4096).decode().splitlines():
                    return
            except TimeoutError:
                break
        pytest.fail(f"{name} not ready within {timeout_s} s: {self.log(name)[-2000:]}")

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def alive(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.poll() is None]

    def stop(self) -> dict[str, int | None]:
        """SIGTERM to each, then wait; their exit codes (SIGKILL after 15 s)."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        codes = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait(5)
        for sock in self.notify.values():
            sock.close()
        return codes

    def log(self, name: str) -> str:
        return "\n".join(p.read_text(encoding="utf-8", errors="replace")
                         for p in sorted(self.tmp.glob(f"{name}.*.log")))


class Unit:
    """A roadside unit: its outbox, filled a block at a time by a thread as the signal
    loop would (the first half of its passes, then the rest once ``more`` is set), and its
    sender, knowing both receivers (in its own order)."""

    def __init__(self, tmp: Path, name: str, passes: list[Pass], endpoints: list[str],
                 more: threading.Event) -> None:
        keys = tmp / "keys"
        self.path = tmp / f"{name}.outbox.db"
        self.box = Outbox(self.path, load_signing_key(keys / f"{name}.sign"))
        client_public, client_secret = zmq.auth.load_certificate(keys / f"{name}.key_secret")
        server_public, _ = zmq.auth.load_certificate(keys / "center.key")
        self.sender = Sender(self.box, endpoints, server_public=server_public,
                             client_public=client_public, client_secret=client_secret,
                             options=SENDING)
        self.passes, self.more = passes, more
        self.filler = threading.Thread(target=self._fill, daemon=True)

    def _fill(self) -> None:
        for first in range(0, len(self.passes), GROUP):
            if first == len(self.passes) // 2 and not self.more.wait(60):
                return
            self.box.put_many([draft(p, first + i)
                               for i, p in enumerate(self.passes[first:first + GROUP])])
            time.sleep(PAUSE_S)

    def start(self) -> None:
        self.sender.start()
        self.filler.start()

    def done(self) -> bool:
        counts = self.box.counts()
        return not self.filler.is_alive() and counts["pending"] == 0 and \
            counts["acked"] == len(self.passes)

    def close(self) -> None:
        self.sender.stop()
        self.filler.join(10)
        self.box.close()


def set_up(tmp: Path, url: str) -> None:
    """Keys of the center and the units, the units enrolled and in the registry."""
    keys = tmp / "keys"
    make_keys(keys, "center", curve_only=True)
    engine = center_engine(url)
    try:
        for unit in UNITS:
            make_keys(keys, unit)
            enrol_from_files(engine, unit, keys / f"{unit}.sign.pub", keys / f"{unit}.key")
        registry = tmp / "devices.csv"
        registry.write_text(registry_csv(), encoding="utf-8")
        with Session(engine) as session, session.begin():
            import_registry(session, registry)
    finally:
        engine.dispose()


def counted(engine: Engine) -> tuple[int, int]:
    """(stored packets, captures) now."""
    with Session(engine) as session:
        return (session.scalar(select(func.count()).select_from(StoredPacket)),
                session.scalar(select(func.count()).select_from(Capture)))


def test_two_receivers_two_processors_killed_and_restarted(tmp_path, pg_url):
    started = time.monotonic()
    set_up(tmp_path, pg_url)
    passes = traffic()
    total = sum(len(v) for v in passes.values())
    trips = {p.trip for v in passes.values() for p in v if p.trip}
    ports = {"rx1": free_port(), "rx2": free_port()}
    endpoints = [f"tcp://127.0.0.1:{ports['rx1']}", f"tcp://127.0.0.1:{ports['rx2']}"]
    centers = Centers(tmp_path, pg_url)
    units = []
    watch = make_engine(pg_url)
    try:
        for name in ("rx1", "rx2"):
            centers.start(name, "--receive-only", ports[name])
        for name in ("proc1", "proc2"):
            centers.start(name, "--process-only", free_port())
        for name in centers.procs:
            centers.ready(name)
        wait_for(lambda: all(listening(p) for p in ports.values()), 30, "receivers listening")
        # U1, U2 send to rx1 first, U3, U4 to rx2; each fails over to the other
        more = threading.Event()
        units = [Unit(tmp_path, u, passes[u], endpoints if i < 2 else endpoints[::-1],
                      more) for i, u in enumerate(UNITS)]
        for unit in units:
            unit.start()
        wait_for(lambda: counted(watch)[1] >= total // 8, 40,
                 "an eighth of the packets captured")
        killed_at = counted(watch)
        centers.kill("rx1")
        centers.kill("proc1")
        time.sleep(1.0)
        centers.start("rx1", "--receive-only", ports["rx1"])
        centers.start("proc1", "--process-only", free_port())
        centers.ready("rx1")
        centers.ready("proc1")
        wait_for(lambda: listening(ports["rx1"]), 30, "rx1 listening again")
        restarted_at = counted(watch)
        more.set()  # the second half of the traffic: for the restarted centers too
        wait_for(lambda: all(u.done() for u in units), 60, "every packet acknowledged")
        wait_for(lambda: counted(watch)[1] == total, 30, "every packet captured")
        assert sorted(centers.alive()) == ["proc1", "proc2", "rx1", "rx2"], \
            {n: centers.log(n)[-2000:] for n in centers.procs}
    finally:
        for unit in units:
            unit.close()
        codes = centers.stop()
        watch.dispose()
    assert set(codes.values()) == {0}, codes
    assert killed_at[1] < total, "the kill came after the work was done"
    failovers = sum(u.sender.status.failovers for u in units)
    assert failovers >= 1, "no unit failed over from the killed receiver"
    assert restarted_at[0] <= total // 2, "the second half came before the restart"
    again = (tmp_path / "proc1.2.log").read_text(encoding="utf-8")
    assert "processed" in again, f"the restarted processor took no packet: {again[-2000:]}"
    print(f"killed at {killed_at}, restarted at {restarted_at} (stored, captured) of "
          f"{total} packets; {failovers} failovers; {time.monotonic() - started:.1f} s")

    engine = center_engine(pg_url)
    try:
        with Session(engine) as session:
            stored = session.execute(select(StoredPacket.device_id, StoredPacket.sequence,
                                            StoredPacket.hash)).all()
            captures = session.execute(select(Capture.device_id, Capture.sequence,
                                              Capture.plate, Capture.evidential,
                                              Capture.over, Capture.checks)).all()
            linked = session.execute(select(Case.id, Case.plate, CaseCapture.capture_id,
                                            Capture.device_id, Capture.sequence).join(
                CaseCapture, CaseCapture.case_id == Case.id).join(
                Capture, Capture.id == CaseCapture.capture_id)).all()
            cases = session.execute(select(Case.id, Case.plate, Case.first_at,
                                           Case.last_at)).all()
            opened = session.scalars(select(AuditEntry.case_id).where(
                AuditEntry.action == "case_opened")).all()
    finally:
        engine.dispose()

    # every packet stored exactly once, and just those the outboxes committed
    per_key = Counter((d, q) for d, q, _ in stored)
    assert max(per_key.values()) == 1, [k for k, n in per_key.items() if n > 1]
    for name, unit in zip(UNITS, units, strict=True):
        in_box = committed(unit.path)
        assert len(in_box) == PER_UNIT and unit.box.counts()["acked"] == PER_UNIT
        assert {q: h for d, q, h in stored if d == name} == in_box, name
    assert len(stored) == total

    # every packet exactly one capture; every overload evidence (or the set-up is wrong)
    per_capture = Counter((d, q) for d, q, *_ in captures)
    assert set(per_capture) == set(per_key) and set(per_capture.values()) == {1}
    not_evidence = [[c["text"] for c in checks if not c["ok"]]
                    for _, _, _, evidential, over, checks in captures
                    if over and not evidential]
    assert not not_evidence, not_evidence[:3]
    assert sum(1 for c in captures if c.over) == sum(
        1 for v in passes.values() for p in v if p.trip)

    # every case opened once: one per trip, each with just its trip's captures
    trip_of = {(u, seq): p.trip for u in UNITS
               for seq, p in enumerate(passes[u], start=1) if p.trip}
    members: dict[int, set[str]] = {}
    for case_id, _, _, device, seq in linked:
        members.setdefault(case_id, set()).add(trip_of[(device, seq)])
    assert all(len(t) == 1 for t in members.values()), "a case joins two trips"
    case_trips = Counter(next(iter(t)) for t in members.values())
    assert set(case_trips) == trips and set(case_trips.values()) == {1}, \
        [t for t, n in case_trips.items() if n > 1]
    assert len(cases) == len(trips) and sorted(opened) == sorted(c.id for c in cases)
    assert len(linked) == len(trip_of)
    assert sum(1 for c in cases if c.plate == "浙A20000") == 2
    assert time.monotonic() - started < 110


def test_two_claims_take_disjoint_packets_and_never_wait(tmp_path, pg_url):
    engine = center_engine(pg_url)
    try:
        store_packets(engine, [make_packet(sequence=n, captured_at=T0 + timedelta(minutes=n))
                               for n in range(1, 11)])
        with Session(engine) as first, first.begin(), Session(engine) as second, \
                second.begin():
            mine = _claim(first, 6)
            t = time.monotonic()
            theirs = _claim(second, 6)
            again = _claim(second, 1, packet_id=mine[0].id)
            waited = time.monotonic() - t
        assert [r.sequence for r in mine] == [1, 2, 3, 4, 5, 6]
        assert [r.sequence for r in theirs] == [7, 8, 9, 10]
        assert again == [] and waited < 1.0
        with Session(engine) as session, session.begin():
            assert len(_claim(session, 20)) == 10  # the locks ended with the transactions
    finally:
        engine.dispose()


def test_a_center_that_neither_receives_nor_processes_is_refused(tmp_path):
    settings = CenterSettings(database=str(tmp_path / "center.db"))
    with pytest.raises(ConfigError, match="--receive-only and --process-only exclude"):
        run_center(settings, receive=False, process=False, seconds=0.1)
    assert not (tmp_path / "center.db").exists()  # refused before anything was opened


def test_a_plate_read_twice_is_stored_once_and_a_held_packet_is_passed_over(tmp_path,
                                                                             pg_url):
    """The reading path's claim: a packet another transaction holds is passed over (not
    waited for, nothing stored), and a second reading of a packet captured meanwhile
    stores nothing; two processors on a mixed backlog capture each packet once."""
    engine = center_engine(pg_url)
    try:
        registry = tmp_path / "devices.csv"
        registry.write_text(REGISTRY_CSV, encoding="utf-8")
        with Session(engine) as session, session.begin():
            import_registry(session, registry)
        settings = CenterSettings(database=pg_url, images_dir=tmp_path / "images")
        store = Store(settings.images_dir)
        images = [store.put("front", frame_jpeg("浙A12345"))]
        store_packets(engine, [unread_packet(n, images) for n in (1, 2, 3, 4)]
                      + [make_packet(sequence=n, captured_at=T0 + timedelta(minutes=n))
                         for n in (5, 6, 7, 8)])
        with Session(engine) as session:
            first = session.execute(select(StoredPacket.id, StoredPacket.meta).where(
                StoredPacket.sequence == 1)).one()
        item = (first.id, decode_packet(bytes(first.meta)))
        with Session(engine) as holder, holder.begin():
            assert [r.sequence for r in _claim(holder, 1, packet_id=first.id)] == [1]
            t = time.monotonic()
            assert _capture_read(engine, settings, item) == 0  # held: passed over
            assert time.monotonic() - t < 30
        assert _capture_read(engine, settings, item) == 1
        assert _capture_read(engine, settings, item) == 0  # read again, stored once

        done: list[int] = []
        engines = [make_engine(pg_url) for _ in range(2)]  # a processor each
        workers = [threading.Thread(target=lambda e=e: done.append(
            process_pending(e, settings, batch=3))) for e in engines]
        for w in workers:
            w.start()
        for w in workers:
            w.join(120)
        for e in engines:
            e.dispose()
        assert len(done) == 2 and sum(done) == 7, done  # packets 2 to 8, each by one
        with Session(engine) as session:
            keys = session.scalars(select(Capture.sequence)).all()
            cases = session.scalars(select(Case.plate)).all()
        assert sorted(keys) == list(range(1, 9))
        assert cases == ["浙A12345"]  # one trip, one case
    finally:
        engine.dispose()
