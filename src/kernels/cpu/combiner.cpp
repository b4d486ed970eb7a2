// Combiner-Fixed attention (Ren et al. 2021; reference/attention.md, "Combiner"): the sequence is
// cut into spans; a query meets the keys of its own span directly and every other span (causal:
// every earlier span) through one summary, key = channelwise max of the span's keys, value = mean
// of its values, logit shifted by log(span length), all in one softmax.
// One task per (span, head) of a batch row: the span's logits [n, n + summaries] are formed whole
// in per-thread scratch (span ~ sqrt T keeps them small) and the products run through GEMM. The
// backward recomputes P from the saved lse. The summaries' gradients cross tasks, so each thread
// sums its own share, the shares are added in thread order (the same result on every run), and
// only then go through the max (to the argmax key) and the mean (to every value of the span).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "decode_softmax.h"
#include "kat/kernels.h"
#include "kat/parallel.h"
#include "vec_math.h"

namespace kat {
namespace {

// Sizes of one call. span is clamped to T (a span of T or more is one span: full attention).
struct Layout {
  int64_t T, C, H, hd, C3, span, spans;
  float tau, log_full, log_last;  // log n of a full span and of the last one
};

Layout layout_of(int64_t T, int64_t C, int64_t H, int64_t span) {
  Layout L;
  L.T = T, L.C = C, L.H = H, L.hd = C / H, L.C3 = 3 * C;
  L.span = std::max<int64_t>(1, std::min(span, T));
  L.spans = (T + L.span - 1) / L.span;
  L.tau = 1.0f / std::sqrt(static_cast<float>(L.hd));
  L.log_full = std::log(static_cast<float>(L.span));
  L.log_last = std::log(static_cast<float>(T - (L.spans - 1) * L.span));
  return L;
}

// Shared: the summaries ksum, vsum [spans, C] of one batch row. Per thread: the logits (then P)
// and dP tiles [span, span + spans], a row vector [span], and the thread's share of the summaries'
// gradients dksum, dvsum [spans, C].
int64_t shared_floats(const Layout& L) { return 2 * L.spans * L.C; }
int64_t per_thread_floats(const Layout& L) {
  return 2 * L.span * (L.span + L.spans) + L.span + 2 * L.spans * L.C;
}

struct ThreadTiles {
  float *S, *dP, *row, *dksum, *dvsum;
};

ThreadTiles thread_tiles(float* scratch, const Layout& L, int thread) {
  float* p = scratch + shared_floats(L) + thread * per_thread_floats(L);
  const int64_t tile = L.span * (L.span + L.spans);
  return {p, p + tile, p + 2 * tile, p + 2 * tile + L.span, p + 2 * tile + L.span + L.spans * L.C};
}

// ksum[C] = max over the n rows of k, vsum[C] = their mean of v; rows ld apart.
void summarize(float* ksum, float* vsum, const float* k, const float* v, int64_t n, int64_t C,
               int64_t ld) {
  std::copy(k, k + C, ksum);
  std::copy(v, v + C, vsum);
  for (int64_t t = 1; t < n; t++) {
    const float *kt = k + t * ld, *vt = v + t * ld;
#pragma omp simd
    for (int64_t c = 0; c < C; c++) {
      ksum[c] = std::max(ksum[c], kt[c]);
      vsum[c] += vt[c];
    }
  }
  const float inv = 1.0f / static_cast<float>(n);
#pragma omp simd
  for (int64_t c = 0; c < C; c++) vsum[c] *= inv;
}

// One task: span r (tokens s0 .. s0 + n) of head h. q, k, v point at the span's first row of the
// head in the packed qkv (row stride 3C); ksum, vsum at the head's columns of the summaries.
struct Task {
  int64_t r, h, s0, n, ns, w;  // ns summary columns after the n direct ones: w = n + ns
  const float *q, *k, *v, *ksum, *vsum;
};

Task task_of(const Layout& L, const float* qkv_b, const float* summaries, int64_t r, int64_t h,
             bool causal) {
  Task t;
  t.r = r, t.h = h, t.s0 = r * L.span, t.n = std::min(L.span, L.T - t.s0);
  t.ns = causal ? r : L.spans;  // bidirectional: all spans, the own one masked
  t.w = t.n + t.ns;
  t.q = qkv_b + t.s0 * L.C3 + h * L.hd, t.k = t.q + L.C, t.v = t.q + 2 * L.C;
  t.ksum = summaries + h * L.hd, t.vsum = summaries + L.spans * L.C + h * L.hd;
  return t;
}

// S[n, w] = tau q [k ; ksum]^T + [0 ; log n_r'], the entries a query does not see at -inf: the
// later keys of its span (causal) and its own span's summary (bidirectional).
void scores(float* S, const Layout& L, const Task& t, bool causal) {
  gemm(false, true, t.n, t.n, L.hd, L.tau, t.q, L.C3, t.k, L.C3, 0.0f, S, t.w);
  if (t.ns > 0)
    gemm(false, true, t.n, t.ns, L.hd, L.tau, t.q, L.C3, t.ksum, L.C, 0.0f, S + t.n, t.w);
  const float minus_inf = -std::numeric_limits<float>::infinity();
  for (int64_t a = 0; a < t.n; a++) {
    float* row = S + a * t.w;
    if (causal) std::fill(row + a + 1, row + t.n, minus_inf);
    float* sum = row + t.n;
    const int64_t full = std::min(t.ns, L.spans - 1);  // the last span may be shorter
#pragma omp simd
    for (int64_t j = 0; j < full; j++) sum[j] += L.log_full;
    if (t.ns == L.spans) sum[L.spans - 1] += L.log_last;
    if (!causal) sum[t.r] = minus_inf;
  }
}

// row[w] <- exp(row - shift) where query a of the task sees, exactly 0 elsewhere; returns the sum.
float exp_visible(float* row, const Task& t, int64_t a, float shift, bool causal) {
#pragma omp simd
  for (int64_t j = 0; j < t.w; j++) row[j] = exp_approx(row[j] - shift);  // -inf: ~1e-38
  if (causal)
    std::fill(row + a + 1, row + t.n, 0.0f);
  else
    row[t.n + t.r] = 0.0f;
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < t.w; j++) sum += row[j];
  return sum;
}

}  // namespace

