// AVX-512 kernels (compiled with -mavx512f/bw/vl/dq; called only when the CPU has them).
// GCC 12 warns inside its own AVX-512 headers (_mm512_undefined_*; GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "core/dtype.h"
#include "kernels/cpu/matmul.h"

namespace squish::kernels {

namespace {

inline __mmask16 tail_mask(int64_t n) {
  return static_cast<__mmask16>((1u << n) - 1);
}

inline __m512 load_row(const void* row, DType type, int64_t i) {
  switch (type) {
    case DType::F16:
      return _mm512_cvtph_ps(_mm256_loadu_si256(
          reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(row) + i)));
    case DType::BF16:
      return _mm512_castsi512_ps(_mm512_slli_epi32(
          _mm512_cvtepu16_epi32(_mm256_loadu_si256(
              reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(row) + i))),
          16));
    default:
      return _mm512_loadu_ps(static_cast<const float*>(row) + i);
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
    default:
      return _mm512_maskz_loadu_ps(m, static_cast<const float*>(row) + i);
  }
}

}  // namespace

namespace {

// Y[t][0..nr) for T tokens against a panel packed as [k][32] (32 rows side by side), so each
// step is two vector loads, T broadcasts and 2T FMAs, with no horizontal reductions.
template <int T>
inline void packed_micro(const float* packed, int64_t k, const float* x, float* y, int64_t ldy,
                         int nr) {
  __m512 acc[T][2];
  for (int b = 0; b < T; ++b) acc[b][0] = acc[b][1] = _mm512_setzero_ps();
  for (int64_t i = 0; i < k; ++i) {
    const __m512 w0 = _mm512_loadu_ps(packed + i * 32);
    const __m512 w1 = _mm512_loadu_ps(packed + i * 32 + 16);
    for (int b = 0; b < T; ++b) {
      const __m512 xb = _mm512_set1_ps(x[b * k + i]);
      acc[b][0] = _mm512_fmadd_ps(w0, xb, acc[b][0]);
      acc[b][1] = _mm512_fmadd_ps(w1, xb, acc[b][1]);
    }
  }
  const __mmask16 m0 = nr >= 16 ? static_cast<__mmask16>(0xffff) : tail_mask(nr);
  const __mmask16 m1 = nr >= 32 ? static_cast<__mmask16>(0xffff) : nr > 16 ? tail_mask(nr - 16) : 0;
  for (int b = 0; b < T; ++b) {
    _mm512_mask_storeu_ps(y + b * ldy, m0, acc[b][0]);
    if (m1) _mm512_mask_storeu_ps(y + b * ldy + 16, m1, acc[b][1]);
  }
}

}  // namespace

void packed_panel_avx512(const float* x, int64_t n_tokens, const float* packed, int nr, int64_t k,
                         float* y, int64_t ldy) {
  int64_t t = 0;
  for (; t + 6 <= n_tokens; t += 6) packed_micro<6>(packed, k, x + t * k, y + t * ldy, ldy, nr);
  switch (n_tokens - t) {
    case 5:
      packed_micro<5>(packed, k, x + t * k, y + t * ldy, ldy, nr);
      break;
    case 4:
      packed_micro<4>(packed, k, x + t * k, y + t * ldy, ldy, nr);
      break;
    case 3:
      packed_micro<3>(packed, k, x + t * k, y + t * ldy, ldy, nr);
      break;
    case 2:
      packed_micro<2>(packed, k, x + t * k, y + t * ldy, ldy, nr);
      break;
    case 1:
      packed_micro<1>(packed, k, x + t * k, y + t * ldy, ldy, nr);
      break;
    default:
      break;
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
      acc0 =
          _mm512_fmadd_ps(load_row_masked(row, type, i, m), _mm512_maskz_loadu_ps(m, x + i), acc0);
    }
    y[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
  }
}

void convert_f16_avx512(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(
        dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
  }
  for (; i < n; ++i) dst[i] = fp16_to_fp32(src[i]);
}

void convert_bf16_avx512(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i v =
        _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i)));
    _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)));
  }
  for (; i < n; ++i) dst[i] = bf16_to_fp32(src[i]);
}

float dot_f32_avx512(const float* a, const float* b, int64_t n) {
  __m512 acc = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc);
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc);
  }
  return _mm512_reduce_add_ps(acc);
}

}  // namespace squish::kernels
