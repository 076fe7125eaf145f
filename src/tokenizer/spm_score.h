// Score-driven SentencePiece-style BPE: repeatedly merge the adjacent pair whose concatenation is
// the highest-scoring token (leftmost on ties). Two flavours with their references' details:
//  - llama.cpp's SPM tokenizer (GGUF model "llama" without merges): space prefix, spaces as "▁",
//    code points as symbols, leftover symbols as <0xXX> bytes at the end;
//  - llama2.c run.c encode(): a " " dummy-prefix token, per code point lookup with bytes as
//    id + 3 up front, vocabulary written with plain spaces.
// (internal to src/tokenizer)
#pragma once

#include <array>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/hf_pipeline.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace squish::tok {

class ScoreSpmTokenizer final : public Tokenizer {
 public:
  enum class Flavor { kLlamaCpp, kLlama2c };
  // types use GGUF's numbering (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte).
  ScoreSpmTokenizer(Flavor flavor, std::vector<std::string> pieces, std::vector<float> scores,
                    std::vector<int32_t> types, int32_t unk_id, const std::string& what);
  ScoreSpmTokenizer(const ScoreSpmTokenizer&) = delete;  // matcher_ points into specials_
  ScoreSpmTokenizer& operator=(const ScoreSpmTokenizer&) = delete;

  TokenizerKind kind() const override {
    return flavor_ == Flavor::kLlama2c ? TokenizerKind::Llama2c : TokenizerKind::SentencePieceBPE;
  }
  int32_t vocab_size() const override { return static_cast<int32_t>(pieces_.size()); }
  std::vector<int32_t> encode(std::string_view text, bool parse_special) const override;
  std::string token_to_piece(int32_t id) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  std::string token_text(int32_t id) const override;
  int32_t token_id(std::string_view text) const override;
  void write_gguf(GGUFWriter& writer) const override;

 private:
  // Merges the symbols of `buf` (initial symbol boundaries in `starts`) and appends ids.
  void merge(const std::string& buf, const std::vector<uint32_t>& starts,
             std::vector<int32_t>& out) const;
  void encode_llama2c(std::string_view text, std::vector<int32_t>& out) const;
  void encode_fragment(std::string_view text, std::vector<int32_t>& out) const;

  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  Flavor flavor_;
  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::vector<int32_t> types_;
  std::unordered_map<std::string, int32_t, Hash, std::equal_to<>> ids_;
  std::array<int32_t, 256> byte_ids_{};
  int32_t unk_id_ = -1;
  std::vector<AddedToken> specials_;  // control / user-defined tokens matched in text
  AddedTokenMatcher matcher_;
  Pipeline decoder_;  // llama.cpp flavour: the Llama-2 tokenizer.json decoder
};

}  // namespace squish::tok
