#include "model/config.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/gguf.h"

namespace squish {

using nlohmann::json;

const char* ModelConfig::arch_name() const {
  switch (arch) {
    case Arch::Llama:
      return "llama";
    case Arch::Qwen2:
      return "qwen2";
    case Arch::Phi3:
      return "phi3";
    case Arch::Gemma:
      return "gemma";
  }
  return "?";
}

void ModelConfig::finalize(const std::string& source) {
  auto require = [&](bool ok, const char* what) {
    if (!ok) fail("{}: invalid model config: {}", source, what);
  };
  require(n_vocab > 0 && n_vocab <= (1 << 24), "vocab size must be in 1..16M");
  require(n_embd > 0 && n_embd <= (1 << 16), "hidden size must be in 1..65536");
  require(n_layer > 0 && n_layer <= 1024, "layer count must be in 1..1024");
  require(n_head > 0 && n_head <= 1024, "head count must be in 1..1024");
  if (n_head_kv == 0) n_head_kv = n_head;
  require(n_head_kv > 0 && n_head % n_head_kv == 0, "KV head count must divide the head count");
  if (head_dim == 0) {
    require(n_embd % n_head == 0, "hidden size must be a multiple of the head count");
    head_dim = n_embd / n_head;
  }
  require(head_dim > 0 && head_dim <= 1024 && head_dim % 2 == 0, "head dim must be even, <= 1024");
  require(n_ff > 0 && n_ff <= (1 << 20), "intermediate size must be in 1..1M");
  if (n_rot == 0) n_rot = head_dim;
  require(n_rot > 0 && n_rot <= head_dim && n_rot % 2 == 0,
          "rotary dims must be even, <= head dim");
  require(std::isfinite(norm_eps) && norm_eps > 0 && norm_eps < 1, "norm epsilon must be in (0,1)");
  require(std::isfinite(rope_theta) && rope_theta > 1, "rope theta must be > 1");
  if (n_ctx_train <= 0) n_ctx_train = 2048;
  require(rope_scaling.factor > 0 && std::isfinite(rope_scaling.factor), "rope factor must be > 0");

  rope_inv_freq.resize(n_rot / 2);
  for (int i = 0; i < n_rot / 2; ++i) {
    rope_inv_freq[i] = 1.0 / std::pow(rope_theta, static_cast<double>(2 * i) / n_rot);
  }
  if (rope_scaling.type == RopeScaling::Type::Linear) {
    for (double& f : rope_inv_freq) f /= rope_scaling.factor;
  } else if (rope_scaling.type == RopeScaling::Type::Llama3) {
    const RopeScaling& s = rope_scaling;
    require(s.high_freq_factor > s.low_freq_factor && s.low_freq_factor > 0,
            "llama3 rope needs high_freq_factor > low_freq_factor > 0");
    require(s.original_max_position > 0, "llama3 rope needs original_max_position_embeddings");
    const double low_wavelen = s.original_max_position / s.low_freq_factor;
    const double high_wavelen = s.original_max_position / s.high_freq_factor;
    for (double& f : rope_inv_freq) {
      const double wavelen = 2 * M_PI / f;
      if (wavelen > low_wavelen) {
        f /= s.factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth = (s.original_max_position / wavelen - s.low_freq_factor) /
                              (s.high_freq_factor - s.low_freq_factor);
        f = (1 - smooth) * f / s.factor + smooth * f;
      }
    }
  }
}

std::vector<float> llama3_rope_freq_factors(const ModelConfig& c) {
  std::vector<float> factors(c.n_rot / 2);
  for (int i = 0; i < c.n_rot / 2; ++i) {
    const double base = 1.0 / std::pow(c.rope_theta, static_cast<double>(2 * i) / c.n_rot);
    factors[i] = static_cast<float>(base / c.rope_inv_freq[i]);
  }
  return factors;
}

namespace {

int get_int(const json& j, const char* key, const std::string& source, int fallback = -1) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (fallback >= 0) return fallback;
    fail("{}: missing key '{}'", source, key);
  }
  if (!it->is_number_integer()) fail("{}: key '{}' must be an integer", source, key);
  const int64_t v = it->get<int64_t>();
  if (v < 0 || v > (int64_t{1} << 31) - 1) fail("{}: key '{}' is out of range", source, key);
  return static_cast<int>(v);
}

