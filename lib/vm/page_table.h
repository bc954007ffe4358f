// page_table.h — PageTable: the runtime's own page table for one range.
//
// A radix tree of 512-entry tables, as x86-64's PGD/PUD/PMD/PTE levels: every table is
// 4 KiB from a SlabCache and is created on first use, so metadata grows with the pages a
// range touches, not with what it reserves (a 1 TiB range touching 1 MiB costs four
// tables, 16 KiB). The depth is fixed at creation from the range's page count (1 level up
// to 2 MiB of range, 4 levels up to 256 TiB).
//
// An entry (Pte) is one 64-bit word:
//   0                       none: the page was never filled
//   kPteClaimed             a fault thread is filling the page right now
//   kPtePresent | frame<<12 the page is mapped and holds pool frame `frame`
//   kPteForeign             the page is mapped but not by uvmem (found present: EEXIST)
//   kPtePoisoned            the page was poisoned (no frame could be found for it, or its
//                           swap slot could not be read back)
//   kPteSwapped | slot<<12  the page is not resident; its bytes are in swap slot `slot`
//                           (swp_entry_t's role); with kPteClaimed, a fault thread is
//                           reading it back
//   kPteWriteback|n<<12     reclaim is evicting the page: once unmapped, its bytes are in
//                           page n of reclaim's staging areas until the write completes
//   kPtePresent|kPteShared|frame<<12
//                           mapped, and `frame` is shared with other ranges (a clone,
//                           cow.h): the page is write-protected, this range holds it
//   kPteCow | frame<<12     not mapped here: the page's bytes are shared frame `frame`
//                           (held by another range, preserved in the frame, or in swap)
// With kPtePresent, kPteActive marks a page on the active list (reclaim.h: the lists are
// a clock over the page table, the bit is the list). With kPteWriteback, kPteDiscarded
// says Range::Discard dropped the page meanwhile (it must read zero, not the old bytes).
// Entries are atomics: fault threads claim a page with a compare-and-swap from 0 (or from
// a swap entry), so two threads never fill one page; reclaim claims a present page the
// same way (present → writeback).
//
// Thread-safety: Lookup, LookupOrCreate and entry updates are safe from any number of
// threads. ForEach and Destroy require that no other thread uses the table.
#ifndef UVMEM_VM_PAGE_TABLE_H_
#define UVMEM_VM_PAGE_TABLE_H_

#include <atomic>
#include <cstdint>

#include "slab/slab_cache.h"
#include "uvmem/types.h"

namespace uvmem::internal {

using Pte = std::uint64_t;
inline constexpr Pte kPteClaimed = 1u << 0;
inline constexpr Pte kPtePresent = 1u << 1;
inline constexpr Pte kPteForeign = 1u << 2;
inline constexpr Pte kPtePoisoned = 1u << 3;
inline constexpr Pte kPteSwapped = 1u << 4;
inline constexpr Pte kPteWriteback = 1u << 5;
inline constexpr Pte kPteActive = 1u << 6;
inline constexpr Pte kPteDiscarded = 1u << 7;
inline constexpr Pte kPteShared = 1u << 8;
inline constexpr Pte kPteCow = 1u << 9;
inline constexpr int kPteFrameShift = 12;

inline Pte MakePresentPte(FrameNumber frame) { return kPtePresent | (frame.value << kPteFrameShift); }
inline bool PteHasFrame(Pte pte) { return (pte & kPtePresent) != 0; }
// The frame of a present entry.
inline FrameNumber PteFrame(Pte pte) { return FrameNumber{pte >> kPteFrameShift}; }
inline Pte MakeSwappedPte(std::uint64_t slot) { return kPteSwapped | (slot << kPteFrameShift); }
// A swap entry nobody is reading back (a claimed one keeps its slot, so that a child
// forked meanwhile still finds the page: fork_copy.h).
inline bool PteIsSwapped(Pte pte) { return (pte & (kPteSwapped | kPteClaimed)) == kPteSwapped; }
inline Pte MakeClaimedSwappedPte(std::uint64_t slot) { return MakeSwappedPte(slot) | kPteClaimed; }
inline bool PteIsClaimed(Pte pte) { return (pte & kPteClaimed) != 0; }
inline std::uint64_t PteSlot(Pte pte) { return pte >> kPteFrameShift; }
inline Pte MakeWritebackPte(std::uint64_t staging_page) {
  return kPteWriteback | (staging_page << kPteFrameShift);
}
inline std::uint64_t PteStagingPage(Pte pte) { return pte >> kPteFrameShift; }
inline bool PteInWriteback(Pte pte) { return (pte & kPteWriteback) != 0; }
// A present entry whose frame is shared with other ranges (this range maps it).
inline bool PteIsSharedHolder(Pte pte) {
  return (pte & (kPtePresent | kPteShared)) == (kPtePresent | kPteShared);
}
inline Pte MakeCowPte(FrameNumber frame) { return kPteCow | (frame.value << kPteFrameShift); }
// An entry naming a shared frame this range does not map (and nobody is converting).
inline bool PteIsCow(Pte pte) { return (pte & (kPteCow | kPteClaimed)) == kPteCow; }

class PageTable {
 public:
  static constexpr int kEntriesPerTable = 512;
  static constexpr int kBitsPerLevel = 9;
  static constexpr std::size_t kTableBytes = kEntriesPerTable * sizeof(std::uint64_t);

