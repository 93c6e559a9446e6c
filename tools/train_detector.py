"""Train one of the project's own detectors (models/own_detector.py) on pseudo-labelled
images: distillation from a teacher's boxes, scores and 5 points (tools/pseudo_label.py).

    python tools/train_detector.py --labels /tmp/owndet/labels.jsonl --variant extd_tiny \\
        --steps 6000 --out /tmp/owndet/run1            # checkpoints + train.log there
    python tools/train_detector.py ... --out /tmp/owndet/run1 --resume   # continue

Recipe (models/README.md has the reasoning):

* Batches of ``--batch`` crops of ``--size`` x ``--size``, each a 2x2 mosaic (p 0.5) or one
  image at a random scale (log-uniform), with aspect jitter (the val416 images are
  stretched), then multi-scale copy-paste of 1-8 confident faces cut from other images and
  pasted at 8-64 px where no face is (crowded scenes of small faces), horizontal flip (the
  5 points swap left/right), HSV jitter, occasional grey / blur.
* Label assignment per level: a face of size sqrt(w h) belongs to stride 8 below 64 px,
  16 in [32, 128), 32 from 64 px; its positive cells are those whose anchor point lies
  within one stride of the face centre (the nearest one always). A cell claimed by two
  faces goes to the smaller. Cells in the teacher's low-score boxes (ignore regions) and
  faces under ``MIN_FACE`` px are left out of the classification losses.
* Loss: objectness BCE over all cells, class quality as a varifocal loss towards the IoU
  of the predicted box (score = sqrt(cls * obj), as the yunet head decodes), EIoU on the
  decoded boxes, smooth-L1 on the 5 points in stride units, all normalised by the number
  of positive cells.
* AdamW, linear warm-up then cosine decay, weight EMA (the exported weights), seeded, a
  checkpoint every ``--save-every`` steps (``--resume`` continues bit-exactly: every batch
  is generated from ``(seed, step)``), quick WIDER-val416 AP on a subset every
  ``--eval-every`` steps (monitoring only: never used to pick a checkpoint).
"""

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models import own_detector as od  # noqa: E402

log = logging.getLogger("train_detector")

# Size ranges (sqrt(w h), px) of each stride's faces; neighbours overlap so that a face
# at a boundary is learned by both levels.
LEVEL_RANGES = {8: (0.0, 64.0), 16: (32.0, 128.0), 32: (64.0, 1e9)}
CENTRE_RADIUS = 1.0  # in strides
MIN_FACE = 4.0  # px: smaller faces become ignore regions
POSITIVE_VISIBLE = 0.6  # a cropped face with less of its box left becomes an ignore region


# --------------------------------------------------------------------------- data

class Record:
    __slots__ = ("image", "source", "faces", "ignore")

    def __init__(self, rec):
        self.image = rec["image"]
        self.source = rec["source"]
        f = np.asarray(rec["faces"], np.float32).reshape(-1, 16)
        self.faces = f
        self.ignore = np.asarray(rec["ignore"], np.float32).reshape(-1, 4)


def load_records(path) -> List[Record]:
    recs = [Record(json.loads(l)) for l in Path(path).read_text().splitlines() if l.strip()]
    val = [r.image for r in recs if "val416" in r.image]
    if val:
        raise ValueError(f"labels include WIDER-val416 images ({val[0]}): never train on them")
    return recs


class Sample:
    """An image being augmented with its labels in its own pixels: faces [N, 16] as
    (x1, y1, x2, y2, score, 10 point coords, has_points), ignore [M, 4]."""

    def __init__(self, image, faces, ignore):
        self.image, self.faces, self.ignore = image, faces, ignore


def _read(path, cache: Dict[str, np.ndarray]):
    import cv2
    img = cache.get(path)
    if img is None:
        img = cv2.imread(path)
        if img is None:
            raise FileNotFoundError(path)
        if len(cache) < 600:  # the full-size WIDER images are the slow ones to decode
            if max(img.shape[:2]) > 600:
                cache[path] = img
    return img


