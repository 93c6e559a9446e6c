// The native inference engine: runs a validated Model (picoface/model.h) on the CPU.
//
// Op set. Ops carry ONNX names and ONNX semantics (opset 18) for the subset listed in
// engine::op_registry() (engine_ops.h), tensors are NCHW, batch as in the graph. One extension, made
// by the importer's fusion pass: Conv may carry a fused activation applied after the bias,
//   activation       string: relu | leaky_relu | sigmoid | hard_sigmoid | hard_swish |
//                            tanh | clip | prelu
//   activation_alpha float (leaky_relu slope, hard_sigmoid alpha, clip min)
//   activation_beta  float (hard_sigmoid beta, clip max)
// and, for prelu, the per-output-channel slope as a 4th input (a constant of C elements).
//
// INT8 (files with metadata quant.scheme = "int8", written by `picoface quantize`). A
// quantised region is expressed with ONNX ops (and onnxruntime's com.microsoft contrib ops)
// on int8 tensors, in the scheme of picoface/kernels.h (weights int8 symmetric per output
// channel, activations int8 asymmetric per tensor, bias int32 at scale x_scale * w_scale[m]),
// every integer bit-exact on every ISA:
//   QuantizeLinear    float -> int8 where a quantised region starts (the graph input, or
//                     the output of a float op). A graph input read by one QuantizeLinear
//                     alone may be fed already quantised (int8, that op's parameters): the
//                     op then passes it on, so preprocessing can write int8 directly;
//   QLinearConv       int8 -> int8 with its scales, zero points, int8 weights and int32 bias
//                     as constant inputs (ONNX order), plus the fused `activation` extension:
//                     relu | clip as the requantisation clamp, leaky_relu | prelu (float32
//                     slope as input 9) as the requantisation scale of negative sums;
//                     requantisation is float(acc) * (x_scale * w_scale[m] / y_scale) in
//                     float32, round half to even, + y_zero_point, clamp;
//   QLinearAdd, QLinearConcat, QLinearAveragePool, QLinearGlobalAveragePool
//                     int8 -> int8 with the output's own parameters (engine_qops.cc);
//   QGemm             a fully connected layer, int8 -> int8, or float32 without y_scale;
//   MaxPool, nearest Resize, Flatten, Reshape
//                     also on int8 (exact: same scale and zero point in and out);
//   DequantizeLinear  int8 -> float before every float consumer (heads, Sigmoid, bilinear
//                     Resize, graph outputs).
// Every other op stays float32. The weight tensors are plain int8 constants (their scales
// are op inputs), not quantised-constant tensors: Tensor::quant marks float weights stored
// in int8, which the engine dequantises when it loads the model.
//
// Planning. Shapes are inferred when an input shape is first seen (and again when it
// changes: a detector called at a new size is re-planned, not re-converted). Every op whose
// inputs are all known at plan time (shape arithmetic: Shape, Gather, Concat, ... on int64)
// is evaluated then, so run time only executes the float graph. Activations live in one
// arena; buffers are reused once their last reader has run.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "picoface/model.h"

namespace picoface {

struct EngineOptions {
  int threads = 1;  // 1: one core (the edge-device baseline)
};

// A dense tensor owned by the caller (inputs) or by the engine (outputs, valid until the
// next run() of the same engine).
struct TensorView {
  DType dtype = DType::kF32;
  std::vector<std::int64_t> shape;
  const void* data = nullptr;
};

class Engine {
 public:
  // Throws Error(kUnsupported) listing every op type of the model the engine lacks.
  Engine(std::shared_ptr<const Model> model, EngineOptions options = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const Model& model() const;

  // Runs the graph; inputs in the order of Model::inputs(). Not thread-safe: use one
  // Engine per thread (they share the read-only Model). Throws Error(kInvalidArgument) on
  // a dtype or shape the graph cannot take.
  std::vector<TensorView> run(const std::vector<TensorView>& inputs);

  // Multiply-accumulates of one run at the current plan (0 before the first run).
  std::int64_t macs() const;

  // When `step_seconds` is given, run() also stores the wall time of each executed op
  // there (ops folded at plan time take none), in execution order, with step_ops() naming
  // the op of each entry: the profile behind `picoface bench --profile`.
  std::vector<TensorView> run(const std::vector<TensorView>& inputs, std::vector<double>* step_seconds);
  // Model op index of each executed step at the current plan.
  std::vector<std::size_t> step_ops() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Op types the engine implements, for importer checks and error messages.
const std::vector<std::string>& engine_op_types();

}  // namespace picoface
