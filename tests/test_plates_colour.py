"""Plate colour from pixels (plates.colour): plates drawn to GA 36's colours by the
simulated camera, white and black plates, and the real plates of the test images."""

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from plates.colour import nearest_paint, plate_colour
from plates.locate import box_from_rect, rectify
from plates.reader import load_image
from sim.plates import draw_plate, random_plate_text

DATA = Path(__file__).parent / "data" / "plates"
GROUND_TRUTH_COLOURS = {"蓝牌": "blue", "黄牌": "yellow"}


@pytest.mark.parametrize("colour", ["blue", "yellow", "green", "yellow_green"])
@pytest.mark.parametrize("px_per_mm", [0.25, 0.5, 1.0])
def test_drawn_plates_have_their_colour(colour, px_per_mm):
    rng = np.random.default_rng(11)
    for _ in range(5):
        image = draw_plate(random_plate_text(rng, colour), colour, px_per_mm=px_per_mm)
        assert plate_colour(image) == colour


def test_a_drawn_double_row_yellow_plate_is_yellow():
    image = draw_plate("苏E2Y256", "yellow", double_row=True)
    assert plate_colour(image) == "yellow"


def _lettered(background: tuple[int, int, int], ink: tuple[int, int, int]) -> np.ndarray:
    image = np.full((70, 220, 3), background, np.uint8)
    cv2.putText(image, "A12345", (12, 52), cv2.FONT_HERSHEY_SIMPLEX, 1.6, ink, 4)
    return image


def test_white_and_black_plates():
    assert plate_colour(_lettered((235, 235, 235), (20, 20, 20))) == "white"
    assert plate_colour(_lettered((25, 25, 25), (235, 235, 235))) == "black"


def test_a_darkened_blue_plate_stays_blue_a_bleached_one_does_not():
    image = draw_plate("苏E2Y256", "blue")
    assert plate_colour((image * 0.45).astype(np.uint8)) == "blue"
    bleached = cv2.addWeighted(image, 0.2, np.full_like(image, 240), 0.8, 0)
    assert plate_colour(bleached) == "white"


@pytest.mark.parametrize("path", sorted((DATA / "crops").glob("*.jpg")), ids=lambda p: p.stem)
def test_real_blue_crops_are_blue(path):
    assert plate_colour(load_image(path)) == "blue"


def test_real_plates_in_the_scenes_have_the_labelled_colour():
    with (DATA / "scenes" / "ground_truth.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows
    for row in rows:
        box = box_from_rect(((float(row["x"]), float(row["y"])),
                             (float(row["width"]), float(row["height"])),
                             float(row["rotation_deg"])))
        crop = rectify(load_image(DATA / "scenes" / row["image"]), box)
        if row["plate"] in LIT_GREEN:
            continue
        assert plate_colour(crop) == GROUND_TRUTH_COLOURS[row["colour"]], row["plate"]


LIT_GREEN = {"川R35779"}
"""A yellow plate photographed under a light that turns its paint lime green."""


def test_a_yellow_plate_lit_green_measures_green_and_is_nearest_yellow():
    """Pixels alone say green; among the paints a seven-character plate can have, the
    nearest in hue is yellow — which the reader reports (test_plates_reader)."""
    crop = rectify(load_image(DATA / "scenes" / "川R35779.jpg"),
                   box_from_rect(((497, 237), (125, 40), 0)))
    assert plate_colour(crop) == "green"
    assert nearest_paint(crop, ["blue", "yellow"]) == "yellow"
    assert nearest_paint(crop, []) is None
