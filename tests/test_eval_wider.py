"""WIDER FACE AP by the official protocol: hand-built cases with known answers, then a run on
real WIDER-val416 images through the CLI."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED, YUNET_S, need, need_module
from picoface import eval_wider as ew

VAL416 = SHARED / "data/wider/val416"


def gt_image(boxes_xywh, keep=None, settings=ew.SETTINGS):
    """A ground-truth image in its own frame (scale 1); ``keep`` applies to every setting."""
    boxes = np.asarray(boxes_xywh, np.float64).reshape(-1, 4)
    keep = np.ones(len(boxes), bool) if keep is None else np.asarray(keep, bool)
    return ew.GtImage(Path("unused.jpg"), boxes, (1.0, 1.0), (100, 100),
                      {s: keep for s in settings})


def pred(boxes_xywh, scores):
    return ew.xywh_to_corners(boxes_xywh), np.asarray(scores, np.float64)


FACE_A = [10, 10, 20, 20]
FACE_B = [50, 50, 20, 20]
NOWHERE = [200, 200, 20, 20]


def ap(predictions, gts, setting="easy"):
    return ew.evaluate(predictions, gts)[setting].ap


def test_perfect_detections_give_ap_one():
    gts = [gt_image([FACE_A, FACE_B]), gt_image([FACE_A])]
    preds = [pred([FACE_A, FACE_B], [0.9, 0.6]), pred([FACE_A], [0.3])]
    result = ew.evaluate(preds, gts)
    for setting in ew.SETTINGS:
        assert result[setting].ap == pytest.approx(1.0)
        assert result[setting].faces == 3


def test_one_false_positive_above_all_true_positives():
    # Normalised scores 1, 0.5, 0: the PR points are (R 0, P 0), (R 0.5, P 0.5), (R 1, P 2/3);
    # the envelope lifts precision at R 0.5 to 2/3, so AP = 2/3.
    preds = [pred([NOWHERE, FACE_A, FACE_B], [0.9, 0.8, 0.7])]
    assert ap(preds, [gt_image([FACE_A, FACE_B])]) == pytest.approx(2 / 3)


def test_prediction_on_an_ignored_box_is_neither_tp_nor_fp():
    gts = [gt_image([FACE_A, FACE_B], keep=[True, False])]
    preds = [pred([FACE_B, FACE_A], [0.9, 0.8])]  # the ignored face scores highest
    counted, recalled = ew.match_image(*[ew.xywh_to_corners([FACE_B, FACE_A])],
                                       ew.xywh_to_corners([FACE_A, FACE_B]), [True, False])
    assert counted.tolist() == [False, True] and recalled.tolist() == [0, 1]
    result = ew.evaluate(preds, gts)["easy"]
    assert result.faces == 1 and result.ap == pytest.approx(1.0)
    # Counted as a false positive instead, it would halve precision at full recall.
    assert ap([pred([NOWHERE, FACE_A], [0.9, 0.8])], gts) == pytest.approx(0.5)


def test_ignored_boxes_depend_on_the_setting():
    keep = {"easy": np.array([True, False]), "medium": np.array([True, True]),
            "hard": np.array([True, True])}
    gts = [ew.GtImage(Path("x.jpg"), np.array([FACE_A, FACE_B], np.float64), (1.0, 1.0),
                      (100, 100), keep)]
    result = ew.evaluate([pred([FACE_A], [0.9])], gts)
    assert result["easy"].ap == pytest.approx(1.0)
    assert result["medium"].ap == pytest.approx(0.5)  # half the kept faces found


def test_duplicate_detections_of_one_face_are_false_positives():
    shifted = [11, 10, 20, 20]  # IoU 0.91 with FACE_A
    counted, recalled = ew.match_image(ew.xywh_to_corners([FACE_A, shifted]),
                                       ew.xywh_to_corners([FACE_A]), [True])
    assert counted.tolist() == [True, True] and recalled.tolist() == [1, 1]
    # Normalised 1, 0.5, 0: PR (R .5, P 1), (R .5, P .5), (R 1, P 2/3) -> AP .5 + .5 * 2/3.
    preds = [pred([FACE_A, shifted, FACE_B], [0.9, 0.8, 0.7])]
    assert ap(preds, [gt_image([FACE_A, FACE_B])]) == pytest.approx(5 / 6)


def test_empty_predictions():
    gts = [gt_image([FACE_A]), gt_image([FACE_B])]
    empty = pred(np.zeros((0, 4)), [])
    assert ap([empty, empty], gts) == 0.0
    # An image without predictions still counts its faces: recall stops at 1/2.
    result = ew.evaluate([pred([FACE_A], [0.9]), empty], gts)["hard"]
    assert result.faces == 2 and result.recall.max() == 0.5 and result.ap == pytest.approx(0.5)


def test_iou_exactly_half_matches():
    # Inclusive pixels: the gt covers 10x10 pixels (x 0..9), the prediction 10x5 inside it.
    gt = ew.xywh_to_corners([[0, 0, 9, 9]])
    half = np.array([[0.0, 0.0, 9.0, 4.0]])
    assert ew.box_iou(half, gt)[0, 0] == 0.5
    assert ew.match_image(half, gt, [True])[1].tolist() == [1]
    below = np.array([[0.0, 0.0, 9.0, 3.99]])
    assert ew.box_iou(below, gt)[0, 0] < 0.5
    assert ew.match_image(below, gt, [True])[1].tolist() == [0]


def test_iou_pixel_convention():
    a = np.array([[0.0, 0.0, 10.0, 10.0]])
    b = np.array([[5.0, 0.0, 15.0, 10.0]])
    assert ew.box_iou(a, b, pixel=0.0)[0, 0] == pytest.approx(50 / 150)
    assert ew.box_iou(a, b, pixel=1.0)[0, 0] == pytest.approx(66 / 176)
    # Touching boxes share no pixel in continuous geometry but one column when inclusive.
    c = np.array([[10.0, 0.0, 20.0, 10.0]])
    assert ew.box_iou(a, c, pixel=0.0)[0, 0] == 0.0 and ew.box_iou(a, c)[0, 0] > 0.0
    assert ew.box_iou(a, np.array([[30.0, 30.0, 40.0, 40.0]]))[0, 0] == 0.0


def test_thresholds_are_the_official_1000():
    t = ew.thresholds()
    assert t.shape == (1000,) and t[0] == 1 - 1 / 1000 and t[-1] == 0.0
    assert np.all(np.diff(t) < 0)


def test_scores_within_one_threshold_step_are_tied():
    # After normalisation the false positive scores 0.9995: at the first threshold (0.999)
    # it enters together with the true positive (1.0), so precision never exceeds 1/2.
    gts = [gt_image([FACE_A])]
    close = [pred([FACE_A, NOWHERE, [100, 100, 5, 5]], [1.0, 0.9995, 0.0])]
    assert ap(close, gts) == pytest.approx(0.5)
    # One step lower (0.998 < 0.999) the ranking survives the quantisation.
    apart = [pred([FACE_A, NOWHERE, [100, 100, 5, 5]], [1.0, 0.998, 0.0])]
    assert ap(apart, gts) == pytest.approx(1.0)


def test_score_on_a_threshold_counts_at_that_threshold():
    counts = ew.image_pr([1.0, 0.5, 0.0], [True, True, True], [1, 1, 2])
    t = ew.thresholds()
    at_half = int(np.flatnonzero(t == 0.5)[0])
    assert counts[at_half].tolist() == [2, 1] and counts[at_half - 1].tolist() == [1, 1]
    assert counts[-1].tolist() == [3, 2]


def test_scores_are_normalised_over_all_images():
    # The same detections on a 0..0.1 scale rank and quantise as on 0..1.
    gts = [gt_image([FACE_A]), gt_image([FACE_B])]
    a = ew.evaluate([pred([FACE_A, NOWHERE], [0.09, 0.1]), pred([FACE_B], [0.0])], gts)
    b = ew.evaluate([pred([FACE_A, NOWHERE], [0.9, 1.0]), pred([FACE_B], [0.0])], gts)
    assert a["hard"].ap == pytest.approx(b["hard"].ap)
    assert [s.tolist() for s in ew.normalize_scores([[0.3, 0.3], []])] == [[1.0, 1.0], []]


def test_voc_all_point_ap():
    assert ew.voc_ap([0.5, 1.0], [1.0, 0.5]) == pytest.approx(0.75)
    # The envelope: a precision dip followed by a rise counts at the later value.
    assert ew.voc_ap([0.25, 0.5, 1.0], [1.0, 0.2, 0.6]) == pytest.approx(0.25 + 0.75 * 0.6)


def test_image_without_ground_truth_adds_nothing():
    # As the official tool: predictions on an image with no boxes are not false positives.
    gts = [gt_image([FACE_A]), gt_image(np.zeros((0, 4)))]
    assert ap([pred([FACE_A], [0.5]), pred([NOWHERE], [0.9])], gts) == pytest.approx(1.0)


def test_prediction_count_must_match():
    with pytest.raises(ValueError, match="one prediction per ground-truth image"):
        ew.evaluate([], [gt_image([FACE_A])])


def test_val416_ground_truth_loads():
    gt = ew.load_ground_truth(need(VAL416))
    assert len(gt) == 160
    counts = {s: sum(int(g.keep[s].sum()) for g in gt) for s in ew.SETTINGS}
    assert counts == {"easy": 465, "medium": 972, "hard": 2418}
    # gt_416 was made as original boxes times scale_xy.
    rec = json.loads((VAL416 / ew.GT_FILE).read_text().splitlines()[0])
    sx, sy = gt[0].scale_xy
    np.testing.assert_allclose(gt[0].boxes * [sx, sy, sx, sy], rec["boxes_xywh_416"], atol=0.006)
    assert gt[0].original_size == tuple(rec["orig_wh"])


def test_ground_truth_as_predictions_scores_one():
    gt = ew.load_ground_truth(need(VAL416), limit=20)
    preds = [(ew.xywh_to_corners(g.boxes), np.linspace(1.0, 0.5, len(g.boxes))) for g in gt]
    assert all(r.ap == pytest.approx(1.0) for r in ew.evaluate(preds, gt).values())


def test_missing_data_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="gt_416.jsonl"):
        ew.load_ground_truth(tmp_path)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "picoface", *map(str, args)],
                          capture_output=True, text=True)


def test_cli_eval_wider_json_on_real_images():
    need_module("onnxruntime")
    need_module("cv2")
    out = cli("eval", "wider", "--model", need(YUNET_S), "--head", "yunet",
              "--data", need(VAL416), "--limit", 10, "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert set(report) == {"easy", "medium", "hard", "images"} and report["images"] == 10
    # Regression gate, measured 0.732 / 0.695 / 0.300 on these 10 images (YuNet-s, 416x416).
    assert report["easy"] >= 0.65 and report["medium"] >= 0.6 and report["hard"] >= 0.25
    assert all(report[s] <= 1.0 for s in ew.SETTINGS)


def test_cli_eval_wider_table_and_errors(tmp_path):
    need_module("onnxruntime")
    need_module("cv2")
    out = cli("eval", "wider", "--model", need(YUNET_S), "--head", "yunet",
              "--data", need(VAL416), "--limit", 2)
    assert out.returncode == 0, out.stderr
    assert "| easy | medium | hard |" in out.stdout and "2 images" in out.stdout
    bad = cli("eval", "wider", "--model", YUNET_S, "--head", "yunet", "--data", tmp_path)
    assert bad.returncode == 1
    assert bad.stderr.startswith("picoface: error:") and "gt_416.jsonl" in bad.stderr
