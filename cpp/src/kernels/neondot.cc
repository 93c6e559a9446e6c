// NEON + dot-product extension (ARMv8.2 SDOT) kernels. Compiled with
// -march=armv8.2-a+dotprod; selected only when getauxval reports HWCAP_ASIMDDP.
// Everything else is inherited from the NEON table.
#include <arm_neon.h>

#include <cstdint>

#include "isa_fill.h"

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

}  // namespace

void fill_neondot(KernelTable* t) { t->dot_s8 = dot_s8; }

}  // namespace picoface
