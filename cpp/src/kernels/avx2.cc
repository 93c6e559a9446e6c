// AVX2 + FMA kernels: the streaming kernels (blend, pack, dots) at 8 lanes; resample_row_u8
// at 8 output pixels per block, computed planar (one vector per channel) from per-pixel byte
// windows: plain 8- or 16-byte loads plus shuffles for the common shapes (3 channels; 2 or 4
// taps), dword gathers for the rest (gathers cost about a load per lane plus overhead on
// current AMD cores, so loads win where the shape is known); warp_affine_u8 at 8 pixels per
// block in 16-bit multiply-adds on 8-byte loads.
// As in SSE4.1, preprocessing kernels keep the reference's operation order and use no FMA,
// so their output is bit-identical on every x86 level; only dot_f32, which is not exact
// anyway, fuses.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "conv3x3_driver.h"
#include "dot_rows_driver.h"
#include "gemm_driver.h"
#include "gemm_s8_driver.h"
#include "isa_fill.h"
#include "scalar_pixels.h"

namespace picoface {
namespace {

// ---------------------------------------------------------------------------------------
// Byte gathers of resample_row_u8

// pshufb control that moves byte `b` (0..3) of every 32-bit lane to its low byte and zeroes
// the rest: a zero-extended u8 per lane, ready for cvtepi32_ps.
inline __m256i byte_select(int b) {
  return _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(0x80808000u | static_cast<unsigned>(b))),
                          _mm256_setr_epi32(0, 4, 8, 12, 0, 4, 8, 12));
}

// Four dword gathers at byte offsets `ofs` + 4*k (k = 0..3) cover the first 16 bytes at each
// lane's offset; byte o of that window is bytes[o >> 2] shuffled by sel[o & 3].
struct ByteWindow {
  __m256i sel[4];
  ByteWindow() {
    for (int b = 0; b < 4; ++b) sel[b] = byte_select(b);
  }
};

// ---------------------------------------------------------------------------------------
// resample_row_u8

// The reference's loop for one output pixel (the SIMD blocks' tails and unsafe blocks).
inline void resample_pixel(const std::uint8_t* src, int ch, const std::int32_t* xofs,
                           const float* weights, int ntaps, int x, float* const* dst_planes) {
  const std::uint8_t* p = src + static_cast<std::ptrdiff_t>(xofs[x]) * ch;
  const float* w = weights + static_cast<std::ptrdiff_t>(x) * ntaps;
  for (int c = 0; c < ch; ++c) {
    float acc = 0.0f;
    for (int t = 0; t < ntaps; ++t) acc += w[t] * static_cast<float>(p[t * ch + c]);
    dst_planes[c][x] = acc;
  }
}

inline std::int32_t max_offset(const std::int32_t* xofs, int n) {
  __m256i m = _mm256_set1_epi32(0);
  int x = 0;
  for (; x + 8 <= n; x += 8) {
    m = _mm256_max_epi32(m, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xofs + x)));
  }
  __m128i h = _mm_max_epi32(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
  h = _mm_max_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(1, 0, 3, 2)));
  h = _mm_max_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(2, 3, 0, 1)));
  std::int32_t r = _mm_cvtsi128_si32(h);
  for (; x < n; ++x) r = xofs[x] > r ? xofs[x] : r;
  return r;
}

// Pixel-major (w0, w1) pairs of eight pixels -> one vector per tap.
inline void deinterleave_weights2(const float* w, __m256* w0, __m256* w1) {
  const __m256 a = _mm256_loadu_ps(w), b = _mm256_loadu_ps(w + 8);
  *w0 = _mm256_castpd_ps(_mm256_permute4x64_pd(
      _mm256_castps_pd(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0))), _MM_SHUFFLE(3, 1, 2, 0)));
  *w1 = _mm256_castpd_ps(_mm256_permute4x64_pd(
      _mm256_castps_pd(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1))), _MM_SHUFFLE(3, 1, 2, 0)));
}

inline __m128i load8(const std::uint8_t* p) {
  return _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
}
inline __m128i load8_high(__m128i lo, const std::uint8_t* p) {
  return _mm_castpd_si128(_mm_loadh_pd(_mm_castsi128_pd(lo), reinterpret_cast<const double*>(p)));
}

// 3 channels, 2 taps: the two taps of a pixel are 6 contiguous bytes, fetched as one 8-byte
// load (2 bytes past the right tap, the same window as two dword gathers): cheaper than
// gathers on CPUs where a gather costs one load per lane plus a fixed overhead.
inline void resample_block_c3t2(const std::uint8_t* src, const std::int32_t* o, const float* w,
                                float* const* dst_planes, int x) {
  auto at = [&](int j) { return src + 3 * static_cast<std::ptrdiff_t>(o[j]); };
  // [p0 p1 | p4 p5] and [p2 p3 | p6 p7], 8 bytes each.
  const __m256i y0 = _mm256_inserti128_si256(_mm256_castsi128_si256(load8_high(load8(at(0)), at(1))),
                                             load8_high(load8(at(4)), at(5)), 1);
  const __m256i y1 = _mm256_inserti128_si256(_mm256_castsi128_si256(load8_high(load8(at(2)), at(3))),
                                             load8_high(load8(at(6)), at(7)), 1);
  __m256 w0, w1;
  deinterleave_weights2(w, &w0, &w1);
  for (int c = 0; c < 3; ++c) {
    // Per 128-bit lane: dwords (first pixel tap 0, second pixel tap 0, first tap 1, second tap 1).
    const __m256i sel = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(0x80808000u) + c),
                                         _mm256_setr_epi32(0, 8, 3, 11, 0, 8, 3, 11));
    const __m256i d0 = _mm256_shuffle_epi8(y0, sel), d1 = _mm256_shuffle_epi8(y1, sel);
    const __m256 v0 = _mm256_cvtepi32_ps(_mm256_unpacklo_epi64(d0, d1));  // pixels 0..7, tap 0
    const __m256 v1 = _mm256_cvtepi32_ps(_mm256_unpackhi_epi64(d0, d1));  // pixels 0..7, tap 1
    const __m256 acc = _mm256_add_ps(_mm256_setzero_ps(), _mm256_mul_ps(w0, v0));
    _mm256_storeu_ps(dst_planes[c] + x, _mm256_add_ps(acc, _mm256_mul_ps(w1, v1)));
  }
}

// 3 channels, 2 taps, offsets stepping by 2 pixels (every 2:1 shrink): the block's taps are
// 48 contiguous bytes, from the first tap of pixel 0 to the last tap of pixel 7, so two
// 32-byte windows of four 16-byte loads fetch them without reading past the last tap.
// Each 128-bit lane holds two whole pixels, and one pshufb per channel yields their taps in
// the weights' own pixel-major order, so the weights need no deinterleaving: the products
// are split into taps afterwards. (w0*v0 + w1*v1) + 0 equals the reference's
// (0 + w0*v0) + w1*v1 bit for bit: the two differ only in the sign of a zero sum, which the
// final + 0 makes positive in both.
struct Stride2C3T2 {
  __m256i sel0[3], sel1[3];
  Stride2C3T2() {
    for (int c = 0; c < 3; ++c) {
      // Per lane: dwords (pixel a tap 0, a tap 1, b tap 0, b tap 1) of the lane's two pixels,
      // which start at byte 0 of y0's lanes and at byte 4 of y1's.
      sel0[c] = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(0x80808000u) + c),
                                 _mm256_setr_epi32(0, 3, 6, 9, 0, 3, 6, 9));
      sel1[c] = _mm256_add_epi32(sel0[c], _mm256_set1_epi32(4));
    }
  }
};

