"""A camera in a process of its own: the same interface as a Camera, and a stuck camera
beside it holds up nothing (what benchmarks/cameras.py measured threads failing at)."""

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest

from drivers.camera import CameraSettings
from drivers.camera_process import ProcessCamera
from drivers.errors import DeviceError
from drivers.strips import StripArray
from sim.camera_twin import SceneSettings, decode_frame_number, render_lane_video
from sim.rtsp_twin import RtspTwin
from sim.traffic import generate_traffic

FPS = 25.0
SMALL = SceneSettings(width_px=320, height_px=176, fps=FPS, view_m=30.0, plate_px_w=48)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    traffic = generate_traffic(StripArray(lanes=1), 30.0, seed=3)
    path = tmp_path_factory.mktemp("camera") / "lane0.avi"
    render_lane_video(traffic, path, duration_s=2.0, scene=SMALL)
    return path


@pytest.fixture
def cameras() -> Iterator[list[ProcessCamera]]:
    started: list[ProcessCamera] = []
    yield started
    for cam in started:
        t0 = time.monotonic()
        cam.stop()
        assert time.monotonic() - t0 < 5.0, f"stop() of {cam.name} took too long"
        assert not cam._process.is_alive()


def start(cameras: list[ProcessCamera], name: str, **settings) -> ProcessCamera:
    cam = ProcessCamera(name, CameraSettings(**settings))
    cameras.append(cam)
    cam.start()
    return cam


def test_frames_come_back_from_the_child_and_frame_at_picks_them(video, cameras):
    cam = start(cameras, "lane1", url=str(video), loop=True, open_timeout_s=3.0)
    cam.wait_ready(15.0)
    deadline = time.monotonic() + 10.0
    got: list[dict] = []
    while len(got) < 12 and time.monotonic() < deadline:
        got += cam.readings(timeout_s=0.5)
    assert len(got) >= 12
    assert [r["index"] for r in got] == list(range(got[0]["index"], got[0]["index"] + len(got)))
    assert all(r["shape"] == (SMALL.height_px, SMALL.width_px, 3) for r in got)
    for r in got[1:-1]:
        image, dt_s = cam.frame_at(r["t_s"])
        assert decode_frame_number(image) == round(r["t_device_s"] * FPS) % 50
        assert dt_s == 0.0
    assert cam.diagnose(cam.get_status(), 1.0)[0].startswith("ok: ")


def test_a_stuck_camera_in_its_own_process_holds_up_no_other(video, cameras):
    if not cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG):
        pytest.skip("this OpenCV build has no FFMPEG backend, so it cannot read RTSP")
    twin = RtspTwin(video)
    twin.start()
    try:
        with socket.socket() as silent:
            silent.bind(("127.0.0.1", 0))
            silent.listen()
            stuck = start(cameras, "stuck", open_timeout_s=8.0,
                          url=f"rtsp://127.0.0.1:{silent.getsockname()[1]}/cam")
            time.sleep(1.5)  # the child is up and inside its open
            t0 = time.monotonic()
            healthy = start(cameras, "lane1", url=twin.url, open_timeout_s=5.0)
            healthy.wait_ready(7.0)  # threads would wait out the stuck open (8 s)
            assert time.monotonic() - t0 < 7.0
            with pytest.raises(DeviceError):
                stuck.wait_ready(0.1)
            t_stop = time.monotonic()
            stuck.stop()  # a child stuck in the backend is ended, not waited for
            assert time.monotonic() - t_stop < 5.0
    finally:
        twin.stop()
