// Tests of BuddyAllocator alone: split, merge, alignment, and a randomized run against a
// reference model of which frames are taken.
#include "frames/buddy_allocator.h"

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <vector>

namespace uvmem::internal {
namespace {

class BuddyTest : public ::testing::Test {
 protected:
  void Make(std::uint64_t max_blocks, bool flagged = false, std::uint16_t initial_flags = 0) {
    frames_ = max_blocks * BuddyAllocator::kMaxBlockFrames;
    descriptors_ = std::make_unique<FrameDescriptor[]>(frames_);
    buddy_ = std::make_unique<BuddyAllocator>(descriptors_.get(), frames_, flagged,
                                              initial_flags);
  }
  // Descriptors [from, frames_) are still exactly as constructed (never written).
  bool UntouchedFrom(std::uint64_t from) const {
    const FrameDescriptor fresh;
    for (std::uint64_t f = from; f < frames_; ++f) {
      if (std::memcmp(&descriptors_[f], &fresh, sizeof fresh) != 0) return false;
    }
    return true;
  }
  std::uint64_t frames_ = 0;
  std::unique_ptr<FrameDescriptor[]> descriptors_;
  std::unique_ptr<BuddyAllocator> buddy_;
};

TEST_F(BuddyTest, StartsAsMaxOrderBlocks) {
  Make(3);
  EXPECT_EQ(buddy_->free_frames(), frames_);
  EXPECT_EQ(buddy_->free_blocks(Order{kMaxOrder}), 3u);
  for (int o = 0; o < kMaxOrder; ++o) EXPECT_EQ(buddy_->free_blocks(Order{o}), 0u) << o;
  buddy_->CheckInvariants();
}

TEST_F(BuddyTest, SplitLeavesOneBlockPerLowerOrder) {
  Make(1);
  auto f = buddy_->Allocate(Order{0});
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(*f, 0u);
  // expand(): orders 0..9 each got one upper half.
  for (int o = 0; o < kMaxOrder; ++o) EXPECT_EQ(buddy_->free_blocks(Order{o}), 1u) << o;
  EXPECT_EQ(buddy_->free_blocks(Order{kMaxOrder}), 0u);
  EXPECT_EQ(buddy_->free_frames(), frames_ - 1);
  EXPECT_EQ(descriptors_[*f].load_state(), FrameState::kAllocated);
  buddy_->CheckInvariants();
  descriptors_[*f].set_state(FrameState::kTail);
  buddy_->Free(*f, Order{0});
  EXPECT_EQ(buddy_->free_blocks(Order{kMaxOrder}), 1u);  // merged all the way up
  EXPECT_EQ(buddy_->free_frames(), frames_);
  buddy_->CheckInvariants();
}

TEST_F(BuddyTest, BuddiesMergeOnlyWhenBothFree) {
  Make(1);
  auto a = buddy_->Allocate(Order{3});
  auto b = buddy_->Allocate(Order{3});
  ASSERT_TRUE(a && b);
  EXPECT_EQ(*a ^ *b, 8u) << "two order-3 blocks from one split are buddies";
  buddy_->Free(*a, Order{3});
  EXPECT_EQ(buddy_->free_blocks(Order{3}), 1u);  // b still allocated: no merge
  buddy_->Free(*b, Order{3});
  EXPECT_EQ(buddy_->free_blocks(Order{3}), 0u);
  EXPECT_EQ(buddy_->free_blocks(Order{kMaxOrder}), 1u);
  // The merged-away head is a tail now.
  EXPECT_EQ(descriptors_[std::max(*a, *b)].load_state(), FrameState::kTail);
  buddy_->CheckInvariants();
}

TEST_F(BuddyTest, ExhaustionReturnsNullopt) {
  Make(1);
  auto whole = buddy_->Allocate(Order{kMaxOrder});
  ASSERT_TRUE(whole.has_value());
  EXPECT_FALSE(buddy_->Allocate(Order{0}).has_value());
  buddy_->Free(*whole, Order{kMaxOrder});
  EXPECT_TRUE(buddy_->Allocate(Order{0}).has_value());
}

// ---- deferred initialisation: the frontier -------------------------------------------

TEST_F(BuddyTest, ConstructionWritesNoDescriptor) {
  Make(4);
  EXPECT_EQ(buddy_->frontier(), 0u);
  EXPECT_EQ(buddy_->untouched_frames(), frames_);
  EXPECT_EQ(buddy_->free_frames(), frames_);
  EXPECT_EQ(buddy_->free_blocks(Order{kMaxOrder}), 4u) << "untouched blocks count as free";
  EXPECT_TRUE(UntouchedFrom(0));
  buddy_->CheckInvariants();
  // One order-0 allocation seeds exactly one max-order block.
  ASSERT_EQ(buddy_->Allocate(Order{0}), 0u);
  EXPECT_EQ(buddy_->frontier(), BuddyAllocator::kMaxBlockFrames);
  EXPECT_TRUE(UntouchedFrom(BuddyAllocator::kMaxBlockFrames));
  EXPECT_EQ(buddy_->free_blocks(Order{kMaxOrder}), 3u);
  buddy_->CheckInvariants();
}

TEST_F(BuddyTest, ListedBlocksAreUsedBeforeTheFrontierMoves) {
  Make(3);
  const std::uint64_t block = BuddyAllocator::kMaxBlockFrames;
  auto a = buddy_->Allocate(Order{0});
  ASSERT_EQ(a, 0u);
  auto b = buddy_->Allocate(Order{9});  // the upper half left by the split
  ASSERT_EQ(b, block / 2);
  EXPECT_EQ(buddy_->frontier(), block);
  auto c = buddy_->Allocate(Order{kMaxOrder});  // nothing listed is that large: grow
  ASSERT_EQ(c, block);
  EXPECT_EQ(buddy_->frontier(), 2 * block);
  auto d = buddy_->Allocate(Order{1});  // listed again (block 0's order-1 remainder)
  ASSERT_TRUE(d.has_value());
  EXPECT_LT(*d, block);
  EXPECT_EQ(buddy_->frontier(), 2 * block);
  EXPECT_EQ(buddy_->free_frames(), frames_ - 1 - block / 2 - block - 2);
  buddy_->CheckInvariants();
}

// Every frame can be taken, one by one, across every seeded block; then the count is
// exactly zero and frees merge back into whole max-order blocks, now all listed.
TEST_F(BuddyTest, ExhaustionAtExactlyFrameCountAndMergeBack) {
  Make(3);
  std::vector<LocalFrame> taken;
  while (auto f = buddy_->Allocate(Order{0})) taken.push_back(*f);
  ASSERT_EQ(taken.size(), frames_);
  EXPECT_EQ(buddy_->free_frames(), 0u);
  EXPECT_EQ(buddy_->untouched_frames(), 0u);
  for (LocalFrame k = 0; k < frames_; ++k) ASSERT_EQ(taken[k], k) << "the arena fills upward";
  for (int o = 0; o <= kMaxOrder; ++o) EXPECT_EQ(buddy_->free_blocks(Order{o}), 0u) << o;
  // Free odd frames first (no merges), then even ones (merges up to order 10).
  for (LocalFrame f : taken) {
    if (f % 2) buddy_->Free(f, Order{0});
  }
  EXPECT_EQ(buddy_->free_blocks(Order{0}), frames_ / 2);
  for (LocalFrame f : taken) {
    if (f % 2 == 0) buddy_->Free(f, Order{0});
  }
  EXPECT_EQ(buddy_->free_blocks(Order{kMaxOrder}), 3u);
  EXPECT_EQ(buddy_->free_frames(), frames_);
  buddy_->CheckInvariants();
}

TEST_F(BuddyTest, SeedingWritesTheInitialFlags) {
  Make(2, /*flagged=*/true, kFrameZeroed);
  bool flagged = false;
  auto f = buddy_->Allocate(Order{kMaxOrder}, &flagged);
  ASSERT_EQ(f, 0u);
  EXPECT_TRUE(flagged) << "a seeded block of zeroed frames is flagged";
  for (std::uint64_t k = 0; k < BuddyAllocator::kMaxBlockFrames; ++k) {
    ASSERT_EQ(descriptors_[k].flags, kFrameZeroed) << "frame " << k;
  }
  EXPECT_TRUE(UntouchedFrom(BuddyAllocator::kMaxBlockFrames));
  buddy_->Free(*f, Order{kMaxOrder});
  buddy_->CheckInvariants();
}

// Randomized alloc/free checked against a reference model: the set of allocated blocks.
// Every block is naturally aligned, inside the arena and disjoint from every other one;
// the free count always equals frames minus allocated frames; at the end the arena is
// whole again.
TEST_F(BuddyTest, RandomizedAgainstReferenceModel) {
  Make(4);
  std::mt19937_64 rng(20261121);
  std::map<LocalFrame, int> live;  // first frame -> order
  std::vector<bool> taken(frames_, false);
  std::uint64_t allocated_frames = 0;
  for (int step = 0; step < 20000; ++step) {
    const bool do_alloc = live.empty() || rng() % 100 < 55;
    if (do_alloc) {
      const int order = static_cast<int>(rng() % (kMaxOrder + 1));
      auto f = buddy_->Allocate(Order{order});
      // The model says the allocation must succeed iff a free aligned run exists.
      bool model_has_room = false;
      for (std::uint64_t start = 0; start < frames_ && !model_has_room; start += 1u << order) {
        bool all_free = true;
        for (std::uint64_t k = 0; k < (1u << order) && all_free; ++k) all_free = !taken[start + k];
        model_has_room = all_free;
      }
      ASSERT_EQ(f.has_value(), model_has_room) << "step " << step << " order " << order;
      if (!f) continue;
      ASSERT_EQ(*f % (1u << order), 0u) << "block not naturally aligned";
      ASSERT_LE(*f + (1u << order), frames_);
      for (std::uint64_t k = 0; k < (1u << order); ++k) {
        ASSERT_FALSE(taken[*f + k]) << "frame " << *f + k << " handed out twice";
        taken[*f + k] = true;
      }
      live[*f] = order;
      allocated_frames += 1u << order;
    } else {
      auto it = live.begin();
      std::advance(it, static_cast<long>(rng() % live.size()));
      for (std::uint64_t k = 0; k < (1u << it->second); ++k) taken[it->first + k] = false;
      buddy_->Free(it->first, Order{it->second});
      allocated_frames -= 1u << it->second;
      live.erase(it);
    }
    ASSERT_EQ(buddy_->free_frames(), frames_ - allocated_frames);
    if (step % 1000 == 0) buddy_->CheckInvariants();
  }
  for (auto& [first, order] : live) buddy_->Free(first, Order{order});
  buddy_->CheckInvariants();
  EXPECT_EQ(buddy_->free_blocks(Order{kMaxOrder}), 4u) << "arena not whole after freeing all";
  EXPECT_EQ(buddy_->free_frames(), frames_);
}

}  // namespace
}  // namespace uvmem::internal
