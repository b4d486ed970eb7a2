// Float buffers for activations and kernel inputs. One of 2 MiB or more is 2 MiB-aligned and asks
// Linux for transparent huge pages (madvise; Debian's default THP mode only gives them on
// request), as PyTorch's CPU allocator does under THP_MEM_ALLOC_ENABLE: a kernel that streams a
// long sequence's rows then walks 2 MiB pages instead of 4 KiB ones (docs/benchmarks.md:
// linear attention at 16K tokens). Smaller ones are 64-byte aligned.
#pragma once

#include <cstddef>
#include <new>
#include <vector>

namespace kat {

void* large_alloc(std::size_t bytes);  // throws std::bad_alloc
void large_free(void* p) noexcept;

template <class T>
struct LargeAllocator {
  using value_type = T;
  LargeAllocator() = default;
  template <class U>
  LargeAllocator(const LargeAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(large_alloc(n * sizeof(T))); }
  void deallocate(T* p, std::size_t) noexcept { large_free(p); }
  template <class U>
  bool operator==(const LargeAllocator<U>&) const noexcept {
    return true;
  }
};

using FloatBuffer = std::vector<float, LargeAllocator<float>>;

}  // namespace kat
