#include "vm/cow.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include <fmt/format.h>

#include "platform/cpu.h"
#include "platform/memory_map.h"
#include "platform/report.h"
#include "vm/demand_zero.h"
#include "vm/swap_in.h"

namespace uvmem::internal {

// A page of a fault's window whose entry this thread claimed, and what it held.
struct CopyOnWrite::Claimed {
  std::uint64_t page;
  std::atomic<Pte>* entry;
  Pte pte;
  std::optional<FrameNumber> fresh;  // the frame the page will get (if any)
};

namespace {

constexpr std::uint64_t kLeafPages = PageTable::kEntriesPerTable;

void AddRelaxed(std::atomic<std::uint64_t>& c, std::int64_t delta) {
  c.fetch_add(static_cast<std::uint64_t>(delta), std::memory_order_relaxed);
}

}  // namespace

CopyOnWrite::CopyOnWrite(RangeFrames* frames, const Userfaultfd* uffd, DemandZeroFiller* filler)
    : frames_(frames), pool_(&frames->pool()), uffd_(uffd), filler_(filler) {}

void CopyOnWrite::CountShare(std::uint32_t before) {
  if (before == 1) {
    AddRelaxed(counters_.shared_frames, 1);
    AddRelaxed(counters_.shared_pages, 2);
  } else {
    AddRelaxed(counters_.shared_pages, 1);
  }
}

void CopyOnWrite::CountUnshare(std::uint32_t before) {
  if (before < 2) return;
  if (before == 2) {
    AddRelaxed(counters_.shared_frames, -1);
    AddRelaxed(counters_.shared_pages, -2);
  } else {
    AddRelaxed(counters_.shared_pages, -1);
  }
}

void CopyOnWrite::LastSharerLeft(FrameNumber frame, std::uint64_t page) {
  // The holder's entry stops being shared now (its page stays write-protected until its
  // next write, which then just lifts the protection). If its own fault has the entry
  // claimed, that fault finds the count at one and does the same.
  auto* holder = reinterpret_cast<VmRange*>(pool_->Descriptor(frame).owner);
  if (holder == nullptr) return;
  std::atomic<Pte>* entry = holder->page_table().Lookup(page);
  if (entry == nullptr) return;
  Pte pte = entry->load(std::memory_order_acquire);
  if (PteIsSharedHolder(pte) && !PteIsClaimed(pte) && PteFrame(pte) == frame) {
    // Counted before the entry changes: once it has, the holder's Release no longer
    // takes this frame's lock and may free the range right away.
    AddRelaxed(holder->counters().shared_pages, -1);
    if (!entry->compare_exchange_strong(pte, pte & ~kPteShared, std::memory_order_acq_rel)) {
      AddRelaxed(holder->counters().shared_pages, 1);  // its owner is busy with it: alive
    }
  }
}

void CopyOnWrite::Preserve(FrameNumber frame, const void* holder_address) {
  // The frame's arena page becomes the original's home (a hole is backed by this write:
  // the arena is ordinary memory to the kernel, registered for MOVE only). A holder page
  // the program dropped behind uvmem's back (madvise) is gone: reading it would make a
  // fault thread wait on its own userfaultfd; its sharers read zeros (design.md).
  if (IsPageResident(holder_address)) {
    std::memcpy(pool_->FrameAddress(frame), holder_address, kPageSize);
  } else {
    std::memset(pool_->FrameAddress(frame), 0, kPageSize);
  }
  FrameDescriptor& d = pool_->Descriptor(frame);
  d.flags &= ~(kFrameHole | kFrameInRange | kFrameZeroed);
  d.owner = 0;
}

void CopyOnWrite::Unprotect(VmRange& range, std::uint64_t page, std::uint64_t count) {
  int err;
  do {  // EAGAIN: the address space is changing (a pending event); try again
    err = uffd_->WriteProtect(range.PageAddress(page), count << kPageShift,
                              /*protect=*/false, /*dontwake=*/true);
  } while (err == EAGAIN);
  if ((err == ENOENT || err == EINVAL) && count > 1) {
    // Before Linux 6.5 one UFFDIO_WRITEPROTECT must lie in one VMA: the stretch may cross
    // a boundary (a program's mprotect/madvise/mbind, or uvmem's own binding of pages
    // the pool placed on a fallback node). Page by page, each request lies in one VMA;
    // giving up here would leave the writer faulting on the same window forever.
    for (std::uint64_t k = 0; k < count; ++k) Unprotect(range, page + k, 1);
    return;
  }
  // ENOENT/ESRCH: the range is being released or the process exits: nobody waits.
  if (err != 0 && err != ENOENT && err != ESRCH) {
    ReportFatal("copy-on-write: cannot lift write protection of pages [{}, +{}) of range '{}' "
                "({}); the writer would wait forever",
                range.PageAddress(page), count, range.name(), std::strerror(err));
  }
}

std::size_t CopyOnWrite::ClaimWindow(VmRange& range, std::uint64_t page,
                                     std::atomic<Pte>* fault_entry, bool (*want)(const CopyOnWrite&, std::uint64_t, std::uint64_t, Pte),
                                     Claimed* claimed, bool* have_fault_page) const {
  const std::uint64_t window = range.fault_around_pages();
  const std::uint64_t first = page & ~(window - 1);
  const std::uint64_t end = std::min(first + window, range.pages());
  std::atomic<Pte>* entries = fault_entry - (page - first);
  std::size_t n = 0;
  *have_fault_page = false;
  for (std::uint64_t q = first; q < end; ++q) {
    std::atomic<Pte>& e = entries[q - first];
    Pte p = e.load(std::memory_order_acquire);
    if (PteIsClaimed(p) || !want(*this, q, page, p)) continue;
    if (!e.compare_exchange_strong(p, kPteClaimed, std::memory_order_acq_rel)) continue;
    claimed[n++] = Claimed{q, &e, p, std::nullopt};
    *have_fault_page |= q == page;
  }
  return n;
}

void CopyOnWrite::GiveBack(VmRange& range, std::uint64_t page, Claimed* claimed,
                           std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    claimed[i].entry->store(claimed[i].pte, std::memory_order_release);
  }
  range.counters().races_lost.fetch_add(1, std::memory_order_relaxed);
  // The thread faults again: a spurious wake costs one more fault, a missing one a hang.
  (void)uffd_->Wake(range.PageAddress(page), kPageSize);
}

