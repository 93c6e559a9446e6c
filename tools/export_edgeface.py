"""Export an EdgeFace-style recogniser (models/edgeface.py) from a training checkpoint to ONNX
and to the native .pface format with its ``embed`` metadata.

    python -m tools.export_edgeface /tmp/edgeface/xxs/last.pt -o /tmp/edgeface/xxs.pface \
        [--onnx /tmp/edgeface/xxs.onnx] [--match-threshold "0.31@celeba folds 0-7 FAR=1e-3"]

The .pface metadata says everything the SDK needs to use the file: the input convention (RGB,
(x - 127.5) / 127.5), the 112x112 crop and the ArcFace 5-point template it is aligned to, the
embedding width, the calibrated cosine match threshold and where it was calibrated.
"""

import argparse
import logging
import sys
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import edgeface  # noqa: E402

log = logging.getLogger("picoface.tools")

# onnxruntime / native engine vs PyTorch, max abs error on the raw 512-d output.
TOLERANCE = 1e-4


def load_checkpoint(path) -> edgeface.EdgeFace:
    """The model of a train_recognizer checkpoint with its EMA weights, in eval mode."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model = edgeface.build(ckpt["arch"])
    model.load_state_dict(ckpt["ema"], strict=True)
    return model.eval()


def export_onnx(model: edgeface.EdgeFace, out) -> Path:
    """Writes ``model`` as ONNX (opset 18, dynamic batch, fixed 112x112) to ``out``."""
    model = model.eval()
    batch = torch.export.Dim("batch", min=1, max=1024)
    size = edgeface.INPUT_SIZE
    torch.onnx.export(model, (torch.zeros(2, 3, size, size),), str(out), dynamo=True,
                      opset_version=18, external_data=False, input_names=["input"],
                      output_names=["embedding"], dynamic_shapes=({0: batch},), optimize=True)
    return Path(out)


def pface_metadata(arch: str, extra: Optional[Dict[str, object]] = None) -> Dict[str, object]:
    """Metadata written over the ``embed`` / ``arcface`` preset defaults."""
    from picoface.align import ARCFACE_TEMPLATE_112
    meta = {"architecture": arch, "embed.dim": edgeface.EMBEDDING_DIM,
            "align.template": [float(v) for v in ARCFACE_TEMPLATE_112.ravel()],
            "align.template_size": [edgeface.INPUT_SIZE, edgeface.INPUT_SIZE]}
    meta.update(extra or {})
    return meta


def to_pface(onnx_path, out, arch: str, *, match_threshold: Optional[str] = None,
             extra: Optional[Dict[str, object]] = None) -> Path:
    """Converts the exported ONNX file to .pface with ``embed`` metadata."""
    from picoface import modelfile
    from picoface.convert import convert_onnx
    blob = convert_onnx(onnx_path, task="embed", preset="arcface", match_threshold=match_threshold,
                        metadata=pface_metadata(arch, extra))
    return modelfile.save(out, blob)


def max_abs_error(model: edgeface.EdgeFace, model_file, x: np.ndarray, backend: str) -> float:
    """Largest |backend - PyTorch| on the raw embedding for input ``x`` [N, 3, 112, 112]."""
    from picoface.backends import open_backend
    with torch.no_grad():
        ref = model.eval()(torch.from_numpy(x)).numpy()
    net = open_backend(Path(model_file), backend, 1)
    got = np.concatenate([net.run(x[i:i + 1])[net.output_names[0]] for i in range(len(x))])
    return float(np.abs(got.reshape(ref.shape) - ref).max())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="train_recognizer checkpoint (.pt)")
    p.add_argument("-o", "--out", required=True, help=".pface file to write")
    p.add_argument("--onnx", help="ONNX file to write (default: beside --out)")
    p.add_argument("--match-threshold", help='calibrated cosine threshold, "T@WHERE"')
    p.add_argument("--model-id", help="metadata model.id (default: from the ONNX file's hash)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    model = load_checkpoint(args.checkpoint)
    onnx_path = Path(args.onnx or Path(args.out).with_suffix(".onnx"))
    export_onnx(model, onnx_path)
    extra = {"training": ckpt.get("recipe", "")}
    if args.model_id:
        extra["model.id"] = args.model_id
    to_pface(onnx_path, args.out, ckpt["arch"], match_threshold=args.match_threshold, extra=extra)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 112, 112)).astype(np.float32)
    errs = {b: max_abs_error(model, f, x, b) for b, f in (("onnxruntime", onnx_path),
                                                         ("native", Path(args.out)))}
    log.info("%s, %s: max abs error vs PyTorch %s", onnx_path, args.out,
             ", ".join(f"{b} {e:.3g}" for b, e in errs.items()))
    return 0 if max(errs.values()) < TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
