// One transformer block's forward pass over a calibration window, in pieces, so the layer-wise
// calibration can stop where it needs a matrix's inputs and resume with freshly quantized
// weights. The math is the runtime's (runtime/session.cpp) for a window evaluated from an empty
// cache: positions 0 .. n-1, causal attention inside the window.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"
#include "model/model.h"

namespace squish {

// The matrices one block reads. Each starts as a view of the model's tensor and may be pointed
// at a dense F32 replacement (the dequantized quantization) with set_dense().
struct BlockWeights {
  const float* attn_norm = nullptr;
  const float* ffn_norm = nullptr;
  const float *bq = nullptr, *bk = nullptr, *bv = nullptr;
  TensorInfo wq, wk, wv, wqkv, wo, w_gate, w_up, w_down;  // data == nullptr when absent

  static BlockWeights of(const LayerWeights& layer);
  // Points `slot` at rows x cols floats.
  static void set_dense(TensorInfo& slot, const float* data);
};

class BlockRunner {
 public:
  BlockRunner(const ModelConfig& config, int n_ctx);

  // Every call works on one window of n_ctx tokens; x is n_ctx x n_embd hidden states.
  // attn_norm(x): the input of Wq/Wk/Wv (n_ctx x n_embd).
  const float* attn_input(const BlockWeights& w, const float* x);
  // The attention output, input of Wo (n_ctx x q_dim).
  const float* attention(const BlockWeights& w, const float* x);
  // x += attn Wo^T.
  void add_attention_output(const BlockWeights& w, const float* attn, float* x);
  // ffn_norm(x): the input of gate/up (n_ctx x n_embd).
  const float* ffn_input(const BlockWeights& w, const float* x);
  // act(gate) * up: the input of Wdown (n_ctx x n_ff).
  const float* ffn_activation(const BlockWeights& w, const float* x);
  // x += ffn(x) (recomputes the activation).
  void add_ffn_output(const BlockWeights& w, float* x);
  // The whole block.
  void forward(const BlockWeights& w, float* x);

 private:
  const ModelConfig& c_;
  int n_;
  std::vector<float> xn_, q_, k_, v_, kt_, qkv_, attn_, gate_, up_, tmp_, rope_cos_, rope_sin_;
};

}  // namespace squish
