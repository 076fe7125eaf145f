// Token sampling: greedy, or temperature with top-k and top-p (nucleus) filtering, seeded.
#pragma once

#include <cstdint>
#include <random>
#include <utility>
#include <vector>

namespace squish {

struct SamplerOptions {
  float temperature = 0.0f;  // 0: greedy
  int top_k = 40;            // 0: no limit
  float top_p = 0.95f;       // 1: no limit
  uint64_t seed = 0;
};

// A candidate token: its logit divided by the temperature, and its id.
using Candidate = std::pair<float, int32_t>;

// The order candidates are ranked in: larger scaled logit first, then the lower id (so that the
// top k are one set however they are computed: on the host or on a device).
inline bool ranks_before(const Candidate& a, const Candidate& b) {
  return a.first > b.first || (a.first == b.first && a.second < b.second);
}

// The k highest-ranked of logits[i] / temperature (k <= n), in ranks_before order.
void top_candidates(const float* logits, int n, float temperature, int k,
                    std::vector<Candidate>& out);

class Sampler {
 public:
  explicit Sampler(const SamplerOptions& options);
  int32_t sample(const float* logits, int n_vocab);
  // The same draw from the top_k candidates alone (in any order), e.g. selected on the GPU
  // (Session::eval_top_k): for temperature > 0 and 0 < top_k < n_vocab, sample_top of
  // top_candidates(logits, n_vocab, temperature, top_k) returns what sample(logits) would.
  int32_t sample_top(std::vector<Candidate>& candidates);
  // When sample_top applies: temperature > 0 and a top-k below the vocabulary's size.
  bool samples_top_k(int n_vocab) const {
    return options_.temperature > 0.0f && options_.top_k > 0 && options_.top_k < n_vocab;
  }

 private:
  int32_t sample_ranked(std::vector<Candidate>& candidates);  // sorted by ranks_before

  SamplerOptions options_;
  std::mt19937_64 rng_;
  std::vector<Candidate> candidates_;
};

}  // namespace squish
