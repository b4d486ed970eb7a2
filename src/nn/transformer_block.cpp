#include "nn/transformer_block.h"

#include <algorithm>
#include <cmath>
#include <tuple>
#include <utility>
#include <vector>

#include "kat/grkan.h"
#include "kat/kernels.h"

namespace kat {
namespace {

void multiply(float* y, const float* m, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; i++) y[i] *= m[i];
}

// dst = src * m (the gradient of a branch scaled by m).
void scaled(float* dst, const float* src, const float* m, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; i++) dst[i] = src[i] * m[i];
}

// GLA's gate in place: z -> log alpha = logsigmoid(z) / 16, without overflow for any z.
void gate_activation(float* z, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) {
    const float x = z[i];
    const float ls = x >= 0.0f ? -std::log1p(std::exp(-x)) : x - std::log1p(std::exp(x));
    z[i] = ls / kGateTemperature;
  }
}

void sigmoid_inplace(float* x, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; i++) x[i] = 1.0f / (1.0f + std::exp(-x[i]));
}

// dz = dy * y (1 - y) in place, y = sigmoid(z).
void sigmoid_backward_inplace(float* dy, const float* y, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; i++) dy[i] *= y[i] * (1.0f - y[i]);
}

void softplus_inplace(float* x, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) x[i] = x[i] > 20.0f ? x[i] : std::log1p(std::exp(x[i]));
}

// The ssm's scan inputs from qkv [R, 3C] and the steps dt [R, H]: sq = qkv with k scaled by dt
// (Mamba's dt B), g = dt A per head (A = -exp(A_log)) on every key channel.
void ssm_scan_inputs(float* sq, float* g, const float* qkv, const float* dt, const float* a_log,
                     int64_t R, int64_t C, int64_t H) {
  const int64_t hd = C / H;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; r++) {
    const float* in = qkv + r * 3 * C;
    float* out = sq + r * 3 * C;
    std::copy(in, in + 3 * C, out);
    for (int64_t h = 0; h < H; h++) {
      const float step = dt[r * H + h], decay = -std::exp(a_log[h]) * step;
      for (int64_t c = h * hd; c < (h + 1) * hd; c++) out[C + c] *= step, g[r * C + c] = decay;
    }
  }
}

// y += D v per head (Mamba's skip connection; v plays x).
void ssm_skip(float* y, const float* qkv, const float* skip, int64_t R, int64_t C, int64_t H) {
  const int64_t hd = C / H;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; r++)
    for (int64_t c = 0; c < C; c++) y[r * C + c] += skip[c / hd] * qkv[r * 3 * C + 2 * C + c];
}

// From the scan's gradients (dqkv for the scaled inputs, dg for the decays) and dy: dqkv for the
// block's qkv (dk scaled back by dt, dv + D dy), the steps' gradient through softplus (dz [R, H]),
// and dA_log, dD (accumulated; sums in double, rows in order).
void ssm_backward(float* dqkv, float* dz, float* da_log, float* dskip, const float* dg,
                  const float* dy, const float* qkv, const float* dt, const float* a_log,
                  const float* skip, int64_t R, int64_t C, int64_t H) {
  const int64_t hd = C / H;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; r++)
    for (int64_t h = 0; h < H; h++) {
      const float step = dt[r * H + h], a = -std::exp(a_log[h]);
      float ddt = 0.0f;
      for (int64_t c = h * hd; c < (h + 1) * hd; c++) {
        float& dk = dqkv[r * 3 * C + C + c];
        ddt += dg[r * C + c] * a + dk * qkv[r * 3 * C + C + c];
        dk *= step;
        dqkv[r * 3 * C + 2 * C + c] += skip[h] * dy[r * C + c];
      }
      dz[r * H + h] = ddt * -std::expm1(-step);  // softplus'(z) = 1 - exp(-dt)
    }
  for (int64_t h = 0; h < H; h++) {
    const double a = -std::exp(static_cast<double>(a_log[h]));
    double sa = 0, sd = 0;
    for (int64_t r = 0; r < R; r++)
      for (int64_t c = h * hd; c < (h + 1) * hd; c++) {
        sa += static_cast<double>(dg[r * C + c]) * dt[r * H + h] * a;  // dA / dA_log = A
        sd += static_cast<double>(dy[r * C + c]) * qkv[r * 3 * C + 2 * C + c];
      }
    da_log[h] += static_cast<float>(sa), dskip[h] += static_cast<float>(sd);
  }
}

