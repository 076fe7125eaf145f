// Gated feed-forward activations: gate[i] = act(gate[i]) * up[i] over one token's n_ff values.
#pragma once

#include <cstdint>

namespace squish {

// SiLU: g / (1 + exp(-g)) * u. The AVX-512 version uses a polynomial exp (~1 ulp).
void silu_mul(float* gate, const float* up, int64_t n);
// GELU, tanh approximation: 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3))) * u.
void gelu_mul(float* gate, const float* up, int64_t n);

namespace kernels {
void silu_mul_avx512(float* gate, const float* up, int64_t n);
}  // namespace kernels

}  // namespace squish
