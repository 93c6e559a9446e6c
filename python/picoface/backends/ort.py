"""onnxruntime backend (the ``[onnx]`` extra)."""

from pathlib import Path
from typing import Dict, Union

import numpy as np

from picoface.backends.base import Backend


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
        except Exception as e:  # onnxruntime raises its own types for corrupt files
            raise ValueError(f"onnxruntime could not load the model: {e}") from None
        # Public models sometimes list their weights as graph inputs; the image is the first.
        first = self._session.get_inputs()[0]
        self._input_name = first.name
        self.input_shape = tuple(d if isinstance(d, int) else None for d in first.shape)
        self.output_names = [o.name for o in self._session.get_outputs()]

    def run(self, tensor: np.ndarray) -> Dict[str, np.ndarray]:
        outputs = self._session.run(None, {self._input_name: tensor})
        return dict(zip(self.output_names, outputs))
