// AVX-512 (F/BW/VL/VNNI) kernels: the streaming kernels at 16 lanes, with masked loads and
// stores for tails (masked-off lanes never fault, so nothing is read past the end), and
// dot_s8 on VNNI. resample_row_u8 and warp_affine_u8 are inherited from AVX2: they are bound
// by per-pixel byte loads and shuffles, which 16 lanes do not make cheaper. Preprocessing
// kernels keep the reference's operation order without FMA so that every x86 level produces
// bit-identical tensors.
// GCC 12's AVX-512 headers seed some results with _mm512_undefined_*() and then warn about
// that deliberately uninitialised value when inlined; a header false positive, so silence it.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "conv3x3_driver.h"
#include "dot_rows_driver.h"
#include "gemm_driver.h"
#include "gemm_s8_driver.h"
#include "isa_fill.h"

namespace picoface {
namespace {

// The first `count` (0..16) lanes.
inline __mmask16 tail_mask16(int count) {
  return static_cast<__mmask16>((1u << count) - 1u);
}

// ---------------------------------------------------------------------------------------
// blend_rows_f32

void blend_rows_f32(const float* const* rows, const float* weights, int ntaps, int n,
                    float* out) {
  int i = 0;
  if (ntaps == 2) {
    const float* r0 = rows[0];
    const float* r1 = rows[1];
    const __m512 w0 = _mm512_set1_ps(weights[0]);
    const __m512 w1 = _mm512_set1_ps(weights[1]);
    for (; i + 16 <= n; i += 16) {
      _mm512_storeu_ps(out + i, _mm512_add_ps(_mm512_mul_ps(w0, _mm512_loadu_ps(r0 + i)),
                                              _mm512_mul_ps(w1, _mm512_loadu_ps(r1 + i))));
    }
  }
  for (; i < n; i += 16) {
    const __mmask16 m = tail_mask16(n - i < 16 ? n - i : 16);
    __m512 acc = _mm512_mul_ps(_mm512_set1_ps(weights[0]), _mm512_maskz_loadu_ps(m, rows[0] + i));
    for (int t = 1; t < ntaps; ++t) {
      acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_set1_ps(weights[t]),
                                             _mm512_maskz_loadu_ps(m, rows[t] + i)));
    }
    _mm512_mask_storeu_ps(out + i, m, acc);
  }
}

// ---------------------------------------------------------------------------------------
// pack_row

// One block of up to 16 pixels; `full` blocks use plain loads and stores because masked
// stores are slow on some cores (AMD Zen 4 among them), masks serve only the row's tail.
template <bool full>
inline void pack_block(const float* const* in, int i, int count, const PackParams& p,
                       const __m512 (&mat)[3][3], const __m512 (&bias)[3], void* out) {
  const __mmask16 m = tail_mask16(count);
  const int ic = p.in_channels, oc = p.out_channels;
  __m512 x[3];
  for (int j = 0; j < ic; ++j) {
    x[j] = full ? _mm512_loadu_ps(in[j] + i) : _mm512_maskz_loadu_ps(m, in[j] + i);
  }
  for (int c = 0; c < oc; ++c) {
    // Reference order: bias, then each input.
    __m512 v = bias[c];
    for (int j = 0; j < ic; ++j) {
      if (p.matrix[c][j] != 0.0f) v = _mm512_add_ps(v, _mm512_mul_ps(mat[c][j], x[j]));
    }
    const std::ptrdiff_t base = i * p.pixel_stride + c * p.channel_stride;
    if (p.to_int8) {
      // See sse41.cc: half-to-even, zero point as float, max_ps sends NaN to -128.
      __m512 q = _mm512_roundscale_ps(_mm512_mul_ps(v, _mm512_set1_ps(p.inv_scale)),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      q = _mm512_add_ps(q, _mm512_set1_ps(static_cast<float>(p.zero_point)));
      q = _mm512_min_ps(_mm512_max_ps(q, _mm512_set1_ps(-128.0f)), _mm512_set1_ps(127.0f));
      const __m128i q8 = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(q));
      std::int8_t* qout = static_cast<std::int8_t*>(out) + base;
      if (p.pixel_stride == 1) {
        if (full) {
          _mm_storeu_si128(reinterpret_cast<__m128i*>(qout), q8);
        } else {
          _mm_mask_storeu_epi8(qout, m, q8);
        }
      } else {
        alignas(16) std::int8_t r[16];
        _mm_store_si128(reinterpret_cast<__m128i*>(r), q8);
        for (int j = 0; j < count; ++j) qout[j * p.pixel_stride] = r[j];
      }
    } else {
      float* fout = static_cast<float*>(out) + base;
      if (p.pixel_stride == 1) {
        if (full) {
          _mm512_storeu_ps(fout, v);
        } else {
          _mm512_mask_storeu_ps(fout, m, v);
        }
      } else {
        alignas(64) float r[16];
        _mm512_store_ps(r, v);
        for (int j = 0; j < count; ++j) fout[j * p.pixel_stride] = r[j];
      }
    }
  }
}

void pack_row(const float* const* in, int n, const PackParams& p, void* out) {
  __m512 mat[3][3], bias[3];
  for (int c = 0; c < 3; ++c) {
    for (int k = 0; k < 3; ++k) mat[c][k] = _mm512_set1_ps(p.matrix[c][k]);
    bias[c] = _mm512_set1_ps(p.bias[c]);
  }
  int i = 0;
  for (; i + 16 <= n; i += 16) pack_block<true>(in, i, 16, p, mat, bias, out);
  if (i < n) pack_block<false>(in, i, n - i, p, mat, bias, out);
}

// ---------------------------------------------------------------------------------------
// Dot products

