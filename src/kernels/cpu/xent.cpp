// Softmax + cross-entropy with label smoothing, fused: one pass for the softmax, the loss from it.
#include <algorithm>
#include <cmath>

#include "kat/kernels.h"

namespace kat {

void softmax_xent_forward(float* losses, float* probs, const float* logits, const int32_t* labels,
                          int64_t B, int64_t V, float smoothing) {
  for (int64_t b = 0; b < B; b++) {
    const float* z = logits + b * V;
    float* p = probs + b * V;
    float m = z[0];
    for (int64_t j = 1; j < V; j++) m = std::max(m, z[j]);
    double sum = 0.0, sum_z = 0.0;
    for (int64_t j = 0; j < V; j++) {
      p[j] = std::exp(z[j] - m);
      sum += p[j];
      sum_z += z[j];
    }
    const double lse = m + std::log(sum);  // log sum exp z
    for (int64_t j = 0; j < V; j++) p[j] = static_cast<float>(p[j] / sum);
    // -log p_j = lse - z_j
    const double nll = lse - z[labels[b]];
    const double smooth = lse - sum_z / static_cast<double>(V);
    losses[b] = static_cast<float>((1.0 - smoothing) * nll + smoothing * smooth);
  }
}

void softmax_xent_backward(float* dlogits, const float* probs, const int32_t* labels, int64_t B,
                           int64_t V, float smoothing, float scale) {
  const float off = smoothing / static_cast<float>(V);
  for (int64_t b = 0; b < B; b++) {
    for (int64_t j = 0; j < V; j++) {
      const float target = off + (j == labels[b] ? 1.0f - smoothing : 0.0f);
      dlogits[b * V + j] += scale * (probs[b * V + j] - target);
    }
  }
}

}  // namespace kat
