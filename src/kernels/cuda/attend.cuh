// One warp's online softmax over a run of cached keys (kernels.cu: attention_kernel), the KV
// cache's element access, and what the attention kernels share (RoPE's rotation, the dispatch on
// the cache's type).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cfloat>
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/kernels.h"

namespace squish::cuda::attend {

// The KV cache's values (kernels.h: KvCache) as F32, whichever type holds them.
__device__ __forceinline__ float kv_load(const float* p) {
  return *p;
}
__device__ __forceinline__ float kv_load(const __half* p) {
  return __half2float(*p);
}
__device__ __forceinline__ void kv_store(float* p, float v) {
  *p = v;
}
__device__ __forceinline__ void kv_store(__half* p, float v) {
  *p = __float2half_rn(v);
}
// What the cache returns for v once stored: v, or v rounded to F16.
template <class KvT>
__device__ __forceinline__ float as_cached(float v) {
  if constexpr (std::is_same_v<KvT, __half>) {
    return __half2float(__float2half_rn(v));
  } else {
    return v;
  }
}
// Four consecutive values (16-byte aligned in F32, 8-byte in F16).
__device__ __forceinline__ float4 kv_load4(const float* p) {
  return *reinterpret_cast<const float4*>(p);
}
__device__ __forceinline__ float4 kv_load4(const __half* p) {
  const uint2 u = *reinterpret_cast<const uint2*>(p);
  const float2 a = __half22float2(*reinterpret_cast<const __half2*>(&u.x));
  const float2 b = __half22float2(*reinterpret_cast<const __half2*>(&u.y));
  return make_float4(a.x, a.y, b.x, b.y);
}

// The rotation of pair (x0, x1) by the angle with cosine c and sine s, written to *a and *b (F32,
// or a cache's F16): rope_store_kernel and the attention kernels' fused prologues use it, so their
// results are the same bits (explicit roundings: no fused multiply-add).
template <class T>
__device__ __forceinline__ void rotate_pair(float x0, float x1, float c, float s, T* a, T* b) {
  kv_store(a, __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s)));
  kv_store(b, __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c)));
}

// f(float{}) or f(__half{}): the element type of a KV cache of type t.
template <class F>
void with_kv_type(KvType t, F&& f) {
  if (t == KvType::F16) {
    f(__half{});
  } else {
    f(float{});
  }
}

// Decode attention of one token (q rows of n_head * head_dim values) in thread block clusters, one
// per kv head (attention_decode.cu): false, launching nothing, where it does not apply (a device
// before sm_90; head_dim other than 64, 128, 256; more than 8 q heads per kv head, 4 at 256).
// Arguments as kernels.h: attention(); chunks: the 256-key chunks of the context (a block per
// chunk, 2 to 16). launch false: only whether it applies, readying the kernel (device queries,
// attributes) as the first launch would.
bool attention_group(const float* q, const KvCache& cache, int n_head, int n_head_kv, int head_dim,
                     const int* pos0, float* out, cudaStream_t stream, int8_t* out_q, float* out_d,
                     const RopeArgs* rope, int chunks, bool launch = true);
// Warps per block of attention_group: 16 where a block's weighted values fit its shared memory
// (q heads per kv head x head_dim <= 512), else 8; -1 as SQUISH_CUDA_ATTN_WARPS says (default 8).
void set_group_warps(int warps);
// Blocks per kv head of attention_group at every context (1-16; 0 by the context, the default; -1
// as SQUISH_CUDA_ATTN_CLUSTER says).
void set_group_cluster(int blocks);
// One block of 16 warps per kv head (where they fit) while the context is one 256-key chunk: 1 on,
// 0 off, -1 as SQUISH_CUDA_ATTN_ONE_BLOCK says (default on).
void set_group_one_block(int on);

// Lanes hold dimension lane + 32 e of the head in register e, for e < per (per <= kPer: kPer is
// the registers' compile-time size, per the head's D / 32). Keys j0, j0 + stride, ... below end
// come kKeys at a time (independent loads and reductions overlap): key j's row at
// kbase + j * row_stride, its value at vbase + j * row_stride (both already offset by the kv head
// and the lane; KvT: the cache's float or __half). q is pre-scaled by 1 / sqrt(D); m, l, acc carry
// the running max, sum and weighted values in and out.
template <int kPer, int kKeys, class KvT>
__device__ __forceinline__ void keys(const float (&q)[kPer], int per, const KvT* kbase,
                                     const KvT* vbase, int64_t row_stride, int j0, int end,
                                     int stride, float& m, float& l, float (&acc)[kPer]) {
  constexpr unsigned kFull = 0xFFFFFFFFu;
  for (; j0 < end; j0 += stride) {
    float s[kKeys], v[kKeys][kPer];
#pragma unroll
    for (int u = 0; u < kKeys; ++u) {
      const int j = min(j0 + u, end - 1);  // past the end: a valid row, masked below
      const KvT* kr = kbase + static_cast<int64_t>(j) * row_stride;
      const KvT* vr = vbase + static_cast<int64_t>(j) * row_stride;
      s[u] = 0.0f;
#pragma unroll
      for (int e = 0; e < kPer; ++e) {
        if (e < per) {
          s[u] += q[e] * kv_load(kr + 32 * e);
          v[u][e] = kv_load(vr + 32 * e);
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
