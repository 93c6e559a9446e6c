// Embedding comparison and 1:N gallery search through the dot-product kernels.
#pragma once

#include <cstdint>

namespace picoface {

// out[i*n + j] = cos(a_i, b_j) for a (m x d) and b (n x d), row-major. Zero vectors give 0.
void cosine_matrix(const float* a, int m, const float* b, int n, int d, float* out);

// out[i*n + j] = exact int32 dot product of int8 rows a_i and b_j.
void dot_matrix_s8(const std::int8_t* a, int m, const std::int8_t* b, int n, int d,
                   std::int32_t* out);

// Symmetric per-row int8 quantisation of x (n x d): scale[i] = max_k |x_ik| / 127 and
// q_ik = round_half_even(x_ik / scale[i]) in -127..127, so x_ik ~= q_ik * scale[i].
// An all-zero row gets scale 0 and q = 0.
void quantize_rows_s8(const float* x, int n, int d, std::int8_t* q, float* scale);

// One gallery: n stored rows of dimension d, row j enrolled under identity owner[j] in
// [0, identities). Rows are L2-normalised by the caller, so a dot product is a cosine.
// Exactly one of f32 (n x d) or s8 (n x d, with per-row scale) is set.
struct GalleryView {
  const float* f32 = nullptr;
  const std::int8_t* s8 = nullptr;
  const float* scale = nullptr;
  const std::int32_t* owner = nullptr;
  int rows = 0;
  int dim = 0;
  int identities = 0;
};

// For each of the m L2-normalised queries q (m x d fp32), the k best identities by their best
// row's score, best first (ties: lower identity index first). An identity with no row scores
// -inf. int8 galleries quantise each query with quantize_rows_s8 and de-quantise the exact
// int32 dot: score = dot * scale_q * scale_row. Requires 1 <= k <= identities; writes
// ids (m x k) and scores (m x k). No threads; keeps O(identities) scratch per calling thread.
void gallery_top_k(const GalleryView& g, const float* q, int m, int k, std::int32_t* ids,
                   float* scores);

}  // namespace picoface
