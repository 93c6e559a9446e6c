"""`picoface bench`: latency, memory and load time of one model, or of a pipeline, on every
runner that can run it, interleaved on the same frames in one process on one machine.

Runners, all timed in one loop per frame size (after ``warmup`` calls each, one call of every
runner per iteration, the order rotating):
  * inference (``stage="inference"``): the network alone on the tensor picoface feeds it (a
    detector's letterboxed frame; a crop model's resized frame) — ``native`` (picoface's
    engine; an ONNX model is converted in memory), ``onnxruntime`` (ONNX), ``tflite``
    (.tflite), ``native int8`` (``int8=True``: quantised in memory by
    :func:`picoface.quantize.quantize_model`), and one row per ``also`` file on the backend
    its format names;
  * end to end (detectors with ``end_to_end=True``, and the ``detect`` pipeline):
    :meth:`FaceDetector.detect` on the uint8 frame on each backend (preprocess + inference +
    decode + NMS);
  * the ``detect+embed`` pipeline: :class:`FaceAnalyzer` (detect -> align -> embed each face)
    on each backend both models run on;
  * ``compare``: whole detectors on the same uint8 frame — ``yuface`` (libfacedetection's PyPI
    build) and ``opencv`` (``cv2.FaceDetectorYN`` running the model: YuNet ONNX files only).
A runner that cannot run here is a row whose ``status`` says why ("n/a (...)").

Memory: ``peak_rss_mb`` is the process's peak resident set (``getrusage`` ru_maxrss) at the
end: all runners, Python, numpy and the imported runtimes together, as they share the
process. A row's ``rss_load_mb`` is the growth of the current resident set across that
runner's model load (weights, buffers planned at load, and the runtime's libraries when they
were first imported for it); ``rss_warmup_mb`` the growth across its warm-up calls at that
frame size (activations and other buffers made on the first calls).

``callgrind`` counts the instructions of the native engine's inference under valgrind
instead of timing: deterministic, for CI regression checks.
"""

import json
import logging
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from picoface import _core
from picoface.info import build_info

log = logging.getLogger("picoface")

BACKENDS = ("native", "onnxruntime", "tflite")
COMPARE = ("yuface", "opencv")
PIPELINES = ("detect", "detect+embed")
DETECTOR_SIZES = ((320, 240), (640, 480))
MAX_FRAME_SIDE = 4096
PROFILE_RUNS = 30
# Calibration images used by int8=True, and noise frames made when none are given.
CALIB_LIMIT = 20
NOISE_CALIB_FRAMES = 4
# Calls per callgrind run: the first (arena planning, first-touch) is reported apart.
CALLGRIND_CALLS = 4
# Mangled names of Engine::run in the extension (one per overload).
_ENGINE_RUN = re.compile(rb"_ZN8picoface6Engine3runE[A-Za-z0-9_]+")
# The row of a backend whose runtime is not installed.
_MISSING = {"onnxruntime": "n/a (onnxruntime missing)", "tflite": "n/a (ai-edge-litert missing)"}
_NEEDS = {"native": "n/a (needs a .pface or ONNX model)", "onnxruntime": "n/a (needs an ONNX model)",
          "tflite": "n/a (needs a .tflite model)"}


# ---- the machine -----------------------------------------------------------------------

def machine() -> dict:
    """CPU model, architecture, logical CPUs and feature flags (/proc/cpuinfo "flags" on
    x86, "Features" on ARM; empty where the OS does not say)."""
    cpu, flags = None, []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if cpu is None and key in ("model name", "Model"):
                cpu = value.strip()
            elif not flags and key in ("flags", "Features"):
                flags = value.split()
    except OSError:
        pass
    return {"cpu": cpu or platform.processor() or platform.machine(), "arch": platform.machine(),
            "logical_cpus": os.cpu_count(), "flags": flags}


def simd_flags(flags: Sequence[str]) -> List[str]:
    """The flags that name vector ISAs (what a kernel dispatcher looks at)."""
    prefixes = ("sse", "ssse", "avx", "fma", "f16c", "amx", "asimd", "sve", "i8mm", "bf16", "neon")
    return [f for f in flags if f.startswith(prefixes)]


