"""onnxruntime backend (the ``[onnx]`` extra)."""

from pathlib import Path
from typing import Dict, Union

import numpy as np

from picoface.backends.base import Backend


def _image_input_only(source) -> bytes:
    """The model with every graph input but the first removed.

    Some public models (the OpenCV zoo's block-quantised ones) also list as graph inputs the
    weights their DequantizeLinear nodes produce; onnxruntime then demands them as feeds.
    """
    try:
        import onnx
    except ImportError:
        raise ImportError("this model lists its weights as inputs; loading it needs the onnx "
                          "package: pip install 'picoface[onnx]'") from None
    proto = onnx.load_from_string(source) if isinstance(source, bytes) else onnx.load(source)
    keep = proto.graph.input[0]
    del proto.graph.input[:]
    proto.graph.input.append(keep)
    return proto.SerializeToString()


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
        try:
            self._session = ort.InferenceSession(source, sess_options=opts,
                                                 providers=["CPUExecutionProvider"])
            if len(self._session.get_inputs()) > 1:
                self._session = ort.InferenceSession(_image_input_only(source), sess_options=opts,
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
