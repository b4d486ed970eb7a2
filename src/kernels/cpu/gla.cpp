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
//
// Memory traffic decides the speed at long T (as in linear attention): each pass walks the
// sequence in blocks of kBlock rows, read whole into head-major copies [H, rows, hd] (one head's
// 64 values out of every 3C-float row would touch a new page per row), which stay in cache while
// every head (one per task) scans its chunks over them; the state S (dS, and the running gate
// gradient sums) carries from block to block.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "kat/kernels.h"
#include "kat/parallel.h"
#include "vec_math.h"

namespace kat {
namespace {

constexpr int64_t kChunk = 16;
constexpr int64_t kBlock = 16 * kChunk;  // 256 rows: 8 copies of 256 KiB at C = 256

int64_t block_rows(int64_t T) { return std::min(T, kBlock); }

// exp(x) for x <= 0, with factors below exp(-60) ~ 1e-26 taken as 0: such a weight is invisible
// next to the weight 1 of the current token, and products built from it would sink into subnormal
// floats, which are slow.
inline float decay(float x) { return x < -60.0f ? 0.0f : exp_approx(x); }

// A scan runs over the sequence in time order or reversed. Row s of the reversed scan is row
// T-1-s of the sequence with the gate g_{T-s} (none, 0, for s = 0), so a causal scan of it weighs
// key j >= i for query i by exp(g_{i+1} + ... + g_j): the other half of the bidirectional form.
struct Order {
  int64_t T;
  bool reversed;
  int64_t row(int64_t s) const { return reversed ? T - 1 - s : s; }
  int64_t gate_row(int64_t s) const { return reversed ? T - s : s; }  // T: none
};

// One block of a batch row in scan order, head-major [H, rows, hd] each: the inputs (q, k, v, g,
// dout) and up to three results (x, y, z: the output; dq; or dk, dv and the gate gradients).
struct Block {
  float *q, *k, *v, *g, *dout, *x, *y, *z;
};

// The chunk tiles of one thread: gate prefix sums, decayed queries, decayed keys [kChunk, hd];
// intra-chunk scores, dout v^T [kChunk, kChunk].
struct Tiles {
  float *b, *qe, *kd, *A, *D;
};

int64_t per_thread(int64_t hd) { return 3 * kChunk * hd + 2 * kChunk * kChunk; }

// The scratch of one call: every head's running gate-gradient sums (C doubles, copied in and out
// with memcpy: the scratch need not be aligned for doubles), the block copies, q * dq of the whole
// sequence [H, T, hd] (the backward's second pass needs it), every head's S and dS [hd, hd], and
// the threads' tiles.
struct Scratch {
  float* acc;
  Block m;
  float *qdq, *S, *dS, *threads;
};

Scratch scratch_of(float* p, int64_t T, int64_t C, int64_t H) {
  const int64_t hd = C / H, n = block_rows(T) * C;
  Scratch s;
  s.acc = p, p += 2 * C;
  for (float** dst : {&s.m.q, &s.m.k, &s.m.v, &s.m.g, &s.m.dout, &s.m.x, &s.m.y, &s.m.z})
    *dst = p, p += n;
  s.qdq = p, p += T * C;
  s.S = p, p += H * hd * hd;
  s.dS = p, p += H * hd * hd;
  s.threads = p;
  return s;
}

Tiles tiles_of(const Scratch& s, int64_t hd) {
  float* p = s.threads + omp_get_thread_num() * per_thread(hd);
  Tiles w;
  for (auto [dst, n] : {std::pair{&w.b, kChunk * hd},
                        {&w.qe, kChunk * hd},
                        {&w.kd, kChunk * hd},
                        {&w.A, kChunk * kChunk},
                        {&w.D, kChunk * kChunk}})
    *dst = p, p += n;
  return w;
}

// Copies scan rows [s0, s0 + n) of one batch row (qkv row stride 3C, g and dout stride C; dout
// may be null) into m, parallel over the rows.
void load_block(const Block& m, const float* qkv, const float* g, const float* dout, Order o,
                int64_t s0, int64_t n, int64_t C, int64_t H) {
  const int64_t hd = C / H;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; t++) {
    const int64_t r = o.row(s0 + t), gr = o.gate_row(s0 + t);
    const float* row = qkv + r * 3 * C;
    for (int64_t h = 0; h < H; h++) {
      const int64_t at = (h * n + t) * hd, c = h * hd;
      std::copy(row + c, row + c + hd, m.q + at);
      std::copy(row + C + c, row + C + c + hd, m.k + at);
      std::copy(row + 2 * C + c, row + 2 * C + c + hd, m.v + at);
      if (gr < o.T)
        std::copy(g + gr * C + c, g + gr * C + c + hd, m.g + at);
      else
        std::fill(m.g + at, m.g + at + hd, 0.0f);
      if (dout) std::copy(dout + r * C + c, dout + r * C + c + hd, m.dout + at);
    }
  }
}

// dst's head rows (row stride `stride`) at the sequence rows of scan rows [s0, s0 + n) = src
// [H, n, hd], or += when `add`; parallel over the rows. gate: dst holds gate gradients, and scan
// rows without a gate are skipped.
void store_block(float* dst, int64_t stride, const float* src, Order o, int64_t s0, int64_t n,
                 int64_t C, int64_t H, bool add, bool gate = false) {
  const int64_t hd = C / H;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; t++) {
    const int64_t r = gate ? o.gate_row(s0 + t) : o.row(s0 + t);
    if (r >= o.T) continue;
    for (int64_t h = 0; h < H; h++) {
      const float* from = src + (h * n + t) * hd;
      float* to = dst + r * stride + h * hd;
      if (add) {
#pragma omp simd
        for (int64_t c = 0; c < hd; c++) to[c] += from[c];
      } else {
        std::copy(from, from + hd, to);
      }
    }
  }
}

