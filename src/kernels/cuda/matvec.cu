// Mat-vec products of GGUF-layout weights against F32 activations (kernels.h: matmul). They
// dequantize in registers: one warp per weight row, each lane takes 16-byte "items" of the row's
// blocks (a Q4_K super-block is 8 items of 32 weights), multiplies them against F32 activations
// read through L1, and the warp reduces at the end. A product over n tokens runs the same kernel
// with 1-8 tokens per pass, so each weight is unpacked once per pass. (Every quantized type has
// faster kernels against 8-bit activations in kernels_q8.cu; these serve F32, F16, BF16, the
// legacy types' rows of an odd count of 32-element blocks, and SQUISH_CUDA_Q8=0.)
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/cuda/dequant.cuh"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/q8_items.h"
#include "quant/blocks.h"

namespace squish::cuda {

namespace {

using detail::launch;
using detail::pdl_launch_dependents;
using detail::pdl_wait;

constexpr int kWarp = 32;
constexpr int kRowsPerBlock = 4;  // warps (rows) per thread block of the mat-vec kernels

__device__ __forceinline__ float h2f(uint16_t u) {
  return __half2float(__ushort_as_half(u));
}
__device__ __forceinline__ uint16_t ld16(const uint8_t* p) {
  return *reinterpret_cast<const uint16_t*>(p);
}
// Four bytes from a 2-byte aligned address (blocks of 34, 22, 210 ... bytes).
__device__ __forceinline__ uint32_t ld32_a2(const uint8_t* p) {
  return ld16(p) | (static_cast<uint32_t>(ld16(p + 2)) << 16);
}
__device__ __forceinline__ float4 ldx4(const float* p) {
  return __ldg(reinterpret_cast<const float4*>(p));
}
__device__ __forceinline__ int byte_of(uint32_t w, int k) {
  return (w >> (8 * k)) & 0xFF;
}

// Each block type: kElems weights in kBytes; kItems items per block; dot<NT>() adds item `sub`
// of block `b` (x points at the block's first column) times NT activation rows to acc.

struct TypeF32 {
  static constexpr int kElems = 4, kBytes = 16, kItems = 1;
  template <int NT>
  __device__ static void dot(const uint8_t* b, int, const float* x, int64_t ldx, float* acc) {
    const float4 w = *reinterpret_cast<const float4*>(b);
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const float4 v = ldx4(x + t * ldx);
      acc[t] += w.x * v.x + w.y * v.y + w.z * v.z + w.w * v.w;
    }
  }
};

template <bool kBF16>
struct TypeHalf {
  static constexpr int kElems = 8, kBytes = 16, kItems = 1;
  template <int NT>
  __device__ static void dot(const uint8_t* b, int, const float* x, int64_t ldx, float* acc) {
    const uint4 raw = *reinterpret_cast<const uint4*>(b);
    const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
    float w[8];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      if (kBF16) {
        w[2 * k] = __uint_as_float(words[k] << 16);
        w[2 * k + 1] = __uint_as_float(words[k] & 0xFFFF0000u);
      } else {
        w[2 * k] = h2f(words[k] & 0xFFFF);
        w[2 * k + 1] = h2f(words[k] >> 16);
      }
    }
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const float4 a = ldx4(x + t * ldx), c = ldx4(x + t * ldx + 4);
      acc[t] += w[0] * a.x + w[1] * a.y + w[2] * a.z + w[3] * a.w + w[4] * c.x + w[5] * c.y +
                w[6] * c.z + w[7] * c.w;
    }
  }
};

// Sum over 8 bytes (two words) of signed int8 codes times 8 activations.
__device__ __forceinline__ float dot8_i8(uint32_t w0, uint32_t w1, float4 a, float4 c) {
  return static_cast<int8_t>(w0) * a.x + static_cast<int8_t>(w0 >> 8) * a.y +
         static_cast<int8_t>(w0 >> 16) * a.z + static_cast<int8_t>(w0 >> 24) * a.w +
         static_cast<int8_t>(w1) * c.x + static_cast<int8_t>(w1 >> 8) * c.y +
         static_cast<int8_t>(w1 >> 16) * c.z + static_cast<int8_t>(w1 >> 24) * c.w;
}

