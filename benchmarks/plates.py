"""Benchmark of the plate reader against the generic PP-OCR pipeline, on real images.

Two sets, each optional:

- ``--crops DIR``: plate crops, each file named by its plate text (``皖A12345.jpg``, or
  ``皖A12345_2.jpg`` for a second image of one plate);
- ``--scenes DIR``: whole photos and their ``ground_truth.csv`` (columns image, x, y,
  width, height, rotation_deg, colour, plate; colour 蓝牌, 黄牌, ...), as in the shared
  data set.

The baseline is the generic pipeline of the same engine's package, run on the same images
in the same process, in turns with the plate reader: for ``onnx`` RapidOCR (text detection
over the whole frame, angle classifier, recogniser, greedy decoding), for ``paddle``
PaddleOCR's ``ocr()``; on crops, their recogniser alone. A text counts as read when it
equals the plate once the separators a plate carries (·, spaces) are dropped; a scene's
plate counts as read when a reading of that image has its text. False plates are readings
(for the baseline: lines shaped like a plate under the grammar) that match no plate of
their image.

``--stress night,glare,small,turned`` adds the photos made harder: dark and noisy (dusk),
the same with two headlights beside the plate, scaled down until the widest plate is
about 45 px, and turned a quarter. The texts do not change, so they are scored alike.

``--folds K`` measures what no setting has seen: every file has a fold by its name
(:mod:`benchmarks.folds`); each reader variant of :data:`VARIANTS` reads every image; for
each fold the variant that scores best on the *other* folds is chosen and its figures on
this fold are kept. The held-out figures are those kept figures over all folds; the
all-files figures are the default reader's.

    python benchmarks/plates.py                 # the default images, a table
    python benchmarks/plates.py --json          # ... and one JSON object as the last line
    python benchmarks/plates.py --folds 5 --stress night,glare,small,turned --json
    python benchmarks/plates.py --engine paddle --scenes DIR --crops ''
"""

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks.timing

import argparse
import csv
import dataclasses
import importlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import cv2
import numpy as np
from rich.console import Console

from benchmarks.folds import fold_of
from benchmarks.timing import report
from overload.plates import PlateGrammar, load_plate_grammar
from plates.decode import SEPARATORS
from plates.engines import ENGINES, Engine, load_engine, recognition_batch
from plates.reader import PlateReader, ReaderOptions, load_image

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
IN_REPO = Path(__file__).resolve().parents[1] / "tests" / "data" / "plates"
DEFAULT = SHARED if (SHARED / "scenes" / "ground_truth.csv").exists() else IN_REPO
"""The shared development set beside the repository when there, else the test images."""
COLOURS = {"蓝牌": "blue", "黄牌": "yellow", "绿牌": "green", "白牌": "white", "黑牌": "black"}

VARIANTS: dict[str, dict] = {
    "default": {},
    "floor-0.45": {"min_confidence": 0.45},
    "no-second-look": {"second_look": False},
    "second-look-unscaled": {"min_detector_side": 0},
    "province-0.5": {"province_weight": 0.5},
}
"""Reader settings the folds choose among (overrides of :class:`ReaderOptions`)."""
FALSE_WEIGHT = 2.0
"""In choosing a variant, a false plate a photo costs this much of a share read: a wrong
plate in a case is worse than a plate missed."""
STRESSES = ("night", "glare", "small", "turned")
SMALL_PLATE_PX = 45
"""Width the widest plate of a photo is scaled to in the ``small`` stress (a second
vehicle's plate)."""


@dataclass(frozen=True)
class Plate:
    text: str
    colour: str
    box: tuple[float, float, float, float]   # centre x, centre y, width, height


@dataclass(frozen=True)
class Scene:
    image: Path
    plates: list[Plate]


@dataclass(frozen=True)
class Item:
    """One image to read: its file's name (for its fold), the image and what it shows."""

    name: str
    image: np.ndarray
    truth: str | list[Plate]


@dataclass(frozen=True)
class Outcome:
    """What one pipeline made of one item: the texts it read (with their colours) and the
    time it took."""

    texts: dict[str, str]
    ms: float


def clean(text: str) -> str:
    """A text without the separators a plate carries."""
    return "".join(ch for ch in text if ch not in SEPARATORS)


def load_crops(folder: Path) -> list[tuple[Path, str]]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return [(p, p.stem.split("_")[0]) for p in files]


