"""Pseudo-label training images with a teacher detector (boxes, 5 points, scores).

    picoface convert ../shared/models/hpc203__scrfd-opencv/weights/scrfd_2.5g_kps.onnx \\
        --task detect --head scrfd -o /tmp/owndet/scrfd_2.5g.pface
    python tools/pseudo_label.py --teacher /tmp/owndet/scrfd_2.5g.pface \\
        --out /tmp/owndet/labels.jsonl                      # all default sources
    python tools/pseudo_label.py --teacher T.pface --check  # recall/precision on fullres12

Sources (all under ../shared/data, read in place, never copied): CelebA in-the-wild photos,
the 183 WIDER test images, the 10 *train* images of WIDER fullres12 (their 2 val images and
every val416 image are never labelled) and dlib's example photos. Output: one JSON line per
image, ``{"image", "source", "width", "height", "faces": [[x1, y1, x2, y2, score,
x0, y0, ... x4, y4, has_points], ...], "ignore": [[x1, y1, x2, y2], ...]}`` in the image's
pixels. Teacher detections with score >= ``--positive`` are faces; those between
``--low`` and ``--positive`` become ignore regions (the student is neither rewarded nor
punished there). On fullres12 the human boxes are the faces; a teacher detection matched
to one (IoU >= 0.5) lends it its 5 points, unmatched ones have ``has_points`` 0.

How a teacher is run (whole image, tiles, upscaling): see :class:`Teacher`.

Data terms: CelebA and WIDER FACE are for non-commercial research only; the labels file
is derived from them and stays outside the repository (see models/README.md).
"""

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATA = SHARED / "data"
log = logging.getLogger("pseudo_label")


def sources(shared_data: Path = DATA, celeba_every: int = 1) -> List[Tuple[str, Path, object]]:
    """(source name, image path, human boxes xywh or None) of every training image, the
    crowded WIDER scenes first; ``celeba_every`` keeps every Nth CelebA photo (its 239
    identities' portraits are repetitive, and labelling is the slow step on 2 cores)."""
    out = []
    for p in sorted((shared_data / "wider/test183/images").glob("*.jpg")):
        out.append(("wider_test", p, None))
    gt = shared_data / "wider/fullres12/gt.jsonl"
    if gt.exists():
        for line in gt.read_text().splitlines():
            rec = json.loads(line)
            if rec["split"] == "train":  # never the val images
                out.append(("wider_train", gt.parent / rec["image"], rec["boxes_xywh"]))
    for p in sorted((shared_data / "dlib_examples/faces").glob("*.jpg")):
        out.append(("dlib", p, None))
    for p in sorted((shared_data / "celeba/images").glob("*.jpg"))[::celeba_every]:
        out.append(("celeba", p, None))
    return out


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of corner boxes a [N, 4] x b [M, 4]."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2:] - x[:, :2], 0, None).prod(-1)
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        if order.size == 1:
            break
        rest = order[1:]
        order = rest[iou_matrix(boxes[i:i + 1], boxes[rest])[0] < iou]
    return np.asarray(keep, np.int64)


