#include "malloc/thread_heap.h"

#include <algorithm>

#include "uvmem/types.h"

namespace uvmem::internal {

void ThreadHeap::PushFront(Queue& q, Span* s) {
  s->prev = nullptr;
  s->next = q.head;
  if (q.head) {
    q.head->prev = s;
  } else {
    q.tail = s;
  }
  q.head = s;
}

void ThreadHeap::PushBack(Queue& q, Span* s) {
  s->next = nullptr;
  s->prev = q.tail;
  if (q.tail) {
    q.tail->next = s;
  } else {
    q.head = s;
  }
  q.tail = s;
}

void ThreadHeap::Unlink(Queue& q, Span* s) {
  if (s->prev) {
    s->prev->next = s->next;
  } else {
    q.head = s->next;
  }
  if (s->next) {
    s->next->prev = s->prev;
  } else {
    q.tail = s->prev;
  }
  s->next = s->prev = nullptr;
}

void ThreadHeap::Collect(Span* s) {
  if (s->free == nullptr) {
    s->free = s->local_free;
    s->local_free = nullptr;
  }
  if (s->thread_free.load(std::memory_order_relaxed) != nullptr) {
    FreeBlock* list = s->thread_free.exchange(nullptr, std::memory_order_acquire);
    std::uint32_t n = 1;
    FreeBlock* tail = list;
    for (; tail->next != nullptr; tail = tail->next) ++n;
    s->used -= n;
    tail->next = s->free;
    s->free = list;
  }
}

namespace {
// Pages filled ahead of the carved blocks at a time: one Populate call per 16 KiB.
constexpr std::uint64_t kFillAheadBytes = 16 * 1024;
}  // namespace

void ThreadHeap::Extend(Span* s) {
  if (s->capacity == s->reserved) return;
  // About one page of blocks at a time: memory is touched (and faulted in) as used.
  const std::uint32_t want = std::max<std::uint32_t>(1, kPageSize / s->block_bytes);
  const std::uint32_t n = std::min(want, s->reserved - s->capacity);
  // First fill the pages these blocks lie on from this thread, a few at a time: no fault
  // round trip, and no more resident memory than the carved blocks need. (Linking the
  // blocks below writes to them: filling afterwards would fault on every one.)
  const std::uint64_t carved_end = std::uint64_t{s->capacity + n} * s->block_bytes;
  if (carved_end > s->filled_bytes) {
    const std::uint64_t span_bytes = std::uint64_t{s->slices} << kSliceShift;
    const std::uint64_t fill_end =
        std::min(span_bytes, (carved_end + kFillAheadBytes - 1) & ~(kFillAheadBytes - 1));
    area_->Populate(s->start + s->filled_bytes, fill_end - s->filled_bytes);
    s->filled_bytes = static_cast<std::uint32_t>(fill_end);
  }
  char* first = reinterpret_cast<char*>(s->start) + std::uint64_t{s->capacity} * s->block_bytes;
  FreeBlock* head = nullptr;
  for (std::uint32_t i = n; i-- > 0;) {
    auto* b = reinterpret_cast<FreeBlock*>(first + std::uint64_t{i} * s->block_bytes);
    b->next = head;
    head = b;
  }
  s->capacity += n;
  s->free = head;
}

Span* ThreadHeap::NewSpan(int c) {
  bool zeroed = false;
  Span* s = area_->AllocateSpan(ClassSpanSlices(c), SpanKind::kClass, &zeroed);
  if (s == nullptr) return nullptr;
  // A fresh span's pages are filled as blocks are carved (Extend); a reused one is
  // already backed where it was written.
  s->filled_bytes = zeroed ? 0 : s->slices << kSliceShift;
  s->size_class = static_cast<std::uint8_t>(c);
  s->block_bytes = ClassBlockBytes(c);
  s->reciprocal = ClassReciprocal(c);
  s->reserved =
      static_cast<std::uint32_t>((std::uint64_t{s->slices} << kSliceShift) / s->block_bytes);
  s->capacity = 0;
  s->used = 0;
  s->free = nullptr;
  s->local_free = nullptr;
  s->thread_free.store(nullptr, std::memory_order_relaxed);
  s->in_full.store(false, std::memory_order_relaxed);
  s->delayed_queued.store(false, std::memory_order_relaxed);
  // Publishing the owner last: a free that finds this heap sees an initialised span.
  s->heap.store(this, std::memory_order_release);
  AddOwned(class_spans_now_, 1);
  return s;
}

void ThreadHeap::RetireSpan(Span* s) {
  // A span being queued on the delayed stack by a late remote free must not go back to
  // the area meanwhile: claim the flag; if someone holds it, keep the span for now.
  if (s->delayed_queued.exchange(true, std::memory_order_acq_rel)) {
    s->in_full.store(false, std::memory_order_relaxed);
    PushFront(queues_[s->size_class], s);
    return;
  }
  s->heap.store(nullptr, std::memory_order_relaxed);
  AddOwned(class_spans_now_, -1);
  area_->FreeSpan(s);
}

void ThreadHeap::ProcessDelayed() {
  Span* s = delayed_.exchange(nullptr, std::memory_order_acquire);
  while (s != nullptr) {
    Span* next = s->delayed_next;
    s->delayed_queued.store(false, std::memory_order_release);
    if (s->kind.load(std::memory_order_relaxed) == SpanKind::kClass &&
        s->heap.load(std::memory_order_relaxed) == this &&
        s->in_full.load(std::memory_order_relaxed)) {
      Unlink(full_, s);
      s->in_full.store(false, std::memory_order_relaxed);
      PushBack(queues_[s->size_class], s);
    }
    s = next;
  }
}

void* ThreadHeap::AllocateSlow(int c) {
  if (delayed_.load(std::memory_order_relaxed) != nullptr) ProcessDelayed();
  Queue& q = queues_[c];
  for (Span* s = q.head; s != nullptr;) {
    Span* next = s->next;
    Collect(s);
    if (s->free == nullptr) Extend(s);
    if (s->free != nullptr) {
      if (q.head != s) {
        Unlink(q, s);
        PushFront(q, s);
      }
      return AllocateSmall(c);
    }
    // Full: off the queue, then re-check for remote frees (see the header).
    Unlink(q, s);
    PushFront(full_, s);
    s->in_full.store(true, std::memory_order_seq_cst);
    if (s->thread_free.load(std::memory_order_seq_cst) != nullptr) {
      Unlink(full_, s);
      s->in_full.store(false, std::memory_order_relaxed);
      PushFront(q, s);
      continue;  // q.head is s now: collect it again
    }
    s = next;
  }
  Span* s = NewSpan(c);
  if (s == nullptr) return nullptr;
  PushFront(q, s);
  Extend(s);
  return AllocateSmall(c);
}

void ThreadHeap::OnLocalFreeSlow(Span* s) {
  Queue& q = queues_[s->size_class];
  if (s->in_full.load(std::memory_order_relaxed)) {
    // Back of the queue (as mimalloc's page queues do): the span at the front keeps
    // serving, and this one gathers more free blocks before it is used again.
    Unlink(full_, s);
    s->in_full.store(false, std::memory_order_relaxed);
    PushBack(q, s);
  }
  if (s->used != 0) return;
  if (q.head == s && s->next == nullptr) return;  // the class's only span: keep it
  Unlink(q, s);
  RetireSpan(s);
}

void ThreadHeap::FreeRemote(Span* s, FreeBlock* b) {
  FreeBlock* head = s->thread_free.load(std::memory_order_relaxed);
  do {
    b->next = head;
  } while (!s->thread_free.compare_exchange_weak(head, b, std::memory_order_seq_cst,
                                                 std::memory_order_relaxed));
  if (!s->in_full.load(std::memory_order_seq_cst)) return;
  if (s->delayed_queued.exchange(true, std::memory_order_acq_rel)) return;
  ThreadHeap* owner = s->heap.load(std::memory_order_acquire);
  if (owner == nullptr) {
    s->delayed_queued.store(false, std::memory_order_release);
    return;
  }
  Span* top = owner->delayed_.load(std::memory_order_relaxed);
  do {
    s->delayed_next = top;
  } while (!owner->delayed_.compare_exchange_weak(top, s, std::memory_order_release,
                                                  std::memory_order_relaxed));
}

void ThreadHeap::ReleaseEmptySpans() {
  ProcessDelayed();
  for (Queue& q : queues_) {
    for (Span* s = q.head; s != nullptr;) {
      Span* next = s->next;
      Collect(s);
      if (s->used == 0) {
        Unlink(q, s);
        RetireSpan(s);
      }
      s = next;
    }
  }
}

}  // namespace uvmem::internal
