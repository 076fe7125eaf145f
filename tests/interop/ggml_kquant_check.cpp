// Checks squish's k-quants (Q2_K..Q6_K, IQ4_XS, Q8_K activations) against llama.cpp's ggml:
//  (a) ggml's to_float of squish's blocks equals squish's dequantize bit for bit, and squish's
//      dequantize of ggml's blocks equals ggml's to_float (so GGUF files read and write exactly);
//  (b) squish's Q8_K activations equal ggml's byte for byte, and the dot products agree;
//  (c) the quantization error of squish next to ggml's (ggml_quantize_chunk, with and without an
//      importance matrix) on the same inputs, and the quantization speed of both.
// With an output folder it also writes the goldens that tests/kquant_test.cpp checks.
//
// Build and run (from the repo root, after `ninja -C BUILD squish_lib` in a build folder BUILD):
//   LLAMA=/tmp/llama.cpp BUILD=build-qk
//   g++ -std=c++20 -O2 -Isrc -I$LLAMA/ggml/include tests/interop/ggml_kquant_check.cpp
//       $BUILD/libsquish_lib.a -L$LLAMA/build/bin -lggml-base -lggml-cpu
//       -Wl,-rpath,$LLAMA/build/bin -lfmt -fopenmp -o /tmp/ggml_kquant_check
//   /tmp/ggml_kquant_check tests/data/ggml_kquant    (the folder argument rewrites the goldens)
// (one command line; llama.cpp built as tools/llama_cpp/build.sh does, any recent version).
// Exit status 0 when every bit-exactness check passes.
#include <ggml-cpu.h>
#include <ggml.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "quant/quant.h"

