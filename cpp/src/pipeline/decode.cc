#include <algorithm>
#include <cmath>

#include "picoface/detect.h"

namespace picoface {
namespace {

void push(Detections* out, float x1, float y1, float x2, float y2, float score) {
  out->boxes.insert(out->boxes.end(), {x1, y1, x2, y2});
  out->scores.push_back(score);
}

float clamp01(float v) { return std::min(1.0f, std::max(0.0f, v)); }

}  // namespace

void decode_yunet(const float* points, const float* cls, const float* obj, const float* bbox,
                  const float* kps, int num, int num_points, float score_threshold,
                  Detections* out) {
  out->num_points = num_points;
  for (int i = 0; i < num; ++i) {
    const float score = std::sqrt(clamp01(cls[i]) * clamp01(obj[i]));
    if (!(score >= score_threshold)) continue;
    const float px = points[3 * i], py = points[3 * i + 1], s = points[3 * i + 2];
    const float* d = bbox + 4 * i;
    const float cx = px + d[0] * s, cy = py + d[1] * s;
    const float w = std::exp(d[2]) * s, h = std::exp(d[3]) * s;
    push(out, cx - 0.5f * w, cy - 0.5f * h, cx + 0.5f * w, cy + 0.5f * h, score);
    for (int k = 0; k < num_points; ++k) {
      out->landmarks.push_back(px + kps[(2 * i * num_points) + 2 * k] * s);
      out->landmarks.push_back(py + kps[(2 * i * num_points) + 2 * k + 1] * s);
    }
  }
}

void decode_distance(const float* points, const float* score, const float* dist,
                     const float* kps, int num, int num_points, float score_threshold,
                     Detections* out) {
  out->num_points = num_points;
  for (int i = 0; i < num; ++i) {
    if (!(score[i] >= score_threshold)) continue;
    const float px = points[3 * i], py = points[3 * i + 1], s = points[3 * i + 2];
    const float* d = dist + 4 * i;
    push(out, px - d[0] * s, py - d[1] * s, px + d[2] * s, py + d[3] * s, score[i]);
    for (int k = 0; k < num_points; ++k) {
      const float* kp = kps ? kps + 2 * i * num_points + 2 * k : nullptr;
      out->landmarks.push_back(kp ? px + kp[0] * s : 0.0f);
      out->landmarks.push_back(kp ? py + kp[1] * s : 0.0f);
    }
  }
}

void decode_anchor_deltas(const float* anchors, const float* score, const float* loc,
                          const float* landm, int num, int num_points, float variance0,
                          float variance1, float score_threshold, Detections* out) {
  out->num_points = num_points;
  for (int i = 0; i < num; ++i) {
    if (!(score[i] >= score_threshold)) continue;
    const float* a = anchors + 4 * i;
    const float* d = loc + 4 * i;
    const float cx = a[0] + d[0] * variance0 * a[2], cy = a[1] + d[1] * variance0 * a[3];
    const float w = a[2] * std::exp(d[2] * variance1), h = a[3] * std::exp(d[3] * variance1);
    push(out, cx - 0.5f * w, cy - 0.5f * h, cx + 0.5f * w, cy + 0.5f * h, score[i]);
    for (int k = 0; k < num_points; ++k) {
      const float* l = landm ? landm + 2 * i * num_points + 2 * k : nullptr;
      out->landmarks.push_back(l ? a[0] + l[0] * variance0 * a[2] : 0.0f);
      out->landmarks.push_back(l ? a[1] + l[1] * variance0 * a[3] : 0.0f);
    }
  }
}

void decode_unit_boxes(const float* score, const float* boxes, int num, int num_points,
                       float scale_x, float scale_y, float score_threshold, Detections* out) {
  out->num_points = num_points;
  for (int i = 0; i < num; ++i) {
    if (!(score[i] >= score_threshold)) continue;
    const float* b = boxes + 4 * i;
    push(out, b[0] * scale_x, b[1] * scale_y, b[2] * scale_x, b[3] * scale_y, score[i]);
    out->landmarks.insert(out->landmarks.end(), 2 * num_points, 0.0f);
  }
}

}  // namespace picoface
