"""The running center: a packet the receiver commits wakes the cases thread, and a packet
whose unit read its plate never waits behind a plate the center reads. The real receiver
on a real CURVE socket, the real reader on real JPEG images, SQLite and PostgreSQL; times
are bounded, and the order of commits is observed from another connection."""

import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import zmq
from center_factory import REGISTRY_CSV, T0, center_engine, make_packet, store_packets
from sqlalchemy import insert, select
from sqlalchemy.orm import Session
from test_center_plates import UNREAD, Store, frame_jpeg, unread_packet

from center.cases import process_pending
from center.ingest import enrol_from_files
from center.ingest_models import StoredPacket
from center.law_models import Capture, Case
from center.registry import import_registry
from center.service import run_center
from center.settings import CenterSettings, LawSettings, ReceiverSettings
from evidence.keys import make_keys
from evidence.packet import GENESIS_HASH, Packet, canonical_bytes, image_ref, packet_hash
from evidence.signing import load_signing_key, sign
from evidence.wire import packet_frames, parse_ack
from sim.evidence import fake_jpeg

pytestmark = pytest.mark.timeout(240)

LONG_INTERVAL_S = 30.0
"""A cases thread that only looked this often would miss every bound below."""


def captured(engine) -> dict[int, Capture]:
    with Session(engine) as session:
        return {c.sequence: c for c in session.scalars(select(Capture))}


