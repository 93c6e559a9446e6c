"""Train an EdgeFace-style recogniser (models/edgeface.py) on CelebA identities with a CosFace
margin loss plus embedding distillation from the SFace teacher.

    python -m tools.train_recognizer --arch edgeface_xxs --out /tmp/edgeface/xxs \
        --minutes 60 --threads 1          # checkpoints + train.log there; --resume continues

Data. ``../shared/data/celeba`` (labels.tsv, pairs.tsv). The 10 folds of pairs.tsv are
identity-disjoint (each of the 239 identities appears in exactly one fold), so training on the
identities of ``--train-folds`` (default 0-7: 192 identities) leaves the pairs of folds 8-9
(47 identities) for an evaluation on people never trained on. Unlabelled faces for the
distillation term only: every face of ``wider/test183`` at least 48 px wide and the largest face
of each ``lfw_samples`` image (never WIDER val416: it is evaluation data).

Faces are found by the project's own detector (``picoface.FaceDetector()``; YuNet-s from
../shared where it finds nothing), aligned with ``picoface.align`` to the ArcFace 112x112
template, and cached once with the teacher's embeddings in an .npz (``--cache``, under /tmp).
The teacher runs in the native engine (onnxruntime refuses the int8bq file: its weights are
listed as graph inputs); its embeddings of each crop and of its mirror image are cached.

Loss, per batch of ``--batch`` labelled + ``--extra`` unlabelled crops:

* CosFace (s = 30, m = 0.35) of the 512-d embedding against one learned centre per training
  identity (labelled crops only);
* distillation through a learned 512 -> 128 projection (dropped at export): 1 - cosine between
  the projected student embedding of the augmented crop and the teacher's embedding of the
  clean crop (mirrored when the crop was flipped), so the student learns the teacher's
  invariance to the augmentations. A projection rather than a 128-d head keeps EdgeFace's 512-d
  embedding, in which the margin loss has room beside the teacher's information;
* relational distillation: the batch's student cosine-similarity matrix (512-d, what
  verification compares) regressed onto the teacher's, so the metric itself follows the
  teacher and not only a linear image of it.

Augmentation: horizontal flip, scale/shift/rotation, colour (brightness, contrast, saturation),
blur, random erasing. AdamW, linear warm-up then cosine decay over the time budget, weight EMA
(the exported weights); every batch is a pure function of (seed, step), so ``--resume`` from the
checkpoint (written every ``--save-minutes``) continues the same run.
"""

import argparse
import csv
import json
import logging
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import edgeface  # noqa: E402
from picoface import eval_verify  # noqa: E402
from tools.train_detector import (Ema, lr_at, make_optimizer, optimizer_step,  # noqa: E402
                                  resume, start_run)

log = logging.getLogger("train_recognizer")

SHARED = Path(__file__).resolve().parents[2] / "shared"
SFACE = SHARED / "models/opencv_zoo/face_recognition_sface_2021dec_int8bq.onnx"
YUNET_S = SHARED / "models/ShiqiYu__libfacedetection.train/onnx/yunet_s_dynamic.onnx"
MIN_EXTRA_FACE = 48  # px: smaller WIDER faces upsampled to 112 teach the teacher's blur only
COSFACE_SCALE, COSFACE_MARGIN = 30.0, 0.35


# ---- data: detect, align, cache ------------------------------------------------------------

def read_celeba(root: Path) -> Tuple[List[str], Dict[str, int], Dict[int, int]]:
    """(image paths relative to root, image -> identity, identity -> fold of pairs.tsv)."""
    with open(root / "labels.tsv", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))[1:]
    identity = {r[0]: int(r[1]) for r in rows if r}
    fold: Dict[int, int] = {}
    with open(root / "pairs.tsv", newline="") as f:
        for r in list(csv.reader(f, delimiter="\t"))[1:]:
            for image in r[1:3]:
                fold.setdefault(identity[image], int(r[0]))
                if fold[identity[image]] != int(r[0]):
                    raise ValueError(f"identity {identity[image]} is in folds {fold[identity[image]]} "
                                     f"and {r[0]}: expected identity-disjoint folds")
    return sorted(identity), identity, fold


