"""The edge outbox: chained and signed on commit, durable across kill -9, pruned after
acknowledgement, and loud (never silent) when its disk is full."""

import json
import logging
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edge.outbox import SCHEMA_VERSION, Outbox, OutboxError, upgrade
from evidence.packet import GENESIS_HASH
from evidence.signing import new_signing_key, verify, write_signing_key
from sim.evidence import draft, fake_jpeg

KEY = new_signing_key()
EDGE_PROC = Path(__file__).resolve().parent / "fault_edge.py"


def images(n: int, size: int = 20_000) -> tuple[bytes, ...]:
    return tuple(fake_jpeg(size, n * 3 + j) for j in range(3))


def check_chain(path: Path, key=KEY) -> list[int]:
    """Every stored packet verifies, is complete and chains to the one before; returns
    the sequences."""
    outbox = Outbox(path, key)
    db = sqlite3.connect(path)
    seqs = [r[0] for r in db.execute("SELECT sequence FROM packets ORDER BY sequence")]
    db.execute("UPDATE packets SET state = 'pending'")  # a read-only look at everything
    db.rollback()
    prev = GENESIS_HASH
    for seq, signed in outbox.get(seqs):
        packet = verify(signed, key.public_key())
        assert (packet.sequence, packet.previous_hash) == (seq, prev)
        prev = signed.hash
    assert seqs == list(range(1, len(seqs) + 1))
    last = db.execute("SELECT sequence, hash FROM chain").fetchone()
    assert last == ((seqs[-1], prev) if seqs else None)
    outbox.close()
    return seqs


def test_put_chains_signs_and_survives_reopening(tmp_path):
    box = Outbox(tmp_path / "o.db", KEY)
    assert box.put(draft(n=1)) == 1
    assert box.put(draft(n=2, suspected=True, images=images(2)), images(2)) == 2
    assert box.put_many([(draft(n=3), ()), (draft(n=4), ())]) == [3, 4]
    box.close()
    box = Outbox(tmp_path / "o.db", KEY)
    assert box.put(draft(n=5)) == 5
    pending = box.pending(10)
    assert [s for s, _ in pending] == [1, 2, 3, 4, 5]
    assert pending[1][1].images == images(2) and pending[0][1].images == ()
    assert check_chain(tmp_path / "o.db") == [1, 2, 3, 4, 5]
    assert box.counts()["pending"] == 5


def test_a_thread_that_never_wrote_before_can_put(tmp_path):
    """Its first write opens its own connection while the put holds the outbox's lock:
    that must not wait on the same lock (it hung)."""
    box = Outbox(tmp_path / "o.db", KEY)
    done: list[int] = []
    writer = threading.Thread(target=lambda: done.append(box.put(draft(n=1))), daemon=True)
    writer.start()
    writer.join(10.0)
    assert not writer.is_alive(), "a put from a new thread hung"
    assert done == [1] and box.counts()["pending"] == 1
    box.close()


def test_a_light_record_carries_no_images(tmp_path):
    box = Outbox(tmp_path / "o.db", KEY)
    with pytest.raises(OutboxError, match="light record"):
        box.put(draft(n=1, images=images(1)), images(1))
    with pytest.raises(OutboxError, match="image 1"):
        box.put(draft(n=1, suspected=True, images=images(1)), images(2))
    assert box.counts()["last_sequence"] == 0 and box.held == type(box.held)()


def test_acked_packets_are_kept_then_pruned_refused_ones_stay(tmp_path):
    box = Outbox(tmp_path / "o.db", KEY)
    box.put_many([(draft(n=n, suspected=True, images=images(n)), images(n))
                  for n in range(1, 6)])
    assert box.mark_acked([1, 2, 3]) == 3
    assert box.mark_acked([3]) == 0  # already done
    box.mark_refused([4], "signature: test")
    assert [s for s, _ in box.pending(10)] == [5]
    assert box.prune() == 0  # kept keep_days
    assert box.prune(now=time.time() + 8 * 86_400) == 3
    db = sqlite3.connect(tmp_path / "o.db")
    assert db.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 6  # 4 and 5 left
    assert db.execute("SELECT reason FROM packets WHERE sequence = 4").fetchone()[0] == \
        "signature: test"
    assert box.counts() | {} == {"pending": 1, "acked": 0, "refused": 1, "last_sequence": 5,
                                 "held": 0, "lost": 0, "light_dropped": 0,
                                 "pruned_light": 0, "pruned_evidence": 3, "disk_full": 0}
    assert box.put(draft(n=6)) == 6  # the chain goes on after pruning
    assert box.requeue_refused() == 1 and [s for s, _ in box.pending(10)] == [4, 5, 6]
    assert box.put_many([]) == []


