// The one-token mat-vec body of the persistent decode kernels (kernels_q8.cu): a warp's walk over
// its row groups with two steps of weights in flight, the optional RMSNorm prologue and gating
// epilogue, and their helpers. Device code only.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/pipeline.h"
#include "kernels/cuda/q8_items.h"
#include "kernels/cuda/quantize.cuh"

namespace squish::cuda::decode {

using namespace q8;  // View, Q4K, Q6K, Q80 and the per-lane loads
using detail::pdl_launch_dependents;
using detail::pdl_wait;

inline constexpr int kWarp = 32;
inline constexpr int kWarps = 4;  // warps per thread block
inline constexpr unsigned kFull = 0xFFFFFFFFu;

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = kWarp / 2; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}
// The sums of a and of b over the warp in one butterfly: lanes 0-15 get a's, lanes 16-31 b's
// (5 shuffles where two warp_sums take 10; a two-row warp ends each row group with it).
__device__ __forceinline__ float warp_sum_pair(float a, float b) {
  const bool low = (threadIdx.x & 16) == 0;
  float v = (low ? a : b) + __shfl_xor_sync(kFull, low ? b : a, 16);
#pragma unroll
  for (int o = kWarp / 4; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}
// The sum of v over the whole block, returned to every thread. It has a barrier, so every
// thread must call it; its shared slots are reused, so two calls need a barrier in between.
// kW: the block's warps.
template <int kW = kWarps>
__device__ __forceinline__ float block_sum(float v) {
  __shared__ float s_part[kW];
  v = warp_sum(v);
  if (threadIdx.x % kWarp == 0) s_part[threadIdx.x / kWarp] = v;
  __syncthreads();
  float total = 0;
#pragma unroll
  for (int w = 0; w < kW; ++w) total += s_part[w];
  return total;
}

enum Epilogue { kPlain, kNorm, kGate };

struct MvArgs {
  View v;
  int64_t rows, cols;
  const int8_t* xq;
  const float* xd;
  float* y;
  int64_t ldy;
  int accumulate;
  // Epilogues (one token): kGate reads rows i and i + pair per warp (pair = rows / 2).
  int64_t pair;
  const float* norm_weight;  // kNorm epilogue, or the decode kernel's norm prologue
  const float* norm_x;       // the decode kernel's norm prologue: its F32 input row; the gating
                             // prologue: the gate row
  const float* up_in;        // the gating prologue: the up row
  float eps;
  float* norm_out;
  int8_t* q;
  float* d;
  int* counters;
  int gelu;
};

// What a decode body's blocks make their input from: the 8-bit input as given (kInGiven), RMSNorm
// of an F32 row (kInNorm), or the gating act(gate) * up of two F32 rows (kInGate).
constexpr int kInGiven = 0, kInNorm = 1, kInGate = 2;

// Dynamic shared memory of a decode body that makes its input: the input's cols codes, then
// its cols / 32 F32 scales.
__host__ __device__ constexpr size_t input_smem_bytes(int64_t cols) {
  return static_cast<size_t>(cols) + static_cast<size_t>(cols / 32) * 4;
}

// The 8-bit form of 32 values held 4 per lane by 8 consecutive lanes (an aligned octet of the
// warp): as quantize_activations_q8 makes it. Every lane of the warp calls it.
__device__ __forceinline__ void store_q8_octet(float4 v, bool ok, int8_t* q, float* d) {
  float amax = fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w)));
  amax = fmaxf(amax, __shfl_xor_sync(kFull, amax, 1));
  amax = fmaxf(amax, __shfl_xor_sync(kFull, amax, 2));
  amax = fmaxf(amax, __shfl_xor_sync(kFull, amax, 4));
  const float dd = amax / 127.0f;
  const float id = dd != 0.0f ? 1.0f / dd : 0.0f;
  if (!ok) return;
  char4 c;
  c.x = static_cast<signed char>(roundf(v.x * id));
  c.y = static_cast<signed char>(roundf(v.y * id));
  c.z = static_cast<signed char>(roundf(v.z * id));
  c.w = static_cast<signed char>(roundf(v.w * id));
  *reinterpret_cast<char4*>(q) = c;
  if ((threadIdx.x & 7) == 0) *d = dd;
}

// kGate: warp `i` holds gate_i and up_i; y[i] = act(gate_i) * up_i. The warp completing a group
// of 32 outputs (counted in counters[1 + i / 32]) writes the group's 8-bit form.
__device__ inline void gate_epilogue(const MvArgs& a, int64_t i, float g, float u) {
  const int lane = threadIdx.x % kWarp;
  int done = 0;
  if (lane == 0) {
    a.y[i] = gate_activation(g, a.gelu != 0) * u;
    if (a.q != nullptr) {
      __threadfence();
      done = atomicAdd(a.counters + 1 + i / 32, 1) == 31;
    }
  }
  done = __shfl_sync(kFull, done, 0);
  if (!done) return;
  __threadfence();
  const int64_t g0 = i / 32 * 32;
  store_q8_group(__ldcg(a.y + g0 + lane), a.q + g0, a.d + g0 / 32);
  if (lane == 0) a.counters[1 + i / 32] = 0;
}

