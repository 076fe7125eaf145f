// Calibrated quantization, layer by layer: the model runs on calibration windows one transformer
// block at a time, so peak memory is one block's weights plus the hidden states of the
// calibration tokens (optionally spilled to disk). Within a block the matrices are quantized in
// the order the data flows through them (Q/K/V, then O, then gate/up, then down), and each one's
// inputs are recomputed with the matrices before it already quantized; the block's output with
// all its matrices quantized becomes the next block's input. So every matrix is fitted to the
// activations the quantized model will actually feed it ("sequential" GPTQ, as in the GPTQ
// reference implementation's --true-sequential), rather than to the float model's.
//
// With input correction (the default), the float model runs alongside on the same windows, and
// each matrix is fitted to reproduce the float model's outputs from the quantized model's
// inputs, so later layers also compensate the error that earlier ones let through.
//
// Matrices that share an input share one Hessian: Q/K/V (or fused QKV), gate/up. The token
// embedding is quantized plainly (it is a lookup, not a product); output.weight gets GPTQ from the
// final norm's outputs unless it is tied to the embedding.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "calib/calib_data.h"
#include "calib/gptq.h"
#include "calib/tensor_store.h"
#include "model/model.h"
#include "quant/mix.h"

namespace squish {

struct CalibratedQuantOptions {
  GptqOptions gptq;
  // Also run the float model alongside and fit each matrix to reproduce the float model's
  // outputs from the quantized model's inputs (calib/gptq.h input_corrected_target).
  bool input_correction = true;
  // AWQ scales for the matrices behind each norm (calib/awq.h), folded into the norm weights.
  bool awq = false;
  int awq_grid = 10;
  // GPTQ; without it, the plain importance-weighted quantizers (with AWQ: AWQ alone).
  bool gptq_enabled = true;
  std::string offload_dir;  // hidden states in a file there instead of memory
  int n_threads = 0;
  // Work folder: finished tensors go to disk as they are made, and a killed run with the same
  // job resumes after its last finished block. Empty: everything in memory.
  std::string work_dir;
};

struct CalibratedTensorStats {
  std::string name;
  DType type;
  GptqStats gptq;
};

struct AwqStats {
  std::string norm;  // the norm weight the scales were folded into
  double alpha = 0, error = 0, plain_error = 0;
};

struct CalibratedQuantResult {
  // Finished tensors in their planned type, rows in the model's order (norm weights too when
  // AWQ rescaled them).
  std::shared_ptr<TensorStore> tensors;
  std::vector<CalibratedTensorStats> stats;
  std::vector<AwqStats> awq;
  double seconds = 0;
};

// progress(step, total, detail): one step per block plus one for the output (a resumed run
// starts with the blocks it skipped).
using CalibProgress = std::function<void(int, int, const std::string&)>;

CalibratedQuantResult calibrated_quantize(const Model& model, const std::vector<TensorPlan>& plan,
                                          const CalibrationWindows& windows,
                                          const CalibratedQuantOptions& options,
                                          const CalibProgress& progress = {});

}  // namespace squish