// dz = dg * dlog(alpha)/dz in place, from g = log alpha: sigmoid(-z) / 16 = -expm1(16 g) / 16.
void gate_activation_backward(float* dg, const float* g, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) dg[i] *= -std::expm1(kGateTemperature * g[i]) / kGateTemperature;
}

}  // namespace

void DecodeWork::plan(const BlockShape& s, int64_t n) {
  const int64_t d = s.dim, hid = s.hidden;
  buf.assign(d + 2 + 3 * d + d + d + d + hid + hid + n + kGateRank + d + s.heads + 3 * d, 0.0f);
  float* at = buf.data();
  for (auto [p, count] : {std::pair{&ln, d},
                          {&stats, int64_t{2}},
                          {&qkv, 3 * d},
                          {&att, d},
                          {&branch, d},
                          {&a1, d},
                          {&h, hid},
                          {&a2, hid},
                          {&scores, n},
                          {&gate_u, kGateRank},
                          {&gate_g, d},
                          {&beta, s.heads},
                          {&key, 3 * d}})
    *p = at, at += count;
}

TransformerBlock::TransformerBlock(Params& params, const std::string& prefix, const BlockNames& n,
                                   const BlockShape& s)
    : shape_(s) {
  const int64_t d = s.dim, hid = s.hidden, g = s.groups;
  auto name = [&](const char* part, const char* what) { return prefix + part + "." + what; };
  norm1_w = params.add(name(n.norm1, "weight"), {d}, ParamKind::Norm);
  norm1_b = params.add(name(n.norm1, "bias"), {d}, ParamKind::Norm);
  qkv_w = params.add(name(n.qkv, "weight"), {3 * d, d}, ParamKind::Weight);
  qkv_b = params.add(name(n.qkv, "bias"), {3 * d}, ParamKind::Bias);
  proj_w = params.add(name(n.proj, "weight"), {d, d}, ParamKind::Weight);
  proj_b = params.add(name(n.proj, "bias"), {d}, ParamKind::Bias);
  if (s.mixer == Mixer::Gla) {  // named as in flash-linear-attention's GatedLinearAttention
    gate1_w = params.add(prefix + "attn.gk_proj.0.weight", {kGateRank, d}, ParamKind::Weight);
    gate2_w = params.add(prefix + "attn.gk_proj.1.weight", {d, kGateRank}, ParamKind::Weight);
    gate2_b = params.add(prefix + "attn.gk_proj.1.bias", {d}, ParamKind::Bias);
  }
  if (s.mixer == Mixer::Delta)  // flash-linear-attention's DeltaNet: beta = sigmoid(b_proj x)
    beta_w = params.add(prefix + "attn.b_proj.weight", {s.heads, d}, ParamKind::Weight);
  if (s.mixer == Mixer::Ssm) {  // Mamba-2's names; dt = softplus(dt_proj x + dt_bias)
    dt_w = params.add(prefix + "attn.dt_proj.weight", {s.heads, d}, ParamKind::Weight);
    dt_b = params.add(prefix + "attn.dt_bias", {s.heads}, ParamKind::Bias);
    a_log = params.add(prefix + "attn.A_log", {s.heads}, ParamKind::Bias);
    skip_d = params.add(prefix + "attn.D", {s.heads}, ParamKind::Bias);
  }
  norm2_w = params.add(name(n.norm2, "weight"), {d}, ParamKind::Norm);
  norm2_b = params.add(name(n.norm2, "bias"), {d}, ParamKind::Norm);
  const bool kan = s.ffn == Ffn::Kan;
  if (kan) {
    act1_num = params.add(prefix + "mlp.act1.weight_numerator", {1, 6}, ParamKind::Rational);
    act1_den = params.add(prefix + "mlp.act1.weight_denominator", {g, 4}, ParamKind::Rational);
  }
  fc1_w = params.add(name(n.fc1, "weight"), {hid, d}, ParamKind::Weight);
  fc1_b = params.add(name(n.fc1, "bias"), {hid}, ParamKind::Bias);
  if (kan) {
    act2_num = params.add(prefix + "mlp.act2.weight_numerator", {1, 6}, ParamKind::Rational);
    act2_den = params.add(prefix + "mlp.act2.weight_denominator", {g, 4}, ParamKind::Rational);
  }
  fc2_w = params.add(name(n.fc2, "weight"), {d, hid}, ParamKind::Weight);
  fc2_b = params.add(name(n.fc2, "bias"), {d}, ParamKind::Bias);
}

