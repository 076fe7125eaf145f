// The int8 GEMM of quantized prefill (kernels/cpu/gemm_int8.h) for every quantized type.
//
// 1. Unpacking: d * sc * (code - offset) + m * mn equals the type's dequantization to float
//    rounding (1e-6 of the row's largest value).
// 2. Activations: the AVX-512 quantizer gives the same bytes as the reference path (the dot
//    products' quantize_activations).
// 3. The product: against the exact value in double of sum_i weight_i * activation_i, with
//    activations quantized as the kernel sees them. The kernel's integer sums per scale block
//    (I, J) are exact, then it adds da * (d * I + m * J) in float, so the bound is 1e-5 * sum
//    over scale blocks of |da| (|d I| + |m J|): relative to the magnitude of what is summed (a
//    min term can be larger than the result). Layout mistakes give errors of the order of the
//    result itself.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "kernels/cpu/gemm_int8.h"
#include "kernels/cpu/matmul.h"
#include "quant/blocks.h"
#include "quant/quant.h"

namespace squish {
namespace {

const DType kAllTypes[] = {DType::Q4_0, DType::Q4_1,   DType::Q5_0, DType::Q5_1,
                           DType::Q8_0, DType::IQ4_NL, DType::Q2_K, DType::Q3_K,
                           DType::Q4_K, DType::Q5_K,   DType::Q6_K, DType::IQ4_XS};

std::vector<float> values(int64_t n, std::mt19937& rng, int pattern) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(n);
  for (int64_t i = 0; i < n; ++i) {
    switch (pattern) {
      case 0:
        x[i] = dist(rng);
        break;
      case 1:  // mostly zero with outliers
        x[i] = (i % 32 == 7) ? 50.0f * dist(rng) : 0.0f;
        break;
      case 2:  // positive offset: exercises the mins / code offsets
        x[i] = 2.0f + 0.5f * dist(rng);
        break;
      default:  // scales varying by block, some blocks zero
        x[i] = ((i / 32) % 5 == 0) ? 0.0f : dist(rng) * std::pow(10.0f, float((i / 32) % 4) - 2);
        break;
    }
  }
  return x;
}

std::vector<uint8_t> quantize_rows(DType type, const std::vector<float>& w, int64_t rows,
                                   int64_t cols) {
  const QuantTraits* qt = quant_traits(type);
  const size_t stride = row_bytes(type, cols);
  std::vector<uint8_t> out(stride * rows);
  for (int64_t r = 0; r < rows; ++r) {
    qt->quantize(w.data() + r * cols, out.data() + r * stride, cols, nullptr);
  }
  return out;
}

// Quantized activations as the kernel sees them: q and da per scale block.
struct QuantizedRow {
  std::vector<int> q;
  std::vector<double> da;
};
QuantizedRow quantize_row(DType vec_dot_type, const float* x, int64_t k) {
  std::vector<uint8_t> row(row_bytes(vec_dot_type, k));
  quantize_activations(vec_dot_type, x, row.data(), k);
  const int64_t block = vec_dot_type == DType::Q8_K ? QK_K : 32;
  QuantizedRow out{std::vector<int>(k), std::vector<double>(k / block)};
  for (int64_t b = 0; b < k / block; ++b) {
    const int8_t* qs;
    if (vec_dot_type == DType::Q8_K) {
      const auto& blk = reinterpret_cast<const block_q8_K*>(row.data())[b];
      out.da[b] = blk.d, qs = blk.qs;
    } else if (vec_dot_type == DType::Q8_1) {
      const auto& blk = reinterpret_cast<const block_q8_1*>(row.data())[b];
      out.da[b] = fp16_to_fp32(blk.d), qs = blk.qs;
    } else {
      const auto& blk = reinterpret_cast<const block_q8_0*>(row.data())[b];
      out.da[b] = fp16_to_fp32(blk.d), qs = blk.qs;
    }
    for (int64_t j = 0; j < block; ++j) out.q[b * block + j] = qs[j];
  }
  return out;
}

// A row unpacked into owned arrays.
struct UnpackedRow {
  std::vector<uint8_t> codes;
  std::vector<int32_t> sc;
  std::vector<int16_t> mn;
  std::vector<float> d, m;
  UnpackedRow(DType type, const void* row, int64_t k) {
    const GemmFormat f = gemm_format(type);
    const int64_t ng = k / f.group, ns = ng / f.groups_per_scale;
    codes.resize(k), sc.resize(ng), mn.resize(ng), d.resize(ns), m.resize(ns);
    gemm_unpack_row(type, row, k, {codes.data(), sc.data(), mn.data(), d.data(), m.data()});
  }
};

class GemmInt8Test : public testing::TestWithParam<DType> {};

TEST_P(GemmInt8Test, UnpackMatchesDequantize) {
  const DType type = GetParam();
  const QuantTraits* qt = quant_traits(type);
  const GemmFormat f = gemm_format(type);
  ASSERT_GT(f.group, 0);
  EXPECT_EQ(f.act_type, qt->vec_dot_type);
  const int G = f.group, GS = f.group * f.groups_per_scale;
  std::mt19937 rng(11);
  const int64_t k = 3 * traits(type).block_size;
  for (int pattern = 0; pattern < 4; ++pattern) {
    const std::vector<float> w = values(k, rng, pattern);
    const std::vector<uint8_t> row = quantize_rows(type, w, 1, k);
    std::vector<float> deq(k);
    qt->dequantize(row.data(), deq.data(), k);
    const UnpackedRow u(type, row.data(), k);
    float max_abs = 0;
    for (float v : deq) max_abs = std::max(max_abs, std::fabs(v));
    for (int64_t i = 0; i < k; ++i) {
      const double v =
          static_cast<double>(u.d[i / GS]) * u.sc[i / G] * (u.codes[i] - f.code_offset) +
          static_cast<double>(u.m[i / GS]) * u.mn[i / G];
      ASSERT_NEAR(v, deq[i], 1e-6 * max_abs + 1e-30)
          << dtype_name(type) << " pattern " << pattern << " element " << i;
    }
  }
}

// The AVX-512 activation quantizer writes exactly what the reference path does.
TEST_P(GemmInt8Test, ActivationsMatchReference) {
  const DType type = GetParam();
  if (!gemm_available(type)) GTEST_SKIP() << "no AVX-512 VNNI";
  const GemmFormat f = gemm_format(type);
  std::mt19937 rng(5);
  const int64_t k = 2 * f.group * f.groups_per_scale * (f.groups_per_scale == 1 ? 4 : 1);
  const int64_t n = 9;
  std::vector<float> x;
  for (int64_t t = 0; t < n; ++t) {
    const std::vector<float> row = values(k, rng, static_cast<int>(t % 4));
    x.insert(x.end(), row.begin(), row.end());
  }
  // Ties: equal magnitudes of both signs (the first one sets Q8_K's sign), exact halves.
  for (int64_t i = 0; i < k; ++i) x[4 * k + i] = (i % 3 == 0) ? -2.0f : (i % 3 == 1) ? 2.0f : 0.5f;
  for (int64_t i = 0; i < k; ++i) x[5 * k + i] = 127.0f * static_cast<float>(i % 7) / 2.0f;
  const size_t bytes = gemm_activation_bytes(f, n, k);
  std::vector<uint8_t> a_buf(bytes), b_buf(bytes);
  const GemmActivations a = gemm_bind_activations(f, a_buf.data(), n, k);
  const GemmActivations b = gemm_bind_activations(f, b_buf.data(), n, k);
  gemm_prepare_activations_reference(x.data(), 0, n, a);
  gemm_prepare_activations(x.data(), 0, n, b);
  const int64_t ng = k / f.group, ns = ng / f.groups_per_scale;
  for (int64_t i = 0; i < n * k; ++i) ASSERT_EQ(a.q[i], b.q[i]) << "q " << i;
  for (int64_t i = 0; i < n * ns; ++i) ASSERT_EQ(a.da[i], b.da[i]) << "da " << i;
  for (int64_t i = 0; i < n * ng; ++i) {
    ASSERT_EQ(a.qsum[i], b.qsum[i]) << "qsum " << i;
    ASSERT_EQ(a.qoff[i], b.qoff[i]) << "qoff " << i;
    ASSERT_EQ(a.da_qsum[i], b.da_qsum[i]) << "da_qsum " << i;
  }
}

TEST_P(GemmInt8Test, MatchesExactProduct) {
  const DType type = GetParam();
  if (!gemm_available(type)) GTEST_SKIP() << "no AVX-512 VNNI";
  const QuantTraits* qt = quant_traits(type);
  const GemmFormat f = gemm_format(type);
  const int G = f.group, GS = f.group * f.groups_per_scale;
  std::mt19937 rng(23 + static_cast<int>(type));
  const int64_t block = traits(type).block_size;
  struct Shape {
    int64_t rows, cols;
  };
  // Rows: one panel, a partial panel, several panels with a partial one.
  for (Shape s : {Shape{16, 2 * block}, Shape{5, block}, Shape{37, 3 * block}}) {
    const int pattern = static_cast<int>(s.rows % 4);
    const std::vector<float> wf = values(s.rows * s.cols, rng, pattern);
    const std::vector<uint8_t> w = quantize_rows(type, wf, s.rows, s.cols);
    const size_t stride = row_bytes(type, s.cols);
    std::vector<UnpackedRow> rows;
    for (int64_t r = 0; r < s.rows; ++r) rows.emplace_back(type, w.data() + r * stride, s.cols);
    for (int64_t n_tokens : {1, 3, 4, 5, 17, 64}) {
      const std::vector<float> x = values(n_tokens * s.cols, rng, (pattern + 1) % 4);
      const int64_t ldy = s.rows + 3;
      std::vector<float> y(n_tokens * ldy, NAN);
      gemm_int8(*qt, x.data(), n_tokens, w.data(), s.rows, s.cols, y.data(), ldy);
      for (int64_t t = 0; t < n_tokens; ++t) {
        const QuantizedRow a = quantize_row(qt->vec_dot_type, &x[t * s.cols], s.cols);
        for (int64_t r = 0; r < s.rows; ++r) {
          const UnpackedRow& u = rows[r];
          // Exact value and the magnitude of the terms the kernel adds in float.
          double exact = 0, bound = 0;
          for (int64_t sb = 0; sb < s.cols / GS; ++sb) {
            double I = 0, J = 0;
            for (int64_t g = sb * GS / G; g < (sb + 1) * GS / G; ++g) {
              double isum = 0, qsum = 0;
              for (int64_t i = g * G; i < (g + 1) * G; ++i) {
                isum += (u.codes[i] - f.code_offset) * a.q[i];
                qsum += a.q[i];
              }
              I += u.sc[g] * isum;
              J += u.mn[g] * qsum;
            }
            const double da = a.da[sb * GS / (qt->vec_dot_type == DType::Q8_K ? QK_K : 32)];
            exact += da * (u.d[sb] * I + u.m[sb] * J);
            bound += std::fabs(da) * (std::fabs(u.d[sb] * I) + std::fabs(u.m[sb] * J));
          }
          ASSERT_NEAR(y[t * ldy + r], exact, 1e-5 * bound + 1e-30)
              << dtype_name(type) << " " << s.rows << "x" << s.cols << " tokens " << n_tokens
              << " t " << t << " r " << r;
        }
        for (int64_t r = s.rows; r < ldy; ++r) {
          ASSERT_TRUE(std::isnan(y[t * ldy + r])) << "wrote past the rows at t " << t;
        }
      }
    }
  }
}

// A matrix packed once (what Session keeps) gives exactly the per-call product, through
// matmul_team for every token count (decode included).
TEST_P(GemmInt8Test, PackedMatrixEqualsPerCallPanels) {
  const DType type = GetParam();
  if (!gemm_available(type)) GTEST_SKIP() << "no AVX-512 VNNI";
  const QuantTraits* qt = quant_traits(type);
  std::mt19937 rng(31);
  const int64_t rows = 37, cols = 2 * traits(type).block_size;
  const std::vector<uint8_t> w = quantize_rows(type, values(rows * cols, rng, 0), rows, cols);
  GemmPackedWeights set;
  ASSERT_TRUE(set.add(type, w.data(), rows, cols));
  set.pack();
  const GemmPackedMatrix* packed = set.find(w.data());
  ASSERT_NE(packed, nullptr);
  for (int64_t n_tokens : {1, 3, 17}) {
    const std::vector<float> x = values(n_tokens * cols, rng, 3);
    std::vector<float> per_call(n_tokens * rows), from_packed(n_tokens * rows, NAN);
    gemm_int8(*qt, x.data(), n_tokens, w.data(), rows, cols, per_call.data(), rows);
    const MatmulTarget target{w.data(), type, rows, from_packed.data(), rows, packed};
    std::vector<uint8_t> scratch(matmul_scratch_bytes(n_tokens, cols));
    matmul_team(x.data(), n_tokens, cols, &target, 1, scratch.data());
    for (int64_t i = 0; i < n_tokens * rows; ++i) {
      ASSERT_EQ(from_packed[i], per_call[i])
          << dtype_name(type) << " tokens " << n_tokens << " at " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, GemmInt8Test, testing::ValuesIn(kAllTypes),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace squish
