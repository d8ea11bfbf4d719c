"""Province accuracy of the classifier and of the recogniser on real plates, per fold.

    python -m training.evaluate_province --crops DIR [--scenes DIR] [--model FILE]
        [--cache FILE] [--json]

``--crops``: plate crops named by their text (the province is the first character).
``--scenes``: photos with ``ground_truth.csv`` (image, x, y, width, height, rotation_deg,
colour, plate; x and y the box's centre); each box is cut out upright with a margin.

For each set: the province accuracy of the classifier alone, of the plate reader's own
reading (``PlateReader(load_engine("onnx")).read(crop)[0].text[0]``), and of the simple
combination "the classifier's top-1 when the reader's ``province_confidence`` is below
t" (no reading counts as confidence 0), with t chosen for each fold on the other folds
(:mod:`benchmarks.folds`), so the held-out figure is not chosen on what it reports. The
classifier never saw a real crop, so its figures are held out on every fold. Plates of
one photo share its fold. ``--cache`` keeps the reader's answers (the slow part) in a
JSON file so that a new classifier is measured in seconds.
"""

import argparse
import csv
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plates.locate import box_from_rect, rectify
from plates.province import ProvinceClassifier
from plates.reader import load_image

THRESHOLDS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.01)
"""Recogniser province confidences below which the classifier's answer is taken
(0: never, 1.01: always)."""
SCENE_MARGIN = (0.04, 0.1)
"""Margin added to a ground-truth box (shares of its width and height) before cutting."""
SCENE_HEIGHT = 64
"""Height the scene boxes are cut out at, the reader's own crop height."""
FOLDS = 5


@dataclass
class Item:
    """One real plate: its fold key, the crop, the true province."""

    name: str
    crop: np.ndarray
    truth: str


def fold_of(name: str) -> int:
    """The fold of a file name, as benchmarks/folds.py gives it (imported from there)."""
    root = Path(__file__).resolve().parents[2]
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from benchmarks.folds import fold_of as fold  # noqa: PLC0415 (a script, not a package)
    return fold(name, FOLDS)


def load_crop_items(folder: Path) -> list[Item]:
    """Crops named by their plate text."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return [Item(p.name, load_image(p), p.stem[0]) for p in files]


def load_scene_items(folder: Path) -> list[Item]:
    """Each ground-truth box of the photos, cut out upright with a margin."""
    items, images = [], {}
    with (folder / "ground_truth.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            name = row["image"]
            if name not in images:
                images[name] = load_image(folder / name)
            x, y, w, h, a = (float(row[k]) for k in ("x", "y", "width", "height",
                                                      "rotation_deg"))
            # the table keeps OpenCV's rotated rectangles as they came (a box taller than
            # wide, turned by about -90°, is a plate lying flat): long side first
            box = box_from_rect(((x, y), (w, h), a)).grown(*SCENE_MARGIN)
            items.append(Item(name, rectify(images[name], box, SCENE_HEIGHT),
                              row["plate"][0]))
    return items


def reader_answers(items: list[Item], cache: Path | None, key: str) -> list[tuple[str, float]]:
    """The reader's province and its confidence for each item ("" and 0 for no reading)."""
    stored = json.loads(cache.read_text("utf-8")) if cache and cache.exists() else {}
    if key in stored and len(stored[key]) == len(items):
        return [(a, float(c)) for a, c in stored[key]]
    from plates.engines import load_engine  # noqa: PLC0415 (only when not cached)
    from plates.reader import PlateReader  # noqa: PLC0415
    reader = PlateReader(load_engine("onnx"))
    answers = []
    for k, item in enumerate(items, 1):
        readings = reader.read(item.crop)
        answers.append((readings[0].text[0], readings[0].province_confidence) if readings
                       else ("", 0.0))
        if k % 50 == 0:
            print(f"  reader: {k}/{len(items)} {key}", file=sys.stderr)
    if cache:
        stored[key] = answers
        cache.write_text(json.dumps(stored, ensure_ascii=False), "utf-8")
    return answers


def combined(cls: list[str], rec: list[tuple[str, float]], t: float) -> list[str]:
    """The classifier's answer where the reader's province confidence is below ``t``."""
    return [c if conf < t else r for c, (r, conf) in zip(cls, rec, strict=True)]


def accuracy(answers: list[str], truths: list[str], mask: list[bool]) -> tuple[int, int]:
    """(right, total) over the items ``mask`` selects."""
    pairs = [(a, t) for a, t, m in zip(answers, truths, mask, strict=True) if m]
    return sum(a == t for a, t in pairs), len(pairs)


