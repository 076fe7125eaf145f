// AVX2 + FMA + F16C kernels (called only when the CPU has them).
#include <immintrin.h>

#include "core/dtype.h"
#include "kernels/cpu/matmul.h"

namespace squish::kernels {

namespace {

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline __m256 load8(const void* row, DType type, int64_t i) {
  switch (type) {
    case DType::F16:
      return _mm256_cvtph_ps(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(row) + i)));
    case DType::BF16:
      return _mm256_castsi256_ps(_mm256_slli_epi32(
          _mm256_cvtepu16_epi32(_mm_loadu_si128(
              reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(row) + i))),
          16));
    default:
      return _mm256_loadu_ps(static_cast<const float*>(row) + i);
  }
}

inline float load1(const void* row, DType type, int64_t i) {
  switch (type) {
    case DType::F16:
      return fp16_to_fp32(static_cast<const uint16_t*>(row)[i]);
    case DType::BF16:
      return bf16_to_fp32(static_cast<const uint16_t*>(row)[i]);
    default:
      return static_cast<const float*>(row)[i];
  }
}

}  // namespace

namespace {

// AVX2 version of the packed panel: [k][16] layout, two 8-wide vectors per step.
template <int T>
inline void packed_micro(const float* packed, int64_t k, const float* x, float* y, int64_t ldy,
                         int nr) {
  __m256 acc[T][2];
  for (int b = 0; b < T; ++b) acc[b][0] = acc[b][1] = _mm256_setzero_ps();
  for (int64_t i = 0; i < k; ++i) {
    const __m256 w0 = _mm256_loadu_ps(packed + i * 16);
    const __m256 w1 = _mm256_loadu_ps(packed + i * 16 + 8);
    for (int b = 0; b < T; ++b) {
      const __m256 xb = _mm256_broadcast_ss(x + b * k + i);
      acc[b][0] = _mm256_fmadd_ps(w0, xb, acc[b][0]);
      acc[b][1] = _mm256_fmadd_ps(w1, xb, acc[b][1]);
    }
  }
  for (int b = 0; b < T; ++b) {
    if (nr == 16) {
      _mm256_storeu_ps(y + b * ldy, acc[b][0]);
      _mm256_storeu_ps(y + b * ldy + 8, acc[b][1]);
    } else {
      alignas(32) float tmp[16];
      _mm256_store_ps(tmp, acc[b][0]);
      _mm256_store_ps(tmp + 8, acc[b][1]);
      for (int j = 0; j < nr; ++j) y[b * ldy + j] = tmp[j];
    }
  }
}

}  // namespace

void packed_panel_avx2(const float* x, int64_t n_tokens, const float* packed, int nr, int64_t k,
                       float* y, int64_t ldy) {
  int64_t t = 0;
  for (; t + 4 <= n_tokens; t += 4) packed_micro<4>(packed, k, x + t * k, y + t * ldy, ldy, nr);
  switch (n_tokens - t) {
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

void gemv_avx2(const float* x, const void* w, DType type, int64_t row_begin, int64_t row_end,
               int64_t k, float* y) {
  const size_t stride = row_bytes(type, k);
  const int64_t kv = k & ~int64_t{15};
  for (int64_t r = row_begin; r < row_end; ++r) {
    const void* row = static_cast<const uint8_t*>(w) + r * stride;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i < kv; i += 16) {
      acc0 = _mm256_fmadd_ps(load8(row, type, i), _mm256_loadu_ps(x + i), acc0);
      acc1 = _mm256_fmadd_ps(load8(row, type, i + 8), _mm256_loadu_ps(x + i + 8), acc1);
    }
    float s = hsum(_mm256_add_ps(acc0, acc1));
    for (; i < k; ++i) s += load1(row, type, i) * x[i];
    y[r] = s;
  }
}

void convert_f16_avx2(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(dst + i,
                     _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  }
  for (; i < n; ++i) dst[i] = fp16_to_fp32(src[i]);
}

float dot_f32_avx2(const float* a, const float* b, int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
  float s = hsum(acc);
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

}  // namespace squish::kernels
