// Values of GGUF block fields, 32 weights (one "group") at a time: the decoding shared by the
// F16 dequantize kernels of both weight layouts the CUDA backend holds (gemm.cu: GGUF rows;
// kernels_q8.cu: the repacked Q4_K / Q6_K / Q8_0 layout of repack_q8, whose fields are the same
// bytes at other addresses). Every function takes pointers to the fields it reads (byte loads:
// GGUF blocks are only 2-byte aligned) and writes the group's 32 values in element order, as
// ggml's dequantize_row_* computes them (F32 arithmetic: d * scale first, then times the code).
#pragma once

#include <cstdint>
#include <cstring>

#include "core/dtype.h"
#include "kernels/cuda/host_device.h"
#include "quant/blocks.h"

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

// IQ4_NL's (and IQ4_XS's) non-linear table: the value of 4-bit code c.
SQUISH_HOST_DEVICE int iq4_value(int c) {
  constexpr int8_t kValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                  1,    13,   25,  38,  53,  69,  89,  113};
  return kValues[c];
}

SQUISH_HOST_DEVICE void iq4_nl(float d, const uint8_t* qs, float* v) {
  SQUISH_UNROLL
  for (int l = 0; l < 16; ++l) {
    v[l] = d * iq4_value(qs[l] & 0xF);
    v[l + 16] = d * iq4_value(qs[l] >> 4);
  }
}