def test_disk_full_is_a_clear_error_weighing_goes_on_nothing_is_lost(tmp_path, caplog):
    box = Outbox(tmp_path / "o.db", KEY, hold_max=50)
    box.put(draft(n=0))
    pages = box._db().execute("PRAGMA page_count").fetchone()[0]
    box.set_max_pages(pages + 40)  # room for a few packets with images, not more
    stored, errors = [], []
    with caplog.at_level(logging.ERROR, logger="zhichao.edge.outbox"):
        for n in range(1, 31):  # the weighing loop: every vehicle is put, whatever happens
            try:
                stored.append(box.put(draft(n=n, suspected=True, images=images(n)),
                                      images(n)))
            except OutboxError as exc:
                errors.append(str(exc))
    assert stored and errors, (stored, errors)
    assert "disk full" in errors[0] and str(tmp_path / "o.db") in errors[0]
    assert "held in memory" in errors[0] and "0 lost" in errors[-1]
    assert any("disk full" in r.getMessage() for r in caplog.records)
    assert len(box.held) == 30 - len(stored)
    box.set_max_pages(None)  # space again: the next put stores the held ones first
    last = box.put(draft(n=31))
    assert last == 1 + 31 and box.held == type(box.held)()
    assert len(check_chain(tmp_path / "o.db")) == 32


def test_beyond_hold_max_the_oldest_are_dropped_counted_and_logged(tmp_path, caplog):
    box = Outbox(tmp_path / "o.db", KEY, hold_max=3)
    box.put(draft(n=0))
    box.set_max_pages(box._db().execute("PRAGMA page_count").fetchone()[0])
    with caplog.at_level(logging.ERROR, logger="zhichao.edge.outbox"):
        for n in range(1, 8):
            with pytest.raises(OutboxError, match="disk full"):
                box.put(draft(n=n, suspected=True, images=images(n)), images(n))
    assert (len(box.held), box.lost, box.counts()["lost"]) == (3, 4, 4)
    assert sum("dropped" in r.getMessage() for r in caplog.records) == 4
    assert [d.captured_at for d, _ in box.held] == [draft(n=n).captured_at for n in (5, 6, 7)]


