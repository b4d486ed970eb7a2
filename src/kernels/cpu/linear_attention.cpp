// Linear attention (Katharopoulos et al. 2020) with phi(x) = elu(x) + 1, per head:
//   o_i = phi(q_i)^T S_i / (phi(q_i) . z_i + eps),  S_i = sum_j phi(k_j) v_j^T,  z_i = sum_j
//   phi(k_j)
// over all j (bidirectional) or j <= i (causal). Causal runs in chunks of kChunk tokens: the
// state of the earlier chunks through one GEMM, the chunk itself through a masked Lc x Lc product
// (reference/attention.md), so time is O(T d^2 + T Lc d) and memory O(T d).
// Per batch row, one pass streams qkv row by row (whole rows, so the hardware prefetcher follows)
// into head-major copies phi(Q), phi(K), V [H, T, hd]; then one (head) per task works on
// contiguous memory. Reading one head's 64 values from every 3C-float row instead touches a new
// page per row, which made 16K tokens 2x slower per token than 1K. The backward replays the
// forward's states chunk by chunk.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kat/kernels.h"
#include "kat/parallel.h"
#include "vec_math.h"

namespace kat {
namespace {

constexpr int64_t kChunk = 64;
constexpr float kEps = 1e-6f;

float phi(float x) { return x > 0.0f ? x + 1.0f : exp_approx(x); }
// phi'(x) from y = phi(x): 1 where x > 0 (y > 1), else exp(x) = y.
float dphi_of(float y) { return y > 1.0f ? 1.0f : y; }

// One batch row in head-major layout, [H, T, hd] each (go: [H, T]): phi(q), phi(k), v and, for
// the backward, dout and go = dout . out per head and token. Outputs and gradients are written
// straight into their rows: streaming them back from head-major copies measured slower.
struct HeadMajor {
  float *phiQ, *phiK, *V, *G, *go;
};

int64_t head_major_floats(int64_t T, int64_t C, int64_t H) { return 4 * T * C + T * H; }

HeadMajor head_major_of(float* scratch, int64_t T, int64_t C) {
  HeadMajor m;
  for (float** p : {&m.phiQ, &m.phiK, &m.V, &m.G, &m.go}) *p = scratch, scratch += T * C;
  return m;
}

// Fills phiQ, phiK, V (and G, go when dout is given) from batch row b, parallel over tokens.
void to_head_major(const HeadMajor& m, const float* qkv, const float* dout, const float* out,
                   int64_t T, int64_t C, int64_t H) {
  const int64_t hd = C / H, C3 = 3 * C;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; t++) {
    const float* row = qkv + t * C3;
    for (int64_t h = 0; h < H; h++) {
      const int64_t at = (h * T + t) * hd, c = h * hd;
#pragma omp simd
      for (int64_t d = 0; d < hd; d++) {
        m.phiQ[at + d] = phi(row[c + d]);
        m.phiK[at + d] = phi(row[C + c + d]);
        m.V[at + d] = row[2 * C + c + d];
      }
      if (!dout) continue;
      const float* g = dout + t * C + c;
      const float* o = out + t * C + c;
      float go = 0.0f;
#pragma omp simd reduction(+ : go)
      for (int64_t d = 0; d < hd; d++) {
        m.G[at + d] = g[d];
        go += g[d] * o[d];
      }
      m.go[h * T + t] = go;
    }
  }
}

// Per-thread tiles. A and Bk point at the current chunk's rows of one head's phi(Q), phi(K).
// `states` holds every chunk's entry state (S [hd, hd], z [hd]).
struct Tiles {
  float *P, *W, *dNum, *dA, *dB, *den, *dden, *R, *u, *S, *z, *states;
  const float *A = nullptr, *Bk = nullptr;
};

int64_t chunks(int64_t T) { return (T + kChunk - 1) / kChunk; }

int64_t per_thread(int64_t T, int64_t hd) {
  return 3 * kChunk * hd + 2 * kChunk * kChunk + 2 * kChunk + 2 * (hd * hd + hd) +
         chunks(T) * (hd * hd + hd);
}

Tiles tiles_of(float* scratch, int64_t T, int64_t hd) {
  float* p = scratch + omp_get_thread_num() * per_thread(T, hd);
  Tiles t;
  for (auto [dst, n] : {std::pair{&t.dNum, kChunk * hd},
                        {&t.dA, kChunk * hd},
                        {&t.dB, kChunk * hd},
                        {&t.P, kChunk * kChunk},
                        {&t.W, kChunk * kChunk},
                        {&t.den, kChunk},
                        {&t.dden, kChunk},
                        {&t.R, hd * hd},
                        {&t.u, hd},
                        {&t.S, hd * hd},
                        {&t.z, hd},
                        {&t.states, chunks(T) * (hd * hd + hd)}})
    *dst = p, p += n;
  return t;
}

// P[n, n] = A Bk^T with j > i zeroed (causal within the chunk).
void masked_scores(float* P, const float* A, const float* Bk, int64_t n, int64_t hd) {
  gemm(false, true, n, n, hd, 1.0f, A, hd, Bk, hd, 0.0f, P, n);
  for (int64_t i = 0; i < n; i++) std::fill(P + i * n + i + 1, P + (i + 1) * n, 0.0f);
}

// Chunk [t0, t0 + n) of one head (Q, K its phi(Q), phi(K) [T, hd]): A, Bk to the chunk's rows,
// den = A z + rowsum(P) (+ eps), where S, z is the state before the chunk (the whole sequence's
// when not causal; P then unused).
void chunk_denominators(Tiles& t, const float* Q, const float* K, int64_t t0, int64_t n, int64_t hd,
                        bool causal) {
  t.A = Q + t0 * hd, t.Bk = K + t0 * hd;
  if (causal) masked_scores(t.P, t.A, t.Bk, n, hd);
  for (int64_t i = 0; i < n; i++) {
    float s = kEps;
#pragma omp simd reduction(+ : s)
    for (int64_t d = 0; d < hd; d++) s += t.A[i * hd + d] * t.z[d];
    if (causal)
      for (int64_t j = 0; j <= i; j++) s += t.P[i * n + j];
    t.den[i] = s;
  }
}

// S += Bk^T V, z += colsum(Bk) for a chunk of n rows (V [n, hd]).
void add_to_state(const Tiles& t, const float* v, int64_t n, int64_t hd) {  // t.Bk set
  gemm(true, false, hd, hd, n, 1.0f, t.Bk, hd, v, hd, 1.0f, t.S, hd);
  for (int64_t j = 0; j < n; j++)
#pragma omp simd
    for (int64_t d = 0; d < hd; d++) t.z[d] += t.Bk[j * hd + d];
}

// From the output gradient g [n, hd] and go = g . o of a chunk's n rows: the gradients of the
// numerator, dnum = g / den, and of the denominator, dden = -(g . o) / den.
void output_gradients(const Tiles& t, const float* g, const float* go, int64_t n, int64_t hd) {
  for (int64_t i = 0; i < n; i++) {
    const float inv = 1.0f / t.den[i];
#pragma omp simd
    for (int64_t d = 0; d < hd; d++) t.dNum[i * hd + d] = g[i * hd + d] * inv;
    t.dden[i] = -go[i] * inv;
  }
}

}  // namespace

