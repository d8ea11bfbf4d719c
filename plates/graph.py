"""Exact simplifications of the shipped PP-OCRv4 graphs, made in memory when an engine starts.

The models were exported from PaddlePaddle by paddle2onnx, which spells out as several
elementwise steps what ONNX Runtime can do in one, or in none:

- **hard-swish** as four ops, ``x·clip(x + 3, 0, 6) / 6``, becomes ``x·HardSigmoid(x)``
  with α = 1/6 and β = 1/2: the same function, in two ops (opset 12 has no HardSwish);
- **PP-LCNetV3's learnable affine blocks**, a scalar scale and shift (``a·x + b``) right
  after a convolution, are folded into that convolution's weights and bias;
- the same blocks right **before a convolution** are folded into it when the convolution
  has no padding; a padded one would see zeros where the shift is missing, so there only
  nothing is folded.

This is algebra, not approximation: outputs agree to float rounding, which the tests
check on real plates. The model files are never changed; the simplified graph lives in
memory. Measured at 48 × 240 px, the recogniser went from 13.5 to 8.8 ms per crop, and the
detector at 1 120 px from 113 to 88 ms.
"""

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import NodeProto, helper, numpy_helper


@dataclass
class _Graph:
    """An ONNX graph with the look-ups a rewrite needs: constants, producers, consumers."""

    graph: onnx.GraphProto
    constants: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for init in self.graph.initializer:
            self.constants[init.name] = numpy_helper.to_array(init)
        for node in self.graph.node:
            if node.op_type == "Constant" and node.attribute[0].name == "value":
                self.constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)

    def producers(self) -> dict[str, NodeProto]:
        return {out: node for node in self.graph.node for out in node.output}

    def consumers(self) -> dict[str, list[NodeProto]]:
        found: dict[str, list[NodeProto]] = defaultdict(list)
        for node in self.graph.node:
            for name in node.input:
                found[name].append(node)
        for out in self.graph.output:
            found[out.name].append(NodeProto())     # a graph output is a consumer too
        return found

    def scalar(self, name: str) -> float | None:
        value = self.constants.get(name)
        return float(value.reshape(-1)[0]) if value is not None and value.size == 1 else None

    def scalar_operand(self, node: NodeProto | None, op: str) -> tuple[float, str] | None:
        """For ``op`` between a tensor and a scalar constant: the scalar and the tensor."""
        if node is None or node.op_type != op or len(node.input) != 2:
            return None
        left, right = node.input
        if self.scalar(right) is not None and left not in self.constants:
            return self.scalar(right), left
        if self.scalar(left) is not None and right not in self.constants:
            return self.scalar(left), right
        return None

    def add_constant(self, name: str, value: np.ndarray) -> str:
        self.graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), name))
        self.constants[name] = value
        return name

    def replace_nodes(self, dropped: set[int], added: dict[int, list[NodeProto]]) -> None:
        """Drop nodes (by id) and put replacements in place of others, order kept."""
        nodes = []
        for node in self.graph.node:
            if id(node) not in dropped:
                nodes.extend(added.get(id(node), [node]))
        del self.graph.node[:]
        self.graph.node.extend(nodes)


def fuse_hardswish(model: onnx.ModelProto) -> int:
    """``Div(Mul(x, Clip(Add(x, 3), 0, 6)), 6)`` → ``Mul(x, HardSigmoid(x))``; the count."""
    g = _Graph(model.graph)
    made, uses = g.producers(), g.consumers()
    dropped: set[int] = set()
    added: dict[int, list[NodeProto]] = {}
    for div in model.graph.node:
        if div.op_type != "Div" or g.scalar(div.input[1]) != 6.0:
            continue
        mul = made.get(div.input[0])
        if mul is None or mul.op_type != "Mul":
            continue
        for x, other in (mul.input, reversed(mul.input)):
            clip = made.get(other)
            if (clip is None or clip.op_type != "Clip" or len(clip.input) != 3
                    or g.scalar(clip.input[1]) != 0.0 or g.scalar(clip.input[2]) != 6.0):
                continue
            shift = g.scalar_operand(made.get(clip.input[0]), "Add")
            private = all(len(uses[name]) == 1
                          for name in (clip.input[0], clip.output[0], mul.output[0]))
            if shift != (3.0, x) or not private:
                continue
            gate = div.output[0] + "/hardsigmoid"
            added[id(div)] = [
                helper.make_node("HardSigmoid", [x], [gate], alpha=1 / 6, beta=0.5),
                helper.make_node("Mul", [x, gate], [div.output[0]]),
            ]
            dropped |= {id(mul), id(clip), id(made[clip.input[0]])}
            break
    g.replace_nodes(dropped, added)
    return len(added)


