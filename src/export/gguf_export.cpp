#include "export/gguf_export.h"

#include <cstring>
#include <filesystem>
#include <vector>

#include "core/error.h"
#include "formats/gguf.h"
#include "kernels/cpu/matmul.h"
#include "quant/quant.h"

namespace squish {

int gguf_file_type(DType type) {
  switch (type) {
    case DType::Q4_0:
      return 2;
    case DType::Q4_1:
      return 3;
    case DType::Q8_0:
      return 7;
    case DType::Q5_0:
      return 8;
    case DType::Q5_1:
      return 9;
    case DType::Q2_K:
      return 10;
    case DType::Q3_K:
      return 12;
    case DType::Q4_K:
      return 15;
    case DType::Q5_K:
      return 17;
    case DType::Q6_K:
      return 18;
    case DType::IQ4_NL:
      return 25;
    case DType::IQ4_XS:
      return 30;
    case DType::F32:
      return 0;
    case DType::F16:
      return 1;
    case DType::BF16:
      return 32;
    default:
      fail("GGUF export: unsupported output type {}", dtype_name(type));
  }
}

namespace {

// Hugging Face stores Llama's Wq/Wk for rotate-half RoPE; llama.cpp's llama architecture rotates
// adjacent pairs. Within each head, HF row (i * D/2 + j) becomes row (2 j + i).
std::vector<int64_t> neox_to_interleaved_rows(int64_t rows, int head_dim) {
  std::vector<int64_t> src(rows);
  const int half = head_dim / 2;
  for (int64_t h = 0; h < rows / head_dim; ++h) {
    for (int j = 0; j < half; ++j) {
      for (int i = 0; i < 2; ++i) src[h * head_dim + 2 * j + i] = h * head_dim + i * half + j;
    }
  }
  return src;
}

void convert_from_f32(const float* src, DType type, int64_t n, uint8_t* dst) {
  switch (type) {
    case DType::F32:
      std::memcpy(dst, src, n * sizeof(float));
      return;
    case DType::F16: {
      uint16_t* d = reinterpret_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = fp32_to_fp16(src[i]);
      return;
    }
    case DType::BF16: {
      uint16_t* d = reinterpret_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = fp32_to_bf16(src[i]);
      return;
    }
    default:
      fail("GGUF export: unsupported output type {}", dtype_name(type));
  }
}

// The method as the caller described it, with what it left empty derived from the options.
ManifestMethod manifest_method(const GGUFExportOptions& opt) {
  ManifestMethod m = opt.method;
  const bool quantized = !opt.plan.empty();
  if (m.command.empty()) m.command = quantized ? "quantize" : "convert";
  if (m.type.empty()) {
    m.type = quantized ? "custom" : dtype_name(opt.type);
    for (const QuantMix& mix : quant_mixes()) {
      if (quantized && mix.file_type == opt.file_type) m.type = mix.name;
    }
  }
  if (m.algorithm.empty()) m.algorithm = !quantized ? "cast" : opt.imatrix ? "imatrix" : "rtn";
  return m;
}

}  // namespace

void export_gguf(const Model& model, const std::string& out_path, const GGUFExportOptions& opt) {
  const ModelConfig& c = model.config;
  if (opt.plan.empty()) gguf_file_type(opt.type);  // validates the type
  if (!opt.plan.empty() && opt.plan.size() != model.tensors().size()) {
    fail("internal: quantization plan has {} entries for {} tensors", opt.plan.size(),
         model.tensors().size());
  }
  const bool permute_qk = c.arch == Arch::Llama && c.rope_style == RopeStyle::Neox;
  if (c.arch != Arch::Llama && c.rope_style != RopeStyle::Neox) {
    fail("{}: internal: {} with interleaved RoPE cannot be written as GGUF", model.path,
         c.arch_name());
  }
  if (permute_qk && c.n_rot != c.head_dim) {
    fail("{}: partial rotary Llama models cannot be converted to GGUF yet", model.path);
  }

  GGUFWriter w(out_path);
  std::string name = opt.name;
  if (name.empty()) name = std::filesystem::path(model.path).filename().string();
  w.set("general.name", GGUFValue::str(name));
  w.set("general.file_type",
        GGUFValue::u32(opt.file_type >= 0 ? opt.file_type : gguf_file_type(opt.type)));
  if (!opt.plan.empty()) w.set("general.quantization_version", GGUFValue::u32(2));
  config_to_gguf(c, w);
  if (model.tokenizer) {
    model.tokenizer->write_gguf(w);
  } else {
    w.set("tokenizer.ggml.model", GGUFValue::str("no_vocab"));
  }

  struct Item {
    const TensorInfo* t;
    DType out_type;
  };
  std::vector<Item> items;
  for (size_t k = 0; k < model.tensors().size(); ++k) {
    const TensorInfo& t = model.tensors()[k];
    const bool matrix = t.shape.size() >= 2;
    DType out = matrix ? opt.type : DType::F32;
    if (!opt.plan.empty()) out = opt.plan[k].type;
    if (t.cols() % traits(out).block_size != 0) {
      fail("{}: tensor '{}' has {} columns, not a multiple of {}'s block size {}", model.path,
           t.name, t.cols(), dtype_name(out), traits(out).block_size);
    }
    items.push_back({&t, out});
    w.add_tensor(t.name, out, t.shape);
  }
  for (const auto& [key, value] : opt.extra_metadata) w.set(key, value);
  std::vector<float> rope_factors;
  if (c.rope_scaling.type == RopeScaling::Type::Llama3) {
    rope_factors = llama3_rope_freq_factors(c);
    w.add_tensor("rope_freqs.weight", DType::F32, {static_cast<int64_t>(rope_factors.size())});
  }
  // The manifest describes the file exactly as written: every tensor in file order.
  std::vector<ManifestTensor> written;
  for (const Item& item : items) {
    written.push_back({item.t->name, dtype_name(item.out_type), item.t->shape,
                       row_bytes(item.out_type, item.t->cols()) * item.t->rows()});
  }
  if (!rope_factors.empty()) {
    written.push_back({"rope_freqs.weight", dtype_name(DType::F32),
                       {static_cast<int64_t>(rope_factors.size())},
                       rope_factors.size() * sizeof(float)});
  }
  Manifest manifest = build_manifest(model, manifest_method(opt), written, out_path);
  manifest_to_gguf(manifest, w);
  w.write_header();

  std::vector<uint8_t> out;
  for (size_t k = 0; k < items.size(); ++k) {
    const TensorInfo& t = *items[k].t;
    const DType ot = items[k].out_type;
    const int64_t cols = t.cols(), rows = t.rows();
    std::vector<int64_t> order;
    const bool is_q = t.name.ends_with("attn_q.weight") || t.name.ends_with("attn_q.bias");
    const bool is_k = t.name.ends_with("attn_k.weight") || t.name.ends_with("attn_k.bias");
    if (permute_qk && (is_q || is_k)) {
      // Biases are permuted like rows: treat a [n] bias as n rows of one element.
      const bool bias = t.shape.size() == 1;
      order = neox_to_interleaved_rows(bias ? t.numel() : rows, c.head_dim);
    }
    const size_t out_row = row_bytes(ot, cols);
    out.resize(out_row * rows);
    const size_t in_row = row_bytes(t.type, cols);
    const QuantTraits* qt = quant_traits(ot);
    const uint8_t* pre = opt.prequantized ? opt.prequantized(t, ot) : nullptr;
    std::vector<float> importance;
    if (qt != nullptr && opt.imatrix != nullptr) {
      importance = opt.imatrix->importance(t.name);
      if (!importance.empty() && static_cast<int64_t>(importance.size()) != cols) {
        fail("imatrix entry for '{}' has {} values, the tensor has {} columns", t.name,
             importance.size(), cols);
      }
    }
    if (t.shape.size() == 1 && !order.empty()) {
      const float* src = static_cast<const float*>(t.data);
      std::vector<float> permuted(t.numel());
      for (int64_t i = 0; i < t.numel(); ++i) permuted[i] = src[order[i]];
      convert_from_f32(permuted.data(), ot, t.numel(), out.data());
    } else if (t.type == ot && order.empty() && pre == nullptr) {
      std::memcpy(out.data(), t.data, out.size());
    } else {
#pragma omp parallel
      {
        std::vector<float> row(cols);
#pragma omp for schedule(dynamic, 16)
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t src_row = order.empty() ? r : order[r];
          const uint8_t* src = static_cast<const uint8_t*>(t.data) + src_row * in_row;
          uint8_t* dst = out.data() + r * out_row;
          if (pre != nullptr) {
            std::memcpy(dst, pre + src_row * out_row, out_row);
            continue;
          }
          if (t.type == ot) {
            std::memcpy(dst, src, out_row);
            continue;
          }
          convert_row_to_f32(t.type, src, row.data(), cols);
          if (qt != nullptr) {
            qt->quantize(row.data(), dst, cols, importance.empty() ? nullptr : importance.data());
          } else {
            convert_from_f32(row.data(), ot, cols, dst);
          }
        }
      }
    }
    w.write_tensor_data(t.name, out.data(), out.size());
    if (opt.progress) opt.progress(k + 1, items.size());
  }
  if (!rope_factors.empty()) {
    w.write_tensor_data("rope_freqs.weight", rope_factors.data(),
                        rope_factors.size() * sizeof(float));
  }
  w.finish();
  // The sidecar follows the model, so a sidecar never describes a file that is not there.
  manifest.file_bytes = std::filesystem::file_size(out_path);
  write_sidecar(manifest, out_path);
}

}  // namespace squish
