#include "tokenizer/hf_tokenizer.h"

#include <algorithm>

#include "core/error.h"
#include "formats/gguf.h"
#include "tokenizer/text_util.h"

namespace squish::tok {

using json = nlohmann::json;

namespace {

constexpr int32_t kMaxTokenId = (1 << 24) - 1;  // far above any real vocabulary

// The reference's helpers for added tokens use Rust regexes: \w and \s with Unicode meaning.
const Regex& word_char_regex() {
  static const Regex re(R"(^\w$)", "built-in regex");
  return re;
}
const Regex& space_char_regex() {
  static const Regex re(R"(^\s$)", "built-in regex");
  return re;
}
bool char_matches(const Regex& re, std::string_view ch) {
  std::vector<std::pair<size_t, size_t>> m;
  re.find_all(ch, m);
  return !m.empty();
}
// Start of the UTF-8 character that ends at `end` (exclusive).
size_t prev_char_start(std::string_view s, size_t end) {
  size_t i = end - 1;
  while (i > 0 && (static_cast<uint8_t>(s[i]) & 0xC0) == 0x80) --i;
  return i;
}
size_t char_len_at(std::string_view s, size_t i) {
  const size_t n = valid_utf8_len(s, i);
  return n == 0 ? 1 : n;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Added tokens

void AddedTokenMatcher::build(const std::vector<AddedToken>* tokens, std::vector<size_t> which,
                              std::vector<std::string> patterns) {
  tokens_ = tokens;
  which_ = std::move(which);
  patterns_ = std::move(patterns);
  by_first_byte_.assign(256, {});
  for (size_t k = 0; k < which_.size(); ++k) {
    if (patterns_[k].empty()) continue;
    by_first_byte_[static_cast<uint8_t>(patterns_[k][0])].push_back(k);
  }
  for (auto& list : by_first_byte_) {
    std::stable_sort(list.begin(), list.end(),
                     [&](size_t a, size_t b) { return patterns_[a].size() > patterns_[b].size(); });
  }
}

void AddedTokenMatcher::find(std::string_view text, bool parse_special,
                             std::vector<Match>& out) const {
  if (which_.empty()) return;
  size_t start_offset = 0;  // end of the previous accepted match
  size_t pos = 0;
  while (pos < text.size()) {
    const auto& list = by_first_byte_[static_cast<uint8_t>(text[pos])];
    size_t hit = SIZE_MAX;
    for (size_t k : list) {
      if (text.compare(pos, patterns_[k].size(), patterns_[k]) == 0) {
        hit = k;  // longest first, so the first hit is the leftmost-longest match
        break;
      }
    }
    if (hit == SIZE_MAX) {
      ++pos;
      continue;
    }
    const AddedToken& tok = (*tokens_)[which_[hit]];
    size_t start = pos, stop = pos + patterns_[hit].size();
    pos = stop;
    // Special tokens written in the text stay text unless asked for (the reference's
    // encode_special_tokens); the automaton has consumed them either way.
    if (tok.special && !parse_special) continue;
    if (tok.single_word) {
      const bool word_before =
          start > 0 &&
          char_matches(word_char_regex(), text.substr(prev_char_start(text, start),
                                                      start - prev_char_start(text, start)));
      const bool word_after =
          stop < text.size() &&
          char_matches(word_char_regex(), text.substr(stop, char_len_at(text, stop)));
      if (word_before || word_after) continue;
    }
    if (tok.lstrip) {
      size_t s = start;
      while (s > start_offset) {
        const size_t p = prev_char_start(text, s);
        if (!char_matches(space_char_regex(), text.substr(p, s - p))) break;
        s = p;
      }
      start = s;
    }
    if (tok.rstrip) {
      while (stop < text.size()) {
        const size_t n = char_len_at(text, stop);
        if (!char_matches(space_char_regex(), text.substr(stop, n))) break;
        stop += n;
      }
      pos = stop;
    }
    out.push_back({start, stop, tok.id});
    start_offset = stop;
  }
}

// ---------------------------------------------------------------------------------------------
// tokenizer.json

namespace {

int32_t checked_id(const json& v, const std::string& token, const std::string& what) {
  if (!v.is_number_integer())
    fail("{}: id of token {} is not an integer", what, json(token).dump());
  const int64_t id = v.get<int64_t>();
  if (id < 0 || id > kMaxTokenId) {
    fail("{}: id {} of token {} is out of range", what, id, json(token).dump());
  }
  return static_cast<int32_t>(id);
}

bool flag(const json& j, const char* key, bool dflt = false) {
  auto it = j.find(key);
  return (it != j.end() && it->is_boolean()) ? it->get<bool>() : dflt;
}

// BOS/EOS the post-processor adds: TemplateProcessing (special tokens before/after $A),
// RobertaProcessing/BertProcessing (cls/sep), Sequence of those; ByteLevel adds nothing.
void parse_post_processor(const json& pp, HfTokenizer::Spec& s, const std::string& what) {
  if (!pp.is_object()) return;
  const std::string type = pp.value("type", "");
  if (type == "Sequence") {
    if (auto it = pp.find("processors"); it != pp.end() && it->is_array()) {
      for (const json& p : *it) parse_post_processor(p, s, what);
    }
  } else if (type == "TemplateProcessing") {
    const json& single = pp.value("single", json::array());
    const json& specials = pp.value("special_tokens", json::object());
    bool seen_sequence = false;
    for (const json& item : single) {
      if (item.contains("Sequence")) {
        seen_sequence = true;
        continue;
      }
      if (!item.contains("SpecialToken")) continue;
      const std::string name = item["SpecialToken"].value("id", "");
      auto it = specials.find(name);
      if (it == specials.end() || !it->contains("ids") || !(*it)["ids"].is_array() ||
          (*it)["ids"].empty()) {
        fail("{}: post_processor refers to special token {} without ids", what, json(name).dump());
      }
      const int32_t id = checked_id((*it)["ids"][0], name, what);
      if (!seen_sequence) {
        if (!s.add_bos) s.bos = id;
        s.add_bos = true;
      } else {
        if (!s.add_eos) s.eos = id;
        s.add_eos = true;
      }
    }
  } else if (type == "RobertaProcessing" || type == "BertProcessing") {
    if (pp.contains("cls") && pp["cls"].is_array() && pp["cls"].size() == 2) {
      s.bos = checked_id(pp["cls"][1], pp["cls"][0].dump(), what);
      s.add_bos = true;
    }
    if (pp.contains("sep") && pp["sep"].is_array() && pp["sep"].size() == 2) {
      s.eos = checked_id(pp["sep"][1], pp["sep"][0].dump(), what);
      s.add_eos = true;
    }
  }
}

}  // namespace

HfTokenizer::Spec HfTokenizer::parse_json(const json& j, const std::string& what) {
  if (!j.is_object()) fail("{}: not a tokenizer.json (top level is not an object)", what);
  auto mit = j.find("model");
  if (mit == j.end() || !mit->is_object()) fail("{}: not a tokenizer.json (no \"model\")", what);
  const json& m = *mit;
  const std::string type = m.value("type", "BPE");
  if (type != "BPE") fail("{}: unsupported tokenizer model type \"{}\" (only BPE)", what, type);
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (auto it = m.find(key);
        it != m.end() && it->is_string() && !it->get<std::string>().empty()) {
      fail("{}: BPE {} is not supported", what, key);
    }
  }

  Spec s;
  auto vit = m.find("vocab");
  if (vit == m.end() || !vit->is_object()) fail("{}: model has no \"vocab\" object", what);
  std::vector<std::pair<int32_t, std::string>> entries;
  entries.reserve(vit->size());
  int32_t max_id = -1;
  for (auto it = vit->begin(); it != vit->end(); ++it) {
    const int32_t id = checked_id(it.value(), it.key(), what);
    if (it.key().empty()) fail("{}: the vocabulary has an empty token (id {})", what, id);
    entries.emplace_back(id, it.key());
    max_id = std::max(max_id, id);
  }

  if (auto ait = j.find("added_tokens"); ait != j.end() && !ait->is_null()) {
    if (!ait->is_array()) fail("{}: \"added_tokens\" is not an array", what);
    for (const json& a : *ait) {
      if (!a.is_object() || !a.contains("content") || !a["content"].is_string() ||
          !a.contains("id")) {
        fail("{}: an added_tokens entry lacks \"id\" or \"content\"", what);
      }
      AddedToken t;
      t.content = a["content"].get<std::string>();
      t.id = checked_id(a["id"], t.content, what);
      if (t.content.empty()) fail("{}: added token {} is empty", what, t.id);
      t.special = flag(a, "special");
      t.normalized = flag(a, "normalized", !t.special);
      t.lstrip = flag(a, "lstrip");
      t.rstrip = flag(a, "rstrip");
      t.single_word = flag(a, "single_word");
      max_id = std::max(max_id, t.id);
      s.added.push_back(std::move(t));
    }
  }

  s.tokens.assign(static_cast<size_t>(max_id + 1), std::string());
  for (auto& [id, text] : entries) {
    if (!s.tokens[id].empty()) {
      fail("{}: id {} is used by two tokens, {} and {}", what, id, json(s.tokens[id]).dump(),
           json(text).dump());
    }
    s.tokens[id] = std::move(text);
  }

  if (auto it = m.find("merges"); it != m.end() && !it->is_null()) {
    if (!it->is_array()) fail("{}: model \"merges\" is not an array", what);
    s.merges.reserve(it->size());
    for (const json& e : *it) {
      if (e.is_string()) {
        // "a b": exactly one space, as the reference requires.
        const std::string line = e.get<std::string>();
        const size_t sp = line.find(' ');
        if (sp == std::string::npos || line.find(' ', sp + 1) != std::string::npos) {
          fail("{}: merge {} is not two tokens separated by one space", what, json(line).dump());
        }
        s.merges.emplace_back(line.substr(0, sp), line.substr(sp + 1));
      } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
        s.merges.emplace_back(e[0].get<std::string>(), e[1].get<std::string>());
      } else {
        fail("{}: merge {} is neither \"a b\" nor [\"a\", \"b\"]", what, e.dump());
      }
    }
  }