def load_scenes(folder: Path) -> list[Scene]:
    table = folder / "ground_truth.csv"
    if not table.exists():
        raise SystemExit(f"{folder}: no ground_truth.csv")
    by_image: dict[str, list[Plate]] = {}
    with table.open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            box = tuple(float(row[k]) for k in ("x", "y", "width", "height"))
            by_image.setdefault(row["image"], []).append(
                Plate(row["plate"], COLOURS.get(row["colour"], row["colour"]), box))
    return [Scene(folder / name, plates) for name, plates in sorted(by_image.items())]


# -- harder photos ------------------------------------------------------------------------


def stressed(image: np.ndarray, plates: list[Plate], kind: str, seed: int) -> np.ndarray:
    """The photo made harder in one way (see the module's docstring)."""
    rng = np.random.default_rng(seed)
    if kind == "turned":
        return cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
    if kind == "small":
        widest = max(max(p.box[2], p.box[3]) for p in plates)
        scale = min(1.0, SMALL_PLATE_PX / widest)
        return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    dark = 255.0 * (image / 255.0) ** 2.2 * 0.45
    dark += rng.normal(0.0, 4.0, image.shape)
    if kind == "glare":
        h, w = image.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w]
        for p in plates:
            x, y, w, h = p.box   # the plate's centre and sides
            pw, ph = max(w, h), min(w, h)
            for side in (-1, 1):
                cx, cy = x + side * 1.6 * pw, y + ph
                r = 0.45 * pw
                dark += 255.0 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r)
                                       )[..., None]
    return np.clip(dark, 0, 255).astype(np.uint8)


def scene_items(scenes: list[Scene], stresses: Sequence[str]) -> dict[str, list[Item]]:
    """The photos as items, and one set of items per stress."""
    sets: dict[str, list[Item]] = {"scenes": []}
    for i, scene in enumerate(scenes):
        image = load_image(scene.image)
        sets["scenes"].append(Item(scene.image.name, image, scene.plates))
        for kind in stresses:
            sets.setdefault(f"{kind}", []).append(
                Item(scene.image.name, stressed(image, scene.plates, kind, i), scene.plates))
    return sets


# -- running ------------------------------------------------------------------------------


class Generic:
    """The engine package's own pipeline, the baseline."""

    def __init__(self, engine: Engine):
        if engine.name == "paddle":
            pipeline = engine.pipeline  # type: ignore[attr-defined]
            self.scene = lambda img: [line[1][0] for line in (pipeline.ocr(img, cls=False)[0]
                                                              or [])]
            self.crop = lambda img: "".join(
                text for text, _ in pipeline.ocr(img, det=False, cls=False)[0])
        else:
            rapid = importlib.import_module("rapidocr_onnxruntime").RapidOCR()
            self.scene = lambda img: [line[1] for line in (rapid(img)[0] or [])]
            self.crop = lambda img: "".join(
                line[0] for line in (rapid(img, use_det=False, use_cls=False)[0] or []))

    def read(self, item: Item, grammar: PlateGrammar) -> dict[str, str]:
        """The texts the generic pipeline reads: the crop's line, or a photo's lines that
        the grammar takes for a plate (it knows no colours)."""
        if isinstance(item.truth, str):
            return {clean(self.crop(item.image)): ""}
        return {t: "" for t in map(clean, self.scene(item.image)) if grammar.is_plate(t)}


def reader_texts(reader: PlateReader, item: Item) -> dict[str, str]:
    readings = reader.read(item.image)
    if isinstance(item.truth, str):
        return {readings[0].text: readings[0].colour} if readings else {"": ""}
    return {r.text: r.colour for r in readings}


def in_turns(items: list[Item], pipelines: dict[str, Callable[[Item], dict[str, str]]],
             block: int = 8) -> dict[str, list[Outcome]]:
    """Run every pipeline over the items in alternating blocks, each result with its time.

    Blocks rather than single items: a runtime's idle threads keep spinning a moment after
    a run and would slow whichever pipeline runs right after; blocks keep that to their
    edges while a slow spell of the machine still hits all alike.
    """
    out: dict[str, list[Outcome]] = {name: [] for name in pipelines}
    for start in range(0, len(items), block):
        for name, fn in pipelines.items():
            for item in items[start: start + block]:
                t = time.perf_counter()
                texts = fn(item)
                out[name].append(Outcome(texts, (time.perf_counter() - t) * 1000))
    return out


# -- figures ------------------------------------------------------------------------------


