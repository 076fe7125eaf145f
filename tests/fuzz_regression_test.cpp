// Inputs found by the fuzzers (fuzz/, docs/fuzzing.md), kept so the fixes stay fixed. Each must be
// rejected with squish::Error (a one-line message), never another exception or a crash.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"
#include "formats/gguf.h"
#include "model/config.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace squish {
namespace {

// config_fuzz: json::value() threw nlohmann's type_error when "model_type" was not a string
// (the input repeats the key; the JSON reader keeps the last one).
TEST(FuzzRegression, ConfigModelTypeNotString) {
  const std::string text = R"({"ar": false, "model_type": "llama", "num_attends": 2,
                               "pad_token_id": null, "use_cache": true, "model_type": 256})";
  const nlohmann::json j = nlohmann::json::parse(text);
  try {
    config_from_hf(j, "config.json");
    FAIL() << "accepted a numeric model_type";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'model_type' must be a string"), std::string::npos)
        << e.what();
  }
}

// The same fault class on the boolean keys read with json::value().
TEST(FuzzRegression, ConfigBooleanKeysWrongType) {
  nlohmann::json j = {{"model_type", "llama"},    {"vocab_size", 16},
                      {"hidden_size", 8},         {"num_hidden_layers", 1},
                      {"num_attention_heads", 2}, {"intermediate_size", 16}};
  EXPECT_NO_THROW(config_from_hf(j, "config.json"));
  for (const char* key : {"tie_word_embeddings", "attention_bias"}) {
    nlohmann::json bad = j;
    bad[key] = "yes";
    EXPECT_THROW(config_from_hf(bad, "config.json"), Error) << key;
  }
}

// A huge partial_rotary_factor made head_dim * factor overflow the int conversion (UB).
TEST(FuzzRegression, ConfigPartialRotaryFactorOutOfRange) {
  nlohmann::json j = {{"model_type", "phi3"},     {"vocab_size", 16},
                      {"hidden_size", 8},         {"num_hidden_layers", 1},
                      {"num_attention_heads", 2}, {"intermediate_size", 16}};
  for (double factor : {1e308, -1.0, 0.0, 2.0}) {
    j["partial_rotary_factor"] = factor;
    EXPECT_THROW(config_from_hf(j, "config.json"), Error) << factor;
  }
  j["partial_rotary_factor"] = 0.5;
  EXPECT_EQ(config_from_hf(j, "config.json").n_rot, 2);
}

// gguf_fuzz: a gpt2 merge that is neither "a b" nor UTF-8 made the error message's
// json::dump() throw nlohmann's type_error instead of squish's error.
TEST(FuzzRegression, GgufMergeNotUtf8) {
  test::TempDir dir;
  const std::string path = dir.file("bad_merge.gguf");
  GGUFWriter w(path);
  w.set("general.architecture", GGUFValue::str("qwen2"));
  w.set("tokenizer.ggml.model", GGUFValue::str("gpt2"));
  w.set("tokenizer.ggml.tokens", GGUFValue::str_array({"a", "b"}));
  w.set("tokenizer.ggml.merges", GGUFValue::str_array({"\xfb\xfb"}));
  w.write_header();
  w.finish();
  auto gguf = GGUFFile::open(path);
  try {
    load_gguf_tokenizer(*gguf);
    FAIL() << "accepted a malformed merge";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("is not two tokens"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace squish
