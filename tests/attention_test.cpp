// Attention kernels (every CPU level) against a double-precision reference.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/attention.h"
#include "kernels/cpu/matmul.h"

namespace squish {
namespace {

class AttentionTest : public testing::TestWithParam<CpuLevel> {};

TEST_P(AttentionTest, MatchesReference) {
  const CpuLevel level = GetParam();
  if (static_cast<int>(level) > static_cast<int>(detected_cpu_level())) GTEST_SKIP();
  const CpuLevel saved = active_cpu_level();
  set_cpu_level(level);
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (int dim : {8, 64, 80, 128, 256}) {
    for (int n_keys : {1, 3, 17, 100, 515}) {
      const int stride = 600;  // cache length
      std::vector<float> q(dim), kt(static_cast<size_t>(dim) * stride),
          v(static_cast<size_t>(stride) * (dim + 5));
      for (float& x : q) x = dist(rng);
      for (float& x : kt) x = dist(rng);
      for (float& x : v) x = dist(rng);
      const float scale = 1.0f / std::sqrt(static_cast<float>(dim));
      std::vector<double> ref_p(n_keys);
      double mx = -1e30;
      for (int j = 0; j < n_keys; ++j) {
        double s = 0;
        for (int d = 0; d < dim; ++d)
          s += static_cast<double>(q[d]) * kt[static_cast<size_t>(d) * stride + j];
        ref_p[j] = s * scale;
        mx = std::max(mx, ref_p[j]);
      }
      double sum = 0;
      for (double& p : ref_p) sum += (p = std::exp(p - mx));
      for (double& p : ref_p) p /= sum;
      std::vector<float> s(n_keys), out(dim);
      attention_scores(q.data(), kt.data(), stride, n_keys, dim, scale, s.data());
      attention_softmax(s.data(), n_keys);
      for (int j = 0; j < n_keys; ++j)
        ASSERT_NEAR(s[j], ref_p[j], 2e-6 * (1 + ref_p[j] * 10)) << dim << " " << n_keys;
      attention_values(s.data(), v.data(), dim + 5, n_keys, dim, out.data());
      for (int d = 0; d < dim; ++d) {
        double o = 0;
        for (int j = 0; j < n_keys; ++j) o += ref_p[j] * v[static_cast<size_t>(j) * (dim + 5) + d];
        ASSERT_NEAR(out[d], o, 1e-5) << "dim " << dim << " keys " << n_keys << " d " << d;
      }
    }
  }
  set_cpu_level(saved);
}

INSTANTIATE_TEST_SUITE_P(Levels, AttentionTest,
                         testing::Values(CpuLevel::Scalar, CpuLevel::AVX2, CpuLevel::AVX512));

TEST(Attention, SoftmaxHandlesExtremeScores) {
  std::vector<float> s = {-1e30f, 0.0f, 100.0f, -200.0f};
  attention_softmax(s.data(), 4);
  EXPECT_NEAR(s[2], 1.0f, 1e-6);
  EXPECT_LT(s[0], 1e-30f);
  for (float x : s) EXPECT_TRUE(std::isfinite(x));
}

}  // namespace
}  // namespace squish