def _scale_labels(faces, ignore, sx, sy, dx, dy):
    f = faces.copy()
    f[:, [0, 2]] = f[:, [0, 2]] * sx + dx
    f[:, [1, 3]] = f[:, [1, 3]] * sy + dy
    f[:, 5:15:2] = f[:, 5:15:2] * sx + dx
    f[:, 6:15:2] = f[:, 6:15:2] * sy + dy
    g = ignore.copy()
    g[:, [0, 2]] = g[:, [0, 2]] * sx + dx
    g[:, [1, 3]] = g[:, [1, 3]] * sy + dy
    return f, g


def _paste(canvas, img, faces, ignore, sx, sy, dx, dy, region):
    """Resizes ``img`` by (sx, sy), places its origin at (dx, dy) of ``canvas`` clipped to
    ``region`` (x0, y0, x1, y1); returns its labels in canvas pixels, clipped to region."""
    import cv2
    h, w = img.shape[:2]
    nw, nh = max(1, int(round(w * sx))), max(1, int(round(h * sy)))
    interp = cv2.INTER_AREA if sx * sy < 0.5 else cv2.INTER_LINEAR
    small = cv2.resize(img, (nw, nh), interpolation=interp)
    sx, sy = nw / w, nh / h
    x0, y0, x1, y1 = region
    cx0, cy0 = max(x0, dx), max(y0, dy)
    cx1, cy1 = min(x1, dx + nw), min(y1, dy + nh)
    if cx1 <= cx0 or cy1 <= cy0:
        return np.zeros((0, 16), np.float32), np.zeros((0, 4), np.float32)
    canvas[cy0:cy1, cx0:cx1] = small[cy0 - dy:cy1 - dy, cx0 - dx:cx1 - dx]
    f, g = _scale_labels(faces, ignore, sx, sy, dx, dy)
    return _clip(f, g, (cx0, cy0, cx1, cy1))


def _clip(faces, ignore, region):
    x0, y0, x1, y1 = region
    area = lambda b: np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    full = area(faces)
    c = faces.copy()
    c[:, [0, 2]] = np.clip(c[:, [0, 2]], x0, x1)
    c[:, [1, 3]] = np.clip(c[:, [1, 3]], y0, y1)
    vis = area(c) / np.maximum(full, 1e-6)
    keep = vis >= POSITIVE_VISIBLE
    # Points outside the visible region are unreliable targets.
    pts_in = ((c[:, 5:15:2] >= x0) & (c[:, 5:15:2] < x1) & (c[:, 6:15:2] >= y0) &
              (c[:, 6:15:2] < y1)).all(1)
    c[~pts_in, 15] = 0.0
    g = ignore.copy()
    g[:, [0, 2]] = np.clip(g[:, [0, 2]], x0, x1)
    g[:, [1, 3]] = np.clip(g[:, [1, 3]], y0, y1)
    partial = c[~keep & (vis > 0.05), :4]
    g = np.concatenate([g, partial]) if len(partial) else g
    g = g[area(g) > 0]
    return c[keep], g


