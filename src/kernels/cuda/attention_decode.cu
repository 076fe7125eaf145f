// Decode attention by kv head and thread block cluster (sm_90): one token's queries of every q head
// that shares a kv head (grouped-query attention) are taken by one cluster of blocks, which split
// the context between them evenly and merge their softmax states through distributed shared
// memory. Against the kernels of one block per q head (kernels.cu: attention_kernel) each cached
// row is read once per kv head rather than once per q head, with one vector load per lane, the
// keys of a block's first trip are loaded before the wait for the kernels before it, and the
// chunks merge without a global fence, atomic counter or partials: the dependent trips through
// memory that made attention 14 % of a Llama-3-8B decode step (docs/cuda.md, fourteenth slice).
#include <cooperative_groups.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cfloat>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "core/env.h"
#include "kernels/cuda/attend.cuh"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/quantize.cuh"

namespace squish::cuda::attend {

namespace {

namespace cg = cooperative_groups;
using detail::pdl_launch_dependents;
using detail::pdl_wait;

constexpr int kWarp = 32;
constexpr int kGroupWarps = 8;   // warps per block (group_warps: 16 where shared memory allows)
constexpr int kMaxCluster = 16;  // blocks per kv head (H100: 16 with the non-portable attribute)

// Keys per warp per trip: two trips' rows in registers (the next one's loads in flight while this
// one is scored) stay at 64 floats a lane, and the scores of a trip (kG x kKeys) fill at most a
// warp for warp_sum_own.
template <int kPer, int kG>
constexpr int kTripKeys = (16 / kPer) * kG <= 32 ? 16 / kPer : 32 / kG;

// A lane's kPer consecutive values of a cached row, as F32: one 8-32 byte load.
template <int kPer>
__device__ __forceinline__ void load_row(const float* p, float (&r)[kPer]) {
  if constexpr (kPer % 4 == 0) {
#pragma unroll
    for (int i = 0; i < kPer; i += 4) {
      const float4 v = *reinterpret_cast<const float4*>(p + i);
      r[i] = v.x, r[i + 1] = v.y, r[i + 2] = v.z, r[i + 3] = v.w;
    }
  } else {
    static_assert(kPer == 2, "kPer: 2, 4 or 8");
    const float2 v = *reinterpret_cast<const float2*>(p);
    r[0] = v.x, r[1] = v.y;
  }
}
template <class Word>  // unsigned (a template: unreferenced in the sm_80 pass, no warning)
__device__ __forceinline__ void unpack_half2(Word w, float* r) {
  const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&w));
  r[0] = f.x, r[1] = f.y;
}
template <int kPer>
__device__ __forceinline__ void load_row(const __half* p, float (&r)[kPer]) {
  if constexpr (kPer == 8) {
    const uint4 u = *reinterpret_cast<const uint4*>(p);
    unpack_half2(u.x, r), unpack_half2(u.y, r + 2), unpack_half2(u.z, r + 4);
    unpack_half2(u.w, r + 6);
  } else if constexpr (kPer == 4) {
    const uint2 u = *reinterpret_cast<const uint2*>(p);
    unpack_half2(u.x, r), unpack_half2(u.y, r + 2);
  } else {
    static_assert(kPer == 2, "kPer: 2, 4 or 8");
    unpack_half2(*reinterpret_cast<const unsigned*>(p), r);
  }
}

// One halving step of warp_sum_own: values [0, kHalf) of v become the sums of this lane's and its
// partner's (lane ^ kOffset) pairs, the lower or upper half of them by the lane's bit kOffset.
template <int kHalf, int kOffset, int N>
__device__ __forceinline__ void halve(float (&v)[N], int lane) {
  const bool upper = (lane & kOffset) != 0;
#pragma unroll
  for (int i = 0; i < kHalf; ++i) {
    const float a = v[i], b = v[i + kHalf];
    v[i] = (upper ? b : a) + __shfl_xor_sync(0xFFFFFFFFu, upper ? a : b, kOffset);
  }
  if constexpr (kHalf > 1) halve<kHalf / 2, kOffset / 2>(v, lane);
}

