"""Which detector and recogniser the plate reader should run, chosen on held-out folds.

Every engine named (``plates.engines``: the PP-OCRv4 and PP-OCRv6 detectors and
recognisers in each combination) reads the development crops and photos in the same
process, in turns with the others (blocks of a few images, so a slow spell of the machine
hits all alike), beside two generic pipelines for scale: RapidOCR 1.4 (PP-OCRv4, the one
``benchmarks/plates.py`` compares with) and, when installed, RapidOCR 3.10 (PP-OCRv6).

Figures per fold (:func:`benchmarks.folds.fold_of` on the file name) and over all files;
then the held-out choice: for each fold the reader engine that scores best on the *other*
folds (:func:`score`), and that engine's figures on this fold. Counting rules are those of
``benchmarks/plates.py``: a crop counts when the first reading equals its name, a photo's
plate when a reading of that photo has its text; false plates are readings of no plate of
their photo (for a generic pipeline, lines the grammar takes for a plate).

    python benchmarks/plate_engines.py --json
    python benchmarks/plate_engines.py --engines onnx onnx-v6rec --no-generic
    python benchmarks/plate_engines.py --engines onnx onnx-v6det --sides 640 960 --crops ''

"""

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks.folds

import argparse
import importlib
import importlib.util
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from benchmarks import plates as plates_bench
from benchmarks.folds import FOLDS, fold_of
from benchmarks.plates import clean, load_crops
from overload.plates import PlateGrammar, load_plate_grammar
from plates.engines import ENGINES, V6_ENGINES, load_engine
from plates.reader import PlateReader, ReaderOptions, load_image

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
COLOURS = {"蓝牌": "blue", "黄牌": "yellow", "绿牌": "green", "白牌": "white", "黑牌": "black"}
READER_ENGINES = ("onnx", *V6_ENGINES)
"""The engines compared by default (paddle runs the v4 models again, only slower)."""


@dataclass
class Tally:
    """Counts of one pipeline over some files."""

    crops: int = 0
    crops_exact: int = 0
    crop_ms: list[float] = field(default_factory=list)
    photos: int = 0
    plates: int = 0
    plates_read: int = 0
    yellow: int = 0
    yellow_read: int = 0
    false: int = 0
    photo_ms: list[float] = field(default_factory=list)

    def add(self, other: "Tally") -> None:
        """Add another tally's counts to this one."""
        for name, value in vars(other).items():
            setattr(self, name, getattr(self, name) + value)

    def figures(self) -> dict[str, float]:
        """Shares and times, as the report prints them."""
        out: dict[str, float] = {}
        if self.crops:
            out |= {"crops": self.crops, "crops_exact": self.crops_exact / self.crops,
                    "crop_ms_median": float(np.median(self.crop_ms))}
        if self.photos:
            out |= {"photos": self.photos, "plates": self.plates,
                    "plates_exact": self.plates_read / max(self.plates, 1),
                    "yellow": self.yellow, "yellow_exact": self.yellow_read / max(self.yellow, 1),
                    "false_per_photo": self.false / self.photos,
                    "photo_ms_median": float(np.median(self.photo_ms))}
        return out


def load_scenes(folder: Path) -> list[tuple[Path, list[tuple[str, str]]]]:
    """Photos and their (plate, colour) pairs, as :func:`benchmarks.plates.load_scenes`
    reads them."""
    return [(scene.image, [(p.text, p.colour) for p in scene.plates])
            for scene in plates_bench.load_scenes(folder)]


@dataclass
class Pipeline:
    """A way to read a crop and a photo: texts out, first the best."""

    name: str
    crop: Callable[[np.ndarray], str]
    photo: Callable[[np.ndarray], list[str]]
    generic: bool


def reader_pipeline(engine_name: str, side: int = 0) -> Pipeline:
    """The plate reader on one engine, its detector at ``side`` px (0: the default)."""
    options = ReaderOptions(detector_side=side) if side else ReaderOptions()
    reader = PlateReader(load_engine(engine_name), load_plate_grammar(), options)

    def crop(img: np.ndarray) -> str:
        found = reader.read(img)
        return found[0].text if found else ""

    name = f"{engine_name}@{side}" if side else engine_name
    return Pipeline(name, crop, lambda img: [r.text for r in reader.read(img)], False)


def generic_pipelines() -> list[Pipeline]:
    """RapidOCR 1.4 (PP-OCRv4) and, when installed, 3.10 (PP-OCRv6), whole pipelines on
    photos and the recogniser alone on crops."""
    rapid4 = importlib.import_module("rapidocr_onnxruntime").RapidOCR()
    out = [Pipeline(
        "generic-v4",
        lambda img: clean("".join(line[0] for line in (
            rapid4(img, use_det=False, use_cls=False)[0] or []))),
        lambda img: [clean(line[1]) for line in (rapid4(img)[0] or [])], True)]
    if importlib.util.find_spec("rapidocr") is not None:
        rapid6 = importlib.import_module("rapidocr").RapidOCR(
            params={"Global.log_level": "error"})
        out.append(Pipeline(
            "generic-v6",
            lambda img: clean("".join(rapid6(img, use_det=False, use_cls=False).txts or ())),
            # 3.10 keeps a call's use_det/use_cls for the calls after it: say them each time
            lambda img: [clean(t) for t in (rapid6(img, use_det=True, use_cls=True).txts
                                            or ())], True))
    return out


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    """A call's result and its time, ms."""
    start = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - start) * 1000


