#include "export/onnx_export.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "export/onnx_graph.h"
#include "export/onnx_matmulnbits.h"
#include "kernels/cpu/matmul.h"
#include "quant/quant.h"

namespace squish {

namespace {

namespace fs = std::filesystem;
constexpr auto kFloat = OnnxType::Float;
constexpr auto kHalf = OnnxType::Float16;
constexpr auto kUint8 = OnnxType::Uint8;
constexpr auto kInt32 = OnnxType::Int32;
constexpr auto kInt64 = OnnxType::Int64;
constexpr const char* kMicrosoft = "com.microsoft";
constexpr const char* kDataFile = "model.onnx.data";
// Protobuf cannot serialize a message of 2 GiB or more; leave room for the graph itself.
constexpr size_t kEmbeddedLimit = size_t{1800} << 20;
// Initializers smaller than this stay inside model.onnx even with external data.
constexpr size_t kInlineBytes = 1024;

// Initializers go either into the model (inline bytes) or, appended as they are produced, into
// the external data file, so a large model is streamed and never held whole in memory.
class InitializerWriter {
 public:
  InitializerWriter(OnnxModel* model, AtomicFile* data) : model_(model), data_(data) {}

  void add(const std::string& name, OnnxType type, const std::vector<int64_t>& dims,
           const void* bytes, size_t n) {
    OnnxInitializer t;
    t.name = name;
    t.type = type;
    t.dims = dims;
    bytes_ += n;
    if (data_ == nullptr || n < kInlineBytes) {
      t.raw.assign(static_cast<const char*>(bytes), n);
    } else {
      // 4 KiB alignment lets ONNX Runtime memory-map large initializers in place.
      const uint64_t align = n >= (64u << 10) ? 4096 : 64;
      data_->write_zeros((align - data_->tell() % align) % align);
      t.external = true;
      t.offset = data_->tell();
      t.length = n;
      data_->write(bytes, n);
    }
    model_->initializers.push_back(std::move(t));
  }

  size_t bytes() const { return bytes_; }

 private:
  OnnxModel* model_;
  AtomicFile* data_;
  size_t bytes_ = 0;
};

void add_value_info(std::vector<OnnxValueInfo>& list, const std::string& name, OnnxType type,
                    const std::vector<std::string>& dims) {
  list.push_back({name, type, dims});
}

OnnxAttribute attr_int(const char* name, int64_t v) {
  OnnxAttribute a;
  a.name = name;
  a.i = v;
  return a;
}

OnnxAttribute attr_float(const char* name, float v) {
  OnnxAttribute a;
  a.kind = OnnxAttribute::Kind::Float;
  a.name = name;
  a.f = v;
  return a;
}

OnnxAttribute attr_ints(const char* name, std::vector<int64_t> v) {
  OnnxAttribute a;
  a.kind = OnnxAttribute::Kind::Ints;
  a.name = name;
  a.ints = std::move(v);
  return a;
}

void add_node(OnnxModel* g, const std::string& op, const std::vector<std::string>& inputs,
              const std::vector<std::string>& outputs, const std::string& name,
              std::vector<OnnxAttribute> attributes = {}, const char* domain = "") {
  g->nodes.push_back({op, domain, name, inputs, outputs, std::move(attributes)});
}

struct Exporter {
  const Model& model;
  const OnnxExportOptions& opt;
  OnnxModel* g;
  InitializerWriter& init;
  OnnxExportResult& result;
  std::map<const TensorInfo*, DType> planned;  // quantized export: each tensor's planned type

  bool quantized() const { return !opt.plan.empty(); }

