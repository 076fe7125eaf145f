#include "export/manifest.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/json_file.h"
#include "core/progress.h"
#include "core/text.h"
#include "formats/gguf.h"
#include "quant/imatrix.h"
#include "squish_build_info.h"  // generated: SQUISH_GIT_COMMIT

namespace squish {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// A sidecar holds one entry per tensor (a few hundred even for 70B models) and a small quality
// section: far below this. Anything larger is not a squish manifest.
constexpr size_t kMaxSidecarBytes = 16u << 20;

// ---- SHA-256 through OpenSSL's EVP interface ----

struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

MdCtx sha256_begin() {
  MdCtx ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1)
    fail("SHA-256: OpenSSL could not initialise a digest");
  return ctx;
}

std::string sha256_end(EVP_MD_CTX* ctx) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx, md, &len) != 1) fail("SHA-256: OpenSSL could not finish a digest");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) {
    hex += kHex[md[i] >> 4];
    hex += kHex[md[i] & 15];
  }
  return hex;
}

bool is_gguf_file(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  return in.gcount() == 4 && std::memcmp(magic, "GGUF", 4) == 0;
}

std::string file_name_of(const std::string& path) {
  fs::path p(path);
  if (!p.has_filename()) p = p.parent_path();  // "folder/" -> "folder"
  return p.filename().string();
}

// ---- JSON field access with one-line errors naming the field ----

class FieldReader {
 public:
  explicit FieldReader(std::string what) : what_(std::move(what)) {}

  [[noreturn]] void bad(const std::string& field, const std::string& problem) const {
    fail("{}: manifest field '{}' {}", what_, field, problem);
  }
  const json& member(const json& obj, const std::string& prefix, const char* key) const {
    const std::string field = prefix.empty() ? key : prefix + "." + key;
    auto it = obj.find(key);
    if (it == obj.end()) bad(field, "is missing");
    return *it;
  }
  const json& object(const json& obj, const std::string& prefix, const char* key) const {
    const json& v = member(obj, prefix, key);
    if (!v.is_object()) bad(join(prefix, key), "must be an object");
    return v;
  }
  std::string str(const json& obj, const std::string& prefix, const char* key) const {
    const json& v = member(obj, prefix, key);
    if (!v.is_string()) bad(join(prefix, key), "must be a string");
    return v.get<std::string>();
  }
  // Optional strings are written as null when empty.
  std::string opt_str(const json& obj, const std::string& prefix, const char* key) const {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return "";
    if (!it->is_string()) bad(join(prefix, key), "must be a string or null");
    return it->get<std::string>();
  }
  uint64_t u64(const json& obj, const std::string& prefix, const char* key) const {
    const json& v = member(obj, prefix, key);
    if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0))
      bad(join(prefix, key), "must be a non-negative integer");
    return v.get<uint64_t>();
  }
  uint32_t u32(const json& obj, const std::string& prefix, const char* key) const {
    const uint64_t v = u64(obj, prefix, key);
    if (v > UINT32_MAX) bad(join(prefix, key), "is out of range");
    return static_cast<uint32_t>(v);
  }
  double number(const json& obj, const std::string& prefix, const char* key) const {
    const json& v = member(obj, prefix, key);
    if (!v.is_number()) bad(join(prefix, key), "must be a number");
    return v.get<double>();
  }
  bool boolean(const json& obj, const std::string& prefix, const char* key) const {
    const json& v = member(obj, prefix, key);
    if (!v.is_boolean()) bad(join(prefix, key), "must be true or false");
    return v.get<bool>();
  }
  std::vector<std::string> str_array(const json& obj, const std::string& prefix,
                                     const char* key) const {
    const json& v = member(obj, prefix, key);
    if (!v.is_array()) bad(join(prefix, key), "must be an array of strings");
    std::vector<std::string> out;
    for (const json& e : v) {
      if (!e.is_string()) bad(join(prefix, key), "must be an array of strings");
      out.push_back(e.get<std::string>());
    }
    return out;
  }
  static std::string join(const std::string& prefix, const char* key) {
    return prefix.empty() ? key : prefix + "." + key;
  }

 private:
  std::string what_;
};