def _rss_mb() -> Optional[float]:
    """Current resident set in MiB (None where /proc is absent)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes there, KiB here


def _grew(before: Optional[float]) -> Optional[float]:
    after = _rss_mb()
    return None if before is None or after is None else round(after - before, 2)


# ---- the model under test --------------------------------------------------------------

@dataclass(frozen=True)
class _Model:
    """One network in the formats this run has of it."""

    name: str
    task: str
    pface: Optional[bytes] = None  # for the native engine; converted in memory from ONNX
    onnx: Optional[Path] = None
    tflite: Optional[Path] = None
    head: Optional[str] = None
    preset: Optional[str] = None
    convert_s: float = 0.0

    def source(self, backend: str):
        return {"native": self.pface, "onnxruntime": self.onnx, "tflite": self.tflite}[backend]

    @property
    def own_backend(self) -> str:
        """The backend that runs the file as given (FaceDetector's "auto")."""
        return "tflite" if self.tflite else "onnxruntime" if self.onnx else "native"


def _open_model(model, task: Optional[str], head: Optional[str], preset: Optional[str]) -> _Model:
    """A shipped name or a .pface, ONNX or .tflite file; an ONNX model is also converted to
    .pface in memory for the native engine. A .pface keeps its own task (callers check it);
    the others take ``task``."""
    from picoface import modelfile, weights
    from picoface.backends.base import is_native_model
    from picoface.backends.tflite import is_tflite_model

    path = weights.path(model) if weights.is_name(model) else Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {str(model)!r} (expected a shipped "
                                f"name from {weights.names()}, a .pface, ONNX or .tflite file)")
    if is_native_model(path):
        blob = path.read_bytes()
        return _Model(str(model), modelfile.summary(blob)["metadata"].get("task"), pface=blob)
    if task is None:
        raise ValueError(f"expected --task detect|landmarks|embed for {path.name} (only a "
                         ".pface model names its own task)")
    if is_tflite_model(path):
        return _Model(str(model), task, tflite=path, head=head, preset=preset)
    from picoface.convert import convert_onnx

    t0 = time.perf_counter()
    blob = convert_onnx(path, task=task, head=head, preset=preset)
    return _Model(str(model), task, pface=blob, onnx=path, head=head, preset=preset,
                  convert_s=time.perf_counter() - t0)


def _open_backend(backend: str, source, threads: int):
    """(call on an input tensor, native engine or None) for one backend."""
    if backend == "native":
        engine = _core.Engine(source, threads)
        return (lambda x: engine.run([x])), engine
    from picoface.backends.base import open_backend

    return open_backend(source, backend, threads).run, None


def _crop_input(model: _Model) -> Callable:
    """Frame -> the tensor a fixed-size crop model (landmarks, embed) gets: the frame resized
    into its input in its colour order and normalisation (from the .pface metadata, else
    from the preset and the .tflite input shape)."""
    from picoface import modelfile

    if model.pface is not None:
        meta = modelfile.summary(model.pface)["metadata"]
    else:
        from picoface.backends.tflite import TfliteBackend
        from picoface.convert import metadata_for

        shape = TfliteBackend(model.tflite).input_shape
        meta = metadata_for(model.task, None, model.preset, shape, model.tflite, "")
    w, h = meta["input.size"]
    mean, std, color = list(meta["input.mean"]), list(meta["input.std"]), meta["input.color"]

    def prepare(frame):
        box = _core.letterbox(frame.shape[1], frame.shape[0], w, h, "keep_aspect")
        return _core.preprocess(frame, box, "bgr", color, mean, std, "nchw", "float32", 1.0, 0,
                                "auto", [0.0, 0.0, 0.0])[None]
    return prepare


def _detector(model: _Model, backend: str, threads: int, source=None):
    from picoface.detector import FaceDetector

    source = model.source(backend) if source is None else source
    return FaceDetector(source, head=None if isinstance(source, bytes) else model.head,
                        backend=backend, threads=threads)


def _input_fn(model: _Model, threads: int) -> Callable:
    """Frame -> the network input every inference runner of ``model`` gets."""
    if model.task != "detect":
        return _crop_input(model)
    # The detector's own preprocessing makes the tensor, so inference and end-to-end rows
    # see the same one.
    detector = _detector(model, "native" if model.pface is not None else "tflite", threads)
    return lambda frame: detector.preprocess(frame)[0]


def _quantized(model: _Model, calib, detector_size: Optional[Tuple[int, int]]) -> bytes:
    """``model`` as native int8, quantised in memory on ``calib`` (a folder or images)."""
    from picoface.quantize import quantize_model

    if model.pface is None:
        raise ValueError("--int8 quantises the native model: give a .pface or ONNX model")
    size = None
    if detector_size is not None:  # calibrate at the benchmark's frame size, stride-padded
        from picoface import modelfile

        m = int(modelfile.summary(model.pface)["metadata"].get("input.multiple", 1))
        size = tuple(-(-s // m) * m for s in detector_size)
    blob, _ = quantize_model(model.pface, calib, calib_size=size, limit=CALIB_LIMIT)
    return blob


# ---- runners ---------------------------------------------------------------------------

@dataclass(frozen=True)
class _Plan:
    """The opened models and the checked options of one run."""

    model: _Model
    embedder: Optional[_Model]
    backends: List[str]
    int8: Dict[str, bytes]  # "model" (and "embedder") -> its int8 .pface, with int8=True
    calibration: Optional[str]  # what int8 was calibrated on
    also: List[_Model]
    sizes: List[Tuple[int, int]]


@dataclass(frozen=True)
class _Runner:
    name: str
    stage: str  # inference | end-to-end | detect+embed | whole detector
    backend: str
    load_s: float
    rss_load_mb: Optional[float]
    prepare: Callable  # uint8 BGR frame -> the call's argument (outside the timing)
    call: Callable
    engine: object = None  # a native engine: MAC count and per-op profile
    faces: Optional[Callable] = None  # frame -> faces found, for pipeline rows


class _Missing(Exception):
    """A runner that cannot run here; its row says why instead of a time."""


def _timed_load(make: Callable, backend: str):
    """(result of make(), seconds, RSS growth in MiB); a missing runtime raises _Missing."""
    rss, t0 = _rss_mb(), time.perf_counter()
    try:
        out = make()
    except ImportError as e:
        raise _Missing(_MISSING.get(backend, f"n/a ({e})")) from None
    return out, time.perf_counter() - t0, _grew(rss)


def _compare_runner(name: str, model: _Model, threads: int) -> _Runner:
    """A whole-detector comparison on the uint8 frame. Raises _Missing."""
    def load():
        if name == "yuface":
            # libfacedetection runs OpenMP over every core, and its idle threads spin: they
            # would slow the other runners and break the one-thread comparison. libgomp
            # reads this when it loads, i.e. at the import below.
            os.environ.setdefault("OMP_NUM_THREADS", str(threads))
            try:
                import yuface
            except ImportError:
                raise _Missing("n/a (yuface missing)") from None
            return yuface.detect
        try:
            import cv2
        except ImportError:
            raise _Missing("n/a (opencv missing)") from None
        if not hasattr(cv2, "FaceDetectorYN"):
            raise _Missing("n/a (OpenCV without FaceDetectorYN)")
        if model.onnx is None or model.head != "yunet":
            raise _Missing("n/a (FaceDetectorYN runs YuNet ONNX files only)")
        cv2.setNumThreads(threads)
        det = cv2.FaceDetectorYN.create(str(model.onnx), "", (320, 240), 0.5, 0.4, 5000)

        def detect(frame):
            # Like picoface, a new frame size re-plans only when it changes.
            size = (frame.shape[1], frame.shape[0])
            if det.getInputSize() != size:
                det.setInputSize(size)
            return det.detect(frame)
        return detect

    call, load_s, rss = _timed_load(load, name)
    return _Runner(name, "whole detector", name, load_s, rss, lambda f: f, call)


def _runners(plan: _Plan, *, pipeline: Optional[str], end_to_end: bool, compare: Sequence[str],
             threads: int) -> Tuple[List[_Runner], Dict[str, str]]:
    """The runners, and the rows that cannot run (name -> why)."""
    model, embedder = plan.model, plan.embedder
    runners: List[_Runner] = []
    missing: Dict[str, str] = {}

    def add(name, stage, backend, make, prepare, finish):
        """Loads one runner (make() -> loaded object; finish(obj) -> (call, engine, faces))."""
        try:
            obj, load_s, rss = _timed_load(make, backend)
        except _Missing as e:
            missing[name] = str(e)
            return
        call, engine, faces = finish(obj)
        runners.append(_Runner(name, stage, backend, load_s, rss, prepare, call, engine, faces))

    # (runner name, backend, model source, embedder source) per version of the model
    versions = []
    for b in plan.backends:
        src = model.source(b)
        esrc = embedder.source(b) if embedder is not None else None
        if src is None or (embedder is not None and esrc is None):
            missing[b] = _NEEDS[b]
            continue
        versions.append((b, b, src, esrc))
    if plan.int8:
        versions.append(("native int8", "native", plan.int8["model"], plan.int8.get("embedder")))

    if pipeline is None:
        prepare = _input_fn(model, threads)
        for name, b, src, _ in versions:
            add(name, "inference", b, lambda b=b, s=src: _open_backend(b, s, threads), prepare,
                lambda o: (o[0], o[1], None))
        for other in plan.also:
            b = other.own_backend
            # A .tflite detector has a fixed input: its own preprocessing letterboxes the
            # frame into it (the row's "net input" says which size).
            own_prepare = prepare
            if other.tflite is not None and other.task == "detect":
                try:
                    own_prepare = _input_fn(other, threads)
                except ImportError:
                    pass  # no TFLite runtime: loading the runner below reports the n/a row
            add(f"{b} {Path(other.name).name}", "inference", b,
                lambda b=b, o=other: _open_backend(b, o.source(b), threads), own_prepare,
                lambda o: (o[0], o[1], None))
    if pipeline == "detect" or end_to_end:
        for name, b, src, _ in versions:
            add(f"{name} end-to-end" if pipeline is None else name, "end-to-end", b,
                lambda b=b, s=src: _detector(model, b, threads, s), lambda f: f,
                lambda d: (d.detect, None, lambda f, d=d: len(d(f))))
    if pipeline == "detect+embed":
        from picoface.analyzer import FaceAnalyzer
        from picoface.embedder import FaceEmbedder

        def analyzer(b, src, esrc):
            emb = FaceEmbedder(esrc, preset=embedder.preset or "arcface", backend=b,
                               threads=threads)
            return FaceAnalyzer(_detector(model, b, threads, src), emb)
        for name, b, src, esrc in versions:
            add(name, "detect+embed", b, lambda b=b, s=src, e=esrc: analyzer(b, s, e),
                lambda f: f, lambda a: (a, None, lambda f, a=a: len(a(f))))
    for name in compare:
        try:
            runners.append(_compare_runner(name, model, threads))
        except _Missing as e:
            missing[name] = str(e)
    return runners, missing


# ---- timing ----------------------------------------------------------------------------

def _frames(images: Optional[Sequence[np.ndarray]], w: int, h: int) -> List[np.ndarray]:
    """uint8 BGR w x h frames: the given images resized (area), else one seeded noise frame."""
    if not images:
        return [np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)]
    import cv2
    return [np.ascontiguousarray(cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA))
            for im in images]


def _stats(samples: List[float]) -> Dict[str, float]:
    a = np.sort(np.asarray(samples)) * 1e3
    median = float(np.median(a))
    return {"min_ms": round(float(a[0]), 4), "median_ms": round(median, 4),
            "p90_ms": round(float(np.percentile(a, 90)), 4),
            "p99_ms": round(float(np.percentile(a, 99)), 4),
            "fps": round(1e3 / median, 2) if median > 0 else None, "runs": int(a.size)}


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


def _check_sizes(sizes) -> None:
    for w, h in sizes:
        if not (0 < w <= MAX_FRAME_SIDE and 0 < h <= MAX_FRAME_SIDE):
            raise ValueError(f"expected frame sizes from 1x1 to {MAX_FRAME_SIDE}x{MAX_FRAME_SIDE}, "
                             f"got {w}x{h}")


def _calibration(calib, images, model: _Model) -> Tuple[object, str]:
    """What --int8 calibrates ``model`` on and its description: ``calib``, else the
    benchmark's images, else seeded noise (representative for speed only)."""
    if calib is not None:
        return str(calib), f"{calib} (up to {CALIB_LIMIT} images)"
    if images:
        return list(images[:CALIB_LIMIT]), f"{min(len(images), CALIB_LIMIT)} benchmark image(s)"
    rng = np.random.default_rng(1)
    if model.task == "detect":
        size = (416, 416)
    else:
        size = _crop_input(model)(np.zeros((8, 8, 3), np.uint8)).shape[:1:-1]
    return ([rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
             for _ in range(NOISE_CALIB_FRAMES)], f"{NOISE_CALIB_FRAMES} seeded noise frames")


def _plan(model, *, pipeline, task, head, preset, embedder, embedder_preset, backends,
          int8, calib, images, also, sizes) -> _Plan:
    """Opens the models and checks the options."""
    if pipeline is not None and pipeline not in PIPELINES:
        raise ValueError(f"expected a pipeline from {PIPELINES}, got {pipeline!r}")
    for b in backends or ():
        if b not in BACKENDS:
            raise ValueError(f"expected backends from {BACKENDS}, got {b!r}")
    if pipeline is not None:
        if task not in (None, "detect"):
            raise ValueError(f"expected no --task with a pipeline (its detector is a detector), "
                             f"got {task!r}")
        task = "detect"
    net = _open_model("picoface-det-tiny" if model is None else model, task, head, preset)
    if task not in (None, net.task):
        raise ValueError(f"expected --task {net.task} for {Path(net.name).name} (its metadata "
                         f"says so), got {task!r}")
    if pipeline is not None and net.task != "detect":
        raise ValueError(f"expected a detector for the {pipeline} pipeline, got a {net.task} model")
    emb = None
    if pipeline == "detect+embed":
        if embedder is None:
            raise ValueError("expected --embedder R (a .pface, ONNX or .tflite recogniser) for "
                             "the detect+embed pipeline")
        emb = _open_model(embedder, "embed", None, embedder_preset)
        if emb.task != "embed":
            raise ValueError(f"expected a recogniser for --embedder, got a {emb.task} model")
    if backends is None:  # the runners the given formats allow
        backends = [b for b in BACKENDS if net.source(b) is not None
                    and (emb is None or emb.source(b) is not None)]
    if sizes is None:
        if net.task == "detect":
            sizes = DETECTOR_SIZES
        else:
            probe = _input_fn(net, 1)(np.zeros((8, 8, 3), np.uint8))
            sizes = [(probe.shape[3], probe.shape[2])]
    _check_sizes(sizes)
    blobs, calibration = {}, None
    if int8:
        if calib is None and not images:
            log.warning("--int8 without --calib or --images calibrates on seeded noise: the "
                        "int8 model's speed is representative, its accuracy is not")
        data, calibration = _calibration(calib, images, net)
        blobs["model"] = _quantized(net, data, sizes[0] if net.task == "detect" else None)
        if emb is not None:
            try:
                blobs["embedder"] = _quantized(emb, _calibration(calib, images, emb)[0], None)
            except ValueError as e:  # e.g. PReLU Convs: the detector's int8 is still worth timing
                log.warning("--int8: the embedder stays float: %s", e)
                blobs["embedder"] = emb.pface
                calibration += "; the embedder stays float (it has no int8-capable Conv)"
    if also and pipeline is not None:
        raise ValueError("--also adds inference rows: give a model, not a pipeline")
    if head is None and net.pface is not None:  # a .tflite version decodes as the model does
        from picoface import modelfile
        head = modelfile.summary(net.pface)["metadata"].get("head.type")
    others = [_open_model(a, net.task, head, preset) for a in also]
    for other in others:
        if other.task != net.task:
            raise ValueError(f"expected --also models of the same task as the model ({net.task}), "
                             f"got a {other.task} model in {other.name}")
    return _Plan(net, emb, list(backends), blobs, calibration, others, list(sizes))


def bench(model=None, *, pipeline: Optional[str] = None, task: Optional[str] = None,
          head: Optional[str] = None, preset: Optional[str] = None, embedder=None,
          embedder_preset: Optional[str] = None, sizes: Optional[Sequence[Tuple[int, int]]] = None,
          backends: Optional[Sequence[str]] = None, int8: bool = False, calib=None,
          also: Sequence = (), end_to_end: bool = False, compare: Sequence[str] = (),
          images=None, runs: int = 100, warmup: int = 10, threads: int = 1,
          profile: bool = False, progress: Optional[Callable[[int, int], None]] = None) -> dict:
    """Times every runner on the same frames per frame size, interleaved.

    Args:
        model: a shipped model name, or a .pface, ONNX or .tflite file (ONNX and .tflite need
            ``task``, and a detector ``head`` or a crop model ``preset``); for a pipeline its
            detector (default: the shipped "picoface-det-tiny").
        pipeline: None (the model's inference), "detect" (the detector end to end on uint8
            frames) or "detect+embed" (detect -> align -> embed each face; needs ``embedder``).
        embedder, embedder_preset: the recogniser of "detect+embed" (preset for ONNX/.tflite).
        sizes: frame sizes (w, h); default 320x240 and 640x480 for detectors, the model's
            input size for crop models.
        backends: from ``BACKENDS``; default: those the model's format allows (native for
            .pface; native and onnxruntime for ONNX; tflite for .tflite). A backend the
            format or the installation lacks gives an "n/a (...)" row.
        int8: also a "native int8" runner, quantised in memory on ``calib`` (a folder of
            images), else on ``images``, else on seeded noise (with a warning).
        also: more model files of the same network (e.g. an int8 .pface or a .tflite), each
            an inference row on the backend its format names, on the same input tensors.
        end_to_end: detectors: also time FaceDetector.detect on each backend.
        compare: whole detectors from ``COMPARE`` on the same frames.
        images: uint8 BGR images the frames are made from (cycled per iteration); None: a
            seeded noise frame.
        profile: also report each native engine's time per op (``profiles[size][runner]``).
        progress: called with (iterations done, total) during the timing.

    Returns:
        A JSON-ready report; rows that could not run carry ``status`` instead of times.

    Raises:
        FileNotFoundError: a model file is missing.
        ValueError: an option out of range or a combination that does not apply.
    """
    if runs < 1 or warmup < 0 or threads < 1:
        raise ValueError(f"expected runs >= 1, warmup >= 0 and threads >= 1, got {runs}, "
                         f"{warmup}, {threads}")
    for c in compare:
        if c not in COMPARE:
            raise ValueError(f"expected --compare from {COMPARE}, got {c!r}")
    if pipeline == "detect+embed" and (compare or end_to_end):
        raise ValueError("--compare and --end-to-end are for detectors, not the detect+embed "
                         "pipeline")
    plan = _plan(model, pipeline=pipeline, task=task, head=head, preset=preset,
                 embedder=embedder, embedder_preset=embedder_preset, backends=backends,
                 int8=int8, calib=calib, images=images, also=also, sizes=sizes)
    if plan.model.task != "detect" and (end_to_end or compare):
        raise ValueError("--end-to-end and --compare rows are for detectors (--task detect)")
    if pipeline == "detect+embed" and not images:
        log.warning("detect+embed on noise frames: no faces are found, so the embedder never "
                    "runs; give --images with faces")
    runners, missing = _runners(plan, pipeline=pipeline, end_to_end=end_to_end,
                                compare=compare, threads=threads)
    sizes = plan.sizes
    rows, profiles = [], {}
    for k, (w, h) in enumerate(sizes):
        frames = _frames(images, w, h)
        args = {r.name: [r.prepare(f) for f in frames] for r in runners}
        samples: Dict[str, List[float]] = {r.name: [] for r in runners}
        rss_warmup = {}
        for r in runners:
            before = _rss_mb()
            for i in range(warmup):
                r.call(args[r.name][i % len(frames)])
            rss_warmup[r.name] = _grew(before)
        for it in range(runs):
            shift = it % len(runners) if runners else 0
            for r in runners[shift:] + runners[:shift]:
                x = args[r.name][it % len(frames)]
                t0 = time.perf_counter()
                r.call(x)
                samples[r.name].append(time.perf_counter() - t0)
            if progress is not None:
                progress(k * runs + it + 1, len(sizes) * runs)
        for r in runners:
            x = args[r.name][0]
            row = {"runner": r.name, "stage": r.stage, "backend": r.backend, "size": f"{w}x{h}",
                   **_stats(samples[r.name]), "load_s": round(r.load_s, 4),
                   "rss_load_mb": r.rss_load_mb, "rss_warmup_mb": rss_warmup[r.name]}
            if isinstance(x, np.ndarray) and x.dtype == np.float32:
                row["input"] = f"{x.shape[3]}x{x.shape[2]}"
            if r.engine is not None:
                row["gmacs"] = round(r.engine.macs / 1e9, 4)
            if r.faces is not None:
                row["faces"] = round(float(np.mean([r.faces(f) for f in frames])), 2)
            rows.append(row)
        rows += [{"runner": name, "size": f"{w}x{h}", "status": why} for name, why in missing.items()]
        if profile:
            profiles[f"{w}x{h}"] = {r.name: _profile(r.engine, args[r.name][0])
                                    for r in runners if r.engine is not None}
    info = build_info()
    report = {"model": plan.model.name, "task": plan.model.task, "pipeline": pipeline,
              "embedder": plan.embedder.name if plan.embedder else None, "threads": threads,
              "runs": runs, "warmup": warmup, "convert_s": round(plan.model.convert_s, 4),
              "frames": f"{len(images)} image(s)" if images else "seeded noise",
              "machine": machine(), "picoface": info["version"], "isa": info["isa_selected"],
              "isa_supported": info["isa_supported"], "peak_rss_mb": round(_peak_rss_mb(), 1),
              "rows": rows}
    if plan.calibration is not None:
        report["int8_calibration"] = plan.calibration
    if profile:
        report["profiles"] = profiles
    return report


# ---- callgrind -------------------------------------------------------------------------

# Run under valgrind: the engine on a saved input, CALLGRIND_CALLS times, one thread.
_CALLGRIND_CHILD = """
import json, sys
import numpy as np
from picoface import _core
engine = _core.Engine(open(sys.argv[1], "rb").read(), 1)
x = np.load(sys.argv[2])
for _ in range(int(sys.argv[3])):
    engine.run([x])
print(json.dumps({"isa": _core.build_info()["isa_selected"]}))
"""


def _dump_totals(folder: Path, stem: str) -> List[int]:
    """Instruction totals of callgrind's dumps in order: OUT.1, OUT.2, ..., then OUT (the
    dump at exit)."""
    def number(p: Path) -> float:
        suffix = p.name[len(stem):].lstrip(".")
        return int(suffix) if suffix else float("inf")
    totals = []
    for p in sorted(folder.glob(stem + "*"), key=number):
        line = next((ln for ln in p.read_text().splitlines() if ln.startswith(("summary:", "totals:"))),
                    "summary: 0")
        totals.append(int(line.split(":", 1)[1]))
    return totals


def _engine_run_symbol() -> str:
    """The mangled name of the public one-argument Engine::run (the shorter overload; the
    other, which it calls, adds a parameter). callgrind's --dump-before takes no wildcards
    and the demangled name depends on the C++ library, so it is read from the extension."""
    names = set(_ENGINE_RUN.findall(Path(_core.__file__).read_bytes()))
    if not names:
        raise RuntimeError(f"found no picoface::Engine::run symbol in {_core.__file__}")
    return min(names, key=len).decode()


def _count_instructions(blob: bytes, x: np.ndarray, work: Path) -> dict:
    """Instructions of each engine call under callgrind, collected only inside Engine::run
    and dumped before each call, so each dump holds exactly the call before it."""
    fn = _engine_run_symbol()
    model, tensor = work / "model.pface", work / "input.npy"
    model.write_bytes(blob)
    np.save(tensor, x)
    for p in work.glob("callgrind.out*"):
        p.unlink()
    out = work / "callgrind.out"
    cmd = ["valgrind", "--tool=callgrind", "--demangle=no", "--collect-atstart=no",
           f"--toggle-collect={fn}", f"--dump-before={fn}",
           f"--callgrind-out-file={out}", sys.executable, "-c", _CALLGRIND_CHILD,
           str(model), str(tensor), str(CALLGRIND_CALLS)]
    env = dict(os.environ, PYTHONHASHSEED="0")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-3:]
        raise RuntimeError(f"valgrind exited with {done.returncode}: {' | '.join(tail)}")
    # The first dump comes before the first call and holds nothing.
    calls = _dump_totals(work, out.name)[1:]
    if len(calls) != CALLGRIND_CALLS or not all(calls):
        raise RuntimeError(f"expected {CALLGRIND_CALLS} calls of {fn} under callgrind, "
                           f"counted {calls}")
    # Steady calls differ by a few hundred instructions (allocator paths); the fewest is
    # the count least disturbed by them.
    steady = calls[1:]
    return {"instructions": min(steady), "spread": max(steady) - min(steady),
            "first_call": calls[0], "isa": json.loads(done.stdout.strip().splitlines()[-1])["isa"]}


