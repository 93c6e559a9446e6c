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

// warp_affine_u8 for one output pixel whose source coordinates are (sx, sy), in fixed point
// as OpenCV's INTER_LINEAR: each coordinate is quantised to 1/32 pixel (q = round half to even
// of s*32, an exact product; nearbyint in the default floating-point environment, as the SIMD
// float->int conversions), split into corner q >> 5 and fraction q & 31, and the 2x2 taps
// are weighted by products of the integer 1-D weights (32 - a, a) x (32 - b, b), which sum to
// 1024; taps outside the source take the border value; out = (acc + 512) >> 10, never above
// 255. These weights are OpenCV's 15-bit table divided by 32 (theirs are exact), so the
// result equals its (acc15 + 2^14) >> 15. All integer: every ISA is bit-exact.
inline void warp_pixel(const WarpParams& p, float sx, float sy, std::uint8_t* d) {
  // Far outside (or NaN): every tap is border. Also keeps the int conversion defined.
  const bool far = !(sx > -2.0f && sx < p.src_w + 1.0f && sy > -2.0f && sy < p.src_h + 1.0f);
  const int qx = far ? -64 : static_cast<int>(std::nearbyint(sx * 32.0f));
  const int qy = far ? -64 : static_cast<int>(std::nearbyint(sy * 32.0f));
  // Arithmetic shift: floor division by 32 for negative q too (GCC, Clang, MSVC; C++20).
  const int x0 = qx >> 5, y0 = qy >> 5;
  const int a = qx & 31, b = qy & 31;
  const int w[4] = {(32 - a) * (32 - b), a * (32 - b), (32 - a) * b, a * b};
  const int tx[4] = {x0, x0 + 1, x0, x0 + 1};
  const int ty[4] = {y0, y0, y0 + 1, y0 + 1};
  for (int c = 0; c < p.channels; ++c) {
    int acc = 0;
    for (int t = 0; t < 4; ++t) {
      const bool inside = tx[t] >= 0 && tx[t] < p.src_w && ty[t] >= 0 && ty[t] < p.src_h;
      const int v = inside ? p.src[static_cast<std::ptrdiff_t>(ty[t]) * p.src_stride +
                                   tx[t] * p.channels + c]
                           : p.border[c];
      acc += w[t] * v;
    }
    d[c] = static_cast<std::uint8_t>((acc + 512) >> 10);
  }
}

}  // namespace
}  // namespace picoface