double get_num(const json& j, const char* key, const std::string& source, double fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_number()) fail("{}: key '{}' must be a number", source, key);
  return it->get<double>();
}

// json::value() throws nlohmann's type_error when the key holds another type; these give
// squish's one-line error instead (found by fuzz/config_fuzz.cpp).
std::string get_str(const json& j, const char* key, const std::string& source) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "";
  if (!it->is_string()) fail("{}: key '{}' must be a string", source, key);
  return it->get<std::string>();
}

bool get_bool(const json& j, const char* key, const std::string& source, bool fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) fail("{}: key '{}' must be true or false", source, key);
  return it->get<bool>();
}

void parse_rope_scaling(const json& r, ModelConfig& c, const std::string& source) {
  std::string type = "default";
  if (r.contains("rope_type") && r["rope_type"].is_string())
    type = r["rope_type"];
  else if (r.contains("type") && r["type"].is_string())
    type = r["type"];
  if (type == "default") return;
  if (type == "linear") {
    c.rope_scaling.type = RopeScaling::Type::Linear;
    c.rope_scaling.factor = get_num(r, "factor", source, 1.0);
  } else if (type == "llama3") {
    c.rope_scaling.type = RopeScaling::Type::Llama3;
    c.rope_scaling.factor = get_num(r, "factor", source, 8.0);
    c.rope_scaling.low_freq_factor = get_num(r, "low_freq_factor", source, 1.0);
    c.rope_scaling.high_freq_factor = get_num(r, "high_freq_factor", source, 4.0);
    c.rope_scaling.original_max_position =
        get_int(r, "original_max_position_embeddings", source, 8192);
  } else {
    fail("{}: unsupported rope scaling type '{}' (supported: default, linear, llama3)", source,
         type);
  }
}

}  // namespace

