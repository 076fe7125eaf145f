// Hugging Face tokenizer.json: vocabulary, merges, added tokens, normalizer / pre-tokenizer /
// decoder pipeline (including user-supplied regexes), then one encode/decode round.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = squish_fuzz::input_file().write(data, size);
  try {
    auto tok = squish::load_tokenizer_json(path);
    if (tok) {
      std::vector<int32_t> ids = tok->encode("Hello world! <s> 123 \xc3\xa9\n  x", true);
      (void)tok->decode(ids);
      for (int32_t id = -1; id < 4 && id < tok->vocab_size(); ++id) {
        (void)tok->token_to_piece(id < 0 ? tok->vocab_size() - 1 : id);
      }
    }
  } catch (const squish::Error&) {
  }
  return 0;
}
