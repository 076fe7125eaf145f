// Four-row dot kernels (QuantTraits::dot4_avx512) against the single-row kernel they batch: the
// integer sums are the same, only float accumulation may differ, so each output must match the
// single dot to 1e-6 relative (plus a tiny absolute term for results near zero).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "kernels/cpu/matmul.h"
#include "quant/quant.h"

namespace squish {
namespace {

// Values with a spread of magnitudes, plus blocks that stress the quantizers' extremes: all
// zero, one huge outlier, constant maximum, alternating signs.
std::vector<float> test_values(int64_t n, std::mt19937& rng, int pattern) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(n);
  for (int64_t i = 0; i < n; ++i) {
    switch (pattern) {
      case 0:
        x[i] = dist(rng);
        break;
      case 1:  // zeros with a large outlier per 32 elements
        x[i] = (i % 32 == 7) ? 1e4f * (dist(rng) > 0 ? 1.0f : -1.0f) : 0.0f;
        break;
      case 2:  // constant extreme, alternating sign
        x[i] = (i % 2 == 0) ? 3e3f : -3e3f;
        break;
      default:  // mixed scales per block, some blocks all zero
        x[i] = ((i / 32) % 5 == 0) ? 0.0f : dist(rng) * std::pow(10.0f, float((i / 32) % 4) - 2);
        break;
    }
  }
  return x;
}

class QuantDot4Test : public ::testing::TestWithParam<DType> {};

TEST_P(QuantDot4Test, EqualsFourSingleDots) {
  if (detected_cpu_level() < CpuLevel::AVX512) GTEST_SKIP() << "no AVX-512";
  const QuantTraits* qt = quant_traits(GetParam());
  ASSERT_NE(qt, nullptr);
  ASSERT_NE(qt->dot4_avx512, nullptr);
  ASSERT_NE(qt->dot_avx512, nullptr);
  const int64_t block = traits(qt->type).block_size;
  std::mt19937 rng(1234 + static_cast<int>(GetParam()));
  // Odd block counts including 1; for 32-element blocks these cover the 8-block loop, the pairs
  // and the odd tail of the legacy kernels.
  for (int64_t nb : {1, 2, 3, 5, 7, 9, 17, 23}) {
    const int64_t n = nb * block;
    for (int pattern = 0; pattern < 4; ++pattern) {
      const std::vector<float> wf = test_values(n, rng, pattern);
      std::vector<uint8_t> w(row_bytes(qt->type, n));
      qt->quantize(wf.data(), w.data(), n, nullptr);
      const size_t act_bytes = row_bytes(qt->vec_dot_type, n);
      std::vector<uint8_t> act(4 * act_bytes);
      const void* rows[4];
      for (int k = 0; k < 4; ++k) {
        const std::vector<float> xf = test_values(n, rng, (pattern + k) % 4);
        quantize_activations(qt->vec_dot_type, xf.data(), act.data() + k * act_bytes, n);
        rows[k] = act.data() + k * act_bytes;
      }
      float out[4];
      qt->dot4_avx512(n, w.data(), rows, out);
      for (int k = 0; k < 4; ++k) {
        const float single = qt->dot_avx512(n, w.data(), rows[k]);
        EXPECT_NEAR(out[k], single, 1e-6 * std::fabs(single) + 1e-30)
            << dtype_name(qt->type) << " blocks " << nb << " pattern " << pattern << " row " << k;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Types, QuantDot4Test,
                         ::testing::Values(DType::Q4_K, DType::Q6_K, DType::Q8_0, DType::Q5_0,
                                           DType::Q2_K, DType::Q3_K, DType::Q5_K),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// matmul with quantized weights and token counts that are and are not multiples of four: the
// four-token path and the single-token remainder must give what the single dot gives.
TEST(QuantDot4Matmul, MatchesSingleDotPerToken) {
  if (detected_cpu_level() < CpuLevel::AVX512) GTEST_SKIP() << "no AVX-512";
  std::mt19937 rng(99);
  for (DType type : {DType::Q4_K, DType::Q8_0}) {
    const QuantTraits* qt = quant_traits(type);
    const int64_t rows = 37, cols = 512;
    const std::vector<float> wf = test_values(rows * cols, rng, 0);
    std::vector<uint8_t> w(row_bytes(type, cols) * rows);
    for (int64_t r = 0; r < rows; ++r) {
      qt->quantize(wf.data() + r * cols, w.data() + r * row_bytes(type, cols), cols, nullptr);
    }
    for (int64_t n_tokens : {1, 3, 4, 6, 9}) {
      const std::vector<float> x = test_values(n_tokens * cols, rng, 0);
      std::vector<float> y(n_tokens * rows);
      matmul(x.data(), n_tokens, w.data(), type, rows, cols, y.data(), rows);
      std::vector<uint8_t> act(row_bytes(qt->vec_dot_type, cols));
      for (int64_t t = 0; t < n_tokens; ++t) {
        quantize_activations(qt->vec_dot_type, x.data() + t * cols, act.data(), cols);
        for (int64_t r = 0; r < rows; ++r) {
          const float single =
              quant_dot(*qt)(cols, w.data() + r * row_bytes(type, cols), act.data());
          EXPECT_NEAR(y[t * rows + r], single, 1e-6 * std::fabs(single) + 1e-30)
              << dtype_name(type) << " tokens " << n_tokens << " t " << t << " r " << r;
        }
      }
    }
  }
}

}  // namespace
}  // namespace squish
