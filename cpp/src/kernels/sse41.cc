// SSE4.1 kernels. Preprocessing kernels (resample, blend, pack) evaluate the reference's
// float operations in the reference's order without FMA, and warp its integer ones, so they
// are bit-exact with it and the whole preprocessing pipeline gives identical tensors on every
// x86 level. Loads never touch
// a byte the reference does not read: rows may end at the last tap.
#include <smmintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "dot_rows_driver.h"
#include "isa_fill.h"
#include "scalar_pixels.h"

namespace picoface {
namespace {

// `ch` (1..4) bytes into the low lanes, reading exactly those bytes.
inline __m128i load_pixel_u8(const std::uint8_t* p, int ch) {
  std::uint32_t v = 0;
  switch (ch) {
    case 1: v = p[0]; break;
    case 2: {
      std::uint16_t s;
      std::memcpy(&s, p, 2);
      v = s;
      break;
    }
    case 3: {
      std::uint16_t s;
      std::memcpy(&s, p, 2);
      v = s | (static_cast<std::uint32_t>(p[2]) << 16);
      break;
    }
    default: std::memcpy(&v, p, 4); break;
  }
  return _mm_cvtsi32_si128(static_cast<int>(v));
}

inline __m128 u8x4_to_ps(__m128i v) { return _mm_cvtepi32_ps(_mm_cvtepu8_epi32(v)); }

inline std::uint16_t load_u16(const std::uint8_t* p) {
  std::uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// Bytes 0..5 of p (two adjacent 3-channel pixels) in the low lanes, with one 4-byte and one
// 2-byte load so nothing past them is read.
inline __m128i load_six_u8(const std::uint8_t* p) {
  std::uint32_t lo;
  std::memcpy(&lo, p, 4);
  return _mm_insert_epi16(_mm_cvtsi32_si128(static_cast<int>(lo)), load_u16(p + 4), 2);
}

// ---------------------------------------------------------------------------------------
// resample_row_u8

// One destination pixel with its channels in lanes; lanes >= channels are don't-care.
inline __m128 resample_pixel(const std::uint8_t* src, int ch, const std::int32_t* xofs,
                             const float* weights, int ntaps, int x) {
  const std::uint8_t* p = src + static_cast<std::ptrdiff_t>(xofs[x]) * ch;
  const float* w = weights + static_cast<std::ptrdiff_t>(x) * ntaps;
  if (ch == 3 && ntaps == 2) {
    const __m128i v = load_six_u8(p);  // both taps
    const __m128 a = _mm_mul_ps(_mm_set1_ps(w[0]), u8x4_to_ps(v));
    return _mm_add_ps(a, _mm_mul_ps(_mm_set1_ps(w[1]), u8x4_to_ps(_mm_srli_si128(v, 3))));
  }
  __m128 acc = _mm_mul_ps(_mm_set1_ps(w[0]), u8x4_to_ps(load_pixel_u8(p, ch)));
  for (int t = 1; t < ntaps; ++t) {
    acc = _mm_add_ps(acc, _mm_mul_ps(_mm_set1_ps(w[t]), u8x4_to_ps(load_pixel_u8(p + t * ch, ch))));
  }
  return acc;
}

// Single channel: four destination pixels per vector, taps gathered with scalar loads.
void resample_row_c1(const std::uint8_t* src, const std::int32_t* xofs, const float* weights,
                     int ntaps, int dst_w, float* dst) {
  int x = 0;
  if (ntaps == 2) {
    const __m128i lo_mask = _mm_set1_epi32(0xFF);
    for (; x + 4 <= dst_w; x += 4) {
      const __m128i pairs =
          _mm_setr_epi32(load_u16(src + xofs[x]), load_u16(src + xofs[x + 1]),
                         load_u16(src + xofs[x + 2]), load_u16(src + xofs[x + 3]));
      const __m128 v0 = _mm_cvtepi32_ps(_mm_and_si128(pairs, lo_mask));
      const __m128 v1 = _mm_cvtepi32_ps(_mm_srli_epi32(pairs, 8));
      const __m128 wa = _mm_loadu_ps(weights + 2 * x);
      const __m128 wb = _mm_loadu_ps(weights + 2 * x + 4);
      const __m128 w0 = _mm_shuffle_ps(wa, wb, _MM_SHUFFLE(2, 0, 2, 0));
      const __m128 w1 = _mm_shuffle_ps(wa, wb, _MM_SHUFFLE(3, 1, 3, 1));
      _mm_storeu_ps(dst + x, _mm_add_ps(_mm_mul_ps(w0, v0), _mm_mul_ps(w1, v1)));
    }
  } else {
    for (; x + 4 <= dst_w; x += 4) {
      const std::uint8_t* p0 = src + xofs[x];
      const std::uint8_t* p1 = src + xofs[x + 1];
      const std::uint8_t* p2 = src + xofs[x + 2];
      const std::uint8_t* p3 = src + xofs[x + 3];
      const float* w = weights + static_cast<std::ptrdiff_t>(x) * ntaps;
      __m128 acc = _mm_setzero_ps();
      for (int t = 0; t < ntaps; ++t) {
        const __m128 v = _mm_cvtepi32_ps(_mm_setr_epi32(p0[t], p1[t], p2[t], p3[t]));
        const __m128 wt = _mm_setr_ps(w[t], w[ntaps + t], w[2 * ntaps + t], w[3 * ntaps + t]);
        const __m128 prod = _mm_mul_ps(wt, v);
        acc = t == 0 ? prod : _mm_add_ps(acc, prod);
      }
      _mm_storeu_ps(dst + x, acc);
    }
  }
  for (; x < dst_w; ++x) {
    const std::uint8_t* p = src + xofs[x];
    const float* w = weights + static_cast<std::ptrdiff_t>(x) * ntaps;
    float acc = 0.0f;
    for (int t = 0; t < ntaps; ++t) acc += w[t] * static_cast<float>(p[t]);
    dst[x] = acc;
  }
}

void resample_row_u8(const std::uint8_t* src, int channels, const std::int32_t* xofs,
                     const float* weights, int ntaps, int dst_w, float* const* dst_planes) {
  if (channels == 1) {
    resample_row_c1(src, xofs, weights, ntaps, dst_w, dst_planes[0]);
    return;
  }
  int x = 0;
  for (; x + 4 <= dst_w; x += 4) {
    __m128 r0 = resample_pixel(src, channels, xofs, weights, ntaps, x);
    __m128 r1 = resample_pixel(src, channels, xofs, weights, ntaps, x + 1);
    __m128 r2 = resample_pixel(src, channels, xofs, weights, ntaps, x + 2);
    __m128 r3 = resample_pixel(src, channels, xofs, weights, ntaps, x + 3);
    _MM_TRANSPOSE4_PS(r0, r1, r2, r3);  // pixels-in-lanes -> one vector per plane
    _mm_storeu_ps(dst_planes[0] + x, r0);
    _mm_storeu_ps(dst_planes[1] + x, r1);
    if (channels > 2) _mm_storeu_ps(dst_planes[2] + x, r2);
    if (channels > 3) _mm_storeu_ps(dst_planes[3] + x, r3);
  }
  for (; x < dst_w; ++x) {
    alignas(16) float v[4];
    _mm_store_ps(v, resample_pixel(src, channels, xofs, weights, ntaps, x));
    for (int c = 0; c < channels; ++c) dst_planes[c][x] = v[c];
  }
}

// ---------------------------------------------------------------------------------------
// blend_rows_f32

void blend_rows_f32(const float* const* rows, const float* weights, int ntaps, int n,
                    float* out) {
  int i = 0;
  if (ntaps == 2) {
    const float* r0 = rows[0];
    const float* r1 = rows[1];
    const __m128 w0 = _mm_set1_ps(weights[0]);
    const __m128 w1 = _mm_set1_ps(weights[1]);
    for (; i + 8 <= n; i += 8) {
      const __m128 a = _mm_add_ps(_mm_mul_ps(w0, _mm_loadu_ps(r0 + i)),
                                  _mm_mul_ps(w1, _mm_loadu_ps(r1 + i)));
      const __m128 b = _mm_add_ps(_mm_mul_ps(w0, _mm_loadu_ps(r0 + i + 4)),
                                  _mm_mul_ps(w1, _mm_loadu_ps(r1 + i + 4)));
      _mm_storeu_ps(out + i, a);
      _mm_storeu_ps(out + i + 4, b);
    }
  } else {
    for (; i + 4 <= n; i += 4) {
      __m128 acc = _mm_mul_ps(_mm_set1_ps(weights[0]), _mm_loadu_ps(rows[0] + i));
      for (int t = 1; t < ntaps; ++t) {
        acc = _mm_add_ps(acc, _mm_mul_ps(_mm_set1_ps(weights[t]), _mm_loadu_ps(rows[t] + i)));
      }
      _mm_storeu_ps(out + i, acc);
    }
  }
  for (; i < n; ++i) {
    float acc = 0.0f;
    for (int t = 0; t < ntaps; ++t) acc += weights[t] * rows[t][i];
    out[i] = acc;
  }
}

// ---------------------------------------------------------------------------------------
// pack_row

struct PackConsts {
  __m128 m[3][3], bias[3], inv_scale, zero_point, lo, hi;
  bool nz[3][3];  // the reference skips zero coefficients
  explicit PackConsts(const PackParams& p) {
    for (int c = 0; c < 3; ++c) {
      for (int k = 0; k < 3; ++k) {
        m[c][k] = _mm_set1_ps(p.matrix[c][k]);
        nz[c][k] = p.matrix[c][k] != 0.0f;
      }
      bias[c] = _mm_set1_ps(p.bias[c]);
    }
    inv_scale = _mm_set1_ps(p.inv_scale);
    zero_point = _mm_set1_ps(static_cast<float>(p.zero_point));
    lo = _mm_set1_ps(-128.0f);
    hi = _mm_set1_ps(127.0f);
  }
};

// Four pixels of every output channel; bias first, then inputs in order, as the reference.
inline void transform4(const __m128* x, int in_ch, int out_ch, const PackConsts& k, __m128* v) {
  for (int c = 0; c < out_ch; ++c) {
    __m128 acc = k.bias[c];
    for (int j = 0; j < in_ch; ++j) {
      if (k.nz[c][j]) acc = _mm_add_ps(acc, _mm_mul_ps(k.m[c][j], x[j]));
    }
    v[c] = acc;
  }
}

// Round half to even (the instruction's explicit mode, equal to nearbyint's default), add the
// zero point as float, clamp. max_ps returns its second operand when either is NaN, which is
// the reference's "NaN saturates low".
inline __m128i quantize4(__m128 v, const PackConsts& k) {
  __m128 q = _mm_round_ps(_mm_mul_ps(v, k.inv_scale), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  q = _mm_add_ps(q, k.zero_point);
  q = _mm_min_ps(_mm_max_ps(q, k.lo), k.hi);
  return _mm_cvtps_epi32(q);  // integral and in range: exact
}

void pack_row(const float* const* in, int n, const PackParams& p, void* out) {
  const PackConsts k(p);
  const int ic = p.in_channels;
  const int oc = p.out_channels;
  const bool planar = p.pixel_stride == 1;
  float* fout = static_cast<float*>(out);
  std::int8_t* qout = static_cast<std::int8_t*>(out);
  for (int i = 0; i < n; i += 4) {
    const int count = n - i < 4 ? n - i : 4;
    __m128 x[3];
    for (int j = 0; j < ic; ++j) {
      if (count == 4) {
        x[j] = _mm_loadu_ps(in[j] + i);
      } else {
        alignas(16) float tail[4] = {0, 0, 0, 0};
        std::memcpy(tail, in[j] + i, sizeof(float) * count);
        x[j] = _mm_load_ps(tail);
      }
    }
    __m128 v[3];
    transform4(x, ic, oc, k, v);
    for (int c = 0; c < oc; ++c) {
      const std::ptrdiff_t base = i * p.pixel_stride + c * p.channel_stride;
      if (p.to_int8) {
        const __m128i q32 = quantize4(v[c], k);
        const __m128i q8 = _mm_packs_epi16(_mm_packs_epi32(q32, q32), q32);
        const std::uint32_t bytes = static_cast<std::uint32_t>(_mm_cvtsi128_si32(q8));
        if (planar) {
          std::memcpy(qout + base, &bytes, count);
        } else {
          for (int j = 0; j < count; ++j) {
            qout[base + j * p.pixel_stride] = static_cast<std::int8_t>(bytes >> (8 * j));
          }
        }
      } else if (planar && count == 4) {
        _mm_storeu_ps(fout + base, v[c]);
      } else {
        alignas(16) float r[4];
        _mm_store_ps(r, v[c]);
        for (int j = 0; j < count; ++j) fout[base + j * p.pixel_stride] = r[j];
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// warp_affine_u8

// Both taps of one row of a pixel's footprint (2*kCh bytes) in the low bytes, reading
// nothing else.
template <int kCh>
inline __m128i load_row_taps(const std::uint8_t* p) {
  if (kCh == 1) return _mm_cvtsi32_si128(load_u16(p));
  if (kCh == 3) return load_six_u8(p);
  if (kCh == 4) return _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return _mm_cvtsi32_si128(static_cast<int>(v));
}

// Shuffle controls of the fixed-point warp block: WarpTables (scalar_pixels.h) in registers.
template <int kCh>
struct WarpShuffles {
  __m128i taps;            // row taps -> (left, right) byte pair per item
  __m128i hweights[2];     // [h]: per-pixel words (32 - a, a) -> one per item
  __m128i vweights[2][2];  // [h][items 0..3 | 4..7]: per-pixel dwords (32 - b, b) -> per item
  __m128i compact;         // packus bytes (pixels 0,1 | 2,3 at 0 and 8) -> 4*kCh contiguous
  static __m128i load(const std::int8_t* b) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(b)); }
  WarpShuffles() {
    const WarpTables<kCh> t;
    taps = load(t.taps);
    for (int h = 0; h < 2; ++h) {
      hweights[h] = load(t.hweights[h]);
      for (int part = 0; part < 2; ++part) vweights[h][part] = load(t.vweights[h][part]);
    }
    compact = load(t.compact);
  }
};


// Four output pixels per block in the reference's fixed point: pmaddubsw blends each row's
// horizontal taps with the u8 weights (32 - a, a) into i16 (at most 255*32), pmaddwd the two
// rows with (32 - b, b) into the reference's exact int32 sum. A block with a footprint
// outside the source takes warp_pixel.
template <int kCh>
void warp_impl(const WarpParams& p) {
  constexpr bool kHi = 2 * kCh > 4;  // items 4..7 in use
  const __m128 m0 = _mm_set1_ps(p.m[0]), m3 = _mm_set1_ps(p.m[3]);
  const __m128 m2 = _mm_set1_ps(p.m[2]), m5 = _mm_set1_ps(p.m[5]);
  const __m128 lane = _mm_setr_ps(0, 1, 2, 3);
  const __m128 scale = _mm_set1_ps(32.0f);
  const __m128i minus_one = _mm_set1_epi32(-1), fraction = _mm_set1_epi32(31);
  const __m128i thirty_two = _mm_set1_epi32(32), round = _mm_set1_epi32(512);
  // Footprint fully inside <=> 0 <= x0 <= src_w - 2 and 0 <= y0 <= src_h - 2; a huge or NaN
  // coordinate converts to INT_MIN and fails.
  const __m128i x_end = _mm_set1_epi32(p.src_w - 1), y_end = _mm_set1_epi32(p.src_h - 1);
  const WarpShuffles<kCh> sh;
  for (int y = 0; y < p.dst_h; ++y) {
    std::uint8_t* d = p.dst + y * p.dst_stride;
    // Same operations as the reference: (m0*x + m1*y) + m2, each rounded, no FMA.
    const __m128 row_x = _mm_set1_ps(p.m[1] * static_cast<float>(y));
    const __m128 row_y = _mm_set1_ps(p.m[4] * static_cast<float>(y));
    int x = 0;
    for (; x + 4 <= p.dst_w; x += 4) {
      const __m128 xs = _mm_add_ps(_mm_set1_ps(static_cast<float>(x)), lane);
      const __m128 sx = _mm_add_ps(_mm_add_ps(_mm_mul_ps(m0, xs), row_x), m2);
      const __m128 sy = _mm_add_ps(_mm_add_ps(_mm_mul_ps(m3, xs), row_y), m5);
      // s*32 is exact; cvtps rounds half to even (default MXCSR), as nearbyint.
      const __m128i qx = _mm_cvtps_epi32(_mm_mul_ps(sx, scale));
      const __m128i qy = _mm_cvtps_epi32(_mm_mul_ps(sy, scale));
      const __m128i x0 = _mm_srai_epi32(qx, 5), y0 = _mm_srai_epi32(qy, 5);
      const __m128i inside =
          _mm_and_si128(_mm_and_si128(_mm_cmpgt_epi32(x0, minus_one), _mm_cmpgt_epi32(x_end, x0)),
                        _mm_and_si128(_mm_cmpgt_epi32(y0, minus_one), _mm_cmpgt_epi32(y_end, y0)));
      if (_mm_movemask_epi8(inside) != 0xFFFF) {
        alignas(16) float sxs[4], sys[4];
        _mm_store_ps(sxs, sx);
        _mm_store_ps(sys, sy);
        for (int j = 0; j < 4; ++j) warp_pixel(p, sxs[j], sys[j], d + (x + j) * kCh);
        continue;
      }
      const __m128i a = _mm_and_si128(qx, fraction), b = _mm_and_si128(qy, fraction);
      const __m128i aw = _mm_or_si128(_mm_sub_epi32(thirty_two, a), _mm_slli_epi32(a, 8));
      const __m128i bw = _mm_or_si128(_mm_sub_epi32(thirty_two, b), _mm_slli_epi32(b, 16));
      alignas(16) std::int32_t xi[4], yi[4];
      _mm_store_si128(reinterpret_cast<__m128i*>(xi), x0);
      _mm_store_si128(reinterpret_cast<__m128i*>(yi), y0);
      __m128i packed[2];
      for (int h = 0; h < 2; ++h) {
        __m128i rows[2];  // top, bottom
        const std::uint8_t* t0 = p.src + yi[2 * h] * p.src_stride + xi[2 * h] * kCh;
        const std::uint8_t* t1 = p.src + yi[2 * h + 1] * p.src_stride + xi[2 * h + 1] * kCh;
        rows[0] = _mm_unpacklo_epi64(load_row_taps<kCh>(t0), load_row_taps<kCh>(t1));
        rows[1] = _mm_unpacklo_epi64(load_row_taps<kCh>(t0 + p.src_stride),
                                     load_row_taps<kCh>(t1 + p.src_stride));
        const __m128i hw = _mm_shuffle_epi8(aw, sh.hweights[h]);
        const __m128i t = _mm_maddubs_epi16(_mm_shuffle_epi8(rows[0], sh.taps), hw);
        const __m128i u = _mm_maddubs_epi16(_mm_shuffle_epi8(rows[1], sh.taps), hw);
        __m128i lo = _mm_madd_epi16(_mm_unpacklo_epi16(t, u), _mm_shuffle_epi8(bw, sh.vweights[h][0]));
        lo = _mm_srai_epi32(_mm_add_epi32(lo, round), 10);
        __m128i hi = lo;
        if (kHi) {
          hi = _mm_madd_epi16(_mm_unpackhi_epi16(t, u), _mm_shuffle_epi8(bw, sh.vweights[h][1]));
          hi = _mm_srai_epi32(_mm_add_epi32(hi, round), 10);
        }
        packed[h] = _mm_packs_epi32(lo, hi);
      }
      const __m128i px = _mm_shuffle_epi8(_mm_packus_epi16(packed[0], packed[1]), sh.compact);
      std::uint8_t* out = d + x * kCh;
      if (kCh == 4) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out), px);
      } else if (kCh == 2) {
        _mm_storel_epi64(reinterpret_cast<__m128i*>(out), px);
      } else {
        alignas(16) std::uint8_t bytes[16];
        _mm_store_si128(reinterpret_cast<__m128i*>(bytes), px);
        std::memcpy(out, bytes, 4 * kCh);
      }
    }
    for (; x < p.dst_w; ++x) {
      const float sx = p.m[0] * static_cast<float>(x) + p.m[1] * static_cast<float>(y) + p.m[2];
      const float sy = p.m[3] * static_cast<float>(x) + p.m[4] * static_cast<float>(y) + p.m[5];
      warp_pixel(p, sx, sy, d + x * kCh);
    }
  }
}

void warp_affine_u8(const WarpParams& p) {
  switch (p.channels) {
    case 1: warp_impl<1>(p); break;
    case 2: warp_impl<2>(p); break;
    case 3: warp_impl<3>(p); break;
    default: warp_impl<4>(p); break;
  }
}

// ---------------------------------------------------------------------------------------
// Dot products

inline float hsum(__m128 v) {
  v = _mm_add_ps(v, _mm_movehl_ps(v, v));
  v = _mm_add_ss(v, _mm_shuffle_ps(v, v, 1));
  return _mm_cvtss_f32(v);
}

// dot_f32's summation on R rows at once: every row keeps its own four accumulators and sees
// exactly dot_f32's operations (so dot_rows_f32 is bit-identical to it); the rows share each
// query load. R = 2 keeps 8 accumulators and 4 query vectors in the 16 xmm registers.
template <int R>
inline void dot_f32_block(const float* q, const float* const* r, std::size_t n, float* out) {
  // Four accumulators per row hide the add latency and shorten each summation chain.
  __m128 acc[R][4];
#pragma GCC unroll 4
  for (int j = 0; j < R; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = _mm_setzero_ps();
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m128 q0 = _mm_loadu_ps(q + i), q1 = _mm_loadu_ps(q + i + 4);
    const __m128 q2 = _mm_loadu_ps(q + i + 8), q3 = _mm_loadu_ps(q + i + 12);
#pragma GCC unroll 4
    for (int j = 0; j < R; ++j) {
      acc[j][0] = _mm_add_ps(acc[j][0], _mm_mul_ps(q0, _mm_loadu_ps(r[j] + i)));
      acc[j][1] = _mm_add_ps(acc[j][1], _mm_mul_ps(q1, _mm_loadu_ps(r[j] + i + 4)));
      acc[j][2] = _mm_add_ps(acc[j][2], _mm_mul_ps(q2, _mm_loadu_ps(r[j] + i + 8)));
      acc[j][3] = _mm_add_ps(acc[j][3], _mm_mul_ps(q3, _mm_loadu_ps(r[j] + i + 12)));
    }
  }
  for (; i + 4 <= n; i += 4) {
    const __m128 qv = _mm_loadu_ps(q + i);
#pragma GCC unroll 4
    for (int j = 0; j < R; ++j) acc[j][0] = _mm_add_ps(acc[j][0], _mm_mul_ps(qv, _mm_loadu_ps(r[j] + i)));
  }
#pragma GCC unroll 4
  for (int j = 0; j < R; ++j) {
    float sum = hsum(_mm_add_ps(_mm_add_ps(acc[j][0], acc[j][1]), _mm_add_ps(acc[j][2], acc[j][3])));
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
  dot_rows_blocked<2>(q, rows, n_rows, d, row_stride, out, kDotRowsF32PrefetchBytes,
                      [](auto rc, const float* qq, const float* const* r, std::size_t n, float* o) {
    dot_f32_block<decltype(rc)::value>(qq, r, n, o);
  });
}

std::int32_t dot_s8(const std::int8_t* a, const std::int8_t* b, std::size_t n) {
  // Sign-extend to int16; pmaddwd sums pairs into int32 exactly (|pair| <= 2*128*128).
  __m128i acc0 = _mm_setzero_si128(), acc1 = acc0;
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m128i va = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i));
    const __m128i vb = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + i));
    acc0 = _mm_add_epi32(acc0, _mm_madd_epi16(_mm_cvtepi8_epi16(va), _mm_cvtepi8_epi16(vb)));
    acc1 = _mm_add_epi32(acc1, _mm_madd_epi16(_mm_cvtepi8_epi16(_mm_srli_si128(va, 8)),
                                              _mm_cvtepi8_epi16(_mm_srli_si128(vb, 8))));
  }
  __m128i acc = _mm_add_epi32(acc0, acc1);
  acc = _mm_add_epi32(acc, _mm_shuffle_epi32(acc, _MM_SHUFFLE(1, 0, 3, 2)));
  acc = _mm_add_epi32(acc, _mm_shuffle_epi32(acc, _MM_SHUFFLE(2, 3, 0, 1)));
  std::int32_t sum = _mm_cvtsi128_si32(acc);
  for (; i < n; ++i) sum += static_cast<std::int32_t>(a[i]) * b[i];
  return sum;
}

