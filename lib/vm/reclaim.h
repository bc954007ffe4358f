// reclaim.h — Reclaimer: evicts cold pages of ranges to the swap device.
//
// Lists. User space sees no accessed bits, so the kernel's active/inactive LRU lists
// (mm/vmscan.c) are kept as a clock over each range's page table: a present entry with
// kPteActive is on the active list, without it on the inactive one, and each range has a
// hand (VmRange::reclaim_hand) that sweeps its pages in address order. New pages start
// inactive (as anonymous pages do since Linux 5.9); a page read back from swap — a
// refault, the signal the kernel's workingset code uses — starts active. The hand demotes
// an active page (clears the bit: its second chance) and evicts an inactive one. Ranges
// are swept round robin, so every range gives back in proportion to what it holds.
//
// Evicting a batch of up to 64 pages (writeback that never loses a write):
//   1. claim each page's entry (present → writeback): faults on it now wait;
//   2. a page whose frame still has a clean slot (swap_in.h) and was not written since
//      it came back — PAGEMAP_SCAN's PAGE_IS_WRITTEN under UFFD_FEATURE_WP_ASYNC — needs
//      no write;
//   3. unmap the pages with UFFDIO_MOVE into a staging area (victim i at its page i, so a
//      run of consecutive pages is one move and one TLB flush): from here the program
//      cannot change the bytes (a writer faults as missing and waits), and the staging
//      page holds exactly what the program last wrote;
//   4. write the dirty pages to freshly allocated slots (consecutive slots from one
//      cluster: one pwritev per run, straight from the staging area);
//   5. each entry becomes a swap entry and the frame goes back to the pool; the staging
//      area is dropped (MADV_DONTNEED: the memory is free now); the span is woken once,
//      and waiting threads fault again and are served from swap.
// Shared pages (clones, cow.h): a held shared frame is written once and every range
// naming it then reads that slot; a preserved one (mapped by no range) is written from
// its arena page when a sweep meets a CoW entry naming it.
// A page the kernel will not move (EBUSY: shared with a forked child, or pinned for
// I/O) stays resident and is made active. A write that fails (ENOSPC, EIO) or finds the
// device full moves the frame back into place: the page stays resident, the error is
// counted and reported once, and reclaim moves on to other pages.
//
// Background and direct reclaim: MemoryBudget's low watermark wakes the reclaimer
// thread ("uvmem-reclaim"), which evicts until the high watermark is free; a fault whose
// charge does not fit reclaims directly, on its fault thread.
//
// Thread-safety: every public method is thread-safe; any number of direct reclaims may
// run beside the background thread (entries are claimed by compare-and-swap).
#ifndef UVMEM_VM_RECLAIM_H_
#define UVMEM_VM_RECLAIM_H_

#include <absl/status/status.h>

#include <atomic>
#include <cstdint>
#include <thread>

#include "platform/pagemap.h"
#include "platform/thread.h"
#include "platform/userfaultfd.h"
#include "vm/address_space.h"
#include "vm/cow.h"
#include "vm/range_frames.h"

namespace uvmem::internal {

struct ReclaimCounters {
  std::atomic<std::uint64_t> pages_swapped_out{0};
  std::atomic<std::uint64_t> clean_pages_dropped{0};
  std::atomic<std::uint64_t> write_failures{0};   // pages kept resident after a failed write
  std::atomic<std::uint64_t> swap_full{0};        // pages kept resident: no free slot
  std::atomic<std::uint64_t> busy_pages{0};       // pages the kernel would not move
  std::atomic<std::uint64_t> reclaim_passes{0};
  std::atomic<std::uint64_t> direct_reclaims{0};   // faults that reclaimed (not retries)
  std::atomic<std::uint64_t> budget_exhausted{0};  // faults answered with SIGBUS
  std::atomic<std::uint64_t> readahead_hits{0};
};

class Reclaimer {
 public:
  static constexpr std::size_t kBatchPages = 64;

  // `pagemap` may be null (no PAGEMAP_SCAN / WP_ASYNC: every page is written out).
  Reclaimer(RangeFrames* frames, const Userfaultfd* uffd, AddressSpace* space,
            const PagemapScanner* pagemap);
  ~Reclaimer();  // Stop()
  Reclaimer(const Reclaimer&) = delete;
  Reclaimer& operator=(const Reclaimer&) = delete;

