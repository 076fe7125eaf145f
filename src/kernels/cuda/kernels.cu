// CUDA kernels (kernels.h) other than the products (matvec.cu, kernels_q8.cu, gemm.cu): RMSNorm,
// RoPE and the KV-cache store, attention (decode, split decode and tiled prefill), gating, argmax
// and the read-bandwidth kernel.
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

namespace squish::cuda {

namespace detail {

namespace {
thread_local bool g_programmatic_launch = false;
}  // namespace

bool programmatic_launch() {
  return g_programmatic_launch;
}

namespace {
// One attribute of the current device, or `otherwise` where the driver cannot say.
int device_attribute(cudaDeviceAttr attribute, int otherwise) {
  int device = 0, value = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&value, attribute, device) != cudaSuccess) {
    (void)cudaGetLastError();
    return otherwise;
  }
  return value;
}
}  // namespace

int sm_count() {
  static const int n = std::max(1, device_attribute(cudaDevAttrMultiProcessorCount, 1));
  return n;
}

bool device_is_sm90() {
  static const bool yes = device_attribute(cudaDevAttrComputeCapabilityMajor, 0) >= 9;
  return yes;
}

}  // namespace detail

namespace {

using attend::kv_load4;
using attend::kv_store;
using attend::rotate_pair;
using attend::with_kv_type;
using detail::launch;
using detail::pdl_launch_dependents;
using detail::pdl_wait;

constexpr int kWarp = 32;

// ---- Small kernels ----

template <int kThreads>
__device__ float block_sum(float v, float* shared) {
#pragma unroll
  for (int o = kWarp / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float total = 0;
#pragma unroll
  for (int i = 0; i < kThreads / kWarp; ++i) total += shared[i];
  __syncthreads();
  return total;
}

// One block per row; decode has a single row, so the block is wide (a norm is ~1 % of a step).
constexpr int kNormThreads = 1024;

// With q8 set (n a multiple of 32), also writes the normalised rows' 8-bit form (q rows at
// q + t * n, scales at d + t * n / 32), saving a separate quantization pass.
__global__ void rms_norm_kernel(const float* __restrict__ x, const float* __restrict__ weight,
                                int n, float eps, float* __restrict__ out, int8_t* q, float* d) {
  pdl_launch_dependents();
  pdl_wait();
  __shared__ float partial[kNormThreads / kWarp];
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * n;
  float* orow = out + static_cast<int64_t>(blockIdx.x) * n;
  float ss = 0;
  for (int i = threadIdx.x; i < n; i += kNormThreads) ss += xr[i] * xr[i];
  ss = block_sum<kNormThreads>(ss, partial);
  const float scale = rsqrtf(ss / n + eps);
  if (q == nullptr) {
    for (int i = threadIdx.x; i < n; i += kNormThreads) orow[i] = xr[i] * scale * weight[i];
    return;
  }
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  for (int g = warp; g < n / 32; g += kNormThreads / kWarp) {
    const int i = g * 32 + lane;
    const float v = xr[i] * scale * weight[i];
    orow[i] = v;
    store_q8_group(v, q + static_cast<int64_t>(blockIdx.x) * n + g * 32,
                   d + static_cast<int64_t>(blockIdx.x) * (n / 32) + g);
  }
}

template <class KvT>
__global__ void rope_store_kernel(RopeArgs a) {
  pdl_launch_dependents();
  pdl_wait();
  const int t = blockIdx.x;
  const int pos = *a.pos0 + t;
  const int D = a.head_dim, Q = a.n_head * D, KV = a.n_head_kv * D, half = a.n_rot / 2;
  float* q = a.q + t * a.ld;
  float* k = a.k + t * a.ld;
  float* v = a.v + t * a.ld;
  if (a.bq != nullptr) {
    for (int i = threadIdx.x; i < Q; i += blockDim.x) q[i] += a.bq[i];
    for (int i = threadIdx.x; i < KV; i += blockDim.x) k[i] += a.bk[i];
    for (int i = threadIdx.x; i < KV; i += blockDim.x) v[i] += a.bv[i];
    __syncthreads();
  }
  // One (head, pair) per thread step; q heads first, then k heads.
  const int pairs = (a.n_head + a.n_head_kv) * half;
  for (int p = threadIdx.x; p < pairs; p += blockDim.x) {
    const int h = p / half, i = p % half;
    float* head = h < a.n_head ? q + h * D : k + (h - a.n_head) * D;
    const int ia = a.neox ? i : 2 * i, ib = a.neox ? i + half : 2 * i + 1;
    const float* cs = a.cos_sin + static_cast<int64_t>(t) * 2 * half;
    const float c = cs[i], s = cs[half + i];
    const float x0 = head[ia], x1 = head[ib];
    rotate_pair(x0, x1, c, s, head + ia, head + ib);
  }
  __syncthreads();
  KvT* kc = static_cast<KvT*>(a.cache.k) + static_cast<int64_t>(pos) * KV;
  KvT* vc = static_cast<KvT*>(a.cache.v) + static_cast<int64_t>(pos) * KV;
  for (int i = threadIdx.x; i < KV; i += blockDim.x) {
    kv_store(kc + i, k[i]);
    kv_store(vc + i, v[i]);
  }
}

constexpr int kSplitKeys = kAttentionSplitKeys;  // keys per block of the split decode (kernels.h)
constexpr int kMaxHeadDim = 256;

// One block per (head, query token): warp w takes keys w*K .. w*K+K-1 (K = 32 / kPer, below),
// then every kAttnWarps-th group of K; lanes hold head_dim / 32 dimensions each. Each warp keeps an
// online softmax (running max, sum and weighted values); the warps' partial results are merged at
// the end. With q8 set, the output row is also written in 8-bit form (groups of 32 = one warp's
// dimensions). With fuse_rope (one token), the block first does rope_store_kernel's work for its
// head: q rotated into shared memory, its kv head's k (rotated) and v stored at the position.
// Blocks of the same kv head store the same values; each reads back only after its own store. The
// caches are therefore read without __restrict__ (no read-only path for memory this kernel writes).
//
// kSplit (one token; AttentionSplit, the default past 256 tokens of context): block (h, c) takes
// keys [c * kSplitKeys, (c + 1) * kSplitKeys) only, so a long context spreads over many blocks
// instead of one per head (4,096 keys, head_dim 128, 16 warps: 16 blocks per head of 2 trips
// each, not one block of 32).
// Chunks past the position exit at once; while one chunk is active its block writes the output
// as above; past that, each active block writes its softmax state (max, sum, weighted values) to
// split.partials, and the last of a head's active blocks to finish (counted in
// split.counters[h], reset by it) merges them into the output. With fuse_rope only the block
// whose chunk holds the position stores its k and v (every block rotates its own q).
//
// kPer: registers per lane for a head's dimensions (4: head_dim <= 128, 8: <= 256); a warp takes
// 32 / kPer keys per trip through the cache (their loads in flight together), so a short head
// needs half the dependent trips of a long one. KvT: the cache's float or __half.
template <int kAttnWarps, bool kSplit, int kPer, class KvT>
__global__ void __launch_bounds__(kWarp* kAttnWarps)
    attention_kernel(const float* __restrict__ q, int64_t ldq, KvT* k_cache, KvT* v_cache,
                     int n_head, int n_head_kv, int D, const int* pos0, float* __restrict__ out,
                     int8_t* out_q, float* out_d, RopeArgs rope, int fuse_rope,
                     AttentionSplit split) {
  pdl_launch_dependents();
  pdl_wait();
  constexpr int kAttnKeys = 32 / kPer;  // keys per warp per trip
  static_assert(kPer * kWarp <= kMaxHeadDim, "kPer: at most kMaxHeadDim / 32");
  __shared__ float s_m[kAttnWarps], s_l[kAttnWarps];
  __shared__ float s_acc[kAttnWarps][kPer * kWarp];
  __shared__ float s_q[kPer * kWarp];
  const int h = blockIdx.x, t = kSplit ? 0 : blockIdx.y;
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int per = D / kWarp;
  const int kvh = h / (n_head / n_head_kv);
  const int KV = n_head_kv * D;
  const int n_keys = *pos0 + t + 1;
  const float scale = rsqrtf(static_cast<float>(D));
  // Keys [key_begin, key_end): all of them, or this block's chunk.
  const int chunk = kSplit ? static_cast<int>(blockIdx.y) : 0;
  const int key_begin = kSplit ? chunk * kSplitKeys : 0;
  const int key_end = kSplit ? min(n_keys, key_begin + kSplitKeys) : n_keys;
  if (kSplit && key_begin >= n_keys) return;  // block-uniform: a chunk past the position
  const bool owns_pos = !kSplit || n_keys - 1 < key_end;
  if (fuse_rope) {
    // One pass, one barrier: thread i < half rotates pair i of q and of k from its own loads
    // (with the bias, rope_store_kernel's arithmetic), threads past it copy the dimensions past
    // n_rot, and every thread e < D stores v. All loads are independent, so they overlap.
    const int pos = n_keys - 1;
    const int half = rope.n_rot / 2, tail = D - rope.n_rot;
    const bool bias = rope.bq != nullptr;
    KvT* kc = k_cache + static_cast<int64_t>(pos) * KV + kvh * D;
    for (int i = threadIdx.x; i < half + tail; i += blockDim.x) {
      if (i < half) {
        const int ia = rope.neox ? i : 2 * i, ib = rope.neox ? i + half : 2 * i + 1;
        const float c = rope.cos_sin[i], sn = rope.cos_sin[half + i];
        float q0 = rope.q[h * D + ia], q1 = rope.q[h * D + ib];
        float k0 = rope.k[kvh * D + ia], k1 = rope.k[kvh * D + ib];
        if (bias) {
          q0 += rope.bq[h * D + ia];
          q1 += rope.bq[h * D + ib];
          k0 += rope.bk[kvh * D + ia];
          k1 += rope.bk[kvh * D + ib];
        }
        rotate_pair(q0, q1, c, sn, s_q + ia, s_q + ib);
        if (owns_pos) rotate_pair(k0, k1, c, sn, kc + ia, kc + ib);
      } else {
        const int e = rope.n_rot + i - half;
        const float qe = rope.q[h * D + e], ke = rope.k[kvh * D + e];
        s_q[e] = bias ? qe + rope.bq[h * D + e] : qe;
        if (owns_pos) kv_store(kc + e, bias ? ke + rope.bk[kvh * D + e] : ke);
      }
    }
    if (owns_pos) {
      for (int e = threadIdx.x; e < D; e += blockDim.x) {
        const float ve = rope.v[kvh * D + e];
        kv_store(v_cache + static_cast<int64_t>(pos) * KV + kvh * D + e,
                 bias ? ve + rope.bv[kvh * D + e] : ve);
      }
    }
    // The keys below read this block's stores of k and v (global memory, the block's own
    // writes: visible after the barrier).
    __syncthreads();
  }
  float qv[kPer], acc[kPer];
#pragma unroll
  for (int e = 0; e < kPer; ++e) {
    const int dim = lane + kWarp * e;
    qv[e] = e < per ? (fuse_rope ? s_q[dim] : q[t * ldq + h * D + dim]) * scale : 0.0f;
    acc[e] = 0.0f;
  }
  float m = -FLT_MAX, l = 0.0f;
  const KvT* kbase = k_cache + kvh * D + lane;
  const KvT* vbase = v_cache + kvh * D + lane;
  attend::keys<kPer, kAttnKeys>(qv, per, kbase, vbase, KV, key_begin + warp * kAttnKeys, key_end,
                                kAttnWarps * kAttnKeys, m, l, acc);
  if (lane == 0) {
    s_m[warp] = m;
    s_l[warp] = l;
  }
#pragma unroll
  for (int e = 0; e < kPer; ++e)
    if (e < per) s_acc[warp][lane + kWarp * e] = acc[e];
  __syncthreads();
  float mx = -FLT_MAX;
  for (int w = 0; w < kAttnWarps; ++w) mx = fmaxf(mx, s_m[w]);
  float denom = 0;
  float wgt[kAttnWarps];
  for (int w = 0; w < kAttnWarps; ++w) {
    wgt[w] = s_l[w] > 0 ? expf(s_m[w] - mx) : 0.0f;  // warps that saw no key weigh nothing
    denom += s_l[w] * wgt[w];
  }
  const int64_t row = static_cast<int64_t>(t) * n_head * D + h * D;
  // One active chunk (a context of at most kSplitKeys so far): its block is the whole answer.
  const bool merge = kSplit && n_keys > kSplitKeys;
  if (merge) {
    // This chunk's state: max mx, sum denom, values sum_w s_acc[w] * wgt[w] (unnormalized).
    float* part = split.partials + (static_cast<int64_t>(h) * split.n_splits + chunk) * (D + 2);
    for (int dd = threadIdx.x; dd < D; dd += blockDim.x) {
      float a = 0;
      for (int w = 0; w < kAttnWarps; ++w) a += s_acc[w][dd] * wgt[w];
      part[2 + dd] = a;
    }
    if (threadIdx.x == 0) {
      part[0] = mx;
      part[1] = denom;
    }
    const int active = (n_keys + kSplitKeys - 1) / kSplitKeys;  // chunks holding keys
    __shared__ int s_last;
    __threadfence();  // every thread's part of the partial, visible to the merging block
    __syncthreads();
    if (threadIdx.x == 0) s_last = atomicAdd(split.counters + h, 1) == active - 1;
    __syncthreads();
    if (!s_last) return;
    __threadfence();
    const float* parts = split.partials + static_cast<int64_t>(h) * split.n_splits * (D + 2);
    float gmax = -FLT_MAX;
    for (int c = 0; c < active; ++c) gmax = fmaxf(gmax, __ldcg(parts + c * (D + 2)));
    float gsum = 0;
    for (int c = 0; c < active; ++c) {
      gsum += __ldcg(parts + c * (D + 2) + 1) * expf(__ldcg(parts + c * (D + 2)) - gmax);
    }
    const float ginv = 1.0f / gsum;
    for (int dd = threadIdx.x; dd < D; dd += blockDim.x) {  // D <= blockDim: warp-uniform
      float o = 0;
      for (int c = 0; c < active; ++c) {
        const float* pc = parts + c * (D + 2);
        o += __ldcg(pc + 2 + dd) * expf(__ldcg(pc) - gmax);
      }
      o *= ginv;
      out[row + dd] = o;
      if (out_q != nullptr) store_q8_group(o, out_q + row + dd - lane, out_d + (row + dd) / 32);
    }
    if (threadIdx.x == 0) split.counters[h] = 0;  // ready for the next step
    return;
  }
  const float inv = 1.0f / denom;
  for (int dd = threadIdx.x; dd < D; dd += blockDim.x) {  // D <= blockDim: warp-uniform
    float o = 0;
    for (int w = 0; w < kAttnWarps; ++w) o += s_acc[w][dd] * wgt[w];
    o *= inv;
    out[row + dd] = o;
    if (out_q != nullptr) store_q8_group(o, out_q + row + dd - lane, out_d + (row + dd) / 32);
  }
}

// Prefill attention, tiled (the default for head_dim <= 128; SQUISH_CUDA_ATTN_TILED=0 for the
// per-query kernel above): one block per (head,
// kTileQueries consecutive query tokens), 8 warps of two queries each (t0 + w and t0 + w + 8).
// Keys and values come through shared memory kTileKeys rows at a time, shared by the block's 16
// queries: one round trip to L2 per tile instead of one per 4 keys and query (the per-query
// kernel above reads every key once per query, ~1 KB of L2 traffic per query and key). Lane j
// scores key j of the tile against both of its warp's queries with 16-byte shared loads (K rows
// padded by 4 floats: the 8 lanes of a load phase hit 32 different banks), so each K load feeds
// two queries; each V row read feeds both output accumulators. Online softmax per query.
constexpr int kTileWarps = 8, kTileQueries = 2 * kTileWarps, kTileKeys = 32;
constexpr int kTileMaxDim = 128;
constexpr int kTileFloat4s = kTileKeys * kTileMaxDim / 4 / (kWarp * kTileWarps);  // per thread

size_t attention_tiled_smem(int D) {
  return sizeof(float) *
         (static_cast<size_t>(kTileKeys) * (D + 4) + static_cast<size_t>(kTileKeys) * D +
          static_cast<size_t>(kTileQueries) * D);
}

template <class KvT>
__global__ void __launch_bounds__(kWarp* kTileWarps)
    attention_tiled_kernel(const float* __restrict__ q, int64_t ldq,
                           const KvT* __restrict__ k_cache, const KvT* __restrict__ v_cache,
                           int n_head, int n_head_kv, int D, const int* pos0, int n_tokens,
                           float* __restrict__ out, int8_t* out_q, float* out_d) {
  pdl_launch_dependents();
  pdl_wait();
  constexpr int kMaxPer = kTileMaxDim / kWarp;
  extern __shared__ float4 s_tile4[];
  float* s_k = reinterpret_cast<float*>(s_tile4);  // kTileKeys rows of D + 4
  float* s_v = s_k + kTileKeys * (D + 4);          // kTileKeys rows of D
  float* s_q = s_v + kTileKeys * D;                // kTileQueries rows of D, scaled
  const int h = blockIdx.x, t0 = blockIdx.y * kTileQueries;
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int ta = t0 + warp, tb = ta + kTileWarps;  // this warp's queries
  const int kvh = h / (n_head / n_head_kv);
  const int KV = n_head_kv * D, per = D / kWarp, row4 = D / 4;
  const int p0 = *pos0;
  const float scale = rsqrtf(static_cast<float>(D));
  for (int i = threadIdx.x; i < kTileQueries * D; i += blockDim.x) {
    const int w = i / D;
    s_q[i] =
        t0 + w < n_tokens ? q[static_cast<int64_t>(t0 + w) * ldq + h * D + i % D] * scale : 0.0f;
  }
  const int last_key = p0 + min(t0 + kTileQueries, n_tokens) - 1;  // what the tile's last sees
  const int last_a = p0 + ta, last_b = p0 + tb;                    // keys 0 .. last of each query
  const bool busy = ta < n_tokens;  // warp-uniform; tb < n_tokens only if busy
  float ma = -FLT_MAX, mb = -FLT_MAX, la = 0.0f, lb = 0.0f, acc_a[kMaxPer], acc_b[kMaxPer];
#pragma unroll
  for (int e = 0; e < kMaxPer; ++e) acc_a[e] = acc_b[e] = 0.0f;
  for (int j0 = 0; j0 <= last_key; j0 += kTileKeys) {
    __syncthreads();  // the previous tile is consumed (and s_q written, on the first trip)
    const int n_rows = min(kTileKeys, last_key + 1 - j0);
    float4 kv[kTileFloat4s], vv[kTileFloat4s];
#pragma unroll
    for (int c = 0; c < kTileFloat4s; ++c) {  // every load first: one round trip per tile
      const int i = c * blockDim.x + threadIdx.x, r = i / row4;
      kv[c] = vv[c] = make_float4(0, 0, 0, 0);
      if (i < kTileKeys * row4 && r < n_rows) {
        const int64_t at = static_cast<int64_t>(j0 + r) * KV + kvh * D + (i % row4) * 4;
        kv[c] = kv_load4(k_cache + at);
        vv[c] = kv_load4(v_cache + at);
      }
    }
#pragma unroll
    for (int c = 0; c < kTileFloat4s; ++c) {
      const int i = c * blockDim.x + threadIdx.x;
      if (i >= kTileKeys * row4) continue;
      const int r = i / row4, e = (i % row4) * 4;
      *reinterpret_cast<float4*>(s_k + r * (D + 4) + e) = kv[c];
      *reinterpret_cast<float4*>(s_v + r * D + e) = vv[c];
    }
    __syncthreads();
    if (!busy) continue;
    const int j = j0 + lane;
    const bool va = j <= last_a, vb = j <= last_b;  // lane < kTileKeys: one lane per key
    float sa = 0.0f, sb = 0.0f;
    {
      const float4* kr = reinterpret_cast<const float4*>(s_k + lane * (D + 4));
      const float4* qa = reinterpret_cast<const float4*>(s_q + warp * D);
      const float4* qb = reinterpret_cast<const float4*>(s_q + (warp + kTileWarps) * D);
      for (int e = 0; e < row4; ++e) {
        const float4 k4 = kr[e], a4 = qa[e], b4 = qb[e];
        sa += a4.x * k4.x + a4.y * k4.y + a4.z * k4.z + a4.w * k4.w;
        sb += b4.x * k4.x + b4.y * k4.y + b4.z * k4.z + b4.w * k4.w;
      }
    }
    sa = va ? sa : -FLT_MAX;
    sb = vb ? sb : -FLT_MAX;
    float xa = sa, xb = sb;
#pragma unroll
    for (int o = kWarp / 2; o > 0; o >>= 1) {
      xa = fmaxf(xa, __shfl_xor_sync(0xFFFFFFFFu, xa, o));
      xb = fmaxf(xb, __shfl_xor_sync(0xFFFFFFFFu, xb, o));
    }
    const float na = fmaxf(ma, xa), nb = fmaxf(mb, xb);
    // exp(-FLT_MAX - finite) is 0: the first tile's correction, and nothing new gives 1.
    const float ca = expf(ma - na), cb = expf(mb - nb);
    const float pa = va ? expf(sa - na) : 0.0f, pb = vb ? expf(sb - nb) : 0.0f;
    float ya = pa, yb = pb;
#pragma unroll
    for (int o = kWarp / 2; o > 0; o >>= 1) {
      ya += __shfl_xor_sync(0xFFFFFFFFu, ya, o);
      yb += __shfl_xor_sync(0xFFFFFFFFu, yb, o);
    }
    la = la * ca + ya;
    lb = lb * cb + yb;
    ma = na;
    mb = nb;
#pragma unroll
    for (int e = 0; e < kMaxPer; ++e) {
      acc_a[e] *= ca;
      acc_b[e] *= cb;
    }
    for (int jj = 0; jj < kTileKeys; ++jj) {
      const float pja = __shfl_sync(0xFFFFFFFFu, pa, jj), pjb = __shfl_sync(0xFFFFFFFFu, pb, jj);
      const float* vr = s_v + jj * D + lane;
#pragma unroll
      for (int e = 0; e < kMaxPer; ++e) {
        if (e < per) {
          const float v = vr[kWarp * e];
          acc_a[e] += pja * v;
          acc_b[e] += pjb * v;
        }
      }
    }
  }
  if (!busy) return;
  for (int k = 0; k < 2; ++k) {  // warp-uniform: query a, then b when it exists
    const int t = k == 0 ? ta : tb;
    if (t >= n_tokens) break;
    const float inv = 1.0f / (k == 0 ? la : lb);
    const int64_t row = static_cast<int64_t>(t) * n_head * D + h * D;
#pragma unroll
    for (int e = 0; e < kMaxPer; ++e) {
      if (e >= per) break;
      const float o = (k == 0 ? acc_a[e] : acc_b[e]) * inv;
      out[row + kWarp * e + lane] = o;
      if (out_q != nullptr) {
        store_q8_group(o, out_q + row + kWarp * e, out_d + (row + kWarp * e) / 32);
      }
    }
  }
}

// One thread per value; 256-thread blocks start at multiples of 256, so each warp holds one
// group of 32 for the optional 8-bit output (q rows at q + t * n, scales at d + t * n / 32).
__global__ void gated_activation_kernel(float* gate, int64_t ld_gate, const float* up,
                                        int64_t ld_up, int n, bool gelu, int8_t* q, float* d) {
  pdl_launch_dependents();
  pdl_wait();
  const int t = blockIdx.y;
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;  // n % 32 == 0 when q is set: whole warps return together
  float* g = gate + t * ld_gate + i;
  const float v = gate_activation(*g, gelu) * up[t * ld_up + i];
  *g = v;
  if (q != nullptr) {
    const int64_t at = static_cast<int64_t>(t) * n + i;
    store_q8_group(v, q + at - threadIdx.x % kWarp, d + at / 32);
  }
}

constexpr int kArgmaxThreads = 1024;

__global__ void argmax_kernel(const float* __restrict__ x, int n, int* out) {
  pdl_launch_dependents();
  pdl_wait();
  __shared__ float s_val[kArgmaxThreads / kWarp];
  __shared__ int s_idx[kArgmaxThreads / kWarp];
  float best = -INFINITY;
  int idx = n;  // larger than any index: loses every tie
  for (int i = threadIdx.x; i < n; i += kArgmaxThreads) {
    if (x[i] > best) best = x[i], idx = i;  // increasing i: keeps the first of equal values
  }
  for (int o = kWarp / 2; o > 0; o >>= 1) {
    const float ob = __shfl_xor_sync(0xFFFFFFFFu, best, o);
    const int oi = __shfl_xor_sync(0xFFFFFFFFu, idx, o);
    if (ob > best || (ob == best && oi < idx)) best = ob, idx = oi;
  }
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  if (lane == 0) s_val[warp] = best, s_idx[warp] = idx;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kArgmaxThreads / kWarp; ++w) {
      if (s_val[w] > best || (s_val[w] == best && s_idx[w] < idx)) best = s_val[w], idx = s_idx[w];
    }
    *out = idx < n ? idx : 0;
  }
}

