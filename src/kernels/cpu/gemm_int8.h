// Quantized prefill as an int8 GEMM (AVX-512 VNNI).
//
// The dot-product kernels (quant.h) unpack every weight block once per token, or once per four
// tokens; for a prompt that unpacking is most of the work. Here a panel of 16 weight rows is
// unpacked once per call into one unsigned byte code per element, stored interleaved: four
// consecutive elements of each of the 16 rows side by side, 64 bytes per step of four columns.
// One vpdpbusd then multiplies a four-column slice of 16 rows (one int32 lane per row) by four
// activation bytes of one token, broadcast. A micro-kernel keeps 16 rows x 6-8 tokens of
// accumulators in registers and sweeps every token of the call past the panel.
//
// Every type is written as  weight = d[s] * sc[g] * (code - offset) + m[s] * mn[g]  with
// integer sub-block scales sc and mins mn per group g of G elements (16 or 32), float scales d
// and m per scale block s (the 32-element block of the legacy types, the 256-element super-block
// of the k-quants) and a constant code offset (Q4_0's 8, Q6_K's 32, ...). Activations are
// quantized exactly as for the dot products (Q8_0 / Q8_1 / Q8_K as ggml does: int8 q, a scale
// da per block). Then, like ggml's dot products, each scale block's sums are exact integers,
//     I = sum_g sc[g] * sum_{i in g} (code_i - offset) q_i,   J = sum_g mn[g] * sum_{i in g} q_i,
// (the offset enters by starting each group's accumulator at -offset * sum q), and the output
// gets da * (d * I + m * J) in float. Q4_1 / Q5_1, whose min is a float per block, add
// m * (da * sum q) instead. Nothing is kept between calls: weights stay in their mapped layout.
#pragma once

#include <cstddef>
#include <cstdint>

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

// Y[t][r0 + i] for every token and i < nr <= 16, unpacking the rows into `panel`
// (gemm_panel_bytes bytes, 64-byte aligned).
size_t gemm_panel_bytes(const GemmFormat& format, int64_t k);
void gemm_rows(DType type, const uint8_t* w, int64_t r0, int nr, const GemmActivations& act,
               uint8_t* panel, float* y, int64_t ldy);

// True when the CPU (AVX-512 VNNI at the active level) and the type allow the GEMM.
bool gemm_available(DType type);
// The whole product, multithreaded (OpenMP): matmul()'s prefill path for quantized weights.
void gemm_int8(const QuantTraits& qt, const float* x, int64_t n_tokens, const uint8_t* w,
               int64_t rows, int64_t cols, float* y, int64_t ldy);

namespace kernels {
// Panel layout (offsets from gemm_panel_layout): codes [k/4][16][4]; sc int32 [groups][16];
// mn int16 [groups/2][16][2]; d, m float [scale blocks][16].
struct GemmPanel {
  const uint8_t* codes;
  const int32_t* sc;
  const int16_t* mn;
  const float* d;
  const float* m;
};
void gemm_panel_avx512(const GemmPanel& panel, const GemmActivations& act, float* y, int64_t ldy,
                       int nr);
void gemm_prepare_activations_avx512(const float* x, int64_t t0, int64_t t1,
                                     const GemmActivations& act);
}  // namespace kernels

}  // namespace squish
