#include "formats/gguf.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <numeric>
#include <unordered_set>

#include "core/error.h"

namespace squish {

static_assert(std::endian::native == std::endian::little,
              "GGUF I/O assumes a little-endian host (values are copied as-is)");

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian uint32
constexpr uint64_t kDefaultAlignment = 32;
constexpr uint32_t kMaxDims = 4;
// Each nesting level costs only 12 bytes in the file but a stack frame here, so a small hostile
// file could otherwise recurse the stack away.
constexpr int kMaxArrayDepth = 16;
// llama.cpp rejects tensor names of GGML_MAX_NAME (64) bytes or more; writing one would produce a
// file it cannot load.
constexpr size_t kMaxWriterNameBytes = 63;
// Smallest possible encodings, used to bound counts against the bytes left before allocating.
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;  // key length, type, one-byte value
// name length, n_dims, ne[0], type, offset
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;
constexpr uint64_t kMinStringBytes = 8;
constexpr uint64_t kMinArrayBytes = 4 + 8;

bool known_type(uint32_t t) {
  return t <= static_cast<uint32_t>(GGUFType::FLOAT64);
}

bool is_int_type(GGUFType t) {
  switch (t) {
    case GGUFType::UINT8:
    case GGUFType::INT8:
    case GGUFType::UINT16:
    case GGUFType::INT16:
    case GGUFType::UINT32:
    case GGUFType::INT32:
    case GGUFType::UINT64:
    case GGUFType::INT64:
      return true;
    default:
      return false;
  }
}

bool is_float_type(GGUFType t) {
  return t == GGUFType::FLOAT32 || t == GGUFType::FLOAT64;
}

// Bytes of one value of a fixed-width type; 0 for STRING and ARRAY.
size_t fixed_size(GGUFType t) {
  switch (t) {
    case GGUFType::UINT8:
    case GGUFType::INT8:
    case GGUFType::BOOL:
      return 1;
    case GGUFType::UINT16:
    case GGUFType::INT16:
      return 2;
    case GGUFType::UINT32:
    case GGUFType::INT32:
    case GGUFType::FLOAT32:
      return 4;
    case GGUFType::UINT64:
    case GGUFType::INT64:
    case GGUFType::FLOAT64:
      return 8;
    default:
      return 0;
  }
}

uint64_t min_encoded_size(GGUFType t) {
  if (t == GGUFType::STRING) return kMinStringBytes;
  if (t == GGUFType::ARRAY) return kMinArrayBytes;
  return fixed_size(t);
}

// Names and keys come from untrusted files; keep error messages on one line.
std::string printable(std::string_view s, size_t max_len = 120) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < max_len; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '\\' || c == '"') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > max_len) out += "...";
  return out;
}

std::string show_name(std::string_view s) {
  return fmt::format("'{}'", printable(s));
}

// Overflow-checked round-up; alignment is a power of two.
bool align_up(uint64_t x, uint64_t alignment, uint64_t* out) {
  const uint64_t rem = x & (alignment - 1);
  if (rem == 0) {
    *out = x;
    return true;
  }
  return !__builtin_add_overflow(x, alignment - rem, out);
}

bool is_pow2(uint64_t x) {
  return x != 0 && (x & (x - 1)) == 0;
}

// Range of an integer GGUF type, for checking values before they are narrowed on write.
bool int_fits(GGUFType t, int64_t v) {
  switch (t) {
    case GGUFType::UINT8:
      return v >= 0 && v <= 0xff;
    case GGUFType::INT8:
      return v >= -128 && v <= 127;
    case GGUFType::UINT16:
      return v >= 0 && v <= 0xffff;
    case GGUFType::INT16:
      return v >= -32768 && v <= 32767;
    case GGUFType::UINT32:
      return v >= 0 && v <= 0xffffffffLL;
    case GGUFType::INT32:
      return v >= std::numeric_limits<int32_t>::min() && v <= std::numeric_limits<int32_t>::max();
    case GGUFType::BOOL:
      return v == 0 || v == 1;
    default:  // 64-bit types hold any int64 (UINT64 is bit-cast)
      return true;
  }
}

