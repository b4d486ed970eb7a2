// GEMM through OpenBLAS, and the linear layer built on it. Linear layers of narrow models (both
// widths at most kNarrow: kat lra's 32 channels over 1024 pixels, the 28x28 model's 64) take a
// kernel of their own instead, which reads the tall operand in place where OpenBLAS packs it
// first. Forward + backward on 2 threads of the 2-core VM (docs/benchmarks.md, "Narrow linear
// layers"): 152-170 GFLOP/s at kat lra pathfinder's shapes against OpenBLAS's 46-64, and 179
// against 146 at 256 x 256.
#include <cblas.h>

#include <algorithm>
#include <cstring>

#include "kat/kernels.h"
#include "kat/parallel.h"

namespace kat {

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, static_cast<blasint>(M), static_cast<blasint>(N),
              static_cast<blasint>(K), alpha, A, static_cast<blasint>(lda), B,
              static_cast<blasint>(ldb), beta, C, static_cast<blasint>(ldc));
}

namespace {

// ---- The narrow kernel ----------------------------------------------------------------------
// C[M, N] (+)= A B with A(i, k) = A[i * a_row + k * a_col] (so A or A^T, read in place) and
// B[K, N] row-major. C is tiled 6 rows x 16 columns: 12 accumulators, 2 rows of B and one
// broadcast of A fill 15 of AVX2's 16 vector registers (BLIS's Haswell tile). N is a multiple of 8.
constexpr int64_t kNarrow = 256;  // widest I and O that take the narrow kernel
constexpr int64_t kTileRows = 6;  // rows of C per tile
constexpr int64_t kDepth = 256;  // k per pass: a 6 x 256 strip of A and 256 x 16 of B stay in L1/L2
constexpr int64_t kChunkRows = 96;  // rows of C per parallel task: 16 tiles

using Vec = float __attribute__((vector_size(32)));  // 8 floats

// The kernel is compiled for AVX2 + FMA whatever the build's instruction set (-march=native keeps
// its own, AVX-512 included), and runs where the CPU has them: with SSE alone, 12 accumulators do
// not fit in its registers and OpenBLAS, which picks its kernel at run time, is 2-4x faster. So a
// portable build (the sanitizer job's) runs this kernel too on the machines that have AVX2.
#if defined(__x86_64__)
#define KAT_NARROW_KERNEL [[gnu::target("avx2,fma")]]
bool cpu_runs_narrow_kernel() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}
#else
#define KAT_NARROW_KERNEL
bool cpu_runs_narrow_kernel() { return false; }
#endif

// Unaligned load; by reference, as a vector return value would change the ABI of builds without
// AVX.
KAT_NARROW_KERNEL inline void load(Vec& v, const float* p) { std::memcpy(&v, p, sizeof v); }

template <int Rows, int Cols>  // Cols: 8-float vectors per tile row (1 or 2)
KAT_NARROW_KERNEL void tile(int64_t K, const float* A, int64_t a_row, int64_t a_col, const float* B,
                            int64_t ldb, float* C, int64_t ldc, bool accumulate) {
  Vec c[Rows][Cols] = {};
  for (int64_t k = 0; k < K; k++) {
    Vec b[Cols];
    for (int j = 0; j < Cols; j++) load(b[j], B + k * ldb + 8 * j);
    for (int i = 0; i < Rows; i++) {
      const Vec a = A[i * a_row + k * a_col] - Vec{};  // broadcast
      for (int j = 0; j < Cols; j++) c[i][j] += a * b[j];
    }
  }
  for (int i = 0; i < Rows; i++)
    for (int j = 0; j < Cols; j++) {
      float* out = C + i * ldc + 8 * j;
      Vec v = c[i][j];
      if (accumulate) {
        Vec old;
        load(old, out);
        v += old;
      }
      std::memcpy(out, &v, sizeof v);
    }
}

template <int Cols>
KAT_NARROW_KERNEL void tile_rows(int64_t rows, int64_t K, const float* A, int64_t a_row,
                                 int64_t a_col, const float* B, int64_t ldb, float* C, int64_t ldc,
                                 bool accumulate) {
  switch (rows) {
    case 6:
      return tile<6, Cols>(K, A, a_row, a_col, B, ldb, C, ldc, accumulate);
    case 5:
      return tile<5, Cols>(K, A, a_row, a_col, B, ldb, C, ldc, accumulate);
    case 4:
      return tile<4, Cols>(K, A, a_row, a_col, B, ldb, C, ldc, accumulate);
    case 3:
      return tile<3, Cols>(K, A, a_row, a_col, B, ldb, C, ldc, accumulate);
    case 2:
      return tile<2, Cols>(K, A, a_row, a_col, B, ldb, C, ldc, accumulate);
    default:
      return tile<1, Cols>(K, A, a_row, a_col, B, ldb, C, ldc, accumulate);
  }
}