struct TypeQ8_0 {  // 34 bytes: fp16 d, 32 int8; two items of 16
  static constexpr int kElems = 32, kBytes = 34, kItems = 2;
  template <int NT>
  __device__ static void dot(const uint8_t* b, int sub, const float* x, int64_t ldx, float* acc) {
    const float d = h2f(ld16(b));
    const uint8_t* q = b + 2 + 16 * sub;
    uint32_t w[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) w[k] = ld32_a2(q + 4 * k);
    x += 16 * sub;
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const float* xt = x + t * ldx;
      const float s = dot8_i8(w[0], w[1], ldx4(xt), ldx4(xt + 4)) +
                      dot8_i8(w[2], w[3], ldx4(xt + 8), ldx4(xt + 12));
      acc[t] += d * s;
    }
  }
};

// 16 nibble bytes (32 codes: low nibbles are elements 0..15, high 16..31) of the 32-element
// legacy blocks, with optional fifth bits: sum(code * x) and sum(x) for one activation row.
template <bool kFifth>
__device__ __forceinline__ void nibble_sums(const uint32_t* qs, uint32_t qh, const float* x,
                                            float& sum_qx, float& sum_x) {
  float sq = 0, sx = 0;
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const float4 lo = ldx4(x + 4 * k), hi = ldx4(x + 16 + 4 * k);
    const float l[4] = {lo.x, lo.y, lo.z, lo.w}, h[4] = {hi.x, hi.y, hi.z, hi.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int j = 4 * k + i;
      int ql = byte_of(qs[k], i) & 0xF, qhi = byte_of(qs[k], i) >> 4;
      if (kFifth) {
        ql |= ((qh >> j) & 1) << 4;
        qhi |= ((qh >> (j + 16)) & 1) << 4;
      }
      sq += ql * l[i] + qhi * h[i];
      sx += l[i] + h[i];
    }
  }
  sum_qx = sq;
  sum_x = sx;
}

struct TypeQ4_0 {  // 18 bytes: d, 16 nibble bytes; value d * (q - 8)
  static constexpr int kElems = 32, kBytes = 18, kItems = 1;
  template <int NT>
  __device__ static void dot(const uint8_t* b, int, const float* x, int64_t ldx, float* acc) {
    const float d = h2f(ld16(b));
    uint32_t qs[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) qs[k] = ld32_a2(b + 2 + 4 * k);
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      float sq, sx;
      nibble_sums<false>(qs, 0, x + t * ldx, sq, sx);
      acc[t] += d * (sq - 8.0f * sx);
    }
  }
};

struct TypeQ4_1 {  // 20 bytes: d, m, 16 nibble bytes; value d * q + m
  static constexpr int kElems = 32, kBytes = 20, kItems = 1;
  template <int NT>
  __device__ static void dot(const uint8_t* b, int, const float* x, int64_t ldx, float* acc) {
    const uint32_t dm = *reinterpret_cast<const uint32_t*>(b);
    const float d = h2f(dm & 0xFFFF), m = h2f(dm >> 16);
    uint32_t qs[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) qs[k] = *reinterpret_cast<const uint32_t*>(b + 4 + 4 * k);
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      float sq, sx;
      nibble_sums<false>(qs, 0, x + t * ldx, sq, sx);
      acc[t] += d * sq + m * sx;
    }
  }
};

struct TypeQ5_0 {  // 22 bytes: d, qh[4], 16 nibble bytes; value d * (q - 16)
  static constexpr int kElems = 32, kBytes = 22, kItems = 1;
  template <int NT>
  __device__ static void dot(const uint8_t* b, int, const float* x, int64_t ldx, float* acc) {
    const float d = h2f(ld16(b));
    const uint32_t qh = ld32_a2(b + 2);
    uint32_t qs[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) qs[k] = ld32_a2(b + 6 + 4 * k);
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      float sq, sx;
      nibble_sums<true>(qs, qh, x + t * ldx, sq, sx);
      acc[t] += d * (sq - 16.0f * sx);
    }
  }
};

