// The int8 ops of the native engine besides QLinearConv (engine_conv.cc): the elementwise,
// data-movement, pooling and fully connected steps that keep a quantised graph in int8
// between its convolutions. All follow picoface's scheme (picoface/kernels.h, above
// RequantParams): activations int8 asymmetric per tensor, weights int8 symmetric, and every
// change of parameters goes through one of the kernels' requantisation rules, so the
// integers are the same on every ISA.
//
// Names and input orders are onnxruntime's com.microsoft contrib ops (QLinearAdd,
// QLinearConcat, QLinearAveragePool, QLinearGlobalAveragePool, QGemm), restricted to what
// the scheme produces: int8 tensors, per-tensor scales and zero points given as constants.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine_ops.h"
#include "picoface/kernels.h"
#include "thread_pool.h"

namespace picoface {
namespace engine {
namespace {

// One tensor's per-tensor quantisation parameters, read from constant scale / zero-point inputs.
struct QParam {
  float scale = 1.0f;
  std::int32_t zero_point = 0;
};

QParam read_qparam(const std::string& type, const std::vector<PlanInput>& in, std::size_t scale_at,
                   std::size_t zp_at, const std::string& what) {
  if (zp_at >= in.size() || !in[scale_at].present() || !in[zp_at].present()) {
    fail(type, what + "'s scale and zero point are required");
  }
  const PlanInput& s = in[scale_at];
  const PlanInput& z = in[zp_at];
  if (s.desc->dtype != DType::kF32 || z.desc->dtype != DType::kI8) {
    fail(type, what + "'s scale must be float32 and zero point int8, got " + dtype_name(s.desc->dtype) + " and " +
                   dtype_name(z.desc->dtype));
  }
  if (!s.value || !z.value) unsupported(type, what + "'s scale and zero point must be constants");
  if (elements(s.desc->shape) != 1 || elements(z.desc->shape) != 1) unsupported(type, what + " must be quantised per tensor");
  QParam p;
  p.scale = *static_cast<const float*>(s.value);
  p.zero_point = *static_cast<const std::int8_t*>(z.value);
  if (!(p.scale > 0.0f) || !std::isfinite(p.scale)) fail(type, what + "'s scale must be finite and > 0");
  return p;
}

void need_i8(const std::string& type, const PlanInput& in, const std::string& what) {
  if (!in.present()) fail(type, what + " is required");
  if (in.desc->dtype != DType::kI8) fail(type, what + " must be int8, got " + std::string(dtype_name(in.desc->dtype)));
}

// The add_s8 ratio s_in / s_out, within the kernel's contract.
float ratio(const std::string& type, float s_in, float s_out) {
  const float r = s_in / s_out;
  if (!(r <= 65536.0f)) unsupported(type, "an input scale more than 65536 times the output scale");
  return r;
}

// Elements per parallel task of the elementwise ops: large enough that a task's overhead
// is noise, small enough that a 640x480 feature map splits over a few workers.
constexpr std::int64_t kChunk = 1 << 16;

// com.microsoft QLinearAdd (A, A_scale, A_zero_point, B, B_scale, B_zero_point, C_scale,
// C_zero_point) on int8 tensors of one shape, through add_s8; the `activation` extension
// takes relu, applied as the lower bound C_zero_point.
class QLinearAdd : public OpKernel {
 public:
  explicit QLinearAdd(const Op& op) : type_(op.type) {
    const std::string act = op.attrs.find("activation") ? op.attrs.get_string("activation") : "none";
    if (act != "none" && act != "relu") unsupported(type_, "fused activation '" + act + "' (int8 Add takes relu)");
    relu_ = act == "relu";
  }
  void plan(const std::vector<PlanInput>& in, std::vector<TensorDesc>& out) override {
    if (in.size() < 8) fail(type_, "needs A, A_scale, A_zero_point, B, B_scale, B_zero_point, C_scale, C_zero_point");
    need_i8(type_, in[0], "A");
    need_i8(type_, in[3], "B");
    if (in[0].desc->shape != in[3].desc->shape) {
      unsupported(type_, "broadcasting: A " + shape_str(in[0].desc->shape) + ", B " + shape_str(in[3].desc->shape));
    }
    const QParam a = read_qparam(type_, in, 1, 2, "A");
    const QParam b = read_qparam(type_, in, 4, 5, "B");
    const QParam c = read_qparam(type_, in, 6, 7, "C");
    p_ = AddParams{};
    p_.a_scale = ratio(type_, a.scale, c.scale);
    p_.b_scale = ratio(type_, b.scale, c.scale);
    p_.a_zero_point = a.zero_point;
    p_.b_zero_point = b.zero_point;
    p_.zero_point = c.zero_point;
    if (relu_) p_.lo = static_cast<std::int8_t>(c.zero_point);
    n_ = elements(in[0].desc->shape);
    out[0] = {DType::kI8, in[0].desc->shape};
  }
  void run(const void* const* in, void* const* out, void*) override {
    const auto* a = static_cast<const std::int8_t*>(in[0]);
    const auto* b = static_cast<const std::int8_t*>(in[3]);
    auto* y = static_cast<std::int8_t*>(out[0]);
    const KernelTable& kt = kernels();
    parallel_for((n_ + kChunk - 1) / kChunk, [&](std::int64_t t, int) {
      const std::int64_t i0 = t * kChunk;
      kt.add_s8(a + i0, b + i0, static_cast<std::size_t>(std::min(kChunk, n_ - i0)), p_, y + i0);
    });
  }

