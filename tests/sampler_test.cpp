#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <stdexcept>
#include <vector>

#include "runtime/sampler.h"

namespace squish {
namespace {

TEST(Sampler, GreedyPicksArgmax) {
  Sampler s({0.0f, 40, 0.95f, 1});
  std::vector<float> logits = {0.1f, 3.0f, -1.0f, 2.9f};
  EXPECT_EQ(s.sample(logits.data(), 4), 1);
}

TEST(Sampler, SameSeedSameSequence) {
  std::vector<float> logits(50);
  for (int i = 0; i < 50; ++i) logits[i] = std::sin(i * 0.7f);
  Sampler a({1.0f, 0, 1.0f, 42}), b({1.0f, 0, 1.0f, 42}), c({1.0f, 0, 1.0f, 43});
  std::vector<int> sa, sb, sc;
  for (int i = 0; i < 100; ++i) {
    sa.push_back(a.sample(logits.data(), 50));
    sb.push_back(b.sample(logits.data(), 50));
    sc.push_back(c.sample(logits.data(), 50));
  }
  EXPECT_EQ(sa, sb);
  EXPECT_NE(sa, sc);
}

TEST(Sampler, TopKOneIsGreedy) {
  std::vector<float> logits = {0.5f, 0.2f, 0.9f, 0.1f};
  Sampler s({5.0f, 1, 1.0f, 7});
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.sample(logits.data(), 4), 2);
}

TEST(Sampler, TopPKeepsOnlyTheNucleus) {
  // Probabilities ~ {0.64, 0.24, 0.09, 0.03}: top_p 0.8 keeps the first two tokens only.
  std::vector<float> logits = {std::log(0.64f), std::log(0.24f), std::log(0.09f), std::log(0.03f)};
  Sampler s({1.0f, 0, 0.8f, 3});
  std::map<int, int> counts;
  for (int i = 0; i < 4000; ++i) counts[s.sample(logits.data(), 4)]++;
  EXPECT_EQ(counts[2] + counts[3], 0);
  // Renormalised over the nucleus: 0.64 / 0.88 = 0.727.
  EXPECT_NEAR(counts[0] / 4000.0, 0.727, 0.03);
}

TEST(Sampler, TemperatureMatchesSoftmax) {
  std::vector<float> logits = {1.0f, 0.0f};
  Sampler s({0.5f, 0, 1.0f, 11});
  int first = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) first += s.sample(logits.data(), 2) == 0;
  const double expected = 1.0 / (1.0 + std::exp(-2.0));  // logits / T = {2, 0}
  EXPECT_NEAR(first / static_cast<double>(n), expected, 0.01);
}

// The top-k candidates alone (as the GPU selects them, in any order) give the draws that the
// whole row gives: same seed, same tokens, over rows with ties at the k-th place.
TEST(Sampler, TopCandidatesSampleAsTheWholeRow) {
  std::mt19937 rng(9);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  const int n = 3000;
  std::vector<float> logits(n);
  for (const SamplerOptions& o :
       {SamplerOptions{0.8f, 40, 0.95f, 5}, SamplerOptions{1.3f, 1, 1.0f, 6},
        SamplerOptions{0.5f, 256, 0.9f, 7}, SamplerOptions{2.0f, 7, 1.0f, 8}}) {
    Sampler whole(o), top(o);
    ASSERT_TRUE(top.samples_top_k(n));
    std::vector<Candidate> candidates;
    for (int step = 0; step < 60; ++step) {
      for (float& v : logits) v = std::round(normal(rng) * 4.0f) / 4.0f;  // many equal values
      top_candidates(logits.data(), n, o.temperature, o.top_k, candidates);
      ASSERT_EQ(candidates.size(), static_cast<size_t>(o.top_k));
      for (size_t i = 1; i < candidates.size(); ++i)
        ASSERT_TRUE(ranks_before(candidates[i - 1], candidates[i]));
      std::shuffle(candidates.begin(), candidates.end(), rng);
      ASSERT_EQ(top.sample_top(candidates), whole.sample(logits.data(), n)) << "step " << step;
    }
  }
  EXPECT_FALSE(Sampler({0.0f, 40, 0.95f, 1}).samples_top_k(n));  // greedy
  EXPECT_FALSE(Sampler({1.0f, 0, 0.95f, 1}).samples_top_k(n));   // no top-k
  EXPECT_FALSE(Sampler({1.0f, n, 0.95f, 1}).samples_top_k(n));   // the whole vocabulary
  std::vector<Candidate> none;
  EXPECT_THROW(Sampler({1.0f, 4, 1.0f, 1}).sample_top(none), std::invalid_argument);
}

}  // namespace
}  // namespace squish
