// Gated linear attention (GLA, Yang et al. 2024), per head (hd = C / H, tau = 1 / sqrt(hd)):
//   S_t = Diag(exp(g_t)) S_{t-1} + k_t^T v_t,  o_t = tau q_t S_t          (causal)
// The bidirectional form weighs key j for query i by exp(g_{min+1} + ... + g_max): the causal scan
// plus the same scan over the time-reversed sequence (gates shifted by one), minus the diagonal
// term both count.
//
// Chunks of kChunk rows (reference/attention.md). With b_i = g_0 + ... + g_i the prefix sums of the
// gates inside a chunk (b <= 0, decreasing), every exponential evaluated is of something <= 0, so
// nothing overflows however negative g gets or however long T is:
//   inter-chunk  o_i  = tau (q_i * exp(b_i)) S                    S: the state at the chunk's entry
//   intra-chunk  o_i += sum_{j<=i} A_ij v_j,   A_ij = tau sum_c q_ic k_jc exp(b_ic - b_jc)
//   state        S    = Diag(exp(b_last)) S + (k * exp(b_last - b))^T v
// The intra-chunk factors are formed per pair (never exp(-b_j) alone): T kChunk hd exponentials on
// top of the GEMMs, O(T hd^2 + T kChunk hd) time, O(T hd) memory.
//
// The backward stores no states: it scans forward in time for dq (which needs the entry state S)
// and backward in time for dk, dv (which need dS, the gradient of the state at the chunk's end).
// The output depends on the gates only through exp(G_i - G_j), G the prefix sums over the whole
// sequence, so dL/dG_t = q_t * dq_t - k_t * dk_t and dg_s = sum_{t >= s} (q_t * dq_t - k_t * dk_t).
// One (batch, head) per task; its rows are copied into contiguous per-thread scratch in scan order.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "kat/kernels.h"
#include "kat/parallel.h"
#include "reversed_scan.h"
#include "vec_math.h"

