"""The durable outbox: every packet is signed and committed here before anything sends it.

One SQLite file (WAL, ``synchronous=FULL``): a packet row with its canonical bytes and
signature, its images as rows beside it, and one ``chain`` row holding the last sequence
and hash. :meth:`Outbox.put` assigns the next sequence and the previous packet's hash,
signs, and commits all of it in one transaction, so a kill -9 at any point leaves either
the whole packet, chained, or nothing, and the chain never forks or skips.

``put`` is the weighing loop's only call and never waits on the network. When the disk is
full it raises :class:`OutboxError` at once (the loop logs it and weighs on) and keeps the
packet in memory, up to ``hold_max`` packets, storing them first as soon as space returns;
beyond that the oldest held packet is dropped, counted in ``lost`` and logged as an error:
nothing is lost silently. The sender thread reads :meth:`pending`, and after the center's
acknowledgement calls :meth:`mark_acked`; acknowledged packets are kept ``keep_days`` and
then removed by :meth:`prune`. Light records (not a suspected overload) carry no images.

The file's schema has a version (``PRAGMA user_version``), brought up to date by ordered
steps when the outbox opens, so a unit in the field keeps its undelivered packets across
a software upgrade; a file newer than the software is refused, never written.
"""

import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence.packet import GENESIS_HASH, Packet, PacketError
from evidence.signing import SignedPacket, check_images, sign
from zhichao.errors import ZhichaoError

log = logging.getLogger("zhichao.edge.outbox")

