"""The simulated camera: plates drawn as GA 36 has them, and videos in time with the truth."""

import subprocess
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

import sim.plates
from drivers.errors import DeviceError
from drivers.strips import StripArray
from sim.camera_twin import (
    SceneSettings,
    decode_frame_number,
    encode_frame_number,
    front_position_m,
    render_lane_video,
    vehicle_plate,
)
from sim.plates import (
    LETTERS,
    PLATE_COLOURS,
    PROVINCES,
    draw_plate,
    find_font,
    is_valid_plate,
    random_plate_text,
)
from sim.traffic import generate_traffic

HUE_RANGES = {  # OpenCV hue, 0..180 (degrees / 2)
    "blue": (100, 125),
    "yellow": (15, 35),
    "green": (50, 90),
}
SCENE = SceneSettings(width_px=480, height_px=272, fps=25.0, view_m=30.0, plate_px_w=64)


def background_hue(plate_bgr: np.ndarray, colour: str) -> float:
    """Mean hue of the plate's background: saturated pixels that are not ink."""
    hsv = cv2.cvtColor(plate_bgr, cv2.COLOR_BGR2HSV).reshape(-1, 3).astype(float)
    # white ink on blue: keep the saturated pixels; black ink on the others: keep the
    # bright, coloured ones (the pale top of the green gradient counts)
    keep = (hsv[:, 1] > 120) if colour == "blue" else (hsv[:, 2] > 120) & (hsv[:, 1] > 25)
    return float(hsv[keep, 0].mean())


def ink_mask(plate_bgr: np.ndarray, colour: str) -> np.ndarray:
    """Pixels of the characters: white on blue, black on the others."""
    grey = cv2.cvtColor(plate_bgr, cv2.COLOR_BGR2GRAY)
    if colour == "blue":
        hsv = cv2.cvtColor(plate_bgr, cv2.COLOR_BGR2HSV)
        return (hsv[:, :, 1] < 60) & (grey > 180)
    return grey < 80


def inner(image: np.ndarray, px_per_mm: float) -> np.ndarray:
    """The plate inside its frame line and rivets (8 mm in from the edge, 18 mm at the top)."""
    m, top = round(8 * px_per_mm), round(18 * px_per_mm)
    return image[top:-m, m:-m]


# -- plate text -----------------------------------------------------------------------

@pytest.mark.parametrize("colour", PLATE_COLOURS)
def test_plate_text_follows_the_grammar_and_the_seed(colour):
    rng = np.random.default_rng(7)
    texts = [random_plate_text(rng, colour) for _ in range(300)]
    assert all(is_valid_plate(t, colour) for t in texts)
    assert all(t[0] in PROVINCES and t[1] in LETTERS for t in texts)
    assert not any(c in t for t in texts for c in "IO")
    again = np.random.default_rng(7)
    assert texts[:5] == [random_plate_text(again, colour) for _ in range(5)]
    assert len(set(texts)) > 290
    assert {len(t) for t in texts} == ({8} if colour in ("green", "yellow_green") else {7})


def test_plate_grammar_rejects_what_ga36_does_not_issue():
    assert is_valid_plate("京A12345", "blue")
    for bad in ("京I12345", "京A1234O", "港A12345", "京A1234", "京A123456"):
        assert not is_valid_plate(bad, "blue"), bad
    assert is_valid_plate("粤BD12345", "green") and not is_valid_plate("粤B12345D", "green")
    assert is_valid_plate("粤B12345D", "yellow_green")
    with pytest.raises(ValueError, match="is not a blue plate of GA 36"):
        draw_plate("京I12345", "blue")
    with pytest.raises(ValueError, match="double-row plates are yellow"):
        draw_plate("京A12345", "blue", double_row=True)


# -- plate images ---------------------------------------------------------------------

@pytest.mark.parametrize(("colour", "hue"), [("blue", "blue"), ("yellow", "yellow"),
                                             ("green", "green")])
def test_plate_background_has_the_colour_of_its_kind(colour, hue):
    text = random_plate_text(np.random.default_rng(1), colour)
    lo, hi = HUE_RANGES[hue]
    assert lo <= background_hue(draw_plate(text, colour), colour) <= hi