// A block's prologue making its 8-bit input of cols values (a multiple of 32) into shared memory
// s (the codes, then the cols / 32 scales): float4 i of the input is make(load(i)), kChunk
// float4s a thread loaded at once (one L2 round trip per chunk), quantized per 32 as
// quantize_activations_q8 does (load(i): a Float4Pair). The caller's barrier makes the result
// visible to the block.
struct Float4Pair {
  float4 a, b;
};
template <int kChunk, int kW, class Load, class Make>
__device__ __forceinline__ void make_input_q8(int64_t cols, int4* s, Load load, Make make) {
  int8_t* sq = reinterpret_cast<int8_t*>(s);
  float* sd = reinterpret_cast<float*>(sq + cols);
  const int n4 = static_cast<int>(cols / 4);
  for (int base = 0; base < n4; base += kChunk * kWarp * kW) {  // uniform trip count
    float4 av[kChunk], bv[kChunk];
#pragma unroll
    for (int c = 0; c < kChunk; ++c) {
      const int i = base + c * kWarp * kW + threadIdx.x;
      av[c] = bv[c] = make_float4(0, 0, 0, 0);
      if (i < n4) {
        const Float4Pair p = load(i);
        av[c] = p.a;
        bv[c] = p.b;
      }
    }
#pragma unroll
    for (int c = 0; c < kChunk; ++c) {
      const int i = base + c * kWarp * kW + threadIdx.x;
      store_q8_octet(make(av[c], bv[c]), i < n4, sq + 4 * i, sd + i / 8);
    }
  }
}

