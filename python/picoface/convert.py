"""ONNX -> .pface import.

The graph is read and optimised by :mod:`picoface.importer` (opset upgrade, shape inference,
constant folding including int8 weight-block dequantisation, BatchNorm folding, activation
fusion, dead-node removal), checked against the native engine's op set, then written with
the detector or recogniser description the ONNX file lacks, taken from the named head / task
preset.
"""

import hashlib
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from picoface import importer, modelfile
from picoface.embedder import PRESETS as EMBED_PRESETS
from picoface.heads import HEADS
from picoface.landmarks import PRESETS as LANDMARK_PRESETS

TASKS = ("detect", "landmarks", "embed")
_SUPPORTED = {"float32", "int8", "uint8", "int32", "int64"}


def _constant(name: str, arr: np.ndarray) -> np.ndarray:
    # The file stores five dtypes; float64/float16 constants are weights or scales that fp32
    # holds as well as the fp32 graph uses them, and bool is stored as 0/1 bytes.
    if arr.dtype in (np.float64, np.float16):
        arr = arr.astype(np.float32)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if str(arr.dtype) not in _SUPPORTED:
        raise ValueError(f"tensor {name!r} has unsupported dtype {arr.dtype}")
    return arr


def _activation_dtype(value) -> str:
    if value is None or value.dtype in ("float64", "float16"):
        return "float32"
    if value.dtype == "bool":
        return "uint8"
    return value.dtype if value.dtype in _SUPPORTED else "float32"


def metadata_for(task: str, head: Optional[str], preset: Optional[str], input_shape,
                 source: Path, digest: str, match_threshold: Optional[str] = None) -> Dict[str, object]:
    if task not in TASKS:
        raise ValueError(f"expected task one of {TASKS}, got {task!r}")
    meta: Dict[str, object] = {"task": task}
    if match_threshold is not None:
        # "T@PROTOCOL": a cosine threshold and where it was calibrated, e.g.
        # "0.38@celeba-pairs FAR=1e-3" (FaceEmbedder.threshold, Gallery's default).
        if task != "embed":
            raise ValueError(f"expected --match-threshold only with --task embed, got {task!r}")
        value, _, note = str(match_threshold).partition("@")
        try:
            t = float(value)
        except ValueError:
            raise ValueError(f"expected --match-threshold as T or T@NOTE with T a number, got "
                             f"{match_threshold!r}") from None
        if not -1.0 <= t <= 1.0:
            raise ValueError(f"expected a cosine match threshold in [-1, 1], got {t}")
        meta["threshold.match"] = t
        if note:
            meta["threshold.match_calibration"] = note
    dynamic = len(input_shape) != 4 or not all(isinstance(d, int) and d > 0 for d in input_shape[2:])
    if task == "detect":
        if head not in HEADS:
            raise ValueError(f"expected --head one of {sorted(HEADS)} for a detector, got {head!r}")
        spec = HEADS[head]
        meta.update({"architecture": head, "input.color": spec.color, "input.mean": list(spec.mean),
                     "input.std": list(spec.std), "head.type": head,
                     "head.strides": list(spec.strides), "threshold.score": spec.score_threshold,
                     "threshold.nms": spec.nms_threshold})
        if spec.anchor_sizes:
            meta.update({"head.anchor_sizes": [float(a) for level in spec.anchor_sizes for a in level],
                         "head.anchor_counts": [len(level) for level in spec.anchor_sizes]})
            if getattr(spec, "variances", None):
                meta["head.variances"] = [float(v) for v in spec.variances]
        multiple = spec.size_multiple
    else:
        presets, default = ((EMBED_PRESETS, "arcface") if task == "embed" else
                            (LANDMARK_PRESETS, "pfld"))
        name = preset or default
        if name not in presets:
            raise ValueError(f"expected --preset one of {sorted(presets)} for task {task!r}, "
                             f"got {name!r}")
        spec = presets[name]
        meta.update({"architecture": name, "input.color": spec.color, "input.mean": list(spec.mean),
                     "input.std": list(spec.std)})
        if task == "landmarks":
            meta.update({"landmarks.points": spec.num_points, "landmarks.coords": spec.coords,
                         "crop.policy": spec.crop_policy, "crop.scale": float(spec.crop_scale)})
        multiple = 1
    if dynamic:
        meta.update({"input.size_policy": "multiple", "input.multiple": multiple})
    else:
        meta.update({"input.size_policy": "fixed", "input.size": [input_shape[3], input_shape[2]]})
    meta.update({"input.layout": "nchw", "quant.scheme": "none",
                 "provenance": f"converted from {source.name} (sha256 {digest})"})
    return meta


def encode_imported(imported: "importer.Imported", *, task: str, head: Optional[str] = None,
                    preset: Optional[str] = None, source: str = "model.onnx",
                    match_threshold: Optional[str] = None,
                    metadata: Optional[Dict[str, object]] = None) -> bytes:
    """The .pface bytes of an imported graph. ``metadata`` entries are written over the
    task/head defaults (e.g. the architecture and provenance of the project's own trained
    models). Raises ValueError when ops outside the native engine's set remain, when the
    graph has not exactly one input, or for a bad task/head."""
    graph = imported.graph
    missing = importer.unsupported_ops(graph)
    if missing:
        raise ValueError(f"the native engine does not support these ops: {', '.join(missing)} "
                         "(the onnxruntime backend can still run the ONNX file)")
    if len(graph.inputs) != 1:
        raise ValueError(f"expected one image input, got {len(graph.inputs)}: {graph.inputs}")
    first = graph.inputs[0]
    value = graph.values.get(first)
    dims = list(value.shape) if value is not None and value.shape is not None else []
    tensors = [modelfile.Tensor(first, dtype="float32", shape=dims)]
    tensors += [modelfile.Tensor(name, data=_constant(name, arr)) for name, arr in graph.constants.items()]
    ops = []
    for node in graph.nodes:
        for out in node.outputs:
            if out:
                v = graph.values.get(out)
                shape = v.shape if v is not None and v.shape is not None else ()
                tensors.append(modelfile.Tensor(out, dtype=_activation_dtype(v), shape=shape))
        ops.append(modelfile.Op(node.type, [i or None for i in node.inputs],
                                [o for o in node.outputs if o], dict(node.attrs)))
    shape = [d if d > 0 else None for d in dims]
    meta = metadata_for(task, head, preset, shape, Path(source),
                        hashlib.sha256(imported.source).hexdigest(), match_threshold)
    meta.update(metadata or {})
    return modelfile.encode(meta, tensors, ops, [first], list(graph.outputs))


def convert_onnx(path, *, task: str, head: Optional[str] = None, preset: Optional[str] = None,
                 match_threshold: Optional[str] = None,
                 metadata: Optional[Dict[str, object]] = None) -> bytes:
    """Returns the .pface bytes of an ONNX model. Raises ValueError / FileNotFoundError
    (ImportError without the onnx package)."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ImportError("converting ONNX models needs the onnx package: pip install 'picoface[onnx]'") from None
    path = Path(path)
    return encode_imported(importer.import_onnx(path), task=task, head=head, preset=preset,
                           source=path.name, match_threshold=match_threshold,
                           metadata=metadata)
