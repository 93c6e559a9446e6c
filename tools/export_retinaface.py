"""Export RetinaFace-MobileNet0.25 weights to ONNX through the project's own definition.

    python tools/export_retinaface.py mobilenet0.25_Final.pth -o retinaface_mnet025.onnx

Loads the .pth strictly into ``models/retinaface.py``, exports at opset 18 with dynamic H and
W (batch 1), and checks onnxruntime against PyTorch on a real image (or a fixed random input
when no image is given); exits non-zero when the max abs error is 1e-4 or more.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models import retinaface  # noqa: E402

TOLERANCE = 1e-4


def export(weights, out, *, height: int = 480, width: int = 640) -> Path:
    """Writes the ONNX file for ``weights`` to ``out``; returns ``out``."""
    model = retinaface.load(weights)
    dummy = torch.zeros(1, 3, height, width)
    h, w = torch.export.Dim("height", min=32, max=4096), torch.export.Dim("width", min=32, max=4096)
    torch.onnx.export(model, (dummy,), str(out), dynamo=True, opset_version=18,
                      external_data=False, input_names=["input"],
                      output_names=list(retinaface.RetinaFace.output_names),
                      dynamic_shapes=({2: h, 3: w},), optimize=True)
    return Path(out)


def input_tensor(image_bgr: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 BGR -> float32 1x3xHxW minus the mean, cropped to multiples of 32."""
    h, w = image_bgr.shape[0] // 32 * 32, image_bgr.shape[1] // 32 * 32
    x = image_bgr[:h, :w].astype(np.float32) - np.float32(retinaface.MEAN_BGR)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def max_abs_error(weights, onnx_path, x: np.ndarray) -> float:
    """Largest |onnxruntime - PyTorch| over the three outputs for input ``x``."""
    import onnxruntime as ort
    model = retinaface.load(weights)
    with torch.no_grad():
        ref = [t.numpy() for t in model(torch.from_numpy(x))]
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(list(retinaface.RetinaFace.output_names), {sess.get_inputs()[0].name: x})
    return max(float(np.abs(g - r).max()) for g, r in zip(got, ref))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("weights")
    p.add_argument("-o", "--out", required=True)
    p.add_argument("--image", help="real image (BGR, any size) for the PyTorch vs onnxruntime check")
    args = p.parse_args(argv)
    export(args.weights, args.out)
    if args.image:
        import cv2
        image = cv2.imread(args.image)
        if image is None:
            print(f"error: cannot read {args.image}", file=sys.stderr)
            return 1
        x = input_tensor(image)
    else:
        x = np.random.default_rng(0).uniform(-128, 128, (1, 3, 480, 640)).astype(np.float32)
    err = max_abs_error(args.weights, args.out, x)
    print(f"{args.out}: onnxruntime vs PyTorch on {x.shape[3]}x{x.shape[2]}: max abs error {err:.3g}")
    return 0 if err < TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
