// runtime_impl.h — RuntimeImpl: what stands behind uvmem::Runtime.
//
// Owns, in construction order: the NUMA topology, the frame pool, the slab caches of
// page tables and range descriptors, the userfaultfd, the zero buffer COPY reads from,
// the filler, the address space and the fault engine. Destruction runs the other way.
//
// Thread-safety: Reserve, Release (of distinct ranges) and the statistics are
// thread-safe.
#ifndef UVMEM_VM_RUNTIME_IMPL_H_
#define UVMEM_VM_RUNTIME_IMPL_H_

#include <absl/status/statusor.h>

#include <atomic>
#include <memory>

#include "frames/frame_pool.h"
#include "platform/mutex.h"
#include "platform/numa_topology.h"
#include "platform/pagemap.h"
#include "platform/userfaultfd.h"
#include "slab/slab_cache.h"
#include "uvmem/runtime.h"
#include "vm/address_space.h"
#include "vm/cow.h"
#include "vm/demand_zero.h"
#include "vm/fault_engine.h"
#include "vm/fork_copy.h"
#include "vm/memory_budget.h"
#include "vm/range_frames.h"
#include "vm/reclaim.h"
#include "vm/swap_device.h"
#include "vm/swap_in.h"
#include "vm/vm_range.h"

namespace uvmem::internal {

class RuntimeImpl {
 public:
  static absl::StatusOr<std::unique_ptr<RuntimeImpl>> Create(const RuntimeOptions& options);
  ~RuntimeImpl();

  absl::StatusOr<VmRange*> Reserve(std::size_t length_bytes, const RangeOptions& options);
  // Errors: FailedPrecondition when `range` is not live.
  absl::Status Release(VmRange* range);
  // Range::Clone of a live range: a new range (same length, policy, windows) sharing
  // `source`'s pages copy-on-write (cow.h). Errors as Range::Clone.
  absl::StatusOr<VmRange*> Clone(VmRange& source, std::string_view name);
  // Range::Discard over pages [first_page, first_page + pages) of a live range; returns
  // the frames given back to the pool.
  absl::StatusOr<std::uint64_t> Discard(VmRange& range, std::uint64_t first_page,
                                        std::uint64_t pages);
  // Moves the pages of [src_page, src_page + pages) of `range` to [dst_page, ...) with
  // UFFDIO_MOVE — the frames change address, no byte is copied (mremap's job, for a
  // heap's realloc). Source pages that were never filled stay missing at the destination
  // too (they read zero either way) where the destination page is missing; a source page
  // that cannot move (no MOVE on this kernel, a page shared after fork, swapped out, a
  // destination page in use or filled meanwhile) is left where it is and reported by returning
  // false with `*moved_prefix_pages` = the pages before it that did move, so the caller
  // copies the rest. Returns true when every page was handled.
  bool MovePages(VmRange& range, std::uint64_t src_page, std::uint64_t dst_page,
                 std::uint64_t pages, std::uint64_t* moved_prefix_pages);
  // Range::Populate over pages [first_page, first_page + pages); returns pages claimed.
  absl::StatusOr<std::uint64_t> Populate(VmRange& range, std::uint64_t first_page,
                                         std::uint64_t pages);

  RangeStats StatsOf(const VmRange& range) const;
  RuntimeStats Stats() const;

  std::size_t fault_around_pages() const { return filler_->config().fault_around_pages; }
  bool uses_move() const { return filler_->config().use_move; }
  FramePool& pool() { return *pool_; }
  // The swap device (null without a budget); tests inject I/O faults through it.
  SwapDevice* swap_device() { return swap_.get(); }
  const NumaTopology& topology() const { return topology_; }

 private:
  RuntimeImpl(const RuntimeOptions& options, NumaTopology topology);
  absl::StatusOr<ResolvedPolicy> Resolve(const NumaPolicy& policy) const;
  absl::StatusOr<FillWindow> ResolveWindow(const RangeOptions& options) const;
  // Reserve after its checks: `length` is a multiple of 4 KiB.
  absl::StatusOr<VmRange*> ReserveResolved(std::size_t length, std::string_view name,
                                           const ResolvedPolicy& policy, FillWindow window);
  // Hands every holder and CoW entry of a range being released to CopyOnWrite.
  void DropSharedEntries(VmRange& range);
  void MoveFramesBack(VmRange& range);
  absl::Status ApplyMempolicy(void* start, std::size_t length_bytes,
                              const ResolvedPolicy& policy) const;
  // Opens the swap device and starts reclaim (a runtime with a budget).
  absl::Status StartSwap(bool track_clean);
  // Frees what entry `pte` of a range holds (a frame, a swap slot); returns 1 for a frame.
  std::uint64_t DropEntry(Pte pte);
  SwapStats SwapStatsNow() const;

  const RuntimeOptions options_;
  const NumaTopology topology_;
  std::unique_ptr<FramePool> pool_;
  std::unique_ptr<MemoryBudget> budget_;
  std::unique_ptr<RangeFrames> frames_;
  std::unique_ptr<SlabCache> table_cache_;
  std::unique_ptr<SlabCache> range_cache_;
  Userfaultfd uffd_;
  void* zero_source_ = nullptr;
  std::unique_ptr<DemandZeroFiller> filler_;
  std::unique_ptr<CopyOnWrite> cow_;
  std::unique_ptr<AddressSpace> space_;
  std::unique_ptr<FaultEngine> engine_;
  // Swap (with a budget only): the device, the dirty-bit scanner, reclaim, swap-in.
  std::unique_ptr<SwapDevice> swap_;
  std::unique_ptr<PagemapScanner> pagemap_;
  std::unique_ptr<Reclaimer> reclaimer_;
  std::unique_ptr<SwapIn> swap_in_;
  bool register_wp_ = false;
  bool clones_ = false;  // write-protect faults reach uvmem (no WP_ASYNC): Clone works
  ForkCopySource fork_source_{};
  std::atomic<bool> fork_registered_{false};

  // Adds a range's cumulative counters to `total` (not its current-state fields).
  static void AddCounters(const RangeStats& range, RuntimeStats* total);

  // Cumulative counters of released ranges, so runtime totals never go backwards.
  mutable Mutex released_mu_;
  RuntimeStats released_ ABSL_GUARDED_BY(released_mu_);
};

}  // namespace uvmem::internal

#endif  // UVMEM_VM_RUNTIME_IMPL_H_
