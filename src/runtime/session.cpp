#include "runtime/session.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
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
}

void Session::eval(const int32_t* tokens, int n, bool all_logits, std::vector<float>& logits) {
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
  logits.resize(static_cast<size_t>(all_logits ? n : 1) * V);
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
#pragma omp parallel
    {
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
        attention_scores_block(qh, Q, kt + static_cast<size_t>(kvh) * D * kt_stride_, kt_stride_,
                               n_keys, D, scale, probs.data(), ld);
        for (int t = 0; t < QB; ++t) {
          float* row = probs.data() + t * ld;
          const int visible = std::min(n_keys, pos0 + t0 + t + 1);
          attention_softmax(row, visible);
          std::fill(row + visible, row + n_keys, 0.0f);
        }
        attention_values_block(probs.data(), ld, vc + kvh * D, KV, n_keys, D,
                               attn_.data() + static_cast<size_t>(t0) * Q + h * D, Q);
      }
    }
    return;
  }
  const int n_work = n * c.n_head;
#pragma omp parallel
  {
    std::vector<float> scores(pos0 + n);
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
}

void Session::eval_batch(const int32_t* tokens, int n, bool all_logits, float* logits) {
  const ModelConfig& c = model_.config;
  const int E = c.n_embd, Q = c.q_dim(), KV = c.kv_dim(), F = c.n_ff, V = c.n_vocab;
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

  for (int l = 0; l < c.n_layer; ++l) {
    const LayerWeights& L = model_.layers[l];
    const float* attn_norm = static_cast<const float*>(L.attn_norm->data);
    for (int t = 0; t < n; ++t) {
      rms_norm(x_.data() + static_cast<size_t>(t) * E, attn_norm, E, c.norm_eps,
               xn_.data() + static_cast<size_t>(t) * E);
    }
    if (L.wqkv != nullptr) {
      const int R = Q + 2 * KV;
      observe(*L.wqkv, xn_.data(), n);
      matmul(xn_.data(), n, *L.wqkv, qkv_.data());
      for (int t = 0; t < n; ++t) {
        const float* row = qkv_.data() + static_cast<size_t>(t) * R;
        std::memcpy(q_.data() + static_cast<size_t>(t) * Q, row, Q * sizeof(float));
        std::memcpy(k_.data() + static_cast<size_t>(t) * KV, row + Q, KV * sizeof(float));
        std::memcpy(v_.data() + static_cast<size_t>(t) * KV, row + Q + KV, KV * sizeof(float));
      }
    } else {
      observe(*L.wq, xn_.data(), n);
      observe(*L.wk, xn_.data(), n);
      observe(*L.wv, xn_.data(), n);
      matmul(xn_.data(), n, *L.wq, q_.data());
      matmul(xn_.data(), n, *L.wk, k_.data());
      matmul(xn_.data(), n, *L.wv, v_.data());
    }
    auto add_bias = [n](float* y, const TensorInfo* b, int dim) {
      if (b == nullptr) return;
      const float* bb = static_cast<const float*>(b->data);
      for (int t = 0; t < n; ++t)
        for (int i = 0; i < dim; ++i) y[static_cast<size_t>(t) * dim + i] += bb[i];
    };
    add_bias(q_.data(), L.bq, Q);
    add_bias(k_.data(), L.bk, KV);
    add_bias(v_.data(), L.bv, KV);

    float* kc = k_cache_.data() + static_cast<size_t>(l) * kt_stride_ * KV;
    float* vc = v_cache_.data() + static_cast<size_t>(l) * kt_stride_ * KV;
    for (int t = 0; t < n; ++t) {
      const float* cs = rope_cos_.data() + t * half;
      const float* sn = rope_sin_.data() + t * half;
      for (int h = 0; h < c.n_head; ++h) {
        apply_rope(q_.data() + static_cast<size_t>(t) * Q + h * c.head_dim, c.head_dim, c.n_rot,
                   c.rope_style, cs, sn);
      }
      for (int h = 0; h < c.n_head_kv; ++h) {
        apply_rope(k_.data() + static_cast<size_t>(t) * KV + h * c.head_dim, c.head_dim, c.n_rot,
                   c.rope_style, cs, sn);
      }
      const float* kt_src = k_.data() + static_cast<size_t>(t) * KV;
      for (int i = 0; i < KV; ++i) kc[static_cast<size_t>(i) * kt_stride_ + pos0 + t] = kt_src[i];
      std::memcpy(vc + static_cast<size_t>(pos0 + t) * KV, v_.data() + static_cast<size_t>(t) * KV,
                  KV * sizeof(float));
    }
    attention(l, n, pos0);
    observe(*L.wo, attn_.data(), n);
    matmul(attn_.data(), n, *L.wo, tmp_.data());
    for (size_t i = 0; i < static_cast<size_t>(n) * E; ++i) x_[i] += tmp_[i];

    const float* ffn_norm = static_cast<const float*>(L.ffn_norm->data);
    for (int t = 0; t < n; ++t) {
      rms_norm(x_.data() + static_cast<size_t>(t) * E, ffn_norm, E, c.norm_eps,
               xn_.data() + static_cast<size_t>(t) * E);
    }
    // gate_[t*F + i] ends up holding act(gate) * up.
    if (L.w_gate != nullptr) {
      observe(*L.w_gate, xn_.data(), n);
      observe(*L.w_up, xn_.data(), n);
      matmul(xn_.data(), n, *L.w_gate, gate_.data());
      matmul(xn_.data(), n, *L.w_up, up_.data());
    } else {
      observe(*L.w_up, xn_.data(), n);
      matmul(xn_.data(), n, *L.w_up, up_.data());  // [t][gate F | up F]
      for (int t = 0; t < n; ++t) {
        std::memcpy(gate_.data() + static_cast<size_t>(t) * F,
                    up_.data() + static_cast<size_t>(t) * 2 * F, F * sizeof(float));
        std::memmove(up_.data() + static_cast<size_t>(t) * F,
                     up_.data() + static_cast<size_t>(t) * 2 * F + F, F * sizeof(float));
      }
    }
    const size_t nf = static_cast<size_t>(n) * F;
    if (c.activation == Activation::SiLU) {
      for (size_t i = 0; i < nf; ++i) {
        const float g = gate_[i];
        gate_[i] = g / (1.0f + std::exp(-g)) * up_[i];
      }
    } else {
      const float k0 = 0.7978845608028654f;  // sqrt(2/pi)
      for (size_t i = 0; i < nf; ++i) {
        const float g = gate_[i];
        gate_[i] = 0.5f * g * (1.0f + std::tanh(k0 * (g + 0.044715f * g * g * g))) * up_[i];
      }
    }
    observe(*L.w_down, gate_.data(), n);
    matmul(gate_.data(), n, *L.w_down, tmp_.data());
    for (size_t i = 0; i < static_cast<size_t>(n) * E; ++i) x_[i] += tmp_[i];
  }
  n_past_ += n;
  if (logits == nullptr) return;

  const float* out_norm = static_cast<const float*>(model_.output_norm->data);
  const int first = all_logits ? 0 : n - 1;
  for (int t = first; t < n; ++t) {
    rms_norm(x_.data() + static_cast<size_t>(t) * E, out_norm, E, c.norm_eps,
             xn_.data() + static_cast<size_t>(t - first) * E);
  }
  observe(*model_.output, xn_.data(), n - first);
  matmul(xn_.data(), n - first, *model_.output, logits);
  (void)V;
}

}  // namespace squish
