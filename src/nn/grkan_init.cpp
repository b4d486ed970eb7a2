#include <cmath>
#include <limits>

#include "kat/error.h"
#include "kat/grkan.h"

namespace kat {
namespace {

constexpr int kNum = 6, kDen = 4, kCoefs = kNum + kDen;

RationalCoefs tabled(const std::string& mode) {
  if (mode == "identity") return {{0, 1, 0, 0, 0, 0}, {0, 0, 0, 0}};
  if (mode == "swish" || mode == "silu")
    return {{3.054879741161051e-07, 0.5000007853744493, 0.24999783422824703, 0.05326628273219478,
             0.005803034571292244, 0.0002751961022402342},
            {-4.111554955950634e-06, 0.10652899335007572, -1.2690007399796238e-06,
             0.0005502331264140556}};
  if (mode == "gelu_old")
    return {
        {-0.0012423594497499122, 0.5080497063245629, 0.41586363182937475, 0.13022718688035761,
         0.024355900098993424, 0.00290283948155535},
        {-0.06675015696494944, 0.17927646217001553, 0.03746682605496631, 1.6561610853276082e-10}};
  if (mode == "tanh")
    return {
        {-1.0804622559204184e-08, 1.0003008043819048, -2.5878199375289335e-08, 0.09632129918392647,
         3.4775841628196104e-09, 0.0004255709234726337},
        {-0.0013027181209176277, 0.428349017422072, 1.4524304083061898e-09, 0.010796648111337176}};
  if (mode == "sigmoid")
    return {
        {0.4999992534599381, 0.25002157564685185, 0.14061924500301096, 0.049420492431596394,
         0.00876714851885483, 0.0006442412789159799},
        {2.1694506382753683e-09, 0.28122766100417684, 1.0123620714203357e-05, 0.017531988049946}};
  return {};
}

bool is_tabled(const std::string& mode) {
  return mode == "identity" || mode == "swish" || mode == "silu" || mode == "gelu_old" ||
         mode == "tanh" || mode == "sigmoid";
}

// Solves the n x n system A x = b in place (Gaussian elimination with partial pivoting).
bool solve(std::vector<double>& A, std::vector<double>& b, int n) {
  for (int c = 0; c < n; c++) {
    int piv = c;
    for (int r = c + 1; r < n; r++)
      if (std::fabs(A[r * n + c]) > std::fabs(A[piv * n + c])) piv = r;
    if (std::fabs(A[piv * n + c]) < 1e-300) return false;
    if (piv != c) {
      for (int k = 0; k < n; k++) std::swap(A[c * n + k], A[piv * n + k]);
      std::swap(b[c], b[piv]);
    }
    for (int r = c + 1; r < n; r++) {
      const double f = A[r * n + c] / A[c * n + c];
      for (int k = c; k < n; k++) A[r * n + k] -= f * A[c * n + k];
      b[r] -= f * b[c];
    }
  }
  for (int c = n - 1; c >= 0; c--) {
    for (int k = c + 1; k < n; k++) b[c] -= A[c * n + k] * b[k];
    b[c] /= A[c * n + c];
  }
  return true;
}

double sse(const RationalCoefs& k, const std::vector<double>& xs, const std::vector<double>& ys) {
  double s = 0;
  for (size_t i = 0; i < xs.size(); i++) {
    const double e = rational_eval(k, xs[i]) - ys[i];
    s += e * e;
  }
  return s;
}

// Levenberg-Marquardt on the sum of squared residuals F(x_i) - y_i over the 10 coefficients.
RationalCoefs levenberg_marquardt(RationalCoefs k, const std::vector<double>& xs,
                                  const std::vector<double>& ys) {
  double lambda = 1e-3, err = sse(k, xs, ys);
  for (int it = 0; it < 500; it++) {
    std::vector<double> JtJ(kCoefs * kCoefs, 0.0), Jtr(kCoefs, 0.0);
    for (size_t i = 0; i < xs.size(); i++) {
      const double x = xs[i], ax = std::fabs(x);
      double p = 0, q = 1, J[kCoefs];
      for (int n = 0; n < kNum; n++) p += k.num[n] * std::pow(x, n);
      for (int d = 0; d < kDen; d++) q += std::fabs(k.den[d]) * std::pow(ax, d + 1);
      for (int n = 0; n < kNum; n++) J[n] = std::pow(x, n) / q;
      for (int d = 0; d < kDen; d++)
        J[kNum + d] = -p / (q * q) * (k.den[d] < 0 ? -1.0 : 1.0) * std::pow(ax, d + 1);
      const double r = p / q - ys[i];
      for (int a = 0; a < kCoefs; a++) {
        Jtr[a] += J[a] * r;
        for (int b = 0; b < kCoefs; b++) JtJ[a * kCoefs + b] += J[a] * J[b];
      }
    }
    bool improved = false;
    for (int tries = 0; tries < 20 && !improved; tries++) {
      std::vector<double> A = JtJ, g = Jtr;
      for (int a = 0; a < kCoefs; a++) A[a * kCoefs + a] += lambda * (JtJ[a * kCoefs + a] + 1e-12);
      if (solve(A, g, kCoefs)) {
        RationalCoefs t = k;
        for (int n = 0; n < kNum; n++) t.num[n] -= g[n];
        for (int d = 0; d < kDen; d++) t.den[d] -= g[kNum + d];
        const double e = sse(t, xs, ys);
        if (e < err) {
          improved = true;
          const bool converged = err - e < 1e-15 * (1 + err);
          k = t, err = e, lambda = std::max(lambda / 3, 1e-12);
          if (converged) return k;
        }
      }
      if (!improved) lambda *= 4;
    }
    if (!improved) break;
  }
  return k;
}

}  // namespace

double rational_eval(const RationalCoefs& k, double x) {
  const double ax = std::fabs(x);
  double p = 0, q = 1;
  for (int n = kNum - 1; n >= 0; n--) p = p * x + k.num[n];
  double s = 0;
  for (int d = kDen - 1; d >= 0; d--) s = (s + std::fabs(k.den[d])) * ax;
  q += s;
  return p / q;
}

std::vector<std::string> activation_names() {
  return {"identity", "relu", "gelu", "swish", "silu", "tanh", "sigmoid"};
}

double activation(const std::string& name, double x) {
  if (name == "identity") return x;
  if (name == "relu") return x > 0 ? x : 0;
  if (name == "gelu") return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
  if (name == "swish" || name == "silu") return x / (1 + std::exp(-x));
  if (name == "tanh") return std::tanh(x);
  if (name == "sigmoid") return 1 / (1 + std::exp(-x));
  std::string known;
  for (const auto& n : activation_names()) known += (known.empty() ? "" : ", ") + n;
  fail("unknown activation '", name, "' (known: ", known, ")");
}

RationalCoefs rational_init(const std::string& mode) {
  if (is_tabled(mode)) return tabled(mode);
  activation(mode, 0.0);  // names the known ones when mode is unknown
  return fit_rational([&](double x) { return activation(mode, x); }).coefs;
}

RationalFit fit_rational(const std::function<double(double)>& target, double lo, double hi) {
  constexpr int kPoints = 1201;
  std::vector<double> xs(kPoints), ys(kPoints);
  for (int i = 0; i < kPoints; i++) {
    xs[i] = lo + (hi - lo) * i / (kPoints - 1);
    ys[i] = target(xs[i]);
  }
  RationalFit best;
  double best_err = std::numeric_limits<double>::infinity();
  for (const char* start : {"gelu_old", "swish", "tanh", "sigmoid", "identity"}) {
    const RationalCoefs k = levenberg_marquardt(tabled(start), xs, ys);
    const double e = sse(k, xs, ys);
    if (e < best_err) best_err = e, best.coefs = k;
  }
  for (int i = 0; i < kPoints; i++) {
    const double e = std::fabs(rational_eval(best.coefs, xs[i]) - ys[i]);
    best.max_error = std::max(best.max_error, e);
    best.rms_error += e * e;
  }
  best.rms_error = std::sqrt(best.rms_error / kPoints);
  return best;
}

double rational_second_moment(const RationalCoefs& k) {
  // Simpson's rule on [-12, 12]; the Gaussian weight beyond is below 1e-31.
  constexpr int kSteps = 24000;
  constexpr double lo = -12, hi = 12, h = (hi - lo) / kSteps;
  double s = 0;
  for (int i = 0; i <= kSteps; i++) {
    const double x = lo + i * h, f = rational_eval(k, x);
    const double w = (i == 0 || i == kSteps) ? 1 : (i % 2 ? 4 : 2);
    s += w * f * f * std::exp(-0.5 * x * x);
  }
  return s * h / 3 / std::sqrt(2 * M_PI);
}

}  // namespace kat