class Augmenter:
    """Builds training crops from records (see the module docstring for the recipe)."""

    def __init__(self, records: List[Record], size: int, mosaic: float = 0.5,
                 paste: float = 0.5):
        self.records, self.size = records, size
        self.mosaic, self.paste_p = mosaic, paste
        self.cache: Dict[str, np.ndarray] = {}
        # Confident, large, fully labelled faces to cut and paste small.
        self.donors = [(i, j) for i, r in enumerate(records) for j, f in enumerate(r.faces)
                       if f[4] >= 0.8 and f[15] > 0 and min(f[2] - f[0], f[3] - f[1]) >= 40]
        # Crowded WIDER scenes are rare among the CelebA portraits: sample them more.
        weights = np.array([4.0 if r.source.startswith("wider") else
                            1.0 for r in records])
        self.p = weights / weights.sum()

    def _pick(self, rng) -> Record:
        return self.records[rng.choice(len(self.records), p=self.p)]

    def _scale(self, rng, rec, target):
        """(sx, sy): the longer side to ``target`` px with aspect jitter."""
        img = _read(rec.image, self.cache)
        h, w = img.shape[:2]
        s = target / max(h, w)
        a = math.exp(rng.uniform(-0.3, 0.3))
        return img, s * a, s / a

    def sample(self, rng) -> Sample:
        S = self.size
        canvas = np.full((S, S, 3), 114, np.uint8)
        faces, ignore = [], []
        if rng.random() < self.mosaic:
            cx, cy = int(rng.uniform(0.3, 0.7) * S), int(rng.uniform(0.3, 0.7) * S)
            quads = [(0, 0, cx, cy), (cx, 0, S, cy), (0, cy, cx, S), (cx, cy, S, S)]
            for q in quads:
                rec = self._pick(rng)
                qw, qh = q[2] - q[0], q[3] - q[1]
                target = max(qw, qh) * math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
                img, sx, sy = self._scale(rng, rec, target)
                nw, nh = img.shape[1] * sx, img.shape[0] * sy
                # Anchor the image at the mosaic centre corner, shifted at random.
                dx = int(q[0] + rng.uniform(min(0, qw - nw), max(0, qw - nw)))
                dy = int(q[1] + rng.uniform(min(0, qh - nh), max(0, qh - nh)))
                f, g = _paste(canvas, img, rec.faces, rec.ignore, sx, sy, dx, dy, q)
                faces.append(f)
                ignore.append(g)
        else:
            rec = self._pick(rng)
            target = S * math.exp(rng.uniform(math.log(0.6), math.log(3.0)))
            img, sx, sy = self._scale(rng, rec, target)
            nw, nh = img.shape[1] * sx, img.shape[0] * sy
            dx = int(rng.uniform(min(0, S - nw), max(0, S - nw)))
            dy = int(rng.uniform(min(0, S - nh), max(0, S - nh)))
            f, g = _paste(canvas, img, rec.faces, rec.ignore, sx, sy, dx, dy, (0, 0, S, S))
            faces.append(f)
            ignore.append(g)
        faces = np.concatenate(faces)
        ignore = np.concatenate(ignore)
        if self.donors and rng.random() < self.paste_p:
            faces = self._copy_paste(rng, canvas, faces, ignore)
        return self._finish(rng, Sample(canvas, faces, ignore))

    def _copy_paste(self, rng, canvas, faces, ignore):
        import cv2
        S = self.size
        taken = np.concatenate([faces[:, :4], ignore[:, :4]])
        new = []
        for _ in range(int(rng.integers(1, 9))):
            i, j = self.donors[rng.integers(len(self.donors))]
            rec = self.records[i]
            f = rec.faces[j]
            img = _read(rec.image, self.cache)
            w, h = f[2] - f[0], f[3] - f[1]
            # Cut with a margin of context, from a region holding no other face.
            m = 0.25
            x0, y0 = int(max(0, f[0] - m * w)), int(max(0, f[1] - m * h))
            x1, y1 = int(min(img.shape[1], f[2] + m * w)), int(min(img.shape[0], f[3] + m * h))
            others = np.delete(rec.faces, j, 0)
            cut = np.array([[x0, y0, x1, y1]], np.float32)
            if len(others) and _iou_any(cut, others[:, :4]):
                continue
            size = math.exp(rng.uniform(math.log(8), math.log(64)))
            s = size / math.sqrt(w * h)
            a = math.exp(rng.uniform(-0.3, 0.3))
            sx, sy = s * a, s / a
            pw, ph = int(round((x1 - x0) * sx)), int(round((y1 - y0) * sy))
            if pw < 3 or ph < 3 or pw >= S or ph >= S:
                continue
            px, py = int(rng.integers(0, S - pw)), int(rng.integers(0, S - ph))
            box = np.array([[px, py, px + pw, py + ph]], np.float32)
            if len(taken) and _iou_any(box, taken, any_overlap=True):
                continue
            patch = cv2.resize(img[y0:y1, x0:x1], (pw, ph), interpolation=cv2.INTER_AREA)
            canvas[py:py + ph, px:px + pw] = patch
            sx, sy = pw / (x1 - x0), ph / (y1 - y0)
            g, _ = _scale_labels(f[None], np.zeros((0, 4), np.float32), sx, sy,
                                 px - x0 * sx, py - y0 * sy)
            new.append(g)
            taken = np.concatenate([taken, box])
        return np.concatenate([faces] + new) if new else faces

    def _finish(self, rng, s: Sample) -> Sample:
        import cv2
        img, faces, ignore = s.image, s.faces, s.ignore
        if rng.random() < 0.5:
            img, faces, ignore = hflip(img, faces, ignore)
        img = np.ascontiguousarray(img)
        # HSV jitter (YOLO-style gains).
        gains = rng.uniform(-1, 1, 3) * np.array([0.015, 0.6, 0.35]) + 1
        hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV).astype(np.float32)
        hsv[..., 0] = (hsv[..., 0] * gains[0]) % 180
        hsv[..., 1:] = np.clip(hsv[..., 1:] * gains[1:], 0, 255)
        img = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)
        if rng.random() < 0.05:
            img = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        if rng.random() < 0.1:
            img = cv2.GaussianBlur(img, (3, 3), rng.uniform(0.3, 1.0))
        small = np.minimum(faces[:, 2] - faces[:, 0], faces[:, 3] - faces[:, 1]) < MIN_FACE
        ignore = np.concatenate([ignore, faces[small, :4]])
        return Sample(img, faces[~small], ignore)


