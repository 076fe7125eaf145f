// `squish doctor [MODEL]`: what this machine offers (CPU instruction sets with the OS's consent,
// cores, memory, GPUs) and, for a model, which quantization types fit in memory and how fast each
// type's matmul kernel streams weights here, measured by a short micro-benchmark.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "cli/commands.h"
#include "core/error.h"
#include "core/sysinfo.h"
#include "export/manifest.h"
#include "kernels/cpu/matmul.h"
#include "model/model.h"
#include "quant/mix.h"
#include "quant/quant.h"
#include "runtime/budget.h"

namespace squish::cli {

namespace {

struct DoctorArgs {
  std::string model;
  int ctx = 0;
  int threads = 0;
  int bench_ms = 800;
  bool json = false;
};

// Decode-style (one token) matrix-vector products on a weight matrix as large as the last-level
// cache of most CPUs or larger, so the figure approaches the rate at which this type's kernel
// streams weights from memory: what bounds decode speed. Rows are quantized from random data once
// and tiled (which also pages the buffer in, so no separate warm-up call is needed).
constexpr int64_t kBenchCols = 4096;  // a multiple of every block size
constexpr size_t kBenchBytes = 32u << 20;

double bench_kernel_gbps(DType type, double seconds, std::vector<uint8_t>& buffer) {
  const size_t row = row_bytes(type, kBenchCols);
  const int64_t rows = static_cast<int64_t>(kBenchBytes / row) / 16 * 16;
  const size_t bytes = row * static_cast<size_t>(rows);
  if (buffer.size() < bytes) buffer.resize(bytes);
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  constexpr int kDistinctRows = 16;
  std::vector<float> values(kBenchCols);
  for (int r = 0; r < kDistinctRows; ++r) {
    for (float& v : values) v = normal(rng);
    uint8_t* dst = buffer.data() + r * row;
    if (const QuantTraits* qt = quant_traits(type)) {
      qt->quantize(values.data(), dst, kBenchCols, nullptr);
    } else if (type == DType::F32) {
      std::memcpy(dst, values.data(), row);
    } else {
      uint16_t* h = reinterpret_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < kBenchCols; ++i)
        h[i] = type == DType::F16 ? fp32_to_fp16(values[i]) : fp32_to_bf16(values[i]);
    }
  }
  for (int64_t r = kDistinctRows; r < rows; ++r)
    std::memcpy(buffer.data() + r * row, buffer.data() + (r % kDistinctRows) * row, row);
  std::vector<float> x(kBenchCols), y(rows);
  for (float& v : x) v = normal(rng) * 50.0f;
  int calls = 0;
  const auto t0 = std::chrono::steady_clock::now();
  double elapsed = 0;
  do {
    matmul(x.data(), 1, buffer.data(), type, rows, kBenchCols, y.data(), rows);
    ++calls;
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  } while (elapsed < seconds || calls < 2);
  return static_cast<double>(bytes) * calls / elapsed / 1e9;
}

std::string gib(uint64_t bytes) {
  return fmt::format("{:.2f} GiB", bytes / 1073741824.0);
}
std::string mib(uint64_t bytes) {
  return fmt::format("{:.1f} MiB", bytes / 1048576.0);
}

struct MixRow {
  std::string mix;
  DType base;
  uint64_t weight_bytes = 0;
  double bits_per_weight = 0;
  uint64_t memory_needed = 0;
  bool fits = false;
  double kernel_gbps = 0;  // the base type's kernel
  double decode_tps = 0;   // estimate from every matmul tensor's type and kernel speed
};

}  // namespace

