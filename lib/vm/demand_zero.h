// demand_zero.h — DemandZeroFiller: serves a missing-page fault with zeroed pool frames.
//
// One fault at page P of a range becomes one fill of the fault-around window: the
// aligned window of `fault_around_pages` pages holding P, clamped to the range. Every
// page of the window that has no entry is claimed in the range's page table (a CAS from
// 0, so no two fault threads fill one page); contiguous claimed runs are filled with
// frames from the pool on the node the range's policy names, allocated as buddy blocks so
// a run is one ioctl:
//
//   MOVE path (kernel 6.8+): frames whose arena page exists (prefaulted, or moved back
//     from a released range) are zeroed if not known zero (frame.h) and moved into the
//     range with one UFFDIO_MOVE; the frames keep their node (the arena is bound to it).
//     Frames that are holes are filled by COPY: creating their page and then moving it
//     costs more than COPY does (measured, docs/design.md). EBUSY (a source
//     page that is shared) and other refusals fall back to COPY for the rest of the run.
//   COPY path (forced by option, or no MOVE): UFFDIO_COPY from a zero buffer; the kernel
//     allocates the page by the range's mbind policy, and the pool frame is the budget's
//     token for it (its node is the node the policy names).
//
// Fills run with DONTWAKE; the window is woken once at the end, after the page table and
// the counters are updated, so a thread that resumes sees consistent statistics.
// EEXIST means the page is present already (another thread, or not uvmem): the filler
// records it, wakes the page and carries on with the rest of the run. A refusal of a
// multi-page stretch (EINVAL/ENOENT: it crosses a VMA boundary the program made inside
// the range with mprotect, madvise or mbind) is retried page by page. A fault on a page
// the table says is mapped is either stale or a page the program discarded
// (MADV_DONTNEED); one COPY of zeros tells which and repairs the latter. Partial completion
// is resumed by the platform wrappers. A fault whose own page cannot get a frame even
// from the reserves is answered with UFFDIO_POISON (SIGBUS for the faulting thread; on
// kernels without POISON, tgkill(SIGBUS)) and a message on stderr naming the range, its
// resident pages and how to raise the pool — never a hang, never a page of zeros where
// data should be.
//
// Sequential streams get readahead: after the faulting thread is woken, the next
// readahead_pages are filled window by window, so the thread runs while they fill.
//
// Thread-safety: HandleMissingFault may run on any number of fault threads at once.
// It never allocates from the heap.
#ifndef UVMEM_VM_DEMAND_ZERO_H_
#define UVMEM_VM_DEMAND_ZERO_H_

#include <cstddef>
#include <cstdint>

#include "frames/frame_pool.h"
#include "platform/userfaultfd.h"
#include "vm/range_frames.h"
#include "vm/vm_range.h"

namespace uvmem::internal {

struct FillConfig {
  bool use_move = true;                 // MOVE path (else COPY)
  std::size_t fault_around_pages = 64;  // power of two, 1..512
  bool have_poison = true;              // UFFDIO_POISON available
  // Pages filled ahead of a sequential stream of faults, after the faulting thread is
  // woken (0: off). A multiple of fault_around_pages is used.
  std::size_t readahead_pages = 256;
};

class SwapIn;
class CopyOnWrite;

class DemandZeroFiller {
 public:
  static constexpr std::size_t kMaxWindowPages = 512;

  // `zero_source` is kMaxWindowPages pages of readable zeros (the COPY source). Frames
  // come from `frames` (charged to the budget there).
  DemandZeroFiller(RangeFrames* frames, const Userfaultfd* uffd, const void* zero_source,
                   FillConfig config);
  // Faults on swapped pages go to `swap_in` (a runtime with a budget). Before faults run.
  void SetSwapIn(SwapIn* swap_in) { swap_in_ = swap_in; }
  // Faults on CoW entries (pages shared with a clone) go to `cow`. Before faults run.
  void SetCopyOnWrite(CopyOnWrite* cow) { cow_ = cow; }

  // Serves a missing fault at `address` inside `range`. `local` is the node of the
  // handling CPU (for the local policy); `thread_id` the faulting thread (0 unknown).
  void HandleMissingFault(VmRange& range, std::uintptr_t address, NodeId local,
                          std::uint32_t thread_id);