// dot_rows_s8: dot_s8's exact int16 multiply-adds, with the query's 8-byte chunk widened once
// for R rows and the rows' sums meeting in one combined horizontal add.
template <int R>
inline void dot_s8_block(const std::int8_t* q, const std::int8_t* const* r, std::size_t n, std::int32_t* out) {
  __m128i acc[R];
#pragma GCC unroll 4
  for (int j = 0; j < R; ++j) acc[j] = _mm_setzero_si128();
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i qv = _mm_cvtepi8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + i)));
#pragma GCC unroll 4
    for (int j = 0; j < R; ++j) {
      const __m128i rv = _mm_cvtepi8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(r[j] + i)));
      acc[j] = _mm_add_epi32(acc[j], _mm_madd_epi16(qv, rv));
    }
  }
  if constexpr (R == 4) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out),
                     _mm_hadd_epi32(_mm_hadd_epi32(acc[0], acc[1]), _mm_hadd_epi32(acc[2], acc[3])));
  } else {
#pragma GCC unroll 4
    for (int j = 0; j < R; ++j) {
      __m128i s = _mm_add_epi32(acc[j], _mm_shuffle_epi32(acc[j], _MM_SHUFFLE(1, 0, 3, 2)));
      s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
      out[j] = _mm_cvtsi128_si32(s);
    }
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

}  // namespace

void fill_sse41(KernelTable* t) {
  t->resample_row_u8 = resample_row_u8;
  t->blend_rows_f32 = blend_rows_f32;
  t->pack_row = pack_row;
  t->warp_affine_u8 = warp_affine_u8;
  t->dot_f32 = dot_f32;
  t->dot_s8 = dot_s8;
  t->dot_rows_f32 = dot_rows_f32;
  t->dot_rows_s8 = dot_rows_s8;
}

}  // namespace picoface