ModelConfig config_from_hf(const json& j, const std::string& source) {
  if (!j.is_object()) fail("{}: config.json is not a JSON object", source);
  std::string model_type = get_str(j, "model_type", source);
  std::string arch_class;
  if (auto it = j.find("architectures");
      it != j.end() && it->is_array() && !it->empty() && (*it)[0].is_string()) {
    arch_class = (*it)[0];
  }
  ModelConfig c;
  if (model_type == "llama" || model_type == "mistral" || arch_class == "LlamaForCausalLM" ||
      arch_class == "MistralForCausalLM") {
    c.arch = Arch::Llama;
  } else if (model_type == "qwen2" || arch_class == "Qwen2ForCausalLM") {
    c.arch = Arch::Qwen2;
    c.qkv_bias = true;
  } else if (model_type == "phi3" || arch_class == "Phi3ForCausalLM") {
    c.arch = Arch::Phi3;
  } else if (model_type == "gemma" || arch_class == "GemmaForCausalLM") {
    c.arch = Arch::Gemma;
    c.activation = Activation::GeluTanh;
    c.scale_embeddings = true;
  } else {
    fail("{}: unsupported architecture '{}' (supported: llama, mistral, qwen2, phi3, gemma)",
         source, model_type.empty() ? arch_class : model_type);
  }
  c.n_vocab = get_int(j, "vocab_size", source);
  c.n_embd = get_int(j, "hidden_size", source);
  c.n_layer = get_int(j, "num_hidden_layers", source);
  c.n_head = get_int(j, "num_attention_heads", source);
  c.n_head_kv = get_int(j, "num_key_value_heads", source, c.n_head);
  c.n_ff = get_int(j, "intermediate_size", source);
  c.n_ctx_train = get_int(j, "max_position_embeddings", source, 2048);
  c.head_dim = get_int(j, "head_dim", source, 0);
  c.norm_eps = static_cast<float>(get_num(j, "rms_norm_eps", source, 1e-6));
  c.tied_embeddings = get_bool(j, "tie_word_embeddings", source, c.arch == Arch::Gemma);
  if (get_bool(j, "attention_bias", source, false)) c.qkv_bias = true;
  c.rope_theta = get_num(j, "rope_theta", source, 10000.0);
  if (auto it = j.find("rope_parameters"); it != j.end() && it->is_object()) {
    c.rope_theta = get_num(*it, "rope_theta", source, c.rope_theta);
    parse_rope_scaling(*it, c, source);
  }
  if (auto it = j.find("rope_scaling"); it != j.end() && it->is_object()) {
    parse_rope_scaling(*it, c, source);
  }
  c.rope_style = RopeStyle::Neox;
  for (const char* key : {"hidden_act", "hidden_activation"}) {
    if (auto it = j.find(key); it != j.end() && it->is_string()) {
      const std::string act = *it;
      if (act == "silu" || act == "swish") {
        c.activation = Activation::SiLU;
      } else if (act.rfind("gelu", 0) == 0) {
        c.activation = Activation::GeluTanh;
      } else {
        fail("{}: unsupported activation '{}'", source, act);
      }
    }
  }
  if (c.arch == Arch::Gemma) c.activation = Activation::GeluTanh;  // HF Gemma forces tanh GELU
  const double partial = get_num(j, "partial_rotary_factor", source, 1.0);
  if (!(partial > 0.0 && partial <= 1.0)) {
    fail("{}: partial_rotary_factor {} is not in (0, 1]", source, partial);
  }
  c.finalize(source);  // fills head_dim
  if (partial != 1.0) {
    c.n_rot = static_cast<int>(c.head_dim * partial);
    c.finalize(source);
  }
  auto token_id = [&](const char* key) {
    auto it = j.find(key);
    if (it == j.end()) return -1;
    if (it->is_number_integer()) return it->get<int>();
    if (it->is_array() && !it->empty() && (*it)[0].is_number_integer()) return (*it)[0].get<int>();
    return -1;
  };
  c.bos_id = token_id("bos_token_id");
  c.eos_id = token_id("eos_token_id");
  return c;
}

