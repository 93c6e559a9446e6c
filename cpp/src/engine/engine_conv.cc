// The convolution family of the native engine: Conv (with the importer's fused activation),
// ConvTranspose, Gemm, MatMul, and the reference GEMM they end in.
//
// Conv picks one of four paths when it is planned, so SIMD kernels from the kernel table
// can replace each separately: pointwise (1x1, stride 1, no padding: one GEMM per image),
// depthwise (one filter per channel: direct row accumulation), direct 3x3 (a stem with at
// most kConv3x3MaxInChannels inputs, where im2col would cost as much as the GEMM) and
// generic (im2col into the scratch buffer, then GEMM per group). Every path ends with the same epilogue: bias, then
// activation, per output channel plane.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "engine_ops.h"
#include "picoface/kernels.h"
#include "thread_pool.h"

namespace picoface {
namespace engine {

void gemm_f32(std::int64_t m, std::int64_t n, std::int64_t k, const float* a, std::int64_t lda,
              const float* b, std::int64_t ldb, float* c, std::int64_t ldc, bool accumulate) {
  kernels().gemm_f32(static_cast<std::size_t>(m), static_cast<std::size_t>(n), static_cast<std::size_t>(k), a,
                     lda, b, ldb, c, ldc, accumulate);
}

namespace {

std::int64_t attr_int(const Op& op, const char* key, std::int64_t fallback) {
  return op.attrs.find(key) ? op.attrs.get_int(key) : fallback;
}
std::vector<std::int64_t> attr_ints(const Op& op, const char* key) {
  return op.attrs.find(key) ? op.attrs.get_ints(key) : std::vector<std::int64_t>{};
}

void need_f32(const std::string& type, const PlanInput& in, const char* what) {
  if (!in.present()) fail(type, std::string(what) + " is required");
  if (in.desc->dtype != DType::kF32) fail(type, std::string(what) + " must be float32, got " + dtype_name(in.desc->dtype));
}

struct Geom {
  std::int64_t in = 1, out = 1, kernel = 1, stride = 1, dilation = 1, pad = 0, pad_end = 0;
};

// Spatial attributes shared by Conv and ConvTranspose, normalised to 2 dimensions (a 1-D op
// is a 2-D one of height 1).
struct Spatial {
  std::string auto_pad;
  std::vector<std::int64_t> kernel, strides, dilations, pads;
  std::int64_t group = 1;

  void read(const Op& op) {
    auto_pad = op.attrs.find("auto_pad") ? op.attrs.get_string("auto_pad") : "NOTSET";
    kernel = attr_ints(op, "kernel_shape");
    strides = attr_ints(op, "strides");
    dilations = attr_ints(op, "dilations");
    pads = attr_ints(op, "pads");
    group = attr_int(op, "group", 1);
    if (auto_pad != "NOTSET" && auto_pad != "VALID" && auto_pad != "SAME_UPPER" && auto_pad != "SAME_LOWER") {
      unsupported(op.type, "auto_pad '" + auto_pad + "'");
    }
  }
  // Checks X and W (float32, 1-D or 2-D, same rank), resolves the spatial attributes for
  // W's kernel and returns that kernel shape.
  Shape check_operands(const std::string& type, const std::vector<PlanInput>& in) {
    if (in.size() < 2) fail(type, "needs X and W");
    need_f32(type, in[0], "X");
    need_f32(type, in[1], "W");
    const Shape& xs = in[0].desc->shape;
    const Shape& ws = in[1].desc->shape;
    if ((xs.size() != 3 && xs.size() != 4) || ws.size() != xs.size()) {
      unsupported(type, "only 1-D and 2-D convolutions: X " + shape_str(xs) + ", W " + shape_str(ws));
    }
    const Shape k(ws.begin() + 2, ws.end());
    resolve(type, k);
    return k;
  }

  // Fills strides/dilations/pads defaults for `sp` spatial dims with kernel `k`.
  void resolve(const std::string& type, const Shape& k) {
    const std::size_t sp = k.size();
    if (!kernel.empty() && Shape(kernel) != k) fail(type, "kernel_shape differs from the weight shape");
    if (strides.empty()) strides.assign(sp, 1);
    if (dilations.empty()) dilations.assign(sp, 1);
    if (pads.empty()) pads.assign(2 * sp, 0);
    if (strides.size() != sp || dilations.size() != sp || pads.size() != 2 * sp) {
      fail(type, "strides, dilations or pads do not match the kernel rank");
    }
    for (std::size_t d = 0; d < sp; ++d) {
      if (strides[d] < 1 || dilations[d] < 1 || k[d] < 1) fail(type, "strides, dilations and kernel must be >= 1");
      // Far beyond any real network; keeps the shape arithmetic clear of overflow.
      if (strides[d] > 65536 || dilations[d] > 65536 || k[d] > 65536) fail(type, "stride, dilation or kernel above 65536");
    }
    for (std::int64_t p : pads) {
      if (p < 0 || p > 65536) fail(type, "pads must be within 0..65536");
    }
    if (group < 1) fail(type, "group must be >= 1");
  }

  // The output size and padding of each spatial axis of X (N, C, spatial...) for the resolved
  // kernel `k`, into geo[2 - k.size() ..] (a 1-D convolution is a 2-D one of height 1);
  // appends the output sizes to `out_shape`.
  void output_geometry(const std::string& type, const Shape& xs, const Shape& k, Geom* geo, Shape& out_shape) const {
    const std::size_t sp = k.size();
    geo[0] = Geom{};
    geo[1] = Geom{};
    for (std::size_t d = 0; d < sp; ++d) {
      Geom& g = geo[2 - sp + d];
      g.in = xs[2 + d];
      g.kernel = k[d];
      g.stride = strides[d];
      g.dilation = dilations[d];
      const std::int64_t eff = (g.kernel - 1) * g.dilation + 1;
      if (auto_pad == "NOTSET" || auto_pad == "VALID") {
        if (auto_pad == "NOTSET") {
          g.pad = pads[d];
          g.pad_end = pads[d + sp];
        }
        const std::int64_t span = g.in + g.pad + g.pad_end - eff;
        if (span < 0) fail(type, "kernel larger than the padded input " + shape_str(xs));
        g.out = span / g.stride + 1;
      } else {
        g.out = (g.in + g.stride - 1) / g.stride;
        const std::int64_t total = std::max<std::int64_t>(0, (g.out - 1) * g.stride + eff - g.in);
        g.pad = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
        g.pad_end = total - g.pad;
      }
      out_shape.push_back(g.out);
    }
  }
};

class Conv : public OpKernel {
 public:
  explicit Conv(const Op& op) : type_(op.type) {
    sp_.read(op);
    const std::string act = op.attrs.find("activation") ? op.attrs.get_string("activation") : "";
    const Value* a = op.attrs.find("activation_alpha");
    const Value* b = op.attrs.find("activation_beta");
    auto fa = [&](float d) { return a ? static_cast<float>(op.attrs.get_float("activation_alpha")) : d; };
    auto fb = [&](float d) { return b ? static_cast<float>(op.attrs.get_float("activation_beta")) : d; };
    if (act.empty() || act == "none") act_.act = Act::kNone;
    else if (act == "relu") act_.act = Act::kRelu;
    else if (act == "leaky_relu") act_ = {Act::kLeakyRelu, fa(0.01f), 0.0f};
    else if (act == "sigmoid") act_.act = Act::kSigmoid;
    else if (act == "hard_sigmoid") act_ = {Act::kHardSigmoid, fa(0.2f), fb(0.5f)};
    else if (act == "hard_swish") act_.act = Act::kHardSwish;
    else if (act == "tanh") act_.act = Act::kTanh;
    else if (act == "clip") act_ = {Act::kClip, fa(-std::numeric_limits<float>::infinity()), fb(std::numeric_limits<float>::infinity())};
    else if (act == "prelu") act_.act = Act::kPrelu;
    else unsupported(type_, "fused activation '" + act + "'");
    switch (act_.act) {
      case Act::kNone: case Act::kPrelu: break;
      case Act::kRelu: linear_act_.lo = 0.0f; break;
      case Act::kLeakyRelu: linear_act_.neg_slope = act_.alpha; break;
      case Act::kClip: linear_act_.lo = act_.alpha; linear_act_.hi = act_.beta; break;
      default: linear_ = false; break;
    }
  }

