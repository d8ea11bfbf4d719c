"""Verify and store packets in batches: images durable, rows committed, then the acks.

:meth:`Ingestor.ingest` takes what the receiver gathered (up to ``batch_max`` messages)
and returns one :class:`Outcome` per message, in order. Nothing it returns as ``ok`` is
anything but committed: the image files are written and fsync'd, then the rows of the
whole batch go in one transaction, and only after the commit are the outcomes returned for
the receiver to acknowledge. One fsync'd transaction per batch instead of per packet is
what lets a center keep up with many sites (SQLite with ``synchronous=FULL`` commits a few
thousand transactions a second, but stores tens of thousands of rows a second in batches).

Images are files ``images_dir/ab/abcdef...`` named by their SHA-256. Writing them starts
as soon as a batch is verified (:meth:`Ingestor.verify`), so they go to the disk while the
batch before is still being committed: each to a temporary name and fsync'd
(:func:`center.durable.write_file`, with O_DIRECT where the file system allows; in a
thread pool: fsync releases the GIL, and the file system merges concurrent flushes into
few journal commits). The store then renames them, fsyncs their folders while it inserts
the rows, and commits only once both are done; a batch that fails or is abandoned leaves
no temporary file behind. So a name only ever points at complete, durable bytes
(``ZHICHAO_IMAGE_SYNC=syncfs`` writes them all and flushes the file system once instead:
fewer packets a second in a delivery on the machines measured, and it flushes other
programs' writes too). An image already in the ``images`` table is not written again,
and only a committed row says an image is stored: a file left by a crash before the
commit is simply written again.

A duplicate (same device and sequence, same hash) is acknowledged and ignored; a packet
whose sequence skips ahead records a gap; each packet's ``previous_hash`` is compared with
the stored hash of the sequence before it (``chain_ok``). What cannot be stored (malformed,
unknown device, bad signature or image, another device's connection, a different packet
under a stored sequence) is refused: counted by its kind, written to ``refusals`` and
answered ``refused``, and logged once per kind and sender per interval
(:class:`RefusalLog`), however fast a sender sends it. Before any parsing a message is held
to the receiver's limits (images per packet, bytes per image and per packet), and its
metadata to the bounds of :func:`evidence.packet.check_bounds`; a plate text must fit the
plate grammar (GA 36, ``plates.yaml``). A packet that is refused before it could be decoded
is still answered to its device when its bytes name an enrolled device, came over that
device's connection and carry its signature: the unit then stops resending it. A failing
database raises :class:`StoreError` and nothing is acknowledged: the edges resend.
"""

import logging
import os
import re
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import zmq.auth
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError
from sqlalchemy import Connection, Engine, and_, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from zmq.utils import z85

from center.db import bulk_insert
from center.device_keys import DeviceKeys, accepted_curve_keys, device_keys, keys_generation
from center.durable import fsync_dir, syncfs, syncfs_available, write_file
from center.ingest_models import (
    Device,
    PacketImage,
    Refusal,
    SequenceGap,
    StoredImage,
    StoredPacket,
)
from center.settings import ReceiverSettings
from evidence.packet import GENESIS_HASH, SEQUENCE_MAX, Packet, PacketError
from evidence.signing import SIGNATURE_BYTES, KeyFileError, SignedPacket, load_public_key, verify
from evidence.wire import parse_packet
from overload.plates import PLATE_COLOURS, PlateGrammar, load_plate_grammar
from zhichao.errors import ZhichaoError

log = logging.getLogger("zhichao.center.ingest")

VERIFY_CHUNKS = 8
"""A batch's verification is split into this many pool tasks."""
SYNC_WHOLE_FS = os.environ.get("ZHICHAO_IMAGE_SYNC", "fsync") == "syncfs" and syncfs_available()
"""Flush a batch's image files with one syncfs(2) instead of an fsync each."""
P = StoredPacket.__table__
Img = StoredImage.__table__
Links = PacketImage.__table__
Gaps = SequenceGap.__table__
Refusals = Refusal.__table__
REFUSAL_LOG_S = 10.0
"""Refusals of one kind from one sender are logged once per this interval, with their count."""
_CLAIMED_DEVICE = re.compile(rb'"device_id":"([^"\\]{1,64})"')
_CLAIMED_SEQUENCE = re.compile(rb'"sequence":([0-9]{1,20})[,}]')


class IngestError(ZhichaoError):
    """A device cannot be enrolled as asked."""


class StoreError(ZhichaoError):
    """The store failed (database or image folder); nothing of the batch is acknowledged."""


@dataclass(frozen=True)
class Incoming:
    """One message as the receiver got it: the frames, and the CURVE key (Z85) the
    connection authenticated with ("" when the transport has none, as in tests)."""

    frames: Sequence[bytes | memoryview]
    peer: str = ""