void CopyOnWrite::UnprotectRuns(VmRange& range, const Claimed* claimed, std::size_t n) {
  for (std::size_t i = 0; i < n;) {
    std::size_t j = i + 1;
    while (j < n && claimed[j].page == claimed[j - 1].page + 1) ++j;
    Unprotect(range, claimed[i].page, j - i);
    i = j;
  }
}

// ---- Clone ---------------------------------------------------------------------------

absl::Status CopyOnWrite::Clone(VmRange& source, VmRange& clone) {
  PageTable& from_table = source.page_table();
  PageTable& to_table = clone.page_table();
  const std::uint64_t pages = source.pages();
  // Leaves are handled in chunks of up to kChunkLeaves (64 × 2 MiB): claim, one
  // UFFDIO_WRITEPROTECT over the chunk, share. Fewer ioctls (each flushes the TLB) than
  // one per leaf, and claims held for a few milliseconds at most.
  std::vector<Leaf> leaves;
  leaves.reserve(kChunkLeaves);
  std::vector<Pte> saved(kChunkLeaves * kLeafPages);
  absl::Status status;
  std::uint64_t next = from_table.NextTouched(0);
  while (next < pages && status.ok()) {
    leaves.clear();
    while (next < pages && leaves.size() < kChunkLeaves) {
      const std::uint64_t leaf_end = std::min(pages, (next | (kLeafPages - 1)) + 1);
      std::atomic<Pte>* from = from_table.Lookup(next);
      std::atomic<Pte>* to = from != nullptr ? to_table.LookupOrCreate(next) : nullptr;
      if (from != nullptr && to == nullptr) {
        status = absl::ResourceExhaustedError(
            "Clone: no frame left for the clone's page table (raise "
            "RuntimeOptions::pool_bytes_total)");
        break;
      }
      if (from != nullptr) {
        Leaf leaf{next, leaf_end, from, to, saved.data() + leaves.size() * kLeafPages};
        if (ClaimLeaf(leaf)) leaves.push_back(leaf);
      }
      next = from_table.NextTouched(leaf_end);
    }
    if (leaves.empty()) continue;
    // One write-protection for the chunk: from here a write to any of its pages traps
    // (pages filled meanwhile into empty entries are protected too: harmless, their first
    // write just lifts it). The kernel refuses DONTWAKE with protection; the wake finds
    // nobody waiting.
    const std::uint64_t lo = leaves.front().lo, hi = leaves.back().hi;
    int err = uffd_->WriteProtect(source.PageAddress(lo), (hi - lo) << kPageShift,
                                  /*protect=*/true);
    if (err == ENOENT || err == EINVAL) {
      // Before Linux 6.5 one request must lie in one VMA; the chunk may cross a boundary
      // (a program's mprotect, uvmem's binding of fallback pages): page by page.
      err = 0;
      for (std::uint64_t q = lo; q < hi && err == 0; ++q) {
        err = uffd_->WriteProtect(source.PageAddress(q), kPageSize, /*protect=*/true);
      }
    }
    if (err != 0 && status.ok()) {
      status = absl::InternalError(fmt::format("Clone of range '{}': UFFDIO_WRITEPROTECT failed ({})",
                                               source.name(), std::strerror(err)));
    }
    for (const Leaf& leaf : leaves) ShareLeaf(source, clone, leaf, &status);
    (void)uffd_->Wake(source.PageAddress(lo), (hi - lo) << kPageShift);
  }
  if (status.ok()) counters_.clones.fetch_add(1, std::memory_order_relaxed);
  return status;
}

