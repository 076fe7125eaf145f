// Format detection and the three loaders. Each maps its file's tensor names to GGUF canonical
// names, so the runtime, the exporters and `squish info` see one naming scheme.
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>

#include "core/error.h"
#include "core/json_file.h"
#include "core/mapped_file.h"
#include "formats/gguf.h"
#include "formats/llama2c.h"
#include "formats/safetensors.h"
#include "model/model.h"

namespace squish {

namespace fs = std::filesystem;

namespace {

constexpr size_t kMaxConfigBytes = 16u << 20;

// Hugging Face parameter name -> GGUF canonical name; empty when the tensor is to be ignored.
std::string canonical_hf_name(const std::string& hf, const std::string& source) {
  static const std::regex layer_re(R"(^model\.layers\.(\d+)\.(.+)$)");
  static const std::pair<const char*, const char*> kLayerMap[] = {
      {"input_layernorm.weight", "attn_norm.weight"},
      {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.k_proj.weight", "attn_k.weight"},
      {"self_attn.v_proj.weight", "attn_v.weight"},
      {"self_attn.q_proj.bias", "attn_q.bias"},
      {"self_attn.k_proj.bias", "attn_k.bias"},
      {"self_attn.v_proj.bias", "attn_v.bias"},
      {"self_attn.qkv_proj.weight", "attn_qkv.weight"},
      {"self_attn.o_proj.weight", "attn_output.weight"},
      {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},
      {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.gate_up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"},
  };
  if (hf == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf == "model.norm.weight") return "output_norm.weight";
  if (hf == "lm_head.weight") return "output.weight";
  std::smatch m;
  if (std::regex_match(hf, m, layer_re)) {
    const std::string rest = m[2];
    if (rest == "self_attn.rotary_emb.inv_freq") return "";
    for (const auto& [from, to] : kLayerMap) {
      if (rest == from) return "blk." + m[1].str() + "." + to;
    }
  }
  fail("{}: unexpected tensor '{}' (not part of a supported architecture)", source, hf);
}

bool is_vector_tensor(const std::string& name) {
  return name.find("norm.weight") != std::string::npos || name.ends_with(".bias");
}

std::unique_ptr<Model> load_hf(const std::string& dir) {
  auto model = std::make_unique<Model>();
  model->path = dir;
  model->format = SourceFormat::HuggingFace;
  const std::string config_path = (fs::path(dir) / "config.json").string();
  model->config = config_from_hf(read_json_file(config_path, kMaxConfigBytes), config_path);
  auto set = std::make_shared<SafetensorsSet>(open_safetensors(dir));
  model->keep_alive(set);
  for (const TensorInfo& t : set->tensors) {
    std::string name = canonical_hf_name(t.name, dir);
    if (name.empty()) continue;
    if (name == "output.weight" && model->config.tied_embeddings) {
      continue;  // some tied checkpoints also store lm_head; the embedding is authoritative
    }
    TensorInfo c = t;
    c.name = name;
    model->add_tensor(std::move(c));
  }
  if (model->find("output.weight") == nullptr) model->config.tied_embeddings = true;
  // Gemma's HF RMSNorm computes x * (1 + w); store the logical scale so every consumer (runtime,
  // GGUF export, which llama.cpp expects with the +1 folded in) sees the same numbers.
  const float norm_offset = model->config.arch == Arch::Gemma ? 1.0f : 0.0f;
  for (const TensorInfo& t : std::vector<TensorInfo>(model->tensors())) {
    if (is_vector_tensor(t.name)) {
      model->make_owned_f32(t.name, t.name.ends_with("norm.weight") ? norm_offset : 0.0f);
    }
  }
  model->tokenizer = load_hf_tokenizer(dir);
  return model;
}

std::unique_ptr<Model> load_gguf(const std::string& path) {
  auto gguf = GGUFFile::open(path);
  auto model = std::make_unique<Model>();
  model->path = path;
  model->format = SourceFormat::GGUF;
  model->config = config_from_gguf(*gguf);
  model->keep_alive(gguf);
  for (const TensorInfo& t : gguf->tensors()) {
    if (t.name == "rope_freqs.weight") continue;  // folded into config.rope_inv_freq
    model->add_tensor(t);
  }
  for (const TensorInfo& t : std::vector<TensorInfo>(model->tensors())) {
    if (is_vector_tensor(t.name)) model->make_owned_f32(t.name);
  }
  model->tokenizer = load_gguf_tokenizer(*gguf);
  return model;
}

std::unique_ptr<Model> load_llama2c(const std::string& path, const LoadOptions& options) {
  auto ckpt = std::make_shared<Llama2cCheckpoint>(open_llama2c(path));
  auto model = std::make_unique<Model>();
  model->path = path;
  model->format = SourceFormat::Llama2c;
  ModelConfig& c = model->config;
  c.arch = Arch::Llama;
  c.n_vocab = ckpt->vocab_size;
  c.n_embd = ckpt->dim;
  c.n_layer = ckpt->n_layers;
  c.n_head = ckpt->n_heads;
  c.n_head_kv = ckpt->n_kv_heads;
  c.n_ff = ckpt->hidden_dim;
  c.n_ctx_train = ckpt->seq_len;
  c.norm_eps = 1e-5f;
  c.rope_theta = 10000.0;
  c.rope_style = RopeStyle::Interleaved;  // run.c rotates adjacent pairs
  c.tied_embeddings = ckpt->shared_classifier;
  c.bos_id = 1;
  c.eos_id = 2;
  c.finalize(path);
  model->keep_alive(ckpt);
  for (const TensorInfo& t : ckpt->tensors) {
    if (t.name == "output.weight" && ckpt->shared_classifier) continue;
    model->add_tensor(t);
  }
  std::string tok = options.tokenizer_path;
  if (tok.empty()) {
    const fs::path beside = fs::path(path).parent_path() / "tokenizer.bin";
    if (fs::exists(beside)) tok = beside.string();
  }
  if (!tok.empty()) model->tokenizer = load_llama2c_tokenizer(tok, c.n_vocab);
  return model;
}

}  // namespace

std::unique_ptr<Model> load_model(const std::string& path, const LoadOptions& options) {
  std::error_code ec;
  if (!fs::exists(path, ec)) fail("{}: no such file or folder", path);
  std::unique_ptr<Model> model;
  if (fs::is_directory(path, ec)) {
    if (!fs::exists(fs::path(path) / "config.json")) {
      fail("{}: folder has no config.json (expected a Hugging Face model folder)", path);
    }
    model = load_hf(path);
  } else {
    auto file = MappedFile::open(path);
    if (file->size() >= 4 && std::memcmp(file->data(), "GGUF", 4) == 0) {
      file.reset();
      model = load_gguf(path);
    } else if (looks_like_llama2c(*file)) {
      file.reset();
      model = load_llama2c(path, options);
    } else {
      fail(
          "{}: unrecognized model file (expected a GGUF file, a llama2.c checkpoint or a Hugging "
          "Face folder)",
          path);
    }
  }
  if (!options.tokenizer_path.empty() && model->format != SourceFormat::Llama2c) {
    const std::string& tp = options.tokenizer_path;
    model->tokenizer =
        tp.ends_with(".model") ? load_sentencepiece_model(tp) : load_tokenizer_json(tp);
  }
  model->bind_and_validate();
  if (model->tokenizer && model->tokenizer->vocab_size() > model->config.n_vocab) {
    fail("{}: tokenizer has {} tokens but the model's vocabulary is {}", path,
         model->tokenizer->vocab_size(), model->config.n_vocab);
  }
  return model;
}

}  // namespace squish
