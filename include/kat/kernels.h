// CPU kernels: plain functions over float arrays, shapes in the argument names (llm.c style).
// Convention: forward functions overwrite their outputs; backward functions ACCUMULATE (+=) into
// every gradient they produce (input and parameter gradients alike), so the caller zeroes them once
// per step and residual branches add up without extra passes. Where a buffer holds one branch's
// input gradient only, `accumulate = false` overwrites it instead, which saves zeroing it first
// (parameter gradients always accumulate).
#pragma once

#include <cstdint>

namespace kat {

// ---- GEMM (OpenBLAS) ------------------------------------------------------------------------
// C[M,N] = alpha * op(A) op(B) + beta * C, row-major, with leading dimensions.
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// ---- Linear: y[R, O] = x[R, I] W[O, I]^T + b[O] ---------------------------------------------
// Narrow layers (I and O multiples of 8 up to 256, at least 96 rows) run on kat's own kernel where
// the CPU has AVX2 + FMA, the others on OpenBLAS. The narrow kernel's sums do not depend on the
// thread count.
void linear_forward(float* y, const float* x, const float* w, const float* b, int64_t R, int64_t I,
                    int64_t O);
// dx[R, I] += dy W ; dw[O, I] += dy^T x ; db[O] += sum_r dy.  dx or db may be null.
void linear_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                     const float* w, int64_t R, int64_t I, int64_t O, bool accumulate = true);

// ---- LayerNorm over the last dim C of x[R, C]; saves mean[R], rstd[R] for the backward ------
void layernorm_forward(float* y, float* mean, float* rstd, const float* x, const float* w,
                       const float* b, int64_t R, int64_t C, float eps);
void layernorm_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                        const float* mean, const float* rstd, const float* w, int64_t R, int64_t C);

// ---- GELU (exact, erf) over n values --------------------------------------------------------
void gelu_forward(float* y, const float* x, int64_t n);
void gelu_backward(float* dx, const float* dy, const float* x, int64_t n, bool accumulate = true);

// ---- GR-KAN rational over x[R, C], channels split into `groups` contiguous blocks ------------
// F(x) = P(x) / Q(x), P = sum_i a_i x^i (i < 6, a = num[6] shared by all groups),
// Q = 1 + sum_i |b_gi| |x|^(i+1) (i < 4, b = den[groups, 4]).  See reference/kat.md.
constexpr int kRationalNum = 6;
constexpr int kRationalDen = 4;
void rational_forward(float* y, const float* x, const float* num, const float* den, int64_t R,
                      int64_t C, int groups);
// dx[R, C] += dy * F'(x); dnum[6] += sum dy x^i / Q; dden[groups, 4] += per-group sums of
// -dy P / Q^2 sign(b) |x|^(i+1).  Coefficient sums run in float per row, in double across rows.
void rational_backward(float* dx, float* dnum, float* dden, const float* dy, const float* x,
                       const float* num, const float* den, int64_t R, int64_t C, int groups,
                       bool accumulate = true);
// Plain scalar double-precision reference of the same two functions (tests and fitting).
void rational_forward_ref(double* y, const double* x, const double* num, const double* den,
                          int64_t R, int64_t C, int groups);
void rational_backward_ref(double* dx, double* dnum, double* dden, const double* dy,
                           const double* x, const double* num, const double* den, int64_t R,
                           int64_t C, int groups);

// ---- Multi-head softmax attention, exact, tiled (FlashAttention-2 form) -----------------------
// qkv[B, T, 3C] holds q, k, v, each [H heads x hd] (hd = C / H), as timm lays them out.
// out[B, T, C]: heads concatenated. lse[B, H, T]: each query's log-sum-exp of its scaled scores,
// the only thing saved for the backward besides out.
// Queries go in blocks of at most `q` rows against key blocks of `k` columns with an online
// softmax, so memory is O(T): no T x T matrix, forward or backward.
struct AttentionTiles {
  int64_t q = 64, k = 512;
};
// Which keys a query sees. causal: keys j <= i. window W > 0 (sliding-window, "local" attention):
// causal, the W keys i-W+1..i; otherwise the W keys i-W/2 .. i-W/2+W-1. Costs O(T W) then.
struct AttentionMask {
  bool causal = false;
  int64_t window = 0;
  AttentionMask(bool causal_ = false, int64_t window_ = 0) : causal(causal_), window(window_) {}
  int64_t first_key(int64_t i) const {
    if (window <= 0) return 0;
    const int64_t lo = causal ? i - window + 1 : i - window / 2;
    return lo < 0 ? 0 : lo;
  }
  int64_t end_key(int64_t i, int64_t T) const {
    const int64_t hi = causal ? i + 1 : (window <= 0 ? T : i - window / 2 + window);
    return hi > T ? T : hi;
  }
};
// Floats of scratch the two functions need with the current thread count.
int64_t attention_scratch_floats(AttentionTiles tiles = {});
void attention_forward(float* out, float* lse, float* scratch, const float* qkv, int64_t B,
                       int64_t T, int64_t C, int64_t H, AttentionMask mask = {},
                       AttentionTiles tiles = {});
