// span.h — Span: the descriptor of one 64 KiB slice of a heap area, and of the span of
// slices it heads.
//
// A heap area (heap_area.h) is a runtime range cut into slices; each slice has one Span
// in a side table (pinned memory, never in the paged heap, so a free never faults on
// metadata). A span is a run of slices: its first slice's Span is the head and holds the
// state; every other slice's `head_offset` leads back to it, so any pointer into a span
// finds its head in O(1). Kinds:
//   kFree    on the area's free bins; `dirty` until its frames were given back
//   kClass   a size-class span owned by one thread heap (thread_heap.h): blocks of one
//            size on three lists — `free` (allocation), `local_free` (frees by the owner)
//            and `thread_free` (frees by other threads, an atomic stack) — mimalloc's
//            free-list sharding (Leijen, Zorn, de Moura: "Mimalloc: Free List Sharding in
//            Action", 2019)
//   kLarge   one allocation above the largest size class
//
// Thread-safety: kind/slices/head_offset/link fields of free and large spans are guarded
// by the area lock; a class span's lists belong to its owner heap except `thread_free`
// (atomic) and `in_full`/`delayed_queued` (atomics, see thread_heap.cc).
#ifndef UVMEM_MALLOC_SPAN_H_
#define UVMEM_MALLOC_SPAN_H_

#include <atomic>
#include <cstdint>

#include "malloc/size_class.h"

namespace uvmem::internal {

class ThreadHeap;

struct FreeBlock {
  FreeBlock* next;
  std::uintptr_t key;  // kFreeKey ^ address while free: catches double frees
};

enum class SpanKind : std::uint8_t { kUnused = 0, kFree, kClass, kLarge };

// Three cache lines, so that neither two spans nor the owner and the other threads share
// one: (0) set when the span is made, read by every thread; (1) the owner's lists;
// (2) what other threads write.
struct alignas(64) Span {
  // Line 0. Slice bookkeeping (valid in every slice of a span), then the head's fields.
  // Atomics (relaxed) because other threads read them lock-free (free's lookup) or under
  // the area lock while the owner writes the neighbouring fields: a plain load here may
  // be merged with those fields by the compiler.
  std::atomic<std::uint32_t> head_offset{0};  // slices back to the head (0 in the head)
  std::atomic<SpanKind> kind{SpanKind::kUnused};
  std::uint8_t size_class = 0;
  bool zeroed = false;  // every page reads zero (fresh, or given back since)
  // Some pointer handed out is inside a block, not at its start (aligned allocation).
  std::atomic<bool> has_aligned{false};
  std::uint32_t slices = 0;  // length of the span
  std::uint32_t block_bytes = 0;
  std::uint32_t reserved = 0;    // blocks that fit
  std::uint64_t reciprocal = 0;  // ClassReciprocal(size_class)
  std::uintptr_t start = 0;      // address of the span's first byte
  std::atomic<ThreadHeap*> heap{nullptr};
  // kFree: when it was freed (for the purge delay); kLarge: the bytes asked for.
  std::uint64_t stamp = 0;

  // Line 1: the owner heap's (or, for free spans, the area lock's).
  alignas(64) FreeBlock* free = nullptr;
  FreeBlock* local_free = nullptr;
  std::uint32_t capacity = 0;        // blocks carved so far (lazily, from the start)
  std::uint32_t used = 0;            // blocks out (uncollected thread frees count as out)
  std::uint32_t filled_bytes = 0;    // prefix of the span known to be backed (Populate)
  std::atomic<bool> in_full{false};  // on the owner's full list
  // List links: the owner's class queue / full list, or the area's free bin.
  Span* next = nullptr;
  Span* prev = nullptr;

  // Line 2: written by other threads.
  alignas(64) std::atomic<FreeBlock*> thread_free{nullptr};
  std::atomic<bool> delayed_queued{false};  // on the owner's delayed list
  Span* delayed_next = nullptr;
};
static_assert(sizeof(Span) == 192);

}  // namespace uvmem::internal

#endif  // UVMEM_MALLOC_SPAN_H_
