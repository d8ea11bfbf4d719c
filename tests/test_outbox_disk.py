"""The outbox's disk policy: acknowledged light records pruned before acknowledged
evidence, by age and when the disk fills; on a real full disk new light records are
dropped and counted, evidence is held, the alarm is raised and cleared, weighing goes on,
and nothing unacknowledged is lost."""

import logging
import sqlite3
import time
from datetime import datetime
from pathlib import Path

import pytest

from edge.outbox import Outbox, OutboxError
from evidence.signing import SignedPacket, verify
from sim.evidence import draft, fake_jpeg
from tests.small_disks import tmpfs
from tests.test_outbox import KEY

DAY = 86_400.0


def images(n: int) -> tuple[bytes, ...]:
    """Three camera frames of about 40 KB: evidence that weighs on a small disk."""
    return tuple(fake_jpeg(40_000, n * 3 + j) for j in range(3))


def evidence(n: int) -> tuple:
    return draft(n=n, suspected=True, images=images(n)), images(n)


def rows(path: Path, where: str = "1") -> list[tuple[int, int, str]]:
    """(sequence, suspected, state) of the stored packets matching ``where``."""
    with sqlite3.connect(path) as db:
        return db.execute(f"SELECT sequence, suspected, state FROM packets WHERE {where} "
                          "ORDER BY sequence").fetchall()


def stored(path: Path, where: str = "1") -> list[tuple[int, SignedPacket]]:
    """The stored packets matching ``where``, acknowledged ones too, with their images."""
    db = sqlite3.connect(path)
    out = []
    for seq, meta, sig in db.execute(f"SELECT sequence, meta, signature FROM packets "
                                     f"WHERE {where} ORDER BY sequence").fetchall():
        data = tuple(r[0] for r in db.execute(
            "SELECT data FROM images WHERE sequence = ? ORDER BY position", (seq,)))
        out.append((seq, SignedPacket(meta, sig, data)))
    db.close()
    return out


def stored_times(path: Path, where: str = "state = 'pending'") -> list[datetime]:
    """Capture times of the stored packets matching ``where``, each verified."""
    return [verify(signed, KEY.public_key()).captured_at for _, signed in stored(path, where)]


def check_remaining_chain(box: Outbox) -> None:
    """Pruning leaves gaps, so: every stored packet verifies, chains to its stored
    predecessor, the chain row names the newest, and every sequence ever given out is
    either stored or was pruned (none skipped, none twice)."""
    hashes = {}
    for seq, signed in stored(box.path):
        packet = verify(signed, KEY.public_key())
        assert packet.sequence == seq
        hashes[seq] = (signed.hash, packet.previous_hash)
    for seq, (_, previous) in hashes.items():
        if seq - 1 in hashes:
            assert previous == hashes[seq - 1][0], seq
    with sqlite3.connect(box.path) as db:
        last, last_hash = db.execute("SELECT sequence, hash FROM chain").fetchone()
    assert last == max(hashes) and last_hash == hashes[last][0]
    counts = box.counts()
    assert last == len(hashes) + counts["pruned_light"] + counts["pruned_evidence"]


def test_light_records_are_pruned_sooner_than_evidence_by_age(tmp_path, caplog):
    """The outbox takes a "now"; the acknowledgement times are the real ones."""
    box = Outbox(tmp_path / "o.db", KEY, keep_days=30.0, keep_light_days=2.0)
    box.put_many([(draft(n=n), ()) if n % 2 else evidence(n) for n in range(1, 9)])
    box.mark_acked([1, 2, 3, 4, 5, 6])  # 7 and 8 stay pending
    now = time.time()
    with caplog.at_level(logging.INFO, logger="zhichao.edge.outbox"):
        assert box.prune(now=now + 1 * DAY) == 0
        assert box.prune(now=now + 3 * DAY) == 3  # the light ones 1, 3, 5
    assert [r[0] for r in rows(box.path)] == [2, 4, 6, 7, 8]
    assert any("pruned 3 acknowledged light records" in r.getMessage()
               for r in caplog.records)
    assert box.prune(now=now + 31 * DAY) == 3  # the evidence 2, 4, 6 is kept 30 days
    assert [r[0] for r in rows(box.path)] == [7, 8]  # unacknowledged: never, at any age
    assert box.prune(now=now + 10_000 * DAY) == 0
    counts = box.counts()
    assert (counts["pruned_light"], counts["pruned_evidence"]) == (3, 3)
    check_remaining_chain(box)


