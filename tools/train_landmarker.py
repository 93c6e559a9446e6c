"""Distil PFLD-68 into the project's own 68-point landmarker (models/landmarker.py).

    python tools/train_landmarker.py prepare --out /tmp/landmarks68/crops.npz   # once
    python tools/train_landmarker.py train --data /tmp/landmarks68/crops.npz \\
        --out /tmp/landmarks68/run1 --minutes 45 --threads 1     # last.pt + train.log there
    python tools/train_landmarker.py train ... --resume            # continue
    python tools/train_landmarker.py eval CHECKPOINT_OR_PFACE --data ...crops.npz

Recipe (models/README.md, picoface-lmk68, has the reasoning):

* ``prepare``: faces of CelebA, WIDER test183 and the LFW samples in ../shared found by the
  project's default detector (``picoface.FaceDetector()``, score >= 0.5, box side >= 32
  px). Each face is cut by the model's own crop policy (``pfld`` preset: square of
  1.1 x max(w, h) on the box centre) *with context*: the same centre, 160/112 times the
  side, at 160 px, so that the 112 px crop is exactly its centre and augmented crops see
  real pixels where they move. The teacher (PFLD, onnxruntime) runs once on the exact
  112 px crops; its points are the targets. A tenth of the *images* (by a hash of the path)
  is held out with all its faces: never trained on, used for the NME figures.
* ``train``: each sample is the context crop warped by a random similarity (scale
  ±10 %, rotation ±15 degrees, shift ±6 % of the crop: the spread of detector boxes and
  head poses) and a horizontal flip (p 0.5, the 68 points swap left / right by
  ``FLIP_68``) into 112 px; the teacher's points follow the same transform rather than
  re-running the teacher on the augmented crop (no teacher in the loop, and the targets
  stay consistent across augmentations of one face). Then colour jitter (brightness,
  contrast, saturation), occasional grey and blur, which leave the targets unchanged.
  Wing loss (Feng et al. 2018) on the points in crop pixels (w 10, epsilon 2): L1-like
  for large errors, log-shaped for the small ones the last accuracy is made of.
* AdamW, warm-up then cosine over the time budget, weight EMA (the exported weights),
  seeded; every batch is a pure function of (seed, step), so ``--resume`` repeats and
  skips nothing; a checkpoint every ``--save-every`` steps; held-out NME vs the teacher
  every ``--eval-every`` steps (monitoring only).
"""

import argparse
import hashlib
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models import landmarker as lm  # noqa: E402
from tools.train_detector import (Ema, add_run_options, lr_at, make_optimizer,  # noqa: E402
                                  optimizer_step, resume, save, start_run)

log = logging.getLogger("train_landmarker")

SHARED = Path(__file__).resolve().parents[2] / "shared"
SOURCES = {"celeba": "data/celeba/images", "wider_test183": "data/wider/test183/images",
           "lfw": "data/lfw_samples/images"}
TEACHER = "models/cunjian__pytorch_face_landmark/onnx/pfld.onnx"
MIN_SCORE = 0.5
MIN_SIDE = 32.0  # px: smaller faces would be upsampled 3x and more into a blur
MAX_FACES = 20  # per image, largest first: the crowd scenes would otherwise dominate
S = lm.INPUT_SIZE
CONTEXT = 160  # px of the cached crop; the model's crop is its central S x S
HELD_OUT = 10  # percent of images


def held_out(path: str) -> bool:
    """The split of an image: a stable hash of its name, ``HELD_OUT`` percent held out."""
    return int(hashlib.sha256(Path(path).name.encode()).hexdigest()[:8], 16) % 100 < HELD_OUT


# --------------------------------------------------------------------------- prepare

