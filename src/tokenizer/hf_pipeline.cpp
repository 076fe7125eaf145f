#include "tokenizer/hf_pipeline.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <nlohmann/json.hpp>

#include <unicode/normalizer2.h>
#include <unicode/unistr.h>

#include <algorithm>
#include <cctype>

#include "core/error.h"
#include "core/text.h"
#include "tokenizer/text_util.h"

namespace squish::tok {

using json = nlohmann::json;

const char* const kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char* const kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// ---------------------------------------------------------------------------------------------
// Regex

Regex::Regex(const std::string& pattern, const std::string& what) : pattern_(pattern) {
  int err = 0;
  PCRE2_SIZE err_offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP, &err, &err_offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof(msg));
    fail("{}: cannot compile regex {} at offset {}: {}", what, json(pattern).dump(), err_offset,
         reinterpret_cast<const char*>(msg));
  }
  // JIT makes the pre-tokenizer several times faster; without it PCRE2 interprets (same result).
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  code_ = code;
}

Regex::~Regex() {
  pcre2_code_free(static_cast<pcre2_code*>(code_));
}

void Regex::find_all(std::string_view subject, std::vector<std::pair<size_t, size_t>>& out) const {
  auto* code = static_cast<pcre2_code*>(code_);
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
  const auto* s = reinterpret_cast<PCRE2_SPTR>(subject.data());
  size_t from = 0;
  while (from <= subject.size()) {
    int rc = pcre2_match(code, s, subject.size(), from, PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      // The JIT's small stack can run out on huge runs; the interpreter keeps its backtracking
      // state on the heap.
      rc = pcre2_match(code, s, subject.size(), from, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md,
                       nullptr);
    }
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      pcre2_match_data_free(md);
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof(msg));
      // Going on would silently tokenize differently from the reference.
      fail("regex {} failed on a {}-byte text: {}", json(pattern_).dump(), subject.size(),
           reinterpret_cast<const char*>(msg));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t start = ov[0], end = ov[1];
    out.emplace_back(start, end);
    if (end > start) {
      from = end;
    } else {  // empty match: step over one character, as the reference's find_iter does
      if (end >= subject.size()) break;
      const size_t n = valid_utf8_len(subject, end);
      from = end + (n == 0 ? 1 : n);
    }
  }
  pcre2_match_data_free(md);
}

namespace {

// Unicode NFC through ICU, as the reference's NFC normalizer does. Text that is already NFC
// (nearly all) is returned untouched after ICU's check; invalid UTF-8 is left alone so the
// byte-level fallback still sees the original bytes.
std::string nfc_normalize(std::string text) {
  if (find_invalid_utf8(text) != std::string_view::npos) return text;
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(status);
  if (U_FAILURE(status)) return text;
  const icu::UnicodeString u = icu::UnicodeString::fromUTF8(text);
  if (nfc->isNormalized(u, status) && U_SUCCESS(status)) return text;
  status = U_ZERO_ERROR;
  const icu::UnicodeString n = nfc->normalize(u, status);
  if (U_FAILURE(status)) return text;
  std::string out;
  n.toUTF8String(out);
  return out;
}

std::string escape_regex(std::string_view s) {
  std::string out;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x80 && !std::isalnum(u)) out += '\\';
    out += c;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// JSON helpers

const json& member(const json& j, const char* key, const std::string& what) {
  auto it = j.find(key);
  if (it == j.end()) fail("{}: {} step has no \"{}\"", what, j.value("type", "?"), key);
  return *it;
}

std::string get_string(const json& j, const char* key, const std::string& what) {
  const json& v = member(j, key, what);
  if (!v.is_string())
    fail("{}: \"{}\" of a {} step is not a string", what, key, j.value("type", "?"));
  return v.get<std::string>();
}

bool get_bool(const json& j, const char* key, bool dflt) {
  auto it = j.find(key);
  return (it != j.end() && it->is_boolean()) ? it->get<bool>() : dflt;
}

// {"String": s} or {"Regex": r}. Returns the regex (strings escaped) and sets *literal.
std::string pattern_of(const json& j, const std::string& what, std::string* literal) {
  const json& p = member(j, "pattern", what);
  if (p.is_object() && p.contains("String") && p["String"].is_string()) {
    *literal = p["String"].get<std::string>();
    if (literal->empty()) fail("{}: empty String pattern in a {} step", what, j.value("type", "?"));
    return escape_regex(*literal);
  }
  if (p.is_object() && p.contains("Regex") && p["Regex"].is_string()) {
    literal->clear();
    return p["Regex"].get<std::string>();
  }
  fail("{}: pattern of a {} step is neither {{\"String\": ...}} nor {{\"Regex\": ...}}", what,
       j.value("type", "?"));
}

// Flattens {"type": "Sequence", <list_key>: [...]} (nested too) into single steps.
void flatten(const json& j, const char* list_key, const std::string& what,
             std::vector<const json*>& out) {
  if (j.is_null()) return;
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    fail("{}: a {} entry is not an object with a \"type\"", what, list_key);
  }
  if (j["type"] == "Sequence") {
    const json& list = member(j, list_key, what);
    if (!list.is_array()) fail("{}: \"{}\" is not an array", what, list_key);
    for (const json& e : list) flatten(e, list_key, what, out);
  } else {
    out.push_back(&j);
  }
}

