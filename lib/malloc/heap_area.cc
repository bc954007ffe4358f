#include "malloc/heap_area.h"

#include <time.h>

#include <bit>
#include <new>

#include "malloc/thread_state.h"
#include "platform/memory_map.h"
#include "platform/report.h"
#include "vm/runtime_impl.h"

namespace uvmem::internal {

std::uint64_t CoarseNowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

HeapArea::HeapArea(RuntimeImpl* runtime, VmRange* range, void* base, std::size_t bytes, NodeId node,
                   std::uint64_t purge_delay_ns)
    : runtime_(runtime),
      range_(range),
      base_(reinterpret_cast<std::uintptr_t>(base)),
      bytes_(bytes),
      node_(node),
      purge_delay_ns_(purge_delay_ns),
      total_slices_(static_cast<std::uint32_t>(bytes >> kSliceShift)) {
  UVMEM_CHECK(base_ % kSliceBytes == 0 && bytes_ % kSliceBytes == 0);
  const std::size_t table_bytes =
      (std::size_t{total_slices_} * sizeof(Span) + kPageSize - 1) & ~(kPageSize - 1);
  // Zero-filled by the kernel on first touch: a zero Span is a valid kUnused slice.
  spans_ = static_cast<Span*>(ReserveAnonymousNoAlloc(table_bytes, kPageSize));
}

int HeapArea::BinOf(std::uint32_t slices) {
  if (slices <= 64) return static_cast<int>(slices) - 1;
  return std::min(kBins - 1, 64 + static_cast<int>(std::bit_width(slices)) - 7);  // 65..127 → 64
}

void HeapArea::InitSpan(std::uint32_t index, std::uint32_t slices) {
  for (std::uint32_t i = 0; i < slices; ++i)
    spans_[index + i].head_offset.store(i, std::memory_order_relaxed);
  Span* s = &spans_[index];
  s->slices = slices;
  s->start = base_ + (std::uintptr_t{index} << kSliceShift);
}

void HeapArea::InsertFree(Span* s) {
  s->kind.store(SpanKind::kFree, std::memory_order_relaxed);
  Span*& head = bins_[BinOf(s->slices)];
  s->prev = nullptr;
  s->next = head;
  if (head) head->prev = s;
  head = s;
}

void HeapArea::RemoveFree(Span* s) {
  if (s->prev) {
    s->prev->next = s->next;
  } else {
    bins_[BinOf(s->slices)] = s->next;
  }
  if (s->next) s->next->prev = s->prev;
  s->next = s->prev = nullptr;
}

void HeapArea::InsertFreeTail(std::uint32_t index, std::uint32_t slices, bool zeroed,
                              std::uint64_t stamp) {
  // What is left of a free span that was split keeps its state (dirty or demand-zero).
  InitSpan(index, slices);
  Span* tail = &spans_[index];
  tail->zeroed = zeroed;
  tail->stamp = stamp;
  if (!zeroed) free_dirty_bytes_ += std::uint64_t{slices} << kSliceShift;
  InsertFree(tail);
}

Span* HeapArea::AllocateSpan(std::uint32_t slices, SpanKind kind, bool* was_zeroed) {
  MutexLock lock(&mu_);
  Span* best = nullptr;
  for (int bin = BinOf(slices); bin < kBins && best == nullptr; ++bin) {
    for (Span* s = bins_[bin]; s != nullptr; s = s->next) {
      if (s->slices >= slices && (best == nullptr || s->slices < best->slices)) best = s;
      if (bin < 64 && best) break;  // exact bins: any member fits as well as another
    }
  }
  Span* out;
  if (best != nullptr) {
    RemoveFree(best);
    if (!best->zeroed) free_dirty_bytes_ -= std::uint64_t{best->slices} << kSliceShift;
    const std::uint32_t index = IndexOf(best);
    const std::uint32_t rest = best->slices - slices;
    const bool zeroed = best->zeroed;
    if (rest != 0) InsertFreeTail(index + slices, rest, zeroed, best->stamp);
    InitSpan(index, slices);
    out = best;
    out->zeroed = zeroed;
  } else {
    if (total_slices_ - frontier_ < slices) return nullptr;
    const std::uint32_t index = frontier_;
    frontier_ += slices;
    InitSpan(index, slices);
    out = &spans_[index];
    out->zeroed = true;  // never touched: demand-zero
  }
  out->kind.store(kind, std::memory_order_relaxed);
  *was_zeroed = out->zeroed;
  out->zeroed = false;
  out->has_aligned.store(false, std::memory_order_relaxed);
  out->next = out->prev = nullptr;
  spans_bytes_now_ += std::uint64_t{slices} << kSliceShift;
  return out;
}

bool HeapArea::TryGrow(Span* span, std::uint32_t slices) {
  MutexLock lock(&mu_);
  const std::uint32_t index = IndexOf(span);
  const std::uint32_t end = index + span->slices;
  if (slices <= span->slices) return true;
  const std::uint32_t extra = slices - span->slices;
  if (end == frontier_) {
    if (total_slices_ - frontier_ < extra) return false;
    frontier_ += extra;
  } else {
    Span* after = &spans_[end];
    if (after->kind.load(std::memory_order_relaxed) != SpanKind::kFree || after->slices < extra)
      return false;
    RemoveFree(after);
    const std::uint32_t rest = after->slices - extra;
    if (!after->zeroed) free_dirty_bytes_ -= std::uint64_t{after->slices} << kSliceShift;
    after->kind.store(SpanKind::kUnused, std::memory_order_relaxed);
    if (rest != 0) InsertFreeTail(end + extra, rest, after->zeroed, after->stamp);
  }
  for (std::uint32_t i = span->slices; i < slices; ++i) {
    spans_[index + i].head_offset.store(i, std::memory_order_relaxed);
  }
  span->slices = slices;
  spans_bytes_now_ += std::uint64_t{extra} << kSliceShift;
  return true;
}

void HeapArea::FreeSpan(Span* span) {
  MutexLock lock(&mu_);
  spans_bytes_now_ -= std::uint64_t{span->slices} << kSliceShift;
  span->zeroed = false;
  span->stamp = CoarseNowNs();
  std::uint32_t index = IndexOf(span);
  std::uint32_t slices = span->slices;
  std::uint64_t dirty = std::uint64_t{slices} << kSliceShift;
  // Coalesce with the free span after, then the one before (boundary tags).
  if (index + slices < frontier_) {
    Span* after = &spans_[index + slices];
    if (after->head_offset.load(std::memory_order_relaxed) == 0 &&
        after->kind.load(std::memory_order_relaxed) == SpanKind::kFree) {
      RemoveFree(after);
      if (!after->zeroed) free_dirty_bytes_ -= std::uint64_t{after->slices} << kSliceShift;
      dirty += std::uint64_t{after->slices} << kSliceShift;
      slices += after->slices;
      after->kind.store(SpanKind::kUnused, std::memory_order_relaxed);
    }
  }
  if (index > 0) {
    Span* before = &spans_[index - 1];
    before -= before->head_offset.load(std::memory_order_relaxed);
    if (before->kind.load(std::memory_order_relaxed) == SpanKind::kFree) {
      RemoveFree(before);
      if (!before->zeroed) free_dirty_bytes_ -= std::uint64_t{before->slices} << kSliceShift;
      dirty += std::uint64_t{before->slices} << kSliceShift;
      slices += before->slices;
      span->kind.store(SpanKind::kUnused, std::memory_order_relaxed);
      index = IndexOf(before);
    }
  }
  Span* merged = &spans_[index];
  merged->slices = slices;
  merged->head_offset.store(0, std::memory_order_relaxed);
  spans_[index + slices - 1].head_offset.store(slices - 1,
                                               std::memory_order_relaxed);  // boundary tag
  merged->start = base_ + (std::uintptr_t{index} << kSliceShift);
  merged->zeroed = false;
  merged->stamp = span->stamp;
  free_dirty_bytes_ += dirty;
  InsertFree(merged);
}

std::uint64_t HeapArea::DiscardRange(std::uintptr_t start, std::size_t bytes) {
  if (detached_ || range_ == nullptr) {
    if (DiscardPages(reinterpret_cast<void*>(start), bytes) != 0) return 0;
    return bytes >> kPageShift;  // the kernel's pages: how many were resident is unknown
  }
  auto discarded = runtime_->Discard(*range_, (start - base_) >> kPageShift, bytes >> kPageShift);
  return discarded.ok() ? *discarded : 0;
}

std::uint64_t HeapArea::Discard(Span* s) {
  const std::size_t bytes = std::size_t{s->slices} << kSliceShift;
  const std::uint64_t freed = DiscardRange(s->start, bytes);
  s->zeroed = true;
  free_dirty_bytes_ -= bytes;
  return freed;
}

std::uint64_t HeapArea::Purge(std::uint64_t now_ns, bool all) {
  MutexLock lock(&mu_);
  if (free_dirty_bytes_ == 0) return 0;
  std::uint64_t pages = 0;
  for (Span*& bin : bins_) {
    for (Span* s = bin; s != nullptr; s = s->next) {
      if (s->zeroed) continue;
      if (!all && now_ns - s->stamp < purge_delay_ns_) continue;
      pages += Discard(s);
    }
  }
  purged_pages_ += pages;
  return pages;
}

void HeapArea::Detach() {
  MutexLock lock(&mu_);
  detached_ = true;
  detached_fast_.store(true, std::memory_order_relaxed);
}

std::size_t HeapArea::MovePages(std::uintptr_t src, std::uintptr_t dst, std::size_t bytes) {
  if (range_ == nullptr || detached_fast_.load(std::memory_order_relaxed)) return 0;
  ReentryScope reentry;
  std::uint64_t moved = 0;
  (void)runtime_->MovePages(*range_, (src - base_) >> kPageShift, (dst - base_) >> kPageShift,
                            bytes >> kPageShift, &moved);
  return moved << kPageShift;
}

void HeapArea::Populate(std::uintptr_t start, std::size_t bytes) {
  if (range_ == nullptr || detached_fast_.load(std::memory_order_relaxed)) return;
  ReentryScope reentry;
  (void)runtime_->Populate(*range_, (start - base_) >> kPageShift, bytes >> kPageShift);
}

HeapArea::Stats HeapArea::GetStats() const {
  MutexLock lock(&mu_);
  return {spans_bytes_now_, free_dirty_bytes_, purged_pages_};
}

}  // namespace uvmem::internal