json opt_string(const std::string& s) {
  return s.empty() ? json(nullptr) : json(s);
}

// ---- Pieces shared by the GGUF and JSON forms ----

json files_to_json(const std::vector<ManifestFile>& files) {
  json a = json::array();
  for (const ManifestFile& f : files) a.push_back({{"name", f.name}, {"bytes", f.bytes}});
  return a;
}

std::vector<ManifestFile> files_from_json(const json& a, const FieldReader& r,
                                          const std::string& field) {
  if (!a.is_array()) r.bad(field, "must be an array");
  std::vector<ManifestFile> files;
  for (const json& e : a) {
    if (!e.is_object()) r.bad(field, "must hold {name, bytes} objects");
    files.push_back({r.str(e, field, "name"), r.u64(e, field, "bytes")});
  }
  return files;
}

json type_counts_to_json(const std::map<std::string, uint32_t>& counts) {
  json o = json::object();
  for (const auto& [type, n] : counts) o[type] = n;
  return o;
}

std::map<std::string, uint32_t> type_counts_from_json(const json& o, const FieldReader& r,
                                                      const std::string& field) {
  if (!o.is_object()) r.bad(field, "must be an object of counts");
  std::map<std::string, uint32_t> counts;
  for (auto it = o.begin(); it != o.end(); ++it) {
    if (!it.value().is_number_unsigned() || it.value().get<uint64_t>() > UINT32_MAX)
      r.bad(field + "." + it.key(), "must be a count");
    counts[it.key()] = it.value().get<uint32_t>();
  }
  return counts;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Provenance helpers

const char* squish_git_commit() {
  return SQUISH_GIT_COMMIT;
}

std::string utc_now_iso8601() {
  std::time_t t = std::time(nullptr);
  // Reproducible builds convention: a fixed timestamp makes two runs byte-identical.
  if (const char* epoch = std::getenv("SOURCE_DATE_EPOCH"); epoch != nullptr && *epoch != '\0') {
    char* end = nullptr;
    const long long v = std::strtoll(epoch, &end, 10);
    if (*end != '\0' || v < 0) fail("SOURCE_DATE_EPOCH '{}' is not a number of seconds", epoch);
    t = static_cast<std::time_t>(v);
  }
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string sha256_hex(const void* data, size_t n) {
  MdCtx ctx = sha256_begin();
  if (EVP_DigestUpdate(ctx.get(), data, n) != 1) fail("SHA-256: digest update failed");
  return sha256_end(ctx.get());
}

std::string sha256_files(const std::vector<std::string>& paths) {
  uint64_t total = 0;
  for (const std::string& p : paths) {
    std::error_code ec;
    const uint64_t size = fs::file_size(p, ec);
    if (ec) fail("{}: cannot read: {}", p, ec.message());
    total += size;
  }
  constexpr size_t kChunk = 8u << 20;
  // Progress in MiB, only when hashing takes long enough to notice.
  Progress progress("hash source (MiB)", total >> 20, total < (512u << 20));
  MdCtx ctx = sha256_begin();
  std::vector<char> buf(kChunk);
  uint64_t done = 0;
  for (const std::string& p : paths) {
    std::FILE* f = std::fopen(p.c_str(), "rb");
    if (f == nullptr) fail("{}: cannot open: {}", p, std::strerror(errno));
    size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) {
      if (EVP_DigestUpdate(ctx.get(), buf.data(), n) != 1) {
        std::fclose(f);
        fail("SHA-256: digest update failed");
      }
      done += n;
      progress.update(done >> 20);
    }
    const bool failed = std::ferror(f) != 0;
    std::fclose(f);
    if (failed) fail("{}: read error while hashing", p);
  }
  if (total >= (512u << 20)) progress.finish();
  return sha256_end(ctx.get());
}

std::vector<std::string> source_weight_files(const Model& model) {
  std::vector<std::string> files;
  std::error_code ec;
  if (fs::is_directory(model.path, ec)) {
    for (const auto& entry : fs::directory_iterator(model.path, ec)) {
      if (entry.is_regular_file() && entry.path().extension() == ".safetensors")
        files.push_back(entry.path().string());
    }
    if (ec) fail("{}: cannot list folder: {}", model.path, ec.message());
    std::sort(files.begin(), files.end());
  } else {
    files.push_back(model.path);
  }
  return files;
}

// ---------------------------------------------------------------------------------------------
// Building

Manifest build_manifest(const Model& source, const ManifestMethod& method,
                        const std::vector<ManifestTensor>& tensors, const std::string& out_path) {
  Manifest m;
  m.tool_version = SQUISH_VERSION;
  m.tool_commit = squish_git_commit();
  m.created = utc_now_iso8601();

  m.source_path = source.path;
  m.source_format = source_format_name(source.format);
  m.source_architecture = source.config.arch_name();
  const std::vector<std::string> files = source_weight_files(source);
  for (const std::string& f : files) m.source_files.push_back({file_name_of(f), fs::file_size(f)});
  m.source_sha256 = sha256_files(files);
  m.parameters = static_cast<uint64_t>(source.parameter_count());

  m.method = method;
  if (!method.imatrix_path.empty()) {
    const Imatrix im = read_imatrix(method.imatrix_path);
    ManifestImatrix mi;
    mi.file = method.imatrix_path;
    mi.sha256 = sha256_files({method.imatrix_path});
    mi.datasets = im.datasets;
    mi.chunk_count = static_cast<uint32_t>(std::max(im.chunk_count, 0));
    mi.chunk_size = static_cast<uint32_t>(std::max(im.chunk_size, 0));
    mi.entries = static_cast<uint32_t>(im.entries.size());
    m.imatrix = mi;
    // An imatrix made by squish may record its calibration text (same keys as a model's).
    if (is_gguf_file(method.imatrix_path)) {
      auto g = GGUFFile::open(method.imatrix_path);
      if (auto h = g->get_string("squish.calibration.sha256")) m.calibration_sha256 = *h;
      if (auto files = g->get_string("squish.calibration.files")) {
        const FieldReader r(method.imatrix_path);
        json list;
        try {
          list = json::parse(*files);
        } catch (const json::exception&) {
          fail("{}: GGUF key squish.calibration.files is not valid JSON", method.imatrix_path);
        }
        m.method.calibration_files =
            r.str_array(json{{"f", list}}, "squish.calibration.files", "f");
      }
    }
  }
  if (!method.calibration_files.empty()) {  // given directly: wins over the imatrix's record
    m.method.calibration_files = method.calibration_files;
    m.calibration_sha256 = sha256_files(method.calibration_files);
  }
  m.method.imatrix_path.clear();  // recorded as imatrix->file

  m.file_name = file_name_of(out_path);
  uint64_t n_weights = 0;
  for (const ManifestTensor& t : tensors) {
    int64_t numel = 1;
    for (int64_t d : t.shape) numel *= d;
    n_weights += static_cast<uint64_t>(numel);
    m.weight_bytes += t.bytes;
    m.type_counts[t.type]++;
  }
  m.bits_per_weight = n_weights ? 8.0 * static_cast<double>(m.weight_bytes) / n_weights : 0.0;
  m.tensors = tensors;
  return m;
}

// ---------------------------------------------------------------------------------------------
// GGUF keys (names: docs/manifest.md)

void manifest_to_gguf(const Manifest& m, GGUFWriter& w) {
  auto str = [&](const char* key, const std::string& v) {
    if (!v.empty()) w.set(key, GGUFValue::str(v));
  };
  w.set("squish.manifest.version", GGUFValue::u32(m.version));
  str("squish.tool.name", m.tool);
  str("squish.tool.version", m.tool_version);
  str("squish.tool.commit", m.tool_commit);
  str("squish.created", m.created);
  str("squish.source.path", m.source_path);
  str("squish.source.format", m.source_format);
  str("squish.source.architecture", m.source_architecture);
  str("squish.source.sha256", m.source_sha256);
  w.set("squish.source.files", GGUFValue::str(files_to_json(m.source_files).dump()));
  w.set("squish.source.parameters", GGUFValue::u64(m.parameters));
  str("squish.method.command", m.method.command);
  str("squish.method.type", m.method.type);
  str("squish.method.algorithm", m.method.algorithm);
  w.set("squish.method.pure", GGUFValue::u32(m.method.pure ? 1 : 0));
  if (!m.method.tensor_type_overrides.empty()) {
    w.set("squish.method.tensor_type_overrides",
          GGUFValue::str(json(m.method.tensor_type_overrides).dump()));
  }
  if (!m.method.parameters.empty())
    w.set("squish.method.parameters", GGUFValue::str(m.method.parameters.dump()));
  str("squish.method.output_tensor_type", m.method.output_tensor_type);
  str("squish.method.token_embedding_type", m.method.token_embedding_type);
  if (m.imatrix) {
    str("squish.imatrix.file", m.imatrix->file);
    str("squish.imatrix.sha256", m.imatrix->sha256);
    w.set("squish.imatrix.datasets", GGUFValue::str(json(m.imatrix->datasets).dump()));
    w.set("squish.imatrix.chunk_count", GGUFValue::u32(m.imatrix->chunk_count));
    w.set("squish.imatrix.chunk_size", GGUFValue::u32(m.imatrix->chunk_size));
    w.set("squish.imatrix.entries", GGUFValue::u32(m.imatrix->entries));
  }
  if (!m.method.calibration_files.empty()) {
    w.set("squish.calibration.files", GGUFValue::str(json(m.method.calibration_files).dump()));
  }
  str("squish.calibration.sha256", m.calibration_sha256);
  str("squish.output.file", m.file_name);
  w.set("squish.output.tensor_count", GGUFValue::u32(static_cast<uint32_t>(m.tensors.size())));
  w.set("squish.output.tensor_types", GGUFValue::str(type_counts_to_json(m.type_counts).dump()));
  w.set("squish.output.weight_bytes", GGUFValue::u64(m.weight_bytes));
  w.set("squish.output.bits_per_weight", GGUFValue::f32(static_cast<float>(m.bits_per_weight)));
}

std::optional<Manifest> manifest_from_gguf(const GGUFFile& g) {
  const auto version = g.get_uint("squish.manifest.version");
  if (!version) return std::nullopt;
  if (*version != kManifestVersion) {
    fail("{}: squish.manifest.version {} is not supported (this squish reads {})", g.path(),
         *version, kManifestVersion);
  }
  const FieldReader r(g.path());
  // GGUF strings are bytes; the manifest is shown and written as JSON, which needs UTF-8.
  auto utf8 = [&](std::string text, const std::string& what) {
    if (const size_t bad = find_invalid_utf8(text); bad != std::string::npos)
      fail("{}: {} is not valid UTF-8 (byte {})", g.path(), what, bad);
    return text;
  };
  auto s = [&](const char* key) {
    return utf8(g.get_string(key).value_or(""), std::string("GGUF key ") + key);
  };
  auto json_key = [&](const char* key, json fallback) {
    auto text = g.get_string(key);
    if (!text) return fallback;
    try {
      return json::parse(*text);
    } catch (const json::exception&) {
      fail("{}: GGUF key {} is not valid JSON", g.path(), key);
    }
  };
  Manifest m;
  m.version = static_cast<uint32_t>(*version);
  m.tool = s("squish.tool.name");
  m.tool_version = s("squish.tool.version");
  m.tool_commit = s("squish.tool.commit");
  m.created = s("squish.created");
  m.source_path = s("squish.source.path");
  m.source_format = s("squish.source.format");
  m.source_architecture = s("squish.source.architecture");
  m.source_sha256 = s("squish.source.sha256");
  m.source_files =
      files_from_json(json_key("squish.source.files", json::array()), r, "squish.source.files");
  m.parameters = g.get_uint("squish.source.parameters").value_or(0);
  m.method.command = s("squish.method.command");
  m.method.type = s("squish.method.type");
  m.method.algorithm = s("squish.method.algorithm");
  m.method.pure = g.get_uint("squish.method.pure").value_or(0) != 0;
  const json overrides = json_key("squish.method.tensor_type_overrides", json::array());
  m.method.tensor_type_overrides =
      r.str_array(json{{"o", overrides}}, "squish.method.tensor_type_overrides", "o");
  m.method.parameters = json_key("squish.method.parameters", json::object());
  if (!m.method.parameters.is_object()) r.bad("squish.method.parameters", "must be an object");
  m.method.output_tensor_type = s("squish.method.output_tensor_type");
  m.method.token_embedding_type = s("squish.method.token_embedding_type");
  if (g.find("squish.imatrix.sha256") != nullptr) {
    ManifestImatrix mi;
    mi.file = s("squish.imatrix.file");
    mi.sha256 = s("squish.imatrix.sha256");
    mi.datasets = r.str_array(json{{"d", json_key("squish.imatrix.datasets", json::array())}},
                              "squish.imatrix.datasets", "d");
    mi.chunk_count = static_cast<uint32_t>(g.get_uint("squish.imatrix.chunk_count").value_or(0));
    mi.chunk_size = static_cast<uint32_t>(g.get_uint("squish.imatrix.chunk_size").value_or(0));
    mi.entries = static_cast<uint32_t>(g.get_uint("squish.imatrix.entries").value_or(0));
    m.imatrix = mi;
  }
  m.method.calibration_files =
      r.str_array(json{{"f", json_key("squish.calibration.files", json::array())}},
                  "squish.calibration.files", "f");
  m.calibration_sha256 = s("squish.calibration.sha256");
  m.file_name = s("squish.output.file");
  m.type_counts = type_counts_from_json(json_key("squish.output.tensor_types", json::object()), r,
                                        "squish.output.tensor_types");
  m.weight_bytes = g.get_uint("squish.output.weight_bytes").value_or(0);
  m.bits_per_weight = g.get_float("squish.output.bits_per_weight").value_or(0);
  // The file itself is the authority on its tensors and size.
  m.file_bytes = g.file()->size();
  for (const TensorInfo& t : g.tensors())
    m.tensors.push_back({utf8(t.name, "tensor name"), dtype_name(t.type), t.shape, t.nbytes});
  return m;
}

// ---------------------------------------------------------------------------------------------
// JSON sidecar (schema: docs/manifest.md)

std::string sidecar_path(const std::string& model_path) {
  std::string p = model_path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p + ".manifest.json";
}

json manifest_to_json(const Manifest& m) {
  json j;
  j["manifest_version"] = m.version;
  j["tool"] = {
      {"name", m.tool}, {"version", m.tool_version}, {"commit", opt_string(m.tool_commit)}};
  j["created"] = m.created;
  j["source"] = {{"path", m.source_path},
                 {"format", m.source_format},
                 {"architecture", m.source_architecture},
                 {"sha256", m.source_sha256},
                 {"files", files_to_json(m.source_files)},
                 {"parameters", m.parameters}};
  json method = {{"command", m.method.command},
                 {"type", m.method.type},
                 {"algorithm", m.method.algorithm},
                 {"pure", m.method.pure},
                 {"tensor_type_overrides", m.method.tensor_type_overrides},
                 {"parameters", m.method.parameters},
                 {"output_tensor_type", opt_string(m.method.output_tensor_type)},
                 {"token_embedding_type", opt_string(m.method.token_embedding_type)},
                 {"imatrix", nullptr},
                 {"calibration", nullptr}};
  if (m.imatrix) {
    method["imatrix"] = {{"file", m.imatrix->file},
                         {"sha256", m.imatrix->sha256},
                         {"datasets", m.imatrix->datasets},
                         {"chunk_count", m.imatrix->chunk_count},
                         {"chunk_size", m.imatrix->chunk_size},
                         {"entries", m.imatrix->entries}};
  }
  if (!m.calibration_sha256.empty() || !m.method.calibration_files.empty()) {
    method["calibration"] = {{"files", m.method.calibration_files},
                             {"sha256", opt_string(m.calibration_sha256)}};
  }
  j["method"] = method;
  json tensors = json::array();
  for (const ManifestTensor& t : m.tensors)
    tensors.push_back({{"name", t.name}, {"type", t.type}, {"shape", t.shape}, {"bytes", t.bytes}});
  j["output"] = {{"file", m.file_name},
                 {"file_bytes", m.file_bytes},
                 {"weight_bytes", m.weight_bytes},
                 {"bits_per_weight", m.bits_per_weight},
                 {"tensor_types", type_counts_to_json(m.type_counts)},
                 {"tensors", tensors}};
  j["quality"] = m.quality;
  return j;
}

Manifest manifest_from_json(const json& j, const std::string& what) {
  const FieldReader r(what);
  if (!j.is_object()) fail("{}: not a squish manifest (expected a JSON object)", what);
  Manifest m;
  m.version = r.u32(j, "", "manifest_version");
  if (m.version != kManifestVersion) {
    fail("{}: manifest_version {} is not supported (this squish reads {})", what, m.version,
         kManifestVersion);
  }
  const json& tool = r.object(j, "", "tool");
  m.tool = r.str(tool, "tool", "name");
  m.tool_version = r.str(tool, "tool", "version");
  m.tool_commit = r.opt_str(tool, "tool", "commit");
  m.created = r.str(j, "", "created");

  const json& src = r.object(j, "", "source");
  m.source_path = r.str(src, "source", "path");
  m.source_format = r.str(src, "source", "format");
  m.source_architecture = r.str(src, "source", "architecture");
  m.source_sha256 = r.str(src, "source", "sha256");
  m.source_files = files_from_json(r.member(src, "source", "files"), r, "source.files");
  m.parameters = r.u64(src, "source", "parameters");

  const json& method = r.object(j, "", "method");
  m.method.command = r.str(method, "method", "command");
  m.method.type = r.str(method, "method", "type");
  m.method.algorithm = r.str(method, "method", "algorithm");
  m.method.pure = r.boolean(method, "method", "pure");
  m.method.tensor_type_overrides = r.str_array(method, "method", "tensor_type_overrides");
  if (auto it = method.find("parameters"); it != method.end()) {
    if (!it->is_object()) r.bad("method.parameters", "must be an object");
    m.method.parameters = *it;
  }
  m.method.output_tensor_type = r.opt_str(method, "method", "output_tensor_type");
  m.method.token_embedding_type = r.opt_str(method, "method", "token_embedding_type");
  if (auto it = method.find("imatrix"); it != method.end() && !it->is_null()) {
    if (!it->is_object()) r.bad("method.imatrix", "must be an object or null");
    ManifestImatrix mi;
    mi.file = r.str(*it, "method.imatrix", "file");
    mi.sha256 = r.str(*it, "method.imatrix", "sha256");
    mi.datasets = r.str_array(*it, "method.imatrix", "datasets");
    mi.chunk_count = r.u32(*it, "method.imatrix", "chunk_count");
    mi.chunk_size = r.u32(*it, "method.imatrix", "chunk_size");
    mi.entries = r.u32(*it, "method.imatrix", "entries");
    m.imatrix = mi;
  }
  if (auto it = method.find("calibration"); it != method.end() && !it->is_null()) {
    if (!it->is_object()) r.bad("method.calibration", "must be an object or null");
    m.method.calibration_files = r.str_array(*it, "method.calibration", "files");
    m.calibration_sha256 = r.opt_str(*it, "method.calibration", "sha256");
  }

  const json& out = r.object(j, "", "output");
  m.file_name = r.str(out, "output", "file");
  m.file_bytes = r.u64(out, "output", "file_bytes");
  m.weight_bytes = r.u64(out, "output", "weight_bytes");
  m.bits_per_weight = r.number(out, "output", "bits_per_weight");
  m.type_counts =
      type_counts_from_json(r.member(out, "output", "tensor_types"), r, "output.tensor_types");
  const json& tensors = r.member(out, "output", "tensors");
  if (!tensors.is_array()) r.bad("output.tensors", "must be an array");
  for (const json& t : tensors) {
    if (!t.is_object()) r.bad("output.tensors", "must hold tensor objects");
    ManifestTensor mt;
    mt.name = r.str(t, "output.tensors", "name");
    mt.type = r.str(t, "output.tensors", "type");
    const json& shape = r.member(t, "output.tensors", "shape");
    if (!shape.is_array() || shape.size() > 8) r.bad("output.tensors.shape", "must be an array");
    for (const json& d : shape) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0)
        r.bad("output.tensors.shape", "must hold non-negative integers");
      mt.shape.push_back(d.get<int64_t>());
    }
    mt.bytes = r.u64(t, "output.tensors", "bytes");
    m.tensors.push_back(std::move(mt));
  }
  const json& quality = r.member(j, "", "quality");
  if (!quality.is_object()) r.bad("quality", "must be an object");
  m.quality = quality;
  return m;
}

