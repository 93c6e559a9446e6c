"""Face embeddings from aligned crops."""

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from picoface import _core, _validate
from picoface.backends import open_backend


@dataclass(frozen=True)
class EmbedderSpec:
    """Input convention of a recogniser: channel order and normalisation of its crops."""

    color: str
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]


PRESETS = {
    # ArcFace / EdgeFace family: RGB scaled to [-1, 1].
    "arcface": EmbedderSpec("rgb", (127.5, 127.5, 127.5), (127.5, 127.5, 127.5)),
    # OpenCV zoo SFace: RGB in 0..255 (FaceRecognizerSF feeds blobFromImage(swapRB=true)).
    "sface": EmbedderSpec("rgb", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}


class FaceEmbedder:
    """Maps aligned face crops to L2-normalised embeddings.

    Args:
        model: path or bytes of a .pface recogniser (native engine; its metadata sets the
            input convention and overrides ``preset``) or of an ONNX one taking N x 3 x S x S.
        preset: input convention, "arcface" (RGB, [-1, 1]) or "sface" (RGB, 0..255),
            or an :class:`EmbedderSpec`.
        backend: "auto" (native for .pface, tflite for .tflite, onnxruntime for ONNX),
            "native", "onnxruntime" or "tflite" (ai-edge-litert or tflite-runtime; NHWC
            models get the input transposed).
        threads: backend threads.

    Raises:
        FileNotFoundError: model path does not exist.
        ValueError: bad options or a model the backend cannot load.
    """

    def __init__(self, model, *, preset="arcface", backend: str = "auto", threads: int = 1):
        if isinstance(preset, EmbedderSpec):
            self.spec = preset
        elif preset in PRESETS:
            self.spec = PRESETS[preset]
        else:
            raise ValueError(f"expected preset one of {sorted(PRESETS)}, got {preset!r}")
        source = _validate.model_source(model, "embedder model")
        self.model_name = "<bytes>" if isinstance(source, bytes) else str(source)
        self._net = open_backend(source, backend, _validate.count(threads, "threads"))
        meta = getattr(self._net, "metadata", None)
        self.threshold: Optional[float] = None
        if meta is not None:  # a .pface file describes its own input convention
            if meta.get("task") != "embed":
                raise ValueError(f"expected a recogniser model, got task {meta.get('task')!r}")
            self.spec = EmbedderSpec(meta["input.color"], tuple(meta["input.mean"]),
                                     tuple(meta["input.std"]))
            if "threshold.match" in meta:
                self.threshold = float(meta["threshold.match"])
        self.id = _embedder_id(source, meta)
        shape = self._net.input_shape
        if len(shape) != 4 or not shape[2] or not shape[3]:
            raise ValueError(f"expected a recogniser with a fixed N x 3 x S x S input, got {shape}")
        self.crop_size = (shape[3], shape[2])
        self.template: Optional[np.ndarray] = None
        self.template_size: Tuple[int, int] = (112, 112)
        if meta is not None and "align.template" in meta:
            self.template = np.asarray(meta["align.template"], np.float32).reshape(-1, 2)
            self.template_size = tuple(int(v) for v in meta.get("align.template_size",
                                                                self.crop_size))
        self._batch_one = shape[0] == 1

    # id: str -- identifies the weights that made an embedding (a Gallery refuses another's):
    #   the .pface metadata "model.id" if set, else "sha256:" + 16 hex digits of the source
    #   ONNX file (from a converted file's provenance, so an ONNX model and its .pface share it).
    # threshold: Optional[float] -- the model file's calibrated cosine match threshold
    #   ("threshold.match"), None when the file has none.
    # template, template_size: the 5-point alignment template the model was trained with
    #   ("align.template", in a template_size frame), None for align()'s ArcFace default.

    @property
    def backend(self) -> str:
        return self._net.name

    def __call__(self, crops, color: str = "bgr") -> np.ndarray:
        """Embeds uint8 crops [N, S, S, 3] (or one [S, S, 3]) in ``color`` order.

        Returns:
            float32 [N, D], each row of unit length.
        """
        arr = crops
        if isinstance(arr, np.ndarray) and arr.ndim == 3:
            arr = arr[None]
        w, h = self.crop_size
        if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.ndim != 4 \
                or arr.shape[1:] != (h, w, 3):
            raise ValueError(f"expected uint8 crops [N, {h}, {w}, 3] from picoface.align, "
                             f"got {_validate.describe(crops)}")
        s = self.spec
        box = _core.letterbox(w, h, w, h, "none")
        tensors = [_core.preprocess(_validate.image(c, color), box, color, s.color, list(s.mean),
                                    list(s.std), "nchw", "float32", 1.0, 0, "bilinear",
                                    [0.0, 0.0, 0.0]) for c in arr]
        if not tensors:
            return np.zeros((0, 0), np.float32)
        batch = np.stack(tensors)
        if self._batch_one:
            out = np.concatenate([self._run(batch[i:i + 1]) for i in range(len(batch))])
        else:
            out = self._run(batch)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return (out / np.maximum(norms, 1e-12)).astype(np.float32)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        outputs = self._net.run(batch)
        first = outputs[self._net.output_names[0]]
        return np.asarray(first, dtype=np.float32).reshape(batch.shape[0], -1)


def _embedder_id(source, meta) -> str:
    if meta is not None:
        if meta.get("model.id"):
            return str(meta["model.id"])
        found = re.search(r"sha256 ([0-9a-f]{64})", str(meta.get("provenance", "")))
        if found:
            return "sha256:" + found.group(1)[:16]
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    return "sha256:" + hashlib.sha256(data).hexdigest()[:16]
