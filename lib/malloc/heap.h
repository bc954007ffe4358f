// heap.h — the process heap: lazy start-up, the heap areas, thread heaps, and the
// allocation entry points every malloc-family call goes through.
//
// Start-up is lazy: the first allocation creates the runtime (options from the UVMEM_*
// environment, see lib/config) and one heap area per NUMA node, while a per-thread
// re-entrancy flag sends the allocations start-up itself makes to pinned memory
// (internal_alloc.h); other threads wait. If the runtime cannot start (no userfaultfd,
// no permission, only user-mode-only), the heap runs on plain anonymous memory and says
// so once on stderr: a program is never left without malloc.
//
// fork(): handlers hold every heap lock across fork. The child's ranges are no longer
// registered (the parent's userfaultfd stays with the parent's address space), so the
// child's heap is detached: its pages are the parent's bytes, copied on write by the
// kernel; new pages are the kernel's demand-zero pages; purging is MADV_DONTNEED; the
// runtime (whose userfaultfd still names the parent's mm) is never called again.
// vfork()/posix_spawn() share the parent's address space and its fault threads.
//
// Thread-safety: every function is thread-safe.
#ifndef UVMEM_MALLOC_HEAP_H_
#define UVMEM_MALLOC_HEAP_H_

#include <cerrno>
#include <cstddef>
#include <cstring>

#include "malloc/heap_area.h"
#include "malloc/size_class.h"
#include "malloc/thread_heap.h"
#include "malloc/thread_state.h"
#include "uvmem/malloc.h"
#include "uvmem/types.h"

namespace uvmem::internal {

// The paths below the inline fast paths.
void* HeapAllocateSlow(std::size_t bytes, std::size_t alignment, bool zero);
void HeapFreeSlow(void* p);

// `bytes` aligned to `alignment` (a power of two; ≤ 16 is malloc's own). nullptr with
// errno ENOMEM when no memory is left. `zero`: the bytes read zero (calloc).
// A block of class `c` from heap `h`, counted; nullptr with errno ENOMEM.
inline void* AllocateClassBlock(ThreadHeap* h, int c) {
  void* p = h->AllocateSmall(c);
  if (p == nullptr) [[unlikely]] {
    errno = ENOMEM;
    return nullptr;
  }
  h->CountMalloc();
  return p;
}

inline void* HeapAllocate(std::size_t bytes, std::size_t alignment, bool zero) {
  if (alignment <= 16 && bytes <= kMaxSmallBytes) [[likely]] {
    if (ThreadHeap* h = tls_heap) [[likely]] {
      void* p = AllocateClassBlock(h, SizeClassOf(bytes));
      if (p != nullptr && zero) std::memset(p, 0, bytes);
      return p;
    }
  }
  return HeapAllocateSlow(bytes, alignment, zero);
}

// A free of a block of this thread's own class span; anything else takes the slow path.
inline void HeapFree(void* p) {
  ThreadHeap* h = tls_heap;
  if (h != nullptr && h->area()->Contains(p)) [[likely]] {
    Span* s = h->area()->SpanOf(p);
    if (s->kind.load(std::memory_order_relaxed) == SpanKind::kClass &&
        s->heap.load(std::memory_order_relaxed) == h &&
        !s->has_aligned.load(std::memory_order_relaxed)) [[likely]] {
      const std::uintptr_t offset = reinterpret_cast<std::uintptr_t>(p) - s->start;
      const std::uint32_t q = DivideByClass(offset, s->reciprocal);
      auto* b = static_cast<FreeBlock*>(p);
      const std::uintptr_t key = kFreeKey ^ reinterpret_cast<std::uintptr_t>(p);
      if (std::uintptr_t{q} * s->block_bytes == offset && q < s->reserved && b->key != key)
          [[likely]] {
        b->key = key;
        h->CountFree();
        h->FreeLocal(s, b);
        return;
      }
    }
  }
  HeapFreeSlow(p);
}
// As HeapAllocate from the area of `node` (kernel node number). nullptr and errno EINVAL
// when the node does not exist.
void* HeapAllocateOnNode(std::size_t bytes, NodeId node);
// HeapFree (above) frees `p` (nullptr: no-op) and aborts with a message naming `p` on a
// double free or a pointer the heap never returned, as glibc does.
// Usable bytes at `p` (0 for nullptr). Aborts on a pointer the heap never returned.
std::size_t HeapUsableSize(const void* p);
// realloc(3) semantics (size 0 frees and returns nullptr, as glibc).
void* HeapReallocate(void* p, std::size_t bytes);
// Gives back the frames of every free span now (malloc_trim). Returns pages given back.
std::size_t HeapTrim();
MallocStats HeapStats();

// The preloaded library calls this from its constructor: until then (while ld.so and
// the libraries it depends on initialise) allocations come from pinned bootstrap memory
// and the runtime is not started. Only a binary that defines uvmem_defer_heap_start
// (libuvmem_preload.so) defers; linked programs start on the first allocation.
void AllowHeapStart();

}  // namespace uvmem::internal

#endif  // UVMEM_MALLOC_HEAP_H_
