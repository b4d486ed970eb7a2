// Exact multi-head softmax attention in the FlashAttention-2 form (reference/attention.md): a block
// of queries meets the keys one block at a time under an online softmax, so no T x T matrix exists
// in the forward or the backward; the backward recomputes each probability tile from the saved
// log-sum-exp. Products run through GEMM on strided views of the packed qkv tensor (OpenBLAS's
// OpenMP build runs on the calling thread inside a parallel region); tiles live in per-thread
// scratch.
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

// Strided views of one (batch, head) pair inside a packed [B, T, 3C] tensor.
struct HeadView {
  int64_t b, h, offset;  // offset of q[b, 0, h] in the packed tensor
};

HeadView head_view(int64_t bh, int64_t H, int64_t T, int64_t C) {
  const int64_t b = bh / H, h = bh % H;
  return {b, h, b * T * 3 * C + h * (C / H)};
}

// Rows per query block: blocks of at most `max` rows, as even as possible (197 -> 4 x 50).
int64_t even_block(int64_t T, int64_t max) {
  const int64_t blocks = (T + max - 1) / max;
  return (T + blocks - 1) / blocks;
}

// The columns [c0, c1) of the key block [j0, j0 + nk) that query i sees.
struct Columns {
  int64_t c0, c1;
};
Columns visible(const AttentionMask& mask, int64_t T, int64_t i, int64_t j0, int64_t nk) {
  const int64_t c0 = std::clamp<int64_t>(mask.first_key(i) - j0, 0, nk);
  return {c0, std::clamp<int64_t>(mask.end_key(i, T) - j0, c0, nk)};
}

int64_t per_thread_floats(AttentionTiles t) { return 2 * t.q * t.k + t.q; }

}  // namespace

int64_t attention_scratch_floats(AttentionTiles tiles) {
  return num_threads() * per_thread_floats(tiles);
}

void attention_forward(float* out, float* lse, float* scratch, const float* qkv, int64_t B,
                       int64_t T, int64_t C, int64_t H, AttentionMask mask, AttentionTiles tiles) {
  const int64_t hd = C / H, C3 = 3 * C, bq = even_block(T, tiles.q), nqb = (T + bq - 1) / bq;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const float minus_inf = -std::numeric_limits<float>::infinity();
#pragma omp parallel for schedule(dynamic)
  for (int64_t task = 0; task < B * H * nqb; task++) {
    const int64_t bh = task / nqb, i0 = task % nqb * bq, nq = std::min(bq, T - i0);
    const auto [b, h, at] = head_view(bh, H, T, C);
    const float *q = qkv + at + i0 * C3, *k = qkv + at + C, *v = qkv + at + 2 * C;
    float* o = out + (b * T + i0) * C + h * hd;                            // [nq, hd], row stride C
    float* s = scratch + omp_get_thread_num() * per_thread_floats(tiles);  // [nq, nk] tile
    float* l = s + tiles.q * tiles.k;                                      // running row sums
    float* m = lse + bh * T + i0;  // running row maxima, then lse
    std::fill(m, m + nq, minus_inf);
    std::fill(l, l + nq, 0.0f);
    const int64_t kbegin = mask.first_key(i0), kend = mask.end_key(i0 + nq - 1, T);
    for (int64_t j0 = kbegin; j0 < kend; j0 += tiles.k) {
      const int64_t nk = std::min(tiles.k, kend - j0);
      gemm(false, true, nq, nk, hd, scale, q, C3, k + j0 * C3, C3, 0.0f, s, nk);  // S = tau Q K^T
      for (int64_t r = 0; r < nq; r++) {
        float* row = s + r * nk;
        const auto [c0, c1] = visible(mask, T, i0 + r, j0, nk);
        std::fill(row, row + c0, 0.0f);
        std::fill(row + c1, row + nk, 0.0f);
        if (c0 == c1) continue;  // nothing of this block is seen: the row's state stands
        float mx = m[r];
#pragma omp simd reduction(max : mx)
        for (int64_t j = c0; j < c1; j++) mx = std::max(mx, row[j]);
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int64_t j = c0; j < c1; j++) {
          row[j] = exp_approx(row[j] - mx);
          sum += row[j];
        }
        if (j0 > kbegin) {  // rescale what the earlier key blocks left in this row
          const float alpha = std::exp(m[r] - mx);  // 0 while the row has seen nothing
          float* orow = o + r * C;
#pragma omp simd
          for (int64_t d = 0; d < hd; d++) orow[d] *= alpha;
          l[r] *= alpha;
        }
        l[r] += sum;
        m[r] = mx;
      }
      gemm(false, false, nq, hd, nk, 1.0f, s, nk, v + j0 * C3, C3, j0 == kbegin ? 0.0f : 1.0f, o,
           C);  // O += P V
    }
    for (int64_t r = 0; r < nq; r++) {
      const float inv = 1.0f / l[r];
      float* orow = o + r * C;
#pragma omp simd
      for (int64_t d = 0; d < hd; d++) orow[d] *= inv;
      m[r] += std::log(l[r]);
    }
  }
}

