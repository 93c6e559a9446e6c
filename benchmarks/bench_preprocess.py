"""Preprocessing and alignment speed of picoface against OpenCV, single-threaded.

Cases (the issue's target is picoface >= 1.5x OpenCV on each):
  * resize + BGR->RGB + (x - 127.5) / 128 + NCHW float32, 1280x720 -> 320x180 and
    640x480 -> 320x240, bilinear and area: one ``_core.preprocess`` call against the fastest
    of several equivalent OpenCV/numpy pipelines (picked per case in a short calibration run);
  * one 112x112 bilinear crop under a similarity map: ``_core.kernel_warp_affine`` against
    ``cv2.warpAffine(..., WARP_INVERSE_MAP)``;
  * 8 aligned crops from 5-point landmarks: ``_core.align`` (and the public ``picoface.align``)
    against 8 x (``cv2.estimateAffinePartial2D`` + ``cv2.warpAffine``).

Each contender is timed once per iteration, in rotating order, after a warm-up; the table
gives median and p90 in microseconds, the ratio OpenCV median / picoface median, and the
largest output difference (in uint8 levels) checked before timing.

Usage:
  python benchmarks/bench_preprocess.py [--runs N] [--isa best|all|NAME[,NAME]]
                                        [--markdown FILE] [--cases ID[,ID]] [--no-pin-malloc]
"""

import os
import sys

# Pin every thread pool to one thread before numpy (and its BLAS) is imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

# Both sides allocate their output (up to ~1 MB) on every call. glibc serves such blocks by
# mmap or trims them back to the OS depending on heap history, and on some VMs every fresh page
# then costs a fault (seen: cv2.dnn.blobFromImage 65 us or 570 us for the same 320x180 input,
# depending on what ran before). Fixed thresholds keep the blocks in the heap, so the table
# compares compute, not the allocator's mood. glibc reads tunables at start-up: hence re-exec.
MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=268435456"
if (__name__ == "__main__" and sys.platform.startswith("linux")
        and "GLIBC_TUNABLES" not in os.environ and "--no-pin-malloc" not in sys.argv[1:]):
    os.environ["GLIBC_TUNABLES"] = MALLOC_TUNABLES
    os.execv(sys.executable, [sys.executable, os.path.abspath(__file__), *sys.argv[1:]])

import argparse  # noqa: E402
import datetime  # noqa: E402
import gc  # noqa: E402
import math  # noqa: E402
import pathlib  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Callable, Optional  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

cv2.setNumThreads(1)

REPO = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "wider" / "test183"

MEAN = 127.5
STD = 128.0
TARGET_RATIO = 1.5


def import_picoface(attempts: int = 10):
    """Imports picoface, retrying briefly: the package may be reinstalled while we start."""
    for i in range(attempts):
        try:
            import picoface
            from picoface import _core
            return picoface, _core
        except (ImportError, OSError):  # OSError: a half-written extension module
            if i == attempts - 1:
                raise
            time.sleep(1.0)
    raise AssertionError("unreachable")


picoface, _core = import_picoface()


# ----------------------------------------------------------------------------- inputs

@dataclass
class Source:
    description: str
    base: Optional[np.ndarray]  # the real frame, full size; None for noise
    seed: int

    def image(self, w: int, h: int) -> np.ndarray:
        """uint8 HxWx3 BGR of the given size (resized once, outside any timing)."""
        if self.base is None:
            rng = np.random.default_rng(self.seed + 7919 * w + h)
            return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        # Centre crop to the target aspect ratio first, so faces are not stretched.
        bh, bw = self.base.shape[:2]
        cw, ch = min(bw, round(bh * w / h)), min(bh, round(bw * h / w))
        x0, y0 = (bw - cw) // 2, (bh - ch) // 2
        crop = self.base[y0:y0 + ch, x0:x0 + cw]
        interp = cv2.INTER_AREA if (w < cw and h < ch) else cv2.INTER_CUBIC
        return np.ascontiguousarray(cv2.resize(crop, (w, h), interpolation=interp))