def callgrind(model, *, task: Optional[str] = None, head: Optional[str] = None,
              preset: Optional[str] = None, sizes: Optional[Sequence[Tuple[int, int]]] = None,
              int8: bool = False, calib=None, images=None) -> dict:
    """Instructions per inference of the native engine (and of its in-memory int8 version)
    under ``valgrind --tool=callgrind``: one thread, one fixed input per size (the first
    image, else seeded noise, through the model's preprocessing). Each call is counted
    alone; the first (planning, first touch) is reported apart; ``instructions`` is the
    fewest of the others, which differ by ``spread`` (a few hundred: allocator paths). Under valgrind the CPU has no AVX-512: the ISA it selected
    is reported (PICOFACE_ISA forces one).

    Raises:
        RuntimeError: valgrind is missing or failed.
    """
    if shutil.which("valgrind") is None:
        raise RuntimeError("--callgrind needs valgrind on PATH (e.g. apt-get install valgrind)")
    plan = _plan(model, pipeline=None, task=task, head=head, preset=preset, embedder=None,
                 embedder_preset=None, backends=["native"], int8=int8, calib=calib,
                 images=images, also=(), sizes=sizes)
    net = plan.model
    if net.pface is None:
        raise ValueError("--callgrind counts the native engine: give a .pface or ONNX model")
    engines = [("native", net.pface)] + ([("native int8", plan.int8["model"])] if plan.int8 else [])
    prepare = _input_fn(net, 1)
    rows = []
    with tempfile.TemporaryDirectory(prefix="picoface-callgrind-") as tmp:
        for w, h in plan.sizes:
            x = np.ascontiguousarray(prepare(_frames(images[:1] if images else None, w, h)[0]))
            for name, blob in engines:
                counts = _count_instructions(blob, x, Path(tmp))
                rows.append({"runner": name, "size": f"{w}x{h}", "input": f"{x.shape[3]}x{x.shape[2]}",
                             **counts})
    report = {"model": net.name, "task": net.task, "mode": "callgrind", "calls": CALLGRIND_CALLS,
              "frames": "first image" if images else "seeded noise", "machine": machine(),
              "picoface": build_info()["version"], "rows": rows}
    if plan.calibration is not None:
        report["int8_calibration"] = plan.calibration
    return report