  void plan(const std::vector<PlanInput>& in, std::vector<TensorDesc>& out) override {
    pw_ = nullptr;
    threads_ = worker_count();
    const Shape k = sp_.check_operands(type_, in);
    const Shape& xs = in[0].desc->shape;
    const Shape& ws = in[1].desc->shape;
    n_ = xs[0];
    c_ = xs[1];
    m_ = ws[0];
    g_ = sp_.group;
    if (c_ % g_ != 0 || m_ % g_ != 0 || ws[1] != c_ / g_) {
      fail(type_, "X " + shape_str(xs) + " and W " + shape_str(ws) + " disagree for group " + std::to_string(g_));
    }
    Shape r = {n_, m_};
    sp_.output_geometry(type_, xs, k, geo_, r);
    const PlanInput none;
    const PlanInput& bias = in.size() > 2 ? in[2] : none;
    has_bias_ = bias.present();
    if (has_bias_) {
      need_f32(type_, bias, "B");
      if (elements(bias.desc->shape) != m_) fail(type_, "B must have " + std::to_string(m_) + " elements");
    }
    if (act_.act == Act::kPrelu) {
      if (in.size() < 4 || !in[3].present()) fail(type_, "fused prelu needs the slope as input 3");
      need_f32(type_, in[3], "prelu slope");
      const std::int64_t ns = elements(in[3].desc->shape);
      if (ns != m_ && ns != 1) fail(type_, "prelu slope must have 1 or " + std::to_string(m_) + " elements");
      slope_one_ = ns == 1;
    }
    const Geom& gy = geo_[0];
    const Geom& gx = geo_[1];
    const bool unit = gy.kernel == 1 && gx.kernel == 1 && gy.stride == 1 && gx.stride == 1 && gy.pad == 0 &&
                      gx.pad == 0 && gy.pad_end == 0 && gx.pad_end == 0;
    const bool small3x3 = g_ == 1 && c_ <= kConv3x3MaxInChannels && gy.kernel == 3 && gx.kernel == 3 &&
                          gy.dilation == 1 && gx.dilation == 1 && gy.pad == 1 && gx.pad == 1 && gy.pad_end == 1 &&
                          gx.pad_end == 1 && gy.stride == gx.stride && (gx.stride == 1 || gx.stride == 2);
    if (unit && g_ == 1) path_ = Path::kPointwise;
    else if (small3x3) path_ = Path::kDirect3x3;
    else if (g_ == c_ && m_ == c_) {
      const bool k3 = gy.kernel == 3 && gx.kernel == 3 && gy.dilation == 1 && gx.dilation == 1 && gy.pad == 1 &&
                      gx.pad == 1 && gy.stride == gx.stride && (gx.stride == 1 || gx.stride == 2);
      path_ = k3 ? Path::kDepthwise3x3 : Path::kDepthwise;
    }
    else path_ = Path::kGeneric;
    kdim_ = (c_ / g_) * gy.kernel * gx.kernel;
    out[0] = {DType::kF32, r};
  }

  std::size_t scratch_bytes() const override {
    // One slice per worker thread.
    switch (path_) {
      case Path::kGeneric: return threads_ * static_cast<std::size_t>(kdim_ * block_rows() * geo_[1].out) * sizeof(float);
      case Path::kDepthwise3x3: return threads_ * dw_rows() * dw_row_len() * sizeof(float);
      default: return 0;
    }
  }

  // A pointwise Conv feeding this depthwise 3x3 one is computed a band of rows at a time into
  // a ring of padded rows that the depthwise kernel reads directly: the intermediate tensor
  // (as large as the input of the pair) never goes out to memory and back. Only for rows
  // wide enough that one GEMM per row stays efficient.
  bool absorb_producer(OpKernel& producer, std::size_t producer_inputs) override {
    auto* pw = dynamic_cast<Conv*>(&producer);
    if (!pw || path_ != Path::kDepthwise3x3 || !linear_ || pw->path_ != Path::kPointwise || !pw->linear_ ||
        pw->m_ != c_ || pw->n_ != n_ || geo_[1].in < kFuseMinWidth) {
      return false;
    }
    pw_ = pw;
    pw_inputs_ = producer_inputs;
    return true;
  }

  std::int64_t macs() const override { return n_ * m_ * geo_[0].out * geo_[1].out * kdim_; }

  void run(const void* const* in, void* const* out, void* scratch) override {
    if (pw_) {
      run_fused(in, static_cast<float*>(out[0]), static_cast<float*>(scratch));
      return;
    }
    const float* x = static_cast<const float*>(in[0]);
    const float* w = static_cast<const float*>(in[1]);
    const float* bias = has_bias_ ? static_cast<const float*>(in[2]) : nullptr;
    const float* slope = act_.act == Act::kPrelu ? static_cast<const float*>(in[3]) : nullptr;
    float* y = static_cast<float*>(out[0]);
    const Geom& gy = geo_[0];
    const Geom& gx = geo_[1];
    const std::int64_t in_plane = gy.in * gx.in, out_plane = gy.out * gx.out;
    // Each path splits its work into tasks for the engine's worker threads (inline with one):
    // column blocks, channels, output-channel chunks, or (group, row block) pairs.
    const KernelTable& kt = kernels();
    for (std::int64_t n = 0; n < n_; ++n) {
      const float* xn = x + n * c_ * in_plane;
      float* yn = y + n * m_ * out_plane;
      switch (path_) {
        case Path::kPointwise: {
          const std::int64_t block = column_block(out_plane);
          parallel_for((out_plane + block - 1) / block, [&](std::int64_t t, int) {
            const std::int64_t j0 = t * block, nj = std::min(block, out_plane - j0);
            if (linear_) {  // the epilogue applied to the register tiles
              kt.conv_gemm_f32(m_, nj, c_, w, c_, xn + j0, in_plane, yn + j0, out_plane, row_epilogue(bias, slope, 0));
              return;
            }
            // Finished by the epilogue while the block is in cache.
            gemm_f32(m_, nj, c_, w, c_, xn + j0, in_plane, yn + j0, out_plane, false);
            epilogue(bias, slope, yn, out_plane, j0, nj);
          });
          continue;
        }
        case Path::kDepthwise3x3:
          parallel_for(c_, [&](std::int64_t c, int worker) {
            BiasActParams p;
            if (linear_) p = channel_params(bias, slope, c);
            dwconv3x3_plane_f32(kt, xn + c * in_plane, static_cast<int>(gy.in), static_cast<int>(gx.in), w + c * 9,
                                static_cast<int>(gx.stride), yn + c * out_plane, static_cast<int>(gy.out),
                                static_cast<int>(gx.out), p, static_cast<float*>(scratch) + worker * 3 * dw_row_len());
            if (!linear_) epilogue(bias, slope, yn, out_plane, 0, out_plane, c, c + 1);  // while in cache
          });
          continue;
        case Path::kDirect3x3: {
          // Non-linear activations take the plain sum and the epilogue, per chunk.
          const std::int64_t chunk = (m_ + threads_ - 1) / threads_;
          parallel_for((m_ + chunk - 1) / chunk, [&](std::int64_t t, int) {
            const std::int64_t m0 = t * chunk, mc = std::min(chunk, m_ - m0);
            kt.conv3x3_f32(xn, static_cast<int>(c_), static_cast<int>(gy.in), static_cast<int>(gx.in), w + m0 * c_ * 9,
                           static_cast<int>(mc), static_cast<int>(gx.stride), yn + m0 * out_plane,
                           static_cast<int>(gy.out), static_cast<int>(gx.out),
                           linear_ ? row_epilogue(bias, slope, m0) : RowBiasAct{});
            if (!linear_) epilogue(bias, slope, yn, out_plane, 0, out_plane, m0, m0 + mc);
          });
          continue;
        }
        case Path::kDepthwise:
          parallel_for(c_, [&](std::int64_t c, int) {
            depthwise_plane(xn + c * in_plane, w + c * gy.kernel * gx.kernel, yn + c * out_plane);
            epilogue(bias, slope, yn, out_plane, 0, out_plane, c, c + 1);
          });
          continue;
        case Path::kGeneric: {
          const std::int64_t cg = c_ / g_, mg = m_ / g_, rows = block_rows();
          const std::int64_t row_blocks = (gy.out + rows - 1) / rows;
          parallel_for(g_ * row_blocks, [&](std::int64_t t, int worker) {
            const std::int64_t g = t / row_blocks, oy0 = (t % row_blocks) * rows;
            float* col = static_cast<float*>(scratch) + worker * kdim_ * rows * gx.out;
            const float* wg = w + g * mg * kdim_;
            const std::int64_t oy1 = std::min(gy.out, oy0 + rows), nj = (oy1 - oy0) * gx.out;
            im2col(xn + g * cg * in_plane, cg, oy0, oy1, col);
            float* yg = yn + g * mg * out_plane + oy0 * gx.out;
            if (linear_) {
              kt.conv_gemm_f32(mg, nj, kdim_, wg, kdim_, col, nj, yg, out_plane, row_epilogue(bias, slope, g * mg));
              return;
            }
            gemm_f32(mg, nj, kdim_, wg, kdim_, col, nj, yg, out_plane, false);
            for (std::int64_t m = g * mg; m < (g + 1) * mg; ++m) {
              epilogue(bias, slope, yn, out_plane, oy0 * gx.out, nj, m, m + 1);
            }
          });
          continue;
        }
      }
    }
  }

