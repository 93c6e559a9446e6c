// The requantisation step on NEON vectors, shared by the NEON and NEON dot-product files
// (internal linkage: each compiles its own copy with its own flags). Operation for operation
// the scalar requant1 of gemm_s8_driver.h: vcvtq_f32_s32 rounds to nearest even in the
// default FPCR mode, vcvtnq_s32_f32 rounds half to even.
#pragma once

#include <arm_neon.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "gemm_s8_driver.h"

namespace picoface {
namespace {

// Channel 0 of q; vbslq picks the negative scale where a sum is below zero.
struct RequantNeon {
  float32x4_t scale, neg, clamp_lo, clamp_hi;
  int32x4_t zp, lo, hi;
  explicit RequantNeon(const RequantParams& q)
      : scale(vdupq_n_f32(q.scale[0])),
        neg(vdupq_n_f32(neg_scale_of(q, 0))),
        clamp_lo(vdupq_n_f32(-kRequantClamp)),
        clamp_hi(vdupq_n_f32(kRequantClamp)),
        zp(vdupq_n_s32(q.zero_point)),
        lo(vdupq_n_s32(q.lo)),
        hi(vdupq_n_s32(q.hi)) {}
  int32x4_t operator()(int32x4_t acc) const {
    float32x4_t f = vmulq_f32(vcvtq_f32_s32(acc), vbslq_f32(vcltzq_s32(acc), neg, scale));
    f = vminq_f32(vmaxq_f32(f, clamp_lo), clamp_hi);
    const int32x4_t r = vaddq_s32(vcvtnq_s32_f32(f), zp);
    return vminq_s32(vmaxq_s32(r, lo), hi);
  }
  // Two vectors of sums -> 8 int8 results in order.
  int8x8_t operator()(int32x4_t a, int32x4_t b) const {
    return vqmovn_s16(vcombine_s16(vqmovn_s32((*this)(a)), vqmovn_s32((*this)(b))));
  }
};

inline void store_s8(std::int8_t* dst, int8x8_t v, std::size_t count) {
  if (count >= 8) {
    vst1_s8(dst, v);
    return;
  }
  std::int8_t tmp[8];
  vst1_s8(tmp, v);
  std::memcpy(dst, tmp, count);
}

inline void requant_row_neon(const std::int32_t* x, std::size_t n, const RequantParams& q, std::int8_t* y) {
  const RequantNeon rq(q);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) vst1_s8(y + i, rq(vld1q_s32(x + i), vld1q_s32(x + i + 4)));
  for (; i < n; ++i) y[i] = requant1(x[i], q.scale[0], neg_scale_of(q, 0), q);
}

}  // namespace
}  // namespace picoface