# ---- output ----------------------------------------------------------------------------

def _columns(report: dict):
    """(header, right-aligned, row -> cell) of the timing table; columns no row fills are
    left out, and the ratio is against onnxruntime's inference, else native's."""
    timed = [r for r in report["rows"] if "median_ms" in r]
    names = {r["runner"] for r in timed}
    ref = "onnxruntime" if "onnxruntime" in names else "native" if "native" in names else None
    medians = {r["size"]: r["median_ms"] for r in timed if r["runner"] == ref}

    def ratio(r):
        return f"{medians[r['size']] / r['median_ms']:.2f}x" if r["size"] in medians else "–"

    def num(key, fmt):
        return lambda r: "–" if r.get(key) is None else format(r[key], fmt)
    cols = [("frame", False, lambda r: r["size"]), ("runner", False, lambda r: r["runner"]),
            ("net input", False, lambda r: r.get("input", "–")),
            ("median ms", True, num("median_ms", ".3f")), ("p90 ms", True, num("p90_ms", ".3f")),
            ("min ms", True, num("min_ms", ".3f")), ("p99 ms", True, num("p99_ms", ".3f")),
            ("frames/s", True, num("fps", ".1f"))]
    if ref is not None:
        cols.append((f"vs {ref}", True, ratio))
    if any("faces" in r for r in timed):
        cols.append(("faces/frame", True, num("faces", ".2f")))
    cols += [("load ms", True, lambda r: "–" if "load_s" not in r else f"{r['load_s'] * 1e3:.1f}"),
             ("RSS +MB load", True, num("rss_load_mb", ".1f")),
             ("RSS +MB warm-up", True, num("rss_warmup_mb", ".1f")), ("runs", True, num("runs", "d"))]
    return cols


