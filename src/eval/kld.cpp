#include "eval/kld.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>

#include "core/error.h"
#include "runtime/session.h"

namespace squish {

namespace {
// log-softmax of one row into `out` (double precision); returns the first arg-max.
int log_softmax(const float* logits, int n, std::vector<double>& out) {
  int imax = 0;
  for (int i = 1; i < n; ++i) {
    if (logits[i] > logits[imax]) imax = i;
  }
  const float mx = logits[imax];
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += std::exp(static_cast<double>(logits[i] - mx));
  const double lse = std::log(sum) + mx;
  out.resize(n);
  for (int i = 0; i < n; ++i) out[i] = logits[i] - lse;
  return imax;
}

// Per-thread buffers for scoring rows.
struct RowScratch {
  std::vector<double> model_logp, base_logp, tail_logp;
  std::vector<uint8_t> mask, record;
  std::vector<int32_t> order;
  SavedRow saved;
};
}  // namespace

EvalRun run_eval(const EvalSources& src, const EvalText& text,
                 const std::vector<EvalWindow>& windows, const EvalOptions& options,
                 const EvalProgress& progress) {
  if ((src.base_model == nullptr) == (src.saved == nullptr)) {
    fail("eval: internal: need exactly one base (model or saved)");
  }
  if (src.model == nullptr && src.writer == nullptr) fail("eval: internal: nothing to evaluate");
  if (src.saved != nullptr && src.model == nullptr) fail("eval: a saved base needs a model");
  if (src.writer != nullptr && src.base_model == nullptr) {
    fail("eval: internal: saving needs a base model");
  }
  const Model& vocab_owner = src.model != nullptr ? *src.model : *src.base_model;
  const int V = vocab_owner.config.n_vocab;
  if (src.base_model != nullptr && src.base_model->config.n_vocab != V) {
    fail("{} and {} have different vocabularies ({} vs {} tokens)", src.base_model->path,
         vocab_owner.path, src.base_model->config.n_vocab, V);
  }
  const int n_ctx = options.n_ctx;
  SessionOptions so;
  so.n_ctx = n_ctx;
  so.n_threads = options.n_threads;
  so.n_batch = std::min(options.n_batch, n_ctx);
  std::unique_ptr<Session> model_session, base_session;
  if (src.model != nullptr) model_session = std::make_unique<Session>(*src.model, so);
  if (src.base_model != nullptr) base_session = std::make_unique<Session>(*src.base_model, so);
  const int n_threads = (model_session ? model_session : base_session)->n_threads();

  EvalRun run;
  run.has_model = src.model != nullptr;
  run.n_windows = static_cast<int>(windows.size());
  const bool track_tail = src.saved != nullptr || src.writer != nullptr;
  std::vector<float> model_logits, base_logits;
  std::vector<int32_t> window_tokens;
  std::vector<RowScratch> scratch(n_threads);
  std::vector<TokenRecord> rows;
  std::vector<float> row_tail;
  std::vector<std::vector<uint8_t>> records;
  double nll_sum = 0;
  uint64_t scored_before = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t w = 0; w < windows.size(); ++w) {
    const EvalWindow& win = windows[w];
    const std::vector<int32_t>& stream = text.slices[win.slice].tokens;
    window_tokens.assign(stream.begin() + win.start, stream.begin() + win.start + win.len);
    if (options.replace_first_with_bos) window_tokens[0] = vocab_owner.config.bos_id;
    if (model_session) {
      model_session->reset();
      model_session->eval(window_tokens.data(), win.len, true, model_logits);
    }
    if (base_session) {
      base_session->reset();
      base_session->eval(window_tokens.data(), win.len, true, base_logits);
    }
    const int first = win.first_scored(), n_rows = win.n_scored();
    rows.assign(n_rows, TokenRecord{});
    row_tail.assign(n_rows, 0.0f);
    if (src.writer != nullptr) records.resize(n_rows);
    std::exception_ptr error;
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int r = 0; r < n_rows; ++r) {
      try {
        RowScratch& s = scratch[omp_get_thread_num()];
        const int i = first + r;
        const int target = stream[win.start + i + 1];
        TokenRecord& t = rows[r];
        t.target = target;
        t.slice = win.slice;
        t.window = static_cast<int32_t>(w);
        t.row = r;
        t.n_rows = n_rows;
        int model_top = -1, base_top = -1;
        if (model_session) {
          model_top =
              log_softmax(model_logits.data() + static_cast<size_t>(i) * V, V, s.model_logp);
          t.nll_model = -s.model_logp[target];
        }
        if (base_session) {
          base_top = log_softmax(base_logits.data() + static_cast<size_t>(i) * V, V, s.base_logp);
          t.nll_base = -s.base_logp[target];
          if (model_session) {
            double kld = 0;
            for (int v = 0; v < V; ++v) {
              kld += std::exp(s.base_logp[v]) * (s.base_logp[v] - s.model_logp[v]);
            }
            t.kld = std::max(kld, 0.0);
          }
          if (src.writer != nullptr) {
            row_tail[r] = static_cast<float>(
                src.writer->encode(s.base_logp.data(), target, records[r], s.order));
          }
        } else {
          const uint64_t index = scored_before + r;
          src.saved->row(index, s.saved);
          t.nll_base = -static_cast<double>(s.saved.target_logp);
          base_top = s.saved.ids[0];
          double bound = 0;
          const double kld = saved_kld(s.saved, s.model_logp.data(), V, &bound, s.mask, s.tail_logp,
                                       src.saved->path(), index);
          t.kld = std::max(kld, 0.0);
          t.tail_bound = static_cast<float>(bound);
          row_tail[r] = s.saved.tail_mass;
        }
        t.same_top = model_top == base_top;
        t.p_diff = static_cast<float>(std::exp(-t.nll_model) - std::exp(-t.nll_base));
      } catch (...) {
#pragma omp critical(squish_eval_error)
        if (!error) error = std::current_exception();
      }
    }
    if (error) std::rethrow_exception(error);
    for (int r = 0; r < n_rows; ++r) {
      nll_sum += run.has_model ? rows[r].nll_model : rows[r].nll_base;
      if (src.writer != nullptr) src.writer->append(records[r]);
    }
    run.tokens.insert(run.tokens.end(), rows.begin(), rows.end());
    if (track_tail) run.tail_mass.insert(run.tail_mass.end(), row_tail.begin(), row_tail.end());
    scored_before += n_rows;
    if (progress) {
      progress(static_cast<int>(w + 1), run.n_windows, std::exp(nll_sum / run.tokens.size()));
    }
  }
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (src.writer != nullptr) src.writer->commit();
  return run;
}

}  // namespace squish
