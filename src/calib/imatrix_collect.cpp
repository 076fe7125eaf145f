#include "calib/imatrix_collect.h"

#include <cmath>

#include "core/error.h"

namespace squish {

void ImatrixCollector::observe(const TensorInfo& weight, const float* x, int n_tokens) {
  const bool wanted =
      weight.name.starts_with("blk.") || (include_output_ && weight.name == "output.weight");
  if (!wanted) return;
  const int64_t cols = weight.cols();
  Accumulator& a = acc_[weight.name];
  if (a.sums.empty()) a.sums.assign(cols, 0.0);
  for (int t = 0; t < n_tokens; ++t) {
    const float* row = x + t * cols;
    for (int64_t j = 0; j < cols; ++j) a.sums[j] += static_cast<double>(row[j]) * row[j];
  }
  a.count += n_tokens;
}

Imatrix ImatrixCollector::result() const {
  Imatrix m;
  for (const auto& [name, a] : acc_) {
    ImatrixEntry e;
    e.sums.resize(a.sums.size());
    for (size_t j = 0; j < a.sums.size(); ++j) {
      e.sums[j] = static_cast<float>(a.sums[j]);
      if (!std::isfinite(e.sums[j])) fail("imatrix: non-finite activations in '{}'", name);
    }
    e.counts = {static_cast<float>(a.count)};
    m.entries.emplace(name, std::move(e));
  }
  return m;
}

Imatrix collect_imatrix(const Model& model, const CalibrationWindows& windows,
                        const ImatrixOptions& options,
                        const std::function<void(int, int)>& progress) {
  const int n_ctx = windows.n_ctx, n = windows.n_windows();
  if (n < 1) fail("imatrix: no calibration windows");
  SessionOptions so;
  so.n_ctx = n_ctx;
  so.n_threads = options.n_threads;
  so.n_batch = n_ctx;
  Session session(model, so);
  ImatrixCollector collector(options.include_output);
  session.set_matmul_observer(&collector);
  std::vector<float> logits;
  for (int w = 0; w < n; ++w) {
    session.reset();
    // Logits of every position only when output.weight's inputs are wanted.
    session.eval(windows.window(w), n_ctx, options.include_output, logits);
    if (progress) progress(w + 1, n);
  }
  Imatrix m = collector.result();
  m.datasets = options.datasets;
  m.chunk_count = n;
  m.chunk_size = n_ctx;
  return m;
}

}  // namespace squish