// Walks one batch row's scan block by block (the last block first when `backwards`): loads the
// block, runs body(w, h, at, s0, n) for every head h in parallel (at: the head's offset in the
// block copies, rows [s0, s0 + n) of the scan), then store(s0, n).
template <class Body, class Store>
void for_each_block(const Scratch& s, const float* qkv, const float* g, const float* dout, Order o,
                    int64_t C, int64_t H, bool backwards, Body&& body, Store&& store) {
  const int64_t hd = C / H, Tb = block_rows(o.T), blocks = (o.T + Tb - 1) / Tb;
  for (int64_t i = 0; i < blocks; i++) {
    const int64_t s0 = (backwards ? blocks - 1 - i : i) * Tb, n = std::min(Tb, o.T - s0);
    load_block(s.m, qkv, g, dout, o, s0, n, C, H);
#pragma omp parallel for schedule(dynamic)
    for (int64_t h = 0; h < H; h++) body(tiles_of(s, hd), h, h * n * hd, s0, n);
    store(s0, n);
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

// One head's rows of a block (at: its offset in the block copies).
struct HeadRows {
  const float *q, *k, *v, *g, *dout;
  HeadRows(const Block& m, int64_t at)
      : q(m.q + at), k(m.k + at), v(m.v + at), g(m.g + at), dout(m.dout + at) {}
};

// The causal scan over a block's n rows of one head: o[n, hd] = the outputs; S [hd, hd], the state
// at the block's entry, becomes the state at its end.
void scan_forward(const Tiles& w, const HeadRows& x, float* o, float* S, int64_t n, int64_t hd) {
  const float tau = 1.0f / std::sqrt(static_cast<float>(hd));
  for (int64_t t0 = 0; t0 < n; t0 += kChunk) {
    const int64_t m = std::min(kChunk, n - t0);
    const float *q = x.q + t0 * hd, *k = x.k + t0 * hd, *v = x.v + t0 * hd;
    prefix_sums(w.b, x.g + t0 * hd, m, hd);
    decay_from_entry(w.qe, q, w.b, m, hd, tau);
    gemm(false, false, m, hd, hd, 1.0f, w.qe, hd, S, hd, 0.0f, o + t0 * hd, hd);  // earlier chunks
    intra_scores(w.A, q, k, w.b, m, hd, tau);
    gemm(false, false, m, hd, m, 1.0f, w.A, m, v, hd, 1.0f, o + t0 * hd, hd);  // the chunk itself
    decay_to_end(w.kd, k, w.b, m, hd);
    decay_and_add(S, w.kd, v, w.b, m, hd);
  }
}

// The backward's first pass, forward in time over a block's n rows of one head, S the state at
// the block's entry (at its end on return):
//   dq_i = tau exp(b_i) * (do_i S^T) + tau sum_{j<=i} (do_i . v_j) k_j * exp(b_i - b_j)
void query_gradients(const Tiles& w, const HeadRows& x, float* dq, float* S, int64_t n,
                     int64_t hd) {
  const float tau = 1.0f / std::sqrt(static_cast<float>(hd));
  for (int64_t t0 = 0; t0 < n; t0 += kChunk) {
    const int64_t m = std::min(kChunk, n - t0);
    const float *k = x.k + t0 * hd, *v = x.v + t0 * hd, *dout = x.dout + t0 * hd;
    float* dqc = dq + t0 * hd;
    prefix_sums(w.b, x.g + t0 * hd, m, hd);
    gemm(false, true, m, hd, hd, 1.0f, dout, hd, S, hd, 0.0f, dqc, hd);
    gemm(false, true, m, m, hd, 1.0f, dout, hd, v, hd, 0.0f, w.D, m);
    for (int64_t i = 0; i < m; i++) {
      const float* bi = w.b + i * hd;
      float* dqi = dqc + i * hd;
#pragma omp simd
      for (int64_t c = 0; c < hd; c++) dqi[c] *= tau * decay(bi[c]);
      for (int64_t j = 0; j <= i; j++) {
        const float *kj = k + j * hd, *bj = w.b + j * hd;
        const float coef = tau * w.D[i * m + j];
#pragma omp simd
        for (int64_t c = 0; c < hd; c++) dqi[c] += coef * kj[c] * decay(bi[c] - bj[c]);
      }
    }
    decay_to_end(w.kd, k, w.b, m, hd);
    decay_and_add(S, w.kd, v, w.b, m, hd);
  }
}

// The backward's second pass, backward in time over a block's n rows of one head, dS the gradient
// of the state at the block's end (the later rows' queries; at its entry on return):
//   dv_j = kd_j dS + sum_{i>=j} A_ij do_i
//   dk_j = exp(b_last - b_j) * (v_j dS^T) + tau sum_{i>=j} (do_i . v_j) q_i * exp(b_i - b_j)
void key_value_gradients(const Tiles& w, const HeadRows& x, float* dk, float* dv, float* dS,
                         int64_t n, int64_t hd) {
  const float tau = 1.0f / std::sqrt(static_cast<float>(hd));
  for (int64_t t0 = (n - 1) / kChunk * kChunk; t0 >= 0; t0 -= kChunk) {
    const int64_t m = std::min(kChunk, n - t0);
    const float *q = x.q + t0 * hd, *k = x.k + t0 * hd, *v = x.v + t0 * hd;
    const float* dout = x.dout + t0 * hd;
    float *dkc = dk + t0 * hd, *dvc = dv + t0 * hd;
    prefix_sums(w.b, x.g + t0 * hd, m, hd);
    gemm(false, true, m, m, hd, 1.0f, dout, hd, v, hd, 0.0f, w.D, m);
    decay_to_end(w.kd, k, w.b, m, hd);
    gemm(false, false, m, hd, hd, 1.0f, w.kd, hd, dS, hd, 0.0f, dvc, hd);
    gemm(false, true, m, hd, hd, 1.0f, v, hd, dS, hd, 0.0f, dkc, hd);
    const float* last = w.b + (m - 1) * hd;
    for (int64_t j = 0; j < m; j++) {
      const float *kj = k + j * hd, *bj = w.b + j * hd;
      float* dkj = dkc + j * hd;
#pragma omp simd
      for (int64_t c = 0; c < hd; c++) dkj[c] *= decay(last[c] - bj[c]);
      for (int64_t i = 0; i < j; i++) w.A[i * m + j] = 0.0f;
      for (int64_t i = j; i < m; i++) {  // A as intra_scores makes it, sharing the exponentials
        const float *qi = q + i * hd, *bi = w.b + i * hd;
        const float coef = tau * w.D[i * m + j];
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int64_t c = 0; c < hd; c++) {
          const float e = decay(bi[c] - bj[c]);
          s += qi[c] * kj[c] * e;
          dkj[c] += coef * qi[c] * e;
        }
        w.A[i * m + j] = tau * s;
      }
    }
    gemm(true, false, m, hd, m, 1.0f, w.A, m, dout, hd, 1.0f, dvc, hd);
    decay_from_entry(w.qe, q, w.b, m, hd, tau);
    decay_and_add(dS, w.qe, dout, w.b, m, hd);
  }
}

// The running sums of q_t * dq_t - k_t * dk_t over a block's n rows of one head, last row first,
// into sums[n, hd]; acc holds hd doubles (as raw bytes) carried from the later blocks. In blocks of
// 16 channels, so the sums stay in registers.
void gate_gradient_sums(float* acc, float* sums, const float* qdq, const float* k, const float* dk,
                        int64_t n, int64_t hd) {
  constexpr int64_t kLanes = 16;
  for (int64_t c0 = 0; c0 < hd; c0 += kLanes) {
    const int64_t m = std::min(kLanes, hd - c0);
    double a[kLanes];
    std::memcpy(a, acc + 2 * c0, m * sizeof(double));
    for (int64_t t = n - 1; t >= 0; t--)
      for (int64_t c = 0; c < m; c++) {
        const int64_t i = t * hd + c0 + c;
        a[c] += static_cast<double>(qdq[i]) - static_cast<double>(k[i]) * dk[i];
        sums[i] = static_cast<float>(a[c]);
      }
    std::memcpy(acc + 2 * c0, a, m * sizeof(double));
  }
}

// Both scans counted key i for query i in the bidirectional form: out_i -= tau (q_i . k_i) v_i.
// With dout, its gradients come off dqkv instead. Parallel over one batch row's T rows.
void diagonal(float* out, float* dqkv, const float* dout, const float* qkv, int64_t T, int64_t C,
              int64_t H) {
  const int64_t hd = C / H, C3 = 3 * C;
  const float tau = 1.0f / std::sqrt(static_cast<float>(hd));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < T; i++)
    for (int64_t h = 0; h < H; h++) {
      const float *qi = qkv + i * C3 + h * hd, *ki = qi + C, *vi = qi + 2 * C;
      float qk = 0.0f;
#pragma omp simd reduction(+ : qk)
      for (int64_t c = 0; c < hd; c++) qk += qi[c] * ki[c];
      qk *= tau;
      if (!dout) {
        float* o = out + i * C + h * hd;
#pragma omp simd
        for (int64_t c = 0; c < hd; c++) o[c] -= qk * vi[c];
        continue;
      }
      const float* doi = dout + i * C + h * hd;
      float *dqi = dqkv + i * C3 + h * hd, *dki = dqi + C, *dvi = dqi + 2 * C;
      float vdo = 0.0f;
#pragma omp simd reduction(+ : vdo)
      for (int64_t c = 0; c < hd; c++) vdo += vi[c] * doi[c];
      vdo *= tau;
#pragma omp simd
      for (int64_t c = 0; c < hd; c++) {
        dqi[c] -= vdo * ki[c];
        dki[c] -= vdo * qi[c];
        dvi[c] -= qk * doi[c];
      }
    }
}

}  // namespace

