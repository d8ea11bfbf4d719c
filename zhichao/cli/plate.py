"""``zhichao plate read``: read the number plates in images, whole scenes or plate crops.

Each image's plates are printed most confident first; an image with nothing readable gets
an empty list. With ``--json``, one JSON object per image and line:
``{"image": path, "plates": [{"text", "colour", "confidence", "box", ...}]}``. With
``--vehicle`` the images are frames of one vehicle: every frame is read and the readings
vote; ``--rear`` adds the frames of a rear camera and reports whether front and rear agree.
An image that cannot be read is reported (``"error"``) and the others still are; the exit
status is then 1. An image whose header gives it more than
:data:`plates.reader.MAX_PIXELS` pixels is such an image, refused before it is decoded.
``--crops`` names an output folder: it is made (with its parents) when missing, and a
folder that cannot be made or written is one line, exit 2.
"""

import argparse
import json
import sys
from pathlib import Path

import cv2
from rich.console import Console
from rich.table import Table

from plates import (
    ENGINES,
    PlateImageError,
    PlateReader,
    PlateReading,
    ReaderOptions,
    compare_front_rear,
    load_engine,
    load_image,
    vote,
)
from zhichao.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``zhichao plate`` and its subcommand ``read``."""
    plate = sub.add_parser("plate", help="read number plates in images",
                           description=__doc__.split("\n\n")[0])
    plate_sub = plate.add_subparsers(dest="plate_command", metavar="COMMAND", required=True)
    p = plate_sub.add_parser("read", help="read the plates in images (scenes or crops)",
                             description=__doc__.split("\n\n")[1])
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    p.add_argument("--json", action="store_true", help="one JSON object per image and line")
    p.add_argument("--engine", choices=ENGINES, default="onnx",
                   help="runtime of the PP-OCRv4 models (default onnx; paddle needs "
                        "zhichao[paddle])")
    p.add_argument("--min-confidence", type=float, default=ReaderOptions.min_confidence,
                   metavar="P", help="report readings whose serial is at least this likely "
                                     f"(default {ReaderOptions.min_confidence})")
    p.add_argument("--no-second-look", dest="second_look", action="store_false",
                   help="do not look again, in more light, at an image with nothing read "
                        "(dusk, night, glare); faster on images that show no plate")
    p.add_argument("--roi", metavar="X,Y,W,H",
                   help="look only in this part of each frame (pixels), e.g. the lanes")
    p.add_argument("--vehicle", action="store_true",
                   help="the images are frames of one vehicle: vote one plate from them")
    p.add_argument("--rear", nargs="+", type=Path, default=[], metavar="IMAGE",
                   help="frames of the rear camera (with --vehicle): compare with the front")
    p.add_argument("--crops", type=Path, metavar="DIR",
                   help="write each plate's upright crop here as PNG")
    p.set_defaults(run=run)


def _roi(text: str | None) -> tuple[int, int, int, int] | None:
    if text is None:
        return None
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        x = y = w = h = -1
    if min(x, y) < 0 or min(w, h) <= 0:
        raise ConfigError(f"option --roi must be X,Y,W,H in pixels, X and Y 0 or more, "
                          f"W and H above 0 (got {text!r})")
    return x, y, w, h


def _options(args: argparse.Namespace) -> ReaderOptions:
    if not 0.0 <= args.min_confidence <= 1.0:
        raise ConfigError(f"option --min-confidence must lie in [0, 1] "
                          f"(got {args.min_confidence})")
    if args.rear and not args.vehicle:
        raise ConfigError("option --rear compares with a vehicle's front: add --vehicle")
    return ReaderOptions(min_confidence=args.min_confidence, roi=_roi(args.roi),
                         second_look=args.second_look)


def run(args: argparse.Namespace) -> int:
    """Read every image; returns 1 if some image could not be read, else 0."""
    options = _options(args)
    reader = PlateReader(load_engine(args.engine), options=options)
    out = Printer(args.json, args.crops)
    front = [out.image(path, reader) for path in args.images]
    if args.vehicle:
        rear = [out.image(path, reader) for path in args.rear]
        out.vehicle(front, rear)
    return 1 if out.failed else 0


class Printer:
    """Reads and prints image by image, so a long list shows progress as it goes."""

    def __init__(self, as_json: bool, crops: Path | None):
        self.as_json = as_json
        self.crops = crops
        self.failed = False
        self.console = Console(highlight=False, soft_wrap=True)
        self.errors = Console(stderr=True, highlight=False, soft_wrap=True)
        if crops is not None:  # an output folder, made like --out's file
            try:
                crops.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"option --crops {crops}: cannot make the folder "
                                  f"({exc.strerror or exc})") from None

    def image(self, path: Path, reader: PlateReader) -> list[PlateReading] | None:
        """Read and print one image; None if it could not be read."""
        try:
            readings = reader.read(load_image(path))
        except PlateImageError as exc:
            self.failed = True
            self.errors.print(f"[bold red]error:[/] {exc}")
            if self.as_json:
                self._json({"image": str(path), "error": str(exc), "plates": []})
            return None
        self._save_crops(path, readings)
        if self.as_json:
            self._json({"image": str(path), "plates": [r.to_json() for r in readings]})
        else:
            self._table(str(path), readings)
        return readings

    def vehicle(self, front: list[list[PlateReading] | None],
                rear: list[list[PlateReading] | None]) -> None:
        """The vote over the front frames, and the comparison with the rear."""
        result = vote([r[0] for r in front if r], len(front))
        rear_read = [r for r in rear if r is not None]
        summary = {"vehicle": {"status": result.status, "votes": result.votes,
                               "frames": result.frames, "others": list(result.others),
                               "plate": result.reading.to_json() if result.reading else None}}
        if rear:
            check = compare_front_rear(result, rear_read)
            summary["front_rear"] = {"status": check.status, "front": check.front,
                                     "rear": list(check.rear)}
        if self.as_json:
            self._json(summary)
            return
        plate = result.reading
        words = (f"[bold]{plate.text}[/] ({plate.colour}, confidence {plate.confidence:.2f}, "
                 f"{result.votes} of {result.frames} frames)" if plate
                 else f"unreadable in {result.frames} frames")
        self.console.print(f"vehicle: {words}")
        if rear:
            fr = summary["front_rear"]
            self.console.print(f"front/rear: {fr['status']} (rear read: "
                               f"{', '.join(fr['rear']) or 'nothing'})")

    def _json(self, obj: dict) -> None:
        sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def _table(self, image: str, readings: list[PlateReading]) -> None:
        if not readings:
            self.console.print(f"{image}: no readable plate")
            return
        table = Table(title=image, header_style="bold")
        for name in ("plate", "colour", "confidence", "province", "template", "box"):
            table.add_column(name)
        for r in readings:
            table.add_row(r.text, r.colour, f"{r.confidence:.3f}",
                          f"{r.province_confidence:.3f}", r.template,
                          " ".join(f"{v:g}" for v in r.box.as_list()))
        self.console.print(table)

    def _save_crops(self, path: Path, readings: list[PlateReading]) -> None:
        if self.crops is None:
            return
        for k, r in enumerate(readings):
            target = self.crops / f"{path.stem}.{k}.{r.text}.png"
            ok, data = cv2.imencode(".png", r.crop)
            if not ok:
                continue
            try:
                target.write_bytes(data.tobytes())
            except OSError as exc:
                raise ConfigError(f"option --crops {self.crops}: cannot write {target.name} "
                                  f"({exc.strerror or exc})") from None
