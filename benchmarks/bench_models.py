"""Issue #3's model table: native fp32 vs onnxruntime (one thread, same frames, interleaved)
on the public reference models in ../shared, detectors at 320x240 and 640x480 frames with
native end-to-end detection and the libfacedetection / OpenCV FaceDetectorYN comparisons.

Each model is one ``picoface.bench.bench`` run (what ``picoface bench`` prints); a model
whose file is absent gets a line saying so. Frames: the 12 full-size WIDER images with boxes.

Usage:
  python benchmarks/bench_models.py [--runs N] [--markdown FILE] [--json FILE]
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

from picoface import imageio
from picoface.bench import bench, markdown

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO.parent / "shared" / "models"
FRAMES = REPO.parent / "shared" / "data" / "wider" / "fullres12" / "images"

# (label, path under ../shared/models, bench options)
DETECT = dict(task="detect", end_to_end=True, compare=("yuface", "opencv"))
SUITE = [
    ("YuNet-s", "ShiqiYu__libfacedetection.train/onnx/yunet_s_dynamic.onnx", dict(DETECT, head="yunet")),
    ("YuNet-n", "ShiqiYu__libfacedetection.train/onnx/yunet_n_dynamic.onnx", dict(DETECT, head="yunet")),
    ("SCRFD-500M (fixed 640x640)", "hpc203__scrfd-opencv/weights/scrfd_500m_kps.onnx",
     dict(DETECT, head="scrfd")),
    # No ONNX in ../shared: exported from the .pth through models/retinaface.py (needs torch).
    ("RetinaFace-mnet0.25", "biubug6__Face-Detector-1MB-with-landmark/weights/mobilenet0.25_Final.pth",
     dict(DETECT, head="retinaface")),
    ("Ultra-Light RFB (fixed 320x240)",
     "Linzaer__Ultra-Light-Fast-Generic-Face-Detector-1MB/models/onnx/version-RFB-320.onnx",
     dict(DETECT, head="ultraface")),
    ("PFLD-68", "cunjian__pytorch_face_landmark/onnx/pfld.onnx", dict(task="landmarks")),
    ("SFace int8bq", "opencv_zoo/face_recognition_sface_2021dec_int8bq.onnx",
     dict(task="embed", preset="sface")),
]


def _onnx(path: Path, workdir: Path) -> Path:
    """`path` itself, or for RetinaFace's .pth weights its ONNX export (tools/export_retinaface.py)."""
    if path.suffix != ".pth":
        return path
    sys.path.insert(0, str(REPO))
    from tools import export_retinaface, onnx_export
    return onnx_export.export(export_retinaface.SPEC, path, workdir / (path.stem + ".onnx"))


def _run(label: str, path: Path, options: dict, images, args, workdir: Path):
    """(Markdown section, report or None) of one model of the suite."""
    if not path.exists():
        return f"### {label}\n\nnot run: {path} is absent", None
    try:
        onnx = _onnx(path, workdir)
    except ImportError as e:  # the .pth export needs torch (the [train] extra)
        return f"### {label}\n\nnot run: exporting {path.name} needs {e.name}", None
    report = bench(onnx, images=images, runs=args.runs, warmup=args.warmup, profile=True, **options)
    return f"### {label}\n\n{markdown(report)}", report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--markdown", type=Path, help="also write the tables here")
    p.add_argument("--json", type=Path, help="write the reports here")
    args = p.parse_args(argv)
    if not FRAMES.is_dir():
        print(f"needs {FRAMES} (../shared material)", file=sys.stderr)
        return 1
    images = [imageio.read_bgr(f) for f in sorted(FRAMES.glob("*.jpg"))]
    reports, sections = [], []
    workdir = Path(tempfile.mkdtemp(prefix="picoface-bench-"))
    for label, rel, options in SUITE:
        section, report = _run(label, MODELS / rel, options, images, args, workdir)
        sections.append(section)
        if report is not None:
            reports.append(report)
        print(sections[-1] + "\n", flush=True)
    if args.markdown:
        args.markdown.write_text("\n\n".join(sections) + "\n")
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
