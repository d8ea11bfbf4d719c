"""Read the plates of a frame, of a vehicle's frames, and of its front and rear.

For one frame (:meth:`PlateReader.read`):

1. an image that is itself a small plate-shaped crop is read whole first;
2. plate-paint regions (:func:`~plates.locate.find_candidates`), each cut out upright
   and searched by the text detector: one line is a single-row plate, a short line over
   a long one a double-row plate (province and authority above, serial below);
3. the text detector's lines over the rest of the region of interest (bleached, white
   and black plates have no paint to find), a short line over a longer one again a
   double-row plate;
4. every candidate recognised, its colour measured from its pixels, its scores decoded
   under the GA 36 templates that colour allows (:func:`~plates.decode.decode`),
   the two rows of a double-row plate joined into one reading;
5. readings below the confidence floor dropped, overlapping readings of one plate merged.

For a vehicle (:meth:`PlateReader.read_vehicle`) every frame is read and the readings vote
(:func:`vote`); front and rear are compared by :func:`compare_front_rear`.
"""

import dataclasses
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from overload.plates import PlateColour, PlateGrammar, PlateTemplate, load_plate_grammar
from plates.colour import BANDS, is_greyscale, nearest_paint, plate_colour, shares
from plates.decode import Decoded, Pattern, decode, greedy
from plates.engines import Engine, detection_input, recognition_batch
from plates.locate import (
    Box,
    box_from_rect,
    find_candidates,
    grow_quad,
    rectify,
    straighten,
    text_boxes,
    unrectify,
)
from plates.province import ProvinceClassifier
from zhichao.errors import ZhichaoError

DOUBLE_ROW_ASPECT = 2.5
"""A plate crop narrower than this (long/short) is a double-row plate (440 × 220 mm)."""
MIN_SYMBOLS = 5
"""A crop the recogniser reads fewer symbols in (unconstrained) is not decoded as a plate:
a plate has 7 or 8 characters, and forcing 7 onto a blur or a logo only wastes time."""
MIN_LINE_HEIGHT = 9.0
"""Detected lines lower than this (frame px) are too small to read."""
LINE_ASPECT = (2.2, 7.0)
"""Aspect of a detected line that may be a single-row plate."""
PLATE_ASPECT, DOUBLE_PLATE_ASPECT = 440 / 140, 440 / 220
"""Width over height of a single-row and a double-row plate (GA 36: 440 × 140 mm and
440 × 220 mm)."""
QUAD_MARGIN = (0.1, 0.15)
"""Margins added to a paint outline before it is straightened (along, across; shares of
its length and height): the paint runs close to the outer characters."""
REGION_DETECT_SIDE = 320
"""A paint region goes to the detector at least this wide: at 256 px the characters of a
plate seen at an angle are too small for it to find."""
PROVINCE_RECHECK = 0.5
"""A single-row reading whose province character is less likely than this, or that is not
confident enough to report, is read again from other renderings of its crop and the
readings vote."""
STANDING = 45.0
"""A box whose long side is turned more than this (degrees) from level stands on end."""
BAND_GAP = 0.5
"""Two lines on one row are one plate's (split at the dot) only if the gap between them is
below this share of their height: GA 36 leaves about a third of a character's height
there; plates side by side stand further apart."""
UPPER_ROW = (0.0, 0.42)
LOWER_ROW = (0.33, 1.0)
"""Shares of a double-row plate's height holding the upper and the lower row."""


class PlateImageError(ZhichaoError):
    """An image file cannot be read."""