inline void resample_block_c3t2_s2(const Stride2C3T2& k, const std::uint8_t* p, const float* w,
                                   float* d0, float* d1, float* d2) {
  float* const dst[3] = {d0, d1, d2};
  // Two 16-byte halves joined by a broadcast load and a blend rather than an insert, which
  // would take a shuffle slot from the pshufbs below.
  auto ld2 = [](const void* lo, const void* hi) {
    const __m256i l = _mm256_castsi128_si256(_mm_loadu_si128(static_cast<const __m128i*>(lo)));
    const __m256i h = _mm256_broadcastsi128_si256(_mm_loadu_si128(static_cast<const __m128i*>(hi)));
    return _mm256_blend_epi32(l, h, 0xF0);
  };
  // Pixels (0 1 | 4 5) at bytes 0 and 24, (2 3 | 6 7) at bytes 12 and 36 (loaded from 8, 32).
  const __m256i y0 = ld2(p, p + 24);
  const __m256i y1 = ld2(p + 8, p + 32);
  // Weights of pixels (0 1 | 4 5) and (2 3 | 6 7), matching y0 and y1.
  const __m256 wa = _mm256_castsi256_ps(ld2(w, w + 8));
  const __m256 wb = _mm256_castsi256_ps(ld2(w + 4, w + 12));
  const __m256 zero = _mm256_setzero_ps();
  for (int c = 0; c < 3; ++c) {
    const __m256 pa = _mm256_mul_ps(wa, _mm256_cvtepi32_ps(_mm256_shuffle_epi8(y0, k.sel0[c])));
    const __m256 pb = _mm256_mul_ps(wb, _mm256_cvtepi32_ps(_mm256_shuffle_epi8(y1, k.sel1[c])));
    const __m256 t0 = _mm256_shuffle_ps(pa, pb, _MM_SHUFFLE(2, 0, 2, 0));  // pixels 0..7, tap 0
    const __m256 t1 = _mm256_shuffle_ps(pa, pb, _MM_SHUFFLE(3, 1, 3, 1));  // pixels 0..7, tap 1
    _mm256_storeu_ps(dst[c], _mm256_add_ps(_mm256_add_ps(t0, t1), zero));
  }
}

// 4x4 transpose of 32-bit elements within each 128-bit lane.
inline void transpose4_epi32(__m256i* r) {
  const __m256i a = _mm256_unpacklo_epi32(r[0], r[1]), b = _mm256_unpacklo_epi32(r[2], r[3]);
  const __m256i c = _mm256_unpackhi_epi32(r[0], r[1]), d = _mm256_unpackhi_epi32(r[2], r[3]);
  r[0] = _mm256_unpacklo_epi64(a, b);
  r[1] = _mm256_unpackhi_epi64(a, b);
  r[2] = _mm256_unpacklo_epi64(c, d);
  r[3] = _mm256_unpackhi_epi64(c, d);
}

// 3 channels, 4 taps (area 4:1): the 12 tap bytes of a pixel are one 16-byte load (4 bytes
// past the right tap). Vectors hold pixels (k, k+4) in their two halves, so per channel one
// pshufb and one in-lane transpose give every tap of pixels 0..7 in order.
inline void resample_block_c3t4(const std::uint8_t* src, const std::int32_t* o, const float* w,
                                float* const* dst_planes, int x) {
  auto ld = [&](int j) {
    return _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 3 * static_cast<std::ptrdiff_t>(o[j])));
  };
  __m256i px[4];
  for (int k = 0; k < 4; ++k) px[k] = _mm256_inserti128_si256(_mm256_castsi128_si256(ld(k)), ld(k + 4), 1);
  __m256 wt[4];
  {
    const __m256 a0 = _mm256_loadu_ps(w), a1 = _mm256_loadu_ps(w + 8);
    const __m256 a2 = _mm256_loadu_ps(w + 16), a3 = _mm256_loadu_ps(w + 24);
    __m256i q[4] = {_mm256_castps_si256(_mm256_permute2f128_ps(a0, a2, 0x20)),
                    _mm256_castps_si256(_mm256_permute2f128_ps(a0, a2, 0x31)),
                    _mm256_castps_si256(_mm256_permute2f128_ps(a1, a3, 0x20)),
                    _mm256_castps_si256(_mm256_permute2f128_ps(a1, a3, 0x31))};
    transpose4_epi32(q);
    for (int t = 0; t < 4; ++t) wt[t] = _mm256_castsi256_ps(q[t]);
  }
  for (int c = 0; c < 3; ++c) {
    const __m256i sel = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(0x80808000u) + c),
                                         _mm256_setr_epi32(0, 3, 6, 9, 0, 3, 6, 9));
    __m256i v[4];
    for (int k = 0; k < 4; ++k) v[k] = _mm256_shuffle_epi8(px[k], sel);
    transpose4_epi32(v);  // v[t] = tap t of pixels 0..7
    __m256 acc = _mm256_setzero_ps();
    for (int t = 0; t < 4; ++t) acc = _mm256_add_ps(acc, _mm256_mul_ps(wt[t], _mm256_cvtepi32_ps(v[t])));
    _mm256_storeu_ps(dst_planes[c] + x, acc);
  }
}

// 1 channel, 2 taps: one 4-byte load per pixel (2 bytes past the right tap).
inline void resample_block_c1t2(const std::uint8_t* src, const std::int32_t* o, const float* w,
                                float* dst) {
  auto ld = [&](int j) {
    std::int32_t v;
    std::memcpy(&v, src + o[j], 4);
    return _mm_cvtsi32_si128(v);
  };
  const __m128i q0 = _mm_unpacklo_epi64(_mm_unpacklo_epi32(ld(0), ld(1)), _mm_unpacklo_epi32(ld(2), ld(3)));
  const __m128i q1 = _mm_unpacklo_epi64(_mm_unpacklo_epi32(ld(4), ld(5)), _mm_unpacklo_epi32(ld(6), ld(7)));
  const __m256i pairs = _mm256_inserti128_si256(_mm256_castsi128_si256(q0), q1, 1);
  const __m256i lo = _mm256_set1_epi32(0xFF);
  __m256 w0, w1;
  deinterleave_weights2(w, &w0, &w1);
  const __m256 v0 = _mm256_cvtepi32_ps(_mm256_and_si256(pairs, lo));
  const __m256 v1 = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(pairs, 8), lo));
  const __m256 acc = _mm256_add_ps(_mm256_setzero_ps(), _mm256_mul_ps(w0, v0));
  _mm256_storeu_ps(dst, _mm256_add_ps(acc, _mm256_mul_ps(w1, v1)));
}