 private:
  enum class Path { kPointwise, kDepthwise3x3, kDirect3x3, kDepthwise, kGeneric };
  static constexpr std::int64_t kFuseMinWidth = 128;  // measured: narrower rows ran slower fused (YuNet-s, W = 80 and 40)
  static constexpr std::size_t kFuseRingBytes = 192 * 1024;  // the ring of padded rows stays in L2

  std::size_t dw_row_len() const {
    return dw_row_floats(static_cast<int>(geo_[1].in), static_cast<int>(geo_[1].out), static_cast<int>(geo_[1].stride));
  }
  // Output rows per band of the fused pair, and the ring rows they need: each band of b
  // output rows reads (b - 1)*stride + 3 rows of the intermediate, of which all but the
  // first 3 - stride are new; b*stride + 2 ring rows hold them without overwriting a row
  // the band still reads. Unfused, the ring is the three rows of dwconv3x3_plane_f32.
  std::int64_t dw_band() const {
    const std::int64_t s = geo_[1].stride;
    const std::int64_t fit = static_cast<std::int64_t>(kFuseRingBytes / (c_ * dw_row_len() * sizeof(float)));
    return std::max<std::int64_t>(1, std::min(geo_[0].out, (fit - 2) / s));
  }
  std::size_t dw_rows() const {
    return pw_ ? static_cast<std::size_t>(c_ * (dw_band() * geo_[1].stride + 2)) : 3;
  }

  // The fused pointwise -> depthwise 3x3 pair (absorb_producer): in[] holds the pointwise
  // Conv's inputs, then this op's inputs after X.
  void run_fused(const void* const* in, float* y, float* ring) const {
    const Conv& pw = *pw_;
    auto own = [&](std::size_t i) { return static_cast<const float*>(in[pw_inputs_ + i - 1]); };
    const float* x = static_cast<const float*>(in[0]);
    const float* w1 = static_cast<const float*>(in[1]);
    const RowBiasAct e1 = pw.row_epilogue(pw.has_bias_ ? static_cast<const float*>(in[2]) : nullptr,
                                          pw.act_.act == Act::kPrelu ? static_cast<const float*>(in[3]) : nullptr, 0);
    const float* w2 = own(1);
    const float* bias = has_bias_ ? own(2) : nullptr;
    const float* slope = act_.act == Act::kPrelu ? own(3) : nullptr;
    const KernelTable& kt = kernels();
    const Geom& gy = geo_[0];
    const Geom& gx = geo_[1];
    const std::int64_t h = gy.in, w = gx.in, s = gx.stride, in_plane = h * w, out_plane = gy.out * gx.out;
    const std::int64_t band = dw_band(), cap = band * s + 2, len = static_cast<std::int64_t>(dw_row_len());
    // Workers take ranges of output rows, each with its own ring (re-computing the one or two
    // intermediate rows a range shares with the one above).
    const std::int64_t per = (gy.out + threads_ - 1) / threads_;
    parallel_for(n_ * ((gy.out + per - 1) / per), [&](std::int64_t t, int worker) {
      const std::int64_t ranges = (gy.out + per - 1) / per, n = t / ranges;
      const std::int64_t first = (t % ranges) * per, last = std::min(gy.out, first + per);
      float* rw = ring + worker * c_ * cap * len;
      // Pads of the ring rows stay zero: the GEMM writes columns 1..w of each row only.
      std::fill(rw, rw + c_ * cap * len, 0.0f);
      const float* xn = x + n * pw.c_ * in_plane;
      float* yn = y + n * m_ * out_plane;
      std::int64_t done = std::max<std::int64_t>(0, first * s - 1);  // next intermediate row to compute
      for (std::int64_t oy0 = first; oy0 < last; oy0 += band) {
        const std::int64_t oy1 = std::min(last, oy0 + band);
        const std::int64_t need = std::min(h, (oy1 - 1) * s + 2);
        for (; done < need; ++done) {
          kt.conv_gemm_f32(c_, w, pw.c_, w1, pw.c_, xn + done * w, in_plane, rw + (done % cap) * len + 1, cap * len, e1);
        }
        for (std::int64_t c = 0; c < c_; ++c) {
          const BiasActParams p = channel_params(bias, slope, c);
          const float* rc = rw + c * cap * len;
          for (std::int64_t oy = oy0; oy < oy1; ++oy) {
            const float* rows[3];
            for (int ky = 0; ky < 3; ++ky) {
              const std::int64_t iy = oy * s - 1 + ky;
              rows[ky] = iy >= 0 && iy < h ? rc + (iy % cap) * len : nullptr;
            }
            kt.dwconv3x3_row_f32(rows, w2 + c * 9, static_cast<int>(s), yn + c * out_plane + oy * gx.out,
                                 static_cast<int>(gx.out), p);
          }
        }
      }
    });
  }
  static constexpr std::int64_t kColumnBlock = 1024;
  // Output columns per pointwise task: kColumnBlock, or smaller so every worker gets some.
  std::int64_t column_block(std::int64_t out_plane) const {
    const std::int64_t share = (out_plane + threads_ - 1) / threads_;
    return std::min(kColumnBlock, std::max<std::int64_t>(64, (share + 63) / 64 * 64));
  }
  static constexpr std::int64_t kIm2colBlockFloats = 32 * 1024;  // 128 KiB

  // The piecewise-linear activations (none, relu, leaky relu, clip, prelu) as the kernels'
  // bias_act step, for channel c / for rows from channel m0 on.
  BiasActParams channel_params(const float* bias, const float* slope, std::int64_t c) const {
    BiasActParams p = linear_act_;
    if (bias) p.bias = bias[c];
    if (slope) p.neg_slope = slope[slope_one_ ? 0 : c];
    return p;
  }
  RowBiasAct row_epilogue(const float* bias, const float* slope, std::int64_t m0) const {
    RowBiasAct e;
    e.bias = bias ? bias + m0 : nullptr;
    e.slopes = slope && !slope_one_ ? slope + m0 : nullptr;
    e.neg_slope = slope && slope_one_ ? slope[0] : linear_act_.neg_slope;
    e.lo = linear_act_.lo;
    e.hi = linear_act_.hi;
    return e;
  }

  // Bias then activation per output channel plane: the kernel table's bias_act_f32 for the
  // piecewise-linear activations (none, relu, leaky relu, clip, prelu), apply_act otherwise.
  // Columns [j0, j0 + nj) of every plane, so callers can run it on a block still in cache.
  // Channels [m0, m1) (all by default).
  void epilogue(const float* bias, const float* slope, float* yn, std::int64_t out_plane, std::int64_t j0,
                std::int64_t nj, std::int64_t m0 = 0, std::int64_t m1 = -1) const {
    const KernelTable& kt = kernels();
    for (std::int64_t m = m0; m < (m1 < 0 ? m_ : m1); ++m) {
      float* plane = yn + m * out_plane + j0;
      if (linear_) {
        const BiasActParams p = channel_params(bias, slope, m);
        if (p.bias != 0.0f || p.neg_slope != 1.0f || act_.act != Act::kNone) {
          kt.bias_act_f32(plane, static_cast<std::size_t>(nj), p);
        }
        continue;
      }
      if (bias) kt.bias_act_f32(plane, static_cast<std::size_t>(nj), BiasActParams{bias[m]});
      apply_act(act_, plane, nj);
    }
  }

  // Output columns ox with 0 <= ox*stride - pad + offset < in (offset = kx*dilation).
  static void valid_range(const Geom& g, std::int64_t offset, std::int64_t* lo, std::int64_t* hi) {
    const std::int64_t a = g.pad - offset;  // ox*stride >= a
    *lo = a <= 0 ? 0 : (a + g.stride - 1) / g.stride;
    const std::int64_t b = g.in - 1 + g.pad - offset;  // ox*stride <= b
    *hi = b < 0 ? 0 : std::min(g.out, b / g.stride + 1);
    if (*lo > *hi) *lo = *hi;
  }

