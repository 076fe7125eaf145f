// Interop with the reference peer: GGUF files written by squish, in every quantized type, are
// loaded by llama.cpp (prebuilt libllama from npm, driven by tests/interop/llama_logits), and
// llama.cpp's logits on the file match squish's own logits on the same file.
// Set up by scripts/test.sh (SQUISH_LLAMA_LOGITS, SQUISH_GGML_BACKEND_DIR); required in CI.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cmath>
#include <cstdlib>
#include <fstream>

#include "export/gguf_export.h"
#include "model/model.h"
#include "quant/mix.h"
#include "quant/quant.h"
#include "runtime/session.h"
#include "test_util.h"

namespace squish {
namespace {

void require_peer() {
  if (!test::llama_peer().empty()) return;
  if (std::getenv("SQUISH_REQUIRE_PEER"))
    FAIL() << "SQUISH_LLAMA_LOGITS is not set (llama.cpp peer missing)";
  GTEST_SKIP() << "llama.cpp peer not set up (run scripts/test.sh)";
}

struct Agreement {
  double rel_err = 0;  // max |Δ| / max |logit|
  double top1 = 0;     // fraction of positions with the same argmax
};

Agreement compare(const std::vector<float>& a, const std::vector<float>& b, int vocab) {
  Agreement r;
  double max_d = 0, max_ref = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    max_d = std::max(max_d, std::fabs(static_cast<double>(a[i]) - b[i]));
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(b[i])));
  }
  r.rel_err = max_d / max_ref;
  const size_t n = b.size() / vocab;
  int same = 0;
  for (size_t t = 0; t < n; ++t) {
    auto ia = std::max_element(a.begin() + t * vocab, a.begin() + (t + 1) * vocab) -
              (a.begin() + t * vocab);
    auto ib = std::max_element(b.begin() + t * vocab, b.begin() + (t + 1) * vocab) -
              (b.begin() + t * vocab);
    same += ia == ib;
  }
  r.top1 = static_cast<double>(same) / n;
  return r;
}

class QuantInterop : public testing::TestWithParam<std::string> {};

TEST_P(QuantInterop, LlamaCppLoadsAndAgrees) {
  require_peer();
  if (testing::Test::IsSkipped() || testing::Test::HasFailure()) return;
  const DType type = *parse_dtype(GetParam());
  // Qwen2-28M: hidden 512 takes 256-wide super-blocks; ffn_down (1408 columns) falls back.
  auto model = load_model(test::shared_path("models/gcide-qwen2-28M"));
  QuantPlanOptions po;
  po.mix = QuantMix{dtype_name(type), type, 0};
  po.pure = true;
  test::TempDir tmp;
  GGUFExportOptions eo;
  eo.plan = plan_quantization(*model, po);
  int n_typed = 0;
  for (const TensorPlan& p : eo.plan) n_typed += p.type == type;
  EXPECT_GE(n_typed, 30) << "most matrices should use " << GetParam();
  const std::string gguf = tmp.file("m.gguf");
  export_gguf(*model, gguf, eo);

  std::vector<int32_t> tokens;
  for (int i = 0; i < 32; ++i) tokens.push_back((i * 977 + 13) % 8192);
  const std::vector<float> ref = test::llama_cpp_logits(gguf, tokens, tmp.file("logits.bin"));
  auto quantized = load_model(gguf);
  SessionOptions so;
  so.n_ctx = 64;
  Session s(*quantized, so);
  std::vector<float> ours;
  s.eval(tokens.data(), static_cast<int>(tokens.size()), true, ours);
  ASSERT_EQ(ref.size(), ours.size());
  const int vocab = quantized->config.n_vocab;
  const Agreement a = compare(ours, ref, vocab);
  // Position 0 sees identical inputs in both runtimes (its attention is V0 itself); it usually
  // agrees to ~1e-7, and differs only where a float summation order differs from ggml's.
  const Agreement first = compare(std::vector<float>(ours.begin(), ours.begin() + vocab),
                                  std::vector<float>(ref.begin(), ref.begin() + vocab), vocab);
  std::printf(
      "%s: squish vs llama.cpp on the same file: position 0 %.2e, all positions %.2e, "
      "top-1 agreement %.3f\n",
      GetParam().c_str(), first.rel_err, a.rel_err, a.top1);
  EXPECT_LE(first.rel_err, 4e-2);
  // Float-rounding differences of ~1e-7 (summation order, softmax) are amplified by activation
  // quantization: a 1-ulp change flips an int8 rounding now and then, so the runtimes drift apart
  // by about the quantization error itself (measured 1-2e-2 of the logit range for every type,
  // the same size as each runtime's distance from the F32 model). A wrong block layout gives
  // errors of order 1 and random top-1 tokens.
  EXPECT_LE(a.rel_err, 4e-2);
  EXPECT_GE(a.top1, 0.9);
}

INSTANTIATE_TEST_SUITE_P(AllTypes, QuantInterop,
                         testing::Values("Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL", "Q2_K",
                                         "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_XS"));

}  // namespace
}  // namespace squish
