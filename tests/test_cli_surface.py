"""The command line's surface, run as a user would: every subcommand's --help, and bad
arguments giving one line on stderr and a non-zero exit (missing files, an unknown
backend, a backend whose package is not installed -> the extra to install)."""

import argparse
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import need_module
from picoface.cli import build_parser


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "picoface", *map(str, args)],
                          capture_output=True, text=True, env=env)


def _commands(parser, prefix=()):
    """Every runnable command path of the parser, e.g. ("eval", "wider")."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [prefix]
    return [path for name, p in subs[0].choices.items() for path in _commands(p, prefix + (name,))]


COMMANDS = _commands(build_parser())


def test_every_subcommand_is_listed():
    # A new subcommand is picked up automatically; this guards the walk itself.
    assert {c[0] for c in COMMANDS} >= {"info", "detect", "convert", "bench", "inspect",
                                        "verify", "enroll", "identify", "eval"}
    assert ("eval", "wider") in COMMANDS and ("eval", "verify") in COMMANDS


@pytest.mark.parametrize("command", [" ".join(c) for c in COMMANDS] + [""])
def test_help_exits_zero(command):
    out = cli(*command.split(), "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"usage: picoface {command}".rstrip())
    assert out.stderr == ""


def _one_line_error(out, *fragments):
    assert out.returncode == 1, (out.returncode, out.stdout, out.stderr)
    assert out.stderr.startswith("picoface: error: "), out.stderr
    assert out.stderr.count("\n") == 1, out.stderr
    for f in fragments:
        assert f in out.stderr, out.stderr


@pytest.mark.parametrize("args,message", [
    ("convert missing.onnx --task detect -o x.pface", "ONNX model not found: 'missing.onnx'"),
    ("inspect missing.pface", "model file not found: 'missing.pface'"),
    ("bench missing.onnx --task detect --head yunet", "model file not found: 'missing.onnx'"),
    ("eval wider --model missing.onnx --head yunet --data d", "model file not found"),
    # The recognition commands check their default detector (relative to the working
    # directory) first, then the recogniser: either file is reported missing.
    ("verify a.jpg b.jpg --model missing.pface", "not found"),
    ("enroll bob a.jpg --gallery g.pfg --model missing.pface", "not found"),
    ("identify a.jpg --gallery g.pfg --model missing.pface", "not found"),
    ("eval verify --pairs missing.tsv --model m.pface", "pairs file not found: 'missing.tsv'"),
])
def test_missing_files_are_one_line_errors(args, message):
    _one_line_error(cli(*args.split()), message)


def test_missing_required_argument_is_a_usage_error():
    out = cli("convert", "m.onnx")
    assert out.returncode == 2 and "required" in out.stderr


@pytest.fixture
def image_file(tmp_path):
    cv2 = need_module("cv2")
    path = tmp_path / "frame.png"
    cv2.imwrite(str(path), np.full((64, 96, 3), 128, np.uint8))
    return path


@pytest.fixture
def tiny_models(tmp_path):
    """The tiny test detector (tests/tiny_tflite.py) as .onnx and .tflite files."""
    need_module("onnx")
    need_module("ai_edge_litert")
    import tiny_tflite

    onnx, tfl = tmp_path / "tiny.onnx", tmp_path / "tiny.tflite"
    onnx.write_bytes(tiny_tflite.onnx_bytes())
    tfl.write_bytes(tiny_tflite.tflite_bytes())
    return {"onnx": onnx, "tflite": tfl}


def test_unknown_backend(image_file, tiny_models):
    out = cli("detect", image_file, "--model", tiny_models["onnx"], "--head", "extd",
              "--backend", "tensorrt")
    _one_line_error(out, "expected backend one of", "'tensorrt'")


def test_detect_runs_on_each_backend(image_file, tiny_models, tmp_path):
    """The working path beside the failing ones below: same model, three backends."""
    from picoface import modelfile
    from picoface.convert import convert_onnx

    need_module("onnxruntime")
    pface = modelfile.save(tmp_path / "tiny.pface",
                           convert_onnx(tiny_models["onnx"], task="detect", head="extd"))
    for model, backend in ((tiny_models["onnx"], "onnxruntime"), (pface, "native"),
                           (tiny_models["tflite"], "tflite")):
        out = cli("detect", image_file, "--model", model, "--head", "extd", "--backend", backend,
                  "--json")
        assert out.returncode == 0, out.stderr
        assert f'"backend": "{backend}"' in out.stdout


def _without(tmp_path, *packages):
    """An environment in which importing ``packages`` fails as if they were not installed."""
    blocked = tmp_path / "blocked"
    for name in packages:
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(
            f"raise ImportError('{name} is blocked by the test')\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(blocked)] + [p for p in (env.get("PYTHONPATH"),) if p])
    return env


@pytest.mark.parametrize("backend,blocked,extra", [
    ("tflite", ("ai_edge_litert", "tflite_runtime"), "picoface[tflite]"),
    ("onnxruntime", ("onnxruntime",), "picoface[onnx]"),
])
def test_backend_not_installed_names_the_extra(image_file, tiny_models, tmp_path, backend,
                                               blocked, extra):
    out = cli("detect", image_file, "--model", tiny_models[backend if backend == "tflite" else "onnx"],
              "--head", "extd", "--backend", backend, env=_without(tmp_path, *blocked))
    _one_line_error(out, extra)