@dataclass(frozen=True)
class Outcome:
    """What becomes of one message: ``ok`` (stored now, or before) or ``refused``."""

    status: Literal["ok", "refused"]
    device_id: str | None = None
    sequence: int | None = None
    reason: str = ""
    detail: str = ""
    duplicate: bool = False


@dataclass
class _Valid:
    index: int
    peer: str
    signed: SignedPacket
    packet: Packet


@dataclass(frozen=True)
class _Keys:
    """A device's keys as verification uses them: the signing keys loaded, current first,
    each with its state (retired, revoked), and every CURVE key with its state."""

    sign: list[Ed25519PublicKey]
    states: DeviceKeys


@dataclass
class _ImageWrites:
    """A batch's image files being written under temporary names since it was verified:
    each digest's bytes and media type, its temporary path, and the pool's futures."""

    wanted: dict[str, tuple[bytes | memoryview, str]] = field(default_factory=dict)
    temps: dict[str, Path] = field(default_factory=dict)
    writes: list[Future] = field(default_factory=list)


@dataclass
class _DeviceState:
    """What the ingestor remembers of a device's chain between batches (after commits)."""

    last_sequence: int
    last_hash: str | None


class RefusalLog:
    """Refusals logged in bounded lines: the first of a kind from a sender at once, in
    full; the next ones counted and logged as one line per ``interval_s`` ("refused 740
    packets from dev-1 in 10 s: nesting too deep (limit 32)"), however many arrive."""

    def __init__(self, interval_s: float = REFUSAL_LOG_S, logger: logging.Logger = log
                 ) -> None:
        self.interval_s = interval_s
        self.logger = logger
        self._open: dict[tuple[str, str], list] = {}  # (sender, kind) → [start, count, summary]

    def add(self, sender: str, kind: str, summary: str, detail: str) -> None:
        """One refusal of ``kind`` from ``sender``."""
        now = time.monotonic()
        entry = self._open.get((sender, kind))
        if entry is None:
            self._open[sender, kind] = [now, 0, summary]
            self.logger.warning("refused a packet (%s) from %s: %s", kind, sender, detail)
        else:
            entry[1] += 1
            entry[2] = summary
        self.flush(now)

    def flush(self, now: float | None = None, *, final: bool = False) -> None:
        """Log the counts of every interval that has ended (``final``: of every one)."""
        now = time.monotonic() if now is None else now
        for key, (start, count, summary) in list(self._open.items()):
            if now - start < self.interval_s and not (final and count):
                continue
            if count:
                self.logger.warning("refused %d packets from %s in %.0f s: %s", count, key[0],
                                    now - start, summary)
                self._open[key] = [now, 0, summary]
            else:
                del self._open[key]


@dataclass
class _Batch:
    """The outcomes of one batch as they are decided, and the refusals to write."""

    outcomes: list[Outcome | None]
    refusals: list[dict] = field(default_factory=list)
    log: RefusalLog = field(default_factory=RefusalLog)

    def refuse(self, index: int, peer: str, reason: str, detail: str, *,
               device_id: str | None = None, sequence: int | None = None,
               summary: str = "") -> None:
        """Refuse message ``index``: logged (in bounded lines), answered and written to
        ``refusals``."""
        detail = detail.replace("\x00", "\\x00")  # PostgreSQL stores no NUL in a text
        sender = device_id or f"peer {peer or '?'}"
        where = f"{device_id}#{sequence}" if device_id else sender
        self.log.add(sender, reason, summary or reason, f"{where}: {detail}")
        self.outcomes[index] = Outcome("refused", device_id, sequence, reason, detail)
        self.refusals.append({"at": datetime.now(UTC), "peer": peer, "device_id": device_id,
                              "sequence": sequence if sequence is None
                              or sequence <= SEQUENCE_MAX else None,
                              "reason": reason, "detail": detail[:2000]})