def held_out_threshold(cls: list[str], rec: list[tuple[str, float]], truths: list[str],
                       folds: list[int]) -> dict:
    """Per fold: t chosen on the other folds (most right; ties to the lowest t, the one
    that trusts the reader most), and the fold's accuracy with it."""
    per_fold, right_all, total_all = {}, 0, 0
    for fold in range(FOLDS):
        others = [f != fold for f in folds]
        here = [f == fold for f in folds]
        best = max(THRESHOLDS, key=lambda t: (accuracy(combined(cls, rec, t), truths,
                                                       others)[0], -t))
        right, total = accuracy(combined(cls, rec, best), truths, here)
        per_fold[fold] = {"t": best, "right": right, "total": total}
        right_all, total_all = right_all + right, total_all + total
    return {"per_fold": per_fold, "right": right_all, "total": total_all}


def confusions(answers: list[str], truths: list[str]) -> list[tuple[str, int]]:
    """"truth→answer" pairs of the misses, the most frequent first."""
    misses = Counter(f"{t}→{a or '∅'}" for a, t in zip(answers, truths, strict=True) if a != t)
    return misses.most_common()


def evaluate(items: list[Item], classifier: ProvinceClassifier, rec: list[tuple[str, float]]
             ) -> dict:
    """Every figure of one set."""
    truths = [i.truth for i in items]
    folds = [fold_of(i.name) for i in items]
    probs = classifier.probabilities([i.crop for i in items])
    cls = [classifier.provinces[int(k)] for k in probs.argmax(axis=1)]
    rec_top = [r for r, _ in rec]
    everyone = [True] * len(items)
    result: dict = {"n": len(items), "per_fold": {}}
    for fold in range(FOLDS):
        here = [f == fold for f in folds]
        result["per_fold"][fold] = {"classifier": accuracy(cls, truths, here),
                                    "reader": accuracy(rec_top, truths, here)}
    result["classifier"] = accuracy(cls, truths, everyone)
    result["reader"] = accuracy(rec_top, truths, everyone)
    result["fixed_t"] = {t: accuracy(combined(cls, rec, t), truths, everyone)
                         for t in THRESHOLDS}
    result["combined_held_out"] = held_out_threshold(cls, rec, truths, folds)
    result["confusions"] = {"classifier": confusions(cls, truths),
                            "reader": confusions(rec_top, truths)}
    return result


def timing(classifier: ProvinceClassifier, crops: list[np.ndarray], repeats: int = 30
           ) -> dict[str, float]:
    """Median ms per crop for batches of 1 and of 8."""
    out = {}
    for size in (1, 8):
        batch = crops[:size]
        classifier.probabilities(batch)
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            classifier.probabilities(batch)
            runs.append((time.perf_counter() - start) * 1000 / size)
        out[f"batch_{size}_ms_per_crop"] = float(np.median(runs))
    return out


def _pct(pair: tuple[int, int]) -> str:
    right, total = pair
    return f"{100 * right / max(total, 1):5.1f} % ({right}/{total})"


def report(name: str, result: dict) -> None:
    """The figures of one set, as text."""
    print(f"\n== {name}: {result['n']} plates")
    print(f"{'fold':>6}  {'classifier':>20}  {'reader':>20}  {'combined (t held out)':>28}")
    held = result["combined_held_out"]["per_fold"]
    for fold, figures in result["per_fold"].items():
        h = held[fold]
        print(f"{fold:>6}  {_pct(figures['classifier']):>20}  {_pct(figures['reader']):>20}  "
              f"{_pct((h['right'], h['total'])):>20} t={h['t']}")
    comb = result["combined_held_out"]
    print(f"{'all':>6}  {_pct(result['classifier']):>20}  {_pct(result['reader']):>20}  "
          f"{_pct((comb['right'], comb['total'])):>20} (each fold's t from the others)")
    print("  combined on all files, fixed t: " + ", ".join(
        f"t={t}: {_pct(v).split(' (')[0].strip()}" for t, v in result["fixed_t"].items()))
    for who, pairs in result["confusions"].items():
        shown = ", ".join(f"{p} ×{n}" for p, n in pairs) or "none"
        print(f"  misses of the {who} (truth→read): {shown}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crops", type=Path, required=True)
    parser.add_argument("--scenes", type=Path)
    parser.add_argument("--model", type=Path, help="ONNX file (default: the shipped one)")
    parser.add_argument("--cache", type=Path, help="JSON file keeping the reader's answers")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    classifier = ProvinceClassifier(args.model)
    sets = {"crops": load_crop_items(args.crops)}
    if args.scenes:
        sets["scenes"] = load_scene_items(args.scenes)
    results = {}
    for name, items in sets.items():
        rec = reader_answers(items, args.cache, f"{name}:{len(items)}")
        results[name] = evaluate(items, classifier, rec)
    results["timing"] = timing(classifier, [i.crop for i in sets["crops"]])
    if args.json:
        print(json.dumps(results, ensure_ascii=False, indent=1))
        return
    for name in sets:
        report(name, results[name])
    t = results["timing"]
    print(f"\nclassifier time: {t['batch_1_ms_per_crop']:.2f} ms a crop alone, "
          f"{t['batch_8_ms_per_crop']:.2f} ms a crop in batches of 8")


if __name__ == "__main__":
    main()
