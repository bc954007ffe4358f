#include "vm/demand_zero.h"

#include <csignal>
#include <optional>
#include <cstring>

#include "platform/memory_map.h"
#include "platform/report.h"
#include "platform/thread.h"
#include "vm/cow.h"
#include "vm/reclaim.h"
#include "vm/swap_in.h"

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

constexpr std::uint64_t kNoFaultPage = ~std::uint64_t{0};
// The fault page of a fill asked for by Populate: nobody faulted, nothing was speculative.
constexpr std::uint64_t kPopulatePage = kNoFaultPage - 1;

// Counts `mapped` pages from `page` on that were not the faulting one: filled ahead of a
// fault (fault-around, readahead), or populated on request.
void CountUnfaulted(VmRangeCounters& counters, std::uint64_t page, std::uint64_t mapped,
                    std::uint64_t fault_page) {
  if (fault_page == kPopulatePage) {
    counters.pages_populated.fetch_add(mapped, std::memory_order_relaxed);
    return;
  }
  counters.fault_around_pages.fetch_add(mapped - (Contains(page, mapped, fault_page) ? 1 : 0),
                                        std::memory_order_relaxed);
}

}  // namespace

DemandZeroFiller::DemandZeroFiller(RangeFrames* frames, const Userfaultfd* uffd,
                                   const void* zero_source, FillConfig config)
    : frames_(frames),
      pool_(&frames->pool()),
      uffd_(uffd),
      zero_source_(zero_source),
      config_(config) {
  UVMEM_CHECK(config.fault_around_pages >= 1 && config.fault_around_pages <= kMaxWindowPages);
  UVMEM_CHECK((config.fault_around_pages & (config.fault_around_pages - 1)) == 0);
}

void DemandZeroFiller::HandleMissingFault(VmRange& range, std::uintptr_t address, NodeId local,
                                          std::uint32_t thread_id) {
  VmRangeCounters& counters = range.counters();
  counters.faults.fetch_add(1, std::memory_order_relaxed);
  const std::uint64_t page = (address - range.start()) >> kPageShift;
  const std::uint64_t window = range.fault_around_pages();
  const std::uint64_t first = page & ~(window - 1);
  const std::uint64_t end = std::min(first + window, range.pages());

  std::atomic<Pte>* fault_entry = range.page_table().LookupOrCreate(page);
  if (fault_entry == nullptr) {
    KillFaultingThread(range, nullptr, page, thread_id,
                       "no frame is left for the range's page table (raise "
                       "RuntimeOptions::pool_bytes_total)",
                       ENOMEM);
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
    if (PteIsCow(expected) && cow_ != nullptr) {
      cow_->HandleCowFault(range, page, local, thread_id);
      return;
    }
    if (PteIsSwapped(expected) && swap_in_ != nullptr) {
      swap_in_->HandleFault(range, page, fault_entry, expected, local, thread_id);
      return;
    }
    if (PteIsClaimed(expected) || PteInWriteback(expected)) {
      // Another fault thread is filling it, or reclaim is writing it out; their wake
      // covers this thread (after writeback it faults again and is served from swap).
      counters.races_lost.fetch_add(1, std::memory_order_relaxed);
    } else {
      RefillIfDiscarded(range, *fault_entry, page, expected);
    }
    // A stream that caught up with its own readahead keeps the readahead going.
    if (range.readahead_pages() != 0) ReadAhead(range, page, end, local);
    return;
  }
  ClaimAndFill(range, run.first_entry, first, end, page, local, thread_id);
  // Fills ran with DONTWAKE so that entries and counters are up to date before any
  // faulting thread resumes; one wake for the whole window.
  (void)uffd_->Wake(range.PageAddress(first), (end - first) << kPageShift);
  if (range.readahead_pages() != 0) ReadAhead(range, page, end, local);
}