// One thread's share: C[M, N] (+)= A B, K in passes of kDepth.
KAT_NARROW_KERNEL void narrow_gemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t a_row,
                                   int64_t a_col, const float* B, int64_t ldb, float* C,
                                   int64_t ldc, bool accumulate) {
  for (int64_t k0 = 0; k0 < K; k0 += kDepth) {
    const int64_t depth = std::min(kDepth, K - k0);
    const bool acc = accumulate || k0 > 0;
    for (int64_t i = 0; i < M; i += kTileRows) {
      const int64_t rows = std::min(kTileRows, M - i);
      const float* a = A + i * a_row + k0 * a_col;
      float* c = C + i * ldc;
      int64_t j = 0;
      for (; j + 16 <= N; j += 16)
        tile_rows<2>(rows, depth, a, a_row, a_col, B + k0 * ldb + j, ldb, c + j, ldc, acc);
      if (j < N) tile_rows<1>(rows, depth, a, a_row, a_col, B + k0 * ldb + j, ldb, c + j, ldc, acc);
    }
  }
}

// Whether a linear layer over R rows takes the narrow kernel. A few rows (a decode step) stay with
// OpenBLAS: there W's transpose would cost as much as the product.
bool narrow(int64_t R, int64_t I, int64_t O) {
  return R >= kChunkRows && I <= kNarrow && O <= kNarrow && I % 8 == 0 && O % 8 == 0 &&
         cpu_runs_narrow_kernel();
}

// C[R, N] (+)= A[R, K] B[K, N], rows split over the threads.
void narrow_rows(int64_t R, int64_t N, int64_t K, const float* A, const float* B, float* C,
                 bool accumulate) {
#pragma omp parallel for schedule(static)
  for (int64_t r0 = 0; r0 < R; r0 += kChunkRows)
    narrow_gemm(std::min(kChunkRows, R - r0), N, K, A + r0 * K, K, 1, B, N, C + r0 * N, N,
                accumulate);
}

struct WeightGradTag {};
struct TransposedWeightTag {};

// dw[O, I] += dy[R, O]^T x[R, I] in a fixed number of spans of rows, each summed into its own
// copy, the copies then added in span order: the same sums on any number of threads.
constexpr int64_t kWeightGradSpans = 32;

void narrow_weight_grad(float* dw, const float* dy, const float* x, int64_t R, int64_t I,
                        int64_t O) {
  const int64_t spans = std::min(kWeightGradSpans, (R + kDepth - 1) / kDepth), n = O * I;
  float* part = thread_buffer<float, WeightGradTag>(spans * n);
#pragma omp parallel for schedule(static)
  for (int64_t s = 0; s < spans; s++) {
    const int64_t r0 = R * s / spans, r1 = R * (s + 1) / spans;
    narrow_gemm(O, I, r1 - r0, dy + r0 * O, 1, O, x + r0 * I, I, part + s * n, I, false);
  }
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < n; k++) {
    float sum = 0.0f;
    for (int64_t s = 0; s < spans; s++) sum += part[s * n + k];
    dw[k] += sum;
  }
}

}  // namespace

void linear_forward(float* y, const float* x, const float* w, const float* b, int64_t R, int64_t I,
                    int64_t O) {
  float beta = 0.0f;
  if (b) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < R; r++) std::memcpy(y + r * O, b, O * sizeof(float));
    beta = 1.0f;
  }
  if (narrow(R, I, O)) {
    float* wt = thread_buffer<float, TransposedWeightTag>(I * O);  // W^T [I, O]: the kernel's B
    for (int64_t o = 0; o < O; o++)
      for (int64_t i = 0; i < I; i++) wt[i * O + o] = w[o * I + i];
    narrow_rows(R, O, I, x, wt, y, b != nullptr);
    return;
  }
  gemm(false, true, R, O, I, 1.0f, x, I, w, I, beta, y, O);
}

void linear_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                     const float* w, int64_t R, int64_t I, int64_t O, bool accumulate) {
  if (narrow(R, I, O)) {
    if (dx) narrow_rows(R, I, O, dy, w, dx, accumulate);
    narrow_weight_grad(dw, dy, x, R, I, O);
  } else {
    if (dx) gemm(false, false, R, I, O, 1.0f, dy, O, w, I, accumulate ? 1.0f : 0.0f, dx, I);
    gemm(true, false, O, I, R, 1.0f, dy, O, x, I, 1.0f, dw, I);
  }
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