def enrol_device(engine: Engine, device_id: str, sign_public_pem: bytes | str,
                 curve_public: str, *, replace: bool = False) -> None:
    """Enrol a roadside unit: its Ed25519 public key (PEM, the ``NAME.sign.pub`` file of
    ``zhichao keys new``) and its CURVE public key (Z85, 40 characters, from ``NAME.key``).
    A running receiver accepts it at its next connection. IngestError if a key is not what
    it should be, or the device (or the CURVE key) is enrolled already and not ``replace``.
    """
    pem = sign_public_pem.decode("ascii") if isinstance(sign_public_pem, bytes) \
        else sign_public_pem
    try:
        load_public_key(pem, f"signing key of device {device_id}")
    except KeyFileError as exc:
        raise IngestError(str(exc)) from None
    curve = curve_public.strip()
    try:
        ok = len(z85.decode(curve)) == 32
    except (ValueError, KeyError):
        ok = False
    if not ok:
        raise IngestError(f"CURVE public key of device {device_id} must be 40 characters "
                          f"of Z85 (got {curve!r})")
    with engine.begin() as conn:
        row = conn.execute(select(Device.enrolled_at).where(Device.device_id == device_id)
                           ).first()
        other = conn.execute(select(Device.device_id).where(
            Device.curve_public_key == curve, Device.device_id != device_id)).first()
        if other is not None:
            raise IngestError(f"CURVE key {curve} is enrolled already for device {other[0]}")
        values = {"sign_public_key": pem, "curve_public_key": curve,
                  "enrolled_at": datetime.now(UTC)}
        if row is None:
            conn.execute(insert(Device).values(device_id=device_id, **values))
        elif replace:
            conn.execute(update(Device).where(Device.device_id == device_id).values(**values))
        else:
            raise IngestError(f"device {device_id} is enrolled already (since {row[0]}); "
                              "replace its keys explicitly")


def enrolled_curve_keys(engine: Engine) -> set[str]:
    """The CURVE public keys (Z85) the receiver's allow-list holds: every enrolled
    device's, and those retired by a rotation still in their overlap; none revoked
    (:mod:`center.device_keys`)."""
    return accepted_curve_keys(engine)


@dataclass
class Checked:
    """A verified batch waiting to be stored: the outcomes decided so far (refusals), the
    packets that passed, and their image files, already being written."""

    done: _Batch
    valid: list[_Valid]
    images: _ImageWrites = field(default_factory=_ImageWrites)