int64_t linear_attention_scratch_floats(int64_t T, int64_t C, int64_t H) {
  return head_major_floats(T, C, H) + num_threads() * per_thread(T, C / H);
}

void linear_attention_forward(float* out, float* scratch, const float* qkv, int64_t B, int64_t T,
                              int64_t C, int64_t H, bool causal) {
  const int64_t hd = C / H, C3 = 3 * C;
  const HeadMajor m = head_major_of(scratch, T, C);
  float* tiles = scratch + head_major_floats(T, C, H);
  for (int64_t b = 0; b < B; b++) {
    to_head_major(m, qkv + b * T * C3, nullptr, nullptr, T, C, H);
#pragma omp parallel for schedule(dynamic)
    for (int64_t h = 0; h < H; h++) {
      const float *Q = m.phiQ + h * T * hd, *K = m.phiK + h * T * hd, *V = m.V + h * T * hd;
      float* o = out + b * T * C + h * hd;
      Tiles t = tiles_of(tiles, T, hd);
      std::fill(t.S, t.S + hd * hd, 0.0f);
      std::fill(t.z, t.z + hd, 0.0f);
      if (!causal)  // the whole sequence's state first
        for (int64_t t0 = 0; t0 < T; t0 += kChunk) {
          t.Bk = K + t0 * hd;
          add_to_state(t, V + t0 * hd, std::min(kChunk, T - t0), hd);
        }
      for (int64_t t0 = 0; t0 < T; t0 += kChunk) {
        const int64_t n = std::min(kChunk, T - t0);
        chunk_denominators(t, Q, K, t0, n, hd, causal);
        float* oc = o + t0 * C;
        gemm(false, false, n, hd, hd, 1.0f, t.A, hd, t.S, hd, 0.0f, oc, C);  // A S
        if (causal) {
          gemm(false, false, n, hd, n, 1.0f, t.P, n, V + t0 * hd, hd, 1.0f, oc, C);  // + P V
          add_to_state(t, V + t0 * hd, n, hd);
        }
        for (int64_t i = 0; i < n; i++) {
          const float inv = 1.0f / t.den[i];
          for (int64_t d = 0; d < hd; d++) oc[i * C + d] *= inv;
        }
      }
    }
  }
}

