// Linear attention (Katharopoulos et al. 2020) with phi(x) = elu(x) + 1, per head:
//   o_i = phi(q_i)^T S_i / (phi(q_i) . z_i + eps),  S_i = sum_j phi(k_j) v_j^T,  z_i = sum_j
//   phi(k_j)
// over all j (bidirectional) or j <= i (causal). Causal runs in chunks of kChunk tokens: the
// state of the earlier chunks through one GEMM, the chunk itself through a masked Lc x Lc product
// (reference/attention.md), so time is O(T d^2 + T Lc d) and memory O(T d).
//
// Memory traffic decides the speed at long T, so every pass walks the sequence in blocks of
// kBlock rows: a block's qkv rows are read whole (the hardware prefetcher follows; one head's 64
// values out of every 3C-float row would touch a new page per row) into head-major copies
// phi(Q), phi(K), V [H, rows, hd], small enough to stay in cache while every head (one per task)
// runs its chunks over them; a pass copies only the parts it reads. The running sums (S, z; R, u
// in the backward) belong to the head and carry from block to block. The forward keeps every
// query's denominator and, bidirectional, each head's state S, z: the backward's first pass then
// reads no keys and values, only the queries, dout and out (for g . o) to sum R, u, and a second
// pass writes the gradients (the forward takes two too: the state, then the queries). Causal, the
// first pass replays the chunk states and the second walks back. The last pass gets g . o from its
// own products, and streams gradients too large to stay in cache past it (stores.h).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kat/kernels.h"
#include "kat/parallel.h"
#include "stores.h"
#include "vec_math.h"

namespace kat {
namespace {

constexpr int64_t kChunk = 64;
constexpr int64_t kBlock = 16 * kChunk;  // 1024 rows: 4 MiB of copies at C = 256
constexpr float kEps = 1e-6f;

float phi(float x) { return x > 0.0f ? x + 1.0f : exp_approx(x); }
// phi'(x) from y = phi(x): 1 where x > 0 (y > 1), else exp(x) = y.
float dphi_of(float y) { return y > 1.0f ? 1.0f : y; }

int64_t chunks(int64_t T) { return (T + kChunk - 1) / kChunk; }
int64_t block_rows(int64_t T) { return std::min(T, kBlock); }

// One block of a batch row in head-major layout, [H, rows, hd] each (go: [H, rows]): phi(q),
// phi(k), v and, for the backward, dout and go = dout . out per head and token.
struct HeadMajor {
  float *phiQ, *phiK, *V, *G, *go;
};

int64_t head_major_floats(int64_t T, int64_t C, int64_t H) {
  return 4 * block_rows(T) * C + block_rows(T) * H;
}

HeadMajor head_major_of(float* scratch, int64_t T, int64_t C) {
  HeadMajor m;
  for (float** p : {&m.phiQ, &m.phiK, &m.V, &m.G, &m.go})
    *p = scratch, scratch += block_rows(T) * C;
  return m;
}

// What a pass reads: phi(Q); phi(K) and V; dout as G; dout . out per head as go.
enum Parts : unsigned { kQ = 1, kKV = 2, kG = 4, kGo = 8 };

// The hardware prefetcher stops at 4 KiB page boundaries and a qkv row is 3 KiB at C = 256: the
// copy asks for the rows kAhead ahead itself (16K tokens: forward 14.5 -> 12.2 ms).
constexpr int64_t kAhead = 8;

void prefetch(const float* p, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) __builtin_prefetch(p + i);
}

// Fills the head-major copies of `parts` from `rows` rows of qkv (dout, out), parallel over the
// rows.
void to_head_major(const HeadMajor& m, unsigned parts, const float* qkv, const float* dout,
                   const float* out, int64_t rows, int64_t C, int64_t H) {
  const int64_t hd = C / H, C3 = 3 * C;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < rows; t++) {
    const float* row = qkv + t * C3;
    if (t + kAhead < rows) {
      const float* next = row + kAhead * C3;
      if (parts & kQ) prefetch(next, C);
      if (parts & kKV) prefetch(next + C, 2 * C);
      if (parts & (kG | kGo)) prefetch(dout + (t + kAhead) * C, C);
      if (parts & kGo) prefetch(out + (t + kAhead) * C, C);
    }
    for (int64_t h = 0; h < H; h++) {
      const int64_t at = (h * rows + t) * hd, c = h * hd;
      if (parts & kQ)
#pragma omp simd
        for (int64_t d = 0; d < hd; d++) m.phiQ[at + d] = phi(row[c + d]);
      if (parts & kKV)
#pragma omp simd
        for (int64_t d = 0; d < hd; d++) {
          m.phiK[at + d] = phi(row[C + c + d]);
          m.V[at + d] = row[2 * C + c + d];
        }
      if (!(parts & (kG | kGo))) continue;  // dout, out may be null
      const float* g = dout + t * C + c;
      if (parts & kG) std::copy(g, g + hd, m.G + at);
      if (!(parts & kGo)) continue;
      const float* o = out + t * C + c;
      float go = 0.0f;
#pragma omp simd reduction(+ : go)
      for (int64_t d = 0; d < hd; d++) go += g[d] * o[d];
      m.go[h * rows + t] = go;
    }
  }
}