struct TypeQ5_1 {  // 24 bytes: d, m, qh[4], 16 nibble bytes; value d * q + m
  static constexpr int kElems = 32, kBytes = 24, kItems = 1;
  template <int NT>
  __device__ static void dot(const uint8_t* b, int, const float* x, int64_t ldx, float* acc) {
    const uint32_t dm = *reinterpret_cast<const uint32_t*>(b);
    const float d = h2f(dm & 0xFFFF), m = h2f(dm >> 16);
    const uint32_t qh = *reinterpret_cast<const uint32_t*>(b + 4);
    uint32_t qs[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) qs[k] = *reinterpret_cast<const uint32_t*>(b + 8 + 4 * k);
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      float sq, sx;
      nibble_sums<true>(qs, qh, x + t * ldx, sq, sx);
      acc[t] += d * sq + m * sx;
    }
  }
};

// Sum of 16 nibble bytes' table values (low nibbles are elements 0..15, high 16..31) times x.
__device__ __forceinline__ float iq4_dot(const uint32_t* qs, const float* x) {
  float s = 0;
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const uint32_t lo = q8::iq4_byte_values(qs[k] & 0x0F0F0F0Fu),
                   hi = q8::iq4_byte_values((qs[k] >> 4) & 0x0F0F0F0Fu);
    s += dot8_i8(lo, hi, ldx4(x + 4 * k), ldx4(x + 16 + 4 * k));
  }
  return s;
}

struct TypeIQ4_NL {  // 18 bytes: d, 16 nibble bytes indexing the non-linear table
  static constexpr int kElems = 32, kBytes = 18, kItems = 1;
  template <int NT>
  __device__ static void dot(const uint8_t* b, int, const float* x, int64_t ldx, float* acc) {
    const float d = h2f(ld16(b));
    uint32_t qs[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) qs[k] = ld32_a2(b + 2 + 4 * k);
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[t] += d * iq4_dot(qs, x + t * ldx);
  }
};

// IQ4_XS: 8 items, one per group of 32 (dequant.cuh: iq4_xs): d, scales_h, scales_l[4], qs[128].
struct TypeIQ4_XS {
  static constexpr int kElems = 256, kBytes = 136, kItems = 8;
  template <int NT>
  __device__ static void dot(const uint8_t* b, int g, const float* x, int64_t ldx, float* acc) {
    const uint2 head = *reinterpret_cast<const uint2*>(b);  // blocks of 136 bytes: 8-byte aligned
    const int lo = (head.y >> (4 * g)) & 15, hi = (head.x >> (16 + 2 * g)) & 3;
    const float d = h2f(head.x & 0xFFFF) * static_cast<float>((lo | hi << 4) - 32);
    const uint2 q0 = *reinterpret_cast<const uint2*>(b + 8 + 16 * g);
    const uint2 q1 = *reinterpret_cast<const uint2*>(b + 16 + 16 * g);
    const uint32_t qs[4] = {q0.x, q0.y, q1.x, q1.y};
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[t] += d * iq4_dot(qs, x + t * ldx + 32 * g);
  }
};

// Q2_K / Q3_K: 4 items of 16 code bytes; item c covers half h = c / 2 and l = l0 .. l0 + 15 with
// l0 = (c % 2) * 16 of its 32-byte qs: the 2-bit fields g = 0..3 are elements
// 128 h + 32 g + l (scale 8 h + 2 g + c % 2); Q3_K's third bit is bit 4 h + g of hmask[l].
// Sums of code * x and of x per 16 elements, then the scale (and Q2_K's min) once.
template <int NT>
__device__ __forceinline__ void two_bit_sums(const uint32_t* qs, const uint32_t* hm, int h,
                                             const float* x, int64_t ldx, float (&sq)[NT][4],
                                             float (&sx)[NT][4]) {
#pragma unroll
  for (int t = 0; t < NT; ++t) {
#pragma unroll
    for (int g = 0; g < 4; ++g) {
      const float* xg = x + t * ldx + 32 * g;
      float a = 0, b = 0;
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        uint32_t c = (qs[k] >> (2 * g)) & 0x03030303u;
        if (hm != nullptr) c |= ((hm[k] >> (4 * h + g)) & 0x01010101u) << 2;
        const float4 v = ldx4(xg + 4 * k);
        a += byte_of(c, 0) * v.x + byte_of(c, 1) * v.y + byte_of(c, 2) * v.z + byte_of(c, 3) * v.w;
        b += v.x + v.y + v.z + v.w;
      }
      sq[t][g] = a;
      sx[t][g] = b;
    }
  }
}

