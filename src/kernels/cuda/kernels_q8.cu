// Mat-vec products against activations quantized to 8 bits (kernels.h: matmul_q8). Decode is
// bound by streaming the weights; with F32 activations the unpacking and float multiply-adds of
// 4-bit codes cost more instructions than the H100 can issue at full bandwidth. Here codes stay
// integers: four code bytes times four activation bytes per __dp4a, and scales are applied once
// per 16 or 32 weights. Activations are quantized per 32 elements (d = amax / 127, q =
// round(x / d), as ggml's Q8_0 but with an F32 scale), once per product input.
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/cuda/kernels.h"

namespace squish::cuda {

namespace {

constexpr int kWarp = 32;
constexpr int kRowsPerBlock = 4;
constexpr int kRowSplit = 4;  // warps per row for rows of at least kSplitCols columns
constexpr int64_t kSplitCols = 8192;

__device__ __forceinline__ float h2f(uint16_t u) {
  return __half2float(__ushort_as_half(u));
}
__device__ __forceinline__ uint16_t ld16(const uint8_t* p) {
  return *reinterpret_cast<const uint16_t*>(p);
}
__device__ __forceinline__ int ld32_a2(const uint8_t* p) {
  return static_cast<int>(ld16(p) | (static_cast<uint32_t>(ld16(p + 2)) << 16));
}
__device__ __forceinline__ int4 ldq16(const int8_t* p) {
  return __ldg(reinterpret_cast<const int4*>(p));
}
__device__ __forceinline__ int ldq4(const int8_t* p) {
  return __ldg(reinterpret_cast<const int*>(p));
}

// One warp per group of 32: d = amax / 127, q = round(x / d) (zero group: d = 0, q = 0).
__global__ void quantize_q8_kernel(const float* __restrict__ x, int64_t ldx, int64_t cols,
                                   int n_tokens, int8_t* __restrict__ q, float* __restrict__ d) {
  const int64_t groups = cols / 32;
  const int64_t g = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (g >= groups * n_tokens) return;
  const int64_t t = g / groups, gi = g % groups;
  const float v = x[t * ldx + gi * 32 + lane];
  float amax = fabsf(v);
#pragma unroll
  for (int o = kWarp / 2; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xFFFFFFFFu, amax, o));
  const float dd = amax / 127.0f;
  const float id = dd != 0.0f ? 1.0f / dd : 0.0f;
  q[t * cols + gi * 32 + lane] = static_cast<int8_t>(roundf(v * id));
  if (lane == 0) d[t * groups + gi] = dd;
}

// Item types as in kernels.cu (one lane per item); xq points at the block's first column of
// token 0's quantized row, xd at its first group scale; rows of tokens at xq + t * ldq and
// xd + t * ldd.
__device__ __forceinline__ void scale_min_k4(int j, const uint8_t* q, float& sc, float& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

struct Q8TypeQ4_K {  // item: 16 code bytes = 16 weights of sub-block 2j and 16 of 2j + 1
  static constexpr int kElems = 256, kBytes = 144, kItems = 8;
  template <int NT>
  __device__ static void dot(const uint8_t* b, int sub, const int8_t* xq, int64_t ldq,
                             const float* xd, int64_t ldd, float* acc) {
    const uint32_t dm = *reinterpret_cast<const uint32_t*>(b);
    const float d = h2f(dm & 0xFFFF), dmin = h2f(dm >> 16);
    const int j = sub >> 1, l0 = (sub & 1) * 16;
    float sc0, m0, sc1, m1;
    scale_min_k4(2 * j, b + 4, sc0, m0);
    scale_min_k4(2 * j + 1, b + 4, sc1, m1);
    const int4 qraw = *reinterpret_cast<const int4*>(b + 16 + j * 32 + l0);
    const int qs[4] = {qraw.x, qraw.y, qraw.z, qraw.w};
    int lo[4], hi[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      lo[k] = qs[k] & 0x0F0F0F0F;
      hi[k] = (qs[k] >> 4) & 0x0F0F0F0F;
    }
    const float d0 = d * sc0, d1 = d * sc1, m0d = dmin * m0, m1d = dmin * m1;
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const int4 a = ldq16(xq + t * ldq + j * 64 + l0);
      const int4 c = ldq16(xq + t * ldq + j * 64 + 32 + l0);
      const int xa[4] = {a.x, a.y, a.z, a.w}, xc[4] = {c.x, c.y, c.z, c.w};
      int sl = 0, sh = 0, xl = 0, xh = 0;
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        sl = __dp4a(lo[k], xa[k], sl);
        sh = __dp4a(hi[k], xc[k], sh);
        xl = __dp4a(0x01010101, xa[k], xl);
        xh = __dp4a(0x01010101, xc[k], xh);
      }
      const float* dt = xd + t * ldd + 2 * j;
      acc[t] += dt[0] * (d0 * sl - m0d * xl) + dt[1] * (d1 * sh - m1d * xh);
    }
  }
};

