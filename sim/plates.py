"""Chinese number plates for the simulated camera: their text and their image.

Text follows the plate grammar of GA 36-2018 in its simple form: a province
abbreviation, the issuing authority's letter (no I or O), then the serial — five digits
or letters (no I, O) on ordinary plates, six on new-energy plates, where a D/F-family
letter marks the energy type (first on small new-energy plates, last on large ones).

Images follow the standard's layout in millimetres, scaled by ``px_per_mm``:

======================  ===========  ================================================
kind                    size (mm)    look
======================  ===========  ================================================
``blue``                440 × 140    blue, white characters and frame (small cars)
``yellow``              440 × 140    yellow, black characters (large vehicles, front)
``yellow``, double row  440 × 220    province + letter above, serial below (truck rear)
``green``               480 × 140    green gradient, black characters (small new-energy)
``yellow_green``        480 × 140    yellow left, green right, black (large new-energy)
======================  ===========  ================================================

The characters are drawn with WenQuanYi Zen Hei (Debian package ``fonts-wqy-zenhei``),
each glyph fitted into the cell the standard gives it, since the plate typeface itself is
not free. Drawing needs no network: the font is looked up on the local disk only.
"""

import re
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from drivers.errors import DeviceError

PlateColour = Literal["blue", "yellow", "green", "yellow_green"]
PLATE_COLOURS: tuple[PlateColour, ...] = ("blue", "yellow", "green", "yellow_green")

PROVINCES = "京津沪渝冀晋蒙辽吉黑苏浙皖闽赣鲁豫鄂湘粤桂琼川贵云藏陕甘青宁新"
"""The 31 province-level abbreviations that open a plate."""
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
"""Letters a plate may use: the Latin alphabet without I and O (mistaken for 1 and 0)."""
DIGITS = "0123456789"
NEV_ENERGY = "DABCEFGHJK"
"""Energy-type letters of small new-energy serials (D, A-C, E: pure electric; F-K: not)."""
NEV_ENERGY_LARGE = "DF"
"""Energy-type letters of large new-energy serials (D pure electric, F not)."""

PLATE_PATTERNS: dict[PlateColour, re.Pattern[str]] = {
    "blue": re.compile(f"[{PROVINCES}][{LETTERS}O][{DIGITS}{LETTERS}]{{5}}"),
    "yellow": re.compile(f"[{PROVINCES}][{LETTERS}O][{DIGITS}{LETTERS}]{{5}}"),
    "green": re.compile(
        f"[{PROVINCES}][{LETTERS}][{NEV_ENERGY}][{DIGITS}{LETTERS}][{DIGITS}]{{4}}"),
    "yellow_green": re.compile(f"[{PROVINCES}][{LETTERS}][{DIGITS}]{{5}}[{NEV_ENERGY_LARGE}]"),
}
"""The simple GA 36 grammar of each kind of plate (an ordinary plate's authority may be
the O of a province-level public-security organ: config/rules/plates.yaml)."""

FONT_NAME = "WenQuanYi Zen Hei"
FONT_PACKAGE = "fonts-wqy-zenhei"
FONT_PATHS = (
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/wqy-zenhei/wqy-zenhei.ttc",
    "/usr/share/fonts/wenquanyi/wqy-zenhei/wqy-zenhei.ttc",
)
"""Where Debian (and a few other distributions) put the font."""

RGB = tuple[int, int, int]
BLUE: RGB = (0, 72, 200)
YELLOW: RGB = (250, 195, 0)
GREEN: RGB = (40, 185, 85)
GREEN_LIGHT: RGB = (225, 248, 230)
WHITE: RGB = (245, 245, 245)
BLACK: RGB = (20, 20, 20)


@dataclass(frozen=True)
class Row:
    """Character cells of one row of a plate, in mm: left edges, top, width, height."""

    x_mm: tuple[float, ...]
    top_mm: float
    width_mm: float
    height_mm: float


def _cells(first_mm: float, width_mm: float, gaps_mm: tuple[float, ...]) -> tuple[float, ...]:
    """Left edges of cells of ``width_mm`` separated by ``gaps_mm``."""
    edges = [first_mm]
    for gap in gaps_mm:
        edges.append(edges[-1] + width_mm + gap)
    return tuple(edges)


SINGLE_ROW = (440.0, 140.0, (Row(_cells(15.5, 45, (12, 34, 12, 12, 12, 12)), 25, 45, 90),))
NEV_ROW = (480.0, 140.0, (Row(_cells(16.5, 43, (9, 49, 9, 9, 9, 9, 9)), 25, 43, 90),))
DOUBLE_ROW = (440.0, 220.0, (Row((110.0, 250.0), 15, 80, 60),
                             Row(_cells(27.5, 65, (15, 15, 15, 15)), 95, 65, 110)))
