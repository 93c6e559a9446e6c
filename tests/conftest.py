"""Shared fixtures. Material from ../shared (beside the repository) is optional: tests that
need it skip with the missing path named."""

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
