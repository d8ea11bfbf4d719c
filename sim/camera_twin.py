"""The simulated camera: a video of the trucks of one lane passing, in time with the truth.

:func:`render_lane_video` draws, for every :class:`~sim.traffic.VehicleTruth` of a lane,
a side view of the vehicle — a box body, wheels at its axle positions, its number plate
on the front (and the double-row plate on the rear of a truck) — moving across the frame
at the truth's speed, its front axle on the trigger line (the first sensor row) exactly
at ``t0_s``. The video is written with OpenCV (MJPG in AVI needs no ffmpeg) at an exact
frame rate; the returned :class:`TwinManifest` says when each vehicle crosses, in
simulation time and as a frame number, with its plate, so a test or the demo can check
that a trigger picked the right frame and that the plate reader read the right plate.

Every frame carries its own number as a bar code of black and white blocks along the top
edge (:func:`encode_frame_number`); :func:`decode_frame_number` reads it back by pixel
means after MJPG compression, so a test knows which frame a camera handed it.

Plates are drawn larger than life (``plate_px_w``) so that they stay readable at video
resolution: the picture is a test pattern for the pipeline, not a photograph.
"""

import itertools
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from drivers.errors import DeviceError
from sim.plates import PlateColour, draw_plate, random_plate_text
from sim.traffic import VehicleTruth

CODE_BITS = 20
CHECK_BITS = 4
"""Frame-number bar code: 20 bits of number, then 4 bits of (number of ones mod 16)."""
CODE_HEIGHT_PX = 12
MIN_SPEED_MPS = 1.0
"""Speed floor when drawing a braking vehicle beyond its measured pass."""
NEV_SHARE = 0.1
"""Share of new-energy plates (green, yellow-green) among simulated vehicles."""


@dataclass(frozen=True)
class SceneSettings:
    """Frame size and rate, metres of road in view, and where the trigger line is."""

    width_px: int = 960
    height_px: int = 540
    fps: float = 25.0
    view_m: float = 24.0
    trigger_share: float = 0.4
    plate_px_w: int = 80
    jpeg_quality: int = 90

    @property
    def px_per_m(self) -> float:
        """Horizontal scale of the road."""
        return self.width_px / self.view_m

    @property
    def trigger_x_px(self) -> int:
        """Column of the trigger line (the first sensor row)."""
        return round(self.trigger_share * self.width_px)

    @property
    def road_y_px(self) -> int:
        """Row of the road surface."""
        return self.height_px - 30


@dataclass(frozen=True)
class Passage:
    """One vehicle's crossing of the trigger line, and its plate."""

    vehicle_id: int
    name: str
    code: str
    plate: str
    colour: PlateColour
    t_cross_s: float      # simulation time the front axle is on the trigger line (t0_s)
    stream_t_s: float     # the same moment on the video's own clock
    frame: int            # the frame nearest to that moment


@dataclass(frozen=True)
class TwinManifest:
    """What the video shows and when: frame ``k`` shows ``t_start_s + k / fps``."""

    path: Path
    fps: float
    n_frames: int
    t_start_s: float
    width_px: int
    height_px: int
    trigger_x_px: int
    passages: tuple[Passage, ...] = field(default_factory=tuple)

    @property
    def duration_s(self) -> float:
        """Length of the video."""
        return self.n_frames / self.fps

    def frame_time_s(self, frame: int) -> float:
        """Simulation time shown by ``frame``."""
        return self.t_start_s + frame / self.fps

    def as_dict(self) -> dict[str, Any]:
        """A plain dict (for JSON)."""
        out = asdict(self)
        out["path"] = str(self.path)
        return out

    def write_json(self, path: Path) -> None:
        """Save beside the video, for tools that read it later."""
        path.write_text(json.dumps(self.as_dict(), ensure_ascii=False, indent=1),
                        encoding="utf-8")


@dataclass(frozen=True)
class _Look:
    """How one vehicle is drawn: sizes in metres, colours BGR, plates pre-rendered."""

    front_overhang_m: float
    rear_overhang_m: float
    height_m: float
    wheel_r_m: float
    cab_m: float
    body_bgr: tuple[int, int, int]
    front_plate: np.ndarray
    rear_plate: np.ndarray


