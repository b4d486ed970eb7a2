// Attention weights of one example, written out from a block's q and k (double sums): the matrix
// the tiled kernels never form, pooled to a size a page can hold.
#include <algorithm>
#include <cmath>

#include "kat/error.h"
#include "kat/kernels.h"
#include "kat/report.h"

namespace kat {

bool has_attention_map(Mixer m) {
  return m == Mixer::Softmax || m == Mixer::Local || m == Mixer::Linear;
}

std::vector<double> attention_map(const float* qkv, int64_t T, int64_t C, int64_t H, int64_t head,
                                  Mixer mixer, bool causal, int64_t window, int64_t max_cells,
                                  int64_t& n) {
  check(has_attention_map(mixer), "the ", mixer_name(mixer), " mixer has no attention matrix");
  check(T > 0 && H > 0 && C % H == 0 && head >= 0 && head < H && max_cells > 0,
        "attention_map: head ", head, " of ", H, " over ", C, " channels, ", T, " tokens");
  n = std::min(T, max_cells);
  // Cell b covers tokens [first[b], first[b + 1]); cell_of maps a token to its cell.
  std::vector<int64_t> first(n + 1), cell_of(T);
  for (int64_t b = 0; b <= n; b++) first[b] = b * T / n;
  for (int64_t b = 0; b < n; b++)
    for (int64_t j = first[b]; j < first[b + 1]; j++) cell_of[j] = b;

  const int64_t hd = C / H;
  const AttentionMask mask(causal, mixer == Mixer::Local ? window : 0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  auto phi = [](double x) { return x > 0 ? x + 1 : std::exp(x); };  // elu + 1
  std::vector<double> out(static_cast<size_t>(n * n), 0.0), s(T);
  for (int64_t i = 0; i < T; i++) {
    const float* q = qkv + i * 3 * C + head * hd;
    const int64_t lo = mask.first_key(i), hi = mask.end_key(i, T);
    double top = -1e300, sum = 0;
    for (int64_t j = lo; j < hi; j++) {
      const float* k = qkv + j * 3 * C + C + head * hd;
      double dot = 0;
      for (int64_t c = 0; c < hd; c++)
        dot += mixer == Mixer::Linear ? phi(q[c]) * phi(k[c]) : double{q[c]} * k[c];
      s[j] = mixer == Mixer::Linear ? dot : dot * scale;
      top = std::max(top, s[j]);
    }
    if (mixer != Mixer::Linear)
      for (int64_t j = lo; j < hi; j++) s[j] = std::exp(s[j] - top);
    for (int64_t j = lo; j < hi; j++) sum += s[j];
    const double norm = mixer == Mixer::Linear ? sum + 1e-6 : sum;  // as the kernels divide
    double* row = out.data() + cell_of[i] * n;
    for (int64_t j = lo; j < hi; j++) row[cell_of[j]] += s[j] / norm;
  }
  for (int64_t a = 0; a < n; a++)
    for (int64_t b = 0; b < n; b++)
      out[a * n + b] /= static_cast<double>((first[a + 1] - first[a]) * (first[b + 1] - first[b]));
  return out;
}

}  // namespace kat
