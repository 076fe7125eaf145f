#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/text.h"
#include "eval/kld.h"
#include "model/model.h"

namespace squish::cli {

namespace {
struct EvalArgs {
  std::string model, base, file;
  int ctx = 512, chunks = 0, threads = 0;
  bool json = false;
};
}  // namespace

void register_eval(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  CLI::App* cmd = app.add_subcommand("eval",
                                     "Compare a compressed model with its base: perplexity of "
                                     "both, KL divergence, top-1 agreement");
  cmd->add_option("model", a->model, "The compressed model")->required();
  cmd->add_option("--base", a->base, "The original model (any format squish reads)")->required();
  cmd->add_option("-f,--file", a->file, "UTF-8 evaluation text")->required();
  cmd->add_option("-c,--ctx", a->ctx, "Window length in tokens")->check(CLI::Range(8, 1 << 20));
  cmd->add_option("--chunks", a->chunks, "At most this many windows (0 = all)")
      ->check(CLI::Range(0, 1 << 30));
  cmd->add_option("-t,--threads", a->threads, "Threads (default: all cores)")
      ->check(CLI::Range(0, 1024));
  cmd->add_flag("--json", a->json, "JSON output");
  cmd->callback([a] {
    auto base = load_model(a->base);
    auto model = load_model(a->model);
    const Tokenizer* tok = base->tokenizer ? base->tokenizer.get() : model->tokenizer.get();
    if (tok == nullptr) fail("{}: neither model has a tokenizer", a->base);
    const std::string text = read_text_file(a->file);
    std::vector<int32_t> tokens = tok->encode(text);
    if (tok->add_bos()) tokens.insert(tokens.begin(), tok->bos_id());
    PerplexityOptions po;
    po.n_ctx = a->ctx;
    po.max_chunks = a->chunks;
    po.n_threads = a->threads;
    po.replace_first_with_bos = tok->add_bos();
    if (tokens.size() < static_cast<size_t>(a->ctx)) {
      fail("{}: the text has {} tokens; at least {} are needed", a->file, tokens.size(), a->ctx);
    }
    const int total = a->chunks > 0 ? std::min<int>(a->chunks, tokens.size() / a->ctx)
                                    : static_cast<int>(tokens.size() / a->ctx);
    Progress progress("eval", total, a->json);
    KldResult r = compute_kld(*base, *model, tokens, po,
                              [&](int done, int, double) { progress.update(done); });
    progress.finish();
    if (a->json) {
      nlohmann::json j = {{"model", a->model},
                          {"base", a->base},
                          {"file", a->file},
                          {"ctx", a->ctx},
                          {"n_chunks", r.n_chunks},
                          {"n_scored", r.n_scored},
                          {"base_ppl", r.base_ppl},
                          {"model_ppl", r.model_ppl},
                          {"ppl_ratio", r.model_ppl / r.base_ppl},
                          {"mean_kld", r.mean_kld},
                          {"kld_stderr", r.kld_stderr},
                          {"median_kld", r.median_kld},
                          {"p90_kld", r.p90_kld},
                          {"p99_kld", r.p99_kld},
                          {"max_kld", r.max_kld},
                          {"top1_agreement", r.top1_agreement},
                          {"seconds", r.seconds}};
      std::printf("%s\n", j.dump(2).c_str());
      return;
    }
    std::printf("PPL base %.4f, model %.4f (ratio %.4f, delta %+.4f)\n", r.base_ppl, r.model_ppl,
                r.model_ppl / r.base_ppl, r.model_ppl - r.base_ppl);
    std::printf("KLD mean %.6f ± %.6f, median %.6f, p90 %.6f, p99 %.6f, max %.6f\n", r.mean_kld,
                r.kld_stderr, r.median_kld, r.p90_kld, r.p99_kld, r.max_kld);
    std::printf("top-1 agreement %.2f%% over %lld tokens in %d windows\n", 100 * r.top1_agreement,
                static_cast<long long>(r.n_scored), r.n_chunks);
  });
}

}  // namespace squish::cli
