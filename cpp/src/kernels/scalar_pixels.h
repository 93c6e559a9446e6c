// Per-pixel definitions shared by the scalar reference and the scalar tails and border
// paths of the SIMD files, so that every ISA computes those pixels with the same code.
// Internal linkage on purpose: each file compiles its own copy with its own ISA flags; a
// shared (inline, external) definition could let the linker hand an AVX2-compiled copy to
// the scalar reference.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "picoface/kernels.h"

namespace picoface {
namespace {

// q = clamp(round_half_even(v * inv_scale) + zero_point, -128, 127); NaN gives -128.
// nearbyint rounds half to even in the default floating-point environment, matching the
// SIMD float->int conversions.
inline std::int8_t quantize_s8(float v, const PackParams& p) {
  float q = std::nearbyint(v * p.inv_scale) + static_cast<float>(p.zero_point);
  if (!(q >= -128.0f)) q = -128.0f;
  if (q > 127.0f) q = 127.0f;
  return static_cast<std::int8_t>(q);
}

// pack_row for pixel i. Terms with a zero coefficient are skipped (not added as 0 * x): a
// channel swap or per-channel normalisation then costs one multiply-add per channel.
inline void pack_pixel(const float* const* in, int i, const PackParams& p, void* out) {
  for (int c = 0; c < p.out_channels; ++c) {
    float v = p.bias[c];
    for (int k = 0; k < p.in_channels; ++k) {
      if (p.matrix[c][k] != 0.0f) v += p.matrix[c][k] * in[k][i];
    }
    const std::ptrdiff_t at = i * p.pixel_stride + c * p.channel_stride;
    if (p.to_int8) {
      static_cast<std::int8_t*>(out)[at] = quantize_s8(v, p);
    } else {
      static_cast<float*>(out)[at] = v;
    }
  }
}

// warp_affine_u8 for one output pixel whose source coordinates are (sx, sy): bilinear over
// the 2x2 footprint, border value for taps outside the source, round half up, saturate.
inline void warp_pixel(const WarpParams& p, float sx, float sy, std::uint8_t* d) {
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
      const float v = inside ? p.src[static_cast<std::ptrdiff_t>(ty[t]) * p.src_stride +
                                     tx[t] * p.channels + c]
                             : p.border[c];
      acc += w[t] * v;
    }
    const int r = static_cast<int>(acc + 0.5f);  // acc >= 0: truncation after +0.5 rounds
    d[c] = static_cast<std::uint8_t>(r > 255 ? 255 : r);
  }
}

}  // namespace
}  // namespace picoface
