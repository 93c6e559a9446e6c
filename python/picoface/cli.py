"""The ``picoface`` command line."""

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

from picoface.heads import HEADS

log = logging.getLogger("picoface")


def _size(text: str):
    try:
        w, h = text.lower().split("x")
        size = int(w), int(h)
    except ValueError:
        size = (0, 0)
    if min(size) < 1:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT of positive integers, e.g. "
                                         f"640x480, got {text!r}")
    return size


def _cmd_info(args) -> int:
    from picoface import build_info

    info = build_info()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for k, v in info.items():
            print(f"{k:14s} {v}")
    return 0


def _add_detector_options(p, score_threshold=None, score_help="default: the model's"):
    """The options that open a detector, shared by every subcommand that runs one."""
    p.add_argument("--model", help="detector model: a shipped name (default: picoface-det-tiny), a "
                   ".pface file, or an ONNX file with --head")
    p.add_argument("--head", help="head of an ONNX detector: " + ", ".join(sorted(HEADS)))
    p.add_argument("--score-threshold", type=float, default=score_threshold, help=score_help)
    p.add_argument("--nms-threshold", type=float, help="default: the model's")
    p.add_argument("--input-size", type=_size, help="network input WIDTHxHEIGHT (letterboxed)")
    p.add_argument("--backend", default="auto", help="auto (by the model file: .pface native, "
                   ".tflite tflite, ONNX onnxruntime), native, onnxruntime or tflite")
    p.add_argument("--threads", type=int, default=1)


def _open_detector(args):
    from picoface import FaceDetector

    return FaceDetector(args.model, head=args.head, score_threshold=args.score_threshold,
                        nms_threshold=args.nms_threshold, max_faces=getattr(args, "max_faces", 0),
                        input_size=args.input_size, backend=args.backend, threads=args.threads)


def _progress(args, width: int = 30):
    """A progress bar on stderr, for people watching: off with --json and when stderr is not
    a terminal (a log file would fill with carriage returns)."""
    def show(done, total):
        filled = width * done // max(total, 1)
        # Redrawn only when the bar grows: a write per iteration would cost more than some
        # of the calls being timed.
        if getattr(args, "json", False) or not sys.stderr.isatty() or (
                done < total and filled == width * (done - 1) // max(total, 1)):
            return
        print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}",
              end="" if done < total else "\n", file=sys.stderr, flush=True)
    return show


def _cmd_detect(args) -> int:
    from picoface import imageio

    image = imageio.read_bgr(args.image)
    detector = _open_detector(args)
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
                           source=Path(args.model).name, match_threshold=args.match_threshold)
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


def _cmd_quantize(args) -> int:
    from picoface import modelfile
    from picoface.quant_report import accuracy_table, parse_budget, sensitivity_table
    from picoface.quantize import quantize_model

    keep = [k.strip() for k in (args.keep_float or "").split(",") if k.strip()]
    budget = parse_budget(args.budget or [])
    suffix = str(args.output).lower().rsplit(".", 1)[-1]
    fmt = args.format or (suffix if suffix in ("onnx", "tflite") else "pface")
    if fmt == "onnx":
        return _quantize_onnx(args, keep, budget)
    if fmt == "tflite":
        return _quantize_tflite(args)
    blob, report = quantize_model(args.model, args.calib, method=args.method,
                                  per_channel=args.per_channel, keep_float=keep, task=args.task,
                                  head=args.head, preset=args.preset, calib_size=args.calib_size,
                                  limit=args.limit, budget=budget, eval_data=args.eval_data,
                                  eval_limit=args.eval_limit, sensitivity=args.sensitivity,
                                  report_accuracy=True, report_limit=args.measure_limit,
                                  progress=_stage_progress(args))
    out = modelfile.save(args.output, blob)
    summary = modelfile.summary(out)  # re-read through the C++ loader: never ship a bad file
    report.update({"output": str(out), "bytes": len(blob), "ops": len(summary["ops"])})
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"wrote {out} ({len(blob)} bytes): {report['int8_convs']} of {report['convs']} Convs in "
              f"int8, calibrated on {report['calibration_images']} image(s) ({args.method})")
        print(accuracy_table(report["accuracy"]))
        if args.sensitivity:
            print("\nper-layer sensitivity (each Conv alone in int8), worst first:")
            print(sensitivity_table(report["sensitivity"]))
    return _budget_exit(report.get("budget", {}))


