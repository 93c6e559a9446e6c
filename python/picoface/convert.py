"""ONNX -> .pface import.

This first importer maps the ONNX graph one to one: initializers and Constant nodes become
constant tensors, every other node an op with its ONNX type and attributes; the detector or
recogniser description the ONNX file lacks comes from the named head / task preset. Graph
optimisation (constant folding, BatchNorm folding, activation fusion, dequantisation of
int8 weight blocks) and the native engine that runs the result come with issue #3.
"""

import hashlib
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from picoface import modelfile
from picoface.embedder import PRESETS as EMBED_PRESETS
from picoface.heads import HEADS

TASKS = ("detect", "landmarks", "embed")
_SUPPORTED = {"float32", "int8", "uint8", "int32", "int64"}


def _onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise ImportError("converting ONNX models needs the onnx package: pip install 'picoface[onnx]'") from None
    return onnx, numpy_helper


def _array(tensor, numpy_helper) -> np.ndarray:
    arr = numpy_helper.to_array(tensor)
    if arr.dtype == np.float64 or arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if str(arr.dtype) not in _SUPPORTED:
        raise ValueError(f"tensor {tensor.name!r} has unsupported dtype {arr.dtype}")
    return arr


def _attr(a, onnx, numpy_helper):
    t = onnx.AttributeProto
    if a.type == t.FLOAT:
        return float(a.f)
    if a.type == t.INT:
        return int(a.i)
    if a.type == t.STRING:
        return a.s.decode("utf-8", "replace")
    if a.type == t.FLOATS:
        return [float(x) for x in a.floats]
    if a.type == t.INTS:
        return [int(x) for x in a.ints]
    if a.type == t.STRINGS:
        return [s.decode("utf-8", "replace") for s in a.strings]
    raise ValueError(f"attribute {a.name!r} of type {a.type} is not supported")


def metadata_for(task: str, head: Optional[str], preset: Optional[str], input_shape,
                 source: Path, digest: str) -> Dict[str, object]:
    if task not in TASKS:
        raise ValueError(f"expected task one of {TASKS}, got {task!r}")
    meta: Dict[str, object] = {"task": task}
    dynamic = len(input_shape) != 4 or not all(isinstance(d, int) and d > 0 for d in input_shape[2:])
    if task == "detect":
        if head not in HEADS:
            raise ValueError(f"expected --head one of {sorted(HEADS)} for a detector, got {head!r}")
        spec = HEADS[head]
        meta.update({"architecture": head, "input.color": spec.color, "input.mean": list(spec.mean),
                     "input.std": list(spec.std), "head.type": head,
                     "head.strides": list(spec.strides), "threshold.score": 0.5,
                     "threshold.nms": 0.4})
        multiple = spec.size_multiple
    elif task == "embed":
        name = preset or "arcface"
        if name not in EMBED_PRESETS:
            raise ValueError(f"expected --preset one of {sorted(EMBED_PRESETS)}, got {name!r}")
        spec = EMBED_PRESETS[name]
        meta.update({"architecture": name, "input.color": spec.color, "input.mean": list(spec.mean),
                     "input.std": list(spec.std)})
        multiple = 1
    else:
        raise ValueError("landmark models get their input convention with issue #6")
    if dynamic:
        meta.update({"input.size_policy": "multiple", "input.multiple": multiple})
    else:
        meta.update({"input.size_policy": "fixed", "input.size": [input_shape[3], input_shape[2]]})
    meta.update({"input.layout": "nchw", "quant.scheme": "none",
                 "provenance": f"converted from {source.name} (sha256 {digest})"})
    return meta


def convert_onnx(path, *, task: str, head: Optional[str] = None, preset: Optional[str] = None) -> bytes:
    """Returns the .pface bytes of an ONNX model. Raises ValueError / FileNotFoundError."""
    onnx, numpy_helper = _onnx()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {str(path)!r}")
    raw = path.read_bytes()
    try:
        model = onnx.load_from_string(raw)
    except Exception as e:  # protobuf raises its own errors for corrupt files
        raise ValueError(f"not a readable ONNX model: {e}") from None
    graph = model.graph
    tensors, ops, names = [], [], set()
    init_names = {t.name for t in graph.initializer}
    for init in graph.initializer:
        tensors.append(modelfile.Tensor(init.name, data=_array(init, numpy_helper)))
        names.add(init.name)
    real_inputs = [i for i in graph.input if i.name not in init_names]
    if not real_inputs:
        raise ValueError("the ONNX graph has no non-constant input")
    first = real_inputs[0]
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in first.type.tensor_type.shape.dim]
    tensors.append(modelfile.Tensor(first.name, dtype="float32", shape=dims))
    names.add(first.name)
    for node in graph.node:
        if node.op_type == "Constant":
            value = next((a for a in node.attribute if a.name == "value"), None)
            if value is None:
                raise ValueError(f"Constant node {node.name!r} without a tensor value is not supported")
            tensors.append(modelfile.Tensor(node.output[0], data=_array(value.t, numpy_helper)))
            names.add(node.output[0])
            continue
        for out in node.output:
            if out and out not in names:
                tensors.append(modelfile.Tensor(out, dtype="float32", shape=()))
                names.add(out)
        ops.append(modelfile.Op(node.op_type, [i if i else None for i in node.input],
                                [o for o in node.output if o],
                                {a.name: _attr(a, onnx, numpy_helper) for a in node.attribute}))
    shape = [d if d > 0 else None for d in dims]
    meta = metadata_for(task, head, preset, shape, path, hashlib.sha256(raw).hexdigest())
    return modelfile.encode(meta, tensors, ops, [first.name], [o.name for o in graph.output])
