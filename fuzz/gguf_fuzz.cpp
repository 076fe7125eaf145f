// GGUF reader, then what reads a parsed GGUF's metadata: the model config and the tokenizer
// (tokenizer.ggml.*); the squish.* manifest keys are fuzzed by manifest_fuzz. Tensor data is
// touched only through its bounds (the reader checks every tensor lies inside the file).
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "formats/gguf.h"
#include "fuzz_util.h"
#include "model/config.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = squish_fuzz::input_file().write(data, size);
  std::shared_ptr<squish::GGUFFile> gguf;
  try {
    gguf = squish::GGUFFile::open(path);
  } catch (const squish::Error&) {
    return 0;
  }
  // Exercise value printing (squish info) and the typed accessors.
  for (const auto& [key, value] : gguf->metadata()) (void)value.to_string();
  for (const auto& t : gguf->tensors()) (void)gguf->find_tensor(t.name);
  try {
    squish::ModelConfig config = squish::config_from_gguf(*gguf);
    (void)config;
  } catch (const squish::Error&) {
  }
  try {
    if (auto tok = squish::load_gguf_tokenizer(*gguf)) {
      std::vector<int32_t> ids = tok->encode("Hello world! <s> 123 \xc3\xa9\n", true);
      (void)tok->decode(ids);
    }
  } catch (const squish::Error&) {
  }
  return 0;
}
