// `squish quantize MODEL -o OUT.gguf --type w8a8 --method smoothquant|rtn [--alpha A|search]`:
// per-row int8 weights (Q8_0 blocks sharing one d per row, so llama.cpp loads the file as Q8_0)
// marked squish.w8a8 = true, which squish's runtime executes with per-token int8 activations.
#pragma once

#include <string>

#include "cli/calib_flags.h"

namespace squish::cli {

inline bool is_w8a8_type(const std::string& type) {
  return type == "w8a8" || type == "W8A8";
}

void quantize_w8a8_command(const std::string& model_path, const std::string& out,
                           const CalibFlags& calib, const std::string& name,
                           const std::string& tokenizer, bool dry_run);

}  // namespace squish::cli
