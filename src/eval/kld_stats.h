// Statistics of a model against its base over scored tokens, defined exactly as
// llama-perplexity --kl-divergence defines them (means, one-sigma uncertainties, the correlation of
// ln PPL, percentiles interpolated between order statistics), plus 95 % confidence intervals.
#pragma once

#include <cstdint>
#include <vector>

namespace squish {

// Everything squish keeps about one scored token. nll_* are natural-log negative log-likelihoods
// of the actual next token; p_diff = p_model(target) - p_base(target).
struct TokenRecord {
  double nll_base = 0, nll_model = 0, kld = 0;
  float p_diff = 0;
  float tail_bound = 0;  // saved base only: upper bound on how much kld under-estimates (else 0)
  bool same_top = false;
  int32_t target = 0;
  int32_t slice = 0;   // index of the slice (0 without --slices)
  int32_t window = 0;  // index of the window over all slices
  int32_t row = 0;     // scored row within the window's scored half (0 = first scored)
  int32_t n_rows = 0;  // scored rows in that window
};

// A measured mean with its one-sigma uncertainty and 95 % interval.
struct Estimate {
  double value = 0, stderr_ = 0, lo = 0, hi = 0;
};

// Sums from which every statistic follows (what llama.cpp's kl_divergence_result holds).
struct StatSums {
  int64_t n = 0;
  double nll_base = 0, nll_base2 = 0, nll_model = 0, nll_model2 = 0, nll_cross = 0;
  double kld = 0, kld2 = 0;
  double p_diff = 0, p_diff2 = 0, p_diff4 = 0, max_abs_p_diff = 0;
  double tail_bound = 0;
  int64_t same_top = 0;

  void add(const TokenRecord& t);
};

// llama.cpp's mean_and_uncertainty: mean, and sqrt(var / (n - 1)) when n > 10, else 0.
Estimate mean_estimate(double sum, double sum2, int64_t n);

struct Summary {
  int64_t n = 0;
  Estimate ppl_base, ppl_model, ppl_delta, ppl_ratio, ln_ppl_ratio;
  double ln_ppl_correlation = 0;
  Estimate kld, same_top, p_diff, rms_p_diff;
  double max_abs_p_diff = 0;
  double mean_tail_bound = 0;
};

Summary summarize(const StatSums& s);

// Linear interpolation between order statistics of sorted values (llama.cpp's percentile); the
// median of an even count is the mean of the two middle values, as llama.cpp prints it.
double percentile(const std::vector<double>& sorted, double fraction);
double median(const std::vector<double>& sorted);

}  // namespace squish