@dataclass(frozen=True)
class ReaderOptions:
    """How hard to look, and how sure to be.

    Attributes
    ----------
    detector_side : int
        Longer side, px, of the frame as the text detector sees it; 0 turns the detector
        off (plate-paint candidates only).
    min_confidence : float
        Readings whose serial (every character after the province) is less likely than
        this (product of the character probabilities) are not reported.
    min_province_confidence : float
        Nor those whose province character is less likely than this. It is set low on
        purpose: the generic recogniser is unsure of many province characters it reads
        right (the grammar leaves only 31 to choose from); the reading carries the figure.
    roi : tuple[int, int, int, int] | None
        x, y, width, height of the part of the frame that shows the lanes.
    crop_height : int
        Height, px, a candidate is rectified to before recognition.
    max_painted, max_reads : int
        At most this many plate-paint regions are examined, and this many crops
        recognised, per frame (recognition is the costly step).
    rec_width : int | None
        Width, px, every crop is padded to for the recogniser (None: the widest crop's).
        PP-OCR reads short lines better with padding than at their natural width (about
        190 px at 48 px high); 240 px reads the shared crops as well as the 320 px it
        was trained with, in three quarters of the time.
    recheck_width : int | None
        Width the renderings of a doubtful reading are padded to when it is read again
        (see ``PlateReader._recheck``).
    second_look : bool
        A frame in which nothing was read is looked at once more, in more light
        (:func:`lit`: dark parts brightened, headlights masked: dusk, night and glare)
        and larger (``min_detector_side``).
    min_detector_side : int
        At the second look, a frame smaller than this (longer side, px) is scaled up to
        it for the text detector: its plates are small, and the detector finds no
        characters much under 10 px high. (At the first look it would cost every small
        frame half as much time again.)
    province_weight : float
        Weight of the province classifier (:mod:`plates.province`) against the
        recogniser on a single-row plate's first character: the province is the one
        most likely under p_recogniser × p_classifier^weight. 0 leaves the classifier
        out (not even loaded).
    """

    detector_side: int = 1120
    min_confidence: float = 0.3
    min_province_confidence: float = 0.005
    roi: tuple[int, int, int, int] | None = None
    crop_height: int = 64
    max_painted: int = 6
    max_reads: int = 10
    rec_width: int | None = 240
    recheck_width: int | None = 320
    second_look: bool = True
    min_detector_side: int = 960
    province_weight: float = 0.0


@dataclass(frozen=True)
class PlateReading:
    """One plate read in one frame.

    ``confidence`` is the product of the per-character probabilities;
    ``province_confidence`` that of the first character alone (the one a generic
    recogniser most often gets wrong). ``colour`` is "unknown" when the frame has no
    colour (an infrared night camera). ``box`` is in frame pixels; ``crop`` the upright
    plate image (BGR) for the evidence.
    """

    text: str
    colour: PlateColour | Literal["unknown"]
    confidence: float
    province_confidence: float
    template: str
    box: Box
    crop: np.ndarray = field(repr=False, compare=False)
    char_confidence: tuple[float, ...] = ()

    def to_json(self) -> dict:
        """The reading as the command line prints it."""
        return {"text": self.text, "colour": self.colour,
                "confidence": round(self.confidence, 4),
                "province_confidence": round(self.province_confidence, 4),
                "template": self.template, "box": self.box.as_list()}


@dataclass(frozen=True)
class VehicleReading:
    """The plate of one vehicle from all its frames, or why there is none.

    ``status`` is "read" or "unreadable"; ``votes`` says how many frames gave the winning
    text, ``frames`` how many were read.
    """

    status: Literal["read", "unreadable"]
    reading: PlateReading | None
    votes: int
    frames: int
    others: tuple[str, ...] = ()

    @property
    def text(self) -> str | None:
        return self.reading.text if self.reading else None


@dataclass(frozen=True)
class _Crop:
    """A candidate ready for recognition: one crop, or an upper and a lower row."""

    box: Box
    image: np.ndarray
    rows: tuple[np.ndarray, ...]


MAX_PIXELS = 12_000_000
"""``load_image`` decodes no image with more pixels than this (width × height from its
header): a 4000 × 3000 camera frame. A 40 000 × 30 000 header would otherwise make the
decoder allocate 3.6 GB."""


