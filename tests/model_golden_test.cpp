// Forward-pass correctness against independent references: logits from Hugging Face transformers
// (float32, eager attention) for tiny random checkpoints of every supported architecture and for
// the two real shared models. See docs/goldens.md for how the fixtures were produced.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <span>

#include "export/gguf_export.h"
#include "kernels/cpu/matmul.h"
#include "model/model.h"
#include "quant/quant.h"
#include "runtime/session.h"
#include "test_util.h"

namespace squish {
namespace {

// A quantized matrix made owned F32 (the CUDA tests' float reference model) holds exactly its
// dequantized values; a type without a dequantizer is a one-line error naming the tensor.
TEST(Model, MakeOwnedF32DequantizesQuantizedTensors) {
  constexpr int64_t kRows = 3, kCols = 512;
  std::vector<float> f(kRows * kCols);
  for (size_t i = 0; i < f.size(); ++i) f[i] = std::sin(0.37f * static_cast<float>(i)) * 0.05f;
  for (DType type : {DType::Q3_K, DType::IQ4_XS, DType::Q8_0}) {
    SCOPED_TRACE(dtype_name(type));
    const size_t stride = row_bytes(type, kCols);
    std::vector<uint8_t> w(stride * kRows);
    for (int64_t r = 0; r < kRows; ++r)
      quant_traits(type)->quantize(f.data() + r * kCols, w.data() + r * stride, kCols, nullptr);
    Model m;
    m.path = "mem.gguf";
    m.add_tensor({"blk.0.ffn_down.weight", type, {kRows, kCols}, w.data(), w.size()});
    m.make_owned_f32("blk.0.ffn_down.weight");
    const TensorInfo* t = m.find("blk.0.ffn_down.weight");
    ASSERT_NE(t, nullptr);
    ASSERT_EQ(t->type, DType::F32);
    std::vector<float> want(kCols);
    for (int64_t r = 0; r < kRows; ++r) {
      convert_row_to_f32(type, w.data() + r * stride, want.data(), kCols);
      for (int64_t i = 0; i < kCols; ++i)
        ASSERT_EQ(static_cast<const float*>(t->data)[r * kCols + i], want[i]) << r << " " << i;
    }
  }
  Model m;
  m.path = "mem.gguf";
  const int32_t ints[4] = {1, 2, 3, 4};
  m.add_tensor({"blk.0.ids", DType::I32, {4}, ints, sizeof ints});
  try {
    m.make_owned_f32("blk.0.ids");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("mem.gguf: tensor 'blk.0.ids' has type I32"),
              std::string::npos)
        << e.what();
  }
}

struct Golden {
  std::vector<int32_t> tokens;
  std::vector<float> logits;
  int vocab = 0;
};

Golden read_golden(const std::string& json_path, const std::string& logits_path) {
  std::ifstream in(json_path);
  nlohmann::json j = nlohmann::json::parse(in);
  Golden g;
  for (int t : j["tokens"]) g.tokens.push_back(t);
  g.vocab = j["shape"][1];
  std::ifstream lb(logits_path, std::ios::binary);
  g.logits.resize(g.tokens.size() * g.vocab);
  lb.read(reinterpret_cast<char*>(g.logits.data()), g.logits.size() * sizeof(float));
  EXPECT_TRUE(lb.good()) << logits_path;
  return g;
}

// max |a-b| / max |b|: the agreement metric.
double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  double max_diff = 0, max_ref = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    max_diff = std::max(max_diff, std::fabs(static_cast<double>(a[i]) - b[i]));
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(b[i])));
  }
  return max_diff / max_ref;
}

std::vector<float> run_all(const Model& model, const std::vector<int32_t>& tokens,
                           int n_batch = 256) {
  SessionOptions so;
  so.n_ctx = 64;
  so.n_batch = n_batch;
  Session s(model, so);
  std::vector<float> logits;
  s.eval(tokens.data(), static_cast<int>(tokens.size()), true, logits);
  return logits;
}

