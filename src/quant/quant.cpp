#include "quant/quant.h"

#include "core/error.h"
#include "kernels/cpu/matmul.h"

namespace squish {

const QuantTraits* quant_traits(DType type) {
  switch (type) {
    case DType::Q4_0:
      return &kTraitsQ4_0;
    case DType::Q4_1:
      return &kTraitsQ4_1;
    case DType::Q5_0:
      return &kTraitsQ5_0;
    case DType::Q5_1:
      return &kTraitsQ5_1;
    case DType::Q8_0:
      return &kTraitsQ8_0;
    case DType::IQ4_NL:
      return &kTraitsIQ4_NL;
    case DType::Q2_K:
      return &kTraitsQ2_K;
    case DType::Q3_K:
      return &kTraitsQ3_K;
    case DType::Q4_K:
      return &kTraitsQ4_K;
    case DType::Q5_K:
      return &kTraitsQ5_K;
    case DType::Q6_K:
      return &kTraitsQ6_K;
    case DType::IQ4_XS:
      return &kTraitsIQ4_XS;
    default:
      return nullptr;
  }
}

bool is_quantized(DType type) {
  return quant_traits(type) != nullptr;
}

VecDotFn quant_dot(const QuantTraits& t) {
  const CpuLevel level = active_cpu_level();
  if (level == CpuLevel::AVX512 && t.dot_avx512 != nullptr) return t.dot_avx512;
  if (level >= CpuLevel::AVX2 && t.dot_avx2 != nullptr) return t.dot_avx2;
  return t.dot_scalar;
}

VecDot4Fn quant_dot4(const QuantTraits& t) {
  return active_cpu_level() == CpuLevel::AVX512 ? t.dot4_avx512 : nullptr;
}

void quantize_activations(DType vec_dot_type, const float* x, void* y, int64_t n) {
  switch (vec_dot_type) {
    case DType::Q8_0:
      quantize_act_q8_0(x, y, n);
      return;
    case DType::Q8_1:
      quantize_act_q8_1(x, y, n);
      return;
    case DType::Q8_K:
      quantize_act_q8_K(x, y, n);
      return;
    default:
      fail("internal: {} is not an activation format", dtype_name(vec_dot_type));
  }
}

}  // namespace squish