ModelConfig config_from_gguf(const GGUFFile& g) {
  const std::string arch = g.get_string("general.architecture").value_or("");
  ModelConfig c;
  if (arch == "llama") {
    c.arch = Arch::Llama;
    c.rope_style = RopeStyle::Interleaved;
  } else if (arch == "qwen2") {
    c.arch = Arch::Qwen2;
    c.qkv_bias = true;
  } else if (arch == "phi3") {
    c.arch = Arch::Phi3;
  } else if (arch == "gemma") {
    c.arch = Arch::Gemma;
    c.activation = Activation::GeluTanh;
    c.scale_embeddings = true;
  } else {
    fail("{}: unsupported architecture '{}' (supported: llama, qwen2, phi3, gemma)", g.path(),
         arch.empty() ? "(general.architecture missing)" : arch);
  }
  auto req = [&](const std::string& key) -> uint64_t {
    auto v = g.get_uint(arch + "." + key);
    if (!v) fail("{}: missing metadata key '{}.{}'", g.path(), arch, key);
    if (*v > (uint64_t{1} << 31))
      fail("{}: metadata key '{}.{}' is out of range", g.path(), arch, key);
    return *v;
  };
  auto opt = [&](const std::string& key, uint64_t fallback) -> uint64_t {
    auto v = g.get_uint(arch + "." + key);
    if (v && *v > (uint64_t{1} << 31))
      fail("{}: metadata key '{}.{}' is out of range", g.path(), arch, key);
    return v ? *v : fallback;
  };
  c.n_embd = static_cast<int>(req("embedding_length"));
  c.n_layer = static_cast<int>(req("block_count"));
  c.n_ff = static_cast<int>(req("feed_forward_length"));
  c.n_head = static_cast<int>(req("attention.head_count"));
  c.n_head_kv = static_cast<int>(opt("attention.head_count_kv", c.n_head));
  c.n_ctx_train = static_cast<int>(opt("context_length", 2048));
  c.head_dim = static_cast<int>(opt("attention.key_length", 0));
  c.n_rot = static_cast<int>(opt("rope.dimension_count", 0));
  c.norm_eps =
      static_cast<float>(g.get_float(arch + ".attention.layer_norm_rms_epsilon").value_or(1e-5));
  c.rope_theta = g.get_float(arch + ".rope.freq_base").value_or(10000.0);
  if (auto vocab = g.get_uint(arch + ".vocab_size")) {
    c.n_vocab = static_cast<int>(std::min<uint64_t>(*vocab, uint64_t{1} << 31));
  } else if (const auto* tokens = g.get_str_array("tokenizer.ggml.tokens")) {
    c.n_vocab = static_cast<int>(tokens->size());
  } else if (const TensorInfo* emb = g.find_tensor("token_embd.weight");
             emb != nullptr && emb->shape.size() == 2) {
    c.n_vocab = static_cast<int>(emb->shape[0]);
  }
  const std::string scaling = g.get_string(arch + ".rope.scaling.type").value_or("none");
  if (scaling == "linear") {
    c.rope_scaling.type = RopeScaling::Type::Linear;
    c.rope_scaling.factor = g.get_float(arch + ".rope.scaling.factor").value_or(1.0);
  } else if (scaling != "none") {
    fail("{}: unsupported rope scaling type '{}'", g.path(), scaling);
  }
  c.tied_embeddings = g.find_tensor("output.weight") == nullptr;
  if (auto v = g.get_uint("tokenizer.ggml.bos_token_id")) c.bos_id = static_cast<int>(*v);
  if (auto v = g.get_uint("tokenizer.ggml.eos_token_id")) c.eos_id = static_cast<int>(*v);
  c.finalize(g.path());
  // Llama-3 style scaling is carried as per-pair frequency divisors in a tensor.
  if (const TensorInfo* rf = g.find_tensor("rope_freqs.weight")) {
    if (rf->type != DType::F32 || rf->numel() != c.n_rot / 2) {
      fail("{}: rope_freqs.weight must be F32 with {} elements", g.path(), c.n_rot / 2);
    }
    const float* f = static_cast<const float*>(rf->data);
    for (int i = 0; i < c.n_rot / 2; ++i) {
      if (!(f[i] > 0) || !std::isfinite(f[i]))
        fail("{}: rope_freqs.weight has a non-positive value", g.path());
      c.rope_inv_freq[i] /= f[i];
    }
    c.rope_scaling.type = RopeScaling::Type::Llama3;
  }
  return c;
}

void config_to_gguf(const ModelConfig& c, GGUFWriter& w) {
  const std::string a = c.arch_name();
  w.set("general.architecture", GGUFValue::str(a));
  w.set(a + ".vocab_size", GGUFValue::u32(c.n_vocab));
  w.set(a + ".context_length", GGUFValue::u32(c.n_ctx_train));
  w.set(a + ".embedding_length", GGUFValue::u32(c.n_embd));
  w.set(a + ".block_count", GGUFValue::u32(c.n_layer));
  w.set(a + ".feed_forward_length", GGUFValue::u32(c.n_ff));
  w.set(a + ".attention.head_count", GGUFValue::u32(c.n_head));
  w.set(a + ".attention.head_count_kv", GGUFValue::u32(c.n_head_kv));
  w.set(a + ".attention.key_length", GGUFValue::u32(c.head_dim));
  w.set(a + ".attention.value_length", GGUFValue::u32(c.head_dim));
  w.set(a + ".attention.layer_norm_rms_epsilon", GGUFValue::f32(c.norm_eps));
  w.set(a + ".rope.freq_base", GGUFValue::f32(static_cast<float>(c.rope_theta)));
  w.set(a + ".rope.dimension_count", GGUFValue::u32(c.n_rot));
  if (c.rope_scaling.type == RopeScaling::Type::Linear) {
    w.set(a + ".rope.scaling.type", GGUFValue::str("linear"));
    w.set(a + ".rope.scaling.factor", GGUFValue::f32(static_cast<float>(c.rope_scaling.factor)));
  }
}

}  // namespace squish
