#include "runtime/memory_need.h"

#include <omp.h>

#include <algorithm>
#include <unordered_set>

#include "core/memory_check.h"
#include "kernels/cpu/gemm_int8.h"
#include "runtime/budget.h"
#include "runtime/cuda_session.h"

namespace squish {

std::string RuntimeMemory::detail(int n_ctx) const {
  std::string s = "(weights " + format_bytes(weights);
  if (packed > 0) s += ", packed copy " + format_bytes(packed);
  s += ", KV cache " + format_bytes(kv_cache) + " at " + std::to_string(n_ctx) + " tokens";
  s += ", scratch " + format_bytes(scratch);
  if (logits > 0) s += ", logits " + format_bytes(logits);
  s += ")";
  return s;
}

namespace {

// The session's context length for these options (Session's constructor has the same rule).
int session_ctx(const Model& model, const SessionOptions& options) {
  return options.n_ctx > 0 ? options.n_ctx : std::min(model.config.n_ctx_train, 4096);
}

// GemmPackedWeights::pack()'s allocation for the matrices Session registers, without packing.
uint64_t packed_bytes(const Model& model) {
  std::unordered_set<const void*> seen;
  uint64_t total = 0;
  auto add = [&](const TensorInfo* w) {
    if (w == nullptr || w->shape.size() < 2 || !gemm_available(w->type)) return;
    if (!seen.insert(w->data).second) return;
    const int64_t rows = w->shape[0], cols = w->shape[1];
    const int64_t panels = (rows + kGemmPanelRows - 1) / kGemmPanelRows;
    total += static_cast<uint64_t>(panels) * gemm_panel_bytes(gemm_format(w->type), cols);
  };
  for (const LayerWeights& L : model.layers) {
    for (const TensorInfo* w : {L.wq, L.wk, L.wv, L.wqkv, L.wo, L.w_gate, L.w_up, L.w_down}) add(w);
  }
  add(model.output);
  constexpr uint64_t kHuge = uint64_t{2} << 20;
  return (total + kHuge - 1) / kHuge * kHuge;
}

}  // namespace

RuntimeMemory runtime_memory(const Model& model, const SessionOptions& options,
                             int64_t logits_rows) {
  const ModelConfig& c = model.config;
  const int n_ctx = session_ctx(model, options);
  const int n_threads = options.n_threads > 0 ? options.n_threads : omp_get_num_procs();
  const int n_batch = std::clamp(options.n_batch, 1, 4096);
  const bool fused_qkv = !model.layers.empty() && model.layers[0].wqkv != nullptr;
  RuntimeMemory m;
  m.weights = model.weight_bytes();
  m.packed = options.pack_weights ? packed_bytes(model) : 0;
  m.kv_cache = kv_cache_bytes(c, (static_cast<int64_t>(n_ctx) + 31) / 32 * 32);
  m.scratch = scratch_bytes_estimate(c, n_ctx, n_batch, n_threads, fused_qkv);
  m.logits = static_cast<uint64_t>(std::max<int64_t>(logits_rows, 0)) * c.n_vocab * sizeof(float);
  return m;
}

void check_runtime_memory(const Model& model, const SessionOptions& options, int64_t logits_rows) {
  const Device device = options.device == Device::Default ? default_device() : options.device;
  if (device == Device::Cuda || !memory_check_enabled()) return;
  const RuntimeMemory m = runtime_memory(model, options, logits_rows);
  check_memory(model.path, m.total(), m.detail(session_ctx(model, options)));
}

}  // namespace squish
