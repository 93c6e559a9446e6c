"""Shared fixtures. Material from ../shared (beside the repository) is optional: tests that
need it skip with the missing path named."""

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from picoface import _core

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
YUNET_S = SHARED / "models/ShiqiYu__libfacedetection.train/onnx/yunet_s_dynamic.onnx"
YUNET_S_320 = SHARED / "models/ShiqiYu__libfacedetection.train/onnx/yunet_s_320_320.onnx"
SCRFD = SHARED / "models/hpc203__scrfd-opencv/weights"
SFACE = SHARED / "models/opencv_zoo/face_recognition_sface_2021dec_int8bq.onnx"
ULTRA = SHARED / "models/Linzaer__Ultra-Light-Fast-Generic-Face-Detector-1MB/models/onnx"
PFLD = SHARED / "models/cunjian__pytorch_face_landmark/onnx/pfld.onnx"
FULLRES12 = SHARED / "data/wider/fullres12"
DLIB_FACES = SHARED / "data/dlib_examples/faces"

ISAS = list(_core.supported_isas())


def need(path: Path) -> Path:
    """Skips the calling test unless ``path`` exists."""
    if not path.exists():
        pytest.skip(f"needs {path} (../shared material, absent on this machine)")
    return path


def need_module(name: str):
    return pytest.importorskip(name, reason=f"needs the Python package {name!r}")


def box_iou(a, b):
    """IoU of one box ``a`` (x1, y1, x2, y2) with each row of ``b`` [N, 4]."""
    x1, y1 = np.maximum(a[0], b[:, 0]), np.maximum(a[1], b[:, 1])
    x2, y2 = np.minimum(a[2], b[:, 2]), np.minimum(a[3], b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter)


def fullres12_recall(detector):
    """Runs ``detector`` on the 12 full-size WIDER images with boxes (skips without them);
    returns (faces found, faces, detections on a face, detections) at IoU 0.5."""
    cv2 = need_module("cv2")
    gts = found = dets = matched = 0
    for line in need(FULLRES12 / "gt.jsonl").read_text().splitlines():
        rec = json.loads(line)
        faces = detector(cv2.imread(str(FULLRES12 / rec["image"])))
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
    return found, gts, matched, dets


def export_tool(name: str):
    """``tools/<name>.py`` (an exporter from .pth weights through models/), skipping unless
    torch (the [train] extra), onnxscript and onnxruntime are installed."""
    need_module("torch")
    need_module("onnxscript")
    need_module("onnxruntime")
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return importlib.import_module(f"tools.{name}")


def check_native_matches_onnxruntime(onnx_path, head: str, tensor, image, tmp_path):
    """Converts ``onnx_path`` to .pface and checks the native engine against onnxruntime:
    raw outputs on ``tensor`` within 1e-4 of the largest reference value, and detections
    on ``image`` (boxes within 0.5 px). Returns the native detector, which needs no head:
    the file describes it."""
    need_module("onnx")
    import picoface
    from picoface import modelfile
    from picoface.backends import open_backend
    from picoface.convert import convert_onnx
    pface = modelfile.save(tmp_path / f"{head}.pface", convert_onnx(onnx_path, task="detect", head=head))
    ref = open_backend(Path(onnx_path), "onnxruntime", 1).run(tensor)
    got = open_backend(pface, "native", 1).run(tensor)
    assert sorted(got) == sorted(ref)
    for name, r in ref.items():
        err = float(np.abs(got[name] - r).max()) / float(np.abs(r).max())
        assert err <= 1e-4, f"{head} output {name}: max error {err:.3g} of its largest value"
    native = picoface.FaceDetector(pface)
    assert native.backend == "native" and native.head.name == head
    faces = native(image)
    expected = picoface.FaceDetector(onnx_path, head=head)(image)
    assert len(faces) == len(expected) > 10
    np.testing.assert_allclose(faces.boxes, expected.boxes, atol=0.5)
    np.testing.assert_allclose(faces.landmarks, expected.landmarks, atol=0.5)
    np.testing.assert_allclose(faces.scores, expected.scores, atol=1e-3)
    return native


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(params=ISAS)
def isa(request):
    """Each ISA this machine runs, forced one by one for the pipeline."""
    before = _core.get_isa()
    _core.set_isa(request.param)
    yield request.param
    _core.set_isa(before)


@pytest.fixture(scope="session")
def yunet_model():
    need_module("onnxruntime")
    return need(YUNET_S)


@pytest.fixture(scope="session")
def wider_image():
    cv2 = need_module("cv2")
    path = need(FULLRES12 / "images/12_Group_Group_12_Group_Group_12_10.jpg")
    return cv2.imread(str(path))
