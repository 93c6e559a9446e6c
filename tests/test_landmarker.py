"""The project's own 68-point landmarker (models/landmarker.py) and its tools: parameter
budget, the 68-point mirror order, export -> .pface equal to PyTorch on the native engine,
FaceLandmarker on the exported file, and the training augmentation's geometry.

Needs torch (the training extra; skipped without it); the export tests also need
onnxscript, onnx and onnxruntime. Nothing here reads ../shared.
"""

import sys

import numpy as np
import pytest

from conftest import REPO, export_tool, need_module

torch = need_module("torch")
cv2 = need_module("cv2")
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from models import landmarker as lm  # noqa: E402
from tools import train_landmarker as tl  # noqa: E402


def test_fits_the_budget_and_regresses_136_values():
    model = lm.build().eval()
    # Issue #6: at most 0.5 M parameters (BatchNorm included; it folds away at export).
    assert 200_000 <= lm.count_params(model) <= 500_000
    assert 10 <= lm.count_mmacs(model) <= 60
    with torch.no_grad():
        assert model(torch.zeros(3, 3, 112, 112)).shape == (3, 2 * lm.NUM_POINTS)


def test_flip_order_is_a_mirror_involution():
    f = np.array(lm.FLIP_68)
    assert sorted(f) == list(range(68)) and (f[f] == np.arange(68)).all()
    # The 300-W normaliser's outer eye corners swap; the nose bridge and chin stay.
    assert (f[36], f[45], f[8], f[30], f[51], f[57]) == (45, 36, 8, 30, 51, 57)
    # Each point's mirror is in the same part of the face, and on the other side of it:
    # the parts' index ranges of the iBUG scheme, and their orders (jaw 0 <-> 16, ...).
    parts = {"jaw": range(0, 17), "brows": range(17, 27), "bridge": range(27, 31),
             "nose": range(31, 36), "eyes": range(36, 48), "outer lip": range(48, 60),
             "inner lip": range(60, 68)}
    for name, idx in parts.items():
        assert set(f[list(idx)]) == set(idx), name
    assert list(f[:17]) == list(range(16, -1, -1))
    assert (f[17], f[21], f[39], f[42], f[48], f[54], f[60], f[64]) == (26, 22, 42, 39, 54, 48, 64, 60)


def test_mean_shape_init_starts_from_the_given_points():
    model = lm.build().eval()
    shape = np.random.default_rng(1).uniform(0.2, 0.8, (68, 2)).astype(np.float32)
    model.init_mean_shape(shape)
    with torch.no_grad():
        out = model(torch.rand(2, 3, 112, 112)).reshape(2, 68, 2).numpy()
    assert np.abs(out - shape).max() < 0.5  # small weights: near the mean shape
    np.testing.assert_array_equal(model.fc.bias.detach().numpy().reshape(68, 2), shape)


@pytest.mark.parametrize("flip", [False, True])
def test_augmentation_moves_points_with_the_pixels(flip):
    # A context crop with a bright dot at each of three known points; after the random
    # similarity (and flip) the dots must sit where transform_points puts the points.
    ctx = np.zeros((tl.CONTEXT, tl.CONTEXT, 3), np.uint8)
    unit = np.zeros((68, 2), np.float32)
    probes = {36: (30.0, 40.0), 45: (80.0, 42.0), 57: (55.0, 95.0)}  # crop pixels
    m0 = (tl.CONTEXT - tl.S) // 2
    for i, (x, y) in probes.items():
        unit[i] = np.float32([x, y]) / tl.S
        cv2.circle(ctx, (int(x + m0), int(y + m0)), 2, (255, 255, 255), -1)
    m = tl.similarity(1.08, 12.0, (5.0, -4.0), flip)
    img = cv2.warpAffine(ctx, m, (tl.S, tl.S), flags=cv2.INTER_LINEAR, borderValue=0)
    pts = tl.transform_points(unit, m, flip) * tl.S
    for i in probes:
        j = lm.FLIP_68[i] if flip else i  # where point i's pixel landed in the point order
        x, y = pts[j]
        win = img[int(y) - 4:int(y) + 5, int(x) - 4:int(x) + 5, 0].astype(np.float64)
        ys, xs = np.mgrid[int(y) - 4:int(y) + 5, int(x) - 4:int(x) + 5]
        centroid = np.array([(win * xs).sum(), (win * ys).sum()]) / win.sum()
        np.testing.assert_allclose(centroid, [x, y], atol=0.6)


