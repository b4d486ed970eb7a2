// Finite-difference gradient checking shared by the kernel and model tests.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "kat/params.h"
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

// The same against a double-precision reference: analytic[i] - start (a kernel that accumulated
// onto gradients that began at `start`) against central differences of loss() as x[i] moves by
// +-1e-5, on about 300 evenly spaced indices.
inline void expect_reference_gradient(const std::function<double()>& loss, std::vector<double>& x,
                                      const std::vector<float>& analytic, double start,
                                      const char* what) {
  ASSERT_EQ(x.size(), analytic.size()) << what;
  const int64_t n = static_cast<int64_t>(x.size()), step = std::max<int64_t>(1, n / 300);
  for (int64_t i = 0; i < n; i += step) {
    const double keep = x[i], eps = 1e-5;
    x[i] = keep + eps;
    const double up = loss();
    x[i] = keep - eps;
    const double down = loss();
    x[i] = keep;
    const double numeric = (up - down) / (2 * eps) + start;
    ASSERT_NEAR(analytic[i], numeric, 1e-4 + 1e-3 * std::fabs(numeric)) << what << " " << i;
  }
}

// A gradient along one direction U of all inputs at once, for sequences too long to check entry by
// entry: `analytic` = <gradient, U> against the central difference of loss_at(eps), the loss with
// the inputs moved by eps U.
inline void expect_directional_derivative(const std::function<double(double)>& loss_at,
                                          double analytic, const char* what) {
  const double eps = 1e-4, numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps);
  EXPECT_NEAR(analytic, numeric, 1e-3 * (1 + std::fabs(numeric))) << what;
}

// sum_i w_i y_i in double: a scalar loss whose gradient wrt y is w.
inline double dot(const std::vector<float>& w, const float* y) {
  double s = 0;
  for (size_t i = 0; i < w.size(); i++) s += static_cast<double>(w[i]) * y[i];
  return s;
}

// Whole-model check: perturbs every parameter away from its init (so no gradient is trivially
// zero) and every rational denominator coefficient away from |b|'s kink at 0, runs
// `forward_backward` (zeroed gradients in, the model's loss out, gradients accumulated), then
// compares each parameter tensor's gradient with central differences of `loss` on 16 entries.
inline void expect_model_gradients(Params& p, const std::function<double()>& loss,
                                   const std::function<void()>& backward) {
  auto noise = randn(p.total(), 11, 0.05f);
  for (int64_t i = 0; i < p.total(); i++) p.values()[i] += noise[i];
  for (const ParamSpec& s : p.specs()) {
    if (s.name.find("weight_denominator") == std::string::npos) continue;
    float* v = p.value(p.find(s.name));
    for (int64_t i = 0; i < s.size; i++) v[i] = std::copysign(0.05f + std::fabs(v[i]), v[i]);
  }
  p.zero_grad();
  loss();
  backward();
  const std::vector<float> grads = p.grads();
  for (const ParamSpec& s : p.specs()) {
    // The loss reads the parameter through the model, so perturb in place and copy back.
    float* live = p.value(p.find(s.name));
    std::vector<float> x(live, live + s.size);
    std::vector<float> g(grads.begin() + s.offset, grads.begin() + s.offset + s.size);
    auto live_loss = [&] {
      std::copy(x.begin(), x.end(), live);
      return loss();
    };
    // Rational coefficients multiply x^5 and |x|^4: a smaller step keeps the difference linear.
    const float eps = s.kind == ParamKind::Rational ? 1e-3f : 3e-3f;
    expect_gradient(live_loss, x, g, s.name.c_str(), eps, 1e-3, 3e-2, 16);
    std::copy(x.begin(), x.end(), live);
  }
}

}  // namespace kat::testing
