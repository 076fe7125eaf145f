// squish auto: per-tensor types chosen for a size, memory or quality budget. Measures how much KL
// divergence each candidate type of each tensor costs (auto/sensitivity.h, cached), solves the
// allocation (auto/solver.h), writes the GGUF, then measures the written model on held-out text
// against the float model and prints predicted vs measured KLD.
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "auto/sensitivity.h"
#include "auto/solver.h"
#include "auto/targets.h"
#include "cli/calib_flags.h"
#include "cli/commands.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/sysinfo.h"
#include "eval/eval_text.h"
#include "eval/kld.h"
#include "export/gguf_export.h"
#include "export/manifest.h"
#include "model/model.h"
#include "quant/quant.h"
#include "runtime/budget.h"

namespace squish::cli {

namespace {

struct AutoArgs {
  std::string model, out, target_size, memory_budget, device, method = "rtn", cache_dir;
  std::string eval_text, tokenizer, name;
  std::optional<double> target_bpw, max_kld;
  std::vector<std::string> types, calib;
  int ctx = 0;  // context for --memory-budget / --device (0: the model's training context)
  int sens_ctx = 512, sens_windows = 4, probe_windows = 16, calib_tokens = 128 * 512, threads = 0;
  int eval_ctx = 512, eval_chunks = 20;
  bool pareto = false, dry_run = false, json = false, no_eval = false, sens_all = false;
};

constexpr double kMiB = 1048576.0;

std::string type_summary(const std::vector<TensorPlan>& plan) {
  std::map<std::string, int> counts;
  for (const TensorPlan& p : plan) counts[dtype_name(p.type)]++;
  std::string s;
  for (const auto& [type, n] : counts)
    s += fmt::format("{}{} x {}", s.empty() ? "" : ", ", n, type);
  return s;
}

uint64_t tensor_data_bytes(const Model& model, const std::vector<TensorPlan>& plan) {
  uint64_t sum = 0;
  for (size_t i = 0; i < plan.size(); ++i) {
    const TensorInfo& t = model.tensors()[i];
    sum += row_bytes(plan[i].type, t.cols()) * t.rows();
  }
  return sum;
}

struct Measured {
  double kld = 0, ppl_ratio = 0;
  int64_t n_scored = 0;
  int n_windows = 0;
};

// Mean KLD of `model` against `base` on held-out text, windows as squish eval cuts them.
Measured measure_on_text(const Model& model, const Model& base, const std::string& path, int ctx,
                         int chunks, int threads, bool quiet) {
  const Tokenizer* tok = base.tokenizer ? base.tokenizer.get() : model.tokenizer.get();
  if (tok == nullptr) fail("{}: no tokenizer", base.path);
  EvalOptions eo;
  eo.n_ctx = ctx;
  eo.max_chunks = chunks;
  eo.n_threads = threads;
  eo.replace_first_with_bos = tok->add_bos();
  const EvalText text = load_eval_text(path, false, *tok);
  const std::vector<EvalWindow> windows = plan_windows(text, eo.n_ctx, eo.max_chunks);
  EvalSources src;
  src.model = &model;
  src.base_model = &base;
  Progress progress("eval", windows.size(), quiet);
  const EvalRun r = run_eval(src, text, windows, eo, [&](int done, int, double ppl) {
    progress.update(done, fmt::format("PPL {:.4f}", ppl));
  });
  progress.finish();
  Measured m;
  double nll_b = 0, nll_m = 0;
  for (const TokenRecord& t : r.tokens) {
    m.kld += t.kld;
    nll_b += t.nll_base;
    nll_m += t.nll_model;
  }
  m.n_scored = static_cast<int64_t>(r.tokens.size());
  m.n_windows = r.n_windows;
  if (m.n_scored > 0) {
    m.kld /= static_cast<double>(m.n_scored);
    m.ppl_ratio = std::exp((nll_m - nll_b) / static_cast<double>(m.n_scored));
  }
  return m;
}

void run_auto(const AutoArgs& a) {
  const int n_targets = (a.target_bpw ? 1 : 0) + (!a.target_size.empty() ? 1 : 0) +
                        (a.max_kld ? 1 : 0) + (!a.memory_budget.empty() ? 1 : 0) +
                        (!a.device.empty() ? 1 : 0);
  if (n_targets != 1 && !(n_targets == 0 && a.pareto)) {
    fail("give exactly one of --target-bpw, --target-size, --max-kld, --memory-budget, --device");
  }
  if (a.out.empty() && !a.dry_run && n_targets > 0) fail("-o OUT.gguf is required (or --dry-run)");
  if (a.target_bpw && !(*a.target_bpw > 0 && *a.target_bpw <= 32))
    fail("--target-bpw {}: expected bits per weight in (0, 32]", *a.target_bpw);
  if (a.max_kld && !(*a.max_kld > 0)) fail("--max-kld {}: expected a positive KLD", *a.max_kld);
  std::vector<DType> types;
  for (const std::string& list : a.types) {
    std::stringstream ss(list);
    std::string name;
    while (std::getline(ss, name, ',')) {
      if (name.empty()) continue;
      const auto t = parse_dtype(name);
      if (!t || !is_quantized(*t) || *t == DType::Q8_1 || *t == DType::Q8_K)
        fail("--types '{}': not a weight quantization type", name);
      types.push_back(*t);
    }
  }
  if (types.empty()) types = default_auto_types();

  LoadOptions lo;
  lo.tokenizer_path = a.tokenizer;
  std::unique_ptr<Model> model = load_model(a.model, lo);

  // Byte budgets are checked before anything is measured: sizes need no sensitivities.
  uint64_t fixed_bytes = 0;
  uint64_t min_bytes = 0;
  int64_t n_params_all = 0;
  for (const TensorInfo& t : model->tensors()) n_params_all += t.numel();
  {
    std::vector<SolverItem> sized;
    for (const AutoTensor& t : auto_candidates(*model, types, &fixed_bytes)) {
      SolverItem item;
      for (const AutoOption& o : t.options)
        item.options.push_back(
            {(o.bytes + kAutoTensorAlignment - 1) / kAutoTensorAlignment * kAutoTensorAlignment,
             0.0});
      sized.push_back(std::move(item));
    }
    min_bytes = min_total_bytes(sized) + fixed_bytes;
  }
  auto infeasible = [&](const std::string& what, uint64_t total) {
    fail(
        "{}: impossible; the smallest plan with these types needs {} bytes ({:.2f} MiB, {:.3f} "
        "bits per weight) of tensor data, the budget allows {}",
        what, min_bytes, min_bytes / kMiB, 8.0 * min_bytes / n_params_all, total);
  };
  if (a.target_bpw && *a.target_bpw * n_params_all / 8.0 < static_cast<double>(min_bytes))
    infeasible(fmt::format("--target-bpw {}", *a.target_bpw),
               static_cast<uint64_t>(*a.target_bpw * n_params_all / 8.0));
  if (!a.target_size.empty() && parse_byte_size(a.target_size, "--target-size") < min_bytes)
    infeasible("--target-size " + a.target_size, parse_byte_size(a.target_size, "--target-size"));

  // --memory-budget / --device: the weights get what the KV cache and scratch leave.
  std::string memory_desc;
  uint64_t memory_weights = 0;
  nlohmann::json memory_json;
  if (!a.memory_budget.empty() || !a.device.empty()) {
    uint64_t memory = 0;
    if (!a.memory_budget.empty()) {
      memory = parse_byte_size(a.memory_budget, "--memory-budget");
      memory_desc = "--memory-budget " + a.memory_budget;
    } else if (a.device == "local") {
      memory = memory_info().usable();
      memory_desc = "--device local";
    } else {
      memory = find_device(a.device).bytes;
      memory_desc = "--device " + a.device;
    }
    const ModelConfig& c = model->config;
    const int64_t ctx = a.ctx > 0 ? a.ctx : std::min(c.n_ctx_train, 4096);
    const bool fused_qkv = !model->layers.empty() && model->layers[0].wqkv != nullptr;
    const int threads = a.threads > 0 ? a.threads : std::max(1, core_info().allowed);
    const MemoryFootprint fp = estimate_memory(c, 0, ctx, 512, threads, fused_qkv);
    const uint64_t runtime = fp.kv_cache_bytes + fp.scratch_bytes;
    if (memory <= runtime || memory - runtime < min_bytes)
      infeasible(memory_desc + fmt::format(" at context {}", ctx),
                 memory > runtime ? memory - runtime : 0);
    if (!a.json) {
      std::fprintf(stderr,
                   "auto: %s = %.1f MiB; context %lld needs %.1f MiB of KV cache + %.1f MiB "
                   "scratch, leaving %.1f MiB for weights\n",
                   memory_desc.c_str(), memory / kMiB, static_cast<long long>(ctx),
                   fp.kv_cache_bytes / kMiB, fp.scratch_bytes / kMiB,
                   memory > runtime ? (memory - runtime) / kMiB : 0.0);
    }
    memory_weights = memory - runtime;
    memory_json = {{"budget_bytes", memory},
                   {"ctx", ctx},
                   {"kv_cache_bytes", fp.kv_cache_bytes},
                   {"scratch_bytes", fp.scratch_bytes}};
  }

  SensitivityOptions so;
  so.calib_files = a.calib;
  so.n_ctx = a.sens_ctx;
  so.n_windows = a.sens_windows;
  so.n_probe_windows = a.probe_windows;
  so.n_threads = a.threads;
  so.cache_dir = !a.cache_dir.empty() ? a.cache_dir
                 : !a.out.empty()     ? std::filesystem::path(a.out).parent_path().string()
                                      : std::string();
  so.quiet = a.json;
  so.measure_all = a.sens_all;
  const Sensitivity sens = measure_sensitivity(*model, types, so);
  const std::vector<SolverItem> items = solver_items(sens);
  const double n_params = static_cast<double>(sens.n_params);
  if (!a.json) {
    std::fprintf(stderr,
                 "auto: %zu tensors, %d forward passes measured (%s), fit: KLD = %.3g * sum^%.3f\n",
                 sens.tensors.size(), sens.evaluations,
                 sens.evaluations ? "cache updated" : "all from cache", sens.fit_a, sens.fit_b);
  }

  nlohmann::json out_json;
  out_json["model"] = a.model;
  if (!memory_json.is_null()) out_json["memory"] = memory_json;
  out_json["sensitivity"] = {{"cache", sens.cache_path},   {"evaluations", sens.evaluations},
                             {"seconds", sens.seconds},    {"ctx", a.sens_ctx},
                             {"windows", sens.n_windows},  {"probe_windows", sens.n_probe_windows},
                             {"all_measured", a.sens_all}, {"fit_a", sens.fit_a},
                             {"fit_b", sens.fit_b}};
  for (const ProbePoint& p : sens.probes) {
    out_json["sensitivity"]["probes"].push_back(
        {{"type", p.type}, {"additive", p.additive}, {"measured", p.measured}});
  }

  if (a.pareto) {
    // The frontier at several sizes (prediction only; nothing is written).
    if (!a.json) {
      std::printf("%-8s %10s %8s %12s %12s  %s\n", "bpw", "MiB", "bpw", "sum dKLD", "pred KLD",
                  "types");
    }
    for (double bpw = 2.5; bpw <= 8.51; bpw += 0.5) {
      const double budget = bpw * n_params / 8.0 - static_cast<double>(sens.fixed_bytes);
      if (budget <= 0) continue;
      const SolverResult r = solve_min_cost(items, static_cast<uint64_t>(budget));
      if (!r.feasible) continue;
      const std::vector<TensorPlan> plan = auto_plan(*model, sens, r.choice);
      const uint64_t bytes = tensor_data_bytes(*model, plan);
      const double pred = predict_kld(sens, r.cost);
      if (!a.json) {
        std::printf("%-8.2f %10.3f %8.3f %12.5g %12.5g  %s\n", bpw, bytes / kMiB,
                    8.0 * bytes / n_params, r.cost, pred, type_summary(plan).c_str());
      }
      out_json["pareto"].push_back({{"target_bpw", bpw},
                                    {"bytes", bytes},
                                    {"bits_per_weight", 8.0 * bytes / n_params},
                                    {"additive_kld", r.cost},
                                    {"predicted_kld", pred}});
    }
    if (n_targets == 0) {
      if (a.json) std::printf("%s\n", out_json.dump(2).c_str());
      return;
    }
  }

  // The budget for the decided tensors' data (aligned as in the file).
  std::string target_desc;
  SolverResult solution;
  uint64_t budget = 0;  // 0: quality target (no byte budget)
  if (a.target_bpw) {
    target_desc = fmt::format("--target-bpw {}", *a.target_bpw);
    const double total = *a.target_bpw * n_params / 8.0;
    if (total < static_cast<double>(min_bytes))
      infeasible(target_desc, static_cast<uint64_t>(total));
    budget = static_cast<uint64_t>(total) - sens.fixed_bytes;
  } else if (!a.target_size.empty()) {
    target_desc = "--target-size " + a.target_size;
    const uint64_t total = parse_byte_size(a.target_size, "--target-size");
    if (total < min_bytes) infeasible(target_desc, total);
    budget = total - sens.fixed_bytes;  // file overhead is subtracted after the first write
  } else if (!a.memory_budget.empty() || !a.device.empty()) {
    target_desc = memory_desc;
    budget = memory_weights - sens.fixed_bytes;
  } else {
    target_desc = fmt::format("--max-kld {}", *a.max_kld);
    solution = solve_min_bytes(items, additive_for_kld(sens, *a.max_kld));
    if (!solution.feasible) {
      fail("--max-kld {}: impossible with these types; the best plan is predicted at {:.4g}",
           *a.max_kld, predict_kld(sens, solution.cost));
    }
  }
  if (budget > 0) solution = solve_min_cost(items, budget);
  if (!solution.feasible) infeasible(target_desc, budget);

  std::vector<TensorPlan> plan = auto_plan(*model, sens, solution.choice);
  auto report_plan = [&](const char* when) {
    const uint64_t bytes = tensor_data_bytes(*model, plan);
    if (!a.json) {
      std::fprintf(stderr,
                   "auto: %s %s: %.3f MiB of tensors (%.3f bits per weight), %s; predicted KLD "
                   "%.5g (sum of per-tensor %.5g, lower bound %.5g)\n",
                   when, target_desc.c_str(), bytes / kMiB, 8.0 * bytes / n_params,
                   type_summary(plan).c_str(), predict_kld(sens, solution.cost), solution.cost,
                   solution.lower_bound);
    }
  };
  report_plan("plan for");
  if (a.dry_run) {
    if (!a.json) {
      for (size_t k = 0; k < sens.tensors.size(); ++k) {
        const AutoTensor& t = sens.tensors[k];
        const AutoOption& o = t.options[solution.choice[k]];
        std::printf("%-32s %-6s %10.6f\n", t.name.c_str(), dtype_name(o.type), o.delta_kld);
      }
    }
  }

  uint64_t file_bytes = 0;
  if (!a.dry_run) {
    for (int attempt = 0;; ++attempt) {
      GGUFExportOptions eo;
      eo.plan = plan;
      eo.name = a.name;
      eo.method.command = "auto";
      eo.method.type = "auto";
      eo.method.algorithm = a.method;
      if (a.method != "rtn") eo.method.calibration_files = a.calib;
      eo.method.parameters = {{"target", target_desc},
                              {"candidate_types", nlohmann::json::array()},
                              {"sensitivity_ctx", a.sens_ctx},
                              {"sensitivity_windows", sens.n_windows},
                              {"probe_windows", sens.n_probe_windows},
                              {"predicted_kld", predict_kld(sens, solution.cost)},
                              {"additive_kld", solution.cost}};
      for (DType t : types) eo.method.parameters["candidate_types"].push_back(dtype_name(t));
      CalibFlags cf;
      if (a.method != "rtn") {
        cf.method = a.method;
        cf.files = a.calib;
        cf.ctx = a.sens_ctx;
        cf.calib_tokens = a.calib_tokens;
        cf.threads = a.threads;
      }
      const auto calibrated = run_calibration(*model, cf, a.out, eo);
      Progress progress("write", model->tensors().size(), a.json);
      eo.progress = [&](size_t done, size_t) { progress.update(done); };
      export_gguf(*model, a.out, eo);
      if (calibrated) calibrated->tensors->remove();
      progress.finish(a.out);
      file_bytes = std::filesystem::file_size(a.out);
      if (a.target_size.empty()) break;
      const uint64_t target = parse_byte_size(a.target_size, "--target-size");
      if (file_bytes <= target) break;
      // Over by the file's metadata (header, tokenizer, manifest): measured now, taken off the
      // tensor budget; each further round also leaves a growing margin for metadata that
      // changes with the plan (the manifest's type counts).
      const uint64_t tensors = sens.fixed_bytes + solution.bytes;
      const uint64_t overhead = file_bytes > tensors ? file_bytes - tensors : 0;
      const uint64_t margin = 256ull * attempt;
      if (attempt >= 4 || target < sens.fixed_bytes + overhead + margin + min_total_bytes(items)) {
        fail(
            "--target-size {}: the file needs {} bytes (metadata {} bytes) with the smallest "
            "plan that fits",
            a.target_size, file_bytes, overhead);
      }
      budget = target - sens.fixed_bytes - overhead - margin;
      solution = solve_min_cost(items, budget);
      if (!solution.feasible) infeasible(target_desc, budget);
      plan = auto_plan(*model, sens, solution.choice);
      report_plan("metadata taken off; plan for");
    }
  }

  const uint64_t bytes = tensor_data_bytes(*model, plan);
  const double predicted = predict_kld(sens, solution.cost);
  out_json["output"] = a.out;
  out_json["target"] = target_desc;
  out_json["tensor_bytes"] = bytes;
  out_json["file_bytes"] = file_bytes;
  out_json["bits_per_weight"] = 8.0 * bytes / n_params;
  out_json["additive_kld"] = solution.cost;
  out_json["lower_bound_additive"] = solution.lower_bound;
  out_json["predicted_kld"] = predicted;
  for (size_t k = 0; k < sens.tensors.size(); ++k) {
    const AutoTensor& t = sens.tensors[k];
    const AutoOption& o = t.options[solution.choice[k]];
    out_json["tensors"].push_back(
        {{"name", t.name}, {"type", dtype_name(o.type)}, {"delta_kld", o.delta_kld}});
  }

  if (!a.dry_run && !a.no_eval) {
    if (a.eval_text.empty())
      fail("--eval-text FILE is needed to measure the result (or --no-eval)");
    std::unique_ptr<Model> written = load_model(a.out);
    const Measured m = measure_on_text(*written, *model, a.eval_text, a.eval_ctx, a.eval_chunks,
                                       a.threads, a.json);
    out_json["measured"] = {{"kld", m.kld},           {"ppl_ratio", m.ppl_ratio},
                            {"n_scored", m.n_scored}, {"windows", m.n_windows},
                            {"ctx", a.eval_ctx},      {"file", a.eval_text}};
    out_json["predicted_over_measured"] = m.kld > 0 ? predicted / m.kld : 0.0;
    record_quality(a.out, {{"auto",
                            {{"target", target_desc},
                             {"predicted_kld", predicted},
                             {"measured_kld", m.kld},
                             {"eval_file", a.eval_text},
                             {"eval_windows", m.n_windows},
                             {"measured", utc_now_iso8601()}}}});
    if (!a.json) {
      std::printf("%s: %.3f MiB file, %.3f bits per weight, %s\n", a.out.c_str(), file_bytes / kMiB,
                  8.0 * bytes / n_params, type_summary(plan).c_str());
      std::printf(
          "KLD predicted %.5f, measured %.5f on %s (%d windows of %d): predicted / "
          "measured = %.3f; PPL ratio %.4f\n",
          predicted, m.kld, a.eval_text.c_str(), m.n_windows, a.eval_ctx,
          m.kld > 0 ? predicted / m.kld : 0.0, m.ppl_ratio);
    }
  } else if (!a.json && !a.dry_run) {
    std::printf("%s: %.3f MiB file, %.3f bits per weight, predicted KLD %.5f\n", a.out.c_str(),
                file_bytes / kMiB, 8.0 * bytes / n_params, predicted);
  }
  if (a.json) std::printf("%s\n", out_json.dump(2).c_str());
}

}  // namespace

void register_auto(CLI::App& app) {
  auto a = std::make_shared<AutoArgs>();
  CLI::App* cmd = app.add_subcommand(
      "auto", "Choose per-tensor types for a size, memory or KLD budget (measured sensitivity)");
  cmd->add_option("model", a->model, "HF folder, GGUF file or llama2.c checkpoint")->required();
  cmd->add_option("-o,--output", a->out, "Output .gguf path");
  cmd->add_option("--target-bpw", a->target_bpw, "Bits per weight of the whole model");
  cmd->add_option("--target-size", a->target_size, "File size, e.g. 3.9GB, 120MiB, 7000000");
  cmd->add_option("--max-kld", a->max_kld,
                  "Smallest file whose predicted mean KLD is at most this");
  cmd->add_option("--memory-budget", a->memory_budget,
                  "Memory for weights + KV cache + scratch at --ctx, e.g. 8GiB");
  cmd->add_option("--device", a->device,
                  "Like --memory-budget with a known device's memory "
                  "(rpi5-8gb, laptop-16gb, rtx4090-24gb, ..., local)");
  cmd->add_option("--ctx", a->ctx, "Context length for --memory-budget / --device")
      ->check(CLI::Range(1, 1 << 24));
  cmd->add_option("--types", a->types,
                  "Candidate types, comma-separated (default Q2_K,Q3_K,Q4_K,"
                  "Q5_K,Q6_K,Q8_0)");
  cmd->add_option("--method", a->method,
                  "Quantizer for the written file: rtn, gptq, awq, awq-gptq (sensitivities are "
                  "measured with rtn)")
      ->check(CLI::IsMember({"rtn", "gptq", "awq", "awq-gptq"}))
      ->capture_default_str();
  cmd->add_option("--calib", a->calib, "Calibration text for the sensitivities, repeatable")
      ->required();
  cmd->add_option("--sens-ctx", a->sens_ctx, "Sensitivity window length in tokens")
      ->check(CLI::Range(16, 1 << 16))
      ->capture_default_str();
  cmd->add_option("--sens-windows", a->sens_windows,
                  "Windows (spread over --calib) for the per-tensor sensitivities")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  cmd->add_option("--probe-windows", a->probe_windows,
                  "Windows (spread over --calib) for the whole-model probes that set the "
                  "prediction's level")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  cmd->add_flag("--sens-all", a->sens_all,
                "Measure every candidate of every tensor (default: each tensor's smallest, the "
                "others scaled by their weight error)");
  cmd->add_option("--calib-tokens", a->calib_tokens, "Calibration tokens for gptq / awq")
      ->capture_default_str();
  cmd->add_option("--cache-dir", a->cache_dir,
                  "Folder of the sensitivity cache (default: the "
                  "output's folder)");
  cmd->add_option("--eval-text", a->eval_text, "Held-out text the result is measured on");
  cmd->add_option("--eval-ctx", a->eval_ctx, "Evaluation window length")
      ->check(CLI::Range(16, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--eval-chunks", a->eval_chunks, "Evaluation windows (0: all)")
      ->check(CLI::Range(0, 1 << 20))
      ->capture_default_str();
  cmd->add_flag("--no-eval", a->no_eval, "Write the model without measuring it");
  cmd->add_flag("--pareto", a->pareto, "Print the predicted frontier from 2.5 to 8.5 bits");
  cmd->add_flag("--dry-run", a->dry_run, "Print the plan, write nothing");
  cmd->add_flag("--json", a->json, "Print the result as JSON on stdout");
  cmd->add_option("--name", a->name, "general.name to record");
  cmd->add_option("--tokenizer", a->tokenizer, "Tokenizer file to use instead of the model's");
  cmd->add_option("-t,--threads", a->threads, "Threads (default: all cores)")
      ->check(CLI::Range(0, 1024));
  cmd->callback([a] { run_auto(*a); });
}

}  // namespace squish::cli
