"""Constant folding: every node whose inputs are all constants is evaluated once, at import,
by the ONNX reference implementation (so folding has ONNX's semantics, not ours)."""

import logging
from typing import List

import numpy as np

from picoface.importer.graph import Graph, Node, node_to_onnx

log = logging.getLogger("picoface")

# Evaluating these at import would freeze one random draw into the model.
_NONDETERMINISTIC = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
                     "Multinomial", "Bernoulli"}
# A fold that would materialise a large tensor out of a small description (Expand,
# ConstantOfShape, Tile) is left to the engine: the file stays small.
_MAX_GROWTH = 4
_SMALL = 1 << 16


def evaluate(node: Node, inputs: List[np.ndarray], opset: int) -> List[np.ndarray]:
    """Outputs of one node on constant inputs (ONNX reference evaluator)."""
    import onnx
    from onnx.reference import ReferenceEvaluator

    names = [i for i in node.inputs if i]
    graph = onnx.helper.make_graph(
        [node_to_onnx(node)], "fold",
        [onnx.helper.make_tensor_value_info(n, onnx.helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
         for n, a in zip(names, inputs)],
        [onnx.helper.make_empty_tensor_value_info(o) for o in node.outputs if o])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 10)
    outs = ReferenceEvaluator(model).run(None, dict(zip(names, inputs)))
    return [np.asarray(o) for o in outs]


def _static_shape(graph: Graph, name: str):
    v = graph.values.get(name)
    if name in graph.constants:
        return graph.constants[name].shape
    if v is None or v.shape is None or any(d < 0 for d in v.shape):
        return None
    return v.shape


def fold_constants(graph: Graph) -> None:
    """Replaces every node computable at import by constants (also Shape of a tensor whose
    shape inference found fully static)."""
    kept: List[Node] = []
    for node in graph.nodes:
        folded = _fold(graph, node)
        if folded is None:
            kept.append(node)
            continue
        for name, arr in zip([o for o in node.outputs if o], folded):
            graph.constants[name] = arr
            graph.values.pop(name, None)
    graph.nodes = kept


def _fold(graph: Graph, node: Node):
    if node.type in _NONDETERMINISTIC:
        return None
    if node.type == "Shape":
        # Fixed-size models compute reshape targets from Shape: those are known now.
        shape = _static_shape(graph, node.inputs[0])
        if shape is None:
            return None
        start, end = node.attrs.get("start", 0), node.attrs.get("end", len(shape))
        return [np.array(shape, dtype=np.int64)[start:end]]
    names = [i for i in node.inputs if i]
    if not names or not all(n in graph.constants for n in names):
        return None
    inputs = [graph.constants[n] for n in names]
    try:
        outs = evaluate(node, inputs, graph.opset)
    except Exception as e:  # no reference kernel, or inputs it rejects: the engine decides
        log.warning("not folding %s %s: the ONNX reference evaluator failed (%s)", node.type,
                    node.name or node.outputs[0], e)
        return None
    size = sum(o.size for o in outs)
    if size > _SMALL and size > _MAX_GROWTH * sum(a.size for a in inputs):
        log.debug("not folding %s %s: %d elements from %d", node.type, node.name, size,
                  sum(a.size for a in inputs))
        return None
    return outs
