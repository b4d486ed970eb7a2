// Deterministic random numbers: xoshiro256** seeded through splitmix64. Every random decision in
// training (init, shuffling, augmentation, dropout) derives from (seed, purpose, counter), so a run
// resumed from a checkpoint draws exactly what the uninterrupted run would have drawn.
#pragma once

#include <cstdint>

namespace kat {

class Rng {
 public:
  explicit Rng(uint64_t seed = 0);
  // A generator for a sub-stream: Rng(seed).fork(purpose, counter) is reproducible.
  static Rng derive(uint64_t seed, uint64_t purpose, uint64_t counter = 0);

  uint64_t next_u64();
  uint32_t below(uint32_t n);                         // uniform in [0, n)
  float uniform();                                    // [0, 1)
  double uniform_double();                            // [0, 1)
  float normal();                                     // N(0, 1)
  float trunc_normal(float std, float lo, float hi);  // N(0, std^2) redrawn until in [lo, hi]

 private:
  uint64_t s_[4];
};

}  // namespace kat
