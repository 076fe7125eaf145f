#include "calib/calibrated_quant.h"

#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>

#include "calib/activation_cache.h"
#include "calib/awq.h"
#include "calib/block_grid.h"
#include "calib/block_runner.h"
#include "core/error.h"
#include "kernels/cpu/matmul.h"
#include "quant/quant.h"
#include "runtime/session.h"

namespace squish {

namespace {

// Sums over the rows given to add() of x x^T (H), and with a float-model partner xf of x xf^T
// (C) and xf xf^T (Hf), accumulated in double. Each window's products run through the F32 matmul
// kernel on the transposed activations.
class HessianAccumulator {
 public:
  HessianAccumulator(int dim, bool paired) : dim_(dim), h_(static_cast<size_t>(dim) * dim, 0.0) {
    if (paired) cross_.assign(h_.size(), 0.0), hf_.assign(h_.size(), 0.0);
  }
  void add(const float* x, int n) { add(x, nullptr, n); }
  void add(const float* x, const float* xf, int n) {
    transpose(x, n, xt_);
    accumulate(xt_, xt_, n, h_);
    if (xf != nullptr && !cross_.empty()) {
      transpose(xf, n, xft_);
      accumulate(xt_, xft_, n, cross_);
      accumulate(xft_, xft_, n, hf_);
    }
    n_ += n;
  }
  // The statistics of inputs divided by s per column (x_j / s_j): every sum gets 1 / (s_i s_k).
  void scale_inputs(const std::vector<float>& s) {
    for (std::vector<double>* m : {&h_, &cross_, &hf_}) {
      if (m->empty()) continue;
      for (int i = 0; i < dim_; ++i)
        for (int k = 0; k < dim_; ++k)
          (*m)[static_cast<size_t>(i) * dim_ + k] /= static_cast<double>(s[i]) * s[k];
    }
  }
  const double* h() const { return h_.data(); }
  const double* cross() const { return cross_.empty() ? nullptr : cross_.data(); }
  const double* hf() const { return hf_.empty() ? nullptr : hf_.data(); }
  int64_t count() const { return n_; }

 private:
  void transpose(const float* x, int n, std::vector<float>& xt) const {
    xt.resize(static_cast<size_t>(dim_) * n);
    for (int t = 0; t < n; ++t)
      for (int i = 0; i < dim_; ++i)
        xt[static_cast<size_t>(i) * n + t] = x[static_cast<size_t>(t) * dim_ + i];
  }
  // sum[i][k] += sum_t a[i][t] b[k][t]
  void accumulate(const std::vector<float>& at, const std::vector<float>& bt, int n,
                  std::vector<double>& sum) {
    y_.resize(static_cast<size_t>(dim_) * dim_);
    matmul(at.data(), dim_, bt.data(), DType::F32, dim_, n, y_.data(), dim_);
    for (size_t i = 0; i < sum.size(); ++i) sum[i] += y_[i];
  }

  int dim_;
  std::vector<double> h_, cross_, hf_;
  std::vector<float> xt_, xft_, y_;
  int64_t n_ = 0;
};

// Rounds floats through a plain storage type, as the export will store them.
void round_through(DType type, float* x, size_t n) {
  if (type == DType::F16) {
    for (size_t i = 0; i < n; ++i) x[i] = fp16_to_fp32(fp32_to_fp16(x[i]));
  } else if (type == DType::BF16) {
    for (size_t i = 0; i < n; ++i) x[i] = bf16_to_fp32(fp32_to_bf16(x[i]));
  }
}

// Hidden states of the calibration tokens for one stream (the quantized model's, or the float
// model's alongside it), with the attention outputs kept between steps 2 and 3 of a block.
struct Stream {
  Stream(size_t n_tok, const ModelConfig& c, int n_ctx, const std::string& offload)
      : x(n_tok, c.n_embd, offload), attn(n_tok, c.q_dim(), offload), runner(c, n_ctx) {}
  ActivationCache x, attn;
  BlockRunner runner;
};

class Calibrator {
 public:
  Calibrator(const Model& model, const std::vector<TensorPlan>& plan,
             const CalibrationWindows& windows, const CalibratedQuantOptions& options)
      : m_(model), c_(model.config), windows_(windows), opt_(options) {
    for (size_t i = 0; i < plan.size(); ++i) planned_[plan[i].name] = plan[i].type;
    result_.tensors = std::make_shared<TensorStore>(options.work_dir);
  }