int64_t combiner_scratch_floats(int64_t T, int64_t C, int64_t H, int64_t span) {
  if (T <= 0) return 0;
  const Layout L = layout_of(T, C, H, span);
  return shared_floats(L) + num_threads() * per_thread_floats(L);
}

void combiner_forward(float* out, float* lse, float* scratch, const float* qkv, int64_t B,
                      int64_t T, int64_t C, int64_t H, int64_t span, bool causal) {
  if (T <= 0) return;
  const Layout L = layout_of(T, C, H, span);
  float *ksum = scratch, *vsum = scratch + L.spans * C;
#pragma omp parallel
  for (int64_t b = 0; b < B; b++) {
    const float* qkv_b = qkv + b * T * L.C3;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < L.spans; r++)
      summarize(ksum + r * C, vsum + r * C, qkv_b + r * L.span * L.C3 + C,
                qkv_b + r * L.span * L.C3 + 2 * C, std::min(L.span, T - r * L.span), C, L.C3);
#pragma omp for schedule(dynamic)
    for (int64_t task = 0; task < L.spans * H; task++) {
      const Task t = task_of(L, qkv_b, scratch, task / H, task % H, causal);
      const ThreadTiles tt = thread_tiles(scratch, L, omp_get_thread_num());
      float* o = out + (b * T + t.s0) * C + t.h * L.hd;  // [n, hd], row stride C
      scores(tt.S, L, t, causal);
      for (int64_t a = 0; a < t.n; a++) {
        float* row = tt.S + a * t.w;
        float mx = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : mx)
        for (int64_t j = 0; j < t.w; j++) mx = std::max(mx, row[j]);
        const float sum = exp_visible(row, t, a, mx, causal);
        tt.row[a] = 1.0f / sum;
        lse[(b * T + t.s0 + a) * H + t.h] = mx + std::log(sum);
      }
      gemm(false, false, t.n, L.hd, t.n, 1.0f, tt.S, t.w, t.v, L.C3, 0.0f, o, C);  // O = P V
      if (t.ns > 0)  // O += P_sum vsum
        gemm(false, false, t.n, L.hd, t.ns, 1.0f, tt.S + t.n, t.w, t.vsum, C, 1.0f, o, C);
      for (int64_t a = 0; a < t.n; a++) {
        const float inv = tt.row[a];
#pragma omp simd
        for (int64_t d = 0; d < L.hd; d++) o[a * C + d] *= inv;
      }
    }
  }
}

