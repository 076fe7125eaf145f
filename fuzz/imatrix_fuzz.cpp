// Importance matrices: the GGUF form (llama-imatrix) and the legacy .dat form, then the per-column
// importance every quantizer reads.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "fuzz_util.h"
#include "quant/imatrix.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = squish_fuzz::input_file().write(data, size);
  try {
    squish::Imatrix m = squish::read_imatrix(path);
    for (const auto& [name, entry] : m.entries) (void)m.importance(name);
  } catch (const squish::Error&) {
  }
  return 0;
}