"""GA 36-2018 layouts: plate width, height (mm) and the character rows."""


def random_plate_text(rng: np.random.Generator, colour: PlateColour = "blue",
                      letter_share: float = 0.2) -> str:
    """A plate number of the given kind, drawn from ``rng`` (seed it for repeatable plates).

    Each serial position that may hold a letter holds one with ``letter_share``.

    Examples
    --------
    >>> text = random_plate_text(np.random.default_rng(1), "yellow")
    >>> is_valid_plate(text, "yellow"), len(text)
    (True, 7)
    >>> len(random_plate_text(np.random.default_rng(1), "green"))
    8
    """
    head = str(rng.choice(list(PROVINCES))) + str(rng.choice(list(LETTERS)))

    def pick(chars: str) -> str:
        return str(rng.choice(list(chars)))

    def mixed() -> str:
        return pick(LETTERS) if rng.uniform() < letter_share else pick(DIGITS)

    if colour in ("blue", "yellow"):
        return head + "".join(mixed() for _ in range(5))
    if colour == "green":
        return head + pick(NEV_ENERGY) + mixed() + "".join(pick(DIGITS) for _ in range(4))
    if colour == "yellow_green":
        return head + "".join(pick(DIGITS) for _ in range(5)) + pick(NEV_ENERGY_LARGE)
    raise ValueError(f"plate colour must be one of {', '.join(PLATE_COLOURS)} (got {colour!r})")


def is_valid_plate(text: str, colour: PlateColour) -> bool:
    """Whether ``text`` follows the simple GA 36 grammar of plates of ``colour``.

    Examples
    --------
    >>> is_valid_plate("苏E2Y256", "blue"), is_valid_plate("苏E2Y2O6", "blue")
    (True, False)
    """
    return PLATE_PATTERNS[colour].fullmatch(text) is not None


