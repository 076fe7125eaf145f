// CPU kernels against the scalar reference. Tolerance: products are float32 with different
// summation orders, so |fast - ref| <= 1e-5 * (sum_i |x_i w_i|) + 1e-6 per output.
#include <cpuid.h>
#include <gtest/gtest.h>
#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "kernels/cpu/matmul.h"
#include "quant/quant.h"

namespace squish {
namespace {

std::vector<uint8_t> make_weights(DType type, int64_t rows, int64_t cols, std::mt19937& rng,
                                  std::vector<float>& as_f32) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<uint8_t> bytes(row_bytes(type, cols) * rows);
  as_f32.resize(rows * cols);
  for (int64_t i = 0; i < rows * cols; ++i) {
    const float v = dist(rng);
    if (type == DType::F32) {
      reinterpret_cast<float*>(bytes.data())[i] = v;
      as_f32[i] = v;
    } else if (type == DType::F16) {
      reinterpret_cast<uint16_t*>(bytes.data())[i] = fp32_to_fp16(v);
      as_f32[i] = fp16_to_fp32(fp32_to_fp16(v));
    } else {
      reinterpret_cast<uint16_t*>(bytes.data())[i] = fp32_to_bf16(v);
      as_f32[i] = bf16_to_fp32(fp32_to_bf16(v));
    }
  }
  return bytes;
}

struct Shape {
  int64_t rows, cols, tokens;
};

class MatmulTest : public testing::TestWithParam<std::tuple<DType, CpuLevel>> {};

TEST_P(MatmulTest, MatchesReference) {
  const auto [type, level] = GetParam();
  if (static_cast<int>(level) > static_cast<int>(detected_cpu_level()))
    GTEST_SKIP() << "CPU lacks it";
  const CpuLevel saved = active_cpu_level();
  set_cpu_level(level);
  std::mt19937 rng(7);
  for (Shape s :
       {Shape{1, 1, 1}, Shape{5, 7, 1}, Shape{33, 17, 1}, Shape{64, 384, 1}, Shape{31, 40, 3},
        Shape{100, 129, 7}, Shape{65, 64, 13}, Shape{48, 1000, 6}, Shape{257, 96, 32}}) {
    std::vector<float> wf;
    auto w = make_weights(type, s.rows, s.cols, rng, wf);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> x(s.tokens * s.cols);
    for (float& v : x) v = dist(rng);
    std::vector<float> ref(s.tokens * s.rows), got(s.tokens * s.rows, NAN);
    matmul_reference(x.data(), s.tokens, w.data(), type, s.rows, s.cols, ref.data(), s.rows);
    matmul(x.data(), s.tokens, w.data(), type, s.rows, s.cols, got.data(), s.rows);
    for (int64_t t = 0; t < s.tokens; ++t) {
      for (int64_t r = 0; r < s.rows; ++r) {
        double mag = 0;
        for (int64_t i = 0; i < s.cols; ++i)
          mag += std::fabs(x[t * s.cols + i] * wf[r * s.cols + i]);
        ASSERT_NEAR(got[t * s.rows + r], ref[t * s.rows + r], 1e-5 * mag + 1e-6)
            << dtype_name(type) << " " << cpu_level_name(level) << " shape " << s.rows << "x"
            << s.cols << " tokens " << s.tokens << " at t=" << t << " r=" << r;
      }
    }
  }
  set_cpu_level(saved);
}

INSTANTIATE_TEST_SUITE_P(AllTypesAndLevels, MatmulTest,
                         testing::Combine(testing::Values(DType::F32, DType::F16, DType::BF16),
                                          testing::Values(CpuLevel::Scalar, CpuLevel::AVX2,
                                                          CpuLevel::AVX512)));

TEST(Matmul, RejectsUnsupportedType) {
  float x = 1, y = 0;
  uint8_t w[34] = {};
  EXPECT_THROW(matmul(&x, 1, w, DType::I32, 1, 1, &y, 1), std::exception);
  // Quantized rows must hold whole blocks.
  EXPECT_THROW(matmul(&x, 1, w, DType::Q8_0, 1, 16, &y, 1), std::exception);
}

// Quantized weights through the runtime's matmul (activations quantized to the type's dot format)
// against the float reference on the same dequantized weights. The gap is the activation
// quantization error: bounded relative to sum |x_i w_i|.
class QuantMatmulTest : public testing::TestWithParam<DType> {};

TEST_P(QuantMatmulTest, CloseToDequantizedReference) {
  const DType type = GetParam();
  const QuantTraits* qt = quant_traits(type);
  ASSERT_NE(qt, nullptr);
  std::mt19937 rng(11);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const int64_t rows = 37, cols = 512;
  std::vector<float> wf(rows * cols), x(5 * cols);
  for (float& v : wf) v = dist(rng);
  for (float& v : x) v = dist(rng);
  std::vector<uint8_t> wq(row_bytes(type, cols) * rows);
  for (int64_t r = 0; r < rows; ++r)
    qt->quantize(&wf[r * cols], &wq[r * row_bytes(type, cols)], cols, nullptr);
  for (int64_t n_tokens : {1, 5}) {
    std::vector<float> ref(n_tokens * rows), got(n_tokens * rows);
    matmul_reference(x.data(), n_tokens, wq.data(), type, rows, cols, ref.data(), rows);
    matmul(x.data(), n_tokens, wq.data(), type, rows, cols, got.data(), rows);
    for (int64_t t = 0; t < n_tokens; ++t) {
      for (int64_t r = 0; r < rows; ++r) {
        double mag = 0;
        for (int64_t i = 0; i < cols; ++i) mag += std::fabs(x[t * cols + i] * wf[r * cols + i]);
        ASSERT_NEAR(got[t * rows + r], ref[t * rows + r], 0.01 * mag) << dtype_name(type);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllQuantTypes, QuantMatmulTest,
                         testing::Values(DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0,
                                         DType::Q5_1, DType::IQ4_NL, DType::Q2_K, DType::Q3_K,
                                         DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::IQ4_XS),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(Convert, HalfRoundTripsEveryValue) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = fp16_to_fp32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(fp16_to_fp32(fp32_to_fp16(f))));
      continue;
    }
    EXPECT_EQ(fp32_to_fp16(f), h) << h;
  }
}

__attribute__((target("f16c"))) uint16_t hw_fp32_to_fp16(float f) {
  return static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
}
__attribute__((target("f16c"))) float hw_fp16_to_fp32(uint16_t h) {
  return _cvtsh_ss(h);
}

TEST(Convert, HalfMatchesHardwareRounding) {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;  // F16C: cpuid leaf 1, ECX bit 29 (clang 14)
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || (ecx & (1u << 29)) == 0) GTEST_SKIP();
  std::mt19937 rng(3);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 2000000; ++i) {
    uint32_t b = bits(rng);
    float f;
    std::memcpy(&f, &b, 4);
    if (std::isnan(f)) continue;
    ASSERT_EQ(fp32_to_fp16(f), hw_fp32_to_fp16(f)) << std::hexfloat << f;
  }
  for (uint32_t h = 0; h < 65536; ++h) {
    const float a = fp16_to_fp32(static_cast<uint16_t>(h)),
                b = hw_fp16_to_fp32(static_cast<uint16_t>(h));
    if (std::isnan(a)) continue;
    ASSERT_EQ(a, b) << h;
  }
}

TEST(Convert, BFloat16RoundsToNearestEven) {
  EXPECT_EQ(fp32_to_bf16(1.0f), 0x3f80);
  // 1 + 2^-8 is exactly halfway between two bf16 values: ties to even (down).
  EXPECT_EQ(fp32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  EXPECT_EQ(fp32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_TRUE(std::isnan(bf16_to_fp32(fp32_to_bf16(NAN))));
  EXPECT_EQ(bf16_to_fp32(fp32_to_bf16(-2.5f)), -2.5f);
}

TEST(Dot, MatchesScalarForAllLengths) {
  std::mt19937 rng(1);
  std::normal_distribution<float> dist;
  for (int n = 0; n < 70; ++n) {
    std::vector<float> a(n), b(n);
    double ref = 0, mag = 0;
    for (int i = 0; i < n; ++i) {
      a[i] = dist(rng);
      b[i] = dist(rng);
      ref += static_cast<double>(a[i]) * b[i];
      mag += std::fabs(a[i] * b[i]);
    }
    EXPECT_NEAR(dot_f32(a.data(), b.data(), n), ref, 1e-5 * mag + 1e-6) << n;
  }
}

}  // namespace
}  // namespace squish
