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
  // Staging areas: a batch's pages are moved out into one (contiguous, so a run of pages
  // is one UFFDIO_MOVE and one pwritev), written, and dropped. MOVE needs its destination
  // registered with the uffd (write-protect mode only: nothing there ever traps).
  auto staging = ReserveAnonymous(kStagingBytes, kPageSize);
  if (!staging.ok()) return staging.status();
  staging_ = static_cast<char*>(*staging);
  const UffdRegisterResult reg =
      uffd_->Register(staging_, kStagingBytes, UffdRegisterModes{.missing = false, .wp = true});
  if (reg.error != 0 || !reg.ioctls.move()) {
    return absl::InternalError(fmt::format("registering reclaim's staging area failed ({})",
                                           std::strerror(reg.error)));
  }
  thread_ = StartRuntimeThread("uvmem-reclaim", [this] { Loop(); });
  return absl::OkStatus();
}

void Reclaimer::Stop() {
  if (thread_.joinable()) {
    stop_.store(true, std::memory_order_relaxed);
    wakeup_.Signal();
    thread_.join();
  }
  if (staging_ != nullptr) {
    (void)uffd_->Unregister(staging_, kStagingBytes);
    (void)ReleaseMapping(staging_, kStagingBytes);
    staging_ = nullptr;
  }
}

std::uint64_t Reclaimer::StagingPage(const char* buffer) const {
  return static_cast<std::uint64_t>(buffer - staging_) >> kPageShift;
}

char* Reclaimer::AcquireStaging() {
  for (int i = 0; i < kStagingAreas; ++i) {
    if (!staging_busy_[i].exchange(true, std::memory_order_acquire)) {
      return staging_ + static_cast<std::size_t>(i) * kBatchPages * kPageSize;
    }
  }
  return nullptr;
}

void Reclaimer::ReleaseStaging(char* area) {
  const auto i = static_cast<std::size_t>(area - staging_) / (kBatchPages * kPageSize);
  staging_busy_[i].store(false, std::memory_order_release);
}

void Reclaimer::Wake() {
  if (!wake_pending_.exchange(true, std::memory_order_acq_rel)) wakeup_.Signal();
}

void Reclaimer::Loop() {
  MarkThisThreadAsRuntime();
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
  char* staging = AcquireStaging();
  if (staging == nullptr) return 0;  // as many reclaims as areas run already
  std::vector<VmRange*> ranges = space_->Snapshot();  // pinned: Release waits for us
  std::uint64_t evicted = 0;
  if (!ranges.empty()) {
    const std::size_t n = ranges.size();
    const std::size_t first = next_range_.fetch_add(1, std::memory_order_relaxed) % n;
    // Two rounds: the first may only demote active pages that the second then evicts.
    for (std::size_t k = 0; k < 2 * n && evicted < goal; ++k) {
      VmRange& range = *ranges[(first + k) % n];
      const std::uint64_t want = goal - evicted;
      evicted += SweepRange(range, want, std::max(kMinScan, want * kScanPerGoalPage), staging);
    }
  }
  for (VmRange* range : ranges) AddressSpace::Unpin(range);
  ReleaseStaging(staging);
  return evicted;
}

