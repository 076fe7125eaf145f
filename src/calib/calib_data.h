// Calibration text: what GPTQ / AWQ / importance matrices run the float model on. Plain text
// files or JSONL (one JSON object per line with a "text" field), tokenized as one stream and cut
// into windows of n_ctx tokens the way llama-imatrix and llama-perplexity cut theirs (each window
// evaluated from an empty cache, its first token replaced by BOS when the tokenizer adds one).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/model.h"

namespace squish {

// Reads one calibration file: *.jsonl / *.json-lines files are JSONL ("text" field of each
// object, joined with blank lines), anything else is UTF-8 text. Throws naming the file.
std::string read_calibration_text(const std::string& path);

struct CalibrationOptions {
  int n_ctx = 512;
  int max_windows = 0;  // 0: every full window of the text
  bool bos = true;      // BOS first in each window when the tokenizer adds one
};

struct CalibrationWindows {
  int n_ctx = 0;
  std::vector<int32_t> tokens;  // n_windows * n_ctx, window-major, BOS already in place
  int n_windows() const { return n_ctx > 0 ? static_cast<int>(tokens.size() / n_ctx) : 0; }
  const int32_t* window(int w) const { return tokens.data() + static_cast<size_t>(w) * n_ctx; }
};

// Tokenizes the concatenated files and cuts full windows. `what` names the source in errors
// (too little text, no tokenizer).
CalibrationWindows calibration_windows(const Model& model, const std::vector<std::string>& files,
                                       const CalibrationOptions& options);

}  // namespace squish
