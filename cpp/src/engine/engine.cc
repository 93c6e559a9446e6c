// The planner and executor of picoface::Engine (contract in picoface/engine.h).
//
// Three kinds of values: model constants (and ops folded from constants alone, computed once
// when the engine is built), planned constants (ops whose inputs are known once the input
// shape is: shape arithmetic, recomputed at each plan) and activations (computed by run(),
// living in one arena). A plan is a list of steps, each an op with resolved buffer locations.
#include "picoface/engine.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <limits>
#include <set>

#include "engine_ops.h"
#include "thread_pool.h"
#include "picoface/error.h"

namespace picoface {

using engine::OpKernel;
using engine::PlanInput;
using engine::Shape;
using engine::TensorDesc;

namespace {

constexpr std::size_t kAlign = 64;

std::size_t align_up(std::size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// Owned bytes with 64-byte aligned start.
class AlignedBytes {
 public:
  void resize(std::size_t n) {
    storage_.assign(n + kAlign, 0);
    const auto p = reinterpret_cast<std::uintptr_t>(storage_.data());
    offset_ = (kAlign - p % kAlign) % kAlign;
  }
  std::uint8_t* data() { return storage_.data() + offset_; }
  const std::uint8_t* data() const { return storage_.data() + offset_; }

 private:
  std::vector<std::uint8_t> storage_;
  std::size_t offset_ = 0;
};

// Where a tensor's bytes are at run time.
struct Loc {
  enum Kind : std::uint8_t { kNone, kKnown, kInput, kArena } kind = kNone;
  const void* known = nullptr;  // kKnown
  std::size_t index = 0;        // kInput: graph input index; kArena: buffer id
};

struct Step {
  std::size_t op = 0;
  std::vector<std::int32_t> inputs, outputs;  // tensor ids (-1 absent)
  std::int64_t scratch_buffer = -1;
};

struct Buffer {
  std::size_t bytes = 0;
  std::size_t first = 0, last = 0;  // steps during which it is live (inclusive)
  std::size_t offset = 0;
};

// Greedy placement: largest buffers first, each at the lowest-waste gap among the buffers
// already placed whose lifetimes overlap it. Returns the arena size.
std::size_t assign_offsets(std::vector<Buffer>& buffers) {
  std::vector<std::size_t> order(buffers.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return buffers[a].bytes > buffers[b].bytes; });
  std::vector<std::size_t> placed;
  std::size_t total = 0;
  for (std::size_t id : order) {
    Buffer& b = buffers[id];
    const std::size_t need = align_up(std::max<std::size_t>(b.bytes, 1));
    std::vector<std::pair<std::size_t, std::size_t>> busy;  // [begin, end)
    for (std::size_t p : placed) {
      const Buffer& o = buffers[p];
      if (o.first <= b.last && b.first <= o.last) {
        busy.emplace_back(o.offset, o.offset + align_up(std::max<std::size_t>(o.bytes, 1)));
      }
    }
    std::sort(busy.begin(), busy.end());
    std::size_t best = std::numeric_limits<std::size_t>::max(), best_gap = best;
    std::size_t cursor = 0;
    for (const auto& [begin, end] : busy) {
      if (begin > cursor && begin - cursor >= need && begin - cursor < best_gap) {
        best = cursor;
        best_gap = begin - cursor;
      }
      cursor = std::max(cursor, end);
    }
    b.offset = best != std::numeric_limits<std::size_t>::max() ? best : cursor;
    total = std::max(total, b.offset + need);
    placed.push_back(id);
  }
  return total;
}

// Value of a quantised constant as float32 (per tensor or per axis).
std::vector<float> dequantize_constant(const Tensor& t) {
  const std::int64_t n = t.elements();
  std::vector<float> out(static_cast<std::size_t>(n));
  std::int64_t inner = 1, channels = 1;
  if (t.quant.axis >= 0) {
    channels = t.shape[t.quant.axis];
    for (std::size_t d = t.quant.axis + 1; d < t.shape.size(); ++d) inner *= t.shape[d];
  }
  for (std::int64_t i = 0; i < n; ++i) {
    const std::size_t q = t.quant.axis >= 0 ? static_cast<std::size_t>((i / inner) % channels) : 0;
    std::int32_t v = 0;
    switch (t.dtype) {
      case DType::kI8: v = static_cast<const std::int8_t*>(t.data)[i]; break;
      case DType::kU8: v = static_cast<const std::uint8_t*>(t.data)[i]; break;
      case DType::kI32: v = static_cast<const std::int32_t*>(t.data)[i]; break;
      default: throw Error(ErrorCode::kUnsupported, "quantised constant '" + t.name + "' of dtype " + dtype_name(t.dtype));
    }
    out[i] = static_cast<float>(v - t.quant.zero_points[q]) * t.quant.scales[q];
  }
  return out;
}

// Plans one op and bounds what it asks for. A hostile model file can hold attributes that
// are valid numbers but absurd sizes (pads of 2^60); every shape and scratch request is
// checked here, before anything is allocated or indexed with it.
constexpr std::int64_t kMaxTensorElements = std::int64_t(1) << 28;  // 1 GiB of float32
constexpr std::size_t kMaxScratchBytes = std::size_t(1) << 31;

void plan_bounded(OpKernel& k, const Op& op, const std::vector<PlanInput>& in,
                  std::vector<TensorDesc>& out) {
  k.plan(in, out);
  for (const TensorDesc& d : out) {
    std::int64_t n = 1;
    for (std::int64_t dim : d.shape) {
      if (dim < 0 || dim > kMaxTensorElements || (dim > 0 && n > kMaxTensorElements / dim)) {
        throw Error(ErrorCode::kInvalidArgument,
                    op.type + " would produce a tensor of shape " + engine::shape_str(d.shape) +
                        ", beyond the engine's limit of 2^28 elements");
      }
      n *= dim;
    }
  }
  if (k.scratch_bytes() > kMaxScratchBytes) {
    throw Error(ErrorCode::kInvalidArgument, op.type + " would need over 2 GiB of scratch memory");
  }
}

}  // namespace

struct Engine::Impl {
  std::shared_ptr<const Model> model;
  EngineOptions options;
  std::unique_ptr<engine::ThreadPool> pool;  // threads > 1 only
  std::vector<std::unique_ptr<OpKernel>> kernels;  // one per op

