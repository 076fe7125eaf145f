// Tokenizer tests: exact ids against goldens from Hugging Face `tokenizers` and `sentencepiece`
// (tests/data/tokenizer/tokenizer_goldens.json, made by tools/goldens/tokenizer_goldens.py),
// round trips through decode and through GGUF, llama2.c's encoder against a literal port of
// run.c, and malformed files.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/gguf.h"
#include "test_util.h"
#include "tokenizer/text_util.h"
#include "tokenizer/tokenizer.h"

namespace squish {
namespace {

using json = nlohmann::json;
using Ids = std::vector<int32_t>;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

const json& goldens() {
  static const json j = json::parse(read_file(test::data_path("tokenizer/tokenizer_goldens.json")));
  return j;
}

const json& section(const std::string& name) {
  for (const json& s : goldens()["sections"]) {
    if (s["name"] == name) return s;
  }
  throw std::runtime_error("no golden section " + name);
}

std::string gcide_json_path() {
  return test::shared_path("models/gcide-llama-16M/tokenizer.json");
}
bool have_gcide() {
  return std::filesystem::exists(gcide_json_path());
}

// The same patch the golden script applied to the section's base tokenizer.json.
json apply_patch(json base, const json& patch) {
  for (const auto& [key, value] : patch.items()) {
    if (key == "added_tokens+") {
      for (const json& e : value) base["added_tokens"].push_back(e);
    } else if (key.rfind("model.", 0) == 0) {
      base["model"][key.substr(6)] = value;
    } else {
      base[key] = value;
    }
  }
  return base;
}

// Loads (once) the tokenizer a golden section was made with.
const Tokenizer& section_tokenizer(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  static test::TempDir dir;
  auto& slot = cache[name];
  if (slot) return *slot;
  if (name == "spm_model") {
    slot = load_sentencepiece_model(test::data_path("tokenizer/spm_bpe.model"));
    return *slot;
  }
  const bool gcide = name.rfind("gcide", 0) == 0;
  const json base = json::parse(
      read_file(gcide ? gcide_json_path() : test::data_path("tokenizer/spm_bpe_tokenizer.json")));
  const std::string path = dir.file(name + ".json");
  write_file(path, apply_patch(base, section(name).value("patch", json::object())).dump());
  slot = load_tokenizer_json(path);
  return *slot;
}

std::string describe(const std::string& text) {
  return json(text).dump();
}

// The first n code points of a UTF-8 string (Python slices the goldens' texts that way).
std::string first_code_points(const std::string& s, size_t n) {
  size_t i = 0;
  for (size_t k = 0; k < n && i < s.size(); ++k) {
    const size_t len = tok::valid_utf8_len(s, i);
    i += len == 0 ? 1 : len;
  }
  return s.substr(0, i);
}

std::string hex64(uint64_t v) {
  return fmt::format("{:016x}", v);
}

// Writes just the tokenizer keys of `t` to a GGUF file and reads it back.
std::unique_ptr<Tokenizer> through_gguf(const Tokenizer& t, const std::string& path,
                                        std::shared_ptr<GGUFFile>* file_out = nullptr) {
  {
    GGUFWriter w(path);
    t.write_gguf(w);
    w.write_header();
    w.finish();
  }
  auto file = GGUFFile::open(path);
  if (file_out != nullptr) *file_out = file;
  return load_gguf_tokenizer(*file);
}

// ---------------------------------------------------------------------------------------------
// Goldens, one parameter per section of tokenizer_goldens.json

class TokenizerGolden : public testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam().rfind("gcide", 0) == 0 && !have_gcide()) {
      GTEST_SKIP() << "shared gcide model not found at " << gcide_json_path();
    }
  }
  bool hf() const { return GetParam() != "spm_model"; }
};

