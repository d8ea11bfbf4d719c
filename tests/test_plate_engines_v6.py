"""The PP-OCRv6 engines (plates.engines.V6_ENGINES): real models from the rapidocr 3.10
package read the repository's plates through the same reader, the in-memory graph
simplification stays exact on the v6 graphs, and a missing package is a clear error."""

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from plates import PlateReader, load_image
from plates.engines import (
    V6_ENGINES,
    OnnxV6Engine,
    PlateEngineError,
    detection_input,
    load_engine,
    recognition_batch,
)

DATA = Path(__file__).parent / "data" / "plates"
CROPS = sorted((DATA / "crops").glob("*.jpg"))
needs_v6 = pytest.mark.skipif(importlib.util.find_spec("rapidocr") is None,
                              reason="rapidocr 3.10 (the PP-OCRv6 models) is not installed")


def scene_plates() -> list[tuple[Path, str]]:
    """The test photos and their plate text."""
    with (DATA / "scenes" / "ground_truth.csv").open(encoding="utf-8") as f:
        return [(DATA / "scenes" / row["image"], row["plate"]) for row in csv.DictReader(f)]


@pytest.fixture(scope="module", params=V6_ENGINES)
def reader(request) -> PlateReader:
    """A reader on each PP-OCRv6 engine (the reader checks the charset holds the
    grammar's characters when it starts)."""
    if importlib.util.find_spec("rapidocr") is None:
        pytest.skip("rapidocr 3.10 (the PP-OCRv6 models) is not installed")
    return PlateReader(load_engine(request.param))


# What each engine read of the seven test photos when measured (onnx-v6rec 7, onnx-v6 6,
# onnx-v6det 5); one fewer is allowed, two fewer is a change to look at.
SCENES_AT_LEAST = {"onnx-v6rec": 6, "onnx-v6": 5, "onnx-v6det": 4}


def test_the_test_crops_read_exactly(reader):
    texts = [(r[0].text if r else "") for r in map(reader.read, map(load_image, CROPS))]
    assert texts == [p.stem for p in CROPS]


def test_the_test_photos_read_at_the_measured_share(reader):
    read = sum(text in {r.text for r in reader.read(load_image(path))}
               for path, text in scene_plates())
    assert read >= SCENES_AT_LEAST[reader.engine.name]


@needs_v6
def test_v6_tensors_keep_the_contract_and_the_simplified_graphs_are_exact():
    shipped, simple = OnnxV6Engine("onnx-v6", simplify=False), OnnxV6Engine("onnx-v6")
    batch = recognition_batch([load_image(p) for p in CROPS], width=240)
    probs = simple.recognise(batch)
    assert probs.shape == (len(CROPS), 240 // 8, len(simple.charset.characters))
    assert np.allclose(probs.sum(axis=2), 1.0, atol=1e-3)
    assert np.abs(probs - shipped.recognise(batch)).max() < 1e-4
    tensor, _, _ = detection_input(load_image(DATA / "scenes" / "京H99999.jpg"), 640)
    assert np.abs(simple.detect(tensor) - shipped.detect(tensor)).max() < 1e-4


def test_a_missing_package_names_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "rapidocr" else real(name, *a))
    for name in V6_ENGINES:
        with pytest.raises(PlateEngineError, match=r"pip install 'rapidocr==3\.10\.0'"):
            load_engine(name)


def test_an_unknown_name_is_refused():
    with pytest.raises(PlateEngineError, match="onnx-v6rec"):
        load_engine("onnx-v7")  # type: ignore[arg-type]
    with pytest.raises(PlateEngineError):
        OnnxV6Engine("onnx")
