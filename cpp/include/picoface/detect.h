// Detector heads: prior generation, decoding of raw head outputs into boxes, scores and
// 5-point landmarks, then score filtering, top-k, NMS and mapping back to image pixels.
// Every coordinate here is in network-input pixels until unletterbox() maps it back.
#pragma once

#include <vector>

#include "picoface/preprocess.h"

namespace picoface {

// Struct of arrays: boxes N*4 (x1, y1, x2, y2), scores N, landmarks N*num_points*2.
struct Detections {
  std::vector<float> boxes, scores, landmarks;
  int num_points = 5;
  int size() const { return static_cast<int>(scores.size()); }
};

// Anchor boxes (cx, cy, w, h) of an anchor-based head (SSH, EXTD, RetinaFace, SSD): for each
// level, a ceil(input/stride) grid in row-major order, and at each cell one square anchor
// per size of that level, centred at ((col + offset) * stride, (row + offset) * stride).
std::vector<float> anchor_boxes(int input_w, int input_h, const std::vector<int>& strides,
                                const std::vector<std::vector<float>>& sizes, float offset);

// Anchor points of an anchor-free head (YuNet, SCRFD): (x, y, stride) per point, levels in
// order, row-major, `per_cell` repeated points per cell, at ((col + offset) * stride, ...).
std::vector<float> anchor_points(int input_w, int input_h, const std::vector<int>& strides,
                                 int per_cell, float offset);

// YuNet: score = sqrt(cls * obj) (each clamped to [0,1]); centre = point + d * stride,
// size = exp(d) * stride; landmarks = point + d * stride. bbox is P*4, kps P*(2*num_points).
void decode_yunet(const float* points, const float* cls, const float* obj, const float* bbox,
                  const float* kps, int num, int num_points, float score_threshold,
                  Detections* out);

// SCRFD / FCOS distances: box = (x - l*s, y - t*s, x + r*s, y + b*s), landmarks = point + d*s.
// kps may be null (no landmarks: zeros are stored).
void decode_distance(const float* points, const float* score, const float* dist,
                     const float* kps, int num, int num_points, float score_threshold,
                     Detections* out);

// SSD / RetinaFace deltas against anchor boxes with variances (v0, v1):
// centre = a.c + d.xy * v0 * a.wh, size = a.wh * exp(d.wh * v1), landmark = a.c + d * v0 * a.wh.
// landm may be null.
void decode_anchor_deltas(const float* anchors, const float* score, const float* loc,
                          const float* landm, int num, int num_points, float variance0,
                          float variance1, float score_threshold, Detections* out);

// Boxes the network already decoded against its priors (Ultra-Light bakes them into the
// graph): corner form (x1, y1, x2, y2) as fractions of the input, scaled by (scale_x, scale_y)
// to pixels. Such heads have no landmarks: zeros are stored.
void decode_unit_boxes(const float* score, const float* boxes, int num, int num_points,
                       float scale_x, float scale_y, float score_threshold, Detections* out);

enum class NmsMethod { kGreedy, kSoftLinear, kSoftGaussian };

struct NmsOptions {
  float iou_threshold = 0.4f;
  NmsMethod method = NmsMethod::kGreedy;
  float soft_sigma = 0.5f;            // Gaussian soft-NMS: score *= exp(-iou^2 / sigma)
  float soft_score_threshold = 0.0f;  // soft-NMS drops boxes whose decayed score falls below
  int pre_top_k = 5000;               // candidates kept by score before NMS (0 = all)
  int max_keep = 0;                   // detections kept after NMS (0 = all)
};

// Indices of kept detections in descending score order. Soft-NMS rewrites `scores` in place.
std::vector<int> nms(const float* boxes, float* scores, int num, const NmsOptions& options);

// Keeps `keep` (in that order) and maps boxes and landmarks back to image pixels.
Detections select_and_unletterbox(const Detections& in, const std::vector<int>& keep,
                                  const Letterbox& box);

}  // namespace picoface
