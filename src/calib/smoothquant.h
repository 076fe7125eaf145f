// SmoothQuant (Xiao et al., "SmoothQuant: Accurate and Efficient Post-Training Quantization for
// Large Language Models", 2023) for W8A8: per-token int8 activations struggle with the few input
// channels whose activations are far larger than the rest (one outlier channel sets the whole
// token's scale). Dividing input channel j by s_j and multiplying column j of the matrices that
// read it by s_j leaves the product unchanged in exact arithmetic and moves the difficulty from
// activations to weights:  s_j = max|X_j|^alpha / max|W_j|^(1 - alpha).
//
// The division is folded into what produces the input, exactly like the AWQ fold (calib/awq.h):
//   - Q/K/V (or fused QKV) read the attention RMSNorm: its weight gets 1 / s;
//   - gate/up read the FFN RMSNorm: its weight gets 1 / s;
//   - O reads the attention output, linear in V: V's rows (and bias) get 1 / s, with one s per KV
//     channel shared by the query heads that read it (separate V only);
//   - down reads act(gate) * up, linear in up: up's rows get 1 / s (separate gate and up only).
//   - the output matrix reads the final RMSNorm: its weight gets 1 / s (untied output only).
// alpha is searched per fold group (or fixed) on the float model's calibration activations for
// the smallest error of the per-token-quantized product against the float product, summed over
// the group's matrices; "no smoothing" is always a candidate of the search.
// Then every matrix is quantized per output row (Q8_0 blocks sharing one d per row).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "calib/calib_data.h"
#include "calib/calibrated_quant.h"
#include "calib/tensor_store.h"
#include "model/model.h"
#include "quant/mix.h"

namespace squish {

struct SmoothQuantOptions {
  bool smooth = true;   // false: plain W8A8 (round to nearest, no migration)
  double alpha = -1.0;  // < 0: searched per group over 1/grid .. (grid-1)/grid and no smoothing
  int grid = 10;
  int search_tokens = 512;  // calibration tokens (evenly spaced) the error is measured on
  int n_threads = 0;
};

struct SmoothGroupStats {
  std::string name;  // what the scales were folded into ("blk.0.attn_norm.weight", ...)
  double alpha = 0;  // chosen; 0 with smoothed = false
  bool smoothed = false;
  double error = 0;        // squared error of the quantized product at the choice
  double plain_error = 0;  // the same without smoothing
};

// Receives each tensor the fold produced or changed, as floats in the model's row order:
// every layer matrix, the two norm weights per layer, V's bias when present, and output.weight with
// output_norm.weight when the output is not tied to the embedding.
using SmoothedTensorSink = std::function<void(const TensorInfo& t, std::vector<float>&& values)>;

// Runs the float model over the windows block by block and folds the scales (no quantization).
std::vector<SmoothGroupStats> smooth_model(const Model& model, const CalibrationWindows& windows,
                                           const SmoothQuantOptions& options,
                                           const SmoothedTensorSink& sink,
                                           const CalibProgress& progress = {});

struct W8A8Result {
  std::shared_ptr<TensorStore> tensors;  // every tensor of the plan in its planned type
  std::vector<TensorPlan> plan;          // matrices Q8_0 (per-row), vectors F32
  std::vector<SmoothGroupStats> groups;
  double seconds = 0;
};

// Smoothing (unless options.smooth is false) and per-row int8 quantization of every matrix.
W8A8Result quantize_w8a8(const Model& model, const CalibrationWindows& windows,
                         const SmoothQuantOptions& options, const CalibProgress& progress = {});

}  // namespace squish
