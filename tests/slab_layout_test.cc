// Tests of the slab geometry: SLUB's order calculation, the 1/8 waste bound, and the
// normal, constructor and debug slot layouts.
#include "slab/slab_layout.h"

#include <gtest/gtest.h>

#include <vector>

namespace uvmem::internal {
namespace {

TEST(SlabLayoutTest, DefaultMinObjectsIsSlubs) {
  EXPECT_EQ(DefaultMinObjects(1), 8u);   // 4 * (fls(1) + 1)
  EXPECT_EQ(DefaultMinObjects(2), 12u);  // 4 * (fls(2) + 1)
  EXPECT_EQ(DefaultMinObjects(4), 16u);
  EXPECT_EQ(DefaultMinObjects(64), 32u);
  EXPECT_EQ(DefaultMinObjects(0), 8u);
}

TEST(SlabLayoutTest, DefaultMinPartialIsClamped) {
  EXPECT_EQ(DefaultMinPartial(8), 5);
  EXPECT_EQ(DefaultMinPartial(8192), 6);
  EXPECT_EQ(DefaultMinPartial(std::size_t{1} << 22), 10);
}

// Every slot size up to 64 KiB: one object at least, waste at most 1/8 of the slab, and
// no smaller order would do as well (the order is the first that qualifies).
TEST(SlabLayoutTest, WasteStaysUnderOneEighth) {
  for (unsigned min_objects : {1u, 8u, 12u, 32u}) {
    for (std::size_t slot = 8; slot <= 64 * 1024; slot += 8) {
      const std::optional<Order> order = CalculateSlabOrder(slot, min_objects);
      ASSERT_TRUE(order.has_value()) << slot;
      ASSERT_TRUE(order->valid()) << slot;
      const std::size_t bytes = order->bytes();
      ASSERT_GE(bytes / slot, 1u) << slot;
      ASSERT_LE(bytes % slot, bytes / 8) << "slot " << slot << " order " << order->value;
      if (order->value > kSlabMaxPreferredOrder) {
        // Only when no preferred order qualifies.
        for (int o = 0; o <= kSlabMaxPreferredOrder; ++o) {
          const std::size_t b = Order{o}.bytes();
          EXPECT_TRUE(b < slot || b % slot > b / 8) << "slot " << slot << " order " << o;
        }
      }
    }
  }
}

TEST(SlabLayoutTest, KmallocSizesGetSlubsOrdersOnTwoCpus) {
  const std::vector<std::size_t> sizes = {8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048,
                                          4096, 8192};
  const std::vector<int> orders = {0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 3, 3};
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    EXPECT_EQ(CalculateSlabOrder(sizes[i], DefaultMinObjects(2))->value, orders[i]) << sizes[i];
  }
}

TEST(SlabLayoutTest, LargeSlotsGoBeyondOrderThreeOrGiveUp) {
  // 20000: order 3 wastes 39%; order 4 wastes 8.4%.
  EXPECT_EQ(CalculateSlabOrder(20000, 12)->value, 4);
  // 3 MiB: only order 10 holds one; its waste (25%) cannot be helped.
  EXPECT_EQ(CalculateSlabOrder(3 << 20, 12)->value, kMaxOrder);
  EXPECT_EQ(CalculateSlabOrder(Order{kMaxOrder}.bytes(), 12)->value, kMaxOrder);
  EXPECT_FALSE(CalculateSlabOrder(Order{kMaxOrder}.bytes() + 8, 12).has_value());
  EXPECT_FALSE(CalculateSlabOrder(0, 12).has_value());
}

TEST(SlabLayoutTest, RejectsBadSizeAndAlignment) {
  EXPECT_EQ(ComputeSlabLayout(0, 8, false, false, 12).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ComputeSlabLayout(64, 3, false, false, 12).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ComputeSlabLayout(64, 8192, false, false, 12).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ComputeSlabLayout(Order{kMaxOrder}.bytes() + 1, 8, false, false, 12).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Fits alone, not with debug redzones.
  EXPECT_TRUE(ComputeSlabLayout(Order{kMaxOrder}.bytes(), 8, false, false, 12).ok());
  EXPECT_EQ(ComputeSlabLayout(Order{kMaxOrder}.bytes(), 8, true, false, 12).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SlabLayoutTest, NormalLayoutOverlaysTheFreePointer) {
  absl::StatusOr<SlabLayout> l = ComputeSlabLayout(13, 0, false, false, 12);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->alignment_bytes, 8u);
  EXPECT_EQ(l->slot_bytes, 16u);
  EXPECT_EQ(l->object_offset_bytes, 0u);
  EXPECT_EQ(l->free_pointer_offset_bytes, 0u);
  EXPECT_EQ(l->objects_per_slab, 256u);
  EXPECT_EQ(l->waste_bytes, 0u);
  EXPECT_FALSE(l->poison);
  // Tiny objects still hold a free pointer; small alignments are raised to 8.
  l = ComputeSlabLayout(1, 1, false, false, 12);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->slot_bytes, 8u);
  EXPECT_EQ(l->alignment_bytes, 8u);
  l = ComputeSlabLayout(100, 64, false, false, 12);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->slot_bytes, 128u);
}

TEST(SlabLayoutTest, ConstructorMovesTheFreePointerOutOfTheObject) {
  absl::StatusOr<SlabLayout> l = ComputeSlabLayout(24, 8, false, true, 12);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->free_pointer_offset_bytes, 24u);
  EXPECT_EQ(l->slot_bytes, 32u);
}

TEST(SlabLayoutTest, DebugLayoutHasRedzonesAroundAlignedObjects) {
  for (std::size_t align : {8u, 16u, 64u, 4096u}) {
    for (std::size_t size : {1u, 8u, 13u, 100u, 4096u}) {
      absl::StatusOr<SlabLayout> l = ComputeSlabLayout(size, align, true, false, 12);
      ASSERT_TRUE(l.ok()) << l.status();
      EXPECT_TRUE(l->debug);
      EXPECT_TRUE(l->poison);
      EXPECT_EQ(l->slot_bytes % align, 0u);
      EXPECT_EQ(l->object_offset_bytes % align, 0u);
      EXPECT_GE(l->object_offset_bytes, kRedzoneBytes);
      EXPECT_GE(l->red_right_bytes, kRedzoneBytes);
      EXPECT_EQ(l->free_pointer_offset_bytes, size + l->red_right_bytes);
      EXPECT_EQ(l->free_pointer_offset_bytes % 8, 0u);
      EXPECT_EQ(l->tag_offset_bytes, l->free_pointer_offset_bytes + 8);
      EXPECT_LE(l->object_offset_bytes + l->tag_offset_bytes + 8, l->slot_bytes);
    }
  }
  // A constructor turns poisoning off (it would undo the constructor), not redzones.
  absl::StatusOr<SlabLayout> l = ComputeSlabLayout(64, 8, true, true, 12);
  ASSERT_TRUE(l.ok());
  EXPECT_TRUE(l->debug);
  EXPECT_FALSE(l->poison);
}

}  // namespace
}  // namespace uvmem::internal
