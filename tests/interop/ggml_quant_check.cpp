// Checks squish's legacy quant formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, Q8_1 activations)
// against ggml itself and writes the goldens in tests/data/ggml_quant/ that squish_tests replay
// without ggml:
//   (a) ggml's to_float on blocks squish produced (its error-minimising quantization of a fixed
//       input, plus random blocks) must equal squish's dequantization bit for bit;
//   (b) squish's round-to-nearest quantizers must be byte-identical to ggml's quantize_row_*_ref;
//   (c) RMSE of squish's quantizers next to ggml's (ggml_quantize_chunk, with and without an
//       all-ones importance matrix), and squish's dot products next to ggml-cpu's vec_dot.
// Build and run from the repo root, with squish built in build-qa (ninja -C build-qa squish_lib)
// and llama.cpp built in /tmp/llama.cpp (tools/llama_cpp/build.sh builds the same tree):
//   g++ -std=c++20 -O2 -Isrc -I/tmp/llama.cpp/ggml/include tests/interop/ggml_quant_check.cpp
//       build-qa/libsquish_lib.a -L/tmp/llama.cpp/build/bin -lggml-cpu -lggml-base
//       -Wl,-rpath,/tmp/llama.cpp/build/bin -o build-qa/ggml_quant_check
//   build-qa/ggml_quant_check tests/data/ggml_quant
// Exit status 1 if (a) or (b) fails.
#include <ggml-cpu.h>
#include <ggml.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "quant/legacy.h"
#include "quant/quant.h"

namespace {

using squish::QuantTraits;

constexpr int kRows = 4, kCols = 256, kRandomRows = 4;

// Deterministic generator (64-bit LCG, top bits), so the input does not depend on a library.
struct Lcg {
  uint64_t s;
  uint32_t next() {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<uint32_t>(s >> 33);
  }
  float uniform() { return (next() + 0.5f) / 2147483648.0f; }  // (0, 1)
  float gaussian() {
    const float u = uniform(), v = uniform();
    return std::sqrt(-2.0f * std::log(u)) * std::cos(6.2831853f * v);
  }
};

// The golden input, one character per row:
//   0: ggml's test-quantize-fns pattern 0.1 + 2 cos(i)
//   1: Gaussian(0, 1)
//   2: Gaussian(0, 0.02) with a +-1 outlier every 37 elements (a typical weight row)
//   3: all positive, 0.5 + 0.25 u (so Q4_1 / Q5_1 mins are > 0), last block constant 0.75
std::vector<float> golden_input() {
  std::vector<float> x(kRows * kCols);
  Lcg rng{20241};
  for (int i = 0; i < kCols; ++i) {
    x[0 * kCols + i] = 0.1f + 2.0f * std::cos(static_cast<float>(i));
    x[1 * kCols + i] = rng.gaussian();
    x[2 * kCols + i] = i % 37 == 5 ? (i % 2 ? 1.0f : -1.0f) : 0.02f * rng.gaussian();
    x[3 * kCols + i] = i >= kCols - 32 ? 0.75f : 0.5f + 0.25f * rng.uniform();
  }
  return x;
}

struct Type {
  const char* name;
  ggml_type gt;
  const QuantTraits* traits;
  size_t block_bytes;
  void (*rtn)(const float*, void*, int64_t);
};

template <class B, void (*F)(const float*, B*, int64_t)>
void rtn_adapter(const float* x, void* y, int64_t n) {
  F(x, static_cast<B*>(y), n);
}

const Type kTypes[] = {
    {"q4_0", GGML_TYPE_Q4_0, &squish::kTraitsQ4_0, sizeof(squish::block_q4_0),
     rtn_adapter<squish::block_q4_0, squish::quantize_row_q4_0_rtn>},
    {"q4_1", GGML_TYPE_Q4_1, &squish::kTraitsQ4_1, sizeof(squish::block_q4_1),
     rtn_adapter<squish::block_q4_1, squish::quantize_row_q4_1_rtn>},
    {"q5_0", GGML_TYPE_Q5_0, &squish::kTraitsQ5_0, sizeof(squish::block_q5_0),
     rtn_adapter<squish::block_q5_0, squish::quantize_row_q5_0_rtn>},
    {"q5_1", GGML_TYPE_Q5_1, &squish::kTraitsQ5_1, sizeof(squish::block_q5_1),
     rtn_adapter<squish::block_q5_1, squish::quantize_row_q5_1_rtn>},
    {"q8_0", GGML_TYPE_Q8_0, &squish::kTraitsQ8_0, sizeof(squish::block_q8_0),
     rtn_adapter<squish::block_q8_0, squish::quantize_row_q8_0_rtn>},
    {"iq4_nl", GGML_TYPE_IQ4_NL, &squish::kTraitsIQ4_NL, sizeof(squish::block_iq4_nl),
     rtn_adapter<squish::block_iq4_nl, squish::quantize_row_iq4_nl_rtn>},
};

// Random blocks: arbitrary quant bytes, finite fp16 scale (and min) fields.
void randomize_blocks(const Type& t, uint8_t* p, int nblocks, Lcg& rng) {
  for (int b = 0; b < nblocks; ++b, p += t.block_bytes) {
    for (size_t i = 0; i < t.block_bytes; ++i) p[i] = static_cast<uint8_t>(rng.next());
    const int nhalf = (t.gt == GGML_TYPE_Q4_1 || t.gt == GGML_TYPE_Q5_1) ? 2 : 1;  // d (, m)
    for (int h = 0; h < nhalf; ++h) {
      const uint16_t v = squish::fp32_to_fp16((rng.uniform() * 2 - 1) * 0.05f);
      std::memcpy(p + 2 * h, &v, 2);
    }
  }
}

template <class T>
void write_file(const std::string& path, const std::vector<T>& v) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(v.data()),
             static_cast<std::streamsize>(v.size() * sizeof(T)));
}

