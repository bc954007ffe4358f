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
// Deferred initialisation (Linux's CONFIG_DEFERRED_STRUCT_PAGE_INIT and
// deferred_grow_zone()): construction writes no descriptor. Frames [0, frontier) have been
// seeded and are on the lists or handed out; frames [frontier, frame_count) are untouched
// free max-order blocks whose descriptors have never been written (zero-filled memory,
// so a reserved array costs nothing until used). When no listed block is large enough,
// Allocate() seeds the next max-order block at the frontier — writing its 2^kMaxOrder
// descriptors (32 KiB) — and carries on. Frees never look past the frontier: a block's
// buddies all lie inside its own max-order block. Untouched frames count as free
// (free_frames) and as free max-order blocks (free_blocks(kMaxOrder)), so every
// statistic reads as it would if all blocks had been listed at construction.
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

  // `descriptors` has `frame_count` entries that read as kTail: zero-filled memory (a
  // fresh anonymous mapping, whose pages need not be backed) or default-constructed
  // descriptors. frame_count is a positive multiple of kMaxBlockFrames and < 2^32. All
  // frames start free as untouched max-order blocks; O(1), nothing is written.
  // `flagged`: whether those blocks may hold kFrameZeroed frames (frame.h).
  // `initial_flags`: FrameDescriptor::flags of every frame of a block when it is seeded
  // (FramePool: kFrameHole, or kFrameZeroed for a prefaulted arena); whatever the caller
  // stored in a descriptor past the frontier is overwritten then.
  BuddyAllocator(FrameDescriptor* descriptors, std::uint64_t frame_count, bool flagged = false,
                 std::uint16_t initial_flags = 0);

  BuddyAllocator(const BuddyAllocator&) = delete;
  BuddyAllocator& operator=(const BuddyAllocator&) = delete;

  // Takes a block of 2^order frames, naturally aligned (first % 2^order == 0), marks its
  // head kAllocated with `order`. Listed blocks come first; only when none is large enough
  // is the next untouched block seeded (its descriptors written). Returns nullopt when no
  // block that large is free.
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
  // Free frames, listed or past the frontier.
  std::uint64_t free_frames() const { return free_frames_; }
  // Number of free blocks of `order` (a /proc/buddyinfo column): those on free_area[order],
  // plus, for kMaxOrder, the untouched blocks past the frontier.
  std::uint64_t free_blocks(Order order) const {
    return free_area_[order.value].count +
           (order.value == kMaxOrder ? untouched_frames() >> kMaxOrder : 0);
  }
  // First frame whose descriptor has never been written; a multiple of kMaxBlockFrames.
  // Frames below it have been seeded; their descriptors are the only ones ever touched.
  std::uint64_t frontier() const { return frontier_; }
  // Frames past the frontier (free, counted in free_frames and free_blocks(kMaxOrder)).
  std::uint64_t untouched_frames() const { return frame_count_ - frontier_; }

  // Walks every list and checks links, states, alignment, that no listed block lies past
  // the frontier, and counts; aborts on a broken invariant. O(frames below the frontier).
  // Used by tests and UVMEM_DEBUG_FULL builds.
  void CheckInvariants() const;

 private:
  struct FreeArea {
    LocalFrame head = kNoFrame;
    std::uint64_t count = 0;
  };

  void Push(int order, LocalFrame frame, bool flagged);
  void Unlink(int order, LocalFrame frame);
  // Seeds the max-order block at the frontier onto free_area[kMaxOrder] and moves the
  // frontier past it. Returns false when every block has been seeded.
  bool Grow();

  FrameDescriptor* const descriptors_;
  const std::uint64_t frame_count_;
  const bool initial_flagged_;
  const std::uint16_t initial_flags_;
  std::uint64_t frontier_ = 0;
  std::uint64_t free_frames_ = 0;
  std::array<FreeArea, kNumOrders> free_area_{};
};

}  // namespace uvmem::internal

#endif  // UVMEM_FRAMES_BUDDY_ALLOCATOR_H_