TEST_P(TokenizerGolden, EncodeMatchesReference) {
  const Tokenizer& t = section_tokenizer(GetParam());
  const json& sec = section(GetParam());
  EXPECT_EQ(t.vocab_size(), sec["vocab_size"].get<int32_t>());
  int checked = 0;
  for (const json& c : sec["cases"]) {
    const std::string text = c["text"];
    SCOPED_TRACE(describe(text));
    if (hf()) {
      EXPECT_EQ(t.encode(text, true), c["ids"].get<Ids>());
      EXPECT_EQ(t.encode(text, false), c["ids_no_special"].get<Ids>());
    } else {
      EXPECT_EQ(t.encode(text, false), c["ids"].get<Ids>());  // sentencepiece parses no specials
    }
    ++checked;
  }
  EXPECT_GE(checked, 60);
}

TEST_P(TokenizerGolden, DecodeMatchesReference) {
  const Tokenizer& t = section_tokenizer(GetParam());
  const json& sec = section(GetParam());
  for (const json& c : sec["cases"]) {
    SCOPED_TRACE(describe(c["text"]));
    EXPECT_EQ(t.decode(c["ids"].get<Ids>()), c["decoded"].get<std::string>());
  }
  for (const json& c : sec["decode_cases"]) {
    SCOPED_TRACE(c["ids"].dump());
    EXPECT_EQ(t.decode(c["ids"].get<Ids>()), c["decoded"].get<std::string>());
  }
}

TEST_P(TokenizerGolden, PostProcessorBos) {
  const json& sec = section(GetParam());
  if (!sec.contains("with_special")) GTEST_SKIP() << "no post-processor golden";
  const Tokenizer& t = section_tokenizer(GetParam());
  EXPECT_EQ(t.encode_for_model(sec["with_special"]["text"].get<std::string>()),
            sec["with_special"]["ids"].get<Ids>());
}

TEST_P(TokenizerGolden, RoundTripsWhereReferenceDoes) {
  const Tokenizer& t = section_tokenizer(GetParam());
  for (const json& c : section(GetParam())["cases"]) {
    const std::string text = c["text"];
    if (c["decoded"] != text) continue;  // e.g. Metaspace decoders leave <0xXX> as text
    SCOPED_TRACE(describe(text));
    EXPECT_EQ(t.decode(t.encode(text, hf())), text);
    // The pieces concatenate to the same bytes, up to the decoder's leading-space strip.
    std::string pieces;
    for (int32_t id : t.encode(text, false)) pieces += t.token_to_piece(id);
    if (t.kind() == TokenizerKind::ByteLevelBPE) {
      EXPECT_EQ(pieces, text);
    }
  }
}

TEST_P(TokenizerGolden, WholeFileMatchesReference) {
  const json& sec = section(GetParam());
  const std::string valid = test::shared_path("data/gcide-valid.txt");
  if (!sec.contains("whole_file") || !std::filesystem::exists(valid)) {
    GTEST_SKIP() << "no whole-file golden or no " << valid;
  }
  const Tokenizer& t = section_tokenizer(GetParam());
  const std::string text = first_code_points(read_file(valid), sec["whole_file"]["chars"]);
  const auto t0 = std::chrono::steady_clock::now();
  const Ids ids = t.encode(text, hf());
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[ %s ] encoded %zu bytes into %zu tokens in %.3f s\n", GetParam().c_str(),
              text.size(), ids.size(), s);
  EXPECT_EQ(ids.size(), sec["whole_file"]["n_ids"].get<size_t>());
  EXPECT_EQ(hex64(tok::fnv1a64_ids(ids.data(), ids.size())),
            sec["whole_file"]["fnv1a64"].get<std::string>());
  if (t.kind() == TokenizerKind::ByteLevelBPE) {
    EXPECT_EQ(t.decode(ids), text);
  }
}