// dot_f32's summation on R rows at once: every row keeps its own four accumulators and sees
// exactly dot_f32's operations (so dot_rows_f32 is bit-identical to it); the rows share each
// query load.
template <int R>
inline void dot_f32_block(const float* q, const float* const* r, std::size_t n, float* out) {
  __m512 acc[R][4];
#pragma GCC unroll 8
  for (int j = 0; j < R; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = _mm512_setzero_ps();
  std::size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m512 q0 = _mm512_loadu_ps(q + i), q1 = _mm512_loadu_ps(q + i + 16);
    const __m512 q2 = _mm512_loadu_ps(q + i + 32), q3 = _mm512_loadu_ps(q + i + 48);
#pragma GCC unroll 8
    for (int j = 0; j < R; ++j) {
      acc[j][0] = _mm512_fmadd_ps(q0, _mm512_loadu_ps(r[j] + i), acc[j][0]);
      acc[j][1] = _mm512_fmadd_ps(q1, _mm512_loadu_ps(r[j] + i + 16), acc[j][1]);
      acc[j][2] = _mm512_fmadd_ps(q2, _mm512_loadu_ps(r[j] + i + 32), acc[j][2]);
      acc[j][3] = _mm512_fmadd_ps(q3, _mm512_loadu_ps(r[j] + i + 48), acc[j][3]);
    }
  }
  for (; i < n; i += 16) {
    const __mmask16 m = tail_mask16(n - i < 16 ? static_cast<int>(n - i) : 16);
    const __m512 qv = _mm512_maskz_loadu_ps(m, q + i);
#pragma GCC unroll 8
    for (int j = 0; j < R; ++j) acc[j][0] = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(m, r[j] + i), acc[j][0]);
  }
#pragma GCC unroll 8
  for (int j = 0; j < R; ++j) {
    out[j] = _mm512_reduce_add_ps(
        _mm512_add_ps(_mm512_add_ps(acc[j][0], acc[j][1]), _mm512_add_ps(acc[j][2], acc[j][3])));
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

// The first `count` (0..64) bytes.
inline __mmask64 tail_mask64(std::size_t count) {
  return count >= 64 ? ~static_cast<__mmask64>(0) : (static_cast<__mmask64>(1) << count) - 1;
}

std::int32_t dot_s8(const std::int8_t* a, const std::int8_t* b, std::size_t n) {
  // vpdpbusd multiplies unsigned by signed bytes, so feed a+128 (a XOR 0x80) and subtract
  // 128*sum(b), itself one vpdpbusd against ones. Per lane, sum((a+128)*b) stays below
  // n/16 * 255*128 < 2^31 under the caller's n*128*128 < 2^31, and the per-lane correction
  // is applied before the horizontal sum, so no intermediate overflows.
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m512i ones = _mm512_set1_epi8(1);
  __m512i acc = _mm512_setzero_si512(), sum_b = acc;
  for (std::size_t i = 0; i < n; i += 64) {
    const __mmask64 m = tail_mask64(n - i);
    // Masked-off bytes load as zero: b = 0 contributes nothing to either sum.
    const __m512i va = _mm512_maskz_loadu_epi8(m, a + i);
    const __m512i vb = _mm512_maskz_loadu_epi8(m, b + i);
    acc = _mm512_dpbusd_epi32(acc, _mm512_xor_si512(va, flip), vb);
    sum_b = _mm512_dpbusd_epi32(sum_b, ones, vb);
  }
  return _mm512_reduce_add_epi32(_mm512_sub_epi32(acc, _mm512_slli_epi32(sum_b, 7)));
}

// dot_rows_s8 on VNNI. vpdpbusd takes one unsigned operand; here it is the row, made unsigned
// as r XOR 0x80 = r + 128, against the signed query kept as loaded:
//   sum((r + 128) * q) = sum(r * q) + 128 * sum(q),
// and 128 * sum(q) is one constant per call, subtracted once per row. That costs one vpxord
// per 64 row bytes; the other way round (unsigned query) needs sum(r) per row, a second
// vpdpbusd against ones. Tails are masked: masked-off query bytes load as zero, so the row's
// masked-off bytes (zero, 128 after the XOR) add nothing, and nothing past d is read.
// vpdpbusd and vpaddd wrap modulo 2^32 and the true sum fits int32 (d*128*128 < 2^31), so
// the result is exact however the per-lane partial sums grow. Rows in flight: R, each with
// one accumulator; the query chunk is loaded once for all of them.
template <int R>
inline void dot_s8_block(const std::int8_t* q, const std::int8_t* const* r, std::size_t n, std::int32_t bias,
                         std::int32_t* out) {
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  __m512i acc[R];
#pragma GCC unroll 8
  for (int j = 0; j < R; ++j) acc[j] = _mm512_setzero_si512();
  std::size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m512i qv = _mm512_loadu_si512(q + i);
#pragma GCC unroll 8
    for (int j = 0; j < R; ++j) {
      acc[j] = _mm512_dpbusd_epi32(acc[j], _mm512_xor_si512(_mm512_loadu_si512(r[j] + i), flip), qv);
    }
  }
  if (i < n) {
    const __mmask64 m = tail_mask64(n - i);
    const __m512i qv = _mm512_maskz_loadu_epi8(m, q + i);
#pragma GCC unroll 8
    for (int j = 0; j < R; ++j) {
      acc[j] = _mm512_dpbusd_epi32(acc[j], _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, r[j] + i), flip), qv);
    }
  }
  if constexpr (R == 4) {
    // Transpose-and-add: 128-bit lane k of u holds lane k's partial sums of rows 0..3.
    const __m512i t0 = _mm512_add_epi32(_mm512_unpacklo_epi32(acc[0], acc[1]), _mm512_unpackhi_epi32(acc[0], acc[1]));
    const __m512i t1 = _mm512_add_epi32(_mm512_unpacklo_epi32(acc[2], acc[3]), _mm512_unpackhi_epi32(acc[2], acc[3]));
    const __m512i u = _mm512_add_epi32(_mm512_unpacklo_epi64(t0, t1), _mm512_unpackhi_epi64(t0, t1));
    const __m256i v = _mm256_add_epi32(_mm512_castsi512_si256(u), _mm512_extracti64x4_epi64(u, 1));
    const __m128i w = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm_sub_epi32(w, _mm_set1_epi32(bias)));
  } else {
#pragma GCC unroll 8
    for (int j = 0; j < R; ++j) {
      out[j] = static_cast<std::int32_t>(static_cast<std::uint32_t>(_mm512_reduce_add_epi32(acc[j])) -
                                         static_cast<std::uint32_t>(bias));
    }
  }
}