def load_source(data_dir: pathlib.Path, seed: int) -> Source:
    files = [f for d in (data_dir, data_dir / "images") if d.is_dir() for f in d.glob("*.jpg")]
    # The largest file (by bytes, so only one decode): detailed content, close to a camera frame.
    best, name = None, None
    for f in sorted(files, key=lambda f: (-f.stat().st_size, f.name)):
        best = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if best is not None:
            name = f.name
            break
    if best is None:
        return Source(f"seeded uniform noise (seed {seed}); no readable .jpg in "
                      f"{data_dir}", None, seed)
    h, w = best.shape[:2]
    return Source(f"WIDER FACE test frame {name} ({w}x{h}), centre-cropped to each case's "
                  "aspect ratio and resized with cv2 (outside timing)",
                  best, seed)


# ----------------------------------------------------------------------------- timing

@dataclass
class Contender:
    name: str
    fn: Callable[[], object]
    setup: Callable[[], None] = lambda: None  # runs before the timer starts
    times_ns: list = field(default_factory=list)

    def stats_us(self) -> tuple:
        t = np.asarray(self.times_ns, dtype=np.float64) / 1e3
        return float(np.median(t)), float(np.percentile(t, 90)), len(t)


def measure(contenders: list, runs: int, warmup: int, budget_s: float, min_runs: int) -> float:
    """Times each contender once per iteration, rotating the order so no one always goes
    first (caches, clocks); stops after `runs` iterations or `budget_s` seconds. Returns the
    share of the timed phase spent in the OS kernel (page faults show up there)."""
    for c in contenders:
        c.times_ns.clear()
        c.setup()
        for _ in range(warmup):
            c.fn()
    n = len(contenders)
    clock = time.perf_counter_ns
    start = time.perf_counter()
    deadline = start + budget_s
    sys_start = resource.getrusage(resource.RUSAGE_SELF).ru_stime
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for i in range(runs):
            for k in range(n):
                c = contenders[(i + k) % n]
                c.setup()
                t0 = clock()
                c.fn()
                c.times_ns.append(clock() - t0)
            if i + 1 >= min_runs and time.perf_counter() > deadline:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    wall = time.perf_counter() - start
    return (resource.getrusage(resource.RUSAGE_SELF).ru_stime - sys_start) / max(wall, 1e-9)


# ----------------------------------------------------------------------------- cases

@dataclass
class Case:
    id: str
    title: str
    picoface_fn: Callable[[], object]
    baselines: dict  # name -> fn; equivalent OpenCV pipelines, the fastest one is timed
    to_levels: float  # multiplies an output difference into uint8 levels
    # Largest picoface vs OpenCV difference (uint8 levels) still counted as the same result.
    tolerance: float
    # kernel_* bindings take the ISA as an argument; pipeline calls use _core.set_isa.
    pico_isa_fn: Optional[Callable[[str], Callable[[], object]]] = None
    note: str = ""
    # The named OpenCV sequence, timed too when it is not the fastest baseline.
    sequence: Optional[str] = None


@dataclass
class Row:
    case: Case
    isa: str
    pico: tuple  # (median us, p90 us, runs)
    cv: tuple
    cv_name: str
    max_diff: float  # uint8 levels
    mean_diff: float
    sys_share: float
    seq: Optional[tuple] = None  # the named sequence's (median, p90, runs)

    @property
    def seq_ratio(self) -> Optional[float]:
        return None if self.seq is None else self.seq[0] / self.pico[0]

    @property
    def ratio(self) -> float:
        return self.cv[0] / self.pico[0]

    @property
    def agrees(self) -> bool:
        return self.max_diff <= self.case.tolerance


