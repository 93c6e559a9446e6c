"""TFLite output of ``picoface export --to tflite`` and ``picoface quantize --format tflite``
(the ``[export]`` extra; no TensorFlow).

* fp32: a PyTorch module -> TFLite with litert-torch, at a fixed input size (litert-torch
  0.10 bakes the traced size into Resize and Reshape even when asked for dynamic shapes, so
  a fixed size is what it can honestly deliver); outputs keep their names as the model's
  signature outputs, which the tflite backend reports and the heads look up.
* full integer: ai-edge-quantizer's static int8 recipe (``static_wi8_ai8``: int8 weights per
  output channel, int8 activations calibrated on real inputs by min/max), int8 input and
  outputs — the tflite backend quantises and dequantises at the boundary.
* any float .pface model (imported YuNet, SFace, the project's own detectors): through
  :class:`picoface.pface_torch.PfaceModule`, a PyTorch interpreter of the graph.

Calibration reads images through the model's own preprocessing
(:func:`picoface.quantize._input_fn`), never the evaluation set.
"""

import contextlib
import importlib
import logging
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

log = logging.getLogger("picoface")

INSTALL_HINT = ("pip install 'picoface[export]' (torch 2.13.0, litert-torch, ai-edge-quantizer; "
                "about 2 GB)")
# fp32 TFLite vs the reference (PyTorch or the native engine), max abs error over all outputs
# divided by the largest reference value: float32 with a different summation order.
FP32_TOLERANCE = 1e-4
# Calibration images the int8 model is compared with the native fp32 one on.
CHECK_IMAGES = 10
# Detector sizes exported when none is given: the larger of `picoface bench`'s two frames.
DEFAULT_DETECTOR_SIZE = (640, 480)


def require(int8: bool = False) -> None:
    """Raises ImportError naming the extra unless torch and litert-torch (and, for ``int8``,
    ai-edge-quantizer) import."""
    modules = ["torch", "litert_torch"] + (["ai_edge_quantizer"] if int8 else [])
    missing = []
    for m in modules:
        try:
            importlib.import_module(m)
        except ImportError:
            missing.append(m.replace("_", "-"))
    if missing:
        raise ImportError(f"TFLite export needs {', '.join(missing)}: {INSTALL_HINT}")