def _stage_progress(args):
    def show(stage, done, total):
        if not args.json and sys.stderr.isatty():
            print(f"\r{stage} {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)
    return show


def _budget_exit(checks) -> int:
    """Exit status 3 and a one-line error for the first budget exceeded, else 0."""
    from picoface.quant_report import METRICS

    for metric, c in checks.items():
        if not c["ok"]:
            bound = "below the floor" if METRICS[metric].floor else "over the budget"
            print(f"picoface: error: {metric} {c['value']:g} is {bound} {c['budget']:g}", file=sys.stderr)
            return 3
    return 0


def _quantize_onnx(args, keep, budget) -> int:
    from picoface.quant_onnx import quantize_onnx

    if keep or budget or args.sensitivity or args.eval_data:
        raise ValueError("--keep-float, --budget, --sensitivity and --eval-data apply to native "
                         "(.pface) output, not --format onnx")
    report = quantize_onnx(args.model, args.calib, args.output, method=args.method,
                           per_channel=args.per_channel, task=args.task, head=args.head,
                           preset=args.preset, calib_size=args.calib_size, limit=args.limit,
                           check_limit=args.measure_limit)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"wrote {report['output']} (ONNX QDQ, {report['activations']} activations, "
          f"{'per-channel' if args.per_channel else 'per-tensor'} int8 weights), calibrated on "
          f"{report['calibration_images']} image(s) ({args.method}); onnxruntime vs the fp32 "
          f"ONNX on {report['check']['images']} of them: lowest output SQNR "
          f"{report['check']['sqnr_db_min']:.1f} dB, cosine {report['check']['cosine']:.6f}")
    return 0


def _quantize_tflite(args) -> int:
    from picoface import modelfile
    from picoface.tflite_export import pface_to_tflite

    if args.method != "minmax" or not args.per_channel or args.keep_float:
        raise ValueError("--format tflite uses ai-edge-quantizer's static int8 recipe (min/max "
                         "ranges, per-channel weights, every op int8): drop --method, "
                         "--no-per-channel and --keep-float")
    blob, report = pface_to_tflite(args.model, calib=args.calib, size=args.calib_size,
                                   limit=args.limit, task=args.task, head=args.head,
                                   preset=args.preset)
    out = modelfile.save(args.output, blob)
    report.update({"output": str(out), "bytes": len(blob)})
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"wrote {out} ({len(blob)} bytes, full-integer TFLite, input {report['input']}), "
          f"calibrated on {report['calibration_images']} image(s); fp32 TFLite vs native "
          f"{report['fp32_vs_native_rel_error']:.3g} of the largest output, int8 vs native: lowest "
          f"output cosine {report['int8_min_output_cosine']:.5f}")
    if "int8_detections" in report:
        d = report["int8_detections"]
        print(f"int8 TFLite vs native fp32 detections on {d['images']} calibration image(s): "
              f"recall {d['recall']:.3f}, precision {d['precision']:.3f}, mean IoU {d['mean_iou']:.3f}")
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


def _cmd_export(args) -> int:
    from picoface.export import export

    image = None
    if args.image:
        from picoface import imageio

        image = imageio.read_bgr(args.image)
    to = args.to or ("tflite" if str(args.output).lower().endswith(".tflite") else "onnx")
    report = export(args.checkpoint, args.output, arch=args.arch, to=to, image=image,
                    int8=args.int8, calib=args.calib, size=args.size, limit=args.limit)
    if args.json:
        print(json.dumps(report))
    elif to == "onnx":
        print(f"wrote {report['output']} ({report['arch']}, {report['bytes']} bytes): "
              f"onnxruntime vs PyTorch at {report['input']}, max abs error "
              f"{report['max_abs_error']:.3g} (< {report['tolerance']:g})")
    else:
        print(f"wrote {report['output']} ({report['arch']}, {report['bytes']} bytes, input "
              f"{report['input']}): fp32 TFLite vs PyTorch max error {report['max_rel_error']:.3g} "
              f"of the largest output (< {report['tolerance']:g})")
        if "int8" in report:
            q = report["int8"]
            print(f"int8 vs fp32 TFLite on {q['images']} {q['compared_on']}: recall "
                  f"{q['recall']:.3f}, precision {q['precision']:.3f}, mean IoU {q['mean_iou']:.3f} "
                  f"({q['reference_faces']} / {q['faces']} faces)")
    return 0


def _sizes(text: str):
    return [_size(t) for t in text.split(",")]


