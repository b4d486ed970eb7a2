// ViT / KAT classifier: forward and backward of the whole network over planned buffers.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kat/error.h"
#include "kat/kernels.h"
#include "kat/model.h"
#include "kat/parallel.h"
#include "kat/rng.h"
#include "nn/buffer_plan.h"
#include "nn/transformer_block.h"

namespace kat {
namespace {

void zero(float* p, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) p[i] = 0.0f;
}

}  // namespace

struct VisionTransformer::Acts {
  int64_t B = 0;
  FloatBuffer buf;
  float *patches, *pe, *x0;
  std::vector<BlockActs> layers;
  BlockWork work;
  float *cls, *lnf, *lnf_mean, *lnf_rstd, *logits, *probs, *losses;
  float *dres, *dlogits, *dlnf, *dcls, *dpe;
  std::vector<int32_t> labels;
  float smoothing = 0;
  bool has_loss = false, masks_on = false;
  int64_t batch = 0;  // B of the last forward
  int threads = 0;    // attention scratch is sized for this many threads
  // parameter indices
  int patch_w, patch_b, cls_token, pos_embed, norm_w, norm_b, head_w, head_b;
  std::vector<TransformerBlock> blocks;
};

VisionTransformer::VisionTransformer(const ModelConfig& config)
    : config_(config), acts_(std::make_unique<Acts>()) {
  validate(config_);
  const ModelConfig& c = config_;
  const int64_t d = c.embed_dim, p = c.patch_size;
  Acts& a = *acts_;
  a.cls_token = params_.add("cls_token", {1, 1, d}, ParamKind::Embedding);
  a.pos_embed = params_.add("pos_embed", {1, c.tokens(), d}, ParamKind::Embedding);
  a.patch_w = params_.add("patch_embed.proj.weight", {d, c.in_chans, p, p}, ParamKind::Weight);
  a.patch_b = params_.add("patch_embed.proj.bias", {d}, ParamKind::Bias);
  BlockShape shape;
  shape.dim = d, shape.hidden = c.hidden(), shape.heads = c.num_heads, shape.ffn = c.ffn;
  shape.groups = c.rational_groups, shape.eps = c.layernorm_eps;
  shape.mixer = c.mixer, shape.window = mixer_window(c.mixer, c.window, c.tokens());
  for (int l = 0; l < c.depth; l++)
    a.blocks.emplace_back(params_, "blocks." + std::to_string(l) + ".", kTimmBlockNames, shape);
  const std::string final_norm = c.avg_pool() ? "fc_norm" : "norm";  // timm's names
  a.norm_w = params_.add(final_norm + ".weight", {d}, ParamKind::Norm);
  a.norm_b = params_.add(final_norm + ".bias", {d}, ParamKind::Norm);
  a.head_w = params_.add("head.weight", {c.num_classes, d}, ParamKind::Weight);
  a.head_b = params_.add("head.bias", {c.num_classes}, ParamKind::Bias);
  params_.allocate();
}

VisionTransformer::~VisionTransformer() = default;

void VisionTransformer::init(uint64_t seed) {
  const ModelConfig& c = config_;
  Acts& a = *acts_;
  Rng rng = Rng::derive(seed, /*purpose=*/1);
  auto fill_normal = [&](int i, float std, bool truncate) {
    float* v = params_.value(i);
    for (int64_t k = 0; k < params_.specs()[i].size; k++)
      v[k] = truncate ? rng.trunc_normal(std, -2.0f, 2.0f) : rng.normal() * std;
  };
  auto fill = [&](int i, float value) {
    float* v = params_.value(i);
    std::fill(v, v + params_.specs()[i].size, value);
  };
  fill_normal(a.cls_token, 1e-6f, false);
  fill_normal(a.pos_embed, 0.02f, true);
  {  // patch embedding: PyTorch's Conv2d default, U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    const float bound =
        1.0f / std::sqrt(static_cast<float>(c.in_chans * c.patch_size * c.patch_size));
    for (int i : {a.patch_w, a.patch_b}) {
      float* v = params_.value(i);
      for (int64_t k = 0; k < params_.specs()[i].size; k++) v[k] = (2 * rng.uniform() - 1) * bound;
    }
  }
  const BlockInitStd std = TransformerBlock::feed_forward_std(a.blocks[0].shape(), c.act_init);
  for (const TransformerBlock& b : a.blocks) b.init(params_, rng, std, true, c.act_init);
  fill(a.norm_w, 1), fill(a.norm_b, 0);
  fill_normal(a.head_w, 0.02f, true), fill(a.head_b, 0);
}

