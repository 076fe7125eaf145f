// Where the forward pass runs. Session (runtime/session.h) is the one class every consumer uses;
// with Device::Cuda it hands its work to a DeviceSession that keeps the weights (in their GGUF
// block formats), the KV cache and the activations on the GPU (kernels/cuda, docs/cuda.md).
// CPU-only builds (no SQUISH_CUDA) still compile this interface: asking for CUDA there is a
// one-line error.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace squish {

class Model;

enum class Device { Default, Cpu, Cuda };

// True when squish was built with -DSQUISH_CUDA=ON and a CUDA device can be opened.
bool cuda_built();
bool cuda_available();
// "cpu", "cuda" or "auto" (CUDA when available); throws a one-line error for anything else, or
// for "cuda" where it is not available.
Device parse_device(const std::string& name);
const char* device_name(Device d);
// What SessionOptions::device = Default means (Cpu unless a command's --device chose otherwise).
void set_default_device(Device d);
Device default_device();
// The --device flag of run / bench / perplexity / eval: parse, then make it the default.
void select_device(const std::string& name);
// True when the default came from --device auto: a model the GPU cannot run (a weight type
// without a CUDA kernel) then runs on the CPU instead of failing.
bool default_device_is_auto();

// A forward pass on an accelerator. Positions and token ids are checked by Session.
class DeviceSession {
 public:
  virtual ~DeviceSession() = default;
  // Runs tokens at positions pos0 .. pos0+n-1 (appending them to the device KV cache); logits
  // receives n rows (all_logits) or the last row of n_vocab floats.
  virtual void eval(const int32_t* tokens, int n, int pos0, bool all_logits, float* logits) = 0;
  // eval of the last row, left in the session's own host buffer (n_vocab floats, valid until the
  // next eval) instead of copied into the caller's.
  virtual const float* eval_last(const int32_t* tokens, int n, int pos0) = 0;
  // The largest top k this session selects on the device (eval_top_k).
  virtual int max_top_k() const = 0;
  // Runs tokens as eval does, but keeps the last row of logits on the device and returns its k
  // (1 <= k <= max_top_k(), k <= n_vocab) highest-ranked logit / temperature values and their ids,
  // as runtime/sampler.h's top_candidates, in no particular order.
  virtual void eval_top_k(const int32_t* tokens, int n, int pos0, int k, float temperature,
                          float* values, int32_t* ids) = 0;
  virtual std::string description() const = 0;  // e.g. "NVIDIA H100 80GB HBM3 (sm_90)"
  virtual size_t weight_bytes() const = 0;      // weights held on the device
};

// Uploads the model's weights; throws a one-line error naming an unsupported tensor type.
std::unique_ptr<DeviceSession> make_cuda_session(const Model& model, int n_ctx, int n_batch);

}  // namespace squish

namespace squish {
// Device bandwidth measured on the current GPU (GB/s, 1e9 bytes): a kernel streaming `bytes`
// once (the roofline of a decode step, which reads every weight once) and cudaMemcpy device to
// device (bytes read + bytes written).
struct CudaBandwidth {
  double read_gbps = 0;
  double copy_gbps = 0;
};
CudaBandwidth measure_cuda_bandwidth(size_t bytes = size_t{2} << 30, int reps = 10);
}  // namespace squish
