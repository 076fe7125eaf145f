// AVX2 dot products of k-quant weight rows with Q8_K activation rows (compiled with
// -mavx2 -mfma; called only when the CPU has them). One super-block per iteration: weight codes
// are unpacked to unsigned bytes, multiplied with the activation bytes by maddubs (pairs summed
// into int16; every product here stays far from int16 saturation), and the sub-block scales are
// applied by madd_epi16 into int32. Offsets (Q3_K's -4, Q6_K's -32) and mins go through the
// activation block sums (bsums), so they cost one madd per super-block. See quant_k.h for why the
// results equal the scalar reference exactly.
#include <immintrin.h>

#include "kernels/cpu/quant_k.h"
#include "kernels/cpu/quant_k_simd.h"

namespace squish::kernels {

namespace {

inline __m256i load32(const void* p) {
  return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}

// Moves bit `from` of every byte to bit `to` (other bits are garbage; callers mask). 16-bit
// shifts are fine: the bit never crosses its byte.
template <int from, int to>
inline __m256i move_bit(__m256i v) {
  if constexpr (to > from) return _mm256_slli_epi16(v, to - from);
  if constexpr (to < from) return _mm256_srli_epi16(v, from - to);
  return v;
}

// Both 128-bit lanes set to lane h of v.
inline __m256i same_lanes(__m256i v, int h) {
  return h ? _mm256_permute2x128_si256(v, v, 0x11) : _mm256_permute2x128_si256(v, v, 0x00);
}

// Shuffle control selecting int16 element a in the low 128-bit lane and b in the high lane
// (each lane of the source must hold the same 8 int16).
inline __m256i pick16(int a, int b) {
  const int16_t ca = static_cast<int16_t>((2 * a) | ((2 * a + 1) << 8));
  const int16_t cb = static_cast<int16_t>((2 * b) | ((2 * b + 1) << 8));
  return _mm256_setr_m128i(_mm_set1_epi16(ca), _mm_set1_epi16(cb));
}

// 32 codes times 32 activations, pairs summed by maddubs, then each 16-element half multiplied by
// its sub-block scale (int16 scales8 in both lanes, elements a and a + 1) and summed into int32.
inline __m256i scaled_dot32(__m256i codes, const int8_t* y, __m256i scales8, int a) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(codes, load32(y)),
                           _mm256_shuffle_epi8(scales8, pick16(a, a + 1)));
}

// Each function below computes one super-block; accumulate() (quant_k_simd.h) does the rest.

[[gnu::always_inline]] inline SuperBlockSums q2_K(const block_q2_K& w, const block_q8_K& a) {
  const __m256i m3 = _mm256_set1_epi8(3);
  const __m128i m15 = _mm_set1_epi8(15);
  const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w.scales));
  const __m256i sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(packed, m15));
  const __m256i mn16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), m15));
  __m256i acc = _mm256_setzero_si256();
  for (int h = 0; h < 2; ++h) {
    // Byte l of the half's 32 holds elements l, l + 32, l + 64, l + 96 (2 bits each).
    const __m256i q = load32(w.qs + 32 * h);
    const __m256i sc = same_lanes(sc16, h);
    const int8_t* y = a.qs + 128 * h;
    const __m256i p0 = scaled_dot32(_mm256_and_si256(q, m3), y, sc, 0);
    const __m256i p1 = scaled_dot32(_mm256_and_si256(_mm256_srli_epi16(q, 2), m3), y + 32, sc, 2);
    const __m256i p2 = scaled_dot32(_mm256_and_si256(_mm256_srli_epi16(q, 4), m3), y + 64, sc, 4);
    const __m256i p3 = scaled_dot32(_mm256_and_si256(_mm256_srli_epi16(q, 6), m3), y + 96, sc, 6);
    acc =
        _mm256_add_epi32(acc, _mm256_add_epi32(_mm256_add_epi32(p0, p1), _mm256_add_epi32(p2, p3)));
  }
  return {acc, _mm256_madd_epi16(mn16, load32(a.bsums)), a.d * half(w.d), a.d * half(w.dmin)};
}

// Q3_K codes of group g (elements 32g .. 32g + 31 of a half): 2 low bits from q, bit 2 from the
// half's hmask bits (pre-shifted so that group g's bit is bit g).
template <int g>
inline __m256i q3_codes(__m256i q, __m256i hm) {
  const __m256i low = _mm256_and_si256(_mm256_srli_epi16(q, 2 * g), _mm256_set1_epi8(3));
  return _mm256_or_si256(low, _mm256_and_si256(move_bit<g, 2>(hm), _mm256_set1_epi8(4)));
}

