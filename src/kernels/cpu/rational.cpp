// GR-KAN group-rational activation: F(x) = P(x) / Q(x) with a numerator shared by the layer and one
// denominator per channel group (reference/kat.md, "as the released kernels compute it").
//
// The backward is where upstream loses 100x: it adds every element's coefficient gradients into the
// same few cells. Here each thread keeps the 10 partial sums per channel in float for up to 32
// rows (one vector loop over a whole row, whatever the group size), flushes them into its own
// double accumulators, and the threads are reduced once at the end, in thread order.
#include <algorithm>
#include <cmath>
#include <cstring>
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
        const float p =
            k.a[0] + v * (k.a[1] + v * (k.a[2] + v * (k.a[3] + v * (k.a[4] + v * k.a[5]))));
        const float q = 1.0f + av * (k.b[0] + av * (k.b[1] + av * (k.b[2] + av * k.b[3])));
        yr[c] = p / q;
      }
    }
  }
}

namespace {

constexpr int kPartials = kRationalNum + kRationalDen;
constexpr int kFlushRows = 32;  // float partials cover at most this many rows, then go to double

// Coefficient-gradient sums of any group size: per thread and channel, sum dy x^i / Q (i < 6) and
// sum -dy F / Q |x|^i (i = 1..4) in float over up to kFlushRows rows, then in double; one vector
// loop covers a whole row. Writes dx and the sums per group, totals[groups, 10].
void backward_any_group_size(double* totals, float* dx, const float* dy, const float* x,
                             const float* num, const float* den, int64_t R, int64_t C, int groups,
                             bool accumulate) {
  const int64_t cpg = C / groups;
  // |b| per channel, so one vector loop covers a whole row whatever the group size.
  float* absb = thread_buffer<float, struct AbsDen>(kRationalDen * C);
  for (int i = 0; i < kRationalDen; i++)
    for (int64_t c = 0; c < C; c++) absb[i * C + c] = std::fabs(den[(c / cpg) * kRationalDen + i]);
  const float a0 = num[0], a1 = num[1], a2 = num[2], a3 = num[3], a4 = num[4], a5 = num[5];
  const double* sums = parallel_sum<double>(kPartials * C, [&](double* acc) {
    float* part = thread_buffer<float, struct ChannelPartials>(kPartials * C);
    std::fill(part, part + kPartials * C, 0.0f);
    int rows = 0;
    auto flush = [&] {
      for (int64_t i = 0; i < kPartials * C; i++) acc[i] += part[i], part[i] = 0.0f;
      rows = 0;
    };
    const float* b0 = absb;
    const float *b1 = b0 + C, *b2 = b1 + C, *b3 = b2 + C;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < R; r++) {
      const float* xr = x + r * C;
      const float* dyr = dy + r * C;
      float* dxr = dx + r * C;
      float* s0 = part;
      float *s1 = s0 + C, *s2 = s1 + C, *s3 = s2 + C, *s4 = s3 + C, *s5 = s4 + C;
      float *t1 = s5 + C, *t2 = t1 + C, *t3 = t2 + C, *t4 = t3 + C;
#pragma omp simd
      for (int64_t c = 0; c < C; c++) {
        const float v = xr[c], av = std::fabs(v);
        const float sg = v < 0.0f ? -1.0f : 1.0f;  // sign(0) = +1, as upstream
        const float p = a0 + v * (a1 + v * (a2 + v * (a3 + v * (a4 + v * a5))));
        const float dp = a1 + v * (2.0f * a2 + v * (3.0f * a3 + v * (4.0f * a4 + v * 5.0f * a5)));
        const float q = 1.0f + av * (b0[c] + av * (b1[c] + av * (b2[c] + av * b3[c])));
        const float dq =
            sg * (b0[c] + av * (2.0f * b1[c] + av * (3.0f * b2[c] + av * 4.0f * b3[c])));
        const float iq = 1.0f / q;
        const float f = p * iq;
        const float g = dyr[c] * iq;  // dy / Q
        const float dxc = g * (dp - f * dq);
        dxr[c] = accumulate ? dxr[c] + dxc : dxc;
        const float v2 = v * v, v3 = v2 * v;
        s0[c] += g;
        s1[c] += g * v;
        s2[c] += g * v2;
        s3[c] += g * v3;
        s4[c] += g * v2 * v2;
        s5[c] += g * v2 * v3;
        const float h = -g * f;  // -dy P / Q^2
        const float av2 = av * av;
        t1[c] += h * av;
        t2[c] += h * av2;
        t3[c] += h * av2 * av;
        t4[c] += h * av2 * av2;
      }
      if (++rows == kFlushRows) flush();
    }
    flush();
  });
  for (int g = 0; g < groups; g++)
    for (int k = 0; k < kPartials; k++)
      for (int64_t c = g * cpg; c < (g + 1) * cpg; c++)
        totals[g * kPartials + k] += sums[k * C + c];
}

