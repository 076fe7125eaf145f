// Importance matrices collected the way llama-imatrix collects them: for every weight matrix of
// the transformer blocks ("blk.*", plus output.weight when asked), the sum over all evaluated
// tokens of each input column's squared activation, and the number of tokens. Every token of
// every window counts (not only the scored half), one count per dense matrix, and windows are
// evaluated from an empty cache with BOS first, exactly as llama-imatrix feeds llama_decode.
#pragma once

#include <cstdint>
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
  // Checkpoint of the exact double sums after `windows_done` windows (AtomicFile: a kill leaves
  // the previous checkpoint or this one), and its reading back: returns the windows the
  // checkpoint covers, or 0 (nothing restored) when it is of another job.
  void save(const std::string& path, uint64_t fingerprint, int windows_done) const;
  int load(const std::string& path, uint64_t fingerprint, int n_windows);

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
  // Checkpoints (issue #9): with a work folder, the sums are saved there every
  // `checkpoint_every` windows, and a run of the same job (model tensors, windows' tokens,
  // context, include_output) resumes from the last one: the result is byte-identical to an
  // uninterrupted run's. The caller removes the folder (remove_imatrix_work_dir) once the
  // output is written.
  std::string work_dir;
  int checkpoint_every = 10;
};

// Removes a work folder of collect_imatrix, its checkpoint first (a kill halfway through leaves
// either a valid checkpoint or none).
void remove_imatrix_work_dir(const std::string& dir);

// Runs the model over the windows and returns the importance matrix. progress(done, total).
Imatrix collect_imatrix(const Model& model, const CalibrationWindows& windows,
                        const ImatrixOptions& options,
                        const std::function<void(int, int)>& progress = {});

}  // namespace squish