std::string type_description(const GGUFValue& v) {
  if (!v.is_array()) return gguf_type_name(v.type);
  return fmt::format("ARRAY of {}", gguf_type_name(v.elem_type));
}

std::string scalar_string(GGUFType t, int64_t i, double f, const std::string& s) {
  switch (t) {
    case GGUFType::UINT64:
      return std::to_string(static_cast<uint64_t>(i));
    case GGUFType::BOOL:
      return i ? "true" : "false";
    case GGUFType::FLOAT32:
      return fmt::format("{}", static_cast<float>(f));
    case GGUFType::FLOAT64:
      return fmt::format("{}", f);
    case GGUFType::STRING:
      return fmt::format("\"{}\"", printable(s, 200));
    default:
      return std::to_string(i);
  }
}

}  // namespace

const char* gguf_type_name(GGUFType t) {
  static constexpr const char* kNames[] = {"UINT8",  "INT8",    "UINT16", "INT16",  "UINT32",
                                           "INT32",  "FLOAT32", "BOOL",   "STRING", "ARRAY",
                                           "UINT64", "INT64",   "FLOAT64"};
  const uint32_t id = static_cast<uint32_t>(t);
  return known_type(id) ? kNames[id] : "UNKNOWN";
}

// ---------------------------------------------------------------------------------------------
// GGUFValue

GGUFValue GGUFValue::u32(uint32_t v) {
  GGUFValue out;
  out.type = GGUFType::UINT32;
  out.i = v;
  return out;
}

GGUFValue GGUFValue::i32(int32_t v) {
  GGUFValue out;
  out.type = GGUFType::INT32;
  out.i = v;
  return out;
}

GGUFValue GGUFValue::u64(uint64_t v) {
  GGUFValue out;
  out.type = GGUFType::UINT64;
  out.i = static_cast<int64_t>(v);
  return out;
}

GGUFValue GGUFValue::f32(float v) {
  GGUFValue out;
  out.type = GGUFType::FLOAT32;
  out.f = v;
  return out;
}

GGUFValue GGUFValue::boolean(bool v) {
  GGUFValue out;
  out.type = GGUFType::BOOL;
  out.i = v ? 1 : 0;
  return out;
}

GGUFValue GGUFValue::str(std::string v) {
  GGUFValue out;
  out.type = GGUFType::STRING;
  out.s = std::move(v);
  return out;
}

GGUFValue GGUFValue::str_array(std::vector<std::string> v) {
  GGUFValue out;
  out.type = GGUFType::ARRAY;
  out.elem_type = GGUFType::STRING;
  out.strs = std::move(v);
  return out;
}

GGUFValue GGUFValue::f32_array(std::vector<float> v) {
  GGUFValue out;
  out.type = GGUFType::ARRAY;
  out.elem_type = GGUFType::FLOAT32;
  out.floats.assign(v.begin(), v.end());
  return out;
}

GGUFValue GGUFValue::i32_array(std::vector<int32_t> v) {
  GGUFValue out;
  out.type = GGUFType::ARRAY;
  out.elem_type = GGUFType::INT32;
  out.ints.assign(v.begin(), v.end());
  return out;
}

size_t GGUFValue::array_size() const {
  if (!is_array()) return 0;
  if (elem_type == GGUFType::STRING) return strs.size();
  if (elem_type == GGUFType::ARRAY) return arrays.size();
  if (is_float_type(elem_type)) return floats.size();
  return ints.size();
}

std::string GGUFValue::to_string(size_t max_elems) const {
  if (!is_array()) return scalar_string(type, i, f, s);
  const size_t n = array_size();
  const size_t shown = std::min(n, max_elems);
  std::string out = "[";
  for (size_t k = 0; k < shown; ++k) {
    if (k) out += ", ";
    if (elem_type == GGUFType::STRING) {
      out += scalar_string(elem_type, 0, 0.0, strs[k]);
    } else if (elem_type == GGUFType::ARRAY) {
      out += arrays[k].to_string(max_elems);
    } else if (is_float_type(elem_type)) {
      out += scalar_string(elem_type, 0, floats[k], s);
    } else {
      out += scalar_string(elem_type, ints[k], 0.0, s);
    }
  }
  if (shown < n) out += fmt::format("{}... +{} more", shown ? ", " : "", n - shown);
  return out + "]";
}