[[gnu::always_inline]] inline SuperBlockSums q3_K(const block_q3_K& w, const block_q8_K& a) {
  const __m256i sc16 = _mm256_cvtepi8_epi16(unpack_scales_q3_K_sse(w.scales));
  // Codes are value + 4; the offset is -4 * sum(scale * bsum).
  __m256i acc = _mm256_sub_epi32(_mm256_setzero_si256(),
                                 _mm256_slli_epi32(_mm256_madd_epi16(sc16, load32(a.bsums)), 2));
  const __m256i hm = load32(w.hmask);
  for (int h = 0; h < 2; ++h) {
    const __m256i q = load32(w.qs + 32 * h);
    const __m256i sc = same_lanes(sc16, h);
    const int8_t* y = a.qs + 128 * h;
    // Group g of half h has its high bit at hmask bit 4h + g.
    const __m256i hm_h = h ? _mm256_srli_epi16(hm, 4) : hm;
    const __m256i p0 = scaled_dot32(q3_codes<0>(q, hm_h), y, sc, 0);
    const __m256i p1 = scaled_dot32(q3_codes<1>(q, hm_h), y + 32, sc, 2);
    const __m256i p2 = scaled_dot32(q3_codes<2>(q, hm_h), y + 64, sc, 4);
    const __m256i p3 = scaled_dot32(q3_codes<3>(q, hm_h), y + 96, sc, 6);
    acc =
        _mm256_add_epi32(acc, _mm256_add_epi32(_mm256_add_epi32(p0, p1), _mm256_add_epi32(p2, p3)));
  }
  return {acc, _mm256_setzero_si256(), a.d * half(w.d), 0.0f};
}

// Q4_K / Q5_K chunk c: 64 elements, sub-blocks 2c (low nibbles, plus qh bit 2c for Q5_K) and
// 2c + 1 (high nibbles, plus qh bit 2c + 1).
template <int c, bool kFifthBit>
inline __m256i q45_chunk(const uint8_t* qs, __m256i qh, const int8_t* y, __m256i scb) {
  const __m256i m15 = _mm256_set1_epi8(15), m16 = _mm256_set1_epi8(16);
  const __m256i q = load32(qs + 32 * c);
  __m256i ulo = _mm256_and_si256(q, m15), uhi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m15);
  if constexpr (kFifthBit) {
    ulo = _mm256_or_si256(ulo, _mm256_and_si256(move_bit<2 * c, 4>(qh), m16));
    uhi = _mm256_or_si256(uhi, _mm256_and_si256(move_bit<2 * c + 1, 4>(qh), m16));
  }
  const __m256i plo = _mm256_maddubs_epi16(ulo, load32(y + 64 * c));
  const __m256i phi = _mm256_maddubs_epi16(uhi, load32(y + 64 * c + 32));
  return _mm256_add_epi32(
      _mm256_madd_epi16(plo, _mm256_shuffle_epi8(scb, pick16(2 * c, 2 * c))),
      _mm256_madd_epi16(phi, _mm256_shuffle_epi8(scb, pick16(2 * c + 1, 2 * c + 1))));
}

template <bool kFifthBit, class Block>
[[gnu::always_inline]] inline SuperBlockSums q45_K(const Block& w, const block_q8_K& a) {
  // Scales in bytes 0-7, mins in 8-15; each min covers two bsums, so duplicate them.
  const __m128i sm = unpack_scale_min_k4_sse(w.scales);
  const __m256i msum =
      _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_unpackhi_epi8(sm, sm)), load32(a.bsums));
  const __m256i scb = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));
  __m256i qh = _mm256_setzero_si256();
  if constexpr (kFifthBit) qh = load32(w.qh);
  const __m256i acc =
      _mm256_add_epi32(_mm256_add_epi32(q45_chunk<0, kFifthBit>(w.qs, qh, a.qs, scb),
                                        q45_chunk<1, kFifthBit>(w.qs, qh, a.qs, scb)),
                       _mm256_add_epi32(q45_chunk<2, kFifthBit>(w.qs, qh, a.qs, scb),
                                        q45_chunk<3, kFifthBit>(w.qs, qh, a.qs, scb)));
  return {acc, msum, a.d * half(w.d), a.d * half(w.dmin)};
}

