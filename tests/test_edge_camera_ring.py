"""The roadside unit names a camera whose ring is too short for it to find a vehicle's
frames (a byte bound too small for the stream's resolution), once, with the option to
raise; a ring that reaches back far enough is not named. Real video files, real
cameras, the real unit."""

import logging
import re
import time
from pathlib import Path

import pytest

from drivers.strips import StripArray
from edge.settings import EdgeSettings
from edge.unit import RoadsideUnit
from sim.camera_twin import SceneSettings, render_lane_video
from sim.traffic import generate_traffic

SCENE = SceneSettings(width_px=320, height_px=176, fps=25.0, view_m=30.0, plate_px_w=48)
FRAME_BYTES = 320 * 176 * 3


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ring") / "lane1.avi"
    render_lane_video(generate_traffic(StripArray(lanes=1), 30.0, seed=2), path,
                      duration_s=4.0, scene=SCENE)
    return path


def run_unit(video: Path, max_bytes: int, seconds: float) -> RoadsideUnit:
    """A unit of one WIM controller (on a loop) and one camera reading ``video``, polled
    for ``seconds``."""
    settings = EdgeSettings.model_validate({"plates": {"workers": 0}, "devices": {
        "controller": {"kind": "serial", "protocol": "wim_records", "port": "loop://"},
        "front": {"kind": "camera", "url": str(video), "loop": True, "process": False,
                  "max_bytes": max_bytes}}})
    unit = RoadsideUnit(settings, video.parent)
    unit.start()
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            unit.poll()
            time.sleep(0.05)
    finally:
        unit.stop(wait_s=0.0)
    return unit


@pytest.mark.timeout(60)
def test_a_ring_too_short_for_the_unit_is_named_once(video, caplog):
    with caplog.at_level(logging.WARNING, "edge.unit"):
        unit = run_unit(video, 4 * FRAME_BYTES + 100, 3.0)
    named = [r.getMessage() for r in caplog.records if "its ring holds" in r.getMessage()]
    assert len(named) == 1, named
    assert re.match(r"camera front: its ring holds 4 frames, 0\.\d s at \d+ fps ", named[0])
    assert "(devices.front.max_bytes 675940)" in named[0]
    assert f"less than the {unit.ring_need_s():.1f} s the unit needs" in named[0]
    assert unit.ring_need_s() == pytest.approx(2.0 + 1.0)  # a controller's record delay


@pytest.mark.timeout(60)
def test_a_ring_that_reaches_back_far_enough_is_not_named(video, caplog):
    with caplog.at_level(logging.WARNING, "edge.unit"):
        run_unit(video, 200 * FRAME_BYTES, 3.0)
    assert not [r for r in caplog.records if "its ring holds" in r.getMessage()]
