#include "kat/rng.h"

#include <cmath>

namespace kat {
namespace {

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

Rng::Rng(uint64_t seed) {
  for (auto& s : s_) s = splitmix64(seed);
}

Rng Rng::derive(uint64_t seed, uint64_t purpose, uint64_t counter) {
  uint64_t x = seed;
  uint64_t a = splitmix64(x) ^ (purpose * 0xd1b54a32d192ed03ULL);
  uint64_t b = splitmix64(a) ^ (counter * 0x8cb92ba72f3d8dd7ULL);
  return Rng(splitmix64(b));
}

uint64_t Rng::next_u64() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

uint32_t Rng::below(uint32_t n) { return static_cast<uint32_t>((next_u64() >> 32) * n >> 32); }

float Rng::uniform() { return static_cast<float>(next_u64() >> 40) * 0x1.0p-24f; }

double Rng::uniform_double() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

float Rng::normal() {
  // Box-Muller; one of the pair is discarded so that the stream position is simple to reason about.
  double u1 = uniform_double(), u2 = uniform_double();
  if (u1 < 1e-300) u1 = 1e-300;
  return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
}

float Rng::trunc_normal(float std, float lo, float hi) {
  for (;;) {
    float v = normal() * std;
    if (v >= lo && v <= hi) return v;
  }
}

}  // namespace kat
