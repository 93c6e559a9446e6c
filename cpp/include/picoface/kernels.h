// The kernel table: every SIMD kernel of picoface, one entry each. The scalar reference
// (cpp/src/kernels/reference.cc) is the specification; each ISA file fills the entries it
// accelerates and inherits the rest from the level below it. Tests, benchmarks and
// dispatch all go through this one table.
//
// Kernels are free functions over pointers, sizes, strides and a params struct: they
// allocate nothing, start no threads, keep no state and may run concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>

#include "picoface/cpu.h"

namespace picoface {

// Affine colour transform, normalisation and store of one row (see pack_row below).
struct PackParams {
  int in_channels = 3;   // 1 or 3 float planes in
  int out_channels = 3;  // 1 or 3 channels out
  // out[c] = bias[c] + sum_k matrix[c][k] * in[k], evaluated left to right, terms with a
  // zero coefficient skipped; folds channel reordering, grey conversion, mean subtraction
  // and division by std into one step.
  float matrix[3][3] = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}};
  float bias[3] = {0, 0, 0};
  bool to_int8 = false;  // false: store float32; true: store int8
  // int8 only: q = clamp(round_half_even(out * inv_scale) + zero_point, -128, 127).
  float inv_scale = 1.0f;
  int zero_point = 0;
  // Element strides of the destination: NCHW uses (channel_stride = H*W, pixel_stride = 1),
  // NHWC uses (1, out_channels).
  std::ptrdiff_t channel_stride = 0;
  std::ptrdiff_t pixel_stride = 1;
};

// Bilinear affine warp of one uint8 image into one crop, constant border.
struct WarpParams {
  const std::uint8_t* src = nullptr;
  int src_w = 0, src_h = 0;
  int channels = 3;               // 1..4, interleaved
  std::ptrdiff_t src_stride = 0;  // bytes between rows
  // Destination-to-source map with pixel centres at integer coordinates (cv2's convention):
  // sx = m[0]*x + m[1]*y + m[2], sy = m[3]*x + m[4]*y + m[5].
  float m[6] = {1, 0, 0, 0, 1, 0};
  std::uint8_t* dst = nullptr;
  int dst_w = 0, dst_h = 0;
  std::ptrdiff_t dst_stride = 0;  // bytes between rows
  // Value of every tap that falls outside the source (per channel), as cv2's BORDER_CONSTANT.
  std::uint8_t border[4] = {0, 0, 0, 0};
};

// Per-channel epilogue of a convolution, applied in place to one output plane:
//   y = x + bias;  y = y < 0 ? y * neg_slope : y;  y = min(max(y, lo), hi)
// (max/min as std::max/std::min, so a NaN stays NaN). Covers none, relu (lo = 0), leaky relu
// and prelu (neg_slope), clip/relu6 (lo, hi). Every ISA is bit-identical to the reference.
struct BiasActParams {
  float bias = 0.0f;
  float neg_slope = 1.0f;
  float lo = -std::numeric_limits<float>::infinity();
  float hi = std::numeric_limits<float>::infinity();
};

// Per-row epilogue of conv_gemm_f32 (rows are output channels): row i is finished with the
// bias_act_f32 step of BiasActParams{bias ? bias[i] : 0, slopes ? slopes[i] : neg_slope, lo, hi}.
struct RowBiasAct {
  const float* bias = nullptr;
  const float* slopes = nullptr;
  float neg_slope = 1.0f;
  float lo = -std::numeric_limits<float>::infinity();
  float hi = std::numeric_limits<float>::infinity();
};

// The int8 scheme (ONNX QDQ / TFLite convention, so onnxruntime's QDQ models are the
// reference): real = scale * (q - zero_point).
//   weights      int8, symmetric per output channel (zero point 0, scale s_w[m]);
//   activations  int8, asymmetric per tensor (scale s, zero point z in [-128, 127]);
//   bias         int32 at scale s_in * s_w[m], zero point 0.
// The int8 kernels take pre-folded row biases, bias'[m] = bias[m] - z_in * sum_k w[m][k]
// (folded once when a model is planned), so they never need z_in except as the value of
// padding, which must be materialised as z_in. Accumulation is exact in int32: callers keep
// k <= 65536 taps and |bias'| < 2^30, so every partial sum fits (|w*x| <= 2^14).
//
// Requantisation of one int32 sum `acc` of output channel m, identical on every ISA:
//   s = acc < 0 && neg_scale ? neg_scale[m] : scale[m]
//   f = float(acc) * s                   (int32 -> float round to nearest even, one IEEE mul;
//                                         scale[m] = s_in * s_w[m] / s_out, finite, >= 0)
//   f = min(max(f, -65536), 65536)       (keeps the conversion in range; changes no result)
//   r = round_half_to_even(f)            (cvtps2dq under the default MXCSR, vcvtnq_s32_f32,
//                                         std::nearbyint in the reference)
//   q = min(max(r + zero_point, lo), hi) (int8)
// lo/hi carry a fused activation: none (-128, 127), ReLU (zero_point, 127), ReLU6 or any clip
// (quantised bounds). PReLU and LeakyReLU ride on neg_scale: acc has the sign of the real
// pre-activation value (s_in * s_w[m] > 0), so neg_scale[m] = scale[m] * slope[m] (one float32
// product, made when the model is planned) applies the slope with a single rounding.
struct RequantParams {
  const float* scale = nullptr;  // per output channel (row) of the kernel; see each kernel
  // Per output channel as scale, finite (any sign); null: negative sums use scale too.
  const float* neg_scale = nullptr;
  std::int32_t zero_point = 0;   // z_out, -128..127
  std::int8_t lo = -128;
  std::int8_t hi = 127;
};

