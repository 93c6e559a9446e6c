"""How much an int8 model differs from its float original: per-layer sensitivity, the
metrics a ``--budget`` bounds, ``--keep-float auto``, and the accuracy report.

Two kinds of measurement:

* against the float model's own outputs on the calibration images (no labels needed): the
  SQNR of every graph output, the cosine of the first output (an embedder's embedding) and,
  for landmark models, the NME of the int8 points against the float points;
* the model's task metric on labelled data, float and int8 alike: WIDER-val416 AP for
  detectors (eval_wider.py), 10-fold verification accuracy and TAR@FAR=1e-3 on a pairs file
  for recognisers (eval_verify.py).
"""

import dataclasses
import logging
import math
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from picoface import _core, modelfile

log = logging.getLogger("picoface")

# SQNR reported for outputs the int8 model reproduces exactly (and its negative for an
# all-zero float output it does not): finite, so reports stay valid JSON.
SQNR_CAP_DB = 200.0
# 68-point models (iBUG 300-W order): NME normalised by the outer eye corners' distance.
_OUTER_EYE_CORNERS_68 = (36, 45)


@dataclasses.dataclass(frozen=True)
class Metric:
    """A quantity a ``--budget METRIC=VALUE`` bounds.

    Attributes:
        tasks: the model tasks it applies to.
        eval_data: whether it needs labelled evaluation data (``eval_data``).
        floor: the budget is a lower bound on the int8 value itself (SQNR in dB); otherwise
            it bounds the loss (float minus int8, or the added error) in the unit below.
        unit: what the value is measured in.
    """

    tasks: tuple
    eval_data: bool
    floor: bool
    unit: str


METRICS = {
    "sqnr": Metric(("detect", "embed", "landmarks"), False, True,
                   "dB, lowest SQNR of any graph output on the calibration images"),
    "cosine": Metric(("detect", "embed", "landmarks"), False, False,
                     "1 - mean cosine of the first output to the float model's, calibration images"),
    "nme": Metric(("landmarks",), False, False,
                  "% NME added, int8 points against the float model's on the calibration images"),
    "ap_easy": Metric(("detect",), True, False, "AP points lost on WIDER-val416 easy"),
    "ap_medium": Metric(("detect",), True, False, "AP points lost on WIDER-val416 medium"),
    "ap_hard": Metric(("detect",), True, False, "AP points lost on WIDER-val416 hard"),
    "accuracy": Metric(("embed",), True, False, "10-fold verification accuracy points lost"),
    "tar_at_far_1e-3": Metric(("embed",), True, False, "TAR@FAR=1e-3 points lost"),
}


def parse_budget(items: Sequence[str]) -> Dict[str, float]:
    """``["METRIC=VALUE", ...]`` -> {metric: value}.

    Raises:
        ValueError: an item not of that form, an unknown metric or a repeated one.
    """
    out: Dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip().lower()
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not sep or not math.isfinite(number):
            raise ValueError(f"expected --budget METRIC=NUMBER (e.g. sqnr=30, ap_hard=0.5), got {item!r}")
        if name not in METRICS:
            raise ValueError(f"expected a --budget metric from {sorted(METRICS)}, got {name!r}")
        if name in out:
            raise ValueError(f"--budget {name} given twice")
        out[name] = number
    return out


def sqnr_db(signal_power: float, noise_power: float) -> float:
    """10 log10(signal / noise), within +-:data:`SQNR_CAP_DB`."""
    if noise_power <= 0.0:
        return SQNR_CAP_DB
    if signal_power <= 0.0:
        return -SQNR_CAP_DB
    return float(np.clip(10.0 * math.log10(signal_power / noise_power), -SQNR_CAP_DB, SQNR_CAP_DB))


def _points(output: np.ndarray) -> np.ndarray:
    return np.asarray(output, np.float64).reshape(-1, 2)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0.0 or nb == 0.0:
        return 1.0 if na == nb else 0.0
    return float(a @ b / (na * nb))


