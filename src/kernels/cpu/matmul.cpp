#include "kernels/cpu/matmul.h"

#include <cpuid.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
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
  // F16C from cpuid leaf 1 (ECX bit 29): clang 14's __builtin_cpu_supports does not know "f16c".
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 29)) != 0;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c) {
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

// ---- Products inside an OpenMP team ----
//
// Every thread of the team runs the same sequence: prepare the activations for a run of targets
// that share an activation format (split over tokens), a barrier, then the targets' work units
// (row chunks or panels of all of them, one static schedule), a barrier.

enum class Path { kGemm, kQuantDot, kFloatScalar, kFloatGemv, kFloatPanel };

Path path_for(const MatmulTarget& m, int64_t n_tokens) {
  const DType type = m.type;
  if (m.packed != nullptr && gemm_available(type)) return Path::kGemm;
  if (quant_traits(type) != nullptr) {
    return n_tokens >= kGemmMinTokens && gemm_available(type) ? Path::kGemm : Path::kQuantDot;
  }
  if (g_level == CpuLevel::Scalar) return Path::kFloatScalar;
  return n_tokens == 1 ? Path::kFloatGemv : Path::kFloatPanel;
}

int64_t rows_per_unit(Path path) {
  if (path == Path::kGemm) return kGemmPanelRows;
  if (path == Path::kFloatPanel) return g_level == CpuLevel::AVX512 ? 32 : 16;
  return 16;
}

// Targets share prepared activations when their paths and formats agree.
bool same_activations(const MatmulTarget& a, const MatmulTarget& b, int64_t n_tokens) {
  const Path pa = path_for(a, n_tokens), pb = path_for(b, n_tokens);
  if (pa != pb) return false;
  if (pa == Path::kQuantDot)
    return quant_traits(a.type)->vec_dot_type == quant_traits(b.type)->vec_dot_type;
  if (pa == Path::kGemm) {
    const GemmFormat fa = gemm_format(a.type), fb = gemm_format(b.type);
    return fa.group == fb.group && fa.groups_per_scale == fb.groups_per_scale &&
           fa.code_offset == fb.code_offset && fa.int_scales == fb.int_scales &&
           fa.int_mins == fb.int_mins && fa.float_mins == fb.float_mins &&
           fa.act_type == fb.act_type;
  }
  return true;  // float weights read x directly
}

// Units [u0, u1) of one target: rows [u0 * R, min(rows, u1 * R)).
void run_units(const MatmulTarget& m, Path path, const float* x, int64_t n_tokens, int64_t cols,
               const uint8_t* act, const GemmActivations& gemm_act, int64_t unit) {
  const int64_t R = rows_per_unit(path);
  const int64_t r0 = unit * R, r1 = std::min(m.rows, r0 + R);
  const auto* wb = static_cast<const uint8_t*>(m.w);
  const size_t stride = row_bytes(m.type, cols);
  switch (path) {
    case Path::kGemm: {
      if (m.packed != nullptr) {
        // Few tokens: the panel is used briefly, so fetch the next one meanwhile.
        const bool next = n_tokens <= 4 && unit + 1 < m.packed->n_panels;
        kernels::gemm_panel_avx512(
            m.type, m.packed->panel(unit), gemm_act, m.y + r0, m.ldy, static_cast<int>(r1 - r0),
            next ? m.packed->panel(unit + 1) : nullptr, next ? m.packed->panel_bytes : 0);
        return;
      }
      thread_local std::vector<uint8_t> storage;
      storage.resize(gemm_panel_bytes(gemm_act.format, cols) + 64);
      uint8_t* panel =
          storage.data() + (64 - reinterpret_cast<uintptr_t>(storage.data()) % 64) % 64;
      gemm_rows(m.type, wb, r0, static_cast<int>(r1 - r0), gemm_act, panel, m.y, m.ldy);
      return;
    }
    case Path::kQuantDot: {
      const QuantTraits& qt = *quant_traits(m.type);
      const size_t act_row = row_bytes(qt.vec_dot_type, cols);
      const VecDotFn dot = quant_dot(qt);
      if (n_tokens == 1) {
        // Decode: four rows per call where available (shares the per-row overhead).
        const Gemv4Fn rows4 = gemv4_kernel(m.type);
        int64_t r = r0;
        if (rows4 != nullptr) {
          for (; r + 4 <= r1; r += 4) {
            const void* const w4[4] = {wb + r * stride, wb + (r + 1) * stride,
                                       wb + (r + 2) * stride, wb + (r + 3) * stride};
            rows4(cols, w4, act, m.y + r);
          }
        }
        for (; r < r1; ++r) m.y[r] = dot(cols, wb + r * stride, act);
        return;
      }
      // Four tokens per call where available: each weight block is unpacked once per four
      // tokens instead of once per token, which is most of the per-token cost of the single dot.
      const VecDot4Fn dot4 = n_tokens >= 4 ? quant_dot4(qt) : nullptr;
      for (int64_t r = r0; r < r1; ++r) {
        const uint8_t* wr = wb + r * stride;
        int64_t t = 0;
        if (dot4 != nullptr) {
          for (; t + 4 <= n_tokens; t += 4) {
            const void* const a4[4] = {act + t * act_row, act + (t + 1) * act_row,
                                       act + (t + 2) * act_row, act + (t + 3) * act_row};
            float out[4];
            dot4(cols, wr, a4, out);
            for (int k = 0; k < 4; ++k) m.y[(t + k) * m.ldy + r] = out[k];
          }
        }
        for (; t < n_tokens; ++t) m.y[t * m.ldy + r] = dot(cols, wr, act + t * act_row);
      }
      return;
    }
    case Path::kFloatScalar: {
      thread_local std::vector<float> row;
      row.resize(cols);
      for (int64_t r = r0; r < r1; ++r) {
        convert_row_scalar(m.type, wb + r * stride, row.data(), cols);
        for (int64_t t = 0; t < n_tokens; ++t) {
          float s = 0;
          for (int64_t i = 0; i < cols; ++i) s += x[t * cols + i] * row[i];
          m.y[t * m.ldy + r] = s;
        }
      }
      return;
    }
    case Path::kFloatGemv:
      // Decode: stream each row once, straight from the stored type.
      if (g_level == CpuLevel::AVX512) {
        kernels::gemv_avx512(x, m.w, m.type, r0, r1, cols, m.y);
      } else {
        kernels::gemv_avx2(x, m.w, m.type, r0, r1, cols, m.y);
      }
      return;
    case Path::kFloatPanel: {
      // Prefill: convert a panel of rows to F32 once, stored column-major ("packed") so the
      // micro-kernel broadcasts activations against whole vectors of rows; reuse it for every
      // token.
      const int width = static_cast<int>(R);
      const int nr = static_cast<int>(r1 - r0);
      thread_local std::vector<float> packed, row;
      packed.resize(static_cast<size_t>(width) * cols);
      row.resize(cols);
      for (int j = 0; j < width; ++j) {
        if (j >= nr) {
          for (int64_t i = 0; i < cols; ++i) packed[i * width + j] = 0.0f;
          continue;
        }
        const float* src;
        if (m.type == DType::F32) {
          src = reinterpret_cast<const float*>(wb + (r0 + j) * stride);
        } else {
          convert_row_to_f32(m.type, wb + (r0 + j) * stride, row.data(), cols);
          src = row.data();
        }
        for (int64_t i = 0; i < cols; ++i) packed[i * width + j] = src[i];
      }
      if (g_level == CpuLevel::AVX512) {
        kernels::packed_panel_avx512(x, n_tokens, packed.data(), nr, cols, m.y + r0, m.ldy);
      } else {
        kernels::packed_panel_avx2(x, n_tokens, packed.data(), nr, cols, m.y + r0, m.ldy);
      }
      return;
    }
  }
}

}  // namespace

