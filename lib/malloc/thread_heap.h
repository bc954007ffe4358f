// thread_heap.h — ThreadHeap: one thread's size-class spans in one heap area.
//
// Allocation pops the first span of the class queue's `free` list with no lock and no
// atomic (the fast path, inline below). When that list is empty the slow path, per
// span of the class: takes the owner's own frees (`local_free`), then other threads'
// frees (`thread_free`, one atomic exchange), then carves fresh blocks (at most a page's
// worth at a time, so memory is touched as it is used); a span with nothing left moves
// to the `full` list; with no span left, a new one comes from the area.
//
// Frees by the owner push onto `local_free` (no atomic). Frees by another thread push
// onto the span's `thread_free` with one CAS; if the span sits on the owner's full list
// the freeing thread also queues the span on the owner's `delayed` stack so the owner
// puts it back in its class queue (Dekker-style: the owner sets in_full and then
// re-reads thread_free; the freer pushes and then reads in_full, both seq_cst, so one
// of them always sees the other). A span whose blocks are all free goes back to the
// area unless it is the only span of its class (to avoid ping-pong).
//
// A thread that exits abandons its heaps; the next thread to start adopts one whole
// (its spans and delayed queue with it), so frees to abandoned spans are never lost.
//
// Thread-safety: Allocate* and OnLocalFree* only on the owning thread; FreeRemote from
// any thread.
#ifndef UVMEM_MALLOC_THREAD_HEAP_H_
#define UVMEM_MALLOC_THREAD_HEAP_H_

#include <atomic>
#include <cstdint>

#include "malloc/heap_area.h"
#include "malloc/size_class.h"
#include "malloc/span.h"

namespace uvmem::internal {

// Marks free blocks: block->key == kFreeKey ^ address. A block handed out has key 0.
inline constexpr std::uintptr_t kFreeKey = 0x5a17c3e9b4d2f681;

// A counter only its owner thread writes: a plain add (no locked instruction), published
// as an atomic so statistics may read it from any thread.
inline void AddOwned(std::atomic<std::uint64_t>& counter, std::int64_t delta) {
  counter.store(counter.load(std::memory_order_relaxed) + static_cast<std::uint64_t>(delta),
                std::memory_order_relaxed);
}

class ThreadHeap {
 public:
  explicit ThreadHeap(HeapArea* area) : area_(area) {}

  // A block of class `c`, or nullptr when the area is full.
  void* AllocateSmall(int c) {
    Span* s = queues_[c].head;
    if (s != nullptr) {
      if (FreeBlock* b = s->free) {
        s->free = b->next;
        b->key = 0;
        ++s->used;
        return b;
      }
    }
    return AllocateSlow(c);
  }

  // Frees block `b` of span `s`, which this heap owns.
  void FreeLocal(Span* s, FreeBlock* b) {
    b->next = s->local_free;
    s->local_free = b;
    if (--s->used == 0 || s->in_full.load(std::memory_order_relaxed)) OnLocalFreeSlow(s);
  }
  // Frees block `b` of span `s` owned by another heap (or by no thread now).
  static void FreeRemote(Span* s, FreeBlock* b);

  HeapArea* area() const { return area_; }
  ThreadHeap* next_in_registry = nullptr;  // all heaps ever made (never freed)
  ThreadHeap* next_abandoned = nullptr;
  // Counters written by the owner only (relaxed atomics so statistics may read them).
  std::atomic<std::uint64_t> malloc_calls{0};
  std::atomic<std::uint64_t> free_calls{0};
  void CountMalloc() { AddOwned(malloc_calls, 1); }
  void CountFree() { AddOwned(free_calls, 1); }
  std::uint64_t ClassSpansNow() const { return class_spans_now_.load(std::memory_order_relaxed); }

  // On thread exit (owner): empty spans go back to the area.
  void ReleaseEmptySpans();

 private:
  struct Queue {
    Span* head = nullptr;
    Span* tail = nullptr;
  };
  void* AllocateSlow(int c);
  void OnLocalFreeSlow(Span* s);
  void ProcessDelayed();
  // Moves the owner's and other threads' frees of `s` onto `s->free`.
  static void Collect(Span* s);
  void Extend(Span* s);
  Span* NewSpan(int c);
  void RetireSpan(Span* s);  // REQUIRES: s->used == 0, s unlinked
  static void PushFront(Queue& q, Span* s);
  static void PushBack(Queue& q, Span* s);
  static void Unlink(Queue& q, Span* s);

  HeapArea* const area_;
  Queue queues_[kNumSizeClasses];
  Queue full_;
  std::atomic<Span*> delayed_{nullptr};
  std::atomic<std::uint64_t> class_spans_now_{0};
};

}  // namespace uvmem::internal

#endif  // UVMEM_MALLOC_THREAD_HEAP_H_
