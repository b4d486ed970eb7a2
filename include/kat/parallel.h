// One thread pool for the whole engine: OpenMP's. OpenBLAS (the OpenMP build) shares it.
#pragma once

#include <omp.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace kat {

// Sets the threads used by kat's kernels and by BLAS; n <= 0 means all cores.
void set_num_threads(int n);
int num_threads();

// OpenMP threads that wait at a barrier spin for a long while by default (libgomp: 300000 spins).
// When anything else runs on the machine, a spinning thread burns the time slice its partner needs
// and a step gets up to 10x slower. A short spin costs nothing on an idle machine, but libgomp
// reads its settings before main, so programs call this first thing: unless the user chose a wait
// policy (OMP_WAIT_POLICY or GOMP_SPINCOUNT), it re-executes the program once with
// GOMP_SPINCOUNT=10000.
void use_short_openmp_spin(char** argv);

// Deterministic parallel reduction. body(acc) runs once on every thread of a parallel region
// (split the work inside it with `#pragma omp for`) and adds into that thread's own zeroed
// accumulator of `width` values; the accumulators are then summed in thread order, so the result
// is the same on every run with the same thread count, whichever thread finishes first.
template <class T, class Body>
std::vector<T> parallel_sum(int64_t width, Body&& body) {
  const int threads = num_threads();
  std::vector<T> parts(static_cast<std::size_t>(threads * width), T(0));
#pragma omp parallel num_threads(threads)
  body(parts.data() + omp_get_thread_num() * width);
  std::vector<T> total(parts.begin(), parts.begin() + width);
  for (int t = 1; t < threads; t++)
    for (int64_t i = 0; i < width; i++) total[i] += parts[t * width + i];
  return total;
}

}  // namespace kat
