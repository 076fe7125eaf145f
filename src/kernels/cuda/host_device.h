// Annotations for code compiled both into CUDA kernels (nvcc) and into host code (the CPU test
// suite checks the kernels' per-lane arithmetic and layout that way, without a GPU).
#pragma once

#if defined(__CUDACC__)
#define SQUISH_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define SQUISH_HOST_DEVICE inline
#endif

// Loop unrolling in the device pass only (host compilers warn about the pragma).
#if defined(__CUDA_ARCH__)
#define SQUISH_UNROLL _Pragma("unroll")
#else
#define SQUISH_UNROLL
#endif