  CalibratedQuantResult run(const CalibProgress& progress) {
    const auto t0 = std::chrono::steady_clock::now();
    const int n_ctx = windows_.n_ctx, n_win = windows_.n_windows();
    const size_t n_tok = static_cast<size_t>(n_ctx) * n_win;
    const bool paired = opt_.input_correction;
    Stream q(n_tok, c_, n_ctx, opt_.offload_dir);  // the quantized model
    std::unique_ptr<Stream> f;                     // the float model, alongside
    if (paired) f = std::make_unique<Stream>(n_tok, c_, n_ctx, opt_.offload_dir);
    TensorStore& store = *result_.tensors;
    const int total = c_.n_layer + 1;
    const int start = store.resume(fingerprint());
    if (start > 0) {  // a killed run of the same job finished blocks 0 .. start-1
      restore_stats(store.resumed_extra());
      const std::string after = std::string(".") += std::to_string(start);  // streams after it
      store.load_stream("quantized" + after, q.x.data(), q.x.rows() * q.x.width());
      if (f) store.load_stream("float" + after, f->x.data(), f->x.rows() * f->x.width());
      if (progress) progress(start, total, "resumed after block " + std::to_string(start - 1));
    } else {
      embed(q.x, true);
      if (f) embed(f->x, false);
    }
    auto row0 = [n_ctx](int w) { return static_cast<size_t>(w) * n_ctx; };
    for (int l = start; l < c_.n_layer; ++l) {
      const LayerWeights& L = m_.layers[l];
      BlockWeights bw = BlockWeights::of(L);  // matrices replaced as they are quantized
      const BlockWeights bf = BlockWeights::of(L);
      std::vector<std::vector<float>> dense;  // this block's dequantized matrices
      // 1. Q/K/V from the attention norm of the block's input.
      {
        HessianAccumulator h(c_.n_embd, paired);
        for (int w = 0; w < n_win; ++w) {
          const float* xn = q.runner.attn_input(bw, q.x.row(row0(w)));
          h.add(xn, f ? f->runner.attn_input(bf, f->x.row(row0(w))) : nullptr, n_ctx);
        }
        const std::vector<const TensorInfo*> group =
            L.wqkv ? std::vector<const TensorInfo*>{L.wqkv}
                   : std::vector<const TensorInfo*>{L.wq, L.wk, L.wv};
        const float* s = awq_fold(*L.attn_norm, group, h, bw.attn_norm, dense);
        if (L.wqkv) {
          quantize(*L.wqkv, h, &bw.wqkv, dense, s);
        } else {
          quantize(*L.wq, h, &bw.wq, dense, s);
          quantize(*L.wk, h, &bw.wk, dense, s);
          quantize(*L.wv, h, &bw.wv, dense, s);
        }
      }
      // 2. O from the attention output computed with quantized Q/K/V (kept for step 3).
      {
        HessianAccumulator h(c_.q_dim(), paired);
        const size_t bytes = static_cast<size_t>(n_ctx) * c_.q_dim() * sizeof(float);
        for (int w = 0; w < n_win; ++w) {
          const float* a = q.runner.attention(bw, q.x.row(row0(w)));
          std::memcpy(q.attn.row(row0(w)), a, bytes);
          const float* af = nullptr;
          if (f) {
            af = f->runner.attention(bf, f->x.row(row0(w)));
            std::memcpy(f->attn.row(row0(w)), af, bytes);
          }
          h.add(a, af, n_ctx);
        }
        quantize(*L.wo, h, &bw.wo, dense);
      }
      // 3. gate/up from the FFN norm of the residual stream after the quantized attention.
      {
        HessianAccumulator h(c_.n_embd, paired);
        for (int w = 0; w < n_win; ++w) {
          q.runner.add_attention_output(bw, q.attn.row(row0(w)), q.x.row(row0(w)));
          const float* xn = q.runner.ffn_input(bw, q.x.row(row0(w)));
          const float* xnf = nullptr;
          if (f) {
            f->runner.add_attention_output(bf, f->attn.row(row0(w)), f->x.row(row0(w)));
            xnf = f->runner.ffn_input(bf, f->x.row(row0(w)));
          }
          h.add(xn, xnf, n_ctx);
        }
        const std::vector<const TensorInfo*> group =
            L.w_gate ? std::vector<const TensorInfo*>{L.w_gate, L.w_up}
                     : std::vector<const TensorInfo*>{L.w_up};
        const float* s = awq_fold(*L.ffn_norm, group, h, bw.ffn_norm, dense);
        if (L.w_gate) quantize(*L.w_gate, h, &bw.w_gate, dense, s);
        quantize(*L.w_up, h, &bw.w_up, dense, s);
      }
      // 4. down from the activation of the quantized gate/up; then the block's output.
      {
        HessianAccumulator h(c_.n_ff, paired);
        for (int w = 0; w < n_win; ++w) {
          const float* act = q.runner.ffn_activation(bw, q.x.row(row0(w)));
          h.add(act, f ? f->runner.ffn_activation(bf, f->x.row(row0(w))) : nullptr, n_ctx);
        }
        quantize(*L.w_down, h, &bw.w_down, dense);
        for (int w = 0; w < n_win; ++w) {
          q.runner.add_ffn_output(bw, q.x.row(row0(w)));
          if (f) f->runner.add_ffn_output(bf, f->x.row(row0(w)));
        }
      }
      flush();
      if (!store.dir().empty()) {
        // Named by the block count, so a run killed before mark_done() resumes from the
        // previous block's streams, never from ones a block ahead of state.json.
        const std::string after = std::string(".") += std::to_string(l + 1);
        store.save_stream("quantized" + after, q.x.data(), q.x.rows() * q.x.width());
        if (f) store.save_stream("float" + after, f->x.data(), f->x.rows() * f->x.width());
        store.mark_done(l + 1, stats_json());
      }
      if (progress) progress(l + 1, total, layer_summary(l));
    }
    // Output: GPTQ from the final norm's outputs, unless tied to the embedding (then a lookup
    // table too, quantized plainly with it).
    if (m_.output != m_.token_embd) {
      HessianAccumulator h(c_.n_embd, paired);
      std::vector<float> xn(static_cast<size_t>(n_ctx) * c_.n_embd), xnf;
      if (f) xnf.resize(xn.size());
      const float* norm = static_cast<const float*>(m_.output_norm->data);
      for (int w = 0; w < n_win; ++w) {
        for (int t = 0; t < n_ctx; ++t) {
          const size_t o = static_cast<size_t>(t) * c_.n_embd;
          rms_norm(q.x.row(row0(w) + t), norm, c_.n_embd, c_.norm_eps, xn.data() + o);
          if (f) rms_norm(f->x.row(row0(w) + t), norm, c_.n_embd, c_.norm_eps, xnf.data() + o);
        }
        h.add(xn.data(), f ? xnf.data() : nullptr, n_ctx);
      }
      std::vector<std::vector<float>> dense;
      quantize(*m_.output, h, nullptr, dense);
    }
    flush();
    if (progress) progress(total, total, "output");
    result_.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return std::move(result_);
  }

