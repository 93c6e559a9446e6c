// Scalar reference ops of the native engine (all but the convolution family, which lives in
// engine_conv.cc). ONNX opset-18 semantics; where an older opset passed an input as an
// attribute (Slice, Pad, Squeeze/Unsqueeze, Split, Reduce*, Clip, Upsample) the attribute
// form is accepted too, so 1:1 imports of older files run unchanged.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <limits>

#include "engine_ops.h"

namespace picoface {
namespace engine {

// ---------------------------------------------------------------------------------------
// Shared helpers

std::int64_t elements(const Shape& s) {
  std::int64_t n = 1;
  for (std::int64_t d : s) n *= d;
  return n;
}

std::string shape_str(const Shape& s) {
  std::string r = "(";
  for (std::size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + (s.size() == 1 ? ",)" : ")");
}

void fail(const std::string& op_type, const std::string& message) {
  throw Error(ErrorCode::kInvalidArgument, op_type + ": " + message);
}

void unsupported(const std::string& op_type, const std::string& message) {
  throw Error(ErrorCode::kUnsupported, op_type + ": " + message);
}

std::int64_t normalize_axis(const std::string& op_type, std::int64_t axis, std::int64_t rank) {
  if (axis < -rank || axis >= rank) {
    fail(op_type, "axis " + std::to_string(axis) + " out of range for rank " + std::to_string(rank));
  }
  return axis < 0 ? axis + rank : axis;
}

std::vector<std::int64_t> known_ints(const std::string& op_type, const PlanInput& in, const char* what) {
  if (!in.present()) fail(op_type, std::string(what) + " input is missing");
  if (!in.value) unsupported(op_type, std::string(what) + " must be known when the graph is planned");
  const std::int64_t n = elements(in.desc->shape);
  std::vector<std::int64_t> v(static_cast<std::size_t>(n));
  if (in.desc->dtype == DType::kI64) {
    std::memcpy(v.data(), in.value, n * sizeof(std::int64_t));
  } else if (in.desc->dtype == DType::kI32) {
    for (std::int64_t i = 0; i < n; ++i) v[i] = static_cast<const std::int32_t*>(in.value)[i];
  } else {
    fail(op_type, std::string(what) + " must be int64, got " + dtype_name(in.desc->dtype));
  }
  return v;
}

std::vector<float> known_floats(const std::string& op_type, const PlanInput& in, const char* what) {
  if (!in.present()) fail(op_type, std::string(what) + " input is missing");
  if (!in.value) unsupported(op_type, std::string(what) + " must be known when the graph is planned");
  if (in.desc->dtype != DType::kF32) fail(op_type, std::string(what) + " must be float32");
  const auto* p = static_cast<const float*>(in.value);
  return std::vector<float>(p, p + elements(in.desc->shape));
}

void apply_act(const ActParams& p, float* x, std::int64_t n) {
  switch (p.act) {
    case Act::kNone:
    case Act::kPrelu:  // per channel: applied by the caller, which knows the channel
      return;
    case Act::kRelu:
      for (std::int64_t i = 0; i < n; ++i) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
      return;
    case Act::kLeakyRelu:
      for (std::int64_t i = 0; i < n; ++i) x[i] = x[i] >= 0.0f ? x[i] : x[i] * p.alpha;
      return;
    case Act::kSigmoid:
      for (std::int64_t i = 0; i < n; ++i) x[i] = 1.0f / (1.0f + std::exp(-x[i]));
      return;
    case Act::kHardSigmoid:
      for (std::int64_t i = 0; i < n; ++i) x[i] = std::max(0.0f, std::min(1.0f, p.alpha * x[i] + p.beta));
      return;
    case Act::kHardSwish:
      for (std::int64_t i = 0; i < n; ++i) {
        x[i] = x[i] * std::max(0.0f, std::min(1.0f, x[i] * (1.0f / 6.0f) + 0.5f));
      }
      return;
    case Act::kTanh:
      for (std::int64_t i = 0; i < n; ++i) x[i] = std::tanh(x[i]);
      return;
    case Act::kClip:
      for (std::int64_t i = 0; i < n; ++i) x[i] = std::min(std::max(x[i], p.alpha), p.beta);
      return;
  }
}

namespace {

std::int64_t attr_int(const Op& op, const char* key, std::int64_t fallback) {
  return op.attrs.find(key) ? op.attrs.get_int(key) : fallback;
}
float attr_float(const Op& op, const char* key, float fallback) {
  return op.attrs.find(key) ? static_cast<float>(op.attrs.get_float(key)) : fallback;
}
std::string attr_string(const Op& op, const char* key, const std::string& fallback) {
  return op.attrs.find(key) ? op.attrs.get_string(key) : fallback;
}
std::vector<std::int64_t> attr_ints(const Op& op, const char* key) {
  return op.attrs.find(key) ? op.attrs.get_ints(key) : std::vector<std::int64_t>{};
}

void need_inputs(const std::string& type, const std::vector<PlanInput>& in, std::size_t min_count) {
  if (in.size() < min_count) fail(type, "expected at least " + std::to_string(min_count) + " inputs");
  for (std::size_t i = 0; i < min_count; ++i) {
    if (!in[i].present()) fail(type, "input " + std::to_string(i) + " is required");
  }
}

void need_dtype(const std::string& type, const PlanInput& in, DType t, const char* what) {
  if (in.desc->dtype != t) {
    fail(type, std::string(what) + " must be " + dtype_name(t) + ", got " + dtype_name(in.desc->dtype));
  }
}

const PlanInput& opt(const std::vector<PlanInput>& in, std::size_t i) {
  static const PlanInput absent;
  return i < in.size() ? in[i] : absent;
}

// Row-major strides in elements.
Shape strides_of(const Shape& s) {
  Shape st(s.size(), 1);
  for (std::size_t i = s.size(); i-- > 1;) st[i - 1] = st[i] * s[i];
  return st;
}

// out (contiguous, shape `dims`) = in[base + sum_d idx[d] * in_strides[d]], element size es.
// Covers transpose, slice, split, expand and broadcasting copies.
void strided_copy(std::size_t es, const Shape& dims, const Shape& in_strides, std::int64_t base,
                  const void* in, void* out) {
  const std::int64_t total = elements(dims);
  if (total == 0) return;
  const auto* src = static_cast<const std::uint8_t*>(in);
  auto* dst = static_cast<std::uint8_t*>(out);
  const std::size_t rank = dims.size();
  if (rank == 0) {
    std::memcpy(dst, src + base * es, es);
    return;
  }
  const std::int64_t n = dims[rank - 1];
  const std::int64_t s = in_strides[rank - 1];
  std::vector<std::int64_t> idx(rank, 0);
  std::int64_t offset = base;
  for (std::int64_t row = 0; row < total / n; ++row) {
    if (s == 1) {
      std::memcpy(dst, src + offset * es, n * es);
    } else if (es == 4) {
      const auto* p = reinterpret_cast<const std::uint32_t*>(src) + offset;
      auto* q = reinterpret_cast<std::uint32_t*>(dst);
      for (std::int64_t i = 0; i < n; ++i) q[i] = p[i * s];
    } else {
      for (std::int64_t i = 0; i < n; ++i) std::memcpy(dst + i * es, src + (offset + i * s) * es, es);
    }
    dst += n * es;
    for (std::size_t d = rank - 1; d-- > 0;) {
      offset += in_strides[d];
      if (++idx[d] < dims[d]) break;
      offset -= in_strides[d] * dims[d];
      idx[d] = 0;
    }
  }
}

// Numpy broadcast of two shapes; fails naming the op on a mismatch.
Shape broadcast_shapes(const std::string& type, const Shape& a, const Shape& b) {
  const std::size_t r = std::max(a.size(), b.size());
  Shape out(r);
  for (std::size_t i = 0; i < r; ++i) {
    const std::int64_t da = i + a.size() >= r ? a[i + a.size() - r] : 1;
    const std::int64_t db = i + b.size() >= r ? b[i + b.size() - r] : 1;
    if (da != db && da != 1 && db != 1) {
      fail(type, "shapes " + shape_str(a) + " and " + shape_str(b) + " do not broadcast");
    }
    out[i] = da == 1 ? db : da;
  }
  return out;
}

// Strides of `s` read as shape `out` (0 along broadcast dimensions).
Shape broadcast_strides(const Shape& s, const Shape& out) {
  Shape st(out.size(), 0);
  const Shape own = strides_of(s);
  const std::size_t off = out.size() - s.size();
  for (std::size_t i = 0; i < s.size(); ++i) st[off + i] = s[i] == 1 ? 0 : own[i];
  return st;
}

// Loop nest of a broadcast binary op: adjacent dimensions merged where both operands allow.
struct BroadcastLoop {
  Shape dims, sa, sb;
  void init(const Shape& a, const Shape& b, const Shape& out) {
    const Shape ta = broadcast_strides(a, out), tb = broadcast_strides(b, out);
    dims.clear();
    sa.clear();
    sb.clear();
    for (std::size_t i = 0; i < out.size(); ++i) {
      if (out[i] == 1) continue;
      if (!dims.empty() && sa.back() == ta[i] * out[i] && sb.back() == tb[i] * out[i]) {
        dims.back() *= out[i];
        sa.back() = ta[i];
        sb.back() = tb[i];
        continue;
      }
      dims.push_back(out[i]);
      sa.push_back(ta[i]);
      sb.push_back(tb[i]);
    }
    if (dims.empty()) {
      dims = {1};
      sa = {0};
      sb = {0};
    }
  }
  // f(a_ptr, a_stride, b_ptr, b_stride, out_ptr, n) on each innermost row.
  template <typename T, typename U, typename O, typename F>
  void run(const T* a, const U* b, O* o, F f) const {
    const std::size_t r = dims.size();
    const std::int64_t n = dims[r - 1];
    std::int64_t rows = 1;
    for (std::size_t d = 0; d + 1 < r; ++d) rows *= dims[d];
    std::vector<std::int64_t> idx(r, 0);
    std::int64_t oa = 0, ob = 0;
    for (std::int64_t row = 0; row < rows; ++row) {
      f(a + oa, sa[r - 1], b + ob, sb[r - 1], o + row * n, n);
      for (std::size_t d = r - 1; d-- > 0;) {
        oa += sa[d];
        ob += sb[d];
        if (++idx[d] < dims[d]) break;
        oa -= sa[d] * dims[d];
        ob -= sb[d] * dims[d];
        idx[d] = 0;
      }
    }
  }
};

// Applies g(x, y) over a row with strides in {0, 1}, specialised so loops vectorise.
template <typename T, typename U, typename O, typename G>
void binary_row(const T* a, std::int64_t sa, const U* b, std::int64_t sb, O* o, std::int64_t n, G g) {
  if (sa == 1 && sb == 1) {
    for (std::int64_t i = 0; i < n; ++i) o[i] = g(a[i], b[i]);
  } else if (sa == 1 && sb == 0) {
    const U y = b[0];
    for (std::int64_t i = 0; i < n; ++i) o[i] = g(a[i], y);
  } else if (sa == 0 && sb == 1) {
    const T x = a[0];
    for (std::int64_t i = 0; i < n; ++i) o[i] = g(x, b[i]);
  } else {
    for (std::int64_t i = 0; i < n; ++i) o[i] = g(a[i * sa], b[i * sb]);
  }
}

class Base : public OpKernel {
 public:
  explicit Base(const Op& op) : type_(op.type) {}

 protected:
  std::string type_;
};

// ---------------------------------------------------------------------------------------
// Elementwise

// The dtype both operands of a binary op share (ONNX does not promote).
DType common_dtype(const std::string& type, const std::vector<PlanInput>& in) {
  const DType t = in[0].desc->dtype;
  if (in[1].desc->dtype != t) {
    fail(type, std::string("operand dtypes differ: ") + dtype_name(t) + " and " + dtype_name(in[1].desc->dtype));
  }
  return t;
}

enum class BinFn { kAdd, kSub, kMul, kDiv, kPow, kPrelu };

class Binary : public Base {
 public:
  Binary(const Op& op, BinFn fn) : Base(op), fn_(fn) {}
  void plan(const std::vector<PlanInput>& in, std::vector<TensorDesc>& out) override {
    need_inputs(type_, in, 2);
    dtype_ = common_dtype(type_, in);
    const bool is_int = dtype_ == DType::kI64 || dtype_ == DType::kI32;
    if (dtype_ != DType::kF32 && !(is_int && fn_ != BinFn::kPow && fn_ != BinFn::kPrelu)) {
      unsupported(type_, std::string("dtype ") + dtype_name(dtype_));
    }
    Shape shape = broadcast_shapes(type_, in[0].desc->shape, in[1].desc->shape);
    if (fn_ == BinFn::kPrelu && shape != in[0].desc->shape) {
      fail(type_, "slope " + shape_str(in[1].desc->shape) + " does not broadcast to " + shape_str(in[0].desc->shape));
    }
    loop_.init(in[0].desc->shape, in[1].desc->shape, shape);
    out[0] = {dtype_, shape};
  }
  void run(const void* const* in, void* const* out, void*) override {
    switch (dtype_) {
      case DType::kF32: run_typed<float>(in, out); break;
      case DType::kI64: run_typed<std::int64_t>(in, out); break;
      case DType::kI32: run_typed<std::int32_t>(in, out); break;
      default: break;
    }
  }

 private:
  template <typename T>
  void run_typed(const void* const* in, void* const* out) {
    const T* a = static_cast<const T*>(in[0]);
    const T* b = static_cast<const T*>(in[1]);
    T* o = static_cast<T*>(out[0]);
    auto go = [&](auto g) {
      loop_.run(a, b, o, [&](const T* x, std::int64_t sx, const T* y, std::int64_t sy, T* z, std::int64_t n) {
        binary_row(x, sx, y, sy, z, n, g);
      });
    };
    switch (fn_) {
      case BinFn::kAdd: go([](T x, T y) { return x + y; }); break;
      case BinFn::kSub: go([](T x, T y) { return x - y; }); break;
      case BinFn::kMul: go([](T x, T y) { return x * y; }); break;
      case BinFn::kDiv:
        if constexpr (std::is_integral_v<T>) {
          go([](T x, T y) { return y == 0 ? T(0) : static_cast<T>(x / y); });
        } else {
          go([](T x, T y) { return x / y; });
        }
        break;
      case BinFn::kPow:
        if constexpr (std::is_floating_point_v<T>) go([](T x, T y) { return std::pow(x, y); });
        break;
      case BinFn::kPrelu: go([](T x, T y) { return x < 0 ? x * y : x; }); break;
    }
  }

  BinFn fn_;
  DType dtype_ = DType::kF32;
  BroadcastLoop loop_;
};

// The engine has no bool dtype: a bool tensor is kU8 holding 0 or 1 (as Cast to bool and
// the importer's bool constants), so Equal writes kU8 and Where reads its condition as kU8.
class Equal : public Base {
 public:
  explicit Equal(const Op& op) : Base(op) {}
  void plan(const std::vector<PlanInput>& in, std::vector<TensorDesc>& out) override {
    need_inputs(type_, in, 2);
    dtype_ = common_dtype(type_, in);
    if (dtype_ != DType::kF32 && dtype_ != DType::kI64 && dtype_ != DType::kI32 && dtype_ != DType::kU8) {
      unsupported(type_, std::string("dtype ") + dtype_name(dtype_));
    }
    const Shape shape = broadcast_shapes(type_, in[0].desc->shape, in[1].desc->shape);
    loop_.init(in[0].desc->shape, in[1].desc->shape, shape);
    out[0] = {DType::kU8, shape};
  }
  void run(const void* const* in, void* const* out, void*) override {
    switch (dtype_) {
      case DType::kF32: run_typed<float>(in, out); break;
      case DType::kI64: run_typed<std::int64_t>(in, out); break;
      case DType::kI32: run_typed<std::int32_t>(in, out); break;
      case DType::kU8: run_typed<std::uint8_t>(in, out); break;
      default: break;
    }
  }

 private:
  template <typename T>
  void run_typed(const void* const* in, void* const* out) {
    loop_.run(static_cast<const T*>(in[0]), static_cast<const T*>(in[1]), static_cast<std::uint8_t*>(out[0]),
              [](const T* x, std::int64_t sx, const T* y, std::int64_t sy, std::uint8_t* z, std::int64_t n) {
                binary_row(x, sx, y, sy, z, n, [](T p, T q) { return static_cast<std::uint8_t>(p == q); });
              });
  }

  DType dtype_ = DType::kF32;
  BroadcastLoop loop_;
};

// out = condition ? x : y with three-way numpy broadcasting; condition is kU8 (see Equal).
class Where : public Base {
 public:
  explicit Where(const Op& op) : Base(op) {}
  void plan(const std::vector<PlanInput>& in, std::vector<TensorDesc>& out) override {
    need_inputs(type_, in, 3);
    need_dtype(type_, in[0], DType::kU8, "condition (bool as uint8)");
    const DType t = in[1].desc->dtype;
    if (in[2].desc->dtype != t) {
      fail(type_, std::string("X and Y dtypes differ: ") + dtype_name(t) + " and " + dtype_name(in[2].desc->dtype));
    }
    es_ = dtype_size(t);
    const Shape& sc = in[0].desc->shape;
    const Shape& sx = in[1].desc->shape;
    const Shape& sy = in[2].desc->shape;
    const Shape shape = broadcast_shapes(type_, broadcast_shapes(type_, sc, sx), sy);
    // Merge adjacent dimensions where all three operands allow (as BroadcastLoop does).
    const Shape tc = broadcast_strides(sc, shape), tx = broadcast_strides(sx, shape), ty = broadcast_strides(sy, shape);
    dims_.clear();
    for (auto& s : strides_) s.clear();
    for (std::size_t i = 0; i < shape.size(); ++i) {
      if (shape[i] == 1) continue;
      const std::int64_t st[3] = {tc[i], tx[i], ty[i]};
      bool merge = !dims_.empty();
      for (int k = 0; merge && k < 3; ++k) merge = strides_[k].back() == st[k] * shape[i];
      if (merge) {
        dims_.back() *= shape[i];
        for (int k = 0; k < 3; ++k) strides_[k].back() = st[k];
        continue;
      }
      dims_.push_back(shape[i]);
      for (int k = 0; k < 3; ++k) strides_[k].push_back(st[k]);
    }
    if (dims_.empty()) {
      dims_ = {1};
      for (auto& s : strides_) s = {0};
    }
    out[0] = {t, shape};
  }
  void run(const void* const* in, void* const* out, void*) override {
    switch (es_) {
      case 1: run_typed<std::uint8_t>(in, out); break;
      case 4: run_typed<std::uint32_t>(in, out); break;
      case 8: run_typed<std::uint64_t>(in, out); break;
      default: break;
    }
  }

 private:
  // Selection copies bits, so one kernel per element size serves every dtype.
  template <typename T>
  void run_typed(const void* const* in, void* const* out) const {
    const auto* c = static_cast<const std::uint8_t*>(in[0]);
    const T* x = static_cast<const T*>(in[1]);
    const T* y = static_cast<const T*>(in[2]);
    T* o = static_cast<T*>(out[0]);
    const std::size_t r = dims_.size();
    const std::int64_t n = dims_[r - 1];
    const std::int64_t s0 = strides_[0][r - 1], s1 = strides_[1][r - 1], s2 = strides_[2][r - 1];
    std::int64_t rows = 1;
    for (std::size_t d = 0; d + 1 < r; ++d) rows *= dims_[d];
    std::vector<std::int64_t> idx(r, 0);
    std::int64_t off[3] = {0, 0, 0};
    for (std::int64_t row = 0; row < rows; ++row) {
      const std::uint8_t* cr = c + off[0];
      const T* xr = x + off[1];
      const T* yr = y + off[2];
      T* orow = o + row * n;
      if (s0 == 1 && s1 == 1 && s2 == 1) {
        for (std::int64_t i = 0; i < n; ++i) orow[i] = cr[i] ? xr[i] : yr[i];
      } else {
        for (std::int64_t i = 0; i < n; ++i) orow[i] = cr[i * s0] ? xr[i * s1] : yr[i * s2];
      }
      for (std::size_t d = r - 1; d-- > 0;) {
        for (int k = 0; k < 3; ++k) off[k] += strides_[k][d];
        if (++idx[d] < dims_[d]) break;
        for (int k = 0; k < 3; ++k) off[k] -= strides_[k][d] * dims_[d];
        idx[d] = 0;
      }
    }
  }

  std::size_t es_ = 4;
  Shape dims_;
  Shape strides_[3];  // condition, X, Y
};

enum class UnFn { kAct, kExp, kSqrt, kErf, kGelu, kGeluTanh, kNeg, kAbs };

class Unary : public Base {
 public:
  Unary(const Op& op, UnFn fn, ActParams act = {}) : Base(op), fn_(fn), act_(act) {}
  void plan(const std::vector<PlanInput>& in, std::vector<TensorDesc>& out) override {
    need_inputs(type_, in, 1);
    need_dtype(type_, in[0], DType::kF32, "input");
    if (type_ == "Clip") {
      // opset 11+: min and max are optional scalar inputs.
      if (opt(in, 1).present()) act_.alpha = known_floats(type_, in[1], "min").at(0);
      if (opt(in, 2).present()) act_.beta = known_floats(type_, in[2], "max").at(0);
    }
    n_ = elements(in[0].desc->shape);
    out[0] = *in[0].desc;
  }
  void run(const void* const* in, void* const* out, void*) override {
    const float* x = static_cast<const float*>(in[0]);
    float* y = static_cast<float*>(out[0]);
    switch (fn_) {
      case UnFn::kAct:
        if (x != y) std::memcpy(y, x, n_ * sizeof(float));
        apply_act(act_, y, n_);
        return;
      case UnFn::kExp: for (std::int64_t i = 0; i < n_; ++i) y[i] = std::exp(x[i]); return;
      case UnFn::kSqrt: for (std::int64_t i = 0; i < n_; ++i) y[i] = std::sqrt(x[i]); return;
      case UnFn::kErf: for (std::int64_t i = 0; i < n_; ++i) y[i] = std::erf(x[i]); return;
      case UnFn::kNeg: for (std::int64_t i = 0; i < n_; ++i) y[i] = -x[i]; return;
      case UnFn::kAbs: for (std::int64_t i = 0; i < n_; ++i) y[i] = std::fabs(x[i]); return;
      case UnFn::kGelu:
        for (std::int64_t i = 0; i < n_; ++i) {
          y[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * 0.70710678118654752f));
        }
        return;
      case UnFn::kGeluTanh:
        for (std::int64_t i = 0; i < n_; ++i) {
          const float v = x[i];
          y[i] = 0.5f * v * (1.0f + std::tanh(0.79788456080286536f * (v + 0.044715f * v * v * v)));
        }
        return;
    }
  }

 private:
  UnFn fn_;
  ActParams act_;
  std::int64_t n_ = 0;
};

std::unique_ptr<OpKernel> make_act(const Op& op, Act a, float alpha, float beta) {
  return std::make_unique<Unary>(op, UnFn::kAct, ActParams{a, alpha, beta});
}

class BatchNorm : public Base {
 public:
  explicit BatchNorm(const Op& op) : Base(op), eps_(attr_float(op, "epsilon", 1e-5f)) {
    if (attr_int(op, "training_mode", 0) != 0) unsupported(type_, "training_mode=1");
  }
  void plan(const std::vector<PlanInput>& in, std::vector<TensorDesc>& out) override {
    need_inputs(type_, in, 5);
    const Shape& s = in[0].desc->shape;
    if (s.size() < 2) fail(type_, "input must have a channel dimension, got " + shape_str(s));
    for (int i = 0; i < 5; ++i) need_dtype(type_, in[i], DType::kF32, "every input");
    c_ = s[1];
    for (int i = 1; i < 5; ++i) {
      if (elements(in[i].desc->shape) != c_) fail(type_, "parameter " + std::to_string(i) + " must have C elements");
    }
    n_ = s[0];
    inner_ = 1;
    for (std::size_t d = 2; d < s.size(); ++d) inner_ *= s[d];
    out.resize(1);
    out[0] = *in[0].desc;
  }
  void run(const void* const* in, void* const* out, void*) override {
    const float* x = static_cast<const float*>(in[0]);
    const float* scale = static_cast<const float*>(in[1]);
    const float* bias = static_cast<const float*>(in[2]);
    const float* mean = static_cast<const float*>(in[3]);
    const float* var = static_cast<const float*>(in[4]);
    float* y = static_cast<float*>(out[0]);
    for (std::int64_t c = 0; c < c_; ++c) {
      const float a = scale[c] / std::sqrt(var[c] + eps_);
      const float b = bias[c] - mean[c] * a;
      for (std::int64_t n = 0; n < n_; ++n) {
        const std::int64_t off = (n * c_ + c) * inner_;
        for (std::int64_t i = 0; i < inner_; ++i) y[off + i] = x[off + i] * a + b;
      }
    }
  }

 private:
  float eps_;
  std::int64_t c_ = 0, n_ = 0, inner_ = 0;
};

// ---------------------------------------------------------------------------------------
// Shape ops whose output is the input's bytes (Identity, Dropout, Reshape, Flatten,
// Squeeze, Unsqueeze): the planner may alias the buffers.

enum class ViewKind { kIdentity, kReshape, kFlatten, kSqueeze, kUnsqueeze };

class View : public Base {
 public:
  View(const Op& op, ViewKind kind) : Base(op), kind_(kind), op_(op) {}
  bool output_aliases_input() const override { return true; }
  void plan(const std::vector<PlanInput>& in, std::vector<TensorDesc>& out) override {
    need_inputs(type_, in, 1);
    const Shape& s = in[0].desc->shape;
    Shape r;
    switch (kind_) {
      case ViewKind::kIdentity: r = s; break;
      case ViewKind::kReshape: r = reshape(s, in); break;
      case ViewKind::kFlatten: {
        const std::int64_t rank = static_cast<std::int64_t>(s.size());
        std::int64_t axis = attr_int(op_, "axis", 1);
        if (axis < -rank || axis > rank) fail(type_, "axis out of range");
        if (axis < 0) axis += rank;
        std::int64_t a = 1, b = 1;
        for (std::int64_t d = 0; d < rank; ++d) (d < axis ? a : b) *= s[d];
        r = {a, b};
        break;
      }
      case ViewKind::kSqueeze: r = squeeze(s, in); break;
      case ViewKind::kUnsqueeze: r = unsqueeze(s, in); break;
    }
    if (elements(r) != elements(s)) fail(type_, "cannot reshape " + shape_str(s) + " to " + shape_str(r));
    bytes_ = in[0].desc->nbytes();
    out[0] = {in[0].desc->dtype, r};
    if (out.size() > 1) {  // Dropout's mask: all ones at inference
      mask_ = elements(s);
      out[1] = {DType::kU8, s};
    }
  }
  void run(const void* const* in, void* const* out, void*) override {
    if (out[0] != in[0]) std::memcpy(out[0], in[0], bytes_);
    if (mask_ >= 0) std::memset(out[1], 1, static_cast<std::size_t>(mask_));
  }

 private:
  Shape reshape(const Shape& s, const std::vector<PlanInput>& in) const {
    Shape target = known_ints(type_, opt(in, 1), "shape");
    const bool allow_zero = attr_int(op_, "allowzero", 0) != 0;
    std::int64_t infer = -1, known = 1;
    for (std::size_t i = 0; i < target.size(); ++i) {
      if (target[i] == 0 && !allow_zero) {
        if (i >= s.size()) fail(type_, "0 in shape " + shape_str(target) + " has no input dimension");
        target[i] = s[i];
      }
      if (target[i] == -1) {
        if (infer >= 0) fail(type_, "more than one -1 in shape " + shape_str(target));
        infer = static_cast<std::int64_t>(i);
      } else if (target[i] < 0) {
        fail(type_, "bad shape " + shape_str(target));
      } else {
        known *= target[i];
      }
    }
    if (infer >= 0) {
      if (known == 0 || elements(s) % known != 0) {
        fail(type_, "cannot reshape " + shape_str(s) + " to " + shape_str(target));
      }
      target[infer] = elements(s) / known;
    }
    return target;
  }
  std::vector<std::int64_t> axes_of(const std::vector<PlanInput>& in) const {
    if (opt(in, 1).present()) return known_ints(type_, in[1], "axes");
    return attr_ints(op_, "axes");
  }
  Shape squeeze(const Shape& s, const std::vector<PlanInput>& in) const {
    const auto axes = axes_of(in);
    const std::int64_t rank = static_cast<std::int64_t>(s.size());
    std::vector<char> drop(s.size(), 0);
    if (axes.empty()) {
      for (std::size_t d = 0; d < s.size(); ++d) drop[d] = s[d] == 1;
    }
    for (std::int64_t a : axes) {
      const std::int64_t d = normalize_axis(type_, a, rank);
      if (s[d] != 1) fail(type_, "cannot squeeze dimension " + std::to_string(d) + " of " + shape_str(s));
      drop[d] = 1;
    }
    Shape r;
    for (std::size_t d = 0; d < s.size(); ++d) {
      if (!drop[d]) r.push_back(s[d]);
    }
    return r;
  }
  Shape unsqueeze(const Shape& s, const std::vector<PlanInput>& in) const {
    const auto axes = axes_of(in);
    const std::int64_t rank = static_cast<std::int64_t>(s.size() + axes.size());
    std::vector<char> add(rank, 0);
    for (std::int64_t a : axes) {
      const std::int64_t d = normalize_axis(type_, a, rank);
      if (add[d]) fail(type_, "repeated axis");
      add[d] = 1;
    }
    Shape r;
    std::size_t j = 0;
    for (std::int64_t d = 0; d < rank; ++d) r.push_back(add[d] ? 1 : s[j++]);
    return r;
  }

  ViewKind kind_;
  Op op_;
  std::size_t bytes_ = 0;
  std::int64_t mask_ = -1;
};

// ---------------------------------------------------------------------------------------
// Data movement

class Concat : public Base {
 public:
  explicit Concat(const Op& op) : Base(op), axis_(op.attrs.get_int("axis")) {}
  void plan(const std::vector<PlanInput>& in, std::vector<TensorDesc>& out) override {
    if (in.empty()) fail(type_, "needs inputs");
    need_inputs(type_, in, in.size());
    const Shape& s0 = in[0].desc->shape;
    const std::int64_t axis = normalize_axis(type_, axis_, static_cast<std::int64_t>(s0.size()));
    Shape r = s0;
    r[axis] = 0;
    chunks_.clear();
    es_ = dtype_size(in[0].desc->dtype);
    outer_ = 1;
    for (std::int64_t d = 0; d < axis; ++d) outer_ *= s0[d];
    for (const PlanInput& p : in) {
      const Shape& s = p.desc->shape;
      bool ok = s.size() == s0.size() && p.desc->dtype == in[0].desc->dtype;
      for (std::size_t d = 0; ok && d < s.size(); ++d) ok = static_cast<std::int64_t>(d) == axis || s[d] == s0[d];
      if (!ok) fail(type_, "inputs " + shape_str(s0) + " and " + shape_str(s) + " do not concatenate on axis " + std::to_string(axis));
      r[axis] += s[axis];
      std::int64_t chunk = 1;
      for (std::size_t d = axis; d < s.size(); ++d) chunk *= s[d];
      chunks_.push_back(chunk * es_);
    }
    out[0] = {in[0].desc->dtype, r};
  }
  void run(const void* const* in, void* const* out, void*) override {
    auto* dst = static_cast<std::uint8_t*>(out[0]);
    for (std::int64_t o = 0; o < outer_; ++o) {
      for (std::size_t i = 0; i < chunks_.size(); ++i) {
        std::memcpy(dst, static_cast<const std::uint8_t*>(in[i]) + o * chunks_[i], chunks_[i]);
        dst += chunks_[i];
      }
    }
  }

 private:
  std::int64_t axis_;
  std::vector<std::int64_t> chunks_;
  std::size_t es_ = 4;
  std::int64_t outer_ = 1;
};

class Transpose : public Base {
 public:
  explicit Transpose(const Op& op) : Base(op), perm_(attr_ints(op, "perm")) {}
  void plan(const std::vector<PlanInput>& in, std::vector<TensorDesc>& out) override {
    need_inputs(type_, in, 1);
    const Shape& s = in[0].desc->shape;
    std::vector<std::int64_t> perm = perm_;
    if (perm.empty()) {
      for (std::size_t d = s.size(); d-- > 0;) perm.push_back(static_cast<std::int64_t>(d));
    }
    if (perm.size() != s.size()) fail(type_, "perm does not match rank of " + shape_str(s));
    const Shape st = strides_of(s);
    dims_.assign(s.size(), 0);
    strides_.assign(s.size(), 0);
    std::vector<char> seen(s.size(), 0);
    for (std::size_t d = 0; d < s.size(); ++d) {
      const std::int64_t p = normalize_axis(type_, perm[d], static_cast<std::int64_t>(s.size()));
      if (seen[p]) fail(type_, "perm repeats an axis");
      seen[p] = 1;
      dims_[d] = s[p];
      strides_[d] = st[p];
    }
    es_ = dtype_size(in[0].desc->dtype);
    out[0] = {in[0].desc->dtype, dims_};
  }
  void run(const void* const* in, void* const* out, void*) override {
    strided_copy(es_, dims_, strides_, 0, in[0], out[0]);
  }

 private:
  std::vector<std::int64_t> perm_;
  Shape dims_, strides_;
  std::size_t es_ = 4;
};

class Slice : public Base {
 public:
  explicit Slice(const Op& op) : Base(op), op_(op) {}
  void plan(const std::vector<PlanInput>& in, std::vector<TensorDesc>& out) override {
    need_inputs(type_, in, 1);
    const Shape& s = in[0].desc->shape;
    const std::int64_t rank = static_cast<std::int64_t>(s.size());
    std::vector<std::int64_t> starts, ends, axes, steps;
    if (in.size() >= 3) {
      starts = known_ints(type_, in[1], "starts");
      ends = known_ints(type_, in[2], "ends");
      if (opt(in, 3).present()) axes = known_ints(type_, in[3], "axes");
      if (opt(in, 4).present()) steps = known_ints(type_, in[4], "steps");
    } else {  // opset < 10: attributes
      starts = op_.attrs.get_ints("starts");
      ends = op_.attrs.get_ints("ends");
      axes = attr_ints(op_, "axes");
    }
    if (axes.empty()) {
      for (std::size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<std::int64_t>(i));
    }
    if (steps.empty()) steps.assign(starts.size(), 1);
    if (ends.size() != starts.size() || axes.size() != starts.size() || steps.size() != starts.size()) {
      fail(type_, "starts, ends, axes and steps differ in length");
    }
    const Shape st = strides_of(s);
    dims_ = s;
    strides_ = st;
    base_ = 0;
    std::vector<char> seen(s.size(), 0);
    for (std::size_t i = 0; i < starts.size(); ++i) {
      const std::int64_t a = normalize_axis(type_, axes[i], rank);
      if (seen[a]) fail(type_, "repeated axis");
      seen[a] = 1;
      const std::int64_t n = s[a], step = steps[i];
      if (step == 0) fail(type_, "step 0");
      std::int64_t b = starts[i], e = ends[i];
      if (b < 0) b += n;
      if (e < 0) e += n;
      std::int64_t count;
      if (step > 0) {
        b = std::clamp<std::int64_t>(b, 0, n);
        e = std::clamp<std::int64_t>(e, 0, n);
        count = e > b ? (e - b + step - 1) / step : 0;
      } else {
        b = std::clamp<std::int64_t>(b, -1, n - 1);
        e = std::clamp<std::int64_t>(e, -1, n - 1);
        count = b > e ? (b - e + (-step) - 1) / (-step) : 0;
      }
      dims_[a] = count;
      strides_[a] = st[a] * step;
      if (count > 0) base_ += b * st[a];
    }
    es_ = dtype_size(in[0].desc->dtype);
    out[0] = {in[0].desc->dtype, dims_};
  }
  void run(const void* const* in, void* const* out, void*) override {
    strided_copy(es_, dims_, strides_, base_, in[0], out[0]);
  }

 private:
  Op op_;
  Shape dims_, strides_;
  std::int64_t base_ = 0;
  std::size_t es_ = 4;
};

class Split : public Base {
 public:
  explicit Split(const Op& op) : Base(op), op_(op) {}
  void plan(const std::vector<PlanInput>& in, std::vector<TensorDesc>& out) override {
    need_inputs(type_, in, 1);
    const Shape& s = in[0].desc->shape;
    const std::int64_t axis = normalize_axis(type_, attr_int(op_, "axis", 0), static_cast<std::int64_t>(s.size()));
    std::vector<std::int64_t> sizes;
    if (opt(in, 1).present()) {
      sizes = known_ints(type_, in[1], "split");
    } else if (op_.attrs.find("split")) {
      sizes = op_.attrs.get_ints("split");
    } else {
      const std::int64_t k = attr_int(op_, "num_outputs", static_cast<std::int64_t>(out.size()));
      if (k != static_cast<std::int64_t>(out.size())) fail(type_, "num_outputs differs from the output count");
      const std::int64_t chunk = (s[axis] + k - 1) / k;
      for (std::int64_t i = 0; i < k; ++i) sizes.push_back(std::max<std::int64_t>(0, std::min(chunk, s[axis] - i * chunk)));
    }
    std::int64_t sum = 0;
    for (std::int64_t v : sizes) {
      if (v < 0) fail(type_, "negative split size");
      sum += v;
    }
    if (sizes.size() != out.size() || sum != s[axis]) {
      fail(type_, "split sizes do not cover dimension " + std::to_string(axis) + " of " + shape_str(s));
    }
    const Shape st = strides_of(s);
    parts_.clear();
    std::int64_t at = 0;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      Shape d = s;
      d[axis] = sizes[i];
      parts_.push_back({d, at * st[axis]});
      at += sizes[i];
      out[i] = {in[0].desc->dtype, d};
    }
    strides_ = st;
    es_ = dtype_size(in[0].desc->dtype);
  }
  void run(const void* const* in, void* const* out, void*) override {
    for (std::size_t i = 0; i < parts_.size(); ++i) {
      strided_copy(es_, parts_[i].first, strides_, parts_[i].second, in[0], out[i]);
    }
  }

 private:
  Op op_;
  std::vector<std::pair<Shape, std::int64_t>> parts_;
  Shape strides_;
  std::size_t es_ = 4;
};

class Expand : public Base {
 public:
  explicit Expand(const Op& op) : Base(op) {}
  void plan(const std::vector<PlanInput>& in, std::vector<TensorDesc>& out) override {
    need_inputs(type_, in, 2);
    const Shape target = known_ints(type_, in[1], "shape");
    dims_ = broadcast_shapes(type_, in[0].desc->shape, target);
    strides_ = broadcast_strides(in[0].desc->shape, dims_);
    es_ = dtype_size(in[0].desc->dtype);
    out[0] = {in[0].desc->dtype, dims_};
  }
  void run(const void* const* in, void* const* out, void*) override {
    strided_copy(es_, dims_, strides_, 0, in[0], out[0]);
  }

