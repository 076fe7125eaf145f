#include "runtime/session.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "formats/gguf.h"
#include "kernels/cpu/activation.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/matmul.h"

namespace squish {

void rms_norm(const float* x, const float* weight, int n, float eps, float* out) {
  double ss = 0;
  for (int i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float scale = static_cast<float>(1.0 / std::sqrt(ss / n + eps));
  for (int i = 0; i < n; ++i) out[i] = x[i] * scale * weight[i];
}

void apply_rope(float* head, int /*head_dim*/, int n_rot, RopeStyle style, const float* cos_t,
                const float* sin_t) {
  const int half = n_rot / 2;
  for (int i = 0; i < half; ++i) {
    const int ia = style == RopeStyle::Neox ? i : 2 * i;
    const int ib = style == RopeStyle::Neox ? i + half : 2 * i + 1;
    const float a = head[ia], b = head[ib];
    head[ia] = a * cos_t[i] - b * sin_t[i];
    head[ib] = a * sin_t[i] + b * cos_t[i];
  }
}

void softmax_inplace(float* x, int n) {
  float mx = -INFINITY;
  for (int i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  double sum = 0;
  for (int i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int i = 0; i < n; ++i) x[i] *= inv;
}

Session::Session(const Model& model, const SessionOptions& options) : model_(model) {
  const ModelConfig& c = model.config;
  n_ctx_ = options.n_ctx > 0 ? options.n_ctx : std::min(c.n_ctx_train, 4096);
  if (n_ctx_ <= 0 || n_ctx_ > (1 << 20)) fail("context length {} is out of range", n_ctx_);
  n_threads_ = options.n_threads > 0 ? options.n_threads : omp_get_num_procs();
  n_batch_ = std::clamp(options.n_batch, 1, 4096);
  const Device device = options.device == Device::Default ? default_device() : options.device;
  if (device == Device::Cuda) {
    // Everything below (CPU caches, scratch, packed weights) lives on the device instead.
    try {
      device_ = make_cuda_session(model, n_ctx_, n_batch_);
      return;
    } catch (const Error& e) {
      // --device auto: a model the GPU cannot run yet still runs, on the CPU.
      if (options.device != Device::Default || !default_device_is_auto()) throw;
      std::fprintf(stderr, "squish: %s; running on the CPU\n", e.what());
    }
  }
  omp_set_num_threads(n_threads_);
  // Key rows padded to 32 positions: the prefill score kernel reads whole groups of 32.
  kt_stride_ = (n_ctx_ + 31) / 32 * 32;
  const size_t cache = static_cast<size_t>(c.n_layer) * kt_stride_ * c.kv_dim();
  k_cache_.assign(cache, 0.0f);
  v_cache_.assign(cache, 0.0f);
  // Query and attention rows padded to whole blocks of the prefill attention kernel.
  const size_t B =
      (n_batch_ + kAttentionQueryBlock - 1) / kAttentionQueryBlock * kAttentionQueryBlock;
  x_.resize(B * c.n_embd);
  xn_.resize(B * c.n_embd);
  tmp_.resize(B * c.n_embd);
  q_.resize(B * c.q_dim());
  k_.resize(B * c.kv_dim());
  v_.resize(B * c.kv_dim());
  attn_.resize(B * c.q_dim());
  gate_.resize(B * c.n_ff);
  up_.resize(B * c.n_ff * 2);
  if (model.layers.size() > 0 && model.layers[0].wqkv)
    qkv_.resize(B * (c.q_dim() + 2 * c.kv_dim()));
  rope_cos_.resize(B * (c.n_rot / 2));
  rope_sin_.resize(B * (c.n_rot / 2));
  // Every product runs inside the forward pass's parallel region, where nothing may throw:
  // check the weights here.
  int max_cols = std::max({c.n_embd, c.q_dim(), c.n_ff});
  for (const LayerWeights& L : model.layers) {
    for (const TensorInfo* w : {L.wq, L.wk, L.wv, L.wqkv, L.wo, L.w_gate, L.w_up, L.w_down}) {
      if (w == nullptr) continue;
      matmul_check(w->type, w->shape[1]);
      max_cols = std::max(max_cols, static_cast<int>(w->shape[1]));
    }
  }
  matmul_check(model.output->type, model.output->shape[1]);
  scratch_.resize(matmul_scratch_bytes(static_cast<int64_t>(B), max_cols));
  int w8a8 = options.w8a8;
  if (w8a8 < 0) {
    const char* env = std::getenv("SQUISH_W8A8");
    if (env != nullptr && *env != '\0') {
      w8a8 = std::atoi(env) != 0 ? 1 : 0;
    } else if (model.format == SourceFormat::GGUF) {
      w8a8 = GGUFFile::open(model.path)->get_bool("squish.w8a8").value_or(false) ? 1 : 0;
    }
  }
  if (w8a8 > 0) {
    for (const LayerWeights& L : model.layers) {
      for (const TensorInfo* w : {L.wq, L.wk, L.wv, L.wqkv, L.wo, L.w_gate, L.w_up, L.w_down}) {
        if (w != nullptr) w8a8_.add(*w);
      }
    }
    w8a8_.add(*model.output);
    if (!w8a8_.empty())
      w8a8_scratch_.resize(w8a8_activation_bytes(static_cast<int64_t>(B), max_cols));
  }
  if (options.pack_weights) {
    for (const LayerWeights& L : model.layers) {
      for (const TensorInfo* w : {L.wq, L.wk, L.wv, L.wqkv, L.wo, L.w_gate, L.w_up, L.w_down}) {
        if (w != nullptr && w8a8_.find(w->data) == nullptr)
          packed_.add(w->type, w->data, w->shape[0], w->shape[1]);
      }
    }
    if (w8a8_.find(model.output->data) == nullptr) {
      packed_.add(model.output->type, model.output->data, model.output->shape[0],
                  model.output->shape[1]);
    }
    packed_.pack();
  }
}

void Session::product(const float* x, int n, int cols, const MatmulTarget* targets, int n_targets,
                      uint8_t* scratch) {
  if (!w8a8_.empty() && n_targets <= kMaxMatmulTargets) {
    const W8A8Matrix* mats[kMaxMatmulTargets];
    float* ys[kMaxMatmulTargets];
    int64_t ldys[kMaxMatmulTargets];
    bool all = true;
    for (int k = 0; k < n_targets && all; ++k) {
      mats[k] = w8a8_.find(targets[k].w);
      ys[k] = targets[k].y, ldys[k] = targets[k].ldy;
      all = mats[k] != nullptr;
    }
    if (all) {
      w8a8_team(x, n, cols, mats, ys, ldys, n_targets, w8a8_scratch_.data());
      return;
    }
  }
  matmul_team(x, n, cols, targets, n_targets, scratch);
}

void Session::check_tokens(const int32_t* tokens, int n) const {
  const int V = model_.config.n_vocab;
  if (n <= 0) fail("eval: no tokens");
  if (n_past_ + n > n_ctx_) {
    fail("context is full: {} cached + {} new tokens exceed the context length {}", n_past_, n,
         n_ctx_);
  }
  for (int i = 0; i < n; ++i) {
    if (tokens[i] < 0 || tokens[i] >= V)
      fail("token id {} is outside the vocabulary (0..{})", tokens[i], V - 1);
  }
}

bool Session::eval_top_k(const int32_t* tokens, int n, int k, float temperature,
                         std::vector<Candidate>& candidates) {
  if (device_ == nullptr || k < 1 || k > device_->max_top_k() || k > model_.config.n_vocab ||
      !(temperature > 0.0f))
    return false;
  check_tokens(tokens, n);
  std::vector<float> values(k);
  std::vector<int32_t> ids(k);
  device_->eval_top_k(tokens, n, n_past_, k, temperature, values.data(), ids.data());
  n_past_ += n;
  candidates.resize(k);
  for (int i = 0; i < k; ++i) candidates[i] = {values[i], ids[i]};
  return true;
}

void Session::eval(const int32_t* tokens, int n, bool all_logits, std::vector<float>& logits) {
  const int V = model_.config.n_vocab;
  check_tokens(tokens, n);
  logits.resize(static_cast<size_t>(all_logits ? n : 1) * V);
  if (device_ != nullptr) {
    device_->eval(tokens, n, n_past_, all_logits, logits.data());
    n_past_ += n;
    return;
  }
  for (int done = 0; done < n; done += n_batch_) {
    const int nb = std::min(n_batch_, n - done);
    const bool last = done + nb == n;
    if (all_logits) {
      eval_batch(tokens + done, nb, true, logits.data() + static_cast<size_t>(done) * V);
    } else {
      eval_batch(tokens + done, nb, false, last ? logits.data() : nullptr);
    }
  }
}

std::span<const float> Session::eval_last(const int32_t* tokens, int n) {
  if (device_ == nullptr) {  // eval writes the CPU's row in place: no copy to save
    eval(tokens, n, false, last_logits_);
    return last_logits_;
  }
  check_tokens(tokens, n);
  const float* row = device_->eval_last(tokens, n, n_past_);
  n_past_ += n;
  return {row, static_cast<size_t>(model_.config.n_vocab)};
}

// The forward pass runs in one OpenMP parallel region per micro-batch: every thread executes the
// code below and the work is split by orphaned worksharing loops (each ends with a barrier), so a
// decoded token costs a few barriers per layer instead of a team wake-up per product.
namespace {
template <class F>
void for_tokens(int n, F&& f) {
#pragma omp for schedule(static)
  for (int t = 0; t < n; ++t) f(t);
}
}  // namespace

void Session::attention(int layer, int n, int pos0) {
  const ModelConfig& c = model_.config;
  const int D = c.head_dim, KV = c.kv_dim(), Q = c.q_dim();
  const int group = c.n_head / c.n_head_kv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  // K cache: [layer][kv head][dim][position]; V cache: [layer][position][kv_dim].
  const float* kt = k_cache_.data() + static_cast<size_t>(layer) * kt_stride_ * KV;
  const float* vc = v_cache_.data() + static_cast<size_t>(layer) * kt_stride_ * KV;
  if (n >= kAttentionQueryBlock && D % 16 == 0) {
    // Prefill: blocks of kAttentionQueryBlock queries of one head, scored against every key the
    // block's last query sees; each row then keeps only its causal prefix.
    constexpr int QB = kAttentionQueryBlock;
    const int n_blocks = (n + QB - 1) / QB;
    const int n_work = n_blocks * c.n_head;
    thread_local std::vector<float> probs;
    const int64_t ld = (pos0 + n_blocks * QB + 31) / 32 * 32;
    probs.resize(static_cast<size_t>(QB) * ld);
#pragma omp for schedule(dynamic, 1)
    for (int w = 0; w < n_work; ++w) {
      // Largest blocks first, so the dynamic schedule ends balanced.
      const int b = n_blocks - 1 - w / c.n_head, h = w % c.n_head;
      const int t0 = b * QB, kvh = h / group;
      const int n_keys = pos0 + std::min(n, t0 + QB);
      const float* qh = q_.data() + static_cast<size_t>(t0) * Q + h * D;
      const int nq = std::min(QB, n - t0);
      attention_scores_block(qh, Q, nq, kt + static_cast<size_t>(kvh) * D * kt_stride_, kt_stride_,
                             n_keys, D, scale, probs.data(), ld);
      for (int t = 0; t < nq; ++t) {
        float* row = probs.data() + t * ld;
        const int visible = std::min(n_keys, pos0 + t0 + t + 1);
        attention_softmax(row, visible);
        std::fill(row + visible, row + n_keys, 0.0f);
      }
      attention_values_block(probs.data(), ld, nq, vc + kvh * D, KV, n_keys, D,
                             attn_.data() + static_cast<size_t>(t0) * Q + h * D, Q);
    }
    return;
  }
  if (D % 16 == 0 && group <= kAttentionQueryBlock) {
    // Decode (a few tokens): the heads sharing a KV head read its keys and values once.
    const int n_work = n * c.n_head_kv;
    thread_local std::vector<float> probs;
    const int64_t ld = (pos0 + n + 31) / 32 * 32;
    probs.resize(static_cast<size_t>(group) * ld);
#pragma omp for schedule(dynamic, 1)
    for (int w = 0; w < n_work; ++w) {
      const int t = w / c.n_head_kv, kvh = w % c.n_head_kv;
      const int n_keys = pos0 + t + 1;  // causal: keys up to and including this position
      const size_t head0 = static_cast<size_t>(t) * Q + static_cast<size_t>(kvh) * group * D;
      attention_scores_block(q_.data() + head0, D, group,
                             kt + static_cast<size_t>(kvh) * D * kt_stride_, kt_stride_, n_keys, D,
                             scale, probs.data(), ld);
      for (int h = 0; h < group; ++h) attention_softmax(probs.data() + h * ld, n_keys);
      attention_values_block(probs.data(), ld, group, vc + kvh * D, KV, n_keys, D,
                             attn_.data() + head0, D);
    }
    return;
  }
  const int n_work = n * c.n_head;
  thread_local std::vector<float> scores;
  scores.resize(pos0 + n);
#pragma omp for schedule(dynamic, 1)
  for (int w = 0; w < n_work; ++w) {
    const int t = w / c.n_head, h = w % c.n_head;
    const int kvh = h / group;
    const int n_keys = pos0 + t + 1;  // causal: keys up to and including this position
    const float* qh = q_.data() + static_cast<size_t>(t) * Q + h * D;
    attention_scores(qh, kt + static_cast<size_t>(kvh) * D * kt_stride_, kt_stride_, n_keys, D,
                     scale, scores.data());
    attention_softmax(scores.data(), n_keys);
    attention_values(scores.data(), vc + kvh * D, KV, n_keys, D,
                     attn_.data() + static_cast<size_t>(t) * Q + h * D);
  }
}

void Session::eval_batch(const int32_t* tokens, int n, bool all_logits, float* logits) {
  const ModelConfig& c = model_.config;
  const int E = c.n_embd, Q = c.q_dim(), KV = c.kv_dim(), F = c.n_ff;
  const int half = c.n_rot / 2;
  const int pos0 = n_past_;

  // Embeddings.
  const TensorInfo& emb = *model_.token_embd;
  const size_t emb_stride = row_bytes(emb.type, E);
  const float emb_scale = c.scale_embeddings ? std::sqrt(static_cast<float>(E)) : 1.0f;
  for (int t = 0; t < n; ++t) {
    float* xt = x_.data() + static_cast<size_t>(t) * E;
    convert_row_to_f32(emb.type, static_cast<const uint8_t*>(emb.data) + tokens[t] * emb_stride, xt,
                       E);
    if (emb_scale != 1.0f) {
      for (int i = 0; i < E; ++i) xt[i] *= emb_scale;
    }
  }
  // RoPE tables for these positions (angles in double: positions can be large).
  for (int t = 0; t < n; ++t) {
    for (int i = 0; i < half; ++i) {
      const double angle = static_cast<double>(pos0 + t) * c.rope_inv_freq[i];
      rope_cos_[t * half + i] = static_cast<float>(std::cos(angle));
      rope_sin_[t * half + i] = static_cast<float>(std::sin(angle));
    }
  }
  uint8_t* scratch = scratch_.data();
  auto add_bias = [](float* y, const TensorInfo* b, int dim) {
    if (b == nullptr) return;
    const float* bb = static_cast<const float*>(b->data);
    for (int i = 0; i < dim; ++i) y[i] += bb[i];
  };
  auto row = [](std::vector<float>& v, int t, int dim) {
    return v.data() + static_cast<size_t>(t) * dim;
  };
  // The observer sees each product's input from one thread, before the product (which only reads
  // it); the products' closing barriers order it before any later write.
  auto observe_input = [&](const TensorInfo& w, const float* x, int rows) {
    if (observer_ != nullptr) {
#pragma omp master
      observe(w, x, rows);
    }
  };

#pragma omp parallel
  {
    for (int l = 0; l < c.n_layer; ++l) {
      const LayerWeights& L = model_.layers[l];
      const float* attn_norm = static_cast<const float*>(L.attn_norm->data);
      for_tokens(n,
                 [&](int t) { rms_norm(row(x_, t, E), attn_norm, E, c.norm_eps, row(xn_, t, E)); });
      if (L.wqkv != nullptr) {
        observe_input(*L.wqkv, xn_.data(), n);
        const MatmulTarget qkv = target(*L.wqkv, qkv_.data());
        product(xn_.data(), n, E, &qkv, 1, scratch);
      } else {
        observe_input(*L.wq, xn_.data(), n);
        observe_input(*L.wk, xn_.data(), n);
        observe_input(*L.wv, xn_.data(), n);
        const MatmulTarget qkv[3] = {target(*L.wq, q_.data()), target(*L.wk, k_.data()),
                                     target(*L.wv, v_.data())};
        product(xn_.data(), n, E, qkv, 3, scratch);
      }
      float* kc = k_cache_.data() + static_cast<size_t>(l) * kt_stride_ * KV;
      float* vc = v_cache_.data() + static_cast<size_t>(l) * kt_stride_ * KV;
      for_tokens(n, [&](int t) {
        float* qt = row(q_, t, Q);
        float* kt = row(k_, t, KV);
        float* vt = row(v_, t, KV);
        if (L.wqkv != nullptr) {
          const float* src = qkv_.data() + static_cast<size_t>(t) * (Q + 2 * KV);
          std::memcpy(qt, src, Q * sizeof(float));
          std::memcpy(kt, src + Q, KV * sizeof(float));
          std::memcpy(vt, src + Q + KV, KV * sizeof(float));
        }
        add_bias(qt, L.bq, Q);
        add_bias(kt, L.bk, KV);
        add_bias(vt, L.bv, KV);
        const float* cs = rope_cos_.data() + t * half;
        const float* sn = rope_sin_.data() + t * half;
        for (int h = 0; h < c.n_head; ++h) {
          apply_rope(qt + h * c.head_dim, c.head_dim, c.n_rot, c.rope_style, cs, sn);
        }
        for (int h = 0; h < c.n_head_kv; ++h) {
          apply_rope(kt + h * c.head_dim, c.head_dim, c.n_rot, c.rope_style, cs, sn);
        }
        for (int i = 0; i < KV; ++i) kc[static_cast<size_t>(i) * kt_stride_ + pos0 + t] = kt[i];
        std::memcpy(vc + static_cast<size_t>(pos0 + t) * KV, vt, KV * sizeof(float));
      });
      attention(l, n, pos0);
      observe_input(*L.wo, attn_.data(), n);
      const MatmulTarget wo = target(*L.wo, tmp_.data());
      product(attn_.data(), n, Q, &wo, 1, scratch);

      const float* ffn_norm = static_cast<const float*>(L.ffn_norm->data);
      for_tokens(n, [&](int t) {
        float* xt = row(x_, t, E);
        const float* tt = row(tmp_, t, E);
        for (int i = 0; i < E; ++i) xt[i] += tt[i];
        rms_norm(xt, ffn_norm, E, c.norm_eps, row(xn_, t, E));
      });
      // gate_[t*F + i] ends up holding act(gate) * up.
      if (L.w_gate != nullptr) {
        observe_input(*L.w_gate, xn_.data(), n);
        observe_input(*L.w_up, xn_.data(), n);
        const MatmulTarget gate_up[2] = {target(*L.w_gate, gate_.data()),
                                         target(*L.w_up, up_.data())};
        product(xn_.data(), n, E, gate_up, 2, scratch);
      } else {
        observe_input(*L.w_up, xn_.data(), n);
        const MatmulTarget up = target(*L.w_up, up_.data());  // [t][gate F | up F]
        product(xn_.data(), n, E, &up, 1, scratch);
      }
      for_tokens(n, [&](int t) {
        float* g = row(gate_, t, F);
        const float* u =
            L.w_gate != nullptr ? row(up_, t, F) : up_.data() + static_cast<size_t>(t) * 2 * F + F;
        if (L.w_gate == nullptr)
          std::memcpy(g, up_.data() + static_cast<size_t>(t) * 2 * F, F * sizeof(float));
        if (c.activation == Activation::SiLU) {
          silu_mul(g, u, F);
        } else {
          gelu_mul(g, u, F);
        }
      });
      observe_input(*L.w_down, gate_.data(), n);
      const MatmulTarget down = target(*L.w_down, tmp_.data());
      product(gate_.data(), n, F, &down, 1, scratch);
      for_tokens(n, [&](int t) {
        float* xt = row(x_, t, E);
        const float* tt = row(tmp_, t, E);
        for (int i = 0; i < E; ++i) xt[i] += tt[i];
      });
    }
    if (logits != nullptr) {
      const float* out_norm = static_cast<const float*>(model_.output_norm->data);
      const int first = all_logits ? 0 : n - 1;
      for_tokens(n - first, [&](int t) {
        rms_norm(row(x_, first + t, E), out_norm, E, c.norm_eps, row(xn_, t, E));
      });
      observe_input(*model_.output, xn_.data(), n - first);
      const MatmulTarget out = target(*model_.output, logits);
      product(xn_.data(), n - first, E, &out, 1, scratch);
    }
  }
  n_past_ += n;
}

}  // namespace squish
