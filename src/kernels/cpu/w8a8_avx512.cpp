// W8A8 rows with AVX-512 VNNI: vpdpbusd multiplies 64 unsigned activation bytes (q + 128) by 64
// signed weight codes and adds each four products into an int32 lane; the +128 comes back out as
// 128 * rowsum. Tiles of 4 rows x 4 tokens keep 16 accumulators in registers, so each loaded
// 64-byte slice of weights serves four tokens and each slice of activations four rows.
// GCC 12's AVX-512 intrinsic headers use undefined vectors internally (the repository's other
// AVX-512 files silence the same warnings).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "kernels/cpu/w8a8.h"

namespace squish::kernels {

namespace {

// Sums of four accumulators at once: [sum(a0), sum(a1), sum(a2), sum(a3)].
inline __m128i hsum4(__m512i a0, __m512i a1, __m512i a2, __m512i a3) {
  auto half = [](__m512i v) {
    return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
  };
  const __m256i s = _mm256_hadd_epi32(_mm256_hadd_epi32(half(a0), half(a1)),
                                      _mm256_hadd_epi32(half(a2), half(a3)));
  return _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
}

inline int32_t hsum(__m512i v) {
  const __m256i h = _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

inline float finish(int32_t sum, int32_t rowsum, float sa, float sw) {
  return sa * sw * static_cast<float>(sum - 128 * rowsum);
}

// R rows x T tokens starting at (r, t).
template <int R, int T>
void tile(const W8A8Matrix& m, int64_t r, int64_t t, const W8A8Activations& act, float* y,
          int64_t ldy) {
  __m512i acc[R][T];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < T; ++j) acc[i][j] = _mm512_setzero_si512();
  const int8_t* w = m.codes + r * m.ld;
  const uint8_t* q = act.q + t * act.ld;
  for (int64_t k = 0; k < m.ld; k += 64) {
    __m512i a[T];
    for (int j = 0; j < T; ++j) a[j] = _mm512_loadu_si512(q + j * act.ld + k);
    for (int i = 0; i < R; ++i) {
      const __m512i b = _mm512_loadu_si512(w + i * m.ld + k);
      for (int j = 0; j < T; ++j) acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], a[j], b);
    }
  }
  if constexpr (R == 4) {
    for (int j = 0; j < T; ++j) {
      alignas(16) int32_t sums[4];
      _mm_store_si128(reinterpret_cast<__m128i*>(sums),
                      hsum4(acc[0][j], acc[1][j], acc[2][j], acc[3][j]));
      for (int i = 0; i < 4; ++i) {
        y[(t + j) * ldy + r + i] =
            finish(sums[i], m.rowsum[r + i], act.scale[t + j], m.scale[r + i]);
      }
    }
  } else {
    for (int i = 0; i < R; ++i) {
      for (int j = 0; j < T; ++j) {
        y[(t + j) * ldy + r + i] =
            finish(hsum(acc[i][j]), m.rowsum[r + i], act.scale[t + j], m.scale[r + i]);
      }
    }
  }
}

}  // namespace

void w8a8_rows_avx512(const W8A8Matrix& m, int64_t r0, int64_t r1, const W8A8Activations& act,
                      float* y, int64_t ldy) {
  const int64_t n = act.n_tokens;
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) {
    int64_t t = 0;
    for (; t + 4 <= n; t += 4) tile<4, 4>(m, r, t, act, y, ldy);
    for (; t < n; ++t) tile<4, 1>(m, r, t, act, y, ldy);
  }
  for (; r < r1; ++r) {
    int64_t t = 0;
    for (; t + 4 <= n; t += 4) tile<1, 4>(m, r, t, act, y, ldy);
    for (; t < n; ++t) tile<1, 1>(m, r, t, act, y, ldy);
  }
}

}  // namespace squish::kernels
