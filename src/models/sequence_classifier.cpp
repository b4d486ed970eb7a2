// LRA sequence classifier over planned buffers: embedding -> blocks -> mean -> LayerNorm -> head.
#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "io/json_fields.h"
#include "kat/checkpoint.h"
#include "kat/error.h"
#include "kat/files.h"
#include "kat/kernels.h"
#include "kat/parallel.h"
#include "kat/rng.h"
#include "kat/sequence.h"
#include "nn/buffer_plan.h"
#include "nn/transformer_block.h"

namespace kat {

struct SequenceClassifier::State {
  std::vector<TransformerBlock> blocks;
  int embed = -1, pos = -1, cls = -1, end = -1, norm_w = -1, norm_b = -1, head_w = -1, head_b = -1;
  int mask = -1, mlm_norm_w = -1, mlm_norm_b = -1, mlm_head_w = -1, mlm_head_b = -1;
  int64_t rows = 0, batch_cap = 0;
  int threads = 0;
  FloatBuffer buf;
  float *x0, *pooled, *ln, *ln_mean, *ln_rstd, *logits, *probs, *losses, *dres, *dln, *dpooled,
      *dlogits;
  std::vector<BlockActs> layers;
  BlockWork work;
  std::vector<int32_t> tokens, labels;
  // forward_masked: the hidden tokens' rows of the residual stream, their tokens, and the head's
  // activations and gradients over those rows (sized for the largest call so far).
  std::vector<uint8_t> hidden;               // [B, n]: the mask of the last forward_masked
  std::vector<int64_t> mlm_rows, mlm_first;  // mlm_first[b]: sequence b's first hidden row
  std::vector<int32_t> mlm_targets;
  std::vector<float> mlm_in, mlm_ln, mlm_mean, mlm_rstd, mlm_logits, mlm_probs, mlm_losses,
      mlm_dlogits, mlm_dln, mlm_dx;
  RopeTables rope;       // [max_len + extra tokens, head_dim / 2] when rotary
  int64_t B = 0, T = 0;  // T: rows per sequence, the class and end tokens included
  float scale = 1.0f;
  enum class Loss { kNone, kClasses, kMasked } loss = Loss::kNone;
};

void validate(const SequenceConfig& c) {
  const std::string& a = c.architecture;
  check(c.vocab_size > 0 && c.max_len > 0 && c.num_classes > 1 && c.embed_dim > 0 && c.depth > 0 &&
            c.num_heads > 0 && c.hidden > 0,
        a, ": sizes must be positive (and at least 2 classes), not vocab_size ", c.vocab_size,
        ", max_len ", c.max_len, ", num_classes ", c.num_classes, ", embed_dim ", c.embed_dim,
        ", depth ", c.depth, ", num_heads ", c.num_heads, ", hidden ", c.hidden);
  check(c.embed_dim % c.num_heads == 0, a, ": embed_dim ", c.embed_dim,
        " is not divisible by num_heads ", c.num_heads);
  if (c.ffn == Ffn::Kan)
    check(c.rational_groups > 0 && c.embed_dim % c.rational_groups == 0 &&
              c.hidden % c.rational_groups == 0,
          a, ": embed_dim and hidden must be divisible by rational_groups ", c.rational_groups);
  validate_mixer(c.mixer, c.window, a);
  check(c.global_pool == "avg" || c.global_pool == "token", a,
        ": global_pool must be \"avg\" or \"token\", not \"", c.global_pool, "\"");
  check(c.positions == "learned" || c.positions == "rope" || c.positions == "learned+rope" ||
            c.positions == "rope2d" || c.positions == "learned+rope2d" || c.positions == "sincos2d",
        a,
        ": positions must be \"learned\", \"rope\", \"learned+rope\", \"rope2d\", "
        "\"learned+rope2d\" or \"sincos2d\", not \"",
        c.positions, "\"");
  if (c.rotary()) validate_rotary(c.embed_dim / c.num_heads, c.rope_theta, a);
  if (c.grid_positions())
    check(c.grid_width > 0, a, ": ", c.positions, " needs grid_width, the tokens of an image row");
  if (c.positions == "sincos2d")
    check(c.embed_dim % 4 == 0, a,
          ": sincos2d gives a quarter of each position's channels to the row's sines, a quarter "
          "to its cosines and the same to the column's: embed_dim must be a multiple of 4, not ",
          c.embed_dim);
  if (c.rotary_2d()) {
    check((c.embed_dim / c.num_heads) % 4 == 0, a,
          ": rope2d turns a quarter of each head by row and one by column: the head size must be a "
          "multiple of 4, not ",
          c.embed_dim / c.num_heads);
  }
}

bool is_sequence_config_json(const std::string& text) {
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    return j.is_object() && j.value("model_type", "") == "kat-seq";
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

SequenceConfig sequence_config_from_json(const std::string& text, const std::string& origin) {
  using json_fields::check_keys;
  using json_fields::get;
  const nlohmann::json j = json_fields::parse(text, origin);
  check_keys(j,
             {"architecture", "model_type", "vocab_size", "max_len", "num_classes", "embed_dim",
              "depth", "num_heads", "hidden", "global_pool", "kat"},
             "the config", origin);
  check(j.value("model_type", "") == "kat-seq", origin,
        ": not a kat sequence-classifier config (model_type must be \"kat-seq\")");
  SequenceConfig c;
  if (j.contains("architecture")) c.architecture = get<std::string>(j, "architecture", origin);
  if (j.contains("global_pool")) c.global_pool = get<std::string>(j, "global_pool", origin);
  for (auto [key, dst] : {std::pair{"vocab_size", &c.vocab_size},
                          {"max_len", &c.max_len},
                          {"num_classes", &c.num_classes},
                          {"embed_dim", &c.embed_dim},
                          {"depth", &c.depth},
                          {"num_heads", &c.num_heads},
                          {"hidden", &c.hidden}})
    if (j.contains(key)) *dst = get<int>(j, key, origin);
  if (j.contains("kat")) {
    const nlohmann::json& k = j["kat"];
    check_keys(k,
               {"ffn", "mixer", "window", "rational_groups", "act_init", "layernorm_eps",
                "positions", "rope_theta", "grid_width", "end_token", "masked_head"},
               "kat", origin);
    json_fields::read_ffn_and_mixer(k, c.ffn, c.mixer, c.window, origin);
    if (k.contains("rational_groups")) c.rational_groups = get<int>(k, "rational_groups", origin);
    if (k.contains("act_init")) c.act_init = get<std::string>(k, "act_init", origin);
    if (k.contains("layernorm_eps")) c.layernorm_eps = get<float>(k, "layernorm_eps", origin);
    if (k.contains("positions")) c.positions = get<std::string>(k, "positions", origin);
    if (k.contains("rope_theta")) c.rope_theta = get<double>(k, "rope_theta", origin);
    if (k.contains("grid_width")) c.grid_width = get<int>(k, "grid_width", origin);
    if (k.contains("end_token")) c.end_token = get<bool>(k, "end_token", origin);
    if (k.contains("masked_head")) c.masked_head = get<bool>(k, "masked_head", origin);
  }
  try {
    validate(c);
  } catch (const Error& e) {
    fail(origin, ": ", e.what());
  }
  return c;
}

std::string sequence_config_to_json(const SequenceConfig& c) {
  nlohmann::json k = {{"ffn", c.ffn == Ffn::Kan ? "kan" : "mlp"},
                      {"mixer", mixer_name(c.mixer)},
                      {"layernorm_eps", json_fields::float_for_json(c.layernorm_eps)},
                      {"positions", c.positions}};
  if (c.window > 0) k["window"] = c.window;
  if (c.rotary()) k["rope_theta"] = c.rope_theta;
  if (c.grid_positions()) k["grid_width"] = c.grid_width;
  if (c.end_token) k["end_token"] = true;
  if (c.masked_head) k["masked_head"] = true;
  if (c.ffn == Ffn::Kan) k["rational_groups"] = c.rational_groups, k["act_init"] = c.act_init;
  const nlohmann::json j = {{"architecture", c.architecture},
                            {"model_type", "kat-seq"},
                            {"vocab_size", c.vocab_size},
                            {"max_len", c.max_len},
                            {"num_classes", c.num_classes},
                            {"embed_dim", c.embed_dim},
                            {"depth", c.depth},
                            {"num_heads", c.num_heads},
                            {"hidden", c.hidden},
                            {"global_pool", c.global_pool},
                            {"kat", k}};
  return j.dump(2) + "\n";
}

SequenceClassifier::SequenceClassifier(const SequenceConfig& config)
    : config_(config), state_(std::make_unique<State>()) {
  validate(config_);
  const SequenceConfig& c = config_;
  State& s = *state_;
  const int64_t d = c.embed_dim;
  s.embed = params_.add("embed.weight", {c.vocab_size, d}, ParamKind::Embedding);
  if (c.prefix_tokens()) s.cls = params_.add("cls_token", {1, 1, d}, ParamKind::Embedding);
  if (c.end_token) s.end = params_.add("end_token", {1, 1, d}, ParamKind::Embedding);
  const int64_t pos_rows = c.max_len + c.prefix_tokens(), rows = c.max_len + c.extra_tokens();
  if (c.learned_positions())
    s.pos = params_.add("pos_embed", {1, pos_rows, d}, ParamKind::Embedding);
  if (c.rotary())
    s.rope = RopeTables(rows, d / c.num_heads, c.rope_theta, c.rotary_2d() ? c.grid_width : 0,
                        c.prefix_tokens());
  BlockShape shape;
  shape.dim = d, shape.hidden = c.hidden, shape.heads = c.num_heads, shape.ffn = c.ffn;
  shape.groups = c.rational_groups, shape.eps = c.layernorm_eps;
  shape.mixer = c.mixer, shape.window = mixer_window(c.mixer, c.window, rows);
  for (int l = 0; l < c.depth; l++)
    s.blocks.emplace_back(params_, "blocks." + std::to_string(l) + ".", kTimmBlockNames, shape);
  s.norm_w = params_.add("norm.weight", {d}, ParamKind::Norm);
  s.norm_b = params_.add("norm.bias", {d}, ParamKind::Norm);
  s.head_w = params_.add("head.weight", {c.num_classes, d}, ParamKind::Weight);
  s.head_b = params_.add("head.bias", {c.num_classes}, ParamKind::Bias);
  if (c.masked_head) {
    const std::vector<std::string> names = masked_head_tensors();
    s.mask = params_.add(names[0], {1, 1, d}, ParamKind::Embedding);
    s.mlm_norm_w = params_.add(names[1], {d}, ParamKind::Norm);
    s.mlm_norm_b = params_.add(names[2], {d}, ParamKind::Norm);
    s.mlm_head_w = params_.add(names[3], {c.vocab_size, d}, ParamKind::Weight);
    s.mlm_head_b = params_.add(names[4], {c.vocab_size}, ParamKind::Bias);
  }
  params_.allocate();
}

SequenceClassifier::~SequenceClassifier() = default;

std::vector<std::string> SequenceClassifier::masked_head_tensors() {
  return {"mask_token", "mlm_norm.weight", "mlm_norm.bias", "mlm_head.weight", "mlm_head.bias"};
}

// MAE's fixed 2D sine-cosine embedding, here the start of a learned pos_embed [rows, d]: row r
// (token r - prefix, on a grid_width-wide grid) holds sin(a_i) in channels i < d / 2 and cos(a_i)
// in d / 2 + i, with the angles a_i of rope_tables_2d for a "head" of all d channels (the first
// d / 4 by the token's image row, the next d / 4 by its column, kRope2dTheta's wavelengths). Two
// rows' dot product is then a sum of cos(a_i - b_i): a function of their 2D offset alone. Scaled
// to the root-mean-square of the normal init (0.02), so only the structure differs.
static void sincos2d_positions(float* pos, const SequenceConfig& c) {
  const int64_t d = c.embed_dim, half = d / 2, rows = c.max_len + c.prefix_tokens();
  std::vector<float> cos(static_cast<size_t>(rows * half)), sin(cos.size());
  rope_tables_2d(cos.data(), sin.data(), rows, d, kRope2dTheta, c.grid_width, c.prefix_tokens());
  const float scale = 0.02f * std::sqrt(2.0f);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t i = 0; i < half; i++) {
      pos[r * d + i] = scale * sin[r * half + i];
      pos[r * d + half + i] = scale * cos[r * half + i];
    }
}

void SequenceClassifier::init(uint64_t seed) {
  const SequenceConfig& c = config_;
  State& s = *state_;
  Rng rng = Rng::derive(seed, /*purpose=*/1);
  auto normal = [&](int i, float std) {
    float* v = params_.value(i);
    for (int64_t k = 0; k < params_.specs()[i].size; k++) v[k] = rng.trunc_normal(std, -2, 2);
  };
  auto fill = [&](int i, float value) {
    std::fill(params_.value(i), params_.value(i) + params_.specs()[i].size, value);
  };
  normal(s.embed, 0.02f);
  if (s.pos >= 0) normal(s.pos, 0.02f);
  // Drawn above and then replaced, so that every other tensor starts as with "learned" and the
  // same seed: the two compare on the positions' start alone.
  if (c.positions == "sincos2d") sincos2d_positions(params_.value(s.pos), c);
  if (s.cls >= 0) normal(s.cls, 1e-6f);  // timm's class-token init
  if (s.end >= 0) normal(s.end, 0.02f);  // a token like the others
  const BlockInitStd std = TransformerBlock::feed_forward_std(s.blocks[0].shape(), c.act_init);
  for (const TransformerBlock& b : s.blocks) b.init(params_, rng, std, true, c.act_init);
  fill(s.norm_w, 1), fill(s.norm_b, 0), normal(s.head_w, 0.02f), fill(s.head_b, 0);
  if (s.mask >= 0) {  // drawn after the classifier's, which keep their values with or without it
    normal(s.mask, 0.02f), fill(s.mlm_norm_w, 1), fill(s.mlm_norm_b, 0);
    normal(s.mlm_head_w, 0.02f), fill(s.mlm_head_b, 0);
  }
}

void SequenceClassifier::plan(int64_t B, int64_t T) {
  State& s = *state_;
  const int64_t rows = B * T;
  // Planned again when the threads change: the mixers' scratch depends on them.
  if (s.rows >= rows && s.batch_cap >= B && s.threads == num_threads()) return;
  const SequenceConfig& c = config_;
  const int64_t d = c.embed_dim, V = c.num_classes;
  const int64_t R = std::max(rows, s.rows), Bc = std::max(B, s.batch_cap);
  BufferPlan take;
  take(s.x0, R * d);
  s.layers.assign(c.depth, BlockActs{});
  for (int l = 0; l < c.depth; l++) s.blocks[l].plan_acts(take, s.layers[l], R, Bc, false);
  take(s.pooled, Bc * d), take(s.ln, Bc * d), take(s.ln_mean, Bc), take(s.ln_rstd, Bc);
  take(s.logits, Bc * V), take(s.probs, Bc * V), take(s.losses, Bc);
  take(s.dres, R * d), take(s.dln, Bc * d), take(s.dpooled, Bc * d), take(s.dlogits, Bc * V);
  TransformerBlock::plan_work(take, s.work, R, s.blocks[0].shape(),
                              s.blocks[0].mixer_scratch_floats(Bc, c.max_len + c.extra_tokens()));
  take.allocate(s.buf);
  s.rows = R, s.batch_cap = Bc, s.threads = num_threads();
}

const float* SequenceClassifier::logits() const { return state_->logits; }
const float* SequenceClassifier::layer_qkv(int layer) const {
  check(layer >= 0 && layer < config_.depth && state_->rows > 0, "layer_qkv: no layer ", layer,
        " after a forward");
  return state_->layers[layer].qkv;
}

const float* SequenceClassifier::encode(const int32_t* tokens, const uint8_t* mask, int64_t B,
                                        int64_t T) {
  const SequenceConfig& c = config_;
  check(B > 0 && T > 0, "forward: empty batch");
  check(T <= c.max_len, "a sequence of ", T, " tokens is longer than the model's max_len of ",
        c.max_len);
  const int64_t d = c.embed_dim, BT = B * T;
  for (int64_t i = 0; i < BT; i++)
    check(tokens[i] >= 0 && tokens[i] < c.vocab_size, "token ", tokens[i], " is outside 0..",
          c.vocab_size - 1);
  const int64_t pre = c.prefix_tokens(), Tm = T + c.extra_tokens();  // rows per sequence
  plan(B, Tm);
  State& s = *state_;
  const Params& P = params_;
  const float* pos = s.pos >= 0 ? P.value(s.pos) : nullptr;
  for (int64_t b = 0; b < B; b++) {  // [cls + pos 0], tokens + pos [pre, pre + T), [end]
    float* row = s.x0 + b * Tm * d;
    embedding_forward(row + pre * d, P.value(s.embed), pos ? pos + pre * d : nullptr,
                      tokens + b * T, T, T, d);
    if (pre)
      for (int64_t k = 0; k < d; k++) row[k] = P.value(s.cls)[k] + (pos ? pos[k] : 0.0f);
    if (s.end >= 0) std::copy(P.value(s.end), P.value(s.end) + d, row + (Tm - 1) * d);
    for (int64_t t = 0; mask && t < T; t++)  // a hidden token: mask_token at its position
      if (mask[b * T + t])
        for (int64_t k = 0; k < d; k++)
          row[(pre + t) * d + k] = P.value(s.mask)[k] + (pos ? pos[(pre + t) * d + k] : 0.0f);
  }
  const float* x = s.x0;
  for (int l = 0; l < c.depth; l++) {
    s.blocks[l].forward(P, x, s.layers[l], s.work.attn_scratch, B, Tm, s.rope.view());
    x = s.layers[l].res2;
  }
  s.B = B, s.T = Tm, s.loss = State::Loss::kNone;
  return x;
}

float SequenceClassifier::forward(const int32_t* tokens, const int32_t* labels, int64_t B,
                                  int64_t T, float loss_scale) {
  const SequenceConfig& c = config_;
  const float* x = encode(tokens, nullptr, B, T);
  State& s = *state_;
  const Params& P = params_;
  const int64_t d = c.embed_dim, V = c.num_classes, pre = c.prefix_tokens(), Tm = s.T;
  for (int64_t b = 0; b < B; b++) {  // the class token or the mean of the rows, then the norm
    float* p = s.pooled + b * d;
    if (pre) {
      std::copy(x + b * Tm * d, x + b * Tm * d + d, p);
      continue;
    }
    std::fill(p, p + d, 0.0f);
    for (int64_t t = 0; t < Tm; t++)
      for (int64_t k = 0; k < d; k++) p[k] += x[(b * Tm + t) * d + k];
    for (int64_t k = 0; k < d; k++) p[k] /= static_cast<float>(Tm);
  }
  layernorm_forward(s.ln, s.ln_mean, s.ln_rstd, s.pooled, P.value(s.norm_w), P.value(s.norm_b), B,
                    d, c.layernorm_eps);
  linear_forward(s.logits, s.ln, P.value(s.head_w), P.value(s.head_b), B, d, V);
  if (!labels) return 0.0f;
  for (int64_t b = 0; b < B; b++)
    check(labels[b] >= 0 && labels[b] < V, "label ", labels[b], " is outside 0..", V - 1);
  s.loss = State::Loss::kClasses;
  s.hidden.clear();
  s.tokens.assign(tokens, tokens + B * T);
  s.labels.assign(labels, labels + B);
  s.scale = loss_scale;
  softmax_xent_forward(s.losses, s.probs, s.logits, labels, B, V, 0.0f);
  double sum = 0;
  for (int64_t b = 0; b < B; b++) sum += s.losses[b];
  return static_cast<float>(sum / B * loss_scale);
}

float SequenceClassifier::forward_masked(const int32_t* tokens, const uint8_t* mask, int64_t B,
                                         int64_t T, float loss_scale) {
  const SequenceConfig& c = config_;
  check(c.masked_head, c.architecture,
        ": forward_masked needs a model with the masked-token head (masked_head)");
  const float* x = encode(tokens, mask, B, T);
  State& s = *state_;
  const Params& P = params_;
  const int64_t d = c.embed_dim, V = c.vocab_size, pre = c.prefix_tokens(), Tm = s.T;
  s.mlm_rows.clear(), s.mlm_targets.clear(), s.mlm_first.assign(1, 0);
  for (int64_t b = 0; b < B; b++) {
    for (int64_t t = 0; t < T; t++)
      if (mask[b * T + t])
        s.mlm_rows.push_back(b * Tm + pre + t), s.mlm_targets.push_back(tokens[b * T + t]);
    s.mlm_first.push_back(static_cast<int64_t>(s.mlm_rows.size()));
  }
  const int64_t M = static_cast<int64_t>(s.mlm_rows.size());
  auto fit = [](std::vector<float>& v, int64_t n) {  // grows only: no allocation once warm
    if (static_cast<int64_t>(v.size()) < n) v.resize(n);
  };
  for (auto* v : {&s.mlm_in, &s.mlm_ln, &s.mlm_dln, &s.mlm_dx}) fit(*v, M * d);
  for (auto* v : {&s.mlm_logits, &s.mlm_probs, &s.mlm_dlogits}) fit(*v, M * V);
  for (auto* v : {&s.mlm_mean, &s.mlm_rstd, &s.mlm_losses}) fit(*v, M);
  for (int64_t m = 0; m < M; m++)
    std::copy(x + s.mlm_rows[m] * d, x + (s.mlm_rows[m] + 1) * d, s.mlm_in.data() + m * d);
  s.loss = State::Loss::kMasked;
  s.tokens.assign(tokens, tokens + B * T);
  s.hidden.assign(mask, mask + B * T);
  s.scale = loss_scale;
  if (M == 0) return 0.0f;
  layernorm_forward(s.mlm_ln.data(), s.mlm_mean.data(), s.mlm_rstd.data(), s.mlm_in.data(),
                    P.value(s.mlm_norm_w), P.value(s.mlm_norm_b), M, d, c.layernorm_eps);
  linear_forward(s.mlm_logits.data(), s.mlm_ln.data(), P.value(s.mlm_head_w), P.value(s.mlm_head_b),
                 M, d, V);
  softmax_xent_forward(s.mlm_losses.data(), s.mlm_probs.data(), s.mlm_logits.data(),
                       s.mlm_targets.data(), M, V, 0.0f);
  double sum = 0;  // of each sequence's mean over its hidden tokens
  for (int64_t b = 0; b < B; b++) {
    const int64_t first = s.mlm_first[b], n = s.mlm_first[b + 1] - first;
    double seq = 0;
    for (int64_t m = first; m < first + n; m++) seq += s.mlm_losses[m];
    if (n > 0) sum += seq / static_cast<double>(n);
  }
  return static_cast<float>(sum / B * loss_scale);
}

int64_t SequenceClassifier::masked_count() const {
  return static_cast<int64_t>(state_->mlm_rows.size());
}
const float* SequenceClassifier::masked_logits() const { return state_->mlm_logits.data(); }

void SequenceClassifier::backward() {
  State& s = *state_;
  check(s.loss != State::Loss::kNone,
        "backward() needs a forward() with labels or a forward_masked() first");
  const SequenceConfig& c = config_;
  Params& P = params_;
  const int64_t B = s.B, T = s.T, d = c.embed_dim;
  if (s.loss == State::Loss::kMasked) {
    const int64_t M = masked_count(), V = c.vocab_size;
    std::fill(s.dres, s.dres + B * T * d, 0.0f);
    if (M > 0) {
      std::fill(s.mlm_dlogits.begin(), s.mlm_dlogits.begin() + M * V, 0.0f);
      for (int64_t b = 0; b < B; b++) {  // each sequence's mean, then the mean over sequences
        const int64_t first = s.mlm_first[b], n = s.mlm_first[b + 1] - first;
        if (n > 0)
          softmax_xent_backward(s.mlm_dlogits.data() + first * V, s.mlm_probs.data() + first * V,
                                s.mlm_targets.data() + first, n, V, 0.0f,
                                s.scale / static_cast<float>(B * n));
      }
      linear_backward(s.mlm_dln.data(), P.grad(s.mlm_head_w), P.grad(s.mlm_head_b),
                      s.mlm_dlogits.data(), s.mlm_ln.data(), P.value(s.mlm_head_w), M, d, V, false);
      std::fill(s.mlm_dx.begin(), s.mlm_dx.begin() + M * d, 0.0f);
      layernorm_backward(s.mlm_dx.data(), P.grad(s.mlm_norm_w), P.grad(s.mlm_norm_b),
                         s.mlm_dln.data(), s.mlm_in.data(), s.mlm_mean.data(), s.mlm_rstd.data(),
                         P.value(s.mlm_norm_w), M, d);
      for (int64_t m = 0; m < M; m++)
        std::copy(s.mlm_dx.data() + m * d, s.mlm_dx.data() + (m + 1) * d,
                  s.dres + s.mlm_rows[m] * d);
    }
    backward_blocks();
    return;
  }
  const int64_t V = c.num_classes;
  std::fill(s.dlogits, s.dlogits + B * V, 0.0f);
  softmax_xent_backward(s.dlogits, s.probs, s.labels.data(), B, V, 0.0f, s.scale / B);
  linear_backward(s.dln, P.grad(s.head_w), P.grad(s.head_b), s.dlogits, s.ln, P.value(s.head_w), B,
                  d, V, false);
  std::fill(s.dpooled, s.dpooled + B * d, 0.0f);
  layernorm_backward(s.dpooled, P.grad(s.norm_w), P.grad(s.norm_b), s.dln, s.pooled, s.ln_mean,
                     s.ln_rstd, P.value(s.norm_w), B, d);
  const int64_t pre = c.prefix_tokens();
  const float inv = pre ? 0.0f : 1.0f / static_cast<float>(T);
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < T; t++)
      for (int64_t k = 0; k < d; k++) s.dres[(b * T + t) * d + k] = s.dpooled[b * d + k] * inv;
  if (pre)
    for (int64_t b = 0; b < B; b++)
      std::copy(s.dpooled + b * d, s.dpooled + (b + 1) * d, s.dres + b * T * d);
  backward_blocks();
}

