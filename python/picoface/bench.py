"""`picoface bench`: latency of one model on picoface's native engine and on onnxruntime,
interleaved on the same frames, one process, one machine.

Runners, all timed in one loop (one call each per iteration, the order rotating):
  * ``native`` / ``onnxruntime``: network inference alone, on the tensor picoface would feed
    for the frame (a detector's letterboxed input; a crop model's resized frame);
  * ``native end-to-end`` (detectors, ``end_to_end=True``): :meth:`FaceDetector.detect` on
    the uint8 frame, i.e. preprocess + inference + decode + NMS;
  * whole-detector baselines on the same uint8 frame (``baselines``): ``yuface``
    (libfacedetection's PyPI build) and ``opencv`` (``cv2.FaceDetectorYN`` running this
    model, YuNet only). A missing package gives a row marked "n/a (package missing)".
Ratios are onnxruntime inference median / runner median, per frame size.

With ``profile=True`` the native engine's time per executed op (median over
``PROFILE_RUNS`` runs after the timed loop) is reported per op type and for the slowest ops.
``models`` may include .tflite versions of the network (rows "tflite NAME"). The tools
issue (#7) adds peak RSS and callgrind counts.
"""

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from picoface import _core
from picoface.backends.tflite import is_tflite_model
from picoface.info import build_info

BACKENDS = ("native", "onnxruntime")
BASELINES = ("yuface", "opencv")
END_TO_END = "native end-to-end"
DETECTOR_SIZES = ((320, 240), (640, 480))
PROFILE_RUNS = 30


def _profile(engine, x: np.ndarray, top: int = 10) -> dict:
    """Median seconds per executed op of `engine` on `x`, by op type and the `top` slowest."""
    runs = [engine.profile([x]) for _ in range(PROFILE_RUNS)]
    median = np.median(np.array([[step[3] for step in run] for run in runs]), axis=0)
    by_type: Dict[str, List[float]] = {}
    ops = []
    for (index, op_type, output, _), t in zip(runs[0], median):
        entry = by_type.setdefault(op_type, [0, 0.0])
        entry[0] += 1
        entry[1] += float(t)
        ops.append({"op": int(index), "type": op_type, "output": output, "ms": round(float(t) * 1e3, 4)})
    return {"total_ms": round(float(median.sum()) * 1e3, 4),
            "by_type": [{"type": k, "count": n, "ms": round(t * 1e3, 4)}
                        for k, (n, t) in sorted(by_type.items(), key=lambda kv: -kv[1][1])],
            "slowest": sorted(ops, key=lambda o: -o["ms"])[:top]}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") or line.startswith("Model"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _stats(samples: List[float]) -> Dict[str, float]:
    a = np.sort(np.asarray(samples)) * 1e3
    return {"min_ms": float(a[0]), "median_ms": float(np.median(a)),
            "p90_ms": float(np.percentile(a, 90)), "p99_ms": float(np.percentile(a, 99)),
            "runs": int(a.size)}


@dataclass
class _Runner:
    name: str
    load_s: float
    prepare: Callable  # uint8 BGR frame -> the call's argument (outside the timing)
    call: Callable
    engine: object = None  # the native engine, for its MAC count


class _Missing(Exception):
    """A baseline that cannot run here; its row says why instead of a time."""


def _crop_input(meta: dict) -> Callable:
    """Frame -> the tensor a fixed-size crop model (landmarks, embed) gets: the frame resized
    into its input in its colour order and normalisation."""
    w, h = meta["input.size"]
    mean, std, color = list(meta["input.mean"]), list(meta["input.std"]), meta["input.color"]

    def prepare(frame):
        box = _core.letterbox(frame.shape[1], frame.shape[0], w, h, "keep_aspect")
        return _core.preprocess(frame, box, "bgr", color, mean, std, "nchw", "float32", 1.0, 0,
                                "auto", [0.0, 0.0, 0.0])[None]
    return prepare


def _baseline(name: str, onnx_path: Path, head: Optional[str], threads: int):
    """(load seconds, frame -> faces) of a whole-detector baseline. Raises _Missing."""
    t0 = time.perf_counter()
    if name == "yuface":
        # libfacedetection runs OpenMP over every core, and its idle threads spin: they would
        # slow the other runners and break the one-thread comparison. libgomp reads this
        # when it loads, i.e. at the import below.
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        try:
            import yuface
        except ImportError:
            raise _Missing("n/a (package missing)") from None
        return time.perf_counter() - t0, yuface.detect
    try:
        import cv2
    except ImportError:
        raise _Missing("n/a (package missing)") from None
    if not hasattr(cv2, "FaceDetectorYN"):
        raise _Missing("n/a (OpenCV without FaceDetectorYN)")
    if head != "yunet":
        raise _Missing("n/a (runs YuNet models only)")
    cv2.setNumThreads(threads)
    det = cv2.FaceDetectorYN.create(str(onnx_path), "", (320, 240), 0.5, 0.4, 5000)

    def detect(frame):
        # Like picoface, a new frame size re-plans only when it changes.
        size = (frame.shape[1], frame.shape[0])
        if det.getInputSize() != size:
            det.setInputSize(size)
        return det.detect(frame)
    return time.perf_counter() - t0, detect


