// Work that every warp of a persistent decode grid shares, around a grid barrier: the barrier
// itself, one token's attention as (head, chunk of keys) items over all warps, and the gating's
// 8-bit form as one group of 32 per warp. kernels_q8.cu runs them inside product kernels: the
// attention at the end of q|k|v's kernel, the gating at the start of down's (kernels.h:
// matmul_q8_norm_in's then, matmul_q8_gating_in).
#pragma once

#include <cuda_runtime.h>

#include <cfloat>
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/attend.cuh"
#include "kernels/cuda/decode_body.cuh"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/quantize.cuh"
#include "kernels/cuda/schedule.h"

namespace squish::cuda::decode {

inline constexpr int kKeys = 4;  // keys per warp step: independent loads and reductions

// Every block of the grid (all resident at once: the grid is sized by occupancy) meets here;
// what any block wrote before it is visible in L2 after it. The last block to arrive resets the
// count and then moves the generation on, which releases the others. Launched dependently, the
// blocks become resident as the previous kernel's leave, and the next kernel starts only once all
// of them have started (griddepcontrol.launch_dependents waits for every block), so no block waits
// here for one that cannot run.
// The arrival count and the generation sit on different 128-byte lines: 500-odd blocks poll the
// generation while the others' atomics hit the count.
inline constexpr int kGenerationWord = 64;  // kernels.h: 128 words per barrier
struct GridBarrier {
  unsigned* words;
  __device__ void operator()() const {
    __syncthreads();
    if (threadIdx.x == 0) {
      volatile unsigned* generation = words + kGenerationWord;
      const unsigned g = *generation;  // before arriving: the last arrival changes it
      __threadfence();
      if (atomicAdd(words, 1u) == gridDim.x - 1) {
        atomicExch(words, 0u);
        __threadfence();
        atomicAdd(words + kGenerationWord, 1u);
      } else {
        while (*generation == g) __nanosleep(32);
      }
      __threadfence();
    }
    __syncthreads();
  }
};

// RoPE of one head held kPer values per lane (dimension lane + 32 e in register e), with the
// arithmetic of rope_store_kernel. neox: n_rot == head_dim (the host checks), so the pair
// (i, i + n_rot / 2) is registers e and e + kPer / 2 of one lane; otherwise (2i, 2i + 1) are
// neighbouring lanes.
template <int kPer>
__device__ __forceinline__ void rope_lanes(float (&v)[kPer], const float* cs, int n_rot, bool neox,
                                           int lane) {
  const int half = n_rot / 2;
  if (neox) {
#pragma unroll
    for (int e = 0; e < kPer / 2; ++e) {
      const int i = lane + kWarp * e;
      const float c = cs[i], sn = cs[half + i];
      const float x0 = v[e], x1 = v[e + kPer / 2];
      v[e] = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, sn));
      v[e + kPer / 2] = __fadd_rn(__fmul_rn(x0, sn), __fmul_rn(x1, c));
    }
    return;
  }
#pragma unroll
  for (int e = 0; e < kPer; ++e) {
    const int d = lane + kWarp * e;
    const float other = __shfl_xor_sync(kFull, v[e], 1);
    if (d < n_rot) {
      const float c = cs[d / 2], sn = cs[half + d / 2];
      v[e] = (d & 1) == 0 ? __fsub_rn(__fmul_rn(v[e], c), __fmul_rn(other, sn))
                          : __fadd_rn(__fmul_rn(other, sn), __fmul_rn(v[e], c));
    }
  }
}

// Head row h's kPer values per lane from q|k|v (+ bias), through L2.
template <int kPer>
__device__ __forceinline__ void load_head(const float* row, const float* bias, int lane,
                                          float (&v)[kPer]) {
#pragma unroll
  for (int e = 0; e < kPer; ++e) {
    v[e] = __ldcg(row + lane + kWarp * e);
    if (bias != nullptr) v[e] += bias[lane + kWarp * e];
  }
}

// The attention output of head h in 8-bit form: group e of the head is register e of the lanes.
template <int kPer>
__device__ __forceinline__ void store_head_q8(const DecodeAttentionIn& p, int h,
                                              const float (&o)[kPer]) {
  constexpr int D = kPer * kWarp;
#pragma unroll
  for (int e = 0; e < kPer; ++e) store_q8_group(o[e], p.q + h * D + kWarp * e, p.d + h * kPer + e);
}

