"""Every kernel of every ISA this machine runs against the scalar reference (the
specification). Ragged sizes around SIMD widths, odd channel counts, unaligned pointers,
fixed seeds. Integer outputs must match exactly; float outputs within a relative 1e-5;
warps within 1 LSB (accumulation order differs)."""

import numpy as np
import pytest

from picoface import _core

ISAS = [i for i in _core.supported_isas() if i != "scalar"]
SIZES = [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 1000]

pytestmark = pytest.mark.skipif(not ISAS, reason="this machine runs only the scalar kernels")


def unaligned(a: np.ndarray) -> np.ndarray:
    """A copy of ``a`` whose data pointer is offset by one byte from any alignment."""
    raw = np.empty(a.nbytes + 64, np.uint8)
    start = (-raw.ctypes.data) % 64 + 1
    out = raw[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def close(got, want, what, rtol=1e-5, atol=1e-4):
    err = np.abs(got.astype(np.float64) - want.astype(np.float64))
    tol = atol + rtol * np.abs(want.astype(np.float64))
    bad = np.argwhere(err > tol)
    assert bad.size == 0, f"{what}: first mismatch at {tuple(bad[0])}: {got[tuple(bad[0])]} vs {want[tuple(bad[0])]}"


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("ntaps", [1, 2, 3, 5])
def test_resample_row(isa, channels, ntaps):
    rng = np.random.default_rng(channels * 10 + ntaps)
    for n in SIZES:
        src_w = n * 2 + ntaps
        src = unaligned(rng.integers(0, 256, src_w * channels, dtype=np.uint8))
        xofs = np.sort(rng.integers(0, src_w - ntaps + 1, n)).astype(np.int32)
        xofs[-1] = src_w - ntaps  # the last tap ends exactly at the row's end
        w = rng.random((n, ntaps), dtype=np.float32)
        w /= w.sum(axis=1, keepdims=True)
        args = (src, channels, xofs, w.ravel())
        want = _core.kernel_resample_row(*args, ntaps, "scalar")
        got = _core.kernel_resample_row(*args, ntaps, isa)
        close(got, want, f"resample_row_u8 {isa} n={n} c={channels} taps={ntaps}")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("ntaps", [1, 2, 3, 4])
def test_blend_rows(isa, ntaps):
    rng = np.random.default_rng(ntaps)
    for n in SIZES:
        rows = unaligned(rng.normal(size=(ntaps, n)).astype(np.float32) * 100)
        w = rng.random(ntaps, dtype=np.float32)
        close(_core.kernel_blend_rows(rows, w, isa), _core.kernel_blend_rows(rows, w, "scalar"),
              f"blend_rows_f32 {isa} n={n} taps={ntaps}")


def pack_cases(rng):
    for cin in (1, 3):
        for cout in (1, 3):
            m = rng.normal(size=(3, 3)).astype(np.float32)
            b = rng.normal(size=3).astype(np.float32)
            yield cin, cout, m, b


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("nhwc", [False, True])
def test_pack_row_float(isa, nhwc):
    rng = np.random.default_rng(7)
    for cin, cout, m, b in pack_cases(rng):
        for n in SIZES:
            planes = unaligned((rng.random((cin, n), dtype=np.float32) * 255).astype(np.float32))
            args = (planes, m, b, cout, False, 1.0, 0, nhwc)
            close(_core.kernel_pack_row(*args, isa), _core.kernel_pack_row(*args, "scalar"),
                  f"pack_row f32 {isa} cin={cin} cout={cout} n={n} nhwc={nhwc}")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("nhwc", [False, True])
def test_pack_row_int8_exact(isa, nhwc):
    rng = np.random.default_rng(8)
    for cin, cout, m, b in pack_cases(rng):
        for n in SIZES:
            planes = (rng.random((cin, n), dtype=np.float32) * 255).astype(np.float32)
            # Exact .5 ties, saturation both ways and non-finite values.
            special = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 1e9, -1e9, np.inf, -np.inf, np.nan],
                               np.float32)
            planes.ravel()[: min(n * cin, special.size)] = special[: n * cin]
            for inv_scale, zp in ((1.0, 0), (0.37, -3), (2.0, 17)):
                eye = np.eye(3, dtype=np.float32)
                for mat, bias in ((m, b), (eye, np.zeros(3, np.float32))):
                    args = (unaligned(planes), mat, bias, cout, True, inv_scale, zp, nhwc)
                    got = _core.kernel_pack_row(*args, isa)
                    want = _core.kernel_pack_row(*args, "scalar")
                    assert got.dtype == np.int8
                    np.testing.assert_array_equal(
                        got, want, err_msg=f"pack_row s8 {isa} cin={cin} cout={cout} n={n} "
                                           f"scale={inv_scale} zp={zp} nhwc={nhwc}")


