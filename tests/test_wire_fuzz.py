"""Wire messages of any frames (issue 17: every parser of outside input fuzzed).

What a center receives (:func:`evidence.wire.parse_packet`, :func:`evidence.wire.kind`,
the claim of device and sequence read from undecodable bytes, the verification) and what
an edge receives (:func:`evidence.wire.parse_ack`) give their result or a PacketError,
never another exception; a real packet with any one change is refused, and through the
real ingestor any batch of frames ends with one outcome per message, the valid packet
beside them stored."""

import contextlib
import itertools
from collections.abc import Iterator, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_center_hostile_packets import CURVE, KEY, good, signed_data

from center.db import make_engine, upgrade
from center.ingest import Incoming, Ingestor, _claimed, enrol_device
from evidence.packet import PacketError
from evidence.signing import public_pem, sign, verify
from evidence.wire import (
    ACK,
    PACKET,
    PING,
    Ack,
    ack_frames,
    kind,
    packet_frames,
    parse_ack,
    parse_packet,
)
from sim.evidence import draft, fake_jpeg

BOUNDED = settings(max_examples=300, deadline=None, derandomize=True, database=None)
LONG = settings(max_examples=10_000, deadline=None, derandomize=True, database=None)

FRAME = st.binary(max_size=64) | st.sampled_from(
    [PACKET, ACK, PING, b"", b"ok", b"refused", bytes(8), b"\xff" * 8, PACKET + b"x"])
FRAMES = st.lists(FRAME, max_size=8)
"""Any frames, often the magic words and the values an ack holds."""


@st.composite
def ack_like(draw: st.DrawFn) -> list[bytes]:
    """Five frames, first the ack's: each of the others valid or not."""
    status = draw(st.sampled_from([b"ok", b"refused", b"OK", b"", b"\xff"]) | st.binary(
        max_size=8))
    device = draw(st.text(max_size=20).map(str.encode) | st.binary(max_size=20))
    seqs = draw(st.lists(st.integers(0, 2**64 - 1), max_size=6).map(
        lambda xs: b"".join(x.to_bytes(8, "big") for x in xs)) | st.binary(max_size=30))
    reason = draw(st.text(max_size=40).map(str.encode) | st.binary(max_size=40))
    return [ACK, status, device, seqs, reason]


def views(frames: Sequence[bytes], as_views: bool) -> list[bytes | memoryview]:
    """The frames as the center holds them (memoryviews of the received frames) or as
    bytes."""
    return [memoryview(f) if as_views else f for f in frames]


# The center's parsers ----------------------------------------------------------------

def center_reads(frames: Sequence[bytes | memoryview]) -> None:
    """Everything the center does with a message's bytes before it trusts them."""
    assert kind(frames) == (bytes(frames[0][:4]) if frames else b"")
    try:
        signed = parse_packet(frames)
    except PacketError as exc:
        assert "not a packet message" in str(exc)
        return
    assert bytes(frames[0]) == PACKET and len(frames) >= 3
    assert signed.meta == bytes(frames[1]) and signed.signature == bytes(frames[2])
    assert signed.size == sum(len(f) for f in frames[1:])
    claimed = _claimed(signed.meta)
    if claimed is not None:
        device_id, sequence = claimed
        assert isinstance(device_id, str) and 0 <= sequence < 2**64
    with contextlib.suppress(PacketError):
        signed.packet  # noqa: B018 (decoding is what is tried)
    with pytest.raises(PacketError):  # no frames drawn here carry the device's signature
        verify(signed, KEY.public_key())


@BOUNDED
@given(FRAMES, st.booleans())
def test_any_frames_parse_as_a_packet_or_raise_packet_error(frames, as_views):
    center_reads(views(frames, as_views))


@BOUNDED
@given(st.lists(FRAME, max_size=6), st.booleans())
def test_any_frames_after_the_packet_word_parse_or_raise_packet_error(rest, as_views):
    center_reads(views([PACKET, *rest], as_views))


@BOUNDED
@given(st.binary(max_size=400) | st.sampled_from([
    b'{"device_id":"dev-1","sequence":18446744073709551616}',
    b'{"device_id":"\xff\xfe","sequence":1}', b'{"sequence":' + b"9" * 5000 + b"}",
    b'"device_id":"' + b"a" * 3000 + b'","sequence":7']))
def test_the_claim_read_from_undecodable_bytes_is_a_device_and_an_ack_s_sequence(meta):
    claimed = _claimed(meta)
    assert claimed is None or (isinstance(claimed[0], str) and 0 <= claimed[1] < 2**64)


# The edge's parser -----------------------------------------------------------------------