void SequenceClassifier::backward_blocks() {
  State& s = *state_;
  const SequenceConfig& c = config_;
  Params& P = params_;
  const int64_t B = s.B, T = s.T, d = c.embed_dim;
  const int64_t pre = c.prefix_tokens(), n = T - c.extra_tokens();  // n tokens per sequence
  for (int l = c.depth - 1; l >= 0; l--) {
    const float* x_in = l == 0 ? s.x0 : s.layers[l - 1].res2;
    s.blocks[l].backward(P, s.dres, x_in, s.layers[l], s.work, B, T, s.rope.view());
  }
  float* dpos = s.pos >= 0 ? P.grad(s.pos) : nullptr;
  for (int64_t b = 0; b < B; b++) {
    float* drow = s.dres + b * T * d;
    // A hidden token's row came from mask_token and its position: its gradient goes there and
    // not to the token's embedding.
    for (int64_t t = 0; !s.hidden.empty() && t < n; t++) {
      if (!s.hidden[b * n + t]) continue;
      float* g = drow + (pre + t) * d;
      for (int64_t k = 0; k < d; k++) {
        P.grad(s.mask)[k] += g[k];
        if (dpos) dpos[(pre + t) * d + k] += g[k];
        g[k] = 0.0f;
      }
    }
    embedding_backward(P.grad(s.embed), dpos ? dpos + pre * d : nullptr, drow + pre * d,
                       s.tokens.data() + b * n, n, n, d);
    for (int64_t k = 0; pre && k < d; k++) {
      P.grad(s.cls)[k] += drow[k];
      if (dpos) dpos[k] += drow[k];
    }
    if (s.end >= 0)
      for (int64_t k = 0; k < d; k++) P.grad(s.end)[k] += drow[(T - 1) * d + k];
  }
}

