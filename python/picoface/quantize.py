"""Native INT8 post-training quantisation: float .pface (or ONNX) -> int8 .pface.

The float model runs on the native engine over calibration images, read through the
model's own preprocessing, and records the range of every Conv input and output. Convs
then become ONNX ``QLinearConv`` ops on int8 tensors in picoface's scheme (see
cpp/include/picoface/kernels.h and engine.h):

* weights int8, symmetric (zero point 0) per output channel (or per tensor);
* activations int8, asymmetric per tensor: ``real = scale * (q - zero_point)``;
* bias int32 at scale ``x_scale * w_scale[m]``;
* relu / clip fused into the requantisation clamp.

``QuantizeLinear`` starts each int8 region, ``MaxPool`` runs on int8 (exact), and
``DequantizeLinear`` feeds every float consumer (Add, Resize, heads, graph outputs).
"""

import dataclasses
import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from picoface import _core, modelfile

log = logging.getLogger("picoface")

METHODS = ("minmax", "percentile")
KEEP_FLOAT = ("first", "last")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
# Activation values kept per tensor for the percentile method (a uniform sample).
_SAMPLE_PER_TENSOR = 1 << 20


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


def quantize(x: np.ndarray, scale, zero_point=0, axis: Optional[int] = None,
             lo: int = -128, hi: int = 127) -> np.ndarray:
    """ONNX QuantizeLinear to int8: saturate(round_half_even(x / scale) + zero_point), in
    float32 as the spec and onnxruntime compute it; per axis when ``axis`` is given."""
    x = np.asarray(x, np.float32)
    scale = np.asarray(scale, np.float32)
    zp = np.asarray(zero_point, np.float32)
    if axis is not None:
        shape = [1] * x.ndim
        shape[axis] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    q = np.rint(x / scale) + zp
    return np.clip(q, lo, hi).astype(np.int8)


def dequantize(q: np.ndarray, scale, zero_point=0, axis: Optional[int] = None) -> np.ndarray:
    """ONNX DequantizeLinear: (q - zero_point) * scale in float32."""
    q = np.asarray(q).astype(np.float32)
    scale = np.asarray(scale, np.float32)
    zp = np.asarray(zero_point, np.float32)
    if axis is not None:
        shape = [1] * q.ndim
        shape[axis] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return ((q - zp) * scale).astype(np.float32)


# ---------------------------------------------------------------------------------------
# The float graph as Python lists (from a .pface file)

@dataclasses.dataclass
class Graph:
    metadata: Dict[str, object]
    tensors: Dict[str, modelfile.Tensor]
    ops: List[modelfile.Op]
    inputs: List[str]
    outputs: List[str]

    def encode(self, outputs: Optional[Sequence[str]] = None) -> bytes:
        return modelfile.encode(self.metadata, list(self.tensors.values()), self.ops, self.inputs,
                                list(outputs if outputs is not None else self.outputs))


def load_graph(blob: bytes) -> Graph:
    """The graph of .pface bytes as editable lists."""
    s = modelfile.summary(blob)
    consts = _core.model_constants_from_bytes(blob)
    names = [t["name"] for t in s["tensors"]]
    tensors = {}
    for t in s["tensors"]:
        if t["constant"]:
            tensors[t["name"]] = modelfile.Tensor(t["name"], data=consts[t["name"]],
                                                  scales=t.get("scales"), zero_points=t.get("zero_points"),
                                                  axis=t.get("axis", -1))
        else:
            tensors[t["name"]] = modelfile.Tensor(t["name"], dtype=t["dtype"], shape=list(t["shape"]))
    ops = [modelfile.Op(o["type"], [names[i] if i >= 0 else None for i in o["inputs"]],
                        [names[i] for i in o["outputs"]], dict(o["attrs"])) for o in s["ops"]]
    return Graph(dict(s["metadata"]), tensors, ops, [names[i] for i in s["inputs"]],
                 [names[i] for i in s["outputs"]])


# ---------------------------------------------------------------------------------------
# Calibration data

