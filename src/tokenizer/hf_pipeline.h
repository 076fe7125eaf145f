// The text-processing stages of a Hugging Face tokenizer.json around its model: normalizer,
// pre-tokenizer and decoder, each a sequence of steps with the reference's exact semantics
// (internal to src/tokenizer). Only the step types real BPE tokenizers use are supported; any
// other type is a squish::Error naming the file.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace squish::tok {

// A PCRE2 pattern compiled with UTF + UCP (so \s, \p{L}, \w follow Unicode as Oniguruma does in
// the reference) and JIT-compiled when the platform allows.
class Regex {
 public:
  Regex(const std::string& pattern, const std::string& what);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  const std::string& pattern() const { return pattern_; }
  // Appends (start, end) byte offsets of each non-overlapping match, left to right. `subject`
  // must be valid UTF-8 (callers validate once; PCRE2 would otherwise re-check the whole
  // subject on every call, which is quadratic).
  void find_all(std::string_view subject, std::vector<std::pair<size_t, size_t>>& out) const;

 private:
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8*
};

// One pre-tokenized piece: its text and whether it begins at offset 0 of the original input
// (Metaspace's prepend_scheme "first" looks at that).
struct Piece {
  std::string text;
  bool at_start = false;
};

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct NormalizerStep {
  enum Kind { kPrepend, kReplace, kNfc } kind;
  explicit NormalizerStep(Kind k) : kind(k) {}
  std::string a, b;              // Prepend: a = text; Replace: a = pattern (string), b = content
  std::shared_ptr<Regex> regex;  // Replace with a regex pattern
};

struct PreTokenizerStep {
  enum Kind { kByteLevel, kSplit, kMetaspace } kind;
  explicit PreTokenizerStep(Kind k) : kind(k) {}
  bool add_prefix_space = false;  // ByteLevel
  bool use_regex = false;         // ByteLevel: split with the GPT-2 regex first
  // Split; also Digits, Whitespace and WhitespaceSplit, which are splits by fixed patterns.
  // String patterns are escaped into a regex.
  std::shared_ptr<Regex> regex;
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
  std::string replacement;     // Metaspace
  std::string prepend_scheme;  // Metaspace: "always", "first", "never"
  bool split = false;          // Metaspace
};

struct DecoderStep {
  enum Kind { kByteLevel, kReplace, kByteFallback, kFuse, kStrip, kMetaspace } kind;
  explicit DecoderStep(Kind k) : kind(k) {}
  std::string a, b;         // Replace: pattern, content; Strip: content; Metaspace: replacement
  int start = 0, stop = 0;  // Strip
  bool prepend = true;      // Metaspace: prepend_scheme != "never"
};

class Pipeline {
 public:
  // Builds the stages from tokenizer.json's "normalizer", "pre_tokenizer" and "decoder" values
  // (each may be null). `what` names the file in errors.
  static Pipeline from_json(const nlohmann::json& normalizer, const nlohmann::json& pre_tokenizer,
                            const nlohmann::json& decoder, const std::string& what);

  bool byte_level() const;  // a ByteLevel pre-tokenizer step is present
  // A Split step's regex, or the GPT-2 regex for ByteLevel(use_regex); empty when none.
  std::string split_regex() const;

  // `text` must be valid UTF-8.
  std::string normalize(std::string text) const;
  // Appends the words of one normalized segment to `out`.
  void pre_tokenize(std::string text, bool at_start, std::vector<Piece>& out) const;
  // Token strings to text, as the reference decoder does (no decoder: joined with spaces).
  std::string decode(std::vector<std::string> tokens) const;
  // The bytes one token contributes (per-token steps only: no Strip, no first-token rules).
  std::string piece(const std::string& token) const;
  // Describes every step and option that changes results; equal descriptions mean equal output.
  std::string signature() const;

 private:
  std::vector<NormalizerStep> normalizer_;
  std::vector<PreTokenizerStep> pre_;
  std::vector<DecoderStep> decoder_;
  bool has_decoder_ = false;
};

extern const char* const kGpt2Regex;
extern const char* const kLlama3Regex;
extern const char* const kQwen2Regex;

}  // namespace squish::tok
