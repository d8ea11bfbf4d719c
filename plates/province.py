"""The province character of a single-row plate crop, by a small learned classifier.

The generic PP-OCRv4 recogniser is unsure of the province character more than of any
other: it knows 6 625 characters and was not trained on plates, so on unseen photos it
reads 湘 as 浙 or 皖, 桂 as 皖, 赣 as 鄂. This classifier knows only the province alphabet
and was trained on synthetic plates alone (``training``), so every real development
crop is held out from it. It takes the upright crop as the reader cuts it and looks at its
left third (:data:`LEFT_SHARE`), where the province sits whatever the crop's margins.

The model file ships in the package (``plates/models/province.onnx``, with its model card
beside it); the class order travels in the model's metadata under ``provinces``.
"""

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from plates.engines import PlateEngineError, ort_options, ort_session

MODEL_PATH = Path(__file__).parent / "models" / "province.onnx"
LEFT_SHARE = 0.35
"""Share of the crop's width, from its left edge, that the classifier looks at: the
province is the first character of a single-row plate (3.5–14 % of the plate's width),
and even a crop with a wide border keeps it within the left third."""
INPUT_SIZE = (48, 32)
"""Width, height the left part of every crop is scaled to."""
METADATA_KEY = "provinces"
"""Model metadata entry holding the class order, one character per class."""


def model_input(crops: Sequence[np.ndarray]) -> np.ndarray:
    """Crops (BGR uint8, any size) → the model's (N, 3, 32, 48) float32 input: the left
    :data:`LEFT_SHARE` of each crop, where the province is.

    Each crop is standardised on its own (zero mean, unit spread over its pixels), so a
    plate at night, behind glare or under sodium light reaches the network at the
    contrast of a plate at noon. Training (``training.province``) uses this same
    function, so runtime and training cannot drift apart.
    """
    width, height = INPUT_SIZE
    batch = np.empty((len(crops), 3, height, width), np.float32)
    for k, given in enumerate(crops):
        crop = cv2.cvtColor(given, cv2.COLOR_GRAY2BGR) if given.ndim == 2 else given
        crop = crop[:, : max(2, round(crop.shape[1] * LEFT_SHARE))]
        shrink = crop.shape[1] > width
        resized = cv2.resize(crop, (width, height),
                             interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        pixels = resized.astype(np.float32)
        pixels = (pixels - pixels.mean()) / (pixels.std() + 8.0)
        batch[k] = pixels.transpose(2, 0, 1)
    return batch


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


class ProvinceClassifier:
    """The province classifier on ONNX Runtime (CPU).

    ``provinces`` is the class order, read from the model; ``probabilities`` gives one row
    per crop. A missing model file is a :class:`PlateEngineError` naming the path.
    """

    def __init__(self, path: Path | None = None, threads: int = 1):
        self.path = Path(path) if path is not None else MODEL_PATH
        if not self.path.is_file():
            raise PlateEngineError(f"province model file missing: {self.path} (it ships "
                                   "with the package; `make train-plates` trains it again)")
        self._session = ort_session(self.path, ort_options(threads))
        meta = self._session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise PlateEngineError(f"{self.path}: no {METADATA_KEY!r} in the model's "
                                   "metadata (not a province model of training)")
        self.provinces: str = meta[METADATA_KEY]
        self._input = self._session.get_inputs()[0].name

    def probabilities(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """(N, len(provinces)) softmax probabilities for BGR uint8 crops of any size."""
        if not crops:
            return np.zeros((0, len(self.provinces)), np.float32)
        logits = self._session.run(None, {self._input: model_input(crops)})[0]
        return softmax(logits.astype(np.float32))

    def classify(self, crops: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        """The most likely province of each crop and its probability."""
        probs = self.probabilities(crops)
        best = probs.argmax(axis=1)
        return [(self.provinces[int(i)], float(probs[k, i])) for k, i in enumerate(best)]
