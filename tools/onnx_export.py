"""Shared steps of the tools that export a detector from its .pth through a definition in
models/: export at opset 18 with dynamic H and W, build a real-image input in the model's
convention, and compare onnxruntime with PyTorch."""

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, Tuple

import numpy as np
import torch

# onnxruntime vs PyTorch, max abs error over all outputs (scores, box / landmark deltas).
TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExportSpec:
    """How one detector family is loaded, exported and fed."""

    load: Callable[[str], torch.nn.Module]  # weight file -> model in eval mode
    output_names: Tuple[str, ...]
    mean: Tuple[float, float, float]  # per network channel, 0..255 units
    color: str  # network channel order: "bgr" or "rgb"
    multiple: int  # H and W must be multiples of this
    example_size: Tuple[int, int] = (640, 480)  # (W, H) traced; any multiple works after


def export(spec: ExportSpec, weights, out) -> Path:
    """Writes the ONNX file for ``weights`` to ``out``; returns ``out``."""
    model = spec.load(weights)
    w, h = spec.example_size
    # Dims as multiples of the coarsest stride keep every level exactly 2x the next for
    # the constant-factor upsampling.
    dims = [spec.multiple * torch.export.Dim(name, min=1, max=4096 // spec.multiple)
            for name in ("height", "width")]
    torch.onnx.export(model, (torch.zeros(1, 3, h, w),), str(out), dynamo=True, opset_version=18,
                      external_data=False, input_names=["input"],
                      output_names=list(spec.output_names),
                      dynamic_shapes=({2: dims[0], 3: dims[1]},), optimize=True)
    return Path(out)


def input_tensor(spec: ExportSpec, image_bgr: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 BGR -> float32 1x3xHxW in the model's channel order minus its mean,
    cropped to multiples of ``spec.multiple``."""
    m = spec.multiple
    h, w = image_bgr.shape[0] // m * m, image_bgr.shape[1] // m * m
    x = image_bgr[:h, :w]
    if spec.color == "rgb":
        x = x[:, :, ::-1]
    x = x.astype(np.float32) - np.float32(spec.mean)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def max_abs_error(spec: ExportSpec, weights, onnx_path, x: np.ndarray) -> float:
    """Largest |onnxruntime - PyTorch| over all outputs for input ``x``."""
    import onnxruntime as ort
    model = spec.load(weights)
    with torch.no_grad():
        ref = [t.numpy() for t in model(torch.from_numpy(x))]
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(list(spec.output_names), {sess.get_inputs()[0].name: x})
    return max(float(np.abs(g - r).max()) for g, r in zip(got, ref))


def main(spec: ExportSpec, description: str, argv: Sequence[str] = None) -> int:
    """Command line of an export tool: weights, -o out, --image for the check."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("weights")
    p.add_argument("-o", "--out", required=True)
    p.add_argument("--image", help="real image (BGR, any size) for the PyTorch vs onnxruntime check")
    args = p.parse_args(argv)
    export(spec, args.weights, args.out)
    if args.image:
        import cv2
        image = cv2.imread(args.image)
        if image is None:
            print(f"error: cannot read {args.image}", file=sys.stderr)
            return 1
        x = input_tensor(spec, image)
    else:
        w, h = spec.example_size
        x = np.random.default_rng(0).uniform(-128, 128, (1, 3, h, w)).astype(np.float32)
    err = max_abs_error(spec, args.weights, args.out, x)
    print(f"{args.out}: onnxruntime vs PyTorch on {x.shape[3]}x{x.shape[2]}: max abs error {err:.3g}")
    return 0 if err < TOLERANCE else 1