// ---------------------------------------------------------------------------------------------
// Reader

class GGUFParser {
 public:
  explicit GGUFParser(std::shared_ptr<MappedFile> file)
      : file_(std::move(file)), r_(file_->data(), file_->size(), file_->path()) {}

  std::shared_ptr<GGUFFile> parse() {
    std::shared_ptr<GGUFFile> out(new GGUFFile());
    out->file_ = file_;
    read_header(*out);
    read_metadata(*out);
    read_alignment(*out);
    read_tensor_infos(*out);
    return out;
  }

 private:
  [[noreturn]] void fail_here(const std::string& problem) const { r_.error(problem); }

  void check_count(uint64_t count, uint64_t min_bytes_each, const char* what) const {
    if (min_bytes_each != 0 && count > r_.remaining() / min_bytes_each) {
      fail_here(
          fmt::format("{} count {} cannot fit in the {} bytes left", what, count, r_.remaining()));
    }
  }

  std::string read_string(const char* what) {
    const uint64_t len = r_.read<uint64_t>();
    if (len > r_.remaining()) {
      fail_here(fmt::format("{} length {} exceeds the {} bytes left", what, len, r_.remaining()));
    }
    const uint8_t* p = r_.take(static_cast<size_t>(len));
    return std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(len));
  }

  GGUFType read_type(const char* what) {
    const uint32_t t = r_.read<uint32_t>();
    if (!known_type(t)) fail_here(fmt::format("unknown {} type {}", what, t));
    return static_cast<GGUFType>(t);
  }

  int64_t read_int(GGUFType t) {
    switch (t) {
      case GGUFType::UINT8:
        return r_.read<uint8_t>();
      case GGUFType::INT8:
        return r_.read<int8_t>();
      case GGUFType::UINT16:
        return r_.read<uint16_t>();
      case GGUFType::INT16:
        return r_.read<int16_t>();
      case GGUFType::UINT32:
        return r_.read<uint32_t>();
      case GGUFType::INT32:
        return r_.read<int32_t>();
      case GGUFType::UINT64:
        return static_cast<int64_t>(r_.read<uint64_t>());
      case GGUFType::INT64:
        return r_.read<int64_t>();
      case GGUFType::BOOL: {
        const uint8_t b = r_.read<uint8_t>();
        if (b > 1) fail_here(fmt::format("invalid BOOL value {}", b));
        return b;
      }
      default:
        fail_here("internal: read_int on a non-integer type");
    }
  }

  double read_float(GGUFType t) {
    if (t == GGUFType::FLOAT32) return r_.read<float>();
    return r_.read<double>();
  }

  // Reads an array body (element type, count, elements); `depth` counts enclosing arrays.
  GGUFValue read_array(int depth) {
    if (depth > kMaxArrayDepth) {
      fail_here(fmt::format("arrays nested deeper than {} levels", kMaxArrayDepth));
    }
    GGUFValue v;
    v.type = GGUFType::ARRAY;
    v.elem_type = read_type("array element");
    const uint64_t count = r_.read<uint64_t>();
    check_count(count, min_encoded_size(v.elem_type), "array element");
    const size_t n = static_cast<size_t>(count);
    switch (v.elem_type) {
      case GGUFType::STRING:
        v.strs.reserve(n);
        for (size_t k = 0; k < n; ++k) v.strs.push_back(read_string("string"));
        break;
      case GGUFType::ARRAY:
        v.arrays.reserve(n);
        for (size_t k = 0; k < n; ++k) v.arrays.push_back(read_array(depth + 1));
        break;
      case GGUFType::FLOAT32:
      case GGUFType::FLOAT64:
        v.floats.reserve(n);
        for (size_t k = 0; k < n; ++k) v.floats.push_back(read_float(v.elem_type));
        break;
      default:
        v.ints.reserve(n);
        for (size_t k = 0; k < n; ++k) v.ints.push_back(read_int(v.elem_type));
        break;
    }
    return v;
  }

  GGUFValue read_value(GGUFType t) {
    if (t == GGUFType::ARRAY) return read_array(1);
    GGUFValue v;
    v.type = t;
    if (t == GGUFType::STRING) {
      v.s = read_string("string");
    } else if (is_float_type(t)) {
      v.f = read_float(t);
    } else {
      v.i = read_int(t);
    }
    return v;
  }

  void read_header(GGUFFile& out) {
    if (r_.remaining() < 4 || r_.read<uint32_t>() != kMagic) {
      fail("{}: not a GGUF file (bad magic)", file_->path());
    }
    const uint32_t version = r_.read<uint32_t>();
    if (version != 2 && version != 3) {
      if (__builtin_bswap32(version) == 2 || __builtin_bswap32(version) == 3) {
        fail("{}: big-endian GGUF is not supported", file_->path());
      }
      fail("{}: unsupported GGUF version {} (only versions 2 and 3 are supported)", file_->path(),
           version);
    }
    out.version_ = version;
    n_tensors_ = r_.read<uint64_t>();
    n_kv_ = r_.read<uint64_t>();
    // Bound both counts now so that a huge claim fails before anything is allocated.
    check_count(n_kv_, kMinKvBytes, "metadata key-value");
    check_count(n_tensors_, kMinTensorInfoBytes, "tensor");
  }

  void read_metadata(GGUFFile& out) {
    out.metadata_.reserve(static_cast<size_t>(n_kv_));
    std::unordered_set<std::string> seen;
    for (uint64_t k = 0; k < n_kv_; ++k) {
      std::string key = read_string("key");
      if (key.empty()) fail_here("empty metadata key");
      if (!seen.insert(key).second) fail_here("duplicate metadata key " + show_name(key));
      const GGUFType t = read_type("metadata value");
      out.metadata_.emplace_back(std::move(key), read_value(t));
    }
  }

  void read_alignment(GGUFFile& out) {
    out.alignment_ = kDefaultAlignment;
    const GGUFValue* v = out.find("general.alignment");
    if (v == nullptr) return;
    if (!is_int_type(v->type)) {
      fail("{}: general.alignment has type {}, expected UINT32", file_->path(),
           type_description(*v));
    }
    const bool negative = v->type != GGUFType::UINT64 && v->i < 0;
    const uint64_t a = static_cast<uint64_t>(v->i);
    if (negative || !is_pow2(a) || a > std::numeric_limits<uint32_t>::max()) {
      fail("{}: general.alignment {} is not a nonzero power of two that fits in 32 bits",
           file_->path(), v->to_string());
    }
    out.alignment_ = a;
  }

  void read_tensor_infos(GGUFFile& out) {
    check_count(n_tensors_, kMinTensorInfoBytes, "tensor");
    const size_t n = static_cast<size_t>(n_tensors_);
    std::vector<uint64_t> offsets;
    offsets.reserve(n);
    out.tensors_.reserve(n);
    std::unordered_set<std::string> seen;
    for (size_t k = 0; k < n; ++k) {
      TensorInfo t;
      t.name = read_string("tensor name");
      const std::string q = show_name(t.name);
      if (t.name.empty()) fail_here(fmt::format("tensor {} has an empty name", k));
      if (!seen.insert(t.name).second) fail_here("duplicate tensor name " + q);
      const uint32_t n_dims = r_.read<uint32_t>();
      if (n_dims < 1 || n_dims > kMaxDims) {
        fail_here(fmt::format("tensor {}: n_dims {} is not in 1..{}", q, n_dims, kMaxDims));
      }
      uint64_t ne[kMaxDims];
      int64_t numel = 1;
      for (uint32_t d = 0; d < n_dims; ++d) {
        ne[d] = r_.read<uint64_t>();
        if (ne[d] == 0) fail_here(fmt::format("tensor {}: dimension {} is 0", q, d));
        if (ne[d] > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
            __builtin_mul_overflow(numel, static_cast<int64_t>(ne[d]), &numel)) {
          fail_here(fmt::format("tensor {}: element count overflows", q));
        }
      }
      const uint32_t type_id = r_.read<uint32_t>();
      const std::optional<DTypeTraits> tr = dtype_traits(type_id);
      if (!tr) fail_here(fmt::format("tensor {}: unknown tensor type {}", q, type_id));
      t.type = static_cast<DType>(type_id);
      if (ne[0] % static_cast<uint64_t>(tr->block_size) != 0) {
        fail_here(
            fmt::format("tensor {}: innermost dimension {} is not a multiple of {}'s block "
                        "size {}",
                        q, ne[0], tr->name, tr->block_size));
      }
      uint64_t nbytes = 0;
      if (__builtin_mul_overflow(static_cast<uint64_t>(numel) / tr->block_size,
                                 static_cast<uint64_t>(tr->block_bytes), &nbytes)) {
        fail_here(fmt::format("tensor {}: byte size overflows", q));
      }
      t.nbytes = static_cast<size_t>(nbytes);
      const uint64_t offset = r_.read<uint64_t>();
      if (offset % out.alignment_ != 0) {
        fail_here(fmt::format("tensor {}: data offset {} is not a multiple of the alignment {}", q,
                              offset, out.alignment_));
      }
      for (uint32_t d = n_dims; d-- > 0;) t.shape.push_back(static_cast<int64_t>(ne[d]));
      offsets.push_back(offset);
      out.tensors_.push_back(std::move(t));
    }

    uint64_t data_start = 0;
    if (!align_up(r_.offset(), out.alignment_, &data_start)) fail_here("data section overflows");
    const uint64_t size = file_->size();
    const uint64_t avail = data_start <= size ? size - data_start : 0;
    for (size_t k = 0; k < n; ++k) {
      TensorInfo& t = out.tensors_[k];
      if (offsets[k] > avail || t.nbytes > avail - offsets[k]) {
        fail(
            "{}: tensor {} data [{}, {}) extends past the end of the file (data section is {} "
            "bytes at offset {})",
            file_->path(), show_name(t.name), offsets[k], offsets[k] + t.nbytes, avail, data_start);
      }
      t.data = file_->data() + data_start + offsets[k];
    }

    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), size_t{0});
    std::sort(order.begin(), order.end(),
              [&](size_t a, size_t b) { return offsets[a] < offsets[b]; });
    for (size_t k = 1; k < n; ++k) {
      const size_t prev = order[k - 1], cur = order[k];
      if (offsets[prev] + out.tensors_[prev].nbytes > offsets[cur]) {
        fail("{}: tensors {} and {} overlap in the data section", file_->path(),
             show_name(out.tensors_[prev].name), show_name(out.tensors_[cur].name));
      }
    }
  }

  std::shared_ptr<MappedFile> file_;
  ByteReader r_;
  uint64_t n_tensors_ = 0;
  uint64_t n_kv_ = 0;
};

