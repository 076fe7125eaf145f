// The disclosure every model squish writes carries: which tool and version made it, from which
// source (and a SHA-256 of the source's weight files), by which method and parameters, what the
// output holds (per-tensor types, bits per weight, size), and what quality was measured on it.
//
// It is stored twice (key names and JSON schema: docs/manifest.md):
//  - as GGUF metadata keys "squish.*" inside the model. Every key is a scalar (string, u32, u64,
//    f32) because llama.cpp's model metadata API (llama_model_meta_*, and the metadata llama-cli
//    and llama-server print) skips array values; lists are stored as compact JSON text.
//  - as a JSON sidecar "<model>.manifest.json" next to the model, written after the model file.
//    It adds the full per-tensor list, the exact file size, and a "quality" section that starts
//    empty and is filled later (record_quality, used by `squish eval --record`), since the model
//    file itself is never rewritten.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "model/model.h"

namespace squish {

constexpr uint32_t kManifestVersion = 1;

// How an output was made; filled by the command that writes it (see GGUFExportOptions::method).
// Empty fields are derived by export_gguf from what it was asked to do.
struct ManifestMethod {
  std::string command;    // "convert" | "quantize"
  std::string type;       // mix or float type as named by the user: "Q4_K_M", "F16"
  std::string algorithm;  // "cast" (float), "rtn" (no calibration data), "imatrix", ...
  bool pure = false;
  std::vector<std::string> tensor_type_overrides;  // "PATTERN=TYPE", as given
  std::string output_tensor_type, token_embedding_type;
  std::string imatrix_path;  // hashed and summarised when set
  // Calibration text the method read directly (GPTQ's --calib files); hashed in this order.
  std::vector<std::string> calibration_files;
  // Settings of the algorithm beyond the above (GPTQ's damping, act-order, ...): flat JSON object.
  nlohmann::json parameters = nlohmann::json::object();

  bool operator==(const ManifestMethod&) const = default;
};

struct ManifestFile {
  std::string name;  // file name inside the source (folder), or the source file's name
  uint64_t bytes = 0;

  bool operator==(const ManifestFile&) const = default;
};

struct ManifestTensor {
  std::string name;
  std::string type;
  std::vector<int64_t> shape;  // row-major, as `squish info` prints it
  uint64_t bytes = 0;

  bool operator==(const ManifestTensor&) const = default;
};

struct ManifestImatrix {
  std::string file;  // as given on the command line
  std::string sha256;
  std::vector<std::string> datasets;  // imatrix.datasets
  uint32_t chunk_count = 0, chunk_size = 0, entries = 0;

  bool operator==(const ManifestImatrix&) const = default;
};

struct Manifest {
  uint32_t version = kManifestVersion;
  // Tool.
  std::string tool = "squish";
  std::string tool_version;  // SQUISH_VERSION
  std::string tool_commit;   // git commit at build time ("" when unknown)
  std::string created;       // UTC, ISO-8601 ("2025-01-31T12:00:00Z")
  // Source.
  std::string source_path;  // as given by the user
  std::string source_format;
  std::string source_architecture;
  std::string source_sha256;  // over source_files' contents, in this (sorted) order
  std::vector<ManifestFile> source_files;
  uint64_t parameters = 0;
  // Method.
  ManifestMethod method;  // imatrix_path is recorded as imatrix->file
  std::optional<ManifestImatrix> imatrix;
  std::string calibration_sha256;  // of method.calibration_files concatenated, when known
  // Output.
  std::string file_name;    // the model file's name (the sidecar lives next to it)
  uint64_t file_bytes = 0;  // exact size on disk; sidecar only (0 in the GGUF keys: see docs)
  uint64_t weight_bytes = 0;
  double bits_per_weight = 0;
  std::map<std::string, uint32_t> type_counts;  // tensor type -> number of tensors
  std::vector<ManifestTensor> tensors;          // full list; sidecar only
  // Quality measured after the fact; an empty object until then. Sidecar only.
  nlohmann::json quality = nlohmann::json::object();

  bool operator==(const Manifest&) const = default;
};

// ---- Building ----

// The weight files of a source model in the order they are hashed: for a Hugging Face folder every
// *.safetensors file, sorted by name; for a GGUF or llama2.c checkpoint, the file itself.
std::vector<std::string> source_weight_files(const Model& model);
// SHA-256 (lower-case hex) over the files' contents concatenated in the given order. Shows
// progress on stderr for large inputs. Throws squish::Error naming an unreadable file.
std::string sha256_files(const std::vector<std::string>& paths);
std::string sha256_hex(const void* data, size_t n);

// Builds the manifest of an output about to be written: hashes the source (and the imatrix /
// calibration file when the method names one), summarises `tensors` (the output's tensors in
// file order). file_bytes stays 0 until the file exists.
Manifest build_manifest(const Model& source, const ManifestMethod& method,
                        const std::vector<ManifestTensor>& tensors, const std::string& out_path);

// ---- GGUF keys ----

void manifest_to_gguf(const Manifest& manifest, GGUFWriter& writer);
// Reads the squish.* keys; nullopt when the file has none. The tensor list and file size come
// from the file itself. Throws squish::Error("<path>: ...") on a key with the wrong type.
std::optional<Manifest> manifest_from_gguf(const GGUFFile& gguf);

// ---- JSON sidecar ----

std::string sidecar_path(const std::string& model_path);  // "<model_path>.manifest.json"
nlohmann::json manifest_to_json(const Manifest& manifest);
// Validates every field it reads; errors are one line: "<what>: manifest field 'x': problem".
Manifest manifest_from_json(const nlohmann::json& j, const std::string& what);
// Writes the sidecar atomically (temp file + rename).
void write_sidecar(const Manifest& manifest, const std::string& model_path);
// nullopt when there is no sidecar; squish::Error naming the sidecar when it is unreadable,
// too large, not JSON, or not a manifest.
std::optional<Manifest> read_sidecar(const std::string& model_path);

// ---- Reading a model's manifest ----

struct ModelManifest {
  std::optional<Manifest> from_gguf;     // squish.* keys (GGUF models only)
  std::optional<Manifest> from_sidecar;  // <model>.manifest.json
  // Set when both exist but describe different outputs (a stale or misplaced sidecar).
  std::string mismatch;
  // The fuller of the two: the sidecar when it matches, else the GGUF keys.
  const Manifest* best() const;
};
ModelManifest load_model_manifest(const std::string& model_path);

// Merges `quality` (a JSON object) into the sidecar's quality section, top-level key by key,
// and rewrites the sidecar atomically. When the model has squish.* keys but no sidecar, the
// sidecar is recreated from the keys first. Fails (one line) when the model has no manifest at
// all or the sidecar does not belong to the model.
void record_quality(const std::string& model_path, const nlohmann::json& quality);

// ---- Display ----

// A readable block for `squish info` (several lines, each ending in '\n').
std::string format_manifest(const Manifest& manifest);

// Build provenance, also used by `squish doctor`.
const char* squish_git_commit();  // "" when unknown
std::string utc_now_iso8601();    // honours SOURCE_DATE_EPOCH for reproducible outputs

}  // namespace squish
