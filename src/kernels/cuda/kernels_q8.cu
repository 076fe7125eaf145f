// Mat-vec products against activations quantized to 8 bits (kernels.h: matmul_q8). Decode is
// bound by streaming the weights; with F32 activations the unpacking and float multiply-adds of
// 4-bit codes cost more instructions than the H100 can issue at full bandwidth. Here codes stay
// integers: four code bytes times four activation bytes per __dp4a, and scales are applied once
// per 16 or 32 weights. Activations are quantized per 32 elements (d = amax / 127, q =
// round(x / d), as ggml's Q8_0 but with an F32 scale), once per product input.
//
// Weights are regrouped at upload (layout.h: repack_q8): a matrix's code bytes first, then its
// scales, so every lane reads its codes with aligned, coalesced 16-byte loads (GGUF's 34- and
// 210-byte blocks are only 2-byte aligned) and the per-block scales come from one small load
// shared by neighbouring lanes. The per-lane loads and dot products are in q8_items.h (checked on
// the CPU too). Decode runs several rows per warp (the activations are loaded once for all of
// them) with two register buffers of weights in turn (pipeline.h), so each warp keeps two steps,
// kilobytes, in flight.
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "core/env.h"
#include "kernels/cuda/decode_body.cuh"
#include "kernels/cuda/dequant.cuh"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/layout.h"
#include "kernels/cuda/pipeline.h"
#include "kernels/cuda/q8_items.h"
#include "kernels/cuda/schedule.h"

