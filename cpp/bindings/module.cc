// The only pybind11 code: converts arrays, releases the GIL around compute, maps errors.
// Validation with user-facing messages happens in Python; checks here guard the C++ contract.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <utility>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "picoface/align.h"
#include "picoface/cpu.h"
#include "picoface/detect.h"
#include "picoface/engine.h"
#include "picoface/error.h"
#include "picoface/kernels.h"
#include "picoface/model.h"
#include "picoface/preprocess.h"
#include "picoface/similarity.h"

namespace py = pybind11;
using namespace picoface;

namespace {

template <typename T>
using CArray = py::array_t<T, py::array::c_style | py::array::forcecast>;

template <typename T>
CArray<T> empty(std::vector<py::ssize_t> shape) {
  return CArray<T>(std::move(shape));
}

template <typename T>
CArray<T> from_vector(const std::vector<T>& v, std::vector<py::ssize_t> shape) {
  CArray<T> a(std::move(shape));
  if (!v.empty()) std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(T));
  return a;
}

void check_size(py::ssize_t got, py::ssize_t want, const char* what) {
  require(got == want, std::string(what) + ": expected " + std::to_string(want) +
                           " elements, got " + std::to_string(got));
}

// A uint8 HxWxC (or HxW) array whose pixels are contiguous within a row; rows may be strided
// (a crop of a larger image is used in place).
ImageView image_view(const py::array& a) {
  require(a.dtype().is(py::dtype::of<std::uint8_t>()), "image must be uint8");
  require(a.ndim() == 2 || a.ndim() == 3, "image must be HxW or HxWxC");
  ImageView v;
  v.height = static_cast<int>(a.shape(0));
  v.width = static_cast<int>(a.shape(1));
  v.channels = a.ndim() == 3 ? static_cast<int>(a.shape(2)) : 1;
  require(a.ndim() == 2 || a.strides(2) == 1, "image channels must be contiguous");
  require(a.strides(1) == v.channels, "image pixels must be contiguous within a row");
  require(a.strides(0) >= static_cast<py::ssize_t>(v.width) * v.channels,
          "image rows must not overlap");
  v.stride = a.strides(0);
  v.data = static_cast<const std::uint8_t*>(a.data());
  check_image(v);
  return v;
}

// Parses one of a fixed set of option names; the error lists them all.
template <typename E>
E parse_option(const std::string& s, const char* what,
               std::initializer_list<std::pair<const char*, E>> options) {
  std::string valid;
  for (const auto& [name, value] : options) {
    if (s == name) return value;
    valid += (valid.empty() ? "'" : ", '") + std::string(name) + "'";
  }
  throw Error(ErrorCode::kInvalidArgument,
              std::string(what) + " must be one of " + valid + ", got '" + s + "'");
}

Color color_from(const std::string& s) {
  return parse_option<Color>(s, "color", {{"bgr", Color::kBgr}, {"rgb", Color::kRgb}, {"gray", Color::kGray}});
}

Fit fit_from(const std::string& s) {
  return parse_option<Fit>(s, "fit", {{"stretch", Fit::kStretch}, {"keep_aspect", Fit::kKeepAspect}, {"none", Fit::kNone}});
}

Interp interp_from(const std::string& s) {
  return parse_option<Interp>(s, "interpolation", {{"auto", Interp::kAuto}, {"bilinear", Interp::kBilinear}, {"area", Interp::kArea}});
}

NmsOptions nms_options(float iou, const std::string& method, float sigma, float soft_threshold,
                       int pre_top_k, int max_keep) {
  NmsOptions o;
  o.iou_threshold = iou;
  o.method = parse_option<NmsMethod>(method, "nms method",
                                     {{"greedy", NmsMethod::kGreedy},
                                      {"soft_linear", NmsMethod::kSoftLinear},
                                      {"soft_gaussian", NmsMethod::kSoftGaussian}});
  o.soft_sigma = sigma;
  o.soft_score_threshold = soft_threshold;
  o.pre_top_k = pre_top_k;
  o.max_keep = max_keep;
  return o;
}

py::dict letterbox_dict(const Letterbox& b) {
  py::dict d;
  d["dst_w"] = b.dst_w;
  d["dst_h"] = b.dst_h;
  d["content_w"] = b.content_w;
  d["content_h"] = b.content_h;
  d["pad_x"] = b.pad_x;
  d["pad_y"] = b.pad_y;
  d["scale_x"] = b.scale_x;
  d["scale_y"] = b.scale_y;
  return d;
}

Letterbox letterbox_from(const py::dict& d) {
  Letterbox b;
  b.dst_w = d["dst_w"].cast<int>();
  b.dst_h = d["dst_h"].cast<int>();
  b.content_w = d["content_w"].cast<int>();
  b.content_h = d["content_h"].cast<int>();
  b.pad_x = d["pad_x"].cast<int>();
  b.pad_y = d["pad_y"].cast<int>();
  b.scale_x = d["scale_x"].cast<float>();
  b.scale_y = d["scale_y"].cast<float>();
  return b;
}

py::tuple detections_tuple(const Detections& d) {
  const py::ssize_t n = d.size();
  return py::make_tuple(from_vector(d.boxes, {n, 4}), from_vector(d.scores, {n}),
                        from_vector(d.landmarks, {n, d.num_points, 2}));
}

Detections detections_from(const CArray<float>& boxes, const CArray<float>& scores,
                           const CArray<float>& landmarks) {
  const py::ssize_t n = scores.size();
  check_size(boxes.size(), 4 * n, "boxes");
  require(n == 0 || landmarks.size() % (2 * n) == 0, "landmarks must be N x P x 2");
  Detections d;
  d.num_points = n == 0 ? 5 : static_cast<int>(landmarks.size() / (2 * n));
  d.boxes.assign(boxes.data(), boxes.data() + boxes.size());
  d.scores.assign(scores.data(), scores.data() + n);
  d.landmarks.assign(landmarks.data(), landmarks.data() + landmarks.size());
  return d;
}

