// Internal interface between the engine's planner (engine.cc) and its ops (engine_ops.cc,
// engine_conv.cc). One OpKernel object per op of the model: it reads its attributes when it
// is created, infers output dtypes and shapes (and derives everything run() needs) when the
// graph is planned, and computes when the graph runs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "picoface/error.h"
#include "picoface/model.h"

namespace picoface {
namespace engine {

using Shape = std::vector<std::int64_t>;

std::int64_t elements(const Shape& s);
std::string shape_str(const Shape& s);

struct TensorDesc {
  DType dtype = DType::kF32;
  Shape shape;
  std::size_t nbytes() const { return static_cast<std::size_t>(elements(shape)) * dtype_size(dtype); }
};

// What plan() sees of one input: its description and, when known at plan time (a constant or
// an output of a folded op), its value. Absent optional inputs have desc == nullptr.
struct PlanInput {
  const TensorDesc* desc = nullptr;
  const void* value = nullptr;
  bool present() const { return desc != nullptr; }
};

class OpKernel {
 public:
  virtual ~OpKernel() = default;

  // Fills `out` (one entry per op output) from the inputs; keeps what run() needs. Throws
  // Error(kInvalidArgument) for shapes the op cannot take, Error(kUnsupported) for attribute
  // combinations it does not implement.
  virtual void plan(const std::vector<PlanInput>& in, std::vector<TensorDesc>& out) = 0;

  // Computes outputs. `in[i]` is null for absent optional inputs; `scratch` holds
  // scratch_bytes() bytes, 64-byte aligned.
  virtual void run(const void* const* in, void* const* out, void* scratch) = 0;

  virtual std::size_t scratch_bytes() const { return 0; }
  virtual std::int64_t macs() const { return 0; }
  // Output 0 holds the same bytes as input 0 (Reshape & co.): the planner may let them share
  // a buffer, in which case run() sees out[0] == in[0] and copies nothing.
  virtual bool output_aliases_input() const { return false; }
  // The outputs follow from input shapes alone (Shape): the op is folded at plan time even
  // when its input values are not known.
  virtual bool shape_only() const { return false; }
  // Fusion with the op producing input 0, offered by the planner (after both are planned)
  // when this op is that output's only reader and it is not a graph output. An op that
  // accepts computes both: its run() then receives the producer's `producer_inputs` inputs
  // first, followed by its own inputs after input 0; the intermediate is never stored.
  virtual bool absorb_producer(OpKernel& /*producer*/, std::size_t /*producer_inputs*/) { return false; }
};

using OpFactory = std::unique_ptr<OpKernel> (*)(const Op& op);

// The OpFactory of an op class constructed from the Op alone.
template <class K>
std::unique_ptr<OpKernel> make_op(const Op& op) {
  return std::make_unique<K>(op);
}

struct OpEntry {
  const char* type;
  OpFactory create;
};

// Every op type the engine runs (engine_ops.cc, engine_conv.cc); sorted by type.
const std::vector<OpEntry>& op_registry();
const OpEntry* find_op(const std::string& type);

// Entries contributed by engine_conv.cc (Conv, ConvTranspose, Gemm, MatMul, QLinearConv).
void append_conv_ops(std::vector<OpEntry>& entries);
// Entries contributed by engine_qops.cc (QLinearAdd, QLinearConcat, QLinearAveragePool,
// QLinearGlobalAveragePool, QGemm).
void append_quant_ops(std::vector<OpEntry>& entries);

// Shared helpers of the op files.
[[noreturn]] void fail(const std::string& op_type, const std::string& message);
[[noreturn]] void unsupported(const std::string& op_type, const std::string& message);
std::int64_t normalize_axis(const std::string& op_type, std::int64_t axis, std::int64_t rank);
// Reads a known int64/int32 input as int64s; fails naming the op if it is not known.
std::vector<std::int64_t> known_ints(const std::string& op_type, const PlanInput& in, const char* what);
std::vector<float> known_floats(const std::string& op_type, const PlanInput& in, const char* what);

// Activation applied in place to n floats (the fused Conv epilogue and the unary ops share it).
enum class Act { kNone, kRelu, kLeakyRelu, kSigmoid, kHardSigmoid, kHardSwish, kTanh, kClip, kPrelu };
struct ActParams {
  Act act = Act::kNone;
  float alpha = 0.0f;
  float beta = 0.0f;
};
void apply_act(const ActParams& p, float* x, std::int64_t n);

// C[m x n] (+)= A[m x k] * B[k x n], row-major with leading dimensions; accumulate=false
// overwrites C. The reference GEMM every Conv path ends in.
void gemm_f32(std::int64_t m, std::int64_t n, std::int64_t k, const float* a, std::int64_t lda,
              const float* b, std::int64_t ldb, float* c, std::int64_t ldc, bool accumulate);

}  // namespace engine
}  // namespace picoface
