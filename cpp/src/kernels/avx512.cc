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

#include <cstdint>

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

float dot_f32(const float* a, const float* b, std::size_t n) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
  std::size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
    acc2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), acc2);
    acc3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), acc3);
  }
  for (; i < n; i += 16) {
    const __mmask16 m = tail_mask16(n - i < 16 ? static_cast<int>(n - i) : 16);
    acc0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3)));
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
    const __mmask64 m = n - i >= 64 ? ~static_cast<__mmask64>(0)
                                    : (static_cast<__mmask64>(1) << (n - i)) - 1;
    // Masked-off bytes load as zero: b = 0 contributes nothing to either sum.
    const __m512i va = _mm512_maskz_loadu_epi8(m, a + i);
    const __m512i vb = _mm512_maskz_loadu_epi8(m, b + i);
    acc = _mm512_dpbusd_epi32(acc, _mm512_xor_si512(va, flip), vb);
    sum_b = _mm512_dpbusd_epi32(sum_b, ones, vb);
  }
  return _mm512_reduce_add_epi32(_mm512_sub_epi32(acc, _mm512_slli_epi32(sum_b, 7)));
}

}  // namespace

void fill_avx512(KernelTable* t) {
  t->blend_rows_f32 = blend_rows_f32;
  t->pack_row = pack_row;
  t->dot_f32 = dot_f32;
  t->dot_s8 = dot_s8;
}

}  // namespace picoface