py::list isa_names(const std::vector<Isa>& isas) {
  py::list l;
  for (Isa i : isas) l.append(isa_name(i));
  return l;
}

// The per-row bias / activation epilogue of the conv kernels, checked against `rows`.
RowBiasAct row_bias_act(const std::optional<CArray<float>>& bias,
                        const std::optional<CArray<float>>& slopes, py::ssize_t rows,
                        float neg_slope, float lo, float hi) {
  RowBiasAct e;
  if (bias) {
    check_size(bias->size(), rows, "bias");
    e.bias = bias->data();
  }
  if (slopes) {
    check_size(slopes->size(), rows, "slopes");
    e.slopes = slopes->data();
  }
  e.neg_slope = neg_slope;
  e.lo = lo;
  e.hi = hi;
  return e;
}

// RequantParams from Python ints, checked (the kernels take int8 bounds and a zero point).
RequantParams requant_params(const float* scale, int zero_point, int lo, int hi) {
  require(zero_point >= -128 && zero_point <= 127, "zero_point must be in [-128, 127]");
  require(lo >= -128 && hi <= 127 && lo <= hi, "lo and hi must satisfy -128 <= lo <= hi <= 127");
  RequantParams q;
  q.scale = scale;
  q.zero_point = zero_point;
  q.lo = static_cast<std::int8_t>(lo);
  q.hi = static_cast<std::int8_t>(hi);
  return q;
}

