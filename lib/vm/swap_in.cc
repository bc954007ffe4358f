#include "vm/swap_in.h"

#include <algorithm>
#include <cstring>

#include "platform/cpu.h"
#include "platform/memory_map.h"
#include "platform/report.h"
#include "vm/demand_zero.h"
#include "vm/reclaim.h"

namespace uvmem::internal {
namespace {

// Pages read with a fault of a sequential stream: the range's readahead (its fault-around
// window when readahead is off), at least 16, at most kMaxRunPages.
std::uint64_t ReadaheadWindow(const VmRange& range) {
  const std::uint64_t want =
      range.readahead_pages() != 0 ? range.readahead_pages() : range.fault_around_pages();
  return std::clamp<std::uint64_t>(want, 16, SwapIn::kMaxRunPages);
}

}  // namespace

SwapIn::SwapIn(RangeFrames* frames, const Userfaultfd* uffd, DemandZeroFiller* filler,
               bool track_clean)
    : frames_(frames), uffd_(uffd), filler_(filler), track_clean_(track_clean) {}

std::size_t SwapIn::ClaimReadahead(VmRange& range, std::uint64_t page, std::atomic<Pte>* entry,
                                   std::atomic<Pte>** entries, SwapSlot* slots) {
  // A fault just after the range's previous one is a sequential stream: read the next
  // swapped pages of the range whatever their slots (the kernel's VMA-based swap
  // readahead), in a window that ramps up as the stream goes on (16, 32, ... pages), as
  // the kernel's readahead does. Any other fault reads its own page only.
  const std::uint64_t previous = range.last_fault_page.exchange(page, std::memory_order_relaxed);
  const std::uint64_t max_window = ReadaheadWindow(range);
  const bool sequential =
      previous != VmRange::kNoPage && page > previous && page - previous <= 2 * max_window;
  if (!sequential) {
    range.swap_stream.store(0, std::memory_order_relaxed);
    return 1;
  }
  const std::uint32_t run = range.swap_stream.fetch_add(1, std::memory_order_relaxed);
  const std::uint64_t window =
      std::min<std::uint64_t>(max_window, std::uint64_t{16} << std::min(run, 8u));
  const std::uint64_t leaf_end =
      std::min(range.pages(), (page | (PageTable::kEntriesPerTable - 1)) + 1);
  const std::uint64_t end = std::min(leaf_end, page + window);
  std::size_t n = 1;
  for (std::uint64_t q = page + 1; q < end; ++q, ++n) {
    std::atomic<Pte>* e = entry + (q - page);
    Pte pte = e->load(std::memory_order_acquire);
    if (!PteIsSwapped(pte)) break;
    if (!e->compare_exchange_strong(pte, MakeClaimedSwappedPte(PteSlot(pte)),
                                    std::memory_order_acq_rel)) {
      break;
    }
    entries[n] = e;
    slots[n] = SwapSlot{PteSlot(pte)};
  }
  return n;
}

absl::Status SwapIn::Init() {
  auto memory = ReserveAnonymous(kBounceBytes, kPageSize);
  if (!memory.ok()) return memory.status();
  bounce_ = static_cast<char*>(*memory);
  return absl::OkStatus();
}

SwapIn::~SwapIn() {
  if (bounce_ != nullptr) (void)ReleaseMapping(bounce_, kBounceBytes);
}

char* SwapIn::AcquireBounce() {
  for (;;) {
    for (int i = 0; i < kBounceAreas; ++i) {
      if (!bounce_busy_[i].exchange(true, std::memory_order_acquire)) {
        return bounce_ + static_cast<std::size_t>(i) * kMaxRunPages * kPageSize;
      }
    }
    YieldCpu();  // more fault threads than areas: one finishes within a read
  }
}

void SwapIn::ReleaseBounce(char* area) {
  const auto i = static_cast<std::size_t>(area - bounce_) / (kMaxRunPages * kPageSize);
  bounce_busy_[i].store(false, std::memory_order_release);
}

void SwapIn::HandleFault(VmRange& range, std::uint64_t page, std::atomic<Pte>* entry, Pte pte,
                         NodeId local, std::uint32_t thread_id) {
  const std::uint64_t start_ns = MonotonicNowNs();
  if (!entry->compare_exchange_strong(pte, MakeClaimedSwappedPte(PteSlot(pte)),
                                      std::memory_order_acq_rel)) {
    return;  // another thread claimed it; its wake covers this one
  }
  counters_.refaults.fetch_add(1, std::memory_order_relaxed);
  std::atomic<Pte>* entries[kMaxRunPages];
  SwapSlot slots[kMaxRunPages];
  entries[0] = entry;
  slots[0] = SwapSlot{PteSlot(pte)};
  std::size_t n = ClaimReadahead(range, page, entry, entries, slots);

  // A frame (the budget's token) per page, on that page's node (interleave differs page
  // by page): the faulting page's may reclaim, pages read ahead take what the budget has
  // left.
  const unsigned flags = RangeFrames::AllocFlagsFor(range);
  FrameNumber frames[kMaxRunPages];
  RangeFrames::Shortage why = RangeFrames::Shortage::kNone;
  std::size_t count = 0;
  for (; count < n; ++count) {
    const std::optional<FrameNumber> frame =
        frames_->Allocate(range, 0, range.NodeForPage(page + count, local),
                          count == 0 ? flags | kAllocUseReserves : flags, count == 0, &why);
    if (!frame) break;
    frames[count] = *frame;
  }
  for (std::size_t k = count == 0 ? 1 : count; k < n; ++k) {  // not read now: back to swap
    Unclaim(range, entries[k], slots[k]);
  }
  if (count == 0) {
    Unclaim(range, entry, slots[0]);
    if (why == RangeFrames::Shortage::kBudget) {
      filler_->BudgetExhausted(range, page, thread_id);  // the page stays in swap
    } else {
      filler_->Oom(range, nullptr, page, thread_id);
    }
    return;
  }
  n = count;

  // Read the run into a bounce area (one preadv per run of consecutive slots) and check
  // every checksum; then copy it into place (UFFDIO_COPY: no TLB flush, unlike a move).
  char* bounce = AcquireBounce();
  void* buffers[kMaxRunPages];
  int errors[kMaxRunPages] = {};
  for (std::size_t k = 0; k < n; ++k) buffers[k] = bounce + k * kPageSize;
  (void)frames_->swap()->Read(slots, buffers, n, errors);

  const SwapDeviceStats device = frames_->swap()->Stats();
  const bool keep_slots = track_clean_ && device.slots_used * 2 <= device.slots_total;
  VmRangeCounters& c = range.counters();
  std::size_t k = 0;
  while (k < n) {
    if (errors[k] != 0) {
      if (k == 0) {
        PoisonPage(range, page, entries[0], frames[0], slots[0], errors[0], thread_id);
      } else {
        // A page read ahead stays in swap: its own fault retries, and poisons it only
        // if the read fails again then.
        Unclaim(range, entries[k], slots[k]);
        frames_->Free(frames[k]);
      }
      ++k;
      continue;
    }
    std::size_t j = k + 1;
    while (j < n && errors[j] == 0) ++j;
    c.AddResident(j - k);
    MapRun(range, page + k, frames + k, bounce + k * kPageSize, j - k, entries + k, slots + k,
           keep_slots, page);
    k = j;
  }
  ReleaseBounce(bounce);
  if (n > 1) counters_.readahead_pages.fetch_add(n - 1, std::memory_order_relaxed);
  (void)uffd_->Wake(range.PageAddress(page), n << kPageShift);
  latency_.Record(MonotonicNowNs() - start_ns);
}

void SwapIn::MapRun(VmRange& range, std::uint64_t page, const FrameNumber* frames,
                    const char* bytes, std::size_t count, std::atomic<Pte>** entries,
                    const SwapSlot* slots, bool keep_slots, std::uint64_t fault_page) {
  FramePool& pool = frames_->pool();
  VmRangeCounters& c = range.counters();
  // Clean pages go in write-protected, so that a write shows in PAGEMAP_SCAN (WP_ASYNC:
  // the kernel lifts the protection itself, no fault reaches us).
  const UffdCopyMode mode{.dontwake = true, .wp = keep_slots};
  std::size_t k = 0;
  while (k < count) {
    // One COPY per stretch of frames on one node (interleaved ranges alternate).
    std::size_t stretch = 1;
    while (k + stretch < count && pool.NodeOf(frames[k + stretch]) == pool.NodeOf(frames[k])) {
      ++stretch;
    }
    const CopyPlacement::Scope place(frames_->copy_placement(), range, page + k, stretch,
                                     frames[k]);
    const UffdResult copied = uffd_->Copy(range.PageAddress(page + k), bytes + k * kPageSize,
                                          stretch << kPageShift, mode);
    std::size_t done = std::min<std::size_t>(copied.bytes_done >> kPageShift, stretch);
    if (!copied.ok() && done < stretch && stretch > 1 && copied.error != EEXIST) {
      // Refused for the stretch (EINVAL across a VMA boundary the program made): page by
      // page, each request then lies in one VMA.
      const UffdResult one = uffd_->Copy(range.PageAddress(page + k + done),
                                         bytes + (k + done) * kPageSize, kPageSize, mode);
      if (one.ok()) ++done;
    }
    for (std::size_t i = k; i < k + done; ++i) {
      if (keep_slots) {
        frames_->SetCleanSlot(frames[i], slots[i]);
      } else {
        frames_->swap()->Unref(slots[i]);
      }
      const bool faulted = page + i == fault_page;
      if (!faulted) pool.Descriptor(frames[i]).flags |= kFrameReadahead;
      const Pte pte = MakePresentPte(frames[i]) | (faulted ? kPteActive : 0);
      Pte claimed = MakeClaimedSwappedPte(slots[i].value);
      if (!entries[i]->compare_exchange_strong(claimed, pte, std::memory_order_acq_rel)) {
        // Range::Discard dropped the page while it was read: it must read zero, not
        // the old bytes just mapped.
        (void)DiscardPages(range.PageAddress(page + i), kPageSize);
        entries[i]->store(0, std::memory_order_release);
        frames_->Free(frames[i]);
        c.resident_pages.fetch_sub(1, std::memory_order_relaxed);
      }
    }
    c.swapped_pages.fetch_sub(done, std::memory_order_relaxed);
    c.pages_swapped_in.fetch_add(done, std::memory_order_relaxed);
    counters_.pages_swapped_in.fetch_add(done, std::memory_order_relaxed);
    k += done;
    if (k < count && done == 0) {
      // Present already (not uvmem's: the program mapped over it) or refused: the bytes
      // cannot go there.
      ReportWarning("swap-in: cannot map page {} of range '{}' ({}); its swapped bytes are "
                    "dropped",
                    range.PageAddress(page + k), range.name(), std::strerror(copied.error));
      entries[k]->store(copied.error == EEXIST ? kPteForeign : kPtePoisoned,
                        std::memory_order_release);
      frames_->swap()->Unref(slots[k]);
      frames_->Free(frames[k]);
      c.resident_pages.fetch_sub(1, std::memory_order_relaxed);
      c.swapped_pages.fetch_sub(1, std::memory_order_relaxed);
      ++k;
    }
  }
}

void SwapIn::Unclaim(VmRange& range, std::atomic<Pte>* entry, SwapSlot slot) {
  Pte claimed = MakeClaimedSwappedPte(slot.value);
  if (entry->compare_exchange_strong(claimed, MakeSwappedPte(slot.value),
                                     std::memory_order_acq_rel)) {
    return;
  }
  entry->store(0, std::memory_order_release);  // discarded meanwhile: the slot goes
  frames_->swap()->Unref(slot);
  range.counters().swapped_pages.fetch_sub(1, std::memory_order_relaxed);
}

void SwapIn::PoisonPage(VmRange& range, std::uint64_t page, std::atomic<Pte>* entry,
                        FrameNumber frame, SwapSlot slot, int error, std::uint32_t thread_id) {
  counters_.pages_poisoned.fetch_add(1, std::memory_order_relaxed);
  void* address = range.PageAddress(page);
  ReportWarning(
      "swap-in of page {} of range '{}' from slot {} of {} failed: {}; the page is poisoned "
      "(SIGBUS on access, EFAULT in system calls) rather than read as wrong data",
      address, range.name(), slot.value, frames_->swap()->description(),
      error == EBADMSG ? "checksum mismatch (the swap file was changed or is corrupt)"
                       : std::strerror(error));
  frames_->swap()->Unref(slot);
  frames_->Free(frame);
  range.counters().swapped_pages.fetch_sub(1, std::memory_order_relaxed);
  // KillFaultingThread poisons the page (or signals the thread without POISON).
  filler_->KillFaultingThread(range, entry, page, thread_id, nullptr, 0);
}

}  // namespace uvmem::internal