std::uint64_t Reclaimer::SweepRange(VmRange& range, std::uint64_t goal, std::uint64_t max_scan,
                                     char* staging) {
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
    // The reference bit user space can see: written since the hand last protected the
    // page (PAGEMAP_SCAN under WP_ASYNC). One scan for the rest of this leaf table.
    const std::uint64_t leaf_first = hand;
    bool written[PageTable::kEntriesPerTable];
    const bool have_bits =
        pagemap_ != nullptr &&
        pagemap_->Written(range.PageAddress(leaf_first), leaf_end - leaf_first, written) == 0;
    std::uint64_t protect_start = 0, protect_length = 0;
    auto protect = [&] {  // write-protects the referenced run, so its next write shows
      if (protect_length == 0) return;
      (void)uffd_->WriteProtect(range.PageAddress(protect_start), protect_length << kPageShift,
                                /*protect=*/true);
      protect_length = 0;
    };
    for (; hand < leaf_end && scanned < max_scan && count < kBatchPages; ++hand, ++entry) {
      ++scanned;
      Pte pte = entry->load(std::memory_order_acquire);
      if (!PteHasFrame(pte)) {
        if (PteIsCow(pte) && cow_ != nullptr) evicted += cow_->EvictPreserved(*entry, pte);
        continue;
      }
      if (have_bits && written[hand - leaf_first]) {
        // Referenced: active again. Claimed for a moment, so no other reclaim takes the
        // page while its clean slot (now stale: it was written) is dropped.
        if (!entry->compare_exchange_strong(pte, kPteClaimed, std::memory_order_acq_rel)) continue;
        const FrameNumber frame = PteFrame(pte);
        FrameDescriptor& d = frames_->pool().Descriptor(frame);
        if (d.flags & kFrameReadahead) {
          counters_.readahead_hits.fetch_add(1, std::memory_order_relaxed);
          d.flags &= ~kFrameReadahead;
        }
        frames_->DropCleanSlot(frame);
        entry->store(pte | kPteActive, std::memory_order_release);
        if (protect_length != 0 && protect_start + protect_length != hand) protect();
        if (protect_length == 0) protect_start = hand;
        ++protect_length;
        continue;
      }
      if (pte & kPteActive) {  // second chance: to the inactive list
        (void)entry->compare_exchange_strong(pte, pte & ~kPteActive, std::memory_order_acq_rel);
        continue;
      }
      // The entry names the staging page the bytes will be in (a child forked meanwhile
      // copies them from there: fork_copy.h).
      char* buffer = staging + count * kPageSize;
      const bool shared = (pte & kPteShared) != 0;
      // A shared page keeps its mark through writeback (Range::Discard waits for it).
      const Pte writeback = MakeWritebackPte(StagingPage(buffer)) | (shared ? kPteShared : 0);
      if (shared) {
        // Under the frame lock: a clone copying from this page waits for the eviction.
        SharedFrame f(frames_->pool().Descriptor(PteFrame(pte)));
        if (!f.TryLock()) continue;
        const bool claimed =
            entry->compare_exchange_strong(pte, writeback, std::memory_order_acq_rel);
        f.Unlock();
        if (!claimed) continue;
      } else if (!entry->compare_exchange_strong(pte, writeback, std::memory_order_acq_rel)) {
        continue;
      }
      // Reaching here with bits means the scan saw the page unwritten.
      victims[count] = Victim{entry, hand, PteFrame(pte), buffer, /*unwritten=*/have_bits, shared};
      ++count;
    }
    protect();
    if (hand == pages) hand = 0;
    if (count == kBatchPages) {
      evicted += EvictBatch(range, victims, count, staging);
      count = 0;
    }
  }
  if (count != 0) evicted += EvictBatch(range, victims, count, staging);
  range.reclaim_hand.store(hand, std::memory_order_relaxed);
  return evicted;
}

Pte Reclaimer::WritebackPte(const Victim& v) const {
  return MakeWritebackPte(StagingPage(v.buffer)) | (v.shared ? kPteShared : 0);
}

bool Reclaimer::FinishWriteback(const Victim& v, Pte final_pte) const {
  Pte expected = WritebackPte(v);
  if (v.entry->compare_exchange_strong(expected, final_pte, std::memory_order_acq_rel)) {
    return true;
  }
  v.entry->store(0, std::memory_order_release);  // discarded meanwhile: reads zero
  return false;
}

void Reclaimer::FindClean(const Victim* victims, std::size_t count, bool* clean) {
  FramePool& pool = frames_->pool();
  for (std::size_t i = 0; i < count; ++i) {
    // A shared frame's descriptor is read by clones' faults under the frame lock.
    SharedFrame f(pool.Descriptor(victims[i].frame));
    if (victims[i].shared) f.Lock();
    pool.Descriptor(victims[i].frame).flags &= ~kFrameReadahead;  // seen, not a hit
    clean[i] = victims[i].unwritten && frames_->CleanSlot(victims[i].frame).has_value();
    if (!clean[i]) frames_->DropCleanSlot(victims[i].frame);
    if (victims[i].shared) f.Unlock();
  }
}

std::size_t Reclaimer::Unmap(VmRange& range, Victim* victims, std::size_t count, bool* clean) {
  VmRangeCounters& counters = range.counters();
  std::size_t out = 0;
  std::size_t i = 0;
  while (i < count) {
    // A run of consecutive pages goes to consecutive staging pages: one move.
    std::size_t j = i + 1;
    while (j < count && victims[j].page == victims[j - 1].page + 1) ++j;
    const UffdResult r = uffd_->Move(victims[i].buffer, range.PageAddress(victims[i].page),
                                     (j - i) << kPageShift, UffdMoveMode{.dontwake = true});
    const std::size_t done = std::min<std::size_t>(r.bytes_done >> kPageShift, j - i);
    for (std::size_t k = i; k < i + done; ++k) {
      victims[out] = victims[k];
      clean[out] = clean[k];
      ++out;
    }
    if (r.ok()) {
      i = j;
      continue;
    }
    const Victim& bad = victims[i + done];
    if (r.error == ENOENT && !bad.shared) {
      // No page at the source: the program dropped it (MADV_DONTNEED). It reads zero.
      (void)FinishWriteback(bad, 0);
      FreeVictimFrame(bad);
      counters.resident_pages.fetch_sub(1, std::memory_order_relaxed);
    } else {
      // EBUSY: shared with a forked child or pinned for I/O; EAGAIN/other: try later.
      // (A shared page the program dropped behind uvmem's back stays named: the frame
      // must outlive the other ranges' entries.)
      counters_.busy_pages.fetch_add(1, std::memory_order_relaxed);
      PutBack(range, bad, /*moved_out=*/false);
    }
    i += done + 1;
  }
  return out;
}