 private:
  Shape dims_, strides_;
  std::size_t es_ = 4;
};

class Pad : public Base {
 public:
  explicit Pad(const Op& op) : Base(op), op_(op) {
    const std::string mode = attr_string(op, "mode", "constant");
    if (mode == "constant") mode_ = 0;
    else if (mode == "reflect") mode_ = 1;
    else if (mode == "edge") mode_ = 2;
    else if (mode == "wrap") mode_ = 3;
    else unsupported(type_, "mode '" + mode + "'");
  }
  void plan(const std::vector<PlanInput>& in, std::vector<TensorDesc>& out) override {
    need_inputs(type_, in, 1);
    const Shape& s = in[0].desc->shape;
    const std::int64_t rank = static_cast<std::int64_t>(s.size());
    std::vector<std::int64_t> pads;
    value_ = 0.0;
    if (opt(in, 1).present()) {
      pads = known_ints(type_, in[1], "pads");
      if (opt(in, 2).present()) {
        const PlanInput& v = in[2];
        if (!v.value) unsupported(type_, "constant_value must be known when the graph is planned");
        if (elements(v.desc->shape) > 0) {
          if (v.desc->dtype == DType::kF32) value_ = *static_cast<const float*>(v.value);
          else if (v.desc->dtype == DType::kI64) value_ = static_cast<double>(*static_cast<const std::int64_t*>(v.value));
        }
      }
    } else {
      pads = op_.attrs.get_ints("pads");
      value_ = attr_float(op_, "value", 0.0f);
    }
    std::vector<std::int64_t> axes;
    if (opt(in, 3).present()) {
      axes = known_ints(type_, in[3], "axes");
    } else {
      for (std::int64_t d = 0; d < rank; ++d) axes.push_back(d);
    }
    if (pads.size() != 2 * axes.size()) fail(type_, "pads has " + std::to_string(pads.size()) + " values for " + std::to_string(axes.size()) + " axes");
    std::vector<std::int64_t> begin(rank, 0), end(rank, 0);
    for (std::size_t i = 0; i < axes.size(); ++i) {
      const std::int64_t a = normalize_axis(type_, axes[i], rank);
      begin[a] = pads[i];
      end[a] = pads[i + axes.size()];
    }
    out_shape_ = s;
    maps_.assign(rank, {});
    for (std::int64_t d = 0; d < rank; ++d) {
      const std::int64_t n = s[d];
      const std::int64_t m = n + begin[d] + end[d];
      if (m < 0) fail(type_, "pads make a negative dimension");
      out_shape_[d] = m;
      // Negative pads crop first; the modes then pad the cropped range [lo, lo + kept).
      const std::int64_t lo = std::max<std::int64_t>(0, -begin[d]);
      const std::int64_t kept = n - lo - std::max<std::int64_t>(0, -end[d]);
      const std::int64_t pb = std::max<std::int64_t>(0, begin[d]);
      if (kept <= 0 && m > 0 && mode_ != 0) fail(type_, "pads crop a whole dimension");
      auto& map = maps_[d];
      map.resize(m);
      for (std::int64_t i = 0; i < m; ++i) {
        std::int64_t r = i - pb;
        if (r < 0 || r >= kept) {
          switch (mode_) {
            case 0: r = -1; break;
            case 1: {
              const std::int64_t period = 2 * (kept - 1);
              if (period == 0) { r = 0; break; }  // one element reflects onto itself
              r = ((r % period) + period) % period;
              if (r >= kept) r = period - r;
              break;
            }
            case 2: r = std::clamp<std::int64_t>(r, 0, kept - 1); break;
            case 3: r = ((r % kept) + kept) % kept; break;
          }
        }
        map[i] = r < 0 ? -1 : lo + r;
      }
    }
    dtype_ = in[0].desc->dtype;
    es_ = dtype_size(dtype_);
    in_strides_ = strides_of(s);
    out[0] = {dtype_, out_shape_};
  }
  void run(const void* const* in, void* const* out, void*) override {
    const std::size_t rank = out_shape_.size();
    const std::int64_t total = elements(out_shape_);
    if (total == 0) return;
    if (rank == 0) {
      std::memcpy(out[0], in[0], es_);
      return;
    }
    const auto* src = static_cast<const std::uint8_t*>(in[0]);
    auto* dst = static_cast<std::uint8_t*>(out[0]);
    std::uint8_t fill[8] = {0};
    if (dtype_ == DType::kF32) { const float f = static_cast<float>(value_); std::memcpy(fill, &f, 4); }
    else if (dtype_ == DType::kI64) { const std::int64_t v = static_cast<std::int64_t>(value_); std::memcpy(fill, &v, 8); }
    else if (dtype_ == DType::kI32) { const std::int32_t v = static_cast<std::int32_t>(value_); std::memcpy(fill, &v, 4); }
    else { fill[0] = static_cast<std::uint8_t>(static_cast<std::int64_t>(value_)); }
    const std::int64_t w = out_shape_[rank - 1];
    const auto& xmap = maps_[rank - 1];
    std::vector<std::int64_t> idx(rank, 0);
    for (std::int64_t row = 0; row < total / w; ++row) {
      std::int64_t off = 0;
      bool inside = true;
      for (std::size_t d = 0; d + 1 < rank; ++d) {
        const std::int64_t j = maps_[d][idx[d]];
        if (j < 0) { inside = false; break; }
        off += j * in_strides_[d];
      }
      for (std::int64_t x = 0; x < w; ++x) {
        const std::int64_t j = xmap[x];
        if (inside && j >= 0) std::memcpy(dst + x * es_, src + (off + j) * es_, es_);
        else std::memcpy(dst + x * es_, fill, es_);
      }
      dst += w * es_;
      for (std::size_t d = rank - 1; d-- > 0;) {
        if (++idx[d] < out_shape_[d]) break;
        idx[d] = 0;
      }
    }
  }