std::uint64_t DemandZeroFiller::ClaimAndFill(VmRange& range, std::atomic<Pte>* entries,
                                             std::uint64_t first, std::uint64_t end,
                                             std::uint64_t fault_page, NodeId local,
                                             std::uint32_t thread_id) {
  // Claim every empty page of [first, end) (the fault page is claimed already) and fill
  // each contiguous claimed stretch.
  const Run run{entries, first};
  std::uint64_t run_start = end;
  std::uint64_t claimed_pages = 0;
  for (std::uint64_t q = first; q <= end; ++q) {
    bool claimed = false;
    if (q == fault_page) {
      claimed = true;
    } else if (q < end) {
      Pte zero = 0;
      std::atomic<Pte>& e = run.at(q);
      claimed = e.load(std::memory_order_relaxed) == 0 &&
                e.compare_exchange_strong(zero, kPteClaimed, std::memory_order_acq_rel);
    }
    if (claimed) ++claimed_pages;
    if (claimed && run_start == end) run_start = q;
    if (!claimed && run_start != end) {
      FillRun(range, entries, first, run_start, q, fault_page, local, thread_id);
      run_start = end;
    }
  }
  return claimed_pages;
}

std::uint64_t DemandZeroFiller::Populate(VmRange& range, std::uint64_t first, std::uint64_t end,
                                         NodeId local) {
  std::uint64_t claimed = 0;
  while (first < end) {
    // One window per leaf table of the page table (FillRun's entries cover one window).
    const std::uint64_t window_end = std::min(end, (first | (kMaxWindowPages - 1)) + 1);
    std::atomic<Pte>* entries = range.page_table().LookupOrCreate(first);
    if (entries == nullptr) break;
    claimed += ClaimAndFill(range, entries, first, window_end, kPopulatePage, local, 0);
    // A thread that touched the stretch meanwhile waits for these pages.
    (void)uffd_->Wake(range.PageAddress(first), (window_end - first) << kPageShift);
    first = window_end;
  }
  return claimed;
}

void DemandZeroFiller::ReadAhead(VmRange& range, std::uint64_t fault_page, std::uint64_t window_end,
                                 NodeId local) {
  // A fault shortly after the previous one of the range, further on, is a sequential
  // stream (the jump allows for the pages filled ahead last time). Fill the next
  // readahead_pages after the window now, window by window, after the faulting thread
  // is awake: it works on this window while this thread fills the next ones.
  const std::uint64_t window = range.fault_around_pages();
  const std::uint64_t readahead = range.readahead_pages();
  const std::uint64_t previous =
      range.last_fault_page.exchange(fault_page, std::memory_order_relaxed);
  const bool sequential = previous != VmRange::kNoPage && fault_page > previous &&
                          fault_page - previous <= readahead + 2 * window;
  if (!sequential) return;
  const std::uint64_t stop = std::min(window_end + readahead, range.pages());
  for (std::uint64_t first = window_end; first < stop; first += window) {
    // Faults waiting come first: readahead is a guess, they are not.
    if (WaitReadable(uffd_->fd(), -1, 0) == WaitResult::kReadable) return;
    const std::uint64_t end = std::min(first + window, stop);
    std::atomic<Pte>* entries = range.page_table().LookupOrCreate(first);
    if (entries == nullptr) return;
    ClaimAndFill(range, entries, first, end, kNoFaultPage, local, 0);
    (void)uffd_->Wake(range.PageAddress(first), (end - first) << kPageShift);
  }
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
    std::optional<CopyPlacement::Scope> place;  // a foreign page has no frame (no node)
    if (PteHasFrame(mapped)) place.emplace(frames_->copy_placement(), range, page, 1, PteFrame(mapped));
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
  const unsigned flags = RangeFrames::AllocFlagsFor(range);
  std::uint64_t page = begin;
  while (page < end) {
    const NodeId node = range.NodeForPage(page, local);
    const std::uint64_t want = policy.kind == NumaPolicy::Kind::kInterleave ? 1 : end - page;
    int order = std::min(FloorLog2(want), kMaxOrder);
    std::optional<FrameNumber> frame;
    RangeFrames::Shortage why = RangeFrames::Shortage::kNone;
    for (;;) {
      // Pages around the fault never make reclaim evict: only the faulting page does.
      frame = frames_->Allocate(range, order, node, flags, /*may_reclaim=*/false, &why);
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
      frame = frames_->Allocate(range, 0, range.NodeForPage(fault_page, local),
                                flags | kAllocUseReserves, /*may_reclaim=*/true, &why);
      if (!frame) {
        if (why == RangeFrames::Shortage::kBudget) {
          run.at(fault_page).store(0, std::memory_order_release);
          BudgetExhausted(range, fault_page, thread_id);
        } else {
          Oom(range, &run.at(fault_page), fault_page, thread_id);
        }
        return;
      }
      MapFrames(range, entries, first_page, fault_page, *frame, 1, fault_page, thread_id);
      return;
    }
    const std::uint64_t count = std::uint64_t{1} << order;
    MapFrames(range, entries, first_page, page, *frame, count, fault_page, thread_id);
    page += count;
  }
}