 private:
  // Moves this block's tensors to the store.
  void flush() {
    for (auto& [name, bytes] : pending_) result_.tensors->put(name, std::move(bytes));
    pending_.clear();
  }

  // What makes two runs the same job: model tensors, plan, calibration tokens and options.
  uint64_t fingerprint() const {
    std::string d = m_.path + "\n";
    for (const TensorInfo& t : m_.tensors()) {
      d += t.name + " " + dtype_name(t.type) + " " + shape_string(t.shape) + " " +
           std::to_string(t.nbytes) + "\n";
    }
    for (const auto& [name, type] : planned_) d += name + "=" + dtype_name(type) + "\n";
    const GptqOptions& g = opt_.gptq;
    d += fmt::format(
        "ctx {} damp {} tries {} act {} block {} refine {} corr {} awq {} grid {} gptq {}\n",
        windows_.n_ctx, g.damp, g.max_damp_tries, g.act_order, g.block_size, g.refine_sweeps,
        opt_.input_correction, opt_.awq, opt_.awq_grid, opt_.gptq_enabled);
    uint64_t h = fnv1a(d.data(), d.size());
    return fnv1a(windows_.tokens.data(), windows_.tokens.size() * sizeof(int32_t), h);
  }

  std::string stats_json() const {
    nlohmann::json j;
    j["stats"] = nlohmann::json::array();
    for (const CalibratedTensorStats& s : result_.stats) {
      j["stats"].push_back({s.name, dtype_name(s.type), s.gptq.damp_used, s.gptq.dead_columns,
                            s.gptq.proxy_error, s.gptq.rtn_error, s.gptq.refined});
    }
    j["awq"] = nlohmann::json::array();
    for (const AwqStats& a : result_.awq)
      j["awq"].push_back({a.norm, a.alpha, a.error, a.plain_error});
    return j.dump();
  }