 private:
  Op op_;
  int mode_ = 0;
  double value_ = 0.0;
  Shape out_shape_, in_strides_;
  std::vector<std::vector<std::int64_t>> maps_;
  DType dtype_ = DType::kF32;
  std::size_t es_ = 4;
};

class Gather : public Base {
 public:
  explicit Gather(const Op& op) : Base(op), axis_(attr_int(op, "axis", 0)) {}
  void plan(const std::vector<PlanInput>& in, std::vector<TensorDesc>& out) override {
    need_inputs(type_, in, 2);
    const Shape& s = in[0].desc->shape;
    const Shape& is = in[1].desc->shape;
    if (in[1].desc->dtype != DType::kI64 && in[1].desc->dtype != DType::kI32) fail(type_, "indices must be int64 or int32");
    idx64_ = in[1].desc->dtype == DType::kI64;
    const std::int64_t axis = normalize_axis(type_, axis_, static_cast<std::int64_t>(s.size()));
    Shape r(s.begin(), s.begin() + axis);
    r.insert(r.end(), is.begin(), is.end());
    r.insert(r.end(), s.begin() + axis + 1, s.end());
    outer_ = 1;
    inner_ = 1;
    for (std::int64_t d = 0; d < axis; ++d) outer_ *= s[d];
    for (std::size_t d = axis + 1; d < s.size(); ++d) inner_ *= s[d];
    n_ = s[axis];
    count_ = elements(is);
    es_ = dtype_size(in[0].desc->dtype);
    out[0] = {in[0].desc->dtype, r};
  }
  void run(const void* const* in, void* const* out, void*) override {
    const auto* src = static_cast<const std::uint8_t*>(in[0]);
    auto* dst = static_cast<std::uint8_t*>(out[0]);
    const std::size_t row = inner_ * es_;
    for (std::int64_t i = 0; i < count_; ++i) {
      std::int64_t j = idx64_ ? static_cast<const std::int64_t*>(in[1])[i] : static_cast<const std::int32_t*>(in[1])[i];
      if (j < 0) j += n_;
      if (j < 0 || j >= n_) fail(type_, "index " + std::to_string(j) + " out of range " + std::to_string(n_));
    }
    for (std::int64_t o = 0; o < outer_; ++o) {
      for (std::int64_t i = 0; i < count_; ++i) {
        std::int64_t j = idx64_ ? static_cast<const std::int64_t*>(in[1])[i] : static_cast<const std::int32_t*>(in[1])[i];
        if (j < 0) j += n_;
        std::memcpy(dst, src + (o * n_ + j) * row, row);
        dst += row;
      }
    }
  }