def opencv_resize_pipelines(img: np.ndarray, dw: int, dh: int, interp: int) -> dict:
    """Equivalent OpenCV/numpy pipelines producing 1x3xHxW float32 RGB (x - 127.5) / 128."""
    dsize = (dw, dh)
    scale = np.float32(1.0 / STD)
    mean = np.float32(MEAN)

    def cvt_resize_numpy():
        # The textbook order: colour first, then resize, normalise, transpose.
        x = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        x = cv2.resize(x, dsize, interpolation=interp)
        x = (x.astype(np.float32) - mean) * scale
        return np.ascontiguousarray(x.transpose(2, 0, 1))[None]

    def resize_cvt_u8chw():
        # Resize first (fewer pixels to swap), transpose while still uint8 (4x fewer bytes),
        # then convert and normalise in place.
        x = cv2.resize(img, dsize, interpolation=interp)
        x = cv2.cvtColor(x, cv2.COLOR_BGR2RGB)
        x = np.ascontiguousarray(x.transpose(2, 0, 1)).astype(np.float32)
        x -= mean
        x *= scale
        return x[None]

    def resize_blob():
        # OpenCV's own fused swapRB + mean + scale + NCHW (what OpenCV DNN users call).
        x = cv2.resize(img, dsize, interpolation=interp)
        return cv2.dnn.blobFromImage(x, scalefactor=1.0 / STD, size=dsize,
                                     mean=(MEAN, MEAN, MEAN), swapRB=True, crop=False)

    out = {
        "cvtColor+resize+numpy": cvt_resize_numpy,
        "resize+cvtColor+u8 CHW+numpy": resize_cvt_u8chw,
        "resize+dnn.blobFromImage": resize_blob,
    }
    if interp == cv2.INTER_LINEAR:
        def blob_resizes():
            return cv2.dnn.blobFromImage(img, scalefactor=1.0 / STD, size=dsize,
                                         mean=(MEAN, MEAN, MEAN), swapRB=True, crop=False)
        out["dnn.blobFromImage(resize)"] = blob_resizes
    return out


def resize_case(source: Source, sw: int, sh: int, dw: int, dh: int, interp: str) -> Case:
    img = source.image(sw, sh)
    box = _core.letterbox(sw, sh, dw, dh, "stretch")
    mean3, std3, pad3 = [MEAN] * 3, [STD] * 3, [0.0] * 3

    def pico():
        return _core.preprocess(img, box, "bgr", "rgb", mean3, std3, "nchw", "float32", 1.0, 0,
                                interp, pad3)

    cv_interp = cv2.INTER_LINEAR if interp == "bilinear" else cv2.INTER_AREA
    return Case(
        id=f"resize{sh}_{interp}",
        title=f"{sw}x{sh} -> {dw}x{dh} {interp}",
        picoface_fn=pico,
        baselines=opencv_resize_pipelines(img, dw, dh, cv_interp),
        sequence="cvtColor+resize+numpy",
        to_levels=STD,
        # OpenCV rounds its resized image to uint8 (<= 0.5) and uses fixed-point weights.
        tolerance=1.0,
        note="both sides return a newly allocated float32 tensor of the same size",
    )


def similarity(angle_deg: float, scale: float, centre_src, centre_dst) -> np.ndarray:
    """Forward (source -> crop) 2x3 similarity mapping centre_src to centre_dst."""
    a = math.radians(angle_deg)
    c, s = scale * math.cos(a), scale * math.sin(a)
    m = np.array([[c, -s, 0.0], [s, c, 0.0]])
    m[:, 2] = np.asarray(centre_dst) - m[:, :2] @ np.asarray(centre_src)
    return m


