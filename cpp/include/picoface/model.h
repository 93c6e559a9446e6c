// The picoface model file (".pface"): one self-describing, versioned, little-endian file.
//
//   header (64 bytes)  magic "PICOFACE", u32 version, u32 crc32 of every byte after the
//                      header, then (offset, size) u64 pairs of the three sections:
//   metadata           typed key/value pairs (task, input policy, colours, normalisation,
//                      head, anchors, template, thresholds, licence, provenance, ...)
//   graph              tensor table (name, dtype, shape, constant data location, optional
//                      int8 quantisation), graph inputs/outputs, op list with named typed
//                      attributes
//   data               constant tensor bytes, each 64-byte aligned (mmap-able)
//
// The loader checks every offset, size, count, shape and reference before anything uses
// the file; a corrupt or hostile file raises Error(kInvalidArgument), never crashes.
// Op semantics (which attributes an op needs) are checked by the engine when it plans.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace picoface {

constexpr std::uint32_t kModelFormatVersion = 1;
constexpr std::size_t kModelHeaderSize = 64;
constexpr std::size_t kModelDataAlignment = 64;

enum class DType : std::uint8_t { kF32 = 0, kI8 = 1, kU8 = 2, kI32 = 3, kI64 = 4 };
std::size_t dtype_size(DType t);
const char* dtype_name(DType t);

// One typed value of a metadata entry or op attribute.
struct Value {
  enum class Type : std::uint8_t {
    kInt = 1, kFloat = 2, kString = 3, kInts = 4, kFloats = 5, kStrings = 6,
  };
  Type type = Type::kInt;
  std::int64_t i = 0;
  double f = 0.0;
  std::string s;
  std::vector<std::int64_t> ints;
  std::vector<double> floats;
  std::vector<std::string> strings;
};

// Ordered name -> value list (keys unique, checked at load).
class Attributes {
 public:
  std::vector<std::pair<std::string, Value>> items;

  const Value* find(const std::string& key) const;
  // Typed getters throw Error(kInvalidArgument) naming the key if it is absent or mistyped.
  std::int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;  // accepts kInt too
  const std::string& get_string(const std::string& key) const;
  const std::vector<std::int64_t>& get_ints(const std::string& key) const;
  std::vector<double> get_floats(const std::string& key) const;  // accepts kInts too
};

struct Quantization {
  std::vector<float> scales;            // one (per tensor) or one per slice along `axis`
  std::vector<std::int32_t> zero_points;  // same count as scales
  std::int32_t axis = -1;               // -1: per tensor
};

struct Tensor {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<std::int64_t> shape;  // constants: all >= 0; activations: -1 = dynamic
  bool constant = false;
  const void* data = nullptr;  // constants only: points into the loaded file
  std::uint64_t nbytes = 0;
  bool quantized = false;
  Quantization quant;
  std::int64_t elements() const;  // product of shape (constants only)
};

struct Op {
  std::string type;
  std::vector<std::int32_t> inputs;  // tensor indices; -1 = optional input left out
  std::vector<std::int32_t> outputs;
  Attributes attrs;
};

class Model {
 public:
  // Parses and validates `bytes` (takes ownership). Throws Error(kInvalidArgument).
  static std::shared_ptr<const Model> from_bytes(std::vector<std::uint8_t> bytes);
  // Reads a file; throws Error(kNotFound) if it cannot be opened.
  static std::shared_ptr<const Model> from_file(const std::string& path);

  std::uint32_t version() const { return version_; }
  const Attributes& metadata() const { return metadata_; }
  const std::vector<Tensor>& tensors() const { return tensors_; }
  const std::vector<Op>& ops() const { return ops_; }
  const std::vector<std::int32_t>& inputs() const { return inputs_; }
  const std::vector<std::int32_t>& outputs() const { return outputs_; }
  std::int64_t parameter_count() const;  // elements of all constant tensors

 private:
  Model() = default;
  void parse();

  std::vector<std::uint8_t> bytes_;
  std::uint32_t version_ = 0;
  Attributes metadata_;
  std::vector<Tensor> tensors_;
  std::vector<Op> ops_;
  std::vector<std::int32_t> inputs_, outputs_;
};

// CRC-32 (IEEE 802.3 polynomial, as zlib), used for the header checksum. `value` continues a
// running checksum: crc32(b, nb, crc32(a, na)) == crc32(a + b, na + nb).
std::uint32_t crc32(const std::uint8_t* data, std::size_t size, std::uint32_t value = 0);

}  // namespace picoface