void dot_rows_s8(const std::int8_t* q, const std::int8_t* rows, std::size_t n_rows, std::size_t d,
                 std::ptrdiff_t row_stride, std::int32_t* out) {
  __m512i sum_q = _mm512_setzero_si512();
  const __m512i ones = _mm512_set1_epi8(1);
  for (std::size_t i = 0; i < d; i += 64) {
    sum_q = _mm512_dpbusd_epi32(sum_q, ones, _mm512_maskz_loadu_epi8(tail_mask64(d - i), q + i));
  }
  const std::int32_t bias = static_cast<std::int32_t>(static_cast<std::uint32_t>(_mm512_reduce_add_epi32(sum_q)) << 7);
  dot_rows_blocked<4>(q, rows, n_rows, d, row_stride, out, 0,
                      [bias](auto rc, const std::int8_t* qq, const std::int8_t* const* r, std::size_t n,
                             std::int32_t* o) {
    dot_s8_block<decltype(rc)::value>(qq, r, n, bias, o);
  });
}

// ---------------------------------------------------------------------------------------
// gemm_f32 / conv_gemm_f32: the AVX2 scheme at 16 lanes. B is packed one 32-column panel at a
// time (kKc rows, zero-padded on the right by masked loads, 16 KiB on the stack); the 8x32
// register tile holds 16 zmm accumulators (channel counts are multiples of 8 in the models
// we run, so tiles rarely run short) and takes one broadcast of A per row and two panel
// loads per k step. Tail columns use masked loads and stores, full tiles plain ones.

constexpr std::size_t kGemmNr = 32;
constexpr std::size_t kGemmMr = 8;
constexpr std::size_t kGemmKc = 128;

inline __mmask16 cols_mask(std::size_t nc, std::size_t half) {
  const std::size_t c = nc > half * 16 ? nc - half * 16 : 0;
  return tail_mask16(c >= 16 ? 16 : static_cast<int>(c));
}

void pack_panel32(const float* b, std::ptrdiff_t ldb, std::size_t kc, std::size_t nc, float* panel) {
  if (nc == kGemmNr) {
    for (std::size_t p = 0; p < kc; ++p) {
      const float* row = b + static_cast<std::ptrdiff_t>(p) * ldb;
      _mm512_store_ps(panel + p * kGemmNr, _mm512_loadu_ps(row));
      _mm512_store_ps(panel + p * kGemmNr + 16, _mm512_loadu_ps(row + 16));
    }
    return;
  }
  const __mmask16 m0 = cols_mask(nc, 0), m1 = cols_mask(nc, 1);
  for (std::size_t p = 0; p < kc; ++p) {
    const float* row = b + static_cast<std::ptrdiff_t>(p) * ldb;
    _mm512_store_ps(panel + p * kGemmNr, _mm512_maskz_loadu_ps(m0, row));
    _mm512_store_ps(panel + p * kGemmNr + 16, _mm512_maskz_loadu_ps(m1, row + 16));
  }
}

// The bias_act_f32 step on one vector, bit-identical to the reference's compare-selects.
inline __m512 bias_act16(__m512 x, __m512 bias, __m512 slope, __m512 lo, __m512 hi) {
  __m512 y = _mm512_add_ps(x, bias);
  y = _mm512_mask_mul_ps(y, _mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_LT_OQ), y, slope);
  y = _mm512_max_ps(lo, y);  // lo > y ? lo : y
  return _mm512_min_ps(hi, y);  // hi < y ? hi : y
}


inline void store_row32(float* cr, __m512 lo, __m512 hi, std::size_t nc, const TileStore& st, int r) {
  const bool full = nc == kGemmNr;
  const __mmask16 m0 = full ? 0xFFFF : cols_mask(nc, 0), m1 = full ? 0xFFFF : cols_mask(nc, 1);
  if (st.load_c) {
    lo = _mm512_add_ps(lo, full ? _mm512_loadu_ps(cr) : _mm512_maskz_loadu_ps(m0, cr));
    hi = _mm512_add_ps(hi, full ? _mm512_loadu_ps(cr + 16) : _mm512_maskz_loadu_ps(m1, cr + 16));
  }
  if (st.epi) {
    const RowBiasAct& e = *st.epi;
    const std::size_t i = st.row0 + static_cast<std::size_t>(r);
    const __m512 bias = _mm512_set1_ps(e.bias ? e.bias[i] : 0.0f);
    const __m512 slope = _mm512_set1_ps(e.slopes ? e.slopes[i] : e.neg_slope);
    const __m512 vlo = _mm512_set1_ps(e.lo), vhi = _mm512_set1_ps(e.hi);
    lo = bias_act16(lo, bias, slope, vlo, vhi);
    hi = bias_act16(hi, bias, slope, vlo, vhi);
  }
  if (full) {
    _mm512_storeu_ps(cr, lo);
    _mm512_storeu_ps(cr + 16, hi);
  } else {
    _mm512_mask_storeu_ps(cr, m0, lo);
    _mm512_mask_storeu_ps(cr + 16, m1, hi);
  }
}

