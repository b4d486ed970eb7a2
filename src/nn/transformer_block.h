// One pre-norm Transformer block, shared by every kat model: x + attn(norm1(x)), then
// + ffn(norm2(x)), where ffn is the GELU MLP (fc1, gelu, fc2) or GR-KAN (act1, fc1, act2, fc2).
// The block owns its parameter indices; activations live in the model's planned buffer.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kat/buffer.h"
#include "kat/config.h"
#include "kat/kernels.h"
#include "kat/params.h"
#include "kat/rng.h"

namespace kat {

// Checkpoint names of the block's parts after "<prefix>"; the rationals are mlp.act1 and
// mlp.act2 under either scheme.
struct BlockNames {
  const char *norm1, *qkv, *proj, *norm2, *fc1, *fc2;
};
inline constexpr BlockNames kTimmBlockNames{"norm1", "attn.qkv", "attn.proj",
                                            "norm2", "mlp.fc1",  "mlp.fc2"};
inline constexpr BlockNames kGpt2BlockNames{"ln_1", "attn.c_attn", "attn.c_proj",
                                            "ln_2", "mlp.c_fc",    "mlp.c_proj"};

// Standard deviations of the block's four weight matrices at init.
struct BlockInitStd {
  float qkv = 0.02f, proj = 0.02f, fc1 = 0.02f, fc2 = 0.02f;
};

struct BlockShape {
  int64_t dim = 0, hidden = 0, heads = 0;
  Ffn ffn = Ffn::Kan;
  int groups = 8;
  float eps = 1e-6f;
  bool causal = false;
  Mixer mixer = Mixer::Softmax;
  int64_t window = 0;  // the local mixer's window, the combiner's span (mixer_window)
};

// GLA's gate: log alpha = logsigmoid(W2 W1 x + b) / 16 with W1 [kGateRank, dim]
// (reference/attention.md).
constexpr int64_t kGateRank = 16;
constexpr float kGateTemperature = 16.0f;

// Rotary position tables [positions, head_dim / 2] (rope_tables); null: no rotation.
struct Rope {
  const float *cos = nullptr, *sin = nullptr;
};

// The tables a model with rotary positions owns; empty (the default): no rotation.
struct RopeTables {
  std::vector<float> cos, sin;
  RopeTables() = default;
  // grid_width > 0: the axial 2D tables of tokens on a grid that wide, from table row `first`.
  RopeTables(int64_t positions, int64_t head_dim, double theta, int64_t grid_width = 0,
             int64_t first = 0)
      : cos(positions * (head_dim / 2)), sin(positions * (head_dim / 2)) {
    if (grid_width > 0)
      rope_tables_2d(cos.data(), sin.data(), positions, head_dim, theta, grid_width, first);
    else
      rope_tables(cos.data(), sin.data(), positions, head_dim, theta);
  }
  Rope view() const { return cos.empty() ? Rope{} : Rope{cos.data(), sin.data()}; }
};

// What the forward keeps for the backward; each has B*T rows.
struct BlockActs {
  float *ln1, *ln1_mean, *ln1_rstd, *qkv, *atty, *res1;
  float* lse;  // softmax, combiner: the log-sum-exp [rows, heads]; linear: what its backward needs
               // (linear_attention_saved_floats: the denominators, bidirectional the states too)
  float *ln2, *ln2_mean, *ln2_rstd, *a1, *h, *a2, *res2;  // a1: KAN only; res2 is the output
  float *gate_u, *gate_g;  // GLA: W1 x [rows, kGateRank]; GLA, ssm: the log decays [rows, dim]
  float* beta;             // delta: the write strengths, ssm: the steps dt [rows, heads]
  float* ssm_qkv;          // ssm: qkv with k scaled by dt, what the scan reads [rows, 3 dim]
  float *mask1, *mask2;    // per-element scales of the two branches (dropout x drop-path), or null
};

// Gradient buffers the backward passes through, shared by all blocks of a model.
struct BlockWork {
  float *dtmp, *dln, *dqkv, *datty, *da1, *dh, *da2, *attn_scratch;
  float *dgate_g, *dgate_u;  // GLA (dgate_g: also ssm)
  float* dbeta;              // delta, ssm
};

// One-token buffers of decode(): n = the longest context.
struct DecodeWork {
  FloatBuffer buf;
  float *ln, *stats, *qkv, *att, *branch, *a1, *h, *a2, *scores, *gate_u, *gate_g, *beta;
  float* key;  // ssm: the token's scan inputs [3 dim]
  void plan(const BlockShape& s, int64_t n);
};

class TransformerBlock {
 public:
  TransformerBlock(Params& params, const std::string& prefix, const BlockNames& names,
                   const BlockShape& shape);
  const BlockShape& shape() const { return shape_; }

