// Importance matrices collected the way llama-imatrix collects them: for every weight matrix of
// the transformer blocks ("blk.*", plus output.weight when asked), the sum over all evaluated
// tokens of each input column's squared activation, and the number of tokens. Every token of
// every window counts (not only the scored half), one count per dense matrix, and windows are
// evaluated from an empty cache with BOS first, exactly as llama-imatrix feeds llama_decode.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "calib/calib_data.h"
#include "model/model.h"
#include "quant/imatrix.h"
#include "runtime/session.h"

namespace squish {

class ImatrixCollector : public MatmulObserver {
 public:
  explicit ImatrixCollector(bool include_output) : include_output_(include_output) {}
  void observe(const TensorInfo& weight, const float* x, int n_tokens) override;
  // Sums (accumulated in double, stored as F32 like llama.cpp's file) and counts so far.
  Imatrix result() const;

 private:
  struct Accumulator {
    std::vector<double> sums;
    int64_t count = 0;
  };
  bool include_output_;
  std::map<std::string, Accumulator> acc_;
};

struct ImatrixOptions {
  bool include_output = false;  // llama-imatrix --process-output
  int n_threads = 0;
  std::vector<std::string> datasets;  // recorded as imatrix.datasets
};

// Runs the model over the windows and returns the importance matrix. progress(done, total).
Imatrix collect_imatrix(const Model& model, const CalibrationWindows& windows,
                        const ImatrixOptions& options,
                        const std::function<void(int, int)>& progress = {});

}  // namespace squish
