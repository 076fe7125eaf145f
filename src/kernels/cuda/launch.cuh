// Kernel launches shared by the .cu files: programmatic dependent launch (PDL, sm_90) lets a
// kernel start while the one before it drains, so its weight loads overlap the previous kernel's
// tail. Every kernel calls pdl_launch_dependents() at its start and pdl_wait() before it reads
// anything an earlier kernel wrote (or writes anything): only immutable weights may be touched
// before the wait. Without the launch attribute (the default; tests) both are no-ops.
#pragma once

#include <cuda_runtime.h>

#include <type_traits>
#include <utility>

namespace squish::cuda::detail {

bool programmatic_launch();  // kernels.cu: set_programmatic_launch

// The current device's SM count (at least 1) and whether it is sm_90 or later (thread block
// clusters, TMA bulk copies), each asked of the driver once per process (kernels.cu).
int sm_count();
bool device_is_sm90();

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// With `smem` bytes of dynamic shared memory (launch_smem) or none (launch).
template <typename... Params, typename... Args>
void launch_smem(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                 Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = programmatic_launch() ? 1 : 0;
  // A failed launch is reported by cudaGetLastError, which the session checks after each pass.
  (void)cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t stream, Args&&... args) {
  launch_smem(kernel, grid, block, 0, stream, std::forward<Args>(args)...);
}

// Splits n_tokens into launches of 8, 4, 2 and 1 tokens (the token counts the mat-vec kernels are
// compiled for): launch_chunk(std::integral_constant<int, N>{}, first_token) for each.
template <class F>
void for_token_chunks(int n_tokens, F&& launch_chunk) {
  for (int t = 0; t < n_tokens;) {
    const int left = n_tokens - t;
    if (left >= 8) {
      launch_chunk(std::integral_constant<int, 8>{}, t);
      t += 8;
    } else if (left >= 4) {
      launch_chunk(std::integral_constant<int, 4>{}, t);
      t += 4;
    } else if (left >= 2) {
      launch_chunk(std::integral_constant<int, 2>{}, t);
      t += 2;
    } else {
      launch_chunk(std::integral_constant<int, 1>{}, t);
      t += 1;
    }
  }
}

}  // namespace squish::cuda::detail