def _runners(onnx_path: Path, task: str, head: Optional[str], preset: Optional[str],
             backends: Sequence[str], end_to_end: bool, baselines: Sequence[str],
             threads: int, models: Sequence[Path] = ()) -> Tuple[List[_Runner], Dict[str, str]]:
    """The runners, and the rows that cannot run (name -> why)."""
    from picoface import modelfile
    from picoface.convert import convert_onnx

    for b in backends:
        if b not in BACKENDS:
            raise ValueError(f"expected backends from {BACKENDS}, got {b!r}")
    for b in baselines:
        if b not in BASELINES:
            raise ValueError(f"expected baselines from {BASELINES}, got {b!r}")
    if task != "detect" and (end_to_end or baselines):
        raise ValueError("end-to-end and baseline rows are for detectors (--task detect)")
    t0 = time.perf_counter()
    is_pface = onnx_path.suffix == modelfile.EXTENSION
    blob = onnx_path.read_bytes() if is_pface else convert_onnx(onnx_path, task=task, head=head, preset=preset)
    convert_s = time.perf_counter() - t0
    if task == "detect":
        from picoface.detector import FaceDetector
        # The detector's own preprocessing makes the inference input, so "inference alone"
        # and "end-to-end" rows see the same tensor.
        detector = FaceDetector(blob, backend="native", threads=threads)
        prepare = lambda frame: detector.preprocess(frame)[0]
    else:
        prepare = _crop_input(modelfile.summary(blob)["metadata"])
    runners, missing = [], {}
    for b in backends:
        t0 = time.perf_counter()
        if b == "native":
            engine = _core.Engine(blob, threads)
            runners.append(_Runner(b, convert_s + time.perf_counter() - t0, prepare,
                                   lambda x, e=engine: e.run([x]), engine))
        elif is_pface:
            missing[b] = "n/a (.pface model: onnxruntime needs the ONNX file)"
        else:
            from picoface.backends.ort import OnnxRuntimeBackend
            net = OnnxRuntimeBackend(onnx_path, threads=threads)
            runners.append(_Runner(b, time.perf_counter() - t0, prepare, net.run))
    for path in models:
        if is_tflite_model(Path(path)):
            runners.append(_tflite_runner(Path(path), task, head or _head_of(blob), threads, prepare))
            continue
        # Another .pface of the same network (e.g. its int8 version) on the same input tensors.
        t0 = time.perf_counter()
        engine = _core.Engine(Path(path).read_bytes(), threads)
        runners.append(_Runner(f"native {Path(path).name}", time.perf_counter() - t0, prepare,
                               lambda x, e=engine: e.run([x]), engine))
    if end_to_end:
        runners.append(_Runner(END_TO_END, convert_s, lambda frame: frame, detector))
    for b in baselines:
        try:
            load_s, call = _baseline(b, onnx_path, head, threads)
        except _Missing as e:
            missing[b] = str(e)
            continue
        runners.append(_Runner(b, load_s, lambda frame: frame, call))
    return runners, missing


def _head_of(blob: bytes) -> Optional[str]:
    from picoface import modelfile
    return modelfile.summary(blob)["metadata"].get("head.type")


def _tflite_runner(path: Path, task: str, head: Optional[str], threads: int,
                   prepare: Callable) -> _Runner:
    """A TFLite version of the network (e.g. ``picoface quantize --format tflite``; XNNPACK
    with ``threads`` threads). TFLite models have a fixed input: a detector's frame is
    letterboxed into it by its own preprocessing (the row's "net input" says which size);
    crop models get the same tensor as the other rows."""
    from picoface.backends.tflite import TfliteBackend

    t0 = time.perf_counter()
    net = TfliteBackend(path, threads=threads)
    if task == "detect":
        from picoface.detector import FaceDetector
        det = FaceDetector(path, head=head, backend="tflite", threads=threads)
        prepare = lambda frame: det.preprocess(frame)[0]
    return _Runner(f"tflite {path.name}", time.perf_counter() - t0, prepare, net.run)


def _frames(images: Optional[Sequence[np.ndarray]], w: int, h: int) -> List[np.ndarray]:
    """uint8 BGR w x h frames: the given images resized (area), else one seeded noise frame."""
    if not images:
        return [np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)]
    import cv2
    return [np.ascontiguousarray(cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA))
            for im in images]