namespace kat {
namespace {

constexpr int64_t kChunk = 16;

// exp(x) for x <= 0, with factors below exp(-60) ~ 1e-26 taken as 0: such a weight is invisible
// next to the weight 1 of the current token, and products built from it would sink into subnormal
// floats, which are slow.
inline float decay(float x) { return x < -60.0f ? 0.0f : exp_approx(x); }

// One head's sequence in scan order as contiguous [T, hd] rows, and the chunk tiles: all in the
// calling thread's part of the scratch.
struct Head {
  float *q, *k, *v, *g;
  float* o;             // the scan's output (forward) or the output gradient (backward)
  float *dq, *dk, *dv;  // backward only
  float *b, *qe, *kd;   // [kChunk, hd]: gate prefix sums, decayed queries, decayed keys
  float *A, *D;         // [kChunk, kChunk]: intra-chunk scores, dout v^T
  float *S, *dS;        // [hd, hd]: the state (row = key channel) and its gradient
};

int64_t per_thread(int64_t T, int64_t hd) {
  return 8 * T * hd + 3 * kChunk * hd + 2 * kChunk * kChunk + 2 * hd * hd;
}

Head head_of(float* scratch, int64_t T, int64_t hd) {
  float* p = scratch + omp_get_thread_num() * per_thread(T, hd);
  Head w;
  for (auto [dst, n] : {std::pair{&w.q, T * hd},
                        {&w.k, T * hd},
                        {&w.v, T * hd},
                        {&w.g, T * hd},
                        {&w.o, T * hd},
                        {&w.dq, T * hd},
                        {&w.dk, T * hd},
                        {&w.dv, T * hd},
                        {&w.b, kChunk * hd},
                        {&w.qe, kChunk * hd},
                        {&w.kd, kChunk * hd},
                        {&w.A, kChunk * kChunk},
                        {&w.D, kChunk * kChunk},
                        {&w.S, hd * hd},
                        {&w.dS, hd * hd}})
    *dst = p, p += n;
  return w;
}

// Copies one head's rows (q at the head's offset in qkv, row stride 3C; g and dout row stride C;
// dout may be null) in scan order. Reversed, row t of the copy is row T-1-t of the sequence with
// the gate g_{T-t} (0 for t = 0), so a causal scan of the copy weighs key j >= i for query i by
// exp(g_{i+1} + ... + g_j): the other half of the bidirectional form.
void load(const Head& w, const float* q, const float* g, const float* dout, int64_t T, int64_t C,
          int64_t hd, bool reversed) {
  const int64_t C3 = 3 * C;
  for (int64_t t = 0; t < T; t++) {
    const int64_t r = reversed ? T - 1 - t : t;
    const float* qr = q + r * C3;
    std::copy(qr, qr + hd, w.q + t * hd);
    std::copy(qr + C, qr + C + hd, w.k + t * hd);
    std::copy(qr + 2 * C, qr + 2 * C + hd, w.v + t * hd);
    float* gt = w.g + t * hd;
    if (!reversed)
      std::copy(g + t * C, g + t * C + hd, gt);
    else if (t == 0)
      std::fill(gt, gt + hd, 0.0f);
    else
      std::copy(g + (T - t) * C, g + (T - t) * C + hd, gt);
    if (dout) std::copy(dout + r * C, dout + r * C + hd, w.o + t * hd);
  }
}

// b[n, hd]: prefix sums of the chunk's gates, b_i = g_0 + ... + g_i.
void prefix_sums(float* b, const float* g, int64_t n, int64_t hd) {
  std::copy(g, g + hd, b);
  for (int64_t i = 1; i < n; i++)
#pragma omp simd
    for (int64_t c = 0; c < hd; c++) b[i * hd + c] = b[(i - 1) * hd + c] + g[i * hd + c];
}

// qe_i = alpha q_i * exp(b_i): queries decayed from the chunk's entry.
void decay_from_entry(float* qe, const float* q, const float* b, int64_t n, int64_t hd,
                      float alpha) {
  for (int64_t i = 0; i < n; i++)
#pragma omp simd
    for (int64_t c = 0; c < hd; c++) qe[i * hd + c] = alpha * q[i * hd + c] * decay(b[i * hd + c]);
}

// kd_j = k_j * exp(b_last - b_j): keys decayed to the chunk's end.
void decay_to_end(float* kd, const float* k, const float* b, int64_t n, int64_t hd) {
  const float* last = b + (n - 1) * hd;
  for (int64_t j = 0; j < n; j++)
#pragma omp simd
    for (int64_t c = 0; c < hd; c++)
      kd[j * hd + c] = k[j * hd + c] * decay(last[c] - b[j * hd + c]);
}

// M[hd, hd] <- Diag(exp(b_last)) M + X^T Y over the chunk's n rows: the state going forward
// (X = decayed keys, Y = v) and its gradient going backward (X = decayed queries, Y = dout).
void decay_and_add(float* M, const float* X, const float* Y, const float* b, int64_t n,
                   int64_t hd) {
  const float* last = b + (n - 1) * hd;
  for (int64_t c = 0; c < hd; c++) {
    const float a = decay(last[c]);
#pragma omp simd
    for (int64_t e = 0; e < hd; e++) M[c * hd + e] *= a;
  }
  gemm(true, false, hd, hd, n, 1.0f, X, hd, Y, hd, 1.0f, M, hd);
}

// A[n, n]: A_ij = tau sum_c q_ic k_jc exp(b_ic - b_jc) for j <= i, 0 above the diagonal.
void intra_scores(float* A, const float* q, const float* k, const float* b, int64_t n, int64_t hd,
                  float tau) {
  for (int64_t i = 0; i < n; i++) {
    const float *qi = q + i * hd, *bi = b + i * hd;
    for (int64_t j = 0; j <= i; j++) {
      const float *kj = k + j * hd, *bj = b + j * hd;
      float s = 0.0f;
#pragma omp simd reduction(+ : s)
      for (int64_t c = 0; c < hd; c++) s += qi[c] * kj[c] * decay(bi[c] - bj[c]);
      A[i * n + j] = tau * s;
    }
    std::fill(A + i * n + i + 1, A + (i + 1) * n, 0.0f);
  }
}

// The causal scan over w's rows: w.o[T, hd] = the outputs.
void scan_forward(const Head& w, int64_t T, int64_t hd) {
  const float tau = 1.0f / std::sqrt(static_cast<float>(hd));
  std::fill(w.S, w.S + hd * hd, 0.0f);
  for (int64_t t0 = 0; t0 < T; t0 += kChunk) {
    const int64_t n = std::min(kChunk, T - t0);
    const float *q = w.q + t0 * hd, *k = w.k + t0 * hd, *v = w.v + t0 * hd;
    float* o = w.o + t0 * hd;
    prefix_sums(w.b, w.g + t0 * hd, n, hd);
    decay_from_entry(w.qe, q, w.b, n, hd, tau);
    gemm(false, false, n, hd, hd, 1.0f, w.qe, hd, w.S, hd, 0.0f, o, hd);  // the earlier chunks
    intra_scores(w.A, q, k, w.b, n, hd, tau);
    gemm(false, false, n, hd, n, 1.0f, w.A, n, v, hd, 1.0f, o, hd);  // the chunk itself
    if (t0 + n < T) {
      decay_to_end(w.kd, k, w.b, n, hd);
      decay_and_add(w.S, w.kd, v, w.b, n, hd);
    }
  }
}

// The gradients of the causal scan over w's rows given w.o = dout: w.dq, w.dk, w.dv [T, hd].
void scan_backward(const Head& w, int64_t T, int64_t hd) {
  if (T == 0) return;
  const float tau = 1.0f / std::sqrt(static_cast<float>(hd));
  // Forward in time, S the state at the chunk's entry:
  //   dq_i = tau exp(b_i) * (do_i S^T) + tau sum_{j<=i} (do_i . v_j) k_j * exp(b_i - b_j)
  std::fill(w.S, w.S + hd * hd, 0.0f);
  for (int64_t t0 = 0; t0 < T; t0 += kChunk) {
    const int64_t n = std::min(kChunk, T - t0);
    const float *k = w.k + t0 * hd, *v = w.v + t0 * hd, *dout = w.o + t0 * hd;
    float* dq = w.dq + t0 * hd;
    prefix_sums(w.b, w.g + t0 * hd, n, hd);
    gemm(false, true, n, hd, hd, 1.0f, dout, hd, w.S, hd, 0.0f, dq, hd);
    gemm(false, true, n, n, hd, 1.0f, dout, hd, v, hd, 0.0f, w.D, n);
    for (int64_t i = 0; i < n; i++) {
      const float* bi = w.b + i * hd;
      float* dqi = dq + i * hd;
#pragma omp simd
      for (int64_t c = 0; c < hd; c++) dqi[c] *= tau * decay(bi[c]);
      for (int64_t j = 0; j <= i; j++) {
        const float *kj = k + j * hd, *bj = w.b + j * hd;
        const float coef = tau * w.D[i * n + j];
#pragma omp simd
        for (int64_t c = 0; c < hd; c++) dqi[c] += coef * kj[c] * decay(bi[c] - bj[c]);
      }
    }
    if (t0 + n < T) {
      decay_to_end(w.kd, k, w.b, n, hd);
      decay_and_add(w.S, w.kd, v, w.b, n, hd);
    }
  }
  // Backward in time, dS the gradient of the state at the chunk's end (the later chunks' queries):
  //   dv_j = kd_j dS + sum_{i>=j} A_ij do_i
  //   dk_j = exp(b_last - b_j) * (v_j dS^T) + tau sum_{i>=j} (do_i . v_j) q_i * exp(b_i - b_j)
  std::fill(w.dS, w.dS + hd * hd, 0.0f);
  for (int64_t t0 = (T - 1) / kChunk * kChunk; t0 >= 0; t0 -= kChunk) {
    const int64_t n = std::min(kChunk, T - t0);
    const float *q = w.q + t0 * hd, *k = w.k + t0 * hd, *v = w.v + t0 * hd, *dout = w.o + t0 * hd;
    float *dk = w.dk + t0 * hd, *dv = w.dv + t0 * hd;
    prefix_sums(w.b, w.g + t0 * hd, n, hd);
    gemm(false, true, n, n, hd, 1.0f, dout, hd, v, hd, 0.0f, w.D, n);
    decay_to_end(w.kd, k, w.b, n, hd);
    gemm(false, false, n, hd, hd, 1.0f, w.kd, hd, w.dS, hd, 0.0f, dv, hd);
    gemm(false, true, n, hd, hd, 1.0f, v, hd, w.dS, hd, 0.0f, dk, hd);
    const float* last = w.b + (n - 1) * hd;
    for (int64_t j = 0; j < n; j++) {
      const float *kj = k + j * hd, *bj = w.b + j * hd;
      float* dkj = dk + j * hd;
#pragma omp simd
      for (int64_t c = 0; c < hd; c++) dkj[c] *= decay(last[c] - bj[c]);
      for (int64_t i = 0; i < j; i++) w.A[i * n + j] = 0.0f;
      for (int64_t i = j; i < n; i++) {  // A as intra_scores makes it, sharing the exponentials
        const float *qi = q + i * hd, *bi = w.b + i * hd;
        const float coef = tau * w.D[i * n + j];
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int64_t c = 0; c < hd; c++) {
          const float e = decay(bi[c] - bj[c]);
          s += qi[c] * kj[c] * e;
          dkj[c] += coef * qi[c] * e;
        }
        w.A[i * n + j] = tau * s;
      }
    }
    gemm(true, false, n, hd, n, 1.0f, w.A, n, dout, hd, 1.0f, dv, hd);
    if (t0 > 0) {
      decay_from_entry(w.qe, q, w.b, n, hd, tau);
      decay_and_add(w.dS, w.qe, dout, w.b, n, hd);
    }
  }
}

// The scan's dq, dk, dv into dqkv's head rows (row stride 3C) and its gate gradient
// dg_s = sum_{t >= s} (q_t * dq_t - k_t * dk_t) into dg (row stride C), added, or written when
// `add` is false. Scan rows map back to sequence rows: row t of a reversed scan is row T-1-t and
// its gate g_{T-t} (none for t = 0).
void store_gradients(float* dqkv, float* dg, const Head& w, int64_t T, int64_t C, int64_t hd,
                     bool reversed, bool add) {
  const int64_t C3 = 3 * C;
  for (int64_t t = 0; t < T; t++) {
    float* dst = dqkv + (reversed ? T - 1 - t : t) * C3;
    for (auto [from, to] : {std::pair{w.dq, dst}, {w.dk, dst + C}, {w.dv, dst + 2 * C}}) {
      const float* src = from + t * hd;
      if (add) {
#pragma omp simd
        for (int64_t c = 0; c < hd; c++) to[c] += src[c];
      } else {
        std::copy(src, src + hd, to);
      }
    }
  }
  // Suffix sums in double, kBlock channels at a time so the sums stay in registers.
  constexpr int64_t kBlock = 16;
  for (int64_t c0 = 0; c0 < hd; c0 += kBlock) {
    const int64_t m = std::min(kBlock, hd - c0);
    double acc[kBlock] = {};
    for (int64_t t = T - 1; t >= (reversed ? 1 : 0); t--) {
      const int64_t at = t * hd + c0;
      float* dgr = dg + (reversed ? T - t : t) * C + c0;
      for (int64_t c = 0; c < m; c++) {
        acc[c] += static_cast<double>(w.q[at + c]) * w.dq[at + c] -
                  static_cast<double>(w.k[at + c]) * w.dk[at + c];
        dgr[c] = add ? dgr[c] + static_cast<float>(acc[c]) : static_cast<float>(acc[c]);
      }
    }
  }
}

}  // namespace

