"""Synthetic plate crops for training: GA 36 plates, spoiled as roadside cameras spoil them.

The clean plate is drawn by :func:`sim.plates.draw_plate` (GA 36 layouts and colours, the
WenQuanYi Zen Hei font), so the simulated camera and the training data share one drawing.
Everything after that is here: the plate is stroked thicker or thinner and its paint
shifted (real plates fade and the plate typeface is not the font's), set on a background,
turned and put in perspective by a few degrees, cut out with the margins a detector's crop
has (sometimes into the province character, sometimes with a wide border), shrunk to the
40–160 px of plates in a frame, and then darkened, glared, rained on, tinted, blurred,
noised and JPEG-compressed. Pure numpy, OpenCV and Pillow; every draw comes from one
seeded generator, so a seed gives the same crops on any machine with the same libraries.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from sim.plates import PlateColour, draw_plate, random_plate_text

COLOUR_SHARES: dict[PlateColour, float] = {"blue": 0.6, "yellow": 0.25, "green": 0.12,
                                           "yellow_green": 0.03}
"""How often each kind of plate is drawn: trucks' yellow plates are common at a weigh
site, small new-energy green plates on the cars around them."""
PLATE_WIDTH_PX = (40, 160)
"""Width of the plate itself once shrunk, as plates stand in the frames of a site camera."""


@dataclass(frozen=True)
class Augment:
    """How often (probability) and how hard each spoiling is applied."""

    night: float = 0.3
    glare: float = 0.2
    rain: float = 0.15
    cast: float = 0.3
    shadow: float = 0.25
    motion: float = 0.2
    stroke: float = 0.7
    wide_margin: float = 0.15
    max_angle_deg: float = 4.0
    jpeg_quality: tuple[int, int] = (20, 90)
    blur: float = 0.5
    noise: float = 10.0
    plate_width: tuple[int, int] = PLATE_WIDTH_PX


EASY = Augment(night=0.0, glare=0.0, rain=0.0, cast=0.0, shadow=0.0, motion=0.0, stroke=0.3,
               wide_margin=0.0, max_angle_deg=2.0, jpeg_quality=(75, 90), blur=0.2,
               noise=3.0, plate_width=(100, 160))
"""Mild spoiling, for the start of a training: a network that sees only ruined plates
at first takes far longer to find the province at all."""


def plate_text(rng: np.random.Generator, colour: PlateColour, provinces: str) -> str:
    """A plate number of ``colour`` whose province is drawn uniformly from ``provinces``
    (every class equally often, whatever real traffic's shares are)."""
    text = random_plate_text(rng, colour)
    return provinces[int(rng.integers(len(provinces)))] + text[1:]


def render_crop(rng: np.random.Generator, provinces: str, augment: Augment | None = None
                ) -> tuple[np.ndarray, int]:
    """One spoiled single-row plate crop (BGR uint8, any size) and its province's index."""
    augment = augment or Augment()
    kinds = list(COLOUR_SHARES)
    colour = kinds[int(rng.choice(len(kinds), p=list(COLOUR_SHARES.values())))]
    label = int(rng.integers(len(provinces)))
    text = provinces[label] + plate_text(rng, colour, provinces)[1:]
    plate = draw_plate(text, colour, px_per_mm=float(rng.uniform(0.4, 0.6)))
    plate = _restyle(rng, plate, colour, augment)
    crop = _cut_out(rng, plate, augment)
    crop = _light(rng, crop, augment)
    return _degrade(rng, crop, augment), label


def render_batch(seed: int, count: int, provinces: str, augment: Augment | None = None
                 ) -> tuple[list[np.ndarray], np.ndarray]:
    """``count`` crops and their labels from ``seed`` alone (for tests and evaluation)."""
    rng = np.random.default_rng(seed)
    pairs = [render_crop(rng, provinces, augment) for _ in range(count)]
    return [p[0] for p in pairs], np.array([p[1] for p in pairs], np.int64)


def _restyle(rng: np.random.Generator, plate: np.ndarray, colour: PlateColour,
             augment: Augment) -> np.ndarray:
    """Strokes thicker or thinner, paint of another shade: the font is not the plate
    typeface, and paint fades or darkens with age and dirt."""
    if rng.uniform() < augment.stroke:
        kernel = np.ones((2, 2), np.uint8) if rng.uniform() < 0.5 else np.ones((3, 3), np.uint8)
        thicker = rng.uniform() < 0.8
        light_ink = colour == "blue"
        grow = cv2.dilate if thicker == light_ink else cv2.erode
        plate = grow(plate, kernel)
    hsv = cv2.cvtColor(plate, cv2.COLOR_BGR2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-6, 6)) % 180
    hsv[..., 1] *= rng.uniform(0.55, 1.15)
    hsv[..., 2] *= rng.uniform(0.6, 1.1)
    plate = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2BGR)
    if rng.uniform() < 0.3:  # dirt: a blotchy low-frequency multiplier
        plate = _multiply(plate, _blotches(rng, plate.shape[:2], 0.75, 1.05))
    return plate


