// Quality of a compressed model against its base on the same text: perplexity of both, and per
// token KL divergence KL(base || model) and top-1 agreement, computed like llama-perplexity
// --kl-divergence (same windows and scored positions as compute_perplexity).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "eval/perplexity.h"
#include "model/model.h"

namespace squish {

struct KldResult {
  double base_ppl = 0, model_ppl = 0;
  double mean_kld = 0, kld_stderr = 0;
  double median_kld = 0, p90_kld = 0, p99_kld = 0, max_kld = 0;
  double top1_agreement = 0;
  int64_t n_scored = 0;
  int n_chunks = 0;
  double seconds = 0;
};

KldResult compute_kld(const Model& base, const Model& model, const std::vector<int32_t>& tokens,
                      const PerplexityOptions& options, const PerplexityProgress& progress = {});

}  // namespace squish
