#include "picoface/preprocess.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "picoface/error.h"
#include "picoface/kernels.h"

namespace picoface {

void check_image(const ImageView& image) {
  require(image.data != nullptr, "image has no data");
  require(image.width > 0 && image.height > 0,
          "image must be at least 1x1, got " + std::to_string(image.width) + "x" +
              std::to_string(image.height));
  require(image.channels >= 1 && image.channels <= 4,
          "image must have 1 to 4 channels, got " + std::to_string(image.channels));
  require(image.stride >= static_cast<std::ptrdiff_t>(image.width) * image.channels,
          "image row stride is smaller than a row");
}

namespace {

// Sampling taps of one axis: output i reads src[ofs[i] .. ofs[i]+ntaps) with weights
// w[i*ntaps ..]. Taps are clamped into the source, so kernels never read outside it.
struct Taps {
  int ntaps = 1;
  std::vector<std::int32_t> ofs;
  std::vector<float> w;
};

// Calls f(source index, weight) for every tap of output pixel i, indices clamped to the
// source, in increasing index order.
template <typename F>
void for_each_tap(int i, int src_len, double ratio, bool area, F&& f) {
  if (area) {
    // Output pixel i covers [i*ratio, (i+1)*ratio) of the source; weight = overlap / ratio.
    const double begin = i * ratio, end = std::min((i + 1) * ratio, double(src_len));
    for (int s = static_cast<int>(std::floor(begin)); s < end; ++s) {
      const double overlap = std::min(end, s + 1.0) - std::max(begin, double(s));
      if (overlap > 1e-9) f(s, overlap / ratio);
    }
  } else {
    const double pos = (i + 0.5) * ratio - 0.5;
    const int s0 = static_cast<int>(std::floor(pos));
    const double frac = pos - s0;
    f(std::clamp(s0, 0, src_len - 1), 1.0 - frac);
    f(std::clamp(s0 + 1, 0, src_len - 1), frac);
  }
}

// Two passes over the same tap enumeration (window width, then weights): no per-pixel
// allocation, which mattered at video rates.
Taps make_taps(int src_len, int dst_len, bool area) {
  const double ratio = static_cast<double>(src_len) / dst_len;
  Taps t;
  t.ofs.resize(dst_len);
  for (int i = 0; i < dst_len; ++i) {
    int lo = src_len, hi = -1;
    for_each_tap(i, src_len, ratio, area, [&](int s, double) {
      lo = std::min(lo, s);
      hi = std::max(hi, s);
    });
    t.ofs[i] = lo;
    t.ntaps = std::max(t.ntaps, hi - lo + 1);
  }
  t.ntaps = std::min(t.ntaps, src_len);
  t.w.assign(static_cast<std::size_t>(dst_len) * t.ntaps, 0.0f);
  for (int i = 0; i < dst_len; ++i) {
    const int start = std::clamp(t.ofs[i], 0, src_len - t.ntaps);
    t.ofs[i] = start;
    float* w = t.w.data() + static_cast<std::size_t>(i) * t.ntaps;
    for_each_tap(i, src_len, ratio, area,
                 [&](int s, double weight) { w[s - start] += static_cast<float>(weight); });
  }
  return t;
}

bool use_area(Interp interp, int src_len, int dst_len) {
  switch (interp) {
    case Interp::kBilinear: return false;
    case Interp::kArea: return src_len > dst_len;
    case Interp::kAuto: return src_len >= 2 * dst_len;
  }
  return false;
}

// Row k of the colour matrix for output channel `out` given the input channel order.
void colour_row(Color in, int in_channels, Color out, int out_index, float row[3]) {
  row[0] = row[1] = row[2] = 0.0f;
  if (in_channels == 1) {
    row[0] = 1.0f;  // grey in: every output channel is the grey value
    return;
  }
  // Index of R, G and B in the input pixel.
  const int r = in == Color::kRgb ? 0 : 2, g = 1, b = in == Color::kRgb ? 2 : 0;
  if (out == Color::kGray) {
    // ITU-R BT.601 luma, the weights of cv2.COLOR_BGR2GRAY.
    row[r] = 0.299f;
    row[g] = 0.587f;
    row[b] = 0.114f;
    return;
  }
  const int order_rgb[3] = {r, g, b}, order_bgr[3] = {b, g, r};
  row[(out == Color::kRgb ? order_rgb : order_bgr)[out_index]] = 1.0f;
}

}  // namespace

int output_channels(const PreprocessSpec& spec) { return spec.out_color == Color::kGray ? 1 : 3; }

Letterbox make_letterbox(int src_w, int src_h, int dst_w, int dst_h, Fit fit) {
  require(src_w > 0 && src_h > 0, "image must be at least 1x1");
  require(dst_w > 0 && dst_h > 0 && dst_w <= 16384 && dst_h <= 16384,
          "network input size must be within 1..16384, got " + std::to_string(dst_w) + "x" +
              std::to_string(dst_h));
  Letterbox b;
  b.dst_w = dst_w;
  b.dst_h = dst_h;
  switch (fit) {
    case Fit::kStretch:
      b.content_w = dst_w;
      b.content_h = dst_h;
      break;
    case Fit::kKeepAspect: {
      const double s = std::min(double(dst_w) / src_w, double(dst_h) / src_h);
      b.content_w = std::clamp(static_cast<int>(std::lround(src_w * s)), 1, dst_w);
      b.content_h = std::clamp(static_cast<int>(std::lround(src_h * s)), 1, dst_h);
      break;
    }
    case Fit::kNone:
      require(src_w <= dst_w && src_h <= dst_h,
              "image " + std::to_string(src_w) + "x" + std::to_string(src_h) +
                  " is larger than the network input " + std::to_string(dst_w) + "x" +
                  std::to_string(dst_h) + " and fit=none does not resize");
      b.content_w = src_w;
      b.content_h = src_h;
      break;
  }
  b.scale_x = static_cast<float>(b.content_w) / src_w;
  b.scale_y = static_cast<float>(b.content_h) / src_h;
  return b;
}

void preprocess(const ImageView& src, const Letterbox& box, const PreprocessSpec& spec,
                void* out) {
  check_image(src);
  require(src.channels == 1 || src.channels == 3, "preprocess takes 1- or 3-channel images");
  require(src.channels == 1 || spec.in_color != Color::kGray,
          "a 3-channel image cannot be declared grey");
  require(box.content_w >= 1 && box.content_h >= 1 && box.pad_x >= 0 && box.pad_y >= 0 &&
              box.pad_x + box.content_w <= box.dst_w && box.pad_y + box.content_h <= box.dst_h,
          "letterbox content does not fit the network input");
  for (int c = 0; c < 3; ++c) {
    require(std::isfinite(spec.mean[c]) && std::isfinite(spec.std[c]) && spec.std[c] != 0.0f,
            "mean must be finite and std finite and non-zero");
  }
  require(!spec.to_int8 || (spec.scale > 0.0f && std::isfinite(spec.scale)),
          "int8 output needs a positive finite scale");

  const KernelTable& k = kernels();
  const int cin = src.channels, cout = output_channels(spec);
  const int W = box.dst_w, H = box.dst_h, cw = box.content_w, ch = box.content_h;

  PackParams pack;
  pack.in_channels = cin;
  pack.out_channels = cout;
  for (int c = 0; c < cout; ++c) {
    colour_row(spec.in_color, cin, spec.out_color, c, pack.matrix[c]);
    for (int j = 0; j < 3; ++j) pack.matrix[c][j] /= spec.std[c];
    pack.bias[c] = -spec.mean[c] / spec.std[c];
  }
  pack.to_int8 = spec.to_int8;
  pack.inv_scale = 1.0f / spec.scale;
  pack.zero_point = spec.zero_point;
  const bool nchw = spec.layout == Layout::kNchw;
  pack.channel_stride = nchw ? static_cast<std::ptrdiff_t>(W) * H : 1;
  pack.pixel_stride = nchw ? 1 : cout;
  const std::size_t elem = spec.to_int8 ? 1 : sizeof(float);
  auto at = [&](int y, int x) {
    return static_cast<char*>(out) +
           (static_cast<std::ptrdiff_t>(y) * W + x) * pack.pixel_stride * elem;
  };

  // Padding goes through pack_row too, so padded and image pixels are rounded alike.
  const bool padded = cw < W || ch < H;
  std::vector<float> pad_planes;
  PackParams pad = pack;
  const float* pad_in[3] = {nullptr, nullptr, nullptr};
  if (padded) {
    pad.in_channels = cout;
    pad_planes.resize(static_cast<std::size_t>(cout) * W);
    for (int c = 0; c < cout; ++c) {
      for (int j = 0; j < 3; ++j) pad.matrix[c][j] = (j == c) ? 1.0f / spec.std[c] : 0.0f;
      std::fill(pad_planes.begin() + c * W, pad_planes.begin() + (c + 1) * W, spec.pad_value[c]);
      pad_in[c] = pad_planes.data() + c * W;
    }
  }
  auto pad_span = [&](int y, int x0, int n) {
    if (n > 0) k.pack_row(pad_in, n, pad, at(y, x0));
  };

  const Taps tx = make_taps(src.width, cw, use_area(spec.interp, src.width, cw));
  const Taps ty = make_taps(src.height, ch, use_area(spec.interp, src.height, ch));

  // Ring of horizontally resampled source rows: slot = row % ntaps. Windows of consecutive
  // output rows start at non-decreasing source rows, so a window never evicts itself.
  const int nt = ty.ntaps;
  std::vector<float> ring(static_cast<std::size_t>(nt) * cin * cw);
  std::vector<int> ring_row(nt, -1);
  std::vector<float> blended(static_cast<std::size_t>(cin) * cw);
  std::vector<const float*> rows(nt), plane_rows(nt);
  float* ring_planes[3];
  const float* blended_planes[3];
  for (int c = 0; c < cin; ++c) blended_planes[c] = blended.data() + c * cw;

  for (int y = 0; y < H; ++y) {
    const int cy = y - box.pad_y;
    if (cy < 0 || cy >= ch) {
      pad_span(y, 0, W);
      continue;
    }
    const int first = ty.ofs[cy];
    for (int t = 0; t < nt; ++t) {
      const int row = first + t, slot = row % nt;
      float* base = ring.data() + static_cast<std::size_t>(slot) * cin * cw;
      if (ring_row[slot] != row) {
        for (int c = 0; c < cin; ++c) ring_planes[c] = base + c * cw;
        k.resample_row_u8(src.data + row * src.stride, cin, tx.ofs.data(), tx.w.data(),
                          tx.ntaps, cw, ring_planes);
        ring_row[slot] = row;
      }
      rows[t] = base;
    }
    // Blend each channel plane vertically (planes of one slot are contiguous).
    const float* wy = ty.w.data() + static_cast<std::size_t>(cy) * nt;
    for (int c = 0; c < cin; ++c) {
      for (int t = 0; t < nt; ++t) plane_rows[t] = rows[t] + c * cw;
      k.blend_rows_f32(plane_rows.data(), wy, nt, cw, blended.data() + c * cw);
    }
    pad_span(y, 0, box.pad_x);
    k.pack_row(blended_planes, cw, pack, at(y, box.pad_x));
    pad_span(y, box.pad_x + cw, W - box.pad_x - cw);
  }
}

}  // namespace picoface