struct Q8TypeQ6_K {  // item: 4 consecutive l of one half, in its four 32-element quarters
  static constexpr int kElems = 256, kBytes = 210, kItems = 16;
  template <int NT>
  __device__ static void dot(const uint8_t* b, int sub, const int8_t* xq, int64_t ldq,
                             const float* xd, int64_t ldd, float* acc) {
    const int n = sub >> 3, l0 = (sub & 7) * 4, is = l0 / 16;
    const uint8_t* ql = b + n * 64;
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192 + n * 8);
    const float d = h2f(ld16(b + 208));
    const int qa = ld32_a2(ql + l0), qb = ld32_a2(ql + l0 + 32);
    const int hh = ld32_a2(b + 128 + n * 32 + l0);
    // Codes 0..63 with the bias of 32 removed per byte: -32..31 as signed bytes.
    const int w0 = __vsubss4((qa & 0x0F0F0F0F) | ((hh << 4) & 0x30303030), 0x20202020);
    const int w1 = __vsubss4((qb & 0x0F0F0F0F) | ((hh << 2) & 0x30303030), 0x20202020);
    const int w2 = __vsubss4(((qa >> 4) & 0x0F0F0F0F) | (hh & 0x30303030), 0x20202020);
    const int w3 = __vsubss4(((qb >> 4) & 0x0F0F0F0F) | ((hh >> 2) & 0x30303030), 0x20202020);
    const float s0 = d * sc[is], s1 = d * sc[is + 2], s2 = d * sc[is + 4], s3 = d * sc[is + 6];
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const int8_t* x = xq + t * ldq + n * 128 + l0;
      const float* dt = xd + t * ldd + n * 4;
      acc[t] += s0 * dt[0] * __dp4a(w0, ldq4(x), 0) + s1 * dt[1] * __dp4a(w1, ldq4(x + 32), 0) +
                s2 * dt[2] * __dp4a(w2, ldq4(x + 64), 0) + s3 * dt[3] * __dp4a(w3, ldq4(x + 96), 0);
    }
  }
};

struct Q8TypeQ8_0 {  // item: half a block (16 weights)
  static constexpr int kElems = 32, kBytes = 34, kItems = 2;
  template <int NT>
  __device__ static void dot(const uint8_t* b, int sub, const int8_t* xq, int64_t ldq,
                             const float* xd, int64_t ldd, float* acc) {
    const float d = h2f(ld16(b));
    const uint8_t* q = b + 2 + 16 * sub;
    const int w0 = ld32_a2(q), w1 = ld32_a2(q + 4), w2 = ld32_a2(q + 8), w3 = ld32_a2(q + 12);
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const int4 a = ldq16(xq + t * ldq + 16 * sub);
      int s = __dp4a(w0, a.x, 0);
      s = __dp4a(w1, a.y, s);
      s = __dp4a(w2, a.z, s);
      s = __dp4a(w3, a.w, s);
      acc[t] += d * xd[t * ldd] * s;
    }
  }
};

// kSplit warps share a row (long rows, e.g. the FFN down projection's 14336 columns): more loads
// in flight per row and more warps for matrices with few rows; their sums meet in shared memory.
template <class T, int NT, int kSplit>
__global__ void __launch_bounds__(kWarp* kRowsPerBlock)
    matvec_q8_kernel(const uint8_t* __restrict__ w, int64_t rows, int64_t cols, size_t row_bytes,
                     const int8_t* __restrict__ xq, const float* __restrict__ xd, float* y,
                     int64_t ldy, int accumulate) {
  constexpr int kRows = kRowsPerBlock / kSplit;
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int part = warp % kSplit;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kRows + warp / kSplit;
  const bool valid = r < rows;  // no early return: the block meets at a barrier below
  const uint8_t* wr = w + (valid ? r : 0) * row_bytes;
  const int n_items = valid ? static_cast<int>(cols / T::kElems) * T::kItems : 0;
  const int64_t ldd = cols / 32;
  float acc[NT];
#pragma unroll
  for (int t = 0; t < NT; ++t) acc[t] = 0.0f;
#pragma unroll 4
  for (int it = part * kWarp + lane; it < n_items; it += kWarp * kSplit) {
    const int blk = it / T::kItems, sub = it % T::kItems;
    T::template dot<NT>(wr + static_cast<size_t>(blk) * T::kBytes, sub,
                        xq + static_cast<int64_t>(blk) * T::kElems, cols,
                        xd + static_cast<int64_t>(blk) * (T::kElems / 32), ldd, acc);
  }
  __shared__ float partial[kRowsPerBlock][NT];
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    float s = acc[t];
#pragma unroll
    for (int o = kWarp / 2; o > 0; o >>= 1) s += __shfl_xor_sync(0xFFFFFFFFu, s, o);
    acc[t] = s;
    if (kSplit > 1 && lane == 0) partial[warp][t] = s;
  }
  if (kSplit > 1) __syncthreads();
  if (!valid || part != 0 || lane != 0) return;
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    float s = acc[t];
    for (int k = 1; k < kSplit; ++k) s += partial[warp + k][t];
    float* out = y + t * ldy + r;
    *out = accumulate ? *out + s : s;
  }
}

