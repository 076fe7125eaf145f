#include "calib/block_runner.h"

#include <omp.h>

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/matmul.h"
#include "runtime/session.h"

namespace squish {

namespace {

TensorInfo view_or_empty(const TensorInfo* t) {
  return t != nullptr ? *t : TensorInfo{};
}

}  // namespace

BlockWeights BlockWeights::of(const LayerWeights& L) {
  BlockWeights w;
  w.attn_norm = static_cast<const float*>(L.attn_norm->data);
  w.ffn_norm = static_cast<const float*>(L.ffn_norm->data);
  w.bq = L.bq ? static_cast<const float*>(L.bq->data) : nullptr;
  w.bk = L.bk ? static_cast<const float*>(L.bk->data) : nullptr;
  w.bv = L.bv ? static_cast<const float*>(L.bv->data) : nullptr;
  w.wq = view_or_empty(L.wq);
  w.wk = view_or_empty(L.wk);
  w.wv = view_or_empty(L.wv);
  w.wqkv = view_or_empty(L.wqkv);
  w.wo = view_or_empty(L.wo);
  w.w_gate = view_or_empty(L.w_gate);
  w.w_up = view_or_empty(L.w_up);
  w.w_down = view_or_empty(L.w_down);
  return w;
}

void BlockWeights::set_dense(TensorInfo& slot, const float* data) {
  slot.type = DType::F32;
  slot.data = data;
  slot.nbytes = static_cast<size_t>(slot.numel()) * sizeof(float);
}

BlockRunner::BlockRunner(const ModelConfig& c, int n_ctx) : c_(c), n_(n_ctx) {
  const size_t n = n_ctx;
  xn_.resize(n * c.n_embd);
  q_.resize(n * c.q_dim());
  k_.resize(n * c.kv_dim());
  v_.resize(n * c.kv_dim());
  kt_.resize(n * c.kv_dim());
  qkv_.resize(n * (c.q_dim() + 2 * c.kv_dim()));
  attn_.resize(n * c.q_dim());
  gate_.resize(n * c.n_ff);
  up_.resize(n * c.n_ff * 2);
  tmp_.resize(n * c.n_embd);
  const int half = c.n_rot / 2;
  rope_cos_.resize(n * half);
  rope_sin_.resize(n * half);
  for (int t = 0; t < n_ctx; ++t) {
    for (int i = 0; i < half; ++i) {
      const double angle = static_cast<double>(t) * c.rope_inv_freq[i];
      rope_cos_[t * half + i] = static_cast<float>(std::cos(angle));
      rope_sin_[t * half + i] = static_cast<float>(std::sin(angle));
    }
  }
}

const float* BlockRunner::attn_input(const BlockWeights& w, const float* x) {
  const int E = c_.n_embd;
  for (int t = 0; t < n_; ++t)
    rms_norm(x + static_cast<size_t>(t) * E, w.attn_norm, E, c_.norm_eps,
             xn_.data() + static_cast<size_t>(t) * E);
  return xn_.data();
}

const float* BlockRunner::attention(const BlockWeights& w, const float* x) {
  const int Q = c_.q_dim(), KV = c_.kv_dim(), D = c_.head_dim, n = n_;
  const int half = c_.n_rot / 2;
  const float* xn = attn_input(w, x);
  if (w.wqkv.data != nullptr) {
    const int R = Q + 2 * KV;
    matmul(xn, n, w.wqkv, qkv_.data());
    for (int t = 0; t < n; ++t) {
      const float* row = qkv_.data() + static_cast<size_t>(t) * R;
      std::memcpy(q_.data() + static_cast<size_t>(t) * Q, row, Q * sizeof(float));
      std::memcpy(k_.data() + static_cast<size_t>(t) * KV, row + Q, KV * sizeof(float));
      std::memcpy(v_.data() + static_cast<size_t>(t) * KV, row + Q + KV, KV * sizeof(float));
    }
  } else {
    matmul(xn, n, w.wq, q_.data());
    matmul(xn, n, w.wk, k_.data());
    matmul(xn, n, w.wv, v_.data());
  }
  auto add_bias = [n](float* y, const float* b, int dim) {
    if (b == nullptr) return;
    for (int t = 0; t < n; ++t)
      for (int i = 0; i < dim; ++i) y[static_cast<size_t>(t) * dim + i] += b[i];
  };
  add_bias(q_.data(), w.bq, Q);
  add_bias(k_.data(), w.bk, KV);
  add_bias(v_.data(), w.bv, KV);
  for (int t = 0; t < n; ++t) {
    const float* cs = rope_cos_.data() + t * half;
    const float* sn = rope_sin_.data() + t * half;
    for (int h = 0; h < c_.n_head; ++h)
      apply_rope(q_.data() + static_cast<size_t>(t) * Q + h * D, D, c_.n_rot, c_.rope_style, cs,
                 sn);
    for (int h = 0; h < c_.n_head_kv; ++h)
      apply_rope(k_.data() + static_cast<size_t>(t) * KV + h * D, D, c_.n_rot, c_.rope_style, cs,
                 sn);
    // Keys transposed ([kv dim][position]) as the score kernel reads them.
    for (int i = 0; i < KV; ++i)
      kt_[static_cast<size_t>(i) * n + t] = k_[static_cast<size_t>(t) * KV + i];
  }
  const int group = c_.n_head / c_.n_head_kv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const int n_work = n * c_.n_head;
  // Tiny windows: thread start-up and barriers cost more than the work.
#pragma omp parallel if (static_cast <int64_t>(n) * n * D * c_.n_head > (1 << 20))
  {
    std::vector<float> scores(n);
#pragma omp for schedule(dynamic, 4)
    for (int wk = 0; wk < n_work; ++wk) {
      const int t = wk / c_.n_head, h = wk % c_.n_head, kvh = h / group;
      const int n_keys = t + 1;
      const float* qh = q_.data() + static_cast<size_t>(t) * Q + h * D;
      attention_scores(qh, kt_.data() + static_cast<size_t>(kvh) * D * n, n, n_keys, D, scale,
                       scores.data());
      attention_softmax(scores.data(), n_keys);
      attention_values(scores.data(), v_.data() + kvh * D, KV, n_keys, D,
                       attn_.data() + static_cast<size_t>(t) * Q + h * D);
    }
  }
  return attn_.data();
}

void BlockRunner::add_attention_output(const BlockWeights& w, const float* attn, float* x) {
  matmul(attn, n_, w.wo, tmp_.data());
  const size_t m = static_cast<size_t>(n_) * c_.n_embd;
  for (size_t i = 0; i < m; ++i) x[i] += tmp_[i];
}

const float* BlockRunner::ffn_input(const BlockWeights& w, const float* x) {
  const int E = c_.n_embd;
  for (int t = 0; t < n_; ++t)
    rms_norm(x + static_cast<size_t>(t) * E, w.ffn_norm, E, c_.norm_eps,
             xn_.data() + static_cast<size_t>(t) * E);
  return xn_.data();
}

const float* BlockRunner::ffn_activation(const BlockWeights& w, const float* x) {
  const int F = c_.n_ff, n = n_;
  const float* xn = ffn_input(w, x);
  if (w.w_gate.data != nullptr) {
    matmul(xn, n, w.w_gate, gate_.data());
    matmul(xn, n, w.w_up, up_.data());
  } else {
    matmul(xn, n, w.w_up, up_.data());  // [t][gate F | up F]
    for (int t = 0; t < n; ++t) {
      std::memcpy(gate_.data() + static_cast<size_t>(t) * F,
                  up_.data() + static_cast<size_t>(t) * 2 * F, F * sizeof(float));
      std::memmove(up_.data() + static_cast<size_t>(t) * F,
                   up_.data() + static_cast<size_t>(t) * 2 * F + F, F * sizeof(float));
    }
  }
  const size_t nf = static_cast<size_t>(n) * F;
  if (c_.activation == Activation::SiLU) {
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
  return gate_.data();
}

void BlockRunner::add_ffn_output(const BlockWeights& w, float* x) {
  const float* act = ffn_activation(w, x);
  matmul(act, n_, w.w_down, tmp_.data());
  const size_t m = static_cast<size_t>(n_) * c_.n_embd;
  for (size_t i = 0; i < m; ++i) x[i] += tmp_[i];
}

void BlockRunner::forward(const BlockWeights& w, float* x) {
  add_attention_output(w, attention(w, x), x);
  add_ffn_output(w, x);
}

}  // namespace squish
