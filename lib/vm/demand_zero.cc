#include "vm/demand_zero.h"

#include <csignal>
#include <cstring>

#include "platform/memory_map.h"
#include "platform/report.h"
#include "platform/thread.h"

namespace uvmem::internal {

// The leaf entries of one fault-around window (an aligned window of at most 512 pages
// lies inside one 512-entry leaf table).
struct DemandZeroFiller::Run {
  std::atomic<Pte>* first_entry;
  std::uint64_t first_page;
  std::atomic<Pte>& at(std::uint64_t page) const { return first_entry[page - first_page]; }
};

namespace {

bool Contains(std::uint64_t first, std::uint64_t count, std::uint64_t page) {
  return page >= first && page < first + count;
}

int FloorLog2(std::uint64_t n) { return 63 - __builtin_clzll(n); }

}  // namespace

DemandZeroFiller::DemandZeroFiller(FramePool* pool, const Userfaultfd* uffd,
                                   const void* zero_source, FillConfig config)
    : pool_(pool), uffd_(uffd), zero_source_(zero_source), config_(config) {
  UVMEM_CHECK(config.fault_around_pages >= 1 && config.fault_around_pages <= kMaxWindowPages);
  UVMEM_CHECK((config.fault_around_pages & (config.fault_around_pages - 1)) == 0);
}

void DemandZeroFiller::HandleMissingFault(VmRange& range, std::uintptr_t address, NodeId local,
                                          std::uint32_t thread_id) {
  VmRangeCounters& counters = range.counters();
  counters.faults.fetch_add(1, std::memory_order_relaxed);
  const std::uint64_t page = (address - range.start()) >> kPageShift;
  const std::uint64_t window = config_.fault_around_pages;
  const std::uint64_t first = page & ~(window - 1);
  const std::uint64_t end = std::min(first + window, range.pages());

  std::atomic<Pte>* fault_entry = range.page_table().LookupOrCreate(page);
  if (fault_entry == nullptr) {
    KillFaultingThread(range, nullptr, page, thread_id,
                       "no frame is left for the range's page table", ENOMEM);
    return;
  }
  const Run run{fault_entry - (page - first), first};
  Pte expected = 0;
  if (!fault_entry->compare_exchange_strong(expected, kPteClaimed, std::memory_order_acq_rel)) {
    if (expected == kPtePoisoned) {
      // The thread came back after SIGBUS (a handler returned): answer it the same way.
      KillFaultingThread(range, fault_entry, page, thread_id, "the page was poisoned", 0);
      return;
    }
    if (expected == kPteClaimed) {
      // Another fault thread is filling it; its wake covers this thread.
      counters.races_lost.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    RefillIfDiscarded(range, *fault_entry, page, expected);
    return;
  }
  // Claim the rest of the window and fill every contiguous claimed stretch.
  std::uint64_t run_start = end;
  for (std::uint64_t q = first; q <= end; ++q) {
    bool claimed = false;
    if (q == page) {
      claimed = true;
    } else if (q < end) {
      Pte zero = 0;
      std::atomic<Pte>& e = run.at(q);
      claimed = e.load(std::memory_order_relaxed) == 0 &&
                e.compare_exchange_strong(zero, kPteClaimed, std::memory_order_acq_rel);
    }
    if (claimed && run_start == end) run_start = q;
    if (!claimed && run_start != end) {
      FillRun(range, run.first_entry, run.first_page, run_start, q, page, local, thread_id);
      run_start = end;
    }
  }
  // Fills ran with DONTWAKE so that entries and counters are up to date before any
  // faulting thread resumes; one wake for the whole window.
  (void)uffd_->Wake(range.PageAddress(first), (end - first) << kPageShift);
}

void DemandZeroFiller::RefillIfDiscarded(VmRange& range, std::atomic<Pte>& entry,
                                         std::uint64_t page, Pte mapped) {
  // The page table says mapped. Either the message is stale (the page was filled after
  // the thread queued its fault) or the program dropped the page (MADV_DONTNEED, or
  // MADV_FREE pages the kernel reclaimed): then it must read zero again. One COPY of a
  // zero page tells which — EEXIST: stale — and repairs the second case.
  void* address = range.PageAddress(page);
  Pte expected = mapped;
  if (entry.compare_exchange_strong(expected, kPteClaimed, std::memory_order_acq_rel)) {
    const UffdResult result =
        uffd_->Copy(address, zero_source_, kPageSize, UffdCopyMode{.dontwake = true});
    entry.store(mapped, std::memory_order_release);  // the frame stays the page's token
    if (result.ok()) {
      range.counters().discarded_refills.fetch_add(1, std::memory_order_relaxed);
    } else {
      range.counters().races_lost.fetch_add(1, std::memory_order_relaxed);
    }
  }
  (void)uffd_->Wake(address, kPageSize);
}

void DemandZeroFiller::FillRun(VmRange& range, std::atomic<Pte>* entries, std::uint64_t first_page,
                               std::uint64_t begin, std::uint64_t end, std::uint64_t fault_page,
                               NodeId local, std::uint32_t thread_id) {
  const Run run{entries, first_page};
  const ResolvedPolicy& policy = range.policy();
  const unsigned flags =
      kAllocKeepFrameFlags |
      (policy.kind == NumaPolicy::Kind::kBind ? static_cast<unsigned>(kAllocThisNodeOnly) : 0u);
  std::uint64_t page = begin;
  while (page < end) {
    const NodeId node = range.NodeForPage(page, local);
    const std::uint64_t want =
        policy.kind == NumaPolicy::Kind::kInterleave ? 1 : end - page;
    int order = std::min(FloorLog2(want), kMaxOrder);
    std::optional<FrameNumber> frame;
    for (;;) {
      frame = pool_->Allocate(Order{order}, node, flags);
      if (frame || order == 0) break;
      --order;
    }
    if (!frame) {
      // No frame without the reserves. Pages mapped only ahead of the fault are given
      // up; the faulting page may use the reserves, and else the fault fails honestly.
      const bool fault_here = Contains(page, end - page, fault_page);
      for (std::uint64_t q = page; q < end; ++q) {
        if (q != fault_page) run.at(q).store(0, std::memory_order_release);
      }
      if (end - page > (fault_here ? 1u : 0u)) {
        (void)uffd_->Wake(range.PageAddress(page), (end - page) << kPageShift);
      }
      if (!fault_here) return;
      frame = pool_->Allocate(Order{0}, range.NodeForPage(fault_page, local),
                              flags | kAllocUseReserves);
      if (!frame) {
        Oom(range, &run.at(fault_page), fault_page, thread_id);
        return;
      }
      pool_->Descriptor(*frame).owner = reinterpret_cast<std::uintptr_t>(&range);
      MapFrames(range, entries, first_page, fault_page, *frame, 1, fault_page, thread_id);
      return;
    }
    const std::uint64_t count = std::uint64_t{1} << order;
    if (order > 0) pool_->SplitAllocated(*frame, Order{order});
    for (std::uint64_t k = 0; k < count; ++k) {
      pool_->Descriptor(*frame + k).owner = reinterpret_cast<std::uintptr_t>(&range);
    }
    MapFrames(range, entries, first_page, page, *frame, count, fault_page, thread_id);
    page += count;
  }
}

bool DemandZeroFiller::PrepareSource(FrameNumber frame, std::uint64_t count) {
  // kFrameZeroed: ready. kFrameHole: have the kernel back a whole stretch of holes with
  // zeroed pages in one call. Unknown (a frame another holder used): zero it by hand.
  std::uint64_t k = 0;
  while (k < count) {
    const std::uint16_t flags = pool_->Descriptor(frame + k).flags;
    if (flags & kFrameZeroed) {
      ++k;
    } else if (flags & kFrameHole) {
      std::uint64_t j = k + 1;
      while (j < count && (pool_->Descriptor(frame + j).flags & kFrameHole)) ++j;
      if (PopulateWrite(pool_->FrameAddress(frame + k), (j - k) << kPageShift) != 0) return false;
      k = j;
    } else {
      std::memset(pool_->FrameAddress(frame + k), 0, kPageSize);
      ++k;
    }
  }
  for (k = 0; k < count; ++k) pool_->Descriptor(frame + k).flags = kFrameZeroed;
  return true;
}

void DemandZeroFiller::MapFrames(VmRange& range, std::atomic<Pte>* entries,
                                 std::uint64_t first_page, std::uint64_t page, FrameNumber frame,
                                 std::uint64_t count, std::uint64_t fault_page,
                                 std::uint32_t thread_id) {
  if (!config_.use_move || !PrepareSource(frame, count)) {
    CopyFrames(range, entries, first_page, page, frame, count, fault_page, thread_id);
    return;
  }
  const Run run{entries, first_page};
  VmRangeCounters& counters = range.counters();
  const UffdResult result =
      uffd_->Move(range.PageAddress(page), pool_->FrameAddress(frame), count << kPageShift,
                  UffdMoveMode{.dontwake = true});
  const std::uint64_t moved = result.bytes_done >> kPageShift;
  for (std::uint64_t k = 0; k < moved; ++k) {
    pool_->Descriptor(frame + k).flags = kFrameHole;  // the page left the arena
    run.at(page + k).store(MakePresentPte(frame + k), std::memory_order_release);
  }
  if (moved > 0) {
    counters.pages_moved.fetch_add(moved, std::memory_order_relaxed);
    counters.pages_filled.fetch_add(moved, std::memory_order_relaxed);
    counters.fault_around_pages.fetch_add(moved - (Contains(page, moved, fault_page) ? 1 : 0),
                                          std::memory_order_relaxed);
    counters.AddResident(moved);
  }
  if (result.ok()) return;

  const std::uint64_t q = page + moved;
  const FrameNumber fq = frame + moved;
  const std::uint64_t left = count - moved;
  switch (result.error) {
    case EEXIST:
      // Present already, not by uvmem (claims keep fault threads apart).
      run.at(q).store(kPteForeign, std::memory_order_release);
      pool_->Free(fq, Order{0});
      counters.races_lost.fetch_add(1, std::memory_order_relaxed);
      (void)uffd_->Wake(range.PageAddress(q), kPageSize);
      if (left > 1) {
        MapFrames(range, entries, first_page, q + 1, fq + 1, left - 1, fault_page, thread_id);
      }
      return;
    case ESRCH:  // the process is exiting
      Abandon(range, entries, first_page, q, fq, left, fault_page, result.error, thread_id);
      return;
    default:
      if (left > 1) {
        // EINVAL/ENOENT on a stretch: it may cross a VMA boundary inside the range (the
        // program split it with mprotect, madvise, mlock or mbind). Page by page, each
        // request lies in one VMA.
        for (std::uint64_t k = 0; k < left; ++k) {
          MapFrames(range, entries, first_page, q + k, fq + k, 1, fault_page, thread_id);
        }
        return;
      }
      // EBUSY (a shared source page), EINVAL, ENOMEM: copy it instead.
      CopyFrames(range, entries, first_page, q, fq, 1, fault_page, thread_id);
      return;
  }
}

void DemandZeroFiller::CopyFrames(VmRange& range, std::atomic<Pte>* entries,
                                  std::uint64_t first_page, std::uint64_t page, FrameNumber frame,
                                  std::uint64_t count, std::uint64_t fault_page,
                                  std::uint32_t thread_id) {
  const Run run{entries, first_page};
  VmRangeCounters& counters = range.counters();
  const UffdResult result = uffd_->Copy(range.PageAddress(page), zero_source_, count << kPageShift,
                                        UffdCopyMode{.dontwake = true});
  const std::uint64_t copied = result.bytes_done >> kPageShift;
  for (std::uint64_t k = 0; k < copied; ++k) {
    run.at(page + k).store(MakePresentPte(frame + k), std::memory_order_release);
  }
  if (copied > 0) {
    counters.pages_copied.fetch_add(copied, std::memory_order_relaxed);
    counters.pages_filled.fetch_add(copied, std::memory_order_relaxed);
    counters.fault_around_pages.fetch_add(copied - (Contains(page, copied, fault_page) ? 1 : 0),
                                          std::memory_order_relaxed);
    counters.AddResident(copied);
  }
  if (result.ok()) return;
  const std::uint64_t q = page + copied;
  const FrameNumber fq = frame + copied;
  const std::uint64_t left = count - copied;
  if (result.error == EEXIST) {
    run.at(q).store(kPteForeign, std::memory_order_release);
    pool_->Free(fq, Order{0});
    counters.races_lost.fetch_add(1, std::memory_order_relaxed);
    (void)uffd_->Wake(range.PageAddress(q), kPageSize);
    if (left > 1) {
      CopyFrames(range, entries, first_page, q + 1, fq + 1, left - 1, fault_page, thread_id);
    }
    return;
  }
  if (left > 1 && result.error != ESRCH) {
    // The stretch may cross a VMA boundary inside the range: page by page.
    for (std::uint64_t k = 0; k < left; ++k) {
      CopyFrames(range, entries, first_page, q + k, fq + k, 1, fault_page, thread_id);
    }
    return;
  }
  Abandon(range, entries, first_page, q, fq, left, fault_page, result.error, thread_id);
}

void DemandZeroFiller::Abandon(VmRange& range, std::atomic<Pte>* entries,
                               std::uint64_t first_page, std::uint64_t page, FrameNumber frame,
                               std::uint64_t count, std::uint64_t fault_page, int error,
                               std::uint32_t thread_id) {
  const Run run{entries, first_page};
  for (std::uint64_t k = 0; k < count; ++k) pool_->Free(frame + k, Order{0});
  // ENOENT/ESRCH: the range is being released or the process is exiting; EAGAIN: the
  // address space is changing. Unclaim and wake: the threads fault again (or not at all).
  const bool transient = error == ENOENT || error == ESRCH || error == EAGAIN;
  for (std::uint64_t q = page; q < page + count; ++q) {
    if (q == fault_page && !transient) continue;
    run.at(q).store(0, std::memory_order_release);
  }
  (void)uffd_->Wake(range.PageAddress(page), count << kPageShift);
  if (!transient && Contains(page, count, fault_page)) {
    KillFaultingThread(range, &run.at(fault_page), fault_page, thread_id,
                       "the kernel refused to map it", error);
  }
}

void DemandZeroFiller::Oom(VmRange& range, std::atomic<Pte>* entry, std::uint64_t page,
                           std::uint32_t thread_id) {
  VmRangeCounters& counters = range.counters();
  counters.oom_kills.fetch_add(1, std::memory_order_relaxed);
  if (!counters.oom_reported.exchange(true, std::memory_order_relaxed)) {
    const std::uint64_t resident = counters.resident_pages.load(std::memory_order_relaxed);
    ReportWarning(
        "out of frames: range '{}' [{:#x}, +{} MiB) has {} pages ({} MiB) resident; the frame "
        "pool's {} frames ({} MiB) are all in use and nothing can be reclaimed. The faulting "
        "thread gets SIGBUS. Raise the pool: RuntimeOptions::pool_bytes_total or "
        "pool_bytes_per_node (uvmem_runtime_options.pool_bytes_total in C).",
        range.name(), range.start(), range.length_bytes() >> 20, resident, resident >> 8,
        pool_->total_frames(), pool_->total_frames() >> 8);
  }
  KillFaultingThread(range, entry, page, thread_id, nullptr, ENOMEM);
}

void DemandZeroFiller::KillFaultingThread(VmRange& range, std::atomic<Pte>* entry,
                                          std::uint64_t page, std::uint32_t thread_id,
                                          const char* why, int error) {
  void* address = range.PageAddress(page);
  if (why != nullptr && error != 0) {
    ReportWarning("cannot map page {} of range '{}': {} ({}); the faulting thread gets SIGBUS",
                  address, range.name(), why, std::strerror(error));
  }
  if (entry != nullptr) entry->store(kPtePoisoned, std::memory_order_release);
  if (config_.have_poison) {
    const UffdResult result = uffd_->Poison(address, kPageSize);
    if (result.ok()) return;
    if (result.error == EEXIST) {  // poisoned before, or mapped: let the thread retry
      (void)uffd_->Wake(address, kPageSize);
      return;
    }
  }
  if (thread_id != 0) {
    const int err = SignalThread(static_cast<int>(thread_id), SIGBUS);
    if (err == 0 || err == ESRCH) {  // ESRCH: the thread is gone; nobody waits
      (void)uffd_->Wake(address, kPageSize);
      return;
    }
  }
  ReportFatal("cannot deliver SIGBUS for page {} of range '{}' (no UFFDIO_POISON, no thread id)",
              address, range.name());
}

}  // namespace uvmem::internal
