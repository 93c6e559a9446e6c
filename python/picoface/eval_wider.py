"""WIDER FACE average precision by the official evaluation protocol (Yang et al. 2016).

The protocol of the official tool (``wider_eval.m``; also its Python ports), restated:

* Each image's predictions are sorted by descending score (stable on ties) and, one by one,
  matched to the ground-truth box of highest IoU among *all* of the image's boxes. IoU uses
  the tool's inclusive-pixel convention: boxes are ``x, y, w, h`` with corners
  ``(x, y, x + w, y + h)`` and areas ``(x2 - x1 + 1) * (y2 - y1 + 1)``.
* A prediction whose best IoU is >= 0.5 with a box outside the setting's keep-list (the
  ``gt_list`` of wider_{easy,medium,hard}_val.mat) is *ignored*: neither a true nor a false
  positive. With a kept box it recalls that box the first time; a second prediction on the
  same box counts as a false positive. Below 0.5 it is a false positive.
* Scores are normalised over the whole evaluated set to ``(s - min) / (max - min)``; the PR
  curve has 1000 points at thresholds ``1 - t / 1000`` for ``t = 1..1000`` (0.999 down to 0).
  At each, an image contributes its non-ignored predictions with score >= threshold and the
  kept faces they recall. Precision = recalled / proposals, recall = recalled / kept faces
  of the setting over all images (images without predictions included).
* AP is the VOC all-point area under the precision envelope of that curve.
* Quirk kept for fidelity: an image with no ground-truth boxes contributes nothing (its
  predictions are not counted as false positives).

WIDER-val416 (``../shared/data/wider/val416``) is 160 val images stretched to 416x416 with the
official boxes mapped by ``scale_xy = (416 / W, 416 / H)`` into ``boxes_xywh_416``. The
detector sees the 416x416 image; its boxes are mapped back by ``1 / scale_xy`` and compared
with the official integer boxes (``boxes_xywh_orig``) in the original frame, where the
inclusive-pixel IoU convention means what it does in the official tool.
"""

import dataclasses
import json
import logging
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

log = logging.getLogger("picoface")

SETTINGS = ("easy", "medium", "hard")
IOU_THRESHOLD = 0.5
NUM_THRESHOLDS = 1000
# A low detector score threshold: AP integrates the whole PR curve, and faces the detector
# scores below its deployment threshold (0.5 for YuNet) still add recall at high IoU.
DEFAULT_SCORE_THRESHOLD = 0.02
GT_FILE = "gt_416.jsonl"


@dataclasses.dataclass(frozen=True)
class GtImage:
    """Ground truth of one image.

    Attributes:
        image: path of the image file.
        boxes: float64 [M, 4] official boxes x, y, w, h in the original image's pixels.
        scale_xy: (sx, sy) from original pixels to the evaluated image's pixels.
        original_size: (width, height) of the original image.
        keep: setting name -> bool [M], the boxes that count in that setting.
    """

    image: Path
    boxes: np.ndarray
    scale_xy: tuple
    original_size: tuple
    keep: Dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class SettingResult:
    """AP and PR curve of one setting; ``precision``/``recall`` are float64 [1000], ordered
    by falling threshold."""

    ap: float
    faces: int
    precision: np.ndarray
    recall: np.ndarray