// log2 of N values a warp sums (warp_sum_own): sum i sits in lanes [i, i + 1) << (5 - kSumLog<N>).
template <int N>
constexpr int kSumLog = N >= 32   ? 5
                        : N >= 16 ? 4
                        : N >= 8  ? 3
                        : N >= 4  ? 2
                        : N >= 2  ? 1
                                  : 0;

// Sums each of the N values over the warp (N a power of two, at most 32) and returns the one this
// lane holds: sum lane >> (5 - log2 N). The sums are made transposed: each step halves the values
// a lane holds, sending half to the partner lane and adding what it sends back, so N sums take
// N - 1 shuffles (plus one per remaining step) instead of 5 N. The remaining steps are a
// butterfly, so every lane of a sum's group holds the same bits.
template <int N>
__device__ __forceinline__ float warp_sum_own(float (&v)[N], int lane) {
  static_assert(N >= 1 && N <= 32 && (N & (N - 1)) == 0, "N: a power of two, at most 32");
  if constexpr (N > 1) halve<N / 2, 16>(v, lane);
#pragma unroll
  for (int o = 16 >> kSumLog<N>; o > 0; o /= 2) v[0] += __shfl_xor_sync(0xFFFFFFFFu, v[0], o);
  return v[0];
}

// Block (kv head, rank) of a cluster of C blocks along y takes keys [rank * span, (rank + 1) *
// span) of the context (span: the context / C, rounded up to whole trips) for the g = n_head /
// n_head_kv <= kG q heads of its kv head; lanes hold dimensions lane * kPer .. + kPer - 1
// (head_dim = 32 kPer). fuse_rope: the block rotates its q heads itself, and the block whose
// keys hold the position stores the new k and v (rope_store_kernel's arithmetic, the same bits).
// The output (and its 8-bit form with out_q set) is written by the block's merge where the
// cluster is one block, else in warps of 32 dimensions by the cluster's blocks in turn. stop_at
// 1-4 (timing only, SQUISH_CUDA_ATTN_STOP; the output is then not written) ends every block after
// its PDL wait, the RoPE prologue, the trips through the keys or the block's merge (and the first
// cluster barrier): what each stage adds to a decode step.
template <int kPer, int kG, class KvT, int kW>
__global__ void __launch_bounds__(kWarp* kW)
    attention_group_kernel(const float* __restrict__ q, KvT* k_cache, KvT* v_cache, int n_head,
                           int n_head_kv, const int* pos0, float* __restrict__ out, int8_t* out_q,
                           float* out_d, RopeArgs rope, int fuse_rope, int stop_at) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  constexpr int D = kPer * kWarp;
  constexpr int kKeys = kTripKeys<kPer, kG>;
  __shared__ __align__(16) float s_q[kG][D];         // fuse_rope: the rotated queries
  __shared__ __align__(16) float s_kn[D], s_vn[D];   // fuse_rope: the new key and value, as cached
  __shared__ float s_wm[kW][kG], s_wl[kW][kG];       // each warp's max and sum per head
  __shared__ __align__(16) float s_wacc[kW][kG][D];  // and weighted values
  __shared__ float s_m[kG], s_l[kG];                 // the block's, read by the whole cluster
  __shared__ float s_acc[kG][D];
  pdl_launch_dependents();
  const cg::cluster_group cluster = cg::this_cluster();
  const int C = static_cast<int>(cluster.num_blocks());
  const int rank = static_cast<int>(cluster.block_rank());
  const int kvh = blockIdx.x, warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int g = n_head / n_head_kv, h0 = kvh * g, KV = n_head_kv * D;
  // The position comes from the graph's uploads, which precede its first kernel: readable
  // before the wait, as are the rows below it, which earlier passes stored.
  const int n_keys = *pos0 + 1, fresh = n_keys - 1;
  const int span = ((n_keys + C - 1) / C + kKeys - 1) / kKeys * kKeys;
  const int begin = rank * span, end = min(n_keys, begin + span);
  const KvT* kb = k_cache + kvh * D + lane * kPer;
  const KvT* vb = v_cache + kvh * D + lane * kPer;
  const bool owns_pos = fresh >= begin && fresh < end;
  // fuse_rope 2 with Llama's RoPE (adjacent pairs, every dimension rotated): each lane's pairs lie
  // in its own kPer dimensions, so every warp rotates its q in registers, and the warp whose trips
  // hold the position (store_warp) makes the new key and value itself: no block barrier before
  // the trips. Its lanes store and read back only their own dimensions, so the other warps must
  // not read the new row: their rows past the end repeat the row before it.
  const bool lane_rope = fuse_rope == 2 && !rope.neox && rope.n_rot == D;
  const bool store_warp = owns_pos && warp == (fresh - begin) / kKeys % kW;
  const int last = lane_rope && owns_pos && !store_warp ? end - 2 : end - 1;
  // Trip j's rows (past end: the row `last`, masked when scored).
  auto load_trip = [&](float(&k)[kKeys][kPer], float(&v)[kKeys][kPer], int j) {
#pragma unroll
    for (int u = 0; u < kKeys; ++u) {
      const int64_t r = min(j + u, last);
      load_row<kPer>(kb + r * KV, k[u]);
      load_row<kPer>(vb + r * KV, v[u]);
    }
  };
  const int stride = kW * kKeys;
  const int j_first = begin + warp * kKeys;
  float rk[kKeys][kPer], rv[kKeys][kPer];
  if (j_first < end) load_trip(rk, rv, j_first);
  pdl_wait();
  if (stop_at == 1) return;
  float qv[kG][kPer];
  if (lane_rope) {
    const int i0 = lane * kPer / 2;  // the lane's first pair
    const bool bias = rope.bq != nullptr;
    float cs[kPer / 2], sn[kPer / 2];
#pragma unroll
    for (int p = 0; p < kPer / 2; ++p)
      cs[p] = rope.cos_sin[i0 + p], sn[p] = rope.cos_sin[D / 2 + i0 + p];
#pragma unroll
    for (int hh = 0; hh < kG; ++hh) {
      const int hd = (h0 + hh) * D + lane * kPer;
#pragma unroll
      for (int p = 0; p < kPer / 2; ++p) {
        if (hh < g) {
          float q0 = rope.q[hd + 2 * p], q1 = rope.q[hd + 2 * p + 1];
          if (bias) q0 += rope.bq[hd + 2 * p], q1 += rope.bq[hd + 2 * p + 1];
          rotate_pair(q0, q1, cs[p], sn[p], &qv[hh][2 * p], &qv[hh][2 * p + 1]);
        } else {
          qv[hh][2 * p] = qv[hh][2 * p + 1] = 0.0f;
        }
      }
    }
    if (store_warp) {
      const int kd = kvh * D + lane * kPer;
      const int64_t at = static_cast<int64_t>(fresh) * KV + kd;
#pragma unroll
      for (int p = 0; p < kPer / 2; ++p) {
        float k0 = rope.k[kd + 2 * p], k1 = rope.k[kd + 2 * p + 1], r0, r1;
        if (bias) k0 += rope.bk[kd + 2 * p], k1 += rope.bk[kd + 2 * p + 1];
        rotate_pair(k0, k1, cs[p], sn[p], &r0, &r1);
        kv_store(k_cache + at + 2 * p, r0);
        kv_store(k_cache + at + 2 * p + 1, r1);
        s_kn[lane * kPer + 2 * p] = as_cached<KvT>(r0);
        s_kn[lane * kPer + 2 * p + 1] = as_cached<KvT>(r1);
      }
#pragma unroll
      for (int e = 0; e < kPer; ++e) {
        const float ve = bias ? rope.v[kd + e] + rope.bv[kd + e] : rope.v[kd + e];
        kv_store(v_cache + at + e, ve);
        s_vn[lane * kPer + e] = as_cached<KvT>(ve);
      }
    }
  } else if (fuse_rope) {
    const int half = rope.n_rot / 2, tail = D - rope.n_rot, width = half + tail;
    const bool bias = rope.bq != nullptr;
    for (int p = threadIdx.x; p < g * width; p += blockDim.x) {
      const int hh = p / width, i = p % width, hd = (h0 + hh) * D;
      if (i < half) {
        const int ia = rope.neox ? i : 2 * i, ib = rope.neox ? i + half : 2 * i + 1;
        float q0 = rope.q[hd + ia], q1 = rope.q[hd + ib];
        if (bias) q0 += rope.bq[hd + ia], q1 += rope.bq[hd + ib];
        rotate_pair(q0, q1, rope.cos_sin[i], rope.cos_sin[half + i], &s_q[hh][ia], &s_q[hh][ib]);
      } else {
        const int e = rope.n_rot + i - half;
        s_q[hh][e] = bias ? rope.q[hd + e] + rope.bq[hd + e] : rope.q[hd + e];
      }
    }
    if (owns_pos) {
      KvT* kc = k_cache + static_cast<int64_t>(fresh) * KV + kvh * D;
      KvT* vc = v_cache + static_cast<int64_t>(fresh) * KV + kvh * D;
      const int kd = kvh * D;
      for (int i = threadIdx.x; i < width; i += blockDim.x) {
        if (i < half) {
          const int ia = rope.neox ? i : 2 * i, ib = rope.neox ? i + half : 2 * i + 1;
          float k0 = rope.k[kd + ia], k1 = rope.k[kd + ib];
          if (bias) k0 += rope.bk[kd + ia], k1 += rope.bk[kd + ib];
          rotate_pair(k0, k1, rope.cos_sin[i], rope.cos_sin[half + i], s_kn + ia, s_kn + ib);
          kv_store(kc + ia, s_kn[ia]);
          kv_store(kc + ib, s_kn[ib]);
          s_kn[ia] = as_cached<KvT>(s_kn[ia]);
          s_kn[ib] = as_cached<KvT>(s_kn[ib]);
        } else {
          const int e = rope.n_rot + i - half;
          const float ke = rope.k[kd + e];
          kv_store(kc + e, bias ? ke + rope.bk[kd + e] : ke);
          s_kn[e] = as_cached<KvT>(bias ? ke + rope.bk[kd + e] : ke);
        }
      }
      for (int e = threadIdx.x; e < D; e += blockDim.x) {
        const float ve = bias ? rope.v[kd + e] + rope.bv[kd + e] : rope.v[kd + e];
        kv_store(vc + e, ve);
        s_vn[e] = as_cached<KvT>(ve);
      }
    }
    // Later trips read this block's stores from global memory: visible after the barrier.
    __syncthreads();
  }
  if (stop_at == 2) return;
  // The preloaded trip's rows from the position on are this pass's: stored by this block (shared
  // memory; with lane_rope only store_warp has them, each lane its own) or by rope_and_store
  // before the wait.
  if (owns_pos && j_first < end && (store_warp || !lane_rope)) {
#pragma unroll
    for (int u = 0; u < kKeys; ++u) {
      const int r = min(j_first + u, end - 1);
      if (r < fresh) continue;
      if (fuse_rope) {
#pragma unroll
        for (int e = 0; e < kPer; ++e) {
          rk[u][e] = s_kn[lane * kPer + e];
          rv[u][e] = s_vn[lane * kPer + e];
        }
      } else {
        load_row<kPer>(kb + static_cast<int64_t>(r) * KV, rk[u]);
        load_row<kPer>(vb + static_cast<int64_t>(r) * KV, rv[u]);
      }
    }
  }
  const float scale = rsqrtf(static_cast<float>(D));
  float acc[kG][kPer], m[kG], l[kG];