def vehicle_plate(v: VehicleTruth, seed: int = 0) -> tuple[str, PlateColour]:
    """The plate of a simulated vehicle, the same for the same seed and vehicle id.

    Cars get blue plates, other vehicles yellow; ``NEV_SHARE`` of each are new-energy
    (green, yellow-green).
    """
    rng = np.random.default_rng((seed, v.vehicle_id))
    nev = rng.uniform() < NEV_SHARE
    colour: PlateColour = ("green" if nev else "blue") if v.is_car else \
        ("yellow_green" if nev else "yellow")
    return random_plate_text(rng, colour), colour


def _look(v: VehicleTruth, plate: str, colour: PlateColour, scene: SceneSettings,
          seed: int) -> _Look:
    """Sizes and colours of a vehicle, seeded by its id."""
    rng = np.random.default_rng((seed, v.vehicle_id, 1))
    scale = scene.plate_px_w / 440.0
    front = draw_plate(plate, colour, px_per_mm=scale)
    rear = draw_plate(plate, colour, double_row=colour == "yellow", px_per_mm=scale)
    body = tuple(int(c) for c in rng.integers(60, 230, 3))
    if v.is_car:
        return _Look(front_overhang_m=0.9, rear_overhang_m=0.9, height_m=1.5, wheel_r_m=0.32,
                     cab_m=0.0, body_bgr=body, front_plate=front, rear_plate=rear)
    return _Look(front_overhang_m=1.4, rear_overhang_m=1.6, height_m=3.6, wheel_r_m=0.5,
                 cab_m=2.2, body_bgr=body, front_plate=front, rear_plate=rear)


def front_position_m(v: VehicleTruth, t_s: np.ndarray) -> np.ndarray:
    """How far the front axle is past the trigger line at ``t_s`` (negative before).

    Constant acceleration from ``t0_s`` as in the truth, with the speed held at
    ``MIN_SPEED_MPS`` or more, so a braking vehicle still leaves the picture.
    """
    dt = np.asarray(t_s, float) - v.t0_s
    a, v0 = v.accel_mps2, v.speed_mps
    if abs(a) < 1e-9:
        return v0 * dt
    dt_floor = (MIN_SPEED_MPS - v0) / a  # when the speed reaches the floor
    free = v0 * dt + 0.5 * a * dt**2
    at_floor = v0 * dt_floor + 0.5 * a * dt_floor**2 + MIN_SPEED_MPS * (dt - dt_floor)
    floored = dt > dt_floor if a < 0 else dt < dt_floor
    return np.where(floored, at_floor, free)


def _leave_time_s(v: VehicleTruth, look: _Look, scene: SceneSettings) -> float:
    """When the vehicle's rear has left the right edge of the frame."""
    needed_m = ((scene.width_px - scene.trigger_x_px) / scene.px_per_m
                + v.axle_pos_m[-1] + look.rear_overhang_m + 1.0)
    grid = v.t0_s + np.arange(0.0, 600.0, 0.02)
    past = np.nonzero(front_position_m(v, grid) >= needed_m)[0]
    return float(grid[past[0]]) if past.size else float(grid[-1])


class LaneScene:
    """The picture of one lane at any simulation time: drawn on demand, so a live camera
    twin can show the moment the roadside unit is weighing without a video made first."""

    def __init__(self, vehicles: Sequence[VehicleTruth], *, lane: int = 0,
                 scene: SceneSettings | None = None, seed: int = 0):
        self.scene = scene or SceneSettings()
        self.vehicles = sorted((v for v in vehicles if v.lane == lane), key=lambda v: v.t0_s)
        self.plates = {v.vehicle_id: vehicle_plate(v, seed) for v in self.vehicles}
        self.looks = {v.vehicle_id: _look(v, *self.plates[v.vehicle_id], self.scene, seed)
                      for v in self.vehicles}
        self._background = _background(self.scene)

    def end_s(self, t_start_s: float = 0.0) -> float:
        """When the last vehicle has left the picture."""
        ends = [_leave_time_s(v, self.looks[v.vehicle_id], self.scene) for v in self.vehicles]
        return max(ends, default=t_start_s + 1.0)

    def draw(self, t_s: float, number: int | None = None) -> np.ndarray:
        """The frame showing simulation time ``t_s``, its ``number`` coded along the top
        (modulo the code's range: a live camera's numbers run on, and may start below 0)."""
        frame = self._background.copy()
        for v in self.vehicles:
            front_m = float(front_position_m(v, t_s))
            if -80.0 < front_m < 80.0:  # out of the picture either way: nothing to draw
                _draw_vehicle(frame, v, self.looks[v.vehicle_id], front_m, self.scene)
        if number is not None:
            encode_frame_number(frame, number % 2**CODE_BITS)
        return frame