def _cmd_bench(args) -> int:
    from picoface import bench

    images = None
    if args.images:
        from picoface import imageio

        root = Path(args.images)
        paths = sorted(p for p in root.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")) \
            if root.is_dir() else [root]
        if not paths:
            raise ValueError(f"no .jpg/.png images in {str(root)!r}")
        images = [imageio.read_bgr(p) for p in paths]
    pipeline = args.target if args.target in bench.PIPELINES else None
    model = args.detector if pipeline else args.target
    if args.detector and not pipeline:
        raise ValueError(f"--detector names a pipeline's detector ({', '.join(bench.PIPELINES)}); "
                         f"the model here is {args.target!r}")
    if args.embedder and pipeline != "detect+embed":
        raise ValueError(f"--embedder is for the detect+embed pipeline, got {args.target!r}")
    compare = args.compare.split(",") if args.compare else ()
    backends = args.backend.split(",") if args.backend else None
    if args.callgrind:
        if pipeline or compare or args.also or args.end_to_end or backends:
            raise ValueError("--callgrind counts the native engine of one model: no pipeline, "
                             "--compare, --also, --end-to-end or --backend")
        report = bench.callgrind(model, task=args.task, head=args.head, preset=args.preset,
                                 sizes=args.size, int8=args.int8, calib=args.calib, images=images)
    else:
        if args.max_instructions is not None:
            raise ValueError("--max-instructions needs --callgrind")
        report = bench.bench(model, pipeline=pipeline, task=args.task, head=args.head,
                             preset=args.preset, embedder=args.embedder,
                             embedder_preset=args.preset if pipeline else None, sizes=args.size,
                             backends=backends, int8=args.int8, calib=args.calib,
                             also=args.also.split(",") if args.also else (),
                             end_to_end=args.end_to_end, compare=compare, images=images,
                             runs=args.runs, warmup=args.warmup, threads=args.threads,
                             profile=args.profile, progress=_progress(args))
    print(json.dumps(report, indent=2) if args.json
          else bench.render(report, "markdown" if args.markdown else "text"))
    over = [r for r in report["rows"] if args.max_instructions is not None
            and r["instructions"] > args.max_instructions]
    if over:
        print("picoface: error: over --max-instructions " + f"{args.max_instructions}: " + ", ".join(
            f"{r['runner']} at {r['size']} {r['instructions']}" for r in over), file=sys.stderr)
        return 1
    return 0


def _cmd_eval_wider(args) -> int:
    from picoface import eval_wider

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"expected --limit >= 1, got {args.limit}")
    detector = _open_detector(args)
    t0 = time.perf_counter()
    report = eval_wider.evaluate_detector(detector, args.data, limit=args.limit,
                                          unstretch=args.unstretch, progress=_progress(args))
    if args.json:
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v
                          for k, v in report.items()}))
        return 0
    geometry = ", unstretched to original sizes" if args.unstretch else ""
    print(f"WIDER-val416 AP (official protocol{geometry}), {report['images']} images, "
          f"{detector.model_name} [{detector.backend}], score >= {detector.score_threshold:g}, "
          f"NMS {detector.nms_threshold:g}, {time.perf_counter() - t0:.1f} s")
    print("| easy | medium | hard |")
    print("|---|---|---|")
    print("| " + " | ".join(f"{report[s]:.4f}" for s in eval_wider.SETTINGS) + " |")
    return 0


# ---- recognition: verify, enroll, identify, eval verify ---------------------------------

# No detector or recogniser ships yet (issues #5, #6): the defaults below are the public
# reference models in ../shared, found relative to the working directory (the project root).
DEFAULT_DETECTOR = Path("../shared/models/ShiqiYu__libfacedetection.train/onnx/yunet_s_dynamic.onnx")
_NO_RECOGNISER = ("picoface ships no face recogniser yet (issue #6): pass --model, e.g. SFace "
                  "converted with `picoface convert face_recognition_sface_2021dec_int8bq.onnx "
                  "--task embed --preset sface -o sface.pface` (an ONNX file is converted in "
                  "memory; give --preset for it)")


def _add_recognition_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="face recogniser: a .pface file, or ONNX (converted in memory "
                   "to the native engine; then also --preset). Required: none ships yet")
    p.add_argument("--preset", help="input convention of an ONNX recogniser: arcface (default) or sface")
    p.add_argument("--detector", help=f"face detector (default, for now: {DEFAULT_DETECTOR}, "
                   "relative to the working directory)")
    p.add_argument("--detector-head", default="yunet", help="head of an ONNX detector (default yunet)")
    p.add_argument("--threads", type=int, default=1)