  void restore_stats(const std::string& text) {
    const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.contains("stats")) return;
    for (const auto& e : j["stats"]) {
      CalibratedTensorStats s;
      s.name = e[0].get<std::string>();
      s.type = parse_dtype(e[1].get<std::string>()).value_or(DType::F32);
      s.gptq.damp_used = e[2].get<double>();
      s.gptq.dead_columns = e[3].get<int>();
      s.gptq.proxy_error = e[4].get<double>();
      s.gptq.rtn_error = e[5].get<double>();
      s.gptq.refined = e[6].get<int64_t>();
      result_.stats.push_back(s);
    }
    for (const auto& e : j["awq"])
      result_.awq.push_back(
          {e[0].get<std::string>(), e[1].get<double>(), e[2].get<double>(), e[3].get<double>()});
  }

  DType planned(const TensorInfo& t) const {
    auto it = planned_.find(t.name);
    if (it == planned_.end()) fail("internal: no planned type for '{}'", t.name);
    return it->second;
  }

  // Hidden states entering block 0: embedding rows as the quantized file will hold them
  // (quantized = true) or as the float model has them.
  void embed(ActivationCache& x, bool quantized) {
    const TensorInfo& te = *m_.token_embd;
    const int E = c_.n_embd;
    const DType type = planned(te);
    const QuantTraits* qt = quantized ? quant_traits(type) : nullptr;
    const size_t in_row = row_bytes(te.type, E);
    if (qt != nullptr) {  // quantized plainly, as the export would, and kept for it
      std::vector<uint8_t>& q = pending_[te.name];
      const size_t out_row = row_bytes(type, E);
      q.resize(out_row * te.rows());
#pragma omp parallel if (te.numel() > (1 << 16))
      {
        std::vector<float> row(E);
#pragma omp for schedule(static)
        for (int64_t r = 0; r < te.rows(); ++r) {
          convert_row_to_f32(te.type, static_cast<const uint8_t*>(te.data) + r * in_row, row.data(),
                             E);
          qt->quantize(row.data(), q.data() + r * out_row, E, nullptr);
        }
      }
    }
    const float scale = c_.scale_embeddings ? std::sqrt(static_cast<float>(E)) : 1.0f;
    for (size_t t = 0; t < x.rows(); ++t) {
      const int32_t tok = windows_.tokens[t];
      float* dst = x.row(t);
      if (qt != nullptr) {
        const std::vector<uint8_t>& q = pending_[te.name];
        qt->dequantize(q.data() + tok * row_bytes(type, E), dst, E);
      } else {
        convert_row_to_f32(te.type, static_cast<const uint8_t*>(te.data) + tok * in_row, dst, E);
        if (quantized) round_through(type, dst, E);
      }
      if (scale != 1.0f)
        for (int i = 0; i < E; ++i) dst[i] *= scale;
    }
  }