// One (head, chunk) item: online softmax over keys [k0, k1) of the head's kv head; the key at the
// position comes from q|k|v (rotated here; the first q head of its kv head stores it and its
// value in the caches, which no one reads before the next launch). With one chunk the warp
// writes the output; otherwise its partial state, and the head's last warp merges them.
template <int kPer>
__device__ void attention_item(const DecodeAttentionIn& p, int h, int c, const KeyChunks& chunks,
                               int pos, int lane) {
  constexpr int D = kPer * kWarp;
  const int group = p.n_head / p.n_head_kv, kvh = h / group;
  const int Q = p.n_head * D, KV = p.n_head_kv * D;
  float q[kPer];
  load_head(p.qkv + h * D, p.bq != nullptr ? p.bq + h * D : nullptr, lane, q);
  rope_lanes(q, p.cos_sin, p.n_rot, p.neox, lane);
  const float scale = rsqrtf(static_cast<float>(D));
#pragma unroll
  for (int e = 0; e < kPer; ++e) q[e] *= scale;
  const int n_chunks = chunks.count;
  const int k0 = chunks.begin(c), k1 = chunks.begin(c + 1), past_end = min(k1, pos);
  float m = -FLT_MAX, l = 0.0f, acc[kPer];
#pragma unroll
  for (int e = 0; e < kPer; ++e) acc[e] = 0.0f;
  attend::keys<kPer, kKeys>(q, kPer, p.k_cache + kvh * D + lane, p.v_cache + kvh * D + lane, KV, k0,
                            past_end, kKeys, m, l, acc);
  if (k0 <= pos && pos < k1) {
    float kc[kPer], vc[kPer];
    load_head(p.qkv + Q + kvh * D, p.bk != nullptr ? p.bk + kvh * D : nullptr, lane, kc);
    load_head(p.qkv + Q + KV + kvh * D, p.bv != nullptr ? p.bv + kvh * D : nullptr, lane, vc);
    rope_lanes(kc, p.cos_sin, p.n_rot, p.neox, lane);
    if (h % group == 0) {
      float* kd = p.k_cache + static_cast<int64_t>(pos) * KV + kvh * D + lane;
      float* vd = p.v_cache + static_cast<int64_t>(pos) * KV + kvh * D + lane;
#pragma unroll
      for (int e = 0; e < kPer; ++e) {
        kd[kWarp * e] = kc[e];
        vd[kWarp * e] = vc[e];
      }
    }
    float sc = 0.0f;
#pragma unroll
    for (int e = 0; e < kPer; ++e) sc += q[e] * kc[e];
    sc = warp_sum(sc);
    const float m_new = fmaxf(m, sc), corr = expf(m - m_new), p = expf(sc - m_new);
    l = l * corr + p;
#pragma unroll
    for (int e = 0; e < kPer; ++e) acc[e] = acc[e] * corr + p * vc[e];
    m = m_new;
  }
  if (n_chunks == 1) {
    const float inv = 1.0f / l;
#pragma unroll
    for (int e = 0; e < kPer; ++e) acc[e] *= inv;
    store_head_q8(p, h, acc);
    return;
  }
  float* part = p.partials + (static_cast<int64_t>(h) * p.max_chunks + c) * (D + 2);
  if (lane == 0) {
    part[0] = m;
    part[1] = l;
  }
#pragma unroll
  for (int e = 0; e < kPer; ++e) part[2 + kWarp * e + lane] = acc[e];
  __threadfence();
  int last = 0;
  if (lane == 0) last = atomicAdd(p.counters + h, 1) == n_chunks - 1;
  if (!__shfl_sync(kFull, last, 0)) return;
  __threadfence();
  const float* parts = p.partials + static_cast<int64_t>(h) * p.max_chunks * (D + 2);
  float gmax = -FLT_MAX;
  for (int k = lane; k < n_chunks; k += kWarp) gmax = fmaxf(gmax, __ldcg(parts + k * (D + 2)));
#pragma unroll
  for (int o = kWarp / 2; o > 0; o >>= 1) gmax = fmaxf(gmax, __shfl_xor_sync(kFull, gmax, o));
  float gsum = 0.0f;
  for (int k = lane; k < n_chunks; k += kWarp) {
    const float* pk = parts + k * (D + 2);
    gsum += __ldcg(pk + 1) * expf(__ldcg(pk) - gmax);
  }
  gsum = warp_sum(gsum);
  float o[kPer];
#pragma unroll
  for (int e = 0; e < kPer; ++e) o[e] = 0.0f;
  for (int k = 0; k < n_chunks; ++k) {
    const float* pk = parts + k * (D + 2);
    const float w = expf(__ldcg(pk) - gmax);
#pragma unroll
    for (int e = 0; e < kPer; ++e) o[e] += __ldcg(pk + 2 + kWarp * e + lane) * w;
  }
  const float inv = 1.0f / gsum;
#pragma unroll
  for (int e = 0; e < kPer; ++e) o[e] *= inv;
  store_head_q8(p, h, o);
  if (lane == 0) p.counters[h] = 0;  // ready for the next use
}

