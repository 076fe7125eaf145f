// W8A8 rows with AVX-512 VNNI: vpdpbusd multiplies 64 unsigned activation bytes (q + 128) by 64
// signed weight codes and adds each four products into an int32 lane; the +128 comes back out as
// 128 * rowsum. Tiles of 4 rows x 4 tokens keep 16 accumulators in registers, so each loaded
// 64-byte slice of weights serves four tokens and each slice of activations four rows.
#include <immintrin.h>

#include "kernels/cpu/w8a8.h"

namespace squish::kernels {

namespace {

// Horizontal sum through memory (GCC 12's _mm512_reduce_add_epi32 warns about its own undefined
// vectors); once per output, outside the inner loop.
inline int32_t hsum(__m512i v) {
  alignas(64) int32_t lanes[16];
  _mm512_store_si512(lanes, v);
  int32_t s = 0;
  for (int i = 0; i < 16; ++i) s += lanes[i];
  return s;
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
  for (int i = 0; i < R; ++i) {
    for (int j = 0; j < T; ++j) {
      y[(t + j) * ldy + r + i] =
          finish(hsum(acc[i][j]), m.rowsum[r + i], act.scale[t + j], m.scale[r + i]);
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