def load_image(path: Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A BGR image from a file (any path, Chinese names included); PlateImageError if the
    file is missing, not an image, or its header gives it more than ``max_pixels`` pixels.

    The size is read from the header alone (Pillow opens lazily and reads no pixels), so
    an oversized image is refused before anything is decoded; only then is the file read
    and decoded by OpenCV. A format Pillow cannot identify is refused as not an image:
    its size could not be bounded first.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as header:
                width, height = header.size
    except Image.DecompressionBombError as exc:
        raise PlateImageError(f"{path}: more than the {max_pixels} pixels read (refused "
                              f"from its header: {exc})") from None
    except FileNotFoundError as exc:
        raise PlateImageError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise PlateImageError(f"{path}: not an image whose size can be read from its "
                              f"header ({exc})") from None
    if width * height > max_pixels:
        raise PlateImageError(f"{path}: {width} × {height} px is more than the "
                              f"{max_pixels} pixels read (refused from its header)")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise PlateImageError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except cv2.error as exc:
        raise PlateImageError(f"{path}: not an image OpenCV can decode ({exc.err})") from None
    if image is None:
        raise PlateImageError(f"{path}: not an image OpenCV can decode "
                              f"({data.size} bytes)")
    return image


@dataclass
class SecondLooks:
    """How often frames with nothing read were looked at again in more light, how often
    that found a plate, and the time it took (for the unit's figures)."""

    tried: int = 0
    found: int = 0
    seconds: float = 0.0

    def add(self, found: bool, seconds: float) -> None:
        self.tried += 1
        self.found += found
        self.seconds += seconds


class PlateReader:
    """Plate readings from frames, with one engine and the grammar in force."""

    def __init__(self, engine: Engine, grammar: PlateGrammar | None = None,
                 options: ReaderOptions | None = None):
        self.engine = engine
        self.grammar = grammar or load_plate_grammar()
        self.options = options or ReaderOptions()
        self.second_looks = SecondLooks()
        self.province = ProvinceClassifier() if self.options.province_weight > 0 else None
        missing = {ch for ch in self.grammar.characters if ch not in engine.charset.index}
        if missing:
            raise ZhichaoError(f"the {engine.name} recogniser cannot output "
                               f"{''.join(sorted(missing))!r}, which plates.yaml allows")

    # -- one frame ------------------------------------------------------------------------

    def read(self, image: np.ndarray) -> list[PlateReading]:
        """Every plate read in a BGR frame, the most confident first.

        An image that is itself plate-shaped and small (a crop) is first read whole; if
        that gives a confident reading, it is the one plate there.
        """
        if _is_crop(image):
            h, w = image.shape[:2]
            box = Box(w / 2, h / 2, w, h, 0.0)
            rows = _split_rows(image) if box.aspect < DOUBLE_ROW_ASPECT else (image,)
            whole = self._recognise([_Crop(box, image, rows)])
            if whole:
                return whole
        found = self._look(image)
        if not found and self.options.second_look:
            start = time.perf_counter()
            found = self._look(lit(image), self.options.min_detector_side)
            self.second_looks.add(bool(found), time.perf_counter() - start)
        return found

    def _look(self, image: np.ndarray, min_side: int = 0) -> list[PlateReading]:
        """The plates of a frame: its plate-paint regions, then the detector's other
        lines (the frame scaled up to ``min_side`` for the detector if smaller)."""
        painted = self._recognise(self._painted_crops(image))
        lines = [b for b in self._text_lines(image, min_side) if b.height >= MIN_LINE_HEIGHT
                 and not any(_inside(b, r.box) for r in painted)]
        budget = max(0, self.options.max_reads - len(painted))
        return _merge(painted + self._recognise(self._line_crops(image, lines)[:budget]))

    def _recognise(self, crops: Sequence[_Crop]) -> list[PlateReading]:
        """Recognise candidate crops in one batch; the confident readings, merged.

        A single-row crop whose box stands on end (a plate in a frame turned a quarter)
        was cut out upright one way or the other: it is read both ways up, and the merge
        keeps the more confident reading.
        """
        standing = [c for c in crops if len(c.rows) == 1 and abs(c.box.angle) > STANDING]
        flipped = [cv2.rotate(c.image, cv2.ROTATE_180) for c in standing]
        crops = [*crops, *(_Crop(c.box, f, (f,)) for c, f in zip(standing, flipped,
                                                                 strict=True))]
        if not crops:
            return []
        images = [row for crop in crops for row in crop.rows]
        probs = self.engine.recognise(recognition_batch(images, width=self.options.rec_width))
        readings: list[PlateReading] = []
        k = 0
        for crop in crops:
            rows = probs[k: k + len(crop.rows)]
            k += len(crop.rows)
            reading = self._reading(crop, rows)
            if reading is not None and len(crop.rows) == 1 and (
                    reading.province_confidence < PROVINCE_RECHECK
                    or not self._confident(reading)):
                reading = self._recheck(reading)
            if reading is not None and self._confident(reading):
                readings.append(reading)
        return _merge(readings)

    def _recheck(self, reading: PlateReading) -> PlateReading:
        """A doubtful reading (its province, or the whole) read again from other
        renderings of the crop — as it is, grey, stretched, locally equalised, all padded
        to ``recheck_width`` — the readings voting position by position (:func:`vote`).

        The generic recogniser's scores for a hard character swing with the paint's
        colour, the contrast and even the padding (a yellow plate under sodium light
        reads 鄂 for 川; an H at 0.3 one way reads at 0.7 another); what several renderings
        agree on is the better guess, and the vote's confidence says how sure.
        """
        variants = [reading.crop, *_light_variants(reading.crop)]
        probs = self.engine.recognise(recognition_batch(
            variants, width=self.options.recheck_width))
        template = next(t for t in self.grammar.templates if t.id == reading.template)
        opinion = self._province_opinion(reading.crop)
        again = [reading]
        for p in probs:
            found = self._decode(p[None], [template], False, opinion)
            if found is not None:
                again.append(PlateReading(
                    text=found.text, colour=reading.colour, confidence=found.confidence,
                    province_confidence=found.char_confidence[0], template=template.id,
                    box=reading.box, crop=reading.crop, char_confidence=found.char_confidence))
        voted = vote(again, len(again)).reading
        if voted is None:
            return reading
        return PlateReading(text=voted.text, colour=reading.colour,
                            confidence=voted.confidence,
                            province_confidence=voted.province_confidence,
                            template=reading.template, box=reading.box, crop=reading.crop,
                            char_confidence=voted.char_confidence)

    def _painted_crops(self, image: np.ndarray) -> list[_Crop]:
        """Crops of the plate-paint regions, the most plate-like first, with the text
        found inside them."""
        crops: list[_Crop] = []
        for candidate in find_candidates(image, self.options.roi)[: self.options.max_painted]:
            found = self._painted(image, candidate.box)
            if found and candidate.skewed:
                crops += self._straightened(image, candidate.quad, candidate.paint)
            crops += found
        return crops[: self.options.max_reads]

    def _straightened(self, image: np.ndarray, quad: np.ndarray, paint: str) -> list[_Crop]:
        """A plate seen at an angle, cut out by its paint outline and warped upright to a
        plate's shape (a rotated rectangle would leave its characters leaning). The
        outline's own proportions say little under perspective, so a yellow outline is
        tried as a double-row plate as well."""
        outline = grow_quad(quad, *QUAD_MARGIN)
        box = box_from_rect(cv2.minAreaRect(outline))
        margin = (1 + 2 * QUAD_MARGIN[0]) / (1 + 2 * QUAD_MARGIN[1])
        crop = straighten(image, outline, self.options.crop_height, PLATE_ASPECT * margin)
        crops = [_Crop(box, crop, (crop,))]
        if paint == "yellow":
            double = straighten(image, outline, 2 * self.options.crop_height,
                                DOUBLE_PLATE_ASPECT * margin)
            crops.append(_Crop(box, double, _split_rows(double)))
        return crops

    def _line_crops(self, image: np.ndarray, lines: Sequence[Box]) -> list[_Crop]:
        """Crops of the detector's pairs of lines (a double-row plate's two rows), then of
        its plate-shaped lines."""
        crops: list[_Crop] = []
        height = self.options.crop_height
        for upper, lower in _row_pairs(lines):
            box = _around(upper, lower)
            crops.append(_Crop(box, rectify(image, box.grown(0.03, 0.04), 2 * height),
                               (rectify(image, _upper_row(upper, lower), height),
                                rectify(image, _row(lower), height))))
        for line in lines:
            if LINE_ASPECT[0] <= line.aspect <= LINE_ASPECT[1]:
                crop = rectify(image, _row(line), height)
                crops.append(_Crop(line, crop, (crop,)))
        return crops

    def _painted(self, image: np.ndarray, box: Box) -> list[_Crop]:
        """A plate-paint region cut out, its text found by the detector within it: one
        line (a single-row plate) or a short line over a long one (double row). A region
        without text is no plate (a blue car, a yellow sign)."""
        height = round(2.5 * self.options.crop_height)
        grown = box.grown(0.3, 0.3)
        region = rectify(image, grown, height)
        tensor, sx, sy = detection_input(region, max(REGION_DETECT_SIDE, *region.shape[:2]))
        lines = [b for b in _bands(text_boxes(self.engine.detect(tensor), sx, sy))
                 if b.height >= 0.08 * height and b.width >= 0.12 * region.shape[1]]
        pairs = _row_pairs(lines)
        if pairs:
            upper, lower = max(pairs, key=lambda pair: pair[1].width)
            plate = unrectify(_around(upper, lower).grown(0.03, 0.04), grown, height)
            rows = (rectify(region, _upper_row(upper, lower), self.options.crop_height),
                    rectify(region, _row(lower), self.options.crop_height))
            return [_Crop(plate, rectify(image, plate, 2 * self.options.crop_height), rows)]
        wide = [b for b in lines if b.width >= 0.4 * region.shape[1]]
        if wide:
            line = _row(max(wide, key=lambda b: b.width * b.height))
            crop = rectify(region, line, self.options.crop_height)
            return [_Crop(unrectify(line, grown, height), crop, (crop,))]
        return []

    def _text_lines(self, image: np.ndarray, min_side: int = 0) -> list[Box]:
        """The text detector's lines over the region of interest, in frame pixels."""
        side = self.options.detector_side
        if side <= 0:
            return []
        roi = self.options.roi
        view = image[roi[1]: roi[1] + roi[3], roi[0]: roi[0] + roi[2]] if roi else image
        longest = max(view.shape[:2])
        target = min(side, max(longest, min_side))
        tensor, sx, sy = detection_input(view, target)
        boxes = text_boxes(self.engine.detect(tensor), sx, sy)
        if roi:
            boxes = [Box(b.cx + roi[0], b.cy + roi[1], b.width, b.height, b.angle)
                     for b in boxes]
        return boxes

    def _reading(self, crop: _Crop, probs: np.ndarray) -> PlateReading | None:
        """Decode one candidate under the templates its colour allows."""
        if sum(len(greedy(p, self.engine.charset)) for p in probs) < MIN_SYMBOLS:
            return None
        grey = is_greyscale(crop.image)
        colour = plate_colour(crop.image)
        double_row = len(crop.rows) == 2
        pool = [t for t in self.grammar.templates if t.double_row or not double_row]
        fitting = [] if grey else [t for t in pool if colour in t.colours]
        opinion = None if double_row else self._province_opinion(crop.image)
        found = self._decode(probs, fitting, double_row, opinion) if fitting else None
        if found is None or not self._confident(found):
            # the paint measured wrong (a washed-out, tinted or dark plate): any template
            found = self._decode(probs, pool, double_row, opinion)
        if found is None:
            return None
        template = next(t for t in pool if t.id == found.pattern)
        return PlateReading(
            text=found.text,
            colour="unknown" if grey else _reported_colour(colour, template, crop.image),
            confidence=found.confidence, province_confidence=found.char_confidence[0],
            template=template.id, box=crop.box, crop=crop.image,
            char_confidence=found.char_confidence)

    def _confident(self, reading: PlateReading | Decoded) -> bool:
        """Serial and province likely enough to report (see :class:`ReaderOptions`)."""
        conf = reading.char_confidence
        return (float(np.prod(conf[1:])) >= self.options.min_confidence
                and conf[0] >= self.options.min_province_confidence)

    def _decode(self, probs: np.ndarray, templates: Sequence[PlateTemplate],
                double_row: bool, opinion: dict[str, float] | None = None
                ) -> Decoded | None:
        if double_row:
            return _decode_rows(probs, templates, self.engine.charset)
        found = decode(probs[0], [Pattern(t.id, t.allowed) for t in templates],
                       self.engine.charset)
        if found is None or not opinion:
            return found
        template = next(t for t in templates if t.id == found.pattern)
        return _with_province(found, template.allowed[0], opinion,
                              self.options.province_weight)

    def _province_opinion(self, crop: np.ndarray) -> dict[str, float] | None:
        """The province classifier's probability of each province for a single-row crop,
        or None when it is not used."""
        if self.province is None:
            return None
        probs = self.province.probabilities([crop])[0]
        return dict(zip(self.province.provinces, probs.tolist(), strict=True))

    # -- a vehicle ------------------------------------------------------------------------

    def read_vehicle(self, frames: Iterable[np.ndarray]) -> VehicleReading:
        """Read every frame and vote: the text most frames support (weighted by their
        confidence), characters decided position by position among readings of the
        winning template."""
        best_per_frame = []
        frames_seen = 0
        for frame in frames:
            frames_seen += 1
            readings = self.read(frame)
            if readings:
                best_per_frame.append(readings[0])
        return vote(best_per_frame, frames_seen)


SAME_PLATE_MAX_DIFFERENCES = 2
"""Readings of one vehicle's frames that differ from the leading text in at most this
many positions are taken as misreadings of the same plate; others are other plates."""


def vote(readings: Sequence[PlateReading], frames: int) -> VehicleReading:
    """Combine one best reading per frame into the vehicle's plate.

    The text with the most total confidence leads. Readings of the same template that
    differ from it in at most two positions are the same plate misread: among them each
    position takes the character with the most total probability, so frames reading
    皖A12345, 皖A12845 and 皖A12345 give 皖A12345. Every character of the result was read
    there in some frame and the template allows it; readings of other plates (another
    vehicle in view) are left out and listed in ``others``.
    """
    if not readings:
        return VehicleReading("unreadable", None, 0, frames)
    weight: dict[str, float] = {}
    for r in readings:
        weight[r.text] = weight.get(r.text, 0.0) + r.confidence
    leader = next(r for r in readings if r.text == max(weight, key=lambda t: weight[t]))
    pool = [r for r in readings if r.template == leader.template
            and len(r.text) == len(leader.text)
            and sum(a != b for a, b in zip(r.text, leader.text, strict=True))
            <= SAME_PLATE_MAX_DIFFERENCES]
    chars, confs = [], []
    for pos in range(len(leader.text)):
        tally: dict[str, float] = {}
        for r in pool:
            tally[r.text[pos]] = tally.get(r.text[pos], 0.0) + r.char_confidence[pos]
        ch = max(tally, key=lambda c: tally[c])
        chars.append(ch)
        confs.append(max(r.char_confidence[pos] for r in pool if r.text[pos] == ch))
    text = "".join(chars)
    agreeing = [r for r in pool if r.text == text]
    base = max(agreeing or pool, key=lambda r: r.confidence)
    reading = PlateReading(text=text, colour=base.colour, confidence=float(np.prod(confs)),
                           province_confidence=confs[0], template=leader.template,
                           box=base.box, crop=base.crop, char_confidence=tuple(confs))
    others = tuple(sorted({r.text for r in readings if r not in pool}))
    return VehicleReading("read", reading, len(agreeing), frames, others)


@dataclass(frozen=True)
class FrontRear:
    """Front and rear plate of one vehicle compared.

    ``status``: "agree", "conflict", "front only", "rear only" or "unreadable".
    """

    status: Literal["agree", "conflict", "front only", "rear only", "unreadable"]
    front: str | None
    rear: tuple[str, ...]


def compare_front_rear(front: VehicleReading, rear_frames: Sequence[Sequence[PlateReading]]
                       ) -> FrontRear:
    """Compare the front plate with every reading of the rear frames: the rear plate and,
    on trucks, the enlarged number painted on the body (放大号), which reads as a second
    plate of the same text."""
    rear = tuple(sorted({r.text for frame in rear_frames for r in frame}))
    if front.text is None:
        return FrontRear("rear only" if rear else "unreadable", None, rear)
    if not rear:
        return FrontRear("front only", front.text, rear)
    return FrontRear("agree" if rear == (front.text,) else "conflict", front.text, rear)


CROP_MAX_SIDE = 400
"""An image no longer than this, with a plate's aspect, may be a plate crop."""


def _is_crop(image: np.ndarray) -> bool:
    h, w = image.shape[:2]
    return max(h, w) <= CROP_MAX_SIDE and 1.4 <= w / h <= 7.0


GLARE_VALUE = 245
"""Pixels at least this bright (HSV value) are headlights or their bloom, not paint."""
LIT_GAMMA = 0.55
"""The second look's tone curve: dark tones raised, value^0.55 (≈ 2 stops at the dark
end), bright ones nearly kept."""


def lit(image: np.ndarray) -> np.ndarray:
    """A frame taken in poor light as it would look in more: headlights and their bloom
    masked to mid-grey (so they neither blind the contrast step nor pass for white
    characters), then the brightness raised (:data:`LIT_GAMMA`) and locally equalised
    (CLAHE), colours kept."""
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
    value = hsv[..., 2]
    glare = cv2.dilate((value >= GLARE_VALUE).astype(np.uint8),
                       cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))) > 0
    curve = (255.0 * (np.arange(256) / 255.0) ** LIT_GAMMA).astype(np.uint8)
    value = cv2.createCLAHE(2.0, (8, 8)).apply(cv2.LUT(np.where(glare, 96, value)
                                                        .astype(np.uint8), curve))
    hsv[..., 2] = value
    out = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    out[glare] = 96
    return out