// The context split into chunks of at least p.min_chunk_keys keys, as many per head as the grid has
// warps for (at most p.max_chunks), so that a long context spreads over the whole GPU. wait():
// where q|k|v becomes readable (a grid barrier). Inlined into the product kernel, after its rows,
// when the weights' registers are free.
template <int kPer, class Wait>
__device__ __forceinline__ void attention_phase(const DecodeAttentionIn& p, Wait wait) {
  const int lane = threadIdx.x % kWarp;
  const int warps = static_cast<int>(gridDim.x) * kWarps;
  const int warp = static_cast<int>(blockIdx.x) * kWarps + static_cast<int>(threadIdx.x) / kWarp;
  const int pos = *p.pos0;  // written before the launch
  const int n_keys = pos + 1;
  const KeyChunks chunks = key_chunks(n_keys, p.max_chunks, p.min_chunk_keys);
  const int n_chunks = chunks.count;
  // The cached keys and values of this warp's first item, written by earlier launches, are
  // fetched into L2 while the warp waits for q|k|v.
  if (warp < p.n_head * n_chunks) {
    constexpr int kLines = kPer * kWarp * 4 / 128;  // 128-byte lines per head row
    const int h = warp / n_chunks, k0 = chunks.begin(warp % n_chunks);
    const int kvh = h / (p.n_head / p.n_head_kv), KV = p.n_head_kv * kPer * kWarp;
    const int rows = max(0, min(chunks.begin(warp % n_chunks + 1), pos) - k0);
    for (int i = lane; i < rows * kLines; i += kWarp) {
      const int64_t at =
          static_cast<int64_t>(k0 + i / kLines) * KV + kvh * kPer * kWarp + (i % kLines) * 32;
      asm volatile("prefetch.global.L2 [%0];" ::"l"(p.k_cache + at));
      asm volatile("prefetch.global.L2 [%0];" ::"l"(p.v_cache + at));
    }
  }
  wait();
  for (int item = warp; item < p.n_head * n_chunks; item += warps)
    attention_item<kPer>(p, item / n_chunks, item % n_chunks, chunks, pos, lane);
}

// act(gate) * up (or gate alone) in 8-bit form, one warp per group of 32, read through L2 (other
// blocks wrote it).
__device__ __forceinline__ void gating_phase(const DecodeGatingIn& g) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarps;
  const int64_t warp = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / kWarp;
  for (int64_t i = warp * 32; i < g.n; i += warps * 32) {
    float v = __ldcg(g.gate + i + lane);
    if (g.up != nullptr) v = gate_activation(v, g.gelu) * __ldcg(g.up + i + lane);
    store_q8_group(v, g.q + i, g.d + i / 32);
  }
}

// Calls f with std::integral_constant<int, head_dim / 32> for the head sizes the attention phase
// is compiled for (64, 128, 256); false for others. Host code.
template <class F>
bool with_head_size(int head_dim, F&& f) {
  switch (head_dim) {
    case 64:
      f(std::integral_constant<int, 2>{});
      return true;
    case 128:
      f(std::integral_constant<int, 4>{});
      return true;
    case 256:
      f(std::integral_constant<int, 8>{});
      return true;
    default:
      return false;
  }
}

}  // namespace squish::cuda::decode
