// AdamW (decoupled weight decay, PyTorch semantics), gradient-norm clipping, and the learning-rate
// schedule (linear warmup, then cosine decay).
#pragma once

#include <cstdint>
#include <vector>

#include "kat/params.h"

namespace kat {

struct AdamWConfig {
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  float weight_decay = 0.05f;
  // Decay applies to weight matrices only, unless these ask for more (timm's default excludes
  // norms, biases, embeddings; rational coefficients are excluded too).
  bool decay_rationals = false, decay_embeddings = false;
};

class AdamW {
 public:
  AdamW(Params& params, AdamWConfig config);
  // One update with learning rate lr from params.grads().
  void step(float lr);
  int64_t steps() const { return t_; }

  // State for checkpoints: first and second moments, in the parameter block's layout.
  std::vector<float>& exp_avg() { return m_; }
  std::vector<float>& exp_avg_sq() { return v_; }
  void set_steps(int64_t t) { t_ = t; }
  const AdamWConfig& config() const { return config_; }

 private:
  Params& params_;
  AdamWConfig config_;
  std::vector<float> m_, v_, decay_;  // decay_: per-parameter weight-decay factor (0 or wd)
  int64_t t_ = 0;
};

// Scales gradients so their global L2 norm is at most max_norm (max_norm <= 0: no clipping).
// Returns the norm before clipping.
float clip_grad_norm(Params& params, float max_norm);

// lr at `step` (0-based) of `total` steps: linear warmup from 0 over `warmup` steps, then cosine
// from `peak` down to `floor`.
float schedule_lr(int64_t step, int64_t total, int64_t warmup, float peak, float floor);

}  // namespace kat
