#include "tokenizer/spm_score.h"

#include <queue>

#include "core/error.h"
#include "core/mapped_file.h"
#include "formats/gguf.h"
#include "tokenizer/text_util.h"

namespace squish::tok {

using json = nlohmann::json;

namespace {

const char* const kSpace = "\u2581";  // SentencePiece's visible space

// The Llama-2 tokenizer.json decoder, which is what llama.cpp's detokenizer amounts to.
Pipeline llama_decoder() {
  HfTokenizer::Spec c;
  canonical_pipeline("llama", "", c);
  return Pipeline::from_json(json(), json(), c.decoder, "built-in decoder");
}

}  // namespace

ScoreSpmTokenizer::ScoreSpmTokenizer(Flavor flavor, std::vector<std::string> pieces,
                                     std::vector<float> scores, std::vector<int32_t> types,
                                     int32_t unk_id, const std::string& what)
    : flavor_(flavor),
      pieces_(std::move(pieces)),
      scores_(std::move(scores)),
      types_(std::move(types)),
      unk_id_(unk_id) {
  const size_t n = pieces_.size();
  if (n == 0) fail("{}: the vocabulary is empty", what);
  if (scores_.empty()) scores_.assign(n, 0.0f);
  if (types_.empty()) types_.assign(n, 1);
  if (scores_.size() != n || types_.size() != n) {
    fail("{}: {} tokens but {} scores and {} token types", what, n, scores_.size(), types_.size());
  }
  if (unk_id_ >= static_cast<int32_t>(n)) unk_id_ = -1;
  ids_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    // Duplicate strings: run.c's binary search finds some one of them; llama.cpp keeps the last.
    if (flavor_ == Flavor::kLlamaCpp) {
      ids_[pieces_[i]] = static_cast<int32_t>(i);
    } else {
      ids_.emplace(pieces_[i], static_cast<int32_t>(i));
    }
  }
  for (int b = 0; b < 256; ++b) {
    int32_t id = -1;
    if (flavor_ == Flavor::kLlama2c) {
      id = b + 3 < static_cast<int>(n) ? b + 3 : unk_id_;  // run.c: "+3 for <unk>, <s>, </s>"
    } else {
      // llama.cpp's byte_to_token: <0xXX>, else the byte as a one-character token.
      if (auto it = ids_.find(fmt::format("<0x{:02X}>", b)); it != ids_.end()) {
        id = it->second;
      } else if (auto it2 = ids_.find(std::string(1, static_cast<char>(b))); it2 != ids_.end()) {
        id = it2->second;
      } else {
        id = unk_id_;
      }
    }
    byte_ids_[b] = id;
  }

  if (flavor_ == Flavor::kLlamaCpp) {
    // llama.cpp matches control and unknown tokens in text when asked, user-defined always.
    std::vector<size_t> which;
    std::vector<std::string> patterns;
    for (size_t i = 0; i < n; ++i) {
      const int32_t t = types_[i];
      if ((t != 2 && t != 3 && t != 4) || pieces_[i].empty()) continue;
      AddedToken a;
      a.id = static_cast<int32_t>(i);
      a.content = pieces_[i];
      a.special = t != 4;
      specials_.push_back(a);
    }
    for (size_t k = 0; k < specials_.size(); ++k) {
      which.push_back(k);
      patterns.push_back(specials_[k].content);
    }
    matcher_.build(&specials_, std::move(which), std::move(patterns));
    decoder_ = llama_decoder();
  }
}

int32_t ScoreSpmTokenizer::token_id(std::string_view text) const {
  auto it = ids_.find(text);
  return it == ids_.end() ? -1 : it->second;
}

std::string ScoreSpmTokenizer::token_text(int32_t id) const {
  if (id < 0 || id >= vocab_size())
    fail("token id {} is out of range (vocabulary {})", id, vocab_size());
  return pieces_[id];
}

// ---------------------------------------------------------------------------------------------
// Encoding

