"""Hostile and careless packets (issue 17): each is refused with its reason and answered to
its sender, the rest of its batch is stored, refusals are logged in bounded lines, and one
unit flooding the center with a bad packet never holds up another unit's packets."""

import contextlib
import json
import logging
import time

import pytest
import zmq
import zmq.auth
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from test_transport_faults import make_site, wait_for

from center.db import make_engine, upgrade
from center.ingest import REFUSAL_LOG_S, Incoming, Ingestor, RefusalLog, enrol_device
from center.ingest_models import Refusal, StoredImage, StoredPacket
from center.receiver import Receiver
from center.settings import ReceiverSettings
from evidence.keys import make_keys
from evidence.packet import (
    GENESIS_HASH,
    MAX_DEPTH,
    PacketError,
    canonical_bytes,
    decode_packet,
)
from evidence.signing import SignedPacket, load_signing_key, new_signing_key, public_pem
from evidence.wire import packet_frames, parse_ack
from sim.evidence import draft, fake_jpeg

KEY = new_signing_key()
CURVE = zmq.curve_keypair()[0].decode()
DEEP = 100_000
FLOOD_S = REFUSAL_LOG_S + 1.5
"""The flood lasts past one logging interval."""


@pytest.fixture
def center(center_db_url, tmp_path):
    engine = make_engine(center_db_url)
    upgrade(engine)
    enrol_device(engine, "dev-1", public_pem(KEY), CURVE)
    ingestor = Ingestor(engine, tmp_path / "images")
    yield engine, ingestor
    ingestor.close()
    engine.dispose()


def signed_data(data: dict, key=KEY, images: tuple[bytes, ...] = ()) -> SignedPacket:
    """A packet of any content, validly signed by the device (canonical form kept)."""
    meta = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False
                      ).encode("utf-8")
    return SignedPacket(meta, key.sign(meta), images)


def good(seq: int, device: str = "dev-1") -> dict:
    data = json.loads(canonical_bytes(draft(device, seq)))
    data["sequence"] = seq
    data["previous_hash"] = GENESIS_HASH
    return data


def deep_packet(seq: int, device: str = "dev-1", key=KEY) -> SignedPacket:
    """A validly signed packet whose signal parameters nest 100 000 levels."""
    data = good(seq, device)
    data["trail"]["signal_parameters"] = {"x": "@"}
    text = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    meta = text.replace(b'"@"', b"[" * DEEP + b"]" * DEEP)
    return SignedPacket(meta, key.sign(meta))


def batch_with(bad: SignedPacket) -> list[Incoming]:
    """Three good packets around the bad one."""
    return [Incoming(packet_frames(signed_data(good(1)))), Incoming(packet_frames(bad)),
            Incoming(packet_frames(signed_data(good(2)))),
            Incoming(packet_frames(signed_data(good(3))))]


def count(engine, model, *where) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model).where(*where)).scalar()


def assert_refused_alone(engine, ingestor, bad: SignedPacket, reason: str, sequence: int
                         ) -> str:
    """The bad packet refused for ``reason`` and named (so its unit is answered); the
    others of its batch stored and acknowledged. Returns the refusal's detail."""
    out = ingestor.ingest(batch_with(bad))
    assert [o.status for o in out] == ["ok", "refused", "ok", "ok"], out
    refused = out[1]
    assert refused.reason == reason, refused
    assert (refused.device_id, refused.sequence) == ("dev-1", sequence)
    assert count(engine, StoredPacket) == 3
    assert count(engine, Refusal, Refusal.reason == reason) == 1
    assert ingestor.refused[reason] == 1
    return refused.detail


def test_a_packet_nesting_100000_levels_is_refused_and_its_batch_stored(center):
    engine, ingestor = center
    detail = assert_refused_alone(engine, ingestor, deep_packet(9), "too_deep", 9)
    assert f"the limit is {MAX_DEPTH}" in detail


def test_a_sequence_of_2_63_is_refused_with_its_reason(center):
    engine, ingestor = center
    data = good(9)
    data["sequence"] = 2**63
    detail = assert_refused_alone(engine, ingestor, signed_data(data), "field", 2**63)
    assert "sequence" in detail
    with engine.connect() as conn:  # kept as the refusal's detail: no BIGINT holds it
        assert conn.execute(select(Refusal.sequence)).scalar() is None


def test_a_lane_of_2_63_is_refused_with_its_reason(center):
    engine, ingestor = center
    data = good(9)
    data["lane"] = 2**63
    assert "lane" in assert_refused_alone(engine, ingestor, signed_data(data), "field", 9)


def test_a_50_mb_image_is_refused_not_stored(center):
    engine, ingestor = center
    huge = b"\xff\xd8" + bytes(50_000_000)
    packet = draft("dev-1", 9, suspected=True, images=(huge,))
    data = json.loads(canonical_bytes(packet))
    data["sequence"] = 9
    detail = assert_refused_alone(engine, ingestor, signed_data(data, images=(huge,)),
                                  "image_too_large", 9)
    assert "receiver.max_image_bytes" in detail and "10000000" in detail
    assert count(engine, StoredImage) == 0
    assert not [p for p in ingestor.images_dir.rglob("*") if p.is_file()]