  // The tensor's rows in `type`, exactly as the GGUF export writes them (unpermuted).
  std::vector<uint8_t> planned_rows(const TensorInfo& t, DType type) const {
    const int64_t rows = t.rows(), cols = t.cols();
    std::vector<uint8_t> out(row_bytes(type, cols) * rows);
    const uint8_t* pre = opt.prequantized ? opt.prequantized(t, type) : nullptr;
    if (pre != nullptr) {
      std::memcpy(out.data(), pre, out.size());
      return out;
    }
    if (t.type == type) {
      std::memcpy(out.data(), t.data, out.size());
      return out;
    }
    const QuantTraits* qt = quant_traits(type);
    if (qt == nullptr && type != DType::F32)
      fail("ONNX export: internal: type {}", dtype_name(type));
    std::vector<float> importance;
    if (qt != nullptr && opt.imatrix != nullptr) {
      importance = opt.imatrix->importance(t.name);
      if (!importance.empty() && static_cast<int64_t>(importance.size()) != cols) {
        fail("imatrix entry for '{}' has {} values, the tensor has {} columns", t.name,
             importance.size(), cols);
      }
    }
    const size_t in_row = row_bytes(t.type, cols), out_row = row_bytes(type, cols);
#pragma omp parallel
    {
      std::vector<float> row(cols);
#pragma omp for schedule(dynamic, 16)
      for (int64_t r = 0; r < rows; ++r) {
        const uint8_t* src = static_cast<const uint8_t*>(t.data) + r * in_row;
        uint8_t* dst = out.data() + r * out_row;
        float* f = type == DType::F32 ? reinterpret_cast<float*>(dst) : row.data();
        convert_row_to_f32(t.type, src, f, cols);
        if (qt != nullptr)
          qt->quantize(f, dst, cols, importance.empty() ? nullptr : importance.data());
      }
    }
    return out;
  }

  // The weights squish's runtime would use for this tensor, as floats [rows][cols].
  std::vector<float> float_rows(const TensorInfo& t) const {
    DType type = DType::F32;
    if (auto it = planned.find(&t); it != planned.end() && is_quantized(it->second))
      type = it->second;
    std::vector<float> out(t.numel());
    if (!is_quantized(type)) {
      // Vectors AWQ rescaled come from the calibration's store; everything else as loaded.
      const uint8_t* pre =
          t.shape.size() == 1 && opt.prequantized ? opt.prequantized(t, DType::F32) : nullptr;
      if (pre != nullptr) {
        std::memcpy(out.data(), pre, out.size() * sizeof(float));
        return out;
      }
      const size_t in_row = row_bytes(t.type, t.cols());
      for (int64_t r = 0; r < t.rows(); ++r) {
        convert_row_to_f32(t.type, static_cast<const uint8_t*>(t.data) + r * in_row,
                           out.data() + r * t.cols(), t.cols());
      }
      return out;
    }
    std::vector<uint8_t> rows = planned_rows(t, type);
    const size_t stride = row_bytes(type, t.cols());
#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t r = 0; r < t.rows(); ++r) {
      convert_row_to_f32(type, rows.data() + r * stride, out.data() + r * t.cols(), t.cols());
    }
    return out;
  }

  // A float vector (norm weight, bias), through the calibration's store when AWQ rescaled it.
  std::string vector_initializer(const TensorInfo& t, const std::string& name) {
    std::vector<float> v = float_rows(t);
    init.add(name, kFloat, {t.numel()}, v.data(), v.size() * sizeof(float));
    return name;
  }