TEST_P(TokenizerGolden, GgufRoundTripEncodesIdentically) {
  const Tokenizer& t = section_tokenizer(GetParam());
  test::TempDir dir;
  std::shared_ptr<GGUFFile> file;
  const auto g = through_gguf(t, dir.file("tok.gguf"), &file);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->vocab_size(), t.vocab_size());
  EXPECT_EQ(g->bos_id(), t.bos_id());
  EXPECT_EQ(g->eos_id(), t.eos_id());
  EXPECT_EQ(g->add_bos(), t.add_bos());
  for (int32_t id = 0; id < t.vocab_size(); id += 97)
    EXPECT_EQ(g->token_text(id), t.token_text(id));
  for (const json& c : section(GetParam())["cases"]) {
    const std::string text = c["text"];
    SCOPED_TRACE(describe(text));
    EXPECT_EQ(g->encode(text, false), t.encode(text, false));
    if (hf()) {
      EXPECT_EQ(g->encode(text, true), t.encode(text, true));
      EXPECT_EQ(g->decode(c["ids"].get<Ids>()), t.decode(c["ids"].get<Ids>()));
    }
  }
  // What llama.cpp will see.
  const std::string model = *file->get_string("tokenizer.ggml.model");
  const auto pre = file->get_string("tokenizer.ggml.pre");
  const bool has_pipeline = file->find("squish.tokenizer.pipeline") != nullptr;
  const std::map<std::string, std::tuple<std::string, std::string, bool>> expect = {
      {"gcide", {"gpt2", "gpt-2", false}},
      {"gcide_llama3", {"gpt2", "llama-bpe", false}},
      {"gcide_qwen2", {"gpt2", "qwen2", true}},  // no NFC normalizer: not exactly llama.cpp's
      {"spm_bpe", {"llama", "", false}},
      {"spm_bpe_metaspace_first", {"llama", "", true}},
      {"spm_bpe_metaspace_split", {"llama", "", true}},
      {"spm_model", {"llama", "", false}},
  };
  const auto& [m, p, key] = expect.at(GetParam());
  EXPECT_EQ(model, m);
  EXPECT_EQ(pre.value_or(""), p);
  EXPECT_EQ(has_pipeline, key);
  if (GetParam() == "gcide_qwen2") {
    // Added tokens: special -> control (3), non-special -> user-defined (4).
    const auto* types = file->get_int_array("tokenizer.ggml.token_type");
    ASSERT_NE(types, nullptr);
    EXPECT_EQ((*types)[0], 3);
    EXPECT_EQ((*types)[8192], 3);
    EXPECT_EQ((*types)[8193], 4);
    EXPECT_EQ((*types)[100], 1);
  }
  if (model == "llama") {
    const auto* types = file->get_int_array("tokenizer.ggml.token_type");
    const auto* scores = file->get_float_array("tokenizer.ggml.scores");
    ASSERT_NE(types, nullptr);
    ASSERT_NE(scores, nullptr);
    EXPECT_EQ((*types)[0], 2);  // <unk>
    EXPECT_EQ((*types)[1], 3);  // <s>
    EXPECT_EQ((*types)[3], 6);  // <0x00>
  }
}

INSTANTIATE_TEST_SUITE_P(Tokenizer, TokenizerGolden,
                         testing::Values("gcide", "gcide_llama3", "gcide_qwen2", "spm_bpe",
                                         "spm_bpe_metaspace_first", "spm_bpe_metaspace_split",
                                         "spm_model"));

// ---------------------------------------------------------------------------------------------
// The real model folder

TEST(TokenizerHfFolder, GcideSpecialTokens) {
  const std::string dir = test::shared_path("models/gcide-llama-16M");
  if (!have_gcide()) GTEST_SKIP() << "no " << dir;
  const auto t = load_hf_tokenizer(dir);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->kind(), TokenizerKind::ByteLevelBPE);
  EXPECT_EQ(t->vocab_size(), 8192);
  EXPECT_EQ(t->bos_id(), 0);
  EXPECT_EQ(t->eos_id(), 0);
  EXPECT_FALSE(t->add_bos());
  EXPECT_EQ(t->token_text(0), "<|endoftext|>");
  EXPECT_EQ(t->token_id("<|endoftext|>"), 0);
  EXPECT_EQ(t->token_to_piece(t->token_id("\xC4\xA0the")), " the");  // "Ġthe"
}

