// A Hugging Face tokenizer.json BPE tokenizer: added tokens, normalizer, pre-tokenizer, BPE model
// and decoder, run the way `tokenizers` runs them. Also what a GGUF "gpt2" vocabulary (or a
// "llama" one that carries merges) is rebuilt into (internal to src/tokenizer).
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/bpe.h"
#include "tokenizer/hf_pipeline.h"
#include "tokenizer/tokenizer.h"

namespace squish::tok {

// GGUF key (ignored by llama.cpp) holding the pipeline as JSON when no tokenizer.ggml.pre name
// rebuilds it exactly.
inline constexpr const char* kPipelineKey = "squish.tokenizer.pipeline";

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;
  bool normalized = false;
  bool lstrip = false, rstrip = false, single_word = false;
};

// Finds added tokens in text the way the reference's Aho-Corasick (leftmost-longest) does.
class AddedTokenMatcher {
 public:
  struct Match {
    size_t start, end;
    int32_t id;
  };
  // `patterns[i]` is what token i is matched as (its content, or its normalized content).
  void build(const std::vector<AddedToken>* tokens, std::vector<size_t> which,
             std::vector<std::string> patterns);
  bool empty() const { return which_.empty(); }
  void find(std::string_view text, bool parse_special, std::vector<Match>& out) const;

 private:
  const std::vector<AddedToken>* tokens_ = nullptr;
  std::vector<size_t> which_;                       // indices into *tokens_
  std::vector<std::string> patterns_;               // parallel to which_
  std::vector<std::vector<size_t>> by_first_byte_;  // 256 lists of indices into which_,
                                                    // longest pattern first
};

class HfTokenizer final : public Tokenizer {
 public:
  // Everything a tokenizer.json (or a GGUF vocabulary) defines.
  struct Spec {
    std::vector<std::string> tokens;  // model vocabulary by id ("" for ids it lacks)
    std::vector<std::pair<std::string, std::string>> merges;
    std::vector<AddedToken> added;
    nlohmann::json normalizer, pre_tokenizer, decoder;  // tokenizer.json values (may be null)
    std::string unk_token;                              // "" for none
    bool byte_fallback = false, fuse_unk = false, ignore_merges = false;
    int32_t bos = -1, eos = -1;
    bool add_bos = false, add_eos = false;
  };
  HfTokenizer(Spec spec, const std::string& what);
  HfTokenizer(const HfTokenizer&) = delete;  // the matchers point into added_
  HfTokenizer& operator=(const HfTokenizer&) = delete;

  // Parses a tokenizer.json document; `what` names the file in errors.
  static Spec parse_json(const nlohmann::json& j, const std::string& what);

  TokenizerKind kind() const override { return kind_; }
  int32_t vocab_size() const override { return static_cast<int32_t>(text_.size()); }
  std::vector<int32_t> encode(std::string_view text, bool parse_special) const override;
  std::string token_to_piece(int32_t id) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  std::string token_text(int32_t id) const override;
  int32_t token_id(std::string_view text) const override;
  void write_gguf(GGUFWriter& writer) const override;

  // The tokenizer.json-level description written to GGUF when no llama.cpp "pre" name
  // reproduces this tokenizer exactly.
  nlohmann::json pipeline_json() const;

 private:
  void encode_valid(std::string_view text, bool at_start, bool parse_special,
                    std::vector<int32_t>& out) const;
  void encode_segment(std::string_view text, bool at_start, bool parse_special,
                      std::vector<int32_t>& out) const;
  void encode_word_cached(const std::string& word, std::vector<int32_t>& out) const;
  // GGUF "pre" name and whether that name alone rebuilds this pipeline exactly.
  std::pair<std::string, bool> gguf_pre() const;

  TokenizerKind kind_;
  BpeModel model_;
  Pipeline pipeline_;
  Spec spec_;                       // kept for GGUF export
  std::vector<std::string> text_;   // token text by id, added tokens included
  std::vector<int8_t> added_kind_;  // 0 model token, 1 added special, 2 added non-special
  std::vector<AddedToken> added_;
  AddedTokenMatcher raw_matcher_, normalized_matcher_;

  static constexpr size_t kMaxCachedWord = 64;  // long words are rare and not worth keeping
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

// Canonical Spec fields (normalizer, pre_tokenizer, decoder and model flags) for a GGUF
// vocabulary: model "gpt2" with the given pre name, or "llama" (pre ignored).
void canonical_pipeline(const std::string& model, const std::string& pre, HfTokenizer::Spec& spec);

}  // namespace squish::tok