void TransformerBlock::forward(const Params& p, const float* x, BlockActs& a, float* attn_scratch,
                               int64_t B, int64_t T, Rope rope) const {
  const BlockShape& s = shape_;
  const int64_t d = s.dim, hid = s.hidden, H = s.heads, BT = B * T;
  const bool kan = s.ffn == Ffn::Kan;
  layernorm_forward(a.ln1, a.ln1_mean, a.ln1_rstd, x, p.value(norm1_w), p.value(norm1_b), BT, d,
                    s.eps);
  linear_forward(a.qkv, a.ln1, p.value(qkv_w), p.value(qkv_b), BT, d, 3 * d);
  if (rope.cos) rope_rotate(a.qkv, rope.cos, rope.sin, B, T, d, H, 0, false);
  switch (s.mixer) {
    case Mixer::Linear:
      linear_attention_forward(a.atty, a.lse, attn_scratch, a.qkv, B, T, d, H, s.causal);
      break;
    case Mixer::Gla:
      linear_forward(a.gate_u, a.ln1, p.value(gate1_w), nullptr, BT, d, kGateRank);
      linear_forward(a.gate_g, a.gate_u, p.value(gate2_w), p.value(gate2_b), BT, kGateRank, d);
      gate_activation(a.gate_g, BT * d);
      gla_forward(a.atty, attn_scratch, a.qkv, a.gate_g, B, T, d, H, s.causal);
      break;
    case Mixer::Combiner:
      combiner_forward(a.atty, a.lse, attn_scratch, a.qkv, B, T, d, H, s.window, s.causal);
      break;
    case Mixer::Ssm:
      linear_forward(a.beta, a.ln1, p.value(dt_w), p.value(dt_b), BT, d, H);
      softplus_inplace(a.beta, BT * H);
      ssm_scan_inputs(a.ssm_qkv, a.gate_g, a.qkv, a.beta, p.value(a_log), BT, d, H);
      gla_forward(a.atty, attn_scratch, a.ssm_qkv, a.gate_g, B, T, d, H, s.causal);
      ssm_skip(a.atty, a.qkv, p.value(skip_d), BT, d, H);
      break;
    case Mixer::Delta:
      linear_forward(a.beta, a.ln1, p.value(beta_w), nullptr, BT, d, H);
      sigmoid_inplace(a.beta, BT * H);
      delta_forward(a.atty, attn_scratch, a.qkv, a.beta, B, T, d, H, s.causal);
      break;
    case Mixer::Softmax:
    case Mixer::Local:
      attention_forward(a.atty, a.lse, attn_scratch, a.qkv, B, T, d, H, mask());
  }
  linear_forward(a.res1, a.atty, p.value(proj_w), p.value(proj_b), BT, d, d);
  if (a.mask1) multiply(a.res1, a.mask1, BT * d);
  add_inplace(a.res1, x, BT * d);
  layernorm_forward(a.ln2, a.ln2_mean, a.ln2_rstd, a.res1, p.value(norm2_w), p.value(norm2_b), BT,
                    d, s.eps);
  const float* fc1_in = a.ln2;
  if (kan) {
    rational_forward(a.a1, a.ln2, p.value(act1_num), p.value(act1_den), BT, d, s.groups);
    fc1_in = a.a1;
  }
  linear_forward(a.h, fc1_in, p.value(fc1_w), p.value(fc1_b), BT, d, hid);
  if (kan)
    rational_forward(a.a2, a.h, p.value(act2_num), p.value(act2_den), BT, hid, s.groups);
  else
    gelu_forward(a.a2, a.h, BT * hid);
  linear_forward(a.res2, a.a2, p.value(fc2_w), p.value(fc2_b), BT, hid, d);
  if (a.mask2) multiply(a.res2, a.mask2, BT * d);
  add_inplace(a.res2, a.res1, BT * d);
}