namespace squish::cuda {

namespace {

using detail::launch;
using detail::pdl_launch_dependents;
using detail::pdl_wait;
using detail::sm_count;
using namespace q8;      // View, Q4K, Q6K, Q80, view_of and the per-lane loads
using namespace decode;  // kWarp, kWarps, MvArgs, decode_body and its helpers

constexpr int kRowSplit = 4;  // warps per row for prefill rows of at least kSplitCols columns
constexpr int64_t kSplitCols = 8192;

// kNorm: the block that finishes last normalises the whole output row (the residual stream,
// rows = its width): out = y / rms(y) * weight, written as F32 (norm_out, optional) and 8-bit
// (q, d, optional) for the next product. Saves a kernel and its launch gap per norm.
__device__ void norm_epilogue(const MvArgs& a) {
  __shared__ int s_last;
  __syncthreads();  // this block's outputs are stored
  if (threadIdx.x == 0) {
    __threadfence();
    s_last = atomicAdd(a.counters, 1) == static_cast<int>(gridDim.x) - 1;
  }
  __syncthreads();
  if (!s_last) return;
  __threadfence();
  const int n4 = static_cast<int>(a.rows / 4);
  const float4* y = reinterpret_cast<const float4*>(a.y);
  float ss = 0;
  for (int i = threadIdx.x; i < n4; i += blockDim.x) {
    const float4 v = __ldcg(y + i);
    ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
  }
  const float scale = rsqrtf(block_sum(ss) / a.rows + a.eps);
  const float4* wt = reinterpret_cast<const float4*>(a.norm_weight);
  for (int base = 0; base < n4; base += blockDim.x) {  // uniform trip count: whole warps shuffle
    const int i = base + threadIdx.x;
    const bool ok = i < n4;
    float4 o = make_float4(0, 0, 0, 0);
    if (ok) {
      const float4 v = __ldcg(y + i), w = __ldg(wt + i);
      o = make_float4(v.x * scale * w.x, v.y * scale * w.y, v.z * scale * w.z, v.w * scale * w.w);
      if (a.norm_out != nullptr) reinterpret_cast<float4*>(a.norm_out)[i] = o;
    }
    if (a.q != nullptr) store_q8_octet(o, ok, a.q + 4 * i, a.d + i / 8);
  }
  if (threadIdx.x == 0) a.counters[0] = 0;  // ready for the next product
}

// kSplit warps share a row (prefill's long rows); otherwise each warp takes R rows (decode: the
// activations are loaded once for R rows). Rows past the end are computed on row 0 and dropped,
// so every warp reaches the block's barriers. kMinBlocks > 1 caps the registers so that many
// blocks share an SM (decode is latency-bound: more warps, more loads in flight).
template <class T, int NT, int R, int kSplit, int kEpi, int kMinBlocks>
__global__ void __launch_bounds__(kWarp* kWarps, kMinBlocks) mv_q8_kernel(const MvArgs a) {
  pdl_launch_dependents();
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int part = warp % kSplit;
  const int64_t group = static_cast<int64_t>(blockIdx.x) * (kWarps / kSplit) + warp / kSplit;
  int64_t row[R];
  bool valid[R];
#pragma unroll
  for (int rr = 0; rr < R; ++rr) {
    row[rr] = kEpi == kGate ? group + rr * a.pair : group * R + rr;
    valid[rr] = kEpi == kGate ? group < a.pair : row[rr] < a.rows;
    if (!valid[rr]) row[rr] = 0;
  }
  const int n_items = static_cast<int>(a.v.nb) * T::kItems;
  const int stride = kWarp * kSplit;
  int it = part * kWarp + lane;
  // Weights do not depend on the kernel before: their first loads overlap its tail.
  typename T::Raw buf0[R], buf1[R];    // used in turn (pipeline.h: two_buffer_items)
  auto load = [&](auto b, int item) {  // b: Buffer0 or Buffer1
#pragma unroll
    for (int rr = 0; rr < R; ++rr) {
      if constexpr (decltype(b)::value == 0) {
        buf0[rr] = T::load(a.v, row[rr], item);
      } else {
        buf1[rr] = T::load(a.v, row[rr], item);
      }
    }
  };
  two_buffer_items_preload(it, n_items, load);
  pdl_wait();
  float acc[R][NT];
#pragma unroll
  for (int rr = 0; rr < R; ++rr) {
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[rr][t] = 0.0f;
  }
  const int64_t ldq = a.cols, ldd = a.cols / 32;
  auto math_of = [&](const typename T::Raw(&cur)[R], int item) {
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const typename T::Act x = T::load_act(a.xq + t * ldq, a.xd + t * ldd, item);
#pragma unroll
      for (int rr = 0; rr < R; ++rr) acc[rr][t] += T::dot(cur[rr], x, item);
    }
  };
  two_buffer_items(it, n_items, stride, load, [&](auto b, int item) {
    if constexpr (decltype(b)::value == 0) {
      math_of(buf0, item);
    } else {
      math_of(buf1, item);
    }
  });
  __shared__ float partial[kWarps][R][NT];
#pragma unroll
  for (int rr = 0; rr < R; ++rr) {
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      acc[rr][t] = warp_sum(acc[rr][t]);
      if (kSplit > 1 && lane == 0) partial[warp][rr][t] = acc[rr][t];
    }
  }
  if (kSplit > 1) __syncthreads();
  if (kEpi == kGate) {
    if (valid[0]) gate_epilogue(a, group, acc[0][0], acc[R - 1][0]);
    return;
  }
  if (part == 0 && lane == 0) {
#pragma unroll
    for (int rr = 0; rr < R; ++rr) {
      if (!valid[rr]) continue;
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        float s = acc[rr][t];
        for (int k = 1; k < kSplit; ++k) s += partial[warp + k][rr][t];
        float* out = a.y + t * a.ldy + row[rr];
        *out = a.accumulate ? *out + s : s;
      }
    }
  }
  if (kEpi == kNorm) norm_epilogue(a);
}

template <class T, int NT, int R, int kSplit, int kEpi, int kMinBlocks = 1>
void launch_mv(const MvArgs& a, int64_t groups, cudaStream_t stream) {
  constexpr int kGroupsPerBlock = kWarps / kSplit;
  const unsigned blocks = static_cast<unsigned>((groups + kGroupsPerBlock - 1) / kGroupsPerBlock);
  launch(mv_q8_kernel<T, NT, R, kSplit, kEpi, kMinBlocks>, dim3(blocks), dim3(kWarp * kWarps),
         stream, a);
}