def test_a_nul_character_in_a_text_is_refused_and_its_batch_stored(center):
    engine, ingestor = center
    data = good(9)
    data["site"] = "G60\u0000"  # PostgreSQL stores no NUL in a text
    assert_refused_alone(engine, ingestor, signed_data(data), "nul_character", 9)
    data = good(4, device="dev\u0000x")  # unknown device: its refusal row names it
    out = ingestor.ingest([Incoming(packet_frames(signed_data(data, key=new_signing_key()))),
                           Incoming(packet_frames(signed_data(good(4))))])
    assert [o.status for o in out] == ["refused", "ok"], out
    assert out[0].reason == "nul_character" and count(engine, StoredPacket) == 4


def test_limits_are_settings(center_db_url, tmp_path):
    engine = make_engine(center_db_url)
    upgrade(engine)
    enrol_device(engine, "dev-1", public_pem(KEY), CURVE)
    ingestor = Ingestor(engine, tmp_path / "images",
                        limits=ReceiverSettings(max_images=1, max_packet_bytes=30_000))
    try:
        imgs = tuple(fake_jpeg(12_000, k) for k in range(2))
        for n, (images, reason) in enumerate([(imgs, "too_many_images"),
                                              (imgs[:1] * 1, None)], start=1):
            data = json.loads(canonical_bytes(draft("dev-1", n, suspected=True,
                                                    images=images)))
            data["sequence"] = n
            out = ingestor.ingest([Incoming(packet_frames(signed_data(data, images=images)))])
            assert out[0].reason == (reason or ""), out
        big = (fake_jpeg(31_000, 7),)
        data = json.loads(canonical_bytes(draft("dev-1", 3, suspected=True, images=big)))
        data["sequence"] = 3
        out = ingestor.ingest([Incoming(packet_frames(signed_data(data, images=big)))])
        assert out[0].reason == "packet_too_large" and "30000" in out[0].detail
    finally:
        ingestor.close()
        engine.dispose()


@pytest.mark.parametrize("text", ['=HYPERLINK("x")', "+1234567", "@SUM(A1)", "皖AI2345",
                                  "ABCDEFG"])
def test_a_plate_text_outside_the_grammar_is_refused(center, text):
    engine, ingestor = center
    data = good(9)
    data["plate"]["text"] = text
    detail = assert_refused_alone(engine, ingestor, signed_data(data), "plate", 9)
    assert "fits no template" in detail


def test_plate_texts_that_fit_are_stored(center):
    _engine, ingestor = center
    texts = [("皖A12345", "blue"), ("粤B1234挂", "yellow"), ("京AD12345", "unknown"),
             ("", "unknown")]
    msgs = []
    for n, (text, colour) in enumerate(texts, start=1):
        data = good(n)
        data["plate"].update(text=text, colour=colour, unread=text == "")
        msgs.append(Incoming(packet_frames(signed_data(data))))
    assert [o.status for o in ingestor.ingest(msgs)] == ["ok"] * 4
    # a known colour must be one of the template's colours: no yellow new-energy car
    data = good(5)
    data["plate"].update(text="京AD12345", colour="blue")
    assert ingestor.ingest([Incoming(packet_frames(signed_data(data)))])[0].reason == "plate"


def test_a_bad_packet_of_an_unknown_signer_is_refused_without_an_answer(center):
    _engine, ingestor = center
    out = ingestor.ingest([Incoming(packet_frames(deep_packet(5, key=new_signing_key())))])
    assert out[0].status == "refused" and out[0].reason == "signature"
    assert out[0].device_id == "dev-1"  # answered only over dev-1's own connection
    out = ingestor.ingest([Incoming(packet_frames(deep_packet(5, key=KEY)), peer="other")])
    assert out[0].reason == "too_deep" and out[0].device_id is None


def test_refusals_are_logged_once_per_kind_and_sender_per_interval(caplog):
    refusals = RefusalLog(interval_s=0.2, logger=logging.getLogger("test.refusals"))
    caplog.set_level(logging.WARNING, "test.refusals")
    t_end = time.monotonic() + 0.5
    n = 0
    while time.monotonic() < t_end:
        refusals.add("demo-east", "too_deep", "nesting too deep (limit 32)", "demo-east#1")
        refusals.add("demo-west", "plate", "plate text fits no template", "demo-west#1")
        n += 1
        time.sleep(0.001)
    time.sleep(0.2)
    refusals.flush()
    lines = [r.getMessage() for r in caplog.records]
    assert n > 100 and 4 <= len(lines) <= 8, lines
    east = [x for x in lines if "demo-east" in x]
    assert east[0] == "refused a packet (too_deep) from demo-east: demo-east#1"
    assert all(x.endswith("nesting too deep (limit 32)") for x in east[1:])
    assert sum(int(x.split()[1]) for x in east[1:]) == n - 1


