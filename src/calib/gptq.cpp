#include "calib/gptq.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "calib/block_grid.h"
#include "calib/refine.h"
#include "calib/vec_ops.h"
#include "core/error.h"
#include "kernels/cpu/matmul.h"
#include "quant/quant.h"

namespace squish {

bool cholesky_lower(double* a, int n) {
  for (int j = 0; j < n; ++j) {
    double* rj = a + static_cast<size_t>(j) * n;
    const double s = rj[j] - calib::dot(rj, rj, j);
    if (!(s > 0.0) || !std::isfinite(s)) return false;
    const double ljj = std::sqrt(s);
    rj[j] = ljj;
    const double inv = 1.0 / ljj;
    for (int i = j + 1; i < n; ++i) {
      double* ri = a + static_cast<size_t>(i) * n;
      ri[j] = (ri[j] - calib::dot(ri, rj, j)) * inv;
    }
  }
  // Clear the strict upper triangle so a is exactly L.
  for (int i = 0; i < n; ++i)
    std::fill(a + static_cast<size_t>(i) * n + i + 1, a + (i + 1) * static_cast<size_t>(n), 0.0);
  return true;
}

bool inverse_cholesky_upper(const double* h, int n, std::vector<double>& u) {
  // With J the reversal permutation, J H^-1 J = (J H J)^-1 = L^-T L^-1 for L = chol(J H J), so
  // H^-1 = (J L^-1 J)^T (J L^-1 J) and U = J L^-1 J is upper triangular with a positive
  // diagonal: one Cholesky and one triangular inverse instead of inverting H explicitly.
  const size_t N = static_cast<size_t>(n);
  std::vector<double> m(N * N);
  for (size_t a = 0; a < N; ++a)
    for (size_t b = 0; b < N; ++b) m[a * N + b] = h[(N - 1 - a) * N + (N - 1 - b)];
  if (!cholesky_lower(m.data(), n)) return false;
  // Row j of xt holds column j of X = L^-1 (solve L x = e_j by forward substitution).
  std::vector<double> xt(N * N, 0.0);
#pragma omp parallel for schedule(dynamic, 8) if (n > 128)
  for (int j = 0; j < n; ++j) {
    double* x = xt.data() + static_cast<size_t>(j) * N;
    for (int i = j; i < n; ++i) {
      const double* li = m.data() + static_cast<size_t>(i) * N;
      const double s = (i == j ? 1.0 : 0.0) - calib::dot(li + j, x + j, i - j);
      x[i] = s / li[i];
    }
  }
  u.assign(N * N, 0.0);
  // U[a][b] = X[n-1-a][n-1-b] = xt[n-1-b][n-1-a].
  for (size_t a = 0; a < N; ++a)
    for (size_t b = a; b < N; ++b) u[a * N + b] = xt[(N - 1 - b) * N + (N - 1 - a)];
  for (double v : u)
    if (!std::isfinite(v)) return false;
  return true;
}

double hessian_error(const float* w, const float* q, int64_t rows, int64_t cols, const double* h) {
  std::vector<float> e(static_cast<size_t>(rows) * cols), hf(static_cast<size_t>(cols) * cols);
  for (size_t i = 0; i < e.size(); ++i) e[i] = w[i] - q[i];
  for (size_t i = 0; i < hf.size(); ++i) hf[i] = static_cast<float>(h[i]);
  std::vector<float> eh(e.size());
  matmul(e.data(), rows, hf.data(), DType::F32, cols, cols, eh.data(), cols);
  double total = 0;
  for (size_t i = 0; i < e.size(); ++i) total += static_cast<double>(e[i]) * eh[i];
  return total;
}

namespace {

// Sum over rows of a_r^T M b_r for rows x n matrices a, b and an n x n matrix m (row-major).
double row_quadratic(const float* a, const double* m, const float* b, int64_t rows, int64_t n) {
  std::vector<float> mf(static_cast<size_t>(n) * n), mb(static_cast<size_t>(rows) * n);
  for (size_t i = 0; i < mf.size(); ++i) mf[i] = static_cast<float>(m[i]);
  matmul(b, rows, mf.data(), DType::F32, n, n, mb.data(), n);  // mb[r] = M b_r
  double total = 0;
  for (size_t i = 0; i < mb.size(); ++i) total += static_cast<double>(a[i]) * mb[i];
  return total;
}

}  // namespace

void input_corrected_target(const float* w, int64_t rows, int64_t cols, const double* h,
                            const double* cross, double damp, float* target) {
  const int n = static_cast<int>(cols);
  const size_t N = static_cast<size_t>(n);
  double mean_diag = 0;
  for (size_t j = 0; j < N; ++j) mean_diag += h[j * N + j];
  mean_diag /= n;
  const double lambda = std::max(damp, 1e-6) * mean_diag;
  // The same damping retry as GPTQ: grow lambda until H + lambda I factors.
  std::vector<double> l(N * N);
  double lam = lambda;
  for (;;) {
    std::copy(h, h + N * N, l.begin());
    for (size_t j = 0; j < N; ++j) l[j * N + j] += lam;
    if (cholesky_lower(l.data(), n)) break;
    lam *= 10.0;
    if (lam > 1e6 * mean_diag) fail("GPTQ: the Hessian is not positive definite");
  }
  std::vector<double> lt(N * N);  // L^T, so both triangular solves read contiguous rows
  for (size_t i = 0; i < N; ++i)
    for (size_t k = 0; k <= i; ++k) lt[k * N + i] = l[i * N + k];
  // M = (H + lam I)^-1 (C + lam I), one column at a time: rows of mt are M's columns.
  std::vector<double> mt(N * N);
#pragma omp parallel for schedule(dynamic, 8) if (n > 128)
  for (int j = 0; j < n; ++j) {
    double* x = mt.data() + static_cast<size_t>(j) * N;
    for (size_t i = 0; i < N; ++i)
      x[i] = cross[i * N + j] + (i == static_cast<size_t>(j) ? lam : 0.0);
    for (int i = 0; i < n; ++i) {  // L y = b
      const double* li = l.data() + static_cast<size_t>(i) * N;
      x[i] = (x[i] - calib::dot(li, x, i)) / li[i];
    }
    for (int i = n - 1; i >= 0; --i) {  // L^T x = y
      const double* ui = lt.data() + static_cast<size_t>(i) * N;
      x[i] = (x[i] - calib::dot(ui + i + 1, x + i + 1, n - i - 1)) / ui[i];
    }
  }
  std::vector<float> m(N * N);  // M row-major: target_r = M w_r
  for (size_t i = 0; i < N; ++i)
    for (size_t j = 0; j < N; ++j) m[i * N + j] = static_cast<float>(mt[j * N + i]);
  matmul(w, rows, m.data(), DType::F32, cols, cols, target, cols);
}

double asymmetric_error(const float* w, const float* q, int64_t rows, int64_t cols, const double* h,
                        const double* cross, const double* hf) {
  return row_quadratic(q, h, q, rows, cols) - 2.0 * row_quadratic(q, cross, w, rows, cols) +
         row_quadratic(w, hf, w, rows, cols);
}

namespace {

// A tile of rows swept together: they share every read of U.
constexpr int kTileRows = 8;

}  // namespace

GptqStats gptq_quantize(const float* w, int64_t rows, int64_t cols, const double* h, DType type,
                        const GptqOptions& opt, uint8_t* out, float* dequant) {
  const QuantTraits* qt = quant_traits(type);
  if (qt == nullptr || !has_block_grid(type))
    fail("GPTQ: {} is not a quantized block type", dtype_name(type));
  const int qb = block_grid_size(type);
  if (cols % qb != 0)
    fail("GPTQ: {} columns are not a multiple of {}'s block {}", cols, dtype_name(type), qb);
  if (cols > (1 << 16)) fail("GPTQ: {} columns is more than this implementation handles", cols);
  const int n = static_cast<int>(cols);
  const size_t N = static_cast<size_t>(n);
  const size_t out_row = row_bytes(type, cols);
  const size_t block_bytes = traits(type).block_bytes;
  GptqStats stats;

  // Importance for choosing block scales: diag(H), floored so an unused column cannot zero a
  // block's weights entirely.
  double mean_diag = 0;
  for (int j = 0; j < n; ++j) mean_diag += h[j * N + j];
  mean_diag /= n;
  if (!(mean_diag > 0.0) || !std::isfinite(mean_diag))
    fail("GPTQ: the Hessian has no signal (mean diagonal {})", mean_diag);
  std::vector<float> importance(n);
  for (int j = 0; j < n; ++j) {
    const double d = h[j * N + j];
    if (d == 0.0) stats.dead_columns++;
    importance[j] = static_cast<float>(std::max(d, 1e-6 * mean_diag));
  }

  // Column order: natural, or decreasing diag(H) with act-order.
  std::vector<int> perm(n);
  std::iota(perm.begin(), perm.end(), 0);
  if (opt.act_order) {
    std::stable_sort(perm.begin(), perm.end(),
                     [&](int a, int b) { return h[a * N + a] > h[b * N + b]; });
  }

  // Damped, permuted Hessian -> U, the upper Cholesky factor of its inverse.
  std::vector<double> hp(N * N), u;
  double damp = opt.damp;
  for (int attempt = 0;; ++attempt) {
    for (size_t a = 0; a < N; ++a) {
      for (size_t b = 0; b < N; ++b) hp[a * N + b] = h[perm[a] * N + perm[b]];
      if (hp[a * N + a] == 0.0) hp[a * N + a] = mean_diag;  // dead column: decoupled
      hp[a * N + a] += damp * mean_diag;
    }
    if (inverse_cholesky_upper(hp.data(), n, u)) break;
    if (attempt + 1 >= opt.max_damp_tries)
      fail("GPTQ: the Hessian is not positive definite even with damping {}", damp);
    damp = damp > 0.0 ? damp * 10.0 : 1e-6;
  }
  stats.damp_used = damp;
  std::vector<float> uf(N * N);
  for (size_t i = 0; i < uf.size(); ++i) uf[i] = static_cast<float>(u[i]);

  const int n_blocks = n / qb;
  const int B = opt.act_order ? std::max(1, opt.block_size)
                              : std::max(qb, (opt.block_size + qb - 1) / qb * qb);
  const int64_t n_tiles = (rows + kTileRows - 1) / kTileRows;
  const bool parallel = rows * cols * cols > (int64_t{1} << 22);

#pragma omp parallel if (parallel)
  {
    std::vector<float> wt(kTileRows * N);  // the tile's working weights, permuted order
    std::vector<float> err(kTileRows * static_cast<size_t>(B));
    std::vector<BlockGrid> grids(static_cast<size_t>(kTileRows) * (opt.act_order ? n_blocks : 1));
    std::vector<float> tmp(qb);
#pragma omp for schedule(dynamic, 1)
    for (int64_t tile = 0; tile < n_tiles; ++tile) {
      const int64_t r0 = tile * kTileRows;
      const int nr = static_cast<int>(std::min<int64_t>(kTileRows, rows - r0));
      for (int r = 0; r < nr; ++r) {
        const float* src = w + (r0 + r) * cols;
        for (int p = 0; p < n; ++p) wt[r * N + p] = src[perm[p]];
      }
      auto grid_of = [&](int r, int block) -> BlockGrid& {
        return grids[opt.act_order ? static_cast<size_t>(r) * n_blocks + block : r];
      };
      auto block_ptr = [&](int r, int block) {
        return out + (r0 + r) * out_row + static_cast<size_t>(block) * block_bytes;
      };
      if (opt.act_order) {  // static groups: every block's scales from the original weights
        for (int r = 0; r < nr; ++r) {
          const float* src = w + (r0 + r) * cols;
          for (int blk = 0; blk < n_blocks; ++blk) {
            qt->quantize(src + blk * qb, block_ptr(r, blk), qb, importance.data() + blk * qb);
            unpack_block_grid(type, block_ptr(r, blk), grid_of(r, blk));
          }
        }
      }
      for (int b0 = 0; b0 < n; b0 += B) {
        const int b1 = std::min(n, b0 + B);
        for (int p = b0; p < b1; ++p) {
          const int col = perm[p];
          const int blk = col / qb, i = col % qb;
          if (!opt.act_order && i == 0) {
            // Entering a block: its scales from the current, error-compensated weights.
            for (int r = 0; r < nr; ++r) {
              qt->quantize(wt.data() + r * N + p, block_ptr(r, blk), qb, importance.data() + col);
              unpack_block_grid(type, block_ptr(r, blk), grid_of(r, blk));
            }
          }
          const float* up = uf.data() + static_cast<size_t>(p) * N;
          const float inv_d = 1.0f / up[p];
          for (int r = 0; r < nr; ++r) {
            float* wr = wt.data() + r * N;
            BlockGrid& g = grid_of(r, blk);
            const float v = wr[p];
            const int k = g.nearest(i, v);
            g.code[i] = static_cast<uint8_t>(k);
            const float q = g.value(i, k);
            const float e = (v - q) * inv_d;
            err[r * B + (p - b0)] = e;
            wr[p] = q;
            calib::axpy(wr + p + 1, -e, up + p + 1, b1 - p - 1);
          }
          if (!opt.act_order && i == qb - 1) {
            for (int r = 0; r < nr; ++r) pack_block_codes(type, grid_of(r, blk), block_ptr(r, blk));
          }
        }
        // Lazy batch: the block's errors reach the remaining columns in one pass.
        if (b1 < n) {
          for (int r = 0; r < nr; ++r) {
            float* wr = wt.data() + r * N;
            for (int p = b0; p < b1; ++p) {
              const float e = err[r * B + (p - b0)];
              if (e == 0.0f) continue;
              const float* up = uf.data() + static_cast<size_t>(p) * N;
              calib::axpy(wr + b1, -e, up + b1, n - b1);
            }
          }
        }
      }
      if (opt.act_order) {
        for (int r = 0; r < nr; ++r)
          for (int blk = 0; blk < n_blocks; ++blk)
            pack_block_codes(type, grid_of(r, blk), block_ptr(r, blk));
      }
    }
  }

  std::vector<float> q_own;
  float* q = dequant;
  if (q == nullptr) {
    q_own.resize(static_cast<size_t>(rows) * cols);
    q = q_own.data();
  }
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t r = 0; r < rows; ++r) qt->dequantize(out + r * out_row, q + r * cols, cols);
  if (opt.refine_sweeps > 0) {
    // The damped Hessian GPTQ worked with, in column order.
    std::vector<float> hd(N * N);
    for (size_t a = 0; a < N; ++a) {
      for (size_t b = 0; b < N; ++b) hd[a * N + b] = static_cast<float>(h[a * N + b]);
      if (h[a * N + a] == 0.0) hd[a * N + a] = static_cast<float>(mean_diag);
      hd[a * N + a] += static_cast<float>(damp * mean_diag);
    }
    const RefineStats rs =
        refine_quantized_rows(w, rows, cols, hd.data(), type, opt.refine_sweeps, out, q);
    stats.refined = rs.codes_changed + rs.scales_changed;
  }
  stats.proxy_error = hessian_error(w, q, rows, cols, h);
  if (opt.report_plain) {
    // The plain quantizer with the same importance, for the progress report.
    std::vector<uint8_t> rtn(out_row * rows);
    std::vector<float> rq(static_cast<size_t>(rows) * cols);
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t r = 0; r < rows; ++r) {
      qt->quantize(w + r * cols, rtn.data() + r * out_row, cols, importance.data());
      qt->dequantize(rtn.data() + r * out_row, rq.data() + r * cols, cols);
    }
    stats.rtn_error = hessian_error(w, rq.data(), rows, cols, h);
  }
  return stats;
}

}  // namespace squish
