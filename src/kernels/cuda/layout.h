// The weight layout of the CUDA backend's 8-bit-activation kernels (kernels_q8.cu): repack_q8
// regroups GGUF rows of every quantized type squish writes at upload, the same bytes in
// other places (Q4_K's 16 scale bytes re-encoded). Host code (layout.cpp) built in every
// configuration, so the CPU test suite checks it (tests/cuda_layout_test.cpp); code_half_at is
// shared with the device code.
//
// A matrix of rows x nb blocks: every block's codes first (kCode bytes each, row-major), then
// every block's scales (kMeta each), then, for Q2_K, Q3_K, Q5_K, Q6_K, Q5_0 and Q5_1, kMeta2 more
// bytes:
//   Q4_K: codes = qs[128] (4 items of 32 bytes), scales = q4k_scale_words (16 bytes);
//   Q5_K: codes = qs[128] as Q4_K's, scales = q4k_scale_words, then q5k_fifth_bits (32 bytes);
//   Q6_K: codes = ql[128] qh[64], scales = scales[16], then d;
//   Q8_0: codes = qs[32] (1 item), scales = d (2 bytes);
//   Q2_K: codes = qs[64] (2 items of 32 bytes), scales = scales[16], then d, dmin (4 bytes);
//   Q3_K: codes = qs[64] hmask[32], scales = the 12 packed bytes, then d;
//   IQ4_XS: codes = qs[128] (4 items of 32 bytes, each group's 16 bytes in iq4_pairs order),
//     scales = d, scales_h, scales_l[4] (8 bytes);
//   Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL: blocks in pairs (64 elements): codes = both blocks' qs[16]
//     (1 item, IQ4_NL's in iq4_pairs order), scales = d0, d1 (then m0, m1 for Q4_1 and Q5_1),
//     then for Q5_0 and Q5_1 qh0, qh1 (8 bytes).
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "kernels/cuda/host_device.h"

namespace squish::cuda {

// Q4_K, Q5_K, Q8_0, Q2_K and IQ4_XS items are 32 code bytes that a lane reads as two 16-byte
// halves. In item order a warp's first load would read the first half of 32 consecutive 32-byte
// sectors and its second load the other halves: every sector fetched from L2 twice, half used each
// time. Split, each (row, step of 32 items) holds the step's first halves, then its second halves
// (m of each in a row's last step of m < 32 items), so each load reads 512 whole contiguous bytes
// (measured on the H100: 1.6 % / 1.2 % faster Q4_K_M / Q8_0 decode than item order). Offset of half
// h (0, 1) of item `it` of row r, for rows of n_items items.
SQUISH_HOST_DEVICE int64_t code_half_at(int64_t n_items, int64_t r, int it, int h) {
  const int step = it & ~31, lane = it & 31;
  const int left = static_cast<int>(n_items) - step;  // a row's items fit an int (cuda_forward)
  const int m = left < 32 ? left : 32;
  return r * n_items * 32 + (step * 32 + (h * m + lane) * 16);
}

// A Q4_K block's d, dmin and 12 packed scale bytes (its first 16 bytes) as the four words the
// kernel reads: word s = scale 2s | scale 2s+1 << 6 | min 2s << 12 | min 2s+1 << 18 | block byte
// s << 24 (bytes 0-3 are d and dmin), little-endian. Item s's scales and mins are bit fields of
// its own word, with no get_scale_min_k4 branch (lanes of one warp take different items).
void q4k_scale_words(const uint8_t* block, uint8_t* out);

// A Q5_K block's qh[32] as 8 little-endian words: word w has bit l = bit w of qh[l], the fifth
// bits of elements 32 w + l (item w / 2's low nibbles for even w, high nibbles for odd w).
void q5k_fifth_bits(const uint8_t* qh, uint8_t* out);

// An IQ4 group's 16 code bytes (GGUF order: byte j holds elements j, low nibble, and j + 16)
// with byte m holding elements 2 m (low nibble) and 2 m + 1, so that a 32-bit word is 8
// consecutive elements, the order in which the kernel's byte permutes decode them.
void iq4_pairs(const uint8_t* qs, uint8_t* out);

// dst: rows * row_bytes(type, cols) bytes in the layout above; src: GGUF rows. Other types
// (or cols not a multiple of the block) are left alone: callers check
// matmul_q8_supported first.
void repack_q8(DType type, const uint8_t* src, int64_t rows, int64_t cols, uint8_t* dst);

}  // namespace squish::cuda
