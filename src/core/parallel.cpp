#include "kat/parallel.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

#include "kat/distributed.h"

extern "C" void openblas_set_num_threads(int);

namespace kat {

void set_num_threads(int n) {
  if (n <= 0) {
    // All cores this process may use; ranks of a data-parallel run that share a machine without
    // being bound to their own cores split them.
    n = omp_get_num_procs();
    const int ranks = dist::local_size();
    if (ranks > 1 && n >= static_cast<int>(std::thread::hardware_concurrency()))
      n = std::max(1, n / ranks);
  }
  omp_set_num_threads(n);
  // One level: a parallel region inside another (a kernel's loops inside for_each_batch_row's
  // lanes) runs on the thread that meets it.
  omp_set_max_active_levels(1);
  openblas_set_num_threads(n);
}

int num_threads() { return omp_get_max_threads(); }

void use_short_openmp_spin(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT")) return;
  ::setenv("GOMP_SPINCOUNT", "10000", 1);
  ::execv("/proc/self/exe", argv);  // returns only on failure: then run with the defaults
}

}  // namespace kat
