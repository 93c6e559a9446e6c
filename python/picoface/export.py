"""``picoface export``: a detector checkpoint (.pth) through the project's own PyTorch
definitions (``models/``) to ONNX or TFLite (fp32, or full-integer with ``int8``), checked
against PyTorch on the same input; the int8 TFLite's detections are compared with the fp32
TFLite's.

The definitions and exporters (``models/``, ``tools/export_*.py``) are not installed with the
package: export runs from a source checkout (found from the working directory upwards, or
named by ``PICOFACE_SOURCE``), with PyTorch from the ``[export]`` extra.
"""

import contextlib
import importlib
import os
import sys
from pathlib import Path
from typing import Optional, Tuple

# Architecture -> the exporter in tools/ that holds its ExportSpec. "own_detector": the
# project's own detectors (models/own_detector.py: extd_tiny — the shipped default's
# architecture —, extd_large, ssh_mobile; the variant is stored in the checkpoint).
ARCHS = {"extd": "export_extd", "retinaface": "export_retinaface", "own_detector": "export_own"}
# Architecture -> the detector head (picoface.heads) that decodes its outputs.
HEADS = {"extd": "extd", "retinaface": "retinaface", "own_detector": "yunet"}
FORMATS = ("onnx", "tflite")
INSTALL_HINT = "pip install 'picoface[export]' (torch 2.13.0, onnxscript, onnxruntime)"
# Images of the calibration set the int8 TFLite's detections are compared on when no
# --image is given.
AGREEMENT_IMAGES = 10


def source_root(start: Optional[Path] = None) -> Path:
    """The picoface source checkout holding models/ and tools/: $PICOFACE_SOURCE, else the
    working directory or its nearest parent that has them."""
    marker = ("models/extd.py", "tools/onnx_export.py")
    env = os.environ.get("PICOFACE_SOURCE")
    candidates = [Path(env)] if env else [p for d in [Path(start or Path.cwd()).resolve()]
                                          for p in (d, *d.parents)]
    for c in candidates:
        if all((c / m).is_file() for m in marker):
            return c
    where = f"PICOFACE_SOURCE={env!r}" if env else f"{str(Path(start or Path.cwd()))!r} or its parents"
    raise FileNotFoundError(f"picoface export needs the model definitions of a picoface source "
                            f"checkout (models/, tools/; not installed), none in {where}: run it "
                            "from the repository or set PICOFACE_SOURCE")


def _require_export_deps(to: str, int8: bool) -> None:
    if to == "tflite":
        from picoface.tflite_export import require
        require(int8=int8)
        return
    missing = []
    for module in ("torch", "onnxscript", "onnxruntime"):
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ImportError(f"picoface export needs {', '.join(missing)}: {INSTALL_HINT}")


def _exporter(arch: str, root: Path):
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return importlib.import_module(f"tools.{ARCHS[arch]}")


