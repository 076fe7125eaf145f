// The value grid of one quantized block once its scales are fixed. GPTQ chooses a block's scales
// when its column sweep enters the block, then rounds each column onto that grid after the
// error of earlier columns has been folded in; so it needs, per element, the values the block's
// format can still give it, and a way to write chosen codes back without touching the scales.
//
// Element i of the block can take the values  step[i] * level(k) + offset[i]  for codes
// k = 0 .. n_levels-1, where level(k) = k - zero (uniform formats) or table[k] (IQ4's non-linear
// code book). Values are computed with the same float operations as the format's dequantizer, so
// value(i, code[i]) is bit-identical to dequantization of the packed block.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace squish {

struct BlockGrid {
  static constexpr int kMaxBlock = 256;
  int size = 0;  // elements per block (32 or 256)
  int n_levels = 0;
  int zero = 0;                   // uniform formats: level(k) = k - zero
  const int8_t* table = nullptr;  // non-linear formats: level(k) = table[k], ascending
  float step[kMaxBlock];
  float offset[kMaxBlock];
  uint8_t code[kMaxBlock];

  float level(int k) const {
    return table ? static_cast<float>(table[k]) : static_cast<float>(k - zero);
  }
  float value(int i, int k) const { return step[i] * level(k) + offset[i]; }
  // The code whose value is nearest to v for element i.
  int nearest(int i, float v) const;
};

// A block's scale parameters: element i of sub-block s has step d * sc[s] and offset
// -dmin * mn[s] (legacy types: one sub-block with sc = 1; Q4_1 / Q5_1 store their min m as dmin
// with mn = -1). d and dmin are the block's fp16 fields; sc and mn its integer sub-scales, each
// within [lo, hi] of its format.
struct BlockScales {
  int n_sub = 1, sub_size = 32;
  uint16_t d = 0, dmin = 0;
  bool has_dmin = false;
  int sc[16] = {}, mn[16] = {};
  int sc_lo = 1, sc_hi = 1, mn_lo = 0, mn_hi = 0;
};
void read_block_scales(DType type, const void* block, BlockScales& scales);
// Writes d, dmin, sc and mn into the packed block (codes untouched).
void write_block_scales(DType type, const BlockScales& scales, void* block);

// Whether GPTQ can work on the type (every quantized type squish writes).
bool has_block_grid(DType type);
// Elements per block of the type's grid (its block size; 256 for the k-quants).
int block_grid_size(DType type);
// Reads the grid and current codes of one packed block.
void unpack_block_grid(DType type, const void* block, BlockGrid& grid);
// Writes grid.code into the packed block, keeping its scales.
void pack_block_codes(DType type, const BlockGrid& grid, void* block);

}  // namespace squish
