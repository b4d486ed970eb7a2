// Byte-level decoder-only language models (GPT-style) whose feed-forward is GR-KAN (KAT) or a GELU
// MLP: exact causal attention in the tiled form (O(T) memory), learned or rotary positions,
// optional tied embeddings, and a KV cache for generation. Names and config: docs/formats.md.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kat/config.h"
#include "kat/params.h"

namespace kat {

constexpr int kByteVocab = 257;  // the 256 byte values and the end-of-text symbol
constexpr int32_t kEndOfText = 256;

enum class Positions { Learned, Rope };

struct LmConfig {
  std::string architecture = "kat_lm";
  int vocab_size = kByteVocab;
  int context = 256;  // n_positions: the longest sequence the model takes
  int embed_dim = 256, depth = 4, num_heads = 4, hidden = 1024;
  Ffn ffn = Ffn::Kan;
  Mixer mixer = Mixer::Softmax;
  int window = 0;  // keys a query sees with the local mixer
  int rational_groups = 8;
  std::string act_init = "swish";  // act2's init; act1 starts as the identity
  Positions positions = Positions::Rope;
  double rope_theta = 10000.0;
  bool tie_weights = true;
  float layernorm_eps = 1e-5f;

  int head_dim() const { return embed_dim / num_heads; }
  std::string ffn_name() const { return ffn == Ffn::Kan ? "kan" : "mlp"; }
};

void validate(const LmConfig& c);
// kat_lm and gpt_lm: the defaults of `kat train-lm` (equal sizes, KAN or GELU MLP).
std::vector<std::string> lm_config_names();
LmConfig named_lm_config(const std::string& name);
// config.json with Hugging Face GPT-2 keys and kat's under "kat"; unknown keys are errors.
LmConfig lm_config_from_json(const std::string& text, const std::string& origin);
std::string lm_config_to_json(const LmConfig& c);
LmConfig resolve_lm_config(const std::string& name_or_file);  // NAME or FILE.json
// True when config.json text describes a language model (model_type "kat-lm").
bool is_lm_config_json(const std::string& text);

class CausalLM {
 public:
  explicit CausalLM(const LmConfig& config);
  ~CausalLM();
  CausalLM(const CausalLM&) = delete;
  CausalLM& operator=(const CausalLM&) = delete;

  const LmConfig& config() const { return config_; }
  Params& params() { return params_; }
  const Params& params() const { return params_; }

  // GPT-2's init: N(0, 0.02) weights and embeddings, the residual projections (attn.c_proj,
  // mlp.c_proj) scaled by 1/sqrt(2 depth), zero biases, unit norms; KAN rationals from their init
  // modes with the variance-preserving c_fc / c_proj init of the classifiers.
  void init(uint64_t seed);

  // tokens [B, T], T <= context. With targets [B, T] returns the mean cross-entropy of every
  // position and keeps what backward() needs; without, returns 0.
  float forward(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t T);
  const float* logits() const;  // [B, T, V] of the last forward
  // Block `layer`'s q, k, v of the last forward() or prefill(): [B, T, 3 * embed_dim], heads
  // contiguous, q and k rotated when the positions are rotary (for attention maps; read-only).
  const float* layer_qkv(int layer) const;
  // Accumulates the gradients of the last forward's mean loss into params().grads().
  void backward();
  int64_t activation_bytes() const;  // planned so far

  // Generation, batch 1, with a KV cache: prefill() restarts from a prompt (1..context tokens)
  // and decode() feeds one more token; both return the logits [V] of the next token.
  const float* prefill(const int32_t* tokens, int64_t n);
  const float* decode(int32_t token);
  int64_t cached() const;  // tokens in the cache

 private:
  struct State;
  void plan(int64_t B, int64_t T);

  LmConfig config_;
  Params params_;
  std::unique_ptr<State> state_;
};

// Checkpoint directories as for classifiers: config.json + model.safetensors (atomic writes).
void save_lm(const std::string& dir, const CausalLM& model);
std::unique_ptr<CausalLM> load_lm(const std::string& path);

}  // namespace kat
