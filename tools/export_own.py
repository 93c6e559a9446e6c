"""Export one of the project's own detectors (models/own_detector.py) to ONNX and .pface.

    python tools/export_own.py CHECKPOINT.pt -o extd_tiny.onnx --pface extd_tiny.pface
    python tools/export_own.py --variant extd_tiny --random -o /tmp/x.onnx   # untrained

Steps: load the training checkpoint (``tools/train_detector.py`` writes it; the variant
name is stored in it), export at opset 18 with dynamic H and W (multiples of 32, batch 1),
compare onnxruntime with PyTorch, then (``--pface``) import into the native format with the
``yunet`` head's metadata and compare the native engine with onnxruntime. Exits non-zero
when a comparison exceeds its tolerance.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models import own_detector as od  # noqa: E402
from models.common import randomize_bn_statistics  # noqa: E402
from tools import onnx_export  # noqa: E402

# Max abs error over all outputs (sigmoid scores, box and landmark offsets in stride units).
ORT_VS_TORCH = 1e-4
NATIVE_VS_ORT = 1e-4


def load(checkpoint=None, variant=None) -> od.Detector:
    """The model of a training checkpoint (its EMA weights when present), in eval mode; or
    a fresh ``variant`` with seeded random weights when no checkpoint is given."""
    if checkpoint is None:
        torch.manual_seed(0)
        return randomize_bn_statistics(od.build(variant)).eval()
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = od.build(variant or ckpt["variant"])
    model.load_state_dict(ckpt.get("ema") or ckpt["model"])
    return model.eval()


# `picoface export` (python/picoface/export.py): any variant, named by the checkpoint; the
# yunet head's input convention (BGR, 0..255). A checkpoint without a variant (another
# architecture's) fails to load with KeyError.
SPEC = onnx_export.ExportSpec(load=load, output_names=od.OUTPUT_NAMES,
                              mean=(0.0, 0.0, 0.0), color="bgr", multiple=od.SIZE_MULTIPLE,
                              example_size=(640, 480))


def export_onnx(model: od.Detector, out, example_size=(320, 256)) -> Path:
    w, h = example_size
    dims = [od.SIZE_MULTIPLE * torch.export.Dim(name, min=1, max=4096 // od.SIZE_MULTIPLE)
            for name in ("height", "width")]
    torch.onnx.export(model, (torch.zeros(1, 3, h, w),), str(out), dynamo=True, opset_version=18,
                      external_data=False, input_names=["input"],
                      output_names=list(od.OUTPUT_NAMES),
                      dynamic_shapes=({2: dims[0], 3: dims[1]},), optimize=True)
    return Path(out)


def convert(onnx_path, out, *, variant: str, provenance: str = "") -> Path:
    """The .pface of an exported model: the yunet head's metadata (decoding, strides, input
    convention, thresholds), with the architecture named and the training run's provenance."""
    from picoface import convert as pconvert

    meta = {"architecture": f"picoface-{variant}", "license": "see models/README.md"}
    if provenance:
        meta["provenance"] = provenance
    Path(out).write_bytes(pconvert.convert_onnx(onnx_path, task="detect", head="yunet",
                                                metadata=meta))
    return Path(out)


def torch_outputs(model, x: np.ndarray):
    with torch.no_grad():
        return [t.numpy() for t in model(torch.from_numpy(x))]


def ort_outputs(onnx_path, x: np.ndarray):
    import onnxruntime as ort
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return sess.run(list(od.OUTPUT_NAMES), {sess.get_inputs()[0].name: x})


def native_outputs(pface_path, x: np.ndarray):
    from picoface import _core
    engine = _core.Engine(str(pface_path), 1)
    by_name = dict(zip(engine.output_names, engine.run([x])))
    return [np.asarray(by_name[n]) for n in od.OUTPUT_NAMES]


def max_abs(a, b) -> float:
    return max(float(np.abs(np.asarray(p).reshape(-1) - np.asarray(q).reshape(-1)).max())
               for p, q in zip(a, b))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", nargs="?", help="training checkpoint (.pt)")
    p.add_argument("--variant", choices=od.VARIANTS, help="default: the checkpoint's")
    p.add_argument("--random", action="store_true", help="export a seeded untrained model")
    p.add_argument("-o", "--out", required=True, help="ONNX file to write")
    p.add_argument("--pface", help="also write the .pface here")
    p.add_argument("--image", help="real image (BGR) for the comparisons (default: random)")
    args = p.parse_args(argv)
    if not args.checkpoint and not (args.random and args.variant):
        p.error("give a checkpoint, or --random --variant NAME")
    model = load(None if args.random else args.checkpoint, args.variant)
    export_onnx(model, args.out)
    if args.image:
        import cv2
        img = cv2.imread(args.image)
        if img is None:
            print(f"error: cannot read {args.image}", file=sys.stderr)
            return 1
        h, w = img.shape[0] // 32 * 32, img.shape[1] // 32 * 32
        x = np.ascontiguousarray(img[:h, :w].astype(np.float32).transpose(2, 0, 1)[None])
    else:
        x = np.random.default_rng(0).uniform(0, 255, (1, 3, 256, 320)).astype(np.float32)
    ref = torch_outputs(model, x)
    ort_out = ort_outputs(args.out, x)
    err = max_abs(ort_out, ref)
    print(f"{args.out}: onnxruntime vs PyTorch on {x.shape[3]}x{x.shape[2]}: max abs error {err:.3g}")
    ok = err < ORT_VS_TORCH
    if args.pface:
        variant = model.variant
        if args.random:
            note = "untrained (seeded random weights): export check only"
        else:
            ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
            note = (f"trained by tools/train_detector.py, step {ckpt.get('step')}, seed "
                    f"{ckpt.get('seed')}; data: models/README.md")
        convert(args.out, args.pface, variant=variant, provenance=note)
        nerr = max_abs(native_outputs(args.pface, x), ort_out)
        print(f"{args.pface}: native vs onnxruntime: max abs error {nerr:.3g}")
        ok = ok and nerr < NATIVE_VS_ORT
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
