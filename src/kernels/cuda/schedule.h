// How the persistent decode kernels divide work among warps (kernels_q8.cu),
// kept apart from the kernels so the CPU test suite checks it (tests/cuda_layout_test.cpp).
#pragma once

#include <cstdint>

#include "kernels/cuda/host_device.h"

namespace squish::cuda {

// The fewest blocks (at most max_blocks, of warps_per_block warps) that give every warp the same
// number of row groups up to one: ceil(groups / q) warps for q groups per warp.
SQUISH_HOST_DEVICE int64_t balanced_blocks(int64_t groups, int64_t max_blocks,
                                           int warps_per_block) {
  const int64_t slots = max_blocks * warps_per_block;
  const int64_t per_warp = (groups + slots - 1) / slots;
  const int64_t warps = (groups + per_warp - 1) / per_warp;
  const int64_t blocks = (warps + warps_per_block - 1) / warps_per_block;
  return blocks < max_blocks ? blocks : max_blocks;
}

// The first of two products sharing a grid of `blocks` blocks gets blocks in proportion to its
// weight bytes, rounded, and each product at least one (blocks >= 2).
SQUISH_HOST_DEVICE int64_t split_blocks(int64_t blocks, double bytes_a, double bytes_b) {
  const int64_t a = static_cast<int64_t>(blocks * bytes_a / (bytes_a + bytes_b) + 0.5);
  return a < 1 ? 1 : a > blocks - 1 ? blocks - 1 : a;
}

}  // namespace squish::cuda