 private:
  std::string type_;
  bool relu_ = false;
  AddParams p_;
  std::int64_t n_ = 0;
};

// com.microsoft QLinearConcat (Y_scale, Y_zero_point, then X, X_scale, X_zero_point per
// input) of int8 tensors: an input with Y's parameters is copied, any other requantised to
// them by add_s8 with a zero second scale.
class QLinearConcat : public OpKernel {
 public:
  explicit QLinearConcat(const Op& op) : type_(op.type), axis_(op.attrs.get_int("axis")) {}
  void plan(const std::vector<PlanInput>& in, std::vector<TensorDesc>& out) override {
    if (in.size() < 5 || (in.size() - 2) % 3 != 0) {
      fail(type_, "needs Y_scale, Y_zero_point and (X, X_scale, X_zero_point) per input, got " +
                      std::to_string(in.size()) + " inputs");
    }
    const QParam y = read_qparam(type_, in, 0, 1, "Y");
    const std::size_t count = (in.size() - 2) / 3;
    need_i8(type_, in[2], "input 0");
    const Shape& s0 = in[2].desc->shape;
    const std::int64_t axis = normalize_axis(type_, axis_, static_cast<std::int64_t>(s0.size()));
    Shape r = s0;
    r[axis] = 0;
    outer_ = 1;
    for (std::int64_t d = 0; d < axis; ++d) outer_ *= s0[d];
    parts_.clear();
    for (std::size_t i = 0; i < count; ++i) {
      const std::string what = "input " + std::to_string(i);
      need_i8(type_, in[2 + 3 * i], what);
      const Shape& s = in[2 + 3 * i].desc->shape;
      bool ok = s.size() == s0.size();
      for (std::size_t d = 0; ok && d < s.size(); ++d) ok = static_cast<std::int64_t>(d) == axis || s[d] == s0[d];
      if (!ok) fail(type_, "inputs " + shape_str(s0) + " and " + shape_str(s) + " do not concatenate on axis " + std::to_string(axis));
      r[axis] += s[axis];
      Part part;
      part.chunk = 1;
      for (std::size_t d = axis; d < s.size(); ++d) part.chunk *= s[d];
      const QParam x = read_qparam(type_, in, 3 + 3 * i, 4 + 3 * i, what);
      part.copy = x.scale == y.scale && x.zero_point == y.zero_point;
      part.p.a_scale = ratio(type_, x.scale, y.scale);
      part.p.b_scale = 0.0f;
      part.p.a_zero_point = x.zero_point;
      part.p.zero_point = y.zero_point;
      parts_.push_back(part);
    }
    out[0] = {DType::kI8, r};
  }
  void run(const void* const* in, void* const* out, void*) override {
    auto* dst = static_cast<std::int8_t*>(out[0]);
    const KernelTable& kt = kernels();
    for (std::int64_t o = 0; o < outer_; ++o) {
      for (std::size_t i = 0; i < parts_.size(); ++i) {
        const Part& part = parts_[i];
        const auto* src = static_cast<const std::int8_t*>(in[2 + 3 * i]) + o * part.chunk;
        if (part.copy) {
          std::memcpy(dst, src, static_cast<std::size_t>(part.chunk));
        } else {
          kt.add_s8(src, src, static_cast<std::size_t>(part.chunk), part.p, dst);
        }
        dst += part.chunk;
      }
    }
  }

