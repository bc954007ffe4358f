// internal_alloc.h — pinned memory for allocations that must never be paged.
//
// Three kinds of request reach it instead of the paged heap (design.md, LD_PRELOAD rules):
//   bootstrap   malloc calls made before the heap exists, or while it is being set up
//               (ld.so, libstdc++'s emergency pool, pthread_create inside the runtime's
//               start-up all call malloc);
//   re-entrant  malloc calls made by the runtime itself while the heap is inside one of
//               its own slow paths (a lock is held; the heap must not be re-entered);
//   runtime     malloc calls from the runtime's own threads (fault threads, the purger):
//               a fault thread touching a missing page would wait on itself.
// The memory is plain anonymous memory that is never registered with userfaultfd: the
// first 4 MiB are a static array (untouched pages cost nothing), then 4 MiB chunks from
// mmap. Blocks are power-of-two sizes from 16 bytes to 64 KiB with one free list each;
// larger requests get a mapping of their own. Nothing is ever returned to the system.
//
// Thread-safety: every function is thread-safe (one spin lock; no call allocates).
#ifndef UVMEM_MALLOC_INTERNAL_ALLOC_H_
#define UVMEM_MALLOC_INTERNAL_ALLOC_H_

#include <cstddef>

namespace uvmem::internal {

class InternalAllocator {
 public:
  // `bytes` (0 is served as 1) aligned to `alignment` (a power of two ≤ 4 KiB; ≥ 16 is
  // what malloc promises). nullptr only when the system refuses memory (errno ENOMEM).
  static void* Allocate(std::size_t bytes, std::size_t alignment = 16);
  // Frees a block from Allocate. REQUIRES: Owns(p).
  static void Free(void* p);
  // Whether `p` is a block this allocator handed out (O(chunks); slow paths only).
  static bool Owns(const void* p);
  // Usable bytes of a block. REQUIRES: Owns(p).
  static std::size_t UsableSize(const void* p);
  // Bytes of memory held (chunks and large mappings).
  static std::size_t HeldBytes();
  // fork() handlers: the lock is held across fork so the child never inherits it held.
  static void LockForFork();
  static void UnlockAfterFork();
};

}  // namespace uvmem::internal

#endif  // UVMEM_MALLOC_INTERNAL_ALLOC_H_