def test_a_light_record_never_outlives_evidence(tmp_path):
    box = Outbox(tmp_path / "o.db", KEY, keep_days=1.0, keep_light_days=5.0)
    box.put_many([(draft(n=1), ()), evidence(2)])
    box.mark_acked([1, 2])
    assert box.prune(now=time.time() + 2 * DAY) == 2


def test_a_full_disk_prunes_light_then_evidence_then_drops_light_keeps_evidence(
        tmp_path, caplog):
    """A real 8 MB tmpfs with the outbox file on it (4 MiB of it the reserve), filled by
    the weighing loop."""
    with tmpfs(tmp_path / "disk", "8m") as disk:
        box = Outbox(disk / "o.db", KEY, hold_max=1000)
        n = 0
        for _ in range(4):  # acknowledged history: light records and evidence
            batch = [(draft(n=n + k), ()) for k in range(1, 41)] + [evidence(n + 41)]
            n += 41
            box.put_many(batch)
        box.mark_acked([s for s, _ in box.pending(1000)])
        acked_light = len(rows(box.path, "suspected = 0"))
        acked_evidence = len(rows(box.path, "suspected = 1"))
        unacked: list[datetime] = []  # every unacknowledged vehicle put, by its time
        dropped_light: list[datetime] = []
        with caplog.at_level(logging.INFO, logger="zhichao.edge.outbox"):
            for _ in range(200):  # the weighing loop: a suspected overload, then a light
                n += 1
                unacked.append(draft(n=n).captured_at)
                try:
                    box.put(*evidence(n))
                except OutboxError as exc:
                    assert "disk full" in str(exc) and "held in memory" in str(exc)
                if box.counts()["pruned_evidence"]:  # evidence only once no acked light is left
                    assert rows(box.path, "suspected = 0 AND state = 'acked'") == []
                n += 1
                seq = box.put(draft(n=n))
                if seq is None:
                    dropped_light.append(draft(n=n).captured_at)
                else:
                    unacked.append(draft(n=n).captured_at)
                if len(box.held) >= 3:
                    break
        counts = box.counts()
        assert counts["pruned_light"] == acked_light  # all the light history went first
        assert counts["pruned_evidence"] == acked_evidence  # then all the evidence
        assert counts["disk_full"] == 1 and dropped_light
        assert counts["light_dropped"] == len(dropped_light) and counts["lost"] == 0
        assert len(box.held) == counts["held"] >= 3
        assert sum("alarm raised" in r.getMessage() for r in caplog.records) == 1
        assert sum("dropped the light record" in r.getMessage()
                   for r in caplog.records) == len(dropped_light)
        # nothing unacknowledged lost: each one put is in the file or held in memory
        in_memory = [d.captured_at for d, _ in box.held]
        assert sorted(stored_times(box.path) + in_memory) == unacked

        # the center acknowledges: the next put makes room, stores what was held, and
        # the alarm is cleared
        oldest = box.pending(20)
        box.mark_acked([s for s, _ in oldest])
        acked_now = {verify(signed, KEY.public_key()).captured_at for _, signed in oldest}
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="zhichao.edge.outbox"):
            assert box.put(draft(n=n + 1)) is not None
        unacked.append(draft(n=n + 1).captured_at)
        assert box.counts()["disk_full"] == 0 and box.held == type(box.held)()
        assert any("alarm cleared" in r.getMessage() for r in caplog.records)
        assert box.counts()["pruned_evidence"] > acked_evidence  # what we acked made room
        assert set(unacked) - acked_now == set(stored_times(box.path, "state = 'pending'"))
        check_remaining_chain(box)
        box.close()


def test_a_light_only_put_on_a_full_file_returns_none_and_never_raises(tmp_path):
    """The page cap stands in for the disk here (no mount needed)."""
    box = Outbox(tmp_path / "o.db", KEY)
    box.put(draft(n=0))
    box.set_max_pages(box._db().execute("PRAGMA page_count").fetchone()[0])
    stored = 1
    while box.put(draft(n=stored)) is not None:  # the last page fills up
        stored += 1
        assert stored < 1000
    assert [box.put(draft(n=k)) for k in range(1, 6)] == [None] * 5
    assert box.counts()["light_dropped"] == 6 and box.counts()["disk_full"] == 1
    with pytest.raises(OutboxError, match="disk full"):
        box.put(*evidence(6))
    assert len(box.held) == 1
    box.set_max_pages(None)
    assert box.put(draft(n=7)) == stored + 2 and box.counts()["disk_full"] == 0