__global__ void read_kernel(const uint4* __restrict__ p, size_t n, unsigned* sink) {
  unsigned acc = 0;
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const uint4 v = __ldcs(p + i);  // streaming: the roofline of reading weights once
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x9E3779B9u) *sink = acc;  // practically never stored, but the loads must happen
}

}  // namespace

void rms_norm(const float* x, const float* weight, int n_tokens, int n, float eps, float* out,
              cudaStream_t stream, int8_t* q, float* d) {
  launch(rms_norm_kernel, dim3(n_tokens), dim3(kNormThreads), stream, x, weight, n, eps, out, q, d);
}

void rope_and_store(const RopeArgs& a, int n_tokens, cudaStream_t stream) {
  with_kv_type(a.cache.type, [&](auto t) {
    launch(rope_store_kernel<decltype(t)>, dim3(n_tokens), dim3(256), stream, a);
  });
}

namespace {
// Prefill attention through attention_tiled_kernel unless SQUISH_CUDA_ATTN_TILED=0 (H100, pp512
// of Llama-3-8B: 15,394 vs 9,512 tok/s Q4_K_M); tests switch it with set_attention_options.
bool attention_tiled_from_env() {
  return env_int_in("SQUISH_CUDA_ATTN_TILED", 0, 1, 1) != 0;
}
bool g_attention_tiled = attention_tiled_from_env();
// Decode attention by kv head in clusters (attention_decode.cu) unless SQUISH_CUDA_ATTN_GROUP=0
// (the kernels of one block per q head, split over 256-key chunks past one).
bool attention_group_from_env() {
  return env_int_in("SQUISH_CUDA_ATTN_GROUP", 0, 1, 1) != 0;
}
bool g_attention_group = attention_group_from_env();
}  // namespace