def _recognizer(args, flip: bool = False):
    from picoface import FaceDetector
    from picoface.recognize import Recognizer, open_embedder

    if not args.model:
        raise ValueError(_NO_RECOGNISER)
    det_path = Path(args.detector) if args.detector else DEFAULT_DETECTOR
    if not det_path.is_file():
        raise FileNotFoundError(f"face detector not found: {str(det_path)!r}; picoface ships "
                                "none yet (issue #5): pass --detector MODEL (e.g. "
                                "yunet_s_dynamic.onnx with --detector-head yunet)")
    detector = FaceDetector(det_path, head=args.detector_head, threads=args.threads)
    embedder = open_embedder(args.model, preset=args.preset, threads=args.threads)
    return Recognizer(detector, embedder, flip=flip)


def _one_face(rec, path: str, *, largest: bool):
    """(embedding, faces found) of the single (or, with `largest`, the largest) face."""
    from picoface import imageio
    from picoface.recognize import NoFace

    try:
        emb, count = rec.largest(imageio.read_bgr(path))
    except NoFace:
        raise ValueError(f"{path}: no face found") from None
    if count > 1 and not largest:
        raise ValueError(f"{path}: {count} faces found, expected one (crop the image, or pass "
                         "--largest to use the largest face)")
    return emb, count


def _cmd_verify(args) -> int:
    from picoface import cosine

    rec = _recognizer(args)
    threshold = args.threshold if args.threshold is not None else rec.embedder.threshold
    notes = []
    embs = []
    for path in (args.image_a, args.image_b):
        emb, count = _one_face(rec, path, largest=True)
        if count > 1:
            notes.append(f"{path}: {count} faces found, compared the largest")
        embs.append(emb)
    score = float(cosine(embs[0], embs[1]))
    same = None if threshold is None else score >= threshold
    if args.json:
        print(json.dumps({"same": same, "score": score, "threshold": threshold,
                          "embedder_id": rec.embedder.id, "notes": notes}))
        return 0
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    if same is None:
        print(f"cosine {score:.4f} (the model records no match threshold: pass --threshold)")
    else:
        print(f"{'same person' if same else 'different people'}: cosine {score:.4f} "
              f"{'>=' if same else '<'} threshold {threshold:.4f}")
    return 0


def _cmd_enroll(args) -> int:
    from picoface import Gallery

    rec = _recognizer(args)
    gallery = Gallery(args.gallery, embedder_id=rec.embedder.id, storage=args.storage,
                      threshold=rec.embedder.threshold)
    # All images are checked before the gallery changes: one bad image enrolls nothing.
    embs = [_one_face(rec, p, largest=args.largest)[0] for p in args.images]
    import numpy as np

    existed = args.name in gallery
    gallery.enroll(args.name, np.stack(embs))
    path = gallery.save()
    if args.json:
        print(json.dumps({"name": args.name, "enrolled": len(embs), "new_name": not existed,
                          "gallery": str(path), "names": len(gallery), "embeddings": gallery.rows}))
    else:
        print(f"enrolled {len(embs)} image(s) as {args.name!r} "
              f"({'added to' if existed else 'new name in'} {path}: {len(gallery)} names, "
              f"{gallery.rows} embeddings)")
    return 0


def _cmd_identify(args) -> int:
    from picoface import Gallery, imageio

    rec = _recognizer(args)
    if not Path(args.gallery).is_file():
        raise FileNotFoundError(f"gallery not found: {args.gallery!r} (create it with "
                                "`picoface enroll NAME IMAGES... --gallery G`)")
    gallery = Gallery.load(args.gallery, embedder_id=rec.embedder.id)
    threshold = args.threshold if args.threshold is not None else gallery.threshold
    image = imageio.read_bgr(args.image)
    faces, embs = rec.faces(image)
    results = []
    for i, face in enumerate(faces):
        names, scores = gallery.identify(embs[i], top_k=args.top_k, threshold=threshold)
        results.append({"box": [round(float(v), 2) for v in face.box],
                        "score": round(float(face.score), 4),
                        "matches": [{"name": n, "score": float(s)} for n, s in zip(names, scores)]})
    if args.output:
        imageio.write(args.output, _annotate_names(image, faces, results))
    if args.json:
        print(json.dumps({"image": args.image, "gallery": args.gallery, "threshold": threshold,
                          "faces": results}))
        return 0
    if not results:
        print(f"{args.image}: no face found")
        return 0
    for r in results:
        box = ", ".join(f"{v:.0f}" for v in r["box"])
        if r["matches"]:
            who = ", ".join(f"{m['name']} ({m['score']:.3f})" for m in r["matches"])
        else:
            who = "unknown" + (f" (no name scores >= {threshold:.3f})" if threshold is not None else "")
        print(f"face [{box}]: {who}")
    if threshold is None:
        print("note: no match threshold known (the model records none): names are ranked, not "
              "accepted; pass --threshold", file=sys.stderr)
    if args.output:
        print(f"annotated image written to {args.output}")
    return 0


