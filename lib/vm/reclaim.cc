#include "vm/reclaim.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "platform/memory_map.h"
#include "platform/report.h"

namespace uvmem::internal {
namespace {

// Entries the hand looks at per page it wants, before it moves to the next range.
constexpr std::uint64_t kScanPerGoalPage = 8;
constexpr std::uint64_t kMinScan = 2048;
// How often the background thread looks at the budget without being woken.
constexpr int kPollMs = 50;

}  // namespace

Reclaimer::Reclaimer(RangeFrames* frames, const Userfaultfd* uffd, AddressSpace* space,
                     const PagemapScanner* pagemap)
    : frames_(frames), uffd_(uffd), space_(space), pagemap_(pagemap) {}

Reclaimer::~Reclaimer() { Stop(); }

absl::Status Reclaimer::Start() {
  auto wakeup = WakeupFd::Create();
  if (!wakeup.ok()) return wakeup.status();
  wakeup_ = std::move(*wakeup);
  thread_ = std::thread([this] { Loop(); });
  SetThreadName(thread_.native_handle(), "uvmem-reclaim");
  return absl::OkStatus();
}

void Reclaimer::Stop() {
  if (!thread_.joinable()) return;
  stop_.store(true, std::memory_order_relaxed);
  wakeup_.Signal();
  thread_.join();
}

void Reclaimer::Wake() {
  if (!wake_pending_.exchange(true, std::memory_order_acq_rel)) wakeup_.Signal();
}

void Reclaimer::Loop() {
  MarkThisThreadAsRuntime();
  BlockAllSignalsInThisThread();
  MemoryBudget& budget = frames_->budget();
  while (!stop_.load(std::memory_order_relaxed)) {
    (void)WaitReadable(wakeup_.fd(), -1, kPollMs);
    wakeup_.Drain();
    wake_pending_.store(false, std::memory_order_release);
    if (!budget.BelowLow()) continue;
    counters_.reclaim_passes.fetch_add(1, std::memory_order_relaxed);
    while (!stop_.load(std::memory_order_relaxed)) {
      const std::uint64_t short_of_high = budget.ShortOfHigh();
      if (short_of_high == 0) break;
      if (Reclaim(short_of_high) == 0) break;  // nothing evictable now: wait for a wake
    }
  }
}

std::uint64_t Reclaimer::ReclaimDirect(std::uint64_t pages, bool first) {
  if (first) counters_.direct_reclaims.fetch_add(1, std::memory_order_relaxed);
  Wake();
  return Reclaim(std::max<std::uint64_t>(pages, kBatchPages));
}

std::uint64_t Reclaimer::Reclaim(std::uint64_t goal) {
  std::vector<VmRange*> ranges = space_->Snapshot();  // pinned: Release waits for us
  std::uint64_t evicted = 0;
  if (!ranges.empty()) {
    const std::size_t n = ranges.size();
    const std::size_t first = next_range_.fetch_add(1, std::memory_order_relaxed) % n;
    // Two rounds: the first may only demote active pages that the second then evicts.
    for (std::size_t k = 0; k < 2 * n && evicted < goal; ++k) {
      VmRange& range = *ranges[(first + k) % n];
      const std::uint64_t want = goal - evicted;
      evicted += SweepRange(range, want, std::max(kMinScan, want * kScanPerGoalPage));
    }
  }
  for (VmRange* range : ranges) AddressSpace::Unpin(range);
  return evicted;
}

std::uint64_t Reclaimer::SweepRange(VmRange& range, std::uint64_t goal, std::uint64_t max_scan) {
  PageTable& table = range.page_table();
  const std::uint64_t pages = range.pages();
  max_scan = std::min(max_scan, pages);
  std::uint64_t hand = range.reclaim_hand.load(std::memory_order_relaxed) % pages;
  std::uint64_t scanned = 0;
  std::uint64_t evicted = 0;
  Victim victims[kBatchPages];
  std::size_t count = 0;
  while (scanned < max_scan && evicted + count < goal) {
    const std::uint64_t leaf_end = std::min(pages, (hand | (PageTable::kEntriesPerTable - 1)) + 1);
    std::atomic<Pte>* entry = table.Lookup(hand);
    if (entry == nullptr) {
      // Untouched stretch: jump to the next leaf table (one scanned step, whatever its
      // size, so a sparse range is swept as fast as a dense one).
      const std::uint64_t next = table.NextTouched(hand);
      ++scanned;
      hand = next >= pages ? 0 : next;
      continue;
    }
    for (; hand < leaf_end && scanned < max_scan && count < kBatchPages; ++hand, ++entry) {
      ++scanned;
      Pte pte = entry->load(std::memory_order_acquire);
      if (!PteHasFrame(pte)) continue;
      if (pte & kPteActive) {  // second chance: to the inactive list
        (void)entry->compare_exchange_strong(pte, pte & ~kPteActive, std::memory_order_acq_rel);
        continue;
      }
      const FrameNumber frame = PteFrame(pte);
      if (!entry->compare_exchange_strong(pte, MakeWritebackPte(frame), std::memory_order_acq_rel)) {
        continue;
      }
      victims[count++] = Victim{entry, hand, frame};
    }
    if (hand == pages) hand = 0;
    if (count == kBatchPages) {
      evicted += EvictBatch(range, victims, count);
      count = 0;
    }
  }
  if (count != 0) evicted += EvictBatch(range, victims, count);
  range.reclaim_hand.store(hand, std::memory_order_relaxed);
  return evicted;
}

bool Reclaimer::FinishWriteback(const Victim& v, Pte final_pte) {
  Pte expected = MakeWritebackPte(v.frame);
  if (v.entry->compare_exchange_strong(expected, final_pte, std::memory_order_acq_rel)) {
    return true;
  }
  v.entry->store(0, std::memory_order_release);  // discarded meanwhile: reads zero
  return false;
}

void Reclaimer::FindClean(VmRange& range, const Victim* victims, std::size_t count, bool* clean) {
  bool any = false;
  for (std::size_t i = 0; i < count; ++i) {
    clean[i] = frames_->CleanSlot(victims[i].frame).has_value();
    any |= clean[i];
  }
  if (!any) return;
  FramePool& pool = frames_->pool();
  std::uint64_t lo = victims[0].page, hi = victims[0].page;
  for (std::size_t i = 1; i < count; ++i) {
    lo = std::min(lo, victims[i].page);
    hi = std::max(hi, victims[i].page);
  }
  constexpr std::uint64_t kMaxSpan = 4096;
  bool written[kMaxSpan];
  const bool scanned = pagemap_ != nullptr && hi - lo < kMaxSpan &&
                       pagemap_->Written(range.PageAddress(lo), hi - lo + 1, written) == 0;
  for (std::size_t i = 0; i < count; ++i) {
    FrameDescriptor& d = pool.Descriptor(victims[i].frame);
    const bool was_written = !scanned || written[victims[i].page - lo];
    if ((d.flags & kFrameReadahead) && scanned && written[victims[i].page - lo]) {
      counters_.readahead_hits.fetch_add(1, std::memory_order_relaxed);
    }
    d.flags &= ~kFrameReadahead;
    if (clean[i] && was_written) {
      frames_->DropCleanSlot(victims[i].frame);
      clean[i] = false;
    }
  }
}

std::size_t Reclaimer::Unmap(VmRange& range, Victim* victims, std::size_t count, bool* clean) {
  FramePool& pool = frames_->pool();
  VmRangeCounters& counters = range.counters();
  // Each frame's arena slot must be empty to receive its page: a frame that filled its
  // page by COPY may still have a page of its own there.
  for (std::size_t i = 0; i < count; ++i) {
    FrameDescriptor& d = pool.Descriptor(victims[i].frame);
    if (!(d.flags & (kFrameInRange | kFrameHole))) {
      (void)DiscardPages(pool.FrameAddress(victims[i].frame), kPageSize);
      d.flags = kFrameHole;
    }
  }
  std::size_t out = 0;
  std::size_t i = 0;
  while (i < count) {
    // A run: consecutive pages on consecutive frames whose arena slots are adjacent.
    std::size_t j = i + 1;
    while (j < count && victims[j].page == victims[j - 1].page + 1 &&
           victims[j].frame == victims[j - 1].frame + 1 &&
           static_cast<char*>(pool.FrameAddress(victims[j - 1].frame)) + kPageSize ==
               pool.FrameAddress(victims[j].frame)) {
      ++j;
    }
    const UffdResult r = uffd_->Move(pool.FrameAddress(victims[i].frame),
                                     range.PageAddress(victims[i].page), (j - i) << kPageShift,
                                     UffdMoveMode{.dontwake = true});
    const std::size_t done = std::min<std::size_t>(r.bytes_done >> kPageShift, j - i);
    for (std::size_t k = i; k < i + done; ++k) {
      pool.Descriptor(victims[k].frame).flags = 0;  // the slot holds the page's bytes
      victims[out] = victims[k];
      clean[out] = clean[k];
      ++out;
    }
    if (r.ok()) {
      i = j;
      continue;
    }
    const Victim& bad = victims[i + done];
    if (r.error == ENOENT) {
      // No page at the source: the program dropped it (MADV_DONTNEED). It reads zero.
      (void)FinishWriteback(bad, 0);
      pool.Descriptor(bad.frame).flags = kFrameHole;
      frames_->Free(bad.frame);
      counters.resident_pages.fetch_sub(1, std::memory_order_relaxed);
    } else {
      // EBUSY: shared with a forked child or pinned for I/O; EAGAIN/other: try later.
      counters_.busy_pages.fetch_add(1, std::memory_order_relaxed);
      PutBack(range, bad, /*moved_out=*/false);
    }
    i += done + 1;
  }
  return out;
}

void Reclaimer::PutBack(VmRange& range, const Victim& v, bool moved_out) {
  FramePool& pool = frames_->pool();
  VmRangeCounters& counters = range.counters();
  const Pte resident = MakePresentPte(v.frame) | kPteActive;
  if (!moved_out) {
    if (!FinishWriteback(v, resident)) {  // discarded: the page is gone from the range
      frames_->Free(v.frame);
      counters.resident_pages.fetch_sub(1, std::memory_order_relaxed);
    }
    return;
  }
  Pte expected = MakeWritebackPte(v.frame);
  if (!v.entry->compare_exchange_strong(expected, kPteClaimed, std::memory_order_acq_rel)) {
    v.entry->store(0, std::memory_order_release);  // discarded meanwhile
    frames_->Free(v.frame);
    counters.resident_pages.fetch_sub(1, std::memory_order_relaxed);
    return;
  }
  void* page = range.PageAddress(v.page);
  void* slot = pool.FrameAddress(v.frame);
  UffdResult r = uffd_->Move(page, slot, kPageSize, UffdMoveMode{.dontwake = true});
  if (r.ok()) {
    pool.Descriptor(v.frame).flags = kFrameInRange;
  } else {
    r = uffd_->Copy(page, slot, kPageSize, UffdCopyMode{.dontwake = true});
    if (!r.ok() && r.error != EEXIST) {
      ReportFatal("reclaim: cannot put page {} of range '{}' back after a failed write ({})",
                  page, range.name(), std::strerror(r.error));
    }
  }
  v.entry->store(resident, std::memory_order_release);
}

std::uint64_t Reclaimer::EvictBatch(VmRange& range, Victim* victims, std::size_t count) {
  SwapDevice& swap = *frames_->swap();
  FramePool& pool = frames_->pool();
  VmRangeCounters& counters = range.counters();
  std::uint64_t lo = victims[0].page, hi = victims[0].page;
  for (std::size_t i = 1; i < count; ++i) {
    lo = std::min(lo, victims[i].page);
    hi = std::max(hi, victims[i].page);
  }
  bool clean[kBatchPages];
  FindClean(range, victims, count, clean);
  const std::size_t unmapped = Unmap(range, victims, count, clean);

  // A page judged clean by the scan could have been written between the scan and the
  // unmap; its bytes must still match the slot's checksum, or it is written out.
  std::size_t dirty[kBatchPages];
  std::size_t dirty_count = 0;
  for (std::size_t i = 0; i < unmapped; ++i) {
    if (clean[i]) {
      const SwapSlot slot = *frames_->CleanSlot(victims[i].frame);
      if (swap.Matches(slot, pool.FrameAddress(victims[i].frame))) continue;
      frames_->DropCleanSlot(victims[i].frame);
      clean[i] = false;
    }
    dirty[dirty_count++] = i;
  }
  SwapSlot slots[kBatchPages];
  const void* sources[kBatchPages];
  int errors[kBatchPages] = {};
  const std::size_t got = swap.Allocate(dirty_count, slots);
  for (std::size_t k = 0; k < got; ++k) sources[k] = pool.FrameAddress(victims[dirty[k]].frame);
  if (got != 0) (void)swap.Write(slots, sources, got, errors);

  std::uint64_t evicted = 0;
  auto complete = [&](const Victim& v, SwapSlot slot) {
    if (FinishWriteback(v, MakeSwappedPte(slot.value))) {
      counters.swapped_pages.fetch_add(1, std::memory_order_relaxed);
      counters.pages_swapped_out.fetch_add(1, std::memory_order_relaxed);
      counters_.pages_swapped_out.fetch_add(1, std::memory_order_relaxed);
    } else {
      swap.Unref(slot);  // discarded meanwhile
    }
    frames_->Free(v.frame);
    counters.resident_pages.fetch_sub(1, std::memory_order_relaxed);
    ++evicted;
  };
  for (std::size_t k = 0; k < dirty_count; ++k) {
    const Victim& v = victims[dirty[k]];
    if (k >= got) {
      counters_.swap_full.fetch_add(1, std::memory_order_relaxed);
      PutBack(range, v, /*moved_out=*/true);
    } else if (errors[k] != 0) {
      swap.Unref(slots[k]);
      counters_.write_failures.fetch_add(1, std::memory_order_relaxed);
      if (!write_error_reported_.exchange(true, std::memory_order_relaxed)) {
        ReportWarning(
            "swap: writing to {} failed ({}); the pages stay resident and reclaim moves on "
            "(further write errors are counted, not reported)",
            swap.description(), std::strerror(errors[k]));
      }
      PutBack(range, v, /*moved_out=*/true);
    } else {
      complete(v, slots[k]);
    }
  }
  for (std::size_t i = 0; i < unmapped; ++i) {
    if (!clean[i]) continue;
    const SwapSlot slot = *frames_->CleanSlot(victims[i].frame);
    frames_->SetCleanSlot(victims[i].frame, std::nullopt);  // the entry holds it now
    counters_.clean_pages_dropped.fetch_add(1, std::memory_order_relaxed);
    complete(victims[i], slot);
  }
  // Threads that touched the pages meanwhile fault again and find them in swap.
  (void)uffd_->Wake(range.PageAddress(lo), (hi - lo + 1) << kPageShift);
  return evicted;
}

void Reclaimer::ReportExhausted(const VmRange& range, const char* why) {
  counters_.budget_exhausted.fetch_add(1, std::memory_order_relaxed);
  if (exhausted_reported_.exchange(true, std::memory_order_relaxed)) return;
  const MemoryBudget& budget = frames_->budget();
  const SwapDevice* swap = frames_->swap();
  const SwapDeviceStats s = swap->Stats();
  ReportWarning(
      "resident budget exhausted in range '{}': the budget of {} MiB ({} pages) is in use and "
      "nothing can be evicted ({}); swap {} has {} of {} MiB in use. The faulting thread gets "
      "SIGBUS. Raise the budget (--budget, UVMEM_BUDGET, RuntimeOptions::budget_bytes) or the "
      "swap size (--swap-max, UVMEM_SWAP_MAX, RuntimeOptions::swap_max_bytes).",
      range.name(), budget.budget_pages() >> 8, budget.budget_pages(), why, swap->description(),
      s.slots_used >> 8, s.slots_total >> 8);
}

}  // namespace uvmem::internal
