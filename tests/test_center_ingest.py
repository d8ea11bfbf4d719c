"""The center's ingestion on SQLite and PostgreSQL: verify, store once, record gaps and
chain breaks, refuse what is wrong with its reason; images are files named by SHA-256."""

import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest
import zmq
from sqlalchemy import func, select

from center.db import make_engine, upgrade
from center.ingest import (
    Checked,
    Incoming,
    IngestError,
    Ingestor,
    StoreError,
    enrol_device,
    enrol_from_files,
    enrolled_curve_keys,
)
from center.ingest_models import (
    PacketImage,
    Refusal,
    SequenceGap,
    StoredImage,
    StoredPacket,
)
from edge.outbox import Outbox
from evidence.keys import make_keys
from evidence.signing import SignedPacket, new_signing_key, public_pem, sign
from evidence.wire import packet_frames
from sim.evidence import draft, fake_jpeg

KEY = new_signing_key()
CURVE = zmq.curve_keypair()[0].decode()


@pytest.fixture
def center(center_db_url, tmp_path):
    engine = make_engine(center_db_url)
    upgrade(engine)
    enrol_device(engine, "dev-1", public_pem(KEY), CURVE)
    ingestor = Ingestor(engine, tmp_path / "images")
    yield engine, ingestor
    ingestor.close()
    engine.dispose()


def packets(tmp_path: Path, n: int, every: int = 3, *, device: str = "dev-1", key=KEY,
            lane: int = 1) -> list[SignedPacket]:
    """``n`` chained packets from a real outbox; every ``every``-th has 3 images."""
    box = Outbox(tmp_path / f"{device}.db", key)
    items = []
    for i in range(1, n + 1):
        imgs = tuple(fake_jpeg(5_000, i * 3 + j) for j in range(3)) if i % every == 0 else ()
        items.append((draft(device, i, suspected=bool(imgs), images=imgs, lane=lane), imgs))
    box.put_many(items)
    return [s for _, s in box.pending(n)]


def msgs(signed: list[SignedPacket], peer: str = "") -> list[Incoming]:
    return [Incoming(packet_frames(s), peer) for s in signed]


def count(engine, model, *where) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model).where(*where)).scalar()


def test_a_batch_is_stored_once_with_its_image_files(center, tmp_path):
    engine, ingestor = center
    signed = packets(tmp_path, 9)
    out = ingestor.ingest(msgs(signed, CURVE))
    assert [(o.status, o.sequence, o.duplicate) for o in out] == [
        ("ok", n, False) for n in range(1, 10)]
    assert count(engine, StoredPacket) == 9 and count(engine, StoredImage) == 9
    with engine.connect() as conn:
        rows = conn.execute(select(StoredPacket.sequence, StoredPacket.chain_ok,
                                   StoredPacket.suspected_overload, StoredPacket.meta)
                            .order_by(StoredPacket.sequence)).all()
    assert [r.chain_ok for r in rows] == [True] * 9
    assert [r.suspected_overload for r in rows] == [n % 3 == 0 for n in range(1, 10)]
    assert rows[2].meta == signed[2].meta
    for data in signed[5].images:
        sha = hashlib.sha256(data).hexdigest()
        assert ingestor.image_path(sha).read_bytes() == data
        assert ingestor.image_path(sha).parent.name == sha[:2]
    assert not list((tmp_path / "images").rglob("*.tmp"))
    with engine.connect() as conn:
        links = conn.execute(select(StoredPacket.sequence, PacketImage.position,
                                    PacketImage.role, PacketImage.sha256)
                             .join(PacketImage, PacketImage.packet_id == StoredPacket.id)
                             .order_by(StoredPacket.sequence, PacketImage.position)).all()
    assert [tuple(link) for link in links] == [
        (n, k, ref.role, ref.sha256) for n, s in enumerate(signed, 1) if s.images
        for k, ref in enumerate(s.packet.images)]


def temps(ingestor: Ingestor, *written: Checked) -> list[Path]:
    """The temporary image files, once the writes of these verified batches are done."""
    for checked in written:
        for f in checked.images.writes:
            f.result(timeout=30)
    return sorted(ingestor.images_dir.rglob("*.tmp"))


