// One warp's online softmax over a run of cached keys (kernels.cu: attention_kernel). Device code
// only.
#pragma once

#include <cuda_runtime.h>

#include <cfloat>
#include <cstdint>

namespace squish::cuda::attend {

// Lanes hold dimension lane + 32 e of the head in register e, for e < per (per <= kPer: kPer is
// the registers' compile-time size, per the head's D / 32). Keys j0, j0 + stride, ... below end
// come kKeys at a time (independent loads and reductions overlap): key j's row at
// kbase + j * row_stride, its value at vbase + j * row_stride (both already offset by the kv head
// and the lane). q is pre-scaled by 1 / sqrt(D); m, l, acc carry the running max, sum and
// weighted values in and out.
template <int kPer, int kKeys>
__device__ __forceinline__ void keys(const float (&q)[kPer], int per, const float* kbase,
                                     const float* vbase, int64_t row_stride, int j0, int end,
                                     int stride, float& m, float& l, float (&acc)[kPer]) {
  constexpr unsigned kFull = 0xFFFFFFFFu;
  for (; j0 < end; j0 += stride) {
    float s[kKeys], v[kKeys][kPer];
#pragma unroll
    for (int u = 0; u < kKeys; ++u) {
      const int j = min(j0 + u, end - 1);  // past the end: a valid row, masked below
      const float* kr = kbase + static_cast<int64_t>(j) * row_stride;
      const float* vr = vbase + static_cast<int64_t>(j) * row_stride;
      s[u] = 0.0f;
#pragma unroll
      for (int e = 0; e < kPer; ++e) {
        if (e < per) {
          s[u] += q[e] * kr[32 * e];
          v[u][e] = vr[32 * e];
        }
      }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
#pragma unroll
      for (int u = 0; u < kKeys; ++u) s[u] += __shfl_xor_sync(kFull, s[u], o);
    }
    float m_new = m;
#pragma unroll
    for (int u = 0; u < kKeys; ++u)
      if (j0 + u < end) m_new = fmaxf(m_new, s[u]);
    const float corr = expf(m - m_new);
    l *= corr;
#pragma unroll
    for (int e = 0; e < kPer; ++e) acc[e] *= corr;
#pragma unroll
    for (int u = 0; u < kKeys; ++u) {
      const float p = j0 + u < end ? expf(s[u] - m_new) : 0.0f;
      l += p;
#pragma unroll
      for (int e = 0; e < kPer; ++e) acc[e] += p * v[u][e];
    }
    m = m_new;
  }
}

}  // namespace squish::cuda::attend