def teacher_points(session, crops_bgr: np.ndarray) -> np.ndarray:
    """PFLD's unit points [N, 68, 2] on uint8 BGR crops [N, S, S, 3], in its preset's
    convention (RGB / 255)."""
    x = np.ascontiguousarray(crops_bgr[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32) / 255.0
    name = session.get_inputs()[0].name
    out = np.concatenate([session.run(None, {name: x[i:i + 64]})[0] for i in range(0, len(x), 64)])
    return out.reshape(-1, lm.NUM_POINTS, 2).astype(np.float32)


def prepare(args) -> Path:
    import cv2
    import onnxruntime as ort

    import picoface
    from picoface.landmarks import PRESETS, crop_faces, crop_windows

    cv2.setNumThreads(1)
    spec = PRESETS["pfld"]
    shared = Path(args.shared)
    files = []
    for source, folder in SOURCES.items():
        found = sorted(p for p in (shared / folder).rglob("*") if p.suffix.lower() in (".jpg", ".png"))
        if not found:
            raise FileNotFoundError(f"no images in {shared / folder}")
        files += [(source, p) for p in found]
    detector = picoface.FaceDetector(threads=args.threads)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    teacher = ort.InferenceSession(str(shared / TEACHER), opts, providers=["CPUExecutionProvider"])
    context, rows = [], []
    t0 = time.time()
    for i, (source, path) in enumerate(files):
        image = cv2.imread(str(path))
        faces = detector(image)
        keep = [j for j in range(len(faces)) if faces.scores[j] >= MIN_SCORE and
                min(faces.boxes[j, 2] - faces.boxes[j, 0], faces.boxes[j, 3] - faces.boxes[j, 1]) >= MIN_SIDE]
        keep = sorted(keep, key=lambda j: -(faces.boxes[j, 2] - faces.boxes[j, 0]))[:MAX_FACES]
        if not keep:
            continue
        boxes = faces.boxes[keep]
        windows = crop_windows(boxes, spec.crop_policy, spec.crop_scale)
        wide = windows.copy()
        grow = CONTEXT / S
        wide[:, :2] -= windows[:, 2:] * (grow - 1) / 2
        wide[:, 2:] *= grow
        context.append(crop_faces(image, wide, CONTEXT))
        for j, b, w in zip(keep, boxes, windows):
            rows.append((source, str(path.relative_to(shared)), *b.tolist(), float(faces.scores[j]),
                         *w.tolist()))
        if (i + 1) % 200 == 0:
            log.info("prepare: %d/%d images, %d faces, %.0f s", i + 1, len(files), len(rows),
                     time.time() - t0)
    context = np.concatenate(context)
    m = (CONTEXT - S) // 2
    points = teacher_points(teacher, np.ascontiguousarray(context[:, m:m + S, m:m + S]))
    paths = np.array([r[1] for r in rows])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, context=context, teacher=points, path=paths,
             source=np.array([r[0] for r in rows]),
             box=np.float32([r[2:6] for r in rows]), score=np.float32([r[6] for r in rows]),
             window=np.float32([r[7:11] for r in rows]),
             held_out=np.array([held_out(p) for p in paths]))
    log.info("prepare: %d faces from %d images (%d held out) in %.0f s -> %s", len(rows),
             len(set(paths)), int(sum(held_out(p) for p in paths)), time.time() - t0, out)
    return out


# --------------------------------------------------------------------------- augmentation

def similarity(scale: float, angle_deg: float, shift, flip: bool) -> np.ndarray:
    """2x3 map from context pixels to crop pixels: about the context centre, ``scale`` and
    ``angle_deg``, then ``shift`` (crop pixels), then an optional mirror of the crop."""
    a = math.radians(angle_deg)
    c, s = scale * math.cos(a), scale * math.sin(a)
    half_c, half = (CONTEXT - 1) / 2, (S - 1) / 2
    m = np.array([[c, -s, 0.0], [s, c, 0.0]])
    m[:, 2] = np.array([half + shift[0], half + shift[1]]) - m[:, :2] @ [half_c, half_c]
    if flip:
        m = np.array([[-1.0, 0.0, S - 1.0], [0.0, 1.0, 0.0]]) @ np.vstack([m, [0, 0, 1]])
    return m


