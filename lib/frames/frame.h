// frame.h — FrameDescriptor, the runtime's `struct page`: one per 4 KiB frame of the pool.
//
// A descriptor records what its frame is doing (FrameState), the order of the block it
// heads, a reference count and an owner. Later layers use `owner` and `private_data` the
// way the kernel uses page->mapping / page->private: the slab layer stores its slab
// there, the fault engine its range, swap its slot.
//
// Block heads vs tails: only the first frame of a block (allocated or free) carries a
// state other than kTail. The buddy allocator keeps that true as it splits and merges,
// which lets Free() recognise a pointer into the middle of a block, a frame that is not
// allocated, and a double free (mm/page_alloc.c's free_pages_prepare checks likewise).
//
// Deferred init: descriptors live in zero-filled reserved memory and are constructed a
// max-order block at a time, when the buddy allocator first seeds the block (its
// frontier, buddy_allocator.h). Until then a descriptor reads as all zero — kTail, no
// flags — whatever its frame's memory holds.
//
// Thread-safety: `state` and `refcount` are atomics. `next`/`prev` belong to whichever
// free list holds the frame and are guarded by that list's lock. `owner`/`private_data`
// belong to the holder of an allocated block.
#ifndef UVMEM_FRAMES_FRAME_H_
#define UVMEM_FRAMES_FRAME_H_

#include <atomic>
#include <cstdint>

namespace uvmem::internal {

enum class FrameState : std::uint8_t {
  kTail = 0,       // inside a block headed by a lower frame (also: never seeded)
  kFree = 1,       // head of a free block on a buddy free_area list
  kPerCpu = 2,     // order-0 frame held in a per-CPU cache
  kAllocated = 3,  // head of a block handed out by Allocate()
};

const char* FrameStateName(FrameState state);

// Index of a frame inside its node's arena (0..frames-1). Free lists link by it.
using LocalFrame = std::uint32_t;
inline constexpr LocalFrame kNoFrame = ~LocalFrame{0};

// FrameDescriptor::flags: what is known about a frame's memory in its arena. Only holders
// that allocate with kAllocKeepFrameFlags (the fault engine) see and maintain them. Of
// the three, only kFrameZeroed must never go stale — a dirty frame trusted as zero would
// leak one owner's bytes to another — so every other allocation clears it (a stale
// kFrameHole or kFrameInRange costs the engine a copy or a memset, never wrong data).
enum FrameFlag : std::uint16_t {
  kFrameHole = 1u << 0,    // the arena page is not backed (never touched, or moved out)
  kFrameZeroed = 1u << 1,  // the arena page is backed and all zero
  kFrameInRange = 1u << 2, // the page was moved into a range (UFFDIO_MOVE): the arena slot
                           // is empty and the range's page is this frame's page
  kFrameReadahead = 1u << 3,  // read from swap ahead of a fault (vm/swap_in.h), not yet
                              // seen by reclaim
  kFrameEvicted = 1u << 4,  // a shared frame (vm/cow.h) whose memory was given up: its
                            // bytes are only in its swap slot (private_data)
  // Free block heads only (buddy bookkeeping): some frame of the block may be
  // kFrameZeroed, so an allocation that clears flags must walk the block. Without it,
  // clearing is O(1) whatever the order.
  kFrameBlockFlagged = 1u << 15,
};

struct FrameDescriptor {
  LocalFrame next = kNoFrame;  // free list links (guarded by the list's lock)
  LocalFrame prev = kNoFrame;
  std::atomic<FrameState> state{FrameState::kTail};
  std::atomic<std::uint8_t> order{0};  // order of the block this frame heads
  std::uint16_t flags = 0;             // FrameFlag bits (see above)
  std::atomic<std::uint32_t> refcount{0};
  std::uintptr_t owner = 0;          // who holds the block (slab cache, range, ...)
  std::uint64_t private_data = 0;    // owner's per-frame word (slab, swap slot, ...)

  FrameState load_state() const { return state.load(std::memory_order_relaxed); }
  void set_state(FrameState s) { state.store(s, std::memory_order_relaxed); }
  int load_order() const { return order.load(std::memory_order_relaxed); }
  void set_order(int o) { order.store(static_cast<std::uint8_t>(o), std::memory_order_relaxed); }
};
static_assert(sizeof(FrameDescriptor) == 32, "descriptor array is sized by this");

}  // namespace uvmem::internal

#endif  // UVMEM_FRAMES_FRAME_H_
