// Quantized prefill as an int8 GEMM (AVX-512 VNNI).
//
// The dot-product kernels (quant.h) unpack every weight block once per token, or once per four
// tokens; for a prompt that unpacking is most of the work. Here a panel of 16 weight rows is
// unpacked once into unsigned integer codes stored interleaved: four consecutive elements of
// each of the 16 rows side by side, so one vpdpbusd multiplies a four-column slice of 16 rows
// (one int32 lane per row) by four activation bytes of one token, broadcast. Codes are packed to
// 2, 4 or 8 bits (a 64-byte load holds 4, 2 or 1 such slices, taken apart with a shift and a
// mask). A micro-kernel keeps 16 rows x 6-8 tokens of accumulators in registers and sweeps every
// token past the panel. Panels are built per call (gemm_rows) or once per matrix
// (GemmPackedMatrix, which Session keeps so decode reads them too).
//
// Every type is written as  weight = d[s] * sc[g] * (code - offset) + m[s] * mn[g]  with
// integer sub-block scales sc and mins mn per group g of G elements (16 or 32), float scales d
// and m per scale block s (the 32-element block of the legacy types, the 256-element super-block
// of the k-quants; fp16 in every type) and a constant code offset (Q4_0's 8, Q6_K's 32, ...).
// Activations are quantized exactly as for the dot products (Q8_0 / Q8_1 / Q8_K as ggml does: int8
// q, a scale da per block). Then, like ggml's dot products, each scale block's sums are exact
// integers,
//     I = sum_g sc[g] * sum_{i in g} (code_i - offset) q_i,   J = sum_g mn[g] * sum_{i in g} q_i,
// (the offset enters by starting each group's accumulator at -offset * sum q), and the output
// gets da * (d * I + m * J) in float. Q4_1 / Q5_1, whose min is a float per block, add
// m * (da * sum q) instead.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "core/dtype.h"
#include "quant/quant.h"