// kW: warps per block; past kWarps, one block per SM of kW warps (big_blocks below).
template <class T, int R, int kMinBlocks, int kIn, bool kGateOut = false, int kW = kWarps>
__global__ void __launch_bounds__(kWarp* kW, kW == kWarps ? kMinBlocks : 1)
    mv_q8_decode_kernel(const MvArgs a) {
  decode_body<T, R, kIn, kGateOut, kW>(a, blockIdx.x, gridDim.x);
}

// Two products of one normed input in one launch, of different weight types (a Q4_K_M layer's
// [q | k] in Q4_K and v in Q6_K): the first blocks_a blocks run a, the others b (a block-uniform
// branch, so each part's prologue may use barriers). Saves a launch and a second norm prologue.
template <class TA, class TB, int kMinBlocks, int kW = kWarps>
__global__ void __launch_bounds__(kWarp* kW, kW == kWarps ? kMinBlocks : 1)
    mv_q8_decode_pair_kernel(const MvArgs a, const MvArgs b, unsigned blocks_a) {
  if (blockIdx.x < blocks_a) {
    decode_body<TA, TA::kPersistentRows, kInNorm, false, kW>(a, blockIdx.x, blocks_a);
  } else {
    decode_body<TB, TB::kPersistentRows, kInNorm, false, kW>(b, blockIdx.x - blocks_a,
                                                             gridDim.x - blocks_a);
  }
}

// Test and tuning overrides (set_decode_options); -1 / 0: per type default / occupancy.
int g_decode_variant = -1;
int g_decode_max_blocks = 0;
int g_big_blocks = -1;

// A persistent grid as large as the SMs hold at once, shrunk so that every warp gets the same
// number of row groups (up to one): ceil(groups / q) warps for q groups per warp.
template <class Kernel>
int64_t persistent_blocks(Kernel kernel, size_t smem, int warps_per_block = kWarps) {
  int per_sm = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kWarp * warps_per_block,
                                                    smem) != cudaSuccess ||
      per_sm < 1)
    per_sm = 1;
  // SQUISH_CUDA_GRID: at most this many blocks per SM
  static const int env_per_sm = env_int_in("SQUISH_CUDA_GRID", 1, 64, 0);
  if (env_per_sm > 0) per_sm = std::min(per_sm, env_per_sm);
  int64_t max_blocks = static_cast<int64_t>(per_sm) * sm_count();
  if (g_decode_max_blocks > 0) max_blocks = std::min<int64_t>(max_blocks, g_decode_max_blocks);
  return max_blocks;
}

// Blocks (at most max_blocks) of kW warps for `groups` row groups (schedule.h).
int64_t balanced_blocks(int64_t groups, int64_t max_blocks, int kW = kWarps) {
  return cuda::balanced_blocks(groups, max_blocks, kW);
}

template <class T, int R, int kMinBlocks, int kIn, bool kGateOut = false>
void launch_decode(const MvArgs& a, cudaStream_t stream) {
  auto go = [&](auto kw) {
    constexpr int kW = decltype(kw)::value;
    auto kernel = mv_q8_decode_kernel<T, R, kMinBlocks, kIn, kGateOut, kW>;
    const size_t smem = kIn != kInGiven ? input_smem_bytes(a.cols) : 0;
    const int64_t groups = kGateOut ? a.pair : (a.rows + R - 1) / R;
    const int64_t blocks = balanced_blocks(groups, persistent_blocks(kernel, smem, kW), kW);
    detail::launch_smem(kernel, dim3(static_cast<unsigned>(blocks)), dim3(kWarp * kW), smem, stream,
                        a);
  };
  if (big_block_level() >= (kIn != kInGiven ? 1 : 2))
    return go(std::integral_constant<int, kMinBlocks * kWarps>{});
  go(std::integral_constant<int, kWarps>{});
}