 private:
  std::int64_t axis_;
  bool idx64_ = true;
  std::int64_t outer_ = 1, inner_ = 1, n_ = 0, count_ = 0;
  std::size_t es_ = 4;
};

// ---------------------------------------------------------------------------------------
// Shape, Cast, ConstantOfShape, QuantizeLinear, DequantizeLinear

class ShapeOp : public Base {
 public:
  explicit ShapeOp(const Op& op) : Base(op), start_(attr_int(op, "start", 0)), end_(attr_int(op, "end", INT64_MAX)) {}
  bool shape_only() const override { return true; }
  void plan(const std::vector<PlanInput>& in, std::vector<TensorDesc>& out) override {
    need_inputs(type_, in, 1);
    const Shape& s = in[0].desc->shape;
    const std::int64_t r = static_cast<std::int64_t>(s.size());
    std::int64_t b = start_ < 0 ? start_ + r : start_, e = end_ < 0 ? end_ + r : end_;
    b = std::clamp<std::int64_t>(b, 0, r);
    e = std::clamp<std::int64_t>(e, 0, r);
    dims_.assign(s.begin() + b, s.begin() + std::max(b, e));
    out[0] = {DType::kI64, {static_cast<std::int64_t>(dims_.size())}};
  }
  void run(const void* const*, void* const* out, void*) override {
    if (!dims_.empty()) std::memcpy(out[0], dims_.data(), dims_.size() * sizeof(std::int64_t));
  }

