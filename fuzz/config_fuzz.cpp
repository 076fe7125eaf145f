// Hugging Face config.json -> ModelConfig, through the same bounded, UTF-8-checked JSON reader
// the loader uses, then finalize() (consistency checks and RoPE frequencies).
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "core/json_file.h"
#include "fuzz_util.h"
#include "model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = squish_fuzz::input_file().write(data, size);
  try {
    nlohmann::json j = squish::read_json_file(path, size_t{1} << 20);
    squish::ModelConfig config = squish::config_from_hf(j, path);
    config.finalize(path);
  } catch (const squish::Error&) {
  }
  return 0;
}
