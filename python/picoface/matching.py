"""Embedding comparison."""

import numpy as np

from picoface import _core


def _rows(x, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError(f"expected {name} as a float array [D] or [N, D], got {type(x).__name__}") from None
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise ValueError(f"expected {name} as [D] or [N, D] with D >= 1, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"expected finite {name}, got NaN or inf")
    return arr


def cosine(a, b):
    """Cosine similarity of embeddings.

    Args:
        a: [D] or [M, D] embeddings (need not be normalised).
        b: [D] or [N, D] embeddings of the same D.

    Returns:
        A float when both are 1-D, else float32 [M, N] (a 1-D side counts as one row).
        A zero vector has similarity 0 with everything.

    Raises:
        ValueError: on mismatched dimensions, wrong shapes or non-finite values.
    """
    ra, rb = _rows(a, "a"), _rows(b, "b")
    if ra.shape[1] != rb.shape[1]:
        raise ValueError(f"expected embeddings of equal dimension, got {ra.shape[1]} and {rb.shape[1]}")
    out = _core.cosine_matrix(ra, rb)
    if np.ndim(a) == 1 and np.ndim(b) == 1:
        return float(out[0, 0])
    return out