// The grid split between the two products by weight bytes (each part then balanced).
template <class TA, class TB>
void launch_decode_pair(const MvArgs& a, const MvArgs& b, cudaStream_t stream) {
  constexpr int kMin = std::min(TA::kPersistentBlocks, TB::kPersistentBlocks);
  auto go = [&](auto kw) {
    constexpr int kW = decltype(kw)::value;
    auto kernel = mv_q8_decode_pair_kernel<TA, TB, kMin, kW>;
    const size_t smem = input_smem_bytes(a.cols);
    const int64_t max_blocks = std::max<int64_t>(2, persistent_blocks(kernel, smem, kW));
    const double bytes_a = static_cast<double>(a.rows) * a.v.nb * TA::kBlockBytes;
    const double bytes_b = static_cast<double>(b.rows) * b.v.nb * TB::kBlockBytes;
    const int64_t max_a = split_blocks(max_blocks, bytes_a, bytes_b);
    const int64_t blocks_a =
        balanced_blocks((a.rows + TA::kPersistentRows - 1) / TA::kPersistentRows, max_a, kW);
    const int64_t blocks_b = balanced_blocks(
        (b.rows + TB::kPersistentRows - 1) / TB::kPersistentRows, max_blocks - max_a, kW);
    detail::launch_smem(kernel, dim3(static_cast<unsigned>(blocks_a + blocks_b)), dim3(kWarp * kW),
                        smem, stream, a, b, static_cast<unsigned>(blocks_a));
  };
  if (big_block_level() >= 1) return go(std::integral_constant<int, kMin * kWarps>{});
  go(std::integral_constant<int, kWarps>{});
}

// One-token kernel variants: 0 two rows per warp, no register cap; 1 two rows with the cap; 2 one
// row per warp with the cap (one launch per 4 warps' rows); 3 two rows per warp on the
// persistent grid, 4 one row per warp on it. Each type has the one measured fastest on the H100
// (kDecodeVariant); SQUISH_CUDA_DECODE (read once) or set_decode_options sets one for all.
template <class T>
int decode_variant() {
  static const int v = env_int_in("SQUISH_CUDA_DECODE", 0, 4, T::kDecodeVariant);
  return g_decode_variant >= 0 ? g_decode_variant : v;
}

template <class T, int NT>
void launch_tokens(const MvArgs& a, cudaStream_t stream) {
  if constexpr (NT == 1) {
    switch (decode_variant<T>()) {
      case 0:
        return launch_mv<T, 1, 2, 1, kPlain>(a, (a.rows + 1) / 2, stream);
      case 1:
        return launch_mv<T, 1, 2, 1, kPlain, T::kDecodeBlocks>(a, (a.rows + 1) / 2, stream);
      case 2:
        return launch_mv<T, 1, 1, 1, kPlain, T::kDecodeBlocks>(a, a.rows, stream);
      case 3:
        return launch_decode<T, 2, T::kPersistentBlocks, kInGiven>(a, stream);
      default:
        return launch_decode<T, 1, T::kDecodeBlocks, kInGiven>(a, stream);
    }
  } else {
    if (a.cols >= kSplitCols) {
      launch_mv<T, NT, 1, kRowSplit, kPlain>(a, a.rows, stream);
    } else {
      launch_mv<T, NT, 1, 1, kPlain>(a, a.rows, stream);
    }
  }
}

