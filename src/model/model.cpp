#include "model/model.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "quant/quant.h"

namespace squish {

const char* source_format_name(SourceFormat f) {
  switch (f) {
    case SourceFormat::HuggingFace:
      return "huggingface";
    case SourceFormat::GGUF:
      return "gguf";
    case SourceFormat::Llama2c:
      return "llama2c";
  }
  return "?";
}

const TensorInfo* Model::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

void Model::add_tensor(TensorInfo t) {
  if (index_.count(t.name)) fail("{}: duplicate tensor '{}'", path, t.name);
  index_[t.name] = tensors_.size();
  tensors_.push_back(std::move(t));
}

int64_t Model::parameter_count() const {
  int64_t n = 0;
  for (const TensorInfo& t : tensors_) n += t.numel();
  return n;
}

size_t Model::weight_bytes() const {
  size_t n = 0;
  for (const TensorInfo& t : tensors_) n += t.nbytes;
  return n;
}

void Model::make_owned_f32(const std::string& name, float offset) {
  auto it = index_.find(name);
  if (it == index_.end()) return;
  TensorInfo& t = tensors_[it->second];
  auto buf = std::make_shared<std::vector<float>>(static_cast<size_t>(t.numel()));
  float* dst = buf->data();
  const int64_t n = t.numel();
  switch (t.type) {
    case DType::F32:
      std::memcpy(dst, t.data, n * sizeof(float));
      break;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i)
        dst[i] = fp16_to_fp32(static_cast<const uint16_t*>(t.data)[i]);
      break;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i)
        dst[i] = bf16_to_fp32(static_cast<const uint16_t*>(t.data)[i]);
      break;
    default: {
      const QuantTraits* q = quant_traits(t.type);
      if (q == nullptr)
        fail("{}: tensor '{}' has type {}, which cannot be converted to F32", path, name,
             dtype_name(t.type));
      q->dequantize(t.data, dst, n);  // whole blocks: the loader checked the row length
    }
  }
  if (offset != 0.0f) {
    for (int64_t i = 0; i < n; ++i) dst[i] += offset;
  }
  t.type = DType::F32;
  t.data = dst;
  t.nbytes = n * sizeof(float);
  owners_.push_back(buf);
}

namespace {
// Canonical tensor order (embedding, layers in numeric order, final norm, output), as llama.cpp's
// converters write it; safetensors headers are sorted as strings ("layers.10" before "layers.2").
int64_t order_key(const std::string& name) {
  if (name.rfind("token_embd", 0) == 0) return -1;
  if (name.rfind("blk.", 0) == 0) return std::strtoll(name.c_str() + 4, nullptr, 10);
  return int64_t{1} << 40;
}
}  // namespace

void Model::bind_and_validate() {
  std::stable_sort(tensors_.begin(), tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return order_key(a.name) < order_key(b.name);
  });
  index_.clear();
  for (size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;
  const ModelConfig& c = config;
  auto check = [&](const std::string& name, std::vector<int64_t> shape, bool required,
                   bool matrix) -> const TensorInfo* {
    const TensorInfo* t = find(name);
    if (t == nullptr) {
      if (required) fail("{}: missing tensor '{}'", path, name);
      return nullptr;
    }
    if (t->shape != shape) {
      fail("{}: tensor '{}' has shape {}, expected {}", path, name, shape_string(t->shape),
           shape_string(shape));
    }
    if (matrix) {
      if (t->type != DType::F32 && t->type != DType::F16 && t->type != DType::BF16 &&
          !is_quantized(t->type)) {
        fail("{}: tensor '{}' has type {}, which the runtime cannot execute yet", path, name,
             dtype_name(t->type));
      }
    } else if (t->type != DType::F32) {
      fail("{}: internal: vector tensor '{}' was not converted to F32", path, name);
    }
    return t;
  };
  const int64_t E = c.n_embd, V = c.n_vocab, Q = c.q_dim(), KV = c.kv_dim(), F = c.n_ff;
  token_embd = check("token_embd.weight", {V, E}, true, true);
  output_norm = check("output_norm.weight", {E}, true, false);
  output = check("output.weight", {V, E}, !c.tied_embeddings, true);
  if (output == nullptr) output = token_embd;
  layers.assign(c.n_layer, {});
  for (int i = 0; i < c.n_layer; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    LayerWeights& L = layers[i];
    L.attn_norm = check(p + "attn_norm.weight", {E}, true, false);
    L.wqkv = check(p + "attn_qkv.weight", {Q + 2 * KV, E}, false, true);
    L.wq = check(p + "attn_q.weight", {Q, E}, L.wqkv == nullptr, true);
    L.wk = check(p + "attn_k.weight", {KV, E}, L.wqkv == nullptr, true);
    L.wv = check(p + "attn_v.weight", {KV, E}, L.wqkv == nullptr, true);
    L.bq = check(p + "attn_q.bias", {Q}, false, false);
    L.bk = check(p + "attn_k.bias", {KV}, false, false);
    L.bv = check(p + "attn_v.bias", {KV}, false, false);
    L.wo = check(p + "attn_output.weight", {E, Q}, true, true);
    L.ffn_norm = check(p + "ffn_norm.weight", {E}, true, false);
    L.w_gate = check(p + "ffn_gate.weight", {F, E}, false, true);
    L.w_up = check(p + "ffn_up.weight", {L.w_gate ? F : 2 * F, E}, true, true);
    L.w_down = check(p + "ffn_down.weight", {E, F}, true, true);
  }
  for (const TensorInfo& t : tensors_) {
    if (t.data == nullptr && t.numel() > 0) fail("{}: tensor '{}' has no data", path, t.name);
  }
}

}  // namespace squish
