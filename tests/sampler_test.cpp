#include <gtest/gtest.h>

#include <cmath>
#include <map>
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

}  // namespace
}  // namespace squish