template <class T>
void matmul_q8_typed(const void* w, int64_t rows, int64_t cols, const int8_t* xq, const float* xd,
                     int n_tokens, float* y, int64_t ldy, bool accumulate, cudaStream_t stream,
                     const Q8Epilogue* epi) {
  MvArgs a = {};
  a.v = view_of<T>(w, rows, cols);
  a.rows = rows;
  a.cols = cols;
  a.ldy = ldy;
  a.accumulate = accumulate ? 1 : 0;
  if (epi != nullptr && (epi->gate || epi->norm_weight != nullptr)) {
    a.xq = xq;
    a.xd = xd;
    a.y = y;
    a.q = epi->q;
    a.d = epi->d;
    a.counters = epi->counters;
    if (epi->gate) {
      a.pair = rows / 2;
      a.gelu = epi->gelu ? 1 : 0;
      launch_mv<T, 1, 2, 1, kGate, T::kDecodeBlocks>(a, a.pair, stream);
    } else {
      a.norm_weight = epi->norm_weight;
      a.eps = epi->eps;
      a.norm_out = epi->norm_out;
      launch_mv<T, 1, 2, 1, kNorm, T::kDecodeBlocks>(a, (rows + 1) / 2, stream);
    }
    return;
  }
  const int64_t ldd = cols / 32;
  detail::for_token_chunks(n_tokens, [&](auto nt, int t) {
    a.xq = xq + t * cols;
    a.xd = xd + t * ldd;
    a.y = y + t * ldy;
    launch_tokens<T, decltype(nt)::value>(a, stream);
  });
}

// One warp per group of 32: d = amax / 127, q = round(x / d) (zero group: d = 0, q = 0).
__global__ void quantize_q8_kernel(const float* __restrict__ x, int64_t ldx, int64_t cols,
                                   int n_tokens, int8_t* __restrict__ q, float* __restrict__ d) {
  pdl_launch_dependents();
  pdl_wait();
  const int64_t groups = cols / 32;
  const int64_t g = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (g >= groups * n_tokens) return;
  const int64_t t = g / groups, gi = g % groups;
  store_q8_group(x[t * ldx + gi * 32 + lane], q + t * cols + gi * 32, d + t * groups + gi);
}

}  // namespace

void quantize_activations_q8(const float* x, int64_t ldx, int n_tokens, int64_t cols, int8_t* q,
                             float* d, cudaStream_t stream) {
  const int64_t threads = n_tokens * (cols / 32) * kWarp;
  launch(quantize_q8_kernel, dim3(static_cast<unsigned>((threads + 255) / 256)), dim3(256), stream,
         x, ldx, cols, n_tokens, q, d);
}

bool matmul_q8_supported(DType type, int64_t cols) {
  switch (type) {
    case DType::Q8_0:
      return cols % 32 == 0;
    case DType::Q4_0:  // in pairs of blocks (layout.h)
    case DType::Q4_1:
    case DType::Q5_0:
    case DType::Q5_1:
    case DType::IQ4_NL:
      return cols % 64 == 0;
    case DType::Q2_K:
    case DType::Q3_K:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
    case DType::IQ4_XS:
      return cols % 256 == 0;
    default:
      return false;
  }
}

