// Weight rows for kernel tests: float values stored as a GGUF type, shared by the CPU-side
// CUDA layout tests (cuda_layout_test.cpp) and the GPU tests (cuda_test.cpp).
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "quant/quant.h"

namespace squish::test {

// rows x cols values f stored as `type`: F32, F16 and BF16 as they are, the quantized types
// through their CPU quantizer (so scales are real ones).
inline std::vector<uint8_t> encode_rows(DType type, const float* f, int64_t rows, int64_t cols) {
  const size_t stride = row_bytes(type, cols);
  std::vector<uint8_t> w(stride * rows);
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* dst = w.data() + r * stride;
    const float* src = f + r * cols;
    if (type == DType::F32) {
      std::memcpy(dst, src, cols * 4);
    } else if (type == DType::F16 || type == DType::BF16) {
      for (int64_t i = 0; i < cols; ++i) {
        const uint16_t h = type == DType::F16 ? fp32_to_fp16(src[i]) : fp32_to_bf16(src[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
    } else {
      quant_traits(type)->quantize(src, dst, cols, nullptr);
    }
  }
  return w;
}

}  // namespace squish::test
