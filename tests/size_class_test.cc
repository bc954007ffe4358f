// Tests of the heap's size classes (lib/malloc/size_class.h): every request size maps to
// the smallest class that holds it, the classes keep their alignment and waste bounds, and
// the multiply-shift division by a class size is exact over a whole span.
#include "malloc/size_class.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <set>

namespace uvmem::internal {
namespace {

TEST(SizeClassTest, BlocksAreIncreasingMultiplesOf16) {
  std::uint32_t previous = 0;
  for (int c = 0; c < kNumSizeClasses; ++c) {
    const std::uint32_t block = ClassBlockBytes(c);
    EXPECT_EQ(block % 16, 0u) << "class " << c;
    EXPECT_GT(block, previous) << "class " << c;
    previous = block;
  }
  EXPECT_EQ(ClassBlockBytes(0), 16u);
  EXPECT_EQ(ClassBlockBytes(kNumSizeClasses - 1), kMaxSmallBytes);
}

TEST(SizeClassTest, EverySizeMapsToTheSmallestClassThatHoldsIt) {
  int previous_class = 0;
  for (std::size_t size = 1; size <= kMaxSmallBytes; ++size) {
    const int c = SizeClassOf(size);
    ASSERT_GE(c, 0) << "size " << size;
    ASSERT_LT(c, kNumSizeClasses) << "size " << size;
    const std::uint32_t block = ClassBlockBytes(c);
    ASSERT_GE(block, size) << "size " << size << " class " << c;
    if (c > 0) {
      ASSERT_LT(ClassBlockBytes(c - 1), size) << "size " << size << " class " << c;
    }
    ASSERT_EQ(block % 16, 0u) << "size " << size;
    // Monotonic: a larger request never gets a smaller class.
    ASSERT_GE(c, previous_class) << "size " << size;
    previous_class = c;
    if (size > 128) {
      // Waste above the request is at most 25 % of it.
      ASSERT_LE(static_cast<double>(block - size), 0.25 * static_cast<double>(size))
          << "size " << size << " block " << block;
    }
  }
  EXPECT_EQ(SizeClassOf(0), SizeClassOf(1));  // 0 is served as 1
}

TEST(SizeClassTest, EveryClassIsReachedAndIsItsOwnBlockSize) {
  std::set<int> seen;
  for (std::size_t size = 1; size <= kMaxSmallBytes; ++size) seen.insert(SizeClassOf(size));
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(kNumSizeClasses));
  for (int c = 0; c < kNumSizeClasses; ++c) {
    EXPECT_EQ(SizeClassOf(ClassBlockBytes(c)), c) << "class " << c;
    if (c + 1 < kNumSizeClasses) {
      EXPECT_EQ(SizeClassOf(ClassBlockBytes(c) + 1), c + 1) << "class " << c;
    }
  }
}

TEST(SizeClassTest, SpansHoldAtLeastFourBlocks) {
  for (int c = 0; c < kNumSizeClasses; ++c) {
    const std::uint64_t span_bytes = std::uint64_t{ClassSpanSlices(c)} << kSliceShift;
    EXPECT_GE(span_bytes / ClassBlockBytes(c), 4u) << "class " << c;
    EXPECT_TRUE(ClassSpanSlices(c) == 1 || ClassSpanSlices(c) == 8) << "class " << c;
  }
}

// DivideByClass must equal a true division for every offset inside the largest span
// (8 slices = 512 KiB): exhaustive over every offset, for every class.
TEST(SizeClassTest, ReciprocalDivisionIsExactOverASpan) {
  constexpr std::uint64_t kSpanBytes = std::uint64_t{8} << kSliceShift;  // 512 KiB
  for (int c = 0; c < kNumSizeClasses; ++c) {
    const std::uint64_t block = ClassBlockBytes(c);
    const std::uint64_t reciprocal = ClassReciprocal(c);
    std::uint64_t mismatches = 0;
    std::uint64_t first_bad = 0;
    for (std::uint64_t offset = 0; offset < kSpanBytes; ++offset) {
      if (DivideByClass(offset, reciprocal) != offset / block) {
        if (mismatches++ == 0) first_bad = offset;
      }
    }
    EXPECT_EQ(mismatches, 0u) << "class " << c << " block " << block << " first bad offset "
                              << first_bad;
  }
}

// The block boundaries and their neighbours, up to the header's promised 2^20.
TEST(SizeClassTest, ReciprocalDivisionAtBlockBoundaries) {
  constexpr std::uint64_t kLimit = std::uint64_t{1} << 20;
  for (int c = 0; c < kNumSizeClasses; ++c) {
    const std::uint64_t block = ClassBlockBytes(c);
    const std::uint64_t reciprocal = ClassReciprocal(c);
    for (std::uint64_t m = block; m < kLimit; m += block) {
      for (std::uint64_t offset : {m - 1, m, m + 1}) {
        if (offset >= kLimit) continue;
        ASSERT_EQ(DivideByClass(offset, reciprocal), offset / block)
            << "class " << c << " offset " << offset;
      }
    }
  }
}

}  // namespace
}  // namespace uvmem::internal