void bind_kernels(py::module_& m) {
  // Direct access to one ISA's kernel table, for tests and benchmarks.
  m.def("kernel_resample_row",
        [](const CArray<std::uint8_t>& src, int channels, const CArray<std::int32_t>& xofs,
           const CArray<float>& weights, int ntaps, const std::string& isa) {
          const KernelTable& k = kernels_for(isa_from_name(isa));
          const int n = static_cast<int>(xofs.size());
          require(channels >= 1 && channels <= 4 && ntaps >= 1, "bad channels or ntaps");
          check_size(weights.size(), py::ssize_t(n) * ntaps, "weights");
          for (int i = 0; i < n; ++i) {
            require(xofs.data()[i] >= 0 &&
                        (py::ssize_t(xofs.data()[i]) + ntaps) * channels <= src.size(),
                    "tap outside the source row");
          }
          auto out = empty<float>({channels, n});
          float* planes[4];
          for (int c = 0; c < channels; ++c) planes[c] = out.mutable_data() + c * n;
          k.resample_row_u8(src.data(), channels, xofs.data(), weights.data(), ntaps, n, planes);
          return out;
        });
  m.def("kernel_blend_rows",
        [](const CArray<float>& rows, const CArray<float>& weights, const std::string& isa) {
          const KernelTable& k = kernels_for(isa_from_name(isa));
          require(rows.ndim() == 2 && rows.shape(0) == weights.size(), "rows must be ntaps x n");
          const int nt = static_cast<int>(rows.shape(0)), n = static_cast<int>(rows.shape(1));
          std::vector<const float*> r(nt);
          for (int t = 0; t < nt; ++t) r[t] = rows.data() + std::size_t(t) * n;
          auto out = empty<float>({n});
          k.blend_rows_f32(r.data(), weights.data(), nt, n, out.mutable_data());
          return out;
        });
  m.def("kernel_pack_row",
        [](const CArray<float>& planes, const CArray<float>& matrix, const CArray<float>& bias,
           int out_channels, bool to_int8, float inv_scale, int zero_point, bool nhwc,
           const std::string& isa) -> py::array {
          const KernelTable& k = kernels_for(isa_from_name(isa));
          require(planes.ndim() == 2 && planes.shape(0) >= 1 && planes.shape(0) <= 3,
                  "planes must be C x n with C in 1..3");
          require(out_channels >= 1 && out_channels <= 3, "out_channels must be 1..3");
          check_size(matrix.size(), 9, "matrix");
          check_size(bias.size(), 3, "bias");
          PackParams p;
          p.in_channels = static_cast<int>(planes.shape(0));
          p.out_channels = out_channels;
          std::memcpy(p.matrix, matrix.data(), sizeof p.matrix);
          std::memcpy(p.bias, bias.data(), sizeof p.bias);
          p.to_int8 = to_int8;
          p.inv_scale = inv_scale;
          p.zero_point = zero_point;
          const int n = static_cast<int>(planes.shape(1));
          p.channel_stride = nhwc ? 1 : n;
          p.pixel_stride = nhwc ? out_channels : 1;
          const float* in[3];
          for (int c = 0; c < p.in_channels; ++c) in[c] = planes.data() + std::size_t(c) * n;
          std::vector<py::ssize_t> shape =
              nhwc ? std::vector<py::ssize_t>{n, out_channels} : std::vector<py::ssize_t>{out_channels, n};
          if (to_int8) {
            auto out = empty<std::int8_t>(shape);
            k.pack_row(in, n, p, out.mutable_data());
            return out;
          }
          auto out = empty<float>(shape);
          k.pack_row(in, n, p, out.mutable_data());
          return out;
        });
  m.def("kernel_warp_affine",
        [](const py::array& image, const CArray<float>& matrix, int dst_w, int dst_h,
           int border, const std::string& isa) {
          const KernelTable& k = kernels_for(isa_from_name(isa));
          const ImageView v = image_view(image);
          check_size(matrix.size(), 6, "matrix");
          require(dst_w >= 1 && dst_h >= 1 && dst_w <= 8192 && dst_h <= 8192, "bad crop size");
          auto out = empty<std::uint8_t>({dst_h, dst_w, v.channels});
          WarpParams p;
          p.src = v.data;
          p.src_w = v.width;
          p.src_h = v.height;
          p.channels = v.channels;
          p.src_stride = v.stride;
          std::memcpy(p.m, matrix.data(), sizeof p.m);
          p.dst = out.mutable_data();
          p.dst_w = dst_w;
          p.dst_h = dst_h;
          p.dst_stride = std::ptrdiff_t(dst_w) * v.channels;
          for (auto& b : p.border) b = static_cast<std::uint8_t>(border);
          k.warp_affine_u8(p);
          return out;
        });
  m.def("kernel_dot_f32", [](const CArray<float>& a, const CArray<float>& b, const std::string& isa) {
    const KernelTable& k = kernels_for(isa_from_name(isa));
    check_size(b.size(), a.size(), "b");
    return k.dot_f32(a.data(), b.data(), a.size());
  });
  m.def("kernel_gemm_f32",
        [](const CArray<float>& a, const CArray<float>& b, const CArray<float>& c, bool accumulate,
           const std::string& isa) {
          const KernelTable& k = kernels_for(isa_from_name(isa));
          require(a.ndim() == 2 && b.ndim() == 2 && c.ndim() == 2, "a, b and c must be 2-D");
          const py::ssize_t m = a.shape(0), kk = a.shape(1), n = b.shape(1);
          require(b.shape(0) == kk && c.shape(0) == m && c.shape(1) == n, "shapes must be (m,k), (k,n), (m,n)");
          auto out = empty<float>({m, n});
          std::copy(c.data(), c.data() + m * n, out.mutable_data());
          k.gemm_f32(std::size_t(m), std::size_t(n), std::size_t(kk), a.data(), kk, b.data(), n, out.mutable_data(), n,
                     accumulate);
          return out;
        });
  m.def("kernel_dwconv3x3_f32",
        [](const CArray<float>& src, const CArray<float>& w, int stride, int out_h, int out_w,
           const std::string& isa, float bias, float neg_slope, float lo, float hi) {
          const KernelTable& k = kernels_for(isa_from_name(isa));
          require(src.ndim() == 2 && w.size() == 9, "src must be H x W and w 3x3");
          require(stride == 1 || stride == 2, "stride must be 1 or 2");
          auto out = empty<float>({out_h, out_w});
          BiasActParams p;
          p.bias = bias;
          p.neg_slope = neg_slope;
          p.lo = lo;
          p.hi = hi;
          const int in_h = int(src.shape(0)), in_w = int(src.shape(1));
          std::vector<float> ring(3 * dw_row_floats(in_w, out_w, stride));
          dwconv3x3_plane_f32(k, src.data(), in_h, in_w, w.data(), stride, out.mutable_data(), out_h, out_w, p,
                              ring.data());
          return out;
        },
        py::arg("src"), py::arg("w"), py::arg("stride"), py::arg("out_h"), py::arg("out_w"), py::arg("isa"),
        py::arg("bias") = 0.0f, py::arg("neg_slope") = 1.0f,
        py::arg("lo") = -std::numeric_limits<float>::infinity(),
        py::arg("hi") = std::numeric_limits<float>::infinity());
  m.def("kernel_conv3x3_f32",
        [](const CArray<float>& src, const CArray<float>& w, int stride, int out_h, int out_w,
           std::optional<CArray<float>> bias, std::optional<CArray<float>> slopes, float neg_slope, float lo,
           float hi, const std::string& isa) {
          const KernelTable& k = kernels_for(isa_from_name(isa));
          require(src.ndim() == 3 && w.ndim() == 4, "src must be C x H x W and w M x C x 3 x 3");
          const py::ssize_t cin = src.shape(0), cout = w.shape(0);
          require(cin >= 1 && cin <= kConv3x3MaxInChannels, "src must have 1..4 channels");
          require(w.shape(1) == cin && w.shape(2) == 3 && w.shape(3) == 3, "w must be M x C x 3 x 3");
          require(stride == 1 || stride == 2, "stride must be 1 or 2");
          require(out_h >= 1 && out_w >= 1, "output must not be empty");
          const RowBiasAct e = row_bias_act(bias, slopes, cout, neg_slope, lo, hi);
          auto out = empty<float>({cout, py::ssize_t(out_h), py::ssize_t(out_w)});
          k.conv3x3_f32(src.data(), int(cin), int(src.shape(1)), int(src.shape(2)), w.data(), int(cout), stride,
                        out.mutable_data(), out_h, out_w, e);
          return out;
        });
  m.def("kernel_conv_gemm_f32",
        [](const CArray<float>& a, const CArray<float>& b, std::optional<CArray<float>> bias,
           std::optional<CArray<float>> slopes, float neg_slope, float lo, float hi, const std::string& isa) {
          const KernelTable& k = kernels_for(isa_from_name(isa));
          require(a.ndim() == 2 && b.ndim() == 2, "a and b must be 2-D");
          const py::ssize_t m = a.shape(0), kk = a.shape(1), n = b.shape(1);
          require(b.shape(0) == kk, "shapes must be (m,k), (k,n)");
          const RowBiasAct e = row_bias_act(bias, slopes, m, neg_slope, lo, hi);
          auto out = empty<float>({m, n});
          k.conv_gemm_f32(std::size_t(m), std::size_t(n), std::size_t(kk), a.data(), kk, b.data(), n,
                          out.mutable_data(), n, e);
          return out;
        });
  m.def("kernel_bias_act_f32",
        [](const CArray<float>& x, float bias, float neg_slope, float lo, float hi, const std::string& isa) {
          const KernelTable& k = kernels_for(isa_from_name(isa));
          auto out = empty<float>({x.size()});
          std::copy(x.data(), x.data() + x.size(), out.mutable_data());
          BiasActParams p;
          p.bias = bias;
          p.neg_slope = neg_slope;
          p.lo = lo;
          p.hi = hi;
          k.bias_act_f32(out.mutable_data(), std::size_t(x.size()), p);
          return out;
        });
  m.def("kernel_dot_s8",
        [](const CArray<std::int8_t>& a, const CArray<std::int8_t>& b, const std::string& isa) {
          const KernelTable& k = kernels_for(isa_from_name(isa));
          check_size(b.size(), a.size(), "b");
          return k.dot_s8(a.data(), b.data(), a.size());
        });
  // rows: N x S with S >= len(q); the kernel reads the first len(q) columns (row_stride S).
  m.def("kernel_dot_rows_f32", [](const CArray<float>& q, const CArray<float>& rows, const std::string& isa) {
    const KernelTable& k = kernels_for(isa_from_name(isa));
    require(rows.ndim() == 2 && rows.shape(1) >= q.size(), "rows must be N x S with S >= len(q)");
    const std::size_t n = static_cast<std::size_t>(rows.shape(0));
    auto out = empty<float>({static_cast<py::ssize_t>(n)});
    k.dot_rows_f32(q.data(), rows.data(), n, q.size(), rows.shape(1), out.mutable_data());
    return out;
  });
  m.def("kernel_dot_rows_s8",
        [](const CArray<std::int8_t>& q, const CArray<std::int8_t>& rows, const std::string& isa) {
          const KernelTable& k = kernels_for(isa_from_name(isa));
          require(rows.ndim() == 2 && rows.shape(1) >= q.size(), "rows must be N x S with S >= len(q)");
          const std::size_t n = static_cast<std::size_t>(rows.shape(0));
          auto out = empty<std::int32_t>({static_cast<py::ssize_t>(n)});
          k.dot_rows_s8(q.data(), rows.data(), n, q.size(), rows.shape(1), out.mutable_data());
          return out;
        });
  m.def("kernel_requant_s32_s8",
        [](const CArray<std::int32_t>& x, float scale, int zero_point, int lo, int hi, const std::string& isa) {
          const KernelTable& k = kernels_for(isa_from_name(isa));
          const RequantParams q = requant_params(&scale, zero_point, lo, hi);
          auto out = empty<std::int8_t>({x.size()});
          k.requant_s32_s8(x.data(), std::size_t(x.size()), q, out.mutable_data());
          return out;
        },
        py::arg("x"), py::arg("scale"), py::arg("zero_point"), py::arg("lo") = -128, py::arg("hi") = 127,
        py::arg("isa") = "scalar");
  m.def("kernel_conv_gemm_s8",
        [](const CArray<std::int8_t>& a, const CArray<std::int8_t>& b, std::optional<CArray<std::int32_t>> bias,
           const CArray<float>& scale, int zero_point, int lo, int hi, const std::string& isa) {
          const KernelTable& k = kernels_for(isa_from_name(isa));
          require(a.ndim() == 2 && b.ndim() == 2, "a and b must be 2-D");
          const py::ssize_t m = a.shape(0), kk = a.shape(1), n = b.shape(1);
          require(b.shape(0) == kk, "shapes must be (m,k), (k,n)");
          require(kk <= 65536, "k must be at most 65536");
          check_size(scale.size(), m, "scale");
          if (bias) check_size(bias->size(), m, "bias");
          const RequantParams q = requant_params(scale.data(), zero_point, lo, hi);
          auto out = empty<std::int8_t>({m, n});
          k.conv_gemm_s8(std::size_t(m), std::size_t(n), std::size_t(kk), a.data(), kk, b.data(), n,
                         bias ? bias->data() : nullptr, out.mutable_data(), n, q);
          return out;
        },
        py::arg("a"), py::arg("b"), py::arg("bias"), py::arg("scale"), py::arg("zero_point"), py::arg("lo") = -128,
        py::arg("hi") = 127, py::arg("isa") = "scalar");
  m.def("kernel_dwconv3x3_s8",
        [](const CArray<std::int8_t>& src, const CArray<std::int8_t>& w, std::int32_t bias, int stride, int out_h,
           int out_w, int z_in, float scale, int zero_point, int lo, int hi, const std::string& isa) {
          const KernelTable& k = kernels_for(isa_from_name(isa));
          require(src.ndim() == 2 && w.size() == 9, "src must be H x W and w 3x3");
          require(stride == 1 || stride == 2, "stride must be 1 or 2");
          require(z_in >= -128 && z_in <= 127, "z_in must be in [-128, 127]");
          const RequantParams q = requant_params(&scale, zero_point, lo, hi);
          auto out = empty<std::int8_t>({out_h, out_w});
          const int in_h = int(src.shape(0)), in_w = int(src.shape(1));
          std::vector<std::int8_t> ring(4 * dw_row_bytes(in_w, out_w, stride));
          dwconv3x3_plane_s8(k, src.data(), in_h, in_w, w.data(), bias, stride, static_cast<std::int8_t>(z_in),
                             out.mutable_data(), out_h, out_w, q, ring.data());
          return out;
        },
        py::arg("src"), py::arg("w"), py::arg("bias"), py::arg("stride"), py::arg("out_h"), py::arg("out_w"),
        py::arg("z_in"), py::arg("scale"), py::arg("zero_point"), py::arg("lo") = -128, py::arg("hi") = 127,
        py::arg("isa") = "scalar");
}

