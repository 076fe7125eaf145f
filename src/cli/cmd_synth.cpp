// squish synth: a GGUF with random weights in the exact shapes and per-tensor types of a real
// model (Llama-3-8B, Llama-2-7B, Qwen2-7B), for speed work: decode and prefill speed depend on
// shapes and types, not on weight values, and these files cost seconds instead of a download.
// Quantized tensors are written as random valid blocks directly (random codes, finite small
// scales), never through float weights and a quantizer, and streamed one tensor at a time.
// The file carries a placeholder SentencePiece-style vocabulary of the model's size, so it loads
// like any other model; its text output is meaningless.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/progress.h"
#include "formats/gguf.h"
#include "model/config.h"
#include "model/model.h"
#include "quant/mix.h"

namespace squish::cli {

namespace {

struct SynthShape {
  const char* name;
  Arch arch;
  int n_vocab, n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx;
  double rope_theta;
  float norm_eps;
};

// Published configurations (config.json of the original checkpoints).
constexpr SynthShape kShapes[] = {
    {"llama3-8b", Arch::Llama, 128256, 4096, 32, 32, 8, 14336, 8192, 500000.0, 1e-5f},
    {"llama2-7b", Arch::Llama, 32000, 4096, 32, 32, 32, 11008, 4096, 10000.0, 1e-5f},
    {"qwen2-7b", Arch::Qwen2, 152064, 3584, 28, 28, 4, 18944, 32768, 1000000.0, 1e-6f},
    // Not a published model: a small Llama-3-like shape (head_dim 128, grouped kv heads) whose
    // widths are multiples of 256, so that every matrix of a K-quant mix gets a K type; the GPU
    // tests use it (bench/cuda_pack.sh).
    {"tiny-k", Arch::Llama, 1024, 512, 3, 4, 2, 1024, 512, 500000.0, 1e-5f},
};

uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Where a block keeps its fp16 scales, and the magnitude that makes weights ~N(0, 0.02)-sized
// given the code range (so activations stay finite through the layers).
struct ScaleFields {
  int offsets[2];
  int count;
  float magnitude;
};
ScaleFields scale_fields(DType t) {
  switch (t) {
    case DType::Q4_0:
    case DType::IQ4_NL:
      return {{0, 0}, 1, 4e-3f};
    case DType::Q5_0:
      return {{0, 0}, 1, 2e-3f};
    case DType::Q4_1:
      return {{0, 2}, 2, 3e-3f};
    case DType::Q5_1:
      return {{0, 2}, 2, 1.5e-3f};
    case DType::Q8_0:
      return {{0, 0}, 1, 3e-4f};
    case DType::Q2_K:
      return {{80, 82}, 2, 1e-3f};
    case DType::Q3_K:
      return {{108, 0}, 1, 5e-4f};
    case DType::Q4_K:
    case DType::Q5_K:
      return {{0, 2}, 2, 1e-4f};
    case DType::Q6_K:
      return {{208, 0}, 1, 2e-5f};
    case DType::IQ4_XS:
      return {{0, 0}, 1, 1e-4f};
    default:
      fail("synth: no random block generator for type {}", dtype_name(t));
  }
}

// Fills `out` (a whole tensor of n elements in `type`) with random valid data, in parallel.
void random_tensor(DType type, int64_t n, uint64_t seed, std::vector<uint8_t>& out) {
  const DTypeTraits& tr = traits(type);
  const int64_t n_blocks = n / tr.block_size;
  out.resize(static_cast<size_t>(n_blocks) * tr.block_bytes);
  if (type == DType::F32 || type == DType::F16 || type == DType::BF16) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      uint64_t s = seed ^ (static_cast<uint64_t>(i) * 0x2545F4914F6CDD1Dull);
      // Sum of four uniforms: roughly Gaussian, std 0.02.
      const uint64_t r = splitmix64(s);
      const float g =
          ((r & 0xFFFF) + ((r >> 16) & 0xFFFF) + ((r >> 32) & 0xFFFF) + (r >> 48)) / 65536.0f -
          2.0f;
      const float v = g * 0.035f;
      if (type == DType::F32) {
        std::memcpy(out.data() + i * 4, &v, 4);
      } else {
        const uint16_t h = type == DType::F16 ? fp32_to_fp16(v) : fp32_to_bf16(v);
        std::memcpy(out.data() + i * 2, &h, 2);
      }
    }
    return;
  }
  const ScaleFields sf = scale_fields(type);
  const int64_t chunk = 4096;  // blocks per work item: one RNG stream each
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t c0 = 0; c0 < n_blocks; c0 += chunk) {
    uint64_t s = seed + static_cast<uint64_t>(c0) * 0x9E3779B97F4A7C15ull;
    const int64_t c1 = std::min(n_blocks, c0 + chunk);
    uint8_t* p = out.data() + static_cast<size_t>(c0) * tr.block_bytes;
    const size_t bytes = static_cast<size_t>(c1 - c0) * tr.block_bytes;
    size_t i = 0;
    for (; i + 8 <= bytes; i += 8) {
      const uint64_t r = splitmix64(s);
      std::memcpy(p + i, &r, 8);
    }
    for (; i < bytes; ++i) p[i] = static_cast<uint8_t>(splitmix64(s));
    for (int64_t b = c0; b < c1; ++b) {
      uint8_t* blk = out.data() + static_cast<size_t>(b) * tr.block_bytes;
      for (int k = 0; k < sf.count; ++k) {
        // Scale in [0.5, 1.5) x magnitude, positive (a random sign changes nothing for speed).
        const float v = sf.magnitude * (0.5f + (splitmix64(s) & 0xFFFF) / 65536.0f);
        const uint16_t h = fp32_to_fp16(v);
        std::memcpy(blk + sf.offsets[k], &h, 2);
      }
    }
  }
}

