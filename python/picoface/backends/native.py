"""The native backend: picoface's own engine running a .pface model."""

import threading
from pathlib import Path
from typing import Dict, Union

import numpy as np

from picoface import _core, modelfile
from picoface.backends.base import Backend
from picoface.quant_graph import input_quantization


class NativeBackend(Backend):
    name = "native"

    def __init__(self, model: Union[Path, bytes], *, threads: int = 1):
        self._source = model if isinstance(model, bytes) else Path(model).read_bytes()
        # The loader validates the file once here; a bad file fails the constructor.
        self.summary = modelfile.summary(self._source)
        # An int8 model's input may be fed already quantised with these (see run).
        self.input_quant = input_quantization(self._source, self.summary)
        self._threads = max(1, threads)
        # An engine is not re-entrant (it owns its activation arena): one per calling thread,
        # all reading the same model bytes.
        self._local = threading.local()
        first = self._engine()
        self.output_names = list(first.output_names)
        tensors = self.summary["tensors"]
        shape = tensors[self.summary["inputs"][0]]["shape"]
        self.input_shape = tuple(d if d > 0 else None for d in shape)

    @property
    def metadata(self) -> dict:
        return self.summary["metadata"]

    def _engine(self):
        engine = getattr(self._local, "engine", None)
        if engine is None:
            engine = _core.Engine(self._source, self._threads)
            self._local.engine = engine
        return engine

    def run(self, tensor: np.ndarray) -> Dict[str, np.ndarray]:
        """Outputs for one input tensor: float32, or int8 quantised with ``input_quant``."""
        dtype = np.int8 if tensor.dtype == np.int8 and self.input_quant is not None else np.float32
        outputs = self._engine().run([np.ascontiguousarray(tensor, dtype=dtype)])
        return dict(zip(self.output_names, outputs))
