// swap_in.h — SwapIn: serves a fault on a swapped-out page (the kernel's do_swap_page).
//
// The faulting page's entry is claimed (swap entry → claimed swap entry, which keeps the
// slot), and so are the following swapped pages to read ahead: for a sequential stream of
// faults (the range's previous fault just before this one) the next pages of the range,
// a window ramping up with the stream (16, 32, ...) to the range's readahead (at most
// 256 pages: reads of up to 1 MiB), whatever their slots — the kernel's VMA-based swap
// readahead (mm/swap_state.c). Any other fault reads its own page only: the kernel's
// cluster readahead shrinks when its pages go unused (swapin_nr_pages), and measured here
// random faults used 5–15 % of eight-page clusters (docs/benchmarks.md). Each page gets a
// frame, its token
// for the budget (readahead takes what the budget has left; only the faulting page may
// reclaim). The run is read into a bounce area (one preadv per run of consecutive slots),
// checked against the checksums, and copied into the range with UFFDIO_COPY in runs — a
// copy costs less than the TLB-flush IPI a move makes — then woken once.
//
// The faulting page starts on the active list (it refaulted: it is in use); readahead
// pages start inactive and are marked so reclaim can count readahead hits.
//
// Clean pages: while the swap device is at most half full (the kernel's vm_swap_full()),
// a page read back keeps its slot and, with UFFD_FEATURE_WP_ASYNC, is installed
// write-protected (UFFDIO_COPY_MODE_WP): a later write lifts the protection without a
// fault, PAGEMAP_SCAN sees it, and reclaim drops an unwritten page without writing it
// again (reclaim.h). Otherwise the slot is released at once.
//
// Errors: a faulting page whose slot cannot be read (EIO) or whose checksum is wrong is
// poisoned (UFFDIO_POISON: SIGBUS on access, EFAULT in system calls) with a message naming
// the address and the cause; the data is never replaced by zeros. A page read ahead whose
// read fails stays in swap for its own fault to try again. A budget that stays spent
// gives the faulting thread SIGBUS with a message (reclaim.h) and leaves the page in swap.
//
// Thread-safety: HandleFault may run on any number of fault threads at once.
#ifndef UVMEM_VM_SWAP_IN_H_
#define UVMEM_VM_SWAP_IN_H_

#include <absl/status/status.h>

#include <atomic>
#include <cstdint>

#include "platform/userfaultfd.h"
#include "vm/latency_histogram.h"
#include "vm/range_frames.h"
#include "vm/vm_range.h"

namespace uvmem::internal {

class DemandZeroFiller;

struct SwapInCounters {
  std::atomic<std::uint64_t> refaults{0};          // faults on swapped pages
  std::atomic<std::uint64_t> pages_swapped_in{0};  // pages read back, readahead included
  std::atomic<std::uint64_t> readahead_pages{0};
  std::atomic<std::uint64_t> pages_poisoned{0};    // read error or checksum mismatch
};

class SwapIn {
 public:
  static constexpr std::size_t kMaxRunPages = 256;  // 1 MiB: one read of a stream

  // `track_clean`: WP_ASYNC and PAGEMAP_SCAN are available (keep slots of clean pages).
  SwapIn(RangeFrames* frames, const Userfaultfd* uffd, DemandZeroFiller* filler,
         bool track_clean);
  ~SwapIn();
  SwapIn(const SwapIn&) = delete;
  SwapIn& operator=(const SwapIn&) = delete;
  // Maps the bounce areas. Errors: ResourceExhausted (no address space).
  absl::Status Init();

  // Serves a missing fault at page `page` of `range`, whose entry `entry` held `pte` (a
  // swap entry) when the fault thread looked. `local` is the handling CPU's node.
  void HandleFault(VmRange& range, std::uint64_t page, std::atomic<Pte>* entry, Pte pte,
                   NodeId local, std::uint32_t thread_id);

  const SwapInCounters& counters() const { return counters_; }
  const LatencyHistogram& latency() const { return latency_; }

 private:
  // Claims the swapped pages after `page` to read with it (a sequential stream's window;
  // none for a random fault) into entries[1..n) / slots[1..n); returns n.
  std::size_t ClaimReadahead(VmRange& range, std::uint64_t page, std::atomic<Pte>* entry,
                             std::atomic<Pte>** entries, SwapSlot* slots);
  // Copies `count` pages read into `bytes` to pages [page, ...), with frames[i] as page
  // i's token: each entry present, its slot kept as the clean copy or released. A page
  // that cannot be mapped loses its swapped bytes with a message (the program mapped
  // something over it).
  void MapRun(VmRange& range, std::uint64_t page, const FrameNumber* frames, const char* bytes,
              std::size_t count, std::atomic<Pte>** entries, const SwapSlot* slots,
              bool keep_slots, std::uint64_t fault_page);
  // A bounce area of kMaxRunPages pages for one swap-in (waits while all are in use).
  char* AcquireBounce();
  void ReleaseBounce(char* area);
  static constexpr int kBounceAreas = 16;
  static constexpr std::size_t kBounceBytes = kBounceAreas * kMaxRunPages * kPageSize;
  // Gives a claimed page back to swap, or — when Range::Discard marked it meanwhile —
  // empties the entry and releases the slot.
  void Unclaim(VmRange& range, std::atomic<Pte>* entry, SwapSlot slot);
  // The faulting page's slot could not be read: poisoned, with a message.
  void PoisonPage(VmRange& range, std::uint64_t page, std::atomic<Pte>* entry, FrameNumber frame,
                  SwapSlot slot, int error, std::uint32_t thread_id);

  RangeFrames* const frames_;
  const Userfaultfd* const uffd_;
  DemandZeroFiller* const filler_;
  const bool track_clean_;
  char* bounce_ = nullptr;
  std::atomic<bool> bounce_busy_[kBounceAreas] = {};
  std::atomic<bool> read_error_reported_{false};
  SwapInCounters counters_;
  LatencyHistogram latency_;
};

}  // namespace uvmem::internal

#endif  // UVMEM_VM_SWAP_IN_H_
