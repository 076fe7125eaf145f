#define SQUISH_ATTENTION_SUFFIX scalar
#include "kernels/cpu/attention_impl.h"

#include "kernels/cpu/matmul.h"

namespace squish {

void attention_scores(const float* q, const float* kt, int64_t kt_stride, int n_keys, int dim,
                      float scale, float* s) {
  switch (active_cpu_level()) {
    case CpuLevel::AVX512:
      return kernels::attention_scores_avx512(q, kt, kt_stride, n_keys, dim, scale, s);
    case CpuLevel::AVX2:
      return kernels::attention_scores_avx2(q, kt, kt_stride, n_keys, dim, scale, s);
    default:
      return kernels::attention_scores_scalar(q, kt, kt_stride, n_keys, dim, scale, s);
  }
}

void attention_softmax(float* s, int n) {
  switch (active_cpu_level()) {
    case CpuLevel::AVX512:
      return kernels::attention_softmax_avx512(s, n);
    case CpuLevel::AVX2:
      return kernels::attention_softmax_avx2(s, n);
    default:
      return kernels::attention_softmax_scalar(s, n);
  }
}

void attention_values(const float* p, const float* v, int64_t v_stride, int n_keys, int dim,
                      float* out) {
  switch (active_cpu_level()) {
    case CpuLevel::AVX512:
      return kernels::attention_values_avx512(p, v, v_stride, n_keys, dim, out);
    case CpuLevel::AVX2:
      return kernels::attention_values_avx2(p, v, v_stride, n_keys, dim, out);
    default:
      return kernels::attention_values_scalar(p, v, v_stride, n_keys, dim, out);
  }
}

void attention_scores_block(const float* q, int64_t q_stride, int nq, const float* kt,
                            int64_t kt_stride, int n_keys, int dim, float scale, float* s,
                            int64_t ld_s) {
  switch (active_cpu_level()) {
    case CpuLevel::AVX512:
      return kernels::attention_scores_block_avx512(q, q_stride, nq, kt, kt_stride, n_keys, dim,
                                                    scale, s, ld_s);
    case CpuLevel::AVX2:
      return kernels::attention_scores_block_avx2(q, q_stride, nq, kt, kt_stride, n_keys, dim,
                                                  scale, s, ld_s);
    default:
      return kernels::attention_scores_block_scalar(q, q_stride, nq, kt, kt_stride, n_keys, dim,
                                                    scale, s, ld_s);
  }
}

void attention_values_block(const float* p, int64_t ld_p, int nq, const float* v, int64_t v_stride,
                            int n_keys, int dim, float* out, int64_t out_stride) {
  switch (active_cpu_level()) {
    case CpuLevel::AVX512:
      return kernels::attention_values_block_avx512(p, ld_p, nq, v, v_stride, n_keys, dim, out,
                                                    out_stride);
    case CpuLevel::AVX2:
      return kernels::attention_values_block_avx2(p, ld_p, nq, v, v_stride, n_keys, dim, out,
                                                  out_stride);
    default:
      return kernels::attention_values_block_scalar(p, ld_p, nq, v, v_stride, n_keys, dim, out,
                                                    out_stride);
  }
}

}  // namespace squish