def _conv_parts(g: _Graph, conv: NodeProto) -> tuple[np.ndarray, np.ndarray] | None:
    """A convolution's constant weights and bias (zeros when it has none)."""
    weights = g.constants.get(conv.input[1])
    if weights is None:
        return None
    bias = (g.constants.get(conv.input[2]) if len(conv.input) > 2
            else np.zeros(weights.shape[0], np.float32))
    return (weights, bias) if bias is not None else None


def _set_conv_parts(g: _Graph, conv: NodeProto, weights: np.ndarray, bias: np.ndarray,
                    tag: str) -> None:
    stem = f"{conv.name or conv.output[0]}/{tag}"
    conv.input[1] = g.add_constant(f"{stem}/w", weights)
    if len(conv.input) > 2:
        conv.input[2] = g.add_constant(f"{stem}/b", bias)
    else:
        conv.input.append(g.add_constant(f"{stem}/b", bias))


def _affine_after(g: _Graph, start: str, uses: dict[str, list[NodeProto]]
                  ) -> tuple[float, float, list[NodeProto]]:
    """A scalar ``Mul`` then ``Add`` (either optional) fed only by ``start``:
    the scale, the shift and the nodes they take."""
    scale, shift, taken, current = 1.0, 0.0, [], start
    for op in ("Mul", "Add"):
        after = uses.get(current, [])
        found = g.scalar_operand(after[0], op) if len(after) == 1 else None
        if found is None or found[1] != current:
            continue
        if op == "Mul":
            scale = found[0]
        else:
            shift = found[0]
        taken.append(after[0])
        current = after[0].output[0]
    return scale, shift, taken


def fold_affine_after_conv(model: onnx.ModelProto) -> int:
    """``Add(Mul(Conv(x), a), b)`` → one Conv with weights ``a·W`` and bias ``a·B + b``."""
    g = _Graph(model.graph)
    uses = g.consumers()
    dropped: set[int] = set()
    folded = 0
    for conv in model.graph.node:
        parts = _conv_parts(g, conv) if conv.op_type == "Conv" else None
        if parts is None:
            continue
        scale, shift, taken = _affine_after(g, conv.output[0], uses)
        if not taken:
            continue
        weights, bias = parts
        _set_conv_parts(g, conv, weights * scale, bias * scale + shift, "affine-after")
        conv.output[0] = taken[-1].output[0]
        dropped |= {id(node) for node in taken}
        folded += 1
    g.replace_nodes(dropped, {})
    return folded


def _unpadded(conv: NodeProto) -> bool:
    pads = next((list(a.ints) for a in conv.attribute if a.name == "pads"), [])
    auto = next((a.s for a in conv.attribute if a.name == "auto_pad"), b"NOTSET")
    return not any(pads) and auto in (b"NOTSET", b"VALID")


def fold_affine_before_conv(model: onnx.ModelProto) -> int:
    """``Conv(Add(Mul(x, a), b))`` with no padding → one Conv with weights ``a·W`` and
    bias ``B + b·ΣW``; padded convolutions are left alone (their zeros would change)."""
    g = _Graph(model.graph)
    made, uses = g.producers(), g.consumers()
    dropped: set[int] = set()
    folded = 0
    for conv in model.graph.node:
        parts = _conv_parts(g, conv) if conv.op_type == "Conv" else None
        if parts is None or not _unpadded(conv):
            continue
        scale, shift, source, taken = 1.0, 0.0, conv.input[0], []
        for op in ("Add", "Mul"):
            node = made.get(source)
            found = g.scalar_operand(node, op)
            if found is None or len(uses[source]) != 1:
                continue
            scale, shift = (found[0], shift) if op == "Mul" else (scale, found[0])
            source = found[1]
            taken.append(node)
        if not taken:
            continue
        weights, bias = parts
        per_output = weights.reshape(weights.shape[0], -1).sum(axis=1)
        _set_conv_parts(g, conv, weights * scale, bias + shift * per_output, "affine-before")
        conv.input[0] = source
        dropped |= {id(node) for node in taken}
        folded += 1
    g.replace_nodes(dropped, {})
    return folded


def drop_unused(model: onnx.ModelProto) -> int:
    """Remove constants no node reads any more (the weights a fold replaced); the count."""
    graph = model.graph
    read = {name for node in graph.node for name in node.input}
    read |= {out.name for out in graph.output}
    unused = [init for init in graph.initializer if init.name not in read]
    for init in unused:
        graph.initializer.remove(init)
    constants = [n for n in graph.node if n.op_type == "Constant" and n.output[0] not in read]
    for node in constants:
        graph.node.remove(node)
    return len(unused) + len(constants)


def simplified(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with every simplification above applied (the argument is changed too)."""
    fuse_hardswish(model)
    fold_affine_after_conv(model)
    fold_affine_before_conv(model)
    drop_unused(model)
    return model