namespace {
// The scratch of one lane (kat/parallel.h: batch_lanes), with the tiles of its threads.
int64_t lane_floats(int64_t T, int64_t C, int64_t H, int64_t lanes) {
  const int64_t hd = C / H;
  return 2 * C + 8 * block_rows(T) * C + T * C + 2 * H * hd * hd +
         threads_in_lane(lanes) * per_thread(hd);
}

Scratch lane_scratch(float* scratch, int64_t lane, int64_t lanes, int64_t T, int64_t C, int64_t H) {
  return scratch_of(scratch + lane * lane_floats(T, C, H, lanes), T, C, H);
}
}  // namespace

int64_t gla_scratch_floats(int64_t B, int64_t T, int64_t C, int64_t H) {
  const int64_t lanes = batch_lanes(B);
  return lanes * lane_floats(T, C, H, lanes);
}

void gla_forward(float* out, float* scratch, const float* qkv, const float* g, int64_t B, int64_t T,
                 int64_t C, int64_t H, bool causal) {
  const int64_t hd = C / H, C3 = 3 * C, lanes = batch_lanes(B);
  for_each_batch_row(B, [&](int64_t b, int64_t lane) {
    const Scratch s = lane_scratch(scratch, lane, lanes, T, C, H);
    const float *qb = qkv + b * T * C3, *gb = g + b * T * C;
    float* ob = out + b * T * C;
    for (bool reversed : {false, true}) {
      if (reversed && causal) break;
      const Order o{T, reversed};
      std::fill(s.S, s.S + H * hd * hd, 0.0f);
      for_each_block(
          s, qb, gb, nullptr, o, C, H, false,
          [&](const Tiles& w, int64_t h, int64_t at, int64_t, int64_t n) {
            scan_forward(w, HeadRows(s.m, at), s.m.x + at, s.S + h * hd * hd, n, hd);
          },
          [&](int64_t s0, int64_t n) { store_block(ob, C, s.m.x, o, s0, n, C, H, reversed); });
    }
    if (!causal) diagonal(ob, nullptr, nullptr, qb, T, C, H);
  });
}