template <class T, int NT>
void launch(const void* w, int64_t rows, int64_t cols, const int8_t* xq, const float* xd, float* y,
            int64_t ldy, bool accumulate, cudaStream_t stream) {
  const size_t row_bytes = static_cast<size_t>(cols / T::kElems) * T::kBytes;
  const uint8_t* wb = static_cast<const uint8_t*>(w);
  const int acc = accumulate ? 1 : 0;
  // Decode measured faster with one warp per row (more rows in flight); prefill (NT > 1, more
  // work per weight) with the split.
  if (NT > 1 && cols >= kSplitCols) {
    constexpr int kRows = kRowsPerBlock / kRowSplit;
    const unsigned blocks = static_cast<unsigned>((rows + kRows - 1) / kRows);
    matvec_q8_kernel<T, NT, kRowSplit><<<blocks, kWarp * kRowsPerBlock, 0, stream>>>(
        wb, rows, cols, row_bytes, xq, xd, y, ldy, acc);
  } else {
    const unsigned blocks = static_cast<unsigned>((rows + kRowsPerBlock - 1) / kRowsPerBlock);
    matvec_q8_kernel<T, NT, 1><<<blocks, kWarp * kRowsPerBlock, 0, stream>>>(
        wb, rows, cols, row_bytes, xq, xd, y, ldy, acc);
  }
}

template <class T>
void matmul_q8_typed(const void* w, int64_t rows, int64_t cols, const int8_t* xq, const float* xd,
                     int n_tokens, float* y, int64_t ldy, bool accumulate, cudaStream_t stream) {
  const int64_t ldd = cols / 32;
  for (int t = 0; t < n_tokens;) {
    const int left = n_tokens - t;
    const int8_t* q = xq + t * cols;
    const float* d = xd + t * ldd;
    float* yt = y + t * ldy;
    if (left >= 8) {
      launch<T, 8>(w, rows, cols, q, d, yt, ldy, accumulate, stream);
      t += 8;
    } else if (left >= 4) {
      launch<T, 4>(w, rows, cols, q, d, yt, ldy, accumulate, stream);
      t += 4;
    } else if (left >= 2) {
      launch<T, 2>(w, rows, cols, q, d, yt, ldy, accumulate, stream);
      t += 2;
    } else {
      launch<T, 1>(w, rows, cols, q, d, yt, ldy, accumulate, stream);
      t += 1;
    }
  }
}

}  // namespace

void quantize_activations_q8(const float* x, int64_t ldx, int n_tokens, int64_t cols, int8_t* q,
                             float* d, cudaStream_t stream) {
  const int64_t threads = n_tokens * (cols / 32) * kWarp;
  quantize_q8_kernel<<<static_cast<unsigned>((threads + 255) / 256), 256, 0, stream>>>(
      x, ldx, cols, n_tokens, q, d);
}

bool matmul_q8_supported(DType type, int64_t cols) {
  switch (type) {
    case DType::Q8_0:
      return cols % 32 == 0;
    case DType::Q4_K:
    case DType::Q6_K:
      return cols % 256 == 0;
    default:
      return false;
  }
}

void matmul_q8(DType type, const void* w, int64_t rows, int64_t cols, const int8_t* xq,
               const float* xd, int n_tokens, float* y, int64_t ldy, bool accumulate,
               cudaStream_t stream) {
  switch (type) {
    case DType::Q4_K:
      return matmul_q8_typed<Q8TypeQ4_K>(w, rows, cols, xq, xd, n_tokens, y, ldy, accumulate,
                                         stream);
    case DType::Q6_K:
      return matmul_q8_typed<Q8TypeQ6_K>(w, rows, cols, xq, xd, n_tokens, y, ldy, accumulate,
                                         stream);
    case DType::Q8_0:
      return matmul_q8_typed<Q8TypeQ8_0>(w, rows, cols, xq, xd, n_tokens, y, ldy, accumulate,
                                         stream);
    default:
      return;  // rejected by matmul_q8_supported
  }
}

}  // namespace squish::cuda
