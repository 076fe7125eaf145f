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

// Several queries against the same keys at once: nq <= kAttentionQueryBlock rows
// q + t * q_stride (prefill: consecutive tokens of one head; decode: the heads sharing a KV
// head), so each key or value row loaded serves all of them and the accumulators stay in
// registers.
inline constexpr int kAttentionQueryBlock = 8;
// s[t * ld_s + j] = scale * q_t . k_j for t < nq and j < n_keys rounded up to 32: kt's rows must
// be readable that far (the caller masks the extra scores).
void attention_scores_block(const float* q, int64_t q_stride, int nq, const float* kt,
                            int64_t kt_stride, int n_keys, int dim, float scale, float* s,
                            int64_t ld_s);
// out[t * out_stride + d] = sum_{j < n_keys} p[t * ld_p + j] * v[j * v_stride + d] for t < nq;
// dim is a multiple of 16.
void attention_values_block(const float* p, int64_t ld_p, int nq, const float* v, int64_t v_stride,
                            int n_keys, int dim, float* out, int64_t out_stride);

namespace kernels {
#define SQUISH_DECLARE_ATTENTION(suffix)                                                          \
  void attention_scores_##suffix(const float* q, const float* kt, int64_t kt_stride, int n_keys,  \
                                 int dim, float scale, float* s);                                 \
  void attention_softmax_##suffix(float* s, int n);                                               \
  void attention_values_##suffix(const float* p, const float* v, int64_t v_stride, int n_keys,    \
                                 int dim, float* out);                                            \
  void attention_scores_block_##suffix(const float* q, int64_t q_stride, int nq, const float* kt, \
                                       int64_t kt_stride, int n_keys, int dim, float scale,       \
                                       float* s, int64_t ld_s);                                   \
  void attention_values_block_##suffix(const float* p, int64_t ld_p, int nq, const float* v,      \
                                       int64_t v_stride, int n_keys, int dim, float* out,         \
                                       int64_t out_stride);
SQUISH_DECLARE_ATTENTION(scalar)
SQUISH_DECLARE_ATTENTION(avx2)
SQUISH_DECLARE_ATTENTION(avx512)
#undef SQUISH_DECLARE_ATTENTION
}  // namespace kernels

}  // namespace squish