int64_t gla_scratch_floats(int64_t T, int64_t C, int64_t H) {
  return num_threads() * per_thread(T, C / H);
}

void gla_forward(float* out, float* scratch, const float* qkv, const float* g, int64_t B, int64_t T,
                 int64_t C, int64_t H, bool causal) {
  const int64_t hd = C / H, C3 = 3 * C;
  const float tau = 1.0f / std::sqrt(static_cast<float>(hd));
#pragma omp parallel for schedule(dynamic)
  for (int64_t bh = 0; bh < B * H; bh++) {
    const int64_t b = bh / H, h = bh % H;
    const float* q = qkv + b * T * C3 + h * hd;
    const float* gh = g + b * T * C + h * hd;
    float* o = out + b * T * C + h * hd;
    const Head w = head_of(scratch, T, hd);
    for (bool reversed : {false, true}) {
      if (reversed && causal) break;
      load(w, q, gh, nullptr, T, C, hd, reversed);
      scan_forward(w, T, hd);
      store_scan_output(o, w.o, T, C, hd, reversed);
    }
    if (causal) continue;
    for (int64_t i = 0; i < T; i++) {  // both scans counted key i for query i
      const float *qi = q + i * C3, *ki = qi + C, *vi = qi + 2 * C;
      float s = 0.0f;
#pragma omp simd reduction(+ : s)
      for (int64_t c = 0; c < hd; c++) s += qi[c] * ki[c];
      s *= tau;
#pragma omp simd
      for (int64_t c = 0; c < hd; c++) o[i * C + c] -= s * vi[c];
    }
  }
}

