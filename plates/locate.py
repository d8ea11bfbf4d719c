"""Where plates may be in a frame: regions of plate paint with a plate's shape.

A plate is a rectangle of one paint (blue, yellow, green) about 3.1:1 (single row) or 2:1
(double row), crossed by contrasting characters. So the frame is scaled down, each paint
masked in HSV, the character gaps closed by a morphological close wider than tall, and
each connected region kept if its rotated bounding rectangle (``cv2.minAreaRect``) has a
plate's aspect, size and fill. The text detector then only looks at these candidates,
not at the whole frame. White and black plates have no paint to find; the reader falls
back to text detection over the region of interest for them.

Candidates are :class:`Box` es in the frame's pixels, in OpenCV's rotated-rectangle
convention; :func:`rectify` cuts one out upright and at a size the recogniser reads well.
"""

from dataclasses import dataclass

import cv2
import numpy as np

from plates.colour import BANDS, paint_mask

WORK_SIDE = 960
"""Colour masks are computed on the frame scaled to this longer side."""
ASPECT_RANGE = (1.4, 7.0)
"""Long side over short side of a candidate (double-row plates 2:1, single 3.1:1, plus
perspective and a loose fit)."""
MIN_AREA = 250
"""Smallest candidate, in pixels of the scaled frame (a plate of ~30 × 9 px)."""
MAX_AREA_SHARE = 0.25
MIN_FILL = 0.45
"""Share of the rotated rectangle the region fills: a plate is solid paint."""
MAX_CANDIDATES = 12
OPENING = (7, 7)
"""Opening that cuts thin paint-coloured strands off a plate (scaled-frame pixels)."""
SKEW_SHARE = 0.25
"""A candidate's outline corner this far (share of its height) from its rotated
rectangle's makes it skewed: its crop is straightened by the outline instead."""


@dataclass(frozen=True)
class Box:
    """A rotated rectangle: centre, long side, short side, angle of the long side (deg)."""

    cx: float
    cy: float
    width: float
    height: float
    angle: float

    @property
    def aspect(self) -> float:
        return self.width / max(self.height, 1e-6)

    def corners(self) -> np.ndarray:
        """4 × 2 corner points (float32)."""
        return cv2.boxPoints(((self.cx, self.cy), (self.width, self.height), self.angle))

    def scaled(self, factor: float) -> "Box":
        return Box(self.cx * factor, self.cy * factor, self.width * factor,
                   self.height * factor, self.angle)

    def grown(self, dx: float, dy: float) -> "Box":
        """The same box with ``dx`` and ``dy`` added to each side, as shares of its size."""
        return Box(self.cx, self.cy, self.width * (1 + 2 * dx), self.height * (1 + 2 * dy),
                   self.angle)

    def as_list(self) -> list[float]:
        """[cx, cy, width, height, angle], rounded, for JSON."""
        return [round(v, 1) for v in (self.cx, self.cy, self.width, self.height, self.angle)]


@dataclass(frozen=True)
class Candidate:
    """A region that may be a plate, with the paint it was found in.

    ``quad`` is the region's outline as four corners (top-left, top-right, bottom-right,
    bottom-left, frame pixels) when it has one: a plate seen at an angle is a
    parallelogram or a trapezoid, which a rotated rectangle does not straighten.
    """

    box: Box
    paint: str
    fill: float
    quad: np.ndarray | None = None

    @property
    def skewed(self) -> bool:
        """Whether the outline departs from the rotated rectangle enough that cutting the
        rectangle out would leave the characters leaning."""
        if self.quad is None:
            return False
        rect = _order_corners(self.box.corners())
        return float(np.abs(self.quad - rect).max()) > SKEW_SHARE * self.box.height


def box_from_rect(rect: tuple) -> Box:
    """An OpenCV rotated rect, turned so that ``width`` is the long side."""
    (cx, cy), (w, h), angle = rect
    if h > w:
        w, h, angle = h, w, angle + 90.0
    angle = (angle + 90.0) % 180.0 - 90.0
    return Box(float(cx), float(cy), float(w), float(h), float(angle))


def find_candidates(image: np.ndarray, roi: tuple[int, int, int, int] | None = None,
                    paints: tuple[str, ...] = tuple(BANDS)) -> list[Candidate]:
    """Plate-coloured, plate-shaped regions of a BGR frame, most plate-like first.

    ``roi`` (x, y, width, height in frame pixels) limits the search to the lanes a
    roadside camera watches.
    """
    x0, y0 = (roi[0], roi[1]) if roi else (0, 0)
    view = image[y0: y0 + roi[3], x0: x0 + roi[2]] if roi else image
    scale = min(1.0, WORK_SIDE / max(view.shape[:2]))
    small = cv2.resize(view, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) \
        if scale < 1.0 else view
    hsv = cv2.cvtColor(cv2.GaussianBlur(small, (3, 3), 0), cv2.COLOR_BGR2HSV)
    area_cap = MAX_AREA_SHARE * small.shape[0] * small.shape[1]
    found: list[Candidate] = []
    for paint in paints:
        for box, fill, quad in _regions(paint_mask(hsv, paint), area_cap):
            full = box.scaled(1.0 / scale)
            outline = None if quad is None else quad / scale + np.array([x0, y0], np.float32)
            found.append(Candidate(Box(full.cx + x0, full.cy + y0, full.width, full.height,
                                       full.angle), paint, fill, outline))
    found.sort(key=_plate_likeness, reverse=True)
    return found[:MAX_CANDIDATES]