Gemv4Fn gemv4_kernel(DType type) {
  // The k-quant kernels use vpdpwssd (AVX-512 VNNI); the legacy ones check for it themselves.
  static const bool vnni = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vnni") != 0;
  }();
  if (g_level != CpuLevel::AVX512 || !vnni) return nullptr;
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

void matmul_check(DType type, int64_t cols) {
  if (quant_traits(type) != nullptr) {
    if (cols % traits(type).block_size != 0) {
      fail("matmul: {} columns is not a multiple of {}'s block size", cols, dtype_name(type));
    }
    return;
  }
  if (type != DType::F32 && type != DType::F16 && type != DType::BF16) {
    fail("matmul: weight type {} is not supported by the CPU kernels", dtype_name(type));
  }
}

size_t matmul_scratch_bytes(int64_t n_tokens, int64_t cols) {
  // Covers Q8_0 / Q8_1 / Q8_K rows (at most 1.15 bytes per element) and the GEMM's layout
  // (about 1.75 bytes per element plus alignment).
  return static_cast<size_t>(n_tokens) * (2 * cols + 64) + 4096;
}

void matmul_team(const float* x, int64_t n_tokens, int64_t cols, const MatmulTarget* targets,
                 int n_targets, uint8_t* scratch) {
  for (int i = 0; i < n_targets;) {
    int j = i + 1;
    while (j < n_targets && same_activations(targets[i], targets[j], n_tokens)) ++j;
    const Path path = path_for(targets[i], n_tokens);
    // Activations for targets [i, j), split over tokens.
    GemmActivations gemm_act;
    const uint8_t* act = scratch;
    if (path == Path::kGemm) {
      const GemmFormat f = gemm_format(targets[i].type);
      gemm_act = gemm_bind_activations(f, scratch, n_tokens, cols);
      const int64_t nt = omp_get_num_threads(), id = omp_get_thread_num();
      gemm_prepare_activations(x, n_tokens * id / nt, n_tokens * (id + 1) / nt, gemm_act);
#pragma omp barrier
    } else if (path == Path::kQuantDot) {
      const DType vdt = quant_traits(targets[i].type)->vec_dot_type;
      const size_t act_row = row_bytes(vdt, cols);
#pragma omp for schedule(static)
      for (int64_t t = 0; t < n_tokens; ++t) {
        quantize_activations(vdt, x + t * cols, scratch + t * act_row, cols);
      }
    }
    // Work units of targets [i, j), one static schedule over all of them.
    int64_t first[kMaxMatmulTargets + 1];
    first[0] = 0;
    const int64_t R = rows_per_unit(path);
    for (int k = i; k < j; ++k) first[k - i + 1] = first[k - i] + (targets[k].rows + R - 1) / R;
    const int64_t n_units = first[j - i];
#pragma omp for schedule(static)
    for (int64_t u = 0; u < n_units; ++u) {
      int k = 0;
      while (u >= first[k + 1]) ++k;
      run_units(targets[i + k], path, x, n_tokens, cols, act, gemm_act, u - first[k]);
    }
    i = j;
  }
}

void matmul(const float* x, int64_t n_tokens, const void* w, DType w_type, int64_t rows,
            int64_t cols, float* y, int64_t ldy) {
  matmul_check(w_type, cols);
  const MatmulTarget target{w, w_type, rows, y, ldy};
  thread_local std::vector<uint8_t> scratch;
  scratch.resize(matmul_scratch_bytes(n_tokens, cols));
  uint8_t* shared = scratch.data();
  // Small products run on the calling thread: waking the team costs more than they take.
  const bool parallel = static_cast<double>(rows) * cols * n_tokens >= 1e5;
#pragma omp parallel if (parallel)
  matmul_team(x, n_tokens, cols, &target, 1, shared);
}

}  // namespace squish
