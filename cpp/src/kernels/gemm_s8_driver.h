// The ISA-independent part of the int8 kernels: the scalar requantisation step (the rule
// stated above RequantParams in kernels.h, shared by the reference and every ISA's tails) and
// the blocking of conv_gemm_s8. Internal linkage on purpose, as gemm_driver.h: each ISA file
// compiles its own copy with its own flags.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "picoface/kernels.h"

namespace picoface {
namespace {

// Bound applied to the scaled sum before rounding: any value beyond it saturates anyway, and
// the bound keeps the float -> int32 conversion in range on every ISA.
constexpr float kRequantClamp = 65536.0f;

// One value of the requantisation rule, `scale` and `neg` being channel m's scale[m] and
// neg_scale[m] (scale[m] when there is none). std::nearbyint rounds half to even in the
// default rounding mode, as cvtps2dq and vcvtnq_s32_f32 do.
inline std::int8_t requant1(std::int32_t acc, float scale, float neg, const RequantParams& q) {
  float f = static_cast<float>(acc) * (acc < 0 ? neg : scale);
  f = std::min(std::max(f, -kRequantClamp), kRequantClamp);
  std::int32_t r = static_cast<std::int32_t>(std::nearbyint(f)) + q.zero_point;
  r = std::min<std::int32_t>(std::max<std::int32_t>(r, q.lo), q.hi);
  return static_cast<std::int8_t>(r);
}

// One value of add_s8 (the rule above AddParams in kernels.h).
inline std::int8_t add1(std::int8_t a, std::int8_t b, const AddParams& p) {
  const float fa = static_cast<float>(a - p.a_zero_point) * p.a_scale;
  const float fb = static_cast<float>(b - p.b_zero_point) * p.b_scale;
  const float f = std::min(std::max(fa + fb, -kRequantClamp), kRequantClamp);
  std::int32_t r = static_cast<std::int32_t>(std::nearbyint(f)) + p.zero_point;
  r = std::min<std::int32_t>(std::max<std::int32_t>(r, p.lo), p.hi);
  return static_cast<std::int8_t>(r);
}

// Channel m's scale for negative sums (scale[m] without neg_scale).
inline float neg_scale_of(const RequantParams& q, std::size_t m) {
  return q.neg_scale ? q.neg_scale[m] : q.scale[m];
}

// q with its per-channel pointers advanced to channel m.
inline RequantParams requant_from(const RequantParams& q, std::size_t m) {
  RequantParams r = q;
  r.scale = q.scale + m;
  if (q.neg_scale) r.neg_scale = q.neg_scale + m;
  return r;
}

// The G (2 or 4) int8 values a[0..G) as one little-endian word, with the values at and past
// `avail` taken as zero (the ragged end of k: nothing past the row is read).
template <int G>
inline std::uint32_t load_group(const std::int8_t* a, std::size_t avail) {
  std::uint32_t v = 0;
  if (avail >= static_cast<std::size_t>(G)) {
    std::memcpy(&v, a, G);
    return v;
  }
  // Byte by byte: a memcpy of a run-time length is a library call in the tile's inner loop.
  for (std::size_t i = 0; i < avail; ++i) v |= static_cast<std::uint32_t>(static_cast<std::uint8_t>(a[i])) << (8 * i);
  return v;
}

// Runs Tile's MR-row register tile for the `rows` (1..MR) rows left.
template <class Tile, int MR>
inline void gemm_s8_rows(std::size_t rows, std::size_t kc, const std::int8_t* a, std::ptrdiff_t lda,
                         const void* panel, std::int32_t* acc) {
  if constexpr (MR > 1) {
    if (rows < MR) return gemm_s8_rows<Tile, MR - 1>(rows, kc, a, lda, panel, acc);
  }
  Tile::template tile<MR>(kc, a, lda, panel, acc);
}

// conv_gemm_s8 through an ISA's register tile. Blocks of kMb rows keep an int32 kMb x kNr
// accumulator block on the stack; for each kNr-column panel it starts at the row's bias (plus
// Tile::row_offset, VNNI's correction for its unsigned operand), takes every kKc-deep block
// of k (B packed once per block and panel, shared by all rows), then is requantised row by
// row by the ISA's requant_s32_s8. Tile provides kMr, kNr, kKc (a multiple of 4),
// kPanelBytes, pack(b, ldb, kc, nc, panel) (kc x nc of B, zero padding on the right and
// below), tile<MR>(kc, a, lda, panel, acc) (acc rows kNr apart, += A * panel),
// row_offset(a, k) and requant.
template <class Tile>
void conv_gemm_s8_blocked(std::size_t m, std::size_t n, std::size_t k, const std::int8_t* a, std::ptrdiff_t lda,
                          const std::int8_t* b, std::ptrdiff_t ldb, const std::int32_t* bias, std::int8_t* c,
                          std::ptrdiff_t ldc, const RequantParams& q) {
  constexpr std::size_t kMb = 128;
  constexpr std::size_t kNr = Tile::kNr;
  alignas(64) std::int32_t acc[kMb * kNr];
  alignas(64) std::int32_t init[kMb];
  alignas(64) unsigned char panel[Tile::kPanelBytes];
  for (std::size_t i0 = 0; i0 < m; i0 += kMb) {
    const std::size_t mb = std::min(m - i0, kMb);
    for (std::size_t r = 0; r < mb; ++r) {
      const std::int8_t* arow = a + static_cast<std::ptrdiff_t>(i0 + r) * lda;
      // Wrapping sum: the final sums fit in int32 (kernels.h's bounds), so a row offset that
      // takes an intermediate past them cancels exactly, as in the wrapping vector adds.
      init[r] = static_cast<std::int32_t>(static_cast<std::uint32_t>(bias ? bias[i0 + r] : 0) +
                                          static_cast<std::uint32_t>(Tile::row_offset(arow, k)));
    }
    for (std::size_t j0 = 0; j0 < n; j0 += kNr) {
      const std::size_t nc = std::min(n - j0, kNr);
      for (std::size_t r = 0; r < mb; ++r) std::fill(acc + r * kNr, acc + (r + 1) * kNr, init[r]);
      for (std::size_t k0 = 0; k0 < k; k0 += Tile::kKc) {
        const std::size_t kc = std::min(k - k0, Tile::kKc);
        Tile::pack(b + static_cast<std::ptrdiff_t>(k0) * ldb + static_cast<std::ptrdiff_t>(j0), ldb, kc, nc, panel);
        for (std::size_t ii = 0; ii < mb; ii += Tile::kMr) {
          gemm_s8_rows<Tile, Tile::kMr>(std::min(mb - ii, Tile::kMr), kc,
                                        a + static_cast<std::ptrdiff_t>(i0 + ii) * lda + static_cast<std::ptrdiff_t>(k0),
                                        lda, panel, acc + ii * kNr);
        }
      }
      for (std::size_t r = 0; r < mb; ++r) {
        Tile::requant(acc + r * kNr, nc, requant_from(q, i0 + r),
                      c + static_cast<std::ptrdiff_t>(i0 + r) * ldc + static_cast<std::ptrdiff_t>(j0));
      }
    }
  }
}

}  // namespace
}  // namespace picoface
