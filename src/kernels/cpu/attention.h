// Attention inner loops. Keys are cached transposed per KV head ([head][dim][position]) so a
// query's scores against many keys are a sequence of contiguous multiply-adds with no horizontal
// reductions; values stay row-major ([position][kv_dim]) so the weighted sum is contiguous too.
// The same source (attention_impl.h) is compiled for scalar, AVX2 and AVX-512 targets and chosen
// at run time like the matmul kernels.
#pragma once

#include <cstdint>

namespace squish {

// s[j] = scale * sum_d q[d] * kt[d * kt_stride + j], j < n_keys.
void attention_scores(const float* q, const float* kt, int64_t kt_stride, int n_keys, int dim,
                      float scale, float* s);
// In-place softmax over n values (vectorized exp, ~1e-7 relative error).
void attention_softmax(float* s, int n);
// out[d] = sum_j p[j] * v[j * v_stride + d], d < dim.
void attention_values(const float* p, const float* v, int64_t v_stride, int n_keys, int dim,
                      float* out);

namespace kernels {
#define SQUISH_DECLARE_ATTENTION(suffix)                                                         \
  void attention_scores_##suffix(const float* q, const float* kt, int64_t kt_stride, int n_keys, \
                                 int dim, float scale, float* s);                                \
  void attention_softmax_##suffix(float* s, int n);                                              \
  void attention_values_##suffix(const float* p, const float* v, int64_t v_stride, int n_keys,   \
                                 int dim, float* out);
SQUISH_DECLARE_ATTENTION(scalar)
SQUISH_DECLARE_ATTENTION(avx2)
SQUISH_DECLARE_ATTENTION(avx512)
#undef SQUISH_DECLARE_ATTENTION
}  // namespace kernels

}  // namespace squish
