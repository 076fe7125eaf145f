// What evaluating a model on the CPU will hold in memory, worked out from its headers before the
// session starts (nothing is read from the weights), and the check against the usable memory
// (core/memory_check.h) that `squish run`, `perplexity` and `imatrix` make before they start.
//
// The weights are memory-mapped, not copied: they cost no anonymous memory, but a command that
// evaluates the model reads every weight for every token, so unless they all fit in memory the
// kernel re-reads them from disk on every token. They are counted with what the session
// allocates: the packed copy of the quantized matrices (SessionOptions::pack_weights, where the
// int8 GEMM runs), the KV cache and the scratch buffers. Streaming commands (quantize, convert,
// export, info) read each weight once and make no check.
#pragma once

#include <cstdint>
#include <string>

#include "model/model.h"
#include "runtime/session.h"

namespace squish {

struct RuntimeMemory {
  uint64_t weights = 0;   // tensor bytes as stored (mapped; norm vectors are owned F32 copies)
  uint64_t packed = 0;    // the int8 GEMM's packed copy of the quantized matrices
  uint64_t kv_cache = 0;  // K and V in F32, n_ctx rounded up to the score kernel's 32
  uint64_t scratch = 0;   // runtime/budget.h scratch_bytes_estimate
  uint64_t logits = 0;    // the command's logits beyond the last row (a perplexity window's)
  uint64_t total() const { return weights + packed + kv_cache + scratch + logits; }
  // "(weights 1.0 GiB, packed copy 1.0 GiB, KV cache 64.0 MiB at 4096 tokens, scratch 3.0 MiB)"
  std::string detail(int n_ctx) const;
};

// What Session(model, options) on the CPU will need, with the session's own defaults for a zero
// n_ctx / n_threads.
// logits_rows: rows of n_vocab F32 logits the command keeps besides the session (perplexity: a
// whole window).
RuntimeMemory runtime_memory(const Model& model, const SessionOptions& options,
                             int64_t logits_rows = 0);

// check_memory(model.path, ...) with runtime_memory(); nothing for a CUDA session (the weights
// then live on the GPU).
void check_runtime_memory(const Model& model, const SessionOptions& options,
                          int64_t logits_rows = 0);

}  // namespace squish
