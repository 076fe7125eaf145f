#include <cstdio>

#include "calib/calib_data.h"
#include "calib/imatrix_collect.h"
#include "cli/commands.h"
#include "core/error.h"
#include "core/progress.h"
#include "model/model.h"
#include "quant/imatrix.h"
#include "runtime/memory_need.h"

namespace squish::cli {

namespace {
struct ImatrixArgs {
  std::string model, out = "imatrix.gguf", tokenizer;
  std::vector<std::string> files;
  int ctx = 512;
  int chunks = 0;
  int threads = 0;
  bool process_output = false;
  std::string work_dir;
  int checkpoint_every = 10;
};
}  // namespace

void register_imatrix(CLI::App& app) {
  auto a = std::make_shared<ImatrixArgs>();
  CLI::App* cmd = app.add_subcommand(
      "imatrix",
      "Importance matrix from calibration text, in llama.cpp's imatrix GGUF format "
      "(llama-imatrix's method; llama-quantize --imatrix reads it)");
  cmd->add_option("model", a->model, "HF folder, GGUF file or llama2.c checkpoint")->required();
  cmd->add_option("-f,--file", a->files,
                  "Calibration text (UTF-8, or .jsonl with \"text\"), repeatable")
      ->required();
  cmd->add_option("-o,--output", a->out, "Output imatrix .gguf")->capture_default_str();
  cmd->add_option("-c,--ctx", a->ctx, "Window length in tokens")
      ->check(CLI::Range(16, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--chunks", a->chunks, "Use at most this many windows (0 = all)")
      ->check(CLI::Range(0, 1 << 30));
  cmd->add_flag("--process-output", a->process_output,
                "Also collect output.weight (llama-imatrix --process-output)");
  cmd->add_option("-t,--threads", a->threads, "Threads (default: all cores)")
      ->check(CLI::Range(0, 1024));
  cmd->add_option("--tokenizer", a->tokenizer, "Tokenizer file to use instead of the model's");
  cmd->add_option("--work-dir", a->work_dir,
                  "Folder for the checkpoint (default: OUTPUT.work; a killed run resumes there, "
                  "removed once the output is written)");
  cmd->add_option("--checkpoint-every", a->checkpoint_every,
                  "Save the sums every this many windows (0: no checkpoint)")
      ->check(CLI::Range(0, 1 << 30))
      ->capture_default_str();
  cmd->callback([a] {
    LoadOptions lo;
    lo.tokenizer_path = a->tokenizer;
    auto model = load_model(a->model, lo);
    SessionOptions planned;  // collect_imatrix's session (a whole window per batch)
    planned.n_ctx = a->ctx;
    planned.n_threads = a->threads;
    planned.n_batch = a->ctx;
    check_runtime_memory(*model, planned, a->process_output ? a->ctx : 0);
    CalibrationOptions co;
    co.n_ctx = a->ctx;
    co.max_windows = a->chunks;
    const CalibrationWindows windows = calibration_windows(*model, a->files, co);
    std::fprintf(stderr, "imatrix: %d windows of %d tokens\n", windows.n_windows(), a->ctx);
    ImatrixOptions io;
    io.include_output = a->process_output;
    io.n_threads = a->threads;
    io.datasets = a->files;
    if (a->checkpoint_every > 0) {
      io.work_dir = a->work_dir.empty() ? a->out + ".work" : a->work_dir;
      io.checkpoint_every = a->checkpoint_every;
    }
    Progress progress("imatrix", windows.n_windows());
    const Imatrix m =
        collect_imatrix(*model, windows, io, [&](int done, int) { progress.update(done); });
    write_imatrix(a->out, m);
    remove_imatrix_work_dir(io.work_dir);  // after the output: a kill before resumes from it
    progress.finish(a->out + " (" + std::to_string(m.entries.size()) + " tensors)");
  });
}

}  // namespace squish::cli