void bind_pipeline(py::module_& m) {
  m.def("letterbox", [](int src_w, int src_h, int dst_w, int dst_h, const std::string& fit) {
    return letterbox_dict(make_letterbox(src_w, src_h, dst_w, dst_h, fit_from(fit)));
  });
  m.def("preprocess",
        [](const py::array& image, const py::dict& box, const std::string& in_color,
           const std::string& out_color, std::vector<float> mean, std::vector<float> stdev,
           const std::string& layout, const std::string& dtype, float scale, int zero_point,
           const std::string& interp, std::vector<float> pad_value) -> py::array {
          const ImageView v = image_view(image);
          const Letterbox b = letterbox_from(box);
          PreprocessSpec s;
          s.in_color = color_from(in_color);
          s.out_color = color_from(out_color);
          require(mean.size() == 3 && stdev.size() == 3 && pad_value.size() == 3,
                  "mean, std and pad_value need 3 values");
          for (int c = 0; c < 3; ++c) {
            s.mean[c] = mean[c];
            s.std[c] = stdev[c];
            s.pad_value[c] = pad_value[c];
          }
          require(layout == "nchw" || layout == "nhwc", "layout must be 'nchw' or 'nhwc'");
          require(dtype == "float32" || dtype == "int8", "dtype must be 'float32' or 'int8'");
          s.layout = layout == "nchw" ? Layout::kNchw : Layout::kNhwc;
          s.to_int8 = dtype == "int8";
          s.scale = scale;
          s.zero_point = zero_point;
          s.interp = interp_from(interp);
          const py::ssize_t c = output_channels(s);
          std::vector<py::ssize_t> shape = s.layout == Layout::kNchw
                                               ? std::vector<py::ssize_t>{c, b.dst_h, b.dst_w}
                                               : std::vector<py::ssize_t>{b.dst_h, b.dst_w, c};
          py::array out = s.to_int8 ? py::array(empty<std::int8_t>(shape))
                                    : py::array(empty<float>(shape));
          void* dst = out.mutable_data();
          {
            py::gil_scoped_release release;
            preprocess(v, b, s, dst);
          }
          return out;
        });
  m.def("anchor_boxes", [](int w, int h, std::vector<int> strides,
                           std::vector<std::vector<float>> sizes, float offset) {
    auto v = anchor_boxes(w, h, strides, sizes, offset);
    return from_vector(v, {py::ssize_t(v.size() / 4), 4});
  });
  m.def("anchor_points", [](int w, int h, std::vector<int> strides, int per_cell, float offset) {
    auto v = anchor_points(w, h, strides, per_cell, offset);
    return from_vector(v, {py::ssize_t(v.size() / 3), 3});
  });
  m.def("decode_yunet", [](const CArray<float>& points, const CArray<float>& cls,
                           const CArray<float>& obj, const CArray<float>& bbox,
                           const CArray<float>& kps, int num_points, float threshold) {
    const py::ssize_t n = cls.size();
    check_size(points.size(), 3 * n, "points");
    check_size(obj.size(), n, "obj");
    check_size(bbox.size(), 4 * n, "bbox");
    check_size(kps.size(), 2 * num_points * n, "kps");
    Detections d;
    {
      py::gil_scoped_release release;
      decode_yunet(points.data(), cls.data(), obj.data(), bbox.data(), kps.data(),
                   static_cast<int>(n), num_points, threshold, &d);
    }
    return detections_tuple(d);
  });
  m.def("decode_distance", [](const CArray<float>& points, const CArray<float>& score,
                              const CArray<float>& dist, std::optional<CArray<float>> kps,
                              int num_points, float threshold) {
    const py::ssize_t n = score.size();
    check_size(points.size(), 3 * n, "points");
    check_size(dist.size(), 4 * n, "distances");
    if (kps) check_size(kps->size(), 2 * num_points * n, "kps");
    Detections d;
    {
      py::gil_scoped_release release;
      decode_distance(points.data(), score.data(), dist.data(), kps ? kps->data() : nullptr,
                      static_cast<int>(n), num_points, threshold, &d);
    }
    return detections_tuple(d);
  });
  m.def("decode_anchor_deltas",
        [](const CArray<float>& anchors, const CArray<float>& score, const CArray<float>& loc,
           std::optional<CArray<float>> landm, int num_points, float v0, float v1,
           float threshold) {
          const py::ssize_t n = score.size();
          check_size(anchors.size(), 4 * n, "anchors");
          check_size(loc.size(), 4 * n, "loc");
          if (landm) check_size(landm->size(), 2 * num_points * n, "landmarks");
          Detections d;
          {
            py::gil_scoped_release release;
            decode_anchor_deltas(anchors.data(), score.data(), loc.data(),
                                 landm ? landm->data() : nullptr, static_cast<int>(n),
                                 num_points, v0, v1, threshold, &d);
          }
          return detections_tuple(d);
        });
  m.def("decode_unit_boxes", [](const CArray<float>& score, const CArray<float>& boxes,
                                int num_points, float scale_x, float scale_y, float threshold) {
    const py::ssize_t n = score.size();
    check_size(boxes.size(), 4 * n, "boxes");
    Detections d;
    {
      py::gil_scoped_release release;
      decode_unit_boxes(score.data(), boxes.data(), static_cast<int>(n), num_points, scale_x,
                        scale_y, threshold, &d);
    }
    return detections_tuple(d);
  });
  m.def("nms", [](const CArray<float>& boxes, const CArray<float>& scores, float iou,
                  const std::string& method, float sigma, float soft_threshold, int pre_top_k,
                  int max_keep) {
    const py::ssize_t n = scores.size();
    check_size(boxes.size(), 4 * n, "boxes");
    const NmsOptions o = nms_options(iou, method, sigma, soft_threshold, pre_top_k, max_keep);
    std::vector<float> s(scores.data(), scores.data() + n);
    std::vector<int> keep;
    {
      py::gil_scoped_release release;
      keep = nms(boxes.data(), s.data(), static_cast<int>(n), o);
    }
    return py::make_tuple(from_vector(keep, {py::ssize_t(keep.size())}),
                          from_vector(s, {n}));
  });
  m.def("finish_detections",
        [](const CArray<float>& boxes, const CArray<float>& scores, const CArray<float>& landmarks,
           const py::dict& box, float iou, const std::string& method, float sigma,
           float soft_threshold, int pre_top_k, int max_keep) {
          Detections d = detections_from(boxes, scores, landmarks);
          const Letterbox b = letterbox_from(box);
          const NmsOptions o = nms_options(iou, method, sigma, soft_threshold, pre_top_k, max_keep);
          Detections out;
          {
            py::gil_scoped_release release;
            const std::vector<int> keep = nms(d.boxes.data(), d.scores.data(), d.size(), o);
            out = select_and_unletterbox(d, keep, b);
          }
          return detections_tuple(out);
        });
  m.def("estimate_similarity", [](const CArray<float>& src, const CArray<float>& dst) {
    require(src.ndim() == 2 && src.shape(1) == 2, "src must be N x 2");
    check_size(dst.size(), src.size(), "dst");
    auto out = empty<float>({2, 3});
    estimate_similarity(src.data(), dst.data(), static_cast<int>(src.shape(0)), out.mutable_data());
    return out;
  });
  m.def("align", [](const py::array& image, const CArray<float>& landmarks,
                    const CArray<float>& tmpl, int tmpl_w, int tmpl_h, int size_w, int size_h,
                    int border) {
    const ImageView v = image_view(image);
    require(landmarks.ndim() == 3 && landmarks.shape(2) == 2, "landmarks must be N x P x 2");
    require(tmpl.ndim() == 2 && tmpl.shape(1) == 2 && tmpl.shape(0) == landmarks.shape(1),
            "template must have as many points as the landmarks");
    const int n = static_cast<int>(landmarks.shape(0)), np = static_cast<int>(landmarks.shape(1));
    auto out = empty<std::uint8_t>({n, size_h, size_w, v.channels});
    std::uint8_t* dst = out.mutable_data();
    {
      py::gil_scoped_release release;
      align_faces(v, landmarks.data(), n, np, tmpl.data(), tmpl_w, tmpl_h, size_w, size_h,
                  static_cast<std::uint8_t>(border), dst);
    }
    return out;
  });
  m.def("cosine_matrix", [](const CArray<float>& a, const CArray<float>& b) {
    require(a.ndim() == 2 && b.ndim() == 2 && a.shape(1) == b.shape(1),
            "cosine_matrix takes M x D and N x D");
    const int ma = static_cast<int>(a.shape(0)), nb = static_cast<int>(b.shape(0)),
              d = static_cast<int>(a.shape(1));
    auto out = empty<float>({ma, nb});
    float* dst = out.mutable_data();
    {
      py::gil_scoped_release release;
      cosine_matrix(a.data(), ma, b.data(), nb, d, dst);
    }
    return out;
  });
  m.def("dot_matrix_s8", [](const CArray<std::int8_t>& a, const CArray<std::int8_t>& b) {
    require(a.ndim() == 2 && b.ndim() == 2 && a.shape(1) == b.shape(1),
            "dot_matrix_s8 takes M x D and N x D");
    const int ma = static_cast<int>(a.shape(0)), nb = static_cast<int>(b.shape(0)),
              d = static_cast<int>(a.shape(1));
    auto out = empty<std::int32_t>({ma, nb});
    std::int32_t* dst = out.mutable_data();
    {
      py::gil_scoped_release release;
      dot_matrix_s8(a.data(), ma, b.data(), nb, d, dst);
    }
    return out;
  });
  m.def("quantize_rows_s8", [](const CArray<float>& x) {
    require(x.ndim() == 2, "quantize_rows_s8 takes N x D");
    const int n = static_cast<int>(x.shape(0)), d = static_cast<int>(x.shape(1));
    auto q = empty<std::int8_t>({n, d});
    auto scale = empty<float>({n});
    std::int8_t* qd = q.mutable_data();
    float* sd = scale.mutable_data();
    {
      py::gil_scoped_release release;
      quantize_rows_s8(x.data(), n, d, qd, sd);
    }
    return py::make_tuple(q, scale);
  });
  m.def("gallery_top_k",
        [](const py::object& rows, const py::object& scale, const CArray<std::int32_t>& owner,
           int identities, const CArray<float>& queries, int k) {
          require(queries.ndim() == 2, "queries must be M x D");
          require(owner.ndim() == 1, "owner must be a vector");
          GalleryView g;
          CArray<float> f32;
          CArray<std::int8_t> s8;
          CArray<float> sc;
          py::array r = py::array::ensure(rows);
          require(r && r.ndim() == 2, "rows must be N x D");
          if (r.dtype().is(py::dtype::of<std::int8_t>())) {
            s8 = CArray<std::int8_t>::ensure(r);
            sc = CArray<float>::ensure(scale);
            require(sc && sc.ndim() == 1 && sc.shape(0) == r.shape(0), "scale must have N entries");
            g.s8 = s8.data();
            g.scale = sc.data();
          } else {
            f32 = CArray<float>::ensure(r);
            require(static_cast<bool>(f32), "rows must be float32 or int8");
            g.f32 = f32.data();
          }
          g.rows = static_cast<int>(r.shape(0));
          g.dim = static_cast<int>(r.shape(1));
          g.identities = identities;
          g.owner = owner.data();
          require(queries.shape(1) == r.shape(1), "queries and rows must have the same D");
          check_size(owner.shape(0), r.shape(0), "owner");
          for (py::ssize_t j = 0; j < owner.shape(0); ++j) {
            require(owner.data()[j] >= 0 && owner.data()[j] < identities,
                    "owner entries must lie in 0..identities-1");
          }
          const int m = static_cast<int>(queries.shape(0));
          auto ids = empty<std::int32_t>({m, k});
          auto scores = empty<float>({m, k});
          std::int32_t* id = ids.mutable_data();
          float* sd = scores.mutable_data();
          {
            py::gil_scoped_release release;
            gallery_top_k(g, queries.data(), m, k, id, sd);
          }
          return py::make_tuple(ids, scores);
        });
  py::list tmpl;
  for (float v : kArcFaceTemplate112) tmpl.append(v);
  m.attr("ARCFACE_TEMPLATE_112") = tmpl;
}