Region = tuple[Box, float, np.ndarray | None]


def _regions(mask: np.ndarray, area_cap: float) -> list[Region]:
    """Plate-shaped connected regions of a paint mask, at two closing widths (characters
    split a near plate's paint more widely than a far one's), with their four-cornered
    outlines where they have one.

    Regions of a plate's size but not its shape are tried once more, opened: paint-
    coloured reflections (a chrome grille mirroring the plate, a bumper's edge) can join
    a plate in thin strands that spoil its shape, and an opening cuts them off.
    """
    regions, misshapen = _shaped(mask, area_cap)
    if misshapen:
        spoilt = np.zeros_like(mask)
        for contour in misshapen:   # one at a time: drawn together, overlaps would cancel
            cv2.drawContours(spoilt, [contour], 0, 255, cv2.FILLED)
        opened = cv2.morphologyEx(mask & spoilt, cv2.MORPH_OPEN,
                                  cv2.getStructuringElement(cv2.MORPH_ELLIPSE, OPENING))
        regions += _shaped(opened, area_cap)[0]
    return _distinct(regions)


def _shaped(mask: np.ndarray, area_cap: float) -> tuple[list[Region], list[np.ndarray]]:
    """The plate-shaped regions of a mask, and the outlines of those only sized like one."""
    regions: list[Region] = []
    misshapen: list[np.ndarray] = []
    for width in (9, 17):
        closed = cv2.morphologyEx(mask, cv2.MORPH_CLOSE,
                                  cv2.getStructuringElement(cv2.MORPH_RECT, (width, 3)))
        contours, _ = cv2.findContours(closed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for contour in contours:
            area = cv2.contourArea(contour)
            if not MIN_AREA <= area <= area_cap:
                continue
            box = box_from_rect(cv2.minAreaRect(contour))
            fill = area / max(box.width * box.height, 1.0)
            if ASPECT_RANGE[0] <= box.aspect <= ASPECT_RANGE[1] and fill >= MIN_FILL:
                regions.append((box, fill, outline_quad(contour)))
            else:
                misshapen.append(contour)
    return regions, misshapen


def outline_quad(contour: np.ndarray) -> np.ndarray | None:
    """The four corners of a region's convex outline (top-left, top-right, bottom-right,
    bottom-left), or None when it has no clear four corners."""
    hull = cv2.convexHull(contour)
    perimeter = cv2.arcLength(hull, True)
    for share in (0.02, 0.04, 0.06, 0.08):
        poly = cv2.approxPolyDP(hull, share * perimeter, True)
        if len(poly) == 4:
            return _order_corners(poly.reshape(4, 2).astype(np.float32))
        if len(poly) < 4:
            return None
    return None


def _order_corners(points: np.ndarray) -> np.ndarray:
    """Four corners in reading order: the two long sides are top and bottom (the upper
    one first), each from left to right."""
    ring = points[_ring_order(points)]
    lengths = np.linalg.norm(ring - np.roll(ring, -1, axis=0), axis=1)
    start = 0 if lengths[0] + lengths[2] >= lengths[1] + lengths[3] else 1
    sides = [(ring[start], ring[start + 1]), (ring[(start + 2) % 4], ring[(start + 3) % 4])]
    top, bottom = sorted(sides, key=lambda side: side[0][1] + side[1][1])
    tl, tr = sorted(top, key=lambda p: p[0])
    bl, br = sorted(bottom, key=lambda p: p[0])
    return np.array([tl, tr, br, bl], np.float32)


def _ring_order(points: np.ndarray) -> np.ndarray:
    centre = points.mean(axis=0)
    return np.argsort(np.arctan2(points[:, 1] - centre[1], points[:, 0] - centre[0]))


def quad_aspect(quad: np.ndarray) -> float:
    """Mean length of the top and bottom sides over that of the left and right ones."""
    tl, tr, br, bl = quad
    along = (np.linalg.norm(tr - tl) + np.linalg.norm(br - bl)) / 2
    across = (np.linalg.norm(bl - tl) + np.linalg.norm(br - tr)) / 2
    return float(along / max(across, 1e-6))


def grow_quad(quad: np.ndarray, along: float, across: float) -> np.ndarray:
    """The outline with ``along`` and ``across`` added on each side, as shares of its
    mean length and height: a paint outline runs close to the characters."""
    tl, tr, br, bl = quad
    a = ((tr - tl) + (br - bl)) / 2 * along
    b = ((bl - tl) + (br - tr)) / 2 * across
    return np.array([tl - a - b, tr + a - b, br + a + b, bl - a + b], np.float32)


def straighten(image: np.ndarray, quad: np.ndarray, height: int = 64,
               aspect: float | None = None) -> np.ndarray:
    """The plate inside ``quad`` warped to an upright rectangle ``height`` pixels high,
    of the given aspect (the outline's own when None)."""
    width = max(1, round(height * (aspect or quad_aspect(quad))))
    target = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]],
                      np.float32)
    matrix = cv2.getPerspectiveTransform(quad.astype(np.float32), target)
    return cv2.warpPerspective(image, matrix, (width, height), flags=cv2.INTER_CUBIC,
                               borderMode=cv2.BORDER_REPLICATE)


