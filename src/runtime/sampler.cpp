#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>

namespace squish {

Sampler::Sampler(const SamplerOptions& options) : options_(options), rng_(options.seed) {}

int32_t Sampler::sample(const float* logits, int n_vocab) {
  if (options_.temperature <= 0.0f) {
    return static_cast<int32_t>(std::max_element(logits, logits + n_vocab) - logits);
  }
  candidates_.resize(n_vocab);
  for (int i = 0; i < n_vocab; ++i) candidates_[i] = {logits[i] / options_.temperature, i};
  size_t k = candidates_.size();
  if (options_.top_k > 0 && static_cast<size_t>(options_.top_k) < k) k = options_.top_k;
  std::partial_sort(candidates_.begin(), candidates_.begin() + k, candidates_.end(),
                    [](const auto& a, const auto& b) { return a.first > b.first; });
  candidates_.resize(k);
  const float mx = candidates_[0].first;
  double sum = 0;
  for (auto& c : candidates_) {
    c.first = std::exp(c.first - mx);
    sum += c.first;
  }
  // Nucleus: keep the smallest prefix whose probability mass reaches top_p.
  double cum = 0;
  size_t keep = candidates_.size();
  for (size_t i = 0; i < candidates_.size(); ++i) {
    cum += candidates_[i].first / sum;
    if (cum >= options_.top_p) {
      keep = i + 1;
      break;
    }
  }
  candidates_.resize(keep);
  double total = 0;
  for (const auto& c : candidates_) total += c.first;
  std::uniform_real_distribution<double> dist(0.0, total);
  double u = dist(rng_);
  for (const auto& c : candidates_) {
    u -= c.first;
    if (u <= 0) return c.second;
  }
  return candidates_.back().second;
}

}  // namespace squish