class FaceCropper:
    """Largest face (or every face at least ``min_size`` wide) of an image, aligned to 112x112:
    the project's detector first, YuNet-s where it finds nothing."""

    def __init__(self):
        import picoface
        self.detectors = [("picoface", picoface.FaceDetector())]
        if YUNET_S.is_file():
            self.detectors.append(("yunet_s", picoface.FaceDetector(YUNET_S, head="yunet")))

    def __call__(self, image, every: bool = False, min_size: int = 0):
        from picoface import align
        for name, det in self.detectors:
            faces = det(image)
            if len(faces) == 0:
                continue
            widths = faces.boxes[:, 2] - faces.boxes[:, 0]
            keep = np.flatnonzero(widths >= min_size) if every else [int(np.argmax(widths))]
            if len(keep) == 0:
                return name, np.zeros((0, 112, 112, 3), np.uint8)
            return name, align(image, faces.landmarks[keep], 112)
        return None, np.zeros((0, 112, 112, 3), np.uint8)


def teacher_embeddings(crops: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """SFace embeddings (L2-normalised, 128-d) of BGR crops and of their mirror images."""
    from picoface.recognize import open_embedder
    teacher = open_embedder(SFACE, preset="sface")
    out = []
    for batch in (crops, np.ascontiguousarray(crops[:, :, ::-1])):
        out.append(np.concatenate([teacher(batch[i:i + 256]) for i in range(0, len(batch), 256)]))
    return out[0], out[1]


def build_cache(path: Path) -> Path:
    """Detects, aligns and embeds (teacher) all training material once; writes ``path``."""
    from picoface import imageio
    celeba = SHARED / "data/celeba"
    names, identity, fold = read_celeba(celeba)
    cropper = FaceCropper()
    crops, ident, folds, sources, used = [], [], [], [], {}
    missed = []
    for i, name in enumerate(names):
        det, c = cropper(imageio.read_bgr(celeba / name))
        if det is None:
            missed.append(name)
            continue
        used[det] = used.get(det, 0) + 1
        crops.append(c[0])
        ident.append(identity[name])
        folds.append(fold[identity[name]])
        sources.append(name)
        if (i + 1) % 500 == 0:
            log.info("celeba: %d/%d images", i + 1, len(names))
    log.info("celeba: faces in %d of %d images (%s), none in %d: %s", len(crops), len(names),
             used, len(missed), missed[:10])
    extra = sorted((SHARED / "data/wider/test183/images").glob("*.jpg"))
    extra_lfw = sorted((SHARED / "data/lfw_samples/images").glob("*.jpg"))
    for p in extra + extra_lfw:
        wide = p in extra
        _, c = cropper(imageio.read_bgr(p), every=wide, min_size=MIN_EXTRA_FACE if wide else 0)
        for k in range(len(c)):
            crops.append(c[k])
            ident.append(-1)
            folds.append(-1)
            sources.append(f"{p.parent.parent.name}/{p.name}#{k}")
    crops_arr = np.stack(crops)
    log.info("unlabelled faces for distillation: %d", int((np.array(ident) < 0).sum()))
    t, t_flip = teacher_embeddings(crops_arr)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, crops=crops_arr, identity=np.int32(ident), fold=np.int8(folds),
             source=np.array(sources), teacher=t, teacher_flip=t_flip)
    tmp.replace(path)
    return path


# ---- augmentation --------------------------------------------------------------------------

