// AVX-512 dot products of the legacy block types with Q8_0 / Q8_1 activations: the decode inner
// loop for these types. Compiled with AVX-512 F/BW/VL/DQ/VNNI; CPUs with AVX-512 but without
// VNNI (Skylake-X) are sent to the AVX2 kernels.
//
// Two blocks share a 512-bit register (block b in bytes 0..31, b + 1 in 32..63) and each
// iteration handles four blocks with two accumulators. vpdpbusd multiplies unsigned by signed
// bytes and sums groups of four into i32 without saturation, so every weight is made unsigned
// by an offset (+8 / +16 for Q4_0 / Q5_0, +128 for Q8_0 and IQ4_NL's table) and the offset's
// share, offset * sum(a), is a second vpdpbusd of a constant with the activations. That is exact
// for any byte values, including -128.
// GCC 12 warns inside its own AVX-512 headers (_mm512_undefined_*; GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>

#include "kernels/cpu/gemv4.h"
#include "quant/legacy.h"

namespace squish::kernels {

namespace {

bool has_vnni() {
  static const bool vnni = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vnni") != 0;
  }();
  return vnni;
}

inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Activations of blocks b0 and b1 side by side.
inline __m512i load_pair(const int8_t* a0, const int8_t* a1) {
  return _mm512_inserti64x4(
      _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a0))),
      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a1)), 1);
}

// Two blocks' 16 packed bytes -> 2 x 32 nibbles, each block in element order (low nibbles are
// elements 0..15, high nibbles 16..31): 128-bit lanes q0, q0 >> 4, q1, q1 >> 4.
inline __m512i nibbles_pair(const uint8_t* q0, const uint8_t* q1) {
  const __m256i q = _mm256_inserti128_si256(
      _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q0))),
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(q1)), 1);
  const __m512i dup = _mm512_shuffle_i64x2(_mm512_castsi256_si512(q), _mm512_castsi256_si512(q),
                                           _MM_SHUFFLE(1, 1, 0, 0));
  const __m512i lanes = _mm512_mask_blend_epi64(0xCC, dup, _mm512_srli_epi16(dup, 4));
  return _mm512_and_si512(lanes, _mm512_set1_epi8(0x0F));
}

// Fifth bits of two blocks as a byte mask: bit j of qh is element j.
inline __mmask64 high_bits_pair(const uint8_t* qh0, const uint8_t* qh1) {
  uint32_t h0, h1;
  std::memcpy(&h0, qh0, 4);
  std::memcpy(&h1, qh1, 4);
  return _cvtu64_mask64(h0 | (static_cast<uint64_t>(h1) << 32));
}

inline __m512i offset_dot(__m512i u, __m512i a, __m512i offset) {
  const __m512i zero = _mm512_setzero_si512();
  return _mm512_sub_epi32(_mm512_dpbusd_epi32(zero, u, a), _mm512_dpbusd_epi32(zero, offset, a));
}

// d_w * d_a of block b0 in the low 8 lanes, of b1 in the high 8.
inline __m512 scales_pair(float s0, float s1) {
  return _mm512_insertf32x8(_mm512_set1_ps(s0), _mm256_set1_ps(s1), 1);
}

// Eight fp16 fields (one per block) converted at once: per-block scalar conversions would cost
// more than the integer work of a block.
template <class B, class F>
inline __m256 halves8(const B* blk, int64_t b, F field) {
  auto h = [&](int i) { return static_cast<short>(field(blk[b + i])); };
  return _mm256_cvtph_ps(_mm_setr_epi16(h(0), h(1), h(2), h(3), h(4), h(5), h(6), h(7)));
}