// Eight output pixels per block, planar directly: the taps' bytes of each pixel are fetched
// with dword gathers at byte offsets channels*xofs (+4, +8, ...), so a block reads up to
// 4*ceil(ntaps*channels/4) bytes from each pixel's first tap, i.e. up to 3 bytes past its
// last tap. The kernel does not know the row length, but it knows that every tap of every
// pixel is readable: a block runs in SIMD only if its largest offset leaves its window
// inside the last tap of the row's largest offset; other blocks and the tail take the
// reference's loop. Products and sums are the reference's, in its order, without FMA.
// kTaps = 0: ntaps known only at run time.
template <int kCh, int kTaps>
void resample_gather(const std::uint8_t* src, const std::int32_t* xofs, const float* weights,
                     int ntaps_rt, int dst_w, float* const* dst_planes) {
  const int ntaps = kTaps != 0 ? kTaps : ntaps_rt;
  // Bytes read from each pixel's first tap (the 3-channel 4-tap block loads 16).
  const int window = kCh == 3 && kTaps == 4 ? 16 : 4 * ((ntaps * kCh + 3) / 4);
  const long long room =
      (static_cast<long long>(max_offset(xofs, dst_w)) + ntaps) * kCh - window;
  int x = 0;
  if (room >= 0 && room + window <= 0x7FFFFFFF) {  // gather offsets are int32
    const ByteWindow bw;
    const Stride2C3T2 s2;
    const __m256i step2 = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    const __m256i limit = _mm256_set1_epi32(static_cast<int>(room / kCh));
    const __m256i widx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                            _mm256_set1_epi32(ntaps));
    for (; x + 8 <= dst_w; x += 8) {
      const __m256i ofs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xofs + x));
      if (kCh == 3 && kTaps == 2 && xofs[x + 7] - xofs[x] == 14) {
        // A run of blocks whose offsets step by 2 (the scalar test keeps other shrink
        // factors off the vector unit). They read only bytes between a block's first and
        // last tap, so they need no over-read check.
        __m256i want = _mm256_add_epi32(_mm256_set1_epi32(xofs[x]), step2);
        if (_mm256_movemask_epi8(_mm256_cmpeq_epi32(ofs, want)) == -1) {
          const std::uint8_t* p = src + 3 * static_cast<std::ptrdiff_t>(xofs[x]);
          const float* w = weights + 2 * static_cast<std::ptrdiff_t>(x);
          float* d0 = dst_planes[0] + x;
          float* d1 = dst_planes[1] + x;
          float* d2 = dst_planes[2] + x;
          const int n = dst_w - x;
          int i = 0;
          do {
            resample_block_c3t2_s2(s2, p, w, d0 + i, d1 + i, d2 + i);
            p += 48;
            w += 16;
            i += 8;
            want = _mm256_add_epi32(want, _mm256_set1_epi32(16));
          } while (i + 8 <= n &&
                   _mm256_movemask_epi8(_mm256_cmpeq_epi32(
                       _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xofs + x + i)), want)) == -1);
          x += i - 8;  // the loop's own += 8 moves past the last block done
          continue;
        }
      }
      if (_mm256_movemask_epi8(_mm256_cmpgt_epi32(ofs, limit)) != 0) {
        for (int j = 0; j < 8; ++j) resample_pixel(src, kCh, xofs, weights, ntaps, x + j, dst_planes);
        continue;
      }
      if (kCh == 3 && kTaps == 2) {
        resample_block_c3t2(src, xofs + x, weights + 2 * static_cast<std::ptrdiff_t>(x), dst_planes, x);
        continue;
      }
      if (kCh == 3 && kTaps == 4) {
        resample_block_c3t4(src, xofs + x, weights + 4 * static_cast<std::ptrdiff_t>(x), dst_planes, x);
        continue;
      }
      if (kCh == 1 && kTaps == 2) {
        resample_block_c1t2(src, xofs + x, weights + 2 * static_cast<std::ptrdiff_t>(x), dst_planes[0] + x);
        continue;
      }
      __m256i base;
      switch (kCh) {
        case 1: base = ofs; break;
        case 2: base = _mm256_add_epi32(ofs, ofs); break;
        case 3: base = _mm256_add_epi32(_mm256_add_epi32(ofs, ofs), ofs); break;
        default: base = _mm256_slli_epi32(ofs, 2); break;
      }
      const float* w = weights + static_cast<std::ptrdiff_t>(x) * ntaps;
      __m256 w2[2];
      if (kTaps == 2) {
        // Pixel-major pairs -> one vector per tap.
        const __m256 a = _mm256_loadu_ps(w), b = _mm256_loadu_ps(w + 8);
        w2[0] = _mm256_castpd_ps(_mm256_permute4x64_pd(
            _mm256_castps_pd(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0))), _MM_SHUFFLE(3, 1, 2, 0)));
        w2[1] = _mm256_castpd_ps(_mm256_permute4x64_pd(
            _mm256_castps_pd(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1))), _MM_SHUFFLE(3, 1, 2, 0)));
      }
      __m256 acc[kCh];
      for (int c = 0; c < kCh; ++c) acc[c] = _mm256_setzero_ps();
      __m256i bytes = _mm256_setzero_si256();
      int loaded = -1;
      for (int t = 0; t < ntaps; ++t) {
        const __m256 wt = kTaps == 2 ? w2[t] : _mm256_i32gather_ps(w + t, widx, 4);
        for (int c = 0; c < kCh; ++c) {
          const int o = t * kCh + c;
          if (o >> 2 != loaded) {
            loaded = o >> 2;
            bytes = _mm256_i32gather_epi32(reinterpret_cast<const int*>(src + 4 * loaded), base, 1);
          }
          const __m256 v = _mm256_cvtepi32_ps(_mm256_shuffle_epi8(bytes, bw.sel[o & 3]));
          acc[c] = _mm256_add_ps(acc[c], _mm256_mul_ps(wt, v));
        }
      }
      for (int c = 0; c < kCh; ++c) _mm256_storeu_ps(dst_planes[c] + x, acc[c]);
    }
  }
  for (; x < dst_w; ++x) resample_pixel(src, kCh, xofs, weights, ntaps, x, dst_planes);
}

void resample_row_u8(const std::uint8_t* src, int channels, const std::int32_t* xofs,
                     const float* weights, int ntaps, int dst_w, float* const* dst_planes) {
  switch (channels) {
    case 1:
      if (ntaps == 2) return resample_gather<1, 2>(src, xofs, weights, ntaps, dst_w, dst_planes);
      return resample_gather<1, 0>(src, xofs, weights, ntaps, dst_w, dst_planes);
    case 2: return resample_gather<2, 0>(src, xofs, weights, ntaps, dst_w, dst_planes);
    case 3:
      if (ntaps == 2) return resample_gather<3, 2>(src, xofs, weights, ntaps, dst_w, dst_planes);
      if (ntaps == 4) return resample_gather<3, 4>(src, xofs, weights, ntaps, dst_w, dst_planes);
      return resample_gather<3, 0>(src, xofs, weights, ntaps, dst_w, dst_planes);
    default: return resample_gather<4, 0>(src, xofs, weights, ntaps, dst_w, dst_planes);
  }
}

// ---------------------------------------------------------------------------------------
// warp_affine_u8

// Shuffle controls of the fixed-point warp block (the same in both 128-bit lanes). A "pair
// register" holds in each lane the 8-byte windows of two pixels (bytes 0..7 and 8..15), whose
// row taps are bytes c (left) and kCh + c (right); pair register h holds pixels (2h, 2h+1) in
// lane 0 and (2h+4, 2h+5) in lane 1. Per-pixel vectors have pixel 4*lane + k in dword k, so
// pixel q of a pair register's lane is dword 2h + q there. Items i = q*kCh + c, i < 2*kCh.
template <int kCh>
struct WarpShuffles {
  __m256i taps;            // window bytes -> (left, right) byte pair per item
  __m256i hweights[2];     // [h]: per-pixel words (32 - a, a) -> one per item
  __m256i vweights[2][2];  // [h][items 0..3 | 4..7]: per-pixel dwords (32 - b, b) -> per item
  __m256i compact;         // packus bytes (pixels 0,1 | 2,3 at 0 and 8) -> 4*kCh contiguous
  static __m256i broadcast(const std::int8_t* b) {
    return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b)));
  }
  WarpShuffles() {
    const WarpTables<kCh> t;
    taps = broadcast(t.taps);
    for (int h = 0; h < 2; ++h) {
      hweights[h] = broadcast(t.hweights[h]);
      for (int part = 0; part < 2; ++part) vweights[h][part] = broadcast(t.vweights[h][part]);
    }
    compact = broadcast(t.compact);
  }
};


