#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>

#include "cli/commands.h"
#include "core/error.h"
#include "core/sysinfo.h"
#include "kernels/cpu/matmul.h"
#include "model/model.h"
#include "runtime/budget.h"
#include "runtime/session.h"

namespace squish::cli {

namespace {
struct BenchArgs {
  std::string model;
  int n_prompt = 512;
  int n_gen = 128;
  int depth = 0;  // tokens in the context before each test
  int threads = 0;
  int reps = 3;
  int batch = 512;
  int ctx = 0;
  double price_per_hour = -1;  // < 0: no cost report
  int prompt_tokens = 512, gen_tokens = 128;
  bool json = false;
  std::string device = "auto";
};

struct Stat {
  double mean = 0, stddev = 0;
};

Stat stats(const std::vector<double>& v) {
  Stat s;
  for (double x : v) s.mean += x;
  s.mean /= v.size();
  for (double x : v) s.stddev += (x - s.mean) * (x - s.mean);
  s.stddev = v.size() > 1 ? std::sqrt(s.stddev / (v.size() - 1)) : 0;
  return s;
}
}  // namespace

void register_bench(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  CLI::App* cmd =
      app.add_subcommand("bench", "Prefill and decode speed (like llama-bench's pp/tg tests)");
  cmd->add_option("model", a->model, "HF folder, GGUF file or llama2.c checkpoint")->required();
  cmd->add_option("-p,--n-prompt", a->n_prompt, "Prompt tokens (pp test; 0 = skip)")
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("-n,--n-gen", a->n_gen, "Generated tokens (tg test; 0 = skip)")
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("-d,--depth", a->depth,
                  "Tokens already in the context when each test starts (like llama-bench's -d: "
                  "evaluated first, not timed), e.g. decode speed at 4096 tokens of context")
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("-t,--threads", a->threads, "Threads (default: all cores)")
      ->check(CLI::Range(0, 1024));
  cmd->add_option("-r,--repetitions", a->reps, "Repetitions per test")->check(CLI::Range(1, 1000));
  cmd->add_option("-b,--batch", a->batch, "Prefill micro-batch")->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--ctx", a->ctx,
                  "Context length to allocate and report KV cache memory for "
                  "(default: depth + max(-p, -n) + 1)")
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--price-per-hour", a->price_per_hour,
                  "Machine price in USD per hour: report the cost per 1,000 queries, "
                  "1000 * (prompt_tokens / pp_tps + gen_tokens / tg_tps) * price / 3600 "
                  "(one query at a time)")
      ->check(CLI::Range(0.0, 1e9));
  cmd->add_option("--prompt-tokens", a->prompt_tokens, "Prompt tokens per query (cost)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 24));
  cmd->add_option("--gen-tokens", a->gen_tokens, "Generated tokens per query (cost)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 24));
  cmd->add_option("--device", a->device, "Where to run: cpu, cuda or auto (CUDA when available)")
      ->capture_default_str();
  cmd->add_flag("--json", a->json, "JSON output");
  cmd->footer(
      "Memory: weights (memory-mapped tensor data), KV cache = n_layer * ctx * n_head_kv * "
      "head_dim * 2 (K, V) * 4 bytes (F32), scratch (estimate: one micro-batch of activations, "
      "per-thread kernel buffers, logits), and the peak resident set measured (VmHWM; mapped "
      "weights count once paged in).");
  cmd->callback([a] {
    select_device(a->device);
    auto model = load_model(a->model);
    SessionOptions so;
    so.n_threads = a->threads;
    const int needed = a->depth + std::max(a->n_prompt, a->n_gen) + 1;
    if (a->ctx > 0 && a->ctx < needed)
      fail("--ctx {} is smaller than the {} positions the tests need", a->ctx, needed);
    so.n_ctx = a->ctx > 0 ? a->ctx : needed;
    so.n_batch = a->batch;
    Session session(*model, so);
    std::mt19937 rng(42);
    std::uniform_int_distribution<int> dist(0, model->config.n_vocab - 1);
    std::vector<int32_t> prompt(std::max(a->n_prompt, 1)), context(a->depth);
    for (auto& t : prompt) t = dist(rng);
    for (auto& t : context) t = dist(rng);
    // Each pass's last row of logits comes back to the host, as llama-bench's does (into the
    // session's pinned buffer, as llama.cpp's into its output buffer). SQUISH_BENCH_COPY_LOGITS=1
    // copies it on into a vector of this loop's, as before eval_last (timing).
    const char* copy_env = std::getenv("SQUISH_BENCH_COPY_LOGITS");
    const bool copy_logits = copy_env != nullptr && std::strcmp(copy_env, "1") == 0;
    std::vector<float> copied;
    auto eval_last = [&](const int32_t* tokens, int n) {
      if (copy_logits) return session.eval(tokens, n, false, copied);
      session.eval_last(tokens, n);
    };
    auto start = [&] {  // an empty context, or depth tokens of one (not timed)
      session.reset();
      if (a->depth > 0) eval_last(context.data(), a->depth);
    };
    auto time_pp = [&] {
      start();
      auto t0 = std::chrono::steady_clock::now();
      eval_last(prompt.data(), a->n_prompt);
      return a->n_prompt /
             std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    auto time_tg = [&] {
      start();
      int32_t tok = prompt[0];
      auto t0 = std::chrono::steady_clock::now();
      // Random next tokens, as llama-bench's tg test feeds them: a host-side argmax over the
      // vocabulary (128K floats for Llama 3, ~2 % of an H100 decode step) is sampling, not decode.
      for (int i = 0; i < a->n_gen; ++i) {
        eval_last(&tok, 1);
        tok = dist(rng);
      }
      return a->n_gen /
             std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    std::vector<double> pp, tg;
    if (a->n_prompt > 0) {
      time_pp();  // warm-up: page in the weights
      for (int r = 0; r < a->reps; ++r) pp.push_back(time_pp());
    }
    if (a->n_gen > 0) {
      time_tg();
      for (int r = 0; r < a->reps; ++r) tg.push_back(time_tg());
    }
    nlohmann::json j = {{"model", a->model},
                        {"params", model->parameter_count()},
                        {"weight_bytes", model->weight_bytes()},
                        {"threads", session.n_threads()},
                        {"depth", a->depth},
                        {"cpu", cpu_level_name(active_cpu_level())},
                        {"backend", session.device_session() != nullptr ? "cuda" : "cpu"}};
    const bool fused_qkv = !model->layers.empty() && model->layers[0].wqkv != nullptr;
    const MemoryFootprint mem =
        estimate_memory(model->config, model->weight_bytes(), session.n_ctx(), a->batch,
                        session.n_threads(), fused_qkv);
    const uint64_t peak_rss = peak_rss_bytes();
    j["memory"] = {{"n_ctx", session.n_ctx()},
                   {"weights_bytes", mem.weights_bytes},
                   {"kv_cache_bytes", mem.kv_cache_bytes},
                   {"scratch_bytes_estimate", mem.scratch_bytes},
                   {"total_bytes_estimate", mem.total()},
                   {"peak_rss_bytes", peak_rss}};
    std::optional<QueryCost> cost;
    if (a->price_per_hour >= 0) {
      cost = query_cost(a->price_per_hour, a->prompt_tokens, a->gen_tokens,
                        pp.empty() ? 0.0 : stats(pp).mean, tg.empty() ? 0.0 : stats(tg).mean);
      j["cost"] = {{"price_per_hour_usd", a->price_per_hour},
                   {"prompt_tokens", a->prompt_tokens},
                   {"gen_tokens", a->gen_tokens},
                   {"seconds_per_query", cost->seconds_per_query},
                   {"queries_per_hour", cost->queries_per_hour},
                   {"usd_per_1000_queries", cost->usd_per_1000_queries}};
    }
    if (!pp.empty()) {
      Stat s = stats(pp);
      j["pp"] = {
          {"n", a->n_prompt}, {"tokens_per_second", s.mean}, {"stddev", s.stddev}, {"samples", pp}};
    }
    if (!tg.empty()) {
      Stat s = stats(tg);
      j["tg"] = {
          {"n", a->n_gen}, {"tokens_per_second", s.mean}, {"stddev", s.stddev}, {"samples", tg}};
    }
    // On a GPU: decode reads every weight once per token, so weight bytes x tokens/s against the
    // device's measured read bandwidth says how close decode is to its roofline.
    double roofline_gbps = 0, tg_gbps = 0;
    if (const DeviceSession* dev = session.device_session()) {
      const CudaBandwidth bw = measure_cuda_bandwidth();
      roofline_gbps = bw.read_gbps;
      j["device"] = {{"name", dev->description()},
                     {"weight_bytes", dev->weight_bytes()},
                     {"read_gbps", bw.read_gbps},
                     {"copy_gbps", bw.copy_gbps}};
      if (!tg.empty()) {
        tg_gbps = dev->weight_bytes() * stats(tg).mean / 1e9;
        j["device"]["tg_weight_gbps"] = tg_gbps;
        j["device"]["tg_roofline_fraction"] = tg_gbps / bw.read_gbps;
      }
    }
    if (a->json) {
      std::printf("%s\n", j.dump(2).c_str());
      return;
    }
    std::printf(
        "| model | size | params | threads | kernels | test | t/s "
        "|\n|---|---|---|---|---|---|---|\n");
    // llama-bench's labels: pp512, tg128, and "tg128 @ d4096" with a depth.
    const std::string at_depth = a->depth > 0 ? " @ d" + std::to_string(a->depth) : "";
    auto row = [&](const char* test, int n, const std::vector<double>& v) {
      Stat s = stats(v);
      std::printf("| %s | %.2f MiB | %.2f M | %d | %s | %s%d%s | %.2f ± %.2f |\n",
                  model->path.c_str(), model->weight_bytes() / 1048576.0,
                  model->parameter_count() / 1e6, session.n_threads(),
                  cpu_level_name(active_cpu_level()), test, n, at_depth.c_str(), s.mean, s.stddev);
    };
    if (!pp.empty()) row("pp", a->n_prompt, pp);
    if (!tg.empty()) row("tg", a->n_gen, tg);
    if (const DeviceSession* dev = session.device_session()) {
      std::printf("\ndevice: %s; weights on device %.2f MiB; measured read bandwidth %.0f GB/s\n",
                  dev->description().c_str(), dev->weight_bytes() / 1048576.0, roofline_gbps);
      if (!tg.empty()) {
        std::printf("decode reads the weights at %.0f GB/s = %.1f %% of the measured roofline\n",
                    tg_gbps, 100.0 * tg_gbps / roofline_gbps);
      }
    }
    const double mib = 1048576.0;
    std::printf(
        "\nmemory at ctx %d: weights %.2f MiB (mapped) + KV cache %.2f MiB + scratch ~%.2f MiB = "
        "~%.2f MiB; peak RSS measured %.2f MiB\n",
        session.n_ctx(), mem.weights_bytes / mib, mem.kv_cache_bytes / mib, mem.scratch_bytes / mib,
        mem.total() / mib, peak_rss / mib);
    if (cost) {
      std::printf(
          "cost at $%.4g/hour, %d prompt + %d generated tokens per query: %.3f s per query, "
          "%.0f queries/hour, $%.4g per 1,000 queries\n",
          a->price_per_hour, a->prompt_tokens, a->gen_tokens, cost->seconds_per_query,
          cost->queries_per_hour, cost->usd_per_1000_queries);
    }
  });
}

}  // namespace squish::cli