// Drives pair_sums(b0, b1) -> 16 x i32 partial sums (b0 in the low 8 lanes) over the row: eight
// blocks per iteration with their scales converted together and spread to pairs by vpermps,
// then pairs, then an odd block paired with itself at scale 0 for the second half. kMin adds the
// Q8_1 min term m_w * s_a per block.
template <bool kMin, class W, class A, class F>
inline float accumulate(int64_t n, const W* w, const A* a, F pair_sums) {
  const int64_t nb = n / 32;
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  __m256 acc_min = _mm256_setzero_ps();
  float summ = 0.0f;
  auto d = [](const auto& blk) { return blk.d; };
  int64_t b = 0;
  for (; b + 7 < nb; b += 8) {
    const __m512 s8 = _mm512_castps256_ps512(_mm256_mul_ps(halves8(w, b, d), halves8(a, b, d)));
    auto spread = [&](int k) {  // lanes 0..7 <- scale 2k, lanes 8..15 <- scale 2k + 1
      return _mm512_permutexvar_ps(
          _mm512_inserti64x4(_mm512_set1_epi32(2 * k), _mm256_set1_epi32(2 * k + 1), 1), s8);
    };
    acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pair_sums(b, b + 1)), spread(0), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pair_sums(b + 2, b + 3)), spread(1), acc1);
    acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pair_sums(b + 4, b + 5)), spread(2), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pair_sums(b + 6, b + 7)), spread(3), acc1);
    if constexpr (kMin) {
      acc_min = _mm256_fmadd_ps(halves8(w, b, [](const auto& blk) { return blk.m; }),
                                halves8(a, b, [](const auto& blk) { return blk.s; }), acc_min);
    }
  }
  auto scale = [&](int64_t i) { return _cvtsh_ss(w[i].d) * _cvtsh_ss(a[i].d); };
  auto mins = [&](int64_t i) {
    if constexpr (kMin) summ += _cvtsh_ss(w[i].m) * _cvtsh_ss(a[i].s);
  };
  for (; b + 1 < nb; b += 2) {
    acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pair_sums(b, b + 1)),
                           scales_pair(scale(b), scale(b + 1)), acc0);
    mins(b), mins(b + 1);
  }
  if (b < nb) {
    acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pair_sums(b, b)), scales_pair(scale(b), 0.0f), acc1);
    mins(b);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) + hsum8(acc_min) + summ;
}

// accumulate() for four activation rows sharing one weight row: pair_sums4(b0, b1, p) sets p[k]
// to row k's pair sums, unpacking the weight blocks once. Per row, the same float operations in
// the same order as accumulate<false>, hence the same results.
template <class W, class A, class F>
inline void accumulate4(int64_t n, const W* w, const A* const a[4], float out[4], F pair_sums4) {
  const int64_t nb = n / 32;
  __m512 acc0[4], acc1[4];
  for (int k = 0; k < 4; ++k) acc0[k] = acc1[k] = _mm512_setzero_ps();
  auto d = [](const auto& blk) { return blk.d; };
  __m512i p[4];
  int64_t b = 0;
  for (; b + 7 < nb; b += 8) {
    const __m256 wd = halves8(w, b, d);
    __m512 s8[4];
    for (int k = 0; k < 4; ++k) {
      s8[k] = _mm512_castps256_ps512(_mm256_mul_ps(wd, halves8(a[k], b, d)));
    }
    auto spread = [&](int k, int j) {
      return _mm512_permutexvar_ps(
          _mm512_inserti64x4(_mm512_set1_epi32(2 * j), _mm256_set1_epi32(2 * j + 1), 1), s8[k]);
    };
    for (int j = 0; j < 4; ++j) {
      pair_sums4(b + 2 * j, b + 2 * j + 1, p);
      for (int k = 0; k < 4; ++k) {
        __m512& acc = (j % 2 == 0) ? acc0[k] : acc1[k];
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p[k]), spread(k, j), acc);
      }
    }
  }
  auto scale = [&](int k, int64_t i) { return _cvtsh_ss(w[i].d) * _cvtsh_ss(a[k][i].d); };
  for (; b + 1 < nb; b += 2) {
    pair_sums4(b, b + 1, p);
    for (int k = 0; k < 4; ++k) {
      acc0[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p[k]), scales_pair(scale(k, b), scale(k, b + 1)),
                                acc0[k]);
    }
  }
  if (b < nb) {
    pair_sums4(b, b, p);
    for (int k = 0; k < 4; ++k) {
      acc1[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p[k]), scales_pair(scale(k, b), 0.0f), acc1[k]);
    }
  }
  for (int k = 0; k < 4; ++k) out[k] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[k], acc1[k]));
}

