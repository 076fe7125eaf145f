// CUDA backend checks (built only with -DSQUISH_CUDA=ON, run on a GPU machine): every kernel
// against the CPU reference, then whole-model logits on the GPU against the CPU runtime for the
// same quantized file. Without a device every test is skipped.
//
// Tolerances. Kernels: mat-vec products accumulate in F32 in a different order than the double
// reference, so |gpu - ref| <= 2e-5 * sum_i |w_i x_i| + 1e-6 per output. Elementwise kernels:
// 1e-5 relative. Whole model: the CPU runtime quantizes activations to 8 bits (Q8_0/Q8_K) before
// its integer dot products, the GPU keeps them in F32, so the logits differ by that rounding:
// RMS(gpu - cpu) <= 5 % of RMS(cpu logits) and the top token agrees on >= 90 % of positions.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <random>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/cpu/activation.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/kernels.h"
#include "model/model.h"
#include "quant/quant.h"
#include "runtime/cuda_session.h"
#include "runtime/sampler.h"
#include "runtime/session.h"
#include "test_util.h"
#include "weight_rows.h"

namespace squish {
namespace {

#define SKIP_WITHOUT_GPU() \
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device"

template <class T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  explicit Dev(size_t count) : n(count) {
    EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&p), count * sizeof(T)), cudaSuccess);
  }
  Dev(const std::vector<T>& v) : Dev(v.size()) { upload(v); }
  ~Dev() { cudaFree(p); }
  void upload(const std::vector<T>& v) {
    ASSERT_EQ(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  std::vector<T> download() const {
    std::vector<T> v(n);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return v;
  }
};

// A KV cache's values as a GGUF row type, so that the project's row encoder and decoder serve.
DType dtype_of(cuda::KvType type) {
  return type == cuda::KvType::F16 ? DType::F16 : DType::F32;
}
std::vector<float> decode_cache(cuda::KvType type, const std::vector<uint8_t>& bytes) {
  std::vector<float> v(bytes.size() / cuda::kv_type_bytes(type));
  convert_row_to_f32(dtype_of(type), bytes.data(), v.data(), static_cast<int64_t>(v.size()));
  return v;
}
std::vector<uint8_t> encode_cache(cuda::KvType type, const std::vector<float>& v) {
  return test::encode_rows(dtype_of(type), v.data(), 1, static_cast<int64_t>(v.size()));
}

// v as a KV cache of `type` holds it (F16: each value rounded to nearest).
std::vector<float> as_cached(const std::vector<float>& v, cuda::KvType type) {
  return decode_cache(type, encode_cache(type, v));
}

// KV-cache values on the device in `type` (kernels.h: KvCache), uploaded and read back as F32.
struct DevCache {
  cuda::KvType type;
  Dev<uint8_t> bytes;
  DevCache(const std::vector<float>& v, cuda::KvType t) : type(t), bytes(encode_cache(t, v)) {}
  void* p() const { return bytes.p; }
  std::vector<float> download() const { return decode_cache(type, bytes.download()); }
};
constexpr cuda::KvType kKvTypes[] = {cuda::KvType::F32, cuda::KvType::F16};

// RoPE + store arguments for one row per token of [q | k | v] at qkv (H q heads, HKV kv heads of D
// dimensions; biases bq / bk / bv may be null), the caches kc / vc.
cuda::RopeArgs rope_args(float* qkv, int H, int HKV, int D, int n_rot, bool neox, const float* bq,
                         const float* bk, const float* bv, const float* table, const int* pos,
                         const DevCache& kc, const DevCache& vc) {
  const int Q = H * D, KV = HKV * D;
  cuda::RopeArgs a{};
  a.q = qkv;
  a.k = qkv + Q;
  a.v = qkv + Q + KV;
  a.ld = Q + 2 * KV;
  a.bq = bq;
  a.bk = bk;
  a.bv = bv;
  a.n_head = H;
  a.n_head_kv = HKV;
  a.head_dim = D;
  a.n_rot = n_rot;
  a.neox = neox;
  a.cos_sin = table;
  a.pos0 = pos;
  a.cache = {kc.p(), vc.p(), kc.type};
  return a;
}

std::vector<float> random_floats(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// Weight bytes of rows x cols in `type` made from Gaussian values (quantized where needed).
std::vector<uint8_t> make_weights(DType type, int64_t rows, int64_t cols, uint32_t seed) {
  const std::vector<float> f = random_floats(rows * cols, seed, 0.05f);
  return test::encode_rows(type, f.data(), rows, cols);
}

// Puts the attention kernels back as the environment says when a test that switches them ends.
struct ResetAttentionOptions {
  ~ResetAttentionOptions() { cuda::set_attention_options(-1, -1, -1, -1, -1); }
};

// One token's RoPE table at position pos (base 10,000): n_rot / 2 cosines then n_rot / 2 sines.
std::vector<float> rope_table(int pos, int n_rot) {
  std::vector<float> table(n_rot);
  for (int i = 0; i < n_rot / 2; ++i) {
    const double angle = pos * std::pow(10000.0, -2.0 * i / n_rot);
    table[i] = static_cast<float>(std::cos(angle));
    table[n_rot / 2 + i] = static_cast<float>(std::sin(angle));
  }
  return table;
}

// A kernel's fused 8-bit output (q, d) must equal quantize_activations_q8 of its float output.
void expect_fused_q8(const float* out_dev, int n_tokens, int cols, const int8_t* q_dev,
                     const float* d_dev) {
  Dev<int8_t> q_ref(n_tokens * cols);
  Dev<float> d_ref(n_tokens * cols / 32);
  cuda::quantize_activations_q8(out_dev, cols, n_tokens, cols, q_ref.p, d_ref.p, nullptr);
  std::vector<int8_t> q(n_tokens * cols);
  std::vector<float> d(n_tokens * cols / 32);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(q.data(), q_dev, q.size(), cudaMemcpyDeviceToHost), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(d.data(), d_dev, d.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(q, q_ref.download());
  EXPECT_EQ(d, d_ref.download());
}

class CudaMatmul : public testing::TestWithParam<DType> {};

TEST_P(CudaMatmul, MatchesCpuReference) {
  SKIP_WITHOUT_GPU();
  const DType type = GetParam();
  const int64_t rows = 67, cols = 512;  // rows not a multiple of the 4 rows per thread block
  ASSERT_TRUE(cuda::matmul_supported(type, cols));
  const std::vector<uint8_t> w = make_weights(type, rows, cols, 7);
  std::vector<float> row(cols);
  std::vector<float> wf(rows * cols);
  for (int64_t r = 0; r < rows; ++r)
    convert_row_to_f32(type, w.data() + r * row_bytes(type, cols), wf.data() + r * cols, cols);
  Dev<uint8_t> dw(w);
  for (int n_tokens : {1, 2, 3, 8, 13}) {
    for (bool accumulate : {false, true}) {
      const std::vector<float> x = random_floats(n_tokens * cols, 11 + n_tokens);
      const std::vector<float> y0 = random_floats(n_tokens * rows, 5);
      std::vector<float> ref(n_tokens * rows);
      matmul_reference(x.data(), n_tokens, w.data(), type, rows, cols, ref.data(), rows);
      Dev<float> dx(x), dy(y0);
      cuda::matmul(type, dw.p, rows, cols, dx.p, cols, n_tokens, dy.p, rows, accumulate, nullptr);
      ASSERT_EQ(cudaGetLastError(), cudaSuccess);
      const std::vector<float> y = dy.download();
      for (int t = 0; t < n_tokens; ++t) {
        for (int64_t r = 0; r < rows; ++r) {
          double mag = 0;
          for (int64_t i = 0; i < cols; ++i) mag += std::fabs(wf[r * cols + i] * x[t * cols + i]);
          const float want = ref[t * rows + r] + (accumulate ? y0[t * rows + r] : 0.0f);
          ASSERT_NEAR(y[t * rows + r], want, 2e-5 * mag + 1e-6)
              << dtype_name(type) << " token " << t << " row " << r << " acc " << accumulate;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Types, CudaMatmul,
                         testing::Values(DType::F32, DType::F16, DType::BF16, DType::Q4_0,
                                         DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0,
                                         DType::IQ4_NL, DType::Q2_K, DType::Q3_K, DType::Q4_K,
                                         DType::Q5_K, DType::Q6_K, DType::IQ4_XS),
                         [](const testing::TestParamInfo<DType>& p) {
                           return std::string(dtype_name(p.param));
                         });

// The types of the 8-bit kernels (kernels.h: matmul_q8_supported).
const DType kQ8Types[] = {DType::Q4_K, DType::Q6_K, DType::Q8_0,   DType::Q2_K,
                          DType::Q3_K, DType::Q5_K, DType::IQ4_XS, DType::Q4_0,
                          DType::Q4_1, DType::Q5_0, DType::Q5_1,   DType::IQ4_NL};

// 8-bit activations: the reference is the float product with the activations replaced by what
// the quantizer keeps (per 32: d = amax / 127, q = round(x / d), x' = q * d), so only the
// kernel's integer arithmetic and scale order are checked, at the float tolerance.
class CudaMatmulQ8 : public testing::TestWithParam<DType> {};

void check_q8_product(DType type, int64_t rows, int64_t cols,
                      std::initializer_list<int> token_counts = {1, 5, 8, 11}) {
  ASSERT_TRUE(cuda::matmul_q8_supported(type, cols));
  const std::vector<uint8_t> w = make_weights(type, rows, cols, 17);
  std::vector<float> wf(rows * cols);
  for (int64_t r = 0; r < rows; ++r)
    convert_row_to_f32(type, w.data() + r * row_bytes(type, cols), wf.data() + r * cols, cols);
  std::vector<uint8_t> packed(w.size());
  cuda::repack_q8(type, w.data(), rows, cols, packed.data());
  Dev<uint8_t> dw(packed);
  for (int n_tokens : token_counts) {
    const int64_t ldx = cols + 4;  // a row stride wider than the row, as for the gate|up buffer
    std::vector<float> x = random_floats(n_tokens * ldx, 21 + n_tokens);
    x[3] = 0.0f;
    std::fill(x.begin() + 32, x.begin() + 64, 0.0f);  // an all-zero group: d = 0
    std::vector<float> xr(n_tokens * cols);
    for (int t = 0; t < n_tokens; ++t) {
      for (int64_t g = 0; g < cols / 32; ++g) {
        const float* src = x.data() + t * ldx + g * 32;
        float amax = 0;
        for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(src[i]));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int i = 0; i < 32; ++i) xr[t * cols + g * 32 + i] = std::round(src[i] * id) * d;
      }
    }
    std::vector<float> ref(n_tokens * rows);
    matmul_reference(xr.data(), n_tokens, w.data(), type, rows, cols, ref.data(), rows);
    Dev<float> dx(x), dy(std::vector<float>(n_tokens * rows, 1.0f));
    Dev<int8_t> xq(n_tokens * cols);
    Dev<float> xd(n_tokens * cols / 32);
    cuda::quantize_activations_q8(dx.p, ldx, n_tokens, cols, xq.p, xd.p, nullptr);
    cuda::matmul_q8(type, dw.p, rows, cols, xq.p, xd.p, n_tokens, dy.p, rows, true, nullptr);
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    const std::vector<float> y = dy.download();
    for (int t = 0; t < n_tokens; ++t) {
      for (int64_t r = 0; r < rows; ++r) {
        double mag = 0;
        for (int64_t i = 0; i < cols; ++i) mag += std::fabs(wf[r * cols + i] * xr[t * cols + i]);
        ASSERT_NEAR(y[t * rows + r], ref[t * rows + r] + 1.0f, 2e-5 * mag + 1e-6)
            << dtype_name(type) << " token " << t << " row " << r;
      }
    }
  }
}

TEST_P(CudaMatmulQ8, MatchesReferenceOnQuantizedActivations) {
  SKIP_WITHOUT_GPU();
  const DType type = GetParam();
  // 8448 columns: long rows take the kernel's split-row path (several warps per row) when more
  // than one token is multiplied.
  for (const auto& [rows, cols] : {std::pair<int64_t, int64_t>{45, 768}, {9, 8448}, {1, 256}}) {
    SCOPED_TRACE(cols);
    check_q8_product(type, rows, cols);
  }
}

INSTANTIATE_TEST_SUITE_P(Types, CudaMatmulQ8, testing::ValuesIn(kQ8Types),
                         [](const testing::TestParamInfo<DType>& p) {
                           return std::string(dtype_name(p.param));
                         });

// Every one-token kernel variant (kernels_q8.cu: 0-2 one launch per group of rows, 3-4 the
// persistent grid), with the grid left to occupancy and capped at 3 blocks (12 warps walking
// ~13-25 rows each, so the cross-row pipelining is exercised): odd row counts (2 rows per warp
// with a lone last row), rows of fewer items than lanes (768 columns) and a partial last step.
TEST_P(CudaMatmulQ8, EveryDecodeVariantMatchesReference) {
  SKIP_WITHOUT_GPU();
  const DType type = GetParam();
  for (int variant = 0; variant <= 4; ++variant) {
    for (int max_blocks : {0, 3}) {
      for (int big : {0, 2}) {  // the persistent grids (3-4) in blocks of 4 warps or one per SM
        if (big == 2 && variant < 3) continue;
        SCOPED_TRACE(testing::Message() << "variant " << variant << " max_blocks " << max_blocks
                                        << " big blocks " << big);
        cuda::set_decode_options(variant, max_blocks, big);
        for (const auto& [rows, cols] : {std::pair<int64_t, int64_t>{301, 768}, {77, 8448}}) {
          SCOPED_TRACE(cols);
          check_q8_product(type, rows, cols, {1});
        }
      }
    }
  }
  cuda::set_decode_options(-1, 0);
}

// 8-bit activations of x as the kernels make them, and the float product with them.
std::vector<float> dequantized_q8(const std::vector<float>& x) {
  std::vector<float> xr(x.size());
  for (size_t g = 0; g < x.size() / 32; ++g) {
    float amax = 0;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[g * 32 + i]));
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int i = 0; i < 32; ++i) xr[g * 32 + i] = std::round(x[g * 32 + i] * id) * d;
  }
  return xr;
}

// One-token products with a fused epilogue: the residual product followed by RMSNorm (its F32
// output and 8-bit form), and gate|up followed by the gating; the counters end at zero.
class CudaMatmulQ8Epilogue : public testing::TestWithParam<DType> {};

TEST_P(CudaMatmulQ8Epilogue, NormAndGatingMatchSeparateKernels) {
  SKIP_WITHOUT_GPU();
  const DType type = GetParam();
  const int64_t E = 768, F = 512;  // 2 * F rows of gate|up; E rows of the residual product
  const std::vector<float> x = random_floats(E, 31);
  const std::vector<float> xr = dequantized_q8(x);
  Dev<float> dx(x);
  Dev<int8_t> xq(E);
  Dev<float> xd(E / 32);
  cuda::quantize_activations_q8(dx.p, E, 1, E, xq.p, xd.p, nullptr);
  Dev<int> counters(2 + F / 32);
  ASSERT_EQ(cudaMemset(counters.p, 0, counters.n * sizeof(int)), cudaSuccess);
  auto upload = [&](int64_t rows, uint32_t seed, std::vector<float>& wf) {
    const std::vector<uint8_t> w = make_weights(type, rows, E, seed);
    wf.resize(rows * E);
    for (int64_t r = 0; r < rows; ++r)
      convert_row_to_f32(type, w.data() + r * row_bytes(type, E), wf.data() + r * E, E);
    std::vector<uint8_t> packed(w.size());
    cuda::repack_q8(type, w.data(), rows, E, packed.data());
    return packed;
  };
  auto product = [&](const std::vector<float>& wf, int64_t r) {
    double s = 0, mag = 0;
    for (int64_t i = 0; i < E; ++i) {
      s += static_cast<double>(wf[r * E + i]) * xr[i];
      mag += std::fabs(wf[r * E + i] * xr[i]);
    }
    return std::pair<double, double>{s, mag};
  };
  {  // residual product (square, E x E) + RMSNorm
    std::vector<float> wf;
    Dev<uint8_t> dw(upload(E, 41, wf));
    const std::vector<float> y0 = random_floats(E, 43), nw = random_floats(E, 44);
    Dev<float> dy(y0), dnw(nw), xn(E);
    Dev<int8_t> q(E);
    Dev<float> d(E / 32);
    cuda::Q8Epilogue e;
    e.norm_weight = dnw.p;
    e.eps = 1e-5f;
    e.norm_out = xn.p;
    e.q = q.p;
    e.d = d.p;
    e.counters = counters.p;
    cuda::matmul_q8(type, dw.p, E, E, xq.p, xd.p, 1, dy.p, E, true, nullptr, &e);
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    const std::vector<float> y = dy.download();
    for (int64_t r = 0; r < E; ++r) {
      const auto [s, mag] = product(wf, r);
      ASSERT_NEAR(y[r], s + y0[r], 2e-5 * mag + 1e-5) << dtype_name(type) << " row " << r;
    }
    std::vector<float> ref(E);
    rms_norm(y.data(), nw.data(), static_cast<int>(E), 1e-5f, ref.data());
    const std::vector<float> out = xn.download();
    for (int64_t i = 0; i < E; ++i) ASSERT_NEAR(out[i], ref[i], 1e-5f * (1 + std::fabs(ref[i])));
    expect_fused_q8(xn.p, 1, static_cast<int>(E), q.p, d.p);
  }
  {  // gate|up + SiLU gating
    std::vector<float> wf;
    Dev<uint8_t> dw(upload(2 * F, 51, wf));
    Dev<float> h(2 * F);
    Dev<int8_t> q(F);
    Dev<float> d(F / 32);
    cuda::Q8Epilogue e;
    e.gate = true;
    e.q = q.p;
    e.d = d.p;
    e.counters = counters.p;
    cuda::matmul_q8(type, dw.p, 2 * F, E, xq.p, xd.p, 1, h.p, 2 * F, false, nullptr, &e);
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    const std::vector<float> out = h.download();
    for (int64_t i = 0; i < F; ++i) {
      const auto [g, gmag] = product(wf, i);
      const auto [u, umag] = product(wf, F + i);
      float gate = static_cast<float>(g);
      const float upv = static_cast<float>(u);
      silu_mul(&gate, &upv, 1);
      // |d silu(g) / dg| < 1.1: the product's error scaled by what multiplies it.
      const double tol = 2e-5 * (1.1 * gmag * std::fabs(u) + umag * (std::fabs(g) + 1)) + 1e-5;
      ASSERT_NEAR(out[i], gate, tol) << dtype_name(type) << " " << i;
    }
    expect_fused_q8(h.p, 1, static_cast<int>(F), q.p, d.p);
  }
  for (int v : counters.download()) EXPECT_EQ(v, 0);
}

INSTANTIATE_TEST_SUITE_P(Types, CudaMatmulQ8Epilogue, testing::ValuesIn(kQ8Types),
                         [](const testing::TestParamInfo<DType>& p) {
                           return std::string(dtype_name(p.param));
                         });

// A one-token product whose prologue computes its input: RMSNorm(x) * weight, quantized to 8
// bits in shared memory (matmul_q8_norm_in). Reference: the CPU rms_norm, its 8-bit form as
// quantize_activations_q8 makes it, and the product in double, plus the residual. Tolerance: the
// product's 2e-5 * sum |w x| + 1e-5, plus 2 * max|w| * max d: the GPU's norm differs from the
// CPU's in the last bits, which can move a value across a rounding boundary of its 8-bit code
// (one code step d of its group); two such moves per row are allowed.
class CudaMatmulQ8NormIn : public testing::TestWithParam<DType> {};

// One case: rows x E weights of `type` (dequantized wf, largest |w|, repack_q8's bytes), the
// input x (seed + 1) and norm weight (seed + 2), and the CPU norm's 8-bit form xr with its
// largest code step dmax.
struct NormInCase {
  std::vector<float> wf, x, nw, xr;
  std::vector<uint8_t> packed;
  float wmax = 0, dmax = 0;
  NormInCase(DType type, int64_t rows, int64_t E, uint32_t seed) {
    const std::vector<uint8_t> w = make_weights(type, rows, E, seed);
    wf.resize(rows * E);
    for (int64_t r = 0; r < rows; ++r)
      convert_row_to_f32(type, w.data() + r * row_bytes(type, E), wf.data() + r * E, E);
    for (float v : wf) wmax = std::max(wmax, std::fabs(v));
    packed.resize(w.size());
    cuda::repack_q8(type, w.data(), rows, E, packed.data());
    x = random_floats(E, seed + 1, 3.0f);
    nw = random_floats(E, seed + 2);
    std::vector<float> normed(E);
    rms_norm(x.data(), nw.data(), static_cast<int>(E), 1e-5f, normed.data());
    xr = dequantized_q8(normed);
    for (float v : normed) dmax = std::max(dmax, std::fabs(v) / 127.0f);
  }
};

// The norm-prologue kernels' grids: (max_blocks, big_blocks) of set_decode_options. 3 blocks:
// each warp walks several row groups; big blocks: one block of every warp an SM holds.
constexpr std::pair<int, int> kNormInGrids[] = {{0, 0}, {3, 0}, {0, 1}, {3, 1}};

TEST_P(CudaMatmulQ8NormIn, MatchesNormThenProduct) {
  SKIP_WITHOUT_GPU();
  const DType type = GetParam();
  const int64_t rows = 301, E = 768;
  const NormInCase c(type, rows, E, 61);
  const std::vector<float>&wf = c.wf, &xr = c.xr;
  const float wmax = c.wmax, dmax = c.dmax;
  Dev<uint8_t> dw(c.packed);
  Dev<float> dx(c.x), dnw(c.nw);
  for (int variant : {-1, 2}) {  // the type's rows per warp, and one row per warp
    for (const auto& [max_blocks, big] : kNormInGrids) {
      for (bool accumulate : {false, true}) {
        SCOPED_TRACE(testing::Message() << "variant " << variant << " max_blocks " << max_blocks
                                        << " big blocks " << big << " accumulate " << accumulate);
        cuda::set_decode_options(variant, max_blocks, big);
        const std::vector<float> y0 = random_floats(rows, 64);
        Dev<float> dy(y0);
        cuda::matmul_q8_norm_in(type, dw.p, rows, E, {dx.p, dnw.p, 1e-5f}, dy.p, accumulate,
                                nullptr);
        ASSERT_EQ(cudaGetLastError(), cudaSuccess);
        const std::vector<float> y = dy.download();
        for (int64_t r = 0; r < rows; ++r) {
          double s = 0, mag = 0;
          for (int64_t i = 0; i < E; ++i) {
            s += static_cast<double>(wf[r * E + i]) * xr[i];
            mag += std::fabs(wf[r * E + i] * xr[i]);
          }
          const double want = s + (accumulate ? y0[r] : 0.0f);
          ASSERT_NEAR(y[r], want, 2e-5 * mag + 1e-5 + 2.0 * wmax * dmax)
              << dtype_name(type) << " row " << r;
        }
      }
    }
  }
  cuda::set_decode_options(-1, 0);
}

// The norm prologue with the gating epilogue (matmul_q8_norm_in with a gate): [gate | up] rows
// of the normed input, y[i] = silu(gate_i) * up_i and its 8-bit form; tolerances as above, the
// gate's error scaled by what multiplies it (|d silu(g) / dg| < 1.1); the counters end at zero.
TEST_P(CudaMatmulQ8NormIn, WithGateMatchesNormThenGating) {
  SKIP_WITHOUT_GPU();
  const DType type = GetParam();
  const int64_t F = 320, E = 768;  // 2 F rows: 10 groups of 32 outputs
  const NormInCase c(type, 2 * F, E, 71);
  const std::vector<float>&wf = c.wf, &xr = c.xr;
  Dev<uint8_t> dw(c.packed);
  Dev<float> dx(c.x), dnw(c.nw), h(2 * F);
  Dev<int8_t> q(F);
  Dev<float> d(F / 32);
  Dev<int> counters(1 + F / 32);
  ASSERT_EQ(cudaMemset(counters.p, 0, counters.n * sizeof(int)), cudaSuccess);
  for (const auto& [max_blocks, big] : kNormInGrids) {
    SCOPED_TRACE(testing::Message() << "max_blocks " << max_blocks << " big blocks " << big);
    cuda::set_decode_options(-1, max_blocks, big);
    cuda::Q8Epilogue e;
    e.gate = true;
    e.q = q.p;
    e.d = d.p;
    e.counters = counters.p;
    cuda::matmul_q8_norm_in(type, dw.p, 2 * F, E, {dx.p, dnw.p, 1e-5f}, h.p, false, nullptr, &e);
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    const std::vector<float> out = h.download();
    const double slack = 2e-5, code_steps = 2.0 * c.wmax * c.dmax;
    for (int64_t i = 0; i < F; ++i) {
      double g = 0, gmag = 0, u = 0, umag = 0;
      for (int64_t k = 0; k < E; ++k) {
        g += static_cast<double>(wf[i * E + k]) * xr[k];
        gmag += std::fabs(wf[i * E + k] * xr[k]);
        u += static_cast<double>(wf[(F + i) * E + k]) * xr[k];
        umag += std::fabs(wf[(F + i) * E + k] * xr[k]);
      }
      float gate = static_cast<float>(g);
      const float upv = static_cast<float>(u);
      silu_mul(&gate, &upv, 1);
      const double eg = slack * gmag + 1e-5 + code_steps, eu = slack * umag + 1e-5 + code_steps;
      const double tol = 1.1 * eg * (std::fabs(u) + eu) + eu * (std::fabs(g) + 1) + 1e-5;
      ASSERT_NEAR(out[i], gate, tol) << dtype_name(type) << " " << i;
    }
    expect_fused_q8(h.p, 1, static_cast<int>(F), q.p, d.p);
    for (int v : counters.download()) EXPECT_EQ(v, 0);
  }
  cuda::set_decode_options(-1, 0);
}

// The gating in the down product's prologue (matmul_q8_gate_in): the same bits as the gating
// kernel's 8-bit form followed by the product (gated_activation, then matmul_q8), for SiLU and
// GELU, each decode variant and grid, with the residual added; and the 8-bit codes of that
// reference against the gating in double, so that equal outputs are also right ones.
TEST_P(CudaMatmulQ8NormIn, GateInMatchesGatingThenProduct) {
  SKIP_WITHOUT_GPU();
  const DType type = GetParam();
  const int64_t rows = 301, F = 768;
  const NormInCase c(type, rows, F, 81);
  Dev<uint8_t> dw(c.packed);
  const std::vector<float> gu = random_floats(2 * F, 82, 3.0f), y0 = random_floats(rows, 83);
  ASSERT_TRUE(cuda::matmul_q8_gate_in_supported(type, F));
  for (bool gelu : {false, true}) {
    Dev<float> dgu(gu), gated(gu);
    Dev<int8_t> q(F);
    Dev<float> d(F / 32);
    cuda::gated_activation(gated.p, 2 * F, gated.p + F, 2 * F, 1, static_cast<int>(F), gelu,
                           nullptr, q.p, d.p);
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    const std::vector<int8_t> codes = q.download();
    const std::vector<float> scales = d.download();
    for (int64_t i = 0; i < F; ++i) {
      const double g = gu[i], u = gu[F + i];
      const double act =
          gelu ? 0.5 * g * (1 + std::tanh(0.7978845608028654 * (g + 0.044715 * g * g * g)))
               : g / (1 + std::exp(-g));
      ASSERT_NEAR(codes[i] * scales[i / 32], act * u,
                  0.51 * scales[i / 32] + 1e-5 * std::fabs(act * u))
          << "gelu " << gelu << " i " << i;
    }
    for (int variant : {-1, 2}) {
      for (const auto& [max_blocks, big] : kNormInGrids) {
        SCOPED_TRACE(testing::Message() << "gelu " << gelu << " variant " << variant
                                        << " max_blocks " << max_blocks << " big blocks " << big);
        cuda::set_decode_options(variant, max_blocks, big);
        Dev<float> want(y0), got(y0);
        cuda::matmul_q8(type, dw.p, rows, F, q.p, d.p, 1, want.p, rows, true, nullptr);
        ASSERT_TRUE(cuda::matmul_q8_gate_in(type, dw.p, rows, F, dgu.p, dgu.p + F, gelu, got.p,
                                            true, nullptr));
        ASSERT_EQ(cudaGetLastError(), cudaSuccess);
        EXPECT_EQ(got.download(), want.download()) << dtype_name(type);
      }
    }
  }
  cuda::set_decode_options(-1, 0);
  EXPECT_FALSE(cuda::matmul_q8_gate_in_supported(type, 64 * 1024));  // past 48 KB of input
}

// Two products of different types in one launch (matmul_q8_norm_in_pair), each against the same
// reference and tolerance as above; equal types are refused.
TEST(CudaKernels, NormInPairMatchesNormThenProducts) {
  SKIP_WITHOUT_GPU();
  const int64_t E = 768;
  const std::vector<float> x = random_floats(E, 72, 3.0f), nw = random_floats(E, 73);
  std::vector<float> normed(E);
  rms_norm(x.data(), nw.data(), static_cast<int>(E), 1e-5f, normed.data());
  const std::vector<float> xr = dequantized_q8(normed);
  float dmax = 0;
  for (float v : normed) dmax = std::max(dmax, std::fabs(v) / 127.0f);
  Dev<float> dx(x), dnw(nw);
  struct Part {
    DType type;
    int64_t rows;
  };
  const std::pair<Part, Part> pairs[] = {{{DType::Q4_K, 301}, {DType::Q6_K, 77}},
                                         {{DType::Q6_K, 45}, {DType::Q8_0, 290}},
                                         {{DType::Q8_0, 128}, {DType::Q4_K, 33}}};
  for (const auto& [max_blocks, big] : kNormInGrids) {
    cuda::set_decode_options(-1, max_blocks, big);
    for (const auto& [pa, pb] : pairs) {
      SCOPED_TRACE(testing::Message() << dtype_name(pa.type) << " + " << dtype_name(pb.type)
                                      << " max_blocks " << max_blocks << " big blocks " << big);
      std::vector<float> wf[2];
      float wmax[2] = {0, 0};
      std::vector<uint8_t> packed[2];
      const Part parts[2] = {pa, pb};
      for (int p = 0; p < 2; ++p) {
        const std::vector<uint8_t> w = make_weights(parts[p].type, parts[p].rows, E, 80 + p);
        wf[p].resize(parts[p].rows * E);
        for (int64_t r = 0; r < parts[p].rows; ++r)
          convert_row_to_f32(parts[p].type, w.data() + r * row_bytes(parts[p].type, E),
                             wf[p].data() + r * E, E);
        for (float v : wf[p]) wmax[p] = std::max(wmax[p], std::fabs(v));
        packed[p].resize(w.size());
        cuda::repack_q8(parts[p].type, w.data(), parts[p].rows, E, packed[p].data());
      }
      Dev<uint8_t> dwa(packed[0]), dwb(packed[1]);
      Dev<float> dya(std::vector<float>(pa.rows, NAN)), dyb(std::vector<float>(pb.rows, NAN));
      ASSERT_TRUE(cuda::matmul_q8_norm_in_pair({pa.type, dwa.p, pa.rows, dya.p},
                                               {pb.type, dwb.p, pb.rows, dyb.p}, E,
                                               {dx.p, dnw.p, 1e-5f}, false, nullptr));
      ASSERT_EQ(cudaGetLastError(), cudaSuccess);
      const std::vector<float> y[2] = {dya.download(), dyb.download()};
      for (int p = 0; p < 2; ++p) {
        for (int64_t r = 0; r < parts[p].rows; ++r) {
          double s = 0, mag = 0;
          for (int64_t i = 0; i < E; ++i) {
            s += static_cast<double>(wf[p][r * E + i]) * xr[i];
            mag += std::fabs(wf[p][r * E + i] * xr[i]);
          }
          ASSERT_NEAR(y[p][r], s, 2e-5 * mag + 1e-5 + 2.0 * wmax[p] * dmax)
              << "part " << p << " row " << r;
        }
      }
    }
  }
  cuda::set_decode_options(-1, 0);
  EXPECT_FALSE(cuda::matmul_q8_norm_in_pair({DType::Q4_K, nullptr, 1, nullptr},
                                            {DType::Q4_K, nullptr, 1, nullptr}, E, {}, false,
                                            nullptr));
}

INSTANTIATE_TEST_SUITE_P(Types, CudaMatmulQ8NormIn, testing::ValuesIn(kQ8Types),
                         [](const testing::TestParamInfo<DType>& p) {
                           return std::string(dtype_name(p.param));
                         });

TEST(CudaKernels, UnsupportedShapesAreRejected) {
  EXPECT_FALSE(cuda::matmul_supported(DType::Q4_K, 384));  // not whole super-blocks
  EXPECT_FALSE(cuda::matmul_supported(DType::Q8_K, 256));  // an activation type: no kernel
  EXPECT_TRUE(cuda::matmul_supported(DType::Q8_0, 384));
}

TEST(CudaKernels, RmsNorm) {
  SKIP_WITHOUT_GPU();
  const int n = 4096, T = 3;
  const std::vector<float> x = random_floats(T * n, 1, 3.0f), w = random_floats(n, 2);
  Dev<float> dx(x), dw(w), dout(T * n);
  cuda::rms_norm(dx.p, dw.p, T, n, 1e-5f, dout.p, nullptr);
  const std::vector<float> out = dout.download();
  std::vector<float> ref(n);
  for (int t = 0; t < T; ++t) {
    rms_norm(x.data() + t * n, w.data(), n, 1e-5f, ref.data());
    for (int i = 0; i < n; ++i)
      ASSERT_NEAR(out[t * n + i], ref[i], 1e-5f * (1 + std::fabs(ref[i])));
  }
  Dev<int8_t> q(T * n);
  Dev<float> d(T * n / 32);
  cuda::rms_norm(dx.p, dw.p, T, n, 1e-5f, dout.p, nullptr, q.p, d.p);
  EXPECT_EQ(dout.download(), out);
  expect_fused_q8(dout.p, T, n, q.p, d.p);
}

// The caches in F32 and in F16 (each value rounded to nearest).
TEST(CudaKernels, RopeBiasAndCacheStore) {
  SKIP_WITHOUT_GPU();
  for (cuda::KvType kv : kKvTypes) {
    for (bool neox : {false, true}) {
      for (bool bias : {false, true}) {
        const int H = 4, HKV = 2, D = 64, n_rot = 32, T = 3, pos0 = 1000, n_ctx = 1100;
        const int Q = H * D, KV = HKV * D, ld = Q + 2 * KV;
        std::vector<double> inv_freq(n_rot / 2);
        for (int i = 0; i < n_rot / 2; ++i) inv_freq[i] = std::pow(10000.0, -2.0 * i / n_rot);
        const std::vector<float> qkv = random_floats(T * ld, 3);
        const std::vector<float> bq = random_floats(Q, 4), bk = random_floats(KV, 5),
                                 bv = random_floats(KV, 6);
        Dev<float> dqkv(qkv), dbq(bq), dbk(bk), dbv(bv);
        const std::vector<float> zeros(n_ctx * KV, 0.0f);
        DevCache kc(zeros, kv), vc(zeros, kv);
        std::vector<float> table(T * n_rot);  // per token: cos then sin of each pair's angle
        for (int t = 0; t < T; ++t) {
          for (int i = 0; i < n_rot / 2; ++i) {
            const double angle = static_cast<double>(pos0 + t) * inv_freq[i];
            table[t * n_rot + i] = static_cast<float>(std::cos(angle));
            table[t * n_rot + n_rot / 2 + i] = static_cast<float>(std::sin(angle));
          }
        }
        Dev<float> dtable(table);
        Dev<int> dpos(std::vector<int>{pos0});
        const cuda::RopeArgs a =
            rope_args(dqkv.p, H, HKV, D, n_rot, neox, bias ? dbq.p : nullptr,
                      bias ? dbk.p : nullptr, bias ? dbv.p : nullptr, dtable.p, dpos.p, kc, vc);
        cuda::rope_and_store(a, T, nullptr);
        const std::vector<float> out = dqkv.download(), kcache = kc.download(),
                                 vcache = vc.download();
        const RopeStyle style = neox ? RopeStyle::Neox : RopeStyle::Interleaved;
        for (int t = 0; t < T; ++t) {
          std::vector<float> ref(qkv.begin() + t * ld, qkv.begin() + (t + 1) * ld);
          if (bias) {
            for (int i = 0; i < Q; ++i) ref[i] += bq[i];
            for (int i = 0; i < KV; ++i) ref[Q + i] += bk[i], ref[Q + KV + i] += bv[i];
          }
          std::vector<float> cs(n_rot / 2), sn(n_rot / 2);
          for (int i = 0; i < n_rot / 2; ++i) {
            const double angle = static_cast<double>(pos0 + t) * inv_freq[i];
            cs[i] = static_cast<float>(std::cos(angle));
            sn[i] = static_cast<float>(std::sin(angle));
          }
          for (int h = 0; h < H + HKV; ++h)
            apply_rope(ref.data() + h * D, D, n_rot, style, cs.data(), sn.data());
          for (int i = 0; i < ld; ++i)
            ASSERT_NEAR(out[t * ld + i], ref[i], 1e-5f * (1 + std::fabs(ref[i]))) << i;
          const std::vector<float> row =
              as_cached(std::vector<float>(out.begin() + t * ld, out.begin() + (t + 1) * ld), kv);
          for (int i = 0; i < KV; ++i) {
            ASSERT_EQ(kcache[(pos0 + t) * KV + i], row[Q + i]);
            ASSERT_EQ(vcache[(pos0 + t) * KV + i], row[Q + KV + i]);
          }
        }
      }
    }
  }
}

// Both prefill kernels (one block per query; tiles of 16 queries with keys through shared
// memory: partial tiles of queries and of keys; past 128 dimensions the tiled setting falls back
// to the per-query kernel), 1e-5; with F32 and F16 caches (the reference takes the values the
// cache holds).
TEST(CudaKernels, AttentionMatchesSoftmaxReference) {
  SKIP_WITHOUT_GPU();
  const ResetAttentionOptions reset;
  for (cuda::KvType kv : kKvTypes)
    for (const auto& [tiled, D, T] : std::vector<std::tuple<int, int, int>>{
             {0, 64, 5}, {0, 128, 5}, {1, 64, 27}, {1, 128, 37}, {1, 128, 5}, {1, 256, 11}}) {
      SCOPED_TRACE(testing::Message() << "tiled " << tiled << " D " << D << " T " << T << " F16 "
                                      << (kv == cuda::KvType::F16));
      cuda::set_attention_options(tiled);
      const int H = 8, HKV = 2, pos0 = 300, n_ctx = pos0 + T;
      const int KV = HKV * D, Q = H * D;
      const std::vector<float> q = random_floats(T * Q, 8),
                               kc = as_cached(random_floats(n_ctx * KV, 9), kv),
                               vc = as_cached(random_floats(n_ctx * KV, 10), kv);
      Dev<float> dq(q), dout(T * Q);
      DevCache dk(kc, kv), dv(vc, kv);
      Dev<int> dpos(std::vector<int>{pos0});
      Dev<int8_t> oq(T * Q);
      Dev<float> od(T * Q / 32);
      cuda::attention(dq.p, Q, {dk.p(), dv.p(), kv}, H, HKV, D, dpos.p, T, dout.p, nullptr, oq.p,
                      od.p);
      const std::vector<float> out = dout.download();
      expect_fused_q8(dout.p, T, Q, oq.p, od.p);
      for (int t = 0; t < T; ++t) {
        for (int h = 0; h < H; ++h) {
          const int kvh = h / (H / HKV), n_keys = pos0 + t + 1;
          std::vector<float> s(n_keys);
          for (int j = 0; j < n_keys; ++j) {
            double d = 0;
            for (int i = 0; i < D; ++i) d += q[t * Q + h * D + i] * kc[j * KV + kvh * D + i];
            s[j] = static_cast<float>(d / std::sqrt(static_cast<double>(D)));
          }
          softmax_inplace(s.data(), n_keys);
          for (int i = 0; i < D; ++i) {
            double o = 0;
            for (int j = 0; j < n_keys; ++j) o += s[j] * vc[j * KV + kvh * D + i];
            ASSERT_NEAR(out[t * Q + h * D + i], o, 1e-5) << "D " << D << " t " << t << " h " << h;
          }
        }
      }
    }
}

// One token: RoPE + KV store inside attention gives the same bits as the two kernels.
// Decode attention split over 256-key chunks (flash-decoding) against the one-block-per-head
// kernel, both with RoPE fused: positions ending a chunk, starting one and in the middle of a
// third; chunks past the position in the grid; the caches' new rows equal, the output within
// 1e-5 (another summation order) and its 8-bit form as quantize_activations_q8 makes it, the
// counters back at zero.
// Heads of 128 dimensions (4 registers a lane, 16 warps a split block) and of 256 (8 and 8).
// Both cache types.
TEST(CudaKernels, SplitDecodeAttentionMatchesOneBlockPerHead) {
  SKIP_WITHOUT_GPU();
  const ResetAttentionOptions reset;
  cuda::set_attention_options(-1, 0);  // the kernels of one block per q head
  for (cuda::KvType kv : kKvTypes)
    for (const auto& [D, pos0] : std::vector<std::pair<int, int>>{
             {128, 255}, {128, 256}, {128, 700}, {256, 256}, {256, 700}}) {
      SCOPED_TRACE(testing::Message()
                   << "D " << D << " pos0 " << pos0 << " F16 " << (kv == cuda::KvType::F16));
      const int H = 8, HKV = 2, n_rot = D, n_ctx = 1200;
      const int Q = H * D, KV = HKV * D, ld = Q + 2 * KV;
      const int n_splits = (n_ctx + cuda::kAttentionSplitKeys - 1) / cuda::kAttentionSplitKeys;
      const std::vector<float> cache = random_floats(n_ctx * KV, 82);
      Dev<float> partials(H * n_splits * (D + 2));
      Dev<int> counters(std::vector<int>(H, 0));
      const std::vector<float> qkv = random_floats(ld, 81 + pos0);
      const std::vector<float> table = rope_table(pos0, n_rot);
      Dev<float> dtable(table);
      Dev<int> dpos(std::vector<int>{pos0});
      std::vector<std::vector<float>> outs, kcs, vcs;
      for (bool split : {false, true}) {
        Dev<float> dqkv(qkv), out(Q);
        DevCache kc(cache, kv), vc(cache, kv);
        const cuda::RopeArgs a = rope_args(dqkv.p, H, HKV, D, n_rot, false, nullptr, nullptr,
                                           nullptr, dtable.p, dpos.p, kc, vc);
        const cuda::AttentionSplit s{partials.p, counters.p, n_splits};
        Dev<int8_t> oq(Q);
        Dev<float> od(Q / 32);
        cuda::attention(dqkv.p, ld, a.cache, H, HKV, D, dpos.p, 1, out.p, nullptr, oq.p, od.p, &a,
                        split ? &s : nullptr);
        ASSERT_EQ(cudaGetLastError(), cudaSuccess);
        expect_fused_q8(out.p, 1, Q, oq.p, od.p);
        outs.push_back(out.download());
        kcs.push_back(kc.download());
        vcs.push_back(vc.download());
      }
      for (int i = 0; i < Q; ++i) {
        ASSERT_NEAR(outs[1][i], outs[0][i], 1e-5 * (1 + std::fabs(outs[0][i]))) << "at " << i;
      }
      EXPECT_EQ(kcs[0], kcs[1]);
      EXPECT_EQ(vcs[0], vcs[1]);
      for (int v : counters.download()) EXPECT_EQ(v, 0);
    }
}

// Heads of 128 dimensions, all rotated or the first 64 (a tail copied as is), and of 256; both
// cache types; the decode kernels of one block per q head and of one cluster per kv head.
TEST(CudaKernels, AttentionWithFusedRopeMatchesSeparateKernels) {
  SKIP_WITHOUT_GPU();
  const ResetAttentionOptions reset;
  for (int group : {0, 1})
    for (cuda::KvType kv : kKvTypes)
      for (const auto& [neox, D, n_rot] :
           std::vector<std::tuple<bool, int, int>>{{false, 128, 128},
                                                   {true, 128, 128},
                                                   {false, 128, 64},
                                                   {true, 128, 64},
                                                   {true, 256, 256}}) {
        SCOPED_TRACE(testing::Message()
                     << "neox " << neox << " D " << D << " n_rot " << n_rot << " group " << group);
        cuda::set_attention_options(-1, group);
        const int H = 8, HKV = 2, pos0 = 37, n_ctx = 64;
        const int Q = H * D, KV = HKV * D, ld = Q + 2 * KV;
        const std::vector<float> qkv = random_floats(ld, 61), cache = random_floats(n_ctx * KV, 62);
        const std::vector<float> bias = random_floats(ld, 63);
        const std::vector<float> table = rope_table(pos0, n_rot);
        Dev<float> dtable(table), dbias(bias);
        Dev<int> dpos(std::vector<int>{pos0});
        std::vector<std::vector<float>> outs, kcs, vcs;
        for (bool fused : {false, true}) {
          Dev<float> dqkv(qkv), out(Q);
          DevCache kc(cache, kv), vc(cache, kv);
          const cuda::RopeArgs a = rope_args(dqkv.p, H, HKV, D, n_rot, neox, dbias.p, dbias.p + Q,
                                             dbias.p + Q + KV, dtable.p, dpos.p, kc, vc);
          if (!fused) cuda::rope_and_store(a, 1, nullptr);
          cuda::attention(dqkv.p, ld, a.cache, H, HKV, D, dpos.p, 1, out.p, nullptr, nullptr,
                          nullptr, fused ? &a : nullptr);
          ASSERT_EQ(cudaGetLastError(), cudaSuccess);
          outs.push_back(out.download());
          kcs.push_back(kc.download());
          vcs.push_back(vc.download());
        }
        EXPECT_EQ(outs[0], outs[1]) << "neox " << neox;
        EXPECT_EQ(kcs[0], kcs[1]) << "neox " << neox;
        EXPECT_EQ(vcs[0], vcs[1]) << "neox " << neox;
      }
}

// Decode attention by kv head in clusters (attention_decode.cu) against softmax in double over the
// cache it leaves, and against the kernels of one block per q head (within 1e-5; the same new
// rows in the caches): q heads per kv head 1, 2, 3, 4, 7 and 8 (the kernels for 1, 2, 4 and 8,
// heads masked in between), heads of 64, 128 and 256 dimensions, contexts shorter than the
// cluster (blocks without keys), ending a trip or not, and of 4,101 keys, in clusters of 2, 3, 5
// and 16 blocks; RoPE fused (with
// biases) or done before by rope_and_store, which must give the same bits; both cache types; the
// output's 8-bit form as quantize_activations_q8 makes it.
TEST(CudaKernels, GroupDecodeAttentionMatchesReference) {
  SKIP_WITHOUT_GPU();
  const ResetAttentionOptions reset;
  for (cuda::KvType kv : kKvTypes)
    for (const auto& [H, HKV, D] : std::vector<std::tuple<int, int, int>>{{8, 2, 128},
                                                                          {32, 8, 128},
                                                                          {28, 4, 128},
                                                                          {6, 2, 64},
                                                                          {4, 4, 64},
                                                                          {8, 4, 64},
                                                                          {8, 1, 64},
                                                                          {8, 2, 256},
                                                                          {4, 2, 256}})
      for (const auto& [pos0, chunks] : std::vector<std::pair<int, int>>{
               {0, 16}, {5, 3}, {37, 0}, {300, 2}, {300, 16}, {4100, 16}, {4100, 5}}) {
        SCOPED_TRACE(testing::Message()
                     << "H " << H << " HKV " << HKV << " D " << D << " pos0 " << pos0 << " blocks "
                     << chunks << " F16 " << (kv == cuda::KvType::F16));
        const int n_rot = D, Q = H * D, KV = HKV * D, ld = Q + 2 * KV, n_ctx = pos0 + 1;
        const bool bias = pos0 % 2 == 1;
        const std::vector<float> qkv = random_floats(ld, 91 + pos0 + H),
                                 cache = random_floats(n_ctx * KV, 92 + D);
        const std::vector<float> biases = random_floats(ld, 93);
        const std::vector<float> table = rope_table(pos0, n_rot);
        Dev<float> dtable(table), dbias(biases);
        Dev<int> dpos(std::vector<int>{pos0});
        // Runs: 0 per-head kernel with RoPE fused, 1 group kernel fused, 2 group kernel after
        // rope_and_store (its q: the rotated rows, kept for the reference), 3 as 1 in blocks of
        // 16 warps where they apply, 4 and 5 one block per kv head (no cluster) of 16 and 8 warps
        // (other summation orders: checked against the reference).
        std::vector<std::vector<float>> outs, kcs, vcs;
        std::vector<float> rotated;
        for (int run : {0, 1, 2, 3, 4, 5}) {
          const bool sixteen = run == 3 || run == 4;
          cuda::set_attention_options(-1, run == 0 ? 0 : 1, sixteen ? 16 : 8,
                                      run == 4 || run == 5 ? 1 : 0, 0);
          Dev<float> dqkv(qkv), out(Q);
          DevCache kc(cache, kv), vc(cache, kv);
          const cuda::RopeArgs a =
              rope_args(dqkv.p, H, HKV, D, n_rot, false, bias ? dbias.p : nullptr,
                        bias ? dbias.p + Q : nullptr, bias ? dbias.p + Q + KV : nullptr, dtable.p,
                        dpos.p, kc, vc);
          Dev<int8_t> oq(Q);
          Dev<float> od(Q / 32);
          if (run == 2) cuda::rope_and_store(a, 1, nullptr);
          // Blocks per kv head: chunks (0: none given, 2), through the split's chunk count.
          const cuda::AttentionSplit blocks{nullptr, nullptr, chunks, chunks};
          cuda::attention(dqkv.p, ld, a.cache, H, HKV, D, dpos.p, 1, out.p, nullptr, oq.p, od.p,
                          run == 2 ? nullptr : &a, run == 0 || chunks == 0 ? nullptr : &blocks);
          ASSERT_EQ(cudaGetLastError(), cudaSuccess);
          expect_fused_q8(out.p, 1, Q, oq.p, od.p);
          outs.push_back(out.download());
          kcs.push_back(kc.download());
          vcs.push_back(vc.download());
          if (run == 2) rotated = dqkv.download();
        }
        EXPECT_EQ(kcs[1], kcs[0]);
        EXPECT_EQ(vcs[1], vcs[0]);
        EXPECT_EQ(kcs[2], kcs[0]);
        EXPECT_EQ(vcs[2], vcs[0]);
        EXPECT_EQ(outs[2], outs[1]);
        for (int run : {3, 4, 5}) {
          EXPECT_EQ(kcs[run], kcs[0]) << "run " << run;
          EXPECT_EQ(vcs[run], vcs[0]) << "run " << run;
        }
        const std::vector<float>& kc = kcs[0];
        const std::vector<float>& vc = vcs[0];
        for (int h = 0; h < H; ++h) {
          const int kvh = h / (H / HKV), n_keys = pos0 + 1;
          std::vector<double> s(n_keys);
          double mx = -1e300;
          for (int j = 0; j < n_keys; ++j) {
            double d = 0;
            for (int i = 0; i < D; ++i) d += rotated[h * D + i] * kc[j * KV + kvh * D + i];
            s[j] = d / std::sqrt(static_cast<double>(D));
            mx = std::max(mx, s[j]);
          }
          double sum = 0;
          for (double& x : s) sum += x = std::exp(x - mx);
          for (int i = 0; i < D; ++i) {
            double o = 0;
            for (int j = 0; j < n_keys; ++j) o += s[j] * vc[j * KV + kvh * D + i];
            o /= sum;
            ASSERT_NEAR(outs[1][h * D + i], o, 1e-5 * (1 + std::fabs(o)))
                << "h " << h << " i " << i;
            ASSERT_NEAR(outs[0][h * D + i], outs[1][h * D + i], 1e-5 * (1 + std::fabs(o)))
                << "h " << h << " i " << i;
            for (int run : {3, 4, 5})
              ASSERT_NEAR(outs[run][h * D + i], o, 1e-5 * (1 + std::fabs(o)))
                  << "run " << run << ": h " << h << " i " << i;
          }
        }
      }
}

TEST(CudaKernels, GatedActivations) {
  SKIP_WITHOUT_GPU();
  const int n = 1024, T = 2;  // a multiple of 32 for the 8-bit output
  for (bool gelu : {false, true}) {
    const std::vector<float> gu = random_floats(T * 2 * n, 12, 2.0f);
    Dev<float> dgu(gu), gated(T * n);
    Dev<int8_t> q(T * n);
    Dev<float> d(T * n / 32);
    cuda::gated_activation(dgu.p, 2 * n, dgu.p + n, 2 * n, T, n, gelu, nullptr, q.p, d.p);
    const std::vector<float> out = dgu.download();
    for (int t = 0; t < T; ++t) {
      ASSERT_EQ(cudaMemcpy(gated.p + t * n, dgu.p + t * 2 * n, n * 4, cudaMemcpyDeviceToDevice),
                cudaSuccess);
    }
    expect_fused_q8(gated.p, T, n, q.p, d.p);
    for (int t = 0; t < T; ++t) {
      std::vector<float> g(gu.begin() + t * 2 * n, gu.begin() + t * 2 * n + n);
      if (gelu) {
        gelu_mul(g.data(), gu.data() + t * 2 * n + n, n);
      } else {
        silu_mul(g.data(), gu.data() + t * 2 * n + n, n);
      }
      for (int i = 0; i < n; ++i)
        ASSERT_NEAR(out[t * 2 * n + i], g[i], 1e-5f * (1 + std::fabs(g[i])));
    }
  }
}

TEST(CudaKernels, ArgmaxTakesFirstOfEqualMaxima) {
  SKIP_WITHOUT_GPU();
  std::vector<float> x = random_floats(128256, 13);
  x[77777] = 50.0f;
  x[99999] = 50.0f;
  Dev<float> dx(x);
  Dev<int> out(1);
  cuda::argmax(dx.p, static_cast<int>(x.size()), out.p, nullptr);
  EXPECT_EQ(out.download()[0], 77777);
}

// top_k_logits against the host sampler's top_candidates: the same k (value, id) pairs, bit for
// bit, over rows with many equal values (ties ranked by id) and masked (-inf) entries, of one
// 8,192-element slice, a slice and one element, and many.
TEST(CudaKernels, TopKMatchesTheHostSamplersCandidates) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(21);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (int n : {5, 1000, 8192, 8193, 50000, 128256}) {
    std::vector<float> x(n);
    for (float& v : x) v = std::round(normal(rng) * 8.0f) / 8.0f;
    x[n / 2] = -INFINITY;
    x[n - 1] = 30.0f;
    Dev<float> dx(x);
    for (int k : {1, 5, 40, 256}) {
      if (k > n) continue;
      for (float temperature : {1.0f, 0.7f}) {
        SCOPED_TRACE(testing::Message()
                     << "n " << n << " k " << k << " temperature " << temperature);
        Dev<char> scratch(cuda::top_k_scratch_bytes(n, k));
        Dev<float> values(k);
        Dev<int> ids(k);
        cuda::top_k_logits(dx.p, n, temperature, k, scratch.p, values.p, ids.p, nullptr);
        ASSERT_EQ(cudaGetLastError(), cudaSuccess);
        const std::vector<float> v = values.download();
        const std::vector<int> id = ids.download();
        std::vector<Candidate> got(k), want;
        for (int i = 0; i < k; ++i) got[i] = {v[i], id[i]};
        std::sort(got.begin(), got.end(), ranks_before);
        top_candidates(x.data(), n, temperature, k, want);
        ASSERT_EQ(got, want);
      }
    }
  }
}

TEST(CudaKernels, ReadBandwidthIsMeasured) {
  SKIP_WITHOUT_GPU();
  const CudaBandwidth bw = measure_cuda_bandwidth(size_t{256} << 20, 3);
  EXPECT_GT(bw.read_gbps, 10.0);
  EXPECT_GT(bw.copy_gbps, 10.0);
}

// ---- Whole model: GPU vs CPU logits for the same quantized file ----

std::string model_file(const std::string& name) {
  if (const char* dir = std::getenv("SQUISH_CUDA_MODELS")) return std::string(dir) + "/" + name;
  return test::shared_path("models/" + name);
}

// n_prefill tokens at once (with every row's logits), then 8 decode steps, in a context of n_ctx.
// The CPU runs the same file, or with float_reference its every matrix dequantized to F32: the
// exact products of the weights the GPU holds, for the kernels that take F32 activations (the
// CPU runtime's K-quant products quantize activations to 8 bits per 256, which a random model
// can amplify past the GPU's own error).
void compare_model(const std::string& name, int n_prefill = 40, int n_ctx = 128,
                   double min_agree = 0.9, bool float_reference = false) {
  const std::string path = model_file(name);
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not found (SQUISH_CUDA_MODELS)";
  auto model = load_model(path);
  std::unique_ptr<Model> dequantized;
  if (float_reference) {
    dequantized = load_model(path);
    for (const TensorInfo& t : model->tensors()) {
      if (t.type != DType::F32) dequantized->make_owned_f32(t.name);
    }
    dequantized->bind_and_validate();
  }
  std::vector<int32_t> tokens(n_prefill + 8);
  std::mt19937 rng(3);
  for (auto& t : tokens) t = static_cast<int32_t>(rng() % model->config.n_vocab);
  SessionOptions cpu_opts, gpu_opts;
  cpu_opts.n_ctx = gpu_opts.n_ctx = n_ctx;
  cpu_opts.n_batch = gpu_opts.n_batch = 32;  // prefill crosses a micro-batch boundary
  cpu_opts.device = Device::Cpu;
  gpu_opts.device = Device::Cuda;
  Session cpu(dequantized ? *dequantized : *model, cpu_opts), gpu(*model, gpu_opts);
  const int V = model->config.n_vocab;
  std::vector<float> lc, lg;
  double err2 = 0, ref2 = 0;
  int agree = 0, rows = 0;
  auto accumulate = [&](const float* a, const float* b, int n_rows) {
    for (int r = 0; r < n_rows; ++r) {
      const float* x = a + static_cast<size_t>(r) * V;
      const float* y = b + static_cast<size_t>(r) * V;
      for (int i = 0; i < V; ++i) {
        ASSERT_TRUE(std::isfinite(y[i]));
        err2 += (x[i] - y[i]) * (x[i] - y[i]);
        ref2 += x[i] * x[i];
      }
      agree += std::max_element(x, x + V) - x == std::max_element(y, y + V) - y;
      ++rows;
    }
  };
  // Prefill with every row's logits, then decode steps (the GPU's graph path).
  cpu.eval(tokens.data(), n_prefill, true, lc);
  gpu.eval(tokens.data(), n_prefill, true, lg);
  accumulate(lc.data(), lg.data(), n_prefill);
  for (int i = n_prefill; i < n_prefill + 8; ++i) {
    cpu.eval(&tokens[i], 1, false, lc);
    gpu.eval(&tokens[i], 1, false, lg);
    accumulate(lc.data(), lg.data(), 1);
  }
  const double rel = std::sqrt(err2 / ref2);
  std::printf("%s: RMS(gpu - cpu) / RMS(cpu) = %.4f, top-1 agreement %d / %d\n", name.c_str(), rel,
              agree, rows);
  EXPECT_LT(rel, 0.05);
  EXPECT_GE(agree, rows * min_agree);
}

// Sampling with the candidates selected on the device (Session::eval_top_k, Sampler::sample_top:
// `squish run`'s path) draws the tokens that copying each row back and sampling it draws: two
// sessions of one file, the same seed, a prompt and 24 steps.
TEST(CudaModel, DeviceTopKSamplesAsTheCopiedRow) {
  SKIP_WITHOUT_GPU();
  const std::string path = model_file("gcide-llama-16M-Q4_K_M.gguf");
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not found (SQUISH_CUDA_MODELS)";
  auto model = load_model(path);
  const int V = model->config.n_vocab;
  SessionOptions o;
  o.n_ctx = 96;
  o.device = Device::Cuda;
  Session copied(*model, o), selected(*model, o);
  for (const SamplerOptions& so :
       {SamplerOptions{0.9f, 40, 0.95f, 17}, SamplerOptions{1.5f, 256, 1.0f, 18}}) {
    copied.reset();
    selected.reset();
    Sampler a(so), b(so);
    std::vector<int32_t> prompt(6);
    std::mt19937 rng(so.top_k);
    for (auto& t : prompt) t = static_cast<int32_t>(rng() % V);
    std::vector<float> logits;
    std::vector<Candidate> candidates;
    copied.eval(prompt.data(), 6, false, logits);
    int32_t ta = a.sample(logits.data(), V);
    ASSERT_TRUE(selected.eval_top_k(prompt.data(), 6, so.top_k, so.temperature, candidates));
    int32_t tb = b.sample_top(candidates);
    for (int step = 0; step < 24; ++step) {
      ASSERT_EQ(ta, tb) << "top_k " << so.top_k << " step " << step;
      copied.eval(&ta, 1, false, logits);
      ta = a.sample(logits.data(), V);
      ASSERT_TRUE(selected.eval_top_k(&tb, 1, so.top_k, so.temperature, candidates));
      tb = b.sample_top(candidates);
    }
    EXPECT_EQ(selected.n_past(), copied.n_past());
  }
  // Greedy (run's temperature 0): the top 1 at temperature 1 is the row's first maximum.
  copied.reset();
  selected.reset();
  std::vector<float> logits;
  std::vector<Candidate> top1;
  int32_t ta = 3, tb = 3;
  for (int step = 0; step < 16; ++step) {
    copied.eval(&ta, 1, false, logits);
    ta = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    ASSERT_TRUE(selected.eval_top_k(&tb, 1, 1, 1.0f, top1));
    ASSERT_EQ(top1.size(), 1u);
    tb = top1[0].second;
    ASSERT_EQ(ta, tb) << "greedy step " << step;
  }
  std::vector<Candidate> candidates;
  const int32_t token = 1;
  EXPECT_FALSE(selected.eval_top_k(&token, 1, 257, 0.9f, candidates));  // above the device's 256
  EXPECT_FALSE(selected.eval_top_k(&token, 1, 40, 0.0f, candidates));   // greedy
  Session cpu(*model, SessionOptions{});
  EXPECT_FALSE(cpu.eval_top_k(&token, 1, 40, 0.9f, candidates));
}

// eval_last leaves the row in the session's pinned buffer: the bits eval copies out, at every
// step, after a prefill of micro-batches of 16, 16 and 8 (RoPE rows placed by the pass's length).
TEST(CudaModel, EvalLastIsTheLastRowOfEval) {
  SKIP_WITHOUT_GPU();
  const std::string path = model_file("gcide-llama-16M-Q4_K_M.gguf");
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not found (SQUISH_CUDA_MODELS)";
  auto model = load_model(path);
  SessionOptions o;
  o.n_ctx = 96;
  o.n_batch = 16;
  o.device = Device::Cuda;
  Session copied(*model, o), viewed(*model, o);
  std::vector<int32_t> tokens(56);
  std::mt19937 rng(7);
  for (auto& t : tokens) t = static_cast<int32_t>(rng() % model->config.n_vocab);
  std::vector<float> logits;
  copied.eval(tokens.data(), 40, false, logits);
  std::span<const float> row = viewed.eval_last(tokens.data(), 40);
  ASSERT_EQ(row.size(), logits.size());
  EXPECT_TRUE(std::equal(row.begin(), row.end(), logits.begin()));
  for (int i = 40; i < 56; ++i) {
    copied.eval(&tokens[i], 1, false, logits);
    row = viewed.eval_last(&tokens[i], 1);
    EXPECT_TRUE(std::equal(row.begin(), row.end(), logits.begin())) << "token " << i;
  }
  EXPECT_EQ(viewed.n_past(), copied.n_past());
}

TEST(CudaModel, LlamaQ4KMMatchesCpu) {
  SKIP_WITHOUT_GPU();
  compare_model("gcide-llama-16M-Q4_K_M.gguf");
}
TEST(CudaModel, LlamaQ4KMMatchesCpuWithF32Activations) {
  SKIP_WITHOUT_GPU();
  setenv("SQUISH_CUDA_Q8", "0", 1);  // read when the CUDA session is made
  compare_model("gcide-llama-16M-Q4_K_M.gguf");
  unsetenv("SQUISH_CUDA_Q8");
}
// The KV cache in F16 (SQUISH_CUDA_KV=f16; the default F32 is what the other model tests run),
// with the split decode attention as well.
TEST(CudaModel, LlamaQ4KMMatchesCpuWithF16Cache) {
  SKIP_WITHOUT_GPU();
  setenv("SQUISH_CUDA_KV", "f16", 1);  // read when the CUDA session is made
  compare_model("gcide-llama-16M-Q4_K_M.gguf");
  compare_model("gcide-llama-16M-Q4_K_M.gguf", 300, 600);
  unsetenv("SQUISH_CUDA_KV");
}
// The other block sizes of the persistent one-token products (the default, 1, runs the norm-
// prologue ones in one block per SM): blocks of 4 warps everywhere (0) and one block per SM
// everywhere (2), the K-quant mix (synth tiny-k: [q | k] and v of two types in one launch) too.
TEST(CudaModel, MatchesCpuWithEveryBlockSize) {
  SKIP_WITHOUT_GPU();
  for (int big : {0, 2}) {
    SCOPED_TRACE(testing::Message() << "big blocks " << big);
    cuda::set_decode_options(-1, 0, big);
    compare_model("gcide-llama-16M-Q4_K_M.gguf");
    compare_model("synth-tiny-k-Q4_K_M.gguf", 40, 128, 0.75);
  }
  cuda::set_decode_options(-1, 0);
}
// Decode attention within one 256-key chunk of context in one block of 16 warps per kv head (the
// default) and in a cluster of 2 blocks of 8 (set_attention_options' one_block 0): decode at 40-47
// tokens, and across the chunk boundary (250-257: then clusters, each chunk count its own graph).
TEST(CudaModel, MatchesCpuWithOneBlockOrClusterAttention) {
  SKIP_WITHOUT_GPU();
  const ResetAttentionOptions reset;
  for (int one_block : {1, 0}) {
    SCOPED_TRACE(testing::Message() << "one block " << one_block);
    cuda::set_attention_options(-1, -1, -1, -1, one_block);
    compare_model("gcide-llama-16M-Q4_K_M.gguf");
    compare_model("gcide-llama-16M-Q4_K_M.gguf", 250, 600);
    compare_model("synth-tiny-k-Q4_K_M.gguf", 40, 128, 0.75);
  }
}
TEST(CudaModel, LlamaQ8_0MatchesCpu) {
  SKIP_WITHOUT_GPU();
  compare_model("gcide-llama-16M-Q8_0.gguf");
}
// Decode attention split into 256-key chunks (the default past one chunk of context; read when
// the session is made): a 600-token context of 3 chunks, 300 tokens in, so decode spans 2 active
// chunks; and decode steps that cross from one active chunk to two (positions 250-257) and from
// two to three (508-515), each count its own captured graph.
// The gating in down's prologue (SQUISH_CUDA_FUSE bit 32 with the default 28; read when the
// session is made): decode against the CPU, a Llama Q4_K_M file and an all-K-quant one.
TEST(CudaModel, MatchesCpuWithTheGatingInDownsPrologue) {
  SKIP_WITHOUT_GPU();
  setenv("SQUISH_CUDA_FUSE", "60", 1);
  compare_model("gcide-llama-16M-Q4_K_M.gguf");
  compare_model("synth-tiny-k-Q4_K_M.gguf", 40, 128, 0.75);
  unsetenv("SQUISH_CUDA_FUSE");
}
TEST(CudaModel, LlamaMatchesCpuWithSplitDecodeAttention) {
  SKIP_WITHOUT_GPU();
  setenv("SQUISH_CUDA_ATTN_SPLIT", "1", 1);
  compare_model("gcide-llama-16M-Q4_K_M.gguf", 300, 600);
  compare_model("gcide-llama-16M-Q4_K_M.gguf", 250, 600);
  compare_model("gcide-llama-16M-Q4_K_M.gguf", 508, 600);
  unsetenv("SQUISH_CUDA_ATTN_SPLIT");
}
// A model whose every matrix is Q4_K or Q6_K (squish synth --shape tiny-k, random weights, head_dim
// 128, grouped kv heads; bench/cuda_pack.sh packs it): the K-quant decode kernels, [q | k] and v
// of two types in one launch, and decode across the split attention's chunk counts. Random
// logits lie closer together than a trained model's, so fewer top-1 choices must agree.
TEST(CudaModel, KQuantModelMatchesCpu) {
  SKIP_WITHOUT_GPU();
  compare_model("synth-tiny-k-Q4_K_M.gguf", 40, 128, 0.75);
  compare_model("synth-tiny-k-Q4_K_M.gguf", 250, 512, 0.75);  // the shape's whole context
}
// The lower-bit and legacy mixes (squish synth --shape tiny-k; bench/cuda_bench.sh makes them on
// the GPU machine): Q2_K's Q2_K / Q3_K / Q4_K matrices, Q3_K_M's Q3_K / Q4_K / Q5_K, IQ4_XS's,
// Q4_0's, Q5_1's and IQ4_NL's, each beside a Q6_K output, through the 8-bit decode kernels and
// cuBLAS prefill, against the same file on the CPU and against its weights dequantized to F32.
// (On the CPU the IQ4_XS file's own logits lie 0.0018 KLD from its dequantized weights', 86 %
// top-1: Q8_K activations through a random model, so the IQ4 files are compared with the latter
// only; Q3_K_M's lie 3e-6 KLD, 100 %. `squish eval` of each against its F32 `squish convert`, 2
// windows of 128 tokens of gcide-calib.txt.)
TEST(CudaModel, LowBitMixesMatchCpu) {
  SKIP_WITHOUT_GPU();
  for (const char* mix : {"Q2_K", "Q3_K_M", "IQ4_XS", "Q4_0", "Q5_1", "IQ4_NL"}) {
    SCOPED_TRACE(mix);
    const std::string name = std::string("synth-tiny-k-") + mix + ".gguf";
    compare_model(name, 40, 128, 0.75, true);
    if (std::string(mix).rfind("IQ4", 0) != 0) compare_model(name, 40, 128, 0.75);
  }
}
TEST(CudaModel, LlamaMatchesCpuWithTiledPrefillAttention) {
  SKIP_WITHOUT_GPU();
  const ResetAttentionOptions reset;
  cuda::set_attention_options(1);
  compare_model("gcide-llama-16M-Q4_K_M.gguf");
  compare_model("gcide-llama-16M-Q8_0.gguf");
}
// Every decode fusion on (31; the gating in gate|up's persistent kernel after its norm prologue
// with 30), for both weight files.
TEST(CudaModel, LlamaMatchesCpuWithEveryFusion) {
  SKIP_WITHOUT_GPU();
  for (const char* fuse : {"30", "31"}) {
    SCOPED_TRACE(fuse);
    setenv("SQUISH_CUDA_FUSE", fuse, 1);  // read when the CUDA session is made
    compare_model("gcide-llama-16M-Q4_K_M.gguf");
    compare_model("gcide-llama-16M-Q8_0.gguf");
  }
  unsetenv("SQUISH_CUDA_FUSE");
}
TEST(CudaModel, Qwen2Q4KMMatchesCpu) {
  SKIP_WITHOUT_GPU();
  compare_model("gcide-qwen2-28M-Q4_K_M.gguf");
}

// ---- Prefill through cuBLAS (kernels/cuda/gemm.h) ----
//
// Tolerance: the weights and the activations are rounded to F16 (unit roundoff 2^-11 each), so
// each product term w x is off by at most (2^-10 + 2^-22) |w x|; cuBLAS accumulates in F32 (at
// most cols * 2^-24 relative over the sum of |w x|: 2^-15 for 512 columns); values below F16's
// normal range (2^-14) round with an absolute error up to 2^-25, which adds 2^-25 (|w| + |x|)
// per term. Per output: |gpu - ref| <= (2^-10 + 2^-14) sum |w x| + 2^-25 sum (|w| + |x|) + 1e-6.

// W (rows x cols of `type`, repacked as repack_q8 does when `repacked`) times 32 and 45 tokens,
// with accumulate off and on, input and output rows at strides other than cols / rows, against
// matmul_reference; scratch_bytes small enough forces chunks of rows.
void check_prefill_gemm(DType type, bool repacked, int64_t rows, int64_t cols,
                        size_t scratch_bytes) {
  SCOPED_TRACE(testing::Message() << dtype_name(type) << (repacked ? " repacked" : " GGUF")
                                  << " scratch " << scratch_bytes);
  const std::vector<uint8_t> w = make_weights(type, rows, cols, 17);
  std::vector<float> wf(rows * cols);
  for (int64_t r = 0; r < rows; ++r)
    convert_row_to_f32(type, w.data() + r * row_bytes(type, cols), wf.data() + r * cols, cols);
  std::vector<uint8_t> stored = w;
  if (repacked) cuda::repack_q8(type, w.data(), rows, cols, stored.data());
  Dev<uint8_t> dw(stored);
  std::string err;
  auto gemm = cuda::PrefillGemm::create(nullptr, 64, cols, &err, scratch_bytes);
  ASSERT_NE(gemm, nullptr) << "cuBLAS not available: " << err;
  const int64_t ldx = cols + 4, ldy = rows + 3;
  for (int n_tokens : {32, 45}) {
    for (bool accumulate : {false, true}) {
      const std::vector<float> x = random_floats(n_tokens * ldx, 23 + n_tokens);
      const std::vector<float> y0 = random_floats(n_tokens * ldy, 29);
      std::vector<float> xc(n_tokens * cols), ref(n_tokens * rows);
      for (int t = 0; t < n_tokens; ++t)
        std::copy_n(x.data() + t * ldx, cols, xc.data() + t * cols);
      matmul_reference(xc.data(), n_tokens, w.data(), type, rows, cols, ref.data(), rows);
      Dev<float> dx(x), dy(y0);
      const int64_t before = cuda::prefill_gemm_products();
      gemm->set_input(dx.p, ldx, n_tokens, cols);
      ASSERT_EQ(gemm->matmul(type, repacked, dw.p, rows, cols, dy.p, ldy, accumulate), "");
      ASSERT_EQ(cudaGetLastError(), cudaSuccess);
      EXPECT_EQ(cuda::prefill_gemm_products(), before + 1);
      const std::vector<float> y = dy.download();
      for (int t = 0; t < n_tokens; ++t) {
        for (int64_t r = 0; r < ldy; ++r) {
          if (r >= rows) {  // padding between rows: untouched
            ASSERT_EQ(y[t * ldy + r], y0[t * ldy + r]) << "token " << t << " column " << r;
            continue;
          }
          double mag = 0, abs_sum = 0;
          for (int64_t i = 0; i < cols; ++i) {
            mag += std::fabs(wf[r * cols + i] * xc[t * cols + i]);
            abs_sum += std::fabs(wf[r * cols + i]) + std::fabs(xc[t * cols + i]);
          }
          const double tol = (std::ldexp(1.0, -10) + std::ldexp(1.0, -14)) * mag +
                             std::ldexp(1.0, -25) * abs_sum + 1e-6;
          const float want = ref[t * rows + r] + (accumulate ? y0[t * ldy + r] : 0.0f);
          ASSERT_NEAR(y[t * ldy + r], want, tol)
              << "token " << t << " row " << r << " acc " << accumulate;
        }
      }
    }
  }
}

class CudaPrefillGemm : public testing::TestWithParam<DType> {};

TEST_P(CudaPrefillGemm, GgufLayoutMatchesCpuReference) {
  SKIP_WITHOUT_GPU();
  const DType type = GetParam();
  const int64_t rows = 67, cols = 512;              // odd row count
  ASSERT_TRUE(cuda::matmul_supported(type, cols));  // the types a session holds in GGUF layout
  check_prefill_gemm(type, false, rows, cols, cuda::kGemmScratchBytes);  // one chunk
  check_prefill_gemm(type, false, rows, cols, 20 * cols * 2);  // chunks of 20 rows, last of 7
}

INSTANTIATE_TEST_SUITE_P(Types, CudaPrefillGemm,
                         testing::Values(DType::F32, DType::F16, DType::BF16, DType::Q4_0,
                                         DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0,
                                         DType::IQ4_NL, DType::Q2_K, DType::Q3_K, DType::Q4_K,
                                         DType::Q5_K, DType::Q6_K, DType::IQ4_XS),
                         [](const testing::TestParamInfo<DType>& info) {
                           return std::string(dtype_name(info.param));
                         });

TEST(CudaPrefillGemmRepacked, MatchesCpuReference) {
  SKIP_WITHOUT_GPU();
  for (DType type : kQ8Types) {
    ASSERT_TRUE(cuda::matmul_q8_supported(type, 768));
    check_prefill_gemm(type, true, 67, 768, cuda::kGemmScratchBytes);
    check_prefill_gemm(type, true, 67, 768, 20 * 768 * 2);
  }
}

// Whole model with prefill through cuBLAS (from 2 tokens on: both micro-batches of the 40-token
// prefill, and the all-logits output product), 8-bit decode kernels or F32 activations (then
// the GGUF-layout weights).
void compare_model_through_gemm(const std::string& name) {
  setenv("SQUISH_CUDA_GEMM_MIN", "2", 1);  // read when the CUDA session is made
  const int64_t before = cuda::prefill_gemm_products();
  compare_model(name);
  unsetenv("SQUISH_CUDA_GEMM_MIN");
  if (!std::filesystem::exists(model_file(name))) return;
  EXPECT_GT(cuda::prefill_gemm_products(), before) << "prefill did not take the cuBLAS path";
}
TEST(CudaModel, LlamaQ4KMPrefillThroughCublas) {
  SKIP_WITHOUT_GPU();
  compare_model_through_gemm("gcide-llama-16M-Q4_K_M.gguf");
}
TEST(CudaModel, LlamaQ8_0PrefillThroughCublas) {
  SKIP_WITHOUT_GPU();
  compare_model_through_gemm("gcide-llama-16M-Q8_0.gguf");
}
TEST(CudaModel, LlamaQ4KMPrefillThroughCublasWithF32Activations) {
  SKIP_WITHOUT_GPU();
  setenv("SQUISH_CUDA_Q8", "0", 1);
  compare_model_through_gemm("gcide-llama-16M-Q4_K_M.gguf");
  unsetenv("SQUISH_CUDA_Q8");
}
// The default bound (32) takes the first 32-token micro-batch of compare_model through cuBLAS
// (a carried model: bench/cuda_pack.sh's archive has no qwen2 file).
TEST(CudaModel, DefaultPrefillTakesCublasFrom32Tokens) {
  SKIP_WITHOUT_GPU();
  const std::string name = "gcide-llama-16M-Q8_0.gguf";
  const int64_t before = cuda::prefill_gemm_products();
  compare_model(name);
  if (!std::filesystem::exists(model_file(name))) return;
  EXPECT_GT(cuda::prefill_gemm_products(), before);
}
// A cuBLAS that cannot be loaded: no PrefillGemm, and the session keeps the mat-vec kernels.
TEST(CudaModel, PrefillFallsBackWithoutCublas) {
  SKIP_WITHOUT_GPU();
  setenv("SQUISH_CUBLAS", "/nonexistent/libcublas.so.13", 1);
  std::string err;
  EXPECT_EQ(cuda::PrefillGemm::create(nullptr, 64, 512, &err), nullptr);
  setenv("SQUISH_CUDA_GEMM_MIN", "2", 1);
  const int64_t before = cuda::prefill_gemm_products();
  compare_model("gcide-llama-16M-Q4_K_M.gguf");
  EXPECT_EQ(cuda::prefill_gemm_products(), before);
  unsetenv("SQUISH_CUDA_GEMM_MIN");
  unsetenv("SQUISH_CUBLAS");
}

}  // namespace
}  // namespace squish
