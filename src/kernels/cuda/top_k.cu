// The top k of a logits row on the device (kernels.h: top_k_logits), so that sampling copies k
// candidates back instead of the whole row (Llama 3: 128K floats) and the host ranks k, not the
// vocabulary. Exact: every element's key is its logit / temperature (IEEE division, as the host
// sampler's) in an order-preserving 32-bit form, above its inverted id, so keys are unique and
// rank as runtime/sampler.h's ranks_before; a block finds its k-th largest key by radix select
// (8 bits a pass, most significant first) and keeps the keys at or above it.
#include <cstdint>

#include "kernels/cuda/kernels.h"
#include "kernels/cuda/launch.cuh"

namespace squish::cuda {

namespace {

using detail::launch;
using detail::pdl_launch_dependents;
using detail::pdl_wait;

constexpr int kThreads = 1024;
constexpr int kWarp = 32;
constexpr int kSlice = 8192;  // elements a first-pass block ranks: 16 blocks for 128K logits

using Key = unsigned long long;

__device__ __forceinline__ Key make_key(float v, int id) {
  unsigned u = __float_as_uint(v);
  u = (u & 0x80000000u) != 0 ? ~u : (u | 0x80000000u);  // unsigned order = float order
  return static_cast<Key>(u) << 32 | static_cast<unsigned>(~id);
}
__device__ __forceinline__ float key_value(Key k) {
  const unsigned u = static_cast<unsigned>(k >> 32);
  return __uint_as_float((u & 0x80000000u) != 0 ? (u & 0x7FFFFFFFu) : ~u);
}
__device__ __forceinline__ int key_id(Key k) {
  return static_cast<int>(~static_cast<unsigned>(k));
}

// The k-th largest (1 <= k <= n) of key(0) .. key(n - 1), unique keys, to every thread of the
// block. Each pass counts the next 8 bits of the keys that share the bits chosen so far; one warp
// then finds the digit holding the k-th (a suffix sum over 8 bins a lane).
template <class KeyAt>
__device__ Key block_kth_largest(int n, int k, KeyAt key_at) {
  __shared__ unsigned hist[256];
  __shared__ Key s_prefix;
  __shared__ int s_rank;
  Key prefix = 0, mask = 0;
  int rank = k;  // among the keys that share prefix
  for (int shift = 56; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += blockDim.x) hist[b] = 0;
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
      const Key key = key_at(i);
      if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255], 1u);
    }
    __syncthreads();
    if (threadIdx.x < kWarp) {
      const int lane = threadIdx.x;
      unsigned mine = 0;  // bins 8 lane .. 8 lane + 7
      for (int b = 0; b < 8; ++b) mine += hist[8 * lane + b];
      unsigned above = mine;  // lanes >= this one: bins from 8 lane up
      for (int o = 1; o < kWarp; o <<= 1) {
        const unsigned v = __shfl_down_sync(0xFFFFFFFFu, above, o);
        if (lane + o < kWarp) above += v;
      }
      const unsigned higher = above - mine;  // keys in bins above this lane's
      if (higher < static_cast<unsigned>(rank) && static_cast<unsigned>(rank) <= above) {
        unsigned seen = higher;
        int b = 8 * lane + 7;
        for (; b > 8 * lane; --b) {
          if (seen + hist[b] >= static_cast<unsigned>(rank)) break;
          seen += hist[b];
        }
        s_prefix = prefix | static_cast<Key>(b) << shift;
        s_rank = rank - static_cast<int>(seen);
      }
    }
    __syncthreads();
    prefix = s_prefix;
    rank = s_rank;
    mask |= Key{0xFF} << shift;
    __syncthreads();  // s_prefix / hist are rewritten by the next pass
  }
  return prefix;
}

// Block b ranks logits[b * kSlice ..) and writes its top min(k, slice) keys to
// keys[b * k ..), the rest of its k slots 0 (below every real key).
__global__ void top_k_slices_kernel(const float* __restrict__ logits, int n, float temperature,
                                    int k, Key* __restrict__ keys) {
  pdl_launch_dependents();
  pdl_wait();
  __shared__ int s_count;
  const int first = blockIdx.x * kSlice;
  const int m = min(kSlice, n - first);
  const int kk = min(k, m);
  auto key_at = [&](int i) {
    return make_key(__fdiv_rn(logits[first + i], temperature), first + i);
  };
  const Key kth = block_kth_largest(m, kk, key_at);
  if (threadIdx.x == 0) s_count = 0;
  __syncthreads();
  Key* out = keys + static_cast<int64_t>(blockIdx.x) * k;
  for (int i = threadIdx.x; i < m; i += blockDim.x) {
    const Key key = key_at(i);
    if (key >= kth) out[atomicAdd(&s_count, 1)] = key;
  }
  for (int i = kk + threadIdx.x; i < k; i += blockDim.x) out[i] = 0;
}

// One block: the top k of the slices' n_keys keys, as values and ids (in no particular order).
__global__ void top_k_merge_kernel(const Key* __restrict__ keys, int n_keys, int k,
                                   float* __restrict__ values, int* __restrict__ ids) {
  pdl_launch_dependents();
  pdl_wait();
  __shared__ int s_count;
  auto key_at = [&](int i) { return keys[i]; };
  const Key kth = block_kth_largest(n_keys, k, key_at);
  if (threadIdx.x == 0) s_count = 0;
  __syncthreads();
  for (int i = threadIdx.x; i < n_keys; i += blockDim.x) {
    const Key key = keys[i];
    if (key >= kth) {
      const int at = atomicAdd(&s_count, 1);
      values[at] = key_value(key);
      ids[at] = key_id(key);
    }
  }
}

}  // namespace

size_t top_k_scratch_bytes(int n, int k) {
  return static_cast<size_t>((n + kSlice - 1) / kSlice) * static_cast<size_t>(k) * sizeof(Key);
}

void top_k_logits(const float* logits, int n, float temperature, int k, void* scratch,
                  float* values, int* ids, cudaStream_t stream) {
  const int slices = (n + kSlice - 1) / kSlice;
  Key* keys = static_cast<Key*>(scratch);
  launch(top_k_slices_kernel, dim3(slices), dim3(kThreads), stream, logits, n, temperature, k,
         keys);
  launch(top_k_merge_kernel, dim3(1), dim3(kThreads), stream, static_cast<const Key*>(keys),
         slices * k, k, values, ids);
}

}  // namespace squish::cuda
