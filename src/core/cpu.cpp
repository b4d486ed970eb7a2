#include "kat/cpu.h"

#include "kat/error.h"

namespace kat {

std::string build_instruction_set() {
  std::string s;
#ifdef __AVX512F__
  s += "AVX-512 + ";
#endif
#ifdef __AVX2__
  s += "AVX2 + ";
#endif
#ifdef __FMA__
  s += "FMA + ";
#endif
  return s.empty() ? "SSE2" : s.substr(0, s.size() - 3);
}

// Compiled for the x86-64 baseline whatever KAT_ARCH says: it runs before anything wider may.
__attribute__((target("arch=x86-64"))) void require_build_cpu_features() {
  __builtin_cpu_init();
  const char* missing = nullptr;
#ifdef __AVX512F__
  if (!__builtin_cpu_supports("avx512f")) missing = "AVX-512";
#endif
#ifdef __AVX2__
  if (!__builtin_cpu_supports("avx2")) missing = "AVX2";
#endif
#ifdef __FMA__
  if (!__builtin_cpu_supports("fma")) missing = "FMA";
#endif
  check(missing == nullptr, "this kat was built for a CPU with ", missing ? missing : "",
        " and this CPU has none; rebuild on this machine (scripts/build) or configure with "
        "-DKAT_ARCH=avx2 or -DKAT_ARCH=portable");
}

}  // namespace kat
