"""The digitiser's raw sample frames: the bytes exactly as documented, decoding into
(channels, n) arrays, versions, sequence gaps, and a million corrupted frames (slow)."""

import struct

import numpy as np
import pytest

from drivers import digitiser
from drivers.crc import crc16_ccitt
from drivers.errors import ProtocolError
from drivers.framing import BAD, FRAME, NEED_MORE, Framer
from drivers.strips import StripArray
from sim.render import Renderer
from sim.serial_twins import Corrupter, Corruption
from sim.traffic import generate_traffic


def test_the_bytes_are_laid_out_as_documented():
    x = np.array([[1, 2], [3, 4], [5, -6]], dtype=np.int16)      # 3 channels, 2 samples
    frame = digitiser.encode_frame(x, sequence=0x01020304, t_device_us=0x1122334455)
    assert frame[:2] == b"\xa5\x5a"
    assert frame[2] == 0x10
    assert struct.unpack_from("<IQBH", frame, 3) == (0x01020304, 0x1122334455, 3, 2)
    assert int.from_bytes(frame[18:20], "little") == crc16_ccitt(frame[2:18])
    assert struct.unpack_from("<6h", frame, 20) == (1, 3, 5, 2, 4, -6)   # by sample
    assert int.from_bytes(frame[-2:], "little") == crc16_ccitt(frame[2:-2])
    assert len(frame) == 20 + 2 * 6 + 2


def test_decoding_gives_channels_by_samples_int16_read_only():
    rng = np.random.default_rng(3)
    x = rng.integers(-32768, 32768, (16, 100), dtype=np.int16)
    f = digitiser.decode(digitiser.encode_frame(x, 9, 123_456))
    assert (f.sequence, f.t_device_us, f.n_channels, f.n_samples) == (9, 123_456, 16, 100)
    assert f.samples.dtype == np.int16 and f.samples.shape == (16, 100)
    np.testing.assert_array_equal(f.samples, x)
    assert not f.samples.flags.writeable
    assert f.to_dict()["samples"] is f.samples


def test_rendered_site_samples_survive_the_round_trip_channel_by_channel():
    site = StripArray(lanes=2)
    renderer = Renderer(site, generate_traffic(site, 10.0, seed=2), seed=2)
    block = renderer.render(20_000, 500)
    frames = [digitiser.encode_frame(block[:, i:i + 100], i // 100, i * 100)
              for i in range(0, 500, 100)]
    out = Framer(digitiser.CODEC).feed(b"".join(frames))
    np.testing.assert_array_equal(np.concatenate([f.samples for f in out], axis=1), block)


def test_an_unknown_major_version_is_named():
    frame = digitiser.encode_frame(np.zeros((1, 1), np.int16), 4, 0, version=0x30)
    assert digitiser.check(frame, 0) == (FRAME, len(frame))
    with pytest.raises(ProtocolError, match=r"frame 4: version 3\.0 is unknown.*major "
                                            r"version 1"):
        digitiser.decode(frame)


def test_a_later_minor_version_is_read():
    frame = digitiser.encode_frame(np.ones((2, 3), np.int16), 4, 0, version=0x17)
    assert digitiser.decode(frame).version == 0x17


def test_a_corrupted_length_is_refused_at_once_not_waited_for():
    frame = bytearray(digitiser.encode_frame(np.zeros((4, 10), np.int16), 1, 0))
    frame[17] ^= 0x80                                  # n: 10 -> 32778 samples
    header_only = bytes(frame[:20])
    assert digitiser.check(header_only, 0) == (BAD, 0)
    assert digitiser.check(bytes(frame[:19]), 0) == (NEED_MORE, 0)


def test_too_many_samples_for_one_frame_are_refused_when_encoding():
    with pytest.raises(ValueError, match="at most 65536"):
        digitiser.encode_frame(np.zeros((64, 2048), np.int16), 0, 0)
    with pytest.raises(ValueError, match="int16"):
        digitiser.encode_frame(np.zeros((2, 2), np.float32), 0, 0)


def test_missing_frames_and_the_sequence_tracker():
    assert digitiser.missing_frames(None, 5) == 0
    assert digitiser.missing_frames(5, 6) == 0
    assert digitiser.missing_frames(5, 9) == 3
    assert digitiser.missing_frames(2**32 - 2, 1) == 2
    assert digitiser.missing_frames(10, 10) == -1           # a repeat: restart
    tracker = digitiser.SequenceTracker()
    for seq in (0, 1, 2, 5, 6, 9, 0, 1):
        tracker.update(seq)
    assert (tracker.gaps, tracker.lost_frames, tracker.restarts) == (2, 4, 1)


class Injected:
    """What was sent and damaged, frame by frame, for the count checks."""

    def __init__(self) -> None:
        self.intact: list[int] = []
        self.damaged = 0
        self.damaged_bytes = 0
        self.damaged_with_sync = 0


def corrupted_chunks(n_frames: int, corrupter: Corrupter, injected: Injected, seed: int,
                     batch: int = 10_000):
    """Byte chunks of ``n_frames`` small frames (2 channels × 8 samples) as sent through
    ``corrupter``; ``injected`` keeps the tally."""
    rng = np.random.default_rng(seed)
    for first in range(0, n_frames, batch):
        samples = rng.integers(-2000, 2000, (batch, 2, 8), dtype=np.int16)
        parts = []
        for k in range(min(batch, n_frames - first)):
            frame = digitiser.encode_frame(samples[k], first + k, (first + k) * 800)
            drops = corrupter.dropped
            sent, damaged = corrupter.apply(frame)
            parts.append(sent)
            if not damaged:
                injected.intact.append(first + k)
                continue
            body = sent[len(sent) - len(frame) + (corrupter.dropped - drops):]
            injected.damaged += 1
            injected.damaged_bytes += len(body)
            injected.damaged_with_sync += body[:2] == digitiser.SYNC
        yield b"".join(parts)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_million_corrupted_frames_are_counted_as_injected():
    """Every intact frame comes out and no damaged one, except what CRC-16 cannot see: a
    byte dropped from a frame lets the frame end on the next frame's first sync byte, and
    one such frame in 65536 passes its CRC by chance (this seed meets one). It then takes
    the next frame's sync with it, so that frame is lost too."""
    n, frame_bytes = 1_000_000, 54
    corrupter = Corrupter(Corruption(flip_rate=0.01, drop_rate=0.005, garbage_rate=0.01), 7)
    injected = Injected()
    framer = Framer(digitiser.CODEC)
    got = []
    for chunk in corrupted_chunks(n, corrupter, injected, seed=7):
        for i in range(0, len(chunk), 65_536):
            got += [f.sequence for f in framer.feed(chunk[i:i + 65_536])]
    closer = digitiser.encode_frame(np.zeros((2, 100), np.int16), n, 0)
    assert [f.sequence for f in framer.feed(closer)] == [n]
    intact = set(injected.intact)
    undetected = [s for s in got if s not in intact]
    lost = sorted(intact - set(got))
    assert len(undetected) <= 2                       # expected: drops / 65536 ≈ 0.08
    assert lost == [s + 1 for s in undetected]
    assert 0.013 * n < injected.damaged < 0.017 * n
    assert framer.frames == len(injected.intact) - len(lost) + len(undetected) + 1
    assert framer.buffered == 0
    assert framer.garbage_bytes == (corrupter.garbage_bytes + injected.damaged_bytes
                                    + frame_bytes * (len(lost) - len(undetected)))
    assert injected.damaged_with_sync - len(undetected) <= framer.bad_frames
    assert framer.bad_frames <= 2 * (injected.damaged + corrupter.garbage_chunks)
