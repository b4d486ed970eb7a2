// GEMM through OpenBLAS, and the linear layer built on it.
#include <cblas.h>

#include <algorithm>
#include <cstring>

#include "kat/kernels.h"

namespace kat {

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, static_cast<blasint>(M), static_cast<blasint>(N),
              static_cast<blasint>(K), alpha, A, static_cast<blasint>(lda), B,
              static_cast<blasint>(ldb), beta, C, static_cast<blasint>(ldc));
}

void linear_forward(float* y, const float* x, const float* w, const float* b, int64_t R, int64_t I,
                    int64_t O) {
  float beta = 0.0f;
  if (b) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < R; r++) std::memcpy(y + r * O, b, O * sizeof(float));
    beta = 1.0f;
  }
  gemm(false, true, R, O, I, 1.0f, x, I, w, I, beta, y, O);
}

void linear_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                     const float* w, int64_t R, int64_t I, int64_t O, bool accumulate) {
  if (dx) gemm(false, false, R, I, O, 1.0f, dy, O, w, I, accumulate ? 1.0f : 0.0f, dx, I);
  gemm(true, false, O, I, R, 1.0f, dy, O, x, I, 1.0f, dw, I);
  if (db) {
    // Column sums of dy, 64 columns per task so each row read is one contiguous run.
    constexpr int64_t kCols = 64;
#pragma omp parallel for schedule(static)
    for (int64_t o0 = 0; o0 < O; o0 += kCols) {
      const int64_t o1 = std::min(O, o0 + kCols);
      float acc[kCols] = {};
      for (int64_t r = 0; r < R; r++) {
        const float* row = dy + r * O;
#pragma omp simd
        for (int64_t o = o0; o < o1; o++) acc[o - o0] += row[o];
      }
      for (int64_t o = o0; o < o1; o++) db[o] += acc[o - o0];
    }
  }
}

void add_inplace(float* y, const float* x, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

}  // namespace kat