void write_sidecar(const Manifest& manifest, const std::string& model_path) {
  write_file_atomic(sidecar_path(model_path), manifest_to_json(manifest).dump(2) + "\n");
}

std::optional<Manifest> read_sidecar(const std::string& model_path) {
  const std::string path = sidecar_path(model_path);
  std::error_code ec;
  if (!fs::exists(path, ec)) return std::nullopt;
  return manifest_from_json(read_json_file(path, kMaxSidecarBytes), path);
}

// ---------------------------------------------------------------------------------------------
// A model's manifest

const Manifest* ModelManifest::best() const {
  if (from_sidecar && mismatch.empty()) return &*from_sidecar;
  if (from_gguf) return &*from_gguf;
  return nullptr;
}

ModelManifest load_model_manifest(const std::string& model_path) {
  ModelManifest mm;
  if (is_gguf_file(model_path)) mm.from_gguf = manifest_from_gguf(*GGUFFile::open(model_path));
  mm.from_sidecar = read_sidecar(model_path);
  if (!mm.from_sidecar) return mm;
  const Manifest& side = *mm.from_sidecar;
  std::error_code ec;
  const uint64_t size = fs::is_regular_file(model_path, ec) ? fs::file_size(model_path, ec) : 0;
  if (size != 0 && side.file_bytes != size) {
    mm.mismatch = fmt::format("sidecar {} describes a file of {} bytes, the model has {}",
                              sidecar_path(model_path), side.file_bytes, size);
  } else if (mm.from_gguf && (mm.from_gguf->created != side.created ||
                              mm.from_gguf->source_sha256 != side.source_sha256)) {
    mm.mismatch = fmt::format("sidecar {} belongs to another output (created {}, the model {})",
                              sidecar_path(model_path), side.created, mm.from_gguf->created);
  }
  return mm;
}

