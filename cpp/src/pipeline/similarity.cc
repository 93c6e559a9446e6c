#include "picoface/similarity.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "picoface/error.h"
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
    float* oi = out + std::size_t(i) * n;
    k.dot_rows_f32(ai, b, n, d, d, oi);  // bit-identical to dot_f32 per row
    for (int j = 0; j < n; ++j) oi[j] = oi[j] * inv_a * inv_b[j];
  }
}

void dot_matrix_s8(const std::int8_t* a, int m, const std::int8_t* b, int n, int d,
                   std::int32_t* out) {
  const KernelTable& k = kernels();
  for (int i = 0; i < m; ++i) k.dot_rows_s8(a + std::size_t(i) * d, b, n, d, d, out + std::size_t(i) * n);
}

void quantize_rows_s8(const float* x, int n, int d, std::int8_t* q, float* scale) {
  for (int i = 0; i < n; ++i) {
    const float* row = x + std::size_t(i) * d;
    std::int8_t* out = q + std::size_t(i) * d;
    float amax = 0.0f;
    for (int c = 0; c < d; ++c) amax = std::max(amax, std::fabs(row[c]));
    if (!(amax > 0.0f)) {
      std::fill(out, out + d, std::int8_t(0));
      scale[i] = 0.0f;
      continue;
    }
    const float inv = 127.0f / amax;
    for (int c = 0; c < d; ++c) {
      const float v = std::nearbyint(row[c] * inv);  // default rounding: half to even
      out[c] = static_cast<std::int8_t>(std::min(127.0f, std::max(-127.0f, v)));
    }
    scale[i] = amax / 127.0f;
  }
}

void gallery_top_k(const GalleryView& g, const float* q, int m, int k, std::int32_t* ids,
                   float* scores) {
  require(g.dim > 0 && g.rows >= 0 && g.identities >= 1, "gallery_top_k: empty gallery");
  require(k >= 1 && k <= g.identities, "gallery_top_k: k must be in 1..identities");
  require((g.f32 != nullptr) != (g.s8 != nullptr), "gallery_top_k: set one of f32 or s8");
  require(g.s8 == nullptr || g.scale != nullptr, "gallery_top_k: int8 rows need scales");
  // dot_rows_s8 accumulates in int32: d * 128 * 128 must stay below 2^31.
  require(g.s8 == nullptr || g.dim <= 131000, "gallery_top_k: int8 dim too large");
  const KernelTable& kt = kernels();
  const int d = g.dim;
  constexpr float kNone = -std::numeric_limits<float>::infinity();
  constexpr int kRowBlock = 256;
  // Scratch kept per thread between calls: a fresh 400 KB buffer per query of a 100k gallery
  // is an mmap, page faults and kernel page clearing that cost more than the search itself.
  thread_local std::vector<float> best;
  thread_local std::vector<std::int32_t> order;
  thread_local std::vector<std::int8_t> qs;
  best.resize(g.identities);
  qs.resize(g.s8 ? d : 0);
  const auto better = [](float sa, std::int32_t a, float sb, std::int32_t b) {
    return sa > sb || (sa == sb && a < b);
  };
  for (int i = 0; i < m; ++i) {
    const float* qi = q + std::size_t(i) * d;
    std::fill(best.begin(), best.end(), kNone);
    // Rows are scored a block at a time by one dot_rows call (several rows in flight, one
    // call and one horizontal sum per row), then folded into the per-identity best; the
    // block's scores stay in L1.
    if (g.f32) {
      float dots[kRowBlock];
      for (int j0 = 0; j0 < g.rows; j0 += kRowBlock) {
        const int nb = std::min(kRowBlock, g.rows - j0);
        kt.dot_rows_f32(qi, g.f32 + std::size_t(j0) * d, nb, d, d, dots);
        for (int t = 0; t < nb; ++t) {
          float& b = best[g.owner[j0 + t]];
          if (dots[t] > b) b = dots[t];
        }
      }
    } else {
      float q_scale = 0.0f;
      quantize_rows_s8(qi, 1, d, qs.data(), &q_scale);
      std::int32_t dots[kRowBlock];
      for (int j0 = 0; j0 < g.rows; j0 += kRowBlock) {
        const int nb = std::min(kRowBlock, g.rows - j0);
        kt.dot_rows_s8(qs.data(), g.s8 + std::size_t(j0) * d, nb, d, d, dots);
        for (int t = 0; t < nb; ++t) {
          const float s = static_cast<float>(dots[t]) * q_scale * g.scale[j0 + t];
          float& b = best[g.owner[j0 + t]];
          if (s > b) b = s;
        }
      }
    }
    std::int32_t* out_ids = ids + std::size_t(i) * k;
    float* out_scores = scores + std::size_t(i) * k;
    if (k <= 32) {  // a sorted insertion list: one pass over the identities, no index array
      int filled = 0;
      for (std::int32_t id = 0; id < g.identities; ++id) {
        const float s = best[id];
        if (filled == k && !better(s, id, out_scores[k - 1], out_ids[k - 1])) continue;
        int pos = filled < k ? filled++ : k - 1;
        while (pos > 0 && better(s, id, out_scores[pos - 1], out_ids[pos - 1])) {
          out_scores[pos] = out_scores[pos - 1];
          out_ids[pos] = out_ids[pos - 1];
          --pos;
        }
        out_scores[pos] = s;
        out_ids[pos] = id;
      }
    } else {
      order.resize(g.identities);
      std::iota(order.begin(), order.end(), 0);
      std::partial_sort(order.begin(), order.begin() + k, order.end(),
                        [&](std::int32_t a, std::int32_t b) { return better(best[a], a, best[b], b); });
      for (int t = 0; t < k; ++t) {
        out_ids[t] = order[t];
        out_scores[t] = best[order[t]];
      }
    }
  }
}

}  // namespace picoface
