#include "eval/perplexity.h"

#include <chrono>
#include <cmath>

#include "core/error.h"
#include "runtime/session.h"

namespace squish {

double log_softmax_at(const float* logits, int n_vocab, int target) {
  float mx = logits[0];
  for (int i = 1; i < n_vocab; ++i) mx = std::max(mx, logits[i]);
  double sum = 0;
  for (int i = 0; i < n_vocab; ++i) sum += std::exp(static_cast<double>(logits[i] - mx));
  return static_cast<double>(logits[target] - mx) - std::log(sum);
}

PerplexityResult compute_perplexity(const Model& model, const std::vector<int32_t>& tokens,
                                    const PerplexityOptions& options,
                                    const PerplexityProgress& progress) {
  const int n_ctx = options.n_ctx;
  if (n_ctx < 8) fail("perplexity: context length {} is too small (minimum 8)", n_ctx);
  const int available = static_cast<int>(tokens.size() / n_ctx);
  if (available < 1) {
    fail("perplexity: the text has {} tokens; at least {} (one window of --ctx) are needed",
         tokens.size(), n_ctx);
  }
  const int n_chunks = options.max_chunks > 0 ? std::min(options.max_chunks, available) : available;
  SessionOptions so;
  so.n_ctx = n_ctx;
  so.n_threads = options.n_threads;
  so.n_batch = std::min(options.n_batch, n_ctx);
  Session session(model, so);
  const int V = model.config.n_vocab;
  const int first = n_ctx / 2;
  PerplexityResult r;
  r.n_chunks = n_chunks;
  double nll = 0, nll2 = 0;
  std::vector<float> logits;
  std::vector<int32_t> window(n_ctx);
  const auto t0 = std::chrono::steady_clock::now();
  for (int c = 0; c < n_chunks; ++c) {
    std::copy(tokens.begin() + static_cast<int64_t>(c) * n_ctx,
              tokens.begin() + static_cast<int64_t>(c + 1) * n_ctx, window.begin());
    if (options.replace_first_with_bos) window[0] = model.config.bos_id;
    session.reset();
    session.eval(window.data(), n_ctx, true, logits);
    r.n_tokens_evaluated += n_ctx;
    // Row i predicts token i+1; score rows first .. n_ctx-2 (targets from the original stream).
    double window_nll = 0;
    for (int i = first; i < n_ctx - 1; ++i) {
      const int target = tokens[static_cast<int64_t>(c) * n_ctx + i + 1];
      const double v = -log_softmax_at(logits.data() + static_cast<size_t>(i) * V, V, target);
      nll += v;
      nll2 += v * v;
      window_nll += v;
      r.n_scored++;
    }
    r.window_ppl.push_back(std::exp(window_nll / (n_ctx - 1 - first)));
    r.running_ppl.push_back(std::exp(nll / r.n_scored));
    if (progress) progress(c + 1, n_chunks, r.running_ppl.back());
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.mean_nll = nll / r.n_scored;
  r.ppl = std::exp(r.mean_nll);
  double var = nll2 / r.n_scored - r.mean_nll * r.mean_nll;
  r.ppl_stderr = var > 0 && r.n_scored > 1 ? r.ppl * std::sqrt(var / (r.n_scored - 1)) : 0.0;
  return r;
}

}  // namespace squish