namespace {

// A one-token product's arguments, its input still to be set.
MvArgs one_token_args(const View& v, int64_t rows, int64_t cols, float* y, bool accumulate) {
  MvArgs a = {};
  a.v = v;
  a.rows = rows;
  a.cols = cols;
  a.y = y;
  a.ldy = rows;
  a.accumulate = accumulate ? 1 : 0;
  return a;
}

MvArgs norm_in_args(const View& v, int64_t rows, int64_t cols, const Q8NormIn& in, float* y,
                    bool accumulate) {
  MvArgs a = one_token_args(v, rows, cols, y, accumulate);
  a.norm_x = in.x;
  a.norm_weight = in.weight;
  a.eps = in.eps;
  return a;
}

// The type's one-token kernel (decode_variant: one row a warp, or its persistent rows) with the
// input made by the blocks themselves (kIn).
template <class T, int kIn>
void launch_input_decode(const MvArgs& a, cudaStream_t stream) {
  const int v = decode_variant<T>();
  if (v == 2 || v == 4) {
    launch_decode<T, 1, T::kDecodeBlocks, kIn>(a, stream);
  } else {
    launch_decode<T, 2, T::kPersistentBlocks, kIn>(a, stream);
  }
}

template <class T>
void matmul_q8_norm_in_typed(const void* w, int64_t rows, int64_t cols, const Q8NormIn& in,
                             float* y, bool accumulate, cudaStream_t stream,
                             const Q8Epilogue* gate) {
  MvArgs a = norm_in_args(view_of<T>(w, rows, cols), rows, cols, in, y, accumulate);
  if (gate != nullptr) {  // two rows per warp: a gate row and its up row
    a.pair = rows / 2;
    a.gelu = gate->gelu ? 1 : 0;
    a.q = gate->q;
    a.d = gate->d;
    a.counters = gate->counters;
    // Q8_0 runs one row per warp elsewhere; with two, 8 blocks per SM would spill.
    constexpr int kBlocks = T::kPersistentRows == 2 ? T::kPersistentBlocks : 6;
    launch_decode<T, 2, kBlocks, kInNorm, true>(a, stream);
    return;
  }
  launch_input_decode<T, kInNorm>(a, stream);
}

}  // namespace

void matmul_q8_norm_in(DType type, const void* w, int64_t rows, int64_t cols, const Q8NormIn& in,
                       float* y, bool accumulate, cudaStream_t stream, const Q8Epilogue* gate) {
  with_q8_type(type, [&](auto t) {
    matmul_q8_norm_in_typed<decltype(t)>(w, rows, cols, in, y, accumulate, stream, gate);
  });
}

namespace {

template <class T>
void matmul_q8_gate_in_typed(const void* w, int64_t rows, int64_t cols, const float* gate,
                             const float* up, bool gelu, float* y, bool accumulate,
                             cudaStream_t stream) {
  MvArgs a = one_token_args(view_of<T>(w, rows, cols), rows, cols, y, accumulate);
  a.norm_x = gate;
  a.up_in = up;
  a.gelu = gelu ? 1 : 0;
  launch_input_decode<T, kInGate>(a, stream);
}

}  // namespace

bool matmul_q8_gate_in_supported(DType type, int64_t cols) {
  // The 8-bit input in the block's shared memory within the 48 KB a launch gets unasked.
  return matmul_q8_supported(type, cols) && cols % 32 == 0 && input_smem_bytes(cols) <= 48 * 1024;
}

bool matmul_q8_gate_in(DType type, const void* w, int64_t rows, int64_t cols, const float* gate,
                       const float* up, bool gelu, float* y, bool accumulate, cudaStream_t stream) {
  if (!matmul_q8_gate_in_supported(type, cols)) return false;
  with_q8_type(type, [&](auto t) {
    matmul_q8_gate_in_typed<decltype(t)>(w, rows, cols, gate, up, gelu, y, accumulate, stream);
  });
  return true;
}

namespace {

// with_q8_type for the pairable types only, so that only their pairs are compiled.
template <class F>
void with_q8_pair_type(DType type, F&& f) {
  if (type == DType::Q4_K) f(Q4K{});
  if (type == DType::Q6_K) f(Q6K{});
  if (type == DType::Q8_0) f(Q80{});
}

template <class TA, class TB>
void launch_pair_typed(const Q8Product& pa, const Q8Product& pb, int64_t cols, const Q8NormIn& in,
                       bool accumulate, cudaStream_t stream) {
  launch_decode_pair<TA, TB>(
      norm_in_args(view_of<TA>(pa.w, pa.rows, cols), pa.rows, cols, in, pa.y, accumulate),
      norm_in_args(view_of<TB>(pb.w, pb.rows, cols), pb.rows, cols, in, pb.y, accumulate), stream);
}

}  // namespace

