// A loaded model: config, weights under GGUF canonical names, and its tokenizer.
// Weight matrices stay in the file's memory map in their stored type (F32/F16/BF16); small
// vectors (norms, biases) are converted to owned F32 at load time, with format quirks applied
// (Gemma's Hugging Face norms store w-1), so every consumer sees the same logical weights.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"
#include "tokenizer/tokenizer.h"

namespace squish {

enum class SourceFormat { HuggingFace, GGUF, Llama2c };
const char* source_format_name(SourceFormat f);

struct LayerWeights {
  const TensorInfo* attn_norm = nullptr;
  const TensorInfo* wq = nullptr;  // null when the checkpoint fuses QKV
  const TensorInfo* wk = nullptr;
  const TensorInfo* wv = nullptr;
  const TensorInfo* wqkv = nullptr;  // Phi-3: rows = q_dim + 2 * kv_dim
  const TensorInfo* bq = nullptr;
  const TensorInfo* bk = nullptr;
  const TensorInfo* bv = nullptr;
  const TensorInfo* wo = nullptr;
  const TensorInfo* ffn_norm = nullptr;
  const TensorInfo* w_gate = nullptr;  // null when fused into w_up
  const TensorInfo* w_up = nullptr;    // rows = n_ff, or 2 * n_ff when gate is fused (gate first)
  const TensorInfo* w_down = nullptr;
};

class Model {
 public:
  ModelConfig config;
  SourceFormat format = SourceFormat::HuggingFace;
  std::string path;
  std::unique_ptr<Tokenizer> tokenizer;  // may be null (e.g. llama2.c without tokenizer.bin)

  const TensorInfo* token_embd = nullptr;
  const TensorInfo* output_norm = nullptr;
  const TensorInfo* output = nullptr;  // == token_embd when tied
  std::vector<LayerWeights> layers;

  // All tensors by canonical name (GGUF naming), in a stable order for export and `info`.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(const std::string& name) const;
  int64_t parameter_count() const;  // counts tied embeddings once
  size_t weight_bytes() const;

  // Internal: used by the loaders.
  void add_tensor(TensorInfo t);
  void keep_alive(std::shared_ptr<void> owner) { owners_.push_back(std::move(owner)); }
  // Converts a tensor (float or quantized) to owned F32, optionally adding `offset` to each
  // element, and replaces the registered view with it (bind_and_validate then rebinds layers).
  void make_owned_f32(const std::string& name, float offset = 0.0f);
  // Resolves layer pointers and checks every shape against the config.
  void bind_and_validate();

 private:
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::vector<std::shared_ptr<void>> owners_;
};

struct LoadOptions {
  std::string tokenizer_path;  // explicit tokenizer file (llama2.c tokenizer.bin, tokenizer.json)
};

// Detects the format: a folder with config.json (Hugging Face), a file starting with "GGUF", or a
// llama2.c checkpoint. Throws squish::Error naming the path and the problem.
std::unique_ptr<Model> load_model(const std::string& path, const LoadOptions& options = {});

}  // namespace squish