void linear_attention_backward(float* dqkv, float* scratch, const float* dout, const float* out,
                               const float* qkv, int64_t B, int64_t T, int64_t C, int64_t H,
                               bool causal, bool accumulate) {
  const int64_t hd = C / H, C3 = 3 * C, hh = hd * hd;
  const HeadMajor m = head_major_of(scratch, T, C);
  float* tiles = scratch + head_major_floats(T, C, H);
  for (int64_t b = 0; b < B; b++) {
    to_head_major(m, qkv + b * T * C3, dout + b * T * C, out + b * T * C, T, C, H);
#pragma omp parallel for schedule(dynamic)
    for (int64_t h = 0; h < H; h++) {
      const float *Q = m.phiQ + h * T * hd, *K = m.phiK + h * T * hd, *V = m.V + h * T * hd;
      const float *G = m.G + h * T * hd, *go = m.go + h * T;
      float* dq = dqkv + b * T * C3 + h * hd;
      float *dk = dq + C, *dv = dq + 2 * C;
      Tiles t = tiles_of(tiles, T, hd);
      // Forward replay: the state at each chunk's entry (for bidirectional, the whole one).
      std::fill(t.S, t.S + hh, 0.0f);
      std::fill(t.z, t.z + hd, 0.0f);
      for (int64_t c = 0, t0 = 0; t0 < T; c++, t0 += kChunk) {
        const int64_t n = std::min(kChunk, T - t0);
        float* st = t.states + c * (hh + hd);
        std::copy(t.S, t.S + hh, st);
        std::copy(t.z, t.z + hd, st + hh);
        t.Bk = K + t0 * hd;
        add_to_state(t, V + t0 * hd, n, hd);
      }
      // Reverse sweep: R = sum over later queries of a_i dnum_i^T, u = sum of a_i dden_i.
      std::fill(t.R, t.R + hh, 0.0f);
      std::fill(t.u, t.u + hd, 0.0f);
      if (!causal) {  // every query sees every key: R, u over the whole sequence first
        for (int64_t t0 = 0; t0 < T; t0 += kChunk) {
          const int64_t n = std::min(kChunk, T - t0);
          chunk_denominators(t, Q, K, t0, n, hd, false);
          output_gradients(t, G + t0 * hd, go + t0, n, hd);
          gemm(true, false, hd, hd, n, 1.0f, t.A, hd, t.dNum, hd, 1.0f, t.R, hd);
          for (int64_t i = 0; i < n; i++)
#pragma omp simd
            for (int64_t d = 0; d < hd; d++) t.u[d] += t.A[i * hd + d] * t.dden[i];
        }
      }
      for (int64_t c = chunks(T) - 1; c >= 0; c--) {
        const int64_t t0 = c * kChunk, n = std::min(kChunk, T - t0);
        const float* Vc = V + t0 * hd;
        if (causal) {  // the state this chunk's queries see (bidirectional: the whole one, kept)
          const float* st = t.states + c * (hh + hd);
          std::copy(st, st + hh, t.S);
          std::copy(st + hh, st + hh + hd, t.z);
        }
        chunk_denominators(t, Q, K, t0, n, hd, causal);
        output_gradients(t, G + t0 * hd, go + t0, n, hd);
        // dA = dNum S^T + dden z^T (+ W Bk within the chunk when causal)
        gemm(false, true, n, hd, hd, 1.0f, t.dNum, hd, t.S, hd, 0.0f, t.dA, hd);
        for (int64_t i = 0; i < n; i++)
#pragma omp simd
          for (int64_t d = 0; d < hd; d++) t.dA[i * hd + d] += t.dden[i] * t.z[d];
        // dB = V R^T + 1 u^T (+ W^T A), dV = Bk R (+ P^T dNum): the later chunks' queries
        gemm(false, true, n, hd, hd, 1.0f, Vc, hd, t.R, hd, 0.0f, t.dB, hd);
        for (int64_t j = 0; j < n; j++)
#pragma omp simd
          for (int64_t d = 0; d < hd; d++) t.dB[j * hd + d] += t.u[d];
        const float beta = accumulate ? 1.0f : 0.0f;
        gemm(false, false, n, hd, hd, 1.0f, t.Bk, hd, t.R, hd, beta, dv + t0 * C3, C3);
        if (causal) {
          // W = (dNum V^T + dden 1^T) masked to j <= i
          gemm(false, true, n, n, hd, 1.0f, t.dNum, hd, Vc, hd, 0.0f, t.W, n);
          for (int64_t i = 0; i < n; i++) {
            for (int64_t j = 0; j <= i; j++) t.W[i * n + j] += t.dden[i];
            std::fill(t.W + i * n + i + 1, t.W + (i + 1) * n, 0.0f);
          }
          gemm(false, false, n, hd, n, 1.0f, t.W, n, t.Bk, hd, 1.0f, t.dA, hd);
          gemm(true, false, n, hd, n, 1.0f, t.W, n, t.A, hd, 1.0f, t.dB, hd);
          gemm(true, false, n, hd, n, 1.0f, t.P, n, t.dNum, hd, 1.0f, dv + t0 * C3, C3);
          // this chunk's queries join R, u for the chunks before it
          gemm(true, false, hd, hd, n, 1.0f, t.A, hd, t.dNum, hd, 1.0f, t.R, hd);
          for (int64_t i = 0; i < n; i++)
#pragma omp simd
            for (int64_t d = 0; d < hd; d++) t.u[d] += t.A[i * hd + d] * t.dden[i];
        }
        for (int64_t i = 0; i < n; i++) {  // through phi
          float* dqi = dq + (t0 + i) * C3;
          float* dki = dk + (t0 + i) * C3;
          const float keep = accumulate ? 1.0f : 0.0f;
#pragma omp simd
          for (int64_t d = 0; d < hd; d++) {
            dqi[d] = keep * dqi[d] + t.dA[i * hd + d] * dphi_of(t.A[i * hd + d]);
            dki[d] = keep * dki[d] + t.dB[i * hd + d] * dphi_of(t.Bk[i * hd + d]);
          }
        }
      }
    }
  }
}

// ---- Plain double-precision reference: the sums written out per query ----------------------

void linear_attention_forward_ref(double* out, const double* qkv, int64_t B, int64_t T, int64_t C,
                                  int64_t H, bool causal) {
  const int64_t hd = C / H, C3 = 3 * C;
  auto ph = [](double x) { return x > 0 ? x + 1 : std::exp(x); };
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++)
      for (int64_t i = 0; i < T; i++) {
        const double* qi = qkv + (b * T + i) * C3 + h * hd;
        std::vector<double> num(hd, 0.0);
        double den = kEps;
        for (int64_t j = 0; j < (causal ? i + 1 : T); j++) {
          const double* kj = qkv + (b * T + j) * C3 + C + h * hd;
          const double* vj = kj + C;
          double w = 0;
          for (int64_t d = 0; d < hd; d++) w += ph(qi[d]) * ph(kj[d]);
          for (int64_t d = 0; d < hd; d++) num[d] += w * vj[d];
          den += w;
        }
        for (int64_t d = 0; d < hd; d++) out[(b * T + i) * C + h * hd + d] = num[d] / den;
      }
}

}  // namespace kat
