// Saved base distributions (.squishkl, src/eval/saved_base): header validation, every record's
// decoding and the KL estimate from a record against a uniform model row.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "eval/saved_base.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = squish_fuzz::input_file().write(data, size);
  try {
    squish::SavedBaseReader reader(path);
    const squish::SavedBaseHeader& h = reader.header();
    // A model row of n_vocab doubles is allocated per input; bound it to keep runs fast.
    const int n_vocab = static_cast<int>(std::min<uint32_t>(h.n_vocab, 1 << 16));
    std::vector<double> model_logp(n_vocab, -std::log(static_cast<double>(n_vocab)));
    std::vector<uint8_t> mask;
    std::vector<double> scratch;
    squish::SavedRow row;
    for (uint64_t i = 0; i < std::min<uint64_t>(h.n_scored, 64); ++i) {
      reader.row(i, row);
      if (static_cast<uint32_t>(n_vocab) != h.n_vocab) continue;
      double bound = 0;
      (void)squish::saved_kld(row, model_logp.data(), n_vocab, &bound, mask, scratch, path, i);
    }
  } catch (const squish::Error&) {
  }
  return 0;
}
