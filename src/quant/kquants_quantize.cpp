// Reference quantizers of the k-quant family. Each super-block of 256 is quantized by minimising a
// weighted squared error sum_i w_i (x_i - xhat_i)^2, where xhat is exactly what dequantization
// will return, in three stages:
//
//  1. Per sub-block, a continuous scale (and, for the types with a min, an offset) by a grid
//     search over inverse scales, each with a weighted least-squares fit to the codes it
//     produces, then Lloyd iterations (re-round the codes for the fitted scale, refit) while the
//     error keeps dropping. The idea of ggml's make_qkx2/qkx3_quants and make_qx_quants.
//  2. The sub-block scales become small integers times a half-precision super-block scale. The
//     super scale is searched on a grid around max|scale| / max_code (ggml's choice, for its own
//     stage 1), each candidate judged by the element-level error of the whole super-block; ggml
//     takes the max, or judges candidates on the sub-block scales alone.
//  3. Coordinate descent on the integers (each sub-block's scale / min code moved by +-1 or +-2)
//     and a least-squares refit of the super scales with every integer fixed, keeping only
//     changes that lower the element-level error.
//
// Against ggml's quantize_row_*_ref / *_impl on the same inputs the errors come out 1-15% lower
// (tests/interop/ggml_kquant_check.cpp prints the comparison). The search costs time: about
// 4-11 M elements/s per core, from as fast as ggml (IQ4_XS) to 12x slower (Q3_K, where ggml
// only rounds). Being least-squares fits, the results shrink slightly towards zero
// (<x, xhat> / <x, x> is 0.983 for Q2_K on ggml's test data, 0.992 for ggml's absolute-deviation
// Q2_K fit), which is what minimising the squared error does.
//
// Weights: with an importance vector (e.g. an imatrix), w_i = importance_i * sqrt(sigma^2 + x_i^2)
// as in ggml (sigma^2 = mean x^2 of the super-block, times 2 except for Q2_K; Q6_K uses
// importance_i alone, as ggml does). Without one: ggml's defaults for Q2_K (|x|) and Q4_K / Q5_K
// (rms + |x|); for Q3_K, Q6_K and IQ4_XS the importance formula with unit importance,
// sqrt(sigma^2 + x^2), instead of ggml's x^2, which gives elements near zero no weight at all and
// loses to ggml on plain RMSE.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/dtype.h"
#include "core/error.h"
#include "kernels/cpu/quant_k.h"
#include "quant/blocks.h"
#include "quant/kquants.h"

