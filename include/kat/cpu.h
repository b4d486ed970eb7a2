// The instruction set kat was built for (CMake KAT_ARCH) against the CPU it runs on.
#pragma once

#include <string>

namespace kat {

// Vector extensions this binary was compiled to use, e.g. "AVX-512 + AVX2 + FMA" or "SSE2".
std::string build_instruction_set();

// Throws kat::Error naming what is missing when the CPU lacks an extension the build uses, so a
// binary built for another machine stops with a message instead of an illegal instruction.
void require_build_cpu_features();

}  // namespace kat
