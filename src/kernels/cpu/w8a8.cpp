#include "kernels/cpu/w8a8.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "kernels/cpu/matmul.h"
#include "quant/blocks.h"

namespace squish {

namespace {

bool cpu_has_avx512_vnni() {
  static const bool vnni = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vnni") != 0;
  }();
  return vnni;
}

// Round to nearest even for |v| < 2^22 by the 1.5 * 2^23 shift (std::nearbyint is a library call
// per element without SSE4.1; this vectorizes).
inline float round_even(float v) {
  constexpr float kShift = 12582912.0f;
  return (v + kShift) - kShift;
}

// Rows of 16 per work item: enough work per item for prefill, many items for decode.
constexpr int64_t kRowsPerItem = 16;
// Up to this many tokens each thread quantizes the activations privately (w8a8_team).
constexpr int64_t kPrivateTokens = 4;

}  // namespace

bool q8_0_rows_share_scale(const void* w, int64_t rows, int64_t cols) {
  if (cols % QK8_0 != 0) return false;
  const int64_t nb = cols / QK8_0;
  const auto* blocks = static_cast<const block_q8_0*>(w);
  for (int64_t r = 0; r < rows; ++r) {
    const block_q8_0* row = blocks + r * nb;
    for (int64_t b = 1; b < nb; ++b) {
      if (row[b].d != row[0].d) return false;
    }
  }
  return true;
}

bool W8A8Weights::add(const TensorInfo& t) {
  if (t.type != DType::Q8_0 || t.shape.size() != 2 || t.data == nullptr) return false;
  if (index_.count(t.data) != 0) return true;
  const int64_t rows = t.shape[0], cols = t.shape[1];
  if (cols % QK8_0 != 0 || cols >= 65536 || !q8_0_rows_share_scale(t.data, rows, cols))
    return false;
  auto o = std::make_unique<Owned>();
  const int64_t ld = w8a8_padded(cols), nb = cols / QK8_0;
  const int64_t padded_rows = (rows + kW8A8PanelRows - 1) / kW8A8PanelRows * kW8A8PanelRows;
  o->codes.assign(static_cast<size_t>(padded_rows) * ld, 0);
  o->scale.assign(padded_rows, 0.0f);
  o->rowsum.assign(padded_rows, 0);
  const auto* blocks = static_cast<const block_q8_0*>(t.data);
#pragma omp parallel for schedule(static) if (rows * cols > (1 << 18))
  for (int64_t r = 0; r < rows; ++r) {
    const block_q8_0* row = blocks + r * nb;
    int8_t* panel = o->codes.data() + (r / kW8A8PanelRows) * kW8A8PanelRows * ld;
    const int64_t lane = (r % kW8A8PanelRows) * 4;
    int32_t sum = 0;
    for (int64_t i = 0; i < cols; ++i) {
      const int8_t q = row[i / QK8_0].qs[i % QK8_0];
      panel[(i / 4) * 64 + lane + i % 4] = q;
      sum += q;
    }
    o->scale[r] = fp16_to_fp32(row[0].d);
    o->rowsum[r] = sum;
  }
  o->m = {rows, cols, ld, o->codes.data(), o->scale.data(), o->rowsum.data()};
  bytes_ += o->codes.size() + padded_rows * (sizeof(float) + sizeof(int32_t));
  index_[t.data] = &o->m;
  owned_.push_back(std::move(o));
  return true;
}

const W8A8Matrix* W8A8Weights::find(const void* data) const {
  auto it = index_.find(data);
  return it == index_.end() ? nullptr : it->second;
}

size_t w8a8_activation_bytes(int64_t n_tokens, int64_t cols) {
  // Codes, then the scales 64-byte aligned after them.
  return static_cast<size_t>(n_tokens) * w8a8_padded(cols) + 64 + n_tokens * sizeof(float);
}

W8A8Activations w8a8_bind_activations(void* scratch, int64_t n_tokens, int64_t cols) {
  W8A8Activations a;
  a.n_tokens = n_tokens, a.cols = cols, a.ld = w8a8_padded(cols);
  a.q = static_cast<uint8_t*>(scratch);
  const size_t codes = static_cast<size_t>(n_tokens) * a.ld;
  a.scale = reinterpret_cast<float*>(a.q + (codes + 63) / 64 * 64);
  return a;
}

void w8a8_quantize_tokens(const float* x, int64_t t0, int64_t t1, const W8A8Activations& act) {
  const int64_t cols = act.cols;
  for (int64_t t = t0; t < t1; ++t) {
    const float* xt = x + t * cols;
    uint8_t* q = act.q + t * act.ld;
    float amax = 0.0f;
    for (int64_t i = 0; i < cols; ++i) amax = std::max(amax, std::fabs(xt[i]));
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    act.scale[t] = amax / 127.0f;
    for (int64_t i = 0; i < cols; ++i) {
      const float v = std::clamp(round_even(xt[i] * inv), -127.0f, 127.0f);
      q[i] = static_cast<uint8_t>(static_cast<int>(v) + 128);
    }
    std::memset(q + cols, 128, act.ld - cols);
  }
}

