// Perplexity with llama.cpp's method, so numbers are comparable with llama-perplexity: the token
// stream is cut into non-overlapping windows of n_ctx tokens, each window is evaluated from an
// empty cache (its first token replaced by BOS when the tokenizer adds one), and only the second
// half of each window is scored, so every scored token sees at least n_ctx/2 tokens of context.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "model/model.h"

namespace squish {

struct PerplexityOptions {
  int n_ctx = 512;
  int max_chunks = 0;  // 0: all full windows
  bool replace_first_with_bos = false;
  int n_threads = 0;
  int n_batch = 512;
};

struct PerplexityResult {
  double ppl = 0, ppl_stderr = 0, mean_nll = 0;
  int64_t n_scored = 0;
  int n_chunks = 0;
  std::vector<double> running_ppl;  // after each window, as llama-perplexity prints
  std::vector<double> window_ppl;   // each window on its own
  double seconds = 0;
  int64_t n_tokens_evaluated = 0;
};

// Called after each window with (windows done, total windows, running PPL).
using PerplexityProgress = std::function<void(int, int, double)>;

PerplexityResult compute_perplexity(const Model& model, const std::vector<int32_t>& tokens,
                                    const PerplexityOptions& options,
                                    const PerplexityProgress& progress = {});

// log softmax(logits)[target] in double precision.
double log_softmax_at(const float* logits, int n_vocab, int target);

}  // namespace squish
