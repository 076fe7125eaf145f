// The decoder stack of one decode step in one persistent kernel (decode_stack.h). Per layer, six
// phases, each entered through a grid barrier:
//   1. [q | k | v] of RMSNorm(x) (decode_body with its norm prologue; two weight types: the grid
//      split between them by weight bytes),
//   2. attention: RoPE of q and of the new k in registers, the new k and v stored at the
//      position, and (head, chunk of keys) items over all warps, merged per head by the warp that
//      finishes last (flash-decoding); the output in 8-bit form for o,
//   3. x += o(attention),
//   4. [gate | up] of RMSNorm(x), each warp ending a (gate, up) row pair with act(gate) * up,
//   5. that row quantized to 8 bits (per 32, as quantize_activations_q8),
//   6. x += down(it).
// Everything one phase reads that another block wrote in this launch is read through L2 (__ldcg,
// or copied into shared memory by decode_body's kCopyIn prologue): L1 is not coherent across SMs.
#include "kernels/cuda/decode_stack.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>

#include "kernels/cuda/decode_body.cuh"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/phases.cuh"
#include "kernels/cuda/q8_items.h"
#include "kernels/cuda/schedule.h"

namespace squish::cuda {

namespace {

using namespace decode;

constexpr int kSetK = 0, kSetQ80 = 1;  // DecodeStack::type_set_

struct Product {
  View v;
  int64_t rows;
  DType type;
};

struct LayerRecord {
  Product qkv[2], o, gate_up, down;
  int split;  // two q|k|v products: blocks [0, split) run qkv[0], the others qkv[1]
  const float *attn_norm, *ffn_norm, *bq, *bk, *bv;
  float *k_cache, *v_cache;
};

struct KernelArgs {
  const LayerRecord* layers;
  int n_layer;
  int64_t n_embd, n_ff;
  int gelu;
  float eps;
  float* x;
  float* qkv;              // attn.qkv, written by the q|k|v phase
  DecodeAttentionIn attn;  // all but the layer's biases and caches, which each layer sets
  float* gu;
  int8_t* gu_q;
  float* gu_d;
  unsigned* barrier;  // arrivals at [0], the generation kGenerationWord words on (own line)
  int skip;           // measurement only (SQUISH_CUDA_STACK_SKIP): phases that only meet
};

// Calls f with Q4K or Q6K (kSetK) or Q80 for a matrix's type.
template <int kSet, class F>
__device__ __forceinline__ void with_type(DType type, F&& f) {
  if constexpr (kSet == kSetK) {
    if (type == DType::Q6_K) {
      f(Q6K{});
    } else {
      f(Q4K{});
    }
  } else {
    f(Q80{});
  }
}

// One product over blocks [0, blocks) of the caller's range (`block` relative to it); blocks past
// the balanced count only meet the barrier.
template <class T, bool kNormIn, bool kGateOut, bool kCopyIn>
__device__ __forceinline__ void product_phase(const MvArgs& a, int block, int blocks,
                                              GridBarrier bar) {
  constexpr int R = kGateOut ? 2 : T::kPersistentRows;
  const int groups = static_cast<int>(kGateOut ? a.pair : (a.rows + R - 1) / R);
  const int used = static_cast<int>(balanced_blocks(groups, blocks, kWarps));
  if (block < used) {
    decode_body<T, R, kNormIn, kGateOut, kCopyIn>(a, block, used, bar);
  } else {
    bar();
  }
}

// The same as a function of its own (kInlinePhases false, the default): its registers are
// allocated for it alone, but a call saves and restores the caller's registers it uses, 300-600
// bytes of local memory per thread and phase (ptxas), about 27 MB per phase over the grid.
// Measured on the H100 with these calls, the stack's products ran at about half the speed of the
// kernel chain's (docs/cuda.md, eighth slice). Inlined (SQUISH_CUDA_STACK_INLINE=1), ptxas
// reports 3.4 KB of spill stores across the whole kernel instead, whose cost is not measured yet.
template <class T, bool kNormIn, bool kGateOut, bool kCopyIn>
__device__ __noinline__ void product_phase_call(const MvArgs& args, int block, int blocks,
                                                GridBarrier bar) {
  const MvArgs a = args;
  product_phase<T, kNormIn, kGateOut, kCopyIn>(a, block, blocks, bar);
}

// The attention phase as a function of its own, with registers allocated for it alone.
template <int kPer>
__device__ __noinline__ void attention_phase_call(const DecodeAttentionIn& p, GridBarrier bar) {
  attention_phase<kPer>(p, bar);
}

__device__ __forceinline__ MvArgs product_args(const Product& p, int64_t cols, float* y) {
  MvArgs a = {};
  a.v = p.v;
  a.rows = p.rows;
  a.cols = cols;
  a.y = y;
  a.ldy = p.rows;
  return a;
}

template <int kSet, int kPer, int kMinBlocks, bool kInlinePhases>
__global__ void __launch_bounds__(kWarp* kWarps, kMinBlocks)
    decode_stack_kernel(const KernelArgs s) {
  auto product = [&](auto t, auto norm_in, auto gate_out, auto copy_in, const MvArgs& a, int block,
                     int blocks, GridBarrier bar) {
    using T = decltype(t);
    if constexpr (kInlinePhases) {
      product_phase<T, norm_in.value, gate_out.value, copy_in.value>(a, block, blocks, bar);
    } else {
      product_phase_call<T, norm_in.value, gate_out.value, copy_in.value>(a, block, blocks, bar);
    }
  };
  using Yes = std::true_type;
  using No = std::false_type;
  const GridBarrier bar{s.barrier};
  const int block = static_cast<int>(blockIdx.x), blocks = static_cast<int>(gridDim.x);
  const int64_t E = s.n_embd, Qd = static_cast<int64_t>(s.attn.n_head) * kPer * kWarp;
  for (int layer = 0; layer < s.n_layer; ++layer) {
    const LayerRecord& L = s.layers[layer];
    // 1. [q | k | v] of RMSNorm(x).
    if (s.skip & 1) {
      bar();
    } else {
      const bool two = L.qkv[1].rows > 0;
      const bool second = two && block >= L.split;
      const Product& p = L.qkv[second ? 1 : 0];
      MvArgs a = product_args(p, E, s.qkv + (second ? L.qkv[0].rows : 0));
      a.norm_x = s.x;
      a.norm_weight = L.attn_norm;
      a.eps = s.eps;
      const int first = second ? L.split : 0;
      const int count = !two ? blocks : second ? blocks - L.split : L.split;
      with_type<kSet>(p.type,
                      [&](auto t) { product(t, Yes{}, No{}, No{}, a, block - first, count, bar); });
    }
    // 2. Attention.
    if (s.skip & 2) {
      bar();
    } else {
      DecodeAttentionIn p = s.attn;
      p.bq = L.bq;
      p.bk = L.bk;
      p.bv = L.bv;
      p.k_cache = L.k_cache;
      p.v_cache = L.v_cache;
      attention_phase_call<kPer>(p, bar);
    }
    // 3. x += o(attention).
    if (s.skip & 4) {
      bar();
    } else {
      MvArgs a = product_args(L.o, Qd, s.x);
      a.xq = s.attn.q;
      a.xd = s.attn.d;
      a.accumulate = 1;
      with_type<kSet>(L.o.type,
                      [&](auto t) { product(t, No{}, No{}, Yes{}, a, block, blocks, bar); });
    }
    // 4. act(gate) * up of RMSNorm(x).
    if (s.skip & 8) {
      bar();
    } else {
      MvArgs a = product_args(L.gate_up, E, s.gu);
      a.pair = s.n_ff;
      a.gelu = s.gelu;
      a.norm_x = s.x;
      a.norm_weight = L.ffn_norm;
      a.eps = s.eps;
      with_type<kSet>(L.gate_up.type,
                      [&](auto t) { product(t, Yes{}, Yes{}, No{}, a, block, blocks, bar); });
    }
    // 5. Its 8-bit form.
    if (s.skip & 16) {
      bar();
    } else {
      bar();
      DecodeGatingIn g;
      g.gate = s.gu;
      g.n = s.n_ff;
      g.q = s.gu_q;
      g.d = s.gu_d;
      gating_phase(g);
    }
    // 6. x += down(...).
    if (s.skip & 32) {
      bar();
    } else {
      MvArgs a = product_args(L.down, s.n_ff, s.x);
      a.xq = s.gu_q;
      a.xd = s.gu_d;
      a.accumulate = 1;
      with_type<kSet>(L.down.type,
                      [&](auto t) { product(t, No{}, No{}, Yes{}, a, block, blocks, bar); });
    }
  }
}

// The kernel for a type set and head size, and its register cap (blocks per SM): as the
// persistent decode kernels of the types (Q6_K: 4, Q8_0 with two rows in gate|up: 6).
template <int kSet, int kPer>
auto stack_kernel(bool inline_phases) {
  constexpr int kMin = kSet == kSetK ? 4 : 6;
  return inline_phases ? decode_stack_kernel<kSet, kPer, kMin, true>
                       : decode_stack_kernel<kSet, kPer, kMin, false>;
}

size_t align256(size_t n) {
  return (n + 255) / 256 * 256;
}

// The kernel's scratch, each piece 256-byte aligned: returns its size; with base and a set, it
// also puts the pieces' addresses in a.
size_t scratch_layout(const StackShape& c, int max_chunks, uint8_t* base, KernelArgs* a) {
  const size_t Q = static_cast<size_t>(c.n_head) * c.head_dim, F = c.n_ff;
  size_t at = 0;
  auto take = [&](size_t bytes) {
    uint8_t* p = base != nullptr ? base + at : nullptr;
    at += align256(bytes);
    return p;
  };
  uint8_t* barrier = take(2 * kGenerationWord * sizeof(unsigned));
  uint8_t* counters = take(c.n_head * sizeof(int));
  uint8_t* partials = take(static_cast<size_t>(c.n_head) * max_chunks * (c.head_dim + 2) * 4);
  uint8_t* att_q = take(Q);
  uint8_t* att_d = take(Q / 32 * 4);
  uint8_t* gu = take(F * 4);
  uint8_t* gu_q = take(F);
  uint8_t* gu_d = take(F / 32 * 4);
  if (a != nullptr) {
    a->barrier = reinterpret_cast<unsigned*>(barrier);
    a->attn.counters = reinterpret_cast<int*>(counters);
    a->attn.partials = reinterpret_cast<float*>(partials);
    a->attn.q = reinterpret_cast<int8_t*>(att_q);
    a->attn.d = reinterpret_cast<float*>(att_d);
    a->gu = reinterpret_cast<float*>(gu);
    a->gu_q = reinterpret_cast<int8_t*>(gu_q);
    a->gu_d = reinterpret_cast<float*>(gu_d);
  }
  return at;
}

// Why the stack kernel cannot run this model (empty: it can).
std::string unsupported(const StackShape& c, const std::vector<StackLayer>& layers) {
  const int64_t Q = static_cast<int64_t>(c.n_head) * c.head_dim;
  const int64_t KV = static_cast<int64_t>(c.n_head_kv) * c.head_dim;
  if (layers.empty()) return "no layers";
  if (c.head_dim != 64 && c.head_dim != 128 && c.head_dim != 256)
    return "head_dim " + std::to_string(c.head_dim) + " (64, 128 or 256)";
  if (c.n_head_kv <= 0 || c.n_head % c.n_head_kv != 0)
    return std::to_string(c.n_head) + " heads over " + std::to_string(c.n_head_kv) + " kv heads";
  if (c.n_rot % 2 != 0 || c.n_rot > c.head_dim || (c.neox && c.n_rot != c.head_dim))
    return "RoPE over " + std::to_string(c.n_rot) + " of " + std::to_string(c.head_dim) +
           " dimensions";
  // kCopyIn copies codes and scales in 16-byte pieces: inputs a multiple of 128 wide.
  if (c.n_embd % 128 != 0 || c.n_ff % 128 != 0 || Q % 128 != 0)
    return "widths " + std::to_string(c.n_embd) + " / " + std::to_string(c.n_ff) + " / " +
           std::to_string(Q);
  const int set = layers[0].o.type == DType::Q8_0 ? kSetQ80 : kSetK;
  auto in_set = [&](DType t) {
    return set == kSetK ? t == DType::Q4_K || t == DType::Q6_K : t == DType::Q8_0;
  };
  for (const StackLayer& l : layers) {
    const StackMatrix* ms[] = {&l.qkv[0], &l.o, &l.gate_up, &l.down};
    for (const StackMatrix* m : ms) {
      if (!in_set(m->type) || m->w == nullptr ||
          !matmul_q8_supported(m->type, m == &l.o      ? Q
                                        : m == &l.down ? c.n_ff
                                                       : c.n_embd))
        return std::string("weight type ") + dtype_name(m->type) + " with " +
               (set == kSetK ? "Q4_K/Q6_K" : "Q8_0");
    }
    if (l.qkv[1].rows > 0 && (!in_set(l.qkv[1].type) || l.qkv[1].type == l.qkv[0].type))
      return "q|k|v split";
    if (l.qkv[0].rows + l.qkv[1].rows != Q + 2 * KV || l.o.rows != c.n_embd ||
        l.gate_up.rows != 2 * c.n_ff || l.down.rows != c.n_embd)
      return "matrix shapes";
  }
  return "";
}

}  // namespace

DecodeStack::DecodeStack(const StackShape& shape, const std::vector<StackLayer>& layers)
    : shape_(shape), n_layer_(static_cast<int>(layers.size())) {
  why_not_ = unsupported(shape, layers);
  if (!why_not_.empty()) return;
  const StackShape& c = shape;
  const int64_t Q = static_cast<int64_t>(c.n_head) * c.head_dim;
  type_set_ = layers[0].o.type == DType::Q8_0 ? kSetQ80 : kSetK;
  const char* inlined = std::getenv("SQUISH_CUDA_STACK_INLINE");  // see product_phase_call
  inline_phases_ = inlined != nullptr && std::strcmp(inlined, "1") == 0;
  bool sized = with_head_size(c.head_dim, [&](auto per) {
    auto kernel = type_set_ == kSetK ? stack_kernel<kSetK, decltype(per)::value>(inline_phases_)
                                     : stack_kernel<kSetQ80, decltype(per)::value>(inline_phases_);
    smem_ = input_smem_bytes(std::max(c.n_embd, c.n_ff));
    int per_sm = 0, dev = 0, sms = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kWarp * kWarps, smem_) !=
            cudaSuccess ||
        cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
      per_sm = 0;
    blocks_ = per_sm * sms;
  });
  if (!sized || blocks_ < 2) {
    why_not_ = "no occupancy";
    return;
  }
  max_chunks_ = std::max(1, blocks_ * kWarps / c.n_head);

