"""The camera driver and its frame ring, fed by real video files through real OpenCV.

Timing on a shared machine is noisy: these tests assert counts, order and which frame
was picked, never speed tighter than ±50 %, and every wait is bounded.
"""

import itertools
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from drivers.base import DeviceStatus
from drivers.camera import (
    Camera,
    CameraSettings,
    Source,
    camera_from_config,
    diagnose,
    parse_source,
)
from drivers.errors import DeviceError
from drivers.frame_ring import Frame, FrameRing, Match, Miss, StreamClock
from drivers.strips import StripArray
from sim.camera_twin import SceneSettings, decode_frame_number, render_lane_video
from sim.rtsp_twin import RtspTwin
from sim.traffic import generate_traffic
from zhichao.errors import ConfigError

FPS = 25.0
SMALL = SceneSettings(width_px=320, height_px=176, fps=FPS, view_m=30.0, plate_px_w=48)


def wait_until(condition: Callable[[], bool], timeout_s: float, period_s: float = 0.02) -> bool:
    """Poll ``condition`` until it holds or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(period_s)
    return condition()


def frame(t_s: float, index: int = 0, nbytes: int = 100) -> Frame:
    return Frame(np.zeros(nbytes, np.uint8), t_s=t_s, t_host_s=t_s, index=index)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four seconds of the camera twin: 100 numbered frames at 25 fps."""
    traffic = generate_traffic(StripArray(lanes=1), 30.0, seed=3)
    path = tmp_path_factory.mktemp("camera") / "lane0.avi"
    render_lane_video(traffic, path, duration_s=4.0, scene=SMALL)
    return path