// Quantised elementwise addition (ONNX com.microsoft QLinearAdd): per element
//   f = float(a - a_zero_point) * a_scale + float(b - b_zero_point) * b_scale
//                                        (two IEEE float32 multiplies, then one add: no FMA)
//   f = min(max(f, -65536), 65536);  r = round_half_to_even(f)
//   y = min(max(r + zero_point, lo), hi)
// with a_scale = s_a / s_y and b_scale = s_b / s_y, finite and |scale| <= 65536 (so f is
// finite). b_scale = 0 requantises a alone to y's parameters (the sum adds an exact zero).
struct AddParams {
  float a_scale = 1.0f, b_scale = 1.0f;
  std::int32_t a_zero_point = 0, b_zero_point = 0;  // -128..127
  std::int32_t zero_point = 0;                      // y's, -128..127
  std::int8_t lo = -128;
  std::int8_t hi = 127;
};

// Most input channels conv3x3_f32 takes: a network's stem (RGB, grey, RGBA).
constexpr int kConv3x3MaxInChannels = 4;

struct KernelTable {
  Isa isa;

  // Horizontal resampling of one interleaved uint8 row into `channels` (1..4) float planes:
  //   dst_planes[c][x] = sum_{t<ntaps} weights[x*ntaps + t] * src[(xofs[x] + t)*channels + c]
  // for x < dst_w. Callers guarantee every tap lies inside the source row.
  void (*resample_row_u8)(const std::uint8_t* src, int channels, const std::int32_t* xofs,
                          const float* weights, int ntaps, int dst_w, float* const* dst_planes);

  // Vertical blend of float rows: out[i] = sum_{t<ntaps} weights[t] * rows[t][i], i < n.
  void (*blend_rows_f32)(const float* const* rows, const float* weights, int ntaps, int n,
                         float* out);

  // Colour transform + normalise + store of n pixels from float planes `in` (p.in_channels of
  // them) into `out`, which points at channel 0 of the first pixel (float* or int8_t* per
  // p.to_int8). int8 rounding is half-to-even, then saturation.
  void (*pack_row)(const float* const* in, int n, const PackParams& p, void* out);

  // Bilinear warp in fixed point as cv2.warpAffine(INTER_LINEAR): source coordinates are
  // computed in float as WarpParams says (mul, mul, add, add, no FMA), quantised to 1/32 pixel
  // (round half to even), and the 2x2 taps weighted by integer 1-D weights (32 - a, a) x
  // (32 - b, b); out = (sum w*v + 512) >> 10. Integer arithmetic: every ISA is bit-exact.
  void (*warp_affine_u8)(const WarpParams& p);

  // Dot products. dot_s8 accumulates exactly in int32 (callers keep n*128*128 < 2^31).
  // dot_f32: the reference accumulates in double, in increasing index; SIMD variants
  // reassociate and fuse (FMA), so they agree within a few ulp of sum |a||b|.
  float (*dot_f32)(const float* a, const float* b, std::size_t n);
  std::int32_t (*dot_s8)(const std::int8_t* a, const std::int8_t* b, std::size_t n);

