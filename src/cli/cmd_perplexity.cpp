#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/text.h"
#include "eval/perplexity.h"
#include "model/model.h"
#include "runtime/cuda_session.h"
#include "runtime/memory_need.h"

namespace squish::cli {

namespace {
struct PplArgs {
  std::string model, file, tokenizer;
  int ctx = 512;
  int chunks = 0;
  int threads = 0;
  int batch = 512;
  bool json = false;
  bool window_ppl = false;
  std::string bos = "auto";
  std::string device = "auto";
};
}  // namespace

void register_perplexity(CLI::App& app) {
  auto a = std::make_shared<PplArgs>();
  CLI::App* cmd = app.add_subcommand("perplexity",
                                     "Perplexity on a text file (llama-perplexity's method: "
                                     "windows of --ctx, second half scored)");
  cmd->add_option("model", a->model, "HF folder, GGUF file or llama2.c checkpoint")->required();
  cmd->add_option("-f,--file", a->file, "UTF-8 text file")->required();
  cmd->add_option("-c,--ctx", a->ctx, "Window length in tokens")->check(CLI::Range(8, 1 << 20));
  cmd->add_option("--chunks", a->chunks, "Evaluate at most this many windows (0 = all)")
      ->check(CLI::Range(0, 1 << 30));
  cmd->add_option("-t,--threads", a->threads, "Threads (default: all cores)")
      ->check(CLI::Range(0, 1024));
  cmd->add_option("-b,--batch", a->batch, "Micro-batch size")->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--bos", a->bos,
                  "Put BOS first in each window: auto (tokenizer's setting), yes, no")
      ->check(CLI::IsMember({"auto", "yes", "no"}));
  cmd->add_option("--tokenizer", a->tokenizer, "Tokenizer file to use instead of the model's");
  cmd->add_flag("--json", a->json, "Print the result as JSON on stdout");
  cmd->add_option("--device", a->device, "Where to run: cpu, cuda or auto (CUDA when available)")
      ->capture_default_str();
  cmd->add_flag("--window-ppl", a->window_ppl, "Include each window's own perplexity in the JSON");
  cmd->callback([a] {
    select_device(a->device);
    LoadOptions lo;
    lo.tokenizer_path = a->tokenizer;
    auto model = load_model(a->model, lo);
    SessionOptions planned;  // compute_perplexity's session and its logits of a whole window
    planned.n_ctx = a->ctx;
    planned.n_threads = a->threads;
    planned.n_batch = std::min(a->batch, a->ctx);
    check_runtime_memory(*model, planned, a->ctx);
    if (!model->tokenizer) fail("{}: model has no tokenizer; pass --tokenizer FILE", a->model);
    const std::string text = read_text_file(a->file);
    const Tokenizer& tok = *model->tokenizer;
    const bool bos = a->bos == "auto" ? tok.add_bos() : a->bos == "yes";
    if (bos && tok.bos_id() < 0)
      fail("{}: --bos yes, but the tokenizer has no BOS token", a->model);
    std::vector<int32_t> tokens = tok.encode(text);
    if (bos) tokens.insert(tokens.begin(), tok.bos_id());
    PerplexityOptions po;
    po.n_ctx = a->ctx;
    po.max_chunks = a->chunks;
    po.replace_first_with_bos = bos;
    po.n_threads = a->threads;
    po.n_batch = a->batch;
    if (tokens.size() < static_cast<size_t>(a->ctx)) {
      fail("{}: the text has {} tokens; at least {} (one window of --ctx) are needed", a->file,
           tokens.size(), a->ctx);
    }
    const int total = a->chunks > 0 ? std::min<int>(a->chunks, tokens.size() / a->ctx)
                                    : static_cast<int>(tokens.size() / a->ctx);
    std::fprintf(stderr, "%s: %zu tokens, %d windows of %d\n", a->file.c_str(), tokens.size(),
                 total, a->ctx);
    Progress progress("perplexity", total, a->json);
    auto r = compute_perplexity(*model, tokens, po, [&](int done, int, double ppl) {
      progress.update(done, "ppl " + std::to_string(ppl));
    });
    progress.finish();
    if (a->json) {
      nlohmann::json j = {{"model", a->model},
                          {"file", a->file},
                          {"ctx", a->ctx},
                          {"n_tokens", tokens.size()},
                          {"n_chunks", r.n_chunks},
                          {"n_scored", r.n_scored},
                          {"ppl", r.ppl},
                          {"ppl_stderr", r.ppl_stderr},
                          {"mean_nll", r.mean_nll},
                          {"seconds", r.seconds},
                          {"tokens_per_second", r.n_tokens_evaluated / r.seconds},
                          {"bos", bos}};
      if (a->window_ppl) j["window_ppl"] = r.window_ppl;
      std::printf("%s\n", j.dump(2).c_str());
    } else {
      std::printf(
          "Final estimate: PPL = %.4f +/- %.5f (%lld tokens scored in %d windows of %d, %.1f "
          "tok/s)\n",
          r.ppl, r.ppl_stderr, static_cast<long long>(r.n_scored), r.n_chunks, a->ctx,
          r.n_tokens_evaluated / r.seconds);
    }
  });
}

}  // namespace squish::cli
