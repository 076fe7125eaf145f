// The NFC normalizer (Qwen2's tokenizer.json) composes decomposed text before pre-tokenizing,
// as Hugging Face tokenizers does.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace squish {
namespace {

TEST(TokenizerNfc, DecomposedTextEncodesLikeComposed) {
  std::ifstream in(test::shared_path("models/gcide-llama-16M/tokenizer.json"));
  nlohmann::json j = nlohmann::json::parse(in);
  j["normalizer"] = {{"type", "NFC"}};
  test::TempDir tmp;
  std::ofstream(tmp.file("tokenizer.json")) << j.dump();
  auto with_nfc = load_tokenizer_json(tmp.file("tokenizer.json"));
  auto without = load_tokenizer_json(test::shared_path("models/gcide-llama-16M/tokenizer.json"));
  const std::string composed = "caf\xc3\xa9 na\xc3\xafve";          // é, ï precomposed
  const std::string decomposed = "cafe\xcc\x81 nai\xcc\x88ve";       // e + U+0301, i + U+0308
  EXPECT_EQ(with_nfc->encode(decomposed), with_nfc->encode(composed));
  EXPECT_EQ(with_nfc->encode(composed), without->encode(composed));
  EXPECT_NE(without->encode(decomposed), without->encode(composed));
  // Invalid UTF-8 is not touched by the normalizer: the byte-level pieces still give its bytes.
  const std::string bad = "ab\xff\xfe";
  std::string bytes;
  for (int32_t id : with_nfc->encode(bad)) bytes += with_nfc->token_to_piece(id);
  EXPECT_EQ(bytes, bad);
}

}  // namespace
}  // namespace squish