@contextlib.contextmanager
def _stdout_to_stderr():
    """The converters print progress on stdout (from Python and C++), which must stay clean
    for --json: route file descriptor 1 to 2 while they run."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def to_tflite(module, sample: np.ndarray, output_names: Optional[Sequence[str]] = None) -> bytes:
    """fp32 TFLite of ``module`` traced at ``sample``'s shape (float32 NCHW).

    Args:
        module: a torch.nn.Module returning a tuple of tensors (named by ``output_names``)
            or a dict of them (its keys are the names).
        sample: the input the module is traced with; the TFLite model takes this shape only.
        output_names: names of a tuple's outputs, in order.
    """
    require()
    import litert_torch
    import torch

    class Named(torch.nn.Module):
        # The signature's output names are the keys of the dict the module returns.
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            out = self.inner(x)
            return out if isinstance(out, dict) else dict(zip(output_names, out))

    with _stdout_to_stderr(), torch.no_grad():
        edge = litert_torch.convert(Named(module).eval(), (torch.from_numpy(sample),))
        return bytes(edge.model_content())


def _signature(tflite: bytes) -> Tuple[str, str]:
    from picoface.backends.tflite import _interpreter_class

    cls, _ = _interpreter_class()
    signatures = cls(model_content=tflite).get_signature_list()
    if len(signatures) != 1:
        raise ValueError(f"expected a TFLite model with one signature, got {sorted(signatures)}")
    key, sig = next(iter(signatures.items()))
    if len(sig["inputs"]) != 1:
        raise ValueError(f"expected a TFLite model with one input, got {sig['inputs']}")
    return key, sig["inputs"][0]


def quantize_int8(tflite: bytes, inputs: Sequence[np.ndarray]) -> bytes:
    """Full-integer TFLite of an fp32 one: ai-edge-quantizer's ``static_wi8_ai8`` recipe,
    activation ranges from ``inputs`` (float32 network inputs, the model's own shape)."""
    require(int8=True)
    from ai_edge_quantizer import quantizer, recipe

    if not inputs:
        raise ValueError("expected at least one calibration input, got none")
    key, name = _signature(tflite)
    q = quantizer.Quantizer(tflite)
    q.load_quantization_recipe(recipe.static_wi8_ai8())
    with _stdout_to_stderr():
        ranges = q.calibrate({key: [{name: np.ascontiguousarray(x, np.float32)} for x in inputs]},
                             num_threads=1)
        result = q.quantize(ranges, enable_progress_report=False)
    return bytes(result.quantized_model)


def run_tflite(tflite: bytes, x: np.ndarray) -> Dict[str, np.ndarray]:
    """Outputs of a TFLite model (float32, dequantised) on one float32 NCHW input."""
    from picoface.backends.tflite import TfliteBackend

    return TfliteBackend(tflite).run(x)


def max_rel_error(got: Dict[str, np.ndarray], ref: Dict[str, np.ndarray]) -> float:
    """Largest |got - ref| over all outputs, divided by the largest |ref|."""
    if sorted(got) != sorted(ref):
        raise ValueError(f"expected outputs {sorted(ref)}, got {sorted(got)}")
    scale = max(float(np.abs(r).max()) for r in ref.values()) or 1.0
    return max(float(np.abs(got[k].reshape(r.shape) - r).max()) for k, r in ref.items()) / scale


def output_cosine(got: Dict[str, np.ndarray], ref: Dict[str, np.ndarray]) -> float:
    """Cosine similarity of all outputs flattened and concatenated, against the reference.
    (Per output it would mislead: an int8 sigmoid output whose values all lie below its
    quantisation step of 1/256 comes out as zeros, cosine 0, and decodes to the same boxes.)"""
    a = np.concatenate([got[k].ravel() for k in sorted(ref)]).astype(np.float64)
    b = np.concatenate([ref[k].ravel() for k in sorted(ref)]).astype(np.float64)
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / denom if denom else float(np.array_equal(a, b))


def detection_agreement(reference, candidate, images: Sequence[np.ndarray],
                        iou: float = 0.5) -> dict:
    """How closely ``candidate``'s detections follow ``reference``'s (two FaceDetectors) on
    ``images``: recall = reference faces with a candidate box at IoU >= ``iou``, precision =
    candidate boxes on a reference face, mean IoU of the matched pairs."""
    ref_n = cand_n = found = on_ref = 0
    ious: List[float] = []
    for img in images:
        a, b = reference(img), candidate(img)
        ref_n, cand_n = ref_n + len(a), cand_n + len(b)
        if not len(a) or not len(b):
            continue
        m = _iou_matrix(a.boxes, b.boxes)
        best = m.max(axis=1)
        found += int((best >= iou).sum())
        ious += [float(v) for v in best[best >= iou]]
        on_ref += int((m.max(axis=0) >= iou).sum())
    return {"images": len(images), "reference_faces": ref_n, "faces": cand_n,
            "recall": found / ref_n if ref_n else 1.0,
            "precision": on_ref / cand_n if cand_n else 1.0,
            "mean_iou": float(np.mean(ious)) if ious else 0.0, "iou_threshold": iou}


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def pface_to_tflite(model, *, calib=None, int8: bool = True, size: Optional[Tuple[int, int]] = None,
                    limit: Optional[int] = 50, task: Optional[str] = None, head: Optional[str] = None,
                    preset: Optional[str] = None) -> Tuple[bytes, dict]:
    """TFLite (full-integer with ``int8``) of a float .pface or ONNX model, through the
    .pface -> PyTorch interpreter, litert-torch and ai-edge-quantizer; checked against the
    native engine.

    Args:
        model: a shipped model's name, path of a .pface or ONNX model (ONNX needs ``task``,
            and ``head`` or ``preset``, as ``picoface convert``), or .pface bytes.
        calib: calibration images (as ``picoface quantize --calib``); required with ``int8``.
        size: (width, height) of a detector's TFLite input (default 640x480 rounded up to
            the model's multiple); fixed-size models use their own.
        limit: use at most this many calibration images.

    Returns:
        (TFLite bytes, report: input size, fp32 vs native error, and with int8 the smallest
        :func:`output_cosine` between the int8 model and the native fp32 engine over the first
        calibration inputs, and for detectors :func:`detection_agreement` with the native
        fp32 detector on those images).

    Raises:
        ImportError: the [export] extra is missing.
        ValueError: a model with ops the interpreter lacks, no calibration images, a bad size.
    """
    require(int8=int8)
    from picoface import _core
    from picoface.pface_torch import PfaceModule, input_shape
    from picoface.quantize import _input_fn, _read_images, load_float_model

    blob = load_float_model(model, task=task, head=head, preset=preset)
    module = PfaceModule(blob).eval()
    meta = module.metadata
    if meta.get("input.size_policy") != "fixed":
        m = int(meta.get("input.multiple", 1))
        w, h = size or DEFAULT_DETECTOR_SIZE
        if w % m or h % m:
            w, h = -(-w // m) * m, -(-h // m) * m
            log.info("TFLite input rounded up to %dx%d (multiples of %d)", w, h, m)
        size = (w, h)
    shape = input_shape(module, size)
    prepare = _input_fn(blob, meta, (shape[3], shape[2]))
    images = []
    if calib is not None:
        images = list(calib) if isinstance(calib, (list, tuple)) else _read_images(calib, limit)
    if int8 and not images:
        raise ValueError(f"expected at least one calibration image, found none in {calib!r}")
    inputs = [prepare(img) for img in images] or [
        np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32)]
    engine = _core.Engine(blob, 1)

    def native(x):
        return {n: np.asarray(v) for n, v in zip(engine.output_names, engine.run([x]))}

    fp32 = to_tflite(module, np.zeros(shape, np.float32))
    err = max_rel_error(run_tflite(fp32, inputs[0]), native(inputs[0]))
    report = {"format": "tflite", "input": f"{shape[3]}x{shape[2]}",
              "fp32_vs_native_rel_error": err, "tolerance": FP32_TOLERANCE,
              "converter": "litert-torch (PyTorch interpreter of the .pface graph)"}
    if not err < FP32_TOLERANCE:
        raise RuntimeError(f"fp32 TFLite differs from the native engine by {err:.3g} of the "
                           f"largest output (tolerance {FP32_TOLERANCE:g})")
    if not int8:
        return fp32, report
    out = quantize_int8(fp32, inputs)
    cosine = min(output_cosine(run_tflite(out, x), native(x)) for x in inputs[:CHECK_IMAGES])
    report.update({"quantizer": "ai-edge-quantizer static_wi8_ai8", "calibration_images": len(images),
                   "int8_min_output_cosine": cosine})
    if meta.get("task") == "detect":
        from picoface.detector import FaceDetector

        report["int8_detections"] = detection_agreement(
            FaceDetector(blob, input_size=size),
            FaceDetector(out, head=meta["head.type"], backend="tflite"), images[:CHECK_IMAGES])
    return out, report
