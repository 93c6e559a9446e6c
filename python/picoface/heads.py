"""Detector head specifications: how a network wants its input and how its outputs decode.

Until the native model format (issue #3) carries this in the model file, ONNX models are
described by naming their head. Decoding, NMS and the mapping back to image pixels run in
the C++ core.
"""

import functools
from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np

from picoface import _core


@dataclass(frozen=True)
class HeadSpec:
    """Input convention and output decoding of one detector family."""

    name: str
    color: str  # channel order the network expects: "bgr" or "rgb"
    mean: Tuple[float, float, float]  # per network channel, 0..255 units
    std: Tuple[float, float, float]
    strides: Tuple[int, ...]
    size_multiple: int  # dynamic inputs must be a multiple of this
    # Defaults written into converted model files, from each family's published demo.
    score_threshold: float = 0.5
    nms_threshold: float = 0.4
    # Square anchor sizes in input pixels, one tuple per stride (anchor-based heads only).
    anchor_sizes: Tuple[Tuple[float, ...], ...] = ()

    def decode(self, outputs: Dict[str, np.ndarray], input_w: int, input_h: int,
               score_threshold: float):
        """Raw network outputs -> (boxes [N,4], scores [N], landmarks [N,5,2]) in
        network-input pixels, before NMS."""
        raise NotImplementedError


@functools.lru_cache(maxsize=16)
def _anchor_points(input_w: int, input_h: int, strides: Tuple[int, ...], per_cell: int) -> np.ndarray:
    """Anchor points of a frame size, computed once per size: a camera stream asks for the
    same few sizes every frame."""
    points = _core.anchor_points(input_w, input_h, list(strides), per_cell, 0.0)
    points.setflags(write=False)
    return points


def _output(outputs, name):
    if name not in outputs:
        raise ValueError(f"model has no output {name!r}; is it really this head? "
                         f"outputs: {sorted(outputs)}")
    return outputs[name]


def _level_outputs(outputs, prefix, strides, width):
    parts = [_output(outputs, f"{prefix}_{s}").reshape(-1, width) for s in strides]
    return np.ascontiguousarray(np.concatenate(parts, axis=0), dtype=np.float32)


@dataclass(frozen=True)
class YuNetHead(HeadSpec):
    """YuNet (libfacedetection, Wu et al. 2023): anchor-free, one point per cell at strides
    8/16/32, outputs cls_S, obj_S, bbox_S (centre offset and log-size in stride units) and
    kps_S (5 points in stride units from the cell corner)."""

    def decode(self, outputs, input_w, input_h, score_threshold):
        points = _anchor_points(input_w, input_h, tuple(self.strides), 1)
        cls = _level_outputs(outputs, "cls", self.strides, 1)
        obj = _level_outputs(outputs, "obj", self.strides, 1)
        bbox = _level_outputs(outputs, "bbox", self.strides, 4)
        kps = _level_outputs(outputs, "kps", self.strides, 10)
        if cls.shape[0] != points.shape[0]:
            raise ValueError(f"model produced {cls.shape[0]} cells for a {input_w}x{input_h} input, "
                             f"expected {points.shape[0]} (strides {self.strides})")
        return _core.decode_yunet(points, cls, obj, bbox, kps, 5, score_threshold)


@dataclass(frozen=True)
class ScrfdHead(HeadSpec):
    """SCRFD (Guo et al. 2021) with keypoints, as exported by insightface: anchor-free with
    2 points per cell at strides 8/16/32, outputs in order scores (sigmoid applied) for each
    stride, then box distances (l, t, r, b in stride units), then 5 keypoints."""

    per_cell: int = 2

    def decode(self, outputs, input_w, input_h, score_threshold):
        outs = list(outputs.values())
        n = len(self.strides)
        if len(outs) != 3 * n:
            raise ValueError(f"expected {3 * n} outputs for a {self.name} head, got {len(outs)}")
        cat = lambda group, width: np.ascontiguousarray(np.concatenate(
            [o.reshape(-1, width) for o in group]), dtype=np.float32)
        points = _anchor_points(input_w, input_h, tuple(self.strides), self.per_cell)
        score, dist, kps = cat(outs[:n], 1), cat(outs[n:2 * n], 4), cat(outs[2 * n:], 10)
        if score.shape[0] != points.shape[0]:
            raise ValueError(f"model produced {score.shape[0]} anchors for a {input_w}x{input_h} "
                             f"input, expected {points.shape[0]}")
        return _core.decode_distance(points, score, dist, kps, 5, score_threshold)


@dataclass(frozen=True)
class UltraFaceHead(HeadSpec):
    """Ultra-Light-Fast-Generic-Face-Detector-1MB (Linzaer 2019; RFB and slim): SSD-style,
    anchors of ``anchor_sizes`` at strides 8/16/32/64, but the published exports decode the
    boxes against their priors inside the graph, so those exports have a fixed input size.
    Outputs ``scores`` [1, N, 2] (softmax: background, face) and ``boxes`` [1, N, 4] corners
    as fractions of the input. No landmarks (zeros)."""

    def decode(self, outputs, input_w, input_h, score_threshold):
        scores = _output(outputs, "scores").reshape(-1, 2)
        boxes = _output(outputs, "boxes").reshape(-1, 4)
        if boxes.shape[0] != scores.shape[0]:
            raise ValueError(f"model produced {scores.shape[0]} scores for {boxes.shape[0]} boxes")
        face = np.ascontiguousarray(scores[:, 1], dtype=np.float32)
        return _core.decode_unit_boxes(face, np.ascontiguousarray(boxes, dtype=np.float32), 5,
                                       float(input_w), float(input_h), score_threshold)