def _annotate_names(image, faces, results):
    import cv2

    from picoface import imageio

    out = imageio.annotate(image, faces)
    thick = max(1, round(max(image.shape[:2]) / 500))
    for r in results:
        x1, _, _, y2 = (int(round(v)) for v in r["box"])
        label = r["matches"][0]["name"] if r["matches"] else "unknown"
        cv2.putText(out, label, (x1, y2 + 14 * thick), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * thick,
                    (0, 255, 255), thick)
    return out


def _cmd_eval_verify(args) -> int:
    import numpy as np

    from picoface import eval_verify, imageio
    from picoface.recognize import NoFace

    pairs = eval_verify.read_pairs(args.pairs)
    if args.folds:
        chosen = eval_verify.parse_folds(args.folds)
        pairs = [p for p in pairs if p.fold in chosen]
        if not pairs:
            raise ValueError(f"{args.pairs}: no pairs in folds {args.folds}")
    if args.per_fold:  # a balanced subset: the first N/2 same and N/2 different pairs of each fold
        kept, seen = [], {}
        for pair in pairs:
            key = (pair.fold, pair.same)
            seen[key] = seen.get(key, 0) + 1
            if seen[key] <= args.per_fold // 2:
                kept.append(pair)
        pairs = kept
    root = Path(args.images) if args.images else Path(args.pairs).resolve().parent
    rec = _recognizer(args, flip=args.flip)
    cache = {}
    undetected = []
    needed = sorted({p for pair in pairs for p in (pair.image_a, pair.image_b)})
    for done, name in enumerate(needed, 1):
        image = imageio.read_bgr(root / name)
        try:
            cache[name] = rec.largest(image)[0]
        except NoFace:
            undetected.append(name)
            cache[name] = rec.centre(image) if args.undetected == "centre" else None
        if not args.json and sys.stderr.isatty():
            print(f"\rembedding {done}/{len(needed)} images", end="" if done < len(needed) else "\n",
                  file=sys.stderr, flush=True)
    scores = np.empty(len(pairs))
    failed = 0
    for i, pair in enumerate(pairs):
        a, b = cache[pair.image_a], cache[pair.image_b]
        if a is None or b is None:  # policy "fail": below every threshold, i.e. "different"
            scores[i] = -2.0
            failed += 1
        else:
            scores[i] = float(np.dot(a, b))
    labels = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    rep = eval_verify.report(scores, labels, folds, far=1e-3)
    rep["folds"] = sorted({int(f) for f in folds})
    t = rec.embedder.threshold
    if t is not None:  # how the model file's calibrated threshold does on these pairs
        rep.update({"model_threshold": t,
                    "far_at_model_threshold": float(np.mean(scores[~labels] > t)),
                    "tar_at_model_threshold": float(np.mean(scores[labels] > t))})
    rep.update({"subset_per_fold": args.per_fold or None, "model": args.model, "embedder_id": rec.embedder.id, "flip": args.flip,
                "images": len(needed), "undetected_images": len(undetected),
                "undetected_policy": args.undetected, "failed_pairs": failed})
    if args.json:
        print(json.dumps(rep))
        return 0
    print(f"{rep['pairs']} pairs, {len(needed)} images ({len(undetected)} without a detected face: "
          f"{args.undetected}; {failed} failed pairs), flip={args.flip}")
    print(f"accuracy {100 * rep['accuracy']:.2f} +- {100 * rep['accuracy_std']:.2f} % "
          f"({len(rep['folds'])}-fold), TAR@FAR=1e-3 {100 * rep['tar_at_far_1e-3']:.2f} % "
          f"(threshold {rep['threshold_at_far_1e-3']:.4f})")
    return 0