std::vector<float> run_incremental(const Model& model, const std::vector<int32_t>& tokens,
                                   int prefill) {
  SessionOptions so;
  so.n_ctx = 64;
  Session s(model, so);
  std::vector<float> all, logits;
  s.eval(tokens.data(), prefill, true, logits);
  all = logits;
  for (size_t i = prefill; i < tokens.size(); ++i) {
    s.eval(&tokens[i], 1, false, logits);
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

class ArchGolden : public testing::TestWithParam<std::string> {};

TEST_P(ArchGolden, MatchesTransformers) {
  const std::string dir = test::data_path("fixtures/" + GetParam());
  auto model = load_model(dir);
  Golden g = read_golden(dir + "/golden.json", dir + "/logits.bin");
  ASSERT_EQ(g.vocab, model->config.n_vocab);
  const auto logits = run_all(*model, g.tokens);
  const double err = relative_error(logits, g.logits);
  std::printf("%s: max|d|/max|logit| vs transformers = %.3g\n", GetParam().c_str(), err);
  EXPECT_LE(err, 1e-5) << GetParam();
}

TEST_P(ArchGolden, IncrementalDecodeMatchesPrefill) {
  auto model = load_model(test::data_path("fixtures/" + GetParam()));
  const std::string dir = test::data_path("fixtures/" + GetParam());
  Golden g = read_golden(dir + "/golden.json", dir + "/logits.bin");
  const auto full = run_all(*model, g.tokens);
  const auto inc = run_incremental(*model, g.tokens, 7);
  EXPECT_LE(relative_error(inc, full), 1e-5);
  // Micro-batches of 5 must agree with one batch too.
  EXPECT_LE(relative_error(run_all(*model, g.tokens, 5), full), 1e-5);
}

// eval_last is eval of the last row without the copy: the same bits at every step, positions
// advanced alike, across micro-batches (5 here) and single-token steps.
TEST_P(ArchGolden, EvalLastIsTheLastRowOfEval) {
  auto model = load_model(test::data_path("fixtures/" + GetParam()));
  const std::string dir = test::data_path("fixtures/" + GetParam());
  Golden g = read_golden(dir + "/golden.json", dir + "/logits.bin");
  ASSERT_GT(g.tokens.size(), 8u);
  SessionOptions so;
  so.n_ctx = 64;
  so.n_batch = 5;
  Session copied(*model, so), viewed(*model, so);
  std::vector<float> logits;
  copied.eval(g.tokens.data(), 7, false, logits);
  std::span<const float> row = viewed.eval_last(g.tokens.data(), 7);
  ASSERT_EQ(row.size(), logits.size());
  EXPECT_TRUE(std::equal(row.begin(), row.end(), logits.begin()));
  for (size_t i = 7; i < g.tokens.size(); ++i) {
    copied.eval(&g.tokens[i], 1, false, logits);
    row = viewed.eval_last(&g.tokens[i], 1);
    EXPECT_TRUE(std::equal(row.begin(), row.end(), logits.begin())) << "token " << i;
  }
  EXPECT_EQ(viewed.n_past(), static_cast<int>(g.tokens.size()));
  EXPECT_EQ(viewed.n_past(), copied.n_past());
}

TEST_P(ArchGolden, EveryKernelLevelAgrees) {
  const std::string dir = test::data_path("fixtures/" + GetParam());
  auto model = load_model(dir);
  Golden g = read_golden(dir + "/golden.json", dir + "/logits.bin");
  const CpuLevel saved = active_cpu_level();
  for (CpuLevel level : {CpuLevel::Scalar, CpuLevel::AVX2, CpuLevel::AVX512}) {
    if (static_cast<int>(level) > static_cast<int>(detected_cpu_level())) continue;
    set_cpu_level(level);
    EXPECT_LE(relative_error(run_all(*model, g.tokens), g.logits), 1e-5) << cpu_level_name(level);
  }
  set_cpu_level(saved);
}

TEST_P(ArchGolden, GGUFRoundTripKeepsLogits) {
  const std::string dir = test::data_path("fixtures/" + GetParam());
  auto model = load_model(dir);
  if (model->tokenizer == nullptr) {
    // Fixtures carry no tokenizer; the export writes "no_vocab", which is what llama.cpp expects.
  }
  Golden g = read_golden(dir + "/golden.json", dir + "/logits.bin");
  test::TempDir tmp;
  const std::string out = tmp.file("model.gguf");
  GGUFExportOptions eo;
  eo.type = DType::F32;
  export_gguf(*model, out, eo);
  auto reloaded = load_model(out);
  EXPECT_EQ(reloaded->config.n_layer, model->config.n_layer);
  EXPECT_LE(relative_error(run_all(*reloaded, g.tokens), g.logits), 1e-5);
  // F16 export: within half-precision weight rounding.
  eo.type = DType::F16;
  const std::string out16 = tmp.file("model16.gguf");
  export_gguf(*model, out16, eo);
  EXPECT_LE(relative_error(run_all(*load_model(out16), g.tokens), g.logits), 5e-3);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ArchGolden,
                         testing::Values("llama", "llama_linear", "mistral", "qwen2", "phi3",
                                         "gemma", "smollm"));

class SharedGolden : public testing::TestWithParam<std::string> {};

TEST_P(SharedGolden, RealModelMatchesTransformers) {
  const std::string name = GetParam();
  auto model = load_model(test::shared_path("models/" + name));
  Golden g = read_golden(test::data_path("fixtures/" + name + ".json"),
                         test::data_path("fixtures/" + name + ".logits.bin"));
  const auto logits = run_all(*model, g.tokens);
  const double err = relative_error(logits, g.logits);
  std::printf("%s: max|d|/max|logit| vs transformers = %.3g\n", name.c_str(), err);
  // Issue #2's agreement bound for float weights.
  EXPECT_LE(err, 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Shared, SharedGolden,
                         testing::Values("gcide-llama-16M", "gcide-qwen2-28M"));

}  // namespace
}  // namespace squish

namespace squish {
namespace {

// squish vs llama.cpp on the same F32 GGUF (written by squish convert, logits by llama.cpp).
class LlamaCppGolden : public testing::TestWithParam<std::string> {};

TEST_P(LlamaCppGolden, SameGGUFSameLogits) {
  const std::string name = GetParam();
  const bool shared = name.rfind("gcide", 0) == 0;
  const bool llama2c = name == "stories260K";
  std::string source =
      shared ? test::shared_path("models/" + name) : test::data_path("fixtures/" + name);
  std::string golden_json =
      shared ? test::data_path("fixtures/" + name + ".json") : source + "/golden.json";
  if (llama2c) {  // llama2.c checkpoint: interleaved RoPE, no permutation on export
    source = test::shared_path("models/stories260K/stories260K.bin");
    golden_json = test::data_path("llamacpp/stories260K.json");
  }
  Golden g = read_golden(golden_json, test::data_path("llamacpp/" + name + ".logits.bin"));
  test::TempDir tmp;
  GGUFExportOptions eo;
  eo.type = DType::F32;
  export_gguf(*load_model(source), tmp.file("m.gguf"), eo);
  auto model = load_model(tmp.file("m.gguf"));
  const double err = relative_error(run_all(*model, g.tokens), g.logits);
  if (llama2c) {  // the checkpoint itself, not only its GGUF, must agree
    EXPECT_LE(relative_error(run_all(*load_model(source), g.tokens), g.logits), 1e-4);
  }
  std::printf("%s: max|d|/max|logit| vs llama.cpp = %.3g\n", name.c_str(), err);
  // Issue #2's bound. Gemma: ggml's CPU GELU uses a float16 lookup table (see
  // tests/data/llamacpp/README.md), so llama.cpp itself is ~3e-4 away from exact math there.
  EXPECT_LE(err, name == "gemma" ? 1e-3 : 1e-4);
}

INSTANTIATE_TEST_SUITE_P(All, LlamaCppGolden,
                         testing::Values("llama", "llama_linear", "mistral", "qwen2", "phi3",
                                         "gemma", "smollm", "gcide-llama-16M", "gcide-qwen2-28M",
                                         "stories260K"));

}  // namespace
}  // namespace squish