void gla_backward(float* dqkv, float* dg, float* scratch, const float* dout, const float* qkv,
                  const float* g, int64_t B, int64_t T, int64_t C, int64_t H, bool causal,
                  bool accumulate) {
  const int64_t hd = C / H, C3 = 3 * C;
  const float tau = 1.0f / std::sqrt(static_cast<float>(hd));
#pragma omp parallel for schedule(dynamic)
  for (int64_t bh = 0; bh < B * H; bh++) {
    const int64_t b = bh / H, h = bh % H;
    const float* q = qkv + b * T * C3 + h * hd;
    const float* gh = g + b * T * C + h * hd;
    const float* doh = dout + b * T * C + h * hd;
    float* dq = dqkv + b * T * C3 + h * hd;
    float* dgh = dg + b * T * C + h * hd;
    const Head w = head_of(scratch, T, hd);
    for (bool reversed : {false, true}) {
      if (reversed && causal) break;
      load(w, q, gh, doh, T, C, hd, reversed);
      scan_backward(w, T, hd);
      store_gradients(dq, dgh, w, T, C, hd, reversed, accumulate || reversed);
    }
    if (causal) continue;
    for (int64_t i = 0; i < T; i++) {  // the diagonal term -tau (q_i . k_i) v_i of the forward
      const float *qi = q + i * C3, *ki = qi + C, *vi = qi + 2 * C, *doi = doh + i * C;
      float *dqi = dq + i * C3, *dki = dqi + C, *dvi = dqi + 2 * C;
      float qk = 0.0f, vdo = 0.0f;
#pragma omp simd reduction(+ : qk, vdo)
      for (int64_t c = 0; c < hd; c++) qk += qi[c] * ki[c], vdo += vi[c] * doi[c];
      qk *= tau, vdo *= tau;
#pragma omp simd
      for (int64_t c = 0; c < hd; c++) {
        dqi[c] -= vdo * ki[c];
        dki[c] -= vdo * qi[c];
        dvi[c] -= qk * doi[c];
      }
    }
  }
}

