// Gated activations (kernels/cpu/activation.h) at every CPU level against double precision.
// The AVX-512 SiLU uses a polynomial exp (~1 ulp) and one division: 2e-6 relative.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/activation.h"
#include "kernels/cpu/matmul.h"

namespace squish {
namespace {

class ActivationTest : public testing::TestWithParam<CpuLevel> {};

TEST_P(ActivationTest, SiluMulMatchesReference) {
  const CpuLevel level = GetParam();
  if (static_cast<int>(level) > static_cast<int>(detected_cpu_level())) GTEST_SKIP();
  const CpuLevel saved = active_cpu_level();
  set_cpu_level(level);
  std::mt19937 rng(2);
  std::normal_distribution<float> dist(0.0f, 4.0f);
  for (int64_t n : {1, 15, 16, 17, 1408}) {
    std::vector<float> g(n), u(n);
    for (int64_t i = 0; i < n; ++i) g[i] = dist(rng), u[i] = dist(rng);
    if (n > 3) g[0] = -100.0f, g[1] = 100.0f, g[2] = 0.0f, g[3] = -90.0f;  // exp's clamps
    std::vector<float> out = g;
    silu_mul(out.data(), u.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      const double ref = g[i] / (1.0 + std::exp(-static_cast<double>(g[i]))) * u[i];
      ASSERT_NEAR(out[i], ref, 2e-6 * std::fabs(ref) + 1e-30)
          << cpu_level_name(level) << " n " << n << " g " << g[i];
    }
  }
  set_cpu_level(saved);
}

INSTANTIATE_TEST_SUITE_P(Levels, ActivationTest,
                         testing::Values(CpuLevel::Scalar, CpuLevel::AVX2, CpuLevel::AVX512),
                         [](const auto& info) { return std::string(cpu_level_name(info.param)); });

}  // namespace
}  // namespace squish