# Decoding never raises anything but PacketError ------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=40)


@pytest.mark.slow
@settings(max_examples=20_000, deadline=None, derandomize=True)
@given(st.binary(max_size=20_000) | JSON.map(lambda v: json.dumps(v).encode()))
def test_arbitrary_bytes_decode_or_raise_packet_error_longer(meta):
    _decodes_or_packet_error(meta)


def _decodes_or_packet_error(meta: bytes) -> None:
    with contextlib.suppress(PacketError):
        decode_packet(meta)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_decode_or_raise_packet_error(meta):
    _decodes_or_packet_error(meta)



@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(JSON, st.sampled_from(["", "trail.signal_parameters", "vehicle", "sequence", "lane",
                              "plate", "images"]),
       st.integers(0, 3 * MAX_DEPTH))
def test_arbitrary_json_in_a_packet_decodes_or_raises_packet_error(value, where, depth):
    data = good(1)
    node = value
    for _ in range(depth):
        node = [node] if depth % 2 else {"k": node}
    if where:
        *path, last = where.split(".")
        parent = data
        for key in path:
            parent = parent[key]
        parent[last] = node
    else:
        data = node
    meta = json.dumps(data, allow_nan=True).encode()
    _decodes_or_packet_error(meta)
    _decodes_or_packet_error(meta.replace(b"1", b"9" * 5000, 1))  # a 5000-digit number
    _decodes_or_packet_error(b"[" * 5000 + meta + b"]" * 5000)


# The flood -------------------------------------------------------------------------------

def test_a_unit_flooding_bad_packets_does_not_hold_up_another(tmp_path, center_db_url,
                                                              caplog):
    """One enrolled unit sends the 100 000-level packet every 10 ms while a second unit
    delivers 1 000 valid packets: all 1 000 acknowledged and stored, the bad ones refused,
    answered and counted, the log bounded."""
    caplog.set_level(logging.WARNING, "zhichao.center")
    site = make_site(tmp_path, center_db_url)  # dev-1: keys "edge"
    make_keys(site.keys, "edge2")
    site.enrol("edge2", "dev-2")
    rx = Receiver(site.settings, site.engine)
    rx.start()
    ctx = zmq.Context()
    bad = ctx.socket(zmq.DEALER)
    pub, sec = zmq.auth.load_certificate(site.keys / "edge.key_secret")
    bad.curve_publickey, bad.curve_secretkey = pub, sec
    bad.curve_serverkey = zmq.auth.load_certificate(site.keys / "center.key")[0]
    bad.zap_domain = b"zhichao"
    bad.linger = 0
    bad.connect(site.endpoint)
    key = load_signing_key(site.keys / "edge.sign")
    box = site.outbox("edge2")
    tx = site.sender(box, "edge2")
    sent = answered = 0
    t0 = time.monotonic()
    try:
        items = [(draft("dev-2", i), ()) for i in range(1000)]
        for k in range(0, 1000, 100):
            box.put_many(items[k:k + 100])
        tx.start()
        delivered = None
        # the flood goes on past one logging interval, to see its count logged
        while delivered is None or time.monotonic() - t0 < FLOOD_S:
            assert time.monotonic() - t0 < 60, f"{box.counts()} after 60 s"
            if delivered is None and box.counts()["acked"] == 1000:
                delivered = time.monotonic() - t0
            sent += 1
            bad.send_multipart(packet_frames(deep_packet(sent, key=key)))
            while bad.poll(0):
                ack = parse_ack(bad.recv_multipart())
                assert ack.status == "refused" and ack.device_id == "dev-1"
                assert ack.reason.startswith("too_deep:")
                answered += len(ack.sequences)
            time.sleep(0.01)
        elapsed = time.monotonic() - t0
        assert delivered is not None
        wait_for(lambda: count(site.engine, Refusal, Refusal.device_id == "dev-1") == sent,
                 20, "every bad packet refused")
        time.sleep(0.3)
        while bad.poll(0):
            answered += len(parse_ack(bad.recv_multipart()).sequences)
    finally:
        tx.stop()
        rx.stop()
        bad.close()
        ctx.term()
    stored = site.stored()
    assert len(stored) == 1000 and tx.status.acked == 1000
    assert rx.ingestor.refused["too_deep"] == sent and answered == sent
    lines = [r for r in caplog.records if "refused" in r.getMessage()]
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    # one line at the first refusal, then one per 10 s with the count
    assert 2 <= len(lines) <= 2 + elapsed / REFUSAL_LOG_S, [r.getMessage() for r in lines]
    summary = lines[1].getMessage()
    assert summary.startswith("refused ") and "from dev-1 in " in summary
    assert summary.endswith(f"nesting too deep (limit {MAX_DEPTH})")
    print(f"flood: 1000 packets acknowledged in {delivered:.1f} s; {sent} bad packets in "
          f"{elapsed:.1f} s, all refused and answered; {len(lines)} log lines of refusals: "
          + " | ".join(r.getMessage()[:90] for r in lines))
    site.engine.dispose()