// dqkv[B, T, 3C] += gradient of out given dout[B, T, C], out and lse of the forward.
void attention_backward(float* dqkv, float* scratch, const float* dout, const float* out,
                        const float* qkv, const float* lse, int64_t B, int64_t T, int64_t C,
                        int64_t H, AttentionMask mask = {}, bool accumulate = true,
                        AttentionTiles tiles = {});
// One query row q[C] (all heads) against n cached keys and values k, v [n, C] (heads contiguous,
// row stride C): out[C] = softmax(tau q k^T) v per head, the causal step of generation.
// scratch: n floats.
void attention_decode(float* out, float* scratch, const float* q, const float* k, const float* v,
                      int64_t n, int64_t C, int64_t H);
// Plain double-precision reference forming the whole score matrix; the backward accumulates.
void attention_forward_ref(double* out, const double* qkv, int64_t B, int64_t T, int64_t C,
                           int64_t H, AttentionMask mask);
void attention_backward_ref(double* dqkv, const double* dout, const double* qkv, int64_t B,
                            int64_t T, int64_t C, int64_t H, AttentionMask mask);

// ---- Linear attention, phi(x) = elu(x) + 1 (Katharopoulos et al. 2020) ----------------------
// Same packed qkv[B, T, 3C] in, out[B, T, C]: o_i = phi(q_i)^T S / (phi(q_i) . z + 1e-6) with
// S = sum phi(k_j) v_j^T and z = sum phi(k_j) over every key (bidirectional) or j <= i (causal,
// in chunks of 64). O(T d^2) time, O(T d) memory. The forward also keeps what the backward needs
// in saved[linear_attention_saved_floats]: every query's denominator [B, H, T] and, when
// bidirectional, every head's S, z [B, H, hd * hd + hd]; the backward needs out and saved.
// scratch: *_scratch_floats(B, ...) floats for calls of up to B batch rows at the current thread
// count. With at least as many rows as threads, each thread takes whole rows (kat/parallel.h:
// batch_lanes), else the threads share each row's heads; the results are the same.
int64_t linear_attention_scratch_floats(int64_t B, int64_t T, int64_t C, int64_t H);
int64_t linear_attention_saved_floats(int64_t B, int64_t T, int64_t C, int64_t H, bool causal);
void linear_attention_forward(float* out, float* saved, float* scratch, const float* qkv, int64_t B,
                              int64_t T, int64_t C, int64_t H, bool causal);
void linear_attention_backward(float* dqkv, float* scratch, const float* dout, const float* out,
                               const float* saved, const float* qkv, int64_t B, int64_t T,
                               int64_t C, int64_t H, bool causal, bool accumulate = true);
// Plain double-precision reference of the forward (the sums written out per query).
void linear_attention_forward_ref(double* out, const double* qkv, int64_t B, int64_t T, int64_t C,
                                  int64_t H, bool causal);

// ---- Gated linear attention (GLA) -----------------------------------------------------------
// qkv[B, T, 3C] packed like the other mixers (q, k, v; head h owns channels h*hd .. h*hd+hd-1,
// hd = C / H); g[B, T, C]: log decays (<= 0) per head and key channel. Per head, causal:
//   S_t = Diag(exp(g_t)) S_{t-1} + k_t^T v_t ,  o_t = (q_t / sqrt(hd)) S_t
// Bidirectional (causal = false): o_i = (q_i / sqrt(hd)) sum_j w_ij * k_j^T v_j with the
// symmetric weight  w_ij = prod_{s = min(i,j)+1 .. max(i,j)} exp(g_s)  (elementwise per key
// channel), which is a forward scan plus a reverse scan minus the doubled diagonal term.
// Chunks of 16 tokens; every exponential evaluated is of something <= 0, so any g <= 0 and any T
// are safe. O(T hd^2) time, O(T hd) memory (scratch, per lane as for linear attention), no saved
// activations.
int64_t gla_scratch_floats(int64_t B, int64_t T, int64_t C, int64_t H);
void gla_forward(float* out, float* scratch, const float* qkv, const float* g, int64_t B, int64_t T,
                 int64_t C, int64_t H, bool causal);