// Eight output pixels per block, in the reference's fixed point. A block whose eight
// footprints all lie inside the source loads each pixel's two rows as 8-byte windows (both
// taps of a row are 2*kCh contiguous bytes; up to 7 bytes past the left tap are read), so a
// lane also needs its bottom-row window to end inside the image buffer, (h-1)*stride +
// w*channels bytes. Per row, pmaddubsw blends the horizontal taps with the u8 weights
// (32 - a, a) into i16 (at most 255*32); pmaddwd blends the two rows with (32 - b, b) into
// the reference's exact int32 sum. Any other block takes warp_pixel.
template <int kCh>
void warp_impl(const WarpParams& p) {
  constexpr bool kHi = 2 * kCh > 4;  // items 4..7 in use
  const long long span = static_cast<long long>(p.src_h - 1) * p.src_stride +
                         static_cast<long long>(p.src_w) * kCh;
  const long long last = span - 8 - p.src_stride;  // largest top-left byte offset
  const bool simd = p.src_w >= 2 && p.src_h >= 2 && p.src_stride >= p.src_w * kCh &&
                    span <= 0x7FFFFFFF && last >= 0;
  const __m256 m0 = _mm256_set1_ps(p.m[0]), m3 = _mm256_set1_ps(p.m[3]);
  const __m256 m2 = _mm256_set1_ps(p.m[2]), m5 = _mm256_set1_ps(p.m[5]);
  const __m256 lane = _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256 scale = _mm256_set1_ps(32.0f);
  const __m256i minus_one = _mm256_set1_epi32(-1), fraction = _mm256_set1_epi32(31);
  const __m256i thirty_two = _mm256_set1_epi32(32), round = _mm256_set1_epi32(512);
  // Footprint fully inside <=> 0 <= x0 <= src_w - 2 and 0 <= y0 <= src_h - 2; a huge or NaN
  // coordinate converts to INT_MIN and fails.
  const __m256i x_end = _mm256_set1_epi32(p.src_w - 1), y_end = _mm256_set1_epi32(p.src_h - 1);
  const __m256i stride = _mm256_set1_epi32(simd ? static_cast<int>(p.src_stride) : 0);
  const __m256i last_ofs = _mm256_set1_epi32(simd ? static_cast<int>(last) : 0);
  const WarpShuffles<kCh> sh;
  const std::uint8_t* top_base = p.src;
  const std::uint8_t* bottom_base = p.src + (simd ? p.src_stride : 0);
  for (int y = 0; y < p.dst_h; ++y) {
    std::uint8_t* d = p.dst + y * p.dst_stride;
    // Same operations as the reference: (m0*x + m1*y) + m2, each rounded, no FMA.
    const __m256 row_x = _mm256_set1_ps(p.m[1] * static_cast<float>(y));
    const __m256 row_y = _mm256_set1_ps(p.m[4] * static_cast<float>(y));
    int x = 0;
    for (; simd && x + 8 <= p.dst_w; x += 8) {
      const __m256 xs = _mm256_add_ps(_mm256_set1_ps(static_cast<float>(x)), lane);
      const __m256 sx = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(m0, xs), row_x), m2);
      const __m256 sy = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(m3, xs), row_y), m5);
      // s*32 is exact; cvtps rounds half to even (default MXCSR), as nearbyint.
      const __m256i qx = _mm256_cvtps_epi32(_mm256_mul_ps(sx, scale));
      const __m256i qy = _mm256_cvtps_epi32(_mm256_mul_ps(sy, scale));
      const __m256i x0 = _mm256_srai_epi32(qx, 5), y0 = _mm256_srai_epi32(qy, 5);
      const __m256i inside = _mm256_and_si256(
          _mm256_and_si256(_mm256_cmpgt_epi32(x0, minus_one), _mm256_cmpgt_epi32(x_end, x0)),
          _mm256_and_si256(_mm256_cmpgt_epi32(y0, minus_one), _mm256_cmpgt_epi32(y_end, y0)));
      __m256i ofs = _mm256_mullo_epi32(y0, stride);
      for (int c = 0; c < kCh; ++c) ofs = _mm256_add_epi32(ofs, x0);
      const __m256i ok = _mm256_andnot_si256(_mm256_cmpgt_epi32(ofs, last_ofs), inside);
      if (_mm256_movemask_epi8(ok) != -1) {
        alignas(32) float sxs[8], sys[8];
        _mm256_store_ps(sxs, sx);
        _mm256_store_ps(sys, sy);
        for (int j = 0; j < 8; ++j) warp_pixel(p, sxs[j], sys[j], d + (x + j) * kCh);
        continue;
      }
      const __m256i a = _mm256_and_si256(qx, fraction), b = _mm256_and_si256(qy, fraction);
      const __m256i aw = _mm256_or_si256(_mm256_sub_epi32(thirty_two, a), _mm256_slli_epi32(a, 8));
      const __m256i bw = _mm256_or_si256(_mm256_sub_epi32(thirty_two, b), _mm256_slli_epi32(b, 16));
      alignas(32) std::int32_t o[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(o), ofs);
      __m256i packed[2];
      for (int h = 0; h < 2; ++h) {
        const int j = 2 * h;
        __m256i rows[2];  // top, bottom
        for (int r = 0; r < 2; ++r) {
          const std::uint8_t* base = r == 0 ? top_base : bottom_base;
          rows[r] = _mm256_inserti128_si256(
              _mm256_castsi128_si256(load8_high(load8(base + o[j]), base + o[j + 1])),
              load8_high(load8(base + o[j + 4]), base + o[j + 5]), 1);
        }
        const __m256i hw = _mm256_shuffle_epi8(aw, sh.hweights[h]);
        const __m256i t = _mm256_maddubs_epi16(_mm256_shuffle_epi8(rows[0], sh.taps), hw);
        const __m256i u = _mm256_maddubs_epi16(_mm256_shuffle_epi8(rows[1], sh.taps), hw);
        __m256i lo = _mm256_madd_epi16(_mm256_unpacklo_epi16(t, u),
                                       _mm256_shuffle_epi8(bw, sh.vweights[h][0]));
        lo = _mm256_srai_epi32(_mm256_add_epi32(lo, round), 10);
        __m256i hi = lo;
        if (kHi) {
          hi = _mm256_madd_epi16(_mm256_unpackhi_epi16(t, u),
                                 _mm256_shuffle_epi8(bw, sh.vweights[h][1]));
          hi = _mm256_srai_epi32(_mm256_add_epi32(hi, round), 10);
        }
        packed[h] = _mm256_packs_epi32(lo, hi);
      }
      // Lane 0: pixels 0..3, lane 1: pixels 4..7, 4*kCh bytes each from byte 0.
      const __m256i px =
          _mm256_shuffle_epi8(_mm256_packus_epi16(packed[0], packed[1]), sh.compact);
      std::uint8_t* out = d + x * kCh;
      if (kCh == 4) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), px);
      } else if (kCh == 3) {
        const __m128i lo = _mm256_castsi256_si128(px), hi = _mm256_extracti128_si256(px, 1);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm_or_si128(lo, _mm_slli_si128(hi, 12)));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(out + 16), _mm_srli_si128(hi, 4));
      } else if (kCh == 2) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out),
                         _mm256_castsi256_si128(_mm256_permute4x64_epi64(px, _MM_SHUFFLE(3, 1, 2, 0))));
      } else {
        const __m256i q = _mm256_permutevar8x32_epi32(px, _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(out), _mm256_castsi256_si128(q));
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
// blend_rows_f32

void blend_rows_f32(const float* const* rows, const float* weights, int ntaps, int n,
                    float* out) {
  int i = 0;
  if (ntaps == 2) {
    const float* r0 = rows[0];
    const float* r1 = rows[1];
    const __m256 w0 = _mm256_set1_ps(weights[0]);
    const __m256 w1 = _mm256_set1_ps(weights[1]);
    for (; i + 16 <= n; i += 16) {
      const __m256 a = _mm256_add_ps(_mm256_mul_ps(w0, _mm256_loadu_ps(r0 + i)),
                                     _mm256_mul_ps(w1, _mm256_loadu_ps(r1 + i)));
      const __m256 b = _mm256_add_ps(_mm256_mul_ps(w0, _mm256_loadu_ps(r0 + i + 8)),
                                     _mm256_mul_ps(w1, _mm256_loadu_ps(r1 + i + 8)));
      _mm256_storeu_ps(out + i, a);
      _mm256_storeu_ps(out + i + 8, b);
    }
  }
  for (; i + 8 <= n; i += 8) {
    __m256 acc = _mm256_mul_ps(_mm256_set1_ps(weights[0]), _mm256_loadu_ps(rows[0] + i));
    for (int t = 1; t < ntaps; ++t) {
      acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(weights[t]), _mm256_loadu_ps(rows[t] + i)));
    }
    _mm256_storeu_ps(out + i, acc);
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
  __m256 m[3][3], bias[3], inv_scale, zero_point, lo, hi;
  bool nz[3][3];  // the reference skips zero coefficients
  explicit PackConsts(const PackParams& p) {
    for (int c = 0; c < 3; ++c) {
      for (int k = 0; k < 3; ++k) {
        m[c][k] = _mm256_set1_ps(p.matrix[c][k]);
        nz[c][k] = p.matrix[c][k] != 0.0f;
      }
      bias[c] = _mm256_set1_ps(p.bias[c]);
    }
    inv_scale = _mm256_set1_ps(p.inv_scale);
    zero_point = _mm256_set1_ps(static_cast<float>(p.zero_point));
    lo = _mm256_set1_ps(-128.0f);
    hi = _mm256_set1_ps(127.0f);
  }
};