  // Per tensor: description and value when known. Constants and statically folded values are
  // fixed at construction; `static_count` of them survive re-planning.
  std::vector<TensorDesc> desc;
  std::vector<const void*> value;
  std::vector<char> is_static;
  std::vector<std::unique_ptr<AlignedBytes>> owned;  // storage of folded values
  std::vector<char> op_static;                       // op folded at construction
  std::vector<int> readers;                          // per tensor: op inputs that read it
  std::vector<char> prequantised_ok;                 // per graph input: may come as int8

  // The current plan.
  bool planned = false;
  std::vector<Shape> planned_input_shapes;
  std::vector<DType> planned_input_dtypes;
  std::vector<std::unique_ptr<AlignedBytes>> planned_owned;
  std::vector<Step> steps;
  std::vector<Loc> loc;
  std::vector<Buffer> buffers;
  AlignedBytes arena;
  std::int64_t macs = 0;

  // Reused per run.
  std::vector<const void*> input_ptrs;
  std::vector<const void*> in_ptrs;
  std::vector<void*> out_ptrs;

  void build();
  void fold(std::size_t op_index, std::vector<std::unique_ptr<AlignedBytes>>& storage);
  void plan(const std::vector<TensorView>& inputs);
  const void* resolve(std::int32_t id) const {
    const Loc& l = loc[id];
    switch (l.kind) {
      case Loc::kKnown: return l.known;
      case Loc::kInput: return input_ptrs[l.index];
      case Loc::kArena: return arena.data() + buffers[l.index].offset;
      case Loc::kNone: break;
    }
    return nullptr;
  }
};

// Runs op `op_index` now (all its inputs known) and records its outputs as known values.
void Engine::Impl::fold(std::size_t op_index, std::vector<std::unique_ptr<AlignedBytes>>& storage) {
  const Op& op = model->ops()[op_index];
  OpKernel& k = *kernels[op_index];
  std::vector<PlanInput> in(op.inputs.size());
  for (std::size_t i = 0; i < op.inputs.size(); ++i) {
    if (op.inputs[i] >= 0) in[i] = {&desc[op.inputs[i]], value[op.inputs[i]]};
  }
  std::vector<TensorDesc> out(op.outputs.size());
  plan_bounded(k, op, in, out);
  AlignedBytes scratch;
  scratch.resize(k.scratch_bytes());
  std::vector<const void*> ip(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) ip[i] = in[i].value;
  std::vector<void*> op_out(out.size());
  for (std::size_t o = 0; o < out.size(); ++o) {
    storage.push_back(std::make_unique<AlignedBytes>());
    storage.back()->resize(out[o].nbytes());
    op_out[o] = storage.back()->data();
    desc[op.outputs[o]] = out[o];
    value[op.outputs[o]] = op_out[o];
  }
  k.run(ip.data(), op_out.data(), scratch.data());
}

void Engine::Impl::build() {
  const auto& tensors = model->tensors();
  const auto& ops = model->ops();
  std::set<std::string> missing;
  for (const Op& op : ops) {
    if (!engine::find_op(op.type)) missing.insert(op.type);
  }
  if (!missing.empty()) {
    std::string list;
    for (const auto& m : missing) list += (list.empty() ? "" : ", ") + m;
    throw Error(ErrorCode::kUnsupported, "the native engine does not implement op type(s): " + list);
  }
  for (const Op& op : ops) kernels.push_back(engine::find_op(op.type)->create(op));

  desc.resize(tensors.size());
  value.assign(tensors.size(), nullptr);
  is_static.assign(tensors.size(), 0);
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    desc[i].dtype = t.dtype;
    desc[i].shape = t.shape;
    if (!t.constant) continue;
    is_static[i] = 1;
    if (t.quantized) {
      // A quantised constant stands for its real value: consumers see float32.
      const std::vector<float> v = dequantize_constant(t);
      owned.push_back(std::make_unique<AlignedBytes>());
      owned.back()->resize(v.size() * sizeof(float));
      if (!v.empty()) std::memcpy(owned.back()->data(), v.data(), v.size() * sizeof(float));
      desc[i].dtype = DType::kF32;
      value[i] = owned.back()->data();
    } else {
      value[i] = t.data;
    }
  }
  // Fold everything that depends on constants alone, once.
  op_static.assign(ops.size(), 0);
  for (std::size_t i = 0; i < ops.size(); ++i) {
    bool all = true;
    for (std::int32_t id : ops[i].inputs) all = all && (id < 0 || is_static[id]);
    if (!all) continue;
    fold(i, owned);
    op_static[i] = 1;
    for (std::int32_t id : ops[i].outputs) is_static[id] = 1;
  }
  readers.assign(tensors.size(), 0);
  for (const Op& op : ops) {
    for (std::int32_t id : op.inputs) {
      if (id >= 0) ++readers[id];
    }
  }
  // A float input read by one QuantizeLinear alone may be fed already quantised (int8): the
  // caller's preprocessing then writes int8 directly, and the QuantizeLinear passes it on.
  prequantised_ok.assign(model->inputs().size(), 0);
  for (std::size_t k = 0; k < model->inputs().size(); ++k) {
    const std::int32_t id = model->inputs()[k];
    if (tensors[id].dtype != DType::kF32 || readers[id] != 1) continue;
    for (const Op& op : ops) {
      prequantised_ok[k] |= op.type == "QuantizeLinear" && !op.inputs.empty() && op.inputs[0] == id;
    }
  }
  input_ptrs.resize(model->inputs().size());
}

