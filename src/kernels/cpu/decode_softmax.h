// One query's softmax attention over keys and values that come in runs, each with its own logit
// offset: attention_decode has one run (the cache), combiner_decode two (the own span's keys, then
// the span summaries with + log(span)). Shared so the generation step of both is one loop.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>

#include "vec_math.h"

namespace kat {

// n rows of keys and values (row stride C, heads contiguous) and the offset added to their logits.
struct KeyRun {
  const float *k, *v;
  int64_t n;
  float bias;
};

// out[C] = softmax(q k^T / sqrt(hd) + bias) v per head over every run in order; scratch holds the
// runs' total length.
inline void decode_softmax(float* out, float* scratch, const float* q,
                           std::initializer_list<KeyRun> runs, int64_t C, int64_t H) {
  const int64_t hd = C / H;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  int64_t n = 0;
  for (const KeyRun& r : runs) n += r.n;
  for (int64_t h = 0; h < H; h++) {
    const float* qh = q + h * hd;
    float mx = -std::numeric_limits<float>::infinity();
    int64_t j = 0;
    for (const KeyRun& r : runs)
      for (int64_t i = 0; i < r.n; i++, j++) {
        const float* kj = r.k + i * C + h * hd;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int64_t d = 0; d < hd; d++) s += qh[d] * kj[d];
        scratch[j] = s * scale + r.bias;
        mx = std::max(mx, scratch[j]);
      }
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < n; i++) {
      scratch[i] = exp_approx(scratch[i] - mx);
      sum += scratch[i];
    }
    float* oh = out + h * hd;
    std::fill(oh, oh + hd, 0.0f);
    j = 0;
    for (const KeyRun& r : runs)
      for (int64_t i = 0; i < r.n; i++, j++) {
        const float p = scratch[j] / sum;
        const float* vj = r.v + i * C + h * hd;
#pragma omp simd
        for (int64_t d = 0; d < hd; d++) oh[d] += p * vj[d];
      }
  }
}

}  // namespace kat
