// Target-independent attention loops, written so the compiler vectorizes them for whatever ISA
// the including translation unit is compiled for. Include once per target with
// SQUISH_ATTENTION_SUFFIX defined (scalar, avx2, avx512).
#include <cstdint>
#include <cstring>
#if defined(__AVX512F__)
#include "kernels/cpu/fast_exp_avx512.h"
#endif

#include "kernels/cpu/attention.h"

namespace squish::kernels {

namespace {

// exp(x) = 2^n * exp(r), r = x - n ln2 in [-ln2/2, ln2/2], exp(r) by a degree-6 polynomial
// (Cephes coefficients): ~1 ulp, no libm call, so the loop vectorizes.
inline float fast_exp(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  // Round to nearest even by the 1.5 * 2^23 shift (|x * log2 e| < 2^22): exact in the default
  // rounding mode, vectorizes, and builds with every compiler (clang 14 lacks roundevenf).
  const float shifted = x * 1.44269504088896341f + 12582912.0f;
  const float n = shifted - 12582912.0f;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}

}  // namespace

#define SQUISH_CAT2(a, b) a##b
#define SQUISH_CAT(a, b) SQUISH_CAT2(a, b)
#define SQUISH_FN(name) SQUISH_CAT(name, SQUISH_ATTENTION_SUFFIX)

void SQUISH_FN(attention_scores_)(const float* q, const float* kt, int64_t kt_stride, int n_keys,
                                  int dim, float scale, float* s) {
  for (int j = 0; j < n_keys; ++j) s[j] = 0.0f;
  for (int d = 0; d < dim; ++d) {
    const float qd = q[d] * scale;
    const float* __restrict k = kt + d * kt_stride;
    float* __restrict out = s;
#pragma omp simd
    for (int j = 0; j < n_keys; ++j) out[j] += qd * k[j];
  }
}

#if defined(__AVX512F__)
// GCC 12 leaves the scalar loop below unvectorized, and the exponentials are most of the work.
void SQUISH_FN(attention_softmax_)(float* s, int n) {
  __m512 mx = _mm512_set1_ps(s[0]);
  int i = 0;
  for (; i + 16 <= n; i += 16) mx = _mm512_max_ps(mx, _mm512_loadu_ps(s + i));
  const __mmask16 tail = static_cast<__mmask16>((1u << (n - i)) - 1);
  mx = _mm512_mask_max_ps(mx, tail, mx, _mm512_maskz_loadu_ps(tail, s + i));
  const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
  __m512 sum = _mm512_setzero_ps();
  for (i = 0; i + 16 <= n; i += 16) {
    const __m512 e = fast_exp16(_mm512_sub_ps(_mm512_loadu_ps(s + i), m));
    _mm512_storeu_ps(s + i, e);
    sum = _mm512_add_ps(sum, e);
  }
  if (tail != 0) {
    const __m512 e = fast_exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, s + i), m));
    _mm512_mask_storeu_ps(s + i, tail, e);
    sum = _mm512_mask_add_ps(sum, tail, sum, e);
  }
  const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
  for (i = 0; i + 16 <= n; i += 16)
    _mm512_storeu_ps(s + i, _mm512_mul_ps(_mm512_loadu_ps(s + i), inv));
  if (tail != 0)
    _mm512_mask_storeu_ps(s + i, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, s + i), inv));
}
#else
void SQUISH_FN(attention_softmax_)(float* s, int n) {
  float mx = s[0];
#pragma omp simd reduction(max : mx)
  for (int i = 1; i < n; ++i) mx = s[i] > mx ? s[i] : mx;
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int i = 0; i < n; ++i) {
    s[i] = fast_exp(s[i] - mx);
    sum += s[i];
  }
  const float inv = 1.0f / sum;
  for (int i = 0; i < n; ++i) s[i] *= inv;
}
#endif

void SQUISH_FN(attention_values_)(const float* p, const float* v, int64_t v_stride, int n_keys,
                                  int dim, float* out) {
  // Accumulate 64 dims at a time in a fixed-size local array the compiler keeps in registers;
  // accumulating into `out` directly would store and reload it for every key.
  int d0 = 0;
  for (; d0 + 64 <= dim; d0 += 64) {
    float acc[64] = {};
    for (int j = 0; j < n_keys; ++j) {
      const float pj = p[j];
      const float* __restrict vj = v + j * v_stride + d0;
#pragma omp simd
      for (int d = 0; d < 64; ++d) acc[d] += pj * vj[d];
    }
    for (int d = 0; d < 64; ++d) out[d0 + d] = acc[d];
  }
  for (; d0 < dim; d0 += 16) {
    const int w = dim - d0 < 16 ? dim - d0 : 16;
    float acc[16] = {};
    for (int j = 0; j < n_keys; ++j) {
      const float pj = p[j];
      const float* vj = v + j * v_stride + d0;
      for (int d = 0; d < w; ++d) acc[d] += pj * vj[d];
    }
    for (int d = 0; d < w; ++d) out[d0 + d] = acc[d];
  }
}