// The same when every group is a whole number of 16-float vectors (KAT-T: 96 channels a group):
// the 10 sums of a group stay in vector registers across its channels, and only 16 lanes per sum
// and group go to memory per row, instead of 10 per channel.
void backward_groups_of_16(double* totals, float* dx, const float* dy, const float* x,
                           const float* num, const float* den, int64_t R, int64_t C, int groups,
                           bool accumulate) {
  typedef float v16 __attribute__((vector_size(64)));
  const int64_t cpg = C / groups;
  const float a0 = num[0], a1 = num[1], a2 = num[2], a3 = num[3], a4 = num[4], a5 = num[5];
  const double* sums = parallel_sum<double>(groups * kPartials, [&](double* acc) {
    v16* part = thread_buffer<v16, struct GroupPartials>(groups * kPartials);
    std::fill(part, part + groups * kPartials, v16{});
    int rows = 0;
    auto flush = [&] {
      for (int i = 0; i < groups * kPartials; i++) {
        for (int l = 0; l < 16; l++) acc[i] += part[i][l];
        part[i] = v16{};
      }
      rows = 0;
    };
#pragma omp for schedule(static)
    for (int64_t r = 0; r < R; r++) {
      for (int g = 0; g < groups; g++) {
        const float* bg = den + g * kRationalDen;
        const float b0 = std::fabs(bg[0]), b1 = std::fabs(bg[1]), b2 = std::fabs(bg[2]),
                    b3 = std::fabs(bg[3]);
        v16* P = part + g * kPartials;
        v16 s0 = P[0], s1 = P[1], s2 = P[2], s3 = P[3], s4 = P[4], s5 = P[5];
        v16 t1 = P[6], t2 = P[7], t3 = P[8], t4 = P[9];
        for (int64_t c = r * C + g * cpg; c < r * C + (g + 1) * cpg; c += 16) {
          v16 v, d;
          std::memcpy(&v, x + c, sizeof v);
          std::memcpy(&d, dy + c, sizeof d);
          const v16 av = v < 0.0f ? -v : v;
          const v16 sg = v < 0.0f ? v16{} - 1.0f : v16{} + 1.0f;  // sign(0) = +1, as upstream
          const v16 p = a0 + v * (a1 + v * (a2 + v * (a3 + v * (a4 + v * a5))));
          const v16 dp = a1 + v * (2.0f * a2 + v * (3.0f * a3 + v * (4.0f * a4 + v * 5.0f * a5)));
          const v16 q = 1.0f + av * (b0 + av * (b1 + av * (b2 + av * b3)));
          const v16 dq = sg * (b0 + av * (2.0f * b1 + av * (3.0f * b2 + av * 4.0f * b3)));
          const v16 iq = 1.0f / q, f = p * iq, gr = d * iq;
          v16 dxc = gr * (dp - f * dq);
          if (accumulate) {
            v16 old;
            std::memcpy(&old, dx + c, sizeof old);
            dxc += old;
          }
          std::memcpy(dx + c, &dxc, sizeof dxc);
          const v16 v2 = v * v, v3 = v2 * v;
          s0 += gr, s1 += gr * v, s2 += gr * v2, s3 += gr * v3, s4 += gr * v2 * v2;
          s5 += gr * v2 * v3;
          const v16 h = -gr * f, av2 = av * av;  // -dy P / Q^2
          t1 += h * av, t2 += h * av2, t3 += h * av2 * av, t4 += h * av2 * av2;
        }
        P[0] = s0, P[1] = s1, P[2] = s2, P[3] = s3, P[4] = s4, P[5] = s5;
        P[6] = t1, P[7] = t2, P[8] = t3, P[9] = t4;
      }
      if (++rows == kFlushRows) flush();
    }
    flush();
  });
  std::copy(sums, sums + groups * kPartials, totals);
}

}  // namespace

void rational_backward(float* dx, float* dnum, float* dden, const float* dy, const float* x,
                       const float* num, const float* den, int64_t R, int64_t C, int groups,
                       bool accumulate) {
  check_groups(C, groups);
  double* totals = thread_buffer<double, struct GroupTotals>(groups * kPartials);
  std::fill(totals, totals + groups * kPartials, 0.0);
  if ((C / groups) % 16 == 0)
    backward_groups_of_16(totals, dx, dy, x, num, den, R, C, groups, accumulate);
  else
    backward_any_group_size(totals, dx, dy, x, num, den, R, C, groups, accumulate);
  for (int g = 0; g < groups; g++) {
    const double* total = totals + g * kPartials;
    for (int i = 0; i < kRationalNum; i++) dnum[i] += static_cast<float>(total[i]);
    for (int i = 0; i < kRationalDen; i++) {
      const float b = den[g * kRationalDen + i];
      dden[g * kRationalDen + i] += static_cast<float>((b < 0.0f ? -1.0 : 1.0) * total[6 + i]);
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