// accumulate<false>() for four weight rows sharing one activation row (decode): pair_sums_rows
// (b0, b1, p) sets p[k] to row k's pair sums. Per row, the same float operations in the same
// order as accumulate<false>, hence the same results; the activation scales are converted once.
template <class W, class A, class F>
inline void accumulate_rows4(int64_t n, const W* const w[4], const A* a, float out[4],
                             F pair_sums_rows) {
  const int64_t nb = n / 32;
  __m512 acc0[4], acc1[4];
  for (int k = 0; k < 4; ++k) acc0[k] = acc1[k] = _mm512_setzero_ps();
  auto d = [](const auto& blk) { return blk.d; };
  __m512i p[4];
  int64_t b = 0;
  for (; b + 7 < nb; b += 8) {
    const __m256 ad = halves8(a, b, d);
    __m512 s8[4];
    for (int k = 0; k < 4; ++k)
      s8[k] = _mm512_castps256_ps512(_mm256_mul_ps(halves8(w[k], b, d), ad));
    auto spread = [&](int k, int j) {
      return _mm512_permutexvar_ps(
          _mm512_inserti64x4(_mm512_set1_epi32(2 * j), _mm256_set1_epi32(2 * j + 1), 1), s8[k]);
    };
    for (int j = 0; j < 4; ++j) {
      pair_sums_rows(b + 2 * j, b + 2 * j + 1, p);
      for (int k = 0; k < 4; ++k) {
        __m512& acc = (j % 2 == 0) ? acc0[k] : acc1[k];
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p[k]), spread(k, j), acc);
      }
    }
  }
  auto scale = [&](int k, int64_t i) { return _cvtsh_ss(w[k][i].d) * _cvtsh_ss(a[i].d); };
  for (; b + 1 < nb; b += 2) {
    pair_sums_rows(b, b + 1, p);
    for (int k = 0; k < 4; ++k) {
      acc0[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p[k]), scales_pair(scale(k, b), scale(k, b + 1)),
                                acc0[k]);
    }
  }
  if (b < nb) {
    pair_sums_rows(b, b, p);
    for (int k = 0; k < 4; ++k) {
      acc1[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p[k]), scales_pair(scale(k, b), 0.0f), acc1[k]);
    }
  }
  // accumulate() adds hsum8(acc_min) + summ, both +0.0f without mins: the same value.
  for (int k = 0; k < 4; ++k) out[k] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[k], acc1[k])) + 0.0f;
}

template <class W>
inline void weight_rows(const void* const vw[4], const W* w[4]) {
  for (int k = 0; k < 4; ++k) w[k] = static_cast<const W*>(vw[k]);
}

// offset * sum(a) of a pair of activation blocks: the part of offset_dot that does not depend on
// the weights, computed once for four rows.
inline __m512i offset_part(__m512i offset, __m512i a) {
  return _mm512_dpbusd_epi32(_mm512_setzero_si512(), offset, a);
}
inline __m512i offset_dot_shared(__m512i u, __m512i a, __m512i offset_sum) {
  return _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), u, a), offset_sum);
}

template <class A>
inline void act_rows(const void* const va[4], const A* a[4]) {
  for (int k = 0; k < 4; ++k) a[k] = static_cast<const A*>(va[k]);
}

}  // namespace

float dot_q4_0_q8_0_avx512(int64_t n, const void* vw, const void* va) {
  if (!has_vnni()) return dot_q4_0_q8_0_avx2(n, vw, va);
  const auto* w = static_cast<const block_q4_0*>(vw);
  const auto* a = static_cast<const block_q8_0*>(va);
  const __m512i offset = _mm512_set1_epi8(8);
  return accumulate<false>(n, w, a, [&](int64_t b0, int64_t b1) {
    return offset_dot(nibbles_pair(w[b0].qs, w[b1].qs), load_pair(a[b0].qs, a[b1].qs), offset);
  });
}

float dot_q4_1_q8_1_avx512(int64_t n, const void* vw, const void* va) {
  if (!has_vnni()) return dot_q4_1_q8_1_avx2(n, vw, va);
  const auto* w = static_cast<const block_q4_1*>(vw);
  const auto* a = static_cast<const block_q8_1*>(va);
  return accumulate<true>(n, w, a, [&](int64_t b0, int64_t b1) {
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), nibbles_pair(w[b0].qs, w[b1].qs),
                               load_pair(a[b0].qs, a[b1].qs));
  });
}

float dot_q5_0_q8_0_avx512(int64_t n, const void* vw, const void* va) {
  if (!has_vnni()) return dot_q5_0_q8_0_avx2(n, vw, va);
  const auto* w = static_cast<const block_q5_0*>(vw);
  const auto* a = static_cast<const block_q8_0*>(va);
  const __m512i offset = _mm512_set1_epi8(16);
  return accumulate<false>(n, w, a, [&](int64_t b0, int64_t b1) {
    const __m512i lo = nibbles_pair(w[b0].qs, w[b1].qs);
    const __m512i u = _mm512_mask_add_epi8(lo, high_bits_pair(w[b0].qh, w[b1].qh), lo, offset);
    return offset_dot(u, load_pair(a[b0].qs, a[b1].qs), offset);
  });
}

