// GR-KAN coefficients: tabled inits, the fitter, and the variance-preserving gain.
#include <gtest/gtest.h>

#include <cmath>

#include "kat/error.h"
#include "kat/grkan.h"

namespace kat {
namespace {

double max_error_on(const RationalCoefs& k, const std::string& act, double lo, double hi) {
  double e = 0;
  for (int i = 0; i <= 600; i++) {
    const double x = lo + (hi - lo) * i / 600;
    e = std::max(e, std::fabs(rational_eval(k, x) - activation(act, x)));
  }
  return e;
}

TEST(GrKanInit, TabledFitsMatchTheirTargets) {
  EXPECT_LT(max_error_on(rational_init("identity"), "identity", -3, 3), 1e-12);
  EXPECT_LT(max_error_on(rational_init("swish"), "swish", -3, 3), 0.01);
  EXPECT_LT(max_error_on(rational_init("tanh"), "tanh", -3, 3), 0.01);
  EXPECT_LT(max_error_on(rational_init("sigmoid"), "sigmoid", -3, 3), 0.01);
  EXPECT_LT(max_error_on(rational_init("gelu_old"), "gelu", -3, 3), 0.05);
}

TEST(GrKanInit, RefittedGeluIsWithinOneHundredth) {
  const RationalFit fit = fit_rational([](double x) { return activation("gelu", x); });
  EXPECT_LT(fit.max_error, 0.01);
  EXPECT_LT(max_error_on(fit.coefs, "gelu", -3, 3), 0.01);
  // "gelu" as an init mode is this fit, not upstream's broken row.
  EXPECT_LT(max_error_on(rational_init("gelu"), "gelu", -3, 3), 0.01);
}

TEST(GrKanInit, UnknownModeIsAnError) { EXPECT_THROW(rational_init("softplus2"), Error); }

TEST(GrKanInit, SecondMomentGivesUpstreamGains) {
  // Upstream hard-codes gain^2 = 2.8178205 for swish; E[F^2] of the swish fit must give about that.
  const double swish_gain2 = 1.0 / rational_second_moment(rational_init("swish"));
  EXPECT_NEAR(swish_gain2, 2.8178205, 0.02);
  EXPECT_NEAR(rational_second_moment(rational_init("identity")), 1.0, 1e-9);
}

}  // namespace
}  // namespace kat
