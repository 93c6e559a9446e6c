"""Native INT8 post-training quantisation: float .pface (or ONNX) -> int8 .pface.

The float model runs on the native engine over calibration images, read through the
model's own preprocessing, and records the range of every Conv input and output; the
graph is then rewritten to int8 (quant_graph.py) in picoface's scheme (see
cpp/include/picoface/kernels.h and engine.h):

* weights int8, symmetric (zero point 0) per output channel (or per tensor);
* activations int8, asymmetric per tensor: ``real = scale * (q - zero_point)``;
* bias int32 at scale ``x_scale * w_scale[m]``;
* relu / clip fused into the requantisation clamp.
"""

import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from picoface import _core
from picoface.quant_calibrate import METHODS, Ranges
from picoface.quant_graph import KEEP_FLOAT, load_graph, rewrite, select
from picoface.quant_math import activation_params

log = logging.getLogger("picoface")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")

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


# ---------------------------------------------------------------------------------------
# The rewrite

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
        method: "minmax" (full observed range), "percentile" (``percentile`` and
            100 - ``percentile`` of the observed values) or "entropy" (the clipping
            threshold of least KL divergence, quant_calibrate.entropy_threshold).
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
    chosen = select(graph, keep_float)
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
    ranges = Ranges(method, percentile)
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
    out = rewrite(graph, chosen, params, per_channel)
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