void TransformerBlock::backward(Params& p, float* dres, const float* x, const BlockActs& a,
                                BlockWork& w, int64_t B, int64_t T, Rope rope) const {
  const BlockShape& s = shape_;
  const int64_t d = s.dim, hid = s.hidden, H = s.heads, BT = B * T;
  const bool kan = s.ffn == Ffn::Kan;
  // Feed-forward branch. Each work buffer has one writer, which overwrites it (accumulate =
  // false); the LayerNorm backward adds the branch's input gradient into dres.
  const float* dbranch = dres;
  if (a.mask2) scaled(w.dtmp, dres, a.mask2, BT * d), dbranch = w.dtmp;
  linear_backward(w.da2, p.grad(fc2_w), p.grad(fc2_b), dbranch, a.a2, p.value(fc2_w), BT, hid, d,
                  false);
  if (kan)
    rational_backward(w.dh, p.grad(act2_num), p.grad(act2_den), w.da2, a.h, p.value(act2_num),
                      p.value(act2_den), BT, hid, s.groups, false);
  else
    gelu_backward(w.dh, w.da2, a.h, BT * hid, false);
  float* dfc1_in = kan ? w.da1 : w.dln;
  linear_backward(dfc1_in, p.grad(fc1_w), p.grad(fc1_b), w.dh, kan ? a.a1 : a.ln2, p.value(fc1_w),
                  BT, d, hid, false);
  if (kan)
    rational_backward(w.dln, p.grad(act1_num), p.grad(act1_den), w.da1, a.ln2, p.value(act1_num),
                      p.value(act1_den), BT, d, s.groups, false);
  layernorm_backward(dres, p.grad(norm2_w), p.grad(norm2_b), w.dln, a.res1, a.ln2_mean, a.ln2_rstd,
                     p.value(norm2_w), BT, d);
  // Attention branch.
  dbranch = dres;
  if (a.mask1) scaled(w.dtmp, dres, a.mask1, BT * d), dbranch = w.dtmp;
  linear_backward(w.datty, p.grad(proj_w), p.grad(proj_b), dbranch, a.atty, p.value(proj_w), BT, d,
                  d, false);
  switch (s.mixer) {
    case Mixer::Linear:
      linear_attention_backward(w.dqkv, w.attn_scratch, w.datty, a.atty, a.lse, a.qkv, B, T, d, H,
                                s.causal, false);
      break;
    case Mixer::Gla:
      gla_backward(w.dqkv, w.dgate_g, w.attn_scratch, w.datty, a.qkv, a.gate_g, B, T, d, H,
                   s.causal, false);
      break;
    case Mixer::Combiner:
      combiner_backward(w.dqkv, w.attn_scratch, w.datty, a.atty, a.qkv, a.lse, B, T, d, H, s.window,
                        s.causal, false);
      break;
    case Mixer::Delta:
      delta_backward(w.dqkv, w.dbeta, w.attn_scratch, w.datty, a.qkv, a.beta, B, T, d, H, s.causal,
                     false);
      break;
    case Mixer::Ssm:
      gla_backward(w.dqkv, w.dgate_g, w.attn_scratch, w.datty, a.ssm_qkv, a.gate_g, B, T, d, H,
                   s.causal, false);
      ssm_backward(w.dqkv, w.dbeta, p.grad(a_log), p.grad(skip_d), w.dgate_g, w.datty, a.qkv,
                   a.beta, p.value(a_log), p.value(skip_d), BT, d, H);
      break;
    case Mixer::Softmax:
    case Mixer::Local:
      attention_backward(w.dqkv, w.attn_scratch, w.datty, a.atty, a.qkv, a.lse, B, T, d, H, mask(),
                         false);
  }
  if (rope.cos) rope_rotate(w.dqkv, rope.cos, rope.sin, B, T, d, H, 0, true);
  linear_backward(w.dln, p.grad(qkv_w), p.grad(qkv_b), w.dqkv, a.ln1, p.value(qkv_w), BT, d, 3 * d,
                  false);
  if (s.mixer == Mixer::Gla) {  // the gate's path back to norm1's output
    gate_activation_backward(w.dgate_g, a.gate_g, BT * d);
    linear_backward(w.dgate_u, p.grad(gate2_w), p.grad(gate2_b), w.dgate_g, a.gate_u,
                    p.value(gate2_w), BT, kGateRank, d, false);
    linear_backward(w.dln, p.grad(gate1_w), nullptr, w.dgate_u, a.ln1, p.value(gate1_w), BT, d,
                    kGateRank, true);
  }
  if (s.mixer == Mixer::Ssm)  // dt's path back through dt_proj
    linear_backward(w.dln, p.grad(dt_w), p.grad(dt_b), w.dbeta, a.ln1, p.value(dt_w), BT, d, H,
                    true);
  if (s.mixer == Mixer::Delta) {  // through the sigmoid and b_proj
    sigmoid_backward_inplace(w.dbeta, a.beta, BT * H);
    linear_backward(w.dln, p.grad(beta_w), nullptr, w.dbeta, a.ln1, p.value(beta_w), BT, d, H,
                    true);
  }
  layernorm_backward(dres, p.grad(norm1_w), p.grad(norm1_b), w.dln, x, a.ln1_mean, a.ln1_rstd,
                     p.value(norm1_w), BT, d);
  p.grads_final_from(p.specs()[norm1_w].offset);  // the block's first parameter
}