def test_pack_row_int8_rounding_rule():
    # Round half to even, then zero point, then saturation.
    planes = np.array([[0.5, 1.5, 2.5, -0.5, -2.5, 300.0, -300.0, np.nan]], np.float32)
    out = _core.kernel_pack_row(planes, np.eye(3, dtype=np.float32), np.zeros(3, np.float32),
                                1, True, 1.0, 0, False, "scalar")
    assert out.ravel().tolist() == [0, 2, 2, 0, -2, 127, -128, -128]


def warp_maps(rng, w, h):
    yield np.array([1, 0, 0, 0, 1, 0], np.float32)  # identity
    for _ in range(6):
        a = rng.uniform(-np.pi, np.pi)
        s = rng.uniform(0.3, 3.0)
        c, d = s * np.cos(a), s * np.sin(a)
        yield np.array([c, -d, rng.uniform(-w / 2, w), d, c, rng.uniform(-h / 2, h)], np.float32)
    yield np.array([1, 0, 10 * w, 0, 1, 10 * h], np.float32)  # entirely outside
    yield np.array([1, 0, np.nan, 0, 1, 0], np.float32)  # NaN map: all border


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_warp_affine(isa, channels):
    rng = np.random.default_rng(channels)
    for (w, h), (dw, dh) in (((37, 29), (17, 13)), ((64, 48), (112, 112)), ((5, 3), (33, 9))):
        img = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
        img = unaligned(img)
        for m in warp_maps(rng, w, h):
            got = _core.kernel_warp_affine(img, m, dw, dh, 77, isa)
            want = _core.kernel_warp_affine(img, m, dw, dh, 77, "scalar")
            # Fixed point (integer weights and sums): every ISA equals the reference exactly.
            np.testing.assert_array_equal(
                got, want, err_msg=f"warp_affine_u8 {isa} src={w}x{h}x{channels} dst={dw}x{dh} "
                                   f"map={m.tolist()}")


@pytest.mark.parametrize("isa", ISAS)
def test_dot_f32(isa):
    rng = np.random.default_rng(3)
    for n in SIZES + [0, 512, 4099]:
        a = unaligned(rng.normal(size=n).astype(np.float32))
        b = unaligned(rng.normal(size=n).astype(np.float32))
        got = _core.kernel_dot_f32(a, b, isa)
        want = _core.kernel_dot_f32(a, b, "scalar")
        scale = float(np.abs(a.astype(np.float64) * b).sum()) + 1e-30
        assert abs(got - want) <= 1e-5 * scale, f"dot_f32 {isa} n={n}: {got} vs {want}"


@pytest.mark.parametrize("isa", ISAS)
def test_dot_s8_exact(isa):
    rng = np.random.default_rng(4)
    for n in SIZES + [0, 512, 4099]:
        a = unaligned(rng.integers(-128, 128, n, dtype=np.int8))
        b = unaligned(rng.integers(-128, 128, n, dtype=np.int8))
        want = int(np.dot(a.astype(np.int64), b.astype(np.int64)))
        assert _core.kernel_dot_s8(a, b, "scalar") == want
        assert _core.kernel_dot_s8(a, b, isa) == want, f"dot_s8 {isa} n={n}"
    # Extremes: -128 * -128 everywhere must not overflow an int16 intermediate.
    for n in (1, 64, 1023):
        a = np.full(n, -128, np.int8)
        assert _core.kernel_dot_s8(a, a, isa) == 16384 * n
        assert _core.kernel_dot_s8(a, np.full(n, 127, np.int8), isa) == -16256 * n


