"""Input checks shared by the public API: one place, one message style
("expected ..., got ...")."""

import numbers
from pathlib import Path

import numpy as np

# Largest image side accepted; beyond it a frame is almost surely a mistake (and its
# network input would need gigabytes).
MAX_IMAGE_SIDE = 16384
COLORS = ("bgr", "rgb", "gray")


def describe(x) -> str:
    if isinstance(x, np.ndarray):
        return f"{x.dtype} {x.shape}"
    return type(x).__name__


def image(img, color: str) -> np.ndarray:
    """Checks an image and returns an array the C++ core reads in place.

    Accepted: uint8 HxWx3 (``color`` "bgr" or "rgb") or HxW / HxWx1 (``color`` "gray").
    Rows may be strided (a crop view of a larger frame is read without copying); arrays
    whose pixels are not contiguous within a row (e.g. a transposed view) are copied once.
    """
    if color not in COLORS:
        raise ValueError(f"expected color one of {COLORS}, got {color!r}")
    channels = 1 if color == "gray" else 3
    want = "HxW or HxWx1" if channels == 1 else "HxWx3"
    if not isinstance(img, np.ndarray):
        raise ValueError(f"expected a numpy uint8 {want} {color} image, got {describe(img)}")
    ok_shape = (img.ndim == 3 and img.shape[2] == channels) or (channels == 1 and img.ndim == 2)
    if img.dtype != np.uint8 or not ok_shape:
        raise ValueError(f"expected uint8 {want} {color} image, got {describe(img)}")
    h, w = img.shape[:2]
    if h < 1 or w < 1:
        raise ValueError(f"expected a non-empty {want} image, got shape {img.shape}")
    if h > MAX_IMAGE_SIDE or w > MAX_IMAGE_SIDE:
        raise ValueError(
            f"expected image sides <= {MAX_IMAGE_SIDE}, got {w}x{h} (width x height)")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    item = channels
    if img.strides[-1] != (1 if img.ndim == 3 else item) or (
            img.ndim == 3 and img.strides[1] != item) or img.strides[0] < w * item:
        img = np.ascontiguousarray(img)
    return img


def probability(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
        raise ValueError(f"expected {name} in [0, 1], got {value!r}")
    return float(value)


def count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"expected {name} a non-negative integer, got {value!r}")
    return int(value)


def size(value, name: str):
    """None or (width, height) of positive ints."""
    if value is None:
        return None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value, value)
    try:
        w, h = value
    except (TypeError, ValueError):
        raise ValueError(f"expected {name} as (width, height), got {value!r}") from None
    for v in (w, h):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or not 1 <= v <= MAX_IMAGE_SIDE:
            raise ValueError(f"expected {name} sides as integers in 1..{MAX_IMAGE_SIDE}, got {value!r}")
    return int(w), int(h)


def points(landmarks, name: str = "landmarks") -> np.ndarray:
    """float32 N x P x 2 from a P x 2 or N x P x 2 array-like; finite values only."""
    try:
        arr = np.asarray(landmarks, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError(f"expected {name} as an N x P x 2 float array, got {describe(landmarks)}") from None
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[2] != 2 or arr.shape[1] < 2:
        raise ValueError(f"expected {name} as P x 2 or N x P x 2 (P >= 2), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"expected finite {name}, got NaN or inf")
    return np.ascontiguousarray(arr)


def model_source(model, what: str):
    """A path (str/Path) that must exist, or the model's bytes."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        if len(model) == 0:
            raise ValueError(f"expected {what} bytes, got an empty buffer")
        return bytes(model)
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"{what} file not found: {str(path)!r}")
        return path
    raise ValueError(f"expected {what} as a path or bytes, got {describe(model)}")
