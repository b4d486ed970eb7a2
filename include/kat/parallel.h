// One thread pool for the whole engine: OpenMP's. OpenBLAS (the OpenMP build) shares it.
#pragma once

#include <cstdint>

namespace kat {

// Sets the threads used by kat's kernels and by BLAS; n <= 0 means all cores.
void set_num_threads(int n);
int num_threads();

}  // namespace kat
