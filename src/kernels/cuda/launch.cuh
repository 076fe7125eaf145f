// Kernel launches shared by the .cu files: programmatic dependent launch (PDL, sm_90) lets a
// kernel start while the one before it drains, so its weight loads overlap the previous kernel's
// tail. Every kernel calls pdl_launch_dependents() at its start and pdl_wait() before it reads
// anything an earlier kernel wrote (or writes anything): only immutable weights may be touched
// before the wait. Without the launch attribute (the default; tests) both are no-ops.
#pragma once

#include <cuda_runtime.h>

#include <utility>

namespace squish::cuda::detail {

bool programmatic_launch();  // kernels.cu: set_programmatic_launch

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

}  // namespace squish::cuda::detail