bool CopyOnWrite::ClaimLeaf(Leaf& leaf) {
  // Claim every entry that holds something, once it is settled (a fill, swap-in,
  // eviction or copy in flight finishes first). Faults on claimed pages wait.
  leaf.lo = leaf.end;
  leaf.hi = leaf.first;
  for (std::uint64_t q = leaf.first; q < leaf.end; ++q) {
    std::atomic<Pte>& e = leaf.from[q - leaf.first];
    Pte& saved = leaf.saved[q - leaf.first];
    saved = 0;
    for (;;) {
      Pte pte = e.load(std::memory_order_acquire);
      if (pte == 0) break;
      if (PteIsClaimed(pte) || PteInWriteback(pte)) {
        YieldCpu();
        continue;
      }
      leaf.lo = std::min(leaf.lo, q);
      leaf.hi = q + 1;
      if (!e.compare_exchange_weak(pte, kPteClaimed, std::memory_order_acq_rel)) continue;
      saved = pte;
      break;
    }
  }
  return leaf.lo < leaf.hi;
}

void CopyOnWrite::ShareLeaf(VmRange& source, VmRange& clone, const Leaf& leaf,
                            absl::Status* status) {
  VmRangeCounters& sc = source.counters();
  VmRangeCounters& cc = clone.counters();
  SwapDevice* swap = frames_->swap();
  std::uint64_t new_shares = 0, source_shared = 0, clone_shared = 0;
  for (std::uint64_t q = leaf.lo; q < leaf.hi; ++q) {
    const Pte pte = leaf.saved[q - leaf.first];
    if (pte == 0) continue;
    std::atomic<Pte>& e = leaf.from[q - leaf.first];
    if (!status->ok()) {  // give back what was claimed
      e.store(pte, std::memory_order_release);
      continue;
    }
    Pte back = pte;
    Pte copy = 0;
    if (PteHasFrame(pte) && !(pte & kPteShared)) {
      // A private frame: only this (claimed) entry names it, so no lock. A clean slot
      // (read back from swap) may be stale by now — reclaim drops it lazily, when it sees
      // the page written — and a shared frame must never be judged by it: released.
      if (pool_->Descriptor(PteFrame(pte)).private_data != 0) {
        frames_->DropCleanSlot(PteFrame(pte));
      }
      pool_->Descriptor(PteFrame(pte)).refcount.store(2, std::memory_order_relaxed);
      ++new_shares;
      back = pte | kPteShared;
      copy = MakeCowPte(PteFrame(pte));
      ++source_shared;
      ++clone_shared;
    } else if (PteHasFrame(pte) || (pte & kPteCow)) {
      const FrameNumber frame = PteFrame(pte);
      SharedFrame f(pool_->Descriptor(frame));
      f.Lock();
      const std::uint32_t before = f.count();
      pool_->Descriptor(frame).refcount.fetch_add(1, std::memory_order_relaxed);
      f.Unlock();
      CountShare(before);
      copy = MakeCowPte(frame);
      ++clone_shared;
    } else if (PteIsSwapped(pte)) {
      swap->Ref(SwapSlot{PteSlot(pte)});
      copy = pte;
      AddRelaxed(cc.swapped_pages, 1);
    } else if (pte == kPteForeign) {
      // Mapped, but not by uvmem (no frame holds it): the clone gets its own copy now,
      // preserved in a frame nobody else names.
      RangeFrames::Shortage why;
      const std::optional<FrameNumber> frame = frames_->Allocate(
          clone, 0, clone.NodeForPage(q, NodeId{0}), RangeFrames::AllocFlagsFor(clone), true, &why);
      if (!frame) {
        *status = absl::ResourceExhaustedError(fmt::format(
            "Clone of range '{}': no frame for a copy of page {} ({})", source.name(), q,
            why == RangeFrames::Shortage::kBudget ? "the budget is spent" : "the pool is empty"));
        e.store(pte, std::memory_order_release);
        continue;
      }
      Preserve(*frame, source.PageAddress(q));
      copy = MakeCowPte(*frame);
      ++clone_shared;
    } else if (pte == kPtePoisoned) {
      copy = kPtePoisoned;
    }
    leaf.to[q - leaf.first].store(copy, std::memory_order_release);
    e.store(back, std::memory_order_release);
  }
  // Counters once per leaf (frames that just became shared count 2 pages each).
  AddRelaxed(counters_.shared_frames, static_cast<std::int64_t>(new_shares));
  AddRelaxed(counters_.shared_pages, static_cast<std::int64_t>(2 * new_shares));
  AddRelaxed(sc.shared_pages, static_cast<std::int64_t>(source_shared));
  AddRelaxed(cc.shared_pages, static_cast<std::int64_t>(clone_shared));
}