float dot_q5_1_q8_1_avx512(int64_t n, const void* vw, const void* va) {
  if (!has_vnni()) return dot_q5_1_q8_1_avx2(n, vw, va);
  const auto* w = static_cast<const block_q5_1*>(vw);
  const auto* a = static_cast<const block_q8_1*>(va);
  const __m512i sixteen = _mm512_set1_epi8(16);
  return accumulate<true>(n, w, a, [&](int64_t b0, int64_t b1) {
    const __m512i lo = nibbles_pair(w[b0].qs, w[b1].qs);
    const __m512i u = _mm512_mask_add_epi8(lo, high_bits_pair(w[b0].qh, w[b1].qh), lo, sixteen);
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, load_pair(a[b0].qs, a[b1].qs));
  });
}

float dot_q8_0_q8_0_avx512(int64_t n, const void* vw, const void* va) {
  if (!has_vnni()) return dot_q8_0_q8_0_avx2(n, vw, va);
  const auto* w = static_cast<const block_q8_0*>(vw);
  const auto* a = static_cast<const block_q8_0*>(va);
  const __m512i offset = _mm512_set1_epi8(static_cast<char>(0x80));
  return accumulate<false>(n, w, a, [&](int64_t b0, int64_t b1) {
    // w ^ 0x80 is w + 128 read as unsigned.
    const __m512i u = _mm512_xor_si512(load_pair(w[b0].qs, w[b1].qs), offset);
    return offset_dot(u, load_pair(a[b0].qs, a[b1].qs), offset);
  });
}

float dot_iq4_nl_q8_0_avx512(int64_t n, const void* vw, const void* va) {
  if (!has_vnni()) return dot_iq4_nl_q8_0_avx2(n, vw, va);
  const auto* w = static_cast<const block_iq4_nl*>(vw);
  const auto* a = static_cast<const block_q8_0*>(va);
  // The table shifted by +128 (1..241), so lookups come out unsigned.
  alignas(16) uint8_t shifted[16];
  for (int i = 0; i < 16; ++i) shifted[i] = static_cast<uint8_t>(kIQ4NLValues[i] + 128);
  const __m512i table =
      _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(shifted)));
  const __m512i offset = _mm512_set1_epi8(static_cast<char>(0x80));
  return accumulate<false>(n, w, a, [&](int64_t b0, int64_t b1) {
    const __m512i u = _mm512_shuffle_epi8(table, nibbles_pair(w[b0].qs, w[b1].qs));
    return offset_dot(u, load_pair(a[b0].qs, a[b1].qs), offset);
  });
}

void dot4_q5_0_q8_0_avx512(int64_t n, const void* vw, const void* const va[4], float out[4]) {
  if (!has_vnni()) {
    for (int k = 0; k < 4; ++k) out[k] = dot_q5_0_q8_0_avx2(n, vw, va[k]);
    return;
  }
  const auto* w = static_cast<const block_q5_0*>(vw);
  const block_q8_0* a[4];
  act_rows(va, a);
  const __m512i offset = _mm512_set1_epi8(16);
  accumulate4(n, w, a, out, [&](int64_t b0, int64_t b1, __m512i p[4]) {
    const __m512i lo = nibbles_pair(w[b0].qs, w[b1].qs);
    const __m512i u = _mm512_mask_add_epi8(lo, high_bits_pair(w[b0].qh, w[b1].qh), lo, offset);
    for (int k = 0; k < 4; ++k) p[k] = offset_dot(u, load_pair(a[k][b0].qs, a[k][b1].qs), offset);
  });
}

void dot4_q8_0_q8_0_avx512(int64_t n, const void* vw, const void* const va[4], float out[4]) {
  if (!has_vnni()) {
    for (int k = 0; k < 4; ++k) out[k] = dot_q8_0_q8_0_avx2(n, vw, va[k]);
    return;
  }
  const auto* w = static_cast<const block_q8_0*>(vw);
  const block_q8_0* a[4];
  act_rows(va, a);
  const __m512i offset = _mm512_set1_epi8(static_cast<char>(0x80));
  accumulate4(n, w, a, out, [&](int64_t b0, int64_t b1, __m512i p[4]) {
    const __m512i u = _mm512_xor_si512(load_pair(w[b0].qs, w[b1].qs), offset);
    for (int k = 0; k < 4; ++k) p[k] = offset_dot(u, load_pair(a[k][b0].qs, a[k][b1].qs), offset);
  });
}