#pragma unroll
  for (int hh = 0; hh < kG; ++hh) {
#pragma unroll
    for (int e = 0; e < kPer; ++e) {
      const int d = lane * kPer + e;
      if (lane_rope) {
        qv[hh][e] *= scale;
      } else {
        qv[hh][e] = hh < g ? (fuse_rope ? s_q[hh][d] : q[(h0 + hh) * D + d]) * scale : 0.0f;
      }
      acc[hh][e] = 0.0f;
    }
    m[hh] = -FLT_MAX;
    l[hh] = 0.0f;
  }
  for (int j = j_first; j < end; j += stride) {
    float nk[kKeys][kPer], nv[kKeys][kPer];  // the next trip's rows, in flight while this is scored
    if (j + stride < end) load_trip(nk, nv, j + stride);
    float s[kG * kKeys];
#pragma unroll
    for (int hh = 0; hh < kG; ++hh) {
#pragma unroll
      for (int u = 0; u < kKeys; ++u) {
        float d = 0.0f;
#pragma unroll
        for (int e = 0; e < kPer; ++e) d += qv[hh][e] * rk[u][e];
        s[hh * kKeys + u] = d;
      }
    }
    // The trip's softmax weights, one per lane: lane L holds score i = L >> kShift (head
    // i / kKeys, key i % kKeys), takes its head's maximum over that head's lanes, and makes its
    // score's weight and its head's correction; the maxima, weights and corrections are then
    // broadcast. 2 expf a lane where each lane making all of them took kG (kKeys + 1) (H100,
    // Llama-3-8B tg128: 464.87 against 462.15 tok/s Q4_K_M, 317.65 against 315.31 Q8_0).
    constexpr int kShift = 5 - kSumLog<kG * kKeys>;
    const float mine = warp_sum_own(s, lane);
    const int own = lane >> kShift, own_head = own / kKeys;
    float m_old = m[0];
#pragma unroll
    for (int hh = 1; hh < kG; ++hh) m_old = own_head == hh ? m[hh] : m_old;
    const bool valid = j + own % kKeys < end;
    float top = valid ? mine : -FLT_MAX;
#pragma unroll
    for (int o = 1 << kShift; o < (kKeys << kShift); o *= 2)
      top = fmaxf(top, __shfl_xor_sync(0xFFFFFFFFu, top, o));
    const float own_m = fmaxf(m_old, top);
    const float own_p = valid ? expf(mine - own_m) : 0.0f;
    const float own_corr = expf(m_old - own_m);
#pragma unroll
    for (int hh = 0; hh < kG; ++hh) {
      const int head_lane = (hh * kKeys) << kShift;
      const float m_new = __shfl_sync(0xFFFFFFFFu, own_m, head_lane);
      const float corr = __shfl_sync(0xFFFFFFFFu, own_corr, head_lane);
      float p[kKeys];
#pragma unroll
      for (int u = 0; u < kKeys; ++u)
        p[u] = __shfl_sync(0xFFFFFFFFu, own_p, (hh * kKeys + u) << kShift);
      if (hh >= g) continue;
      l[hh] *= corr;
#pragma unroll
      for (int e = 0; e < kPer; ++e) acc[hh][e] *= corr;
#pragma unroll
      for (int u = 0; u < kKeys; ++u) {
        l[hh] += p[u];
#pragma unroll
        for (int e = 0; e < kPer; ++e) acc[hh][e] += p[u] * rv[u][e];
      }
      m[hh] = m_new;
    }
#pragma unroll
    for (int u = 0; u < kKeys; ++u) {
#pragma unroll
      for (int e = 0; e < kPer; ++e) rk[u][e] = nk[u][e], rv[u][e] = nv[u][e];
    }
  }
  if (stop_at == 3) {
    return;
  }
  // The block's state per head: its warps' merged (a warp that saw no key weighs nothing).
