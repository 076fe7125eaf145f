// Quantization "mixes": which type each tensor gets for a named target such as Q4_K_M. The rules
// follow llama-quantize's (llama.cpp src/llama-quant.cpp) so users get the files they expect:
// attn_v / ffn_down bumped in the layers that matter most, output in Q6_K, fallbacks to 32-wide
// block types when a row length is not a multiple of 256, 1-D tensors kept in F32.
#pragma once

#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "model/model.h"

namespace squish {

struct QuantMix {
  std::string name;  // "Q4_K_M"
  DType base;        // default type of the mix
  int file_type;     // llama.cpp's llama_ftype code, written as general.file_type
};

// Known mixes, in the order `squish quantize --help` lists them.
const std::vector<QuantMix>& quant_mixes();
std::optional<QuantMix> find_quant_mix(const std::string& name);  // case-insensitive

struct TensorTypeOverride {
  std::string pattern;  // regex searched in the tensor name (like llama-quantize --tensor-type)
  DType type;
  std::regex re;
};
// Parses "PATTERN=TYPE"; throws squish::Error on a bad regex or type.
TensorTypeOverride parse_tensor_type_override(const std::string& spec);

struct QuantPlanOptions {
  QuantMix mix;
  std::vector<TensorTypeOverride> overrides;
  std::optional<DType> output_type;  // --output-tensor-type
  std::optional<DType> embd_type;    // --token-embedding-type
  bool pure = false;                 // no per-tensor bumps: every matrix gets the base type
  bool has_imatrix = false;
};

struct TensorPlan {
  std::string name;
  DType type;
  std::string reason;  // why it differs from the base type ("" when it does not)
};

// One entry per model tensor, in model order.
std::vector<TensorPlan> plan_quantization(const Model& model, const QuantPlanOptions& options);

}  // namespace squish