namespace squish::kquant {

namespace {

constexpr float kGroupEps = 1e-15f;  // a group whose max |x| is below this is all zero
// Stage-1 grid for the types with a min: inverse scales of qmax +- 1 code in kFitSteps steps each
// way (ggml's make_qkx3_quants uses +-0.9 in 18 steps; finer grids gained nothing measurable).
constexpr int kFitSteps = 10;
// Stage-2 grid: super scale = max / (max_code * (1 + kSuperStep * k)), |k| <= kSuperSteps.
constexpr int kSuperSteps = 10;
constexpr float kSuperStep = 0.005f;

// Round half to even with the float adder: adding 1.5 * 2^23 leaves the integer in the low mantissa
// bits. Exact for |v| < 2^22, which the clamps before every use guarantee. Written on floats (no
// int conversion, no branches) so the loops using it vectorize.
inline float round_even(float v) {
  return (v + 12582912.f) - 12582912.f;
}
// NaN goes to lo, so a code computed from it stays in range.
inline float clampf(float v, float lo, float hi) {
  v = lo < v ? v : lo;
  return v < hi ? v : hi;
}
inline int nearest_int(float v) {
  return static_cast<int>(round_even(clampf(v, -4194303.f, 4194303.f)));
}

// Sums of 8 partial accumulators: loops that accumulate into acc[i % 8] vectorize, where a single
// float accumulator would pin them to a serial chain.
inline float sum8(const float* a) {
  return ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
}

// The value a half-precision super scale will have once stored (saturating instead of inf).
inline float to_half(float v) {
  v = std::min(std::max(v, -65504.f), 65504.f);
  return fp16_to_fp32(fp32_to_fp16(v));
}

inline int64_t super_blocks(int64_t n, const char* what) {
  if (n % QK_K != 0) fail("internal: {} row of {} elements is not a multiple of {}", what, n, QK_K);
  return n / QK_K;
}

// ------------------------------------------------------------------------------------------------
// Weights

enum class DefaultWeights { Abs, RmsPlusAbs, SoftAbs };

struct WeightRule {
  DefaultWeights fallback;
  float sigma_factor;     // sigma^2 = sigma_factor * mean(x^2) of the super-block
  bool importance_alone;  // w = importance (Q6_K) instead of importance * sqrt(sigma^2 + x^2)
};

void make_weights(const float* x, const float* importance, const WeightRule& rule, float* w) {
  float sum_x2 = 0;
  for (int i = 0; i < QK_K; ++i) sum_x2 += x[i] * x[i];
  const float sigma2 = rule.sigma_factor * sum_x2 / QK_K;
  if (importance != nullptr) {
    // Elements of zero importance (channels an imatrix never saw active) still get a small
    // weight, so their sub-blocks keep a sensible scale instead of an arbitrary one.
    float sum = 0;
    for (int i = 0; i < QK_K; ++i) sum += importance[i];
    const float floor = sum > 0 ? 1e-4f * sum / QK_K : 1.0f;
    for (int i = 0; i < QK_K; ++i) {
      const float imp = importance[i] + floor;
      w[i] = rule.importance_alone ? imp : imp * std::sqrt(sigma2 + x[i] * x[i]);
    }
    return;
  }
  const float rms = std::sqrt(sigma2);
  for (int i = 0; i < QK_K; ++i) {
    switch (rule.fallback) {
      case DefaultWeights::Abs:
        w[i] = std::fabs(x[i]);
        break;
      case DefaultWeights::RmsPlusAbs:
        w[i] = rms + std::fabs(x[i]);
        break;
      case DefaultWeights::SoftAbs:
        w[i] = std::sqrt(sigma2 + x[i] * x[i]);
        break;
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Types with a min (Q2_K, Q4_K, Q5_K): x ~= scale * L - min, L in [0, qmax], scale >= 0, min >= 0.

// For the codes round(clamp(a x + b, 0, qmax)) of one sub-block, the weighted sums a
// least-squares fit needs: sum w l, sum w l^2, sum w x l. The codes themselves are not kept: the
// search only needs errors, and the winner's codes are computed once at the end.
struct LineSums {
  float sl, sl2, sxl;
};
LineSums line_sums(int n, float qmax, const float* x, const float* w, float a, float b) {
  float l1[8] = {}, l2[8] = {}, xl[8] = {};
  for (int i0 = 0; i0 < n; i0 += 8) {
    for (int j = 0; j < 8; ++j) {
      const int i = i0 + j;
      const float l = round_even(clampf(a * x[i] + b, 0, qmax));
      l1[j] += w[i] * l;
      l2[j] += w[i] * l * l;
      xl[j] += w[i] * x[i] * l;
    }
  }
  return {sum8(l1), sum8(l2), sum8(xl)};
}

// Sub-block constants for stage 1: sum w, sum w x, sum w x^2.
struct SubSums {
  float sw, sx, sx2;
};

// Weighted least squares for x ~= s * L + o under o <= 0 (the stored min is -o), and its error
// expanded from the sums (good enough to rank candidates; the later stages use exact errors). The
// problem is a convex quadratic, so when the free optimum has o > 0 the constrained one lies on
// o = 0.
bool fit_line(const SubSums& k, const LineSums& c, float* s, float* o, double* err) {
  if (!(k.sw > 0)) return false;
  const double det = static_cast<double>(k.sw) * c.sl2 - static_cast<double>(c.sl) * c.sl;
  const bool spread = det > 1e-6 * k.sw * c.sl2;  // else (nearly) all codes are equal
  double ds = 0, dc = 0;
  if (spread) {
    ds = (static_cast<double>(k.sw) * c.sxl - static_cast<double>(k.sx) * c.sl) / det;
    dc = (static_cast<double>(c.sl2) * k.sx - static_cast<double>(c.sl) * c.sxl) / det;
  }
  if (!spread || dc > 0) {  // offset 0, slope alone; with every code 0, the offset alone
    dc = c.sl2 > 0 ? 0 : std::min(static_cast<double>(k.sx) / k.sw, 0.0);
    ds = c.sl2 > 0 ? static_cast<double>(c.sxl) / c.sl2 : 0;
  }
  ds = std::max(ds, 0.0);
  *s = static_cast<float>(ds);
  *o = static_cast<float>(dc);
  *err = k.sx2 - 2 * ds * c.sxl - 2 * dc * k.sx + ds * ds * c.sl2 + 2 * ds * dc * c.sl +
         dc * dc * k.sw;
  return true;
}

// Stage 1 for one sub-block: scale >= 0 and min >= 0 with x ~= scale * L - min.
void fit_scale_min(int n, int qmax, const float* x, const float* w, float* scale, float* min) {
  float lo = x[0], hi = x[0];
  SubSums k = {0, 0, 0};
  for (int i = 0; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
    k.sw += w[i];
    k.sx += w[i] * x[i];
    k.sx2 += w[i] * x[i] * x[i];
  }
  lo = std::min(lo, 0.f);  // the offset can only shift down
  *scale = 0;
  *min = -lo;
  if (!(hi - lo > kGroupEps)) return;
  const float fq = static_cast<float>(qmax);
  // Inverse scales of qmax +- 1 code over the range, each with a least-squares fit of scale and
  // offset to the codes it produces.
  double best = std::numeric_limits<double>::infinity();
  float best_s = 0, best_o = lo;
  for (int step = -kFitSteps; step <= kFitSteps; ++step) {
    const float iscale = (fq + step * (1.0f / kFitSteps)) / (hi - lo);
    float s, o;
    double err;
    if (fit_line(k, line_sums(n, fq, x, w, iscale, -iscale * lo), &s, &o, &err) && err < best) {
      best = err;
      best_s = s;
      best_o = o;
    }
  }
  // Lloyd: the codes nearest to the fitted line, then the fit for those codes, while it improves
  // (unchanged codes give the same error and end the loop).
  for (int iter = 0; iter < 6 && best_s > 0; ++iter) {
    const float inv = 1 / best_s;
    float s, o;
    double err;
    if (!fit_line(k, line_sums(n, fq, x, w, inv, -best_o * inv), &s, &o, &err) || !(err < best)) {
      break;
    }
    best = err;
    best_s = s;
    best_o = o;
  }
  *scale = best_s;
  *min = -best_o;
}

struct AsymSpec {
  int sub;   // elements per sub-block
  int nsub;  // sub-blocks per super-block
  int qmax;  // codes are 0..qmax
  int smax;  // sub-block scale and min codes are 0..smax
};

struct AsymParams {
  float d = 0, dmin = 0;  // half-representable
  uint8_t ls[16] = {}, lm[16] = {};
  float dl(int j) const { return d * static_cast<float>(ls[j]); }  // as dequantization has them
  float ml(int j) const { return dmin * static_cast<float>(lm[j]); }
};

// Error of one sub-block with the nearest codes for its dequantization constants; each value is
// computed exactly as dequantization will compute it.
float err_asym(int n, int qmax, const float* x, const float* w, float dl, float ml) {
  const float inv = dl > 0 ? 1 / dl : 0, fq = static_cast<float>(qmax);
  float acc[8] = {};
  for (int i0 = 0; i0 < n; i0 += 8) {
    for (int j = 0; j < 8; ++j) {
      const int i = i0 + j;
      const float l = round_even(clampf((x[i] + ml) * inv, 0, fq));
      const float diff = x[i] - (dl * l - ml);
      acc[j] += w[i] * diff * diff;
    }
  }
  return sum8(acc);
}

void codes_asym(const AsymSpec& p, const float* x, const AsymParams& c, uint8_t* L) {
  const float fq = static_cast<float>(p.qmax);
  for (int j = 0; j < p.nsub; ++j) {
    const float dl = c.dl(j), ml = c.ml(j), inv = dl > 0 ? 1 / dl : 0;
    for (int i = j * p.sub; i < (j + 1) * p.sub; ++i) {
      L[i] = static_cast<uint8_t>(round_even(clampf((x[i] + ml) * inv, 0, fq)));
    }
  }
}

float sub_err_asym(const AsymSpec& p, const float* x, const float* w, const AsymParams& c, int j,
                   int ls, int lm) {
  const int o = j * p.sub;
  return err_asym(p.sub, p.qmax, x + o, w + o, c.d * static_cast<float>(ls),
                  c.dmin * static_cast<float>(lm));
}

// Each sub-block's scale and min rounded to the nearest code for the given super scales.
float encode_asym(const AsymSpec& p, const float* x, const float* w, const float* scales,
                  const float* mins, AsymParams& c) {
  float err = 0;
  for (int j = 0; j < p.nsub; ++j) {
    c.ls[j] =
        static_cast<uint8_t>(c.d > 0 ? std::clamp(nearest_int(scales[j] / c.d), 0, p.smax) : 0);
    c.lm[j] =
        static_cast<uint8_t>(c.dmin > 0 ? std::clamp(nearest_int(mins[j] / c.dmin), 0, p.smax) : 0);
    err += sub_err_asym(p, x, w, c, j, c.ls[j], c.lm[j]);
  }
  return err;
}

// Stage 3: per sub-block, the best of the scale/min codes within +-1 of the current ones.
float refine_asym(const AsymSpec& p, const float* x, const float* w, AsymParams& c) {
  float total = 0;
  for (int j = 0; j < p.nsub; ++j) {
    const int ls0 = c.ls[j], lm0 = c.lm[j];
    float best = sub_err_asym(p, x, w, c, j, ls0, lm0);
    for (int ls = std::max(ls0 - 1, 0); ls <= std::min(ls0 + 1, p.smax); ++ls) {
      for (int lm = std::max(lm0 - 1, 0); lm <= std::min(lm0 + 1, p.smax); ++lm) {
        if (ls == ls0 && lm == lm0) continue;
        const float err = sub_err_asym(p, x, w, c, j, ls, lm);
        if (err < best) {
          best = err;
          c.ls[j] = static_cast<uint8_t>(ls);
          c.lm[j] = static_cast<uint8_t>(lm);
        }
      }
    }
    total += best;
  }
  return total;
}

// Stage 3: least squares for (d, dmin) with every integer fixed: x ~= d * (ls L) - dmin * lm.
bool refit_asym(const AsymSpec& p, const float* x, const float* w, const AsymParams& c, float* d,
                float* dmin) {
  uint8_t L[QK_K];
  codes_asym(p, x, c, L);
  double saa = 0, sab = 0, sbb = 0, sxa = 0, sxb = 0;
  for (int j = 0; j < p.nsub; ++j) {
    for (int i = j * p.sub; i < (j + 1) * p.sub; ++i) {
      const double a = static_cast<double>(c.ls[j]) * L[i], b = c.lm[j];
      saa += w[i] * a * a;
      sab += w[i] * a * b;
      sbb += w[i] * b * b;
      sxa += w[i] * x[i] * a;
      sxb += w[i] * x[i] * b;
    }
  }
  const double det = saa * sbb - sab * sab;
  double dd = saa > 0 ? sxa / saa : 0, dm = 0;
  if (det > 1e-12 * saa * sbb) {
    dd = (sxa * sbb - sab * sxb) / det;
    dm = (sab * sxa - saa * sxb) / det;
    if (dm < 0) {
      dm = 0;
      dd = sxa / saa;
    }
  }
  if (!(dd >= 0) || !std::isfinite(dd) || !std::isfinite(dm)) return false;
  *d = to_half(static_cast<float>(dd));
  *dmin = to_half(static_cast<float>(dm));
  return *d != c.d || *dmin != c.dmin;
}

void quantize_asym(const AsymSpec& p, const float* x, const float* w, AsymParams& out, uint8_t* L) {
  float scales[16], mins[16];
  for (int j = 0; j < p.nsub; ++j) {
    fit_scale_min(p.sub, p.qmax, x + j * p.sub, w + j * p.sub, &scales[j], &mins[j]);
  }
  const float max_scale = *std::max_element(scales, scales + p.nsub);
  const float max_min = *std::max_element(mins, mins + p.nsub);

  // Stage 2: super scales around max / smax (ggml's choice is the k = 0 point), the scale first,
  // then the min with the best scale.
  out.d = to_half(max_scale / p.smax);
  out.dmin = to_half(max_min / p.smax);
  float best = encode_asym(p, x, w, scales, mins, out);
  for (int pass = 0; pass < 2; ++pass) {
    const float base = pass == 0 ? max_scale : max_min;
    if (!(base > 0)) continue;
    for (int k = -kSuperSteps; k <= kSuperSteps; ++k) {
      if (k == 0) continue;
      AsymParams trial = out;
      (pass == 0 ? trial.d : trial.dmin) = to_half(base / (p.smax * (1 + kSuperStep * k)));
      const float err = encode_asym(p, x, w, scales, mins, trial);
      if (err < best) {
        best = err;
        out = trial;
      }
    }
  }

  // Stage 3.
  best = refine_asym(p, x, w, out);
  for (int round = 0; round < 2; ++round) {
    AsymParams trial = out;
    if (!refit_asym(p, x, w, out, &trial.d, &trial.dmin)) break;
    const float err = refine_asym(p, x, w, trial);
    if (!(err < best)) break;
    best = err;
    out = trial;
  }
  codes_asym(p, x, out, L);
}

// ------------------------------------------------------------------------------------------------
// Symmetric types (Q3_K, Q6_K, IQ4_XS): x ~= scale * value(L), with signed sub-block scales.

// Codes 0..n-1 stand for the integers lo..lo+n-1 (Q3_K: -4..3, Q6_K: -32..31).
struct UniformGrid {
  float lo, hi;
  int index(float v) const { return static_cast<int>(round_even(clampf(v, lo, hi)) - lo); }
  float value(int c) const { return static_cast<float>(c) + lo; }
  float first() const { return lo; }
  float last() const { return hi; }
  static constexpr float kSearchStep = 0.1f;  // stage-1 inverse-scale grid step, in code units
  static constexpr int kSearchSteps = 9;
};

// IQ4_XS's 16 non-linear values. Nearest index without a search: for v in [t, t+1) (t integer)
// at most one midpoint between neighbouring values can lie in the cell, because the values are
// more than 2 apart, so index = (midpoints below t) + (v above the next midpoint).
struct IQ4Lut {
  uint8_t below[242];  // t + 128 -> number of midpoints below t, t in [-128, 113]
  float mid[16];       // midpoints, and a sentinel
};
constexpr IQ4Lut make_iq4_lut() {
  IQ4Lut lut{};
  for (int k = 0; k < 15; ++k) lut.mid[k] = 0.5f * (kIQ4Values[k] + kIQ4Values[k + 1]);
  lut.mid[15] = 1e9f;
  for (int t = 0; t < 242; ++t) {
    int below = 0;
    while (below < 15 && lut.mid[below] < static_cast<float>(t - 128)) ++below;
    lut.below[t] = static_cast<uint8_t>(below);
  }
  return lut;
}
constexpr IQ4Lut kIQ4Lut = make_iq4_lut();

struct TableGrid {
  int index(float v) const {
    v = clampf(v, -128.f, 113.f);
    const int below =
        kIQ4Lut.below[static_cast<int>(v + 128.f)];  // v + 128 >= 0: truncation floors
    return below + (v > kIQ4Lut.mid[below] ? 1 : 0);
  }
  float value(int c) const { return static_cast<float>(kIQ4Values[c]); }
  float first() const { return kIQ4Values[0]; }
  float last() const { return kIQ4Values[15]; }
  static constexpr float kSearchStep = 1.0f;
  static constexpr int kSearchSteps = 7;
};

// For the codes of one sub-block at inverse scale id: sum(w x q) and sum(w q^2) over their values
// q. The least-squares scale for those codes is the ratio, and it lowers the error by
// sum(w x q)^2 / sum(w q^2), the gain the search maximises.
template <class Grid>
void gain_sums(const Grid& g, int n, const float* x, const float* w, float id, float* sxq,
               float* sqq) {
  float a[8] = {}, b[8] = {};
  for (int i0 = 0; i0 < n; i0 += 8) {
    for (int j = 0; j < 8; ++j) {
      const int i = i0 + j;
      const float q = g.value(g.index(id * x[i]));
      a[j] += w[i] * x[i] * q;
      b[j] += w[i] * q * q;
    }
  }
  *sxq = sum8(a);
  *sqq = sum8(b);
}

// Stage 1 for one sub-block: the scale that maps the largest-magnitude element near either end of
// the grid (ggml maps it to the wider, negative end only), then Lloyd iterations while the gain
// grows. Returns the scale (0 for an all-zero sub-block).
template <class Grid>
float fit_scale_sym(const Grid& g, int n, const float* x, const float* w) {
  float amax = 0, max = 0;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  if (!(amax >= kGroupEps)) return 0;
  float best_gain = -1, best_scale = 0;
  for (const float anchor : {g.first(), g.last()}) {
    for (int step = -Grid::kSearchSteps; step <= Grid::kSearchSteps; ++step) {
      float sxq, sqq;
      gain_sums(g, n, x, w, (anchor + Grid::kSearchStep * step) / max, &sxq, &sqq);
      if (sqq > 0 && sxq * sxq > best_gain * sqq) {
        best_gain = sxq * sxq / sqq;
        best_scale = sxq / sqq;
      }
    }
  }
  for (int iter = 0; iter < 6 && best_scale != 0; ++iter) {
    float sxq, sqq;
    gain_sums(g, n, x, w, 1 / best_scale, &sxq, &sqq);
    if (!(sqq > 0 && sxq * sxq > best_gain * sqq)) break;
    best_gain = sxq * sxq / sqq;
    best_scale = sxq / sqq;
  }
  return best_scale;
}

struct SymSpec {
  int sub, nsub;
  int smin, smax;  // sub-block scale codes
};

struct SymParams {
  float d = 0;
  int8_t ls[16] = {};
};

template <class Grid>
float err_sym(const Grid& g, int n, const float* x, const float* w, float dl) {
  const float inv = dl != 0 ? 1 / dl : 0;  // dl == 0: every code is the one nearest 0, value 0
  float acc[8] = {};
  for (int i0 = 0; i0 < n; i0 += 8) {
    for (int j = 0; j < 8; ++j) {
      const int i = i0 + j;
      const float diff = x[i] - dl * g.value(g.index(x[i] * inv));
      acc[j] += w[i] * diff * diff;
    }
  }
  return sum8(acc);
}

template <class Grid>
void codes_sym(const Grid& g, const SymSpec& p, const float* x, const SymParams& c, uint8_t* L) {
  for (int j = 0; j < p.nsub; ++j) {
    const float dl = c.d * static_cast<float>(c.ls[j]), inv = dl != 0 ? 1 / dl : 0;
    for (int i = j * p.sub; i < (j + 1) * p.sub; ++i)
      L[i] = static_cast<uint8_t>(g.index(x[i] * inv));
  }
}

template <class Grid>
float sub_err_sym(const Grid& g, const SymSpec& p, const float* x, const float* w, float d, int j,
                  int ls) {
  const int o = j * p.sub;
  return err_sym(g, p.sub, x + o, w + o, d * static_cast<float>(ls));
}

template <class Grid>
float encode_sym(const Grid& g, const SymSpec& p, const float* x, const float* w,
                 const float* scales, SymParams& c) {
  float err = 0;
  for (int j = 0; j < p.nsub; ++j) {
    c.ls[j] = static_cast<int8_t>(
        c.d != 0 ? std::clamp(nearest_int(scales[j] / c.d), p.smin, p.smax) : 0);
    err += sub_err_sym(g, p, x, w, c.d, j, c.ls[j]);
  }
  return err;
}

// Stage 3: per sub-block, the best scale code within +-2 of the current one.
template <class Grid>
float refine_sym(const Grid& g, const SymSpec& p, const float* x, const float* w, SymParams& c) {
  float total = 0;
  for (int j = 0; j < p.nsub; ++j) {
    const int ls0 = c.ls[j];
    float best = sub_err_sym(g, p, x, w, c.d, j, ls0);
    for (int ls = std::max(ls0 - 2, p.smin); ls <= std::min(ls0 + 2, p.smax); ++ls) {
      if (ls == ls0) continue;
      const float err = sub_err_sym(g, p, x, w, c.d, j, ls);
      if (err < best) {
        best = err;
        c.ls[j] = static_cast<int8_t>(ls);
      }
    }
    total += best;
  }
  return total;
}

template <class Grid>
void quantize_sym(const Grid& g, const SymSpec& p, const float* x, const float* w, SymParams& out,
                  uint8_t* L) {
  float scales[16];
  float max_scale = 0;
  for (int j = 0; j < p.nsub; ++j) {
    scales[j] = fit_scale_sym(g, p.sub, x + j * p.sub, w + j * p.sub);
    if (std::fabs(scales[j]) > std::fabs(max_scale)) max_scale = scales[j];
  }
  // Stage 2: the largest scale mapped near the most negative scale code (ggml's choice, k = 0 at
  // the first end) or near the most positive one.
  out.d = to_half(max_scale / p.smin);
  float best = encode_sym(g, p, x, w, scales, out);
  if (std::fabs(max_scale) >= kGroupEps) {
    for (const int end : {p.smin, p.smax}) {
      for (int k = -kSuperSteps; k <= kSuperSteps; ++k) {
        if (end == p.smin && k == 0) continue;
        SymParams trial;
        trial.d = to_half(max_scale / (end * (1 + kSuperStep * k)));
        const float err = encode_sym(g, p, x, w, scales, trial);
        if (err < best) {
          best = err;
          out = trial;
        }
      }
    }
  }
  // Stage 3: codes +-2, then least squares for d with the integers fixed.
  best = refine_sym(g, p, x, w, out);
  for (int round = 0; round < 2; ++round) {
    codes_sym(g, p, x, out, L);
    double sxa = 0, saa = 0;
    for (int i = 0; i < p.nsub * p.sub; ++i) {
      const double a = static_cast<double>(out.ls[i / p.sub]) * g.value(L[i]);
      sxa += w[i] * x[i] * a;
      saa += w[i] * a * a;
    }
    if (!(saa > 0)) break;
    SymParams trial = out;
    trial.d = to_half(static_cast<float>(sxa / saa));
    if (trial.d == out.d) break;
    const float err = refine_sym(g, p, x, w, trial);
    if (!(err < best)) break;
    best = err;
    out = trial;
  }
  codes_sym(g, p, x, out, L);
}

// ------------------------------------------------------------------------------------------------
// Packing into ggml's layouts (see blocks.h and the dequantizers in kquants.cpp).

// Q2_K / Q3_K low bits: byte l of half h holds elements 128h + l + 32k at bits 2k.
void pack_2bit(const uint8_t* L, uint8_t* qs) {
  for (int h = 0; h < 2; ++h) {
    for (int l = 0; l < 32; ++l) {
      const uint8_t* e = L + 128 * h + l;
      qs[32 * h + l] = static_cast<uint8_t>((e[0] & 3) | ((e[32] & 3) << 2) | ((e[64] & 3) << 4) |
                                            ((e[96] & 3) << 6));
    }
  }
}

template <class Block, class Fn>
void for_each_super_block(const float* x, void* vy, int64_t n, const float* importance,
                          const WeightRule& rule, const char* what, Fn&& fn) {
  auto* y = static_cast<Block*>(vy);
  float w[QK_K];
  for (int64_t i = 0, nb = super_blocks(n, what); i < nb; ++i) {
    const float* xb = x + i * QK_K;
    make_weights(xb, importance != nullptr ? importance + i * QK_K : nullptr, rule, w);
    fn(xb, w, y[i]);
  }
}

}  // namespace

void quantize_q2_K(const float* x, void* y, int64_t n, const float* importance) {
  static constexpr AsymSpec kSpec = {16, 16, 3, 15};
  for_each_super_block<block_q2_K>(x, y, n, importance, {DefaultWeights::Abs, 1.f, false}, "Q2_K",
                                   [](const float* xb, const float* w, block_q2_K& b) {
                                     AsymParams c;
                                     uint8_t L[QK_K];
                                     quantize_asym(kSpec, xb, w, c, L);
                                     b.d = fp32_to_fp16(c.d);
                                     b.dmin = fp32_to_fp16(c.dmin);
                                     for (int j = 0; j < 16; ++j)
                                       b.scales[j] = static_cast<uint8_t>(c.ls[j] | (c.lm[j] << 4));
                                     pack_2bit(L, b.qs);
                                   });
}

void quantize_q3_K(const float* x, void* y, int64_t n, const float* importance) {
  static constexpr SymSpec kSpec = {16, 16, -32, 31};
  for_each_super_block<block_q3_K>(x, y, n, importance, {DefaultWeights::SoftAbs, 2.f, false},
                                   "Q3_K", [](const float* xb, const float* w, block_q3_K& b) {
                                     SymParams c;
                                     uint8_t L[QK_K];
                                     quantize_sym(UniformGrid{-4, 3}, kSpec, xb, w, c, L);
                                     b.d = fp32_to_fp16(c.d);
                                     pack_scales_q3_K(c.ls, b.scales);
                                     // Codes are value + 4: bit 2 goes to hmask (element e: byte e
                                     // % 32, bit e / 32).
                                     std::memset(b.hmask, 0, sizeof(b.hmask));
                                     for (int e = 0; e < QK_K; ++e) {
                                       b.hmask[e % 32] |=
                                           static_cast<uint8_t>(((L[e] >> 2) & 1) << (e / 32));
                                     }
                                     pack_2bit(L, b.qs);
                                   });
}

void quantize_q4_K(const float* x, void* y, int64_t n, const float* importance) {
  static constexpr AsymSpec kSpec = {32, 8, 15, 63};
  for_each_super_block<block_q4_K>(
      x, y, n, importance, {DefaultWeights::RmsPlusAbs, 2.f, false}, "Q4_K",
      [](const float* xb, const float* w, block_q4_K& b) {
        AsymParams c;
        uint8_t L[QK_K];
        quantize_asym(kSpec, xb, w, c, L);
        b.d = fp32_to_fp16(c.d);
        b.dmin = fp32_to_fp16(c.dmin);
        pack_scale_min_k4(c.ls, c.lm, b.scales);
        for (int ch = 0; ch < 4; ++ch) {
          for (int l = 0; l < 32; ++l) {
            b.qs[32 * ch + l] = static_cast<uint8_t>(L[64 * ch + l] | (L[64 * ch + 32 + l] << 4));
          }
        }
      });
}

void quantize_q5_K(const float* x, void* y, int64_t n, const float* importance) {
  static constexpr AsymSpec kSpec = {32, 8, 31, 63};
  for_each_super_block<block_q5_K>(
      x, y, n, importance, {DefaultWeights::RmsPlusAbs, 2.f, false}, "Q5_K",
      [](const float* xb, const float* w, block_q5_K& b) {
        AsymParams c;
        uint8_t L[QK_K];
        quantize_asym(kSpec, xb, w, c, L);
        b.d = fp32_to_fp16(c.d);
        b.dmin = fp32_to_fp16(c.dmin);
        pack_scale_min_k4(c.ls, c.lm, b.scales);
        std::memset(b.qh, 0, sizeof(b.qh));
        for (int ch = 0; ch < 4; ++ch) {
          for (int l = 0; l < 32; ++l) {
            const int lo = L[64 * ch + l], hi = L[64 * ch + 32 + l];
            b.qs[32 * ch + l] = static_cast<uint8_t>((lo & 15) | ((hi & 15) << 4));
            b.qh[l] |= static_cast<uint8_t>(((lo >> 4) << (2 * ch)) | ((hi >> 4) << (2 * ch + 1)));
          }
        }
      });
}

void quantize_q6_K(const float* x, void* y, int64_t n, const float* importance) {
  static constexpr SymSpec kSpec = {16, 16, -128, 127};
  for_each_super_block<block_q6_K>(
      x, y, n, importance, {DefaultWeights::SoftAbs, 2.f, true}, "Q6_K",
      [](const float* xb, const float* w, block_q6_K& b) {
        SymParams c;
        uint8_t L[QK_K];
        quantize_sym(UniformGrid{-32, 31}, kSpec, xb, w, c, L);
        b.d = fp32_to_fp16(c.d);
        std::memcpy(b.scales, c.ls, 16);
        // Codes are value + 32. Half h: ql[64h + l] holds elements l (low nibble) and l + 64
        // (high), ql[64h + 32 + l] elements l + 32 and l + 96, qh[32h + l] their top 2 bits.
        for (int h = 0; h < 2; ++h) {
          for (int l = 0; l < 32; ++l) {
            const uint8_t* e = L + 128 * h + l;
            b.ql[64 * h + l] = static_cast<uint8_t>((e[0] & 15) | ((e[64] & 15) << 4));
            b.ql[64 * h + 32 + l] = static_cast<uint8_t>((e[32] & 15) | ((e[96] & 15) << 4));
            b.qh[32 * h + l] = static_cast<uint8_t>((e[0] >> 4) | ((e[32] >> 4) << 2) |
                                                    ((e[64] >> 4) << 4) | ((e[96] >> 4) << 6));
          }
        }
      });
}

void quantize_iq4_xs(const float* x, void* y, int64_t n, const float* importance) {
  static constexpr SymSpec kSpec = {32, 8, -32, 31};
  for_each_super_block<block_iq4_xs>(
      x, y, n, importance, {DefaultWeights::SoftAbs, 2.f, false}, "IQ4_XS",
      [](const float* xb, const float* w, block_iq4_xs& b) {
        SymParams c;
        uint8_t L[QK_K];
        quantize_sym(TableGrid{}, kSpec, xb, w, c, L);
        b.d = fp32_to_fp16(c.d);
        b.scales_h = 0;
        std::memset(b.scales_l, 0, sizeof(b.scales_l));
        for (int ib = 0; ib < 8; ++ib) {
          const int u = c.ls[ib] + 32;
          b.scales_l[ib / 2] |= static_cast<uint8_t>((u & 15) << (4 * (ib % 2)));
          b.scales_h |= static_cast<uint16_t>((u >> 4) << (2 * ib));
          for (int j = 0; j < 16; ++j) {
            b.qs[16 * ib + j] = static_cast<uint8_t>(L[32 * ib + j] | (L[32 * ib + 16 + j] << 4));
          }
        }
      });
}

}  // namespace squish::kquant