 private:
  std::int64_t start_, end_;
  Shape dims_;
};

bool dtype_from_onnx(std::int64_t to, DType* t, bool* to_bool) {
  *to_bool = false;
  switch (to) {
    case 1: *t = DType::kF32; return true;
    case 2: *t = DType::kU8; return true;
    case 3: *t = DType::kI8; return true;
    case 6: *t = DType::kI32; return true;
    case 7: *t = DType::kI64; return true;
    case 9: *t = DType::kU8; *to_bool = true; return true;
    default: return false;
  }
}

template <typename T>
double load_as_double(const void* p, std::int64_t i) { return static_cast<double>(static_cast<const T*>(p)[i]); }

double load(DType t, const void* p, std::int64_t i) {
  switch (t) {
    case DType::kF32: return load_as_double<float>(p, i);
    case DType::kI8: return load_as_double<std::int8_t>(p, i);
    case DType::kU8: return load_as_double<std::uint8_t>(p, i);
    case DType::kI32: return load_as_double<std::int32_t>(p, i);
    case DType::kI64: return load_as_double<std::int64_t>(p, i);
  }
  return 0.0;
}

void store(DType t, void* p, std::int64_t i, double v) {
  switch (t) {
    case DType::kF32: static_cast<float*>(p)[i] = static_cast<float>(v); break;
    case DType::kI8: static_cast<std::int8_t*>(p)[i] = static_cast<std::int8_t>(v); break;
    case DType::kU8: static_cast<std::uint8_t*>(p)[i] = static_cast<std::uint8_t>(v); break;
    case DType::kI32: static_cast<std::int32_t*>(p)[i] = static_cast<std::int32_t>(v); break;
    case DType::kI64: static_cast<std::int64_t*>(p)[i] = static_cast<std::int64_t>(v); break;
  }
}

class Cast : public Base {
 public:
  explicit Cast(const Op& op) : Base(op) {
    const std::int64_t to = op.attrs.get_int("to");
    if (!dtype_from_onnx(to, &to_, &to_bool_)) unsupported(type_, "target type " + std::to_string(to));
  }
  void plan(const std::vector<PlanInput>& in, std::vector<TensorDesc>& out) override {
    need_inputs(type_, in, 1);
    from_ = in[0].desc->dtype;
    n_ = elements(in[0].desc->shape);
    out[0] = {to_, in[0].desc->shape};
  }
  void run(const void* const* in, void* const* out, void*) override {
    for (std::int64_t i = 0; i < n_; ++i) {
      const double v = load(from_, in[0], i);
      if (to_bool_) {
        static_cast<std::uint8_t*>(out[0])[i] = v != 0.0;
      } else if (to_ != DType::kF32 && std::isnan(v)) {
        store(to_, out[0], i, 0.0);
      } else {
        store(to_, out[0], i, v);
      }
    }
  }

 private:
  DType to_ = DType::kF32, from_ = DType::kF32;
  bool to_bool_ = false;
  std::int64_t n_ = 0;
};

class ConstantOfShape : public Base {
 public:
  explicit ConstantOfShape(const Op& op) : Base(op) {
    // The importer stores a scalar `value` as a plain number; float32 zero when absent.
    if (const Value* v = op.attrs.find("value")) {
      if (v->type == Value::Type::kInt) { dtype_ = DType::kI64; value_ = static_cast<double>(v->i); }
      else if (v->type == Value::Type::kFloat) { value_ = v->f; }
      else unsupported(type_, "value must be a scalar");
    }
  }
  void plan(const std::vector<PlanInput>& in, std::vector<TensorDesc>& out) override {
    need_inputs(type_, in, 1);
    const Shape s = known_ints(type_, in[0], "shape");
    for (std::int64_t d : s) if (d < 0) fail(type_, "negative dimension");
    n_ = elements(s);
    out[0] = {dtype_, s};
  }
  void run(const void* const*, void* const* out, void*) override {
    for (std::int64_t i = 0; i < n_; ++i) store(dtype_, out[0], i, value_);
  }

 private:
  DType dtype_ = DType::kF32;
  double value_ = 0.0;
  std::int64_t n_ = 0;
};

// y = (x - zero_point) * scale, per tensor, per axis, or per block along the axis (opset 21).
class Dequantize : public Base {
 public:
  explicit Dequantize(const Op& op) : Base(op), axis_(attr_int(op, "axis", 1)), block_(attr_int(op, "block_size", 0)) {}
  void plan(const std::vector<PlanInput>& in, std::vector<TensorDesc>& out) override {
    need_inputs(type_, in, 2);
    from_ = in[0].desc->dtype;
    if (from_ != DType::kI8 && from_ != DType::kU8 && from_ != DType::kI32) {
      fail(type_, std::string("x must be int8, uint8 or int32, got ") + dtype_name(from_));
    }
    need_dtype(type_, in[1], DType::kF32, "x_scale");
    if (opt(in, 2).present() && in[2].desc->dtype != from_) fail(type_, "x_zero_point dtype differs from x");
    const Shape& s = in[0].desc->shape;
    const Shape& ss = in[1].desc->shape;
    n_ = elements(s);
    outer_ = 1;
    inner_ = 1;
    len_ = 1;
    groups_ = 1;
    if (elements(ss) == 1 && ss.size() <= 1 && block_ == 0) {
      mode_ = 0;
    } else {
      const std::int64_t axis = normalize_axis(type_, axis_, static_cast<std::int64_t>(s.size()));
      for (std::int64_t d = 0; d < axis; ++d) outer_ *= s[d];
      for (std::size_t d = axis + 1; d < s.size(); ++d) inner_ *= s[d];
      len_ = s[axis];
      if (block_ <= 0) {
        if (ss.size() != 1 || ss[0] != len_) fail(type_, "per-axis scale must have " + std::to_string(len_) + " elements");
        mode_ = 1;
      } else {
        bool ok = ss.size() == s.size();
        for (std::size_t d = 0; ok && d < s.size(); ++d) {
          ok = static_cast<std::int64_t>(d) == axis ? ss[d] == (s[d] + block_ - 1) / block_ : ss[d] == s[d];
        }
        if (!ok) fail(type_, "blocked scale " + shape_str(ss) + " does not fit x " + shape_str(s));
        groups_ = ss[axis];
        mode_ = 2;
      }
    }
    if (opt(in, 2).present() && in[2].desc->shape != in[1].desc->shape) fail(type_, "x_zero_point shape differs from x_scale");
    out[0] = {DType::kF32, s};
  }
  void run(const void* const* in, void* const* out, void*) override {
    const float* scale = static_cast<const float*>(in[1]);
    const void* zp = zp_index_ >= 0 ? in[zp_index_] : nullptr;
    float* y = static_cast<float*>(out[0]);
    auto zero = [&](std::int64_t q) { return zp ? load(from_, zp, q) : 0.0; };
    if (mode_ == 0 && from_ == DType::kI8) {  // the int8 engine's per-tensor case, vectorised
      const auto* q = static_cast<const std::int8_t*>(in[0]);
      const float z = zp ? static_cast<float>(*static_cast<const std::int8_t*>(zp)) : 0.0f;
      const float sc = scale[0];
      for (std::int64_t i = 0; i < n_; ++i) y[i] = (static_cast<float>(q[i]) - z) * sc;
      return;
    }
    if (mode_ == 0) {
      const double z = zero(0);
      const float sc = scale[0];
      for (std::int64_t i = 0; i < n_; ++i) y[i] = static_cast<float>(load(from_, in[0], i) - z) * sc;
      return;
    }
    for (std::int64_t o = 0; o < outer_; ++o) {
      for (std::int64_t a = 0; a < len_; ++a) {
        // Scale index: per axis -> a; blocked -> (o, a / block, inner) in the scale's layout.
        for (std::int64_t i = 0; i < inner_; ++i) {
          const std::int64_t q = mode_ == 1 ? a : (o * groups_ + a / block_) * inner_ + i;
          const std::int64_t k = (o * len_ + a) * inner_ + i;
          y[k] = static_cast<float>(load(from_, in[0], k) - zero(q)) * scale[q];
        }
      }
    }
  }
  void set_zero_point_input(int index) { zp_index_ = index; }

 private:
  std::int64_t axis_, block_;
  DType from_ = DType::kI8;
  int mode_ = 0;
  std::int64_t n_ = 0, outer_ = 1, inner_ = 1, len_ = 1, groups_ = 1;
  int zp_index_ = -1;
};

// y = saturate(round_half_even(x / scale) + zero_point), per tensor or per axis. The output
// dtype is the zero point's, uint8 when there is none (or the opset-21 output_dtype).
class Quantize : public Base {
 public:
  explicit Quantize(const Op& op) : Base(op), axis_(attr_int(op, "axis", 1)) {
    if (attr_int(op, "block_size", 0) != 0) unsupported(type_, "blocked quantization");
    const std::int64_t od = attr_int(op, "output_dtype", 0);
    bool to_bool = false;
    if (od != 0 && (!dtype_from_onnx(od, &to_, &to_bool) || to_bool || (to_ != DType::kI8 && to_ != DType::kU8))) {
      unsupported(type_, "output_dtype " + std::to_string(od));
    }
    explicit_to_ = od != 0;
  }
  // Output 0 is input 0 when the input comes already quantised (see plan).
  bool output_aliases_input() const override { return passthrough_; }
  void plan(const std::vector<PlanInput>& in, std::vector<TensorDesc>& out) override {
    need_inputs(type_, in, 2);
    // An int8 x is a graph input the caller quantised with this op's parameters (the
    // engine accepts one only where this op is its sole reader): it passes through.
    passthrough_ = in[0].desc->dtype == DType::kI8;
    if (passthrough_) {
      if (!opt(in, 2).present() || in[2].desc->dtype != DType::kI8 || elements(in[1].desc->shape) != 1) {
        fail(type_, "an int8 x needs a per-tensor int8 y_zero_point");
      }
      n_ = elements(in[0].desc->shape);
      out[0] = in[0].desc[0];
      return;
    }
    need_dtype(type_, in[0], DType::kF32, "x");
    need_dtype(type_, in[1], DType::kF32, "y_scale");
    has_zp_ = opt(in, 2).present();
    if (has_zp_) {
      const DType zt = in[2].desc->dtype;
      if (zt != DType::kI8 && zt != DType::kU8) unsupported(type_, std::string("y_zero_point dtype ") + dtype_name(zt));
      if (explicit_to_ && zt != to_) fail(type_, "output_dtype differs from y_zero_point");
      to_ = zt;
      if (in[2].desc->shape != in[1].desc->shape) fail(type_, "y_zero_point shape differs from y_scale");
    } else if (!explicit_to_) {
      to_ = DType::kU8;
    }
    const Shape& s = in[0].desc->shape;
    const Shape& ss = in[1].desc->shape;
    n_ = elements(s);
    outer_ = 1;
    inner_ = 1;
    len_ = 1;
    per_axis_ = !(elements(ss) == 1 && ss.size() <= 1);
    if (per_axis_) {
      const std::int64_t axis = normalize_axis(type_, axis_, static_cast<std::int64_t>(s.size()));
      for (std::int64_t d = 0; d < axis; ++d) outer_ *= s[d];
      for (std::size_t d = axis + 1; d < s.size(); ++d) inner_ *= s[d];
      len_ = s[axis];
      if (ss.size() != 1 || ss[0] != len_) fail(type_, "per-axis scale must have " + std::to_string(len_) + " elements");
    } else {
      inner_ = n_;
    }
    out[0] = {to_, s};
  }
  void run(const void* const* in, void* const* out, void*) override {
    if (passthrough_) {
      if (out[0] != in[0]) std::memcpy(out[0], in[0], static_cast<std::size_t>(n_));
      return;
    }
    if (to_ == DType::kI8) {
      run_typed<std::int8_t>(in, out);
    } else {
      run_typed<std::uint8_t>(in, out);
    }
  }