void record_quality(const std::string& model_path, const json& quality) {
  if (!quality.is_object()) fail("{}: quality to record must be a JSON object", model_path);
  // Two recorders (say, two `squish eval --record` runs) must not lose each other's entries: the
  // read-modify-write below holds an exclusive lock on the model file itself.
  const int lock_fd = ::open(model_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (lock_fd < 0) fail("{}: cannot open: {}", model_path, std::strerror(errno));
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }  // also releases the lock
  } closer{lock_fd};
  if (flock(lock_fd, LOCK_EX) != 0) fail("{}: cannot lock: {}", model_path, std::strerror(errno));
  ModelManifest mm = load_model_manifest(model_path);
  if (!mm.mismatch.empty()) fail("{}: {}", model_path, mm.mismatch);
  Manifest m;
  if (mm.from_sidecar) {
    m = *mm.from_sidecar;
  } else if (mm.from_gguf) {
    m = *mm.from_gguf;
  } else {
    fail(
        "{}: no squish manifest (no squish.* keys, no {}); quality is recorded only for models "
        "squish wrote",
        model_path, file_name_of(sidecar_path(model_path)));
  }
  for (auto it = quality.begin(); it != quality.end(); ++it) m.quality[it.key()] = it.value();
  write_sidecar(m, model_path);
}

