"""The tflite backend against the native engine and onnxruntime, on a tiny detector built at
test time in both formats from the same weights (tests/tiny_tflite.py; no TensorFlow).

Tolerances: raw outputs within 1e-5 of their largest value (float32, different summation
order in the 128x128 average pools); detections: same count, boxes within 1e-3 px, scores
within 1e-5; embeddings (unit length) within 1e-5 per component.
"""

import sys
import threading

import numpy as np
import pytest

from conftest import need_module

need_module("ai_edge_litert")
need_module("onnx")

import picoface  # noqa: E402
import tiny_tflite  # noqa: E402
from picoface.backends import open_backend  # noqa: E402
from picoface.backends import tflite as tfl  # noqa: E402


@pytest.fixture(scope="module")
def models():
    from picoface.convert import encode_imported
    from picoface.importer import import_onnx

    onnx = tiny_tflite.onnx_bytes()
    pface = encode_imported(import_onnx(onnx), task="detect", head="extd", source="tiny.onnx")
    return {"tflite": tiny_tflite.tflite_bytes(), "tflite_nchw": tiny_tflite.tflite_bytes(
        channels_last=False), "onnx": onnx, "pface": pface}


@pytest.fixture(scope="module")
def image():
    """A seeded 300x200 BGR image with structure (gradients + noise), not a flat field."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:200, 0:300]
    base = np.stack([x * 0.8, y * 1.2, (x + y) * 0.5], axis=-1)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def _close(got, ref, name):
    err = float(np.abs(got - ref).max()) / float(np.abs(ref).max())
    assert err <= 1e-5, f"output {name}: max error {err:.3g} of its largest value"


@pytest.mark.parametrize("layout", ["tflite", "tflite_nchw"])
@pytest.mark.parametrize("size", [(128, 128), (384, 256)])
def test_raw_outputs_match_native_and_onnxruntime(models, layout, size, rng):
    need_module("onnxruntime")
    w, h = size
    tensor = rng.normal(0, 40, (1, 3, h, w)).astype(np.float32)
    got = open_backend(models[layout], "tflite", 1).run(tensor)
    for ref_name, backend in (("pface", "native"), ("onnx", "onnxruntime")):
        ref = open_backend(models[ref_name], backend, 1).run(tensor)
        assert sorted(got) == sorted(ref) == ["boxes", "scores"]
        for name in ref:
            assert got[name].shape == ref[name].shape, (name, got[name].shape, ref[name].shape)
            _close(got[name], ref[name], f"{name} vs {backend}")


def test_input_layout_and_shape_are_reported_nchw(models):
    nhwc = open_backend(models["tflite"], "tflite", 1)
    nchw = open_backend(models["tflite_nchw"], "tflite", 1)
    assert nhwc.nhwc and not nchw.nhwc
    assert nhwc.input_shape == nchw.input_shape == (1, 3, None, None)
    assert nhwc.output_names == ["scores", "boxes"]


def test_detector_matches_native(models, image):
    tfl_det = picoface.FaceDetector(models["tflite"], head="extd", score_threshold=0.55)
    native = picoface.FaceDetector(models["pface"], score_threshold=0.55)
    assert tfl_det.backend == "tflite" and native.backend == "native"
    got, ref = tfl_det(image), native(image)
    assert len(got) == len(ref) > 3
    np.testing.assert_allclose(got.boxes, ref.boxes, atol=1e-3)
    np.testing.assert_allclose(got.scores, ref.scores, atol=1e-5)


def test_concurrent_calls_give_the_same_result(models, rng):
    backend = open_backend(models["tflite"], "tflite", 1)
    tensors = [rng.normal(0, 40, (1, 3, 128 * (1 + i % 2), 256)).astype(np.float32)
               for i in range(4)]
    expected = [backend.run(t)["scores"] for t in tensors]
    results = [None] * 8

    def work(i):
        results[i] = [backend.run(t)["scores"] for t in tensors]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        for a, b in zip(r, expected):
            np.testing.assert_array_equal(a, b)


def test_backend_choice_follows_the_file(models):
    assert open_backend(models["tflite"], "auto", 1).name == "tflite"
    with pytest.raises(ValueError, match="not one"):
        open_backend(models["onnx"], "tflite", 1)
    with pytest.raises(ValueError, match="backend='tflite'"):
        open_backend(models["tflite"], "onnxruntime", 1)
    with pytest.raises(ValueError, match="backend='tflite'"):
        open_backend(models["tflite"], "native", 1)


def test_missing_runtime_names_the_extra(models, monkeypatch):
    for name in ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime",
                 "tflite_runtime.interpreter"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError
    with pytest.raises(ImportError, match=r"picoface\[tflite\]"):
        open_backend(models["tflite"], "tflite", 1)


def test_quantized_io_round_trips():
    detail = {"dtype": np.int8, "quantization": (0.5, -3)}
    x = np.array([-100.0, -1.0, 0.0, 0.26, 10.0, 100.0], np.float32)
    q = tfl._quantize(x, detail)
    np.testing.assert_array_equal(q, [-128, -5, -3, -2, 17, 127])  # +-200 clip
    np.testing.assert_allclose(tfl._dequantize(q, detail), [-62.5, -1.0, 0.0, 0.5, 10.0, 65.0])


def test_embedder_matches_native():
    from picoface.convert import encode_imported
    from picoface.importer import import_onnx

    pface = encode_imported(import_onnx(tiny_tflite.embedder_onnx_bytes()), task="embed",
                            preset="arcface", source="tiny_embed.onnx")
    tfl_emb = picoface.FaceEmbedder(tiny_tflite.embedder_tflite_bytes(), preset="arcface")
    native = picoface.FaceEmbedder(pface)
    assert tfl_emb.backend == "tflite" and native.backend == "native"
    assert tfl_emb.crop_size == native.crop_size == (112, 112)
    crops = np.random.default_rng(5).integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    got, ref = tfl_emb(crops), native(crops)
    assert got.shape == ref.shape == (3, 392)
    np.testing.assert_allclose(got, ref, atol=1e-5)  # unit vectors: absolute = relative
    assert float(np.abs(got[0] - got[1]).max()) > 1e-3  # distinct crops, distinct embeddings