void gla_backward(float* dqkv, float* dg, float* scratch, const float* dout, const float* qkv,
                  const float* g, int64_t B, int64_t T, int64_t C, int64_t H, bool causal,
                  bool accumulate) {
  const int64_t hd = C / H, C3 = 3 * C, lanes = batch_lanes(B);
  for_each_batch_row(B, [&](int64_t b, int64_t lane) {
    const Scratch s = lane_scratch(scratch, lane, lanes, T, C, H);
    const float *qb = qkv + b * T * C3, *gb = g + b * T * C, *dob = dout + b * T * C;
    float *dqb = dqkv + b * T * C3, *dgb = dg + b * T * C;
    for (bool reversed : {false, true}) {
      if (reversed && causal) break;
      const Order o{T, reversed};
      const bool add = accumulate || reversed;
      // Forward in time: dq, and q * dq for the gate gradients.
      std::fill(s.S, s.S + H * hd * hd, 0.0f);
      for_each_block(
          s, qb, gb, dob, o, C, H, false,
          [&](const Tiles& w, int64_t h, int64_t at, int64_t s0, int64_t n) {
            const HeadRows x(s.m, at);
            float* dq = s.m.x + at;
            query_gradients(w, x, dq, s.S + h * hd * hd, n, hd);
            float* qdq = s.qdq + (h * T + s0) * hd;
            for (int64_t i = 0; i < n * hd; i++) qdq[i] = x.q[i] * dq[i];
          },
          [&](int64_t s0, int64_t n) { store_block(dqb, C3, s.m.x, o, s0, n, C, H, add); });
      // Backward in time: dk, dv, and the gate gradients dg_s = sum_{t >= s} (q_t * dq_t - k_t *
      // dk_t), summed in double.
      std::fill(s.dS, s.dS + H * hd * hd, 0.0f);
      std::fill(s.acc, s.acc + 2 * C, 0.0f);  // all-zero bytes: doubles of 0
      for_each_block(
          s, qb, gb, dob, o, C, H, true,
          [&](const Tiles& w, int64_t h, int64_t at, int64_t s0, int64_t n) {
            const HeadRows x(s.m, at);
            float *dk = s.m.x + at, *dv = s.m.y + at, *sums = s.m.z + at;
            key_value_gradients(w, x, dk, dv, s.dS + h * hd * hd, n, hd);
            gate_gradient_sums(s.acc + 2 * h * hd, sums, s.qdq + (h * T + s0) * hd, x.k, dk, n, hd);
          },
          [&](int64_t s0, int64_t n) {
            store_block(dqb + C, C3, s.m.x, o, s0, n, C, H, add);
            store_block(dqb + 2 * C, C3, s.m.y, o, s0, n, C, H, add);
            store_block(dgb, C, s.m.z, o, s0, n, C, H, add, true);
          });
    }
    if (!causal) diagonal(nullptr, dqb, dob, qb, T, C, H);
  });
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
