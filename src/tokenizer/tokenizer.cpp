// Loaders: Hugging Face folders and tokenizer.json files, and GGUF vocabularies.
#include "tokenizer/tokenizer.h"

#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_file.h"
#include "formats/gguf.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/spm_score.h"

namespace squish {

using json = nlohmann::json;
namespace fs = std::filesystem;

std::vector<int32_t> Tokenizer::encode_for_model(std::string_view text) const {
  std::vector<int32_t> ids;
  if (add_bos_ && bos_id_ >= 0) ids.push_back(bos_id_);
  std::vector<int32_t> body = encode(text);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

void Tokenizer::set_special_tokens(int32_t bos_id, int32_t eos_id, bool add_bos, bool add_eos) {
  const auto valid = [&](int32_t id) { return id >= 0 && id < vocab_size() ? id : -1; };
  bos_id_ = valid(bos_id);
  eos_id_ = valid(eos_id);
  add_bos_ = add_bos && bos_id_ >= 0;
  add_eos_ = add_eos && eos_id_ >= 0;
}

namespace {

// tokenizer.json files of large-vocabulary models run to tens of MB.
constexpr size_t kMaxTokenizerJsonBytes = size_t{512} << 20;

json parse_json_file(const std::string& path) {
  return read_json_file(path, kMaxTokenizerJsonBytes);
}

// tokenizer_config.json spells a token as "text" or {"content": "text", ...}.
std::string token_string(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    return v["content"].get<std::string>();
  }
  return "";
}

// config.json: an id, a list of ids (first counts), or null.
int32_t config_id(const json& v) {
  if (v.is_number_integer()) return v.get<int32_t>();
  if (v.is_array() && !v.empty() && v[0].is_number_integer()) return v[0].get<int32_t>();
  return -1;
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer_json(const std::string& path) {
  const json j = parse_json_file(path);
  try {
    return std::make_unique<tok::HfTokenizer>(tok::HfTokenizer::parse_json(j, path), path);
  } catch (const json::exception& e) {
    // A field of the wrong type that no typed reader checked first (tokenizer_json_fuzz found
    // "type": null in the model object); nlohmann's message is one line.
    fail("{}: malformed tokenizer.json: {}", path, e.what());
  }
}

std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& folder) {
  const fs::path dir(folder);
  std::unique_ptr<Tokenizer> t;
  if (fs::exists(dir / "tokenizer.json")) {
    t = load_tokenizer_json((dir / "tokenizer.json").string());
  } else if (fs::exists(dir / "tokenizer.model")) {
    t = load_sentencepiece_model((dir / "tokenizer.model").string());
  } else {
    return nullptr;
  }

  // Side files refine what the tokenizer file says: tokenizer_config.json's token strings and
  // add_bos_token/add_eos_token first, config.json's ids next.
  int32_t bos = t->bos_id(), eos = t->eos_id();
  bool add_bos = t->add_bos(), add_eos = t->add_eos();
  if (const fs::path p = dir / "config.json"; fs::exists(p)) {
    const json c = parse_json_file(p.string());
    if (c.is_object()) {
      if (int32_t id = config_id(c.value("bos_token_id", json())); id >= 0) bos = id;
      if (int32_t id = config_id(c.value("eos_token_id", json())); id >= 0) eos = id;
    }
  }
  if (const fs::path p = dir / "tokenizer_config.json"; fs::exists(p)) {
    const json c = parse_json_file(p.string());
    if (c.is_object()) {
      if (int32_t id = t->token_id(token_string(c.value("bos_token", json()))); id >= 0) bos = id;
      if (int32_t id = t->token_id(token_string(c.value("eos_token", json()))); id >= 0) eos = id;
      if (auto it = c.find("add_bos_token"); it != c.end() && it->is_boolean()) add_bos = *it;
      if (auto it = c.find("add_eos_token"); it != c.end() && it->is_boolean()) add_eos = *it;
    }
  }
  t->set_special_tokens(bos, eos, add_bos, add_eos);
  return t;
}

std::unique_ptr<Tokenizer> load_gguf_tokenizer(const GGUFFile& f) {
  const std::optional<std::string> model = f.get_string("tokenizer.ggml.model");
  if (!model || *model == "no_vocab" || *model == "none") return nullptr;
  const std::string& what = f.path();
  if (*model != "gpt2" && *model != "llama") {
    fail("{}: tokenizer model \"{}\" is not supported (only gpt2 and llama)", what, *model);
  }
  const std::vector<std::string>* tokens = f.get_str_array("tokenizer.ggml.tokens");
  if (tokens == nullptr || tokens->empty()) fail("{}: tokenizer.ggml.tokens is missing", what);
  const size_t n = tokens->size();
  const std::vector<int64_t>* types = f.get_int_array("tokenizer.ggml.token_type");
  const std::vector<double>* scores = f.get_float_array("tokenizer.ggml.scores");
  const std::vector<std::string>* merges = f.get_str_array("tokenizer.ggml.merges");
  if (types != nullptr && types->size() != n) {
    fail("{}: {} tokens but {} token types", what, n, types->size());
  }
  if (scores != nullptr && scores->size() != n) {
    fail("{}: {} tokens but {} scores", what, n, scores->size());
  }
  const auto id_key = [&](const char* key) -> int32_t {
    const std::optional<uint64_t> v = f.get_uint(key);
    if (!v) return -1;
    if (*v >= n) fail("{}: {} = {} is out of range ({} tokens)", what, key, *v, n);
    return static_cast<int32_t>(*v);
  };
  const int32_t bos = id_key("tokenizer.ggml.bos_token_id");
  const int32_t eos = id_key("tokenizer.ggml.eos_token_id");
  const int32_t unk = id_key("tokenizer.ggml.unknown_token_id");
  // llama.cpp's defaults: SentencePiece vocabularies add BOS, BPE ones do not.
  const bool add_bos = f.get_bool("tokenizer.ggml.add_bos_token").value_or(*model == "llama");
  const bool add_eos = f.get_bool("tokenizer.ggml.add_eos_token").value_or(false);
  const auto type_of = [&](size_t i) { return types ? static_cast<int32_t>((*types)[i]) : 1; };

  std::unique_ptr<Tokenizer> t;
  if (*model == "llama" && merges == nullptr) {
    std::vector<float> sc(n, 0.0f);
    std::vector<int32_t> ty(n, 1);
    for (size_t i = 0; i < n; ++i) {
      if (scores) sc[i] = static_cast<float>((*scores)[i]);
      ty[i] = type_of(i);
    }
    t = std::make_unique<tok::ScoreSpmTokenizer>(tok::ScoreSpmTokenizer::Flavor::kLlamaCpp, *tokens,
                                                 std::move(sc), std::move(ty), unk, what);
  } else {
    if (merges == nullptr) fail("{}: gpt2 tokenizer without tokenizer.ggml.merges", what);
    tok::HfTokenizer::Spec spec;
    spec.tokens.resize(n);
    bool has_bytes = false;
    for (size_t i = 0; i < n; ++i) {
      const int32_t ty = type_of(i);
      if (ty == 5) continue;  // unused: a hole in the vocabulary
      spec.tokens[i] = (*tokens)[i];
      has_bytes = has_bytes || ty == 6;
      if (ty == 2 || ty == 3 || ty == 4) {
        tok::AddedToken a;
        a.id = static_cast<int32_t>(i);
        a.content = (*tokens)[i];
        a.special = ty != 4;
        spec.added.push_back(std::move(a));
      }
    }
    for (const std::string& m : *merges) {
      const size_t sp = m.find(' ');
      if (sp == std::string::npos || sp == 0 || sp + 1 == m.size()) {
        // replace: a merge that is not UTF-8 must not make dump() throw (gguf_fuzz finding).
        fail("{}: merge {} is not two tokens separated by a space", what,
             json(m).dump(-1, ' ', false, json::error_handler_t::replace));
      }
      spec.merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
    }
    const std::string pre = f.get_string("tokenizer.ggml.pre").value_or("default");
    tok::canonical_pipeline(*model, pre, spec);
    spec.byte_fallback = *model == "llama" && has_bytes;
    if (unk >= 0) spec.unk_token = (*tokens)[unk];
    if (const std::optional<std::string> p = f.get_string(tok::kPipelineKey)) {
      // Written by squish for pipelines no "pre" name describes.
      const json j = json::parse(*p, nullptr, false);
      if (j.is_discarded() || !j.is_object())
        fail("{}: {} is not valid JSON", what, tok::kPipelineKey);
      try {  // json::value() throws type_error on a wrong-typed field
        spec.normalizer = j.value("normalizer", json());
        spec.pre_tokenizer = j.value("pre_tokenizer", json());
        spec.decoder = j.value("decoder", json());
        spec.ignore_merges = j.value("ignore_merges", false);
        spec.fuse_unk = j.value("fuse_unk", false);
        spec.byte_fallback = j.value("byte_fallback", false);
      } catch (const json::exception& e) {
        fail("{}: {}: {}", what, tok::kPipelineKey, e.what());
      }
    }
    t = std::make_unique<tok::HfTokenizer>(std::move(spec), what);
  }
  t->set_special_tokens(bos, eos, add_bos, add_eos);
  return t;
}

}  // namespace squish
