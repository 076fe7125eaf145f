// AVX-512 (F/BW/VL + VNNI) dot products of k-quant weight rows with Q8_K activation rows; the
// decode inner loop. Same scheme as the AVX2 file, on 64-byte vectors: weight codes unpacked to
// unsigned bytes, maddubs with the activation bytes (pairs summed into int16, far from
// saturation), then vpdpwssd multiplies by the per-sub-block scales and accumulates in int32 in
// one instruction. Where a 32-byte field feeds both halves of a vector, it is broadcast and the
// halves are shifted by different amounts (vpsrlvw), which keeps activations contiguous. IQ4_XS,
// whose codes are signed, uses vpdpbusd on codes offset by +128 and takes the offset back out of
// the bsums. See quant_k.h for why the results equal the scalar reference exactly.
//
// GCC 12 warns inside its own AVX-512 headers (_mm512_undefined_*; GCC bug 105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include "kernels/cpu/gemv4.h"
#include "kernels/cpu/quant_k.h"
#include "kernels/cpu/quant_k_simd.h"

namespace squish::kernels {

namespace {

inline __m256i load32(const void* p) {
  return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}
inline __m512i load64(const void* p) {
  return _mm512_loadu_si512(p);
}
// The same 32 bytes in both halves.
inline __m512i bcast32(const void* p) {
  return _mm512_broadcast_i64x4(load32(p));
}

// Halves from two 256-bit vectors (constants fold at compile time).
inline __m512i halves(__m256i lo, __m256i hi) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}
inline __m512i halves16(int lo, int hi) {
  return halves(_mm256_set1_epi16(static_cast<int16_t>(lo)),
                _mm256_set1_epi16(static_cast<int16_t>(hi)));
}
inline __m512i halves8(int lo, int hi) {
  return halves(_mm256_set1_epi8(static_cast<char>(lo)), _mm256_set1_epi8(static_cast<char>(hi)));
}

// vpermw index broadcasting int16 element a to the first half (16 lanes), b to the second.
inline __m512i pick_halves(int a, int b) {
  return halves16(a, b);
}
// vpermw index broadcasting elements b, b+1, b+2, b+3 to the four 128-bit lanes (8 lanes each):
// one scale per 16-element sub-block.
inline __m512i pick_quarters(int b) {
  return halves(_mm256_setr_m128i(_mm_set1_epi16(static_cast<int16_t>(b)),
                                  _mm_set1_epi16(static_cast<int16_t>(b + 1))),
                _mm256_setr_m128i(_mm_set1_epi16(static_cast<int16_t>(b + 2)),
                                  _mm_set1_epi16(static_cast<int16_t>(b + 3))));
}

inline __m256i fold(__m512i v) {
  return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
}

// Q2_K / Q3_K low bits of the 64 elements 128h + 64t .. +63: the half's 32 bytes broadcast, the
// first half shifted by 4t and the second by 4t + 2.
inline __m512i two_bit_codes(__m512i q, int t) {
  return _mm512_and_si512(_mm512_srlv_epi16(q, halves16(4 * t, 4 * t + 2)), _mm512_set1_epi8(3));
}

// Each function below computes one super-block; accumulate() (quant_k_simd.h) does the rest.

[[gnu::always_inline]] inline SuperBlockSums q2_K(const block_q2_K& w, const block_q8_K& a) {
  const __m128i m15 = _mm_set1_epi8(15);
  const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w.scales));
  const __m512i sc = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(_mm_and_si128(packed, m15)));
  const __m256i mn = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), m15));
  __m512i acc = _mm512_setzero_si512();
  for (int h = 0; h < 2; ++h) {
    const __m512i q = bcast32(w.qs + 32 * h);
    for (int t = 0; t < 2; ++t) {
      const __m512i p = _mm512_maddubs_epi16(two_bit_codes(q, t), load64(a.qs + 128 * h + 64 * t));
      acc = _mm512_dpwssd_epi32(acc, p, _mm512_permutexvar_epi16(pick_quarters(8 * h + 4 * t), sc));
    }
  }
  return {fold(acc), _mm256_madd_epi16(mn, load32(a.bsums)), a.d * half(w.d), a.d * half(w.dmin)};
}

