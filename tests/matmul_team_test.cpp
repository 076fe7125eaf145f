// Several products in one OpenMP region (matmul_team) give exactly what separate matmul() calls
// give: the same kernels on the same prepared activations, only scheduled together. Mixed types
// cover targets that share quantized activations and targets that need their own.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "kernels/cpu/gemm_int8.h"
#include "kernels/cpu/matmul.h"
#include "quant/quant.h"

namespace squish {
namespace {

struct Weights {
  DType type;
  int64_t rows;
  std::vector<uint8_t> bytes;
};

Weights make(DType type, int64_t rows, int64_t cols, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> f(rows * cols);
  for (float& v : f) v = dist(rng);
  Weights w{type, rows, std::vector<uint8_t>(row_bytes(type, cols) * rows)};
  const size_t stride = row_bytes(type, cols);
  for (int64_t r = 0; r < rows; ++r) {
    if (const QuantTraits* qt = quant_traits(type)) {
      qt->quantize(f.data() + r * cols, w.bytes.data() + r * stride, cols, nullptr);
    } else {
      auto* out = reinterpret_cast<uint16_t*>(w.bytes.data() + r * stride);
      for (int64_t i = 0; i < cols; ++i) out[i] = fp32_to_fp16(f[r * cols + i]);
    }
  }
  return w;
}

TEST(MatmulTeam, EqualsSeparateProducts) {
  std::mt19937 rng(3);
  const int64_t cols = 512;
  // Q4_K and Q6_K share Q8_K activations for the dot kernels but not the GEMM's layout; Q8_0
  // and F16 need their own.
  const std::vector<std::vector<DType>> groups = {
      {DType::Q4_K, DType::Q4_K, DType::Q6_K},
      {DType::Q8_0, DType::F16},
      {DType::Q2_K},
      // Same activation format, different codes: Q4_K / Q5_K, Q8_0 / IQ4_NL.
      {DType::Q4_K, DType::Q5_K},
      {DType::Q8_0, DType::IQ4_NL}};
  for (const auto& types : groups) {
    std::vector<Weights> ws;
    for (size_t i = 0; i < types.size(); ++i) ws.push_back(make(types[i], 37 + 16 * i, cols, rng));
    for (int64_t n : {1, 5, 17, 40}) {
      std::normal_distribution<float> dist(0.0f, 1.0f);
      std::vector<float> x(n * cols);
      for (float& v : x) v = dist(rng);
      std::vector<std::vector<float>> separate, together;
      std::vector<MatmulTarget> targets;
      for (const Weights& w : ws) {
        separate.emplace_back(n * w.rows);
        together.emplace_back(n * w.rows, -1.0f);
        matmul(x.data(), n, w.bytes.data(), w.type, w.rows, cols, separate.back().data(), w.rows);
      }
      for (size_t i = 0; i < ws.size(); ++i) {
        targets.push_back(
            {ws[i].bytes.data(), ws[i].type, ws[i].rows, together[i].data(), ws[i].rows});
      }
      std::vector<uint8_t> scratch(matmul_scratch_bytes(n, cols));
#pragma omp parallel num_threads(2)
      matmul_team(x.data(), n, cols, targets.data(), static_cast<int>(targets.size()),
                  scratch.data());
      for (size_t i = 0; i < ws.size(); ++i) {
        for (int64_t j = 0; j < n * ws[i].rows; ++j) {
          ASSERT_EQ(together[i][j], separate[i][j])
              << dtype_name(ws[i].type) << " target " << i << " tokens " << n << " at " << j;
        }
      }
      // Packed matrices (what Session uses) in the same team: equal to the per-call GEMM where
      // it runs (n >= kGemmMinTokens); otherwise the dot kernels' float rounding differs.
      GemmPackedWeights packed;
      for (const Weights& w : ws) packed.add(w.type, w.bytes.data(), w.rows, cols);
      packed.pack();
      for (size_t i = 0; i < ws.size(); ++i) {
        targets[i].packed = packed.find(ws[i].bytes.data());
        std::fill(together[i].begin(), together[i].end(), -1.0f);
      }
#pragma omp parallel num_threads(2)
      matmul_team(x.data(), n, cols, targets.data(), static_cast<int>(targets.size()),
                  scratch.data());
      for (size_t i = 0; i < ws.size(); ++i) {
        for (int64_t j = 0; j < n * ws[i].rows; ++j) {
          if (targets[i].packed == nullptr || n >= kGemmMinTokens) {
            ASSERT_EQ(together[i][j], separate[i][j]) << dtype_name(ws[i].type) << " packed";
          } else {
            ASSERT_NEAR(together[i][j], separate[i][j], 1e-4 * (1 + std::fabs(separate[i][j])))
                << dtype_name(ws[i].type) << " packed, tokens " << n;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace squish