  // One query against n_rows rows (a gallery scan): out[j] = dot(q, rows + j*row_stride) over
  // d elements, j < n_rows; row_stride is in elements and may exceed d (padded rows). Reads
  // exactly the d elements of q and of each row. dot_rows_f32's out[j] is bit-identical to
  // dot_f32(q, row j, d) of the same table (same summation contract); dot_rows_s8's is the
  // exact int32 sum, as dot_s8 (callers keep d*128*128 < 2^31). Interleaving several rows
  // per pass amortises the query loads and the horizontal sums that a dot per row pays.
  void (*dot_rows_f32)(const float* q, const float* rows, std::size_t n_rows, std::size_t d,
                       std::ptrdiff_t row_stride, float* out);
  void (*dot_rows_s8)(const std::int8_t* q, const std::int8_t* rows, std::size_t n_rows, std::size_t d,
                      std::ptrdiff_t row_stride, std::int32_t* out);

  // fp32 GEMM for convolution: C (m x n) = A (m x k) * B (k x n) [+ C if accumulate], all
  // row-major with leading dimensions lda, ldb, ldc (elements). The reference accumulates
  // each C element in float in increasing k; SIMD variants reorder and fuse (FMA), so they
  // agree within a few ulp of sum |a||b|. Any m, n, k >= 0 (k = 0 gives C = 0 or C
  // unchanged); packing buffers live on the kernel's stack (a few tens of KiB).
  void (*gemm_f32)(std::size_t m, std::size_t n, std::size_t k, const float* a, std::ptrdiff_t lda,
                   const float* b, std::ptrdiff_t ldb, float* c, std::ptrdiff_t ldc, bool accumulate);

  // Convolution GEMM with its epilogue: C = A * B (accumulate off, same summation contract
  // as gemm_f32), then row i finished by the RowBiasAct step on the sum, before it is
  // stored. The epilogue itself is bit-identical to bias_act_f32 on every ISA.
  void (*conv_gemm_f32)(std::size_t m, std::size_t n, std::size_t k, const float* a, std::ptrdiff_t lda,
                        const float* b, std::ptrdiff_t ldb, float* c, std::ptrdiff_t ldc, const RowBiasAct& e);

  // One output row of a depthwise 3x3 convolution (horizontal padding 1) from three padded
  // input rows, finished by the bias_act_f32 step of `p` (BiasActParams{} for the plain sum):
  //   dst[ox] = act(sum_{ky<3, rows[ky] != null} sum_{kx<3} w[ky*3 + kx] * rows[ky][ox*stride + kx]).
  // rows[ky][j] holds input column j - 1: rows[ky][0] is the left padding and every float from
  // the last input column up to dw_row_floats(in_w, out_w, stride) is readable and zero. A
  // null row is a row of the vertical padding. stride is 1 or 2. The reference sums the taps
  // in (ky, kx) order in float; SIMD variants fuse (FMA). Padded rows let every column,
  // borders included, take the vector loop; dwconv3x3_plane_f32 and the engine's fused
  // pointwise + depthwise convolution both feed it.
  void (*dwconv3x3_row_f32)(const float* const* rows, const float* w, int stride, float* dst, int out_w,
                            const BiasActParams& p);

  // Direct 3x3 convolution with few input channels (a network's stem, no im2col), padding 1
  // at the top and left: cin (1..kConv3x3MaxInChannels) contiguous in_h x in_w planes into
  // cout contiguous out_h x out_w planes,
  //   dst[m][oy][ox] = sum_{c<cin} sum_{ky<3} sum_{kx<3} w[((m*cin + c)*3 + ky)*3 + kx] * src[c][iy][ix],
  //   iy = oy*stride - 1 + ky, ix = ox*stride - 1 + kx, taps outside the input are zero
  // (bottom/right padding is implied by out_h, out_w), then plane m finished by the RowBiasAct
  // step, as row m of conv_gemm_f32. stride is 1 or 2. The reference sums in (c, ky, kx)
  // order in float; SIMD variants fuse (FMA). Buffers live on the kernel's stack (< 32 KiB).
  void (*conv3x3_f32)(const float* src, int cin, int in_h, int in_w, const float* w, int cout, int stride,
                      float* dst, int out_h, int out_w, const RowBiasAct& e);

  // In-place bias + activation of n floats (see BiasActParams).
  void (*bias_act_f32)(float* x, std::size_t n, const BiasActParams& p);

  // int8 kernels (scheme and requantisation rule above RequantParams). Integer results are
  // bit-identical on every ISA.

  // y[i] = requant(x[i]) for i < n, every value with the scale q.scale[0].
  void (*requant_s32_s8)(const std::int32_t* x, std::size_t n, const RequantParams& q, std::int8_t* y);

