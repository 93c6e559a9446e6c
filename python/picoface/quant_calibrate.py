"""Activation ranges from calibration: minmax, percentile and entropy (KL divergence).

Each method turns the values a tensor took over the calibration images into the range
``[lo, hi]`` its int8 parameters cover (quant_math.activation_params); values outside it
saturate. Clipping rare outliers trades their error for a finer step on everything else.
"""

from typing import Dict, List, Tuple

import numpy as np

METHODS = ("minmax", "percentile", "entropy")
# Activation values kept per tensor and image for the percentile method (a uniform sample).
_SAMPLE_PER_IMAGE = 1 << 16
# The entropy method's histogram of |x|, as TensorRT's calibrator.
HISTOGRAM_BINS = 2048
_Q_FLOOR = 1e-6


class _Histogram:
    """Counts of |x| in ``HISTOGRAM_BINS`` equal bins over [0, top). When a value beyond
    ``top`` arrives, ``top`` doubles (merging bin pairs) until it fits, so the counts stay
    exact over any number of images without a first pass for the range."""

    def __init__(self):
        self.counts = np.zeros(HISTOGRAM_BINS, np.int64)
        self.top = 0.0

    def add(self, a: np.ndarray):
        # Exact zeros (half of a ReLU's outputs) are exact at any threshold, since 0 is always
        # representable: counted, their spike in bin 0 would dominate the KL divergence and
        # pull the threshold down for no gain.
        a = a[a > 0]
        if a.size == 0:
            return
        amax = float(a.max())
        if self.top == 0.0:
            self.top = amax * (1 + 1e-6)
        while amax >= self.top:
            self.counts = self.counts.reshape(-1, 2).sum(axis=1)
            self.counts = np.concatenate([self.counts, np.zeros_like(self.counts)])
            self.top *= 2.0
        idx = np.minimum((a * (HISTOGRAM_BINS / self.top)).astype(np.int64), HISTOGRAM_BINS - 1)
        self.counts += np.bincount(idx, minlength=HISTOGRAM_BINS)


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) of two normalised histograms; a bin q leaves empty where p has mass costs
    as if q held a small floor there (else one such bin would rule a candidate out)."""
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / np.maximum(q[mask], _Q_FLOOR))))


def entropy_threshold(counts: np.ndarray, levels: int) -> int:
    """The number of histogram bins to keep so that quantising them to ``levels`` levels
    loses the least information (Migacz, "8-bit Inference with TensorRT", GTC 2017).

    For each candidate ``i >= levels``: P is the first ``i`` bins with the clipped tail added
    to the last; Q merges those bins into ``levels`` groups and spreads each group's count
    evenly over its non-empty bins (an empty bin stays empty, as it would after
    quantisation). The ``i`` minimising KL(P || Q) wins.

    Args:
        counts: histogram of |x| (non-negative, any length >= ``levels``).
        levels: quantisation levels available to [0, threshold].

    Returns:
        The bin count ``i``; the threshold is ``i * bin width``.
    """
    counts = np.asarray(counts, np.float64)
    n = len(counts)
    # KL's premise is a dense distribution whose sparse tail is worth trading for resolution;
    # values in no more bins than there are levels (a few distinct values, e.g. a Conv whose
    # output hardly depends on its input) keep their whole range.
    if n <= levels or np.count_nonzero(counts) <= levels:
        return n
    tail = np.cumsum(counts[::-1])[::-1]  # tail[i] = sum(counts[i:])
    best_i, best_kl = n, np.inf
    for i in range(levels, n + 1):
        p = counts[:i].copy()
        if i < n:
            p[-1] += tail[i]
        if p.sum() == 0:
            continue
        # Bin j of the first i goes to group floor(j * levels / i).
        group = (np.arange(i) * levels) // i
        nonzero = p > 0
        group_sum = np.bincount(group, weights=counts[:i], minlength=levels)
        group_nonzero = np.bincount(group, weights=nonzero, minlength=levels)
        q = np.where(nonzero, group_sum[group] / np.maximum(group_nonzero[group], 1), 0.0)
        kl = _kl(p / p.sum(), q / q.sum()) if q.sum() > 0 else np.inf
        if kl < best_kl:
            best_i, best_kl = i, kl
    return best_i


class Ranges:
    """Collects per-tensor statistics over calibration images and answers each tensor's range.

    Args:
        method: one of :data:`METHODS`.
        percentile: for "percentile": the range is the (100 - p)-th to p-th percentile.
    """

    def __init__(self, method: str, percentile: float = 99.99):
        if method not in METHODS:
            raise ValueError(f"expected method one of {METHODS}, got {method!r}")
        self.method, self.percentile = method, percentile
        self.lo: Dict[str, float] = {}
        self.hi: Dict[str, float] = {}
        self.samples: Dict[str, List[np.ndarray]] = {}
        self.hists: Dict[str, _Histogram] = {}
        self.rng = np.random.default_rng(0)

    def add(self, name: str, x: np.ndarray):
        x = np.asarray(x, np.float32).ravel()
        if x.size == 0:
            return
        self.lo[name] = min(self.lo.get(name, np.inf), float(x.min()))
        self.hi[name] = max(self.hi.get(name, -np.inf), float(x.max()))
        if self.method == "percentile":
            keep = min(x.size, _SAMPLE_PER_IMAGE)
            self.samples.setdefault(name, []).append(
                x if keep == x.size else self.rng.choice(x, keep, replace=False))
        elif self.method == "entropy":
            self.hists.setdefault(name, _Histogram()).add(np.abs(x))

    def range(self, name: str) -> Tuple[float, float]:
        lo, hi = self.lo[name], self.hi[name]
        if self.method == "percentile":
            s = np.concatenate(self.samples[name])
            q = self.percentile
            return float(np.percentile(s, 100.0 - q)), float(np.percentile(s, q))
        if self.method == "entropy":
            h = self.hists[name]
            # Values of one sign get all 256 int8 levels over [0, t]; a tensor of both signs
            # is treated as symmetric, 128 levels per side (asymmetric parameters then only
            # tighten the side that never reached t).
            levels = 256 if lo >= 0.0 or hi <= 0.0 else 128
            t = entropy_threshold(h.counts, levels) * h.top / HISTOGRAM_BINS
            return max(lo, -t), min(hi, t)
        return lo, hi