#pragma unroll
  for (int hh = 0; hh < kG; ++hh) {
    if (lane == 0) s_wm[warp][hh] = m[hh], s_wl[warp][hh] = l[hh];
#pragma unroll
    for (int e = 0; e < kPer; ++e) s_wacc[warp][hh][lane * kPer + e] = acc[hh][e];
  }
  __syncthreads();
  // Head h0 + hh's output at dimension d (lane d % 32 of a warp): in float, and as q8_1 groups
  // for o's product when it wants them.
  auto store_out = [&](int hh, int d, float o) {
    const int64_t at = static_cast<int64_t>(h0 + hh) * D + d;
    out[at] = o;
    if (out_q != nullptr) store_q8_group(o, out_q + at - lane, out_d + at / 32);
  };
  // A thread per (head, dimension); a warp's 32 are one head's (D is a multiple of 32), so lane
  // w < kW makes warp w's weight for the head and the warp shares them: one expf a lane where
  // each thread made all kW. With no cluster to merge with (C == 1), the block's state is the
  // head's, and the thread stores its output at once (no second barrier or shared round trip).
  for (int i = threadIdx.x; i < g * D; i += blockDim.x) {
    const int hh = i / D, d = i % D;
    const float own_m = lane < kW ? s_wm[lane][hh] : -FLT_MAX;
    float mx = own_m;
#pragma unroll
    for (int o = kW / 2; o > 0; o /= 2) mx = fmaxf(mx, __shfl_xor_sync(0xFFFFFFFFu, mx, o));
    const float own_wt = lane < kW ? expf(own_m - mx) : 0.0f;
    float a = 0.0f, sum = 0.0f;
#pragma unroll
    for (int w = 0; w < kW; ++w) {
      const float wt = __shfl_sync(0xFFFFFFFFu, own_wt, w);
      a += s_wacc[w][hh][d] * wt;
      sum += s_wl[w][hh] * wt;
    }
    if (C == 1) {
      if (stop_at != 4) store_out(hh, d, a / sum);
    } else {
      s_acc[hh][d] = a;
      if (d == 0) s_m[hh] = mx, s_l[hh] = sum;
    }
  }
  if (C == 1) return;
  cluster.sync();            // every block's state, visible to the cluster
  if (stop_at == 4) return;  // every block: none reads another's shared memory
  // The output in units of 32 dimensions of one head, shared out among the cluster's warps.
  const int units = g * (D / kWarp);
  for (int unit = rank * kW + warp; unit < units; unit += C * kW) {
    const int hh = unit / (D / kWarp), d = unit % (D / kWarp) * kWarp + lane;
    float mc[kMaxCluster];
    float mx = -FLT_MAX;
#pragma unroll
    for (int c = 0; c < kMaxCluster; ++c) {
      if (c < C) mx = fmaxf(mx, mc[c] = *cluster.map_shared_rank(&s_m[hh], c));
    }
    float sum = 0.0f, o = 0.0f;
#pragma unroll
    for (int c = 0; c < kMaxCluster; ++c) {
      if (c < C) {
        const float wt = expf(mc[c] - mx);
        sum += *cluster.map_shared_rank(&s_l[hh], c) * wt;
        o += *cluster.map_shared_rank(&s_acc[hh][d], c) * wt;
      }
    }
    store_out(hh, d, o / sum);
  }
  cluster.sync();  // no block's shared memory goes while another reads it