def xywh_to_corners(boxes) -> np.ndarray:
    """Official ``x, y, w, h`` -> corners ``x1, y1, x1 + w, y1 + h`` (float64 [N, 4])."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def box_iou(a, b, pixel: float = 1.0) -> np.ndarray:
    """IoU of corner boxes a [N, 4] and b [M, 4] -> float64 [N, M].

    ``pixel`` is added to each side length: 1 reproduces the official tool's
    inclusive-pixel convention, 0 gives the continuous IoU. Pairs whose intersection
    has no positive width or height have IoU 0.
    """
    a = np.asarray(a, np.float64).reshape(-1, 4)[:, None, :]
    b = np.asarray(b, np.float64).reshape(-1, 4)[None, :, :]
    iw = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + pixel
    ih = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + pixel
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0] + pixel) * (a[..., 3] - a[..., 1] + pixel)
    area_b = (b[..., 2] - b[..., 0] + pixel) * (b[..., 3] - b[..., 1] + pixel)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / (area_a + area_b - inter)
    return np.where((iw > 0) & (ih > 0), iou, 0.0)


def match_image(boxes, gt_boxes, keep, *, iou_threshold: float = IOU_THRESHOLD,
                pixel: float = 1.0):
    """Matches one image's predictions, already in descending score order.

    Args:
        boxes: [N, 4] predicted corners x1, y1, x2, y2.
        gt_boxes: [M, 4] ground-truth corners.
        keep: bool [M], the boxes that count in this setting (others are ignored).
        iou_threshold: minimum IoU of a match (inclusive).
        pixel: IoU side-length offset (see :func:`box_iou`).

    Returns:
        ``(counted, recalled)``: bool [N], False for predictions matched to an ignored box;
        int64 [N], kept boxes recalled by predictions 0..i.
    """
    keep = np.asarray(keep, bool).reshape(-1)
    n = np.asarray(boxes).reshape(-1, 4).shape[0]
    if n == 0 or keep.size == 0:
        return np.ones(n, bool), np.zeros(n, np.int64)
    iou = box_iou(boxes, gt_boxes, pixel)
    best = iou.argmax(axis=1)  # the first of equal maxima, as the official tool
    hit = iou[np.arange(n), best] >= iou_threshold
    ignored = hit & ~keep[best]
    recall_hit = hit & keep[best]
    first = np.zeros(n, bool)
    idx = np.flatnonzero(recall_hit)
    _, first_of_box = np.unique(best[idx], return_index=True)
    first[idx[first_of_box]] = True
    return ~ignored, np.cumsum(first).astype(np.int64)


def thresholds(num: int = NUM_THRESHOLDS) -> np.ndarray:
    """The PR curve's score thresholds, ``1 - t / num`` for t = 1..num (falling), computed
    as the official tool does so that a normalised score on a boundary lands the same way."""
    return 1.0 - np.arange(1, num + 1, dtype=np.float64) / num


def image_pr(scores, counted, recalled, num: int = NUM_THRESHOLDS) -> np.ndarray:
    """Per-threshold counts of one image: float64 [num, 2] = (counted predictions, recalled
    kept faces) among the predictions scoring >= each threshold. ``scores`` are normalised
    and in descending order, ``counted``/``recalled`` come from :func:`match_image`."""
    scores = np.asarray(scores, np.float64).reshape(-1)
    out = np.zeros((num, 2))
    if scores.size == 0:
        return out
    # Predictions are sorted, so those >= a threshold are a prefix of length k.
    k = np.searchsorted(-scores, -thresholds(num), side="right")
    some = k > 0
    proposals = np.cumsum(np.asarray(counted, bool))
    out[some, 0] = proposals[k[some] - 1]
    out[some, 1] = np.asarray(recalled)[k[some] - 1]
    return out


def normalize_scores(score_lists: Sequence[np.ndarray]) -> List[np.ndarray]:
    """Scores of all images mapped to ``(s - min) / (max - min)`` over all of them (float64).
    Where every score is equal, all become 1 (the official tool would divide by zero)."""
    nonempty = [np.asarray(s, np.float64).reshape(-1) for s in score_lists if len(s)]
    if not nonempty:
        return [np.zeros(0) for _ in score_lists]
    lo = min(s.min() for s in nonempty)
    hi = max(s.max() for s in nonempty)
    out = []
    for s in score_lists:
        s = np.asarray(s, np.float64).reshape(-1)
        out.append(np.ones_like(s) if hi == lo else (s - lo) / (hi - lo))
    return out


def voc_ap(recall, precision) -> float:
    """VOC all-point AP: area under the monotone envelope of precision over recall. Inputs
    are ordered by falling threshold (recall non-decreasing)."""
    mrec = np.concatenate(([0.0], np.asarray(recall, np.float64), [1.0]))
    mpre = np.concatenate(([0.0], np.asarray(precision, np.float64), [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def evaluate(predictions, ground_truth: Sequence[GtImage], *, settings=SETTINGS,
             iou_threshold: float = IOU_THRESHOLD, num_thresholds: int = NUM_THRESHOLDS,
             pixel: float = 1.0) -> Dict[str, SettingResult]:
    """AP per setting of predictions against ground truth, by the official protocol.

    Args:
        predictions: one ``(boxes, scores)`` per image of ``ground_truth``: boxes [N, 4]
            corners x1, y1, x2, y2 in the ground truth's (original) frame, scores [N], in any
            order and on any scale (they are sorted and normalised here).
        ground_truth: the images' :class:`GtImage`.
        settings: names of the keep-lists to score.
        iou_threshold, num_thresholds, pixel: protocol constants (official: 0.5, 1000, 1).

    Returns:
        setting -> :class:`SettingResult`.

    Raises:
        ValueError: predictions and ground truth differ in length.
    """
    if len(predictions) != len(ground_truth):
        raise ValueError(f"expected one prediction per ground-truth image ({len(ground_truth)}), "
                         f"got {len(predictions)}")
    ordered = []
    for boxes, scores in predictions:
        scores = np.asarray(scores, np.float64).reshape(-1)
        order = np.argsort(-scores, kind="stable")
        ordered.append((np.asarray(boxes, np.float64).reshape(-1, 4)[order], scores[order]))
    norm = normalize_scores([s for _, s in ordered])
    results = {}
    for setting in settings:
        counts = np.zeros((num_thresholds, 2))
        faces = 0
        for (boxes, _), scores, gt in zip(ordered, norm, ground_truth):
            keep = gt.keep[setting]
            faces += int(keep.sum())
            if len(gt.boxes) == 0 or len(boxes) == 0:
                continue
            counted, recalled = match_image(boxes, xywh_to_corners(gt.boxes), keep,
                                            iou_threshold=iou_threshold, pixel=pixel)
            counts += image_pr(scores, counted, recalled, num_thresholds)
        # No counted proposal at a threshold means no recall there either: precision 0
        # leaves the envelope and the AP as the official tool has them.
        precision = np.divide(counts[:, 1], counts[:, 0], out=np.zeros(num_thresholds),
                              where=counts[:, 0] > 0)
        recall = counts[:, 1] / faces if faces else np.zeros(num_thresholds)
        results[setting] = SettingResult(voc_ap(recall, precision), faces, precision, recall)
    return results


def load_ground_truth(data_dir, limit: Optional[int] = None) -> List[GtImage]:
    """Reads ``gt_416.jsonl`` of a WIDER-val416 folder (see ../shared/data/wider/val416).

    Raises:
        FileNotFoundError: the folder, its ground truth or an image it names is missing.
        ValueError: a malformed line.
    """
    root = Path(data_dir)
    path = root / GT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {GT_FILE} in {str(root)!r} (expected a WIDER-val416 folder)")
    images = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        if limit is not None and len(images) >= limit:
            break
        try:
            rec = json.loads(line)
            boxes = np.asarray(rec["boxes_xywh_orig"], np.float64).reshape(-1, 4)
            keep = {s: np.asarray(rec[f"in_{s}"], bool).reshape(-1) for s in SETTINGS}
            scale = tuple(float(v) for v in rec["scale_xy"])
            size = tuple(int(v) for v in rec["orig_wh"])
            image = root / rec["image"]
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}:{n}: malformed ground truth ({e})") from None
        if any(k.shape[0] != boxes.shape[0] for k in keep.values()) or len(scale) != 2 \
                or len(size) != 2:
            raise ValueError(f"{path}:{n}: expected one in_easy/in_medium/in_hard flag per box, "
                             "scale_xy (sx, sy) and orig_wh (W, H)")
        if not image.is_file():
            raise FileNotFoundError(f"image not found: {image}")
        images.append(GtImage(image, boxes, scale, size, keep))
    return images


def detect_all(detector, ground_truth: Sequence[GtImage], *, unstretch: bool = False,
               progress: Optional[Callable[[int, int], None]] = None):
    """Runs ``detector`` on each image -> ``(boxes, scores)`` per image, boxes mapped into
    the ground truth's original frame.

    With ``unstretch`` each image is first resized (bilinear) back to its original size, so
    the detector sees undistorted faces; its boxes are then already in the original frame.
    Otherwise the detector sees the stretched image and its boxes are mapped by
    ``1 / scale_xy``.
    """
    from picoface import imageio

    out = []
    for i, gt in enumerate(ground_truth):
        image = imageio.read_bgr(gt.image)
        if unstretch:
            import cv2

            image = cv2.resize(image, gt.original_size, interpolation=cv2.INTER_LINEAR)
            sx = image.shape[1] / gt.original_size[0]
            sy = image.shape[0] / gt.original_size[1]
        else:
            sx, sy = gt.scale_xy
        faces = detector(image)
        boxes = faces.boxes.astype(np.float64) / np.array([sx, sy, sx, sy])
        out.append((boxes, faces.scores.astype(np.float64)))
        if progress is not None:
            progress(i + 1, len(ground_truth))
    return out


def evaluate_detector(detector, data_dir, *, limit: Optional[int] = None,
                      unstretch: bool = False, progress: Optional[Callable[[int, int], None]] = None) -> dict:
    """WIDER-val416 AP of a :class:`picoface.FaceDetector`.

    Args:
        detector: called on each uint8 BGR image, returns :class:`picoface.results.Faces`.
            Give it a low score threshold (:data:`DEFAULT_SCORE_THRESHOLD`): AP needs the
            whole PR curve.
        data_dir: the val416 folder (gt_416.jsonl and images/).
        limit: evaluate only the first N images.
        unstretch: resize each image back to its original size first (see
            :func:`detect_all`): undoes the aspect distortion of val416, closer to how
            published full-resolution WIDER numbers are made. Needs OpenCV.
        progress: called with (done, total) after each image.

    Returns:
        ``{"easy": AP, "medium": AP, "hard": AP, "images": N}``.
    """
    gt = load_ground_truth(data_dir, limit)
    if not gt:
        raise ValueError(f"no images to evaluate in {str(data_dir)!r}")
    results = evaluate(detect_all(detector, gt, unstretch=unstretch, progress=progress), gt)
    report = {s: r.ap for s, r in results.items()}
    report["images"] = len(gt)
    return report