void DemandZeroFiller::PrepareSource(FrameNumber frame, std::uint64_t count) {
  // Every frame here is backed (not kFrameHole). kFrameZeroed: ready; unknown (another
  // holder used it, or it came back from a range): zero it by hand.
  for (std::uint64_t k = 0; k < count; ++k) {
    FrameDescriptor& d = pool_->Descriptor(frame + k);
    if (!(d.flags & kFrameZeroed)) std::memset(pool_->FrameAddress(frame + k), 0, kPageSize);
    d.flags = kFrameZeroed;
  }
}

void DemandZeroFiller::MapFrames(VmRange& range, std::atomic<Pte>* entries,
                                 std::uint64_t first_page, std::uint64_t page, FrameNumber frame,
                                 std::uint64_t count, std::uint64_t fault_page,
                                 std::uint32_t thread_id) {
  if (!config_.use_move) {
    CopyFrames(range, entries, first_page, page, frame, count, fault_page, thread_id);
    return;
  }
  // A frame whose arena page exists moves in; a hole has no page to move, and making one
  // (populate) then moving it costs more than COPY (docs/design.md), so holes are copied.
  std::uint64_t k = 0;
  while (k < count) {
    const bool hole = pool_->Descriptor(frame + k).flags & kFrameHole;
    std::uint64_t j = k + 1;
    while (j < count &&
           static_cast<bool>(pool_->Descriptor(frame + j).flags & kFrameHole) == hole) {
      ++j;
    }
    if (hole) {
      CopyFrames(range, entries, first_page, page + k, frame + k, j - k, fault_page, thread_id);
    } else {
      MoveFrames(range, entries, first_page, page + k, frame + k, j - k, fault_page, thread_id);
    }
    k = j;
  }
}

void DemandZeroFiller::MoveFrames(VmRange& range, std::atomic<Pte>* entries,
                                  std::uint64_t first_page, std::uint64_t page, FrameNumber frame,
                                  std::uint64_t count, std::uint64_t fault_page,
                                  std::uint32_t thread_id) {
  PrepareSource(frame, count);
  const Run run{entries, first_page};
  VmRangeCounters& counters = range.counters();
  // Counted before the ioctl: a page is usable the moment it is mapped (readahead pages
  // are touched without waiting for a wake), and statistics must not trail the memory.
  counters.CountFilled(count, &VmRangeCounters::pages_moved);
  const UffdResult result = uffd_->Move(range.PageAddress(page), pool_->FrameAddress(frame),
                                        count << kPageShift, UffdMoveMode{.dontwake = true});
  const std::uint64_t moved = result.bytes_done >> kPageShift;
  for (std::uint64_t k = 0; k < moved; ++k) {
    pool_->Descriptor(frame + k).flags = kFrameInRange;  // the page left the arena
    run.at(page + k).store(MakePresentPte(frame + k), std::memory_order_release);
  }
  CountUnfaulted(counters, page, moved, fault_page);
  counters.UncountFilled(count - moved, &VmRangeCounters::pages_moved);
  if (result.ok()) return;

  const std::uint64_t q = page + moved;
  const FrameNumber fq = frame + moved;
  const std::uint64_t left = count - moved;
  switch (result.error) {
    case EEXIST:
      MarkForeign(range, run.at(q), q, fq);
      if (left > 1) {
        MoveFrames(range, entries, first_page, q + 1, fq + 1, left - 1, fault_page, thread_id);
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
          MoveFrames(range, entries, first_page, q + k, fq + k, 1, fault_page, thread_id);
        }
        return;
      }
      // EBUSY (a shared source page), EINVAL, ENOMEM: copy it instead.
      CopyFrames(range, entries, first_page, q, fq, 1, fault_page, thread_id);
      return;
  }
}