def edge_reads(frames: Sequence[bytes | memoryview]) -> None:
    """parse_ack gives an Ack that is those very frames, or a PacketError."""
    try:
        ack = parse_ack(frames)
    except PacketError as exc:
        assert str(exc)
        return
    assert ack.status in ("ok", "refused")
    assert ack_frames(ack) == [bytes(f) for f in frames]


@BOUNDED
@given(FRAMES | ack_like(), st.booleans())
def test_any_frames_parse_as_an_ack_or_raise_packet_error(frames, as_views):
    edge_reads(views(frames, as_views))


@BOUNDED
@given(st.builds(Ack, st.sampled_from(["ok", "refused"]), st.text(max_size=30),
                 st.lists(st.integers(0, 2**64 - 1), max_size=20).map(tuple),
                 st.text(max_size=60)))
def test_acks_round_trip(ack):
    assert parse_ack(ack_frames(ack)) == ack


# A real packet, changed ------------------------------------------------------------------

IMAGES = (fake_jpeg(600, 1), fake_jpeg(700, 2))
REAL = packet_frames(sign(draft("dev-1", 3, suspected=True, images=IMAGES), IMAGES, KEY))


@st.composite
def changed(draw: st.DrawFn) -> list[bytes]:
    """The real packet's frames with one change: a bit flipped, a frame cut, dropped,
    doubled or swapped with the next, or bytes appended to a frame."""
    frames = list(REAL)
    at = draw(st.integers(1, len(frames) - 1))
    how = draw(st.sampled_from(["flip", "cut", "drop", "double", "swap", "append"]))
    if how == "flip":
        byte = draw(st.integers(0, len(frames[at]) - 1))
        bit = draw(st.integers(0, 7))
        frame = bytearray(frames[at])
        frame[byte] ^= 1 << bit
        frames[at] = bytes(frame)
    elif how == "cut":
        frames[at] = frames[at][:draw(st.integers(0, len(frames[at]) - 1))]
    elif how == "drop":
        del frames[at]
    elif how == "double":
        frames.insert(at, frames[at])
    elif how == "swap":
        at = min(at, len(frames) - 2)
        frames[at], frames[at + 1] = frames[at + 1], frames[at]
    else:
        frames[at] += draw(st.binary(min_size=1, max_size=8))
    return frames


@BOUNDED
@given(changed(), st.booleans())
def test_a_real_packet_with_any_one_change_is_refused(frames, as_views):
    assert verify(parse_packet(REAL), KEY.public_key()).device_id == "dev-1"
    signed = parse_packet(views(frames, as_views))
    if [bytes(f) for f in frames] == REAL:  # a swap of two equal frames changes nothing
        return
    with pytest.raises(PacketError):
        verify(signed, KEY.public_key())


# Through the real ingestor ---------------------------------------------------------------

MESSAGE = st.one_of(FRAMES, st.lists(FRAME, max_size=5).map(lambda r: [PACKET, *r]),
                    changed())
"""Any message a sender may send: any frames, the packet word and any frames, or a real
packet changed."""


@pytest.fixture
def ingestor(tmp_path):
    """A center on SQLite with dev-1 enrolled, and the sequences of its valid packets."""
    engine = make_engine(f"sqlite:///{tmp_path / 'center.db'}")
    upgrade(engine)
    enrol_device(engine, "dev-1", public_pem(KEY), CURVE)
    ingestor = Ingestor(engine, tmp_path / "images")
    yield ingestor, itertools.count(1)
    ingestor.close()
    engine.dispose()


def ingest_any(ingestor: Ingestor, sequences: Iterator[int], data: st.DataObject) -> None:
    """A batch of arbitrary messages around one valid packet: one outcome per message,
    the valid packet stored."""
    bad = data.draw(st.lists(MESSAGE, max_size=4))
    at = data.draw(st.integers(0, len(bad)))
    sequence = next(sequences)
    batch = [Incoming(views(m, True)) for m in bad]
    batch.insert(at, Incoming(packet_frames(signed_data(good(sequence)))))
    out = ingestor.ingest(batch)
    assert len(out) == len(batch)
    assert all(o.status in ("ok", "refused") for o in out)
    assert out[at].status == "ok" and out[at].sequence == sequence, out[at]


@settings(max_examples=80, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_any_batch_of_messages_ends_with_an_outcome_each_and_the_valid_one_stored(
        ingestor, data):
    ingest_any(*ingestor, data)


# Longer runs ------------------------------------------------------------------------------

@pytest.mark.slow
@LONG
@given(FRAMES | ack_like() | st.lists(FRAME, max_size=6).map(lambda r: [PACKET, *r])
       | changed(), st.booleans())
def test_any_frames_long_run(frames, as_views):
    center_reads(views(frames, as_views))
    edge_reads(views(frames, as_views))


@pytest.mark.slow
@settings(max_examples=1500, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_any_batch_of_messages_long_run(ingestor, data):
    ingest_any(*ingestor, data)
