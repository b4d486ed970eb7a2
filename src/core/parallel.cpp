#include "kat/parallel.h"

#include <omp.h>
#include <unistd.h>

#include <cstdlib>

extern "C" void openblas_set_num_threads(int);

namespace kat {

void set_num_threads(int n) {
  if (n <= 0) n = omp_get_num_procs();
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int num_threads() { return omp_get_max_threads(); }

void use_short_openmp_spin(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT")) return;
  ::setenv("GOMP_SPINCOUNT", "10000", 1);
  ::execv("/proc/self/exe", argv);  // returns only on failure: then run with the defaults
}

}  // namespace kat