def _read_images(calib: Union[str, Path], limit: Optional[int]) -> List[np.ndarray]:
    from picoface.imageio import read_bgr as imread
    path = Path(calib)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if limit:
            files = files[:limit]
        return [imread(str(p)) for p in files]
    if path.suffix == ".npz":
        with np.load(path) as z:
            arrays = [z[k] for k in z.files]
        out: List[np.ndarray] = []
        for a in arrays:
            if a.dtype == np.uint8 and a.ndim == 3:
                out.append(a)
            elif a.dtype == np.uint8 and a.ndim == 4:
                out.extend(list(a))
            elif a.dtype == np.float32 and a.ndim == 4:  # ready network inputs [N, C, H, W]
                out.extend(x[None] for x in a)
            else:
                raise ValueError(f"expected uint8 HxWx3 / NxHxWx3 images or float32 NCHW tensors in "
                                 f"{str(path)!r}, got {a.dtype} {a.shape}")
        return out[:limit] if limit else out
    if not path.exists():
        raise FileNotFoundError(f"calibration data not found: {str(path)!r}")
    raise ValueError(f"expected a folder of images or an .npz for calibration, got {str(path)!r}")


def _input_fn(blob: bytes, meta: dict, size: Optional[Tuple[int, int]]):
    """Image -> network input through the model's own preprocessing."""
    task = meta.get("task")
    if task == "detect":
        from picoface.detector import FaceDetector
        fixed = meta.get("input.size_policy") == "fixed"
        det = FaceDetector(blob, input_size=None if fixed else (size or (416, 416)))
        return lambda img: det.preprocess(img)[0]
    w, h = meta["input.size"]
    box = _core.letterbox(w, h, w, h, "none")

    def crop(img):
        import cv2
        if img.shape[:2] != (h, w):
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        return _core.preprocess(np.ascontiguousarray(img), box, "bgr", meta["input.color"],
                                list(meta["input.mean"]), list(meta["input.std"]), "nchw", "float32", 1.0,
                                0, "bilinear", [0.0, 0.0, 0.0])[None]
    return crop


