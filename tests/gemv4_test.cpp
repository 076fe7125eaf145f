// Four-row decode kernels (kernels/cpu/gemv4.h) against the single-row AVX-512 dot product they
// batch: the same integer sums and the same float operations per row, so the results must be
// identical. Odd block counts cover the kernels' 8-block, pair and single-block paths.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "core/dtype.h"
#include "kernels/cpu/gemv4.h"
#include "kernels/cpu/matmul.h"
#include "quant/quant.h"

namespace squish {
namespace {

class Gemv4Test : public testing::TestWithParam<DType> {};

TEST_P(Gemv4Test, EqualsFourSingleDots) {
  const DType type = GetParam();
  if (detected_cpu_level() < CpuLevel::AVX512) GTEST_SKIP() << "no AVX-512";
  const CpuLevel saved = active_cpu_level();
  set_cpu_level(CpuLevel::AVX512);
  const Gemv4Fn rows4 = gemv4_kernel(type);
  ASSERT_NE(rows4, nullptr);
  const QuantTraits* qt = quant_traits(type);
  std::mt19937 rng(77 + static_cast<int>(type));
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const int64_t block = traits(type).block_size;
  for (int64_t nb : {1, 2, 3, 5, 8, 9, 17, 44}) {
    const int64_t n = nb * block;
    const size_t stride = row_bytes(type, n);
    std::vector<uint8_t> w(4 * stride);
    for (int k = 0; k < 4; ++k) {
      std::vector<float> wf(n);
      // Row k: a different magnitude and a positive shift, so scales and mins differ by row.
      for (float& v : wf) v = dist(rng) * (1.0f + k) + 0.3f * k;
      qt->quantize(wf.data(), w.data() + k * stride, n, nullptr);
    }
    std::vector<float> x(n);
    for (float& v : x) v = dist(rng);
    std::vector<uint8_t> act(row_bytes(qt->vec_dot_type, n));
    quantize_activations(qt->vec_dot_type, x.data(), act.data(), n);
    const void* const rows[4] = {w.data(), w.data() + stride, w.data() + 2 * stride,
                                 w.data() + 3 * stride};
    float out[4];
    rows4(n, rows, act.data(), out);
    for (int k = 0; k < 4; ++k) {
      EXPECT_EQ(out[k], qt->dot_avx512(n, rows[k], act.data()))
          << dtype_name(type) << " blocks " << nb << " row " << k;
    }
  }
  set_cpu_level(saved);
}

INSTANTIATE_TEST_SUITE_P(Types, Gemv4Test,
                         testing::Values(DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K,
                                         DType::Q6_K, DType::IQ4_XS, DType::Q4_0, DType::Q5_0,
                                         DType::Q8_0, DType::IQ4_NL),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace squish