 private:
  struct Part {
    std::int64_t chunk = 0;  // elements per outer index
    bool copy = false;
    AddParams p;
  };
  std::string type_;
  std::int64_t axis_;
  std::int64_t outer_ = 1;
  std::vector<Part> parts_;
};

// com.microsoft QLinearAveragePool (X, x_scale, x_zero_point, y_scale, y_zero_point) with no
// padding, and QLinearGlobalAveragePool (same inputs) on NCHW int8: each window's sum of
// (x - x_zero_point) is exact in int32, then requantised by requant_s32_s8 with the scale
// x_scale / (y_scale * n), n the window's values (one float32 product and one division,
// made at plan time). ceil_mode's last, partial windows average the values they cover (as
// onnxruntime does without padding), so a row or column of them has a scale of its own.
class QLinearAvgPool : public OpKernel {
 public:
  QLinearAvgPool(const Op& op, bool global) : type_(op.type), global_(global) {
    if (global) return;
    auto ints = [&](const char* key) { return op.attrs.find(key) ? op.attrs.get_ints(key) : std::vector<std::int64_t>{}; };
    kernel_ = ints("kernel_shape");
    strides_ = ints("strides");
    for (std::int64_t p : ints("pads")) {
      if (p != 0) unsupported(type_, "padding (the int8 pool averages windows inside the input only)");
    }
    ceil_ = op.attrs.find("ceil_mode") && op.attrs.get_int("ceil_mode") != 0;
    if (op.attrs.find("auto_pad") && op.attrs.get_string("auto_pad") != "NOTSET" && op.attrs.get_string("auto_pad") != "VALID") {
      unsupported(type_, "auto_pad " + op.attrs.get_string("auto_pad"));
    }
    if (kernel_.size() != 2) unsupported(type_, "only 2-D pooling");
    if (strides_.empty()) strides_.assign(2, 1);
    if (strides_.size() != 2 || strides_[0] < 1 || strides_[1] < 1 || kernel_[0] < 1 || kernel_[1] < 1) {
      fail(type_, "kernel_shape and strides must be two values >= 1");
    }
  }
  void plan(const std::vector<PlanInput>& in, std::vector<TensorDesc>& out) override {
    if (in.size() < 5) fail(type_, "needs X, x_scale, x_zero_point, y_scale, y_zero_point");
    need_i8(type_, in[0], "X");
    const Shape& s = in[0].desc->shape;
    if (s.size() != 4) unsupported(type_, "only NCHW input, got " + shape_str(s));
    const QParam x = read_qparam(type_, in, 1, 2, "X");
    const QParam y = read_qparam(type_, in, 3, 4, "Y");
    planes_ = s[0] * s[1];
    ih_ = s[2];
    iw_ = s[3];
    kh_ = global_ ? ih_ : kernel_[0];
    kw_ = global_ ? iw_ : kernel_[1];
    sh_ = global_ ? 1 : strides_[0];
    sw_ = global_ ? 1 : strides_[1];
    if (kh_ > ih_ || kw_ > iw_) fail(type_, "kernel larger than the input " + shape_str(s));
    if (kh_ * kw_ > 65536) unsupported(type_, "windows of more than 65536 values");
    auto size = [&](std::int64_t n, std::int64_t k, std::int64_t st) {
      const std::int64_t o = (ceil_ ? (n - k + st - 1) / st : (n - k) / st) + 1;
      if ((o - 1) * st >= n) unsupported(type_, "ceil_mode windows that start past the input");
      return o;
    };
    oh_ = size(ih_, kh_, sh_);
    ow_ = size(iw_, kw_, sw_);
    // Values in the last row / column of windows (fewer than the kernel under ceil_mode).
    last_h_ = std::min(kh_, ih_ - (oh_ - 1) * sh_);
    last_w_ = std::min(kw_, iw_ - (ow_ - 1) * sw_);
    z_in_ = x.zero_point;
    for (int ph = 0; ph < 2; ++ph) {
      for (int pw = 0; pw < 2; ++pw) {
        const std::int64_t n = (ph ? last_h_ : kh_) * (pw ? last_w_ : kw_);
        scale_[ph * 2 + pw] = x.scale / (y.scale * static_cast<float>(n));
        if (!std::isfinite(scale_[ph * 2 + pw])) fail(type_, "requantisation scale overflows");
      }
    }
    z_out_ = y.zero_point;
    threads_ = worker_count();
    out[0] = {DType::kI8, {s[0], s[1], oh_, ow_}};
  }
  std::size_t scratch_bytes() const override {
    return static_cast<std::size_t>(threads_) * static_cast<std::size_t>(iw_ + ow_) * sizeof(std::int32_t);
  }
  void run(const void* const* in, void* const* out, void* scratch) override {
    const auto* x = static_cast<const std::int8_t*>(in[0]);
    auto* y = static_cast<std::int8_t*>(out[0]);
    const KernelTable& kt = kernels();
    parallel_for(planes_, [&](std::int64_t p, int worker) {
      // Per output row: the window rows summed per column (a loop the compiler vectorises),
      // then each window's columns.
      std::int32_t* cols = static_cast<std::int32_t*>(scratch) + worker * (iw_ + ow_);
      std::int32_t* sums = cols + iw_;
      const std::int8_t* plane = x + p * ih_ * iw_;
      for (std::int64_t oy = 0; oy < oh_; ++oy) {
        const std::int64_t y0 = oy * sh_, y1 = std::min(ih_, y0 + kh_);
        std::fill(cols, cols + iw_, 0);
        for (std::int64_t iy = y0; iy < y1; ++iy) {
          const std::int8_t* row = plane + iy * iw_;
          for (std::int64_t ix = 0; ix < iw_; ++ix) cols[ix] += row[ix];
        }
        for (std::int64_t ox = 0; ox < ow_; ++ox) {
          const std::int64_t x0 = ox * sw_, x1 = std::min(iw_, x0 + kw_);
          std::int32_t acc = -z_in_ * static_cast<std::int32_t>((y1 - y0) * (x1 - x0));
          for (std::int64_t ix = x0; ix < x1; ++ix) acc += cols[ix];
          sums[ox] = acc;
        }
        // Full windows, then the partial last column (if any), each with its scale.
        const int ph = oy == oh_ - 1 && last_h_ != kh_ ? 1 : 0;
        const std::int64_t full = last_w_ != kw_ ? ow_ - 1 : ow_;
        std::int8_t* yrow = y + (p * oh_ + oy) * ow_;
        kt.requant_s32_s8(sums, static_cast<std::size_t>(full), params(ph * 2), yrow);
        if (full < ow_) kt.requant_s32_s8(sums + full, 1, params(ph * 2 + 1), yrow + full);
      }
    });
  }

