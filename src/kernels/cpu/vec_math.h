// Elementwise math that vectorises: written so that `#pragma omp simd` loops compile to SIMD code
// without -ffast-math (glibc's vector expf is only declared under fast-math).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace kat {

// exp(x) for float, relative error below 3e-7 on [-87, 88]; smaller x gives ~1e-38, not 0.
// Cody-Waite reduction x = n ln2 + r, |r| <= ln2 / 2, then a degree-6 Taylor polynomial in r.
#pragma omp declare simd
inline float exp_approx(float x) {
  x = std::fmin(std::fmax(x, -87.0f), 88.0f);
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);
  const float r = (x - n * 0.693145751953125f) - n * 1.42860682030941723212e-6f;
  const float p =
      1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r / 720)))));
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

}  // namespace kat
