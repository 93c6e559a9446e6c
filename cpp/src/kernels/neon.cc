// Advanced SIMD (NEON) kernels, the AArch64 baseline. Compiled with -march=armv8-a and
// -ffp-contract=off: the preprocessing kernels compute every float result with the same
// operations in the same order as the scalar reference (separate multiply and add, no FMA), so
// resample, blend, pack and warp (whose taps are then blended in integers) are bit-exact with
// it; accumulators start from +0 as the reference's do, which also reproduces its signed
// zeros. dot_f32 and the convolution kernels (gemm, conv_gemm, dwconv, conv3x3) fuse and
// reassociate with explicit FMA intrinsics, as kernels.h allows; their bias + activation
// epilogue is bit-identical to the reference's.
#include <arm_neon.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "conv3x3_driver.h"
#include "gemm_driver.h"
#include "dot_rows_driver.h"
#include "isa_fill.h"
#include "requant_neon.h"
#include "scalar_pixels.h"

namespace picoface {
namespace {

// ---------------------------------------------------------------------------------------------
// Small helpers

// Loads exactly n bytes (n <= 8) into the low lanes of a vector; never touches memory past
// p[n-1], which matters at the end of an image buffer.
template <int N>
inline uint8x8_t load_bytes(const std::uint8_t* p) {
  static_assert(N >= 1 && N <= 8, "load_bytes loads 1..8 bytes");
  std::uint64_t v = 0;
  std::memcpy(&v, p, N);  // little-endian: byte i lands in lane i
  return vcreate_u8(v);
}

inline float32x4_t u16_low_to_f32(uint16x8_t v) {
  return vcvtq_f32_u32(vmovl_u16(vget_low_u16(v)));
}
inline float32x4_t u16_high_to_f32(uint16x8_t v) { return vcvtq_f32_u32(vmovl_high_u16(v)); }

// Transposes four 4-lane rows in place: afterwards r[i] lane j holds the old r[j] lane i.
inline void transpose4(float32x4_t& r0, float32x4_t& r1, float32x4_t& r2, float32x4_t& r3) {
  const float32x4_t t0 = vtrn1q_f32(r0, r1), t1 = vtrn2q_f32(r0, r1);
  const float32x4_t t2 = vtrn1q_f32(r2, r3), t3 = vtrn2q_f32(r2, r3);
  r0 = vreinterpretq_f32_f64(vtrn1q_f64(vreinterpretq_f64_f32(t0), vreinterpretq_f64_f32(t2)));
  r1 = vreinterpretq_f32_f64(vtrn1q_f64(vreinterpretq_f64_f32(t1), vreinterpretq_f64_f32(t3)));
  r2 = vreinterpretq_f32_f64(vtrn2q_f64(vreinterpretq_f64_f32(t0), vreinterpretq_f64_f32(t2)));
  r3 = vreinterpretq_f32_f64(vtrn2q_f64(vreinterpretq_f64_f32(t1), vreinterpretq_f64_f32(t3)));
}

// ---------------------------------------------------------------------------------------------
// resample_row_u8

// One output pixel of the reference, for tails and layouts without a vector path.
inline void resample_pixel(const std::uint8_t* src, int channels, const std::int32_t* xofs,
                           const float* weights, int ntaps, int x, float* const* dst_planes) {
  const std::uint8_t* p = src + static_cast<std::ptrdiff_t>(xofs[x]) * channels;
  const float* w = weights + static_cast<std::ptrdiff_t>(x) * ntaps;
  for (int c = 0; c < channels; ++c) {
    float acc = 0.0f;
    for (int t = 0; t < ntaps; ++t) acc += w[t] * static_cast<float>(p[t * channels + c]);
    dst_planes[c][x] = acc;
  }
}

// channels == 1, ntaps == 2 (bilinear grey): eight outputs per step. Each output's two taps
// are adjacent bytes, loaded as one u16 lane and split into tap vectors with an unzip.
void resample_c1t2(const std::uint8_t* src, const std::int32_t* xofs, const float* weights,
                   int dst_w, float* dst) {
  const float32x4_t zero = vdupq_n_f32(0.0f);
  int x = 0;
  for (; x + 8 <= dst_w; x += 8) {
    std::uint16_t pairs[8];
    for (int i = 0; i < 8; ++i) std::memcpy(&pairs[i], src + xofs[x + i], 2);
    const uint8x16x2_t taps = vuzpq_u8(vreinterpretq_u8_u16(vld1q_u16(pairs)), vdupq_n_u8(0));
    const uint16x8_t t0 = vmovl_u8(vget_low_u8(taps.val[0]));
    const uint16x8_t t1 = vmovl_u8(vget_low_u8(taps.val[1]));
    const float32x4x2_t wa = vld2q_f32(weights + 2 * x);      // outputs x .. x+3
    const float32x4x2_t wb = vld2q_f32(weights + 2 * x + 8);  // outputs x+4 .. x+7
    float32x4_t lo = vaddq_f32(zero, vmulq_f32(wa.val[0], u16_low_to_f32(t0)));
    float32x4_t hi = vaddq_f32(zero, vmulq_f32(wb.val[0], u16_high_to_f32(t0)));
    lo = vaddq_f32(lo, vmulq_f32(wa.val[1], u16_low_to_f32(t1)));
    hi = vaddq_f32(hi, vmulq_f32(wb.val[1], u16_high_to_f32(t1)));
    vst1q_f32(dst + x, lo);
    vst1q_f32(dst + x + 4, hi);
  }
  float* const planes[1] = {dst};
  for (; x < dst_w; ++x) resample_pixel(src, 1, xofs, weights, 2, x, planes);
}

// channels == 1, any ntaps: four outputs per step, one gathered tap vector per tap.
void resample_c1(const std::uint8_t* src, const std::int32_t* xofs, const float* weights,
                 int ntaps, int dst_w, float* dst) {
  int x = 0;
  for (; x + 4 <= dst_w; x += 4) {
    const std::uint8_t* p[4] = {src + xofs[x], src + xofs[x + 1], src + xofs[x + 2],
                                src + xofs[x + 3]};
    const float* w = weights + static_cast<std::ptrdiff_t>(x) * ntaps;
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (int t = 0; t < ntaps; ++t) {
      const float wv[4] = {w[t], w[ntaps + t], w[2 * ntaps + t], w[3 * ntaps + t]};
      const float pv[4] = {static_cast<float>(p[0][t]), static_cast<float>(p[1][t]),
                           static_cast<float>(p[2][t]), static_cast<float>(p[3][t])};
      acc = vaddq_f32(acc, vmulq_f32(vld1q_f32(wv), vld1q_f32(pv)));
    }
    vst1q_f32(dst + x, acc);
  }
  float* const planes[1] = {dst};
  for (; x < dst_w; ++x) resample_pixel(src, 1, xofs, weights, ntaps, x, planes);
}

// Stores lanes 0..C-1 of four per-pixel vectors (pixel i in r[i]) to C planes at x.
template <int C>
inline void store_pixels4(float32x4_t r0, float32x4_t r1, float32x4_t r2, float32x4_t r3,
                          float* const* dst_planes, int x) {
  transpose4(r0, r1, r2, r3);
  vst1q_f32(dst_planes[0] + x, r0);
  vst1q_f32(dst_planes[1] + x, r1);
  if constexpr (C > 2) vst1q_f32(dst_planes[2] + x, r2);
  if constexpr (C > 3) vst1q_f32(dst_planes[3] + x, r3);
}

// channels == 3, ntaps == 2 (bilinear colour, the preprocessing hot path): one vector per
// output pixel holding its channels, both taps from one 6-byte load, four pixels transposed
// into the three planes.
void resample_c3t2(const std::uint8_t* src, const std::int32_t* xofs, const float* weights,
                   int dst_w, float* const* dst_planes) {
  const float32x4_t zero = vdupq_n_f32(0.0f);
  int x = 0;
  for (; x + 4 <= dst_w; x += 4) {
    float32x4_t r[4];
    for (int i = 0; i < 4; ++i) {
      const std::uint8_t* p = src + static_cast<std::ptrdiff_t>(xofs[x + i]) * 3;
      // Lanes: c0 c1 c2 of tap 0, then c0 c1 c2 of tap 1, then two zero lanes.
      const uint16x8_t v = vmovl_u8(load_bytes<6>(p));
      const float32x4_t tap0 = u16_low_to_f32(v);
      const float32x4_t tap1 = u16_low_to_f32(vextq_u16(v, v, 3));
      const float* w = weights + 2 * (x + i);
      r[i] = vaddq_f32(zero, vmulq_n_f32(tap0, w[0]));
      r[i] = vaddq_f32(r[i], vmulq_n_f32(tap1, w[1]));
    }
    store_pixels4<3>(r[0], r[1], r[2], r[3], dst_planes, x);
  }
  for (; x < dst_w; ++x) resample_pixel(src, 3, xofs, weights, 2, x, dst_planes);
}

// channels == C (2..4), any ntaps: one vector per output pixel holding its channels.
template <int C>
void resample_cn(const std::uint8_t* src, const std::int32_t* xofs, const float* weights,
                 int ntaps, int dst_w, float* const* dst_planes) {
  int x = 0;
  for (; x + 4 <= dst_w; x += 4) {
    float32x4_t r[4];
    for (int i = 0; i < 4; ++i) {
      const std::uint8_t* p = src + static_cast<std::ptrdiff_t>(xofs[x + i]) * C;
      const float* w = weights + static_cast<std::ptrdiff_t>(x + i) * ntaps;
      float32x4_t acc = vdupq_n_f32(0.0f);
      for (int t = 0; t < ntaps; ++t) {
        const float32x4_t v = u16_low_to_f32(vmovl_u8(load_bytes<C>(p + t * C)));
        acc = vaddq_f32(acc, vmulq_n_f32(v, w[t]));
      }
      r[i] = acc;
    }
    store_pixels4<C>(r[0], r[1], r[2], r[3], dst_planes, x);
  }
  for (; x < dst_w; ++x) resample_pixel(src, C, xofs, weights, ntaps, x, dst_planes);
}

void resample_row_u8(const std::uint8_t* src, int channels, const std::int32_t* xofs,
                     const float* weights, int ntaps, int dst_w, float* const* dst_planes) {
  switch (channels) {
    case 1:
      if (ntaps == 2) return resample_c1t2(src, xofs, weights, dst_w, dst_planes[0]);
      return resample_c1(src, xofs, weights, ntaps, dst_w, dst_planes[0]);
    case 2: return resample_cn<2>(src, xofs, weights, ntaps, dst_w, dst_planes);
    case 3:
      if (ntaps == 2) return resample_c3t2(src, xofs, weights, dst_w, dst_planes);
      return resample_cn<3>(src, xofs, weights, ntaps, dst_w, dst_planes);
    case 4: return resample_cn<4>(src, xofs, weights, ntaps, dst_w, dst_planes);
    default:
      for (int x = 0; x < dst_w; ++x) {
        resample_pixel(src, channels, xofs, weights, ntaps, x, dst_planes);
      }
  }
}

// ---------------------------------------------------------------------------------------------
// blend_rows_f32

void blend_rows_f32(const float* const* rows, const float* weights, int ntaps, int n,
                    float* out) {
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
    for (int t = 0; t < ntaps; ++t) {
      const float* r = rows[t] + i;
      const float w = weights[t];
      a0 = vaddq_f32(a0, vmulq_n_f32(vld1q_f32(r), w));
      a1 = vaddq_f32(a1, vmulq_n_f32(vld1q_f32(r + 4), w));
      a2 = vaddq_f32(a2, vmulq_n_f32(vld1q_f32(r + 8), w));
      a3 = vaddq_f32(a3, vmulq_n_f32(vld1q_f32(r + 12), w));
    }
    vst1q_f32(out + i, a0);
    vst1q_f32(out + i + 4, a1);
    vst1q_f32(out + i + 8, a2);
    vst1q_f32(out + i + 12, a3);
  }
  for (; i + 4 <= n; i += 4) {
    float32x4_t a = vdupq_n_f32(0.0f);
    for (int t = 0; t < ntaps; ++t) {
      a = vaddq_f32(a, vmulq_n_f32(vld1q_f32(rows[t] + i), weights[t]));
    }
    vst1q_f32(out + i, a);
  }
  for (; i < n; ++i) {
    float acc = 0.0f;
    for (int t = 0; t < ntaps; ++t) acc += weights[t] * rows[t][i];
    out[i] = acc;
  }
}

// ---------------------------------------------------------------------------------------------
// pack_row

// Quantises 4 values exactly as the reference: round half to even in float (FRINTN), add
// the zero point in float, clamp in float, then convert the integral value. vmaxnm returns
// the number when the other operand is NaN, so NaN becomes -128 as in the reference.
inline int32x4_t quantize4(float32x4_t v, float32x4_t inv_scale, float32x4_t zero_point) {
  float32x4_t q = vaddq_f32(vrndnq_f32(vmulq_f32(v, inv_scale)), zero_point);
  q = vminq_f32(vmaxnmq_f32(q, vdupq_n_f32(-128.0f)), vdupq_n_f32(127.0f));
  return vcvtq_s32_f32(q);
}

inline int8x8_t narrow8(int32x4_t lo, int32x4_t hi) {
  return vqmovn_s16(vcombine_s16(vqmovn_s32(lo), vqmovn_s32(hi)));
}

// Channel transform of 4 pixels: out[c] = bias[c] + m[c][0]*in0 + m[c][1]*in1 + ..., in
// the reference's order. Channel counts are template arguments so the coefficients stay in
// registers.
template <int IC, int OC>
struct PackTransform {
  float32x4_t m[OC][IC];
  float32x4_t bias[OC];
  bool nz[OC][IC];