  // Pages shared with clones (cow.h) are evicted through `cow`. Before Start.
  void SetCopyOnWrite(CopyOnWrite* cow) { cow_ = cow; }

  // Starts the background thread. Errors: ResourceExhausted (no eventfd).
  absl::Status Start();
  void Stop();

  // The budget crossed its low watermark. Cheap when the thread is awake already.
  void Wake();
  // Evicts at least `pages` pages if it can (a fault thread whose charge did not fit).
  // Returns the pages evicted (0: nothing could go). `first` counts a direct reclaim
  // (retries of the same fault are not counted again).
  std::uint64_t ReclaimDirect(std::uint64_t pages, bool first);

  const ReclaimCounters& counters() const { return counters_; }

  // Start of the staging areas (kStagingBytes): a writeback entry's page n is at
  // staging() + n × 4 KiB. For a forked child's copy (fork_copy.h).
  const char* staging() const { return staging_; }

  // Counts a fault refused for the budget; reports (once per runtime) that the budget is
  // spent and nothing can be evicted.
  void ReportExhausted(const VmRange& range, const char* why);

 private:
  struct Victim {
    std::atomic<Pte>* entry;
    std::uint64_t page;
    FrameNumber frame;  // the page's frame (its token: the page itself is moved to buffer)
    char* buffer;       // where the page's bytes are once unmapped (a staging page)
    bool unwritten;     // the sweep's PAGEMAP_SCAN saw it not written since protected
    bool shared;        // a held shared frame (cow.h): written once for every sharer
  };
  static constexpr int kStagingAreas = 16;  // reclaims at once (background + direct)
  static constexpr std::size_t kStagingBytes = kStagingAreas * kBatchPages * kPageSize;
  char* AcquireStaging();
  // Index of a staging page from the start of all the areas (what writeback entries hold).
  std::uint64_t StagingPage(const char* buffer) const;
  void ReleaseStaging(char* area);
  void FreeVictimFrame(const Victim& v);
  void Loop();
  // Sweeps the ranges until `goal` pages are evicted or two rounds found nothing.
  std::uint64_t Reclaim(std::uint64_t goal);
  std::uint64_t SweepRange(VmRange& range, std::uint64_t goal, std::uint64_t max_scan,
                           char* staging);
  std::uint64_t EvictBatch(VmRange& range, Victim* victims, std::size_t count, char* staging);
  // Marks pages not written since they were read back (their slot still holds them), by
  // the written bits the sweep read; releases the stale slots of the others.
  void FindClean(const Victim* victims, std::size_t count, bool* clean);
  // Unmaps victims into their staging pages; returns how many were unmapped (compacted
  // to the front of `victims`); the rest are put back or dropped.
  std::size_t Unmap(VmRange& range, Victim* victims, std::size_t count, bool* clean);
  // Puts a victim back in place, resident and active (a refused move or failed write).
  void PutBack(VmRange& range, const Victim& v, bool moved_out);
  // Ends a victim's writeback with `final_pte`; false when Range::Discard dropped the
  // page meanwhile (the entry is then empty).
  bool FinishWriteback(const Victim& v, Pte final_pte) const;
  // The entry a victim has while it is written out.
  Pte WritebackPte(const Victim& v) const;

  RangeFrames* const frames_;
  const Userfaultfd* const uffd_;
  AddressSpace* const space_;
  const PagemapScanner* const pagemap_;
  CopyOnWrite* cow_ = nullptr;
  char* staging_ = nullptr;  // kStagingAreas areas of kBatchPages pages, uffd-registered
  std::atomic<bool> staging_busy_[kStagingAreas] = {};
  WakeupFd wakeup_;
  std::atomic<bool> wake_pending_{false};
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::atomic<std::uint64_t> next_range_{0};
  std::atomic<bool> exhausted_reported_{false};
  std::atomic<bool> write_error_reported_{false};
  ReclaimCounters counters_;
};

}  // namespace uvmem::internal

#endif  // UVMEM_VM_RECLAIM_H_
