// DeltaNet (Yang et al. 2024): linear attention whose state is corrected by the delta rule. Per
// head (hd = C / H), with q^ = q / sqrt(|q|^2 + eps) and k^ likewise:
//   S_t = S_{t-1} (I - beta_t k^_t k^_t^T) + beta_t v_t k^_t^T,  o_t = S_t q^_t   (S: [hd_v, hd_k])
// Bidirectional: o = the causal scan's output + the same scan's run from the last token back.
//
// Inside this file the state is kept transposed, M = S^T [hd_k, hd_v] (row = key channel), so that
// rows of q, k, v multiply it from the left: o_t = q^_t M_t, M_t = M_{t-1} + k^_t u_t^T with
// u_t = beta_t (v_t - M_{t-1}^T k^_t). Chunks of kChunk rows (reference/attention.md, WY form):
// with M the state at the chunk's entry, G = K K^T, A = beta-row-scaled strictly lower part of G,
//   X = (I + A)^-1 (forward substitution),  Tm = X diag(beta),  R = V - K M,  U = Tm R  (rows u_t)
//   O = Q M + tril(Q K^T) U,   M' = M + K^T U
// which is O(T hd^2 + T kChunk hd) time in GEMMs plus O(T kChunk^2) for X.
//
// The backward replays the forward once to store every chunk's entry state, then walks the chunks
// from the last, dM the gradient of the state at the chunk's end, and differentiates the formulas
// above (including X: dA = -X^T dX X^T below the diagonal), then the L2 normalisation:
//   dq = (dq^ - q^ (q^ . dq^)) / sqrt(|q|^2 + eps).
// One (batch, head) per task; its rows are copied into contiguous per-thread scratch in scan order.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "kat/kernels.h"
#include "kat/parallel.h"

namespace kat {
namespace {

constexpr int64_t kChunk = 32;
constexpr float kNormEps = 1e-6f;

// out's head rows (stride C) = o [T, hd], the time-order scan's output, or += the reversed scan's
// (row t of which is row T-1-t of the sequence).
void store_scan_output(float* out, const float* o, int64_t T, int64_t C, int64_t hd,
                       bool reversed) {
  for (int64_t t = 0; t < T; t++) {
    const float* ot = o + t * hd;
    if (reversed) {
      float* dst = out + (T - 1 - t) * C;
#pragma omp simd
      for (int64_t c = 0; c < hd; c++) dst[c] += ot[c];
    } else {
      std::copy(ot, ot + hd, out + t * C);
    }
  }
}

// One head's sequence in scan order as contiguous rows, and the chunk tiles: all in the calling
// thread's part of the scratch.
struct Head {
  float *q, *k, *v;       // [T, hd]; q and k L2-normalised
  float *rq, *rk, *beta;  // [T]: 1 / sqrt(|q|^2 + eps), the same for k, beta
  float* o;               // [T, hd]: the scan's output (forward) or output gradient (backward)
  float *dq, *dk, *dv, *dbeta;      // backward only: [T, hd] x 3 (dq^, dk^, dv), [T]
  float* states;                    // [chunks, hd, hd]: every chunk's entry state (backward only)
  float *G, *X, *Tm, *P, *D1, *D2;  // [kChunk, kChunk]
  float *R, *U, *dU;                // [kChunk, hd]
  float *M, *dM;                    // [hd, hd]: the state and its gradient
};

int64_t chunks(int64_t T) { return (T + kChunk - 1) / kChunk; }

int64_t per_thread(int64_t T, int64_t hd) {
  return 7 * T * hd + 4 * T + chunks(T) * hd * hd + 6 * kChunk * kChunk + 3 * kChunk * hd +
         2 * hd * hd;
}

Head head_of(float* scratch, int64_t T, int64_t hd) {
  float* p = scratch + omp_get_thread_num() * per_thread(T, hd);
  Head w;
  for (auto [dst, n] : {std::pair{&w.q, T * hd},
                        {&w.k, T * hd},
                        {&w.v, T * hd},
                        {&w.rq, T},
                        {&w.rk, T},
                        {&w.beta, T},
                        {&w.o, T * hd},
                        {&w.dq, T * hd},
                        {&w.dk, T * hd},
                        {&w.dv, T * hd},
                        {&w.dbeta, T},
                        {&w.states, chunks(T) * hd * hd},
                        {&w.G, kChunk * kChunk},
                        {&w.X, kChunk * kChunk},
                        {&w.Tm, kChunk * kChunk},
                        {&w.P, kChunk * kChunk},
                        {&w.D1, kChunk * kChunk},
                        {&w.D2, kChunk * kChunk},
                        {&w.R, kChunk * hd},
                        {&w.U, kChunk * hd},
                        {&w.dU, kChunk * hd},
                        {&w.M, hd * hd},
                        {&w.dM, hd * hd}})
    *dst = p, p += n;
  return w;
}

// dst = x / sqrt(|x|^2 + eps); returns 1 / sqrt(|x|^2 + eps).
float normalise(float* dst, const float* x, int64_t hd) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t c = 0; c < hd; c++) s += x[c] * x[c];
  const float r = 1.0f / std::sqrt(s + kNormEps);
#pragma omp simd
  for (int64_t c = 0; c < hd; c++) dst[c] = r * x[c];
  return r;
}

