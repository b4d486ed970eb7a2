// GR-KAN group-rational activation: F(x) = P(x) / Q(x) with a numerator shared by the layer and one
// denominator per channel group (reference/kat.md, "as the released kernels compute it").
//
// The backward is where upstream loses 100x: it adds every element's coefficient gradients into the
// same few cells. Here each row of a group sums its 10 partials in float registers, each thread adds
// those row sums into its own double accumulators, and the threads are reduced once at the end.
#include <cmath>
#include <vector>

#include "kat/error.h"
#include "kat/kernels.h"
#include "kat/parallel.h"

namespace kat {
namespace {

// Coefficients of one group with the absolute values of the denominator taken once.
struct GroupCoefs {
  float a[kRationalNum];
  float b[kRationalDen];  // |b_i|
};

GroupCoefs group_coefs(const float* num, const float* den, int g) {
  GroupCoefs k;
  for (int i = 0; i < kRationalNum; i++) k.a[i] = num[i];
  for (int i = 0; i < kRationalDen; i++) k.b[i] = std::fabs(den[g * kRationalDen + i]);
  return k;
}

void check_groups(int64_t C, int groups) {
  check(groups > 0 && C % groups == 0, "GR-KAN: ", C, " channels do not split into ", groups,
        " equal groups");
}

}  // namespace

void rational_forward(float* y, const float* x, const float* num, const float* den, int64_t R,
                      int64_t C, int groups) {
  check_groups(C, groups);
  const int64_t cpg = C / groups;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; r++) {
    for (int g = 0; g < groups; g++) {
      const GroupCoefs k = group_coefs(num, den, g);
      const float* xr = x + r * C + g * cpg;
      float* yr = y + r * C + g * cpg;
#pragma omp simd
      for (int64_t c = 0; c < cpg; c++) {
        const float v = xr[c], av = std::fabs(v);
        const float p = k.a[0] + v * (k.a[1] + v * (k.a[2] + v * (k.a[3] + v * (k.a[4] + v * k.a[5]))));
        const float q = 1.0f + av * (k.b[0] + av * (k.b[1] + av * (k.b[2] + av * k.b[3])));
        yr[c] = p / q;
      }
    }
  }
}

void rational_backward(float* dx, float* dnum, float* dden, const float* dy, const float* x,
                       const float* num, const float* den, int64_t R, int64_t C, int groups) {
  check_groups(C, groups);
  const int64_t cpg = C / groups;
  constexpr int kPartials = kRationalNum + kRationalDen;
  const std::vector<double> total = parallel_sum<double>(groups * kPartials, [&](double* acc) {
#pragma omp for schedule(static)
    for (int64_t r = 0; r < R; r++) {
      for (int g = 0; g < groups; g++) {
        const GroupCoefs k = group_coefs(num, den, g);
        const float* xr = x + r * C + g * cpg;
        const float* dyr = dy + r * C + g * cpg;
        float* dxr = dx + r * C + g * cpg;
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0;  // sum dy x^i / Q
        float t1 = 0, t2 = 0, t3 = 0, t4 = 0;                  // sum -dy F / Q |x|^i
#pragma omp simd reduction(+ : s0, s1, s2, s3, s4, s5, t1, t2, t3, t4)
        for (int64_t c = 0; c < cpg; c++) {
          const float v = xr[c], av = std::fabs(v);
          const float sg = v < 0.0f ? -1.0f : 1.0f;  // sign(0) = +1, as upstream
          const float p = k.a[0] + v * (k.a[1] + v * (k.a[2] + v * (k.a[3] + v * (k.a[4] + v * k.a[5]))));
          const float dp = k.a[1] + v * (2.0f * k.a[2] + v * (3.0f * k.a[3] + v * (4.0f * k.a[4] + v * 5.0f * k.a[5])));
          const float q = 1.0f + av * (k.b[0] + av * (k.b[1] + av * (k.b[2] + av * k.b[3])));
          const float dq = sg * (k.b[0] + av * (2.0f * k.b[1] + av * (3.0f * k.b[2] + av * 4.0f * k.b[3])));
          const float iq = 1.0f / q;
          const float f = p * iq;
          const float g_ = dyr[c] * iq;  // dy / Q
          dxr[c] += g_ * (dp - f * dq);
          const float v2 = v * v, v3 = v2 * v;
          s0 += g_;
          s1 += g_ * v;
          s2 += g_ * v2;
          s3 += g_ * v3;
          s4 += g_ * v2 * v2;
          s5 += g_ * v2 * v3;
          const float h = -g_ * f;  // -dy P / Q^2
          const float a2 = av * av;
          t1 += h * av;
          t2 += h * a2;
          t3 += h * a2 * av;
          t4 += h * a2 * a2;
        }
        double* ag = acc + g * kPartials;
        ag[0] += s0, ag[1] += s1, ag[2] += s2, ag[3] += s3, ag[4] += s4, ag[5] += s5;
        ag[6] += t1, ag[7] += t2, ag[8] += t3, ag[9] += t4;
      }
    }
  });
  for (int g = 0; g < groups; g++) {
    const double* tg = total.data() + g * kPartials;
    for (int i = 0; i < kRationalNum; i++) dnum[i] += static_cast<float>(tg[i]);
    for (int i = 0; i < kRationalDen; i++) {
      const float b = den[g * kRationalDen + i];
      dden[g * kRationalDen + i] += static_cast<float>((b < 0.0f ? -1.0 : 1.0) * tg[6 + i]);
    }
  }
}