void attention(const float* q, int64_t ldq, const KvCache& cache, int n_head, int n_head_kv,
               int head_dim, const int* pos0, int n_tokens, float* out, cudaStream_t stream,
               int8_t* out_q, float* out_d, const RopeArgs* rope, const AttentionSplit* split) {
  // One token: the 256-key chunks the grid covers (the chunks holding keys, else every chunk).
  const int chunks = split == nullptr         ? 1
                     : split->grid_chunks > 0 ? split->grid_chunks
                                              : split->n_splits;
  if (n_tokens == 1 && g_attention_group &&
      attend::attention_group(q, cache, n_head, n_head_kv, head_dim, pos0, out, stream, out_q,
                              out_d, rope, chunks)) {
    return;
  }
  RopeArgs r = {};
  if (rope != nullptr) r = *rope;
  // One token has one block per head (32 of the H100's 132 SMs for Llama-3-8B): more warps per
  // block take more keys per trip through the cache (SQUISH_CUDA_ATTN_WARPS=8|16|32, read once).
  static const int decode_warps = env_one_of("SQUISH_CUDA_ATTN_WARPS", {8, 16, 32}, 16);
  const AttentionSplit none = {};
  // Warps per block of the split kernel (n_head blocks per chunk of keys): 16 with 4 registers a
  // lane (H100, tg64 at 4,096 tokens of Llama-3-8B Q4_K_M: 298.1 against 249.2 tok/s for 8; equal
  // at tg128), 8 with 8 registers a lane (80 registers: 3 blocks per SM, where 16 warps
  // fit one; 203.9 against 186.0 tok/s). SQUISH_CUDA_ATTN_SPLIT_WARPS=8|16 (read once) sets it.
  static const int split_warps_env = env_one_of("SQUISH_CUDA_ATTN_SPLIT_WARPS", {8, 16}, 0);
  // Heads of at most 128 dimensions take the kernels with 4 registers per lane (8 keys a trip);
  // SQUISH_CUDA_ATTN_PER8=1 (read once) keeps the 8-register ones (4 keys a trip) for measuring.
  static const bool force_per8 = env_int_in("SQUISH_CUDA_ATTN_PER8", 1, 1, 0) == 1;
  const bool per4 = head_dim <= 4 * kWarp && !force_per8;
  const int split_warps = split_warps_env != 0 ? split_warps_env : per4 ? 16 : 8;
  with_kv_type(cache.type, [&](auto t) {  // KvT: the cache's element type
    using KvT = decltype(t);
    KvT* k_cache = static_cast<KvT*>(cache.k);
    KvT* v_cache = static_cast<KvT*>(cache.v);
    auto go = [&](auto kernel, int warps, unsigned blocks_y) {
      launch(kernel, dim3(n_head, blocks_y), dim3(kWarp * warps), stream, q, ldq, k_cache, v_cache,
             n_head, n_head_kv, head_dim, pos0, out, out_q, out_d, r, rope != nullptr ? 1 : 0,
             split != nullptr ? *split : none);
    };
    // k4, k8: one kernel's kPer = 4 and 8 instantiations.
    auto go_per = [&](auto k4, auto k8, int warps, unsigned blocks_y) {
      if (per4) {
        go(k4, warps, blocks_y);
      } else {
        go(k8, warps, blocks_y);
      }
    };
    if (n_tokens == 1 && split != nullptr) {
      const auto blocks_y = static_cast<unsigned>(chunks);
      if (split_warps == 16) {
        return go_per(attention_kernel<16, true, 4, KvT>, attention_kernel<16, true, 8, KvT>, 16,
                      blocks_y);
      }
      return go_per(attention_kernel<8, true, 4, KvT>, attention_kernel<8, true, 8, KvT>, 8,
                    blocks_y);
    }
    if (n_tokens > 1 && rope == nullptr && g_attention_tiled && head_dim <= kTileMaxDim) {
      detail::launch_smem(attention_tiled_kernel<KvT>,
                          dim3(n_head, (n_tokens + kTileQueries - 1) / kTileQueries),
                          dim3(kWarp * kTileWarps), attention_tiled_smem(head_dim), stream, q, ldq,
                          static_cast<const KvT*>(k_cache), static_cast<const KvT*>(v_cache),
                          n_head, n_head_kv, head_dim, pos0, n_tokens, out, out_q, out_d);
      return;
    }
    const int warps = n_tokens == 1 ? decode_warps : 8;
    const auto blocks_y = static_cast<unsigned>(n_tokens);
    if (warps == 32) {
      return go_per(attention_kernel<32, false, 4, KvT>, attention_kernel<32, false, 8, KvT>, 32,
                    blocks_y);
    }
    if (warps == 16) {
      return go_per(attention_kernel<16, false, 4, KvT>, attention_kernel<16, false, 8, KvT>, 16,
                    blocks_y);
    }
    go_per(attention_kernel<8, false, 4, KvT>, attention_kernel<8, false, 8, KvT>, 8, blocks_y);
  });
}