// As iq4_nl with the codes in element order: byte m holds elements 2 m (low nibble) and 2 m + 1
// (the CUDA backend's repacked IQ4_XS and IQ4_NL, layout.h).
SQUISH_HOST_DEVICE void iq4_nl_pairs(float d, const uint8_t* qs, float* v) {
  SQUISH_UNROLL
  for (int m = 0; m < 16; ++m) {
    v[2 * m] = d * iq4_value(qs[m] & 0xF);
    v[2 * m + 1] = d * iq4_value(qs[m] >> 4);
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

// Q2_K: scales[16] (4-bit scale | 4-bit min << 4 per 16 elements), qs[64], then d, dmin. Group g:
// half h = g / 4, shift 2 (g % 4): elements 128 h + 32 (g % 4) + l are bits shift of qs[32 h + l],
// with scale byte 8 h + 2 (g % 4) + l / 16; value (d * scale) * code - dmin * min. q: the half's
// 32 bytes, qs + 32 h.
SQUISH_HOST_DEVICE void q2_k(const uint8_t* scales, const uint8_t* q, float d, float dmin, int g,
                             float* v) {
  const int h = g / 4, shift = 2 * (g % 4);
  SQUISH_UNROLL
  for (int part = 0; part < 2; ++part) {
    const int sc = scales[8 * h + 2 * (g % 4) + part];
    const float dl = d * (sc & 15), ml = dmin * (sc >> 4);
    SQUISH_UNROLL
    for (int l = 16 * part; l < 16 * part + 16; ++l) v[l] = dl * ((q[l] >> shift) & 3) - ml;
  }
}

// Scale j (0..15) of a Q3_K block from its 12 packed bytes (ggml's 6-bit packing): the low 4 bits
// are nibble j / 8 of byte j % 8, the high 2 bits are bits 2 (j / 4) of byte 8 + j % 4; minus 32.
SQUISH_HOST_DEVICE int q3_scale(const uint8_t* packed, int j) {
  const int lo = (packed[j % 8] >> (4 * (j / 8))) & 15;
  const int hi = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
  return (lo | hi << 4) - 32;
}

// Q3_K: hmask[32], qs[64], 12 packed scale bytes, d. Group g as Q2_K's for the low 2 bits; the
// high bit of element 128 h + 32 (g % 4) + l is bit g of hmask[l], and a clear one means 4 lower;
// value (d * scale) * code.
SQUISH_HOST_DEVICE void q3_k(const uint8_t* hmask, const uint8_t* qs, const uint8_t* scales,
                             float d, int g, float* v) {
  const int h = g / 4, shift = 2 * (g % 4);
  const uint8_t* q = qs + 32 * h;
  SQUISH_UNROLL
  for (int part = 0; part < 2; ++part) {
    const float dl = d * q3_scale(scales, 8 * h + 2 * (g % 4) + part);
    SQUISH_UNROLL
    for (int l = 16 * part; l < 16 * part + 16; ++l) {
      const int c = ((q[l] >> shift) & 3) - (((hmask[l] >> g) & 1) ? 0 : 4);
      v[l] = dl * c;
    }
  }
}

// IQ4_XS: d, scales_h (2 high bits per group), scales_l[4] (4 low bits per group), qs[128]. Group
// g: qs[16 g + j] holds elements j (low nibble) and j + 16 (high), indices into IQ4_NL's table;
// value (d * (scale - 32)) * table[code].
SQUISH_HOST_DEVICE int iq4_xs_scale(const uint8_t* block, int g) {
  const int lo = (block[4 + g / 2] >> (4 * (g % 2))) & 15;
  const int hi = ((block[2] | block[3] << 8) >> (2 * g)) & 3;
  return (lo | hi << 4) - 32;
}
SQUISH_HOST_DEVICE void iq4_xs(const uint8_t* block, int g, float* v) {
  iq4_nl(f16_at(block) * iq4_xs_scale(block, g), block + 8 + 16 * g, v);
}

// Each GGUF type's decoding one group at a time: kElems weights in kBytes per block, and
// group(b, g, v) writes group g (32 weights) of the block at b. The F16 dequantize kernel of the
// prefill GEMM (gemm.cu) runs them on the GPU, the CPU suite against convert_row_to_f32.
SQUISH_HOST_DEVICE float bf16_at(const uint8_t* p) {
  const uint32_t bits = static_cast<uint32_t>(p[0] | (p[1] << 8)) << 16;
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
#endif
}
struct GgF32 {
  static constexpr int kElems = 32, kBytes = 128;
  SQUISH_HOST_DEVICE static void group(const uint8_t* b, int, float* v) {
#if defined(__CUDA_ARCH__)
    SQUISH_UNROLL
    for (int l = 0; l < 32; ++l) v[l] = reinterpret_cast<const float*>(b)[l];  // 4-byte aligned
#else
    std::memcpy(v, b, kBytes);
#endif
  }
};
template <bool kBF16>
struct GgHalf {
  static constexpr int kElems = 32, kBytes = 64;
  SQUISH_HOST_DEVICE static void group(const uint8_t* b, int, float* v) {
    SQUISH_UNROLL
    for (int l = 0; l < 32; ++l) v[l] = kBF16 ? bf16_at(b + 2 * l) : f16_at(b + 2 * l);
  }
};
template <bool kMin, bool kFifth, int kBlockBytes>
struct GgLegacy {  // Q4_0 (d, qs), Q4_1 (d, m, qs), Q5_0 (d, qh, qs), Q5_1 (d, m, qh, qs)
  static constexpr int kElems = 32, kBytes = kBlockBytes;
  SQUISH_HOST_DEVICE static void group(const uint8_t* b, int, float* v) {
    const int at = kMin ? 4 : 2;
    legacy<kMin, kFifth>(f16_at(b), kMin ? f16_at(b + 2) : 0.0f, b + at, b + at + (kFifth ? 4 : 0),
                         v);
  }
};
struct GgQ8_0 {
  static constexpr int kElems = 32, kBytes = 34;
  SQUISH_HOST_DEVICE static void group(const uint8_t* b, int, float* v) {
    q8_0(f16_at(b), b + 2, v);
  }
};
struct GgIQ4_NL {
  static constexpr int kElems = 32, kBytes = 18;
  SQUISH_HOST_DEVICE static void group(const uint8_t* b, int, float* v) {
    iq4_nl(f16_at(b), b + 2, v);
  }
};
struct GgQ2_K {  // scales[16], qs[64], d, dmin
  static constexpr int kElems = 256, kBytes = 84;
  SQUISH_HOST_DEVICE static void group(const uint8_t* b, int g, float* v) {
    q2_k(b, b + 16 + 32 * (g / 4), f16_at(b + 80), f16_at(b + 82), g, v);
  }
};
struct GgQ3_K {  // hmask[32], qs[64], scales[12], d
  static constexpr int kElems = 256, kBytes = 110;
  SQUISH_HOST_DEVICE static void group(const uint8_t* b, int g, float* v) {
    q3_k(b, b + 32, b + 96, f16_at(b + 108), g, v);
  }
};
template <bool kFifth>
struct GgK45 {  // d, dmin, scales[12], (Q5_K: qh[32]), qs[128]
  static constexpr int kElems = 256, kBytes = kFifth ? 176 : 144;
  SQUISH_HOST_DEVICE static void group(const uint8_t* b, int g, float* v) {
    k_quant_4_5<kFifth>(b, b + 16, b + (kFifth ? 48 : 16), g, v);
  }
};
struct GgQ6_K {  // ql[128], qh[64], scales[16], d
  static constexpr int kElems = 256, kBytes = 210;
  SQUISH_HOST_DEVICE static void group(const uint8_t* b, int g, float* v) {
    q6_k(b, b + 128, b + 192, f16_at(b + 208), g, v);
  }
};
struct GgIQ4_XS {  // d, scales_h, scales_l[4], qs[128]
  static constexpr int kElems = 256, kBytes = 136;
  SQUISH_HOST_DEVICE static void group(const uint8_t* b, int g, float* v) { iq4_xs(b, g, v); }
};

static_assert(GgLegacy<false, false, 18>::kBytes == sizeof(block_q4_0) &&
              GgLegacy<true, false, 20>::kBytes == sizeof(block_q4_1) &&
              GgLegacy<false, true, 22>::kBytes == sizeof(block_q5_0) &&
              GgLegacy<true, true, 24>::kBytes == sizeof(block_q5_1) &&
              GgQ8_0::kBytes == sizeof(block_q8_0) && GgIQ4_NL::kBytes == sizeof(block_iq4_nl) &&
              GgQ2_K::kBytes == sizeof(block_q2_K) && GgQ3_K::kBytes == sizeof(block_q3_K) &&
              GgK45<false>::kBytes == sizeof(block_q4_K) &&
              GgK45<true>::kBytes == sizeof(block_q5_K) && GgQ6_K::kBytes == sizeof(block_q6_K) &&
              GgIQ4_XS::kBytes == sizeof(block_iq4_xs));

// Calls f with a value of the Gg struct for `type`; false for a type without one.
template <class F>
bool with_gguf_type(DType type, F&& f) {
  switch (type) {
    case DType::F32:
      f(GgF32{});
      return true;
    case DType::F16:
      f(GgHalf<false>{});
      return true;
    case DType::BF16:
      f(GgHalf<true>{});
      return true;
    case DType::Q4_0:
      f(GgLegacy<false, false, 18>{});
      return true;
    case DType::Q4_1:
      f(GgLegacy<true, false, 20>{});
      return true;
    case DType::Q5_0:
      f(GgLegacy<false, true, 22>{});
      return true;
    case DType::Q5_1:
      f(GgLegacy<true, true, 24>{});
      return true;
    case DType::Q8_0:
      f(GgQ8_0{});
      return true;
    case DType::IQ4_NL:
      f(GgIQ4_NL{});
      return true;
    case DType::Q2_K:
      f(GgQ2_K{});
      return true;
    case DType::Q3_K:
      f(GgQ3_K{});
      return true;
    case DType::Q4_K:
      f(GgK45<false>{});
      return true;
    case DType::Q5_K:
      f(GgK45<true>{});
      return true;
    case DType::Q6_K:
      f(GgQ6_K{});
      return true;
    case DType::IQ4_XS:
      f(GgIQ4_XS{});
      return true;
    default:
      return false;
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
