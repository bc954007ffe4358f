// per_cpu_cache.h — PerCpuFrameCache: a CPU's stack of free order-0 frames of one node.
//
// Linux keeps per-CPU page lists (struct per_cpu_pages, mm/page_alloc.c) so that most
// order-0 allocations and frees touch no zone lock: a list is refilled from the buddy
// lists `batch` frames at a time and drained `batch` at a time once it holds more than
// `high`. FramePool does the same with one PerCpuFrameCache per (CPU, node).
//
// The list links frames through FrameDescriptor::next (LIFO: the frame freed last, still
// warm in cache, is reused first). The lock is taken with TryLock() only; a thread that
// finds it busy (the holder was preempted, or migrated here) uses the buddy path instead.
//
// Thread-safety: every member except `lock` is guarded by `lock`.
#ifndef UVMEM_FRAMES_PER_CPU_CACHE_H_
#define UVMEM_FRAMES_PER_CPU_CACHE_H_

#include <absl/base/thread_annotations.h>

#include <cstdint>

#include "frames/frame.h"
#include "platform/spin_lock.h"

namespace uvmem::internal {

struct alignas(64) PerCpuFrameCache {
  SpinLock lock;
  LocalFrame head ABSL_GUARDED_BY(lock) = kNoFrame;
  std::uint32_t count ABSL_GUARDED_BY(lock) = 0;
  // Counters, read racily by statistics.
  std::uint64_t hits ABSL_GUARDED_BY(lock) = 0;     // allocations served from the list
  std::uint64_t refills ABSL_GUARDED_BY(lock) = 0;  // batches taken from the buddy lists
  std::uint64_t drains ABSL_GUARDED_BY(lock) = 0;   // batches returned to the buddy lists
  std::uint64_t misses ABSL_GUARDED_BY(lock) = 0;   // hits that were not the preferred node

  // Pushes `frame` (whose state the caller validated) and marks it kPerCpu.
  void Push(FrameDescriptor* descriptors, LocalFrame frame) ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock) {
    FrameDescriptor& d = descriptors[frame];
    d.set_state(FrameState::kPerCpu);
    d.set_order(0);
    d.next = head;
    head = frame;
    ++count;
  }

  // Pops the most recently pushed frame, or kNoFrame when empty. The frame's state is
  // left kPerCpu; the caller marks it allocated or hands it to the buddy lists.
  LocalFrame Pop(FrameDescriptor* descriptors) ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock) {
    const LocalFrame frame = head;
    if (frame != kNoFrame) {
      head = descriptors[frame].next;
      descriptors[frame].next = kNoFrame;
      --count;
    }
    return frame;
  }
};

}  // namespace uvmem::internal

#endif  // UVMEM_FRAMES_PER_CPU_CACHE_H_
