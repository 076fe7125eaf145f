// Small vector loops of the calibration code (GPTQ updates, refinement, Cholesky), compiled for
// AVX-512, AVX2 and baseline x86-64 and picked at load time (GCC target_clones), since the rest of
// the library is built for baseline x86-64.
#pragma once

#include <cstdint>

namespace squish::calib {

// y[i] += a * x[i]
void axpy(float* y, float a, const float* x, int64_t n);
// sum a[i] * b[i], accumulated in double
double dot(const double* a, const double* b, int64_t n);
double dot(const float* a, const float* b, int64_t n);

}  // namespace squish::calib
