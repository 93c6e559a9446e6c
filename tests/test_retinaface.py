"""RetinaFace-MobileNet0.25 exported from its .pth through models/retinaface.py.

These tests need torch (the [train] extra: CI installs .[onnx,opencv,test] without it, so
they skip there), onnxruntime and the weight file in ../shared. The model is exported once
per session.
"""

import sys

import numpy as np
import pytest

import picoface

from conftest import REPO, SHARED, fullres12_recall, need, need_module

WEIGHTS = SHARED / "models/biubug6__Face-Detector-1MB-with-landmark/weights/mobilenet0.25_Final.pth"


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    if "torch" not in sys.modules:
        pytest.importorskip("torch", reason="needs torch (the [train] extra, absent in CI) to "
                            "export RetinaFace from its .pth")
    need_module("onnxruntime")
    need_module("onnxscript")
    need(WEIGHTS)
    sys.path.insert(0, str(REPO))
    from tools import export_retinaface
    out = tmp_path_factory.mktemp("retinaface") / "retinaface_mnet025.onnx"
    return export_retinaface, export_retinaface.export(WEIGHTS, out)


def test_export_matches_pytorch(exported, wider_image):
    tool, onnx_path = exported
    x = tool.input_tensor(wider_image)
    assert x.shape[2:] == (672, 1024)
    # Measured 2.7e-05 on this frame (scores, box and landmark deltas together).
    assert tool.max_abs_error(WEIGHTS, onnx_path, x) < tool.TOLERANCE


# Measured on the 12 full-size WIDER images (IoU 0.5, score 0.5): 131/131 faces found,
# 131/144 detections on a face (through onnxruntime and the native engine alike).
def test_recall_on_wider_fullres12(exported):
    found, gts, matched, dets = fullres12_recall(picoface.FaceDetector(exported[1], head="retinaface"))
    assert gts == 131
    assert found / gts >= 0.95, f"recall {found}/{gts}"
    assert matched / dets >= 0.85, f"{matched}/{dets} detections on a face"


def test_native_backend_matches_onnxruntime(exported, wider_image, tmp_path):
    need_module("onnx")
    from picoface import modelfile
    from picoface.convert import convert_onnx
    onnx_path = exported[1]
    pface = modelfile.save(tmp_path / "retinaface.pface",
                           convert_onnx(onnx_path, task="detect", head="retinaface"))
    native = picoface.FaceDetector(pface)  # head, anchors and input convention from the file
    assert native.backend == "native" and native.head.name == "retinaface"
    assert native.head.anchor_sizes == ((10.0, 20.0), (32.0, 64.0), (128.0, 256.0))
    ref = picoface.FaceDetector(onnx_path, head="retinaface")(wider_image)
    got = native(wider_image)
    assert len(got) == len(ref) > 10
    np.testing.assert_allclose(got.boxes, ref.boxes, atol=0.5)
    np.testing.assert_allclose(got.landmarks, ref.landmarks, atol=0.5)
    np.testing.assert_allclose(got.scores, ref.scores, atol=1e-3)
