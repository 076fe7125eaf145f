// Legacy ggml block formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL; Q8_0 / Q8_1 activations).
// Error bounds are ggml's (tests/test-quantize-fns.cpp): on x[i] = 0.1 + 2 cos(i + offset),
// n = 4096, quantize -> dequantize error <= 0.002, reference vs second implementation <= 1e-4,
// quantized dot vs float dot <= 0.02, all in ggml's metrics (sqrt(sum sq) / n and |diff| / n).
// Bit-compatibility with ggml is replayed from goldens that tests/interop/ggml_quant_check.cpp
// wrote with llama.cpp's ggml.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "kernels/cpu/matmul.h"
#include "quant/legacy.h"
#include "quant/quant.h"
#include "test_util.h"

namespace squish {
namespace {

struct LegacyType {
  const char* name;
  const QuantTraits* traits;
  size_t block_bytes;
  size_t act_block_bytes;
  void (*rtn)(const float*, void*, int64_t);
  void (*act)(const float*, void*, int64_t);
  double max_total_error;     // ggml metric on the cosine vector
  bool asymmetric;            // x ~ d l + m, l in 0..nmax (the _1 types)
  int nmax;                   // asymmetric types
  std::vector<float> levels;  // symmetric types: the level set, x ~ d * level
  float span;                 // squish's search range, in level units (legacy.cpp kSpan*)
};

template <class B, void (*F)(const float*, B*, int64_t)>
void rtn_adapter(const float* x, void* y, int64_t n) {
  F(x, static_cast<B*>(y), n);
}

std::vector<float> uniform_levels(int lo, int hi) {
  std::vector<float> v;
  for (int i = lo; i <= hi; ++i) v.push_back(static_cast<float>(i));
  return v;
}

const std::vector<LegacyType>& legacy_types() {
  static const std::vector<LegacyType> types = {
      {"q4_0", &kTraitsQ4_0, sizeof(block_q4_0), sizeof(block_q8_0),
       rtn_adapter<block_q4_0, quantize_row_q4_0_rtn>, quantize_act_q8_0, 0.002, false, 0,
       uniform_levels(-8, 7), 2.5f},
      {"q4_1",
       &kTraitsQ4_1,
       sizeof(block_q4_1),
       sizeof(block_q8_1),
       rtn_adapter<block_q4_1, quantize_row_q4_1_rtn>,
       quantize_act_q8_1,
       0.002,
       true,
       15,
       {},
       2.5f},
      {"q5_0", &kTraitsQ5_0, sizeof(block_q5_0), sizeof(block_q8_0),
       rtn_adapter<block_q5_0, quantize_row_q5_0_rtn>, quantize_act_q8_0, 0.002, false, 0,
       uniform_levels(-16, 15), 3.0f},
      {"q5_1",
       &kTraitsQ5_1,
       sizeof(block_q5_1),
       sizeof(block_q8_1),
       rtn_adapter<block_q5_1, quantize_row_q5_1_rtn>,
       quantize_act_q8_1,
       0.002,
       true,
       31,
       {},
       3.0f},
      // 8 bits: ggml's bound is 0.002 for every type; ours is ~6.5e-5, so hold it to 2e-4.
      {"q8_0", &kTraitsQ8_0, sizeof(block_q8_0), sizeof(block_q8_0),
       rtn_adapter<block_q8_0, quantize_row_q8_0_rtn>, quantize_act_q8_0, 0.0002, false, 0,
       uniform_levels(-127, 127), 8.0f},
      {"iq4_nl", &kTraitsIQ4_NL, sizeof(block_iq4_nl), sizeof(block_q8_0),
       rtn_adapter<block_iq4_nl, quantize_row_iq4_nl_rtn>, quantize_act_q8_0, 0.002, false, 0,
       std::vector<float>(std::begin(kIQ4NLValues), std::end(kIQ4NLValues)), 30.0f},
  };
  return types;
}

// ggml's generate_data.
std::vector<float> cosine_data(float offset, size_t n, float amplitude = 2.0f) {
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) x[i] = 0.1f + amplitude * std::cos(static_cast<float>(i) + offset);
  return x;
}

// ggml's array_rmse: sqrt(sum of squares) / n (not the usual RMSE; that is rmse() below).
double ggml_error(const float* a, const float* b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; ++i) s += (static_cast<double>(a[i]) - b[i]) * (a[i] - b[i]);
  return std::sqrt(s) / static_cast<double>(n);
}