 private:
  template <typename Q>
  void run_typed(const void* const* in, void* const* out) const {
    const float* x = static_cast<const float*>(in[0]);
    const float* scale = static_cast<const float*>(in[1]);
    const Q* zp = has_zp_ ? static_cast<const Q*>(in[2]) : nullptr;
    Q* y = static_cast<Q*>(out[0]);
    const float lo = static_cast<float>(std::numeric_limits<Q>::min());
    const float hi = static_cast<float>(std::numeric_limits<Q>::max());
    const std::int64_t groups = per_axis_ ? len_ : 1;
    for (std::int64_t o = 0; o < outer_; ++o) {
      for (std::int64_t a = 0; a < groups; ++a) {
        // Divide (not multiply by the reciprocal) in float32 as the spec and onnxruntime do;
        // nearbyint rounds half to even in the default rounding mode. Clamping in float before
        // the integer conversion keeps out-of-range values (and infinities) defined.
        // Clamping to [lo - z, hi - z] (integers) before rounding gives the same result as
        // after, keeps |v| < 2^22 so adding and subtracting 1.5 * 2^23 rounds half to even
        // exactly (a loop the compiler vectorises), and sends NaN to lo.
        const float sc = scale[a];
        const float z = zp ? static_cast<float>(zp[a]) : 0.0f;
        const float vlo = lo - z, vhi = hi - z;
        constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
        const std::int64_t base = (o * groups + a) * inner_;
        // Chunks through an int32 buffer: two simple loops the compiler vectorises, where
        // one float -> int8 loop stays scalar.
        constexpr std::int64_t kChunk = 256;
        std::int32_t buf[kChunk];
        for (std::int64_t i0 = 0; i0 < inner_; i0 += kChunk) {
          const std::int64_t n = std::min(kChunk, inner_ - i0);
          const float* xs = x + base + i0;
          for (std::int64_t i = 0; i < n; ++i) {
            const float v = std::min(std::max(vlo, xs[i] / sc), vhi);
            buf[i] = static_cast<std::int32_t>(((v + kMagic) - kMagic) + z);
          }
          Q* ys = y + base + i0;
          for (std::int64_t i = 0; i < n; ++i) ys[i] = static_cast<Q>(buf[i]);
        }
      }
    }
  }

  std::int64_t axis_;
  DType to_ = DType::kU8;
  bool explicit_to_ = false, has_zp_ = false, per_axis_ = false, passthrough_ = false;
  std::int64_t n_ = 0, outer_ = 1, inner_ = 1, len_ = 1;
};

std::unique_ptr<OpKernel> make_dequantize(const Op& op) {
  auto k = std::make_unique<Dequantize>(op);
  if (op.inputs.size() > 2 && op.inputs[2] >= 0) k->set_zero_point_input(2);
  return k;
}

// ---------------------------------------------------------------------------------------
// Pooling

// Output size and begin/end padding of one spatial axis (shared by Conv and the pools).
struct AxisGeom {
  std::int64_t in = 0, out = 0, kernel = 1, stride = 1, dilation = 1, pad_begin = 0, pad_end = 0;
};

class Pool : public Base {
 public:
  Pool(const Op& op, bool is_max) : Base(op), op_(op), max_(is_max) {
    if (op.outputs.size() > 1) unsupported(type_, "the Indices output");
    auto_pad_ = attr_string(op, "auto_pad", "NOTSET");
    ceil_ = attr_int(op, "ceil_mode", 0) != 0;
    include_pad_ = attr_int(op, "count_include_pad", 0) != 0;
    kernel_ = op.attrs.get_ints("kernel_shape");
  }
  void plan(const std::vector<PlanInput>& in, std::vector<TensorDesc>& out) override {
    need_inputs(type_, in, 1);
    // MaxPool also takes int8 (a quantised tensor keeps its scale and zero point: the max of
    // quantised values is the quantised max, exactly).
    int8_ = max_ && in[0].desc->dtype == DType::kI8;
    if (!int8_) need_dtype(type_, in[0], DType::kF32, "input");
    const Shape& s = in[0].desc->shape;
    const std::size_t sp = kernel_.size();
    if ((sp != 1 && sp != 2) || s.size() != sp + 2) fail(type_, "expected 1 or 2 spatial dims, got input " + shape_str(s));
    auto strides = attr_ints(op_, "strides");
    auto dil = attr_ints(op_, "dilations");
    auto pads = attr_ints(op_, "pads");
    if (strides.empty()) strides.assign(sp, 1);
    if (dil.empty()) dil.assign(sp, 1);
    if (pads.empty()) pads.assign(2 * sp, 0);
    if (strides.size() != sp || dil.size() != sp || pads.size() != 2 * sp) fail(type_, "attribute lengths differ from the kernel rank");
    Shape r = {s[0], s[1]};
    geo_.assign(2, AxisGeom{});
    for (std::size_t d = 0; d < sp; ++d) {
      AxisGeom& g = geo_[2 - sp + d];
      g.in = s[2 + d];
      g.kernel = kernel_[d];
      g.stride = strides[d];
      g.dilation = dil[d];
      if (g.kernel < 1 || g.stride < 1 || g.dilation < 1) fail(type_, "kernel, strides and dilations must be >= 1");
      const std::int64_t eff = (g.kernel - 1) * g.dilation + 1;
      if (auto_pad_ == "NOTSET") {
        g.pad_begin = pads[d];
        g.pad_end = pads[d + sp];
        const std::int64_t span = g.in + g.pad_begin + g.pad_end - eff;
        if (span < 0) fail(type_, "kernel larger than the padded input " + shape_str(s));
        g.out = (ceil_ ? (span + g.stride - 1) / g.stride : span / g.stride) + 1;
        // A last window that would start inside the end padding is dropped (ceil_mode).
        if (ceil_ && (g.out - 1) * g.stride >= g.in + g.pad_begin) --g.out;
      } else if (auto_pad_ == "VALID") {
        if (g.in < eff) fail(type_, "kernel larger than the input " + shape_str(s));
        g.out = (g.in - eff) / g.stride + 1;
      } else if (auto_pad_ == "SAME_UPPER" || auto_pad_ == "SAME_LOWER") {
        g.out = (g.in + g.stride - 1) / g.stride;
        const std::int64_t total = std::max<std::int64_t>(0, (g.out - 1) * g.stride + eff - g.in);
        g.pad_begin = auto_pad_ == "SAME_UPPER" ? total / 2 : total - total / 2;
        g.pad_end = total - g.pad_begin;
      } else {
        unsupported(type_, "auto_pad " + auto_pad_);
      }
      r.push_back(g.out);
    }
    if (sp == 1) geo_[0] = AxisGeom{1, 1, 1, 1, 1, 0, 0};
    planes_ = s[0] * s[1];
    out[0] = {int8_ ? DType::kI8 : DType::kF32, r};
  }
  void run(const void* const* in, void* const* out, void*) override {
    if (int8_) {
      run_typed<std::int8_t>(static_cast<const std::int8_t*>(in[0]), static_cast<std::int8_t*>(out[0]));
    } else {
      run_typed<float>(static_cast<const float*>(in[0]), static_cast<float*>(out[0]));
    }
  }

 private:
  template <typename T>
  void run_typed(const T* x, T* y) const {
    const AxisGeom& gy = geo_[0];
    const AxisGeom& gx = geo_[1];
    // 2x2 stride-2 max pooling with every window inside the input (the detectors' down-
    // sampling): a branch-free loop over rows; max of the same four values as below.
    const bool max2x2 = max_ && gy.kernel == 2 && gx.kernel == 2 && gy.stride == 2 && gx.stride == 2 &&
                        gy.dilation == 1 && gx.dilation == 1 && gy.pad_begin == 0 && gx.pad_begin == 0 &&
                        2 * gy.out <= gy.in && 2 * gx.out <= gx.in;
    if (max2x2 && std::is_same<T, std::int8_t>::value) {
      // int8: the vertical max of two rows into a buffer, then adjacent pairs; both loops
      // vectorise (the float loop below does as is).
      std::int8_t buf[512];
      for (std::int64_t p = 0; p < planes_; ++p) {
        for (std::int64_t oy = 0; oy < gy.out; ++oy) {
          const T* r0 = x + p * gy.in * gx.in + 2 * oy * gx.in;
          const T* r1 = r0 + gx.in;
          T* o = y + p * gy.out * gx.out + oy * gx.out;
          for (std::int64_t ox0 = 0; ox0 < gx.out; ox0 += 256) {
            const std::int64_t n = std::min<std::int64_t>(256, gx.out - ox0);
            for (std::int64_t j = 0; j < 2 * n; ++j) buf[j] = std::max(r0[2 * ox0 + j], r1[2 * ox0 + j]);
            for (std::int64_t j = 0; j < n; ++j) o[ox0 + j] = std::max(buf[2 * j], buf[2 * j + 1]);
          }
        }
      }
      return;
    }
    for (std::int64_t p = 0; max2x2 && p < planes_; ++p) {
      const T* src = x + p * gy.in * gx.in;
      T* dst = y + p * gy.out * gx.out;
      for (std::int64_t oy = 0; oy < gy.out; ++oy) {
        const T* r0 = src + 2 * oy * gx.in;
        const T* r1 = r0 + gx.in;
        T* o = dst + oy * gx.out;
        for (std::int64_t ox = 0; ox < gx.out; ++ox) {
          const T a = std::max(r0[2 * ox], r0[2 * ox + 1]);
          const T b = std::max(r1[2 * ox], r1[2 * ox + 1]);
          o[ox] = std::max(a, b);
        }
      }
    }
    for (std::int64_t p = 0; !max2x2 && p < planes_; ++p) {
      const T* src = x + p * gy.in * gx.in;
      T* dst = y + p * gy.out * gx.out;
      for (std::int64_t oy = 0; oy < gy.out; ++oy) {
        const std::int64_t y0 = oy * gy.stride - gy.pad_begin;
        for (std::int64_t ox = 0; ox < gx.out; ++ox) {
          const std::int64_t x0 = ox * gx.stride - gx.pad_begin;
          // int8 is max only; a window wholly in the padding (impossible for valid pads)
          // would give the lowest value.
          T acc = max_ ? (std::numeric_limits<T>::has_infinity ? -std::numeric_limits<T>::infinity()
                                                                 : std::numeric_limits<T>::lowest())
                       : T(0);
          std::int64_t count = 0;
          for (std::int64_t ky = 0; ky < gy.kernel; ++ky) {
            const std::int64_t iy = y0 + ky * gy.dilation;
            if (iy < 0 || iy >= gy.in) continue;
            const T* row = src + iy * gx.in;
            for (std::int64_t kx = 0; kx < gx.kernel; ++kx) {
              const std::int64_t ix = x0 + kx * gx.dilation;
              if (ix < 0 || ix >= gx.in) continue;
              if (max_) acc = std::max(acc, row[ix]);
              else acc += row[ix];
              ++count;
            }
          }
          if (!max_) {
            if (include_pad_) {
              // The window clipped to the padded extent (input + both pads).
              const std::int64_t hy = std::min(y0 + gy.kernel, gy.in + gy.pad_end) - y0;
              const std::int64_t hx = std::min(x0 + gx.kernel, gx.in + gx.pad_end) - x0;
              count = hy * hx;
            }
            acc = count > 0 ? acc / static_cast<T>(count) : T(0);
          }
          dst[oy * gx.out + ox] = acc;
        }
      }
    }
  }

  Op op_;
  bool max_;
  bool int8_ = false;
  std::string auto_pad_;
  bool ceil_ = false, include_pad_ = false;
  std::vector<std::int64_t> kernel_;
  std::vector<AxisGeom> geo_;
  std::int64_t planes_ = 0;
};

class GlobalPool : public Base {
 public:
  GlobalPool(const Op& op, bool is_max) : Base(op), max_(is_max) {}
  void plan(const std::vector<PlanInput>& in, std::vector<TensorDesc>& out) override {
    need_inputs(type_, in, 1);
    need_dtype(type_, in[0], DType::kF32, "input");
    const Shape& s = in[0].desc->shape;
    if (s.size() < 3) fail(type_, "expected N x C x spatial, got " + shape_str(s));
    planes_ = s[0] * s[1];
    inner_ = 1;
    for (std::size_t d = 2; d < s.size(); ++d) inner_ *= s[d];
    Shape r(s.size(), 1);
    r[0] = s[0];
    r[1] = s[1];
    out[0] = {DType::kF32, r};
  }
  void run(const void* const* in, void* const* out, void*) override {
    const float* x = static_cast<const float*>(in[0]);
    float* y = static_cast<float*>(out[0]);
    for (std::int64_t p = 0; p < planes_; ++p) {
      const float* src = x + p * inner_;
      if (max_) {
        float m = -std::numeric_limits<float>::infinity();
        for (std::int64_t i = 0; i < inner_; ++i) m = std::max(m, src[i]);
        y[p] = m;
      } else {
        double acc = 0.0;
        for (std::int64_t i = 0; i < inner_; ++i) acc += src[i];
        y[p] = static_cast<float>(acc / static_cast<double>(inner_));
      }
    }
  }

