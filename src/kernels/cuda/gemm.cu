// Prefill products through cuBLAS (gemm.h): F16 dequantize kernels for the GGUF-layout weights,
// the activations' F16 conversion, and cuBLAS loaded at run time with dlopen.
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>

#include "kernels/cuda/dequant.cuh"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/kernels.h"
#include "quant/blocks.h"

namespace squish::cuda {

namespace {

std::atomic<int64_t> g_products{0};

// ---- Dequantize kernels: one thread per group of 32 weights (dequant.cuh's Gg structs) ----

template <class T>
__global__ void dequantize_f16_kernel(const uint8_t* w, int64_t cols, int64_t row0, int64_t n_rows,
                                      __half* out) {
  const int64_t groups_per_row = cols / 32;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n_rows * groups_per_row) return;
  const int64_t r = i / groups_per_row, gi = i % groups_per_row;
  constexpr int kGroups = T::kElems / 32;
  const int64_t row_bytes = cols / T::kElems * T::kBytes;
  const uint8_t* block = w + (row0 + r) * row_bytes + (gi / kGroups) * T::kBytes;
  float v[32];
  T::group(block, static_cast<int>(gi % kGroups), v);
  dequant::store_f16(v, out + r * cols + gi * 32);
}

template <class T>
void dequantize_typed(const void* w, int64_t cols, int64_t row0, int64_t n_rows, __half* out,
                      cudaStream_t stream) {
  const int64_t threads = n_rows * (cols / 32);
  dequantize_f16_kernel<T><<<static_cast<unsigned>((threads + 255) / 256), 256, 0, stream>>>(
      static_cast<const uint8_t*>(w), cols, row0, n_rows, out);
}

__global__ void convert_to_f16_kernel(const float* x, int64_t ldx, int n_tokens, int64_t cols,
                                      __half* out) {
  const int64_t per_row = cols / 4;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n_tokens * per_row) return;
  const int64_t t = i / per_row, c = (i % per_row) * 4;
  const float* p = x + t * ldx + c;  // ldx need not keep float4 alignment: scalar loads
  __half2* o = reinterpret_cast<__half2*>(out + t * cols + c);
  o[0] = __floats2half2_rn(p[0], p[1]);
  o[1] = __floats2half2_rn(p[2], p[3]);
}

// ---- cuBLAS through dlopen ----

struct Blas {
  decltype(&cublasCreate_v2) create = nullptr;
  decltype(&cublasDestroy_v2) destroy = nullptr;
  decltype(&cublasSetStream_v2) set_stream = nullptr;
  decltype(&cublasSetMathMode) set_math_mode = nullptr;
  cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                            const void*, const void*, cudaDataType, int, const void*, cudaDataType,
                            int, const void*, void*, cudaDataType, int, cublasComputeType_t,
                            cublasGemmAlgo_t) = nullptr;
};

// The library named by $SQUISH_CUBLAS, or the first of the usual names that loads; null (and one
// line on stderr per name) when none does. Loaded libraries stay loaded for the process.
const Blas* load_blas() {
  static std::mutex mu;
  static std::map<std::string, Blas> loaded;  // by the name asked for; empty Blas = failed
  const char* env = std::getenv("SQUISH_CUBLAS");
  const std::string key = env != nullptr ? env : "";
  std::lock_guard<std::mutex> lock(mu);
  auto it = loaded.find(key);
  if (it != loaded.end()) return it->second.gemm_ex != nullptr ? &it->second : nullptr;
  Blas& b = loaded[key];
  const char* defaults[] = {"libcublas.so.13", "libcublas.so",
                            "/usr/local/cuda/lib64/libcublas.so.13",
                            "/usr/local/cuda/lib64/libcublas.so"};
  std::string tried, why;
  void* lib = nullptr;
  if (env != nullptr) {
    tried = env;
    lib = dlopen(env, RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) why = dlerror();
  } else {
    for (const char* name : defaults) {
      lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
      if (lib != nullptr) break;
      if (why.empty()) why = dlerror();
      tried += tried.empty() ? name : std::string(", ") + name;
    }
  }
  if (lib == nullptr) {
    std::fprintf(stderr, "cuda: cuBLAS not loaded (%s: %s); prefill uses the mat-vec kernels\n",
                 tried.c_str(), why.c_str());
    return nullptr;
  }
  Blas f;
  f.create = reinterpret_cast<decltype(f.create)>(dlsym(lib, "cublasCreate_v2"));
  f.destroy = reinterpret_cast<decltype(f.destroy)>(dlsym(lib, "cublasDestroy_v2"));
  f.set_stream = reinterpret_cast<decltype(f.set_stream)>(dlsym(lib, "cublasSetStream_v2"));
  f.set_math_mode = reinterpret_cast<decltype(f.set_math_mode)>(dlsym(lib, "cublasSetMathMode"));
  f.gemm_ex = reinterpret_cast<decltype(f.gemm_ex)>(dlsym(lib, "cublasGemmEx"));
  if (f.create == nullptr || f.destroy == nullptr || f.set_stream == nullptr ||
      f.set_math_mode == nullptr || f.gemm_ex == nullptr) {
    std::fprintf(stderr,
                 "cuda: cuBLAS %s lacks cublasCreate_v2 / cublasSetStream_v2 / "
                 "cublasSetMathMode / cublasGemmEx / cublasDestroy_v2; prefill uses the mat-vec "
                 "kernels\n",
                 env != nullptr ? env : "(default)");
    return nullptr;
  }
  b = f;
  return &b;
}

}  // namespace

