// The order of a warp's loads and math over its steps in the persistent decode kernel
// (kernels_q8.cu: decode_body) and over a lane's items in the per-row kernel (mv_q8_kernel), kept
// apart so the CPU test suite checks it
// (tests/cuda_layout_test.cpp): two register buffers take the steps in turn, each refilled right
// after its math, so two steps are in flight while the warp waits on one. (A loop that copies the
// loaded buffer into the used one measured the same on the H100: ptxas renames the registers
// there; this order does not depend on it.)
//
// load(b) must load the next step (in step order) into buffer b, math(b) multiply the next step
// (in step order) from buffer b; b is std::integral_constant<int, 0 or 1>, a compile-time index,
// so the buffers stay in registers.
#pragma once

#include <cstdint>
#include <type_traits>

#include "kernels/cuda/host_device.h"

namespace squish::cuda {

using Buffer0 = std::integral_constant<int, 0>;
using Buffer1 = std::integral_constant<int, 1>;

// Steps 0 and 1 of `total` into buffers 0 and 1: before the kernel waits for the one before it
// (weights do not depend on it) and before any prologue, so they load meanwhile.
template <class Load>
SQUISH_HOST_DEVICE void two_buffer_preload(int64_t total, Load&& load) {
  if (total > 0) load(Buffer0{});
  if (total > 1) load(Buffer1{});
}

// Then every step's math, step j from buffer j % 2, which is refilled with step j + 2 at once.
template <class Load, class Math>
SQUISH_HOST_DEVICE void two_buffer_steps(int64_t total, Load&& load, Math&& math) {
  for (int64_t j = 0; j < total; j += 2) {
    math(Buffer0{});
    if (j + 2 < total) load(Buffer0{});
    if (j + 1 == total) break;
    math(Buffer1{});
    if (j + 3 < total) load(Buffer1{});
  }
}

// The per-row kernel's order (kernels_q8.cu: mv_q8_kernel): one lane's items first, first +
// stride, ... below n, item k in buffer k % 2; item k + 1 is loaded before item k's math.
// two_buffer_items_preload loads the first (before the kernel waits for the one before it).
template <class Load>
SQUISH_HOST_DEVICE void two_buffer_items_preload(int first, int n, Load&& load) {
  if (first < n) load(Buffer0{}, first);
}
template <class Load, class Math>
SQUISH_HOST_DEVICE void two_buffer_items(int first, int n, int stride, Load&& load, Math&& math) {
  for (int it = first; it < n;) {
    if (it + stride < n) load(Buffer1{}, it + stride);
    math(Buffer0{}, it);
    it += stride;
    if (it >= n) break;
    if (it + stride < n) load(Buffer0{}, it + stride);
    math(Buffer1{}, it);
    it += stride;
  }
}

}  // namespace squish::cuda
