// What `squish eval` evaluates: the text (one piece from -f, or labelled slices from --slices),
// its token ids, the windows cut from them (llama-perplexity's layout), token frequency ranks for
// the frequency breakdown, and the hashes a saved base is checked against.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace squish {

struct EvalSlice {
  std::string label;  // empty for plain -f text
  std::string text;
  std::vector<int32_t> tokens;  // BOS first when the tokenizer adds one
};

// One evaluated window: tokens [start, start + len) of a slice. Rows len/2 .. len-2 are scored
// (row i predicts token i + 1), so every scored token sees at least half a window of context.
struct EvalWindow {
  int32_t slice = 0;
  int64_t start = 0;
  int32_t len = 0;
  int32_t first_scored() const { return len / 2; }
  int32_t n_scored() const { return len - 1 - len / 2; }
};

struct EvalText {
  std::string path;        // the -f or --slices file
  uint64_t text_hash = 0;  // FNV-1a 64 of the file's bytes
  uint64_t n_text_bytes = 0;
  std::vector<EvalSlice> slices;
  bool labelled = false;  // from --slices
};

// Shortest slice that is still evaluated (as one short window).
constexpr int kMinSliceTokens = 16;
constexpr size_t kMaxSliceLabelBytes = 200;

// Splits a slices file (format in docs/eval-json.md: lines "### slice: <label>" start sections).
// Throws "<path>: line N: <problem>" for malformed headers, text before the first header, empty
// sections and duplicate labels.
std::vector<EvalSlice> parse_slices(std::string_view text, const std::string& path);

// Reads and checks the text (plain, or slices when `slices` is set) and tokenizes every piece.
EvalText load_eval_text(const std::string& path, bool slices, const Tokenizer& tokenizer);

// Windows of n_ctx tokens per slice (the tail that does not fill a window is dropped, as
// llama-perplexity does); a slice shorter than n_ctx gives one window of its own length.
// max_chunks > 0 limits windows per slice. Throws when nothing can be evaluated.
std::vector<EvalWindow> plan_windows(const EvalText& text, int n_ctx, int max_chunks);

// FNV-1a 64-bit (mismatch detection, not security).
uint64_t fnv1a64(const void* data, size_t n, uint64_t h = 0xcbf29ce484222325ull);

// Hash of everything that determines the scored tokens: context, BOS flag, the window layout and
// every token id of every window.
uint64_t token_layout_hash(const EvalText& text, const std::vector<EvalWindow>& windows, int n_ctx,
                           bool replace_first_with_bos);

// Frequency rank of every vocabulary id in `tokens` (0 = most frequent; ties by id); ids that do
// not occur get rank -1. counts receives the occurrence count per id.
std::vector<int32_t> frequency_ranks(const std::vector<const std::vector<int32_t>*>& sources,
                                     int n_vocab, std::vector<int64_t>& counts);

}  // namespace squish
