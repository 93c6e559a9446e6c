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

// Byte controls of the SIMD fixed-point warp block (sse41.cc, avx2.cc: one 128-bit lane's
// worth; AVX2 repeats it in both lanes). A "pair register" holds the 8-byte row windows of
// two pixels at bytes 0 and 8, whose row taps are bytes c (left) and kCh + c (right); pair
// register h holds pixels 2h and 2h+1, dwords 2h + q of the per-pixel vectors. Items
// i = q*kCh + c, i < 2*kCh; -1 zeroes a byte in pshufb.
template <int kCh>
struct WarpTables {
  std::int8_t taps[16];            // window bytes -> (left, right) byte pair per item
  std::int8_t hweights[2][16];     // [h]: per-pixel words (32 - a, a) -> one per item
  std::int8_t vweights[2][2][16];  // [h][items 0..3 | 4..7]: per-pixel dwords (32 - b, b) -> per item
  std::int8_t compact[16];         // packus bytes (pixels 0,1 | 2,3 at 0 and 8) -> 4*kCh contiguous
  WarpTables() {
    for (int i = 0; i < 8; ++i) {
      const bool used = i < 2 * kCh;
      taps[2 * i] = static_cast<std::int8_t>(used ? 8 * (i / kCh) + i % kCh : -1);
      taps[2 * i + 1] = static_cast<std::int8_t>(used ? 8 * (i / kCh) + kCh + i % kCh : -1);
    }
    for (int h = 0; h < 2; ++h) {
      for (int i = 0; i < 8; ++i) {
        const int at = 4 * (2 * h + i / kCh);
        hweights[h][2 * i] = static_cast<std::int8_t>(i < 2 * kCh ? at : -1);
        hweights[h][2 * i + 1] = static_cast<std::int8_t>(i < 2 * kCh ? at + 1 : -1);
      }
      for (int part = 0; part < 2; ++part) {
        for (int k = 0; k < 4; ++k) {
          const int i = 4 * part + k;
          for (int e = 0; e < 4; ++e) {
            vweights[h][part][4 * k + e] = static_cast<std::int8_t>(i < 2 * kCh ? 4 * (2 * h + i / kCh) + e : -1);
          }
        }
      }
    }
    for (int j = 0; j < 16; ++j) {
      compact[j] = static_cast<std::int8_t>(j < 2 * kCh ? j : j < 4 * kCh ? 8 + j - 2 * kCh : -1);
    }
  }
};

}  // namespace
}  // namespace picoface