 private:
  bool max_;
  std::int64_t planes_ = 0, inner_ = 0;
};

// ---------------------------------------------------------------------------------------
// Resize / Upsample

class Resize : public Base {
 public:
  explicit Resize(const Op& op) : Base(op), op_(op) {
    const std::string mode = attr_string(op, "mode", "nearest");
    if (mode == "nearest") linear_ = false;
    else if (mode == "linear" || mode == "bilinear") linear_ = true;
    else unsupported(type_, "mode '" + mode + "'");
    legacy_ = op.type == "Upsample" || op.inputs.size() == 2;
    coord_ = attr_string(op, "coordinate_transformation_mode", legacy_ ? "asymmetric" : "half_pixel");
    nearest_ = attr_string(op, "nearest_mode", "round_prefer_floor");
    static const char* kCoords[] = {"half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric",
                                    "half_pixel_symmetric"};
    if (std::find(std::begin(kCoords), std::end(kCoords), coord_) == std::end(kCoords)) {
      unsupported(type_, "coordinate_transformation_mode '" + coord_ + "'");
    }
    static const char* kNearest[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
    if (std::find(std::begin(kNearest), std::end(kNearest), nearest_) == std::end(kNearest)) {
      unsupported(type_, "nearest_mode '" + nearest_ + "'");
    }
    if (attr_int(op, "antialias", 0) != 0) unsupported(type_, "antialias");
    if (op.attrs.find("axes")) unsupported(type_, "the axes attribute");
    if (attr_string(op, "keep_aspect_ratio_policy", "stretch") != "stretch") unsupported(type_, "keep_aspect_ratio_policy");
  }
  void plan(const std::vector<PlanInput>& in, std::vector<TensorDesc>& out) override {
    need_inputs(type_, in, 1);
    // Nearest copies values, so it runs on int8 too (a quantised graph keeps its parameters).
    dtype_ = in[0].desc->dtype;
    if (dtype_ != DType::kF32 && (linear_ || dtype_ != DType::kI8)) {
      unsupported(type_, std::string(linear_ ? "linear" : "nearest") + " resize of " + dtype_name(dtype_) +
                             " (float32, or int8 for nearest)");
    }
    const Shape& s = in[0].desc->shape;
    const std::size_t rank = s.size();
    std::vector<float> scales;
    Shape sizes;
    if (legacy_) {
      scales = opt(in, 1).present() ? known_floats(type_, in[1], "scales")
                                    : [&] { std::vector<float> v; for (double f : op_.attrs.get_floats("scales")) v.push_back(static_cast<float>(f)); return v; }();
    } else {
      if (opt(in, 3).present() && elements(in[3].desc->shape) > 0) sizes = known_ints(type_, in[3], "sizes");
      else if (opt(in, 2).present() && elements(in[2].desc->shape) > 0) scales = known_floats(type_, in[2], "scales");
      else fail(type_, "needs scales or sizes");
    }
    scale_.assign(rank, 1.0f);
    Shape r(rank);
    if (!sizes.empty()) {
      if (sizes.size() != rank) fail(type_, "sizes length differs from the input rank");
      for (std::size_t d = 0; d < rank; ++d) {
        r[d] = sizes[d];
        scale_[d] = static_cast<float>(sizes[d]) / static_cast<float>(s[d]);
      }
    } else {
      if (scales.size() != rank) fail(type_, "scales length differs from the input rank");
      for (std::size_t d = 0; d < rank; ++d) {
        if (!(scales[d] > 0.0f)) fail(type_, "scales must be positive");
        scale_[d] = scales[d];
        r[d] = static_cast<std::int64_t>(std::floor(static_cast<double>(s[d]) * scales[d]));
      }
    }
    for (std::int64_t d : r) if (d <= 0) fail(type_, "output " + shape_str(r) + " has an empty dimension");
    in_ = s;
    out_ = r;
    if (linear_) {
      for (std::size_t d = 0; d + 2 < rank; ++d) {
        if (r[d] != s[d]) unsupported(type_, "linear resize of a non-spatial dimension");
      }
      if (rank < 2) fail(type_, "linear resize needs 2 dimensions");
      lin_.assign(2, {});
      for (int k = 0; k < 2; ++k) {
        const std::size_t d = rank - 2 + k;
        auto& tab = lin_[k];
        tab.resize(r[d]);
        for (std::int64_t i = 0; i < r[d]; ++i) {
          float x = source_coord(i, s[d], r[d], scale_[d]);
          x = std::clamp(x, 0.0f, static_cast<float>(s[d] - 1));
          const std::int64_t lo = static_cast<std::int64_t>(std::floor(x));
          const std::int64_t hi = std::min(lo + 1, s[d] - 1);
          tab[i] = {lo, hi, x - static_cast<float>(lo)};
        }
      }
    } else {
      map_.assign(rank, {});
      for (std::size_t d = 0; d < rank; ++d) {
        map_[d].resize(r[d]);
        for (std::int64_t i = 0; i < r[d]; ++i) map_[d][i] = nearest_index(i, s[d], r[d], scale_[d]);
      }
    }
    out[0] = {dtype_, r};
  }
  void run(const void* const* in, void* const* out, void*) override {
    if (dtype_ == DType::kI8) {
      nearest(static_cast<const std::int8_t*>(in[0]), static_cast<std::int8_t*>(out[0]));
      return;
    }
    const float* x = static_cast<const float*>(in[0]);
    float* y = static_cast<float*>(out[0]);
    const std::size_t rank = out_.size();
    if (linear_) {
      const std::int64_t ih = in_[rank - 2], iw = in_[rank - 1], oh = out_[rank - 2], ow = out_[rank - 1];
      const std::int64_t planes = elements(out_) / (oh * ow);
      for (std::int64_t p = 0; p < planes; ++p) {
        const float* src = x + p * ih * iw;
        float* dst = y + p * oh * ow;
        for (std::int64_t oy = 0; oy < oh; ++oy) {
          const Tap& ty = lin_[0][oy];
          const float* r0 = src + ty.lo * iw;
          const float* r1 = src + ty.hi * iw;
          for (std::int64_t ox = 0; ox < ow; ++ox) {
            const Tap& tx = lin_[1][ox];
            const float top = r0[tx.lo] + (r0[tx.hi] - r0[tx.lo]) * tx.w;
            const float bot = r1[tx.lo] + (r1[tx.hi] - r1[tx.lo]) * tx.w;
            dst[oy * ow + ox] = top + (bot - top) * ty.w;
          }
        }
      }
      return;
    }
    nearest(x, y);
  }

 private:
  template <typename T>
  void nearest(const T* x, T* y) const {
    const std::size_t rank = out_.size();
    const Shape ist = strides_of(in_);
    const std::int64_t w = out_[rank - 1];
    const auto& xmap = map_[rank - 1];
    const std::int64_t rows = elements(out_) / w;
    // An upscale by a whole factor f along the row (each input column repeated f times, as
    // an FPN's 2x nearest upsampling) is a loop over input columns the compiler vectorises.
    std::int64_t f = w / in_[rank - 1];
    for (std::int64_t i = 0; f > 0 && i < w; ++i) {
      if (xmap[i] != i / f) f = 0;
    }
    std::vector<std::int64_t> idx(rank, 0);
    std::int64_t prev = -1;
    for (std::int64_t row = 0; row < rows; ++row) {
      std::int64_t off = 0;
      for (std::size_t d = 0; d + 1 < rank; ++d) off += map_[d][idx[d]] * ist[d];
      const T* src = x + off;
      if (off == prev) {
        std::memcpy(y, y - w, static_cast<std::size_t>(w) * sizeof(T));  // the row above again
      } else if (f == 2) {
        for (std::int64_t j = 0; j < w / 2; ++j) y[2 * j] = y[2 * j + 1] = src[j];
      } else if (f > 0) {
        for (std::int64_t j = 0; j < w / f; ++j) std::fill(y + j * f, y + (j + 1) * f, src[j]);
      } else {
        for (std::int64_t i = 0; i < w; ++i) y[i] = src[xmap[i]];
      }
      prev = off;
      y += w;
      for (std::size_t d = rank - 1; d-- > 0;) {
        if (++idx[d] < out_[d]) break;
        idx[d] = 0;
      }
    }
  }

  struct Tap {
    std::int64_t lo, hi;
    float w;
  };
  float source_coord(std::int64_t i, std::int64_t in, std::int64_t out, float scale) const {
    const float xf = static_cast<float>(i);
    if (coord_ == "half_pixel") return (xf + 0.5f) / scale - 0.5f;
    if (coord_ == "pytorch_half_pixel") return out > 1 ? (xf + 0.5f) / scale - 0.5f : 0.0f;
    if (coord_ == "align_corners") {
      return out == 1 ? 0.0f : xf * static_cast<float>(in - 1) / static_cast<float>(out - 1);
    }
    if (coord_ == "half_pixel_symmetric") {
      const float adj = static_cast<float>(out) / (scale * static_cast<float>(in));
      const float center = static_cast<float>(in) / 2.0f;
      return center * (1.0f - adj) + (xf + 0.5f) / scale - 0.5f;
    }
    return xf / scale;  // asymmetric
  }
  std::int64_t nearest_index(std::int64_t i, std::int64_t in, std::int64_t out, float scale) const {
    if (in == out && scale == 1.0f) return i;
    const float x = source_coord(i, in, out, scale);
    std::int64_t j;
    if (legacy_) {
      j = static_cast<std::int64_t>(scale < 1.0f ? std::ceil(x) : std::floor(x));
    } else if (nearest_ == "floor") {
      j = static_cast<std::int64_t>(std::floor(x));
    } else if (nearest_ == "ceil") {
      j = static_cast<std::int64_t>(std::ceil(x));
    } else {
      const float f = std::floor(x);
      const float frac = x - f;
      if (frac == 0.5f) j = static_cast<std::int64_t>(nearest_ == "round_prefer_floor" ? f : f + 1.0f);
      else j = static_cast<std::int64_t>(std::round(x));
    }
    return std::clamp<std::int64_t>(j, 0, in - 1);
  }

  Op op_;
  bool linear_ = false, legacy_ = false;
  DType dtype_ = DType::kF32;
  std::string coord_, nearest_;
  std::vector<float> scale_;
  Shape in_, out_;
  std::vector<std::vector<Tap>> lin_;
  std::vector<std::vector<std::int64_t>> map_;
};

// ---------------------------------------------------------------------------------------
// Normalisation and reductions

class Softmax : public Base {
 public:
  explicit Softmax(const Op& op) : Base(op), axis_(attr_int(op, "axis", -1)) {}
  void plan(const std::vector<PlanInput>& in, std::vector<TensorDesc>& out) override {
    need_inputs(type_, in, 1);
    need_dtype(type_, in[0], DType::kF32, "input");
    const Shape& s = in[0].desc->shape;
    const std::int64_t axis = normalize_axis(type_, axis_, static_cast<std::int64_t>(s.size()));
    outer_ = 1;
    inner_ = 1;
    for (std::int64_t d = 0; d < axis; ++d) outer_ *= s[d];
    for (std::size_t d = axis + 1; d < s.size(); ++d) inner_ *= s[d];
    n_ = s[axis];
    out[0] = *in[0].desc;
  }
  void run(const void* const* in, void* const* out, void*) override {
    const float* x = static_cast<const float*>(in[0]);
    float* y = static_cast<float*>(out[0]);
    for (std::int64_t o = 0; o < outer_; ++o) {
      for (std::int64_t i = 0; i < inner_; ++i) {
        const float* src = x + o * n_ * inner_ + i;
        float* dst = y + o * n_ * inner_ + i;
        float m = -std::numeric_limits<float>::infinity();
        for (std::int64_t k = 0; k < n_; ++k) m = std::max(m, src[k * inner_]);
        double sum = 0.0;
        for (std::int64_t k = 0; k < n_; ++k) {
          const float e = std::exp(src[k * inner_] - m);
          dst[k * inner_] = e;
          sum += e;
        }
        const float inv = static_cast<float>(1.0 / sum);
        for (std::int64_t k = 0; k < n_; ++k) dst[k * inner_] *= inv;
      }
    }
  }

