"""TFLite output (the [export] extra: torch, litert-torch, ai-edge-quantizer; skipped without
it): the .pface -> PyTorch interpreter against the native engine, fp32 and full-integer
TFLite of the shipped detector through it, and ``picoface export --to tflite [--int8]`` of a
checkpoint of the project's own detector, run as a user would.

Tolerances: interpreter and fp32 TFLite outputs within 1e-4 of the largest reference value
(float32, other summation orders; measured ~1e-6); fp32 TFLite detections as native (boxes
within 0.05 px); int8 TFLite detections vs native fp32 on the 12 full-size WIDER photos:
recall and precision at IoU 0.5 at least 0.85 and mean IoU of the matched boxes at least
0.85 (measured with the test's 8 calibration images: recall 0.985, precision 0.971, mean IoU
0.889; with 50: 1.000, 1.000, 0.926).
"""

import json

import numpy as np
import pytest

from conftest import FULLRES12, SFACE, YUNET_S, export_tool, need, need_module
from test_cli_surface import _one_line_error, _without, cli
from test_export_cli import subprocess_in_repo

need_module("torch")
need_module("ai_edge_litert")

import picoface  # noqa: E402
from picoface import _core, weights  # noqa: E402

TEST183 = FULLRES12.parent / "test183/images"


def _rel_error(got, ref):
    assert sorted(got) == sorted(ref)
    return max(float(np.abs(np.asarray(got[k]).reshape(np.shape(r)) - r).max()) / float(np.abs(r).max())
               for k, r in ref.items())


def _native(blob, x):
    engine = _core.Engine(blob, 1)
    return {n: np.asarray(v) for n, v in zip(engine.output_names, engine.run([x]))}


def _interpreted(blob, x):
    import torch

    from picoface.pface_torch import PfaceModule
    with torch.no_grad():
        return {k: v.numpy() for k, v in PfaceModule(blob).eval()(torch.from_numpy(x)).items()}


def _photos():
    cv2 = need_module("cv2")
    return [cv2.imread(str(p)) for p in sorted(need(FULLRES12 / "images").glob("*.jpg"))]


def test_interpreter_matches_native_on_yunet_s(wider_image):
    need_module("onnx")
    from picoface.convert import convert_onnx

    blob = convert_onnx(need(YUNET_S), task="detect", head="yunet")
    x = picoface.FaceDetector(blob, input_size=(640, 480)).preprocess(wider_image)[0]
    assert _rel_error(_interpreted(blob, x), _native(blob, x)) <= 1e-4


def test_interpreter_matches_native_on_sface(rng):
    need_module("onnx")
    from picoface.convert import convert_onnx

    blob = convert_onnx(need(SFACE), task="embed", preset="sface")
    x = rng.uniform(0, 255, (1, 3, 112, 112)).astype(np.float32)
    assert _rel_error(_interpreted(blob, x), _native(blob, x)) <= 1e-4


def test_interpreter_refuses_ops_it_lacks():
    from picoface.pface_torch import PfaceModule
    from picoface.quant_graph import load_graph

    # The shipped detector with its sigmoids turned into Erf: a valid file (the native
    # engine runs Erf), an op the interpreter does not have.
    graph = load_graph(weights.path(weights.DEFAULT_DETECTOR).read_bytes())
    for op in graph.ops:
        if op.type == "Sigmoid":
            op.type = "Erf"
    with pytest.raises(ValueError, match=r"does not run \['Erf'\]"):
        PfaceModule(graph.encode())


@pytest.fixture(scope="module")
def det_tiny_tflite(tmp_path_factory):
    """fp32 TFLite of the shipped detector at 640x480 (API), and its int8 version made by
    ``picoface quantize --format tflite`` as a user would, calibrated on 8 WIDER test images
    (not the photos the tests compare on)."""
    need_module("litert_torch")
    need_module("ai_edge_quantizer")
    from picoface import tflite_export as te

    blob = weights.path(weights.DEFAULT_DETECTOR).read_bytes()
    fp32, report = te.pface_to_tflite(blob, int8=False, size=(640, 480))
    out_path = tmp_path_factory.mktemp("tflite") / "det_int8.tflite"
    out = cli("quantize", weights.path(weights.DEFAULT_DETECTOR), "--calib", need(TEST183),
              "--limit", 8, "--calib-size", "640x480", "-o", out_path, "--json")
    assert out.returncode == 0, out.stderr[-3000:]
    return {"pface": blob, "fp32": fp32, "report": report, "int8": out_path.read_bytes(),
            "int8_report": json.loads(out.stdout)}  # the converters' progress went to stderr