// Copies one head's rows (q at the head's offset in qkv, row stride 3C; beta stride H; dout stride
// C, may be null) in scan order, normalising q and k. Reversed, row t of the copy is row T-1-t of
// the sequence, so a causal scan of the copy is the reverse scan of the bidirectional form.
void load(const Head& w, const float* q, const float* beta, const float* dout, int64_t T, int64_t C,
          int64_t H, int64_t hd, bool reversed) {
  const int64_t C3 = 3 * C;
  for (int64_t t = 0; t < T; t++) {
    const int64_t r = reversed ? T - 1 - t : t;
    const float* qr = q + r * C3;
    w.rq[t] = normalise(w.q + t * hd, qr, hd);
    w.rk[t] = normalise(w.k + t * hd, qr + C, hd);
    std::copy(qr + 2 * C, qr + 2 * C + hd, w.v + t * hd);
    w.beta[t] = beta[r * H];
    if (dout) std::copy(dout + r * C, dout + r * C + hd, w.o + t * hd);
  }
}

// Zeroes the part of the n x n tile above the diagonal (strict = false) or from it (strict = true).
void keep_lower(float* A, int64_t n, bool strict) {
  for (int64_t i = 0; i < n; i++)
    std::fill(A + i * n + i + (strict ? 0 : 1), A + (i + 1) * n, 0.0f);
}

// The chunk of n rows at t0 with entry state M: G = K K^T, X = (I + A)^-1 with A_ij = beta_i G_ij
// (j < i), Tm = X diag(beta), R = V - K M, U = Tm R (the rows u_t of the state's updates).
void prepare_chunk(const Head& w, const float* M, int64_t t0, int64_t n, int64_t hd) {
  const float *k = w.k + t0 * hd, *v = w.v + t0 * hd, *beta = w.beta + t0;
  gemm(false, true, n, n, hd, 1.0f, k, hd, k, hd, 0.0f, w.G, n);
  // (I + A) X = I row by row: X_i = e_i - sum_{j<i} A_ij X_j, X_j nonzero in columns 0..j only.
  std::fill(w.X, w.X + n * n, 0.0f);
  for (int64_t i = 0; i < n; i++) {
    float* xi = w.X + i * n;
    xi[i] = 1.0f;
    for (int64_t j = 0; j < i; j++) {
      const float a = beta[i] * w.G[i * n + j];
      const float* xj = w.X + j * n;
#pragma omp simd
      for (int64_t c = 0; c <= j; c++) xi[c] -= a * xj[c];
    }
  }
  for (int64_t i = 0; i < n; i++)
#pragma omp simd
    for (int64_t j = 0; j < n; j++) w.Tm[i * n + j] = w.X[i * n + j] * beta[j];
  std::copy(v, v + n * hd, w.R);
  gemm(false, false, n, hd, hd, -1.0f, k, hd, M, hd, 1.0f, w.R, hd);
  gemm(false, false, n, hd, n, 1.0f, w.Tm, n, w.R, hd, 0.0f, w.U, hd);
}

// P = tril(Q K^T), the diagonal included: the chunk's own keys each query sees.
void intra_scores(const Head& w, int64_t t0, int64_t n, int64_t hd) {
  gemm(false, true, n, n, hd, 1.0f, w.q + t0 * hd, hd, w.k + t0 * hd, hd, 0.0f, w.P, n);
  keep_lower(w.P, n, false);
}

