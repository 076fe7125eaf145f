// GGUF v2/v3 reader and streaming writer (format: ggml's docs/gguf.md).
// The reader validates every count, length, offset and size against the file before use, so a
// hostile file produces a squish::Error("<path>: <problem>") and never an out-of-bounds read.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/atomic_file.h"
#include "core/mapped_file.h"
#include "core/tensor.h"

namespace squish {

enum class GGUFType : uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};

const char* gguf_type_name(GGUFType t);

// One metadata value. Scalars use one of i/f/s by type; arrays keep their element type and use
// one of ints/floats/strs/arrays. All integer types and BOOL share `i` (UINT64 is bit-cast).
struct GGUFValue {
  GGUFType type = GGUFType::UINT32;
  int64_t i = 0;
  double f = 0.0;
  std::string s;
  GGUFType elem_type = GGUFType::UINT8;  // for ARRAY
  std::vector<int64_t> ints;
  std::vector<double> floats;
  std::vector<std::string> strs;
  std::vector<GGUFValue> arrays;  // nested arrays (rare, but legal)

  static GGUFValue u32(uint32_t v);
  static GGUFValue i32(int32_t v);
  static GGUFValue u64(uint64_t v);
  static GGUFValue f32(float v);
  static GGUFValue boolean(bool v);
  static GGUFValue str(std::string v);
  static GGUFValue str_array(std::vector<std::string> v);
  static GGUFValue f32_array(std::vector<float> v);
  static GGUFValue i32_array(std::vector<int32_t> v);

  bool is_array() const { return type == GGUFType::ARRAY; }
  size_t array_size() const;
  std::string to_string(size_t max_elems = 8) const;  // for `squish info`
};

class GGUFFile {
 public:
  static std::shared_ptr<GGUFFile> open(const std::string& path);

  const std::string& path() const { return file_->path(); }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::shared_ptr<MappedFile>& file() const { return file_; }

  const std::vector<std::pair<std::string, GGUFValue>>& metadata() const { return metadata_; }
  const GGUFValue* find(std::string_view key) const;
  // Typed accessors: nullopt when absent; squish::Error naming the file and key when the stored
  // type does not fit (an integer getter accepts any integer type whose value fits).
  std::optional<uint64_t> get_uint(std::string_view key) const;
  std::optional<int64_t> get_int(std::string_view key) const;
  std::optional<double> get_float(std::string_view key) const;  // accepts float and int types
  std::optional<bool> get_bool(std::string_view key) const;
  std::optional<std::string> get_string(std::string_view key) const;
  // Array accessors: nullptr when absent; error when present with another element type.
  const std::vector<std::string>* get_str_array(std::string_view key) const;
  const std::vector<double>* get_float_array(std::string_view key) const;
  const std::vector<int64_t>* get_int_array(std::string_view key) const;

  // Tensors in file order; shape is row-major (GGUF's ne[] reversed); data points into the map.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find_tensor(std::string_view name) const;

 private:
  GGUFFile() = default;
  std::shared_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::vector<std::pair<std::string, GGUFValue>> metadata_;
  std::vector<TensorInfo> tensors_;
  friend class GGUFParser;
};

// Streams a GGUF v3 file through an AtomicFile: set metadata, declare all tensors, write the
// header, then write each tensor's data in declaration order (so a converter can produce one
// layer at a time), then finish() to commit. Nothing is visible under `path` until finish().
class GGUFWriter {
 public:
  explicit GGUFWriter(std::string path, uint32_t alignment = 32);
  ~GGUFWriter();

  void set(const std::string& key, GGUFValue value);  // replaces an existing key in place
  void remove(const std::string& key);
  void add_tensor(const std::string& name, DType type, const std::vector<int64_t>& shape);
  void write_header();
  void write_tensor_data(std::string_view name, const void* data, size_t nbytes);
  void finish();

 private:
  struct PendingTensor {
    std::string name;
    DType type;
    std::vector<int64_t> shape;
    uint64_t offset;
    uint64_t nbytes;
  };
  void check_open(const char* op) const;

  std::string path_;
  uint32_t alignment_;
  std::unique_ptr<AtomicFile> out_;  // null after finish()
  std::vector<std::pair<std::string, GGUFValue>> metadata_;
  std::vector<PendingTensor> tensors_;
  size_t next_tensor_ = 0;
  uint64_t data_start_ = 0;
  bool header_written_ = false;
};

}  // namespace squish
