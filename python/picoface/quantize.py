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

import dataclasses
import logging
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from picoface import _core, modelfile
from picoface.quant_calibrate import METHODS, Ranges
from picoface.quant_graph import KEEP_FLOAT, Graph, load_graph, rewrite, select
from picoface.quant_math import QuantParams, activation_params

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
    if task != "embed":
        return crop
    # A recogniser only ever sees aligned faces, and its activation ranges on whole photos
    # squeezed to its input would be another model's: images of its input size are taken as
    # aligned crops, larger ones go through the shipped detector and alignment.
    from picoface.detector import FaceDetector
    from picoface.embedder import FaceEmbedder
    from picoface.recognize import Recognizer
    rec = Recognizer(FaceDetector(), FaceEmbedder(blob))
    return lambda img: crop(img if img.shape[:2] == (h, w) else rec.face_crop(img))


# ---------------------------------------------------------------------------------------
# Calibration and the rewrite

def load_float_model(model, *, task: Optional[str] = None, head: Optional[str] = None,
                     preset: Optional[str] = None) -> bytes:
    """.pface bytes of a float model given as a shipped model's name, .pface bytes or path, or
    an ONNX path (converted in memory with ``task`` and ``head`` / ``preset``, as ``picoface
    convert``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: an ONNX model without ``task``, or a model that is already quantised.
    """
    from picoface import weights

    if isinstance(model, (bytes, bytearray)):
        blob = bytes(model)
    else:
        path = weights.path(model) if weights.is_name(model) else Path(model)
        if path.suffix.lower() == ".onnx":
            from picoface.convert import convert_onnx
            if task is None:
                raise ValueError("expected task= (detect | landmarks | embed) for an ONNX model")
            blob = convert_onnx(path, task=task, head=head, preset=preset)
        else:
            if not path.is_file():
                raise FileNotFoundError(f"model file not found: {str(path)!r}")
            blob = path.read_bytes()
    scheme = modelfile.summary(blob)["metadata"].get("quant.scheme", "none")
    if scheme != "none":
        raise ValueError(f"the model is already quantised (quant.scheme {scheme!r})")
    return blob


def calibration_inputs(blob: bytes, calib, *, calib_size: Optional[Tuple[int, int]] = None,
                       limit: Optional[int] = None) -> List[np.ndarray]:
    """Float32 NCHW network inputs of the calibration images, through the model's own
    preprocessing (``calib`` as :func:`quantize_model` takes it).

    Raises:
        ValueError: no calibration images.
    """
    images = list(calib)[:limit] if isinstance(calib, (list, tuple)) else _read_images(calib, limit)
    if not images:
        raise ValueError(f"expected at least one calibration image, found none in {calib!r}")
    prepare = _input_fn(blob, modelfile.summary(blob)["metadata"], calib_size)
    return [np.ascontiguousarray(img if img.dtype == np.float32 and img.ndim == 4 else prepare(img),
                                 np.float32) for img in images]


@dataclasses.dataclass(frozen=True)
class Calibrated:
    """A float model and the int8 parameters of each Conv that may run in int8.

    Attributes:
        graph: the float graph.
        candidates: op indices of the Convs that may run in int8 (graph order).
        params: activation parameters of those Convs' inputs and outputs, by tensor name.
        inputs: the calibration images as network inputs.
        method, per_channel, source: how it was calibrated (recorded in the int8 file).
    """

    graph: Graph
    candidates: Tuple[int, ...]
    params: Dict[str, QuantParams]
    inputs: Tuple[np.ndarray, ...]
    method: str
    per_channel: bool
    source: str

    def layer(self, op_index: int) -> str:
        """A Conv's name in reports and ``keep_float``: the name of its output tensor."""
        return self.graph.ops[op_index].outputs[0]

    @property
    def float_blob(self) -> bytes:
        return self.graph.encode()

    def build(self, chosen: Sequence[int]) -> bytes:
        """The .pface bytes with the Convs ``chosen`` (op indices among ``candidates``) in int8."""
        out = rewrite(self.graph, list(chosen), self.params, self.per_channel)
        out.metadata.update({
            "quant.scheme": "int8", "quant.method": self.method,
            "quant.weights": "int8 symmetric per output channel" if self.per_channel
            else "int8 symmetric per tensor",
            "quant.activations": "int8 asymmetric per tensor",
            "quant.calibration": self.source,
        })
        return out.encode()


def calibrate(model, calib, *, method: str = "minmax", per_channel: bool = True,
              keep_float: Sequence[str] = (), task: Optional[str] = None,
              head: Optional[str] = None, preset: Optional[str] = None,
              calib_size: Optional[Tuple[int, int]] = None, limit: Optional[int] = None,
              percentile: float = 99.99) -> Calibrated:
    """Runs the float model over the calibration images and fixes the int8 parameters of
    every Conv that can run in int8 (arguments as :func:`quantize_model`; ``keep_float``
    takes only "first" and "last" here)."""
    if method not in METHODS:
        raise ValueError(f"expected method one of {METHODS}, got {method!r}")
    if not 50.0 < percentile <= 100.0:
        raise ValueError(f"expected percentile in (50, 100], got {percentile}")
    blob = load_float_model(model, task=task, head=head, preset=preset)
    graph = load_graph(blob)
    inputs = calibration_inputs(blob, calib, calib_size=calib_size, limit=limit)
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
    extra = [t for t in watch if t not in graph.outputs]
    engine = _core.Engine(graph.encode(list(graph.outputs) + extra))
    names = list(engine.output_names)
    for x in inputs:
        for name, value in zip(names, engine.run([x])):
            if name in watch:
                ranges.add(name, value)
    params = {t: activation_params(*ranges.range(t)) for t in watch}
    source = f"{len(inputs)} image(s)" + (f" from {Path(calib).name}" if isinstance(calib, (str, Path)) else "")
    return Calibrated(graph, tuple(chosen), params, tuple(inputs), method, per_channel, source)