  explicit PackTransform(const PackParams& p) {
    for (int c = 0; c < OC; ++c) {
      bias[c] = vdupq_n_f32(p.bias[c]);
      for (int k = 0; k < IC; ++k) {
        m[c][k] = vdupq_n_f32(p.matrix[c][k]);
        nz[c][k] = p.matrix[c][k] != 0.0f;  // the reference skips zero coefficients
      }
    }
  }

  inline void apply(const float* const* in, int i, float32x4_t out[OC]) const {
    float32x4_t x[IC];
    for (int k = 0; k < IC; ++k) x[k] = vld1q_f32(in[k] + i);
    for (int c = 0; c < OC; ++c) {
      float32x4_t v = bias[c];
      for (int k = 0; k < IC; ++k) {
        if (nz[c][k]) v = vaddq_f32(v, vmulq_f32(m[c][k], x[k]));
      }
      out[c] = v;
    }
  }
};

// Vector part of pack_row for planar (NCHW: pixel_stride 1) or, with OC == 3, interleaved
// (NHWC: pixel_stride 3, channel_stride 1) destinations. Returns the pixels done.
template <int IC, int OC>
int pack_fast(const float* const* in, int n, const PackParams& p, void* out) {
  const bool planar = p.pixel_stride == 1;
  const std::ptrdiff_t cs = p.channel_stride;
  const PackTransform<IC, OC> tf(p);
  int i = 0;
  if (!p.to_int8) {
    float* o = static_cast<float*>(out);
    for (; i + 4 <= n; i += 4) {
      float32x4_t v[OC];
      tf.apply(in, i, v);
      if constexpr (OC == 3) {
        if (!planar) {
          vst3q_f32(o + 3 * i, (float32x4x3_t{{v[0], v[1], v[2]}}));
          continue;
        }
      }
      for (int c = 0; c < OC; ++c) vst1q_f32(o + c * cs + i, v[c]);
    }
  } else {
    std::int8_t* o = static_cast<std::int8_t*>(out);
    const float32x4_t inv_scale = vdupq_n_f32(p.inv_scale);
    const float32x4_t zero_point = vdupq_n_f32(static_cast<float>(p.zero_point));
    for (; i + 8 <= n; i += 8) {
      float32x4_t lo[OC], hi[OC];
      tf.apply(in, i, lo);
      tf.apply(in, i + 4, hi);
      int8x8_t q[OC];
      for (int c = 0; c < OC; ++c) {
        q[c] = narrow8(quantize4(lo[c], inv_scale, zero_point),
                       quantize4(hi[c], inv_scale, zero_point));
      }
      if constexpr (OC == 3) {
        if (!planar) {
          vst3_s8(o + 3 * i, (int8x8x3_t{{q[0], q[1], q[2]}}));
          continue;
        }
      }
      for (int c = 0; c < OC; ++c) vst1_s8(o + c * cs + i, q[c]);
    }
  }
  return i;
}

void pack_row(const float* const* in, int n, const PackParams& p, void* out) {
  // Other stride combinations (and invalid channel counts) take the reference path.
  const bool planar = p.pixel_stride == 1;
  const bool interleaved3 = p.out_channels == 3 && p.pixel_stride == 3 && p.channel_stride == 1;
  int i = 0;
  if (planar || interleaved3) {
    const int key = p.in_channels * 10 + p.out_channels;
    switch (key) {
      case 11: i = pack_fast<1, 1>(in, n, p, out); break;
      case 13: i = pack_fast<1, 3>(in, n, p, out); break;
      case 31: i = pack_fast<3, 1>(in, n, p, out); break;
      case 33: i = pack_fast<3, 3>(in, n, p, out); break;
      default: break;
    }
  }
  for (; i < n; ++i) pack_pixel(in, i, p, out);
}

// ---------------------------------------------------------------------------------------------
// warp_affine_u8

// Fixed-point state of four consecutive outputs, as warp_pixel computes it: corners q >> 5,
// 1-D weights (32 - a, a) and (32 - b, b) with a = qx & 31, b = qy & 31.
struct WarpQuad {
  float32x4_t sx, sy;
  int32x4_t x0, y0, a, b;
  bool all_inside;  // every tap of every lane lies inside the source
};

inline WarpQuad warp_quad(const WarpParams& p, float32x4_t xs, float32x4_t row_x,
                          float32x4_t row_y) {
  WarpQuad q;
  // Same operations and order as the reference: (m0*x + m1*y) + m2, no fused multiply-add.
  q.sx = vaddq_f32(vaddq_f32(vmulq_n_f32(xs, p.m[0]), row_x), vdupq_n_f32(p.m[2]));
  q.sy = vaddq_f32(vaddq_f32(vmulq_n_f32(xs, p.m[3]), row_y), vdupq_n_f32(p.m[5]));
  // s*32 is exact; vcvtn rounds to nearest, ties to even, as nearbyint.
  const int32x4_t qx = vcvtnq_s32_f32(vmulq_n_f32(q.sx, 32.0f));
  const int32x4_t qy = vcvtnq_s32_f32(vmulq_n_f32(q.sy, 32.0f));
  q.x0 = vshrq_n_s32(qx, 5);
  q.y0 = vshrq_n_s32(qy, 5);
  const int32x4_t fraction = vdupq_n_s32(31);
  q.a = vandq_s32(qx, fraction);
  q.b = vandq_s32(qy, fraction);
  // The float tests 0 <= s < size reject NaN and huge coordinates, which vcvtn saturates (or
  // maps to 0) instead of failing; then the footprint is inside iff x0 <= src_w - 2 and
  // y0 <= src_h - 2 (x0, y0 >= 0 follows). A lane in [-1/64, 0) that the float test rejects
  // only costs the exact scalar path.
  const uint32x4_t ok_x =
      vandq_u32(vandq_u32(vcgeq_f32(q.sx, vdupq_n_f32(0.0f)),
                          vcltq_f32(q.sx, vdupq_n_f32(static_cast<float>(p.src_w)))),
                vcltq_s32(q.x0, vdupq_n_s32(p.src_w - 1)));
  const uint32x4_t ok_y =
      vandq_u32(vandq_u32(vcgeq_f32(q.sy, vdupq_n_f32(0.0f)),
                          vcltq_f32(q.sy, vdupq_n_f32(static_cast<float>(p.src_h)))),
                vcltq_s32(q.y0, vdupq_n_s32(p.src_h - 1)));
  q.all_inside = vminvq_u32(vandq_u32(ok_x, ok_y)) != 0;
  return q;
}

// channels == 1: lanes are pixels; each pixel's two taps per row are one u16 load. The
// horizontal blend (32 - a)*L + a*R is exact in u16 (at most 255*32), the vertical one in u32
// (at most 255*1024), and vrshrn adds 512 before the shift: exactly the reference's sum.
inline void warp_quad_c1(const WarpParams& p, const WarpQuad& q, std::uint8_t* d) {
  std::uint16_t top[4], bottom[4];
  for (int i = 0; i < 4; ++i) {
    const std::uint8_t* s = p.src + static_cast<std::ptrdiff_t>(q.y0[i]) * p.src_stride + q.x0[i];
    std::memcpy(&top[i], s, 2);
    std::memcpy(&bottom[i], s + p.src_stride, 2);
  }
  const uint8x8x2_t t = vuzp_u8(vreinterpret_u8_u16(vld1_u16(top)),
                                vreinterpret_u8_u16(vld1_u16(bottom)));
  // t.val[0]: left taps (top 4, bottom 4); t.val[1]: right taps.
  const uint16x4_t a = vmovn_u32(vreinterpretq_u32_s32(q.a));
  const uint16x4_t b = vmovn_u32(vreinterpretq_u32_s32(q.b));
  const uint16x4_t thirty_two = vdup_n_u16(32);
  const uint16x4_t ga = vsub_u16(thirty_two, a), gb = vsub_u16(thirty_two, b);
  const uint8x8_t wl = vmovn_u16(vcombine_u16(ga, ga)), wr = vmovn_u16(vcombine_u16(a, a));
  const uint16x8_t h = vmlal_u8(vmull_u8(t.val[0], wl), t.val[1], wr);  // top 4, bottom 4
  const uint32x4_t acc = vmlal_u16(vmull_u16(vget_low_u16(h), gb), vget_high_u16(h), b);
  const uint8x8_t out = vqmovn_u16(vcombine_u16(vrshrn_n_u32(acc, 10), vdup_n_u16(0)));
  const std::uint32_t bytes = vget_lane_u32(vreinterpret_u32_u8(out), 0);
  std::memcpy(d, &bytes, 4);
}

// channels == C (2..4): lanes are channels of one pixel; both taps of a row are one load of
// 2*C bytes. Vertical blend first, (32 - b)*top + b*bottom in u16 for both taps at once, then
// (32 - a)*left + a*right in u32; integer sums, so the order does not change the result.
template <int C>
inline void warp_quad_cn(const WarpParams& p, const WarpQuad& q, std::uint8_t* d) {
  alignas(16) std::int32_t a[4], b[4];
  vst1q_s32(a, q.a);
  vst1q_s32(b, q.b);
  uint16x4_t px[4];
  for (int i = 0; i < 4; ++i) {
    const std::uint8_t* s =
        p.src + static_cast<std::ptrdiff_t>(q.y0[i]) * p.src_stride + q.x0[i] * C;
    const uint8x8_t top = load_bytes<2 * C>(s);
    const uint8x8_t bottom = load_bytes<2 * C>(s + p.src_stride);
    const uint16x8_t v =
        vmlal_u8(vmull_u8(top, vdup_n_u8(static_cast<std::uint8_t>(32 - b[i]))), bottom,
                 vdup_n_u8(static_cast<std::uint8_t>(b[i])));
    const uint32x4_t acc =
        vmlal_n_u16(vmull_n_u16(vget_low_u16(v), static_cast<std::uint16_t>(32 - a[i])),
                    vget_low_u16(vextq_u16(v, v, C)), static_cast<std::uint16_t>(a[i]));
    px[i] = vrshrn_n_u32(acc, 10);
  }
  // Bytes 4*i + c hold channel c of pixel i; drop the unused lanes and store 4*C bytes.
  const uint8x16_t all = vcombine_u8(vqmovn_u16(vcombine_u16(px[0], px[1])),
                                     vqmovn_u16(vcombine_u16(px[2], px[3])));
  if constexpr (C == 4) {
    vst1q_u8(d, all);
  } else if constexpr (C == 3) {
    static const std::uint8_t kIdx[16] = {0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, 0, 0, 0, 0};
    const uint8x16_t packed = vqtbl1q_u8(all, vld1q_u8(kIdx));
    vst1_u8(d, vget_low_u8(packed));
    const std::uint32_t tail = vgetq_lane_u32(vreinterpretq_u32_u8(packed), 2);
    std::memcpy(d + 8, &tail, 4);
  } else {
    static const std::uint8_t kIdx[8] = {0, 1, 4, 5, 8, 9, 12, 13};
    vst1_u8(d, vqtbl1_u8(all, vld1_u8(kIdx)));
  }
}

void warp_affine_u8(const WarpParams& p) {
  const bool vector = p.channels >= 1 && p.channels <= 4;
  const float32x4_t step = vdupq_n_f32(4.0f);
  for (int y = 0; y < p.dst_h; ++y) {
    std::uint8_t* d = p.dst + static_cast<std::ptrdiff_t>(y) * p.dst_stride;
    const float yf = static_cast<float>(y);
    const float row_x = p.m[1] * yf, row_y = p.m[4] * yf;
    int x = 0;
    if (vector) {
      const float32x4_t rx = vdupq_n_f32(row_x), ry = vdupq_n_f32(row_y);
      const float first[4] = {0.0f, 1.0f, 2.0f, 3.0f};
      float32x4_t xs = vld1q_f32(first);
      for (; x + 4 <= p.dst_w; x += 4, xs = vaddq_f32(xs, step)) {
        const WarpQuad q = warp_quad(p, xs, rx, ry);
        std::uint8_t* o = d + static_cast<std::ptrdiff_t>(x) * p.channels;
        if (!q.all_inside) {
          for (int i = 0; i < 4; ++i) warp_pixel(p, q.sx[i], q.sy[i], o + i * p.channels);
          continue;
        }
        switch (p.channels) {
          case 1: warp_quad_c1(p, q, o); break;
          case 2: warp_quad_cn<2>(p, q, o); break;
          case 3: warp_quad_cn<3>(p, q, o); break;
          default: warp_quad_cn<4>(p, q, o); break;
        }
      }
    }
    for (; x < p.dst_w; ++x) {
      const float xf = static_cast<float>(x);
      const float sx = p.m[0] * xf + row_x + p.m[2];
      const float sy = p.m[3] * xf + row_y + p.m[5];
      warp_pixel(p, sx, sy, d + static_cast<std::ptrdiff_t>(x) * p.channels);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Dot products

// dot_f32's summation on R rows at once: every row keeps its own four accumulators and sees
// exactly dot_f32's operations (so dot_rows_f32 is bit-identical to it); the rows share each
// query load. Four independent accumulators per row hide the FMA latency; the reassociation
// is the documented difference from the reference's double accumulation.
template <int R>
inline void dot_f32_block(const float* q, const float* const* r, std::size_t n, float* out) {
  float32x4_t acc[R][4];
#pragma GCC unroll 4
  for (int j = 0; j < R; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = vdupq_n_f32(0.0f);
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const float32x4_t q0 = vld1q_f32(q + i), q1 = vld1q_f32(q + i + 4);
    const float32x4_t q2 = vld1q_f32(q + i + 8), q3 = vld1q_f32(q + i + 12);
#pragma GCC unroll 4
    for (int j = 0; j < R; ++j) {
      acc[j][0] = vfmaq_f32(acc[j][0], q0, vld1q_f32(r[j] + i));
      acc[j][1] = vfmaq_f32(acc[j][1], q1, vld1q_f32(r[j] + i + 4));
      acc[j][2] = vfmaq_f32(acc[j][2], q2, vld1q_f32(r[j] + i + 8));
      acc[j][3] = vfmaq_f32(acc[j][3], q3, vld1q_f32(r[j] + i + 12));
    }
  }
  for (; i + 4 <= n; i += 4) {
    const float32x4_t qv = vld1q_f32(q + i);
#pragma GCC unroll 4
    for (int j = 0; j < R; ++j) acc[j][0] = vfmaq_f32(acc[j][0], qv, vld1q_f32(r[j] + i));
  }
#pragma GCC unroll 4
  for (int j = 0; j < R; ++j) {
    float sum = vaddvq_f32(vaddq_f32(vaddq_f32(acc[j][0], acc[j][1]), vaddq_f32(acc[j][2], acc[j][3])));
    for (std::size_t t = i; t < n; ++t) sum += q[t] * r[j][t];
    out[j] = sum;
  }
}

float dot_f32(const float* a, const float* b, std::size_t n) {
  float s;
  dot_f32_block<1>(a, &b, n, &s);
  return s;
}

void dot_rows_f32(const float* q, const float* rows, std::size_t n_rows, std::size_t d, std::ptrdiff_t row_stride,
                  float* out) {
  dot_rows_blocked<4>(q, rows, n_rows, d, row_stride, out, kDotRowsF32PrefetchBytes,
                      [](auto rc, const float* qq, const float* const* r, std::size_t n, float* o) {
    dot_f32_block<decltype(rc)::value>(qq, r, n, o);
  });
}

std::int32_t dot_s8(const std::int8_t* a, const std::int8_t* b, std::size_t n) {
  // A product of two int8 fits int16 but the sum of two (up to 2 * 16384) does not, so each
  // widening multiply is pairwise-added into int32 straight away.
  int32x4_t s0 = vdupq_n_s32(0), s1 = s0;
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const int8x16_t a0 = vld1q_s8(a + i), b0 = vld1q_s8(b + i);
    const int8x16_t a1 = vld1q_s8(a + i + 16), b1 = vld1q_s8(b + i + 16);
    s0 = vpadalq_s16(s0, vmull_s8(vget_low_s8(a0), vget_low_s8(b0)));
    s1 = vpadalq_s16(s1, vmull_high_s8(a0, b0));
    s0 = vpadalq_s16(s0, vmull_s8(vget_low_s8(a1), vget_low_s8(b1)));
    s1 = vpadalq_s16(s1, vmull_high_s8(a1, b1));
  }
  for (; i + 8 <= n; i += 8) s0 = vpadalq_s16(s0, vmull_s8(vld1_s8(a + i), vld1_s8(b + i)));
  std::int32_t sum = vaddvq_s32(vaddq_s32(s0, s1));
  for (; i < n; ++i) sum += static_cast<std::int32_t>(a[i]) * b[i];
  return sum;
}

// dot_rows_s8: dot_s8's widening multiplies (vmull_s8, pairwise-accumulated into int32 with
// vpadalq_s16) on R rows that share each query load; vpaddq folds four rows' accumulators into
// one vector of four sums.
template <int R>
inline void dot_s8_block(const std::int8_t* q, const std::int8_t* const* r, std::size_t n, std::int32_t* out) {
  int32x4_t s0[R], s1[R];
#pragma GCC unroll 4
  for (int j = 0; j < R; ++j) s0[j] = s1[j] = vdupq_n_s32(0);
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const int8x16_t qv = vld1q_s8(q + i);
#pragma GCC unroll 4
    for (int j = 0; j < R; ++j) {
      const int8x16_t rv = vld1q_s8(r[j] + i);
      s0[j] = vpadalq_s16(s0[j], vmull_s8(vget_low_s8(qv), vget_low_s8(rv)));
      s1[j] = vpadalq_s16(s1[j], vmull_high_s8(qv, rv));
    }
  }
  for (; i + 8 <= n; i += 8) {
    const int8x8_t qv = vld1_s8(q + i);
#pragma GCC unroll 4
    for (int j = 0; j < R; ++j) s0[j] = vpadalq_s16(s0[j], vmull_s8(qv, vld1_s8(r[j] + i)));
  }
  if constexpr (R == 4) {
    const int32x4_t a0 = vaddq_s32(s0[0], s1[0]), a1 = vaddq_s32(s0[1], s1[1]);
    const int32x4_t a2 = vaddq_s32(s0[2], s1[2]), a3 = vaddq_s32(s0[3], s1[3]);
    vst1q_s32(out, vpaddq_s32(vpaddq_s32(a0, a1), vpaddq_s32(a2, a3)));
  } else {
#pragma GCC unroll 4
    for (int j = 0; j < R; ++j) out[j] = vaddvq_s32(vaddq_s32(s0[j], s1[j]));
  }
  for (; i < n; ++i) {
#pragma GCC unroll 4
    for (int j = 0; j < R; ++j) out[j] += static_cast<std::int32_t>(q[i]) * r[j][i];
  }
}

void dot_rows_s8(const std::int8_t* q, const std::int8_t* rows, std::size_t n_rows, std::size_t d,
                 std::ptrdiff_t row_stride, std::int32_t* out) {
  dot_rows_blocked<4>(q, rows, n_rows, d, row_stride, out, 0,
                      [](auto rc, const std::int8_t* qq, const std::int8_t* const* r, std::size_t n,
                             std::int32_t* o) {
    dot_s8_block<decltype(rc)::value>(qq, r, n, o);
  });
}

// ---------------------------------------------------------------------------------------------
// Convolution kernels. These fuse (FMA) and reassociate as kernels.h allows; the epilogue is
// the reference's compare-selects, so it is bit-identical on any sum it is given.

// Loads / stores the first n (0..4) floats of a vector without touching memory past p[n-1];
// missing lanes load as zero. Lane moves rather than memcpy: a library call in a tile's store
// would make the register allocator keep the other rows' accumulators in memory.
inline float32x4_t load_upto4(const float* p, std::size_t n) {
  if (n >= 4) return vld1q_f32(p);
  float32x4_t v = vdupq_n_f32(0.0f);
  switch (n) {
    case 3: v = vld1q_lane_f32(p + 2, v, 2); [[fallthrough]];
    case 2: v = vld1q_lane_f32(p + 1, v, 1); [[fallthrough]];
    case 1: v = vld1q_lane_f32(p, v, 0); break;
    default: break;
  }
  return v;
}
inline void store_upto4(float* p, float32x4_t v, std::size_t n) {
  if (n >= 4) return vst1q_f32(p, v);
  if (n & 2) {
    vst1_f32(p, vget_low_f32(v));
    p += 2;
    v = vextq_f32(v, v, 2);
  }
  if (n & 1) vst1q_lane_f32(p, v, 0);
}

// The bias_act_f32 step on one vector: the reference's compare-selects in its order. FMAX /
// FMIN would not do: they return NaN for a NaN operand and +0 for max(-0, +0), where the
// reference keeps y in both cases.
struct ActVec {
  float32x4_t bias, slope, lo, hi;
  explicit ActVec(const BiasActParams& p)
      : bias(vdupq_n_f32(p.bias)), slope(vdupq_n_f32(p.neg_slope)), lo(vdupq_n_f32(p.lo)), hi(vdupq_n_f32(p.hi)) {}
  float32x4_t operator()(float32x4_t x) const {
    float32x4_t y = vaddq_f32(x, bias);
    y = vbslq_f32(vcltzq_f32(y), vmulq_f32(y, slope), y);
    y = vbslq_f32(vcltq_f32(y, lo), lo, y);
    return vbslq_f32(vcltq_f32(hi, y), hi, y);
  }
};

void bias_act_f32(float* x, std::size_t n, const BiasActParams& p) {
  const ActVec act(p);
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const float32x4_t v0 = vld1q_f32(x + i), v1 = vld1q_f32(x + i + 4);
    const float32x4_t v2 = vld1q_f32(x + i + 8), v3 = vld1q_f32(x + i + 12);
    vst1q_f32(x + i, act(v0));
    vst1q_f32(x + i + 4, act(v1));
    vst1q_f32(x + i + 8, act(v2));
    vst1q_f32(x + i + 12, act(v3));
  }
  // The tail goes through the same vector step (lane-wise, so bit-identical) on a copy.
  for (; i < n; i += 4) store_upto4(x + i, act(load_upto4(x + i, n - i)), n - i);
}

// ---------------------------------------------------------------------------------------------
// gemm_f32: B is packed one 8-column panel at a time (kKc rows deep, zero-padded on the right,
// 8 KiB on the stack, so it stays in L1 while every 8-row tile of A sweeps it). The 8x8
// register tile holds 16 accumulators; A is read in place, one 4-float load per row covering
// four k steps, each step an FMA by lane (vfmaq_laneq_f32) against two panel loads: 16 + 8 + 2
// of the 32 vector registers. The loops over the tile's rows are unrolled by pragma: GCC
// scalarises the accumulator arrays into registers only once those loops are gone (otherwise
// it stores all 16 accumulators to the stack every k step).

constexpr std::size_t kGemmNr = 8;
constexpr std::size_t kGemmMr = 8;
constexpr std::size_t kGemmKc = 256;

void pack_panel8(const float* b, std::ptrdiff_t ldb, std::size_t kc, std::size_t nc, float* panel) {
  const std::size_t n0 = nc < 4 ? nc : 4, n1 = nc - n0;
  for (std::size_t p = 0; p < kc; ++p) {
    const float* row = b + static_cast<std::ptrdiff_t>(p) * ldb;
    vst1q_f32(panel + p * kGemmNr, load_upto4(row, n0));
    vst1q_f32(panel + p * kGemmNr + 4, load_upto4(row + 4, n1));
  }
}

// One k step of an MR-row tile: panel row bp times lane Q of each row's A vector.
template <int MR, int Q>
inline void gemm_step(const float* bp, const float32x4_t* av, float32x4_t* lo, float32x4_t* hi) {
  const float32x4_t b0 = vld1q_f32(bp), b1 = vld1q_f32(bp + 4);
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    lo[r] = vfmaq_laneq_f32(lo[r], b0, av[r], Q);
    hi[r] = vfmaq_laneq_f32(hi[r], b1, av[r], Q);
  }
}