#endif
}

// Blocks per kv head at every context, for measuring (set_group_cluster, else
// SQUISH_CUDA_ATTN_CLUSTER=1..16, read once; 0: by the context).
int g_cluster = -1;
int cluster_env() {
  static const int c = env_int_in("SQUISH_CUDA_ATTN_CLUSTER", 1, kMaxCluster, 0);
  return g_cluster >= 0 ? std::min(g_cluster, kMaxCluster) : c;
}

// One block of 16 warps per kv head while the context is one 256-key chunk (set_group_one_block,
// else SQUISH_CUDA_ATTN_ONE_BLOCK, read once; on by default: H100, Llama-3-8B tg128 Q4_K_M 462.57
// against 449.42 tok/s with a cluster of 2 blocks of 8 warps, Q8_0 316.56 against 310.78).
int g_one_block = -1;
bool one_block() {
  static const bool env = env_int_in("SQUISH_CUDA_ATTN_ONE_BLOCK", 0, 1, 1) == 1;
  return g_one_block >= 0 ? g_one_block != 0 : env;
}

// Llama's RoPE in each lane's registers, without the block barrier (the kernel's fuse_rope 2;
// SQUISH_CUDA_ATTN_LANE_ROPE=0, read once, rotates through shared memory as every other RoPE).
bool lane_rope() {
  static const bool env = env_int_in("SQUISH_CUDA_ATTN_LANE_ROPE", 0, 1, 1) == 1;
  return env;
}

