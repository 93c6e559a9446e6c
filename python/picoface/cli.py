"""The ``picoface`` command line."""

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

log = logging.getLogger("picoface")


def _size(text: str):
    try:
        w, h = text.lower().split("x")
        return int(w), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 640x480, got {text!r}") from None


def _cmd_info(args) -> int:
    from picoface import build_info

    info = build_info()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for k, v in info.items():
            print(f"{k:14s} {v}")
    return 0


def _cmd_detect(args) -> int:
    from picoface import FaceDetector, imageio

    image = imageio.read_bgr(args.image)
    detector = FaceDetector(args.model, head=args.head, score_threshold=args.score_threshold,
                            nms_threshold=args.nms_threshold, max_faces=args.max_faces,
                            input_size=args.input_size, backend=args.backend,
                            threads=args.threads)
    t0 = time.perf_counter()
    faces, parts = detector.detect(image)
    ms = (time.perf_counter() - t0) * 1e3
    if args.output:
        imageio.write(args.output, imageio.annotate(image, faces))
    report = faces.to_dict()
    report.update({"model": detector.model_name, "backend": detector.backend,
                   "ms": round(ms, 3), "ms_parts": {k: round(v, 3) for k, v in parts.items()},
                   "image": {"width": image.shape[1], "height": image.shape[0]}})
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{len(faces)} face(s) in {args.image} ({image.shape[1]}x{image.shape[0]}), "
              f"{ms:.1f} ms [{detector.backend}]")
        for f in faces:
            box = ", ".join(f"{v:.1f}" for v in f.box)
            print(f"  score {f.score:.3f}  box [{box}]")
        if args.output:
            print(f"annotated image written to {args.output}")
    return 0


def _cmd_convert(args) -> int:
    from picoface import importer, modelfile
    from picoface.convert import encode_imported

    imported = importer.import_onnx(args.model)
    blob = encode_imported(imported, task=args.task, head=args.head, preset=args.preset,
                           source=Path(args.model).name)
    out = modelfile.save(args.output, blob)
    summary = modelfile.summary(out)  # re-read through the C++ loader: never ship a bad file
    if args.json:
        print(json.dumps({"output": str(out), "bytes": len(blob), "ops": len(summary["ops"]),
                          "parameters": summary["parameters"],
                          "passes": [dataclasses.asdict(s) for s in imported.stats]}, indent=2))
        return 0
    for s in imported.stats:
        print(f"  {s.name:36s} {s.ops_before:5d} -> {s.ops_after:5d} ops")
    print(f"wrote {out} ({len(blob)} bytes, {len(summary['ops'])} ops, "
          f"{summary['parameters']} parameters)")
    return 0


def _cmd_inspect(args) -> int:
    from picoface import modelfile

    s = modelfile.summary(args.model)
    if args.size is not None:
        s["macs"] = _macs(args.model, s, args.size)
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    print(f"{args.model}: picoface model format v{s['version']}, {s['parameters']} parameters, "
          f"{len(s['ops'])} ops")
    print("metadata:")
    for k, v in s["metadata"].items():
        print(f"  {k:20s} {v}")
    counts = {}
    for op in s["ops"]:
        counts[op["type"]] = counts.get(op["type"], 0) + 1
    print("ops: " + ", ".join(f"{k} x{v}" for k, v in sorted(counts.items())))
    names = [t["name"] for t in s["tensors"]]
    print("inputs: " + ", ".join(f"{names[i]} {s['tensors'][i]['shape']}" for i in s["inputs"]))
    print("outputs: " + ", ".join(names[i] for i in s["outputs"]))
    if "macs" in s:
        print(f"MACs at {args.size[0]}x{args.size[1]}: {s['macs'] / 1e6:.1f} M")
    return 0


