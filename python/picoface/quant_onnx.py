"""ONNX QDQ int8 models through ``onnxruntime.quantization.quantize_static``.

Calibration feeds the same images as the native path, through the model's own
preprocessing (quantize._input_fn), so the two int8 forms see the same data. The output is a
QDQ model (QuantizeLinear / DequantizeLinear around float ops, which onnxruntime fuses into
its int8 kernels) with int8 weights per output channel.
"""

import contextlib
import io
import logging
import tempfile
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from picoface.quant_calibrate import METHODS

log = logging.getLogger("picoface")


def _ort_quantization():
    try:
        import onnxruntime  # noqa: F401  (quantization needs the runtime itself too)
        from onnxruntime import quantization
    except ImportError as e:
        raise ImportError("ONNX QDQ output needs onnxruntime (pip install onnxruntime sympy)") from e
    return quantization


class _Reader:
    """An onnxruntime CalibrationDataReader over ready network inputs."""

    def __init__(self, input_name: str, inputs: Sequence[np.ndarray]):
        self.input_name = input_name
        self.inputs = list(inputs)
        self.pos = 0

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        if self.pos >= len(self.inputs):
            return None
        self.pos += 1
        return {self.input_name: self.inputs[self.pos - 1]}

    def rewind(self):
        self.pos = 0


def _session(path):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _float_source(path: Path, tmp: Path) -> Path:
    """``path`` as a plain float model that quantize_static takes: int8 weights behind
    DequantizeLinear (OpenCV zoo "int8bq" files) folded to float32, and opset 13 or newer
    (per-channel weights need the ``axis`` of DequantizeLinear, which opset 13 introduced).
    Returns ``path`` itself when it needs neither."""
    import onnx
    from onnx import version_converter

    from picoface.backends.ort import fold_weight_dequantize

    m = onnx.load(str(path))
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 0)
    folds = any(n.op_type == "DequantizeLinear" for n in m.graph.node)
    if opset >= 13 and not folds:
        return path
    if folds:
        m = fold_weight_dequantize(m)
    if opset < 13:
        m = version_converter.convert_version(m, 13)
    onnx.save(m, str(tmp))
    return tmp


def compare_onnx(float_path, int8_path, inputs: Sequence[np.ndarray]) -> Dict[str, object]:
    """Both ONNX models in onnxruntime on ``inputs``: {"images", "sqnr_db": {output: dB},
    "sqnr_db_min", "cosine" (mean, first output)}, as quant_report measures native models."""
    from picoface.quant_report import _cosine, sqnr_db
    ref_sess, sess = _session(float_path), _session(int8_path)
    name = ref_sess.get_inputs()[0].name
    outs = [o.name for o in ref_sess.get_outputs()]
    signal, noise, cosines = np.zeros(len(outs)), np.zeros(len(outs)), []
    for x in inputs:
        ref = ref_sess.run(outs, {name: x})
        got = sess.run(outs, {name: x})
        for k, (r, g) in enumerate(zip(ref, got)):
            r64, g64 = np.asarray(r, np.float64), np.asarray(g, np.float64)
            signal[k] += float(np.sum(r64 * r64))
            noise[k] += float(np.sum((r64 - g64) ** 2))
        cosines += [_cosine(a, b) for a, b in zip(ref[0].reshape(ref[0].shape[0], -1),
                                                 got[0].reshape(got[0].shape[0], -1))]
    per = {n: round(sqnr_db(s, e), 3) for n, s, e in zip(outs, signal, noise)}
    return {"images": len(inputs), "sqnr_db": per, "sqnr_db_min": min(per.values()),
            "cosine": float(np.mean(cosines))}


