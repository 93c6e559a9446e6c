"""The picoface command line, run as a user would."""

import json
import subprocess
import sys

import pytest

from conftest import FULLRES12, need, need_module

IMAGE = FULLRES12 / "images/12_Group_Group_12_Group_Group_12_10.jpg"


def cli(*args):
    return subprocess.run([sys.executable, "-m", "picoface", *map(str, args)],
                          capture_output=True, text=True)


def test_info_json():
    out = cli("info", "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    for key in ("compiler", "isa_compiled", "isa_supported", "isa_selected", "pybind11", "version"):
        assert key in info


def test_detect_json_and_annotated_output(yunet_model, tmp_path):
    cv2 = need_module("cv2")
    annotated = tmp_path / "out.jpg"
    out = cli("detect", need(IMAGE), "--model", yunet_model, "--head", "yunet", "--json",
              "--output", annotated)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["backend"] == "onnxruntime" and report["model"].endswith("yunet_s_dynamic.onnx")
    assert report["ms"] > 0 and len(report["faces"]) == 14
    face = report["faces"][0]
    assert len(face["box"]) == 4 and len(face["landmarks"]) == 5 and 0.5 <= face["score"] <= 1
    drawn = cv2.imread(str(annotated))
    original = cv2.imread(str(IMAGE))
    assert drawn.shape == original.shape
    x1, y1, x2, y2 = map(int, face["box"])
    # The box outline is drawn in green where the original has none.
    assert (drawn[y1, x1:x2, 1] > 200).mean() > 0.8


def test_detect_text_output(yunet_model):
    out = cli("detect", need(IMAGE), "--model", yunet_model, "--head", "yunet", "--max-faces", "2")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("2 face(s) in")


@pytest.mark.parametrize("args,message", [
    (["detect", "missing.jpg", "--model", "m.onnx", "--head", "yunet"], "image not found"),
    (["detect", __file__, "--model", "m.onnx", "--head", "yunet"], "could not decode image"),
])
def test_detect_errors_are_one_line(args, message):
    need_module("cv2")
    out = cli(*args)
    assert out.returncode == 1
    assert out.stderr.startswith("picoface: error:") and message in out.stderr
    assert out.stderr.count("\n") == 1


def test_detect_without_model_uses_the_shipped_detector(tmp_path):
    cv2 = need_module("cv2")
    import numpy as np
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), np.zeros((64, 64, 3), np.uint8))
    out = cli("detect", img, "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["faces"] == [] and report["backend"] == "native"
    assert report["model"].endswith("picoface_det_tiny.pface")


def test_bad_input_size_is_a_usage_error():
    out = cli("detect", "x.jpg", "--input-size", "640")
    assert out.returncode == 2 and "WIDTHxHEIGHT" in out.stderr


def test_inspect_counts_macs(yunet_model, tmp_path):
    # YuNet-s is 258 M MACs at 640x480 (figure given in issue #3); the engine's plan agrees.
    need_module("onnx")
    out = tmp_path / "y.pface"
    assert cli("convert", yunet_model, "--task", "detect", "--head", "yunet", "-o", out).returncode == 0
    r = cli("inspect", out, "--size", "640x480", "--json")
    assert r.returncode == 0, r.stderr
    assert abs(json.loads(r.stdout)["macs"] / 1e6 - 258.2) < 0.5
    r = cli("inspect", out, "--size", "320x240")  # padded to 320x256 like the detector does
    assert r.returncode == 0 and "MACs at 320x240" in r.stdout
