#include "cli/w8a8_quantize.h"

#include <cstdio>
#include <cstdlib>

#include "calib/calib_data.h"
#include "calib/smoothquant.h"
#include "core/error.h"
#include "core/progress.h"
#include "export/gguf_export.h"
#include "model/model.h"

namespace squish::cli {

namespace {

// --alpha: "search" (or empty) searches; otherwise a number in [0, 1].
double parse_alpha(const std::string& s) {
  if (s.empty() || s == "search") return -1.0;
  char* end = nullptr;
  const double a = std::strtod(s.c_str(), &end);
  if (end == s.c_str() || *end != '\0' || !(a >= 0.0 && a <= 1.0))
    fail("--alpha '{}': expected a number in [0, 1] or 'search'", s);
  return a;
}

}  // namespace

void quantize_w8a8_command(const std::string& model_path, const std::string& out,
                           const CalibFlags& calib, const std::string& name,
                           const std::string& tokenizer, bool dry_run) {
  std::string method = calib.method;
  if (method.empty()) method = calib.files.empty() ? "rtn" : "smoothquant";
  if (method != "smoothquant" && method != "rtn")
    fail("--type w8a8 takes --method smoothquant or rtn, not '{}'", method);
  if (method == "smoothquant" && calib.files.empty())
    fail("--method smoothquant needs calibration text: --calib FILE");
  if (method == "rtn" && !calib.files.empty())
    fail("--calib is given but --method rtn uses none (--method smoothquant does)");
  if (method == "rtn" && !calib.alpha.empty() && calib.alpha != "search")
    fail("--alpha is for --method smoothquant");
  const double alpha = parse_alpha(calib.alpha);
  if (out.empty() && !dry_run) fail("-o OUT.gguf is required (or use --dry-run)");

  LoadOptions lo;
  lo.tokenizer_path = tokenizer;
  auto model = load_model(model_path, lo);
  SmoothQuantOptions so;
  so.smooth = method == "smoothquant";
  so.alpha = alpha;
  so.n_threads = calib.threads;
  CalibrationWindows windows;
  if (so.smooth) {
    CalibrationOptions co;
    co.n_ctx = calib.ctx;
    co.max_windows = std::max(1, calib.calib_tokens / calib.ctx);
    windows = calibration_windows(*model, calib.files, co);
    std::fprintf(stderr, "smoothquant: calibrating on %d windows of %d tokens\n",
                 windows.n_windows(), calib.ctx);
  }
  if (dry_run) {
    std::fprintf(stderr,
                 "w8a8 (%s): every matrix per-row int8 (Q8_0), per-token int8 activations\n",
                 method.c_str());
    return;
  }
  Progress progress("smoothquant", model->config.n_layer);
  W8A8Result r = quantize_w8a8(*model, windows, so, [&](int done, int, const std::string& detail) {
    progress.update(done, detail);
  });
  int smoothed = 0;
  double e = 0, p = 0;
  nlohmann::json groups = nlohmann::json::array();
  for (const SmoothGroupStats& g : r.groups) {
    smoothed += g.smoothed;
    e += g.error, p += g.plain_error;
    groups.push_back({{"into", g.name},
                      {"alpha", g.smoothed ? g.alpha : 0.0},
                      {"smoothed", g.smoothed},
                      {"error_ratio", g.plain_error > 0 ? g.error / g.plain_error : 1.0}});
  }
  if (so.smooth) {
    progress.finish(
        fmt::format("({} of {} fold groups smoothed; product error {:.3f}x of no "
                    "smoothing)",
                    smoothed, r.groups.size(), p > 0 ? e / p : 1.0));
  }

  GGUFExportOptions eo;
  eo.plan = r.plan;
  eo.file_type = 7;  // llama.cpp's MOSTLY_Q8_0: the blocks are ordinary Q8_0
  eo.name = name;
  eo.method.type = "W8A8";
  eo.method.algorithm = method;
  eo.method.calibration_files = calib.files;
  eo.method.parameters = {{"w8a8", true},
                          {"weights", "int8 per output row (Q8_0 blocks sharing one d per row)"},
                          {"activations", "int8 per token"}};
  if (so.smooth) {
    eo.method.parameters["alpha"] = alpha < 0 ? nlohmann::json("search") : nlohmann::json(alpha);
    eo.method.parameters["calib_tokens"] = windows.tokens.size();
    eo.method.parameters["calib_ctx"] = calib.ctx;
    eo.method.parameters["groups"] = groups;
  }
  eo.extra_metadata.push_back({"squish.w8a8", GGUFValue::boolean(true)});
  TensorStore* store = r.tensors.get();
  eo.prequantized = [store](const TensorInfo& t, DType) { return store->get(t.name); };
  Progress write("quantize", model->tensors().size());
  eo.progress = [&](size_t done, size_t) { write.update(done); };
  export_gguf(*model, out, eo);
  write.finish(out);
}

}  // namespace squish::cli