std::shared_ptr<GGUFFile> GGUFFile::open(const std::string& path) {
  return GGUFParser(MappedFile::open(path)).parse();
}

const GGUFValue* GGUFFile::find(std::string_view key) const {
  for (const auto& [k, v] : metadata_) {
    if (k == key) return &v;
  }
  return nullptr;
}

std::optional<uint64_t> GGUFFile::get_uint(std::string_view key) const {
  const GGUFValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (!is_int_type(v->type)) {
    fail("{}: metadata {} has type {}, expected an integer", path(), key, type_description(*v));
  }
  if (v->type != GGUFType::UINT64 && v->i < 0) {
    fail("{}: metadata {} is {}, expected a non-negative integer", path(), key, v->i);
  }
  return static_cast<uint64_t>(v->i);
}

std::optional<int64_t> GGUFFile::get_int(std::string_view key) const {
  const GGUFValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (!is_int_type(v->type)) {
    fail("{}: metadata {} has type {}, expected an integer", path(), key, type_description(*v));
  }
  if (v->type == GGUFType::UINT64 && v->i < 0) {
    fail("{}: metadata {} is {}, too large for a signed 64-bit integer", path(), key,
         static_cast<uint64_t>(v->i));
  }
  return v->i;
}

std::optional<double> GGUFFile::get_float(std::string_view key) const {
  const GGUFValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (is_float_type(v->type)) return v->f;
  if (v->type == GGUFType::UINT64) return static_cast<double>(static_cast<uint64_t>(v->i));
  if (is_int_type(v->type)) return static_cast<double>(v->i);
  fail("{}: metadata {} has type {}, expected a number", path(), key, type_description(*v));
}