def augment(rng: np.random.Generator, crop: np.ndarray) -> Tuple[np.ndarray, bool]:
    """A randomly flipped, moved, recoloured, blurred and occluded copy of a 112x112 BGR crop;
    and whether it was flipped (the distillation target is then the mirrored teacher
    embedding)."""
    import cv2
    img = crop
    flipped = bool(rng.random() < 0.5)
    if flipped:
        img = img[:, ::-1]
    s = rng.uniform(0.9, 1.1)
    angle = rng.uniform(-10, 10)
    m = cv2.getRotationMatrix2D((56.0, 56.0), angle, s)
    m[:, 2] += rng.uniform(-6, 6, 2)
    img = cv2.warpAffine(np.ascontiguousarray(img), m, (112, 112), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT101).astype(np.float32)
    if rng.random() < 0.8:
        grey = img.mean(axis=2, keepdims=True)
        img = grey + (img - grey) * rng.uniform(0.6, 1.4)  # saturation
        img = (img - img.mean()) * rng.uniform(0.7, 1.3) + img.mean()  # contrast
        img = img * rng.uniform(0.7, 1.3) + rng.uniform(-20, 20)  # brightness
    if rng.random() < 0.25:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.8))
    elif rng.random() < 0.15:  # low resolution: down to 28-56 px and back
        side = int(rng.integers(28, 57))
        img = cv2.resize(cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA), (112, 112))
    if rng.random() < 0.3:  # random erasing: 5-25 % of the crop, aspect 0.3-3.3
        area = rng.uniform(0.05, 0.25) * 112 * 112
        aspect = np.exp(rng.uniform(np.log(0.3), np.log(3.3)))
        h = int(min(111, np.sqrt(area * aspect)))
        w = int(min(111, np.sqrt(area / aspect)))
        y, x = int(rng.integers(0, 112 - h)), int(rng.integers(0, 112 - w))
        img[y:y + h, x:x + w] = rng.uniform(0, 255, 3)
    return np.clip(img, 0, 255), flipped


def to_tensor(bgr: np.ndarray) -> torch.Tensor:
    """float BGR [N, 112, 112, 3] 0..255 -> the model's input: RGB in [-1, 1], NCHW."""
    x = (np.asarray(bgr, np.float32)[..., ::-1] - 127.5) / 127.5
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


class Batches:
    """Batch ``step`` is a pure function of (seed, step): labelled crops of the training
    identities plus unlabelled ones, augmented; with class indices (-1 unlabelled) and the
    teacher targets."""

    def __init__(self, data: Dict[str, np.ndarray], train: np.ndarray, extra: np.ndarray,
                 classes: np.ndarray, batch: int, extra_batch: int, seed: int):
        self.data, self.train, self.extra = data, train, extra
        self.classes, self.batch, self.extra_batch, self.seed = classes, batch, extra_batch, seed

    def __call__(self, step: int):
        rng = np.random.default_rng([self.seed, step])
        idx = np.concatenate([rng.choice(self.train, self.batch, replace=False),
                              rng.choice(self.extra, self.extra_batch, replace=False)
                              if self.extra_batch else np.zeros(0, int)])
        imgs, targets = [], []
        for i in idx:
            img, flipped = augment(rng, self.data["crops"][i])
            imgs.append(img)
            targets.append(self.data["teacher_flip" if flipped else "teacher"][i])
        return to_tensor(np.stack(imgs)), torch.from_numpy(self.classes[idx]), \
            torch.from_numpy(np.stack(targets))


# ---- losses --------------------------------------------------------------------------------

class Heads(nn.Module):
    """Training-only parts: CosFace class centres and the distillation projection."""

    def __init__(self, classes: int, dim: int = edgeface.EMBEDDING_DIM, teacher_dim: int = 128):
        super().__init__()
        self.centres = nn.Parameter(torch.randn(classes, dim) * 0.01)
        self.proj = nn.Linear(dim, teacher_dim, bias=False)


