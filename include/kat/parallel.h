// One thread pool for the whole engine: OpenMP's. OpenBLAS (the OpenMP build) shares it.
#pragma once

#include <omp.h>

#include <algorithm>
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

// A buffer of at least n values that belongs to the calling thread and keeps its memory between
// calls, so a kernel run again on the same shapes allocates nothing (memory is planned by use).
// Tag tells apart the buffers of different call sites; the contents on return are whatever the
// last user left.
template <class T, class Tag>
T* thread_buffer(std::size_t n) {
  thread_local std::vector<T> buffer;
  if (buffer.size() < n) buffer.resize(n);
  return buffer.data();
}

// How a kernel over a batch of sequences splits its work: one batch row per thread at a time when
// the batch has at least as many rows as there are threads (lanes = threads; each lane needs its
// own scratch), else one row after another with the threads inside the row, over its heads and
// positions (lanes = 1: long sequences, small batches).
inline int64_t batch_lanes(int64_t B) {
  const int64_t threads = num_threads();
  return threads > 1 && B >= threads ? threads : 1;
}

// Threads that work inside one lane, each with its own tiles of scratch: all of them when there is
// one lane, else the lane's own thread.
inline int64_t threads_in_lane(int64_t lanes) { return lanes == 1 ? num_threads() : 1; }

// Runs body(b, lane) for every batch row b in [0, B) as batch_lanes(B) says. Inside a lane the
// kernel's own parallel loops run on that one thread (kat keeps one active level of parallelism,
// set_num_threads), so a row computes the same values either way.
template <class Body>
void for_each_batch_row(int64_t B, Body&& body) {
  const int64_t lanes = batch_lanes(B);
  if (lanes == 1) {
    for (int64_t b = 0; b < B; b++) body(b, int64_t{0});
    return;
  }
#pragma omp parallel for schedule(dynamic) num_threads(static_cast <int>(lanes))
  for (int64_t b = 0; b < B; b++) body(b, static_cast<int64_t>(omp_get_thread_num()));
}

// Deterministic parallel reduction. body(acc) runs once on every thread of a parallel region
// (split the work inside it with `#pragma omp for`) and adds into that thread's own zeroed
// accumulator of `width` values; the accumulators are then summed in thread order, so the result
// is the same on every run with the same thread count, whichever thread finishes first. Returns
// the `width` sums, valid until this call site runs again on this thread.
template <class T, class Body>
const T* parallel_sum(int64_t width, Body&& body) {
  const int threads = num_threads();
  T* parts = thread_buffer<T, Body>(static_cast<std::size_t>(threads * width));
  std::fill(parts, parts + threads * width, T(0));
#pragma omp parallel num_threads(threads)
  body(parts + omp_get_thread_num() * width);
  for (int t = 1; t < threads; t++)
    for (int64_t i = 0; i < width; i++) parts[i] += parts[t * width + i];
  return parts;
}

}  // namespace kat