  // W [n][k] as MatMulNBits blocks: exact for Q4_0 / Q8_0 at block 32, else requantized.
  MatMulNBitsWeight nbits_weight(const TensorInfo& w, DType type) {
    const int64_t n = w.rows(), k = w.cols();
    MatMulNBitsWeight q;
    const bool from_quantized = is_quantized(w.type) || opt.prequantized != nullptr;
    if (matmulnbits_exact(type, opt.block_size)) {
      std::vector<uint8_t> rows = planned_rows(w, type);
      q = matmulnbits_from_blocks(type, rows.data(), n, k);
      result.exact_matrices++;
    } else {
      // Requantize what the GGUF would hold (a calibrated or already-quantized source), or
      // quantize the float weights directly (one rounding instead of two).
      std::vector<float> ref = from_quantized ? float_rows(w) : std::vector<float>();
      if (!from_quantized) {
        ref.resize(w.numel());
        const size_t in_row = row_bytes(w.type, k);
        for (int64_t r = 0; r < n; ++r) {
          convert_row_to_f32(w.type, static_cast<const uint8_t*>(w.data) + r * in_row,
                             ref.data() + r * k, k);
        }
      }
      q = matmulnbits_quantize(ref.data(), n, k, matmulnbits_bits_for(type), opt.block_size);
      double err = 0, norm = 0;
      std::vector<float> row(k);
      for (int64_t r = 0; r < n; ++r) {
        matmulnbits_dequantize_row(q, r, row.data());
        for (int64_t c = 0; c < k; ++c) {
          const double d = row[c] - ref[r * k + c];
          err += d * d;
          norm += double(ref[r * k + c]) * ref[r * k + c];
        }
      }
      if (norm > 0) {
        result.max_requant_rel_rms = std::max(result.max_requant_rel_rms, std::sqrt(err / norm));
      }
      result.requantized_matrices++;
    }
    return q;
  }