void Engine::Impl::plan(const std::vector<TensorView>& inputs) {
  const auto& tensors = model->tensors();
  const auto& ops = model->ops();
  planned = false;
  planned_owned.clear();
  steps.clear();
  buffers.clear();
  macs = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    if (is_static[i]) continue;
    desc[i] = TensorDesc{};
    value[i] = nullptr;
  }
  std::vector<char> known_shape(tensors.size(), 0);
  for (std::size_t i = 0; i < tensors.size(); ++i) known_shape[i] = is_static[i];
  loc.assign(tensors.size(), Loc{});
  const auto& graph_inputs = model->inputs();
  for (std::size_t k = 0; k < graph_inputs.size(); ++k) {
    const std::int32_t id = graph_inputs[k];
    desc[id] = {inputs[k].dtype, inputs[k].shape};
    known_shape[id] = 1;
    loc[id].kind = Loc::kInput;
    loc[id].index = k;
  }
  std::vector<char> is_output(tensors.size(), 0);
  for (std::int32_t id : model->outputs()) is_output[id] = 1;

  for (std::size_t i = 0; i < ops.size(); ++i) {
    if (op_static[i]) continue;
    const Op& op = ops[i];
    OpKernel& k = *kernels[i];
    bool all_known = true;
    for (std::int32_t id : op.inputs) all_known = all_known && (id < 0 || value[id] != nullptr);
    if (all_known || k.shape_only()) {
      try {
        fold(i, planned_owned);
      } catch (const Error& e) {
        throw Error(e.code(), std::string(e.what()) + " (op " + std::to_string(i) + ")");
      }
      continue;
    }
    std::vector<PlanInput> in(op.inputs.size());
    for (std::size_t j = 0; j < op.inputs.size(); ++j) {
      if (op.inputs[j] >= 0) in[j] = {&desc[op.inputs[j]], value[op.inputs[j]]};
    }
    std::vector<TensorDesc> out(op.outputs.size());
    try {
      plan_bounded(k, op, in, out);
    } catch (const Error& e) {
      throw Error(e.code(), std::string(e.what()) + " (op " + std::to_string(i) + ")");
    }
    Step s;
    s.op = i;
    s.inputs = op.inputs;
    s.outputs = op.outputs;
    const std::int32_t x = op.inputs.empty() ? -1 : op.inputs[0];
    if (x >= 0 && !steps.empty() && readers[x] == 1 && !is_output[x] && loc[x].kind == Loc::kArena &&
        buffers[loc[x].index].first == steps.size() - 1 && steps.back().outputs.size() == 1 &&
        steps.back().scratch_buffer < 0 && k.absorb_producer(*kernels[steps.back().op], steps.back().inputs.size())) {
      // The previous step produced x for this op alone: one step computes both, and x gets
      // no memory (its buffer is left empty).
      s.inputs = steps.back().inputs;
      s.inputs.insert(s.inputs.end(), op.inputs.begin() + 1, op.inputs.end());
      buffers[loc[x].index].bytes = 0;
      loc[x] = Loc{};
      steps.pop_back();
    }
    const std::size_t step_index = steps.size();
    for (std::int32_t id : op.inputs) {
      if (id >= 0 && loc[id].kind == Loc::kArena) {
        Buffer& b = buffers[loc[id].index];
        b.last = std::max(b.last, step_index);
      }
    }
    for (std::size_t o = 0; o < out.size(); ++o) {
      const std::int32_t id = op.outputs[o];
      desc[id] = out[o];
      const std::int32_t src = op.inputs.empty() ? -1 : op.inputs[0];
      if (o == 0 && k.output_aliases_input() && src >= 0 && !is_output[id] &&
          (loc[src].kind == Loc::kArena || loc[src].kind == Loc::kInput)) {
        loc[id] = loc[src];
        continue;
      }
      loc[id].kind = Loc::kArena;
      loc[id].index = buffers.size();
      buffers.push_back({out[o].nbytes(), step_index, step_index, 0});
    }
    if (k.scratch_bytes() > 0) {
      s.scratch_buffer = static_cast<std::int64_t>(buffers.size());
      buffers.push_back({k.scratch_bytes(), step_index, step_index, 0});
    }
    macs += k.macs();
    steps.push_back(std::move(s));
  }
  // Graph outputs stay live to the end (the caller reads them after run()).
  for (std::int32_t id : model->outputs()) {
    if (loc[id].kind == Loc::kArena) buffers[loc[id].index].last = steps.size();
    if (value[id] != nullptr) {
      loc[id].kind = Loc::kKnown;
      loc[id].known = value[id];
    }
  }
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    if (value[i] != nullptr && loc[i].kind == Loc::kNone) {
      loc[i].kind = Loc::kKnown;
      loc[i].known = value[i];
    }
  }
  arena.resize(assign_offsets(buffers));
  planned_input_shapes.clear();
  planned_input_dtypes.clear();
  for (const auto& v : inputs) {
    planned_input_shapes.push_back(v.shape);
    planned_input_dtypes.push_back(v.dtype);
  }
  planned = true;
}

