"""One-pass preprocessing against OpenCV and against its own definition.

Tolerances: picoface keeps float32 where OpenCV rounds to uint8 (and uses 11-bit fixed-point
weights), so against cv2.resize / cv2.cvtColor each value may differ by up to 1.0 (0..255
units) and the mean difference stays near the 0.25 of pure rounding."""

import numpy as np
import pytest

from picoface import _core

from conftest import need_module

CASES = [((720, 1280), (180, 320)), ((480, 640), (240, 320)), ((37, 53), (100, 71)),
         ((100, 100), (33, 47)), ((1, 1), (5, 5)), ((7, 3), (2, 1)), ((31, 65), (31, 65))]


def run(img, dst_w, dst_h, *, fit="stretch", in_color="bgr", out_color="bgr", mean=(0, 0, 0),
        std=(1, 1, 1), layout="nhwc", dtype="float32", scale=1.0, zp=0, interp="bilinear",
        pad=(0, 0, 0)):
    box = _core.letterbox(img.shape[1], img.shape[0], dst_w, dst_h, fit)
    return _core.preprocess(img, box, in_color, out_color, list(mean), list(std), layout, dtype,
                            scale, zp, interp, list(pad))


# Area averaging applies to shrinking axes only (cv2's INTER_AREA upscaling is another
# filter), so it is compared on shrinks.
RESIZE_CASES = [("bilinear", "INTER_LINEAR", s, d) for s, d in CASES] + [
    ("area", "INTER_AREA", s, d) for s, d in CASES if d[0] <= s[0] and d[1] <= s[1]]


@pytest.mark.parametrize("interp,flag,src,dst", RESIZE_CASES)
def test_resize_matches_opencv(isa, rng, interp, flag, src, dst):
    cv2 = need_module("cv2")
    img = rng.integers(0, 256, src + (3,), dtype=np.uint8)
    got = run(img, dst[1], dst[0], interp=interp)
    want = cv2.resize(img, (dst[1], dst[0]), interpolation=getattr(cv2, flag)).astype(np.float32)
    diff = np.abs(got - want)
    assert diff.max() <= 1.0, f"{isa} {interp} {src}->{dst}: max diff {diff.max()}"
    assert diff.mean() <= 0.3, f"{isa} {interp} {src}->{dst}: mean diff {diff.mean()}"


def test_auto_uses_area_for_large_shrink(rng):
    img = rng.integers(0, 256, (400, 400, 3), dtype=np.uint8)
    auto = run(img, 100, 100, interp="auto")
    np.testing.assert_array_equal(auto, run(img, 100, 100, interp="area"))
    auto = run(img, 300, 300, interp="auto")
    np.testing.assert_array_equal(auto, run(img, 300, 300, interp="bilinear"))


def test_colour_conversions(rng):
    cv2 = need_module("cv2")
    img = rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)
    same = run(img, 60, 50)
    np.testing.assert_array_equal(same, img.astype(np.float32))
    np.testing.assert_array_equal(run(img, 60, 50, out_color="rgb"), img[:, :, ::-1].astype(np.float32))
    np.testing.assert_array_equal(run(img, 60, 50, in_color="rgb", out_color="rgb"), img.astype(np.float32))
    gray = run(img, 60, 50, out_color="gray")[:, :, 0]
    assert np.abs(gray - cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)).max() <= 0.51
    g = img[:, :, 0].copy()
    np.testing.assert_array_equal(run(g, 60, 50, in_color="gray", out_color="bgr"),
                                  np.repeat(g[:, :, None], 3, axis=2).astype(np.float32))


def test_normalise_and_layout(isa, rng):
    img = rng.integers(0, 256, (45, 77, 3), dtype=np.uint8)
    mean, std = (127.5, 120.0, 100.0), (128.0, 64.0, 2.0)
    base = run(img, 40, 23, out_color="rgb")
    want = (base - np.float32(mean)) / np.float32(std)
    nhwc = run(img, 40, 23, out_color="rgb", mean=mean, std=std)
    nchw = run(img, 40, 23, out_color="rgb", mean=mean, std=std, layout="nchw")
    np.testing.assert_allclose(nhwc, want, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(nchw, nhwc.transpose(2, 0, 1))


def test_int8_output_follows_documented_rounding(isa, rng):
    img = rng.integers(0, 256, (33, 65, 3), dtype=np.uint8)
    kw = dict(mean=(127.5, 127.5, 127.5), std=(127.5, 127.5, 127.5), layout="nchw")
    f = run(img, 50, 30, **kw)
    scale, zp = 1.0 / 100.0, 3
    q = run(img, 50, 30, dtype="int8", scale=scale, zp=zp, **kw)
    assert q.dtype == np.int8
    # Same formula, evaluated as the kernels do: v * (1/scale) in float32, half to even.
    want = np.clip(np.rint(f * np.float32(1.0 / scale)) + zp, -128, 127).astype(np.int8)
    np.testing.assert_array_equal(q, want)


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_letterbox_padding_and_placement(isa, rng, layout):
    img = rng.integers(0, 256, (40, 100, 3), dtype=np.uint8)
    pad = (114.0, 0.0, 255.0)
    out = run(img, 64, 64, fit="keep_aspect", pad=pad, mean=(10, 10, 10), std=(2, 2, 2),
              layout=layout)
    if layout == "nchw":
        out = out.transpose(1, 2, 0)
    box = _core.letterbox(100, 40, 64, 64, "keep_aspect")
    assert (box["content_w"], box["content_h"], box["pad_x"], box["pad_y"]) == (64, 26, 0, 0)
    np.testing.assert_allclose(out[26:], np.broadcast_to((np.float32(pad) - 10) / 2, (38, 64, 3)))
    content = run(img, 64, 26, mean=(10, 10, 10), std=(2, 2, 2))
    np.testing.assert_allclose(out[:26], content, rtol=1e-6, atol=1e-5)


def test_fit_none_pads_without_resampling(rng):
    img = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)
    out = run(img, 64, 32, fit="none")
    np.testing.assert_array_equal(out[:30, :50], img.astype(np.float32))
    assert not out[30:].any() and not out[:, 50:].any()


def test_simd_matches_scalar_end_to_end(rng):
    img = rng.integers(0, 256, (481, 641, 3), dtype=np.uint8)
    before = _core.get_isa()
    outs = {}
    try:
        for isa in _core.supported_isas():
            _core.set_isa(isa)
            outs[isa] = run(img, 320, 241, fit="keep_aspect", out_color="rgb", mean=(127.5,) * 3,
                            std=(128,) * 3, layout="nchw", interp="auto")
    finally:
        _core.set_isa(before)
    for isa, out in outs.items():
        np.testing.assert_allclose(out, outs["scalar"], rtol=1e-5, atol=1e-5, err_msg=isa)


def test_row_strided_view_is_read_in_place(rng):
    frame = rng.integers(0, 256, (100, 120, 3), dtype=np.uint8)
    crop = frame[10:60, 20:90]  # rows strided, pixels contiguous
    np.testing.assert_array_equal(run(crop, 35, 25), run(np.ascontiguousarray(crop), 35, 25))
