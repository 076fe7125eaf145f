// W8A8 rows with AVX-512 VNNI over 16-row panels (w8a8.h): a 64-byte load is four columns of the
// panel's 16 rows, and vpdpbusd against four activation bytes of one token (q + 128, broadcast)
// adds their products into one int32 lane per row. T tokens keep T accumulators, so each weight
// load serves T tokens; the +128 comes back out as 128 * rowsum, and the 16 outputs of a token
// are scaled and stored as one vector.
// GCC 12's AVX-512 intrinsic headers use undefined vectors internally (the repository's other
// AVX-512 files silence the same warnings).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/cpu/w8a8.h"

namespace squish::kernels {

namespace {

inline __m512i broadcast4(const uint8_t* q) {
  int32_t v;
  std::memcpy(&v, q, 4);
  return _mm512_set1_epi32(v);
}

// Panel p, tokens [t, t + T), the first nr rows stored.
template <int T>
void panel_tokens(const W8A8Matrix& m, int64_t p, int64_t t, int nr, const W8A8Activations& act,
                  float* y, int64_t ldy) {
  __m512i acc[T];
  for (int j = 0; j < T; ++j) acc[j] = _mm512_setzero_si512();
  const int8_t* w = m.panel(p);
  const uint8_t* q = act.q + t * act.ld;
  for (int64_t k = 0; k < m.ld; k += 4) {
    const __m512i b = _mm512_loadu_si512(w + k * 16);
    for (int j = 0; j < T; ++j)
      acc[j] = _mm512_dpbusd_epi32(acc[j], broadcast4(q + j * act.ld + k), b);
  }
  const int64_t r0 = p * kW8A8PanelRows;
  const __m512i bias = _mm512_slli_epi32(_mm512_loadu_si512(m.rowsum + r0), 7);  // 128 * rowsum
  const __m512 sw = _mm512_loadu_ps(m.scale + r0);
  const __mmask16 mask = static_cast<__mmask16>((1u << nr) - 1);
  for (int j = 0; j < T; ++j) {
    const __m512 sum = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[j], bias));
    const __m512 v = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(act.scale[t + j]), sw), sum);
    _mm512_mask_storeu_ps(y + (t + j) * ldy + r0, mask, v);
  }
}

}  // namespace

void w8a8_rows_avx512(const W8A8Matrix& m, int64_t r0, int64_t r1, const W8A8Activations& act,
                      float* y, int64_t ldy) {
  const int64_t n = act.n_tokens;
  for (int64_t p = r0 / kW8A8PanelRows; p * kW8A8PanelRows < r1; ++p) {
    const int nr = static_cast<int>(std::min<int64_t>(kW8A8PanelRows, r1 - p * kW8A8PanelRows));
    int64_t t = 0;
    for (; t + 8 <= n; t += 8) panel_tokens<8>(m, p, t, nr, act, y, ldy);
    for (; t + 2 <= n; t += 2) panel_tokens<2>(m, p, t, nr, act, y, ldy);
    for (; t < n; ++t) panel_tokens<1>(m, p, t, nr, act, y, ldy);
  }
}

}  // namespace squish::kernels