void gla_decode(float* out, float* state, const float* q, const float* k, const float* v,
                const float* g, int64_t C, int64_t H) {
  const int64_t hd = C / H;
  const float tau = 1.0f / std::sqrt(static_cast<float>(hd));
  for (int64_t h = 0; h < H; h++) {
    float* S = state + h * hd * hd;
    const int64_t off = h * hd;
    float* o = out + off;
    std::fill(o, o + hd, 0.0f);
    for (int64_t c = 0; c < hd; c++) {
      const float a = decay(g[off + c]), kc = k[off + c], qc = tau * q[off + c];
      float* Sc = S + c * hd;
#pragma omp simd
      for (int64_t e = 0; e < hd; e++) {
        Sc[e] = a * Sc[e] + kc * v[off + e];
        o[e] += qc * Sc[e];
      }
    }
  }
}

// ---- Plain double-precision reference: the weights written out per (query, key) ---------------

void gla_forward_ref(double* out, const double* qkv, const double* g, int64_t B, int64_t T,
                     int64_t C, int64_t H, bool causal) {
  const int64_t hd = C / H, C3 = 3 * C;
  const double tau = 1.0 / std::sqrt(static_cast<double>(hd));
  std::vector<double> logw(hd), o(hd);
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++)
      for (int64_t i = 0; i < T; i++) {
        const double* qi = qkv + (b * T + i) * C3 + h * hd;
        auto add_key = [&](int64_t j) {  // o += (sum_c q_ic k_jc w_ijc) v_j
          const double* kj = qkv + (b * T + j) * C3 + C + h * hd;
          const double* vj = kj + C;
          double a = 0;
          for (int64_t c = 0; c < hd; c++) a += qi[c] * kj[c] * std::exp(logw[c]);
          for (int64_t c = 0; c < hd; c++) o[c] += a * vj[c];
        };
        auto gate = [&](int64_t s, int64_t c) { return g[(b * T + s) * C + h * hd + c]; };
        std::fill(o.begin(), o.end(), 0.0);
        std::fill(logw.begin(), logw.end(), 0.0);
        for (int64_t j = i; j >= 0; j--) {  // log w_ij = g_{j+1} + ... + g_i
          if (j < i)
            for (int64_t c = 0; c < hd; c++) logw[c] += gate(j + 1, c);
          add_key(j);
        }
        if (!causal) {
          std::fill(logw.begin(), logw.end(), 0.0);
          for (int64_t j = i + 1; j < T; j++) {  // log w_ij = g_{i+1} + ... + g_j
            for (int64_t c = 0; c < hd; c++) logw[c] += gate(j, c);
            add_key(j);
          }
        }
        for (int64_t c = 0; c < hd; c++) out[(b * T + i) * C + h * hd + c] = tau * o[c];
      }
}

}  // namespace kat