  // Y = X W^T (+ b) for W [n][k]: MatMul with a transposed float initializer, or MatMulNBits.
  std::string linear(const std::string& x, const TensorInfo& w, const TensorInfo* bias,
                     const std::string& name) {
    const int64_t n = w.rows(), k = w.cols();
    const std::string y = name + "/output_0";
    const std::string out = bias != nullptr ? name + "/matmul_output_0" : y;
    DType type = planned.count(&w) ? planned.at(&w) : opt.type;
    if (quantized() && is_quantized(type)) {
      const MatMulNBitsWeight q = nbits_weight(w, type);
      init.add(name + ".qweight", kUint8, {n, q.blocks(), q.blob_bytes()}, q.codes.data(),
               q.codes.size());
      init.add(name + ".scales", kFloat, {n * q.blocks()}, q.scales.data(),
               q.scales.size() * sizeof(float));
      std::vector<std::string> inputs = {x, name + ".qweight", name + ".scales"};
      if (!q.zero_points.empty()) {
        init.add(name + ".qzeros", kUint8, {static_cast<int64_t>(q.zero_points.size())},
                 q.zero_points.data(), q.zero_points.size());
        inputs.push_back(name + ".qzeros");
      }
      add_node(
          g, "MatMulNBits", inputs, {out}, name,
          {attr_int("K", k), attr_int("N", n), attr_int("bits", q.bits),
           attr_int("block_size", q.block_size), attr_int("accuracy_level", opt.accuracy_level)},
          kMicrosoft);
    } else {
      std::vector<float> rows = float_rows(w);
      const bool half = opt.type == DType::F16 || (quantized() && type == DType::F16);
      std::vector<float> wt(rows.size());
      for (int64_t r = 0; r < n; ++r)
        for (int64_t c = 0; c < k; ++c) wt[c * n + r] = rows[r * k + c];
      std::string weight = name + ".weight";
      if (half) {
        std::vector<uint16_t> h(wt.size());
        for (size_t i = 0; i < wt.size(); ++i) h[i] = fp32_to_fp16(wt[i]);
        init.add(weight + ".f16", kHalf, {k, n}, h.data(), h.size() * 2);
        // Stored half, multiplied in float: ONNX Runtime folds the cast at load.
        add_node(g, "Cast", {weight + ".f16"}, {weight}, name + "/Cast",
                 {attr_int("to", int64_t(kFloat))});
      } else {
        init.add(weight, kFloat, {k, n}, wt.data(), wt.size() * sizeof(float));
      }
      add_node(g, "MatMul", {x, weight}, {out}, name + "/MatMul");
    }
    if (bias != nullptr) {
      add_node(g, "Add", {out, vector_initializer(*bias, name + ".bias")}, {y}, name + "/Add");
    }
    return y;
  }
};

// Rows [max_length][n_rot/2] of cos and sin of position * inverse frequency (scaling applied).
void rope_caches(const ModelConfig& c, int max_length, std::vector<float>& cos_t,
                 std::vector<float>& sin_t) {
  const int half = c.n_rot / 2;
  cos_t.resize(size_t(max_length) * half);
  sin_t.resize(cos_t.size());
  for (int p = 0; p < max_length; ++p) {
    for (int i = 0; i < half; ++i) {
      const double a = p * c.rope_inv_freq[i];
      cos_t[size_t(p) * half + i] = static_cast<float>(std::cos(a));
      sin_t[size_t(p) * half + i] = static_cast<float>(std::sin(a));
    }
  }
}

size_t estimate_weight_bytes(const Model& model, const OnnxExportOptions& opt) {
  size_t total = 0;
  for (size_t i = 0; i < model.tensors().size(); ++i) {
    const TensorInfo& t = model.tensors()[i];
    double per = 4;
    if (t.shape.size() >= 2) {
      if (!opt.plan.empty() && is_quantized(opt.plan[i].type)) {
        per = matmulnbits_bits_for(opt.plan[i].type) / 8.0 + 5.0 / opt.block_size;
      } else if (opt.type == DType::F16 || !opt.plan.empty()) {
        per = 2;
      }
    }
    total += static_cast<size_t>(t.numel() * per);
  }
  if (model.output == model.token_embd) total += model.token_embd->numel() * 4;
  return total;
}

void write_genai_config(const Model& model, const OnnxExportOptions& opt, int max_length,
                        const std::string& dir) {
  const ModelConfig& c = model.config;
  nlohmann::json inputs = {{"input_ids", "input_ids"},
                           {"attention_mask", "attention_mask"},
                           {"position_ids", "position_ids"},
                           {"past_key_names", "past_key_values.%d.key"},
                           {"past_value_names", "past_key_values.%d.value"}};
  nlohmann::json outputs = {{"logits", "logits"},
                            {"present_key_names", "present.%d.key"},
                            {"present_value_names", "present.%d.value"}};
  nlohmann::json decoder = {
      {"session_options",
       {{"log_id", "onnxruntime-genai"}, {"provider_options", nlohmann::json::array()}}},
      {"filename", "model.onnx"},
      {"head_size", c.head_dim},
      {"hidden_size", c.n_embd},
      {"inputs", inputs},
      {"outputs", outputs},
      {"num_attention_heads", c.n_head},
      {"num_hidden_layers", c.n_layer},
      {"num_key_value_heads", c.n_head_kv}};
  const int eos = c.eos_id >= 0 ? c.eos_id : 0;
  nlohmann::json j = {{"model",
                       {{"bos_token_id", c.bos_id >= 0 ? c.bos_id : 0},
                        {"context_length", max_length},
                        {"decoder", decoder},
                        {"eos_token_id", eos},
                        {"pad_token_id", eos},
                        {"type", c.arch == Arch::Qwen2 ? "qwen2" : "llama"},
                        {"vocab_size", c.n_vocab}}},
                      {"search",
                       {{"diversity_penalty", 0.0},
                        {"do_sample", false},
                        {"early_stopping", true},
                        {"length_penalty", 1.0},
                        {"max_length", max_length},
                        {"min_length", 0},
                        {"no_repeat_ngram_size", 0},
                        {"num_beams", 1},
                        {"num_return_sequences", 1},
                        {"past_present_share_buffer", false},
                        {"repetition_penalty", 1.0},
                        {"temperature", 1.0},
                        {"top_k", 1},
                        {"top_p", 1.0}}}};
  (void)opt;
  write_file_atomic((fs::path(dir) / "genai_config.json").string(), j.dump(4) + "\n");
}

// The tokenizer and configuration files genai (and transformers) read, from a Hugging Face
// folder; GGUF and llama2.c sources have none to copy.
std::vector<std::string> copy_tokenizer_files(const Model& model, const std::string& dir) {
  std::vector<std::string> copied;
  if (model.format != SourceFormat::HuggingFace) return copied;
  for (const char* name :
       {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
        "vocab.json", "merges.txt", "added_tokens.json", "generation_config.json", "config.json"}) {
    const fs::path src = fs::path(model.path) / name;
    if (!fs::is_regular_file(src)) continue;
    const std::string text = [&] {
      FILE* f = std::fopen(src.c_str(), "rb");
      if (f == nullptr) fail("{}: cannot open", src.string());
      std::string s;
      char buf[1 << 16];
      size_t got;
      while ((got = std::fread(buf, 1, sizeof(buf), f)) > 0) s.append(buf, got);
      std::fclose(f);
      return s;
    }();
    write_file_atomic((fs::path(dir) / name).string(), text);
    copied.push_back(name);
  }
  return copied;
}

}  // namespace