py::object value_to_py(const Value& v) {
  switch (v.type) {
    case Value::Type::kInt: return py::int_(v.i);
    case Value::Type::kFloat: return py::float_(v.f);
    case Value::Type::kString: return py::str(v.s);
    case Value::Type::kInts: return py::cast(v.ints);
    case Value::Type::kFloats: return py::cast(v.floats);
    case Value::Type::kStrings: return py::cast(v.strings);
  }
  return py::none();
}

py::dict attributes_to_py(const Attributes& a) {
  py::dict d;
  for (const auto& [k, v] : a.items) d[py::str(k)] = value_to_py(v);
  return d;
}

// Everything the file declares, validated by the C++ loader (the only parser of the format).
py::array array_of(const TensorView& v);

py::dict model_summary(const Model& m) {
  py::dict d;
  d["version"] = m.version();
  d["metadata"] = attributes_to_py(m.metadata());
  py::list tensors;
  for (const Tensor& t : m.tensors()) {
    py::dict td;
    td["name"] = t.name;
    td["dtype"] = dtype_name(t.dtype);
    td["shape"] = t.shape;
    td["constant"] = t.constant;
    td["nbytes"] = t.nbytes;
    if (t.quantized) {
      td["scales"] = t.quant.scales;
      td["zero_points"] = t.quant.zero_points;
      td["axis"] = t.quant.axis;
    }
    tensors.append(td);
  }
  d["tensors"] = tensors;
  py::list ops;
  for (const Op& op : m.ops()) {
    py::dict od;
    od["type"] = op.type;
    od["inputs"] = op.inputs;
    od["outputs"] = op.outputs;
    od["attrs"] = attributes_to_py(op.attrs);
    ops.append(od);
  }
  d["ops"] = ops;
  d["inputs"] = m.inputs();
  d["outputs"] = m.outputs();
  d["parameters"] = m.parameter_count();
  return d;
}

