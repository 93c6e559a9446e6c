"""Backend interface and selection."""

from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

BACKENDS = ("auto", "onnxruntime", "native", "tflite")


class Backend:
    """Runs one network. Implementations must allow concurrent ``run`` calls."""

    name = "?"
    #: Input shape as (N, C, H, W) with None for dynamic dimensions.
    input_shape: Tuple[Optional[int], ...] = ()
    output_names: List[str] = []

    def run(self, tensor: np.ndarray) -> Dict[str, np.ndarray]:
        raise NotImplementedError


def open_backend(model: Union[Path, bytes], backend: str, threads: int) -> Backend:
    """Opens ``model`` with the named backend ("auto" picks by what the model is)."""
    if backend not in BACKENDS:
        raise ValueError(f"expected backend one of {BACKENDS}, got {backend!r}")
    if backend in ("native", "tflite"):
        raise ValueError(
            f"backend {backend!r} is not available in this release: the native engine and "
            "model format arrive with issue #3, TFLite with issue #7; use backend='onnxruntime'")
    from picoface.backends.ort import OnnxRuntimeBackend

    return OnnxRuntimeBackend(model, threads=threads)
