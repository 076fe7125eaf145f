// Matrix products against stored weights: Y[t][o] = sum_i X[t][i] * W[o][i].
// W is a weight matrix as stored in the model file (rows contiguous, F32/F16/BF16), X and Y are
// F32 activations. One call handles decode (n_tokens == 1: a matrix-vector product, bandwidth
// bound, rows split across threads) and prefill (a matrix-matrix product: rows are converted to
// F32 once per panel and reused across all tokens).
//
// Each variant (scalar reference, AVX2, AVX-512) is tested against the reference; the fastest
// the CPU supports is chosen at run time.
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "core/tensor.h"

namespace squish {

enum class CpuLevel { Scalar = 0, AVX2 = 1, AVX512 = 2 };
CpuLevel detected_cpu_level();
const char* cpu_level_name(CpuLevel level);
// Overrides the level used by matmul() (tests compare levels; SQUISH_CPU=scalar|avx2|avx512 too).
void set_cpu_level(CpuLevel level);
CpuLevel active_cpu_level();

// Multithreaded (OpenMP) product; ldy is Y's row stride in floats (>= rows).
void matmul(const float* x, int64_t n_tokens, const void* w, DType w_type, int64_t rows,
            int64_t cols, float* y, int64_t ldy);
inline void matmul(const float* x, int64_t n_tokens, const TensorInfo& w, float* y) {
  matmul(x, n_tokens, w.data, w.type, w.shape[0], w.shape[1], y, w.shape[0]);
}

// ---- Several products inside one OpenMP parallel region ----
// One weight matrix of a product: rows x cols stored as `type`; Y[t][r] at y[t * ldy + r].
struct GemmPackedMatrix;
struct MatmulTarget {
  const void* w;
  DType type;
  int64_t rows;
  float* y;
  int64_t ldy;
  // The same matrix packed into GEMM panels (gemm_int8.h), or null. When set, every token count
  // reads the panels (decode included) instead of the stored rows.
  const GemmPackedMatrix* packed = nullptr;
};
inline MatmulTarget matmul_target(const TensorInfo& w, float* y,
                                  const GemmPackedMatrix* packed = nullptr) {
  return {w.data, w.type, w.shape[0], y, w.shape[0], packed};
}
inline constexpr int kMaxMatmulTargets = 4;
// Throws (one line) if matmul cannot take the type or shape; call before a parallel region.
void matmul_check(DType type, int64_t cols);
// Scratch matmul_team needs, shared by the team.
size_t matmul_scratch_bytes(int64_t n_tokens, int64_t cols);
// Y_k = X W_k^T for n_targets <= kMaxMatmulTargets weights with the same `cols`, called by every
// thread of an OpenMP team with the same arguments (inside `#pragma omp parallel`). Activations
// are quantized once for targets that share a format, and the work of all targets is split in
// one schedule; returns after a barrier. Types must have passed matmul_check.
void matmul_team(const float* x, int64_t n_tokens, int64_t cols, const MatmulTarget* targets,
                 int n_targets, uint8_t* scratch);

// Single-threaded scalar reference with the same contract (double accumulation).
void matmul_reference(const float* x, int64_t n_tokens, const void* w, DType w_type, int64_t rows,
                      int64_t cols, float* y, int64_t ldy);

// Row conversion to F32 (dispatching to F16C / AVX-512 where available).
void convert_row_to_f32(DType type, const void* src, float* dst, int64_t n);

float dot_f32(const float* a, const float* b, int64_t n);

// ---- ISA-specific entry points (defined in matmul_avx2.cpp / matmul_avx512.cpp) ----
namespace kernels {
// Y[t][0..nr) over a panel of rows packed column-major: packed[i * W + j] = row j, column i,
// with W = 32 (AVX-512) or 16 (AVX2) and rows >= nr zero-filled.
void packed_panel_avx512(const float* x, int64_t n_tokens, const float* packed, int nr, int64_t k,
                         float* y, int64_t ldy);
void packed_panel_avx2(const float* x, int64_t n_tokens, const float* packed, int nr, int64_t k,
                       float* y, int64_t ldy);
// Fused decode dot products of one activation row against stored rows.
void gemv_avx2(const float* x, const void* w, DType type, int64_t row_begin, int64_t row_end,
               int64_t k, float* y);
void gemv_avx512(const float* x, const void* w, DType type, int64_t row_begin, int64_t row_end,
                 int64_t k, float* y);
void convert_f16_avx2(const uint16_t* src, float* dst, int64_t n);
void convert_bf16_avx512(const uint16_t* src, float* dst, int64_t n);
void convert_f16_avx512(const uint16_t* src, float* dst, int64_t n);
float dot_f32_avx2(const float* a, const float* b, int64_t n);
float dot_f32_avx512(const float* a, const float* b, int64_t n);
}  // namespace kernels

}  // namespace squish
