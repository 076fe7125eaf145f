#include "calib/smoothquant.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "calib/block_runner.h"
#include "core/error.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/w8a8.h"
#include "quant/blocks.h"
#include "runtime/session.h"

namespace squish {

namespace {

std::vector<float> load_floats(const TensorInfo& t) {
  const int64_t rows = t.rows(), cols = t.cols();
  const size_t in_row = row_bytes(t.type, cols);
  std::vector<float> w(static_cast<size_t>(rows) * cols);
#pragma omp parallel for schedule(static) if (rows * cols > (1 << 16))
  for (int64_t r = 0; r < rows; ++r) {
    convert_row_to_f32(t.type, static_cast<const uint8_t*>(t.data) + r * in_row,
                       w.data() + r * cols, cols);
  }
  return w;
}

// Per-column maxima of |x| over all calibration tokens, and the evenly spaced sample of rows the
// alpha search measures on.
struct ChannelStats {
  explicit ChannelStats(int64_t width) : width(width), max_abs(width, 0.0f) {}
  void add(const float* x, int64_t n, int64_t first_token, int64_t stride) {
    for (int64_t t = 0; t < n; ++t) {
      const float* row = x + t * width;
      for (int64_t j = 0; j < width; ++j) max_abs[j] = std::max(max_abs[j], std::fabs(row[j]));
      if ((first_token + t) % stride == 0) sample.insert(sample.end(), row, row + width);
    }
  }
  int64_t sample_rows() const { return static_cast<int64_t>(sample.size()) / width; }
  int64_t width;
  std::vector<float> max_abs;
  std::vector<float> sample;
};

// One matrix of a fold group: rows x cols floats, changed in place by the fold.
struct GroupMatrix {
  std::vector<float>* w;
  int64_t rows;
};

std::vector<float> column_max_abs(const std::vector<GroupMatrix>& mats, int64_t cols) {
  std::vector<float> m(cols, 0.0f);
  for (const GroupMatrix& g : mats) {
    for (int64_t r = 0; r < g.rows; ++r) {
      const float* row = g.w->data() + r * cols;
      for (int64_t j = 0; j < cols; ++j) m[j] = std::max(m[j], std::fabs(row[j]));
    }
  }
  return m;
}

// Squared error of the W8A8 product (per-token activations of x / s, per-row weights of w * s)
// against the float product, summed over the group. s null: no smoothing.
double group_error(const std::vector<GroupMatrix>& mats, int64_t cols, const ChannelStats& x,
                   const std::vector<std::vector<float>>& reference, const float* s) {
  const int64_t n = x.sample_rows();
  std::vector<float> xs(x.sample), xq(xs.size());
  if (s != nullptr) {
    for (int64_t t = 0; t < n; ++t)
      for (int64_t j = 0; j < cols; ++j) xs[t * cols + j] /= s[j];
  }
  w8a8_fake_quantize_tokens(xs.data(), n, cols, xq.data());
  double total = 0;
  std::vector<block_q8_0> blocks(cols / QK8_0);
  for (size_t k = 0; k < mats.size(); ++k) {
    const int64_t rows = mats[k].rows;
    std::vector<float> wq(static_cast<size_t>(rows) * cols), y(static_cast<size_t>(n) * rows);
#pragma omp parallel
    {
      std::vector<float> row(cols);
      std::vector<block_q8_0> b(cols / QK8_0);
#pragma omp for schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        const float* w = mats[k].w->data() + r * cols;
        for (int64_t j = 0; j < cols; ++j) row[j] = s != nullptr ? w[j] * s[j] : w[j];
        w8a8_quantize_row(row.data(), cols, b.data(), wq.data() + r * cols);
      }
    }
    matmul(xq.data(), n, wq.data(), DType::F32, rows, cols, y.data(), rows);
    // Relative per token, so the few tokens with huge activations (BOS) do not decide alone.
    const std::vector<float>& ref = reference[k];
    for (int64_t t = 0; t < n; ++t) {
      double err = 0, norm = 0;
      for (int64_t i = t * rows; i < (t + 1) * rows; ++i) {
        const double d = static_cast<double>(y[i]) - ref[i];
        err += d * d, norm += static_cast<double>(ref[i]) * ref[i];
      }
      total += norm > 0 ? err / norm : 0.0;
    }
  }
  return total;
}

// SmoothQuant's scales for one alpha; channels without signal keep 1.
std::vector<float> smooth_scales(const std::vector<float>& x_max, const std::vector<float>& w_max,
                                 double alpha) {
  std::vector<float> s(x_max.size(), 1.0f);
  for (size_t j = 0; j < s.size(); ++j) {
    if (!(x_max[j] > 0.0f) || !(w_max[j] > 0.0f)) continue;
    const double v = std::pow(x_max[j], alpha) / std::pow(w_max[j], 1.0 - alpha);
    s[j] = static_cast<float>(std::clamp(v, 1e-5, 1e5));
  }
  return s;
}

// Chooses the scales of one group: for each candidate alpha the per-channel scales (expanded by
// `expand` from the channels that must share a scale to the group's columns), measured on the
// sample. Returns the chosen column scales, empty for no smoothing.
std::vector<float> choose_scales(const std::vector<GroupMatrix>& mats, int64_t cols,
                                 const ChannelStats& x, const SmoothQuantOptions& opt,
                                 const std::vector<int64_t>& channel_of_column, int64_t n_channels,
                                 SmoothGroupStats& stats) {
  if (!opt.smooth) return {};
  const int64_t n = x.sample_rows();
  std::vector<std::vector<float>> reference;
  for (const GroupMatrix& g : mats) {
    std::vector<float>& y = reference.emplace_back(static_cast<size_t>(n) * g.rows);
    matmul(x.sample.data(), n, g.w->data(), DType::F32, g.rows, cols, y.data(), g.rows);
  }
  // Channel maxima of activations and weights (columns sharing a channel share its maximum).
  const std::vector<float> w_col = column_max_abs(mats, cols);
  std::vector<float> x_ch(n_channels, 0.0f), w_ch(n_channels, 0.0f);
  for (int64_t j = 0; j < cols; ++j) {
    const int64_t c = channel_of_column[j];
    x_ch[c] = std::max(x_ch[c], x.max_abs[j]);
    w_ch[c] = std::max(w_ch[c], w_col[j]);
  }
  auto expand = [&](const std::vector<float>& ch) {
    std::vector<float> s(cols);
    for (int64_t j = 0; j < cols; ++j) s[j] = ch[channel_of_column[j]];
    return s;
  };
  stats.plain_error = group_error(mats, cols, x, reference, nullptr);
  std::vector<double> alphas;
  if (opt.alpha >= 0) {
    alphas.push_back(opt.alpha);
  } else {
    for (int k = 1; k < opt.grid; ++k) alphas.push_back(static_cast<double>(k) / opt.grid);
  }
  std::vector<float> best;
  double best_error = opt.alpha >= 0 ? INFINITY : stats.plain_error;
  for (double a : alphas) {
    std::vector<float> s = expand(smooth_scales(x_ch, w_ch, a));
    const double e = group_error(mats, cols, x, reference, s.data());
    if (e < best_error) best_error = e, best = std::move(s), stats.alpha = a;
  }
  stats.smoothed = !best.empty();
  stats.error = best.empty() ? stats.plain_error : best_error;
  return best;
}

void scale_columns(std::vector<float>& w, int64_t rows, int64_t cols, const std::vector<float>& s) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) w[r * cols + j] *= s[j];
}