void TransformerBlock::init(Params& p, Rng& rng, const BlockInitStd& std, bool truncate,
                            const std::string& act_init) const {
  auto fill = [&](int i, float value) {
    std::fill(p.value(i), p.value(i) + p.specs()[i].size, value);
  };
  auto normal = [&](int i, float s) {
    float* v = p.value(i);
    for (int64_t k = 0; k < p.specs()[i].size; k++)
      v[k] = truncate ? rng.trunc_normal(s, -2.0f, 2.0f) : rng.normal() * s;
  };
  fill(norm1_w, 1), fill(norm1_b, 0), fill(norm2_w, 1), fill(norm2_b, 0);
  normal(qkv_w, std.qkv), fill(qkv_b, 0);
  normal(proj_w, std.proj), fill(proj_b, 0);
  normal(fc1_w, std.fc1), fill(fc1_b, 0);
  normal(fc2_w, std.fc2), fill(fc2_b, 0);
  if (shape_.mixer == Mixer::Gla)
    normal(gate1_w, std.qkv), normal(gate2_w, std.qkv), fill(gate2_b, 0);
  if (shape_.mixer == Mixer::Delta) normal(beta_w, std.qkv);
  if (shape_.mixer == Mixer::Ssm) {  // Mamba-2: A in [1, 16], dt in [0.001, 0.1] log-uniform, D 1
    normal(dt_w, std.qkv), fill(skip_d, 1);
    for (int64_t h = 0; h < shape_.heads; h++) {
      p.value(a_log)[h] = std::log(1.0f + 15.0f * rng.uniform());
      const float dt =
          std::exp(std::log(1e-3f) + rng.uniform() * (std::log(0.1f) - std::log(1e-3f)));
      p.value(dt_b)[h] = dt + std::log(-std::expm1(-dt));  // softplus(dt_bias) = dt
    }
  }
  if (shape_.ffn != Ffn::Kan) return;
  for (auto [num, den, mode] : {std::tuple{act1_num, act1_den, std::string("identity")},
                                std::tuple{act2_num, act2_den, act_init}}) {
    const RationalCoefs k = rational_init(mode);
    for (int i = 0; i < 6; i++) p.value(num)[i] = static_cast<float>(k.num[i]);
    for (int g = 0; g < shape_.groups; g++)
      for (int i = 0; i < 4; i++) p.value(den)[g * 4 + i] = static_cast<float>(k.den[i]);
  }
}

BlockInitStd TransformerBlock::feed_forward_std(const BlockShape& s, const std::string& act_init) {
  BlockInitStd std;
  if (s.ffn == Ffn::Kan) {
    std.fc1 = static_cast<float>(
        std::sqrt(1.0 / rational_second_moment(rational_init("identity")) / s.dim));
    std.fc2 = static_cast<float>(
        std::sqrt(1.0 / rational_second_moment(rational_init(act_init)) / s.hidden));
  }
  return std;
}

int64_t TransformerBlock::mixer_scratch_floats(int64_t B, int64_t T) const {
  const int64_t d = shape_.dim, H = shape_.heads;
  switch (shape_.mixer) {
    case Mixer::Linear:
      return linear_attention_scratch_floats(B, T, d, H);
    case Mixer::Gla:
      return gla_scratch_floats(B, T, d, H);
    case Mixer::Combiner:
      return combiner_scratch_floats(T, d, H, shape_.window);
    case Mixer::Delta:
      return delta_scratch_floats(T, d, H);
    case Mixer::Ssm:
      return gla_scratch_floats(B, T, d, H);
    case Mixer::Softmax:
    case Mixer::Local:
      break;
  }
  return attention_scratch_floats();
}