def bench(onnx_path, *, task: str, head: Optional[str] = None, preset: Optional[str] = None,
          sizes: Optional[Sequence[Tuple[int, int]]] = None, backends=BACKENDS,
          end_to_end: bool = False, baselines: Sequence[str] = (), images=None,
          runs: int = 100, warmup: int = 10, threads: int = 1, profile: bool = False,
          progress=None, models: Sequence = ()) -> dict:
    """Times every runner on the same frames per frame size, interleaved.

    Args:
        onnx_path: the ONNX model; the native side converts it in memory. A .pface file
            runs natively only (``task`` must still name it).
        models: more .pface files of the same network (e.g. ``picoface quantize`` output),
            each a native row "native NAME" on the same input tensors, or .tflite files
            (``picoface quantize --format tflite``), each a row "tflite NAME".
        sizes: frame sizes (w, h); default 320x240 and 640x480 for detectors, the model's
            input size for crop models.
        images: uint8 BGR images the frames are made from (cycled per iteration); None: a
            seeded noise frame.
        profile: also report the native engine's time per op (``profiles``, per size).

    Returns:
        A JSON-ready report; rows that could not run carry ``status`` instead of times.
    """
    onnx_path = Path(onnx_path)
    runners, missing = _runners(onnx_path, task, head, preset, backends, end_to_end, baselines,
                                threads, [Path(m) for m in models])
    if sizes is None:
        if task == "detect":
            sizes = DETECTOR_SIZES
        else:
            probe = runners[0].prepare(np.zeros((8, 8, 3), np.uint8))
            sizes = [(probe.shape[3], probe.shape[2])]
    rows, profiles = [], {}
    for k, (w, h) in enumerate(sizes):
        frames = _frames(images, w, h)
        args = {r.name: [r.prepare(f) for f in frames] for r in runners}
        samples = {r.name: [] for r in runners}
        for r in runners:
            for i in range(warmup):
                r.call(args[r.name][i % len(frames)])
        for it in range(runs):
            shift = it % len(runners)
            for r in runners[shift:] + runners[:shift]:
                x = args[r.name][it % len(frames)]
                t0 = time.perf_counter()
                r.call(x)
                samples[r.name].append(time.perf_counter() - t0)
            if progress is not None:
                progress(k * runs + it + 1, len(sizes) * runs)
        for r in runners:
            x = args[r.name][0]
            row = {"backend": r.name, "size": f"{w}x{h}", "load_s": round(r.load_s, 4),
                   **{key: round(v, 4) if isinstance(v, float) else v
                      for key, v in _stats(samples[r.name]).items()}}
            if isinstance(x, np.ndarray) and x.dtype == np.float32:
                row["input"] = f"{x.shape[3]}x{x.shape[2]}"
            if r.engine is not None:
                row["gmacs"] = round(r.engine.macs / 1e9, 4)
            rows.append(row)
        rows += [{"backend": name, "size": f"{w}x{h}", "status": why} for name, why in missing.items()]
        native = next((r for r in runners if r.name == "native"), None)
        if profile and native is not None:
            profiles[f"{w}x{h}"] = _profile(native.engine, args["native"][0])
    info = build_info()
    return {"model": str(onnx_path), "task": task, "threads": threads, "cpu": cpu_model(),
            "isa": info["isa_selected"], "picoface": info["version"],
            "frames": f"{len(images)} image(s)" if images else "seeded noise", "rows": rows,
            **({"profiles": profiles} if profile else {})}


def markdown(report: dict) -> str:
    """The report as a Markdown table; ratio = onnxruntime inference median / row median."""
    lines = [f"model `{Path(report['model']).name}` ({report['task']}), {report['threads']} "
             f"thread(s), CPU {report['cpu']}, picoface {report['picoface']} ISA "
             f"{report['isa']}, frames: {report['frames']}", "",
             "| frame | runner | net input | median ms | p90 ms | min ms | p99 ms | "
             "vs onnxruntime inference | runs |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    ort = {r["size"]: r["median_ms"] for r in report["rows"]
           if r["backend"] == "onnxruntime" and "median_ms" in r}
    for r in report["rows"]:
        if "status" in r:
            lines.append(f"| {r['size']} | {r['backend']} | – | {r['status']} | | | | | |")
            continue
        ratio = f"{ort[r['size']] / r['median_ms']:.2f}x" if r["size"] in ort else "–"
        lines.append(f"| {r['size']} | {r['backend']} | {r.get('input', '–')} | "
                     f"{r['median_ms']:.3f} | {r['p90_ms']:.3f} | {r['min_ms']:.3f} | "
                     f"{r['p99_ms']:.3f} | {ratio} | {r['runs']} |")
    for size, prof in report.get("profiles", {}).items():
        lines += ["", f"native engine profile at {size}: {prof['total_ms']:.3f} ms in ops", "",
                  "| op type | ops | ms |", "|---|---:|---:|"]
        lines += [f"| {t['type']} | {t['count']} | {t['ms']:.3f} |" for t in prof["by_type"]]
        lines += ["", "| slowest op | type | output | ms |", "|---:|---|---|---:|"]
        lines += [f"| {o['op']} | {o['type']} | {o['output']} | {o['ms']:.3f} |" for o in prof["slowest"]]
    return "\n".join(lines)
