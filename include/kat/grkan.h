// GR-KAN coefficients: the tabled initialisations of upstream's init.json, a least-squares fitter
// for any activation, and the moments the variance-preserving init needs.
#pragma once

#include <array>
#include <functional>
#include <string>
#include <vector>

namespace kat {

struct RationalCoefs {
  std::array<double, 6> num{};  // a0..a5
  std::array<double, 4> den{};  // b0..b3 (the kernel uses |b_i|)
};

// F(x) for one coefficient set, in double (kernel form of the denominator).
double rational_eval(const RationalCoefs& k, double x);

// Reference activations by name: identity, relu, gelu (exact), swish (= silu), tanh, sigmoid.
std::vector<std::string> activation_names();
double activation(const std::string& name, double x);

// identity, swish, gelu_old, tanh, sigmoid: the coefficients tabled in reference/kat.md.
// gelu and relu: fitted on [-3, 3] by fit_rational (upstream's "gelu" row uses the paper's
// denominator and is wrong in the kernel form, so it is never used).
RationalCoefs rational_init(const std::string& mode);

struct RationalFit {
  RationalCoefs coefs;
  double max_error = 0, rms_error = 0;  // over the fitting grid
};
// Least squares of F to target on [lo, hi] (Levenberg-Marquardt on the kernel form, started from
// several tabled fits).
RationalFit fit_rational(const std::function<double(double)>& target, double lo = -3.0,
                         double hi = 3.0);

// E[F(x)^2] for x ~ N(0, 1), by quadrature. The linear layer after a rational gets
// Var(W) = gain^2 / fan_in with gain^2 = Var(x) / E[F(x)^2] = 1 / E[F(x)^2] (paper S3).
double rational_second_moment(const RationalCoefs& k);

}  // namespace kat
