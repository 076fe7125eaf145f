// AVX-512 kernels (compiled with -mavx512f/bw/vl/dq; called only when the CPU has them).
// GCC 12 warns inside its own AVX-512 headers (_mm512_undefined_*; GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "core/dtype.h"
#include "kernels/cpu/matmul.h"

namespace squish::kernels {

namespace {

inline __mmask16 tail_mask(int64_t n) { return static_cast<__mmask16>((1u << n) - 1); }

// R rows x T tokens of dot products over k; masked tail so any k works.
template <int R, int T>
inline void micro(const float* w, int64_t k, const float* x, float* y, int64_t ldy) {
  __m512 acc[R][T];
  for (int a = 0; a < R; ++a)
    for (int b = 0; b < T; ++b) acc[a][b] = _mm512_setzero_ps();
  const int64_t kv = k & ~int64_t{15};
  for (int64_t i = 0; i < kv; i += 16) {
    __m512 xv[T];
    for (int b = 0; b < T; ++b) xv[b] = _mm512_loadu_ps(x + b * k + i);
    for (int a = 0; a < R; ++a) {
      const __m512 wv = _mm512_loadu_ps(w + a * k + i);
      for (int b = 0; b < T; ++b) acc[a][b] = _mm512_fmadd_ps(wv, xv[b], acc[a][b]);
    }
  }
  if (kv < k) {
    const __mmask16 m = tail_mask(k - kv);
    __m512 xv[T];
    for (int b = 0; b < T; ++b) xv[b] = _mm512_maskz_loadu_ps(m, x + b * k + kv);
    for (int a = 0; a < R; ++a) {
      const __m512 wv = _mm512_maskz_loadu_ps(m, w + a * k + kv);
      for (int b = 0; b < T; ++b) acc[a][b] = _mm512_fmadd_ps(wv, xv[b], acc[a][b]);
    }
  }
  for (int a = 0; a < R; ++a)
    for (int b = 0; b < T; ++b) y[b * ldy + a] = _mm512_reduce_add_ps(acc[a][b]);
}

inline __m512 load_row(const void* row, DType type, int64_t i) {
  switch (type) {
    case DType::F16:
      return _mm512_cvtph_ps(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(row) + i)));
    case DType::BF16:
      return _mm512_castsi512_ps(_mm512_slli_epi32(
          _mm512_cvtepu16_epi32(_mm256_loadu_si256(
              reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(row) + i))),
          16));
    default: return _mm512_loadu_ps(static_cast<const float*>(row) + i);
  }
}

inline __m512 load_row_masked(const void* row, DType type, int64_t i, __mmask16 m) {
  switch (type) {
    case DType::F16:
      return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(row) + i));
    case DType::BF16:
      return _mm512_castsi512_ps(_mm512_slli_epi32(
          _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(row) + i)),
          16));
    default: return _mm512_maskz_loadu_ps(m, static_cast<const float*>(row) + i);
  }
}

}  // namespace

void panel_f32_avx512(const float* x, int64_t n_tokens, const float* w, int64_t n_rows, int64_t k,
                      float* y, int64_t ldy) {
  int64_t r = 0;
  for (; r + 4 <= n_rows; r += 4) {
    int64_t t = 0;
    for (; t + 4 <= n_tokens; t += 4) micro<4, 4>(w + r * k, k, x + t * k, y + t * ldy + r, ldy);
    for (; t < n_tokens; ++t) micro<4, 1>(w + r * k, k, x + t * k, y + t * ldy + r, ldy);
  }
  for (; r < n_rows; ++r) {
    int64_t t = 0;
    for (; t + 4 <= n_tokens; t += 4) micro<1, 4>(w + r * k, k, x + t * k, y + t * ldy + r, ldy);
    for (; t < n_tokens; ++t) micro<1, 1>(w + r * k, k, x + t * k, y + t * ldy + r, ldy);
  }
}

void gemv_avx512(const float* x, const void* w, DType type, int64_t row_begin, int64_t row_end,
                 int64_t k, float* y) {
  const size_t stride = row_bytes(type, k);
  const int64_t kv = k & ~int64_t{31};
  for (int64_t r = row_begin; r < row_end; ++r) {
    const void* row = static_cast<const uint8_t*>(w) + r * stride;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i < kv; i += 32) {
      acc0 = _mm512_fmadd_ps(load_row(row, type, i), _mm512_loadu_ps(x + i), acc0);
      acc1 = _mm512_fmadd_ps(load_row(row, type, i + 16), _mm512_loadu_ps(x + i + 16), acc1);
    }
    for (; i < k; i += 16) {
      const __mmask16 m = k - i >= 16 ? static_cast<__mmask16>(0xffff) : tail_mask(k - i);
      acc0 = _mm512_fmadd_ps(load_row_masked(row, type, i, m), _mm512_maskz_loadu_ps(m, x + i), acc0);
    }
    y[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
  }
}

void convert_f16_avx512(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
  }
  for (; i < n; ++i) dst[i] = fp16_to_fp32(src[i]);
}

void convert_bf16_avx512(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i)));
    _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)));
  }
  for (; i < n; ++i) dst[i] = bf16_to_fp32(src[i]);
}

float dot_f32_avx512(const float* a, const float* b, int64_t n) {
  __m512 acc = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc);
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc);
  }
  return _mm512_reduce_add_ps(acc);
}

}  // namespace squish::kernels
