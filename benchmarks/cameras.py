"""Benchmark of several cameras in one process: does one camera stuck opening hold up the
others?

OpenCV's FFmpeg backend opens captures under one process-wide lock, so a camera that
accepts the TCP connection and never answers could keep every other camera of the unit
from opening for as long as the stuck open lasts (``open_timeout_s``), and again at each
of its retries. This script measures it with real parts: 1, 2 and 4
:class:`drivers.camera.Camera` instances, each on its own RTSP twin
(:class:`sim.rtsp_twin.RtspTwin`, Motion-JPEG over RTP/TCP at the video's 25 fps, video
from :func:`sim.camera_twin.render_lane_video`), alone and with one more camera pointed
at a port that accepts connections and never answers (started first, so its open is under
way when the healthy ones start).

For each healthy camera: the time from ``start()`` to its first frame, and its frames per
second over ``--window`` seconds once every camera delivers. The baseline is one camera
alone, timed in the same run; the ratios are each figure against it
(``ttff_ratio_*``: 1 means no delay) and the fps against the stream's nominal 25 fps
(``fps_to_nominal_*``, the worst camera of the case). The whole run stays under a minute.

    python benchmarks/cameras.py            # a table
    python benchmarks/cameras.py --json     # ... and one JSON object as the last line
"""

import sys
from pathlib import Path

# Run as a file, this folder comes first on sys.path (and benchmarks/signal.py would stand
# in for the standard library's `signal`): take the folder off before importing anything.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks.timing

import argparse
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from rich.console import Console

from benchmarks.timing import report
from drivers.camera import Camera, CameraSettings
from drivers.camera_process import ProcessCamera
from drivers.strips import StripArray
from sim.camera_twin import SceneSettings, render_lane_video
from sim.rtsp_twin import RtspTwin
from sim.traffic import generate_traffic

NOMINAL_FPS = 25.0
POLL_S = 0.02
MODES = {"threads": (False,), "processes": (True,), "both": (False, True)}


@dataclass
class Case:
    """What one case measured of its healthy cameras."""

    healthy: int
    stuck: bool
    processes: bool
    ttff_s: list[float | None]   # start() to first frame, each camera (None: never)
    fps: list[float]             # over the window, each camera

    @property
    def key(self) -> str:
        """The case's name in the figures: ``thread_2`` or ``proc_2_stuck``."""
        mode = "proc" if self.processes else "thread"
        return f"{mode}_{self.healthy}{'_stuck' if self.stuck else ''}"


@contextmanager
def silent_server() -> Iterator[str]:
    """An RTSP URL whose port accepts TCP connections (the kernel's backlog) and never
    says a word: a camera hung after its network stack came up."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"rtsp://127.0.0.1:{sock.getsockname()[1]}/cam"


AnyCamera = Camera | ProcessCamera


def make_camera(name: str, url: str, open_timeout_s: float, processes: bool) -> AnyCamera:
    """A camera read by threads of this process, or by a process of its own."""
    settings = CameraSettings(url=url, open_timeout_s=open_timeout_s, read_timeout_s=2.0,
                              max_frames=50)
    if processes:
        return ProcessCamera(name, settings)
    return Camera.from_settings(name, settings)


def first_frames(cams: list[AnyCamera], started_at: float, deadline_s: float
                 ) -> list[float | None]:
    """Seconds from ``started_at`` to each camera's first frame, polling its readings."""
    ttff: list[float | None] = [None] * len(cams)
    while time.monotonic() < started_at + deadline_s and None in ttff:
        for i, cam in enumerate(cams):
            got = cam.readings() if ttff[i] is None else []
            if got:
                ttff[i] = got[0]["t_host_s"] - started_at
        time.sleep(POLL_S)
    for cam in cams:
        cam.readings()  # what came meanwhile
    return ttff


def frame_rates(cams: list[AnyCamera], window_s: float) -> list[float]:
    """Frames per second of each camera over ``window_s``, from its own count."""
    before = [cam.get_status().frames for cam in cams]
    t0 = time.monotonic()
    time.sleep(window_s)
    elapsed = time.monotonic() - t0
    return [(cam.get_status().frames - n) / elapsed for cam, n in zip(cams, before,
                                                                          strict=True)]


