// `squish quantize` flags for calibrated methods (--method gptq, --calib, ...) and the step that
// runs the calibration and hands its tensors to the GGUF export.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "calib/calibrated_quant.h"
#include "export/gguf_export.h"
#include "model/model.h"
#include "quant/mix.h"

namespace squish::cli {

struct CalibFlags {
  std::string method;  // "" (plain quantizers) or "gptq"
  std::vector<std::string> files;
  int calib_tokens = 128 * 512;
  int ctx = 512;
  double damp = 0.01;
  bool act_order = false;
  bool no_input_correction = false;
  int refine = 4;
  int block_size = 128;
  std::string offload_dir;
  std::string work_dir;  // default: <output>.work
  int threads = 0;
  std::string alpha;  // --type w8a8 --method smoothquant: a number in [0, 1], or "search"
};

void add_calib_flags(CLI::App* cmd, CalibFlags& flags);

// With --method set: runs the calibration over the plan and points `export_options` at its
// tensors (the result must outlive the export; remove its work folder after). Returns null
// without --method.
std::unique_ptr<CalibratedQuantResult> run_calibration(const Model& model, const CalibFlags& flags,
                                                       const std::string& out_path,
                                                       GGUFExportOptions& export_options);

}  // namespace squish::cli
