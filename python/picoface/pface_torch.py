"""A float .pface graph as a PyTorch module (the ``[export]`` extra), so that any model the
native engine runs — the project's own detectors and imported ones such as YuNet or SFace —
can be exported by litert-torch to TFLite and quantised there (``picoface quantize --format
tflite``): no ONNX -> TensorFlow converter is needed.

The module executes the graph's ops in file order with ONNX semantics (NCHW), the weights
as buffers. Integer shape arithmetic (Shape -> Gather -> Unsqueeze -> Concat -> Reshape, as
exporters write it) runs on Python ints, so a traced graph holds only the float ops and the
shapes of the traced input. Only the ops of :data:`OPS` are supported; a graph with others
is refused when the module is built, naming them.
"""

import math
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from picoface.quant_graph import load_graph

# Conv's fused activations (see cpp/include/picoface/engine.h); prelu takes its slope as input 3.
_ACTIVATIONS = {
    "none": lambda x, a, b: x,
    "relu": lambda x, a, b: F.relu(x),
    "leaky_relu": lambda x, a, b: F.leaky_relu(x, a),
    "sigmoid": lambda x, a, b: torch.sigmoid(x),
    "tanh": lambda x, a, b: torch.tanh(x),
    "hard_sigmoid": lambda x, a, b: torch.clamp(x * a + b, 0.0, 1.0),
    "hard_swish": lambda x, a, b: F.hardswish(x),
    "clip": lambda x, a, b: torch.clamp(x, a, b),
}


# Constant inputs that act as attributes (scales, bounds, shapes, axes, indices): kept as
# Python numbers so that tracing never reads a tensor's value (a data-dependent guard).
_STATIC_INPUTS = {"Resize": (1, 2, 3), "Clip": (1, 2), "Reshape": (1,), "Unsqueeze": (1,),
                  "Squeeze": (1,), "ReduceMean": (1,), "Gather": (1,)}


def _attr(op, name, default=None):
    return op.attrs.get(name, default)


def _pairs(op, name, default):
    v = _attr(op, name, default)
    if len(v) != 2:
        raise ValueError(f"{op.type} {op.outputs[0]!r}: expected 2-D {name}, got {list(v)}")
    return tuple(int(i) for i in v)


def _pad4(op, x, value=0.0):
    """ONNX pads [top, left, bottom, right] -> (x padded where asymmetric, symmetric padding)."""
    if str(_attr(op, "auto_pad", "NOTSET")) not in ("NOTSET", "VALID"):
        raise ValueError(f"{op.type} {op.outputs[0]!r}: expected explicit pads, got auto_pad "
                         f"{_attr(op, 'auto_pad')!r}")
    t, l, b, r = (int(p) for p in _attr(op, "pads", [0, 0, 0, 0]))
    if (t, l) == (b, r):
        return x, (t, l)
    return F.pad(x, (l, r, t, b), value=value), (0, 0)


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


class PfaceModule(nn.Module):
    """Runs a float .pface graph; ``forward(x)`` returns ``{output name: tensor}``.

    Args:
        blob: .pface bytes of a float model (quant.scheme "none").

    Raises:
        ValueError: an int8 model, more than one graph input, or ops outside :data:`OPS`.
    """

    def __init__(self, blob: bytes):
        super().__init__()
        graph = load_graph(blob)
        if graph.metadata.get("quant.scheme", "none") != "none":
            raise ValueError("expected a float .pface model, got quant.scheme "
                             f"{graph.metadata['quant.scheme']!r}")
        if len(graph.inputs) != 1:
            raise ValueError(f"expected a model with one input, got {len(graph.inputs)}")
        missing = sorted({op.type for op in graph.ops} - set(OPS))
        if missing:
            raise ValueError(f"the .pface -> PyTorch interpreter does not run {missing} (it runs "
                             f"{', '.join(sorted(OPS))})")
        self.metadata = graph.metadata
        self.input_name = graph.inputs[0]
        self.output_names = list(graph.outputs)
        self.ops = graph.ops
        static = {op.inputs[i] for op in graph.ops for i in _STATIC_INPUTS.get(op.type, ())
                  if i < len(op.inputs)}
        self._consts: Dict[str, object] = {}
        self._buffers_by_name: Dict[str, str] = {}
        for name, t in graph.tensors.items():
            if t.data is None:
                continue
            data = np.asarray(t.data)
            if t.scales is not None:  # float weights stored in int8: the engine dequantises them too
                scales = np.asarray(t.scales, np.float32)
                zeros = np.asarray(t.zero_points if t.zero_points is not None else 0, np.float32)
                shape = [1] * data.ndim
                if scales.size > 1:
                    shape[t.axis] = scales.size
                data = (data.astype(np.float32) - zeros.reshape(shape)) * scales.reshape(shape)
            if data.dtype.kind in "iub" or name in static:  # read at trace time: plain numbers
                self._consts[name] = data.tolist()
            else:
                key = f"c{len(self._buffers_by_name)}"
                self.register_buffer(key, torch.from_numpy(np.ascontiguousarray(data, np.float32)))
                self._buffers_by_name[name] = key

    def _value(self, env, name):
        if name is None:
            return None
        if name in env:
            return env[name]
        if name in self._buffers_by_name:
            return getattr(self, self._buffers_by_name[name])
        return self._consts[name]

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        env = {self.input_name: x}
        for op in self.ops:
            args = [self._value(env, i) for i in op.inputs]
            out = OPS[op.type](op, *args)
            if len(op.outputs) == 1:
                env[op.outputs[0]] = out
            else:
                env.update(zip(op.outputs, out))
        return {name: env[name] for name in self.output_names}