void bind_model(py::module_& m) {
  m.def("model_summary_from_bytes", [](const py::bytes& data) {
    std::string s = data;
    std::shared_ptr<const Model> model;
    {
      py::gil_scoped_release release;
      model = Model::from_bytes(std::vector<std::uint8_t>(s.begin(), s.end()));
    }
    return model_summary(*model);
  });
  m.def("model_summary_from_file", [](const std::string& path) {
    std::shared_ptr<const Model> model;
    {
      py::gil_scoped_release release;
      model = Model::from_file(path);
    }
    return model_summary(*model);
  });
  // Constant tensors of a model file as numpy arrays (copies), by name: what a graph rewrite
  // (picoface.quantize) needs besides the summary.
  m.def("model_constants_from_bytes", [](const py::bytes& data) {
    std::string s = data;
    std::shared_ptr<const Model> model;
    {
      py::gil_scoped_release release;
      model = Model::from_bytes(std::vector<std::uint8_t>(s.begin(), s.end()));
    }
    py::dict d;
    for (const Tensor& t : model->tensors()) {
      if (!t.constant) continue;
      TensorView v;
      v.dtype = t.dtype;
      v.shape = t.shape;
      v.data = t.data;
      d[py::str(t.name)] = array_of(v);
    }
    return d;
  });
  // Any bytes-like object, read in place; `value` continues a running CRC (as zlib.crc32).
  m.def("crc32", [](const py::buffer& data, std::uint32_t value) {
    const py::buffer_info info = data.request();
    require(info.ndim <= 1 && (info.ndim == 0 || info.strides[0] == info.itemsize),
            "crc32 takes contiguous bytes");
    const auto* p = static_cast<const std::uint8_t*>(info.ptr);
    const std::size_t n = static_cast<std::size_t>(info.size * info.itemsize);
    py::gil_scoped_release release;
    return crc32(p, n, value);
  }, py::arg("data"), py::arg("value") = 0u);
  m.attr("MODEL_FORMAT_VERSION") = kModelFormatVersion;
}