// ---- Write-protect faults --------------------------------------------------------------

void CopyOnWrite::HandleWriteProtectFault(VmRange& range, std::uint64_t page, NodeId local,
                                          std::uint32_t thread_id) {
  range.counters().faults.fetch_add(1, std::memory_order_relaxed);
  std::atomic<Pte>* fault_entry = range.page_table().Lookup(page);
  const Pte pte = fault_entry != nullptr ? fault_entry->load(std::memory_order_acquire) : 0;
  if (!PteIsSharedHolder(pte) || PteIsClaimed(pte)) {
    if (PteIsClaimed(pte) || PteInWriteback(pte)) {
      // A clone, an eviction or another copy owns the page; its wake covers this thread.
      range.counters().races_lost.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    if (PteHasFrame(pte)) {
      UnprotectPrivate(range, page, fault_entry);
      return;
    }
    Pte foreign = kPteForeign;
    if (pte == kPteForeign &&
        fault_entry->compare_exchange_strong(foreign, kPteClaimed, std::memory_order_acq_rel)) {
      Unprotect(range, page, 1);  // a page not uvmem's, protected with its leaf by a clone
      fault_entry->store(kPteForeign, std::memory_order_release);
    }
    (void)uffd_->Wake(range.PageAddress(page), kPageSize);  // stale: it faults again
    return;
  }

  // The CoW-around window: held shared pages around the faulting one.
  Claimed claimed[DemandZeroFiller::kMaxWindowPages];
  bool have_fault_page = false;
  std::size_t n = ClaimWindow(
      range, page, fault_entry,
      [](const CopyOnWrite&, std::uint64_t, std::uint64_t, Pte p) { return PteIsSharedHolder(p); },
      claimed, &have_fault_page);
  if (!have_fault_page) {  // the faulting page changed meanwhile (claimed, or un-shared)
    GiveBack(range, page, claimed, n);
    return;
  }
  // Frames first (no frame lock is held while allocating: reclaim may run here). Only
  // the faulting page may reclaim; neighbours without a frame stay shared.
  std::size_t kept = 0;
  for (std::size_t i = 0; i < n; ++i) {
    Claimed& c = claimed[i];
    if (SharedFrame(pool_->Descriptor(PteFrame(c.pte))).count() >= 2) {
      RangeFrames::Shortage why;
      c.fresh = frames_->Allocate(range, 0, range.NodeForPage(c.page, local), RangeFrames::AllocFlagsFor(range),
                                  /*may_reclaim=*/c.page == page, &why);
      if (!c.fresh) {
        c.entry->store(c.pte, std::memory_order_release);
        if (c.page == page) {
          // Nothing was changed: the write waits for room (SIGBUS as any refused fill).
          for (std::size_t j = i + 1; j < n; ++j) claimed[j].entry->store(claimed[j].pte);
          for (std::size_t j = 0; j < kept; ++j) {
            claimed[j].entry->store(claimed[j].pte);
            if (claimed[j].fresh) frames_->Free(*claimed[j].fresh);
          }
          if (why == RangeFrames::Shortage::kBudget) {
            filler_->BudgetExhausted(range, page, thread_id);
          } else {
            filler_->Oom(range, nullptr, page, thread_id);
          }
          return;
        }
        continue;
      }
    }
    claimed[kept++] = c;
  }
  n = kept;
  VmRangeCounters& rc = range.counters();
  for (std::size_t i = 0; i < n; ++i) {
    Claimed& c = claimed[i];
    const FrameNumber frame = PteFrame(c.pte);
    SharedFrame f(pool_->Descriptor(frame));
    f.Lock();
    const std::uint32_t count = f.count();
    if (count >= 2 && c.fresh) {
      // Preserve the original for the others, then this range's page is its own.
      Preserve(frame, range.PageAddress(c.page));
      pool_->Descriptor(frame).refcount.fetch_sub(1, std::memory_order_relaxed);
      f.Unlock();
      CountUnshare(count);
      c.pte = MakePresentPte(*c.fresh) | (c.pte & kPteActive);
      rc.cow_copies.fetch_add(1, std::memory_order_relaxed);
      counters_.copies_source_side.fetch_add(1, std::memory_order_relaxed);
    } else {
      // The others are gone (or went while we allocated): no copy, just un-shared.
      f.Unlock();
      if (c.fresh) frames_->Free(*c.fresh);
      c.pte &= ~kPteShared;
    }
    AddRelaxed(rc.shared_pages, -1);
  }
  // Lift the protection run by run, then publish the entries and wake the window once.
  UnprotectRuns(range, claimed, n);
  for (std::size_t i = 0; i < n; ++i) {
    claimed[i].entry->store(claimed[i].pte, std::memory_order_release);
  }
  (void)uffd_->Wake(range.PageAddress(claimed[0].page),
                    (claimed[n - 1].page + 1 - claimed[0].page) << kPageShift);
}

void CopyOnWrite::UnprotectPrivate(VmRange& range, std::uint64_t page,
                                   std::atomic<Pte>* fault_entry) {
  // A private page write-protected to watch it (a page once shared whose sharers are
  // gone, reclaim's reference bit, a page filled while its leaf was cloned). Its private
  // neighbours in the fault-around window are un-protected with it, as fault-around fills
  // a window: a source rewritten after its clone went pays one round trip per window, not
  // per page. Pages read back clean from swap keep their protection (their first write
  // tells reclaim they are dirty). Entries are claimed while the protection is lifted, so
  // that a clone of the range cannot share a page in between.
  Claimed claimed[DemandZeroFiller::kMaxWindowPages];
  bool have_fault_page = false;
  std::size_t n = ClaimWindow(
      range, page, fault_entry,
      [](const CopyOnWrite&, std::uint64_t, std::uint64_t, Pte p) {
        return PteHasFrame(p) && !(p & kPteShared);
      },
      claimed, &have_fault_page);
  if (!have_fault_page) {  // changed meanwhile (reclaim's clock clears the active bit)
    GiveBack(range, page, claimed, n);
    return;
  }
  // Neighbours read back clean keep their protection (read once claimed: the slot word
  // belongs to whoever holds the entry).
  std::size_t kept = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (claimed[i].page != page && frames_->CleanSlot(PteFrame(claimed[i].pte)).has_value()) {
      claimed[i].entry->store(claimed[i].pte, std::memory_order_release);
      continue;
    }
    claimed[kept++] = claimed[i];
  }
  n = kept;
  UnprotectRuns(range, claimed, n);
  for (std::size_t i = 0; i < n; ++i) {
    claimed[i].entry->store(claimed[i].pte, std::memory_order_release);
  }
  (void)uffd_->Wake(range.PageAddress(page), kPageSize);
}