// Warps per block of the kernel (set_group_warps, else SQUISH_CUDA_ATTN_WARPS=8|16, read once;
// 8 the default until measured).
int g_warps = -1;
int group_warps() {
  static const int env = env_one_of("SQUISH_CUDA_ATTN_WARPS", {8, 16}, kGroupWarps);
  return g_warps == 8 || g_warps == 16 ? g_warps : env;
}

// One launch's arguments, the caches' pointers untyped.
struct GroupLaunch {
  const float* q;
  const KvCache* cache;
  int n_head, n_head_kv;
  const int* pos0;
  float* out;
  int8_t* out_q;
  float* out_d;
  RopeArgs rope;
  int fuse_rope;
  int cluster;  // blocks per kv head wanted
  int warps;    // warps per block wanted (16 where they fit), 0: group_warps()
  cudaStream_t stream;
};

// A launch of n_head_kv clusters of c blocks; attr: its cluster attribute, filled here.
cudaLaunchConfig_t cluster_config(int n_head_kv, int c, int warps, cudaLaunchAttribute* attr) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(n_head_kv, c);
  cfg.blockDim = dim3(kWarp * warps);
  attr->id = cudaLaunchAttributeClusterDimension;
  attr->val.clusterDim.x = 1;
  attr->val.clusterDim.y = c;
  attr->val.clusterDim.z = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  return cfg;
}