TEST(TokenizerHfFolder, ConfigOverridesAndMissingFiles) {
  test::TempDir dir;
  EXPECT_EQ(load_hf_tokenizer(dir.path.string()), nullptr);
  std::filesystem::copy_file(test::data_path("tokenizer/spm_bpe_tokenizer.json"),
                             dir.file("tokenizer.json"));
  auto t = load_hf_tokenizer(dir.path.string());
  EXPECT_TRUE(t->add_bos());  // TemplateProcessing adds <s>
  EXPECT_EQ(t->bos_id(), 1);
  EXPECT_EQ(t->eos_id(), 2);
  write_file(dir.file("tokenizer_config.json"),
             R"({"add_bos_token": false, "eos_token": {"content": "<unk>"}})");
  t = load_hf_tokenizer(dir.path.string());
  EXPECT_FALSE(t->add_bos());
  EXPECT_EQ(t->eos_id(), 0);
  EXPECT_EQ(t->encode_for_model("a"), t->encode("a"));
}

TEST(TokenizerSentencePieceModel, TokenTables) {
  const auto t = load_sentencepiece_model(test::data_path("tokenizer/spm_bpe.model"));
  EXPECT_EQ(t->kind(), TokenizerKind::SentencePieceBPE);
  EXPECT_EQ(t->bos_id(), 1);
  EXPECT_EQ(t->eos_id(), 2);
  EXPECT_TRUE(t->add_bos());
  EXPECT_EQ(t->token_text(3), "<0x00>");
  EXPECT_EQ(t->token_to_piece(3 + 'A'), "A");
  EXPECT_EQ(t->token_id("<s>"), 1);
  EXPECT_EQ(t->token_id("no such piece"), -1);
  // Control pieces are parsed only when asked.
  EXPECT_EQ(t->encode("<s>", true), Ids{1});
  EXPECT_NE(t->encode("<s>", false), Ids{1});
}

// ---------------------------------------------------------------------------------------------
// Stray bytes (the references accept only valid UTF-8)

TEST(TokenizerInvalidUtf8, EachStrayByteIsItsOwnToken) {
  if (!have_gcide()) GTEST_SKIP();
  const Tokenizer& t = section_tokenizer("gcide");
  const std::string text =
      "ab\xFF"
      "cd\xE6\x97 e\x80";
  const Ids ids = t.encode(text);
  std::string pieces;
  for (int32_t id : ids) pieces += t.token_to_piece(id);
  EXPECT_EQ(pieces, text);  // byte-level BPE loses nothing
  EXPECT_EQ(t.decode(ids), tok::utf8_lossy(text));
  const Tokenizer& s = section_tokenizer("spm_bpe");
  EXPECT_FALSE(s.encode(text).empty());
}

