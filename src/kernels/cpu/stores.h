// Streaming (non-temporal) stores, for outputs too large to stay in cache: a plain store that
// misses first reads the line it is about to overwrite (read for ownership); a streaming store
// writes around the cache and skips that read, a third of the traffic of writing a large output.
// AVX-512 or AVX on aligned rows; a plain copy anywhere else.
#pragma once

#include <algorithm>
#include <cstdint>
#if defined(__AVX__)
#include <immintrin.h>
#endif

namespace kat {

// Outputs from 16 MiB up are streamed: half the last-level cache of the smallest machines kat is
// measured on (32 MiB), so such an output would evict what the next op reads anyway (glibc's
// memcpy streams from 3/4 of the shared cache).
constexpr int64_t kStreamBytes = int64_t{16} << 20;

inline void stream_row(float* dst, const float* src, int64_t n) {
#if defined(__AVX512F__)
  if (reinterpret_cast<uintptr_t>(dst) % 64 == 0 && n % 16 == 0) {
    for (int64_t i = 0; i < n; i += 16) _mm512_stream_ps(dst + i, _mm512_loadu_ps(src + i));
    return;
  }
#elif defined(__AVX__)
  if (reinterpret_cast<uintptr_t>(dst) % 32 == 0 && n % 8 == 0) {
    for (int64_t i = 0; i < n; i += 8) _mm256_stream_ps(dst + i, _mm256_loadu_ps(src + i));
    return;
  }
#endif
  std::copy(src, src + n, dst);
}

// Streaming stores are weakly ordered: a thread fences after its last one, before others read.
inline void stream_fence() {
#if defined(__AVX__)
  _mm_sfence();
#endif
}

}  // namespace kat