void w8a8_rows_reference(const W8A8Matrix& m, int64_t r0, int64_t r1, const W8A8Activations& act,
                         float* y, int64_t ldy) {
  for (int64_t t = 0; t < act.n_tokens; ++t) {
    const uint8_t* q = act.q + t * act.ld;
    for (int64_t r = r0; r < r1; ++r) {
      int32_t sum = 0;
      for (int64_t i = 0; i < m.cols; ++i) sum += (static_cast<int32_t>(q[i]) - 128) * m.code(r, i);
      y[t * ldy + r] = act.scale[t] * m.scale[r] * static_cast<float>(sum);
    }
  }
}

void w8a8_rows(const W8A8Matrix& m, int64_t r0, int64_t r1, const W8A8Activations& act, float* y,
               int64_t ldy) {
  const CpuLevel level = active_cpu_level();
  if (level == CpuLevel::AVX512 && cpu_has_avx512_vnni()) {
    kernels::w8a8_rows_avx512(m, r0, r1, act, y, ldy);
  } else if (level >= CpuLevel::AVX2) {
    kernels::w8a8_rows_avx2(m, r0, r1, act, y, ldy);
  } else {
    w8a8_rows_reference(m, r0, r1, act, y, ldy);
  }
}

void w8a8_team(const float* x, int64_t n_tokens, int64_t cols, const W8A8Matrix* const* mats,
               float* const* ys, const int64_t* ldys, int n_targets, void* act_scratch) {
  W8A8Activations act;
  if (n_tokens <= kPrivateTokens) {
    // Decode: every thread quantizes the few rows itself, which costs less than the barrier a
    // shared copy needs (on a busy machine a barrier can wait a whole scheduler time slice).
    thread_local std::vector<uint8_t> mine;
    mine.resize(w8a8_activation_bytes(n_tokens, cols));
    act = w8a8_bind_activations(mine.data(), n_tokens, cols);
    w8a8_quantize_tokens(x, 0, n_tokens, act);
  } else {
    act = w8a8_bind_activations(act_scratch, n_tokens, cols);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < n_tokens; ++t) w8a8_quantize_tokens(x, t, t + 1, act);
  }
  int64_t items[8] = {0};
  int64_t total = 0;
  for (int k = 0; k < n_targets; ++k) {
    items[k] = (mats[k]->rows + kRowsPerItem - 1) / kRowsPerItem;
    total += items[k];
  }
#pragma omp for schedule(dynamic, 4)
  for (int64_t it = 0; it < total; ++it) {
    int k = 0;
    int64_t i = it;
    while (i >= items[k]) i -= items[k++];
    const W8A8Matrix& m = *mats[k];
    const int64_t r0 = i * kRowsPerItem, r1 = std::min(m.rows, r0 + kRowsPerItem);
    w8a8_rows(m, r0, r1, act, ys[k], ldys[k]);
  }
}

void w8a8_fake_quantize_tokens(const float* x, int64_t n_tokens, int64_t cols, float* out) {
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* xt = x + t * cols;
    float* o = out + t * cols;
    float amax = 0.0f;
    for (int64_t i = 0; i < cols; ++i) amax = std::max(amax, std::fabs(xt[i]));
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f, scale = amax / 127.0f;
    for (int64_t i = 0; i < cols; ++i)
      o[i] = std::clamp(round_even(xt[i] * inv), -127.0f, 127.0f) * scale;
  }
}

void w8a8_quantize_row(const float* w, int64_t cols, void* q8_0_blocks, float* deq) {
  float amax = 0.0f;
  for (int64_t i = 0; i < cols; ++i) amax = std::max(amax, std::fabs(w[i]));
  const uint16_t d16 = fp32_to_fp16(amax / 127.0f);
  const float d = fp16_to_fp32(d16);
  const float inv = d > 0.0f ? 1.0f / d : 0.0f;
  auto* blocks = static_cast<block_q8_0*>(q8_0_blocks);
  for (int64_t b = 0; b < cols / QK8_0; ++b) {
    blocks[b].d = d16;
    for (int j = 0; j < QK8_0; ++j) {
      const int64_t i = b * QK8_0 + j;
      const float v = std::clamp(round_even(w[i] * inv), -127.0f, 127.0f);
      blocks[b].qs[j] = static_cast<int8_t>(v);
      if (deq != nullptr) deq[i] = v * d;
    }
  }
}

}  // namespace squish