bool dequantize_f16(DType type, const void* w, int64_t cols, int64_t row0, int64_t n_rows,
                    __half* out, cudaStream_t stream) {
  return dequant::with_gguf_type(
      type, [&](auto t) { dequantize_typed<decltype(t)>(w, cols, row0, n_rows, out, stream); });
}

void convert_to_f16(const float* x, int64_t ldx, int n_tokens, int64_t cols, __half* out,
                    cudaStream_t stream) {
  const int64_t threads = n_tokens * (cols / 4);
  convert_to_f16_kernel<<<static_cast<unsigned>((threads + 255) / 256), 256, 0, stream>>>(
      x, ldx, n_tokens, cols, out);
}

std::unique_ptr<PrefillGemm> PrefillGemm::create(cudaStream_t stream, int max_tokens,
                                                 int64_t max_cols, std::string* error,
                                                 size_t scratch_bytes) {
  const Blas* b = load_blas();
  if (b == nullptr) return nullptr;
  std::unique_ptr<PrefillGemm> g(new PrefillGemm());
  g->blas_ = b;
  g->stream_ = stream;
  cublasHandle_t h = nullptr;
  cublasStatus_t s = b->create(&h);
  if (s != CUBLAS_STATUS_SUCCESS) {
    if (error != nullptr) *error = "cuda: cublasCreate failed, status " + std::to_string(s);
    return nullptr;
  }
  g->handle_ = h;
  if (b->set_stream(h, stream) != CUBLAS_STATUS_SUCCESS ||
      b->set_math_mode(h, CUBLAS_DEFAULT_MATH) != CUBLAS_STATUS_SUCCESS) {
    if (error != nullptr) *error = "cuda: cublasSetStream / cublasSetMathMode failed";
    return nullptr;
  }
  g->scratch_elems_ = std::max<size_t>(scratch_bytes / sizeof(__half), max_cols);
  if (cudaMalloc(&g->input_, static_cast<size_t>(max_tokens) * max_cols * sizeof(__half)) !=
          cudaSuccess ||
      cudaMalloc(&g->scratch_, g->scratch_elems_ * sizeof(__half)) != cudaSuccess) {
    if (error != nullptr) *error = "cuda: cannot allocate the prefill GEMM's scratch";
    return nullptr;
  }
  return g;
}

PrefillGemm::~PrefillGemm() {
  if (input_ != nullptr) cudaFree(input_);
  if (scratch_ != nullptr) cudaFree(scratch_);
  if (handle_ != nullptr) {
    static_cast<const Blas*>(blas_)->destroy(static_cast<cublasHandle_t>(handle_));
  }
}

void PrefillGemm::set_input(const float* x, int64_t ldx, int n_tokens, int64_t cols) {
  convert_to_f16(x, ldx, n_tokens, cols, input_, stream_);
  n_tokens_ = n_tokens;
  cols_ = cols;
}

std::string PrefillGemm::matmul(DType type, bool repacked, const void* w, int64_t rows,
                                int64_t cols, float* y, int64_t ldy, bool accumulate) {
  const auto* b = static_cast<const Blas*>(blas_);
  if (cols != cols_) return "cuda: prefill GEMM input does not match the product";
  // Chunks of rows that fit the scratch; a multiple of 64 rows when more than 64 fit (keeps
  // the output columns of every chunk 256-byte aligned for cuBLAS's fast paths).
  int64_t chunk = std::max<int64_t>(1, static_cast<int64_t>(scratch_elems_) / cols);
  if (chunk > 64) chunk = chunk / 64 * 64;
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  for (int64_t row0 = 0; row0 < rows; row0 += chunk) {
    const int64_t n_rows = std::min(chunk, rows - row0);
    const bool dequantized =
        repacked ? dequantize_q8_f16(type, w, rows, cols, row0, n_rows, scratch_, stream_)
                 : dequantize_f16(type, w, cols, row0, n_rows, scratch_, stream_);
    if (!dequantized) {
      return std::string("cuda: prefill GEMM cannot dequantize ") + dtype_name(type) + " weights";
    }
    // In cuBLAS's column-major terms: the chunk (row-major n_rows x cols = column-major
    // cols x n_rows) transposed, times the input (column-major cols x n_tokens), into y's
    // columns row0 .. row0 + n_rows of each token's row (column-major n_rows x n_tokens, ldy).
    const cublasStatus_t s = b->gemm_ex(
        static_cast<cublasHandle_t>(handle_), CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n_rows),
        n_tokens_, static_cast<int>(cols), &alpha, scratch_, CUDA_R_16F, static_cast<int>(cols),
        input_, CUDA_R_16F, static_cast<int>(cols), &beta, y + row0, CUDA_R_32F,
        static_cast<int>(ldy), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (s != CUBLAS_STATUS_SUCCESS) return "cuda: cublasGemmEx failed, status " + std::to_string(s);
  }
  g_products.fetch_add(1);
  return {};
}

int64_t prefill_gemm_products() {
  return g_products.load();
}

}  // namespace squish::cuda
