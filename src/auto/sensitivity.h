// Per-tensor sensitivity for `squish auto`: how much end-to-end KL divergence (float model vs the
// same model with ONE tensor quantized) each candidate type of each tensor costs, measured on
// calibration windows. The quantized tensor is swapped into the float model in memory for one
// evaluation and restored after, so nothing else is re-quantized.
//
// Summing the per-tensor increases predicts a whole plan's KLD only roughly (errors interact,
// mostly superadditively at low bits), so a few whole-model "probe" plans (every tensor at one
// candidate type) are measured too, and the ratio measured / additive of the probes nearest a
// plan's additive sum (interpolated in log-log) turns its sum into the prediction.
//
// Windows are spread evenly over the calibration text (not its first few), and the probes run on
// more of them than the per-tensor measurements: the per-tensor increases only have to rank the
// tensors, while the probes set the predicted KLD's level, which varies from window to window far
// more than the ranking does (on gcide-qwen2-28M the first 4 windows of the calibration text gave
// a KLD 8 % above the whole text's; docs/auto.md). Six probe passes on 16 windows cost about as
// much as 24 per-tensor passes on 4.
//
// Results are cached in a JSON file keyed by everything that determines them (source files'
// sizes and times, calibration tokens, windows, quantizer), written after every tensor, so an
// interrupted run resumes and a second run with another budget measures nothing.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "auto/solver.h"
#include "calib/calib_data.h"
#include "core/dtype.h"
#include "model/model.h"
#include "quant/mix.h"

namespace squish {

// GGUF tensor data alignment (formats/gguf.h GGUFWriter default): each tensor occupies its bytes
// rounded up to this in the file.
constexpr uint64_t kAutoTensorAlignment = 32;

struct AutoOption {
  DType type;             // the stored type (after llama.cpp's row-length fallback)
  uint64_t bytes = 0;     // tensor data bytes
  double delta_kld = 0;   // KLD increase with only this tensor in this type
  bool measured = false;  // delta_kld was measured (else scaled from a measured candidate)
};

// A tensor the allocation decides: a weight matrix with at least one candidate.
struct AutoTensor {
  std::string name;
  size_t index = 0;  // in model.tensors()
  int64_t params = 0;
  std::vector<AutoOption> options;  // distinct stored types, fewest bytes first
};

struct ProbePoint {
  std::string type;     // the requested candidate every tensor was given
  double additive = 0;  // sum of the per-tensor increases
  double measured = 0;  // whole-model KLD on the calibration windows
};

struct SensitivityOptions {
  std::vector<std::string> calib_files;
  int n_ctx = 512;
  int n_windows = 4;         // per-tensor measurements
  int n_probe_windows = 16;  // probes (fewer when the text has fewer windows)
  int n_threads = 0;
  std::string cache_dir;  // where the cache file goes ("" : current folder)
  // Measure every candidate; otherwise only each tensor's fewest-bytes candidate, the others
  // scaled from it by the ratio of squared weight errors (one forward pass per tensor).
  bool measure_all = false;
  bool quiet = false;
};

struct Sensitivity {
  std::vector<AutoTensor> tensors;
  std::vector<ProbePoint> probes;
  uint64_t fixed_bytes = 0;  // tensors the plan does not decide (kept F32), aligned
  int64_t n_params = 0;
  double fit_a = 1, fit_b = 1;  // power law through the probes (reported; the fallback)
  int evaluations = 0;          // forward passes run by this call (0 when all came from cache)
  int n_windows = 0, n_probe_windows = 0;  // windows actually used
  std::string cache_path;
  double seconds = 0;
};

// Candidate types: Q2_K Q3_K Q4_K Q5_K Q6_K Q8_0.
std::vector<DType> default_auto_types();

// Candidates per tensor (no measurement): each requested type mapped through llama.cpp's
// fallback for rows that do not fill its blocks, duplicates removed.
std::vector<AutoTensor> auto_candidates(const Model& model, const std::vector<DType>& types,
                                        uint64_t* fixed_bytes);

// `n` windows spread evenly over `all` (the middle one of each of n equal stretches); all of them
// when there are at most n.
CalibrationWindows spread_windows(const CalibrationWindows& all, int n);

// Measures (or reads from the cache) every candidate and the probes. The model's tensors are
// swapped in place during the measurement and restored before returning (also on error).
Sensitivity measure_sensitivity(Model& model, const std::vector<DType>& types,
                                const SensitivityOptions& options);
// The same on given windows: per-tensor increases on `windows`, probes on `probe_windows`
// (options.calib_files, n_ctx, n_windows and n_probe_windows are not used).
Sensitivity measure_sensitivity(Model& model, const std::vector<DType>& types,
                                const CalibrationWindows& windows,
                                const CalibrationWindows& probe_windows,
                                const SensitivityOptions& options);

// Predicted whole-model KLD of a plan whose per-tensor increases sum to `additive`, and the
// inverse (the additive sum allowed for a KLD bound).
double predict_kld(const Sensitivity& s, double additive);
double additive_for_kld(const Sensitivity& s, double kld);

// Solver view: one item per tensor, option costs = delta_kld, bytes aligned as in the file.
std::vector<SolverItem> solver_items(const Sensitivity& s);

// The full export plan (one entry per model tensor) for a choice per AutoTensor.
std::vector<TensorPlan> auto_plan(const Model& model, const Sensitivity& s,
                                  const std::vector<int>& choice);

}  // namespace squish
