"""Bad input gives a ValueError / FileNotFoundError naming what was expected and what
came; never a crash."""

import numpy as np
import pytest

import picoface
from picoface import _core

from conftest import need_module


@pytest.fixture(scope="module")
def det(yunet_model):
    return picoface.FaceDetector(yunet_model, head="yunet")


@pytest.mark.parametrize("image,match", [
    (np.zeros((10, 10, 3), np.float32), r"expected uint8 HxWx3 bgr image, got float32 \(10, 10, 3\)"),
    (np.zeros((10, 10, 4), np.uint8), r"got uint8 \(10, 10, 4\)"),
    (np.zeros((10, 10), np.uint8), r"got uint8 \(10, 10\)"),
    (np.zeros((2, 10, 10, 3), np.uint8), r"got uint8 \(2, 10, 10, 3\)"),
    (np.zeros((0, 10, 3), np.uint8), r"non-empty"),
    (np.zeros((10, 0, 3), np.uint8), r"non-empty"),
    (np.zeros((16385, 1, 3), np.uint8), r"sides <= 16384"),
    ([[1, 2, 3]], r"got list"),
    (None, r"got NoneType"),
])
def test_bad_images(det, image, match):
    with pytest.raises(ValueError, match=match):
        det(image)


def test_bad_color(det):
    with pytest.raises(ValueError, match="expected color one of"):
        det(np.zeros((8, 8, 3), np.uint8), color="bgra")
    with pytest.raises(ValueError, match=r"expected uint8 HxW or HxWx1 gray image"):
        det(np.zeros((8, 8, 3), np.uint8), color="gray")


def test_non_contiguous_images_are_copied_once(det, wider_image):
    # Documented: row-strided views are read in place; other layouts are copied once.
    ref = det(wider_image)
    fortran = np.asfortranarray(wider_image)
    np.testing.assert_array_equal(det(fortran).boxes, ref.boxes)
    flipped = wider_image[::-1]
    np.testing.assert_array_equal(det(np.ascontiguousarray(flipped)).boxes, det(flipped).boxes)
    padded = np.zeros((wider_image.shape[0], wider_image.shape[1] + 7, 3), np.uint8)
    padded[:, :wider_image.shape[1]] = wider_image
    np.testing.assert_array_equal(det(padded[:, :wider_image.shape[1]]).boxes, ref.boxes)


@pytest.mark.parametrize("kwargs,match", [
    (dict(score_threshold=1.5), r"score_threshold in \[0, 1\], got 1.5"),
    (dict(score_threshold=-0.1), r"score_threshold"),
    (dict(score_threshold=float("nan")), r"score_threshold"),
    (dict(nms_threshold=2), r"nms_threshold in \[0, 1\], got 2"),
    (dict(max_faces=-1), r"max_faces a non-negative integer"),
    (dict(max_faces=1.5), r"max_faces"),
    (dict(input_size=(100, 64)), r"multiples of 32"),
    (dict(input_size=(0, 64)), r"input_size sides"),
    (dict(input_size=(8192, 8192)), r"input_size sides <= 4096"),
    (dict(input_size="big"), r"input_size as \(width, height\)"),
    (dict(backend="gpu"), r"expected backend one of"),
    (dict(backend="native"), r"runs .pface models: convert the ONNX file first"),
    (dict(backend="tflite"), r"the tflite backend runs .tflite models; this is not one"),
    (dict(head="nope"), r"expected head one of"),
    (dict(nms_method="fast"), r"expected nms_method one of"),
])
def test_bad_detector_options(yunet_model, kwargs, match):
    args = dict(head="yunet")
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        picoface.FaceDetector(yunet_model, **args)


def test_bad_model_paths_and_files(tmp_path):
    need_module("onnxruntime")
    with pytest.raises(FileNotFoundError, match="detector model file not found"):
        picoface.FaceDetector(tmp_path / "missing.onnx", head="yunet")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07not a model" * 50)
    with pytest.raises(ValueError, match="could not load the model"):
        picoface.FaceDetector(junk, head="yunet")
    with pytest.raises(ValueError, match="empty buffer"):
        picoface.FaceDetector(b"", head="yunet")
    with pytest.raises(ValueError, match="as a path or bytes, got int"):
        picoface.FaceDetector(42, head="yunet")
    with pytest.raises(FileNotFoundError, match="not found"):
        picoface.FaceDetector("no-such-shipped-model")


def test_bad_landmarks():
    img = np.zeros((50, 50, 3), np.uint8)
    good = picoface.ARCFACE_TEMPLATE_112.copy()
    nan = good.copy()
    nan[1, 0] = np.nan
    inf = good.copy()
    inf[0, 1] = np.inf
    for lm, match in ((nan, "finite landmarks"), (inf, "finite landmarks"),
                      (np.zeros((5, 3)), r"P x 2 or N x P x 2"), (np.zeros((4, 2)), "4"),
                      (np.ones((5, 2)), "degenerate"), ("abc", "N x P x 2 float")):
        with pytest.raises(ValueError, match=match):
            picoface.align(img, lm)
    for size, match in ((0, "size sides"), ((112, -1), "size sides"), (100000, "size sides")):
        with pytest.raises(ValueError, match=match):
            picoface.align(img, good, size=size)


def test_bad_embeddings():
    with pytest.raises(ValueError, match="equal dimension, got 3 and 4"):
        picoface.cosine(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="finite"):
        picoface.cosine(np.array([1.0, np.nan]), np.ones(2))
    with pytest.raises(ValueError, match=r"\[D\] or \[N, D\]"):
        picoface.cosine(np.ones((2, 2, 2)), np.ones(2))


def test_core_guards_without_python_validation():
    # The C++ core checks its own contract too (no crash if the Python layer is bypassed).
    with pytest.raises(ValueError):
        _core.preprocess(np.zeros((4, 4, 3), np.uint8), _core.letterbox(4, 4, 4, 4, "none"), "bgr",
                         "bgr", [0, 0, 0], [0, 1, 1], "nchw", "float32", 1.0, 0, "auto", [0, 0, 0])
    with pytest.raises(ValueError, match="larger than the network input"):
        _core.letterbox(100, 100, 32, 32, "none")
    with pytest.raises(ValueError, match="uint8"):
        _core.align(np.zeros((4, 4, 3), np.float32), np.zeros((1, 5, 2), np.float32),
                    np.zeros((5, 2), np.float32), 112, 112, 112, 112, 0)
    with pytest.raises(ValueError, match="tap outside"):
        _core.kernel_resample_row(np.zeros(6, np.uint8), 3, np.int32([1]), np.ones(2, np.float32), 2, "scalar")
