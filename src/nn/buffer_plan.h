// Activation memory planned once: a model names its buffers and their sizes (take), and they are
// laid out back to back in one allocation (allocate). Models re-plan only when a batch outgrows
// the plan, so a training step allocates nothing.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "kat/buffer.h"

namespace kat {

class BufferPlan {
 public:
  void operator()(float*& p, int64_t n) { fields_.push_back({&p, n}); }
  // Sizes `buffer` to the sum (zeroed) and points every taken pointer into it, each at a 64-byte
  // boundary (FloatBuffer's start is one).
  void allocate(FloatBuffer& buffer) const {
    int64_t total = 0;
    for (const auto& f : fields_) total += padded(f.second);
    buffer.assign(total, 0.0f);
    int64_t off = 0;
    for (const auto& f : fields_) *f.first = buffer.data() + off, off += padded(f.second);
  }

 private:
  static int64_t padded(int64_t n) { return (n + 15) / 16 * 16; }
  std::vector<std::pair<float**, int64_t>> fields_;
};

}  // namespace kat