// What a head carries across blocks: the backward's R [hd, hd], u [hd], the state S [hd, hd],
// z [hd] (S, z as the forward saves them), and every chunk's entry state for the causal backward.
int64_t state_floats(int64_t hd) { return hd * hd + hd; }  // S, z (or R, u)
int64_t head_state_floats(int64_t T, int64_t hd) { return (2 + chunks(T)) * state_floats(hd); }

// Tiles of one head's work: its carried sums, and the calling thread's chunk tiles. A and Bk
// point at the current chunk's rows of the head's phi(Q), phi(K).
struct Tiles {
  float *P, *W, *dNum, *dA, *dB, *dV, *den, *dden, *R, *u, *S, *z, *states;
  const float *A = nullptr, *Bk = nullptr;
};

int64_t per_thread(int64_t hd) { return 4 * kChunk * hd + 2 * kChunk * kChunk + 2 * kChunk; }

Tiles tiles_of(float* thread_scratch, float* head_state, int64_t T, int64_t hd) {
  float* p = thread_scratch + omp_get_thread_num() * per_thread(hd);
  Tiles t;
  for (auto [dst, n] : {std::pair{&t.dNum, kChunk * hd},
                        {&t.dA, kChunk * hd},
                        {&t.dB, kChunk * hd},
                        {&t.dV, kChunk * hd},
                        {&t.P, kChunk * kChunk},
                        {&t.W, kChunk * kChunk},
                        {&t.den, kChunk},
                        {&t.dden, kChunk}})
    *dst = p, p += n;
  p = head_state;
  for (auto [dst, n] : {std::pair{&t.R, hd * hd},
                        {&t.u, hd},
                        {&t.S, hd * hd},
                        {&t.z, hd},
                        {&t.states, chunks(T) * (hd * hd + hd)}})
    *dst = p, p += n;
  return t;
}

// The scratch of one call: the block copies, every head's carried sums, the threads' tiles.
struct Scratch {
  HeadMajor m;
  float *heads, *threads;
};

Scratch scratch_of(float* scratch, int64_t T, int64_t C, int64_t H) {
  Scratch s;
  s.m = head_major_of(scratch, T, C);
  s.heads = scratch + head_major_floats(T, C, H);
  s.threads = s.heads + H * head_state_floats(T, C / H);
  return s;
}

// Walks batch row b's sequence block by block (last block first when `reverse`): copies the
// block's `parts` head-major, then runs body(t, h, Q, K, V, G, go, r0, rows) for every head h in
// parallel, where Q .. go are the head's copies of block rows [r0, r0 + rows) (those of parts
// not asked for hold stale values).
template <class Body>
void for_each_block(const Scratch& s, unsigned parts, const float* qkv, const float* dout,
                    const float* out, int64_t T, int64_t C, int64_t H, bool reverse, Body&& body) {
  const int64_t hd = C / H, Tb = block_rows(T), blocks = (T + Tb - 1) / Tb;
  for (int64_t i = 0; i < blocks; i++) {
    const int64_t r0 = (reverse ? blocks - 1 - i : i) * Tb, rows = std::min(Tb, T - r0);
    const bool grad = parts & (kG | kGo);
    to_head_major(s.m, parts, qkv + r0 * 3 * C, grad ? dout + r0 * C : nullptr,
                  grad ? out + r0 * C : nullptr, rows, C, H);
#pragma omp parallel for schedule(dynamic)
    for (int64_t h = 0; h < H; h++) {
      Tiles t = tiles_of(s.threads, s.heads + h * head_state_floats(T, hd), T, hd);
      const int64_t at = h * rows * hd;
      body(t, h, s.m.phiQ + at, s.m.phiK + at, s.m.V + at, s.m.G + at, s.m.go + h * rows, r0, rows);
    }
  }
}

