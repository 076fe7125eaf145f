// The per-lane pieces of the 8-bit-activation mat-vec kernels (kernels_q8.cu) for Q2_K, Q3_K,
// Q4_K, Q5_K, Q6_K, Q8_0 and IQ4_XS in the repacked layout (layout.h): how a lane loads one item's
// codes and scales, the activations they multiply, and their dot product. Host and device code:
// nvcc compiles them into the kernels, the host compiler into the CPU test suite
// (tests/cuda_layout_test.cpp), where the CUDA intrinsics they use are written out in plain C++
// with the same integer results, so CI checks every type's arithmetic against the CPU reference
// without a GPU.
//
// Activations are quantized per 32 elements: xq (int8 codes) and xd (F32 scale per 32).
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "core/dtype.h"
#include "kernels/cuda/layout.h"

#include "kernels/cuda/dequant.cuh"
#include "kernels/cuda/host_device.h"

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#endif

namespace squish::cuda::q8 {

#if defined(__CUDACC__)
using Int4 = int4;
#else
struct alignas(16) Int4 {
  int x, y, z, w;
};
#endif

SQUISH_HOST_DEVICE float h2f(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(static_cast<unsigned short>(u & 0xFFFF)));
#else
  return fp16_to_fp32(static_cast<uint16_t>(u & 0xFFFF));
#endif
}