double sq_error(const float* a, const float* b, size_t n, const float* w = nullptr) {
  double s = 0;
  for (size_t i = 0; i < n; ++i) {
    s += (w ? w[i] : 1.0) * (static_cast<double>(a[i]) - b[i]) * (a[i] - b[i]);
  }
  return s;
}

double rmse(const std::vector<float>& a, const std::vector<float>& b) {
  return std::sqrt(sq_error(a.data(), b.data(), a.size()) / static_cast<double>(a.size()));
}

std::vector<uint8_t> quantize(const LegacyType& t, const std::vector<float>& x, int64_t cols,
                              const float* importance = nullptr) {
  const size_t row = static_cast<size_t>(cols) / 32 * t.block_bytes;
  std::vector<uint8_t> q(x.size() / static_cast<size_t>(cols) * row);
  for (size_t r = 0; r * cols < x.size(); ++r) {
    t.traits->quantize(&x[r * cols], &q[r * row], cols,
                       importance ? importance + r * cols : nullptr);
  }
  return q;
}

std::vector<uint8_t> quantize_rtn(const LegacyType& t, const std::vector<float>& x) {
  std::vector<uint8_t> q(x.size() / 32 * t.block_bytes);
  t.rtn(x.data(), q.data(), static_cast<int64_t>(x.size()));
  return q;
}

std::vector<float> dequantize(const LegacyType& t, const std::vector<uint8_t>& q) {
  std::vector<float> y(q.size() / t.block_bytes * 32);
  t.traits->dequantize(q.data(), y.data(), static_cast<int64_t>(y.size()));
  return y;
}

std::vector<float> gaussian(size_t n, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> x(n);
  for (float& v : x) v = dist(rng);
  return x;
}

class LegacyQuantTest : public testing::TestWithParam<int> {
 protected:
  const LegacyType& type() const { return legacy_types()[GetParam()]; }
};

std::string type_name(const testing::TestParamInfo<int>& info) {
  return legacy_types()[info.param].name;
}

INSTANTIATE_TEST_SUITE_P(Types, LegacyQuantTest,
                         testing::Range(0, static_cast<int>(legacy_types().size())), type_name);

// ---------------------------------- ggml's published bounds ----------------------------------

TEST_P(LegacyQuantTest, TotalErrorWithinGgmlBound) {
  const LegacyType& t = type();
  const std::vector<float> x = cosine_data(0.0f, 4096);
  const double err = ggml_error(x.data(), dequantize(t, quantize(t, x, 4096)).data(), x.size());
  const double err_rtn = ggml_error(x.data(), dequantize(t, quantize_rtn(t, x)).data(), x.size());
  EXPECT_LE(err, t.max_total_error);
  EXPECT_LE(err_rtn, t.max_total_error);
  EXPECT_LE(err, err_rtn);
  std::printf("  %s: error-minimising %.3g, round-to-nearest %.3g (ggml metric)\n", t.name, err,
              err_rtn);
}

// A second implementation of the search, written independently of legacy.cpp's: the same
// assignment families (x / d rounded to the level set for a range of d; for the _1 types
// rounding from the min or the max, grid offset 0 or half a step) sampled on a dense grid of
// scales instead of swept crossing by crossing, the 4 best by least-squares gain finished the
// same way (fp16 scale / min and neighbours, re-rounded, refitted once), RTN as a fallback.
// The sweep visits every assignment the grid samples, so the two should agree to ggml's
// reference-vs-fast bound, and the sweep must not be worse.
float nearest_level(const std::vector<float>& lv, float v) {
  const auto it = std::lower_bound(lv.begin(), lv.end(), v);
  if (it == lv.begin()) return lv.front();
  if (it == lv.end()) return lv.back();
  return v - *(it - 1) <= *it - v ? *(it - 1) : *it;
}

std::vector<float> fp16_and_neighbours(float v) {
  const int h = fp32_to_fp16(v), mag = h & 0x7fff, sign = h & 0x8000;
  std::vector<float> out;
  for (int i = std::max(0, mag - 1); i <= std::min(0x7bff, mag + 1); ++i) {
    out.push_back(fp16_to_fp32(static_cast<uint16_t>(sign | i)));
  }
  return out;
}

struct GridResult {
  std::vector<float> y;  // dequantized
  double err = 0;
};