TEST(TokenizerLongInput, HugeRunsRoundTrip) {
  // One enormous regex match or BPE word each: must neither fail nor take quadratic time.
  for (const char* name : {"gcide", "gcide_llama3", "spm_bpe"}) {
    if (std::string(name).rfind("gcide", 0) == 0 && !have_gcide()) continue;
    const Tokenizer& t = section_tokenizer(name);
    for (const std::string& text :
         {std::string(300000, ' ') + "a", std::string(300000, 'a'), std::string(300000, '7'),
          std::string(100000, '\n') + "x", std::string("x").append(200000, '!')}) {
      SCOPED_TRACE(std::string(name) + " " + describe(text.substr(0, 3)));
      EXPECT_EQ(t.decode(t.encode(text)), text);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// llama2.c tokenizer.bin

struct Llama2cVocab {
  std::vector<std::string> pieces;
  std::vector<float> scores;
};

Llama2cVocab tiny_llama2c_vocab() {
  Llama2cVocab v;
  v.pieces = {"<unk>", "\n<s>\n", "\n</s>\n"};
  v.scores = {0, 0, 0};
  for (int b = 0; b < 256; ++b) {
    v.pieces.push_back(fmt::format("<0x{:02X}>", b));
    v.scores.push_back(0);
  }
  // Ties on purpose (-2 twice, -4 twice): the leftmost pair must win.
  const std::vector<std::pair<std::string, float>> extra = {{" ", -100},
                                                            {"a", -100},
                                                            {"b", -100},
                                                            {"c", -100},
                                                            {"d", -100},
                                                            {"\xC3\xA9", -100},
                                                            {" a", -1},
                                                            {"ab", -2},
                                                            {"bc", -2},
                                                            {"ca", -3},
                                                            {" ab", -4},
                                                            {"abc", -4},
                                                            {"aa", -5},
                                                            {" aa", -6},
                                                            {"cd", -7},
                                                            {"  ", -8},
                                                            {" c", -9},
                                                            {"\xC3\xA9"
                                                             "a",
                                                             -10},
                                                            {"dd", -11},
                                                            {"ddd", -12},
                                                            {" abc", -13}};
  for (const auto& [p, s] : extra) {
    v.pieces.push_back(p);
    v.scores.push_back(s);
  }
  return v;
}

std::string llama2c_bytes(const Llama2cVocab& v) {
  std::string out;
  const auto put = [&](const void* p, size_t n) { out.append(static_cast<const char*>(p), n); };
  int32_t max_len = 0;
  for (const std::string& p : v.pieces) max_len = std::max<int32_t>(max_len, p.size());
  put(&max_len, 4);
  for (size_t i = 0; i < v.pieces.size(); ++i) {
    const auto len = static_cast<int32_t>(v.pieces[i].size());
    put(&v.scores[i], 4);
    put(&len, 4);
    put(v.pieces[i].data(), v.pieces[i].size());
  }
  return out;
}

// A literal port of llama2.c run.c encode() (quadratic; the reference for the fast version).
Ids runc_encode(const Llama2cVocab& v, const std::string& text) {
  const auto lookup = [&](const std::string& s) -> int32_t {
    for (size_t i = 0; i < v.pieces.size(); ++i) {
      if (v.pieces[i] == s) return static_cast<int32_t>(i);
    }
    return -1;
  };
  Ids tokens;
  if (!text.empty()) tokens.push_back(lookup(" "));
  std::string buf;
  for (size_t c = 0; c < text.size(); ++c) {
    if ((text[c] & 0xC0) != 0x80) buf.clear();
    buf += text[c];
    if (c + 1 < text.size() && (text[c + 1] & 0xC0) == 0x80 && buf.size() < 4) continue;
    const int32_t id = lookup(buf);
    if (id != -1) {
      tokens.push_back(id);
    } else {
      for (unsigned char b : buf) tokens.push_back(b + 3);
    }
    buf.clear();
  }
  while (true) {
    float best_score = -1e10f;
    int32_t best_id = -1, best_idx = -1;
    for (size_t i = 0; i + 1 < tokens.size(); ++i) {
      const int32_t id = lookup(v.pieces[tokens[i]] + v.pieces[tokens[i + 1]]);
      if (id != -1 && v.scores[id] > best_score) {
        best_score = v.scores[id];
        best_id = id;
        best_idx = static_cast<int32_t>(i);
      }
    }
    if (best_idx == -1) break;
    tokens[best_idx] = best_id;
    tokens.erase(tokens.begin() + best_idx + 1);
  }
  return tokens;
}

std::vector<std::string> random_texts(int count, uint32_t seed) {
  const std::vector<std::string> alphabet = {
      "a", "b", "c", "d", " ", " ", "\xC3\xA9", "\xE6\x97\xA5", "\n", "x"};
  std::mt19937 rng(seed);
  std::vector<std::string> out = {"", " ", "a", "abc", " abc abc", "ddddd", "aaaa", "  a  "};
  for (int k = 0; k < count; ++k) {
    std::string s;
    const int len = static_cast<int>(rng() % 24);
    for (int i = 0; i < len; ++i) s += alphabet[rng() % alphabet.size()];
    out.push_back(s);
  }
  return out;
}

TEST(TokenizerLlama2c, MatchesRunCEncode) {
  const Llama2cVocab v = tiny_llama2c_vocab();
  test::TempDir dir;
  write_file(dir.file("tokenizer.bin"), llama2c_bytes(v));
  const auto t = load_llama2c_tokenizer(dir.file("tokenizer.bin"), v.pieces.size());
  EXPECT_EQ(t->kind(), TokenizerKind::Llama2c);
  EXPECT_EQ(t->vocab_size(), static_cast<int32_t>(v.pieces.size()));
  EXPECT_EQ(t->bos_id(), 1);
  EXPECT_EQ(t->eos_id(), 2);
  EXPECT_TRUE(t->add_bos());
  // By hand: [" ", a, b, c] -> " a" (-1) -> [" a", b, c] -> "bc" (-2 beats " ab" at -4)
  // -> [" a", "bc"] -> " abc" (-13).
  EXPECT_EQ(t->encode("abc"), Ids{t->token_id(" abc")});
  // "ab" and "bc" tie at -2: the leftmost pair merges first.
  EXPECT_EQ(t->encode("dabc"), (Ids{t->token_id(" "), t->token_id("d"), t->token_id("abc")}));
  EXPECT_EQ(t->encode("\xE6\x97\xA5"), (Ids{t->token_id(" "), 3 + 0xE6, 3 + 0x97, 3 + 0xA5}));
  for (const std::string& text : random_texts(300, 1)) {
    SCOPED_TRACE(describe(text));
    ASSERT_EQ(t->encode(text), runc_encode(v, text));
    EXPECT_EQ(t->decode(t->encode(text)), text);
  }
  EXPECT_EQ(t->encode_for_model("a").front(), 1);
  EXPECT_EQ(t->decode({1, t->token_id(" a")}), "\n<s>\na");  // run.c strips the space after BOS
}

TEST(TokenizerLlama2c, GgufRoundTripEncodesIdentically) {
  const Llama2cVocab v = tiny_llama2c_vocab();
  test::TempDir dir;
  write_file(dir.file("tokenizer.bin"), llama2c_bytes(v));
  const auto t = load_llama2c_tokenizer(dir.file("tokenizer.bin"), 0);  // 0: read to the end
  std::shared_ptr<GGUFFile> file;
  const auto g = through_gguf(*t, dir.file("tok.gguf"), &file);
  EXPECT_EQ(*file->get_string("tokenizer.ggml.model"), "llama");
  const auto* tokens = file->get_str_array("tokenizer.ggml.tokens");
  EXPECT_EQ((*tokens)[1], "<s>");
  EXPECT_EQ((*tokens)[v.pieces.size() - 1],
            "\xE2\x96\x81"
            "abc");  // " abc" as "▁abc"
  EXPECT_EQ(g->kind(), TokenizerKind::SentencePieceBPE);
  EXPECT_EQ(g->bos_id(), 1);
  EXPECT_TRUE(g->add_bos());
  for (const std::string& text : random_texts(300, 2)) {
    SCOPED_TRACE(describe(text));
    ASSERT_EQ(g->encode(text), t->encode(text));
    EXPECT_EQ(g->decode(g->encode(text)), text);
  }
}

// ---------------------------------------------------------------------------------------------
// Malformed input: a squish::Error whose one-line message names the file

template <typename F>
void expect_error_naming(const std::string& path, F&& f, const std::string& also = "") {
  try {
    f();
    ADD_FAILURE() << "no error for " << path;
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    if (!also.empty()) {
      EXPECT_NE(msg.find(also), std::string::npos) << msg;
    }
  }
}

TEST(TokenizerMalformed, TokenizerJson) {
  test::TempDir dir;
  const std::string p = dir.file("tokenizer.json");
  const auto bad = [&](const std::string& text, const std::string& also) {
    SCOPED_TRACE(text);
    write_file(p, text);
    expect_error_naming(
        p, [&] { load_tokenizer_json(p); }, also);
  };
  bad("{\"model\": {\"type\": \"BPE\", ", "not valid JSON");
  bad("[1, 2]", "");
  bad(R"({"model": {"type": "WordPiece", "vocab": {}}})", "WordPiece");
  bad(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a c"]}})",
      "\"c\"");
  bad(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": [["a", "b"]]}})", "ab");
  bad(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a  b"]}})", "");
  bad(R"({"model": {"type": "BPE", "vocab": {"a": -1}, "merges": []}})", "out of range");
  bad(R"({"model": {"type": "BPE", "vocab": {"a": 99999999999}, "merges": []}})", "out of range");
  bad(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 0}, "merges": []}})", "two tokens");
  bad(R"({"model": {"type": "BPE", "vocab": {"a": "x"}, "merges": []}})", "");
  bad(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
          "added_tokens": [{"id": -5, "content": "<x>"}]})",
      "out of range");
  bad(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "unk_token": "<unk>"}})",
      "unk_token");
  bad(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
          "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(unclosed"},
                            "behavior": "Isolated", "invert": false}})",
      "regex");
  bad(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
          "normalizer": {"type": "NFKD"}})",
      "NFKD");
  expect_error_naming(dir.file("missing.json"),
                      [&] { load_tokenizer_json(dir.file("missing.json")); });
}