// The causal scan over w's rows: w.o[T, hd] = the outputs.
void scan_forward(const Head& w, int64_t T, int64_t hd) {
  std::fill(w.M, w.M + hd * hd, 0.0f);
  for (int64_t t0 = 0; t0 < T; t0 += kChunk) {
    const int64_t n = std::min(kChunk, T - t0);
    const float *q = w.q + t0 * hd, *k = w.k + t0 * hd;
    float* o = w.o + t0 * hd;
    prepare_chunk(w, w.M, t0, n, hd);
    intra_scores(w, t0, n, hd);
    gemm(false, false, n, hd, hd, 1.0f, q, hd, w.M, hd, 0.0f, o, hd);  // the earlier chunks
    gemm(false, false, n, hd, n, 1.0f, w.P, n, w.U, hd, 1.0f, o, hd);  // the chunk itself
    if (t0 + n < T) gemm(true, false, hd, hd, n, 1.0f, k, hd, w.U, hd, 1.0f, w.M, hd);
  }
}

// The gradients of the causal scan over w's rows given w.o = dout: w.dq, w.dk (with respect to the
// normalised q^, k^), w.dv [T, hd] and w.dbeta [T].
void scan_backward(const Head& w, int64_t T, int64_t hd) {
  if (T == 0) return;
  const int64_t hh = hd * hd;
  std::fill(w.M, w.M + hh, 0.0f);
  for (int64_t t0 = 0, c = 0; t0 < T; t0 += kChunk, c++) {  // every chunk's entry state
    const int64_t n = std::min(kChunk, T - t0);
    std::copy(w.M, w.M + hh, w.states + c * hh);
    if (t0 + n == T) break;
    prepare_chunk(w, w.M, t0, n, hd);
    gemm(true, false, hd, hd, n, 1.0f, w.k + t0 * hd, hd, w.U, hd, 1.0f, w.M, hd);
  }
  std::fill(w.dM, w.dM + hh, 0.0f);
  for (int64_t c = chunks(T) - 1; c >= 0; c--) {
    const int64_t t0 = c * kChunk, n = std::min(kChunk, T - t0);
    const float *q = w.q + t0 * hd, *k = w.k + t0 * hd, *dout = w.o + t0 * hd;
    const float *M = w.states + c * hh, *beta = w.beta + t0;
    float *dq = w.dq + t0 * hd, *dk = w.dk + t0 * hd, *dv = w.dv + t0 * hd, *dbeta = w.dbeta + t0;
    prepare_chunk(w, M, t0, n, hd);
    intra_scores(w, t0, n, hd);
    // O = Q M + P U and M' = M + K^T U, dM = dM' on entry:
    //   dU = P^T dO + K dM',  dP = tril(dO U^T),  dQ = dO M^T + dP K,  dK = dP^T Q + U dM'^T
    gemm(true, false, n, hd, n, 1.0f, w.P, n, dout, hd, 0.0f, w.dU, hd);
    gemm(false, false, n, hd, hd, 1.0f, k, hd, w.dM, hd, 1.0f, w.dU, hd);
    gemm(false, true, n, hd, hd, 1.0f, w.U, hd, w.dM, hd, 0.0f, dk, hd);
    gemm(false, true, n, n, hd, 1.0f, dout, hd, w.U, hd, 0.0f, w.D1, n);
    keep_lower(w.D1, n, false);
    gemm(false, true, n, hd, hd, 1.0f, dout, hd, M, hd, 0.0f, dq, hd);
    gemm(false, false, n, hd, n, 1.0f, w.D1, n, k, hd, 1.0f, dq, hd);
    gemm(true, false, n, hd, n, 1.0f, w.D1, n, q, hd, 1.0f, dk, hd);
    gemm(true, false, hd, hd, n, 1.0f, q, hd, dout, hd, 1.0f, w.dM, hd);  // dM = dM' + Q^T dO ...
    // U = Tm R, R = V - K M:  dR = Tm^T dU = dV,  dTm = tril(dU R^T),  dK -= dR M^T,
    // dM -= K^T dR.
    gemm(true, false, n, hd, n, 1.0f, w.Tm, n, w.dU, hd, 0.0f, dv, hd);
    gemm(false, true, n, n, hd, 1.0f, w.dU, hd, w.R, hd, 0.0f, w.D1, n);
    gemm(false, true, n, hd, hd, -1.0f, dv, hd, M, hd, 1.0f, dk, hd);
    gemm(true, false, hd, hd, n, -1.0f, k, hd, dv, hd, 1.0f, w.dM, hd);
    // Tm = X diag(beta): dbeta_j = sum_i dTm_ij X_ij, dX = dTm diag(beta) (lower, diagonal
    // included). X = (I + A)^-1: dA = -X^T dX X^T, of which the strictly lower part counts.
    std::fill(dbeta, dbeta + n, 0.0f);
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j <= i; j++) {
        float& d = w.D1[i * n + j];
        dbeta[j] += d * w.X[i * n + j];
        d *= beta[j];
      }
    keep_lower(w.D1, n, false);
    gemm(true, false, n, n, n, 1.0f, w.X, n, w.D1, n, 0.0f, w.D2, n);
    gemm(false, true, n, n, n, -1.0f, w.D2, n, w.X, n, 0.0f, w.D1, n);
    // A_ij = beta_i G_ij (j < i): dbeta_i += sum_j dA_ij G_ij, dG_ij = beta_i dA_ij, and
    // G = K K^T gives dK += (dG + dG^T) K.
    keep_lower(w.D1, n, true);
    for (int64_t i = 0; i < n; i++) {
      float s = 0.0f;
      for (int64_t j = 0; j < i; j++) {
        float& d = w.D1[i * n + j];
        s += d * w.G[i * n + j];
        d *= beta[i];
      }
      dbeta[i] += s;
    }
    gemm(false, false, n, hd, n, 1.0f, w.D1, n, k, hd, 1.0f, dk, hd);
    gemm(true, false, n, hd, n, 1.0f, w.D1, n, k, hd, 1.0f, dk, hd);
  }
}

