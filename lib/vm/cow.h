// cow.h — CopyOnWrite: clones of ranges and their copy-on-write faults.
//
// The kernel's CoW bookkeeping (mm/memory.c: copy_page_range at fork, do_wp_page on a
// write), in user space. A clone gets a page table naming the source's frames; a frame
// serving several ranges is *shared*: its descriptor's reference count (frame.h) is the
// number of page-table entries naming it (1: private). Page offsets never change in a
// clone, so every entry naming a shared frame sits at the same page index of its range.
//
// Where a shared frame's bytes are (guarded by the frame lock, bit 31 of the count):
//   held       a range maps it (entry kPtePresent|kPteShared, descriptor owner = that
//              range): the page is write-protected there (UFFDIO_WRITEPROTECT);
//   preserved  no range maps it (owner 0): the bytes are in the frame's arena page;
//   evicted    reclaim wrote it to swap (kFrameEvicted): the bytes are in the slot held
//              in private_data; the frame is uncharged and only names the slot.
// The other entries are kPteCow|frame: not mapped, so the first touch (read or write)
// faults as missing.
//
// Faults:
//   write-protect fault on a held page: the holder writes; the original is preserved
//     into the frame's arena page (one 4 KiB copy), the holder takes a fresh frame for
//     its own page and the protection is lifted. A frame whose count fell to one is just
//     un-shared (no copy). Private pages that are write-protected for other reasons (a
//     page reclaim watches for writes, a page read back clean from swap) are simply
//     un-protected.
//   missing fault on a CoW entry: a fresh frame and UFFDIO_COPY from wherever the bytes
//     are (the holder's page, or the preserved arena page); the last entry naming a
//     preserved frame takes the frame itself by UFFDIO_MOVE (no copy); an evicted frame
//     turns the entry into a plain swap entry (a reference on the slot).
// Both work on a window of shared pages around the fault — fault-around's window — so a
// sequential pass pays one round trip per window, as fault-around does for demand-zero.
//
// Thread-safety: every method is thread-safe. Lock order: page-table entries are claimed
// (compare-and-swap) before frame locks are taken; several frame locks are taken in page
// order; nothing allocates while holding a frame lock; reclaim try-locks a frame before
// claiming a page for writeback and locks it only after the write (KeepEvicted), when
// no fault can be waiting on that page under the lock.
#ifndef UVMEM_VM_COW_H_
#define UVMEM_VM_COW_H_

#include <absl/status/status.h>

#include <atomic>
#include <cstdint>
#include <optional>

#include "platform/spin_lock.h"
#include "platform/userfaultfd.h"
#include "vm/range_frames.h"
#include "vm/vm_range.h"

namespace uvmem::internal {

class DemandZeroFiller;
class SwapIn;

struct CowCounters {
  std::atomic<std::uint64_t> clones{0};
  std::atomic<std::uint64_t> copies_source_side{0};  // holder wrote: original preserved
  std::atomic<std::uint64_t> copies_clone_side{0};   // a CoW entry was touched: copied
  std::atomic<std::uint64_t> moves{0};               // last sharer took a preserved frame
  std::atomic<std::uint64_t> shared_frames{0};       // frames with count ≥ 2 now
  std::atomic<std::uint64_t> shared_pages{0};        // sum of their counts now
};

// The frame lock and count of a shared frame (the descriptor's refcount word).
class SharedFrame {
 public:
  static constexpr std::uint32_t kLock = 1u << 31;
  explicit SharedFrame(FrameDescriptor& d) : d_(d) {}
  void Lock() {
    for (;;) {
      if (!(d_.refcount.fetch_or(kLock, std::memory_order_acquire) & kLock)) return;
      while (d_.refcount.load(std::memory_order_relaxed) & kLock) CpuRelax();
    }
  }
  bool TryLock() { return !(d_.refcount.fetch_or(kLock, std::memory_order_acquire) & kLock); }
  void Unlock() { d_.refcount.fetch_and(~kLock, std::memory_order_release); }
  // Entries naming the frame (1: private). Exact under the lock.
  std::uint32_t count() const { return d_.refcount.load(std::memory_order_acquire) & ~kLock; }

 private:
  FrameDescriptor& d_;
};

class CopyOnWrite {
 public:
  // Refused faults are answered through `filler` (SIGBUS, poison), as demand-zero ones.
  CopyOnWrite(RangeFrames* frames, const Userfaultfd* uffd, DemandZeroFiller* filler);
  // Swap-in for CoW entries whose frame was evicted (a runtime with a budget).
  void SetSwapIn(SwapIn* swap_in) { swap_in_ = swap_in; }