class CommitOrder:
    """Watches the captures table from its own connection, every 10 ms: the set of
    sequences captured at each change, in order."""

    def __init__(self, engine, until: set[int]) -> None:
        self.engine, self.until = engine, until
        self.seen: list[frozenset[int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            now = frozenset(captured(self.engine))
            if not self.seen or now != self.seen[-1]:
                self.seen.append(now)
            if self.until <= now:
                return
            self._stop.wait(0.01)

    def __enter__(self) -> "CommitOrder":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is not None:
            self._stop.set()
        self._thread.join(120)
        self._stop.set()

    def first_with(self, sequence: int) -> frozenset[int]:
        return next(s for s in self.seen if sequence in s)


class RunningCenter:
    """``run_center`` in a thread, receiver included, with a unit enrolled (CURVE and
    signing keys from ``make_keys``) and a DEALER of that unit connected to it."""

    def __init__(self, url: str, tmp_path: Path, **receiver) -> None:
        keys = tmp_path / "keys"
        make_keys(keys, "center", curve_only=True)
        make_keys(keys, "unit")
        with zmq.Context.instance().socket(zmq.ROUTER) as probe:
            port = probe.bind_to_random_port("tcp://127.0.0.1")
        self.settings = CenterSettings(
            database=url, images_dir=tmp_path / "images",
            receiver=ReceiverSettings(listen=[f"tcp://127.0.0.1:{port}"],
                                      server_secret_key=keys / "center.key_secret",
                                      **receiver),
            law=LawSettings(process_interval_s=LONG_INTERVAL_S))
        self.engine = center_engine(url)
        enrol_from_files(self.engine, "D1", keys / "unit.sign.pub", keys / "unit.key")
        registry = tmp_path / "devices.csv"
        registry.write_text(REGISTRY_CSV, encoding="utf-8")
        with Session(self.engine) as session, session.begin():
            import_registry(session, registry)
        self.key = load_signing_key(keys / "unit.sign")
        self.previous = GENESIS_HASH
        self.stop = threading.Event()
        self.thread = threading.Thread(target=run_center, args=(self.settings,),
                                       kwargs={"stop": self.stop}, daemon=True)
        server, _ = zmq.auth.load_certificate(keys / "center.key")
        public, secret = zmq.auth.load_certificate(keys / "unit.key_secret")
        self.dealer = zmq.Context.instance().socket(zmq.DEALER)
        self.dealer.curve_serverkey = server
        self.dealer.curve_publickey, self.dealer.curve_secretkey = public, secret
        self.dealer.zap_domain = b"zhichao"
        self.dealer.linger = 0
        self.dealer.connect(f"tcp://127.0.0.1:{port}")

    def __enter__(self) -> "RunningCenter":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.dealer.close()
        self.stop.set()
        self.thread.join(60)
        self.engine.dispose()
        assert not self.thread.is_alive()

    def send(self, packet: Packet, images: list[bytes]) -> None:
        """Sign the packet as the next of the unit's chain and send it."""
        signed = sign(packet.model_copy(update={"previous_hash": self.previous}), images,
                      self.key)
        self.previous = signed.hash
        self.dealer.send_multipart(packet_frames(signed))

    def acked(self, sequences: set[int], timeout_s: float = 30.0) -> float:
        """Wait for the acks of ``sequences`` (stored and committed); the monotonic time
        the last came."""
        deadline = time.monotonic() + timeout_s
        while sequences:
            assert self.dealer.poll(max(1, int((deadline - time.monotonic()) * 1000))), \
                f"no ack of {sorted(sequences)} within {timeout_s} s"
            ack = parse_ack(self.dealer.recv_multipart())
            assert ack.status == "ok", ack
            sequences -= set(ack.sequences)
        return time.monotonic()


def wait_for(engine, sequences: set[int], timeout_s: float) -> float:
    """The monotonic time all ``sequences`` had captures; fails after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not sequences <= set(captured(engine)):
        assert time.monotonic() < deadline, f"no capture of {sorted(sequences)} in {timeout_s} s"
        time.sleep(0.01)
    return time.monotonic()


def test_a_packet_the_receiver_commits_is_captured_at_once(center_db_url, tmp_path):
    """The interval is 30 s; the receiver's commit wakes the cases thread, so each packet
    is a capture (and a case) within a fraction of a second of its ack."""
    with RunningCenter(center_db_url, tmp_path) as center:
        waits = []
        for sequence in (1, 2, 3):
            image = fake_jpeg(20_000, sequence)
            center.send(make_packet(sequence=sequence, captured_at=T0 + timedelta(
                hours=7 * sequence), images=0).model_copy(
                update={"images": [image_ref("front", image)]}), [image])
            acked = center.acked({sequence})
            waits.append(wait_for(center.engine, {sequence}, LONG_INTERVAL_S / 3) - acked)
        assert max(waits) < 3.0, waits
        with Session(center.engine) as session:
            assert len(session.scalars(select(Case)).all()) == 3  # 7 h apart: three trips


def slow_unread_packet(sequence: int) -> tuple[Packet, list[bytes]]:
    """An unread plate with four front and four rear frames (1 920 × 1 080 px): several
    seconds of reading."""
    frames = [frame_jpeg("浙A12345", seed=i, size=(1920, 1080)) for i in range(8)]
    refs = [image_ref("front" if i < 4 else "rear", data) for i, data in enumerate(frames)]
    packet = make_packet(sequence=sequence, images=0).model_copy(
        update={"plate": UNREAD, "images": refs})
    return packet, frames


def test_a_read_plate_in_the_batch_of_an_unread_one_does_not_wait_for_the_reading(
        center_db_url, tmp_path):
    """One receiver batch (it closes at two packets) holds an unread plate, first, and a
    plate the unit read: the read one is a committed capture while the reader still
    works on the other."""
    with RunningCenter(center_db_url, tmp_path, batch_max=2, batch_wait_ms=20_000) as center:
        unread, frames = slow_unread_packet(1)
        center.send(unread, frames)
        center.send(make_packet(sequence=2, plate="浙B54321", images=0), [])
        with CommitOrder(center.engine, until={1, 2}) as order:
            acked = center.acked({1, 2})
            done = wait_for(center.engine, {1, 2}, LONG_INTERVAL_S * 2)
        assert order.first_with(2) == {2}, order.seen
        got = captured(center.engine)
        assert (got[1].plate, got[1].plate_source) == ("浙A12345", "center")
        assert (got[2].plate, got[2].plate_source) == ("浙B54321", "edge")
        assert got[2].processed_at < got[1].processed_at
        assert done - acked < LONG_INTERVAL_S  # woken, not left for the interval


def store_one(engine, packet: Packet) -> None:
    """One more packet of the enrolled D1, as the receiver would store it."""
    meta = canonical_bytes(packet)
    with engine.begin() as conn:
        conn.execute(insert(StoredPacket).values(
            device_id=packet.device_id, sequence=packet.sequence, hash=packet_hash(meta),
            previous_hash=packet.previous_hash, captured_at=packet.captured_at, lane=1,
            suspected_overload=True, meta=meta, signature=b"s", received_at=T0))


@pytest.fixture
def center(center_db_url, tmp_path):
    engine = center_engine(center_db_url)
    settings = CenterSettings(database=center_db_url, images_dir=tmp_path / "images")
    yield engine, settings, Store(settings.images_dir)
    engine.dispose()


def test_packets_stored_during_a_reading_go_before_the_next_reading(center):
    """Two unread plates pending; a packet with a plate is stored while the first is
    read: it is captured before the second reading ends, and nothing is left pending."""
    engine, settings, store = center
    frames = [store.put("front" if i < 2 else "rear",
                        frame_jpeg("浙A12345", seed=i, size=(1920, 1080))) for i in range(4)]
    store_packets(engine, [unread_packet(1, frames), unread_packet(2, frames)])
    stored = threading.Event()
    counted: list[int] = []
    worker = threading.Thread(target=lambda: counted.append(
        process_pending(engine, settings, stored=stored)), daemon=True)
    with CommitOrder(engine, until={1, 2, 3}) as order:
        worker.start()
        store_one(engine, make_packet(sequence=3, plate="浙B54321", images=0))
        stored.set()
        worker.join(120)
    assert counted == [3]
    assert 2 not in order.first_with(3), order.seen
    got = captured(engine)
    assert got[3].processed_at < got[2].processed_at
    assert got[1].plate == got[2].plate == "浙A12345"
    assert process_pending(engine, settings) == 0


def test_a_batch_s_read_plates_are_committed_before_its_unread_ones_are_read(center):
    """One pending batch, the unread plate first: the other packets' captures are
    committed first, in one transaction, then the reading's."""
    engine, settings, store = center
    frames = [store.put("front" if i < 4 else "rear",
                        frame_jpeg("浙A12345", seed=i, size=(1920, 1080))) for i in range(8)]
    store_packets(engine, [unread_packet(1, frames),
                           make_packet(sequence=2, plate="浙B54321"),
                           unread_packet(3, [], plate=None)])  # no image: nothing to read
    with CommitOrder(engine, until={1, 2, 3}) as order:
        assert process_pending(engine, settings) == 3
    assert order.first_with(1) == {1, 2, 3} and order.first_with(2) == {2, 3}, order.seen
    got = captured(engine)
    assert max(got[2].processed_at, got[3].processed_at) < got[1].processed_at
    assert got[1].plate_source == "center" and got[3].plate_source is None