// The largest cluster the device runs this kernel in: 16 (past the portable 8) where it can.
template <class Kernel>
int max_cluster(Kernel* kernel, int n_head_kv, int warps) {
  if (cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1) !=
      cudaSuccess) {
    (void)cudaGetLastError();
  }
  for (int c = kMaxCluster; c > 1; c /= 2) {
    cudaLaunchAttribute attr;
    const cudaLaunchConfig_t cfg = cluster_config(n_head_kv, c, warps, &attr);
    int clusters = 0;
    if (cudaOccupancyMaxActiveClusters(&clusters, kernel, &cfg) == cudaSuccess && clusters > 0)
      return c;
    (void)cudaGetLastError();
  }
  return 1;
}

template <int kPer, int kG, class KvT, int kW>
void launch_group_kernel(const GroupLaunch& a, bool launch) {
  auto* kernel = attention_group_kernel<kPer, kG, KvT, kW>;
  static const int most = max_cluster(kernel, a.n_head_kv, kW);  // once per instantiation
  if (!launch) return;
  cudaLaunchAttribute attr[2];
  cudaLaunchConfig_t cfg = cluster_config(a.n_head_kv, std::min(a.cluster, most), kW, attr);
  cfg.stream = a.stream;
  attr[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[1].val.programmaticStreamSerializationAllowed = 1;
  cfg.numAttrs = detail::programmatic_launch() ? 2 : 1;
  // A failed launch is reported by cudaGetLastError, which the session checks after each pass.
  (void)cudaLaunchKernelEx(&cfg, kernel, a.q, static_cast<KvT*>(a.cache->k),
                           static_cast<KvT*>(a.cache->v), a.n_head, a.n_head_kv, a.pos0, a.out,
                           a.out_q, a.out_d, a.rope, a.fuse_rope, attention_stop_stage());
}

// Blocks of 16 warps where their weighted values fit the 48 KB of static shared memory (kG x
// head_dim <= 512: Llama-3-8B's 4 heads of 128) and group_warps() asks for them, else of 8.
template <int kPer, int kG, class KvT>
void launch_group(const GroupLaunch& a, bool launch) {
  if constexpr (kG * kPer * kWarp <= 512) {
    // Readying (launch false) readies both: a session's graphs may take either.
    if (!launch) launch_group_kernel<kPer, kG, KvT, 16>(a, false);
    if ((a.warps != 0 ? a.warps : group_warps()) == 16)
      return launch_group_kernel<kPer, kG, KvT, 16>(a, launch);
  }
  launch_group_kernel<kPer, kG, KvT, kGroupWarps>(a, launch);
}

// The q heads per kv head the kernel for g is built for (launch_per).
int built_heads(int g) {
  return g <= 2 ? g : g <= 4 ? 4 : 8;
}

// Whether a context of one chunk runs one block of 16 warps per kv head: on (one_block), no fixed
// cluster size, and the 16 warps' weighted values fit shared memory.
bool one_block_applies(int g, int head_dim) {
  return cluster_env() == 0 && one_block() && built_heads(g) * head_dim <= 512;
}

// The instantiation for q heads per kv head g (false: none, heads of 256 dimensions past 4).
template <int kPer, class KvT>
bool launch_per(int g, const GroupLaunch& a, bool launch) {
  auto go = [&](auto kg) {
    launch_group<kPer, decltype(kg)::value, KvT>(a, launch);
    return true;
  };
  if (g == 1) return go(std::integral_constant<int, 1>{});
  if (g == 2) return go(std::integral_constant<int, 2>{});
  if (g <= 4) return go(std::integral_constant<int, 4>{});
  if constexpr (kPer <= 4) {  // 8 heads of 256 dimensions: more registers than a lane has
    if (g <= 8) return go(std::integral_constant<int, 8>{});
  }
  return false;
}

}  // namespace

