"""Plate colour from pixels, and masks of plate-coloured pixels for finding plates.

A plate's background is one of a few saturated paints (blue, yellow, green) or white or
black; the characters contrast with it. So the colour of a plate crop is the colour class
most of its pixels fall in, and the large new-energy plate (yellow left, green right) is the
one whose left part is yellow and right part green. Thresholds are in OpenCV's HSV (hue
0–179, saturation and value 0–255) and were set on the shared scene photos and on plates
drawn by :mod:`sim.plates`.

Examples
--------
>>> import numpy as np
>>> blue = np.zeros((20, 80, 3), np.uint8); blue[:] = (200, 72, 0)     # BGR
>>> plate_colour(blue)
'blue'
>>> plate_colour(np.full((20, 80, 3), 240, np.uint8))
'white'
>>> is_greyscale(np.full((20, 80, 3), 240, np.uint8)), is_greyscale(blue)
(True, False)
"""

from dataclasses import dataclass

import cv2
import numpy as np

from overload.plates import PlateColour


@dataclass(frozen=True)
class HueBand:
    """Pixels of one paint: hue within [low, high], saturation and value at least these."""

    low: int
    high: int
    saturation: int
    value: int


BANDS: dict[str, HueBand] = {
    "blue": HueBand(95, 130, 70, 50),
    "yellow": HueBand(11, 34, 70, 70),
    "green": HueBand(35, 90, 45, 60),
}
"""The chromatic plate paints."""
WHITE_MAX_SATURATION, WHITE_MIN_VALUE = 50, 150
BLACK_MAX_VALUE = 70
CHROMATIC_SHARE = 0.25
"""A crop whose pixels are this much one paint has that colour."""


def paint_mask(hsv: np.ndarray, paint: str) -> np.ndarray:
    """uint8 mask (0/255) of the pixels of one chromatic paint in an HSV image."""
    band = BANDS[paint]
    return cv2.inRange(hsv, (band.low, band.saturation, band.value), (band.high, 255, 255))


def shares(crop: np.ndarray) -> dict[str, float]:
    """Share of a BGR crop's pixels in each class: the paints, white and black."""
    hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)
    total = hsv.shape[0] * hsv.shape[1]
    found = {paint: float(np.count_nonzero(paint_mask(hsv, paint))) / total for paint in BANDS}
    s, v = hsv[..., 1], hsv[..., 2]
    found["white"] = float(np.count_nonzero((s < WHITE_MAX_SATURATION)
                                            & (v >= WHITE_MIN_VALUE))) / total
    found["black"] = float(np.count_nonzero(v < BLACK_MAX_VALUE)) / total
    return found


GREY_MAX_SATURATION = 25
"""An image whose pixels are nearly all below this saturation has no colour to measure
(an infrared night camera, a greyscale file)."""


def is_greyscale(image: np.ndarray) -> bool:
    """Whether a BGR image carries no colour (95 % of its pixels nearly unsaturated)."""
    saturation = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)[..., 1]
    return float(np.percentile(saturation, 95)) < GREY_MAX_SATURATION


def plate_colour(crop: np.ndarray) -> PlateColour:
    """The background colour of a plate crop (BGR).

    The outer tenth on each side is left out (frame, car body around a loose crop).
    """
    h, w = crop.shape[:2]
    inner = crop[h // 10: h - h // 10 or h, w // 10: w - w // 10 or w]
    found = shares(inner)
    paints = {p: found[p] for p in BANDS}
    best = max(paints, key=lambda p: paints[p])
    if paints[best] >= CHROMATIC_SHARE:
        if best in ("green", "yellow") and _yellow_left_green_right(inner):
            return "yellow_green"
        return best  # type: ignore[return-value]
    return "white" if found["white"] >= found["black"] else "black"


def nearest_paint(crop: np.ndarray, paints: list[str]) -> str | None:
    """Of ``paints``, the one whose hue band lies nearest (around the hue circle) to the
    median hue of the crop's saturated pixels; None without such pixels or paints."""
    hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)
    saturated = hsv[..., 0][(hsv[..., 1] >= 45) & (hsv[..., 2] >= 50)]
    if not paints or saturated.size == 0:
        return None
    hue = float(np.median(saturated))

    def distance(paint: str) -> float:
        band = BANDS[paint]
        gap = abs(hue - (band.low + band.high) / 2)
        return min(gap, 180 - gap)

    return min(paints, key=distance)


def _yellow_left_green_right(crop: np.ndarray) -> bool:
    """The large new-energy plate: yellow on the left quarter, green on the right half."""
    w = crop.shape[1]
    left, right = shares(crop[:, : w // 4]), shares(crop[:, w // 2:])
    return left["yellow"] >= CHROMATIC_SHARE and right["green"] >= CHROMATIC_SHARE \
        and left["yellow"] > left["green"] and right["green"] > right["yellow"]
