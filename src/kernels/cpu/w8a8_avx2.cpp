// W8A8 rows with AVX2 (no VNNI): the activation codes are made signed again (q + 128 xor 0x80 is
// q as int8), and each product uses ggml's sign trick: maddubs(|q|, sign(w, q)) multiplies
// unsigned |q| <= 127 by signed +-w and adds pairs into int16 (at most 2 * 127 * 127, no
// saturation), then madd by ones widens to int32. Tiles of 2 rows x 2 tokens.
#include <immintrin.h>

#include "kernels/cpu/w8a8.h"

namespace squish::kernels {

namespace {

inline int32_t hsum(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

inline __m256i dot(__m256i acc, __m256i a_abs, __m256i a, __m256i w, __m256i ones) {
  const __m256i p = _mm256_maddubs_epi16(a_abs, _mm256_sign_epi8(w, a));
  return _mm256_add_epi32(acc, _mm256_madd_epi16(p, ones));
}

template <int R, int T>
void tile(const W8A8Matrix& m, int64_t r, int64_t t, const W8A8Activations& act, float* y,
          int64_t ldy) {
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc[R][T];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < T; ++j) acc[i][j] = _mm256_setzero_si256();
  const int8_t* w = m.codes + r * m.ld;
  const uint8_t* q = act.q + t * act.ld;
  for (int64_t k = 0; k < m.ld; k += 32) {
    __m256i a[T], a_abs[T];
    for (int j = 0; j < T; ++j) {
      a[j] = _mm256_xor_si256(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + j * act.ld + k)), flip);
      a_abs[j] = _mm256_abs_epi8(a[j]);
    }
    for (int i = 0; i < R; ++i) {
      const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + i * m.ld + k));
      for (int j = 0; j < T; ++j) acc[i][j] = dot(acc[i][j], a_abs[j], a[j], b, ones);
    }
  }
  for (int i = 0; i < R; ++i) {
    for (int j = 0; j < T; ++j) {
      y[(t + j) * ldy + r + i] =
          act.scale[t + j] * m.scale[r + i] * static_cast<float>(hsum(acc[i][j]));
    }
  }
}

}  // namespace

void w8a8_rows_avx2(const W8A8Matrix& m, int64_t r0, int64_t r1, const W8A8Activations& act,
                    float* y, int64_t ldy) {
  const int64_t n = act.n_tokens;
  int64_t r = r0;
  for (; r + 2 <= r1; r += 2) {
    int64_t t = 0;
    for (; t + 2 <= n; t += 2) tile<2, 2>(m, r, t, act, y, ldy);
    for (; t < n; ++t) tile<2, 1>(m, r, t, act, y, ldy);
  }
  for (; r < r1; ++r) {
    for (int64_t t = 0; t < n; ++t) tile<1, 1>(m, r, t, act, y, ldy);
  }
}

}  // namespace squish::kernels