SplitBehavior parse_behavior(const std::string& s, const std::string& what) {
  if (s == "Removed") return SplitBehavior::kRemoved;
  if (s == "Isolated") return SplitBehavior::kIsolated;
  if (s == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (s == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (s == "Contiguous") return SplitBehavior::kContiguous;
  fail("{}: unknown Split behavior \"{}\"", what, s);
}

const char* behavior_name(SplitBehavior b) {
  switch (b) {
    case SplitBehavior::kRemoved:
      return "Removed";
    case SplitBehavior::kIsolated:
      return "Isolated";
    case SplitBehavior::kMergedWithPrevious:
      return "MergedWithPrevious";
    case SplitBehavior::kMergedWithNext:
      return "MergedWithNext";
    case SplitBehavior::kContiguous:
      return "Contiguous";
  }
  return "?";
}

// Old files spell Metaspace's prepend_scheme as add_prefix_space.
std::string metaspace_scheme(const json& j) {
  if (auto it = j.find("prepend_scheme"); it != j.end() && it->is_string()) {
    return it->get<std::string>();
  }
  return get_bool(j, "add_prefix_space", true) ? "always" : "never";
}

PreTokenizerStep split_step(const std::string& regex, SplitBehavior behavior, bool invert,
                            const std::string& what) {
  PreTokenizerStep s(PreTokenizerStep::kSplit);
  s.regex = std::make_shared<Regex>(regex, what);
  s.behavior = behavior;
  s.invert = invert;
  return s;
}

// The reference's NormalizedString::split: classify the pieces between and at matches, then
// group them by behavior. Returns kept [start, end) ranges; empty ones are dropped later.
std::vector<std::pair<size_t, size_t>> split_ranges(std::string_view text, const Regex& re,
                                                    SplitBehavior behavior, bool invert) {
  std::vector<std::pair<size_t, size_t>> matches;
  re.find_all(text, matches);
  struct Part {
    size_t start, end;
    bool is_match;
  };
  std::vector<Part> parts;
  size_t prev = 0;
  for (auto [s, e] : matches) {
    if (prev != s) parts.push_back({prev, s, false});
    parts.push_back({s, e, true});
    prev = e;
  }
  if (prev != text.size()) parts.push_back({prev, text.size(), false});
  if (invert) {
    for (Part& p : parts) p.is_match = !p.is_match;
  }
  std::vector<std::pair<size_t, size_t>> out;
  switch (behavior) {
    case SplitBehavior::kRemoved:
      for (const Part& p : parts) {
        if (!p.is_match) out.emplace_back(p.start, p.end);
      }
      break;
    case SplitBehavior::kIsolated:
      for (const Part& p : parts) out.emplace_back(p.start, p.end);
      break;
    case SplitBehavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (const Part& p : parts) {
        if (p.is_match && !previous_match && !out.empty()) {
          out.back().second = p.end;
        } else {
          out.emplace_back(p.start, p.end);
        }
        previous_match = p.is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool next_match = false;  // walking backwards: whether the part after this one matched
      for (size_t k = parts.size(); k-- > 0;) {
        const Part& p = parts[k];
        if (p.is_match && !next_match && !out.empty()) {
          out.back().first = p.start;
        } else {
          out.emplace_back(p.start, p.end);
        }
        next_match = p.is_match;
      }
      std::reverse(out.begin(), out.end());
      break;
    }
    case SplitBehavior::kContiguous: {
      bool previous_match = false;
      for (size_t k = 0; k < parts.size(); ++k) {
        const Part& p = parts[k];
        if (k > 0 && p.is_match == previous_match) {
          out.back().second = p.end;
        } else {
          out.emplace_back(p.start, p.end);
        }
        previous_match = p.is_match;
      }
      break;
    }
  }
  return out;
}

void split_piece(const Piece& piece, const Regex& re, SplitBehavior behavior, bool invert,
                 std::vector<Piece>& out) {
  for (auto [s, e] : split_ranges(piece.text, re, behavior, invert)) {
    if (e > s) out.push_back({piece.text.substr(s, e - s), piece.at_start && s == 0});
  }
}

const Regex& gpt2_regex() {
  static const Regex re(kGpt2Regex, "built-in GPT-2 regex");
  return re;
}

// Byte-level decoding of one token: each character back to its byte, or the token's own bytes
// when a character is not in the table (added tokens such as "<|endoftext|>" are plain ASCII).
void byte_level_decode(const std::string& token, std::string& out) {
  const ByteLevelTable& t = byte_level_table();
  const size_t mark = out.size();
  for (size_t i = 0; i < token.size();) {
    const size_t n = valid_utf8_len(token, i);
    const int b = n == 0 ? -1 : t.byte_of(decode_utf8(token, i, n));
    if (b < 0) {
      out.resize(mark);
      out += token;
      return;
    }
    out += static_cast<char>(b);
    i += n;
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Construction

Pipeline Pipeline::from_json(const json& normalizer, const json& pre_tokenizer, const json& decoder,
                             const std::string& what) {
  Pipeline p;
  std::vector<const json*> steps;
  flatten(normalizer, "normalizers", what, steps);
  for (const json* j : steps) {
    const std::string type = (*j)["type"].get<std::string>();
    if (type == "Prepend") {
      NormalizerStep s(NormalizerStep::kPrepend);
      s.a = get_string(*j, "prepend", what);
      p.normalizer_.push_back(std::move(s));
    } else if (type == "Replace") {
      NormalizerStep s(NormalizerStep::kReplace);
      const std::string re = pattern_of(*j, what, &s.a);
      if (s.a.empty()) s.regex = std::make_shared<Regex>(re, what);
      s.b = get_string(*j, "content", what);
      p.normalizer_.push_back(std::move(s));
    } else if (type == "NFC") {
      // Text is taken as already NFC (nearly all text is); see tokenizer.h.
      p.normalizer_.emplace_back(NormalizerStep::kNfc);
    } else {
      fail("{}: unsupported normalizer type \"{}\"", what, type);
    }
  }

  steps.clear();
  flatten(pre_tokenizer, "pretokenizers", what, steps);
  for (const json* j : steps) {
    const std::string type = (*j)["type"].get<std::string>();
    if (type == "ByteLevel") {
      PreTokenizerStep s(PreTokenizerStep::kByteLevel);
      s.add_prefix_space = get_bool(*j, "add_prefix_space", true);
      s.use_regex = get_bool(*j, "use_regex", true);
      p.pre_.push_back(std::move(s));
    } else if (type == "Split") {
      std::string literal;
      const std::string re = pattern_of(*j, what, &literal);
      p.pre_.push_back(split_step(re, parse_behavior(get_string(*j, "behavior", what), what),
                                  get_bool(*j, "invert", false), what));
    } else if (type == "Metaspace") {
      PreTokenizerStep s(PreTokenizerStep::kMetaspace);
      s.replacement = get_string(*j, "replacement", what);
      s.prepend_scheme = metaspace_scheme(*j);
      if (s.prepend_scheme != "always" && s.prepend_scheme != "first" &&
          s.prepend_scheme != "never") {
        fail("{}: unknown Metaspace prepend_scheme \"{}\"", what, s.prepend_scheme);
      }
      s.split = get_bool(*j, "split", true);
      p.pre_.push_back(std::move(s));
    } else if (type == "Digits") {
      // Isolated digits, or runs of digits (the reference's Contiguous on single digits).
      p.pre_.push_back(
          split_step(get_bool(*j, "individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)",
                     SplitBehavior::kIsolated, false, what));
    } else if (type == "Whitespace") {
      p.pre_.push_back(split_step(R"(\w+|[^\w\s]+)", SplitBehavior::kRemoved, true, what));
    } else if (type == "WhitespaceSplit") {
      p.pre_.push_back(split_step(R"(\s+)", SplitBehavior::kRemoved, false, what));
    } else {
      fail("{}: unsupported pre_tokenizer type \"{}\"", what, type);
    }
  }

  steps.clear();
  flatten(decoder, "decoders", what, steps);
  p.has_decoder_ = !decoder.is_null();
  for (const json* j : steps) {
    const std::string type = (*j)["type"].get<std::string>();
    if (type == "ByteLevel") {
      p.decoder_.emplace_back(DecoderStep::kByteLevel);
    } else if (type == "Replace") {
      DecoderStep s(DecoderStep::kReplace);
      pattern_of(*j, what, &s.a);
      if (s.a.empty()) fail("{}: Replace decoder with a Regex pattern is not supported", what);
      s.b = get_string(*j, "content", what);
      p.decoder_.push_back(std::move(s));
    } else if (type == "ByteFallback") {
      p.decoder_.emplace_back(DecoderStep::kByteFallback);
    } else if (type == "Fuse") {
      p.decoder_.emplace_back(DecoderStep::kFuse);
    } else if (type == "Strip") {
      DecoderStep s(DecoderStep::kStrip);
      s.a = get_string(*j, "content", what);
      s.start = j->value("start", 0);
      s.stop = j->value("stop", 0);
      p.decoder_.push_back(std::move(s));
    } else if (type == "Metaspace") {
      DecoderStep s(DecoderStep::kMetaspace);
      s.a = get_string(*j, "replacement", what);
      s.prepend = metaspace_scheme(*j) != "never";
      p.decoder_.push_back(std::move(s));
    } else {
      fail("{}: unsupported decoder type \"{}\"", what, type);
    }
  }
  return p;
}

bool Pipeline::byte_level() const {
  for (const PreTokenizerStep& s : pre_) {
    if (s.kind == PreTokenizerStep::kByteLevel) return true;
  }
  return false;
}

std::string Pipeline::split_regex() const {
  for (const PreTokenizerStep& s : pre_) {
    if (s.kind == PreTokenizerStep::kSplit) return s.regex->pattern();
    if (s.kind == PreTokenizerStep::kByteLevel && s.use_regex) return kGpt2Regex;
  }
  return "";
}

// ---------------------------------------------------------------------------------------------
// Running

std::string Pipeline::normalize(std::string text) const {
  for (const NormalizerStep& s : normalizer_) {
    switch (s.kind) {
      case NormalizerStep::kPrepend:
        if (!text.empty()) text = s.a + text;
        break;
      case NormalizerStep::kReplace:
        if (!s.regex) {
          text = replace_all(text, s.a, s.b);
        } else {
          std::vector<std::pair<size_t, size_t>> m;
          s.regex->find_all(text, m);
          std::string out;
          size_t prev = 0;
          for (auto [a, b] : m) {
            out.append(text, prev, a - prev);
            out += s.b;
            prev = b;
          }
          out.append(text, prev);
          text = std::move(out);
        }
        break;
      case NormalizerStep::kNfc:
        text = nfc_normalize(std::move(text));
        break;
    }
  }
  return text;
}

void Pipeline::pre_tokenize(std::string text, bool at_start, std::vector<Piece>& out) const {
  std::vector<Piece> cur, next;
  cur.push_back({std::move(text), at_start});
  const ByteLevelTable& bl = byte_level_table();
  for (const PreTokenizerStep& s : pre_) {
    next.clear();
    for (Piece& piece : cur) {
      switch (s.kind) {
        case PreTokenizerStep::kByteLevel: {
          if (s.add_prefix_space && piece.text.rfind(' ', 0) != 0) piece.text.insert(0, 1, ' ');
          std::vector<Piece> words;
          if (s.use_regex) {
            split_piece(piece, gpt2_regex(), SplitBehavior::kIsolated, false, words);
          } else {
            words.push_back(std::move(piece));
          }
          for (Piece& w : words) {
            std::string mapped;
            mapped.reserve(w.text.size() * 2);
            for (char c : w.text) mapped += bl.byte_to_utf8[static_cast<uint8_t>(c)];
            next.push_back({std::move(mapped), w.at_start});
          }
          break;
        }
        case PreTokenizerStep::kSplit:
          split_piece(piece, *s.regex, s.behavior, s.invert, next);
          break;
        case PreTokenizerStep::kMetaspace: {
          std::string t = replace_all(piece.text, " ", s.replacement);
          const bool prepend =
              s.prepend_scheme == "always" || (s.prepend_scheme == "first" && piece.at_start);
          if (prepend && t.rfind(s.replacement, 0) != 0) t.insert(0, s.replacement);
          if (!s.split) {
            next.push_back({std::move(t), piece.at_start});
            break;
          }
          // Split on the replacement, each one starting the next word (MergedWithNext).
          size_t begin = 0;
          for (size_t pos = t.find(s.replacement, 1); pos != std::string::npos;
               pos = t.find(s.replacement, pos + s.replacement.size())) {
            next.push_back({t.substr(begin, pos - begin), piece.at_start && begin == 0});
            begin = pos;
          }
          next.push_back({t.substr(begin), piece.at_start && begin == 0});
          break;
        }
      }
    }
    std::swap(cur, next);
  }
  for (Piece& p : cur) {
    if (!p.text.empty()) out.push_back(std::move(p));
  }
}

std::string Pipeline::decode(std::vector<std::string> tokens) const {
  if (!has_decoder_) {
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i > 0) out += ' ';
      out += tokens[i];
    }
    return out;
  }
  for (const DecoderStep& s : decoder_) {
    switch (s.kind) {
      case DecoderStep::kByteLevel: {
        std::string bytes;
        for (const std::string& t : tokens) byte_level_decode(t, bytes);
        tokens.assign(1, utf8_lossy(bytes));
        break;
      }
      case DecoderStep::kReplace:
        for (std::string& t : tokens) t = replace_all(t, s.a, s.b);
        break;
      case DecoderStep::kByteFallback: {
        // Runs of <0xXX> tokens become their bytes when those form valid UTF-8, else one U+FFFD
        // per byte.
        std::vector<std::string> out;
        std::string run;
        size_t run_len = 0;
        const auto flush = [&] {
          if (run_len == 0) return;
          if (is_valid_utf8(run)) {
            out.push_back(run);
          } else {
            for (size_t k = 0; k < run_len; ++k) out.emplace_back("\xEF\xBF\xBD");
          }
          run.clear();
          run_len = 0;
        };
        for (std::string& t : tokens) {
          const int b = parse_byte_token(t);
          if (b >= 0) {
            run += static_cast<char>(b);
            ++run_len;
          } else {
            flush();
            out.push_back(std::move(t));
          }
        }
        flush();
        tokens = std::move(out);
        break;
      }
      case DecoderStep::kFuse: {
        std::string all;
        for (const std::string& t : tokens) all += t;
        tokens.assign(1, std::move(all));
        break;
      }
      case DecoderStep::kStrip:
        for (std::string& t : tokens) {
          size_t begin = 0, end = t.size();
          for (int k = 0; k < s.start && t.compare(begin, s.a.size(), s.a) == 0; ++k) {
            begin += s.a.size();
          }
          for (int k = 0; k < s.stop && end >= begin + s.a.size() &&
                          t.compare(end - s.a.size(), s.a.size(), s.a) == 0;
               ++k) {
            end -= s.a.size();
          }
          t = t.substr(begin, end - begin);
        }
        break;
      case DecoderStep::kMetaspace:
        // The reference drops every replacement character of the first token (the prepended
        // marker) and turns the others into spaces.
        for (size_t i = 0; i < tokens.size(); ++i) {
          tokens[i] = replace_all(tokens[i], s.a, (i == 0 && s.prepend) ? "" : " ");
        }
        break;
    }
  }
  std::string out;
  for (const std::string& t : tokens) out += t;
  return out;
}

std::string Pipeline::piece(const std::string& token) const {
  if (!has_decoder_) return token;
  std::string t = token;
  for (const DecoderStep& s : decoder_) {
    switch (s.kind) {
      case DecoderStep::kByteLevel: {
        std::string bytes;
        byte_level_decode(t, bytes);
        t = std::move(bytes);
        break;
      }
      case DecoderStep::kReplace:
        t = replace_all(t, s.a, s.b);
        break;
      case DecoderStep::kByteFallback:
        if (const int b = parse_byte_token(t); b >= 0) t = std::string(1, static_cast<char>(b));
        break;
      case DecoderStep::kMetaspace:
        t = replace_all(t, s.a, " ");
        break;
      case DecoderStep::kFuse:
      case DecoderStep::kStrip:
        break;
    }
  }
  return t;
}

std::string Pipeline::signature() const {
  std::string s = "norm:";
  for (const NormalizerStep& n : normalizer_) {
    switch (n.kind) {
      case NormalizerStep::kPrepend:
        s += "Prepend(" + n.a + ")";
        break;
      case NormalizerStep::kReplace:
        s += "Replace(" + (n.regex ? "re:" + n.regex->pattern() : "str:" + n.a) + "," + n.b + ")";
        break;
      case NormalizerStep::kNfc:
        s += "NFC";
        break;
    }
  }
  s += ";pre:";
  for (const PreTokenizerStep& p : pre_) {
    switch (p.kind) {
      case PreTokenizerStep::kByteLevel:
        s += fmt::format("ByteLevel({},{})", p.add_prefix_space, p.use_regex);
        break;
      case PreTokenizerStep::kSplit:
        s +=
            fmt::format("Split({},{},{})", p.regex->pattern(), behavior_name(p.behavior), p.invert);
        break;
      case PreTokenizerStep::kMetaspace:
        s += fmt::format("Metaspace({},{},{})", p.replacement, p.prepend_scheme, p.split);
        break;
    }
  }
  s += fmt::format(";dec({}):", has_decoder_);
  for (const DecoderStep& d : decoder_) {
    s += fmt::format("{}({},{},{},{},{})", static_cast<int>(d.kind), d.a, d.b, d.start, d.stop,
                     d.prepend);
  }
  return s;
}

}  // namespace squish::tok
