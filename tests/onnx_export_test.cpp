// ONNX export: MatMulNBits packing against ggml's dequantization, the graph's structure and
// onnx::checker, and ONNX Runtime's logits (npm onnxruntime-node, driven by
// tools/onnxruntime/logits.js) against squish's own runtime on the same weights, prefilling 8
// tokens and then decoding 4 one at a time through present -> past.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "export/gguf_export.h"
#include "export/onnx_export.h"
#include "export/onnx_graph.h"
#include "export/onnx_matmulnbits.h"
#include "model/model.h"
#include "quant/mix.h"
#include "quant/quant.h"
#include "runtime/session.h"
#include "test_util.h"

namespace squish {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

// Skips where the ONNX module cannot load (sanitizer builds; see export/onnx_graph.h).
#define SKIP_WITHOUT_ONNX_MODULE()                                                            \
  do {                                                                                        \
    if (const std::string why = onnx_unavailable_reason(); !why.empty()) GTEST_SKIP() << why; \
  } while (0)

std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// Q4_0 / Q8_0 blocks map one to one: ONNX Runtime's dequantization equals ggml's, bit for bit.
TEST(OnnxMatMulNBits, ExactBlocksDequantizeLikeGgml) {
  const int64_t n = 5, k = 96;
  const std::vector<float> w = random_floats(n * k, 1);
  for (DType type : {DType::Q4_0, DType::Q8_0}) {
    const QuantTraits* qt = quant_traits(type);
    const size_t stride = row_bytes(type, k);
    std::vector<uint8_t> blocks(stride * n);
    for (int64_t r = 0; r < n; ++r)
      qt->quantize(w.data() + r * k, blocks.data() + r * stride, k, nullptr);
    MatMulNBitsWeight q = matmulnbits_from_blocks(type, blocks.data(), n, k);
    EXPECT_EQ(q.bits, type == DType::Q4_0 ? 4 : 8);
    EXPECT_TRUE(q.zero_points.empty());
    EXPECT_EQ(q.codes.size(), size_t(n * 3 * q.blob_bytes()));
    std::vector<float> ggml(k), ort(k);
    for (int64_t r = 0; r < n; ++r) {
      qt->dequantize(blocks.data() + r * stride, ggml.data(), k);
      matmulnbits_dequantize_row(q, r, ort.data());
      for (int64_t c = 0; c < k; ++c)
        ASSERT_EQ(ggml[c], ort[c]) << dtype_name(type) << " " << r << "," << c;
    }
  }
  // Q4_0's nibble order differs from MatMulNBits': element 1 of a block is the high nibble of
  // byte 0 in MatMulNBits, the low nibble of byte 1 in ggml.
  std::vector<float> ramp(32);
  for (int i = 0; i < 32; ++i) ramp[i] = (i % 16) - 8.0f;
  std::vector<uint8_t> blk(row_bytes(DType::Q4_0, 32));
  quant_traits(DType::Q4_0)->quantize(ramp.data(), blk.data(), 32, nullptr);
  MatMulNBitsWeight q = matmulnbits_from_blocks(DType::Q4_0, blk.data(), 1, 32);
  std::vector<float> back(32);
  matmulnbits_dequantize_row(q, 0, back.data());
  quant_traits(DType::Q4_0)->dequantize(blk.data(), ramp.data(), 32);
  EXPECT_EQ(back, ramp);
  EXPECT_EQ(q.codes[0] >> 4, blk[2 + 1] & 15);  // ggml: qs[1] low nibble is element 1
  EXPECT_EQ(q.codes[0] & 15, blk[2] & 15);
}

TEST(OnnxMatMulNBits, RoundToNearestKeepsZeroAndBoundsError) {
  const int64_t n = 3, k = 200;  // not a multiple of the block: the last block is padded
  std::vector<float> w = random_floats(n * k, 2);
  w[7] = 0.0f;
  for (int bits : {4, 8}) {
    for (int bs : {32, 64, 128}) {
      MatMulNBitsWeight q = matmulnbits_quantize(w.data(), n, k, bits, bs);
      EXPECT_EQ(q.blocks(), (k + bs - 1) / bs);
      std::vector<float> row(k);
      for (int64_t r = 0; r < n; ++r) {
        matmulnbits_dequantize_row(q, r, row.data());
        for (int64_t c = 0; c < k; ++c) {
          const float scale = q.scales[r * q.blocks() + c / bs];
          EXPECT_LE(std::fabs(row[c] - w[r * k + c]), 0.5f * scale + 1e-6f) << bits << " " << bs;
        }
        if (r == 0) {
          EXPECT_EQ(row[7], 0.0f);
        }
      }
    }
  }
  EXPECT_THROW(matmulnbits_quantize(w.data(), n, k, 4, 48), Error);
  EXPECT_THROW(matmulnbits_quantize(w.data(), n, k, 3, 32), Error);
}

// ---- Export structure ----

TEST(OnnxExport, GraphNamesInputsOutputsAsGenaiExpects) {
  SKIP_WITHOUT_ONNX_MODULE();
  auto model = load_model(test::shared_path("models/stories260K/stories260K.bin"));
  TempDir dir;
  OnnxExportResult r = export_onnx(*model, dir.path.string(), {});
  // Parsed back and checked by onnx::checker::check_model.
  const OnnxModel m = onnx_read_checked(r.model_path);
  std::set<std::string> inputs, outputs, ops;
  for (const auto& v : m.inputs) inputs.insert(v.name);
  for (const auto& v : m.outputs) outputs.insert(v.name);
  for (const auto& n : m.nodes) ops.insert(n.op);
  const int layers = model->config.n_layer;
  EXPECT_EQ(inputs.size(), size_t(3 + 2 * layers));
  EXPECT_EQ(outputs.size(), size_t(1 + 2 * layers));
  for (const char* s : {"input_ids", "attention_mask", "position_ids", "past_key_values.0.key"})
    EXPECT_TRUE(inputs.count(s)) << s;
  EXPECT_TRUE(outputs.count("logits"));
  EXPECT_TRUE(outputs.count("present." + std::to_string(layers - 1) + ".value"));
  for (const char* s :
       {"GroupQueryAttention", "RotaryEmbedding", "SkipSimplifiedLayerNormalization", "MatMul"})
    EXPECT_TRUE(ops.count(s)) << s;
  EXPECT_FALSE(ops.count("MatMulNBits"));

  nlohmann::json cfg = nlohmann::json::parse(test::read_bytes(dir.file("genai_config.json")));
  EXPECT_EQ(cfg["model"]["decoder"]["num_hidden_layers"], layers);
  EXPECT_EQ(cfg["model"]["decoder"]["num_key_value_heads"], model->config.n_head_kv);
  EXPECT_EQ(cfg["model"]["decoder"]["inputs"]["past_key_names"], "past_key_values.%d.key");
  EXPECT_EQ(cfg["model"]["vocab_size"], model->config.n_vocab);
}

TEST(OnnxExport, ExternalDataAndQuantizedMatrices) {
  SKIP_WITHOUT_ONNX_MODULE();
  auto model = load_model(test::shared_path("models/stories260K/stories260K.bin"));
  TempDir dir;
  OnnxExportOptions o;
  o.external_data = true;
  QuantPlanOptions po;
  po.mix = *find_quant_mix("Q8_0");
  po.pure = true;
  o.plan = plan_quantization(*model, po);
  OnnxExportResult r = export_onnx(*model, dir.path.string(), o);
  ASSERT_FALSE(r.data_path.empty());
  EXPECT_TRUE(fs::exists(r.data_path));
  EXPECT_GT(fs::file_size(r.data_path), fs::file_size(r.model_path));
  EXPECT_EQ(r.requantized_matrices, 0);
  // Every quantized projection and the (tied) LM head; stories260K's ffn_down (172 columns)
  // falls back to F16 in the plan and stays a float MatMul.
  int quantized_linears = 0;
  for (size_t i = 0; i < o.plan.size(); ++i) {
    const TensorInfo& t = model->tensors()[i];
    if (t.shape.size() == 2 && is_quantized(o.plan[i].type) && &t != model->token_embd)
      quantized_linears++;
  }
  EXPECT_TRUE(r.quantized_embedding);  // GatherBlockQuantized of the Q8_0 token embedding
  EXPECT_EQ(r.exact_matrices, quantized_linears + 2);
  EXPECT_GT(quantized_linears, 4 * model->config.n_layer);
  const OnnxModel m = onnx_read_checked(r.model_path);
  EXPECT_EQ(m.data_file, "model.onnx.data");
  int external = 0, nbits = 0;
  for (const auto& t : m.initializers) {
    external += t.external;
    if (t.external) {
      EXPECT_LE(t.offset + t.length, fs::file_size(r.data_path)) << t.name;
    }
  }
  for (const auto& n : m.nodes) nbits += n.op == "MatMulNBits";
  EXPECT_GT(external, 0);
  EXPECT_EQ(nbits, r.exact_matrices - 1);  // all but the embedding are MatMulNBits
  // No temp files left behind.
  for (const auto& e : fs::directory_iterator(dir.path))
    EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << e.path();
}

TEST(OnnxExport, RejectsBadOptions) {
  SKIP_WITHOUT_ONNX_MODULE();
  auto model = load_model(test::shared_path("models/stories260K/stories260K.bin"));
  TempDir dir;
  OnnxExportOptions o;
  o.block_size = 48;
  EXPECT_THROW(export_onnx(*model, dir.path.string(), o), Error);
  o.block_size = 32;
  o.accuracy_level = 7;
  EXPECT_THROW(export_onnx(*model, dir.path.string(), o), Error);
  o.accuracy_level = 4;
  o.type = DType::Q4_0;  // quantized types need a plan
  EXPECT_THROW(export_onnx(*model, dir.path.string(), o), Error);
  EXPECT_FALSE(fs::exists(dir.file("model.onnx")));
}

TEST(OnnxExport, CheckerRejectsBrokenGraphs) {
  SKIP_WITHOUT_ONNX_MODULE();
  OnnxModel m;
  m.opsets = {{"", 17}};
  m.graph_name = "broken";
  m.inputs.push_back({"x", OnnxType::Float, {"2"}});
  m.outputs.push_back({"y", OnnxType::Float, {"2"}});
  m.nodes.push_back({"Relu", "", "relu", {"missing"}, {"y"}, {}});  // input never produced
  TempDir dir;
  EXPECT_THROW(onnx_serialize_checked(m, dir.path.string()), Error);
  m.nodes[0].inputs = {"x"};
  EXPECT_FALSE(onnx_serialize_checked(m, dir.path.string()).empty());
  m.nodes[0].op = "NoSuchOp";  // unknown op in the ONNX domain
  EXPECT_THROW(onnx_serialize_checked(m, dir.path.string()), Error);
  test::write_bytes(dir.file("junk.onnx"), "not a model");
  EXPECT_THROW(onnx_read_checked(dir.file("junk.onnx")), Error);
}

// The CLI: a quantized export writes the folder; a bad option is a one-line error, exit 1.
TEST(OnnxExport, CommandLine) {
  SKIP_WITHOUT_ONNX_MODULE();
  TempDir dir;
  const std::string model = test::shared_path("models/gcide-llama-16M");
  const std::string out = dir.file("q4");
  std::string cmd = test::squish_binary() + " export '" + model + "' --format onnx -o '" + out +
                    "' --type q4_0 --pure --block-size 32 --accuracy-level 4 2>&1";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  for (const char* f :
       {"model.onnx", "genai_config.json", "tokenizer.json", "tokenizer_config.json"})
    EXPECT_TRUE(fs::exists(fs::path(out) / f)) << f;
  const OnnxModel m = onnx_read_checked(out + "/model.onnx");
  int nbits = 0;
  for (const auto& n : m.nodes) {
    if (n.op != "MatMulNBits") continue;
    nbits++;
    for (const auto& a : n.attributes) {
      if (a.name == "accuracy_level" || a.name == "bits") {
        EXPECT_EQ(a.i, 4) << a.name;
      }
    }
  }
  EXPECT_EQ(nbits, 7 * 6 + 1);  // 6 layers of 7 projections, and the LM head

  cmd = test::squish_binary() + " export '" + model + "' --format onnx -o '" + dir.file("bad") +
        "' --type q4_0 --block-size 48 > '" + dir.file("err.txt") + "' 2>&1";
  EXPECT_NE(std::system(cmd.c_str()), 0);
  const std::string err = test::read_bytes(dir.file("err.txt"));
  EXPECT_NE(err.find("squish: error:"), std::string::npos) << err;
  EXPECT_NE(err.find("block size 48"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(dir.file("bad/model.onnx")));
}

// ---- ONNX Runtime against squish's runtime ----

std::string ort_modules() {
  const char* p = std::getenv("SQUISH_ORT_NODE_MODULES");
  return p != nullptr ? p : "";
}

void require_ort() {
  SKIP_WITHOUT_ONNX_MODULE();
  if (!ort_modules().empty() && fs::exists(fs::path(ort_modules()) / "onnxruntime-node")) return;
  if (std::getenv("SQUISH_REQUIRE_PEER")) FAIL() << "SQUISH_ORT_NODE_MODULES is not set up";
  GTEST_SKIP() << "onnxruntime-node not set up (scripts/test.sh installs it)";
}
// Helpers cannot end the test with GTEST_SKIP / FAIL: the test body returns here.
#define REQUIRE_ORT()                                                           \
  do {                                                                          \
    require_ort();                                                              \
    if (testing::Test::IsSkipped() || testing::Test::HasFatalFailure()) return; \
  } while (0)

const std::vector<int32_t> kTokens = {1, 45, 67, 89, 120, 33, 250, 7, 99, 150, 12, 200};

std::vector<float> ort_logits(const std::string& dir, int n_vocab) {
  std::string ids;
  for (int32_t t : kTokens) {
    if (!ids.empty()) ids += ',';
    ids += std::to_string(t);
  }
  const std::string out = dir + "/ort_logits.bin";
  const std::string cmd = "SQUISH_ORT_NODE_MODULES='" + ort_modules() + "' node '" +
                          std::string(SQUISH_TEST_DATA) + "/../../tools/onnxruntime/logits.js' '" +
                          dir + "' " + ids + " '" + out + "' --prefill 8 --threads 2";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const std::string bytes = test::read_bytes(out);
  std::vector<float> v(bytes.size() / sizeof(float));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
  EXPECT_EQ(v.size(), kTokens.size() * n_vocab);
  return v;
}

std::vector<float> squish_logits(const Model& model) {
  SessionOptions so;
  so.n_ctx = 64;
  so.n_threads = 2;
  Session s(model, so);
  std::vector<float> all, step;
  s.eval(kTokens.data(), 8, true, step);
  all = step;
  for (size_t i = 8; i < kTokens.size(); ++i) {
    s.eval(&kTokens[i], 1, true, step);
    all.insert(all.end(), step.begin(), step.end());
  }
  return all;
}

struct LogitsDiff {
  double worst_rel = 0;  // max over tokens of max|Δ| / max|logit|
  int top1_agree = 0;
};

LogitsDiff compare(const std::vector<float>& ref, const std::vector<float>& got, int n_vocab) {
  LogitsDiff d;
  const size_t tokens = ref.size() / n_vocab;
  for (size_t t = 0; t < tokens && got.size() == ref.size(); ++t) {
    double max_abs = 0, max_diff = 0;
    int a = 0, b = 0;
    for (int v = 0; v < n_vocab; ++v) {
      const float x = ref[t * n_vocab + v], y = got[t * n_vocab + v];
      max_abs = std::max(max_abs, double(std::fabs(x)));
      max_diff = std::max(max_diff, double(std::fabs(x - y)));
      if (x > ref[t * n_vocab + a]) a = v;
      if (y > got[t * n_vocab + b]) b = v;
    }
    d.worst_rel = std::max(d.worst_rel, max_diff / max_abs);
    d.top1_agree += a == b;
  }
  return d;
}

// Exports `model` with `o`, runs it in ONNX Runtime and compares with squish on `reference`.
LogitsDiff ort_vs_squish(const Model& model, const OnnxExportOptions& o, const Model& reference) {
  TempDir dir;
  export_onnx(model, dir.path.string(), o);
  const int n_vocab = model.config.n_vocab;
  const LogitsDiff d =
      compare(squish_logits(reference), ort_logits(dir.path.string(), n_vocab), n_vocab);
  std::printf("    %s: max|d|/max|logit| %.3g, top-1 agree %d/%zu\n", model.path.c_str(),
              d.worst_rel, d.top1_agree, kTokens.size());
  return d;
}

// F32: the same float weights in both runtimes.
void expect_float32_match(const char* rel) {
  REQUIRE_ORT();
  auto model = load_model(test::shared_path(rel));
  const LogitsDiff d = ort_vs_squish(*model, {}, *model);
  EXPECT_LE(d.worst_rel, 1e-4) << rel;
  EXPECT_EQ(d.top1_agree, int(kTokens.size())) << rel;
}

TEST(OnnxRuntimeLogits, Float32Stories260K) {
  expect_float32_match("models/stories260K/stories260K.bin");
}
TEST(OnnxRuntimeLogits, Float32Llama16M) {
  expect_float32_match("models/gcide-llama-16M");
}
TEST(OnnxRuntimeLogits, Float32Qwen2WithBias) {
  expect_float32_match("models/gcide-qwen2-28M");
}

TEST(OnnxRuntimeLogits, Float16WithExternalData) {
  REQUIRE_ORT();
  auto model = load_model(test::shared_path("models/gcide-llama-16M"));
  TempDir dir;
  // The reference runs on the same half-precision weights, written as an F16 GGUF.
  GGUFExportOptions go;
  go.type = DType::F16;
  export_gguf(*model, dir.file("f16.gguf"), go);
  auto f16 = load_model(dir.file("f16.gguf"));
  OnnxExportOptions o;
  o.type = DType::F16;
  o.external_data = true;
  const LogitsDiff d = ort_vs_squish(*model, o, *f16);
  EXPECT_LE(d.worst_rel, 1e-4);
  EXPECT_EQ(d.top1_agree, int(kTokens.size()));
}

// A quantized GGUF exported as is (every matrix block for block). References: squish on an F32
// GGUF of the dequantized weights (the exact same weights, float math: accuracy_level 0 must
// match like F32), and squish on the quantized GGUF itself, which rounds activations to Q8 blocks
// as ONNX Runtime's accuracy_level 4 rounds them to int8: those two differ by activation rounding.
void expect_quantized_match(const char* rel, const char* mix, double tolerance_int8) {
  REQUIRE_ORT();
  auto model = load_model(test::shared_path(rel));
  TempDir dir;
  GGUFExportOptions go;
  QuantPlanOptions po;
  po.mix = *find_quant_mix(mix);
  po.pure = true;
  go.plan = plan_quantization(*model, po);
  export_gguf(*model, dir.file("q.gguf"), go);
  auto q = load_model(dir.file("q.gguf"));
  GGUFExportOptions fo;
  fo.type = DType::F32;
  export_gguf(*q, dir.file("dequantized.gguf"), fo);
  auto dequantized = load_model(dir.file("dequantized.gguf"));

  OnnxExportOptions o;
  for (const TensorInfo& t : q->tensors()) o.plan.push_back({t.name, t.type, ""});
  o.accuracy_level = 0;  // the embedding is GatherBlockQuantized of the same blocks
  const LogitsDiff exact = ort_vs_squish(*q, o, *dequantized);
  EXPECT_LE(exact.worst_rel, 1e-4) << rel << " " << mix;
  EXPECT_EQ(exact.top1_agree, int(kTokens.size())) << rel << " " << mix;

  o.accuracy_level = 4;
  const LogitsDiff int8 = ort_vs_squish(*q, o, *q);
  EXPECT_LE(int8.worst_rel, tolerance_int8) << rel << " " << mix;
  EXPECT_GE(int8.top1_agree, int(kTokens.size()) - 1) << rel << " " << mix;
}

TEST(OnnxRuntimeLogits, Q4_0Llama16M) {
  expect_quantized_match("models/gcide-llama-16M", "Q4_0", 5e-2);
}
// Q8_0 on the Llama model too: the Qwen2 graph (biases) is covered in F32; keeps CI short.
TEST(OnnxRuntimeLogits, Q8_0Llama16M) {
  expect_quantized_match("models/gcide-llama-16M", "Q8_0", 5e-2);
}

// Requantized path (block size 128 from float weights): ONNX Runtime runs it and it stays close
// to the float model (no bit-exact reference exists in squish for this layout).
TEST(OnnxRuntimeLogits, Block128RequantizedStaysClose) {
  REQUIRE_ORT();
  auto model = load_model(test::shared_path("models/gcide-llama-16M"));
  OnnxExportOptions o;
  QuantPlanOptions po;
  po.mix = *find_quant_mix("Q8_0");
  po.pure = true;
  o.plan = plan_quantization(*model, po);
  o.block_size = 128;
  const LogitsDiff d = ort_vs_squish(*model, o, *model);
  EXPECT_LE(d.worst_rel, 5e-2);
  EXPECT_GE(d.top1_agree, int(kTokens.size()) - 1);
}

}  // namespace
}  // namespace squish
