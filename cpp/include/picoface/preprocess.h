// Network-input preparation in one pass over the source: resize (bilinear, or area for large
// downscales), colour conversion, mean/std normalisation, layout (NCHW/NHWC), float32 or
// int8 output, and letterbox padding. Rows are resampled once into small float buffers that
// stay in L1; the full-size intermediate images of a cvtColor/resize/normalise/transpose
// sequence never exist.
#pragma once

#include "picoface/image.h"

namespace picoface {

enum class Color { kBgr, kRgb, kGray };
enum class Layout { kNchw, kNhwc };
enum class Interp { kAuto, kBilinear, kArea };
enum class Fit {
  kStretch,     // scale each axis independently to fill the input
  kKeepAspect,  // one scale for both axes, content at top-left, rest padded
  kNone,        // no resampling: content copied at scale 1, rest padded (input >= image)
};

// Where the image lands inside the network input. Network coordinates map back to image
// coordinates as x_img = (x_net - pad_x) / scale_x.
struct Letterbox {
  int dst_w = 0, dst_h = 0;          // network input size
  int content_w = 0, content_h = 0;  // size of the resampled image inside it
  int pad_x = 0, pad_y = 0;          // top-left corner of the content
  float scale_x = 1.0f, scale_y = 1.0f;
};

Letterbox make_letterbox(int src_w, int src_h, int dst_w, int dst_h, Fit fit);

struct PreprocessSpec {
  Color in_color = Color::kBgr;
  Color out_color = Color::kBgr;
  // Per output channel, in 0..255 pixel units: out = (pixel - mean) / std.
  float mean[3] = {0, 0, 0};
  float std[3] = {1, 1, 1};
  Layout layout = Layout::kNchw;
  bool to_int8 = false;  // int8 only: q = round_half_even(out / scale) + zero_point, saturated
  float scale = 1.0f;
  int zero_point = 0;
  // kAuto: area averaging on an axis shrunk by 2x or more (no aliasing), bilinear otherwise.
  // kArea: area averaging on every shrinking axis. Bilinear follows cv2.INTER_LINEAR's
  // sampling grid (half-pixel centres, edge clamp).
  Interp interp = Interp::kAuto;
  float pad_value[3] = {0, 0, 0};  // padding pixel per output channel, before normalisation
};

int output_channels(const PreprocessSpec& spec);

// Writes box.dst_h * box.dst_w * output_channels(spec) elements (float or int8) to `out`.
void preprocess(const ImageView& src, const Letterbox& box, const PreprocessSpec& spec,
                void* out);

}  // namespace picoface
