// W8A8 (per-row int8 weights x per-token int8 activations) and SmoothQuant: the kernels against
// the scalar reference, the smoothing fold against the float model, a quantized model against the
// float one, llama.cpp on the file, and the CLI's one-line errors.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>

#include "calib/block_runner.h"
#include "calib/smoothquant.h"
#include "export/gguf_export.h"
#include "formats/gguf.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/w8a8.h"
#include "quant/blocks.h"
#include "runtime/session.h"
#include "test_util.h"

namespace squish {
namespace {

struct RowMatrix {  // per-row Q8_0 blocks and their W8A8 unpacking
  std::vector<block_q8_0> blocks;
  std::vector<float> deq;
  TensorInfo info;
  W8A8Weights weights;
  const W8A8Matrix* m = nullptr;
};

void make_matrix(RowMatrix& rm, int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  rm.blocks.resize(rows * cols / QK8_0);
  rm.deq.resize(rows * cols);
  std::vector<float> row(cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (float& v : row) v = nd(rng) * (1.0f + r % 5);
    w8a8_quantize_row(row.data(), cols, rm.blocks.data() + r * cols / QK8_0,
                      rm.deq.data() + r * cols);
  }
  rm.info.name = "w";
  rm.info.type = DType::Q8_0;
  rm.info.shape = {rows, cols};
  rm.info.data = rm.blocks.data();
  rm.info.nbytes = rm.blocks.size() * sizeof(block_q8_0);
  ASSERT_TRUE(rm.weights.add(rm.info));
  rm.m = rm.weights.find(rm.blocks.data());
  ASSERT_NE(rm.m, nullptr);
}

std::vector<float> random_activations(int64_t n, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(n * cols);
  for (size_t i = 0; i < x.size(); ++i) x[i] = nd(rng) * (i % 37 == 0 ? 30.0f : 1.0f);  // outliers
  return x;
}

// Every kernel computes the same exact int32 sums and the same final multiply: outputs are
// bitwise equal to the reference (tolerance 0), for tile edges in rows, tokens and columns.
TEST(W8A8, KernelsMatchTheReferenceExactly) {
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2");
  const bool vnni = __builtin_cpu_supports("avx512vnni");
  for (int64_t cols : {32, 96, 384, 1056}) {
    for (int64_t rows : {1, 5, 37}) {
      RowMatrix rm;
      make_matrix(rm, rows, cols, static_cast<uint32_t>(rows * 1000 + cols));
      for (int64_t n : {1, 3, 4, 9}) {
        const std::vector<float> x = random_activations(n, cols, static_cast<uint32_t>(n + cols));
        std::vector<uint8_t> scratch(w8a8_activation_bytes(n, cols));
        const W8A8Activations act = w8a8_bind_activations(scratch.data(), n, cols);
        w8a8_quantize_tokens(x.data(), 0, n, act);
        std::vector<float> ref(n * rows), y(n * rows);
        w8a8_rows_reference(*rm.m, 0, rows, act, ref.data(), rows);
        if (vnni) {
          std::fill(y.begin(), y.end(), NAN);
          kernels::w8a8_rows_avx512(*rm.m, 0, rows, act, y.data(), rows);
          for (size_t i = 0; i < y.size(); ++i) ASSERT_EQ(y[i], ref[i]) << "avx512 " << i;
        }
        if (avx2) {
          std::fill(y.begin(), y.end(), NAN);
          kernels::w8a8_rows_avx2(*rm.m, 0, rows, act, y.data(), rows);
          for (size_t i = 0; i < y.size(); ++i) ASSERT_EQ(y[i], ref[i]) << "avx2 " << i;
        }
        // The reference itself against the float product of the dequantized operands (the
        // only difference: float rounding of the final multiply and of the float sum).
        std::vector<float> xq(n * cols);
        w8a8_fake_quantize_tokens(x.data(), n, cols, xq.data());
        double max_d = 0, max_y = 0;
        for (int64_t t = 0; t < n; ++t) {
          for (int64_t r = 0; r < rows; ++r) {
            double s = 0;
            for (int64_t i = 0; i < cols; ++i)
              s += static_cast<double>(xq[t * cols + i]) * rm.deq[r * cols + i];
            max_d = std::max(max_d, std::fabs(s - ref[t * rows + r]));
            max_y = std::max(max_y, std::fabs(s));
          }
        }
        EXPECT_LE(max_d, 1e-5 * max_y + 1e-6) << rows << "x" << cols << " n=" << n;
      }
    }
  }
}

// The team entry point (inside a parallel region, several targets) equals the reference.
TEST(W8A8, TeamProductMatchesTheReference) {
  const int64_t cols = 256, n = 7;
  RowMatrix a, b;
  make_matrix(a, 40, cols, 1);
  make_matrix(b, 17, cols, 2);
  const std::vector<float> x = random_activations(n, cols, 3);
  std::vector<uint8_t> scratch(w8a8_activation_bytes(n, cols));
  std::vector<float> ya(n * 40), yb(n * 17), ra(n * 40), rb(n * 17);
  const W8A8Matrix* mats[2] = {a.m, b.m};
  float* ys[2] = {ya.data(), yb.data()};
  const int64_t ldys[2] = {40, 17};
#pragma omp parallel num_threads(2)
  w8a8_team(x.data(), n, cols, mats, ys, ldys, 2, scratch.data());
  std::vector<uint8_t> s2(w8a8_activation_bytes(n, cols));
  const W8A8Activations act = w8a8_bind_activations(s2.data(), n, cols);
  w8a8_quantize_tokens(x.data(), 0, n, act);
  w8a8_rows_reference(*a.m, 0, 40, act, ra.data(), 40);
  w8a8_rows_reference(*b.m, 0, 17, act, rb.data(), 17);
  EXPECT_EQ(ya, ra);
  EXPECT_EQ(yb, rb);
}

// Only Q8_0 matrices whose rows share one d become W8A8; ordinary Q8_0 blocks do not.
TEST(W8A8, OnlyPerRowScalesQualify) {
  RowMatrix rm;
  make_matrix(rm, 4, 64, 9);
  EXPECT_TRUE(q8_0_rows_share_scale(rm.blocks.data(), 4, 64));
  rm.blocks[1].d ^= 1;  // one block of row 0 with its own scale
  EXPECT_FALSE(q8_0_rows_share_scale(rm.blocks.data(), 4, 64));
  W8A8Weights w;
  TensorInfo t = rm.info;
  EXPECT_FALSE(w.add(t));
  t.type = DType::F32;
  EXPECT_FALSE(w.add(t));
  EXPECT_TRUE(w.empty());
}

CalibrationWindows token_windows(int n_ctx, int n_win, int vocab) {
  CalibrationWindows w;
  w.n_ctx = n_ctx;
  for (int i = 0; i < n_ctx * n_win; ++i) w.tokens.push_back((i * 97 + 3) % vocab);
  return w;
}

// The fold (before quantization) leaves the float model's function unchanged: every block's
// output with the smoothed weights equals the original's to float rounding (~1e-5 relative),
// and so do the logits through the rescaled final norm.
TEST(SmoothQuant, FoldPreservesFloatOutputs) {
  auto model = load_model(test::shared_path("models/stories260K/stories260K.bin"));
  const ModelConfig& c = model->config;
  const CalibrationWindows windows = token_windows(32, 2, c.n_vocab);
  SmoothQuantOptions o;
  o.alpha = 0.5;  // fixed: every group is smoothed (a search may keep some unsmoothed)
  o.search_tokens = 32;
  o.n_threads = 1;
  std::map<std::string, std::vector<float>> smoothed;
  const std::vector<SmoothGroupStats> groups = smooth_model(
      *model, windows, o,
      [&](const TensorInfo& t, std::vector<float>&& v) { smoothed[t.name] = std::move(v); });
  // V->O, up->down, attn norm, FFN norm per layer (stories260K ties no output: + final norm).
  ASSERT_GE(groups.size(), static_cast<size_t>(4 * c.n_layer));
  for (const SmoothGroupStats& g : groups) EXPECT_TRUE(g.smoothed) << g.name;
  // Scales really moved the weights (not all ones).
  const std::vector<float>& g0 = smoothed.at("blk.0.attn_norm.weight");
  const float* g0_orig = static_cast<const float*>(model->layers[0].attn_norm->data);
  double moved = 0;
  for (int i = 0; i < c.n_embd; ++i) moved = std::max(moved, std::fabs(g0[i] / g0_orig[i] - 1.0));
  EXPECT_GT(moved, 0.1);

  const int n = windows.n_ctx;
  BlockRunner ra(c, n), rb(c, n);
  std::vector<float> xa(static_cast<size_t>(n) * c.n_embd), xb;
  for (int t = 0; t < n; ++t) {
    convert_row_to_f32(model->token_embd->type,
                       static_cast<const uint8_t*>(model->token_embd->data) +
                           windows.tokens[t] * row_bytes(model->token_embd->type, c.n_embd),
                       xa.data() + t * c.n_embd, c.n_embd);
  }
  for (int l = 0; l < c.n_layer; ++l) {
    const LayerWeights& L = model->layers[l];
    BlockWeights orig = BlockWeights::of(L), sm = BlockWeights::of(L);
    const std::string blk = "blk." + std::to_string(l) + ".";
    sm.attn_norm = smoothed.at(blk + "attn_norm.weight").data();
    sm.ffn_norm = smoothed.at(blk + "ffn_norm.weight").data();
    for (auto [slot, name] : {std::pair{&sm.wq, "attn_q"},
                              {&sm.wk, "attn_k"},
                              {&sm.wv, "attn_v"},
                              {&sm.wo, "attn_output"},
                              {&sm.w_gate, "ffn_gate"},
                              {&sm.w_up, "ffn_up"},
                              {&sm.w_down, "ffn_down"}}) {
      BlockWeights::set_dense(*slot, smoothed.at(blk + name + ".weight").data());
    }
    xb = xa;
    ra.forward(orig, xa.data());
    rb.forward(sm, xb.data());
    double max_d = 0, max_x = 0;
    for (size_t i = 0; i < xa.size(); ++i) {
      max_d = std::max(max_d, std::fabs(static_cast<double>(xa[i]) - xb[i]));
      max_x = std::max(max_x, std::fabs(static_cast<double>(xa[i])));
    }
    EXPECT_LE(max_d, 1e-5 * max_x) << "layer " << l;
  }
  if (model->output != model->token_embd) {
    const std::vector<float>& g = smoothed.at("output_norm.weight");
    const std::vector<float>& w = smoothed.at("output.weight");
    std::vector<float> xn(c.n_embd), la(c.n_vocab), lb(c.n_vocab);
    rms_norm(xa.data(), static_cast<const float*>(model->output_norm->data), c.n_embd, c.norm_eps,
             xn.data());
    matmul_reference(xn.data(), 1, model->output->data, model->output->type, c.n_vocab, c.n_embd,
                     la.data(), c.n_vocab);
    rms_norm(xa.data(), g.data(), c.n_embd, c.norm_eps, xn.data());
    matmul_reference(xn.data(), 1, w.data(), DType::F32, c.n_vocab, c.n_embd, lb.data(), c.n_vocab);
    double max_d = 0, max_l = 0;
    for (int i = 0; i < c.n_vocab; ++i) {
      max_d = std::max(max_d, std::fabs(static_cast<double>(la[i]) - lb[i]));
      max_l = std::max(max_l, std::fabs(static_cast<double>(la[i])));
    }
    EXPECT_LE(max_d, 1e-5 * max_l);
  }
}

struct Logits {
  std::vector<float> values;
  int vocab = 0;
};

Logits run_logits(const std::string& path, const std::vector<int32_t>& tokens, int w8a8,
                  size_t* w8a8_matrices = nullptr) {
  auto m = load_model(path);
  SessionOptions so;
  so.n_ctx = 128;
  so.w8a8 = w8a8;
  so.pack_weights = false;  // packing for the GEMM costs more than these few tokens save
  so.n_threads = 1;         // a few tokens: barriers would cost more than a second thread saves
  Session s(*m, so);
  if (w8a8_matrices) *w8a8_matrices = s.w8a8_matrices();
  Logits l;
  l.vocab = m->config.n_vocab;
  s.eval(tokens.data(), static_cast<int>(tokens.size()), true, l.values);
  return l;
}

// Relative RMS difference and share of positions with the same top token.
std::pair<double, double> compare(const Logits& a, const Logits& b) {
  double d2 = 0, r2 = 0;
  for (size_t i = 0; i < a.values.size(); ++i) {
    const double d = static_cast<double>(a.values[i]) - b.values[i];
    d2 += d * d, r2 += static_cast<double>(b.values[i]) * b.values[i];
  }
  const size_t n = a.values.size() / a.vocab;
  int same = 0;
  for (size_t p = 0; p < n; ++p) {
    const float* x = a.values.data() + p * a.vocab;
    const float* y = b.values.data() + p * b.vocab;
    same += std::max_element(x, x + a.vocab) - x == std::max_element(y, y + b.vocab) - y;
  }
  return {std::sqrt(d2 / r2), static_cast<double>(same) / n};
}

// quantize -> GGUF -> load -> logits: the file is marked W8A8, every matrix runs as W8A8, and the
// logits stay close to the float model's (both with SmoothQuant and plain RTN).
TEST(SmoothQuant, QuantizedModelTracksTheFloatModel) {
  const std::string src = test::shared_path("models/gcide-llama-16M");
  auto model = load_model(src);
  std::vector<int32_t> tokens;
  for (int i = 0; i < 32; ++i) tokens.push_back((i * 131 + 17) % model->config.n_vocab);
  test::TempDir dir;
  const Logits ref = run_logits(src, tokens, 0);
  for (bool smooth : {true, false}) {
    SmoothQuantOptions o;
    o.smooth = smooth;
    o.search_tokens = 32;
    o.grid = 2;  // alpha 0.5 or none
    o.n_threads = 1;
    const W8A8Result r = quantize_w8a8(*model, token_windows(64, 1, model->config.n_vocab), o);
    GGUFExportOptions eo;
    eo.plan = r.plan;
    eo.extra_metadata.push_back({"squish.w8a8", GGUFValue::boolean(true)});
    eo.prequantized = [&](const TensorInfo& t, DType) { return r.tensors->get(t.name); };
    const std::string gguf = dir.file(smooth ? "sq.gguf" : "rtn.gguf");
    export_gguf(*model, gguf, eo);
    EXPECT_EQ(GGUFFile::open(gguf)->get_bool("squish.w8a8"), std::optional<bool>(true));
    size_t n_w8a8 = 0;
    const Logits q = run_logits(gguf, tokens, -1, &n_w8a8);
    EXPECT_EQ(n_w8a8, 6u * 7 + 1);  // every layer matrix and the output
    const auto [rel, same] = compare(q, ref);
    EXPECT_LE(rel, 0.05) << (smooth ? "smoothquant" : "rtn");
    EXPECT_GE(same, 0.9);
    if (!smooth) continue;
    // The same file with per-block activations (as llama.cpp runs it) differs a little: the
    // per-token path was really taken.
    const Logits blk = run_logits(gguf, tokens, 0);
    const auto [rel_blk, same_blk] = compare(blk, ref);
    EXPECT_LE(rel_blk, 0.05);
    EXPECT_GE(same_blk, 0.9);
    EXPECT_NE(blk.values, q.values);
  }
}

// llama.cpp loads the W8A8 file as Q8_0 and agrees with squish run with per-block activations.
TEST(SmoothQuant, LlamaCppLoadsTheFile) {
  if (test::llama_peer().empty()) {
    if (std::getenv("SQUISH_REQUIRE_PEER")) FAIL() << "SQUISH_LLAMA_LOGITS is not set";
    GTEST_SKIP() << "llama.cpp peer not set up (run scripts/test.sh)";
  }
  const std::string src = test::shared_path("models/gcide-llama-16M");
  auto model = load_model(src);
  SmoothQuantOptions o;
  o.search_tokens = 64;
  o.grid = 4;
  const W8A8Result r = quantize_w8a8(*model, token_windows(64, 2, model->config.n_vocab), o);
  GGUFExportOptions eo;
  eo.plan = r.plan;
  eo.extra_metadata.push_back({"squish.w8a8", GGUFValue::boolean(true)});
  eo.prequantized = [&](const TensorInfo& t, DType) { return r.tensors->get(t.name); };
  test::TempDir dir;
  const std::string gguf = dir.file("sq.gguf");
  export_gguf(*model, gguf, eo);
  std::vector<int32_t> tokens;
  for (int i = 0; i < 32; ++i) tokens.push_back((i * 131 + 17) % model->config.n_vocab);
  Logits l;
  l.vocab = model->config.n_vocab;
  l.values = test::llama_cpp_logits(gguf, tokens, dir.file("l.bin"));
  const Logits ours = run_logits(gguf, tokens, 0);
  ASSERT_EQ(l.values.size(), ours.values.size());
  const auto [rel, same] = compare(ours, l);
  EXPECT_LE(rel, 0.02);
  EXPECT_GE(same, 0.9);
}

using test::CmdResult;
using test::run_squish;

void expect_clean_failure(const CmdResult& r, const std::string& needle) {
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find("squish: error: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << "expected '" << needle << "' in: " << r.err;
}

TEST(SmoothQuant, CliErrors) {
  test::TempDir dir;
  const std::string llama = test::shared_path("models/gcide-llama-16M");
  const std::string stories = test::shared_path("models/stories260K/stories260K.bin");
  const std::string calib = test::shared_path("data/gcide-calib.txt");
  const std::string out = " -o " + dir.file("o.gguf");
  expect_clean_failure(
      run_squish("quantize " + llama + out + " --type w8a8 --method gptq --calib " + calib),
      "--type w8a8 takes --method smoothquant or rtn");
  expect_clean_failure(run_squish("quantize " + llama + out + " --type w8a8 --method smoothquant"),
                       "--method smoothquant needs calibration text");
  expect_clean_failure(
      run_squish("quantize " + llama + out + " --type w8a8 --method smoothquant --calib " + calib +
                 " --alpha 1.5"),
      "--alpha '1.5'");
  expect_clean_failure(
      run_squish("quantize " + llama + out + " --type w8a8 --method rtn --alpha 0.5"),
      "--alpha is for --method smoothquant");
  expect_clean_failure(
      run_squish("quantize " + llama + out + " --type Q4_K_M --method smoothquant"),
      "--method smoothquant is for --type w8a8");
  expect_clean_failure(run_squish("quantize " + llama + out + " --type w8a8 --imatrix x.dat"),
                       "--type w8a8 writes every matrix as per-row int8");
  expect_clean_failure(
      run_squish("quantize " + llama + out + " --type w8a8 --method smoothquant --calib " +
                 dir.file("missing.txt")),
      "missing.txt");
  // stories260K's FFN is 172 wide: no Q8_0 rows.
  expect_clean_failure(run_squish("quantize " + stories + out + " --type w8a8 --method rtn"),
                       "not a multiple of 32");
  EXPECT_FALSE(std::filesystem::exists(dir.file("o.gguf")));
}

}  // namespace
}  // namespace squish
