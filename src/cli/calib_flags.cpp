#include "cli/calib_flags.h"

#include <cstdio>

#include "calib/calib_data.h"
#include "core/error.h"
#include "core/progress.h"

namespace squish::cli {

void add_calib_flags(CLI::App* cmd, CalibFlags& f) {
  cmd->add_option("--method", f.method,
                  "Calibrated quantization (needs --calib): gptq (Hessian error compensation on "
                  "the target blocks), awq (activation-aware scales folded into the norms, then "
                  "the plain quantizers), awq-gptq (both); with --type w8a8: smoothquant "
                  "(activation outliers migrated into the weights) or rtn")
      ->check(CLI::IsMember({"gptq", "awq", "awq-gptq", "smoothquant", "rtn"}));
  cmd->add_option("--alpha", f.alpha,
                  "--type w8a8 --method smoothquant: migration strength in [0, 1], or 'search' "
                  "(default: searched per fold group)");
  cmd->add_option("--calib", f.files,
                  "Calibration text (UTF-8, or .jsonl with \"text\"), repeatable");
  cmd->add_option("--calib-tokens", f.calib_tokens,
                  "Calibration tokens (whole windows of --calib-ctx)")
      ->check(CLI::Range(16, 1 << 28))
      ->capture_default_str();
  cmd->add_option("--calib-ctx", f.ctx, "Calibration window length in tokens")
      ->check(CLI::Range(16, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--damp", f.damp, "GPTQ damping, fraction of the Hessian's mean diagonal")
      ->check(CLI::Range(0.0, 10.0))
      ->capture_default_str();
  cmd->add_flag(
      "--act-order", f.act_order,
      "GPTQ: quantize columns in decreasing activation order (block scales fixed up front)");
  cmd->add_flag("--no-input-correction", f.no_input_correction,
                "GPTQ: fit each matrix to its own float outputs on the quantized model's inputs, "
                "instead of to the float model's outputs (no float model run alongside)");
  cmd->add_option("--refine", f.refine,
                  "GPTQ: rounds of code / scale refinement after the GPTQ pass (0: none)")
      ->check(CLI::Range(0, 100))
      ->capture_default_str();
  cmd->add_option("--block-size", f.block_size, "GPTQ lazy-batch width in columns")
      ->check(CLI::Range(1, 1 << 16))
      ->capture_default_str();
  cmd->add_option("--offload-dir", f.offload_dir,
                  "Keep the calibration activations in a file in this folder instead of memory");
  cmd->add_option("--work-dir", f.work_dir,
                  "Folder for finished tensors and resume state (default: OUTPUT.work; a killed "
                  "run resumes there, removed once the output is written)");
  cmd->add_option("-t,--threads", f.threads, "Threads (default: all cores)")
      ->check(CLI::Range(0, 1024));
}

std::unique_ptr<CalibratedQuantResult> run_calibration(const Model& model, const CalibFlags& f,
                                                       const std::string& out_path,
                                                       GGUFExportOptions& eo) {
  if (f.method.empty()) {
    if (!f.files.empty()) fail("--calib is given but no --method (gptq) uses it");
    return nullptr;
  }
  if (f.method == "smoothquant" || f.method == "rtn")
    fail("--method {} is for --type w8a8", f.method);
  if (!f.alpha.empty()) fail("--alpha is for --type w8a8 --method smoothquant");
  if (f.files.empty()) fail("--method {} needs calibration text: --calib FILE", f.method);
  CalibrationOptions co;
  co.n_ctx = f.ctx;
  co.max_windows = std::max(1, f.calib_tokens / f.ctx);
  const CalibrationWindows windows = calibration_windows(model, f.files, co);
  std::fprintf(stderr, "%s: calibrating on %d windows of %d tokens\n", f.method.c_str(),
               windows.n_windows(), f.ctx);
  CalibratedQuantOptions o;
  o.gptq.damp = f.damp;
  o.gptq.act_order = f.act_order;
  o.gptq.block_size = f.block_size;
  o.gptq.refine_sweeps = f.refine;
  o.input_correction = !f.no_input_correction;
  o.awq = f.method == "awq" || f.method == "awq-gptq";
  o.gptq_enabled = f.method != "awq";
  if (!o.gptq_enabled) o.input_correction = false;  // the plain quantizers fit no target
  o.offload_dir = f.offload_dir;
  o.n_threads = f.threads;
  o.work_dir = f.work_dir.empty() ? out_path + ".work" : f.work_dir;
  Progress progress(f.method, model.config.n_layer + 1);
  auto result = std::make_unique<CalibratedQuantResult>(calibrated_quantize(
      model, eo.plan, windows, o,
      [&](int done, int, const std::string& detail) { progress.update(done, detail); }));
  double e = 0, r = 0;
  for (const CalibratedTensorStats& s : result->stats)
    e += s.gptq.proxy_error, r += s.gptq.rtn_error;
  progress.finish(fmt::format("({} matrices; layer-output error {:.3f}x of plain quantization)",
                              result->stats.size(), r > 0 ? e / r : 0.0));
  TensorStore* store = result->tensors.get();
  eo.prequantized = [store](const TensorInfo& t, DType) { return store->get(t.name); };
  eo.extra_metadata.push_back({"quantize.calibration.method", GGUFValue::str(f.method)});
  eo.extra_metadata.push_back({"quantize.calibration.dataset", GGUFValue::str(f.files[0])});
  eo.extra_metadata.push_back({"quantize.calibration.tokens",
                               GGUFValue::u32(static_cast<uint32_t>(windows.tokens.size()))});
  return result;
}

}  // namespace squish::cli
