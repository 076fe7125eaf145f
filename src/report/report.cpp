// Data collection for `squish report`: reads the folder, loads each model once (memory-mapped,
// one compressed model next to the base at a time), and builds the squish-report/1 document.
#include "report/report.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>

#include "core/error.h"
#include "core/json_file.h"
#include "core/progress.h"
#include "model/model.h"
#include "report/tensor_error.h"

namespace squish {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr size_t kMaxEvalJsonBytes = size_t{256} << 20;
constexpr size_t kMaxManifestBytes = size_t{64} << 20;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A number field: absent -> null; present -> a number or null, else a one-line error.
json number_field(const json& j, const char* key, const std::string& file) {
  if (!j.contains(key) || j[key].is_null()) return nullptr;
  if (!j[key].is_number()) fail("{}: '{}' is not a number", file, key);
  const double v = j[key].get<double>();
  return std::isfinite(v) ? json(v) : json(nullptr);
}

// Paths in eval/compare outputs are as the user typed them, relative to wherever the command ran.
// Tries the path itself, then the folder being reported, then the file name inside that folder.
std::string resolve_model_path(const std::string& p, const fs::path& dir) {
  std::error_code ec;
  if (p.empty()) return "";
  const fs::path path(p);
  if (fs::exists(path, ec)) return path.string();
  if (path.is_relative() && fs::exists(dir / path, ec)) return (dir / path).string();
  if (fs::exists(dir / path.filename(), ec)) return (dir / path.filename()).string();
  return "";
}

std::string canonical_key(const std::string& p) {
  std::error_code ec;
  fs::path c = fs::weakly_canonical(p, ec);
  return ec ? p : c.string();
}

uint64_t model_file_bytes(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    uint64_t total = 0;
    for (const auto& e : fs::directory_iterator(path, ec)) {
      if (e.is_regular_file(ec)) total += e.file_size(ec);
    }
    return total;
  }
  const auto n = fs::file_size(path, ec);
  return ec ? 0 : n;
}

// Sidecar written by squish's exporters: "<model>.manifest.json" (also accepted: the model's
// name with its extension replaced, "<stem>.manifest.json").
std::string find_manifest(const std::string& model_path) {
  std::error_code ec;
  for (const std::string& cand :
       {model_path + ".manifest.json", (fs::path(model_path).parent_path() /
                                        (fs::path(model_path).stem().string() + ".manifest.json"))
                                           .string()}) {
    if (fs::is_regular_file(cand, ec)) return cand;
  }
  return "";
}

json describe_model(const Model& m) {
  int64_t numel = 0;
  uint64_t bytes = 0;
  std::map<std::string, int> types;
  for (const TensorInfo& t : m.tensors()) {
    numel += t.numel();
    bytes += t.nbytes;
    types[dtype_name(t.type)]++;
  }
  return {{"format", source_format_name(m.format)},
          {"architecture", m.config.arch_name()},
          {"n_layer", m.config.n_layer},
          {"n_params", numel},
          {"weight_bytes", bytes},
          {"bits_per_weight", numel > 0 ? 8.0 * bytes / numel : 0.0},
          {"types", types}};
}