// Weight codes: read once, so they bypass L1 (which keeps the activations).
SQUISH_HOST_DEVICE Int4 ld_codes(const uint8_t* p) {
  Int4 v;
#if defined(__CUDA_ARCH__)
  asm volatile("ld.global.nc.L1::no_allocate.v4.s32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
#else
  std::memcpy(&v, p, sizeof v);
#endif
  return v;
}
SQUISH_HOST_DEVICE Int4 ldg4(const void* p) {
#if defined(__CUDA_ARCH__)
  return __ldg(reinterpret_cast<const int4*>(p));
#else
  Int4 v;
  std::memcpy(&v, p, sizeof v);
  return v;
#endif
}
SQUISH_HOST_DEVICE uint32_t ldg_u32(const uint8_t* p) {  // 4-byte aligned
#if defined(__CUDA_ARCH__)
  return __ldg(reinterpret_cast<const unsigned*>(p));
#else
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
#endif
}
SQUISH_HOST_DEVICE uint32_t ldg_u16(const uint8_t* p) {
#if defined(__CUDA_ARCH__)
  return __ldg(reinterpret_cast<const unsigned short*>(p));
#else
  return p[0] | p[1] << 8;
#endif
}
// Activations: from global memory through L1 (read by every warp of the product), or from the
// block's shared memory when a prologue made them there (kShared).
template <bool kShared>
SQUISH_HOST_DEVICE Int4 act4(const int8_t* p) {
  if constexpr (kShared) return *reinterpret_cast<const Int4*>(p);
  return ldg4(p);
}
template <bool kShared>
SQUISH_HOST_DEVICE float act1(const float* p) {
#if defined(__CUDA_ARCH__)
  if constexpr (!kShared) return __ldg(p);
#endif
  return *p;
}

// Sum of the 4 signed bytes of a times those of b, plus c (__dp4a).
SQUISH_HOST_DEVICE int dp4a(int a, int b, int c) {
#if defined(__CUDA_ARCH__)
  return __dp4a(a, b, c);
#else
  for (int k = 0; k < 4; ++k)
    c += static_cast<int8_t>(a >> (8 * k)) * static_cast<int8_t>(b >> (8 * k));
  return c;
#endif
}
// Sum of 4 unsigned bytes of a times 4 signed bytes of b, plus c (__dp4a has only same-sign forms).
SQUISH_HOST_DEVICE int dp4a_us(int a, int b, int c) {
#if defined(__CUDA_ARCH__)
  int d;
  asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
#else
  for (int k = 0; k < 4; ++k)
    c += static_cast<uint8_t>(a >> (8 * k)) * static_cast<int8_t>(b >> (8 * k));
  return c;
#endif
}
// Byte k of the result is byte (selector nibble k) of the 8 bytes y:x (selectors 0-7 only).
SQUISH_HOST_DEVICE uint32_t byte_perm(uint32_t x, uint32_t y, uint32_t selector) {
#if defined(__CUDA_ARCH__)
  return __byte_perm(x, y, selector);
#else
  const uint64_t both = static_cast<uint64_t>(y) << 32 | x;
  uint32_t r = 0;
  for (int k = 0; k < 4; ++k) {
    const uint32_t byte = (both >> (8 * ((selector >> (4 * k)) & 7))) & 0xFF;
    r |= byte << (8 * k);
  }
  return r;
#endif
}

// IQ4_NL's table entries of the codes in nibbles 0-3 of q (bits 16-31 ignored) as 4 signed bytes:
// two byte permutes take entries 0-7 and 8-15 of the table held in registers (a selector's bit 3
// is ignored), and a third picks between them by each code's bit 3 (a lookup in memory would
// serialize a warp's lanes).
SQUISH_HOST_DEVICE uint32_t iq4_values(uint32_t q) {
  constexpr uint32_t kT0 = 0xBFAD9881u, kT1 = 0xF6EADDCFu;  // -127 -104 -83 -65 | -49 -35 -22 -10
  constexpr uint32_t kT2 = 0x26190D01u, kT3 = 0x71594535u;  // 1 13 25 38 | 53 69 89 113
  return byte_perm(byte_perm(kT0, kT1, q), byte_perm(kT2, kT3, q), 0x3210u | ((q & 0x8888u) >> 1));
}
// The same for 4 codes in the low nibbles of c's bytes (GGUF's IQ4 nibble order).
SQUISH_HOST_DEVICE uint32_t iq4_byte_values(uint32_t c) {
  const uint32_t t = c | (c >> 4);  // code of byte k in nibble k (c's high nibbles are 0)
  return iq4_values((t & 0xFFu) | ((t >> 8) & 0xFF00u));
}

// Sum over the 8 code words c0, c1 masked with `mask` times the activation words a, b: codes as
// signed bytes, or as unsigned ones (kUnsigned: dp4a_us).
template <bool kUnsigned>
SQUISH_HOST_DEVICE int masked_dot(const Int4& c0, const Int4& c1, int mask, const Int4& a,
                                  const Int4& b) {
  const int c[8] = {c0.x, c0.y, c0.z, c0.w, c1.x, c1.y, c1.z, c1.w};
  const int x[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
  int acc = 0;
  SQUISH_UNROLL
  for (int k = 0; k < 8; ++k)
    acc = kUnsigned ? dp4a_us(c[k] & mask, x[k], acc) : dp4a(c[k] & mask, x[k], acc);
  return acc;
}
// Sum of the 16 signed bytes of a, each times the same byte of `times` (e.g. 0x04040404: 4 x).
SQUISH_HOST_DEVICE int sum_bytes_times(const Int4& a, int times) {
  return dp4a(a.w, times, dp4a(a.z, times, dp4a(a.y, times, dp4a(a.x, times, 0))));
}
SQUISH_HOST_DEVICE int sum_bytes(const Int4& a, int acc) {
  acc = dp4a(a.x, 0x01010101, acc);
  acc = dp4a(a.y, 0x01010101, acc);
  acc = dp4a(a.z, 0x01010101, acc);
  return dp4a(a.w, 0x01010101, acc);
}

// A matrix in the repacked layout: rows * nb blocks; codes (kCode bytes per block), then
// scales (kMeta per block), then, for Q6_K, the super-block scales (kMeta2 per block).
struct View {
  const uint8_t* codes;
  const uint8_t* meta;
  const uint8_t* meta2;
  int64_t nb;  // blocks per row
};

// Each type: kItems items per block, one lane per item. load() reads an item's codes and scales
// of row r, load_act() the activations it multiplies (xq, xd: token's row start), dot() the sum.

// Q4_K: item s (0..3) = the 32 code bytes of 64-element group s: low nibbles are elements
// s*64 + 0..31 (scale/min 2s), high nibbles s*64 + 32..63 (scale/min 2s + 1). The 16 bytes of
// block scales are rearranged by repack_q8 (q4k_scale_words) so that an item's scales cost a few
// bit-field extractions instead of ggml's get_scale_min_k4 (two of them per item, with a branch
// that splits every warp): word s = scale 2s | scale 2s+1 << 6 | min 2s << 12 | min 2s+1 << 18 |
// byte s of (d, dmin) << 24.
struct Q4K {
  static constexpr int kElems = 256, kItems = 4, kCode = 128, kMeta = 16, kMeta2 = 0;
  static constexpr int kDecodeBlocks = 6;      // per SM (80 registers, no spills; sm_90 ptxas)
  static constexpr int kPersistentBlocks = 5;  // the persistent grid, 2 rows per warp: 6 spills
  static constexpr int kPersistentRows = 2;    // rows per warp in the pair kernel
  static constexpr int kBlockBytes = 144;
  static constexpr int kDecodeVariant = 3;  // decode_variant()
  struct Raw {
    Int4 c0, c1, m;  // codes; the block's four scale words
  };
  struct Act {
    Int4 a0, a1, a2, a3;
    float d0, d1;
    int s0, s1;  // sums of the codes of each 32
  };
  SQUISH_HOST_DEVICE static Raw load(const View& v, int64_t r, int it) {
    const int64_t blk = r * v.nb + it / kItems, n_items = v.nb * kItems;
    Raw w;
    w.c0 = ld_codes(v.codes + code_half_at(n_items, r, it, 0));
    w.c1 = ld_codes(v.codes + code_half_at(n_items, r, it, 1));
    w.m = ldg4(v.meta + blk * kMeta);
    return w;
  }
  template <bool kShared = false>
  SQUISH_HOST_DEVICE static Act load_act(const int8_t* xq, const float* xd, int it) {
    const int b = it / kItems, s = it % kItems;
    const int8_t* p = xq + b * 256 + s * 64;
    Act x;
    x.a0 = act4<kShared>(p);
    x.a1 = act4<kShared>(p + 16);
    x.a2 = act4<kShared>(p + 32);
    x.a3 = act4<kShared>(p + 48);
    x.d0 = act1<kShared>(xd + b * 8 + 2 * s);
    x.d1 = act1<kShared>(xd + b * 8 + 2 * s + 1);
    x.s0 = sum_bytes(x.a1, sum_bytes(x.a0, 0));
    x.s1 = sum_bytes(x.a3, sum_bytes(x.a2, 0));
    return x;
  }
  // Item s's sum from its integer sums over the low-nibble codes (sl) and the high-nibble ones
  // (sh) times the activations: the scale words m (q4k_scale_words) give the scales and mins;
  // high_unit is what one unit of sh is worth in codes (1/16 when the nibbles stay in place).
  SQUISH_HOST_DEVICE static float scaled(const Int4& m, int s, int sl, int sh, float high_unit,
                                         const Act& x) {
    const uint32_t wx = m.x, wy = m.y, wz = m.z, ww = m.w;
    const float d = h2f(byte_perm(wx, wy, 0x0073)), dmin = h2f(byte_perm(wz, ww, 0x0073));
    const uint32_t v = s == 0 ? wx : s == 1 ? wy : s == 2 ? wz : ww;
    const int sc0 = v & 63, sc1 = (v >> 6) & 63, m0 = (v >> 12) & 63, m1 = (v >> 18) & 63;
    const float d0 = d * sc0, d1 = d * high_unit * sc1, m0d = dmin * m0, m1d = dmin * m1;
    return x.d0 * (d0 * sl - m0d * x.s0) + x.d1 * (d1 * sh - m1d * x.s1);
  }
  SQUISH_HOST_DEVICE static float dot(const Raw& w, const Act& x, int it) {
    // High nibbles are left in place (16 times the code, unsigned bytes): one AND per word instead
    // of a shift and an AND; the 1/16 goes into their scale.
    const int sl = masked_dot<false>(w.c0, w.c1, 0x0F0F0F0F, x.a0, x.a1);
    const int sh = masked_dot<true>(w.c0, w.c1, static_cast<int>(0xF0F0F0F0u), x.a2, x.a3);
    return scaled(w.m, it % kItems, sl, sh, 0.0625f, x);
  }
};

// Q5_K: Q4_K's items, scales (q4k_scale_words) and activations, plus each code's fifth bit:
// repack_q8 gathers item s's 64 of them (bits 2 s and 2 s + 1 of qh[0..31]) into two words in
// meta2 (layout.h: q5k_fifth_bits), bit l of the first for element s*64 + l, of the second for
// s*64 + 32 + l; fifth_bytes spreads 4 of them to bit 4 of 4 code bytes.
struct Q5K {
  static constexpr int kElems = 256, kItems = 4, kCode = 128, kMeta = 16, kMeta2 = 32;
  static constexpr int kDecodeBlocks = 5;
  static constexpr int kPersistentBlocks = 4;
  static constexpr int kPersistentRows = 2;
  static constexpr int kBlockBytes = 176;
  static constexpr int kDecodeVariant = 3;
  struct Raw {
    Int4 c0, c1, m;
    uint32_t h0, h1;  // fifth bits of the low-nibble and the high-nibble codes
  };
  using Act = Q4K::Act;
  SQUISH_HOST_DEVICE static Raw load(const View& v, int64_t r, int it) {
    const int64_t blk = r * v.nb + it / kItems, n_items = v.nb * kItems;
    const uint8_t* h = v.meta2 + blk * kMeta2 + 8 * (it % kItems);
    Raw w;
    w.c0 = ld_codes(v.codes + code_half_at(n_items, r, it, 0));
    w.c1 = ld_codes(v.codes + code_half_at(n_items, r, it, 1));
    w.m = ldg4(v.meta + blk * kMeta);
    w.h0 = ldg_u32(h);
    w.h1 = ldg_u32(h + 4);
    return w;
  }
  template <bool kShared = false>
  SQUISH_HOST_DEVICE static Act load_act(const int8_t* xq, const float* xd, int it) {
    return Q4K::load_act<kShared>(xq, xd, it);
  }
  // Bits 0-3 of b at bit 4 of bytes 0-3.
  SQUISH_HOST_DEVICE static int fifth_bytes(uint32_t b) {
    return static_cast<int>((((b & 15u) * 0x00204081u) & 0x01010101u) << 4);
  }
  SQUISH_HOST_DEVICE static float dot(const Raw& w, const Act& x, int it) {
    const int c[8] = {w.c0.x, w.c0.y, w.c0.z, w.c0.w, w.c1.x, w.c1.y, w.c1.z, w.c1.w};
    const int lo[8] = {x.a0.x, x.a0.y, x.a0.z, x.a0.w, x.a1.x, x.a1.y, x.a1.z, x.a1.w};
    const int hi[8] = {x.a2.x, x.a2.y, x.a2.z, x.a2.w, x.a3.x, x.a3.y, x.a3.z, x.a3.w};
    int sl = 0, sh = 0;
    SQUISH_UNROLL
    for (int k = 0; k < 8; ++k) {  // word k: l = 4 k .. 4 k + 3
      sl = dp4a((c[k] & 0x0F0F0F0F) | fifth_bytes(w.h0 >> (4 * k)), lo[k], sl);
      sh = dp4a(((c[k] >> 4) & 0x0F0F0F0F) | fifth_bytes(w.h1 >> (4 * k)), hi[k], sh);
    }
    return Q4K::scaled(w.m, it % kItems, sl, sh, 1.0f, x);
  }
};

// Q6_K: item s (0..3) = half n = s / 2 (128 elements), l = o .. o + 15 with o = (s % 2) * 16:
// ql[n*64 + o ..], ql[n*64 + 32 + o ..] and qh[n*32 + o ..] give elements n*128 + q*32 + o + i
// of the four quarters q (scales n*8 + s%2 + 2q). The codes enter __dp4a unsigned (0..63) and
// the bias of 32 is taken off once per 16 weights through the activations' byte sums
// (sum (c - 32) x = sum c x - 32 sum x), which load_act computes once for all rows of a warp:
// per-byte signed subtraction (__vsubss4) costs about a dozen instructions per word on sm_90.
struct Q6K {
  static constexpr int kElems = 256, kItems = 4, kCode = 192, kMeta = 16, kMeta2 = 2;
  static constexpr int kDecodeBlocks = 5;      // 6 would spill
  static constexpr int kPersistentBlocks = 4;  // the persistent grid, 2 rows per warp: 5 spills
  static constexpr int kPersistentRows = 2;
  static constexpr int kBlockBytes = 210;
  static constexpr int kDecodeVariant = 3;
  struct Raw {
    Int4 l0, l1, h, sc;
    uint32_t d;
  };
  struct Act {
    Int4 q[4];
    float d[4];
    int sum32[4];  // 32 * sum of each quarter's 16 activation bytes
  };
  SQUISH_HOST_DEVICE static Raw load(const View& v, int64_t r, int it) {
    const int64_t blk = r * v.nb + it / kItems;
    const int s = it % kItems, n = s >> 1, o = (s & 1) * 16;
    const uint8_t* c = v.codes + blk * kCode;
    Raw w;
    w.l0 = ld_codes(c + n * 64 + o);
    w.l1 = ld_codes(c + n * 64 + 32 + o);
    w.h = ld_codes(c + 128 + n * 32 + o);
    w.sc = ldg4(v.meta + blk * kMeta);
    w.d = ldg_u16(v.meta2 + blk * kMeta2);
    return w;
  }
  template <bool kShared = false>
  SQUISH_HOST_DEVICE static Act load_act(const int8_t* xq, const float* xd, int it) {
    const int b = it / kItems, s = it % kItems, n = s >> 1, o = (s & 1) * 16;
    const int8_t* p = xq + b * 256 + n * 128 + o;
    Act x;
    SQUISH_UNROLL
    for (int k = 0; k < 4; ++k) {
      x.q[k] = act4<kShared>(p + 32 * k);
      x.d[k] = act1<kShared>(xd + b * 8 + n * 4 + k);
      x.sum32[k] = sum_bytes_times(x.q[k], 0x20202020);
    }
    return x;
  }
  SQUISH_HOST_DEVICE static float dot(const Raw& w, const Act& x, int it) {
    const int s = it % kItems, n = s >> 1, is = s & 1;
    const int qa[4] = {w.l0.x, w.l0.y, w.l0.z, w.l0.w}, qb[4] = {w.l1.x, w.l1.y, w.l1.z, w.l1.w};
    const int hh[4] = {w.h.x, w.h.y, w.h.z, w.h.w};
    const int xa[4][4] = {{x.q[0].x, x.q[0].y, x.q[0].z, x.q[0].w},
                          {x.q[1].x, x.q[1].y, x.q[1].z, x.q[1].w},
                          {x.q[2].x, x.q[2].y, x.q[2].z, x.q[2].w},
                          {x.q[3].x, x.q[3].y, x.q[3].z, x.q[3].w}};
    int s0 = -x.sum32[0], s1 = -x.sum32[1], s2 = -x.sum32[2], s3 = -x.sum32[3];
    SQUISH_UNROLL
    for (int k = 0; k < 4; ++k) {
      // Codes 0..63 per byte (low nibble | two high bits << 4): non-negative as signed bytes.
      const int w0 = (qa[k] & 0x0F0F0F0F) | ((hh[k] << 4) & 0x30303030);
      const int w1 = (qb[k] & 0x0F0F0F0F) | ((hh[k] << 2) & 0x30303030);
      const int w2 = ((qa[k] >> 4) & 0x0F0F0F0F) | (hh[k] & 0x30303030);
      const int w3 = ((qb[k] >> 4) & 0x0F0F0F0F) | ((hh[k] >> 2) & 0x30303030);
      s0 = dp4a(w0, xa[0][k], s0);
      s1 = dp4a(w1, xa[1][k], s1);
      s2 = dp4a(w2, xa[2][k], s2);
      s3 = dp4a(w3, xa[3][k], s3);
    }
    const uint32_t A = n ? w.sc.z : w.sc.x, B = n ? w.sc.w : w.sc.y;
    const float d = h2f(w.d);
    const float f0 = d * static_cast<int8_t>(A >> (8 * is));
    const float f1 = d * static_cast<int8_t>(A >> (8 * (is + 2)));
    const float f2 = d * static_cast<int8_t>(B >> (8 * is));
    const float f3 = d * static_cast<int8_t>(B >> (8 * (is + 2)));
    return f0 * x.d[0] * s0 + f1 * x.d[1] * s1 + f2 * x.d[2] * s2 + f3 * x.d[3] * s3;
  }
};

// Q8_0: item = one block of 32 codes.
struct Q80 {
  static constexpr int kElems = 32, kItems = 1, kCode = 32, kMeta = 2, kMeta2 = 0;
  static constexpr int kDecodeBlocks = 8;
  static constexpr int kPersistentBlocks = 8;
  static constexpr int kPersistentRows = 1;
  static constexpr int kBlockBytes = 34;
  static constexpr int kDecodeVariant = 2;  // measured on the H200: 307 vs 294 tok/s (4)
  struct Raw {
    Int4 c0, c1;
    uint32_t d;
  };
  struct Act {
    Int4 a0, a1;
    float d;
  };
  SQUISH_HOST_DEVICE static Raw load(const View& v, int64_t r, int it) {
    const int64_t blk = r * v.nb + it;
    Raw w;
    w.c0 = ld_codes(v.codes + code_half_at(v.nb, r, it, 0));
    w.c1 = ld_codes(v.codes + code_half_at(v.nb, r, it, 1));
    w.d = ldg_u16(v.meta + blk * kMeta);
    return w;
  }
  template <bool kShared = false>
  SQUISH_HOST_DEVICE static Act load_act(const int8_t* xq, const float* xd, int it) {
    Act x;
    x.a0 = act4<kShared>(xq + it * 32);
    x.a1 = act4<kShared>(xq + it * 32 + 16);
    x.d = act1<kShared>(xd + it);
    return x;
  }
  SQUISH_HOST_DEVICE static float dot(const Raw& w, const Act& x, int) {
    const int s = masked_dot<false>(w.c0, w.c1, ~0, x.a0, x.a1);
    return h2f(w.d) * x.d * s;
  }
};

// Q3_K: item c (0..3) = half h = c / 2 (128 elements) and l = l0 .. l0 + 15, l0 = (c % 2) * 16:
// the 16 bytes qs[32 h + l0 ..] (2-bit fields g = 0..3: elements 128 h + 32 g + l, scale
// 8 h + 2 g + c % 2) and hmask[l0 ..] (their third bits, bits 4 h + g). Codes are stored whole
// per block: qs[64] then hmask[32]; scales: the 12 packed bytes; meta2: d. The codes enter
// __dp4a as 0..7 and the bias of 4 comes off through the activations' byte sums, as Q6_K's.
struct Q3K {
  static constexpr int kElems = 256, kItems = 4, kCode = 96, kMeta = 12, kMeta2 = 2;
  static constexpr int kDecodeBlocks = 5;
  static constexpr int kPersistentBlocks = 4;
  static constexpr int kPersistentRows = 2;
  static constexpr int kBlockBytes = 110;
  static constexpr int kDecodeVariant = 3;
  struct Raw {
    Int4 q, hm;
    uint32_t s0, s1, s2, d;  // the packed scale bytes 0-3, 4-7, 8-11; d
  };
  struct Act {
    Int4 a[4];
    float d[4];
    int sum4[4];  // 4 * sum of each chunk's 16 activation bytes
  };
  SQUISH_HOST_DEVICE static Raw load(const View& v, int64_t r, int it) {
    const int64_t blk = r * v.nb + it / kItems;
    const int c = it % kItems, h = c >> 1, l0 = (c & 1) * 16;
    const uint8_t* codes = v.codes + blk * kCode;
    const uint8_t* m = v.meta + blk * kMeta;
    Raw w;
    w.q = ld_codes(codes + 32 * h + l0);
    w.hm = ld_codes(codes + 64 + l0);
    w.s0 = ldg_u32(m);
    w.s1 = ldg_u32(m + 4);
    w.s2 = ldg_u32(m + 8);
    w.d = ldg_u16(v.meta2 + blk * kMeta2);
    return w;
  }
  template <bool kShared = false>
  SQUISH_HOST_DEVICE static Act load_act(const int8_t* xq, const float* xd, int it) {
    const int b = it / kItems, c = it % kItems, h = c >> 1, l0 = (c & 1) * 16;
    Act x;
    SQUISH_UNROLL
    for (int g = 0; g < 4; ++g) {
      x.a[g] = act4<kShared>(xq + b * 256 + 128 * h + 32 * g + l0);
      x.d[g] = act1<kShared>(xd + b * 8 + 4 * h + g);
      x.sum4[g] = sum_bytes_times(x.a[g], 0x04040404);
    }
    return x;
  }
  SQUISH_HOST_DEVICE static float dot(const Raw& w, const Act& x, int it) {
    const int c = it % kItems, h = c >> 1, p = c & 1;
    const int q[4] = {w.q.x, w.q.y, w.q.z, w.q.w}, hm[4] = {w.hm.x, w.hm.y, w.hm.z, w.hm.w};
    float acc = 0;
    SQUISH_UNROLL
    for (int g = 0; g < 4; ++g) {
      const int a[4] = {x.a[g].x, x.a[g].y, x.a[g].z, x.a[g].w};
      int s = -x.sum4[g];
      SQUISH_UNROLL
      for (int k = 0; k < 4; ++k) {
        const int code =
            ((q[k] >> (2 * g)) & 0x03030303) | (((hm[k] >> (4 * h + g)) & 0x01010101) << 2);
        s = dp4a(code, a[k], s);
      }
      // Scale j = 8 h + 2 g + p: low 4 bits in nibble h of byte 2 g + p, high 2 bits at bit
      // 2 (2 h + g / 2) of byte 8 + (2 g + p) % 4 (dequant.cuh: q3_scale).
      const uint32_t lo_word = g < 2 ? w.s0 : w.s1;
      const int lo = (lo_word >> (8 * ((2 * g + p) % 4) + 4 * h)) & 15;
      const int hi = (w.s2 >> (8 * ((2 * g + p) % 4) + 2 * (2 * h + g / 2))) & 3;
      acc += static_cast<float>((lo | hi << 4) - 32) * x.d[g] * s;
    }
    return h2f(w.d) * acc;
  }
};

// Q2_K: item c (0..1) = half h = c (128 elements): the 32 bytes qs[32 h ..], as two 16-byte
// halves (code_half_at: l = 0..15, then 16..31), whose 2-bit fields g = 0..3 are elements
// 128 h + 32 g + l with scale / min byte 8 h + 2 g + l / 16. meta: scales[16]; meta2: d, dmin.
struct Q2K {
  static constexpr int kElems = 256, kItems = 2, kCode = 64, kMeta = 16, kMeta2 = 4;
  static constexpr int kDecodeBlocks = 5;
  static constexpr int kPersistentBlocks = 4;
  static constexpr int kPersistentRows = 2;
  static constexpr int kBlockBytes = 84;
  static constexpr int kDecodeVariant = 3;
  struct Raw {
    Int4 c0, c1;
    uint32_t s0, s1, dm;  // scale bytes 8 h .. 8 h + 7; d | dmin << 16
  };
  struct Act {
    Int4 a[4][2];
    float d[4];
    int sum[4][2];  // sum of each 16 activation bytes (for the mins), once for all rows of a warp
  };
  SQUISH_HOST_DEVICE static Raw load(const View& v, int64_t r, int it) {
    const int64_t blk = r * v.nb + it / kItems, n_items = v.nb * kItems;
    const uint8_t* m = v.meta + blk * kMeta + 8 * (it % kItems);
    Raw w;
    w.c0 = ld_codes(v.codes + code_half_at(n_items, r, it, 0));
    w.c1 = ld_codes(v.codes + code_half_at(n_items, r, it, 1));
    w.s0 = ldg_u32(m);
    w.s1 = ldg_u32(m + 4);
    w.dm = ldg_u32(v.meta2 + blk * kMeta2);
    return w;
  }
  template <bool kShared = false>
  SQUISH_HOST_DEVICE static Act load_act(const int8_t* xq, const float* xd, int it) {
    const int b = it / kItems, h = it % kItems;
    Act x;
    SQUISH_UNROLL
    for (int g = 0; g < 4; ++g) {
      const int8_t* p = xq + b * 256 + 128 * h + 32 * g;
      x.a[g][0] = act4<kShared>(p);
      x.a[g][1] = act4<kShared>(p + 16);
      x.d[g] = act1<kShared>(xd + b * 8 + 4 * h + g);
      x.sum[g][0] = sum_bytes(x.a[g][0], 0);
      x.sum[g][1] = sum_bytes(x.a[g][1], 0);
    }
    return x;
  }
  SQUISH_HOST_DEVICE static float dot(const Raw& w, const Act& x, int) {
    const int c[2][4] = {{w.c0.x, w.c0.y, w.c0.z, w.c0.w}, {w.c1.x, w.c1.y, w.c1.z, w.c1.w}};
    float sum_scaled = 0, sum_min = 0;
    SQUISH_UNROLL
    for (int g = 0; g < 4; ++g) {
      int qx = 0, mx = 0;
      SQUISH_UNROLL
      for (int p = 0; p < 2; ++p) {
        const Int4& a = x.a[g][p];
        const int av[4] = {a.x, a.y, a.z, a.w};
        int s = 0;
        SQUISH_UNROLL
        for (int k = 0; k < 4; ++k) s = dp4a((c[p][k] >> (2 * g)) & 0x03030303, av[k], s);
        const int sc = ((g < 2 ? w.s0 : w.s1) >> (8 * ((2 * g + p) % 4))) & 0xFF;
        qx += (sc & 15) * s;
        mx += (sc >> 4) * x.sum[g][p];
      }
      sum_scaled += x.d[g] * qx;
      sum_min += x.d[g] * mx;
    }
    return h2f(w.dm) * sum_scaled - h2f(w.dm >> 16) * sum_min;
  }
};

// IQ4_XS: item s (0..3) = groups 2 s and 2 s + 1, 16 code bytes each as the two halves of
// code_half_at, re-ordered by repack_q8 (layout.h: iq4_pairs) so that byte m holds elements 2 m
// (low nibble) and 2 m + 1: each code word is 8 consecutive elements, whose 4-bit codes index
// IQ4_NL's table as byte-permute selectors directly (iq4_values); meta: the block's first 8
// bytes (d, scales_h, scales_l[4]).
struct IQ4XS {
  static constexpr int kElems = 256, kItems = 4, kCode = 128, kMeta = 8, kMeta2 = 0;
  static constexpr int kDecodeBlocks = 5;
  static constexpr int kPersistentBlocks = 4;
  static constexpr int kPersistentRows = 2;
  static constexpr int kBlockBytes = 136;
  static constexpr int kDecodeVariant = 3;
  struct Raw {
    Int4 c0, c1;
    uint32_t m0, m1;  // d | scales_h << 16; scales_l
  };
  using Act = Q4K::Act;  // its byte sums go unused (the compiler drops them)
  SQUISH_HOST_DEVICE static Raw load(const View& v, int64_t r, int it) {
    const int64_t blk = r * v.nb + it / kItems, n_items = v.nb * kItems;
    Raw w;
    w.c0 = ld_codes(v.codes + code_half_at(n_items, r, it, 0));
    w.c1 = ld_codes(v.codes + code_half_at(n_items, r, it, 1));
    w.m0 = ldg_u32(v.meta + blk * kMeta);
    w.m1 = ldg_u32(v.meta + blk * kMeta + 4);
    return w;
  }
  template <bool kShared = false>
  SQUISH_HOST_DEVICE static Act load_act(const int8_t* xq, const float* xd, int it) {
    return Q4K::load_act<kShared>(xq, xd, it);
  }
  // Sum over a group's 32 codes (word k: elements 8 k .. 8 k + 7) times its activations.
  SQUISH_HOST_DEVICE static int group_dot(const Int4& c, const Int4& lo, const Int4& hi) {
    const uint32_t q[4] = {static_cast<uint32_t>(c.x), static_cast<uint32_t>(c.y),
                           static_cast<uint32_t>(c.z), static_cast<uint32_t>(c.w)};
    const int a[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
    int s = 0;
    SQUISH_UNROLL
    for (int k = 0; k < 4; ++k) {
      s = dp4a(static_cast<int>(iq4_values(q[k])), a[2 * k], s);
      s = dp4a(static_cast<int>(iq4_values(q[k] >> 16)), a[2 * k + 1], s);
    }
    return s;
  }
  SQUISH_HOST_DEVICE static float dot(const Raw& w, const Act& x, int it) {
    const int s = it % kItems;
    const int sc0 = (((w.m1 >> (8 * s)) & 15) | ((w.m0 >> (16 + 4 * s)) & 3) << 4) - 32;
    const int sc1 = (((w.m1 >> (8 * s + 4)) & 15) | ((w.m0 >> (18 + 4 * s)) & 3) << 4) - 32;
    const float s0 = static_cast<float>(sc0 * group_dot(w.c0, x.a0, x.a1));
    const float s1 = static_cast<float>(sc1 * group_dot(w.c1, x.a2, x.a3));
    return h2f(w.m0) * (x.d0 * s0 + x.d1 * s1);
  }
};

// The legacy 32-element types (Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL) in pairs of GGUF blocks: item =
// 64 elements, block 0's 16 code bytes and block 1's as the halves of code_half_at (byte j:
// element j, low nibble, and j + 16; IQ4_NL's in iq4_pairs order), meta = d0, d1 (then m0, m1
// for the types with a min), meta2 = qh0, qh1 (the fifth bits, bit j for element j). The codes
// enter __dp4a as 0..15 (0..31 with the fifth bit); Q4_0's and Q5_0's bias of 8 or 16 and the
// mins come off once per 32 through the activations' byte sums.
template <DType kType>
struct Legacy {
  static constexpr bool kMin = kType == DType::Q4_1 || kType == DType::Q5_1;
  static constexpr bool kFifth = kType == DType::Q5_0 || kType == DType::Q5_1;
  static constexpr bool kIQ4 = kType == DType::IQ4_NL;
  static constexpr int kBias = kMin || kIQ4 ? 0 : (kFifth ? 16 : 8);
  static constexpr int kElems = 64, kItems = 1, kCode = 32, kMeta = kMin ? 8 : 4;
  static constexpr int kMeta2 = kFifth ? 8 : 0;
  static constexpr int kBlockBytes = 2 * (2 + (kMin ? 2 : 0) + (kFifth ? 4 : 0) + 16);
  static constexpr int kDecodeBlocks = 6;
  static constexpr int kPersistentBlocks = 5;
  static constexpr int kPersistentRows = 2;
  static constexpr int kDecodeVariant = 3;
  struct Raw {
    Int4 c0, c1;
    uint32_t d, m, h0, h1;  // d0 | d1 << 16; m0 | m1 << 16; qh0; qh1
  };
  // Q4_K's item of 64 activations is this one (its it * 64, 2 * it), with the byte sums per 32.
  using Act = Q4K::Act;
  SQUISH_HOST_DEVICE static Raw load(const View& v, int64_t r, int it) {
    const int64_t blk = r * v.nb + it;
    Raw w;
    w.c0 = ld_codes(v.codes + code_half_at(v.nb, r, it, 0));
    w.c1 = ld_codes(v.codes + code_half_at(v.nb, r, it, 1));
    w.d = ldg_u32(v.meta + blk * kMeta);
    w.m = kMin ? ldg_u32(v.meta + blk * kMeta + 4) : 0;
    w.h0 = kFifth ? ldg_u32(v.meta2 + blk * kMeta2) : 0;
    w.h1 = kFifth ? ldg_u32(v.meta2 + blk * kMeta2 + 4) : 0;
    return w;
  }
  template <bool kShared = false>
  SQUISH_HOST_DEVICE static Act load_act(const int8_t* xq, const float* xd, int it) {
    return Q4K::load_act<kShared>(xq, xd, it);
  }
  // One GGUF block: sum of code * x over its 32 elements, times d, plus the bias or min term
  // (sum_x: the sum of the 32 activation bytes).
  SQUISH_HOST_DEVICE static float block_dot(const Int4& c, uint32_t qh, const Int4& lo,
                                            const Int4& hi, int sum_x, float d, float m) {
    int s = 0;
    if constexpr (kIQ4) {
      s = IQ4XS::group_dot(c, lo, hi);
    } else {
      const int q[4] = {c.x, c.y, c.z, c.w};
      const int a[4] = {lo.x, lo.y, lo.z, lo.w}, b[4] = {hi.x, hi.y, hi.z, hi.w};
      SQUISH_UNROLL
      for (int k = 0; k < 4; ++k) {
        int cl = q[k] & 0x0F0F0F0F, ch = (q[k] >> 4) & 0x0F0F0F0F;
        if constexpr (kFifth) {
          cl |= Q5K::fifth_bytes(qh >> (4 * k));
          ch |= Q5K::fifth_bytes(qh >> (16 + 4 * k));
        }
        s = dp4a(cl, a[k], s);
        s = dp4a(ch, b[k], s);
      }
    }
    if constexpr (kMin) return d * s + m * sum_x;
    if constexpr (kBias > 0) return d * (s - kBias * sum_x);
    return d * s;
  }
  SQUISH_HOST_DEVICE static float dot(const Raw& w, const Act& x, int) {
    const float m0 = kMin ? h2f(w.m) : 0.0f, m1 = kMin ? h2f(w.m >> 16) : 0.0f;
    return x.d0 * block_dot(w.c0, w.h0, x.a0, x.a1, x.s0, h2f(w.d), m0) +
           x.d1 * block_dot(w.c1, w.h1, x.a2, x.a3, x.s1, h2f(w.d >> 16), m1);
  }
};
using Q40 = Legacy<DType::Q4_0>;
using Q41 = Legacy<DType::Q4_1>;
using Q50 = Legacy<DType::Q5_0>;
using Q51 = Legacy<DType::Q5_1>;
using IQ4NL = Legacy<DType::IQ4_NL>;

template <class T>
struct IsLegacy : std::false_type {};
template <DType kType>
struct IsLegacy<Legacy<kType>> : std::true_type {};

template <class T>
View view_of(const void* w, int64_t rows, int64_t cols) {
  const int64_t nb = cols / T::kElems, n = rows * nb;
  const uint8_t* base = static_cast<const uint8_t*>(w);
  return {base, base + n * T::kCode, base + n * (T::kCode + T::kMeta), nb};
}

// Row r of v as a matrix of its own: load(row_view<T>(v, r), 0, it) reads what load(v, r, it)
// does (every type's fields of row r start at r * nb blocks of each region; checked on the CPU),
// with r's products taken once per row instead of once per load and in 32 bits (a row's bytes and
// the row count fit an int: the session checks every matrix's shape at upload), where load's own
// are 64-bit.
template <class T>
SQUISH_HOST_DEVICE View row_view(const View& v, int r) {
  const int nb = static_cast<int>(v.nb);
  return {v.codes + static_cast<int64_t>(r) * (nb * T::kCode),
          v.meta + static_cast<int64_t>(r) * (nb * T::kMeta),
          v.meta2 + static_cast<int64_t>(r) * (nb * T::kMeta2), v.nb};
}

// The 32 weights of group gi (of cols / 32) of row r, as float, from the repacked fields (the F16
// copies of the prefill GEMM): decoded as dequant.cuh does for GGUF blocks.
template <class T>
SQUISH_HOST_DEVICE void dequantize_group(const View& v, int64_t r, int64_t gi, float* x) {
  constexpr int kGroups = T::kElems / 32;
  const int64_t blk = r * v.nb + gi / kGroups;
  const int g = static_cast<int>(gi % kGroups);
  const uint8_t* c = v.codes + blk * T::kCode;  // whole-block codes (Q6_K, Q3_K)
  const uint8_t* m = v.meta + blk * T::kMeta;
  if constexpr (std::is_same_v<T, Q6K>) {  // codes ql, qh; meta: scales; meta2: d
    dequant::q6_k(c, c + 128, m, dequant::f16_at(v.meta2 + blk * T::kMeta2), g, x);
    return;
  } else if constexpr (std::is_same_v<T, Q3K>) {  // codes qs, hmask; meta: scales; meta2: d
    dequant::q3_k(c + 64, c, m, dequant::f16_at(v.meta2 + blk * T::kMeta2), g, x);
    return;
  } else {
    // Q4_K, Q8_0, Q2_K, IQ4_XS: the 32 code bytes of the item holding group g, from its halves.
    const int it = static_cast<int>(gi / kGroups) * T::kItems + g * T::kItems / kGroups;
    Int4 item[2];
    for (int h = 0; h < 2; ++h) item[h] = ldg4(v.codes + code_half_at(v.nb * T::kItems, r, it, h));
    const uint8_t* q = reinterpret_cast<const uint8_t*>(item);
    if constexpr (IsLegacy<T>::value) {  // meta: d0, d1 (m0, m1); meta2: qh0, qh1
      const float d = dequant::f16_at(m + 2 * g);
      const float mn = T::kMin ? dequant::f16_at(m + 4 + 2 * g) : 0.0f;
      const uint8_t* qh = T::kFifth ? v.meta2 + blk * T::kMeta2 + 4 * g : nullptr;
      if constexpr (T::kIQ4) {
        dequant::iq4_nl_pairs(d, q + 16 * g, x);
      } else {
        dequant::legacy<T::kMin, T::kFifth>(d, mn, qh, q + 16 * g, x);
      }
    } else if constexpr (std::is_same_v<T, Q4K> || std::is_same_v<T, Q5K>) {
      // meta: q4k_scale_words; Q5_K's fifth bits from meta2 (q5k_fifth_bits)
      constexpr bool kFifth = std::is_same_v<T, Q5K>;
      const int s = g / 2, half = g % 2;
      const uint32_t w = m[4 * s] | m[4 * s + 1] << 8 | m[4 * s + 2] << 16;
      const uint8_t d[2] = {m[3], m[7]}, dmin[2] = {m[11], m[15]};
      const int sc = (w >> (6 * half)) & 63, mn = (w >> (12 + 6 * half)) & 63;
      uint8_t qh[32] = {};  // GGUF's qh as affine_nibbles reads it: element l's fifth bit at bit g
      if constexpr (kFifth) {
        const uint8_t* hb = v.meta2 + blk * T::kMeta2 + 8 * s + 4 * half;
        const uint32_t bits = hb[0] | hb[1] << 8 | hb[2] << 16 | static_cast<uint32_t>(hb[3]) << 24;
        for (int l = 0; l < 32; ++l) qh[l] = static_cast<uint8_t>(((bits >> l) & 1) << g);
      }
      dequant::affine_nibbles<kFifth>(dequant::f16_at(d) * sc, dequant::f16_at(dmin) * mn, qh, q, g,
                                      x);
    } else if constexpr (std::is_same_v<T, Q2K>) {  // the item is half g / 4 of qs
      const uint8_t* meta2 = v.meta2 + blk * T::kMeta2;
      dequant::q2_k(m, q, dequant::f16_at(meta2), dequant::f16_at(meta2 + 2), g, x);
    } else if constexpr (std::is_same_v<T, IQ4XS>) {  // meta: the block's first 8 bytes
      dequant::iq4_nl_pairs(dequant::f16_at(m) * dequant::iq4_xs_scale(m, g), q + 16 * (g % 2), x);
    } else {  // Q8_0, meta: d
      dequant::q8_0(dequant::f16_at(m), q, x);
    }
  }
}

// Calls f with a value of the repacked type's struct (Q4K, Q5K, Q6K, Q80, Q2K, Q3K, IQ4XS or a
// Legacy) for `type`; false for any other type (the public entry points check matmul_q8_supported
// first).
template <class F>
bool with_q8_type(DType type, F&& f) {
  switch (type) {
    case DType::Q4_K:
      f(Q4K{});
      return true;
    case DType::Q6_K:
      f(Q6K{});
      return true;
    case DType::Q8_0:
      f(Q80{});
      return true;
    case DType::Q2_K:
      f(Q2K{});
      return true;
    case DType::Q5_K:
      f(Q5K{});
      return true;
    case DType::Q3_K:
      f(Q3K{});
      return true;
    case DType::IQ4_XS:
      f(IQ4XS{});
      return true;
    case DType::Q4_0:
      f(Q40{});
      return true;
    case DType::Q4_1:
      f(Q41{});
      return true;
    case DType::Q5_0:
      f(Q50{});
      return true;
    case DType::Q5_1:
      f(Q51{});
      return true;
    case DType::IQ4_NL:
      f(IQ4NL{});
      return true;
    default:
      return false;
  }
}

}  // namespace squish::cuda::q8