class Teacher:
    """A picoface detector at a low score threshold.

    A dynamic-size model runs on the whole image at its own resolution (longer side capped
    at ``max_side``) and, for images under ``upscale_below``, also 2x upscaled. A fixed-size
    model (the public SCRFD exports are 640x640) runs on the whole image letterboxed into
    its input and, for larger images, on overlapping input-sized tiles at the image's own
    resolution, so small faces are not lost to the downscale; tile detections touching an
    inner tile edge are dropped (cut faces), the rest merged by NMS."""

    def __init__(self, model: str, head: str = None, threads: int = 2, low: float = 0.3,
                 max_side: int = 1920, upscale_below: int = 480, overlap: int = 128):
        self.low, self.max_side, self.upscale_below = low, max_side, upscale_below
        self.overlap = overlap
        self.model, self.head, self.threads = model, head, threads
        self._cache: Dict[object, object] = {}
        self.fixed = self._detector(None)._fixed

    def _detector(self, size):
        from picoface import FaceDetector
        if size not in self._cache:
            self._cache[size] = FaceDetector(self.model, head=self.head, score_threshold=self.low,
                                             nms_threshold=0.4, input_size=size,
                                             threads=self.threads)
        return self._cache[size]

    def _run(self, image, size, scale=1.0):
        import cv2
        if scale != 1.0:
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        faces = self._detector(size)(image)
        return faces.boxes / scale, faces.scores, faces.landmarks.reshape(-1, 5, 2) / scale

    def _tiles(self, image):
        th_, tw = self.fixed[1], self.fixed[0]
        h, w = image.shape[:2]
        step_x, step_y = tw - self.overlap, th_ - self.overlap
        xs = list(range(0, max(w - tw, 0) + 1, step_x))
        ys = list(range(0, max(h - th_, 0) + 1, step_y))
        if xs[-1] + tw < w:
            xs.append(w - tw)
        if ys[-1] + th_ < h:
            ys.append(h - th_)
        out = []
        for y0 in ys:
            for x0 in xs:
                tile = np.ascontiguousarray(image[y0:y0 + th_, x0:x0 + tw])
                b, s, p = self._run(tile, self.fixed)
                th, tw_ = tile.shape[:2]
                inner = np.zeros(len(b), bool)
                if x0 > 0:
                    inner |= b[:, 0] <= 2
                if y0 > 0:
                    inner |= b[:, 1] <= 2
                if x0 + tw_ < w:
                    inner |= b[:, 2] >= tw_ - 2
                if y0 + th < h:
                    inner |= b[:, 3] >= th - 2
                keep = ~inner
                off = np.array([x0, y0], np.float32)
                out.append((b[keep] + np.tile(off, 2), s[keep], p[keep] + off))
        return out

    def __call__(self, image: np.ndarray):
        """-> boxes [N, 4], scores [N], points [N, 5, 2] in the image's pixels."""
        h, w = image.shape[:2]
        runs = []
        if self.fixed:
            runs.append(self._run(image, self.fixed))
            if w > self.fixed[0] or h > self.fixed[1]:
                runs += self._tiles(image)
        else:
            scales = [min(1.0, self.max_side / max(w, h))]
            if max(w, h) < self.upscale_below:
                scales.append(2.0)
            for s in scales:
                size = (int(np.ceil(w * s / 32) * 32), int(np.ceil(h * s / 32) * 32))
                runs.append(self._run(image, size, s))
        boxes, scores, points = (np.concatenate([r[i] for r in runs]) for i in range(3))
        if len(runs) > 1 and len(scores):
            keep = nms(boxes, scores, 0.4)
            boxes, scores, points = boxes[keep], scores[keep], points[keep]
        return boxes, scores, points


def label_image(teacher: Teacher, image: np.ndarray, human_xywh=None, positive: float = 0.5):
    """The record fields "faces" and "ignore" for one image (see the module docstring)."""
    boxes, scores, points = teacher(image)
    faces, ignore = [], []
    if human_xywh is not None:
        gt = np.asarray(human_xywh, np.float64).reshape(-1, 4).copy()
        gt[:, 2:] += gt[:, :2]
        m = iou_matrix(gt, boxes) if len(boxes) else np.zeros((len(gt), 0))
        used = set()
        for i, g in enumerate(gt):
            j = int(np.argmax(m[i])) if m.shape[1] else -1
            if j >= 0 and m[i, j] >= 0.5 and j not in used:
                used.add(j)
                faces.append([*map(float, g), 1.0, *map(float, points[j].reshape(-1)), 1.0])
            else:
                faces.append([*map(float, g), 1.0] + [0.0] * 10 + [0.0])
        # Teacher faces the annotators skipped: not a negative for the student.
        for j in range(len(boxes)):
            if j not in used and (m.shape[0] == 0 or m[:, j].max() < 0.3):
                ignore.append([float(v) for v in boxes[j]])
        return faces, ignore
    for b, s, p in zip(boxes, scores, points):
        if s >= positive:
            faces.append([*map(float, b), float(s), *map(float, p.reshape(-1)), 1.0])
        else:
            ignore.append([float(v) for v in b])
    return faces, ignore


