// Weights for ONNX Runtime's com.microsoft::MatMulNBits: a weight matrix W [N][K] (N outputs, K
// inputs, rows contiguous as in squish) stored per row as K/block_size blocks of `bits`-bit
// unsigned codes, element k of a block in byte k*bits/8 (4 bits: low nibble first), one float
// scale per block and an optional unsigned zero point per block (4 bits: two per byte, low nibble
// first, each row's run padded to whole bytes). Dequantized: w = (code - zero_point) * scale; a
// missing zero point means 2^(bits-1).
//
// Two ways in:
//  - exact: ggml Q4_0 and Q8_0 blocks (block size 32) map one to one (Q4_0: scale d, code q,
//    implicit zero point 8; Q8_0: scale d, code q+128, implicit zero point 128);
//  - requantized: any float row (or a dequantized row of another ggml type) is quantized by
//    round-to-nearest with a per-block min/max range and an integer zero point.
#pragma once

#include <cstdint>
#include <vector>

#include "core/dtype.h"

namespace squish {

struct MatMulNBitsWeight {
  int64_t n = 0, k = 0;              // W is [n][k]
  int bits = 4;                      // 4 or 8
  int block_size = 32;               // 16..256, power of two
  std::vector<uint8_t> codes;        // [n][blocks][block_size * bits / 8]
  std::vector<float> scales;         // [n * blocks]
  std::vector<uint8_t> zero_points;  // empty: implicit 2^(bits-1); else [n][zp_bytes_per_row]
  int64_t blocks() const { return (k + block_size - 1) / block_size; }
  int64_t blob_bytes() const { return block_size * bits / 8; }
  int64_t zp_bytes_per_row() const { return bits == 4 ? (blocks() + 1) / 2 : blocks(); }
};

// True when rows of `type` map exactly onto MatMulNBits at this block size (Q4_0 / Q8_0 at 32).
bool matmulnbits_exact(DType type, int block_size);
// Bits MatMulNBits uses for a ggml type when requantizing: 8 for types of more than 5 bits per
// weight (Q5_K/Q6_K/Q8_0...), else 4.
int matmulnbits_bits_for(DType type);

// Exact conversion of n rows of ggml Q4_0 or Q8_0 blocks (row stride row_bytes(type, k)).
MatMulNBitsWeight matmulnbits_from_blocks(DType type, const uint8_t* rows, int64_t n, int64_t k);

// Round-to-nearest quantization of float rows ([n][k]); an asymmetric range per block that
// always contains zero, so zero weights stay exact.
MatMulNBitsWeight matmulnbits_quantize(const float* rows, int64_t n, int64_t k, int bits,
                                       int block_size);

// Row r of the dequantized matrix (k floats): what ONNX Runtime multiplies with.
void matmulnbits_dequantize_row(const MatMulNBitsWeight& w, int64_t r, float* out);

}  // namespace squish