#define PICOFACE_GEMM_ROW(r)                         \
  if constexpr (MR > r) {                            \
    const __m512 av = _mm512_set1_ps(a##r[p]);       \
    lo##r = _mm512_fmadd_ps(av, b0, lo##r);          \
    hi##r = _mm512_fmadd_ps(av, b1, hi##r);          \
  }
#define PICOFACE_GEMM_STORE(r) \
  if constexpr (MR > r) store_row32(c + r * ldc, lo##r, hi##r, nc, st, r);

template <int MR>
inline void gemm_tile(std::size_t kc, const float* a, std::ptrdiff_t lda, const float* panel, float* c,
                      std::ptrdiff_t ldc, std::size_t nc, const TileStore& st) {
  __m512 lo0 = _mm512_setzero_ps(), hi0 = lo0, lo1 = lo0, hi1 = lo0, lo2 = lo0, hi2 = lo0, lo3 = lo0, hi3 = lo0;
  __m512 lo4 = lo0, hi4 = lo0, lo5 = lo0, hi5 = lo0, lo6 = lo0, hi6 = lo0, lo7 = lo0, hi7 = lo0;
  const float* a0 = a;
  const float* a1 = a0 + (MR > 1 ? lda : 0);
  const float* a2 = a1 + (MR > 2 ? lda : 0);
  const float* a3 = a2 + (MR > 3 ? lda : 0);
  const float* a4 = a3 + (MR > 4 ? lda : 0);
  const float* a5 = a4 + (MR > 5 ? lda : 0);
  const float* a6 = a5 + (MR > 6 ? lda : 0);
  const float* a7 = a6 + (MR > 7 ? lda : 0);
  const float* bp = panel;
  for (std::size_t p = 0; p < kc; ++p, bp += kGemmNr) {
    const __m512 b0 = _mm512_load_ps(bp);
    const __m512 b1 = _mm512_load_ps(bp + 16);
    PICOFACE_GEMM_ROW(0)
    PICOFACE_GEMM_ROW(1)
    PICOFACE_GEMM_ROW(2)
    PICOFACE_GEMM_ROW(3)
    PICOFACE_GEMM_ROW(4)
    PICOFACE_GEMM_ROW(5)
    PICOFACE_GEMM_ROW(6)
    PICOFACE_GEMM_ROW(7)
  }
  PICOFACE_GEMM_STORE(0)
  PICOFACE_GEMM_STORE(1)
  PICOFACE_GEMM_STORE(2)
  PICOFACE_GEMM_STORE(3)
  PICOFACE_GEMM_STORE(4)
  PICOFACE_GEMM_STORE(5)
  PICOFACE_GEMM_STORE(6)
  PICOFACE_GEMM_STORE(7)
}

#undef PICOFACE_GEMM_ROW
#undef PICOFACE_GEMM_STORE

// bias_act_f32 at 16 lanes, the tail through masks.
void bias_act_f32(float* x, std::size_t n, const BiasActParams& p) {
  const __m512 bias = _mm512_set1_ps(p.bias), slope = _mm512_set1_ps(p.neg_slope), lo = _mm512_set1_ps(p.lo),
               hi = _mm512_set1_ps(p.hi);
  for (std::size_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : tail_mask16(static_cast<int>(n - i));
    _mm512_mask_storeu_ps(x + i, m, bias_act16(_mm512_maskz_loadu_ps(m, x + i), bias, slope, lo, hi));
  }
}

// gemm_driver.h's view of the 8x32 tile.
struct Avx512Tile {
  static constexpr std::size_t kMr = kGemmMr, kNr = kGemmNr, kKc = kGemmKc;
  static void pack(const float* b, std::ptrdiff_t ldb, std::size_t kc, std::size_t nc, float* panel) {
    pack_panel32(b, ldb, kc, nc, panel);
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
  gemm_blocked<Avx512Tile>(m, n, k, a, lda, b, ldb, c, ldc, accumulate, nullptr);
}

void conv_gemm_f32(std::size_t m, std::size_t n, std::size_t k, const float* a, std::ptrdiff_t lda,
                   const float* b, std::ptrdiff_t ldb, float* c, std::ptrdiff_t ldc, const RowBiasAct& e) {
  gemm_blocked<Avx512Tile>(m, n, k, a, lda, b, ldb, c, ldc, false, &e);
}

// ---------------------------------------------------------------------------------------
// conv3x3_f32 (driver in conv3x3_driver.h) with an 8 x 32 register tile:
// 8 output channels x 2 vectors of 16 columns, two loads, 8 weight broadcasts and 16 FMAs
// per tap. Measured on the YuNet stem (3 -> 16, stride 2, 640x480) against 16 x 16, 16 x 32,
// 12 x 32, 4 x 64, 6 x 64 and 8 x 64 tiles, it was the fastest by 5-40%: one broadcast
// feeds two FMAs, and 16 accumulators leave registers for the loads. Column tails store
// under a mask.

constexpr int kC3Mb = 8;                // output channels per register tile
constexpr int kC3Nv = 2;                // 16-column vectors per register tile
constexpr int kC3Cols = 16 * kC3Nv;     // output columns per register tile

// Padded copy of input row `row` for the chunk of ncr (a multiple of kC3Cols) output columns from
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
      if (base + j >= 0 && base + j + 16 <= in_w && j + 16 <= ncr + 2) {
        _mm512_storeu_ps(buf + j, _mm512_loadu_ps(row + base + j));
        j += 16;
      } else {
        buf[j] = q(j);
        ++j;
      }
    }
    return;
  }
  const __m512i even_idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd_idx = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  for (int i = 0; i <= ncr;) {
    if (base + 2 * i >= 0 && base + 2 * i + 32 <= in_w && i + 16 <= ncr + 1) {
      const __m512 a = _mm512_loadu_ps(row + base + 2 * i), b = _mm512_loadu_ps(row + base + 2 * i + 16);
      _mm512_storeu_ps(buf + i, _mm512_permutex2var_ps(a, even_idx, b));
      _mm512_storeu_ps(buf + kC3Half + i, _mm512_permutex2var_ps(a, odd_idx, b));
      i += 16;
    } else {
      buf[i] = q(2 * i);
      buf[kC3Half + i] = q(2 * i + 1);
      ++i;
    }
  }
}

