// Token sampling: greedy, or temperature with top-k and top-p (nucleus) filtering, seeded.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace squish {

struct SamplerOptions {
  float temperature = 0.0f;  // 0: greedy
  int top_k = 40;            // 0: no limit
  float top_p = 0.95f;       // 1: no limit
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplerOptions& options);
  int32_t sample(const float* logits, int n_vocab);

 private:
  SamplerOptions options_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> candidates_;
};

}  // namespace squish
