#include "kernels/cpu/activation.h"

#include <cmath>

#include "kernels/cpu/matmul.h"

namespace squish {

void silu_mul(float* gate, const float* up, int64_t n) {
  if (active_cpu_level() == CpuLevel::AVX512) return kernels::silu_mul_avx512(gate, up, n);
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void gelu_mul(float* gate, const float* up, int64_t n) {
  const float k0 = 0.7978845608028654f;  // sqrt(2/pi)
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = 0.5f * g * (1.0f + std::tanh(k0 * (g + 0.044715f * g * g * g))) * up[i];
  }
}

}  // namespace squish