void DemandZeroFiller::MarkForeign(VmRange& range, std::atomic<Pte>& entry, std::uint64_t page,
                                   FrameNumber unused) {
  // Present already, and not by uvmem (claims keep fault threads apart): record it, give
  // the frame back, wake whoever waits on the page.
  entry.store(kPteForeign, std::memory_order_release);
  frames_->Free(unused);
  range.counters().races_lost.fetch_add(1, std::memory_order_relaxed);
  (void)uffd_->Wake(range.PageAddress(page), kPageSize);
}

void DemandZeroFiller::CopyFrames(VmRange& range, std::atomic<Pte>* entries,
                                  std::uint64_t first_page, std::uint64_t page, FrameNumber frame,
                                  std::uint64_t count, std::uint64_t fault_page,
                                  std::uint32_t thread_id) {
  const Run run{entries, first_page};
  VmRangeCounters& counters = range.counters();
  counters.CountFilled(count, &VmRangeCounters::pages_copied);  // before: see MoveFrames
  // One block of the pool (one node), or one page under interleave: one node for all.
  const CopyPlacement::Scope place(frames_->copy_placement(), range, page, count, frame);
  const UffdResult result = uffd_->Copy(range.PageAddress(page), zero_source_, count << kPageShift,
                                        UffdCopyMode{.dontwake = true});
  const std::uint64_t copied = result.bytes_done >> kPageShift;
  for (std::uint64_t k = 0; k < copied; ++k) {
    run.at(page + k).store(MakePresentPte(frame + k), std::memory_order_release);
  }
  CountUnfaulted(counters, page, copied, fault_page);
  counters.UncountFilled(count - copied, &VmRangeCounters::pages_copied);
  if (result.ok()) return;
  const std::uint64_t q = page + copied;
  const FrameNumber fq = frame + copied;
  const std::uint64_t left = count - copied;
  if (result.error == EEXIST) {
    MarkForeign(range, run.at(q), q, fq);
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

void DemandZeroFiller::Abandon(VmRange& range, std::atomic<Pte>* entries, std::uint64_t first_page,
                               std::uint64_t page, FrameNumber frame, std::uint64_t count,
                               std::uint64_t fault_page, int error, std::uint32_t thread_id) {
  const Run run{entries, first_page};
  for (std::uint64_t k = 0; k < count; ++k) frames_->Free(frame + k);
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

void DemandZeroFiller::BudgetExhausted(VmRange& range, std::uint64_t page,
                                       std::uint32_t thread_id) {
  range.counters().oom_kills.fetch_add(1, std::memory_order_relaxed);
  if (Reclaimer* reclaimer = frames_->reclaimer()) {
    reclaimer->ReportExhausted(range, "every resident page is busy or swap is full");
  }
  // The page stays missing: a thread that survives the signal faults again and may
  // find room then.
  if (thread_id != 0) (void)SignalThread(static_cast<int>(thread_id), SIGBUS);
  (void)uffd_->Wake(range.PageAddress(page), kPageSize);
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
    if (result.error == EEXIST && entry == nullptr) {  // poisoned before, or mapped: retry
      (void)uffd_->Wake(address, kPageSize);
      return;
    }
    // EEXIST on a page uvmem owns and has just marked poisoned: the PTE is not none but a
    // marker — a write-protect marker left by dirty tracking (WP_ASYNC) on a page that was
    // swapped out. Poison cannot replace it, and a retry would fault again, forever (a
    // TSan run of SwapDeathTest caught the thread and its fault thread spinning). SIGBUS
    // by signal instead.
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