Engine::Engine(std::shared_ptr<const Model> model, EngineOptions options) : impl_(new Impl) {
  require(model != nullptr, "Engine needs a model");
  require(options.threads >= 1 && options.threads <= 256,
          "Engine threads must be within 1..256, got " + std::to_string(options.threads));
  impl_->model = std::move(model);
  impl_->options = options;
  if (options.threads > 1) impl_->pool = std::make_unique<engine::ThreadPool>(options.threads);
  engine::CurrentPool current(impl_->pool.get());
  impl_->build();
}

Engine::~Engine() = default;

const Model& Engine::model() const { return *impl_->model; }

std::int64_t Engine::macs() const { return impl_->planned ? impl_->macs : 0; }

std::vector<TensorView> Engine::run(const std::vector<TensorView>& inputs) { return run(inputs, nullptr); }

std::vector<std::size_t> Engine::step_ops() const {
  std::vector<std::size_t> ops;
  if (impl_->planned) {
    for (const Step& s : impl_->steps) ops.push_back(s.op);
  }
  return ops;
}

std::vector<TensorView> Engine::run(const std::vector<TensorView>& inputs, std::vector<double>* step_seconds) {
  Impl& m = *impl_;
  engine::CurrentPool current(m.pool.get());
  const auto& tensors = m.model->tensors();
  const auto& graph_inputs = m.model->inputs();
  require(inputs.size() == graph_inputs.size(), "expected " + std::to_string(graph_inputs.size()) +
                                                    " input tensor(s), got " + std::to_string(inputs.size()));
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    const Tensor& t = tensors[graph_inputs[k]];
    const TensorView& v = inputs[k];
    const std::string name = "input '" + t.name + "'";
    require(v.dtype == t.dtype || (v.dtype == DType::kI8 && m.prequantised_ok[k]),
            name + ": expected " + dtype_name(t.dtype) + (m.prequantised_ok[k] ? " (or int8, quantised)" : "") +
                ", got " + dtype_name(v.dtype));
    if (!t.shape.empty()) {
      bool ok = v.shape.size() == t.shape.size();
      for (std::size_t d = 0; ok && d < t.shape.size(); ++d) ok = t.shape[d] < 0 || t.shape[d] == v.shape[d];
      require(ok, name + ": expected shape " + engine::shape_str(t.shape) + " (-1: any), got " +
                      engine::shape_str(v.shape));
    }
    for (std::int64_t d : v.shape) {
      require(d > 0 && d <= (std::int64_t(1) << 31), name + ": bad dimension in shape " + engine::shape_str(v.shape));
    }
    require(v.data != nullptr, name + ": no data");
  }
  bool same = m.planned && m.planned_input_shapes.size() == inputs.size();
  for (std::size_t k = 0; same && k < inputs.size(); ++k) {
    same = m.planned_input_shapes[k] == inputs[k].shape && m.planned_input_dtypes[k] == inputs[k].dtype;
  }
  if (!same) m.plan(inputs);

  for (std::size_t k = 0; k < inputs.size(); ++k) m.input_ptrs[k] = inputs[k].data;
  if (step_seconds) step_seconds->clear();
  for (const Step& s : m.steps) {
    m.in_ptrs.resize(s.inputs.size());
    m.out_ptrs.resize(s.outputs.size());
    for (std::size_t j = 0; j < s.inputs.size(); ++j) {
      m.in_ptrs[j] = s.inputs[j] >= 0 ? m.resolve(s.inputs[j]) : nullptr;
    }
    for (std::size_t j = 0; j < s.outputs.size(); ++j) {
      m.out_ptrs[j] = const_cast<void*>(m.resolve(s.outputs[j]));
    }
    void* scratch = s.scratch_buffer >= 0 ? m.arena.data() + m.buffers[s.scratch_buffer].offset : nullptr;
    if (!step_seconds) {
      m.kernels[s.op]->run(m.in_ptrs.data(), m.out_ptrs.data(), scratch);
      continue;
    }
    const auto t0 = std::chrono::steady_clock::now();
    m.kernels[s.op]->run(m.in_ptrs.data(), m.out_ptrs.data(), scratch);
    step_seconds->push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::vector<TensorView> out;
  for (std::int32_t id : m.model->outputs()) {
    TensorView v;
    v.dtype = m.desc[id].dtype;
    v.shape = m.desc[id].shape;
    v.data = m.resolve(id);
    out.push_back(std::move(v));
  }
  return out;
}

const std::vector<std::string>& engine_op_types() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& e : engine::op_registry()) v.emplace_back(e.type);
    return v;
  }();
  return names;
}

}  // namespace picoface