GridResult grid_search(const LegacyType& t, const std::vector<float>& x) {
  constexpr int kSteps = 2000, kKeep = 4;
  GridResult out;
  out.y = dequantize(t, quantize_rtn(t, x));
  for (size_t b = 0; b < x.size(); b += 32) {
    const float* xb = &x[b];
    double best = sq_error(xb, &out.y[b], 32);
    const float mn = *std::min_element(xb, xb + 32), mx = *std::max_element(xb, xb + 32);
    const float amax = std::max(std::fabs(mn), std::fabs(mx));
    // Assignments (level values per element) with their least-squares gain.
    std::vector<std::pair<double, std::vector<float>>> top;
    auto offer = [&](double gain, const std::vector<float>& l) {
      for (const auto& c : top) {
        if (c.second == l) return;
      }
      top.emplace_back(gain, l);
      std::sort(top.begin(), top.end(),
                [](const auto& a, const auto& c) { return a.first > c.first; });
      if (top.size() > kKeep) top.pop_back();
    };
    std::vector<float> l(32), cand(32);
    auto finish = [&](auto fit_and_try) {
      for (auto& c : top) {
        l = c.second;
        double mine = 1e300;
        std::vector<float> mine_y(32);
        for (int round = 0; round < 2; ++round) {
          fit_and_try(l, [&](const std::vector<float>& y, const std::vector<float>& levels) {
            const double e = sq_error(xb, y.data(), 32);
            if (e < mine) mine = e, mine_y = y, l = levels;
          });
        }
        if (mine < best) best = mine, std::copy(mine_y.begin(), mine_y.end(), &out.y[b]);
      }
    };
    if (amax == 0) {
    } else if (!t.asymmetric) {
      const std::vector<float>& lv = t.levels;
      for (float top_level : {-lv.front(), lv.back()}) {
        for (float sign : {-1.0f, 1.0f}) {
          for (int s = 0; s <= kSteps; ++s) {
            const float u = sign * (top_level - t.span + 2 * t.span * s / kSteps) / amax;
            double sxq = 0, sq2 = 0;
            for (int j = 0; j < 32; ++j) {
              l[j] = nearest_level(lv, u * xb[j]);
              sxq += xb[j] * l[j];
              sq2 += l[j] * l[j];
            }
            if (sq2 > 0) offer(sxq * sxq / sq2, l);
          }
        }
      }
      finish([&](const std::vector<float>& lev, auto try_y) {
        double sxq = 0, sq2 = 0;
        for (int j = 0; j < 32; ++j) sxq += xb[j] * lev[j], sq2 += lev[j] * lev[j];
        for (float d : fp16_and_neighbours(static_cast<float>(sxq / sq2))) {
          std::vector<float> levels(32);
          for (int j = 0; j < 32; ++j) {
            levels[j] = nearest_level(lv, d != 0 ? xb[j] / d : 0);
            cand[j] = levels[j] * d;
          }
          try_y(cand, levels);
        }
      });
    } else {
      const float nmax = static_cast<float>(t.nmax);
      auto solve = [&](const std::vector<float>& lev, double* d, double* m, double* gain) {
        double sx = 0, sl = 0, sl2 = 0, sxl = 0;
        for (int j = 0; j < 32; ++j)
          sx += xb[j], sl += lev[j], sl2 += lev[j] * lev[j], sxl += xb[j] * lev[j];
        const double det = 32 * sl2 - sl * sl;
        if (det <= 1e-12 * 32 * sl2) return false;
        *d = (32 * sxl - sx * sl) / det;
        *m = (sl2 * sx - sl * sxl) / det;
        *gain = (32 * sxl * sxl - 2 * sl * sxl * sx + sl2 * sx * sx) / det;
        return true;
      };
      for (int s = 0; s <= kSteps; ++s) {
        const float u = (nmax - t.span + 2 * t.span * s / kSteps) / (mx - mn);
        for (bool from_max : {false, true}) {
          for (float shift : {0.0f, 0.5f}) {
            for (int j = 0; j < 32; ++j) {
              const float p = (from_max ? mx - xb[j] : xb[j] - mn) * u - shift;
              l[j] = std::clamp(std::nearbyint(p), 0.0f, nmax);
              if (from_max) l[j] = nmax - l[j];
            }
            double d, m, gain;
            if (solve(l, &d, &m, &gain)) offer(gain, l);
          }
        }
      }
      finish([&](const std::vector<float>& lev, auto try_y) {
        double d0, m0, gain;
        if (!solve(lev, &d0, &m0, &gain)) return;
        for (float d : fp16_and_neighbours(static_cast<float>(std::max(d0, 0.0)))) {
          for (float m : fp16_and_neighbours(static_cast<float>(m0))) {
            std::vector<float> levels(32);
            for (int j = 0; j < 32; ++j) {
              levels[j] = d != 0 ? std::clamp(std::nearbyint((xb[j] - m) / d), 0.0f, nmax) : 0.0f;
              cand[j] = levels[j] * d + m;
            }
            try_y(cand, levels);
          }
        }
      });
    }
    out.err += best;
  }
  return out;
}

