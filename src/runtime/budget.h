// What running a model costs: memory (mapped weights, KV cache, scratch) for a context length,
// and money per query from measured speeds and an hourly machine price. Used by `squish bench`
// and `squish doctor`; the formulas are stated here and in `squish bench --help`.
#pragma once

#include <cstdint>

#include "model/config.h"

namespace squish {

struct MemoryFootprint {
  uint64_t weights_bytes = 0;   // tensor data, memory-mapped from the model file
  uint64_t kv_cache_bytes = 0;  // kv_cache_bytes(config, n_ctx)
  uint64_t scratch_bytes = 0;   // activations of one micro-batch, per-thread kernel buffers, logits
  uint64_t total() const { return weights_bytes + kv_cache_bytes + scratch_bytes; }
};

// K and V in F32 for every layer and position:
// n_layer * n_ctx * (n_head_kv * head_dim) * 2 * 4 bytes.
uint64_t kv_cache_bytes(const ModelConfig& c, int64_t n_ctx);

// An estimate of the runtime's working memory (src/runtime/session.cpp and the kernels):
// per micro-batch token, F32 rows of 3 * n_embd + 2 * (q_dim + kv_dim) + 3 * n_ff + n_rot
// (plus the fused QKV row when the model fuses it) and ~1.14 bytes per input column for quantized
// activations; per thread, a 32-row F32 weight panel and the attention score rows; one row of
// logits.
uint64_t scratch_bytes_estimate(const ModelConfig& c, int64_t n_ctx, int n_batch, int n_threads,
                                bool fused_qkv);

MemoryFootprint estimate_memory(const ModelConfig& c, uint64_t weights_bytes, int64_t n_ctx,
                                int n_batch, int n_threads, bool fused_qkv);

struct QueryCost {
  double seconds_per_query = 0;     // prompt_tokens / prefill_tps + gen_tokens / decode_tps
  double queries_per_hour = 0;      // 3600 / seconds_per_query
  double usd_per_1000_queries = 0;  // price_per_hour * seconds_per_query * 1000 / 3600
};

// One query at a time on the whole machine (no batching across queries): the cost of a query is
// the machine time it occupies. Throws squish::Error when a needed speed is not positive.
QueryCost query_cost(double price_per_hour, int64_t prompt_tokens, int64_t gen_tokens,
                     double prefill_tokens_per_second, double decode_tokens_per_second);

}  // namespace squish