def _pair_subset(pairs, limit: Optional[int]):
    """At most ``limit`` pairs, as many from each (fold, same) group (file order within it),
    so the subset keeps every fold and the same/different balance."""
    if not limit or limit >= len(pairs):
        return list(pairs)
    groups: Dict[tuple, list] = {}
    for p in pairs:
        groups.setdefault((p.fold, p.same), []).append(p)
    per = max(1, limit // len(groups))
    keep = {id(p) for g in groups.values() for p in g[:per]}
    return [p for p in pairs if id(p) in keep]


class Evaluator:
    """Measures int8 versions of one float model (the float side is computed once).

    Args:
        float_blob: the float .pface bytes.
        inputs: calibration images as network inputs (float32 NCHW), for the SQNR, cosine and
            NME metrics.
        eval_data: a WIDER-val416 folder (detectors) or a pairs.tsv (recognisers).
        eval_limit: at most this many evaluation images (detectors) or pairs (recognisers).
        metrics: the metrics that will be asked for; checked here against the task and data.

    Raises:
        ValueError: a metric that does not apply to this model or needs ``eval_data``.
    """

    def __init__(self, float_blob: bytes, inputs: Sequence[np.ndarray], *, eval_data=None,
                 eval_limit: Optional[int] = None, metrics: Sequence[str] = ()):
        meta = modelfile.summary(float_blob)["metadata"]
        self.task = str(meta.get("task"))
        self.meta = meta
        if eval_limit is not None and eval_limit < 1:
            raise ValueError(f"expected an evaluation limit >= 1, got {eval_limit}")
        if eval_data is not None and self.task not in ("detect", "embed"):
            raise ValueError("evaluation data applies to detectors (WIDER-val416) and recognisers "
                             f"(pairs.tsv); a {self.task} model is measured against its float "
                             "outputs on the calibration images only")
        for m in metrics:
            spec = METRICS.get(m)
            if spec is None:
                raise ValueError(f"expected a metric from {sorted(METRICS)}, got {m!r}")
            if self.task not in spec.tasks:
                raise ValueError(f"metric {m!r} applies to {'/'.join(spec.tasks)} models, "
                                 f"this one is task {self.task!r}")
            if spec.eval_data and eval_data is None:
                raise ValueError(f"metric {m!r} needs evaluation data (--eval-data: "
                                 f"{'a WIDER-val416 folder' if self.task == 'detect' else 'a pairs.tsv'})")
        self.float_blob = float_blob
        self.inputs = list(inputs)
        if not self.inputs:
            raise ValueError("expected at least one calibration input to measure on")
        engine = _core.Engine(float_blob)
        self.output_names = list(engine.output_names)
        self.reference = [engine.run([x]) for x in self.inputs]
        self.eval_data = None if eval_data is None else Path(eval_data)
        self.eval_limit = eval_limit
        self._float_eval: Optional[Dict[str, float]] = None
        self._crops = None

    # -- against the float outputs ---------------------------------------------------------

    def calibration_metrics(self, blob: bytes) -> Dict[str, object]:
        """{"sqnr_db": {output: dB}, "sqnr_db_min": dB, "cosine": mean cosine of the first
        output} and, for landmark models, "nme" (%) of ``blob`` on the calibration inputs."""
        engine = _core.Engine(blob)
        signal = np.zeros(len(self.output_names))
        noise = np.zeros(len(self.output_names))
        cosines, nmes = [], []
        for x, ref in zip(self.inputs, self.reference):
            got = engine.run([x])
            for k, (r, g) in enumerate(zip(ref, got)):
                r64, g64 = np.asarray(r, np.float64), np.asarray(g, np.float64)
                signal[k] += float(np.sum(r64 * r64))
                noise[k] += float(np.sum((r64 - g64) ** 2))
            r0, g0 = np.asarray(ref[0]), np.asarray(got[0])
            cosines += [_cosine(a, b) for a, b in zip(r0.reshape(r0.shape[0], -1), g0.reshape(g0.shape[0], -1))]
            if self.task == "landmarks":
                nmes.append(self._nme(r0, g0))
        per = {n: round(sqnr_db(s, e), 3) for n, s, e in zip(self.output_names, signal, noise)}
        out: Dict[str, object] = {"sqnr_db": per, "sqnr_db_min": min(per.values()),
                                  "cosine": float(np.mean(cosines))}
        if nmes:
            out["nme"] = float(np.mean(nmes))
        return out

    def _nme(self, ref: np.ndarray, got: np.ndarray) -> float:
        """Mean point distance of ``got`` from ``ref`` (one image's points), in % of the
        outer-eye-corner distance (68 points) or of the crop side."""
        r, g = _points(ref), _points(got)
        if len(r) == 68:
            a, b = _OUTER_EYE_CORNERS_68
            norm = float(np.linalg.norm(r[a] - r[b]))
        else:
            unit = self.meta.get("landmarks.coords", "unit") == "unit"
            norm = 1.0 if unit else float(max(self.meta.get("input.size", [1, 1])))
        return 100.0 * float(np.mean(np.linalg.norm(r - g, axis=1))) / max(norm, 1e-12)

    # -- task metrics on labelled data -----------------------------------------------------

    def eval_metrics(self, blob: bytes) -> Dict[str, float]:
        """The task metrics of ``blob`` on the evaluation data, in points (% units); empty
        without evaluation data."""
        if self.eval_data is None:
            return {}
        if self.task == "detect":
            from picoface.detector import FaceDetector
            from picoface.eval_wider import DEFAULT_SCORE_THRESHOLD, evaluate_detector
            rep = evaluate_detector(FaceDetector(blob, score_threshold=DEFAULT_SCORE_THRESHOLD),
                                    self.eval_data, limit=self.eval_limit)
            return {f"ap_{s}": 100.0 * rep[s] for s in ("easy", "medium", "hard")}
        from picoface import eval_verify
        from picoface.embedder import FaceEmbedder
        crops, labels, folds, index = self._pair_crops()
        emb = FaceEmbedder(blob)(crops)
        scores = np.sum(emb[index[:, 0]] * emb[index[:, 1]], axis=1)
        rep = eval_verify.report(scores, labels, folds, far=1e-3)
        return {"accuracy": 100.0 * rep["accuracy"], "tar_at_far_1e-3": 100.0 * rep["tar_at_far_1e-3"]}

    def float_eval_metrics(self) -> Dict[str, float]:
        if self._float_eval is None:
            self._float_eval = self.eval_metrics(self.float_blob)
        return self._float_eval

    def _pair_crops(self):
        """Aligned crops of the pairs' images (once): the largest face the shipped detector
        finds, or the central square where it finds none (as ``eval verify --undetected
        centre``)."""
        if self._crops is None:
            from picoface import eval_verify, imageio
            from picoface.detector import FaceDetector
            from picoface.embedder import FaceEmbedder
            from picoface.recognize import Recognizer
            pairs = _pair_subset(eval_verify.read_pairs(self.eval_data), self.eval_limit)
            rec = Recognizer(FaceDetector(), FaceEmbedder(self.float_blob))
            names = sorted({n for p in pairs for n in (p.image_a, p.image_b)})
            crops = [rec.face_crop(imageio.read_bgr(self.eval_data.parent / n)) for n in names]
            row = {n: i for i, n in enumerate(names)}
            index = np.array([(row[p.image_a], row[p.image_b]) for p in pairs], np.int64)
            self._crops = (np.stack(crops), np.array([p.same for p in pairs]),
                           np.array([p.fold for p in pairs]), index)
            log.info("evaluation: %d pairs over %d images", len(pairs), len(names))
        return self._crops

    # -- budgets and the report ------------------------------------------------------------

    def values(self, blob: bytes, metrics: Sequence[str]) -> Dict[str, float]:
        """Each metric's value for ``blob``, in the unit its budget bounds (see
        :data:`METRICS`)."""
        out: Dict[str, float] = {}
        calib = self.calibration_metrics(blob) if any(not METRICS[m].eval_data for m in metrics) else {}
        evals = self.eval_metrics(blob) if any(METRICS[m].eval_data for m in metrics) else {}
        for m in metrics:
            if m == "sqnr":
                out[m] = float(calib["sqnr_db_min"])
            elif m == "cosine":
                out[m] = 1.0 - float(calib["cosine"])
            elif m == "nme":
                out[m] = float(calib["nme"])
            else:
                out[m] = self.float_eval_metrics()[m] - evals[m]
        return out

    def check(self, blob: bytes, budget: Dict[str, float]) -> Dict[str, dict]:
        """{metric: {"value", "budget", "ok"}}: whether ``blob`` keeps each budget."""
        values = self.values(blob, list(budget))
        return {m: {"value": round(values[m], 6), "budget": b,
                    "ok": bool(values[m] >= b if METRICS[m].floor else values[m] <= b)}
                for m, b in budget.items()}

    def report(self, blob: bytes) -> Dict[str, object]:
        """The accuracy report of ``blob`` (see :func:`accuracy_report`)."""
        g = modelfile.summary(blob)
        names = [t["name"] for t in g["tensors"]]
        convs = [o for o in g["ops"] if o["type"] in ("Conv", "QLinearConv")]
        rep: Dict[str, object] = {
            "task": self.task,
            "convs": len(convs),
            "int8_convs": sum(o["type"] == "QLinearConv" for o in convs),
            "float_convs": sum(o["type"] == "Conv" for o in convs),
            "kept_float": [names[o["outputs"][0]] for o in convs if o["type"] == "Conv"],
            "calibration": {"images": len(self.inputs), **self.calibration_metrics(blob)},
        }
        if self.eval_data is not None:
            fp32, int8 = self.float_eval_metrics(), self.eval_metrics(blob)
            rep["eval"] = {"data": str(self.eval_data), "limit": self.eval_limit,
                           "fp32": fp32, "int8": int8, "delta": {k: int8[k] - fp32[k] for k in fp32}}
        return rep


# ---------------------------------------------------------------------------------------
# Sensitivity and --keep-float auto

@dataclasses.dataclass(frozen=True)
class LayerSensitivity:
    """The error of quantising one Conv alone (every other layer float).

    Attributes:
        name: the Conv's output tensor (how ``keep_float`` names it).
        op: kernel, stride, groups and channels, e.g. "3x3 s2 g1 3->16".
        sqnr_db: lowest SQNR of any graph output on the calibration images (dB).
        worst_output: the output with that SQNR.
        cosine: mean cosine of the first output to the float model's.
    """

    name: str
    op: str
    sqnr_db: float
    worst_output: str
    cosine: float


def _describe(graph, op) -> str:
    w = np.asarray(graph.tensors[op.inputs[1]].data)
    group = int(op.attrs.get("group", 1))
    stride = list(op.attrs.get("strides", [1, 1]))[0]
    return f"{w.shape[2]}x{w.shape[3]} s{stride} g{group} {w.shape[1] * group}->{w.shape[0]}"


def sensitivity(cal, evaluator: Evaluator, skip: Sequence[str] = (),
                progress: Optional[Callable[[str, int, int], None]] = None) -> List[LayerSensitivity]:
    """Quantises each candidate Conv of ``cal`` (quantize.Calibrated) alone and measures the
    graph outputs against the float model on ``evaluator``'s inputs; ``progress`` is called
    with ("sensitivity", layers done, layers).

    Returns:
        One entry per Conv (except those named in ``skip``), the worst (lowest SQNR) first.
    """
    out = []
    todo = [i for i in cal.candidates if cal.layer(i) not in skip]
    for done, i in enumerate(todo, 1):
        name = cal.layer(i)
        m = evaluator.calibration_metrics(cal.build([i]))
        if progress is not None:
            progress("sensitivity", done, len(todo))
        worst = min(m["sqnr_db"], key=m["sqnr_db"].get)
        out.append(LayerSensitivity(name, _describe(cal.graph, cal.graph.ops[i]), m["sqnr_db_min"],
                                    worst, round(m["cosine"], 6)))
    return sorted(out, key=lambda r: (r.sqnr_db, r.cosine))


def keep_float_auto(cal, ranked: Sequence[str], evaluator: Evaluator, budget: Dict[str, float],
                    keep: Sequence[str] = (),
                    progress: Optional[Callable[[str, int, int], None]] = None) -> List[str]:
    """The fewest of the worst layers to keep float so that the int8 model keeps ``budget``.

    ``ranked`` is the sensitivity order, worst first. Keeping the k worst float is assumed
    to help more as k grows, so k is found by bisection: about log2(len(ranked)) trial
    models, each measured by ``evaluator``.

    Args:
        cal: the calibrated model (quantize.Calibrated).
        keep: layers kept float whatever the budget.
        progress: called with ("keep-float auto", trials done, the most trials there can be).

    Returns:
        The names of the layers to keep float (in ``ranked`` order), beyond ``keep``.

    Raises:
        ValueError: the budget fails even with a single int8 Conv left.
    """
    ranked = [n for n in ranked if n not in keep]
    trials = [0]
    most_trials = 1 + math.ceil(math.log2(max(1, len(ranked))))

    def holds(k: int) -> bool:
        floats = set(keep) | set(ranked[:k])
        check = evaluator.check(cal.build([i for i in cal.candidates if cal.layer(i) not in floats]), budget)
        log.info("keep-float auto: %d layer(s) float: %s", k,
                 ", ".join(f"{m} {c['value']:g} ({'ok' if c['ok'] else 'over'} {c['budget']:g})"
                           for m, c in check.items()))
        trials[0] += 1
        if progress is not None:
            progress("keep-float auto", trials[0], most_trials)
        return all(c["ok"] for c in check.values())

    if holds(0):
        return []
    lo, hi = 0, len(ranked)  # holds(lo) is false; hi (everything float) trivially holds
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if holds(mid):
            hi = mid
        else:
            lo = mid
    if hi == len(ranked):
        raise ValueError(f"the budget {budget} fails even with only the least sensitive Conv in "
                         "int8: relax it, or calibrate differently (--method, more images)")
    return list(ranked[:hi])


def accuracy_report(float_model, int8_model, calib, *, task: Optional[str] = None,
                    head: Optional[str] = None, preset: Optional[str] = None, calib_size=None,
                    limit: int = 16, eval_data=None, eval_limit: Optional[int] = None) -> Dict[str, object]:
    """Float vs int8: what ``picoface quantize`` prints after quantising.

    Args:
        float_model: as quantize.load_float_model takes it (a shipped name, .pface path or
            bytes, or ONNX with ``task`` and ``head`` / ``preset``).
        int8_model: the int8 .pface path or bytes.
        calib: calibration images as quantize.quantize_model takes them; the first ``limit``
            are used.
        calib_size: detector input (width, height) for them.
        eval_data: WIDER-val416 folder (detectors) or pairs.tsv (recognisers): adds the task
            metrics of both models and their difference ("eval").
        eval_limit: at most this many evaluation images (detectors) or pairs (recognisers).

    Returns:
        {"task", "convs", "int8_convs", "float_convs", "kept_float", "calibration": {"images",
        "sqnr_db": {output: dB}, "sqnr_db_min", "cosine"[, "nme"]}[, "eval": {"data", "limit",
        "fp32", "int8", "delta" (int8 - fp32)}]}; task metrics in points (AP, accuracy and TAR
        in %).
    """
    from picoface.quantize import calibration_inputs, load_float_model

    fp32 = load_float_model(float_model, task=task, head=head, preset=preset)
    int8 = bytes(int8_model) if isinstance(int8_model, (bytes, bytearray)) else Path(int8_model).read_bytes()
    inputs = calibration_inputs(fp32, calib, calib_size=calib_size, limit=limit)
    return Evaluator(fp32, inputs, eval_data=eval_data, eval_limit=eval_limit).report(int8)


# ---------------------------------------------------------------------------------------
# Text forms

def sensitivity_table(ranking: Sequence[dict]) -> str:
    """Markdown table of a sensitivity ranking (as dicts, worst first)."""
    lines = ["| rank | layer | op | SQNR dB (worst output) | cosine |", "|---|---|---|---|---|"]
    for k, r in enumerate(ranking, 1):
        lines.append(f"| {k} | {r['name']} | {r['op']} | {r['sqnr_db']:.1f} ({r['worst_output']}) | "
                     f"{r['cosine']:.6f} |")
    return "\n".join(lines)


def accuracy_table(rep: Dict[str, object]) -> str:
    """Markdown summary of an accuracy report."""
    cal = rep["calibration"]
    lines = [f"{rep['int8_convs']} of {rep['convs']} Convs int8"
             + (f", float: {', '.join(rep['kept_float'])}" if rep["kept_float"] else ""),
             f"calibration set ({cal['images']} images): lowest output SQNR {cal['sqnr_db_min']:.1f} dB, "
             f"cosine {cal['cosine']:.6f}" + (f", NME {cal['nme']:.3f} %" if "nme" in cal else "")]
    if "eval" in rep:
        ev = rep["eval"]
        lines += ["", f"| metric ({Path(ev['data']).name}) | fp32 | int8 | delta |", "|---|---|---|---|"]
        lines += [f"| {k} | {ev['fp32'][k]:.2f} | {ev['int8'][k]:.2f} | {ev['delta'][k]:+.2f} |"
                  for k in ev["fp32"]]
    return "\n".join(lines)