namespace {

// QB x W outputs kept in a fixed-size local array (registers at AVX-512).
template <int QB, int W>
inline void scores_tile(const float* q, int64_t q_stride, const float* kt, int64_t kt_stride,
                        int j0, int dim, float scale, float* s, int64_t ld_s) {
  float acc[QB][W] = {};
  for (int d = 0; d < dim; ++d) {
    const float* __restrict k = kt + d * kt_stride + j0;
    for (int t = 0; t < QB; ++t) {
      const float qd = q[t * q_stride + d] * scale;
#pragma omp simd
      for (int j = 0; j < W; ++j) acc[t][j] += qd * k[j];
    }
  }
  for (int t = 0; t < QB; ++t) {
    for (int j = 0; j < W; ++j) s[t * ld_s + j0 + j] = acc[t][j];
  }
}

template <int QB, int W>
inline void values_tile(const float* p, int64_t ld_p, const float* v, int64_t v_stride, int n_keys,
                        int d0, float* out, int64_t out_stride) {
  float acc[QB][W] = {};
  for (int j = 0; j < n_keys; ++j) {
    const float* __restrict vj = v + j * v_stride + d0;
    for (int t = 0; t < QB; ++t) {
      const float pj = p[t * ld_p + j];
#pragma omp simd
      for (int d = 0; d < W; ++d) acc[t][d] += pj * vj[d];
    }
  }
  for (int t = 0; t < QB; ++t) {
    for (int d = 0; d < W; ++d) out[t * out_stride + d0 + d] = acc[t][d];
  }
}

template <int QB>
void scores_rows(const float* q, int64_t q_stride, const float* kt, int64_t kt_stride, int n_keys,
                 int dim, float scale, float* s, int64_t ld_s) {
  for (int j0 = 0; j0 < n_keys; j0 += 32) {
    scores_tile<QB, 32>(q, q_stride, kt, kt_stride, j0, dim, scale, s, ld_s);
  }
}

template <int QB>
void values_rows(const float* p, int64_t ld_p, const float* v, int64_t v_stride, int n_keys,
                 int dim, float* out, int64_t out_stride) {
  int d0 = 0;
  for (; d0 + 32 <= dim; d0 += 32)
    values_tile<QB, 32>(p, ld_p, v, v_stride, n_keys, d0, out, out_stride);
  for (; d0 < dim; d0 += 16) values_tile<QB, 16>(p, ld_p, v, v_stride, n_keys, d0, out, out_stride);
}

// Calls f.template operator()<QB>() with QB = nq (1..kAttentionQueryBlock).
template <class F>
void with_rows(int nq, F&& f) {
  static_assert(kAttentionQueryBlock == 8);
  switch (nq) {
    case 1:
      return f.template operator()<1>();
    case 2:
      return f.template operator()<2>();
    case 3:
      return f.template operator()<3>();
    case 4:
      return f.template operator()<4>();
    case 5:
      return f.template operator()<5>();
    case 6:
      return f.template operator()<6>();
    case 7:
      return f.template operator()<7>();
    default:
      return f.template operator()<8>();
  }
}

}  // namespace

void SQUISH_FN(attention_scores_block_)(const float* q, int64_t q_stride, int nq, const float* kt,
                                        int64_t kt_stride, int n_keys, int dim, float scale,
                                        float* s, int64_t ld_s) {
  with_rows(nq, [&]<int QB>() {
    scores_rows<QB>(q, q_stride, kt, kt_stride, n_keys, dim, scale, s, ld_s);
  });
}

void SQUISH_FN(attention_values_block_)(const float* p, int64_t ld_p, int nq, const float* v,
                                        int64_t v_stride, int n_keys, int dim, float* out,
                                        int64_t out_stride) {
  with_rows(nq,
            [&]<int QB>() { values_rows<QB>(p, ld_p, v, v_stride, n_keys, dim, out, out_stride); });
}

#undef SQUISH_FN
#undef SQUISH_CAT
#undef SQUISH_CAT2

}  // namespace squish::kernels