@pytest.mark.parametrize("isa", ISAS)
def test_dot_rows_matches_dot(isa):
    """dot_rows_s8 is the exact int64 product; dot_rows_f32 equals dot_f32 bit for bit."""
    rng = np.random.default_rng(5)
    for d in (1, 15, 16, 17, 63, 64, 65, 127, 128, 129, 511, 512, 513):
        for n, pad in ((1, 0), (4, 0), (7, 3), (9, 64)):
            q8 = rng.integers(-128, 128, d, dtype=np.int8)
            r8 = rng.integers(-128, 128, (n, d + pad), dtype=np.int8)
            if d % 2:
                r8[0, :d] = -128
                q8[:] = -128
            want = r8[:, :d].astype(np.int64) @ q8.astype(np.int64)
            got = _core.kernel_dot_rows_s8(q8, r8, isa)
            np.testing.assert_array_equal(got, want, err_msg=f"dot_rows_s8 {isa} d={d} n={n} pad={pad}")
            qf = rng.normal(size=d).astype(np.float32)
            rf = rng.normal(size=(n, d + pad)).astype(np.float32)
            got = _core.kernel_dot_rows_f32(qf, rf, isa)
            single = np.array([_core.kernel_dot_f32(qf, np.ascontiguousarray(r[:d]), isa) for r in rf], np.float32)
            np.testing.assert_array_equal(got, single, err_msg=f"dot_rows_f32 {isa} d={d} n={n} pad={pad}")


def test_unsupported_isa_is_a_clear_error():
    others = {"scalar", "sse41", "avx2", "avx512", "neon", "neondot"} - set(_core.supported_isas())
    for name in others:
        with pytest.raises(RuntimeError, match="not compiled in or not supported"):
            _core.kernel_dot_f32(np.zeros(4, np.float32), np.zeros(4, np.float32), name)
    with pytest.raises(ValueError, match="unknown ISA"):
        _core.set_isa("sse9")


GEMM_DIMS = [1, 5, 6, 7, 15, 16, 17, 33, 100]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("accumulate", [False, True])
def test_gemm_f32(isa, accumulate):
    rng = np.random.default_rng(5)
    for m in GEMM_DIMS:
        for n in GEMM_DIMS:
            for k in [1, 5, 16, 17, 100, 300]:
                a = unaligned(rng.normal(size=(m, k)).astype(np.float32))
                b = unaligned(rng.normal(size=(k, n)).astype(np.float32))
                c = unaligned(rng.normal(size=(m, n)).astype(np.float32))
                got = _core.kernel_gemm_f32(a, b, c, accumulate, isa)
                want = _core.kernel_gemm_f32(a, b, c, accumulate, "scalar")
                scale = np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64))
                if accumulate:
                    scale += np.abs(c)
                err = np.abs(got.astype(np.float64) - want)
                assert (err <= 1e-5 * scale + 1e-30).all(), f"gemm_f32 {isa} m={m} n={n} k={k}"
                exact = a.astype(np.float64) @ b + (c if accumulate else 0)
                assert (np.abs(want - exact) <= 1e-5 * scale + 1e-30).all(), f"reference m={m} n={n} k={k}"


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("epilogue", ["relu_bias", "prelu", "leaky_clip"])
def test_conv_gemm_f32(isa, epilogue):
    rng = np.random.default_rng(9)
    for m in GEMM_DIMS:
        for n in GEMM_DIMS:
            for k in [1, 3, 27, 100, 300]:
                a = unaligned(rng.normal(size=(m, k)).astype(np.float32))
                b = unaligned(rng.normal(size=(k, n)).astype(np.float32))
                bias = unaligned(rng.normal(size=m).astype(np.float32))
                slopes = unaligned(rng.normal(size=m).astype(np.float32))
                args = {"relu_bias": (bias, None, 1.0, 0.0, np.inf),
                        "prelu": (bias, slopes, 1.0, -np.inf, np.inf),
                        "leaky_clip": (None, None, 0.1, -1.0, 2.0)}[epilogue]
                got = _core.kernel_conv_gemm_f32(a, b, *args, isa)
                # Bit-identical to the same ISA's GEMM followed by bias_act per row.
                want = _core.kernel_gemm_f32(a, b, np.zeros((m, n), np.float32), False, isa)
                for i in range(m):
                    want[i] = _core.kernel_bias_act_f32(
                        want[i], 0.0 if args[0] is None else args[0][i],
                        args[2] if args[1] is None else args[1][i], args[3], args[4], isa)
                np.testing.assert_array_equal(got, want, err_msg=f"conv_gemm_f32 {isa} m={m} n={n} k={k}")
                ref = _core.kernel_conv_gemm_f32(a, b, *args, "scalar")
                scale = np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64)) + 1.0
                assert (np.abs(got.astype(np.float64) - ref) <= 1e-5 * scale).all(), f"{isa} m={m} n={n} k={k}"


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("stride", [1, 2])
def test_dwconv3x3(isa, stride):
    rng = np.random.default_rng(6 + stride)
    for h in [1, 2, 3, 5, 8, 17, 29, 37]:
        for w in [1, 2, 3, 7, 8, 9, 16, 17, 18, 29, 33, 37]:
            src = unaligned(rng.normal(size=(h, w)).astype(np.float32))
            wt = rng.normal(size=9).astype(np.float32)
            out_h, out_w = (h - 1) // stride + 1, (w - 1) // stride + 1
            got = _core.kernel_dwconv3x3_f32(src, wt, stride, out_h, out_w, isa)
            want = _core.kernel_dwconv3x3_f32(src, wt, stride, out_h, out_w, "scalar")
            # numpy check of the reference: zero padding 1 on every side.
            pad = np.pad(src.astype(np.float64), 1)
            exact = np.zeros((out_h, out_w))
            for ky in range(3):
                for kx in range(3):
                    exact += wt[ky * 3 + kx] * pad[ky:ky + stride * (out_h - 1) + 1:stride,
                                                   kx:kx + stride * (out_w - 1) + 1:stride]
            close(want, exact, f"dwconv3x3 reference {h}x{w} s{stride}", rtol=1e-5, atol=1e-5)
            close(got, want, f"dwconv3x3_f32 {isa} {h}x{w} s{stride}", rtol=1e-5, atol=1e-5)
            # The fused epilogue is the bias_act step on the plain sum, bit for bit.
            fused = _core.kernel_dwconv3x3_f32(src, wt, stride, out_h, out_w, isa, 0.25, 0.1, -0.5, 1.5)
            np.testing.assert_array_equal(
                fused, _core.kernel_bias_act_f32(got.ravel(), 0.25, 0.1, -0.5, 1.5, isa).reshape(out_h, out_w))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("cin", [1, 2, 3, 4])
