// NEON + dot-product extension (ARMv8.2 SDOT) kernels. Compiled with
// -march=armv8.2-a+dotprod; selected only when getauxval reports HWCAP_ASIMDDP.
// Everything else (dot_rows_f32, requant_s32_s8, dwconv3x3_row_s8) is inherited from the NEON table.
#include <arm_neon.h>

#include <cstdint>

#include "dot_rows_driver.h"
#include "isa_fill.h"
#include "requant_neon.h"

namespace picoface {
namespace {

std::int32_t dot_s8(const std::int8_t* a, const std::int8_t* b, std::size_t n) {
  // SDOT adds four int8 products into each int32 lane, exactly; four accumulators keep
  // independent SDOTs in flight.
  int32x4_t s0 = vdupq_n_s32(0), s1 = s0, s2 = s0, s3 = s0;
  std::size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    s0 = vdotq_s32(s0, vld1q_s8(a + i), vld1q_s8(b + i));
    s1 = vdotq_s32(s1, vld1q_s8(a + i + 16), vld1q_s8(b + i + 16));
    s2 = vdotq_s32(s2, vld1q_s8(a + i + 32), vld1q_s8(b + i + 32));
    s3 = vdotq_s32(s3, vld1q_s8(a + i + 48), vld1q_s8(b + i + 48));
  }
  for (; i + 16 <= n; i += 16) s0 = vdotq_s32(s0, vld1q_s8(a + i), vld1q_s8(b + i));
  int32x2_t s8 = vdup_n_s32(0);
  for (; i + 8 <= n; i += 8) s8 = vdot_s32(s8, vld1_s8(a + i), vld1_s8(b + i));
  std::int32_t sum = vaddvq_s32(vaddq_s32(vaddq_s32(s0, s1), vaddq_s32(s2, s3))) +
                     vaddv_s32(s8);
  for (; i < n; ++i) sum += static_cast<std::int32_t>(a[i]) * b[i];
  return sum;
}


// dot_rows_s8: R rows share each query load, each with one SDOT accumulator (R independent
// chains cover the SDOT latency); vpaddq folds four rows' accumulators into one vector of
// four sums. The last d % 16 bytes go through an 8-byte SDOT and scalar products, as dot_s8.
template <int R>
inline void dot_s8_block(const std::int8_t* q, const std::int8_t* const* r, std::size_t n, std::int32_t* out) {
  int32x4_t acc[R];
#pragma GCC unroll 4
  for (int j = 0; j < R; ++j) acc[j] = vdupq_n_s32(0);
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const int8x16_t qv = vld1q_s8(q + i);
#pragma GCC unroll 4
    for (int j = 0; j < R; ++j) acc[j] = vdotq_s32(acc[j], qv, vld1q_s8(r[j] + i));
  }
  if (i + 8 <= n) {
    const int8x8_t qv = vld1_s8(q + i);
#pragma GCC unroll 4
    for (int j = 0; j < R; ++j) {
      acc[j] = vaddq_s32(acc[j], vcombine_s32(vdot_s32(vdup_n_s32(0), qv, vld1_s8(r[j] + i)), vdup_n_s32(0)));
    }
    i += 8;
  }
  if constexpr (R == 4) {
    vst1q_s32(out, vpaddq_s32(vpaddq_s32(acc[0], acc[1]), vpaddq_s32(acc[2], acc[3])));
  } else {
#pragma GCC unroll 4
    for (int j = 0; j < R; ++j) out[j] = vaddvq_s32(acc[j]);
  }
  for (; i < n; ++i) {
#pragma GCC unroll 4
    for (int j = 0; j < R; ++j) out[j] += static_cast<std::int32_t>(q[i]) * r[j][i];
  }
}

void dot_rows_s8(const std::int8_t* q, const std::int8_t* rows, std::size_t n_rows, std::size_t d,
                 std::ptrdiff_t row_stride, std::int32_t* out) {
  dot_rows_blocked<4>(q, rows, n_rows, d, row_stride, out, 0,
                      [](auto rc, const std::int8_t* qq, const std::int8_t* const* r, std::size_t n,
                             std::int32_t* o) {
    dot_s8_block<decltype(rc)::value>(qq, r, n, o);
  });
}