// The taps of one output row: tap t reads 16 columns at tap[t] + i0 and weight w[widx[t]].
// Output channels m0..m0+MB-1, columns [i0, i0 + count) of the chunk (count <= 16*NV); out
// points at column 0 of the chunk in channel m0's output row.
template <int MB, int NV>
inline void c3_tile(const C3Taps& t, int i0, int count, const float* w, int wstride, float* out,
                    std::ptrdiff_t out_plane, int m0, const RowBiasAct& e) {
  __m512 acc[MB][NV];
  for (int m = 0; m < MB; ++m) {
    for (int v = 0; v < NV; ++v) acc[m][v] = _mm512_setzero_ps();
  }
  for (int k = 0; k < t.n; ++k) {
    __m512 x[NV];
    for (int v = 0; v < NV; ++v) x[v] = _mm512_loadu_ps(t.tap[k] + i0 + 16 * v);
    const float* wk = w + t.widx[k];
    for (int m = 0; m < MB; ++m) {
      const __m512 wv = _mm512_set1_ps(wk[m * wstride]);
      for (int v = 0; v < NV; ++v) acc[m][v] = _mm512_fmadd_ps(wv, x[v], acc[m][v]);
    }
  }
  const __m512 vlo = _mm512_set1_ps(e.lo), vhi = _mm512_set1_ps(e.hi);
  for (int m = 0; m < MB; ++m) {
    const int r = m0 + m;
    const __m512 bias = _mm512_set1_ps(e.bias ? e.bias[r] : 0.0f);
    const __m512 slope = _mm512_set1_ps(e.slopes ? e.slopes[r] : e.neg_slope);
    for (int v = 0; v < NV; ++v) {
      const __mmask16 mask = tail_mask16(std::max(0, std::min(16, count - 16 * v)));
      _mm512_mask_storeu_ps(out + m * out_plane + i0 + 16 * v, mask, bias_act16(acc[m][v], bias, slope, vlo, vhi));
    }
  }
}

template <int MB>
void c3_block(const C3Taps& t, int nc, const float* w, int wstride, float* out, std::ptrdiff_t out_plane, int m0,
              const RowBiasAct& e) {
  for (int i0 = 0; i0 < nc; i0 += kC3Cols) {
    c3_tile<MB, kC3Nv>(t, i0, std::min(kC3Cols, nc - i0), w, wstride, out, out_plane, m0, e);
  }
}

// conv3x3_driver.h's view of the register tiles.
struct Avx512Conv3x3 {
  static constexpr int kMb = kC3Mb, kCols = kC3Cols;
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
  conv3x3_driver<Avx512Conv3x3>(src, cin, in_h, in_w, w, cout, stride, dst, out_h, out_w, e);
}

// ---------------------------------------------------------------------------------------
// dwconv3x3_row_f32: 16 output columns per vector, four vectors (four independent FMA
// chains) per step, the epilogue applied in registers (32 of them hold the nine weights,
// the accumulators and the epilogue constants). Stride 2 takes even/odd columns out of two
// loads with one permute each. Reads stay within dw_row_floats; the tail store is masked.

template <int S>
inline __m512 dw_taps16(const float* r, const __m512* w3, __m512 acc) {
  if (S == 1) {
    acc = _mm512_fmadd_ps(w3[0], _mm512_loadu_ps(r), acc);
    acc = _mm512_fmadd_ps(w3[1], _mm512_loadu_ps(r + 1), acc);
    return _mm512_fmadd_ps(w3[2], _mm512_loadu_ps(r + 2), acc);
  }
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const __m512 a = _mm512_loadu_ps(r), b = _mm512_loadu_ps(r + 16), c = _mm512_loadu_ps(r + 2),
               d = _mm512_loadu_ps(r + 18);
  acc = _mm512_fmadd_ps(w3[0], _mm512_permutex2var_ps(a, even, b), acc);
  acc = _mm512_fmadd_ps(w3[1], _mm512_permutex2var_ps(a, odd, b), acc);
  return _mm512_fmadd_ps(w3[2], _mm512_permutex2var_ps(c, even, d), acc);
}

template <int S>
void dw_row16(const float* const* p, const __m512* wv, float* d, int out_w, const BiasActParams& bp) {
  const __m512 bias = _mm512_set1_ps(bp.bias), slope = _mm512_set1_ps(bp.neg_slope), lo = _mm512_set1_ps(bp.lo),
               hi = _mm512_set1_ps(bp.hi);
  int ox = 0;
  for (; ox + 64 <= out_w; ox += 64) {
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int ky = 0; ky < 3; ++ky) {
      if (!p[ky]) continue;
      for (int u = 0; u < 4; ++u) acc[u] = dw_taps16<S>(p[ky] + S * (ox + 16 * u), wv + 3 * ky, acc[u]);
    }
    for (int u = 0; u < 4; ++u) _mm512_storeu_ps(d + ox + 16 * u, bias_act16(acc[u], bias, slope, lo, hi));
  }
  for (; ox < out_w; ox += 16) {
    __m512 acc = _mm512_setzero_ps();
    for (int ky = 0; ky < 3; ++ky) {
      if (p[ky]) acc = dw_taps16<S>(p[ky] + S * ox, wv + 3 * ky, acc);
    }
    const int left = out_w - ox;
    _mm512_mask_storeu_ps(d + ox, left >= 16 ? __mmask16(0xFFFF) : tail_mask16(left), bias_act16(acc, bias, slope, lo, hi));
  }
}

void dwconv3x3_row_f32(const float* const* p, const float* w, int stride, float* d, int out_w,
                       const BiasActParams& bp) {
  __m512 wv[9];
  for (int t = 0; t < 9; ++t) wv[t] = _mm512_set1_ps(w[t]);
  if (stride == 1) dw_row16<1>(p, wv, d, out_w, bp);
  else dw_row16<2>(p, wv, d, out_w, bp);
}

// ---------------------------------------------------------------------------------------
// int8 kernels on VNNI.