def _distinct(regions: list[Region]) -> list[Region]:
    """Drop regions whose centre lies inside a larger one already kept."""
    kept: list[Region] = []
    for region in sorted(regions, key=lambda r: r[0].width * r[0].height, reverse=True):
        box = region[0]
        if not any(_contains(other[0], box.cx, box.cy) for other in kept):
            kept.append(region)
    return kept


def _contains(box: Box, x: float, y: float) -> bool:
    return cv2.pointPolygonTest(box.corners().reshape(-1, 1, 2), (x, y), False) >= 0


def _plate_likeness(candidate: Candidate) -> float:
    """Higher for solid regions near a plate's 3.1:1 (or a double row's 2:1)."""
    aspect = candidate.box.aspect
    shape = min(abs(np.log(aspect / 3.1)), abs(np.log(aspect / 2.0)) + 0.2)
    return candidate.fill - shape


def rectify(image: np.ndarray, box: Box, height: int = 64) -> np.ndarray:
    """The box cut out of a BGR frame upright, scaled to ``height`` pixels (upscaled when
    smaller: the recogniser reads 48-px lines)."""
    matrix, size = _upright(box, height)
    return cv2.warpAffine(image, matrix, size, flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REPLICATE)


def unrectify(inner: Box, box: Box, height: int = 64) -> Box:
    """A box found in ``rectify(image, box, height)``, in the frame's pixels again."""
    matrix, _ = _upright(box, height)
    back = cv2.invertAffineTransform(matrix)
    corners = inner.corners()
    points = corners @ back[:, :2].T + back[:, 2]
    return box_from_rect(cv2.minAreaRect(points.astype(np.float32)))


def _upright(box: Box, height: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The affine map from the frame to the upright crop of ``box``, and the crop size."""
    width = max(1, round(height * box.aspect))
    theta = np.deg2rad(box.angle)
    along = np.array([np.cos(theta), np.sin(theta)])
    across = np.array([-np.sin(theta), np.cos(theta)])
    centre = np.array([box.cx, box.cy])
    top_left = centre - along * box.width / 2 - across * box.height / 2
    top_right = centre + along * box.width / 2 - across * box.height / 2
    bottom_right = centre + along * box.width / 2 + across * box.height / 2
    src = np.array([top_left, top_right, bottom_right], np.float32)
    dst = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1]], np.float32)
    return cv2.getAffineTransform(src, dst), (width, height)


DET_THRESHOLD = 0.3
"""Text probability above which a detector pixel counts as text (PP-OCR's default)."""
DET_BOX_SCORE = 0.5
"""Mean text probability a detected region needs (PP-OCR's default)."""
DET_UNCLIP = 1.6
"""The detector marks a shrunk text core; regions grow back by area × this / perimeter."""


def text_boxes(prob: np.ndarray, sx: float, sy: float, min_side: float = 3.0) -> list[Box]:
    """Text regions of a DB probability map, as boxes in frame pixels (``sx``, ``sy``
    scale map pixels to the frame)."""
    mask = (prob > DET_THRESHOLD).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    boxes: list[Box] = []
    for contour in contours:
        box = box_from_rect(cv2.minAreaRect(contour))
        if box.height < min_side:
            continue
        x, y, w, h = cv2.boundingRect(contour)
        region = np.zeros((h, w), np.uint8)
        cv2.drawContours(region, [contour - (x, y)], -1, 1, thickness=-1)
        if cv2.mean(prob[y: y + h, x: x + w], region)[0] < DET_BOX_SCORE:
            continue
        grow = box.width * box.height * DET_UNCLIP / (2 * (box.width + box.height))
        # map to the frame: scale the corners, then fit a box again (sx and sy differ)
        corners = Box(box.cx, box.cy, box.width + 2 * grow, box.height + 2 * grow,
                      box.angle).corners() * np.array([sx, sy], np.float32)
        boxes.append(box_from_rect(cv2.minAreaRect(corners)))
    return boxes