inline void store_row8(float* cr, float32x4_t lo, float32x4_t hi, std::size_t nc, const TileStore& st, int r) {
  const std::size_t n0 = nc < 4 ? nc : 4, n1 = nc - n0;
  if (st.load_c) {
    lo = vaddq_f32(lo, load_upto4(cr, n0));
    hi = vaddq_f32(hi, load_upto4(cr + 4, n1));
  }
  if (st.epi) {
    const ActVec act(row_act(*st.epi, st.row0 + static_cast<std::size_t>(r)));
    lo = act(lo);
    hi = act(hi);
  }
  store_upto4(cr, lo, n0);
  store_upto4(cr + 4, hi, n1);
}

template <int MR>
void gemm_tile(std::size_t kc, const float* a, std::ptrdiff_t lda, const float* panel, float* c, std::ptrdiff_t ldc,
               std::size_t nc, const TileStore& st) {
  float32x4_t lo[MR], hi[MR];
  const float* ar[MR];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    lo[r] = hi[r] = vdupq_n_f32(0.0f);
    ar[r] = a + r * lda;
  }
  const float* bp = panel;
  std::size_t p = 0;
  for (; p + 4 <= kc; p += 4, bp += 4 * kGemmNr) {
    float32x4_t av[MR];  // lane q of av[r] is A[r][p + q]
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) av[r] = vld1q_f32(ar[r] + p);
    gemm_step<MR, 0>(bp, av, lo, hi);
    gemm_step<MR, 1>(bp + kGemmNr, av, lo, hi);
    gemm_step<MR, 2>(bp + 2 * kGemmNr, av, lo, hi);
    gemm_step<MR, 3>(bp + 3 * kGemmNr, av, lo, hi);
  }
  for (; p < kc; ++p, bp += kGemmNr) {
    float32x4_t av[MR];
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) av[r] = vld1q_dup_f32(ar[r] + p);
    gemm_step<MR, 0>(bp, av, lo, hi);
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) store_row8(c + r * ldc, lo[r], hi[r], nc, st, r);
}