// See sse41.cc: reference order (bias, then inputs), half-to-even rounding, max_ps maps NaN
// to its second operand (-128), then an exact conversion of an integral in-range value.
inline __m128i quantize8(__m256 v, const PackConsts& k) {
  __m256 q = _mm256_round_ps(_mm256_mul_ps(v, k.inv_scale),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  q = _mm256_add_ps(q, k.zero_point);
  q = _mm256_min_ps(_mm256_max_ps(q, k.lo), k.hi);
  const __m256i q32 = _mm256_cvtps_epi32(q);
  const __m128i q16 = _mm_packs_epi32(_mm256_castsi256_si128(q32), _mm256_extracti128_si256(q32, 1));
  return _mm_packs_epi16(q16, q16);  // 8 bytes in the low half
}

void pack_row(const float* const* in, int n, const PackParams& p, void* out) {
  const PackConsts k(p);
  const int ic = p.in_channels;
  const int oc = p.out_channels;
  const bool planar = p.pixel_stride == 1;
  float* fout = static_cast<float*>(out);
  std::int8_t* qout = static_cast<std::int8_t*>(out);
  for (int i = 0; i < n; i += 8) {
    const int count = n - i < 8 ? n - i : 8;
    __m256 x[3];
    for (int j = 0; j < ic; ++j) {
      if (count == 8) {
        x[j] = _mm256_loadu_ps(in[j] + i);
      } else {
        alignas(32) float tail[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        std::memcpy(tail, in[j] + i, sizeof(float) * count);
        x[j] = _mm256_load_ps(tail);
      }
    }
    for (int c = 0; c < oc; ++c) {
      __m256 v = k.bias[c];
      for (int j = 0; j < ic; ++j) {
        if (k.nz[c][j]) v = _mm256_add_ps(v, _mm256_mul_ps(k.m[c][j], x[j]));
      }
      const std::ptrdiff_t base = i * p.pixel_stride + c * p.channel_stride;
      if (p.to_int8) {
        alignas(16) std::int8_t q[16];
        _mm_store_si128(reinterpret_cast<__m128i*>(q), quantize8(v, k));
        if (planar) {
          std::memcpy(qout + base, q, count);
        } else {
          for (int j = 0; j < count; ++j) qout[base + j * p.pixel_stride] = q[j];
        }
      } else if (planar && count == 8) {
        _mm256_storeu_ps(fout + base, v);
      } else {
        alignas(32) float r[8];
        _mm256_store_ps(r, v);
        for (int j = 0; j < count; ++j) fout[base + j * p.pixel_stride] = r[j];
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// Dot products

// dot_f32's summation on R rows at once: every row keeps its own four accumulators and sees
// exactly dot_f32's operations (so dot_rows_f32 is bit-identical to it); the rows share each
// query load. R = 2 keeps 8 accumulators and 4 query vectors in the 16 ymm registers.
template <int R>
inline void dot_f32_block(const float* q, const float* const* r, std::size_t n, float* out) {
  __m256 acc[R][4];
#pragma GCC unroll 4
  for (int j = 0; j < R; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256 q0 = _mm256_loadu_ps(q + i), q1 = _mm256_loadu_ps(q + i + 8);
    const __m256 q2 = _mm256_loadu_ps(q + i + 16), q3 = _mm256_loadu_ps(q + i + 24);
#pragma GCC unroll 4
    for (int j = 0; j < R; ++j) {
      acc[j][0] = _mm256_fmadd_ps(q0, _mm256_loadu_ps(r[j] + i), acc[j][0]);
      acc[j][1] = _mm256_fmadd_ps(q1, _mm256_loadu_ps(r[j] + i + 8), acc[j][1]);
      acc[j][2] = _mm256_fmadd_ps(q2, _mm256_loadu_ps(r[j] + i + 16), acc[j][2]);
      acc[j][3] = _mm256_fmadd_ps(q3, _mm256_loadu_ps(r[j] + i + 24), acc[j][3]);
    }
  }
  for (; i + 8 <= n; i += 8) {
    const __m256 qv = _mm256_loadu_ps(q + i);
#pragma GCC unroll 4
    for (int j = 0; j < R; ++j) acc[j][0] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r[j] + i), acc[j][0]);
  }
#pragma GCC unroll 4
  for (int j = 0; j < R; ++j) {
    const __m256 a = _mm256_add_ps(_mm256_add_ps(acc[j][0], acc[j][1]), _mm256_add_ps(acc[j][2], acc[j][3]));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    float sum = _mm_cvtss_f32(s);
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
  // Sign-extend 16 bytes to int16 lanes; vpmaddwd sums pairs into int32 exactly.
  __m256i acc0 = _mm256_setzero_si256(), acc1 = acc0;
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i a0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i)));
    const __m256i b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + i)));
    const __m256i a1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i + 16)));
    const __m256i b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + i + 16)));
    acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(a0, b0));
    acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(a1, b1));
  }
  for (; i + 16 <= n; i += 16) {
    const __m256i a0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i)));
    const __m256i b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + i)));
    acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(a0, b0));
  }
  const __m256i acc = _mm256_add_epi32(acc0, acc1);
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  std::int32_t sum = _mm_cvtsi128_si32(s);
  for (; i < n; ++i) sum += static_cast<std::int32_t>(a[i]) * b[i];
  return sum;
}

// dot_rows_s8 without VNNI: vpmaddubsw would saturate on (u8, s8) pairs, so rows are
// sign-extended to int16 and multiplied exactly with vpmaddwd, as dot_s8 does; the query chunk
// is widened once for R rows and each row's sums meet in one combined horizontal add.
template <int R>
inline void dot_s8_block(const std::int8_t* q, const std::int8_t* const* r, std::size_t n, std::int32_t* out) {
  __m256i acc[R];
#pragma GCC unroll 4
  for (int j = 0; j < R; ++j) acc[j] = _mm256_setzero_si256();
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i qv = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + i)));
#pragma GCC unroll 4
    for (int j = 0; j < R; ++j) {
      const __m256i rv = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r[j] + i)));
      acc[j] = _mm256_add_epi32(acc[j], _mm256_madd_epi16(qv, rv));
    }
  }
  if constexpr (R == 4) {
    const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(acc[0], acc[1]), _mm256_hadd_epi32(acc[2], acc[3]));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out),
                     _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1)));
  } else {
#pragma GCC unroll 4
    for (int j = 0; j < R; ++j) {
      __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc[j]), _mm256_extracti128_si256(acc[j], 1));
      s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
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

// ---------------------------------------------------------------------------------------
// bias_act_f32

// The bias_act_f32 step on one vector: the reference's compare-selects map onto
// blendv/max/min exactly.
struct ActVec {
  __m256 bias, slope, lo, hi;
  ActVec(float b, float s, float l, float h)
      : bias(_mm256_set1_ps(b)), slope(_mm256_set1_ps(s)), lo(_mm256_set1_ps(l)), hi(_mm256_set1_ps(h)) {}
  __m256 operator()(__m256 x) const {
    __m256 y = _mm256_add_ps(x, bias);
    y = _mm256_blendv_ps(y, _mm256_mul_ps(y, slope), _mm256_cmp_ps(y, _mm256_setzero_ps(), _CMP_LT_OQ));
    y = _mm256_max_ps(lo, y);  // lo > y ? lo : y
    return _mm256_min_ps(hi, y);  // hi < y ? hi : y
  }
};

inline float bias_act1(float x, const BiasActParams& p) {
  float y = x + p.bias;
  y = y < 0.0f ? y * p.neg_slope : y;
  y = y < p.lo ? p.lo : y;
  y = p.hi < y ? p.hi : y;
  return y;
}

void bias_act_f32(float* x, std::size_t n, const BiasActParams& p) {
  const ActVec act(p.bias, p.neg_slope, p.lo, p.hi);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, act(_mm256_loadu_ps(x + i)));
  for (; i < n; ++i) x[i] = bias_act1(x[i], p);
}

// ---------------------------------------------------------------------------------------
// gemm_f32: B is packed one 16-column panel at a time (kKc rows deep, zero-padded on the
// right, 16 KiB on the stack, so it stays in L1 while every 6-row tile of A sweeps it); the
// 6x16 register tile holds 12 accumulators and takes one broadcast of A per row and two
// loads of the panel per k step. A is read in place (convolution weights are small).

constexpr std::size_t kGemmNr = 16;
constexpr std::size_t kGemmMr = 6;
constexpr std::size_t kGemmKc = 256;

void pack_panel16(const float* b, std::ptrdiff_t ldb, std::size_t kc, std::size_t nc, float* panel) {
  if (nc == kGemmNr) {
    for (std::size_t p = 0; p < kc; ++p) {
      const float* row = b + static_cast<std::ptrdiff_t>(p) * ldb;
      _mm256_store_ps(panel + p * kGemmNr, _mm256_loadu_ps(row));
      _mm256_store_ps(panel + p * kGemmNr + 8, _mm256_loadu_ps(row + 8));
    }
    return;
  }
  for (std::size_t p = 0; p < kc; ++p) {
    const float* row = b + static_cast<std::ptrdiff_t>(p) * ldb;
    float* dst = panel + p * kGemmNr;
    std::size_t j = 0;
    for (; j < nc; ++j) dst[j] = row[j];
    for (; j < kGemmNr; ++j) dst[j] = 0.0f;
  }
}