struct TypeQ2_K {  // 84 bytes: scales[16] (scale | min << 4), qs[64], d, dmin
  static constexpr int kElems = 256, kBytes = 84, kItems = 4;
  template <int NT>
  __device__ static void dot(const uint8_t* b, int c, const float* x, int64_t ldx, float* acc) {
    const int h = c >> 1, l0 = (c & 1) * 16;
    const uint32_t* w = reinterpret_cast<const uint32_t*>(b);  // 84-byte blocks: 4-byte aligned
    const uint32_t sc[2] = {w[2 * h], w[2 * h + 1]};           // scale bytes 8 h .. 8 h + 7
    const uint32_t dm = w[20];
    const float d = h2f(dm & 0xFFFF), dmin = h2f(dm >> 16);
    const uint32_t qs[4] = {w[4 + 8 * h + l0 / 4], w[5 + 8 * h + l0 / 4], w[6 + 8 * h + l0 / 4],
                            w[7 + 8 * h + l0 / 4]};
    float sq[NT][4], sx[NT][4];
    two_bit_sums<NT>(qs, nullptr, h, x + 128 * h + l0, ldx, sq, sx);
#pragma unroll
    for (int g = 0; g < 4; ++g) {
      const int s = byte_of(sc[g / 2], (c & 1) + 2 * (g % 2));
      const float dl = d * (s & 15), ml = dmin * (s >> 4);
#pragma unroll
      for (int t = 0; t < NT; ++t) acc[t] += dl * sq[t][g] - ml * sx[t][g];
    }
  }
};

struct TypeQ3_K {  // 110 bytes: hmask[32], qs[64], scales[12] (packed 6-bit), d
  static constexpr int kElems = 256, kBytes = 110, kItems = 4;
  template <int NT>
  __device__ static void dot(const uint8_t* b, int c, const float* x, int64_t ldx, float* acc) {
    const int h = c >> 1, l0 = (c & 1) * 16;
    uint32_t qs[4], hm[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) {  // 110-byte blocks: 2-byte aligned
      qs[k] = ld32_a2(b + 32 + 32 * h + l0 + 4 * k);
      hm[k] = ld32_a2(b + l0 + 4 * k);
    }
    const float d = h2f(ld16(b + 108));
    float sq[NT][4], sx[NT][4];
    two_bit_sums<NT>(qs, hm, h, x + 128 * h + l0, ldx, sq, sx);
#pragma unroll
    for (int g = 0; g < 4; ++g) {
      const float dl = d * dequant::q3_scale(b + 96, 8 * h + 2 * g + (c & 1));
#pragma unroll
      for (int t = 0; t < NT; ++t) acc[t] += dl * (sq[t][g] - 4.0f * sx[t][g]);
    }
  }
};

