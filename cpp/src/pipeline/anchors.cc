#include <string>
#include <vector>

#include "picoface/detect.h"
#include "picoface/error.h"

namespace picoface {
namespace {

void check_levels(int input_w, int input_h, const std::vector<int>& strides) {
  require(input_w > 0 && input_h > 0, "input size must be positive");
  require(!strides.empty(), "a head needs at least one stride");
  for (int s : strides) require(s > 0, "strides must be positive, got " + std::to_string(s));
}

int cells(int extent, int stride) { return (extent + stride - 1) / stride; }

}  // namespace

std::vector<float> anchor_boxes(int input_w, int input_h, const std::vector<int>& strides,
                                const std::vector<std::vector<float>>& sizes, float offset) {
  check_levels(input_w, input_h, strides);
  require(sizes.size() == strides.size(), "anchor sizes must list one set per stride");
  std::vector<float> out;
  for (std::size_t l = 0; l < strides.size(); ++l) {
    const int s = strides[l], gw = cells(input_w, s), gh = cells(input_h, s);
    for (int r = 0; r < gh; ++r) {
      for (int c = 0; c < gw; ++c) {
        for (float size : sizes[l]) {
          out.insert(out.end(), {(c + offset) * s, (r + offset) * s, size, size});
        }
      }
    }
  }
  return out;
}

std::vector<float> anchor_points(int input_w, int input_h, const std::vector<int>& strides,
                                 int per_cell, float offset) {
  check_levels(input_w, input_h, strides);
  require(per_cell >= 1, "per_cell must be at least 1");
  std::vector<float> out;
  for (int s : strides) {
    const int gw = cells(input_w, s), gh = cells(input_h, s);
    for (int r = 0; r < gh; ++r) {
      for (int c = 0; c < gw; ++c) {
        for (int a = 0; a < per_cell; ++a) {
          out.insert(out.end(), {(c + offset) * s, (r + offset) * s, float(s)});
        }
      }
    }
  }
  return out;
}

}  // namespace picoface