// Accumulates one row of the tile: the accumulators are named variables (not arrays) so
// that they stay in registers.
#define PICOFACE_GEMM_ROW(r)                                        \
  if constexpr (MR > r) {                                           \
    const __m256 av = _mm256_broadcast_ss(a##r + p);                \
    lo##r = _mm256_fmadd_ps(av, b0, lo##r);                         \
    hi##r = _mm256_fmadd_ps(av, b1, hi##r);                         \
  }

inline void store_row16(float* cr, __m256 lo, __m256 hi, std::size_t nc, const TileStore& st, int r) {
  if (st.load_c) {
    if (nc == kGemmNr) {
      lo = _mm256_add_ps(lo, _mm256_loadu_ps(cr));
      hi = _mm256_add_ps(hi, _mm256_loadu_ps(cr + 8));
    } else {
      alignas(32) float tmp[kGemmNr] = {};
      for (std::size_t j = 0; j < nc; ++j) tmp[j] = cr[j];
      lo = _mm256_add_ps(lo, _mm256_load_ps(tmp));
      hi = _mm256_add_ps(hi, _mm256_load_ps(tmp + 8));
    }
  }
  if (st.epi) {
    const RowBiasAct& e = *st.epi;
    const std::size_t i = st.row0 + static_cast<std::size_t>(r);
    const ActVec act(e.bias ? e.bias[i] : 0.0f, e.slopes ? e.slopes[i] : e.neg_slope, e.lo, e.hi);
    lo = act(lo);
    hi = act(hi);
  }
  if (nc == kGemmNr) {
    _mm256_storeu_ps(cr, lo);
    _mm256_storeu_ps(cr + 8, hi);
    return;
  }
  alignas(32) float tmp[kGemmNr];
  _mm256_store_ps(tmp, lo);
  _mm256_store_ps(tmp + 8, hi);
  for (std::size_t j = 0; j < nc; ++j) cr[j] = tmp[j];
}

template <int MR>
inline void gemm_tile(std::size_t kc, const float* a, std::ptrdiff_t lda, const float* panel, float* c,
                      std::ptrdiff_t ldc, std::size_t nc, const TileStore& st) {
  __m256 lo0 = _mm256_setzero_ps(), hi0 = lo0, lo1 = lo0, hi1 = lo0, lo2 = lo0, hi2 = lo0;
  __m256 lo3 = lo0, hi3 = lo0, lo4 = lo0, hi4 = lo0, lo5 = lo0, hi5 = lo0;
  const float* a0 = a;
  const float* a1 = a0 + (MR > 1 ? lda : 0);
  const float* a2 = a1 + (MR > 2 ? lda : 0);
  const float* a3 = a2 + (MR > 3 ? lda : 0);
  const float* a4 = a3 + (MR > 4 ? lda : 0);
  const float* a5 = a4 + (MR > 5 ? lda : 0);
  const float* bp = panel;
  for (std::size_t p = 0; p < kc; ++p, bp += kGemmNr) {
    const __m256 b0 = _mm256_load_ps(bp);
    const __m256 b1 = _mm256_load_ps(bp + 8);
    PICOFACE_GEMM_ROW(0)
    PICOFACE_GEMM_ROW(1)
    PICOFACE_GEMM_ROW(2)
    PICOFACE_GEMM_ROW(3)
    PICOFACE_GEMM_ROW(4)
    PICOFACE_GEMM_ROW(5)
  }
  store_row16(c, lo0, hi0, nc, st, 0);
  if constexpr (MR > 1) store_row16(c + ldc, lo1, hi1, nc, st, 1);
  if constexpr (MR > 2) store_row16(c + 2 * ldc, lo2, hi2, nc, st, 2);
  if constexpr (MR > 3) store_row16(c + 3 * ldc, lo3, hi3, nc, st, 3);
  if constexpr (MR > 4) store_row16(c + 4 * ldc, lo4, hi4, nc, st, 4);
  if constexpr (MR > 5) store_row16(c + 5 * ldc, lo5, hi5, nc, st, 5);
}

#undef PICOFACE_GEMM_ROW

// gemm_driver.h's view of the 6x16 tile.
struct Avx2Tile {
  static constexpr std::size_t kMr = kGemmMr, kNr = kGemmNr, kKc = kGemmKc;
  static void pack(const float* b, std::ptrdiff_t ldb, std::size_t kc, std::size_t nc, float* panel) {
    pack_panel16(b, ldb, kc, nc, panel);
  }
  template <int MR>
  static void tile(std::size_t kc, const float* a, std::ptrdiff_t lda, const float* panel, float* c,
                   std::ptrdiff_t ldc, std::size_t nc, const TileStore& st) {
    gemm_tile<MR>(kc, a, lda, panel, c, ldc, nc, st);
  }
  static void bias_act(float* x, std::size_t n, const BiasActParams& p) { bias_act_f32(x, n, p); }
};

void gemm_f32(std::size_t m, std::size_t n, std::size_t k, const float* a, std::ptrdiff_t lda,
              const float* b, std::ptrdiff_t ldb, float* c, std::ptrdiff_t ldc, bool accumulate) {
  gemm_blocked<Avx2Tile>(m, n, k, a, lda, b, ldb, c, ldc, accumulate, nullptr);
}

void conv_gemm_f32(std::size_t m, std::size_t n, std::size_t k, const float* a, std::ptrdiff_t lda,
                   const float* b, std::ptrdiff_t ldb, float* c, std::ptrdiff_t ldc, const RowBiasAct& e) {
  gemm_blocked<Avx2Tile>(m, n, k, a, lda, b, ldb, c, ldc, false, &e);
}

// ---------------------------------------------------------------------------------------
// dwconv3x3_row_f32: 8 output columns per vector, every column including the borders (the
// rows are padded); stride 2 deinterleaves even/odd columns. Four vectors are accumulated at
// once: one accumulator would chain all nine FMAs on its latency (the kernel ran 4x slower
// that way). The epilogue runs on the finished row while it is in L1 (inside the vector
// loop it would push the nine weights out of the 16 registers).

// Even and odd elements of the 16 floats at p.
inline void deinterleave16(const float* p, __m256* even, __m256* odd) {
  const __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8);
  *even = _mm256_castpd_ps(_mm256_permute4x64_pd(
      _mm256_castps_pd(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0))), _MM_SHUFFLE(3, 1, 2, 0)));
  *odd = _mm256_castpd_ps(_mm256_permute4x64_pd(
      _mm256_castps_pd(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1))), _MM_SHUFFLE(3, 1, 2, 0)));
}

// acc += the three taps of one padded row r (already offset to the block's first column).
template <int S>
inline __m256 dw_taps(const float* r, const __m256* w3, __m256 acc) {
  if (S == 1) {
    acc = _mm256_fmadd_ps(w3[0], _mm256_loadu_ps(r), acc);
    acc = _mm256_fmadd_ps(w3[1], _mm256_loadu_ps(r + 1), acc);
    return _mm256_fmadd_ps(w3[2], _mm256_loadu_ps(r + 2), acc);
  }
  __m256 c0, c1, c1b, c2;
  deinterleave16(r, &c0, &c1);
  deinterleave16(r + 1, &c1b, &c2);
  acc = _mm256_fmadd_ps(w3[0], c0, acc);
  acc = _mm256_fmadd_ps(w3[1], c1, acc);
  return _mm256_fmadd_ps(w3[2], c2, acc);
}

