// A borrowed view of an interleaved uint8 image; picoface never owns or copies the pixels.
#pragma once

#include <cstddef>
#include <cstdint>

namespace picoface {

struct ImageView {
  const std::uint8_t* data = nullptr;
  int width = 0, height = 0;
  int channels = 3;           // 1 (grey) or 3 (BGR or RGB), interleaved
  std::ptrdiff_t stride = 0;  // bytes between rows (>= width * channels)
};

// Throws Error(kInvalidArgument) unless the view is non-empty and self-consistent.
void check_image(const ImageView& image);

}  // namespace picoface
