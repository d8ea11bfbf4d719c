"""The center's pong carries its rule tables' digest; an old pong (one frame) is still a
pong, and a damaged digest is refused naming what it got."""

import time

import pytest
import zmq

from edge.outbox import Outbox
from edge.sender import Sender, SenderOptions
from evidence.packet import PacketError
from evidence.signing import new_signing_key
from evidence.wire import PING, parse_pong, pong_frames
from overload import load_rules

pytestmark = pytest.mark.timeout(30)


def test_a_pong_carries_the_digest_and_an_old_one_none():
    digest = load_rules().digest
    assert pong_frames(digest) == [PING, digest.encode("ascii")]
    assert parse_pong(pong_frames(digest)) == digest
    assert parse_pong([PING]) is None


@pytest.mark.parametrize("frames", [[b"ZCA1", b"0" * 64], [], [PING, b"0" * 63],
                                    [PING, b"0" * 63 + b"g"], [PING, b"A" * 64]])
def test_a_bad_pong_is_refused(frames):
    with pytest.raises(PacketError, match="pong"):
        parse_pong(frames)


def test_a_sender_takes_a_pong_with_or_without_the_digest(tmp_path):
    """An old center's pong (one frame) is heard as alive; a new one's tells the digest."""
    server_public, server_secret = zmq.curve_keypair()
    client_public, client_secret = zmq.curve_keypair()
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.curve_server = True
    router.curve_publickey, router.curve_secretkey = server_public, server_secret
    port = router.bind_to_random_port("tcp://127.0.0.1")
    box = Outbox(tmp_path / "outbox.db", new_signing_key())
    tx = Sender(box, [f"tcp://127.0.0.1:{port}"], server_public=server_public,
                client_public=client_public, client_secret=client_secret,
                options=SenderOptions(heartbeat_s=0.2, failover_s=30.0))
    digest = load_rules().digest

    def answer(pong: list[bytes]) -> None:
        assert router.poll(5000), "no ping from the sender within 5 s"
        identity, *frames = router.recv_multipart()
        assert frames == [PING]
        router.send_multipart([identity, *pong])

    tx.start()
    try:
        answer([PING])
        deadline = time.monotonic() + 5
        while tx.status.last_heard_at is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert tx.status.last_heard_at is not None and tx.status.center_rules_digest is None
        answer(pong_frames(digest))
        while tx.status.center_rules_digest is None and time.monotonic() < deadline + 5:
            time.sleep(0.01)
        assert tx.status.center_rules_digest == digest
        assert tx.status.failovers == 0
    finally:
        tx.stop()
        box.close()
        router.close(linger=0)
        ctx.term()