def test_a_batch_verified_while_another_is_stored_writes_each_image_once(center, tmp_path):
    """The receiver verifies the next batch (which starts writing its images) while the
    one before is stored. A replay in the second batch of a packet of the first wrote its
    images again before the first was committed: the store drops those copies and names
    only what no committed row names yet."""
    engine, ingestor = center
    signed = packets(tmp_path, 9)
    first = ingestor.verify(msgs(signed[:6]))
    assert len(temps(ingestor, first)) == 6  # packets 3 and 6, written from verification on
    second = ingestor.verify(msgs(signed[2:9]))  # 3 and 6 again, then 9
    assert len(temps(ingestor, second)) == 15
    assert [o.status for o in ingestor.store(first)] == ["ok"] * 6
    out = ingestor.store(second)
    assert [(o.sequence, o.duplicate) for o in out] == [
        (n, n <= 6) for n in range(3, 10)]
    assert temps(ingestor) == []
    assert count(engine, StoredImage) == 9 and count(engine, PacketImage) == 9
    for s in signed[2::3]:
        for data in s.images:
            assert ingestor.image_path(hashlib.sha256(data).hexdigest()).read_bytes() == data


def test_a_verified_batch_abandoned_leaves_no_file(center, tmp_path):
    engine, ingestor = center
    checked = ingestor.verify(msgs(packets(tmp_path, 6)))
    assert len(temps(ingestor, checked)) == 6
    ingestor.abandon(checked)
    assert temps(ingestor) == [] and count(engine, StoredPacket) == 0
    assert not [p for p in ingestor.images_dir.rglob("*") if p.is_file()]


def test_an_image_folder_that_cannot_be_made_fails_the_batch_naming_it(center, tmp_path):
    engine, ingestor = center
    signed = packets(tmp_path, 3)
    prefix = signed[2].packet.images[0].sha256[:2]
    (ingestor.images_dir / prefix).write_bytes(b"not a folder")
    with pytest.raises(StoreError, match=f"images/{prefix}"):
        ingestor.verify(msgs(signed))
    assert count(engine, StoredPacket) == 0 and temps(ingestor) == []
    (ingestor.images_dir / prefix).unlink()
    assert [o.status for o in ingestor.ingest(msgs(signed))] == ["ok"] * 3


def test_an_image_row_gone_since_verification_is_written_at_the_store(center, tmp_path):
    """Verification writes no image that a stored row names; should that row be gone by
    the store (the center never deletes one; a database restored from a backup could
    lose it), the store writes the image itself rather than name a file never written."""
    engine, ingestor = center
    enrol_device(engine, "dev-2", public_pem(KEY), zmq.curve_keypair()[0].decode())
    ingestor.ingest(msgs(packets(tmp_path / "a", 3)))  # packet 3 of dev-1: 3 images
    same = packets(tmp_path / "b", 3, device="dev-2")  # the same 3 images
    checked = ingestor.verify(msgs(same))
    assert temps(ingestor, checked) == []
    with engine.begin() as conn:
        conn.execute(PacketImage.__table__.delete())
        conn.execute(StoredImage.__table__.delete())
    for data in same[2].images:
        ingestor.image_path(hashlib.sha256(data).hexdigest()).unlink()
    assert [o.status for o in ingestor.store(checked)] == ["ok"] * 3
    assert count(engine, StoredImage) == 3 and temps(ingestor) == []
    for data in same[2].images:
        assert ingestor.image_path(hashlib.sha256(data).hexdigest()).read_bytes() == data


