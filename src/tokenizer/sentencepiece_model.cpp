// tokenizer.model through libsentencepiece: encoding and decoding are the library's own; squish
// adds special-token parsing and GGUF export of pieces, scores and types.
#include <sentencepiece_processor.h>

#include <filesystem>

#include "core/error.h"
#include "formats/gguf.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/text_util.h"
#include "tokenizer/tokenizer.h"

namespace squish {
namespace {

class SentencePieceModelTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceModelTokenizer(const std::string& path) : path_(path) {
    if (!std::filesystem::is_regular_file(path)) fail("{}: no such file", path);
    sentencepiece::util::Status status;
    try {
      status = sp_.Load(path);
    } catch (const std::exception& e) {
      // libsentencepiece throws from its trie builder on some malformed vocabularies (a
      // zero-length piece: sentencepiece_model_fuzz finding) instead of returning a status.
      fail("{}: not a SentencePiece model: {}", path, e.what());
    }
    if (!status.ok()) fail("{}: not a SentencePiece model: {}", path, status.ToString());
    const int n = sp_.GetPieceSize();
    for (int id = 0; id < n; ++id) {
      if (sp_.IsControl(id) && id != sp_.unk_id()) {
        tok::AddedToken a;
        a.id = id;
        a.content = sp_.IdToPiece(id);
        a.special = true;
        controls_.push_back(std::move(a));
      }
    }
    std::vector<size_t> which;
    std::vector<std::string> patterns;
    for (size_t k = 0; k < controls_.size(); ++k) {
      which.push_back(k);
      patterns.push_back(controls_[k].content);
    }
    matcher_.build(&controls_, std::move(which), std::move(patterns));
    // Llama's tokenizers add BOS; a model without one cannot.
    set_special_tokens(sp_.bos_id(), sp_.eos_id(), sp_.bos_id() >= 0, false);
  }

  TokenizerKind kind() const override { return TokenizerKind::SentencePieceBPE; }
  int32_t vocab_size() const override { return sp_.GetPieceSize(); }

  std::vector<int32_t> encode(std::string_view text, bool parse_special) const override {
    // The library never maps control pieces written in text; with parse_special, split on them
    // first and encode the pieces between (each gets its dummy prefix, as Llama's legacy
    // tokenizers do).
    std::vector<int32_t> out;
    std::vector<tok::AddedTokenMatcher::Match> matches;
    matcher_.find(text, parse_special, matches);
    size_t prev = 0;
    for (const auto& m : matches) {
      if (m.start > prev) encode_plain(text.substr(prev, m.start - prev), out);
      out.push_back(m.id);
      prev = m.end;
    }
    if (text.size() > prev) encode_plain(text.substr(prev), out);
    return out;
  }

  std::string token_to_piece(int32_t id) const override {
    if (id < 0 || id >= vocab_size() || sp_.IsControl(id)) return "";
    const std::string piece = sp_.IdToPiece(id);
    if (sp_.IsByte(id)) {
      const int b = tok::parse_byte_token(piece);
      return b < 0 ? "" : std::string(1, static_cast<char>(b));
    }
    return tok::replace_all(piece, "\u2581", " ");
  }

  std::string decode(const std::vector<int32_t>& ids) const override {
    std::vector<int> valid;
    for (int32_t id : ids) {
      if (id >= 0 && id < vocab_size()) valid.push_back(id);
    }
    std::string out;
    const auto status = sp_.Decode(valid, &out);
    if (!status.ok()) fail("{}: decode failed: {}", path_, status.ToString());
    return out;
  }

  std::string token_text(int32_t id) const override {
    if (id < 0 || id >= vocab_size()) {
      fail("token id {} is out of range (vocabulary {})", id, vocab_size());
    }
    return sp_.IdToPiece(id);
  }

  int32_t token_id(std::string_view text) const override {
    const int id = sp_.PieceToId(text);
    // PieceToId answers unk_id for unknown pieces; only the unk piece itself really is it.
    return (id == sp_.unk_id() && sp_.IdToPiece(id) != text) ? -1 : id;
  }

  void write_gguf(GGUFWriter& w) const override {
    const int n = vocab_size();
    std::vector<std::string> tokens(n);
    std::vector<float> scores(n);
    std::vector<int32_t> types(n);
    for (int id = 0; id < n; ++id) {
      tokens[id] = sp_.IdToPiece(id);
      scores[id] = sp_.GetScore(id);
      // (libsentencepiece 0.1.x cannot tell user-defined pieces from normal ones.)
      types[id] = sp_.IsUnknown(id)   ? 2
                  : sp_.IsControl(id) ? 3
                  : sp_.IsUnused(id)  ? 5
                  : sp_.IsByte(id)    ? 6
                                      : 1;
    }
    w.set("tokenizer.ggml.model", GGUFValue::str("llama"));
    w.set("tokenizer.ggml.tokens", GGUFValue::str_array(std::move(tokens)));
    w.set("tokenizer.ggml.scores", GGUFValue::f32_array(std::move(scores)));
    w.set("tokenizer.ggml.token_type", GGUFValue::i32_array(std::move(types)));
    if (bos_id_ >= 0) w.set("tokenizer.ggml.bos_token_id", GGUFValue::u32(bos_id_));
    if (eos_id_ >= 0) w.set("tokenizer.ggml.eos_token_id", GGUFValue::u32(eos_id_));
    if (sp_.unk_id() >= 0) w.set("tokenizer.ggml.unknown_token_id", GGUFValue::u32(sp_.unk_id()));
    w.set("tokenizer.ggml.add_bos_token", GGUFValue::boolean(add_bos_));
    w.set("tokenizer.ggml.add_eos_token", GGUFValue::boolean(add_eos_));
    w.set("tokenizer.ggml.add_space_prefix", GGUFValue::boolean(true));
  }

 private:
  void encode_plain(std::string_view text, std::vector<int32_t>& out) const {
    std::vector<int> ids;
    const auto status = sp_.Encode(text, &ids);
    if (!status.ok()) fail("{}: encode failed: {}", path_, status.ToString());
    out.insert(out.end(), ids.begin(), ids.end());
  }

  std::string path_;
  sentencepiece::SentencePieceProcessor sp_;
  std::vector<tok::AddedToken> controls_;
  tok::AddedTokenMatcher matcher_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece_model(const std::string& path) {
  return std::make_unique<SentencePieceModelTokenizer>(path);
}

}  // namespace squish
