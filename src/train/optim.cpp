#include "kat/optim.h"

#include <cmath>

#include "kat/parallel.h"

namespace kat {

AdamW::AdamW(Params& params, AdamWConfig config) : params_(params), config_(config) {
  m_.assign(params.total(), 0.0f);
  v_.assign(params.total(), 0.0f);
  decay_.assign(params.total(), 0.0f);
  for (const ParamSpec& s : params.specs()) {
    const bool decays = s.kind == ParamKind::Weight ||
                        (s.kind == ParamKind::Rational && config.decay_rationals) ||
                        (s.kind == ParamKind::Embedding && config.decay_embeddings);
    if (decays) std::fill(decay_.begin() + s.offset, decay_.begin() + s.offset + s.size, 1.0f);
  }
}

void AdamW::step(float lr) {
  t_++;
  const float b1 = config_.beta1, b2 = config_.beta2, eps = config_.eps;
  const float bc1 = 1.0f - std::pow(b1, static_cast<float>(t_));
  const float bc2 = 1.0f - std::pow(b2, static_cast<float>(t_));
  const float step_size = lr / bc1, inv_sqrt_bc2 = 1.0f / std::sqrt(bc2);
  const float wd = lr * config_.weight_decay;
  float* w = params_.values().data();
  const float* g = params_.grads().data();
  float* m = m_.data();
  float* v = v_.data();
  const float* decay = decay_.data();
  const int64_t n = params_.total();
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; i++) {
    w[i] -= wd * decay[i] * w[i];  // decoupled: w *= 1 - lr * wd
    m[i] = b1 * m[i] + (1.0f - b1) * g[i];
    v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
    w[i] -= step_size * m[i] / (std::sqrt(v[i]) * inv_sqrt_bc2 + eps);
  }
}

float clip_grad_norm(Params& params, float max_norm) {
  const float* g = params.grads().data();
  const int64_t n = params.total();
  const double sum = parallel_sum<double>(1, [&](double* acc) {
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; i++) *acc += static_cast<double>(g[i]) * g[i];
  })[0];
  const float norm = static_cast<float>(std::sqrt(sum));
  if (max_norm > 0 && norm > max_norm) {
    const float scale = max_norm / (norm + 1e-6f);
    float* gw = params.grads().data();
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) gw[i] *= scale;
  }
  return norm;
}

float schedule_lr(int64_t step, int64_t total, int64_t warmup, float peak, float floor) {
  if (warmup > 0 && step < warmup) return peak * static_cast<float>(step + 1) / warmup;
  const int64_t span = std::max<int64_t>(1, total - warmup);
  const double progress = std::min(1.0, static_cast<double>(step - warmup) / span);
  return floor + 0.5f * (peak - floor) * static_cast<float>(1.0 + std::cos(M_PI * progress));
}

}  // namespace kat
