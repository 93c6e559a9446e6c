"""`picoface bench`, run as a user would (tiny runs: --runs 3 --warmup 1, small frames)."""

import io
import json
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest

from conftest import FULLRES12, PFLD, need, need_module
from picoface import bench
from picoface.cli import _progress

IMAGE = FULLRES12 / "images/12_Group_Group_12_Group_Group_12_10.jpg"
TINY = ("--runs", "3", "--warmup", "1")


def cli(*args):
    return subprocess.run([sys.executable, "-m", "picoface", "bench", *map(str, args)],
                          capture_output=True, text=True)


def _one_line_error(out, *fragments):
    assert out.returncode == 1, (out.returncode, out.stdout, out.stderr)
    assert out.stderr.startswith("picoface: error: ") and out.stderr.count("\n") == 1, out.stderr
    for f in fragments:
        assert f in out.stderr, out.stderr


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """The tiny test detector and recogniser of tests/tiny_tflite.py as ONNX files."""
    need_module("onnx")
    import tiny_tflite

    root = tmp_path_factory.mktemp("tiny")
    (root / "det.onnx").write_bytes(tiny_tflite.onnx_bytes())
    (root / "embed.onnx").write_bytes(tiny_tflite.embedder_onnx_bytes())
    return root


def test_json_report_of_a_shipped_model_with_int8():
    out = cli("picoface-det-tiny", "--size", "96x64", "--int8", "--json", *TINY)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert {"model", "task", "pipeline", "threads", "runs", "warmup", "frames", "machine",
            "picoface", "isa", "isa_supported", "peak_rss_mb", "rows",
            "int8_calibration"} <= set(report)
    assert report["model"] == "picoface-det-tiny" and report["task"] == "detect"
    assert report["isa"] in report["isa_supported"] and report["peak_rss_mb"] > 10
    m = report["machine"]
    assert m["cpu"] and m["arch"] and m["logical_cpus"] >= 1 and isinstance(m["flags"], list)
    rows = {r["runner"]: r for r in report["rows"]}
    assert set(rows) == {"native", "native int8"}
    for r in rows.values():
        assert r["stage"] == "inference" and r["size"] == "96x64" and r["input"] == "96x64"
        assert r["runs"] == 3 and r["min_ms"] <= r["median_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert abs(r["fps"] - 1e3 / r["median_ms"]) < 0.01 * r["fps"] + 0.01
        assert r["load_s"] >= 0 and r["gmacs"] > 0 and "rss_load_mb" in r
    # No images and no --calib: noise calibration, said in the report and warned about.
    assert "noise" in report["int8_calibration"] and "speed is representative" in out.stderr
    assert "\r" not in out.stderr and "#" not in out.stderr  # no progress bar with --json


def test_markdown_table_shape_and_na_rows():
    out = cli("picoface-det-tiny", "--size", "96x64,64x64", "--backend", "native,onnxruntime",
              "--markdown", *TINY)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("model `picoface-det-tiny` (detect), 1 thread(s)")
    assert lines[1].startswith("CPU ")
    table = [ln for ln in lines if ln.startswith("|")]
    header = table[0]
    assert header.startswith("| frame | runner | net input | median ms | p90 ms | min ms | p99 ms "
                             "| frames/s | vs native |")
    assert set(table[1]) <= set("|-:") and len({ln.count("|") for ln in table}) == 1
    na = [ln for ln in table if "n/a" in ln]
    # A .pface has no ONNX file for onnxruntime: one row per frame size says so.
    assert na == [f"| {s} | onnxruntime | – | n/a (needs an ONNX model) |"
                  + "  |" * (header.count("|") - 5) for s in ("96x64", "64x64")]


def test_progress_bar_only_on_a_terminal_and_not_with_json(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True
    for json_flag, tty, shown in ((False, True, True), (True, True, False), (False, False, False)):
        err = Tty() if tty else io.StringIO()
        monkeypatch.setattr(sys, "stderr", err)
        show = _progress(SimpleNamespace(json=json_flag), width=10)
        show(3, 10)
        show(10, 10)
        expected = "\r[###.......] 3/10\r[##########] 10/10\n" if shown else ""
        assert err.getvalue() == expected, (json_flag, tty)


@pytest.mark.parametrize("size", ["64", "0x64", "64x-1", "axb"])
def test_bad_size_is_a_usage_error(size):
    out = cli("picoface-det-tiny", "--size", size)
    assert out.returncode == 2 and "expected WIDTHxHEIGHT of positive integers" in out.stderr


@pytest.mark.parametrize("args,message", [
    (("--backend", "tensorrt"), "expected backends from ('native', 'onnxruntime', 'tflite'), "
                                "got 'tensorrt'"),
    (("--compare", "dlib"), "expected --compare from ('yuface', 'opencv'), got 'dlib'"),
    (("--size", "5000x64"), "expected frame sizes from 1x1 to 4096x4096, got 5000x64"),
    (("--task", "embed"), "expected --task detect for picoface-det-tiny"),
    (("--max-instructions", "5"), "--max-instructions needs --callgrind"),
])
def test_bad_options_are_one_line_errors(args, message):
    _one_line_error(cli("picoface-det-tiny", *args, *TINY), message)


def test_missing_model_and_missing_task():
    _one_line_error(cli("missing.onnx"), "model file not found: 'missing.onnx'")


def test_onnx_model_needs_a_task(tiny_models):
    _one_line_error(cli(tiny_models / "det.onnx"), "expected --task detect|landmarks|embed")


def test_tflite_runner_and_its_missing_runtime(tiny_models, tmp_path, monkeypatch):
    need_module("onnxruntime")
    need_module("ai_edge_litert")
    import tiny_tflite

    tfl = tmp_path / "det.tflite"
    tfl.write_bytes(tiny_tflite.tflite_bytes())
    common = dict(task="detect", head="extd", sizes=[(128, 128)], runs=2, warmup=1)
    report = bench.bench(tiny_models / "det.onnx", also=[tfl], **common)
    rows = {r["runner"]: r for r in report["rows"]}
    assert set(rows) == {"native", "onnxruntime", "tflite det.tflite"}
    assert all(r["runs"] == 2 and r["input"] == "128x128" for r in rows.values())
    only = bench.bench(tfl, **common)  # a .tflite alone runs on the tflite backend
    assert [r["runner"] for r in only["rows"]] == ["tflite"]
    for name in ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime",
                 "tflite_runtime.interpreter"):
        monkeypatch.setitem(sys.modules, name, None)  # import -> ImportError
    report = bench.bench(tiny_models / "det.onnx", also=[tfl], **common)
    assert report["rows"][-1] == {"runner": "tflite det.tflite", "size": "128x128",
                                  "status": "n/a (ai-edge-litert missing)"}


def test_detect_pipeline_is_end_to_end_on_uint8_frames():
    out = cli("detect", "--size", "96x64", "--json", *TINY)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["pipeline"] == "detect" and report["model"] == "picoface-det-tiny"
    (row,) = report["rows"]
    assert row["runner"] == "native" and row["stage"] == "end-to-end" and "input" not in row
    assert row["faces"] == 0  # seeded noise


def test_detect_embed_pipeline(tiny_models):
    need_module("onnxruntime")
    out = cli("detect+embed", "--embedder", tiny_models / "embed.onnx", "--size", "96x64",
              "--json", *TINY)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["embedder"].endswith("embed.onnx")
    # The shipped detector is a .pface: only the native runner has both models.
    assert [(r["runner"], r["stage"]) for r in report["rows"]] == [("native", "detect+embed")]
    assert "the embedder never runs" in out.stderr
    _one_line_error(cli("detect+embed", *TINY), "expected --embedder R")
    _one_line_error(cli("detect", "--embedder", tiny_models / "embed.onnx", *TINY),
                    "--embedder is for the detect+embed pipeline")


def test_detect_embed_pipeline_finds_and_embeds_faces(tiny_models):
    need_module("cv2")
    out = cli("detect+embed", "--embedder", tiny_models / "embed.onnx", "--images", need(IMAGE),
              "--size", "640x480", "--json", *TINY)
    assert out.returncode == 0, out.stderr
    (row,) = json.loads(out.stdout)["rows"]
    assert row["faces"] >= 3 and row["runs"] == 3


def test_profile_per_native_engine():
    out = cli("picoface-det-tiny", "--size", "96x64", "--int8", "--profile", "--json", *TINY)
    assert out.returncode == 0, out.stderr
    profiles = json.loads(out.stdout)["profiles"]["96x64"]
    assert set(profiles) == {"native", "native int8"}
    types = {t["type"]: t for t in profiles["native"]["by_type"]}
    assert types["Conv"]["count"] > 10 and types["Conv"]["ms"] > 0
    assert "QLinearConv" in {t["type"] for t in profiles["native int8"]["by_type"]}
    for prof in profiles.values():
        assert abs(sum(t["ms"] for t in prof["by_type"]) - prof["total_ms"]) < 0.01
        assert prof["slowest"][0]["ms"] >= prof["slowest"][-1]["ms"]


def test_end_to_end_compare_and_frames(yunet_model):
    need_module("onnx")
    need_module("cv2")
    out = cli(yunet_model, "--task", "detect", "--head", "yunet", "--size", "96x64",
              "--end-to-end", "--compare", "--images", need(IMAGE), "--json", *TINY)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["frames"] == "1 image(s)"
    rows = {r["runner"]: r for r in report["rows"]}
    assert set(rows) == {"native", "onnxruntime", "native end-to-end",
                         "onnxruntime end-to-end", "yuface", "opencv"}
    # Both inference rows time the tensor the detector makes of the frame (padded to 96x64).
    assert rows["native"]["input"] == rows["onnxruntime"]["input"] == "96x64"
    assert rows["native end-to-end"]["stage"] == "end-to-end"
    for name in ("yuface", "opencv"):  # timed, or a row that says why not
        assert rows[name].get("runs") == 3 or rows[name]["status"].startswith("n/a ("), rows[name]


def test_compare_marks_a_missing_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "yuface", None)  # import yuface -> ImportError
    report = bench.bench("picoface-det-tiny", sizes=[(64, 64)], compare=["yuface", "opencv"],
                         runs=1, warmup=0)
    rows = {r["runner"]: r for r in report["rows"]}
    assert rows["yuface"] == {"runner": "yuface", "size": "64x64", "status": "n/a (yuface missing)"}
    assert rows["opencv"]["status"] == "n/a (FaceDetectorYN runs YuNet ONNX files only)" or \
        rows["opencv"]["status"] == "n/a (opencv missing)"
    assert "| 64x64 | yuface | – | n/a (yuface missing) |" in bench.markdown(report)


