// safetensors: the 8-byte header length, the JSON header (dtypes, shapes, offsets, overlaps,
// __metadata__) and the data section's bounds.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "formats/safetensors.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = squish_fuzz::input_file().write(data, size);
  try {
    squish::SafetensorsSet set = squish::open_safetensors(path);
    for (const auto& t : set.tensors) (void)set.find(t.name);
  } catch (const squish::Error&) {
  }
  return 0;
}