def test_conv3x3(isa, stride, cin):
    rng = np.random.default_rng(40 + 2 * cin + stride)
    shapes = [(oh, ow) for oh in [1, 2, 5, 17] for ow in range(1, 38, 3)] + [(37, 37), (3, 300)]
    for i, (out_h, out_w) in enumerate(shapes):
        cout = [1, 2, 3, 5, 7, 8, 13, 16, 17, 33][i % 10]
        # Input covered exactly by padding 1 on both sides, or one short of it (bottom/right
        # padding 0 then).
        short = i % 2
        in_h, in_w = max(1, (out_h - 1) * stride + 1 - short), max(1, (out_w - 1) * stride + 1 - short)
        src = unaligned(rng.normal(size=(cin, in_h, in_w)).astype(np.float32))
        wt = unaligned(rng.normal(size=(cout, cin, 3, 3)).astype(np.float32))
        bias = unaligned(rng.normal(size=cout).astype(np.float32))
        slopes = unaligned(rng.normal(size=cout).astype(np.float32))
        args = [(bias, None, 1.0, 0.0, np.inf), (bias, slopes, 1.0, -np.inf, np.inf),
                (None, None, 0.1, -1.0, 2.0)][i % 3]
        got = _core.kernel_conv3x3_f32(src, wt, stride, out_h, out_w, *args, isa)
        want = _core.kernel_conv3x3_f32(src, wt, stride, out_h, out_w, *args, "scalar")
        # numpy check of the reference: zero padding, then the bias/activation epilogue.
        pad = np.pad(src.astype(np.float64), ((0, 0), (1, 2), (1, 2)))
        exact = np.zeros((cout, out_h, out_w))
        for c in range(cin):
            for ky in range(3):
                for kx in range(3):
                    tap = pad[c, ky:ky + stride * (out_h - 1) + 1:stride, kx:kx + stride * (out_w - 1) + 1:stride]
                    exact += wt[:, c, ky, kx, None, None].astype(np.float64) * tap[None]
        b, per_row, s, lo, hi = args
        exact += 0.0 if b is None else b[:, None, None]
        slope = np.full(cout, s) if per_row is None else per_row.astype(np.float64)
        exact = np.where(exact < 0, exact * slope[:, None, None], exact)
        exact = np.minimum(np.maximum(exact, lo), hi)
        what = f"{out_h}x{out_w} cin={cin} cout={cout} s{stride}"
        close(want, exact, f"conv3x3 reference {what}", rtol=1e-5, atol=1e-4)
        close(got, want, f"conv3x3_f32 {isa} {what}", rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("params", [(0.5, 1.0, -np.inf, np.inf), (-0.25, 1.0, 0.0, np.inf),
                                    (0.1, 0.01, -np.inf, np.inf), (0.0, 1.0, 0.0, 6.0)])
def test_bias_act_exact(isa, params):
    rng = np.random.default_rng(8)
    for n in SIZES:
        x = unaligned((rng.normal(size=n) * 4).astype(np.float32))
        want = _core.kernel_bias_act_f32(x, *params, "scalar")
        got = _core.kernel_bias_act_f32(x, *params, isa)
        np.testing.assert_array_equal(got, want)
        bias, slope, lo, hi = params
        y = x + np.float32(bias)
        y = np.where(y < 0, y * np.float32(slope), y)
        np.testing.assert_array_equal(want, np.minimum(np.maximum(y, lo), hi).astype(np.float32))


def requant_numpy(acc, scale, zero_point, lo=-128, hi=127):
    """The requantisation rule of kernels.h, written independently: int32 -> float32, one
    float32 multiply, clamp to +-65536, round half to even, add the zero point, clamp."""
    f = acc.astype(np.float32) * np.float32(scale)
    f = np.clip(f, np.float32(-65536), np.float32(65536))
    r = np.rint(f).astype(np.int64) + zero_point
    return np.clip(r, lo, hi).astype(np.int8)


def test_requant_rule_half_even_and_saturation():
    acc = np.array([1, 3, 5, -1, -3, -5, 255, 257, -255, -257, 2**31 - 1, -2**31], np.int32)
    got = _core.kernel_requant_s32_s8(acc, 0.5, 0)
    np.testing.assert_array_equal(got, [0, 2, 2, 0, -2, -2, 127, 127, -128, -128, 127, -128])
    np.testing.assert_array_equal(got, requant_numpy(acc, 0.5, 0))
    # A fused ReLU with the zero point at its extreme: everything clamps to it or above.
    got = _core.kernel_requant_s32_s8(acc, 0.5, 127, lo=127)
    assert (got == 127).all()


@pytest.mark.parametrize("isa", ISAS)
# (130, 37, 1030): more rows than one block and k deeper than one panel (the blocked path).
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (7, 33, 17), (16, 100, 300), (33, 17, 5), (130, 37, 1030)])
def test_conv_gemm_s8_matches_numpy(isa, m, n, k):
    rng = np.random.default_rng(11)
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    b = rng.integers(-128, 128, (k, n), dtype=np.int8)
    z_in, z_out = -7, 12
    bias = rng.integers(-5000, 5000, m).astype(np.int32)
    # The caller folds the input zero point into the bias once (kernels.h).
    folded = (bias - z_in * a.astype(np.int64).sum(axis=1)).astype(np.int32)
    scale = (rng.uniform(0.5, 1.5, m) / (100.0 * np.sqrt(k))).astype(np.float32)
    acc = a.astype(np.int64) @ b.astype(np.int64) + folded[:, None]
    want = np.stack([requant_numpy(acc[i], scale[i], z_out, lo=z_out) for i in range(m)])
    for name in ("scalar", isa):
        got = _core.kernel_conv_gemm_s8(a, b, folded, scale, z_out, lo=z_out, isa=name)
        np.testing.assert_array_equal(got, want, err_msg=f"conv_gemm_s8 {name} m={m} n={n} k={k}")