class Ingestor:
    """Verifies and stores batches for one center process.

    :meth:`verify` (CPU: signatures, digests) and :meth:`store` (disk: files, rows,
    commit) may run in two threads, one batch apart, as the receiver does; each keeps its
    own cache (device keys; each device's last stored sequence and hash)."""

    def __init__(self, engine: Engine, images_dir: Path, fsync_threads: int = 16,
                 verify_threads: int | None = None, *,
                 limits: ReceiverSettings | None = None,
                 plates: PlateGrammar | None = None,
                 refusal_log: RefusalLog | None = None) -> None:
        self.engine = engine
        self.limits = limits or ReceiverSettings()
        """Images per packet, bytes per image and per packet (the receiver's settings)."""
        self.plates = plates or load_plate_grammar()
        self.refusal_log = refusal_log or RefusalLog()
        self.refused: dict[str, int] = defaultdict(int)
        """Committed refusals by kind."""
        self.images_dir = Path(images_dir)
        self.images_dir.mkdir(parents=True, exist_ok=True)
        self._pool = ThreadPoolExecutor(fsync_threads, thread_name_prefix="image-write")
        self._sync_pool = ThreadPoolExecutor(fsync_threads, thread_name_prefix="image-fsync")
        self._fsync_threads = fsync_threads
        self._verify_pool = ThreadPoolExecutor(verify_threads or os.cpu_count() or 2,
                                               thread_name_prefix="verify")
        self._keys: dict[str, _Keys] = {}
        self._keys_generation: tuple | None = None
        self._chains: dict[str, _DeviceState] = {}
        self.counts: dict[str, int] = defaultdict(int)

    def close(self) -> None:
        """Stop the worker threads."""
        self._pool.shutdown(wait=True)
        self._sync_pool.shutdown(wait=True)
        self._verify_pool.shutdown(wait=True)

    # The batch ---------------------------------------------------------------------

    def ingest(self, batch: Sequence[Incoming]) -> list[Outcome]:
        """Verify, store and commit a batch; one outcome per message, in order. Raises
        StoreError (nothing committed, nothing to acknowledge) if the store fails."""
        return self.store(self.verify(batch))

    def verify(self, batch: Sequence[Incoming]) -> Checked:
        """Check every message, and start writing the images of those that pass, not
        stored yet, under temporary names (the previous batch's commit and this batch's
        writes then keep the disk busy together); StoreError if the database cannot be
        read. Pass the result to :meth:`store`, or to :meth:`abandon`."""
        done = _Batch([None] * len(batch), log=self.refusal_log)
        try:
            with self.engine.connect() as conn:
                valid = self._verify_all(conn, batch, done)
                return Checked(done, valid, self._start_writes(conn, valid))
        except (DBAPIError, OSError) as exc:  # OSError: an image folder cannot be made
            raise StoreError(f"store {self.engine.url.render_as_string()}: "
                             f"{getattr(exc, 'orig', exc)}") from None

    def abandon(self, checked: Checked) -> None:
        """A verified batch that will not be stored: end its writes, remove its files."""
        self._abandon_images(checked.images)

    def store(self, checked: Checked) -> list[Outcome]:
        """Store and commit what :meth:`verify` passed, with the refusals; the outcomes
        once committed. StoreError (nothing committed) if the store fails."""
        try:
            return self._store_batch(checked)
        finally:
            self._abandon_images(checked.images)  # what is left of them after a failure

    def _store_batch(self, checked: Checked) -> list[Outcome]:
        """:meth:`store`, whose caller removes the image files left over."""
        done, refused_before = checked.done, len(checked.done.refusals)
        for attempt in (1, 2):
            del done.refusals[refused_before:]
            try:
                with self.engine.connect() as conn:
                    states = self._store(conn, checked.valid, checked.images, done)
                    if done.refusals:
                        conn.execute(insert(Refusals), done.refusals)
                    conn.commit()
            except IntegrityError as exc:
                # Another center process stored some of these since we looked: look again.
                self._chains.clear()
                if attempt == 2:
                    raise StoreError(f"store: {exc.orig}") from None
                continue
            except (DBAPIError, OSError) as exc:
                self._chains.clear()
                raise StoreError(f"store {self.engine.url.render_as_string()}: "
                                 f"{getattr(exc, 'orig', exc)}") from None
            self._chains.update(states)
            out = [o for o in done.outcomes if o is not None]
            for o in out:
                self.counts["duplicate" if o.duplicate else o.status] += 1
            for r in done.refusals:
                self.refused[r["reason"]] += 1
            return out
        raise AssertionError("unreachable")

    def _verify_all(self, conn: Connection, batch: Sequence[Incoming], done: _Batch
                    ) -> list[_Valid]:
        """Every message checked; refusals filled in, the good ones returned. Signatures
        and image digests are checked in a thread pool: both release the GIL, so a
        batch uses every core."""
        parsed: list[tuple[int, Incoming, SignedPacket, _Keys]] = []
        self._forget_changed_keys(conn)
        now = datetime.now(UTC)  # receipt: what a retired key's overlap is held to
        for i, msg in enumerate(batch):
            try:
                signed = parse_packet(msg.frames)
            except PacketError as exc:
                done.refuse(i, msg.peer, exc.kind, str(exc), summary=exc.summary)
                continue
            try:
                self._check_limits(signed)
                packet = signed.packet
                dev, seq = packet.device_id, packet.sequence
            except PacketError as exc:
                self._refuse_undecoded(conn, i, msg.peer, signed, error=exc, done=done)
                continue
            keys = self._device_keys(conn, dev)
            if keys is None:
                done.refuse(i, msg.peer, "unknown_device", f"device {dev} is not enrolled",
                            device_id=dev, sequence=seq)
            elif msg.peer and (why := keys.states.curve_refusal(msg.peer, now)) is not None:
                done.refuse(i, msg.peer, why[0], f"packet of device {dev} {why[1]}"
                            if why[0] == "device_mismatch" else why[1],
                            device_id=dev, sequence=seq)
            else:
                parsed.append((i, msg, signed, keys))
        items = [(s, k.sign) for _, _, s, k in parsed]
        size = max(1, -(-len(items) // VERIFY_CHUNKS))
        # one task a chunk: ThreadPoolExecutor.map ignores chunksize, and a future per
        # packet costs as much as the packet's decoding
        errors = [e for chunk in self._verify_pool.map(
            _verify_chunk, [items[k:k + size] for k in range(0, len(items), size)])
            for e in chunk]
        valid = []
        for (i, msg, signed, keys), (error, n) in zip(parsed, errors, strict=True):
            packet = signed.packet
            why = keys.states.sign[n].refusal(now) if error is None else None
            if why is not None:
                done.refuse(i, msg.peer, why[0], why[1], device_id=packet.device_id,
                            sequence=packet.sequence)
                continue
            if error is None:
                valid.append(_Valid(i, msg.peer, signed, packet))
                continue
            reason = "signature" if "signature" in str(error) else (
                "image" if str(error).startswith("image") else "malformed")
            done.refuse(i, msg.peer, reason, str(error), device_id=packet.device_id,
                        sequence=packet.sequence)
        return [v for v in valid if self._plate_fits(v, done)]

    def _check_limits(self, signed: SignedPacket) -> None:
        """PacketError unless the message is within the receiver's limits."""
        lim = self.limits
        if len(signed.images) > lim.max_images:
            raise PacketError(f"packet has {len(signed.images)} images; the limit is "
                              f"{lim.max_images} (receiver.max_images)", "too_many_images",
                              f"too many images (limit {lim.max_images})")
        for n, image in enumerate(signed.images, start=1):
            if len(image) > lim.max_image_bytes:
                raise PacketError(f"image {n} has {len(image)} bytes; the limit is "
                                  f"{lim.max_image_bytes} (receiver.max_image_bytes)",
                                  "image_too_large",
                                  f"image too large (limit {lim.max_image_bytes} bytes)")
        if signed.size > lim.max_packet_bytes:
            raise PacketError(f"packet has {signed.size} bytes with its images; the limit "
                              f"is {lim.max_packet_bytes} (receiver.max_packet_bytes)",
                              "packet_too_large",
                              f"packet too large (limit {lim.max_packet_bytes} bytes)")

    def _refuse_undecoded(self, conn: Connection, index: int, peer: str,
                          signed: SignedPacket, *, error: PacketError, done: _Batch) -> None:
        """Refuse a message that could not be decoded (or broke a limit); answered to its
        device when the bytes name an enrolled device and sequence, over that device's
        connection, with its signature: its unit then stops resending it."""
        dev = seq = None
        kind, detail = error.kind, str(error)
        claimed = _claimed(signed.meta) if len(signed.meta) <= 2 * 1024 * 1024 else None
        if claimed is not None:
            keys = self._device_keys(conn, claimed[0])
            if keys is not None and (not peer or peer in {
                    k.public_key for k in keys.states.curve}):
                dev, seq = claimed
                if not any(_signed_by(signed, key) for key in keys.sign):
                    kind, detail = "signature", ("signature does not match the packet "
                                                 f"bytes and the device's key ({detail})")
        done.refuse(index, peer, kind, detail, device_id=dev, sequence=seq,
                    summary=error.summary if kind == error.kind else "bad signature")

    def _plate_fits(self, v: _Valid, done: _Batch) -> bool:
        """Whether the packet's plate text fits a template of the plate grammar, in its
        colour (``unknown`` fits any); an unread plate's empty text fits. Refused if not."""
        plate = v.packet.plate
        if plate is None or (plate.text == "" and plate.unread):
            return True
        fits = [t for t in self.plates.templates if t.accepts(plate.text)]
        if plate.colour in PLATE_COLOURS:
            fits = [t for t in fits if plate.colour in t.colours]
        elif plate.colour != "unknown":
            fits = []
        if fits:
            return True
        done.refuse(v.index, v.peer, "plate",
                    f"plate text {plate.text!r} in colour {plate.colour!r} fits no template "
                    "of the plate grammar (GA 36, plates.yaml)",
                    device_id=v.packet.device_id, sequence=v.packet.sequence,
                    summary="plate text fits no template of the plate grammar")
        return False

    def _forget_changed_keys(self, conn: Connection) -> None:
        """Drop the cached keys when any was enrolled, rotated or revoked since the last
        batch: a revocation holds from the next batch on (one small query a batch)."""
        generation = keys_generation(conn)
        if generation != self._keys_generation:
            self._keys.clear()
            self._keys_generation = generation

    def _device_keys(self, conn: Connection, device_id: str) -> _Keys | None:
        """The device's keys (cached; looked up on a miss, so a device enrolled meanwhile
        is known at its first packet)."""
        keys = self._keys.get(device_id)
        if keys is not None:
            return keys
        states = device_keys(conn, device_id)
        if states is None:
            return None
        keys = _Keys([load_public_key(k.public_key, f"device {device_id}")
                      for k in states.sign], states)
        self._keys[device_id] = keys
        return keys

    def _chain(self, conn: Connection, device_id: str) -> _DeviceState:
        """The device's last stored sequence and hash (cached after each commit)."""
        state = self._chains.get(device_id)
        if state is None:
            last = conn.execute(select(P.c.sequence, P.c.hash).where(
                P.c.device_id == device_id).order_by(P.c.sequence.desc()).limit(1)).first()
            state = _DeviceState(last[0] if last else 0, last[1] if last else None)
        return _DeviceState(state.last_sequence, state.last_hash)

    def _store(self, conn: Connection, valid: list[_Valid], images: _ImageWrites,
               done: _Batch) -> dict[str, _DeviceState]:
        """Rows and images of the new packets; duplicates answered. Returns the devices'
        states as they will be after the commit."""
        by_device: dict[str, list[_Valid]] = defaultdict(list)
        for v in valid:
            by_device[v.packet.device_id].append(v)
        new: list[_Valid] = []
        states: dict[str, _DeviceState] = {}
        now = datetime.now(UTC)
        packet_rows: list[dict] = []
        gap_rows: list[dict] = []
        late: list[_Valid] = []
        for dev, items in by_device.items():
            state = self._chain(conn, dev)
            stored = self._stored_hashes(conn, dev, [v.packet.sequence for v in items],
                                         state.last_sequence)
            batch_hash: dict[int, str] = {}
            for v in sorted(items, key=lambda v: v.packet.sequence):
                seq, h = v.packet.sequence, v.signed.hash
                known = stored.get(seq, batch_hash.get(seq))
                if known is not None:
                    if known == h:
                        done.outcomes[v.index] = Outcome("ok", dev, seq, duplicate=True)
                    else:
                        done.refuse(v.index, v.peer, "conflict",
                                     f"device {dev} sent a different packet under stored "
                                     f"sequence {seq}", device_id=dev, sequence=seq)
                    continue
                batch_hash[seq] = h
                pred = self._predecessor(conn, dev, seq, state, batch_hash)
                chain_ok = None if pred is None else v.packet.previous_hash == pred
                if chain_ok is False:
                    log.error("device %s: packet %d does not chain to packet %d", dev, seq,
                              seq - 1)
                if seq > state.last_sequence + 1:
                    gap_rows.append({"device_id": dev, "first_missing": state.last_sequence + 1,
                                     "last_missing": seq - 1, "found_at": now})
                    log.warning("device %s: sequences %d..%d missing", dev,
                                state.last_sequence + 1, seq - 1)
                if seq < state.last_sequence:
                    late.append(v)
                if seq > state.last_sequence:
                    state.last_sequence, state.last_hash = seq, h
                packet_rows.append(self._row(v, now, chain_ok))
                new.append(v)
                done.outcomes[v.index] = Outcome("ok", dev, seq)
            states[dev] = state
        if not new:
            return states
        todo = self._images_to_store(conn, new)
        syncing = self._name_images(images, todo)
        try:
            bulk_insert(conn, Img, [{"sha256": sha, "size": len(images.wanted[sha][0]),
                                     "media_type": images.wanted[sha][1]} for sha in todo])
            self._insert_packets(conn, new, packet_rows)
            if gap_rows:
                conn.execute(insert(Gaps), gap_rows)
            for v in late:
                self._fix_successor(conn, v)
                self._close_gaps(conn, v.packet.device_id, v.packet.sequence, now)
        except BaseException:
            for f in syncing:
                f.exception()  # ended before the error goes up
            raise
        for f in syncing:
            f.result()
        return states

    @staticmethod
    def _insert_packets(conn: Connection, new: list[_Valid], rows: list[dict]) -> None:
        """The packet rows in one bulk insert (COPY on PostgreSQL), then the image links
        of those with images: their row ids are read back by (device, sequence), one query
        a device, which costs less than an insert returning ids row by row (a third less
        on PostgreSQL)."""
        bulk_insert(conn, P, rows)
        heavy = [v for v in new if v.packet.images]
        if not heavy:
            return
        ids: dict[tuple[str, int], int] = {}
        by_device: dict[str, list[int]] = defaultdict(list)
        for v in heavy:
            by_device[v.packet.device_id].append(v.packet.sequence)
        for dev, seqs in by_device.items():
            ids.update(((dev, seq), pid) for seq, pid in conn.execute(
                select(P.c.sequence, P.c.id).where(P.c.device_id == dev,
                                                   P.c.sequence.in_(seqs))))
        bulk_insert(conn, Links, [
            {"packet_id": ids[v.packet.device_id, v.packet.sequence], "position": n,
             "role": ref.role, "sha256": ref.sha256}
            for v in heavy for n, ref in enumerate(v.packet.images)])

    def _stored_hashes(self, conn: Connection, dev: str, seqs: list[int], last: int
                       ) -> dict[int, str]:
        """Hashes of the sequences among ``seqs`` already stored for the device."""
        if all(s > last for s in seqs):
            return {}  # all new: the common case costs no query
        rows = conn.execute(select(P.c.sequence, P.c.hash).where(
            P.c.device_id == dev, P.c.sequence.in_(seqs)))
        return {seq: h for seq, h in rows}

    def _predecessor(self, conn: Connection, dev: str, seq: int, state: _DeviceState,
                     batch_hash: dict[int, str]) -> str | None:
        """The hash packet ``seq`` must carry as ``previous_hash``, or None if unknown."""
        if seq == 1:
            return GENESIS_HASH
        if seq - 1 in batch_hash:
            return batch_hash[seq - 1]
        if seq - 1 == state.last_sequence and state.last_hash is not None:
            return state.last_hash
        return conn.execute(select(P.c.hash).where(P.c.device_id == dev,
                                                   P.c.sequence == seq - 1)).scalar()

    def _fix_successor(self, conn: Connection, v: _Valid) -> None:
        """A late packet settles whether the stored one after it chains to it."""
        dev, seq = v.packet.device_id, v.packet.sequence
        row = conn.execute(select(P.c.id, P.c.previous_hash).where(
            P.c.device_id == dev, P.c.sequence == seq + 1, P.c.chain_ok.is_(None))).first()
        if row is not None:
            ok = row[1] == v.signed.hash
            if not ok:
                log.error("device %s: packet %d does not chain to packet %d", dev, seq + 1, seq)
            conn.execute(update(P).where(P.c.id == row[0]).values(chain_ok=ok))

    def _close_gaps(self, conn: Connection, dev: str, seq: int, now: datetime) -> None:
        """Close the device's open gaps around ``seq`` once all their packets are here."""
        gaps = conn.execute(select(Gaps.c.id, Gaps.c.first_missing, Gaps.c.last_missing).where(
            Gaps.c.device_id == dev, Gaps.c.closed_at.is_(None),
            Gaps.c.first_missing <= seq, Gaps.c.last_missing >= seq)).all()
        for gap_id, first, last in gaps:
            n = conn.execute(select(P.c.id).where(and_(
                P.c.device_id == dev, P.c.sequence >= first, P.c.sequence <= last))
            ).all()
            if len(n) == last - first + 1:
                conn.execute(update(Gaps).where(Gaps.c.id == gap_id).values(closed_at=now))

    @staticmethod
    def _row(v: _Valid, now: datetime, chain_ok: bool | None) -> dict:
        p = v.packet
        return {"device_id": p.device_id, "sequence": p.sequence, "hash": v.signed.hash,
                "previous_hash": p.previous_hash, "captured_at": p.captured_at,
                "lane": p.lane, "suspected_overload": p.suspected_overload,
                "meta": v.signed.meta, "signature": v.signed.signature,
                "received_at": now, "chain_ok": chain_ok}

    # Images --------------------------------------------------------------------------

    def image_path(self, sha256: str) -> Path:
        """Where the image of this digest lives."""
        return self.images_dir / sha256[:2] / sha256

    def _start_writes(self, conn: Connection, valid: list[_Valid]) -> _ImageWrites:
        """Start writing (in the pool) every image of these packets that no stored row
        names yet, each to a temporary name and fsync'd; :meth:`_name_images` names
        them once the batch is stored."""
        wanted: dict[str, tuple[bytes | memoryview, str]] = {}
        for v in valid:
            for ref, data in zip(v.packet.images, v.signed.images, strict=True):
                wanted.setdefault(ref.sha256, (data, ref.media_type))
        if not wanted:
            return _ImageWrites()
        have = self._stored_images(conn, wanted)
        todo = [sha for sha in wanted if sha not in have]
        return _ImageWrites(wanted, *self._write(todo, wanted))

    def _write(self, shas: Sequence[str], wanted: dict[str, tuple[bytes | memoryview, str]]
               ) -> tuple[dict[str, Path], list[Future]]:
        """These images' temporary paths, and the futures writing them."""
        if not shas:
            return {}, []
        tag = uuid.uuid4().hex[:8]
        for d in {self.image_path(sha).parent for sha in shas}:
            d.mkdir(parents=True, exist_ok=True)
        temps = {sha: self.image_path(sha).with_name(f".{sha}.{tag}.tmp") for sha in shas}
        # a task per thread, not per file: a future costs about as much as a write's
        # share of the CPU, and the disk sees as many flushes at once either way
        files = [(temps[sha], wanted[sha][0]) for sha in shas]
        n = min(self._fsync_threads, len(files))
        return temps, [self._pool.submit(_write_files, files[k::n], not SYNC_WHOLE_FS)
                       for k in range(n)]

    @staticmethod
    def _stored_images(conn: Connection, shas: Iterable[str]) -> set[str]:
        """Which of these images a stored row names already."""
        return set(conn.execute(select(Img.c.sha256).where(Img.c.sha256.in_(list(shas))))
                   .scalars())

    def _images_to_store(self, conn: Connection, new: list[_Valid]) -> list[str]:
        """The new packets' images that no stored row names (looked up again: another
        batch may have stored some since this one was verified)."""
        needed = list(dict.fromkeys(ref.sha256 for v in new for ref in v.packet.images))
        have = self._stored_images(conn, needed) if needed else set()
        return [sha for sha in needed if sha not in have]

    def _name_images(self, images: _ImageWrites, todo: list[str]) -> list[Future]:
        """Wait for the image files, writing any of ``todo`` not being written; name those
        of ``todo`` and drop the others; start making the names durable (their folders'
        fsyncs, in the pool, while the caller inserts the rows) and return those futures:
        all must be done before the commit. Raises the first write's error once every
        write has ended."""
        missing = [sha for sha in todo if sha not in images.temps]
        if missing:  # stored at verification, gone since: only another process does that
            temps, writes = self._write(missing, images.wanted)
            images.temps.update(temps)
            images.writes.extend(writes)
        errors = [f.exception() for f in images.writes]
        error = next((e for e in errors if e is not None), None)
        if error is not None:
            raise error
        for sha in todo:
            images.temps.pop(sha).replace(self.image_path(sha))
        self._abandon_images(images)  # the rest: stored meanwhile, or a refused packet's
        if not todo:
            return []
        if SYNC_WHOLE_FS:
            return [self._sync_pool.submit(syncfs, self.images_dir)]
        dirs = sorted({self.image_path(sha).parent for sha in todo})
        n = min(self._fsync_threads, len(dirs))
        return [self._sync_pool.submit(_fsync_dirs, dirs[k::n]) for k in range(n)]

    @staticmethod
    def _abandon_images(images: _ImageWrites) -> None:
        """Let the writes end and remove the temporary files left (none once
        :meth:`_name_images` has named or dropped them)."""
        for f in images.writes:
            f.exception()
        for tmp in images.temps.values():
            tmp.unlink(missing_ok=True)
        images.temps.clear()


def _write_files(files: Sequence[tuple[Path, bytes | memoryview]], sync: bool) -> None:
    """:func:`center.durable.write_file` for several files in turn, in one pool task;
    stops at the first error."""
    for path, data in files:
        write_file(path, data, sync)


def _fsync_dirs(dirs: Sequence[Path]) -> None:
    """:func:`center.durable.fsync_dir` for several folders in turn, in one pool task."""
    for d in dirs:
        fsync_dir(d)


def _claimed(meta: bytes) -> tuple[str, int] | None:
    """The device and sequence a packet's bytes name, found without parsing them (they
    may be beyond parsing), or None; only trusted once the device's signature holds."""
    dev = _CLAIMED_DEVICE.search(meta)
    seq = _CLAIMED_SEQUENCE.search(meta)
    if dev is None or seq is None:
        return None
    try:
        device_id = dev.group(1).decode("utf-8")
    except UnicodeDecodeError:
        return None
    sequence = int(seq.group(1))
    return (device_id, sequence) if sequence < 2**64 else None  # an ack carries 64 bits


def _signed_by(signed: SignedPacket, key: Ed25519PublicKey) -> bool:
    """Whether the signature over the packet's bytes is the key's."""
    if len(signed.signature) != SIGNATURE_BYTES:
        return False
    try:
        crypto_sign_open(signed.signature + signed.meta, key.public_bytes_raw())
    except BadSignatureError:
        return False
    return True


def _verify_chunk(items: Sequence[tuple[SignedPacket, Sequence[Ed25519PublicKey]]]
                  ) -> list[tuple[PacketError | None, int]]:
    """:func:`_verify_with_keys` over a slice of a batch, in one pool task."""
    return [_verify_with_keys(*item) for item in items]


def _verify_with_keys(signed: SignedPacket, keys: Sequence[Ed25519PublicKey]
                      ) -> tuple[PacketError | None, int]:
    """The packet verified with the device's current key, or else with the one of its
    other keys (retired, revoked) that signed it: the error or None, and which key. A
    device without other keys costs one signature check, as before rotation."""
    error = _verify_or_error(signed, keys[0])
    if error is None or len(keys) == 1 or "signature does not match" not in str(error):
        return error, 0
    for n, key in enumerate(keys[1:], start=1):
        if _signed_by(signed, key):
            return _verify_or_error(signed, key), n
    return error, 0


def _verify_or_error(signed: SignedPacket, key: Ed25519PublicKey) -> PacketError | None:
    """:func:`evidence.signing.verify` for a pool: the error instead of raising it."""
    try:
        verify(signed, key)
    except PacketError as exc:
        return exc
    return None


def enrol_from_files(engine: Engine, device_id: str, sign_public_file: Path,
                     curve_public_file: Path, *, replace: bool = False) -> None:
    """:func:`enrol_device` from the files ``zhichao keys new`` wrote for the unit:
    ``NAME.sign.pub`` and ``NAME.key``. IngestError naming the file if one is unreadable."""
    try:
        pem = Path(sign_public_file).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise IngestError(f"{sign_public_file}: cannot read the signing public key: "
                          f"{exc}") from None
    try:
        curve, _ = zmq.auth.load_certificate(curve_public_file)
    except (OSError, ValueError) as exc:
        raise IngestError(f"{curve_public_file}: not a CURVE key file: {exc}") from None
    enrol_device(engine, device_id, pem, curve.decode("ascii"), replace=replace)