// gemm_driver.h's view of the 8x8 tile.
struct NeonTile {
  static constexpr std::size_t kMr = kGemmMr, kNr = kGemmNr, kKc = kGemmKc;
  static void pack(const float* b, std::ptrdiff_t ldb, std::size_t kc, std::size_t nc, float* panel) {
    pack_panel8(b, ldb, kc, nc, panel);
  }
  template <int MR>
  static void tile(std::size_t kc, const float* a, std::ptrdiff_t lda, const float* panel, float* c,
                   std::ptrdiff_t ldc, std::size_t nc, const TileStore& st) {
    gemm_tile<MR>(kc, a, lda, panel, c, ldc, nc, st);
  }
  static void bias_act(float* x, std::size_t n, const BiasActParams& p) { bias_act_f32(x, n, p); }
};

void gemm_f32(std::size_t m, std::size_t n, std::size_t k, const float* a, std::ptrdiff_t lda, const float* b,
              std::ptrdiff_t ldb, float* c, std::ptrdiff_t ldc, bool accumulate) {
  gemm_blocked<NeonTile>(m, n, k, a, lda, b, ldb, c, ldc, accumulate, nullptr);
}

void conv_gemm_f32(std::size_t m, std::size_t n, std::size_t k, const float* a, std::ptrdiff_t lda, const float* b,
                   std::ptrdiff_t ldb, float* c, std::ptrdiff_t ldc, const RowBiasAct& e) {
  gemm_blocked<NeonTile>(m, n, k, a, lda, b, ldb, c, ldc, false, &e);
}