int64_t TransformerBlock::decode_state_floats(int64_t context) const {
  const int64_t d = shape_.dim, hd = d / shape_.heads;
  switch (shape_.mixer) {
    case Mixer::Linear:
      return shape_.heads * (hd * hd + hd);
    case Mixer::Gla:
    case Mixer::Delta:
    case Mixer::Ssm:
      return shape_.heads * hd * hd;
    case Mixer::Combiner:  // keys, values, then the summaries (max keys, mean values) per span
      return 2 * context * d + 2 * span_count(context) * d;
    case Mixer::Softmax:
    case Mixer::Local:
      break;
  }
  return 2 * context * d;
}

namespace {

// Linear attention's state per head: S [hd, hd] then z [hd]; adds phi(k) v^T and phi(k).
void linear_state_add(float* state, const float* k, const float* v, int64_t d, int64_t H) {
  const int64_t hd = d / H;
  for (int64_t h = 0; h < H; h++) {
    float* S = state + h * (hd * hd + hd);
    float* z = S + hd * hd;
    for (int64_t i = 0; i < hd; i++) {
      const float x = k[h * hd + i], f = x > 0.0f ? x + 1.0f : std::exp(x);
      for (int64_t j = 0; j < hd; j++) S[i * hd + j] += f * v[h * hd + j];
      z[i] += f;
    }
  }
}

}  // namespace

TransformerBlock::CombinerState TransformerBlock::combiner_state(float* state,
                                                                 int64_t context) const {
  const int64_t d = shape_.dim, n = span_count(context);
  return {state, state + context * d, state + 2 * context * d, state + (2 * context + n) * d};
}

void TransformerBlock::prefill_state(float* state, const BlockActs& a, int64_t n,
                                     int64_t context) const {
  const int64_t d = shape_.dim, H = shape_.heads;
  std::fill(state, state + decode_state_floats(context), 0.0f);
  if (shape_.mixer == Mixer::Linear) {
    for (int64_t t = 0; t < n; t++)
      linear_state_add(state, a.qkv + t * 3 * d + d, a.qkv + t * 3 * d + 2 * d, d, H);
    return;
  }
  if (shape_.mixer == Mixer::Gla || shape_.mixer == Mixer::Delta || shape_.mixer == Mixer::Ssm) {
    std::vector<float> out(d);  // the recurrence over the prompt; its outputs are not needed
    for (int64_t t = 0; t < n; t++) {
      const float* row = (shape_.mixer == Mixer::Ssm ? a.ssm_qkv : a.qkv) + t * 3 * d;
      if (shape_.mixer != Mixer::Delta)
        gla_decode(out.data(), state, row, row + d, row + 2 * d, a.gate_g + t * d, d, H);
      else
        delta_decode(out.data(), state, row, row + d, row + 2 * d, a.beta + t * H, d, H);
    }
    return;
  }
  for (int64_t t = 0; t < n; t++) {  // the forward left rotated keys and the values in qkv
    const float* row = a.qkv + t * 3 * d;
    std::copy(row + d, row + 2 * d, state + t * d);
    std::copy(row + 2 * d, row + 3 * d, state + (context + t) * d);
  }
  if (shape_.mixer == Mixer::Combiner) {  // summaries of the spans the prompt completes
    const CombinerState c = combiner_state(state, context);
    const int64_t span = shape_.window;
    for (int64_t r = 0; r < n / span; r++)
      combiner_summarize(c.ksum + r * d, c.vsum + r * d, c.k + r * span * d, c.v + r * span * d,
                         span, d);
  }
}