def transform_points(unit: np.ndarray, m: np.ndarray, flip: bool) -> np.ndarray:
    """Teacher points (unit coords of the central crop) through ``m``, as unit coords of the
    new crop, in mirror order when flipped."""
    ctx = unit * S + (CONTEXT - S) / 2
    new = ctx @ m[:, :2].T + m[:, 2]
    if flip:
        new = new[list(lm.FLIP_68)]
    return (new / S).astype(np.float32)


def augment(rng, context: np.ndarray, unit: np.ndarray):
    """One training crop (uint8 S x S x 3 BGR) and its targets (unit [68, 2])."""
    import cv2
    flip = bool(rng.random() < 0.5)
    m = similarity(math.exp(rng.uniform(-0.1, 0.1)), rng.uniform(-15, 15),
                   rng.uniform(-0.06, 0.06, 2) * S, flip)
    img = cv2.warpAffine(context, m, (S, S), flags=cv2.INTER_LINEAR, borderValue=0)
    pts = transform_points(unit, m, flip)
    x = img.astype(np.float32)
    x = (x - x.mean()) * rng.uniform(0.7, 1.3) + x.mean() + rng.uniform(-25, 25)
    grey = x.mean(2, keepdims=True)
    x = grey + (x - grey) * (0.0 if rng.random() < 0.05 else rng.uniform(0.6, 1.4))
    img = np.clip(x, 0, 255).astype(np.uint8)
    if rng.random() < 0.15:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.5))
    return img, pts


def to_tensor(crops_bgr: np.ndarray) -> torch.Tensor:
    """uint8 BGR [N, S, S, 3] -> the model's input (RGB / 255, NCHW)."""
    return torch.from_numpy(np.ascontiguousarray(crops_bgr[..., ::-1].transpose(0, 3, 1, 2))).float() / 255.0


class Batches:
    """Batch ``step`` is a pure function of (seed, step) over the training faces."""

    def __init__(self, context, teacher, index, batch: int, seed: int):
        self.context, self.teacher, self.index = context, teacher, index
        self.batch, self.seed = batch, seed

    def __call__(self, step: int):
        rng = np.random.default_rng([self.seed, step])
        pick = self.index[rng.integers(0, len(self.index), self.batch)]
        pairs = [augment(rng, self.context[i], self.teacher[i]) for i in pick]
        return to_tensor(np.stack([p[0] for p in pairs])), torch.from_numpy(np.stack([p[1] for p in pairs]))


# --------------------------------------------------------------------------- loss, eval

WING_W, WING_EPS = 10.0, 2.0


def wing_loss(pred_unit: torch.Tensor, target_unit: torch.Tensor) -> torch.Tensor:
    """Wing loss (Feng et al., CVPR 2018) per point coordinate in crop pixels, mean over the
    batch and points."""
    d = ((pred_unit - target_unit) * S).abs()
    c = WING_W - WING_W * math.log(1 + WING_W / WING_EPS)
    return torch.where(d < WING_W, WING_W * torch.log1p(d / WING_EPS), d - c).mean()


def predict(model, crops_bgr: np.ndarray, batch: int = 256) -> np.ndarray:
    """Unit points [N, 68, 2] of a PyTorch model on uint8 BGR crops."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = [model(to_tensor(crops_bgr[i:i + batch])).numpy() for i in range(0, len(crops_bgr), batch)]
    finally:
        model.train(was_training)
    return np.concatenate(out).reshape(-1, lm.NUM_POINTS, 2)


def central(context: np.ndarray) -> np.ndarray:
    """The model's S x S crops out of the cached context crops."""
    m = (CONTEXT - S) // 2
    return np.ascontiguousarray(context[:, m:m + S, m:m + S])


