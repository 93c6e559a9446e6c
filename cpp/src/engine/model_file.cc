// Parser and validator of the .pface model file (layout in picoface/model.h).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>

#include "picoface/error.h"
#include "picoface/model.h"

namespace picoface {
namespace {

constexpr char kMagic[8] = {'P', 'I', 'C', 'O', 'F', 'A', 'C', 'E'};
// Sanity bounds: far above any face model, low enough that a hostile count cannot make the
// loader allocate gigabytes before the bounds checks notice the file is too short.
constexpr std::uint32_t kMaxString = 1u << 20;
constexpr std::uint32_t kMaxRank = 8;
constexpr std::uint32_t kMaxCount = 1u << 24;

[[noreturn]] void corrupt(const std::string& what) {
  throw Error(ErrorCode::kInvalidArgument, "invalid picoface model file: " + what);
}

// Bounds-checked little-endian reader over one section.
class Reader {
 public:
  Reader(const std::uint8_t* data, std::size_t size, const char* section)
      : p_(data), end_(data + size), section_(section) {}

  bool done() const { return p_ == end_; }

  template <typename T>
  T read() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, p_, sizeof(T));  // the format is little-endian, as are all targets
    p_ += sizeof(T);
    return v;
  }

  // A count of items each at least `min_item_bytes` long: rejected if the rest of the
  // section cannot hold them, before anything is allocated.
  std::uint32_t count(std::size_t min_item_bytes, const char* what) {
    const std::uint32_t n = read<std::uint32_t>();
    if (n > kMaxCount || static_cast<std::uint64_t>(n) * min_item_bytes > remaining()) {
      corrupt(std::string(section_) + ": " + what + " count " + std::to_string(n) +
              " exceeds the section");
    }
    return n;
  }

