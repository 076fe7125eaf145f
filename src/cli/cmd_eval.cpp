// squish eval: what compression cost. Runs the model and its base over the same windows as
// llama-perplexity --kl-divergence and reports perplexities, KL divergence, top-1 agreement and
// Δp with 95 % intervals, broken down by token frequency, position and slice. The base can be
// saved once (--save-base FILE.squishkl) and used later in place of the base model.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>

#include "cli/commands.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/text.h"
#include "eval/eval_report.h"
#include "eval/eval_text.h"
#include "eval/kld.h"
#include "eval/saved_base.h"
#include "export/manifest.h"
#include "model/model.h"
#include "runtime/cuda_session.h"

namespace squish::cli {

namespace {
struct EvalArgs {
  std::string model, base, file, slices, save_base, freq_file;
  int ctx = 512, chunks = 0, threads = 0, top_k = kDefaultSavedTopK, position_bins = 4;
  int tail_samples = kDefaultTailSamples;
  bool json = false, record = false;
  std::string device = "auto";
};

// A saved base is recognised by its magic (or, for a clear error, by its .squishkl name).
bool is_saved_base(const std::string& path) {
  if (path.size() >= 9 && path.compare(path.size() - 9, 9, ".squishkl") == 0) return true;
  std::ifstream in(path, std::ios::binary);
  char magic[8] = {};
  return in.read(magic, 8) && std::memcmp(magic, "SQUISHKL", 8) == 0;
}

void run(const EvalArgs& a, bool ctx_given) {
  if (a.file.empty() == a.slices.empty())
    fail("eval: give exactly one of -f TEXT or --slices FILE");
  const bool saved_input = is_saved_base(a.base);
  if (a.model.empty() && a.save_base.empty()) fail("eval: MODEL is required (unless --save-base)");
  if (saved_input && !a.save_base.empty()) {
    fail("{}: --save-base needs a base model, not a saved base", a.base);
  }
  if (saved_input && a.model.empty()) fail("eval: MODEL is required with a saved base");
  if (a.record && a.model.empty()) fail("eval: --record needs MODEL (its manifest is updated)");
  if (a.record) {  // fail before a long evaluation, not after it
    const ModelManifest mm = load_model_manifest(a.model);
    if (!mm.from_gguf && !mm.from_sidecar) {
      fail("{}: no squish manifest to --record into (only models squish wrote have one)", a.model);
    }
  }

  std::unique_ptr<SavedBaseReader> saved;
  std::unique_ptr<Model> base_model, model;
  if (saved_input) {
    saved = std::make_unique<SavedBaseReader>(a.base);
  } else {
    base_model = load_model(a.base);
  }
  if (!a.model.empty()) model = load_model(a.model);
  const Tokenizer* tok = base_model && base_model->tokenizer ? base_model->tokenizer.get()
                         : model                             ? model->tokenizer.get()
                                                             : nullptr;
  if (tok == nullptr)
    fail("{}: no tokenizer (neither model has one)", a.model.empty() ? a.base : a.model);
  const Model& vocab_owner = model ? *model : *base_model;
  const int n_vocab = vocab_owner.config.n_vocab;

  EvalOptions eo;
  eo.n_ctx = saved && !ctx_given ? static_cast<int>(saved->header().n_ctx) : a.ctx;
  eo.max_chunks = a.chunks;
  eo.n_threads = a.threads;
  eo.replace_first_with_bos = tok->add_bos();
  const bool labelled = !a.slices.empty();
  const EvalText text = load_eval_text(labelled ? a.slices : a.file, labelled, *tok);
  const std::vector<EvalWindow> windows = plan_windows(text, eo.n_ctx, eo.max_chunks);
  if (saved) saved->check_matches(text, windows, eo.n_ctx, eo.replace_first_with_bos, n_vocab);

  std::unique_ptr<SavedBaseWriter> writer;
  if (!a.save_base.empty()) {
    SavedBaseHeader h;
    h.n_vocab = static_cast<uint32_t>(n_vocab);
    h.n_ctx = static_cast<uint32_t>(eo.n_ctx);
    h.top_k = static_cast<uint32_t>(std::min(a.top_k, n_vocab));
    h.tail_samples = static_cast<uint32_t>(a.tail_samples);
    h.id_bytes = n_vocab <= 65536 ? 2 : 4;
    h.n_windows = static_cast<uint32_t>(windows.size());
    h.flags = eo.replace_first_with_bos ? 1 : 0;
    for (const EvalWindow& w : windows) h.n_scored += w.n_scored();
    h.n_text_bytes = text.n_text_bytes;
    h.text_hash = text.text_hash;
    h.token_hash = token_layout_hash(text, windows, eo.n_ctx, eo.replace_first_with_bos);
    writer = std::make_unique<SavedBaseWriter>(a.save_base, h);
  }

  // Frequency ranks of target tokens: over the evaluated text, or over --freq-file.
  std::vector<const std::vector<int32_t>*> freq_sources;
  std::vector<int32_t> freq_tokens;
  if (!a.freq_file.empty()) {
    freq_tokens = tok->encode(read_text_file(a.freq_file));
    if (freq_tokens.empty()) fail("{}: no tokens", a.freq_file);
    freq_sources.push_back(&freq_tokens);
  } else {
    for (const EvalSlice& s : text.slices) freq_sources.push_back(&s.tokens);
  }
  std::vector<int64_t> counts;
  const std::vector<int32_t> ranks = frequency_ranks(freq_sources, n_vocab, counts);

  EvalSources src;
  src.model = model.get();
  src.base_model = base_model.get();
  src.saved = saved.get();
  src.writer = writer.get();
  Progress progress("eval", windows.size(), a.json);
  const EvalRun r = run_eval(src, text, windows, eo, [&](int done, int, double ppl) {
    progress.update(done, fmt::format("PPL {:.4f}", ppl));
  });
  progress.finish();
  const EvalReport report = build_report(r, text, windows, ranks, eo.n_ctx, a.position_bins);

  EvalMeta meta;
  if (!a.model.empty()) meta.model = a.model;
  meta.base = a.base;
  meta.base_kind = saved ? "saved" : "model";
  meta.file = text.path;
  meta.freq_source = a.freq_file.empty() ? "text" : a.freq_file;
  meta.ctx = eo.n_ctx;
  meta.n_vocab = n_vocab;
  if (saved) {
    meta.saved =
        EvalMeta::Saved{a.base, "read", static_cast<int>(saved->header().top_k),
                        saved->file_bytes(), static_cast<int>(saved->header().tail_samples)};
  } else if (writer) {
    std::ifstream f(a.save_base, std::ios::binary | std::ios::ate);
    meta.saved = EvalMeta::Saved{a.save_base, "written", static_cast<int>(writer->header().top_k),
                                 static_cast<uint64_t>(f.tellg()),
                                 static_cast<int>(writer->header().tail_samples)};
  }
  const nlohmann::json report_json = eval_report_json(report, r, meta);
  if (a.record) {
    // The model's manifest sidecar keeps what the compression cost (docs/manifest.md).
    // A compact summary (the full breakdowns belong in the eval JSON, not in every `info`).
    nlohmann::json entry = nlohmann::json::object();
    for (const char* key :
         {"base", "file", "ctx", "n_chunks", "n_scored", "base_ppl", "model_ppl", "ppl_ratio",
          "mean_kld", "median_kld", "p99_kld", "max_kld", "top1_agreement"}) {
      if (report_json.contains(key)) entry[key] = report_json[key];
    }
    entry["measured"] = utc_now_iso8601();
    record_quality(a.model, {{"eval", entry}});
  }
  if (a.json) {
    std::printf("%s\n", report_json.dump(2).c_str());
  } else {
    std::fputs(eval_report_text(report, r, meta).c_str(), stdout);
  }
}
}  // namespace

void register_eval(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  CLI::App* cmd = app.add_subcommand(
      "eval",
      "Compare a compressed model with its base: perplexity of both, KL divergence, top-1 "
      "agreement, Δp, with 95% intervals and breakdowns by token frequency, position and slice");
  cmd->add_option("model", a->model, "The compressed model (optional with --save-base)");
  cmd->add_option("--base", a->base,
                  "The original model (any format squish reads), or a saved base (.squishkl)")
      ->required();
  cmd->add_option("-f,--file", a->file, "UTF-8 evaluation text");
  cmd->add_option("--slices", a->slices,
                  "Labelled evaluation text: lines '### slice: <label>' start sections, each "
                  "evaluated and reported on its own (instead of -f)");
  auto* ctx = cmd->add_option("-c,--ctx", a->ctx,
                              "Window length in tokens (default 512, or the "
                              "saved base's)")
                  ->check(CLI::Range(8, 1 << 20));
  cmd->add_option("--chunks", a->chunks, "At most this many windows (per slice; 0 = all)")
      ->check(CLI::Range(0, 1 << 30));
  cmd->add_option("-t,--threads", a->threads, "Threads (default: all cores)")
      ->check(CLI::Range(0, 1024));
  cmd->add_option("--save-base", a->save_base,
                  "Also save the base's top-k distributions to this .squishkl file, for later "
                  "runs with --base FILE (MODEL may be left out)");
  cmd->add_option("--top-k", a->top_k, "Tokens kept per position by --save-base (default 32)")
      ->check(CLI::Range(1, static_cast<int>(kMaxSavedTopK)));
  cmd->add_option("--tail-samples", a->tail_samples,
                  "Stratified samples of the tail per position kept by --save-base (default 32; "
                  "0: tail as one outcome)")
      ->check(CLI::Range(0, static_cast<int>(kMaxTailSamples)));
  cmd->add_option("--freq-file", a->freq_file,
                  "Rank token frequencies over this text instead of the evaluated text");
  cmd->add_option("--position-bins", a->position_bins,
                  "Bins over the scored half of the window (default 4)")
      ->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--device", a->device, "Where to run: cpu, cuda or auto (CUDA when available)")
      ->capture_default_str();
  cmd->add_flag("--json", a->json, "JSON output (schema: docs/eval-json.md)");
  cmd->add_flag(
      "--record", a->record,
      "Record the results in MODEL's manifest sidecar (MODEL.manifest.json, quality.eval)");
  cmd->callback([a, ctx] {
    select_device(a->device);
    run(*a, ctx->count() > 0);
  });
}

}  // namespace squish::cli
