// FloatBuffer and BufferPlan: every planned pointer starts a 64-byte line, large buffers start a
// 2 MiB page, and the plan's fields neither overlap nor leave the buffer.
#include <gtest/gtest.h>

#include <cstdint>

#include "kat/buffer.h"
#include "nn/buffer_plan.h"

namespace kat {
namespace {

uintptr_t address(const float* p) { return reinterpret_cast<uintptr_t>(p); }

TEST(Buffer, PlannedPointersAreAlignedAndDisjoint) {
  float *a = nullptr, *b = nullptr, *c = nullptr;
  BufferPlan take;
  take(a, 3), take(b, 17), take(c, 1);
  FloatBuffer buf;
  take.allocate(buf);
  for (const float* p : {a, b, c}) EXPECT_EQ(address(p) % 64, 0u);
  EXPECT_GE(b, a + 3);
  EXPECT_GE(c, b + 17);
  EXPECT_LE(c + 1, buf.data() + buf.size());
  for (float x : buf) EXPECT_EQ(x, 0.0f);  // zeroed
}

TEST(Buffer, LargeBuffersStartAHugePage) {
  FloatBuffer big(std::size_t{3} << 20), small(100);  // 12 MiB, 400 bytes
  EXPECT_EQ(address(big.data()) % (2u << 20), 0u);
  EXPECT_EQ(address(small.data()) % 64, 0u);
  big[big.size() - 1] = 1.0f;  // all of it is usable
  EXPECT_EQ(big.back(), 1.0f);
}

}  // namespace
}  // namespace kat
