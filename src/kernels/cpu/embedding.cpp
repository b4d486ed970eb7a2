#include <algorithm>
#include <cstring>

#include "kat/kernels.h"

namespace kat {

void embedding_forward(float* x, const float* table, const float* pos, const int32_t* tokens,
                       int64_t R, int64_t T, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; r++) {
    const float* e = table + tokens[r] * C;
    float* xr = x + r * C;
    if (pos) {
      const float* p = pos + (r % T) * C;
#pragma omp simd
      for (int64_t k = 0; k < C; k++) xr[k] = e[k] + p[k];
    } else {
      std::memcpy(xr, e, C * sizeof(float));
    }
  }
}

void embedding_backward(float* dtable, float* dpos, const float* dx, const int32_t* tokens,
                        int64_t R, int64_t T, int64_t C) {
  constexpr int64_t kSlice = 16;
#pragma omp parallel for schedule(static)
  for (int64_t k0 = 0; k0 < C; k0 += kSlice) {
    const int64_t k1 = std::min(C, k0 + kSlice);
    for (int64_t r = 0; r < R; r++) {
      const float* g = dx + r * C;
      float* e = dtable + tokens[r] * C;
      for (int64_t k = k0; k < k1; k++) e[k] += g[k];
      if (dpos) {
        float* p = dpos + (r % T) * C;
        for (int64_t k = k0; k < k1; k++) p[k] += g[k];
      }
    }
  }
}

}  // namespace kat
