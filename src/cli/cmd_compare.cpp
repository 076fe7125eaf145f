#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/progress.h"
#include "eval/compare.h"
#include "model/model.h"

namespace squish::cli {

namespace {

struct CompareArgs {
  std::string base, model, prompts;
  int n_predict = 128, threads = 0, ctx = 0;
  float temperature = 0.0f;
  int top_k = 40;
  float top_p = 0.95f;
  uint64_t seed = 0;
  bool chat = false, json = false, ignore_eos = false;
};

constexpr int kColumn = 56;  // characters per answer column in the side-by-side view

// Splits text into display lines of at most `width` code points: newlines break lines, tabs
// become spaces, other control characters become '.', so a model's output cannot drive the
// terminal.
std::vector<std::string> wrap(const std::string& text, int width) {
  std::vector<std::string> lines(1);
  int col = 0;
  for (size_t i = 0; i < text.size();) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : 4;
    len = std::min(len, text.size() - i);
    if (c == '\n') {
      lines.emplace_back();
      col = 0;
      ++i;
      continue;
    }
    if (col == width) {
      lines.emplace_back();
      col = 0;
    }
    if (c == '\t') {
      lines.back() += ' ';
    } else if (c < 0x20 || c == 0x7f) {
      lines.back() += '.';
    } else {
      lines.back().append(text, i, len);
    }
    ++col;
    i += len;
  }
  return lines;
}

int display_width(const std::string& s) {
  int n = 0;
  for (unsigned char c : s) n += (c & 0xc0) != 0x80;
  return n;
}

void print_side_by_side(const PromptComparison& c, size_t index, size_t total) {
  std::printf("== prompt %zu/%zu (%d tokens): %s\n", index + 1, total, c.n_prompt_tokens,
              wrap(c.prompt, 200)[0].c_str());
  const std::string head_b = "base (" + std::to_string(c.base_tokens.size()) + " tokens" +
                             (c.base_stopped ? ", end" : "") + ")";
  const std::string head_m = "model (" + std::to_string(c.model_tokens.size()) + " tokens" +
                             (c.model_stopped ? ", end" : "") + ")";
  const auto lb = wrap(c.base_answer, kColumn), lm = wrap(c.model_answer, kColumn);
  auto row = [](const std::string& left, const std::string& right) {
    std::printf("  %s%*s | %s\n", left.c_str(), kColumn - display_width(left), "", right.c_str());
  };
  row(head_b, head_m);
  row(std::string(kColumn, '-'), std::string(kColumn, '-'));
  for (size_t i = 0; i < std::max(lb.size(), lm.size()); ++i) {
    row(i < lb.size() ? lb[i] : "", i < lm.size() ? lm[i] : "");
  }
  std::printf("  match %d/%zu tokens%s, KLD mean %.6f max %.6f%s\n\n", c.match_length,
              c.base_tokens.size(), c.identical ? " (identical)" : "", c.kld_mean, c.kld_max,
              c.diverges_early ? "  << DIVERGES EARLY" : "");
}

}  // namespace

void register_compare(CLI::App& app) {
  auto a = std::make_shared<CompareArgs>();
  CLI::App* cmd = app.add_subcommand(
      "compare",
      "Generate answers from BASE and MODEL on the same prompts; report where they part and the "
      "KL divergence along the base's answer");
  cmd->add_option("base", a->base, "The original model")->required();
  cmd->add_option("model", a->model, "The compressed model")->required();
  cmd->add_option("--prompts", a->prompts,
                  "Prompts: one per line, or JSONL with {\"prompt\": ...} per line")
      ->required();
  cmd->add_flag("--chat", a->chat,
                "Wrap prompts in the model's chat template (ChatML, Llama-3, Llama-2, Gemma, "
                "Phi-3 recognised)");
  cmd->add_option("-n,--n-predict", a->n_predict, "Tokens to generate per answer")
      ->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--temp", a->temperature, "Temperature (0 = greedy)")
      ->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--top-k", a->top_k, "Top-k (0 = off)")->check(CLI::Range(0, 1 << 24));
  cmd->add_option("--top-p", a->top_p, "Top-p (1 = off)")->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--seed", a->seed, "Random seed (the same for both models)");
  cmd->add_option("-c,--ctx", a->ctx, "Context length (default: model's, max 4096)")
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("-t,--threads", a->threads, "Threads (default: all cores)")
      ->check(CLI::Range(0, 1024));
  cmd->add_flag("--ignore-eos", a->ignore_eos, "Keep generating after end-of-sequence");
  cmd->add_flag("--json", a->json, "JSON output (schema in docs/report-json.md)");
  cmd->callback([a] {
    const std::vector<std::string> prompts = read_prompts_file(a->prompts);
    auto base = load_model(a->base);
    auto model = load_model(a->model);
    const Tokenizer* tok = base->tokenizer ? base->tokenizer.get() : model->tokenizer.get();
    if (tok == nullptr) fail("{}: neither model has a tokenizer", a->base);

    CompareOptions o;
    o.n_predict = a->n_predict;
    o.sampling = {a->temperature, a->top_k, a->top_p, a->seed};
    o.n_threads = a->threads;
    o.n_ctx = a->ctx;
    o.ignore_eos = a->ignore_eos;
    CompareRunInfo info{a->base, a->model, a->prompts, a->chat, ""};
    if (a->chat) {
      std::string from = a->base;
      std::string tmpl = find_chat_template(a->base);
      if (tmpl.empty()) {
        from = a->model;
        tmpl = find_chat_template(a->model);
      }
      o.chat = detect_chat_format(tmpl);
      if (tmpl.empty()) {
        info.chat_note = "neither model has a chat template; raw prompts used";
      } else if (o.chat == ChatFormat::None) {
        info.chat_note = "chat template of " + from +
                         " not recognised (known: chatml, llama3, llama2, gemma, phi3); raw "
                         "prompts used";
      } else {
        info.chat_note = std::string(chat_format_name(o.chat)) + " template from " + from;
      }
      std::fprintf(stderr, "compare: --chat: %s\n", info.chat_note.c_str());
    }

    Progress progress("compare", prompts.size(), a->json);
    CompareResult r = compare_models(*base, *model, *tok, prompts, o,
                                     [&](int done, int) { progress.update(done); });
    progress.finish();
    if (a->json) {
      const nlohmann::json j = compare_result_json(r, o, info);
      std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
      return;
    }
    for (size_t i = 0; i < r.prompts.size(); ++i) {
      print_side_by_side(r.prompts[i], i, r.prompts.size());
    }
    const CompareSummary& s = r.summary;
    std::printf(
        "summary: %d prompts, %d identical (%.1f%%), mean match length %.1f tokens (%.1f%% of the "
        "base answer), %d diverge early (match < half the answer); KLD mean %.6f, max %.6f\n",
        s.n_prompts, s.n_identical, 100 * s.identical_fraction, s.mean_match_length,
        100 * s.mean_match_fraction, s.n_diverges_early, s.mean_kld, s.max_kld);
  });
}

}  // namespace squish::cli