// A SentencePiece-style ("llama") vocabulary of n tokens: unknown, BOS, EOS, the 256 byte
// tokens, then placeholder pieces.
void write_vocab(GGUFWriter& w, int n) {
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
  tokens.reserve(n);
  auto add = [&](std::string t, float score, int type) {
    tokens.push_back(std::move(t));
    scores.push_back(score);
    types.push_back(type);
  };
  add("<unk>", 0, 2);
  add("<s>", 0, 3);
  add("</s>", 0, 3);
  for (int b = 0; b < 256 && static_cast<int>(tokens.size()) < n; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    add(buf, 0, 6);
  }
  for (int i = 0; static_cast<int>(tokens.size()) < n; ++i) {
    add("\xE2\x96\x81w" + std::to_string(i), -static_cast<float>(i), 1);
  }
  w.set("tokenizer.ggml.model", GGUFValue::str("llama"));
  w.set("tokenizer.ggml.tokens", GGUFValue::str_array(std::move(tokens)));
  w.set("tokenizer.ggml.scores", GGUFValue::f32_array(std::move(scores)));
  w.set("tokenizer.ggml.token_type", GGUFValue::i32_array(std::move(types)));
  w.set("tokenizer.ggml.unknown_token_id", GGUFValue::u32(0));
  w.set("tokenizer.ggml.bos_token_id", GGUFValue::u32(1));
  w.set("tokenizer.ggml.eos_token_id", GGUFValue::u32(2));
}

struct SynthArgs {
  std::string shape, type = "Q4_K_M", output;
  uint64_t seed = 1;
};

