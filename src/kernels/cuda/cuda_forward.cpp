// The forward pass on a CUDA device (DeviceSession behind Session with Device::Cuda). Weights
// are uploaded once in their stored GGUF block types; the residual stream, KV cache (F32, or F16
// with SQUISH_CUDA_KV=f16; [layer][position][kv_dim]) and scratch live on the device. Token
// embeddings are gathered on the host (one row per token) and copied up. A decode step (one token,
// last logits) is captured once as a CUDA graph and replayed, so its ~10 launches per layer cost
// one launch; the position is read from device memory, so the same graph serves every position.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "core/env.h"
#include "core/error.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/kernels.h"
#include "model/model.h"
#include "runtime/cuda_session.h"

namespace squish {

namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail("cuda: {}: {}", what, cudaGetErrorString(e));
}

// Device memory owned by one allocation.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes > 0) check(cudaMalloc(&ptr_, bytes), "cudaMalloc");
  }
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) {
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  template <class T = void>
  T* get() const {
    return static_cast<T*>(ptr_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

struct DeviceMatrix {
  const void* w = nullptr;
  DType type = DType::F32;
  int64_t rows = 0, cols = 0;
  int64_t out_offset = 0;  // first output column it writes (fused products)
};

// Products that share an input and write one output row side by side ([q | k | v],
// [gate | up]): consecutive weights of the same type are uploaded back to back and run as one
// matrix, so a decode step launches fewer, larger kernels (small products such as k and v alone
// cannot keep the GPU's memory system busy).
using FusedProduct = std::vector<DeviceMatrix>;

struct DeviceLayer {
  const float* attn_norm = nullptr;
  const float* ffn_norm = nullptr;
  const float *bq = nullptr, *bk = nullptr, *bv = nullptr;
  bool gated = false;  // gate_up is [gate | up] (otherwise up alone)
  FusedProduct qkv, gate_up;
  DeviceMatrix wo, w_down;
};

class CudaSession final : public DeviceSession {
 public:
  CudaSession(const Model& model, int n_ctx, int n_batch);
  ~CudaSession() override;
  void eval(const int32_t* tokens, int n, int pos0, bool all_logits, float* logits) override;
  const float* eval_last(const int32_t* tokens, int n, int pos0) override {
    eval(tokens, n, pos0, false, host_logits_);
    return host_logits_;
  }
  int max_top_k() const override { return kMaxTopK; }
  void eval_top_k(const int32_t* tokens, int n, int pos0, int k, float temperature, float* values,
                  int32_t* ids) override;
  std::string description() const override { return description_; }
  size_t weight_bytes() const override { return weight_bytes_; }

 private:
  const float* upload_f32(const TensorInfo& t);
  DeviceMatrix upload_matrix(const TensorInfo* t);
  FusedProduct upload_fused(std::initializer_list<const TensorInfo*> parts);
  // chunks: for one token, the attention chunks holding keys (decode_graphs_); 1 otherwise.
  void forward(int n, int first_out, int n_out, int chunks);
  // Products whose weights have an 8-bit-activation kernel read xq_/xd_, which the kernel
  // producing their input (RMSNorm, attention, gating) fills as well when one of its consumers
  // needs it: q8(consumers) gives the pointers to pass, null when none does. Their weights are
  // uploaded in the kernel's layout (cuda::repack_q8).
  bool q8_layout(DType type, int64_t cols) const {
    return use_q8_ && cuda::matmul_q8_supported(type, cols);
  }
  bool uses_q8(const DeviceMatrix& m) const { return m.w != nullptr && q8_layout(m.type, m.cols); }
  std::pair<int8_t*, float*> q8(const FusedProduct& consumers) const {
    for (const DeviceMatrix& m : consumers) {
      if (uses_q8(m)) return {xq_.get<int8_t>(), xd_.get<float>()};
    }
    return {nullptr, nullptr};
  }
  // xq/xd: the 8-bit input when it is not in xq_/xd_.
  // Whether every product of `consumers` can make its own input from x (one token, 8-bit
  // kernels, the norm-prologue fusion on): then no norm kernel runs before them.
  bool norm_in(const FusedProduct& consumers, int n) const {
    if (n != 1 || !(fusion_ & kFuseNormIn)) return false;
    for (const DeviceMatrix& m : consumers) {
      if (!uses_q8(m)) return false;
    }
    return !consumers.empty();
  }
  // With norm set: the product's input is RMSNorm(x) (matmul_q8_norm_in); x, xq, xd unused.
  void matmul(const DeviceMatrix& m, const float* x, int64_t ldx, int n, float* y, int64_t ldy,
              bool accumulate, const int8_t* xq = nullptr, const float* xd = nullptr,
              const cuda::Q8NormIn* norm = nullptr) {
    if (norm != nullptr) {
      cuda::matmul_q8_norm_in(m.type, m.w, m.rows, m.cols, *norm, y, accumulate, stream_);
    } else if (uses_q8(m)) {
      cuda::matmul_q8(m.type, m.w, m.rows, m.cols, xq != nullptr ? xq : xq_.get<int8_t>(),
                      xd != nullptr ? xd : xd_.get<float>(), n, y, ldy, accumulate, stream_);
    } else {
      cuda::matmul(m.type, m.w, m.rows, m.cols, x, ldx, n, y, ldy, accumulate, stream_);
    }
  }
  // Prefill through cuBLAS (docs/cuda.md): whether a pass of n tokens takes it (loading cuBLAS
  // and making the scratch on first use); never inside a graph capture (decode is n == 1).
  bool use_gemm(int n);
  // Converts a group of products' input to F16 once, when the pass takes the GEMM path.
  void gemm_input(bool gemm, const float* x, int64_t ldx, int n, int64_t cols) {
    if (gemm) gemm_->set_input(x, ldx, n, cols);
  }
  // One product: through cuBLAS on gemm_input's input, or the mat-vec kernels.
  void product(bool gemm, const DeviceMatrix& m, const float* x, int64_t ldx, int n, float* y,
               int64_t ldy, bool accumulate, const int8_t* xq = nullptr,
               const float* xd = nullptr) {
    if (!gemm) return matmul(m, x, ldx, n, y, ldy, accumulate, xq, xd);
    const std::string err =
        gemm_->matmul(m.type, uses_q8(m), m.w, m.rows, m.cols, y, ldy, accumulate);
    if (!err.empty()) fail("{}", err);
  }

  const Model& model_;
  const ModelConfig& c_;
  int n_ctx_, n_batch_;
  std::string description_;
  size_t weight_bytes_ = 0;
  cudaStream_t stream_ = nullptr;
  std::vector<DeviceBuffer> owned_;  // weights
  std::vector<DeviceLayer> layers_;
  const float* output_norm_ = nullptr;
  DeviceMatrix output_;
  DeviceBuffer xn_, qkv_, att_, gu_, logits_, k_cache_, v_cache_;
  // A pass's inputs, uploaded by one copy from a pinned block of the same layout (one DMA
  // launch, not three, before a decode step's graph): RoPE's cos/sin rows of the pass's positions
  // (the last nb of n_batch rows, so that they end where the position starts), the first
  // position (16 bytes), then the embeddings (n_batch rows; the residual stream after).
  DeviceBuffer inputs_;
  float* host_inputs_ = nullptr;
  size_t rope_bytes_ = 0;             // offset of the position in both blocks
  float* x_ = nullptr;                // device: the embeddings / residual stream
  int* pos_ = nullptr;                // device: the pass's first position
  const float* rope_rows_ = nullptr;  // device: the pass's RoPE rows (set by eval for forward)
  DeviceBuffer xq_, xd_;              // 8-bit activations of the current product input (use_q8_)
  // The fused gating's 8-bit output (the down product's input): a second buffer, since the gate|up
  // product still reads xq_ while its first groups are done.
  DeviceBuffer xq2_, xd2_;
  DeviceBuffer counters_;  // zeroed ints of the fused epilogues (cuda::Q8Epilogue)
  // Decode attention split over the context (contexts longer than one chunk;
  // SQUISH_CUDA_ATTN_SPLIT=0 turns it off): per head and chunk partial softmax states, and per head
  // counters (zeroed).
  DeviceBuffer attn_partials_, attn_counters_;
  cuda::AttentionSplit attn_split_;
  int64_t qkv_ld_ = 0;
  float* host_logits_ = nullptr;  // pinned: one row of logits comes back at full PCIe speed
  float* host_top_k_ = nullptr;   // pinned: eval_top_k's values and ids
  // eval_top_k: a sampler's candidates selected on the device (cuda::top_k_logits), made at the
  // first call: the kernels' scratch, then k values and k ids.
  static constexpr int kMaxTopK = 256;
  DeviceBuffer top_k_scratch_, top_k_out_;
  std::vector<float> row_;
  // Decode steps replay a captured graph, one per count of attention chunks holding keys at the
  // step's position (index 1 without the split): the split attention kernel launches only those
  // chunks' blocks, and at one chunk the kernel of one block per head, whose 16 warps take the
  // keys twice as fast as the split kernel's 8. Launching every chunk of the context cost 8 % of
  // a Llama-3-8B Q4_K_M token at 513 tokens of context against 129 (H100, docs/cuda.md).
  std::vector<cudaGraphExec_t> decode_graphs_;
  bool use_graphs_ = true;
  bool separate_uploads_ = false;  // SQUISH_CUDA_UPLOADS=3: the inputs in three copies (timing)
  bool use_q8_ = true;             // SQUISH_CUDA_Q8=0: F32 activations for every product
  // The KV cache in F32 (the CPU runtime's values exactly), or F16 with SQUISH_CUDA_KV=f16: half
  // the memory, but its decode attention measured slower (H100, Llama-3-8B Q4_K_M tg64 at 4,096
  // tokens: 267.5 against 299.9 tok/s; docs/cuda.md, fourteenth slice).
  cuda::KvType kv_type_ = cuda::KvType::F32;
  // One-token passes fuse (SQUISH_CUDA_FUSE, a bit mask): 1 RMSNorm into the residual products'
  // end, 2 the gating into gate|up's end (with 8: the persistent kernel from the norm prologue to
  // the gating, no gating kernel), 4 RoPE + KV store into attention, 8 RMSNorm into the next
  // products' prologue (each block recomputes it; 1 takes precedence), 16 with 8: [q | k] and v
  // of different types in one launch. Default 28 (4 + 8 + 16): with the one-pass prologue it
  // measured 368.9 tok/s against 333.1 for 4 on the H100 (Q4_K_M Llama-3-8B shape; Q8_0 264.1 vs
  // 262.4); the norm's serial last block (1) costs more than the kernel it saves. Kernels that
  // meet a grid barrier to make their own input (the gating inside down's, the attention at the
  // end of q|k|v's or the start of o's) measured slower than this chain (docs/cuda.md, ninth
  // slice) and were removed.
  // 32 (opt-in until measured): the gating into down's prologue (each block makes down's 8-bit
  // input from gate and up itself, as the norm prologue does; no gating kernel).
  int fusion_ = kFuseRope | kFuseNormIn | kFusePair;
  static constexpr int kFuseNorm = 1, kFuseGate = 2, kFuseRope = 4, kFuseNormIn = 8, kFusePair = 16,
                       kFuseGateIn = 32;
  // SQUISH_CUDA_SKIP (a bit mask; timing only, the outputs are meaningless): one-token passes
  // leave out these kernels, so that a decode step's time without them shows what each costs
  // inside the chain (with PDL overlap and warm caches, which ncu's kernel-by-kernel replay has
  // neither of).
  int skip_ = 0;
  static constexpr int kSkipQkv = 1, kSkipAttention = 2, kSkipO = 4, kSkipGateUp = 8,
                       kSkipGating = 16, kSkipDown = 32, kSkipOutput = 64;
  bool use_pdl_ = false;  // programmatic dependent launch (sm_90+; SQUISH_CUDA_PDL=0 turns it off)
  // Passes of at least gemm_min_ tokens run their products through cuBLAS (SQUISH_CUDA_GEMM=0
  // turns it off, SQUISH_CUDA_GEMM_MIN sets the bound, at least 2); gemm_ is made on first use
  // and stays null when cuBLAS cannot be loaded (the mat-vec kernels then).
  bool gemm_on_ = true;
  int gemm_min_ = 32;
  bool gemm_tried_ = false;
  std::unique_ptr<cuda::PrefillGemm> gemm_;
};

CudaSession::CudaSession(const Model& model, int n_ctx, int n_batch)
    : model_(model), c_(model.config), n_ctx_(n_ctx), n_batch_(n_batch) {
  const ModelConfig& c = c_;
  if (c.head_dim % 32 != 0 || c.head_dim > 256)
    fail("{}: cuda: head_dim {} is not supported (a multiple of 32 up to 256)", model.path,
         c.head_dim);
  if (c.n_embd % 32 != 0 || c.n_ff % 32 != 0)
    fail("{}: cuda: n_embd {} / n_ff {} not supported", model.path, c.n_embd, c.n_ff);
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  description_ = fmt::format("{} (sm_{}{}, {:.1f} GiB)", prop.name, prop.major, prop.minor,
                             prop.totalGlobalMem / 1073741824.0);
  check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  use_graphs_ = env_int_in("SQUISH_CUDA_GRAPHS", 0, 1, 1) != 0;
  separate_uploads_ = env_int_in("SQUISH_CUDA_UPLOADS", 3, 3, 0) == 3;
  use_q8_ = env_int_in("SQUISH_CUDA_Q8", 0, 1, 1) != 0;
  fusion_ = env_int_in("SQUISH_CUDA_FUSE", 0, 63, fusion_);
  skip_ = env_int_in("SQUISH_CUDA_SKIP", 0, 127, 0);
  if (const char* env = std::getenv("SQUISH_CUDA_KV")) {
    if (std::strcmp(env, "f16") == 0) {
      kv_type_ = cuda::KvType::F16;
    } else if (std::strcmp(env, "f32") == 0) {
      kv_type_ = cuda::KvType::F32;
    } else {
      fail("SQUISH_CUDA_KV={}: expected f16 or f32", env);
    }
  }
  gemm_on_ = env_int_in("SQUISH_CUDA_GEMM", 0, 1, 1) != 0;
  gemm_min_ = std::max(2, env_int_in("SQUISH_CUDA_GEMM_MIN", 0, 1 << 30, gemm_min_));
  use_pdl_ = prop.major >= 9 && env_int_in("SQUISH_CUDA_PDL", 0, 1, 1) != 0;
  description_ +=
      fmt::format("; {} activations, {} KV cache, fused {}, {}{}", use_q8_ ? "8-bit" : "F32",
                  kv_type_ == cuda::KvType::F16 ? "F16" : "F32", fusion_,
                  use_pdl_ ? "PDL" : "no PDL", use_graphs_ ? ", graphs" : "");
  if (gemm_on_) description_ += fmt::format(", cuBLAS prefill from {} tokens", gemm_min_);
  // Decode steps are captured into graphs, where the attention kernel's first-use queries may not
  // run.
  const bool attn_grouped =
      cuda::prepare_decode_attention(kv_type_, c_.n_head, c_.n_head_kv, c_.head_dim);
  if (skip_ != 0)
    description_ += fmt::format(
        "; SQUISH_CUDA_SKIP={}: decode skips kernels, for timing only, "
        "its outputs are meaningless",
        skip_);
  if (attn_grouped && cuda::attention_stop_stage() != 0)
    description_ += fmt::format(
        "; SQUISH_CUDA_ATTN_STOP={}: decode attention stops early, for timing only, "
        "its outputs are meaningless",
        cuda::attention_stop_stage());

  // Check every matrix before uploading anything (one line naming the tensor).
  auto check_matrix = [&](const TensorInfo* t) {
    if (t != nullptr && !cuda::matmul_supported(t->type, t->shape[1]))
      fail("{}: cuda: tensor {} of type {} with {} columns is not supported on the GPU yet",
           model.path, t->name, dtype_name(t->type), t->shape[1]);
    // The kernels index rows and a row's bytes with 32-bit integers (q8_items.h: row_view).
    constexpr int64_t kMaxDim = int64_t{1} << 28;
    if (t != nullptr && (t->shape[0] > kMaxDim || t->shape[1] > kMaxDim))
      fail("{}: cuda: tensor {} of {} x {} is too large for the GPU kernels (at most {} a side)",
           model.path, t->name, t->shape[0], t->shape[1], kMaxDim);
  };
  for (const LayerWeights& L : model.layers) {
    for (const TensorInfo* t : {L.wq, L.wk, L.wv, L.wqkv, L.wo, L.w_gate, L.w_up, L.w_down})
      check_matrix(t);
  }
  check_matrix(model.output);

  for (const LayerWeights& L : model.layers) {
    DeviceLayer d;
    d.attn_norm = upload_f32(*L.attn_norm);
    d.ffn_norm = upload_f32(*L.ffn_norm);
    if (L.bq != nullptr) {
      d.bq = upload_f32(*L.bq);
      d.bk = upload_f32(*L.bk);
      d.bv = upload_f32(*L.bv);
    }
    d.qkv = L.wqkv != nullptr ? upload_fused({L.wqkv}) : upload_fused({L.wq, L.wk, L.wv});
    d.wo = upload_matrix(L.wo);
    d.gated = L.w_gate != nullptr;
    d.gate_up = d.gated ? upload_fused({L.w_gate, L.w_up}) : upload_fused({L.w_up});
    d.w_down = upload_matrix(L.w_down);
    layers_.push_back(d);
  }
  output_norm_ = upload_f32(*model.output_norm);
  output_ = upload_matrix(model.output);

  const int64_t B = n_batch_, E = c.n_embd, Q = c.q_dim(), KV = c.kv_dim(), F = c.n_ff;
  qkv_ld_ = Q + 2 * KV;
  // The inputs block (see inputs_): 16-byte aligned parts, since the embeddings are read by
  // vector loads.
  rope_bytes_ = static_cast<size_t>(B) * c.n_rot * sizeof(float);
  rope_bytes_ = (rope_bytes_ + 15) / 16 * 16;
  const size_t input_bytes = rope_bytes_ + 16 + static_cast<size_t>(B * E) * 4;
  inputs_ = DeviceBuffer(input_bytes);
  check(cudaMallocHost(reinterpret_cast<void**>(&host_inputs_), input_bytes), "cudaMallocHost");
  pos_ = reinterpret_cast<int*>(inputs_.get<char>() + rope_bytes_);
  x_ = reinterpret_cast<float*>(inputs_.get<char>() + rope_bytes_ + 16);
  xn_ = DeviceBuffer(B * E * 4);
  qkv_ = DeviceBuffer(B * qkv_ld_ * 4);
  att_ = DeviceBuffer(B * Q * 4);
  gu_ = DeviceBuffer(B * 2 * F * 4);
  logits_ = DeviceBuffer(B * static_cast<int64_t>(c.n_vocab) * 4);
  const size_t cache = static_cast<size_t>(c.n_layer) * n_ctx_ * KV * cuda::kv_type_bytes(kv_type_);
  k_cache_ = DeviceBuffer(cache);
  v_cache_ = DeviceBuffer(cache);
  check(cudaMemset(k_cache_.get(), 0, cache), "cudaMemset");
  check(cudaMemset(v_cache_.get(), 0, cache), "cudaMemset");
  const int64_t max_cols = std::max({E, Q, F});
  xq_ = DeviceBuffer(B * max_cols);
  xd_ = DeviceBuffer(B * (max_cols / 32) * 4);
  xq2_ = DeviceBuffer(F);
  xd2_ = DeviceBuffer(F / 32 * 4);
  counters_ = DeviceBuffer((2 + F / 32) * sizeof(int));
  check(cudaMemset(counters_.get(), 0, counters_.bytes()), "cudaMemset");
  // Decode attention split over 256-key chunks for contexts longer than one chunk, unless
  // SQUISH_CUDA_ATTN_SPLIT=0 (H100, Llama-3-8B Q4_K_M tg64 at 4,096 tokens of context: 203.9 vs
  // 96.2 tok/s).
  if (env_int_in("SQUISH_CUDA_ATTN_SPLIT", 0, 1, 1) != 0 && n_ctx_ > cuda::kAttentionSplitKeys) {
    attn_split_.n_splits = (n_ctx_ + cuda::kAttentionSplitKeys - 1) / cuda::kAttentionSplitKeys;
    attn_partials_ = DeviceBuffer(static_cast<size_t>(c.n_head) * attn_split_.n_splits *
                                  (c.head_dim + 2) * sizeof(float));
    attn_counters_ = DeviceBuffer(c.n_head * sizeof(int));
    check(cudaMemset(attn_counters_.get(), 0, attn_counters_.bytes()), "cudaMemset");
    attn_split_.partials = attn_partials_.get<float>();
    attn_split_.counters = attn_counters_.get<int>();
    if (!attn_grouped)
      description_ += fmt::format(", decode attention in {}-key chunks", cuda::kAttentionSplitKeys);
  }
  if (use_q8_ && cuda::big_block_level() > 0)
    description_ += cuda::big_block_level() == 1 ? ", norm-prologue products a block per SM"
                                                 : ", decode products a block per SM";
  if (attn_grouped) {
    description_ += fmt::format(", decode attention by kv head ({}a block per {} keys)",
                                cuda::attention_one_block(c.n_head, c.n_head_kv, c.head_dim)
                                    ? "one block of 16 warps, then "
                                    : "",
                                cuda::kAttentionSplitKeys);
  }
  check(cudaMallocHost(reinterpret_cast<void**>(&host_logits_), static_cast<size_t>(c.n_vocab) * 4),
        "cudaMallocHost");
  check(cudaMallocHost(reinterpret_cast<void**>(&host_top_k_), 2 * kMaxTopK * 4), "cudaMallocHost");
  row_.resize(E);
}

CudaSession::~CudaSession() {
  gemm_.reset();  // its cuBLAS handle is bound to stream_
  for (cudaGraphExec_t g : decode_graphs_) {
    if (g != nullptr) cudaGraphExecDestroy(g);
  }
  if (host_inputs_ != nullptr) cudaFreeHost(host_inputs_);
  if (host_logits_ != nullptr) cudaFreeHost(host_logits_);
  if (host_top_k_ != nullptr) cudaFreeHost(host_top_k_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

const float* CudaSession::upload_f32(const TensorInfo& t) {
  if (t.type != DType::F32) fail("{}: cuda: {} must be F32", model_.path, t.name);
  DeviceBuffer b(t.numel() * sizeof(float));
  check(cudaMemcpy(b.get(), t.data, b.bytes(), cudaMemcpyHostToDevice), "upload");
  const float* p = b.get<float>();
  owned_.push_back(std::move(b));
  return p;
}

DeviceMatrix CudaSession::upload_matrix(const TensorInfo* t) {
  if (t == nullptr) return {};
  const size_t bytes = row_bytes(t->type, t->shape[1]) * t->shape[0];
  DeviceBuffer b(bytes);
  const void* src = t->data;
  std::vector<uint8_t> packed;
  if (q8_layout(t->type, t->shape[1])) {
    packed.resize(bytes);
    cuda::repack_q8(t->type, static_cast<const uint8_t*>(t->data), t->shape[0], t->shape[1],
                    packed.data());
    src = packed.data();
  }
  check(cudaMemcpy(b.get(), src, bytes, cudaMemcpyHostToDevice), "upload");
  weight_bytes_ += bytes;
  DeviceMatrix m{b.get(), t->type, t->shape[0], t->shape[1]};
  owned_.push_back(std::move(b));
  return m;
}

FusedProduct CudaSession::upload_fused(std::initializer_list<const TensorInfo*> parts) {
  std::vector<const TensorInfo*> ts(parts);
  FusedProduct out;
  int64_t offset = 0;
  for (size_t i = 0; i < ts.size();) {
    size_t j = i + 1;
    while (j < ts.size() && ts[j]->type == ts[i]->type && ts[j]->shape[1] == ts[i]->shape[1]) ++j;
    const size_t row = row_bytes(ts[i]->type, ts[i]->shape[1]);
    int64_t rows = 0;
    for (size_t k = i; k < j; ++k) rows += ts[k]->shape[0];
    DeviceBuffer b(row * rows);
    size_t at = 0;
    if (q8_layout(ts[i]->type, ts[i]->shape[1])) {  // regrouped as one matrix
      std::vector<uint8_t> joined(row * rows), packed(row * rows);
      for (size_t k = i; k < j; ++k) {
        std::memcpy(joined.data() + at, ts[k]->data, row * ts[k]->shape[0]);
        at += row * ts[k]->shape[0];
      }
      cuda::repack_q8(ts[i]->type, joined.data(), rows, ts[i]->shape[1], packed.data());
      check(cudaMemcpy(b.get(), packed.data(), at, cudaMemcpyHostToDevice), "upload");
    } else {
      for (size_t k = i; k < j; ++k) {
        const size_t bytes = row * ts[k]->shape[0];
        check(cudaMemcpy(b.get<uint8_t>() + at, ts[k]->data, bytes, cudaMemcpyHostToDevice),
              "upload");
        at += bytes;
      }
    }
    weight_bytes_ += at;
    out.push_back({b.get(), ts[i]->type, rows, ts[i]->shape[1], offset});
    owned_.push_back(std::move(b));
    offset += rows;
    i = j;
  }
  return out;
}

bool CudaSession::use_gemm(int n) {
  if (!gemm_on_ || n < gemm_min_ || n < 2) return false;
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  check(cudaStreamIsCapturing(stream_, &capture), "cudaStreamIsCapturing");
  if (capture != cudaStreamCaptureStatusNone) return false;
  if (!gemm_tried_) {
    gemm_tried_ = true;
    const ModelConfig& c = c_;
    std::string err;
    const int64_t max_cols = std::max<int64_t>({c.n_embd, c.q_dim(), c.n_ff});
    gemm_ = cuda::PrefillGemm::create(stream_, n_batch_, max_cols, &err);
    if (gemm_ == nullptr && !err.empty())
      std::fprintf(stderr, "%s; prefill uses the mat-vec kernels\n", err.c_str());
  }
  return gemm_ != nullptr;
}

void CudaSession::forward(int n, int first_out, int n_out, int chunks) {
  const ModelConfig& c = c_;
  const int64_t E = c.n_embd, Q = c.q_dim(), KV = c.kv_dim(), F = c.n_ff;
  float* x = x_;
  float* xn = xn_.get<float>();
  float* qkv = qkv_.get<float>();
  float* att = att_.get<float>();
  float* gu = gu_.get<float>();
  const size_t layer_cache = static_cast<size_t>(n_ctx_) * KV * cuda::kv_type_bytes(kv_type_);
  // One-token passes may fuse the norms into the residual products' ends, the gating into
  // gate|up's and RoPE + KV store into attention (fusion_): down to 5 kernels per layer from 9.
  const int fuse = n == 1 ? fusion_ : 0;
  const int skip = n == 1 ? skip_ : 0;
  bool normed = false;  // xn (and its 8-bit form) already hold the attention norm of x
  const FusedProduct output_consumers = {output_};
  // Prefill through cuBLAS: the products read F16 copies of their inputs, so the kernels making
  // those inputs skip their 8-bit forms.
  const bool gemm = use_gemm(n), gemm_out = use_gemm(n_out);
  auto q8_unless = [&](bool g, const FusedProduct& consumers) {
    return g ? std::pair<int8_t*, float*>{nullptr, nullptr} : q8(consumers);
  };
  // The first kernel follows the uploads (copies, not kernels): launched plainly.
  cuda::set_programmatic_launch(false);
  cuda::AttentionSplit split = attn_split_;  // one token: the chunks holding keys
  split.grid_chunks = chunks;
  for (int l = 0; l < c.n_layer; ++l) {
    const DeviceLayer& L = layers_[l];
    const cuda::Q8NormIn attn_in{x, L.attn_norm, c.norm_eps};
    const bool attn_norm_in = !normed && norm_in(L.qkv, n);
    if (!normed && !attn_norm_in) {
      auto [xq, xd] = q8_unless(gemm, L.qkv);
      cuda::rms_norm(x, L.attn_norm, n, static_cast<int>(E), c.norm_eps, xn, stream_, xq, xd);
    }
    cuda::set_programmatic_launch(use_pdl_);
    // [q | k] and v of different types: one launch (kFusePair), else one per product.
    const bool skip_qkv = (skip & kSkipQkv) != 0;
    const bool paired = !skip_qkv && attn_norm_in && (fuse & kFusePair) && L.qkv.size() == 2 &&
                        cuda::matmul_q8_norm_in_pair(
                            {L.qkv[0].type, L.qkv[0].w, L.qkv[0].rows, qkv + L.qkv[0].out_offset},
                            {L.qkv[1].type, L.qkv[1].w, L.qkv[1].rows, qkv + L.qkv[1].out_offset},
                            E, attn_in, false, stream_);
    if (gemm) {
      gemm_input(true, xn, E, n, E);
      for (const DeviceMatrix& m : L.qkv)
        product(true, m, xn, E, n, qkv + m.out_offset, qkv_ld_, false);
    } else if (!paired && !skip_qkv) {
      for (const DeviceMatrix& m : L.qkv)
        matmul(m, xn, E, n, qkv + m.out_offset, qkv_ld_, false, nullptr, nullptr,
               attn_norm_in ? &attn_in : nullptr);
    }
    cuda::RopeArgs ra;
    ra.q = qkv;
    ra.k = qkv + Q;
    ra.v = qkv + Q + KV;
    ra.ld = qkv_ld_;
    ra.bq = L.bq;
    ra.bk = L.bk;
    ra.bv = L.bv;
    ra.n_head = c.n_head;
    ra.n_head_kv = c.n_head_kv;
    ra.head_dim = c.head_dim;
    ra.n_rot = c.n_rot;
    ra.neox = c.rope_style == RopeStyle::Neox;
    ra.cos_sin = rope_rows_;
    ra.pos0 = pos_;
    ra.cache.k = k_cache_.get<char>() + l * layer_cache;
    ra.cache.v = v_cache_.get<char>() + l * layer_cache;
    ra.cache.type = kv_type_;
    if (!(fuse & kFuseRope)) cuda::rope_and_store(ra, n, stream_);
    const auto [att_q, att_d] = q8_unless(gemm, {L.wo});
    if (!(skip & kSkipAttention))
      cuda::attention(qkv, qkv_ld_, ra.cache, c.n_head, c.n_head_kv, c.head_dim, pos_, n, att,
                      stream_, att_q, att_d, fuse & kFuseRope ? &ra : nullptr,
                      n == 1 && chunks > 1 ? &split : nullptr);
    // Output projection + residual, then the FFN norm (or gate|up's prologue computes it).
    const cuda::Q8NormIn ffn_in{x, L.ffn_norm, c.norm_eps};
    const bool ffn_norm_in = !(fuse & kFuseNorm) && norm_in(L.gate_up, n);
    if ((fuse & kFuseNorm) && uses_q8(L.wo)) {
      cuda::Q8Epilogue e;
      e.norm_weight = L.ffn_norm;
      e.eps = c.norm_eps;
      e.norm_out = xn;
      std::tie(e.q, e.d) = q8(L.gate_up);
      e.counters = counters_.get<int>();
      cuda::matmul_q8(L.wo.type, L.wo.w, L.wo.rows, L.wo.cols, xq_.get<int8_t>(), xd_.get<float>(),
                      1, x, E, true, stream_, &e);
    } else {
      gemm_input(gemm, att, Q, n, Q);
      if (!(skip & kSkipO)) product(gemm, L.wo, att, Q, n, x, E, true);  // residual add fused
      if (!ffn_norm_in) {
        auto [xq, xd] = q8_unless(gemm, L.gate_up);
        cuda::rms_norm(x, L.ffn_norm, n, static_cast<int>(E), c.norm_eps, xn, stream_, xq, xd);
      }
    }
    // gate|up and the gating; the down product's 8-bit input lands in down_q / down_d.
    const int8_t* down_q = xq_.get<int8_t>();
    const float* down_d = xd_.get<float>();
    const bool gelu = c.activation == Activation::GeluTanh;
    // The gating in down's prologue (kFuseGateIn), where no other fusion makes down's input.
    const bool gate_in = (fuse & kFuseGateIn) && !(fuse & (kFuseGate | kFuseNorm)) && !gemm &&
                         L.gated && uses_q8(L.w_down) &&
                         cuda::matmul_q8_gate_in_supported(L.w_down.type, F);
    if ((fuse & kFuseGate) && L.gated && L.gate_up.size() == 1 && uses_q8(L.gate_up[0])) {
      const DeviceMatrix& m = L.gate_up[0];
      cuda::Q8Epilogue e;
      e.gate = true;
      e.gelu = gelu;
      if (uses_q8(L.w_down)) {
        e.q = xq2_.get<int8_t>();
        e.d = xd2_.get<float>();
        down_q = e.q;
        down_d = e.d;
      }
      e.counters = counters_.get<int>();
      if (skip & kSkipGateUp) {
        // timing only: no gate|up
      } else if (ffn_norm_in) {  // norm prologue, gate epilogue: one kernel from x to down's input
        cuda::matmul_q8_norm_in(m.type, m.w, m.rows, m.cols, ffn_in, gu, false, stream_, &e);
      } else {
        cuda::matmul_q8(m.type, m.w, m.rows, m.cols, xq_.get<int8_t>(), xd_.get<float>(), 1, gu,
                        2 * F, false, stream_, &e);
      }
    } else {
      if (gemm) {
        gemm_input(true, xn, E, n, E);
        for (const DeviceMatrix& m : L.gate_up)
          product(true, m, xn, E, n, gu + m.out_offset, 2 * F, false);
      } else if (!(skip & kSkipGateUp)) {
        for (const DeviceMatrix& m : L.gate_up)
          matmul(m, xn, E, n, gu + m.out_offset, 2 * F, false, nullptr, nullptr,
                 ffn_norm_in ? &ffn_in : nullptr);
      }
      auto [xq, xd] = q8_unless(gemm, {L.w_down});
      if (!(skip & kSkipGating) && !gate_in)
        cuda::gated_activation(gu, 2 * F, gu + F, 2 * F, n, static_cast<int>(F), gelu, stream_, xq,
                               xd);
    }
    // Down projection + residual, then the next norm (the next layer's, or the output norm).
    const bool last = l + 1 == c.n_layer;
    const float* next_norm = !last ? layers_[l + 1].attn_norm : n_out > 0 ? output_norm_ : nullptr;
    if ((fuse & kFuseNorm) && uses_q8(L.w_down) && next_norm != nullptr) {
      cuda::Q8Epilogue e;
      e.norm_weight = next_norm;
      e.eps = c.norm_eps;
      e.norm_out = xn;
      std::tie(e.q, e.d) = q8(!last ? layers_[l + 1].qkv : output_consumers);
      e.counters = counters_.get<int>();
      cuda::matmul_q8(L.w_down.type, L.w_down.w, L.w_down.rows, L.w_down.cols, down_q, down_d, 1, x,
                      E, true, stream_, &e);
      normed = true;
    } else {
      gemm_input(gemm, gu, 2 * F, n, F);
      if (skip & kSkipDown) {
        // timing only: no down
      } else if (gate_in) {
        cuda::matmul_q8_gate_in(L.w_down.type, L.w_down.w, L.w_down.rows, L.w_down.cols, gu, gu + F,
                                gelu, x, true, stream_);
      } else {
        product(gemm, L.w_down, gu, 2 * F, n, x, E, true, down_q, down_d);
      }
      normed = false;
    }
  }
  if (n_out > 0) {
    const cuda::Q8NormIn out_in{x + first_out * E, output_norm_, c.norm_eps};
    const bool out_norm_in = !normed && norm_in(output_consumers, n_out);
    if (!normed && !out_norm_in) {
      auto [xq, xd] = q8_unless(gemm_out, output_consumers);
      cuda::rms_norm(x + first_out * E, output_norm_, n_out, static_cast<int>(E), c.norm_eps, xn,
                     stream_, xq, xd);
    }
    if (gemm_out) {
      gemm_input(true, xn, E, n_out, E);
      product(true, output_, xn, E, n_out, logits_.get<float>(), c.n_vocab, false);
    } else if (!(skip & kSkipOutput)) {
      matmul(output_, xn, E, n_out, logits_.get<float>(), c.n_vocab, false, nullptr, nullptr,
             out_norm_in ? &out_in : nullptr);
    }
  }
  cuda::set_programmatic_launch(false);
}

void CudaSession::eval(const int32_t* tokens, int n, int pos0, bool all_logits, float* logits) {
  const ModelConfig& c = c_;
  const int E = c.n_embd, V = c.n_vocab;
  const TensorInfo& emb = *model_.token_embd;
  const size_t emb_stride = row_bytes(emb.type, E);
  const float emb_scale = c.scale_embeddings ? std::sqrt(static_cast<float>(E)) : 1.0f;
  if (pos0 + n > n_ctx_)
    fail("cuda: positions {}..{} exceed the context {}", pos0, pos0 + n, n_ctx_);
  for (int done = 0; done < n; done += n_batch_) {
    const int nb = std::min(n_batch_, n - done);
    const bool last = done + nb == n;
    // The inputs block's pinned twin (see inputs_): RoPE rows, position, embeddings.
    char* const host_pos = reinterpret_cast<char*>(host_inputs_) + rope_bytes_;
    float* const host_rope = reinterpret_cast<float*>(host_pos) - static_cast<size_t>(nb) * c.n_rot;
    float* const host_x = reinterpret_cast<float*>(host_pos + 16);
    for (int t = 0; t < nb; ++t) {
      float* xt = host_x + static_cast<size_t>(t) * E;
      convert_row_to_f32(
          emb.type, static_cast<const uint8_t*>(emb.data) + tokens[done + t] * emb_stride, xt, E);
      if (emb_scale != 1.0f) {
        for (int i = 0; i < E; ++i) xt[i] *= emb_scale;
      }
    }
    const int first = pos0 + done;
    std::memcpy(host_pos, &first, sizeof(int));
    const int half = c.n_rot / 2;
    for (int t = 0; t < nb; ++t) {
      float* cs = host_rope + static_cast<size_t>(t) * 2 * half;
      for (int i = 0; i < half; ++i) {
        const double angle = static_cast<double>(pos0 + done + t) * c.rope_inv_freq[i];
        cs[i] = static_cast<float>(std::cos(angle));
        cs[half + i] = static_cast<float>(std::sin(angle));
      }
    }
    const size_t from = rope_bytes_ - static_cast<size_t>(nb) * c.n_rot * 4;
    const size_t x_bytes = static_cast<size_t>(nb) * E * 4;
    char* const dev = inputs_.get<char>();
    if (!separate_uploads_) {
      check(cudaMemcpyAsync(dev + from, reinterpret_cast<char*>(host_rope),
                            rope_bytes_ - from + 16 + x_bytes, cudaMemcpyHostToDevice, stream_),
            "upload inputs");
    } else {  // timing: a copy per part, as before the block
      const char* const host = reinterpret_cast<const char*>(host_inputs_);
      for (const auto& [at, bytes] :
           {std::pair{from, rope_bytes_ - from}, std::pair{rope_bytes_ + 16, x_bytes},
            std::pair{rope_bytes_, sizeof(int)}})
        check(cudaMemcpyAsync(dev + at, host + at, bytes, cudaMemcpyHostToDevice, stream_),
              "upload inputs");
    }
    rope_rows_ = reinterpret_cast<const float*>(inputs_.get<char>() + from);
    const int n_out = all_logits ? nb : (last ? 1 : 0);
    const int first_out = all_logits ? 0 : nb - 1;
    const int chunks = nb == 1 && attn_split_.n_splits > 0
                           ? (pos0 + done) / cuda::kAttentionSplitKeys + 1  // keys 0 .. position
                           : 1;
    if (nb == 1 && n_out == 1 && use_graphs_) {
      if (decode_graphs_.size() <= static_cast<size_t>(chunks))
        decode_graphs_.resize(chunks + 1, nullptr);
      cudaGraphExec_t& exec = decode_graphs_[chunks];
      if (exec == nullptr) {
        cudaGraph_t graph = nullptr;
        check(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "graph capture");
        forward(1, 0, 1, chunks);
        check(cudaStreamEndCapture(stream_, &graph), "graph capture");
        check(cudaGraphInstantiate(&exec, graph, 0), "graph instantiate");
        cudaGraphDestroy(graph);
      }
      check(cudaGraphLaunch(exec, stream_), "graph launch");
    } else {
      forward(nb, first_out, n_out, chunks);
    }
    check(cudaGetLastError(), "kernel launch");
    // logits null (eval_top_k): the last row stays on the device.
    float* dst =
        logits == nullptr ? nullptr : logits + (all_logits ? static_cast<size_t>(done) * V : 0);
    // The last row through the pinned buffer (a pageable destination would be copied in pieces
    // through the driver's own); eval_last asks for it in place.
    const bool staged = n_out == 1 && dst != nullptr && dst != host_logits_;
    if (n_out > 0 && dst != nullptr) {
      check(cudaMemcpyAsync(staged ? host_logits_ : dst, logits_.get(),
                            static_cast<size_t>(n_out) * V * 4, cudaMemcpyDeviceToHost, stream_),
            "download logits");
    }
    check(cudaStreamSynchronize(stream_), "forward pass");
    if (staged) std::memcpy(dst, host_logits_, static_cast<size_t>(V) * 4);
  }
}

void CudaSession::eval_top_k(const int32_t* tokens, int n, int pos0, int k, float temperature,
                             float* values, int32_t* ids) {
  const int V = c_.n_vocab;
  if (k < 1 || k > kMaxTopK || k > V || !(temperature > 0.0f))
    fail("cuda: top-k {} at temperature {} cannot be selected on the device (1..{})", k,
         temperature, std::min(kMaxTopK, V));
  eval(tokens, n, pos0, false, nullptr);
  if (top_k_out_.get() == nullptr) {
    top_k_scratch_ = DeviceBuffer(cuda::top_k_scratch_bytes(V, kMaxTopK));
    top_k_out_ = DeviceBuffer(static_cast<size_t>(kMaxTopK) * 8);
  }
  float* d_values = top_k_out_.get<float>();
  int* d_ids = reinterpret_cast<int*>(d_values + kMaxTopK);
  cuda::top_k_logits(logits_.get<float>(), V, temperature, k, top_k_scratch_.get(), d_values, d_ids,
                     stream_);
  check(cudaGetLastError(), "top-k launch");
  // Values and ids in one copy into pinned memory (two copies into the caller's pageable
  // vectors went through the driver's staging).
  check(cudaMemcpyAsync(host_top_k_, d_values, 2 * kMaxTopK * 4, cudaMemcpyDeviceToHost, stream_),
        "download top-k");
  check(cudaStreamSynchronize(stream_), "top-k");
  std::memcpy(values, host_top_k_, static_cast<size_t>(k) * 4);
  std::memcpy(ids, host_top_k_ + kMaxTopK, static_cast<size_t>(k) * 4);
}

}  // namespace

bool cuda_available() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

std::unique_ptr<DeviceSession> make_cuda_session(const Model& model, int n_ctx, int n_batch) {
  if (!cuda_available()) fail("cuda: no usable CUDA device (driver or GPU missing)");
  return std::make_unique<CudaSession>(model, n_ctx, n_batch);
}

CudaBandwidth measure_cuda_bandwidth(size_t bytes, int reps) {
  bytes = bytes / 256 * 256;
  DeviceBuffer a(bytes), b(bytes), sink(sizeof(unsigned));
  check(cudaMemset(a.get(), 1, bytes), "cudaMemset");
  cudaEvent_t e0, e1;
  check(cudaEventCreate(&e0), "cudaEventCreate");
  check(cudaEventCreate(&e1), "cudaEventCreate");
  CudaBandwidth bw;
  cuda::read_buffer(a.get(), bytes, sink.get<unsigned>(), nullptr);  // warm-up
  check(cudaEventRecord(e0), "event");
  for (int r = 0; r < reps; ++r) cuda::read_buffer(a.get(), bytes, sink.get<unsigned>(), nullptr);
  check(cudaEventRecord(e1), "event");
  check(cudaEventSynchronize(e1), "read kernel");
  float ms = 0;
  cudaEventElapsedTime(&ms, e0, e1);
  bw.read_gbps = static_cast<double>(bytes) * reps / (ms * 1e-3) / 1e9;
  check(cudaMemcpy(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice), "copy");
  check(cudaEventRecord(e0), "event");
  for (int r = 0; r < reps; ++r) cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice);
  check(cudaEventRecord(e1), "event");
  check(cudaEventSynchronize(e1), "copy");
  cudaEventElapsedTime(&ms, e0, e1);
  bw.copy_gbps = 2.0 * static_cast<double>(bytes) * reps / (ms * 1e-3) / 1e9;
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return bw;
}

}  // namespace squish