def losses(emb: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor,
           heads: Heads) -> Dict[str, torch.Tensor]:
    """CosFace on the labelled rows, projected and relational distillation on all rows."""
    e = F.normalize(emb, dim=1)
    lab = labels >= 0
    cos = e[lab] @ F.normalize(heads.centres, dim=1).T
    margin = F.one_hot(labels[lab], cos.shape[1]) * COSFACE_MARGIN
    cosface = F.cross_entropy(COSFACE_SCALE * (cos - margin), labels[lab])
    distil = (1 - (F.normalize(heads.proj(emb), dim=1) * teacher).sum(1)).mean()
    off = ~torch.eye(len(e), dtype=torch.bool)
    relational = ((e @ e.T - teacher @ teacher.T)[off] ** 2).mean()
    return {"cosface": cosface, "distil": distil, "relational": relational}


# ---- monitoring ----------------------------------------------------------------------------

def embed(model: nn.Module, crops: np.ndarray, batch: int = 64) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        out = [F.normalize(model(to_tensor(crops[i:i + batch])), dim=1).numpy()
               for i in range(0, len(crops), batch)]
    return np.concatenate(out)


def pair_accuracy(model, data, pairs_path: Path, folds) -> Dict[str, float]:
    """Monitoring only (never used to pick weights): best-threshold accuracy and the teacher's
    on the pairs of ``folds`` whose both images are in the cache."""
    where = {s: i for i, s in enumerate(data["source"])}
    pairs = [p for p in eval_verify.read_pairs(pairs_path)
             if p.fold in folds and p.image_a in where and p.image_b in where]
    idx = sorted({where[n] for p in pairs for n in (p.image_a, p.image_b)})
    pos = {j: k for k, j in enumerate(idx)}
    student, teacher = embed(model, data["crops"][idx]), data["teacher"][idx]
    labels = [p.same for p in pairs]
    out = {}
    for name, e in (("student", student), ("teacher", teacher)):
        s = [float(e[pos[where[p.image_a]]] @ e[pos[where[p.image_b]]]) for p in pairs]
        out[name] = eval_verify.accuracy(s, labels, eval_verify.best_threshold(s, labels))
    return out


# ---- training ------------------------------------------------------------------------------

def save(path: Path, model, ema, heads, opt, step: int, spent: float, args) -> None:
    tmp = Path(str(path) + ".tmp")
    torch.save({"arch": args.arch, "step": step, "train_seconds": spent, "args": vars(args),
                "recipe": recipe(args), "model": model.state_dict(),
                "ema": ema.model.state_dict(), "heads": heads.state_dict(),
                "optimizer": opt.state_dict(), "torch_rng": torch.get_rng_state()}, tmp)
    tmp.replace(path)


def recipe(args) -> str:
    return (f"{args.arch}: CelebA folds {args.train_folds} identities, CosFace s={COSFACE_SCALE:g} "
            f"m={COSFACE_MARGIN:g} + SFace distillation (512->128 projection, weight "
            f"{args.distil:g}; relational, weight {args.relational:g}), batch {args.batch}+"
            f"{args.extra}, AdamW lr {args.lr:g}, {args.minutes:g} min on {args.threads} CPU "
            f"thread(s), seed {args.seed}")


