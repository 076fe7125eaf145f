#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace squish {

void top_candidates(const float* logits, int n, float temperature, int k,
                    std::vector<Candidate>& out) {
  out.resize(n);
  for (int i = 0; i < n; ++i) out[i] = {logits[i] / temperature, i};
  k = std::clamp(k, 0, n);
  std::partial_sort(out.begin(), out.begin() + k, out.end(), ranks_before);
  out.resize(k);
}

Sampler::Sampler(const SamplerOptions& options) : options_(options), rng_(options.seed) {}

int32_t Sampler::sample(const float* logits, int n_vocab) {
  if (options_.temperature <= 0.0f) {
    return static_cast<int32_t>(std::max_element(logits, logits + n_vocab) - logits);
  }
  const int k = options_.top_k > 0 ? std::min(options_.top_k, n_vocab) : n_vocab;
  top_candidates(logits, n_vocab, options_.temperature, k, candidates_);
  return sample_ranked(candidates_);
}

int32_t Sampler::sample_top(std::vector<Candidate>& candidates) {
  if (candidates.empty()) throw std::invalid_argument("sampler: no candidates");
  std::sort(candidates.begin(), candidates.end(), ranks_before);
  return sample_ranked(candidates);
}

int32_t Sampler::sample_ranked(std::vector<Candidate>& candidates) {
  const float mx = candidates[0].first;
  double sum = 0;
  for (auto& c : candidates) {
    c.first = std::exp(c.first - mx);
    sum += c.first;
  }
  // Nucleus: keep the smallest prefix whose probability mass reaches top_p.
  double cum = 0;
  size_t keep = candidates.size();
  for (size_t i = 0; i < candidates.size(); ++i) {
    cum += candidates[i].first / sum;
    if (cum >= options_.top_p) {
      keep = i + 1;
      break;
    }
  }
  candidates.resize(keep);
  double total = 0;
  for (const auto& c : candidates) total += c.first;
  std::uniform_real_distribution<double> dist(0.0, total);
  double u = dist(rng_);
  for (const auto& c : candidates) {
    u -= c.first;
    if (u <= 0) return c.second;
  }
  return candidates.back().second;
}

}  // namespace squish
