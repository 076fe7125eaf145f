// Quantized weight types: per-type reference quantization (error-minimising scale search that
// can weigh each element by an importance), dequantization, and dot products of a quantized
// weight row with an activation row quantized to the type's "vec_dot" format (Q8_0, Q8_1 or
// Q8_K, as in ggml). Each dot product has a scalar reference and optional AVX2 / AVX-512
// versions; dot() picks the fastest one the active CPU level allows.
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "quant/blocks.h"

namespace squish {

using QuantizeFn = void (*)(const float* x, void* y, int64_t n, const float* importance);
using DequantizeFn = void (*)(const void* x, float* y, int64_t n);
using QuantizeActFn = void (*)(const float* x, void* y, int64_t n);
using VecDotFn = float (*)(int64_t n, const void* w_row, const void* act_row);
// One weight row against four activation rows: out[k] = dot(n, w_row, act_rows[k]). Prefill
// kernels unpack each weight block once and reuse it for all four rows.
using VecDot4Fn = void (*)(int64_t n, const void* w_row, const void* const act_rows[4],
                           float out[4]);

struct QuantTraits {
  DType type;
  DType vec_dot_type;   // activation block format the dot products take
  QuantizeFn quantize;  // reference quantization; importance may be null (n floats)
  DequantizeFn dequantize;
  VecDotFn dot_scalar;          // reference dot product (required)
  VecDotFn dot_avx2 = nullptr;  // optional fast versions, checked against dot_scalar in tests
  VecDotFn dot_avx512 = nullptr;
  // Optional; each out[k] equals dot_avx512's result up to float accumulation order. Last so the
  // positional initializers above stay valid.
  VecDot4Fn dot4_avx512 = nullptr;
};

// Traits for a quantized weight type, nullptr for float/unknown types.
const QuantTraits* quant_traits(DType type);
bool is_quantized(DType type);
// The dot product for the active CPU level (falls back to a lower level when one is missing).
VecDotFn quant_dot(const QuantTraits& traits);
// The four-row dot product for the active CPU level, or nullptr (use quant_dot per row then).
VecDot4Fn quant_dot4(const QuantTraits& traits);

// Activation quantizers (for vec_dot types): Q8_0, Q8_1, Q8_K. n is a multiple of the block size.
void quantize_act_q8_0(const float* x, void* y, int64_t n);
void quantize_act_q8_1(const float* x, void* y, int64_t n);
void quantize_act_q8_K(const float* x, void* y, int64_t n);
void quantize_activations(DType vec_dot_type, const float* x, void* y, int64_t n);

// Defined by the per-family translation units.
extern const QuantTraits kTraitsQ4_0, kTraitsQ4_1, kTraitsQ5_0, kTraitsQ5_1, kTraitsQ8_0,
    kTraitsIQ4_NL;
extern const QuantTraits kTraitsQ2_K, kTraitsQ3_K, kTraitsQ4_K, kTraitsQ5_K, kTraitsQ6_K,
    kTraitsIQ4_XS;

}  // namespace squish