class _Ranges:
    def __init__(self, method: str, percentile: float):
        self.method, self.percentile = method, percentile
        self.lo: Dict[str, float] = {}
        self.hi: Dict[str, float] = {}
        self.samples: Dict[str, List[np.ndarray]] = {}
        self.rng = np.random.default_rng(0)

    def add(self, name: str, x: np.ndarray):
        x = np.asarray(x, np.float32).ravel()
        if x.size == 0:
            return
        self.lo[name] = min(self.lo.get(name, np.inf), float(x.min()))
        self.hi[name] = max(self.hi.get(name, -np.inf), float(x.max()))
        if self.method == "percentile":
            keep = min(x.size, _SAMPLE_PER_TENSOR // 16)
            self.samples.setdefault(name, []).append(
                x if keep == x.size else self.rng.choice(x, keep, replace=False))

    def range(self, name: str) -> Tuple[float, float]:
        if self.method == "percentile":
            s = np.concatenate(self.samples[name])
            q = self.percentile
            return float(np.percentile(s, 100.0 - q)), float(np.percentile(s, q))
        return self.lo[name], self.hi[name]


# ---------------------------------------------------------------------------------------
# The rewrite

_INT8_ACTS = ("none", "relu", "clip")


def _quantizable(graph: Graph, op: modelfile.Op) -> bool:
    if op.type != "Conv" or len(op.inputs) < 2 or op.inputs[1] is None:
        return False
    w = graph.tensors[op.inputs[1]]
    if w.data is None or np.asarray(w.data).ndim != 4 or w.scales is not None:
        return False
    if str(op.attrs.get("activation", "none")) not in _INT8_ACTS:
        return False
    if len(op.inputs) > 3 and any(i is not None for i in op.inputs[3:]):
        return False
    return graph.tensors[op.inputs[0]].data is None


def _downstream_convs(graph: Graph) -> Dict[int, bool]:
    """Per Conv op index: whether another Conv reads anything it computes."""
    producer = {o: i for i, op in enumerate(graph.ops) for o in op.outputs}
    has_conv_after = {i: False for i, op in enumerate(graph.ops)}
    for i, op in enumerate(graph.ops):
        if op.type != "Conv":
            continue
        seen, stack = set(), [t for t in op.inputs if t in producer]
        while stack:
            p = producer[stack.pop()]
            if p in seen:
                continue
            seen.add(p)
            has_conv_after[p] = True
            stack.extend(t for t in graph.ops[p].inputs if t in producer)
    return has_conv_after


def _select(graph: Graph, keep_float: Sequence[str]) -> List[int]:
    chosen = [i for i, op in enumerate(graph.ops) if _quantizable(graph, op)]
    if "first" in keep_float:
        chosen = [i for i in chosen if graph.ops[i].inputs[0] not in graph.inputs]
    if "last" in keep_float:
        after = _downstream_convs(graph)
        chosen = [i for i in chosen if after[i]]
    return chosen


def quantize_model(model, calib, *, method: str = "minmax", per_channel: bool = True,
                   keep_float: Sequence[str] = (), task: Optional[str] = None,
                   head: Optional[str] = None, preset: Optional[str] = None,
                   calib_size: Optional[Tuple[int, int]] = None, limit: Optional[int] = None,
                   percentile: float = 99.99) -> Tuple[bytes, dict]:
    """Quantises a float model to a native int8 .pface.

    Args:
        model: path of a .pface or ONNX model (ONNX needs ``task``, and ``head`` or ``preset``,
            as ``picoface convert``), or .pface bytes.
        calib: a folder of images (read in sorted order), an .npz of uint8 images or float32
            NCHW network inputs, or a list of uint8 BGR images.
        method: "minmax" (full observed range) or "percentile" (``percentile`` and
            100 - ``percentile`` of the observed values).
        per_channel: weight scales per output channel (else one per tensor).
        keep_float: "first" keeps the Conv reading the graph input float, "last" every Conv
            with no Conv after it.
        calib_size: (width, height) detectors see during calibration; default 416x416 (a
            fixed-size model uses its own size).
        limit: use at most this many calibration images.

    Returns:
        (.pface bytes, report dict with the quantised and float Conv counts).

    Raises:
        ValueError: no calibration images, a bad option, or a model that is already int8.
    """
    if method not in METHODS:
        raise ValueError(f"expected method one of {METHODS}, got {method!r}")
    bad = [k for k in keep_float if k not in KEEP_FLOAT]
    if bad:
        raise ValueError(f"expected --keep-float items from {KEEP_FLOAT}, got {bad}")
    if not 50.0 < percentile <= 100.0:
        raise ValueError(f"expected percentile in (50, 100], got {percentile}")
    if isinstance(model, (bytes, bytearray)):
        blob = bytes(model)
    else:
        path = Path(model)
        if path.suffix.lower() == ".onnx":
            from picoface.convert import convert_onnx
            if task is None:
                raise ValueError("expected task= (detect | landmarks | embed) for an ONNX model")
            blob = convert_onnx(path, task=task, head=head, preset=preset)
        else:
            if not path.is_file():
                raise FileNotFoundError(f"model file not found: {str(path)!r}")
            blob = path.read_bytes()
    graph = load_graph(blob)
    if graph.metadata.get("quant.scheme", "none") != "none":
        raise ValueError("the model is already quantised (quant.scheme "
                         f"{graph.metadata['quant.scheme']!r})")
    images = list(calib) if isinstance(calib, (list, tuple)) else _read_images(calib, limit)
    if not images:
        raise ValueError(f"expected at least one calibration image, found none in {calib!r}")
    chosen = _select(graph, keep_float)
    if not chosen:
        acts = sorted({str(op.attrs.get("activation", "none")) for op in graph.ops if op.type == "Conv"})
        raise ValueError("no Conv of this model can run in int8 (int8 Convs take no activation, relu "
                         f"or clip; this model's Convs have {acts or 'none at all'}"
                         f"{', and --keep-float ' + ','.join(keep_float) if keep_float else ''})")
    watch = []
    for i in chosen:
        for t in (graph.ops[i].inputs[0], graph.ops[i].outputs[0]):
            if t not in watch:
                watch.append(t)
    ranges = _Ranges(method, percentile)
    prepare = _input_fn(blob, graph.metadata, calib_size)
    extra = [t for t in watch if t not in graph.outputs]
    engine = _core.Engine(graph.encode(list(graph.outputs) + extra))
    names = list(engine.output_names)
    for img in images:
        x = img if img.dtype == np.float32 and img.ndim == 4 else prepare(img)
        for name, value in zip(names, engine.run([np.ascontiguousarray(x, np.float32)])):
            if name in watch:
                ranges.add(name, value)
    params = {t: activation_params(*ranges.range(t)) for t in watch}
    out = _rewrite(graph, chosen, params, per_channel)
    out.metadata.update({
        "quant.scheme": "int8", "quant.method": method,
        "quant.weights": "int8 symmetric per output channel" if per_channel else "int8 symmetric per tensor",
        "quant.activations": "int8 asymmetric per tensor",
        "quant.calibration": f"{len(images)} image(s)" + (
            f" from {Path(calib).name}" if isinstance(calib, (str, Path)) else ""),
    })
    report = {"convs": sum(op.type == "Conv" for op in graph.ops), "int8_convs": len(chosen),
              "calibration_images": len(images), "method": method, "per_channel": per_channel,
              "keep_float": list(keep_float)}
    return out.encode(), report


def _rewrite(graph: Graph, chosen: Sequence[int], params: Dict[str, QuantParams],
             per_channel: bool) -> Graph:
    tensors = dict(graph.tensors)
    ops: List[modelfile.Op] = []
    int8_of: Dict[str, Tuple[str, QuantParams]] = {}  # float name -> (int8 name, params)
    float_ready = set(graph.inputs) | {n for n, t in tensors.items() if t.data is not None}
    chosen = set(chosen)

    def const(name, value):
        if name not in tensors:
            tensors[name] = modelfile.Tensor(name, data=value)
        return name

    def qp_consts(base: str, p: QuantParams):
        return (const(base + ".scale", np.array(p.scale, np.float32)),
                const(base + ".zero_point", np.array(p.zero_point, np.int8)))

    def int8_tensor(name: str, like: str):
        tensors[name] = modelfile.Tensor(name, dtype="int8", shape=list(tensors[like].shape))
        return name

    def need_float(name: Optional[str]):
        if name is None or name in float_ready:
            return
        qname, p = int8_of[name]
        s, z = qp_consts(qname, p)
        ops.append(modelfile.Op("DequantizeLinear", [qname, s, z], [name], {}))
        float_ready.add(name)

    def need_int8(name: str, p: QuantParams) -> str:
        if name in int8_of:
            return int8_of[name][0]
        need_float(name)
        qname = int8_tensor(name + ".q8", name)
        s, z = qp_consts(qname, p)
        ops.append(modelfile.Op("QuantizeLinear", [name, s, z], [qname], {}))
        int8_of[name] = (qname, p)
        return qname

    for i, op in enumerate(graph.ops):
        if i in chosen:
            x, w_name, y = op.inputs[0], op.inputs[1], op.outputs[0]
            b_name = op.inputs[2] if len(op.inputs) > 2 else None
            # A tensor already int8 (from MaxPool) keeps the parameters it has.
            px = int8_of[x][1] if x in int8_of else params[x]
            xq = need_int8(x, px)
            w = np.asarray(tensors[w_name].data, np.float32)
            sw = weight_scales(w, per_channel)
            wq = quantize(w, sw if per_channel else sw[0], 0, axis=0 if per_channel else None, lo=-127)
            base = y + ".qconv"
            sx, zx = qp_consts(xq, px)
            py = params[y]
            yq = int8_tensor(y + ".q8", y)
            sy, zy = qp_consts(yq, py)
            inputs = [xq, sx, zx, const(base + ".w", wq), const(base + ".w_scale", sw),
                      const(base + ".w_zero_point", np.zeros(sw.shape, np.int8)), sy, zy]
            if b_name is not None:
                b = np.asarray(tensors[b_name].data, np.float64)
                bs = np.float64(np.float32(px.scale)) * sw.astype(np.float64)
                bq = np.clip(np.rint(b / bs), -(2 ** 29), 2 ** 29 - 1).astype(np.int32)
                inputs.append(const(base + ".bias", bq))
            attrs = {k: v for k, v in op.attrs.items()}
            ops.append(modelfile.Op("QLinearConv", inputs, [yq], attrs))
            int8_of[y] = (yq, py)
            continue
        if op.type == "MaxPool" and op.inputs[0] in int8_of and op.inputs[0] not in float_ready:
            qname, p = int8_of[op.inputs[0]]
            yq = int8_tensor(op.outputs[0] + ".q8", op.outputs[0])
            ops.append(modelfile.Op("MaxPool", [qname], [yq], dict(op.attrs)))
            int8_of[op.outputs[0]] = (yq, p)
            continue
        for t in op.inputs:
            need_float(t)
        ops.append(op)
        float_ready.update(op.outputs)
    for t in graph.outputs:
        need_float(t)
    # Drop tensors nothing references any more (float weights of quantised Convs, float
    # activations that only exist in int8 now).
    used = set(graph.inputs) | set(graph.outputs)
    for op in ops:
        used.update(t for t in op.inputs if t)
        used.update(op.outputs)
    tensors = {n: t for n, t in tensors.items() if n in used}
    return Graph(dict(graph.metadata), tensors, ops, list(graph.inputs), list(graph.outputs))