void combiner_backward(float* dqkv, float* scratch, const float* dout, const float* out,
                       const float* qkv, const float* lse, int64_t B, int64_t T, int64_t C,
                       int64_t H, int64_t span, bool causal, bool accumulate) {
  if (T <= 0) return;
  const Layout L = layout_of(T, C, H, span);
  float *ksum = scratch, *vsum = scratch + L.spans * C;
  const int64_t hd = L.hd, C3 = L.C3;
#pragma omp parallel
  {
    const ThreadTiles tt = thread_tiles(scratch, L, omp_get_thread_num());
    const int threads = omp_get_num_threads();
    for (int64_t b = 0; b < B; b++) {
      const float* qkv_b = qkv + b * T * C3;
      float* dqkv_b = dqkv + b * T * C3;
      std::fill(tt.dksum, tt.dksum + 2 * L.spans * C, 0.0f);  // this thread's share, dvsum too
#pragma omp for schedule(static)
      for (int64_t r = 0; r < L.spans; r++)
        summarize(ksum + r * C, vsum + r * C, qkv_b + r * L.span * C3 + C,
                  qkv_b + r * L.span * C3 + 2 * C, std::min(L.span, T - r * L.span), C, C3);
        // static, 1: which thread sums which task is fixed, so the shares' sums are reproducible.
#pragma omp for schedule(static, 1)
      for (int64_t task = 0; task < L.spans * H; task++) {
        const Task t = task_of(L, qkv_b, scratch, task / H, task % H, causal);
        const int64_t at = t.s0 * C3 + t.h * hd;
        float *dq = dqkv_b + at, *dk = dq + C, *dv = dq + 2 * C;
        float *dks = tt.dksum + t.h * hd, *dvs = tt.dvsum + t.h * hd;
        const float* o = out + (b * T + t.s0) * C + t.h * hd;
        const float* dO = dout + (b * T + t.s0) * C + t.h * hd;
        if (!accumulate)
          for (int64_t a = 0; a < t.n; a++)
            for (float* g : {dq, dk, dv}) std::fill(g + a * C3, g + a * C3 + hd, 0.0f);
        float *P = tt.S, *dP = tt.dP, *D = tt.row;
        scores(P, L, t, causal);
        for (int64_t a = 0; a < t.n; a++) {  // P = exp(S - lse), D = rowsum(dO * O)
          exp_visible(P + a * t.w, t, a, lse[(b * T + t.s0 + a) * H + t.h], causal);
          float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
          for (int64_t d = 0; d < hd; d++) dot += dO[a * C + d] * o[a * C + d];
          D[a] = dot;
        }
        const int64_t n = t.n, ns = t.ns, w = t.w;
        gemm(true, false, n, hd, n, 1.0f, P, w, dO, C, 1.0f, dv, C3);    // dV += P^T dO
        gemm(false, true, n, n, hd, 1.0f, dO, C, t.v, C3, 0.0f, dP, w);  // dP = dO V^T
        if (ns > 0) {
          gemm(true, false, ns, hd, n, 1.0f, P + n, w, dO, C, 1.0f, dvs, C);  // dvsum += ...
          gemm(false, true, n, ns, hd, 1.0f, dO, C, t.vsum, C, 0.0f, dP + n, w);
        }
        for (int64_t a = 0; a < n; a++) {  // dS = P * (dP - D)
          const float* pr = P + a * w;
          float* dr = dP + a * w;
          const float Da = D[a];
#pragma omp simd
          for (int64_t j = 0; j < w; j++) dr[j] = pr[j] * (dr[j] - Da);
        }
        gemm(false, false, n, hd, n, L.tau, dP, w, t.k, C3, 1.0f, dq, C3);  // dQ += tau dS K
        gemm(true, false, n, hd, n, L.tau, dP, w, t.q, C3, 1.0f, dk, C3);   // dK += tau dS^T Q
        if (ns > 0) {
          gemm(false, false, n, hd, ns, L.tau, dP + n, w, t.ksum, C, 1.0f, dq, C3);
          gemm(true, false, ns, hd, n, L.tau, dP + n, w, t.q, C3, 1.0f, dks, C);
        }
      }
      // Sum the shares of span r's summary (all heads) in thread order, then through the max to
      // the argmax key of each channel (first on ties) and through the mean to every value.
#pragma omp for schedule(static)
      for (int64_t r = 0; r < L.spans; r++) {
        const ThreadTiles first = thread_tiles(scratch, L, 0);
        float *dks = first.dksum + r * C, *dvs = first.dvsum + r * C;
        for (int th = 1; th < threads; th++) {
          const float* other = first.dksum + th * per_thread_floats(L);
#pragma omp simd
          for (int64_t c = 0; c < C; c++) {
            dks[c] += other[r * C + c];
            dvs[c] += other[L.spans * C + r * C + c];
          }
        }
        const int64_t s0 = r * L.span, n = std::min(L.span, T - s0);
        const float* k = qkv_b + s0 * C3 + C;
        float *dk = dqkv_b + s0 * C3 + C, *dv = dk + C;
        for (int64_t c = 0; c < C; c++) {
          int64_t best = 0;
          for (int64_t a = 1; a < n; a++)
            if (k[a * C3 + c] > k[best * C3 + c]) best = a;
          dk[best * C3 + c] += dks[c];
        }
        const float inv = 1.0f / static_cast<float>(n);
        for (int64_t a = 0; a < n; a++)
#pragma omp simd
          for (int64_t c = 0; c < C; c++) dv[a * C3 + c] += dvs[c] * inv;
      }
    }
  }
}

