// Prefill products on tensor cores through cuBLAS (docs/cuda.md, "Prefill through cuBLAS"):
// the weight matrix is dequantized to F16 in row chunks into a bounded scratch buffer, the
// batch's F32 activations are converted to F16 once per product input, and cublasGemmEx
// multiplies them (F16 inputs, F32 compute and output). cuBLAS is loaded with dlopen, not
// linked (it is hundreds of MB; the GPU machine has it in /usr/local/cuda/lib64): when it cannot
// be loaded, PrefillGemm::create says so once on stderr and returns null, and the caller keeps
// the mat-vec kernels. Nothing here throws; failures come back as one-line messages.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/dtype.h"

namespace squish::cuda {

// F16 copy of rows [row0, row0 + n_rows) of a matrix (rows x cols, cols a multiple of 32) in its
// GGUF layout into out (n_rows x cols, 16-byte aligned). Every type matmul_supported takes is
// held; false (nothing launched) for any other.
bool dequantize_f16(DType type, const void* w, int64_t cols, int64_t row0, int64_t n_rows,
                    __half* out, cudaStream_t stream);
// The same for a matrix in repack_q8's layout (the quantized types; kernels_q8.cu): the layout
// depends on the whole matrix's rows. False for any other type.
bool dequantize_q8_f16(DType type, const void* w, int64_t rows, int64_t cols, int64_t row0,
                       int64_t n_rows, __half* out, cudaStream_t stream);
// out[t][i] = F16(x[t * ldx + i]) for t < n_tokens, i < cols (cols a multiple of 8).
void convert_to_f16(const float* x, int64_t ldx, int n_tokens, int64_t cols, __half* out,
                    cudaStream_t stream);

// Weight scratch bound (bytes): a matrix larger than this is dequantized and multiplied in
// chunks of rows.
constexpr size_t kGemmScratchBytes = size_t{64} << 20;

// One session's cuBLAS handle (bound to its stream) and scratch buffers.
class PrefillGemm {
 public:
  // Null when cuBLAS cannot be loaded (one line on stderr per library name and process) or the
  // scratch cannot be allocated (error set). The library: $SQUISH_CUBLAS when set, else
  // libcublas.so.13, libcublas.so, then both in /usr/local/cuda/lib64.
  static std::unique_ptr<PrefillGemm> create(cudaStream_t stream, int max_tokens, int64_t max_cols,
                                             std::string* error,
                                             size_t scratch_bytes = kGemmScratchBytes);
  ~PrefillGemm();
  PrefillGemm(const PrefillGemm&) = delete;
  PrefillGemm& operator=(const PrefillGemm&) = delete;

  // Converts the products' input (n_tokens rows of cols floats at stride ldx) to F16 for the
  // products that follow (n_tokens <= max_tokens, cols <= max_cols).
  void set_input(const float* x, int64_t ldx, int n_tokens, int64_t cols);
  // y[t][r] = sum_i input[t][i] * W[r][i] (+ y[t][r] when accumulate) for the last set_input's
  // tokens; cols must equal its cols. repacked: W is in repack_q8's layout. Empty on success,
  // else a one-line message.
  std::string matmul(DType type, bool repacked, const void* w, int64_t rows, int64_t cols, float* y,
                     int64_t ldy, bool accumulate);

 private:
  PrefillGemm() = default;
  const void* blas_ = nullptr;  // the loaded library's entry points (gemm.cu)
  void* handle_ = nullptr;      // cublasHandle_t
  cudaStream_t stream_ = nullptr;
  __half* input_ = nullptr;  // max_tokens x max_cols
  __half* scratch_ = nullptr;
  size_t scratch_elems_ = 0;
  int n_tokens_ = 0;
  int64_t cols_ = 0;
};

// Products PrefillGemm::matmul has run in this process (tests check that a path was taken).
int64_t prefill_gemm_products();

}  // namespace squish::cuda