template <int S>
void dw_row(const float* const* p, const __m256* wv, float* d, int out_w) {
  int ox = 0;
  for (; ox + 32 <= out_w; ox += 32) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int ky = 0; ky < 3; ++ky) {
      if (!p[ky]) continue;
      for (int u = 0; u < 4; ++u) acc[u] = dw_taps<S>(p[ky] + S * (ox + 8 * u), wv + 3 * ky, acc[u]);
    }
    for (int u = 0; u < 4; ++u) _mm256_storeu_ps(d + ox + 8 * u, acc[u]);
  }
  for (; ox < out_w; ox += 8) {
    __m256 acc = _mm256_setzero_ps();
    for (int ky = 0; ky < 3; ++ky) {
      if (p[ky]) acc = dw_taps<S>(p[ky] + S * ox, wv + 3 * ky, acc);
    }
    if (ox + 8 <= out_w) {
      _mm256_storeu_ps(d + ox, acc);
    } else {
      alignas(32) float tmp[8];
      _mm256_store_ps(tmp, acc);
      for (int j = 0; ox + j < out_w; ++j) d[ox + j] = tmp[j];
    }
  }
}

void dwconv3x3_row_f32(const float* const* p, const float* w, int stride, float* d, int out_w,
                       const BiasActParams& bp) {
  __m256 wv[9];
  for (int t = 0; t < 9; ++t) wv[t] = _mm256_set1_ps(w[t]);
  if (stride == 1) dw_row<1>(p, wv, d, out_w);
  else dw_row<2>(p, wv, d, out_w);
  bias_act_f32(d, static_cast<std::size_t>(out_w), bp);
}

// ---------------------------------------------------------------------------------------
// conv3x3_f32 (driver in conv3x3_driver.h): the register tile is MB output channels x 16
// columns: 2*MB accumulators, two loads and MB weight broadcasts per tap.


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
      if (base + j >= 0 && base + j + 8 <= in_w && j + 8 <= ncr + 2) {
        _mm256_storeu_ps(buf + j, _mm256_loadu_ps(row + base + j));
        j += 8;
      } else {
        buf[j] = q(j);
        ++j;
      }
    }
    return;
  }
  for (int i = 0; i <= ncr;) {
    if (base + 2 * i >= 0 && base + 2 * i + 16 <= in_w && i + 8 <= ncr + 1) {
      __m256 even, odd;
      deinterleave16(row + base + 2 * i, &even, &odd);
      _mm256_storeu_ps(buf + i, even);
      _mm256_storeu_ps(buf + kC3Half + i, odd);
      i += 8;
    } else {
      buf[i] = q(2 * i);
      buf[kC3Half + i] = q(2 * i + 1);
      ++i;
    }
  }
}

// The taps of one output row: tap t reads 16 columns at tap[t] + i0 and weight w[widx[t]].
// Output channels m0..m0+MB-1, columns [i0, i0 + count) of the chunk (count <= 16); out
// points at column 0 of the chunk in channel m0's output row.
template <int MB>
inline void c3_tile(const C3Taps& t, int i0, int count, const float* w, int wstride, float* out,
                    std::ptrdiff_t out_plane, int m0, const RowBiasAct& e) {
  __m256 acc[MB][2];
  for (int m = 0; m < MB; ++m) acc[m][0] = acc[m][1] = _mm256_setzero_ps();
  for (int k = 0; k < t.n; ++k) {
    const __m256 x0 = _mm256_loadu_ps(t.tap[k] + i0), x1 = _mm256_loadu_ps(t.tap[k] + i0 + 8);
    const float* wk = w + t.widx[k];
    for (int m = 0; m < MB; ++m) {
      const __m256 wv = _mm256_broadcast_ss(wk + m * wstride);
      acc[m][0] = _mm256_fmadd_ps(wv, x0, acc[m][0]);
      acc[m][1] = _mm256_fmadd_ps(wv, x1, acc[m][1]);
    }
  }
  for (int m = 0; m < MB; ++m) {
    const int r = m0 + m;
    const ActVec act(e.bias ? e.bias[r] : 0.0f, e.slopes ? e.slopes[r] : e.neg_slope, e.lo, e.hi);
    float* d = out + m * out_plane + i0;
    const __m256 y0 = act(acc[m][0]), y1 = act(acc[m][1]);
    if (count == 16) {
      _mm256_storeu_ps(d, y0);
      _mm256_storeu_ps(d + 8, y1);
    } else {
      alignas(32) float tmp[16];
      _mm256_store_ps(tmp, y0);
      _mm256_store_ps(tmp + 8, y1);
      std::memcpy(d, tmp, static_cast<std::size_t>(count) * sizeof(float));
    }
  }
}

template <int MB>
void c3_block(const C3Taps& t, int nc, const float* w, int wstride, float* out, std::ptrdiff_t out_plane, int m0,
              const RowBiasAct& e) {
  for (int i0 = 0; i0 < nc; i0 += 16) c3_tile<MB>(t, i0, std::min(16, nc - i0), w, wstride, out, out_plane, m0, e);
}

// conv3x3_driver.h's view of the register tiles.
struct Avx2Conv3x3 {
  static constexpr int kMb = 6, kCols = 16;
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
  conv3x3_driver<Avx2Conv3x3>(src, cin, in_h, in_w, w, cout, stride, dst, out_h, out_w, e);
}

// ---------------------------------------------------------------------------------------
// int8 kernels. vpmaddubsw is not used: its u8 x s8 pair sums saturate at int16 (2 * 255 *
// 128 > 32767) for full-range int8 operands, so both operands are sign-extended to int16 and
// multiplied by vpmaddwd, whose pair sums (at most 2 * 2^14) are exact in int32.

// Requantisation of 8 int32 lanes with channel 0 of q, operation for operation the scalar
// requant1; blendv picks the negative scale by each sum's sign bit.
struct RequantVec8 {
  __m256 scale, neg, clamp_lo, clamp_hi;
  __m256i zp, lo, hi;
  explicit RequantVec8(const RequantParams& q)
      : scale(_mm256_set1_ps(q.scale[0])),
        neg(_mm256_set1_ps(neg_scale_of(q, 0))),
        clamp_lo(_mm256_set1_ps(-kRequantClamp)),
        clamp_hi(_mm256_set1_ps(kRequantClamp)),
        zp(_mm256_set1_epi32(q.zero_point)),
        lo(_mm256_set1_epi32(q.lo)),
        hi(_mm256_set1_epi32(q.hi)) {}
  __m256i operator()(__m256i acc) const {
    __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), _mm256_blendv_ps(scale, neg, _mm256_castsi256_ps(acc)));
    f = _mm256_min_ps(_mm256_max_ps(f, clamp_lo), clamp_hi);
    const __m256i r = _mm256_add_epi32(_mm256_cvtps_epi32(f), zp);
    return _mm256_min_epi32(_mm256_max_epi32(r, lo), hi);
  }
};

// 8 int32 lanes already within int8 range -> 8 bytes in lane order (low half of the result).
inline __m128i narrow8(__m256i v) {
  const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  return _mm_packs_epi16(w, w);
}

inline void store_bytes(std::int8_t* dst, __m128i v, std::size_t count) {
  alignas(16) std::int8_t tmp[16];
  _mm_store_si128(reinterpret_cast<__m128i*>(tmp), v);
  std::memcpy(dst, tmp, count);
}

void requant_s32_s8(const std::int32_t* x, std::size_t n, const RequantParams& q, std::int8_t* y) {
  const RequantVec8 rq(q);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i v = rq(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(y + i), narrow8(v));
  }
  for (; i < n; ++i) y[i] = requant1(x[i], q.scale[0], neg_scale_of(q, 0), q);
}

// add_s8: add1's steps on 8 int32 lanes (low 8 bytes of each operand).
struct AddVec8 {
  __m256 sa, sb, clamp_lo, clamp_hi;
  __m256i za, zb, zp, lo, hi;
  explicit AddVec8(const AddParams& p)
      : sa(_mm256_set1_ps(p.a_scale)),
        sb(_mm256_set1_ps(p.b_scale)),
        clamp_lo(_mm256_set1_ps(-kRequantClamp)),
        clamp_hi(_mm256_set1_ps(kRequantClamp)),
        za(_mm256_set1_epi32(p.a_zero_point)),
        zb(_mm256_set1_epi32(p.b_zero_point)),
        zp(_mm256_set1_epi32(p.zero_point)),
        lo(_mm256_set1_epi32(p.lo)),
        hi(_mm256_set1_epi32(p.hi)) {}
  __m256i operator()(__m128i a8, __m128i b8) const {
    const __m256 fa = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepi8_epi32(a8), za)), sa);
    const __m256 fb = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepi8_epi32(b8), zb)), sb);
    const __m256 f = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(fa, fb), clamp_lo), clamp_hi);
    const __m256i r = _mm256_add_epi32(_mm256_cvtps_epi32(f), zp);
    return _mm256_min_epi32(_mm256_max_epi32(r, lo), hi);
  }
};