// The requantisation rule of kernels.h on 16 int32 lanes: operator() with channel 0 of q,
// apply() with the scales of another channel (a GEMM tile's row). The sign bit of each sum
// picks the negative scale.
struct RequantVec16 {
  __m512 scale, neg, clamp_lo, clamp_hi;
  __m512i zp, lo, hi;
  explicit RequantVec16(const RequantParams& q)
      : scale(_mm512_set1_ps(q.scale[0])),
        neg(_mm512_set1_ps(neg_scale_of(q, 0))),
        clamp_lo(_mm512_set1_ps(-kRequantClamp)),
        clamp_hi(_mm512_set1_ps(kRequantClamp)),
        zp(_mm512_set1_epi32(q.zero_point)),
        lo(_mm512_set1_epi32(q.lo)),
        hi(_mm512_set1_epi32(q.hi)) {}
  __m512i apply(__m512i acc, __m512 s, __m512 n) const {
    __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), _mm512_mask_blend_ps(_mm512_movepi32_mask(acc), s, n));
    f = _mm512_min_ps(_mm512_max_ps(f, clamp_lo), clamp_hi);
    const __m512i r = _mm512_add_epi32(_mm512_cvtps_epi32(f), zp);
    return _mm512_min_epi32(_mm512_max_epi32(r, lo), hi);
  }
  __m512i operator()(__m512i acc) const { return apply(acc, scale, neg); }
};

inline __mmask64 tail_mask64(int count) {
  return count >= 64 ? ~__mmask64(0) : (__mmask64(1) << count) - 1;
}

// dwconv3x3_row_s8, stride 1: the three taps of a row as one vpdpbusd (taps 0-2 and a zero
// weight), 64 outputs per block. vpdpbusd takes unsigned activations, so the rows are read
// XOR 0x80 (x + 128) and the accumulators start at bias - 128 * sum(w): exact in int32, so
// bit-identical to the reference. Accumulator t holds, in 128-bit lane j and int32 element e,
// output 16j + 4t + e: its bytes x[16j + 4t + e + {0, 1, 2}] are bytes e + {0, 1, 2} of lane j
// of a 64-byte load at 4t, so one in-lane vpshufb pattern serves all four loads, and
// packssdw(acc0, acc1), packssdw(acc2, acc3), packsswb put each lane's 16 outputs back in
// order (the values are already in [lo, hi], so saturation changes nothing).
// Stride 2: two int16 taps per vpdpwssd lane from 32-byte loads (the AVX2 pairing at 16
// outputs per block).
void dwconv3x3_row_s8(const std::int8_t* const* rows, const std::int8_t* w, std::int32_t bias, int stride,
                      std::int8_t* dst, int out_w, const RequantParams& q) {
  const RequantVec16 rq(q);
  if (stride == 1) {
    __m512i wv[3];
    std::int32_t wsum = 0;
    for (int ky = 0; ky < 3; ++ky) {
      const std::uint32_t b0 = static_cast<std::uint8_t>(w[3 * ky]), b1 = static_cast<std::uint8_t>(w[3 * ky + 1]),
                          b2 = static_cast<std::uint8_t>(w[3 * ky + 2]);
      wv[ky] = _mm512_set1_epi32(static_cast<int>(b0 | b1 << 8 | b2 << 16));
      wsum += w[3 * ky] + w[3 * ky + 1] + w[3 * ky + 2];
    }
    const __m512i vb = _mm512_set1_epi32(bias - 128 * wsum);
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
    // Byte e + {0, 1, 2} of the lane for element e; the fourth byte (weight 0) reads byte 0.
    const __m512i pick = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 1, 2, 0, 1, 2, 3, 0, 2, 3, 4, 0, 3, 4, 5, 0));
    for (int ox = 0; ox < out_w; ox += 64) {
      __m512i acc[4] = {vb, vb, vb, vb};
      for (int ky = 0; ky < 3; ++ky) {
        const std::int8_t* r = rows[ky] + ox;
        for (int t = 0; t < 4; ++t) {
          const __m512i x = _mm512_xor_si512(_mm512_loadu_si512(r + 4 * t), flip);
          acc[t] = _mm512_dpbusd_epi32(acc[t], _mm512_shuffle_epi8(x, pick), wv[ky]);
        }
      }
      const __m512i p01 = _mm512_packs_epi32(rq(acc[0]), rq(acc[1]));
      const __m512i p23 = _mm512_packs_epi32(rq(acc[2]), rq(acc[3]));
      _mm512_mask_storeu_epi8(dst + ox, tail_mask64(out_w - ox), _mm512_packs_epi16(p01, p23));
    }
    return;
  }
  __m512i w01[3], w2z[3];
  for (int ky = 0; ky < 3; ++ky) {
    w01[ky] = _mm512_set1_epi32(static_cast<std::uint16_t>(static_cast<std::int16_t>(w[3 * ky])) +
                                static_cast<std::int32_t>(w[3 * ky + 1]) * 65536);
    w2z[ky] = _mm512_set1_epi32(static_cast<std::uint16_t>(static_cast<std::int16_t>(w[3 * ky + 2])));
  }
  const __m512i vb = _mm512_set1_epi32(bias);
  for (int ox = 0; ox < out_w; ox += 16) {
    __m512i acc = vb;
    for (int ky = 0; ky < 3; ++ky) {
      const std::int8_t* r = rows[ky] + 2 * ox;
      acc = _mm512_dpwssd_epi32(acc, _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(r))), w01[ky]);
      acc = _mm512_dpwssd_epi32(acc, _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(r + 2))), w2z[ky]);
    }
    _mm512_mask_cvtepi32_storeu_epi8(dst + ox, tail_mask16(out_w - ox < 16 ? out_w - ox : 16), rq(acc));
  }
}

void requant_s32_s8(const std::int32_t* x, std::size_t n, const RequantParams& q, std::int8_t* y) {
  const RequantVec16 rq(q);
  for (std::size_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask16(n - i < 16 ? static_cast<int>(n - i) : 16);
    _mm512_mask_cvtepi32_storeu_epi8(y + i, m, rq(_mm512_maskz_loadu_epi32(m, x + i)));
  }
}

