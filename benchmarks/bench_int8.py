"""Issue #4's speed gate: native int8 vs native fp32 vs onnxruntime fp32, with onnxruntime's
QDQ int8 and TFLite int8 (XNNPACK) beside them, one thread, interleaved on the same frames.

Per model one ``picoface.bench.bench`` run (what ``picoface bench --int8 --also ...`` prints):
the native int8 model is quantised in memory (minmax, every Conv the rewrite takes), the QDQ
model by ``picoface.quant_onnx.quantize_onnx`` on the same calibration images, the TFLite
int8 model (when one is given with ``--tflite LABEL=FILE``) by ``picoface export --to tflite
--int8``. Gate (issue #4): native int8 >= 1.8x native fp32 and >= 2.5x onnxruntime fp32 on
every detector and recogniser, and never slower than fp32.

Usage:
  python benchmarks/bench_int8.py [--runs N] [--only LABEL,...] [--tflite LABEL=FILE]...
                                  [--markdown FILE] [--json FILE]
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

from picoface import imageio
from picoface.bench import bench

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MODELS = SHARED / "models"
FRAMES = SHARED / "data" / "wider" / "fullres12" / "images"
DETECT_CALIB = SHARED / "data" / "wider" / "test183" / "images"
FACE_CALIB = SHARED / "data" / "celeba" / "images"
GATE_FP32, GATE_ORT = 1.8, 2.5

# (label, model: a shipped name or a path under ../shared/models, bench options, calibration)
SUITE = [
    ("picoface-det-tiny", "picoface-det-tiny", dict(), DETECT_CALIB),
    ("YuNet-s", "ShiqiYu__libfacedetection.train/onnx/yunet_s_dynamic.onnx",
     dict(task="detect", head="yunet"), DETECT_CALIB),
    ("YuNet-n", "ShiqiYu__libfacedetection.train/onnx/yunet_n_dynamic.onnx",
     dict(task="detect", head="yunet"), DETECT_CALIB),
    ("SCRFD-500M-KPS (fixed 640x640)", "hpc203__scrfd-opencv/weights/scrfd_500m_kps.onnx",
     dict(task="detect", head="scrfd", sizes=[(640, 480)]), DETECT_CALIB),
    ("SFace", "opencv_zoo/face_recognition_sface_2021dec_int8bq.onnx",
     dict(task="embed", preset="sface"), FACE_CALIB),
    ("PFLD-68", "cunjian__pytorch_face_landmark/onnx/pfld.onnx",
     dict(task="landmarks", preset="pfld"), FACE_CALIB),
]
CALIB_IMAGES = 50


def _model_path(name: str) -> str:
    return name if "/" not in name else str(MODELS / name)


def _qdq(label: str, path: str, opts: dict, calib: Path, workdir: Path):
    """The onnxruntime QDQ int8 model of an ONNX ``path`` (None for a .pface/shipped model)."""
    if not path.endswith(".onnx"):
        return None
    from picoface.quant_onnx import quantize_onnx

    out = workdir / (Path(path).stem + "_qdq.onnx")
    quantize_onnx(path, str(calib), out, task=opts.get("task"), head=opts.get("head"),
                  preset=opts.get("preset"), limit=CALIB_IMAGES)
    return out


def _gate_rows(label: str, report: dict) -> list:
    """One line per frame size: medians of each runner and the gate ratios."""
    by = {}
    for r in report["rows"]:
        if "median_ms" in r:
            by.setdefault(r["size"], {})[r["runner"]] = r["median_ms"]
    lines = []
    for size, med in by.items():
        fp32, int8, ort = med.get("native"), med.get("native int8"), med.get("onnxruntime")
        qdq = next((v for k, v in med.items() if k.startswith("onnxruntime") and k != "onnxruntime"), None)
        tfl = next((v for k, v in med.items() if k.startswith("tflite")), None)

        def ms(v):
            return "–" if v is None else f"{v:.3f}"

        def ratio(a, b, gate):
            if a is None or b is None:
                return "–"
            x = a / b
            return f"{x:.2f}x" + ("" if x >= gate else " ✗")
        lines.append(f"| {label} | {size} | {ms(fp32)} | {ms(int8)} | {ms(ort)} | {ms(qdq)} | {ms(tfl)} | "
                     f"{ratio(fp32, int8, GATE_FP32)} | {ratio(ort, int8, GATE_ORT)} |")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--only", help="comma-separated labels to run")
    p.add_argument("--tflite", action="append", default=[], metavar="LABEL=FILE",
                   help="an int8 .tflite of a suite model, timed beside it")
    p.add_argument("--markdown", type=Path, help="also write the table here")
    p.add_argument("--json", type=Path, help="write the reports here")
    args = p.parse_args(argv)
    if not FRAMES.is_dir():
        print(f"error: {FRAMES} not found (../shared beside the repository)", file=sys.stderr)
        return 2
    tflite = dict(item.split("=", 1) for item in args.tflite)
    only = set(args.only.split(",")) if args.only else None
    frames = [imageio.read_bgr(str(f)) for f in sorted(FRAMES.glob("*.jpg"))]
    header = ["| model | frame | native fp32 ms | native int8 ms | onnxruntime fp32 ms | "
              "onnxruntime QDQ int8 ms | TFLite int8 ms | int8 vs native fp32 (gate 1.8x) | "
              "int8 vs onnxruntime fp32 (gate 2.5x) |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines, reports = list(header), {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, name, opts, calib in SUITE:
            if only and label not in only:
                continue
            path = _model_path(name)
            if "/" in name and not Path(path).is_file():
                lines.append(f"| {label} | not run: {path} missing |")
                continue
            also = [q for q in [_qdq(label, path, opts, calib, Path(tmp))] if q is not None]
            if label in tflite:
                also.append(tflite[label])
            print(f"== {label}", file=sys.stderr)
            report = bench(path, int8=True, calib=str(calib), also=also, images=frames,
                           runs=args.runs, warmup=args.warmup, threads=1, **opts)
            reports[label] = report
            lines += _gate_rows(label, report)
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps(reports, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
