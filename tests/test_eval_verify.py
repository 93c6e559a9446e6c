"""Verification protocol maths on hand-built score lists."""

import numpy as np
import pytest

from picoface import eval_verify as ev


def test_best_threshold_separable():
    s = [0.9, 0.8, 0.7, 0.2, 0.1, 0.0]
    y = [1, 1, 1, 0, 0, 0]
    t = ev.best_threshold(s, y)
    assert 0.2 <= t < 0.7 and t == pytest.approx(0.45)
    assert ev.accuracy(s, y, t) == 1.0


def test_best_threshold_with_overlap_and_ties():
    # Positives 0.5, 0.6, 0.3; negatives 0.4, 0.1, 0.5 (tied with a positive).
    s = [0.5, 0.6, 0.3, 0.4, 0.1, 0.5]
    y = [1, 1, 1, 0, 0, 0]
    t = ev.best_threshold(s, y)
    # Correct pairs per candidate: 0.05 -> 3, 0.2 -> 4, 0.35 -> 3, 0.45 -> 4, 0.55 -> 4, 0.7 -> 3;
    # the lowest of the best wins.
    assert t == pytest.approx(0.2)
    assert ev.accuracy(s, y, t) == pytest.approx(4 / 6)


def test_kfold_uses_other_folds_threshold():
    # Fold 0's own best threshold would be 0.55 but folds 1 and 2 say 0.25: fold 0 is then
    # scored at 0.25 and gets one pair wrong.
    scores = [0.6, 0.5, 0.9, 0.3, 0.2, 0.1, 0.8, 0.3, 0.2, 0.1]
    labels = [1, 0, 1, 1, 0, 0, 1, 1, 0, 0]
    folds = [0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    r = ev.kfold_accuracy(scores, labels, folds)
    assert r["fold_threshold"][0] == pytest.approx(0.25)
    assert r["fold_accuracy"] == [0.5, 1.0, 1.0]
    assert r["accuracy"] == pytest.approx(2.5 / 3)
    assert r["accuracy_std"] == pytest.approx(np.std([0.5, 1.0, 1.0]))


def test_tar_at_far_counts_allowed_false_accepts():
    neg = np.linspace(0, 0.5, 2000)  # distinct, highest 0.5
    pos = np.array([0.9, 0.6, 0.4999, 0.49, 0.1])
    s = np.concatenate([pos, neg])
    y = np.concatenate([np.ones(5), np.zeros(2000)])
    # FAR 1e-3 of 2000 negatives: 2 may be accepted -> threshold is the 3rd highest negative.
    tar, t = ev.tar_at_far(s, y, 1e-3)
    assert t == pytest.approx(neg[-3])
    assert tar == pytest.approx(3 / 5)  # 0.9, 0.6, 0.4999 (> 0.49950)
    tar0, t0 = ev.tar_at_far(s, y, 0.0)
    assert t0 == pytest.approx(0.5) and tar0 == pytest.approx(2 / 5)


def test_report_keys_and_validation(tmp_path):
    rng = np.random.default_rng(0)
    y = np.tile([1] * 30 + [0] * 30, 10)
    s = np.where(y == 1, rng.normal(0.6, 0.1, y.size), rng.normal(0.1, 0.1, y.size))
    folds = np.repeat(np.arange(10), 60)
    r = ev.report(s, y, folds)
    assert set(r) >= {"accuracy", "accuracy_std", "tar_at_far_1e-3", "pairs"}
    assert r["pairs"] == 600 and 0.95 < r["accuracy"] <= 1.0
    with pytest.raises(ValueError, match="as many scores as labels"):
        ev.kfold_accuracy([0.1, 0.2], [1], [0, 1])
    with pytest.raises(ValueError, match="at least 2 folds"):
        ev.kfold_accuracy([0.1, 0.2], [1, 0], [0, 0])


def test_read_pairs(tmp_path):
    p = tmp_path / "pairs.tsv"
    p.write_text("fold\timage_a\timage_b\tsame\n0\ta.jpg\tb.jpg\t1\n1\tc.jpg\td.jpg\t0\n")
    pairs = ev.read_pairs(p)
    assert pairs == [ev.Pair(0, "a.jpg", "b.jpg", True), ev.Pair(1, "c.jpg", "d.jpg", False)]
    p.write_text("fold\timage_a\timage_b\tsame\n0\ta.jpg\tb.jpg\tyes\n")
    with pytest.raises(ValueError, match=r"pairs.tsv:2"):
        ev.read_pairs(p)
    with pytest.raises(FileNotFoundError):
        ev.read_pairs(tmp_path / "none.tsv")


def test_parse_folds():
    assert ev.parse_folds("8-9") == [8, 9]
    assert ev.parse_folds("0-2,7") == [0, 1, 2, 7]
    assert ev.parse_folds("5") == [5]
    for bad in ("a", "9-8", "1-"):
        with pytest.raises(ValueError, match="expected folds like"):
            ev.parse_folds(bad)