  // Fills pages [first, end) of `range` that have no entry, from the calling thread, as
  // if each window had faulted (MADV_POPULATE_WRITE's idea): no fault round trip. Pages
  // already present are left alone; a page that gets no frame stays empty (its own fault
  // will say why). Returns the pages claimed. Callable from any thread that does not
  // hold pool locks.
  std::uint64_t Populate(VmRange& range, std::uint64_t first, std::uint64_t end, NodeId local);

  const FillConfig& config() const { return config_; }
  // kMaxWindowPages pages of readable zeros.
  const void* zero_source() const { return zero_source_; }

  // The faulting thread's page cannot be filled: counts an out-of-frames kill, reports it
  // once, and answers with SIGBUS (KillFaultingThread).
  void Oom(VmRange& range, std::atomic<Pte>* pte, std::uint64_t page, std::uint32_t thread_id);
  // Poisons `page` (UFFDIO_POISON; without it, tgkill(SIGBUS) to `thread_id`), marks its
  // entry (if any) poisoned, and reports `why`/`error` when both are given.
  void KillFaultingThread(VmRange& range, std::atomic<Pte>* pte, std::uint64_t page,
                          std::uint32_t thread_id, const char* why, int error);
  // The budget stays spent for the faulting page: SIGBUS for the thread, the page as it was.
  void BudgetExhausted(VmRange& range, std::uint64_t page, std::uint32_t thread_id);

 private:
  struct Run;
  // `entries` is the page-table entry of page `first_page`, the start of the fault's
  // window; every page handled below lies in that window.
  void FillRun(VmRange& range, std::atomic<Pte>* entries, std::uint64_t first_page,
               std::uint64_t begin, std::uint64_t end, std::uint64_t fault_page, NodeId local,
               std::uint32_t thread_id);
  // Maps `count` frames starting at `frame` to pages [page, page + count); returns with
  // each page mapped, marked foreign, or unclaimed (its frame freed).
  void MapFrames(VmRange& range, std::atomic<Pte>* entries, std::uint64_t first_page,
                 std::uint64_t page, FrameNumber frame, std::uint64_t count,
                 std::uint64_t fault_page, std::uint32_t thread_id);
  void CopyFrames(VmRange& range, std::atomic<Pte>* entries, std::uint64_t first_page,
                  std::uint64_t page, FrameNumber frame, std::uint64_t count,
                  std::uint64_t fault_page, std::uint32_t thread_id);
  void MoveFrames(VmRange& range, std::atomic<Pte>* entries, std::uint64_t first_page,
                  std::uint64_t page, FrameNumber frame, std::uint64_t count,
                  std::uint64_t fault_page, std::uint32_t thread_id);
  // An ioctl found page `page` present (EEXIST): entry foreign, `unused` freed, woken.
  void MarkForeign(VmRange& range, std::atomic<Pte>& entry, std::uint64_t page,
                   FrameNumber unused);
  // Zeroes the (backed) arena pages of [frame, frame + count) that are not known zero.
  void PrepareSource(FrameNumber frame, std::uint64_t count);
  // Returns the pages it claimed (and filled, or gave up on).
  std::uint64_t ClaimAndFill(VmRange& range, std::atomic<Pte>* entries, std::uint64_t first,
                             std::uint64_t end, std::uint64_t fault_page, NodeId local,
                             std::uint32_t thread_id);
  void ReadAhead(VmRange& range, std::uint64_t fault_page, std::uint64_t window_end,
                 NodeId local);
  // Gives pages [page, page + count) up: entries back to 0, frames back to the pool; a
  // non-transient error on the faulting page kills the faulting thread (SIGBUS).
  void Abandon(VmRange& range, std::atomic<Pte>* entries, std::uint64_t first_page,
               std::uint64_t page, FrameNumber frame, std::uint64_t count,
               std::uint64_t fault_page, int error, std::uint32_t thread_id);
  // A fault on a page the table says is mapped: a stale message, or a page the program
  // discarded (MADV_DONTNEED). Refills the second with zeros; wakes the thread.
  void RefillIfDiscarded(VmRange& range, std::atomic<Pte>& entry, std::uint64_t page,
                         Pte mapped);

  RangeFrames* const frames_;
  FramePool* const pool_;
  SwapIn* swap_in_ = nullptr;
  CopyOnWrite* cow_ = nullptr;
  const Userfaultfd* const uffd_;
  const void* const zero_source_;
  const FillConfig config_;
};

}  // namespace uvmem::internal

#endif  // UVMEM_VM_DEMAND_ZERO_H_