bool prepare_decode_attention(KvType cache, int n_head, int n_head_kv, int head_dim) {
  if (!g_attention_group) return false;
  KvCache c;
  c.type = cache;
  return attend::attention_group(nullptr, c, n_head, n_head_kv, head_dim, nullptr, nullptr, nullptr,
                                 nullptr, nullptr, nullptr, 1, false);
}

void set_attention_options(int tiled_prefill, int group_decode, int group_warps, int group_cluster,
                           int one_block) {
  g_attention_tiled = tiled_prefill >= 0 ? tiled_prefill != 0 : attention_tiled_from_env();
  g_attention_group = group_decode >= 0 ? group_decode != 0 : attention_group_from_env();
  attend::set_group_warps(group_warps);
  attend::set_group_cluster(group_cluster);
  attend::set_group_one_block(one_block);
}

void set_programmatic_launch(bool on) {
  detail::g_programmatic_launch = on;
}

void gated_activation(float* gate, int64_t ld_gate, const float* up, int64_t ld_up, int n_tokens,
                      int n, bool gelu, cudaStream_t stream, int8_t* q, float* d) {
  launch(gated_activation_kernel, dim3((n + 255) / 256, n_tokens), dim3(256), stream, gate, ld_gate,
         up, ld_up, n, gelu, q, d);
}

void argmax(const float* x, int n, int* out, cudaStream_t stream) {
  launch(argmax_kernel, dim3(1), dim3(kArgmaxThreads), stream, x, n, out);
}

void read_buffer(const void* buffer, size_t bytes, unsigned* sink, cudaStream_t stream) {
  read_kernel<<<detail::sm_count() * 8, 512, 0, stream>>>(static_cast<const uint4*>(buffer),
                                                          bytes / 16, sink);
}

}  // namespace squish::cuda