  // The layer table, each product's view in its type's layout.
  auto product = [&](const StackMatrix& m, int64_t cols) {
    Product p{};
    p.rows = m.rows;
    p.type = m.type;
    if (m.rows > 0) {
      with_q8_type(m.type, [&](auto t) { p.v = view_of<decltype(t)>(m.w, m.rows, cols); });
    }
    return p;
  };
  auto bytes_of = [&](const StackMatrix& m) {  // [q | k | v] parts: n_embd columns
    double bytes = 0;
    with_q8_type(m.type, [&](auto t) {
      using T = decltype(t);
      bytes = static_cast<double>(m.rows) * (c.n_embd / T::kElems) * T::kBlockBytes;
    });
    return bytes;
  };
  std::vector<LayerRecord> table(layers.size());
  for (size_t i = 0; i < layers.size(); ++i) {
    const StackLayer& l = layers[i];
    LayerRecord& r = table[i];
    r.qkv[0] = product(l.qkv[0], c.n_embd);
    r.qkv[1] = product(l.qkv[1], c.n_embd);
    r.o = product(l.o, Q);
    r.gate_up = product(l.gate_up, c.n_embd);
    r.down = product(l.down, c.n_ff);
    r.split = 0;
    if (l.qkv[1].rows > 0) {
      r.split = static_cast<int>(split_blocks(blocks_, bytes_of(l.qkv[0]), bytes_of(l.qkv[1])));
    }
    r.attn_norm = l.attn_norm;
    r.ffn_norm = l.ffn_norm;
    r.bq = l.bq;
    r.bk = l.bk;
    r.bv = l.bv;
    r.k_cache = l.k_cache;
    r.v_cache = l.v_cache;
  }
  if (cudaMalloc(&layers_, table.size() * sizeof(LayerRecord)) != cudaSuccess ||
      cudaMemcpy(layers_, table.data(), table.size() * sizeof(LayerRecord),
                 cudaMemcpyHostToDevice) != cudaSuccess) {
    why_not_ = "no device memory for the layer table";
    return;
  }
  const size_t scratch = scratch_layout(c, max_chunks_, nullptr, nullptr);
  if (cudaMalloc(&scratch_, scratch) != cudaSuccess ||
      cudaMemset(scratch_, 0, scratch) != cudaSuccess) {
    why_not_ = "no device memory for the scratch";
    return;
  }
  ok_ = true;
}