// Head h's carried S, then z: what the forward saves and the bidirectional backward starts from.
float* head_state(const Scratch& s, int64_t h, int64_t T, int64_t hd) {
  return s.heads + h * head_state_floats(T, hd) + state_floats(hd);  // after R, u
}

void zero_heads(const Scratch& s, int64_t T, int64_t H, int64_t hd) {
  std::fill(s.heads, s.heads + H * head_state_floats(T, hd), 0.0f);
}

// P[n, n] = A Bk^T with j > i zeroed (causal within the chunk).
void masked_scores(float* P, const float* A, const float* Bk, int64_t n, int64_t hd) {
  gemm(false, true, n, n, hd, 1.0f, A, hd, Bk, hd, 0.0f, P, n);
  for (int64_t i = 0; i < n; i++) std::fill(P + i * n + i + 1, P + (i + 1) * n, 0.0f);
}

// Chunk [t0, t0 + n) of a block (Q, K the head's phi(Q), phi(K) rows of the block): A, Bk to the
// chunk's rows, den = A z + rowsum(P) (+ eps), where S, z is the state before the chunk (the whole
// sequence's when not causal; P then unused).
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

// From the output gradient g [n, hd] and the denominators den of a chunk's n rows: the gradient
// of the numerator, dnum = g / den.
void numerator_gradients(const Tiles& t, const float* den, const float* g, int64_t n, int64_t hd) {
  for (int64_t i = 0; i < n; i++) {
    const float inv = 1.0f / den[i];
#pragma omp simd
    for (int64_t d = 0; d < hd; d++) t.dNum[i * hd + d] = g[i * hd + d] * inv;
  }
}

// ... and of the denominator, dden = -(g . o) / den, from go = g . o.
void denominator_gradients(const Tiles& t, const float* den, const float* go, int64_t n) {
  for (int64_t i = 0; i < n; i++) t.dden[i] = -go[i] / den[i];
}

}  // namespace

namespace {
// The scratch of one lane (kat/parallel.h: batch_lanes): the block copies, every head's carried
// sums and the tiles of its threads.
int64_t lane_floats(int64_t T, int64_t C, int64_t H, int64_t lanes) {
  return head_major_floats(T, C, H) + H * head_state_floats(T, C / H) +
         threads_in_lane(lanes) * per_thread(C / H);
}

Scratch lane_scratch(float* scratch, int64_t lane, int64_t lanes, int64_t T, int64_t C, int64_t H) {
  return scratch_of(scratch + lane * lane_floats(T, C, H, lanes), T, C, H);
}
}  // namespace

int64_t linear_attention_scratch_floats(int64_t B, int64_t T, int64_t C, int64_t H) {
  const int64_t lanes = batch_lanes(B);
  return lanes * lane_floats(T, C, H, lanes);
}

int64_t linear_attention_saved_floats(int64_t B, int64_t T, int64_t C, int64_t H, bool causal) {
  return B * H * (T + (causal ? 0 : state_floats(C / H)));
}

namespace {
// Where head h of batch row b keeps its S, z in `saved`: after the B * H * T denominators.
int64_t saved_state_at(int64_t B, int64_t T, int64_t H, int64_t b, int64_t h, int64_t hd) {
  return B * H * T + (b * H + h) * state_floats(hd);
}
}  // namespace