def char_accuracy(truth: str, read: str) -> float:
    """Share of the plate's characters read right in place (a wrong length counts every
    position past the shorter text as wrong)."""
    right = sum(a == b for a, b in zip(truth, read, strict=False))
    return right / max(len(truth), len(read), 1)


def crop_figures(items: Sequence[Item], outcomes: Sequence[Outcome]) -> dict[str, float]:
    read = [next(iter(o.texts)) for o in outcomes]
    n = max(len(items), 1)
    return {"n": len(items),
            "exact": sum(r == i.truth for r, i in zip(read, items, strict=True)) / n,
            "char_accuracy": float(np.mean([char_accuracy(i.truth, r)  # type: ignore[arg-type]
                                            for r, i in zip(read, items, strict=True)]
                                           or [0.0])),
            "ms_median": float(np.median([o.ms for o in outcomes] or [0.0]))}


def scene_figures(items: Sequence[Item], outcomes: Sequence[Outcome]) -> dict[str, float]:
    tally = {"": [0, 0], "blue": [0, 0], "yellow": [0, 0]}
    false = colour_right = 0
    for item, outcome in zip(items, outcomes, strict=True):
        truths = {p.text for p in item.truth}  # type: ignore[union-attr]
        for p in item.truth:  # type: ignore[union-attr]
            for key in ("", p.colour):
                if key in tally:
                    tally[key][0] += p.text in outcome.texts
                    tally[key][1] += 1
            colour_right += outcome.texts.get(p.text) == p.colour
        false += sum(1 for text in outcome.texts if text not in truths)
    figures = {"plates": tally[""][1], "read": tally[""][0] / max(tally[""][1], 1)}
    for colour in ("blue", "yellow"):
        figures[f"read_{colour}"] = tally[colour][0] / max(tally[colour][1], 1)
    figures |= {"colour_right": colour_right / max(tally[""][0], 1),
                "false_per_image": false / max(len(items), 1),
                "ms_median": float(np.median([o.ms for o in outcomes] or [0.0])),
                "ms_p95": float(np.percentile([o.ms for o in outcomes] or [0.0], 95))}
    return figures


def figures_of(kind: str, items: Sequence[Item], outcomes: Sequence[Outcome]
               ) -> dict[str, float]:
    return (crop_figures if kind == "crops" else scene_figures)(items, outcomes)


def score(sets: dict[str, list[Item]], outcomes: dict[str, list[Outcome]],
          keep: Callable[[Item], bool]) -> float:
    """How well a variant did on the items ``keep`` takes: the share read of each set,
    less :data:`FALSE_WEIGHT` × false plates a photo, summed over the sets."""
    total = 0.0
    for kind, items in sets.items():
        chosen = [(i, o) for i, o in zip(items, outcomes[kind], strict=True) if keep(i)]
        if not chosen:
            continue
        f = figures_of(kind, *zip(*chosen, strict=True))
        total += f["exact"] if kind == "crops" else f["read"] - FALSE_WEIGHT * f[
            "false_per_image"]
    return total


def held_out(sets: dict[str, list[Item]], runs: dict[str, dict[str, list[Outcome]]],
             folds: int) -> tuple[dict[str, list[Outcome]], list[str]]:
    """Per item, the outcome of the variant chosen on the other folds; and the choices."""
    kept = {kind: [None] * len(items) for kind, items in sets.items()}
    choices = []
    for fold in range(folds):
        def others(item: Item, fold: int = fold) -> bool:
            return fold_of(item.name, folds) != fold
        best = max(runs, key=lambda v: score(sets, runs[v], others))
        choices.append(best)
        for kind, items in sets.items():
            for k, item in enumerate(items):
                if not others(item):
                    kept[kind][k] = runs[best][kind][k]
    return kept, choices  # type: ignore[return-value]


def print_misses(sets: dict[str, list[Item]], outcomes: dict[str, list[Outcome]],
                 console: Console) -> None:
    """Per set, each image whose plate was missed or that gave a false reading."""
    for kind, items in sets.items():
        for item, outcome in zip(items, outcomes[kind], strict=True):
            truths = {item.truth} if isinstance(item.truth, str) else {
                p.text for p in item.truth}
            missed = sorted(truths - set(outcome.texts))
            false = sorted(set(outcome.texts) - truths - {""})
            if missed or false:
                console.print(f"{kind} {item.name}: missed {' '.join(missed) or '-'}; "
                              f"false {' '.join(false) or '-'}", markup=False)


def flat(prefix: str, figures: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}_{k}": v for k, v in figures.items()}


