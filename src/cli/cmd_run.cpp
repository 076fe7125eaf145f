#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "cli/commands.h"
#include "core/error.h"
#include "core/text.h"
#include "model/model.h"
#include "runtime/memory_need.h"
#include "runtime/sampler.h"
#include "runtime/session.h"

namespace squish::cli {

namespace {
struct RunArgs {
  std::string model, prompt, tokenizer;
  int n_predict = 64;
  int threads = 0;
  int ctx = 0;
  float temperature = 0.0f;
  int top_k = 40;
  float top_p = 0.95f;
  uint64_t seed = 0;
  bool ignore_eos = false;
  std::string device = "auto";
};
}  // namespace

void register_run(CLI::App& app) {
  auto a = std::make_shared<RunArgs>();
  CLI::App* cmd = app.add_subcommand("run", "Generate text from a prompt");
  cmd->add_option("model", a->model, "HF folder, GGUF file or llama2.c checkpoint")->required();
  cmd->add_option("-p,--prompt", a->prompt, "Prompt text")->required();
  cmd->add_option("-n,--n-predict", a->n_predict, "Tokens to generate")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("-t,--threads", a->threads, "Threads (default: all cores)")
      ->check(CLI::Range(0, 1024));
  cmd->add_option("-c,--ctx", a->ctx, "Context length (default: model's, max 4096)")
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--temp", a->temperature, "Temperature (0 = greedy)")
      ->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--top-k", a->top_k, "Top-k (0 = off)")->check(CLI::Range(0, 1 << 24));
  cmd->add_option("--top-p", a->top_p, "Top-p (1 = off)")->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--seed", a->seed, "Random seed");
  cmd->add_option("--tokenizer", a->tokenizer, "Tokenizer file to use instead of the model's");
  cmd->add_option("--device", a->device, "Where to run: cpu, cuda or auto (CUDA when available)")
      ->capture_default_str();
  cmd->add_flag("--ignore-eos", a->ignore_eos, "Keep generating after end-of-sequence");
  cmd->callback([a] {
    select_device(a->device);
    LoadOptions lo;
    lo.tokenizer_path = a->tokenizer;
    auto model = load_model(a->model, lo);
    SessionOptions planned;  // what the session below will allocate (runtime/memory_need.h)
    planned.n_ctx = a->ctx;
    planned.n_threads = a->threads;
    check_runtime_memory(*model, planned);
    if (!model->tokenizer) fail("{}: model has no tokenizer; pass --tokenizer FILE", a->model);
    if (size_t bad = find_invalid_utf8(a->prompt); bad != std::string::npos) {
      fail("prompt is not valid UTF-8 (offset {})", bad);
    }
    const Tokenizer& tok = *model->tokenizer;
    std::vector<int32_t> ids = tok.encode_for_model(a->prompt);
    if (ids.empty()) fail("prompt is empty after tokenization");
    SessionOptions so;
    so.n_threads = a->threads;
    so.n_ctx = a->ctx;
    Session session(*model, so);
    if (static_cast<int>(ids.size()) + a->n_predict > session.n_ctx()) {
      fail("prompt ({} tokens) + {} new tokens exceed the context length {} (use --ctx)",
           ids.size(), a->n_predict, session.n_ctx());
    }
    Sampler sampler({a->temperature, a->top_k, a->top_p, a->seed});
    std::vector<Candidate> candidates;
    // On a device, a top-k sampler's candidates are selected there (the row stays on the GPU):
    // the same draws, without copying and ranking the vocabulary on the host each token. Greedy
    // decoding is the top 1 at temperature 1 (ties to the lower id, as max_element).
    const int V = model->config.n_vocab;
    const char* top_k_env = std::getenv("SQUISH_DEVICE_TOP_K");  // 0: sample the copied row
    const bool on_device = top_k_env == nullptr || std::strcmp(top_k_env, "0") != 0;
    const bool greedy = !(a->temperature > 0.0f);
    auto step = [&](const int32_t* tokens, int n) {
      if (on_device && greedy && session.eval_top_k(tokens, n, 1, 1.0f, candidates))
        return candidates[0].second;
      if (on_device && sampler.samples_top_k(V) &&
          session.eval_top_k(tokens, n, a->top_k, a->temperature, candidates))
        return sampler.sample_top(candidates);
      return sampler.sample(session.eval_last(tokens, n).data(), V);
    };
    std::printf("%s", a->prompt.c_str());
    std::fflush(stdout);
    const auto t0 = std::chrono::steady_clock::now();
    int32_t next = step(ids.data(), static_cast<int>(ids.size()));
    const auto t1 = std::chrono::steady_clock::now();
    int generated = 0;
    for (; generated < a->n_predict; ++generated) {
      if (!a->ignore_eos && tok.is_eog(next)) break;
      const std::string piece = tok.token_to_piece(next);
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
      if (generated + 1 < a->n_predict) next = step(&next, 1);
    }
    const auto t2 = std::chrono::steady_clock::now();
    std::printf("\n");
    const double pp = std::chrono::duration<double>(t1 - t0).count();
    const double tg = std::chrono::duration<double>(t2 - t1).count();
    std::fprintf(stderr,
                 "prompt: %zu tokens, %.1f tok/s; generated: %d tokens, %.1f tok/s; %d threads\n",
                 ids.size(), ids.size() / pp, generated, generated > 0 ? generated / tg : 0.0,
                 session.n_threads());
  });
}

}  // namespace squish::cli