  std::string string(const char* what) {
    const std::uint32_t n = read<std::uint32_t>();
    if (n > kMaxString) corrupt(std::string(section_) + ": " + what + " longer than 1 MiB");
    need(n);
    std::string s(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    return s;
  }

 private:
  std::size_t remaining() const { return static_cast<std::size_t>(end_ - p_); }
  void need(std::size_t n) {
    if (n > remaining()) corrupt(std::string(section_) + " is truncated");
  }

  const std::uint8_t* p_;
  const std::uint8_t* end_;
  const char* section_;
};

Value read_value(Reader& r, const std::string& key) {
  Value v;
  const auto type = r.read<std::uint8_t>();
  switch (static_cast<Value::Type>(type)) {
    case Value::Type::kInt: v.i = r.read<std::int64_t>(); break;
    case Value::Type::kFloat: v.f = r.read<double>(); break;
    case Value::Type::kString: v.s = r.string("string value"); break;
    case Value::Type::kInts: {
      const std::uint32_t n = r.count(8, "int list");
      v.ints.resize(n);
      for (auto& x : v.ints) x = r.read<std::int64_t>();
      break;
    }
    case Value::Type::kFloats: {
      const std::uint32_t n = r.count(8, "float list");
      v.floats.resize(n);
      for (auto& x : v.floats) x = r.read<double>();
      break;
    }
    case Value::Type::kStrings: {
      const std::uint32_t n = r.count(4, "string list");
      v.strings.resize(n);
      for (auto& x : v.strings) x = r.string("string list item");
      break;
    }
    default: corrupt("value of '" + key + "' has unknown type " + std::to_string(type));
  }
  v.type = static_cast<Value::Type>(type);
  if (v.type == Value::Type::kFloat && !std::isfinite(v.f)) corrupt("'" + key + "' is not finite");
  for (double x : v.floats) {
    if (!std::isfinite(x)) corrupt("'" + key + "' holds a non-finite number");
  }
  return v;
}

Attributes read_attributes(Reader& r, const char* what) {
  Attributes a;
  const std::uint32_t n = r.count(6, what);
  std::set<std::string> seen;
  for (std::uint32_t k = 0; k < n; ++k) {
    std::string key = r.string("key");
    if (key.empty()) corrupt(std::string(what) + ": empty key");
    if (!seen.insert(key).second) corrupt(std::string(what) + ": duplicate key '" + key + "'");
    Value v = read_value(r, key);
    a.items.emplace_back(std::move(key), std::move(v));
  }
  return a;
}

// Metadata keys the SDK reads, with their types; a known key of the wrong type, or a
// required key missing, makes the file invalid. Unknown keys are kept (forward compatible).
struct MetaKey {
  const char* key;
  Value::Type type;
  bool required;
};
constexpr MetaKey kMetaSchema[] = {
    {"task", Value::Type::kString, true},
    {"architecture", Value::Type::kString, true},
    {"input.size_policy", Value::Type::kString, true},
    {"input.size", Value::Type::kInts, false},
    {"input.multiple", Value::Type::kInt, false},
    {"input.color", Value::Type::kString, true},
    {"input.mean", Value::Type::kFloats, true},
    {"input.std", Value::Type::kFloats, true},
    {"input.layout", Value::Type::kString, true},
    {"head.type", Value::Type::kString, false},
    {"head.strides", Value::Type::kInts, false},
    {"head.anchor_sizes", Value::Type::kFloats, false},   // all levels, flattened
    {"head.anchor_counts", Value::Type::kInts, false},    // anchors per level
    {"head.outputs", Value::Type::kStrings, false},
    {"align.template", Value::Type::kFloats, false},
    {"align.size", Value::Type::kInts, false},
    {"embed.dim", Value::Type::kInt, false},
    // Landmark models: points per face; their coordinates as "unit" fractions of the crop
    // (x right, y down, [0, 1] inside it) or as "pixels" of the network input.
    {"landmarks.points", Value::Type::kInt, false},
    {"landmarks.coords", Value::Type::kString, false},
    // How a face box becomes the crop a landmark model sees, centred on the box centre:
    // "square_max" / "square_min" = a square of side max / min(w, h) * crop.scale, "box" =
    // the box itself scaled by crop.scale; then resized to input.size (zero padding outside
    // the image).
    {"crop.policy", Value::Type::kString, false},
    {"crop.scale", Value::Type::kFloat, false},
    {"threshold.score", Value::Type::kFloat, false},
    {"threshold.nms", Value::Type::kFloat, false},
    {"threshold.match", Value::Type::kFloat, false},
    {"quant.scheme", Value::Type::kString, false},
    {"license", Value::Type::kString, false},
    {"provenance", Value::Type::kString, false},
};

void check_one_of(const Attributes& m, const char* key, std::initializer_list<const char*> ok) {
  const Value* v = m.find(key);
  if (v == nullptr) return;
  for (const char* o : ok) {
    if (v->s == o) return;
  }
  corrupt(std::string("metadata '") + key + "' has unsupported value '" + v->s + "'");
}

void validate_metadata(const Attributes& m) {
  for (const MetaKey& k : kMetaSchema) {
    const Value* v = m.find(k.key);
    if (v == nullptr) {
      if (k.required) corrupt(std::string("metadata lacks '") + k.key + "'");
      continue;
    }
    if (v->type != k.type) corrupt(std::string("metadata '") + k.key + "' has the wrong type");
  }
  check_one_of(m, "task", {"detect", "landmarks", "embed"});
  check_one_of(m, "input.size_policy", {"fixed", "multiple"});
  check_one_of(m, "input.color", {"bgr", "rgb", "gray"});
  check_one_of(m, "input.layout", {"nchw", "nhwc"});
  check_one_of(m, "quant.scheme", {"none", "int8"});
  check_one_of(m, "landmarks.coords", {"unit", "pixels"});
  check_one_of(m, "crop.policy", {"square_max", "square_min", "box"});
  if (m.find("input.mean")->floats.size() != 3 || m.find("input.std")->floats.size() != 3) {
    corrupt("metadata input.mean and input.std need 3 values");
  }
  for (double s : m.find("input.std")->floats) {
    if (s == 0.0) corrupt("metadata input.std has a zero");
  }
  const std::string& policy = m.find("input.size_policy")->s;
  if (policy == "fixed") {
    const Value* size = m.find("input.size");
    if (size == nullptr || size->ints.size() != 2 || size->ints[0] < 1 || size->ints[1] < 1 ||
        size->ints[0] > 16384 || size->ints[1] > 16384) {
      corrupt("a fixed input needs input.size = [width, height] within 1..16384");
    }
  } else {
    const Value* mult = m.find("input.multiple");
    if (mult == nullptr || mult->i < 1 || mult->i > 1024) {
      corrupt("a 'multiple' input policy needs input.multiple within 1..1024");
    }
  }
  if (const Value* t = m.find("align.template")) {
    if (t->floats.size() < 4 || t->floats.size() % 2) corrupt("align.template needs x,y pairs");
  }
  if (m.find("task")->s == "landmarks") {
    const Value* points = m.find("landmarks.points");
    if (points == nullptr || points->i < 1 || points->i > 4096) {
      corrupt("a landmark model needs landmarks.points within 1..4096");
    }
    const Value* scale = m.find("crop.scale");
    if (m.find("landmarks.coords") == nullptr || m.find("crop.policy") == nullptr ||
        scale == nullptr) {
      corrupt("a landmark model needs landmarks.coords, crop.policy and crop.scale");
    }
    if (!(scale->f > 0.0 && scale->f <= 10.0)) corrupt("metadata crop.scale must be in (0, 10]");
  }
  // Anchor sizes are listed flat, level after level: the counts must account for every size
  // and name one level per stride, else a decoder would read past a level.
  const Value* sizes = m.find("head.anchor_sizes");
  const Value* counts = m.find("head.anchor_counts");
  if ((sizes == nullptr) != (counts == nullptr)) {
    corrupt("head.anchor_sizes and head.anchor_counts come together");
  }
  if (counts != nullptr) {
    std::int64_t total = 0;
    for (std::int64_t c : counts->ints) {
      if (c < 1 || c > 1024) corrupt("head.anchor_counts must be within 1..1024");
      total += c;
    }
    if (total != static_cast<std::int64_t>(sizes->floats.size())) {
      corrupt("head.anchor_counts sum to " + std::to_string(total) + " but head.anchor_sizes has " +
              std::to_string(sizes->floats.size()) + " values");
    }
    const Value* strides = m.find("head.strides");
    if (strides != nullptr && strides->ints.size() != counts->ints.size()) {
      corrupt("head.anchor_counts needs one count per head.strides level");
    }
  }
}

}  // namespace