void linear_attention_forward(float* out, float* saved, float* scratch, const float* qkv, int64_t B,
                              int64_t T, int64_t C, int64_t H, bool causal) {
  const int64_t hd = C / H, C3 = 3 * C, st = state_floats(hd), lanes = batch_lanes(B);
  float* den = saved;  // [B, H, T], then the states
  for_each_batch_row(B, [&](int64_t b, int64_t lane) {
    const Scratch s = lane_scratch(scratch, lane, lanes, T, C, H);
    const float* x = qkv + b * T * C3;
    zero_heads(s, T, H, hd);
    if (!causal) {  // the whole sequence's state first, kept for the backward
      for_each_block(s, kKV, x, nullptr, nullptr, T, C, H, false,
                     [&](Tiles& t, int64_t, const float*, const float* K, const float* V,
                         const float*, const float*, int64_t, int64_t rows) {
                       for (int64_t t0 = 0; t0 < rows; t0 += kChunk) {
                         t.Bk = K + t0 * hd;
                         add_to_state(t, V + t0 * hd, std::min(kChunk, rows - t0), hd);
                       }
                     });
      for (int64_t h = 0; h < H; h++)
        std::copy_n(head_state(s, h, T, hd), st, saved + saved_state_at(B, T, H, b, h, hd));
    }
    for_each_block(s, causal ? kQ | kKV : kQ, x, nullptr, nullptr, T, C, H, false,
                   [&](Tiles& t, int64_t h, const float* Q, const float* K, const float* V,
                       const float*, const float*, int64_t r0, int64_t rows) {
                     for (int64_t t0 = 0; t0 < rows; t0 += kChunk) {
                       const int64_t n = std::min(kChunk, rows - t0);
                       chunk_denominators(t, Q, K, t0, n, hd, causal);
                       float* oc = out + (b * T + r0 + t0) * C + h * hd;
                       gemm(false, false, n, hd, hd, 1.0f, t.A, hd, t.S, hd, 0.0f, oc, C);  // A S
                       if (causal) {
                         gemm(false, false, n, hd, n, 1.0f, t.P, n, V + t0 * hd, hd, 1.0f, oc,
                              C);  // + P V
                         add_to_state(t, V + t0 * hd, n, hd);
                       }
                       std::copy(t.den, t.den + n, den + (b * H + h) * T + r0 + t0);
                       for (int64_t i = 0; i < n; i++) {
                         const float inv = 1.0f / t.den[i];
                         for (int64_t d = 0; d < hd; d++) oc[i * C + d] *= inv;
                       }
                     }
                   });
  });
}

namespace {

// How the backward writes a gradient row: dst += src; dst = src, without reading dst first; or
// streamed past the cache (a large output).
enum class Store { kAdd, kSet, kStream };

void store_row(float* dst, const float* src, int64_t n, Store how) {
  if (how == Store::kStream) return stream_row(dst, src, n);
  if (how == Store::kSet) {
    std::copy(src, src + n, dst);
    return;
  }
#pragma omp simd
  for (int64_t d = 0; d < n; d++) dst[d] += src[d];
}

// R += A^T dNum, u += A^T dden: a chunk's n queries join the sums the keys before them see.
void add_to_gradient_sums(const Tiles& t, int64_t n, int64_t hd) {  // t.A set
  gemm(true, false, hd, hd, n, 1.0f, t.A, hd, t.dNum, hd, 1.0f, t.R, hd);
  for (int64_t i = 0; i < n; i++)
#pragma omp simd
    for (int64_t d = 0; d < hd; d++) t.u[d] += t.A[i * hd + d] * t.dden[i];
}

}  // namespace