// ---------------------------------------------------------------------------------------------
// dwconv3x3_row_f32: 4 output columns per vector, every column including the borders (the rows
// are padded); stride 2 deinterleaves even/odd columns with vld2q. The main loop accumulates
// eight vectors at once: two FMA pipes of four cycles' latency (Neoverse, Cortex-A7x) need
// eight independent chains, and one chain would serialise all nine FMAs of a column. The
// epilogue runs in registers: 9 weights, 4 epilogue constants and 8 accumulators fit the 32.

// acc += the three taps of one padded row r (already offset to the vector's first column).
template <int S>
inline float32x4_t dw_taps(const float* r, const float32x4_t* w3, float32x4_t acc) {
  if constexpr (S == 1) {
    acc = vfmaq_f32(acc, w3[0], vld1q_f32(r));
    acc = vfmaq_f32(acc, w3[1], vld1q_f32(r + 1));
    return vfmaq_f32(acc, w3[2], vld1q_f32(r + 2));
  }
  // Columns 2i, 2i + 1 and 2i + 2 of four outputs: reads up to r[9], inside the padded row.
  const float32x4x2_t c01 = vld2q_f32(r), c23 = vld2q_f32(r + 2);
  acc = vfmaq_f32(acc, w3[0], c01.val[0]);
  acc = vfmaq_f32(acc, w3[1], c01.val[1]);
  return vfmaq_f32(acc, w3[2], c23.val[0]);
}

