// The whole decoder stack of one decode step (one token) in one persistent kernel
// (decode_stack.cu). The kernel chain of a layer (norm + q|k|v, attention, o, norm + gate|up,
// gating, down) costs each product a dependent launch: its blocks start only as the previous
// kernel's blocks leave, then load their first weights. Measured on the H100, that fixed cost was
// about a third of a Llama-3-8B Q4_K_M token (docs/cuda.md, seventh slice). Here every block of a
// grid that fits on the GPU at once walks all layers; the phases of a layer are separated by grid
// barriers, and each warp loads its first steps of the next phase's weights before it waits at
// the barrier, so the weights stream across the phase boundary.
//
// The products run decode_body (decode_body.cuh) with 8-bit activations, so every matrix must be
// Q4_K or Q6_K (a Q4_K_M / Q4_K_S / Q6_K model), or every one Q8_0, in repack_q8's layout.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace squish::cuda {

struct StackMatrix {
  DType type = DType::F32;
  const void* w = nullptr;  // repack_q8 layout
  int64_t rows = 0;
};

// One layer's weights and caches (device pointers). The products: [q | k | v] of RMSNorm(x) as one
// matrix (qkv[1].rows == 0) or as [q | k] and v of another type; x += o(attention); [gate | up]
// of RMSNorm(x), 2 * n_ff rows; x += down(act(gate) * up).
struct StackLayer {
  StackMatrix qkv[2], o, gate_up, down;
  const float* attn_norm = nullptr;
  const float* ffn_norm = nullptr;
  const float *bq = nullptr, *bk = nullptr, *bv = nullptr;  // may be null
  float *k_cache = nullptr, *v_cache = nullptr;             // [position][n_head_kv * head_dim]
};

struct StackShape {
  int64_t n_embd = 0, n_ff = 0;
  int n_head = 0, n_head_kv = 0, head_dim = 0, n_rot = 0;
  bool neox = false;  // RoPE pairs (i, i + n_rot / 2), else (2i, 2i + 1)
  bool gelu = false;  // gating with tanh-approximated GELU, else SiLU
  float eps = 0;
};

// Owns the layer table on the device and the kernel's scratch (attention partials and counters,
// the 8-bit activations between phases, the barrier), about 1 MB for a 7-8B model.
class DecodeStack {
 public:
  // ok() is false, with the reason in why_not(), for shapes or weight types it does not run.
  DecodeStack(const StackShape& shape, const std::vector<StackLayer>& layers);
  ~DecodeStack();
  DecodeStack(const DecodeStack&) = delete;
  DecodeStack& operator=(const DecodeStack&) = delete;
  bool ok() const { return ok_; }
  const std::string& why_not() const { return why_not_; }
  std::string description() const;

  // One token through every layer at position *pos0 (device int): x (n_embd floats) is the
  // residual stream, updated in place; qkv is scratch for [q | k | v] (n_head + 2 n_head_kv head
  // rows); cos_sin: the position's n_rot / 2 cosines then sines. Appends k and v to the caches.
  void run(float* x, float* qkv, const float* cos_sin, const int* pos0, cudaStream_t stream) const;

 private:
  StackShape shape_;
  bool ok_ = false;
  std::string why_not_;
  int type_set_ = 0;            // 0: Q4_K and Q6_K, 1: Q8_0
  bool inline_phases_ = false;  // SQUISH_CUDA_STACK_INLINE=1 (decode_stack.cu)
  int blocks_ = 0, max_chunks_ = 0, n_layer_ = 0;
  void* layers_ = nullptr;  // device table of the kernel's layer records
  void* scratch_ = nullptr;
  size_t smem_ = 0;
};

}  // namespace squish::cuda