// dst (+)= r (g - x^ (x^ . g)): the gradient g with respect to x^ = x r taken back to x.
void normalise_backward(float* dst, const float* g, const float* xhat, float r, int64_t hd,
                        bool add) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t c = 0; c < hd; c++) s += xhat[c] * g[c];
  if (add) {
#pragma omp simd
    for (int64_t c = 0; c < hd; c++) dst[c] += r * (g[c] - xhat[c] * s);
  } else {
#pragma omp simd
    for (int64_t c = 0; c < hd; c++) dst[c] = r * (g[c] - xhat[c] * s);
  }
}

// The scan's gradients into dqkv's head rows (row stride 3C) and dbeta (stride H), added, or
// written when `add` is false; row t of a reversed scan is row T-1-t of the sequence.
void store_gradients(float* dqkv, float* dbeta, const Head& w, int64_t T, int64_t C, int64_t H,
                     int64_t hd, bool reversed, bool add) {
  const int64_t C3 = 3 * C;
  for (int64_t t = 0; t < T; t++) {
    const int64_t r = reversed ? T - 1 - t : t, at = t * hd;
    float* dst = dqkv + r * C3;
    normalise_backward(dst, w.dq + at, w.q + at, w.rq[t], hd, add);
    normalise_backward(dst + C, w.dk + at, w.k + at, w.rk[t], hd, add);
    float* dv = dst + 2 * C;
    if (add) {
#pragma omp simd
      for (int64_t c = 0; c < hd; c++) dv[c] += w.dv[at + c];
    } else {
      std::copy(w.dv + at, w.dv + at + hd, dv);
    }
    dbeta[r * H] = add ? dbeta[r * H] + w.dbeta[t] : w.dbeta[t];
  }
}

}  // namespace

int64_t delta_scratch_floats(int64_t T, int64_t C, int64_t H) {
  return num_threads() * per_thread(T, C / H);
}

void delta_forward(float* out, float* scratch, const float* qkv, const float* beta, int64_t B,
                   int64_t T, int64_t C, int64_t H, bool causal) {
  const int64_t hd = C / H, C3 = 3 * C;
#pragma omp parallel for schedule(dynamic)
  for (int64_t bh = 0; bh < B * H; bh++) {
    const int64_t b = bh / H, h = bh % H;
    const float* q = qkv + b * T * C3 + h * hd;
    const float* bt = beta + b * T * H + h;
    float* o = out + b * T * C + h * hd;
    const Head w = head_of(scratch, T, hd);
    for (bool reversed : {false, true}) {
      if (reversed && causal) break;
      load(w, q, bt, nullptr, T, C, H, hd, reversed);
      scan_forward(w, T, hd);
      store_scan_output(o, w.o, T, C, hd, reversed);
    }
  }
}