// An Engine with the lock that keeps two Python threads from running it at once (the GIL is
// released during run()).
struct PyEngine {
  std::unique_ptr<Engine> engine;
  std::mutex mutex;
};

DType dtype_of(const py::array& a) {
  if (a.dtype().is(py::dtype::of<float>())) return DType::kF32;
  if (a.dtype().is(py::dtype::of<std::int8_t>())) return DType::kI8;
  if (a.dtype().is(py::dtype::of<std::uint8_t>())) return DType::kU8;
  if (a.dtype().is(py::dtype::of<std::int32_t>())) return DType::kI32;
  if (a.dtype().is(py::dtype::of<std::int64_t>())) return DType::kI64;
  throw Error(ErrorCode::kInvalidArgument,
              "engine inputs must be float32, int8, uint8, int32 or int64 arrays, got " +
                  std::string(py::str(a.dtype())));
}

py::array array_of(const TensorView& v) {
  std::vector<py::ssize_t> shape(v.shape.begin(), v.shape.end());
  py::dtype dt;
  switch (v.dtype) {
    case DType::kF32: dt = py::dtype::of<float>(); break;
    case DType::kI8: dt = py::dtype::of<std::int8_t>(); break;
    case DType::kU8: dt = py::dtype::of<std::uint8_t>(); break;
    case DType::kI32: dt = py::dtype::of<std::int32_t>(); break;
    case DType::kI64: dt = py::dtype::of<std::int64_t>(); break;
  }
  py::array a(dt, shape);
  if (a.nbytes() > 0) std::memcpy(a.mutable_data(), v.data, a.nbytes());
  return a;
}