  void depthwise_plane(const float* src, const float* w, float* dst) const {
    const Geom& gy = geo_[0];
    const Geom& gx = geo_[1];
    std::fill(dst, dst + gy.out * gx.out, 0.0f);
    for (std::int64_t ky = 0; ky < gy.kernel; ++ky) {
      std::int64_t ylo, yhi;
      valid_range(gy, ky * gy.dilation, &ylo, &yhi);
      for (std::int64_t kx = 0; kx < gx.kernel; ++kx) {
        const float wv = w[ky * gx.kernel + kx];
        std::int64_t xlo, xhi;
        valid_range(gx, kx * gx.dilation, &xlo, &xhi);
        for (std::int64_t oy = ylo; oy < yhi; ++oy) {
          const float* row = src + (oy * gy.stride - gy.pad + ky * gy.dilation) * gx.in - gx.pad + kx * gx.dilation;
          float* o = dst + oy * gx.out;
          if (gx.stride == 1) {
            for (std::int64_t ox = xlo; ox < xhi; ++ox) o[ox] += wv * row[ox];
          } else {
            for (std::int64_t ox = xlo; ox < xhi; ++ox) o[ox] += wv * row[ox * gx.stride];
          }
        }
      }
    }
  }

  // Output rows [oy0, oy1) of the im2col matrix:
  //   col[(c, ky, kx)][(oy - oy0) * out_w + ox] = x[c][iy][ix], zero outside the input.
  void im2col(const float* x, std::int64_t channels, std::int64_t oy0, std::int64_t oy1, float* col) const {
    const Geom& gy = geo_[0];
    const Geom& gx = geo_[1];
    const std::int64_t cols = (oy1 - oy0) * gx.out;
    for (std::int64_t c = 0; c < channels; ++c) {
      const float* plane = x + c * gy.in * gx.in;
      for (std::int64_t ky = 0; ky < gy.kernel; ++ky) {
        std::int64_t ylo, yhi;
        valid_range(gy, ky * gy.dilation, &ylo, &yhi);
        ylo = std::min(std::max(ylo, oy0), oy1);
        yhi = std::max(std::min(yhi, oy1), ylo);
        for (std::int64_t kx = 0; kx < gx.kernel; ++kx) {
          std::int64_t xlo, xhi;
          valid_range(gx, kx * gx.dilation, &xlo, &xhi);
          float* dst = col - oy0 * gx.out;  // indexed by absolute output row
          col += cols;
          std::fill(dst + oy0 * gx.out, dst + ylo * gx.out, 0.0f);
          for (std::int64_t oy = ylo; oy < yhi; ++oy) {
            float* o = dst + oy * gx.out;
            const float* row = plane + (oy * gy.stride - gy.pad + ky * gy.dilation) * gx.in - gx.pad + kx * gx.dilation;
            std::fill(o, o + xlo, 0.0f);
            if (gx.stride == 1) {
              std::memcpy(o + xlo, row + xlo, (xhi - xlo) * sizeof(float));
            } else if (gx.stride == 2) {  // constant stride: the compiler vectorises it
              for (std::int64_t ox = xlo; ox < xhi; ++ox) o[ox] = row[ox * 2];
            } else {
              for (std::int64_t ox = xlo; ox < xhi; ++ox) o[ox] = row[ox * gx.stride];
            }
            std::fill(o + xhi, o + gx.out, 0.0f);
          }
          std::fill(dst + yhi * gx.out, dst + oy1 * gx.out, 0.0f);
        }
      }
    }
  }

  // Output rows per im2col block: the block (kdim_ x rows*out_w floats) stays in L2 while
  // the GEMM reads it, instead of a whole-image matrix streaming through memory.
  std::int64_t block_rows() const {
    const std::int64_t per_row = std::max<std::int64_t>(1, kdim_ * geo_[1].out);
    return std::max<std::int64_t>(1, std::min(geo_[0].out, kIm2colBlockFloats / per_row));
  }

  std::string type_;
  Spatial sp_;
  ActParams act_;
  bool linear_ = true;         // act_ is piecewise linear: fused into the kernels as linear_act_
  BiasActParams linear_act_;   // bias 0; slope from the slope input for prelu
  bool has_bias_ = false, slope_one_ = false;
  Geom geo_[2];
  std::int64_t n_ = 0, c_ = 0, m_ = 0, g_ = 1, kdim_ = 0;
  Path path_ = Path::kGeneric;
  const Conv* pw_ = nullptr;  // the absorbed pointwise Conv, for this plan
  std::size_t pw_inputs_ = 0;
  std::int64_t threads_ = 1;  // worker threads at plan time: tasks and scratch slices
};

// ONNX QLinearConv (x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point,
// B) on int8 tensors, with the picoface scheme (picoface/kernels.h, above RequantParams):
// x and y int8 asymmetric per tensor, w int8 symmetric (zero points 0) per tensor or per
// output channel, B int32 at scale x_scale * w_scale[m]. The fused `activation` extension
// takes relu or clip, applied by the requantisation clamp, and leaky_relu (activation_alpha)
// or prelu (float32 slope as input 9, one per output channel or one for all), applied by the
// requantisation's negative scale. Requantisation is the kernels' rule: float(acc) * s with
// s = x_scale * w_scale[m] / y_scale (times the slope for acc < 0), evaluated in float32,
// round half to even, + y_zero_point, clamp. Paths: pointwise (conv_gemm_s8 per column block), depthwise
// 3x3 pad 1 stride 1/2 (dwconv3x3_plane_s8) and generic (int8 im2col with padding z_in,
// then conv_gemm_s8 per group).
class QLinearConv : public OpKernel {
 public:
  explicit QLinearConv(const Op& op) : type_(op.type) {
    sp_.read(op);
    act_ = op.attrs.find("activation") ? op.attrs.get_string("activation") : "none";
    if (act_ == "clip") {
      lo_f_ = op.attrs.find("activation_alpha") ? static_cast<float>(op.attrs.get_float("activation_alpha"))
                                                 : -std::numeric_limits<float>::infinity();
      hi_f_ = op.attrs.find("activation_beta") ? static_cast<float>(op.attrs.get_float("activation_beta"))
                                                : std::numeric_limits<float>::infinity();
    } else if (act_ == "leaky_relu") {
      alpha_ = op.attrs.find("activation_alpha") ? static_cast<float>(op.attrs.get_float("activation_alpha")) : 0.01f;
    } else if (act_ != "none" && act_ != "relu" && act_ != "prelu") {
      unsupported(type_, "fused activation '" + act_ + "' (int8 takes relu, clip, leaky_relu or prelu)");
    }
  }

