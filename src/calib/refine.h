// Refinement of quantized rows after GPTQ, for the same objective: sum over rows of
// (w - q)^T H (w - q), H the (damped) Hessian of the matrix's inputs. GPTQ visits every weight
// once, in order, and fixes each block's scales before it has seen the block's compensated
// weights; this pass alternates, until nothing improves:
//  - coordinate descent on the codes: each moves to the grid value that minimises the full
//    quadratic error given all the others (exact for one coordinate);
//  - the integer sub-block scales and mins (k-quants), searched in a small neighbourhood;
//  - the block's fp16 scale and min, refitted by least squares and rounded to fp16.
// Every change is taken only when it lowers the error, so the result is never worse than GPTQ's.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace squish {

struct RefineStats {
  int64_t codes_changed = 0;
  int64_t scales_changed = 0;
};

// w: the original rows (rows x cols); h: cols x cols floats (symmetric); out: packed rows of
// `type`, improved in place; q: their dequantized values (updated).
RefineStats refine_quantized_rows(const float* w, int64_t rows, int64_t cols, const float* h,
                                  DType type, int rounds, uint8_t* out, float* q);

}  // namespace squish
