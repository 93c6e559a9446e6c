"""Face verification protocol maths (LFW-style), pure numpy.

A pair is accepted as "same person" when its score is strictly greater than the threshold.

- :func:`kfold_accuracy`: for each fold, the threshold that maximises accuracy on the other
  folds is applied to that fold; the result is the mean and the (population) standard
  deviation of the per-fold accuracies, as in the LFW protocol.
- :func:`tar_at_far`: over all pairs, the lowest threshold at which the fraction of
  different-person pairs accepted is at most ``far``, and the fraction of same-person pairs
  accepted there.
"""

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np


@dataclass(frozen=True)
class Pair:
    fold: int
    image_a: str
    image_b: str
    same: bool


def read_pairs(path) -> List[Pair]:
    """Pairs of a ``fold<TAB>image_a<TAB>image_b<TAB>same`` file with a header row.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a missing column or a malformed row (named by its line number).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pairs file not found: {str(path)!r}")
    with open(path, newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    want = ["fold", "image_a", "image_b", "same"]
    if not rows or [c.strip() for c in rows[0]] != want:
        raise ValueError(f"{path}: expected header {'<TAB>'.join(want)}, got {rows[0] if rows else 'an empty file'}")
    pairs = []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        try:
            fold, a, b, same = row
            pairs.append(Pair(int(fold), a, b, {"1": True, "0": False}[same.strip()]))
        except (ValueError, KeyError):
            raise ValueError(f"{path}:{line}: expected fold, image_a, image_b, same (0/1), "
                             f"got {row}") from None
    return pairs


def parse_folds(text: str) -> List[int]:
    """Fold ids from ``"8-9"``, ``"8,9"`` or ``"0-3,7"``.

    Raises:
        ValueError: anything else.
    """
    folds: List[int] = []
    for part in str(text).split(","):
        lo, dash, hi = part.strip().partition("-")
        try:
            first = int(lo)
            last = int(hi) if dash else first
        except ValueError:
            raise ValueError(f"expected folds like 0-7 or 8,9, got {text!r}") from None
        if last < first:
            raise ValueError(f"expected folds like 0-7 or 8,9, got {text!r}")
        folds += range(first, last + 1)
    return sorted(set(folds))


def _arrays(scores, labels):
    s = np.asarray(scores, np.float64).ravel()
    y = np.asarray(labels).astype(bool).ravel()
    if s.shape != y.shape or s.size == 0:
        raise ValueError(f"expected as many scores as labels (>= 1), got {s.size} and {y.size}")
    if np.isnan(s).any():
        raise ValueError("expected scores without NaN")
    return s, y


def best_threshold(scores, labels) -> float:
    """The threshold maximising accuracy of ``score > t`` on these pairs: a midpoint between
    consecutive distinct scores (or just outside their range); the lowest such on ties."""
    s, y = _arrays(scores, labels)
    u = np.unique(s)
    cands = np.concatenate([[u[0] - 1.0], (u[:-1] + u[1:]) / 2, [u[-1] + 1.0]])
    # accepted(t) = scores > t; correct = positives above t + negatives at or below t.
    pos = np.sort(s[y])
    neg = np.sort(s[~y])
    correct = (len(pos) - np.searchsorted(pos, cands, side="right")) + \
        np.searchsorted(neg, cands, side="right")
    return float(cands[int(np.argmax(correct))])


def accuracy(scores, labels, threshold: float) -> float:
    s, y = _arrays(scores, labels)
    return float(np.mean((s > threshold) == y))


def kfold_accuracy(scores, labels, folds) -> Dict[str, object]:
    """10-fold (any k >= 2) cross-validated accuracy.

    Returns:
        {"accuracy": mean, "accuracy_std": population std, "fold_accuracy": [...],
         "fold_threshold": [...]} with folds in ascending id order.
    """
    s, y = _arrays(scores, labels)
    f = np.asarray(folds).ravel()
    if f.shape != s.shape:
        raise ValueError(f"expected one fold id per pair, got {f.size} for {s.size} pairs")
    ids = np.unique(f)
    if len(ids) < 2:
        raise ValueError(f"expected at least 2 folds, got {len(ids)}")
    accs, thrs = [], []
    for k in ids:
        test = f == k
        t = best_threshold(s[~test], y[~test])
        accs.append(accuracy(s[test], y[test], t))
        thrs.append(t)
    return {"accuracy": float(np.mean(accs)), "accuracy_std": float(np.std(accs)),
            "fold_accuracy": accs, "fold_threshold": thrs}


def tar_at_far(scores, labels, far: float) -> Tuple[float, float]:
    """(TAR, threshold) at a false-accept rate of at most ``far`` over all pairs.

    The threshold is the (floor(far * negatives) + 1)-th highest different-person score, so
    at most floor(far * negatives) of them are strictly above it (fewer where scores tie).
    """
    s, y = _arrays(scores, labels)
    neg = np.sort(s[~y])[::-1]
    pos = s[y]
    if not 0 <= far < 1:
        raise ValueError(f"expected far in [0, 1), got {far}")
    if len(neg) == 0 or len(pos) == 0:
        raise ValueError("expected both same-person and different-person pairs")
    allowed = int(np.floor(far * len(neg) + 1e-9))
    t = float(neg[allowed]) if allowed < len(neg) else float(neg[-1]) - 1.0
    return float(np.mean(pos > t)), t


def report(scores, labels, folds, far: float = 1e-3) -> Dict[str, object]:
    """The JSON summary of ``picoface eval verify``."""
    kf = kfold_accuracy(scores, labels, folds)
    tar, thr = tar_at_far(scores, labels, far)
    return {"accuracy": kf["accuracy"], "accuracy_std": kf["accuracy_std"],
            f"tar_at_far_{far:.0e}".replace("e-0", "e-"): tar,
            f"threshold_at_far_{far:.0e}".replace("e-0", "e-"): thr,
            "pairs": int(np.size(scores)), "fold_accuracy": kf["fold_accuracy"],
            "fold_threshold": kf["fold_threshold"]}
