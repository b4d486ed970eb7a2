// Rotary position embedding on the packed qkv tensor: one pass over q and k, v untouched.
#include <cmath>

#include "kat/kernels.h"

namespace kat {

void rope_tables(float* cos, float* sin, int64_t positions, int64_t hd, double theta) {
  const int64_t half = hd / 2;
  for (int64_t t = 0; t < positions; t++)
    for (int64_t i = 0; i < half; i++) {
      const double angle = static_cast<double>(t) * std::pow(theta, -2.0 * i / hd);
      cos[t * half + i] = static_cast<float>(std::cos(angle));
      sin[t * half + i] = static_cast<float>(std::sin(angle));
    }
}

void rope_tables_2d(float* cos, float* sin, int64_t positions, int64_t hd, double theta,
                    int64_t width, int64_t first) {
  const int64_t half = hd / 2, quarter = hd / 4;
  for (int64_t r = 0; r < positions; r++) {
    const int64_t t = r - first;
    const int64_t y = t >= 0 ? t / width : -((-t + width - 1) / width), x = t - y * width;
    for (int64_t i = 0; i < half; i++) {
      const int64_t along = i < quarter ? y : x;
      const double angle =
          static_cast<double>(along) * std::pow(theta, -static_cast<double>(i % quarter) / quarter);
      cos[r * half + i] = static_cast<float>(std::cos(angle));
      sin[r * half + i] = static_cast<float>(std::sin(angle));
    }
  }
}

void rope_rotate(float* qkv, const float* cos, const float* sin, int64_t B, int64_t T, int64_t C,
                 int64_t H, int64_t pos0, bool inverse) {
  const int64_t hd = C / H, half = hd / 2;
  const float sign = inverse ? -1.0f : 1.0f;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < T; t++) {
      const float* c = cos + (pos0 + t) * half;
      const float* s = sin + (pos0 + t) * half;
      float* row = qkv + (b * T + t) * 3 * C;
      for (int64_t part = 0; part < 2 * H; part++) {  // q heads, then k heads
        float* x = row + part * hd;
#pragma omp simd
        for (int64_t i = 0; i < half; i++) {
          const float lo = x[i], hi = x[i + half], si = sign * s[i];
          x[i] = lo * c[i] - hi * si;
          x[i + half] = hi * c[i] + lo * si;
        }
      }
    }
}

void rope_rotate_ref(double* qkv, int64_t B, int64_t T, int64_t C, int64_t H, int64_t pos0,
                     double theta) {
  const int64_t hd = C / H, half = hd / 2;
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < T; t++)
      for (int64_t part = 0; part < 2 * H; part++) {
        double* x = qkv + (b * T + t) * 3 * C + part * hd;
        for (int64_t i = 0; i < half; i++) {
          const double angle = static_cast<double>(pos0 + t) * std::pow(theta, -2.0 * i / hd);
          const double lo = x[i], hi = x[i + half];
          x[i] = lo * std::cos(angle) - hi * std::sin(angle);
          x[i + half] = hi * std::cos(angle) + lo * std::sin(angle);
        }
      }
}

}  // namespace kat