bool matmul_q8_norm_in_pair(const Q8Product& a, const Q8Product& b, int64_t cols,
                            const Q8NormIn& in, bool accumulate, cudaStream_t stream) {
  if (!matmul_q8_supported(a.type, cols) || !matmul_q8_supported(b.type, cols)) return false;
  // Only for two different types (equal ones are one matrix) of a Q4_K_M or Q8_0 file's: each
  // pair is a kernel of its own, and the other mixes' [q | k] and v run as two launches.
  auto pairable = [](DType t) { return t == DType::Q4_K || t == DType::Q6_K || t == DType::Q8_0; };
  if (!pairable(a.type) || !pairable(b.type)) return false;
  bool launched = false;
  with_q8_pair_type(a.type, [&](auto ta) {
    with_q8_pair_type(b.type, [&](auto tb) {
      if constexpr (!std::is_same_v<decltype(ta), decltype(tb)>) {
        launch_pair_typed<decltype(ta), decltype(tb)>(a, b, cols, in, accumulate, stream);
        launched = true;
      }
    });
  });
  return launched;
}

// Which persistent decode kernels run in one block of every warp an SM holds: 1, the default, those
// with the norm prologue, whose 2 x cols x 4 bytes of L2 reads then happen once per SM instead of
// once per 4 warps (H100, Llama-3-8B tg128: Q4_K_M 446.3 against 428.6 tok/s, Q8_0 304.1 against
// 291.3; docs/cuda.md); 2 every one; 0 none. SQUISH_CUDA_BIG_BLOCKS=0|1|2 (read once) or
// set_decode_options sets it.
int big_block_level() {
  static const int env_level = env_int_in("SQUISH_CUDA_BIG_BLOCKS", 0, 2, 1);
  return g_big_blocks >= 0 ? g_big_blocks : env_level;
}

void set_decode_options(int variant, int max_blocks, int big_blocks) {
  g_decode_variant = variant;
  g_decode_max_blocks = max_blocks;
  g_big_blocks = big_blocks;
}

void matmul_q8(DType type, const void* w, int64_t rows, int64_t cols, const int8_t* xq,
               const float* xd, int n_tokens, float* y, int64_t ldy, bool accumulate,
               cudaStream_t stream, const Q8Epilogue* epi) {
  with_q8_type(type, [&](auto t) {
    matmul_q8_typed<decltype(t)>(w, rows, cols, xq, xd, n_tokens, y, ldy, accumulate, stream, epi);
  });
}

// ---- F16 copies of repacked weights for the prefill GEMM (gemm.h: dequantize_q8_f16) ----

namespace {

// One thread per group of 32 weights of rows [row0, row0 + n_rows) (q8_items.h: dequantize_group).
template <class T>
__global__ void dequantize_q8_f16_kernel(View v, int64_t cols, int64_t row0, int64_t n_rows,
                                         __half* out) {
  const int64_t groups_per_row = cols / 32;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n_rows * groups_per_row) return;
  const int64_t r = i / groups_per_row, gi = i % groups_per_row;
  float x[32];
  dequantize_group<T>(v, row0 + r, gi, x);
  dequant::store_f16(x, out + r * cols + gi * 32);
}

template <class T>
void dequantize_q8_f16_typed(const void* w, int64_t rows, int64_t cols, int64_t row0,
                             int64_t n_rows, __half* out, cudaStream_t stream) {
  const int64_t threads = n_rows * (cols / 32);
  dequantize_q8_f16_kernel<T><<<static_cast<unsigned>((threads + 255) / 256), 256, 0, stream>>>(
      view_of<T>(w, rows, cols), cols, row0, n_rows, out);
}

}  // namespace

bool dequantize_q8_f16(DType type, const void* w, int64_t rows, int64_t cols, int64_t row0,
                       int64_t n_rows, __half* out, cudaStream_t stream) {
  return with_q8_type(type, [&](auto t) {
    dequantize_q8_f16_typed<decltype(t)>(w, rows, cols, row0, n_rows, out, stream);
  });
}

}  // namespace squish::cuda
