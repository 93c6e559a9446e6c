"""Face detection: preprocess (C++) -> network (backend) -> decode + NMS (C++)."""

import dataclasses
import math
import time
from typing import Optional

import numpy as np

from picoface import _core, _validate, weights
from picoface.backends import open_backend
from picoface.heads import get_head
from picoface.results import Faces

# With input_size=None the network sees the image at its own resolution, downscaled only
# when its longer side exceeds this (memory and time stay bounded on 4K frames).
MAX_AUTO_SIDE = 1920
# A larger network input is a mistake on an edge device (a 4096x4096 float input is 200 MB).
MAX_INPUT_SIDE = 4096
NMS_METHODS = ("greedy", "soft_linear", "soft_gaussian")


class FaceDetector:
    """Finds faces, their scores and 5 landmarks.

    Args:
        model: a shipped model's name (``picoface.weights.names()``; None: the default,
            "picoface-det-tiny"), or the path or bytes of a .pface detector (run by the
            native engine; it describes its own head and input convention) or of an ONNX
            detector (run by onnxruntime).
        head: the detector family, required for ONNX models, e.g. "yunet" or "scrfd"
            (see picoface.heads.HEADS).
        score_threshold: minimum score in [0, 1]. None: the model file's default, else the
            head's (0.5 for YuNet and SCRFD, 0.7 for Ultra-Light).
        nms_threshold: IoU in [0, 1] above which a lower-scored box is suppressed. None: the
            model file's default, else the head's (0.4; 0.3 for Ultra-Light).
        max_faces: keep at most this many faces (0 = all).
        nms_method: "greedy" (default), or soft-NMS (Bodla et al. 2017) "soft_linear" /
            "soft_gaussian", which decay overlapping scores instead of dropping boxes (faces
            whose decayed score falls below score_threshold are dropped).
        input_size: (width, height) of the network input; the image is resized into it
            keeping its aspect ratio (letterbox). A fixed-size model (e.g. Ultra-Light at
            320x240) only takes its own size. None: the model's fixed size, or for a
            dynamic model the image's own size padded to the head's stride multiple
            (downscaled when the longer side exceeds 1920).
        backend: "auto" (native for .pface, tflite for .tflite, onnxruntime for ONNX),
            "native", "onnxruntime" or "tflite" (ai-edge-litert or tflite-runtime; NHWC
            models get the input transposed).
        threads: backend threads (1 = one core, the edge-device baseline).

    Calls are thread-safe and release the GIL during compute.

    Raises:
        FileNotFoundError: model path does not exist.
        ValueError: any option out of range, or a model the backend cannot load.
    """

    def __init__(self, model=None, *, head: Optional[str] = None,
                 score_threshold: Optional[float] = None, nms_threshold: Optional[float] = None,
                 max_faces: int = 0, nms_method: str = "greedy",
                 input_size=None,
                 backend: str = "auto", threads: int = 1):
        if model is None:
            model = weights.DEFAULT_DETECTOR
        if weights.is_name(model):
            model = weights.path(model)
        # Checked before the model loads (a bad option fails fast); None resolves below.
        thresholds = {name: None if v is None else _validate.probability(v, name) for name, v in
                      (("score_threshold", score_threshold), ("nms_threshold", nms_threshold))}
        self.max_faces = _validate.count(max_faces, "max_faces")
        if nms_method not in NMS_METHODS:
            raise ValueError(f"expected nms_method one of {NMS_METHODS}, got {nms_method!r}")
        self.nms_method = nms_method
        self.input_size = _validate.size(input_size, "input_size")
        self.threads = _validate.count(threads, "threads")
        source = _validate.model_source(model, "detector model")
        self.model_name = "<bytes>" if isinstance(source, bytes) else str(source)
        self._net = open_backend(source, backend, self.threads)
        self.head = self._head_from(head)
        meta = getattr(self._net, "metadata", None) or {}
        self.score_threshold = thresholds["score_threshold"]
        if self.score_threshold is None:
            self.score_threshold = float(meta.get("threshold.score", self.head.score_threshold))
        self.nms_threshold = thresholds["nms_threshold"]
        if self.nms_threshold is None:
            self.nms_threshold = float(meta.get("threshold.nms", self.head.nms_threshold))
        shape = self._net.input_shape
        self._fixed = (shape[3], shape[2]) if len(shape) == 4 and shape[2] and shape[3] else None
        m = self.head.size_multiple
        if self.input_size is not None:
            w, h = self.input_size
            if max(w, h) > MAX_INPUT_SIDE:
                raise ValueError(f"expected input_size sides <= {MAX_INPUT_SIDE}, got {self.input_size}")
            if self._fixed:
                if self.input_size != self._fixed:
                    raise ValueError(f"expected input_size {self._fixed} for this fixed-size "
                                     f"model, got {self.input_size}")
            elif w % m or h % m:
                raise ValueError(f"expected input_size sides that are multiples of {m} for a "
                                 f"{self.head.name} head, got {self.input_size}")

    def _head_from(self, head):
        """The head named by the caller, else the one the model file describes; the model
        file's input convention (colour, mean/std) always wins over the head's defaults."""
        meta = getattr(self._net, "metadata", None)
        if meta is None:
            if head is None:
                raise ValueError("expected head= for an ONNX model (e.g. head='yunet')")
            return get_head(head)
        if meta.get("task") != "detect":
            raise ValueError(f"expected a detector model, got task {meta.get('task')!r}")
        spec = get_head(head if head is not None else meta.get("head.type"))
        if "head.anchor_sizes" in meta:
            flat, counts = list(meta["head.anchor_sizes"]), list(meta["head.anchor_counts"])
            if sum(counts) != len(flat) or len(counts) != len(meta.get("head.strides", spec.strides)):
                raise ValueError(f"model file has inconsistent anchors: counts {counts} for "
                                 f"{len(flat)} sizes")
            starts = [sum(counts[:i]) for i in range(len(counts))]
            changes = {"anchor_sizes": tuple(tuple(flat[a:a + n]) for a, n in zip(starts, counts))}
            if "head.variances" in meta and hasattr(spec, "variances"):  # anchor-delta heads
                changes["variances"] = tuple(meta["head.variances"])
            spec = dataclasses.replace(spec, **changes)
        return dataclasses.replace(
            spec, color=meta["input.color"], mean=tuple(meta["input.mean"]),
            std=tuple(meta["input.std"]),
            strides=tuple(meta.get("head.strides", spec.strides)),
            size_multiple=int(meta.get("input.multiple", spec.size_multiple)))

    @property
    def backend(self) -> str:
        return self._net.name

    def _letterbox(self, w: int, h: int) -> dict:
        target = self.input_size or self._fixed
        if target is not None:
            return _core.letterbox(w, h, target[0], target[1], "keep_aspect")
        m = self.head.size_multiple
        s = min(1.0, MAX_AUTO_SIDE / max(w, h))
        if s == 1.0:
            return _core.letterbox(w, h, math.ceil(w / m) * m, math.ceil(h / m) * m, "none")
        cw, ch = max(1, round(w * s)), max(1, round(h * s))
        return _core.letterbox(w, h, math.ceil(cw / m) * m, math.ceil(ch / m) * m, "keep_aspect")

    def __call__(self, image, color: str = "bgr") -> Faces:
        """Detects faces in ``image`` (uint8 HxWx3 in ``color`` order, or HxW grey)."""
        return self.detect(image, color=color)[0]

    def preprocess(self, image, color: str = "bgr"):
        """The network input for ``image``: (float32 [1, 3, H, W] tensor, letterbox dict
        mapping it back to the image), as :meth:`detect` computes it."""
        return self._preprocess(_validate.image(image, color), color)

    def _preprocess(self, img, color, quant=None):
        h, w = img.shape[:2]
        box = self._letterbox(w, h)
        head = self.head
        # An int8 model's input is written as int8 in the same pass (its QuantizeLinear's
        # parameters; the engine skips that step), a quarter of the bytes of float32.
        dtype, scale, zp = ("int8", quant.scale, quant.zero_point) if quant else ("float32", 1.0, 0)
        tensor = _core.preprocess(img, box, color, head.color, list(head.mean), list(head.std),
                                  "nchw", dtype, scale, zp, "auto", [0.0, 0.0, 0.0])[None]
        return tensor, box

    def detect(self, image, color: str = "bgr"):
        """Like calling the detector; also returns timings in ms
        ``{"preprocess", "inference", "postprocess"}``."""
        img = _validate.image(image, color)
        t0 = time.perf_counter()
        tensor, box = self._preprocess(img, color, getattr(self._net, "input_quant", None))
        head = self.head
        t1 = time.perf_counter()
        outputs = self._net.run(tensor)
        t2 = time.perf_counter()
        boxes, scores, landmarks = head.decode(outputs, box["dst_w"], box["dst_h"],
                                               self.score_threshold)
        boxes, scores, landmarks = _core.finish_detections(
            boxes, scores, landmarks, box, self.nms_threshold, self.nms_method, 0.5,
            self.score_threshold, 5000, self.max_faces)
        t3 = time.perf_counter()
        ms = {"preprocess": (t1 - t0) * 1e3, "inference": (t2 - t1) * 1e3,
              "postprocess": (t3 - t2) * 1e3}
        return Faces(boxes, scores, landmarks), ms