void add_s8(const std::int8_t* a, const std::int8_t* b, std::size_t n, const AddParams& p, std::int8_t* y) {
  const AddVec8 op(p);
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m128i va = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i));
    const __m128i vb = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + i));
    const __m256i r0 = op(va, vb), r1 = op(_mm_srli_si128(va, 8), _mm_srli_si128(vb, 8));
    // packssdw works per 128-bit lane: words 0-3 | 8-11 | 4-7 | 12-15, put back in order.
    const __m256i w = _mm256_permute4x64_epi64(_mm256_packs_epi32(r0, r1), _MM_SHUFFLE(3, 1, 2, 0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i),
                     _mm_packs_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1)));
  }
  for (; i < n; ++i) y[i] = add1(a[i], b[i], p);
}

// conv_gemm_s8: B panels hold pairs of consecutive k as int16 in each 32-bit lane (16
// columns, 64 bytes per pair); the 4x16 register tile takes a broadcast A pair per row and
// two vpmaddwd per row and pair.
struct Avx2TileS8 {
  static constexpr std::size_t kMr = 4;
  static constexpr std::size_t kNr = 16;
  static constexpr std::size_t kKc = 512;
  static constexpr std::size_t kPanelBytes = kKc / 2 * kNr * 4;

  static void pack(const std::int8_t* b, std::ptrdiff_t ldb, std::size_t kc, std::size_t nc, void* out) {
    std::int16_t* panel = static_cast<std::int16_t*>(out);
    for (std::size_t p = 0; p < kc; p += 2, panel += 2 * kNr) {
      const std::int8_t* r0 = b + static_cast<std::ptrdiff_t>(p) * ldb;
      if (nc == kNr && p + 1 < kc) {
        const __m128i x0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r0));
        const __m128i x1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r0 + ldb));
        _mm256_store_si256(reinterpret_cast<__m256i*>(panel), _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(x0, x1)));
        _mm256_store_si256(reinterpret_cast<__m256i*>(panel + 16), _mm256_cvtepi8_epi16(_mm_unpackhi_epi8(x0, x1)));
        continue;
      }
      for (std::size_t j = 0; j < kNr; ++j) {
        panel[2 * j] = j < nc ? r0[j] : 0;
        panel[2 * j + 1] = j < nc && p + 1 < kc ? r0[ldb + static_cast<std::ptrdiff_t>(j)] : 0;
      }
    }
  }

  static std::int32_t row_offset(const std::int8_t*, std::size_t) { return 0; }

  // A[p], A[p+1] (zero past `avail`) sign-extended into the two int16 halves of a lane.
  static __m256i pair(const std::int8_t* a, std::size_t avail) {
    const std::int32_t lo = static_cast<std::uint16_t>(static_cast<std::int16_t>(a[0]));
    const std::int32_t hi = avail > 1 ? static_cast<std::int32_t>(a[1]) * 65536 : 0;
    return _mm256_set1_epi32(lo + hi);
  }

  template <int MR>
  static void tile(std::size_t kc, const std::int8_t* a, std::ptrdiff_t lda, const void* panel_v, std::int32_t* acc) {
    const std::int16_t* panel = static_cast<const std::int16_t*>(panel_v);
    __m256i c0[MR], c1[MR];
    for (int r = 0; r < MR; ++r) {
      c0[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + r * kNr));
      c1[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + r * kNr + 8));
    }
    for (std::size_t p = 0; p < kc; p += 2, panel += 2 * kNr) {
      const __m256i b0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(panel));
      const __m256i b1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(panel + 16));
      for (int r = 0; r < MR; ++r) {
        const __m256i av = pair(a + r * lda + static_cast<std::ptrdiff_t>(p), kc - p);
        c0[r] = _mm256_add_epi32(c0[r], _mm256_madd_epi16(av, b0));
        c1[r] = _mm256_add_epi32(c1[r], _mm256_madd_epi16(av, b1));
      }
    }
    for (int r = 0; r < MR; ++r) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + r * kNr), c0[r]);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + r * kNr + 8), c1[r]);
    }
  }

  static void requant(const std::int32_t* x, std::size_t n, const RequantParams& q, std::int8_t* y) {
    requant_s32_s8(x, n, q, y);
  }
};

void conv_gemm_s8(std::size_t m, std::size_t n, std::size_t k, const std::int8_t* a, std::ptrdiff_t lda,
                  const std::int8_t* b, std::ptrdiff_t ldb, const std::int32_t* bias, std::int8_t* c,
                  std::ptrdiff_t ldc, const RequantParams& q) {
  conv_gemm_s8_blocked<Avx2TileS8>(m, n, k, a, lda, b, ldb, bias, c, ldc, q);
}

// dwconv3x3_row_s8: taps are paired so one vpmaddwd adds two exact int16 products into an
// int32 lane. Stride 2 pairs columns (2i, 2i+1), which sit next to each other in the input,
// so 8 outputs come in order from one sign-extended 16-byte load; stride 1 interleaves the
// loads at offsets 0 and 1 (and 2 with zero), giving outputs {0-3, 8-11} and {4-7, 12-15},
// which packssdw puts back in order.
inline __m256i load16_s16(const std::int8_t* p) {
  return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

inline __m256i weight_pair(std::int8_t w0, std::int8_t w1) {
  return _mm256_set1_epi32(static_cast<std::uint16_t>(static_cast<std::int16_t>(w0)) +
                           static_cast<std::int32_t>(w1) * 65536);
}

void dwconv3x3_row_s8(const std::int8_t* const* rows, const std::int8_t* w, std::int32_t bias, int stride,
                      std::int8_t* dst, int out_w, const RequantParams& q) {
  const RequantVec8 rq(q);
  __m256i w01[3], w2z[3];
  for (int ky = 0; ky < 3; ++ky) {
    w01[ky] = weight_pair(w[3 * ky], w[3 * ky + 1]);
    w2z[ky] = weight_pair(w[3 * ky + 2], 0);
  }
  const __m256i vb = _mm256_set1_epi32(bias);
  const __m256i zero = _mm256_setzero_si256();
  if (stride == 1) {
    for (int ox = 0; ox < out_w; ox += 16) {
      __m256i lo = vb, hi = vb;
      for (int ky = 0; ky < 3; ++ky) {
        const std::int8_t* r = rows[ky] + ox;
        const __m256i x0 = load16_s16(r), x1 = load16_s16(r + 1), x2 = load16_s16(r + 2);
        lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(x0, x1), w01[ky]));
        hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(x0, x1), w01[ky]));
        lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(x2, zero), w2z[ky]));
        hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(x2, zero), w2z[ky]));
      }
      const __m256i w16 = _mm256_packs_epi32(rq(lo), rq(hi));  // outputs 0-7 | 8-15
      const __m256i b8 = _mm256_permute4x64_epi64(_mm256_packs_epi16(w16, w16), _MM_SHUFFLE(3, 1, 2, 0));
      const __m128i v = _mm256_castsi256_si128(b8);
      if (ox + 16 <= out_w) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + ox), v);
      } else {
        store_bytes(dst + ox, v, static_cast<std::size_t>(out_w - ox));
      }
    }
    return;
  }
  for (int ox = 0; ox < out_w; ox += 8) {
    __m256i acc = vb;
    for (int ky = 0; ky < 3; ++ky) {
      const std::int8_t* r = rows[ky] + 2 * ox;
      acc = _mm256_add_epi32(acc, _mm256_madd_epi16(load16_s16(r), w01[ky]));
      acc = _mm256_add_epi32(acc, _mm256_madd_epi16(load16_s16(r + 2), w2z[ky]));
    }
    const __m128i v = narrow8(rq(acc));
    if (ox + 8 <= out_w) {
      _mm_storel_epi64(reinterpret_cast<__m128i*>(dst + ox), v);
    } else {
      store_bytes(dst + ox, v, static_cast<std::size_t>(out_w - ox));
    }
  }
}

}  // namespace

void fill_avx2(KernelTable* t) {
  t->resample_row_u8 = resample_row_u8;
  t->warp_affine_u8 = warp_affine_u8;
  t->blend_rows_f32 = blend_rows_f32;
  t->pack_row = pack_row;
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
