#include "calib/block_grid.h"

// Values must match the dequantizers bit for bit: no fused multiply-adds.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "kernels/cpu/quant_k.h"
#include "quant/blocks.h"

namespace squish {

int BlockGrid::nearest(int i, float v) const {
  const float s = step[i];
  if (s == 0.0f || !std::isfinite(v)) return code[i];
  const float u = (v - offset[i]) / s;  // in level units
  if (table == nullptr) {
    const float k = std::nearbyint(u) + static_cast<float>(zero);
    if (!(k > 0.0f)) return 0;
    if (k >= static_cast<float>(n_levels - 1)) return n_levels - 1;
    return static_cast<int>(k);
  }
  int best = 0;
  float best_d = std::fabs(u - table[0]);
  for (int k = 1; k < n_levels; ++k) {
    const float d = std::fabs(u - table[k]);
    if (d < best_d) {
      best_d = d;
      best = k;
    }
  }
  return best;
}

namespace {

void set_uniform(BlockGrid& g, int size, int n_levels, int zero) {
  g.size = size;
  g.n_levels = n_levels;
  g.zero = zero;
  g.table = nullptr;
}

// Legacy 32-element blocks: element j < 16 in the low nibble of qs[j], j + 16 in the high one;
// 5-bit types keep element j's fifth bit in bit j of qh.
void unpack_nibbles(const uint8_t* qs, uint8_t* code) {
  for (int j = 0; j < 16; ++j) {
    code[j] = qs[j] & 15;
    code[j + 16] = qs[j] >> 4;
  }
}
void pack_nibbles(const uint8_t* code, uint8_t* qs) {
  for (int j = 0; j < 16; ++j) qs[j] = static_cast<uint8_t>((code[j] & 15) | (code[j + 16] << 4));
}
void unpack_fifth_bits(const uint8_t* qh, uint8_t* code) {
  uint32_t h;
  std::memcpy(&h, qh, 4);
  for (int j = 0; j < 32; ++j) code[j] |= static_cast<uint8_t>(((h >> j) & 1) << 4);
}
void pack_fifth_bits(const uint8_t* code, uint8_t* qh) {
  uint32_t h = 0;
  for (int j = 0; j < 32; ++j) h |= static_cast<uint32_t>((code[j] >> 4) & 1) << j;
  std::memcpy(qh, &h, 4);
}

// Q2_K / Q3_K low 2 bits: element 128h + 32g + l sits in qs[32h + l] at bits 2g.
void unpack_2bit(const uint8_t* qs, uint8_t* code) {
  for (int e = 0; e < QK_K; ++e) {
    const int h = e / 128, g = (e / 32) % 4, l = e % 32;
    code[e] = (qs[32 * h + l] >> (2 * g)) & 3;
  }
}
void pack_2bit(const uint8_t* code, uint8_t* qs) {
  std::memset(qs, 0, QK_K / 4);
  for (int e = 0; e < QK_K; ++e) {
    const int h = e / 128, g = (e / 32) % 4, l = e % 32;
    qs[32 * h + l] |= static_cast<uint8_t>((code[e] & 3) << (2 * g));
  }
}

// Q4_K / Q5_K nibbles: chunk c of 64 elements; element 64c + l (l < 32) is the low nibble of
// qs[32c + l], element 64c + 32 + l the high nibble.
void unpack_k_nibbles(const uint8_t* qs, uint8_t* code) {
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) {
      code[64 * c + l] = qs[32 * c + l] & 15;
      code[64 * c + 32 + l] = qs[32 * c + l] >> 4;
    }
  }
}
void pack_k_nibbles(const uint8_t* code, uint8_t* qs) {
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) {
      qs[32 * c + l] =
          static_cast<uint8_t>((code[64 * c + l] & 15) | ((code[64 * c + 32 + l] & 15) << 4));
    }
  }
}