def make_reader(engine: Engine, grammar: PlateGrammar, overrides: dict) -> PlateReader:
    return PlateReader(engine, grammar, dataclasses.replace(ReaderOptions(), **overrides))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    crops = DEFAULT / ("plates" if DEFAULT is SHARED else "crops")
    parser.add_argument("--crops", type=Path, default=crops, metavar="DIR",
                        help="plate crops named by their text (default: the shared data "
                             "set, else tests/data; '' to skip)")
    parser.add_argument("--scenes", type=Path, default=DEFAULT / "scenes", metavar="DIR",
                        help="photos with ground_truth.csv (default: the shared data set, "
                             "else tests/data; '' to skip)")
    parser.add_argument("--engine", choices=ENGINES, default="onnx")
    parser.add_argument("--limit", type=int, default=0, metavar="N",
                        help="use only the first N images of each set (a quick check)")
    parser.add_argument("--folds", type=int, default=0, metavar="K",
                        help="choose among the reader variants on K−1 folds, report on the "
                             "K-th (default: the default reader alone)")
    parser.add_argument("--stress", default="", metavar="KINDS",
                        help=f"comma-separated harder copies of the photos: "
                             f"{', '.join(STRESSES)}")
    parser.add_argument("--misses", action="store_true",
                        help="list each image's missed plates and false readings")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args()
    stresses = [s for s in args.stress.split(",") if s]
    if unknown := set(stresses) - set(STRESSES):
        parser.error(f"--stress: unknown {', '.join(sorted(unknown))} "
                     f"(choose from {', '.join(STRESSES)})")
    if args.folds == 1 or args.folds < 0:
        parser.error("--folds: 0 (off) or at least 2")
    console = Console(stderr=args.json)
    engine = load_engine(args.engine)
    grammar = load_plate_grammar()
    generic = Generic(engine)
    engine.recognise(recognition_batch([np.zeros((24, 94, 3), np.uint8)]))
    limit = args.limit or None
    sets: dict[str, list[Item]] = {}
    if str(args.crops) not in ("", "."):
        sets["crops"] = [Item(p.name, load_image(p), text)
                         for p, text in load_crops(args.crops)[:limit]]
    if str(args.scenes) not in ("", "."):
        sets |= scene_items(load_scenes(args.scenes)[:limit], stresses)
    variants = VARIANTS if args.folds else {"default": {}}
    readers = {name: make_reader(engine, grammar, o) for name, o in variants.items()}
    pipelines = {name: partial(reader_texts, reader) for name, reader in readers.items()}
    pipelines["generic"] = lambda item: generic.read(item, grammar)
    runs: dict[str, dict[str, list[Outcome]]] = {name: {} for name in pipelines}
    for kind, items in sets.items():
        console.print(f"{kind}: {len(items)} images, {len(pipelines)} pipelines")
        for name, outcomes in in_turns(items, pipelines).items():
            runs[name][kind] = outcomes
    figures: dict[str, float | str] = {"engine": args.engine}
    base = runs.pop("generic")
    if args.folds:
        kept, choices = held_out(sets, runs, args.folds)
        figures["folds"] = args.folds
        figures["fold_choices"] = ",".join(choices)
        for name, outcomes in runs.items():
            for kind, items in sets.items():
                f = figures_of(kind, items, outcomes[kind])
                figures[f"variant_{name}_{kind}"] = (
                    f"{f['exact']:.3f}" if kind == "crops" else
                    f"{f['read']:.3f} read, {f['false_per_image']:.3f} false")
        for kind, items in sets.items():
            figures |= flat(f"held_out_{kind}", figures_of(kind, items, kept[kind]))
    looks = readers["default"].second_looks
    figures |= {"second_looks": looks.tried, "second_looks_found": looks.found,
                "second_look_ms_mean": 1000 * looks.seconds / max(looks.tried, 1)}
    if args.misses:
        print_misses(sets, runs["default"], console)
    for kind, items in sets.items():
        figures |= flat(kind, figures_of(kind, items, runs["default"][kind]))
        figures |= flat(f"baseline_{kind}", figures_of(kind, items, base[kind]))
        figures[f"{kind}_ms_ratio"] = (figures[f"{kind}_ms_median"]
                                       / max(figures[f"baseline_{kind}_ms_median"], 1e-9))
    report(f"plate reader ({args.engine}) vs the generic PP-OCR pipeline", figures, console,
           args.json)


if __name__ == "__main__":
    main()