def test_kill_9_while_writing_leaves_a_whole_chain(tmp_path):
    key_file = tmp_path / "edge.sign"
    write_signing_key(KEY, key_file, tmp_path / "edge.sign.pub")
    path = tmp_path / "o.db"
    rng = random.Random(5)
    committed = 0
    for trial in range(5):
        cfg = {"outbox": str(path), "signing_key": str(key_file), "device_id": "dev-1",
               "send": False, "produce": 10_000, "group": 3, "images_every": 4,
               "pause_s": 0.0}
        proc = subprocess.Popen([sys.executable, str(EDGE_PROC), json.dumps(cfg)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout.readline().startswith("started"), proc.stderr.read()
        # it has written since the last kill (however slow the machine), then it is
        # killed at a random point of what follows
        deadline = time.monotonic() + 30.0
        while packets_in(path) <= committed and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        seqs = check_chain(path)
        assert len(seqs) > committed, trial
        committed = len(seqs)


def packets_in(path: Path) -> int:
    """Packets an outbox file holds now, read beside the process writing it (WAL)."""
    db = sqlite3.connect(path, timeout=5.0)
    try:
        return db.execute("SELECT count(*) FROM packets").fetchone()[0]
    except sqlite3.OperationalError:  # not made yet
        return 0
    finally:
        db.close()


def test_a_missing_folder_is_made_and_an_unwritable_file_named(tmp_path):
    Outbox(tmp_path / "deep" / "er" / "o.db", KEY).put(draft())
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(OutboxError, match=r"dir\.db: cannot open"):
        Outbox(tmp_path / "dir.db", KEY)


# The schema as it shipped before it had a version (version 0): frozen here, so the test
# keeps building a file of the field even when the code's schema moves on.
SCHEMA_V0 = """
CREATE TABLE chain (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    sequence INTEGER NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE packets (
    sequence INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    suspected INTEGER NOT NULL,
    meta BLOB NOT NULL,
    signature BLOB NOT NULL,
    n_images INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'acked', 'refused')),
    done_at REAL,
    reason TEXT
);
CREATE INDEX packets_pending ON packets (sequence) WHERE state = 'pending';
CREATE INDEX packets_done ON packets (done_at) WHERE state = 'acked';
CREATE INDEX packets_refused ON packets (sequence) WHERE state = 'refused';
CREATE TABLE images (
    sequence INTEGER NOT NULL,
    position INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (sequence, position)
);
"""


def version_0_file(path: Path, tmp_path: Path, n: int) -> None:
    """An outbox of version 0 holding ``n`` signed, chained packets (every third with
    images), the first two acknowledged: the old tables, rows signed by the real code."""
    scratch = Outbox(tmp_path / "scratch.db", KEY)
    scratch.put_many([(draft(n=k, suspected=k % 3 == 0, images=images(k) if k % 3 == 0
                             else ()), images(k) if k % 3 == 0 else ())
                      for k in range(1, n + 1)])
    scratch.mark_acked([1, 2])
    scratch.close()
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(SCHEMA_V0)
    db.execute("ATTACH ? AS scratch", (str(tmp_path / "scratch.db"),))
    for table in ("chain", "packets", "images"):
        db.execute(f"INSERT INTO {table} SELECT * FROM scratch.{table}")
    db.execute("DETACH scratch")
    assert db.execute("PRAGMA user_version").fetchone()[0] == 0
    db.close()


def test_a_version_0_file_is_upgraded_and_keeps_every_packet_in_order(tmp_path):
    path = tmp_path / "field.db"
    version_0_file(path, tmp_path, 12)
    box = Outbox(path, KEY)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 1
    pending = box.pending(100)
    assert [s for s, _ in pending] == list(range(3, 13))  # in order, the acked ones not
    for seq, signed in pending:
        packet = verify(signed, KEY.public_key())
        assert packet.sequence == seq
        assert signed.images == (images(seq) if seq % 3 == 0 else ())
    assert box.put(draft(n=13)) == 13  # the chain goes on from the old file's last hash
    assert box.mark_acked(list(range(3, 14))) == 11 and box.pending(100) == []
    assert box.counts()["acked"] == 13
    box.close()
    with sqlite3.connect(path) as db:  # every packet pending again, to verify them all
        db.execute("UPDATE packets SET state = 'pending'")
    assert check_chain(path) == list(range(1, 14))


def test_a_new_file_starts_at_the_newest_version(tmp_path):
    Outbox(tmp_path / "o.db", KEY).close()
    db = sqlite3.connect(tmp_path / "o.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_file_newer_than_the_software_is_refused_by_name(tmp_path):
    path = tmp_path / "o.db"
    Outbox(path, KEY).put(draft(n=1))
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 4}")
    db.close()
    with pytest.raises(OutboxError, match=re.escape(
            f"outbox {path}: schema version {SCHEMA_VERSION + 4} is newer than this "
            f"software knows (version {SCHEMA_VERSION})")):
        Outbox(path, KEY)


def test_upgrade_steps_run_in_order_each_whole_or_not_at_all(tmp_path):
    path = tmp_path / "steps.db"
    db = sqlite3.connect(path, isolation_level=None)
    steps = [("CREATE TABLE a (x INTEGER)",),
             ("ALTER TABLE a ADD COLUMN y INTEGER", "INSERT INTO a VALUES (1, 2)"),
             ("CREATE TABLE c (z INTEGER)", "INSERT INTO missing VALUES (1)")]
    with pytest.raises(sqlite3.OperationalError, match="missing"):
        upgrade(db, path, steps)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2  # steps 1 and 2 done
    assert db.execute("SELECT x, y FROM a").fetchall() == [(1, 2)]
    assert db.execute("SELECT name FROM sqlite_master WHERE name = 'c'").fetchone() is None
    assert upgrade(db, path, steps[:2]) == 2  # nothing left to do
