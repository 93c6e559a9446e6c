"""RetinaFace-MobileNet0.25 exported from its .pth through models/retinaface.py.

These tests need torch and onnxscript (the [train] extra, which the README's test command
installs), onnxruntime and the weight file in ../shared; without them they skip. The model is
exported once per module.
"""

import pytest

import picoface
from picoface.heads import HEADS

from conftest import (SHARED, check_native_matches_onnxruntime, export_tool, fullres12_recall,
                      need)

WEIGHTS = SHARED / "models/biubug6__Face-Detector-1MB-with-landmark/weights/mobilenet0.25_Final.pth"


@pytest.fixture(scope="module")
def tool():
    return export_tool("export_retinaface")


@pytest.fixture(scope="module")
def exported(tool, tmp_path_factory):
    out = tmp_path_factory.mktemp("retinaface") / "retinaface_mnet025.onnx"
    return tool.onnx_export.export(tool.SPEC, need(WEIGHTS), out)


def test_weights_load_strictly(tool):
    from models import retinaface
    model = retinaface.load(need(WEIGHTS))  # strict: every tensor named and shaped as defined
    assert sum(p.numel() for p in model.parameters()) == 426_608


def test_head_matches_definition(tool):
    from models import retinaface
    head = HEADS["retinaface"]
    assert head.strides == retinaface.STRIDES and head.anchor_sizes == retinaface.ANCHOR_SIZES
    assert head.variances == retinaface.VARIANCES and head.mean == retinaface.MEAN_BGR
    assert head.color == tool.SPEC.color and head.size_multiple == tool.SPEC.multiple


def test_export_matches_pytorch(tool, exported, wider_image):
    x = tool.onnx_export.input_tensor(tool.SPEC, wider_image)
    assert x.shape[2:] == (672, 1024)
    # Measured 2.7e-05 on this frame (scores, box and landmark deltas together).
    assert tool.onnx_export.max_abs_error(tool.SPEC, WEIGHTS, exported, x) < tool.onnx_export.TOLERANCE


def test_native_backend_matches_onnxruntime(tool, exported, wider_image, tmp_path):
    x = tool.onnx_export.input_tensor(tool.SPEC, wider_image)
    native = check_native_matches_onnxruntime(exported, "retinaface", x, wider_image, tmp_path)
    assert native.head.anchor_sizes == ((10.0, 20.0), (32.0, 64.0), (128.0, 256.0))


# Measured on the 12 full-size WIDER images (IoU 0.5, score 0.5): 131/131 faces found,
# 131/144 detections on a face (onnxruntime and the native engine alike).
def test_recall_on_wider_fullres12(exported):
    found, gts, matched, dets = fullres12_recall(picoface.FaceDetector(exported, head="retinaface"))
    assert gts == 131
    assert found / gts >= 0.95, f"recall {found}/{gts}"
    assert matched / dets >= 0.85, f"{matched}/{dets} detections on a face"