void rational_forward_ref(double* y, const double* x, const double* num, const double* den,
                          int64_t R, int64_t C, int groups) {
  check_groups(C, groups);
  const int64_t cpg = C / groups;
  for (int64_t r = 0; r < R; r++) {
    for (int64_t c = 0; c < C; c++) {
      const double v = x[r * C + c];
      const double* b = den + (c / cpg) * kRationalDen;
      double p = 0, q = 1;
      for (int i = 0; i < kRationalNum; i++) p += num[i] * std::pow(v, i);
      for (int i = 0; i < kRationalDen; i++) q += std::fabs(b[i]) * std::pow(std::fabs(v), i + 1);
      y[r * C + c] = p / q;
    }
  }
}

void rational_backward_ref(double* dx, double* dnum, double* dden, const double* dy,
                           const double* x, const double* num, const double* den, int64_t R,
                           int64_t C, int groups) {
  check_groups(C, groups);
  const int64_t cpg = C / groups;
  for (int64_t r = 0; r < R; r++) {
    for (int64_t c = 0; c < C; c++) {
      const int64_t g = c / cpg;
      const double v = x[r * C + c], av = std::fabs(v), sv = v < 0 ? -1.0 : 1.0;
      const double* b = den + g * kRationalDen;
      double p = 0, dp = 0, q = 1, dq = 0;
      for (int i = 0; i < kRationalNum; i++) {
        p += num[i] * std::pow(v, i);
        if (i > 0) dp += i * num[i] * std::pow(v, i - 1);
      }
      for (int i = 0; i < kRationalDen; i++) {
        q += std::fabs(b[i]) * std::pow(av, i + 1);
        dq += sv * (i + 1) * std::fabs(b[i]) * std::pow(av, i);
      }
      const double d = dy[r * C + c];
      dx[r * C + c] += d * (dp / q - p * dq / (q * q));
      for (int i = 0; i < kRationalNum; i++) dnum[i] += d * std::pow(v, i) / q;
      for (int i = 0; i < kRationalDen; i++) {
        const double sb = b[i] < 0 ? -1.0 : 1.0;
        dden[g * kRationalDen + i] += -d * p / (q * q) * sb * std::pow(av, i + 1);
      }
    }
  }
}

}  // namespace kat