def train(args) -> Path:
    out = start_run(log, args)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    cache = Path(args.cache)
    if not cache.exists():
        log.info("building the crop cache %s", cache)
        build_cache(cache)
    data = dict(np.load(cache))
    train_folds = eval_verify.parse_folds(args.train_folds)
    train_idx = np.flatnonzero(np.isin(data["fold"], train_folds) & (data["identity"] >= 0))
    extra_idx = np.flatnonzero(data["identity"] < 0)
    ids = np.unique(data["identity"][train_idx])
    classes = np.full(len(data["identity"]), -1, np.int64)
    classes[train_idx] = np.searchsorted(ids, data["identity"][train_idx])

    model = edgeface.build(args.arch).train()
    heads = Heads(len(ids))
    ema = Ema(model)
    opt = make_optimizer(nn.ModuleList([model, heads]), args.lr, args.wd)
    ckpt_path = out / "last.pt"
    start, spent = (resume(log, ckpt_path, model, ema, opt, extra={"heads": heads})
                    if args.resume else (0, 0.0))
    log.info("%s: %d parameters; %d training crops of %d identities (folds %s), %d unlabelled; "
             "args %s", args.arch, edgeface.count_params(model), len(train_idx), len(ids),
             train_folds, len(extra_idx), json.dumps(vars(args)))
    stream = Batches(data, train_idx, extra_idx, classes, args.batch, args.extra, args.seed)
    weights = {"cosface": 1.0, "distil": args.distil, "relational": args.relational}
    pairs = SHARED / "data/celeba/pairs.tsv"
    monitor = eval_verify.parse_folds(args.monitor_folds)
    budget = args.minutes * 60.0
    t0 = time.time()
    last_save = t0
    run: Dict[str, float] = {}
    step = start
    while True:
        trained = spent + time.time() - t0
        if trained >= budget:
            log.info("time budget of %.0f min spent", args.minutes)
            break
        lr = lr_at(step, 0, args.lr, args.warmup, trained / budget)
        x, labels, teacher = stream(step)
        model.train()
        parts = losses(model(x), labels, teacher, heads)
        loss = sum(weights[k] * v for k, v in parts.items())
        step = optimizer_step(model, ema, opt, loss, lr, step, clip=5.0)
        for k, v in parts.items():
            v = float(v.detach())
            run[k] = 0.95 * run.get(k, v) + 0.05 * v
        if step % args.log_every == 0:
            log.info("step %d lr %.2e %s | %.2f s/step, %.1f min trained", step, lr,
                     " ".join(f"{k} {v:.4f}" for k, v in run.items()),
                     (time.time() - t0) / max(1, step - start), trained / 60)
        if time.time() - last_save >= args.save_minutes * 60:
            save(ckpt_path, model, ema, heads, opt, step, spent + time.time() - t0, args)
            last_save = time.time()
        if args.monitor_every and step % args.monitor_every == 0:
            acc = pair_accuracy(ema.model, data, pairs, monitor)
            log.info("step %d monitor (folds %s pairs, best-threshold accuracy, EMA): student "
                     "%.4f teacher %.4f", step, monitor, acc["student"], acc["teacher"])
    save(ckpt_path, model, ema, heads, opt, step, spent + time.time() - t0, args)
    acc = pair_accuracy(ema.model, data, pairs, monitor)
    log.info("done at step %d; folds %s pairs (monitoring): student %.4f teacher %.4f",
             step, monitor, acc["student"], acc["teacher"])
    return ckpt_path


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="edgeface_xxs", choices=sorted(edgeface.VARIANTS))
    p.add_argument("--out", required=True, help="run folder: last.pt and train.log")
    p.add_argument("--cache", default="/tmp/edgeface/crops.npz",
                   help="aligned crops + teacher embeddings (built on first use)")
    p.add_argument("--train-folds", default="0-7", help="pairs.tsv folds whose identities train")
    p.add_argument("--monitor-folds", default="8-9", help="folds for the monitoring accuracy")
    p.add_argument("--minutes", type=float, default=60.0, help="training time budget")
    p.add_argument("--batch", type=int, default=48, help="labelled crops per batch")
    p.add_argument("--extra", type=int, default=16, help="unlabelled crops per batch")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--wd", type=float, default=0.05)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--distil", type=float, default=4.0, help="weight of 1 - cos(proj, teacher)")
    p.add_argument("--relational", type=float, default=10.0,
                   help="weight of the similarity-matrix distillation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--save-minutes", type=float, default=3.0)
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--monitor-every", type=int, default=300)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--verbose", action="store_true", help="also log to stdout")
    return p.parse_args(argv)


if __name__ == "__main__":
    train(parse())
