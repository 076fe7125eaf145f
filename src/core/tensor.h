// A tensor as stored in a model file: a typed, shaped view into memory owned by someone else
// (usually a MappedFile). Shapes are row-major, outermost dimension first, as in safetensors and
// PyTorch: a Linear weight is {out_features, in_features} and each row is contiguous.
// (GGUF lists dimensions innermost first; the GGUF reader reverses them.)
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace squish {

struct TensorInfo {
  std::string name;
  DType type = DType::F32;
  std::vector<int64_t> shape;  // row-major, outermost first
  const void* data = nullptr;  // points into the owner's memory
  size_t nbytes = 0;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  int64_t rows() const { return shape.empty() ? 1 : numel() / shape.back(); }
  int64_t cols() const { return shape.empty() ? 1 : shape.back(); }
};

std::string shape_string(const std::vector<int64_t>& shape);  // "[8192, 384]"

}  // namespace squish