// add_s8: add1's steps on 16 int32 lanes; masked loads and stores take the ragged end.
void add_s8(const std::int8_t* a, const std::int8_t* b, std::size_t n, const AddParams& p, std::int8_t* y) {
  const __m512 sa = _mm512_set1_ps(p.a_scale), sb = _mm512_set1_ps(p.b_scale);
  const __m512 clamp_lo = _mm512_set1_ps(-kRequantClamp), clamp_hi = _mm512_set1_ps(kRequantClamp);
  const __m512i za = _mm512_set1_epi32(p.a_zero_point), zb = _mm512_set1_epi32(p.b_zero_point);
  const __m512i zp = _mm512_set1_epi32(p.zero_point), lo = _mm512_set1_epi32(p.lo), hi = _mm512_set1_epi32(p.hi);
  for (std::size_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask16(n - i < 16 ? static_cast<int>(n - i) : 16);
    const __m512i va = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, a + i));
    const __m512i vb = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, b + i));
    const __m512 fa = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(va, za)), sa);
    const __m512 fb = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(vb, zb)), sb);
    const __m512 f = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(fa, fb), clamp_lo), clamp_hi);
    const __m512i r = _mm512_add_epi32(_mm512_cvtps_epi32(f), zp);
    _mm512_mask_cvtepi32_storeu_epi8(y + i, m, _mm512_min_epi32(_mm512_max_epi32(r, lo), hi));
  }
}

// conv_gemm_s8: vpdpbusd multiplies unsigned by signed bytes, so the B panel holds the
// activations XOR 0x80 (x + 128, as u8), four consecutive k per 32-bit lane, 32 columns per
// group; the tile adds 4 products per lane exactly, and each row starts at
// -128 * sum_k A[i][k] to take the +128 back out. Padding in the panel is u8 zero, which adds
// nothing whatever A holds. Per lane the wrapping int32 sum differs from the true one by that
// offset only, so it comes out exact (kernels.h's bounds keep the true sum in int32). The
// 8x32 tile holds 16 accumulators and takes one broadcast of 4 A values per row and group.
struct Avx512TileS8 {
  static constexpr std::size_t kMr = 8;
  static constexpr std::size_t kNr = 32;
  static constexpr std::size_t kKc = 1024;
  static constexpr std::size_t kPanelBytes = kKc * kNr;

  static void pack(const std::int8_t* b, std::ptrdiff_t ldb, std::size_t kc, std::size_t nc, void* out) {
    std::uint8_t* panel = static_cast<std::uint8_t*>(out);
    const __m128i flip = _mm_set1_epi8(static_cast<char>(0x80));
    for (std::size_t p = 0; p < kc; p += 4, panel += 4 * kNr) {
      const std::int8_t* r0 = b + static_cast<std::ptrdiff_t>(p) * ldb;
      if (nc == kNr) {
        // Rows past kc (the ragged end of k) are u8 zero, as the padding below.
        for (int h = 0; h < 2; ++h) {
          __m128i x[4];
          for (int t = 0; t < 4; ++t) {
            x[t] = p + t < kc
                       ? _mm_xor_si128(flip, _mm_loadu_si128(reinterpret_cast<const __m128i*>(r0 + t * ldb + 16 * h)))
                       : _mm_setzero_si128();
          }
          const __m128i a01l = _mm_unpacklo_epi8(x[0], x[1]), a01h = _mm_unpackhi_epi8(x[0], x[1]);
          const __m128i a23l = _mm_unpacklo_epi8(x[2], x[3]), a23h = _mm_unpackhi_epi8(x[2], x[3]);
          __m128i* d = reinterpret_cast<__m128i*>(panel + 64 * h);
          _mm_store_si128(d, _mm_unpacklo_epi16(a01l, a23l));
          _mm_store_si128(d + 1, _mm_unpackhi_epi16(a01l, a23l));
          _mm_store_si128(d + 2, _mm_unpacklo_epi16(a01h, a23h));
          _mm_store_si128(d + 3, _mm_unpackhi_epi16(a01h, a23h));
        }
        continue;
      }
      for (std::size_t j = 0; j < kNr; ++j) {
        for (std::size_t t = 0; t < 4; ++t) {
          const bool in = j < nc && p + t < kc;
          panel[4 * j + t] =
              in ? static_cast<std::uint8_t>(r0[static_cast<std::ptrdiff_t>(t) * ldb + static_cast<std::ptrdiff_t>(j)] ^ 0x80)
                 : 0;
        }
      }
    }
  }

  static std::int32_t row_offset(const std::int8_t* a, std::size_t k) {
    std::int32_t sum = 0;
    for (std::size_t p = 0; p < k; ++p) sum += a[p];
    return -128 * sum;
  }

  template <int MR>
  static void tile(std::size_t kc, const std::int8_t* a, std::ptrdiff_t lda, const void* panel_v, std::int32_t* acc) {
    const std::uint8_t* panel = static_cast<const std::uint8_t*>(panel_v);
    __m512i c0[MR], c1[MR];
    for (int r = 0; r < MR; ++r) {
      c0[r] = _mm512_loadu_si512(acc + r * kNr);
      c1[r] = _mm512_loadu_si512(acc + r * kNr + 16);
    }
    // Whole groups of 4 as plain 32-bit loads (broadcast straight from memory), then the
    // ragged group with the values past kc as zero.
    const std::size_t whole = kc / 4 * 4;
    std::size_t p = 0;
    for (; p < whole; p += 4, panel += 4 * kNr) {
      const __m512i b0 = _mm512_load_si512(panel);
      const __m512i b1 = _mm512_load_si512(panel + 64);
      for (int r = 0; r < MR; ++r) {
        std::int32_t v;
        std::memcpy(&v, a + r * lda + static_cast<std::ptrdiff_t>(p), 4);
        const __m512i av = _mm512_set1_epi32(v);
        c0[r] = _mm512_dpbusd_epi32(c0[r], b0, av);
        c1[r] = _mm512_dpbusd_epi32(c1[r], b1, av);
      }
    }
    if (p < kc) {
      const __m512i b0 = _mm512_load_si512(panel);
      const __m512i b1 = _mm512_load_si512(panel + 64);
      for (int r = 0; r < MR; ++r) {
        const __m512i av = _mm512_set1_epi32(static_cast<int>(load_group<4>(a + r * lda + static_cast<std::ptrdiff_t>(p), kc - p)));
        c0[r] = _mm512_dpbusd_epi32(c0[r], b0, av);
        c1[r] = _mm512_dpbusd_epi32(c1[r], b1, av);
      }
    }
    for (int r = 0; r < MR; ++r) {
      _mm512_storeu_si512(acc + r * kNr, c0[r]);
      _mm512_storeu_si512(acc + r * kNr + 16, c1[r]);
    }
  }

