#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "picoface/detect.h"
#include "picoface/error.h"

namespace picoface {
namespace {

float area(const float* b) {
  return std::max(0.0f, b[2] - b[0]) * std::max(0.0f, b[3] - b[1]);
}

float iou(const float* a, const float* b) {
  const float w = std::min(a[2], b[2]) - std::max(a[0], b[0]);
  const float h = std::min(a[3], b[3]) - std::max(a[1], b[1]);
  if (w <= 0.0f || h <= 0.0f) return 0.0f;
  const float inter = w * h;
  const float uni = area(a) + area(b) - inter;
  return uni > 0.0f ? inter / uni : 0.0f;
}

// Descending score; ties broken by index so results do not depend on the sort's stability.
std::vector<int> by_score(const float* scores, int num, int top_k) {
  std::vector<int> order(num);
  std::iota(order.begin(), order.end(), 0);
  auto cmp = [scores](int a, int b) {
    return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
  };
  if (top_k > 0 && top_k < num) {
    std::partial_sort(order.begin(), order.begin() + top_k, order.end(), cmp);
    order.resize(top_k);
  } else {
    std::sort(order.begin(), order.end(), cmp);
  }
  return order;
}

}  // namespace

std::vector<int> nms(const float* boxes, float* scores, int num, const NmsOptions& o) {
  require(o.iou_threshold >= 0.0f && o.iou_threshold <= 1.0f,
          "nms_threshold must be within [0, 1], got " + std::to_string(o.iou_threshold));
  require(o.soft_sigma > 0.0f, "soft-NMS sigma must be positive");
  std::vector<int> order = by_score(scores, num, o.pre_top_k);
  std::vector<int> keep;
  if (o.method == NmsMethod::kGreedy) {
    std::vector<char> dead(order.size(), 0);
    for (std::size_t i = 0; i < order.size(); ++i) {
      if (dead[i]) continue;
      keep.push_back(order[i]);
      if (o.max_keep > 0 && static_cast<int>(keep.size()) == o.max_keep) break;
      const float* bi = boxes + 4 * order[i];
      for (std::size_t j = i + 1; j < order.size(); ++j) {
        if (!dead[j] && iou(bi, boxes + 4 * order[j]) > o.iou_threshold) dead[j] = 1;
      }
    }
    return keep;
  }
  // Soft-NMS (Bodla et al., ICCV 2017): repeatedly take the best remaining box and decay the
  // scores of the others by their overlap with it instead of removing them.
  std::vector<int> live = order;
  while (!live.empty()) {
    auto best = std::min_element(live.begin(), live.end(), [scores](int a, int b) {
      return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
    });
    const int m = *best;
    live.erase(best);
    keep.push_back(m);
    if (o.max_keep > 0 && static_cast<int>(keep.size()) == o.max_keep) break;
    std::vector<int> next;
    for (int j : live) {
      const float ov = iou(boxes + 4 * m, boxes + 4 * j);
      float decay = 1.0f;
      if (o.method == NmsMethod::kSoftLinear) {
        decay = ov > o.iou_threshold ? 1.0f - ov : 1.0f;
      } else {
        decay = std::exp(-(ov * ov) / o.soft_sigma);
      }
      scores[j] *= decay;
      if (scores[j] >= o.soft_score_threshold) next.push_back(j);
    }
    live.swap(next);
  }
  return keep;
}

Detections select_and_unletterbox(const Detections& in, const std::vector<int>& keep,
                                  const Letterbox& box) {
  Detections out;
  out.num_points = in.num_points;
  const int np = in.num_points;
  const float sx = 1.0f / box.scale_x, sy = 1.0f / box.scale_y;
  for (int i : keep) {
    const float* b = in.boxes.data() + 4 * i;
    out.boxes.insert(out.boxes.end(), {(b[0] - box.pad_x) * sx, (b[1] - box.pad_y) * sy,
                                       (b[2] - box.pad_x) * sx, (b[3] - box.pad_y) * sy});
    out.scores.push_back(in.scores[i]);
    for (int k = 0; k < np; ++k) {
      out.landmarks.push_back((in.landmarks[(i * np + k) * 2] - box.pad_x) * sx);
      out.landmarks.push_back((in.landmarks[(i * np + k) * 2 + 1] - box.pad_y) * sy);
    }
  }
  return out;
}

}  // namespace picoface