void ScoreSpmTokenizer::merge(const std::string& buf, const std::vector<uint32_t>& starts,
                              std::vector<int32_t>& out) const {
  struct Symbol {
    uint32_t pos, len;
    int32_t prev, next;
    int32_t id;  // token id, or -1 for a code point that is no token (bytes at the end)
  };
  const auto n = static_cast<int32_t>(starts.size());
  std::vector<Symbol> sym(n);
  for (int32_t i = 0; i < n; ++i) {
    const uint32_t end = i + 1 < n ? starts[i + 1] : static_cast<uint32_t>(buf.size());
    sym[i] = {starts[i], end - starts[i], i - 1, i + 1 < n ? i + 1 : -1, -1};
    if (auto it = ids_.find(std::string_view(buf).substr(sym[i].pos, sym[i].len));
        it != ids_.end()) {
      sym[i].id = it->second;
    }
  }

  // Best score first, then leftmost: what both references pick (llama.cpp's bigram heap and
  // run.c's scan with a strict '>').
  struct Bigram {
    float score;
    int32_t left, right;
    uint32_t size;
    int32_t id;
    bool operator<(const Bigram& o) const {
      return score != o.score ? score < o.score : left > o.left;
    }
  };
  std::priority_queue<Bigram> heap;
  const auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const uint32_t size = sym[left].len + sym[right].len;
    auto it = ids_.find(std::string_view(buf).substr(sym[left].pos, size));
    if (it == ids_.end()) return;
    const float score = scores_[it->second];
    if (flavor_ == Flavor::kLlama2c && !(score > -1e10f)) return;  // run.c's starting best
    heap.push({score, left, right, size, it->second});
  };
  for (int32_t i = 1; i < n; ++i) try_add(i - 1, i);
  while (!heap.empty()) {
    const Bigram b = heap.top();
    heap.pop();
    Symbol& l = sym[b.left];
    Symbol& r = sym[b.right];
    // Symbols only grow, so an entry is current exactly when both sides still add up to it.
    if (l.len == 0 || r.len == 0 || l.next != b.right || l.len + r.len != b.size) continue;
    l.len += r.len;
    l.id = b.id;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = b.left;
    try_add(l.prev, b.left);
    try_add(b.left, l.next);
  }
  for (int32_t i = 0; i != -1 && n > 0; i = sym[i].next) {
    const Symbol& s = sym[i];
    if (s.id >= 0) {
      out.push_back(s.id);
      continue;
    }
    for (uint32_t k = 0; k < s.len; ++k) {
      const int32_t id = byte_ids_[static_cast<uint8_t>(buf[s.pos + k])];
      if (id >= 0) out.push_back(id);
    }
  }
}

void ScoreSpmTokenizer::encode_llama2c(std::string_view text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  // run.c works on token ids whose strings it concatenates; lay those strings out in one
  // buffer so every symbol, merged or not, is a range of it.
  std::string buf;
  std::vector<uint32_t> starts;
  buf.reserve(text.size() + 8);
  const auto push_token = [&](int32_t id) {
    starts.push_back(static_cast<uint32_t>(buf.size()));
    buf += pieces_[id];
  };
  if (const int32_t dummy = token_id(" "); dummy >= 0) push_token(dummy);
  for (size_t i = 0; i < text.size();) {
    // A lead byte plus the continuation bytes after it, at most 4 bytes, as run.c reads it.
    size_t len = 1;
    while (i + len < text.size() && (static_cast<uint8_t>(text[i + len]) & 0xC0) == 0x80 &&
           len < 4) {
      ++len;
    }
    if (const int32_t id = token_id(text.substr(i, len)); id >= 0) {
      push_token(id);
    } else {
      for (size_t k = 0; k < len; ++k) {
        const int32_t b = byte_ids_[static_cast<uint8_t>(text[i + k])];
        if (b >= 0) push_token(b);
      }
    }
    i += len;
  }
  // Symbols that are whole tokens from the start: merge() looks each one up again, which for
  // a vocabulary without duplicate strings gives back the same id.
  merge(buf, starts, out);
}

void ScoreSpmTokenizer::encode_fragment(std::string_view text, std::vector<int32_t>& out) const {
  // llama.cpp: " " + text with spaces escaped, then one symbol per (lead-byte-sized) character.
  std::string buf = kSpace + replace_all(text, " ", kSpace);
  std::vector<uint32_t> starts;
  static const uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  for (size_t i = 0; i < buf.size();) {
    starts.push_back(static_cast<uint32_t>(i));
    i += std::min<size_t>(kLen[static_cast<uint8_t>(buf[i]) >> 4], buf.size() - i);
  }
  merge(buf, starts, out);
}