// Python engine inputs as views, keeping the (possibly copied) arrays alive.
struct EngineInputs {
  std::vector<py::array> keep;
  std::vector<TensorView> views;
  explicit EngineInputs(const std::vector<py::object>& inputs) {
    for (const py::object& o : inputs) {
      require(py::isinstance<py::array>(o), "engine inputs must be numpy arrays");
      py::array a = py::array::ensure(o, py::array::c_style);
      require(static_cast<bool>(a), "engine input could not be made C-contiguous");
      TensorView v;
      v.dtype = dtype_of(a);
      v.shape.assign(a.shape(), a.shape() + a.ndim());
      v.data = a.data();
      views.push_back(std::move(v));
      keep.push_back(std::move(a));
    }
  }
};

void bind_engine(py::module_& m) {
  py::class_<PyEngine>(m, "Engine")
      .def(py::init([](const py::object& model, int threads) {
             std::shared_ptr<const Model> loaded;
             if (py::isinstance<py::bytes>(model)) {
               std::string s = model.cast<py::bytes>();
               py::gil_scoped_release release;
               loaded = Model::from_bytes(std::vector<std::uint8_t>(s.begin(), s.end()));
             } else {
               const std::string path = py::str(model);
               py::gil_scoped_release release;
               loaded = Model::from_file(path);
             }
             auto e = std::make_unique<PyEngine>();
             EngineOptions options;
             options.threads = threads;
             e->engine = std::make_unique<Engine>(std::move(loaded), options);
             return e;
           }),
           py::arg("model"), py::arg("threads") = 1)
      .def("run",
           [](PyEngine& self, const std::vector<py::object>& inputs) {
             EngineInputs in(inputs);
             py::gil_scoped_release release;
             std::lock_guard<std::mutex> lock(self.mutex);
             const std::vector<TensorView> outs = self.engine->run(in.views);
             // Outputs point into the engine's arena: copy them while the lock is held.
             py::gil_scoped_acquire acquire;
             py::list result;
             for (const TensorView& v : outs) result.append(array_of(v));
             return result;
           },
           py::arg("inputs"))
      .def("profile",
           [](PyEngine& self, const std::vector<py::object>& inputs) {
             EngineInputs in(inputs);
             std::vector<double> seconds;
             std::vector<std::size_t> ops;
             {
               py::gil_scoped_release release;
               std::lock_guard<std::mutex> lock(self.mutex);
               self.engine->run(in.views, &seconds);
               ops = self.engine->step_ops();
             }
             const Model& mo = self.engine->model();
             py::list result;
             for (std::size_t i = 0; i < ops.size(); ++i) {
               const Op& op = mo.ops()[ops[i]];
               result.append(py::make_tuple(ops[i], op.type, mo.tensors()[op.outputs[0]].name, seconds[i]));
             }
             return result;
           },
           py::arg("inputs"),
           "Runs once and returns (op index, op type, first output name, seconds) per executed op.")
      .def_property_readonly("macs", [](PyEngine& self) {
        py::gil_scoped_release release;  // never wait for the lock while holding the GIL
        std::lock_guard<std::mutex> lock(self.mutex);
        return self.engine->macs();
      })
      .def_property_readonly("input_names", [](PyEngine& self) {
        std::vector<std::string> names;
        const Model& mo = self.engine->model();
        for (std::int32_t id : mo.inputs()) names.push_back(mo.tensors()[id].name);
        return names;
      })
      .def_property_readonly("output_names", [](PyEngine& self) {
        std::vector<std::string> names;
        const Model& mo = self.engine->model();
        for (std::int32_t id : mo.outputs()) names.push_back(mo.tensors()[id].name);
        return names;
      });
  m.def("engine_op_types", [] { return engine_op_types(); });
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "picoface C++ core (internal; use the picoface package API)";
  // Resolve PICOFACE_ISA now, so a bad value fails the import with its message rather than
  // the first call.
  default_isa();
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      switch (e.code()) {
        case ErrorCode::kInvalidArgument: PyErr_SetString(PyExc_ValueError, e.what()); return;
        case ErrorCode::kNotFound: PyErr_SetString(PyExc_FileNotFoundError, e.what()); return;
        case ErrorCode::kUnsupported:
        case ErrorCode::kInternal: PyErr_SetString(PyExc_RuntimeError, e.what()); return;
      }
    }
  });
  m.def("build_info", [] {
    py::dict d;
    d["compiler"] = PICOFACE_COMPILER;
    d["pybind11"] = std::to_string(PYBIND11_VERSION_MAJOR) + "." +
                    std::to_string(PYBIND11_VERSION_MINOR) + "." +
                    std::to_string(PYBIND11_VERSION_PATCH);
    d["isa_compiled"] = isa_names(compiled_isas());
    d["isa_supported"] = isa_names(supported_isas());
    d["isa_selected"] = isa_name(active_isa());
    const CpuFeatures& f = cpu_features();
    py::dict feats;
    feats["sse41"] = f.sse41;
    feats["avx2"] = f.avx2;
    feats["fma"] = f.fma;
    feats["avx512f"] = f.avx512f;
    feats["avx512dq"] = f.avx512dq;
    feats["avx512bw"] = f.avx512bw;
    feats["avx512vl"] = f.avx512vl;
    feats["avx512vnni"] = f.avx512vnni;
    feats["neon"] = f.neon;
    feats["dotprod"] = f.dotprod;
    d["cpu_features"] = feats;
    return d;
  });
  m.def("set_isa", [](const std::string& name) { force_isa(isa_from_name(name)); });
  m.def("get_isa", [] { return std::string(isa_name(active_isa())); });
  m.def("supported_isas", [] { return isa_names(supported_isas()); });
  bind_kernels(m);
  bind_pipeline(m);
  bind_model(m);
  bind_engine(m);
}