void delta_backward(float* dqkv, float* dbeta, float* scratch, const float* dout, const float* qkv,
                    const float* beta, int64_t B, int64_t T, int64_t C, int64_t H, bool causal,
                    bool accumulate) {
  const int64_t hd = C / H, C3 = 3 * C;
#pragma omp parallel for schedule(dynamic)
  for (int64_t bh = 0; bh < B * H; bh++) {
    const int64_t b = bh / H, h = bh % H;
    const float* q = qkv + b * T * C3 + h * hd;
    const float* bt = beta + b * T * H + h;
    const float* doh = dout + b * T * C + h * hd;
    float* dq = dqkv + b * T * C3 + h * hd;
    float* dbt = dbeta + b * T * H + h;
    const Head w = head_of(scratch, T, hd);
    for (bool reversed : {false, true}) {
      if (reversed && causal) break;
      load(w, q, bt, doh, T, C, H, hd, reversed);
      scan_backward(w, T, hd);
      store_gradients(dq, dbt, w, T, C, H, hd, reversed, accumulate || reversed);
    }
  }
}

void delta_decode(float* out, float* state, const float* q, const float* k, const float* v,
                  const float* beta, int64_t C, int64_t H) {
  const int64_t hd = C / H;
  auto rnorm = [hd](const float* x) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t c = 0; c < hd; c++) s += x[c] * x[c];
    return 1.0f / std::sqrt(s + kNormEps);
  };
  for (int64_t h = 0; h < H; h++) {
    const int64_t off = h * hd;
    const float *qh = q + off, *kh = k + off, rq = rnorm(qh), rk = rnorm(kh);
    for (int64_t e = 0; e < hd; e++) {  // row e of S: S_e += beta (v_e - S_e . k^) k^
      float* Se = state + (h * hd + e) * hd;
      float sk = 0.0f;
#pragma omp simd reduction(+ : sk)
      for (int64_t c = 0; c < hd; c++) sk += Se[c] * kh[c];
      const float u = beta[h] * (v[off + e] - rk * sk) * rk;
      float o = 0.0f;
#pragma omp simd reduction(+ : o)
      for (int64_t c = 0; c < hd; c++) {
        Se[c] += u * kh[c];
        o += Se[c] * qh[c];
      }
      out[off + e] = rq * o;
    }
  }
}

// ---- Plain double-precision reference: the recurrence token by token ---------------------------

void delta_forward_ref(double* out, const double* qkv, const double* beta, int64_t B, int64_t T,
                       int64_t C, int64_t H, bool causal) {
  const int64_t hd = C / H, C3 = 3 * C;
  std::vector<double> S(hd * hd), qh(hd), kh(hd);
  auto normalised = [&](std::vector<double>& dst, const double* x) {
    double s = 0;
    for (int64_t c = 0; c < hd; c++) s += x[c] * x[c];
    for (int64_t c = 0; c < hd; c++) dst[c] = x[c] / std::sqrt(s + 1e-6);
  };
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++)
      for (bool reversed : {false, true}) {
        if (reversed && causal) break;
        std::fill(S.begin(), S.end(), 0.0);  // S[e * hd + c]: value channel e, key channel c
        for (int64_t s = 0; s < T; s++) {
          const int64_t t = reversed ? T - 1 - s : s;
          const double* row = qkv + (b * T + t) * C3 + h * hd;
          const double bt = beta[(b * T + t) * H + h];
          normalised(qh, row);
          normalised(kh, row + C);
          double* o = out + (b * T + t) * C + h * hd;
          for (int64_t e = 0; e < hd; e++) {
            double* Se = S.data() + e * hd;
            double sk = 0;
            for (int64_t c = 0; c < hd; c++) sk += Se[c] * kh[c];
            const double u = bt * (row[2 * C + e] - sk);  // S (I - b k k^T) + b v k^T, row e
            double oe = 0;
            for (int64_t c = 0; c < hd; c++) {
              Se[c] += u * kh[c];
              oe += Se[c] * qh[c];
            }
            o[e] = reversed ? o[e] + oe : oe;
          }
        }
      }
}

}  // namespace kat
