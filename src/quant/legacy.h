// The "legacy" ggml block formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and IQ4_NL (32 elements per
// block, one fp16 scale, plus an fp16 min for the _1 types). Q4_0 / Q5_0 / Q8_0 / IQ4_NL take
// Q8_0 activations in dot products, Q4_1 / Q5_1 take Q8_1 (whose s = d * sum(qs) folds the min
// term into one multiply per block). kTraits* in quant.h bundle these functions; this header is
// for tests and the SIMD kernel files.
#pragma once

#include <cstdint>

#include "quant/blocks.h"

namespace squish {

// IQ4_NL's 16 non-linear levels (ggml's kvalues_iq4nl): denser near zero, where most weights are.
inline constexpr int8_t kIQ4NLValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                            1,    13,   25,  38,  53,  69,  89,  113};

// ---- Round-to-nearest quantizers, byte-identical to ggml's quantize_row_*_ref (which is what
// llama-quantize writes without an importance matrix). n is a multiple of 32. ----
void quantize_row_q4_0_rtn(const float* x, block_q4_0* y, int64_t n);
void quantize_row_q4_1_rtn(const float* x, block_q4_1* y, int64_t n);
void quantize_row_q5_0_rtn(const float* x, block_q5_0* y, int64_t n);
void quantize_row_q5_1_rtn(const float* x, block_q5_1* y, int64_t n);
void quantize_row_q8_0_rtn(const float* x, block_q8_0* y, int64_t n);
void quantize_row_q8_1_rtn(const float* x, block_q8_1* y, int64_t n);
// ggml's quantize_row_iq4_nl_ref: nearest level at d = max / -127, then one weighted refit of d.
void quantize_row_iq4_nl_rtn(const float* x, block_iq4_nl* y, int64_t n);

// ---- Error-minimising quantizers (the traits' quantize). x is one row of n elements; importance
// (n floats, may be null) weighs each element's squared error. With importance the weights are
// importance[j] * sqrt(sigma2 + x[j]^2) as in ggml's quantize_row_*_impl; without it every
// element weighs 1, so the search minimises plain squared error. Each block's result is never
// worse (in that weighted error) than the RTN block above. ----
void quantize_row_q4_0(const float* x, void* y, int64_t n, const float* importance);
void quantize_row_q4_1(const float* x, void* y, int64_t n, const float* importance);
void quantize_row_q5_0(const float* x, void* y, int64_t n, const float* importance);
void quantize_row_q5_1(const float* x, void* y, int64_t n, const float* importance);
void quantize_row_q8_0(const float* x, void* y, int64_t n, const float* importance);
void quantize_row_iq4_nl(const float* x, void* y, int64_t n, const float* importance);

void dequantize_row_q4_0(const void* x, float* y, int64_t n);
void dequantize_row_q4_1(const void* x, float* y, int64_t n);
void dequantize_row_q5_0(const void* x, float* y, int64_t n);
void dequantize_row_q5_1(const void* x, float* y, int64_t n);
void dequantize_row_q8_0(const void* x, float* y, int64_t n);
void dequantize_row_q8_1(const void* x, float* y, int64_t n);
void dequantize_row_iq4_nl(const void* x, float* y, int64_t n);

// ---- Scalar reference dot products (same arithmetic as ggml's generic vec_dot: an exact int
// sum per block, then float sumf += d_w * d_a * sumi [+ m_w * s_a]). ----
float dot_q4_0_q8_0(int64_t n, const void* w, const void* a);
float dot_q4_1_q8_1(int64_t n, const void* w, const void* a);
float dot_q5_0_q8_0(int64_t n, const void* w, const void* a);
float dot_q5_1_q8_1(int64_t n, const void* w, const void* a);
float dot_q8_0_q8_0(int64_t n, const void* w, const void* a);
float dot_iq4_nl_q8_0(int64_t n, const void* w, const void* a);

// ---- SIMD versions (src/kernels/cpu/quant_legacy_avx2.cpp / _avx512.cpp). Call only when the
// CPU has the ISA. The AVX-512 ones use VNNI (vpdpbusd) and fall back to AVX2 without it.
// The AVX2 Q8_0 kernel needs activation quants in [-127, 127] (vpsignb cannot negate -128);
// quantize_act_q8_0 never produces -128. All others are exact for any bytes. ----
namespace kernels {
float dot_q4_0_q8_0_avx2(int64_t n, const void* w, const void* a);
float dot_q4_1_q8_1_avx2(int64_t n, const void* w, const void* a);
float dot_q5_0_q8_0_avx2(int64_t n, const void* w, const void* a);
float dot_q5_1_q8_1_avx2(int64_t n, const void* w, const void* a);
float dot_q8_0_q8_0_avx2(int64_t n, const void* w, const void* a);
float dot_iq4_nl_q8_0_avx2(int64_t n, const void* w, const void* a);

float dot_q4_0_q8_0_avx512(int64_t n, const void* w, const void* a);
float dot_q4_1_q8_1_avx512(int64_t n, const void* w, const void* a);
float dot_q5_0_q8_0_avx512(int64_t n, const void* w, const void* a);
float dot_q5_1_q8_1_avx512(int64_t n, const void* w, const void* a);
float dot_q8_0_q8_0_avx512(int64_t n, const void* w, const void* a);
float dot_iq4_nl_q8_0_avx512(int64_t n, const void* w, const void* a);
// Four activation rows at once (QuantTraits::dot4_avx512).
void dot4_q5_0_q8_0_avx512(int64_t n, const void* w, const void* const a[4], float out[4]);
void dot4_q8_0_q8_0_avx512(int64_t n, const void* w, const void* const a[4], float out[4]);
}  // namespace kernels

}  // namespace squish
