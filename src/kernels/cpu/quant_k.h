// K-quant dot-product kernels (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and IQ4_XS weights against Q8_K
// activations) and the small unpacking helpers they share with the scalar reference in
// quant/kquants.cpp.
//
// Every implementation (scalar, AVX2, AVX-512) computes, per super-block, the same exact integer
// sums (sub-block scales times integer dots of weight codes and activations, with the code offsets
// and mins taken out through the activation block sums), then adds d_act * d_w * sum to a double
// accumulator in super-block order. Those products of a float and an integer below 2^28 are exact
// in double, so fused multiply-adds cannot change them, and the SIMD versions return results
// bit-identical to the scalar reference (tests/kquant_test.cpp checks it).
#pragma once

#include <cstdint>
#include <cstring>

#include "core/dtype.h"
#include "quant/blocks.h"

namespace squish {

// The helpers below have internal linkage on purpose: this header is included by translation
// units compiled with different ISA flags, and an inline function with external linkage could be
// merged by the linker into one copy holding AVX-512 instructions, used from the scalar path.

// IQ4_NL / IQ4_XS non-linear code book (ggml's kvalues_iq4nl): index -> int8 value.
static constexpr int8_t kIQ4Values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                          1,    13,   25,  38,  53,  69,  89,  113};

// Q4_K / Q5_K: 12 bytes hold 8 6-bit scales and 8 6-bit mins. Bytes 0-3 carry scales 0-3 in their
// low 6 bits, bytes 4-7 mins 0-3; scales/mins 4-7 keep their low 4 bits in the nibbles of bytes
// 8-11 and their top 2 bits in the spare top bits of bytes 0-3 (scales) and 4-7 (mins). Working on
// 32-bit words unpacks four at a time.
static inline void unpack_scale_min_k4(const uint8_t* packed, uint8_t* scales, uint8_t* mins) {
  uint32_t a, b, c;
  std::memcpy(&a, packed, 4);
  std::memcpy(&b, packed + 4, 4);
  std::memcpy(&c, packed + 8, 4);
  const uint32_t s03 = a & 0x3f3f3f3fu;
  const uint32_t m03 = b & 0x3f3f3f3fu;
  const uint32_t s47 = (c & 0x0f0f0f0fu) | (((a >> 6) & 0x03030303u) << 4);
  const uint32_t m47 = ((c >> 4) & 0x0f0f0f0fu) | (((b >> 6) & 0x03030303u) << 4);
  std::memcpy(scales, &s03, 4);
  std::memcpy(scales + 4, &s47, 4);
  std::memcpy(mins, &m03, 4);
  std::memcpy(mins + 4, &m47, 4);
}

static inline void pack_scale_min_k4(const uint8_t* scales, const uint8_t* mins, uint8_t* packed) {
  for (int j = 0; j < 4; ++j) {
    packed[j] = static_cast<uint8_t>((scales[j] & 63) | ((scales[j + 4] >> 4) << 6));
    packed[j + 4] = static_cast<uint8_t>((mins[j] & 63) | ((mins[j + 4] >> 4) << 6));
    packed[j + 8] = static_cast<uint8_t>((scales[j + 4] & 15) | ((mins[j + 4] & 15) << 4));
  }
}

// Q3_K: 16 6-bit scales (stored +32). Scale j keeps its low 4 bits in a nibble of bytes 0-7 (low
// nibbles for j < 8, high for j >= 8) and its top 2 bits in byte 8 + j % 4 at bit 2 * (j / 4).
static inline void unpack_scales_q3_K(const uint8_t* packed, int8_t* scales) {
  uint32_t a, b, c;
  std::memcpy(&a, packed, 4);
  std::memcpy(&b, packed + 4, 4);
  std::memcpy(&c, packed + 8, 4);
  uint32_t w[4] = {
      (a & 0x0f0f0f0fu) | ((c & 0x03030303u) << 4),
      (b & 0x0f0f0f0fu) | (((c >> 2) & 0x03030303u) << 4),
      ((a >> 4) & 0x0f0f0f0fu) | (((c >> 4) & 0x03030303u) << 4),
      ((b >> 4) & 0x0f0f0f0fu) | (((c >> 6) & 0x03030303u) << 4),
  };
  uint8_t u[16];
  std::memcpy(u, w, 16);
  for (int j = 0; j < 16; ++j) scales[j] = static_cast<int8_t>(u[j] - 32);
}

static inline void pack_scales_q3_K(const int8_t* scales, uint8_t* packed) {
  std::memset(packed, 0, 12);
  for (int j = 0; j < 16; ++j) {
    const int u = scales[j] + 32;  // 0..63
    packed[j % 8] |= static_cast<uint8_t>((u & 15) << (j < 8 ? 0 : 4));
    packed[8 + j % 4] |= static_cast<uint8_t>((u >> 4) << (2 * (j / 4)));
  }
}

// IQ4_XS: sub-block ib's 6-bit scale (stored +32) has its low 4 bits in a nibble of scales_l and
// its top 2 bits in scales_h.
static inline int iq4xs_scale(const block_iq4_xs& b, int ib) {
  const int lo = (b.scales_l[ib / 2] >> (4 * (ib % 2))) & 15;
  const int hi = (b.scales_h >> (2 * ib)) & 3;
  return (lo | (hi << 4)) - 32;
}

namespace kernels {
// The SIMD kernels unpack scales in registers (quant_k_simd.h), not with the helpers above: going
// through memory (byte stores, then a vector load) stalls on store forwarding every super-block.

// n is a multiple of QK_K; w_row / act_row point at n / QK_K blocks.
float dot_q2_K_avx2(int64_t n, const void* w_row, const void* act_row);
float dot_q3_K_avx2(int64_t n, const void* w_row, const void* act_row);
float dot_q4_K_avx2(int64_t n, const void* w_row, const void* act_row);
float dot_q5_K_avx2(int64_t n, const void* w_row, const void* act_row);
float dot_q6_K_avx2(int64_t n, const void* w_row, const void* act_row);
float dot_iq4_xs_avx2(int64_t n, const void* w_row, const void* act_row);
float dot_q2_K_avx512(int64_t n, const void* w_row, const void* act_row);
float dot_q3_K_avx512(int64_t n, const void* w_row, const void* act_row);
float dot_q4_K_avx512(int64_t n, const void* w_row, const void* act_row);
float dot_q5_K_avx512(int64_t n, const void* w_row, const void* act_row);
float dot_q6_K_avx512(int64_t n, const void* w_row, const void* act_row);
float dot_iq4_xs_avx512(int64_t n, const void* w_row, const void* act_row);
// Four activation rows at once (QuantTraits::dot4_avx512).
void dot4_q2_K_avx512(int64_t n, const void* w_row, const void* const act_rows[4], float out[4]);
void dot4_q3_K_avx512(int64_t n, const void* w_row, const void* const act_rows[4], float out[4]);
void dot4_q4_K_avx512(int64_t n, const void* w_row, const void* const act_rows[4], float out[4]);
void dot4_q5_K_avx512(int64_t n, const void* w_row, const void* const act_rows[4], float out[4]);
void dot4_q6_K_avx512(int64_t n, const void* w_row, const void* const act_rows[4], float out[4]);
}  // namespace kernels

}  // namespace squish