// Q4_K / Q5_K: 8 items of 16 code bytes; item c covers 64-element group j = c / 2, bytes
// l0 = (c % 2) * 16 of its 32: low nibbles are elements j*64 + l0 + i (scale 2j), high nibbles
// j*64 + 32 + l0 + i (scale 2j + 1).
template <bool kQ5>
struct TypeK45 {
  static constexpr int kElems = 256, kBytes = kQ5 ? 176 : 144, kItems = 8;
  template <int NT>
  __device__ static void dot(const uint8_t* b, int sub, const float* x, int64_t ldx, float* acc) {
    const uint32_t dm = *reinterpret_cast<const uint32_t*>(b);
    const float d = h2f(dm & 0xFFFF), dmin = h2f(dm >> 16);
    const int j = sub >> 1, l0 = (sub & 1) * 16;
    float sc0, m0, sc1, m1;
    dequant::scale_min_k4(2 * j, b + 4, sc0, m0);
    dequant::scale_min_k4(2 * j + 1, b + 4, sc1, m1);
    const uint4 qraw = *reinterpret_cast<const uint4*>(b + (kQ5 ? 48 : 16) + j * 32 + l0);
    const uint32_t qs[4] = {qraw.x, qraw.y, qraw.z, qraw.w};
    uint32_t qh[4] = {0, 0, 0, 0};
    if (kQ5) {
      const uint4 hraw = *reinterpret_cast<const uint4*>(b + 16 + l0);
      qh[0] = hraw.x, qh[1] = hraw.y, qh[2] = hraw.z, qh[3] = hraw.w;
    }
    const float d0 = d * sc0, d1 = d * sc1, m0d = dmin * m0, m1d = dmin * m1;
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const float* xl = x + t * ldx + j * 64 + l0;
      float sql = 0, sxl = 0, sqh = 0, sxh = 0;
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const float4 lo = ldx4(xl + 4 * k), hi = ldx4(xl + 32 + 4 * k);
        const float l[4] = {lo.x, lo.y, lo.z, lo.w}, h[4] = {hi.x, hi.y, hi.z, hi.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          int ql = byte_of(qs[k], i) & 0xF, qhi = byte_of(qs[k], i) >> 4;
          if (kQ5) {
            const int hb = byte_of(qh[k], i);
            ql |= ((hb >> (2 * j)) & 1) << 4;
            qhi |= ((hb >> (2 * j + 1)) & 1) << 4;
          }
          sql += ql * l[i];
          sxl += l[i];
          sqh += qhi * h[i];
          sxh += h[i];
        }
      }
      acc[t] += d0 * sql - m0d * sxl + d1 * sqh - m1d * sxh;
    }
  }
};

// Q6_K: 16 items; item c covers half n = c / 8 (128 elements) and l = l0 .. l0 + 3 with
// l0 = (c % 8) * 4, i.e. elements n*128 + l + {0, 32, 64, 96} (scales is, is+2, is+4, is+6).
struct TypeQ6_K {
  static constexpr int kElems = 256, kBytes = 210, kItems = 16;
  template <int NT>
  __device__ static void dot(const uint8_t* b, int sub, const float* x, int64_t ldx, float* acc) {
    const int n = sub >> 3, l0 = (sub & 7) * 4, is = l0 / 16;
    const uint8_t* ql = b + n * 64;
    const uint8_t* qh = b + 128 + n * 32;
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192 + n * 8);
    const float d = h2f(ld16(b + 208));
    const uint32_t qa = ld32_a2(ql + l0), qb = ld32_a2(ql + l0 + 32), hh = ld32_a2(qh + l0);
    float w[4][4];  // [quarter][i]
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int a = byte_of(qa, i), c = byte_of(qb, i), h = byte_of(hh, i);
      w[0][i] = static_cast<float>(((a & 0xF) | ((h & 3) << 4)) - 32);
      w[1][i] = static_cast<float>(((c & 0xF) | (((h >> 2) & 3) << 4)) - 32);
      w[2][i] = static_cast<float>(((a >> 4) | (((h >> 4) & 3) << 4)) - 32);
      w[3][i] = static_cast<float>(((c >> 4) | (((h >> 6) & 3) << 4)) - 32);
    }
    const float s0 = d * sc[is], s1 = d * sc[is + 2], s2 = d * sc[is + 4], s3 = d * sc[is + 6];
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const float* xt = x + t * ldx + n * 128 + l0;
      const float4 v0 = ldx4(xt), v1 = ldx4(xt + 32), v2 = ldx4(xt + 64), v3 = ldx4(xt + 96);
      acc[t] += s0 * (w[0][0] * v0.x + w[0][1] * v0.y + w[0][2] * v0.z + w[0][3] * v0.w) +
                s1 * (w[1][0] * v1.x + w[1][1] * v1.y + w[1][2] * v1.z + w[1][3] * v1.w) +
                s2 * (w[2][0] * v2.x + w[2][1] * v2.y + w[2][2] * v2.z + w[2][3] * v2.w) +
                s3 * (w[3][0] * v3.x + w[3][1] * v3.y + w[3][2] * v3.z + w[3][3] * v3.w);
    }
  }
};

