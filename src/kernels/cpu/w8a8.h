// W8A8: int8 weights with one scale per output row times int8 activations with one scale per
// token row (SmoothQuant's execution format, calib/smoothquant.h).
//
// Weights are stored as Q8_0 whose blocks in one row all carry the same d (so llama.cpp loads
// them as plain Q8_0). Here each such row is unpacked once into contiguous int8 codes padded to
// 64 columns, with its float scale and the sum of its codes. Activations of a token row are
// quantized with one scale, sa = max|x| / 127, and stored as unsigned bytes q + 128 (the operand
// type of AVX-512 VNNI's vpdpbusd). Then
//     y[t][r] = sa[t] * sw[r] * (sum_i (q[t][i] + 128) w[r][i] - 128 * rowsum[r])
// where the bracket is an exact int32 sum over the whole row (|sum| < 255 * 127 * cols < 2^31
// for cols < 66,000), so every kernel (scalar reference, AVX2, AVX-512 VNNI) gives the same
// integer and, with the same final float multiply, bitwise the same output.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "core/tensor.h"

namespace squish {

// Column padding of the unpacked codes and activations (one AVX-512 load).
inline constexpr int64_t kW8A8Pad = 64;
inline int64_t w8a8_padded(int64_t cols) {
  return (cols + kW8A8Pad - 1) / kW8A8Pad * kW8A8Pad;
}

// One matrix unpacked for the W8A8 kernels, in panels of 16 rows: panel p holds rows
// 16p .. 16p + 15 as [ld / 4][16 rows][4 codes], so one 64-byte load is four columns of 16 rows
// and one vpdpbusd against four broadcast activation bytes of a token adds one int32 per row
// (no horizontal sums). Rows past `rows` in the last panel are zero.
inline constexpr int64_t kW8A8PanelRows = 16;
struct W8A8Matrix {
  int64_t rows = 0, cols = 0, ld = 0;  // ld = w8a8_padded(cols)
  const int8_t* codes = nullptr;       // [panels][ld / 4][16][4], zero past cols and rows
  const float* scale = nullptr;        // [panels * 16], zero past rows
  const int32_t* rowsum = nullptr;     // [panels * 16]: sum of each row's codes
  int64_t panels() const { return (rows + kW8A8PanelRows - 1) / kW8A8PanelRows; }
  const int8_t* panel(int64_t p) const { return codes + p * kW8A8PanelRows * ld; }
  int8_t code(int64_t r, int64_t i) const {
    return panel(r / kW8A8PanelRows)[(i / 4) * 64 + (r % kW8A8PanelRows) * 4 + i % 4];
  }
};

// True when every row of the Q8_0 matrix stores one d in all its blocks (a per-row int8 matrix).
bool q8_0_rows_share_scale(const void* w, int64_t rows, int64_t cols);

// Unpacked copies of the per-row Q8_0 matrices of a model, found by the stored data pointer.
class W8A8Weights {
 public:
  // Registers and unpacks a matrix; false (nothing kept) unless it is Q8_0 with per-row scales.
  bool add(const TensorInfo& t);
  const W8A8Matrix* find(const void* data) const;
  bool empty() const { return index_.empty(); }
  size_t count() const { return index_.size(); }
  size_t bytes() const { return bytes_; }

 private:
  struct Owned {
    W8A8Matrix m;
    std::vector<int8_t> codes;
    std::vector<float> scale;
    std::vector<int32_t> rowsum;
  };
  std::vector<std::unique_ptr<Owned>> owned_;
  std::unordered_map<const void*, const W8A8Matrix*> index_;
  size_t bytes_ = 0;
};

// Per-token int8 activations: n_tokens rows of ld bytes (q + 128; 128 past cols) and a scale each.
struct W8A8Activations {
  int64_t n_tokens = 0, cols = 0, ld = 0;
  uint8_t* q = nullptr;
  float* scale = nullptr;
};
size_t w8a8_activation_bytes(int64_t n_tokens, int64_t cols);
W8A8Activations w8a8_bind_activations(void* scratch, int64_t n_tokens, int64_t cols);
// Quantizes token rows [t0, t1) of x (row stride cols).
void w8a8_quantize_tokens(const float* x, int64_t t0, int64_t t1, const W8A8Activations& act);

// y[t * ldy + r] for rows [r0, r1) of m (r0 a multiple of 16) and every token of act.
void w8a8_rows_reference(const W8A8Matrix& m, int64_t r0, int64_t r1, const W8A8Activations& act,
                         float* y, int64_t ldy);
// The fastest kernel the CPU has (AVX-512 VNNI, AVX2, or the reference).
void w8a8_rows(const W8A8Matrix& m, int64_t r0, int64_t r1, const W8A8Activations& act, float* y,
               int64_t ldy);

// Y_k = X W_k^T for n_targets matrices with the same cols, inside an OpenMP parallel region
// (called by every thread with the same arguments; returns after a barrier). `act` is shared
// scratch of w8a8_activation_bytes(n_tokens, cols) bytes.
void w8a8_team(const float* x, int64_t n_tokens, int64_t cols, const W8A8Matrix* const* mats,
               float* const* ys, const int64_t* ldys, int n_targets, void* act_scratch);

// Per-token round trip of an activation matrix (x -> int8 -> float), as the kernels see it;
// calibration measures the error of the quantized product with it.
void w8a8_fake_quantize_tokens(const float* x, int64_t n_tokens, int64_t cols, float* out);
// Per-row int8 quantization of a float row: the Q8_0 blocks with one shared d (fp16), and the
// dequantized values when `deq` is not null. cols is a multiple of 32.
void w8a8_quantize_row(const float* w, int64_t cols, void* q8_0_blocks, float* deq);

namespace kernels {
void w8a8_rows_avx512(const W8A8Matrix& m, int64_t r0, int64_t r1, const W8A8Activations& act,
                      float* y, int64_t ldy);
void w8a8_rows_avx2(const W8A8Matrix& m, int64_t r0, int64_t r1, const W8A8Activations& act,
                    float* y, int64_t ldy);
}  // namespace kernels

}  // namespace squish
