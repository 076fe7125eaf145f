// Legacy ggml block formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL): round-to-nearest and
// error-minimising quantization, dequantization, scalar dot products, activation quantizers.
//
// Layouts (see blocks.h): element j < 16 of a block is the low nibble of qs[j], element j + 16
// the high nibble; the 5-bit types keep element j's fifth bit in bit j of qh (little endian).
#include "quant/legacy.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "quant/quant.h"

// ggml's reference code is built without FMA; dequantization must match it bit for bit, so keep
// q * d + m as two roundings even when squish is built with -march=native.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace squish {

namespace {

constexpr int kBlock = 32;
constexpr int kHalf = kBlock / 2;

inline float half(uint16_t h) {
  return fp16_to_fp32(h);
}

// ggml truncates (v + offset) towards zero; v + offset >= 0 for finite inputs, so this is
// floor. Clamped so that NaN or overflow cannot reach an out-of-range conversion.
inline int trunc_clamped(float v, int hi) {
  if (!(v > 0.0f)) return 0;
  if (v >= static_cast<float>(hi)) return hi;
  return static_cast<int>(v);
}

inline void pack_nibbles(const uint8_t* l, uint8_t* qs) {
  for (int j = 0; j < kHalf; ++j) qs[j] = static_cast<uint8_t>((l[j] & 0x0F) | (l[j + kHalf] << 4));
}

// 5-bit values: low nibbles as in pack_nibbles, fifth bits into a little-endian 32-bit mask.
inline void pack_5bit(const uint8_t* l, uint8_t* qs, uint8_t* qh) {
  pack_nibbles(l, qs);
  uint32_t h = 0;
  for (int j = 0; j < kBlock; ++j) h |= static_cast<uint32_t>((l[j] >> 4) & 1) << j;
  std::memcpy(qh, &h, 4);
}

inline void unpack_nibbles(const uint8_t* qs, uint8_t* l) {
  for (int j = 0; j < kHalf; ++j) {
    l[j] = qs[j] & 0x0F;
    l[j + kHalf] = qs[j] >> 4;
  }
}

inline void unpack_5bit(const uint8_t* qs, const uint8_t* qh, uint8_t* l) {
  uint32_t h;
  std::memcpy(&h, qh, 4);
  unpack_nibbles(qs, l);
  for (int j = 0; j < kBlock; ++j) l[j] |= static_cast<uint8_t>(((h >> j) & 1) << 4);
}

// Largest-magnitude element with its sign (the first one on ties, as ggml).
inline float signed_absmax(const float* x, float* amax_out) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < kBlock; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  *amax_out = amax;
  return max;
}

// ggml's best_index_int8 on IQ4_NL's table: nearest level, the upper one on exact ties.
inline int nearest_iq4nl(float v) {
  if (!(v > kIQ4NLValues[0])) return 0;
  if (v >= kIQ4NLValues[15]) return 15;
  int k = 0;
  while (v >= kIQ4NLValues[k + 1]) ++k;
  return v - kIQ4NLValues[k] < kIQ4NLValues[k + 1] - v ? k : k + 1;
}

}  // namespace

// ============================== Round to nearest (ggml's *_ref) ==============================

namespace {

// Symmetric RTN block (Q4_0 / Q5_0): the largest magnitude maps to the most negative level
// (-8 or -16), the one without a positive twin; levels are stored offset by 2^(bits-1).
void rtn_symmetric_block(const float* x, int bits, uint16_t* d_out, uint8_t* l) {
  const int half = 1 << (bits - 1);
  float amax;
  const float max = signed_absmax(x, &amax);
  const float d = max / static_cast<float>(-half);
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  *d_out = fp32_to_fp16(d);
  for (int j = 0; j < kBlock; ++j) {
    l[j] = static_cast<uint8_t>(trunc_clamped(x[j] * id + (half + 0.5f), 2 * half - 1));
  }
}

// Asymmetric RTN block (Q4_1 / Q5_1): levels 0 .. 2^bits - 1 from the block's min to its max.
void rtn_min_max_block(const float* x, int bits, uint16_t* d_out, uint16_t* m_out, uint8_t* l) {
  const int nmax = (1 << bits) - 1;
  float min = x[0], max = x[0];
  for (int j = 1; j < kBlock; ++j) {
    min = std::min(min, x[j]);
    max = std::max(max, x[j]);
  }
  const float d = (max - min) / static_cast<float>(nmax);
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  *d_out = fp32_to_fp16(d);
  *m_out = fp32_to_fp16(min);
  for (int j = 0; j < kBlock; ++j) {
    l[j] = static_cast<uint8_t>(trunc_clamped((x[j] - min) * id + 0.5f, nmax));
  }
}

}  // namespace

void quantize_row_q4_0_rtn(const float* x, block_q4_0* y, int64_t n) {
  uint8_t l[kBlock];
  for (int64_t b = 0; b < n / kBlock; ++b, x += kBlock) {
    rtn_symmetric_block(x, 4, &y[b].d, l);
    pack_nibbles(l, y[b].qs);
  }
}

void quantize_row_q4_1_rtn(const float* x, block_q4_1* y, int64_t n) {
  uint8_t l[kBlock];
  for (int64_t b = 0; b < n / kBlock; ++b, x += kBlock) {
    rtn_min_max_block(x, 4, &y[b].d, &y[b].m, l);
    pack_nibbles(l, y[b].qs);
  }
}

