// heap_area.h — HeapArea: one NUMA node's share of the heap, a runtime range cut into
// 64 KiB slices, and the span allocator over them.
//
// The range is reserved once (one VMA, bound and registered once — design.md) with a
// small fault-around window, so touching one block does not fill pages of free spans.
// Spans are handed out best-fit from free bins (exact bins up to 64 slices, then one bin
// per power of two), split as needed, else carved from the never-used frontier; freed
// spans coalesce with free neighbours through boundary tags (the last slice's
// head_offset), as a buddy-less page heap does (tcmalloc's PageHeap, mimalloc's span
// queues). A freed span keeps its frames ("dirty") until it has been free for
// `purge_delay_ns`; then Purge gives the frames back to the pool (Range::Discard) and
// the span is demand-zero again, so resident memory falls when the program frees.
//
// Detached mode (a child after fork(), or no runtime at all): the range is plain
// anonymous memory the kernel pages; purging becomes MADV_DONTNEED.
//
// Thread-safety: AllocateSpan, FreeSpan, Purge and the statistics take the area lock;
// SpanOf and Contains are lock-free reads of the side table.
#ifndef UVMEM_MALLOC_HEAP_AREA_H_
#define UVMEM_MALLOC_HEAP_AREA_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "malloc/span.h"
#include "platform/mutex.h"
#include "uvmem/types.h"

namespace uvmem::internal {

class RuntimeImpl;
class VmRange;

class HeapArea {
 public:
  static constexpr int kBins = 80;

  // An area over [base, base + bytes) (64 KiB aligned, a multiple of 64 KiB). `range` is
  // the runtime range behind it, or nullptr for plain memory. The side table is reserved
  // here (pinned, MAP_NORESERVE). Returns nullptr when that reservation fails.
  // Placement-constructed in pinned memory by the caller (see heap.cc).
  HeapArea(RuntimeImpl* runtime, VmRange* range, void* base, std::size_t bytes, NodeId node,
           std::uint64_t purge_delay_ns);
  bool ok() const { return spans_ != nullptr; }

  bool Contains(const void* p) const {
    return reinterpret_cast<std::uintptr_t>(p) - base_ < bytes_;
  }
  // The head of the span holding `p`. REQUIRES: Contains(p).
  Span* SpanOf(const void* p) const {
    Span* s = &spans_[(reinterpret_cast<std::uintptr_t>(p) - base_) >> kSliceShift];
    return s - s->head_offset.load(std::memory_order_relaxed);
  }

  // A span of `slices` slices (≥ 1) of kind `kind` (kClass or kLarge; set under the area
  // lock, which neighbours read it under). `*was_zeroed` says whether every page of it
  // still reads zero (the span is marked not zeroed from now on). Fields other than the
  // slice bookkeeping, start and kind are left to the caller. nullptr when the area is full.
  Span* AllocateSpan(std::uint32_t slices, SpanKind kind, bool* was_zeroed);
  // Grows `span` in place to `slices` slices when the slices after it are free (or never
  // used). Returns whether it did; the span's other fields are left as they are.
  bool TryGrow(Span* span, std::uint32_t slices);
  // Returns a span (any kind) to the free bins; it stays dirty until purged.
  void FreeSpan(Span* span);
  // Gives back the frames of free spans older than the purge delay (all of them when
  // `all`). Returns the pages given back.
  std::uint64_t Purge(std::uint64_t now_ns, bool all);

  // Fills the missing pages of [start, start + bytes) (inside the area) from the calling
  // thread, without fault round trips (Range::Populate). A no-op when detached. The
  // caller is about to write there. Lock-free.
  void Populate(std::uintptr_t start, std::size_t bytes);

  // Moves the pages of [src, src + bytes) to [dst, dst + bytes) (both inside the area, page
  // aligned, dst never written) without copying them (RuntimeImpl::MovePages). Returns
  // how many leading bytes were handled; the caller copies the rest. 0 when detached.
  std::size_t MovePages(std::uintptr_t src, std::uintptr_t dst, std::size_t bytes);

  // In a child after fork(): from now on purging is MADV_DONTNEED and the runtime is
  // never called (its userfaultfd belongs to the parent's address space).
  void Detach();
  // fork() handlers: hold the lock across fork so the child never inherits it held.
  void LockForFork() ABSL_NO_THREAD_SAFETY_ANALYSIS { mu_.Lock(); }
  void UnlockAfterFork() ABSL_NO_THREAD_SAFETY_ANALYSIS { mu_.Unlock(); }

  NodeId node() const { return node_; }
  std::uintptr_t base() const { return base_; }
  std::size_t bytes() const { return bytes_; }
  VmRange* range() const { return range_; }

  struct Stats {
    std::uint64_t spans_bytes_now = 0;   // bytes of spans in use
    std::uint64_t free_dirty_bytes = 0;  // free but not yet purged
    std::uint64_t purged_pages = 0;
  };
  Stats GetStats() const;

 private:
  static int BinOf(std::uint32_t slices);
  std::uint32_t IndexOf(const Span* s) const { return static_cast<std::uint32_t>(s - spans_); }
  void InitSpan(std::uint32_t index, std::uint32_t slices) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void InsertFree(Span* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void InsertFreeTail(std::uint32_t index, std::uint32_t slices, bool zeroed, std::uint64_t stamp)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemoveFree(Span* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Gives back the frames of a free span (it becomes demand-zero); returns frames freed.
  std::uint64_t Discard(Span* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::uint64_t DiscardRange(std::uintptr_t start, std::size_t bytes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  RuntimeImpl* const runtime_;
  VmRange* const range_;
  const std::uintptr_t base_;
  const std::size_t bytes_;
  const NodeId node_;
  const std::uint64_t purge_delay_ns_;
  Span* spans_ = nullptr;  // one per slice
  const std::uint32_t total_slices_;

  mutable Mutex mu_;
  std::uint32_t frontier_ ABSL_GUARDED_BY(mu_) = 0;  // slices ever handed out
  Span* bins_[kBins] ABSL_GUARDED_BY(mu_) = {};
  bool detached_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<bool> detached_fast_{false};  // detached_, readable without the lock
  std::uint64_t spans_bytes_now_ ABSL_GUARDED_BY(mu_) = 0;
  std::uint64_t free_dirty_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  std::uint64_t purged_pages_ ABSL_GUARDED_BY(mu_) = 0;
};

// CLOCK_MONOTONIC_COARSE in nanoseconds (vDSO: no system call, ~4 ms resolution).
std::uint64_t CoarseNowNs();

}  // namespace uvmem::internal

#endif  // UVMEM_MALLOC_HEAP_AREA_H_