  if (auto it = m.find("unk_token"); it != m.end() && it->is_string()) {
    s.unk_token = it->get<std::string>();
  }
  s.byte_fallback = flag(m, "byte_fallback");
  s.fuse_unk = flag(m, "fuse_unk");
  s.ignore_merges = flag(m, "ignore_merges");
  s.normalizer = j.value("normalizer", json());
  s.pre_tokenizer = j.value("pre_tokenizer", json());
  s.decoder = j.value("decoder", json());
  parse_post_processor(j.value("post_processor", json()), s, what);
  return s;
}

// ---------------------------------------------------------------------------------------------
// Construction

HfTokenizer::HfTokenizer(Spec spec, const std::string& what) : spec_(std::move(spec)) {
  pipeline_ = Pipeline::from_json(spec_.normalizer, spec_.pre_tokenizer, spec_.decoder, what);
  kind_ = pipeline_.byte_level() ? TokenizerKind::ByteLevelBPE : TokenizerKind::SentencePieceBPE;

  size_t n = spec_.tokens.size();
  for (const AddedToken& a : spec_.added) n = std::max(n, static_cast<size_t>(a.id) + 1);
  std::vector<std::string> vocab = spec_.tokens;
  vocab.resize(n);
  model_.set_vocab(vocab, what);
  if (!spec_.unk_token.empty()) {
    model_.unk_id = model_.find(spec_.unk_token);
    if (model_.unk_id < 0) {
      fail("{}: unk_token {} is not in the vocabulary", what, json(spec_.unk_token).dump());
    }
  }
  model_.byte_fallback = spec_.byte_fallback;
  model_.fuse_unk = spec_.fuse_unk;
  model_.ignore_merges = spec_.ignore_merges;
  for (const auto& [a, b] : spec_.merges) model_.add_merge(a, b, what);

  text_ = std::move(vocab);
  added_kind_.assign(n, 0);
  added_ = spec_.added;
  std::vector<size_t> raw, norm;
  std::vector<std::string> raw_pat, norm_pat;
  for (size_t i = 0; i < added_.size(); ++i) {
    const AddedToken& a = added_[i];
    text_[a.id] = a.content;
    added_kind_[a.id] = a.special ? 1 : 2;
    if (a.normalized) {
      norm.push_back(i);
      norm_pat.push_back(pipeline_.normalize(a.content));  // matched in normalized text
    } else {
      raw.push_back(i);
      raw_pat.push_back(a.content);
    }
  }
  raw_matcher_.build(&added_, std::move(raw), std::move(raw_pat));
  normalized_matcher_.build(&added_, std::move(norm), std::move(norm_pat));

  const auto valid = [&](int32_t id) { return id >= 0 && static_cast<size_t>(id) < n ? id : -1; };
  bos_id_ = valid(spec_.bos);
  eos_id_ = valid(spec_.eos);
  // Without a post-processor or config naming them, guess from the usual spellings.
  const auto first_of = [&](std::initializer_list<const char*> names) {
    for (const char* name : names) {
      if (int32_t id = token_id(name); id >= 0) return id;
    }
    return -1;
  };
  if (bos_id_ < 0) bos_id_ = first_of({"<s>", "<|begin_of_text|>", "<|endoftext|>"});
  if (eos_id_ < 0) eos_id_ = first_of({"</s>", "<|end_of_text|>", "<|endoftext|>", "<|im_end|>"});
  add_bos_ = spec_.add_bos && bos_id_ >= 0;
  add_eos_ = spec_.add_eos && eos_id_ >= 0;
}

int32_t HfTokenizer::token_id(std::string_view text) const {
  for (const AddedToken& a : added_) {
    if (a.content == text) return a.id;
  }
  return model_.find(text);
}

std::string HfTokenizer::token_text(int32_t id) const {
  if (id < 0 || id >= vocab_size())
    fail("token id {} is out of range (vocabulary {})", id, vocab_size());
  return text_[id];
}

// ---------------------------------------------------------------------------------------------
// Encoding

std::vector<int32_t> HfTokenizer::encode(std::string_view text, bool parse_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  const ByteLevelTable& bl = byte_level_table();
  size_t run = 0;  // start of the current valid UTF-8 run
  size_t i = 0;
  while (i < text.size()) {
    if (static_cast<uint8_t>(text[i]) < 0x80) {
      ++i;
      continue;
    }
    const size_t n = valid_utf8_len(text, i);
    if (n > 0) {
      i += n;
      continue;
    }
    // A stray byte: encode the text before it, then the byte on its own.
    if (i > run) encode_valid(text.substr(run, i - run), run == 0, parse_special, out);
    const auto b = static_cast<uint8_t>(text[i]);
    const int32_t id = kind_ == TokenizerKind::ByteLevelBPE ? model_.find(bl.byte_to_utf8[b])
                       : model_.byte_token(b) >= 0          ? model_.byte_token(b)
                                                            : model_.unk_id;
    if (id >= 0) out.push_back(id);
    run = ++i;
  }
  if (text.size() > run) encode_valid(text.substr(run), run == 0, parse_special, out);
  return out;
}

void HfTokenizer::encode_valid(std::string_view text, bool at_start, bool parse_special,
                               std::vector<int32_t>& out) const {
  // 1. Added tokens matched on the raw text; 2. the rest normalized, then searched for the
  // normalized added tokens; 3. what remains is pre-tokenized into words for the model.
  std::vector<AddedTokenMatcher::Match> matches;
  raw_matcher_.find(text, parse_special, matches);
  size_t prev = 0;
  for (const auto& m : matches) {
    if (m.start > prev) {
      encode_segment(text.substr(prev, m.start - prev), at_start && prev == 0, parse_special, out);
    }
    out.push_back(m.id);
    prev = m.end;
  }
  if (text.size() > prev)
    encode_segment(text.substr(prev), at_start && prev == 0, parse_special, out);
}

void HfTokenizer::encode_segment(std::string_view text, bool at_start, bool parse_special,
                                 std::vector<int32_t>& out) const {
  const std::string normalized = pipeline_.normalize(std::string(text));
  std::vector<AddedTokenMatcher::Match> matches;
  normalized_matcher_.find(normalized, parse_special, matches);
  std::vector<Piece> words;
  size_t prev = 0;
  const auto flush = [&](size_t end) {
    if (end <= prev) return;
    words.clear();
    pipeline_.pre_tokenize(normalized.substr(prev, end - prev), at_start && prev == 0, words);
    for (const Piece& w : words) encode_word_cached(w.text, out);
  };
  for (const auto& m : matches) {
    flush(m.start);
    out.push_back(m.id);
    prev = m.end;
  }
  flush(normalized.size());
}

void HfTokenizer::encode_word_cached(const std::string& word, std::vector<int32_t>& out) const {
  if (word.size() > kMaxCachedWord) {
    model_.encode_word(word, out);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (auto it = cache_.find(word); it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t mark = out.size();
  model_.encode_word(word, out);
  std::lock_guard<std::mutex> lock(cache_mutex_);
  if (cache_.size() > 200000) cache_.clear();  // bound memory on endless distinct input
  cache_.emplace(word, std::vector<int32_t>(out.begin() + mark, out.end()));
}

// ---------------------------------------------------------------------------------------------
// Decoding

std::string HfTokenizer::token_to_piece(int32_t id) const {
  if (id < 0 || id >= vocab_size() || text_[id].empty()) return "";
  return pipeline_.piece(text_[id]);
}

std::string HfTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    // The reference skips ids it has no token for.
    if (id >= 0 && id < vocab_size() && !text_[id].empty()) tokens.push_back(text_[id]);
  }
  return pipeline_.decode(std::move(tokens));
}

// ---------------------------------------------------------------------------------------------
// GGUF

void canonical_pipeline(const std::string& model, const std::string& pre, HfTokenizer::Spec& s) {
  const json byte_level_decoder = {{"type", "ByteLevel"},
                                   {"add_prefix_space", true},
                                   {"trim_offsets", true},
                                   {"use_regex", true}};
  const auto split_then_bytes = [](const char* regex) {
    return json{{"type", "Sequence"},
                {"pretokenizers",
                 {{{"type", "Split"},
                   {"pattern", {{"Regex", regex}}},
                   {"behavior", "Isolated"},
                   {"invert", false}},
                  {{"type", "ByteLevel"},
                   {"add_prefix_space", false},
                   {"trim_offsets", true},
                   {"use_regex", false}}}}};
  };
  s.fuse_unk = false;
  s.ignore_merges = false;
  s.normalizer = json();
  if (model == "llama") {
    s.normalizer = {
        {"type", "Sequence"},
        {"normalizers",
         {{{"type", "Prepend"}, {"prepend", "\u2581"}},
          {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\u2581"}}}}};
    s.pre_tokenizer = json();
    s.decoder = {{"type", "Sequence"},
                 {"decoders",
                  {{{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}},
                   {{"type", "ByteFallback"}},
                   {{"type", "Fuse"}},
                   {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};
    s.fuse_unk = true;
    return;
  }
  s.decoder = byte_level_decoder;
  if (pre == "llama-bpe" || pre == "llama3") {
    s.pre_tokenizer = split_then_bytes(kLlama3Regex);
    s.ignore_merges = true;  // llama.cpp sets it for this pre-tokenizer too
  } else if (pre == "qwen2") {
    s.normalizer = {{"type", "NFC"}};
    s.pre_tokenizer = split_then_bytes(kQwen2Regex);
  } else {  // "gpt-2", "default" and names squish does not know
    s.pre_tokenizer = {{"type", "ByteLevel"},
                       {"add_prefix_space", false},
                       {"trim_offsets", true},
                       {"use_regex", true}};
  }
}

json HfTokenizer::pipeline_json() const {
  return {{"normalizer", spec_.normalizer}, {"pre_tokenizer", spec_.pre_tokenizer},
          {"decoder", spec_.decoder},       {"ignore_merges", spec_.ignore_merges},
          {"fuse_unk", spec_.fuse_unk},     {"byte_fallback", spec_.byte_fallback}};
}

std::pair<std::string, bool> HfTokenizer::gguf_pre() const {
  const auto same_as = [&](const std::string& model, const std::string& pre) {
    Spec c;
    canonical_pipeline(model, pre, c);
    const Pipeline p = Pipeline::from_json(c.normalizer, c.pre_tokenizer, c.decoder, "canonical");
    const bool byte_fallback = model == "llama" ? spec_.byte_fallback : false;
    return p.signature() == pipeline_.signature() && c.ignore_merges == spec_.ignore_merges &&
           c.fuse_unk == spec_.fuse_unk && byte_fallback == spec_.byte_fallback;
  };
  if (kind_ == TokenizerKind::SentencePieceBPE) return {"", same_as("llama", "")};
  for (const char* pre : {"gpt-2", "llama-bpe", "qwen2"}) {
    if (same_as("gpt2", pre)) return {pre, true};
  }
  // Not exactly one of llama.cpp's: name the closest by its regex.
  const std::string re = pipeline_.split_regex();
  if (re == kLlama3Regex) return {"llama-bpe", false};
  if (re == kQwen2Regex) return {"qwen2", false};
  if (re == kGpt2Regex) return {"gpt-2", false};
  return {"default", false};
}

void HfTokenizer::write_gguf(GGUFWriter& w) const {
  const bool spm = kind_ == TokenizerKind::SentencePieceBPE;
  const int32_t n = vocab_size();
  std::vector<std::string> tokens(n);
  std::vector<int32_t> types(n);
  std::vector<float> scores;
  if (spm) scores.assign(n, 0.0f);
  for (int32_t id = 0; id < n; ++id) {
    const std::string& t = text_[id];
    if (t.empty()) {
      tokens[id] = fmt::format("[PAD{}]", id);  // as llama.cpp's converter fills holes
      types[id] = 5;                            // unused
      continue;
    }
    tokens[id] = t;
    if (id == model_.unk_id) {
      types[id] = 2;
    } else if (added_kind_[id] == 1) {
      types[id] = 3;  // control
    } else if (added_kind_[id] == 2) {
      types[id] = 4;  // user-defined
    } else if (spm && parse_byte_token(t) >= 0 && model_.byte_token(parse_byte_token(t)) == id) {
      types[id] = 6;  // byte
    } else {
      types[id] = 1;
    }
    // llama.cpp's SentencePiece tokenizer merges by score: order tokens by the rank of the merge
    // that makes them, so it follows the merges as closely as scores can.
    if (spm) {
      const int32_t rank = model_.producing_rank(id);
      scores[id] = rank < 0 ? 0.0f : -static_cast<float>(rank + 1);
    }
  }
  std::vector<std::string> merges;
  merges.reserve(model_.merges().size());
  for (const auto& [a, b] : model_.merges()) {
    const std::string& ta = model_.token(a);
    const std::string& tb = model_.token(b);
    if (ta.find(' ') != std::string::npos || tb.find(' ') != std::string::npos) {
      fail("GGUF export: merge {} {} has a token with a space, which GGUF cannot hold",
           json(ta).dump(), json(tb).dump());
    }
    merges.push_back(ta + " " + tb);
  }

  const auto [pre, exact] = gguf_pre();
  w.set("tokenizer.ggml.model", GGUFValue::str(spm ? "llama" : "gpt2"));
  if (!spm) w.set("tokenizer.ggml.pre", GGUFValue::str(pre));
  w.set("tokenizer.ggml.tokens", GGUFValue::str_array(std::move(tokens)));
  if (spm) w.set("tokenizer.ggml.scores", GGUFValue::f32_array(std::move(scores)));
  w.set("tokenizer.ggml.token_type", GGUFValue::i32_array(std::move(types)));
  w.set("tokenizer.ggml.merges", GGUFValue::str_array(std::move(merges)));
  if (bos_id_ >= 0) w.set("tokenizer.ggml.bos_token_id", GGUFValue::u32(bos_id_));
  if (eos_id_ >= 0) w.set("tokenizer.ggml.eos_token_id", GGUFValue::u32(eos_id_));
  if (model_.unk_id >= 0) w.set("tokenizer.ggml.unknown_token_id", GGUFValue::u32(model_.unk_id));
  w.set("tokenizer.ggml.add_bos_token", GGUFValue::boolean(add_bos_));
  w.set("tokenizer.ggml.add_eos_token", GGUFValue::boolean(add_eos_));
  if (spm) w.set("tokenizer.ggml.add_space_prefix", GGUFValue::boolean(true));
  // llama.cpp ignores keys it does not know; squish reads this one back to rebuild a pipeline
  // that no "pre" name describes.
  if (!exact) w.set(kPipelineKey, GGUFValue::str(pipeline_json().dump()));
}

}  // namespace squish::tok