// Q6_K: half h of 128; ql[64h + l] holds elements l (low nibble) and l + 64 (high), ql[64h + 32
// + l] elements l + 32 and l + 96; qh[32h + l] the top 2 bits of l, l+32, l+64, l+96.
void unpack_q6(const block_q6_K& b, uint8_t* code) {
  for (int h = 0; h < 2; ++h) {
    const uint8_t* ql = b.ql + 64 * h;
    const uint8_t* qh = b.qh + 32 * h;
    uint8_t* o = code + 128 * h;
    for (int l = 0; l < 32; ++l) {
      o[l] = static_cast<uint8_t>((ql[l] & 15) | ((qh[l] & 3) << 4));
      o[l + 32] = static_cast<uint8_t>((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4));
      o[l + 64] = static_cast<uint8_t>((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
      o[l + 96] = static_cast<uint8_t>((ql[l + 32] >> 4) | ((qh[l] >> 6) << 4));
    }
  }
}
void pack_q6(const uint8_t* code, block_q6_K& b) {
  for (int h = 0; h < 2; ++h) {
    uint8_t* ql = b.ql + 64 * h;
    uint8_t* qh = b.qh + 32 * h;
    const uint8_t* o = code + 128 * h;
    for (int l = 0; l < 32; ++l) {
      ql[l] = static_cast<uint8_t>((o[l] & 15) | ((o[l + 64] & 15) << 4));
      ql[l + 32] = static_cast<uint8_t>((o[l + 32] & 15) | ((o[l + 96] & 15) << 4));
      qh[l] = static_cast<uint8_t>((o[l] >> 4) | ((o[l + 32] >> 4) << 2) | ((o[l + 64] >> 4) << 4) |
                                   ((o[l + 96] >> 4) << 6));
    }
  }
}

}  // namespace

bool has_block_grid(DType type) {
  switch (type) {
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q5_0:
    case DType::Q5_1:
    case DType::Q8_0:
    case DType::IQ4_NL:
    case DType::Q2_K:
    case DType::Q3_K:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
    case DType::IQ4_XS:
      return true;
    default:
      return false;
  }
}

int block_grid_size(DType type) {
  if (!has_block_grid(type)) fail("internal: no block grid for {}", dtype_name(type));
  return traits(type).block_size;
}

void unpack_block_grid(DType type, const void* vb, BlockGrid& g) {
  switch (type) {
    case DType::Q4_0: {
      const auto& b = *static_cast<const block_q4_0*>(vb);
      set_uniform(g, 32, 16, 8);
      unpack_nibbles(b.qs, g.code);
      const float d = fp16_to_fp32(b.d);
      for (int i = 0; i < 32; ++i) g.step[i] = d, g.offset[i] = 0.0f;
      return;
    }
    case DType::Q4_1: {
      const auto& b = *static_cast<const block_q4_1*>(vb);
      set_uniform(g, 32, 16, 0);
      unpack_nibbles(b.qs, g.code);
      const float d = fp16_to_fp32(b.d), m = fp16_to_fp32(b.m);
      for (int i = 0; i < 32; ++i) g.step[i] = d, g.offset[i] = m;
      return;
    }
    case DType::Q5_0: {
      const auto& b = *static_cast<const block_q5_0*>(vb);
      set_uniform(g, 32, 32, 16);
      unpack_nibbles(b.qs, g.code);
      unpack_fifth_bits(b.qh, g.code);
      const float d = fp16_to_fp32(b.d);
      for (int i = 0; i < 32; ++i) g.step[i] = d, g.offset[i] = 0.0f;
      return;
    }
    case DType::Q5_1: {
      const auto& b = *static_cast<const block_q5_1*>(vb);
      set_uniform(g, 32, 32, 0);
      unpack_nibbles(b.qs, g.code);
      unpack_fifth_bits(b.qh, g.code);
      const float d = fp16_to_fp32(b.d), m = fp16_to_fp32(b.m);
      for (int i = 0; i < 32; ++i) g.step[i] = d, g.offset[i] = m;
      return;
    }
    case DType::Q8_0: {
      const auto& b = *static_cast<const block_q8_0*>(vb);
      set_uniform(g, 32, 256, 128);
      const float d = fp16_to_fp32(b.d);
      for (int i = 0; i < 32; ++i) {
        g.code[i] = static_cast<uint8_t>(b.qs[i] + 128);
        g.step[i] = d, g.offset[i] = 0.0f;
      }
      return;
    }
    case DType::IQ4_NL: {
      const auto& b = *static_cast<const block_iq4_nl*>(vb);
      g.size = 32, g.n_levels = 16, g.zero = 0, g.table = kIQ4Values;
      unpack_nibbles(b.qs, g.code);
      const float d = fp16_to_fp32(b.d);
      for (int i = 0; i < 32; ++i) g.step[i] = d, g.offset[i] = 0.0f;
      return;
    }
    case DType::Q2_K: {
      const auto& b = *static_cast<const block_q2_K*>(vb);
      set_uniform(g, QK_K, 4, 0);
      unpack_2bit(b.qs, g.code);
      const float d = fp16_to_fp32(b.d), dmin = fp16_to_fp32(b.dmin);
      for (int i = 0; i < QK_K; ++i) {
        const uint8_t sc = b.scales[i / 16];
        g.step[i] = d * static_cast<float>(sc & 15);
        g.offset[i] = -(dmin * static_cast<float>(sc >> 4));
      }
      return;
    }
    case DType::Q3_K: {
      const auto& b = *static_cast<const block_q3_K*>(vb);
      set_uniform(g, QK_K, 8, 4);
      unpack_2bit(b.qs, g.code);
      for (int e = 0; e < QK_K; ++e) g.code[e] |= ((b.hmask[e % 32] >> (e / 32)) & 1) << 2;
      int8_t sc[16];
      unpack_scales_q3_K(b.scales, sc);
      const float d = fp16_to_fp32(b.d);
      for (int i = 0; i < QK_K; ++i) {
        g.step[i] = d * static_cast<float>(sc[i / 16]);
        g.offset[i] = 0.0f;
      }
      return;
    }
    case DType::Q4_K:
    case DType::Q5_K: {
      const bool five = type == DType::Q5_K;
      const uint16_t d16 =
          five ? static_cast<const block_q5_K*>(vb)->d : static_cast<const block_q4_K*>(vb)->d;
      const uint16_t dmin16 = five ? static_cast<const block_q5_K*>(vb)->dmin
                                   : static_cast<const block_q4_K*>(vb)->dmin;
      const uint8_t* scales = five ? static_cast<const block_q5_K*>(vb)->scales
                                   : static_cast<const block_q4_K*>(vb)->scales;
      const uint8_t* qs =
          five ? static_cast<const block_q5_K*>(vb)->qs : static_cast<const block_q4_K*>(vb)->qs;
      set_uniform(g, QK_K, five ? 32 : 16, 0);
      unpack_k_nibbles(qs, g.code);
      if (five) {
        const uint8_t* qh = static_cast<const block_q5_K*>(vb)->qh;
        for (int e = 0; e < QK_K; ++e) {
          const int c = e / 64, hi = (e % 64) / 32, l = e % 32;
          g.code[e] |= ((qh[l] >> (2 * c + hi)) & 1) << 4;
        }
      }
      uint8_t sc[8], mn[8];
      unpack_scale_min_k4(scales, sc, mn);
      const float d = fp16_to_fp32(d16), dmin = fp16_to_fp32(dmin16);
      for (int i = 0; i < QK_K; ++i) {
        g.step[i] = d * static_cast<float>(sc[i / 32]);
        g.offset[i] = -(dmin * static_cast<float>(mn[i / 32]));
      }
      return;
    }
    case DType::Q6_K: {
      const auto& b = *static_cast<const block_q6_K*>(vb);
      set_uniform(g, QK_K, 64, 32);
      unpack_q6(b, g.code);
      const float d = fp16_to_fp32(b.d);
      for (int i = 0; i < QK_K; ++i) {
        g.step[i] = d * static_cast<float>(b.scales[i / 16]);
        g.offset[i] = 0.0f;
      }
      return;
    }
    case DType::IQ4_XS: {
      const auto& b = *static_cast<const block_iq4_xs*>(vb);
      g.size = QK_K, g.n_levels = 16, g.zero = 0, g.table = kIQ4Values;
      for (int ib = 0; ib < 8; ++ib) {
        unpack_nibbles(b.qs + 16 * ib, g.code + 32 * ib);
        const float dl = fp16_to_fp32(b.d) * static_cast<float>(iq4xs_scale(b, ib));
        for (int j = 0; j < 32; ++j) g.step[32 * ib + j] = dl, g.offset[32 * ib + j] = 0.0f;
      }
      return;
    }
    default:
      fail("internal: no block grid for {}", dtype_name(type));
  }
}

void pack_block_codes(DType type, const BlockGrid& g, void* vb) {
  switch (type) {
    case DType::Q4_0:
      pack_nibbles(g.code, static_cast<block_q4_0*>(vb)->qs);
      return;
    case DType::Q4_1:
      pack_nibbles(g.code, static_cast<block_q4_1*>(vb)->qs);
      return;
    case DType::Q5_0:
      pack_nibbles(g.code, static_cast<block_q5_0*>(vb)->qs);
      pack_fifth_bits(g.code, static_cast<block_q5_0*>(vb)->qh);
      return;
    case DType::Q5_1:
      pack_nibbles(g.code, static_cast<block_q5_1*>(vb)->qs);
      pack_fifth_bits(g.code, static_cast<block_q5_1*>(vb)->qh);
      return;
    case DType::Q8_0: {
      auto& b = *static_cast<block_q8_0*>(vb);
      for (int i = 0; i < 32; ++i) b.qs[i] = static_cast<int8_t>(g.code[i] - 128);
      return;
    }
    case DType::IQ4_NL:
      pack_nibbles(g.code, static_cast<block_iq4_nl*>(vb)->qs);
      return;
    case DType::Q2_K:
      pack_2bit(g.code, static_cast<block_q2_K*>(vb)->qs);
      return;
    case DType::Q3_K: {
      auto& b = *static_cast<block_q3_K*>(vb);
      pack_2bit(g.code, b.qs);
      std::memset(b.hmask, 0, sizeof(b.hmask));
      for (int e = 0; e < QK_K; ++e)
        b.hmask[e % 32] |= static_cast<uint8_t>(((g.code[e] >> 2) & 1) << (e / 32));
      return;
    }
    case DType::Q4_K:
      pack_k_nibbles(g.code, static_cast<block_q4_K*>(vb)->qs);
      return;
    case DType::Q5_K: {
      auto& b = *static_cast<block_q5_K*>(vb);
      pack_k_nibbles(g.code, b.qs);
      std::memset(b.qh, 0, sizeof(b.qh));
      for (int e = 0; e < QK_K; ++e) {
        const int c = e / 64, hi = (e % 64) / 32, l = e % 32;
        b.qh[l] |= static_cast<uint8_t>(((g.code[e] >> 4) & 1) << (2 * c + hi));
      }
      return;
    }
    case DType::Q6_K:
      pack_q6(g.code, *static_cast<block_q6_K*>(vb));
      return;
    case DType::IQ4_XS: {
      auto& b = *static_cast<block_iq4_xs*>(vb);
      for (int ib = 0; ib < 8; ++ib) pack_nibbles(g.code + 32 * ib, b.qs + 16 * ib);
      return;
    }
    default:
      fail("internal: no block grid for {}", dtype_name(type));
  }
}

void read_block_scales(DType type, const void* vb, BlockScales& s) {
  s = BlockScales{};
  s.sc[0] = 1;  // legacy types: the block's d is the step
  switch (type) {
    case DType::Q4_0:
      s.d = static_cast<const block_q4_0*>(vb)->d;
      return;
    case DType::Q5_0:
      s.d = static_cast<const block_q5_0*>(vb)->d;
      return;
    case DType::Q8_0:
      s.d = static_cast<const block_q8_0*>(vb)->d;
      return;
    case DType::IQ4_NL:
      s.d = static_cast<const block_iq4_nl*>(vb)->d;
      return;
    case DType::Q4_1:
    case DType::Q5_1: {
      const bool five = type == DType::Q5_1;
      s.d = five ? static_cast<const block_q5_1*>(vb)->d : static_cast<const block_q4_1*>(vb)->d;
      s.dmin = five ? static_cast<const block_q5_1*>(vb)->m : static_cast<const block_q4_1*>(vb)->m;
      s.has_dmin = true;
      s.mn[0] = s.mn_lo = s.mn_hi = -1;
      return;
    }
    case DType::Q2_K: {
      const auto& b = *static_cast<const block_q2_K*>(vb);
      s.n_sub = 16, s.sub_size = 16;
      s.d = b.d, s.dmin = b.dmin, s.has_dmin = true;
      s.sc_lo = 0, s.sc_hi = 15, s.mn_lo = 0, s.mn_hi = 15;
      for (int j = 0; j < 16; ++j) s.sc[j] = b.scales[j] & 15, s.mn[j] = b.scales[j] >> 4;
      return;
    }
    case DType::Q3_K: {
      const auto& b = *static_cast<const block_q3_K*>(vb);
      s.n_sub = 16, s.sub_size = 16;
      s.d = b.d;
      s.sc_lo = -32, s.sc_hi = 31;
      int8_t sc[16];
      unpack_scales_q3_K(b.scales, sc);
      for (int j = 0; j < 16; ++j) s.sc[j] = sc[j];
      return;
    }
    case DType::Q4_K:
    case DType::Q5_K: {
      const bool five = type == DType::Q5_K;
      const uint8_t* scales = five ? static_cast<const block_q5_K*>(vb)->scales
                                   : static_cast<const block_q4_K*>(vb)->scales;
      s.n_sub = 8, s.sub_size = 32;
      s.d = five ? static_cast<const block_q5_K*>(vb)->d : static_cast<const block_q4_K*>(vb)->d;
      s.dmin = five ? static_cast<const block_q5_K*>(vb)->dmin
                    : static_cast<const block_q4_K*>(vb)->dmin;
      s.has_dmin = true;
      s.sc_lo = 0, s.sc_hi = 63, s.mn_lo = 0, s.mn_hi = 63;
      uint8_t sc[8], mn[8];
      unpack_scale_min_k4(scales, sc, mn);
      for (int j = 0; j < 8; ++j) s.sc[j] = sc[j], s.mn[j] = mn[j];
      return;
    }
    case DType::Q6_K: {
      const auto& b = *static_cast<const block_q6_K*>(vb);
      s.n_sub = 16, s.sub_size = 16;
      s.d = b.d;
      s.sc_lo = -128, s.sc_hi = 127;
      for (int j = 0; j < 16; ++j) s.sc[j] = b.scales[j];
      return;
    }
    case DType::IQ4_XS: {
      const auto& b = *static_cast<const block_iq4_xs*>(vb);
      s.n_sub = 8, s.sub_size = 32;
      s.d = b.d;
      s.sc_lo = -32, s.sc_hi = 31;
      for (int j = 0; j < 8; ++j) s.sc[j] = iq4xs_scale(b, j);
      return;
    }
    default:
      fail("internal: no block grid for {}", dtype_name(type));
  }
}

void write_block_scales(DType type, const BlockScales& s, void* vb) {
  switch (type) {
    case DType::Q4_0:
      static_cast<block_q4_0*>(vb)->d = s.d;
      return;
    case DType::Q5_0:
      static_cast<block_q5_0*>(vb)->d = s.d;
      return;
    case DType::Q8_0:
      static_cast<block_q8_0*>(vb)->d = s.d;
      return;
    case DType::IQ4_NL:
      static_cast<block_iq4_nl*>(vb)->d = s.d;
      return;
    case DType::Q4_1:
      static_cast<block_q4_1*>(vb)->d = s.d;
      static_cast<block_q4_1*>(vb)->m = s.dmin;
      return;
    case DType::Q5_1:
      static_cast<block_q5_1*>(vb)->d = s.d;
      static_cast<block_q5_1*>(vb)->m = s.dmin;
      return;
    case DType::Q2_K: {
      auto& b = *static_cast<block_q2_K*>(vb);
      b.d = s.d, b.dmin = s.dmin;
      for (int j = 0; j < 16; ++j)
        b.scales[j] = static_cast<uint8_t>((s.sc[j] & 15) | (s.mn[j] << 4));
      return;
    }
    case DType::Q3_K: {
      auto& b = *static_cast<block_q3_K*>(vb);
      b.d = s.d;
      int8_t sc[16];
      for (int j = 0; j < 16; ++j) sc[j] = static_cast<int8_t>(s.sc[j]);
      pack_scales_q3_K(sc, b.scales);
      return;
    }
    case DType::Q4_K:
    case DType::Q5_K: {
      uint8_t sc[8], mn[8];
      for (int j = 0; j < 8; ++j)
        sc[j] = static_cast<uint8_t>(s.sc[j]), mn[j] = static_cast<uint8_t>(s.mn[j]);
      if (type == DType::Q5_K) {
        auto& b = *static_cast<block_q5_K*>(vb);
        b.d = s.d, b.dmin = s.dmin;
        pack_scale_min_k4(sc, mn, b.scales);
      } else {
        auto& b = *static_cast<block_q4_K*>(vb);
        b.d = s.d, b.dmin = s.dmin;
        pack_scale_min_k4(sc, mn, b.scales);
      }
      return;
    }
    case DType::Q6_K: {
      auto& b = *static_cast<block_q6_K*>(vb);
      b.d = s.d;
      for (int j = 0; j < 16; ++j) b.scales[j] = static_cast<int8_t>(s.sc[j]);
      return;
    }
    case DType::IQ4_XS: {
      auto& b = *static_cast<block_iq4_xs*>(vb);
      b.d = s.d;
      b.scales_h = 0;
      for (int j = 0; j < 4; ++j) b.scales_l[j] = 0;
      for (int j = 0; j < 8; ++j) {
        const int u = s.sc[j] + 32;  // 0..63
        b.scales_l[j / 2] |= static_cast<uint8_t>((u & 15) << (4 * (j % 2)));
        b.scales_h |= static_cast<uint16_t>((u >> 4) << (2 * j));
      }
      return;
    }
    default:
      fail("internal: no block grid for {}", dtype_name(type));
  }
}

}  // namespace squish
