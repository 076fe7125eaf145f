// Prefill attention kernels (kAttentionQueryBlock queries at once, every CPU level) against a
// double-precision reference. Scores and weighted sums are float dot products over dim or
// n_keys terms, so the bound is 1e-5 of the sum of the terms' magnitudes.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/attention.h"
#include "kernels/cpu/matmul.h"

namespace squish {
namespace {

class AttentionBlockTest : public testing::TestWithParam<CpuLevel> {};

TEST_P(AttentionBlockTest, MatchesReference) {
  const CpuLevel level = GetParam();
  if (static_cast<int>(level) > static_cast<int>(detected_cpu_level())) GTEST_SKIP();
  const CpuLevel saved = active_cpu_level();
  set_cpu_level(level);
  constexpr int QB = kAttentionQueryBlock;
  std::mt19937 rng(9);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (int dim : {16, 48, 64, 128}) {
    for (int n_keys : {1, 5, 31, 32, 33, 100}) {
      const int stride = 128;  // cache length: n_keys rounded up to 32 fits
      const int q_stride = dim + 7, v_stride = dim + 3, ld = 160, out_stride = dim + 5;
      std::vector<float> q(QB * q_stride), kt(static_cast<size_t>(dim) * stride),
          v(static_cast<size_t>(stride) * v_stride), p(QB * ld);
      for (float& x : q) x = dist(rng);
      for (float& x : kt) x = dist(rng);
      for (float& x : v) x = dist(rng);
      for (float& x : p) x = std::fabs(dist(rng));
      const float scale = 0.125f;
      std::vector<float> s(QB * ld, NAN), out(QB * out_stride, NAN);
      // All rows, and fewer (decode: the heads of one KV group; a prompt's last block).
      const int nq = n_keys % 3 == 0 ? QB : 1 + n_keys % QB;
      attention_scores_block(q.data(), q_stride, nq, kt.data(), stride, n_keys, dim, scale,
                             s.data(), ld);
      attention_values_block(p.data(), ld, nq, v.data(), v_stride, n_keys, dim, out.data(),
                             out_stride);
      for (int t = nq; t < QB; ++t) {
        ASSERT_TRUE(std::isnan(s[t * ld]) && std::isnan(out[t * out_stride])) << "wrote row " << t;
      }
      for (int t = 0; t < nq; ++t) {
        for (int j = 0; j < n_keys; ++j) {
          double ref = 0, mag = 0;
          for (int d = 0; d < dim; ++d) {
            const double term = static_cast<double>(q[t * q_stride + d]) * scale *
                                kt[static_cast<size_t>(d) * stride + j];
            ref += term;
            mag += std::fabs(term);
          }
          ASSERT_NEAR(s[t * ld + j], ref, 1e-5 * mag + 1e-30)
              << cpu_level_name(level) << " dim " << dim << " keys " << n_keys << " t " << t;
        }
        for (int d = 0; d < dim; ++d) {
          double ref = 0, mag = 0;
          for (int j = 0; j < n_keys; ++j) {
            const double term =
                static_cast<double>(p[t * ld + j]) * v[static_cast<size_t>(j) * v_stride + d];
            ref += term;
            mag += std::fabs(term);
          }
          ASSERT_NEAR(out[t * out_stride + d], ref, 1e-5 * mag + 1e-30)
              << cpu_level_name(level) << " dim " << dim << " keys " << n_keys << " t " << t;
        }
        for (int d = dim; d < out_stride; ++d) {
          ASSERT_TRUE(std::isnan(out[t * out_stride + d])) << "wrote past dim";
        }
      }
    }
  }
  set_cpu_level(saved);
}

INSTANTIATE_TEST_SUITE_P(Levels, AttentionBlockTest,
                         testing::Values(CpuLevel::Scalar, CpuLevel::AVX2, CpuLevel::AVX512),
                         [](const auto& info) { return std::string(cpu_level_name(info.param)); });

}  // namespace
}  // namespace squish