def held_out_nme(points_unit: np.ndarray, teacher_unit: np.ndarray) -> float:
    """Mean inter-ocular NME against the teacher's points (both in the same crop frame)."""
    from picoface.landmarks import nme
    return float(nme(points_unit, teacher_unit).mean())


# --------------------------------------------------------------------------- training

def load_data(path):
    with np.load(path) as z:
        data = {k: z[k] for k in z.files}
    return data


def train(args) -> Path:
    out = start_run(log, args)
    import cv2
    cv2.setNumThreads(1)
    torch.manual_seed(args.seed)
    data = load_data(args.data)
    train_idx = np.flatnonzero(~data["held_out"])
    val_idx = np.flatnonzero(data["held_out"])
    val_crops, val_teacher = central(data["context"][val_idx]), data["teacher"][val_idx]
    model = lm.build()
    model.init_mean_shape(data["teacher"][train_idx].mean(0))
    model.train()
    # ~2,500 steps in a 45-minute budget: average over the last few hundred, not thousand.
    ema = Ema(model, decay=0.998)
    opt = make_optimizer(model, args.lr, args.wd)
    ckpt_path = out / "last.pt"
    start, spent = resume(log, ckpt_path, model, ema, opt) if args.resume else (0, 0.0)
    log.info("picoface-lmk68: %d parameters, %.1f M multiply-adds; %d training faces, %d held "
             "out; args %s", lm.count_params(model), lm.count_mmacs(model), len(train_idx),
             len(val_idx), json.dumps(vars(args)))
    batches = Batches(data["context"], data["teacher"], train_idx, args.batch, args.seed)
    budget = args.minutes * 60.0 if args.minutes else None
    t0, run, step = time.time(), None, start
    while step < args.steps:
        trained = spent + time.time() - t0
        if budget is not None and trained >= budget:
            log.info("time budget of %.0f min spent", args.minutes)
            break
        lr = lr_at(step, args.steps, args.lr, args.warmup, None if budget is None else trained / budget)
        x, y = batches(step)
        loss = wing_loss(model(x).reshape(-1, lm.NUM_POINTS, 2), y)
        step = optimizer_step(model, ema, opt, loss, lr, step)
        v = float(loss.detach())
        run = v if run is None else 0.98 * run + 0.02 * v
        if step % args.log_every == 0:
            log.info("step %d lr %.2e wing %.3f | %.2f s/step", step, lr, run,
                     (time.time() - t0) / max(1, step - start))
        if step % args.save_every == 0:
            save(ckpt_path, model, ema, opt, step, args, spent + time.time() - t0)
        if step % args.eval_every == 0:
            e = held_out_nme(predict(ema.model, val_crops), val_teacher)
            log.info("step %d held-out NME vs teacher (EMA, inter-ocular): %.4f", step, e)
    save(ckpt_path, model, ema, opt, step, args, spent + time.time() - t0)
    e = held_out_nme(predict(ema.model, val_crops), val_teacher)
    log.info("done at step %d in %.0f s; held-out NME vs teacher (EMA): %.4f", step,
             spent + time.time() - t0, e)
    return ckpt_path


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("prepare", help="detect, crop and run the teacher once")
    pr.add_argument("--out", required=True, help=".npz to write (keep it out of the repository)")
    pr.add_argument("--shared", default=str(SHARED), help="the ../shared folder")
    pr.add_argument("--threads", type=int, default=1)
    tr = sub.add_parser("train", help="distil into models/landmarker.py")
    tr.add_argument("--data", required=True, help="the prepare step's .npz")
    add_run_options(tr, steps=100000, batch=64, lr=3e-3, wd=1e-4, warmup=100, threads=1,
                    save_every=100)
    tr.add_argument("--eval-every", type=int, default=250)
    tr.set_defaults(variant="lmk68")  # the checkpoint's model name (train_detector.save)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    if args.command == "prepare":
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
        torch.set_num_threads(args.threads)
        prepare(args)
    else:
        train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