def _conv(op, x, w, b=None, slope=None):
    if w.dim() != 4:
        raise ValueError(f"Conv {op.outputs[0]!r}: expected a 2-D convolution, got weights {list(w.shape)}")
    x, padding = _pad4(op, x)
    y = F.conv2d(x, w, b, _pairs(op, "strides", [1, 1]), padding, _pairs(op, "dilations", [1, 1]),
                 int(_attr(op, "group", 1)))
    act = str(_attr(op, "activation", "none"))
    if act == "prelu":
        return F.prelu(y, slope.reshape(-1))
    if act not in _ACTIVATIONS:
        raise ValueError(f"Conv {op.outputs[0]!r}: unknown fused activation {act!r}")
    return _ACTIVATIONS[act](y, float(_attr(op, "activation_alpha", 0.0)),
                             float(_attr(op, "activation_beta", 0.0)))


def _pool(op, x, kind):
    if int(_attr(op, "ceil_mode", 0)) and kind == "avg" and any(_attr(op, "pads", [0])):
        raise ValueError(f"AveragePool {op.outputs[0]!r}: ceil_mode with pads is not supported")
    k, s = _pairs(op, "kernel_shape", None), _pairs(op, "strides", [1, 1])
    ceil = bool(int(_attr(op, "ceil_mode", 0)))
    if kind == "max":
        x, padding = _pad4(op, x, value=-math.inf)
        return F.max_pool2d(x, k, s, padding, ceil_mode=ceil)
    x, padding = _pad4(op, x)
    return F.avg_pool2d(x, k, s, padding, ceil_mode=ceil,
                        count_include_pad=bool(int(_attr(op, "count_include_pad", 0))))


def _resize(op, x, roi=None, scales=None, sizes=None):
    mode = str(_attr(op, "mode", "nearest"))
    transform = str(_attr(op, "coordinate_transformation_mode", "half_pixel"))
    if sizes is not None:
        size = [int(v) for v in sizes][2:]
        factors = None
    else:
        factors = [float(v) for v in scales][2:]
        size = None
    if mode == "nearest":
        # PyTorch's "nearest" is ONNX's asymmetric floor, the exporters' upsample.
        if transform != "asymmetric" or str(_attr(op, "nearest_mode", "round_prefer_floor")) != "floor":
            raise ValueError(f"Resize {op.outputs[0]!r}: nearest runs asymmetric/floor only, got "
                             f"{transform}/{_attr(op, 'nearest_mode')}")
        return F.interpolate(x, size=size, scale_factor=factors, mode="nearest")
    if mode == "linear" and transform in ("half_pixel", "pytorch_half_pixel", "align_corners"):
        return F.interpolate(x, size=size, scale_factor=factors, mode="bilinear",
                             align_corners=transform == "align_corners")
    raise ValueError(f"Resize {op.outputs[0]!r}: mode {mode}/{transform} is not supported")


def _gather(op, data, index):
    if not isinstance(data, torch.Tensor):  # shape arithmetic on ints
        return [data[i] for i in index] if isinstance(index, list) else data[index]
    axis = _axis(int(_attr(op, "axis", 0)), data.dim())
    idx = torch.as_tensor(index, dtype=torch.long)
    picked = torch.index_select(data, axis, idx.reshape(-1))
    return picked.reshape(list(data.shape[:axis]) + list(idx.shape) + list(data.shape[axis + 1:]))