void set_group_warps(int warps) {
  g_warps = warps;
}

void set_group_cluster(int blocks) {
  g_cluster = blocks;
}

void set_group_one_block(int on) {
  g_one_block = on;
}

bool attention_group(const float* q, const KvCache& cache, int n_head, int n_head_kv, int head_dim,
                     const int* pos0, float* out, cudaStream_t stream, int8_t* out_q, float* out_d,
                     const RopeArgs* rope, int chunks, bool launch) {
  if (n_head_kv <= 0 || n_head % n_head_kv != 0 || !detail::device_is_sm90()) return false;
  const int g = n_head / n_head_kv;
  // A block per 256-key chunk of the context, at least 2 (H100, Llama-3-8B Q4_K_M: tg128 at
  // 1-128 tokens 433.8 tok/s with 2 blocks per kv head, 432.9 with 4 or 8, 425.8 with 16, 416.8
  // with 1; tg64 at 4,096 tokens 356.7 with 16, 312.7 with 8).
  const int env = cluster_env();
  GroupLaunch a{};
  a.q = q;
  a.cache = &cache;
  a.n_head = n_head;
  a.n_head_kv = n_head_kv;
  a.pos0 = pos0;
  a.out = out;
  a.out_q = out_q;
  a.out_d = out_d;
  if (rope != nullptr) a.rope = *rope;
  a.fuse_rope = rope == nullptr ? 0 : lane_rope() ? 2 : 1;
  a.cluster = env > 0 ? env : std::clamp(chunks, 2, kMaxCluster);
  // Within one chunk, one block of 16 warps per kv head (unless turned off): as many keys a round
  // as 2 blocks of 8, without the cluster's barriers and remote reads (attention 5.9 us of a
  // Llama-3-8B layer instead of 7.2; docs/cuda.md, nineteenth slice). Only where 16 warps fit: one
  // block of 8 measured slower.
  if (chunks <= 1 && one_block_applies(g, head_dim)) {
    a.cluster = 1;
    a.warps = 16;
  }
  a.stream = stream;
  bool applies = false;
  with_kv_type(cache.type, [&](auto t) {
    using KvT = decltype(t);
    if (head_dim == 64) {
      applies = launch_per<2, KvT>(g, a, launch);
    } else if (head_dim == 128) {
      applies = launch_per<4, KvT>(g, a, launch);
    } else if (head_dim == 256) {
      applies = launch_per<8, KvT>(g, a, launch);
    }
  });
  return applies;
}

}  // namespace squish::cuda::attend

namespace squish::cuda {

bool attention_one_block(int n_head, int n_head_kv, int head_dim) {
  return n_head_kv > 0 && n_head % n_head_kv == 0 &&
         attend::one_block_applies(n_head / n_head_kv, head_dim);
}

// SQUISH_CUDA_ATTN_STOP=1..4, read once: the attention kernel's stop_at.
int attention_stop_stage() {
  static const int v = env_int_in("SQUISH_CUDA_ATTN_STOP", 1, 4, 0);
  return v;
}

}  // namespace squish::cuda
