#include "calib/refine.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "calib/block_grid.h"
#include "calib/vec_ops.h"
#include "core/error.h"
#include "kernels/cpu/matmul.h"
#include "quant/quant.h"

namespace squish {

namespace {

// Both neighbours of an fp16 value and itself.
int fp16_candidates(float target, uint16_t* out) {
  const uint16_t h = fp32_to_fp16(target);
  int n = 0;
  out[n++] = h;
  if ((h & 0x7fff) != 0x7bff) out[n++] = static_cast<uint16_t>(h + 1);
  if ((h & 0x7fff) != 0) out[n++] = static_cast<uint16_t>(h - 1);
  return n;
}

class RowRefiner {
 public:
  RowRefiner(int64_t cols, const float* h, DType type)
      : cols_(cols),
        h_(h),
        type_(type),
        bs_(block_grid_size(type)),
        n_blocks_(static_cast<int>(cols / bs_)),
        block_bytes_(traits(type).block_bytes),
        grids_(n_blocks_),
        scales_(n_blocks_),
        hu_(bs_),
        hv_(bs_),
        dq_(bs_),
        newq_(bs_),
        saved_(block_bytes_) {}

  // q: the row's dequantized values, r: H (w - q); both kept in step with the packed row.
  RefineStats run(uint8_t* packed, float* q, float* r, int rounds) {
    packed_ = packed, q_ = q, r_ = r;
    for (int b = 0; b < n_blocks_; ++b) {
      unpack_block_grid(type_, block(b), grids_[b]);
      read_block_scales(type_, block(b), scales_[b]);
    }
    RefineStats st;
    for (int round = 0; round < rounds; ++round) {
      const int64_t codes = sweep_codes();
      int64_t scales = 0;
      for (int b = 0; b < n_blocks_; ++b) {
        if (scales_[b].n_sub > 1) scales += refit_sub_scales(b);
        scales += refit_block_scalars(b);
      }
      st.codes_changed += codes;
      st.scales_changed += scales;
      if (codes == 0 && scales == 0) break;
    }
    for (int b = 0; b < n_blocks_; ++b) pack_block_codes(type_, grids_[b], block(b));
    return st;
  }

 private:
  uint8_t* block(int b) { return packed_ + static_cast<size_t>(b) * block_bytes_; }

  int64_t sweep_codes() {
    int64_t changed = 0;
    for (int64_t j = 0; j < cols_; ++j) {
      const float hjj = h_[j * cols_ + j];
      if (!(hjj > 0.0f)) continue;
      BlockGrid& g = grids_[j / bs_];
      const int i = static_cast<int>(j % bs_);
      const int k = g.nearest(i, q_[j] + r_[j] / hjj);
      if (k == g.code[i]) continue;
      const float v = g.value(i, k);
      g.code[i] = static_cast<uint8_t>(k);
      if (v == q_[j]) continue;
      const float delta = q_[j] - v;
      calib::axpy(r_, delta, h_ + j * cols_, cols_);
      q_[j] = v;
      ++changed;
    }
    return changed;
  }

  // Quadratic model of moving elements [i0, i1) of block b by a*u + c*v:
  // change in error = -2 (a u.r + c v.r) + a^2 uHu + 2ac uHv + c^2 vHv.
  struct Quad {
    double ur = 0, vr = 0, uhu = 0, uhv = 0, vhv = 0;
    double delta(double a, double c) const {
      return -2.0 * (a * ur + c * vr) + a * a * uhu + 2.0 * a * c * uhv + c * c * vhv;
    }
  };
  Quad quad(int b, int i0, int i1, const float* u, const float* v) {
    const int64_t c0 = static_cast<int64_t>(b) * bs_;
    Quad m;
    for (int i = i0; i < i1; ++i) {
      const float* hi = h_ + (c0 + i) * cols_ + c0;
      const double hu = calib::dot(hi + i0, u + i0, i1 - i0);
      const double hv = calib::dot(hi + i0, v + i0, i1 - i0);
      m.uhu += u[i] * hu, m.uhv += u[i] * hv, m.vhv += v[i] * hv;
      m.ur += u[i] * r_[c0 + i], m.vr += v[i] * r_[c0 + i];
    }
    return m;
  }

  // Writes `s` into block b, and takes it only if the exact error falls (elements [i0, i1)
  // are the only ones it can move).
  bool try_scales(int b, const BlockScales& s, int i0, int i1) {
    uint8_t* saved = saved_.data();
    std::memcpy(saved, block(b), block_bytes_);
    write_block_scales(type_, s, block(b));
    BlockGrid g;
    unpack_block_grid(type_, block(b), g);
    std::memcpy(g.code, grids_[b].code, sizeof(g.code));
    const int64_t c0 = static_cast<int64_t>(b) * bs_;
    double lin = 0, quadratic = 0;
    for (int i = i0; i < i1; ++i) {
      newq_[i] = g.value(i, g.code[i]);
      dq_[i] = newq_[i] - q_[c0 + i];
      lin += dq_[i] * r_[c0 + i];
    }
    for (int i = i0; i < i1; ++i) {
      if (dq_[i] == 0.0f) continue;
      const float* hi = h_ + (c0 + i) * cols_ + c0;
      quadratic += dq_[i] * calib::dot(hi + i0, dq_.data() + i0, i1 - i0);
    }
    if (!(quadratic - 2.0 * lin < 0.0) || !std::isfinite(quadratic)) {
      std::memcpy(block(b), saved, block_bytes_);
      return false;
    }
    for (int i = i0; i < i1; ++i) {
      if (dq_[i] == 0.0f) continue;
      calib::axpy(r_, -dq_[i], h_ + (c0 + i) * cols_, cols_);  // r = H (w - q), q grew by dq
      q_[c0 + i] = newq_[i];
    }
    std::memcpy(g.code, grids_[b].code, sizeof(g.code));
    grids_[b] = g;
    scales_[b] = s;
    return true;
  }

