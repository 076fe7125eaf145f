// CUDA kernels of the forward pass, launched from host code (kernels/cuda/cuda_forward.cpp) on a
// stream. Weights stay in their GGUF block layouts (quant/blocks.h); activations are F32 rows.
// Every launcher is checked against the CPU reference in tests/cuda_test.cpp. Shapes must have
// passed cuda_matmul_supported / the host-side checks in cuda_forward.cpp (nothing here throws).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "kernels/cuda/layout.h"

namespace squish::cuda {

// Y[t][r] = sum_i X[t][i] * W[r][i] for t < n_tokens (+ Y[t][r] when accumulate: the residual
// add fused into the product). W: rows x cols in `type`, rows contiguous. x rows at x + t * ldx
// (ldx a multiple of 4, x 16-byte aligned), y rows at y + t * ldy. Decode (n_tokens == 1) reads
// each weight once; prefill reads it once per 8 tokens.
bool matmul_supported(DType type, int64_t cols);
void matmul(DType type, const void* w, int64_t rows, int64_t cols, const float* x, int64_t ldx,
            int n_tokens, float* y, int64_t ldy, bool accumulate, cudaStream_t stream);

// The same product with 8-bit activations (kernels_q8.cu): integer dot products of codes and
// activations, about a third of the instructions per weight of the F32 path, which lets 4- and
// 6-bit decode run at memory speed. quantize_activations_q8 makes them: per token and group of 32
// columns, d = amax / 127 (F32) and q = round(x / d); q rows at q + t * cols, scales at
// d + t * cols / 32 (cols a multiple of 32, x rows 16-byte aligned not required).
// The weights must be in the layout repack_q8 makes from GGUF rows (layout.h: the same bytes,
// regrouped, so codes are read with aligned, coalesced 16-byte loads).
void quantize_activations_q8(const float* x, int64_t ldx, int n_tokens, int64_t cols, int8_t* q,
                             float* d, cudaStream_t stream);
bool matmul_q8_supported(DType type, int64_t cols);  // every quantized type squish writes

// Work fused into a one-token product's end (matmul_q8 with n_tokens == 1), each saving a
// kernel and its launch gap per layer. counters: device ints, zero before and after (at least
// 1 + rows / 64 of them); q and d receive an 8-bit form as quantize_activations_q8 makes it.
struct Q8Epilogue {
  // RMSNorm of the (accumulated) output row y[0 .. rows): norm_out = y / rms(y) * norm_weight
  // (F32, may be null) and its 8-bit form in q, d (may be null). rows a multiple of 32.
  const float* norm_weight = nullptr;
  float eps = 0;
  float* norm_out = nullptr;
  // Gating: the matrix is [gate rows | up rows] (rows / 2 each, a multiple of 32):
  // y[i] = act(gate_i) * up_i for i < rows / 2 (SiLU, or tanh-approximated GELU), and its 8-bit
  // form in q, d (may be null). q must not be the product's own input xq.
  bool gate = false;
  bool gelu = false;
  int8_t* q = nullptr;
  float* d = nullptr;
  int* counters = nullptr;
};
void matmul_q8(DType type, const void* w, int64_t rows, int64_t cols, const int8_t* xq,
               const float* xd, int n_tokens, float* y, int64_t ldy, bool accumulate,
               cudaStream_t stream, const Q8Epilogue* epilogue = nullptr);

// A one-token product whose input is made in its own prologue: RMSNorm of the F32 row x (cols
// floats, 16-byte aligned; cols a multiple of 32) times weight, quantized to 8 bits as
// quantize_activations_q8 does, by every thread block into its shared memory (cols * 1.125
// bytes). Saves the norm kernel and its launch gap before the product. y: rows outputs.
struct Q8NormIn {
  const float* x = nullptr;
  const float* weight = nullptr;
  float eps = 0;
};
// With gate set (gate->gate true; q, d, counters as for matmul_q8's epilogue): the matrix is
// [gate rows | up rows] and y[i] = act(gate_i) * up_i for i < rows / 2, as matmul_q8's gating
// epilogue computes it (the persistent kernel, two rows per warp; accumulate ignored).
void matmul_q8_norm_in(DType type, const void* w, int64_t rows, int64_t cols, const Q8NormIn& in,
                       float* y, bool accumulate, cudaStream_t stream,
                       const Q8Epilogue* gate = nullptr);

// A one-token product whose input is the gating act(gate) * up (SiLU, or GELU with gelu) of the
// F32 rows gate and up (cols floats each, 16-byte aligned; cols a multiple of 32), quantized to 8
// bits by every thread block into its shared memory, as gated_activation's 8-bit form (the same
// bits). Saves the gating kernel and its launch before the down product. False (nothing
// launched) where the type lacks 8-bit kernels or the input passes 48 KB.
bool matmul_q8_gate_in(DType type, const void* w, int64_t rows, int64_t cols, const float* gate,
                       const float* up, bool gelu, float* y, bool accumulate, cudaStream_t stream);
bool matmul_q8_gate_in_supported(DType type, int64_t cols);  // whether it would launch

// Two one-token products of the same normed input in one launch (a layer's [q | k] and v when
// their weight types differ), each as matmul_q8_norm_in would compute it; y of each: its rows
// outputs. False (nothing launched) when the types are equal or lack 8-bit kernels.
struct Q8Product {
  DType type;
  const void* w;
  int64_t rows;
  float* y;
};
bool matmul_q8_norm_in_pair(const Q8Product& a, const Q8Product& b, int64_t cols,
                            const Q8NormIn& in, bool accumulate, cudaStream_t stream);

// One-token kernel choice for matmul_q8 / matmul_q8_norm_in (tests, tuning): variant -1 is each
// type's default, 0..4 as SQUISH_CUDA_DECODE (kernels_q8.cu); max_blocks > 0 caps the persistent
// grid (so that warps walk many rows), 0 sizes it by occupancy; big_blocks as big_block_level
// below, -1 as SQUISH_CUDA_BIG_BLOCKS says. Not thread-safe: set it before launching.
void set_decode_options(int variant, int max_blocks, int big_blocks = -1);
// Which persistent one-token kernels run in one block of every warp an SM holds rather than in
// blocks of 4 warps: 0 none, 1 (the default) those with the norm prologue, 2 all of them.
int big_block_level();

// Launches on this host thread from now on use programmatic dependent launch (sm_90): a kernel
// may start while the previous one on its stream drains and waits for it before touching its
// outputs (kernels/cuda/launch.cuh). Off by default; the session turns it on between the first
// and last kernel of a forward pass.
void set_programmatic_launch(bool on);

// out[t] = x[t] / rms(x[t]) * weight, n elements per row (rows at stride n). With q and d set
// (n a multiple of 32), also the rows' 8-bit form as quantize_activations_q8 makes it.
void rms_norm(const float* x, const float* weight, int n_tokens, int n, float eps, float* out,
              cudaStream_t stream, int8_t* q = nullptr, float* d = nullptr);

// One layer's KV cache: k and v rows of kv_dim values per position ([position][kv_dim]), in F32
// or F16. F16 halves what the cache holds and what attention reads per key; each value is the F32
// one rounded to nearest, read back exactly.
enum class KvType { F32, F16 };
struct KvCache {
  void* k = nullptr;
  void* v = nullptr;
  KvType type = KvType::F32;
};
inline size_t kv_type_bytes(KvType t) {
  return t == KvType::F16 ? 2 : 4;
}

// Per token t at position *pos0 + t: adds the biases (may be null), rotates the first n_rot
// dimensions of every q and k head (neox: pairs (i, i + n_rot/2); otherwise (2i, 2i+1)), then
// stores k and v at that position of the layer's caches ([position][kv_dim]).
struct RopeArgs {
  float* q;
  float* k;
  float* v;
  int64_t ld;  // row stride of q, k and v (floats)
  const float *bq, *bk, *bv;
  int n_head, n_head_kv, head_dim, n_rot;
  bool neox;
  // Per token: n_rot / 2 cosines then n_rot / 2 sines of position * inverse frequency,
  // computed on the host in double like the CPU runtime's table (and cheap to upload).
  const float* cos_sin;
  const int* pos0;  // device scalar: the first token's position
  KvCache cache;
};
void rope_and_store(const RopeArgs& a, int n_tokens, cudaStream_t stream);

// Causal attention for n_tokens queries at positions *pos0 + t against the cached keys and values
// 0 .. *pos0 + t (online softmax, one block per head and query). q rows at q + t * ldq, out rows at
// out + t * n_head * head_dim. head_dim is a multiple of 32, at most 256. With out_q/out_d set,
// also the output rows' 8-bit form (as quantize_activations_q8). With rope set (one token only),
// rope_and_store's work is done first inside the kernel (q, k and v from rope->q/k/v; rope's
// cache must be `cache`), with the same arithmetic.
//
// One token is taken by kv head, every q head of its group in one cluster of blocks that split the
// context evenly (attend.cuh: attention_group), where the device and head shape allow it and
// set_attention_options leaves it on: a block per chunk of kAttentionSplitKeys keys that `split`
// gives (split->grid_chunks, else split->n_splits; 2 without split), at most 16; the partials and
// counters are unused. Otherwise, with split set (one token):
// the context is split into chunks of kAttentionSplitKeys keys, one block per (head, chunk), merged
// by the last block of each head (flash-decoding), so a long context is read by many blocks instead
// of one per head. split->n_splits >= the chunks of the longest context (grids are fixed in a
// captured graph: chunks past the position exit at once); partials: n_head * n_splits * (head_dim +
// 2) floats; counters: n_head ints, zero before and after.
constexpr int kAttentionSplitKeys = 256;
// grid_chunks > 0: only that many blocks per head are launched, the chunks holding keys at this
// position (a captured graph per count; blocks past the position would only cost their launch).
struct AttentionSplit {
  float* partials = nullptr;
  int* counters = nullptr;
  int n_splits = 0;
  int grid_chunks = 0;
};
void attention(const float* q, int64_t ldq, const KvCache& cache, int n_head, int n_head_kv,
               int head_dim, const int* pos0, int n_tokens, float* out, cudaStream_t stream,
               int8_t* out_q = nullptr, float* out_d = nullptr, const RopeArgs* rope = nullptr,
               const AttentionSplit* split = nullptr);

// Readies the one-token attention kernel for these heads and cache type (device queries and kernel
// attributes, which a graph capture must not make): call before capturing a decode step. True
// when one token goes through the kernel by kv head in clusters (attention() below).
bool prepare_decode_attention(KvType cache, int n_head, int n_head_kv, int head_dim);
// Whether that kernel runs one block of 16 warps per kv head while the context is one 256-key
// chunk (set_attention_options' one_block, and where the block's shared memory allows).
bool attention_one_block(int n_head, int n_head_kv, int head_dim);

// Attention kernels (tests, tuning). Prefill: 1 the tiled kernel (keys and values through shared
// memory, shared by 16 queries; head_dim <= 128), 0 one block per query, -1 as
// SQUISH_CUDA_ATTN_TILED says (default 1). Decode: 1 one cluster of blocks per kv head, taking
// every q head of the group (sm_90; head_dim 64, 128 or 256), 0 one block per q head (split as
// `split` says), -1 as SQUISH_CUDA_ATTN_GROUP says (default 1); group_warps: the former's warps
// per block, 8 or 16 (where shared memory allows), -1 as SQUISH_CUDA_ATTN_WARPS says (default 8);
// group_cluster: its blocks per kv head at every context (0 by the context, the default; -1 as
// SQUISH_CUDA_ATTN_CLUSTER says); one_block: 1 one block of 16 warps per kv head (where they fit)
// while the context is one 256-key chunk, 0 a cluster of at least 2 blocks, -1 as
// SQUISH_CUDA_ATTN_ONE_BLOCK says (default 1). Not thread-safe: set them before launching.
void set_attention_options(int tiled_prefill, int group_decode = -1, int group_warps = -1,
                           int group_cluster = -1, int one_block = -1);

// SQUISH_CUDA_ATTN_STOP (1-4; 0 unset): the stage after which one-token attention by kv head
// ends, for timing only (its output is then meaningless; docs/cuda.md, seventeenth slice).
int attention_stop_stage();

// gate[t][i] = act(gate[t][i]) * up[t][i], i < n (SiLU or tanh-approximated GELU).
// With q/d set (n a multiple of 32), also the results' 8-bit form, rows at q + t * n.
void gated_activation(float* gate, int64_t ld_gate, const float* up, int64_t ld_up, int n_tokens,
                      int n, bool gelu, cudaStream_t stream, int8_t* q = nullptr,
                      float* d = nullptr);

// Index of the largest of n values (the first one on ties), written to *out (device).
void argmax(const float* x, int n, int* out, cudaStream_t stream);

// The k largest of logits[i] / temperature, i < n (1 <= k <= n), ranked as the host sampler's
// ranks_before (runtime/sampler.h: larger value, then lower id), written to values[0..k) and
// ids[0..k) in no particular order (top_k.cu). scratch: top_k_scratch_bytes(n, k) of device
// memory.
size_t top_k_scratch_bytes(int n, int k);
void top_k_logits(const float* logits, int n, float temperature, int k, void* scratch,
                  float* values, int* ids, cudaStream_t stream);

// Reads `bytes` from `buffer` (16-byte aligned) with 16-byte loads: the bandwidth roofline of a
// weight-streaming kernel. sink receives a value so the reads are not optimised away.
void read_buffer(const void* buffer, size_t bytes, unsigned* sink, cudaStream_t stream);

}  // namespace squish::cuda