[[gnu::always_inline]] inline SuperBlockSums q3_K(const block_q3_K& w, const block_q8_K& a) {
  const __m256i sc16 = _mm256_cvtepi8_epi16(unpack_scales_q3_K_sse(w.scales));
  const __m512i sc = _mm512_castsi256_si512(sc16);
  const __m512i hm = bcast32(w.hmask);
  const __m512i m4 = _mm512_set1_epi8(4);
  __m512i acc = _mm512_setzero_si512();
  for (int h = 0; h < 2; ++h) {
    const __m512i q = bcast32(w.qs + 32 * h);
    for (int t = 0; t < 2; ++t) {
      // Group g = 2t (first half) / 2t + 1 (second) has its high bits at hmask bit 4h + g.
      const __mmask64 high =
          _mm512_test_epi8_mask(hm, halves8(1 << (4 * h + 2 * t), 1 << (4 * h + 2 * t + 1)));
      const __m512i low = two_bit_codes(q, t);
      const __m512i p = _mm512_maddubs_epi16(_mm512_mask_add_epi8(low, high, low, m4),
                                             load64(a.qs + 128 * h + 64 * t));
      acc = _mm512_dpwssd_epi32(acc, p, _mm512_permutexvar_epi16(pick_quarters(8 * h + 4 * t), sc));
    }
  }
  // Codes are value + 4; the offset is -4 * sum(scale * bsum).
  const __m256i offset = _mm256_slli_epi32(_mm256_madd_epi16(sc16, load32(a.bsums)), 2);
  return {_mm256_sub_epi32(fold(acc), offset), _mm256_setzero_si256(), a.d * half(w.d), 0.0f};
}

// Q4_K / Q5_K share everything but the fifth bit.
template <bool kFifthBit, class Block>
[[gnu::always_inline]] inline SuperBlockSums q45_K(const Block& w, const block_q8_K& a) {
  const __m512i m15 = _mm512_set1_epi8(15), m16 = _mm512_set1_epi8(16);
  const __m512i nibble_shift = halves16(0, 4);  // low nibbles in the first half, high in the second
  // Scales in bytes 0-7, mins in 8-15; each min covers two bsums, so duplicate them.
  const __m128i sm = unpack_scale_min_k4_sse(w.scales);
  const __m256i msum =
      _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_unpackhi_epi8(sm, sm)), load32(a.bsums));
  const __m512i sc = _mm512_castsi128_si512(_mm_cvtepu8_epi16(sm));
  __m512i acc = _mm512_setzero_si512();
  for (int c = 0; c < 4; ++c) {
    // Chunk c: 64 elements, sub-blocks 2c (low nibbles) and 2c + 1 (high nibbles).
    __m512i u = _mm512_and_si512(_mm512_srlv_epi16(bcast32(w.qs + 32 * c), nibble_shift), m15);
    if constexpr (kFifthBit) {  // qh bit 2c for the low nibbles, 2c + 1 for the high ones
      const __mmask64 high =
          _mm512_test_epi8_mask(bcast32(w.qh), halves8(1 << (2 * c), 1 << (2 * c + 1)));
      u = _mm512_mask_add_epi8(u, high, u, m16);
    }
    const __m512i p = _mm512_maddubs_epi16(u, load64(a.qs + 64 * c));
    acc = _mm512_dpwssd_epi32(acc, p, _mm512_permutexvar_epi16(pick_halves(2 * c, 2 * c + 1), sc));
  }
  return {fold(acc), msum, a.d * half(w.d), a.d * half(w.dmin)};
}