// ---- Missing faults on CoW entries -------------------------------------------------------

void CopyOnWrite::HandleCowFault(VmRange& range, std::uint64_t page, NodeId local,
                                 std::uint32_t thread_id) {
  std::atomic<Pte>* fault_entry = range.page_table().Lookup(page);
  if (fault_entry == nullptr) return;
  Claimed claimed[DemandZeroFiller::kMaxWindowPages];
  bool have_fault_page = false;
  const std::size_t n = ClaimWindow(
      range, page, fault_entry,
      [](const CopyOnWrite&, std::uint64_t, std::uint64_t, Pte p) { return PteIsCow(p); },
      claimed, &have_fault_page);
  if (!have_fault_page) {
    GiveBack(range, page, claimed, n);
    return;
  }
  CopyIn(range, claimed, n, local, page, thread_id);
}

void CopyOnWrite::CopyIn(VmRange& range, Claimed* claimed, std::size_t n, NodeId local,
                         std::uint64_t fault_page, std::uint32_t thread_id) {
  VmRangeCounters& rc = range.counters();
  const std::uint64_t lo = claimed[0].page;
  const std::uint64_t hi = claimed[n - 1].page + 1;
  std::atomic<Pte>* swapped_fault_entry = nullptr;
  Pte swapped_fault_pte = 0;
  for (std::size_t i = 0; i < n; ++i) {
    Claimed& c = claimed[i];
    const FrameNumber frame = PteFrame(c.pte);
    FrameDescriptor& d = pool_->Descriptor(frame);
    SharedFrame f(d);
    void* address = range.PageAddress(c.page);
    const bool is_fault = c.page == fault_page;
    for (;;) {
      // Placement of the copy into the fresh frame, set up before the frame lock (it may
      // be a system call).
      std::optional<CopyPlacement::Scope> place;
      if (c.fresh) place.emplace(frames_->copy_placement(), range, c.page, 1, *c.fresh);
      f.Lock();
      const std::uint32_t count = f.count();
      if (d.flags & kFrameEvicted) {
        // In swap: the entry takes its own reference on the slot and reads it like any
        // swapped page (the frame goes when its last entry does).
        const SwapSlot slot = *frames_->CleanSlot(frame);
        frames_->swap()->Ref(slot);
        d.refcount.fetch_sub(1, std::memory_order_relaxed);
        f.Unlock();
        CountUnshare(count);
        if (count == 1) frames_->FreeEvicted(frame);
        AddRelaxed(rc.shared_pages, -1);
        AddRelaxed(rc.swapped_pages, 1);
        c.pte = MakeSwappedPte(slot.value);
        if (c.fresh) frames_->Free(*c.fresh);
        if (is_fault) {
          swapped_fault_entry = c.entry;
          swapped_fault_pte = c.pte;
        }
        break;
      }
      if (count == 1 && d.owner == 0) {
        // The last entry naming a preserved frame: the frame itself moves in.
        const UffdResult r = uffd_->Move(address, pool_->FrameAddress(frame), kPageSize,
                                         UffdMoveMode{.dontwake = true});
        if (!r.ok()) {
          // EBUSY (the arena page is shared with a forked child): copy it instead; the
          // frame stays the page's token.
          const CopyPlacement::Scope frame_place(frames_->copy_placement(), range, c.page, 1,
                                                 frame);
          const UffdResult copy = uffd_->Copy(address, pool_->FrameAddress(frame), kPageSize,
                                              UffdCopyMode{.dontwake = true});
          if (!copy.ok() && copy.error != EEXIST) {
            f.Unlock();
            c.pte = MakeCowPte(frame);  // untouched: faults again
            if (is_fault) {
              filler_->KillFaultingThread(range, nullptr, fault_page, thread_id,
                                          "the kernel refused to map a copy-on-write page",
                                          copy.error);
            }
            break;
          }
          // A copy after all (the 6.1 guest, with no UFFDIO_MOVE, found it uncounted).
          rc.cow_copies.fetch_add(1, std::memory_order_relaxed);
          counters_.copies_clone_side.fetch_add(1, std::memory_order_relaxed);
        } else {
          d.flags = kFrameInRange;
          rc.cow_moves.fetch_add(1, std::memory_order_relaxed);
          counters_.moves.fetch_add(1, std::memory_order_relaxed);
        }
        d.owner = reinterpret_cast<std::uintptr_t>(&range);
        f.Unlock();
        if (c.fresh) frames_->Free(*c.fresh);
        AddRelaxed(rc.shared_pages, -1);
        rc.AddResident(1);
        c.pte = MakePresentPte(frame);
        break;
      }
      // Shared: copy from where the bytes are. A holder whose page is being evicted
      // right now is waited for (the page leaves its range: read it from swap after).
      VmRange* holder = reinterpret_cast<VmRange*>(d.owner);
      const void* bytes = pool_->FrameAddress(frame);
      if (holder != nullptr) {
        const std::atomic<Pte>* h = holder->page_table().Lookup(c.page);
        const Pte hp = h != nullptr ? h->load(std::memory_order_acquire) : 0;
        if (!PteIsSharedHolder(hp) || PteIsClaimed(hp) || PteFrame(hp) != frame) {
          f.Unlock();
          YieldCpu();
          continue;
        }
        bytes = holder->PageAddress(c.page);
        if (!IsPageResident(bytes)) {
          // The program dropped the holder's page behind uvmem's back (madvise, not
          // Range::Discard): its bytes are gone for every sharer. Reading it here would
          // make this fault thread wait on its own userfaultfd.
          if (!dropped_reported_.exchange(true, std::memory_order_relaxed)) {
            ReportWarning(
                "copy-on-write: page {} of range '{}' was dropped with madvise while clones "
                "shared it; they read zeros there (use Range::Discard, which preserves "
                "shared pages)",
                bytes, holder->name());
          }
          bytes = filler_->zero_source();
        }
      }
      if (!c.fresh) {
        f.Unlock();
        RangeFrames::Shortage why;
        c.fresh = frames_->Allocate(range, 0, range.NodeForPage(c.page, local), RangeFrames::AllocFlagsFor(range),
                                    /*may_reclaim=*/is_fault, &why);
        if (!c.fresh) {
          if (is_fault) {
            c.entry->store(c.pte, std::memory_order_release);
            c.entry = nullptr;
            if (why == RangeFrames::Shortage::kBudget) {
              filler_->BudgetExhausted(range, fault_page, thread_id);
            } else {
              filler_->Oom(range, nullptr, fault_page, thread_id);
            }
          }
          break;  // a neighbour stays shared
        }
        continue;  // the frame's state may have changed while allocating: look again
      }
      // Checked and copied under one hold of the frame lock: reclaim cannot claim the
      // holder's page in between (it try-locks the frame first).
      const UffdResult r =
          uffd_->Copy(address, bytes, kPageSize, UffdCopyMode{.dontwake = true});
      if (r.ok() || r.error == EEXIST) {
        d.refcount.fetch_sub(1, std::memory_order_relaxed);
        if (count == 2) LastSharerLeft(frame, c.page);
        f.Unlock();
        CountUnshare(count);
        AddRelaxed(rc.shared_pages, -1);
        if (r.ok()) {
          rc.AddResident(1);
          c.pte = MakePresentPte(*c.fresh);
          rc.cow_copies.fetch_add(1, std::memory_order_relaxed);
          counters_.copies_clone_side.fetch_add(1, std::memory_order_relaxed);
        } else {
          // Something not uvmem's is mapped there: it stays, recorded as foreign.
          frames_->Free(*c.fresh);
          c.pte = kPteForeign;
        }
        c.fresh.reset();
        break;
      }
      f.Unlock();
      frames_->Free(*c.fresh);
      c.fresh.reset();
      if (is_fault && r.error != EAGAIN && r.error != ENOENT && r.error != ESRCH) {
        filler_->KillFaultingThread(range, nullptr, fault_page, thread_id,
                                    "the kernel refused to map a copy-on-write page", r.error);
      }
      break;
    }
    if (c.entry != nullptr) c.entry->store(c.pte, std::memory_order_release);
  }
  (void)uffd_->Wake(range.PageAddress(lo), (hi - lo) << kPageShift);
  if (swapped_fault_entry != nullptr && swap_in_ != nullptr) {
    swap_in_->HandleFault(range, fault_page, swapped_fault_entry, swapped_fault_pte, local,
                          thread_id);
  }
}

