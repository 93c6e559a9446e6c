"""Export the project's 68-point landmarker (models/landmarker.py) to ONNX and .pface.

    python tools/export_landmarker.py /tmp/landmarks68/run1/last.pt -o lmk68.onnx --pface lmk68.pface
    python tools/export_landmarker.py --random -o /tmp/x.onnx --pface /tmp/x.pface   # untrained

Steps: load the training checkpoint's EMA weights (``tools/train_landmarker.py``), export at
opset 18 with a dynamic batch (the dynamo exporter), compare onnxruntime with PyTorch, then
(``--pface``) import into the native format with the teacher's ``pfld`` preset (same crop,
colour, normalisation and unit coordinates) and compare the native engine with PyTorch.
Exits non-zero when a comparison exceeds ``TOLERANCE``.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models import landmarker as lm  # noqa: E402
from models.common import randomize_bn_statistics  # noqa: E402

# Max abs error in unit coordinates (1e-4 of the crop side: 0.01 px at 112).
TOLERANCE = 1e-4
ARCHITECTURE = "picoface-lmk68"


def load(checkpoint=None) -> lm.Landmarker:
    """The EMA weights of a training checkpoint in eval mode; or, with no checkpoint, seeded
    random weights with non-trivial BN statistics (so an export check exercises BN folding)."""
    torch.manual_seed(0)
    model = lm.build()
    if checkpoint is None:
        return randomize_bn_statistics(model).eval()
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model.load_state_dict(ckpt.get("ema") or ckpt["model"])
    return model.eval()


def export_onnx(model: lm.Landmarker, out) -> Path:
    batch = torch.export.Dim("batch", min=1, max=1024)
    torch.onnx.export(model, (torch.zeros(2, 3, lm.INPUT_SIZE, lm.INPUT_SIZE),), str(out), dynamo=True,
                      opset_version=18, external_data=False, input_names=["input"],
                      output_names=[lm.OUTPUT_NAME], dynamic_shapes=({0: batch},), optimize=True)
    return Path(out)


def provenance(checkpoint) -> str:
    """The .pface provenance line of a training checkpoint (None: the untrained model)."""
    if checkpoint is None:
        return "untrained (seeded random weights): export check only"
    ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
    return (f"distilled from PFLD-68 by tools/train_landmarker.py, step {ck.get('step')}, seed "
            f"{ck.get('seed')}; data: models/README.md")


def convert(onnx_path, out, provenance: str) -> Path:
    """The .pface of an exported model, with the teacher's ``pfld`` landmark metadata."""
    from picoface import convert as pconvert
    meta = {"architecture": ARCHITECTURE, "license": "see models/README.md", "provenance": provenance}
    Path(out).write_bytes(pconvert.convert_onnx(onnx_path, task="landmarks", preset="pfld", metadata=meta))
    return Path(out)


def errors(model, onnx_path, pface_path, x: np.ndarray):
    """(onnxruntime vs PyTorch, native vs PyTorch) max abs errors on input ``x``; the second
    is None without a .pface."""
    import onnxruntime as ort
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    e_ort = float(np.abs(sess.run(None, {"input": x})[0] - ref).max())
    if pface_path is None:
        return e_ort, None
    from picoface.backends import open_backend
    got = open_backend(Path(pface_path), "native", 1).run(x)[lm.OUTPUT_NAME]
    return e_ort, float(np.abs(got - ref).max())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", nargs="?", help="training checkpoint (.pt)")
    p.add_argument("--random", action="store_true", help="export a seeded untrained model")
    p.add_argument("-o", "--out", required=True, help="ONNX file to write")
    p.add_argument("--pface", help="also write the .pface here")
    args = p.parse_args(argv)
    if not args.checkpoint and not args.random:
        p.error("give a checkpoint, or --random")
    model = load(None if args.random else args.checkpoint)
    export_onnx(model, args.out)
    if args.pface:
        convert(args.out, args.pface, provenance(None if args.random else args.checkpoint))
    x = np.random.default_rng(0).random((3, 3, lm.INPUT_SIZE, lm.INPUT_SIZE), dtype=np.float32)
    e_ort, e_native = errors(model, args.out, args.pface, x)
    print(f"{args.out}: onnxruntime vs PyTorch: max abs error {e_ort:.3g}")
    ok = e_ort < TOLERANCE
    if e_native is not None:
        print(f"{args.pface}: native vs PyTorch: max abs error {e_native:.3g}")
        ok = ok and e_native < TOLERANCE
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