[[gnu::always_inline]] inline SuperBlockSums q6_K(const block_q6_K& w, const block_q8_K& a) {
  const __m512i m15 = _mm512_set1_epi8(15), m48 = _mm512_set1_epi8(48);
  // qh bits (0,1) / (2,3) of the low 64 elements go to bits (4,5); (4,5) / (6,7) of the high ones.
  const __m512i lo_shift = halves16(4, 2), hi_shift = halves16(0, 2);
  const __m256i sc16 =
      _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.scales)));
  const __m512i sc = _mm512_castsi256_si512(sc16);
  __m512i acc = _mm512_setzero_si512();
  for (int h = 0; h < 2; ++h) {
    // ql[64h .. 64h+63]: low nibbles are elements 128h + 0..63 in order, high nibbles 64..127.
    const __m512i ql = load64(w.ql + 64 * h);
    const __m512i qh = bcast32(w.qh + 32 * h);
    const __m512i ulo = _mm512_or_si512(_mm512_and_si512(ql, m15),
                                        _mm512_and_si512(_mm512_sllv_epi16(qh, lo_shift), m48));
    const __m512i uhi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m15),
                                        _mm512_and_si512(_mm512_srlv_epi16(qh, hi_shift), m48));
    const int8_t* y = a.qs + 128 * h;
    acc = _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(ulo, load64(y)),
                              _mm512_permutexvar_epi16(pick_quarters(8 * h), sc));
    acc = _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(uhi, load64(y + 64)),
                              _mm512_permutexvar_epi16(pick_quarters(8 * h + 4), sc));
  }
  // Codes are value + 32; the offset is -32 * sum(scale * bsum).
  const __m256i offset = _mm256_slli_epi32(_mm256_madd_epi16(sc16, load32(a.bsums)), 5);
  return {_mm256_sub_epi32(fold(acc), offset), _mm256_setzero_si256(), a.d * half(w.d), 0.0f};
}

// IQ4_XS codes index a signed code book; vpdpbusd wants unsigned bytes, so the book is stored +128
// and the bias comes back out through the bsums: sum((v + 128) y) = sum(v y) + 128 sum(y).
[[gnu::always_inline]] inline SuperBlockSums iq4_xs(const block_iq4_xs& w, const block_q8_K& a,
                                                    __m512i biased_book) {
  const __m512i m15 = _mm512_set1_epi8(15);
  // Activation halves matching the low / high nibbles: 128-bit lanes 0, 2 (or 1, 3) of each input.
  const __m512i first16 = _mm512_setr_epi64(0, 1, 4, 5, 8, 9, 12, 13);
  const __m512i last16 = _mm512_setr_epi64(2, 3, 6, 7, 10, 11, 14, 15);
  const __m128i ls8 = _mm_packs_epi16(unpack_scales_iq4_xs_sse(w), _mm_setzero_si128());
  __m512i acc = _mm512_setzero_si512();
  for (int t = 0; t < 2; ++t) {
    // Sub-blocks 4t .. 4t+3, one per 128-bit lane: low nibbles are their first 16 elements.
    const __m512i q = load64(w.qs + 64 * t);
    const __m512i vlo = _mm512_shuffle_epi8(biased_book, _mm512_and_si512(q, m15));
    const __m512i vhi =
        _mm512_shuffle_epi8(biased_book, _mm512_and_si512(_mm512_srli_epi16(q, 4), m15));
    const __m512i y0 = load64(a.qs + 128 * t), y1 = load64(a.qs + 128 * t + 64);
    __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), vlo,
                                    _mm512_permutex2var_epi64(y0, first16, y1));
    s = _mm512_dpbusd_epi32(s, vhi, _mm512_permutex2var_epi64(y0, last16, y1));
    // Scale of sub-block 4t + k to all four int32 of lane k.
    const __m128i spread =
        _mm_add_epi8(_mm_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
                     _mm_set1_epi8(static_cast<char>(4 * t)));
    acc = _mm512_add_epi32(
        acc, _mm512_mullo_epi32(s, _mm512_cvtepi8_epi32(_mm_shuffle_epi8(ls8, spread))));
  }
  const __m256i bias = _mm256_slli_epi32(
      _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_unpacklo_epi8(ls8, ls8)), load32(a.bsums)), 7);
  return {_mm256_sub_epi32(fold(acc), bias), _mm256_setzero_si256(), a.d * half(w.d), 0.0f};
}