def _add_eval_verify_parser(evsub) -> None:
    v = evsub.add_parser("verify", help="verification accuracy on an LFW-style pairs file "
                         "(detect -> align -> embed -> cosine)")
    v.add_argument("--pairs", required=True, help="fold<TAB>image_a<TAB>image_b<TAB>same file "
                   "(images relative to it), e.g. ../shared/data/celeba/pairs.tsv")
    v.add_argument("--images", help="folder the pairs' image paths are relative to (default: "
                   "the pairs file's)")
    _add_recognition_options(v)
    v.add_argument("--flip", action="store_true", help="average with the mirrored crop's embedding")
    v.add_argument("--undetected", choices=["fail", "centre"], default="fail",
                   help="image without a detected face: its pairs fail (score below every "
                        "threshold, i.e. judged 'different'; default) or its central square "
                        "is embedded instead")
    v.add_argument("--folds", help="only the pairs of these folds, e.g. 8-9 or 0,3 (the "
                   "cross-validation then runs over them: threshold on the others, tested on each)")
    v.add_argument("--per-fold", type=int, default=0, help="a quick subset: only the first N/2 "
                   "same and N/2 different pairs of each fold (0 = all pairs)")
    v.add_argument("--json", action="store_true")
    v.set_defaults(run=_cmd_eval_verify)


