// Exact GELU: x * Phi(x), Phi the standard normal CDF, with a vectorisable erf.
#include "kat/kernels.h"
#include "vec_math.h"

namespace kat {

void gelu_forward(float* y, const float* x, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; i++) y[i] = 0.5f * x[i] * (1.0f + erf_approx(x[i] * 0.70710678118f));
}

void gelu_backward(float* dx, const float* dy, const float* x, int64_t n, bool accumulate) {
  constexpr float kInvSqrt2Pi = 0.3989422804014327f;
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; i++) {
    const float cdf = 0.5f * (1.0f + erf_approx(x[i] * 0.70710678118f));
    const float pdf = kInvSqrt2Pi * exp_approx(-0.5f * x[i] * x[i]);
    const float g = dy[i] * (cdf + x[i] * pdf);
    dx[i] = accumulate ? dx[i] + g : g;
  }
}

}  // namespace kat