// ---- Four activation rows per weight row (prefill) ----
// Each weight super-block is unpacked once into registers (codes as unsigned bytes, per-lane
// scales) and applied to four Q8_K blocks: the unpacking costs as much as the multiply-adds, so
// this nearly halves the work per token. The integer sums are the single-row kernels' exactly.

// sum over super-blocks of dd * isum - dm * msum in double for four rows at once, one row per
// lane, in super-block order: per lane the same operations as accumulate(), hence its result.
template <bool kMins, class SuperBlock4>
inline void accumulate4(int64_t nb, float out[4], SuperBlock4&& sb4) {
  __m256d sum = _mm256_setzero_pd();
  for (int64_t i = 0; i < nb; ++i) {
    SuperBlockSums s[4];
    sb4(i, s);
    __m256d t =
        _mm256_mul_pd(_mm256_cvtps_pd(_mm_setr_ps(s[0].dd, s[1].dd, s[2].dd, s[3].dd)),
                      _mm256_cvtepi32_pd(hsum4_epi32(s[0].isum, s[1].isum, s[2].isum, s[3].isum)));
    if constexpr (kMins) {
      t = _mm256_sub_pd(
          t, _mm256_mul_pd(
                 _mm256_cvtps_pd(_mm_setr_ps(s[0].dm, s[1].dm, s[2].dm, s[3].dm)),
                 _mm256_cvtepi32_pd(hsum4_epi32(s[0].msum, s[1].msum, s[2].msum, s[3].msum))));
    }
    sum = _mm256_add_pd(sum, t);
  }
  _mm_storeu_ps(out, _mm256_cvtpd_ps(sum));
}

// A super-block unpacked for the multiply-adds: four 64-byte code vectors with the matching
// int16 scales spread over their lanes (the k-th vpdpwssd of the single-row kernel).
struct Unpacked {
  __m512i codes[4], scales[4];
};

// sum_k dpwssd(maddubs(codes[k], y_k), scales[k]) with y_k the activation bytes 64k .. 64k+63.
[[gnu::always_inline]] inline __m256i apply(const Unpacked& u, const int8_t* y) {
  __m512i acc = _mm512_setzero_si512();
  for (int k = 0; k < 4; ++k) {
    acc =
        _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(u.codes[k], load64(y + 64 * k)), u.scales[k]);
  }
  return fold(acc);
}

// Q2_K / Q3_K chunk order (h, t) is 64-byte activation chunk 2h + t, as in q2_K() / q3_K().
[[gnu::always_inline]] inline void q2_K_4(const block_q2_K& w, const block_q8_K* const a[4],
                                          int64_t i, SuperBlockSums s[4]) {
  const __m128i m15 = _mm_set1_epi8(15);
  const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w.scales));
  const __m512i sc = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(_mm_and_si128(packed, m15)));
  const __m256i mn = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), m15));
  Unpacked u;
  for (int h = 0; h < 2; ++h) {
    const __m512i q = bcast32(w.qs + 32 * h);
    for (int t = 0; t < 2; ++t) {
      u.codes[2 * h + t] = two_bit_codes(q, t);
      u.scales[2 * h + t] = _mm512_permutexvar_epi16(pick_quarters(8 * h + 4 * t), sc);
    }
  }
  const float d = half(w.d), dmin = half(w.dmin);
  for (int k = 0; k < 4; ++k) {
    const block_q8_K& b = a[k][i];
    s[k] = {apply(u, b.qs), _mm256_madd_epi16(mn, load32(b.bsums)), b.d * d, b.d * dmin};
  }
}

