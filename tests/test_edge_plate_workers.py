"""The unit's plate readers: real worker processes with the real reader, behind the
bounded priority queue that keeps the weighing from ever waiting for them."""

import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from drivers.strips import StripArray
from edge.plate_workers import PlateJob, PlateResult, PlateSettings, PlateWorkers, read_job
from edge.unit import plate_record
from plates import PlateReader, ReaderOptions, load_engine
from sim.camera_twin import LaneScene, SceneSettings
from sim.traffic import generate_traffic

SCENE = SceneSettings(plate_px_w=120)


@pytest.fixture(scope="module")
def trucks():
    """Front and rear regions of simulated trucks' frames, as the unit cuts them, with
    the plate each truck carries."""
    traffic = generate_traffic(StripArray(lanes=1), 90.0, seed=3)
    scene = LaneScene(traffic, lane=0, scene=SCENE, seed=3)
    x0 = SCENE.trigger_x_px - 120

    def region(t_s: float) -> np.ndarray:
        _ok, jpeg = cv2.imencode(".jpg", scene.draw(t_s), [cv2.IMWRITE_JPEG_QUALITY, 85])
        return np.ascontiguousarray(cv2.imdecode(jpeg, 1)[270:, x0:x0 + 240])

    out = []
    for v in scene.vehicles:
        if v.is_car:
            continue
        t_last = v.t0_s + float(v.axle_pos_m[-1]) / v.speed_mps
        out.append((scene.plates[v.vehicle_id][0],
                    [region(v.t0_s + dk / SCENE.fps) for dk in (0, 1, -1, 2, -2)],
                    [region(t_last + dk / SCENE.fps) for dk in (0, 1, -1, 2, -2)]))
    return out


def wait_results(workers: PlateWorkers, n: int, timeout_s: float = 60.0) -> list:
    got, deadline = [], time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < deadline:
        got += workers.results()
        time.sleep(0.05)
    return got


def test_front_and_rear_are_read_and_agree(trucks):
    reader = PlateReader(load_engine("onnx"), options=ReaderOptions(detector_side=640))
    settings = PlateSettings()
    results = [read_job(reader, PlateJob(i, front, rear, True), settings)
               for i, (_, front, rear) in enumerate(trucks)]
    right = [r for r, (plate, *_) in zip(results, trucks, strict=True) if r.text == plate]
    wrong = [r for r, (plate, *_) in zip(results, trucks, strict=True)
             if r.status == "read" and r.text != plate]
    assert len(trucks) >= 8
    assert len(right) >= 0.9 * len(trucks) and not wrong
    assert all(r.front_rear in ("agree", "front only") for r in right)
    assert sum(r.front_rear == "agree" for r in right) >= 0.75 * len(right)
    assert all(r.votes == 2 for r in right)  # two agreeing frames were enough


def test_a_full_queue_refuses_at_once_and_suspected_jobs_go_first(trucks):
    workers = PlateWorkers(PlateSettings(workers=1, queue=2))
    workers.start()
    try:
        assert workers.wait_ready(60.0)
        plate, front, rear = trucks[0]
        t0 = time.monotonic()
        taken = [workers.submit(PlateJob(k, front, rear, suspected=False)) for k in range(5)]
        assert time.monotonic() - t0 < 0.5           # the weighing never waits
        assert taken == [True, True, True, False, False]  # one reading, two waiting
        assert workers.submit(PlateJob(99, front, rear, suspected=True))  # evicts a light one
        results = {r.key: r for r in wait_results(workers, 6)}
        assert {k for k, r in results.items() if r.status == "unread"} == {2, 3, 4}
        assert results[99].status == "read" and results[99].text == plate
        assert workers.counts["dropped"] == 1 and workers.counts["refused"] == 2
    finally:
        workers.stop()


def test_a_worker_that_dies_is_replaced_and_its_job_answered_unread(trucks):
    workers = PlateWorkers(PlateSettings(workers=1))
    workers.start()
    try:
        assert workers.wait_ready(60.0)
        _, front, rear = trucks[0]
        workers.submit(PlateJob(1, front * 5, rear * 5, suspected=True))
        os.kill(workers._procs[0].pid, signal.SIGKILL)
        results = wait_results(workers, 1, 10.0)
        assert [(r.key, r.status, r.reason) for r in results] == \
            [(1, "unread", "the plate reader stopped")]
        assert workers.counts["restarted"] == 1 and workers.wait_ready(60.0)
    finally:
        workers.stop()


def test_without_readers_every_plate_is_left_to_the_center(trucks):
    workers = PlateWorkers(PlateSettings(workers=0))
    workers.start()
    _, front, rear = trucks[0]
    assert not workers.submit(PlateJob(7, front, rear, suspected=True))
    assert [(r.key, r.status) for r in workers.results()] == [(7, "unread")]
    assert workers.stop() == []


EXIT_SCRIPT = """
import os, signal, sys
import numpy as np
from edge.plate_workers import PlateJob, PlateSettings, PlateWorkers
workers = PlateWorkers(PlateSettings(workers=1))
workers.start()
os.kill(workers._procs[0].pid, signal.SIGKILL)
workers._procs[0].join(10)
frame = np.zeros((1200, 1600), np.uint8)  # 1.9 MB: far more than a pipe holds
workers.submit(PlateJob(1, [frame], [frame], suspected=True))
workers._stopping = True  # no replacement reader: nobody will take the frame
print(len(workers.stop()), flush=True)
"""


def test_a_unit_exits_while_a_frame_waits_in_the_queue_of_a_dead_reader():
    """A frame on its way to a reader that died must not hold the process open at exit
    (multiprocessing joins a queue's feeder thread then, unless told not to)."""
    done = subprocess.run([sys.executable, "-c", EXIT_SCRIPT], capture_output=True, check=False,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "1"  # the job came back unread


def test_the_packets_plate_box_is_in_the_whole_image_not_the_region_read():
    """The readers see frames cut to the camera's region; the packet's box must point at
    the plate in the stored (whole) image, where the center crops it."""
    read = PlateResult(7, "read", text="浙A12345", colour="blue", confidence=0.9,
                       box=[60.0, 25.0, 110.0, 35.0, 2.0], image="front")
    assert plate_record(read, (400.0, 300.0)).box == [460.0, 325.0, 110.0, 35.0, 2.0]
    assert plate_record(read).box == [60.0, 25.0, 110.0, 35.0, 2.0]
    unread = plate_record(PlateResult(8, "unread"), (400.0, 300.0))
    assert unread.unread and unread.box == [0.0] * 5