// ---- Four weight rows against one activation row (decode) ----

void gemv4_q4_0_q8_0_avx512(int64_t n, const void* const vw[4], const void* va, float out[4]) {
  if (!has_vnni()) {
    for (int k = 0; k < 4; ++k) out[k] = dot_q4_0_q8_0_avx2(n, vw[k], va);
    return;
  }
  const block_q4_0* w[4];
  weight_rows(vw, w);
  const auto* a = static_cast<const block_q8_0*>(va);
  const __m512i offset = _mm512_set1_epi8(8);
  accumulate_rows4(n, w, a, out, [&](int64_t b0, int64_t b1, __m512i p[4]) {
    const __m512i y = load_pair(a[b0].qs, a[b1].qs);
    const __m512i off = offset_part(offset, y);
    for (int k = 0; k < 4; ++k) {
      p[k] = offset_dot_shared(nibbles_pair(w[k][b0].qs, w[k][b1].qs), y, off);
    }
  });
}

void gemv4_q5_0_q8_0_avx512(int64_t n, const void* const vw[4], const void* va, float out[4]) {
  if (!has_vnni()) {
    for (int k = 0; k < 4; ++k) out[k] = dot_q5_0_q8_0_avx2(n, vw[k], va);
    return;
  }
  const block_q5_0* w[4];
  weight_rows(vw, w);
  const auto* a = static_cast<const block_q8_0*>(va);
  const __m512i offset = _mm512_set1_epi8(16);
  accumulate_rows4(n, w, a, out, [&](int64_t b0, int64_t b1, __m512i p[4]) {
    const __m512i y = load_pair(a[b0].qs, a[b1].qs);
    const __m512i off = offset_part(offset, y);
    for (int k = 0; k < 4; ++k) {
      const __m512i lo = nibbles_pair(w[k][b0].qs, w[k][b1].qs);
      const __m512i u =
          _mm512_mask_add_epi8(lo, high_bits_pair(w[k][b0].qh, w[k][b1].qh), lo, offset);
      p[k] = offset_dot_shared(u, y, off);
    }
  });
}

void gemv4_q8_0_q8_0_avx512(int64_t n, const void* const vw[4], const void* va, float out[4]) {
  if (!has_vnni()) {
    for (int k = 0; k < 4; ++k) out[k] = dot_q8_0_q8_0_avx2(n, vw[k], va);
    return;
  }
  const block_q8_0* w[4];
  weight_rows(vw, w);
  const auto* a = static_cast<const block_q8_0*>(va);
  const __m512i offset = _mm512_set1_epi8(static_cast<char>(0x80));
  accumulate_rows4(n, w, a, out, [&](int64_t b0, int64_t b1, __m512i p[4]) {
    const __m512i y = load_pair(a[b0].qs, a[b1].qs);
    const __m512i off = offset_part(offset, y);
    for (int k = 0; k < 4; ++k) {
      p[k] =
          offset_dot_shared(_mm512_xor_si512(load_pair(w[k][b0].qs, w[k][b1].qs), offset), y, off);
    }
  });
}

void gemv4_iq4_nl_q8_0_avx512(int64_t n, const void* const vw[4], const void* va, float out[4]) {
  if (!has_vnni()) {
    for (int k = 0; k < 4; ++k) out[k] = dot_iq4_nl_q8_0_avx2(n, vw[k], va);
    return;
  }
  const block_iq4_nl* w[4];
  weight_rows(vw, w);
  const auto* a = static_cast<const block_q8_0*>(va);
  alignas(16) uint8_t shifted[16];
  for (int i = 0; i < 16; ++i) shifted[i] = static_cast<uint8_t>(kIQ4NLValues[i] + 128);
  const __m512i table =
      _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(shifted)));
  const __m512i offset = _mm512_set1_epi8(static_cast<char>(0x80));
  accumulate_rows4(n, w, a, out, [&](int64_t b0, int64_t b1, __m512i p[4]) {
    const __m512i y = load_pair(a[b0].qs, a[b1].qs);
    const __m512i off = offset_part(offset, y);
    for (int k = 0; k < 4; ++k) {
      p[k] = offset_dot_shared(_mm512_shuffle_epi8(table, nibbles_pair(w[k][b0].qs, w[k][b1].qs)),
                               y, off);
    }
  });
}

}  // namespace squish::kernels