def render_lane_video(vehicles: Sequence[VehicleTruth], path: Path, *, lane: int = 0,
                      t_start_s: float = 0.0, duration_s: float | None = None,
                      scene: SceneSettings | None = None, seed: int = 0) -> TwinManifest:
    """Write the video of ``lane``'s vehicles to ``path`` (``.avi``, MJPG) and describe it.

    The video starts at simulation time ``t_start_s`` and lasts ``duration_s`` (by
    default until the last vehicle has left the picture). Vehicles of other lanes are
    ignored. Raises ``DeviceError`` when OpenCV cannot write the file.
    """
    lane_scene = LaneScene(vehicles, lane=lane, scene=scene, seed=seed)
    scene = lane_scene.scene
    if duration_s is None:
        duration_s = lane_scene.end_s(t_start_s) - t_start_s
    n_frames = max(1, round(duration_s * scene.fps))
    writer = _open_writer(path, scene)
    try:
        for k in range(n_frames):
            writer.write(lane_scene.draw(t_start_s + k / scene.fps, number=k))
    finally:
        writer.release()
    passages = tuple(_passage(v, lane_scene.plates[v.vehicle_id], t_start_s, scene.fps)
                     for v in lane_scene.vehicles)
    return TwinManifest(path=Path(path), fps=scene.fps, n_frames=n_frames, t_start_s=t_start_s,
                        width_px=scene.width_px, height_px=scene.height_px,
                        trigger_x_px=scene.trigger_x_px,
                        passages=tuple(p for p in passages if 0 <= p.frame < n_frames))


def _passage(v: VehicleTruth, plate: tuple[str, PlateColour], t_start_s: float, fps: float
             ) -> Passage:
    """When ``v`` crosses the trigger line, on both clocks, and the frame that shows it."""
    stream_t_s = v.t0_s - t_start_s
    return Passage(vehicle_id=v.vehicle_id, name=v.name, code=v.code, plate=plate[0],
                   colour=plate[1], t_cross_s=v.t0_s, stream_t_s=stream_t_s,
                   frame=round(stream_t_s * fps))


def _open_writer(path: Path, scene: SceneSettings) -> cv2.VideoWriter:
    """An MJPG writer at the scene's exact frame rate.

    OpenCV's own MJPEG/AVI writer: no FFmpeg needed, and it takes a JPEG quality.
    """
    writer = cv2.VideoWriter(str(path), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"),
                             scene.fps,
                             (scene.width_px, scene.height_px),
                             [cv2.VIDEOWRITER_PROP_QUALITY, scene.jpeg_quality])
    if not writer.isOpened():
        raise DeviceError(f"OpenCV cannot write the camera twin's video {path} "
                          f"(MJPG, {scene.width_px}x{scene.height_px} at {scene.fps} fps)")
    return writer


def _background(scene: SceneSettings) -> np.ndarray:
    """Sky, road and the trigger line, drawn once."""
    frame = np.empty((scene.height_px, scene.width_px, 3), np.uint8)
    frame[:] = (200, 170, 140)  # sky, BGR
    frame[scene.road_y_px:] = (90, 90, 90)
    x = scene.trigger_x_px
    cv2.line(frame, (x, scene.road_y_px), (x, scene.height_px - 1), (0, 0, 230), 2)
    return frame