std::optional<bool> GGUFFile::get_bool(std::string_view key) const {
  const GGUFValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->type != GGUFType::BOOL) {
    fail("{}: metadata {} has type {}, expected BOOL", path(), key, type_description(*v));
  }
  return v->i != 0;
}

std::optional<std::string> GGUFFile::get_string(std::string_view key) const {
  const GGUFValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->type != GGUFType::STRING) {
    fail("{}: metadata {} has type {}, expected STRING", path(), key, type_description(*v));
  }
  return v->s;
}

const std::vector<std::string>* GGUFFile::get_str_array(std::string_view key) const {
  const GGUFValue* v = find(key);
  if (v == nullptr) return nullptr;
  if (!v->is_array() || v->elem_type != GGUFType::STRING) {
    fail("{}: metadata {} has type {}, expected ARRAY of STRING", path(), key,
         type_description(*v));
  }
  return &v->strs;
}

const std::vector<double>* GGUFFile::get_float_array(std::string_view key) const {
  const GGUFValue* v = find(key);
  if (v == nullptr) return nullptr;
  if (!v->is_array() || !is_float_type(v->elem_type)) {
    fail("{}: metadata {} has type {}, expected ARRAY of FLOAT32 or FLOAT64", path(), key,
         type_description(*v));
  }
  return &v->floats;
}