def _unsqueeze(op, x, axes=None):
    axes = axes if axes is not None else _attr(op, "axes")
    if isinstance(x, int):  # a scalar of shape arithmetic -> a 1-element shape
        return [x]
    for a in sorted(_axis(int(a), x.dim() + len(axes)) for a in axes):
        x = x.unsqueeze(a)
    return x


def _squeeze(op, x, axes=None):
    axes = axes if axes is not None else _attr(op, "axes")
    if axes is None:
        return x.squeeze()
    for a in sorted((_axis(int(a), x.dim()) for a in axes), reverse=True):
        x = x.squeeze(a)
    return x


def _concat(op, *parts):
    if all(isinstance(p, torch.Tensor) for p in parts):
        return torch.cat(parts, int(_attr(op, "axis")))
    out: List[int] = []
    for p in parts:  # shape arithmetic on ints
        out.extend(p if isinstance(p, list) else [p])
    return out


def _reshape(op, x, shape):
    # ONNX: 0 copies the input's dimension (allowzero = 0, the exporters' default).
    return x.reshape([x.shape[i] if int(d) == 0 else int(d) for i, d in enumerate(shape)])


def _flatten(op, x):
    axis = _axis(int(_attr(op, "axis", 1)), x.dim())
    return x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)


def _gemm(op, a, b, c=None):
    if int(_attr(op, "transA", 0)):
        a = a.t()
    if not int(_attr(op, "transB", 0)):
        b = b.t()
    y = F.linear(a, b) * float(_attr(op, "alpha", 1.0))
    return y if c is None else y + c * float(_attr(op, "beta", 1.0))


def _clip(op, x, lo=None, hi=None):
    lo = float(lo) if lo is not None else _attr(op, "min")
    hi = float(hi) if hi is not None else _attr(op, "max")
    return torch.clamp(x, lo, hi)


def _prelu(op, x, slope):
    if slope.numel() == x.shape[1] or slope.numel() == 1:
        return F.prelu(x, slope.reshape(-1))
    return torch.where(x >= 0, x, x * slope)


def _reduce_mean(op, x, axes=None):
    axes = axes if axes is not None else _attr(op, "axes")
    return torch.mean(x, dim=[int(a) for a in axes], keepdim=bool(int(_attr(op, "keepdims", 1))))


OPS = {
    "Conv": _conv,
    "Add": lambda op, a, b: a + b,
    "Sub": lambda op, a, b: a - b,
    "Mul": lambda op, a, b: a * b,
    "Div": lambda op, a, b: a / b,
    "Relu": lambda op, x: F.relu(x),
    "Sigmoid": lambda op, x: torch.sigmoid(x),
    "Tanh": lambda op, x: torch.tanh(x),
    "LeakyRelu": lambda op, x: F.leaky_relu(x, float(_attr(op, "alpha", 0.01))),
    "HardSigmoid": lambda op, x: torch.clamp(x * float(_attr(op, "alpha", 0.2))
                                             + float(_attr(op, "beta", 0.5)), 0.0, 1.0),
    "HardSwish": lambda op, x: F.hardswish(x),
    "Clip": _clip,
    "PRelu": _prelu,
    "MaxPool": lambda op, x: _pool(op, x, "max"),
    "AveragePool": lambda op, x: _pool(op, x, "avg"),
    "GlobalAveragePool": lambda op, x: torch.mean(x, dim=(2, 3), keepdim=True),
    "ReduceMean": _reduce_mean,
    "BatchNormalization": lambda op, x, scale, bias, mean, var: F.batch_norm(
        x, mean, var, scale, bias, False, 0.0, float(_attr(op, "epsilon", 1e-5))),
    "Resize": _resize,
    "Concat": _concat,
    "Transpose": lambda op, x: x.permute([int(p) for p in _attr(op, "perm")]),
    "Reshape": _reshape,
    "Flatten": _flatten,
    "Gemm": _gemm,
    "MatMul": lambda op, a, b: torch.matmul(a, b),
    "Softmax": lambda op, x: F.softmax(x, _axis(int(_attr(op, "axis", -1)), x.dim())),
    "Shape": lambda op, x: [int(d) for d in x.shape],
    "Gather": _gather,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Identity": lambda op, x: x,
    "Dropout": lambda op, x, *rest: x,
}


def input_shape(module: PfaceModule, size: Optional[Sequence[int]] = None) -> List[int]:
    """[1, 3, H, W] of the module's input: the model file's fixed size, else ``size`` (W, H)."""
    meta = module.metadata
    if meta.get("input.size_policy") == "fixed":
        w, h = meta["input.size"]
    elif size is not None:
        w, h = size
    else:
        raise ValueError("expected an input size (width, height) for a model of dynamic input size")
    return [1, 3, int(h), int(w)]
