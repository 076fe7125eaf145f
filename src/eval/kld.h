// Quality of a compressed model against its base on the same text, computed like llama-perplexity
// --kl-divergence: same windows (non-overlapping, n_ctx tokens, first token replaced by BOS when
// the tokenizer adds one), same scored positions (the second half of each window), per-token
// KL(base || model), NLL of both, Δp and top-1 agreement. The base is either a model run live or
// a saved base (.squishkl, see saved_base.h); a live base can be saved on the way.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "eval/eval_text.h"
#include "eval/kld_stats.h"
#include "eval/saved_base.h"
#include "model/model.h"

namespace squish {

struct EvalOptions {
  int n_ctx = 512;
  int max_chunks = 0;  // 0: all full windows (per slice)
  bool replace_first_with_bos = false;
  int n_threads = 0;
  int n_batch = 512;
};

// Where the base distributions come from, and where they go. Exactly one of base_model / saved;
// model may be null only when saving (base-only run).
struct EvalSources {
  const Model* model = nullptr;
  const Model* base_model = nullptr;
  const SavedBaseReader* saved = nullptr;
  SavedBaseWriter* writer = nullptr;
};

struct EvalRun {
  std::vector<TokenRecord> tokens;  // every scored token, in evaluation order
  std::vector<float> tail_mass;     // per token, when a saved base is read or written
  int n_windows = 0;
  bool has_model = false;
  double seconds = 0;
};

// Called after each window with (windows done, total windows, running PPL of the model, or of
// the base in a base-only run).
using EvalProgress = std::function<void(int, int, double)>;

EvalRun run_eval(const EvalSources& sources, const EvalText& text,
                 const std::vector<EvalWindow>& windows, const EvalOptions& options,
                 const EvalProgress& progress = {});

}  // namespace squish
