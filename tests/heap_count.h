// Counts the C++ heap allocations of the test binary (operator new is replaced in heap_count.cpp).
#pragma once

#include <cstdint>

namespace kat::testing {

// Number of operator new calls so far in this process.
int64_t heap_allocations();

}  // namespace kat::testing