[[gnu::always_inline]] inline SuperBlockSums q6_K(const block_q6_K& w, const block_q8_K& a) {
  const __m256i m15 = _mm256_set1_epi8(15), m48 = _mm256_set1_epi8(48);
  const __m256i sc16 =
      _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.scales)));
  // Codes are value + 32; the offset is -32 * sum(scale * bsum).
  __m256i acc = _mm256_sub_epi32(_mm256_setzero_si256(),
                                 _mm256_slli_epi32(_mm256_madd_epi16(sc16, load32(a.bsums)), 5));
  for (int h = 0; h < 2; ++h) {
    const __m256i ql0 = load32(w.ql + 64 * h), ql1 = load32(w.ql + 64 * h + 32);
    const __m256i qh = load32(w.qh + 32 * h);
    const __m256i sc = same_lanes(sc16, h);
    const int8_t* y = a.qs + 128 * h;
    // Top 2 bits of elements l, l+32, l+64, l+96 sit at qh bits 0, 2, 4, 6; move each to 4.
    const __m256i u0 =
        _mm256_or_si256(_mm256_and_si256(ql0, m15), _mm256_and_si256(move_bit<0, 4>(qh), m48));
    const __m256i u1 =
        _mm256_or_si256(_mm256_and_si256(ql1, m15), _mm256_and_si256(move_bit<2, 4>(qh), m48));
    const __m256i u2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m15),
                                       _mm256_and_si256(qh, m48));
    const __m256i u3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m15),
                                       _mm256_and_si256(move_bit<6, 4>(qh), m48));
    const __m256i p01 =
        _mm256_add_epi32(scaled_dot32(u0, y, sc, 0), scaled_dot32(u1, y + 32, sc, 2));
    const __m256i p23 =
        _mm256_add_epi32(scaled_dot32(u2, y + 64, sc, 4), scaled_dot32(u3, y + 96, sc, 6));
    acc = _mm256_add_epi32(acc, _mm256_add_epi32(p01, p23));
  }
  return {acc, _mm256_setzero_si256(), a.d * half(w.d), 0.0f};
}

[[gnu::always_inline]] inline SuperBlockSums iq4_xs(const block_iq4_xs& w, const block_q8_K& a,
                                                    __m256i book) {
  const __m256i m15 = _mm256_set1_epi8(15);
  const __m256i scb = _mm256_broadcastsi128_si256(unpack_scales_iq4_xs_sse(w));
  __m256i acc = _mm256_setzero_si256();
  for (int p = 0; p < 4; ++p) {
    // Sub-blocks 2p (low lane) and 2p+1 (high lane): low nibbles are their first 16 elements,
    // high nibbles the last 16; gather the matching activation halves.
    const __m256i q = load32(w.qs + 32 * p);
    const __m256i vlo = _mm256_shuffle_epi8(book, _mm256_and_si256(q, m15));
    const __m256i vhi = _mm256_shuffle_epi8(book, _mm256_and_si256(_mm256_srli_epi16(q, 4), m15));
    const __m256i y0 = load32(a.qs + 64 * p), y1 = load32(a.qs + 64 * p + 32);
    const __m256i ylo = _mm256_permute2x128_si256(y0, y1, 0x20);
    const __m256i yhi = _mm256_permute2x128_si256(y0, y1, 0x31);
    // Signed x signed through maddubs: |y| (as unsigned, so -128 -> 128) times v * sign(y).
    const __m256i plo = _mm256_maddubs_epi16(_mm256_abs_epi8(ylo), _mm256_sign_epi8(vlo, ylo));
    const __m256i phi = _mm256_maddubs_epi16(_mm256_abs_epi8(yhi), _mm256_sign_epi8(vhi, yhi));
    const __m256i scp = _mm256_shuffle_epi8(scb, pick16(2 * p, 2 * p + 1));
    acc = _mm256_add_epi32(
        acc, _mm256_add_epi32(_mm256_madd_epi16(plo, scp), _mm256_madd_epi16(phi, scp)));
  }
  return {acc, _mm256_setzero_si256(), a.d * half(w.d), 0.0f};
}

}  // namespace

float dot_q2_K_avx2(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const block_q2_K*>(vw);
  const auto* a = static_cast<const block_q8_K*>(va);
  return accumulate<true>(n / QK_K, [&](int64_t i) { return q2_K(w[i], a[i]); });
}

float dot_q3_K_avx2(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const block_q3_K*>(vw);
  const auto* a = static_cast<const block_q8_K*>(va);
  return accumulate<false>(n / QK_K, [&](int64_t i) { return q3_K(w[i], a[i]); });
}

float dot_q4_K_avx2(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const block_q4_K*>(vw);
  const auto* a = static_cast<const block_q8_K*>(va);
  return accumulate<true>(n / QK_K, [&](int64_t i) { return q45_K<false>(w[i], a[i]); });
}

float dot_q5_K_avx2(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const block_q5_K*>(vw);
  const auto* a = static_cast<const block_q8_K*>(va);
  return accumulate<true>(n / QK_K, [&](int64_t i) { return q45_K<true>(w[i], a[i]); });
}

float dot_q6_K_avx2(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const block_q6_K*>(vw);
  const auto* a = static_cast<const block_q8_K*>(va);
  return accumulate<false>(n / QK_K, [&](int64_t i) { return q6_K(w[i], a[i]); });
}

float dot_iq4_xs_avx2(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const block_iq4_xs*>(vw);
  const auto* a = static_cast<const block_q8_K*>(va);
  const __m256i book =
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kIQ4Values)));
  return accumulate<false>(n / QK_K, [&](int64_t i) { return iq4_xs(w[i], a[i], book); });
}

}  // namespace squish::kernels
