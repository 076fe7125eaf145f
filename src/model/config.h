// Architecture hyper-parameters, read from a Hugging Face config.json, a GGUF's metadata or a
// llama2.c header, and written back as GGUF metadata. One struct covers every supported family;
// the runtime branches on a few flags rather than on the architecture name.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace squish {

class GGUFFile;
class GGUFWriter;

enum class Arch { Llama, Qwen2, Phi3, Gemma };

// Which dimensions RoPE rotates together. Interleaved pairs (2i, 2i+1) are Meta's original layout
// (llama.cpp's "norm" type, llama2.c); Neox pairs (i, i + n_rot/2) are what Hugging Face's
// rotate_half implements. The same trained model can be stored either way by permuting the rows
// of Wq and Wk, which is what GGUF conversion of Llama does.
enum class RopeStyle { Interleaved, Neox };

enum class Activation { SiLU, GeluTanh };

struct RopeScaling {
  enum class Type { None, Linear, Llama3 };
  Type type = Type::None;
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int original_max_position = 8192;
};

struct ModelConfig {
  Arch arch = Arch::Llama;
  int n_vocab = 0;
  int n_embd = 0;
  int n_layer = 0;
  int n_head = 0;
  int n_head_kv = 0;
  int head_dim = 0;
  int n_ff = 0;
  int n_ctx_train = 0;
  int n_rot = 0;  // rotary dimensions per head (== head_dim unless partial rotary)
  float norm_eps = 1e-5f;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  RopeStyle rope_style = RopeStyle::Neox;
  Activation activation = Activation::SiLU;
  bool tied_embeddings = false;
  bool qkv_bias = false;
  bool scale_embeddings = false;  // Gemma multiplies embeddings by sqrt(n_embd)
  int bos_id = -1;
  int eos_id = -1;

  // Inverse frequencies per rotary pair (n_rot / 2), scaling applied; computed by finalize().
  std::vector<double> rope_inv_freq;

  // Checks consistency (positive sizes, heads divide, ...) and fills derived fields.
  // `source` names the file for error messages.
  void finalize(const std::string& source);
  int q_dim() const { return n_head * head_dim; }
  int kv_dim() const { return n_head_kv * head_dim; }
  const char* arch_name() const;  // GGUF general.architecture
};

ModelConfig config_from_hf(const nlohmann::json& j, const std::string& source);
ModelConfig config_from_gguf(const GGUFFile& gguf);
void config_to_gguf(const ModelConfig& config, GGUFWriter& writer);
// Per-pair RoPE frequency divisors llama.cpp reads from "rope_freqs.weight" (Llama-3 scaling).
std::vector<float> llama3_rope_freq_factors(const ModelConfig& config);

}  // namespace squish