  void plan(const std::vector<PlanInput>& in, std::vector<TensorDesc>& out) override {
    pw_ = nullptr;
    threads_ = worker_count();
    if (in.size() < 8) fail(type_, "needs x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point");
    auto need = [&](std::size_t i, DType t, const char* what, bool known) {
      if (!in[i].present()) fail(type_, std::string(what) + " is required");
      if (in[i].desc->dtype != t) {
        fail(type_, std::string(what) + " must be " + dtype_name(t) + ", got " + dtype_name(in[i].desc->dtype));
      }
      if (known && !in[i].value) unsupported(type_, std::string(what) + " must be a constant");
    };
    need(0, DType::kI8, "x", false);
    need(1, DType::kF32, "x_scale", true);
    need(2, DType::kI8, "x_zero_point", true);
    need(3, DType::kI8, "w", true);
    need(4, DType::kF32, "w_scale", true);
    need(5, DType::kI8, "w_zero_point", true);
    need(6, DType::kF32, "y_scale", true);
    need(7, DType::kI8, "y_zero_point", true);
    const Shape& xs = in[0].desc->shape;
    const Shape& ws = in[3].desc->shape;
    if (xs.size() != 4 || ws.size() != 4) unsupported(type_, "only 2-D convolutions: X " + shape_str(xs) + ", W " + shape_str(ws));
    const Shape k(ws.begin() + 2, ws.end());
    sp_.resolve(type_, k);
    n_ = xs[0];
    c_ = xs[1];
    m_ = ws[0];
    g_ = sp_.group;
    if (c_ % g_ != 0 || m_ % g_ != 0 || ws[1] != c_ / g_) {
      fail(type_, "X " + shape_str(xs) + " and W " + shape_str(ws) + " disagree for group " + std::to_string(g_));
    }
    Shape r = {n_, m_};
    sp_.output_geometry(type_, xs, k, geo_, r);
    kdim_ = (c_ / g_) * geo_[0].kernel * geo_[1].kernel;
    if (kdim_ > 65536) unsupported(type_, "more than 65536 taps per output");
    auto scalar = [&](std::size_t i, const char* what) {
      if (elements(in[i].desc->shape) != 1) unsupported(type_, std::string(what) + " must be per tensor");
    };
    scalar(1, "x_scale");
    scalar(2, "x_zero_point");
    scalar(6, "y_scale");
    scalar(7, "y_zero_point");
    const std::int64_t nws = elements(in[4].desc->shape);
    if (nws != 1 && nws != m_) fail(type_, "w_scale must have 1 or " + std::to_string(m_) + " elements");
    if (elements(in[5].desc->shape) != nws) fail(type_, "w_zero_point must have as many elements as w_scale");
    const auto* wzp = static_cast<const std::int8_t*>(in[5].value);
    for (std::int64_t i = 0; i < nws; ++i) {
      if (wzp[i] != 0) unsupported(type_, "w_zero_point must be 0 (symmetric weights)");
    }
    const float xs_ = *static_cast<const float*>(in[1].value);
    const float ys = *static_cast<const float*>(in[6].value);
    const auto* wsc = static_cast<const float*>(in[4].value);
    z_in_ = *static_cast<const std::int8_t*>(in[2].value);
    z_out_ = *static_cast<const std::int8_t*>(in[7].value);
    if (!(xs_ > 0.0f) || !(ys > 0.0f) || !std::isfinite(xs_) || !std::isfinite(ys)) {
      fail(type_, "x_scale and y_scale must be finite and > 0");
    }
    scale_.assign(static_cast<std::size_t>(m_), 0.0f);
    for (std::int64_t i = 0; i < m_; ++i) {
      const float sw = wsc[nws == 1 ? 0 : i];
      if (!(sw >= 0.0f) || !std::isfinite(sw)) fail(type_, "w_scale must be finite and >= 0");
      scale_[i] = xs_ * sw / ys;
      if (!std::isfinite(scale_[i])) fail(type_, "requantisation scale x_scale * w_scale / y_scale overflows");
    }
    neg_scale_.clear();
    if (act_ == "prelu" || act_ == "leaky_relu") {
      const float* slope = &alpha_;
      std::int64_t ns = 1;
      if (act_ == "prelu") {
        if (in.size() < 10 || !in[9].present()) fail(type_, "fused prelu needs the slope as input 9");
        need(9, DType::kF32, "prelu slope", true);
        ns = elements(in[9].desc->shape);
        if (ns != m_ && ns != 1) fail(type_, "prelu slope must have 1 or " + std::to_string(m_) + " elements");
        slope = static_cast<const float*>(in[9].value);
      }
      neg_scale_.resize(static_cast<std::size_t>(m_));
      for (std::int64_t i = 0; i < m_; ++i) {
        neg_scale_[i] = scale_[i] * slope[ns == 1 ? 0 : i];
        if (!std::isfinite(neg_scale_[i])) fail(type_, "requantisation scale times the negative slope is not finite");
      }
    }
    // bias' = B - z_in * sum(w): padding taps read z_in, so the fold is exact everywhere.
    const auto* w = static_cast<const std::int8_t*>(in[3].value);
    const std::int32_t* b = nullptr;
    if (in.size() > 8 && in[8].present()) {
      need(8, DType::kI32, "B", true);
      if (elements(in[8].desc->shape) != m_) fail(type_, "B must have " + std::to_string(m_) + " elements");
      b = static_cast<const std::int32_t*>(in[8].value);
    }
    bias_.assign(static_cast<std::size_t>(m_), 0);
    for (std::int64_t i = 0; i < m_; ++i) {
      std::int64_t sum = 0;
      for (std::int64_t p = 0; p < kdim_; ++p) sum += w[i * kdim_ + p];
      const std::int64_t v = (b ? b[i] : 0) - static_cast<std::int64_t>(z_in_) * sum;
      if (v <= -(std::int64_t(1) << 30) || v >= (std::int64_t(1) << 30)) {
        unsupported(type_, "folded bias beyond the int32 accumulator's range");
      }
      bias_[i] = static_cast<std::int32_t>(v);
    }
    // Fused activation as the requantisation clamp (quantised bounds, saturated to int8).
    auto quant = [&](float v) {
      if (std::isinf(v)) return v < 0 ? -128 : 127;
      const double q = std::nearbyint(static_cast<double>(v) / ys) + z_out_;
      return static_cast<int>(std::min(127.0, std::max(-128.0, q)));
    };
    int lo = -128, hi = 127;
    if (act_ == "relu") lo = z_out_;
    if (act_ == "clip") {
      lo = std::max(lo, quant(lo_f_));
      hi = std::min(hi, quant(hi_f_));
    }
    if (lo > hi) fail(type_, "clip bounds are empty after quantisation");
    lo_ = static_cast<std::int8_t>(lo);
    hi_ = static_cast<std::int8_t>(hi);
    const Geom& gy = geo_[0];
    const Geom& gx = geo_[1];
    const bool unit = gy.kernel == 1 && gx.kernel == 1 && gy.stride == 1 && gx.stride == 1 && gy.pad == 0 &&
                      gx.pad == 0 && gy.pad_end == 0 && gx.pad_end == 0;
    const bool dw3 = g_ == c_ && m_ == c_ && gy.kernel == 3 && gx.kernel == 3 && gy.dilation == 1 && gx.dilation == 1 &&
                     gy.pad == 1 && gx.pad == 1 && gy.stride == gx.stride && (gx.stride == 1 || gx.stride == 2) &&
                     gy.out <= (gy.in + 1) / gy.stride + 1 && gx.out <= (gx.in + 1) / gx.stride + 1 &&
                     gy.pad_end <= 1 && gx.pad_end <= 1;
    path_ = unit && g_ == 1 ? Path::kPointwise : dw3 ? Path::kDepthwise3x3 : Path::kGeneric;
    out[0] = {DType::kI8, r};
  }

  std::size_t scratch_bytes() const override {
    switch (path_) {
      case Path::kGeneric: return threads_ * static_cast<std::size_t>(kdim_ * block_rows() * geo_[1].out);
      case Path::kDepthwise3x3:
        return threads_ * (pw_ ? static_cast<std::size_t>(c_ * fused_cap() + 1) : 4) * dw_len();
      default: return 0;
    }
  }

  // The int8 twin of Conv's fusion: a pointwise QLinearConv feeding this depthwise 3x3 one
  // writes a band of int8 rows (at the pair's middle zero point) into a ring of padded rows
  // that dwconv3x3_row_s8 reads directly. Same integers as unfused: the GEMM and the row
  // kernel see exactly the operands they would see through the stored tensor.
  bool absorb_producer(OpKernel& producer, std::size_t producer_inputs) override {
    auto* pw = dynamic_cast<QLinearConv*>(&producer);
    if (!pw || path_ != Path::kDepthwise3x3 || pw->path_ != Path::kPointwise || pw->m_ != c_ ||
        pw->n_ != n_ || pw->z_out_ != z_in_ || geo_[1].in < kFuseMinWidth) {
      return false;
    }
    pw_ = pw;
    pw_inputs_ = producer_inputs;
    return true;
  }

  std::int64_t macs() const override { return n_ * m_ * geo_[0].out * geo_[1].out * kdim_; }

