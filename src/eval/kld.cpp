#include "eval/kld.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/error.h"
#include "runtime/session.h"

namespace squish {

namespace {
// log-softmax of one row into `out` (double precision).
void log_softmax(const float* logits, int n, std::vector<double>& out) {
  float mx = logits[0];
  for (int i = 1; i < n; ++i) mx = std::max(mx, logits[i]);
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += std::exp(static_cast<double>(logits[i] - mx));
  const double lse = std::log(sum) + mx;
  out.resize(n);
  for (int i = 0; i < n; ++i) out[i] = logits[i] - lse;
}
}  // namespace

KldResult compute_kld(const Model& base, const Model& model, const std::vector<int32_t>& tokens,
                      const PerplexityOptions& options, const PerplexityProgress& progress) {
  const int V = model.config.n_vocab;
  if (base.config.n_vocab != V) {
    fail("{} and {} have different vocabularies ({} vs {} tokens)", base.path, model.path,
         base.config.n_vocab, V);
  }
  const int n_ctx = options.n_ctx;
  const int available = static_cast<int>(tokens.size() / n_ctx);
  if (available < 1)
    fail("eval: the text has {} tokens; at least {} are needed", tokens.size(), n_ctx);
  const int n_chunks = options.max_chunks > 0 ? std::min(options.max_chunks, available) : available;
  SessionOptions so;
  so.n_ctx = n_ctx;
  so.n_threads = options.n_threads;
  so.n_batch = std::min(options.n_batch, n_ctx);
  Session sb(base, so), sm(model, so);
  const int first = n_ctx / 2;
  KldResult r;
  r.n_chunks = n_chunks;
  std::vector<double> klds;
  double nll_b = 0, nll_m = 0;
  int64_t same = 0;
  std::vector<float> lb, lm;
  std::vector<double> pb, pm;
  std::vector<int32_t> window(n_ctx);
  const auto t0 = std::chrono::steady_clock::now();
  for (int c = 0; c < n_chunks; ++c) {
    std::copy(tokens.begin() + static_cast<int64_t>(c) * n_ctx,
              tokens.begin() + static_cast<int64_t>(c + 1) * n_ctx, window.begin());
    if (options.replace_first_with_bos) window[0] = base.config.bos_id;
    sb.reset();
    sm.reset();
    sb.eval(window.data(), n_ctx, true, lb);
    sm.eval(window.data(), n_ctx, true, lm);
    for (int i = first; i < n_ctx - 1; ++i) {
      const int target = tokens[static_cast<int64_t>(c) * n_ctx + i + 1];
      log_softmax(lb.data() + static_cast<size_t>(i) * V, V, pb);
      log_softmax(lm.data() + static_cast<size_t>(i) * V, V, pm);
      double kld = 0;
      int ab = 0, am = 0;
      for (int v = 0; v < V; ++v) {
        kld += std::exp(pb[v]) * (pb[v] - pm[v]);
        if (pb[v] > pb[ab]) ab = v;
        if (pm[v] > pm[am]) am = v;
      }
      klds.push_back(std::max(kld, 0.0));
      nll_b -= pb[target];
      nll_m -= pm[target];
      same += ab == am;
    }
    if (progress) progress(c + 1, n_chunks, std::exp(nll_m / klds.size()));
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.n_scored = static_cast<int64_t>(klds.size());
  r.base_ppl = std::exp(nll_b / r.n_scored);
  r.model_ppl = std::exp(nll_m / r.n_scored);
  r.top1_agreement = static_cast<double>(same) / r.n_scored;
  double sum = 0, sum2 = 0;
  for (double k : klds) {
    sum += k;
    sum2 += k * k;
  }
  r.mean_kld = sum / r.n_scored;
  const double var = sum2 / r.n_scored - r.mean_kld * r.mean_kld;
  r.kld_stderr = r.n_scored > 1 && var > 0 ? std::sqrt(var / (r.n_scored - 1)) : 0;
  std::sort(klds.begin(), klds.end());
  auto q = [&](double p) {
    return klds[std::min<size_t>(klds.size() - 1, static_cast<size_t>(p * klds.size()))];
  };
  r.median_kld = q(0.5);
  r.p90_kld = q(0.9);
  r.p99_kld = q(0.99);
  r.max_kld = klds.back();
  return r;
}

}  // namespace squish