void run_synth(const SynthArgs& a) {
  const SynthShape* shape = nullptr;
  for (const SynthShape& s : kShapes) {
    if (a.shape == s.name) shape = &s;
  }
  if (shape == nullptr)
    fail("synth: unknown --shape {} (llama3-8b, llama2-7b, qwen2-7b, tiny-k)", a.shape);
  const std::optional<QuantMix> mix = find_quant_mix(a.type);
  if (!mix) fail("synth: unknown --type {} (a quantize mix such as Q4_K_M or Q8_0)", a.type);

  Model model;
  model.path = a.output;
  ModelConfig& c = model.config;
  c.arch = shape->arch;
  c.n_vocab = shape->n_vocab;
  c.n_embd = shape->n_embd;
  c.n_layer = shape->n_layer;
  c.n_head = shape->n_head;
  c.n_head_kv = shape->n_head_kv;
  c.n_ff = shape->n_ff;
  c.n_ctx_train = shape->n_ctx;
  c.rope_theta = shape->rope_theta;
  c.norm_eps = shape->norm_eps;
  c.qkv_bias = shape->arch == Arch::Qwen2;
  c.bos_id = 1;
  c.eos_id = 2;
  c.finalize(a.output);
  const int64_t E = c.n_embd, V = c.n_vocab, Q = c.q_dim(), KV = c.kv_dim(), F = c.n_ff;
  auto add = [&](const std::string& name, std::vector<int64_t> shape_rm) {
    model.add_tensor(TensorInfo{name, DType::F32, std::move(shape_rm), nullptr, 0});
  };
  add("token_embd.weight", {V, E});
  for (int l = 0; l < c.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    add(p + "attn_norm.weight", {E});
    add(p + "attn_q.weight", {Q, E});
    add(p + "attn_k.weight", {KV, E});
    add(p + "attn_v.weight", {KV, E});
    if (c.qkv_bias) {
      add(p + "attn_q.bias", {Q});
      add(p + "attn_k.bias", {KV});
      add(p + "attn_v.bias", {KV});
    }
    add(p + "attn_output.weight", {E, Q});
    add(p + "ffn_norm.weight", {E});
    add(p + "ffn_gate.weight", {F, E});
    add(p + "ffn_up.weight", {F, E});
    add(p + "ffn_down.weight", {E, F});
  }
  add("output_norm.weight", {E});
  add("output.weight", {V, E});

  QuantPlanOptions po;
  po.mix = *mix;
  const std::vector<TensorPlan> plan = plan_quantization(model, po);

  GGUFWriter w(a.output);
  config_to_gguf(c, w);
  w.set("general.name",
        GGUFValue::str(std::string("squish synth ") + shape->name + " " + mix->name));
  w.set("general.file_type", GGUFValue::u32(mix->file_type));
  w.set("squish.synth", GGUFValue::str("random weights (speed work only)"));
  write_vocab(w, c.n_vocab);
  size_t total = 0;
  for (size_t i = 0; i < plan.size(); ++i) {
    const TensorInfo& t = model.tensors()[i];
    w.add_tensor(t.name, plan[i].type, t.shape);
    total += row_bytes(plan[i].type, t.shape.back()) * (t.numel() / t.shape.back());
  }
  w.write_header();
  Progress progress("synth " + std::string(shape->name) + " " + mix->name, total);
  std::vector<uint8_t> data;
  size_t done = 0;
  for (size_t i = 0; i < plan.size(); ++i) {
    const TensorInfo& t = model.tensors()[i];
    const bool norm = t.name.find("_norm.weight") != std::string::npos;
    if (norm) {
      // Norm weights of 1: random activations keep unit scale through the layers.
      data.resize(t.numel() * 4);
      const float one = 1.0f;
      for (int64_t k = 0; k < t.numel(); ++k) std::memcpy(data.data() + k * 4, &one, 4);
    } else {
      random_tensor(plan[i].type, t.numel(), a.seed * 1000003 + i, data);
    }
    w.write_tensor_data(t.name, data.data(), data.size());
    done += data.size();
    progress.update(done, t.name);
  }
  w.finish();
  progress.finish();
  std::fprintf(stderr, "%s: %s %s, %.2f GiB of weights (random values)\n", a.output.c_str(),
               shape->name, mix->name.c_str(), total / 1073741824.0);
}

}  // namespace

void register_synth(CLI::App& app) {
  auto a = std::make_shared<SynthArgs>();
  CLI::App* cmd = app.add_subcommand(
      "synth", "Random-weight GGUF of a real model's shapes and types (for speed work)");
  cmd->add_option("--shape", a->shape, "llama3-8b, llama2-7b, qwen2-7b or tiny-k (for tests)")
      ->required();
  cmd->add_option("--type", a->type, "Quantization mix (per-tensor types as `quantize` plans them)")
      ->capture_default_str();
  cmd->add_option("-o,--output", a->output, "Output .gguf")->required();
  cmd->add_option("--seed", a->seed, "Random seed")->capture_default_str();
  cmd->callback([a] { run_synth(*a); });
}

}  // namespace squish::cli
