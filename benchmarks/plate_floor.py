"""The center's plate floors (``law.min_plate_confidence``, ``law.min_province_confidence``)
chosen from data: the reader's confidence on right and on wrong readings of real plates.

The crops (each file named by its plate text, as in the shared data set) are split by the
SHA-256 of their bytes, fixed before anything was read: a first hex digit 0–b chooses the
floors, c–f is held out and only measured. On the choosing part:

1. ``min_province_confidence``: the lowest floor (a step of 0.01) that refuses every
   reading whose province character is wrong;
2. ``min_plate_confidence``: then the lowest floor (a step of 0.01) that refuses every
   wrong reading the province floor left.

Held-out figures are printed first: right plates kept, wrong plates let through (a reading
that is not the plate on the file, of the readings the reader reports at all).

    python benchmarks/plate_floor.py            # the shared crops, a table
    python benchmarks/plate_floor.py --json     # ... and one JSON object as the last line
"""

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks.timing

import argparse
import hashlib
import math
import time
from dataclasses import dataclass

import numpy as np
from rich.console import Console

from benchmarks.timing import report
from overload.plates import load_plate_grammar
from plates.engines import load_engine
from plates.reader import PlateReader, load_image

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "plates"
HELD_OUT = "cdef"
"""First hex digits of the SHA-256 of the held-out files."""
STEP = 0.01


@dataclass(frozen=True)
class Read:
    """One crop read: the truth, what came out (None: nothing), and its figures."""

    truth: str
    text: str | None
    confidence: float
    province_confidence: float
    held_out: bool
    ms: float

    @property
    def right(self) -> bool:
        return self.text == self.truth

    @property
    def province_right(self) -> bool:
        return self.text is not None and self.text[:1] == self.truth[:1]


def read_all(folder: Path, reader: PlateReader) -> list[Read]:
    """Every crop of the folder read once, in name order."""
    out = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            continue
        held = hashlib.sha256(path.read_bytes()).hexdigest()[0] in HELD_OUT
        image = load_image(path)
        t = time.perf_counter()
        found = reader.read(image)
        ms = (time.perf_counter() - t) * 1000
        best = found[0] if found else None
        out.append(Read(path.stem.split("_")[0], best.text if best else None,
                        best.confidence if best else 0.0,
                        best.province_confidence if best else 0.0, held, ms))
    return out


def lowest_refusing(values: list[float]) -> float:
    """The lowest floor on the grid above every value (0 when there is none)."""
    if not values:
        return 0.0
    return round((math.floor(max(values) / STEP) + 1) * STEP, 2)


def choose(reads: list[Read]) -> tuple[float, float]:
    """The province floor, then the plate floor, from the choosing part (see above)."""
    read = [r for r in reads if r.text is not None]
    province = lowest_refusing([r.province_confidence for r in read if not r.province_right])
    left = [r for r in read if r.province_confidence >= province]
    plate = lowest_refusing([r.confidence for r in left if not r.right])
    return province, plate


def figures(prefix: str, reads: list[Read], province: float, plate: float) -> dict:
    """Right plates kept and wrong plates let through at the floors, and without them."""
    def kept(r: Read) -> bool:
        return r.text is not None and r.confidence >= plate \
            and r.province_confidence >= province

    right = [r for r in reads if r.right]
    wrong = [r for r in reads if r.text is not None and not r.right]
    return {f"{prefix}_crops": len(reads), f"{prefix}_read_right": len(right),
            f"{prefix}_read_wrong": len(wrong),
            f"{prefix}_nothing_read": sum(r.text is None for r in reads),
            f"{prefix}_right_kept": sum(map(kept, right)),
            f"{prefix}_right_kept_share": sum(map(kept, right)) / max(len(reads), 1),
            f"{prefix}_wrong_let_through": sum(map(kept, wrong)),
            f"{prefix}_wrong_confidences": " ".join(f"{r.confidence:.3f}/"
                                                    f"{r.province_confidence:.3f}"
                                                    for r in wrong)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crops", type=Path, default=SHARED, metavar="DIR")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args()
    reader = PlateReader(load_engine("onnx"), load_plate_grammar())
    reader.read(np.zeros((24, 94, 3), np.uint8))  # warm up
    reads = read_all(args.crops, reader)
    choosing = [r for r in reads if not r.held_out]
    held = [r for r in reads if r.held_out]
    province, plate = choose(choosing)
    out: dict = {"min_province_confidence": province, "min_plate_confidence": plate}
    out |= figures("held_out", held, province, plate)
    out |= figures("choosing", choosing, province, plate)
    right = [r for r in reads if r.right]
    out |= {"right_confidence_p05": float(np.percentile([r.confidence for r in right], 5)),
            "right_province_p05": float(np.percentile(
                [r.province_confidence for r in right], 5)),
            "crop_ms_median": float(np.median([r.ms for r in reads]))}
    report("plate floors from the reader's confidence (held-out part first)", out,
           Console(stderr=args.json), args.json)


if __name__ == "__main__":
    main()
