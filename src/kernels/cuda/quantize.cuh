// The 8-bit form of activations (kernels.h: quantize_activations_q8) written by a warp, shared by
// every kernel that makes a product's input: d = amax / 127 and q = round(v / d) per group of 32
// (a zero group: d = 0, q = 0); and the gating's activation, which every kernel that makes the
// down product's input applies the same way. Device code only.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace squish::cuda {

// One group of 32 consecutive values, value `lane` held by that lane of the warp: q[lane] and,
// from lane 0, *d. Every lane of the warp calls it.
__device__ __forceinline__ void store_q8_group(float v, int8_t* q, float* d) {
  float amax = fabsf(v);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xFFFFFFFFu, amax, o));
  const float dd = amax / 127.0f;
  const float id = dd != 0.0f ? 1.0f / dd : 0.0f;
  q[threadIdx.x % 32] = static_cast<int8_t>(roundf(v * id));
  if (threadIdx.x % 32 == 0) *d = dd;
}

// act(g) of the gating act(gate) * up: SiLU, or GELU with the tanh approximation.
__device__ __forceinline__ float gate_activation(float g, bool gelu) {
  if (gelu) return 0.5f * g * (1.0f + tanhf(0.7978845608028654f * (g + 0.044715f * g * g * g)));
  return g / (1.0f + expf(-g));
}

}  // namespace squish::cuda
