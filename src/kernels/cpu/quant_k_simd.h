// Shared by the k-quant SIMD kernels (quant_k_avx2.cpp, quant_k_avx512.cpp, whose flags make
// AVX2, F16C and SSE4.1 available here): scale unpacking in registers, and the exact
// accumulation of per-super-block results. Internal linkage for the reason given in quant_k.h.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "quant/blocks.h"

namespace squish::kernels {

static inline __m128i load_u32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm_cvtsi32_si128(v);
}

// Exact half -> float (F16C), equal to the scalar fp16_to_fp32.
static inline float half(uint16_t h) {
  return _cvtsh_ss(h);
}

// Q4_K / Q5_K: the 12 packed bytes -> 8 scales (bytes 0-7) and 8 mins (bytes 8-15). With words
// a, b, c of the packed bytes: scales 0-3 = a & 63, scales 4-7 = c & 15 | (a >> 6) << 4,
// mins 0-3 = b & 63, mins 4-7 = c >> 4 | (b >> 6) << 4, all per byte.
static inline __m128i unpack_scale_min_k4_sse(const uint8_t* packed) {
  const __m128i v = _mm_unpacklo_epi64(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(packed)),
                                       load_u32(packed + 8));          // a b c 0
  const __m128i acbc = _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 1, 2, 0));  // a c b c
  const __m128i low = _mm_and_si128(_mm_srlv_epi32(acbc, _mm_setr_epi32(0, 0, 0, 4)),
                                    _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
  const __m128i aabb = _mm_shuffle_epi32(v, _MM_SHUFFLE(1, 1, 0, 0));  // a a b b
  const __m128i high =
      _mm_and_si128(_mm_srli_epi32(aabb, 2), _mm_setr_epi32(0, 0x30303030, 0, 0x30303030));
  return _mm_or_si128(low, high);
}

// Q3_K: the 12 packed bytes -> 16 signed scales (bytes). Scale j's low 4 bits are a nibble of
// word a (j < 4: low, 8..11: high) or b (4..7: low, 12..15: high); its top 2 bits are bits
// 2 * (j / 4) of the bytes of word c.
static inline __m128i unpack_scales_q3_K_sse(const uint8_t* packed) {
  const __m128i v = _mm_unpacklo_epi64(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(packed)),
                                       load_u32(packed + 8));  // a b c 0
  const __m128i abab = _mm_shuffle_epi32(v, _MM_SHUFFLE(1, 0, 1, 0));
  const __m128i cccc = _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 2, 2, 2));
  const __m128i low =
      _mm_and_si128(_mm_srlv_epi32(abab, _mm_setr_epi32(0, 0, 4, 4)), _mm_set1_epi8(15));
  const __m128i high =
      _mm_and_si128(_mm_srlv_epi32(cccc, _mm_setr_epi32(0, 2, 4, 6)), _mm_set1_epi8(3));
  return _mm_sub_epi8(_mm_or_si128(low, _mm_slli_epi32(high, 4)), _mm_set1_epi8(32));
}

// IQ4_XS: the 8 signed 6-bit scales as int16. Low 4 bits: the nibbles of scales_l in order; top
// 2 bits: scales_h >> 2ib, extracted per lane by shifting left then right (mullo by a power of 2
// is the 16-bit variable shift AVX2 lacks).
static inline __m128i unpack_scales_iq4_xs_sse(const block_iq4_xs& b) {
  uint32_t sl;
  std::memcpy(&sl, b.scales_l, 4);
  const __m128i nib =
      _mm_unpacklo_epi8(_mm_cvtsi32_si128(static_cast<int>(sl & 0x0f0f0f0fu)),
                        _mm_cvtsi32_si128(static_cast<int>((sl >> 4) & 0x0f0f0f0fu)));
  const __m128i low = _mm_cvtepu8_epi16(nib);
  const __m128i up =
      _mm_mullo_epi16(_mm_set1_epi16(static_cast<int16_t>(b.scales_h)),
                      _mm_setr_epi16(1 << 14, 1 << 12, 1 << 10, 1 << 8, 1 << 6, 1 << 4, 1 << 2, 1));
  const __m128i high = _mm_srli_epi16(up, 14);
  return _mm_sub_epi16(_mm_or_si128(low, _mm_slli_epi16(high, 4)), _mm_set1_epi16(32));
}

// One super-block's contribution, before the float scaling: the lanes of isum add up to its
// integer dot product (sub-block scales applied), those of msum to its min term (Q2_K, Q4_K,
// Q5_K); dd = d_act * d_w and dm = d_act * dmin_w.
struct SuperBlockSums {
  __m256i isum, msum;
  float dd, dm;
};

// [sum a, sum b, sum c, sum d]: one transposed reduction for four vectors instead of four.
static inline __m128i hsum4_epi32(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i s = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
  return _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
}

static inline int32_t hsum_epi32(__m256i a) {
  const __m128i a4 = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
  const __m128i a2 = _mm_add_epi32(a4, _mm_unpackhi_epi64(a4, a4));
  return _mm_cvtsi128_si32(_mm_add_epi32(a2, _mm_shuffle_epi32(a2, 1)));
}

// sum over super-blocks of dd * isum - dm * msum, in double, in super-block order: the same
// operations as the scalar reference (each product is exact in double, so fusing cannot change
// it), hence the same result bit for bit. The reductions are amortised over four super-blocks,
// and computing four at a time also gives the core independent work to overlap.
template <bool kMins, class SuperBlock>
static inline float accumulate(int64_t nb, SuperBlock&& sb) {
  double sum = 0;
  int64_t i = 0;
  for (; i + 4 <= nb; i += 4) {
    const SuperBlockSums s0 = sb(i), s1 = sb(i + 1), s2 = sb(i + 2), s3 = sb(i + 3);
    __m256d t = _mm256_mul_pd(_mm256_cvtps_pd(_mm_setr_ps(s0.dd, s1.dd, s2.dd, s3.dd)),
                              _mm256_cvtepi32_pd(hsum4_epi32(s0.isum, s1.isum, s2.isum, s3.isum)));
    if constexpr (kMins) {
      t = _mm256_sub_pd(
          t, _mm256_mul_pd(_mm256_cvtps_pd(_mm_setr_ps(s0.dm, s1.dm, s2.dm, s3.dm)),
                           _mm256_cvtepi32_pd(hsum4_epi32(s0.msum, s1.msum, s2.msum, s3.msum))));
    }
    alignas(32) double terms[4];
    _mm256_store_pd(terms, t);
    sum += terms[0];
    sum += terms[1];
    sum += terms[2];
    sum += terms[3];
  }
  for (; i < nb; ++i) {
    const SuperBlockSums s = sb(i);
    if constexpr (kMins) {
      sum += static_cast<double>(s.dd) * hsum_epi32(s.isum) -
             static_cast<double>(s.dm) * hsum_epi32(s.msum);
    } else {
      sum += static_cast<double>(s.dd) * hsum_epi32(s.isum);
    }
  }
  return static_cast<float>(sum);
}

}  // namespace squish::kernels
