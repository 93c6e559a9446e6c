"""`picoface export`: a checkpoint through the project's definitions to ONNX, run as a user
would, and its errors (missing checkpoint, no PyTorch -> the [export] extra, a checkpoint
that no definition loads). TFLite output: test_tflite_export.py."""

import json
import os
import subprocess
import sys

import numpy as np

from conftest import REPO, SHARED, need, need_module
from test_cli_surface import _one_line_error, _without, cli

EXTD_32 = SHARED / "models/clovaai__EXTD_Pytorch/weights/EXTD_32.pth"


def subprocess_in_repo(args, env=None):
    """The CLI run from the repository root (where export finds models/ and tools/)."""
    return subprocess.run([sys.executable, "-m", "picoface", *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=REPO)


def test_missing_checkpoint():
    _one_line_error(cli("export", "missing.pth", "-o", "x.onnx"), "checkpoint not found")


def test_without_torch_names_the_extra(tmp_path):
    ckpt = tmp_path / "m.pth"
    ckpt.write_bytes(b"x")
    out = subprocess_in_repo(["export", ckpt, "-o", tmp_path / "m.onnx"],
                             env=_without(tmp_path, "torch"))
    _one_line_error(out, "picoface[export]", "torch")


def test_outside_a_source_checkout(tmp_path):
    ckpt = tmp_path / "m.pth"
    ckpt.write_bytes(b"x")
    env = dict(os.environ, PICOFACE_SOURCE=str(tmp_path))
    out = subprocess_in_repo(["export", ckpt, "-o", tmp_path / "m.onnx"], env=env)
    _one_line_error(out, "source checkout", "PICOFACE_SOURCE")


def test_checkpoint_of_no_known_architecture(tmp_path):
    torch = need_module("torch")
    need_module("onnxscript")
    need_module("onnxruntime")
    ckpt = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, ckpt)
    out = subprocess_in_repo(["export", ckpt, "-o", tmp_path / "m.onnx"])
    _one_line_error(out, "loads into none of ['extd', 'own_detector', 'retinaface']")


def test_export_extd32_to_onnx(tmp_path):
    need_module("torch")
    need_module("onnxscript")
    need_module("onnxruntime")
    out_path = tmp_path / "extd32.onnx"
    out = subprocess_in_repo(["export", need(EXTD_32), "-o", out_path, "--json"])
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)  # torch's progress lines went to stderr
    assert report["arch"] == "extd" and report["max_abs_error"] < 1e-4 == report["tolerance"]
    import picoface

    detector = picoface.FaceDetector(out_path, head="extd")
    image = np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    detector(image)  # runs: outputs named and shaped as the extd head expects