// ---- Teardown and reclaim ----------------------------------------------------------------

Pte CopyOnWrite::DropShared(VmRange& range, std::uint64_t page, Pte pte) {
  const FrameNumber frame = PteFrame(pte);
  FrameDescriptor& d = pool_->Descriptor(frame);
  SharedFrame f(d);
  f.Lock();
  const std::uint32_t count = f.count();
  if (PteHasFrame(pte)) {
    // LastSharerLeft may have un-shared the entry since the caller read it.
    const std::atomic<Pte>* e = range.page_table().Lookup(page);
    const Pte now = e != nullptr ? e->load(std::memory_order_acquire) : 0;
    if (!(now & kPteShared) && (now & kPtePresent)) {
      f.Unlock();
      return now;
    }
  }
  AddRelaxed(range.counters().shared_pages, -1);
  if (PteHasFrame(pte)) {
    if (count == 1) {  // the others are gone: an ordinary page of this range
      f.Unlock();
      return pte & ~kPteShared;
    }
    Preserve(frame, range.PageAddress(page));
    d.refcount.fetch_sub(1, std::memory_order_relaxed);
    f.Unlock();
    CountUnshare(count);
    AddRelaxed(range.counters().resident_pages, -1);
    return 0;
  }
  d.refcount.fetch_sub(1, std::memory_order_relaxed);
  if (count == 2) LastSharerLeft(frame, page);
  f.Unlock();
  CountUnshare(count);
  if (count == 1) {  // nobody names it any more
    if (d.flags & kFrameEvicted) {
      frames_->FreeEvicted(frame);
    } else {
      frames_->Free(frame);
    }
  }
  return 0;
}