TEST_P(LegacyQuantTest, ReferenceVsSecondImplementation) {
  const LegacyType& t = type();
  for (const std::vector<float>& x : {cosine_data(0.0f, 4096), gaussian(4096, 11)}) {
    const std::vector<float> ours = dequantize(t, quantize(t, x, 4096));
    const GridResult grid = grid_search(t, x);
    const double ours_err = sq_error(x.data(), ours.data(), x.size());
    EXPECT_LE(ggml_error(ours.data(), grid.y.data(), x.size()), 1e-4);
    // The sweep's candidates are a superset of the grid's, finished the same way.
    EXPECT_LE(ours_err, grid.err * (1 + 1e-9));
    std::printf("  %s: squared error sweep %.6g, grid %.6g\n", t.name, ours_err, grid.err);
  }
}

TEST_P(LegacyQuantTest, ImportanceScaleDoesNotMatter) {
  // Only relative importance counts: doubling every weight scales every compared sum exactly.
  const LegacyType& t = type();
  const std::vector<float> x = gaussian(2048, 3);
  std::vector<float> imp(x.size()), imp2(x.size());
  std::mt19937 rng(4);
  std::uniform_real_distribution<float> u(0.1f, 3.0f);
  for (size_t i = 0; i < imp.size(); ++i) imp2[i] = 2 * (imp[i] = u(rng));
  EXPECT_EQ(quantize(t, x, 1024, imp.data()), quantize(t, x, 1024, imp2.data()));
}

TEST_P(LegacyQuantTest, DotProductErrorWithinGgmlBound) {
  const LegacyType& t = type();
  const int64_t n = 4096;
  const std::vector<float> w = cosine_data(0.0f, n), a = cosine_data(1.0f, n);
  const std::vector<uint8_t> qw = quantize(t, w, n);
  std::vector<uint8_t> qa(n / 32 * t.act_block_bytes);
  t.act(a.data(), qa.data(), n);
  double ref = 0;
  for (int64_t i = 0; i < n; ++i) ref += static_cast<double>(w[i]) * a[i];
  for (VecDotFn dot : {t.traits->dot_scalar, t.traits->dot_avx2, t.traits->dot_avx512}) {
    if (dot == t.traits->dot_avx2 && detected_cpu_level() < CpuLevel::AVX2) continue;
    if (dot == t.traits->dot_avx512 && detected_cpu_level() < CpuLevel::AVX512) continue;
    const double err = std::fabs(dot(n, qw.data(), qa.data()) - ref) / n;
    EXPECT_LE(err, 0.02);
    EXPECT_LE(err, t.max_total_error * 2);  // far inside ggml's bound in practice
  }
}

// --------------------------------- SIMD against the reference ---------------------------------

// Random blocks: arbitrary quant bytes (every nibble, fifth bit and int8 value, -128 included)
// and finite scales spanning several binades; activations from the activation quantizer on data
// with extremes, or raw random bytes.
void random_blocks(std::vector<uint8_t>& q, size_t block_bytes, int nscales, std::mt19937& rng) {
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> mag(-8.0f, 2.0f);
  for (auto& v : q) v = static_cast<uint8_t>(byte(rng));
  for (size_t off = 0; off < q.size(); off += block_bytes) {
    for (int h = 0; h < nscales; ++h) {
      const float s = (byte(rng) & 1 ? 1.0f : -1.0f) * std::exp2(mag(rng));
      const uint16_t v = fp32_to_fp16(s);
      std::memcpy(&q[off + 2 * h], &v, 2);
    }
  }
}

// The scalar formula evaluated exactly (double, integer levels): sum_b d_w d_a sum_j l_j q_j
// (+ m_w s_a), and the sum of |terms|, which float rounding errors are relative to.
struct ExactDot {
  double value = 0, magnitude = 0;
};

