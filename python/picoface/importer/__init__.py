"""ONNX import as a pipeline of passes over a small graph IR (:mod:`.graph`).

``import_onnx`` loads a model, brings it to opset 18 (the semantics engine.h implements),
records inferred shapes, then runs :data:`PASSES` in order and reports the op count before
and after each. ``unsupported_ops`` lists what is left that the native engine cannot run.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Tuple, Union

from picoface.importer.cleanup import (merge_duplicate_constants, remove_dead, remove_passthrough,
                                       sanitise_inputs)
from picoface.importer.constant_folding import fold_constants
from picoface.importer.conv_fusion import fold_batchnorm, fuse_activations
from picoface.importer.graph import Graph, Node, Value, from_onnx

__all__ = ["ENGINE_OPS", "Graph", "Imported", "Node", "PASSES", "PassStats", "Value",
           "import_onnx", "load_onnx", "optimise", "unsupported_ops"]

log = logging.getLogger("picoface")

TARGET_OPSET = 18

# The op set of issue #3 (and engine.h): anything else left after optimisation is an error.
ENGINE_OPS = frozenset("""
Conv ConvTranspose Relu PRelu LeakyRelu Sigmoid HardSigmoid HardSwish Tanh Gelu Erf
BatchNormalization Add Sub Mul Div Pow Concat Reshape Flatten Transpose Squeeze Unsqueeze
Slice Split Pad MaxPool AveragePool GlobalAveragePool Resize Upsample Gemm MatMul Softmax
LayerNormalization ReduceMean ReduceL2 ReduceMax Exp Sqrt Clip Identity Dropout Shape Gather Cast
ConstantOfShape DequantizeLinear QuantizeLinear Equal Where Expand
""".split())

PASSES: List[Tuple[str, Callable[[Graph], None]]] = [
    ("sanitise inputs", sanitise_inputs),          # weights listed as inputs are not model inputs
    ("remove identity/dropout", remove_passthrough),  # no-ops at inference: one buffer fewer each
    ("fold constants", fold_constants),            # int8 weight blocks -> fp32, shape arithmetic -> values
    ("fold batchnorm", fold_batchnorm),            # a BN after a Conv is a per-channel affine of its weights
    ("fuse activations", fuse_activations),        # applied in the Conv's epilogue, not in a second pass
    ("remove dead nodes", remove_dead),            # folding leaves unread nodes and constants behind
    ("merge duplicate constants", merge_duplicate_constants),  # reused blocks store their weights once
]


@dataclass(frozen=True)
class PassStats:
    name: str
    ops_before: int
    ops_after: int


@dataclass
class Imported:
    """The optimised graph of an ONNX model, per-pass statistics and the source bytes."""

    graph: Graph
    stats: List[PassStats]
    source: bytes


def load_onnx(model: Union[str, Path, bytes]):
    """(ModelProto at opset >= 18 with inferred shapes recorded, the file's bytes, its node
    count as read). Raises FileNotFoundError / ValueError."""
    import onnx
    from onnx import shape_inference, version_converter

    if isinstance(model, (bytes, bytearray)):
        raw = bytes(model)
    else:
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {str(path)!r}")
        raw = path.read_bytes()
    try:
        proto = onnx.load_from_string(raw)
    except Exception as e:  # protobuf raises its own errors for corrupt files
        raise ValueError(f"not a readable ONNX model: {e}") from None
    nodes = len(proto.graph.node)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)
    if opset < TARGET_OPSET:
        # Older opsets give ops other semantics (Softmax axes, Slice/Pad/Clip attributes);
        # upgrading leaves one meaning per op name for the engine and the passes.
        try:
            proto = version_converter.convert_version(proto, TARGET_OPSET)
        except Exception as e:
            raise ValueError(f"cannot upgrade the model from opset {opset} to {TARGET_OPSET}: {e}") from None
    # Static activation shapes let the engine plan ahead and let Shape nodes fold.
    try:
        proto = shape_inference.infer_shapes(proto, data_prop=True)
    except Exception as e:
        log.warning("ONNX shape inference failed (%s); activation shapes stay unknown", e)
    return proto, raw, nodes


def optimise(graph: Graph) -> List[PassStats]:
    """Runs :data:`PASSES` on ``graph`` in place; returns ops before/after each pass."""
    stats = []
    for name, run in PASSES:
        before = graph.op_count()
        run(graph)
        stats.append(PassStats(name, before, graph.op_count()))
        log.debug("%s: %d -> %d ops", name, before, graph.op_count())
    return stats


def import_onnx(model: Union[str, Path, bytes]) -> Imported:
    """The optimised graph of an ONNX model (path or bytes). Raises FileNotFoundError /
    ValueError."""
    proto, raw, nodes = load_onnx(model)
    graph = from_onnx(proto)
    stats = [PassStats(f"upgrade to opset {TARGET_OPSET}", nodes, len(proto.graph.node)),
             PassStats("read (Constant nodes -> constants)", len(proto.graph.node), graph.op_count())]
    return Imported(graph, stats + optimise(graph), raw)


def unsupported_ops(graph: Graph) -> List[str]:
    """Op types in ``graph`` outside :data:`ENGINE_OPS`, sorted."""
    return sorted({n.type for n in graph.nodes} - ENGINE_OPS)