DecodeStack::~DecodeStack() {
  if (layers_ != nullptr) cudaFree(layers_);
  if (scratch_ != nullptr) cudaFree(scratch_);
}

std::string DecodeStack::description() const {
  return "decoder stack in one kernel (" + std::to_string(blocks_) + " blocks" +
         (inline_phases_ ? ", phases inlined" : "") + ")";
}

void DecodeStack::run(float* x, float* qkv, const float* cos_sin, const int* pos0,
                      cudaStream_t stream) const {
  const StackShape& c = shape_;
  KernelArgs a = {};
  a.layers = static_cast<const LayerRecord*>(layers_);
  a.n_layer = n_layer_;
  a.n_embd = c.n_embd;
  a.n_ff = c.n_ff;
  a.attn.n_head = c.n_head;
  a.attn.n_head_kv = c.n_head_kv;
  a.attn.head_dim = c.head_dim;
  a.attn.n_rot = c.n_rot;
  a.attn.neox = c.neox;
  a.gelu = c.gelu ? 1 : 0;
  a.eps = c.eps;
  a.x = x;
  a.qkv = qkv;
  a.attn.qkv = qkv;
  a.attn.cos_sin = cos_sin;
  a.attn.pos0 = pos0;
  a.attn.max_chunks = max_chunks_;
  scratch_layout(c, max_chunks_, static_cast<uint8_t*>(scratch_), &a);
  static const int skip = [] {
    const char* env = std::getenv("SQUISH_CUDA_STACK_SKIP");
    return env != nullptr ? std::atoi(env) : 0;
  }();
  a.skip = skip;
  with_head_size(c.head_dim, [&](auto per) {
    auto kernel = type_set_ == kSetK ? stack_kernel<kSetK, decltype(per)::value>(inline_phases_)
                                     : stack_kernel<kSetQ80, decltype(per)::value>(inline_phases_);
    // A plain launch (no programmatic dependency): every block must be resident at once for the
    // grid barriers, so the grid starts on an idle GPU.
    kernel<<<blocks_, kWarp * kWarps, smem_, stream>>>(a);
  });
}

}  // namespace squish::cuda
