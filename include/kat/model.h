// Vision Transformer classifier with a GELU MLP (ViT) or GR-KAN (KAT) feed-forward, timm layout:
// patch embedding -> [cls] + patches + learned positions -> depth x pre-norm blocks -> final
// LayerNorm on the class token -> linear head.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "kat/config.h"
#include "kat/params.h"

namespace kat {

class VisionTransformer {
 public:
  explicit VisionTransformer(const ModelConfig& config);
  ~VisionTransformer();
  VisionTransformer(const VisionTransformer&) = delete;
  VisionTransformer& operator=(const VisionTransformer&) = delete;

  const ModelConfig& config() const { return config_; }
  Params& params() { return params_; }
  const Params& params() const { return params_; }

  // timm's init (trunc_normal(0.02) linears, zero biases, unit norms) with the rationals from
  // their init modes and, for KAT, the paper's variance-preserving init of fc1 and fc2.
  void init(uint64_t seed);

  // images: [B, C, H, W], already normalised. With labels, returns the mean loss (label smoothing
  // `smoothing`) and keeps what backward() needs; without, returns 0. `training` turns dropout and
  // drop-path on; their masks come from Rng::derive(seed, ...).
  float forward(const float* images, const int32_t* labels, int64_t B, bool training = false,
                float smoothing = 0.0f, uint64_t seed = 0);
  const float* logits() const;  // [B, num_classes] of the last forward
  const float* probs() const;   // softmax of logits, valid after a forward with labels
  // Block `layer`'s q, k, v of the last forward: [B, T, 3 * embed_dim], heads contiguous, T =
  // tokens() (for attention maps; read-only).
  const float* layer_qkv(int layer) const;
  // Accumulates parameter gradients of the last forward's mean loss into params().grads().
  void backward();

  // Bytes of activation memory planned for batch B.
  int64_t activation_bytes(int64_t B) const;

 private:
  struct Acts;
  void plan(int64_t B);

  ModelConfig config_;
  Params params_;
  std::unique_ptr<Acts> acts_;
};

// Normalises uint8 pixels [B, C, H, W] into floats: (p / 255 - mean[c]) / std[c].
void normalize_images(float* out, const uint8_t* pixels, int64_t B, const ModelConfig& c);

}  // namespace kat