json eval_entry(const json& j, const std::string& file, const fs::path& dir, json& notes) {
  if (!j.is_object()) fail("{}: not a squish eval --json object", file);
  if (!j.contains("model") || !(j["model"].is_string() || j["model"].is_null())) {
    fail("{}: no 'model' key (is this a squish eval --json output?)", file);
  }
  if (j["model"].is_null()) {
    notes.push_back(file + ": base-only run (--save-base without a model), nothing to plot");
    return nullptr;
  }
  json e = {{"file", fs::path(file).filename().string()},
            {"schema", j.value("schema", "")},
            {"model", j["model"]},
            {"base", j.contains("base") && j["base"].is_string() ? j["base"] : json(nullptr)},
            {"text", j.contains("file") && j["file"].is_string() ? j["file"] : json(nullptr)}};
  for (const char* key : {"ctx", "n_chunks", "n_scored"}) {
    e[key] = j.contains(key) && j[key].is_number_integer() ? j[key] : json(nullptr);
  }
  for (const char* key : {"base_ppl", "model_ppl", "ppl_ratio", "mean_kld", "kld_stderr",
                          "median_kld", "p90_kld", "p99_kld", "max_kld", "top1_agreement"}) {
    e[key] = number_field(j, key, file);
  }
  if (e["mean_kld"].is_null() && e["model_ppl"].is_null()) {
    fail("{}: neither 'mean_kld' nor 'model_ppl' (is this a squish eval --json output?)", file);
  }
  if (e["ppl_ratio"].is_null() && !e["base_ppl"].is_null() && !e["model_ppl"].is_null() &&
      e["base_ppl"].get<double>() > 0) {
    e["ppl_ratio"] = e["model_ppl"].get<double>() / e["base_ppl"].get<double>();
  }
  // Frequency buckets (docs/eval-json.md, breakdowns.frequency.buckets), when measured.
  e["frequency_buckets"] = nullptr;
  if (j.contains("breakdowns") && j["breakdowns"].is_object() &&
      j["breakdowns"].contains("frequency") && j["breakdowns"]["frequency"].is_object()) {
    const json& f = j["breakdowns"]["frequency"];
    if (f.contains("buckets") && f["buckets"].is_array()) {
      json buckets = json::array();
      for (const json& b : f["buckets"]) {
        if (!b.is_object() || !b.contains("label") || !b["label"].is_string()) {
          fail("{}: breakdowns.frequency.buckets: every bucket needs a string 'label'", file);
        }
        json out = {{"label", b["label"]}};
        for (const char* key : {"rank_min", "rank_max", "n_scored", "n_distinct"}) {
          out[key] = b.contains(key) && b[key].is_number_integer() ? b[key] : json(nullptr);
        }
        for (const char* key : {"mean_kld", "kld_stderr", "same_top", "mean_delta_nll", "base_ppl",
                                "model_ppl", "rms_delta_p"}) {
          out[key] = number_field(b, key, file);
        }
        buckets.push_back(out);
      }
      e["frequency_buckets"] = buckets;
      e["frequency_source"] = f.contains("source") ? f["source"] : json(nullptr);
    }
  }
  e["model_path"] = resolve_model_path(j["model"].get<std::string>(), dir);
  return e;
}

json compare_entry(const json& j, const std::string& file) {
  if (!j.is_object() || j.value("schema", "") != "squish-compare/1") {
    fail("{}: not a squish compare --json output (schema squish-compare/1)", file);
  }
  if (!j.contains("prompts") || !j["prompts"].is_array() || !j.contains("summary") ||
      !j["summary"].is_object()) {
    fail("{}: 'prompts' (array) and 'summary' (object) are required", file);
  }
  for (const json& p : j["prompts"]) {
    if (!p.is_object()) fail("{}: every element of 'prompts' must be an object", file);
    for (const char* key : {"prompt", "base_answer", "model_answer"}) {
      if (!p.contains(key) || !p[key].is_string())
        fail("{}: prompt without string '{}'", file, key);
    }
    for (const char* key : {"match_length", "answer_length"}) {
      if (!p.contains(key) || !p[key].is_number_integer()) {
        fail("{}: prompt without integer '{}'", file, key);
      }
    }
  }
  json out = j;
  out["file"] = fs::path(file).filename().string();
  return out;
}

json tensor_errors_json(const std::vector<TensorError>& errors) {
  json arr = json::array();
  for (const TensorError& e : errors) {
    arr.push_back({{"name", e.name},
                   {"layer", e.layer},
                   {"kind", e.kind},
                   {"type", dtype_name(e.type)},
                   {"base_type", dtype_name(e.base_type)},
                   {"numel", e.numel},
                   {"rel_rmse", std::isfinite(e.rel_rmse) ? json(e.rel_rmse) : json(nullptr)},
                   {"rmse", e.rmse}});
  }
  return arr;
}

}  // namespace

std::string report_json_path(const std::string& html_path) {
  fs::path p(html_path);
  return (p.parent_path() / (p.stem().string() + ".json")).string();
}

