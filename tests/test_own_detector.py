"""The project's own detectors (models/own_detector.py) and their tools: parameter budget,
output layout, export -> .pface equality with onnxruntime, the training step, label
assignment, augmentation flips and pseudo-label merging.

Needs torch (the training extra; skipped without it). The export test also needs
onnxscript, onnx and onnxruntime. Nothing here reads ../shared.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, need_module

torch = need_module("torch")
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from models import own_detector as od  # noqa: E402
from tools import pseudo_label, train_detector as td  # noqa: E402


def eval_model(name):
    torch.manual_seed(0)
    return od.build(name).eval()


def test_tiny_variant_fits_the_extd_budget():
    model = od.build("extd_tiny")
    # Counted as the EXTD paper counts (shared weights once) and as deployed (the reused
    # block unrolled with each pass's BatchNorm folded in): both under 0.1 M.
    assert od.count_params(model) <= 100_000
    block = model.block
    shared = sum(p.numel() for n, p in block.named_parameters() if not n.startswith("bn."))
    per_pass_bias = sum(m.num_features for m in block.bn[0])
    unrolled = od.deploy_params(model) + (len(od.STRIDES) - 1) * (shared + per_pass_bias)
    assert unrolled <= 100_000, unrolled


def test_larger_variants_are_larger():
    tiny = od.count_params(od.build("extd_tiny"))
    large = od.count_params(od.build("extd_large"))
    ssh = od.count_params(od.build("ssh_mobile"))
    assert 150_000 <= large <= 300_000 and large > 2 * tiny
    assert 100_000 <= ssh <= 300_000


def test_block_weights_are_reused_across_strides():
    model = od.build("extd_tiny")
    calls = []
    hook = model.block.expand.register_forward_hook(lambda m, i, o: calls.append(o.shape[-1]))
    model.eval()(torch.zeros(1, 3, 64, 96))
    hook.remove()
    assert calls == [96 // 8, 96 // 16, 96 // 32]


@pytest.mark.parametrize("name", od.VARIANTS)
def test_output_layout(name):
    model = eval_model(name)
    with torch.no_grad():
        outs = model(torch.rand(2, 3, 96, 160) * 255)
    assert len(outs) == len(od.OUTPUT_NAMES)
    widths = dict(od.OUTPUTS)
    for out, n in zip(outs, od.OUTPUT_NAMES):
        kind, stride = n.split("_")
        s = int(stride)
        assert tuple(out.shape) == (2, 96 // s, 160 // s, widths[kind]), n
        if kind in ("cls", "obj"):
            assert float(out.min()) >= 0 and float(out.max()) <= 1
    train_out = model.train()(torch.rand(2, 3, 96, 160))
    assert set(train_out) == set(od.OUTPUT_NAMES)


def test_training_decode_matches_the_yunet_head():
    """The boxes the loss trains are the boxes the shipped model's C++ decoder produces."""
    from picoface.heads import HEADS
    rng = np.random.default_rng(0)
    W, H = 96, 64
    cells = sum((W // s) * (H // s) for s in od.STRIDES)
    raw = {f"{k}_{s}": rng.uniform(-1, 1, (1, H // s, W // s, w)).astype(np.float32)
           for s in od.STRIDES for k, w in od.OUTPUTS}
    for s in od.STRIDES:
        raw[f"cls_{s}"] = np.ones_like(raw[f"cls_{s}"])
        raw[f"obj_{s}"] = np.ones_like(raw[f"obj_{s}"])
    boxes, scores, lms = HEADS["yunet"].decode(raw, W, H, 0.5)
    assert len(boxes) == cells
    a = td.assign(np.zeros((0, 16), np.float32), np.zeros((0, 4), np.float32), H, W)
    flat = td.flatten_outputs({k: torch.from_numpy(v) for k, v in raw.items()})
    ours = td.decode_boxes(flat["bbox"], torch.from_numpy(a["points"]), torch.from_numpy(a["stride"]))
    np.testing.assert_allclose(ours.numpy(), boxes, rtol=1e-5, atol=1e-4)


def face(x1, y1, x2, y2, score=0.9, points=True):
    w, h = x2 - x1, y2 - y1
    pts = [x1 + 0.3 * w, y1 + 0.4 * h, x1 + 0.7 * w, y1 + 0.4 * h, x1 + 0.5 * w, y1 + 0.6 * h,
           x1 + 0.35 * w, y1 + 0.8 * h, x1 + 0.65 * w, y1 + 0.8 * h]
    return [x1, y1, x2, y2, score, *pts, 1.0 if points else 0.0]


def cells_of(a, stride, face_index):
    sel = (a["stride"] == stride) & (a["face"] == face_index)
    return {tuple(p) for p in a["points"][sel].astype(int)}


def test_assignment_by_size_and_centre():
    faces = np.array([face(100, 100, 120, 120),   # 20 px: stride 8 only
                      face(200, 40, 248, 88),     # 48 px: strides 8 and 16
                      face(20, 150, 220, 310),    # ~179 px: stride 32 only
                      face(300, 300, 303, 303)],  # 3 px: its nearest stride-8 cell
                     np.float32)
    a = td.assign(faces, np.zeros((0, 4), np.float32), 320, 320)
    assert cells_of(a, 16, 0) == set() and cells_of(a, 32, 0) == set()
    # Anchor points within one stride (Chebyshev) of the centre (110, 110).
    assert cells_of(a, 8, 0) == {(x, y) for x in (104, 112) for y in (104, 112)}
    assert cells_of(a, 8, 1) and cells_of(a, 16, 1) and not cells_of(a, 32, 1)
    assert cells_of(a, 32, 2) == {(96, 224), (128, 224), (96, 256), (128, 256)} and \
        not cells_of(a, 8, 2) and not cells_of(a, 16, 2)
    assert cells_of(a, 8, 3) == {(x, y) for x in (296, 304) for y in (296, 304)}
    assert a["pos"].sum() == (a["face"] >= 0).sum()


def test_assignment_overlap_goes_to_the_smaller_face_and_ignore_regions_skip_negatives():
    faces = np.array([face(96, 96, 128, 128), face(100, 100, 124, 124)], np.float32)
    ignore = np.array([[200, 200, 240, 240]], np.float32)
    a = td.assign(faces, ignore, 320, 320)
    shared = cells_of(a, 8, 1)
    assert shared and not (shared & cells_of(a, 8, 0))
    sel = a["ignore"]
    pts = a["points"][sel]
    assert len(pts) and (pts >= 200).all() and (pts <= 240).all()
    assert not (a["ignore"] & a["pos"]).any()


def test_hflip_swaps_left_and_right_points():
    img = np.zeros((10, 40, 3), np.uint8)
    img[:, :5] = 255
    f = np.array([face(2, 2, 12, 8)], np.float32)
    out, g, _ = td.hflip(img, f, np.zeros((0, 4), np.float32))
    assert out[0, -1, 0] == 255 and out[0, 0, 0] == 0
    np.testing.assert_allclose(g[0, :4], [28, 2, 38, 8])
    pts = g[0, 5:15].reshape(5, 2)
    # Image-left eye first again, nose unchanged, image-left mouth corner first.
    assert pts[0, 0] < pts[1, 0] and pts[3, 0] < pts[4, 0]
    np.testing.assert_allclose(pts[2], [40 - 7, 2 + 0.6 * 6])
    np.testing.assert_allclose(sorted(pts[:2, 0]), sorted(40 - f[0, [5, 7]]))


def synthetic_batch(n=4, size=96, seed=0):
    """Bright squares on noise: a batch any detector can fit quickly."""
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n):
        img = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
        faces = []
        for _ in range(2):
            s = int(rng.integers(12, 40))
            x, y = (int(v) for v in rng.integers(0, size - s, 2))
            img[y:y + s, x:x + s] = 220
            faces.append(face(x, y, x + s, y + s))
        samples.append(td.Sample(img, np.array(faces, np.float32), np.zeros((0, 4), np.float32)))
    return td.collate(samples)


def test_a_few_training_steps_reduce_the_loss():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    model = od.build("extd_tiny").train()
    opt = td.make_optimizer(model, 3e-3, 0.0)
    imgs, tgt = synthetic_batch()
    losses = []
    for _ in range(25):
        loss, parts = td.compute_loss(model(imgs), tgt)
        assert set(parts) == {"obj", "cls", "box", "kps"}
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:3]), losses


def test_export_convert_native_matches_onnxruntime(tmp_path):
    need_module("onnxscript")
    need_module("onnx")
    need_module("onnxruntime")
    from picoface import modelfile
    from tools import export_own
    model = export_own.load(None, "extd_tiny")
    onnx_path = export_own.export_onnx(model, tmp_path / "tiny.onnx")
    pface = export_own.convert(onnx_path, tmp_path / "tiny.pface", variant="extd_tiny",
                               provenance="test")
    meta = modelfile.summary(pface)["metadata"]
    assert meta["head.type"] == "yunet" and meta["head.strides"] == [8, 16, 32]
    assert meta["architecture"] == "picoface-extd_tiny" and meta["input.multiple"] == 32
    # Another size than the traced one: the export must be truly dynamic.
    x = np.random.default_rng(1).uniform(0, 255, (1, 3, 160, 224)).astype(np.float32)
    ref = export_own.torch_outputs(model, x)
    ort = export_own.ort_outputs(onnx_path, x)
    native = export_own.native_outputs(pface, x)
    assert export_own.max_abs(ort, ref) < export_own.ORT_VS_TORCH
    assert export_own.max_abs(native, ort) < export_own.NATIVE_VS_ORT
    ops = {op["type"] for op in modelfile.summary(pface)["ops"]}
    assert ops <= {"Conv", "Add", "MaxPool", "Resize", "Sigmoid", "Transpose", "Concat", "Relu"}


class FakeTeacher:
    def __init__(self, boxes, scores):
        self.boxes = np.asarray(boxes, np.float32)
        self.scores = np.asarray(scores, np.float32)

    def __call__(self, image):
        pts = np.stack([np.array(face(*b)[5:15], np.float32).reshape(5, 2) for b in self.boxes])
        return self.boxes, self.scores, pts


def test_pseudo_labels_split_faces_and_ignore_regions():
    t = FakeTeacher([[10, 10, 50, 50], [60, 60, 80, 80]], [0.9, 0.4])
    faces, ignore = pseudo_label.label_image(t, None, positive=0.5)
    assert len(faces) == 1 and faces[0][:4] == [10, 10, 50, 50] and faces[0][15] == 1.0
    assert ignore == [[60, 60, 80, 80]]


def test_pseudo_labels_on_human_boxes_borrow_teacher_points():
    t = FakeTeacher([[11, 11, 50, 50], [100, 100, 130, 130]], [0.9, 0.95])
    human = [[10, 10, 40, 40], [200, 10, 20, 20]]  # x, y, w, h
    faces, ignore = pseudo_label.label_image(t, None, human)
    assert faces[0][:4] == [10, 10, 50, 50] and faces[0][15] == 1.0
    assert faces[0][5:15] == pytest.approx(face(11, 11, 50, 50)[5:15])
    assert faces[1][:4] == [200, 10, 220, 30] and faces[1][15] == 0.0
    # The teacher's face the annotators skipped is no negative for the student.
    assert ignore == [[100, 100, 130, 130]]


def test_torch_detector_runs_the_eval_interface():
    from picoface.results import Faces
    det = td.TorchDetector(eval_model("extd_tiny"), score_threshold=0.0)
    faces = det(np.random.default_rng(0).integers(0, 255, (70, 90, 3), dtype=np.uint8))
    assert isinstance(faces, Faces)
    assert faces.boxes.shape[1] == 4 and faces.landmarks.shape[1:] == (5, 2)
