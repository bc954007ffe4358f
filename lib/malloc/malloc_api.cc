// The malloc family of the C API (uvmem/uvmem.h) and uvmem::GetMallocStats, over the heap.
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "malloc/heap.h"
#include "uvmem/malloc.h"
#include "uvmem/uvmem.h"

namespace {

using uvmem::internal::HeapAllocate;

bool IsPowerOfTwo(std::size_t x) { return x != 0 && (x & (x - 1)) == 0; }

void* Fail(int error) {
  errno = error;
  return nullptr;
}

}  // namespace

namespace uvmem {
MallocStats GetMallocStats() { return internal::HeapStats(); }
}  // namespace uvmem

extern "C" {

void uvmem_free(void* p) { uvmem::internal::HeapFree(p); }

void* uvmem_malloc(std::size_t size) { return HeapAllocate(size, 16, false); }

void* uvmem_calloc(std::size_t count, std::size_t size) {
  std::size_t total;
  if (__builtin_mul_overflow(count, size, &total)) return Fail(ENOMEM);
  return HeapAllocate(total, 16, true);
}

void* uvmem_realloc(void* p, std::size_t size) { return uvmem::internal::HeapReallocate(p, size); }

void* uvmem_reallocarray(void* p, std::size_t count, std::size_t size) {
  std::size_t total;
  if (__builtin_mul_overflow(count, size, &total)) return Fail(ENOMEM);
  return uvmem::internal::HeapReallocate(p, total);
}

void* uvmem_aligned_alloc(std::size_t alignment, std::size_t size) {
  if (!IsPowerOfTwo(alignment)) return Fail(EINVAL);
  return HeapAllocate(size, alignment, false);
}

int uvmem_posix_memalign(void** out, std::size_t alignment, std::size_t size) {
  if (!IsPowerOfTwo(alignment) || alignment % sizeof(void*) != 0) return EINVAL;
  const int saved = errno;
  void* p = HeapAllocate(size, alignment, false);
  if (p == nullptr) {
    errno = saved;  // posix_memalign reports through its result, not errno
    return ENOMEM;
  }
  *out = p;
  return 0;
}

void* uvmem_memalign(std::size_t alignment, std::size_t size) {
  if (alignment > (SIZE_MAX >> 1) + 1) return Fail(EINVAL);
  if (alignment <= 16) return HeapAllocate(size, 16, false);  // 0 too, as glibc
  if (!IsPowerOfTwo(alignment)) alignment = std::size_t{1} << (64 - __builtin_clzl(alignment));
  return HeapAllocate(size, alignment, false);
}

void* uvmem_valloc(std::size_t size) { return HeapAllocate(size, 4096, false); }

void* uvmem_pvalloc(std::size_t size) {
  if (size > SIZE_MAX - 4095) return Fail(ENOMEM);
  const std::size_t rounded = size == 0 ? 4096 : (size + 4095) & ~std::size_t{4095};
  return HeapAllocate(rounded, 4096, false);
}

std::size_t uvmem_malloc_usable_size(const void* p) { return uvmem::internal::HeapUsableSize(p); }

void* uvmem_malloc_onnode(std::size_t size, int node) {
  if (node < 0) return Fail(EINVAL);
  return uvmem::internal::HeapAllocateOnNode(size, uvmem::NodeId{node});
}

std::size_t uvmem_malloc_trim(void) { return uvmem::internal::HeapTrim(); }

int uvmem_malloc_stats_get(uvmem_malloc_stats* out) {
  const uvmem::MallocStats s = uvmem::internal::HeapStats();
  *out = {};
  out->malloc_calls = s.malloc_calls;
  out->free_calls = s.free_calls;
  out->thread_heaps = s.thread_heaps;
  out->small_pages_now = s.small_pages_now;
  out->large_spans_now = s.large_spans_now;
  out->spans_bytes_now = s.spans_bytes_now;
  out->purged_pages = s.purged_pages;
  out->heap_reserved_bytes = s.heap_reserved_bytes;
  out->heap_resident_pages = s.heap_resident_pages;
  out->heap_peak_resident_pages = s.heap_peak_resident_pages;
  out->paged = s.paged ? 1 : 0;
  return 0;
}

}  // extern "C"
