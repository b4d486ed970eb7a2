#include "kat/buffer.h"

#include <cstdlib>

#ifdef __linux__
#include <sys/mman.h>
#endif

namespace kat {

namespace {
constexpr std::size_t kHugePage = std::size_t{2} << 20, kLine = 64;
}

void* large_alloc(std::size_t bytes) {
  const std::size_t align = bytes >= kHugePage ? kHugePage : kLine;
  const std::size_t size = (bytes + align - 1) / align * align;  // aligned_alloc's rule
  void* p = std::aligned_alloc(align, size == 0 ? align : size);
  if (!p) throw std::bad_alloc();
#ifdef __linux__
  if (align == kHugePage) madvise(p, size, MADV_HUGEPAGE);  // a hint: no huge pages is fine
#endif
  return p;
}

void large_free(void* p) noexcept { std::free(p); }

}  // namespace kat
