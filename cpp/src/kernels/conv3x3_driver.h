// The ISA-independent part of the SIMD direct 3x3 convolutions (conv3x3_f32, a network's
// stem): the output is swept in chunks of kC3Chunk columns; within a chunk every input row a
// tap needs is copied once into a zero-padded row (deinterleaved into even and odd halves at
// stride 2) kept in a 3-row ring per input channel while the output rows advance, so each
// tap of a register tile is one unaligned load with no border test. Internal linkage on
// purpose, as gemm_driver.h: each ISA file compiles its own copy with its own flags.
#pragma once

#include <algorithm>
#include <cstddef>

#include "picoface/kernels.h"

namespace picoface {
namespace {

constexpr int kC3Chunk = 256;           // output columns per chunk, a multiple of every ISA's tile width
constexpr int kC3Half = kC3Chunk + 16;  // floats per even / odd half of a padded row

// The taps of one output row: pointer into the padded rows and weight index of each.
struct C3Taps {
  const float* tap[kConv3x3MaxInChannels * 9];
  int widx[kConv3x3MaxInChannels * 9];
  int n = 0;
};

// Runs K's register tiles of MB output channels for the channels left from m0: MB while
// they last, then the smaller powers of two.
template <class K, int MB>
inline void c3_channels(const C3Taps& t, int nc, const float* w, int wstride, float* out, std::ptrdiff_t out_plane,
                        int cout, int& m0, const RowBiasAct& e) {
  for (; m0 + MB <= cout; m0 += MB) K::template block<MB>(t, nc, w + m0 * wstride, wstride, out + m0 * out_plane, out_plane, m0, e);
  if constexpr (MB > 1) c3_channels<K, (MB > 4 ? 4 : MB / 2)>(t, nc, w, wstride, out, out_plane, cout, m0, e);
}

// conv3x3_f32 (contract in kernels.h). K provides kMb (largest channel tile), kCols (columns
// per tile: chunks are filled to a multiple of it), fill(row, in_w, x0, ncr, stride, buf)
// and block<MB>(taps, nc, w, wstride, out, out_plane, m0, e).
template <class K>
void conv3x3_driver(const float* src, int cin, int in_h, int in_w, const float* w, int cout, int stride, float* dst,
                    int out_h, int out_w, const RowBiasAct& e) {
  alignas(64) float rows[kConv3x3MaxInChannels][3][2 * kC3Half];
  const std::ptrdiff_t in_plane = static_cast<std::ptrdiff_t>(in_h) * in_w;
  const std::ptrdiff_t out_plane = static_cast<std::ptrdiff_t>(out_h) * out_w;
  const int wstride = cin * 9;
  const int offs[2][3] = {{0, 1, 2}, {0, kC3Half, 1}};  // kx -> offset in a padded row
  for (int x0 = 0; x0 < out_w; x0 += kC3Chunk) {
    const int nc = std::min(kC3Chunk, out_w - x0), ncr = (nc + K::kCols - 1) / K::kCols * K::kCols;
    int tag[3] = {-1, -1, -1};  // input row held by each ring slot
    for (int oy = 0; oy < out_h; ++oy) {
      C3Taps t;
      for (int c = 0; c < cin; ++c) {
        for (int ky = 0; ky < 3; ++ky) {
          const int iy = oy * stride - 1 + ky;
          if (iy < 0 || iy >= in_h) continue;
          const int slot = iy % 3;
          if (tag[slot] != iy) {
            for (int cc = 0; cc < cin; ++cc) {
              K::fill(src + cc * in_plane + static_cast<std::ptrdiff_t>(iy) * in_w, in_w, x0, ncr, stride,
                      rows[cc][slot]);
            }
            tag[slot] = iy;
          }
          for (int kx = 0; kx < 3; ++kx) {
            t.tap[t.n] = rows[c][slot] + offs[stride - 1][kx];
            t.widx[t.n] = (c * 3 + ky) * 3 + kx;
            ++t.n;
          }
        }
      }
      int m0 = 0;
      c3_channels<K, K::kMb>(t, nc, w, wstride, dst + static_cast<std::ptrdiff_t>(oy) * out_w + x0, out_plane, cout,
                             m0, e);
    }
  }
}

}  // namespace
}  // namespace picoface