def check(teachers: Dict[str, Teacher], shared_data: Path = DATA, thresholds=(0.3, 0.5, 0.7)):
    """Recall / precision (IoU 0.5) of each teacher, and of their union, against the human
    boxes of all 12 fullres12 images: the evidence for picking a teacher."""
    import cv2
    gt_path = shared_data / "wider/fullres12/gt.jsonl"
    recs = [json.loads(l) for l in gt_path.read_text().splitlines()]
    dets = {name: [] for name in teachers}
    gts = []
    times = {name: 0.0 for name in teachers}
    for rec in recs:
        img = cv2.imread(str(gt_path.parent / rec["image"]))
        g = np.asarray(rec["boxes_xywh"], np.float64).reshape(-1, 4)
        g[:, 2:] += g[:, :2]
        gts.append(g)
        for name, t in teachers.items():
            t0 = time.perf_counter()
            b, s, _ = t(img)
            times[name] += time.perf_counter() - t0
            dets[name].append((b, s))
    if len(teachers) > 1:
        union = []
        for i in range(len(recs)):
            b = np.concatenate([dets[n][i][0] for n in teachers])
            s = np.concatenate([dets[n][i][1] for n in teachers])
            k = nms(b, s, 0.4) if len(s) else np.zeros(0, np.int64)
            union.append((b[k], s[k]))
        dets["union"] = union
    report = {}
    for name, per_image in dets.items():
        row = {}
        for th in thresholds:
            tp = fp = total = 0
            for (b, s), g in zip(per_image, gts):
                b = b[s >= th]
                total += len(g)
                if len(b) == 0:
                    continue
                m = iou_matrix(b, g)
                matched = set()
                for i in np.argsort(-s[s >= th]):
                    j = int(np.argmax(m[i]))
                    if m[i, j] >= 0.5 and j not in matched:
                        matched.add(j)
                        tp += 1
                    else:
                        fp += 1
            row[f"recall@{th}"] = round(tp / total, 3)
            row[f"precision@{th}"] = round(tp / max(tp + fp, 1), 3)
        if name in times:
            row["seconds"] = round(times[name], 2)
        report[name] = row
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", action="append", required=True,
                   help=".pface (or ONNX with --head) teacher; repeat for --check")
    p.add_argument("--head", help="head of ONNX teachers")
    p.add_argument("--out", help="labels file to write (.jsonl, outside the repository)")
    p.add_argument("--data", default=str(DATA), help="the ../shared/data folder")
    p.add_argument("--low", type=float, default=0.3, help="lowest teacher score kept (ignore band)")
    p.add_argument("--positive", type=float, default=0.5, help="teacher score of a face")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--limit", type=int, help="label only the first N images (smoke tests)")
    p.add_argument("--every", type=int, default=1, help="label every Nth image (smoke tests)")
    p.add_argument("--celeba-every", type=int, default=1, help="keep every Nth CelebA photo")
    p.add_argument("--check", action="store_true", help="report teacher recall on fullres12")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    data = Path(args.data)
    if not data.exists():
        print(f"error: {data} not found (the ../shared material)", file=sys.stderr)
        return 1
    teachers = {Path(t).stem: Teacher(t, args.head, args.threads, args.low) for t in args.teacher}
    if args.check:
        print(json.dumps(check(teachers, data), indent=2))
        return 0
    if not args.out or len(teachers) != 1:
        p.error("labelling needs --out and exactly one --teacher")
    import cv2
    teacher = next(iter(teachers.values()))
    items = sources(data, args.celeba_every)[::args.every][:args.limit]
    t0 = time.perf_counter()
    faces_total = 0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as f:
        for n, (source, path, human) in enumerate(items, 1):
            img = cv2.imread(str(path))
            if img is None:
                log.warning("cannot read %s", path)
                continue
            faces, ignore = label_image(teacher, img, human, args.positive)
            faces_total += len(faces)
            f.write(json.dumps({"image": str(path), "source": source, "width": img.shape[1],
                                "height": img.shape[0], "faces": faces, "ignore": ignore}) + "\n")
            if n % 200 == 0 or n == len(items):
                log.info("%d/%d images, %d faces, %.1f s", n, len(items), faces_total,
                         time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
