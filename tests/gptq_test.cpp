// GPTQ pieces: block grids read and write every quantized type exactly; the inverse-Hessian
// factor is right; GPTQ beats the plain quantizer on the layer-output error it minimises, in
// every block type, with and without act-order, and its packed output is what it reports.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "calib/block_grid.h"
#include "calib/gptq.h"
#include "core/error.h"
#include "quant/quant.h"

namespace squish {
namespace {

const DType kGridTypes[] = {DType::Q4_0, DType::Q4_1,   DType::Q5_0, DType::Q5_1,
                            DType::Q8_0, DType::IQ4_NL, DType::Q2_K, DType::Q3_K,
                            DType::Q4_K, DType::Q5_K,   DType::Q6_K, DType::IQ4_XS};

TEST(BlockGrid, ValuesMatchDequantizationAndCodesRepackExactly) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (DType type : kGridTypes) {
    const QuantTraits& qt = *quant_traits(type);
    const int n = 512;
    std::vector<float> x(n), imp(n), deq(n);
    for (int i = 0; i < n; ++i) {
      x[i] = normal(rng) * (i % 7 == 0 ? 4.0f : 1.0f) + (type == DType::Q4_1 ? 0.5f : 0.0f);
      imp[i] = 0.1f + std::fabs(normal(rng));
    }
    const float* const importance_cases[2] = {nullptr, imp.data()};
    for (const float* importance : importance_cases) {
      std::vector<uint8_t> q(row_bytes(type, n));
      qt.quantize(x.data(), q.data(), n, importance);
      qt.dequantize(q.data(), deq.data(), n);
      const int bs = block_grid_size(type);
      const size_t bb = traits(type).block_bytes;
      for (int b = 0; b < n / bs; ++b) {
        BlockGrid g;
        unpack_block_grid(type, q.data() + b * bb, g);
        ASSERT_EQ(g.size, bs);
        for (int i = 0; i < bs; ++i) {
          ASSERT_EQ(g.value(i, g.code[i]), deq[b * bs + i]) << dtype_name(type) << " element " << i;
          // The nearest code to a grid value gives that value back.
          ASSERT_EQ(g.value(i, g.nearest(i, deq[b * bs + i])), deq[b * bs + i]) << dtype_name(type);
        }
        // Scrambling the codes, then writing the originals back, restores the block byte for byte.
        std::vector<uint8_t> block(q.data() + b * bb, q.data() + (b + 1) * bb);
        BlockGrid scrambled = g;
        for (int i = 0; i < bs; ++i)
          scrambled.code[i] = static_cast<uint8_t>((g.code[i] + 1 + i) % g.n_levels);
        pack_block_codes(type, scrambled, block.data());
        BlockGrid check;
        unpack_block_grid(type, block.data(), check);
        for (int i = 0; i < bs; ++i)
          ASSERT_EQ(check.code[i], scrambled.code[i]) << dtype_name(type);
        pack_block_codes(type, g, block.data());
        ASSERT_EQ(std::memcmp(block.data(), q.data() + b * bb, bb), 0) << dtype_name(type);
      }
    }
  }
}

// H = X^T X + small ridge for correlated random inputs X (tokens x dim).
std::vector<double> correlated_hessian(int dim, int tokens, std::mt19937& rng) {
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> mix(static_cast<size_t>(dim) * dim);
  for (double& v : mix) v = normal(rng) / std::sqrt(dim);
  std::vector<double> h(static_cast<size_t>(dim) * dim, 0.0), z(dim), x(dim);
  for (int t = 0; t < tokens; ++t) {
    for (double& v : z) v = normal(rng);
    for (int i = 0; i < dim; ++i) {
      x[i] = z[i] * (1.0 + 3.0 * (i % 5 == 0));  // some columns far more active
      for (int k = 0; k < dim; ++k) x[i] += mix[i * dim + k] * z[k];
    }
    for (int i = 0; i < dim; ++i)
      for (int k = 0; k < dim; ++k) h[i * dim + k] += x[i] * x[k];
  }
  return h;
}

TEST(Gptq, InverseCholeskyFactor) {
  std::mt19937 rng(11);
  const int n = 48;
  std::vector<double> h = correlated_hessian(n, 400, rng);
  std::vector<double> u;
  ASSERT_TRUE(inverse_cholesky_upper(h.data(), n, u));
  // U is upper triangular with a positive diagonal and (U^T U) H = I.
  for (int i = 0; i < n; ++i) {
    EXPECT_GT(u[i * n + i], 0.0);
    for (int j = 0; j < i; ++j) EXPECT_EQ(u[i * n + j], 0.0);
  }
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) {
      double s = 0;
      for (int k = 0; k < n; ++k) {
        double hinv_ik = 0;
        for (int m = 0; m <= std::min(i, k); ++m) hinv_ik += u[m * n + i] * u[m * n + k];
        s += hinv_ik * h[k * n + j];
      }
      EXPECT_NEAR(s, i == j ? 1.0 : 0.0, 1e-8) << i << "," << j;
    }
  }
  // Not positive definite: reported, not a crash.
  std::vector<double> bad(static_cast<size_t>(n) * n, 0.0);
  for (int i = 0; i < n; ++i) bad[i * n + i] = i == 7 ? -1.0 : 1.0;
  EXPECT_FALSE(inverse_cholesky_upper(bad.data(), n, u));
}

