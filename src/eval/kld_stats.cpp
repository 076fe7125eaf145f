#include "eval/kld_stats.h"

#include <algorithm>
#include <cmath>

namespace squish {

namespace {
constexpr double kZ95 = 1.959963984540054;  // two-sided 95 % quantile of the normal distribution

Estimate symmetric(double value, double se) {
  return {value, se, value - kZ95 * se, value + kZ95 * se};
}
// exp of a mean on the log scale: the interval is taken on the log scale, then exponentiated.
Estimate exponential(double log_value, double log_se) {
  const double v = std::exp(log_value);
  return {v, v * log_se, std::exp(log_value - kZ95 * log_se), std::exp(log_value + kZ95 * log_se)};
}
}  // namespace

void StatSums::add(const TokenRecord& t) {
  ++n;
  nll_base += t.nll_base;
  nll_base2 += t.nll_base * t.nll_base;
  nll_model += t.nll_model;
  nll_model2 += t.nll_model * t.nll_model;
  nll_cross += t.nll_model * t.nll_base;
  kld += t.kld;
  kld2 += t.kld * t.kld;
  const double d = t.p_diff, d2 = d * d;
  p_diff += d;
  p_diff2 += d2;
  p_diff4 += d2 * d2;
  max_abs_p_diff = std::max(max_abs_p_diff, std::fabs(d));
  tail_bound += t.tail_bound;
  same_top += t.same_top;
}

Estimate mean_estimate(double sum, double sum2, int64_t n) {
  if (n < 1) return {};
  const double mean = sum / n;
  const double var = sum2 / n - mean * mean;
  const double se = var > 0 && n > 10 ? std::sqrt(var / (n - 1)) : 0.0;
  return symmetric(mean, se);
}

Summary summarize(const StatSums& s) {
  Summary r;
  r.n = s.n;
  if (s.n < 1) return r;
  const Estimate ln_model = mean_estimate(s.nll_model, s.nll_model2, s.n);
  const Estimate ln_base = mean_estimate(s.nll_base, s.nll_base2, s.n);
  r.ppl_model = exponential(ln_model.value, ln_model.stderr_);
  r.ppl_base = exponential(ln_base.value, ln_base.stderr_);
  // Covariance of the two mean NLLs, as llama.cpp computes it (0 below 10 tokens).
  const double cov =
      s.n < 10 ? 0.0 : (s.nll_cross / s.n - (s.nll_model / s.n) * (s.nll_base / s.n)) / (s.n - 1);
  const double se_prod = ln_model.stderr_ * ln_base.stderr_;
  r.ln_ppl_correlation = se_prod > 0 ? cov / se_prod : 0.0;
  const double ln_ratio = ln_model.value - ln_base.value;
  const double ln_ratio_var =
      ln_model.stderr_ * ln_model.stderr_ + ln_base.stderr_ * ln_base.stderr_ - 2.0 * cov;
  const double ln_ratio_se = ln_ratio_var > 0 ? std::sqrt(ln_ratio_var) : 0.0;
  r.ln_ppl_ratio = symmetric(ln_ratio, ln_ratio_se);
  r.ppl_ratio = exponential(ln_ratio, ln_ratio_se);
  const double ppl_cov = r.ppl_model.value * r.ppl_base.value * cov;
  const double delta_var = r.ppl_model.stderr_ * r.ppl_model.stderr_ +
                           r.ppl_base.stderr_ * r.ppl_base.stderr_ - 2.0 * ppl_cov;
  r.ppl_delta =
      symmetric(r.ppl_model.value - r.ppl_base.value, delta_var > 0 ? std::sqrt(delta_var) : 0.0);
  r.kld = mean_estimate(s.kld, s.kld2, s.n);
  const double top = static_cast<double>(s.same_top) / s.n;
  r.same_top = symmetric(top, s.n > 1 ? std::sqrt(top * (1 - top) / (s.n - 1)) : 0.0);
  r.same_top.lo = std::max(0.0, r.same_top.lo);
  r.same_top.hi = std::min(1.0, r.same_top.hi);
  r.p_diff = mean_estimate(s.p_diff, s.p_diff2, s.n);
  const Estimate mse = mean_estimate(s.p_diff2, s.p_diff4, s.n);
  const double rms = std::sqrt(std::max(mse.value, 0.0));
  r.rms_p_diff = symmetric(rms, rms > 0 ? 0.5 / rms * mse.stderr_ : 0.0);
  r.rms_p_diff.lo = std::max(0.0, r.rms_p_diff.lo);
  r.max_abs_p_diff = s.max_abs_p_diff;
  r.mean_tail_bound = s.tail_bound / s.n;
  return r;
}

double percentile(const std::vector<double>& sorted, double fraction) {
  if (sorted.empty()) return 0;
  if (fraction <= 0) return sorted.front();
  if (fraction >= 1) return sorted.back();
  double p = fraction * static_cast<double>(sorted.size() - 1);
  const size_t i = static_cast<size_t>(p);
  p -= static_cast<double>(i);
  return (1 - p) * sorted[i] + p * sorted[std::min(i + 1, sorted.size() - 1)];
}

double median(const std::vector<double>& sorted) {
  if (sorted.empty()) return 0;
  const size_t n = sorted.size();
  return n % 2 == 0 ? 0.5 * (sorted[n / 2] + sorted[n / 2 - 1]) : sorted[n / 2];
}

}  // namespace squish
