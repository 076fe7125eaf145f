// K-quant family (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS with Q8_K activations): error bounds from
// ggml's tests/test-quantize-fns.cpp, a second (test-side) decoder, SIMD against the scalar
// reference, importance weighting, and bit-exactness against goldens made by llama.cpp's ggml
// (tests/interop/ggml_kquant_check.cpp writes them; see tests/data/ggml_kquant/README.md).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "kernels/cpu/matmul.h"
#include "quant/quant.h"
#include "test_util.h"

namespace squish {
namespace {

struct KType {
  DType type;
  const char* name;       // file-name stem of the goldens
  float max_total_error;  // ggml's MAX_QUANTIZATION_TOTAL_ERROR(_2BITS / _3BITS)
  float max_dot_error;    // ggml's MAX_DOT_PRODUCT_ERROR(_LOWBIT for Q2_K)
};

void PrintTo(const KType& t, std::ostream* os) {
  *os << t.name;
}

const KType kKTypes[] = {
    {DType::Q2_K, "q2_K", 0.0075f, 0.04f}, {DType::Q3_K, "q3_K", 0.0040f, 0.02f},
    {DType::Q4_K, "q4_K", 0.002f, 0.02f},  {DType::Q5_K, "q5_K", 0.002f, 0.02f},
    {DType::Q6_K, "q6_K", 0.002f, 0.02f},  {DType::IQ4_XS, "iq4_xs", 0.002f, 0.02f},
};

class KQuantTest : public testing::TestWithParam<KType> {
 protected:
  const QuantTraits& traits() const { return *quant_traits(GetParam().type); }
  size_t bytes(int64_t n) const { return row_bytes(GetParam().type, n); }
  std::vector<uint8_t> quantize(const std::vector<float>& x,
                                const float* importance = nullptr) const {
    std::vector<uint8_t> q(bytes(static_cast<int64_t>(x.size())));
    traits().quantize(x.data(), q.data(), static_cast<int64_t>(x.size()), importance);
    return q;
  }
  std::vector<float> dequantize(const std::vector<uint8_t>& q, int64_t n) const {
    std::vector<float> y(n);
    traits().dequantize(q.data(), y.data(), n);
    return y;
  }
};

// test-quantize-fns' synthetic data and its error metric, sqrt(sum d^2) / n (not an RMSE: the
// bounds are stated in it).
std::vector<float> ggml_data(int64_t n, float offset, float amplitude = 2.0f) {
  std::vector<float> x(n);
  for (int64_t i = 0; i < n; ++i)
    x[i] = 0.1f + amplitude * std::cos(static_cast<float>(i) + offset);
  return x;
}
double ggml_error(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += (static_cast<double>(a[i]) - b[i]) * (a[i] - b[i]);
  return std::sqrt(s) / static_cast<double>(a.size());
}

std::vector<float> gaussian(int64_t n, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> x(n);
  for (float& v : x) v = dist(rng);
  return x;
}

std::vector<block_q8_K> activations(const std::vector<float>& x) {
  std::vector<block_q8_K> a(x.size() / QK_K);
  quantize_act_q8_K(x.data(), a.data(), static_cast<int64_t>(x.size()));
  return a;
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}
std::vector<float> read_floats(const std::string& path) {
  const std::vector<uint8_t> b = read_file(path);
  std::vector<float> v(b.size() / sizeof(float));
  std::memcpy(v.data(), b.data(), v.size() * sizeof(float));
  return v;
}

// Byte offsets of the half-precision super-block scales in each block.
std::vector<size_t> half_offsets(DType type) {
  switch (type) {
    case DType::Q2_K:
      return {80, 82};
    case DType::Q3_K:
      return {108};
    case DType::Q6_K:
      return {208};
    case DType::IQ4_XS:
      return {0};
    default:
      return {0, 2};  // Q4_K, Q5_K
  }
}

// ---- A second decoder, written from the format description rather than from kquants.cpp: it
// reads fields by byte offset and decodes one element at a time.

float half_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_to_fp32(h);
}

float decode_element(DType type, const uint8_t* b, int e) {
  const int half = e / 128, r = e % 128, group = r / 32, l = r % 32;
  switch (type) {
    case DType::Q2_K: {  // scales[16] qs[64] d dmin
      const int q = (b[16 + 32 * half + l] >> (2 * group)) & 3;
      const uint8_t s = b[e / 16];
      return half_at(b + 80) * (s & 15) * q - half_at(b + 82) * (s >> 4);
    }
    case DType::Q3_K: {  // hmask[32] qs[64] scales[12] d
      const int low = (b[32 + 32 * half + l] >> (2 * group)) & 3;
      const int high = (b[e % 32] >> (e / 32)) & 1;
      const int j = e / 16;
      const uint8_t* s = b + 96;
      const int sc =
          (((j < 8 ? s[j] : s[j - 8] >> 4) & 15) | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) -
          32;
      return half_at(b + 108) * sc * (low + 4 * high - 4);
    }
    case DType::Q4_K:
    case DType::Q5_K: {  // d dmin scales[12] (qh[32]) qs[128]
      const uint8_t* s = b + 4;
      const int j = e / 32;
      const int sc = j < 4 ? s[j] & 63 : (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
      const int m = j < 4 ? s[j + 4] & 63 : (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
      const uint8_t* qs = b + (type == DType::Q4_K ? 16 : 48);
      int q = (qs[32 * (e / 64) + e % 32] >> (4 * ((e / 32) % 2))) & 15;
      if (type == DType::Q5_K) q |= ((b[16 + e % 32] >> j) & 1) << 4;
      return half_at(b) * sc * q - half_at(b + 2) * m;
    }
    case DType::Q6_K: {  // ql[128] qh[64] scales[16] d
      const int lo = (b[64 * half + 32 * (group % 2) + l] >> (4 * (group / 2))) & 15;
      const int hi = (b[128 + 32 * half + l] >> (2 * group)) & 3;
      return half_at(b + 208) * static_cast<int8_t>(b[192 + e / 16]) * ((lo | (hi << 4)) - 32);
    }
    case DType::IQ4_XS: {  // d scales_h scales_l[4] qs[128]
      static const int kValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                      1,    13,   25,  38,  53,  69,  89,  113};
      const int ib = e / 32, k = e % 32;
      const uint16_t sh = static_cast<uint16_t>(b[2] | (b[3] << 8));
      const int ls =
          (((b[4 + ib / 2] >> (4 * (ib % 2))) & 15) | (((sh >> (2 * ib)) & 3) << 4)) - 32;
      const int code = (b[8 + 16 * ib + k % 16] >> (4 * (k / 16))) & 15;
      return half_at(b) * ls * kValues[code];
    }
    default:
      return NAN;
  }
}

// ------------------------------------------------------------------------------------------------

TEST_P(KQuantTest, TraitsDescribeTheFormat) {
  const QuantTraits& t = traits();
  EXPECT_EQ(t.type, GetParam().type);
  EXPECT_EQ(t.vec_dot_type, DType::Q8_K);
  EXPECT_TRUE(t.quantize && t.dequantize && t.dot_scalar && t.dot_avx2 && t.dot_avx512);
  EXPECT_EQ(squish::traits(GetParam().type).block_size, QK_K);
  EXPECT_TRUE(is_quantized(GetParam().type));
}

TEST_P(KQuantTest, TotalErrorWithinGgmlBound) {
  for (float offset : {0.0f, 0.5f, 1.0f, 3.0f}) {
    const std::vector<float> x = ggml_data(32 * 128, offset);
    const double err = ggml_error(x, dequantize(quantize(x), static_cast<int64_t>(x.size())));
    EXPECT_LT(err, GetParam().max_total_error) << GetParam().name << " offset " << offset;
  }
}

// ggml compares its optimised quantizer with the reference (MAX_QUANTIZATION_REFERENCE_ERROR);
// here the second implementation is the element-by-element decoder above.
TEST_P(KQuantTest, DequantizeMatchesSecondDecoder) {
  for (const std::vector<float>& x : {ggml_data(4096, 0.0f), gaussian(4096, 3, 0.02f)}) {
    const std::vector<uint8_t> q = quantize(x);
    const std::vector<float> y = dequantize(q, 4096);
    std::vector<float> z(4096);
    const size_t block = bytes(QK_K);
    for (int e = 0; e < 4096; ++e) {
      z[e] = decode_element(GetParam().type, q.data() + (e / QK_K) * block, e % QK_K);
    }
    EXPECT_LT(ggml_error(y, z), 1e-4);
    for (int e = 0; e < 4096; ++e) ASSERT_NEAR(y[e], z[e], 1e-6f * (1 + std::fabs(z[e]))) << e;
  }
}

// Same for random bit patterns: every field of every block, not just what the quantizer writes.
TEST_P(KQuantTest, DequantizeMatchesSecondDecoderOnRandomBits) {
  std::mt19937 rng(11);
  const int nb = 9;
  std::vector<uint8_t> q(bytes(nb * QK_K));
  for (uint8_t& v : q) v = static_cast<uint8_t>(rng());
  const size_t block = bytes(QK_K);
  for (int i = 0; i < nb; ++i) {  // finite super scales (random bits would include inf / NaN)
    for (size_t off : half_offsets(GetParam().type)) {
      const uint16_t h = fp32_to_fp16(std::ldexp(static_cast<float>(rng() % 2000) - 1000.f, -12));
      std::memcpy(q.data() + i * block + off, &h, 2);
    }
  }
  const std::vector<float> y = dequantize(q, nb * QK_K);
  for (int e = 0; e < nb * QK_K; ++e) {
    const float z = decode_element(GetParam().type, q.data() + (e / QK_K) * block, e % QK_K);
    ASSERT_NEAR(y[e], z, 1e-6f * (1 + std::fabs(z))) << e;
  }
}

// The dot product is sum(dequantized weight * dequantized activation), up to float rounding.
TEST_P(KQuantTest, DotMatchesDequantizedProduct) {
  const int64_t n = 7 * QK_K;
  const std::vector<uint8_t> q = quantize(gaussian(n, 5));
  const std::vector<float> w = dequantize(q, n);
  const std::vector<block_q8_K> a = activations(gaussian(n, 6, 3.0f));
  double ref = 0, mag = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double v = static_cast<double>(a[i / QK_K].d) * a[i / QK_K].qs[i % QK_K];
    ref += w[i] * v;
    mag += std::fabs(w[i] * v);
  }
  EXPECT_NEAR(traits().dot_scalar(n, q.data(), a.data()), ref, 1e-6 * mag);
}

TEST_P(KQuantTest, DotErrorWithinGgmlBound) {
  const int64_t n = 32 * 128;
  const std::vector<float> x1 = ggml_data(n, 0.0f), x2 = ggml_data(n, 1.0f);
  double ref = 0;
  for (int64_t i = 0; i < n; ++i) ref += x1[i] * x2[i];
  const std::vector<uint8_t> q = quantize(x1);
  const std::vector<block_q8_K> a = activations(x2);
  const float got = quant_dot(traits())(n, q.data(), a.data());
  EXPECT_LT(std::fabs(got - ref) / n, GetParam().max_dot_error);
}

// Random weight blocks (any bit pattern, finite super scales) and random activations including
// the extremes -128 / 127 that maddubs-style kernels could saturate on: every SIMD level must
// return exactly the scalar result, for odd numbers of super-blocks.
TEST_P(KQuantTest, SimdMatchesScalarExactly) {
  std::mt19937 rng(21);
  const size_t block = bytes(QK_K);
  for (int nb : {1, 3, 5, 7, 13}) {
    for (int pattern = 0; pattern < 4; ++pattern) {
      std::vector<uint8_t> q(block * nb);
      for (uint8_t& v : q)
        v = pattern == 1 ? 0xff : pattern == 2 ? 0x00 : static_cast<uint8_t>(rng());
      if (pattern == 2) q[0] = 0x80;  // not all zero
      // Finite super scales: the random bits of the half fields would include inf / NaN.
      for (int i = 0; i < nb; ++i) {
        const float v = pattern == 1 ? 65504.0f : static_cast<float>(rng() % 1000) / 256 - 2;
        const uint16_t h = fp32_to_fp16(v);
        for (size_t off : half_offsets(GetParam().type)) std::memcpy(&q[i * block + off], &h, 2);
      }
      std::vector<block_q8_K> a(nb);
      for (block_q8_K& b : a) {
        b.d = pattern == 1 ? 1e4f : std::ldexp(static_cast<float>(rng() % 255) - 127, -10);
        for (int k = 0; k < QK_K; ++k) {
          b.qs[k] = static_cast<int8_t>(pattern == 1   ? (k % 2 ? -128 : 127)
                                        : pattern == 3 ? (rng() % 2 ? -128 : 127)
                                                       : static_cast<int>(rng() % 256) - 128);
        }
        for (int j = 0; j < QK_K / 16; ++j) {
          int s = 0;
          for (int k = 0; k < 16; ++k) s += b.qs[16 * j + k];
          b.bsums[j] = static_cast<int16_t>(s);
        }
      }
      const int64_t n = static_cast<int64_t>(nb) * QK_K;
      const float ref = traits().dot_scalar(n, q.data(), a.data());
      ASSERT_TRUE(std::isfinite(ref));
      // Each fast version only where this CPU runs it (an AVX-512 call on an AVX2 machine is
      // SIGILL).
      if (detected_cpu_level() >= CpuLevel::AVX2) {
        const float avx2 = traits().dot_avx2(n, q.data(), a.data());
        EXPECT_EQ(avx2, ref) << GetParam().name << " avx2, " << nb << " blocks, pattern "
                             << pattern;
      }
      if (detected_cpu_level() >= CpuLevel::AVX512) {
        const float avx512 = traits().dot_avx512(n, q.data(), a.data());
        EXPECT_EQ(avx512, ref) << GetParam().name << " avx512, " << nb << " blocks, pattern "
                               << pattern;
      }
    }
  }
}

TEST_P(KQuantTest, DispatchFollowsCpuLevel) {
  const int64_t n = 3 * QK_K;
  const std::vector<uint8_t> q = quantize(gaussian(n, 8));
  const std::vector<block_q8_K> a = activations(gaussian(n, 9));
  const float ref = traits().dot_scalar(n, q.data(), a.data());
  const CpuLevel saved = active_cpu_level();
  for (CpuLevel level : {CpuLevel::Scalar, CpuLevel::AVX2, CpuLevel::AVX512}) {
    set_cpu_level(level);
    EXPECT_EQ(quant_dot(traits())(n, q.data(), a.data()), ref) << cpu_level_name(level);
  }
  set_cpu_level(saved);
  if (detected_cpu_level() == CpuLevel::AVX512) {
    set_cpu_level(CpuLevel::AVX512);
    EXPECT_EQ(quant_dot(traits()), traits().dot_avx512);
    set_cpu_level(saved);
  }
}

// Importance weights: elements weighted 100x must come out with a lower error than without
// importance, and the importance-weighted error overall must drop too.
TEST_P(KQuantTest, ImportanceLowersErrorWhereItIsHigh) {
  const int64_t n = 16 * QK_K;
  const std::vector<float> x = gaussian(n, 13);
  std::vector<float> importance(n, 1.0f);
  for (int64_t i = 0; i < n; i += 7) importance[i] = 100.0f;
  const std::vector<float> plain = dequantize(quantize(x), n);
  const std::vector<float> weighted = dequantize(quantize(x, importance.data()), n);
  double hot_plain = 0, hot_weighted = 0, all_plain = 0, all_weighted = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double ep = (x[i] - plain[i]) * (x[i] - plain[i]);
    const double ew = (x[i] - weighted[i]) * (x[i] - weighted[i]);
    all_plain += importance[i] * ep;
    all_weighted += importance[i] * ew;
    if (importance[i] > 1) {
      hot_plain += ep;
      hot_weighted += ew;
    }
  }
  EXPECT_LT(hot_weighted, 0.8 * hot_plain) << GetParam().name;
  EXPECT_LT(all_weighted, all_plain) << GetParam().name;
}