// Decode (one token) on a persistent grid: warp w of W takes row groups w, w + W, ... and walks
// the flat sequence of (group, step) pairs, loading two steps ahead of its math also across row
// boundaries, so a warp's loads never drain between rows and no block is launched after the
// first wave (the per-row kernel above ends each warp after a 4096-column row's 2-4 steps).
// With kGateOut (R = 2) group g is rows g and g + a.pair of [gate | up], and the warp ends it
// with gate_epilogue: y[g] = act(gate_g) * up_g and its 8-bit form (saves the gating kernel). With
// kNormIn the block first computes the input itself: RMSNorm of the F32 row a.norm_x (L2-resident,
// a.cols floats) times a.norm_weight, quantized to 8 bits into shared memory, where every warp of
// the block reads its activations (saves the norm kernel and its launch gap; each block recomputes
// the 16 KB norm, which costs less than a dependent launch). block / n_blocks: this block's index
// among the n_blocks that share the product (all of the grid, or its part in
// mv_q8_decode_pair_kernel).
//
// kIn == kInGate (SQUISH_CUDA_FUSE bit 32, opt-in until measured): the block makes the down
// product's input itself, act(a.norm_x) * a.up_in quantized to 8 bits into shared memory, as the
// gating kernel would (the same bits), from 2 x cols floats of L2-resident rows.
//
// kW: warps per block. A block of every warp an SM holds (kW = blocks per SM x kWarps, one block
// per SM) computes the norm prologue once per SM instead of once per kWarps warps.
template <class T, int R, int kIn, bool kGateOut = false, int kW = kWarps>
__device__ __forceinline__ void decode_body(const MvArgs& a, int64_t block, int64_t n_blocks) {
  static_assert(!kGateOut || R == 2, "the gate epilogue pairs a gate row with an up row");
  constexpr bool kNormIn = kIn == kInNorm;
  // kIn != kInGiven: the input's a.cols codes, then its a.cols / 32 scales
  extern __shared__ int4 s_act[];
  pdl_launch_dependents();
  const int lane = threadIdx.x % kWarp;
  const int64_t warps = n_blocks * kW;
  const int64_t groups = kGateOut ? a.pair : (a.rows + R - 1) / R;
  const int64_t first = block * kW + threadIdx.x / kWarp;
  const int n_items = static_cast<int>(a.v.nb) * T::kItems;
  const int steps = (n_items + kWarp - 1) / kWarp;
  const int64_t total = first < groups ? (groups - first + warps - 1) / warps * steps : 0;
  auto row_of = [&](int64_t group, int rr) {
    if (kGateOut) return group < a.pair ? group + rr * a.pair : a.pair - 1 + rr * a.pair;
    const int64_t r = group * R + rr;
    return r < a.rows ? r : a.rows - 1;  // past the end: a valid row, not stored
  };
  // Steps in the warp's flat sequence of (row group, step) pairs: load_at runs two steps ahead
  // of math_at, in two register buffers (pipeline.h; both loaded before the norm prologue).
  struct Cursor {
    int64_t group;
    int k;
  };
  auto advance = [&](Cursor& c) {
    if (++c.k == steps) {
      c.k = 0;
      c.group += warps;
    }
  };
  auto load_step = [&](const Cursor& c, typename T::Raw(&buf)[R]) {
    const int it = c.k * kWarp + lane;
    if (it < n_items) {
#pragma unroll
      for (int rr = 0; rr < R; ++rr) {
        const int r = static_cast<int>(row_of(c.group, rr));
        buf[rr] = T::load(row_view<T>(a.v, r), 0, it);
      }
    }
  };
  typename T::Raw buf0[R], buf1[R];
  Cursor load_at{first, 0}, math_at{first, 0};
  auto load_next = [&](auto b) {  // b: Buffer0 or Buffer1
    if constexpr (decltype(b)::value == 0) {
      load_step(load_at, buf0);
    } else {
      load_step(load_at, buf1);
    }
    advance(load_at);
  };
  two_buffer_preload(total, load_next);
  pdl_wait();  // after the first steps of weights are loaded
  const int8_t* xq = a.xq;
  const float* xd = a.xd;
  if constexpr (kNormIn) {
    // One pass: every thread loads 4 float4s of x and of the weight at once (one L2 round trip
    // per chunk; a loop of dependent loads cost ~10 us per block on the H200), quantizes x * w
    // per 32 into shared memory, and the block's sum of squares then scales the group scales:
    // q = round(x w / d) is the same for x w and for x w / rms, d = d(x w) / rms.
    const float4* x4 = reinterpret_cast<const float4*>(a.norm_x);
    const float4* wt = reinterpret_cast<const float4*>(a.norm_weight);
    float ss = 0;
    make_input_q8<4, kW>(
        a.cols, s_act,
        [&](int i) {
          return Float4Pair{__ldcg(x4 + i), __ldg(wt + i)};
        },
        [&](float4 v, float4 w) {
          ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
          return make_float4(v.x * w.x, v.y * w.y, v.z * w.z, v.w * w.w);
        });
    // block_sum's barrier also makes every thread's group scales visible to the loop below.
    float* sd = reinterpret_cast<float*>(reinterpret_cast<int8_t*>(s_act) + a.cols);
    const float scale = rsqrtf(block_sum<kW>(ss) / a.cols + a.eps);
    for (int g = threadIdx.x; g < a.cols / 32; g += kWarp * kW) sd[g] *= scale;
    __syncthreads();
  } else if constexpr (kIn == kInGate) {
    // 2 float4s of gate and of up a thread in flight at once, since 4 made the Q4_K and Q8_0
    // kernels spill (nvcc --resource-usage).
    const float4* g4 = reinterpret_cast<const float4*>(a.norm_x);
    const float4* u4 = reinterpret_cast<const float4*>(a.up_in);
    const bool gelu = a.gelu != 0;
    make_input_q8<2, kW>(
        a.cols, s_act,
        [&](int i) {
          return Float4Pair{__ldcg(g4 + i), __ldcg(u4 + i)};
        },
        [&](float4 g, float4 u) {
          return make_float4(gate_activation(g.x, gelu) * u.x, gate_activation(g.y, gelu) * u.y,
                             gate_activation(g.z, gelu) * u.z, gate_activation(g.w, gelu) * u.w);
        });
    __syncthreads();
  }
  if constexpr (kIn != kInGiven) {
    xq = reinterpret_cast<const int8_t*>(s_act);
    xd = reinterpret_cast<const float*>(xq + a.cols);
  }
  float acc[R];
#pragma unroll
  for (int rr = 0; rr < R; ++rr) acc[rr] = 0.0f;
  auto math = [&](const typename T::Raw(&cur)[R]) {
    const int it = math_at.k * kWarp + lane;
    if (it < n_items) {
      const typename T::Act x = T::template load_act<kIn != kInGiven>(xq, xd, it);
#pragma unroll
      for (int rr = 0; rr < R; ++rr) acc[rr] += T::dot(cur[rr], x, it);
    }
    if (math_at.k == steps - 1) {  // the group's last step: warp-uniform, every lane takes part
      auto store = [&](int64_t r, float sum) {
        if (r < a.rows) {
          float* out = a.y + r;
          *out = a.accumulate ? *out + sum : sum;
        }
      };
      if constexpr (R == 2) {  // one butterfly: row 2 group's sum in lane 0, the next row's in 16
        const float sum = warp_sum_pair(acc[0], acc[1]);
        if constexpr (kGateOut) {
          const float u = __shfl_sync(kFull, sum, 16);
          if (math_at.group < a.pair) gate_epilogue(a, math_at.group, sum, u);  // lane 0's g, u
        } else if ((lane & 15) == 0) {
          store(math_at.group * 2 + (lane >> 4), sum);
        }
      } else {
#pragma unroll
        for (int rr = 0; rr < R; ++rr) {
          const float sum = warp_sum(acc[rr]);
          if (lane == 0) store(math_at.group * R + rr, sum);
        }
      }
#pragma unroll
      for (int rr = 0; rr < R; ++rr) acc[rr] = 0.0f;
    }
    advance(math_at);
  };
  two_buffer_steps(total, load_next, [&](auto b) {
    if constexpr (decltype(b)::value == 0) {
      math(buf0);
    } else {
      math(buf1);
    }
  });
}

}  // namespace squish::cuda::decode