void quantize_row_q5_0_rtn(const float* x, block_q5_0* y, int64_t n) {
  uint8_t l[kBlock];
  for (int64_t b = 0; b < n / kBlock; ++b, x += kBlock) {
    rtn_symmetric_block(x, 5, &y[b].d, l);
    pack_5bit(l, y[b].qs, y[b].qh);
  }
}

void quantize_row_q5_1_rtn(const float* x, block_q5_1* y, int64_t n) {
  uint8_t l[kBlock];
  for (int64_t b = 0; b < n / kBlock; ++b, x += kBlock) {
    rtn_min_max_block(x, 5, &y[b].d, &y[b].m, l);
    pack_5bit(l, y[b].qs, y[b].qh);
  }
}

namespace {

// Q8_0 / Q8_1 share this: d = amax / 127, q = round(x / d) (half away from zero, as roundf).
// Returns the float (not fp16-rounded) d, which Q8_1's s is computed from.
// ggml has two Q8 block quantizers: the reference (id = 1/d, round half away from zero) that
// quantize_row_q8_0_ref uses, and ggml-cpu's x86 one for activations (id = 127/amax, round half
// to even, the vector round instruction). They differ on rare ties; `activation` picks the latter.
inline float quantize_block_q8(const float* x, uint16_t* d_out, int8_t* qs,
                               bool activation = false) {
  float amax = 0.0f;
  for (int j = 0; j < kBlock; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127;
  const float id =
      activation ? (amax != 0.0f ? 127.0f / amax : 0.0f) : (d != 0.0f ? 1.0f / d : 0.0f);
  *d_out = fp32_to_fp16(d);
  for (int j = 0; j < kBlock; ++j) {
    // |x * id| <= 127 up to rounding; the clamp only guards against NaN / inf inputs.
    const float v = activation ? std::nearbyint(x[j] * id) : std::round(x[j] * id);
    qs[j] = static_cast<int8_t>(v >= -127.0f && v <= 127.0f ? v : v > 0 ? 127.0f : -127.0f);
  }
  return d;
}

}  // namespace

void quantize_row_q8_0_rtn(const float* x, block_q8_0* y, int64_t n) {
  for (int64_t b = 0; b < n / kBlock; ++b) quantize_block_q8(x + b * kBlock, &y[b].d, y[b].qs);
}

void quantize_row_q8_1_rtn(const float* x, block_q8_1* y, int64_t n) {
  for (int64_t b = 0; b < n / kBlock; ++b) {
    const float d = quantize_block_q8(x + b * kBlock, &y[b].d, y[b].qs);
    int sum = 0;
    for (int j = 0; j < kBlock; ++j) sum += y[b].qs[j];
    // From the unrounded d, as ggml: s feeds m_w * s_a, the min term of Q4_1 / Q5_1 dots.
    y[b].s = fp32_to_fp16(static_cast<float>(sum) * d);
  }
}

void quantize_row_iq4_nl_rtn(const float* x, block_iq4_nl* y, int64_t n) {
  for (int64_t b = 0; b < n / kBlock; ++b, x += kBlock) {
    float amax;
    const float max = signed_absmax(x, &amax);
    uint8_t l[kBlock] = {};
    float d = 0.0f;
    // ggml leaves an all-zero block's quants as whatever its scratch held (d = 0 makes them
    // irrelevant); we write zeros.
    if (amax >= 1e-15f) {
      d = max / kIQ4NLValues[0];
      const float id = 1 / d;
      float sumqx = 0, sumq2 = 0;
      for (int j = 0; j < kBlock; ++j) {
        l[j] = static_cast<uint8_t>(nearest_iq4nl(id * x[j]));
        const float q = kIQ4NLValues[l[j]];
        const float w = x[j] * x[j];  // ggml's default weighting for this type
        sumqx += w * q * x[j];
        sumq2 += w * q * q;
      }
      d = sumq2 > 0 ? sumqx / sumq2 : 0.0f;
    }
    y[b].d = fp32_to_fp16(d);
    pack_nibbles(l, y[b].qs);
  }
}

// ================================ Error-minimising search =================================
//
// For a block x[0..32) with weights w, every quantization is a scale (plus a min for the _1
// types) and one level index per element. For fixed indices the best scale is a weighted least
// squares fit, so the search is over index assignments. We take the assignments that rounding
// x / d produces as d sweeps a range around the max-maps-to-the-outermost-level scale: they only
// change where some x_j / d crosses a midpoint between two levels, so sorting those crossings
// and updating the least-squares sums at each one visits every assignment in the range exactly
// (ggml's make_qx_quants samples 19 scales of the same family). For symmetric level sets this is
// the exact optimum over the scale range: the least-squares scale of the best assignment can
// only improve when its elements are re-rounded. The few best assignments then have their scale
// rounded to fp16 (trying the fp16 neighbours too), their indices re-rounded for the rounded
// scale and refitted once, and the RTN block is kept if none beats it.

namespace {

// Round to nearest (ties to even) for |v| < 2^22: adding 1.5 * 2^23 leaves the integer in the
// low mantissa bits. std::nearbyint is a libm call on baseline x86-64 and dominated the search.
inline int round_int(float v) {
  const float t = v + 12582912.0f;
  int32_t i;
  std::memcpy(&i, &t, 4);
  return (i & 0x007fffff) - 0x00400000;
}

// Levels lo..hi (all integers), index i stands for lo + i.
struct UniformLevels {
  int lo, hi;
  int count() const { return hi - lo + 1; }
  float value(int i) const { return static_cast<float>(lo + i); }
  float mid(int i) const { return static_cast<float>(lo + i) + 0.5f; }  // between i and i + 1
  int nearest(float p) const {
    if (!(p > static_cast<float>(lo))) return 0;
    if (p >= static_cast<float>(hi)) return hi - lo;
    return round_int(p) - lo;
  }
};

struct IQ4NLLevels {
  int count() const { return 16; }
  float value(int i) const { return kIQ4NLValues[i]; }
  float mid(int i) const { return 0.5f * (kIQ4NLValues[i] + kIQ4NLValues[i + 1]); }
  int nearest(float p) const { return nearest_iq4nl(p); }
};

// Element j moves one level (step +1 / -1) once the sweep variable passes u > 0. Packed in one
// integer with u's bits on top (positive floats order like their bits), so sorting is a plain
// integer sort.
using Crossing = uint64_t;
inline Crossing crossing(float u, int j, int step) {
  uint32_t bits;
  std::memcpy(&bits, &u, 4);
  return (static_cast<uint64_t>(bits) << 32) | (static_cast<uint32_t>(j) << 8) |
         static_cast<uint32_t>(step + 1);
}
inline int crossing_element(Crossing c) {
  return static_cast<int>((c >> 8) & 0xff);
}
inline int crossing_step(Crossing c) {
  return static_cast<int>(c & 0xff) - 1;
}
constexpr int kMaxCrossingsPerElement = 24;

inline void sort_crossings(Crossing* c, int n) {
  std::sort(c, c + n);
}

// The few assignments with the largest least-squares gain (weighted squared error removed).
// Rounding the scale (and min) to fp16 perturbs near-ties, so all of them are finished and
// compared on the final error (keeping only the best costs 0.25-0.5% RMSE on Q4_0 / IQ4_NL).
struct Candidates {
  static constexpr int kKeep = 4;
  int n = 0, worst = 0;
  double gain[kKeep];
  uint8_t idx[kKeep][kBlock];
  bool wants(double g) const { return n < kKeep || g > gain[worst]; }
  void add(double g, const uint8_t* v) {  // after wants(g)
    // The families overlap (rounding from the min or the max often agree): keep distinct ones.
    for (int i = 0; i < n; ++i) {
      if (std::memcmp(idx[i], v, kBlock) == 0) return;
    }
    const int slot = n < kKeep ? n++ : worst;
    gain[slot] = g;
    std::memcpy(idx[slot], v, kBlock);
    for (int i = 0; i < n; ++i) worst = gain[i] < gain[worst] ? i : worst;
  }
};

// Assignments idx_j = nearest(sign * u * x_j) for u in [u_lo, u_hi].
template <class Levels>
void sweep_symmetric(const float* x, const float* w, const Levels& lv, float sign, float u_lo,
                     float u_hi, Candidates* found) {
  uint8_t idx[kBlock];
  Crossing cross[kBlock * kMaxCrossingsPerElement];
  int nc = 0;
  double sxq = 0, sq2 = 0;
  for (int j = 0; j < kBlock; ++j) {
    const float t = sign * x[j];
    const int i0 = lv.nearest(u_lo * t);
    idx[j] = static_cast<uint8_t>(i0);
    const double q = lv.value(i0);
    sxq += static_cast<double>(w[j]) * x[j] * q;
    sq2 += static_cast<double>(w[j]) * q * q;
    if (t == 0.0f || w[j] == 0.0f) continue;
    int made = 0;
    if (t > 0) {
      for (int i = i0; i + 1 < lv.count() && made < kMaxCrossingsPerElement; ++i, ++made) {
        const float u = lv.mid(i) / t;
        if (u > u_hi) break;
        cross[nc++] = crossing(u, j, 1);
      }
    } else {
      for (int i = i0; i > 0 && made < kMaxCrossingsPerElement; --i, ++made) {
        const float u = lv.mid(i - 1) / t;
        if (u > u_hi) break;
        cross[nc++] = crossing(u, j, -1);
      }
    }
  }
  sort_crossings(cross, nc);
  auto consider = [&] {
    if (sq2 <= 0) return;
    const double gain = sxq * sxq / sq2;
    if (found->wants(gain)) found->add(gain, idx);
  };
  consider();
  for (int c = 0; c < nc; ++c) {
    const int j = crossing_element(cross[c]);
    const double q_old = lv.value(idx[j]);
    idx[j] = static_cast<uint8_t>(idx[j] + crossing_step(cross[c]));
    const double q_new = lv.value(idx[j]);
    sxq += static_cast<double>(w[j]) * x[j] * (q_new - q_old);
    sq2 += static_cast<double>(w[j]) * (q_new * q_new - q_old * q_old);
    consider();
  }
}

// Weighted squared error of x against dequantized values v[j].
inline double weighted_error(const float* x, const float* w, const float* v) {
  double e = 0;
  for (int j = 0; j < kBlock; ++j) {
    const double diff = static_cast<double>(x[j]) - v[j];
    e += static_cast<double>(w[j]) * diff * diff;
  }
  return e;
}

// h and its finite fp16 neighbours in magnitude, same sign; returns how many (2 or 3).
inline int fp16_neighbours(uint16_t h, uint16_t* out) {
  const int mag = h & 0x7fff, sign = h & 0x8000;
  int n = 0;
  for (int i = std::max(0, mag - 1); i <= std::min(0x7bff, mag + 1); ++i) {
    out[n++] = static_cast<uint16_t>(sign | i);
  }
  return n;
}

struct SymBlock {
  uint16_t d;
  uint8_t idx[kBlock];
};

// Indices nearest to x / d, the dequantized values and the weighted error for a fixed fp16 d.
template <class Levels>
double assign_symmetric(const float* x, const float* w, const Levels& lv, uint16_t d16,
                        uint8_t* idx) {
  const float d = half(d16);
  // x * (1 / d) can pick the other level at an exact midpoint; both are nearest, and the error
  // below is computed for the level actually picked.
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  float v[kBlock];
  for (int j = 0; j < kBlock; ++j) {
    idx[j] = static_cast<uint8_t>(lv.nearest(x[j] * id));
    v[j] = lv.value(idx[j]) * d;  // exactly what dequantization computes
  }
  return weighted_error(x, w, v);
}

template <class Levels>
void fit_symmetric(const float* x, const float* w, const Levels& lv, const uint8_t* idx, float* d) {
  double sxq = 0, sq2 = 0;
  for (int j = 0; j < kBlock; ++j) {
    const double q = lv.value(idx[j]);
    sxq += static_cast<double>(w[j]) * x[j] * q;
    sq2 += static_cast<double>(w[j]) * q * q;
  }
  *d = sq2 > 0 ? static_cast<float>(sxq / sq2) : 0.0f;
}

// The error-minimising block for a symmetric-scale type; `rtn` is the baseline to beat and
// `span` the sweep range, in level units either side of the outermost level.
template <class Levels>
SymBlock search_symmetric(const float* x, const float* w, const Levels& lv, float span,
                          const SymBlock& rtn) {
  float v[kBlock];
  for (int j = 0; j < kBlock; ++j) v[j] = lv.value(rtn.idx[j]) * half(rtn.d);
  SymBlock best = rtn;
  double best_err = weighted_error(x, w, v);
  float amax;
  const float max = signed_absmax(x, &amax);
  if (!(amax > 1e-30f) || !std::isfinite(amax)) return best;

  // The largest element lands near the most negative or the most positive level (they differ
  // for the asymmetric level sets of Q4_0, Q5_0 and IQ4_NL).
  Candidates found;
  const float sgn = max > 0 ? 1.0f : -1.0f;
  const float top_neg = -lv.value(0), top_pos = lv.value(lv.count() - 1);
  sweep_symmetric(x, w, lv, -sgn, (top_neg - span) / amax, (top_neg + span) / amax, &found);
  if (top_pos != top_neg) {
    sweep_symmetric(x, w, lv, sgn, (top_pos - span) / amax, (top_pos + span) / amax, &found);
  }
  for (int c = 0; c < found.n; ++c) {
    SymBlock mine{};
    std::memcpy(mine.idx, found.idx[c], kBlock);
    double mine_err = 1e300;
    float d;
    fit_symmetric(x, w, lv, mine.idx, &d);
    uint16_t last = 0;
    for (int round = 0; round < 2; ++round) {
      const uint16_t center = fp32_to_fp16(d);
      if (round > 0 && center == last) break;  // the refit changed nothing
      last = center;
      uint16_t cand[3];
      const int nc = fp16_neighbours(center, cand);
      SymBlock trial{};
      for (int i = 0; i < nc; ++i) {
        const double err = assign_symmetric(x, w, lv, cand[i], trial.idx);
        if (err < mine_err) {
          mine_err = err;
          mine = trial;
          mine.d = cand[i];
        }
      }
      fit_symmetric(x, w, lv, mine.idx, &d);  // refit to the re-rounded indices
    }
    if (mine_err < best_err) {
      best_err = mine_err;
      best = mine;
    }
  }
  return best;
}

// ---- Scale and min (Q4_1, Q5_1): x ~ d * l + m, l in 0..nmax ----

// Weighted least squares (d, m) for fixed l; gain is the squared error it removes from the
// all-zero reconstruction: sum w x^2 - error.
struct AsymSums {
  double sw = 0, sx = 0, sl = 0, sl2 = 0, sxl = 0;
  bool solve(double* d, double* m, double* gain) const {
    const double det = sw * sl2 - sl * sl;
    if (!(sw > 0)) return false;
    if (!(det > 1e-12 * sw * sl2)) {  // all levels equal: only the mean matters
      *d = 0;
      *m = sx / sw;
      *gain = sx * sx / sw;
      return true;
    }
    *d = (sw * sxl - sx * sl) / det;
    *m = (sl2 * sx - sl * sxl) / det;
    *gain = (sw * sxl * sxl - 2 * sl * sxl * sx + sl2 * sx * sx) / det;
    return true;
  }
};

// l_j = clamp(round(u * t_j - shift)) with t_j = x_j - min (from_max false), or nmax - that
// with t_j = max - x_j (from_max true), for u in [u_lo, u_hi].
void sweep_asymmetric(const float* x, const float* w, int nmax, float origin, bool from_max,
                      float shift, float u_lo, float u_hi, Candidates* found) {
  uint8_t r[kBlock];
  Crossing cross[kBlock * kMaxCrossingsPerElement];
  int nc = 0;
  AsymSums s;
  auto level = [&](int j) { return from_max ? nmax - r[j] : r[j]; };
  for (int j = 0; j < kBlock; ++j) {
    const float t = from_max ? origin - x[j] : x[j] - origin;
    const UniformLevels lv{0, nmax};
    r[j] = static_cast<uint8_t>(lv.nearest(u_lo * t - shift));
    const double l = level(j);
    s.sw += w[j];
    s.sx += static_cast<double>(w[j]) * x[j];
    s.sl += w[j] * l;
    s.sl2 += w[j] * l * l;
    s.sxl += static_cast<double>(w[j]) * x[j] * l;
    if (!(t > 0.0f) || w[j] == 0.0f) continue;
    for (int i = r[j], made = 0; i < nmax && made < kMaxCrossingsPerElement; ++i, ++made) {
      const float u = (static_cast<float>(i) + 0.5f + shift) / t;
      if (u > u_hi) break;
      cross[nc++] = crossing(u, j, 1);  // r_j steps up; the level moves by from_max ? -1 : 1
    }
  }
  sort_crossings(cross, nc);
  auto consider = [&] {
    double d = 0, m = 0, gain = 0;
    if (s.solve(&d, &m, &gain) && found->wants(gain)) {
      uint8_t l[kBlock];
      for (int j = 0; j < kBlock; ++j) l[j] = static_cast<uint8_t>(level(j));
      found->add(gain, l);
    }
  };
  consider();
  for (int c = 0; c < nc; ++c) {
    const int j = crossing_element(cross[c]);
    const double l_old = level(j);
    ++r[j];
    const double l_new = level(j);
    s.sl += w[j] * (l_new - l_old);
    s.sl2 += w[j] * (l_new * l_new - l_old * l_old);
    s.sxl += static_cast<double>(w[j]) * x[j] * (l_new - l_old);
    consider();
  }
}

struct AsymBlock {
  uint16_t d, m;
  uint8_t l[kBlock];
};

double assign_asymmetric(const float* x, const float* w, int nmax, uint16_t d16, uint16_t m16,
                         uint8_t* l) {
  const float d = half(d16), m = half(m16);
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  const UniformLevels lv{0, nmax};
  float v[kBlock];
  for (int j = 0; j < kBlock; ++j) {
    l[j] = static_cast<uint8_t>(lv.nearest((x[j] - m) * id));
    v[j] = static_cast<float>(l[j]) * d + m;  // exactly what dequantization computes
  }
  return weighted_error(x, w, v);
}

AsymBlock search_asymmetric(const float* x, const float* w, int nmax, float span,
                            const AsymBlock& rtn) {
  float v[kBlock];
  for (int j = 0; j < kBlock; ++j) v[j] = static_cast<float>(rtn.l[j]) * half(rtn.d) + half(rtn.m);
  AsymBlock best = rtn;
  double best_err = weighted_error(x, w, v);
  float min = x[0], max = x[0];
  for (int j = 1; j < kBlock; ++j) {
    min = std::min(min, x[j]);
    max = std::max(max, x[j]);
  }
  const float range = max - min;
  if (!(range > 1e-30f) || !std::isfinite(range)) return best;

  // The min no longer pins the grid once m is fitted, so the family has two parameters; take
  // rounding up from the min and down from the max, each with the grid offset by 0 and by half
  // a step (more offsets gain < 0.05% RMSE on Gaussian data).
  Candidates found;
  const float u_lo = (nmax - span) / range, u_hi = (nmax + span) / range;
  for (const float shift : {0.0f, 0.5f}) {
    sweep_asymmetric(x, w, nmax, min, false, shift, u_lo, u_hi, &found);
    sweep_asymmetric(x, w, nmax, max, true, shift, u_lo, u_hi, &found);
  }
  for (int c = 0; c < found.n; ++c) {
    AsymBlock mine{};
    std::memcpy(mine.l, found.idx[c], kBlock);
    double mine_err = 1e300;
    uint16_t last_d = 0, last_m = 0;
    for (int round = 0; round < 2; ++round) {  // the second refits to the re-rounded levels
      AsymSums s;
      for (int j = 0; j < kBlock; ++j) {
        const double l = mine.l[j];
        s.sw += w[j];
        s.sx += static_cast<double>(w[j]) * x[j];
        s.sl += w[j] * l;
        s.sl2 += w[j] * l * l;
        s.sxl += static_cast<double>(w[j]) * x[j] * l;
      }
      double d = 0, m = 0, gain = 0;
      if (!s.solve(&d, &m, &gain)) break;
      const uint16_t d16 = fp32_to_fp16(static_cast<float>(std::max(d, 0.0)));
      const uint16_t m16 = fp32_to_fp16(static_cast<float>(m));
      if (round > 0 && d16 == last_d && m16 == last_m) break;  // the refit changed nothing
      last_d = d16, last_m = m16;
      uint16_t dc[3], mc[3];
      const int nd = fp16_neighbours(d16, dc);
      const int nm = fp16_neighbours(m16, mc);
      AsymBlock trial{};
      for (int a = 0; a < nd; ++a) {
        for (int b = 0; b < nm; ++b) {
          const double err = assign_asymmetric(x, w, nmax, dc[a], mc[b], trial.l);
          if (err < mine_err) {
            mine_err = err;
            mine = trial;
            mine.d = dc[a];
            mine.m = mc[b];
          }
        }
      }
    }
    if (mine_err < best_err) {
      best_err = mine_err;
      best = mine;
    }
  }
  return best;
}

// Per-element weights of one block. ggml's importance weighting: a weight matters in proportion
// to its importance and (softly) to its magnitude relative to the row's spread sigma2.
inline void block_weights(const float* x, const float* importance, float sigma2, float* w) {
  for (int j = 0; j < kBlock; ++j) {
    w[j] = importance != nullptr ? importance[j] * std::sqrt(sigma2 + x[j] * x[j]) : 1.0f;
  }
}

inline float row_sigma2(const float* x, int64_t n, const float* importance) {
  if (importance == nullptr) return 0.0f;
  double s = 0;
  for (int64_t j = 0; j < n; ++j) s += static_cast<double>(x[j]) * x[j];
  return static_cast<float>(s / static_cast<double>(n));
}

// Search span per type, in level units around the outermost level. Wider never hurts the result
// (more assignments are visited) but costs time linearly. Measured on Gaussian rows, 4- and 5-bit
// types stop improving at about these spans; Q8_0 keeps improving up to ~16 levels (with 255
// levels, scales a few percent off amax / 127 often line up the rest of the block better:
// span 1 gives 7.8% lower RMSE than RTN, span 8 12.4%, span 16 13.0% at twice the time).
constexpr float kSpan4 = 2.5f, kSpan5 = 3.0f, kSpan8 = 8.0f, kSpanIQ4NL = 30.0f;

}  // namespace

void quantize_row_q4_0(const float* x, void* vy, int64_t n, const float* importance) {
  auto* y = static_cast<block_q4_0*>(vy);
  const float sigma2 = row_sigma2(x, n, importance);
  const UniformLevels lv{-8, 7};
  for (int64_t b = 0; b < n / kBlock; ++b) {
    const float* xb = x + b * kBlock;
    float w[kBlock];
    block_weights(xb, importance != nullptr ? importance + b * kBlock : nullptr, sigma2, w);
    quantize_row_q4_0_rtn(xb, &y[b], kBlock);
    SymBlock rtn{y[b].d, {}};
    unpack_nibbles(y[b].qs, rtn.idx);
    const SymBlock best = search_symmetric(xb, w, lv, kSpan4, rtn);
    y[b].d = best.d;
    pack_nibbles(best.idx, y[b].qs);
  }
}

void quantize_row_q5_0(const float* x, void* vy, int64_t n, const float* importance) {
  auto* y = static_cast<block_q5_0*>(vy);
  const float sigma2 = row_sigma2(x, n, importance);
  const UniformLevels lv{-16, 15};
  for (int64_t b = 0; b < n / kBlock; ++b) {
    const float* xb = x + b * kBlock;
    float w[kBlock];
    block_weights(xb, importance != nullptr ? importance + b * kBlock : nullptr, sigma2, w);
    quantize_row_q5_0_rtn(xb, &y[b], kBlock);
    SymBlock rtn{y[b].d, {}};
    unpack_5bit(y[b].qs, y[b].qh, rtn.idx);
    const SymBlock best = search_symmetric(xb, w, lv, kSpan5, rtn);
    y[b].d = best.d;
    pack_5bit(best.idx, y[b].qs, y[b].qh);
  }
}

void quantize_row_q8_0(const float* x, void* vy, int64_t n, const float* importance) {
  auto* y = static_cast<block_q8_0*>(vy);
  const float sigma2 = row_sigma2(x, n, importance);
  const UniformLevels lv{-127, 127};
  for (int64_t b = 0; b < n / kBlock; ++b) {
    const float* xb = x + b * kBlock;
    float w[kBlock];
    block_weights(xb, importance != nullptr ? importance + b * kBlock : nullptr, sigma2, w);
    quantize_row_q8_0_rtn(xb, &y[b], kBlock);
    SymBlock rtn{y[b].d, {}};
    for (int j = 0; j < kBlock; ++j) rtn.idx[j] = static_cast<uint8_t>(y[b].qs[j] + 127);
    const SymBlock best = search_symmetric(xb, w, lv, kSpan8, rtn);
    y[b].d = best.d;
    for (int j = 0; j < kBlock; ++j) y[b].qs[j] = static_cast<int8_t>(best.idx[j] - 127);
  }
}

void quantize_row_iq4_nl(const float* x, void* vy, int64_t n, const float* importance) {
  auto* y = static_cast<block_iq4_nl*>(vy);
  const IQ4NLLevels lv;
  for (int64_t b = 0; b < n / kBlock; ++b) {
    const float* xb = x + b * kBlock;
    // ggml measures IQ4_NL's spread per block: sigma2 = 2 * mean(x^2).
    float sigma2 = 0;
    for (int j = 0; j < kBlock; ++j) sigma2 += xb[j] * xb[j];
    sigma2 *= 2.0f / kBlock;
    float w[kBlock];
    block_weights(xb, importance != nullptr ? importance + b * kBlock : nullptr, sigma2, w);
    quantize_row_iq4_nl_rtn(xb, &y[b], kBlock);
    SymBlock rtn{y[b].d, {}};
    unpack_nibbles(y[b].qs, rtn.idx);
    const SymBlock best = search_symmetric(xb, w, lv, kSpanIQ4NL, rtn);
    y[b].d = best.d;
    pack_nibbles(best.idx, y[b].qs);
  }
}

void quantize_row_q4_1(const float* x, void* vy, int64_t n, const float* importance) {
  auto* y = static_cast<block_q4_1*>(vy);
  const float sigma2 = row_sigma2(x, n, importance);
  for (int64_t b = 0; b < n / kBlock; ++b) {
    const float* xb = x + b * kBlock;
    float w[kBlock];
    block_weights(xb, importance != nullptr ? importance + b * kBlock : nullptr, sigma2, w);
    quantize_row_q4_1_rtn(xb, &y[b], kBlock);
    AsymBlock rtn{y[b].d, y[b].m, {}};
    unpack_nibbles(y[b].qs, rtn.l);
    const AsymBlock best = search_asymmetric(xb, w, 15, kSpan4, rtn);
    y[b].d = best.d;
    y[b].m = best.m;
    pack_nibbles(best.l, y[b].qs);
  }
}

void quantize_row_q5_1(const float* x, void* vy, int64_t n, const float* importance) {
  auto* y = static_cast<block_q5_1*>(vy);
  const float sigma2 = row_sigma2(x, n, importance);
  for (int64_t b = 0; b < n / kBlock; ++b) {
    const float* xb = x + b * kBlock;
    float w[kBlock];
    block_weights(xb, importance != nullptr ? importance + b * kBlock : nullptr, sigma2, w);
    quantize_row_q5_1_rtn(xb, &y[b], kBlock);
    AsymBlock rtn{y[b].d, y[b].m, {}};
    unpack_5bit(y[b].qs, y[b].qh, rtn.l);
    const AsymBlock best = search_asymmetric(xb, w, 31, kSpan5, rtn);
    y[b].d = best.d;
    y[b].m = best.m;
    pack_5bit(best.l, y[b].qs, y[b].qh);
  }
}

// ===================================== Dequantization =====================================

void dequantize_row_q4_0(const void* vx, float* y, int64_t n) {
  const auto* x = static_cast<const block_q4_0*>(vx);
  for (int64_t b = 0; b < n / kBlock; ++b, y += kBlock) {
    const float d = half(x[b].d);
    for (int j = 0; j < kHalf; ++j) {
      y[j] = static_cast<float>((x[b].qs[j] & 0x0F) - 8) * d;
      y[j + kHalf] = static_cast<float>((x[b].qs[j] >> 4) - 8) * d;
    }
  }
}

void dequantize_row_q4_1(const void* vx, float* y, int64_t n) {
  const auto* x = static_cast<const block_q4_1*>(vx);
  for (int64_t b = 0; b < n / kBlock; ++b, y += kBlock) {
    const float d = half(x[b].d), m = half(x[b].m);
    for (int j = 0; j < kHalf; ++j) {
      y[j] = static_cast<float>(x[b].qs[j] & 0x0F) * d + m;
      y[j + kHalf] = static_cast<float>(x[b].qs[j] >> 4) * d + m;
    }
  }
}

void dequantize_row_q5_0(const void* vx, float* y, int64_t n) {
  const auto* x = static_cast<const block_q5_0*>(vx);
  for (int64_t b = 0; b < n / kBlock; ++b, y += kBlock) {
    const float d = half(x[b].d);
    uint8_t l[kBlock];
    unpack_5bit(x[b].qs, x[b].qh, l);
    for (int j = 0; j < kBlock; ++j) y[j] = static_cast<float>(l[j] - 16) * d;
  }
}

void dequantize_row_q5_1(const void* vx, float* y, int64_t n) {
  const auto* x = static_cast<const block_q5_1*>(vx);
  for (int64_t b = 0; b < n / kBlock; ++b, y += kBlock) {
    const float d = half(x[b].d), m = half(x[b].m);
    uint8_t l[kBlock];
    unpack_5bit(x[b].qs, x[b].qh, l);
    for (int j = 0; j < kBlock; ++j) y[j] = static_cast<float>(l[j]) * d + m;
  }
}

void dequantize_row_q8_0(const void* vx, float* y, int64_t n) {
  const auto* x = static_cast<const block_q8_0*>(vx);
  for (int64_t b = 0; b < n / kBlock; ++b, y += kBlock) {
    const float d = half(x[b].d);
    for (int j = 0; j < kBlock; ++j) y[j] = static_cast<float>(x[b].qs[j]) * d;
  }
}

void dequantize_row_q8_1(const void* vx, float* y, int64_t n) {
  const auto* x = static_cast<const block_q8_1*>(vx);
  for (int64_t b = 0; b < n / kBlock; ++b, y += kBlock) {
    const float d = half(x[b].d);
    for (int j = 0; j < kBlock; ++j) y[j] = static_cast<float>(x[b].qs[j]) * d;
  }
}

void dequantize_row_iq4_nl(const void* vx, float* y, int64_t n) {
  const auto* x = static_cast<const block_iq4_nl*>(vx);
  for (int64_t b = 0; b < n / kBlock; ++b, y += kBlock) {
    const float d = half(x[b].d);
    for (int j = 0; j < kHalf; ++j) {
      y[j] = d * static_cast<float>(kIQ4NLValues[x[b].qs[j] & 0x0F]);
      y[j + kHalf] = d * static_cast<float>(kIQ4NLValues[x[b].qs[j] >> 4]);
    }
  }
}

// =================================== Scalar dot products ===================================

float dot_q4_0_q8_0(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const block_q4_0*>(vw);
  const auto* a = static_cast<const block_q8_0*>(va);
  float sum = 0;
  for (int64_t b = 0; b < n / kBlock; ++b) {
    int sumi = 0;
    for (int j = 0; j < kHalf; ++j) {
      sumi += ((w[b].qs[j] & 0x0F) - 8) * a[b].qs[j] + ((w[b].qs[j] >> 4) - 8) * a[b].qs[j + kHalf];
    }
    sum += half(w[b].d) * half(a[b].d) * static_cast<float>(sumi);
  }
  return sum;
}

float dot_q4_1_q8_1(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const block_q4_1*>(vw);
  const auto* a = static_cast<const block_q8_1*>(va);
  float sum = 0;
  for (int64_t b = 0; b < n / kBlock; ++b) {
    int sumi = 0;
    for (int j = 0; j < kHalf; ++j) {
      sumi += (w[b].qs[j] & 0x0F) * a[b].qs[j] + (w[b].qs[j] >> 4) * a[b].qs[j + kHalf];
    }
    // sum_j (d l_j + m) d_a q_j = d d_a sum(l q) + m (d_a sum(q)), and s = d_a sum(q).
    sum += half(w[b].d) * half(a[b].d) * static_cast<float>(sumi) + half(w[b].m) * half(a[b].s);
  }
  return sum;
}

float dot_q5_0_q8_0(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const block_q5_0*>(vw);
  const auto* a = static_cast<const block_q8_0*>(va);
  float sum = 0;
  for (int64_t b = 0; b < n / kBlock; ++b) {
    uint8_t l[kBlock];
    unpack_5bit(w[b].qs, w[b].qh, l);
    int sumi = 0;
    for (int j = 0; j < kBlock; ++j) sumi += (l[j] - 16) * a[b].qs[j];
    sum += half(w[b].d) * half(a[b].d) * static_cast<float>(sumi);
  }
  return sum;
}

float dot_q5_1_q8_1(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const block_q5_1*>(vw);
  const auto* a = static_cast<const block_q8_1*>(va);
  float sum = 0;
  for (int64_t b = 0; b < n / kBlock; ++b) {
    uint8_t l[kBlock];
    unpack_5bit(w[b].qs, w[b].qh, l);
    int sumi = 0;
    for (int j = 0; j < kBlock; ++j) sumi += l[j] * a[b].qs[j];
    sum += half(w[b].d) * half(a[b].d) * static_cast<float>(sumi) + half(w[b].m) * half(a[b].s);
  }
  return sum;
}

float dot_q8_0_q8_0(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const block_q8_0*>(vw);
  const auto* a = static_cast<const block_q8_0*>(va);
  float sum = 0;
  for (int64_t b = 0; b < n / kBlock; ++b) {
    int sumi = 0;
    for (int j = 0; j < kBlock; ++j) sumi += w[b].qs[j] * a[b].qs[j];
    sum += half(w[b].d) * half(a[b].d) * static_cast<float>(sumi);
  }
  return sum;
}

float dot_iq4_nl_q8_0(int64_t n, const void* vw, const void* va) {
  const auto* w = static_cast<const block_iq4_nl*>(vw);
  const auto* a = static_cast<const block_q8_0*>(va);
  float sum = 0;
  for (int64_t b = 0; b < n / kBlock; ++b) {
    int sumi = 0;
    for (int j = 0; j < kHalf; ++j) {
      sumi += kIQ4NLValues[w[b].qs[j] & 0x0F] * a[b].qs[j] +
              kIQ4NLValues[w[b].qs[j] >> 4] * a[b].qs[j + kHalf];
    }
    sum += half(w[b].d) * half(a[b].d) * static_cast<float>(sumi);
  }
  return sum;
}

// ================================ Activations and traits =================================

void quantize_act_q8_0(const float* x, void* y, int64_t n) {
  block_q8_0* out = static_cast<block_q8_0*>(y);
  for (int64_t b = 0; b < n / kBlock; ++b)
    quantize_block_q8(x + b * kBlock, &out[b].d, out[b].qs, true);
}

void quantize_act_q8_1(const float* x, void* y, int64_t n) {
  block_q8_1* out = static_cast<block_q8_1*>(y);
  for (int64_t b = 0; b < n / kBlock; ++b) {
    const float d = quantize_block_q8(x + b * kBlock, &out[b].d, out[b].qs, true);
    int sum = 0;
    for (int j = 0; j < kBlock; ++j) sum += out[b].qs[j];
    out[b].s = fp32_to_fp16(d * static_cast<float>(sum));
  }
}

const QuantTraits kTraitsQ4_0 = {DType::Q4_0,
                                 DType::Q8_0,
                                 quantize_row_q4_0,
                                 dequantize_row_q4_0,
                                 dot_q4_0_q8_0,
                                 kernels::dot_q4_0_q8_0_avx2,
                                 kernels::dot_q4_0_q8_0_avx512};
const QuantTraits kTraitsQ4_1 = {DType::Q4_1,
                                 DType::Q8_1,
                                 quantize_row_q4_1,
                                 dequantize_row_q4_1,
                                 dot_q4_1_q8_1,
                                 kernels::dot_q4_1_q8_1_avx2,
                                 kernels::dot_q4_1_q8_1_avx512};
const QuantTraits kTraitsQ5_0 = {DType::Q5_0,
                                 DType::Q8_0,
                                 quantize_row_q5_0,
                                 dequantize_row_q5_0,
                                 dot_q5_0_q8_0,
                                 kernels::dot_q5_0_q8_0_avx2,
                                 kernels::dot_q5_0_q8_0_avx512,
                                 kernels::dot4_q5_0_q8_0_avx512};
const QuantTraits kTraitsQ5_1 = {DType::Q5_1,
                                 DType::Q8_1,
                                 quantize_row_q5_1,
                                 dequantize_row_q5_1,
                                 dot_q5_1_q8_1,
                                 kernels::dot_q5_1_q8_1_avx2,
                                 kernels::dot_q5_1_q8_1_avx512};
const QuantTraits kTraitsQ8_0 = {DType::Q8_0,
                                 DType::Q8_0,
                                 quantize_row_q8_0,
                                 dequantize_row_q8_0,
                                 dot_q8_0_q8_0,
                                 kernels::dot_q8_0_q8_0_avx2,
                                 kernels::dot_q8_0_q8_0_avx512,
                                 kernels::dot4_q8_0_q8_0_avx512};
const QuantTraits kTraitsIQ4_NL = {DType::IQ4_NL,
                                   DType::Q8_0,
                                   quantize_row_iq4_nl,
                                   dequantize_row_iq4_nl,
                                   dot_iq4_nl_q8_0,
                                   kernels::dot_iq4_nl_q8_0_avx2,
                                   kernels::dot_iq4_nl_q8_0_avx512};

}  // namespace squish