TEST(Gptq, BeatsPlainQuantizationInEveryBlockType) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int rows = 16, cols = 256;
  std::vector<double> h = correlated_hessian(cols, 512, rng);
  h[3 * cols + 3] = 0.0;  // a dead column: no token activated it
  for (int k = 0; k < cols; ++k) h[3 * cols + k] = h[k * cols + 3] = 0.0;
  std::vector<float> w(static_cast<size_t>(rows) * cols);
  for (float& v : w) v = normal(rng) * 0.05f;
  for (DType type : kGridTypes) {
    for (bool act_order : {false, true}) {
      GptqOptions opt;
      opt.act_order = act_order;
      std::vector<uint8_t> out(row_bytes(type, cols) * rows);
      std::vector<float> deq(w.size()), check(w.size());
      const GptqStats s =
          gptq_quantize(w.data(), rows, cols, h.data(), type, opt, out.data(), deq.data());
      EXPECT_EQ(s.dead_columns, 1);
      for (int r = 0; r < rows; ++r)
        quant_traits(type)->dequantize(out.data() + r * row_bytes(type, cols),
                                       check.data() + r * cols, cols);
      ASSERT_EQ(check, deq) << dtype_name(type);
      EXPECT_NEAR(s.proxy_error, hessian_error(w.data(), deq.data(), rows, cols, h.data()),
                  1e-3 * s.proxy_error);
      // Q8_0 has little error left to redistribute; the coarse types gain most.
      EXPECT_LT(s.proxy_error, (type == DType::Q8_0 ? 0.9 : 0.75) * s.rtn_error)
          << dtype_name(type) << (act_order ? " act-order" : "");
    }
  }
}

TEST(Gptq, DampingGrowsUntilCholeskySucceeds) {
  // A rank-one Hessian with integer entries: the Cholesky of the undamped matrix meets an exact
  // zero pivot, so GPTQ must raise the damping from 0 until it succeeds.
  const int cols = 64, rows = 4;
  std::vector<double> h(static_cast<size_t>(cols) * cols);
  for (int i = 0; i < cols; ++i)
    for (int k = 0; k < cols; ++k) h[i * cols + k] = static_cast<double>((i % 4 + 1) * (k % 4 + 1));
  std::vector<float> w(rows * cols, 0.01f);
  std::vector<uint8_t> out(row_bytes(DType::Q8_0, cols) * rows);
  GptqOptions opt;
  opt.damp = 0.0;
  const GptqStats s = gptq_quantize(w.data(), rows, cols, h.data(), DType::Q8_0, opt, out.data());
  EXPECT_GT(s.damp_used, 0.0);
  // No signal at all is an error, not a division by zero.
  std::vector<double> zero(static_cast<size_t>(cols) * cols, 0.0);
  EXPECT_THROW(gptq_quantize(w.data(), rows, cols, zero.data(), DType::Q8_0, opt, out.data()),
               Error);
}

}  // namespace
}  // namespace squish
