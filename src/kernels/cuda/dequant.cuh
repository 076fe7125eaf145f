// Values of GGUF block fields, 32 weights (one "group") at a time: the decoding shared by the
// F16 dequantize kernels of both weight layouts the CUDA backend holds (gemm.cu: GGUF rows;
// kernels_q8.cu: the repacked Q4_K / Q6_K / Q8_0 layout of repack_q8, whose fields are the same
// bytes at other addresses). Every function takes pointers to the fields it reads (byte loads:
// GGUF blocks are only 2-byte aligned) and writes the group's 32 values in element order, as
// ggml's dequantize_row_* computes them (F32 arithmetic: d * scale first, then times the code).
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "kernels/cuda/host_device.h"

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#endif

namespace squish::cuda::dequant {

SQUISH_HOST_DEVICE float f16_at(const uint8_t* p) {
  const auto bits = static_cast<unsigned short>(p[0] | (p[1] << 8));
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(bits));
#else
  return fp16_to_fp32(bits);
#endif
}

// Q4_0 (d, 16 nibble bytes; d * (q - 8)) and Q4_1 (d, m; d * q + m): low nibbles are elements
// 0..15, high 16..31. Q5_0 / Q5_1 add fifth bits (element j in bit j of qh).
template <bool kMin, bool kFifth>
SQUISH_HOST_DEVICE void legacy(float d, float m, const uint8_t* qh, const uint8_t* qs, float* v) {
  uint32_t h = 0;
  if (kFifth) h = qh[0] | (qh[1] << 8) | (qh[2] << 16) | (static_cast<uint32_t>(qh[3]) << 24);
  const int bias = kMin ? 0 : (kFifth ? 16 : 8);
  SQUISH_UNROLL
  for (int l = 0; l < 16; ++l) {
    int lo = qs[l] & 0xF, hi = qs[l] >> 4;
    if (kFifth) {
      lo |= ((h >> l) & 1) << 4;
      hi |= ((h >> (l + 16)) & 1) << 4;
    }
    if (kMin) {
      v[l] = d * lo + m;
      v[l + 16] = d * hi + m;
    } else {
      v[l] = d * (lo - bias);
      v[l + 16] = d * (hi - bias);
    }
  }
}

SQUISH_HOST_DEVICE void q8_0(float d, const uint8_t* qs, float* v) {
  SQUISH_UNROLL
  for (int l = 0; l < 32; ++l) v[l] = d * static_cast<int8_t>(qs[l]);
}

SQUISH_HOST_DEVICE void iq4_nl(float d, const uint8_t* qs, float* v) {
  constexpr int8_t kValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                  1,    13,   25,  38,  53,  69,  89,  113};
  SQUISH_UNROLL
  for (int l = 0; l < 16; ++l) {
    v[l] = d * kValues[qs[l] & 0xF];
    v[l + 16] = d * kValues[qs[l] >> 4];
  }
}

// The 6-bit scale and min of sub-block j of Q4_K / Q5_K from their 12 packed bytes q (ggml's
// get_scale_min_k4); also the GGUF-layout mat-vec kernels' (kernels.cu) decoding.
template <class T>
SQUISH_HOST_DEVICE void scale_min_k4(int j, const uint8_t* q, T& sc, T& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// 32 weights d1 * c - m1 of 4-bit codes c = nibble g % 2 of q[l] (plus, for Q5_K, fifth bit g of
// qh[l] as bit 4).
template <bool kFifth>
SQUISH_HOST_DEVICE void affine_nibbles(float d1, float m1, const uint8_t* qh, const uint8_t* q,
                                       int g, float* v) {
  const int shift = (g % 2) * 4;
  SQUISH_UNROLL
  for (int l = 0; l < 32; ++l) {
    int c = (q[l] >> shift) & 0xF;
    if (kFifth) c |= ((qh[l] >> g) & 1) << 4;
    v[l] = d1 * c - m1;
  }
}

// Q4_K / Q5_K: dm_scales = d, dmin (fp16) then the 12 packed scale/min bytes; group g (0..7)
// = elements 32 g .. 32 g + 31: nibble g % 2 of qs[(g / 2) * 32 + l], scale and min g, fifth
// bit g of qh[l] for Q5_K.
template <bool kFifth>
SQUISH_HOST_DEVICE void k_quant_4_5(const uint8_t* dm_scales, const uint8_t* qh, const uint8_t* qs,
                                    int g, float* v) {
  const float d = f16_at(dm_scales), dmin = f16_at(dm_scales + 2);
  int sc, mn;
  scale_min_k4(g, dm_scales + 4, sc, mn);
  affine_nibbles<kFifth>(d * sc, dmin * mn, qh, qs + (g / 2) * 32, g, v);
}

// Q6_K: ql[128], qh[64], 16 int8 scales, d. Group g: half n = g / 4, quarter p = g % 4 of it:
// elements n * 128 + p * 32 + l take nibble p / 2 of ql[n * 64 + (p % 2) * 32 + l], bits 2p of
// qh[n * 32 + l], scale n * 8 + l / 16 + 2p; value d * scale * (code - 32).
SQUISH_HOST_DEVICE void q6_k(const uint8_t* ql, const uint8_t* qh, const uint8_t* scales, float d,
                             int g, float* v) {
  const int n = g / 4, p = g % 4;
  const uint8_t* lo = ql + n * 64 + (p % 2) * 32;
  const uint8_t* hi = qh + n * 32;
  const int shift = (p / 2) * 4;
  const float d0 = d * static_cast<int8_t>(scales[n * 8 + 2 * p]);
  const float d1 = d * static_cast<int8_t>(scales[n * 8 + 1 + 2 * p]);
  SQUISH_UNROLL
  for (int l = 0; l < 32; ++l) {
    const int c = ((lo[l] >> shift) & 0xF) | (((hi[l] >> (2 * p)) & 3) << 4);
    v[l] = (l < 16 ? d0 : d1) * (c - 32);
  }
}

#if defined(__CUDACC__)
// Stores 32 values as F16 (round to nearest) with 16-byte stores; out 16-byte aligned.
__device__ __forceinline__ void store_f16(const float* v, __half* out) {
  SQUISH_UNROLL
  for (int k = 0; k < 4; ++k) {
    __align__(16) __half2 h[4];
    SQUISH_UNROLL
    for (int j = 0; j < 4; ++j) h[j] = __floats2half2_rn(v[8 * k + 2 * j], v[8 * k + 2 * j + 1]);
    reinterpret_cast<uint4*>(out)[k] = *reinterpret_cast<const uint4*>(h);
  }
}
#endif

}  // namespace squish::cuda::dequant