namespace squish {

// Rows per panel: one AVX-512 vector of int32 lanes.
inline constexpr int kGemmPanelRows = 16;
// Below this many tokens matmul() uses the dot-product kernels: unpacking a panel costs about as
// much as running a few tokens through it.
inline constexpr int kGemmMinTokens = 16;

// How a type maps onto the formula above.
struct GemmFormat {
  int group = 0;             // elements per group g (16 or 32); 0: the GEMM does not take the type
  int groups_per_scale = 0;  // groups per scale block s (1 for legacy types, 8 or 16 for k-quants)
  int code_offset = 0;
  // Codes are stored as a low plane of code_bits (2, 4 or 8) bits and a high plane of
  // high_bits (0, 1 or 2): Q2_K 2, Q3_K 2+1, Q4_0 / Q4_1 / Q4_K 4, Q5_0 / Q5_1 / Q5_K 4+1,
  // Q6_K 4+2, Q8_0 / IQ4_NL / IQ4_XS 8 (their codes are 8-bit code-book values).
  int code_bits = 8;
  int high_bits = 0;
  bool int_scales = false;      // sc varies (k-quants); otherwise sc = 1
  bool int_mins = false;        // J term with integer mins (Q2_K, Q4_K, Q5_K)
  bool float_mins = false;      // m * da * sum q per block (Q4_1, Q5_1)
  DType act_type = DType::F32;  // activation format (the type's vec_dot_type)
};
GemmFormat gemm_format(DType type);

// One stored row unpacked: codes[k]; sc, mn per group; d, m per scale block.
struct GemmRow {
  uint8_t* codes;
  int32_t* sc;
  int16_t* mn;
  float* d;
  float* m;
};
// k is a multiple of the type's block size. Fields the format does not use are set to sc = 1,
// mn = 0, m = 0, so weight = d * sc * (code - offset) + m * mn holds for every type.
void gemm_unpack_row(DType type, const void* row, int64_t k, const GemmRow& out);

// Activations of n_tokens rows of k floats, quantized and laid out for the kernel.
struct GemmActivations {
  int64_t k = 0, n_tokens = 0;
  GemmFormat format;
  int8_t* q = nullptr;       // [n_tokens][k]
  float* da = nullptr;       // [n_tokens][k / scale block]
  int16_t* qsum = nullptr;   // [n_tokens][k / group]: sum of the group's quants (int_mins)
  int32_t* qoff = nullptr;   // [n_tokens][k / group]: -offset * sum of the group's quants
  float* da_qsum = nullptr;  // [n_tokens][k / group]: da * sum of the group's quants (float_mins)
};
size_t gemm_activation_bytes(const GemmFormat& format, int64_t n_tokens, int64_t k);
GemmActivations gemm_bind_activations(const GemmFormat& format, void* scratch, int64_t n_tokens,
                                      int64_t k);
// Quantizes token rows [t0, t1) of x (row stride k) into `act`. The reference goes through
// quantize_activations(); the AVX-512 version gives identical bytes.
void gemm_prepare_activations_reference(const float* x, int64_t t0, int64_t t1,
                                        const GemmActivations& act);
void gemm_prepare_activations(const float* x, int64_t t0, int64_t t1, const GemmActivations& act);

// Panel of 16 rows, each array 64-byte aligned from the panel's start:
//   codes  [k / (4 * 8 / bits)][16 rows][4 bytes]: a 64-byte step holds 8 / bits four-column
//          slices; slice m of a step is bits m * bits .. m * bits + bits - 1 of its bytes
//   high   one high bit: [slices] 64-bit masks, bit 4 * row + i the code's bit code_bits;
//          two: [slices / 4][16 rows][4 bytes], bits 2 * (slice % 4) and up the code's bits
//          code_bits and code_bits + 1 (a 2-bit plane laid out like the codes)
//   sc     int8 [groups][16]                (int_scales)
//   mn     int8 [groups / 2][16][2]         (int_mins: groups 2i and 2i + 1 side by side)
//   d, m   fp16 [scale blocks][16]          (m: int_mins or float_mins)
struct GemmPanelLayout {
  size_t codes, high, sc, mn, d, m, total;
};
static inline GemmPanelLayout gemm_panel_layout(const GemmFormat& f, int64_t k) {
  auto align = [](size_t n) { return (n + 63) / 64 * 64; };
  const size_t ng = k / f.group, ns = ng / f.groups_per_scale, R = kGemmPanelRows;
  GemmPanelLayout l;
  l.codes = 0;
  l.high = align(R * k * f.code_bits / 8);
  l.sc = l.high + align(R * k * f.high_bits / 8);
  l.mn = l.sc + align(ng * R);
  l.d = l.mn + align(ng * R);
  l.m = l.d + align(ns * R * 2);
  l.total = l.m + align(ns * R * 2);
  return l;
}
static inline size_t gemm_panel_bytes(const GemmFormat& format, int64_t k) {
  return gemm_panel_layout(format, k).total;
}
// Rows [r0, r0 + nr) (nr <= 16; the rest zero) of a stored matrix with k columns into a panel.
void gemm_pack_panel(DType type, const uint8_t* w, int64_t r0, int nr, int64_t k, uint8_t* panel);
// Y[t][r0 + i] for every token and i < nr, packing the rows into `panel` (64-byte aligned).
void gemm_rows(DType type, const uint8_t* w, int64_t r0, int nr, const GemmActivations& act,
               uint8_t* panel, float* y, int64_t ldy);

// A quantized matrix packed into panels once (a view into GemmPackedWeights' memory).
struct GemmPackedMatrix {
  DType type = DType::F32;
  const void* w = nullptr;  // the stored matrix it packs
  int64_t rows = 0, cols = 0, n_panels = 0;
  size_t panel_bytes = 0;
  uint8_t* data = nullptr;
  uint8_t* panel(int64_t p) const { return data + p * panel_bytes; }
  // Packs panel p (gemm_pack_panel); panels are independent, so threads may share the work.
  void pack(int64_t p) const;
};

// Quantized matrices packed once, so products read panels instead of unpacking the stored blocks
// on every call (Session keeps one set; decode reads panels too). They lie back to back in one
// allocation, 2 MiB aligned and advised for huge pages: decode streams all of them per token.
// Memory: about the packed matrices' stored size again (within a few % for most types; Q2_K's
// separate int8 scales and mins +19 %, IQ4_NL / IQ4_XS's 8-bit code-book values +90 %).
class GemmPackedWeights {
 public:
  // Registers a matrix (keyed by its data pointer) before pack(); false if the GEMM cannot take
  // the type on this CPU (then products use the stored rows).
  bool add(DType type, const void* w, int64_t rows, int64_t cols);
  // Allocates and fills every panel of every registered matrix in one OpenMP loop.
  void pack();
  const GemmPackedMatrix* find(const void* w) const;
  size_t bytes() const { return bytes_; }

 private:
  struct Free {
    void operator()(uint8_t* p) const;
  };
  std::vector<GemmPackedMatrix> matrices_;
  std::unordered_map<const void*, size_t> index_;
  std::unique_ptr<uint8_t, Free> memory_;
  size_t bytes_ = 0;
};

// True when the CPU (AVX-512 VNNI at the active level) and the type allow the GEMM.
bool gemm_available(DType type);
// The whole product, multithreaded (OpenMP): matmul()'s prefill path for quantized weights.
void gemm_int8(const QuantTraits& qt, const float* x, int64_t n_tokens, const uint8_t* w,
               int64_t rows, int64_t cols, float* y, int64_t ldy);

namespace kernels {
// Y[t][i] = y[t * ldy + i] for every token of act and i < nr against one panel of `type` (act
// may have been prepared for another type with the same activation format). prefetch_bytes from
// `prefetch` (the next panel, for decode) are requested into the cache first.
void gemm_panel_avx512(DType type, const uint8_t* panel, const GemmActivations& act, float* y,
                       int64_t ldy, int nr, const uint8_t* prefetch = nullptr,
                       size_t prefetch_bytes = 0);
void gemm_prepare_activations_avx512(const float* x, int64_t t0, int64_t t1,
                                     const GemmActivations& act);
}  // namespace kernels

}  // namespace squish