std::vector<int32_t> ScoreSpmTokenizer::encode(std::string_view text, bool parse_special) const {
  std::vector<int32_t> out;
  if (text.empty()) return out;
  if (flavor_ == Flavor::kLlama2c) {
    encode_llama2c(text, out);  // run.c knows no special tokens in text
    return out;
  }
  std::vector<AddedTokenMatcher::Match> matches;
  matcher_.find(text, parse_special, matches);
  size_t prev = 0;
  for (const auto& m : matches) {
    if (m.start > prev) encode_fragment(text.substr(prev, m.start - prev), out);
    out.push_back(m.id);
    prev = m.end;
  }
  if (text.size() > prev) encode_fragment(text.substr(prev), out);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Decoding

std::string ScoreSpmTokenizer::token_to_piece(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return "";
  if (flavor_ == Flavor::kLlamaCpp) return decoder_.piece(pieces_[id]);
  // run.c: "<0xXX>" tokens are raw bytes, everything else its string.
  if (const int b = parse_byte_token(pieces_[id]); b >= 0)
    return std::string(1, static_cast<char>(b));
  return pieces_[id];
}

std::string ScoreSpmTokenizer::decode(const std::vector<int32_t>& ids) const {
  if (flavor_ == Flavor::kLlamaCpp) {
    std::vector<std::string> tokens;
    for (int32_t id : ids) {
      if (id >= 0 && id < vocab_size()) tokens.push_back(pieces_[id]);
    }
    return decoder_.decode(std::move(tokens));
  }
  // run.c strips the leading space of a piece that follows BOS; the first piece of a decode is
  // treated the same, so that decode(encode(x)) == x.
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    std::string piece = token_to_piece(ids[i]);
    if ((i == 0 || ids[i - 1] == bos_id_) && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
    out += piece;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// GGUF

void ScoreSpmTokenizer::write_gguf(GGUFWriter& w) const {
  std::vector<std::string> tokens = pieces_;
  std::vector<int32_t> types = types_;
  if (flavor_ == Flavor::kLlama2c) {
    // Back to SentencePiece's spelling: "▁" for spaces, "<s>"/"</s>" without run.c's newlines.
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string& t = tokens[i];
      if (t.size() > 2 && t.front() == '\n' && t.back() == '\n' && types[i] == 3) {
        t = t.substr(1, t.size() - 2);
      }
      t = replace_all(t, " ", kSpace);
    }
  }
  w.set("tokenizer.ggml.model", GGUFValue::str("llama"));
  w.set("tokenizer.ggml.tokens", GGUFValue::str_array(std::move(tokens)));
  w.set("tokenizer.ggml.scores", GGUFValue::f32_array(scores_));
  w.set("tokenizer.ggml.token_type", GGUFValue::i32_array(std::move(types)));
  if (bos_id_ >= 0) w.set("tokenizer.ggml.bos_token_id", GGUFValue::u32(bos_id_));
  if (eos_id_ >= 0) w.set("tokenizer.ggml.eos_token_id", GGUFValue::u32(eos_id_));
  if (unk_id_ >= 0) w.set("tokenizer.ggml.unknown_token_id", GGUFValue::u32(unk_id_));
  w.set("tokenizer.ggml.add_bos_token", GGUFValue::boolean(add_bos_));
  w.set("tokenizer.ggml.add_eos_token", GGUFValue::boolean(add_eos_));
  w.set("tokenizer.ggml.add_space_prefix", GGUFValue::boolean(true));
}

// ---------------------------------------------------------------------------------------------
// llama2.c tokenizer.bin

}  // namespace squish::tok

namespace squish {

std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& path, int32_t vocab_size) {
  auto file = MappedFile::open(path);
  ByteReader r(file->data(), file->size(), path);
  const auto max_len = r.read<int32_t>();
  if (max_len <= 0 || max_len > (1 << 20)) r.error(fmt::format("bad max_token_length {}", max_len));
  std::vector<std::string> pieces;
  std::vector<float> scores;
  while (vocab_size > 0 ? static_cast<int32_t>(pieces.size()) < vocab_size : r.remaining() > 0) {
    const auto score = r.read<float>();
    const auto len = r.read<int32_t>();
    if (len < 0 || len > max_len) {
      r.error(
          fmt::format("token {} has length {} (max_token_length {})", pieces.size(), len, max_len));
    }
    const uint8_t* p = r.take(static_cast<size_t>(len));
    pieces.emplace_back(reinterpret_cast<const char*>(p), static_cast<size_t>(len));
    scores.push_back(score);
  }
  if (r.remaining() > 0) {
    fail("{}: {} bytes left after {} tokens: the tokenizer does not match the model's vocabulary",
         path, r.remaining(), vocab_size);
  }
  if (pieces.size() < 3) fail("{}: only {} tokens", path, pieces.size());
  // llama2.c's vocabularies come from Llama-2's: <unk>, <s>, </s>, then 256 byte tokens.
  std::vector<int32_t> types(pieces.size(), 1);
  types[0] = 2;
  types[1] = types[2] = 3;
  for (size_t i = 3; i < pieces.size() && i < 3 + 256; ++i) {
    if (tok::parse_byte_token(pieces[i]) == static_cast<int>(i - 3)) types[i] = 6;
  }
  auto t = std::make_unique<tok::ScoreSpmTokenizer>(tok::ScoreSpmTokenizer::Flavor::kLlama2c,
                                                    std::move(pieces), std::move(scores),
                                                    std::move(types), 0, path);
  t->set_special_tokens(1, 2, true, false);
  return t;
}

}  // namespace squish
