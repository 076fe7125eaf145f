// Device side of L2Prefetch (kernels.h): the grid's threads share out the ranges in chunks and
// ask L2 to fetch each one; nothing waits for them and no register holds the data.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/kernels.h"

namespace squish::cuda::detail {

// One request covers this many bytes (sm_90: one bulk prefetch; sm_80: one per 128-byte line).
inline constexpr int64_t kPrefetchChunk = 4096;

__device__ __forceinline__ void prefetch_l2(const uint8_t* p, uint32_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(bytes) : "memory");
#else
  for (uint32_t o = 0; o < bytes; o += 128) asm volatile("prefetch.global.L2 [%0];" ::"l"(p + o));
#endif
}

// Thread `thread` of `threads` issues its share of p's chunks. Not inlined: inlined, its loop
// took registers from the kernels around it (the 8-bit products spilled).
static __device__ __noinline__ void issue_l2_prefetch(const L2Prefetch& p, int64_t thread,
                                              int64_t threads) {
  for (int i = 0; i < p.n; ++i) {
    const L2Prefetch::Range& r = p.ranges[i];
    const int64_t per_row = (r.bytes + kPrefetchChunk - 1) / kPrefetchChunk;
    const int64_t total = per_row * r.count;
    for (int64_t c = thread; c < total; c += threads) {
      const int64_t row = c / per_row, off = (c - row * per_row) * kPrefetchChunk;
      const int64_t left = r.bytes - off;
      prefetch_l2(r.base + row * r.stride + off,
                  static_cast<uint32_t>(left < kPrefetchChunk ? left : kPrefetchChunk));
    }
  }
}

// Every thread of the launch takes part (any grid and block shape).
__device__ __forceinline__ void issue_l2_prefetch(const L2Prefetch& p) {
  if (p.n == 0) return;
  const int64_t block = blockIdx.x + static_cast<int64_t>(gridDim.x) * blockIdx.y;
  const int64_t threads = static_cast<int64_t>(gridDim.x) * gridDim.y * blockDim.x;
  issue_l2_prefetch(p, block * blockDim.x + threadIdx.x, threads);
}

}  // namespace squish::cuda::detail
