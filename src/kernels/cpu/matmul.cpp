#include "kernels/cpu/matmul.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/gemm_int8.h"
#include "kernels/cpu/gemv4.h"
#include "quant/quant.h"

namespace squish {

namespace {

CpuLevel detect() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
    return CpuLevel::AVX512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      __builtin_cpu_supports("f16c")) {
    return CpuLevel::AVX2;
  }
  return CpuLevel::Scalar;
}

CpuLevel initial_level() {
  CpuLevel level = detect();
  if (const char* env = std::getenv("SQUISH_CPU")) {
    const std::string s = env;
    CpuLevel wanted = level;
    if (s == "scalar") wanted = CpuLevel::Scalar;
    if (s == "avx2") wanted = CpuLevel::AVX2;
    if (s == "avx512") wanted = CpuLevel::AVX512;
    if (static_cast<int>(wanted) <= static_cast<int>(level)) level = wanted;
  }
  return level;
}

CpuLevel g_level = initial_level();

void convert_row_scalar(DType type, const void* src, float* dst, int64_t n) {
  switch (type) {
    case DType::F32:
      std::memcpy(dst, src, n * sizeof(float));
      return;
    case DType::F16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(s[i]);
      return;
    }
    case DType::BF16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(s[i]);
      return;
    }
    default:
      if (const QuantTraits* qt = quant_traits(type)) {
        qt->dequantize(src, dst, n);
        return;
      }
      fail("matmul: weight type {} is not supported by the CPU kernels", dtype_name(type));
  }
}

// Quantized weights: activations are quantized once per call to the type's dot format (as ggml
// does), then every (row, token) pair is one integer dot product over the row's blocks.
void matmul_quantized(const QuantTraits& qt, const float* x, int64_t n_tokens, const uint8_t* w,
                      int64_t rows, int64_t cols, float* y, int64_t ldy) {
  if (n_tokens >= kGemmMinTokens && gemm_available(qt.type)) {
    gemm_int8(qt, x, n_tokens, w, rows, cols, y, ldy);
    return;
  }
  const size_t act_row = row_bytes(qt.vec_dot_type, cols);
  const size_t w_row = row_bytes(qt.type, cols);
  thread_local std::vector<uint8_t> act;
  act.resize(act_row * n_tokens);
  uint8_t* a = act.data();
#pragma omp parallel for schedule(static) if (n_tokens > 1)
  for (int64_t t = 0; t < n_tokens; ++t) {
    quantize_activations(qt.vec_dot_type, x + t * cols, a + t * act_row, cols);
  }
  const VecDotFn dot = quant_dot(qt);
  if (n_tokens == 1) {
    // Decode: four rows per call where available (shares the per-row overhead of short rows).
    const Gemv4Fn rows4 = gemv4_kernel(qt.type);
    const int64_t chunk = 16;
    const int64_t n_chunks = (rows + chunk - 1) / chunk;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < n_chunks; ++c) {
      const int64_t r1 = std::min(rows, (c + 1) * chunk);
      int64_t r = c * chunk;
      if (rows4 != nullptr) {
        for (; r + 4 <= r1; r += 4) {
          const void* const w4[4] = {w + r * w_row, w + (r + 1) * w_row, w + (r + 2) * w_row,
                                     w + (r + 3) * w_row};
          rows4(cols, w4, a, y + r);
        }
      }
      for (; r < r1; ++r) y[r] = dot(cols, w + r * w_row, a);
    }
    return;
  }
  // Four tokens per call where available: each weight block is unpacked once per four tokens
  // instead of once per token, which is most of the per-token cost of the single dot.
  const VecDot4Fn dot4 = n_tokens >= 4 ? quant_dot4(qt) : nullptr;
  const int64_t chunk = 16;
  const int64_t n_chunks = (rows + chunk - 1) / chunk;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < n_chunks; ++c) {
    const int64_t r1 = std::min(rows, (c + 1) * chunk);
    for (int64_t r = c * chunk; r < r1; ++r) {
      const uint8_t* wr = w + r * w_row;
      int64_t t = 0;
      if (dot4 != nullptr) {
        for (; t + 4 <= n_tokens; t += 4) {
          const void* const rows4[4] = {a + t * act_row, a + (t + 1) * act_row,
                                        a + (t + 2) * act_row, a + (t + 3) * act_row};
          float out[4];
          dot4(cols, wr, rows4, out);
          for (int k = 0; k < 4; ++k) y[(t + k) * ldy + r] = out[k];
        }
      }
      for (; t < n_tokens; ++t) y[t * ldy + r] = dot(cols, wr, a + t * act_row);
    }
  }
}

}  // namespace

Gemv4Fn gemv4_kernel(DType type) {
  if (g_level != CpuLevel::AVX512) return nullptr;
  switch (type) {
    case DType::Q2_K:
      return kernels::gemv4_q2_K_avx512;
    case DType::Q3_K:
      return kernels::gemv4_q3_K_avx512;
    case DType::Q4_K:
      return kernels::gemv4_q4_K_avx512;
    case DType::Q5_K:
      return kernels::gemv4_q5_K_avx512;
    case DType::Q6_K:
      return kernels::gemv4_q6_K_avx512;
    case DType::IQ4_XS:
      return kernels::gemv4_iq4_xs_avx512;
    case DType::Q4_0:
      return kernels::gemv4_q4_0_q8_0_avx512;
    case DType::Q5_0:
      return kernels::gemv4_q5_0_q8_0_avx512;
    case DType::Q8_0:
      return kernels::gemv4_q8_0_q8_0_avx512;
    case DType::IQ4_NL:
      return kernels::gemv4_iq4_nl_q8_0_avx512;
    default:
      return nullptr;
  }
}

