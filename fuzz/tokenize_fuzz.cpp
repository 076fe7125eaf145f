// Hostile text through real tokenizers: SentencePiece-style BPE (tests/data/tokenizer) and, when
// the shared test models are present, the byte-level BPE of gcide-llama-16M (regex
// pre-tokenizer, merges). Encoding must not crash on invalid UTF-8, and decoding ids back must
// reproduce valid UTF-8 input exactly for the byte-level tokenizer.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string_view>

#include "core/error.h"
#include "core/text.h"
#include "tokenizer/tokenizer.h"

namespace {

struct Tokenizers {
  std::unique_ptr<squish::Tokenizer> spm, byte_level;
  Tokenizers() {
    // SQUISH_SOURCE / SQUISH_SHARED override the build's paths when the binary runs elsewhere
    // (scripts/fuzz.sh -p packs it with copies of these files for another machine).
    const char* source = std::getenv("SQUISH_SOURCE");
    spm = squish::load_tokenizer_json(std::string(source ? source : SQUISH_SOURCE_DIR) +
                                      "/tests/data/tokenizer/spm_bpe_tokenizer.json");
    const char* shared = std::getenv("SQUISH_SHARED");
    std::string folder =
        std::string(shared ? shared : SQUISH_SOURCE_DIR "/../shared") + "/models/gcide-llama-16M";
    if (std::filesystem::exists(folder + "/tokenizer.json")) {
      byte_level = squish::load_tokenizer_json(folder + "/tokenizer.json");
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Tokenizers toks;
  if (size > 4096) return 0;  // tokenizers are superlinear in the worst case; keep runs fast
  std::string_view text(reinterpret_cast<const char*>(data), size);
  const bool valid = squish::find_invalid_utf8(text) == std::string_view::npos;
  for (bool special : {false, true}) {
    (void)toks.spm->decode(toks.spm->encode(text, special));
    if (toks.byte_level) {
      std::string round = toks.byte_level->decode(toks.byte_level->encode(text, special));
      if (valid && !special && round != text) std::abort();
    }
  }
  return 0;
}
