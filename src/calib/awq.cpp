#include "calib/awq.h"

#include <algorithm>
#include <cmath>

#include "calib/block_grid.h"
#include "calib/gptq.h"
#include "core/error.h"
#include "quant/quant.h"

namespace squish {

namespace {

// Output error of the plain importance-weighted quantizer on the group with columns scaled by s.
double scaled_error(const std::vector<AwqMatrix>& mats, int64_t cols, const double* h,
                    const std::vector<float>& s) {
  std::vector<float> importance(cols);
  for (int64_t j = 0; j < cols; ++j)
    importance[j] = static_cast<float>(h[j * cols + j] / (static_cast<double>(s[j]) * s[j]));
  double total = 0;
  for (const AwqMatrix& m : mats) {
    const QuantTraits* qt = quant_traits(m.type);
    if (qt == nullptr) continue;
    std::vector<float> q(static_cast<size_t>(m.rows) * cols);
#pragma omp parallel if (m.rows * cols > (1 << 16))
    {
      std::vector<float> row(cols);
      std::vector<uint8_t> packed(row_bytes(m.type, cols));
#pragma omp for schedule(static)
      for (int64_t r = 0; r < m.rows; ++r) {
        const float* w = m.w + r * cols;
        for (int64_t j = 0; j < cols; ++j) row[j] = w[j] * s[j];
        qt->quantize(row.data(), packed.data(), cols, importance.data());
        float* qr = q.data() + r * cols;
        qt->dequantize(packed.data(), qr, cols);
        for (int64_t j = 0; j < cols; ++j) qr[j] /= s[j];
      }
    }
    total += hessian_error(m.w, q.data(), m.rows, cols, h);
  }
  return total;
}

}  // namespace

AwqResult awq_search(const std::vector<AwqMatrix>& mats, int64_t cols, const double* h, int grid) {
  if (grid < 1) fail("AWQ: the alpha grid needs at least one step");
  // Channel magnitudes: root mean square activation (the Hessian's diagonal up to a constant).
  std::vector<double> mag(cols);
  double max_mag = 0;
  for (int64_t j = 0; j < cols; ++j)
    max_mag = std::max(max_mag, mag[j] = std::sqrt(h[j * cols + j]));
  if (!(max_mag > 0.0)) return {std::vector<float>(cols, 1.0f), 0, 0, 0};
  for (double& m : mag) m = std::max(m, 1e-6 * max_mag);
  AwqResult best;
  best.scale.assign(cols, 1.0f);
  best.plain_error = best.error = scaled_error(mats, cols, h, best.scale);
  std::vector<float> s(cols);
  for (int step = 1; step <= grid; ++step) {
    const double alpha = static_cast<double>(step) / grid;
    double lo = INFINITY, hi = 0;
    for (int64_t j = 0; j < cols; ++j) {
      const double v = std::pow(mag[j], alpha);
      lo = std::min(lo, v), hi = std::max(hi, v);
    }
    const double norm = std::sqrt(lo * hi);  // geometric middle at 1, as AWQ normalises
    for (int64_t j = 0; j < cols; ++j) s[j] = static_cast<float>(std::pow(mag[j], alpha) / norm);
    const double e = scaled_error(mats, cols, h, s);
    if (e < best.error) best.error = e, best.alpha = alpha, best.scale = s;
  }
  return best;
}

}  // namespace squish
