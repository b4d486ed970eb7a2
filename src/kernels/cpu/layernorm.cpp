// LayerNorm over the last dimension, forward and backward.
#include <cmath>
#include <vector>

#include "kat/kernels.h"
#include "kat/parallel.h"

namespace kat {

void layernorm_forward(float* y, float* mean, float* rstd, const float* x, const float* w,
                       const float* b, int64_t R, int64_t C, float eps) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; r++) {
    const float* xr = x + r * C;
    float* yr = y + r * C;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t c = 0; c < C; c++) sum += xr[c];
    const float m = sum / static_cast<float>(C);
    float var = 0.0f;
#pragma omp simd reduction(+ : var)
    for (int64_t c = 0; c < C; c++) var += (xr[c] - m) * (xr[c] - m);
    const float s = 1.0f / std::sqrt(var / static_cast<float>(C) + eps);
#pragma omp simd
    for (int64_t c = 0; c < C; c++) yr[c] = (xr[c] - m) * s * w[c] + b[c];
    mean[r] = m;
    rstd[r] = s;
  }
}

void layernorm_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                        const float* mean, const float* rstd, const float* w, int64_t R,
                        int64_t C) {
  // Parameter gradients are summed per thread, then reduced once: no shared cell per row.
  const float* sums = parallel_sum<float>(2 * C, [&](float* pw) {
    float* pb = pw + C;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < R; r++) {
      const float* xr = x + r * C;
      const float* dyr = dy + r * C;
      float* dxr = dx + r * C;
      const float m = mean[r], s = rstd[r];
      float sum_dn = 0.0f, sum_dn_n = 0.0f;
#pragma omp simd reduction(+ : sum_dn, sum_dn_n)
      for (int64_t c = 0; c < C; c++) {
        const float n = (xr[c] - m) * s;
        const float dn = dyr[c] * w[c];
        sum_dn += dn;
        sum_dn_n += dn * n;
        pw[c] += dyr[c] * n;
        pb[c] += dyr[c];
      }
      const float mean_dn = sum_dn / static_cast<float>(C);
      const float mean_dn_n = sum_dn_n / static_cast<float>(C);
#pragma omp simd
      for (int64_t c = 0; c < C; c++) {
        const float n = (xr[c] - m) * s;
        dxr[c] += s * (dyr[c] * w[c] - mean_dn - n * mean_dn_n);
      }
    }
  });
  for (int64_t c = 0; c < C; c++) {
    dw[c] += sums[c];
    db[c] += sums[C + c];
  }
}

}  // namespace kat
