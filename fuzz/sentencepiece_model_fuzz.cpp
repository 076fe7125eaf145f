// tokenizer.model: SentencePiece's protobuf, parsed by libsentencepiece, plus squish's own
// extraction of control / user-defined pieces; then one encode/decode round.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = squish_fuzz::input_file().write(data, size);
  try {
    auto tok = squish::load_sentencepiece_model(path);
    std::vector<int32_t> ids = tok->encode("Hello world! <s> 123 \xc3\xa9\n", true);
    (void)tok->decode(ids);
  } catch (const squish::Error&) {
  }
  return 0;
}