TEST_P(KQuantTest, DegenerateBlocks) {
  const int64_t n = 4 * QK_K;
  std::vector<float> x(n, 0.0f);
  for (int64_t i = QK_K; i < 2 * QK_K; ++i) x[i] = 0.75f;                     // constant
  for (int64_t i = 2 * QK_K; i < 3 * QK_K; ++i) x[i] = (i % 2 ? 1e-30f : 0);  // denormal-ish
  for (int64_t i = 3 * QK_K; i < n; ++i) x[i] = (i % 3 ? 1e6f : -3e5f);       // beyond half range
  const std::vector<float> y = dequantize(quantize(x), n);
  for (int64_t i = 0; i < n; ++i) ASSERT_TRUE(std::isfinite(y[i])) << i;
  for (int64_t i = 0; i < QK_K; ++i) ASSERT_EQ(y[i], 0.0f) << i;
  for (int64_t i = QK_K; i < 2 * QK_K; ++i) ASSERT_NEAR(y[i], 0.75f, 0.02f) << i;
  for (int64_t i = 2 * QK_K; i < 3 * QK_K; ++i) ASSERT_NEAR(y[i], 0.0f, 1e-20f) << i;
}

// Goldens from llama.cpp's ggml: its dequantization of squish's blocks and of its own blocks must
// equal squish's bit for bit, and its dot product must agree to float rounding.
TEST_P(KQuantTest, BitExactWithGgmlGoldens) {
  const std::string dir = test::data_path("ggml_kquant/");
  const std::string stem = dir + GetParam().name;
  const std::vector<float> input = read_floats(dir + "input.f32");
  ASSERT_EQ(input.size(), 4u * QK_K);
  const int64_t n = static_cast<int64_t>(input.size());
  for (const char* who : {".squish", ".ggml"}) {
    const std::vector<uint8_t> q = read_file(stem + who);
    const std::vector<float> want = read_floats(stem + who + ".ggml_f32");
    ASSERT_EQ(q.size(), bytes(n)) << who;
    ASSERT_EQ(want.size(), input.size()) << who;
    const std::vector<float> got = dequantize(q, n);
    EXPECT_EQ(std::memcmp(got.data(), want.data(), n * sizeof(float)), 0) << GetParam().name << who;
  }
  const std::vector<uint8_t> q8 = read_file(dir + "input.q8_K.ggml");
  ASSERT_EQ(q8.size(), 4 * sizeof(block_q8_K));
  const std::vector<float> dots = read_floats(dir + "dots.ggml_f32");
  size_t index = 0;
  while (kKTypes[index].type != GetParam().type) ++index;
  ASSERT_EQ(dots.size(), std::size(kKTypes));
  const float dot = traits().dot_scalar(n, read_file(stem + ".squish").data(), q8.data());
  EXPECT_NEAR(dot, dots[index], 1e-6f * std::fabs(dots[index]));
}

