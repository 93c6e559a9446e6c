#include "picoface/similarity.h"

#include <cmath>
#include <vector>

#include "picoface/kernels.h"

namespace picoface {

void cosine_matrix(const float* a, int m, const float* b, int n, int d, float* out) {
  const KernelTable& k = kernels();
  std::vector<float> inv_b(n);
  for (int j = 0; j < n; ++j) {
    const float nb = std::sqrt(k.dot_f32(b + std::size_t(j) * d, b + std::size_t(j) * d, d));
    inv_b[j] = nb > 0.0f ? 1.0f / nb : 0.0f;
  }
  for (int i = 0; i < m; ++i) {
    const float* ai = a + std::size_t(i) * d;
    const float na = std::sqrt(k.dot_f32(ai, ai, d));
    const float inv_a = na > 0.0f ? 1.0f / na : 0.0f;
    for (int j = 0; j < n; ++j) {
      out[std::size_t(i) * n + j] = k.dot_f32(ai, b + std::size_t(j) * d, d) * inv_a * inv_b[j];
    }
  }
}

void dot_matrix_s8(const std::int8_t* a, int m, const std::int8_t* b, int n, int d,
                   std::int32_t* out) {
  const KernelTable& k = kernels();
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      out[std::size_t(i) * n + j] = k.dot_s8(a + std::size_t(i) * d, b + std::size_t(j) * d, d);
    }
  }
}

}  // namespace picoface