template <class T, int NT>
__global__ void __launch_bounds__(kWarp* kRowsPerBlock)
    matvec_kernel(const uint8_t* __restrict__ w, int64_t rows, int64_t cols, size_t row_bytes,
                  const float* __restrict__ x, int64_t ldx, float* y, int64_t ldy, int accumulate) {
  pdl_launch_dependents();
  pdl_wait();
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + warp;
  if (r >= rows) return;
  const uint8_t* wr = w + r * row_bytes;
  const int n_items = static_cast<int>(cols / T::kElems) * T::kItems;
  float acc[NT];
#pragma unroll
  for (int t = 0; t < NT; ++t) acc[t] = 0.0f;
#pragma unroll 4
  for (int it = lane; it < n_items; it += kWarp) {
    const int blk = it / T::kItems, sub = it % T::kItems;
    T::template dot<NT>(wr + static_cast<size_t>(blk) * T::kBytes, sub,
                        x + static_cast<int64_t>(blk) * T::kElems, ldx, acc);
  }
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    float s = acc[t];
#pragma unroll
    for (int o = kWarp / 2; o > 0; o >>= 1) s += __shfl_xor_sync(0xFFFFFFFFu, s, o);
    if (lane == 0) {
      float* out = y + t * ldy + r;
      *out = accumulate ? *out + s : s;
    }
  }
}

template <class T, int NT>
void launch_matvec(const void* w, int64_t rows, int64_t cols, const float* x, int64_t ldx, float* y,
                   int64_t ldy, bool accumulate, cudaStream_t stream) {
  const size_t row_bytes = static_cast<size_t>(cols / T::kElems) * T::kBytes;
  const unsigned blocks = static_cast<unsigned>((rows + kRowsPerBlock - 1) / kRowsPerBlock);
  launch(matvec_kernel<T, NT>, dim3(blocks), dim3(kWarp * kRowsPerBlock), stream,
         static_cast<const uint8_t*>(w), rows, cols, row_bytes, x, ldx, y, ldy, accumulate ? 1 : 0);
}

template <class T>
void matmul_typed(const void* w, int64_t rows, int64_t cols, const float* x, int64_t ldx,
                  int n_tokens, float* y, int64_t ldy, bool accumulate, cudaStream_t stream) {
  detail::for_token_chunks(n_tokens, [&](auto nt, int t) {
    launch_matvec<T, decltype(nt)::value>(w, rows, cols, x + t * ldx, ldx, y + t * ldy, ldy,
                                          accumulate, stream);
  });
}

}  // namespace

bool matmul_supported(DType type, int64_t cols) {
  switch (type) {
    case DType::F32:
      return cols % 4 == 0;
    case DType::F16:
    case DType::BF16:
      return cols % 8 == 0;
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q5_0:
    case DType::Q5_1:
    case DType::Q8_0:
    case DType::IQ4_NL:
      return cols % 32 == 0;
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

void matmul(DType type, const void* w, int64_t rows, int64_t cols, const float* x, int64_t ldx,
            int n_tokens, float* y, int64_t ldy, bool accumulate, cudaStream_t stream) {
  switch (type) {
#define SQUISH_CASE(dt, T) \
  case DType::dt:          \
    return matmul_typed<T>(w, rows, cols, x, ldx, n_tokens, y, ldy, accumulate, stream);
    SQUISH_CASE(F32, TypeF32)
    SQUISH_CASE(F16, TypeHalf<false>)
    SQUISH_CASE(BF16, TypeHalf<true>)
    SQUISH_CASE(Q4_0, TypeQ4_0)
    SQUISH_CASE(Q4_1, TypeQ4_1)
    SQUISH_CASE(Q5_0, TypeQ5_0)
    SQUISH_CASE(Q5_1, TypeQ5_1)
    SQUISH_CASE(Q8_0, TypeQ8_0)
    SQUISH_CASE(IQ4_NL, TypeIQ4_NL)
    SQUISH_CASE(Q4_K, TypeK45<false>)
    SQUISH_CASE(Q5_K, TypeK45<true>)
    SQUISH_CASE(Q6_K, TypeQ6_K)
    SQUISH_CASE(Q2_K, TypeQ2_K)
    SQUISH_CASE(Q3_K, TypeQ3_K)
    SQUISH_CASE(IQ4_XS, TypeIQ4_XS)
#undef SQUISH_CASE
    default:
      return;  // rejected by matmul_supported before any launch
  }
}

}  // namespace squish::cuda
