// GPTQ (Frantar et al., "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
// Transformers", 2022) onto ggml's block formats.
//
// For a weight W (rows x cols) whose inputs X had Hessian H = sum of x x^T over the calibration
// tokens, GPTQ quantizes the columns one at a time and spreads each column's rounding error over
// the columns not yet quantized, weighted by the inverse Hessian, so that the layer's output
// error ||X W^T - X Q^T|| rather than the weight error is minimised. The paper's formulation is
// used: the upper Cholesky factor U of H^-1 (after damping) drives the updates, and columns are
// processed in lazy batches whose accumulated error is applied to the rest in one product.
//
// Block formats: a block's scales (and mins, super-block scales) are chosen when the sweep enters
// the block, by the type's own importance-weighted quantizer run on the block's current
// (error-compensated) weights with diag(H) as importance; then each of its columns is rounded
// onto that block's grid (calib/block_grid.h) after earlier columns' errors were folded in. With
// act-order, columns go in decreasing diag(H) and every block's scales are fixed up front from
// the original weights ("static groups"), since a block's scales must serve all its columns.
#pragma once

#include <cstdint>
#include <vector>

#include "core/dtype.h"

namespace squish {

struct GptqOptions {
  double damp = 0.01;      // fraction of mean(diag H) added to the diagonal
  int max_damp_tries = 8;  // on a failed Cholesky the damping grows 10x (from 1e-6 if 0)
  bool act_order = false;  // columns in decreasing diag(H) order (static block scales)
  int block_size = 128;    // lazy-batch width in columns (rounded up to whole quant blocks)
  // Rounds of refinement after the GPTQ pass (calib/refine.h: codes by coordinate descent,
  // sub-block scales, block scales; each change only when it lowers the error); 0 disables.
  int refine_sweeps = 4;
  // Also run the plain importance-weighted quantizer to report GptqStats::rtn_error.
  bool report_plain = true;
};

struct GptqStats {
  double damp_used = 0;    // final damping fraction
  int dead_columns = 0;    // columns no calibration token activated (H_jj == 0)
  double proxy_error = 0;  // sum over rows of (w - q)^T H (w - q): the layer-output error
  double rtn_error = 0;    // the same for the plain importance-weighted quantizer, for reference
  int64_t refined = 0;     // codes and scales the refinement changed
};

// Symmetric positive-definite helpers on dense row-major double matrices (n x n), exposed for
// tests. In place: a becomes its lower Cholesky factor L (a = L L^T). False when a is not positive
// definite (a is then left partially overwritten).
bool cholesky_lower(double* a, int n);
// The upper Cholesky factor U of H^-1 (H^-1 = U^T U) from H; false when H (damped by the caller)
// is not positive definite.
bool inverse_cholesky_upper(const double* h, int n, std::vector<double>& u);

// Quantizes w (rows x cols floats, row-major, in the model's row order) to `type` with GPTQ.
// h: cols x cols Hessian (sum of x x^T; only relative scale matters). out: rows * row_bytes(type,
// cols) bytes. dequant (optional): rows x cols floats, the exact dequantized result.
GptqStats gptq_quantize(const float* w, int64_t rows, int64_t cols, const double* h, DType type,
                        const GptqOptions& options, uint8_t* out, float* dequant = nullptr);

// Input-error-aware target (asymmetric calibration, as in GPTAQ, Li et al. 2025): a matrix of the
// quantized model sees inputs X~ that differ from the float model's X. The weights that best
// reproduce the float outputs from the quantized inputs are w* = (H + l I)^-1 (C w + l w), with
// H = X~^T X~, C = X~^T X (cols x cols, row-major) and l = damp * mean(diag H); GPTQ on w* under
// H + l I then minimises ||X w - X~ q||^2 + l ||w - q||^2. Writes rows x cols floats to target.
void input_corrected_target(const float* w, int64_t rows, int64_t cols, const double* h,
                            const double* cross, double damp, float* target);
// ||X w - X~ q||^2 summed over rows, from H = X~^T X~, C = X~^T X and hf = X^T X.
double asymmetric_error(const float* w, const float* q, int64_t rows, int64_t cols, const double* h,
                        const double* cross, const double* hf);

// (w - q)^T H (w - q) summed over rows: what GPTQ minimises (q dequantized).
double hessian_error(const float* w, const float* q, int64_t rows, int64_t cols, const double* h);

}  // namespace squish
