// Tokenizers: byte-level BPE (GPT-2 / Llama-3 / Qwen2 style, from tokenizer.json),
// SentencePiece-style BPE (Llama-2 style tokenizer.json with byte fallback, or tokenizer.model
// through libsentencepiece), llama2.c tokenizer.bin, and whatever a GGUF file carries in its
// tokenizer.ggml.* keys. Encode/decode match the reference implementations exactly (tests hold
// golden ids produced by Hugging Face `tokenizers` and `sentencepiece`).
//
// Known departures from the references, all on input they never see or rarely do:
//  - Input that is not valid UTF-8 (the references only take valid strings): each stray byte is
//    encoded on its own (byte-level: its byte token; SentencePiece: <0xXX> or <unk>).
//  - Regexes run on PCRE2 instead of Oniguruma; both are Perl-style backtracking engines and
//    agree on these patterns, up to Unicode-version differences in \p{L}/\p{N} and PCRE2's
//    \s also matching U+180E.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace squish {

class GGUFFile;
class GGUFWriter;

enum class TokenizerKind {
  ByteLevelBPE,      // GGUF "gpt2"
  SentencePieceBPE,  // GGUF "llama"
  Llama2c,           // llama2.c tokenizer.bin (exported to GGUF as "llama")
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  virtual TokenizerKind kind() const = 0;
  virtual int32_t vocab_size() const = 0;

  // Text to ids, without BOS/EOS. When parse_special is true, special/added tokens written
  // literally in the text (e.g. "<|endoftext|>") map to their ids; otherwise they are plain text.
  // Tokenizers whose reference prepends a space marker (SentencePiece "▁") do so here, as the
  // reference does for a whole input.
  virtual std::vector<int32_t> encode(std::string_view text, bool parse_special = false) const = 0;

  // The bytes one token contributes to decoded text (may be part of a UTF-8 sequence).
  virtual std::string token_to_piece(int32_t id) const = 0;
  // Ids to text exactly as the reference decoder gives it (e.g. SentencePiece drops the leading
  // space of the first token; special tokens are included).
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  // The token's string as stored in the vocabulary (e.g. "Ġthe", "▁the", "<0x0A>").
  virtual std::string token_text(int32_t id) const = 0;
  // Inverse of token_text: the id of a vocabulary string, -1 when there is none.
  virtual int32_t token_id(std::string_view text) const = 0;

  int32_t bos_id() const { return bos_id_; }  // -1 when the vocabulary has none
  int32_t eos_id() const { return eos_id_; }
  bool add_bos() const { return add_bos_; }  // whether the reference adds BOS when encoding
  bool add_eos() const { return add_eos_; }  // whether it adds EOS (rare; encode_for_model doesn't)
  bool is_eog(int32_t id) const { return id == eos_id_; }

  // For loaders whose side files (tokenizer_config.json, config.json, a GGUF's keys) say more
  // than the tokenizer file itself. Ids out of range count as -1 (none).
  void set_special_tokens(int32_t bos_id, int32_t eos_id, bool add_bos, bool add_eos);

  // Convenience: BOS (if add_bos) + encode(text).
  std::vector<int32_t> encode_for_model(std::string_view text) const;

  // Writes tokenizer.ggml.* metadata that llama.cpp reads (model, pre, tokens, scores,
  // token_type, merges, bos/eos/unk ids, add_bos_token, add_eos_token).
  virtual void write_gguf(GGUFWriter& writer) const = 0;

 protected:
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
  bool add_bos_ = false;
  bool add_eos_ = false;
};

// Hugging Face folder: tokenizer.json preferred, else tokenizer.model; tokenizer_config.json and
// config.json supply bos/eos/add_bos when tokenizer.json does not (add_bos: tokenizer_config's
// add_bos_token, else whether tokenizer.json's post_processor adds BOS). Returns nullptr when the
// folder has no tokenizer file at all; throws squish::Error on a malformed one.
std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& folder);
std::unique_ptr<Tokenizer> load_tokenizer_json(const std::string& path);
std::unique_ptr<Tokenizer> load_sentencepiece_model(const std::string& path);
// vocab_size <= 0 reads tokens until the end of the file.
std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& path, int32_t vocab_size);
// nullptr when the GGUF has no tokenizer.ggml.model key.
std::unique_ptr<Tokenizer> load_gguf_tokenizer(const GGUFFile& file);

}  // namespace squish