ExactDot exact_dot(const LegacyType& t, const uint8_t* w, const uint8_t* a, int64_t nb) {
  const bool q8_1 = t.act_block_bytes == sizeof(block_q8_1);
  ExactDot r;
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* wb = w + b * t.block_bytes;
    const uint8_t* ab = a + b * t.act_block_bytes;
    // The block's levels: dequantize a copy with d = 1 and m = 0.
    std::vector<uint8_t> unit(wb, wb + t.block_bytes);
    const uint16_t one = 0x3C00, zero = 0;
    std::memcpy(unit.data(), &one, 2);
    if (t.asymmetric) std::memcpy(unit.data() + 2, &zero, 2);
    float lv[32];
    t.traits->dequantize(unit.data(), lv, 32);
    const int8_t* q = reinterpret_cast<const int8_t*>(ab + (q8_1 ? 4 : 2));
    double sum = 0;
    for (int j = 0; j < 32; ++j) sum += static_cast<double>(lv[j]) * q[j];
    uint16_t dw, da;
    std::memcpy(&dw, wb, 2);
    std::memcpy(&da, ab, 2);
    const double main = static_cast<double>(fp16_to_fp32(dw)) * fp16_to_fp32(da) * sum;
    double min = 0;
    if (t.asymmetric) {
      uint16_t m, s;
      std::memcpy(&m, wb + 2, 2);
      std::memcpy(&s, ab + 2, 2);
      min = static_cast<double>(fp16_to_fp32(m)) * fp16_to_fp32(s);
    }
    r.value += main + min;
    r.magnitude += std::fabs(main) + std::fabs(min);
  }
  return r;
}

TEST_P(LegacyQuantTest, SimdMatchesScalar) {
  const LegacyType& t = type();
  if (detected_cpu_level() < CpuLevel::AVX2) GTEST_SKIP() << "no AVX2";
  std::mt19937 rng(1234 + GetParam());
  const bool act_q8_1 = t.act_block_bytes == sizeof(block_q8_1);
  double worst = 0;
  for (int64_t nb : {1, 2, 3, 4, 5, 6, 7, 9, 15, 31, 33, 64, 129, 257}) {
    for (int trial = 0; trial < 4; ++trial) {
      const int64_t n = nb * 32;
      std::vector<uint8_t> w(nb * t.block_bytes), a(nb * t.act_block_bytes);
      random_blocks(w, t.block_bytes, t.asymmetric ? 2 : 1, rng);
      if (trial % 2 == 0) {  // realistic activations, with extreme values mixed in
        std::vector<float> x = gaussian(n, rng());
        for (int64_t i = 0; i < n; i += 7) x[i] *= 1000.0f;
        t.act(x.data(), a.data(), n);
      } else {  // raw bytes, -127..127 (the range the activation quantizer produces)
        random_blocks(a, t.act_block_bytes, act_q8_1 ? 2 : 1, rng);
        for (int64_t b = 0; b < nb; ++b) {
          int8_t* qs = reinterpret_cast<int8_t*>(&a[b * t.act_block_bytes + (act_q8_1 ? 4 : 2)]);
          for (int j = 0; j < 32; ++j) qs[j] = std::max<int8_t>(qs[j], -127);
        }
      }
      const ExactDot exact = exact_dot(t, w.data(), a.data(), nb);
      const double value = exact.value, magnitude = exact.magnitude;
      // Per-block products are exact in float here up to d_w * d_a (one rounding), then the
      // sums differ in order: a few float ulps of the magnitude, relative.
      const double tol = 2e-6 * magnitude + 1e-30;
      const float scalar = t.traits->dot_scalar(n, w.data(), a.data());
      EXPECT_NEAR(scalar, value, tol) << "scalar nb=" << nb;
      worst = std::max(worst, std::fabs(scalar - value) / magnitude);
      for (CpuLevel level : {CpuLevel::AVX2, CpuLevel::AVX512}) {
        if (detected_cpu_level() < level) continue;
        const VecDotFn dot = level == CpuLevel::AVX2 ? t.traits->dot_avx2 : t.traits->dot_avx512;
        const float fast = dot(n, w.data(), a.data());
        EXPECT_NEAR(fast, value, tol) << cpu_level_name(level) << " nb=" << nb;
        EXPECT_NEAR(fast, scalar, 2 * tol) << cpu_level_name(level) << " nb=" << nb;
        worst = std::max(worst, std::fabs(fast - value) / magnitude);
      }
    }
  }
  std::printf("  %s: worst |dot - exact| / sum|terms| = %.2g\n", t.name, worst);
}

// The AVX-512 kernels are exact for any activation byte, -128 included.
TEST_P(LegacyQuantTest, Avx512HandlesMinus128) {
  const LegacyType& t = type();
  if (detected_cpu_level() < CpuLevel::AVX512) GTEST_SKIP() << "no AVX-512";
  std::mt19937 rng(99);
  const int64_t nb = 9, n = nb * 32;
  std::vector<uint8_t> w(nb * t.block_bytes), a(nb * t.act_block_bytes);
  random_blocks(w, t.block_bytes, t.asymmetric ? 2 : 1, rng);
  random_blocks(a, t.act_block_bytes, t.act_block_bytes == sizeof(block_q8_1) ? 2 : 1, rng);
  const size_t qs_off = t.act_block_bytes == sizeof(block_q8_1) ? 4 : 2;
  for (int64_t b = 0; b < nb; ++b) {
    for (int j = 0; j < 32; j += 3) a[b * t.act_block_bytes + qs_off + j] = 0x80;
  }
  const ExactDot exact = exact_dot(t, w.data(), a.data(), nb);
  EXPECT_NEAR(t.traits->dot_scalar(n, w.data(), a.data()), exact.value, 2e-6 * exact.magnitude);
  EXPECT_NEAR(t.traits->dot_avx512(n, w.data(), a.data()), exact.value, 2e-6 * exact.magnitude);
}