def quantize_model(model, calib, *, method: str = "minmax", per_channel: bool = True,
                   keep_float: Sequence[str] = (), task: Optional[str] = None,
                   head: Optional[str] = None, preset: Optional[str] = None,
                   calib_size: Optional[Tuple[int, int]] = None, limit: Optional[int] = None,
                   percentile: float = 99.99, budget: Optional[Dict[str, float]] = None,
                   eval_data=None, eval_limit: Optional[int] = None, sensitivity: bool = False,
                   report_accuracy: bool = False, report_limit: int = 16,
                   progress: Optional[Callable[[str, int, int], None]] = None) -> Tuple[bytes, dict]:
    """Quantises a float model to a native int8 .pface.

    Args:
        model: a shipped model's name, the path of a .pface or ONNX model (ONNX needs
            ``task``, and ``head`` or ``preset``, as ``picoface convert``), or .pface bytes.
        calib: a folder of images (read in sorted order), an .npz of uint8 images or float32
            NCHW network inputs, or a list of uint8 BGR images. A recogniser takes images of
            its input size as aligned face crops; larger ones are photos, from which the
            shipped detector's largest face is aligned (the central square where it finds
            none).
        method: "minmax" (full observed range), "percentile" (``percentile`` and
            100 - ``percentile`` of the observed values) or "entropy" (the clipping
            threshold of least KL divergence, quant_calibrate.entropy_threshold).
        per_channel: weight scales per output channel (else one per tensor).
        keep_float: Convs to keep float: "first" (the Conv reading the graph input), "last"
            (every Conv with no Conv after it), a Conv's name (its output tensor, as the
            sensitivity report names it), or "auto": the Convs the sensitivity ranking puts
            worst, as few as keep ``budget`` (quant_report.keep_float_auto).
        calib_size: (width, height) detectors see during calibration; default 416x416 (a
            fixed-size model uses its own size).
        limit: use at most this many calibration images.
        budget: metric -> allowed loss (quant_report.METRICS); with "auto" the target, else
            a check whose outcome is in the report's "budget" entry.
        eval_data: WIDER-val416 folder (detectors) or a pairs.tsv (recognisers) for the
            metrics that need one.
        eval_limit: evaluate on at most this many images (detectors) or pairs (recognisers).
        sensitivity: add the per-layer sensitivity ranking (worst first) to the report.
        report_accuracy: add quant_report's accuracy report of the result.
        report_limit: calibration images the sensitivity, the SQNR / cosine / NME metrics and
            the accuracy report run on (the first ones).
        progress: called with (stage, done, total) during the sensitivity analysis and the
            keep-float search.

    Returns:
        (.pface bytes, report dict: Conv counts, kept-float layers, and what was asked for).

    Raises:
        ValueError: no calibration images, a bad option, a budget no int8 model meets with
            "auto", or a model that is already int8.
    """
    keep_float = list(keep_float)
    auto = "auto" in keep_float
    budget = dict(budget or {})
    if auto and not budget:
        raise ValueError("expected a budget (e.g. --budget sqnr=30) with --keep-float auto")
    graph_keep = [k for k in keep_float if k in KEEP_FLOAT]
    named = [k for k in keep_float if k not in KEEP_FLOAT and k != "auto"]
    cal = calibrate(model, calib, method=method, per_channel=per_channel, keep_float=graph_keep,
                    task=task, head=head, preset=preset, calib_size=calib_size, limit=limit,
                    percentile=percentile)
    names = {cal.layer(i): i for i in cal.candidates}
    convs = {op.outputs[0] for op in cal.graph.ops if op.type == "Conv"}
    bad = [k for k in named if k not in convs]
    if bad:
        raise ValueError(f"expected --keep-float items from {KEEP_FLOAT + ('auto',)} or Conv names "
                         f"(their output tensors, e.g. {sorted(names)[:3]}), got {bad}")
    report = {"convs": sum(op.type == "Conv" for op in cal.graph.ops),
              "calibration_images": len(cal.inputs), "method": method, "per_channel": per_channel,
              "keep_float": keep_float}
    evaluator = None
    if budget or sensitivity or report_accuracy or auto:
        from picoface.quant_report import Evaluator
        evaluator = Evaluator(cal.float_blob, cal.inputs[:report_limit], eval_data=eval_data,
                              eval_limit=eval_limit, metrics=budget)
    kept = [k for k in named if k in names]
    ranking = None
    if sensitivity or auto:
        from picoface.quant_report import sensitivity as layer_sensitivity
        ranking = layer_sensitivity(cal, evaluator, skip=kept, progress=progress)
        report["sensitivity"] = [dataclasses.asdict(r) for r in ranking]
    if auto:
        from picoface.quant_report import keep_float_auto
        kept += keep_float_auto(cal, [r.name for r in ranking], evaluator, budget, keep=kept,
                                progress=progress)
    chosen = [i for i in cal.candidates if cal.layer(i) not in kept]
    if not chosen:
        raise ValueError("no Conv is left to run in int8 after --keep-float " + ",".join(keep_float))
    blob = cal.build(chosen)
    report.update({"int8_convs": len(chosen),
                   "kept_float": [op.outputs[0] for i, op in enumerate(cal.graph.ops)
                                  if op.type == "Conv" and i not in chosen]})
    if budget:
        report["budget"] = evaluator.check(blob, budget)
    if report_accuracy:
        report["accuracy"] = evaluator.report(blob)
    return blob, report
