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
  if (size == 0 || size > 4096) return 0;  // tokenizers are superlinear in the worst case
  // The first byte picks one tokenizer and whether special tokens are parsed, the rest is the
  // text: one tokenization per input, so libFuzzer credits new coverage to the input (and mode)
  // that reached it, and each execution costs a quarter of running all four combinations.
  const bool byte_level = (data[0] & 1) && toks.byte_level;
  const bool special = data[0] & 2;
  std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  const squish::Tokenizer& tok = byte_level ? *toks.byte_level : *toks.spm;
  std::string round = tok.decode(tok.encode(text, special));
  const bool valid = squish::find_invalid_utf8(text) == std::string_view::npos;
  if (byte_level && valid && !special && round != text) std::abort();
  return 0;
}