def _add_recognition_parsers(sub) -> None:
    ver = sub.add_parser("verify", help="are the faces in two images the same person?")
    ver.add_argument("image_a")
    ver.add_argument("image_b")
    _add_recognition_options(ver)
    ver.add_argument("--threshold", type=float, help="cosine match threshold (default: the model's)")
    ver.add_argument("--json", action="store_true")
    ver.set_defaults(run=_cmd_verify)

    en = sub.add_parser("enroll", help="add a person's face images to a gallery (created if absent)")
    en.add_argument("name")
    en.add_argument("images", nargs="+")
    en.add_argument("--gallery", required=True, help="gallery file")
    _add_recognition_options(en)
    en.add_argument("--largest", action="store_true", help="use the largest face of an image "
                    "with several (default: refuse such images, nothing is enrolled)")
    en.add_argument("--storage", choices=["fp32", "int8"], help="for a new gallery (default fp32)")
    en.add_argument("--json", action="store_true")
    en.set_defaults(run=_cmd_enroll)

    ide = sub.add_parser("identify", help="name every face of an image from a gallery")
    ide.add_argument("image")
    ide.add_argument("--gallery", required=True)
    _add_recognition_options(ide)
    ide.add_argument("--top-k", type=int, default=1)
    ide.add_argument("--threshold", type=float,
                     help="cosine match threshold (default: the gallery's, from the model)")
    ide.add_argument("--output", "-o", help="write an annotated copy of the image here")
    ide.add_argument("--json", action="store_true")
    ide.set_defaults(run=_cmd_identify)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="picoface", description="Face detection and recognition on one CPU core.")
    sub = p.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="build and CPU facts (compiler, ISAs)")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(run=_cmd_info)

    det = sub.add_parser("detect", help="detect faces in an image")
    det.add_argument("image", help="image file (anything OpenCV reads)")
    _add_detector_options(det)
    det.add_argument("--max-faces", type=int, default=0, help="0 = all")
    det.add_argument("--output", "-o", help="write an annotated copy of the image here")
    det.add_argument("--json", action="store_true", help="print JSON")
    det.set_defaults(run=_cmd_detect)

    conv = sub.add_parser("convert", help="convert an ONNX model to the picoface format (.pface)")
    conv.add_argument("model", help="ONNX file")
    conv.add_argument("--task", required=True, choices=["detect", "landmarks", "embed"])
    conv.add_argument("--head", help="detector head: " + ", ".join(sorted(HEADS)))
    conv.add_argument("--preset", help="input convention of a recogniser (arcface, sface; default "
                      "arcface) or a landmark model (pfld, the default)")
    conv.add_argument("--match-threshold", help="recogniser only: calibrated cosine match "
                      "threshold, T or T@WHERE (e.g. '0.38@celeba pairs FAR=1e-3'), the default "
                      "of verify / identify")
    conv.add_argument("--output", "-o", required=True, help="output .pface file")
    conv.add_argument("--json", action="store_true", help="print the result and per-pass op counts as JSON")
    conv.set_defaults(run=_cmd_convert)

    q = sub.add_parser("quantize", help="native INT8 post-training quantisation of a .pface or "
                       "ONNX model over calibration images")
    q.add_argument("model", help="shipped model name, .pface file, or ONNX with --task and --head/--preset")
    q.add_argument("--calib", required=True, help="folder of calibration images (or an .npz of uint8 "
                   "images / float32 NCHW inputs), e.g. ../shared/data/wider/test183/images; never "
                   "the evaluation set")
    q.add_argument("--method", default="minmax", choices=["minmax", "percentile", "entropy"],
                   help="activation range: full observed range, its 0.01/99.99 percentiles, or "
                   "the clipping threshold of least KL divergence (TensorRT-style)")
    q.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=True,
                   help="weight scales per output channel (default) or per tensor")
    q.add_argument("--keep-float", help="comma-separated: first (the Conv reading the image), "
                   "last (Convs with no Conv after them), auto (the most sensitive Convs, as few "
                   "as --budget allows), or Conv names from the --sensitivity table")
    q.add_argument("--budget", action="append", metavar="METRIC=VALUE",
                   help="repeatable; with --keep-float auto the target, else a check (exit status 3 "
                   "when exceeded). sqnr=DB (lowest output SQNR must stay above), cosine=D (1 - mean "
                   "cosine to fp32), nme=PCT (landmarks), ap_easy|ap_medium|ap_hard=POINTS "
                   "(detectors, --eval-data), accuracy|tar_at_far_1e-3=POINTS (recognisers, --eval-data)")
    q.add_argument("--eval-data", help="labelled data for the accuracy report and budgets: a "
                   "WIDER-val416 folder for detectors (e.g. ../shared/data/wider/val416), a pairs "
                   "file for recognisers (e.g. ../shared/data/celeba/pairs.tsv)")
    q.add_argument("--eval-limit", type=int, help="evaluate on at most N images (detectors) or "
                   "pairs (recognisers)")
    q.add_argument("--sensitivity", action="store_true", help="also print each Conv's error when "
                   "it alone is int8, worst first")
    q.add_argument("--measure-limit", type=int, default=16, help="calibration images the "
                   "sensitivity, the SQNR/cosine/NME metrics and the report run on (default 16)")
    q.add_argument("--format", choices=["pface", "onnx", "tflite"], help="native int8 .pface, an "
                   "ONNX QDQ model through onnxruntime.quantization (ONNX input only), or a "
                   "full-integer TFLite model (litert-torch + ai-edge-quantizer, the [export] "
                   "extra); default from the -o suffix")
    q.add_argument("--limit", type=int, default=50, help="calibration images used (default 50)")
    q.add_argument("--calib-size", type=_size, help="detector input WIDTHxHEIGHT during calibration "
                   "(default 416x416; fixed-size models use their own); --format tflite: the "
                   "model's fixed input (default 640x480)")
    q.add_argument("--task", choices=["detect", "landmarks", "embed"], help="ONNX input only")
    q.add_argument("--head", help="ONNX detector head: " + ", ".join(sorted(HEADS)))
    q.add_argument("--preset", help="ONNX recogniser / landmark preset")
    q.add_argument("--output", "-o", required=True, help="output .pface, .onnx or .tflite file")
    q.add_argument("--json", action="store_true")
    q.set_defaults(run=_cmd_quantize)

    from picoface.bench import COMPARE

    b = sub.add_parser("bench", help="latency, memory and load time of a model or a pipeline on "
                       "every backend that runs it, interleaved on the same frames")
    b.add_argument("target", metavar="MODEL_OR_PIPELINE",
                   help="a shipped model name (picoface-det-tiny), a .pface, ONNX or .tflite file "
                        "(ONNX/.tflite: with --task, --head/--preset), or a pipeline: detect "
                        "(the detector end to end on uint8 frames), detect+embed (detect -> align "
                        "-> embed each face)")
    b.add_argument("--backend", help="comma-separated runners from native, onnxruntime, tflite "
                   "(default: those the model's format allows; one that cannot run gets an "
                   "n/a row)")
    b.add_argument("--int8", action="store_true", help="also a native int8 runner, the model "
                   "quantised in memory (picoface quantize) on --calib, else on --images, else "
                   "on seeded noise (speed only)")
    b.add_argument("--calib", help="folder of calibration images for --int8, e.g. "
                   "../shared/data/wider/test183/images")
    b.add_argument("--size", type=_sizes,
                   help="comma-separated frame sizes WIDTHxHEIGHT (default: 320x240,640x480 "
                        "for detectors, the model's input size otherwise)")
    b.add_argument("--threads", type=int, default=1)
    b.add_argument("--runs", type=int, default=100, help="timed iterations (default 100)")
    b.add_argument("--warmup", type=int, default=10, help="untimed calls per runner first")
    b.add_argument("--images", help="an image or a folder of them to make the frames from "
                   "(default: seeded noise)")
    b.add_argument("--task", choices=["detect", "landmarks", "embed"],
                   help="task of an ONNX or .tflite model (a .pface names its own)")
    b.add_argument("--head", help="head of an ONNX/.tflite detector: " + ", ".join(sorted(HEADS)))
    b.add_argument("--preset", help="input convention of an ONNX/.tflite recogniser or landmark "
                   "model (the pipelines: of --embedder)")
    b.add_argument("--detector", help="the pipelines' detector (default: picoface-det-tiny)")
    b.add_argument("--embedder", help="the detect+embed pipeline's recogniser: .pface, ONNX or "
                   ".tflite")
    b.add_argument("--also", help="comma-separated model files of the same network (e.g. "
                   "`picoface quantize` output, a .tflite), each timed on the backend its format "
                   "names, on the same inputs")
    b.add_argument("--end-to-end", action="store_true",
                   help="detectors: also time FaceDetector.detect (preprocess + inference + "
                        "decode + NMS) on each backend")
    b.add_argument("--compare", nargs="?", const=",".join(COMPARE),
                   help="whole-detector comparisons on the same frames, when installed: yuface "
                        "(libfacedetection), opencv (FaceDetectorYN; YuNet ONNX files); "
                        "default both")
    b.add_argument("--profile", action="store_true",
                   help="also print each native engine's time per op type and its slowest ops")
    b.add_argument("--callgrind", action="store_true",
                   help="instead of timing: instructions per inference of the native engine "
                        "(and --int8) under valgrind's callgrind, deterministic, for CI")
    b.add_argument("--max-instructions", type=int,
                   help="with --callgrind: exit 1 when a runner needs more per inference")
    out = b.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the whole report as JSON")
    out.add_argument("--markdown", action="store_true",
                     help="print BENCHMARKS.md's Markdown tables (default: aligned text)")
    b.set_defaults(run=_cmd_bench)

    from picoface.export import ARCHS, FORMATS

    ex = sub.add_parser("export", help="export a detector checkpoint (.pth) through the "
                        "project's definitions (models/) to ONNX or TFLite (fp32 or full int8), "
                        "checked against PyTorch (needs a source checkout and the [export] extra)")
    ex.add_argument("checkpoint", help=".pth weights of one of: " + ", ".join(sorted(ARCHS)))
    ex.add_argument("--arch", choices=sorted(ARCHS),
                    help="default: the definition that loads the checkpoint strictly")
    ex.add_argument("--to", choices=FORMATS, help="output format: onnx (dynamic size) or tflite "
                    "(fixed --size, litert-torch); default from the -o suffix")
    ex.add_argument("--int8", action="store_true", help="tflite: full-integer model "
                    "(ai-edge-quantizer, int8 weights and activations), needs --calib")
    ex.add_argument("--calib", help="folder of calibration images (or .npz) for --int8, e.g. "
                    "../shared/data/wider/test183/images; never the evaluation set")
    ex.add_argument("--limit", type=int, default=50, help="calibration images used (default 50)")
    ex.add_argument("--size", type=_size, help="tflite input WIDTHxHEIGHT, rounded up to the "
                    "architecture's multiple (default 640x480; EXTD 640x512)")
    ex.add_argument("--output", "-o", required=True)
    ex.add_argument("--image", help="real image for the check (default: seeded random input)")
    ex.add_argument("--json", action="store_true")
    ex.set_defaults(run=_cmd_export)

    ins = sub.add_parser("inspect", help="metadata, ops and parameters of a .pface model")
    ins.add_argument("model")
    ins.add_argument("--json", action="store_true")
    ins.add_argument("--size", type=_size, help="also count MACs at this WIDTHxHEIGHT input")
    ins.set_defaults(run=_cmd_inspect)

    _add_recognition_parsers(sub)
    ev = sub.add_parser("eval", help="accuracy on public benchmarks")
    ev_sub = ev.add_subparsers(dest="benchmark", required=True)
    wider = ev_sub.add_parser("wider", help="detector AP (easy/medium/hard) on WIDER-val416 by the "
                              "official WIDER FACE protocol")
    _add_detector_options(wider, score_threshold=0.02,
                          score_help="lowest score kept (default 0.02: AP needs the whole PR curve)")
    wider.add_argument("--data", required=True,
                       help="WIDER-val416 folder (gt_416.jsonl, images/), e.g. ../shared/data/wider/val416")
    wider.add_argument("--limit", type=int, help="evaluate only the first N images")
    wider.add_argument("--unstretch", action="store_true",
                       help="resize each 416x416 image back to its original size before detection "
                            "(undoes the aspect distortion; not the default WIDER-val416 protocol)")
    wider.add_argument("--json", action="store_true",
                       help='print {"easy": AP, "medium": AP, "hard": AP, "images": N}')
    wider.set_defaults(run=_cmd_eval_wider)
    _add_eval_verify_parser(ev_sub)
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
