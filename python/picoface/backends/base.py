"""Backend interface and selection."""

from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

from picoface import _core

BACKENDS = ("auto", "onnxruntime", "native", "tflite")


class Backend:
    """Runs one network. Implementations must allow concurrent ``run`` calls."""

    name = "?"
    #: Input shape as (N, C, H, W) with None for dynamic dimensions.
    input_shape: Tuple[Optional[int], ...] = ()
    output_names: List[str] = []

    def run(self, tensor: np.ndarray) -> Dict[str, np.ndarray]:
        raise NotImplementedError


def is_native_model(model: Union[Path, bytes]) -> bool:
    """True for a .pface file (by its magic bytes, not its name)."""
    if isinstance(model, bytes):
        return model[:8] == b"PICOFACE"
    with open(model, "rb") as f:
        return f.read(8) == b"PICOFACE"


def open_backend(model: Union[Path, bytes], backend: str, threads: int) -> Backend:
    """Opens ``model`` with the named backend; "auto" runs .pface files natively, .tflite
    files with the TFLite runtime and ONNX files with onnxruntime."""
    if backend not in BACKENDS:
        raise ValueError(f"expected backend one of {BACKENDS}, got {backend!r}")
    from picoface.backends.tflite import TfliteBackend, is_tflite_model

    tflite = is_tflite_model(model)
    if backend == "tflite" or (backend == "auto" and tflite):
        if not tflite:
            raise ValueError("the tflite backend runs .tflite models; this is not one "
                             "(use backend='native' for .pface, 'onnxruntime' for ONNX)")
        return TfliteBackend(model, threads=threads)
    if tflite:
        raise ValueError(f"a .tflite model runs on backend='tflite', not {backend!r}")
    native = is_native_model(model)
    if backend == "native" or (backend == "auto" and native):
        if not native:
            raise ValueError("the native backend runs .pface models: convert the ONNX file first "
                             "with `picoface convert MODEL.onnx --task ... -o MODEL.pface`")
        if not hasattr(_core, "Engine"):
            raise ValueError("this build has no native engine yet (issue #3); use an ONNX "
                             "model with backend='onnxruntime'")
        from picoface.backends.native import NativeBackend

        return NativeBackend(model, threads=threads)
    if native:
        raise ValueError("onnxruntime cannot run a .pface model; use backend='native'")
    from picoface.backends.ort import OnnxRuntimeBackend

    return OnnxRuntimeBackend(model, threads=threads)