TEST(TokenizerMalformed, Llama2cTokenizerBin) {
  const Llama2cVocab v = tiny_llama2c_vocab();
  const std::string good = llama2c_bytes(v);
  test::TempDir dir;
  const std::string p = dir.file("tokenizer.bin");
  const int32_t n = static_cast<int32_t>(v.pieces.size());
  for (size_t cut :
       {size_t{0}, size_t{2}, size_t{4}, size_t{9}, good.size() / 2, good.size() - 1}) {
    SCOPED_TRACE(cut);
    write_file(p, good.substr(0, cut));
    expect_error_naming(p, [&] { load_llama2c_tokenizer(p, n); });
  }
  write_file(p, good);
  expect_error_naming(
      p, [&] { load_llama2c_tokenizer(p, n - 5); }, "bytes left");
  expect_error_naming(p, [&] { load_llama2c_tokenizer(p, n + 1); });
  std::string neg = good;
  const int32_t bad_len = -3;
  std::memcpy(&neg[8], &bad_len, 4);  // first token's length
  write_file(p, neg);
  expect_error_naming(
      p, [&] { load_llama2c_tokenizer(p, n); }, "length");
}

TEST(TokenizerMalformed, SentencePieceModelAndGguf) {
  test::TempDir dir;
  const std::string p = dir.file("tokenizer.model");
  write_file(p, "this is not a protobuf");
  expect_error_naming(p, [&] { load_sentencepiece_model(p); });
  expect_error_naming(dir.file("none.model"),
                      [&] { load_sentencepiece_model(dir.file("none.model")); });

  const std::string g = dir.file("bad.gguf");
  const auto write = [&](auto&& fill) {
    GGUFWriter w(g);
    fill(w);
    w.write_header();
    w.finish();
  };
  write([](GGUFWriter& w) {
    w.set("tokenizer.ggml.model", GGUFValue::str("gpt2"));
    w.set("tokenizer.ggml.tokens", GGUFValue::str_array({"a", "b"}));
    w.set("tokenizer.ggml.token_type", GGUFValue::i32_array({1}));
  });
  expect_error_naming(
      g, [&] { load_gguf_tokenizer(*GGUFFile::open(g)); }, "token types");
  write([](GGUFWriter& w) {
    w.set("tokenizer.ggml.model", GGUFValue::str("gpt2"));
    w.set("tokenizer.ggml.tokens", GGUFValue::str_array({"a", "b"}));
    w.set("tokenizer.ggml.merges", GGUFValue::str_array({"a b"}));
  });
  expect_error_naming(
      g, [&] { load_gguf_tokenizer(*GGUFFile::open(g)); }, "ab");
  write([](GGUFWriter& w) {
    w.set("tokenizer.ggml.model", GGUFValue::str("llama"));
    w.set("tokenizer.ggml.tokens", GGUFValue::str_array({"a", "b"}));
    w.set("tokenizer.ggml.bos_token_id", GGUFValue::u32(7));
  });
  expect_error_naming(
      g, [&] { load_gguf_tokenizer(*GGUFFile::open(g)); }, "out of range");
  write([](GGUFWriter& w) { w.set("tokenizer.ggml.model", GGUFValue::str("bert")); });
  expect_error_naming(
      g, [&] { load_gguf_tokenizer(*GGUFFile::open(g)); }, "bert");
  write([](GGUFWriter& w) { w.set("general.name", GGUFValue::str("x")); });
  EXPECT_EQ(load_gguf_tokenizer(*GGUFFile::open(g)), nullptr);
}

}  // namespace
}  // namespace squish