def test_landmark_model_defaults_to_its_input_size():
    need_module("onnx")
    need_module("onnxruntime")
    out = cli(need(PFLD), "--task", "landmarks", "--markdown", *TINY)
    assert out.returncode == 0, out.stderr
    assert "| 112x112 | native | 112x112 |" in out.stdout
    assert "| 112x112 | onnxruntime | 112x112 |" in out.stdout and "1.00x" in out.stdout
    bad = cli(need(PFLD), "--task", "landmarks", "--end-to-end", "--runs", "1")
    _one_line_error(bad, "for detectors")


def test_callgrind_counts_instructions_and_gates_them():
    if shutil.which("valgrind") is None:
        pytest.skip("needs valgrind on PATH")
    out = cli("picoface-det-tiny", "--callgrind", "--size", "64x64", "--max-instructions", "1000",
              "--json")
    report = json.loads(out.stdout)
    (row,) = report["rows"]
    assert row["runner"] == "native" and row["size"] == "64x64" and row["isa"]
    # det-tiny at 64x64 is ~3.3 M instructions on AVX2; repeated calls agree to < 0.1 %.
    assert 1e5 < row["instructions"] < 1e9 and row["spread"] < 1e-3 * row["instructions"]
    assert row["first_call"] > row["instructions"]  # planning and first touch
    _one_line_error(out, "over --max-instructions 1000: native at 64x64")


def test_callgrind_without_valgrind_says_so(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="--callgrind needs valgrind on PATH"):
        bench.callgrind("picoface-det-tiny", sizes=[(64, 64)])
