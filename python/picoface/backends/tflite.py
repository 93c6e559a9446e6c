"""TFLite backend (the ``[tflite]`` extra): ai-edge-litert, or tflite-runtime when that is
what is installed.

Layout: picoface's pre-processing produces NCHW float32. A model whose input is NHWC (the
TFLite convention: last dimension 1 or 3) gets the tensor transposed; a model kept in NCHW
(e.g. converted by litert-torch without channel-last I/O) gets it as is. Outputs are returned
as the model defines them, named by the model's signature when it has one, else by their
tensor names — heads look outputs up by name, so a converted detector must keep them.
A quantized input or output (int8/uint8 with a scale) is quantized / de-quantized here, so
callers always exchange float32.
"""

import threading
from pathlib import Path
from typing import Dict, Union

import numpy as np

from picoface.backends.base import Backend

INSTALL_HINT = "pip install 'picoface[tflite]' (ai-edge-litert)"


def _interpreter_class():
    """The Interpreter of ai-edge-litert (preferred) or of tflite-runtime."""
    try:
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter
        return Interpreter, "tflite-runtime"
    except ImportError:
        raise ImportError(f"the tflite backend needs a TFLite runtime: {INSTALL_HINT}") from None


def is_tflite_model(model: Union[Path, bytes]) -> bool:
    """True for a TFLite flatbuffer (file identifier "TFL3" at bytes 4..8)."""
    if isinstance(model, bytes):
        return model[4:8] == b"TFL3"
    with open(model, "rb") as f:
        return f.read(8)[4:8] == b"TFL3"


def _channels_last(signature) -> bool:
    """NHWC unless the second dimension is the channel count (1 or 3) and the last is not."""
    if len(signature) != 4:
        return False
    c_first, c_last = int(signature[1]), int(signature[3])
    return not (c_first in (1, 3) and c_last not in (1, 3))


class TfliteBackend(Backend):
    name = "tflite"

    def __init__(self, model: Union[Path, bytes], *, threads: int = 1):
        self._cls, self.runtime = _interpreter_class()
        self._source = model if isinstance(model, bytes) else Path(model).read_bytes()
        if self._source[4:8] != b"TFL3":
            raise ValueError("the tflite backend runs .tflite models (file identifier TFL3); "
                             f"got {self._source[4:8]!r}")
        self._threads = max(1, threads)
        # An interpreter is not thread-safe and owns its tensors: one per calling thread.
        self._local = threading.local()
        first = self._interpreter()
        inputs = first.get_input_details()
        if len(inputs) != 1:
            raise ValueError(f"expected a model with one input, got {len(inputs)}")
        detail = inputs[0]
        signature = list(detail.get("shape_signature", detail["shape"]))
        self.nhwc = _channels_last(signature)
        nchw = [signature[i] for i in (0, 3, 1, 2)] if self.nhwc else signature
        self.input_shape = tuple(int(d) if d > 0 else None for d in nchw)
        self._names = self._output_names(first)
        self.output_names = list(self._names.values())

    def _interpreter(self):
        interp = getattr(self._local, "interpreter", None)
        if interp is None:
            try:
                interp = self._cls(model_content=self._source, num_threads=self._threads)
                interp.allocate_tensors()
            except (ValueError, RuntimeError) as e:
                raise ValueError(f"{self.runtime} could not load the model: {e}") from None
            self._local.interpreter = interp
            self._local.shape = tuple(interp.get_input_details()[0]["shape"])
        return interp

    @staticmethod
    def _output_names(interp) -> Dict[int, str]:
        """Output tensor index -> name, in the model's output order; signature names win."""
        names = {d["index"]: d["name"] for d in interp.get_output_details()}
        signatures = interp.get_signature_list()
        if len(signatures) == 1:
            runner = interp.get_signature_runner(next(iter(signatures)))
            by_index = {d["index"]: n for n, d in runner.get_output_details().items()}
            names = {i: by_index.get(i, n) for i, n in names.items()}
        return names

    def run(self, tensor: np.ndarray) -> Dict[str, np.ndarray]:
        interp = self._interpreter()
        x = np.asarray(tensor, dtype=np.float32)
        if self.nhwc and x.ndim == 4:
            x = x.transpose(0, 2, 3, 1)
        detail = interp.get_input_details()[0]
        if tuple(x.shape) != self._local.shape:
            # A dynamic model (shape signature with -1) takes any size; a fixed one raises.
            try:
                interp.resize_tensor_input(detail["index"], list(x.shape), strict=True)
                interp.allocate_tensors()
            except (ValueError, RuntimeError) as e:
                raise ValueError(f"the model takes input {list(self._local.shape)} (NHWC="
                                 f"{self.nhwc}), got {list(x.shape)}: {e}") from None
            self._local.shape = tuple(x.shape)
            detail = interp.get_input_details()[0]
        interp.set_tensor(detail["index"], _quantize(x, detail))
        interp.invoke()
        out = {}
        for d in interp.get_output_details():
            out[self._names[d["index"]]] = _dequantize(interp.get_tensor(d["index"]), d)
        return out


def _quantize(x: np.ndarray, detail) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype == np.float32:
        return np.ascontiguousarray(x)
    scale, zero = detail["quantization"]
    if not scale:
        raise ValueError(f"expected a float32 or quantized model input, got {dtype} without a scale")
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, detail) -> np.ndarray:
    scale, zero = detail["quantization"]
    if y.dtype == np.float32 or not scale:
        return y.astype(np.float32, copy=False)
    return ((y.astype(np.float32) - zero) * scale).astype(np.float32)