 private:
  std::int64_t axis_;
  std::int64_t outer_ = 1, inner_ = 1, n_ = 1;
};

class LayerNorm : public Base {
 public:
  explicit LayerNorm(const Op& op) : Base(op), axis_(attr_int(op, "axis", -1)), eps_(attr_float(op, "epsilon", 1e-5f)) {}
  void plan(const std::vector<PlanInput>& in, std::vector<TensorDesc>& out) override {
    need_inputs(type_, in, 2);
    need_dtype(type_, in[0], DType::kF32, "input");
    const Shape& s = in[0].desc->shape;
    const std::int64_t axis = normalize_axis(type_, axis_, static_cast<std::int64_t>(s.size()));
    outer_ = 1;
    inner_ = 1;
    for (std::int64_t d = 0; d < axis; ++d) outer_ *= s[d];
    for (std::size_t d = axis; d < s.size(); ++d) inner_ *= s[d];
    const std::int64_t ns = elements(in[1].desc->shape);
    const std::int64_t nb = opt(in, 2).present() ? elements(in[2].desc->shape) : inner_;
    if ((ns != inner_ && ns != 1) || (nb != inner_ && nb != 1)) fail(type_, "Scale and B must cover the normalised dimensions");
    scale_one_ = ns == 1;
    bias_one_ = nb == 1;
    has_bias_ = opt(in, 2).present();
    out[0] = *in[0].desc;
    Shape stat = s;
    for (std::size_t d = axis; d < s.size(); ++d) stat[d] = 1;
    for (std::size_t o = 1; o < out.size(); ++o) out[o] = {DType::kF32, stat};
  }
  void run(const void* const* in, void* const* out, void*) override {
    const float* x = static_cast<const float*>(in[0]);
    const float* sc = static_cast<const float*>(in[1]);
    const float* b = has_bias_ ? static_cast<const float*>(in[2]) : nullptr;
    float* y = static_cast<float*>(out[0]);
    for (std::int64_t o = 0; o < outer_; ++o) {
      const float* src = x + o * inner_;
      float* dst = y + o * inner_;
      double sum = 0.0;
      for (std::int64_t i = 0; i < inner_; ++i) sum += src[i];
      const float mean = static_cast<float>(sum / inner_);
      double sq = 0.0;
      for (std::int64_t i = 0; i < inner_; ++i) sq += static_cast<double>(src[i] - mean) * (src[i] - mean);
      const float inv = static_cast<float>(1.0 / std::sqrt(sq / inner_ + eps_));
      for (std::int64_t i = 0; i < inner_; ++i) {
        const float v = (src[i] - mean) * inv * sc[scale_one_ ? 0 : i];
        dst[i] = b ? v + b[bias_one_ ? 0 : i] : v;
      }
      if (n_out_ > 1 && out[1]) static_cast<float*>(out[1])[o] = mean;
      if (n_out_ > 2 && out[2]) static_cast<float*>(out[2])[o] = inv;
    }
  }
  void set_outputs(std::size_t n) { n_out_ = n; }

 private:
  std::int64_t axis_;
  float eps_;
  std::int64_t outer_ = 1, inner_ = 1;
  bool scale_one_ = false, bias_one_ = false, has_bias_ = false;
  std::size_t n_out_ = 1;
};

std::unique_ptr<OpKernel> make_layer_norm(const Op& op) {
  auto k = std::make_unique<LayerNorm>(op);
  k->set_outputs(op.outputs.size());
  return k;
}

enum class RedFn { kMean, kL2, kSum, kMax, kMin, kSumSquare };

class Reduce : public Base {
 public:
  Reduce(const Op& op, RedFn fn) : Base(op), op_(op), fn_(fn) {}
  void plan(const std::vector<PlanInput>& in, std::vector<TensorDesc>& out) override {
    need_inputs(type_, in, 1);
    need_dtype(type_, in[0], DType::kF32, "input");
    const Shape& s = in[0].desc->shape;
    const std::int64_t rank = static_cast<std::int64_t>(s.size());
    std::vector<std::int64_t> axes = opt(in, 1).present() ? known_ints(type_, in[1], "axes") : attr_ints(op_, "axes");
    const bool keep = attr_int(op_, "keepdims", 1) != 0;
    std::vector<char> red(rank, 0);
    if (axes.empty()) {
      if (attr_int(op_, "noop_with_empty_axes", 0) != 0) std::fill(red.begin(), red.end(), 0);
      else std::fill(red.begin(), red.end(), 1);
    }
    for (std::int64_t a : axes) red[normalize_axis(type_, a, rank)] = 1;
    Shape r, full = s;
    for (std::int64_t d = 0; d < rank; ++d) {
      if (red[d]) {
        full[d] = 1;
        if (keep) r.push_back(1);
      } else {
        r.push_back(s[d]);
      }
    }
    dims_ = s;
    ostrides_ = broadcast_strides(full, s);
    n_in_ = elements(s);
    n_out_ = elements(full);
    count_ = n_out_ > 0 ? n_in_ / n_out_ : 0;
    out[0] = {DType::kF32, r};
  }
  std::size_t scratch_bytes() const override { return static_cast<std::size_t>(n_out_) * sizeof(double); }
  void run(const void* const* in, void* const* out, void* scratch) override {
    const float* x = static_cast<const float*>(in[0]);
    float* y = static_cast<float*>(out[0]);
    auto* acc = static_cast<double*>(scratch);
    const double init = fn_ == RedFn::kMax ? -INFINITY : fn_ == RedFn::kMin ? INFINITY : 0.0;
    for (std::int64_t i = 0; i < n_out_; ++i) acc[i] = init;
    const std::size_t rank = dims_.size();
    std::vector<std::int64_t> idx(rank, 0);
    std::int64_t o = 0;
    for (std::int64_t i = 0; i < n_in_; ++i) {
      const double v = x[i];
      switch (fn_) {
        case RedFn::kMean:
        case RedFn::kSum: acc[o] += v; break;
        case RedFn::kL2:
        case RedFn::kSumSquare: acc[o] += v * v; break;
        case RedFn::kMax: acc[o] = std::max(acc[o], v); break;
        case RedFn::kMin: acc[o] = std::min(acc[o], v); break;
      }
      for (std::size_t d = rank; d-- > 0;) {
        o += ostrides_[d];
        if (++idx[d] < dims_[d]) break;
        o -= ostrides_[d] * dims_[d];
        idx[d] = 0;
      }
    }
    for (std::int64_t i = 0; i < n_out_; ++i) {
      double v = acc[i];
      if (fn_ == RedFn::kMean) v /= static_cast<double>(count_);
      if (fn_ == RedFn::kL2) v = std::sqrt(v);
      y[i] = static_cast<float>(v);
    }
  }

 private:
  Op op_;
  RedFn fn_;
  Shape dims_, ostrides_;
  std::int64_t n_in_ = 0, n_out_ = 0, count_ = 0;
};

// ---------------------------------------------------------------------------------------
// Registry

template <typename K, auto... Args>
std::unique_ptr<OpKernel> make(const Op& op) {
  return std::make_unique<K>(op, Args...);
}

std::unique_ptr<OpKernel> make_clip(const Op& op) {
  // opset < 11 carried the bounds as attributes; inputs (opset 11+) override them.
  return make_act(op, Act::kClip, attr_float(op, "min", -std::numeric_limits<float>::infinity()),
                  attr_float(op, "max", std::numeric_limits<float>::infinity()));
}

std::unique_ptr<OpKernel> make_gelu(const Op& op) {
  const std::string approx = attr_string(op, "approximate", "none");
  if (approx != "none" && approx != "tanh") unsupported(op.type, "approximate '" + approx + "'");
  return std::make_unique<Unary>(op, approx == "tanh" ? UnFn::kGeluTanh : UnFn::kGelu);
}

std::vector<OpEntry> build_registry() {
  std::vector<OpEntry> r = {
      {"Abs", &make<Unary, UnFn::kAbs>},
      {"Add", &make<Binary, BinFn::kAdd>},
      {"AveragePool", [](const Op& op) -> std::unique_ptr<OpKernel> { return std::make_unique<Pool>(op, false); }},
      {"BatchNormalization", &make<BatchNorm>},
      {"Cast", &make<Cast>},
      {"Clip", &make_clip},
      {"Concat", &make<Concat>},
      {"ConstantOfShape", &make<ConstantOfShape>},
      {"DequantizeLinear", &make_dequantize},
      {"Div", &make<Binary, BinFn::kDiv>},
      {"Dropout", [](const Op& op) -> std::unique_ptr<OpKernel> { return std::make_unique<View>(op, ViewKind::kIdentity); }},
      {"Equal", &make<Equal>},
      {"Erf", &make<Unary, UnFn::kErf>},
      {"Exp", &make<Unary, UnFn::kExp>},
      {"Expand", &make<Expand>},
      {"Flatten", [](const Op& op) -> std::unique_ptr<OpKernel> { return std::make_unique<View>(op, ViewKind::kFlatten); }},
      {"Gather", &make<Gather>},
      {"Gelu", &make_gelu},
      {"GlobalAveragePool", [](const Op& op) -> std::unique_ptr<OpKernel> { return std::make_unique<GlobalPool>(op, false); }},
      {"GlobalMaxPool", [](const Op& op) -> std::unique_ptr<OpKernel> { return std::make_unique<GlobalPool>(op, true); }},
      {"HardSigmoid", [](const Op& op) { return make_act(op, Act::kHardSigmoid, attr_float(op, "alpha", 0.2f), attr_float(op, "beta", 0.5f)); }},
      {"HardSwish", [](const Op& op) { return make_act(op, Act::kHardSwish, 0.0f, 0.0f); }},
      {"Identity", [](const Op& op) -> std::unique_ptr<OpKernel> { return std::make_unique<View>(op, ViewKind::kIdentity); }},
      {"LayerNormalization", &make_layer_norm},
      {"LeakyRelu", [](const Op& op) { return make_act(op, Act::kLeakyRelu, attr_float(op, "alpha", 0.01f), 0.0f); }},
      {"MaxPool", [](const Op& op) -> std::unique_ptr<OpKernel> { return std::make_unique<Pool>(op, true); }},
      {"Mul", &make<Binary, BinFn::kMul>},
      {"Neg", &make<Unary, UnFn::kNeg>},
      {"PRelu", &make<Binary, BinFn::kPrelu>},
      {"Pad", &make<Pad>},
      {"Pow", &make<Binary, BinFn::kPow>},
      {"QuantizeLinear", &make<Quantize>},
      {"ReduceL2", &make<Reduce, RedFn::kL2>},
      {"ReduceMax", &make<Reduce, RedFn::kMax>},
      {"ReduceMean", &make<Reduce, RedFn::kMean>},
      {"ReduceMin", &make<Reduce, RedFn::kMin>},
      {"ReduceSum", &make<Reduce, RedFn::kSum>},
      {"ReduceSumSquare", &make<Reduce, RedFn::kSumSquare>},
      {"Relu", [](const Op& op) { return make_act(op, Act::kRelu, 0.0f, 0.0f); }},
      {"Reshape", [](const Op& op) -> std::unique_ptr<OpKernel> { return std::make_unique<View>(op, ViewKind::kReshape); }},
      {"Resize", &make<Resize>},
      {"Shape", &make<ShapeOp>},
      {"Sigmoid", [](const Op& op) { return make_act(op, Act::kSigmoid, 0.0f, 0.0f); }},
      {"Slice", &make<Slice>},
      {"Softmax", &make<Softmax>},
      {"Split", &make<Split>},
      {"Sqrt", &make<Unary, UnFn::kSqrt>},
      {"Squeeze", [](const Op& op) -> std::unique_ptr<OpKernel> { return std::make_unique<View>(op, ViewKind::kSqueeze); }},
      {"Sub", &make<Binary, BinFn::kSub>},
      {"Tanh", [](const Op& op) { return make_act(op, Act::kTanh, 0.0f, 0.0f); }},
      {"Transpose", &make<Transpose>},
      {"Unsqueeze", [](const Op& op) -> std::unique_ptr<OpKernel> { return std::make_unique<View>(op, ViewKind::kUnsqueeze); }},
      {"Upsample", &make<Resize>},
      {"Where", &make<Where>},
  };
  append_conv_ops(r);
  append_quant_ops(r);
  std::sort(r.begin(), r.end(), [](const OpEntry& a, const OpEntry& b) { return std::string(a.type) < b.type; });
  return r;
}

}  // namespace

const std::vector<OpEntry>& op_registry() {
  static const std::vector<OpEntry> r = build_registry();
  return r;
}

const OpEntry* find_op(const std::string& type) {
  for (const OpEntry& e : op_registry()) {
    if (type == e.type) return &e;
  }
  return nullptr;
}

}  // namespace engine
}  // namespace picoface