  // Integer sub-scale and sub-min of each sub-block, within +-2 of the current ones.
  int refit_sub_scales(int b) {
    BlockScales& s = scales_[b];
    const BlockGrid& g = grids_[b];
    const float d = fp16_to_fp32(s.d), dmin = fp16_to_fp32(s.dmin);
    int changed = 0;
    for (int j = 0; j < s.n_sub; ++j) {
      const int i0 = j * s.sub_size, i1 = i0 + s.sub_size;
      for (int i = i0; i < i1; ++i) hu_[i] = d * g.level(g.code[i]), hv_[i] = -dmin;
      const Quad m = quad(b, i0, i1, hu_.data(), hv_.data());
      double best = 0;
      int best_sc = s.sc[j], best_mn = s.mn[j];
      for (int dsc = -2; dsc <= 2; ++dsc) {
        const int sc = s.sc[j] + dsc;
        if (sc < s.sc_lo || sc > s.sc_hi) continue;
        for (int dmn = s.has_dmin ? -2 : 0; dmn <= (s.has_dmin ? 2 : 0); ++dmn) {
          const int mn = s.mn[j] + dmn;
          if (mn < s.mn_lo || mn > s.mn_hi) continue;
          const double delta = m.delta(dsc, dmn);
          if (delta < best) best = delta, best_sc = sc, best_mn = mn;
        }
      }
      if (best_sc == s.sc[j] && best_mn == s.mn[j]) continue;
      BlockScales t = s;
      t.sc[j] = best_sc, t.mn[j] = best_mn;
      changed += try_scales(b, t, i0, i1) ? 1 : 0;
    }
    return changed;
  }

  // The block's fp16 scale (and min): least squares given codes and sub-scales, then the best of
  // the fp16 neighbours of the solution.
  int refit_block_scalars(int b) {
    BlockScales& s = scales_[b];
    const BlockGrid& g = grids_[b];
    for (int i = 0; i < bs_; ++i) {
      const int sub = i / s.sub_size;
      hu_[i] = static_cast<float>(s.sc[sub]) * g.level(g.code[i]);
      hv_[i] = -static_cast<float>(s.mn[sub]);
    }
    const Quad m = quad(b, 0, bs_, hu_.data(), hv_.data());
    double a = 0, c = 0;  // the unconstrained optimum of the quadratic model
    if (s.has_dmin) {
      const double det = m.uhu * m.vhv - m.uhv * m.uhv;
      if (!(std::fabs(det) > 1e-30 * (m.uhu * m.vhv + 1e-300))) return 0;
      a = (m.ur * m.vhv - m.vr * m.uhv) / det;
      c = (m.vr * m.uhu - m.ur * m.uhv) / det;
    } else {
      if (!(m.uhu > 0.0)) return 0;
      a = m.ur / m.uhu;
    }
    const float d0 = fp16_to_fp32(s.d), m0 = fp16_to_fp32(s.dmin);
    uint16_t dc[3], mc[3];
    const int nd = fp16_candidates(static_cast<float>(d0 + a), dc);
    const int nm = s.has_dmin ? fp16_candidates(static_cast<float>(m0 + c), mc) : 1;
    if (!s.has_dmin) mc[0] = s.dmin;
    double best = 0;
    uint16_t best_d = s.d, best_m = s.dmin;
    for (int x = 0; x < nd; ++x) {
      for (int y = 0; y < nm; ++y) {
        const double delta = m.delta(fp16_to_fp32(dc[x]) - d0, fp16_to_fp32(mc[y]) - m0);
        if (delta < best) best = delta, best_d = dc[x], best_m = mc[y];
      }
    }
    if (best_d == s.d && best_m == s.dmin) return 0;
    BlockScales t = s;
    t.d = best_d, t.dmin = best_m;
    return try_scales(b, t, 0, bs_) ? 1 : 0;
  }

  int64_t cols_;
  const float* h_;
  DType type_;
  int bs_, n_blocks_;
  size_t block_bytes_;
  std::vector<BlockGrid> grids_;
  std::vector<BlockScales> scales_;
  std::vector<float> hu_, hv_, dq_, newq_;
  std::vector<uint8_t> saved_;
  uint8_t* packed_ = nullptr;
  float *q_ = nullptr, *r_ = nullptr;
};

}  // namespace

RefineStats refine_quantized_rows(const float* w, int64_t rows, int64_t cols, const float* h,
                                  DType type, int rounds, uint8_t* out, float* q) {
  if (!has_block_grid(type)) fail("internal: refinement of {} rows", dtype_name(type));
  const QuantTraits* qt = quant_traits(type);
  const size_t out_row = row_bytes(type, cols);
  std::vector<float> e(static_cast<size_t>(rows) * cols), res(e.size());
  for (size_t i = 0; i < e.size(); ++i) e[i] = w[i] - q[i];
  matmul(e.data(), rows, h, DType::F32, cols, cols, res.data(), cols);  // H symmetric
  int64_t codes = 0, scales = 0;
#pragma omp parallel reduction(+ : codes, scales) if (rows * cols * cols > (int64_t{1} << 22))
  {
    RowRefiner refiner(cols, h, type);
#pragma omp for schedule(dynamic, 4)
    for (int64_t row = 0; row < rows; ++row) {
      const RefineStats s =
          refiner.run(out + row * out_row, q + row * cols, res.data() + row * cols, rounds);
      qt->dequantize(out + row * out_row, q + row * cols, cols);
      codes += s.codes_changed;
      scales += s.scales_changed;
    }
  }
  return {codes, scales};
}

}  // namespace squish