def _header(report: dict) -> List[str]:
    m = report["machine"]
    what = f"{report['pipeline']} pipeline" if report["pipeline"] else report["task"]
    lines = [f"model `{Path(report['model']).name}` ({what}"
             + (f", embedder `{Path(report['embedder']).name}`" if report.get("embedder") else "")
             + f"), {report['threads']} thread(s), picoface {report['picoface']} ISA "
             f"{report['isa']}, frames: {report['frames']}, peak RSS {report['peak_rss_mb']} MB",
             f"CPU {m['cpu']} ({m['arch']}, {m['logical_cpus']} logical CPUs); SIMD flags: "
             f"{' '.join(simd_flags(m['flags'])) or 'none reported'}"]
    if "int8_calibration" in report:
        lines.append(f"native int8: quantised in memory, calibrated on {report['int8_calibration']}")
    return lines


def _table(headers: List[str], right: List[bool], cells: List[List[str]], style: str) -> List[str]:
    """A Markdown or aligned-text table; a row shorter than ``headers`` ends in a cell that
    spans the rest (an n/a row's reason)."""
    if style == "markdown":
        return (["| " + " | ".join(headers) + " |",
                 "|" + "|".join("---:" if r else "---" for r in right) + "|"]
                + ["| " + " | ".join(c + [""] * (len(headers) - len(c))) + " |" for c in cells])
    full = [c for c in cells if len(c) == len(headers)]
    widths = [max(len(x) for x in col) for col in zip(headers, *full)]

    def fmt(row):
        padded = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row[:-1], widths, right)]
        last = row[-1] if len(row) < len(headers) else (
            row[-1].rjust(widths[-1]) if right[-1] else row[-1])
        return "  ".join(padded + [last]).rstrip()
    return [fmt(headers)] + [fmt(c) for c in cells]


