#include "picoface/align.h"

#include <cmath>
#include <string>
#include <vector>

#include "picoface/error.h"
#include "picoface/kernels.h"

namespace picoface {

const float kArcFaceTemplate112[10] = {
    38.2946f, 51.6963f,  // right eye (image left)
    73.5318f, 51.5014f,  // left eye
    56.0252f, 71.7366f,  // nose tip
    41.5493f, 92.3655f,  // right mouth corner
    70.7299f, 92.2041f,  // left mouth corner
};

void estimate_similarity(const float* src, const float* dst, int n, float m[6]) {
  require(n >= 2, "a similarity needs at least 2 point pairs, got " + std::to_string(n));
  double ms[2] = {0, 0}, md[2] = {0, 0};
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < 2; ++j) {
      require(std::isfinite(src[2 * i + j]) && std::isfinite(dst[2 * i + j]),
              "landmarks must be finite (got NaN or inf)");
      ms[j] += src[2 * i + j];
      md[j] += dst[2 * i + j];
    }
  }
  for (int j = 0; j < 2; ++j) {
    ms[j] /= n;
    md[j] /= n;
  }
  // In 2D, Umeyama's SVD solution without reflection reduces to the closed form
  // s*R = [[a, -b], [b, a]] with a = sum(xs . xd) / |xs|^2, b = sum(xs x xd) / |xs|^2
  // over centred points; it is the unique least-squares rotation + uniform scale.
  double dot = 0, cross = 0, var = 0;
  for (int i = 0; i < n; ++i) {
    const double sx = src[2 * i] - ms[0], sy = src[2 * i + 1] - ms[1];
    const double dx = dst[2 * i] - md[0], dy = dst[2 * i + 1] - md[1];
    dot += sx * dx + sy * dy;
    cross += sx * dy - sy * dx;
    var += sx * sx + sy * sy;
  }
  require(var > 1e-12, "landmarks are degenerate (all points coincide)");
  const double a = dot / var, b = cross / var;
  m[0] = static_cast<float>(a);
  m[1] = static_cast<float>(-b);
  m[2] = static_cast<float>(md[0] - (a * ms[0] - b * ms[1]));
  m[3] = static_cast<float>(b);
  m[4] = static_cast<float>(a);
  m[5] = static_cast<float>(md[1] - (b * ms[0] + a * ms[1]));
}

void invert_affine(const float m[6], float inv[6]) {
  const double det = double(m[0]) * m[4] - double(m[1]) * m[3];
  require(std::isfinite(det) && std::fabs(det) > 1e-12, "affine map is singular");
  const double a = m[4] / det, b = -m[1] / det, c = -m[3] / det, d = m[0] / det;
  inv[0] = static_cast<float>(a);
  inv[1] = static_cast<float>(b);
  inv[2] = static_cast<float>(-(a * m[2] + b * m[5]));
  inv[3] = static_cast<float>(c);
  inv[4] = static_cast<float>(d);
  inv[5] = static_cast<float>(-(c * m[2] + d * m[5]));
}

void align_faces(const ImageView& image, const float* landmarks, int num_faces, int num_points,
                 const float* tmpl, int tmpl_w, int tmpl_h, int size_w, int size_h,
                 std::uint8_t border, std::uint8_t* out) {
  check_image(image);
  require(num_faces >= 0, "number of faces must be non-negative");
  require(size_w >= 1 && size_h >= 1 && size_w <= 4096 && size_h <= 4096,
          "crop size must be within 1..4096");
  require(tmpl_w > 0 && tmpl_h > 0, "template frame must be positive");
  std::vector<float> target(2 * num_points);
  for (int k = 0; k < num_points; ++k) {
    target[2 * k] = tmpl[2 * k] * size_w / tmpl_w;
    target[2 * k + 1] = tmpl[2 * k + 1] * size_h / tmpl_h;
  }
  const std::size_t crop = static_cast<std::size_t>(size_w) * size_h * image.channels;
  // All transforms first: a bad face fails the call before any pixel work.
  std::vector<float> maps(6 * static_cast<std::size_t>(num_faces));
  for (int f = 0; f < num_faces; ++f) {
    float fwd[6];
    estimate_similarity(landmarks + 2 * num_points * f, target.data(), num_points, fwd);
    invert_affine(fwd, maps.data() + 6 * f);
  }
  const KernelTable& k = kernels();
  for (int f = 0; f < num_faces; ++f) {
    WarpParams p;
    p.src = image.data;
    p.src_w = image.width;
    p.src_h = image.height;
    p.channels = image.channels;
    p.src_stride = image.stride;
    for (int j = 0; j < 6; ++j) p.m[j] = maps[6 * f + j];
    p.dst = out + f * crop;
    p.dst_w = size_w;
    p.dst_h = size_h;
    p.dst_stride = static_cast<std::ptrdiff_t>(size_w) * image.channels;
    for (auto& b : p.border) b = border;
    k.warp_affine_u8(p);
  }
}

}  // namespace picoface