@pytest.fixture(scope="module")
def short_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One second of the twin: 25 frames."""
    traffic = generate_traffic(StripArray(lanes=1), 30.0, seed=3)
    path = tmp_path_factory.mktemp("camera") / "short.avi"
    render_lane_video(traffic, path, duration_s=1.0, scene=SMALL)
    return path


@pytest.fixture
def cameras() -> Iterator[list[Camera]]:
    """Cameras a test starts; each is stopped, and must stop within two seconds."""
    started: list[Camera] = []
    yield started
    for cam in started:
        t0 = time.monotonic()
        cam.stop()
        assert time.monotonic() - t0 < 2.5, f"stop() of {cam.name} took too long"


def start(cameras: list[Camera], *args, **kwargs) -> Camera:
    cam = Camera(*args, **kwargs)
    cameras.append(cam)
    cam.start()
    return cam


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the ring -------------------------------------------------------------------------

def test_ring_is_bounded_by_frame_count():
    ring = FrameRing(max_frames=4, max_bytes=10**6)
    for i in range(10):
        ring.push(frame(i * 0.04, i))
    assert len(ring) == 4
    assert [f.index for f in ring.frames()] == [6, 7, 8, 9]


def test_ring_is_bounded_by_bytes():
    ring = FrameRing(max_frames=100, max_bytes=3500)
    for i in range(10):
        ring.push(frame(i * 0.04, i, nbytes=1000))
    assert len(ring) == 3 and ring.nbytes == 3000
    assert [f.index for f in ring.frames()] == [7, 8, 9]


def test_ring_never_holds_more_than_its_bytes_and_drops_oldest_first_counted():
    """Frames of random sizes (seeded): after every push the ring holds at most
    ``max_bytes``, exactly the bytes of its frames, and the newest frames without a hole;
    every frame pushed out is counted, and those the byte bound pushed out apart."""
    rng = np.random.default_rng(22)
    ring = FrameRing(max_frames=12, max_bytes=20_000)
    for_bytes = 0
    for i in range(2000):
        held = len(ring)
        nbytes = int(rng.integers(100, 8000))
        would_exceed = ring.nbytes + nbytes > ring.max_bytes
        for_bytes += would_exceed and held < ring.max_frames
        ring.push(frame(i * 0.04, i, nbytes=nbytes))
        kept = ring.frames()
        assert ring.nbytes <= ring.max_bytes and len(kept) <= ring.max_frames
        assert ring.nbytes == sum(f.nbytes for f in kept)
        assert [f.index for f in kept] == list(range(i - len(kept) + 1, i + 1))
        assert ring.dropped == i + 1 - len(kept)
    assert 0 < ring.dropped_for_bytes <= ring.dropped
    assert ring.dropped_for_bytes >= for_bytes  # a push may drop several for one frame


def test_ring_refuses_a_frame_larger_than_its_byte_bound():
    with pytest.raises(ConfigError, match=r"max_bytes.*must hold one frame of 2000 bytes"):
        FrameRing(max_frames=10, max_bytes=1000, name="lane1").push(frame(0.0, nbytes=2000))


def test_ring_refuses_frames_out_of_time_order():
    ring = FrameRing()
    ring.push(frame(1.0))
    with pytest.raises(ValueError, match="older than the newest"):
        ring.push(frame(0.5))


@pytest.mark.parametrize(("option", "value"), [("max_frames", 0), ("max_bytes", -1)])
def test_ring_bounds_must_be_positive(option, value):
    with pytest.raises(ConfigError, match=f"Option '{option}' of camera 'cam' must be above 0"):
        FrameRing(**{option: value}, name="cam")


@pytest.mark.parametrize(("t_s", "index"), [(0.0, 0), (0.019, 0), (0.021, 1), (0.099, 2),
                                            (0.13, 3), (0.36, 9), (0.375, 9)])
def test_nearest_picks_the_nearest_frame_and_its_time_difference(t_s, index):
    ring = FrameRing()
    for i in range(10):
        ring.push(frame(i * 0.04, i))
    match = ring.nearest(t_s)
    assert match is not None and match.frame.index == index
    assert match.dt_s == pytest.approx(index * 0.04 - t_s)


def test_nearest_applies_the_camera_offset():
    ring = FrameRing()
    for i in range(10):
        ring.push(frame(i * 0.04, i))
    assert ring.nearest(0.0, offset_s=0.2).frame.index == 5


def test_find_says_too_old_not_yet_gap_or_empty():
    ring = FrameRing()
    assert ring.find(1.0).reason == "empty"
    for i in range(5):
        ring.push(frame(10.0 + i * 0.04, i))
    ring.push(frame(12.0, 5))  # two seconds without frames before this one
    ring.push(frame(12.04, 6))
    for t_s, reason in [(9.0, "too_old"), (13.0, "not_yet"), (11.0, "gap")]:
        miss = ring.find(t_s, max_dt_s=0.05)
        assert isinstance(miss, Miss) and miss.reason == reason
        assert reason.replace("_", " ") in miss.describe().replace("gap in", "gap")
        assert ring.nearest(t_s, max_dt_s=0.05) is None
    assert isinstance(ring.find(10.05, max_dt_s=0.05), Match)


def test_ring_hands_out_frames_by_reference_and_read_only():
    ring = FrameRing()
    image = np.zeros((4, 4, 3), np.uint8)
    ring.push(Frame(image, 1.0, 1.0))
    got = ring.nearest(1.0).frame.image
    assert got is image and not got.flags.writeable
    with pytest.raises(ValueError):
        got[0, 0, 0] = 1


def test_ring_with_one_writer_and_many_readers():
    ring = FrameRing(max_frames=50, max_bytes=10**6)
    errors: list[BaseException] = []
    done = threading.Event()
    n_frames = 3000

    def writer():
        try:
            for i in range(n_frames):
                ring.push(frame(i * 0.01, i, nbytes=64))
        except BaseException as exc:  # report any failure to the test thread
            errors.append(exc)
        finally:
            done.set()

    def reader():
        try:
            while not done.is_set():
                newest = ring.newest_s
                if newest is None:
                    continue
                found = ring.find(newest - 0.1)  # the writer may have moved on meanwhile
                if isinstance(found, Match):  # within one frame interval, even at the edge
                    assert abs(found.dt_s) <= 0.01 + 1e-9
                    assert found.frame.t_s == pytest.approx(found.frame.index * 0.01)
                held = ring.frames()
                assert len(held) <= 50
                assert all(a.index < b.index for a, b in itertools.pairwise(held))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader)
                                                   for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10.0)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert len(ring) == 50 and ring.frames()[-1].index == n_frames - 1


def test_stream_clock_keeps_the_device_spacing_and_drops_host_jitter():
    rng = np.random.default_rng(0)
    clock = StreamClock()
    device = np.arange(200) * 0.04
    host = 100.0 + device + 0.005 + rng.exponential(0.01, 200)  # delays, never early
    mapped = np.array([clock.to_host(d, h) for d, h in zip(device, host, strict=True)])
    assert np.all(np.diff(mapped) > 0)
    assert np.all(mapped <= host + 1e-9)
    assert np.std(np.diff(mapped[50:])) < 0.2 * np.std(np.diff(host[50:]))


def test_stream_clock_restarts_when_the_device_clock_goes_back():
    clock = StreamClock()
    for d in (0.0, 0.04, 0.08):
        clock.to_host(d, 10.0 + d)
    assert clock.to_host(0.0, 20.0) == pytest.approx(20.0)  # new clock: fitted afresh
    assert clock.to_host(None, 20.5) == 20.5


# -- sources and settings -------------------------------------------------------------

def test_sources_are_told_apart_and_passwords_hidden():
    assert parse_source("usb:2") == Source("usb", 2, "usb:2")
    assert parse_source("rtsp://u:pw@10.1.2.3/s1").kind == "rtsp"
    assert "pw" not in parse_source("rtsp://u:pw@10.1.2.3/s1").shown
    assert parse_source("http://10.1.2.3/mjpg").kind == "network"
    assert parse_source("/data/lane1.avi").kind == "file"
    with pytest.raises(ConfigError, match="usb:N"):
        parse_source("usb:first", "lane1")
    with pytest.raises(ConfigError, match="got 'gopher://x'"):
        parse_source("gopher://x")


def test_settings_errors_name_the_camera_option_and_value():
    with pytest.raises(ConfigError, match="'open_timeout_s' of camera 'lane2' must be above 0 "
                                          r"\(got 0\)"):
        Camera("lane2", "usb:0", open_timeout_s=0)
    with pytest.raises(ConfigError, match=r"option 'cameras\.lane2\.read_timout_s' is not a "
                                          r"known option \(a typo\?\) \(got 1\.0\)"):
        camera_from_config("lane2", {"url": "usb:0", "read_timout_s": 1.0})
    with pytest.raises(ConfigError, match=r"option 'cameras\.lane2\.url' is required"):
        camera_from_config("lane2", {})


@pytest.mark.parametrize(("option", "value", "says"), [
    ("lane_", 1, r"is not a known option \(a typo\?\) \(got 1\)"),
    ("jpeg_quality", 29, r"must be greater than or equal to 30 \(got 29\)"),
    ("jpeg_quality", 101, r"must be less than or equal to 100 \(got 101\)"),
    ("distance_m", -50.5, r"must be greater than or equal to -50 \(got -50\.5\)"),
    ("distance_m", 100.5, r"must be less than or equal to 100 \(got 100\.5\)"),
    ("lane", 0, r"must be greater than or equal to 1 \(got 0\)"),
    ("lane", "left", r"must be a valid integer.*\(got 'left'\)"),
    ("role", "side", r"must be 'front', 'rear' or 'overview' \(got 'side'\)"),
    ("max_dt_s", 0, r"must be greater than 0 \(got 0\)"),
    ("max_dt_s", "soon", r"must be a valid number.*\(got 'soon'\)"),
    ("loop", "sometimes", r"must be a valid boolean.*\(got 'sometimes'\)"),
    ("roi", [0, 0, 640], r"is required but missing"),  # the fourth number
    ("roi", [10, 10, 0, 40], r"must be x, y at 0 or more and width, height above 0"),
    ("url", "gopher://x", r"must be rtsp://\.\.\., usb:N.*\(got 'gopher://x'\)"),
    ("kind", "serial", r"must be 'camera' \(got 'serial'\)"),
    ("max_bytes", 2**16 - 1, r"must be greater than or equal to 65536 \(got 65535\)"),
    ("max_bytes", 2**34 + 1, r"must be less than or equal to 17179869184"),
    ("max_frames", 0, r"must be greater than or equal to 1 \(got 0\)"),
])
def test_a_bad_camera_option_stops_start_up_naming_section_and_option(option, value, says):
    section = {"kind": "camera", "url": "rtsp://192.0.2.20/stream1", option: value}
    with pytest.raises(ConfigError, match=rf"^edge\.yaml: option 'devices\.front\.{option}"
                                          rf"(\.\d)?' {says}"):
        camera_from_config("front", section, where="devices.front", source="edge.yaml")


def test_camera_settings_are_kept_validated_with_their_defaults():
    cam = camera_from_config("rear", {
        "kind": "camera", "url": "usb:1", "lane": 2, "role": "rear", "distance_m": -3.5,
        "jpeg_quality": 80, "max_dt_s": 0.05, "roi": [100, 200, 640, 240], "offset_s": 0.04,
        "max_frames": 50, "loop": True, "realtime": False})
    s = cam.settings
    assert isinstance(s, CameraSettings)
    assert (s.lane, s.role, s.distance_m, s.jpeg_quality, s.max_dt_s, s.roi) == \
        (2, "rear", -3.5, 80, 0.05, (100, 200, 640, 240))
    assert (cam.offset_s, cam.ring.max_frames, cam.loop, cam.realtime) == (0.04, 50, True, False)
    plain = Camera("front", "usb:0").settings
    assert (plain.lane, plain.role, plain.distance_m, plain.jpeg_quality, plain.max_dt_s,
            plain.roi, plain.open_timeout_s) == (None, "front", 0.0, 90, 0.1, None, 5.0)
    assert s.wanted_t_s(10.0, 14.0) == pytest.approx(10.0 - 0.25)
    described = CameraSettings.model_json_schema()["properties"]
    assert all(len(field.get("description", "")) > 20 for field in described.values())


# -- a real file through the real driver ----------------------------------------------

def test_file_frames_arrive_in_order_at_the_file_pace(video, cameras):
    cam = start(cameras, "lane1", str(video), open_timeout_s=2.0, read_timeout_s=2.0)
    cam.wait_ready(5.0)
    t0, got = time.monotonic(), []
    # a second's worth of frames; a slow or stalling machine may take longer to decode
    # them, but never less time than the file's own pace allows
    while len(got) < FPS and time.monotonic() - t0 < 10.0:
        got += cam.readings(timeout_s=0.5)
    elapsed_s = time.monotonic() - t0
    assert FPS <= len(got) <= 1.5 * FPS * elapsed_s + 5, (len(got), elapsed_s)
    span_s = got[-1]["t_host_s"] - got[0]["t_host_s"]
    assert span_s >= 0.7 * (len(got) - 1) / FPS  # paced, not as fast as decoding goes
    assert [r["index"] for r in got] == list(range(got[0]["index"], got[0]["index"] + len(got)))
    assert all(a["t_s"] < b["t_s"] for a, b in itertools.pairwise(got))
    assert all(a["t_device_s"] < b["t_device_s"] for a, b in itertools.pairwise(got))
    assert all(r["shape"] == (SMALL.height_px, SMALL.width_px, 3) for r in got)
    assert all(isinstance(v, int | float | str | tuple | None) for r in got for v in r.values())
    status = cam.get_status()
    assert status.connected and status.frames >= len(got) and status.bad_frames == 0
    assert status.reconnects == 0 and status.last_error is None
    assert 0 < status.extra["fps"] <= 1.5 * FPS
    assert status.extra["ring_span_s"] > 0.5 and status.extra["url"] == str(video)


def test_frame_at_returns_the_frame_that_shows_that_moment(video, cameras):
    cam = start(cameras, "lane1", str(video), open_timeout_s=2.0, read_timeout_s=2.0)
    cam.wait_ready(5.0)
    assert wait_until(lambda: len(cam.ring) >= 12, 5.0)
    got = cam.readings()
    for r in got[1:-1]:
        number = round(r["t_device_s"] * FPS)  # the file's own clock says which frame
        image, dt_s = cam.frame_at(r["t_s"])
        assert decode_frame_number(image) == number and dt_s == 0.0
        image, dt_s = cam.frame_at(r["t_s"] + 0.3 / FPS)  # a trigger between two frames
        assert decode_frame_number(image) == number
        assert dt_s == pytest.approx(-0.3 / FPS, abs=0.2 / FPS)


def test_frame_at_says_too_old_and_waits_for_not_yet(video, cameras):
    cam = start(cameras, "lane1", str(video), offset_s=0.0)
    cam.wait_ready(5.0)
    oldest = cam.ring.oldest_s
    with pytest.raises(DeviceError, match=r"Camera 'lane1'.*too old"):
        cam.frame_at(oldest - 10.0)
    with pytest.raises(DeviceError, match="not yet"):
        cam.frame_at(time.monotonic() + 30.0)
    # a moment 0.3 s ahead is waited for; should the machine stall just then, the frames
    # of that moment come late and the camera rightly calls it a gap: ask again
    for _ in range(3):
        soon = time.monotonic() + 0.3
        try:
            image, dt_s = cam.frame_at(soon, wait_s=2.0)
            break
        except DeviceError as exc:
            assert "gap in the stream" in str(exc)
    else:
        pytest.fail("three moments in a row fell into gaps of the stream")
    assert image.shape == (SMALL.height_px, SMALL.width_px, 3)
    assert abs(dt_s) <= 1.0 / FPS


def test_a_looped_file_keeps_its_stream_time_increasing(short_video, cameras):
    cam = start(cameras, "lane1", str(short_video), realtime=False, loop=True,
                max_frames=40)
    assert wait_until(lambda: cam.get_status().frames >= 80, 10.0)
    cam.stop()
    got = cam.readings()
    device = [r["t_device_s"] for r in got]
    assert all(a < b for a, b in itertools.pairwise(device))
    assert device[-1] > 2.0  # looped at least twice over a one-second file
    for f in cam.ring.frames():
        assert decode_frame_number(f.image) == round(f.t_device_s * FPS) % 25


def test_a_file_that_ends_and_vanishes_is_reported_then_reconnected(
        short_video, tmp_path, cameras):
    path = tmp_path / "cut.avi"
    shutil.copy(short_video, path)
    cam = start(cameras, "lane1", str(path), open_timeout_s=1.0, read_timeout_s=1.0)
    cam.wait_ready(5.0)
    path.unlink()  # the open capture plays on to its end; nothing opens it again
    assert wait_until(lambda: not cam.get_status().connected, 5.0)
    status = cam.get_status()
    assert "end of file" in status.last_error and status.frames >= 20
    assert wait_until(lambda: "no such file" in (cam.get_status().last_error or ""), 3.0)
    frames_lost = cam.get_status().frames
    time.sleep(0.3)
    assert cam.get_status().frames == frames_lost and not cam.get_status().connected
    shutil.copy(short_video, path)
    assert wait_until(lambda: cam.get_status().frames > frames_lost + 5, 10.0)
    status = cam.get_status()
    assert status.reconnects >= 1
    got = cam.readings()
    assert all(a["t_s"] < b["t_s"] for a, b in itertools.pairwise(got))


def test_stop_returns_promptly_while_pacing(video, cameras):
    cam = start(cameras, "lane1", str(video))
    cam.wait_ready(5.0)
    t0 = time.monotonic()
    cam.stop()
    assert time.monotonic() - t0 < 2.0
    assert cam.get_status().extra["state"] == "stopped"


# -- unreachable and stuck sources ----------------------------------------------------

def test_open_fails_fast_on_a_closed_rtsp_port(cameras):
    url = f"rtsp://127.0.0.1:{free_port()}/cam"
    cam = start(cameras, "lane9", url, open_timeout_s=1.0)
    t0 = time.monotonic()
    expected = re.escape(f"Camera 'lane9' ({url}) is not ready: ") + ".*cannot open"
    with pytest.raises(DeviceError, match=expected):
        cam.wait_ready(5.0)
    assert time.monotonic() - t0 < 2.0
    status = cam.get_status()
    assert not status.connected and "cannot open" in status.last_error


def test_open_times_out_on_a_server_that_never_answers(cameras):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"rtsp://127.0.0.1:{silent.getsockname()[1]}/cam"
        cam = start(cameras, "lane9", url, open_timeout_s=0.5)
        t0 = time.monotonic()
        with pytest.raises(DeviceError, match=r"timed out after 0\.5 s"):
            cam.wait_ready(5.0)
        assert time.monotonic() - t0 < 2.0


class _BlockingCapture:
    """A capture whose reads never return (until released): a backend that hangs."""

    def __init__(self, gate: threading.Event):
        self.gate = gate

    def read(self) -> tuple[bool, None]:
        self.gate.wait(30.0)
        return False, None

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        pass


def test_watchdog_gives_up_on_an_open_that_blocks_and_stop_does_not_hang(cameras):
    gate = threading.Event()

    def blocking_open(source, open_timeout_s, read_timeout_s):
        gate.wait(30.0)
        raise DeviceError("released")

    cam = start(cameras, "lane7", "rtsp://127.0.0.1:9/cam", open_timeout_s=0.3,
                opener=blocking_open)
    try:
        with pytest.raises(DeviceError, match=r"open timed out after 0\.3 s"):
            cam.wait_ready(3.0)
        assert cam.get_status().extra["stuck_readers"] >= 1
        t0 = time.monotonic()
        cam.stop()
        assert time.monotonic() - t0 < 2.5
    finally:
        gate.set()


def test_watchdog_gives_up_on_a_read_that_blocks(cameras):
    gate = threading.Event()
    cam = start(cameras, "lane7", "rtsp://127.0.0.1:9/cam", read_timeout_s=0.3,
                opener=lambda *_: _BlockingCapture(gate))
    try:
        assert wait_until(lambda: "read timeout of 0.3 s" in (cam.get_status().last_error
                                                                or ""), 3.0)
        assert not cam.get_status().connected
    finally:
        gate.set()


# -- a live RTSP camera (the pure-Python twin) ----------------------------------------

@pytest.fixture
def rtsp_twin(video) -> Iterator[RtspTwin]:
    if not cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG):
        pytest.skip("this OpenCV build has no FFMPEG backend, so it cannot read RTSP")
    twin = RtspTwin(video)
    twin.start()
    yield twin
    twin.stop()


def test_rtsp_camera_streams_and_reconnects_after_the_camera_goes_dark(rtsp_twin, cameras):
    cam = start(cameras, "lane3", rtsp_twin.url, open_timeout_s=3.0, read_timeout_s=1.0)
    cam.wait_ready(6.0)
    assert wait_until(lambda: len(cam.ring) >= 10, 5.0)
    numbers = [decode_frame_number(cam.frame_at(r["t_s"])[0]) for r in cam.readings()]
    assert None not in numbers and numbers == sorted(numbers)
    assert len(set(numbers)) == len(numbers)
    rtsp_twin.stop()  # power cut
    assert wait_until(lambda: not cam.get_status().connected, 5.0)
    assert cam.get_status().last_error
    frames_lost = cam.get_status().frames
    rtsp_twin.start()  # same port
    assert wait_until(lambda: cam.get_status().frames > frames_lost + 5, 12.0)
    assert cam.get_status().reconnects >= 1 and cam.get_status().connected


# -- the whole chain, at full size (slow) ---------------------------------------------

@pytest.mark.slow
def test_a_trigger_at_each_crossing_picks_the_crossing_frame(tmp_path, cameras):
    """Twenty seconds of a full-size lane; each crossing triggers live, 0.3 s after it."""
    traffic = generate_traffic(StripArray(lanes=1), 60.0, seed=11)
    manifest = render_lane_video(traffic, tmp_path / "lane.avi", duration_s=20.0)
    assert len(manifest.passages) >= 3
    cam = start(cameras, "lane1", str(manifest.path), max_frames=25)  # one second
    cam.wait_ready(5.0)
    pending, picked = list(manifest.passages), {}
    deadline = time.monotonic() + 40.0
    while pending and time.monotonic() < deadline:
        for r in cam.readings(timeout_s=0.5):
            while pending and r["t_device_s"] >= pending[0].stream_t_s + 0.3:
                passage = pending.pop(0)
                t_trigger = passage.stream_t_s + (r["t_s"] - r["t_device_s"])  # host clock
                image, dt_s = cam.frame_at(t_trigger)
                picked[passage.frame] = (decode_frame_number(image), dt_s)
    assert {k: v[0] for k, v in picked.items()} == {p.frame: p.frame for p in manifest.passages}
    assert all(abs(dt_s) <= 0.5 / manifest.fps + 1e-6 for _, dt_s in picked.values())
    status = cam.get_status()
    assert status.bad_frames == 0 and status.reconnects == 0


# -- hints for a technician -----------------------------------------------------------

def test_diagnose_a_healthy_file_camera(video, cameras):
    cam = start(cameras, "lane1", str(video), open_timeout_s=2.0, read_timeout_s=2.0)
    cam.wait_ready(5.0)
    assert wait_until(lambda: cam.get_status().frames >= 25, 10.0)
    status = cam.get_status()
    assert status.extra["nominal_fps"] == pytest.approx(FPS)
    (hint,) = cam.diagnose(status, 1.0)
    assert hint.startswith(f"ok: {status.frames} frames in 1 s")


def test_a_camera_ring_stays_within_its_byte_bound_and_says_so(video, cameras):
    """A real file read as fast as it decodes into a ring of five frames' bytes: the
    ring never holds more (watched while it fills), the frames the byte bound pushed out
    are counted in the status, and the hint names max_bytes and the seconds kept."""
    frame_bytes = SMALL.width_px * SMALL.height_px * 3
    limit = 5 * frame_bytes + frame_bytes // 2
    cam = start(cameras, "lane1", str(video), open_timeout_s=2.0, read_timeout_s=2.0,
                realtime=False, max_bytes=limit)
    seen = []
    deadline = time.monotonic() + 20.0
    while cam.get_status().frames < 60 and time.monotonic() < deadline:
        seen.append(cam.ring.nbytes)
        time.sleep(0.002)
    status = cam.get_status()
    x = status.extra
    assert status.frames >= 60 and max(seen) <= limit and x["ring_bytes"] <= limit
    assert x["ring_frames"] == 5 and x["ring_bytes"] == 5 * frame_bytes
    assert x["ring_dropped"] == x["ring_dropped_for_bytes"] >= status.frames - 5 - 1
    hints = [h for h in cam.diagnose(status, 2.0) if h.startswith("the ring holds 5 frames")]
    assert len(hints) == 1 and f"max_bytes {limit}" in hints[0]
    assert "not max_frames (250)" in hints[0] and "pushed out by the byte bound" in hints[0]


def test_a_ring_its_bytes_cut_short_is_named_before_it_fills_and_a_long_one_is_not():
    """The hint works the span out from the frames' size and rate: 1080p frames at the
    default bound are named after 20 frames; 720p frames with 1 GiB are not."""
    x = {"ring_frames": 20, "ring_bytes": 20 * 1920 * 1080 * 3, "fps": 25.0,
         "nominal_fps": 25.0, "max_frames": 250, "max_bytes": 256 * 2**20,
         "ring_dropped_for_bytes": 0}
    status = DeviceStatus("front", connected=True, frames=20, last_frame_at=time.monotonic(),
                          extra=x)
    (hint,) = diagnose(status, 0.8)
    assert hint.startswith("the ring holds 43 frames of 6.2 MB") and "1.7 s" in hint
    roomy = {**x, "ring_bytes": 20 * 1280 * 720 * 3, "max_bytes": 2**30}
    (ok,) = diagnose(DeviceStatus("front", connected=True, frames=20,
                                  last_frame_at=time.monotonic(), extra=roomy), 0.8)
    assert ok.startswith("ok:")


def test_diagnose_an_unreachable_url(cameras, tmp_path):
    url = f"rtsp://127.0.0.1:{free_port()}/cam"
    cam = start(cameras, "lane9", url, open_timeout_s=1.0)
    with pytest.raises(DeviceError):
        cam.wait_ready(5.0)
    hints = cam.diagnose(cam.get_status(), 1.0)
    assert hints[0].startswith(f"unreachable: {url}: cannot open") and "ping" in hints[0]
    gone = start(cameras, "lane8", str(tmp_path / "gone.avi"))
    with pytest.raises(DeviceError):
        gone.wait_ready(5.0)
    assert "no such file" in gone.diagnose()[0] and "file exists" in gone.diagnose()[0]


def test_diagnose_a_server_that_accepts_and_sends_no_frame(cameras):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"rtsp://127.0.0.1:{silent.getsockname()[1]}/cam"
        cam = start(cameras, "lane9", url, open_timeout_s=0.5)
        with pytest.raises(DeviceError):
            cam.wait_ready(5.0)
        hints = cam.diagnose(cam.get_status(), 1.0)
    assert hints[0].startswith(f"no frames: {url} accepts the connection but sends no "
                               "picture (") and "timed out" in hints[0]


def test_diagnose_a_reader_stuck_in_the_backend(cameras):
    gate = threading.Event()

    def blocking_open(source, open_timeout_s, read_timeout_s):
        gate.wait(30.0)  # a backend call that never returns
        raise DeviceError("released")

    cam = start(cameras, "lane7", "rtsp://127.0.0.1:9/cam", open_timeout_s=0.3,
                opener=blocking_open)
    try:
        with pytest.raises(DeviceError):
            cam.wait_ready(3.0)
        hints = cam.diagnose(cam.get_status(), 1.0)
        assert any(h.startswith("stuck: 1 connection(s) to rtsp://127.0.0.1:9/cam hang")
                   for h in hints), hints
    finally:
        gate.set()


def test_diagnose_a_live_camera_that_stalls_and_comes_back(rtsp_twin, cameras):
    cam = start(cameras, "lane3", rtsp_twin.url, open_timeout_s=3.0, read_timeout_s=1.0)
    cam.wait_ready(6.0)
    assert wait_until(lambda: cam.get_status().frames >= 10, 5.0)
    assert cam.diagnose(cam.get_status(), 1.0)[0].startswith("ok: ")
    rtsp_twin.stop()  # power cut
    assert wait_until(lambda: not cam.get_status().connected, 5.0)
    time.sleep(2.2)
    hints = cam.diagnose(cam.get_status(), 4.0)
    assert re.match(r"stalled: frames flowed but none for \d+ s: ", hints[0]), hints
    frames_lost = cam.get_status().frames
    rtsp_twin.start()
    assert wait_until(lambda: cam.get_status().frames > frames_lost + 5, 12.0)
    hints = cam.diagnose(cam.get_status(), 10.0)
    assert any(h.startswith("intermittent: the stream dropped and came back 1 time(s)")
               for h in hints), hints


def test_diagnose_frames_lost_against_the_nominal_rate():
    """The rate check on a status as the driver reports it (the twins cannot make a
    stream slower than it announces)."""
    status = DeviceStatus("front", connected=True, frames=300, last_frame_at=100.0,
                          extra={"url": "rtsp://cam", "fps": 15.0, "nominal_fps": 25.0})
    (hint,) = diagnose(status, 20.0, now_s=100.1)
    assert hint.startswith("frames arrive at 15.0 fps, the stream announces 25 fps")
    status.extra["fps"] = 21.0  # within 80 % of nominal: not a finding
    assert diagnose(status, 20.0, now_s=100.1)[0].startswith("ok: 300 frames in 20 s")
    status.extra["nominal_fps"] = 0.0  # a stream that announces nothing: no judgement
    status.extra["fps"] = 3.0
    assert diagnose(status, 20.0, now_s=100.1)[0].startswith("ok: ")
