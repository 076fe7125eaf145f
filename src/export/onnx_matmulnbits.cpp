#include "export/onnx_matmulnbits.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "quant/blocks.h"

namespace squish {

bool matmulnbits_exact(DType type, int block_size) {
  return block_size == 32 && (type == DType::Q4_0 || type == DType::Q8_0);
}

int matmulnbits_bits_for(DType type) {
  switch (type) {
    case DType::Q8_0:
    case DType::Q6_K:
    case DType::Q5_K:
    case DType::Q5_0:
    case DType::Q5_1:
    case DType::F16:
    case DType::BF16:
    case DType::F32:
      return 8;
    default:
      return 4;
  }
}

namespace {

MatMulNBitsWeight empty_weight(int64_t n, int64_t k, int bits, int block_size) {
  if (bits != 4 && bits != 8) fail("MatMulNBits: {} bits (4 or 8 supported)", bits);
  if (block_size < 16 || block_size > 256 || (block_size & (block_size - 1)) != 0) {
    fail("MatMulNBits: block size {} (a power of two from 16 to 256)", block_size);
  }
  MatMulNBitsWeight w;
  w.n = n;
  w.k = k;
  w.bits = bits;
  w.block_size = block_size;
  w.codes.assign(n * w.blocks() * w.blob_bytes(), 0);
  w.scales.assign(n * w.blocks(), 0.0f);
  return w;
}

void set_code(MatMulNBitsWeight& w, int64_t r, int64_t col, int code) {
  const int64_t b = col / w.block_size, i = col % w.block_size;
  uint8_t* blob = w.codes.data() + (r * w.blocks() + b) * w.blob_bytes();
  if (w.bits == 8) {
    blob[i] = static_cast<uint8_t>(code);
  } else {
    blob[i / 2] |= static_cast<uint8_t>((code & 15) << ((i & 1) * 4));
  }
}

int get_code(const MatMulNBitsWeight& w, int64_t r, int64_t col) {
  const int64_t b = col / w.block_size, i = col % w.block_size;
  const uint8_t* blob = w.codes.data() + (r * w.blocks() + b) * w.blob_bytes();
  return w.bits == 8 ? blob[i] : (blob[i / 2] >> ((i & 1) * 4)) & 15;
}

int get_zero_point(const MatMulNBitsWeight& w, int64_t r, int64_t b) {
  if (w.zero_points.empty()) return 1 << (w.bits - 1);
  const uint8_t* zp = w.zero_points.data() + r * w.zp_bytes_per_row();
  return w.bits == 8 ? zp[b] : (zp[b / 2] >> ((b & 1) * 4)) & 15;
}

}  // namespace

MatMulNBitsWeight matmulnbits_from_blocks(DType type, const uint8_t* rows, int64_t n, int64_t k) {
  if (!matmulnbits_exact(type, 32) || k % 32 != 0) {
    fail("MatMulNBits: no exact mapping for {} with {} columns", dtype_name(type), k);
  }
  MatMulNBitsWeight w = empty_weight(n, k, type == DType::Q4_0 ? 4 : 8, 32);
  const size_t stride = row_bytes(type, k);
  for (int64_t r = 0; r < n; ++r) {
    const uint8_t* row = rows + r * stride;
    for (int64_t b = 0; b < k / 32; ++b) {
      if (type == DType::Q4_0) {
        block_q4_0 blk;
        std::memcpy(&blk, row + b * sizeof(block_q4_0), sizeof(blk));
        w.scales[r * w.blocks() + b] = fp16_to_fp32(blk.d);
        // ggml: low nibbles hold elements 0..15, high nibbles 16..31; same zero point (8).
        for (int j = 0; j < 16; ++j) {
          set_code(w, r, b * 32 + j, blk.qs[j] & 15);
          set_code(w, r, b * 32 + j + 16, blk.qs[j] >> 4);
        }
      } else {
        block_q8_0 blk;
        std::memcpy(&blk, row + b * sizeof(block_q8_0), sizeof(blk));
        w.scales[r * w.blocks() + b] = fp16_to_fp32(blk.d);
        for (int j = 0; j < 32; ++j) set_code(w, r, b * 32 + j, blk.qs[j] + 128);
      }
    }
  }
  return w;
}

MatMulNBitsWeight matmulnbits_quantize(const float* rows, int64_t n, int64_t k, int bits,
                                       int block_size) {
  MatMulNBitsWeight w = empty_weight(n, k, bits, block_size);
  const int qmax = (1 << bits) - 1;
  w.zero_points.assign(n * w.zp_bytes_per_row(), 0);
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t r = 0; r < n; ++r) {
    const float* x = rows + r * k;
    uint8_t* zp_row = w.zero_points.data() + r * w.zp_bytes_per_row();
    for (int64_t b = 0; b < w.blocks(); ++b) {
      const int64_t c0 = b * block_size, c1 = std::min<int64_t>(k, c0 + block_size);
      float lo = 0.0f, hi = 0.0f;  // the range always contains zero (padding codes are exact)
      for (int64_t c = c0; c < c1; ++c) {
        lo = std::min(lo, x[c]);
        hi = std::max(hi, x[c]);
      }
      float scale = (hi - lo) / qmax;
      int zp = 1 << (bits - 1);
      if (scale > 0.0f) zp = std::clamp(static_cast<int>(std::lround(-lo / scale)), 0, qmax);
      const float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
      w.scales[r * w.blocks() + b] = scale;
      if (bits == 8) {
        zp_row[b] = static_cast<uint8_t>(zp);
      } else {
        zp_row[b / 2] |= static_cast<uint8_t>(zp << ((b & 1) * 4));
      }
      for (int64_t c = c0; c < c0 + block_size; ++c) {
        const float v = c < c1 ? x[c] : 0.0f;
        set_code(w, r, c, std::clamp(static_cast<int>(std::lround(v * inv)) + zp, 0, qmax));
      }
    }
  }
  return w;
}

void matmulnbits_dequantize_row(const MatMulNBitsWeight& w, int64_t r, float* out) {
  for (int64_t c = 0; c < w.k; ++c) {
    const int64_t b = c / w.block_size;
    out[c] = (get_code(w, r, c) - get_zero_point(w, r, b)) * w.scales[r * w.blocks() + b];
  }
}

}  // namespace squish
