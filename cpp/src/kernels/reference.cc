// Scalar reference kernels: the specification every SIMD variant is tested against.
// Written for clarity over speed; compiled without ISA flags.
#include <cmath>
#include <cstdint>

#include "isa_fill.h"

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

inline std::int8_t quantize(float v, const PackParams& p) {
  // nearbyint rounds half to even in the default floating-point environment, matching
  // the SIMD float->int conversions.
  float q = std::nearbyint(v * p.inv_scale) + static_cast<float>(p.zero_point);
  if (!(q >= -128.0f)) q = -128.0f;  // NaN saturates low
  if (q > 127.0f) q = 127.0f;
  return static_cast<std::int8_t>(q);
}

void pack_row(const float* const* in, int n, const PackParams& p, void* out) {
  for (int i = 0; i < n; ++i) {
    for (int c = 0; c < p.out_channels; ++c) {
      float v = p.bias[c];
      for (int k = 0; k < p.in_channels; ++k) v += p.matrix[c][k] * in[k][i];
      const std::ptrdiff_t at = i * p.pixel_stride + c * p.channel_stride;
      if (p.to_int8) {
        static_cast<std::int8_t*>(out)[at] = quantize(v, p);
      } else {
        static_cast<float*>(out)[at] = v;
      }
    }
  }
}

void warp_affine_u8(const WarpParams& p) {
  for (int y = 0; y < p.dst_h; ++y) {
    std::uint8_t* d = p.dst + y * p.dst_stride;
    for (int x = 0; x < p.dst_w; ++x) {
      const float sx = p.m[0] * x + p.m[1] * y + p.m[2];
      const float sy = p.m[3] * x + p.m[4] * y + p.m[5];
      // Far outside (or NaN): every tap is border. Also keeps the int conversion defined.
      const bool far = !(sx > -2.0f && sx < p.src_w + 1.0f && sy > -2.0f && sy < p.src_h + 1.0f);
      const int x0 = far ? -2 : static_cast<int>(std::floor(sx));
      const int y0 = far ? -2 : static_cast<int>(std::floor(sy));
      const float fx = far ? 0.0f : sx - x0;
      const float fy = far ? 0.0f : sy - y0;
      const float w[4] = {(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy};
      const int tx[4] = {x0, x0 + 1, x0, x0 + 1};
      const int ty[4] = {y0, y0, y0 + 1, y0 + 1};
      for (int c = 0; c < p.channels; ++c) {
        float acc = 0.0f;
        for (int t = 0; t < 4; ++t) {
          const bool inside = tx[t] >= 0 && tx[t] < p.src_w && ty[t] >= 0 && ty[t] < p.src_h;
          const float v = inside ? p.src[ty[t] * p.src_stride + tx[t] * p.channels + c]
                                 : p.border[c];
          acc += w[t] * v;
        }
        int r = static_cast<int>(acc + 0.5f);  // acc >= 0: truncation after +0.5 rounds
        d[x * p.channels + c] = static_cast<std::uint8_t>(r > 255 ? 255 : r);
      }
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

}  // namespace

void fill_reference(KernelTable* t) {
  t->isa = Isa::kScalar;
  t->resample_row_u8 = resample_row_u8;
  t->blend_rows_f32 = blend_rows_f32;
  t->pack_row = pack_row;
  t->warp_affine_u8 = warp_affine_u8;
  t->dot_f32 = dot_f32;
  t->dot_s8 = dot_s8;
}

}  // namespace picoface
