// The BPE model of Hugging Face `tokenizers` (models/bpe): a vocabulary, merges applied by rank,
// byte fallback and unknown-token handling (internal to src/tokenizer).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace squish::tok {

class BpeModel {
 public:
  // Tokens by id; empty strings are holes (ids no token uses). Throws on duplicates.
  void set_vocab(std::vector<std::string> tokens, const std::string& what);
  // Appends the next merge (rank = number of merges so far). Both parts and their
  // concatenation must be tokens.
  void add_merge(const std::string& left, const std::string& right, const std::string& what);

  int32_t find(std::string_view token) const;  // -1 when absent
  int32_t size() const { return static_cast<int32_t>(tokens_.size()); }
  const std::string& token(int32_t id) const { return tokens_[id]; }
  const std::vector<std::pair<int32_t, int32_t>>& merges() const { return merge_list_; }
  // Rank of the merge that produces `id` first, or -1 for tokens no merge produces.
  int32_t producing_rank(int32_t id) const;
  int32_t byte_token(uint8_t b) const { return byte_ids_[b]; }  // "<0xXX>" or -1

  int32_t unk_id = -1;
  bool byte_fallback = false;
  bool fuse_unk = false;
  bool ignore_merges = false;  // a word that is itself a token is not split (Llama-3)

  // Appends the ids of one pre-tokenized word (valid UTF-8).
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

 private:
  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  static uint64_t key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  std::vector<std::string> tokens_;
  std::unordered_map<std::string, int32_t> ids_;
  std::unordered_map<uint32_t, int32_t> char_ids_;  // tokens that are one code point
  std::unordered_map<uint64_t, Merge> merges_;
  std::vector<std::pair<int32_t, int32_t>> merge_list_;
  std::vector<int32_t> producing_rank_;
  std::array<int32_t, 256> byte_ids_{};
};

}  // namespace squish::tok
