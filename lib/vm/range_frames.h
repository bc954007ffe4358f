// range_frames.h — RangeFrames: the one place where frames enter and leave ranges.
//
// Every frame mapped into a range is allocated here (charged to the MemoryBudget first,
// reclaiming directly when the budget is spent) and freed here (uncharged; a clean swap
// slot it still held is released). A frame of a range keeps in its descriptor
// (frame.h) `owner` = the VmRange and `private_data` = 1 + the swap slot that still holds
// its bytes (0: none — the page was never swapped, or was written since it came back).
//
// Thread-safety: every method is thread-safe.
#ifndef UVMEM_VM_RANGE_FRAMES_H_
#define UVMEM_VM_RANGE_FRAMES_H_

#include <cstdint>
#include <optional>

#include "frames/frame_pool.h"
#include "vm/copy_placement.h"
#include "vm/memory_budget.h"
#include "vm/swap_device.h"
#include "vm/vm_range.h"

namespace uvmem::internal {

class Reclaimer;

class RangeFrames {
 public:
  // `place_copies`: the topology is real and has more than one node (copy_placement.h).
  RangeFrames(FramePool* pool, MemoryBudget* budget, bool place_copies = false)
      : pool_(pool), budget_(budget), placement_(pool, place_copies) {}

  // Swap and reclaim, when the runtime has a budget. Call before any fault is served.
  void AttachSwap(SwapDevice* swap, Reclaimer* reclaimer) {
    swap_ = swap;
    reclaimer_ = reclaimer;
  }

  // The pool flags a range's frames are allocated with: descriptor flags kept (frame.h),
  // and no fallback to other nodes under a bind policy.
  static unsigned AllocFlagsFor(const VmRange& range) {
    return kAllocKeepFrameFlags | (range.policy().kind == NumaPolicy::Kind::kBind
                                       ? static_cast<unsigned>(kAllocThisNodeOnly)
                                       : 0u);
  }

  enum class Shortage { kNone, kPool, kBudget };
  // A block of 2^order frames (split into order-0 frames, each owned by `range`, no clean
  // slot), charged to the budget. When the budget is spent it reclaims directly first
  // (if `may_reclaim` and the runtime swaps). nullopt with `*why` = kPool (the pool has
  // no such block) or kBudget (the budget stays spent: nothing more can be evicted).
  std::optional<FrameNumber> Allocate(VmRange& range, int order, NodeId node, unsigned flags,
                                      bool may_reclaim, Shortage* why);
  // Frees one frame of a range: uncharged, its clean slot released, back to the pool.
  void Free(FrameNumber frame);
  // A shared frame whose memory is given up while ranges still name it (evicted to swap,
  // cow.h): uncharged now; FreeEvicted frees it later without a second uncharge.
  void UnchargeEvicted() { budget_->Uncharge(1); }
  void FreeEvicted(FrameNumber frame);

  // The swap slot still holding the frame's bytes, if any.
  std::optional<SwapSlot> CleanSlot(FrameNumber frame) const {
    const std::uint64_t v = pool_->Descriptor(frame).private_data;
    if (v == 0) return std::nullopt;
    return SwapSlot{v - 1};
  }
  void SetCleanSlot(FrameNumber frame, std::optional<SwapSlot> slot) {
    pool_->Descriptor(frame).private_data = slot ? slot->value + 1 : 0;
  }
  // Releases the frame's clean slot (the page was written: the slot is stale).
  void DropCleanSlot(FrameNumber frame);

  FramePool& pool() const { return *pool_; }
  // Open a CopyPlacement::Scope with it before any UFFDIO_COPY that gives a frame its page.
  const CopyPlacement& copy_placement() const { return placement_; }
  MemoryBudget& budget() const { return *budget_; }
  SwapDevice* swap() const { return swap_; }
  Reclaimer* reclaimer() const { return reclaimer_; }

 private:
  FramePool* const pool_;
  MemoryBudget* const budget_;
  const CopyPlacement placement_;
  SwapDevice* swap_ = nullptr;
  Reclaimer* reclaimer_ = nullptr;
};

}  // namespace uvmem::internal

#endif  // UVMEM_VM_RANGE_FRAMES_H_