def warp_case(source: Source) -> Case:
    img = source.image(640, 480)
    fwd = similarity(10.0, 0.5, (300.0, 220.0), (56.0, 56.0))
    inv = cv2.invertAffineTransform(fwd).astype(np.float32)  # crop -> source
    inv64 = inv.astype(np.float64)  # cv2 gets the very same (float32) coefficients
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP

    def cv_warp():
        return cv2.warpAffine(img, inv64, (112, 112), flags=flags,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def pico_for(isa):
        return lambda: _core.kernel_warp_affine(img, inv, 112, 112, 0, isa)

    return Case(
        id="warp1",
        title="warp 640x480 -> 112x112 crop",
        picoface_fn=pico_for(_core.get_isa()),
        baselines={"warpAffine(INVERSE_MAP)": cv_warp},
        to_levels=1.0,
        # picoface quantises source coordinates to 1/32 pixel and weights to 1/1024 (as
        # OpenCV 4.x); OpenCV 5.0 interpolates in float. Measured max 2, mean 0.12 levels.
        tolerance=2.0,
        pico_isa_fn=pico_for,
        note="one bilinear crop, rotation 10 deg, scale 0.5, crop->source map given to both "
             "sides (no estimation); both allocate the crop",
    )


def align_landmarks(seed: int) -> np.ndarray:
    """8 faces' 5-point landmarks in a 640x480 frame: the ArcFace template placed with
    varied rotation/scale/position, plus +-0.5 px noise so the fit is a real least squares."""
    tmpl = np.asarray(_core.ARCFACE_TEMPLATE_112, dtype=np.float64).reshape(5, 2)
    rng = np.random.default_rng(seed)
    faces = []
    for k in range(8):
        angle = -25.0 + 50.0 * k / 7
        scale = 0.35 + 0.05 * (k % 4)  # source -> crop
        centre = (90.0 + 150.0 * (k % 4), 140.0 + 200.0 * (k // 4))
        inv = cv2.invertAffineTransform(similarity(angle, scale, centre, (56.0, 56.0)))
        pts = tmpl @ inv[:, :2].T + inv[:, 2]
        faces.append(pts + rng.uniform(-0.5, 0.5, size=pts.shape))
    return np.ascontiguousarray(np.stack(faces), dtype=np.float32)


def align_cases(source: Source, seed: int) -> list:
    img = source.image(640, 480)
    lms = align_landmarks(seed)
    tmpl = np.ascontiguousarray(np.asarray(_core.ARCFACE_TEMPLATE_112, np.float32).reshape(5, 2))
    lms64 = [np.ascontiguousarray(face, dtype=np.float64) for face in lms]
    tmpl64 = tmpl.astype(np.float64)

    def cv_batch(method):
        def run():
            out = np.empty((8, 112, 112, 3), np.uint8)  # one batch, as picoface returns
            for i in range(8):
                m, _ = cv2.estimateAffinePartial2D(lms64[i], tmpl64, method=method)
                cv2.warpAffine(img, m, (112, 112), dst=out[i], flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            return out
        return run

    baselines = {
        "8x(estimateAffinePartial2D(LMEDS)+warpAffine)": cv_batch(cv2.LMEDS),
        "8x(estimateAffinePartial2D(RANSAC)+warpAffine)": cv_batch(cv2.RANSAC),
    }
    note = ("both sides fit a similarity to 5 noisy points per face (picoface: closed-form "
            "least squares, then inverts it; OpenCV: robust fit + Levenberg-Marquardt "
            "refinement, inverted inside warpAffine) and write 8 crops into one newly "
            "allocated 8x112x112x3 array (OpenCV via dst=)")
    # Slightly different fits of noisy points move the crops by a fraction of a pixel, and
    # picoface's 1/32-pixel fixed point (as OpenCV 4.x) differs from OpenCV 5.0's float
    # interpolation by rounding: measured max 4, mean 0.13 levels.
    common = dict(baselines=baselines, to_levels=1.0, tolerance=4.0)
    return [
        Case(id="align8", title="align 8 faces (_core.align)",
             picoface_fn=lambda: _core.align(img, lms, tmpl, 112, 112, 112, 112, 0), note=note,
             **common),
        Case(id="align8_api", title="align 8 faces (picoface.align)",
             picoface_fn=lambda: picoface.align(img, lms, 112),
             note="as above, plus the public API's input validation", **common),
    ]


# ----------------------------------------------------------------------------- running

def as_array(x) -> np.ndarray:
    return np.asarray(x).reshape(-1).astype(np.float64)


def pick_baseline(case: Case, runs: int, warmup: int) -> str:
    """Checks the baselines agree with each other, then returns the fastest one's name."""
    names = list(case.baselines)
    ref = as_array(case.baselines[names[0]]())
    for n in names[1:]:
        d = np.abs(as_array(case.baselines[n]()) - ref).max() * case.to_levels
        if d > case.tolerance:
            raise RuntimeError(f"{case.id}: OpenCV variants disagree: '{n}' differs from "
                               f"'{names[0]}' by {d:.3f} levels")
    if len(names) == 1:
        return names[0]
    cs = [Contender(n, case.baselines[n]) for n in names]
    measure(cs, runs=runs, warmup=warmup, budget_s=3.0, min_runs=10)
    return min(cs, key=lambda c: c.stats_us()[0]).name


def run_case(case: Case, isas: list, args) -> list:
    cv_name = pick_baseline(case, max(10, args.runs // 10), args.warmup)
    cv_fn = case.baselines[cv_name]
    cv_out = as_array(cv_fn())

    contenders = [Contender("opencv", cv_fn)]
    seq_extra = case.sequence is not None and case.sequence != cv_name
    if seq_extra:
        contenders.append(Contender("opencv-sequence", case.baselines[case.sequence]))
    diffs = {}
    for isa in isas:
        if case.pico_isa_fn is not None:
            fn, setup = case.pico_isa_fn(isa), (lambda: None)
        else:
            fn, setup = case.picoface_fn, (lambda isa=isa: _core.set_isa(isa))
        setup()
        d = np.abs(as_array(fn()) - cv_out) * case.to_levels
        diffs[isa] = (float(d.max()), float(d.mean()))
        contenders.append(Contender(isa, fn, setup))

    sys_share = measure(contenders, runs=args.runs, warmup=args.warmup, budget_s=args.budget,
                        min_runs=min(args.runs, 30))
    cv_stats = contenders[0].stats_us()
    seq_stats = None
    if case.sequence is not None:
        seq_stats = contenders[1].stats_us() if seq_extra else cv_stats
    first = 2 if seq_extra else 1
    return [Row(case, c.name, c.stats_us(), cv_stats, cv_name, *diffs[c.name], sys_share,
                seq_stats) for c in contenders[first:]]


def cpu_model() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def opencv_simd() -> str:
    info = cv2.getBuildInformation().splitlines()
    get = lambda key: next((l.split(":", 1)[1].strip() for l in info if key in l), "?")
    return f"baseline {get('Baseline:')}; dispatched {get('Dispatched code generation:')}"


def header(source: Source, isas: list, args) -> list:
    bi = picoface.build_info()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    tunables = os.environ.get("GLIBC_TUNABLES")
    return [
        f"## Preprocessing: picoface vs OpenCV ({now})",
        "",
        f"- CPU: {cpu_model()} ({os.cpu_count()} logical CPUs); everything single-threaded "
        "(cv2.setNumThreads(1), OMP/OPENBLAS/MKL_NUM_THREADS=1)",
        f"- picoface {bi.get('version', '?')} ({bi['compiler']}): ISA selected "
        f"{bi['isa_selected']}, supported {', '.join(bi['isa_supported'])}, compiled "
        f"{', '.join(bi['isa_compiled'])}; timed here: {', '.join(isas)}",
        f"- OpenCV {cv2.__version__} ({opencv_simd()}), numpy {np.__version__}, "
        f"Python {platform.python_version()}",
        f"- malloc: {'GLIBC_TUNABLES=' + tunables if tunables else 'glibc defaults'}",
        f"- input: {source.description}",
        "- resize cases: BGR uint8 in, RGB float32 NCHW (x - 127.5) / 128 out, stretched to the "
        "output size; bilinear = cv2.INTER_LINEAR, area = cv2.INTER_AREA; picoface "
        "`_core.preprocess` (one pass) vs the fastest of equivalent OpenCV/numpy pipelines, "
        "picked per case in a short calibration run",
        f"- method: {args.warmup} warm-up calls, then up to {args.runs} iterations (at most "
        f"{args.budget:g} s per case), each contender timed once per iteration in rotating "
        "order; median / p90 in µs; ratio = OpenCV median / picoface median (target >= "
        f"{TARGET_RATIO}x, ⚠ below it); |diff| = picoface vs OpenCV output in uint8 levels "
        "(normalised outputs x 128), checked before timing (✗ above the case's tolerance)",
        "",
    ]


def table(rows: list) -> list:
    out = [
        "| case | picoface ISA | picoface median µs | p90 | OpenCV fastest median µs | p90 "
        "| ratio | OpenCV sequence median µs | ratio vs sequence "
        "| max \\|diff\\| | mean \\|diff\\| | OpenCV fastest pipeline | runs |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        slow = "" if r.ratio >= TARGET_RATIO else " ⚠"
        bad = "" if r.agrees else " ✗"
        out.append(
            f"| {r.case.title} | {r.isa} | {r.pico[0]:.1f} | {r.pico[1]:.1f} | {r.cv[0]:.1f} | "
            f"{r.cv[1]:.1f} | **{r.ratio:.2f}x**{slow} | "
            + (f"{r.seq[0]:.1f} | **{r.seq_ratio:.2f}x** | " if r.seq else "– | – | ")
            + f"{r.max_diff:.2f}{bad} | "
            f"{r.mean_diff:.4f} | {r.cv_name} | {r.pico[2]} |")
    return out


def summary(rows: list, cases: list, selected_isa: str) -> list:
    by_note = {}
    for c in cases:
        if c.note:
            by_note.setdefault(c.note, []).append(c.title)
    lines = [f"- {'; '.join(titles)}: {note}." for note, titles in by_note.items()]
    headline = [r for r in rows if r.isa == selected_isa] or rows
    below = [f"{r.case.title} [{r.isa}] {r.ratio:.2f}x" for r in headline if r.ratio < TARGET_RATIO]
    lines.append(f"- below the {TARGET_RATIO}x target: {', '.join(below) if below else 'none'}")
    bad = [f"{r.case.title} [{r.isa}] {r.max_diff:.2f} > {r.case.tolerance:g}"
           for r in rows if not r.agrees]
    if bad:
        lines.append(f"- ✗ outputs differ beyond tolerance (not a like-for-like comparison): "
                     f"{', '.join(bad)}")
    noisy = sorted({f"{r.case.title} ({100 * r.sys_share:.0f}%)"
                    for r in rows if r.sys_share > 0.05})
    if noisy:
        lines.append("- time spent in the OS kernel during timing (page faults?), numbers less "
                     f"reliable: {', '.join(noisy)}")
    return lines


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=1000,
                   help="timed iterations per case (default 1000)")
    p.add_argument("--warmup", type=int, default=20, help="untimed calls per contender first")
    p.add_argument("--budget", type=float, default=10.0,
                   help="seconds per case after which timing stops early (default 10)")
    p.add_argument("--isa", default="best",
                   help="'best' (the selected ISA), 'all' (every supported one) or a "
                        "comma-separated list such as scalar,avx2")
    p.add_argument("--cases", default="",
                   help="comma-separated case ids (default all): resize720_bilinear, "
                        "resize720_area, resize480_bilinear, resize480_area, warp1, align8, "
                        "align8_api")
    p.add_argument("--data", type=pathlib.Path, default=DEFAULT_DATA,
                   help="folder of .jpg frames, or with them in images/ (default "
                        "../shared/data/wider/test183); seeded noise when it has none")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--markdown", type=pathlib.Path, help="also write the section to this file")
    p.add_argument("--no-pin-malloc", action="store_true",
                   help="keep glibc's default malloc thresholds (see MALLOC_TUNABLES)")
    args = p.parse_args(argv)
    if args.runs < 1 or args.warmup < 0 or args.budget <= 0:
        p.error("--runs must be >= 1, --warmup >= 0 and --budget > 0")
    return args


def select_isas(spec: str) -> list:
    supported = list(_core.supported_isas())
    if spec == "best":
        return [_core.get_isa()]
    if spec == "all":
        return supported
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    bad = [s for s in wanted if s not in supported]
    if bad or not wanted:
        raise SystemExit(f"error: --isa {spec!r}: expected 'best', 'all' or names from "
                         f"{', '.join(supported)}")
    return wanted


def main(argv=None) -> int:
    args = parse_args(argv)
    original_isa = _core.get_isa()
    isas = select_isas(args.isa)
    source = load_source(args.data, args.seed)

    cases = [
        resize_case(source, 1280, 720, 320, 180, "bilinear"),
        resize_case(source, 1280, 720, 320, 180, "area"),
        resize_case(source, 640, 480, 320, 240, "bilinear"),
        resize_case(source, 640, 480, 320, 240, "area"),
        warp_case(source),
        *align_cases(source, args.seed),
    ]
    if args.cases:
        wanted = {c.strip() for c in args.cases.split(",") if c.strip()}
        unknown = wanted - {c.id for c in cases}
        if unknown:
            raise SystemExit(f"error: unknown case ids {sorted(unknown)}; expected "
                             f"{', '.join(c.id for c in cases)}")
        cases = [c for c in cases if c.id in wanted]

    rows = []
    t0 = time.perf_counter()
    try:
        for case in cases:
            print(f"[{time.perf_counter() - t0:5.1f} s] {case.id} ...", file=sys.stderr,
                  flush=True)
            rows += run_case(case, isas, args)
    finally:
        _core.set_isa(original_isa)

    section = header(source, isas, args) + table(rows) + [""] + summary(rows, cases, original_isa)
    text = "\n".join(section) + "\n"
    print(text)
    print(f"total {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    if args.markdown:
        args.markdown.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