CpuLevel detected_cpu_level() {
  return detect();
}
CpuLevel active_cpu_level() {
  return g_level;
}
void set_cpu_level(CpuLevel level) {
  if (static_cast<int>(level) > static_cast<int>(detect())) level = detect();
  g_level = level;
}
const char* cpu_level_name(CpuLevel level) {
  switch (level) {
    case CpuLevel::Scalar:
      return "scalar";
    case CpuLevel::AVX2:
      return "avx2";
    case CpuLevel::AVX512:
      return "avx512";
  }
  return "?";
}

void convert_row_to_f32(DType type, const void* src, float* dst, int64_t n) {
  if (type == DType::F16 && g_level == CpuLevel::AVX512) {
    kernels::convert_f16_avx512(static_cast<const uint16_t*>(src), dst, n);
  } else if (type == DType::F16 && g_level == CpuLevel::AVX2) {
    kernels::convert_f16_avx2(static_cast<const uint16_t*>(src), dst, n);
  } else if (type == DType::BF16 && g_level == CpuLevel::AVX512) {
    kernels::convert_bf16_avx512(static_cast<const uint16_t*>(src), dst, n);
  } else {
    convert_row_scalar(type, src, dst, n);
  }
}

float dot_f32(const float* a, const float* b, int64_t n) {
  if (g_level == CpuLevel::AVX512) return kernels::dot_f32_avx512(a, b, n);
  if (g_level == CpuLevel::AVX2) return kernels::dot_f32_avx2(a, b, n);
  float s = 0;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

void matmul_reference(const float* x, int64_t n_tokens, const void* w, DType w_type, int64_t rows,
                      int64_t cols, float* y, int64_t ldy) {
  std::vector<float> row(cols);
  const size_t stride = row_bytes(w_type, cols);
  for (int64_t r = 0; r < rows; ++r) {
    convert_row_scalar(w_type, static_cast<const uint8_t*>(w) + r * stride, row.data(), cols);
    for (int64_t t = 0; t < n_tokens; ++t) {
      double s = 0;
      for (int64_t i = 0; i < cols; ++i) s += static_cast<double>(x[t * cols + i]) * row[i];
      y[t * ldy + r] = static_cast<float>(s);
    }
  }
}

void matmul(const float* x, int64_t n_tokens, const void* w, DType w_type, int64_t rows,
            int64_t cols, float* y, int64_t ldy) {
  if (const QuantTraits* qt = quant_traits(w_type)) {
    if (cols % traits(w_type).block_size != 0) {
      fail("matmul: {} columns is not a multiple of {}'s block size", cols, dtype_name(w_type));
    }
    matmul_quantized(*qt, x, n_tokens, static_cast<const uint8_t*>(w), rows, cols, y, ldy);
    return;
  }
  if (w_type != DType::F32 && w_type != DType::F16 && w_type != DType::BF16) {
    fail("matmul: weight type {} is not supported by the CPU kernels", dtype_name(w_type));
  }
  const CpuLevel level = g_level;
  const size_t stride = row_bytes(w_type, cols);
  const uint8_t* wb = static_cast<const uint8_t*>(w);
  if (level == CpuLevel::Scalar) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      std::vector<float> row(cols);
      convert_row_scalar(w_type, wb + r * stride, row.data(), cols);
      for (int64_t t = 0; t < n_tokens; ++t) {
        float s = 0;
        for (int64_t i = 0; i < cols; ++i) s += x[t * cols + i] * row[i];
        y[t * ldy + r] = s;
      }
    }
    return;
  }
  if (n_tokens == 1) {
    // Decode: stream each row once, straight from the stored type.
    const int64_t chunk = 16;
    const int64_t n_chunks = (rows + chunk - 1) / chunk;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < n_chunks; ++c) {
      const int64_t r0 = c * chunk, r1 = std::min(rows, r0 + chunk);
      if (level == CpuLevel::AVX512) {
        kernels::gemv_avx512(x, w, w_type, r0, r1, cols, y);
      } else {
        kernels::gemv_avx2(x, w, w_type, r0, r1, cols, y);
      }
    }
    return;
  }
  // Prefill: convert a panel of rows to F32 once, stored column-major ("packed") so the
  // micro-kernel broadcasts activations against whole vectors of rows; reuse it for every token.
  const int width = level == CpuLevel::AVX512 ? 32 : 16;
  const int64_t n_panels = (rows + width - 1) / width;
#pragma omp parallel
  {
    std::vector<float> packed(static_cast<size_t>(width) * cols);
    std::vector<float> row(w_type == DType::F32 ? 0 : cols);
#pragma omp for schedule(static)
    for (int64_t p = 0; p < n_panels; ++p) {
      const int64_t r0 = p * width;
      const int nr = static_cast<int>(std::min<int64_t>(width, rows - r0));
      for (int j = 0; j < width; ++j) {
        if (j >= nr) {
          for (int64_t i = 0; i < cols; ++i) packed[i * width + j] = 0.0f;
          continue;
        }
        const float* src;
        if (w_type == DType::F32) {
          src = reinterpret_cast<const float*>(wb + (r0 + j) * stride);
        } else {
          convert_row_to_f32(w_type, wb + (r0 + j) * stride, row.data(), cols);
          src = row.data();
        }
        for (int64_t i = 0; i < cols; ++i) packed[i * width + j] = src[i];
      }
      if (level == CpuLevel::AVX512) {
        kernels::packed_panel_avx512(x, n_tokens, packed.data(), nr, cols, y + r0, ldy);
      } else {
        kernels::packed_panel_avx2(x, n_tokens, packed.data(), nr, cols, y + r0, ldy);
      }
    }
  }
}

}  // namespace squish