// squish's error-minimising quantizer is at least as accurate as ggml's on the golden input
// (ggml's error comes from its committed dequantized blocks).
TEST_P(KQuantTest, NoWorseThanGgmlOnGoldenInput) {
  const std::string dir = test::data_path("ggml_kquant/");
  const std::vector<float> input = read_floats(dir + "input.f32");
  const std::vector<float> ggml = read_floats(dir + GetParam().name + ".ggml.ggml_f32");
  ASSERT_EQ(ggml.size(), input.size());
  const std::vector<float> ours = dequantize(quantize(input), static_cast<int64_t>(input.size()));
  EXPECT_LE(ggml_error(input, ours), ggml_error(input, ggml)) << GetParam().name;
}

INSTANTIATE_TEST_SUITE_P(KQuants, KQuantTest, testing::ValuesIn(kKTypes),
                         [](const testing::TestParamInfo<KType>& info) {
                           return std::string(info.param.name);
                         });

TEST(Q8K, BitExactWithGgml) {
  const std::string dir = test::data_path("ggml_kquant/");
  const std::vector<float> input = read_floats(dir + "input.f32");
  const std::vector<uint8_t> want = read_file(dir + "input.q8_K.ggml");
  ASSERT_EQ(want.size(), input.size() / QK_K * sizeof(block_q8_K));
  const std::vector<block_q8_K> got = activations(input);
  EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size()), 0);
}

TEST(Q8K, CodesScaleAndSums) {
  std::vector<float> x = gaussian(3 * QK_K, 17, 5.0f);
  std::fill(x.begin() + QK_K, x.begin() + 2 * QK_K, 0.0f);  // an all-zero block
  const std::vector<block_q8_K> a = activations(x);
  for (int b = 0; b < 3; ++b) {
    for (int j = 0; j < QK_K / 16; ++j) {
      int s = 0;
      for (int k = 0; k < 16; ++k) s += a[b].qs[16 * j + k];
      EXPECT_EQ(a[b].bsums[j], s);
    }
    for (int k = 0; k < QK_K; ++k) {
      EXPECT_GE(a[b].qs[k], -127);  // the SIMD sign tricks rely on it
      EXPECT_NEAR(a[b].d * a[b].qs[k], x[b * QK_K + k], std::fabs(a[b].d) * 0.5f + 1e-7f);
    }
  }
  EXPECT_EQ(a[1].d, 0.0f);
}

}  // namespace
}  // namespace squish