void Reclaimer::FreeVictimFrame(const Victim& v) {
  // The page is gone from the range: a moved-in frame's arena slot stays empty (a hole);
  // a token frame's slot is as it was.
  FrameDescriptor& d = frames_->pool().Descriptor(v.frame);
  if (d.flags & kFrameInRange) d.flags = kFrameHole;
  frames_->Free(v.frame);
}

void Reclaimer::PutBack(VmRange& range, const Victim& v, bool moved_out) {
  VmRangeCounters& counters = range.counters();
  const Pte resident = MakePresentPte(v.frame) | kPteActive | (v.shared ? kPteShared : 0);
  if (!moved_out) {
    if (!FinishWriteback(v, resident)) {  // discarded: the page is gone from the range
      FreeVictimFrame(v);
      counters.resident_pages.fetch_sub(1, std::memory_order_relaxed);
    }
    return;
  }
  Pte expected = WritebackPte(v);
  if (!v.entry->compare_exchange_strong(expected, kPteClaimed, std::memory_order_acq_rel)) {
    v.entry->store(0, std::memory_order_release);  // discarded meanwhile
    FreeVictimFrame(v);
    counters.resident_pages.fetch_sub(1, std::memory_order_relaxed);
    return;
  }
  // The page goes back from the staging area; the frame stays its token.
  void* page = range.PageAddress(v.page);
  const CopyPlacement::Scope place(frames_->copy_placement(), range, v.page, 1, v.frame);
  // A shared page goes back write-protected in one step (COPY_MODE_WP): a move would map
  // it writable for a moment, and a write then would reach the clones.
  UffdResult r = v.shared ? uffd_->Copy(page, v.buffer, kPageSize,
                                        UffdCopyMode{.dontwake = true, .wp = true})
                          : uffd_->Move(page, v.buffer, kPageSize, UffdMoveMode{.dontwake = true});
  if (!r.ok()) {
    r = uffd_->Copy(page, v.buffer, kPageSize, UffdCopyMode{.dontwake = true, .wp = v.shared});
    if (!r.ok() && r.error != EEXIST) {
      ReportFatal("reclaim: cannot put page {} of range '{}' back after a failed write ({})",
                  page, range.name(), std::strerror(r.error));
    }
  }
  v.entry->store(resident, std::memory_order_release);
}

std::uint64_t Reclaimer::EvictBatch(VmRange& range, Victim* victims, std::size_t count,
                                     char* staging) {
  SwapDevice& swap = *frames_->swap();
  VmRangeCounters& counters = range.counters();
  std::uint64_t lo = victims[0].page, hi = victims[0].page;
  for (std::size_t i = 1; i < count; ++i) {
    lo = std::min(lo, victims[i].page);
    hi = std::max(hi, victims[i].page);
  }
  bool clean[kBatchPages];
  FindClean(victims, count, clean);
  const std::size_t unmapped = Unmap(range, victims, count, clean);

  // A page judged clean by the scan could have been written between the scan and the
  // unmap; its bytes must still match the slot's checksum, or it is written out.
  std::size_t dirty[kBatchPages];
  std::size_t dirty_count = 0;
  for (std::size_t i = 0; i < unmapped; ++i) {
    if (clean[i]) {
      const SwapSlot slot = *frames_->CleanSlot(victims[i].frame);
      if (swap.Matches(slot, victims[i].buffer)) continue;
      frames_->DropCleanSlot(victims[i].frame);
      clean[i] = false;
    }
    dirty[dirty_count++] = i;
  }
  SwapSlot slots[kBatchPages];
  const void* sources[kBatchPages];
  int errors[kBatchPages] = {};
  const std::size_t got = swap.Allocate(dirty_count, slots);
  for (std::size_t k = 0; k < got; ++k) sources[k] = victims[dirty[k]].buffer;
  if (got != 0) (void)swap.Write(slots, sources, got, errors);

  std::uint64_t evicted = 0;
  auto complete = [&](const Victim& v, SwapSlot slot) {
    const bool entry_kept = FinishWriteback(v, MakeSwappedPte(slot.value));
    if (entry_kept) {
      counters.swapped_pages.fetch_add(1, std::memory_order_relaxed);
      counters.pages_swapped_out.fetch_add(1, std::memory_order_relaxed);
      counters_.pages_swapped_out.fetch_add(1, std::memory_order_relaxed);
    }
    // A shared frame others still name stays, evicted, with its own reference on the
    // slot: one write serves them all.
    bool frame_kept = false;
    if (v.shared) {
      counters.shared_pages.fetch_sub(1, std::memory_order_relaxed);
      frame_kept = cow_->KeepEvicted(v.frame, slot);
    }
    if (!entry_kept) swap.Unref(slot);  // discarded meanwhile
    if (!frame_kept) FreeVictimFrame(v);
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
  // The written pages leave memory (the staging area is empty for the next batch), and
  // threads that touched them meanwhile fault again and find them in swap.
  (void)DiscardPages(staging, count << kPageShift);
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
