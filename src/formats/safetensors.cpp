#include "formats/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <filesystem>
#include <limits>
#include <numeric>
#include <optional>
#include <set>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/text.h"

namespace squish {

static_assert(std::endian::native == std::endian::little,
              "safetensors I/O assumes a little-endian host");

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;  // ordered: tensors keep their header order

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;
constexpr const char* kIndexName = "model.safetensors.index.json";
constexpr const char* kSingleName = "model.safetensors";

struct StDType {
  DType type;
  int size;
};

std::optional<StDType> parse_st_dtype(const std::string& name) {
  if (name == "F32") return StDType{DType::F32, 4};
  if (name == "F16") return StDType{DType::F16, 2};
  if (name == "BF16") return StDType{DType::BF16, 2};
  return std::nullopt;
}

// Names come from untrusted headers; keep error messages on one line.
std::string printable(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < 120; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > 120) out += "...";
  return out;
}

std::string show_name(std::string_view s) {
  return fmt::format("'{}'", printable(s));
}

// Parses a bounded JSON document, rejecting invalid UTF-8 and duplicate object keys (which
// nlohmann would otherwise resolve silently, hiding a conflicting tensor entry).
Json parse_json(const std::string& path, const uint8_t* p, size_t n, const char* what) {
  if (const size_t bad = find_invalid_utf8(std::string_view(reinterpret_cast<const char*>(p), n));
      bad != std::string_view::npos) {
    fail("{}: {} is not valid UTF-8 (byte {} of {})", path, what, bad, n);
  }
  std::vector<std::unordered_set<std::string>> keys;
  auto on_event = [&](int /*depth*/, Json::parse_event_t event, Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start:
        keys.emplace_back();
        break;
      case Json::parse_event_t::object_end:
        keys.pop_back();
        break;
      case Json::parse_event_t::key: {
        const std::string& key = parsed.get_ref<const std::string&>();
        if (!keys.back().insert(key).second)
          fail("{}: duplicate key {} in {}", path, show_name(key), what);
        break;
      }
      default:
        break;
    }
    return true;
  };
  try {
    const char* begin = reinterpret_cast<const char*>(p);
    return Json::parse(begin, begin + n, on_event);
  } catch (const Json::exception& e) {
    fail("{}: invalid JSON in {}: {}", path, what, e.what());
  }
}

// A JSON number that is a non-negative integer (nlohmann parses those as number_unsigned).
std::optional<uint64_t> as_uint(const Json& j) {
  if (!j.is_number_unsigned()) return std::nullopt;
  return j.get<uint64_t>();
}

struct Span {
  uint64_t begin, end;
  size_t tensor;
};

// Opens one .safetensors file and appends its tensors (and, if `take_metadata`, its metadata).
void load_file(const std::string& path, SafetensorsSet& set, bool take_metadata) {
  std::shared_ptr<MappedFile> file = MappedFile::open(path);
  const uint64_t size = file->size();
  if (size < 8) fail("{}: too small to be a safetensors file ({} bytes)", path, size);
  uint64_t header_len;
  std::memcpy(&header_len, file->data(), 8);
  if (header_len > kMaxHeaderBytes) {
    fail("{}: header length {} exceeds the 100 MiB limit", path, header_len);
  }
  if (header_len > size - 8) {
    fail("{}: header length {} exceeds the {} bytes after the length field", path, header_len,
         size - 8);
  }
  const Json header = parse_json(path, file->data() + 8, header_len, "header");
  if (!header.is_object()) fail("{}: header is not a JSON object", path);

  const uint8_t* data = file->data() + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;
  std::vector<Span> spans;
  for (const auto& [name, entry] : header.items()) {
    const std::string q = show_name(name);
    if (name == "__metadata__") {
      if (!entry.is_object()) fail("{}: __metadata__ is not an object", path);
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string())
          fail("{}: __metadata__ value for {} is not a string", path, show_name(k));
        if (take_metadata) set.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    if (!entry.is_object()) fail("{}: entry for tensor {} is not an object", path, q);
    const auto dtype_it = entry.find("dtype");
    const auto shape_it = entry.find("shape");
    const auto offsets_it = entry.find("data_offsets");
    if (dtype_it == entry.end() || !dtype_it->is_string()) {
      fail("{}: tensor {} has no string \"dtype\"", path, q);
    }
    const std::string& dtype_name = dtype_it->get_ref<const std::string&>();
    const std::optional<StDType> dt = parse_st_dtype(dtype_name);
    if (!dt) fail("{}: unsupported dtype {} for tensor {}", path, printable(dtype_name), q);
    if (shape_it == entry.end() || !shape_it->is_array()) {
      fail("{}: tensor {} has no \"shape\" array", path, q);
    }
    if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2) {
      fail("{}: tensor {} has no \"data_offsets\" pair", path, q);
    }

    TensorInfo t;
    t.name = name;
    t.type = dt->type;
    uint64_t numel = 1;
    for (const Json& d : *shape_it) {
      const std::optional<uint64_t> v = as_uint(d);
      if (!v) fail("{}: tensor {} has a shape entry that is not a non-negative integer", path, q);
      if (*v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          __builtin_mul_overflow(numel, *v, &numel) ||
          numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        fail("{}: tensor {} element count overflows", path, q);
      }
      t.shape.push_back(static_cast<int64_t>(*v));
    }
    const std::optional<uint64_t> begin = as_uint((*offsets_it)[0]);
    const std::optional<uint64_t> end = as_uint((*offsets_it)[1]);
    if (!begin || !end) fail("{}: tensor {} data_offsets are not non-negative integers", path, q);
    if (*begin > *end)
      fail("{}: tensor {} data_offsets [{}, {}] are reversed", path, q, *begin, *end);
    if (*end > data_size) {
      fail("{}: tensor {} data_offsets [{}, {}] extend past the {}-byte data section", path, q,
           *begin, *end, data_size);
    }
    uint64_t nbytes = 0;
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(dt->size), &nbytes) ||
        nbytes != *end - *begin) {
      fail("{}: tensor {} {} {} needs {} bytes but data_offsets [{}, {}] span {}", path, q,
           dtype_name, shape_string(t.shape), nbytes, *begin, *end, *end - *begin);
    }
    t.nbytes = static_cast<size_t>(nbytes);
    t.data = data + *begin;
    if (nbytes > 0) spans.push_back(Span{*begin, *end, set.tensors.size()});
    set.tensors.push_back(std::move(t));
  }

  std::sort(spans.begin(), spans.end(),
            [](const Span& a, const Span& b) { return a.begin < b.begin; });
  for (size_t k = 1; k < spans.size(); ++k) {
    if (spans[k - 1].end > spans[k].begin) {
      fail("{}: tensors {} and {} overlap", path, show_name(set.tensors[spans[k - 1].tensor].name),
           show_name(set.tensors[spans[k].tensor].name));
    }
  }
  set.files.push_back(std::move(file));
}