void divide_rows(std::vector<float>& w, int64_t cols, const std::vector<float>& s) {
  for (size_t r = 0; r < s.size(); ++r)
    for (int64_t j = 0; j < cols; ++j) w[r * cols + j] /= s[r];
}

std::vector<int64_t> identity_channels(int64_t n) {
  std::vector<int64_t> c(n);
  for (int64_t i = 0; i < n; ++i) c[i] = i;
  return c;
}

}  // namespace

std::vector<SmoothGroupStats> smooth_model(const Model& model, const CalibrationWindows& windows,
                                           const SmoothQuantOptions& opt,
                                           const SmoothedTensorSink& sink,
                                           const CalibProgress& progress) {
  const ModelConfig& c = model.config;
  const int n_ctx = windows.n_ctx, n_win = windows.n_windows();
  if (n_win < 1) fail("smoothquant: no calibration windows");
  for (int32_t tok : windows.tokens) {
    if (tok < 0 || tok >= c.n_vocab)
      fail("calibration: token id {} is outside the vocabulary", tok);
  }
  const int threads_before = omp_get_max_threads();
  if (opt.n_threads > 0) omp_set_num_threads(opt.n_threads);
  struct RestoreThreads {
    int n;
    ~RestoreThreads() { omp_set_num_threads(n); }
  } restore{threads_before};

  const int64_t E = c.n_embd, Q = c.q_dim(), F = c.n_ff, D = c.head_dim;
  const int64_t n_tok = static_cast<int64_t>(n_ctx) * n_win;
  const int64_t stride = std::max<int64_t>(1, n_tok / std::max(1, opt.search_tokens));
  // Float hidden states of every calibration token entering the current block.
  std::vector<float> x(static_cast<size_t>(n_tok) * E);
  {
    const TensorInfo& te = *model.token_embd;
    const size_t in_row = row_bytes(te.type, E);
    const float scale = c.scale_embeddings ? std::sqrt(static_cast<float>(E)) : 1.0f;
    for (int64_t t = 0; t < n_tok; ++t) {
      float* dst = x.data() + t * E;
      convert_row_to_f32(te.type, static_cast<const uint8_t*>(te.data) + windows.tokens[t] * in_row,
                         dst, E);
      if (scale != 1.0f)
        for (int64_t i = 0; i < E; ++i) dst[i] *= scale;
    }
  }
  BlockRunner runner(c, n_ctx);
  std::vector<SmoothGroupStats> all;
  std::vector<float> attn(static_cast<size_t>(n_ctx) * Q);
  for (int l = 0; l < c.n_layer; ++l) {
    const LayerWeights& L = model.layers[l];
    const BlockWeights bw = BlockWeights::of(L);
    ChannelStats sa(E), so(Q), sf(E), sd(F);
    for (int w = 0; w < n_win; ++w) {
      float* xw = x.data() + static_cast<size_t>(w) * n_ctx * E;
      const int64_t first = static_cast<int64_t>(w) * n_ctx;
      sa.add(runner.attn_input(bw, xw), n_ctx, first, stride);
      std::memcpy(attn.data(), runner.attention(bw, xw), attn.size() * sizeof(float));
      so.add(attn.data(), n_ctx, first, stride);
      runner.add_attention_output(bw, attn.data(), xw);
      sf.add(runner.ffn_input(bw, xw), n_ctx, first, stride);
      sd.add(runner.ffn_activation(bw, xw), n_ctx, first, stride);
      runner.add_ffn_output(bw, xw);
    }
    // The block's tensors as floats, changed by the folds below.
    auto floats = [](const TensorInfo* t) { return t ? load_floats(*t) : std::vector<float>(); };
    std::vector<float> wq = floats(L.wq), wk = floats(L.wk), wv = floats(L.wv),
                       wqkv = floats(L.wqkv), wo = floats(L.wo), wg = floats(L.w_gate),
                       wu = floats(L.w_up), wd = floats(L.w_down);
    std::vector<float> g_attn = floats(L.attn_norm), g_ffn = floats(L.ffn_norm), bv = floats(L.bv);
    const std::string blk = "blk." + std::to_string(l) + ".";

    // V -> O: one scale per KV channel, shared by the query heads reading it.
    if (L.wv != nullptr && L.wqkv == nullptr) {
      const int64_t KV = c.kv_dim(), group = c.n_head / c.n_head_kv;
      std::vector<int64_t> channel(Q);
      for (int64_t h = 0; h < c.n_head; ++h)
        for (int64_t d = 0; d < D; ++d) channel[h * D + d] = (h / group) * D + d;
      SmoothGroupStats st;
      st.name = blk + "attn_v.weight";
      const std::vector<float> s =
          choose_scales({{&wo, L.wo->rows()}}, Q, so, opt, channel, KV, st);
      if (!s.empty()) {
        scale_columns(wo, L.wo->rows(), Q, s);
        std::vector<float> s_kv(KV);
        for (int64_t j = 0; j < Q; ++j) s_kv[channel[j]] = s[j];
        divide_rows(wv, E, s_kv);
        if (!bv.empty())
          for (int64_t i = 0; i < KV; ++i) bv[i] /= s_kv[i];
      }
      all.push_back(st);
    }
    // up -> down.
    if (L.w_gate != nullptr) {
      SmoothGroupStats st;
      st.name = blk + "ffn_up.weight";
      const std::vector<float> s =
          choose_scales({{&wd, L.w_down->rows()}}, F, sd, opt, identity_channels(F), F, st);
      if (!s.empty()) {
        scale_columns(wd, L.w_down->rows(), F, s);
        divide_rows(wu, E, s);
      }
      all.push_back(st);
    }
    // attention norm -> Q/K/V.
    {
      std::vector<GroupMatrix> group;
      if (L.wqkv != nullptr) {
        group.push_back({&wqkv, L.wqkv->rows()});
      } else {
        group = {{&wq, L.wq->rows()}, {&wk, L.wk->rows()}, {&wv, L.wv->rows()}};
      }
      SmoothGroupStats st;
      st.name = blk + "attn_norm.weight";
      const std::vector<float> s = choose_scales(group, E, sa, opt, identity_channels(E), E, st);
      if (!s.empty()) {
        for (GroupMatrix& g : group) scale_columns(*g.w, g.rows, E, s);
        for (int64_t j = 0; j < E; ++j) g_attn[j] /= s[j];
      }
      all.push_back(st);
    }
    // FFN norm -> gate/up.
    {
      std::vector<GroupMatrix> group;
      if (L.w_gate != nullptr) group.push_back({&wg, L.w_gate->rows()});
      group.push_back({&wu, L.w_up->rows()});
      SmoothGroupStats st;
      st.name = blk + "ffn_norm.weight";
      const std::vector<float> s = choose_scales(group, E, sf, opt, identity_channels(E), E, st);
      if (!s.empty()) {
        for (GroupMatrix& g : group) scale_columns(*g.w, g.rows, E, s);
        for (int64_t j = 0; j < E; ++j) g_ffn[j] /= s[j];
      }
      all.push_back(st);
    }
    const std::pair<const TensorInfo*, std::vector<float>*> out[] = {
        {L.wq, &wq},          {L.wk, &wk},     {L.wv, &wv},
        {L.wqkv, &wqkv},      {L.wo, &wo},     {L.w_gate, &wg},
        {L.w_up, &wu},        {L.w_down, &wd}, {L.attn_norm, &g_attn},
        {L.ffn_norm, &g_ffn}, {L.bv, &bv}};
    for (const auto& [t, v] : out) {
      if (t != nullptr) sink(*t, std::move(*v));
    }
    if (progress) {
      double e = 0, p = 0;
      for (const SmoothGroupStats& s : all) {
        if (s.name.rfind(blk, 0) == 0) e += s.error, p += s.plain_error;
      }
      progress(
          l + 1, c.n_layer,
          fmt::format("layer {}: product error {:.3f}x of no smoothing", l, p > 0 ? e / p : 1.0));
    }
  }
  // Final norm -> output, unless the output is the (lookup) token embedding.
  if (model.output != model.token_embd) {
    ChannelStats sx(E);
    std::vector<float> g_out = load_floats(*model.output_norm), xn(E);
    for (int64_t t = 0; t < n_tok; ++t) {
      rms_norm(x.data() + t * E, g_out.data(), static_cast<int>(E), c.norm_eps, xn.data());
      sx.add(xn.data(), 1, t, stride);
    }
    std::vector<float> w = load_floats(*model.output);
    SmoothGroupStats st;
    st.name = model.output_norm->name;
    const std::vector<float> s =
        choose_scales({{&w, model.output->rows()}}, E, sx, opt, identity_channels(E), E, st);
    if (!s.empty()) {
      scale_columns(w, model.output->rows(), E, s);
      for (int64_t j = 0; j < E; ++j) g_out[j] /= s[j];
    }
    all.push_back(st);
    sink(*model.output, std::move(w));
    sink(*model.output_norm, std::move(g_out));
  }
  return all;
}