  // Quantised convolution GEMM: C[i][j] = requant_i(bias'[i] + sum_{p<k} A[i][p] * B[p][j]),
  // with requant_i using q.scale[i]. A: int8 weights, m x k, row-major, leading dimension lda;
  // B: int8 activations, k x n (input channels x pixels of NCHW planes), ldb; C: int8, m x n,
  // ldc. bias (m values) may be null for zero. Any m, n >= 0 and 0 <= k <= 65536; packing
  // buffers live on the kernel's stack (under 64 KiB).
  void (*conv_gemm_s8)(std::size_t m, std::size_t n, std::size_t k, const std::int8_t* a, std::ptrdiff_t lda,
                       const std::int8_t* b, std::ptrdiff_t ldb, const std::int32_t* bias, std::int8_t* c,
                       std::ptrdiff_t ldc, const RequantParams& q);

  // y[i] = the AddParams sum of a[i] and b[i], i < n; y may alias a or b. Bit-identical on every ISA.
  void (*add_s8)(const std::int8_t* a, const std::int8_t* b, std::size_t n, const AddParams& p, std::int8_t* y);

  // One output row of a quantised depthwise 3x3 convolution of one channel (horizontal
  // padding 1) from three padded int8 input rows:
  //   dst[ox] = requant(bias + sum_{ky<3} sum_{kx<3} w[ky*3 + kx] * rows[ky][ox*stride + kx])
  // with the scale q.scale[0]; bias is the folded bias' (bias - z_in * sum of the 9 weights),
  // which padding at z_in makes exact at the borders too. rows[ky][j] holds input column j - 1 and every byte outside the
  // input columns, up to dw_row_bytes(in_w, out_w, stride), is readable and holds z_in (the
  // padding value of the asymmetric scheme). Rows are never null: a row of vertical padding
  // is a row of z_in (the kernel cannot make one without knowing z_in). stride is 1 or 2.
  void (*dwconv3x3_row_s8)(const std::int8_t* const* rows, const std::int8_t* w, std::int32_t bias, int stride,
                           std::int8_t* dst, int out_w, const RequantParams& q);
};

// Bytes of one padded input row of dwconv3x3_row_s8: the left pad, in_w columns, and z_in
// padding covering the widest vector over-read (64-output blocks, four 64-byte loads 4 bytes
// apart on AVX-512) of out_w outputs; a multiple of 32.
inline std::size_t dw_row_bytes(int in_w, int out_w, int stride) {
  const std::size_t blocks = (static_cast<std::size_t>(out_w) + 63) / 64 * 64;
  std::size_t n = static_cast<std::size_t>(stride) * blocks + 32;
  if (n < static_cast<std::size_t>(in_w) + 2) n = static_cast<std::size_t>(in_w) + 2;
  return (n + 31) / 32 * 32;
}

// Floats of one padded input row of dwconv3x3_row_f32: the left pad, in_w columns, and zeros
// covering the widest vector over-read (16 lanes) of out_w outputs; a multiple of 16.
inline std::size_t dw_row_floats(int in_w, int out_w, int stride) {
  const std::size_t blocks = (static_cast<std::size_t>(out_w) + 15) / 16 * 16;
  std::size_t n = static_cast<std::size_t>(stride) * blocks + 18;
  if (n < static_cast<std::size_t>(in_w) + 1) n = static_cast<std::size_t>(in_w) + 1;
  return (n + 15) / 16 * 16;
}

// Depthwise 3x3 convolution of one channel plane, padding 1 at the top and left, through
// k.dwconv3x3_row_f32 (same sum and epilogue): taps outside the input are zero, so bottom/
// right padding is implied by out_h, out_w. Each input row is copied once into a ring of
// three padded rows in `ring` (3 * dw_row_floats(in_w, out_w, stride) floats).
void dwconv3x3_plane_f32(const KernelTable& k, const float* src, int in_h, int in_w, const float* w, int stride,
                         float* dst, int out_h, int out_w, const BiasActParams& p, float* ring);

// Quantised depthwise 3x3 convolution of one channel plane, padding 1 at the top and left
// (bottom/right implied by out_h, out_w; padding taps read z_in), through k.dwconv3x3_row_s8
// with bias' and q as that kernel says. `ring` holds 4 * dw_row_bytes(in_w, out_w, stride)
// bytes: three padded input rows and one row of vertical padding.
void dwconv3x3_plane_s8(const KernelTable& k, const std::int8_t* src, int in_h, int in_w, const std::int8_t* w,
                        std::int32_t bias, int stride, std::int8_t z_in, std::int8_t* dst, int out_h, int out_w,
                        const RequantParams& q, std::int8_t* ring);

// Table of one level; throws Error(kUnsupported) if it is not compiled in or not runnable here.
const KernelTable& kernels_for(Isa isa);

// Table used by the pipeline: default_isa() until force_isa() changes it (thread-safe).
const KernelTable& kernels();
void force_isa(Isa isa);
Isa active_isa();

}  // namespace picoface
