// The ISA-independent part of the SIMD fp32 GEMMs: k blocking, B panel packing, the sweep of
// A's row tiles and the k = 0 case. gemm_f32 and conv_gemm_f32 of one ISA both go through it,
// so they compute the same sums (conv_gemm's epilogue must be bit-identical to bias_act_f32
// applied to gemm's result). Internal linkage on purpose, as in scalar_pixels.h: each ISA file
// compiles its own copy with its own flags.
#pragma once

#include <algorithm>
#include <cstddef>

#include "picoface/kernels.h"

namespace picoface {
namespace {

// The BiasActParams of row (output channel) i of a RowBiasAct.
inline BiasActParams row_act(const RowBiasAct& e, std::size_t i) {
  BiasActParams p;
  p.bias = e.bias ? e.bias[i] : 0.0f;
  p.neg_slope = e.slopes ? e.slopes[i] : e.neg_slope;
  p.lo = e.lo;
  p.hi = e.hi;
  return p;
}

// How a tile's rows leave the registers: plain store, add to C, or the conv epilogue (row
// `row0 + r` of the RowBiasAct).
struct TileStore {
  bool load_c = false;
  const RowBiasAct* epi = nullptr;
  std::size_t row0 = 0;
};

// Runs Tile's MR-row register tile for the `rows` (1..MR) rows left.
template <class Tile, int MR>
inline void gemm_rows(std::size_t rows, std::size_t kc, const float* a, std::ptrdiff_t lda, const float* panel,
                      float* c, std::ptrdiff_t ldc, std::size_t nc, const TileStore& st) {
  if constexpr (MR > 1) {
    if (rows < MR) return gemm_rows<Tile, MR - 1>(rows, kc, a, lda, panel, c, ldc, nc, st);
  }
  Tile::template tile<MR>(kc, a, lda, panel, c, ldc, nc, st);
}

// C = A * B [+ C], `epi` (or null) finishing the last k block. Tile provides kMr, kNr, kKc,
// pack(b, ldb, kc, nc, panel) (kc x nc of B into a kc x kNr panel, zero-padded on the right),
// tile<MR>(kc, a, lda, panel, c, ldc, nc, st) and bias_act (the ISA's bias_act_f32).
template <class Tile>
void gemm_blocked(std::size_t m, std::size_t n, std::size_t k, const float* a, std::ptrdiff_t lda, const float* b,
                  std::ptrdiff_t ldb, float* c, std::ptrdiff_t ldc, bool accumulate, const RowBiasAct* epi) {
  if (k == 0) {
    for (std::size_t i = 0; i < m; ++i) {
      float* cr = c + static_cast<std::ptrdiff_t>(i) * ldc;
      if (!accumulate) std::fill(cr, cr + n, 0.0f);
      if (epi) Tile::bias_act(cr, n, row_act(*epi, i));
    }
    return;
  }
  alignas(64) float panel[Tile::kKc * Tile::kNr];
  for (std::size_t k0 = 0; k0 < k; k0 += Tile::kKc) {
    const std::size_t kc = std::min(k - k0, Tile::kKc);
    TileStore st;
    st.load_c = accumulate || k0 > 0;
    st.epi = k0 + kc == k ? epi : nullptr;
    for (std::size_t j0 = 0; j0 < n; j0 += Tile::kNr) {
      const std::size_t nc = std::min(n - j0, Tile::kNr);
      Tile::pack(b + static_cast<std::ptrdiff_t>(k0) * ldb + j0, ldb, kc, nc, panel);
      for (std::size_t i0 = 0; i0 < m; i0 += Tile::kMr) {
        st.row0 = i0;
        gemm_rows<Tile, Tile::kMr>(std::min(m - i0, Tile::kMr), kc, a + static_cast<std::ptrdiff_t>(i0) * lda + k0,
                                   lda, panel, c + static_cast<std::ptrdiff_t>(i0) * ldc + j0, ldc, nc, st);
      }
    }
  }
}

}  // namespace
}  // namespace picoface
