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

    python benchmarks/plates.py                 # the default images, a table
    python benchmarks/plates.py --json          # ... and one JSON object as the last line
    python benchmarks/plates.py --engine paddle --scenes DIR --crops ''
"""

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks.timing

import argparse
import csv
import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from rich.console import Console

from benchmarks.timing import report
from overload.plates import load_plate_grammar
from plates.decode import SEPARATORS
from plates.engines import ENGINES, Engine, load_engine, recognition_batch
from plates.reader import PlateReader, load_image

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
IN_REPO = Path(__file__).resolve().parents[1] / "tests" / "data" / "plates"
DEFAULT = SHARED if (SHARED / "scenes" / "ground_truth.csv").exists() else IN_REPO
"""The shared development set beside the repository when there, else the test images."""
COLOURS = {"蓝牌": "blue", "黄牌": "yellow", "绿牌": "green", "白牌": "white", "黑牌": "black"}


@dataclass(frozen=True)
class Scene:
    image: Path
    plates: list[tuple[str, str]]   # (text, colour)


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
    by_image: dict[str, list[tuple[str, str]]] = {}
    with table.open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            by_image.setdefault(row["image"], []).append(
                (row["plate"], COLOURS.get(row["colour"], row["colour"])))
    return [Scene(folder / name, plates) for name, plates in sorted(by_image.items())]


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


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    t = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t) * 1000


def ms_figures(prefix: str, ms: list[float]) -> dict[str, float]:
    return {f"{prefix}_ms_median": float(np.median(ms)),
            f"{prefix}_ms_p95": float(np.percentile(ms, 95))}


def char_accuracy(truth: str, read: str) -> float:
    """Share of the plate's characters read right in place (a wrong length counts every
    position past the shorter text as wrong)."""
    right = sum(a == b for a, b in zip(truth, read, strict=False))
    return right / max(len(truth), len(read), 1)


def in_turns(items: list, ours: Callable, theirs: Callable, block: int = 8
             ) -> tuple[list, list[float], list, list[float]]:
    """Run both pipelines over the items in alternating blocks, each result with its time.

    Blocks rather than single items: a runtime's idle threads keep spinning a moment after
    a run and would slow whichever pipeline runs right after; blocks keep that to their
    edges while a slow spell of the machine still hits both alike.
    """
    out: dict[str, list] = {"ours": [None] * len(items), "theirs": [None] * len(items)}
    ms: dict[str, list[float]] = {"ours": [0.0] * len(items), "theirs": [0.0] * len(items)}
    for start in range(0, len(items), block):
        for name, fn in (("ours", ours), ("theirs", theirs)):
            for i in range(start, min(start + block, len(items))):
                out[name][i], ms[name][i] = timed(lambda i=i, fn=fn: fn(items[i]))
    return out["ours"], ms["ours"], out["theirs"], ms["theirs"]


def bench_crops(crops: list[tuple[Path, str]], reader: PlateReader, generic: Generic
                ) -> dict[str, float]:
    images = [load_image(path) for path, _ in crops]
    readings, ours_ms, bases, base_ms = in_turns(images, reader.read,
                                                 lambda img: clean(generic.crop(img)))
    exact = base_exact = 0
    chars, base_chars = [], []
    for (_, truth), found, base in zip(crops, readings, bases, strict=True):
        text = found[0].text if found else ""
        exact += text == truth
        base_exact += base == truth
        chars.append(char_accuracy(truth, text))
        base_chars.append(char_accuracy(truth, base))
    n = len(crops)
    return {"crops": n, "crops_exact": exact / n, "crops_char_accuracy": float(np.mean(chars)),
            **ms_figures("crops", ours_ms),
            "baseline_crops_exact": base_exact / n,
            "baseline_crops_char_accuracy": float(np.mean(base_chars)),
            **ms_figures("baseline_crops", base_ms),
            "crops_ms_ratio": float(np.median(ours_ms) / np.median(base_ms))}


def bench_scenes(scenes: list[Scene], reader: PlateReader, generic: Generic
                 ) -> dict[str, float]:
    grammar = reader.grammar
    tally = {"": [0, 0], "blue": [0, 0], "yellow": [0, 0]}
    base_read = {"": 0, "blue": 0, "yellow": 0}
    false = base_false = colour_right = 0
    images = [load_image(scene.image) for scene in scenes]
    all_readings, ours_ms, all_lines, base_ms = in_turns(images, reader.read, generic.scene)
    for scene, readings, lines in zip(scenes, all_readings, all_lines, strict=True):
        ours = {r.text: r for r in readings}
        theirs = {clean(line) for line in lines}
        truths = {text for text, _ in scene.plates}
        for text, colour in scene.plates:
            for key in ("", colour):
                if key in tally:
                    tally[key][1] += 1
                    tally[key][0] += text in ours
                    base_read[key] += text in theirs
            colour_right += text in ours and ours[text].colour == colour
        false += sum(1 for text in ours if text not in truths)
        base_false += sum(1 for text in theirs if text not in truths and grammar.is_plate(text))
    n, read = len(scenes), tally[""][0]
    figures = {"scenes": n, "scene_plates": tally[""][1],
               "scenes_read": read / max(tally[""][1], 1)}
    for colour in ("blue", "yellow"):
        figures[f"scenes_read_{colour}"] = tally[colour][0] / max(tally[colour][1], 1)
    figures |= {"scenes_colour_right": colour_right / max(read, 1),
                "scenes_false_per_image": false / n, **ms_figures("scenes", ours_ms),
                "baseline_scenes_read": base_read[""] / max(tally[""][1], 1)}
    for colour in ("blue", "yellow"):
        figures[f"baseline_scenes_read_{colour}"] = base_read[colour] / max(tally[colour][1], 1)
    figures |= {"baseline_scenes_false_per_image": base_false / n,
                **ms_figures("baseline_scenes", base_ms)}
    figures["scenes_ms_ratio"] = figures["scenes_ms_median"] / figures[
        "baseline_scenes_ms_median"]
    return figures


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
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args()
    console = Console(stderr=args.json)
    engine = load_engine(args.engine)
    reader = PlateReader(engine, load_plate_grammar())
    generic = Generic(engine)
    warm = np.zeros((24, 94, 3), np.uint8)
    engine.recognise(recognition_batch([warm]))
    figures: dict[str, float | str] = {"engine": args.engine}
    limit = args.limit or None
    if str(args.crops) not in ("", "."):
        figures |= bench_crops(load_crops(args.crops)[:limit], reader, generic)
    if str(args.scenes) not in ("", "."):
        figures |= bench_scenes(load_scenes(args.scenes)[:limit], reader, generic)
    report(f"plate reader ({args.engine}) vs the generic PP-OCR pipeline", figures, console,
           args.json)


if __name__ == "__main__":
    main()
