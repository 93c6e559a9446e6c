"""int8 arithmetic of picoface's quantisation scheme, in numpy (the C++ kernels compute the
same numbers; see cpp/include/picoface/kernels.h): activation and weight scales, ONNX
QuantizeLinear / DequantizeLinear."""

import dataclasses
from typing import Optional

import numpy as np



@dataclasses.dataclass(frozen=True)
class QuantParams:
    """Per-tensor int8 activation parameters: real = scale * (q - zero_point)."""

    scale: float
    zero_point: int


def activation_params(lo: float, hi: float) -> QuantParams:
    """Asymmetric int8 parameters covering [lo, hi] and 0 (so zero padding is exact).

    A constant-zero range gets scale 1.0 (a zero scale would divide by zero downstream).
    """
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"expected a finite activation range, got [{lo}, {hi}]")
    scale = np.float32((hi - lo) / 255.0)
    if scale == 0.0 or not np.isfinite(scale):
        scale = np.float32(1.0)
    zp = int(np.clip(np.rint(-128.0 - lo / float(scale)), -128, 127))
    return QuantParams(float(scale), zp)


def weight_scales(w: np.ndarray, per_channel: bool = True) -> np.ndarray:
    """Symmetric int8 scales of conv weights [M, ...]: max|w| / 127 per output channel (or one
    for the tensor), float32; an all-zero channel gets 1.0."""
    w = np.asarray(w, np.float32)
    amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1) if per_channel else np.array([np.abs(w).max()])
    scales = (amax / np.float32(127.0)).astype(np.float32)
    scales[scales == 0] = 1.0
    return scales


def _broadcast(ndim: int, scale, zero_point, axis: Optional[int]):
    """float32 scale and zero point shaped to broadcast along ``axis`` of an ndim array (as
    they are when ``axis`` is None: a scalar or per-tensor)."""
    scale = np.asarray(scale, np.float32)
    zp = np.asarray(zero_point, np.float32)
    if axis is not None:
        shape = [1] * ndim
        shape[axis] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return scale, zp


def quantize(x: np.ndarray, scale, zero_point=0, axis: Optional[int] = None,
             lo: int = -128, hi: int = 127) -> np.ndarray:
    """ONNX QuantizeLinear to int8: saturate(round_half_even(x / scale) + zero_point), in
    float32 as the spec and onnxruntime compute it; per axis when ``axis`` is given."""
    x = np.asarray(x, np.float32)
    scale, zp = _broadcast(x.ndim, scale, zero_point, axis)
    q = np.rint(x / scale) + zp
    return np.clip(q, lo, hi).astype(np.int8)


def dequantize(q: np.ndarray, scale, zero_point=0, axis: Optional[int] = None) -> np.ndarray:
    """ONNX DequantizeLinear: (q - zero_point) * scale in float32."""
    q = np.asarray(q).astype(np.float32)
    scale, zp = _broadcast(q.ndim, scale, zero_point, axis)
    return ((q - zp) * scale).astype(np.float32)