[[gnu::always_inline]] inline void q3_K_4(const block_q3_K& w, const block_q8_K* const a[4],
                                          int64_t i, SuperBlockSums s[4]) {
  const __m256i sc16 = _mm256_cvtepi8_epi16(unpack_scales_q3_K_sse(w.scales));
  const __m512i sc = _mm512_castsi256_si512(sc16);
  const __m512i hm = bcast32(w.hmask);
  const __m512i m4 = _mm512_set1_epi8(4);
  Unpacked u;
  for (int h = 0; h < 2; ++h) {
    const __m512i q = bcast32(w.qs + 32 * h);
    for (int t = 0; t < 2; ++t) {
      const __mmask64 high =
          _mm512_test_epi8_mask(hm, halves8(1 << (4 * h + 2 * t), 1 << (4 * h + 2 * t + 1)));
      const __m512i low = two_bit_codes(q, t);
      u.codes[2 * h + t] = _mm512_mask_add_epi8(low, high, low, m4);
      u.scales[2 * h + t] = _mm512_permutexvar_epi16(pick_quarters(8 * h + 4 * t), sc);
    }
  }
  const float d = half(w.d);
  for (int k = 0; k < 4; ++k) {
    const block_q8_K& b = a[k][i];
    const __m256i offset = _mm256_slli_epi32(_mm256_madd_epi16(sc16, load32(b.bsums)), 2);
    s[k] = {_mm256_sub_epi32(apply(u, b.qs), offset), _mm256_setzero_si256(), b.d * d, 0.0f};
  }
}

template <bool kFifthBit, class Block>
[[gnu::always_inline]] inline void q45_K_4(const Block& w, const block_q8_K* const a[4], int64_t i,
                                           SuperBlockSums s[4]) {
  const __m512i m15 = _mm512_set1_epi8(15), m16 = _mm512_set1_epi8(16);
  const __m512i nibble_shift = halves16(0, 4);
  const __m128i sm = unpack_scale_min_k4_sse(w.scales);
  const __m256i mins = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(sm, sm));
  const __m512i sc = _mm512_castsi128_si512(_mm_cvtepu8_epi16(sm));
  Unpacked u;
  for (int c = 0; c < 4; ++c) {
    u.codes[c] = _mm512_and_si512(_mm512_srlv_epi16(bcast32(w.qs + 32 * c), nibble_shift), m15);
    if constexpr (kFifthBit) {
      const __mmask64 high =
          _mm512_test_epi8_mask(bcast32(w.qh), halves8(1 << (2 * c), 1 << (2 * c + 1)));
      u.codes[c] = _mm512_mask_add_epi8(u.codes[c], high, u.codes[c], m16);
    }
    u.scales[c] = _mm512_permutexvar_epi16(pick_halves(2 * c, 2 * c + 1), sc);
  }
  const float d = half(w.d), dmin = half(w.dmin);
  for (int k = 0; k < 4; ++k) {
    const block_q8_K& b = a[k][i];
    s[k] = {apply(u, b.qs), _mm256_madd_epi16(mins, load32(b.bsums)), b.d * d, b.d * dmin};
  }
}

