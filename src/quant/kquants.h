// Internal to the k-quant family: the reference quantizers (kquants_quantize.cpp) that the traits
// in kquants.cpp point at. Everything public goes through quant/quant.h.
#pragma once

#include <cstdint>

namespace squish::kquant {

// x: n floats (n a multiple of QK_K); y: n / QK_K blocks; importance: n per-element weights or
// null (then each type weighs elements as ggml does without an importance matrix).
void quantize_q2_K(const float* x, void* y, int64_t n, const float* importance);
void quantize_q3_K(const float* x, void* y, int64_t n, const float* importance);
void quantize_q4_K(const float* x, void* y, int64_t n, const float* importance);
void quantize_q5_K(const float* x, void* y, int64_t n, const float* importance);
void quantize_q6_K(const float* x, void* y, int64_t n, const float* importance);
void quantize_iq4_xs(const float* x, void* y, int64_t n, const float* importance);

}  // namespace squish::kquant
