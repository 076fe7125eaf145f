// Quantized block layouts, bit-compatible with ggml's (GGUF tensor data). One struct per type;
// sizes are asserted so a layout mistake fails to compile. Half-precision fields are raw IEEE
// binary16 bits (uint16_t); convert with fp16_to_fp32 / fp32_to_fp16 from core/dtype.h.
#pragma once

#include <cstdint>

namespace squish {

constexpr int QK4_0 = 32, QK4_1 = 32, QK5_0 = 32, QK5_1 = 32, QK8_0 = 32, QK8_1 = 32;
constexpr int QK4_NL = 32;
constexpr int QK_K = 256;         // super-block size of the k-quants
constexpr int K_SCALE_SIZE = 12;  // packed 6-bit scales and mins of Q4_K / Q5_K

struct block_q4_0 {
  uint16_t d;             // scale
  uint8_t qs[QK4_0 / 2];  // 4-bit quants: low nibbles are elements 0..15, high nibbles 16..31
};
static_assert(sizeof(block_q4_0) == 18);

struct block_q4_1 {
  uint16_t d, m;  // scale, min
  uint8_t qs[QK4_1 / 2];
};
static_assert(sizeof(block_q4_1) == 20);

struct block_q5_0 {
  uint16_t d;
  uint8_t qh[4];  // fifth bits, element j in bit j
  uint8_t qs[QK5_0 / 2];
};
static_assert(sizeof(block_q5_0) == 22);

struct block_q5_1 {
  uint16_t d, m;
  uint8_t qh[4];
  uint8_t qs[QK5_1 / 2];
};
static_assert(sizeof(block_q5_1) == 24);

struct block_q8_0 {
  uint16_t d;
  int8_t qs[QK8_0];
};
static_assert(sizeof(block_q8_0) == 34);

struct block_q8_1 {
  uint16_t d;  // scale
  uint16_t s;  // d * sum(qs)
  int8_t qs[QK8_1];
};
static_assert(sizeof(block_q8_1) == 36);

struct block_q2_K {
  uint8_t scales[QK_K / 16];  // 4-bit scale (low) and 4-bit min (high) per 16 elements
  uint8_t qs[QK_K / 4];       // 2-bit quants
  uint16_t d;                 // super-block scale for the scales
  uint16_t dmin;              // super-block scale for the mins
};
static_assert(sizeof(block_q2_K) == 84);

struct block_q3_K {
  uint8_t hmask[QK_K / 8];  // high bit of each 3-bit quant
  uint8_t qs[QK_K / 4];     // low 2 bits
  uint8_t scales[12];       // 16 6-bit scales, packed
  uint16_t d;
};
static_assert(sizeof(block_q3_K) == 110);

struct block_q4_K {
  uint16_t d, dmin;
  uint8_t scales[K_SCALE_SIZE];  // 8 6-bit scales and 8 6-bit mins, packed
  uint8_t qs[QK_K / 2];
};
static_assert(sizeof(block_q4_K) == 144);

struct block_q5_K {
  uint16_t d, dmin;
  uint8_t scales[K_SCALE_SIZE];
  uint8_t qh[QK_K / 8];
  uint8_t qs[QK_K / 2];
};
static_assert(sizeof(block_q5_K) == 176);

struct block_q6_K {
  uint8_t ql[QK_K / 2];      // low 4 bits
  uint8_t qh[QK_K / 4];      // high 2 bits
  int8_t scales[QK_K / 16];  // 8-bit scales
  uint16_t d;
};
static_assert(sizeof(block_q6_K) == 210);

// Activations for k-quant dot products (never stored in model files).
struct block_q8_K {
  float d;
  int8_t qs[QK_K];
  int16_t bsums[QK_K / 16];  // sums of groups of 16 quants
};
static_assert(sizeof(block_q8_K) == 292);

struct block_iq4_nl {
  uint16_t d;
  uint8_t qs[QK4_NL / 2];  // indices into the non-linear 16-entry table
};
static_assert(sizeof(block_iq4_nl) == 18);

struct block_iq4_xs {
  uint16_t d;
  uint16_t scales_h;            // high 2 bits of the 8 6-bit scales
  uint8_t scales_l[QK_K / 64];  // low 4 bits
  uint8_t qs[QK_K / 2];
};
static_assert(sizeof(block_iq4_xs) == 136);

}  // namespace squish