  static void requant(const std::int32_t* x, std::size_t n, const RequantParams& q, std::int8_t* y) {
    requant_s32_s8(x, n, q, y);
  }
};

// k within one panel (every Conv of a detector-sized network): each 8x32 tile starts at its
// rows' bias + offset and is requantised from registers, with no int32 block in memory and
// no call per row; the integers are those of conv_gemm_s8_blocked.
template <int MR>
void tile_s8_requant(std::size_t k, const std::int8_t* a, std::ptrdiff_t lda, const std::uint8_t* panel,
                     const std::int32_t* init, const RequantParams& q, std::int8_t* c, std::ptrdiff_t ldc,
                     std::size_t nc) {
  __m512i c0[MR], c1[MR];
  for (int r = 0; r < MR; ++r) c0[r] = c1[r] = _mm512_set1_epi32(init[r]);
  const std::size_t whole = k / 4 * 4;
  std::size_t p = 0;
  for (; p < k; p += 4, panel += 4 * Avx512TileS8::kNr) {
    const __m512i b0 = _mm512_load_si512(panel);
    const __m512i b1 = _mm512_load_si512(panel + 64);
    for (int r = 0; r < MR; ++r) {
      const std::int8_t* ar = a + r * lda + static_cast<std::ptrdiff_t>(p);
      std::int32_t v;
      if (p < whole) std::memcpy(&v, ar, 4);
      else v = static_cast<std::int32_t>(load_group<4>(ar, k - p));
      const __m512i av = _mm512_set1_epi32(v);
      c0[r] = _mm512_dpbusd_epi32(c0[r], b0, av);
      c1[r] = _mm512_dpbusd_epi32(c1[r], b1, av);
    }
  }
  const RequantVec16 rq(q);
  const __mmask16 m0 = tail_mask16(nc >= 16 ? 16 : static_cast<int>(nc));
  const __mmask16 m1 = tail_mask16(nc <= 16 ? 0 : nc >= 32 ? 16 : static_cast<int>(nc - 16));
  for (int r = 0; r < MR; ++r) {
    const __m512 s = _mm512_set1_ps(q.scale[r]), sn = _mm512_set1_ps(neg_scale_of(q, r));
    std::int8_t* cr = c + r * ldc;
    _mm512_mask_cvtepi32_storeu_epi8(cr, m0, rq.apply(c0[r], s, sn));
    _mm512_mask_cvtepi32_storeu_epi8(cr + 16, m1, rq.apply(c1[r], s, sn));
  }
}

template <int MR>
void tile_s8_requant_rows(std::size_t rows, std::size_t k, const std::int8_t* a, std::ptrdiff_t lda,
                          const std::uint8_t* panel, const std::int32_t* init, const RequantParams& q,
                          std::int8_t* c, std::ptrdiff_t ldc, std::size_t nc) {
  if constexpr (MR > 1) {
    if (rows < MR) return tile_s8_requant_rows<MR - 1>(rows, k, a, lda, panel, init, q, c, ldc, nc);
  }
  tile_s8_requant<MR>(k, a, lda, panel, init, q, c, ldc, nc);
}

void conv_gemm_s8(std::size_t m, std::size_t n, std::size_t k, const std::int8_t* a, std::ptrdiff_t lda,
                  const std::int8_t* b, std::ptrdiff_t ldb, const std::int32_t* bias, std::int8_t* c,
                  std::ptrdiff_t ldc, const RequantParams& q) {
  constexpr std::size_t kMb = 128;
  if (k == 0 || k > Avx512TileS8::kKc || m > kMb) {
    conv_gemm_s8_blocked<Avx512TileS8>(m, n, k, a, lda, b, ldb, bias, c, ldc, q);
    return;
  }
  alignas(64) std::int32_t init[kMb];
  alignas(64) std::uint8_t panel[Avx512TileS8::kPanelBytes];
  for (std::size_t r = 0; r < m; ++r) {
    init[r] = static_cast<std::int32_t>(static_cast<std::uint32_t>(bias ? bias[r] : 0) +
                                        static_cast<std::uint32_t>(Avx512TileS8::row_offset(a + static_cast<std::ptrdiff_t>(r) * lda, k)));
  }
  for (std::size_t j0 = 0; j0 < n; j0 += Avx512TileS8::kNr) {
    const std::size_t nc = std::min(n - j0, Avx512TileS8::kNr);
    Avx512TileS8::pack(b + static_cast<std::ptrdiff_t>(j0), ldb, k, nc, panel);
    for (std::size_t i = 0; i < m; i += Avx512TileS8::kMr) {
      tile_s8_requant_rows<Avx512TileS8::kMr>(std::min(m - i, Avx512TileS8::kMr), k,
                                              a + static_cast<std::ptrdiff_t>(i) * lda, lda, panel, init + i,
                                              requant_from(q, i), c + static_cast<std::ptrdiff_t>(i) * ldc + static_cast<std::ptrdiff_t>(j0), ldc, nc);
    }
  }
}

}  // namespace

void fill_avx512(KernelTable* t) {
  t->blend_rows_f32 = blend_rows_f32;
  t->pack_row = pack_row;
  t->dot_f32 = dot_f32;
  t->dot_s8 = dot_s8;
  t->dot_rows_f32 = dot_rows_f32;
  t->dot_rows_s8 = dot_rows_s8;
  t->gemm_f32 = gemm_f32;
  t->conv_gemm_f32 = conv_gemm_f32;
  t->conv3x3_f32 = conv3x3_f32;
  t->dwconv3x3_row_f32 = dwconv3x3_row_f32;
  t->bias_act_f32 = bias_act_f32;
  t->requant_s32_s8 = requant_s32_s8;
  t->conv_gemm_s8 = conv_gemm_s8;
  t->add_s8 = add_s8;
  t->dwconv3x3_row_s8 = dwconv3x3_row_s8;
}

}  // namespace picoface