def hflip(img, faces, ignore):
    """Mirror image and labels: x -> W - x, and the points' left / right roles swap (the
    image-left eye stays first, as the yunet layout orders them)."""
    W = img.shape[1]
    faces = faces.copy()
    faces[:, [0, 2]] = W - faces[:, [2, 0]]
    pts = faces[:, 5:15].reshape(-1, 5, 2).copy()
    pts[:, :, 0] = W - pts[:, :, 0]
    faces[:, 5:15] = pts[:, list(od.FLIP_ORDER)].reshape(-1, 10)
    ignore = ignore.copy()
    ignore[:, [0, 2]] = W - ignore[:, [2, 0]]
    return img[:, ::-1], faces, ignore


def _iou_any(a, b, any_overlap=False) -> bool:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    return bool((inter > 0).any()) if any_overlap else bool((inter > 1.0).any())


# --------------------------------------------------------------------------- assignment

def assign(faces: np.ndarray, ignore: np.ndarray, height: int, width: int) -> Dict[str, np.ndarray]:
    """Targets of one image over all levels' cells (strides 8, 16, 32 concatenated, cells
    row-major, anchor point of cell (c, r) at (c s, r s), as the yunet head decodes).

    Returns ``pos`` bool [P], ``ignore`` bool [P] (left out of the score losses), ``face``
    int [P] (index into ``faces`` of a positive, -1 else)."""
    pts, strides = [], []
    for s in od.STRIDES:
        gh, gw = -(-height // s), -(-width // s)
        ys, xs = np.mgrid[0:gh, 0:gw]
        pts.append(np.stack([xs.ravel() * s, ys.ravel() * s], 1).astype(np.float32))
        strides.append(np.full(gh * gw, s, np.float32))
    pts = np.concatenate(pts)
    stride = np.concatenate(strides)
    P = len(pts)
    face = np.full(P, -1, np.int64)
    best_area = np.full(P, np.inf, np.float32)
    for k, f in enumerate(faces):
        w, h = f[2] - f[0], f[3] - f[1]
        size = math.sqrt(max(w * h, 0.0))
        cx, cy = (f[0] + f[2]) / 2, (f[1] + f[3]) / 2
        area = w * h
        for s in od.STRIDES:
            lo, hi = LEVEL_RANGES[s]
            if not lo <= size < hi:
                continue
            lvl = stride == s
            d = np.maximum(np.abs(pts[:, 0] - cx), np.abs(pts[:, 1] - cy))
            cand = lvl & (d <= CENTRE_RADIUS * s)
            nearest = np.flatnonzero(lvl)[np.argmin(np.where(lvl, (pts[:, 0] - cx) ** 2 +
                                                            (pts[:, 1] - cy) ** 2, np.inf)[lvl])]
            cand[nearest] = True
            take = cand & (area < best_area)
            face[take] = k
            best_area[take] = area
    pos = face >= 0
    ign = np.zeros(P, bool)
    for g in ignore:
        ign |= (pts[:, 0] >= g[0]) & (pts[:, 0] <= g[2]) & (pts[:, 1] >= g[1]) & (pts[:, 1] <= g[3])
    ign &= ~pos
    return {"pos": pos, "ignore": ign, "face": face, "points": pts, "stride": stride}


def collate(samples: List[Sample]):
    """A batch: images [B, 3, S, S] float 0..255 BGR, and flat targets over B x P cells."""
    S = samples[0].image.shape[0]
    imgs = torch.from_numpy(np.stack([s.image for s in samples]).transpose(0, 3, 1, 2).copy()).float()
    pos, ign, boxes, kps, kmask = [], [], [], [], []
    for s in samples:
        a = assign(s.faces, s.ignore, S, S)
        f = s.faces[np.maximum(a["face"], 0)] if len(s.faces) else np.zeros((len(a["pos"]), 16), np.float32)
        pos.append(a["pos"])
        ign.append(a["ignore"])
        boxes.append(f[:, :4])
        kps.append(f[:, 5:15])
        kmask.append(a["pos"] & (f[:, 15] > 0))
    t = lambda xs, dt: torch.from_numpy(np.concatenate(xs).astype(dt))
    return imgs, {"pos": t(pos, bool), "ignore": t(ign, bool), "boxes": t(boxes, np.float32),
                  "kps": t(kps, np.float32), "kps_mask": t(kmask, bool),
                  "points": torch.from_numpy(np.tile(a["points"], (len(samples), 1))),
                  "stride": torch.from_numpy(np.tile(a["stride"], len(samples)))}


class BatchStream(torch.utils.data.Dataset):
    """Batch ``step`` is a pure function of (seed, step): resuming repeats nothing and
    skips nothing, whatever worker made it."""

    def __init__(self, augmenter: Augmenter, batch: int, seed: int):
        self.aug, self.batch, self.seed = augmenter, batch, seed

    def __len__(self):
        return 1 << 30

    def __getitem__(self, step):
        rng = np.random.default_rng([self.seed, step])
        return collate([self.aug.sample(rng) for _ in range(self.batch)])


# --------------------------------------------------------------------------- loss

def flatten_outputs(out: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Training outputs {name_S: [B, H, W, C]} -> {name: [B * P, C]}, levels concatenated
    per image (the order of :func:`assign`)."""
    res = {}
    for name, width in od.OUTPUTS:
        parts = [out[f"{name}_{s}"].reshape(out[f"{name}_{s}"].shape[0], -1, width) for s in od.STRIDES]
        res[name] = torch.cat(parts, 1).reshape(-1, width)
    return res


def decode_boxes(bbox, points, stride):
    cx = points[:, 0] + bbox[:, 0] * stride
    cy = points[:, 1] + bbox[:, 1] * stride
    w = torch.exp(bbox[:, 2].clamp(-6, 6)) * stride
    h = torch.exp(bbox[:, 3].clamp(-6, 6)) * stride
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)


def eiou_loss(pred, target, eps=1e-7):
    """EIoU (Zhang et al. 2021): 1 - IoU + centre distance and width / height differences
    over the enclosing box's diagonal / sides. Also returns the IoU."""
    lt = torch.max(pred[:, :2], target[:, :2])
    rb = torch.min(pred[:, 2:], target[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    wp, hp = pred[:, 2] - pred[:, 0], pred[:, 3] - pred[:, 1]
    wt, ht = target[:, 2] - target[:, 0], target[:, 3] - target[:, 1]
    iou = inter / (wp * hp + wt * ht - inter + eps)
    elt = torch.min(pred[:, :2], target[:, :2])
    erb = torch.max(pred[:, 2:], target[:, 2:])
    cw, ch = erb[:, 0] - elt[:, 0], erb[:, 1] - elt[:, 1]
    dc = ((pred[:, :2] + pred[:, 2:]) / 2 - (target[:, :2] + target[:, 2:]) / 2).pow(2).sum(1)
    loss = 1 - iou + dc / (cw ** 2 + ch ** 2 + eps) + (wp - wt) ** 2 / (cw ** 2 + eps) + \
        (hp - ht) ** 2 / (ch ** 2 + eps)
    return loss, iou


WEIGHTS = {"obj": 1.0, "cls": 1.0, "box": 5.0, "kps": 0.5}


def compute_loss(out: Dict[str, torch.Tensor], tgt: Dict[str, torch.Tensor]):
    o = flatten_outputs(out)
    pos, valid = tgt["pos"], ~tgt["ignore"]
    npos = max(int(pos.sum()), 1)
    losses = {}
    obj_t = pos.float()
    losses["obj"] = F.binary_cross_entropy_with_logits(o["obj"][valid, 0], obj_t[valid],
                                                       reduction="sum") / npos
    q = torch.zeros_like(obj_t)
    if pos.any():
        pts, st = tgt["points"][pos], tgt["stride"][pos]
        pred = decode_boxes(o["bbox"][pos], pts, st)
        l_box, iou = eiou_loss(pred, tgt["boxes"][pos])
        losses["box"] = l_box.sum() / npos
        q[pos] = iou.detach().clamp(0, 1)
        km = tgt["kps_mask"][pos]
        if km.any():
            k_t = (tgt["kps"][pos][km].reshape(-1, 5, 2) - pts[km][:, None]) / st[km][:, None, None]
            losses["kps"] = F.smooth_l1_loss(o["kps"][pos][km].reshape(-1, 5, 2), k_t,
                                             beta=1.0 / 9, reduction="sum") / npos / 5
        else:
            losses["kps"] = o["kps"].sum() * 0
    else:
        losses["box"] = o["bbox"].sum() * 0
        losses["kps"] = o["kps"].sum() * 0
    # Varifocal loss (Zhang et al. 2021): positives towards their IoU, weighted by it;
    # negatives down-weighted by their own confidence.
    logit = o["cls"][valid, 0]
    p = torch.sigmoid(logit).detach()
    qt = q[valid]
    w = torch.where(qt > 0, qt, 0.75 * p.pow(2))
    losses["cls"] = (F.binary_cross_entropy_with_logits(logit, qt, reduction="none") * w).sum() / npos
    total = sum(WEIGHTS[k] * v for k, v in losses.items())
    return total, {k: float(v.detach()) for k, v in losses.items()}


# --------------------------------------------------------------------------- evaluation

class TorchDetector:
    """A PyTorch model behind the interface ``picoface.eval_wider`` needs (image -> Faces),
    decoded by the same C++ code as the shipped .pface."""

    def __init__(self, model, score_threshold=0.02, nms_threshold=0.4):
        self.model, self.score, self.nms = model, score_threshold, nms_threshold

    def __call__(self, image):
        from picoface import _core
        from picoface.heads import HEADS
        from picoface.results import Faces
        h, w = image.shape[:2]
        H, W = -(-h // 32) * 32, -(-w // 32) * 32
        x = np.zeros((1, 3, H, W), np.float32)
        x[0, :, :h, :w] = image.transpose(2, 0, 1)
        with torch.no_grad():
            outs = self.model(torch.from_numpy(x))
        outs = {n: t.numpy() for n, t in zip(od.OUTPUT_NAMES, outs)}
        boxes, scores, lms = HEADS["yunet"].decode(outs, W, H, self.score)
        box = _core.letterbox(w, h, W, H, "none")
        boxes, scores, lms = _core.finish_detections(boxes, scores, lms, box, self.nms, "greedy",
                                                     0.5, self.score, 5000, 0)
        return Faces(boxes, scores, lms)


def quick_eval(model, data_dir, limit):
    from picoface import eval_wider
    was_training = model.training
    model.eval()
    try:
        return eval_wider.evaluate_detector(TorchDetector(model), data_dir, limit=limit)
    finally:
        model.train(was_training)


# --------------------------------------------------------------------------- training

class Ema:
    """Exponential moving average of the weights (and BN buffers), warmed up so early
    steps are not averaged with the random initialisation for long."""

    def __init__(self, model, decay=0.999):
        import copy
        self.model = copy.deepcopy(model).eval()
        self.decay = decay
        for p in self.model.parameters():
            p.requires_grad_(False)

    def update(self, model, step):
        d = self.decay * (1 - math.exp(-step / 1000.0))
        with torch.no_grad():
            for e, m in zip(self.model.state_dict().values(), model.state_dict().values()):
                if e.dtype.is_floating_point:
                    e.mul_(d).add_(m.detach(), alpha=1 - d)
                else:
                    e.copy_(m)


def lr_at(step, total, base, warmup, progress=None):
    """Linear warm-up over ``warmup`` steps, then cosine to 5 % of ``base`` over the rest of
    the steps, or over ``progress`` in [0, 1] (the fraction of a time budget spent) when
    given."""
    if step < warmup:
        return base * (0.1 + 0.9 * step / warmup)
    t = (step - warmup) / max(1, total - warmup) if progress is None else progress
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def optimizer_step(model, ema, opt, loss, lr: float, step: int, clip: float = 10.0) -> int:
    """One update at learning rate ``lr``: backward, the model's gradient norm clipped at
    ``clip``, AdamW step, EMA update; returns the next step number."""
    for g in opt.param_groups:
        g["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    ema.update(model, step + 1)
    return step + 1


def make_optimizer(model, lr, wd):
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": wd},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr)


def save(path, model, ema, opt, step, args, train_seconds=0.0):
    tmp = Path(str(path) + ".tmp")
    torch.save({"variant": args.variant, "step": step, "seed": args.seed,
                "train_seconds": train_seconds,
                "model": model.state_dict(), "ema": ema.model.state_dict(),
                "optimizer": opt.state_dict(), "args": vars(args),
                "torch_rng": torch.get_rng_state()}, tmp)
    tmp.replace(path)


def start_run(logger, args) -> Path:
    """Creates the run folder ``args.out``, logs ``logger`` to its train.log (and stdout
    with ``args.verbose``) and sets the torch threads; returns the folder."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    if args.verbose:
        logger.addHandler(logging.StreamHandler(sys.stdout))
    torch.set_num_threads(args.threads)
    return out


def resume(logger, ckpt_path, model, ema, opt, extra=None):
    """Loads a checkpoint into model, EMA, optimiser, torch's RNG and the ``extra`` modules
    (checkpoint key -> module, e.g. a recogniser's training heads) when it exists; returns
    (step, seconds trained), (0, 0.0) when there is none."""
    if not Path(ckpt_path).exists():
        return 0, 0.0
    ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    model.load_state_dict(ck["model"])
    for key, module in (extra or {}).items():
        module.load_state_dict(ck[key])
    ema.model.load_state_dict(ck["ema"])
    opt.load_state_dict(ck["optimizer"])
    torch.set_rng_state(ck["torch_rng"])
    start, spent = ck["step"], ck.get("train_seconds", 0.0)
    logger.info("resumed from %s at step %d (%.0f s trained)", ckpt_path, start, spent)
    return start, spent


def train(args) -> Path:
    out = start_run(log, args)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    model = od.build(args.variant)
    model.train()
    ema = Ema(model)
    opt = make_optimizer(model, args.lr, args.wd)
    ckpt_path = out / "last.pt"
    start, spent = resume(log, ckpt_path, model, ema, opt) if args.resume else (0, 0.0)
    records = load_records(args.labels)
    log.info("variant %s: %d parameters; %d labelled images, %d faces; args %s", args.variant,
             od.count_params(model), len(records), sum(len(r.faces) for r in records),
             json.dumps(vars(args)))
    stream = BatchStream(Augmenter(records, args.size), args.batch, args.seed)
    loader = torch.utils.data.DataLoader(
        stream, batch_size=None, sampler=range(start, args.steps), num_workers=args.workers,
        prefetch_factor=4 if args.workers else None, persistent_workers=False,
        worker_init_fn=_worker_init)
    t0 = time.time()
    run = {}
    step = start
    budget = args.minutes * 60.0 if args.minutes else None
    for imgs, tgt in loader:
        trained = spent + time.time() - t0
        if budget is not None and trained >= budget:
            log.info("time budget of %.0f min spent", args.minutes)
            save(ckpt_path, model, ema, opt, step, args, trained)
            break
        lr = lr_at(step, args.steps, args.lr, args.warmup,
                   None if budget is None else trained / budget)
        loss, parts = compute_loss(model(imgs), tgt)
        step = optimizer_step(model, ema, opt, loss, lr, step)
        for k, v in parts.items():
            run[k] = 0.98 * run.get(k, v) + 0.02 * v
        if step % args.log_every == 0 or step == args.steps:
            el = time.time() - t0
            log.info("step %d/%d lr %.2e loss %s npos %d | %.2f s/step", step, args.steps, lr,
                     " ".join(f"{k} {v:.3f}" for k, v in run.items()), int(tgt["pos"].sum()),
                     el / max(1, step - start))
        if step % args.save_every == 0 or step == args.steps:
            save(ckpt_path, model, ema, opt, step, args, spent + time.time() - t0)
        if args.eval_data and (step % args.eval_every == 0 or step == args.steps):
            t1 = time.time()
            ap = quick_eval(ema.model, args.eval_data, args.eval_limit)
            log.info("step %d quick WIDER-val416 (first %s images, EMA): easy %.3f medium %.3f "
                     "hard %.3f (%.0f s)", step, args.eval_limit, ap["easy"], ap["medium"],
                     ap["hard"], time.time() - t1)
    log.info("done at step %d in %.0f s", step, time.time() - t0)
    return ckpt_path


def _worker_init(_):
    import cv2
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def add_run_options(p, *, steps: int, batch: int, lr: float, wd: float, warmup: int,
                    threads: int, save_every: int) -> None:
    """The options every training tool here shares (run folder, schedule, seed, threads,
    checkpoints, logging, resume), with the tool's defaults."""
    p.add_argument("--out", required=True, help="run folder: last.pt and train.log")
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--minutes", type=float,
                   help="time budget: the cosine follows the fraction of it spent and training "
                        "stops when it is (for shared machines whose speed varies; --steps is "
                        "then an upper bound, and a resumed run is no longer bit-exact)")
    p.add_argument("--batch", type=int, default=batch)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--wd", type=float, default=wd)
    p.add_argument("--warmup", type=int, default=warmup)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=threads)
    p.add_argument("--save-every", type=int, default=save_every)
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--verbose", action="store_true", help="also log to stdout")


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--labels", required=True, help="tools/pseudo_label.py output (.jsonl)")
    p.add_argument("--variant", default="extd_tiny", choices=od.VARIANTS)
    add_run_options(p, steps=6000, batch=16, lr=4e-3, wd=5e-4, warmup=300, threads=2, save_every=200)
    p.add_argument("--size", type=int, default=320, help="square crop side (multiple of 32)")
    p.add_argument("--workers", type=int, default=1, help="data workers (processes)")
    p.add_argument("--eval-data", help="WIDER-val416 folder for quick monitoring AP")
    p.add_argument("--eval-every", type=int, default=1000)
    p.add_argument("--eval-limit", type=int, default=50)
    args = p.parse_args(argv)
    if args.size % 32:
        p.error("--size must be a multiple of 32")
    return args


if __name__ == "__main__":
    train(parse())
    sys.exit(0)