void VisionTransformer::plan(int64_t B) {
  Acts& a = *acts_;
  // Planned again when the threads change: the mixers' scratch depends on them.
  if (a.B >= B && a.threads == num_threads()) return;
  const ModelConfig& c = config_;
  const int64_t T = c.tokens(), N = c.num_patches(), d = c.embed_dim;
  const int64_t V = c.num_classes, BT = B * T;
  const int64_t cpp = static_cast<int64_t>(c.in_chans) * c.patch_size * c.patch_size;
  const bool masks = c.drop_rate > 0 || c.drop_path_rate > 0;
  BufferPlan take;
  take(a.patches, B * N * cpp), take(a.pe, B * N * d), take(a.x0, BT * d);
  a.layers.assign(c.depth, BlockActs{});
  for (int l = 0; l < c.depth; l++) a.blocks[l].plan_acts(take, a.layers[l], BT, B, masks);
  take(a.cls, B * d), take(a.lnf, B * d), take(a.lnf_mean, B), take(a.lnf_rstd, B);
  take(a.logits, B * V), take(a.probs, B * V), take(a.losses, B);
  take(a.dres, BT * d), take(a.dlogits, B * V), take(a.dlnf, B * d), take(a.dcls, B * d);
  take(a.dpe, B * N * d);
  TransformerBlock::plan_work(take, a.work, BT, a.blocks[0].shape(),
                              a.blocks[0].mixer_scratch_floats(B, T));
  take.allocate(a.buf);
  a.B = B;
  a.threads = num_threads();
}

int64_t VisionTransformer::activation_bytes(int64_t) const {
  return static_cast<int64_t>(acts_->buf.size() * sizeof(float));
}

const float* VisionTransformer::logits() const { return acts_->logits; }
const float* VisionTransformer::probs() const { return acts_->probs; }
const float* VisionTransformer::layer_qkv(int layer) const {
  check(layer >= 0 && layer < config_.depth && acts_->B > 0, "layer_qkv: no layer ", layer,
        " after a forward");
  return acts_->layers[layer].qkv;
}

float VisionTransformer::forward(const float* images, const int32_t* labels, int64_t B,
                                 bool training, float smoothing, uint64_t seed) {
  check(B > 0, "forward: empty batch");
  plan(B);
  Acts& a = *acts_;
  const ModelConfig& c = config_;
  Params& P = params_;
  const int64_t T = c.tokens(), N = c.num_patches(), G = c.grid(), d = c.embed_dim;
  const int64_t V = c.num_classes;
  const int64_t p = c.patch_size, Cin = c.in_chans, S = c.img_size, cpp = Cin * p * p;

  // Patch embedding as a GEMM over patches: patches[b*N + n, (ch, ky, kx)].
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; b++) {
    for (int64_t n = 0; n < N; n++) {
      const int64_t gy = n / G, gx = n % G;
      float* dst = a.patches + (b * N + n) * cpp;
      for (int64_t ch = 0; ch < Cin; ch++)
        for (int64_t ky = 0; ky < p; ky++)
          std::memcpy(dst + (ch * p + ky) * p,
                      images + ((b * Cin + ch) * S + gy * p + ky) * S + gx * p, p * sizeof(float));
    }
  }
  linear_forward(a.pe, a.patches, P.value(a.patch_w), P.value(a.patch_b), B * N, cpp, d);
  const float* cls = P.value(a.cls_token);
  const float* pos = P.value(a.pos_embed);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; b++) {
    for (int64_t t = 0; t < T; t++) {
      const float* src = t == 0 ? cls : a.pe + (b * N + t - 1) * d;
      float* dst = a.x0 + (b * T + t) * d;
      for (int64_t k = 0; k < d; k++) dst[k] = src[k] + pos[t * d + k];
    }
  }

  const bool drop = training && (c.drop_rate > 0 || c.drop_path_rate > 0);
  const float* x = a.x0;
  for (int l = 0; l < c.depth; l++) {
    BlockActs& L = a.layers[l];
    if (drop) {
      // Per element: dropout keep / (1 - p); per sample: drop-path keep / (1 - rate_l).
      const float rate = c.depth > 1 ? c.drop_path_rate * l / (c.depth - 1) : c.drop_path_rate;
      for (int branch = 0; branch < 2; branch++) {
        float* m = branch == 0 ? L.mask1 : L.mask2;
        Rng rng = Rng::derive(seed, 100 + 2 * l + branch);
        for (int64_t b = 0; b < B; b++) {
          const float path = rng.uniform() < rate ? 0.0f : 1.0f / (1.0f - rate);
          for (int64_t k = 0; k < T * d; k++) {
            const float keep = rng.uniform() < c.drop_rate ? 0.0f : 1.0f / (1.0f - c.drop_rate);
            m[b * T * d + k] = path * keep;
          }
        }
      }
    }
    BlockActs acts = L;
    if (!drop) acts.mask1 = acts.mask2 = nullptr;  // planned, but off outside training
    a.blocks[l].forward(P, x, acts, a.work.attn_scratch, B, T, Rope{});
    x = L.res2;
  }
  // Pooling: the class token, or the mean of the patch tokens (LayerNorm is per token, so
  // normalising before or after taking the class token is the same).
  if (c.avg_pool()) {
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < B; b++) {
      float* out = a.cls + b * d;
      std::fill(out, out + d, 0.0f);
      for (int64_t t = 1; t < T; t++)
        for (int64_t k = 0; k < d; k++) out[k] += x[(b * T + t) * d + k];
      for (int64_t k = 0; k < d; k++) out[k] /= static_cast<float>(T - 1);
    }
  } else {
    for (int64_t b = 0; b < B; b++) std::memcpy(a.cls + b * d, x + b * T * d, d * sizeof(float));
  }
  layernorm_forward(a.lnf, a.lnf_mean, a.lnf_rstd, a.cls, P.value(a.norm_w), P.value(a.norm_b), B,
                    d, c.layernorm_eps);
  linear_forward(a.logits, a.lnf, P.value(a.head_w), P.value(a.head_b), B, d, V);
  a.has_loss = labels != nullptr;
  a.masks_on = drop;
  if (!labels) return 0.0f;
  for (int64_t b = 0; b < B; b++)
    check(labels[b] >= 0 && labels[b] < V, "label ", labels[b], " is outside 0..", V - 1);
  a.labels.assign(labels, labels + B);
  a.smoothing = smoothing;
  a.batch = B;
  softmax_xent_forward(a.losses, a.probs, a.logits, labels, B, V, smoothing);
  double sum = 0;
  for (int64_t b = 0; b < B; b++) sum += a.losses[b];
  return static_cast<float>(sum / B);
}