def test_det_tiny_fp32_tflite_detects_as_native(det_tiny_tflite):
    assert det_tiny_tflite["report"]["fp32_vs_native_rel_error"] < 1e-4
    assert det_tiny_tflite["report"]["input"] == "640x480"
    native = picoface.FaceDetector(det_tiny_tflite["pface"], input_size=(640, 480))
    tfl = picoface.FaceDetector(det_tiny_tflite["fp32"], head="yunet", backend="tflite")
    assert tfl.backend == "tflite"
    total = 0
    for img in _photos():
        a, b = native(img), tfl(img)
        assert len(a) == len(b)
        np.testing.assert_allclose(b.boxes, a.boxes, atol=0.05)
        total += len(a)
    assert total > 20  # the comparison saw faces


def test_det_tiny_int8_tflite_detections_close_to_fp32(det_tiny_tflite):
    from picoface.tflite_export import detection_agreement

    native = picoface.FaceDetector(det_tiny_tflite["pface"], input_size=(640, 480))
    int8 = picoface.FaceDetector(det_tiny_tflite["int8"], head="yunet", backend="tflite")
    got = detection_agreement(native, int8, _photos())
    assert got["reference_faces"] > 20
    assert got["recall"] >= 0.85 and got["precision"] >= 0.85 and got["mean_iou"] >= 0.85, got
    report = det_tiny_tflite["int8_report"]
    assert report["input"] == "640x480" and report["calibration_images"] == 8
    assert report["fp32_vs_native_rel_error"] < 1e-4
    assert report["int8_detections"]["recall"] >= 0.85, report


@pytest.fixture
def own_checkpoint(tmp_path):
    """A checkpoint of extd_tiny (the shipped default's architecture) as
    tools/train_detector.py writes it, with seeded untrained weights: the trained run's
    checkpoint is not in the repository (its .pface is)."""
    import torch

    export_own = export_tool("export_own")

    path = tmp_path / "extd_tiny.pt"
    torch.save({"variant": "extd_tiny", "model": export_own.load(None, "extd_tiny").state_dict()}, path)
    return path


def _calib_dir(tmp_path, n=3):
    cv2 = need_module("cv2")
    d = tmp_path / "calib"
    d.mkdir()
    rng = np.random.default_rng(5)
    for i in range(n):
        cv2.imwrite(str(d / f"{i}.png"), rng.integers(0, 256, (200, 300, 3), dtype=np.uint8))
    return d


def test_export_own_checkpoint_to_int8_tflite(own_checkpoint, tmp_path):
    need_module("litert_torch")
    need_module("ai_edge_quantizer")
    out_path = tmp_path / "tiny.tflite"
    out = subprocess_in_repo(["export", own_checkpoint, "--to", "tflite", "--int8", "--calib",
                              _calib_dir(tmp_path), "--size", "320x240", "-o", out_path, "--json"])
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)  # the converters' progress went to stderr
    assert report["arch"] == "own_detector" and report["input"] == "320x256"
    assert report["max_rel_error"] < 1e-4 == report["tolerance"]
    assert report["int8"]["calibration_images"] == 3
    detector = picoface.FaceDetector(out_path, head="yunet", backend="tflite")
    assert detector._net.input_shape == (1, 3, 256, 320)
    assert sorted(detector._net.output_names) == sorted(
        f"{k}_{s}" for s in (8, 16, 32) for k in ("cls", "obj", "bbox", "kps"))
    detector(np.zeros((240, 320, 3), np.uint8))  # runs: outputs named and shaped for the head


@pytest.mark.parametrize("args,message", [
    ("--int8", "expected --calib DIR"),
    ("--int8 --calib d --to onnx", "--int8 is for --to tflite"),
])
def test_export_option_errors(tmp_path, args, message):
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"x")
    _one_line_error(cli("export", ckpt, "-o", tmp_path / "m.tflite", *args.split()), message)


def test_export_tflite_without_litert_names_the_extra(tmp_path):
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"x")
    out = subprocess_in_repo(["export", ckpt, "--to", "tflite", "-o", tmp_path / "m.tflite"],
                             env=_without(tmp_path, "litert_torch"))
    _one_line_error(out, "picoface[export]", "litert-torch")


def test_quantize_tflite_refuses_native_options(tmp_path):
    out = cli("quantize", weights.path(weights.DEFAULT_DETECTOR), "--calib", tmp_path,
              "--method", "percentile", "-o", tmp_path / "m.tflite")
    _one_line_error(out, "--format tflite uses ai-edge-quantizer")


def test_bench_times_a_tflite_version_beside_native(det_tiny_tflite, tmp_path):
    from picoface.bench import bench

    path = tmp_path / "det_int8.tflite"
    path.write_bytes(det_tiny_tflite["int8"])
    report = bench(weights.DEFAULT_DETECTOR, backends=("native",), sizes=[(640, 480), (320, 240)],
                   also=[path], runs=3, warmup=1)
    rows = {(r["runner"], r["size"]): r for r in report["rows"]}
    assert rows[("tflite det_int8.tflite", "640x480")]["median_ms"] > 0
    # A fixed-size TFLite model gets every frame letterboxed into its own input.
    assert rows[("tflite det_int8.tflite", "320x240")]["input"] == "640x480"
    assert rows[("native", "320x240")]["input"] == "320x256"
