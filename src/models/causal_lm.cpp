// Byte-level causal LM: embeddings -> depth x pre-norm blocks (causal attention) -> ln_f -> output
// layer (the byte embedding itself when tied), over planned buffers; plus KV-cache generation.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kat/error.h"
#include "kat/kernels.h"
#include "kat/lm.h"
#include "kat/parallel.h"
#include "kat/rng.h"
#include "nn/buffer_plan.h"
#include "nn/transformer_block.h"

namespace kat {

struct CausalLM::State {
  // parameters
  std::vector<TransformerBlock> blocks;
  int wte = -1, wpe = -1, lnf_w = -1, lnf_b = -1, lm_head = -1;
  RopeTables rope;  // [context, head_dim / 2] when the positions are rotary
  // training / full-sequence buffers, planned for up to `rows` = B * T rows of `batch_cap`
  // sequences
  int64_t rows = 0, batch_cap = 0;
  int threads = 0;
  FloatBuffer buf;
  float *x0, *lnf, *lnf_mean, *lnf_rstd, *logits, *probs, *losses, *dres, *dlnf, *dlogits;
  std::vector<BlockActs> layers;
  BlockWork work;
  std::vector<int32_t> tokens, targets;
  int64_t B = 0, T = 0;
  bool has_loss = false;
  // generation
  std::vector<float> decode_state;  // [depth, the block's decode_state_floats(context)]
  std::vector<float> row;           // x, ln_f, its stats, logits of one token
  DecodeWork decode;
  int64_t cached = 0;
};

CausalLM::CausalLM(const LmConfig& config) : config_(config), state_(std::make_unique<State>()) {
  validate(config_);
  const LmConfig& c = config_;
  State& s = *state_;
  const int64_t d = c.embed_dim, V = c.vocab_size;
  s.wte = params_.add("wte.weight", {V, d}, ParamKind::Embedding);
  if (c.positions == Positions::Learned)
    s.wpe = params_.add("wpe.weight", {c.context, d}, ParamKind::Embedding);
  BlockShape shape;
  shape.dim = d, shape.hidden = c.hidden, shape.heads = c.num_heads, shape.ffn = c.ffn;
  shape.groups = c.rational_groups, shape.eps = c.layernorm_eps, shape.causal = true;
  shape.mixer = c.mixer, shape.window = mixer_window(c.mixer, c.window, c.context);
  for (int l = 0; l < c.depth; l++)
    s.blocks.emplace_back(params_, "h." + std::to_string(l) + ".", kGpt2BlockNames, shape);
  s.lnf_w = params_.add("ln_f.weight", {d}, ParamKind::Norm);
  s.lnf_b = params_.add("ln_f.bias", {d}, ParamKind::Norm);
  if (!c.tie_weights) s.lm_head = params_.add("lm_head.weight", {V, d}, ParamKind::Weight);
  params_.allocate();
  if (c.positions == Positions::Rope) s.rope = RopeTables(c.context, c.head_dim(), c.rope_theta);
}

CausalLM::~CausalLM() = default;

void CausalLM::init(uint64_t seed) {
  const LmConfig& c = config_;
  State& s = *state_;
  Rng rng = Rng::derive(seed, /*purpose=*/1);
  auto fill_normal = [&](int i, float std) {
    float* v = params_.value(i);
    for (int64_t k = 0; k < params_.specs()[i].size; k++) v[k] = rng.normal() * std;
  };
  auto fill = [&](int i, float value) {
    float* v = params_.value(i);
    std::fill(v, v + params_.specs()[i].size, value);
  };
  // GPT-2's init with the residual projections scaled by 1/sqrt(2 depth); KAN's feed-forward
  // variance-preserving.
  const float residual = 1.0f / std::sqrt(2.0f * c.depth);
  BlockInitStd std = TransformerBlock::feed_forward_std(s.blocks[0].shape(), c.act_init);
  std.proj *= residual, std.fc2 *= residual;
  fill_normal(s.wte, 0.02f);
  if (s.wpe >= 0) fill_normal(s.wpe, 0.02f);
  for (const TransformerBlock& b : s.blocks) b.init(params_, rng, std, false, c.act_init);
  fill(s.lnf_w, 1), fill(s.lnf_b, 0);
  if (s.lm_head >= 0) fill_normal(s.lm_head, 0.02f);
}

void CausalLM::plan(int64_t B, int64_t T) {
  State& s = *state_;
  // Planned again when the threads change: the mixers' scratch depends on them.
  if (s.rows >= B * T && s.batch_cap >= B && s.threads == num_threads()) return;
  const LmConfig& c = config_;
  const int64_t d = c.embed_dim, V = c.vocab_size;
  const int64_t rows = std::max(B * T, s.rows), Bc = std::max(B, s.batch_cap);
  BufferPlan take;
  take(s.x0, rows * d);
  s.layers.assign(c.depth, BlockActs{});
  for (int l = 0; l < c.depth; l++) s.blocks[l].plan_acts(take, s.layers[l], rows, Bc, false);
  take(s.lnf, rows * d), take(s.lnf_mean, rows), take(s.lnf_rstd, rows);
  take(s.logits, rows * V), take(s.probs, rows * V), take(s.losses, rows);
  take(s.dres, rows * d), take(s.dlnf, rows * d), take(s.dlogits, rows * V);
  TransformerBlock::plan_work(take, s.work, rows, s.blocks[0].shape(),
                              s.blocks[0].mixer_scratch_floats(Bc, c.context));
  take.allocate(s.buf);
  s.rows = rows, s.batch_cap = Bc;
  s.threads = num_threads();
}

int64_t CausalLM::activation_bytes() const {
  return static_cast<int64_t>(state_->buf.size() * sizeof(float));
}

const float* CausalLM::logits() const { return state_->logits; }
const float* CausalLM::layer_qkv(int layer) const {
  check(layer >= 0 && layer < config_.depth && state_->rows > 0, "layer_qkv: no layer ", layer,
        " after a forward");
  return state_->layers[layer].qkv;
}

float CausalLM::forward(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t T) {
  const LmConfig& c = config_;
  check(B > 0 && T > 0, "forward: empty batch");
  check(T <= c.context, "a sequence of ", T, " tokens is longer than the model's context of ",
        c.context);
  const int64_t d = c.embed_dim, V = c.vocab_size, BT = B * T;
  for (int64_t i = 0; i < BT; i++)
    check(tokens[i] >= 0 && tokens[i] < V, "token ", tokens[i], " is outside 0..", V - 1);
  plan(B, T);
  State& s = *state_;
  const Params& P = params_;
  embedding_forward(s.x0, P.value(s.wte), s.wpe >= 0 ? P.value(s.wpe) : nullptr, tokens, BT, T, d);
  const float* x = s.x0;
  for (int l = 0; l < c.depth; l++) {
    s.blocks[l].forward(P, x, s.layers[l], s.work.attn_scratch, B, T, s.rope.view());
    x = s.layers[l].res2;
  }
  layernorm_forward(s.lnf, s.lnf_mean, s.lnf_rstd, x, P.value(s.lnf_w), P.value(s.lnf_b), BT, d,
                    c.layernorm_eps);
  const float* out_w = P.value(s.lm_head >= 0 ? s.lm_head : s.wte);
  linear_forward(s.logits, s.lnf, out_w, nullptr, BT, d, V);
  s.B = B, s.T = T;
  s.has_loss = targets != nullptr;
  if (!targets) return 0.0f;
  for (int64_t i = 0; i < BT; i++)
    check(targets[i] >= 0 && targets[i] < V, "target ", targets[i], " is outside 0..", V - 1);
  s.tokens.assign(tokens, tokens + BT);
  s.targets.assign(targets, targets + BT);
  softmax_xent_forward(s.losses, s.probs, s.logits, targets, BT, V, 0.0f);
  double sum = 0;
  for (int64_t i = 0; i < BT; i++) sum += s.losses[i];
  return static_cast<float>(sum / BT);
}

void CausalLM::backward() {
  State& s = *state_;
  check(s.has_loss, "backward() needs a forward() with targets first");
  const LmConfig& c = config_;
  Params& P = params_;
  const int64_t B = s.B, T = s.T, BT = B * T, d = c.embed_dim, V = c.vocab_size;
  std::fill(s.dlogits, s.dlogits + BT * V, 0.0f);
  softmax_xent_backward(s.dlogits, s.probs, s.targets.data(), BT, V, 0.0f, 1.0f / BT);
  const int out = s.lm_head >= 0 ? s.lm_head : s.wte;
  linear_backward(s.dlnf, P.grad(out), nullptr, s.dlogits, s.lnf, P.value(out), BT, d, V, false);
  std::fill(s.dres, s.dres + BT * d, 0.0f);
  const float* x_last = s.layers[c.depth - 1].res2;
  layernorm_backward(s.dres, P.grad(s.lnf_w), P.grad(s.lnf_b), s.dlnf, x_last, s.lnf_mean,
                     s.lnf_rstd, P.value(s.lnf_w), BT, d);
  for (int l = c.depth - 1; l >= 0; l--) {
    const float* x_in = l == 0 ? s.x0 : s.layers[l - 1].res2;
    s.blocks[l].backward(P, s.dres, x_in, s.layers[l], s.work, B, T, s.rope.view());
  }
  embedding_backward(P.grad(s.wte), s.wpe >= 0 ? P.grad(s.wpe) : nullptr, s.dres, s.tokens.data(),
                     BT, T, d);
}

namespace {

// ln_f and the output layer for one token: logits[V] from x[d]; stats: 2 floats.
void head_row(const Params& P, const LmConfig& c, int lnf_w, int lnf_b, int out, const float* x,
              float* ln, float* stats, float* logits) {
  layernorm_forward(ln, stats, stats + 1, x, P.value(lnf_w), P.value(lnf_b), 1, c.embed_dim,
                    c.layernorm_eps);
  linear_forward(logits, ln, P.value(out), nullptr, 1, c.embed_dim, c.vocab_size);
}

}  // namespace

const float* CausalLM::prefill(const int32_t* tokens, int64_t n) {
  const LmConfig& c = config_;
  check(n >= 1, "the prompt is empty");
  check(n <= c.context, "the prompt of ", n, " tokens is longer than the model's context of ",
        c.context);
  forward(tokens, nullptr, 1, n);
  State& s = *state_;
  const int64_t d = c.embed_dim, ctx = c.context, per = s.blocks[0].decode_state_floats(ctx);
  s.decode_state.resize(c.depth * per);
  s.decode.plan(s.blocks[0].shape(), ctx);
  s.row.resize(2 * d + 2 + c.vocab_size);
  for (int l = 0; l < c.depth; l++)
    s.blocks[l].prefill_state(s.decode_state.data() + l * per, s.layers[l], n, ctx);
  s.cached = n;
  return s.logits + (n - 1) * c.vocab_size;
}

const float* CausalLM::decode(int32_t token) {
  const LmConfig& c = config_;
  State& s = *state_;
  check(s.cached > 0, "decode() needs a prefill() first");
  check(s.cached < c.context, "the context of ", c.context, " tokens is full");
  check(token >= 0 && token < c.vocab_size, "token ", token, " is outside 0..", c.vocab_size - 1);
  const Params& P = params_;
  const int64_t d = c.embed_dim, ctx = c.context, pos = s.cached;
  float *x = s.row.data(), *ln = x + d, *stats = ln + d, *logits = stats + 2;
  std::memcpy(x, P.value(s.wte) + token * d, d * sizeof(float));
  if (s.wpe >= 0) add_inplace(x, P.value(s.wpe) + pos * d, d);
  const int64_t per = s.blocks[0].decode_state_floats(ctx);
  for (int l = 0; l < c.depth; l++)
    s.blocks[l].decode(P, x, s.decode_state.data() + l * per, pos, ctx, s.rope.view(), s.decode);
  head_row(P, c, s.lnf_w, s.lnf_b, s.lm_head >= 0 ? s.lm_head : s.wte, x, ln, stats, logits);
  s.cached++;
  return logits;
}

int64_t CausalLM::cached() const { return state_->cached; }

}  // namespace kat
