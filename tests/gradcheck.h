// Finite-difference gradient checking shared by the kernel and model tests.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "kat/rng.h"

namespace kat::testing {

inline std::vector<float> randn(int64_t n, uint64_t seed, float scale = 1.0f) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = rng.normal() * scale;
  return v;
}

// Checks analytic[i] against central differences of loss() as x[i] moves by +-eps, for every i
// (or `samples` evenly spaced indices). loss must be a deterministic function of x.
inline void expect_gradient(const std::function<double()>& loss, std::vector<float>& x,
                            const std::vector<float>& analytic, const char* what, float eps = 1e-2f,
                            double atol = 2e-3, double rtol = 2e-2, int64_t samples = 64) {
  ASSERT_EQ(x.size(), analytic.size()) << what;
  const int64_t n = static_cast<int64_t>(x.size());
  const int64_t step = std::max<int64_t>(1, n / samples);
  int failures = 0;
  for (int64_t i = 0; i < n; i += step) {
    const float keep = x[i];
    x[i] = keep + eps;
    const double x_up = x[i], up = loss();
    x[i] = keep - eps;
    const double x_down = x[i], down = loss();
    x[i] = keep;
    const double numeric = (up - down) / (x_up - x_down);
    const double tol = atol + rtol * std::fabs(numeric);
    if (std::fabs(numeric - analytic[i]) > tol && ++failures <= 5)
      ADD_FAILURE() << what << "[" << i << "]: analytic " << analytic[i] << " numeric " << numeric;
  }
  EXPECT_EQ(failures, 0) << what;
}

// sum_i w_i y_i in double: a scalar loss whose gradient wrt y is w.
inline double dot(const std::vector<float>& w, const float* y) {
  double s = 0;
  for (size_t i = 0; i < w.size(); i++) s += static_cast<double>(w[i]) * y[i];
  return s;
}

}  // namespace kat::testing
