"""RetinaFace-MobileNet0.25 exported from its .pth through models/retinaface.py.

These tests need torch (the [train] extra: CI installs .[onnx,opencv,test] without it, so
they skip there), onnxruntime and the weight file in ../shared. The model is exported once
per session.
"""

import json
import sys

import numpy as np
import pytest

import picoface

from conftest import FULLRES12, REPO, SHARED, need, need_module

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


def box_iou(a, b):
    x1, y1 = np.maximum(a[0], b[:, 0]), np.maximum(a[1], b[:, 1])
    x2, y2 = np.minimum(a[2], b[:, 2]), np.minimum(a[3], b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter)


# Measured: 2/131 faces found, 2/536 detections on a face (YuNet-s: 131/131, 131/137 on the
# same set). Scores peak on the right cells but the box regression does not match: the
# definition does not yet reproduce this checkpoint (activation / FPN details the weight
# shapes cannot pin down). Strict, so it fails loudly once the definition is fixed.
@pytest.mark.xfail(strict=True, reason="models/retinaface.py does not reproduce the "
                   "checkpoint's box regression yet (recall 2/131)")
def test_recall_on_wider_fullres12(exported):
    cv2 = need_module("cv2")
    det = picoface.FaceDetector(exported[1], head="retinaface")
    gts = found = dets = matched = 0
    for line in need(FULLRES12 / "gt.jsonl").read_text().splitlines():
        rec = json.loads(line)
        faces = det(cv2.imread(str(FULLRES12 / rec["image"])))
        gt = np.float32(rec["boxes_xywh"])
        gt[:, 2:] += gt[:, :2]
        hit = np.zeros(len(faces), bool)
        for g in gt:
            ious = box_iou(g, faces.boxes) if len(faces) else np.zeros(0)
            found += bool(len(ious) and ious.max() >= 0.5)
            hit |= ious >= 0.5
        gts += len(gt)
        dets += len(faces)
        matched += int(hit.sum())
    assert gts == 131
    assert found / gts >= 0.95, f"recall {found}/{gts}"
    assert matched / dets >= 0.9, f"{matched}/{dets} detections on a face"


def test_native_backend_matches_onnxruntime(exported, wider_image, tmp_path):
    need_module("onnx")
    from picoface import modelfile
    from picoface.convert import convert_onnx
    onnx_path = exported[1]
    pface = modelfile.save(tmp_path / "retinaface.pface",
                           convert_onnx(onnx_path, task="detect", head="retinaface"))
    native = picoface.FaceDetector(pface)  # head, anchors and input convention from the file
    assert native.backend == "native" and native.head.name == "retinaface"
    assert native.head.anchor_sizes == ((16.0, 32.0), (64.0, 128.0), (256.0, 512.0))
    ref = picoface.FaceDetector(onnx_path, head="retinaface")(wider_image)
    got = native(wider_image)
    assert len(got) == len(ref) > 10
    np.testing.assert_allclose(got.boxes, ref.boxes, atol=0.5)
    np.testing.assert_allclose(got.landmarks, ref.landmarks, atol=0.5)
    np.testing.assert_allclose(got.scores, ref.scores, atol=1e-3)
