// AVX2 dot products of the legacy block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL) with
// Q8_0 / Q8_1 activations; compiled with -mavx2 -mfma -mf16c, called only on such CPUs.
//
// Per block: widen the weights to 32 bytes in element order, multiply with the 32 activation
// bytes by vpmaddubsw (u8 x s8, adjacent pairs summed into i16), widen to 8 x i32 by vpmaddwd,
// convert and accumulate d_w * d_a * that in float lanes. vpmaddubsw saturates at +-32767, so
// every operand pair is kept below that: unsigned nibbles (<= 31) against activations, or
// |a| x sign-adjusted weights (<= 128 x 127) for the signed 8-bit cases.
#include <immintrin.h>

#include <cstring>

#include "quant/legacy.h"

namespace squish::kernels {

namespace {

inline float h2f(uint16_t h) {
  return _cvtsh_ss(h);
}

inline float hsum4(__m128 s) {
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float hsum(__m256 v) {
  return hsum4(_mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)));
}

inline __m256i load32(const int8_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

// 16 packed bytes -> 32 nibbles in element order: low nibbles (elements 0..15), then high.
inline __m256i nibbles(const uint8_t* qs) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0F));
}

// Nibbles plus each element's fifth bit from qh (bit j of the little-endian word -> byte j).
inline __m256i five_bits(const uint8_t* qs, const uint8_t* qh) {
  uint32_t h;
  std::memcpy(&h, qh, 4);
  // Byte j takes qh byte j / 8 (shuffles stay within 128-bit halves, and h is in every dword),
  // then tests its own bit j % 8.
  const __m256i spread =
      _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(h)),
                          _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101,
                                             0x0202020202020202, 0x0303030303030303));
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
  const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
  return _mm256_or_si256(nibbles(qs), _mm256_and_si256(set, _mm256_set1_epi8(0x10)));
}

inline __m256i widen_pairs(__m256i i16) {
  return _mm256_madd_epi16(i16, _mm256_set1_epi16(1));
}

// sum(u * a) per group of 4 bytes for unsigned u <= 31.
inline __m256i dot_unsigned(__m256i u, __m256i a) {
  return widen_pairs(_mm256_maddubs_epi16(u, a));
}

// sum((u - offset) * a): the offset term is folded in i16 before widening.
inline __m256i dot_offset(__m256i u, __m256i a, int8_t offset) {
  return widen_pairs(_mm256_sub_epi16(_mm256_maddubs_epi16(u, a),
                                      _mm256_maddubs_epi16(_mm256_set1_epi8(offset), a)));
}

// sum(w * a) for signed w, a: |w| x (a with w's sign). Needs a != -128.
inline __m256i dot_signed(__m256i w, __m256i a) {
  return widen_pairs(_mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(a, w)));
}

// Four fp16 fields (one per block) converted at once: per-block scalar conversions cost about
// as much as a block's integer work.
template <class B, class F>
inline __m128 halves4(const B* blk, int64_t b, F field) {
  auto h = [&](int i) { return static_cast<short>(field(blk[b + i])); };
  return _mm_cvtph_ps(_mm_setr_epi16(h(0), h(1), h(2), h(3), 0, 0, 0, 0));
}

// Drives block_sums(b) -> 8 x i32 partial sums of block b over the row: four blocks per
// iteration on two accumulators (independent FMA chains) with their scales converted together,
// then single blocks. kMin adds the Q8_1 min term m_w * s_a per block.
template <bool kMin, class W, class A, class F>
inline float accumulate(int64_t n, const W* w, const A* a, F block_sums) {
  const int64_t nb = n / 32;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  __m128 acc_min = _mm_setzero_ps();
  auto d = [](const auto& blk) { return blk.d; };
  int64_t b = 0;
  for (; b + 3 < nb; b += 4) {
    const __m256 s4 = _mm256_castps128_ps256(_mm_mul_ps(halves4(w, b, d), halves4(a, b, d)));
    auto lane = [&](int k) { return _mm256_permutevar8x32_ps(s4, _mm256_set1_epi32(k)); };
    acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(block_sums(b)), lane(0), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(block_sums(b + 1)), lane(1), acc1);
    acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(block_sums(b + 2)), lane(2), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(block_sums(b + 3)), lane(3), acc1);
    if constexpr (kMin) {
      acc_min = _mm_fmadd_ps(halves4(w, b, [](const auto& blk) { return blk.m; }),
                             halves4(a, b, [](const auto& blk) { return blk.s; }), acc_min);
    }
  }
  float summ = 0.0f;
  for (; b < nb; ++b) {
    if constexpr (kMin) summ += h2f(w[b].m) * h2f(a[b].s);
    const __m256 scale = _mm256_set1_ps(h2f(w[b].d) * h2f(a[b].d));
    acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(block_sums(b)), scale, acc0);
  }
  return hsum(_mm256_add_ps(acc0, acc1)) + hsum4(acc_min) + summ;
}

}  // namespace

float dot_q4_0_q8_0_avx2(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const block_q4_0*>(vw);
  const auto* a = static_cast<const block_q8_0*>(va);
  return accumulate<false>(
      n, w, a, [&](int64_t b) { return dot_offset(nibbles(w[b].qs), load32(a[b].qs), 8); });
}

float dot_q4_1_q8_1_avx2(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const block_q4_1*>(vw);
  const auto* a = static_cast<const block_q8_1*>(va);
  return accumulate<true>(
      n, w, a, [&](int64_t b) { return dot_unsigned(nibbles(w[b].qs), load32(a[b].qs)); });
}

float dot_q5_0_q8_0_avx2(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const block_q5_0*>(vw);
  const auto* a = static_cast<const block_q8_0*>(va);
  return accumulate<false>(n, w, a, [&](int64_t b) {
    return dot_offset(five_bits(w[b].qs, w[b].qh), load32(a[b].qs), 16);
  });
}

float dot_q5_1_q8_1_avx2(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const block_q5_1*>(vw);
  const auto* a = static_cast<const block_q8_1*>(va);
  return accumulate<true>(n, w, a, [&](int64_t b) {
    return dot_unsigned(five_bits(w[b].qs, w[b].qh), load32(a[b].qs));
  });
}

float dot_q8_0_q8_0_avx2(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const block_q8_0*>(vw);
  const auto* a = static_cast<const block_q8_0*>(va);
  return accumulate<false>(n, w, a,
                           [&](int64_t b) { return dot_signed(load32(w[b].qs), load32(a[b].qs)); });
}

float dot_iq4_nl_q8_0_avx2(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const block_iq4_nl*>(vw);
  const auto* a = static_cast<const block_q8_0*>(va);
  const __m256i table =
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kIQ4NLValues)));
  return accumulate<false>(n, w, a, [&](int64_t b) {
    const __m256i values = _mm256_shuffle_epi8(table, nibbles(w[b].qs));  // -127..113
    const __m256i act = load32(a[b].qs);
    // The table never holds -128, so it takes the activation's sign: exact for any activation.
    return widen_pairs(_mm256_maddubs_epi16(_mm256_abs_epi8(act), _mm256_sign_epi8(values, act)));
  });
}

}  // namespace squish::kernels
