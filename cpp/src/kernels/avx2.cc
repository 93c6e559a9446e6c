// AVX2 + FMA kernels: the streaming kernels (blend, pack, dots) at 8 lanes. resample_row_u8
// and warp_affine_u8 are inherited from SSE4.1: they are bound by per-pixel byte loads, which
// wider registers do not speed up. As in SSE4.1, preprocessing kernels keep the reference's
// operation order and use no FMA, so their output is bit-identical on every x86 level; only
// dot_f32, which is not exact anyway, fuses.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "isa_fill.h"

namespace picoface {
namespace {

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
  explicit PackConsts(const PackParams& p) {
    for (int c = 0; c < 3; ++c) {
      for (int k = 0; k < 3; ++k) m[c][k] = _mm256_set1_ps(p.matrix[c][k]);
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
      for (int j = 0; j < ic; ++j) v = _mm256_add_ps(v, _mm256_mul_ps(k.m[c][j], x[j]));
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

float dot_f32(const float* a, const float* b, std::size_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), acc2);
    acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), acc3);
  }
  for (; i + 8 <= n; i += 8) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  }
  const __m256 acc = _mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  float sum = _mm_cvtss_f32(s);
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
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

}  // namespace

void fill_avx2(KernelTable* t) {
  t->blend_rows_f32 = blend_rows_f32;
  t->pack_row = pack_row;
  t->dot_f32 = dot_f32;
  t->dot_s8 = dot_s8;
}

}  // namespace picoface
