"""Dense face landmarks: the crop and output conventions of landmark models, the
:class:`FaceLandmarker` that runs them on detected faces, and the NME metric.

ONNX landmark models carry none of the convention; ``picoface convert --task landmarks
--preset NAME`` writes it into the .pface file (keys ``landmarks.*`` and ``crop.*``,
validated by the C++ loader).
"""

from dataclasses import dataclass
from typing import Tuple

import numpy as np

from picoface import _core, _validate
from picoface.backends import open_backend
from picoface.results import Faces

CROP_POLICIES = ("square_max", "square_min", "box")
COORDS = ("unit", "pixels")
# Outer eye corners of the iBUG 300-W 68-point scheme (zero-based): the 300-W
# "inter-ocular" normaliser of NME.
OUTER_EYE_CORNERS_68 = (36, 45)


@dataclass(frozen=True)
class LandmarkSpec:
    """How a landmark model wants its crop and what its output means.

    The crop is centred on the face box's centre; ``crop_policy`` "square_max" /
    "square_min" makes it a square of side max / min(w, h) * ``crop_scale``, "box" scales the
    box itself; it is then resized to the model's input size, zero-padded outside the image.
    The output is ``num_points`` (x, y) pairs, in ``coords`` "unit" (fractions of the crop,
    [0, 1] inside it) or "pixels" (of the network input).
    """

    color: str
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    num_points: int
    coords: str
    crop_policy: str
    crop_scale: float


PRESETS = {
    # cunjian/pytorch_face_landmark PFLD (68 points, iBUG 300-W order), from its ONNX demo
    # test_camera_pfld_onnx.py: Ultra-Light box, square of side max(w, h) * 1.1 on the box
    # centre, zero padding, RGB, ToTensor (x / 255, no mean), points as fractions of the crop
    # (BBox.reprojectLandmark). The demo resizes the crop to 56 and again to 112; one resize
    # to 112 is used here (sharper input, same geometry). picoface-lmk68 (models/landmarker.py)
    # is trained to the same convention.
    "pfld": LandmarkSpec("rgb", (0.0, 0.0, 0.0), (255.0, 255.0, 255.0), num_points=68,
                         coords="unit", crop_policy="square_max", crop_scale=1.1),
}