W8A8Result quantize_w8a8(const Model& model, const CalibrationWindows& windows,
                         const SmoothQuantOptions& opt, const CalibProgress& progress) {
  const auto t0 = std::chrono::steady_clock::now();
  W8A8Result r;
  r.tensors = std::make_shared<TensorStore>();
  for (const TensorInfo& t : model.tensors()) {
    const bool matrix = t.shape.size() >= 2;
    if (matrix && t.cols() % QK8_0 != 0) {
      fail("{}: tensor '{}' has {} columns, not a multiple of 32 (W8A8 stores Q8_0 rows)",
           model.path, t.name, t.cols());
    }
    r.plan.push_back({t.name, matrix ? DType::Q8_0 : DType::F32, ""});
  }
  TensorStore& store = *r.tensors;
  auto put = [&](const TensorInfo& t, const std::vector<float>& v) {
    if (t.shape.size() < 2) {
      std::vector<uint8_t> bytes(v.size() * sizeof(float));
      std::memcpy(bytes.data(), v.data(), bytes.size());
      store.put(t.name, std::move(bytes));
      return;
    }
    const int64_t rows = t.rows(), cols = t.cols();
    const size_t out_row = row_bytes(DType::Q8_0, cols);
    std::vector<uint8_t> bytes(out_row * rows);
#pragma omp parallel for schedule(static) if (rows * cols > (1 << 16))
    for (int64_t i = 0; i < rows; ++i)
      w8a8_quantize_row(v.data() + i * cols, cols, bytes.data() + i * out_row, nullptr);
    store.put(t.name, std::move(bytes));
  };
  if (opt.smooth) {
    r.groups = smooth_model(
        model, windows, opt, [&](const TensorInfo& t, std::vector<float>&& v) { put(t, v); },
        progress);
  }
  for (const TensorInfo& t : model.tensors()) {
    if (t.shape.size() >= 2 && !store.contains(t.name)) put(t, load_floats(t));
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace squish