const std::vector<int64_t>* GGUFFile::get_int_array(std::string_view key) const {
  const GGUFValue* v = find(key);
  if (v == nullptr) return nullptr;
  if (!v->is_array() || !is_int_type(v->elem_type)) {
    fail("{}: metadata {} has type {}, expected ARRAY of an integer type", path(), key,
         type_description(*v));
  }
  return &v->ints;
}

const TensorInfo* GGUFFile::find_tensor(std::string_view name) const {
  for (const TensorInfo& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// Writer

namespace {

// Serializes into memory so that a value rejected halfway leaves the output file untouched.
class Encoder {
 public:
  Encoder(std::string& out, const std::string& path) : out_(out), path_(path) {}

  template <typename T>
  void put(T v) {
    out_.append(reinterpret_cast<const char*>(&v), sizeof(v));
  }
  void put_string(const std::string& s) {
    put<uint64_t>(s.size());
    out_.append(s);
  }

  void put_int(GGUFType t, int64_t v, const std::string& key) {
    if (!int_fits(t, v)) {
      fail("{}: metadata {}: value {} does not fit {}", path_, key, v, gguf_type_name(t));
    }
    switch (t) {
      case GGUFType::UINT8:
      case GGUFType::BOOL:
        return put(static_cast<uint8_t>(v));
      case GGUFType::INT8:
        return put(static_cast<int8_t>(v));
      case GGUFType::UINT16:
        return put(static_cast<uint16_t>(v));
      case GGUFType::INT16:
        return put(static_cast<int16_t>(v));
      case GGUFType::UINT32:
        return put(static_cast<uint32_t>(v));
      case GGUFType::INT32:
        return put(static_cast<int32_t>(v));
      default:
        return put(v);
    }
  }

  void put_float(GGUFType t, double v) {
    if (t == GGUFType::FLOAT32) return put(static_cast<float>(v));
    put(v);
  }

  void put_array(const GGUFValue& v, const std::string& key, int depth) {
    if (depth > kMaxArrayDepth) {
      fail("{}: metadata {}: arrays nested deeper than {} levels", path_, key, kMaxArrayDepth);
    }
    if (!v.is_array() || !known_type(static_cast<uint32_t>(v.elem_type))) {
      fail("{}: metadata {}: malformed array value", path_, key);
    }
    put(static_cast<uint32_t>(v.elem_type));
    put<uint64_t>(v.array_size());
    if (v.elem_type == GGUFType::STRING) {
      for (const std::string& s : v.strs) put_string(s);
    } else if (v.elem_type == GGUFType::ARRAY) {
      for (const GGUFValue& a : v.arrays) put_array(a, key, depth + 1);
    } else if (is_float_type(v.elem_type)) {
      for (double f : v.floats) put_float(v.elem_type, f);
    } else {
      for (int64_t i : v.ints) put_int(v.elem_type, i, key);
    }
  }

  void put_value(const GGUFValue& v, const std::string& key) {
    if (!known_type(static_cast<uint32_t>(v.type))) {
      fail("{}: metadata {}: unknown value type {}", path_, key, static_cast<uint32_t>(v.type));
    }
    put(static_cast<uint32_t>(v.type));
    if (v.type == GGUFType::ARRAY) {
      put_array(v, key, 1);
    } else if (v.type == GGUFType::STRING) {
      put_string(v.s);
    } else if (is_float_type(v.type)) {
      put_float(v.type, v.f);
    } else {
      put_int(v.type, v.i, key);
    }
  }

 private:
  std::string& out_;
  const std::string& path_;
};

}  // namespace

GGUFWriter::GGUFWriter(std::string path, uint32_t alignment)
    : path_(std::move(path)), alignment_(alignment) {
  if (!is_pow2(alignment)) fail("{}: GGUF alignment {} is not a power of two", path_, alignment);
  // Open now so an unwritable destination fails before the caller does expensive work.
  out_ = std::make_unique<AtomicFile>(path_);
}

GGUFWriter::~GGUFWriter() = default;

void GGUFWriter::check_open(const char* op) const {
  if (!out_) fail("{}: GGUFWriter::{}() called after finish()", path_, op);
}

void GGUFWriter::set(const std::string& key, GGUFValue value) {
  check_open("set");
  if (header_written_) fail("{}: set({}) after the header was written", path_, key);
  if (key.empty()) fail("{}: empty metadata key", path_);
  for (auto& [k, v] : metadata_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  metadata_.emplace_back(key, std::move(value));
}

void GGUFWriter::remove(const std::string& key) {
  check_open("remove");
  if (header_written_) fail("{}: remove({}) after the header was written", path_, key);
  std::erase_if(metadata_, [&](const auto& kv) { return kv.first == key; });
}

void GGUFWriter::add_tensor(const std::string& name, DType type,
                            const std::vector<int64_t>& shape) {
  check_open("add_tensor");
  const std::string q = show_name(name);
  if (header_written_) fail("{}: add_tensor({}) after the header was written", path_, q);
  if (name.empty()) fail("{}: empty tensor name", path_);
  if (name.size() > kMaxWriterNameBytes) {
    fail("{}: tensor name {} is longer than {} bytes", path_, q, kMaxWriterNameBytes);
  }
  for (const PendingTensor& t : tensors_) {
    if (t.name == name) fail("{}: duplicate tensor {}", path_, q);
  }
  if (shape.empty() || shape.size() > kMaxDims) {
    fail("{}: tensor {} has {} dimensions, GGUF allows 1..{}", path_, q, shape.size(), kMaxDims);
  }
  const DTypeTraits& tr = traits(type);  // throws for an unknown id
  int64_t numel = 1;
  for (int64_t d : shape) {
    if (d <= 0)
      fail("{}: tensor {} has non-positive dimension in {}", path_, q, shape_string(shape));
    if (__builtin_mul_overflow(numel, d, &numel)) {
      fail("{}: tensor {} element count overflows", path_, q);
    }
  }
  if (shape.back() % tr.block_size != 0) {
    fail("{}: tensor {} {}: innermost dimension is not a multiple of {}'s block size {}", path_, q,
         shape_string(shape), tr.name, tr.block_size);
  }
  uint64_t nbytes = 0;
  if (__builtin_mul_overflow(static_cast<uint64_t>(numel / tr.block_size),
                             static_cast<uint64_t>(tr.block_bytes), &nbytes)) {
    fail("{}: tensor {} byte size overflows", path_, q);
  }
  uint64_t offset = 0;
  if (!tensors_.empty()) {
    const PendingTensor& last = tensors_.back();
    if (!align_up(last.offset + last.nbytes, alignment_, &offset)) {
      fail("{}: data section overflows", path_);
    }
  }
  tensors_.push_back(PendingTensor{name, type, shape, offset, nbytes});
}

void GGUFWriter::write_header() {
  check_open("write_header");
  if (header_written_) fail("{}: write_header() called twice", path_);

  // Readers only learn a non-default alignment from general.alignment, so it must agree.
  bool have_alignment = false;
  for (const auto& [k, v] : metadata_) {
    if (k != "general.alignment") continue;
    if (v.type != GGUFType::UINT32 || v.i != static_cast<int64_t>(alignment_)) {
      fail("{}: general.alignment {} disagrees with the writer's alignment {}", path_,
           v.to_string(), alignment_);
    }
    have_alignment = true;
  }
  if (!have_alignment && alignment_ != kDefaultAlignment) {
    metadata_.emplace_back("general.alignment", GGUFValue::u32(alignment_));
  }

  std::string header;
  Encoder enc(header, path_);
  enc.put<uint32_t>(kMagic);
  enc.put<uint32_t>(3);
  enc.put<uint64_t>(tensors_.size());
  enc.put<uint64_t>(metadata_.size());
  for (const auto& [k, v] : metadata_) {
    enc.put_string(k);
    enc.put_value(v, k);
  }
  for (const PendingTensor& t : tensors_) {
    enc.put_string(t.name);
    enc.put<uint32_t>(static_cast<uint32_t>(t.shape.size()));
    for (size_t d = t.shape.size(); d-- > 0;) enc.put<uint64_t>(static_cast<uint64_t>(t.shape[d]));
    enc.put<uint32_t>(static_cast<uint32_t>(t.type));
    enc.put<uint64_t>(t.offset);
  }
  out_->write(header.data(), header.size());
  uint64_t start = 0;
  align_up(out_->tell(), alignment_, &start);
  out_->write_zeros(static_cast<size_t>(start - out_->tell()));
  data_start_ = start;
  header_written_ = true;
}

void GGUFWriter::write_tensor_data(std::string_view name, const void* data, size_t nbytes) {
  check_open("write_tensor_data");
  if (!header_written_)
    fail("{}: write_tensor_data({}) before write_header()", path_, show_name(name));
  if (next_tensor_ >= tensors_.size()) {
    fail("{}: write_tensor_data({}): all {} declared tensors were already written", path_,
         show_name(name), tensors_.size());
  }
  const PendingTensor& t = tensors_[next_tensor_];
  if (name != t.name) {
    fail("{}: write_tensor_data({}) out of order: expected {} next", path_, show_name(name),
         show_name(t.name));
  }
  if (nbytes != t.nbytes) {
    fail("{}: tensor {} {} {} is {} bytes, got {}", path_, show_name(name), dtype_name(t.type),
         shape_string(t.shape), t.nbytes, nbytes);
  }
  const uint64_t target = data_start_ + t.offset;
  out_->write_zeros(static_cast<size_t>(target - out_->tell()));
  out_->write(data, nbytes);
  ++next_tensor_;
}

void GGUFWriter::finish() {
  check_open("finish");
  if (!header_written_) write_header();
  if (next_tensor_ != tensors_.size()) {
    fail("{}: finish() after writing {} of {} tensors (next missing: {})", path_, next_tensor_,
         tensors_.size(), show_name(tensors_[next_tensor_].name));
  }
  // Pad the last tensor too: llama.cpp reads the data section as whole aligned chunks.
  uint64_t end = 0;
  align_up(out_->tell(), alignment_, &end);
  out_->write_zeros(static_cast<size_t>(end - out_->tell()));
  out_->commit();
  out_.reset();
}

}  // namespace squish
