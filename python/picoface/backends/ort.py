"""onnxruntime backend (the ``[onnx]`` extra)."""

from pathlib import Path
from typing import Dict, Union

import numpy as np

from picoface.backends.base import Backend


def fold_weight_dequantize(proto):
    """Replaces every DequantizeLinear of constants (int8 weights, as in the OpenCV zoo's
    block-quantised "int8bq" models) by its float32 result, and drops graph inputs no node
    reads (those models also list the weights as inputs, which onnxruntime would demand as
    feeds). onnxruntime 1.32 rejects those files' per-tensor ``block_size`` and would otherwise
    dequantise the weights on every call; folded, it runs the same float arithmetic as
    picoface's importer. (x - z) * s is evaluated in float32 like onnxruntime's kernel.
    Modifies and returns ``proto``."""
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in proto.graph.initializer}
    keep = []
    for n in proto.graph.node:
        if n.op_type != "DequantizeLinear" or not all(i in inits for i in n.input if i):
            keep.append(n)
            continue
        x = numpy_helper.to_array(inits[n.input[0]]).astype(np.float32)
        s = numpy_helper.to_array(inits[n.input[1]]).astype(np.float32)
        z = (numpy_helper.to_array(inits[n.input[2]]).astype(np.float32)
             if len(n.input) > 2 and n.input[2] else np.zeros_like(s))
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        axis, block = attrs.get("axis", 1), attrs.get("block_size", 0)
        if block:
            s = np.repeat(s, block, axis=axis).take(range(x.shape[axis]), axis=axis)
            z = np.repeat(z, block, axis=axis).take(range(x.shape[axis]), axis=axis)
        elif s.size > 1:
            shape = [1] * x.ndim
            shape[axis] = -1
            s, z = s.reshape(shape), z.reshape(shape)
        else:
            s, z = s.reshape(()), z.reshape(())
        init = numpy_helper.from_array(((x - z) * s).astype(np.float32), n.output[0])
        proto.graph.initializer.append(init)
        inits[n.output[0]] = init
    del proto.graph.node[:]
    proto.graph.node.extend(keep)
    used = {i for n in proto.graph.node for i in n.input}
    inputs = [i for i in proto.graph.input if i.name in used and i.name not in inits]
    del proto.graph.input[:]
    proto.graph.input.extend(inputs)
    return proto


def _folded(source) -> bytes:
    try:
        import onnx
    except ImportError:
        raise ImportError("this model keeps its weights int8 behind DequantizeLinear; loading it "
                          "needs the onnx package: pip install 'picoface[onnx]'") from None
    proto = onnx.load_from_string(source) if isinstance(source, bytes) else onnx.load(source)
    return fold_weight_dequantize(proto).SerializeToString()


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, model: Union[Path, bytes], *, threads: int = 1):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError(
                "the onnxruntime backend needs onnxruntime: pip install 'picoface[onnx]'") from None
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # errors only: some public models warn about every initializer
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        source = model if isinstance(model, bytes) else str(model)
        raw = source if isinstance(source, bytes) else Path(source).read_bytes()
        if b"DequantizeLinear" in raw:
            source = _folded(raw)
        try:
            self._session = ort.InferenceSession(source, sess_options=opts,
                                                 providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own types for corrupt files
            raise ValueError(f"onnxruntime could not load the model: {e}") from None
        first = self._session.get_inputs()[0]
        self._input_name = first.name
        self.input_shape = tuple(d if isinstance(d, int) else None for d in first.shape)
        self.output_names = [o.name for o in self._session.get_outputs()]

    def run(self, tensor: np.ndarray) -> Dict[str, np.ndarray]:
        outputs = self._session.run(None, {self._input_name: tensor})
        return dict(zip(self.output_names, outputs))
