// Scalar reference kernels: the specification every SIMD variant is tested against.
// Written for clarity over speed; compiled without ISA flags.
#include <cmath>
#include <cstdint>

#include "gemm_s8_driver.h"
#include "isa_fill.h"
#include "scalar_pixels.h"

namespace picoface {
namespace {

void resample_row_u8(const std::uint8_t* src, int channels, const std::int32_t* xofs,
                     const float* weights, int ntaps, int dst_w, float* const* dst_planes) {
  for (int x = 0; x < dst_w; ++x) {
    const std::uint8_t* p = src + static_cast<std::ptrdiff_t>(xofs[x]) * channels;
    const float* w = weights + static_cast<std::ptrdiff_t>(x) * ntaps;
    for (int c = 0; c < channels; ++c) {
      float acc = 0.0f;
      for (int t = 0; t < ntaps; ++t) acc += w[t] * static_cast<float>(p[t * channels + c]);
      dst_planes[c][x] = acc;
    }
  }
}

void blend_rows_f32(const float* const* rows, const float* weights, int ntaps, int n,
                    float* out) {
  for (int i = 0; i < n; ++i) {
    float acc = 0.0f;
    for (int t = 0; t < ntaps; ++t) acc += weights[t] * rows[t][i];
    out[i] = acc;
  }
}

void pack_row(const float* const* in, int n, const PackParams& p, void* out) {
  for (int i = 0; i < n; ++i) pack_pixel(in, i, p, out);
}

void warp_affine_u8(const WarpParams& p) {
  for (int y = 0; y < p.dst_h; ++y) {
    std::uint8_t* d = p.dst + y * p.dst_stride;
    for (int x = 0; x < p.dst_w; ++x) {
      const float sx = p.m[0] * x + p.m[1] * y + p.m[2];
      const float sy = p.m[3] * x + p.m[4] * y + p.m[5];
      warp_pixel(p, sx, sy, d + x * p.channels);
    }
  }
}

float dot_f32(const float* a, const float* b, std::size_t n) {
  // Pairwise-free but double accumulation: the reference should be the accurate one.
  double acc = 0.0;
  for (std::size_t i = 0; i < n; ++i) acc += static_cast<double>(a[i]) * b[i];
  return static_cast<float>(acc);
}

std::int32_t dot_s8(const std::int8_t* a, const std::int8_t* b, std::size_t n) {
  std::int32_t acc = 0;
  for (std::size_t i = 0; i < n; ++i) acc += static_cast<std::int32_t>(a[i]) * b[i];
  return acc;
}

void dot_rows_f32(const float* q, const float* rows, std::size_t n_rows, std::size_t d,
                  std::ptrdiff_t row_stride, float* out) {
  for (std::size_t j = 0; j < n_rows; ++j) out[j] = dot_f32(q, rows + static_cast<std::ptrdiff_t>(j) * row_stride, d);
}

void dot_rows_s8(const std::int8_t* q, const std::int8_t* rows, std::size_t n_rows, std::size_t d,
                 std::ptrdiff_t row_stride, std::int32_t* out) {
  for (std::size_t j = 0; j < n_rows; ++j) out[j] = dot_s8(q, rows + static_cast<std::ptrdiff_t>(j) * row_stride, d);
}

void gemm_f32(std::size_t m, std::size_t n, std::size_t k, const float* a, std::ptrdiff_t lda,
              const float* b, std::ptrdiff_t ldb, float* c, std::ptrdiff_t ldc, bool accumulate) {
  // Row i of C is built as a sum of B rows scaled by A[i][p], p increasing: every element is
  // accumulated in float in k order, and the innermost loop streams along rows.
  for (std::size_t i = 0; i < m; ++i) {
    float* crow = c + static_cast<std::ptrdiff_t>(i) * ldc;
    if (!accumulate) {
      for (std::size_t j = 0; j < n; ++j) crow[j] = 0.0f;
    }
    const float* arow = a + static_cast<std::ptrdiff_t>(i) * lda;
    for (std::size_t p = 0; p < k; ++p) {
      const float av = arow[p];
      const float* brow = b + static_cast<std::ptrdiff_t>(p) * ldb;
      for (std::size_t j = 0; j < n; ++j) crow[j] += av * brow[j];
    }
  }
}

inline float bias_act(float x, const BiasActParams& p) {
  float y = x + p.bias;
  y = y < 0.0f ? y * p.neg_slope : y;
  y = y < p.lo ? p.lo : y;  // std::max(y, lo): keeps y when it is NaN
  y = p.hi < y ? p.hi : y;  // std::min(y, hi)
  return y;
}

void bias_act_f32(float* x, std::size_t n, const BiasActParams& p) {
  for (std::size_t i = 0; i < n; ++i) x[i] = bias_act(x[i], p);
}

void conv_gemm_f32(std::size_t m, std::size_t n, std::size_t k, const float* a, std::ptrdiff_t lda,
                   const float* b, std::ptrdiff_t ldb, float* c, std::ptrdiff_t ldc, const RowBiasAct& e) {
  gemm_f32(m, n, k, a, lda, b, ldb, c, ldc, false);
  for (std::size_t i = 0; i < m; ++i) {
    BiasActParams p;
    p.bias = e.bias ? e.bias[i] : 0.0f;
    p.neg_slope = e.slopes ? e.slopes[i] : e.neg_slope;
    p.lo = e.lo;
    p.hi = e.hi;
    bias_act_f32(c + static_cast<std::ptrdiff_t>(i) * ldc, n, p);
  }
}

void dwconv3x3_row_f32(const float* const* rows, const float* w, int stride, float* dst, int out_w,
                       const BiasActParams& p) {
  for (int ox = 0; ox < out_w; ++ox) {
    float acc = 0.0f;
    for (int ky = 0; ky < 3; ++ky) {
      if (!rows[ky]) continue;
      const float* r = rows[ky] + static_cast<std::ptrdiff_t>(ox) * stride;
      for (int kx = 0; kx < 3; ++kx) acc += w[ky * 3 + kx] * r[kx];
    }
    dst[ox] = bias_act(acc, p);
  }
}

void conv3x3_f32(const float* src, int cin, int in_h, int in_w, const float* w, int cout, int stride,
                 float* dst, int out_h, int out_w, const RowBiasAct& e) {
  const std::ptrdiff_t in_plane = static_cast<std::ptrdiff_t>(in_h) * in_w;
  for (int m = 0; m < cout; ++m) {
    BiasActParams p;
    p.bias = e.bias ? e.bias[m] : 0.0f;
    p.neg_slope = e.slopes ? e.slopes[m] : e.neg_slope;
    p.lo = e.lo;
    p.hi = e.hi;
    const float* wm = w + static_cast<std::ptrdiff_t>(m) * cin * 9;
    float* plane = dst + static_cast<std::ptrdiff_t>(m) * out_h * out_w;
    for (int oy = 0; oy < out_h; ++oy) {
      for (int ox = 0; ox < out_w; ++ox) {
        float acc = 0.0f;
        for (int c = 0; c < cin; ++c) {
          for (int ky = 0; ky < 3; ++ky) {
            const int iy = oy * stride - 1 + ky;
            if (iy < 0 || iy >= in_h) continue;
            for (int kx = 0; kx < 3; ++kx) {
              const int ix = ox * stride - 1 + kx;
              if (ix < 0 || ix >= in_w) continue;
              acc += wm[(c * 3 + ky) * 3 + kx] * src[c * in_plane + static_cast<std::ptrdiff_t>(iy) * in_w + ix];
            }
          }
        }
        plane[static_cast<std::ptrdiff_t>(oy) * out_w + ox] = bias_act(acc, p);
      }
    }
  }
}

void requant_s32_s8(const std::int32_t* x, std::size_t n, const RequantParams& q, std::int8_t* y) {
  for (std::size_t i = 0; i < n; ++i) y[i] = requant1(x[i], q.scale[0], neg_scale_of(q, 0), q);
}

void conv_gemm_s8(std::size_t m, std::size_t n, std::size_t k, const std::int8_t* a, std::ptrdiff_t lda,
                  const std::int8_t* b, std::ptrdiff_t ldb, const std::int32_t* bias, std::int8_t* c,
                  std::ptrdiff_t ldc, const RequantParams& q) {
  for (std::size_t i = 0; i < m; ++i) {
    const std::int8_t* arow = a + static_cast<std::ptrdiff_t>(i) * lda;
    for (std::size_t j = 0; j < n; ++j) {
      std::int32_t acc = bias ? bias[i] : 0;
      for (std::size_t p = 0; p < k; ++p) {
        acc += static_cast<std::int32_t>(arow[p]) * b[static_cast<std::ptrdiff_t>(p) * ldb + static_cast<std::ptrdiff_t>(j)];
      }
      c[static_cast<std::ptrdiff_t>(i) * ldc + static_cast<std::ptrdiff_t>(j)] = requant1(acc, q.scale[i], neg_scale_of(q, i), q);
    }
  }
}

void add_s8(const std::int8_t* a, const std::int8_t* b, std::size_t n, const AddParams& p, std::int8_t* y) {
  for (std::size_t i = 0; i < n; ++i) y[i] = add1(a[i], b[i], p);
}

void dwconv3x3_row_s8(const std::int8_t* const* rows, const std::int8_t* w, std::int32_t bias, int stride,
                      std::int8_t* dst, int out_w, const RequantParams& q) {
  for (int ox = 0; ox < out_w; ++ox) {
    std::int32_t acc = bias;
    for (int ky = 0; ky < 3; ++ky) {
      const std::int8_t* r = rows[ky] + static_cast<std::ptrdiff_t>(ox) * stride;
      for (int kx = 0; kx < 3; ++kx) acc += static_cast<std::int32_t>(w[ky * 3 + kx]) * r[kx];
    }
    dst[ox] = requant1(acc, q.scale[0], neg_scale_of(q, 0), q);
  }
}

}  // namespace

void fill_reference(KernelTable* t) {
  t->isa = Isa::kScalar;
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