void save_sequence_model(const std::string& dir, const SequenceClassifier& model) {
  save_params(dir, model.params(), sequence_config_to_json(model.config()));
}

namespace {

SequenceConfig checkpoint_config(const std::string& dir) {
  const std::string config_path = dir + "/config.json";
  check(file_exists(config_path), dir, ": no config.json in the checkpoint directory");
  return sequence_config_from_json(read_text_file(config_path), config_path);
}

}  // namespace

std::unique_ptr<SequenceClassifier> load_sequence_model(const std::string& path) {
  const std::string dir = checkpoint_dir(path);
  auto model = std::make_unique<SequenceClassifier>(checkpoint_config(dir));
  load_params(dir + "/model.safetensors", model->params(), model->config().architecture);
  return model;
}

void load_sequence_weights(const std::string& checkpoint, SequenceClassifier& model) {
  const std::string dir = checkpoint_dir(checkpoint);
  const int from = checkpoint_config(dir).depth, depth = model.config().depth;
  check(from <= depth, dir, " has ", from, " blocks and the model ", depth,
        ": a model grows from a checkpoint (a greater depth), it is not cut from one");
  Params& p = model.params();
  std::vector<std::string> absent = SequenceClassifier::masked_head_tensors();
  for (int l = from; l < depth; l++) {  // the new blocks: identities, their branches' outputs zero
    const std::string prefix = "blocks." + std::to_string(l) + ".";
    for (const ParamSpec& s : p.specs())
      if (s.name.rfind(prefix, 0) == 0) absent.push_back(s.name);
    for (const char* part : {kTimmBlockNames.proj, kTimmBlockNames.fc2})
      for (const char* what : {".weight", ".bias"}) {
        const int i = p.find(prefix + part + what);
        check(i >= 0, "no ", part, what, " in block ", l);
        std::fill(p.value(i), p.value(i) + p.specs()[i].size, 0.0f);
      }
  }
  load_params(dir + "/model.safetensors", p, model.config().architecture, absent);
}

}  // namespace kat