void VisionTransformer::backward() {
  Acts& a = *acts_;
  check(a.has_loss, "backward() needs a forward() with labels first");
  const ModelConfig& c = config_;
  Params& P = params_;
  const int64_t B = a.batch, T = c.tokens(), N = c.num_patches(), d = c.embed_dim;
  const int64_t V = c.num_classes, BT = B * T;
  const int64_t cpp = static_cast<int64_t>(c.in_chans) * c.patch_size * c.patch_size;

  // Head: loss -> logits -> final norm of the class token -> residual stream row 0.
  zero(a.dlogits, B * V);
  softmax_xent_backward(a.dlogits, a.probs, a.labels.data(), B, V, a.smoothing, 1.0f / B);
  zero(a.dlnf, B * d);
  linear_backward(a.dlnf, P.grad(a.head_w), P.grad(a.head_b), a.dlogits, a.lnf, P.value(a.head_w),
                  B, d, V);
  zero(a.dcls, B * d);
  layernorm_backward(a.dcls, P.grad(a.norm_w), P.grad(a.norm_b), a.dlnf, a.cls, a.lnf_mean,
                     a.lnf_rstd, P.value(a.norm_w), B, d);
  zero(a.dres, BT * d);
  if (c.avg_pool()) {
    const float inv = 1.0f / static_cast<float>(T - 1);
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < B; b++)
      for (int64_t t = 1; t < T; t++)
        for (int64_t k = 0; k < d; k++) a.dres[(b * T + t) * d + k] = a.dcls[b * d + k] * inv;
  } else {
    for (int64_t b = 0; b < B; b++)
      std::memcpy(a.dres + b * T * d, a.dcls + b * d, d * sizeof(float));
  }

  // Blocks in reverse: a.dres holds the gradient of the residual stream.
  for (int l = c.depth - 1; l >= 0; l--) {
    BlockActs acts = a.layers[l];
    if (!a.masks_on) acts.mask1 = acts.mask2 = nullptr;
    const float* x_in = l == 0 ? a.x0 : a.layers[l - 1].res2;
    a.blocks[l].backward(P, a.dres, x_in, acts, a.work, B, T, Rope{});
  }

  // Embedding: class token, positions, and the patch projection.
  float* dcls = P.grad(a.cls_token);
  float* dpos = P.grad(a.pos_embed);
  for (int64_t b = 0; b < B; b++) {
    for (int64_t t = 0; t < T; t++) {
      const float* g = a.dres + (b * T + t) * d;
      for (int64_t k = 0; k < d; k++) dpos[t * d + k] += g[k];
      if (t == 0)
        for (int64_t k = 0; k < d; k++) dcls[k] += g[k];
      else
        std::memcpy(a.dpe + (b * N + t - 1) * d, g, d * sizeof(float));
    }
  }
  linear_backward(nullptr, P.grad(a.patch_w), P.grad(a.patch_b), a.dpe, a.patches,
                  P.value(a.patch_w), B * N, cpp, d);
}

void normalize_images(float* out, const uint8_t* pixels, int64_t B, const ModelConfig& c) {
  const int64_t hw = static_cast<int64_t>(c.img_size) * c.img_size;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; b++) {
    for (int64_t ch = 0; ch < c.in_chans; ch++) {
      const float scale = 1.0f / (255.0f * c.std[ch]), shift = c.mean[ch] / c.std[ch];
      const uint8_t* src = pixels + (b * c.in_chans + ch) * hw;
      float* dst = out + (b * c.in_chans + ch) * hw;
      for (int64_t i = 0; i < hw; i++) dst[i] = src[i] * scale - shift;
    }
  }
}

}  // namespace kat
