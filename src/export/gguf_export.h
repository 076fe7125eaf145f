// Writes a Model as a GGUF file that llama.cpp loads unchanged: architecture and tokenizer
// metadata, tensors under llama.cpp's names, 1-D tensors in F32, matrices in the requested type.
// Streams one tensor at a time (peak extra memory: one tensor) through an atomic temp file.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "formats/gguf.h"

#include "core/dtype.h"
#include "export/manifest.h"
#include "model/model.h"
#include "quant/imatrix.h"
#include "quant/mix.h"

namespace squish {

struct GGUFExportOptions {
  DType type = DType::F16;  // F32, F16 or BF16 for matrices (float export)
  // Quantized export: one entry per model tensor (plan_quantization), overriding `type`.
  std::vector<TensorPlan> plan;
  int file_type = -1;                // general.file_type; -1: derived from `type`
  const Imatrix* imatrix = nullptr;  // per-column importance for the quantizers
  std::string name;                  // general.name; default: the source's file or folder name
  std::vector<std::pair<std::string, GGUFValue>> extra_metadata;
  // Recorded in the output's manifest (squish.* keys and the <out>.manifest.json sidecar written
  // after the model). Empty fields are derived from the options above.
  ManifestMethod method;
  // Called after each tensor with (tensors done, total).
  std::function<void(size_t, size_t)> progress;
  // Tensors already quantized by a calibrated method (GPTQ): returns the tensor's data in its
  // planned type, rows in the model's order (permuted here like any other), or nullptr to
  // quantize the tensor here.
  std::function<const uint8_t*(const TensorInfo&, DType)> prequantized;
};

void export_gguf(const Model& model, const std::string& out_path, const GGUFExportOptions& options);

// llama.cpp's "file_type" code for a float output type.
int gguf_file_type(DType type);

}  // namespace squish