def boxes_of(faces) -> np.ndarray:
    """float32 [N, 4] (x1, y1, x2, y2) from a :class:`Faces` or an [N, 4] / [4] array-like;
    finite, with x2 > x1 and y2 > y1."""
    if isinstance(faces, Faces):
        arr = faces.boxes
    else:
        try:
            arr = np.asarray(faces, dtype=np.float32)
        except (TypeError, ValueError):
            raise ValueError(f"expected faces as a picoface.Faces or an [N, 4] box array, got "
                             f"{_validate.describe(faces)}") from None
        if arr.size == 0:  # [] or [0, 4]: no faces
            arr = arr.reshape(0, 4)
        elif arr.ndim == 1 and arr.shape[0] == 4:
            arr = arr[None]
        if arr.ndim != 2 or arr.shape[1] != 4:
            raise ValueError(f"expected faces as a picoface.Faces or an [N, 4] (x1, y1, x2, y2) box "
                             f"array, got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise ValueError("expected finite face boxes, got NaN or inf")
    bad = np.flatnonzero((arr[:, 2] <= arr[:, 0]) | (arr[:, 3] <= arr[:, 1]))
    if bad.size:
        raise ValueError(f"expected boxes with x2 > x1 and y2 > y1, got {arr[bad[0]].tolist()} "
                         f"(face {int(bad[0])})")
    return arr


def crop_windows(boxes: np.ndarray, policy: str, scale: float) -> np.ndarray:
    """The crop of each box under ``policy`` / ``scale`` (see :class:`LandmarkSpec`), as
    float32 [N, 4] (x0, y0, width, height) in image pixels."""
    if policy not in CROP_POLICIES:
        raise ValueError(f"expected crop policy one of {CROP_POLICIES}, got {policy!r}")
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    if policy == "box":
        sw, sh = w * scale, h * scale
    else:
        sw = sh = (np.maximum(w, h) if policy == "square_max" else np.minimum(w, h)) * scale
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    return np.stack([cx - sw / 2, cy - sh / 2, sw, sh], 1).astype(np.float32)


def crop_faces(image: np.ndarray, windows: np.ndarray, size: int) -> np.ndarray:
    """uint8 [N, size, size, C] crops of square ``windows`` (from :func:`crop_windows`),
    bilinear, zero outside the image. Crop pixel (u, v) samples image point
    (x0 + u * side / size, y0 + v * side / size), as cv2.warpAffine does.

    The SIMD warp of :func:`picoface.align` does the work: the window's two opposite
    corners mapped onto the crop's are an exact similarity."""
    win = np.asarray(windows, np.float32).reshape(-1, 4)
    if not np.allclose(win[:, 2], win[:, 3], rtol=1e-5):
        raise ValueError("expected square crop windows (crop policy square_max or square_min)")
    corners = np.stack([win[:, :2], win[:, :2] + win[:, 2:]], 1)
    target = np.float32([[0, 0], [size, size]])
    return _core.align(image, np.ascontiguousarray(corners), target, size, size, size, size, 0)


def nme(pred, truth, norm: str = "inter_ocular") -> np.ndarray:
    """Normalised mean error of each face: the mean point-to-point distance over the
    normaliser, float64 [N].

    Args:
        pred: [N, P, 2] or [P, 2] points.
        truth: same shape.
        norm: "inter_ocular": distance between the outer eye corners (points 36 and 45 of
            the 68-point scheme; the 300-W convention); "inter_pupil": between the eye
            centres (means of points 36-41 and 42-47).

    Raises:
        ValueError: mismatched shapes, not 68 points, an unknown norm, or a face whose
            normaliser is zero.
    """
    p = np.asarray(pred, np.float64)
    t = np.asarray(truth, np.float64)
    if p.ndim == 2:
        p = p[None]
    if t.ndim == 2:
        t = t[None]
    if p.shape != t.shape or p.ndim != 3 or p.shape[2] != 2:
        raise ValueError(f"expected pred and truth of the same shape [N, P, 2], got {p.shape} "
                         f"and {t.shape}")
    if p.shape[1] != 68:
        raise ValueError(f"expected 68-point landmarks for {norm} NME, got {p.shape[1]} points")
    if norm == "inter_ocular":
        a, b = t[:, OUTER_EYE_CORNERS_68[0]], t[:, OUTER_EYE_CORNERS_68[1]]
    elif norm == "inter_pupil":
        a, b = t[:, 36:42].mean(1), t[:, 42:48].mean(1)
    else:
        raise ValueError(f"expected norm 'inter_ocular' or 'inter_pupil', got {norm!r}")
    d = np.linalg.norm(a - b, axis=1)
    if (d <= 0).any():
        raise ValueError(f"expected distinct eye points in truth, got a zero {norm} distance "
                         f"(face {int(np.flatnonzero(d <= 0)[0])})")
    return np.linalg.norm(p - t, axis=2).mean(1) / d


class FaceLandmarker:
    """Dense landmarks of detected faces: crop each face as the model file says, run the
    model, map its points back into the image.

    Args:
        model: path or bytes of a .pface landmark model (its ``landmarks.*`` / ``crop.*``
            metadata sets the convention and overrides ``preset``), or of an ONNX one taking
            N x 3 x S x S.
        preset: convention of an ONNX model: a name of :data:`PRESETS` or a
            :class:`LandmarkSpec`.
        backend: "auto", "native", "onnxruntime" or "tflite" (as :class:`FaceEmbedder`).
        threads: backend threads.

    Raises:
        FileNotFoundError: model path does not exist.
        ValueError: bad options, a model of another task, or a crop policy other than a
            square one.
    """

    def __init__(self, model, *, preset="pfld", backend: str = "auto", threads: int = 1):
        if isinstance(preset, LandmarkSpec):
            self.spec = preset
        elif preset in PRESETS:
            self.spec = PRESETS[preset]
        else:
            raise ValueError(f"expected preset one of {sorted(PRESETS)}, got {preset!r}")
        source = _validate.model_source(model, "landmark model")
        self._net = open_backend(source, backend, _validate.count(threads, "threads"))
        meta = getattr(self._net, "metadata", None)
        if meta is not None:
            if meta.get("task") != "landmarks":
                raise ValueError(f"expected a landmark model, got task {meta.get('task')!r}")
            self.spec = LandmarkSpec(meta["input.color"], tuple(meta["input.mean"]),
                                     tuple(meta["input.std"]), int(meta["landmarks.points"]),
                                     meta["landmarks.coords"], meta["crop.policy"],
                                     float(meta["crop.scale"]))
        if self.spec.crop_policy == "box":
            raise ValueError("expected a square crop policy (square_max or square_min), got 'box'")
        if self.spec.coords not in COORDS:
            raise ValueError(f"expected landmark coords one of {COORDS}, got {self.spec.coords!r}")
        shape = self._net.input_shape
        if len(shape) != 4 or not shape[2] or shape[2] != shape[3]:
            raise ValueError(f"expected a landmark model with a fixed N x 3 x S x S input, got {shape}")
        self.crop_size = int(shape[3])
        self._batch_one = shape[0] == 1

    @property
    def backend(self) -> str:
        return self._net.name

    @property
    def num_points(self) -> int:
        return self.spec.num_points

    def __call__(self, image, faces, color: str = "bgr") -> np.ndarray:
        """Landmarks of each face.

        Args:
            image: uint8 HxWx3 in ``color`` order ("bgr" or "rgb").
            faces: a :class:`Faces` (from :class:`FaceDetector`) or float [N, 4] boxes
                (x1, y1, x2, y2) in image pixels.
            color: channel order of ``image``.

        Returns:
            float32 [N, P, 2] (x, y) in image pixels, in the model's point order (iBUG
            300-W for the 68-point models); [0, P, 2] for no faces.

        Raises:
            ValueError: a bad image, colour or box array.
        """
        if color == "gray":
            raise ValueError("expected color 'bgr' or 'rgb' for landmarks, got 'gray'")
        img = _validate.image(image, color)
        boxes = boxes_of(faces)
        n, s, spec = len(boxes), self.crop_size, self.spec
        if n == 0:
            return np.zeros((0, spec.num_points, 2), np.float32)
        windows = crop_windows(boxes, spec.crop_policy, spec.crop_scale)
        crops = crop_faces(img, windows, s)
        box = _core.letterbox(s, s, s, s, "none")
        batch = np.stack([_core.preprocess(c, box, color, spec.color, list(spec.mean), list(spec.std),
                                           "nchw", "float32", 1.0, 0, "bilinear", [0.0, 0.0, 0.0])
                          for c in crops])
        if self._batch_one:
            out = np.concatenate([self._run(batch[i:i + 1]) for i in range(n)])
        else:
            out = self._run(batch)
        if out.shape[1] != 2 * spec.num_points:
            raise ValueError(f"expected {2 * spec.num_points} outputs per face from the model, "
                             f"got {out.shape[1]}")
        pts = out.reshape(n, spec.num_points, 2)
        if spec.coords == "pixels":
            pts = pts / np.float32(s)
        return (pts * windows[:, None, 2:] + windows[:, None, :2]).astype(np.float32)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        outputs = self._net.run(batch)
        first = outputs[self._net.output_names[0]]
        return np.asarray(first, dtype=np.float32).reshape(batch.shape[0], -1)