json collect_report(const ReportOptions& o) {
  std::error_code ec;
  const fs::path dir(o.dir);
  if (!fs::is_directory(dir, ec)) fail("{}: not a folder", o.dir);
  std::vector<fs::path> entries;
  for (const auto& e : fs::directory_iterator(dir, ec)) entries.push_back(e.path());
  if (ec) fail("{}: cannot list: {}", o.dir, ec.message());
  std::sort(entries.begin(), entries.end());

  json notes = json::array();
  json evals = json::array(), compares = json::array();
  std::vector<std::string> model_paths;  // in order of first mention
  std::map<std::string, size_t> model_index;
  auto add_model = [&](const std::string& path) {
    const std::string key = canonical_key(path);
    if (model_index.count(key) == 0) {
      model_index[key] = model_paths.size();
      model_paths.push_back(path);
    }
  };
  for (const fs::path& p : entries) {
    const std::string name = p.filename().string();
    if (ends_with(name, ".eval.json")) {
      json e = eval_entry(read_json_file(p.string(), kMaxEvalJsonBytes), p.string(), dir, notes);
      if (e.is_null()) continue;
      if (e["model_path"].get<std::string>().empty()) {
        notes.push_back(fmt::format("{}: model '{}' not found; its size is unknown", name,
                                    e["model"].get<std::string>()));
      } else {
        add_model(e["model_path"].get<std::string>());
      }
      evals.push_back(std::move(e));
    } else if (ends_with(name, ".compare.json")) {
      compares.push_back(compare_entry(read_json_file(p.string(), kMaxEvalJsonBytes), p.string()));
    } else if (ends_with(name, ".gguf") && fs::is_regular_file(p, ec)) {
      add_model(p.string());
    }
  }

  // The base: given, else the first eval's base that is a model on disk (not a saved .squishkl).
  std::string base_path = o.base;
  if (base_path.empty()) {
    for (const json& e : evals) {
      if (!e["base"].is_string()) continue;
      const std::string b = resolve_model_path(e["base"].get<std::string>(), dir);
      if (!b.empty() && !ends_with(b, ".squishkl")) {
        base_path = b;
        break;
      }
    }
  }
  std::unique_ptr<Model> base;
  json base_json = nullptr;
  if (!base_path.empty()) {
    try {
      base = load_model(base_path);
    } catch (const Error& err) {
      if (!o.base.empty()) throw;  // asked for explicitly: a real error
      notes.push_back(
          fmt::format("base {} could not be loaded ({}); no tensor errors", base_path, err.what()));
    }
  } else {
    notes.push_back("no base model (pass --base, or eval outputs naming one); no tensor errors");
  }
  const std::string base_key = base ? canonical_key(base_path) : "";
  if (base) {
    base_json = describe_model(*base);
    base_json["path"] = base_path;
    base_json["name"] = fs::path(base_path).filename().string();
    base_json["file_bytes"] = model_file_bytes(base_path);
  }

  // Models: one at a time next to the base.
  size_t total_tensors = 0;
  json models = json::array();
  for (const std::string& path : model_paths) {
    json m = {{"name", fs::path(path).filename().string()},
              {"path", path},
              {"file_bytes", model_file_bytes(path)},
              {"is_base", base && canonical_key(path) == base_key},
              {"manifest", nullptr},
              {"manifest_file", nullptr},
              {"tensor_errors", nullptr},
              {"note", nullptr}};
    if (const std::string mf = find_manifest(path); !mf.empty()) {
      m["manifest_file"] = fs::path(mf).filename().string();
      try {
        m["manifest"] = read_json_file(mf, kMaxManifestBytes);
      } catch (const Error& err) {
        notes.push_back(fmt::format("manifest {} skipped: {}", mf, err.what()));
      }
    }
    std::unique_ptr<Model> model;
    try {
      model = load_model(path);
    } catch (const Error& err) {
      m["note"] = fmt::format("cannot be loaded: {}", err.what());
      models.push_back(std::move(m));
      continue;
    }
    m.update(describe_model(*model));
    if (base && !m["is_base"].get<bool>()) {
      Progress progress("report: " + m["name"].get<std::string>(), model->tensors().size(),
                        o.quiet);
      try {
        m["tensor_errors"] = tensor_errors_json(compute_tensor_errors(
            *base, *model, [&](size_t done, size_t) { progress.update(done); }));
        total_tensors += model->tensors().size();
      } catch (const Error& err) {
        m["note"] = fmt::format("not comparable with the base: {}", err.what());
      }
      progress.finish();
    }
    models.push_back(std::move(m));
  }
  // Each eval points at its model entry (size, bits per weight) by index.
  for (json& e : evals) {
    const std::string p = e["model_path"].get<std::string>();
    e["model_index"] = p.empty() ? json(nullptr) : json(model_index[canonical_key(p)]);
  }
  return {{"schema", "squish-report/1"},
          {"squish_version", SQUISH_VERSION},
          {"dir", o.dir},
          {"base", base_json},
          {"models", models},
          {"evals", evals},
          {"compares", compares},
          {"n_tensor_errors", total_tensors},
          {"notes", notes}};
}

}  // namespace squish