bool CopyOnWrite::KeepEvicted(FrameNumber frame, SwapSlot slot) {
  FrameDescriptor& d = pool_->Descriptor(frame);
  SharedFrame f(d);
  f.Lock();
  const std::uint32_t count = f.count();
  if (count < 2) {
    f.Unlock();
    return false;
  }
  frames_->swap()->Ref(slot);
  frames_->SetCleanSlot(frame, slot);
  if (d.flags & kFrameInRange) d.flags = kFrameHole;  // its page left with the holder's
  d.flags |= kFrameEvicted;
  d.owner = 0;
  d.refcount.fetch_sub(1, std::memory_order_relaxed);
  f.Unlock();
  CountUnshare(count);
  frames_->UnchargeEvicted();
  return true;
}

std::uint64_t CopyOnWrite::EvictPreserved(const std::atomic<Pte>& entry, Pte pte) {
  const FrameNumber frame = PteFrame(pte);
  FrameDescriptor& d = pool_->Descriptor(frame);
  SharedFrame f(d);
  if (!f.TryLock()) return 0;
  // Under the lock the entry still names the frame, so the frame is still ours to judge
  // (not freed and handed out again since the sweep read the entry).
  if (entry.load(std::memory_order_acquire) != pte || d.owner != 0 ||
      (d.flags & kFrameEvicted) || f.count() == 0) {
    f.Unlock();
    return 0;
  }
  SwapDevice& swap = *frames_->swap();
  void* bytes = pool_->FrameAddress(frame);
  // The preserved bytes never change: a clean slot still holds them.
  if (!frames_->CleanSlot(frame)) {
    SwapSlot slot;
    if (swap.Allocate(1, &slot) == 0) {
      f.Unlock();
      return 0;
    }
    const void* pages[1] = {bytes};
    int error = 0;
    if (swap.Write(&slot, pages, 1, &error) != 0) {
      swap.Unref(slot);
      f.Unlock();
      return 0;
    }
    frames_->SetCleanSlot(frame, slot);
  }
  (void)DiscardPages(bytes, kPageSize);
  d.flags = kFrameHole | kFrameEvicted;
  f.Unlock();
  frames_->UnchargeEvicted();
  return 1;
}

}  // namespace uvmem::internal
