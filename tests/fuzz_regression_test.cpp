// Inputs found by the fuzzers (fuzz/, docs/fuzzing.md), kept so the fixes stay fixed. Each must be
// rejected with squish::Error (a one-line message), never another exception or a crash.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "eval/saved_base.h"
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

// Inputs of the 10-million-execution runs (docs/fuzzing.md), kept as files in tests/data/fuzz.
// Each must load with a one-line squish::Error naming the file.
void expect_one_line_error(const std::string& path, const std::string& needle,
                           const std::function<void()>& load) {
  try {
    load();
    ADD_FAILURE() << path << ": accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

// tokenizer_json_fuzz: a null where a string was expected escaped as nlohmann's type_error.
TEST(FuzzRegression, TokenizerJsonNullField) {
  const std::string path = test::data_path("fuzz/tokenizer_json_null_type.json");
  expect_one_line_error(path, "malformed tokenizer.json", [&] { load_tokenizer_json(path); });
}

// sentencepiece_model_fuzz: a zero-length piece made libsentencepiece's trie builder throw
// Darts::Details::Exception out of Load() instead of returning an error status.
TEST(FuzzRegression, SentencePieceEmptyPiece) {
  const std::string path = test::data_path("fuzz/sentencepiece_empty_piece.model");
  expect_one_line_error(path, "not a SentencePiece model", [&] { load_sentencepiece_model(path); });
}

// saved_base_fuzz: a kept log-probability so small that exp() underflows to 0 made the tail
// bound's slot count infinite, and converting it to size_t is undefined (UBSan). It is now
// clamped; the record then either scores or is rejected, without undefined behaviour.
TEST(FuzzRegression, SavedBaseTinyKeptProbability) {
  const std::string path = test::data_path("fuzz/saved_base_tiny_kept_logp.squishkl");
  try {
    SavedBaseReader reader(path);
    const SavedBaseHeader& h = reader.header();
    ASSERT_LE(h.n_vocab, 1u << 16);
    const int n_vocab = static_cast<int>(h.n_vocab);
    std::vector<double> model_logp(n_vocab, -std::log(static_cast<double>(n_vocab)));
    std::vector<uint8_t> mask;
    std::vector<double> scratch;
    SavedRow row;
    for (uint64_t i = 0; i < h.n_scored; ++i) {
      reader.row(i, row);
      double bound = 0;
      const double kl = saved_kld(row, model_logp.data(), n_vocab, &bound, mask, scratch, path, i);
      EXPECT_FALSE(std::isnan(kl));
    }
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind(path + ": ", 0), 0u) << e.what();
  }
}

}  // namespace
}  // namespace squish
