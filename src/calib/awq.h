// AWQ (Lin et al., "AWQ: Activation-aware Weight Quantization for LLM Compression and
// Acceleration", 2023): scaling input channel j of the matrices that read one normalised input by
// s_j, and the norm's weight by 1/s_j, leaves the model unchanged in exact arithmetic but moves
// precision: a channel scaled up gets finer steps on the block grid relative to its size. The
// scales follow the channels' activation magnitudes, s_j = rms(x_j)^alpha (normalised), with
// alpha searched on a grid for the smallest output error of the whole group after quantization.
#pragma once

#include <cstdint>
#include <vector>

#include "core/dtype.h"

namespace squish {

struct AwqMatrix {
  const float* w;  // rows x cols, row-major
  int64_t rows;
  DType type;  // quantized block type, or a float type (then it does not steer the search)
};

struct AwqResult {
  std::vector<float> scale;  // per input column; all ones when no alpha beats alpha = 0
  double alpha = 0;
  double error = 0;        // output error (sum of (w - q)^T H (w - q)) at the chosen alpha
  double plain_error = 0;  // the same without scaling
};

// h: cols x cols input Hessian shared by the matrices. grid: alphas 0, 1/grid, ..., 1.
AwqResult awq_search(const std::vector<AwqMatrix>& matrices, int64_t cols, const double* h,
                     int grid = 10);

}  // namespace squish