// ------------------------------------- Quantizer quality -------------------------------------

TEST_P(LegacyQuantTest, ErrorMinimisingBeatsRoundToNearest) {
  const LegacyType& t = type();
  const int64_t cols = 4096;
  std::vector<float> x = gaussian(8 * cols, 5);
  for (size_t i = 0; i < x.size(); i += 97) x[i] *= 6.0f;  // some outliers, as in real weights
  const std::vector<float> ours = dequantize(t, quantize(t, x, cols));
  const std::vector<float> rtn = dequantize(t, quantize_rtn(t, x));
  const double e_ours = rmse(x, ours), e_rtn = rmse(x, rtn);
  EXPECT_LT(e_ours, e_rtn * 0.98) << "less than 2% better than round-to-nearest";
  // Never worse block by block: the RTN block is one of the candidates.
  for (size_t b = 0; b < x.size(); b += 32) {
    ASSERT_LE(sq_error(&x[b], &ours[b], 32), sq_error(&x[b], &rtn[b], 32) * (1 + 1e-12))
        << "block " << b / 32;
  }
  std::printf("  %s: rmse error-minimising %.5f, round-to-nearest %.5f (%.1f%% lower)\n", t.name,
              e_ours, e_rtn, 100 * (1 - e_ours / e_rtn));
}

TEST_P(LegacyQuantTest, ImportanceSteersTheError) {
  const LegacyType& t = type();
  const int64_t cols = 2048;
  const std::vector<float> x = gaussian(4 * cols, 21);
  // Every fourth element matters 100x more than the rest.
  std::vector<float> imp(x.size(), 0.01f);
  for (size_t i = 0; i < imp.size(); i += 4) imp[i] = 1.0f;
  const std::vector<float> plain = dequantize(t, quantize(t, x, cols));
  const std::vector<float> steered = dequantize(t, quantize(t, x, cols, imp.data()));
  const std::vector<float> rtn = dequantize(t, quantize_rtn(t, x));
  auto important_error = [&](const std::vector<float>& y) {
    double s = 0;
    for (size_t i = 0; i < x.size(); i += 4) s += (x[i] - y[i]) * (x[i] - y[i]);
    return s;
  };
  EXPECT_LT(important_error(steered), important_error(plain) * 0.9);
  // In the weighted error it optimises (imp * sqrt(sigma2 + x^2), per row), never worse than RTN.
  std::vector<float> w(x.size());
  for (int64_t r = 0; r * cols < static_cast<int64_t>(x.size()); ++r) {
    double s2 = 0;
    for (int64_t j = 0; j < cols; ++j) s2 += x[r * cols + j] * x[r * cols + j];
    const float sigma2 = static_cast<float>(s2 / cols);
    for (int64_t j = 0; j < cols; ++j) {
      const size_t i = r * cols + j;
      // IQ4_NL measures sigma2 per block, as ggml.
      float s = sigma2;
      if (t.traits == &kTraitsIQ4_NL) {
        s = 0;
        for (size_t k = i / 32 * 32; k < i / 32 * 32 + 32; ++k) s += x[k] * x[k];
        s *= 2.0f / 32;
      }
      w[i] = imp[i] * std::sqrt(s + x[i] * x[i]);
    }
  }
  EXPECT_LE(sq_error(x.data(), steered.data(), x.size(), w.data()),
            sq_error(x.data(), rtn.data(), x.size(), w.data()));
}