void combiner_decode(float* out, float* scratch, const float* q, const float* k, const float* v,
                     int64_t n_own, const float* ksum, const float* vsum, int64_t n_spans,
                     int64_t span, int64_t C, int64_t H) {
  const float log_span = std::log(static_cast<float>(span));  // own-span keys, then the summaries
  decode_softmax(out, scratch, q, {{k, v, n_own, 0.0f}, {ksum, vsum, n_spans, log_span}}, C, H);
}

void combiner_summarize(float* ksum, float* vsum, const float* k, const float* v, int64_t n,
                        int64_t C) {
  summarize(ksum, vsum, k, v, n, C, C);
}

// ---- Plain double-precision reference: every query's logits written out one by one ----------

void combiner_forward_ref(double* out, const double* qkv, int64_t B, int64_t T, int64_t C,
                          int64_t H, int64_t span, bool causal) {
  const int64_t hd = C / H, C3 = 3 * C, spans = (T + span - 1) / span;
  const double tau = 1.0 / std::sqrt(static_cast<double>(hd));
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++) {
      const double* base = qkv + b * T * C3 + h * hd;  // q; k at +C, v at +2C
      auto span_end = [&](int64_t r) { return std::min(T, (r + 1) * span); };
      std::vector<double> kbar(spans * hd), vbar(spans * hd, 0.0);
      for (int64_t r = 0; r < spans; r++)
        for (int64_t d = 0; d < hd; d++) {
          double mx = -std::numeric_limits<double>::infinity(), sum = 0;
          for (int64_t j = r * span; j < span_end(r); j++) {
            mx = std::max(mx, base[j * C3 + C + d]);
            sum += base[j * C3 + 2 * C + d];
          }
          kbar[r * hd + d] = mx;
          vbar[r * hd + d] = sum / static_cast<double>(span_end(r) - r * span);
        }
      for (int64_t i = 0; i < T; i++) {
        const int64_t r = i / span;
        std::vector<double> logit;
        std::vector<const double*> value;
        auto dot = [&](const double* k) {
          double s = 0;
          for (int64_t d = 0; d < hd; d++) s += base[i * C3 + d] * k[d];
          return s * tau;
        };
        for (int64_t j = r * span; j < (causal ? i + 1 : span_end(r)); j++) {
          logit.push_back(dot(base + j * C3 + C));
          value.push_back(base + j * C3 + 2 * C);
        }
        for (int64_t s = 0; s < (causal ? r : spans); s++) {
          if (s == r) continue;
          const double n = static_cast<double>(span_end(s) - s * span);
          logit.push_back(dot(kbar.data() + s * hd) + std::log(n));
          value.push_back(vbar.data() + s * hd);
        }
        const double mx = *std::max_element(logit.begin(), logit.end());
        double sum = 0;
        for (double& x : logit) sum += x = std::exp(x - mx);
        double* o = out + (b * T + i) * C + h * hd;
        std::fill(o, o + hd, 0.0);
        for (size_t j = 0; j < logit.size(); j++)
          for (int64_t d = 0; d < hd; d++) o[d] += logit[j] / sum * value[j][d];
      }
    }
}

}  // namespace kat