std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::kF32: return 4;
    case DType::kI8: return 1;
    case DType::kU8: return 1;
    case DType::kI32: return 4;
    case DType::kI64: return 8;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::kF32: return "float32";
    case DType::kI8: return "int8";
    case DType::kU8: return "uint8";
    case DType::kI32: return "int32";
    case DType::kI64: return "int64";
  }
  return "unknown";
}

const Value* Attributes::find(const std::string& key) const {
  for (const auto& [k, v] : items) {
    if (k == key) return &v;
  }
  return nullptr;
}

namespace {
const Value& typed(const Attributes& a, const std::string& key, Value::Type t, const char* name) {
  const Value* v = a.find(key);
  if (v == nullptr) throw Error(ErrorCode::kInvalidArgument, "missing attribute '" + key + "'");
  if (v->type != t) {
    throw Error(ErrorCode::kInvalidArgument, "attribute '" + key + "' is not " + name);
  }
  return *v;
}
}  // namespace

std::int64_t Attributes::get_int(const std::string& key) const {
  return typed(*this, key, Value::Type::kInt, "an integer").i;
}

double Attributes::get_float(const std::string& key) const {
  const Value* v = find(key);
  if (v != nullptr && v->type == Value::Type::kInt) return static_cast<double>(v->i);
  return typed(*this, key, Value::Type::kFloat, "a number").f;
}

const std::string& Attributes::get_string(const std::string& key) const {
  return typed(*this, key, Value::Type::kString, "a string").s;
}

const std::vector<std::int64_t>& Attributes::get_ints(const std::string& key) const {
  return typed(*this, key, Value::Type::kInts, "an integer list").ints;
}

std::vector<double> Attributes::get_floats(const std::string& key) const {
  const Value* v = find(key);
  if (v != nullptr && v->type == Value::Type::kInts) {
    return std::vector<double>(v->ints.begin(), v->ints.end());
  }
  return typed(*this, key, Value::Type::kFloats, "a number list").floats;
}

std::int64_t Tensor::elements() const {
  std::int64_t n = 1;
  for (std::int64_t d : shape) n *= d;
  return n;
}