// dqkv[B, T, 3C] and dg[B, T, C]: gradients given dout[B, T, C]; written (accumulate = false) or
// added.
void gla_backward(float* dqkv, float* dg, float* scratch, const float* dout, const float* qkv,
                  const float* g, int64_t B, int64_t T, int64_t C, int64_t H, bool causal,
                  bool accumulate = true);
// Plain double-precision reference of the forward: the weights written out per (i, j).
void gla_forward_ref(double* out, const double* qkv, const double* g, int64_t B, int64_t T,
                     int64_t C, int64_t H, bool causal);
// One causal step of generation: state [H, hd, hd] (S of every head, row = key channel) becomes
// Diag(exp(g)) S + k^T v, then out[C] = (q / sqrt(hd)) S. q, k, v, g: [C] each.
void gla_decode(float* out, float* state, const float* q, const float* k, const float* v,
                const float* g, int64_t C, int64_t H);

// ---- Rotary position embedding, rotate-half form (GPT-NeoX, LLaMA) -----------------------------
// Tables cos, sin [positions, hd / 2] of angle = t * theta^(-2i / hd).
void rope_tables(float* cos, float* sin, int64_t positions, int64_t hd, double theta);
// Axial 2D tables (RoPE-ViT's axial form) for tokens laid out row by row on a grid `width` wide,
// token t at table row first + t: pair i < hd / 4 turns with the token's row y = floor(t / width),
// pair hd / 4 + i with its column x = t mod width (floored: a class token at row first - 1 sits
// just before the first pixel), both by the angle theta^(-i / (hd / 4)) per step. q.k of two
// rotated tokens then depends on their offset (dy, dx) alone. hd must be a multiple of 4.
void rope_tables_2d(float* cos, float* sin, int64_t positions, int64_t hd, double theta,
                    int64_t width, int64_t first);
// Rotates q and k of every head in qkv[B, T, 3C] (hd = C / H) in place, token t by the angle of
// position pos0 + t: (x_i, x_{i+hd/2}) -> (x_i cos - x_{i+hd/2} sin, x_{i+hd/2} cos + x_i sin).
// inverse rotates back, which is also the backward (the rotation is orthogonal).
void rope_rotate(float* qkv, const float* cos, const float* sin, int64_t B, int64_t T, int64_t C,
                 int64_t H, int64_t pos0, bool inverse);
// Plain double-precision reference of the forward rotation, angles computed directly.
void rope_rotate_ref(double* qkv, int64_t B, int64_t T, int64_t C, int64_t H, int64_t pos0,
                     double theta);

// ---- DeltaNet: the delta rule (Yang et al. 2024), keys and queries L2-normalised ----
// qkv[B, T, 3C] packed like the other mixers (head h owns channels h*hd .. h*hd+hd-1, hd = C / H);
// beta[B, T, H] in (0, 1), one write strength per token and head (the caller applies a sigmoid).
// Per head, with q^ = q / sqrt(|q|^2 + 1e-6) and k^ likewise, causal:
//   S_t = S_{t-1} (I - beta_t k^_t k^_t^T) + beta_t v_t k^_t^T,  o_t = S_t q^_t   (S: [hd, hd],
//   row = value channel, S_0 = 0)
// Bidirectional (causal = false): o = that + the same recurrence run from the last token to the
// first. Chunks of 32 tokens in the WY form (reference/attention.md); O(T hd^2) time, O(T hd +
// T hd^2 / 32) memory (scratch, per thread), no saved activations.
int64_t delta_scratch_floats(int64_t T, int64_t C, int64_t H);
void delta_forward(float* out, float* scratch, const float* qkv, const float* beta, int64_t B,
                   int64_t T, int64_t C, int64_t H, bool causal);
// dqkv[B, T, 3C] and dbeta[B, T, H] written (accumulate = false) or added.
void delta_backward(float* dqkv, float* dbeta, float* scratch, const float* dout, const float* qkv,
                    const float* beta, int64_t B, int64_t T, int64_t C, int64_t H, bool causal,
                    bool accumulate = true);
// The recurrence written out token by token in double.
void delta_forward_ref(double* out, const double* qkv, const double* beta, int64_t B, int64_t T,
                       int64_t C, int64_t H, bool causal);