// U vectors of output columns from ox on; the last store keeps to out_w.
template <int S, int U>
inline void dw_block(const float* const* rows, const float32x4_t* wv, const ActVec& act, int ox, float* d,
                     int out_w) {
  float32x4_t acc[U];
  for (int u = 0; u < U; ++u) acc[u] = vdupq_n_f32(0.0f);
  for (int ky = 0; ky < 3; ++ky) {
    if (!rows[ky]) continue;
    const float* r = rows[ky] + S * ox;
    for (int u = 0; u < U; ++u) acc[u] = dw_taps<S>(r + S * 4 * u, wv + 3 * ky, acc[u]);
  }
  for (int u = 0; u < U; ++u) {
    const int col = ox + 4 * u;
    store_upto4(d + col, act(acc[u]), static_cast<std::size_t>(out_w - col));
  }
}

template <int S>
void dw_row(const float* const* rows, const float32x4_t* wv, const ActVec& act, float* d, int out_w) {
  int ox = 0;
  for (; ox + 32 <= out_w; ox += 32) dw_block<S, 8>(rows, wv, act, ox, d, out_w);
  for (; ox < out_w; ox += 4) dw_block<S, 1>(rows, wv, act, ox, d, out_w);
}

void dwconv3x3_row_f32(const float* const* rows, const float* w, int stride, float* dst, int out_w,
                       const BiasActParams& p) {
  float32x4_t wv[9];
  for (int t = 0; t < 9; ++t) wv[t] = vdupq_n_f32(w[t]);
  const ActVec act(p);
  if (stride == 1) dw_row<1>(rows, wv, act, dst, out_w);
  else dw_row<2>(rows, wv, act, dst, out_w);
}