  // Lays out the block's activations for up to `rows` = B*T rows of up to `batch` sequences:
  // take(float*& p, int64_t count).
  template <class Take>
  void plan_acts(Take&& take, BlockActs& a, int64_t rows, int64_t batch, bool masks) const {
    const int64_t d = shape_.dim, hid = shape_.hidden, H = shape_.heads;
    take(a.ln1, rows * d), take(a.ln1_mean, rows), take(a.ln1_rstd, rows);
    take(a.qkv, rows * 3 * d);
    // linear: the denominators (B * H * T <= batch * H * T) and, bidirectional, B <= batch states
    const int64_t T = (rows + batch - 1) / batch;
    take(a.lse, shape_.mixer == Mixer::Linear
                    ? linear_attention_saved_floats(batch, T, d, H, shape_.causal)
                    : rows * H);
    take(a.atty, rows * d);
    take(a.res1, rows * d), take(a.ln2, rows * d), take(a.ln2_mean, rows), take(a.ln2_rstd, rows);
    a.a1 = a.mask1 = a.mask2 = a.gate_u = a.gate_g = a.beta = a.ssm_qkv = nullptr;
    if (shape_.mixer == Mixer::Gla) take(a.gate_u, rows * kGateRank), take(a.gate_g, rows * d);
    if (shape_.mixer == Mixer::Delta) take(a.beta, rows * shape_.heads);
    if (shape_.mixer == Mixer::Ssm)
      take(a.beta, rows * shape_.heads), take(a.gate_g, rows * d), take(a.ssm_qkv, rows * 3 * d);
    if (shape_.ffn == Ffn::Kan) take(a.a1, rows * d);
    take(a.h, rows * hid), take(a.a2, rows * hid), take(a.res2, rows * d);
    if (masks) take(a.mask1, rows * d), take(a.mask2, rows * d);
  }
  template <class Take>
  static void plan_work(Take&& take, BlockWork& w, int64_t rows, const BlockShape& s,
                        int64_t attn_scratch) {
    take(w.dtmp, rows * s.dim), take(w.dln, rows * s.dim), take(w.dqkv, rows * 3 * s.dim);
    take(w.datty, rows * s.dim), take(w.da1, rows * s.dim), take(w.dh, rows * s.hidden);
    take(w.da2, rows * s.hidden), take(w.attn_scratch, attn_scratch);
    w.dgate_g = w.dgate_u = w.dbeta = nullptr;
    if (s.mixer == Mixer::Gla) take(w.dgate_g, rows * s.dim), take(w.dgate_u, rows * kGateRank);
    if (s.mixer == Mixer::Delta) take(w.dbeta, rows * s.heads);
    if (s.mixer == Mixer::Ssm) take(w.dbeta, rows * s.heads), take(w.dgate_g, rows * s.dim);
  }

  // Norms 1 and 0, biases 0, the weight matrices N(0, std^2) in the order qkv, proj, fc1, fc2
  // (cut to [-2, 2] when `truncate`, as timm's trunc_normal_), the rationals act1 = identity and
  // act2 = act_init.
  void init(Params& p, Rng& rng, const BlockInitStd& std, bool truncate,
            const std::string& act_init) const;
  // The variance-preserving std of fc1 and fc2 after the rationals (KAT paper S3):
  // sqrt(1 / E[F(x)^2] / fan_in); 0.02 for the GELU MLP.
  static BlockInitStd feed_forward_std(const BlockShape& shape, const std::string& act_init);

  // Scratch floats the token mixer needs for up to B sequences of up to T tokens.
  int64_t mixer_scratch_floats(int64_t B, int64_t T) const;
  // Floats of generation state for a context of `context` tokens: the keys and values (softmax,
  // local; combiner adds the span summaries), the running sums S, z of every head (linear) or S
  // (gla, delta, ssm).
  int64_t decode_state_floats(int64_t context) const;
  // Fills the state from the forward of a prompt of n tokens (batch 1) held in a.
  void prefill_state(float* state, const BlockActs& a, int64_t n, int64_t context) const;

  // a.res2 = block(x) for x [B*T, dim]. With a.mask1/mask2 set, each branch is scaled by them
  // before the residual add.
  void forward(const Params& p, const float* x, BlockActs& a, float* attn_scratch, int64_t B,
               int64_t T, Rope rope) const;
  // dres [B*T, dim] holds the gradient of the block's output on entry and of its input x on
  // return; parameter gradients accumulate.
  void backward(Params& p, float* dres, const float* x, const BlockActs& a, BlockWork& w, int64_t B,
                int64_t T, Rope rope) const;

  // Generation: x[dim] of the token at position `pos` becomes the block's output; the token's key
  // and value join the state (decode_state_floats(context) floats).
  void decode(const Params& p, float* x, float* state, int64_t pos, int64_t context, Rope rope,
              DecodeWork& w) const;

  // Parameter indices (act* are -1 for the MLP).
  int norm1_w, norm1_b, qkv_w, qkv_b, proj_w, proj_b, norm2_w, norm2_b;
  int act1_num = -1, act1_den = -1, fc1_w, fc1_b, act2_num = -1, act2_den = -1, fc2_w, fc2_b;
  int gate1_w = -1, gate2_w = -1, gate2_b = -1;       // GLA's attn.gk_proj.{0,1}
  int beta_w = -1;                                    // delta's attn.b_proj
  int dt_w = -1, dt_b = -1, a_log = -1, skip_d = -1;  // ssm's attn.dt_proj, dt_bias, A_log, D

 private:
  AttentionMask mask() const {
    return AttentionMask(shape_.causal, shape_.mixer == Mixer::Local ? shape_.window : 0);
  }
  // Spans of the combiner in `context` tokens.
  int64_t span_count(int64_t context) const {
    return (context + shape_.window - 1) / shape_.window;
  }
  // The combiner's decoding state: keys, values [context, dim], summaries [span_count, dim] x 2.
  struct CombinerState {
    float *k, *v, *ksum, *vsum;
  };
  CombinerState combiner_state(float* state, int64_t context) const;
  BlockShape shape_;
};

}  // namespace kat