def _macs(path, summary, size) -> int:
    """Multiply-accumulates of one inference at `size`, from the native engine's plan."""
    import numpy as np

    from picoface import _core

    w, h = size
    meta = summary["metadata"]
    if meta.get("input.size_policy") == "multiple":  # the size the detector would feed it
        m = int(meta["input.multiple"])
        w, h = -(-w // m) * m, -(-h // m) * m
    shape = summary["tensors"][summary["inputs"][0]]["shape"]
    dims = [1 if i == 0 and d < 0 else d for i, d in enumerate(shape)]
    if len(dims) == 4:
        dims[2] = h if dims[2] < 0 else dims[2]
        dims[3] = w if dims[3] < 0 else dims[3]
    engine = _core.Engine(str(path), 1)
    engine.run([np.zeros(dims, np.float32)])
    return int(engine.macs)


def _sizes(text: str):
    return [_size(t) for t in text.split(",")]


def _cmd_bench(args) -> int:
    from picoface.bench import bench, markdown

    def progress(done, total):
        if not args.json and sys.stderr.isatty():
            print(f"\r{done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)

    report = bench(args.model, task=args.task, head=args.head, preset=args.preset,
                   sizes=args.size, backends=args.backend.split(","), runs=args.runs,
                   warmup=args.warmup, threads=args.threads, progress=progress)
    print(json.dumps(report, indent=2) if args.json else markdown(report))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="picoface", description="Face detection and recognition on one CPU core.")
    sub = p.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="build and CPU facts (compiler, ISAs)")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(run=_cmd_info)

    det = sub.add_parser("detect", help="detect faces in an image")
    det.add_argument("image", help="image file (anything OpenCV reads)")
    det.add_argument("--model", help="detector model (ONNX path)")
    det.add_argument("--head", help="head of an ONNX detector, e.g. yunet")
    det.add_argument("--score-threshold", type=float, default=0.5)
    det.add_argument("--nms-threshold", type=float, default=0.4)
    det.add_argument("--max-faces", type=int, default=0, help="0 = all")
    det.add_argument("--input-size", type=_size, help="network input WIDTHxHEIGHT (letterboxed)")
    det.add_argument("--backend", default="auto")
    det.add_argument("--threads", type=int, default=1)
    det.add_argument("--output", "-o", help="write an annotated copy of the image here")
    det.add_argument("--json", action="store_true", help="print JSON")
    det.set_defaults(run=_cmd_detect)

    conv = sub.add_parser("convert", help="convert an ONNX model to the picoface format (.pface)")
    conv.add_argument("model", help="ONNX file")
    conv.add_argument("--task", required=True, choices=["detect", "landmarks", "embed"])
    conv.add_argument("--head", help="detector head, e.g. yunet, scrfd, retinaface, extd")
    conv.add_argument("--preset", help="recogniser input convention, e.g. arcface, sface")
    conv.add_argument("--output", "-o", required=True, help="output .pface file")
    conv.add_argument("--json", action="store_true", help="print the result and per-pass op counts as JSON")
    conv.set_defaults(run=_cmd_convert)

    b = sub.add_parser("bench", help="native engine vs onnxruntime latency on one ONNX model")
    b.add_argument("model", help="ONNX file (the native side converts it in memory)")
    b.add_argument("--task", required=True, choices=["detect", "landmarks", "embed"])
    b.add_argument("--head", help="detector head, e.g. yunet")
    b.add_argument("--preset", help="recogniser input convention")
    b.add_argument("--size", type=_sizes, default=[(320, 256)],
                   help="comma-separated WIDTHxHEIGHT list (dynamic models)")
    b.add_argument("--backend", default="native,onnxruntime")
    b.add_argument("--runs", type=int, default=100)
    b.add_argument("--warmup", type=int, default=10)
    b.add_argument("--threads", type=int, default=1)
    b.add_argument("--json", action="store_true")
    b.set_defaults(run=_cmd_bench)

    ins = sub.add_parser("inspect", help="metadata, ops and parameters of a .pface model")
    ins.add_argument("model")
    ins.add_argument("--json", action="store_true")
    ins.add_argument("--size", type=_size, help="also count MACs at this WIDTHxHEIGHT input")
    ins.set_defaults(run=_cmd_inspect)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, ImportError, RuntimeError) as e:
        print(f"picoface: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into `head` and closed early: not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