def _blotches(rng: np.random.Generator, shape: tuple[int, int], low: float, high: float
              ) -> np.ndarray:
    """A smooth random field in [low, high] over ``shape``."""
    coarse = rng.uniform(low, high, (3, 6)).astype(np.float32)
    return cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def _multiply(image: np.ndarray, field: np.ndarray) -> np.ndarray:
    return np.clip(image.astype(np.float32) * field[..., None], 0, 255).astype(np.uint8)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A car body around the plate: one paint, a smooth shading, grille-like bars, grain.
    Drawn at a quarter of the size and scaled up (a background needs no detail)."""
    h, w = height // 4 + 1, width // 4 + 1
    canvas = np.empty((h, w, 3), np.float32)
    canvas[:] = rng.uniform(0, 255, 3)
    canvas *= _blotches(rng, (h, w), 0.5, 1.2)[..., None]
    for _ in range(int(rng.integers(0, 4))):
        y = int(rng.integers(0, h))
        canvas[y:y + int(rng.integers(1, 3))] = rng.uniform(0, 255, 3)
    canvas += rng.standard_normal((h, w, 3), dtype=np.float32) * 8
    small = np.clip(canvas, 0, 255).astype(np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def _cut_out(rng: np.random.Generator, plate: np.ndarray, augment: Augment) -> np.ndarray:
    """The plate on a background, turned and in perspective, cut out as a detector would:
    an upright box around it with margins that vary, now and then into the plate."""
    ph, pw = plate.shape[:2]
    mx, my = pw // 3, ph
    canvas = _background(rng, ph + 2 * my, pw + 2 * mx)
    canvas[my:my + ph, mx:mx + pw] = plate
    corners = np.array([[mx, my], [mx + pw, my], [mx + pw, my + ph], [mx, my + ph]],
                       np.float32)
    centre = corners.mean(axis=0)
    angle = np.deg2rad(rng.uniform(-augment.max_angle_deg, augment.max_angle_deg))
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = (corners - centre) @ turn.T + centre
    moved += rng.uniform(-0.04, 0.04, (4, 2)) * np.array([pw, ph]) * 0.6
    shear = rng.uniform(-0.12, 0.12) * ph  # a plate seen from the side leans
    moved[:2, 0] += shear / 2
    moved[2:, 0] -= shear / 2
    matrix = cv2.getPerspectiveTransform(corners, moved.astype(np.float32))
    warped = cv2.warpPerspective(canvas, matrix, (canvas.shape[1], canvas.shape[0]),
                                 flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    x0, y0 = moved.min(axis=0)
    x1, y1 = moved.max(axis=0)
    w, h = x1 - x0, y1 - y0
    wide = rng.uniform() < augment.wide_margin
    side = (0.0, 0.3) if wide else (-0.03, 0.1)
    across = (0.0, 0.8) if wide else (-0.1, 0.3)
    left, right = (rng.uniform(*side) * w for _ in range(2))
    top, bottom = (rng.uniform(*across) * h for _ in range(2))
    box = np.array([x0 - left, y0 - top, x1 + right, y1 + bottom])
    box = np.clip(np.round(box), 0, [warped.shape[1], warped.shape[0]] * 2).astype(int)
    crop = warped[box[1]:box[3], box[0]:box[2]]
    scale = rng.uniform(*augment.plate_width) / w
    size = (max(8, round(crop.shape[1] * scale)), max(4, round(crop.shape[0] * scale)))
    return cv2.resize(crop, size, interpolation=cv2.INTER_AREA)


def _light(rng: np.random.Generator, crop: np.ndarray, augment: Augment) -> np.ndarray:
    """Night, shadow, sodium or other colour casts, headlight glare, rain streaks."""
    image = crop.astype(np.float32)
    h, w = image.shape[:2]
    if rng.uniform() < augment.cast:
        sodium = rng.uniform() < 0.5
        gains = np.array([0.45, 0.8, 1.05]) if sodium else rng.uniform(0.75, 1.2, 3)
        image *= gains * rng.uniform(0.9, 1.1, 3)
    if rng.uniform() < augment.shadow:
        ramp = np.linspace(rng.uniform(0.35, 1.0), rng.uniform(0.35, 1.0), w, dtype=np.float32)
        image *= ramp[None, :, None]
    if rng.uniform() < augment.night:
        mean = image.mean()
        contrast = rng.uniform(0.35, 0.8)
        image = (image - mean) * contrast + mean
        image *= rng.uniform(0.25, 0.6)
    if rng.uniform() < augment.glare:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        for _ in range(int(rng.integers(1, 3))):
            cx, cy = rng.uniform(-0.2, 1.2) * w, rng.uniform(-0.3, 1.3) * h
            sigma = rng.uniform(0.08, 0.4) * w
            blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma ** 2))
            image += blob[..., None] * rng.uniform(80, 220) * rng.uniform(0.85, 1.0, 3)
    if rng.uniform() < augment.rain:
        image = _rain(rng, image)
    return np.clip(image, 0, 255).astype(np.uint8)


def _rain(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Light streaks, near vertical, blended over the image."""
    h, w = image.shape[:2]
    layer = np.zeros((h, w), np.float32)
    lean = rng.uniform(-0.35, 0.35)
    for _ in range(int(rng.integers(5, 5 + w // 3))):
        x, y = rng.uniform(0, w), rng.uniform(-0.3 * h, h)
        length = rng.uniform(0.2, 0.7) * h
        end = (round(x + lean * length), round(y + length))
        cv2.line(layer, (round(x), round(y)), end, float(rng.uniform(0.3, 1.0)), 1)
    layer = cv2.GaussianBlur(layer, (3, 3), 0) * rng.uniform(60, 140)
    return image + layer[..., None]


def _degrade(rng: np.random.Generator, crop: np.ndarray, augment: Augment) -> np.ndarray:
    """Focus, motion, sensor noise, JPEG."""
    if rng.uniform() < augment.blur:
        sigma = rng.uniform(0.3, 0.6 + crop.shape[1] / 200)
        crop = cv2.GaussianBlur(crop, (0, 0), sigma)
    if rng.uniform() < augment.motion:
        length = int(rng.integers(2, 5))
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2] = 1.0 / length
        if rng.uniform() < 0.3:
            kernel = kernel.T
        crop = cv2.filter2D(crop, -1, kernel)
    noise = rng.normal(0, rng.uniform(0, augment.noise), crop.shape)
    crop = np.clip(crop.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    quality = int(rng.integers(augment.jpeg_quality[0], augment.jpeg_quality[1] + 1))
    ok, data = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(data, cv2.IMREAD_COLOR) if ok else crop


def contact_sheet(crops: Sequence[np.ndarray], columns: int = 6, size: tuple[int, int] = (160,
                                                                                           48)
                  ) -> np.ndarray:
    """Crops resized side by side in a grid, to look at what the training sees."""
    tiles = [cv2.resize(c, size) for c in crops]
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[i:i + columns]) for i in range(0, len(tiles), columns)]
    return np.vstack(rows)