// ---------------------------------------------------------------------------------------------
// conv3x3_f32 (driver in conv3x3_driver.h): each tap of a 16-column tile is four unaligned
// loads with no border test. The register tile is MB (at most 4) output channels x 16 columns: 4*MB accumulators, four loads and MB weight
// broadcasts per tap. MB = 6 would not fit: its 24 accumulators, 4 columns and 6 weights
// exceed the 32 registers and GCC keeps three accumulators in memory.


// Padded copy of input row `row` for the chunk of ncr (a multiple of 16) output columns from
// x0: with Q[j] = row[x0*stride - 1 + j] (zero outside the row), stride 1 stores buf[j] = Q[j]
// for j < ncr + 2; stride 2 stores buf[i] = Q[2i] and buf[kC3Half + i] = Q[2i + 1] for i <= ncr.
void c3_fill(const float* row, int in_w, int x0, int ncr, int stride, float* buf) {
  const int base = x0 * stride - 1;
  auto q = [&](int j) {
    const int ix = base + j;
    return ix >= 0 && ix < in_w ? row[ix] : 0.0f;
  };
  if (stride == 1) {
    for (int j = 0; j < ncr + 2;) {
      if (base + j >= 0 && base + j + 4 <= in_w && j + 4 <= ncr + 2) {
        vst1q_f32(buf + j, vld1q_f32(row + base + j));
        j += 4;
      } else {
        buf[j] = q(j);
        ++j;
      }
    }
    return;
  }
  for (int i = 0; i <= ncr;) {
    if (base + 2 * i >= 0 && base + 2 * i + 8 <= in_w && i + 4 <= ncr + 1) {
      const float32x4x2_t eo = vld2q_f32(row + base + 2 * i);
      vst1q_f32(buf + i, eo.val[0]);
      vst1q_f32(buf + kC3Half + i, eo.val[1]);
      i += 4;
    } else {
      buf[i] = q(2 * i);
      buf[kC3Half + i] = q(2 * i + 1);
      ++i;
    }
  }
}

// The taps of one output row: tap t reads 16 columns at tap[t] + i0 and weight w[widx[t]].
// Output channels m0..m0+MB-1, columns [i0, i0 + count) of the chunk (count <= 16); out points
// at column 0 of the chunk in channel m0's output row. Row loops unrolled as in gemm_tile.
template <int MB>
inline void c3_tile(const C3Taps& t, int i0, int count, const float* w, int wstride, float* out,
                    std::ptrdiff_t out_plane, int m0, const RowBiasAct& e) {
  float32x4_t acc[MB][4];
#pragma GCC unroll 4
  for (int m = 0; m < MB; ++m) acc[m][0] = acc[m][1] = acc[m][2] = acc[m][3] = vdupq_n_f32(0.0f);
  for (int k = 0; k < t.n; ++k) {
    const float* x = t.tap[k] + i0;
    const float32x4_t x0 = vld1q_f32(x), x1 = vld1q_f32(x + 4), x2 = vld1q_f32(x + 8), x3 = vld1q_f32(x + 12);
    const float* wk = w + t.widx[k];
#pragma GCC unroll 4
    for (int m = 0; m < MB; ++m) {
      const float32x4_t wv = vld1q_dup_f32(wk + m * wstride);
      acc[m][0] = vfmaq_f32(acc[m][0], wv, x0);
      acc[m][1] = vfmaq_f32(acc[m][1], wv, x1);
      acc[m][2] = vfmaq_f32(acc[m][2], wv, x2);
      acc[m][3] = vfmaq_f32(acc[m][3], wv, x3);
    }
  }
#pragma GCC unroll 4
  for (int m = 0; m < MB; ++m) {
    const ActVec act(row_act(e, static_cast<std::size_t>(m0 + m)));
    float* d = out + m * out_plane + i0;
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) {
      const int left = count - 4 * v;
      if (left > 0) store_upto4(d + 4 * v, act(acc[m][v]), static_cast<std::size_t>(left));
    }
  }
}

template <int MB>
void c3_block(const C3Taps& t, int nc, const float* w, int wstride, float* out, std::ptrdiff_t out_plane, int m0,
              const RowBiasAct& e) {
  for (int i0 = 0; i0 < nc; i0 += 16) c3_tile<MB>(t, i0, std::min(16, nc - i0), w, wstride, out, out_plane, m0, e);
}

// conv3x3_driver.h's view of the register tiles.
struct NeonConv3x3 {
  static constexpr int kMb = 4, kCols = 16;
  static void fill(const float* row, int in_w, int x0, int ncr, int stride, float* buf) {
    c3_fill(row, in_w, x0, ncr, stride, buf);
  }
  template <int MB>
  static void block(const C3Taps& t, int nc, const float* w, int wstride, float* out, std::ptrdiff_t out_plane, int m0,
                    const RowBiasAct& e) {
    c3_block<MB>(t, nc, w, wstride, out, out_plane, m0, e);
  }
};

void conv3x3_f32(const float* src, int cin, int in_h, int in_w, const float* w, int cout, int stride, float* dst,
                 int out_h, int out_w, const RowBiasAct& e) {
  conv3x3_driver<NeonConv3x3>(src, cin, in_h, in_w, w, cout, stride, dst, out_h, out_w, e);
}

// ---------------------------------------------------------------------------------------------
// int8 kernels: exact widening multiplies. vmull_s8 gives int16 products (|x*w| <= 2^14, so no
// overflow) and vpadalq_s16 adds adjacent pairs of them into int32 lanes; two products summed
// in int16 could reach 2^15, so nothing is accumulated at 16 bits.

void requant_s32_s8(const std::int32_t* x, std::size_t n, const RequantParams& q, std::int8_t* y) {
  requant_row_neon(x, n, q, y);
}

// add_s8: add1's steps on 4 int32 lanes, 8 values per step.
void add_s8(const std::int8_t* a, const std::int8_t* b, std::size_t n, const AddParams& p, std::int8_t* y) {
  const float32x4_t sa = vdupq_n_f32(p.a_scale), sb = vdupq_n_f32(p.b_scale);
  const float32x4_t clamp_lo = vdupq_n_f32(-kRequantClamp), clamp_hi = vdupq_n_f32(kRequantClamp);
  const int32x4_t za = vdupq_n_s32(p.a_zero_point), zb = vdupq_n_s32(p.b_zero_point), zp = vdupq_n_s32(p.zero_point);
  const int32x4_t lo = vdupq_n_s32(p.lo), hi = vdupq_n_s32(p.hi);
  auto four = [&](int16x4_t a4, int16x4_t b4) {
    const float32x4_t fa = vmulq_f32(vcvtq_f32_s32(vsubq_s32(vmovl_s16(a4), za)), sa);
    const float32x4_t fb = vmulq_f32(vcvtq_f32_s32(vsubq_s32(vmovl_s16(b4), zb)), sb);
    const float32x4_t f = vminq_f32(vmaxq_f32(vaddq_f32(fa, fb), clamp_lo), clamp_hi);
    return vqmovn_s32(vminq_s32(vmaxq_s32(vaddq_s32(vcvtnq_s32_f32(f), zp), lo), hi));
  };
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const int16x8_t a8 = vmovl_s8(vld1_s8(a + i)), b8 = vmovl_s8(vld1_s8(b + i));
    const int16x4_t r0 = four(vget_low_s16(a8), vget_low_s16(b8)), r1 = four(vget_high_s16(a8), vget_high_s16(b8));
    vst1_s8(y + i, vqmovn_s16(vcombine_s16(r0, r1)));
  }
  for (; i < n; ++i) y[i] = add1(a[i], b[i], p);
}