def test_large_new_energy_plate_is_yellow_left_and_green_right():
    plate = draw_plate("苏E12345D", "yellow_green")
    width = plate.shape[1]
    left, right = plate[:, : width // 8], plate[:, -width // 2:]
    assert HUE_RANGES["yellow"][0] <= background_hue(left, "yellow") <= HUE_RANGES["yellow"][1]
    assert HUE_RANGES["green"][0] <= background_hue(right, "green") <= HUE_RANGES["green"][1]


def test_small_new_energy_plate_is_a_gradient():
    plate = draw_plate("粤BD12345", "green")
    hsv = cv2.cvtColor(plate, cv2.COLOR_BGR2HSV)
    column = hsv[:, round(136 * 0.5)]  # the gap between the letter and the serial
    assert column[-5, 1] > column[5, 1] + 60  # more saturated green at the bottom


@pytest.mark.parametrize("colour", PLATE_COLOURS)
def test_plate_text_is_drawn(colour):
    text = random_plate_text(np.random.default_rng(2), colour)
    plate = draw_plate(text, colour, px_per_mm=0.5)
    share = ink_mask(inner(plate, 0.5), colour).mean()
    assert 0.08 < share < 0.5
    # ink spread over the width: every eighth of the plate holds some characters
    columns = ink_mask(inner(plate, 0.5), colour).any(axis=0)
    assert all(part.any() for part in np.array_split(columns, 8))


def rows_of_ink(mask: np.ndarray) -> list[tuple[int, int]]:
    """Runs of pixel rows holding ink: (first, last) per text row."""
    has_ink = mask.mean(axis=1) > 0.02
    runs, start = [], None
    for y, ink in enumerate([*has_ink, False]):
        if ink and start is None:
            start = y
        elif not ink and start is not None:
            runs.append((start, y - 1))
            start = None
    return runs


def test_double_row_plate_has_two_rows_of_text():
    plate = draw_plate("鲁Q08F99", "yellow", double_row=True, px_per_mm=0.5)
    assert plate.shape[:2] == (110, 220)
    runs = rows_of_ink(ink_mask(inner(plate, 0.5), "yellow"))
    assert len(runs) == 2
    upper, lower = (b - a + 1 for a, b in runs)
    assert lower > 1.4 * upper  # the serial is taller than province and letter
    single = draw_plate("鲁Q08F99", "yellow", px_per_mm=0.5)
    assert len(rows_of_ink(ink_mask(inner(single, 0.5), "yellow"))) == 1


def test_a_missing_font_names_the_debian_package(monkeypatch):
    monkeypatch.setattr(sim.plates, "FONT_PATHS", ("/nonexistent/wqy-zenhei.ttc",))
    fallback = subprocess.CompletedProcess([], 0, "DejaVu Sans|/usr/share/fonts/x.ttf", "")
    monkeypatch.setattr(sim.plates.subprocess, "run", lambda *a, **k: fallback)
    with pytest.raises(DeviceError, match="install the Debian package fonts-wqy-zenhei"):
        find_font()


# -- the video twin -------------------------------------------------------------------

@pytest.fixture(scope="module")
def traffic():
    return generate_traffic(StripArray(lanes=2), 30.0, seed=5)


@pytest.fixture(scope="module")
def rendered(traffic, tmp_path_factory):
    path = tmp_path_factory.mktemp("twin") / "lane1.avi"
    manifest = render_lane_video(traffic, path, lane=1, t_start_s=2.0, duration_s=8.0,
                                 scene=SCENE, seed=9)
    return manifest


def read_all(path: Path) -> tuple[list[np.ndarray], float]:
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()
    return frames, fps


def test_video_has_exact_frame_rate_and_numbered_frames(rendered):
    frames, fps = read_all(rendered.path)
    assert fps == 25.0 and len(frames) == rendered.n_frames == 200
    assert [decode_frame_number(f) for f in frames] == list(range(200))
    assert frames[0].shape == (SCENE.height_px, SCENE.width_px, 3)


def test_manifest_lists_the_lanes_crossings_with_their_plates(rendered, traffic):
    expected = [v for v in traffic if v.lane == 1 and 2.0 <= v.t0_s < 10.0]
    assert [p.vehicle_id for p in rendered.passages] == [v.vehicle_id for v in expected]
    assert expected, "the seed should put vehicles in lane 1 within the video"
    for p, v in zip(rendered.passages, expected, strict=True):
        assert p.t_cross_s == v.t0_s and p.stream_t_s == pytest.approx(v.t0_s - 2.0)
        assert p.frame == round((v.t0_s - 2.0) * 25)
        assert is_valid_plate(p.plate, p.colour)
        assert (p.plate, p.colour) == vehicle_plate(v, seed=9)
        assert p.colour in (("blue", "green") if v.is_car else ("yellow", "yellow_green"))


def test_front_axle_is_on_the_trigger_line_in_the_crossing_frame(rendered, traffic):
    frames, _ = read_all(rendered.path)
    by_id = {v.vehicle_id: v for v in traffic}
    for p in rendered.passages:
        v = by_id[p.vehicle_id]
        t_frame = rendered.frame_time_s(p.frame)
        x = SCENE.trigger_x_px + float(front_position_m(v, t_frame)) * SCENE.px_per_m
        assert abs(x - SCENE.trigger_x_px) <= v.speed_mps / 25 / 2 * SCENE.px_per_m + 1
        r_px = (0.32 if v.is_car else 0.5) * SCENE.px_per_m
        y = round(SCENE.road_y_px - r_px)  # the wheel's centre row
        tyre = frames[p.frame][y, round(x + 0.75 * r_px)]
        assert tyre.max() < 80, f"no tyre at the trigger line for vehicle {v.vehicle_id}"


def test_vehicle_position_follows_speed_and_keeps_moving_when_braking(traffic):
    v = traffic[0]
    assert front_position_m(v, v.t0_s) == 0.0
    assert front_position_m(v, v.t0_s + 1.0) == pytest.approx(
        v.speed_mps + 0.5 * v.accel_mps2, rel=1e-9)
    braking = replace(v, speed_mps=10.0, accel_mps2=-2.0)
    t = v.t0_s + np.array([4.0, 4.5, 10.0, 20.0])  # floor speed of 1 m/s reached at 4.5 s
    pos = front_position_m(braking, t)
    assert np.all(np.diff(pos) > 0)
    assert pos[3] - pos[2] == pytest.approx(10.0)


def test_frame_number_code_survives_jpeg_and_detects_damage():
    image = np.full((60, 480, 3), 128, np.uint8)
    for n in (0, 1, 77, 4095, 2**20 - 1):
        encode_frame_number(image, n)
        _, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 50])
        assert decode_frame_number(cv2.imdecode(jpeg, cv2.IMREAD_COLOR)) == n
    encode_frame_number(image, 1234)
    image[:12, :20] = 255 - image[:12, :20]  # flip the first bit
    assert decode_frame_number(image) is None
    with pytest.raises(ValueError, match="frame number must be in"):
        encode_frame_number(image, 2**20)
