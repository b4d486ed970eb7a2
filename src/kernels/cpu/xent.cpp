// Softmax + cross-entropy with label smoothing, fused: one pass for the row maximum, one for the
// exponentials and their sums, one to normalise; rows in parallel.
#include <algorithm>
#include <cmath>

#include "kat/kernels.h"
#include "vec_math.h"

namespace kat {

void softmax_xent_forward(float* losses, float* probs, const float* logits, const int32_t* labels,
                          int64_t B, int64_t V, float smoothing) {
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < B; b++) {
    const float* z = logits + b * V;
    float* p = probs + b * V;
    float m = z[0];
#pragma omp simd reduction(max : m)
    for (int64_t j = 1; j < V; j++) m = std::max(m, z[j]);
    float sum = 0.0f, sum_z = 0.0f;
#pragma omp simd reduction(+ : sum, sum_z)
    for (int64_t j = 0; j < V; j++) {
      p[j] = exp_approx(z[j] - m);
      sum += p[j];
      sum_z += z[j];
    }
    const float inv = 1.0f / sum;
#pragma omp simd
    for (int64_t j = 0; j < V; j++) p[j] *= inv;
    // -log p_j = lse - z_j
    const double lse = m + std::log(static_cast<double>(sum));
    const double nll = lse - z[labels[b]];
    const double smooth = lse - static_cast<double>(sum_z) / static_cast<double>(V);
    losses[b] = static_cast<float>((1.0 - smoothing) * nll + smoothing * smooth);
  }
}

void softmax_xent_backward(float* dlogits, const float* probs, const int32_t* labels, int64_t B,
                           int64_t V, float smoothing, float scale) {
  const float off = smoothing / static_cast<float>(V);
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < B; b++) {
    float* d = dlogits + b * V;
    const float* p = probs + b * V;
#pragma omp simd
    for (int64_t j = 0; j < V; j++) d[j] += scale * (p[j] - off);
    d[labels[b]] -= scale * (1.0f - smoothing);
  }
}

}  // namespace kat