void attention_backward(float* dqkv, float* scratch, const float* dout, const float* out,
                        const float* qkv, const float* lse, int64_t B, int64_t T, int64_t C,
                        int64_t H, AttentionMask mask, bool accumulate, AttentionTiles tiles) {
  const int64_t hd = C / H, C3 = 3 * C, bq = even_block(T, tiles.q);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  // One (batch, head) pair per task, so dK and dV accumulate without atomics.
#pragma omp parallel for schedule(dynamic)
  for (int64_t bh = 0; bh < B * H; bh++) {
    const auto [b, h, at] = head_view(bh, H, T, C);
    const float *q = qkv + at, *k = q + C, *v = q + 2 * C;
    float *dq = dqkv + at, *dk = dq + C, *dv = dq + 2 * C;
    if (!accumulate)
      for (int64_t t = 0; t < T; t++)
        for (float* g : {dq, dk, dv}) std::fill(g + t * C3, g + t * C3 + hd, 0.0f);
    float* p = scratch + omp_get_thread_num() * per_thread_floats(tiles);  // [nq, nk]
    float* dp = p + tiles.q * tiles.k;                                     // [nq, nk]
    float* D = dp + tiles.q * tiles.k;                                     // [nq]
    for (int64_t i0 = 0; i0 < T; i0 += bq) {
      const int64_t nq = std::min(bq, T - i0);
      const float* o = out + (b * T + i0) * C + h * hd;
      const float* dO = dout + (b * T + i0) * C + h * hd;
      const float* m = lse + bh * T + i0;
      for (int64_t r = 0; r < nq; r++) {  // D = rowsum(dO * O)
        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int64_t d = 0; d < hd; d++) dot += dO[r * C + d] * o[r * C + d];
        D[r] = dot;
      }
      const int64_t kbegin = mask.first_key(i0), kend = mask.end_key(i0 + nq - 1, T);
      for (int64_t j0 = kbegin; j0 < kend; j0 += tiles.k) {
        const int64_t nk = std::min(tiles.k, kend - j0);
        gemm(false, true, nq, nk, hd, scale, q + i0 * C3, C3, k + j0 * C3, C3, 0.0f, p, nk);
        for (int64_t r = 0; r < nq; r++) {  // P = exp(S - lse)
          float* row = p + r * nk;
          const auto [c0, c1] = visible(mask, T, i0 + r, j0, nk);
          const float mr = m[r];
          std::fill(row, row + c0, 0.0f);
#pragma omp simd
          for (int64_t j = c0; j < c1; j++) row[j] = exp_approx(row[j] - mr);
          std::fill(row + c1, row + nk, 0.0f);
        }
        gemm(true, false, nk, hd, nq, 1.0f, p, nk, dO, C, 1.0f, dv + j0 * C3, C3);  // dV += P^T dO
        gemm(false, true, nq, nk, hd, 1.0f, dO, C, v + j0 * C3, C3, 0.0f, dp, nk);  // dP = dO V^T
        for (int64_t r = 0; r < nq; r++) {                                          // dS
          const float* pr = p + r * nk;
          float* dr = dp + r * nk;
          const float Dr = D[r];
#pragma omp simd
          for (int64_t j = 0; j < nk; j++) dr[j] = pr[j] * (dr[j] - Dr);
        }
        gemm(false, false, nq, hd, nk, scale, dp, nk, k + j0 * C3, C3, 1.0f, dq + i0 * C3,
             C3);  // dQ += tau dS K
        gemm(true, false, nk, hd, nq, scale, dp, nk, q + i0 * C3, C3, 1.0f, dk + j0 * C3,
             C3);  // dK += tau dS^T Q
      }
    }
  }
}