@pytest.fixture
def small_disk(tmp_path):
    """A real 32 kB file system (tmpfs), mounted for the test; skipped where mounting is
    not allowed."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", str(mnt)],
                          check=False, capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False, capture_output=True, timeout=10)


def test_images_that_do_not_fit_leave_nothing_stored(center, tmp_path, small_disk):
    """The image disk fills mid-batch: no row is committed, no partial file is left, the
    error names the cause; with room again the same batch is stored whole."""
    engine, _ = center
    ingestor = Ingestor(engine, small_disk / "images")
    try:
        signed = packets(tmp_path, 9)  # 3 packets with 3 images of 5 kB: 45 kB
        with pytest.raises(StoreError, match="No space left"):
            ingestor.ingest(msgs(signed, CURVE))
        assert count(engine, StoredPacket) == 0 and count(engine, StoredImage) == 0
        assert not list(small_disk.rglob("*.tmp"))
        subprocess.run(["mount", "-o", "remount,size=1m", str(small_disk)], check=True,
                       timeout=10)
        out = ingestor.ingest(msgs(signed, CURVE))
        assert [o.status for o in out] == ["ok"] * 9
        assert count(engine, StoredPacket) == 9 and count(engine, StoredImage) == 9
        for data in signed[2].images:
            assert ingestor.image_path(hashlib.sha256(data).hexdigest()).read_bytes() == data
    finally:
        ingestor.close()


def test_duplicates_and_replays_are_acknowledged_and_ignored(center, tmp_path):
    engine, ingestor = center
    signed = packets(tmp_path, 12)
    ingestor.ingest(msgs(signed[:6]))
    again = ingestor.ingest(msgs([signed[5], signed[6], signed[6], signed[2]]))
    assert [(o.status, o.sequence, o.duplicate) for o in again] == [
        ("ok", 6, True), ("ok", 7, False), ("ok", 7, True), ("ok", 3, True)]
    ingestor.ingest(msgs(signed[7:]))
    replay = ingestor.ingest(msgs(signed[:1]))  # an old packet, long after
    assert replay[0].duplicate and replay[0].status == "ok"
    assert count(engine, StoredPacket) == 12
    fresh = Ingestor(engine, tmp_path / "images")  # a restarted center knows them too
    assert all(o.duplicate for o in fresh.ingest(msgs(signed[:3])))
    fresh.close()
    assert count(engine, StoredPacket) == 12


def test_gaps_are_recorded_and_closed_chain_settled_late(center, tmp_path):
    engine, ingestor = center
    signed = packets(tmp_path, 8)
    ingestor.ingest(msgs(signed[:2]))
    ingestor.ingest(msgs([signed[5], signed[7]]))  # 3..5 and 7 missing
    with engine.connect() as conn:
        gaps = conn.execute(select(SequenceGap.first_missing, SequenceGap.last_missing,
                                   SequenceGap.closed_at).order_by(SequenceGap.id)).all()
        chain = dict(conn.execute(select(StoredPacket.sequence, StoredPacket.chain_ok)).all())
    assert [(g[0], g[1], g[2]) for g in gaps] == [(3, 5, None), (7, 7, None)]
    assert chain == {1: True, 2: True, 6: None, 8: None}
    ingestor.ingest(msgs([*signed[2:5], signed[6]]))
    with engine.connect() as conn:
        closed = conn.execute(select(SequenceGap.closed_at)).scalars().all()
        chain = dict(conn.execute(select(StoredPacket.sequence, StoredPacket.chain_ok)).all())
    assert all(c is not None for c in closed)
    assert chain == {n: True for n in range(1, 9)}


def test_a_broken_chain_is_stored_and_marked(center, tmp_path):
    engine, ingestor = center
    first = packets(tmp_path / "a", 3)
    other = packets(tmp_path / "b", 4, lane=2)  # same device and key, another history
    ingestor.ingest(msgs(first))
    out = ingestor.ingest(msgs([other[3]]))
    assert out[0].status == "ok"
    with engine.connect() as conn:
        assert conn.execute(select(StoredPacket.chain_ok).where(
            StoredPacket.sequence == 4)).scalar() is False


def refused(ingestor, message: Incoming) -> tuple[str, str]:
    out = ingestor.ingest([message])
    assert out[0].status == "refused"
    return out[0].reason, out[0].detail


def test_what_is_wrong_is_refused_with_its_reason_and_recorded(center, tmp_path):
    engine, ingestor = center
    signed = packets(tmp_path, 3)
    good = signed[2]
    image = bytearray(good.images[1])
    image[-10] ^= 0xFF
    meta = bytearray(good.meta)
    meta[meta.index(b'"lane":1') + 7] = ord("2")
    stranger = new_signing_key()
    unknown = sign(draft("dev-9", 1), (), stranger)
    foreign = sign(draft("dev-1", 1), (), stranger)
    cases = {
        "image": Incoming(packet_frames(SignedPacket(good.meta, good.signature,
                                                     (good.images[0], bytes(image),
                                                      good.images[2])))),
        "signature": Incoming(packet_frames(SignedPacket(bytes(meta), good.signature,
                                                         good.images))),
        "unknown_device": Incoming(packet_frames(unknown)),
        "malformed": Incoming([b"ZCP1", b"{not json", b"x" * 64]),
        "device_mismatch": Incoming(packet_frames(good), peer="another-curve-key"),
    }
    for reason, message in cases.items():
        got, detail = refused(ingestor, message)
        assert got == reason, (reason, detail)
    assert "image 2 (side): SHA-256 does not match" in refused(ingestor, cases["image"])[1]
    assert refused(ingestor, Incoming(packet_frames(foreign)))[0] == "signature"
    data = json.loads(sign(draft(), (), KEY).meta)
    data["schema"] = "zhichao.evidence/2.0"
    meta2 = json.dumps(data).encode()
    assert refused(ingestor, Incoming([b"ZCP1", meta2, KEY.sign(meta2)]))[0] == "schema"
    # the good ones still go in, in the same batch as a bad one
    out = ingestor.ingest([*msgs(signed), cases["image"]])
    assert [o.status for o in out] == ["ok", "ok", "ok", "refused"]
    assert count(engine, StoredPacket) == 3
    with engine.connect() as conn:
        reasons = conn.execute(select(Refusal.reason)).scalars().all()
    assert set(reasons) == {*cases, "schema", "signature"} and len(reasons) == 9


def test_another_packet_under_a_stored_sequence_is_a_conflict(center, tmp_path):
    engine, ingestor = center
    ingestor.ingest(msgs(packets(tmp_path / "a", 2)))
    other = packets(tmp_path / "b", 2, every=1, lane=2)
    out = ingestor.ingest(msgs(other))
    assert [(o.status, o.reason) for o in out] == [("refused", "conflict")] * 2
    assert count(engine, StoredPacket) == 2 and count(engine, StoredImage) == 0
    assert temps(ingestor) == []  # written from verification on, dropped at the store


def test_enrolment_checks_its_keys(center, tmp_path):
    engine, _ = center
    with pytest.raises(IngestError, match="dev-1 is enrolled already"):
        enrol_device(engine, "dev-1", public_pem(KEY), zmq.curve_keypair()[0].decode())
    with pytest.raises(IngestError, match=re.escape(f"CURVE key {CURVE} is enrolled already")):
        enrol_device(engine, "dev-2", public_pem(KEY), CURVE)
    with pytest.raises(IngestError, match="must be 40 characters of Z85"):
        enrol_device(engine, "dev-2", public_pem(KEY), "short")
    with pytest.raises(IngestError, match="signing key of device dev-2: not a PEM"):
        enrol_device(engine, "dev-2", "junk", zmq.curve_keypair()[0].decode())
    new_curve = zmq.curve_keypair()[0].decode()
    enrol_device(engine, "dev-1", public_pem(KEY), new_curve, replace=True)
    make_keys(tmp_path / "k", "g60")
    enrol_from_files(engine, "g60", tmp_path / "k" / "g60.sign.pub", tmp_path / "k" / "g60.key")
    assert enrolled_curve_keys(engine) == {
        new_curve, zmq.auth.load_certificate(tmp_path / "k" / "g60.key")[0].decode()}
    with pytest.raises(IngestError, match=r"nope\.key: not a CURVE key file"):
        enrol_from_files(engine, "g61", tmp_path / "k" / "g60.sign.pub", tmp_path / "nope.key")