  // A table for `pages` pages (1 ≤ pages ≤ 2^36) whose nodes come from `tables`, a cache
  // of kTableBytes objects aligned to 4 KiB. No table is allocated yet.
  PageTable(SlabCache* tables, std::uint64_t pages);
  ~PageTable();  // calls Destroy()
  PageTable(const PageTable&) = delete;
  PageTable& operator=(const PageTable&) = delete;

  // The entry of `page` (0 ≤ page < pages), or nullptr when its table does not exist
  // (the page was never touched).
  std::atomic<Pte>* Lookup(std::uint64_t page) const;
  // As Lookup, creating missing tables. nullptr only when the slab cache has no memory.
  std::atomic<Pte>* LookupOrCreate(std::uint64_t page);

  // Calls fn(page, pte) for every non-zero entry, in page order.
  template <typename Fn>
  void ForEach(Fn&& fn) const {
    if (root_) Walk(root_, levels_ - 1, 0, fn);
  }

  // The first page ≥ `page` whose leaf table exists (some page of its 512 was touched),
  // or pages() when there is none. Skips empty subtrees whole, so sweeping a sparse
  // 64 GiB range costs what its populated tables cost. Safe beside updates.
  std::uint64_t NextTouched(std::uint64_t page) const;

  // Frees every table. The table is empty (and reusable) afterwards.
  void Destroy();

  std::uint64_t pages() const { return pages_; }
  int levels() const { return levels_; }
  // Bytes of tables allocated now.
  std::uint64_t table_bytes() const {
    return tables_allocated_.load(std::memory_order_relaxed) * kTableBytes;
  }

 private:
  using Slot = std::atomic<std::uint64_t>;  // a Pte, or a child table's address
  static constexpr std::uint64_t kNone = ~std::uint64_t{0};
  Slot* NewTable();
  void FreeTree(Slot* table, int level);
  std::uint64_t FindTouched(const Slot* table, int level, std::uint64_t base,
                            std::uint64_t page) const;
  template <typename Fn>
  void Walk(const Slot* table, int level, std::uint64_t base, Fn& fn) const {
    for (int i = 0; i < kEntriesPerTable; ++i) {
      const std::uint64_t v = table[i].load(std::memory_order_acquire);
      if (v == 0) continue;
      const std::uint64_t page = base + (std::uint64_t(i) << (level * kBitsPerLevel));
      if (level == 0) {
        fn(page, static_cast<Pte>(v));
      } else {
        Walk(reinterpret_cast<const Slot*>(v), level - 1, page, fn);
      }
    }
  }

  SlabCache* const tables_;
  const std::uint64_t pages_;
  const int levels_;
  std::atomic<Slot*> root_{nullptr};
  std::atomic<std::uint64_t> tables_allocated_{0};
};

}  // namespace uvmem::internal

#endif  // UVMEM_VM_PAGE_TABLE_H_