  void run(const void* const* in, void* const* out, void* scratch) override {
    if (pw_) {
      run_fused(in, static_cast<std::int8_t*>(out[0]), static_cast<std::int8_t*>(scratch));
      return;
    }
    const auto* x = static_cast<const std::int8_t*>(in[0]);
    const auto* w = static_cast<const std::int8_t*>(in[3]);
    auto* y = static_cast<std::int8_t*>(out[0]);
    const Geom& gy = geo_[0];
    const Geom& gx = geo_[1];
    const std::int64_t in_plane = gy.in * gx.in, out_plane = gy.out * gx.out;
    const KernelTable& kt = kernels();
    for (std::int64_t n = 0; n < n_; ++n) {
      const std::int8_t* xn = x + n * c_ * in_plane;
      std::int8_t* yn = y + n * m_ * out_plane;
      switch (path_) {
        case Path::kPointwise: {
          const std::int64_t share = (out_plane + threads_ - 1) / threads_;
          const std::int64_t block = std::min<std::int64_t>(1024, std::max<std::int64_t>(64, (share + 63) / 64 * 64));
          parallel_for((out_plane + block - 1) / block, [&](std::int64_t t, int) {
            const std::int64_t j0 = t * block, nj = std::min(block, out_plane - j0);
            kt.conv_gemm_s8(m_, nj, c_, w, c_, xn + j0, in_plane, bias_.data(), yn + j0, out_plane, params(0));
          });
          continue;
        }
        case Path::kDepthwise3x3: {
          const std::size_t ring = 4 * dw_row_bytes(static_cast<int>(gx.in), static_cast<int>(gx.out),
                                                    static_cast<int>(gx.stride));
          parallel_for(c_, [&](std::int64_t c, int worker) {
            dwconv3x3_plane_s8(kt, xn + c * in_plane, static_cast<int>(gy.in), static_cast<int>(gx.in), w + c * 9,
                               bias_[c], static_cast<int>(gx.stride), z_in_, yn + c * out_plane,
                               static_cast<int>(gy.out), static_cast<int>(gx.out), params(c),
                               static_cast<std::int8_t*>(scratch) + worker * ring);
          });
          continue;
        }
        case Path::kGeneric: {
          const std::int64_t cg = c_ / g_, mg = m_ / g_, rows = block_rows();
          const std::int64_t row_blocks = (gy.out + rows - 1) / rows;
          parallel_for(g_ * row_blocks, [&](std::int64_t t, int worker) {
            const std::int64_t g = t / row_blocks, oy0 = (t % row_blocks) * rows;
            std::int8_t* col = static_cast<std::int8_t*>(scratch) + worker * kdim_ * rows * gx.out;
            const std::int64_t oy1 = std::min(gy.out, oy0 + rows), nj = (oy1 - oy0) * gx.out;
            im2col(xn + g * cg * in_plane, cg, oy0, oy1, col);
            kt.conv_gemm_s8(mg, nj, kdim_, w + g * mg * kdim_, kdim_, col, nj, bias_.data() + g * mg,
                            yn + g * mg * out_plane + oy0 * gx.out, out_plane, params(g * mg));
          });
          continue;
        }
      }
    }
  }

 private:
  enum class Path { kPointwise, kDepthwise3x3, kGeneric };
  static constexpr std::int64_t kIm2colBlockBytes = 64 * 1024;
  // Measured on YuNet-s at 640x480: fused ran 5-8% faster than the two ops at W = 320 and 160,
  // 25% slower at W = 80 and 40 (one GEMM per 80-column row costs more than it saves).
  static constexpr std::int64_t kFuseMinWidth = 128;
  static constexpr std::size_t kFuseRingBytes = 96 * 1024;  // the ring of padded rows stays in L2

  RequantParams params(std::int64_t m0) const {
    RequantParams q;
    q.scale = scale_.data() + m0;
    if (!neg_scale_.empty()) q.neg_scale = neg_scale_.data() + m0;
    q.zero_point = z_out_;
    q.lo = lo_;
    q.hi = hi_;
    return q;
  }
  std::size_t dw_len() const {
    return dw_row_bytes(static_cast<int>(geo_[1].in), static_cast<int>(geo_[1].out), static_cast<int>(geo_[1].stride));
  }
  // Output rows per band of the fused pair and the ring rows per channel they need (as
  // Conv::dw_band: b*stride + 2 rows hold a band's new rows without overwriting one it reads).
  std::int64_t fused_band() const {
    const std::int64_t s = geo_[1].stride;
    const std::int64_t fit = static_cast<std::int64_t>(kFuseRingBytes / (c_ * dw_len()));
    return std::max<std::int64_t>(1, std::min(geo_[0].out, (fit - 2) / s));
  }
  std::int64_t fused_cap() const { return fused_band() * geo_[1].stride + 2; }

  // The fused pointwise -> depthwise 3x3 pair: in[] holds the pointwise QLinearConv's inputs,
  // then this op's inputs after x. Per worker the scratch holds c_ channels of fused_cap()
  // ring rows and one row of vertical padding (z_in, shared by every channel).
  void run_fused(const void* const* in, std::int8_t* y, std::int8_t* scratch) const {
    const QLinearConv& pw = *pw_;
    const auto* x = static_cast<const std::int8_t*>(in[0]);
    const auto* w1 = static_cast<const std::int8_t*>(in[3]);
    const auto* w2 = static_cast<const std::int8_t*>(in[pw_inputs_ + 3 - 1]);
    const RequantParams q1 = pw.params(0);
    const KernelTable& kt = kernels();
    const Geom& gy = geo_[0];
    const Geom& gx = geo_[1];
    const std::int64_t h = gy.in, w = gx.in, s = gx.stride, in_plane = h * w, out_plane = gy.out * gx.out;
    const std::int64_t band = fused_band(), cap = fused_cap(), len = static_cast<std::int64_t>(dw_len());
    const std::int64_t per_worker = c_ * cap * len + len;
    // Workers take ranges of output rows, each with its own ring (re-computing the one or two
    // intermediate rows a range shares with the one above).
    const std::int64_t per = (gy.out + threads_ - 1) / threads_;
    const std::int64_t ranges = (gy.out + per - 1) / per;
    parallel_for(n_ * ranges, [&](std::int64_t t, int worker) {
      const std::int64_t n = t / ranges;
      const std::int64_t first = (t % ranges) * per, last = std::min(gy.out, first + per);
      std::int8_t* rw = scratch + worker * per_worker;
      // Pads stay z_in: the GEMM writes columns 1..w of each row only.
      std::fill(rw, rw + per_worker, z_in_);
      const std::int8_t* pad_row = rw + c_ * cap * len;
      const std::int8_t* xn = x + n * pw.c_ * in_plane;
      std::int8_t* yn = y + n * m_ * out_plane;
      std::int64_t done = std::max<std::int64_t>(0, first * s - 1);  // next intermediate row to compute
      for (std::int64_t oy0 = first; oy0 < last; oy0 += band) {
        const std::int64_t oy1 = std::min(last, oy0 + band);
        const std::int64_t need = std::min(h, (oy1 - 1) * s + 2);
        for (; done < need; ++done) {
          kt.conv_gemm_s8(c_, w, pw.c_, w1, pw.c_, xn + done * w, in_plane, pw.bias_.data(),
                          rw + (done % cap) * len + 1, cap * len, q1);
        }
        for (std::int64_t c = 0; c < c_; ++c) {
          const RequantParams q = params(c);
          const std::int8_t* rc = rw + c * cap * len;
          for (std::int64_t oy = oy0; oy < oy1; ++oy) {
            const std::int8_t* rows[3];
            for (int ky = 0; ky < 3; ++ky) {
              const std::int64_t iy = oy * s - 1 + ky;
              rows[ky] = iy >= 0 && iy < h ? rc + (iy % cap) * len : pad_row;
            }
            kt.dwconv3x3_row_s8(rows, w2 + c * 9, bias_[c], static_cast<int>(s), yn + c * out_plane + oy * gx.out,
                                static_cast<int>(gx.out), q);
          }
        }
      }
    });
  }

