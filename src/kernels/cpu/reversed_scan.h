// What the recurrent mixers (gla, delta) share for their bidirectional form: the sequence is
// scanned once in time order and once reversed, in contiguous per-head copies; the reversed
// scan's output lands on the rows it came from.
#pragma once

#include <algorithm>
#include <cstdint>

namespace kat {

// out's head rows (stride C) = o [T, hd], the first scan's output, or += the reversed scan's.
inline void store_scan_output(float* out, const float* o, int64_t T, int64_t C, int64_t hd,
                              bool reversed) {
  for (int64_t t = 0; t < T; t++) {
    const float* ot = o + t * hd;
    if (reversed) {
      float* dst = out + (T - 1 - t) * C;
#pragma omp simd
      for (int64_t c = 0; c < hd; c++) dst[c] += ot[c];
    } else {
      std::copy(ot, ot + hd, out + t * C);
    }
  }
}

}  // namespace kat
