#include "frames/buddy_allocator.h"

#include <new>

#include "platform/report.h"

namespace uvmem::internal {

const char* FrameStateName(FrameState state) {
  switch (state) {
    case FrameState::kTail:
      return "not a block head";
    case FrameState::kFree:
      return "free";
    case FrameState::kPerCpu:
      return "free (per-CPU cache)";
    case FrameState::kAllocated:
      return "allocated";
  }
  return "corrupt";
}

BuddyAllocator::BuddyAllocator(FrameDescriptor* descriptors, std::uint64_t frame_count,
                               bool flagged, std::uint16_t initial_flags)
    : descriptors_(descriptors),
      frame_count_(frame_count),
      initial_flagged_(flagged),
      initial_flags_(initial_flags),
      free_frames_(frame_count) {
  UVMEM_CHECK(frame_count > 0 && frame_count % kMaxBlockFrames == 0);
  UVMEM_CHECK(frame_count < kNoFrame);
  // Nothing is seeded yet: every frame is past the frontier (Grow()).
}

bool BuddyAllocator::Grow() {
  if (frontier_ == frame_count_) return false;
  const auto first = static_cast<LocalFrame>(frontier_);
  // The block's descriptors are written for the first time: this is what backs them.
  for (std::uint64_t k = 0; k < kMaxBlockFrames; ++k) {
    FrameDescriptor* d = new (&descriptors_[first + k]) FrameDescriptor();
    d->flags = initial_flags_;
  }
  frontier_ += kMaxBlockFrames;
  // Seeding walks the arena upward, which keeps early allocations compact.
  Push(kMaxOrder, first, initial_flagged_);
  return true;
}

void BuddyAllocator::Push(int order, LocalFrame frame, bool flagged) {
  FrameDescriptor& d = descriptors_[frame];
  d.flags = flagged ? (d.flags | kFrameBlockFlagged) : (d.flags & ~kFrameBlockFlagged);
  d.set_state(FrameState::kFree);
  d.set_order(order);
  d.prev = kNoFrame;
  d.next = free_area_[order].head;
  if (d.next != kNoFrame) descriptors_[d.next].prev = frame;
  free_area_[order].head = frame;
  ++free_area_[order].count;
}

void BuddyAllocator::Unlink(int order, LocalFrame frame) {
  FrameDescriptor& d = descriptors_[frame];
  if (d.prev != kNoFrame) {
    descriptors_[d.prev].next = d.next;
  } else {
    free_area_[order].head = d.next;
  }
  if (d.next != kNoFrame) descriptors_[d.next].prev = d.prev;
  d.next = d.prev = kNoFrame;
  --free_area_[order].count;
}

std::optional<LocalFrame> BuddyAllocator::Allocate(Order order, bool* flagged) {
  int current = order.value;
  while (current <= kMaxOrder && free_area_[current].head == kNoFrame) ++current;
  if (current > kMaxOrder) {
    // deferred_grow_zone(): no listed block fits, so seed one from the frontier.
    if (!Grow()) return std::nullopt;
    current = kMaxOrder;
  }

  const LocalFrame first = free_area_[current].head;
  Unlink(current, first);
  const bool block_flagged = descriptors_[first].flags & kFrameBlockFlagged;
  // expand(): hand the upper halves back to the lower free lists.
  while (current > order.value) {
    --current;
    Push(current, first + (LocalFrame{1} << current), block_flagged);
  }
  FrameDescriptor& d = descriptors_[first];
  d.flags &= ~kFrameBlockFlagged;
  if (flagged != nullptr) *flagged = block_flagged;
  d.set_order(order.value);
  d.set_state(FrameState::kAllocated);
  free_frames_ -= order.frames();
  return first;
}

void BuddyAllocator::Free(LocalFrame first, Order order, bool flagged) {
  UVMEM_DCHECK(first + order.frames() <= frontier_);
  free_frames_ += order.frames();
  int current = order.value;
  LocalFrame block = first;
  while (current < kMaxOrder) {
    const LocalFrame buddy = block ^ (LocalFrame{1} << current);
    if (buddy >= frame_count_) break;
    const FrameDescriptor& b = descriptors_[buddy];
    if (b.load_state() != FrameState::kFree || b.load_order() != current) break;
    flagged = flagged || (b.flags & kFrameBlockFlagged);
    Unlink(current, buddy);
    // The higher of the two stops being a block head.
    descriptors_[block | buddy].set_state(FrameState::kTail);
    block &= buddy;
    ++current;
  }
  Push(current, block, flagged);
}

void BuddyAllocator::CheckInvariants() const {
  UVMEM_CHECK(frontier_ % kMaxBlockFrames == 0 && frontier_ <= frame_count_);
  std::uint64_t listed_frames = 0;
  for (int order = 0; order <= kMaxOrder; ++order) {
    std::uint64_t count = 0;
    LocalFrame prev = kNoFrame;
    for (LocalFrame f = free_area_[order].head; f != kNoFrame; f = descriptors_[f].next) {
      const FrameDescriptor& d = descriptors_[f];
      if (f >= frontier_ || d.prev != prev || d.load_state() != FrameState::kFree ||
          d.load_order() != order || (f & ((LocalFrame{1} << order) - 1)) != 0) {
        ReportFatal("buddy invariant broken: frame {} on free_area[{}] (state {}, order {})", f,
                    order, FrameStateName(d.load_state()), d.load_order());
      }
      prev = f;
      ++count;
      UVMEM_CHECK(count <= frame_count_);
    }
    UVMEM_CHECK(count == free_area_[order].count);
    listed_frames += count << order;
  }
  UVMEM_CHECK(listed_frames + untouched_frames() == free_frames_);
}

}  // namespace uvmem::internal