# Widths around the 8/16/32/64-output blocks of the SIMD variants.
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("w", [1, 15, 17, 37, 63, 64, 65, 130])
@pytest.mark.parametrize("scale", [1 / 256, 1 / 8192])
def test_dwconv3x3_s8_matches_numpy(isa, stride, w, scale):
    rng = np.random.default_rng(12 + w)
    h, z_in = 9, 100
    src = rng.integers(-128, 128, (h, w), dtype=np.int8)
    wt = rng.integers(-128, 128, 9, dtype=np.int8)
    out_h, out_w = (h - 1) // stride + 1, (w - 1) // stride + 1
    padded = np.full((h + 2, w + 2), z_in, np.int64)  # padding holds z_in
    padded[1:h + 1, 1:w + 1] = src
    acc = np.full((out_h, out_w), 321, np.int64)
    for ky in range(3):
        for kx in range(3):
            acc += int(wt[ky * 3 + kx]) * padded[ky:ky + stride * out_h:stride, kx:kx + stride * out_w:stride]
    want = requant_numpy(acc, scale, -3)
    assert 0.05 < (np.abs(want.astype(int)) < 127).mean() or scale == 1 / 256  # not all saturated
    for name in ("scalar", isa):
        got = _core.kernel_dwconv3x3_s8(src, wt, 321, stride, out_h, out_w, z_in, scale, -3, isa=name)
        np.testing.assert_array_equal(got, want, err_msg=f"dwconv3x3_s8 {name} stride={stride} w={w}")