  std::int64_t block_rows() const {
    const std::int64_t per_row = std::max<std::int64_t>(1, kdim_ * geo_[1].out);
    return std::max<std::int64_t>(1, std::min(geo_[0].out, kIm2colBlockBytes / per_row));
  }
  // First/last output index along one axis whose tap at offset `off` is inside the input.
  static void valid_range(const Geom& g, std::int64_t off, std::int64_t* lo, std::int64_t* hi) {
    // in range: 0 <= o*stride - pad + off < in
    const std::int64_t a = g.pad - off;
    *lo = a <= 0 ? 0 : (a + g.stride - 1) / g.stride;
    const std::int64_t b = g.in + g.pad - off;  // o*stride < b
    *hi = b <= 0 ? 0 : std::min(g.out, (b + g.stride - 1) / g.stride);
    *lo = std::min(*lo, *hi);
  }
  // col[(c, ky, kx)][(oy - oy0) * out_w + ox] = x[c][iy][ix], z_in outside the input.
  void im2col(const std::int8_t* x, std::int64_t channels, std::int64_t oy0, std::int64_t oy1, std::int8_t* col) const {
    const Geom& gy = geo_[0];
    const Geom& gx = geo_[1];
    const std::int64_t cols = (oy1 - oy0) * gx.out;
    const std::int8_t z = z_in_;
    for (std::int64_t c = 0; c < channels; ++c) {
      const std::int8_t* plane = x + c * gy.in * gx.in;
      for (std::int64_t ky = 0; ky < gy.kernel; ++ky) {
        std::int64_t ylo, yhi;
        valid_range(gy, ky * gy.dilation, &ylo, &yhi);
        ylo = std::min(std::max(ylo, oy0), oy1);
        yhi = std::max(std::min(yhi, oy1), ylo);
        for (std::int64_t kx = 0; kx < gx.kernel; ++kx) {
          std::int64_t xlo, xhi;
          valid_range(gx, kx * gx.dilation, &xlo, &xhi);
          std::int8_t* dst = col - oy0 * gx.out;
          col += cols;
          std::fill(dst + oy0 * gx.out, dst + ylo * gx.out, z);
          for (std::int64_t oy = ylo; oy < yhi; ++oy) {
            std::int8_t* o = dst + oy * gx.out;
            const std::int8_t* row = plane + (oy * gy.stride - gy.pad + ky * gy.dilation) * gx.in - gx.pad + kx * gx.dilation;
            std::fill(o, o + xlo, z);
            if (gx.stride == 1) {
              std::memcpy(o + xlo, row + xlo, static_cast<std::size_t>(xhi - xlo));
            } else if (gx.stride == 2 && xhi > xlo) {
              // Even bytes as the low halves of 16-bit loads (little endian): a loop that
              // vectorises at the baseline ISA. The last tap is read alone, so no byte past
              // it is touched.
              for (std::int64_t ox = xlo; ox < xhi - 1; ++ox) {
                std::uint16_t v;
                std::memcpy(&v, row + 2 * ox, 2);
                o[ox] = static_cast<std::int8_t>(v & 0xff);
              }
              o[xhi - 1] = row[2 * (xhi - 1)];
            } else {
              for (std::int64_t ox = xlo; ox < xhi; ++ox) o[ox] = row[ox * gx.stride];
            }
            std::fill(o + xhi, o + gx.out, z);
          }
          std::fill(dst + yhi * gx.out, dst + oy1 * gx.out, z);
        }
      }
    }
  }

  std::string type_;
  Spatial sp_;
  std::string act_;
  float lo_f_ = 0.0f, hi_f_ = 0.0f, alpha_ = 0.0f;
  Geom geo_[2];
  std::int64_t n_ = 0, c_ = 0, m_ = 0, g_ = 1, kdim_ = 0;
  std::int8_t z_in_ = 0, z_out_ = 0, lo_ = -128, hi_ = 127;
  std::vector<float> scale_, neg_scale_;  // neg_scale_: empty without leaky_relu / prelu
  std::vector<std::int32_t> bias_;
  Path path_ = Path::kGeneric;
  const QLinearConv* pw_ = nullptr;  // the absorbed pointwise QLinearConv, for this plan
  std::size_t pw_inputs_ = 0;
  std::int64_t threads_ = 1;
};

class ConvTranspose : public OpKernel {
 public:
  explicit ConvTranspose(const Op& op) : type_(op.type) {
    sp_.read(op);
    output_padding_ = attr_ints(op, "output_padding");
    output_shape_ = attr_ints(op, "output_shape");
  }

  void plan(const std::vector<PlanInput>& in, std::vector<TensorDesc>& out) override {
    const Shape k = sp_.check_operands(type_, in);
    const Shape& xs = in[0].desc->shape;
    const Shape& ws = in[1].desc->shape;
    const std::size_t sp = k.size();
    n_ = xs[0];
    c_ = xs[1];
    g_ = sp_.group;
    if (ws[0] != c_ || c_ % g_ != 0) fail(type_, "X " + shape_str(xs) + " and W " + shape_str(ws) + " disagree");
    m_ = ws[1] * g_;
    std::vector<std::int64_t> opad = output_padding_.empty() ? std::vector<std::int64_t>(sp, 0) : output_padding_;
    if (opad.size() != sp) fail(type_, "output_padding does not match the kernel rank");
    if (!output_shape_.empty() && output_shape_.size() != sp) unsupported(type_, "output_shape must list the spatial dims only");
    geo_[0] = Geom{};
    geo_[1] = Geom{};
    Shape r = {n_, m_};
    for (std::size_t d = 0; d < sp; ++d) {
      Geom& g = geo_[2 - sp + d];
      g.in = xs[2 + d];
      g.kernel = k[d];
      g.stride = sp_.strides[d];
      g.dilation = sp_.dilations[d];
      const std::int64_t eff = (g.kernel - 1) * g.dilation + 1;
      const std::int64_t full = g.stride * (g.in - 1) + opad[d] + eff;
      if (!output_shape_.empty() || sp_.auto_pad == "SAME_UPPER" || sp_.auto_pad == "SAME_LOWER") {
        g.out = !output_shape_.empty() ? output_shape_[d] : g.in * g.stride;
        const std::int64_t total = full - g.out;
        if (total < 0) fail(type_, "output_shape larger than the full output");
        g.pad = sp_.auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
        g.pad_end = total - g.pad;
      } else {
        if (sp_.auto_pad == "NOTSET") {
          g.pad = sp_.pads[d];
          g.pad_end = sp_.pads[d + sp];
        }
        g.out = full - g.pad - g.pad_end;
      }
      if (g.out <= 0) fail(type_, "empty output");
      r.push_back(g.out);
    }
    has_bias_ = in.size() > 2 && in[2].present();
    if (has_bias_) {
      need_f32(type_, in[2], "B");
      if (elements(in[2].desc->shape) != m_) fail(type_, "B must have " + std::to_string(m_) + " elements");
    }
    out[0] = {DType::kF32, r};
  }

  std::size_t scratch_bytes() const override {
    const std::int64_t mg = m_ / g_, cg = c_ / g_, kk = geo_[0].kernel * geo_[1].kernel;
    return static_cast<std::size_t>(mg * kk * geo_[0].in * geo_[1].in + mg * kk * cg) * sizeof(float);
  }
  std::int64_t macs() const override {
    return n_ * c_ * geo_[0].in * geo_[1].in * (m_ / g_) * geo_[0].kernel * geo_[1].kernel;
  }

  void run(const void* const* in, void* const* out, void* scratch) override {
    const float* x = static_cast<const float*>(in[0]);
    const float* w = static_cast<const float*>(in[1]);
    const float* bias = has_bias_ ? static_cast<const float*>(in[2]) : nullptr;
    float* y = static_cast<float*>(out[0]);
    const Geom& gy = geo_[0];
    const Geom& gx = geo_[1];
    const std::int64_t cg = c_ / g_, mg = m_ / g_, kk = gy.kernel * gx.kernel;
    const std::int64_t in_plane = gy.in * gx.in, out_plane = gy.out * gx.out;
    const std::int64_t rows = mg * kk;
    float* col = static_cast<float*>(scratch);
    float* wt = col + rows * in_plane;
    for (std::int64_t n = 0; n < n_; ++n) {
      float* yn = y + n * m_ * out_plane;
      std::fill(yn, yn + m_ * out_plane, 0.0f);
      for (std::int64_t g = 0; g < g_; ++g) {
        // wt[(m, ky, kx)][c] = W[g*cg + c][m][ky][kx]
        const float* wg = w + g * cg * rows;
        for (std::int64_t c = 0; c < cg; ++c) {
          for (std::int64_t r = 0; r < rows; ++r) wt[r * cg + c] = wg[c * rows + r];
        }
        gemm_f32(rows, in_plane, cg, wt, cg, x + (n * c_ + g * cg) * in_plane, in_plane, col, in_plane, false);
        // Scatter-add: y[m][iy*s - pad + ky*d][ix*s - pad + kx*d] += col[(m,ky,kx)][iy][ix].
        for (std::int64_t m = 0; m < mg; ++m) {
          float* plane = yn + (g * mg + m) * out_plane;
          for (std::int64_t ky = 0; ky < gy.kernel; ++ky) {
            for (std::int64_t kx = 0; kx < gx.kernel; ++kx) {
              const float* src = col + ((m * gy.kernel + ky) * gx.kernel + kx) * in_plane;
              for (std::int64_t iy = 0; iy < gy.in; ++iy) {
                const std::int64_t oy = iy * gy.stride - gy.pad + ky * gy.dilation;
                if (oy < 0 || oy >= gy.out) continue;
                float* orow = plane + oy * gx.out;
                const float* srow = src + iy * gx.in;
                for (std::int64_t ix = 0; ix < gx.in; ++ix) {
                  const std::int64_t ox = ix * gx.stride - gx.pad + kx * gx.dilation;
                  if (ox >= 0 && ox < gx.out) orow[ox] += srow[ix];
                }
              }
            }
          }
        }
      }
      if (bias) {
        for (std::int64_t m = 0; m < m_; ++m) {
          float* plane = yn + m * out_plane;
          for (std::int64_t i = 0; i < out_plane; ++i) plane[i] += bias[m];
        }
      }
    }
  }