// conv_gemm_s8: the B panel holds pairs of consecutive k as adjacent bytes of each column (16
// columns, 32 bytes per pair); a row's A pair is repeated over 8 bytes, so one vmull_s8 +
// vpadalq_s16 adds two k of four columns. 4x16 tile: 16 accumulators.
struct NeonTileS8 {
  static constexpr std::size_t kMr = 4;
  static constexpr std::size_t kNr = 16;
  static constexpr std::size_t kKc = 1024;
  static constexpr std::size_t kPanelBytes = kKc * kNr;

  static void pack(const std::int8_t* b, std::ptrdiff_t ldb, std::size_t kc, std::size_t nc, void* out) {
    std::int8_t* panel = static_cast<std::int8_t*>(out);
    for (std::size_t p = 0; p < kc; p += 2, panel += 2 * kNr) {
      const std::int8_t* r0 = b + static_cast<std::ptrdiff_t>(p) * ldb;
      if (nc == kNr && p + 1 < kc) {
        const int8x16x2_t z = vzipq_s8(vld1q_s8(r0), vld1q_s8(r0 + ldb));
        vst1q_s8(panel, z.val[0]);
        vst1q_s8(panel + 16, z.val[1]);
        continue;
      }
      for (std::size_t j = 0; j < kNr; ++j) {
        panel[2 * j] = j < nc ? r0[j] : 0;
        panel[2 * j + 1] = j < nc && p + 1 < kc ? r0[ldb + static_cast<std::ptrdiff_t>(j)] : 0;
      }
    }
  }

  static std::int32_t row_offset(const std::int8_t*, std::size_t) { return 0; }

  template <int MR>
  static void tile(std::size_t kc, const std::int8_t* a, std::ptrdiff_t lda, const void* panel_v, std::int32_t* acc) {
    const std::int8_t* panel = static_cast<const std::int8_t*>(panel_v);
    int32x4_t c[MR][4];
    for (int r = 0; r < MR; ++r) {
      for (int v = 0; v < 4; ++v) c[r][v] = vld1q_s32(acc + r * kNr + 4 * v);
    }
    for (std::size_t p = 0; p < kc; p += 2, panel += 2 * kNr) {
      const int8x16_t b0 = vld1q_s8(panel), b1 = vld1q_s8(panel + 16);
      for (int r = 0; r < MR; ++r) {
        const std::uint32_t g = load_group<2>(a + r * lda + static_cast<std::ptrdiff_t>(p), kc - p);
        const int8x8_t av = vreinterpret_s8_u16(vdup_n_u16(static_cast<std::uint16_t>(g)));
        c[r][0] = vpadalq_s16(c[r][0], vmull_s8(vget_low_s8(b0), av));
        c[r][1] = vpadalq_s16(c[r][1], vmull_s8(vget_high_s8(b0), av));
        c[r][2] = vpadalq_s16(c[r][2], vmull_s8(vget_low_s8(b1), av));
        c[r][3] = vpadalq_s16(c[r][3], vmull_s8(vget_high_s8(b1), av));
      }
    }
    for (int r = 0; r < MR; ++r) {
      for (int v = 0; v < 4; ++v) vst1q_s32(acc + r * kNr + 4 * v, c[r][v]);
    }
  }

  static void requant(const std::int32_t* x, std::size_t n, const RequantParams& q, std::int8_t* y) {
    requant_row_neon(x, n, q, y);
  }
};

void conv_gemm_s8(std::size_t m, std::size_t n, std::size_t k, const std::int8_t* a, std::ptrdiff_t lda,
                  const std::int8_t* b, std::ptrdiff_t ldb, const std::int32_t* bias, std::int8_t* c,
                  std::ptrdiff_t ldc, const RequantParams& q) {
  conv_gemm_s8_blocked<NeonTileS8>(m, n, k, a, lda, b, ldb, bias, c, ldc, q);
}

// dwconv3x3_row_s8: 8 outputs per block, each tap sign-extended to int16 and multiplied into
// int32 by vmlal_n_s16 (exact); stride 2 takes even and odd columns from vld2_s8.
template <int S>
inline int8x8_t dw_block_s8(const std::int8_t* const* rows, const std::int8_t* w, std::int32_t bias, int ox,
                            const RequantNeon& rq) {
  int32x4_t lo = vdupq_n_s32(bias), hi = lo;
  for (int ky = 0; ky < 3; ++ky) {
    const std::int8_t* r = rows[ky] + S * ox;
    int16x8_t x[3];
    if (S == 1) {
      for (int kx = 0; kx < 3; ++kx) x[kx] = vmovl_s8(vld1_s8(r + kx));
    } else {
      const int8x8x2_t eo = vld2_s8(r);
      x[0] = vmovl_s8(eo.val[0]);
      x[1] = vmovl_s8(eo.val[1]);
      x[2] = vmovl_s8(vld2_s8(r + 2).val[0]);
    }
    for (int kx = 0; kx < 3; ++kx) {
      const std::int16_t wt = w[3 * ky + kx];
      lo = vmlal_n_s16(lo, vget_low_s16(x[kx]), wt);
      hi = vmlal_high_n_s16(hi, x[kx], wt);
    }
  }
  return rq(lo, hi);
}

void dwconv3x3_row_s8(const std::int8_t* const* rows, const std::int8_t* w, std::int32_t bias, int stride,
                      std::int8_t* dst, int out_w, const RequantParams& q) {
  const RequantNeon rq(q);
  for (int ox = 0; ox < out_w; ox += 8) {
    const int8x8_t v = stride == 1 ? dw_block_s8<1>(rows, w, bias, ox, rq) : dw_block_s8<2>(rows, w, bias, ox, rq);
    store_s8(dst + ox, v, static_cast<std::size_t>(out_w - ox));
  }
}

}  // namespace

void fill_neon(KernelTable* t) {
  t->resample_row_u8 = resample_row_u8;
  t->blend_rows_f32 = blend_rows_f32;
  t->pack_row = pack_row;
  t->warp_affine_u8 = warp_affine_u8;
  t->dot_f32 = dot_f32;
  t->dot_s8 = dot_s8;
  t->dot_rows_f32 = dot_rows_f32;
  t->dot_rows_s8 = dot_rows_s8;
  t->gemm_f32 = gemm_f32;
  t->conv_gemm_f32 = conv_gemm_f32;
  t->dwconv3x3_row_f32 = dwconv3x3_row_f32;
  t->conv3x3_f32 = conv3x3_f32;
  t->bias_act_f32 = bias_act_f32;
  t->requant_s32_s8 = requant_s32_s8;
  t->conv_gemm_s8 = conv_gemm_s8;
  t->add_s8 = add_s8;
  t->dwconv3x3_row_s8 = dwconv3x3_row_s8;
}

}  // namespace picoface