// A shard named by an index must be a file beside it, not a path that escapes the folder.
bool plain_file_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

SafetensorsSet open_sharded(const fs::path& folder) {
  const std::string index_path = (folder / kIndexName).string();
  std::shared_ptr<MappedFile> index_file = MappedFile::open(index_path);
  if (index_file->size() > kMaxHeaderBytes) {
    fail("{}: index is larger than the 100 MiB limit", index_path);
  }
  const Json index = parse_json(index_path, index_file->data(), index_file->size(), "index");
  const auto map_it = index.is_object() ? index.find("weight_map") : index.end();
  if (map_it == index.end() || !map_it->is_object()) {
    fail("{}: no \"weight_map\" object", index_path);
  }
  // Sorted shard names give HF's model-0000K-of-0000N files in their natural order.
  std::set<std::string> shards;
  for (const auto& [tensor, shard] : map_it->items()) {
    if (!shard.is_string() || !plain_file_name(shard.get<std::string>())) {
      fail("{}: weight_map entry for {} is not a plain file name", index_path, show_name(tensor));
    }
    shards.insert(shard.get<std::string>());
  }
  if (shards.empty()) fail("{}: weight_map is empty", index_path);

  SafetensorsSet set;
  std::vector<std::string> shard_of;  // per tensor in set.tensors
  for (const std::string& shard : shards) {
    load_file((folder / shard).string(), set, set.files.empty());
    shard_of.resize(set.tensors.size(), shard);
  }
  std::unordered_map<std::string_view, size_t> by_name;
  for (size_t k = 0; k < set.tensors.size(); ++k) {
    const auto [it, inserted] = by_name.emplace(set.tensors[k].name, k);
    if (!inserted) {
      fail("{}: tensor {} appears in both {} and {}", index_path, show_name(set.tensors[k].name),
           shard_of[it->second], shard_of[k]);
    }
  }
  for (const auto& [tensor, shard] : map_it->items()) {
    const auto it = by_name.find(tensor);
    if (it == by_name.end()) {
      fail("{}: tensor {} is listed in weight_map but missing from {}", index_path,
           show_name(tensor), shard.get<std::string>());
    }
    if (shard_of[it->second] != shard.get<std::string>()) {
      fail("{}: tensor {} is listed in {} but stored in {}", index_path, show_name(tensor),
           shard.get<std::string>(), shard_of[it->second]);
    }
  }
  return set;
}

SafetensorsSet open_folder(const std::string& path) {
  const fs::path folder(path);
  std::error_code ec;
  if (fs::exists(folder / kIndexName, ec)) return open_sharded(folder);
  SafetensorsSet set;
  if (fs::exists(folder / kSingleName, ec)) {
    load_file((folder / kSingleName).string(), set, true);
    return set;
  }
  std::vector<std::string> found;
  for (const fs::directory_entry& e : fs::directory_iterator(folder, ec)) {
    if (e.path().extension() == ".safetensors" && e.is_regular_file(ec)) {
      found.push_back(e.path().string());
    }
  }
  if (ec) fail("{}: cannot list folder: {}", path, ec.message());
  if (found.empty()) {
    fail("{}: no {}, {} or other *.safetensors file in this folder", path, kIndexName, kSingleName);
  }
  if (found.size() > 1) {
    fail("{}: {} *.safetensors files and no {}; name the file to load", path, found.size(),
         kIndexName);
  }
  load_file(found[0], set, true);
  return set;
}

}  // namespace

const TensorInfo* SafetensorsSet::find(const std::string& name) const {
  for (const TensorInfo& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

SafetensorsSet open_safetensors(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return open_folder(path);
  SafetensorsSet set;
  load_file(path, set, true);
  return set;
}

}  // namespace squish
