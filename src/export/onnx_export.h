// Writes a Model as an ONNX decoder that ONNX Runtime (and onnxruntime-genai) runs: one graph
// with KV-cache inputs and outputs named as genai expects (past_key_values.{i}.key/value in,
// present.{i}.key/value out, BNSH layout), com.microsoft contrib ops where ONNX Runtime's CPU
// provider has fused kernels (GroupQueryAttention, RotaryEmbedding, SkipSimplifiedLayer-
// Normalization, MatMulNBits), a genai_config.json and the source's tokenizer files.
//
// Weights: F32, F16 (stored half, cast to float at load) or quantized as MatMulNBits from the same
// per-tensor plan and quantizers the GGUF export uses (Q4_0 / Q8_0 blocks map exactly at block
// size 32; other types and block sizes are requantized, see docs/onnx.md). The graph is checked
// with onnx::checker before anything is written; files go through AtomicFile.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "model/model.h"
#include "quant/imatrix.h"
#include "quant/mix.h"

namespace squish {

struct OnnxExportOptions {
  DType type = DType::F32;       // F32 or F16 when `plan` is empty
  std::vector<TensorPlan> plan;  // quantized export: one entry per model tensor
  int block_size = 32;           // MatMulNBits block size: 16..256, power of two
  int accuracy_level = 4;        // MatMulNBits: 0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8 compute
  bool external_data = false;    // weights in model.onnx.data (forced above ~1.8 GB)
  bool f32_embedding = false;    // embedding table in F32 also in F16 / quantized exports
  int max_length = 0;            // RoPE cache rows / genai context_length; 0: training context
  const Imatrix* imatrix = nullptr;
  // Tensors already quantized by a calibrated method (GPTQ / AWQ), as for the GGUF export.
  std::function<const uint8_t*(const TensorInfo&, DType)> prequantized;
  std::function<void(size_t, size_t)> progress;
};

struct OnnxExportResult {
  std::string model_path;   // DIR/model.onnx
  std::string data_path;    // DIR/model.onnx.data, empty when embedded
  size_t weight_bytes = 0;  // initializer bytes
  int exact_matrices = 0;   // MatMulNBits matrices mapped block for block
  int requantized_matrices = 0;
  bool quantized_embedding = false;  // GatherBlockQuantized (counted in the matrices above)
  double max_requant_rel_rms = 0;    // worst per-matrix RMS(requantized - planned) / RMS(planned)
  std::vector<std::string> copied_files;  // tokenizer / config files copied beside the model
};

OnnxExportResult export_onnx(const Model& model, const std::string& out_dir,
                             const OnnxExportOptions& options);

}  // namespace squish
