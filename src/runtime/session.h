// Inference session: the forward pass of a decoder-only transformer with a KV cache.
// Activations are F32; weights are read in their stored type by the matmul kernels.
// Prompts are processed in micro-batches (prefill, matrix-matrix products); generation feeds one
// token at a time (decode, matrix-vector products).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/gemm_int8.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/w8a8.h"
#include "model/model.h"
#include "runtime/cuda_session.h"
#include "runtime/sampler.h"

namespace squish {

// Sees the input of every weight matrix product of the forward pass (calibration: importance
// matrices, activation statistics). Off by default: the forward pass then pays one pointer test
// per product.
class MatmulObserver {
 public:
  virtual ~MatmulObserver() = default;
  // x holds n_tokens rows of weight.cols() floats: the exact input of Y = X * weight^T.
  virtual void observe(const TensorInfo& weight, const float* x, int n_tokens) = 0;
};

struct SessionOptions {
  int n_ctx = 0;      // KV cache length; 0: the model's training context, capped at 4096
  int n_threads = 0;  // 0: all cores
  int n_batch = 256;  // micro-batch for prefill
  // Pack quantized weight matrices once into the int8 GEMM's panels (kernels/cpu/gemm_int8.h)
  // where the CPU has AVX-512 VNNI: decode and prefill then read panels instead of unpacking the
  // stored blocks on every product. Costs memory of about the packed types' size again (more for
  // 5-, 6- and 8-bit codes; see GemmPackedMatrix) and a one-time packing pass.
  bool pack_weights = true;
  // Where the forward pass runs; Default: default_device() (runtime/cuda_session.h), which is
  // the CPU unless a command's --device chose CUDA.
  Device device = Device::Default;
  // W8A8 (kernels/cpu/w8a8.h): Q8_0 matrices whose rows share one scale run with per-token int8
  // activations. -1: when the file says so (GGUF key squish.w8a8 = true; SQUISH_W8A8=0|1 in the
  // environment overrides), 0: never, 1: always where the rows allow.
  int w8a8 = -1;
};

class Session {
 public:
  Session(const Model& model, const SessionOptions& options = {});

  // Runs `tokens` at positions n_past() .. n_past()+n-1 and appends them to the cache.
  // all_logits: logits holds n rows of n_vocab; otherwise only the last token's row.
  void eval(const int32_t* tokens, int n, bool all_logits, std::vector<float>& logits);
  // eval of the last row only, without a copy into the caller's vector: the row's n_vocab logits,
  // valid until the next eval of any kind. On a device session it is the pinned buffer the row
  // came back into (as llama_get_logits' is), so a decode step costs no host copy of the
  // vocabulary (128K floats for Llama 3) after the device's.
  std::span<const float> eval_last(const int32_t* tokens, int n);
  // eval, with the last row's top k candidates (logit / temperature, id; in no particular order)
  // selected on the device instead of its logits copied back: Sampler::sample_top draws from them
  // what Sampler::sample draws from the row. False, with nothing run, where the session cannot
  // (on the CPU, or k above the device's limit): then eval and sample the row.
  bool eval_top_k(const int32_t* tokens, int n, int k, float temperature,
                  std::vector<Candidate>& candidates);
  void reset() { n_past_ = 0; }
  // Drops cached positions >= n (for reusing a shared prefix).
  void truncate(int n) { n_past_ = n < n_past_ ? n : n_past_; }
  int n_past() const { return n_past_; }
  int n_ctx() const { return n_ctx_; }
  int n_threads() const { return n_threads_; }
  const Model& model() const { return model_; }
  // The accelerator running the forward pass, or null on the CPU.
  const DeviceSession* device_session() const { return device_.get(); }
  // Memory held by the packed copy of the quantized weights (SessionOptions::pack_weights).
  size_t packed_weight_bytes() const { return packed_.bytes(); }
  // Matrices running as W8A8 (per-token int8 activations), 0 when the mode is off.
  size_t w8a8_matrices() const { return w8a8_.count(); }
  // Null (the default) turns observation off; the observer must outlive its use here.
  // Calibration observes CPU products only; on a device session it is an error.
  void set_matmul_observer(MatmulObserver* observer) {
    if (observer != nullptr && device_ != nullptr) fail("matmul observers need --device cpu");
    observer_ = observer;
  }

 private:
  void check_tokens(const int32_t* tokens, int n) const;  // one-line errors
  void eval_batch(const int32_t* tokens, int n, bool all_logits, float* logits);
  void attention(int layer, int n, int pos0);
  void observe(const TensorInfo& w, const float* x, int n) {
    if (observer_ != nullptr) observer_->observe(w, x, n);
  }

  const Model& model_;
  int n_ctx_;
  int64_t kt_stride_;  // positions per row of the transposed K cache (n_ctx_ rounded up to 32)
  int n_threads_;
  int n_batch_;
  int n_past_ = 0;
  MatmulObserver* observer_ = nullptr;
  // K transposed per KV head ([layer][kv_dim][pos]: contiguous positions for the score loop),
  // V row-major ([layer][pos][kv_dim]).
  std::vector<float> k_cache_, v_cache_;
  // Scratch, sized for one micro-batch.
  std::vector<float> x_, xn_, q_, k_, v_, qkv_, attn_, tmp_, gate_, up_, scores_;
  std::vector<float> rope_cos_, rope_sin_;
  std::vector<float> last_logits_;  // eval_last's row on the CPU
  std::vector<uint8_t> scratch_;    // quantized activations, shared by the threads of a product
  GemmPackedWeights packed_;        // empty unless SessionOptions::pack_weights and the CPU allows
  std::unique_ptr<DeviceSession> device_;  // set for Device::Cuda: eval runs there
  // W8A8 copies of the per-row Q8_0 matrices, and their activation scratch.
  W8A8Weights w8a8_;
  std::vector<uint8_t> w8a8_scratch_;
  // Y_k = X W_k^T for every thread of the team: W8A8 when all targets have W8A8 copies,
  // otherwise matmul_team.
  void product(const float* x, int n, int cols, const MatmulTarget* targets, int n_targets,
               uint8_t* scratch);
  MatmulTarget target(const TensorInfo& w, float* y) const {
    return matmul_target(w, y, packed_.find(w.data));
  }
};

// Reference math shared by the runtime and tests.
void rms_norm(const float* x, const float* weight, int n, float eps, float* out);
void apply_rope(float* head, int head_dim, int n_rot, RopeStyle style, const float* cos_t,
                const float* sin_t);
void softmax_inplace(float* x, int n);

}  // namespace squish
