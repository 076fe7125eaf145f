// Per-tensor weight error of a compressed model against its base: every tensor is dequantized row
// by row (quant traits for block types, F16/BF16 conversion for floats) next to the base's same
// tensor, and the relative RMSE ||W - W_base|| / ||W_base|| is accumulated in double precision.
// Only two rows per thread are held at a time; both models stay memory-mapped.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "model/model.h"

namespace squish {

struct TensorError {
  std::string name;  // canonical (GGUF) name, e.g. "blk.3.attn_q.weight"
  int layer = -1;    // block index, -1 for tensors outside the blocks (embeddings, output)
  std::string kind;  // name without "blk.N." and ".weight": "attn_q", "ffn_down", "attn_q.bias"
  DType type = DType::F32;       // the model's stored type
  DType base_type = DType::F32;  // the base's stored type
  int64_t numel = 0;
  double rel_rmse = 0;  // ||W - W_base||_2 / ||W_base||_2 (0 when both are zero)
  double rmse = 0;      // sqrt(mean (W - W_base)^2)
};

// Splits a canonical tensor name into (layer, kind).
void split_tensor_name(const std::string& name, int& layer, std::string& kind);

// Called after each tensor with (tensors done, total).
using TensorErrorProgress = std::function<void(size_t, size_t)>;

// One entry per tensor of `model`, in model order. Throws squish::Error when a tensor is missing
// from the base or has another shape (the files are not the same model). Handles the one layout
// difference between squish's loaders: Llama Q/K rows of a Hugging Face base (rotate-half RoPE)
// against a GGUF (interleaved pairs), matched row by row.
std::vector<TensorError> compute_tensor_errors(const Model& base, const Model& model,
                                               const TensorErrorProgress& progress = {});

}  // namespace squish
