// Host side of the 8-bit kernels' weight layout (layout.h).
#include "kernels/cuda/layout.h"

#include <cstring>

#include "kernels/cpu/quant_k.h"

namespace squish::cuda {

namespace {

// Per GGUF block: which bytes are codes, scales and (Q6_K) the super-block scale.
struct HostLayout {
  int elems, bytes;  // GGUF block
  int code_at, code, meta_at, meta, meta2_at, meta2;
};

bool host_layout(DType type, HostLayout& l) {
  switch (type) {
    case DType::Q4_K:  // d, dmin, scales[12] | qs[128]
      l = {256, 144, 16, 128, 0, 16, 0, 0};
      return true;
    case DType::Q5_K:  // d, dmin, scales[12] | qh[32] (re-grouped) | qs[128]
      l = {256, 176, 48, 128, 0, 16, 16, 32};
      return true;
    case DType::Q6_K:  // ql[128] qh[64] | scales[16] | d
      l = {256, 210, 0, 192, 192, 16, 208, 2};
      return true;
    case DType::Q8_0:  // d | qs[32]
      l = {32, 34, 2, 32, 0, 2, 0, 0};
      return true;
    case DType::Q2_K:  // scales[16] | qs[64] | d, dmin
      l = {256, 84, 16, 64, 0, 16, 80, 4};
      return true;
    case DType::Q3_K:  // hmask[32] qs[64] (codes: qs, then hmask) | scales[12] | d
      l = {256, 110, 32, 96, 96, 12, 108, 2};
      return true;
    case DType::IQ4_XS:  // d, scales_h, scales_l[4] | qs[128]
      l = {256, 136, 8, 128, 0, 8, 0, 0};
      return true;
    // Pairs of legacy blocks (repack_legacy): code_at is the qs offset in one GGUF block.
    case DType::Q4_0:  // d | qs[16]
    case DType::IQ4_NL:
      l = {64, 36, 2, 32, 0, 4, 0, 0};
      return true;
    case DType::Q4_1:  // d, m | qs[16]
      l = {64, 40, 4, 32, 0, 8, 0, 0};
      return true;
    case DType::Q5_0:  // d | qh[4] | qs[16]
      l = {64, 44, 6, 32, 0, 4, 2, 8};
      return true;
    case DType::Q5_1:  // d, m | qh[4] | qs[16]
      l = {64, 48, 8, 32, 0, 8, 4, 8};
      return true;
    default:
      return false;
  }
}

}  // namespace

void q4k_scale_words(const uint8_t* block, uint8_t* out) {
  uint8_t sc[8], mn[8];
  unpack_scale_min_k4(block + 4, sc, mn);
  for (int s = 0; s < 4; ++s) {
    const uint32_t word = sc[2 * s] | sc[2 * s + 1] << 6 | mn[2 * s] << 12 | mn[2 * s + 1] << 18 |
                          static_cast<uint32_t>(block[s]) << 24;
    for (int k = 0; k < 4; ++k) out[4 * s + k] = static_cast<uint8_t>(word >> (8 * k));
  }
}

void q5k_fifth_bits(const uint8_t* qh, uint8_t* out) {
  for (int w = 0; w < 8; ++w) {  // item w / 2, low (even w) or high nibbles: bit w of qh[l]
    uint32_t bits = 0;
    for (int l = 0; l < 32; ++l) bits |= static_cast<uint32_t>((qh[l] >> w) & 1) << l;
    for (int k = 0; k < 4; ++k) out[4 * w + k] = static_cast<uint8_t>(bits >> (8 * k));
  }
}

void iq4_pairs(const uint8_t* qs, uint8_t* out) {
  auto code = [&](int e) { return e < 16 ? qs[e] & 15 : qs[e - 16] >> 4; };
  for (int m = 0; m < 16; ++m) out[m] = static_cast<uint8_t>(code(2 * m) | code(2 * m + 1) << 4);
}

void repack_q8(DType type, const uint8_t* src, int64_t rows, int64_t cols, uint8_t* dst) {
  HostLayout l;
  if (!host_layout(type, l)) return;  // rejected by matmul_q8_supported
  const int64_t nb = cols / l.elems, n = rows * nb;
  uint8_t* codes = dst;
  uint8_t* meta = codes + n * l.code;
  uint8_t* meta2 = meta + n * l.meta;
  // Q4_K, Q5_K, Q8_0, Q2_K and IQ4_XS codes: 32-byte items (4 per Q4_K / Q5_K / IQ4_XS block, 2
  // per Q2_K, 1 per Q8_0), split halves.
  const int items = l.code / 32;
  if (l.elems == 64) {  // legacy pairs: one 32-byte item each (layout.h)
    const int gguf = l.bytes / 2;
    const bool has_min = l.meta == 8;
    for (int64_t i = 0; i < n; ++i) {
      for (int h = 0; h < 2; ++h) {
        const uint8_t* b = src + i * l.bytes + h * gguf;
        uint8_t* out = codes + code_half_at(nb, i / nb, static_cast<int>(i % nb), h);
        if (type == DType::IQ4_NL) {
          iq4_pairs(b + l.code_at, out);
        } else {
          std::memcpy(out, b + l.code_at, 16);
        }
        std::memcpy(meta + i * l.meta + 2 * h, b, 2);                                  // d
        if (has_min) std::memcpy(meta + i * l.meta + 4 + 2 * h, b + 2, 2);             // m
        if (l.meta2 > 0) std::memcpy(meta2 + i * l.meta2 + 4 * h, b + l.meta2_at, 4);  // qh
      }
    }
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* b = src + i * l.bytes;
    if (type == DType::Q6_K) {  // its 16-byte loads already cover whole sectors
      std::memcpy(codes + i * l.code, b + l.code_at, l.code);
    } else if (type == DType::Q3_K) {  // as Q6_K: qs[64], then hmask[32]
      std::memcpy(codes + i * l.code, b + l.code_at, 64);
      std::memcpy(codes + i * l.code + 64, b, 32);
    } else {
      const int64_t r = i / nb;
      for (int k = 0; k < items; ++k) {
        const int it = static_cast<int>(i % nb) * items + k;
        for (int h = 0; h < 2; ++h) {
          uint8_t* out = codes + code_half_at(nb * items, r, it, h);
          const uint8_t* in = b + l.code_at + 32 * k + 16 * h;
          if (type == DType::IQ4_XS) {
            iq4_pairs(in, out);
          } else {
            std::memcpy(out, in, 16);
          }
        }
      }
    }
    if (type == DType::Q4_K || type == DType::Q5_K) {
      q4k_scale_words(b, meta + i * l.meta);
    } else {
      std::memcpy(meta + i * l.meta, b + l.meta_at, l.meta);
    }
    if (type == DType::Q5_K) {
      q5k_fifth_bits(b + l.meta2_at, meta2 + i * l.meta2);
    } else if (l.meta2 > 0) {
      std::memcpy(meta2 + i * l.meta2, b + l.meta2_at, l.meta2);
    }
  }
}

}  // namespace squish::cuda