// Chunk order: (h, low nibbles), (h, high nibbles) = activation chunks 2h, 2h + 1, as in q6_K().
[[gnu::always_inline]] inline void q6_K_4(const block_q6_K& w, const block_q8_K* const a[4],
                                          int64_t i, SuperBlockSums s[4]) {
  const __m512i m15 = _mm512_set1_epi8(15), m48 = _mm512_set1_epi8(48);
  const __m512i lo_shift = halves16(4, 2), hi_shift = halves16(0, 2);
  const __m256i sc16 =
      _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.scales)));
  const __m512i sc = _mm512_castsi256_si512(sc16);
  Unpacked u;
  for (int h = 0; h < 2; ++h) {
    const __m512i ql = load64(w.ql + 64 * h);
    const __m512i qh = bcast32(w.qh + 32 * h);
    u.codes[2 * h] = _mm512_or_si512(_mm512_and_si512(ql, m15),
                                     _mm512_and_si512(_mm512_sllv_epi16(qh, lo_shift), m48));
    u.codes[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m15),
                                         _mm512_and_si512(_mm512_srlv_epi16(qh, hi_shift), m48));
    u.scales[2 * h] = _mm512_permutexvar_epi16(pick_quarters(8 * h), sc);
    u.scales[2 * h + 1] = _mm512_permutexvar_epi16(pick_quarters(8 * h + 4), sc);
  }
  const float d = half(w.d);
  for (int k = 0; k < 4; ++k) {
    const block_q8_K& b = a[k][i];
    const __m256i offset = _mm256_slli_epi32(_mm256_madd_epi16(sc16, load32(b.bsums)), 5);
    s[k] = {_mm256_sub_epi32(apply(u, b.qs), offset), _mm256_setzero_si256(), b.d * d, 0.0f};
  }
}

template <bool kMins, class Block, class SuperBlock4>
inline void dot4(int64_t n, const void* vw, const void* const va[4], float out[4],
                 SuperBlock4 sb4) {
  const auto* w = static_cast<const Block*>(vw);
  const block_q8_K* const a[4] = {
      static_cast<const block_q8_K*>(va[0]), static_cast<const block_q8_K*>(va[1]),
      static_cast<const block_q8_K*>(va[2]), static_cast<const block_q8_K*>(va[3])};
  accumulate4<kMins>(n / QK_K, out, [&](int64_t i, SuperBlockSums s[4]) { sb4(w[i], a, i, s); });
}

// Four weight rows against one activation row (decode): the per-row work of the single dot
// is kept, but the reductions to double, the activation loads and the call are shared. Per row,
// the same operations as accumulate(), hence the single dot's result.
template <bool kMins, class Block, class SuperBlock>
inline void rows4(int64_t n, const void* const vw[4], const void* va, float out[4], SuperBlock sb) {
  const Block* const w[4] = {static_cast<const Block*>(vw[0]), static_cast<const Block*>(vw[1]),
                             static_cast<const Block*>(vw[2]), static_cast<const Block*>(vw[3])};
  const auto* a = static_cast<const block_q8_K*>(va);
  accumulate4<kMins>(n / QK_K, out, [&](int64_t i, SuperBlockSums s[4]) {
    for (int k = 0; k < 4; ++k) s[k] = sb(w[k][i], a[i]);
  });
}

inline __m512i iq4_xs_book() {
  alignas(16) uint8_t biased[16];
  for (int k = 0; k < 16; ++k) biased[k] = static_cast<uint8_t>(kIQ4Values[k] + 128);
  return _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(biased)));
}

}  // namespace

float dot_q2_K_avx512(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const block_q2_K*>(vw);
  const auto* a = static_cast<const block_q8_K*>(va);
  return accumulate<true>(n / QK_K, [&](int64_t i) { return q2_K(w[i], a[i]); });
}

float dot_q3_K_avx512(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const block_q3_K*>(vw);
  const auto* a = static_cast<const block_q8_K*>(va);
  return accumulate<false>(n / QK_K, [&](int64_t i) { return q3_K(w[i], a[i]); });
}

float dot_q4_K_avx512(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const block_q4_K*>(vw);
  const auto* a = static_cast<const block_q8_K*>(va);
  return accumulate<true>(n / QK_K, [&](int64_t i) { return q45_K<false>(w[i], a[i]); });
}

float dot_q5_K_avx512(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const block_q5_K*>(vw);
  const auto* a = static_cast<const block_q8_K*>(va);
  return accumulate<true>(n / QK_K, [&](int64_t i) { return q45_K<true>(w[i], a[i]); });
}