 private:
  RequantParams params(int which) const {
    RequantParams q;
    q.scale = &scale_[which];
    q.zero_point = z_out_;
    return q;
  }

  std::string type_;
  bool global_, ceil_ = false;
  std::vector<std::int64_t> kernel_, strides_;
  std::int64_t planes_ = 0, ih_ = 0, iw_ = 0, kh_ = 1, kw_ = 1, sh_ = 1, sw_ = 1, oh_ = 0, ow_ = 0;
  std::int64_t last_h_ = 1, last_w_ = 1;
  std::int32_t z_in_ = 0, z_out_ = 0;
  float scale_[4] = {1.0f, 1.0f, 1.0f, 1.0f};  // [partial row][partial column]
  std::int64_t threads_ = 1;  // worker threads at plan time: scratch slices
};

// com.microsoft QGemm (A, a_scale, a_zero_point, B, b_scale, b_zero_point, C, y_scale,
// y_zero_point) as a fully connected layer: A int8 [N, K] per tensor, B int8 [M, K]
// (transB = 1) symmetric per tensor or per row, C int32 [M] at a_scale * b_scale[m], alpha
// 1. Each output row is dot_rows_s8 of the A row against B's rows (exact int32) plus the
// folded bias C - a_zero_point * sum(B row), then either requantised with a_scale *
// b_scale[m] / y_scale by requant_s32_s8 (the integers of a 1x1 QLinearConv on a 1x1 map),
// or, without y_scale and y_zero_point, dequantised to float32 as float(acc) * (a_scale *
// b_scale[m]) (as onnxruntime's QGemm does): a network's last layer (an embedding, landmark
// coordinates) keeps the precision an int8 output would round away.
class QGemm : public OpKernel {
 public:
  explicit QGemm(const Op& op) : type_(op.type) {
    auto get = [&](const char* key, std::int64_t d) { return op.attrs.find(key) ? op.attrs.get_int(key) : d; };
    if (get("transA", 0) != 0 || get("transB", 0) != 1) unsupported(type_, "only transA = 0, transB = 1");
    if (op.attrs.find("alpha") && op.attrs.get_float("alpha") != 1.0) unsupported(type_, "alpha other than 1");
  }
  void plan(const std::vector<PlanInput>& in, std::vector<TensorDesc>& out) override {
    if (in.size() < 6) fail(type_, "needs A, a_scale, a_zero_point, B, b_scale, b_zero_point, C[, y_scale, y_zero_point]");
    need_i8(type_, in[0], "A");
    need_i8(type_, in[3], "B");
    const Shape& as = in[0].desc->shape;
    const Shape& bs = in[3].desc->shape;
    if (as.size() != 2 || bs.size() != 2 || as[1] != bs[1]) {
      fail(type_, "A " + shape_str(as) + " and B " + shape_str(bs) + " are not [N, K] and [M, K]");
    }
    if (!in[3].value || !in[4].value || !in[5].value) unsupported(type_, "B and its scales must be constants");
    n_ = as[0];
    k_ = as[1];
    m_ = bs[0];
    if (k_ > 65536) unsupported(type_, "more than 65536 inputs per output");
    const QParam a = read_qparam(type_, in, 1, 2, "A");
    float_out_ = in.size() < 8 || !in[7].present();
    const QParam y = float_out_ ? QParam{} : read_qparam(type_, in, 7, 8, "Y");
    const std::int64_t nws = elements(in[4].desc->shape);
    if (in[4].desc->dtype != DType::kF32 || in[5].desc->dtype != DType::kI8 || elements(in[5].desc->shape) != nws ||
        (nws != 1 && nws != m_)) {
      fail(type_, "b_scale (float32) and b_zero_point (int8) must have 1 or " + std::to_string(m_) + " elements each");
    }
    const auto* bz = static_cast<const std::int8_t*>(in[5].value);
    const auto* bsc = static_cast<const float*>(in[4].value);
    const auto* w = static_cast<const std::int8_t*>(in[3].value);
    const std::int32_t* c = nullptr;
    if (in.size() > 6 && in[6].present()) {
      if (in[6].desc->dtype != DType::kI32 || elements(in[6].desc->shape) != m_ || !in[6].value) {
        fail(type_, "C must be a constant int32 vector of " + std::to_string(m_) + " elements");
      }
      c = static_cast<const std::int32_t*>(in[6].value);
    }
    scale_.assign(static_cast<std::size_t>(m_), 0.0f);
    bias_.assign(static_cast<std::size_t>(m_), 0);
    for (std::int64_t i = 0; i < m_; ++i) {
      if (bz[nws == 1 ? 0 : i] != 0) unsupported(type_, "b_zero_point must be 0 (symmetric weights)");
      const float sb = bsc[nws == 1 ? 0 : i];
      if (!(sb >= 0.0f) || !std::isfinite(sb)) fail(type_, "b_scale must be finite and >= 0");
      scale_[i] = float_out_ ? a.scale * sb : a.scale * sb / y.scale;
      if (!std::isfinite(scale_[i])) fail(type_, "requantisation scale overflows");
      std::int64_t sum = 0;
      for (std::int64_t p = 0; p < k_; ++p) sum += w[i * k_ + p];
      const std::int64_t v = (c ? c[i] : 0) - static_cast<std::int64_t>(a.zero_point) * sum;
      if (v <= -(std::int64_t(1) << 30) || v >= (std::int64_t(1) << 30)) unsupported(type_, "folded bias beyond the int32 accumulator's range");
      bias_[i] = static_cast<std::int32_t>(v);
    }
    z_out_ = y.zero_point;
    out[0] = {float_out_ ? DType::kF32 : DType::kI8, {n_, m_}};
  }
  std::size_t scratch_bytes() const override { return static_cast<std::size_t>(m_) * sizeof(std::int32_t); }
  std::int64_t macs() const override { return n_ * m_ * k_; }
  void run(const void* const* in, void* const* out, void* scratch) override {
    const auto* a = static_cast<const std::int8_t*>(in[0]);
    const auto* w = static_cast<const std::int8_t*>(in[3]);
    auto* acc = static_cast<std::int32_t*>(scratch);
    const KernelTable& kt = kernels();
    RequantParams q;
    q.zero_point = z_out_;
    for (std::int64_t r = 0; r < n_; ++r) {
      kt.dot_rows_s8(a + r * k_, w, static_cast<std::size_t>(m_), static_cast<std::size_t>(k_), k_, acc);
      for (std::int64_t i = 0; i < m_; ++i) {
        // Wrapping add: the true sum fits in int32 (|bias'| < 2^30, k <= 65536).
        acc[i] = static_cast<std::int32_t>(static_cast<std::uint32_t>(acc[i]) + static_cast<std::uint32_t>(bias_[i]));
        if (float_out_) {
          static_cast<float*>(out[0])[r * m_ + i] = static_cast<float>(acc[i]) * scale_[i];
        } else {
          q.scale = scale_.data() + i;
          kt.requant_s32_s8(acc + i, 1, q, static_cast<std::int8_t*>(out[0]) + r * m_ + i);
        }
      }
    }
  }

 private:
  std::string type_;
  std::int64_t n_ = 0, k_ = 0, m_ = 0;
  std::int32_t z_out_ = 0;
  bool float_out_ = false;
  std::vector<float> scale_;  // requantisation scales, or dequantisation scales for float output
  std::vector<std::int32_t> bias_;
};

}  // namespace

void append_quant_ops(std::vector<OpEntry>& entries) {
  entries.push_back({"QGemm", &make_op<QGemm>});
  entries.push_back({"QLinearAdd", &make_op<QLinearAdd>});
  entries.push_back({"QLinearAveragePool", [](const Op& op) -> std::unique_ptr<OpKernel> {
                       return std::make_unique<QLinearAvgPool>(op, false);
                     }});
  entries.push_back({"QLinearConcat", &make_op<QLinearConcat>});
  entries.push_back({"QLinearGlobalAveragePool", [](const Op& op) -> std::unique_ptr<OpKernel> {
                       return std::make_unique<QLinearAvgPool>(op, true);
                     }});
}

}  // namespace engine
}  // namespace picoface
