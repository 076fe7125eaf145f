#include "runtime/budget.h"

#include <algorithm>

#include "core/error.h"

namespace squish {

uint64_t kv_cache_bytes(const ModelConfig& c, int64_t n_ctx) {
  return static_cast<uint64_t>(c.n_layer) * static_cast<uint64_t>(n_ctx) *
         static_cast<uint64_t>(c.kv_dim()) * 2 * sizeof(float);
}

uint64_t scratch_bytes_estimate(const ModelConfig& c, int64_t n_ctx, int n_batch, int n_threads,
                                bool fused_qkv) {
  const uint64_t B = static_cast<uint64_t>(std::max(n_batch, 1));
  uint64_t row_floats = 3ull * c.n_embd + 2ull * (c.q_dim() + c.kv_dim()) + 3ull * c.n_ff +
                        static_cast<uint64_t>(c.n_rot);
  if (fused_qkv) row_floats += c.q_dim() + 2ull * c.kv_dim();
  const uint64_t max_cols = static_cast<uint64_t>(std::max(c.n_embd, c.n_ff));
  // Activations quantized for the integer dot products: Q8_K is 292 bytes per 256 values.
  const uint64_t quantized_act = B * max_cols * 292 / 256;
  // Prefill weight panel (32 rows converted to F32) and the attention rows of 8 queries.
  const uint64_t per_thread = (32 * max_cols + max_cols + 8 * static_cast<uint64_t>(n_ctx)) * 4;
  const uint64_t logits = static_cast<uint64_t>(c.n_vocab) * 4;
  return B * row_floats * 4 + quantized_act + per_thread * std::max(n_threads, 1) + logits;
}

MemoryFootprint estimate_memory(const ModelConfig& c, uint64_t weights_bytes, int64_t n_ctx,
                                int n_batch, int n_threads, bool fused_qkv) {
  MemoryFootprint m;
  m.weights_bytes = weights_bytes;
  m.kv_cache_bytes = kv_cache_bytes(c, n_ctx);
  m.scratch_bytes = scratch_bytes_estimate(c, n_ctx, n_batch, n_threads, fused_qkv);
  return m;
}

QueryCost query_cost(double price_per_hour, int64_t prompt_tokens, int64_t gen_tokens,
                     double prefill_tps, double decode_tps) {
  if (price_per_hour < 0) fail("price per hour {} is negative", price_per_hour);
  if (prompt_tokens < 0 || gen_tokens < 0) fail("token counts per query must not be negative");
  if (prompt_tokens > 0 && !(prefill_tps > 0))
    fail("cost per query needs a prefill speed (run the pp test: -p > 0)");
  if (gen_tokens > 0 && !(decode_tps > 0))
    fail("cost per query needs a decode speed (run the tg test: -n > 0)");
  if (prompt_tokens == 0 && gen_tokens == 0) fail("a query needs at least one token");
  QueryCost q;
  q.seconds_per_query = (prompt_tokens > 0 ? prompt_tokens / prefill_tps : 0.0) +
                        (gen_tokens > 0 ? gen_tokens / decode_tps : 0.0);
  q.queries_per_hour = 3600.0 / q.seconds_per_query;
  q.usd_per_1000_queries = price_per_hour * q.seconds_per_query * 1000.0 / 3600.0;
  return q;
}

}  // namespace squish