void linear_attention_backward(float* dqkv, float* scratch, const float* dout, const float* out,
                               const float* saved, const float* qkv, int64_t B, int64_t T,
                               int64_t C, int64_t H, bool causal, bool accumulate) {
  const int64_t hd = C / H, C3 = 3 * C, st = state_floats(hd), lanes = batch_lanes(B);
  const Store how = accumulate                                ? Store::kAdd
                    : B * T * C3 * int64_t{4} >= kStreamBytes ? Store::kStream
                                                              : Store::kSet;
  for_each_batch_row(B, [&](int64_t b, int64_t lane) {
    const Scratch s = lane_scratch(scratch, lane, lanes, T, C, H);
    const float* x = qkv + b * T * C3;
    const float* g = dout + b * T * C;
    const float* o = out + b * T * C;
    const float* db = saved + b * H * T;
    zero_heads(s, T, H, hd);
    if (!causal)  // the forward's S, z
      for (int64_t h = 0; h < H; h++)
        std::copy_n(saved + saved_state_at(B, T, H, b, h, hd), st, head_state(s, h, T, hd));
    // First pass. Causal: the state at each chunk's entry. Bidirectional: every query sees every
    // key, so R = sum of a_i dnum_i^T and u = sum of a_i dden_i over every query.
    for_each_block(s, causal ? kKV : kQ | kG | kGo, x, g, o, T, C, H, false,
                   [&](Tiles& t, int64_t h, const float* Q, const float* K, const float* V,
                       const float* G, const float* go, int64_t r0, int64_t rows) {
                     for (int64_t t0 = 0; t0 < rows; t0 += kChunk) {
                       const int64_t n = std::min(kChunk, rows - t0);
                       if (causal) {
                         float* entry = t.states + (r0 + t0) / kChunk * st;
                         std::copy(t.S, t.S + st, entry);  // S, then z
                         t.Bk = K + t0 * hd;
                         add_to_state(t, V + t0 * hd, n, hd);
                         continue;
                       }
                       t.A = Q + t0 * hd;
                       numerator_gradients(t, db + h * T + r0 + t0, G + t0 * hd, n, hd);
                       denominator_gradients(t, db + h * T + r0 + t0, go + t0, n);
                       add_to_gradient_sums(t, n, hd);
                     }
                   });
    // Second pass, last block first: every gradient.
    auto gradients = [&](Tiles& t, int64_t h, const float* Q, const float* K, const float* V,
                         const float* G, const float*, int64_t r0, int64_t rows) {
      float* dq = dqkv + b * T * C3 + h * hd;
      float *dk = dq + C, *dv = dq + 2 * C;
      for (int64_t t0 = (rows - 1) / kChunk * kChunk; t0 >= 0; t0 -= kChunk) {
        const int64_t n = std::min(kChunk, rows - t0), row = r0 + t0;
        const float* Vc = V + t0 * hd;
        t.A = Q + t0 * hd, t.Bk = K + t0 * hd;
        if (causal) {  // the state this chunk's queries see
          const float* entry = t.states + row / kChunk * st;
          std::copy(entry, entry + st, t.S);  // S, then z
          masked_scores(t.P, t.A, t.Bk, n, hd);
        }
        const float* dn = db + h * T + row;
        numerator_gradients(t, dn, G + t0 * hd, n, hd);
        // dA = dNum S^T + dden z^T (+ W Bk within the chunk when causal). g . o comes from the
        // same products, so out is not read: g_i . o_i = a_i . (dNum S^T)_i, plus
        // sum_j<=i P_ij (dNum V^T)_ij within the chunk when causal.
        gemm(false, true, n, hd, hd, 1.0f, t.dNum, hd, t.S, hd, 0.0f, t.dA, hd);
        if (causal) gemm(false, true, n, n, hd, 1.0f, t.dNum, hd, Vc, hd, 0.0f, t.W, n);
        for (int64_t i = 0; i < n; i++) {
          float go = 0.0f;
#pragma omp simd reduction(+ : go)
          for (int64_t d = 0; d < hd; d++) go += t.A[i * hd + d] * t.dA[i * hd + d];
          for (int64_t j = 0; causal && j <= i; j++) go += t.P[i * n + j] * t.W[i * n + j];
          t.dden[i] = -go / dn[i];
        }
        for (int64_t i = 0; i < n; i++)
#pragma omp simd
          for (int64_t d = 0; d < hd; d++) t.dA[i * hd + d] += t.dden[i] * t.z[d];
        // dB = V R^T + 1 u^T (+ W^T A), dV = Bk R (+ P^T dNum): later queries
        gemm(false, true, n, hd, hd, 1.0f, Vc, hd, t.R, hd, 0.0f, t.dB, hd);
        for (int64_t j = 0; j < n; j++)
#pragma omp simd
          for (int64_t d = 0; d < hd; d++) t.dB[j * hd + d] += t.u[d];
        gemm(false, false, n, hd, hd, 1.0f, t.Bk, hd, t.R, hd, 0.0f, t.dV, hd);
        if (causal) {
          // W = (dNum V^T + dden 1^T) masked to j <= i
          for (int64_t i = 0; i < n; i++) {
            for (int64_t j = 0; j <= i; j++) t.W[i * n + j] += t.dden[i];
            std::fill(t.W + i * n + i + 1, t.W + (i + 1) * n, 0.0f);
          }
          gemm(false, false, n, hd, n, 1.0f, t.W, n, t.Bk, hd, 1.0f, t.dA, hd);
          gemm(true, false, n, hd, n, 1.0f, t.W, n, t.A, hd, 1.0f, t.dB, hd);
          gemm(true, false, n, hd, n, 1.0f, t.P, n, t.dNum, hd, 1.0f, t.dV, hd);
          add_to_gradient_sums(t, n, hd);  // for the chunks before this one
        }
        for (int64_t i = 0; i < n; i++) {  // through phi (into the dA, dB tiles first)
#pragma omp simd
          for (int64_t d = 0; d < hd; d++) {
            t.dA[i * hd + d] *= dphi_of(t.A[i * hd + d]);
            t.dB[i * hd + d] *= dphi_of(t.Bk[i * hd + d]);
          }
          store_row(dq + (row + i) * C3, t.dA + i * hd, hd, how);
          store_row(dk + (row + i) * C3, t.dB + i * hd, hd, how);
          store_row(dv + (row + i) * C3, t.dV + i * hd, hd, how);
        }
      }
      if (how == Store::kStream) stream_fence();
    };
    for_each_block(s, kQ | kKV | kG, x, g, o, T, C, H, true, gradients);
  });
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