float dot_q6_K_avx512(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const block_q6_K*>(vw);
  const auto* a = static_cast<const block_q8_K*>(va);
  return accumulate<false>(n / QK_K, [&](int64_t i) { return q6_K(w[i], a[i]); });
}

float dot_iq4_xs_avx512(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const block_iq4_xs*>(vw);
  const auto* a = static_cast<const block_q8_K*>(va);
  const __m512i book = iq4_xs_book();
  return accumulate<false>(n / QK_K, [&](int64_t i) { return iq4_xs(w[i], a[i], book); });
}

void dot4_q2_K_avx512(int64_t n, const void* w, const void* const a[4], float out[4]) {
  dot4<true, block_q2_K>(n, w, a, out,
                         [](const block_q2_K& b, const block_q8_K* const y[4], int64_t i,
                            SuperBlockSums s[4]) { q2_K_4(b, y, i, s); });
}

void dot4_q3_K_avx512(int64_t n, const void* w, const void* const a[4], float out[4]) {
  dot4<false, block_q3_K>(n, w, a, out,
                          [](const block_q3_K& b, const block_q8_K* const y[4], int64_t i,
                             SuperBlockSums s[4]) { q3_K_4(b, y, i, s); });
}

void dot4_q4_K_avx512(int64_t n, const void* w, const void* const a[4], float out[4]) {
  dot4<true, block_q4_K>(n, w, a, out,
                         [](const block_q4_K& b, const block_q8_K* const y[4], int64_t i,
                            SuperBlockSums s[4]) { q45_K_4<false>(b, y, i, s); });
}

void dot4_q5_K_avx512(int64_t n, const void* w, const void* const a[4], float out[4]) {
  dot4<true, block_q5_K>(n, w, a, out,
                         [](const block_q5_K& b, const block_q8_K* const y[4], int64_t i,
                            SuperBlockSums s[4]) { q45_K_4<true>(b, y, i, s); });
}

void dot4_q6_K_avx512(int64_t n, const void* w, const void* const a[4], float out[4]) {
  dot4<false, block_q6_K>(n, w, a, out,
                          [](const block_q6_K& b, const block_q8_K* const y[4], int64_t i,
                             SuperBlockSums s[4]) { q6_K_4(b, y, i, s); });
}

void gemv4_q2_K_avx512(int64_t n, const void* const w[4], const void* a, float out[4]) {
  rows4<true, block_q2_K>(n, w, a, out,
                          [](const block_q2_K& b, const block_q8_K& y) { return q2_K(b, y); });
}

void gemv4_q3_K_avx512(int64_t n, const void* const w[4], const void* a, float out[4]) {
  rows4<false, block_q3_K>(n, w, a, out,
                           [](const block_q3_K& b, const block_q8_K& y) { return q3_K(b, y); });
}

void gemv4_q4_K_avx512(int64_t n, const void* const w[4], const void* a, float out[4]) {
  rows4<true, block_q4_K>(
      n, w, a, out, [](const block_q4_K& b, const block_q8_K& y) { return q45_K<false>(b, y); });
}

void gemv4_q5_K_avx512(int64_t n, const void* const w[4], const void* a, float out[4]) {
  rows4<true, block_q5_K>(
      n, w, a, out, [](const block_q5_K& b, const block_q8_K& y) { return q45_K<true>(b, y); });
}

void gemv4_q6_K_avx512(int64_t n, const void* const w[4], const void* a, float out[4]) {
  rows4<false, block_q6_K>(n, w, a, out,
                           [](const block_q6_K& b, const block_q8_K& y) { return q6_K(b, y); });
}

void gemv4_iq4_xs_avx512(int64_t n, const void* const w[4], const void* a, float out[4]) {
  const __m512i book = iq4_xs_book();
  rows4<false, block_iq4_xs>(
      n, w, a, out, [&](const block_iq4_xs& b, const block_q8_K& y) { return iq4_xs(b, y, book); });
}

}  // namespace squish::kernels