// One causal step: state [H, hd, hd] (S of every head, row = value channel) takes the token,
// out[C] = S q^. q, k, v: [C] each; beta: [H].
void delta_decode(float* out, float* state, const float* q, const float* k, const float* v,
                  const float* beta, int64_t C, int64_t H);

// ---- Combiner-Fixed (Ren et al. 2021): direct attention in the span, summaries of the rest ----
// Same packed qkv[B, T, 3C] in. The sequence is cut into spans of `span` tokens (the last may be
// shorter): span r = [r*span, min(T, (r+1)*span)). Per head (hd = C/H, tau = 1/sqrt(hd)), a query
// i in span r attends, in ONE softmax, to
//   - direct keys: the keys j of its own span (causal: only j <= i), logit tau * q_i . k_j,
//     value v_j;
//   - one summary per other span r' (bidirectional: every r' != r; causal: every r' < r): key
//     kbar_r' = elementwise max over the span's keys, value vbar_r' = mean of the span's values,
//     logit tau * q_i . kbar_r' + log(n_r') with n_r' the span's token count (so a span of
//     identical keys weighs as much as under full attention).
// Cost O(T (span + T/span)), memory O(T); span = ceil(sqrt(T)) balances the two. With span >= T
// this is exactly full softmax attention.
// Floats of scratch the forward and backward need with the current thread count.
int64_t combiner_scratch_floats(int64_t T, int64_t C, int64_t H, int64_t span);
// out[B, T, C]; lse[B, T, H] the log-sum-exp of each softmax (saved for the backward).
void combiner_forward(float* out, float* lse, float* scratch, const float* qkv, int64_t B,
                      int64_t T, int64_t C, int64_t H, int64_t span, bool causal);
// dqkv[B, T, 3C] written (accumulate = false) or added; the max-pool's gradient goes to the
// argmax key of each channel (first one on ties), the mean's to every value of the span.
void combiner_backward(float* dqkv, float* scratch, const float* dout, const float* out,
                       const float* qkv, const float* lse, int64_t B, int64_t T, int64_t C,
                       int64_t H, int64_t span, bool causal, bool accumulate = true);
// Plain double-precision reference of the forward (each query's logits written out).
void combiner_forward_ref(double* out, const double* qkv, int64_t B, int64_t T, int64_t C,
                          int64_t H, int64_t span, bool causal);
// One causal query q[C] at position pos: own-span keys and values k, v [n_own, C] (row stride C,
// positions r*span .. pos), summaries ksum, vsum [n_spans, C] of the n_spans = pos / span
// complete spans before it (each of `span` tokens). scratch: n_own + n_spans floats.
void combiner_decode(float* out, float* scratch, const float* q, const float* k, const float* v,
                     int64_t n_own, const float* ksum, const float* vsum, int64_t n_spans,
                     int64_t span, int64_t C, int64_t H);
// Summary of one span for decoding: ksum[C] = max over the n rows of k, vsum[C] = mean of v.
void combiner_summarize(float* ksum, float* vsum, const float* k, const float* v, int64_t n,
                        int64_t C);

// ---- Token embedding: x[r] = table[tokens[r]] + pos[r % T] over R = B * T rows of width C ----
// pos may be null (no learned positions). The backward accumulates into dtable (and dpos); each
// thread owns a slice of the channels, so the sums are race-free and the same on every run.
void embedding_forward(float* x, const float* table, const float* pos, const int32_t* tokens,
                       int64_t R, int64_t T, int64_t C);
void embedding_backward(float* dtable, float* dpos, const float* dx, const int32_t* tokens,
                        int64_t R, int64_t T, int64_t C);

// ---- Softmax cross-entropy with label smoothing over logits[B, V] ---------------------------
// losses[b] = -(1 - eps) log p[b, y_b] - (eps / V) sum_j log p[b, j]; probs saved.
void softmax_xent_forward(float* losses, float* probs, const float* logits, const int32_t* labels,
                          int64_t B, int64_t V, float smoothing);
// dlogits[B, V] += scale * (p - q), q the smoothed target; scale is 1/B for a mean loss.
void softmax_xent_backward(float* dlogits, const float* probs, const int32_t* labels, int64_t B,
                           int64_t V, float smoothing, float scale);

// ---- Small helpers --------------------------------------------------------------------------
void add_inplace(float* y, const float* x, int64_t n);  // y += x

}  // namespace kat