def _timing_tables(report: dict, style: str) -> List[str]:
    cols = _columns(report)
    cells = []
    for r in report["rows"]:
        if "status" in r:  # the reason spans the timing columns
            cells.append([r["size"], r["runner"], "–", r["status"]])
        else:
            cells.append([get(r) for _, _, get in cols])
    lines = _table([c[0] for c in cols], [c[1] for c in cols], cells, style)
    for size, by_runner in report.get("profiles", {}).items():
        for runner, prof in by_runner.items():
            lines += ["", f"{runner} engine profile at {size}: {prof['total_ms']:.3f} ms in ops", ""]
            lines += _table(["op type", "ops", "ms"], [False, True, True],
                            [[t["type"], str(t["count"]), f"{t['ms']:.3f}"] for t in prof["by_type"]],
                            style)
            lines.append("")
            lines += _table(["slowest op", "type", "output", "ms"], [True, False, False, True],
                            [[str(o["op"]), o["type"], o["output"], f"{o['ms']:.3f}"]
                             for o in prof["slowest"]], style)
    return lines


def _callgrind_tables(report: dict, style: str) -> List[str]:
    m = report["machine"]
    lines = [f"model `{Path(report['model']).name}` ({report['task']}), callgrind instruction "
             f"counts of Engine::run, 1 thread, {report['calls']} calls per runner (the first "
             f"apart), frames: {report['frames']}, picoface {report['picoface']}",
             f"host CPU {m['cpu']} ({m['arch']}); valgrind's CPU has no AVX-512, the ISA "
             "column is the one the engine selected under it", ""]
    cells = [[r["size"], r["runner"], r["input"], r["isa"], f"{r['instructions']:,}",
              f"{r['spread']:,}", f"{r['first_call']:,}"] for r in report["rows"]]
    return lines + _table(["frame", "runner", "net input", "ISA", "instructions per inference",
                           "spread", "first call"], [False] * 4 + [True] * 3, cells, style)


def render(report: dict, style: str = "text") -> str:
    """The report as aligned text (``style="text"``) or as the Markdown tables BENCHMARKS.md
    uses (``"markdown"``); ratios are onnxruntime's (else native's) inference median per
    frame size over the row's median."""
    if report.get("mode") == "callgrind":
        return "\n".join(_callgrind_tables(report, style))
    return "\n".join(_header(report) + [""] + _timing_tables(report, style))


def markdown(report: dict) -> str:
    """The report as BENCHMARKS.md's Markdown tables."""
    return render(report, "markdown")