// ggml's test-quantize-fns metric (sqrt of the summed squares over n) and the usual RMSE.
struct Err {
  double ggml, rmse;
};
Err errors(const float* a, const float* b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; ++i) s += (static_cast<double>(a[i]) - b[i]) * (a[i] - b[i]);
  return {std::sqrt(s) / static_cast<double>(n), std::sqrt(s / static_cast<double>(n))};
}

std::vector<float> dequant_ggml(const Type& t, const std::vector<uint8_t>& q, size_t n) {
  std::vector<float> y(n);
  ggml_get_type_traits(t.gt)->to_float(q.data(), y.data(), static_cast<int64_t>(n));
  return y;
}

std::vector<float> dequant_squish(const Type& t, const std::vector<uint8_t>& q, size_t n) {
  std::vector<float> y(n);
  t.traits->dequantize(q.data(), y.data(), static_cast<int64_t>(n));
  return y;
}

// RMSE of each quantizer on rows x[rows][cols].
void rmse_report(const Type& t, const char* what, const std::vector<float>& x, int rows, int cols) {
  const size_t n = x.size(), row_bytes = cols / 32 * t.block_bytes;
  std::vector<uint8_t> q(rows * row_bytes);
  const std::vector<float> ones(cols, 1.0f);
  auto squish_rows = [&](const float* imp) {
    for (int r = 0; r < rows; ++r) {
      t.traits->quantize(&x[r * cols], &q[r * row_bytes], cols, imp);
    }
    return errors(x.data(), dequant_squish(t, q, n).data(), n);
  };
  const Err ours = squish_rows(nullptr), ours_imp = squish_rows(ones.data());
  for (int r = 0; r < rows; ++r) t.rtn(&x[r * cols], &q[r * row_bytes], cols);
  const Err rtn = errors(x.data(), dequant_squish(t, q, n).data(), n);
  ggml_quantize_chunk(t.gt, x.data(), q.data(), 0, rows, cols, nullptr);
  const Err g = errors(x.data(), dequant_ggml(t, q, n).data(), n);
  ggml_quantize_chunk(t.gt, x.data(), q.data(), 0, rows, cols, ones.data());
  const Err g_imp = errors(x.data(), dequant_ggml(t, q, n).data(), n);
  std::printf(
      "  %-6s %-16s rmse  squish %.6f  squish(imp=1) %.6f  squish-rtn %.6f  |  ggml %.6f"
      "  ggml(imp=1) %.6f   [ggml metric: squish %.3g ggml %.3g]\n",
      t.name, what, ours.rmse, ours_imp.rmse, rtn.rmse, g.rmse, g_imp.rmse, ours.ggml, g.ggml);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  const std::string out = argv[1];
  ggml_cpu_init();
  int failures = 0;

  const std::vector<float> input = golden_input();
  write_file(out + "/input.f32.bin", input);
  const size_t n_in = input.size();

  std::printf(
      "(a) ggml to_float of squish blocks == squish dequantize; "
      "(b) squish RTN == ggml *_ref bytes\n");
  for (const Type& t : kTypes) {
    ggml_quantize_init(t.gt);
    const size_t row_bytes = kCols / 32 * t.block_bytes;
    // (a): squish's error-minimising blocks of the input, then random blocks.
    std::vector<uint8_t> blocks((kRows + kRandomRows) * row_bytes);
    for (int r = 0; r < kRows; ++r) {
      t.traits->quantize(&input[r * kCols], &blocks[r * row_bytes], kCols, nullptr);
    }
    Lcg rng{77 + static_cast<uint64_t>(t.gt)};
    randomize_blocks(t, &blocks[kRows * row_bytes], kRandomRows * kCols / 32, rng);
    const size_t n_all = (kRows + kRandomRows) * kCols;
    const std::vector<float> g = dequant_ggml(t, blocks, n_all);
    const std::vector<float> s = dequant_squish(t, blocks, n_all);
    size_t diff = 0;
    for (size_t i = 0; i < n_all; ++i) diff += std::memcmp(&g[i], &s[i], 4) != 0;
    write_file(out + "/" + t.name + ".blocks.bin", blocks);
    write_file(out + "/" + t.name + ".ggml_dequant.f32.bin", g);

    // (b): ggml's reference (RTN) quantization of the input against squish's.
    std::vector<uint8_t> ref(kRows * row_bytes), ours(kRows * row_bytes);
    ggml_get_type_traits(t.gt)->from_float_ref(input.data(), ref.data(),
                                               static_cast<int64_t>(n_in));
    for (int r = 0; r < kRows; ++r) t.rtn(&input[r * kCols], &ours[r * row_bytes], kCols);
    size_t bdiff = 0;
    for (size_t i = 0; i < ref.size(); ++i) bdiff += ref[i] != ours[i];
    write_file(out + "/" + t.name + ".ggml_ref.bin", ref);
    std::printf("  %-6s dequant: %zu/%zu floats differ   rtn: %zu/%zu bytes differ\n", t.name, diff,
                n_all, bdiff, ref.size());
    failures += diff != 0 || bdiff != 0;
  }
  {  // Q8_1 activations: ggml's quantize_row_q8_1_ref against squish's quantize_act_q8_1.
    std::vector<uint8_t> ref(n_in / 32 * sizeof(squish::block_q8_1)), ours(ref.size());
    ggml_get_type_traits(GGML_TYPE_Q8_1)
        ->from_float_ref(input.data(), ref.data(), static_cast<int64_t>(n_in));
    squish::quantize_act_q8_1(input.data(), ours.data(), static_cast<int64_t>(n_in));
    size_t bdiff = 0;
    for (size_t i = 0; i < ref.size(); ++i) bdiff += ref[i] != ours[i];
    write_file(out + "/q8_1.ggml_ref.bin", ref);
    std::printf("  q8_1   activations: %zu/%zu bytes differ\n", bdiff, ref.size());
    failures += bdiff != 0;
  }

  std::printf("(c) quantization error (rmse = sqrt(mean sq); ggml metric = sqrt(sum sq) / n)\n");
  std::vector<float> cosine(4096), gauss(64 * 4096);
  for (size_t i = 0; i < cosine.size(); ++i)
    cosine[i] = 0.1f + 2.0f * std::cos(static_cast<float>(i));
  Lcg rng{4242};
  for (float& v : gauss) v = rng.gaussian();
  for (const Type& t : kTypes) {
    rmse_report(t, "golden 4x256", input, kRows, kCols);
    rmse_report(t, "0.1+2cos(i) 4096", cosine, 1, 4096);
    rmse_report(t, "gauss 64x4096", gauss, 64, 4096);
  }

  std::printf("(d) dot products, n = 4096, weights 0.1+2cos(i), activations 0.1+2cos(i+1)\n");
  const int n = 4096;
  std::vector<float> act(n);
  for (int i = 0; i < n; ++i) act[i] = 0.1f + 2.0f * std::cos(static_cast<float>(i) + 1.0f);
  double dot_f = 0;
  for (int i = 0; i < n; ++i) dot_f += static_cast<double>(cosine[i]) * act[i];
  for (const Type& t : kTypes) {
    const auto* cpu = ggml_get_type_traits_cpu(t.gt);
    const ggml_type vt = cpu->vec_dot_type;
    const size_t act_bytes = n / 32 * ggml_type_size(vt);
    std::vector<uint8_t> w(n / 32 * t.block_bytes), a_ours(act_bytes), a_ggml(act_bytes);
    t.traits->quantize(cosine.data(), w.data(), n, nullptr);
    if (vt == GGML_TYPE_Q8_0) {
      squish::quantize_act_q8_0(act.data(), a_ours.data(), n);
    } else {
      squish::quantize_act_q8_1(act.data(), a_ours.data(), n);
    }
    ggml_get_type_traits_cpu(vt)->from_float(act.data(), a_ggml.data(), n);
    size_t adiff = 0;
    for (size_t i = 0; i < act_bytes; ++i) adiff += a_ours[i] != a_ggml[i];
    float g = 0;
    cpu->vec_dot(n, &g, 0, w.data(), 0, a_ours.data(), 0, 1);
    const float sc = t.traits->dot_scalar(n, w.data(), a_ours.data());
    const float s2 = t.traits->dot_avx2(n, w.data(), a_ours.data());
    const float s5 = t.traits->dot_avx512(n, w.data(), a_ours.data());
    std::printf(
        "  %-6s ggml vec_dot %.6f  squish scalar %.6f avx2 %.6f avx512 %.6f  "
        "|dot - float dot| / n = %.2e   act bytes vs ggml-cpu from_float: %zu differ\n",
        t.name, g, sc, s2, s5, std::fabs(s5 - dot_f) / n, adiff);
  }
  std::printf(failures ? "FAILED\n" : "all bit-compatibility checks passed\n");
  return failures ? 1 : 0;
}