SCHEMA_V1: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS chain (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        sequence INTEGER NOT NULL,
        hash TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS packets (
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
    )""",
    """CREATE INDEX IF NOT EXISTS packets_pending ON packets (sequence)
        WHERE state = 'pending'""",
    """CREATE INDEX IF NOT EXISTS packets_done ON packets (done_at)
        WHERE state = 'acked'""",
    """CREATE INDEX IF NOT EXISTS packets_refused ON packets (sequence)
        WHERE state = 'refused'""",
    """CREATE TABLE IF NOT EXISTS images (
        sequence INTEGER NOT NULL,
        position INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (sequence, position)
    )""",
)
"""Version 1: the outbox as first shipped (files of before versions, "version 0", hold
these tables without a ``user_version``; the statements make them where missing)."""
UPGRADES: tuple[tuple[str, ...], ...] = (SCHEMA_V1,)
"""Ordered upgrade steps: step ``n`` (``UPGRADES[n - 1]``) takes a file from schema
version ``n - 1`` to ``n`` in one transaction. Append a step to change the schema; never
edit one that shipped, units in the field have run it."""
SCHEMA_VERSION = len(UPGRADES)
NO_PAGE_LIMIT = 4_294_967_294
PAGE_SIZE = 16_384
"""Larger pages than SQLite's 4 KiB: a 150 KB image spans 10 overflow pages instead of
37, and reads back three times as fast."""


class OutboxError(ZhichaoError):
    """The outbox could not store a packet (disk full, file unwritable) or is misused."""


def upgrade(db: sqlite3.Connection, path: Path,
            steps: Sequence[Sequence[str]] = UPGRADES) -> int:
    """Bring the file open on ``db`` to the newest schema of ``steps``; returns the version
    it had. Each step runs in a transaction of its own with its new ``user_version``, so
    a unit killed mid-upgrade keeps a file of the step before and upgrades it again at the
    next start. A file newer than ``steps`` (written by a later release, the software then
    rolled back) is an :class:`OutboxError`: the code must not write a schema it does not
    know."""
    found = db.execute("PRAGMA user_version").fetchone()[0]
    if found > len(steps):
        raise OutboxError(f"outbox {path}: schema version {found} is newer than this "
                          f"software knows (version {len(steps)}); install the release "
                          f"that wrote it, or move the file aside")
    for version in range(found + 1, len(steps) + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            now = db.execute("PRAGMA user_version").fetchone()[0]
            if now < version:  # another process may have upgraded it meanwhile
                for statement in steps[version - 1]:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {version:d}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        if now < version:
            log.info("outbox %s: schema upgraded to version %d", path, version)
    return found


class Outbox:
    """A device's outbox file; safe to share between the weighing thread and the sender
    (each thread gets its own SQLite connection)."""

    def __init__(self, path: Path, key: Ed25519PrivateKey, *, keep_days: float = 7.0,
                 hold_max: int = 1000, max_pages: int | None = None) -> None:
        self.path = Path(path)
        self.key = key
        self.keep_days = keep_days
        self.max_pages = max_pages
        self.hold_max = hold_max
        self.held: deque[tuple[Packet, tuple[bytes, ...]]] = deque()
        self.lost = 0
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections_lock = threading.Lock()  # not _lock: put_many holds it while a
        # thread's first write opens that thread's connection
        self._new = threading.Condition()
        self._connections: list[sqlite3.Connection] = []
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            upgrade(self._db(), self.path)
        except (OSError, sqlite3.Error) as exc:
            raise OutboxError(f"outbox {self.path}: cannot open: {exc}") from None

    def _db(self) -> sqlite3.Connection:
        """This thread's connection, opened for durability on first use."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0,
                                 check_same_thread=False)
            db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # takes effect on a new file only
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute(f"PRAGMA max_page_count={self.max_pages or NO_PAGE_LIMIT}")
            self._local.db = db
            with self._connections_lock:
                self._connections.append(db)
        return db

    def set_max_pages(self, pages: int | None) -> None:
        """Cap the file at ``pages`` pages for the calling thread (None: no cap); how the
        tests make a real SQLITE_FULL without filling a disk."""
        self.max_pages = pages
        self._db().execute(f"PRAGMA max_page_count={pages or NO_PAGE_LIMIT}")

    # The weighing loop's side ---------------------------------------------------------

    def put(self, draft: Packet, images: Sequence[bytes] = ()) -> int:
        """Chain, sign and commit a packet; returns its sequence. The draft's sequence and
        previous hash are replaced. OutboxError if it could not be stored now (it is held
        in memory and stored by a later call once there is room)."""
        return self.put_many([(draft, images)])[-1]

    def put_many(self, items: Sequence[tuple[Packet, Sequence[bytes]]]) -> list[int]:
        """:meth:`put` for the vehicles of one signal block, in one transaction (one fsync
        for all); returns their sequences."""
        if not items:
            return []
        for draft, images in items:
            if not draft.suspected_overload and (images or draft.images):
                raise OutboxError(f"packet of {draft.device_id} lane {draft.lane} at "
                                  f"{draft.captured_at:%Y-%m-%d %H:%M:%S}: a light record "
                                  "(not a suspected overload) carries no images")
            try:
                check_images(draft, images)
            except PacketError as exc:
                raise OutboxError(f"packet of {draft.device_id} lane {draft.lane}: {exc}"
                                  ) from None
        with self._lock:
            self.held.extend((draft, tuple(images)) for draft, images in items)
            try:
                seqs = self._store(list(self.held))
            except sqlite3.Error as exc:
                self._overflow()
                raise OutboxError(self._not_stored_text(items[-1][0], exc)) from None
            self.held.clear()
        with self._new:
            self._new.notify_all()
        return seqs[len(seqs) - len(items):]

    def _overflow(self) -> None:
        """Drop the oldest held packets beyond ``hold_max``, counting and logging each."""
        while len(self.held) > self.hold_max:
            old, _ = self.held.popleft()
            self.lost += 1
            log.error("outbox %s: held packets exceed %d: dropped the packet of lane %d at "
                      "%s (%d lost since start)", self.path, self.hold_max, old.lane,
                      old.captured_at.isoformat(), self.lost)

    def _not_stored_text(self, draft: Packet, exc: sqlite3.Error) -> str:
        what = "disk full" if "full" in str(exc) else str(exc)
        text = (f"outbox {self.path}: {what}: packet of lane {draft.lane} at "
                f"{draft.captured_at:%Y-%m-%d %H:%M:%S} not stored yet, held in memory "
                f"({len(self.held)} held, at most {self.hold_max}; {self.lost} lost since "
                "start); free space on that disk")
        log.error("%s", text)
        return text

    def _store(self, items: list[tuple[Packet, tuple[bytes, ...]]]) -> list[int]:
        """One transaction: next sequences, chain, packets and images."""
        with self._transaction() as db:
            row = db.execute("SELECT sequence, hash FROM chain WHERE id = 1").fetchone()
            seq, prev = row if row else (0, GENESIS_HASH)
            seqs = []
            for draft, images in items:
                seq += 1
                packet = draft.model_copy(update={"sequence": seq, "previous_hash": prev})
                signed = sign(packet, images, self.key)
                db.execute("INSERT INTO packets (sequence, hash, created_at, suspected, meta, "
                           "signature, n_images) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (seq, signed.hash, time.time(), int(packet.suspected_overload),
                            signed.meta, signed.signature, len(images)))
                db.executemany("INSERT INTO images (sequence, position, data) "
                               "VALUES (?, ?, ?)", [(seq, i, d) for i, d in enumerate(images)])
                prev = signed.hash
                seqs.append(seq)
            db.execute("INSERT INTO chain (id, sequence, hash) VALUES (1, ?, ?) ON CONFLICT "
                       "(id) DO UPDATE SET sequence = excluded.sequence, hash = excluded.hash",
                       (seq, prev))
        return seqs

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection inside one write transaction, taken at once (so two
        writers queue instead of failing mid-way), committed or rolled back whole."""
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    # The sender's side ------------------------------------------------------------------

    def wait_new(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for a put (the sender's idle wait)."""
        with self._new:
            self._new.wait(timeout_s)

    def pending(self, limit: int, after: int = 0) -> list[tuple[int, SignedPacket]]:
        """Up to ``limit`` unacknowledged packets with sequence above ``after``, oldest
        first."""
        rows = self._db().execute(
            "SELECT sequence, meta, signature, n_images FROM packets WHERE state = 'pending' "
            "AND sequence > ? ORDER BY sequence LIMIT ?", (after, limit)).fetchall()
        return self._with_images(rows)

    def get(self, sequences: Iterable[int]) -> list[tuple[int, SignedPacket]]:
        """The stored packets of these sequences that are still pending, by sequence."""
        db = self._db()
        rows = []
        for seq in sorted(sequences):
            row = db.execute("SELECT sequence, meta, signature, n_images FROM packets "
                             "WHERE sequence = ? AND state = 'pending'", (seq,)).fetchone()
            if row is not None:
                rows.append(row)
        return self._with_images(rows)

    def _with_images(self, rows: list[tuple]) -> list[tuple[int, SignedPacket]]:
        """Packets from their rows, images read for those that have any."""
        db = self._db()
        out = []
        for seq, meta, signature, n_images in rows:
            images: tuple[bytes, ...] = ()
            if n_images:
                images = tuple(r[0] for r in db.execute(
                    "SELECT data FROM images WHERE sequence = ? ORDER BY position", (seq,)))
            out.append((seq, SignedPacket(meta, signature, images)))
        return out

    def mark_acked(self, sequences: Sequence[int]) -> int:
        """The center has stored these: keep them ``keep_days``, never send them again."""
        return self._mark(sequences, "acked", None)

    def mark_refused(self, sequences: Sequence[int], reason: str) -> int:
        """The center will never store these: keep them (never pruned) with the reason."""
        log.error("outbox %s: the center refused packets %s: %s", self.path,
                  list(sequences), reason)
        return self._mark(sequences, "refused", reason)

    def requeue_refused(self) -> int:
        """Make every refused packet pending again (after the cause was fixed at the
        center, e.g. the device enrolled under the right id); returns how many."""
        db = self._db()
        cur = db.execute("UPDATE packets SET state = 'pending', done_at = NULL, reason = NULL "
                         "WHERE state = 'refused'")
        return cur.rowcount

    def _mark(self, sequences: Sequence[int], state: str, reason: str | None) -> int:
        if not sequences:
            return 0
        now = time.time()
        with self._transaction() as db:
            cur = db.executemany("UPDATE packets SET state = ?, done_at = ?, reason = ? "
                                 "WHERE sequence = ? AND state = 'pending'",
                                 [(state, now, reason, s) for s in sequences])
        return cur.rowcount

    def prune(self, keep_days: float | None = None, now: float | None = None) -> int:
        """Remove packets acknowledged more than ``keep_days`` ago; returns how many."""
        days = self.keep_days if keep_days is None else keep_days
        cutoff = (time.time() if now is None else now) - days * 86_400
        with self._transaction() as db:
            db.execute("DELETE FROM images WHERE sequence IN (SELECT sequence FROM packets "
                       "WHERE state = 'acked' AND done_at < ?)", (cutoff,))
            cur = db.execute("DELETE FROM packets WHERE state = 'acked' AND done_at < ?",
                             (cutoff,))
        return cur.rowcount

    def counts(self) -> dict[str, int]:
        """Packets by state, plus those held in memory and those lost since start.

        Each state is counted on its own partial index: a ``GROUP BY state`` reads every
        row with its canonical bytes, 12 ms for 30 000 packets, and a sender waiting on
        a backlog or a status page asks often."""
        db = self._db()
        out = {state: db.execute(  # a literal: SQLite picks a partial index only then
                   f"SELECT COUNT(*) FROM packets WHERE state = '{state}'").fetchone()[0]
               for state in ("pending", "acked", "refused")}
        last = db.execute("SELECT sequence FROM chain WHERE id = 1").fetchone()
        return {**out, "last_sequence": last[0] if last else 0, "held": len(self.held),
                "lost": self.lost}

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock, self._connections_lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
        self._local = threading.local()