// ---------------------------------------------------------------------------------------------
// Display

std::string format_manifest(const Manifest& m) {
  std::string s;
  s += fmt::format("made by:      {} {}{} at {}\n", m.tool, m.tool_version,
                   m.tool_commit.empty() ? "" : " (commit " + m.tool_commit + ")", m.created);
  s += fmt::format("source:       {} ({}, {}, {:.2f} M parameters)\n", m.source_path,
                   m.source_format, m.source_architecture, m.parameters / 1e6);
  std::string files;
  for (const ManifestFile& f : m.source_files) files += (files.empty() ? "" : ", ") + f.name;
  s += fmt::format("source hash:  sha256 {} over {}\n", m.source_sha256, files);
  std::string method =
      fmt::format("{} {}, {}", m.method.command, m.method.type, m.method.algorithm);
  if (m.method.pure) method += ", pure";
  for (auto it = m.method.parameters.begin(); it != m.method.parameters.end(); ++it)
    method += fmt::format(", {} {}", it.key(), it.value().dump());
  for (const std::string& o : m.method.tensor_type_overrides) method += ", --tensor-type " + o;
  if (!m.method.output_tensor_type.empty()) method += ", output " + m.method.output_tensor_type;
  if (!m.method.token_embedding_type.empty())
    method += ", token_embd " + m.method.token_embedding_type;
  s += fmt::format("method:       {}\n", method);
  if (m.imatrix) {
    std::string datasets;
    for (const std::string& d : m.imatrix->datasets) datasets += (datasets.empty() ? "" : ", ") + d;
    s += fmt::format("imatrix:      {} (sha256 {}), {} entries, {} chunks of {} tokens{}\n",
                     m.imatrix->file, m.imatrix->sha256, m.imatrix->entries, m.imatrix->chunk_count,
                     m.imatrix->chunk_size, datasets.empty() ? "" : ", data " + datasets);
  }
  if (!m.calibration_sha256.empty() || !m.method.calibration_files.empty()) {
    std::string files;
    for (const std::string& f : m.method.calibration_files)
      files += (files.empty() ? "" : ", ") + f;
    s += fmt::format("calibration:  {} (sha256 {})\n", files.empty() ? "?" : files,
                     m.calibration_sha256.empty() ? "unknown" : m.calibration_sha256);
  }
  std::string types;
  for (const auto& [type, n] : m.type_counts) types += fmt::format(" {} x{}", type, n);
  s += fmt::format("output:       {} tensors,{}; {:.3f} bits per weight, weights {:.2f} MiB{}\n",
                   m.tensors.size(), types, m.bits_per_weight, m.weight_bytes / 1048576.0,
                   m.file_bytes ? fmt::format(", file {:.2f} MiB", m.file_bytes / 1048576.0) : "");
  if (m.quality.empty()) {
    s += "quality:      not measured yet (squish eval --record)\n";
  } else {
    for (auto it = m.quality.begin(); it != m.quality.end(); ++it) {
      s += fmt::format("quality:      {}: {}\n", it.key(), it.value().dump());
    }
  }
  return s;
}

}  // namespace squish
