"""The center's pong carries its rule tables' digest; an old pong (one frame) is still a
pong, and a damaged digest is refused naming what it got."""

import pytest

from evidence.packet import PacketError
from evidence.wire import PING, parse_pong, pong_frames
from overload import load_rules


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