  // Fills `clone`'s page table from `source`'s (same page count; `clone` is fresh and
  // nobody can fault on it yet). The source's leaf tables (512 entries, 2 MiB) are
  // claimed 64 at a time, write-protected with one UFFDIO_WRITEPROTECT, shared and
  // released, so
  // writes racing the call land in the source before or after the snapshot, never lost.
  // Swapped pages share their slot (SwapDevice::Ref). Errors: ResourceExhausted (no page
  // table or frame for the clone: the clone's entries so far stay, the caller releases
  // it), Internal (write-protection refused).
  absl::Status Clone(VmRange& source, VmRange& clone);

  // A write-protect fault at `page` of `range`.
  void HandleWriteProtectFault(VmRange& range, std::uint64_t page, NodeId local,
                               std::uint32_t thread_id);
  // A missing fault at `page` whose entry was found to be a CoW entry.
  void HandleCowFault(VmRange& range, std::uint64_t page, NodeId local,
                      std::uint32_t thread_id);

  // Drops what a holder or CoW entry `pte` at `page` of `range` names (Release, Discard),
  // while the range's pages are still mapped: a held frame others still name is
  // preserved first; a frame nobody names any more is freed. Returns the entry that
  // remains in the caller's hands: a present private entry (the frame was the range's
  // alone now: the caller frees it as any page) or 0 (nothing left to free).
  Pte DropShared(VmRange& range, std::uint64_t page, Pte pte);

  // Reclaim evicted held frame `frame` of `range` to `slot` (the holder's entry became a
  // swap entry with its own reference). True when other entries still name the frame:
  // it stays, evicted (uncharged, holding its own reference on the slot); false when the
  // caller frees it as a private frame.
  bool KeepEvicted(FrameNumber frame, SwapSlot slot);
  // Reclaim meets CoW entry `pte`: if its frame is preserved (in memory, mapped by no
  // range) and free to lock, writes it to swap and gives its memory up. Returns 1 when a
  // page was evicted.
  std::uint64_t EvictPreserved(const std::atomic<Pte>& entry, Pte pte);

  const CowCounters& counters() const { return counters_; }

 private:
  struct Claimed;
  // One leaf table of a clone's source being shared: pages [first, end), entries `from`
  // (source) and `to` (clone), what was claimed in `saved`, claimed span [lo, hi).
  struct Leaf {
    std::uint64_t first, end;
    std::atomic<Pte>* from;
    std::atomic<Pte>* to;
    Pte* saved;
    std::uint64_t lo = 0, hi = 0;
  };
  static constexpr std::size_t kChunkLeaves = 64;
  // Claims a leaf's settled entries (saved for ShareLeaf); false when it held nothing.
  bool ClaimLeaf(Leaf& leaf);
  // Shares a claimed leaf into the clone (or, once *status is an error, gives it back).
  void ShareLeaf(VmRange& source, VmRange& clone, const Leaf& leaf, absl::Status* status);
  // Claims the entries of `page`'s fault-around window that `want(this, q, page, pte)`
  // accepts, in page order; `*have_fault_page` says whether `page` is among them.
  std::size_t ClaimWindow(VmRange& range, std::uint64_t page, std::atomic<Pte>* fault_entry,
                          bool (*want)(const CopyOnWrite&, std::uint64_t, std::uint64_t, Pte),
                          Claimed* claimed, bool* have_fault_page) const;
  // Restores claimed entries and wakes `page` (its thread faults again).
  void GiveBack(VmRange& range, std::uint64_t page, Claimed* claimed, std::size_t n);
  // Un-protects the claimed pages, one ioctl per run of consecutive pages.
  void UnprotectRuns(VmRange& range, const Claimed* claimed, std::size_t n);
  void CountShare(std::uint32_t before);    // a frame's count went before → before + 1
  void CountUnshare(std::uint32_t before);  // before → before − 1
  // Under the frame lock, when a frame's count fell to one: its holder (if any) at `page`
  // is un-shared.
  void LastSharerLeft(FrameNumber frame, std::uint64_t page);
  // Copies the held page at `holder_address` into frame `frame`'s arena page.
  void Preserve(FrameNumber frame, const void* holder_address);
  // A write-protect fault on private page `page`: lifts the protection of it and its
  // private neighbours in the window, and wakes.
  void UnprotectPrivate(VmRange& range, std::uint64_t page, std::atomic<Pte>* fault_entry);
  // Un-protects [page, page + count) of `range` without waking.
  void Unprotect(VmRange& range, std::uint64_t page, std::uint64_t count);
  void CopyIn(VmRange& range, Claimed* runs, std::size_t count, NodeId local,
              std::uint64_t fault_page, std::uint32_t thread_id);

  RangeFrames* const frames_;
  FramePool* const pool_;
  const Userfaultfd* const uffd_;
  DemandZeroFiller* const filler_;
  SwapIn* swap_in_ = nullptr;
  std::atomic<bool> dropped_reported_{false};
  CowCounters counters_;
};

}  // namespace uvmem::internal

#endif  // UVMEM_VM_COW_H_