@functools.lru_cache(maxsize=16)
def _anchor_boxes(input_w: int, input_h: int, strides: Tuple[int, ...],
                  sizes: Tuple[Tuple[float, ...], ...]) -> np.ndarray:
    """Anchor boxes of a frame size, computed once per size (see ``_anchor_points``)."""
    boxes = _core.anchor_boxes(input_w, input_h, list(strides), [list(s) for s in sizes], 0.5)
    boxes.setflags(write=False)
    return boxes


@dataclass(frozen=True)
class AnchorDeltaHead(HeadSpec):
    """SSD-style anchor boxes and deltas, as exported by tools/export_retinaface.py
    (RetinaFace, Deng et al. 2020) and tools/export_extd.py (EXTD, Yoo et al. 2019): square
    anchors of ``anchor_sizes[level]`` pixels per cell of each stride, centred at (col + 0.5,
    row + 0.5) * stride, ordered level by level, row-major, sizes innermost; outputs
    ``scores`` [1, P] (face probability), ``boxes`` [1, P, 4] and, with ``landmarks``,
    ``landmarks`` [1, P, 10], raw deltas decoded with ``variances``. Without landmarks
    the 5 points come out as zeros."""

    variances: Tuple[float, float] = (0.1, 0.2)
    landmarks: bool = True

    def decode(self, outputs, input_w, input_h, score_threshold):
        names = ("scores", "boxes") + (("landmarks",) if self.landmarks else ())
        missing = [k for k in names if k not in outputs]
        if missing:
            raise ValueError(f"model has no output {missing[0]!r}; is it really this head? "
                             f"outputs: {sorted(outputs)}")
        anchors = _anchor_boxes(input_w, input_h, tuple(self.strides), tuple(self.anchor_sizes))
        flat = lambda a, width: np.ascontiguousarray(a.reshape(-1, width), dtype=np.float32)
        score, loc = flat(outputs["scores"], 1).ravel(), flat(outputs["boxes"], 4)
        landm = flat(outputs["landmarks"], 10) if self.landmarks else None
        if score.shape[0] != anchors.shape[0]:
            raise ValueError(f"model produced {score.shape[0]} anchors for a {input_w}x{input_h} "
                             f"input, expected {anchors.shape[0]}")
        return _core.decode_anchor_deltas(anchors, score, loc, landm, 5, self.variances[0],
                                          self.variances[1], score_threshold)


HEADS = {
    "yunet": YuNetHead("yunet", color="bgr", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                       strides=(8, 16, 32), size_multiple=32),
    "scrfd": ScrfdHead("scrfd", color="rgb", mean=(127.5, 127.5, 127.5), std=(128.0, 128.0, 128.0),
                       strides=(8, 16, 32), size_multiple=32),
    # Ultra-Light's demos use score 0.7 and IoU 0.3 (fewer duplicates of large faces).
    "ultraface": UltraFaceHead("ultraface", color="rgb", mean=(127.0, 127.0, 127.0),
                               std=(128.0, 128.0, 128.0), strides=(8, 16, 32, 64),
                               size_multiple=64, score_threshold=0.7, nms_threshold=0.3,
                               anchor_sizes=((10, 16, 24), (32, 48), (64, 96), (128, 192, 256))),
    # Conventions of the public weights, mirrored from models/retinaface.py and models/extd.py
    # (tests check they agree): RetinaFace-mnet0.25 from Face-Detector-1MB-with-landmark.
    "retinaface": AnchorDeltaHead("retinaface", color="bgr", mean=(104.0, 117.0, 123.0),
                                  std=(1.0, 1.0, 1.0), strides=(8, 16, 32), size_multiple=32,
                                  anchor_sizes=((10.0, 20.0), (32.0, 64.0), (128.0, 256.0))),
    # EXTD: six levels, one anchor of 4x the stride per cell; 128 = the coarsest stride.
    "extd": AnchorDeltaHead("extd", color="rgb", mean=(123.0, 117.0, 104.0), std=(1.0, 1.0, 1.0),
                            strides=(4, 8, 16, 32, 64, 128), size_multiple=128,
                            anchor_sizes=((16.0,), (32.0,), (64.0,), (128.0,), (256.0,), (512.0,)),
                            landmarks=False),
}


def get_head(head) -> HeadSpec:
    if isinstance(head, HeadSpec):
        return head
    if head not in HEADS:
        raise ValueError(f"expected head one of {sorted(HEADS)}, got {head!r} "
                         "(ONNX models carry no head description: name it)")
    return HEADS[head]