void register_doctor(CLI::App& app) {
  auto a = std::make_shared<DoctorArgs>();
  CLI::App* cmd = app.add_subcommand(
      "doctor",
      "What this machine offers (CPU features, cores, memory, GPUs) and, for a model, which "
      "quantization types fit in memory and run fast here");
  cmd->add_option("model", a->model, "HF folder, GGUF file or llama2.c checkpoint (optional)");
  cmd->add_option("--ctx", a->ctx,
                  "Context length the KV cache must hold (default: the model's, "
                  "at most 4096)")
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("-t,--threads", a->threads, "Threads for the micro-benchmark (default: all)")
      ->check(CLI::Range(0, 1024));
  cmd->add_option("--bench-ms", a->bench_ms,
                  "Time to spend measuring kernels, in milliseconds, shared by all types")
      ->capture_default_str()
      ->check(CLI::Range(10, 600000));
  cmd->add_flag("--json", a->json, "JSON output");
  cmd->callback([a] {
    nlohmann::json j;
    // ---- The machine ----
    const std::vector<CpuFeature> features = cpu_features();
    const CoreInfo cores = core_info();
    const MemoryInfo mem = memory_info();
    const std::vector<std::string> gpus = gpu_names();
    j["squish"] = {{"version", SQUISH_VERSION}, {"commit", squish_git_commit()}};
    j["cpu"] = {{"model", cpu_model_name()},
                {"logical_cores", cores.logical},
                {"physical_cores", cores.physical},
                {"allowed_cores", cores.allowed},
                {"kernels", cpu_level_name(active_cpu_level())}};
    nlohmann::json fj = nlohmann::json::array();
    for (const CpuFeature& f : features) {
      fj.push_back({{"name", f.name},
                    {"cpuinfo_flag", f.cpuinfo_flag},
                    {"cpu", f.cpu},
                    {"os", f.os},
                    {"usable", f.usable()}});
    }
    j["cpu"]["features"] = fj;
    j["memory"] = {{"total_bytes", mem.total},
                   {"available_bytes", mem.available},
                   {"cgroup_limit_bytes", mem.cgroup_limit},
                   {"usable_bytes", mem.usable()}};
    j["gpus"] = gpus;
    if (!a->json) {
      std::printf(
          "squish %s%s\n", SQUISH_VERSION,
          *squish_git_commit() ? fmt::format(" (commit {})", squish_git_commit()).c_str() : "");
      std::printf("cpu:       %s\n", cpu_model_name().c_str());
      std::printf("cores:     %d logical, %d physical, %d usable by this process\n", cores.logical,
                  cores.physical, cores.allowed);
      std::string have, lack;
      for (const CpuFeature& f : features) {
        if (f.usable()) {
          have += (have.empty() ? "" : ", ") + std::string(f.name);
        } else {
          lack += (lack.empty() ? "" : ", ") + std::string(f.name) +
                  (f.cpu ? " (cpu has it, OS has not enabled it)" : "");
        }
      }
      std::printf("features:  %s\n", have.empty() ? "none of the tracked ones" : have.c_str());
      std::printf("missing:   %s\n", lack.empty() ? "none" : lack.c_str());
      std::printf("kernels:   %s (SQUISH_CPU=scalar|avx2|avx512 forces a level)\n",
                  cpu_level_name(active_cpu_level()));
      std::printf("memory:    %s total, %s available", gib(mem.total).c_str(),
                  gib(mem.available).c_str());
      if (mem.cgroup_limit > 0) {
        std::printf(", cgroup limit %s (%s in use)", gib(mem.cgroup_limit).c_str(),
                    gib(mem.cgroup_current).c_str());
      }
      std::printf("\n");
      std::string g;
      for (const std::string& name : gpus) g += (g.empty() ? "" : "; ") + name;
      std::printf("gpus:      %s\n", g.empty() ? "none found (squish runs on the CPU)" : g.c_str());
    }
    if (a->model.empty()) {
      if (a->json) std::printf("%s\n", j.dump(2).c_str());
      return;
    }

    // ---- The model: every mix's size, memory need and estimated speed ----
    auto model = load_model(a->model);
    const ModelConfig& c = model->config;
    const int n_ctx = a->ctx > 0 ? a->ctx : std::min(c.n_ctx_train, 4096);
    if (a->threads > 0) omp_set_num_threads(a->threads);
    const int threads = a->threads > 0 ? a->threads : omp_get_max_threads();
    const bool fused_qkv = !model->layers.empty() && model->layers[0].wqkv != nullptr;
    const uint64_t kv = kv_cache_bytes(c, n_ctx);
    const uint64_t scratch = scratch_bytes_estimate(c, n_ctx, 512, threads, fused_qkv);
    // Matrices read once per generated token: every 2-D weight except the embedding table, which
    // is only gathered from, unless the output projection shares it.
    std::vector<bool> per_token(model->tensors().size());
    int64_t n_params = 0;
    for (size_t i = 0; i < model->tensors().size(); ++i) {
      const TensorInfo& t = model->tensors()[i];
      n_params += t.numel();
      per_token[i] =
          t.shape.size() >= 2 && (&t != model->token_embd || model->output == model->token_embd ||
                                  model->output == nullptr);
    }
    std::vector<MixRow> rows;
    std::vector<std::vector<TensorPlan>> plans;
    std::set<DType> types;
    for (const QuantMix& mix : quant_mixes()) {
      QuantPlanOptions po;
      po.mix = mix;
      std::vector<TensorPlan> plan = plan_quantization(*model, po);
      MixRow r;
      r.mix = mix.name;
      r.base = mix.base;
      for (size_t i = 0; i < plan.size(); ++i) {
        r.weight_bytes +=
            row_bytes(plan[i].type, model->tensors()[i].cols()) * model->tensors()[i].rows();
        if (per_token[i]) types.insert(plan[i].type);
      }
      types.insert(mix.base);
      r.bits_per_weight = 8.0 * r.weight_bytes / std::max<int64_t>(n_params, 1);
      r.memory_needed = r.weight_bytes + kv + scratch;
      r.fits = r.memory_needed <= mem.usable();
      rows.push_back(r);
      plans.push_back(std::move(plan));
    }
    // One measurement per type any plan uses, sharing the time budget.
    std::map<DType, double> gbps;
    std::vector<uint8_t> buffer;
    const double slice = a->bench_ms / 1000.0 / types.size();
    const auto bench_start = std::chrono::steady_clock::now();
    for (DType t : types) gbps[t] = bench_kernel_gbps(t, slice, buffer);
    const double bench_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - bench_start).count();
    for (size_t k = 0; k < rows.size(); ++k) {
      rows[k].kernel_gbps = gbps[rows[k].base];
      double seconds = 0;
      for (size_t i = 0; i < plans[k].size(); ++i) {
        if (!per_token[i]) continue;
        const TensorInfo& t = model->tensors()[i];
        seconds +=
            row_bytes(plans[k][i].type, t.cols()) * t.rows() / (gbps[plans[k][i].type] * 1e9);
      }
      rows[k].decode_tps = seconds > 0 ? 1.0 / seconds : 0;
    }
    // Recommendations among the mixes that fit.
    auto pick = [&](auto better) -> const MixRow* {
      const MixRow* best = nullptr;
      for (const MixRow& r : rows) {
        if (r.fits && (best == nullptr || better(r, *best))) best = &r;
      }
      return best;
    };
    const MixRow* quality = pick([](const MixRow& x, const MixRow& y) {
      // F32 holds nothing F16/BF16 lose in practice; it is never the recommendation.
      if ((x.mix == "F32") != (y.mix == "F32")) return y.mix == "F32";
      return x.weight_bytes > y.weight_bytes;
    });
    const MixRow* fastest =
        pick([](const MixRow& x, const MixRow& y) { return x.decode_tps > y.decode_tps; });
    const MixRow* balanced = nullptr;
    for (const char* name : {"Q4_K_M", "Q4_K_S", "Q3_K_M", "Q2_K"}) {
      for (const MixRow& r : rows) {
        if (balanced == nullptr && r.fits && r.mix == name) balanced = &r;
      }
    }

    j["model"] = {{"path", model->path},    {"architecture", c.arch_name()},
                  {"parameters", n_params}, {"n_ctx", n_ctx},
                  {"kv_cache_bytes", kv},   {"scratch_bytes_estimate", scratch},
                  {"threads", threads},     {"benchmark_seconds", bench_seconds}};
    nlohmann::json kj = nlohmann::json::object();
    for (const auto& [t, v] : gbps) kj[dtype_name(t)] = v;
    j["kernel_gb_per_s"] = kj;
    nlohmann::json tj = nlohmann::json::array();
    for (const MixRow& r : rows) {
      tj.push_back({{"type", r.mix},
                    {"base_type", dtype_name(r.base)},
                    {"weight_bytes", r.weight_bytes},
                    {"bits_per_weight", r.bits_per_weight},
                    {"memory_needed_bytes", r.memory_needed},
                    {"fits", r.fits},
                    {"kernel_gb_per_s", r.kernel_gbps},
                    {"decode_tokens_per_second_estimate", r.decode_tps}});
    }
    j["types"] = tj;
    auto name_or_null = [](const MixRow* r) {
      return r ? nlohmann::json(r->mix) : nlohmann::json(nullptr);
    };
    j["recommendation"] = {{"balanced", name_or_null(balanced)},
                           {"best_quality", name_or_null(quality)},
                           {"fastest", name_or_null(fastest)}};
    if (a->json) {
      std::printf("%s\n", j.dump(2).c_str());
      return;
    }
    std::printf("\nmodel:     %s (%s, %.2f M parameters)\n", model->path.c_str(), c.arch_name(),
                n_params / 1e6);
    std::printf("memory:    each type's weights + KV cache %s (ctx %d) + scratch ~%s; %s usable\n",
                mib(kv).c_str(), n_ctx, mib(scratch).c_str(), gib(mem.usable()).c_str());
    std::printf(
        "measured:  decode matrix-vector kernels on %lld MiB of weights, %d threads, "
        "%.1f s in all\n\n",
        static_cast<long long>(kBenchBytes >> 20), threads, bench_seconds);
    std::printf(
        "| type | size | bits/weight | memory | fits | kernel GB/s | decode tok/s (est.) | |\n");
    std::printf("|---|---|---|---|---|---|---|---|\n");
    for (const MixRow& r : rows) {
      std::string note;
      if (&r == balanced) note += "recommended";
      if (&r == quality) note += std::string(note.empty() ? "" : ", ") + "best quality that fits";
      if (&r == fastest) note += std::string(note.empty() ? "" : ", ") + "fastest";
      std::printf("| %s | %s | %.2f | %s | %s | %.1f | %.1f | %s |\n", r.mix.c_str(),
                  mib(r.weight_bytes).c_str(), r.bits_per_weight, mib(r.memory_needed).c_str(),
                  r.fits ? "yes" : "no", r.kernel_gbps, r.decode_tps, note.c_str());
    }
    std::printf(
        "\nsize: tensor data (the GGUF header adds the tokenizer); memory: size + KV cache + "
        "scratch; decode tok/s: the per-token weight bytes of each tensor divided by its type's "
        "measured kernel rate (attention and other work not included).\n");
    if (balanced) {
      std::printf("recommendation: %s (the usual size/quality balance that fits)",
                  balanced->mix.c_str());
      if (quality && quality != balanced)
        std::printf("; %s for the best quality that fits", quality->mix.c_str());
      std::printf("\n");
    } else if (quality) {
      std::printf("recommendation: %s (the only kind that fits)\n", quality->mix.c_str());
    } else {
      std::printf(
          "recommendation: nothing fits in %s; use a smaller --ctx or a machine with more "
          "memory\n",
          gib(mem.usable()).c_str());
    }
  });
}

}  // namespace squish::cli
