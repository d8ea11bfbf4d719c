"""The messages a roadside unit and the center exchange over ZeroMQ (DEALER → ROUTER).

Each message is multipart; its first frame names the kind and version, so either end can
refuse what it does not know (docs/evidence.md has the table):

- packet, edge → center: ``[b"ZCP1", meta, signature, image 1, image 2, ...]``
- ack, center → edge: ``[b"ZCA1", status, device_id, sequences, reason]``; ``status`` is
  ``b"ok"`` (stored, or stored before: the edge may forget it) or ``b"refused"`` (will
  never be stored: resending cannot help); ``sequences`` is 8 bytes big-endian per packet;
  ``reason`` is UTF-8 text, empty for ``ok``.
- ping/pong: a ping is ``[b"ZCH1"]``; the center answers ``[b"ZCH1", rules_digest]``, so
  an idle edge knows its center is alive and which rule tables it grades with
  (``rules_digest``: the SHA-256 hex of :attr:`overload.RuleBook.digest`, 64 ASCII
  characters; ``zhichao edge doctor`` compares it with the unit's). A center of before the
  digest answers ``[b"ZCH1"]`` alone; either pong is taken (:func:`parse_pong`), and a
  center answers a ping whatever follows its first frame.

These pings are the heartbeats. ZMTP's own (``ZMQ_HEARTBEAT_IVL``) are off at both ends,
and TCP keepalive finds dead connections instead (:func:`tcp_keepalive`).

Parse errors are :class:`~evidence.packet.PacketError` naming the frame.
"""

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import zmq

from evidence.packet import PacketError
from evidence.signing import SignedPacket

PACKET = b"ZCP1"
ACK = b"ZCA1"
PING = b"ZCH1"
DIGEST_CHARS = 64
"""A SHA-256 digest in hex, as a pong carries the rule tables'."""
AckStatus = Literal["ok", "refused"]


@dataclass(frozen=True)
class Ack:
    """The center's answer about some packets of one device."""

    status: AckStatus
    device_id: str
    sequences: tuple[int, ...]
    reason: str = ""


def packet_frames(signed: SignedPacket) -> list[bytes]:
    """The frames of a packet message."""
    return [PACKET, signed.meta, signed.signature, *signed.images]


def parse_packet(frames: Sequence[bytes | memoryview]) -> SignedPacket:
    """A packet message's frames → SignedPacket (not yet verified). Image frames given as
    memoryviews stay views: an image is hashed and written, never changed, and a copy of
    each would cost the center a tenth of its CPU."""
    if len(frames) < 3 or frames[0] != PACKET:
        raise PacketError(f"not a packet message: {len(frames)} frames, first "
                          f"{bytes(frames[0][:8]) if frames else b''!r}, expected {PACKET!r} "
                          "then metadata and signature")
    return SignedPacket(bytes(frames[1]), bytes(frames[2]),
                        tuple(f if isinstance(f, memoryview) else bytes(f) for f in frames[3:]))


def ack_frames(ack: Ack) -> list[bytes]:
    """The frames of an ack message."""
    seqs = struct.pack(f">{len(ack.sequences)}Q", *ack.sequences)
    return [ACK, ack.status.encode("ascii"), ack.device_id.encode("utf-8"), seqs,
            ack.reason.encode("utf-8")]


def parse_ack(frames: Sequence[bytes]) -> Ack:
    """An ack message's frames → Ack."""
    if len(frames) != 5 or frames[0] != ACK:
        raise PacketError(f"not an ack message: {len(frames)} frames, expected 5 starting "
                          f"with {ACK!r}")
    status = bytes(frames[1]).decode("ascii", "replace")
    if status not in ("ok", "refused"):
        raise PacketError(f"ack status {status!r} is not 'ok' or 'refused'")
    raw = bytes(frames[3])
    if len(raw) % 8:
        raise PacketError(f"ack sequences frame has {len(raw)} bytes, not a multiple of 8")
    try:
        device_id = bytes(frames[2]).decode("utf-8")
        reason = bytes(frames[4]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PacketError(f"ack text is not UTF-8: {exc}") from None
    return Ack(status, device_id, struct.unpack(f">{len(raw) // 8}Q", raw),  # type: ignore[arg-type]
               reason)


def pong_frames(rules_digest: str) -> list[bytes]:
    """The frames of the center's answer to a ping: the kind and its rule tables' digest."""
    return [PING, rules_digest.encode("ascii")]


def parse_pong(frames: Sequence[bytes]) -> str | None:
    """A pong's rule-table digest; None for a pong without one (a center of before the
    digest). PacketError if it is not a pong or the digest is not 64 hex characters."""
    if not frames or bytes(frames[0]) != PING:
        raise PacketError(f"not a pong: first frame {bytes(frames[0][:8]) if frames else b''!r}"
                          f", expected {PING!r}")
    if len(frames) == 1:
        return None
    raw = bytes(frames[1])
    if len(raw) != DIGEST_CHARS or raw.strip(b"0123456789abcdef"):
        raise PacketError(f"pong rule-table digest {raw[:80]!r} is not {DIGEST_CHARS} "
                          "lowercase hex characters")
    return raw.decode("ascii")


def kind(frames: Sequence[bytes]) -> bytes:
    """The first frame: which kind of message this is."""
    return bytes(frames[0][:4]) if frames else b""


KEEPALIVE_PROBES = 3
"""Unanswered TCP keepalive probes before the kernel drops a connection."""


def tcp_keepalive(sock: zmq.Socket, idle_s: float) -> None:
    """Let the kernel find a dead peer: after ``idle_s`` of silence it probes every
    ``idle_s`` and drops the connection after :data:`KEEPALIVE_PROBES` unanswered probes.

    This stands in for ZMTP heartbeats, which neither end sets: libzmq 4.3.5 (the latest
    release) aborts the whole process with ``Assertion failed: !_io_error
    (src/stream_engine_base.cpp:310)`` when a heartbeat timer fires on a connection whose
    input stopped because its receive queue was full (libzmq issue #4364). A center that
    stores more slowly than its edges send is in exactly that state.
    tests/test_transport_sockets.py keeps both ends in it."""
    seconds = max(1, round(idle_s))
    sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
    sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, seconds)
    sock.setsockopt(zmq.TCP_KEEPALIVE_INTVL, seconds)
    sock.setsockopt(zmq.TCP_KEEPALIVE_CNT, KEEPALIVE_PROBES)