TEST_P(LegacyQuantTest, DegenerateBlocks) {
  const LegacyType& t = type();
  std::vector<float> x(6 * 32, 0.0f);                                      // block 0: zeros
  std::fill(x.begin() + 32, x.begin() + 64, 0.37f);                        // 1: constant
  std::fill(x.begin() + 64, x.begin() + 96, -2.5f);                        // 2: negative constant
  for (int j = 0; j < 32; ++j) x[96 + j] = 1e-6f * (j - 16);               // 3: tiny
  for (int j = 0; j < 32; ++j) x[128 + j] = j == 9 ? 3.0f : 0.0f;          // 4: one spike
  for (int j = 0; j < 32; ++j) x[160 + j] = 1000.0f * std::sin(j * 1.0f);  // 5: large
  for (const std::vector<uint8_t>& q : {quantize(t, x, 32 * 6), quantize_rtn(t, x)}) {
    const std::vector<float> y = dequantize(t, q);
    for (float v : y) ASSERT_TRUE(std::isfinite(v));
    for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], 0.0f);
    for (int j = 0; j < 32; ++j) EXPECT_NEAR(y[128 + j], x[128 + j], 0.2f);
    for (int j = 0; j < 32; ++j) EXPECT_NEAR(y[96 + j], x[96 + j], 4e-6f);  // fp16 subnormal d
    EXPECT_LE(std::sqrt(sq_error(&x[160], &y[160], 32) / 32), 0.05 * 1000);
  }
  const std::vector<float> y = dequantize(t, quantize(t, x, 32 * 6));
  for (int j = 0; j < 32; ++j) {
    EXPECT_NEAR(y[32 + j], 0.37f, 0.37f * 2e-3f);
    EXPECT_NEAR(y[64 + j], -2.5f, 2.5f * 2e-3f);
  }
}

// ------------------------------------ Traits and dispatch ------------------------------------

TEST_P(LegacyQuantTest, TraitsRegisteredAndDispatched) {
  const LegacyType& t = type();
  const DType dt = t.traits->type;
  EXPECT_EQ(quant_traits(dt), t.traits);
  EXPECT_TRUE(is_quantized(dt));
  EXPECT_EQ(traits(dt).block_size, 32);
  EXPECT_EQ(static_cast<size_t>(traits(dt).block_bytes), t.block_bytes);
  EXPECT_EQ(static_cast<size_t>(traits(t.traits->vec_dot_type).block_bytes), t.act_block_bytes);
  const std::vector<float> x = gaussian(256, 8);
  std::vector<uint8_t> direct(8 * t.act_block_bytes), generic(direct.size());
  t.act(x.data(), direct.data(), 256);
  quantize_activations(t.traits->vec_dot_type, x.data(), generic.data(), 256);
  EXPECT_EQ(direct, generic);
  const CpuLevel saved = active_cpu_level();
  for (CpuLevel level : {CpuLevel::Scalar, CpuLevel::AVX2, CpuLevel::AVX512}) {
    if (level > detected_cpu_level()) continue;
    set_cpu_level(level);
    const VecDotFn want = level == CpuLevel::AVX512 ? t.traits->dot_avx512
                          : level == CpuLevel::AVX2 ? t.traits->dot_avx2
                                                    : t.traits->dot_scalar;
    EXPECT_EQ(quant_dot(*t.traits), want) << cpu_level_name(level);
  }
  set_cpu_level(saved);
}

// ------------------------------------------ Layouts ------------------------------------------

TEST(LegacyQuantLayout, ElementOrderNibblesAndFifthBits) {
  constexpr uint16_t kOne = 0x3C00, kHalfMin = 0xB800;  // 1.0, -0.5
  float y[32];
  block_q4_0 q4{kOne, {}};
  for (int j = 0; j < 16; ++j) q4.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  dequantize_row_q4_0(&q4, y, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], j - 8);       // low nibble of qs[j] is element j
    EXPECT_EQ(y[j + 16], 7 - j);  // high nibble is element j + 16
  }
  block_q4_1 q41{kOne, kHalfMin, {}};
  std::memcpy(q41.qs, q4.qs, 16);
  dequantize_row_q4_1(&q41, y, 32);
  for (int j = 0; j < 16; ++j) EXPECT_EQ(y[j + 16], 15 - j - 0.5f);
  block_q5_0 q5{kOne, {0x01, 0x80, 0x00, 0xF0}, {}};  // bits 0, 15, 28..31
  std::memcpy(q5.qs, q4.qs, 16);
  dequantize_row_q5_0(&q5, y, 32);
  for (int j = 0; j < 32; ++j) {
    const int nib = j < 16 ? j : 15 - (j - 16);
    const bool high = j == 0 || j == 15 || j >= 28;
    EXPECT_EQ(y[j], nib + (high ? 16 : 0) - 16) << j;
  }
  block_q5_1 q51{kOne, kHalfMin, {0x01, 0x80, 0x00, 0xF0}, {}};
  std::memcpy(q51.qs, q4.qs, 16);
  dequantize_row_q5_1(&q51, y, 32);
  for (int j = 0; j < 32; ++j) {
    const int nib = j < 16 ? j : 15 - (j - 16);
    const bool high = j == 0 || j == 15 || j >= 28;
    EXPECT_EQ(y[j], nib + (high ? 16 : 0) - 0.5f) << j;
  }
  block_iq4_nl nl{kOne, {}};
  std::memcpy(nl.qs, q4.qs, 16);
  dequantize_row_iq4_nl(&nl, y, 32);
  const int kTable[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], kTable[j]);
    EXPECT_EQ(y[j + 16], kTable[15 - j]);
  }
}

