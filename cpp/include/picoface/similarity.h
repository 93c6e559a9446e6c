// Embedding comparison through the dot-product kernels.
#pragma once

#include <cstdint>

namespace picoface {

// out[i*n + j] = cos(a_i, b_j) for a (m x d) and b (n x d), row-major. Zero vectors give 0.
void cosine_matrix(const float* a, int m, const float* b, int n, int d, float* out);

// out[i*n + j] = exact int32 dot product of int8 rows a_i and b_j.
void dot_matrix_s8(const std::int8_t* a, int m, const std::int8_t* b, int n, int d,
                   std::int32_t* out);

}  // namespace picoface
