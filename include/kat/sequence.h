// Sequence classifiers for the Long Range Arena: token embedding + positions (learned, rotary or
// both), with a class token before the tokens and an end token after them if asked -> depth x
// pre-norm blocks (bidirectional, any token mixer) -> the mean of the rows or the class token ->
// LayerNorm -> linear head. Tensor names as timm's (embed.weight, pos_embed, cls_token,
// blocks.N.*, norm, head), plus end_token.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kat/config.h"
#include "kat/params.h"

namespace kat {

// The rope_theta kat lra gives rope2d (RoPE-ViT's axial form uses 100): with a quarter of a 16-wide
// head per axis, wavelengths of 6 to 200 pixels, where 10000 leaves two of four useful on 32
// pixels.
constexpr double kRope2dTheta = 100.0;

struct SequenceConfig {
  std::string architecture = "kat_lra";
  int vocab_size = 18, max_len = 2000, num_classes = 10;
  int embed_dim = 64, depth = 4, num_heads = 4, hidden = 128;
  Ffn ffn = Ffn::Kan;
  Mixer mixer = Mixer::Softmax;
  int window = 0;
  int rational_groups = 8;
  std::string act_init = "swish";
  float layernorm_eps = 1e-6f;
  // timm's global_pool: "avg" (the mean of the tokens) or "token" (a learned class token put
  // before the tokens, cls_token, read at the end; pos_embed then has max_len + 1 rows).
  std::string global_pool = "avg";
  // Where the model learns token order: "learned" (pos_embed rows added to the embeddings, timm's
  // default), "rope" (q and k rotated in every block by their position, no pos_embed: attention
  // then sees relative offsets), "rope2d" (rotated by row and column of an image grid_width
  // tokens wide: attention sees 2D offsets; rope_tables_2d) or "learned+rope", "learned+rope2d",
  // or "sincos2d": pos_embed learned as with "learned" but starting from MAE's 2D sine-cosine
  // table over the image grid (sincos2d_positions) instead of noise, so that neighbouring pixels
  // start with similar rows.
  std::string positions = "learned";
  double rope_theta = 10000.0;
  int grid_width = 0;  // rope2d and sincos2d: tokens per image row
  // A learned end token (end_token, no position row of its own) put after the last token, as
  // LRA codes append <eos>: with rotary positions, attention then sees offsets from the end.
  bool end_token = false;
  // A masked-token head for self-pretraining (forward_masked): mask_token, mlm_norm, mlm_head.
  bool masked_head = false;
  int prefix_tokens() const { return global_pool == "token" ? 1 : 0; }
  int suffix_tokens() const { return end_token ? 1 : 0; }
  int extra_tokens() const { return prefix_tokens() + suffix_tokens(); }
  bool learned_positions() const {
    return positions.starts_with("learned") || positions == "sincos2d";
  }
  bool rotary() const { return positions.find("rope") != std::string::npos; }
  bool rotary_2d() const { return positions.ends_with("rope2d"); }
  bool grid_positions() const { return rotary_2d() || positions == "sincos2d"; }
};

void validate(const SequenceConfig& c);
// config.json: {"architecture", "model_type": "kat-seq", "vocab_size", "max_len", "num_classes",
// "embed_dim", "depth", "num_heads", "hidden", "global_pool", "kat": {ffn, mixer, window,
// rational_groups, act_init, layernorm_eps, positions, rope_theta, grid_width, end_token,
// masked_head}}; unknown keys are errors.
SequenceConfig sequence_config_from_json(const std::string& text, const std::string& origin);
// Whether config.json text is a sequence classifier's (model_type "kat-seq"); false for text that
// is not JSON.
bool is_sequence_config_json(const std::string& text);
std::string sequence_config_to_json(const SequenceConfig& c);

class SequenceClassifier {
 public:
  explicit SequenceClassifier(const SequenceConfig& config);
  ~SequenceClassifier();
  SequenceClassifier(const SequenceClassifier&) = delete;
  SequenceClassifier& operator=(const SequenceClassifier&) = delete;

  const SequenceConfig& config() const { return config_; }
  Params& params() { return params_; }
  const Params& params() const { return params_; }
  void init(uint64_t seed);  // timm's: trunc_normal(0.02); rationals from their init modes

  // tokens [B, T] (T <= max_len, every token counted: sequences of one length per call). With
  // labels [B], returns the mean loss times `loss_scale` (1/N to average over N calls) and keeps
  // what backward() needs; without, returns 0.
  float forward(const int32_t* tokens, const int32_t* labels, int64_t B, int64_t T,
                float loss_scale = 1.0f);
  const float* logits() const;  // [B, num_classes]

  // Self-pretraining (Amos et al. 2023, reference/lra.md), with config().masked_head: the tokens
  // that mask [B, T] marks (non-zero) are hidden, their embeddings replaced by mask_token (their
  // positions kept), and the model predicts them from the final residual stream through mlm_norm
  // (LayerNorm) and mlm_head (a linear map to the vocabulary). Returns the mean over the sequences
  // of each one's mean cross-entropy over its hidden tokens (0 for a sequence with none), times
  // `loss_scale`, so that a batch split over calls or ranks has the same loss; keeps what
  // backward() needs.
  float forward_masked(const int32_t* tokens, const uint8_t* mask, int64_t B, int64_t T,
                       float loss_scale = 1.0f);
  // Of the last forward_masked: the hidden tokens (in row-major order) and their logits
  // [masked_count(), vocab_size].
  int64_t masked_count() const;
  const float* masked_logits() const;
  // The tensors of the masked-token head: a checkpoint may hold them or not (an --init across
  // pretraining and classification keeps or drops them).
  static std::vector<std::string> masked_head_tensors();
  // Block `layer`'s q, k, v of the last forward: [B, T + extra_tokens(), 3 * embed_dim] (the
  // class token's row first, the end token's last), heads contiguous (for attention maps;
  // read-only).
  const float* layer_qkv(int layer) const;
  void backward();  // of the last forward with labels or forward_masked; accumulates into grads()

 private:
  struct State;
  void plan(int64_t B, int64_t T);
  // Embeddings (mask_token where mask hides a token; mask may be null) and blocks: the final
  // residual stream [B, T + extra_tokens(), embed_dim].
  const float* encode(const int32_t* tokens, const uint8_t* mask, int64_t B, int64_t T);
  void backward_blocks();  // from the state's dres back through the blocks and embeddings
  SequenceConfig config_;
  Params params_;
  std::unique_ptr<State> state_;
};

void save_sequence_model(const std::string& dir, const SequenceClassifier& model);
std::unique_ptr<SequenceClassifier> load_sequence_model(const std::string& path);
// kat lra --init: the weights of a checkpoint (a run's last/ or best/) into `model`, whose config
// is the checkpoint's but perhaps for two things. The masked-token head: loaded when both have
// it, else left at its init or dropped (pretraining and classification start from each other).
// And a greater depth: the model grows, its new blocks after the checkpoint's, each an identity
// at first (the output projections of its branches, attn.proj and mlp.fc2, zero), so that it
// computes what the checkpoint computes; every block trains from there.
void load_sequence_weights(const std::string& checkpoint, SequenceClassifier& model);

}  // namespace kat