def _light_variants(crop: np.ndarray) -> list[np.ndarray]:
    """The crop in grey, grey stretched to the full range, and locally equalised (CLAHE):
    the same plate without its paint's colour cast and with the strokes' contrast
    restored."""
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    stretched = cv2.normalize(grey, None, 0, 255, cv2.NORM_MINMAX)
    equalised = cv2.createCLAHE(2.0, (4, 4)).apply(grey)
    return [cv2.cvtColor(g, cv2.COLOR_GRAY2BGR) for g in (grey, stretched, equalised)]


def _split_rows(crop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The upper and lower row of an upright double-row plate crop."""
    h = crop.shape[0]
    return (crop[round(UPPER_ROW[0] * h): round(UPPER_ROW[1] * h)],
            crop[round(LOWER_ROW[0] * h): round(LOWER_ROW[1] * h)])


def _with_province(found: Decoded, alphabet: str, opinion: dict[str, float],
                   weight: float) -> Decoded:
    """The reading with its first character decided by the recogniser and the province
    classifier together: among the characters the position allows, the one with the
    highest p_recogniser × p_classifier^weight, its confidence that product's share of
    the sum. A position that allows one character only (粤 of 粤Z…港) is left alone."""
    if len(alphabet) < 2 or len(found.first_scores) != len(alphabet):
        return found
    rec = np.clip(np.asarray(found.first_scores), 1e-6, 1.0)
    cls = np.clip(np.array([opinion.get(ch, 0.0) for ch in alphabet]), 1e-6, 1.0)
    joint = np.exp(np.log(rec / rec.sum()) + weight * np.log(cls))
    joint /= joint.sum()
    k = int(joint.argmax())
    return dataclasses.replace(found, text=alphabet[k] + found.text[1:],
                               char_confidence=(float(joint[k]), *found.char_confidence[1:]))


def _decode_rows(probs: np.ndarray, templates: Sequence[PlateTemplate], charset
                 ) -> Decoded | None:
    """A double-row plate: upper row = the template's first two positions, lower row =
    the rest; the template whose two rows together score best wins."""
    best: Decoded | None = None
    for t in templates:
        upper = decode(probs[0], [Pattern(t.id, t.allowed[:2])], charset)
        lower = decode(probs[1], [Pattern(t.id, t.allowed[2:])], charset)
        if upper is None or lower is None:
            continue
        joined = Decoded(t.id, upper.text + lower.text,
                         upper.char_confidence + lower.char_confidence,
                         upper.score + lower.score, min(upper.fit, lower.fit))
        if best is None or joined.score > best.score:
            best = joined
    return best


def _reported_colour(measured: PlateColour, template: PlateTemplate, crop: np.ndarray
                     ) -> PlateColour:
    """The measured colour when the template allows it; else, for a paint the template
    does not allow, the template's paint nearest in hue (a yellow plate under sodium
    light or a green cast measures green, but a seven-character plate is never green);
    else the template's colour the crop has most pixels of (a washed-out blue plate
    measures white)."""
    if measured in template.colours:
        return measured
    if measured in BANDS:
        nearest = nearest_paint(crop, [c for c in template.colours if c in BANDS])
        if nearest is not None:
            return nearest
    found = shares(crop)
    return max(template.colours, key=lambda c: found.get(c, 0.0))


def _row_pairs(lines: Sequence[Box]) -> list[tuple[Box, Box]]:
    """Pairs of a short line (two characters) sitting on a longer one just below it: the
    two rows of a double-row plate, which the detector finds apart."""
    pairs = []
    for upper in lines:
        for lower in lines:
            if upper is lower or not 0.25 <= upper.width / lower.width <= 0.75:
                continue
            gap = (lower.cy - lower.height / 2) - (upper.cy + upper.height / 2)
            if abs(upper.cx - lower.cx) < 0.3 * lower.width and upper.height < lower.height \
                    and -0.3 * lower.height <= gap <= 0.5 * lower.height:
                pairs.append((upper, lower))
    return pairs


def _bands(lines: Sequence[Box]) -> list[Box]:
    """Lines on one row joined: the detector splits a plate row at the dot (粤 · A).

    The gap at the dot is about a third of a character's height; a wider gap is the
    space between two plates side by side (a lorry's painted number beside its plate),
    which joined would read as one wrong plate."""
    rows: list[list[Box]] = []
    for line in sorted(lines, key=lambda b: b.cx):
        for row in rows:
            last = row[-1]
            tall = max(line.height, last.height)
            if abs(line.cy - last.cy) < 0.5 * tall and \
                    0.6 <= line.height / last.height <= 1.6 and \
                    line.cx - line.width / 2 - (last.cx + last.width / 2) < BAND_GAP * tall:
                row.append(line)
                break
        else:
            rows.append([line])
    joined = []
    for row in rows:
        points = np.concatenate([b.corners() for b in row])
        joined.append(box_from_rect(cv2.minAreaRect(points)) if len(row) > 1 else row[0])
    return joined


def _row(line: Box) -> Box:
    """A detected line widened for reading: the detector often leaves out the province
    character (set apart, and unlike the Latin text it saw most), so half a character
    height more on each side, and some room above and below."""
    extra = max(0.04 * line.width, 0.5 * line.height)
    return Box(line.cx, line.cy, line.width + 2 * extra, 1.25 * line.height, line.angle)


def _upper_row(upper: Box, lower: Box) -> Box:
    """The upper row of a double-row plate: centred over the lower row and about 3/4 of its
    width (province, dot, authority letter spread wide), whatever part was detected."""
    return Box(lower.cx, upper.cy, 0.8 * lower.width, 1.3 * upper.height, lower.angle)


def _inside(line: Box, region: Box) -> bool:
    """Whether a line's centre lies in a region (the region's own text)."""
    return cv2.pointPolygonTest(region.corners().reshape(-1, 1, 2), (line.cx, line.cy),
                                False) >= 0


def _around(upper: Box, lower: Box) -> Box:
    """The box of a double-row plate: the lower row's width, from the top of the upper."""
    top = upper.cy - upper.height / 2
    bottom = lower.cy + lower.height / 2
    return Box(lower.cx, (top + bottom) / 2, lower.width, bottom - top, lower.angle)


def _same_place(a: Box, b: Box) -> bool:
    inside = cv2.pointPolygonTest(b.corners().reshape(-1, 1, 2), (a.cx, a.cy), False) >= 0
    return inside and 0.8 <= a.width / b.width <= 1.25 and 0.7 <= a.height / b.height <= 1.4


def _merge(readings: list[PlateReading]) -> list[PlateReading]:
    """One reading per plate: of readings whose boxes hold each other's centre, the most
    confident; the same text twice in one frame (plate and a painted copy) stays twice
    only when apart."""
    kept: list[PlateReading] = []
    for r in sorted(readings, key=lambda r: r.confidence, reverse=True):
        if not any(_overlap(r.box, k.box) for k in kept):
            kept.append(r)
    return kept


def _overlap(a: Box, b: Box) -> bool:
    return (cv2.pointPolygonTest(b.corners().reshape(-1, 1, 2), (a.cx, a.cy), False) >= 0
            or cv2.pointPolygonTest(a.corners().reshape(-1, 1, 2), (b.cx, b.cy), False) >= 0)