// conv_gemm_s8: SDOT multiplies signed by signed bytes, so no offset is needed. The B panel
// holds four consecutive k per 32-bit lane (16 columns, 64 bytes per group); a row's four A
// values are broadcast to every lane, so one vdotq_s32 adds four k of four columns. 4x16
// tile: 16 accumulators.
struct NeonDotTileS8 {
  static constexpr std::size_t kMr = 4;
  static constexpr std::size_t kNr = 16;
  static constexpr std::size_t kKc = 1024;
  static constexpr std::size_t kPanelBytes = kKc * kNr;

  static void pack(const std::int8_t* b, std::ptrdiff_t ldb, std::size_t kc, std::size_t nc, void* out) {
    std::int8_t* panel = static_cast<std::int8_t*>(out);
    for (std::size_t p = 0; p < kc; p += 4, panel += 4 * kNr) {
      const std::int8_t* r0 = b + static_cast<std::ptrdiff_t>(p) * ldb;
      if (nc == kNr && p + 4 <= kc) {
        const int8x16x2_t z01 = vzipq_s8(vld1q_s8(r0), vld1q_s8(r0 + ldb));
        const int8x16x2_t z23 = vzipq_s8(vld1q_s8(r0 + 2 * ldb), vld1q_s8(r0 + 3 * ldb));
        for (int h = 0; h < 2; ++h) {
          const int16x8x2_t z = vzipq_s16(vreinterpretq_s16_s8(z01.val[h]), vreinterpretq_s16_s8(z23.val[h]));
          vst1q_s8(panel + 32 * h, vreinterpretq_s8_s16(z.val[0]));
          vst1q_s8(panel + 32 * h + 16, vreinterpretq_s8_s16(z.val[1]));
        }
        continue;
      }
      for (std::size_t j = 0; j < kNr; ++j) {
        for (std::size_t t = 0; t < 4; ++t) {
          const bool in = j < nc && p + t < kc;
          panel[4 * j + t] = in ? r0[static_cast<std::ptrdiff_t>(t) * ldb + static_cast<std::ptrdiff_t>(j)] : 0;
        }
      }
    }
  }

  static std::int32_t row_offset(const std::int8_t*, std::size_t) { return 0; }

  template <int MR>
  static void tile(std::size_t kc, const std::int8_t* a, std::ptrdiff_t lda, const void* panel_v, std::int32_t* acc) {
    const std::int8_t* panel = static_cast<const std::int8_t*>(panel_v);
    int32x4_t c[MR][4];
    for (int r = 0; r < MR; ++r) {
      for (int v = 0; v < 4; ++v) c[r][v] = vld1q_s32(acc + r * kNr + 4 * v);
    }
    for (std::size_t p = 0; p < kc; p += 4, panel += 4 * kNr) {
      int8x16_t bv[4];
      for (int v = 0; v < 4; ++v) bv[v] = vld1q_s8(panel + 16 * v);
      for (int r = 0; r < MR; ++r) {
        const std::uint32_t g = load_group<4>(a + r * lda + static_cast<std::ptrdiff_t>(p), kc - p);
        const int8x16_t av = vreinterpretq_s8_u32(vdupq_n_u32(g));
        for (int v = 0; v < 4; ++v) c[r][v] = vdotq_s32(c[r][v], bv[v], av);
      }
    }
    for (int r = 0; r < MR; ++r) {
      for (int v = 0; v < 4; ++v) vst1q_s32(acc + r * kNr + 4 * v, c[r][v]);
    }
  }

  static void requant(const std::int32_t* x, std::size_t n, const RequantParams& q, std::int8_t* y) {
    requant_row_neon(x, n, q, y);
  }
};

void conv_gemm_s8(std::size_t m, std::size_t n, std::size_t k, const std::int8_t* a, std::ptrdiff_t lda,
                  const std::int8_t* b, std::ptrdiff_t ldb, const std::int32_t* bias, std::int8_t* c,
                  std::ptrdiff_t ldc, const RequantParams& q) {
  conv_gemm_s8_blocked<NeonDotTileS8>(m, n, k, a, lda, b, ldb, bias, c, ldc, q);
}

}  // namespace

void fill_neondot(KernelTable* t) {
  t->dot_s8 = dot_s8;
  t->dot_rows_s8 = dot_rows_s8;
  t->conv_gemm_s8 = conv_gemm_s8;
}

}  // namespace picoface