namespace {

using squish::DType;

struct TypePair {
  DType squish;
  ggml_type ggml;
  const char* name;
};
const TypePair kTypes[] = {
    {DType::Q2_K, GGML_TYPE_Q2_K, "q2_K"}, {DType::Q3_K, GGML_TYPE_Q3_K, "q3_K"},
    {DType::Q4_K, GGML_TYPE_Q4_K, "q4_K"}, {DType::Q5_K, GGML_TYPE_Q5_K, "q5_K"},
    {DType::Q6_K, GGML_TYPE_Q6_K, "q6_K"}, {DType::IQ4_XS, GGML_TYPE_IQ4_XS, "iq4_xs"},
};

// Deterministic normal samples (Box-Muller on mt19937, which the standard fully specifies).
struct Normal {
  std::mt19937 rng;
  explicit Normal(uint32_t seed) : rng(seed) {}
  float operator()() {
    const double u1 = (rng() + 1.0) / 4294967297.0, u2 = rng() / 4294967296.0;
    return static_cast<float>(std::sqrt(-2 * std::log(u1)) * std::cos(6.283185307179586 * u2));
  }
};

struct Dataset {
  std::string name;
  int64_t rows, cols;
  std::vector<float> x;
  std::vector<float> importance;  // per column, empty for none
};

std::vector<Dataset> make_datasets() {
  std::vector<Dataset> sets;
  {  // test-quantize-fns' data: 0.1 + 2 cos(i), 4096 values
    Dataset d{"ggml-test", 1, 4096, {}, {}};
    for (int i = 0; i < 4096; ++i) d.x.push_back(0.1f + 2.0f * std::cos(static_cast<float>(i)));
    sets.push_back(d);
  }
  Normal normal(1234);
  {
    Dataset d{"gaussian", 32, 4096, {}, {}};
    for (int64_t i = 0; i < d.rows * d.cols; ++i) d.x.push_back(normal());
    sets.push_back(d);
  }
  {  // weight-like: gaussian with 0.5% outliers at 12 sigma
    Dataset d{"outliers", 32, 4096, {}, {}};
    for (int64_t i = 0; i < d.rows * d.cols; ++i) {
      const float v = normal();
      d.x.push_back((d.x.size() * 2654435761u) % 200 == 0 ? 12 * v : v);
    }
    sets.push_back(d);
  }
  {  // with an importance matrix: log-normal per-column activation energy
    Dataset d{"imatrix", 32, 4096, {}, {}};
    for (int64_t i = 0; i < d.rows * d.cols; ++i) d.x.push_back(normal());
    for (int64_t c = 0; c < d.cols; ++c) d.importance.push_back(std::exp(1.5f * normal()));
    sets.push_back(d);
  }
  return sets;
}

// The golden input: 4 super-blocks of different character (see the README in the data folder).
std::vector<float> golden_input() {
  std::vector<float> x(4 * 256);
  Normal normal(42);
  for (int i = 0; i < 256; ++i) x[i] = 0.1f + 2.0f * std::cos(static_cast<float>(i) + 0.5f);
  for (int i = 256; i < 512; ++i) x[i] = normal();
  for (int i = 512; i < 768; ++i) x[i] = (i % 37 == 0 ? 10.0f : 1.0f) * normal();
  for (int i = 768; i < 1024; ++i) x[i] = i < 800 ? 0.0f : 1e-3f * normal();  // a zero sub-block
  return x;
}

bool write_file(const std::string& path, const void* data, size_t bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
  return static_cast<bool>(f);
}

double weighted_sq_error(const Dataset& d, const std::vector<float>& y) {
  double s = 0;
  for (int64_t r = 0; r < d.rows; ++r) {
    for (int64_t c = 0; c < d.cols; ++c) {
      const double diff = d.x[r * d.cols + c] - y[r * d.cols + c];
      s += (d.importance.empty() ? 1.0 : d.importance[c]) * diff * diff;
    }
  }
  return s;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  ggml_cpu_init();
  int failures = 0;
  const std::vector<Dataset> sets = make_datasets();

  std::printf("== quantization error: squish vs ggml (ggml_quantize_chunk) ==\n");
  std::printf("%-7s %-10s %12s %12s %7s %10s %10s\n", "type", "data", "squish", "ggml", "ratio",
              "sq Mel/s", "ggml Mel/s");
  for (const TypePair& t : kTypes) {
    const squish::QuantTraits& qt = *squish::quant_traits(t.squish);
    const auto* gt = ggml_get_type_traits(t.ggml);
    for (const Dataset& d : sets) {
      const int64_t n = d.rows * d.cols;
      const size_t row = squish::row_bytes(t.squish, d.cols);
      std::vector<uint8_t> qs(row * d.rows), qg(row * d.rows);
      auto t0 = std::chrono::steady_clock::now();
      for (int64_t r = 0; r < d.rows; ++r) {
        qt.quantize(d.x.data() + r * d.cols, qs.data() + r * row, d.cols,
                    d.importance.empty() ? nullptr : d.importance.data());
      }
      const double ts = seconds_since(t0);
      t0 = std::chrono::steady_clock::now();
      ggml_quantize_chunk(t.ggml, d.x.data(), qg.data(), 0, d.rows, d.cols,
                          d.importance.empty() ? nullptr : d.importance.data());
      const double tg = seconds_since(t0);

      std::vector<float> ys(n), yg(n), tmp(n);
      qt.dequantize(qs.data(), ys.data(), n);
      gt->to_float(qg.data(), yg.data(), n);
      // (a) both directions of dequantization must agree bit for bit
      gt->to_float(qs.data(), tmp.data(), n);
      if (std::memcmp(tmp.data(), ys.data(), n * sizeof(float)) != 0) {
        std::printf("FAIL %s %s: ggml's to_float of squish's blocks differs\n", t.name,
                    d.name.c_str());
        ++failures;
      }
      qt.dequantize(qg.data(), tmp.data(), n);
      if (std::memcmp(tmp.data(), yg.data(), n * sizeof(float)) != 0) {
        std::printf("FAIL %s %s: squish's dequantize of ggml's blocks differs\n", t.name,
                    d.name.c_str());
        ++failures;
      }
      // RMSE (importance-weighted for the imatrix set); for ggml-test also ggml's own metric,
      // sqrt(sum d^2) / n, which its MAX_QUANTIZATION_TOTAL_ERROR bounds use.
      const double es = std::sqrt(weighted_sq_error(d, ys) / n);
      const double eg = std::sqrt(weighted_sq_error(d, yg) / n);
      std::printf("%-7s %-10s %12.6f %12.6f %7.4f %10.2f %10.2f", t.name, d.name.c_str(), es, eg,
                  es / eg, n / ts / 1e6, n / tg / 1e6);
      if (d.name == "ggml-test") {
        std::printf("   ggml metric: squish %.6f ggml %.6f",
                    std::sqrt(weighted_sq_error(d, ys)) / n,
                    std::sqrt(weighted_sq_error(d, yg)) / n);
      }
      std::printf("\n");
    }
  }

  std::printf("\n== Q8_K activations and dot products ==\n");
  {
    const Dataset& d = sets[1];
    const int64_t n = d.rows * d.cols;
    std::vector<squish::block_q8_K> as(n / 256), ag(n / 256);
    squish::quantize_act_q8_K(d.x.data(), as.data(), n);
    ggml_get_type_traits_cpu(GGML_TYPE_Q8_K)->from_float(d.x.data(), ag.data(), n);
    const bool same = std::memcmp(as.data(), ag.data(), as.size() * sizeof(as[0])) == 0;
    std::printf("Q8_K activations identical to ggml's: %s\n", same ? "yes" : "NO");
    failures += !same;
  }
  // ggml-style dot error (test-quantize-fns): weights 0.1 + 2 cos(i), activations
  // 0.1 + 2 cos(i + 1), n = 4096, |dot - float dot| / n.
  {
    const int64_t n = 4096;
    std::vector<float> x1(n), x2(n);
    for (int64_t i = 0; i < n; ++i) {
      x1[i] = 0.1f + 2.0f * std::cos(static_cast<float>(i));
      x2[i] = 0.1f + 2.0f * std::cos(static_cast<float>(i) + 1.0f);
    }
    double ref = 0;
    for (int64_t i = 0; i < n; ++i) ref += x1[i] * x2[i];
    std::vector<squish::block_q8_K> act(n / 256);
    squish::quantize_act_q8_K(x2.data(), act.data(), n);
    for (const TypePair& t : kTypes) {
      const squish::QuantTraits& qt = *squish::quant_traits(t.squish);
      std::vector<uint8_t> q(squish::row_bytes(t.squish, n)), qg(q.size());
      qt.quantize(x1.data(), q.data(), n, nullptr);
      ggml_quantize_chunk(t.ggml, x1.data(), qg.data(), 0, 1, n, nullptr);
      const float s = qt.dot_scalar(n, q.data(), act.data());
      float g = 0, gg = 0;
      ggml_get_type_traits_cpu(t.ggml)->vec_dot(n, &g, 0, q.data(), 0, act.data(), 0, 1);
      ggml_get_type_traits_cpu(t.ggml)->vec_dot(n, &gg, 0, qg.data(), 0, act.data(), 0, 1);
      const float s2 = qt.dot_avx2 ? qt.dot_avx2(n, q.data(), act.data()) : s;
      const float s5 = qt.dot_avx512 ? qt.dot_avx512(n, q.data(), act.data()) : s;
      std::printf(
          "%-7s dot error |dot - ref|/n: squish %.6f, ggml's blocks %.6f;  ggml vec_dot on "
          "squish's blocks differs by %.2e (rel); avx2/avx512 == scalar: %s/%s\n",
          t.name, std::fabs(s - ref) / n, std::fabs(gg - ref) / n, std::fabs(g - s) / std::fabs(s),
          s2 == s ? "yes" : "NO", s5 == s ? "yes" : "NO");
      failures += (s2 != s) + (s5 != s);
    }
  }

  if (argc > 1) {
    const std::string dir = argv[1];
    const std::vector<float> x = golden_input();
    const int64_t n = static_cast<int64_t>(x.size());
    bool ok = write_file(dir + "/input.f32", x.data(), n * sizeof(float));
    std::vector<squish::block_q8_K> act(n / 256);
    ggml_get_type_traits_cpu(GGML_TYPE_Q8_K)->from_float(x.data(), act.data(), n);
    ok &= write_file(dir + "/input.q8_K.ggml", act.data(), act.size() * sizeof(act[0]));
    std::vector<float> dots;
    for (const TypePair& t : kTypes) {
      const squish::QuantTraits& qt = *squish::quant_traits(t.squish);
      const auto* gt = ggml_get_type_traits(t.ggml);
      const size_t bytes = squish::row_bytes(t.squish, n);
      std::vector<uint8_t> qs(bytes), qg(bytes);
      std::vector<float> y(n);
      qt.quantize(x.data(), qs.data(), n, nullptr);
      ggml_quantize_chunk(t.ggml, x.data(), qg.data(), 0, 1, n, nullptr);
      const std::string base = dir + "/" + t.name;
      ok &= write_file(base + ".squish", qs.data(), bytes);
      gt->to_float(qs.data(), y.data(), n);
      ok &= write_file(base + ".squish.ggml_f32", y.data(), n * sizeof(float));
      ok &= write_file(base + ".ggml", qg.data(), bytes);
      gt->to_float(qg.data(), y.data(), n);
      ok &= write_file(base + ".ggml.ggml_f32", y.data(), n * sizeof(float));
      float dot = 0;
      ggml_get_type_traits_cpu(t.ggml)->vec_dot(n, &dot, 0, qs.data(), 0, act.data(), 0, 1);
      dots.push_back(dot);
    }
    ok &= write_file(dir + "/dots.ggml_f32", dots.data(), dots.size() * sizeof(float));
    std::printf("\ngoldens %s in %s\n", ok ? "written" : "NOT written", dir.c_str());
    failures += !ok;
  }
  std::printf("\n%s (%d failures)\n", failures == 0 ? "OK" : "FAILED", failures);
  return failures == 0 ? 0 : 1;
}