def run_in_turns(pipes: list[Pipeline], items: list[np.ndarray], kind: str, block: int = 8
                 ) -> dict[str, list[tuple[object, float]]]:
    """Every pipeline over the items in alternating blocks: (result, ms) per item."""
    out: dict[str, list[tuple[object, float]]] = {p.name: [] for p in pipes}
    for start in range(0, len(items), block):
        for pipe in pipes:
            fn = pipe.crop if kind == "crop" else pipe.photo
            out[pipe.name] += [timed(lambda img=img, fn=fn: fn(img))
                               for img in items[start:start + block]]
    return out


def crop_tallies(pipes: list[Pipeline], crops: list[tuple[Path, str]], folds: int
                 ) -> dict[str, list[Tally]]:
    """Per pipeline, one tally per fold of the crops."""
    images = [load_image(path) for path, _ in crops]
    results = run_in_turns(pipes, images, "crop")
    tallies = {p.name: [Tally() for _ in range(folds)] for p in pipes}
    for name, rows in results.items():
        for (path, truth), (text, ms) in zip(crops, rows, strict=True):
            t = tallies[name][fold_of(path.name, folds)]
            t.crops += 1
            t.crops_exact += text == truth
            t.crop_ms.append(ms)
    return tallies


def photo_tallies(pipes: list[Pipeline], scenes: list[tuple[Path, list[tuple[str, str]]]],
                  folds: int, grammar: PlateGrammar) -> dict[str, list[Tally]]:
    """Per pipeline, one tally per fold of the photos."""
    images = [load_image(path) for path, _ in scenes]
    results = run_in_turns(pipes, images, "photo")
    tallies = {p.name: [Tally() for _ in range(folds)] for p in pipes}
    generic = {p.name: p.generic for p in pipes}
    for name, rows in results.items():
        for (path, plates), (texts, ms) in zip(scenes, rows, strict=True):
            t = tallies[name][fold_of(path.name, folds)]
            read, truths = set(texts), {text for text, _ in plates}
            t.photos += 1
            t.photo_ms.append(ms)
            for text, colour in plates:
                t.plates += 1
                t.plates_read += text in read
                t.yellow += colour == "yellow"
                t.yellow_read += colour == "yellow" and text in read
            t.false += sum(1 for text in read if text not in truths
                           and (not generic[name] or grammar.is_plate(text)))
    return tallies


def score(t: Tally) -> tuple[float, float]:
    """How an engine is chosen: photo plates and crops read exactly, less false plates
    (each share weighs alike); ties to the faster."""
    f = t.figures()
    return (f.get("plates_exact", 0) + f.get("crops_exact", 0)
            - f.get("false_per_photo", 0), -f.get("photo_ms_median", 0))


def merged(tallies: list[Tally]) -> Tally:
    """One tally of several."""
    total = Tally()
    for t in tallies:
        total.add(t)
    return total


def held_out(tallies: dict[str, list[Tally]], candidates: list[str], folds: int
             ) -> dict[str, object]:
    """For each fold, the candidate best on the other folds, and its figures on this one."""
    chosen, picked = [], []
    for k in range(folds):
        best = max(candidates, key=lambda n: score(merged(
            [t for j, t in enumerate(tallies[n]) if j != k])))
        chosen.append(best)
        picked.append(tallies[best][k])
    return {"chosen_per_fold": chosen, **merged(picked).figures()}


def combine(crops: dict[str, list[Tally]], photos: dict[str, list[Tally]], folds: int
            ) -> dict[str, list[Tally]]:
    """Crop and photo tallies of each pipeline, fold by fold, in one."""
    out: dict[str, list[Tally]] = {}
    for name in {*crops, *photos}:
        out[name] = [merged([crops.get(name, [Tally()] * folds)[k],
                             photos.get(name, [Tally()] * folds)[k]]) for k in range(folds)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crops", type=Path, default=SHARED / "plates", metavar="DIR")
    parser.add_argument("--scenes", type=Path, default=SHARED / "scenes", metavar="DIR")
    parser.add_argument("--engines", nargs="+", choices=ENGINES + V6_ENGINES,
                        default=list(READER_ENGINES))
    parser.add_argument("--sides", nargs="+", type=int, default=[0], metavar="PX",
                        help="detector sides to try with each engine (0: the reader's "
                             "default); each engine and side is one candidate")
    parser.add_argument("--folds", type=int, default=FOLDS)
    parser.add_argument("--no-generic", action="store_true",
                        help="skip the generic RapidOCR pipelines")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args()
    pipes = [reader_pipeline(name, side) for name in args.engines for side in args.sides]
    candidates = [pipe.name for pipe in pipes]
    if not args.no_generic:
        pipes += generic_pipelines()
    warm = np.zeros((24, 94, 3), np.uint8)
    for pipe in pipes:
        pipe.crop(warm)
    crops = crop_tallies(pipes, load_crops(args.crops), args.folds) if str(args.crops) else {}
    photos = (photo_tallies(pipes, load_scenes(args.scenes), args.folds, load_plate_grammar())
              if str(args.scenes) else {})
    tallies = combine(crops, photos, args.folds)
    report = {name: {"all": merged(folds).figures(),
                     "folds": [t.figures() for t in folds]} for name, folds in tallies.items()}
    report["held_out_choice"] = held_out(tallies, candidates, args.folds)
    for name, entry in report.items():
        print(name, json.dumps(entry.get("all", entry), ensure_ascii=False), file=sys.stderr)
    if args.json:
        print(json.dumps(report, ensure_ascii=False))


if __name__ == "__main__":
    main()