TEST(LegacyQuantLayout, RoundToNearestMatchesGgmlRules) {
  // Q4_0: the largest magnitude maps to -8 (d = max / -8), ties round up (trunc(x / d + 8.5)).
  float x[32] = {};
  x[0] = 4.0f;    // d = -0.5: 4 -> -8
  x[1] = -3.5f;   // -3.5 / -0.5 = 7 -> +7
  x[2] = -0.25f;  // 0.5 exactly -> rounds up to 1
  x[3] = 0.25f;   // -0.5 -> rounds up to 0
  block_q4_0 q;
  quantize_row_q4_0_rtn(x, &q, 32);
  EXPECT_EQ(fp16_to_fp32(q.d), -0.5f);
  EXPECT_EQ(q.qs[0] & 0x0F, 0);
  EXPECT_EQ(q.qs[1] & 0x0F, 15);
  EXPECT_EQ(q.qs[2] & 0x0F, 9);
  EXPECT_EQ(q.qs[3] & 0x0F, 8);
  // Q8_1: s is d * sum(qs) with the unrounded d.
  float a[32];
  for (int j = 0; j < 32; ++j) a[j] = 0.3f + 0.01f * j;
  block_q8_1 b;
  quantize_act_q8_1(a, &b, 32);
  int sum = 0;
  for (int j = 0; j < 32; ++j) sum += b.qs[j];
  EXPECT_EQ(b.qs[31], 127);
  EXPECT_EQ(b.s, fp32_to_fp16(static_cast<float>(sum) * (a[31] / 127)));
  // Q8_0 activations never use -128 (the AVX2 kernels rely on it).
  block_q8_0 c;
  a[5] = -0.61f;
  quantize_act_q8_0(a, &c, 32);
  EXPECT_EQ(c.qs[5], -127);
}

// ------------------------------------ Goldens from ggml ------------------------------------

std::vector<uint8_t> read_bytes(const std::string& rel) {
  std::ifstream in(test::data_path("ggml_quant/" + rel), std::ios::binary);
  EXPECT_TRUE(in.good()) << rel;
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

template <class T>
std::vector<T> read_as(const std::string& rel) {
  const std::vector<uint8_t> b = read_bytes(rel);
  std::vector<T> v(b.size() / sizeof(T));
  std::memcpy(v.data(), b.data(), v.size() * sizeof(T));
  return v;
}

TEST_P(LegacyQuantTest, DequantizeEqualsGgmlBitForBit) {
  const LegacyType& t = type();
  const std::vector<uint8_t> blocks = read_bytes(std::string(t.name) + ".blocks.bin");
  const std::vector<uint32_t> ggml =
      read_as<uint32_t>(std::string(t.name) + ".ggml_dequant.f32.bin");
  ASSERT_EQ(blocks.size() / t.block_bytes * 32, ggml.size());
  const std::vector<float> ours = dequantize(t, blocks);
  size_t differ = 0;
  for (size_t i = 0; i < ours.size(); ++i) {
    uint32_t bits;
    std::memcpy(&bits, &ours[i], 4);
    differ += bits != ggml[i];
  }
  EXPECT_EQ(differ, 0u) << "of " << ours.size();
}

TEST_P(LegacyQuantTest, RoundToNearestEqualsGgmlRefBytes) {
  const LegacyType& t = type();
  const std::vector<float> input = read_as<float>("input.f32.bin");
  ASSERT_EQ(input.size(), 4u * 256);
  EXPECT_EQ(quantize_rtn(t, input), read_bytes(std::string(t.name) + ".ggml_ref.bin"));
}

TEST(LegacyQuantGolden, Q8_1ActivationsEqualGgmlRefBytes) {
  const std::vector<float> input = read_as<float>("input.f32.bin");
  std::vector<uint8_t> ours(input.size() / 32 * sizeof(block_q8_1));
  quantize_act_q8_1(input.data(), ours.data(), static_cast<int64_t>(input.size()));
  EXPECT_EQ(ours, read_bytes("q8_1.ggml_ref.bin"));
}

}  // namespace
}  // namespace squish
