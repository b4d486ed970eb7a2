// Exact multi-head softmax self-attention. Each (batch, head) pair is one task; its products run
// through GEMM with strided views into the packed qkv tensor, so no per-head copies are made.
// (OpenBLAS is the OpenMP build: called inside a parallel region it runs on the calling thread.)
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "kat/kernels.h"
#include "vec_math.h"

namespace kat {
namespace {

// Strided views of one (batch, head) pair inside a packed [B, T, 3C] tensor.
struct HeadView {
  int64_t b, h, offset;  // offset of q[b, 0, h] in the packed tensor
};

HeadView head_view(int64_t bh, int64_t H, int64_t T, int64_t C, int64_t hd) {
  const int64_t b = bh / H, h = bh % H;
  return {b, h, b * T * 3 * C + h * hd};
}

}  // namespace

void attention_forward(float* out, float* probs, const float* qkv, int64_t B, int64_t T, int64_t C,
                       int64_t H) {
  const int64_t hd = C / H, C3 = 3 * C;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
#pragma omp parallel for schedule(static)
  for (int64_t bh = 0; bh < B * H; bh++) {
    const auto [b, h, at] = head_view(bh, H, T, C, hd);
    const float *q = qkv + at, *k = q + C, *v = q + 2 * C;
    float* p = probs + bh * T * T;
    gemm(false, true, T, T, hd, scale, q, C3, k, C3, 0.0f, p, T);  // S = tau q k^T
    for (int64_t i = 0; i < T; i++) {
      float* row = p + i * T;
      float m = row[0];
#pragma omp simd reduction(max : m)
      for (int64_t j = 1; j < T; j++) m = std::max(m, row[j]);
#pragma omp simd
      for (int64_t j = 0; j < T; j++) row[j] = exp_approx(row[j] - m);
      float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
      for (int64_t j = 0; j < T; j++) sum += row[j];
      const float inv = 1.0f / sum;
#pragma omp simd
      for (int64_t j = 0; j < T; j++) row[j] *= inv;
    }
    gemm(false, false, T, hd, T, 1.0f, p, T, v, C3, 0.0f, out + b * T * C + h * hd, C);  // P v
  }
}

void attention_backward(float* dqkv, float* scratch, const float* dout, const float* qkv,
                        const float* probs, int64_t B, int64_t T, int64_t C, int64_t H,
                        bool accumulate) {
  const float beta = accumulate ? 1.0f : 0.0f;  // each of dq, dk, dv is written by one GEMM
  const int64_t hd = C / H, C3 = 3 * C;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
#pragma omp parallel for schedule(static)
  for (int64_t bh = 0; bh < B * H; bh++) {
    const auto [b, h, at] = head_view(bh, H, T, C, hd);
    const float *q = qkv + at, *k = q + C, *v = q + 2 * C;
    float *dq = dqkv + at, *dk = dq + C, *dv = dq + 2 * C;
    const float* p = probs + bh * T * T;
    const float* dO = dout + b * T * C + h * hd;
    float* dp = scratch + omp_get_thread_num() * T * T;
    gemm(true, false, T, hd, T, 1.0f, p, T, dO, C, beta, dv, C3);  // dV += P^T dO
    gemm(false, true, T, T, hd, 1.0f, dO, C, v, C3, 0.0f, dp, T);  // dP = dO V^T
    for (int64_t i = 0; i < T; i++) {                              // dS = P (dP - rowsum(P dP))
      const float* pr = p + i * T;
      float* dr = dp + i * T;
      float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
      for (int64_t j = 0; j < T; j++) dot += pr[j] * dr[j];
#pragma omp simd
      for (int64_t j = 0; j < T; j++) dr[j] = pr[j] * (dr[j] - dot);
    }
    gemm(false, false, T, hd, T, scale, dp, T, k, C3, beta, dq, C3);  // dQ += tau dS K
    gemm(true, false, T, hd, T, scale, dp, T, q, C3, beta, dk, C3);   // dK += tau dS^T Q
  }
}

}  // namespace kat