  // Quantizes one matrix against the accumulated statistics; points `slot` at its dequantized
  // values.
  // The matrix as floats, its columns multiplied by col_scale when given.
  static std::vector<float> load_matrix(const TensorInfo& t, const float* col_scale) {
    const int64_t rows = t.rows(), cols = t.cols();
    const size_t in_row = row_bytes(t.type, cols);
    std::vector<float> w(static_cast<size_t>(rows) * cols);
#pragma omp parallel for schedule(static) if (rows * cols > (1 << 16))
    for (int64_t r = 0; r < rows; ++r) {
      float* wr = w.data() + r * cols;
      convert_row_to_f32(t.type, static_cast<const uint8_t*>(t.data) + r * in_row, wr, cols);
      if (col_scale != nullptr)
        for (int64_t j = 0; j < cols; ++j) wr[j] *= col_scale[j];
    }
    return w;
  }

  // With AWQ: searches the scales of the matrices reading `norm`'s output, folds 1/s into the
  // norm (for the quantized stream and the export), and moves h to the scaled inputs. Returns
  // the column scales for the group's matrices, or null without AWQ.
  const float* awq_fold(const TensorInfo& norm, const std::vector<const TensorInfo*>& group,
                        HessianAccumulator& h, const float*& norm_slot,
                        std::vector<std::vector<float>>& dense) {
    if (!opt_.awq) return nullptr;
    const int64_t cols = group[0]->cols();
    std::vector<std::vector<float>> weights;
    std::vector<AwqMatrix> mats;
    for (const TensorInfo* t : group) {
      weights.push_back(load_matrix(*t, nullptr));
      mats.push_back({weights.back().data(), t->rows(), planned(*t)});
    }
    AwqResult a = awq_search(mats, cols, h.h(), opt_.awq_grid);
    result_.awq.push_back({norm.name, a.alpha, a.error, a.plain_error});
    if (a.alpha == 0.0) return nullptr;
    std::vector<float>& gamma = dense.emplace_back(cols);
    const float* g = static_cast<const float*>(norm.data);
    for (int64_t j = 0; j < cols; ++j) gamma[j] = g[j] / a.scale[j];
    norm_slot = gamma.data();
    std::vector<uint8_t>& bytes = pending_[norm.name];
    bytes.resize(cols * sizeof(float));
    std::memcpy(bytes.data(), gamma.data(), bytes.size());
    h.scale_inputs(a.scale);
    return dense.emplace_back(std::move(a.scale)).data();
  }

  void quantize(const TensorInfo& t, const HessianAccumulator& h, TensorInfo* slot,
                std::vector<std::vector<float>>& dense, const float* col_scale = nullptr) {
    const DType type = planned(t);
    const int64_t rows = t.rows(), cols = t.cols();
    std::vector<float>& wq = dense.emplace_back(static_cast<size_t>(rows) * cols);
    const std::vector<float> w = load_matrix(t, col_scale);
    if (!has_block_grid(type)) {  // float storage: only rounding, done by the export
      wq = w;
      round_through(type, wq.data(), wq.size());
      if (col_scale != nullptr) store_float(t.name, type, wq);
    } else if (!opt_.gptq_enabled) {
      plain_quantize(t, type, w, h, wq);
    } else if (h.cross() == nullptr) {
      std::vector<uint8_t>& out = pending_[t.name];
      out.resize(row_bytes(type, cols) * rows);
      const GptqStats s =
          gptq_quantize(w.data(), rows, cols, h.h(), type, opt_.gptq, out.data(), wq.data());
      result_.stats.push_back({t.name, type, s});
    } else {
      // Fit the float model's outputs from the quantized model's inputs.
      std::vector<float> target(w.size());
      input_corrected_target(w.data(), rows, cols, h.h(), h.cross(), opt_.gptq.damp, target.data());
      std::vector<uint8_t>& out = pending_[t.name];
      out.resize(row_bytes(type, cols) * rows);
      GptqOptions o = opt_.gptq;
      o.report_plain = false;
      GptqStats s = gptq_quantize(target.data(), rows, cols, h.h(), type, o, out.data(), wq.data());
      // Both errors on the real objective ||X w - X~ q||^2, the plain quantizer's from w itself.
      s.proxy_error = asymmetric_error(w.data(), wq.data(), rows, cols, h.h(), h.cross(), h.hf());
      std::vector<float> plain(w.size()), importance(cols);
      for (int64_t j = 0; j < cols; ++j) importance[j] = static_cast<float>(h.h()[j * cols + j]);
      const QuantTraits* qt = quant_traits(type);
#pragma omp parallel if (rows * cols > (1 << 16))
      {
        std::vector<uint8_t> row(row_bytes(type, cols));
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; ++r) {
          qt->quantize(w.data() + r * cols, row.data(), cols, importance.data());
          qt->dequantize(row.data(), plain.data() + r * cols, cols);
        }
      }
      s.rtn_error = asymmetric_error(w.data(), plain.data(), rows, cols, h.h(), h.cross(), h.hf());
      result_.stats.push_back({t.name, type, s});
    }
    if (slot != nullptr) BlockWeights::set_dense(*slot, wq.data());
  }