OnnxExportResult export_onnx(const Model& model, const std::string& out_dir,
                             const OnnxExportOptions& opt) {
  const ModelConfig& c = model.config;
  if (c.arch != Arch::Llama && c.arch != Arch::Qwen2) {
    fail("{}: ONNX export supports llama and qwen2 models, not {}", model.path, c.arch_name());
  }
  if (c.activation != Activation::SiLU || c.scale_embeddings) {
    fail("{}: ONNX export: unsupported activation or embedding scale", model.path);
  }
  if (c.n_rot != c.head_dim) fail("{}: ONNX export: partial rotary is not supported", model.path);
  for (const LayerWeights& l : model.layers) {
    if (l.wq == nullptr || l.w_gate == nullptr) {
      fail("{}: ONNX export: fused QKV or gate/up weights are not supported", model.path);
    }
  }
  if (!opt.plan.empty() && opt.plan.size() != model.tensors().size()) {
    fail("internal: quantization plan has {} entries for {} tensors", opt.plan.size(),
         model.tensors().size());
  }
  if (opt.plan.empty() && opt.type != DType::F32 && opt.type != DType::F16) {
    fail("ONNX export: weight type {} (f32, f16 or a quantized plan)", dtype_name(opt.type));
  }
  if (opt.block_size < 16 || opt.block_size > 256 || (opt.block_size & (opt.block_size - 1))) {
    fail("ONNX export: block size {} (16, 32, 64, 128 or 256)", opt.block_size);
  }
  if (opt.accuracy_level < 0 || opt.accuracy_level > 4) {
    fail("ONNX export: accuracy level {} (0 to 4)", opt.accuracy_level);
  }
  int max_length = opt.max_length > 0 ? opt.max_length : c.n_ctx_train;
  if (max_length <= 0) max_length = 4096;
  if (max_length > (1 << 20)) fail("ONNX export: max length {} is too large", max_length);

  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec || !fs::is_directory(out_dir))
    fail("{}: cannot create folder ({})", out_dir, ec.message());

  OnnxExportResult result;
  result.model_path = (fs::path(out_dir) / "model.onnx").string();
  const bool external = opt.external_data || estimate_weight_bytes(model, opt) > kEmbeddedLimit;
  std::unique_ptr<AtomicFile> data;
  if (external) {
    result.data_path = (fs::path(out_dir) / kDataFile).string();
    data = std::make_unique<AtomicFile>(result.data_path);
  }

  OnnxModel proto;
  proto.ir_version = 8;  // ONNX 1.12 (Debian 12's libonnx)
  proto.producer = "squish";
  proto.producer_version = SQUISH_VERSION;
  proto.opsets = {{"", 17}, {kMicrosoft, 1}};
  proto.graph_name = fs::path(model.path).filename().string() + " decoder";
  if (external) proto.data_file = kDataFile;
  OnnxModel* g = &proto;
  InitializerWriter init(g, data.get());
  Exporter ex{model, opt, g, init, result, {}};
  for (size_t i = 0; i < opt.plan.size(); ++i) ex.planned[&model.tensors()[i]] = opt.plan[i].type;

  // Inputs and outputs, named as onnxruntime-genai's model builder names them.
  add_value_info(g->inputs, "input_ids", kInt64, {"batch_size", "sequence_length"});
  add_value_info(g->inputs, "attention_mask", kInt64, {"batch_size", "total_sequence_length"});
  add_value_info(g->inputs, "position_ids", kInt64, {"batch_size", "sequence_length"});
  const std::string kv_heads = std::to_string(c.n_head_kv), head = std::to_string(c.head_dim);
  for (int i = 0; i < c.n_layer; ++i) {
    for (const char* kv : {"key", "value"}) {
      add_value_info(g->inputs, fmt::format("past_key_values.{}.{}", i, kv), kFloat,
                     {"batch_size", kv_heads, "past_sequence_length", head});
    }
  }
  add_value_info(g->outputs, "logits", kFloat,
                 {"batch_size", "sequence_length", std::to_string(c.n_vocab)});
  for (int i = 0; i < c.n_layer; ++i) {
    for (const char* kv : {"key", "value"}) {
      add_value_info(g->outputs, fmt::format("present.{}.{}", i, kv), kFloat,
                     {"batch_size", kv_heads, "total_sequence_length", head});
    }
  }

  // GroupQueryAttention's lengths: seqlens_k = tokens per row - 1, total = mask width.
  add_node(g, "ReduceSum", {"attention_mask", "/model/attn_mask_reformat/axes_1"},
           {"/model/attn_mask_reformat/sum"}, "/model/attn_mask_reformat/ReduceSum",
           {attr_int("keepdims", 0)});
  const int64_t axis1 = 1, one = 1;
  init.add("/model/attn_mask_reformat/axes_1", kInt64, {1}, &axis1, sizeof(axis1));
  init.add("/model/constants/one_i64", kInt64, {}, &one, sizeof(one));
  add_node(g, "Sub", {"/model/attn_mask_reformat/sum", "/model/constants/one_i64"},
           {"/model/attn_mask_reformat/sub"}, "/model/attn_mask_reformat/Sub");
  add_node(g, "Cast", {"/model/attn_mask_reformat/sub"}, {"/model/seqlens_k"},
           "/model/attn_mask_reformat/Cast_seqlens", {attr_int("to", int64_t(kInt32))});
  add_node(g, "Shape", {"attention_mask"}, {"/model/attn_mask_reformat/shape"},
           "/model/attn_mask_reformat/Shape");
  init.add("/model/constants/index_1", kInt64, {}, &axis1, sizeof(axis1));
  add_node(g, "Gather", {"/model/attn_mask_reformat/shape", "/model/constants/index_1"},
           {"/model/attn_mask_reformat/total_i64"}, "/model/attn_mask_reformat/Gather",
           {attr_int("axis", 0)});
  add_node(g, "Cast", {"/model/attn_mask_reformat/total_i64"}, {"/model/total_seq_len"},
           "/model/attn_mask_reformat/Cast_total", {attr_int("to", int64_t(kInt32))});

  std::vector<float> cos_t, sin_t;
  rope_caches(c, max_length, cos_t, sin_t);
  const int64_t half = c.n_rot / 2;
  init.add("cos_cache", kFloat, {max_length, half}, cos_t.data(), cos_t.size() * 4);
  init.add("sin_cache", kFloat, {max_length, half}, sin_t.data(), sin_t.size() * 4);

  size_t tensors_done = 0;
  const size_t tensors_total = model.tensors().size();
  auto tick = [&](size_t n) {
    tensors_done += n;
    if (opt.progress) opt.progress(std::min(tensors_done, tensors_total), tensors_total);
  };

  // Embedding: a float table (half unless the export is F32) gathered by token id.
  {
    const TensorInfo& e = *model.token_embd;
    const DType etype = ex.planned.count(&e) ? ex.planned.at(&e) : opt.type;
    if (ex.quantized() && is_quantized(etype) && !opt.f32_embedding) {
      // GatherBlockQuantized reads uint8 codes with MatMulNBits' layout and default zero points.
      const MatMulNBitsWeight q = ex.nbits_weight(e, etype);
      const int64_t rows = e.rows();
      init.add("model.embed_tokens.qweight", kUint8, {rows, q.blocks() * q.blob_bytes()},
               q.codes.data(), q.codes.size());
      init.add("model.embed_tokens.scales", kFloat, {rows, q.blocks()}, q.scales.data(),
               q.scales.size() * sizeof(float));
      std::vector<std::string> inputs = {"model.embed_tokens.qweight", "input_ids",
                                         "model.embed_tokens.scales"};
      if (!q.zero_points.empty()) {
        init.add("model.embed_tokens.qzeros", kUint8, {rows, q.zp_bytes_per_row()},
                 q.zero_points.data(), q.zero_points.size());
        inputs.push_back("model.embed_tokens.qzeros");
      }
      add_node(g, "GatherBlockQuantized", inputs, {"/model/embed_tokens/output_0"},
               "/model/embed_tokens/GatherBlockQuantized",
               {attr_int("gather_axis", 0), attr_int("quantize_axis", 1),
                attr_int("block_size", q.block_size), attr_int("bits", q.bits)},
               kMicrosoft);
      result.quantized_embedding = true;
    } else if ((opt.type == DType::F32 && !ex.quantized()) || opt.f32_embedding) {
      std::vector<float> table = ex.float_rows(e);
      init.add("model.embed_tokens.weight", kFloat, e.shape, table.data(), table.size() * 4);
      add_node(g, "Gather", {"model.embed_tokens.weight", "input_ids"},
               {"/model/embed_tokens/output_0"}, "/model/embed_tokens/Gather");
    } else {
      std::vector<float> table = ex.float_rows(e);
      std::vector<uint16_t> h(table.size());
      for (size_t i = 0; i < h.size(); ++i) h[i] = fp32_to_fp16(table[i]);
      init.add("model.embed_tokens.weight", kHalf, e.shape, h.data(), h.size() * 2);
      add_node(g, "Gather", {"model.embed_tokens.weight", "input_ids"},
               {"/model/embed_tokens/half"}, "/model/embed_tokens/Gather");
      add_node(g, "Cast", {"/model/embed_tokens/half"}, {"/model/embed_tokens/output_0"},
               "/model/embed_tokens/Cast", {attr_int("to", int64_t(kFloat))});
    }
    tick(1);
  }

  // First norm without a residual to add: RMSNorm from standard ops.
  std::string residual = "/model/embed_tokens/output_0";
  std::string pending;  // output of the last block, still to be added to the residual
  auto norm = [&](const TensorInfo& w, const std::string& name) -> std::string {
    const std::string weight = ex.vector_initializer(w, name + ".weight");
    const std::string out = name + "/output_0";
    if (pending.empty()) {
      const float eps = c.norm_eps;
      init.add(name + "/eps", kFloat, {}, &eps, sizeof(eps));
      add_node(g, "Mul", {residual, residual}, {name + "/sq"}, name + "/Mul_sq");
      add_node(g, "ReduceMean", {name + "/sq"}, {name + "/mean"}, name + "/ReduceMean",
               {attr_ints("axes", {-1})});
      add_node(g, "Add", {name + "/mean", name + "/eps"}, {name + "/var"}, name + "/Add");
      add_node(g, "Sqrt", {name + "/var"}, {name + "/std"}, name + "/Sqrt");
      add_node(g, "Div", {residual, name + "/std"}, {name + "/normed"}, name + "/Div");
      add_node(g, "Mul", {name + "/normed", weight}, {out}, name + "/Mul");
      return out;
    }
    // residual += pending; out = RMSNorm(residual) * weight, fused.
    const std::string sum = name + "/input_skip_bias_sum";
    add_node(g, "SkipSimplifiedLayerNormalization", {pending, residual, weight}, {out, "", "", sum},
             name + "/SkipLayerNorm", {attr_float("epsilon", c.norm_eps)}, kMicrosoft);
    residual = sum;
    pending.clear();
    return out;
  };

  for (int i = 0; i < c.n_layer; ++i) {
    const LayerWeights& l = model.layers[i];
    const std::string p = fmt::format("/model/layers.{}", i);
    const std::string h = norm(*l.attn_norm, p + "/input_layernorm");
    const std::string q = ex.linear(h, *l.wq, l.bq, p + "/attn/q_proj");
    const std::string k = ex.linear(h, *l.wk, l.bk, p + "/attn/k_proj");
    const std::string v = ex.linear(h, *l.wv, l.bv, p + "/attn/v_proj");
    std::string qr = p + "/attn/q_rotary/output_0", kr = p + "/attn/k_rotary/output_0";
    for (auto [in, out, heads, nm] :
         {std::tuple{q, qr, c.n_head, "q_rotary"}, std::tuple{k, kr, c.n_head_kv, "k_rotary"}}) {
      add_node(g, "RotaryEmbedding", {in, "position_ids", "cos_cache", "sin_cache"}, {out},
               p + "/attn/" + nm + "/RotaryEmbedding",
               {attr_int("interleaved", c.rope_style == RopeStyle::Interleaved ? 1 : 0),
                attr_int("num_heads", heads)},
               kMicrosoft);
    }
    const std::string attn = p + "/attn/GroupQueryAttention/output_0";
    add_node(
        g, "GroupQueryAttention",
        {qr, kr, v, fmt::format("past_key_values.{}.key", i),
         fmt::format("past_key_values.{}.value", i), "/model/seqlens_k", "/model/total_seq_len"},
        {attn, fmt::format("present.{}.key", i), fmt::format("present.{}.value", i)},
        p + "/attn/GroupQueryAttention",
        {attr_int("num_heads", c.n_head), attr_int("kv_num_heads", c.n_head_kv),
         attr_float("scale", static_cast<float>(1.0 / std::sqrt(double(c.head_dim))))},
        kMicrosoft);
    pending = ex.linear(attn, *l.wo, nullptr, p + "/attn/o_proj");
    tick(1 + 4 + (l.bq ? 3 : 0));

    const std::string h2 = norm(*l.ffn_norm, p + "/post_attention_layernorm");
    const std::string gate = ex.linear(h2, *l.w_gate, nullptr, p + "/mlp/gate_proj");
    const std::string up = ex.linear(h2, *l.w_up, nullptr, p + "/mlp/up_proj");
    add_node(g, "Sigmoid", {gate}, {p + "/mlp/act_fn/sigmoid"}, p + "/mlp/act_fn/Sigmoid");
    add_node(g, "Mul", {gate, p + "/mlp/act_fn/sigmoid"}, {p + "/mlp/act_fn/output_0"},
             p + "/mlp/act_fn/Mul");
    add_node(g, "Mul", {p + "/mlp/act_fn/output_0", up}, {p + "/mlp/mul/output_0"}, p + "/mlp/Mul");
    pending = ex.linear(p + "/mlp/mul/output_0", *l.w_down, nullptr, p + "/mlp/down_proj");
    tick(4);
  }
  const std::string final_h = norm(*model.output_norm, "/model/norm");
  const std::string logits = ex.linear(final_h, *model.output, nullptr, "/lm_head");
  add_node(g, "Identity", {logits}, {"logits"}, "/lm_head/Identity");
  tick(tensors_total);
  result.weight_bytes = init.bytes();

  // Validate before the model becomes visible (external data first: the check finds it there).
  if (data) data->commit();
  const std::string bytes = onnx_serialize_checked(proto, out_dir);
  write_file_atomic(result.model_path, bytes);
  write_genai_config(model, opt, max_length, out_dir);
  result.copied_files = copy_tokenizer_files(model, out_dir);
  return result;
}

}  // namespace squish