void TransformerBlock::decode(const Params& p, float* x, float* state, int64_t pos, int64_t context,
                              Rope rope, DecodeWork& w) const {
  const BlockShape& s = shape_;
  const int64_t d = s.dim, hid = s.hidden, H = s.heads, hd = d / H;
  const bool kan = s.ffn == Ffn::Kan;
  layernorm_forward(w.ln, w.stats, w.stats + 1, x, p.value(norm1_w), p.value(norm1_b), 1, d, s.eps);
  linear_forward(w.qkv, w.ln, p.value(qkv_w), p.value(qkv_b), 1, d, 3 * d);
  if (rope.cos) rope_rotate(w.qkv, rope.cos, rope.sin, 1, 1, d, H, pos, false);
  const float *q = w.qkv, *k = w.qkv + d, *v = w.qkv + 2 * d;
  switch (s.mixer) {
    case Mixer::Linear:  // O(1) per token: the running sums
      linear_state_add(state, k, v, d, H);
      for (int64_t h = 0; h < H; h++) {
        const float* S = state + h * (hd * hd + hd);
        const float* z = S + hd * hd;
        const float* qh = q + h * hd;
        float den = 1e-6f;
        float* o = w.att + h * hd;
        std::fill(o, o + hd, 0.0f);
        for (int64_t i = 0; i < hd; i++) {
          const float f = qh[i] > 0.0f ? qh[i] + 1.0f : std::exp(qh[i]);
          den += f * z[i];
          for (int64_t j = 0; j < hd; j++) o[j] += f * S[i * hd + j];
        }
        for (int64_t j = 0; j < hd; j++) o[j] /= den;
      }
      break;
    case Mixer::Gla:  // O(1) per token: the decayed state
      linear_forward(w.gate_u, w.ln, p.value(gate1_w), nullptr, 1, d, kGateRank);
      linear_forward(w.gate_g, w.gate_u, p.value(gate2_w), p.value(gate2_b), 1, kGateRank, d);
      gate_activation(w.gate_g, d);
      gla_decode(w.att, state, q, k, v, w.gate_g, d, H);
      break;
    case Mixer::Ssm:  // O(1) per token: the state space's state
      linear_forward(w.beta, w.ln, p.value(dt_w), p.value(dt_b), 1, d, H);
      softplus_inplace(w.beta, H);
      ssm_scan_inputs(w.key, w.gate_g, w.qkv, w.beta, p.value(a_log), 1, d, H);  // key: 3d floats
      gla_decode(w.att, state, q, w.key + d, v, w.gate_g, d, H);
      ssm_skip(w.att, w.qkv, p.value(skip_d), 1, d, H);
      break;
    case Mixer::Delta:  // O(1) per token: the delta-rule state
      linear_forward(w.beta, w.ln, p.value(beta_w), nullptr, 1, d, H);
      sigmoid_inplace(w.beta, H);
      delta_decode(w.att, state, q, k, v, w.beta, d, H);
      break;
    case Mixer::Combiner: {  // O(span + pos / span): the own span's keys and the summaries
      const CombinerState c = combiner_state(state, context);
      const int64_t span = s.window, r = pos / span, first = r * span;
      std::copy(k, k + d, c.k + pos * d);
      std::copy(v, v + d, c.v + pos * d);
      if (pos == first && r > 0)  // the span before is complete now
        combiner_summarize(c.ksum + (r - 1) * d, c.vsum + (r - 1) * d, c.k + (first - span) * d,
                           c.v + (first - span) * d, span, d);
      combiner_decode(w.att, w.scores, q, c.k + first * d, c.v + first * d, pos + 1 - first, c.ksum,
                      c.vsum, r, span, d, H);
      break;
    }
    case Mixer::Softmax:
    case Mixer::Local: {
      float *kcache = state, *vcache = state + context * d;
      std::copy(k, k + d, kcache + pos * d);
      std::copy(v, v + d, vcache + pos * d);
      const int64_t first = mask().first_key(pos);  // local: the last `window` keys only
      attention_decode(w.att, w.scores, q, kcache + first * d, vcache + first * d, pos + 1 - first,
                       d, H);
    }
  }
  linear_forward(w.branch, w.att, p.value(proj_w), p.value(proj_b), 1, d, d);
  add_inplace(x, w.branch, d);
  layernorm_forward(w.ln, w.stats, w.stats + 1, x, p.value(norm2_w), p.value(norm2_b), 1, d, s.eps);
  const float* fc1_in = w.ln;
  if (kan) {
    rational_forward(w.a1, w.ln, p.value(act1_num), p.value(act1_den), 1, d, s.groups);
    fc1_in = w.a1;
  }
  linear_forward(w.h, fc1_in, p.value(fc1_w), p.value(fc1_b), 1, d, hid);
  if (kan)
    rational_forward(w.a2, w.h, p.value(act2_num), p.value(act2_den), 1, hid, s.groups);
  else
    gelu_forward(w.a2, w.h, hid);
  linear_forward(w.branch, w.a2, p.value(fc2_w), p.value(fc2_b), 1, hid, d);
  add_inplace(x, w.branch, d);
}

}  // namespace kat
