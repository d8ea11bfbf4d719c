"""Plate outlines (plates.locate): a plate seen at an angle is a parallelogram or a
trapezoid; its four corners are found in reading order and straighten it."""

import cv2
import numpy as np

from plates.locate import find_candidates, outline_quad, quad_aspect, straighten
from sim.plates import draw_plate


def sheared_frame(shear: float) -> tuple[np.ndarray, np.ndarray]:
    """A blue plate drawn upright, then sheared (vertical strokes stay vertical, the rows
    climb), set into a grey frame; returns the frame and the plate's true corners."""
    plate = draw_plate("川A019W2", "blue", px_per_mm=0.4)
    h, w = plate.shape[:2]
    corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    placed = corners + np.float32([200, 250]) + np.float32(
        [[0, 0], [0, -shear * w], [0, -shear * w], [0, 0]])
    matrix = cv2.getPerspectiveTransform(corners, placed)
    frame = np.full((480, 640, 3), 120, np.uint8)
    warped = cv2.warpPerspective(plate, matrix, (640, 480))
    mask = cv2.warpPerspective(np.full((h, w), 255, np.uint8), matrix, (640, 480))
    frame[mask > 0] = warped[mask > 0]
    return frame, placed


def test_the_four_corners_of_a_parallelogram_come_in_reading_order():
    points = np.array([[[10, 60]], [[110, 10]], [[112, 40]], [[12, 90]]], np.int32)
    quad = outline_quad(points)
    assert quad is not None
    assert np.allclose(quad, [[10, 60], [110, 10], [112, 40], [12, 90]])
    assert 3.0 < quad_aspect(quad) < 4.0


def test_a_sheared_plate_is_found_skewed_and_straightened():
    frame, truth = sheared_frame(0.8)
    candidates = [c for c in find_candidates(frame) if c.paint == "blue"]
    assert candidates, "the plate's paint was not found"
    plate = candidates[0]
    assert plate.skewed
    assert np.abs(plate.quad - truth).max() < 12
    upright = straighten(frame, plate.quad, 64, 440 / 140)
    assert upright.shape == (64, 201, 3)
    # straightened, the blue fills the crop (the rotated rectangle's crop is half frame)
    hsv = cv2.cvtColor(upright, cv2.COLOR_BGR2HSV)
    assert np.count_nonzero((hsv[..., 0] > 95) & (hsv[..., 1] > 70)) > 0.5 * 64 * 201


def test_an_upright_plate_is_not_skewed():
    frame, _ = sheared_frame(0.0)
    plate = next(c for c in find_candidates(frame) if c.paint == "blue")
    assert not plate.skewed


def test_a_plate_joined_to_thin_paint_strands_is_still_found():
    """A chrome grille mirroring the plate's blue joins it in thin strands: the region as
    a whole has no plate's shape, opened it has."""
    frame, truth = sheared_frame(0.0)
    blue = [int(v) for v in frame[int(truth[:, 1].mean()), int(truth[0, 0]) + 3]]
    top = int(truth[:, 1].min())
    for k in range(6):   # strands rising from the plate's top edge, a few px wide
        x = int(truth[0, 0]) + 10 + 30 * k
        cv2.line(frame, (x, top), (x + 40, top - 120), blue, 1)
    cv2.line(frame, (int(truth[0, 0]) + 50, top - 120), (int(truth[1, 0]) + 40, top - 120),
             blue, 1)
    found = [c for c in find_candidates(frame) if c.paint == "blue"]
    assert found, "the plate was not found among its strands"
    plate = found[0]
    assert abs(plate.box.cx - truth[:, 0].mean()) < 10
    assert abs(plate.box.cy - truth[:, 1].mean()) < 10
    assert 2.5 < plate.box.aspect < 4.0