void attention_decode(float* out, float* scratch, const float* q, const float* k, const float* v,
                      int64_t n, int64_t C, int64_t H) {
  decode_softmax(out, scratch, q, {{k, v, n, 0.0f}}, C, H);
}

// ---- Plain double-precision reference: the whole score matrix, one (batch, head) at a time ----

namespace {

// probs[T, T] of one (batch, head): softmax of tau q k^T, masked when causal.
std::vector<double> reference_probs(const double* qkv, int64_t b, int64_t h, int64_t T, int64_t C,
                                    int64_t H, AttentionMask mask) {
  const int64_t hd = C / H, C3 = 3 * C;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  const double* base = qkv + b * T * C3 + h * hd;
  std::vector<double> P(T * T, 0.0);
  for (int64_t i = 0; i < T; i++) {
    double mx = -std::numeric_limits<double>::infinity(), sum = 0;
    auto seen = [&](int64_t j) {  // written out, not through first_key / end_key
      if (mask.causal && j > i) return false;
      if (mask.window <= 0) return true;
      return mask.causal ? i - j < mask.window
                         : j - i >= -(mask.window / 2) && j - i < mask.window - mask.window / 2;
    };
    for (int64_t j = 0; j < T; j++) {
      if (!seen(j)) continue;
      double s = 0;
      for (int64_t d = 0; d < hd; d++) s += base[i * C3 + d] * base[j * C3 + C + d];
      P[i * T + j] = s * scale;
      mx = std::max(mx, P[i * T + j]);
    }
    for (int64_t j = 0; j < T; j++)
      if (seen(j)) sum += P[i * T + j] = std::exp(P[i * T + j] - mx);
    for (int64_t j = 0; j < T; j++) P[i * T + j] = seen(j) ? P[i * T + j] / sum : 0.0;
  }
  return P;
}

}  // namespace

void attention_forward_ref(double* out, const double* qkv, int64_t B, int64_t T, int64_t C,
                           int64_t H, AttentionMask mask) {
  const int64_t hd = C / H, C3 = 3 * C;
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++) {
      const std::vector<double> P = reference_probs(qkv, b, h, T, C, H, mask);
      const double* v = qkv + b * T * C3 + 2 * C + h * hd;
      for (int64_t i = 0; i < T; i++)
        for (int64_t d = 0; d < hd; d++) {
          double acc = 0;
          for (int64_t j = 0; j < T; j++) acc += P[i * T + j] * v[j * C3 + d];
          out[(b * T + i) * C + h * hd + d] = acc;
        }
    }
}

void attention_backward_ref(double* dqkv, const double* dout, const double* qkv, int64_t B,
                            int64_t T, int64_t C, int64_t H, AttentionMask mask) {
  const int64_t hd = C / H, C3 = 3 * C;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++) {
      const std::vector<double> P = reference_probs(qkv, b, h, T, C, H, mask);
      const int64_t at = b * T * C3 + h * hd;
      const double *q = qkv + at, *k = q + C, *v = q + 2 * C;
      double *dq = dqkv + at, *dk = dq + C, *dv = dq + 2 * C;
      const double* dO = dout + b * T * C + h * hd;
      for (int64_t i = 0; i < T; i++) {
        std::vector<double> dP(T, 0.0);
        double D = 0;
        for (int64_t j = 0; j < T; j++) {
          for (int64_t d = 0; d < hd; d++) dP[j] += dO[i * C + d] * v[j * C3 + d];
          D += P[i * T + j] * dP[j];
        }
        for (int64_t j = 0; j < T; j++) {
          const double dS = P[i * T + j] * (dP[j] - D) * scale;
          for (int64_t d = 0; d < hd; d++) {
            dv[j * C3 + d] += P[i * T + j] * dO[i * C + d];
            dq[i * C3 + d] += dS * k[j * C3 + d];
            dk[j * C3 + d] += dS * q[i * C3 + d];
          }
        }
      }
    }
}

}  // namespace kat
