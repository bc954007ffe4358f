// buddy_allocator.h — BuddyAllocator: one node's binary buddy system over its frames.
//
// The algorithm is Linux's (mm/page_alloc.c): free blocks of 2^order frames sit on
// free_area[order] lists; allocation takes the smallest order that fits and splits the
// rest back onto lower lists (expand()); freeing merges a block with its buddy,
// `buddy = frame ^ (1 << order)`, while the buddy is a free block of the same order
// (__free_one_page()). Orders run 0..kMaxOrder (4 KiB .. 4 MiB).
//
// This class is pure bookkeeping on a FrameDescriptor array: no locking, no syscalls, no
// notion of addresses. FramePool owns one per node and guards it with the node's lock.
// Frame indices are local to the node (LocalFrame); the arena's frame count is a
// multiple of 2^kMaxOrder so every max-order block is naturally aligned.
//
// Thread-safety: none; the caller serialises all calls.
#ifndef UVMEM_FRAMES_BUDDY_ALLOCATOR_H_
#define UVMEM_FRAMES_BUDDY_ALLOCATOR_H_

#include <array>
#include <cstdint>
#include <optional>

#include "frames/frame.h"
#include "uvmem/types.h"

namespace uvmem::internal {

class BuddyAllocator {
 public:
  // Frames per max-order block; arena sizes are multiples of this.
  static constexpr std::uint64_t kMaxBlockFrames = std::uint64_t{1} << kMaxOrder;

  // `descriptors` has `frame_count` entries, all zero (kTail); frame_count is a positive
  // multiple of kMaxBlockFrames and < 2^32. All frames start free as max-order blocks.
  // `flagged`: whether the initial blocks may hold kFrameZeroed frames (frame.h).
  BuddyAllocator(FrameDescriptor* descriptors, std::uint64_t frame_count, bool flagged = false);

  BuddyAllocator(const BuddyAllocator&) = delete;
  BuddyAllocator& operator=(const BuddyAllocator&) = delete;

  // Takes a block of 2^order frames, naturally aligned (first % 2^order == 0), marks its
  // head kAllocated with `order`. Returns nullopt when no block that large is free.
  // `flagged` (optional) receives whether some frame of the block may be kFrameZeroed
  // (frame.h, kFrameBlockFlagged). REQUIRES: order.valid().
  [[nodiscard]] std::optional<LocalFrame> Allocate(Order order, bool* flagged = nullptr);

  // Returns the block headed by `first` (2^order frames) and merges it with free buddies.
  // `flagged`: some frame of the block may be kFrameZeroed (merging ORs it with the
  // buddies'). REQUIRES: the caller has already checked that `first` heads an allocated
  // block of `order` (FramePool validates and reports misuse) and moved it out of
  // kAllocated.
  void Free(LocalFrame first, Order order, bool flagged = false);

  std::uint64_t frame_count() const { return frame_count_; }
  std::uint64_t free_frames() const { return free_frames_; }
  // Number of free blocks on free_area[order] (a /proc/buddyinfo column).
  std::uint64_t free_blocks(Order order) const { return free_area_[order.value].count; }

  // Walks every list and checks links, states, alignment and counts; aborts on a broken
  // invariant. O(frames). Used by tests and UVMEM_DEBUG_FULL builds.
  void CheckInvariants() const;

 private:
  struct FreeArea {
    LocalFrame head = kNoFrame;
    std::uint64_t count = 0;
  };

  void Push(int order, LocalFrame frame, bool flagged);
  void Unlink(int order, LocalFrame frame);

  FrameDescriptor* const descriptors_;
  const std::uint64_t frame_count_;
  std::uint64_t free_frames_ = 0;
  std::array<FreeArea, kNumOrders> free_area_{};
};

}  // namespace uvmem::internal

#endif  // UVMEM_FRAMES_BUDDY_ALLOCATOR_H_
