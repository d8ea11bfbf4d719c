"""The graph simplifications: the same outputs as the graph they came from, on small graphs
built here and on the shipped PP-OCRv4 models with real plates, run by ONNX Runtime."""

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from plates.engines import detection_input, package_dir, recognition_batch
from plates.graph import (
    fold_affine_after_conv,
    fold_affine_before_conv,
    fuse_hardswish,
    simplified,
)
from plates.reader import load_image

PLATES = Path(__file__).parent / "data" / "plates"
MODELS = package_dir("rapidocr_onnxruntime") / "models"
RNG = np.random.default_rng(7)


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def scalar(name: str, value: float) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(
        np.array([value], np.float32)))


def model(nodes: list[onnx.NodeProto], weights: dict[str, np.ndarray],
          outputs: tuple[str, ...] = ("y",)) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, [1, 4, None, None])
         for o in outputs],
        [numpy_helper.from_array(v, k) for k, v in weights.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)])


def conv_weights(group: int = 1) -> dict[str, np.ndarray]:
    return {"w": RNG.normal(size=(4, 4 // group, 3, 3)).astype(np.float32),
            "b": RNG.normal(size=4).astype(np.float32)}


def affine(src: str, dst: str, a: float, b: float) -> list[onnx.NodeProto]:
    return [scalar(f"{dst}_a", a), scalar(f"{dst}_b", b),
            helper.make_node("Mul", [src, f"{dst}_a"], [f"{dst}_m"]),
            helper.make_node("Add", [f"{dst}_m", f"{dst}_b"], [dst])]


def simplify_and_compare(build, fold, expected: int) -> onnx.ModelProto:
    """Rewrite a fresh copy of a model; its output must equal the original's."""
    x = RNG.normal(size=(1, 4, 6, 6)).astype(np.float32)
    before = run(build(), x)
    changed = build()
    assert fold(changed) == expected
    onnx.checker.check_model(changed)
    np.testing.assert_allclose(run(changed, x), before, rtol=1e-5, atol=1e-5)
    return changed


def test_hardswish_becomes_hardsigmoid_times_x():
    weights = conv_weights()

    def build() -> onnx.ModelProto:
        return model([helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
                      scalar("three", 3.0), scalar("zero", 0.0), scalar("six", 6.0),
                      helper.make_node("Add", ["c", "three"], ["s"]),
                      helper.make_node("Clip", ["s", "zero", "six"], ["g"]),
                      helper.make_node("Mul", ["c", "g"], ["p"]),
                      helper.make_node("Div", ["p", "six"], ["y"])], weights)

    done = simplify_and_compare(build, fuse_hardswish, 1)
    ops = Counter(n.op_type for n in done.graph.node)
    assert ops["HardSigmoid"] == 1 and ops["Clip"] == 0 and ops["Div"] == 0


def test_a_shift_other_than_three_is_not_hardswish():
    weights = conv_weights()

    def build() -> onnx.ModelProto:
        return model([helper.make_node("Conv", ["x", "w", "b"], ["c"]),
                      scalar("two", 2.0), scalar("zero", 0.0), scalar("six", 6.0),
                      helper.make_node("Add", ["c", "two"], ["s"]),
                      helper.make_node("Clip", ["s", "zero", "six"], ["g"]),
                      helper.make_node("Mul", ["c", "g"], ["p"]),
                      helper.make_node("Div", ["p", "six"], ["y"])], weights)

    simplify_and_compare(build, fuse_hardswish, 0)


@pytest.mark.parametrize("group", [1, 4])
def test_affine_after_a_conv_folds_into_it(group):
    weights = conv_weights(group)

    def build() -> onnx.ModelProto:
        return model([helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1],
                                       group=group), *affine("c", "y", 0.7, -1.3)], weights)

    done = simplify_and_compare(build, fold_affine_after_conv, 1)
    assert [n.op_type for n in done.graph.node if n.op_type != "Constant"] == ["Conv"]


def test_a_conv_whose_output_is_also_a_graph_output_keeps_its_affine():
    weights = conv_weights()

    def build() -> onnx.ModelProto:
        return model([helper.make_node("Conv", ["x", "w", "b"], ["c"]),
                      *affine("c", "y", 0.7, -1.3)], weights, outputs=("y", "c"))

    simplify_and_compare(build, fold_affine_after_conv, 0)


@pytest.mark.parametrize("group", [1, 4])
def test_affine_before_an_unpadded_conv_folds_into_it(group):
    weights = conv_weights(group)

    def build() -> onnx.ModelProto:
        return model([*affine("x", "s", 1.9, 0.4),
                      helper.make_node("Conv", ["s", "w", "b"], ["y"], group=group)], weights)

    done = simplify_and_compare(build, fold_affine_before_conv, 1)
    assert [n.op_type for n in done.graph.node if n.op_type != "Constant"] == ["Conv"]


def test_affine_before_a_padded_conv_is_left_alone():
    """Zero padding would see the shift where it is missing: folding would be wrong."""
    weights = conv_weights()

    def build() -> onnx.ModelProto:
        return model([*affine("x", "s", 1.9, 0.4),
                      helper.make_node("Conv", ["s", "w", "b"], ["y"], pads=[1, 1, 1, 1])],
                     weights)

    simplify_and_compare(build, fold_affine_before_conv, 0)


@pytest.fixture(scope="module")
def shipped():
    """Sessions on the recogniser and detector as shipped and as simplified."""
    def sessions(name: str) -> tuple[ort.InferenceSession, ort.InferenceSession, Counter]:
        path = str(MODELS / f"ch_PP-OCRv4_{name}_infer.onnx")
        done = simplified(onnx.load(path))
        return (ort.InferenceSession(path, providers=["CPUExecutionProvider"]),
                ort.InferenceSession(done.SerializeToString(),
                                     providers=["CPUExecutionProvider"]),
                Counter(n.op_type for n in done.graph.node))
    return {name: sessions(name) for name in ("rec", "det")}


def test_simplified_recogniser_reads_real_plates_the_same(shipped):
    plain, fast, ops = shipped["rec"]
    crops = [load_image(p) for p in sorted((PLATES / "crops").glob("*.jpg"))]
    assert len(crops) >= 3
    batch = recognition_batch(crops, width=240)
    name = plain.get_inputs()[0].name
    before, after = plain.run(None, {name: batch})[0], fast.run(None, {name: batch})[0]
    assert np.abs(before - after).max() < 1e-4
    assert (before.argmax(-1) == after.argmax(-1)).all()
    assert ops["Clip"] == 0 and ops["HardSigmoid"] >= 28


def test_simplified_detector_sees_a_real_scene_the_same(shipped):
    plain, fast, ops = shipped["det"]
    scene = load_image(next((PLATES / "scenes").glob("*.jpg")))
    tensor, _, _ = detection_input(scene, 640)
    name = plain.get_inputs()[0].name
    before, after = plain.run(None, {name: tensor})[0], fast.run(None, {name: tensor})[0]
    assert np.abs(before - after).max() < 1e-4
    assert ops["Clip"] == 0