def run_case(urls: list[str], stuck: bool, processes: bool, args: argparse.Namespace
             ) -> Case:
    """Start the (stuck, then) healthy cameras and measure the healthy ones."""
    with ExitStack() as stack:
        if stuck:
            url = stack.enter_context(silent_server())
            hung = make_camera("stuck", url, args.stuck_timeout, processes)
            hung.start()
            stack.callback(hung.stop)
            time.sleep(0.2)  # its open is under way
        cams = [make_camera(f"cam{i}", u, 5.0, processes) for i, u in enumerate(urls)]
        started_at = time.monotonic()
        for cam in cams:
            cam.start()
            stack.callback(cam.stop)
        ttff = first_frames(cams, started_at, args.stuck_timeout + 1.5)
        fps = frame_rates(cams, args.window)
    return Case(len(urls), stuck, processes, ttff, fps)


def figures(cases: list[Case]) -> dict:
    """The measured figures, with ratios against one camera alone."""
    base = cases[0]
    base_ttff, base_fps = base.ttff_s[0] or float("nan"), base.fps[0]
    out: dict = {"nominal_fps": NOMINAL_FPS, "ttff_alone_s": base_ttff,
                 "fps_alone": base_fps, "fps_alone_to_nominal": base_fps / NOMINAL_FPS}
    for case in cases[1:]:
        ttffs = [t if t is not None else float("inf") for t in case.ttff_s]
        out[f"ttff_max_s_{case.key}"] = max(ttffs)
        out[f"ttff_ratio_{case.key}"] = max(ttffs) / base_ttff
        out[f"fps_min_{case.key}"] = min(case.fps)
        out[f"fps_to_nominal_{case.key}"] = min(case.fps) / NOMINAL_FPS
        out[f"fps_to_alone_{case.key}"] = min(case.fps) / base_fps
    return out


def run(args: argparse.Namespace, console: Console) -> dict:
    """Render the video, start the twins, run every case."""
    scene = SceneSettings(width_px=args.width, height_px=args.height, fps=NOMINAL_FPS)
    traffic = generate_traffic(StripArray(lanes=1), 30.0, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        video = render_lane_video(traffic, Path(tmp) / "lane.avi", duration_s=4.0,
                                  scene=scene).path
        twins = []
        for _ in range(max(args.cameras)):
            twin = RtspTwin(video)
            twin.start()
            stack.callback(twin.stop)
            twins.append(twin)
        cases = [run_case([twins[0].url], False, False, args)]  # the baseline
        for processes in MODES[args.mode]:
            for n in args.cameras:
                for stuck in (False, True):
                    if n == 1 and not stuck and not processes:
                        continue  # the baseline
                    console.print(f"case: {n} camera(s){' + 1 stuck' if stuck else ''}, "
                                  f"{'a process each' if processes else 'threads'}")
                    cases.append(run_case([t.url for t in twins[:n]], stuck, processes,
                                          args))
    result = figures(cases)
    result.update({"width_px": args.width, "height_px": args.height,
                   "stuck_open_timeout_s": args.stuck_timeout, "window_s": args.window})
    return result


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 2, 4],
                        help="numbers of healthy cameras to run together")
    parser.add_argument("--stuck-timeout", type=float, default=3.0,
                        help="open_timeout_s of the stuck camera (the driver's default is "
                             "5; shorter keeps the run under a minute)")
    parser.add_argument("--mode", choices=sorted(MODES), default="both",
                        help="cameras read by threads, by a process each, or both")
    parser.add_argument("--window", type=float, default=1.5,
                        help="seconds over which the frame rates are counted")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=352)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--json", action="store_true", help="end with one JSON object")
    args = parser.parse_args()
    console = Console(stderr=args.json)
    t0 = time.monotonic()
    result = run(args, console)
    result["run_s"] = time.monotonic() - t0
    report("cameras in one process", result, console, args.json)


if __name__ == "__main__":
    main()