std::uint32_t crc32(const std::uint8_t* data, std::size_t size, std::uint32_t value) {
  static const std::array<std::uint32_t, 256> table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  std::uint32_t c = value ^ 0xFFFFFFFFu;
  for (std::size_t i = 0; i < size; ++i) c = table[(c ^ data[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

std::shared_ptr<const Model> Model::from_bytes(std::vector<std::uint8_t> bytes) {
  std::shared_ptr<Model> m(new Model());
  m->bytes_ = std::move(bytes);
  m->parse();
  return m;
}

std::shared_ptr<const Model> Model::from_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(ErrorCode::kNotFound, "model file not found or unreadable: '" + path + "'");
  f.seekg(0, std::ios::end);
  const std::streamoff size = f.tellg();
  if (size < 0 || size > (std::streamoff(1) << 32)) corrupt("size unreadable or above 4 GiB");
  f.seekg(0);
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
  if (size > 0 && !f.read(reinterpret_cast<char*>(bytes.data()), size)) {
    throw Error(ErrorCode::kNotFound, "could not read model file '" + path + "'");
  }
  return from_bytes(std::move(bytes));
}

std::int64_t Model::parameter_count() const {
  std::int64_t n = 0;
  for (const Tensor& t : tensors_) {
    if (t.constant) n += t.elements();
  }
  return n;
}

void Model::parse() {
  const std::uint8_t* base = bytes_.data();
  const std::uint64_t file_size = bytes_.size();
  if (file_size < kModelHeaderSize || std::memcmp(base, kMagic, sizeof kMagic) != 0) {
    corrupt("not a picoface model (bad magic or shorter than its header)");
  }
  Reader h(base + 8, kModelHeaderSize - 8, "header");
  version_ = h.read<std::uint32_t>();
  if (version_ != kModelFormatVersion) {
    corrupt("format version " + std::to_string(version_) + ", this build reads version " +
            std::to_string(kModelFormatVersion));
  }
  const std::uint32_t crc = h.read<std::uint32_t>();
  std::uint64_t off[3], size[3];
  for (int s = 0; s < 3; ++s) {
    off[s] = h.read<std::uint64_t>();
    size[s] = h.read<std::uint64_t>();
    if (off[s] < kModelHeaderSize || off[s] > file_size || size[s] > file_size - off[s]) {
      corrupt("a section lies outside the file");
    }
  }
  if (off[0] + size[0] > off[1] || off[1] + size[1] > off[2]) corrupt("sections overlap or are out of order");
  if (off[2] % kModelDataAlignment != 0) corrupt("data section is not 64-byte aligned");
  if (crc32(base + kModelHeaderSize, file_size - kModelHeaderSize) != crc) {
    corrupt("checksum mismatch (the file is damaged or was modified)");
  }

  Reader meta(base + off[0], size[0], "metadata");
  metadata_ = read_attributes(meta, "metadata");
  if (!meta.done()) corrupt("metadata has trailing bytes");
  validate_metadata(metadata_);

  Reader g(base + off[1], size[1], "graph");
  const std::uint32_t nt = g.count(7, "tensor");
  tensors_.resize(nt);
  std::set<std::string> names;
  // Constant data ranges, to reject overlapping blobs.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
  for (Tensor& t : tensors_) {
    t.name = g.string("tensor name");
    if (t.name.empty() || !names.insert(t.name).second) corrupt("tensor names must be unique and non-empty");
    const auto dt = g.read<std::uint8_t>();
    if (dt > static_cast<std::uint8_t>(DType::kI64)) corrupt("tensor '" + t.name + "' has unknown dtype");
    t.dtype = static_cast<DType>(dt);
    const auto rank = g.read<std::uint8_t>();
    if (rank > kMaxRank) corrupt("tensor '" + t.name + "' has rank above 8");
    t.shape.resize(rank);
    for (auto& d : t.shape) d = g.read<std::int64_t>();
    const auto kind = g.read<std::uint8_t>();
    if (kind > 1) corrupt("tensor '" + t.name + "' has unknown kind");
    t.constant = kind == 1;
    if (t.constant) {
      const std::uint64_t offset = g.read<std::uint64_t>();
      t.nbytes = g.read<std::uint64_t>();
      std::uint64_t n = dtype_size(t.dtype);
      for (std::int64_t d : t.shape) {
        if (d < 0 || d > (std::int64_t(1) << 32)) corrupt("constant '" + t.name + "' has a bad dimension");
        if (d != 0 && n > std::numeric_limits<std::uint64_t>::max() / static_cast<std::uint64_t>(d)) {
          corrupt("constant '" + t.name + "' is too large");
        }
        n *= static_cast<std::uint64_t>(d);
      }
      if (n != t.nbytes) corrupt("constant '" + t.name + "' size does not match its shape");
      if (offset % kModelDataAlignment != 0 || offset > size[2] || t.nbytes > size[2] - offset) {
        corrupt("constant '" + t.name + "' lies outside the data section or is unaligned");
      }
      t.data = base + off[2] + offset;
      if (t.nbytes > 0) ranges.emplace_back(offset, offset + t.nbytes);
    } else {
      for (std::int64_t d : t.shape) {
        if (d < -1 || d > (std::int64_t(1) << 32)) corrupt("tensor '" + t.name + "' has a bad dimension");
      }
    }
    const auto has_quant = g.read<std::uint8_t>();
    if (has_quant > 1) corrupt("tensor '" + t.name + "' has a bad quantisation flag");
    if (has_quant) {
      t.quantized = true;
      const std::uint32_t nq = g.count(8, "quantisation parameter");
      if (nq == 0) corrupt("tensor '" + t.name + "' has empty quantisation parameters");
      t.quant.scales.resize(nq);
      t.quant.zero_points.resize(nq);
      for (auto& s : t.quant.scales) {
        s = g.read<float>();
        if (!(s > 0.0f) || !std::isfinite(s)) corrupt("tensor '" + t.name + "' has a bad scale");
      }
      for (auto& z : t.quant.zero_points) z = g.read<std::int32_t>();
      t.quant.axis = g.read<std::int32_t>();
      const bool per_tensor = t.quant.axis == -1 && nq == 1;
      const bool per_axis = t.quant.axis >= 0 && t.quant.axis < static_cast<int>(t.shape.size()) &&
                            t.shape[t.quant.axis] == static_cast<std::int64_t>(nq);
      if (!per_tensor && !per_axis) corrupt("tensor '" + t.name + "' quantisation does not fit its shape");
    }
  }
  std::sort(ranges.begin(), ranges.end());
  for (std::size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].first < ranges[i - 1].second) corrupt("constant data blobs overlap");
  }

  auto read_ids = [&](std::vector<std::int32_t>* ids, const char* what, bool optional_ok) {
    const std::uint32_t n = g.count(4, what);
    ids->resize(n);
    for (auto& id : *ids) {
      id = g.read<std::int32_t>();
      if (id < (optional_ok ? -1 : 0) || id >= static_cast<std::int32_t>(nt)) {
        corrupt(std::string(what) + " refers to tensor " + std::to_string(id) + " of " + std::to_string(nt));
      }
    }
  };
  read_ids(&inputs_, "graph input", false);
  read_ids(&outputs_, "graph output", false);
  if (inputs_.empty() || outputs_.empty()) corrupt("the graph needs at least one input and one output");

  // Every activation is written once (by an op or as a graph input) before it is read:
  // ops are stored in execution order.
  std::vector<char> ready(nt, 0);
  for (std::size_t i = 0; i < nt; ++i) ready[i] = tensors_[i].constant;
  for (std::int32_t id : inputs_) {
    if (tensors_[id].constant) corrupt("graph input '" + tensors_[id].name + "' is a constant");
    if (ready[id]) corrupt("graph input '" + tensors_[id].name + "' is listed twice");
    ready[id] = 1;
  }
  const std::uint32_t nops = g.count(16, "op");
  ops_.resize(nops);
  for (Op& op : ops_) {
    op.type = g.string("op type");
    if (op.type.empty() || op.type.size() > 64) corrupt("op type must be 1..64 characters");
    read_ids(&op.inputs, "op input", true);
    read_ids(&op.outputs, "op output", false);
    op.attrs = read_attributes(g, "op attributes");
    for (std::int32_t id : op.inputs) {
      if (id >= 0 && !ready[id]) {
        corrupt("op " + op.type + " reads '" + tensors_[id].name + "' before it is computed");
      }
    }
    for (std::int32_t id : op.outputs) {
      if (ready[id]) corrupt("op " + op.type + " writes '" + tensors_[id].name + "', which already has a value");
      ready[id] = 1;
    }
  }
  for (std::int32_t id : outputs_) {
    if (!ready[id]) corrupt("graph output '" + tensors_[id].name + "' is never computed");
  }
  if (!g.done()) corrupt("graph has trailing bytes");
}

}  // namespace picoface