def export(checkpoint, output, *, arch: Optional[str] = None, to: str = "onnx",
           image=None, int8: bool = False, calib=None, size: Optional[Tuple[int, int]] = None,
           limit: Optional[int] = 50) -> dict:
    """Exports ``checkpoint`` to ``output`` and checks it against PyTorch.

    Args:
        checkpoint: a .pth weight file of one of the project's architectures.
        output: the file to write.
        arch: "extd", "retinaface" or "own_detector"; None: the one whose layout loads the
            checkpoint strictly.
        to: "onnx" (dynamic H and W) or "tflite" (fixed input ``size``, litert-torch).
        image: optional uint8 HxWx3 BGR image for the check (default: a seeded random input).
        int8: TFLite only: full-integer model (ai-edge-quantizer), calibrated on ``calib``.
        calib: folder of calibration images (or .npz), read through the model's own
            preprocessing (letterboxed into ``size``).
        size: TFLite input (width, height), rounded up to the architecture's multiple;
            default: the architecture's example size (640x480, EXTD 640x512).
        limit: use at most this many calibration images.

    Returns:
        {"arch", "output", "bytes", "input", "max_abs_error", "tolerance"}; TFLite:
        "max_rel_error" (of the largest output) instead of "max_abs_error", and with int8
        "int8" (detections of the int8 vs the fp32 TFLite: recall, precision, mean IoU).

    Raises:
        FileNotFoundError: checkpoint or source checkout missing.
        ImportError: PyTorch / onnxscript / onnxruntime (ONNX) or litert-torch /
            ai-edge-quantizer (TFLite) missing (names the extra).
        ValueError: unknown format or architecture, or a checkpoint no definition loads.
        RuntimeError: the exported model differs from PyTorch by the tolerance or more.
    """
    if to not in FORMATS:
        raise ValueError(f"expected --to one of {FORMATS}, got {to!r}")
    if arch is not None and arch not in ARCHS:
        raise ValueError(f"expected arch one of {sorted(ARCHS)}, got {arch!r}")
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {str(checkpoint)!r}")
    if int8 and to != "tflite":
        raise ValueError("--int8 is for --to tflite (native int8: picoface quantize)")
    if int8 and calib is None:
        raise ValueError("expected --calib DIR (calibration images) with --int8")
    root = source_root()
    _require_export_deps(to, int8)
    import numpy as np

    tool, errors = None, {}
    for name in [arch] if arch else sorted(ARCHS):
        candidate = _exporter(name, root)
        try:
            candidate.SPEC.load(str(checkpoint))
        except (RuntimeError, KeyError, ValueError) as e:  # strict load: layout mismatch
            errors[name] = str(e).splitlines()[0]
            continue
        tool, arch = candidate, name
        break
    if tool is None:
        detail = "; ".join(f"{k}: {v}" for k, v in errors.items())
        raise ValueError(f"{str(checkpoint)!r} loads into none of {sorted(errors)} ({detail})")
    spec, tools_export = tool.SPEC, tool.onnx_export
    if to == "tflite":
        return _export_tflite(spec, arch, str(checkpoint), output, image=image, int8=int8,
                              calib=calib, size=size, limit=limit)
    # torch.onnx prints progress on stdout, which must stay clean for --json.
    with contextlib.redirect_stdout(sys.stderr):
        out = tools_export.export(spec, str(checkpoint), output)
    if image is not None:
        x = tools_export.input_tensor(spec, image)
    else:
        w, h = spec.example_size
        x = np.random.default_rng(0).uniform(-128, 128, (1, 3, h, w)).astype(np.float32)
    err = tools_export.max_abs_error(spec, str(checkpoint), out, x)
    report = {"arch": arch, "output": str(out), "bytes": Path(out).stat().st_size,
              "input": f"{x.shape[3]}x{x.shape[2]}", "max_abs_error": err,
              "tolerance": tools_export.TOLERANCE}
    if not err < tools_export.TOLERANCE:
        raise RuntimeError(f"{out}: ONNX differs from PyTorch by {err:.3g} (tolerance "
                           f"{tools_export.TOLERANCE:g})")
    return report


def _export_tflite(spec, arch: str, checkpoint: str, output, *, image, int8: bool, calib,
                   size, limit) -> dict:
    import numpy as np
    import torch

    from picoface import modelfile
    from picoface import tflite_export as te
    from picoface.detector import FaceDetector
    from picoface.quantize import _read_images

    m = spec.multiple
    w, h = size or spec.example_size
    w, h = -(-w // m) * m, -(-h // m) * m
    model = spec.load(checkpoint)
    fp32 = te.to_tflite(model, np.zeros((1, 3, h, w), np.float32), spec.output_names)
    # The detector's own preprocessing (letterbox into the fixed size, the head's colour
    # order and mean) makes every check and calibration input, as deployed.
    det_fp32 = FaceDetector(fp32, head=HEADS[arch], backend="tflite")
    if image is not None:
        x = det_fp32.preprocess(image)[0]
    else:
        x = np.random.default_rng(0).uniform(-128, 128, (1, 3, h, w)).astype(np.float32)
    with torch.no_grad():
        ref = dict(zip(spec.output_names, (t.numpy() for t in model(torch.from_numpy(x)))))
    err = te.max_rel_error(te.run_tflite(fp32, x), ref)
    if not err < te.FP32_TOLERANCE:
        raise RuntimeError(f"{output}: TFLite differs from PyTorch by {err:.3g} of the largest "
                           f"output (tolerance {te.FP32_TOLERANCE:g})")
    report = {"arch": arch, "format": "tflite", "input": f"{w}x{h}", "max_rel_error": err,
              "tolerance": te.FP32_TOLERANCE, "converter": "litert-torch"}
    blob = fp32
    if int8:
        images = _read_images(calib, limit)
        if not images:
            raise ValueError(f"expected at least one calibration image, found none in {str(calib)!r}")
        blob = te.quantize_int8(fp32, [det_fp32.preprocess(img)[0] for img in images])
        det_int8 = FaceDetector(blob, head=HEADS[arch], backend="tflite")
        check = [image] if image is not None else images[:AGREEMENT_IMAGES]
        report["int8"] = {"quantizer": "ai-edge-quantizer static_wi8_ai8",
                          "calibration_images": len(images),
                          "compared_on": "--image" if image is not None else "calibration images",
                          **te.detection_agreement(det_fp32, det_int8, check)}
    out = modelfile.save(output, blob)  # atomic, like every model file picoface writes
    report.update({"output": str(out), "bytes": len(blob)})
    return report
