// Decode kernels for quantized weights: four weight rows against one activation row (quantized
// to the type's vec_dot format). With the model's short rows (a few hundred to a few thousand
// elements) the per-row overhead of the single dot product (call, horizontal reductions,
// activation loads and scale conversions) is a large part of its cost; these share it across
// four rows. Each out[k] equals the type's AVX-512 single dot product of row k exactly.
// AVX-512 only (the legacy ones fall back to the AVX2 single dot without VNNI).
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace squish {

using Gemv4Fn = void (*)(int64_t n, const void* const w_rows[4], const void* act_row, float out[4]);

// The four-row kernel for a type at the active CPU level, or nullptr.
Gemv4Fn gemv4_kernel(DType type);

namespace kernels {
void gemv4_q2_K_avx512(int64_t n, const void* const w[4], const void* a, float out[4]);
void gemv4_q3_K_avx512(int64_t n, const void* const w[4], const void* a, float out[4]);
void gemv4_q4_K_avx512(int64_t n, const void* const w[4], const void* a, float out[4]);
void gemv4_q5_K_avx512(int64_t n, const void* const w[4], const void* a, float out[4]);
void gemv4_q6_K_avx512(int64_t n, const void* const w[4], const void* a, float out[4]);
void gemv4_iq4_xs_avx512(int64_t n, const void* const w[4], const void* a, float out[4]);
void gemv4_q4_0_q8_0_avx512(int64_t n, const void* const w[4], const void* a, float out[4]);
void gemv4_q5_0_q8_0_avx512(int64_t n, const void* const w[4], const void* a, float out[4]);
void gemv4_q8_0_q8_0_avx512(int64_t n, const void* const w[4], const void* a, float out[4]);
void gemv4_iq4_nl_q8_0_avx512(int64_t n, const void* const w[4], const void* a, float out[4]);
}  // namespace kernels

}  // namespace squish
