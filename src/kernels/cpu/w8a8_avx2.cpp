// W8A8 rows with AVX2 (no VNNI) over 16-row panels (w8a8.h), one half panel (8 rows x 4 columns,
// 32 bytes) per load. The activation codes are made signed again (q + 128 xor 0x80 is q as
// int8), and each product uses ggml's sign trick: maddubs(|q|, sign(w, q)) multiplies unsigned
// |q| <= 127 by signed +-w and adds pairs into int16 (at most 2 * 127 * 127, no saturation), then
// madd by ones widens to one int32 per row.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/cpu/w8a8.h"

namespace squish::kernels {

namespace {

template <int T>
void half_panel_tokens(const W8A8Matrix& m, int64_t p, int half, int64_t t, int nr,
                       const W8A8Activations& act, float* y, int64_t ldy) {
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc[T];
  for (int j = 0; j < T; ++j) acc[j] = _mm256_setzero_si256();
  const int8_t* w = m.panel(p) + half * 32;
  const uint8_t* q = act.q + t * act.ld;
  for (int64_t k = 0; k < m.ld; k += 4) {
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + k * 16));
    for (int j = 0; j < T; ++j) {
      int32_t v;
      std::memcpy(&v, q + j * act.ld + k, 4);
      const __m256i a = _mm256_xor_si256(_mm256_set1_epi32(v), flip);
      const __m256i prod = _mm256_maddubs_epi16(_mm256_abs_epi8(a), _mm256_sign_epi8(b, a));
      acc[j] = _mm256_add_epi32(acc[j], _mm256_madd_epi16(prod, ones));
    }
  }
  const int64_t r0 = p * kW8A8PanelRows + half * 8;
  for (int j = 0; j < T; ++j) {
    alignas(32) int32_t sums[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(sums), acc[j]);
    for (int i = 0; i < nr; ++i) {
      y[(t + j) * ldy + r0 + i] = act.scale[t + j] * m.scale[r0 + i] * static_cast<float>(sums[i]);
    }
  }
}

}  // namespace

void w8a8_rows_avx2(const W8A8Matrix& m, int64_t r0, int64_t r1, const W8A8Activations& act,
                    float* y, int64_t ldy) {
  const int64_t n = act.n_tokens;
  for (int64_t p = r0 / kW8A8PanelRows; p * kW8A8PanelRows < r1; ++p) {
    for (int half = 0; half < 2; ++half) {
      const int64_t first = p * kW8A8PanelRows + half * 8;
      if (first >= r1) break;
      const int nr = static_cast<int>(std::min<int64_t>(8, r1 - first));
      int64_t t = 0;
      for (; t + 4 <= n; t += 4) half_panel_tokens<4>(m, p, half, t, nr, act, y, ldy);
      for (; t < n; ++t) half_panel_tokens<1>(m, p, half, t, nr, act, y, ldy);
    }
  }
}

}  // namespace squish::kernels
