// K-quant family (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS) and their Q8_K activations: dequantization,
// scalar reference dot products and the traits tables. The quantizers live in
// kquants_quantize.cpp, the SIMD dot products in kernels/cpu/quant_k_{avx2,avx512}.cpp.
//
// Dequantization is bit-exact with ggml's (dequantize_row_*): each value is computed with the
// same float operations in the same order (for example Q4_K's (d * sc) * q - dmin * m), which the
// committed goldens in tests/data/ggml_kquant check. That rules out fused multiply-adds, which a
// build with -march=native would otherwise introduce (GCC fuses across statements by default).
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "kernels/cpu/quant_k.h"
#include "quant/kquants.h"
#include "quant/quant.h"

namespace squish {

namespace {

inline int64_t super_blocks(int64_t n, const char* what) {
  if (n % QK_K != 0) fail("internal: {} row of {} elements is not a multiple of {}", what, n, QK_K);
  return n / QK_K;
}

// Round half to even with the float adder: adding 1.5 * 2^23 leaves the integer in the low
// mantissa bits. Exact for |v| < 2^22, which every caller here guarantees.
inline int nearest_int(float v) {
  float t = v + 12582912.f;
  int32_t i;
  std::memcpy(&i, &t, 4);
  return (i & 0x007fffff) - 0x00400000;
}

// ---------------------------------------------------------------------------------------------
// Dequantization. Element order inside a super-block follows ggml's layouts; see blocks.h.

void dequantize_q2_K(const void* vx, float* y, int64_t n) {
  const auto* x = static_cast<const block_q2_K*>(vx);
  for (int64_t i = 0, nb = super_blocks(n, "Q2_K"); i < nb; ++i) {
    const float d = fp16_to_fp32(x[i].d);
    const float dmin = fp16_to_fp32(x[i].dmin);
    // Two halves of 128; in each, byte l of qs holds elements l, l+32, l+64, l+96 (2 bits each).
    for (int h = 0; h < 2; ++h) {
      const uint8_t* q = x[i].qs + 32 * h;
      for (int g = 0; g < 4; ++g) {
        for (int part = 0; part < 2; ++part) {
          const uint8_t sc = x[i].scales[8 * h + 2 * g + part];
          const float dl = d * static_cast<float>(sc & 15);
          const float ml = dmin * static_cast<float>(sc >> 4);
          for (int l = 16 * part; l < 16 * part + 16; ++l) {
            *y++ = dl * static_cast<float>((q[l] >> (2 * g)) & 3) - ml;
          }
        }
      }
    }
  }
}

void dequantize_q3_K(const void* vx, float* y, int64_t n) {
  const auto* x = static_cast<const block_q3_K*>(vx);
  for (int64_t i = 0, nb = super_blocks(n, "Q3_K"); i < nb; ++i) {
    const float d = fp16_to_fp32(x[i].d);
    int8_t sc[16];
    unpack_scales_q3_K(x[i].scales, sc);
    // Like Q2_K for the low 2 bits; element 128h + 32g + l has its high bit in hmask[l], bit 4h+g.
    // A clear high bit means the value is 4 lower.
    for (int h = 0; h < 2; ++h) {
      const uint8_t* q = x[i].qs + 32 * h;
      for (int g = 0; g < 4; ++g) {
        const int bit = 4 * h + g;
        for (int part = 0; part < 2; ++part) {
          const float dl = d * static_cast<float>(sc[8 * h + 2 * g + part]);
          for (int l = 16 * part; l < 16 * part + 16; ++l) {
            const int v = ((q[l] >> (2 * g)) & 3) - (((x[i].hmask[l] >> bit) & 1) ? 0 : 4);
            *y++ = dl * static_cast<float>(v);
          }
        }
      }
    }
  }
}

void dequantize_q4_K(const void* vx, float* y, int64_t n) {
  const auto* x = static_cast<const block_q4_K*>(vx);
  for (int64_t i = 0, nb = super_blocks(n, "Q4_K"); i < nb; ++i) {
    const float d = fp16_to_fp32(x[i].d);
    const float dmin = fp16_to_fp32(x[i].dmin);
    uint8_t sc[8], mn[8];
    unpack_scale_min_k4(x[i].scales, sc, mn);
    // Four chunks of 64: byte l of the chunk's 32 holds element l (low nibble) and l + 32 (high).
    for (int c = 0; c < 4; ++c) {
      const uint8_t* q = x[i].qs + 32 * c;
      const float d1 = d * static_cast<float>(sc[2 * c]), m1 = dmin * static_cast<float>(mn[2 * c]);
      const float d2 = d * static_cast<float>(sc[2 * c + 1]);
      const float m2 = dmin * static_cast<float>(mn[2 * c + 1]);
      for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 15) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
    }
  }
}

void dequantize_q5_K(const void* vx, float* y, int64_t n) {
  const auto* x = static_cast<const block_q5_K*>(vx);
  for (int64_t i = 0, nb = super_blocks(n, "Q5_K"); i < nb; ++i) {
    const float d = fp16_to_fp32(x[i].d);
    const float dmin = fp16_to_fp32(x[i].dmin);
    uint8_t sc[8], mn[8];
    unpack_scale_min_k4(x[i].scales, sc, mn);
    // As Q4_K, plus the fifth bit of chunk c's elements in qh[l], bits 2c (low) and 2c+1 (high).
    for (int c = 0; c < 4; ++c) {
      const uint8_t* q = x[i].qs + 32 * c;
      const float d1 = d * static_cast<float>(sc[2 * c]), m1 = dmin * static_cast<float>(mn[2 * c]);
      const float d2 = d * static_cast<float>(sc[2 * c + 1]);
      const float m2 = dmin * static_cast<float>(mn[2 * c + 1]);
      for (int l = 0; l < 32; ++l) {
        const int v = (q[l] & 15) | (((x[i].qh[l] >> (2 * c)) & 1) << 4);
        *y++ = d1 * static_cast<float>(v) - m1;
      }
      for (int l = 0; l < 32; ++l) {
        const int v = (q[l] >> 4) | (((x[i].qh[l] >> (2 * c + 1)) & 1) << 4);
        *y++ = d2 * static_cast<float>(v) - m2;
      }
    }
  }
}

// Q6_K codes (value + 32) of a block in element order. Two halves of 128: ql[64h + l] holds
// elements l (low nibble) and l + 64 (high), ql[64h + 32 + l] elements l + 32 and l + 96;
// qh[32h + l] holds the top 2 bits of l, l+32, l+64, l+96 at bits 0, 2, 4, 6.
void unpack_q6_codes(const block_q6_K& b, int8_t* u) {
  for (int h = 0; h < 2; ++h) {
    const uint8_t* ql = b.ql + 64 * h;
    const uint8_t* qh = b.qh + 32 * h;
    int8_t* o = u + 128 * h;
    for (int l = 0; l < 32; ++l) {
      o[l] = static_cast<int8_t>((ql[l] & 15) | ((qh[l] & 3) << 4));
      o[l + 32] = static_cast<int8_t>((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4));
      o[l + 64] = static_cast<int8_t>((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
      o[l + 96] = static_cast<int8_t>((ql[l + 32] >> 4) | ((qh[l] >> 6) << 4));
    }
  }
}

void dequantize_q6_K(const void* vx, float* y, int64_t n) {
  const auto* x = static_cast<const block_q6_K*>(vx);
  for (int64_t i = 0, nb = super_blocks(n, "Q6_K"); i < nb; ++i) {
    const float d = fp16_to_fp32(x[i].d);
    int8_t u[QK_K];
    unpack_q6_codes(x[i], u);
    for (int j = 0; j < 16; ++j) {
      // ggml evaluates d * sc * q left to right: (d * sc) * q.
      const float dl = d * static_cast<float>(x[i].scales[j]);
      for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<float>(u[16 * j + l] - 32);
    }
  }
}

void dequantize_iq4_xs(const void* vx, float* y, int64_t n) {
  const auto* x = static_cast<const block_iq4_xs*>(vx);
  for (int64_t i = 0, nb = super_blocks(n, "IQ4_XS"); i < nb; ++i) {
    const float d = fp16_to_fp32(x[i].d);
    // Eight sub-blocks of 32: qs[16ib + j] holds element j (low nibble) and j + 16 (high).
    for (int ib = 0; ib < 8; ++ib) {
      const float dl = d * static_cast<float>(iq4xs_scale(x[i], ib));
      const uint8_t* q = x[i].qs + 16 * ib;
      for (int j = 0; j < 16; ++j) y[j] = dl * static_cast<float>(kIQ4Values[q[j] & 15]);
      for (int j = 0; j < 16; ++j) y[j + 16] = dl * static_cast<float>(kIQ4Values[q[j] >> 4]);
      y += 32;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Scalar reference dot products against Q8_K. Each super-block's integer sums are exact; see
// kernels/cpu/quant_k.h for why the double accumulation makes the SIMD versions match exactly.

// Unpacks the 2-bit field of Q2_K / Q3_K qs into u[256] in element order.
inline void unpack_2bit(const uint8_t* qs, int8_t* u) {
  for (int h = 0; h < 2; ++h) {
    for (int g = 0; g < 4; ++g) {
      for (int l = 0; l < 32; ++l) u[128 * h + 32 * g + l] = (qs[32 * h + l] >> (2 * g)) & 3;
    }
  }
}

inline int32_t dot16(const int8_t* a, const int8_t* b) {
  int32_t s = 0;
  for (int l = 0; l < 16; ++l) s += static_cast<int32_t>(a[l]) * b[l];
  return s;
}

float dot_q2_K_scalar(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const block_q2_K*>(vw);
  const auto* a = static_cast<const block_q8_K*>(va);
  double sum = 0;
  for (int64_t i = 0, nb = super_blocks(n, "Q2_K"); i < nb; ++i) {
    int8_t u[QK_K];
    unpack_2bit(w[i].qs, u);
    int32_t isum = 0, msum = 0;
    for (int j = 0; j < 16; ++j) {
      isum += (w[i].scales[j] & 15) * dot16(u + 16 * j, a[i].qs + 16 * j);
      msum += (w[i].scales[j] >> 4) * a[i].bsums[j];
    }
    const float dd = a[i].d * fp16_to_fp32(w[i].d), dm = a[i].d * fp16_to_fp32(w[i].dmin);
    sum += static_cast<double>(dd) * isum - static_cast<double>(dm) * msum;
  }
  return static_cast<float>(sum);
}

float dot_q3_K_scalar(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const block_q3_K*>(vw);
  const auto* a = static_cast<const block_q8_K*>(va);
  double sum = 0;
  for (int64_t i = 0, nb = super_blocks(n, "Q3_K"); i < nb; ++i) {
    int8_t u[QK_K], sc[16];
    unpack_2bit(w[i].qs, u);
    for (int bit = 0; bit < 8; ++bit) {  // element 32 * bit + l has its high bit in hmask[l]
      for (int l = 0; l < 32; ++l)
        u[32 * bit + l] |= static_cast<int8_t>(((w[i].hmask[l] >> bit) & 1) << 2);
    }
    unpack_scales_q3_K(w[i].scales, sc);
    // Codes are value + 4; the offset comes out through the activation block sums.
    int32_t isum = 0;
    for (int j = 0; j < 16; ++j) {
      isum += sc[j] * (dot16(u + 16 * j, a[i].qs + 16 * j) - 4 * a[i].bsums[j]);
    }
    const float dd = a[i].d * fp16_to_fp32(w[i].d);
    sum += static_cast<double>(dd) * isum;
  }
  return static_cast<float>(sum);
}

float dot_q4_K_scalar(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const block_q4_K*>(vw);
  const auto* a = static_cast<const block_q8_K*>(va);
  double sum = 0;
  for (int64_t i = 0, nb = super_blocks(n, "Q4_K"); i < nb; ++i) {
    uint8_t sc[8], mn[8];
    unpack_scale_min_k4(w[i].scales, sc, mn);
    int32_t isum = 0, msum = 0;
    for (int j = 0; j < 8; ++j) {
      const uint8_t* q = w[i].qs + 32 * (j / 2);
      const int shift = 4 * (j % 2);
      const int8_t* y = a[i].qs + 32 * j;
      int32_t s = 0;
      for (int l = 0; l < 32; ++l) s += ((q[l] >> shift) & 15) * y[l];
      isum += sc[j] * s;
      msum += mn[j] * (a[i].bsums[2 * j] + a[i].bsums[2 * j + 1]);
    }
    const float dd = a[i].d * fp16_to_fp32(w[i].d), dm = a[i].d * fp16_to_fp32(w[i].dmin);
    sum += static_cast<double>(dd) * isum - static_cast<double>(dm) * msum;
  }
  return static_cast<float>(sum);
}

float dot_q5_K_scalar(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const block_q5_K*>(vw);
  const auto* a = static_cast<const block_q8_K*>(va);
  double sum = 0;
  for (int64_t i = 0, nb = super_blocks(n, "Q5_K"); i < nb; ++i) {
    uint8_t sc[8], mn[8];
    unpack_scale_min_k4(w[i].scales, sc, mn);
    int32_t isum = 0, msum = 0;
    for (int j = 0; j < 8; ++j) {
      const uint8_t* q = w[i].qs + 32 * (j / 2);
      const int shift = 4 * (j % 2);
      const int8_t* y = a[i].qs + 32 * j;
      int32_t s = 0;
      for (int l = 0; l < 32; ++l) {
        s += (((q[l] >> shift) & 15) | (((w[i].qh[l] >> j) & 1) << 4)) * y[l];
      }
      isum += sc[j] * s;
      msum += mn[j] * (a[i].bsums[2 * j] + a[i].bsums[2 * j + 1]);
    }
    const float dd = a[i].d * fp16_to_fp32(w[i].d), dm = a[i].d * fp16_to_fp32(w[i].dmin);
    sum += static_cast<double>(dd) * isum - static_cast<double>(dm) * msum;
  }
  return static_cast<float>(sum);
}

float dot_q6_K_scalar(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const block_q6_K*>(vw);
  const auto* a = static_cast<const block_q8_K*>(va);
  double sum = 0;
  for (int64_t i = 0, nb = super_blocks(n, "Q6_K"); i < nb; ++i) {
    int8_t u[QK_K];
    unpack_q6_codes(w[i], u);
    int32_t isum = 0;
    for (int j = 0; j < 16; ++j) {
      const int32_t s = dot16(u + 16 * j, a[i].qs + 16 * j);
      isum += w[i].scales[j] * (s - 32 * a[i].bsums[j]);  // codes are value + 32
    }
    const float dd = a[i].d * fp16_to_fp32(w[i].d);
    sum += static_cast<double>(dd) * isum;
  }
  return static_cast<float>(sum);
}

float dot_iq4_xs_scalar(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const block_iq4_xs*>(vw);
  const auto* a = static_cast<const block_q8_K*>(va);
  double sum = 0;
  for (int64_t i = 0, nb = super_blocks(n, "IQ4_XS"); i < nb; ++i) {
    int32_t isum = 0;
    for (int ib = 0; ib < 8; ++ib) {
      const uint8_t* q = w[i].qs + 16 * ib;
      const int8_t* y = a[i].qs + 32 * ib;
      int32_t s = 0;
      for (int j = 0; j < 16; ++j) {
        s += kIQ4Values[q[j] & 15] * y[j] + kIQ4Values[q[j] >> 4] * y[j + 16];
      }
      isum += iq4xs_scale(w[i], ib) * s;
    }
    const float dd = a[i].d * fp16_to_fp32(w[i].d);
    sum += static_cast<double>(dd) * isum;
  }
  return static_cast<float>(sum);
}

}  // namespace

// As ggml's quantize_row_q8_K_ref, so activations (and therefore dot products) match llama.cpp's:
// the largest-magnitude element maps to -127 (the -127 rather than -128 keeps every code in
// [-127, 127], which the sign tricks of the SIMD kernels rely on), bsums are sums of 16 codes.
void quantize_act_q8_K(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<block_q8_K*>(vy);
  for (int64_t i = 0, nb = super_blocks(n, "Q8_K"); i < nb; ++i, x += QK_K) {
    float amax = 0, max = 0;
    for (int j = 0; j < QK_K; ++j) {
      const float ax = std::fabs(x[j]);
      if (ax > amax) {
        amax = ax;
        max = x[j];
      }
    }
    if (amax == 0) {
      std::memset(&y[i], 0, sizeof(block_q8_K));
      continue;
    }
    const float iscale = -127.f / max;
    for (int j = 0; j < QK_K; ++j) {
      y[i].qs[j] = static_cast<int8_t>(std::min(127, nearest_int(iscale * x[j])));
    }
    for (int j = 0; j < QK_K / 16; ++j) {
      int s = 0;
      for (int l = 0; l < 16; ++l) s += y[i].qs[16 * j + l];
      y[i].bsums[j] = static_cast<int16_t>(s);
    }
    y[i].d = 1 / iscale;
  }
}

namespace {
// Every k-quant dots with Q8_K activations.
constexpr QuantTraits k_traits(DType type, QuantizeFn quantize, DequantizeFn dequantize,
                               VecDotFn scalar, VecDotFn avx2, VecDotFn avx512,
                               VecDot4Fn dot4_avx512 = nullptr) {
  return {type, DType::Q8_K, quantize, dequantize, scalar, avx2, avx512, dot4_avx512};
}
}  // namespace

const QuantTraits kTraitsQ2_K =
    k_traits(DType::Q2_K, kquant::quantize_q2_K, dequantize_q2_K, dot_q2_K_scalar,
             kernels::dot_q2_K_avx2, kernels::dot_q2_K_avx512, kernels::dot4_q2_K_avx512);
const QuantTraits kTraitsQ3_K =
    k_traits(DType::Q3_K, kquant::quantize_q3_K, dequantize_q3_K, dot_q3_K_scalar,
             kernels::dot_q3_K_avx2, kernels::dot_q3_K_avx512, kernels::dot4_q3_K_avx512);
const QuantTraits kTraitsQ4_K =
    k_traits(DType::Q4_K, kquant::quantize_q4_K, dequantize_q4_K, dot_q4_K_scalar,
             kernels::dot_q4_K_avx2, kernels::dot_q4_K_avx512, kernels::dot4_q4_K_avx512);
const QuantTraits kTraitsQ5_K =
    k_traits(DType::Q5_K, kquant::quantize_q5_K, dequantize_q5_K, dot_q5_K_scalar,
             kernels::dot_q5_K_avx2, kernels::dot_q5_K_avx512, kernels::dot4_q5_K_avx512);
const QuantTraits kTraitsQ6_K =
    k_traits(DType::Q6_K, kquant::quantize_q6_K, dequantize_q6_K, dot_q6_K_scalar,
             kernels::dot_q6_K_avx2, kernels::dot_q6_K_avx512, kernels::dot4_q6_K_avx512);
const QuantTraits kTraitsIQ4_XS =
    k_traits(DType::IQ4_XS, kquant::quantize_iq4_xs, dequantize_iq4_xs, dot_iq4_xs_scalar,
             kernels::dot_iq4_xs_avx2, kernels::dot_iq4_xs_avx512);

}  // namespace squish