  // The importance-weighted quantizer on each row (AWQ without GPTQ), diag(H) as importance.
  void plain_quantize(const TensorInfo& t, DType type, const std::vector<float>& w,
                      const HessianAccumulator& h, std::vector<float>& wq) {
    const int64_t rows = t.rows(), cols = t.cols();
    const QuantTraits* qt = quant_traits(type);
    std::vector<float> importance(cols);
    for (int64_t j = 0; j < cols; ++j) importance[j] = static_cast<float>(h.h()[j * cols + j]);
    std::vector<uint8_t>& out = pending_[t.name];
    const size_t out_row = row_bytes(type, cols);
    out.resize(out_row * rows);
#pragma omp parallel for schedule(static) if (rows * cols > (1 << 16))
    for (int64_t r = 0; r < rows; ++r) {
      qt->quantize(w.data() + r * cols, out.data() + r * out_row, cols, importance.data());
      qt->dequantize(out.data() + r * out_row, wq.data() + r * cols, cols);
    }
    GptqStats s;
    s.proxy_error = s.rtn_error = hessian_error(w.data(), wq.data(), rows, cols, h.h());
    result_.stats.push_back({t.name, type, s});
  }

  // A scaled matrix kept in a float type: the export takes the scaled values from here.
  void store_float(const std::string& name, DType type, const std::vector<float>& w) {
    std::vector<uint8_t>& out = pending_[name];
    out.resize(row_bytes(type, static_cast<int64_t>(w.size())));
    if (type == DType::F32) {
      std::memcpy(out.data(), w.data(), out.size());
    } else {
      uint16_t* d = reinterpret_cast<uint16_t*>(out.data());
      for (size_t i = 0; i < w.size(); ++i)
        d[i] = type == DType::F16 ? fp32_to_fp16(w[i]) : fp32_to_bf16(w[i]);
    }
  }

  std::string layer_summary(int l) const {
    double e = 0, r = 0;
    const std::string prefix = "blk." + std::to_string(l) + ".";
    for (const CalibratedTensorStats& s : result_.stats) {
      if (s.name.rfind(prefix, 0) == 0) e += s.gptq.proxy_error, r += s.gptq.rtn_error;
    }
    char buf[96];
    std::snprintf(buf, sizeof(buf), "layer %d: output error %.3fx of plain quantization", l,
                  r > 0 ? e / r : 0.0);
    return buf;
  }

  const Model& m_;
  const ModelConfig& c_;
  const CalibrationWindows& windows_;
  const CalibratedQuantOptions& opt_;
  std::map<std::string, DType> planned_;
  CalibratedQuantResult result_;
  std::map<std::string, std::vector<uint8_t>> pending_;  // this block's tensors, not yet stored
};

}  // namespace

CalibratedQuantResult calibrated_quantize(const Model& model, const std::vector<TensorPlan>& plan,
                                          const CalibrationWindows& windows,
                                          const CalibratedQuantOptions& options,
                                          const CalibProgress& progress) {
  if (windows.n_windows() < 1) fail("calibration: no windows");
  for (int32_t tok : windows.tokens) {
    if (tok < 0 || tok >= model.config.n_vocab)
      fail("calibration: token id {} is outside the vocabulary", tok);
  }
  const int threads_before = omp_get_max_threads();
  if (options.n_threads > 0) omp_set_num_threads(options.n_threads);
  struct RestoreThreads {
    int n;
    ~RestoreThreads() { omp_set_num_threads(n); }
  } restore{threads_before};
  Calibrator c(model, plan, windows, options);
  return c.run(progress);
}

}  // namespace squish