def _draw_vehicle(frame: np.ndarray, v: VehicleTruth, look: _Look, front_m: float,
                  scene: SceneSettings) -> None:
    """Body, cab, wheels and plates of one vehicle whose front axle is at ``front_m``."""
    ppm, ground = scene.px_per_m, scene.road_y_px
    x_axle = scene.trigger_x_px + front_m * ppm
    x_front = x_axle + look.front_overhang_m * ppm
    x_rear = x_axle - (v.axle_pos_m[-1] + look.rear_overhang_m) * ppm
    if x_rear > scene.width_px or x_front < 0:
        return
    clearance = 2 * look.wheel_r_m * 0.7 * ppm
    top = ground - look.height_m * ppm
    if look.cab_m > 0:  # truck: a cab in front of a taller load box
        x_cab = x_front - look.cab_m * ppm
        _box(frame, (x_cab, ground - 3.0 * ppm), (x_front, ground - clearance), look.body_bgr)
        _box(frame, (x_rear, top), (x_cab - 0.2 * ppm, ground - clearance), (150, 150, 160))
    else:
        _box(frame, (x_rear, top), (x_front, ground - clearance), look.body_bgr)
    for pos_m in v.axle_pos_m:
        centre = (round(x_axle - pos_m * ppm), round(ground - look.wheel_r_m * ppm))
        cv2.circle(frame, centre, round(look.wheel_r_m * ppm), (30, 30, 30), -1)
        cv2.circle(frame, centre, max(1, round(look.wheel_r_m * ppm * 0.4)), (170, 170, 170), -1)
    plate_bottom = round(ground - clearance)
    _paste(frame, look.front_plate, round(x_front) - look.front_plate.shape[1],
           plate_bottom - look.front_plate.shape[0])
    _paste(frame, look.rear_plate, round(x_rear), plate_bottom - look.rear_plate.shape[0])


def _box(frame: np.ndarray, top_left: tuple[float, float], bottom_right: tuple[float, float],
         bgr: tuple[int, int, int]) -> None:
    """A filled rectangle with an outline, clipped by OpenCV."""
    p0 = (round(top_left[0]), round(top_left[1]))
    p1 = (round(bottom_right[0]), round(bottom_right[1]))
    cv2.rectangle(frame, p0, p1, bgr, -1)
    cv2.rectangle(frame, p0, p1, (40, 40, 40), 1)


def _paste(frame: np.ndarray, image: np.ndarray, x: int, y: int) -> None:
    """Copy ``image`` into ``frame`` with its top-left corner at (x, y), clipped."""
    h, w = image.shape[:2]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, frame.shape[1]), min(y + h, frame.shape[0])
    if x0 < x1 and y0 < y1:
        frame[y0:y1, x0:x1] = image[y0 - y:y1 - y, x0 - x:x1 - x]


def _code_bits(number: int) -> list[int]:
    """Data bits (most significant first) then check bits of a frame number."""
    data = [(number >> (CODE_BITS - 1 - i)) & 1 for i in range(CODE_BITS)]
    check = sum(data) % (1 << CHECK_BITS)
    return data + [(check >> (CHECK_BITS - 1 - i)) & 1 for i in range(CHECK_BITS)]


def encode_frame_number(frame: np.ndarray, number: int) -> None:
    """Draw ``number`` as a bar code of white (1) and black (0) blocks along the top.

    Examples
    --------
    >>> img = np.zeros((40, 240, 3), np.uint8)
    >>> encode_frame_number(img, 1234)
    >>> decode_frame_number(img)
    1234
    """
    if not 0 <= number < 1 << CODE_BITS:
        raise ValueError(f"frame number must be in 0..{(1 << CODE_BITS) - 1} (got {number})")
    edges = np.linspace(0, frame.shape[1], CODE_BITS + CHECK_BITS + 1).round().astype(int)
    for bit, (x0, x1) in zip(_code_bits(number), itertools.pairwise(edges), strict=True):
        frame[:CODE_HEIGHT_PX, x0:x1] = 255 if bit else 0


def decode_frame_number(frame: np.ndarray) -> int | None:
    """The frame number of a twin's frame, or None when the bar code does not check.

    Reads the mean brightness of the middle of each block, so JPEG ringing at the block
    edges does not matter.
    """
    n_blocks = CODE_BITS + CHECK_BITS
    edges = np.linspace(0, frame.shape[1], n_blocks + 1)
    strip = frame[2:CODE_HEIGHT_PX - 2].astype(np.float32)
    bits = []
    for x0, x1 in itertools.pairwise(edges):
        margin = (x1 - x0) / 4
        bits.append(int(strip[:, round(x0 + margin):round(x1 - margin)].mean() > 128))
    number = int("".join(map(str, bits[:CODE_BITS])), 2)
    return number if _code_bits(number) == bits else None