def test_identity_augmentation_is_the_central_crop():
    ctx = np.random.default_rng(0).integers(0, 256, (tl.CONTEXT, tl.CONTEXT, 3), dtype=np.uint8)
    m = tl.similarity(1.0, 0.0, (0.0, 0.0), False)
    img = cv2.warpAffine(ctx, m, (tl.S, tl.S), flags=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(img, tl.central(ctx[None])[0])
    unit = np.random.default_rng(1).random((68, 2), dtype=np.float32)
    np.testing.assert_allclose(tl.transform_points(unit, m, False), unit, atol=1e-6)


def test_wing_loss_is_log_shaped_near_zero_and_linear_far():
    t = torch.zeros(1, 68, 2)
    loss = lambda px: float(tl.wing_loss(torch.full((1, 68, 2), px / tl.S), t))
    assert loss(0.0) == 0.0
    assert loss(1.0) == pytest.approx(10 * np.log1p(0.5), rel=1e-5)
    # Beyond w = 10 px the slope is 1 and the pieces meet at w.
    assert loss(30.0) - loss(20.0) == pytest.approx(10.0, rel=1e-4)
    assert loss(10.0) == pytest.approx(10 * np.log1p(5.0), rel=1e-5)


def test_held_out_split_is_by_image_and_about_a_tenth():
    names = [f"/x/{i:06d}.jpg" for i in range(4000)]
    share = np.mean([tl.held_out(n) for n in names])
    assert 0.08 <= share <= 0.12
    assert tl.held_out("/a/000123.jpg") == tl.held_out("/b/000123.jpg")  # the name decides


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tool = export_tool("export_landmarker")
    need_module("onnx")
    d = tmp_path_factory.mktemp("lmk68")
    model = tool.load(None)
    onnx_path = tool.export_onnx(model, d / "lmk68.onnx")
    pface = tool.convert(onnx_path, d / "lmk68.pface", "test export")
    return tool, model, onnx_path, pface


def test_native_and_onnxruntime_match_pytorch(exported):
    tool, model, onnx_path, pface = exported
    x = np.random.default_rng(0).random((5, 3, 112, 112), dtype=np.float32)
    e_ort, e_native = tool.errors(model, onnx_path, pface, x)
    assert e_ort <= tool.TOLERANCE and e_native <= tool.TOLERANCE, (e_ort, e_native)


def test_exported_file_carries_the_teacher_convention(exported):
    from picoface import modelfile
    meta = modelfile.summary(exported[3])["metadata"]
    assert meta["task"] == "landmarks" and meta["architecture"] == "picoface-lmk68"
    assert (meta["landmarks.points"], meta["landmarks.coords"]) == (68, "unit")
    assert (meta["crop.policy"], meta["crop.scale"]) == ("square_max", pytest.approx(1.1))
    assert (meta["input.color"], meta["input.std"]) == ("rgb", [255.0, 255.0, 255.0])


def test_face_landmarker_maps_the_models_points_into_the_image(exported):
    import picoface
    from picoface.landmarks import crop_faces, crop_windows
    _, model, _, pface = exported
    image = np.random.default_rng(2).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    boxes = np.float32([[40, 30, 140, 150], [200, 100, 260, 170]])
    got = picoface.FaceLandmarker(pface)(image, boxes)
    windows = crop_windows(boxes, "square_max", 1.1)
    crops = crop_faces(image, windows, 112)
    with torch.no_grad():
        unit = model(tl.to_tensor(crops)).numpy().reshape(2, 68, 2)
    want = unit * windows[:, None, 2:] + windows[:, None, :2]
    np.testing.assert_allclose(got, want, atol=1e-3)  # pixels; < 1e-4 of the crop side


def _tiny_data(path, faces=12):
    rng = np.random.default_rng(0)
    ctx = rng.integers(0, 256, (faces, tl.CONTEXT, tl.CONTEXT, 3), dtype=np.uint8)
    teacher = rng.uniform(0.2, 0.8, (faces, 68, 2)).astype(np.float32)
    np.savez(path, context=ctx, teacher=teacher, held_out=np.arange(faces) % 4 == 0)
    return path


def test_training_resumes_bit_exactly(tmp_path):
    # 3 steps straight vs 2 steps, then --resume to 3: the same weights, because each batch
    # is a function of (seed, step) and the checkpoint carries optimiser, EMA and RNG.
    data = _tiny_data(tmp_path / "tiny.npz")
    common = ["train", "--data", str(data), "--batch", "4", "--threads", "1", "--save-every", "1",
              "--eval-every", "100", "--warmup", "1"]
    straight = tl.train(tl.parse(common + ["--out", str(tmp_path / "a"), "--steps", "3"]))
    tl.train(tl.parse(common + ["--out", str(tmp_path / "b"), "--steps", "2"]))
    resumed = tl.train(tl.parse(common + ["--out", str(tmp_path / "b"), "--steps", "3", "--resume"]))
    a = torch.load(straight, weights_only=False)
    b = torch.load(resumed, weights_only=False)
    assert a["step"] == b["step"] == 3 and a["variant"] == "lmk68"
    for key in ("model", "ema"):
        for name, t in a[key].items():
            assert torch.equal(t, b[key][name]), (key, name)
    assert "resumed from" in (tmp_path / "b" / "train.log").read_text()