def quantize_onnx(model, calib, output, *, task: Optional[str] = None, head: Optional[str] = None,
                  preset: Optional[str] = None, method: str = "minmax", per_channel: bool = True,
                  calib_size: Optional[Tuple[int, int]] = None, limit: Optional[int] = None,
                  activations: str = "uint8", check_limit: int = 16) -> Dict[str, object]:
    """Quantises an ONNX model to an ONNX QDQ int8 model.

    Args:
        model: path of the float ONNX model.
        calib: calibration images as quantize.quantize_model takes them.
        output: path of the QDQ model to write.
        task, head, preset: the model's task and input convention, as ``picoface convert``
            (they choose the preprocessing the calibration images go through).
        method: "minmax", "percentile" or "entropy" (onnxruntime's calibrators of those names).
        per_channel: int8 weights per output channel (else per tensor).
        calib_size: detector input (width, height) during calibration.
        limit: at most this many calibration images.
        activations: "uint8" (default) or "int8" activations; both give the same grid of
            values (an asymmetric range shifted by 128), so accuracy is identical. uint8 is
            the default for speed: onnxruntime's x86 int8 kernels take uint8 activations
            times int8 weights natively (the u8 x s8 form of vpmaddubsw / vpdpbusd). On
            YuNet-s at 640x480, 1 thread, onnxruntime 1.32, 80 interleaved runs: uint8 19.1
            ms, int8 21.5 ms median (fp32 12.5 ms: onnxruntime's QDQ int8 is not faster than
            its fp32 on this model).
        check_limit: after writing, both models run in onnxruntime on this many of the
            calibration images and the report gives their agreement.

    Returns:
        {"output", "calibration_images", "method", "per_channel", "activations", "check": see
        :func:`compare_onnx`}.

    Raises:
        ValueError: a .pface model (no ONNX source), a bad option, or no calibration images.
        ImportError: onnxruntime is not installed.
    """
    from picoface.quantize import calibration_inputs, load_float_model

    path = Path(model) if not isinstance(model, (bytes, bytearray)) else None
    if path is None or path.suffix.lower() != ".onnx":
        raise ValueError("expected an ONNX model for ONNX QDQ output, got "
                         f"{'.pface bytes' if path is None else repr(str(path))}: quantise the .onnx "
                         "it was converted from (a .pface file keeps no ONNX graph)")
    if method not in METHODS:
        raise ValueError(f"expected method one of {METHODS}, got {method!r}")
    if activations not in ("uint8", "int8"):
        raise ValueError(f"expected activations 'uint8' or 'int8', got {activations!r}")
    q = _ort_quantization()
    # The .pface conversion gives the preprocessing metadata the calibration images need.
    blob = load_float_model(path, task=task, head=head, preset=preset)
    inputs = calibration_inputs(blob, calib, calib_size=calib_size, limit=limit)
    calibrators = {"minmax": q.CalibrationMethod.MinMax, "percentile": q.CalibrationMethod.Percentile,
                   "entropy": q.CalibrationMethod.Entropy}
    with tempfile.TemporaryDirectory() as tmp:
        source = float_source = _float_source(path, Path(tmp) / "float.onnx")
        try:
            # Shape inference and graph optimisation first, as onnxruntime recommends: it
            # lets more ops join int8 regions. Symbolic shape inference gives up on dynamic
            # spatial sizes (YuNet's), so ONNX's own shape inference does it.
            pre = Path(tmp) / "pre.onnx"
            q.quant_pre_process(str(source), str(pre), skip_symbolic_shape=True)
            source = pre
        except Exception as e:  # an optional step: the model quantises without it
            log.warning("onnxruntime quant_pre_process failed (%s); quantising the model as is", e)
        name = _session(source).get_inputs()[0].name
        # onnxruntime's histogram calibrators print progress; stdout belongs to the caller
        # (``picoface quantize --json``), so it goes to the log.
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            q.quantize_static(str(source), str(output), _Reader(name, inputs),
                              quant_format=q.QuantFormat.QDQ, per_channel=per_channel,
                              activation_type=q.QuantType.QUInt8 if activations == "uint8" else q.QuantType.QInt8,
                              weight_type=q.QuantType.QInt8, calibrate_method=calibrators[method])
        if printed.getvalue():
            log.debug("onnxruntime quantize_static: %s", printed.getvalue().strip())
        check = compare_onnx(float_source, output, inputs[:max(1, check_limit)])
    return {"output": str(output), "calibration_images": len(inputs), "method": method,
            "per_channel": per_channel, "activations": activations, "check": check}