 private:
  std::string type_;
  Spatial sp_;
  std::vector<std::int64_t> output_padding_, output_shape_;
  bool has_bias_ = false;
  Geom geo_[2];
  std::int64_t n_ = 0, c_ = 0, m_ = 0, g_ = 1;
};

class Gemm : public OpKernel {
 public:
  explicit Gemm(const Op& op)
      : type_(op.type),
        alpha_(op.attrs.find("alpha") ? static_cast<float>(op.attrs.get_float("alpha")) : 1.0f),
        beta_(op.attrs.find("beta") ? static_cast<float>(op.attrs.get_float("beta")) : 1.0f),
        ta_(attr_int(op, "transA", 0) != 0),
        tb_(attr_int(op, "transB", 0) != 0) {}

  void plan(const std::vector<PlanInput>& in, std::vector<TensorDesc>& out) override {
    if (in.size() < 2) fail(type_, "needs A and B");
    need_f32(type_, in[0], "A");
    need_f32(type_, in[1], "B");
    const Shape& as = in[0].desc->shape;
    const Shape& bs = in[1].desc->shape;
    if (as.size() != 2 || bs.size() != 2) fail(type_, "A and B must be 2-D, got " + shape_str(as) + " and " + shape_str(bs));
    m_ = ta_ ? as[1] : as[0];
    k_ = ta_ ? as[0] : as[1];
    n_ = tb_ ? bs[0] : bs[1];
    if ((tb_ ? bs[1] : bs[0]) != k_) fail(type_, "A " + shape_str(as) + " and B " + shape_str(bs) + " do not multiply");
    c_rows_ = c_cols_ = 0;
    if (in.size() > 2 && in[2].present()) {
      need_f32(type_, in[2], "C");
      const Shape& cs = in[2].desc->shape;
      if (cs.size() > 2) fail(type_, "C must have rank <= 2");
      const std::int64_t cr = cs.size() == 2 ? cs[0] : 1;
      const std::int64_t cc = cs.empty() ? 1 : cs.back();
      if ((cr != 1 && cr != m_) || (cc != 1 && cc != n_)) fail(type_, "C " + shape_str(cs) + " does not broadcast to (M, N)");
      c_rows_ = cr;
      c_cols_ = cc;
    }
    out[0] = {DType::kF32, {m_, n_}};
  }
  std::size_t scratch_bytes() const override {
    // B^T with A not transposed takes the dot-product path; other layouts transpose A first.
    return ta_ ? static_cast<std::size_t>(m_ * k_) * sizeof(float) : 0;
  }
  std::int64_t macs() const override { return m_ * n_ * k_; }

  void run(const void* const* in, void* const* out, void* scratch) override {
    const float* a = static_cast<const float*>(in[0]);
    const float* b = static_cast<const float*>(in[1]);
    const float* c = c_rows_ > 0 ? static_cast<const float*>(in[2]) : nullptr;
    float* y = static_cast<float*>(out[0]);
    if (ta_) {
      float* at = static_cast<float*>(scratch);
      for (std::int64_t i = 0; i < m_; ++i) {
        for (std::int64_t p = 0; p < k_; ++p) at[i * k_ + p] = a[p * m_ + i];
      }
      a = at;
    }
    if (tb_) {
      // B's rows are the output columns: one SIMD dot per output (a fully connected layer,
      // SFace's 25088 x 512, ran as a serial chain of float adds: ~20 ms).
      const KernelTable& kt = kernels();
      for (std::int64_t i = 0; i < m_; ++i) {
        kt.dot_rows_f32(a + i * k_, b, static_cast<std::size_t>(n_), static_cast<std::size_t>(k_), k_, y + i * n_);
      }
    } else {
      gemm_f32(m_, n_, k_, a, k_, b, n_, y, n_, false);
    }
    for (std::int64_t i = 0; i < m_; ++i) {
      for (std::int64_t j = 0; j < n_; ++j) {
        float v = alpha_ * y[i * n_ + j];
        if (c) v += beta_ * c[(c_rows_ == 1 ? 0 : i) * c_cols_ + (c_cols_ == 1 ? 0 : j)];
        y[i * n_ + j] = v;
      }
    }
  }

 private:
  std::string type_;
  float alpha_, beta_;
  bool ta_, tb_;
  std::int64_t m_ = 0, n_ = 0, k_ = 0, c_rows_ = 0, c_cols_ = 0;
};

class MatMul : public OpKernel {
 public:
  explicit MatMul(const Op& op) : type_(op.type) {}

  void plan(const std::vector<PlanInput>& in, std::vector<TensorDesc>& out) override {
    if (in.size() < 2) fail(type_, "needs A and B");
    need_f32(type_, in[0], "A");
    need_f32(type_, in[1], "B");
    Shape as = in[0].desc->shape, bs = in[1].desc->shape;
    if (as.empty() || bs.empty()) fail(type_, "operands must have rank >= 1");
    const bool a1 = as.size() == 1, b1 = bs.size() == 1;
    if (a1) as.insert(as.begin(), 1);
    if (b1) bs.push_back(1);
    m_ = as[as.size() - 2];
    k_ = as.back();
    n_ = bs.back();
    if (bs[bs.size() - 2] != k_) fail(type_, "A " + shape_str(in[0].desc->shape) + " and B " + shape_str(in[1].desc->shape) + " do not multiply");
    const Shape ab(as.begin(), as.end() - 2), bb(bs.begin(), bs.end() - 2);
    const std::size_t r = std::max(ab.size(), bb.size());
    batch_.assign(r, 1);
    sa_.assign(r, 0);
    sb_.assign(r, 0);
    std::int64_t stride_a = m_ * k_, stride_b = k_ * n_;
    for (std::size_t i = r; i-- > 0;) {
      const std::int64_t da = i + ab.size() >= r ? ab[i + ab.size() - r] : 1;
      const std::int64_t db = i + bb.size() >= r ? bb[i + bb.size() - r] : 1;
      if (da != db && da != 1 && db != 1) fail(type_, "batch dimensions do not broadcast");
      batch_[i] = std::max(da, db);
      sa_[i] = da == 1 ? 0 : stride_a;
      sb_[i] = db == 1 ? 0 : stride_b;
      stride_a *= da;
      stride_b *= db;
    }
    Shape o = batch_;
    if (!a1) o.push_back(m_);
    if (!b1) o.push_back(n_);
    batches_ = elements(batch_);
    out[0] = {DType::kF32, o};
  }
  std::int64_t macs() const override { return batches_ * m_ * n_ * k_; }

  void run(const void* const* in, void* const* out, void*) override {
    const float* a = static_cast<const float*>(in[0]);
    const float* b = static_cast<const float*>(in[1]);
    float* y = static_cast<float*>(out[0]);
    const std::size_t r = batch_.size();
    std::vector<std::int64_t> idx(r, 0);
    std::int64_t oa = 0, ob = 0;
    for (std::int64_t t = 0; t < batches_; ++t) {
      gemm_f32(m_, n_, k_, a + oa, k_, b + ob, n_, y + t * m_ * n_, n_, false);
      for (std::size_t d = r; d-- > 0;) {
        oa += sa_[d];
        ob += sb_[d];
        if (++idx[d] < batch_[d]) break;
        oa -= sa_[d] * batch_[d];
        ob -= sb_[d] * batch_[d];
        idx[d] = 0;
      }
    }
  }

 private:
  std::string type_;
  std::int64_t m_ = 0, n_ = 0, k_ = 0, batches_ = 1;
  Shape batch_, sa_, sb_;
};

}  // namespace

void append_conv_ops(std::vector<OpEntry>& entries) {
  entries.push_back({"Conv", &make_op<Conv>});
  entries.push_back({"ConvTranspose", &make_op<ConvTranspose>});
  entries.push_back({"Gemm", &make_op<Gemm>});
  entries.push_back({"MatMul", &make_op<MatMul>});
  entries.push_back({"QLinearConv", &make_op<QLinearConv>});
}

}  // namespace engine
}  // namespace picoface