def find_font() -> Path:
    """The WenQuanYi Zen Hei file: known Debian paths first, then ``fc-match``.

    ``fc-match`` always answers with some font; its answer counts only when it is the
    WenQuanYi family, since a fallback such as DejaVu has no Chinese glyphs.
    """
    for path in FONT_PATHS:
        if Path(path).is_file():
            return Path(path)
    try:
        found = subprocess.run(["fc-match", "-f", "%{family}|%{file}", FONT_NAME],
                               capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        found = None
    if found is not None and found.returncode == 0 and "|" in found.stdout:
        family, file = found.stdout.split("|", 1)
        if FONT_NAME in family and Path(file).is_file():
            return Path(file)
    raise DeviceError(f"The font {FONT_NAME} is missing (looked in {', '.join(FONT_PATHS)} "
                      f"and asked fc-match): install the Debian package {FONT_PACKAGE} "
                      f"(apt-get install {FONT_PACKAGE}, or `make system`)")


@lru_cache(maxsize=4)
def _font(size_px: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(find_font()), size_px, index=0)


@lru_cache(maxsize=512)
def _glyph(char: str) -> np.ndarray:
    """Ink coverage (0..1) of one character, cropped to its ink, at 128 px high."""
    font = _font(128)
    canvas = Image.new("L", (192, 192), 0)
    ImageDraw.Draw(canvas).text((16, 16), char, fill=255, font=font)
    box = canvas.getbbox()
    if box is None:
        raise ValueError(f"the font {FONT_NAME} draws nothing for {char!r}")
    return np.asarray(canvas.crop(box), dtype=np.float32) / 255.0


def _fit_glyph(char: str, width_px: int, height_px: int) -> np.ndarray:
    """The glyph scaled to the cell's height, narrowed to its width when wider (CJK)."""
    ink = _glyph(char)
    h, w = ink.shape
    scaled_w = max(1, min(width_px, round(w * height_px / h)))
    image = Image.fromarray((ink * 255).astype(np.uint8)).resize((scaled_w, height_px),
                                                                  Image.Resampling.LANCZOS)
    cell = np.zeros((height_px, width_px), np.float32)
    left = (width_px - scaled_w) // 2
    cell[:, left:left + scaled_w] = np.asarray(image, np.float32) / 255.0
    return cell


def _background(colour: PlateColour, width_px: int, height_px: int, split_px: int
                ) -> np.ndarray:
    """Plate colour, RGB float, shape ``(height_px, width_px, 3)``."""
    bg = np.empty((height_px, width_px, 3), np.float32)
    if colour == "green":  # gradient: pale at the top, full green at the bottom
        ramp = np.linspace(0.0, 1.0, height_px, dtype=np.float32)[:, None, None]
        bg[:] = (1 - ramp) * np.array(GREEN_LIGHT) + ramp * np.array(GREEN)
    else:
        bg[:] = {"blue": BLUE, "yellow": YELLOW, "yellow_green": GREEN}[colour]
        if colour == "yellow_green":
            bg[:, :split_px] = YELLOW
    return bg


def draw_plate(text: str, colour: PlateColour = "blue", *, double_row: bool = False,
               px_per_mm: float = 0.5) -> np.ndarray:
    """The image of a plate, BGR uint8 (OpenCV's order), ``px_per_mm`` pixels per mm.

    ``double_row`` draws the rear plate of a large vehicle (yellow only): province and
    letter above, the five serial characters below.

    Examples
    --------
    >>> draw_plate("苏E2Y256", "blue").shape
    (70, 220, 3)
    >>> draw_plate("苏E2Y256", "yellow", double_row=True).shape
    (110, 220, 3)
    """
    width_mm, height_mm, rows = _layout(text, colour, double_row)
    width_px, height_px = round(width_mm * px_per_mm), round(height_mm * px_per_mm)
    first = rows[0]
    split_px = round((first.x_mm[1] + first.width_mm + first.x_mm[2]) / 2 * px_per_mm) \
        if len(first.x_mm) > 2 else 0
    image = _background(colour, width_px, height_px, split_px)
    ink = np.array(WHITE if colour == "blue" else BLACK, np.float32)
    chars = iter(text)
    for row in rows:
        for x_mm in row.x_mm:
            _stamp(image, _fit_glyph(next(chars), round(row.width_mm * px_per_mm),
                                     round(row.height_mm * px_per_mm)),
                   (round(x_mm * px_per_mm), round(row.top_mm * px_per_mm)), ink)
    _decorate(image, colour, px_per_mm, first, single_row=len(rows) == 1)
    return np.ascontiguousarray(np.clip(image, 0, 255).astype(np.uint8)[:, :, ::-1])


def _layout(text: str, colour: PlateColour, double_row: bool
            ) -> tuple[float, float, tuple[Row, ...]]:
    """Check the text against the grammar and pick the layout."""
    if colour not in PLATE_PATTERNS:
        raise ValueError(f"plate colour must be one of {', '.join(PLATE_COLOURS)} "
                         f"(got {colour!r})")
    if not is_valid_plate(text, colour):
        raise ValueError(f"{text!r} is not a {colour} plate of GA 36 "
                         f"(pattern {PLATE_PATTERNS[colour].pattern})")
    if double_row and colour != "yellow":
        raise ValueError(f"double-row plates are yellow (rear of large vehicles) "
                         f"(got {colour!r})")
    if double_row:
        return DOUBLE_ROW
    return NEV_ROW if colour in ("green", "yellow_green") else SINGLE_ROW


def _stamp(image: np.ndarray, coverage: np.ndarray, at_px: tuple[int, int],
           ink: np.ndarray) -> None:
    """Blend ink into ``image`` with ``coverage`` as alpha, top-left corner at ``at_px``."""
    x, y = at_px
    h, w = coverage.shape
    region = image[y:y + h, x:x + w]
    alpha = coverage[:region.shape[0], :region.shape[1], None]
    region[:] = (1 - alpha) * region + alpha * ink


def _decorate(image: np.ndarray, colour: PlateColour, px_per_mm: float, first: Row,
              *, single_row: bool) -> None:
    """Frame line, the two rivets, and the dot between letter and serial (not on NEV)."""
    height_px, width_px = image.shape[:2]
    pil = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    line = WHITE if colour == "blue" else BLACK
    inset = max(1, round(4 * px_per_mm))
    draw.rounded_rectangle((inset, inset, width_px - 1 - inset, height_px - 1 - inset),
                           radius=max(1, round(8 * px_per_mm)), outline=line,
                           width=max(1, round(2 * px_per_mm)))
    r = max(1, round(4 * px_per_mm))
    for share in (0.15, 0.85):
        cx, cy = round(share * width_px), round(12 * px_per_mm)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(200, 200, 200))
    if single_row and colour in ("blue", "yellow"):
        cx = (first.x_mm[1] + first.width_mm + first.x_mm[2]) / 2 * px_per_mm
        cy = (first.top_mm + first.height_mm / 2) * px_per_mm
        d = 5 * px_per_mm
        draw.ellipse((cx - d, cy - d, cx + d, cy + d), fill=line)
    image[:] = np.asarray(pil, np.float32)
