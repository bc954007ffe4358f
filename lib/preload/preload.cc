// libuvmem_preload.so — the malloc family and C++ operator new/delete of any program,
// served by uvmem's heap: `LD_PRELOAD=libuvmem_preload.so PROGRAM` or `uvmem run`.
//
// A thin extern "C" shim over lib/malloc (design.md's LD_PRELOAD rules): built with
// -fno-builtin (GCC would turn malloc+memset into calloc: infinite recursion); the heap
// starts lazily; allocations made before this library's constructor has run (ld.so and
// the constructors of the libraries it depends on) come from pinned bootstrap memory, so
// the runtime never starts on half-initialised libraries; nothing is torn down at exit.
// At exit the process that `uvmem run` started writes the statistics UVMEM_STATS asks
// for (docs/preload.md).
#include <fcntl.h>
#include <malloc.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "config/preload_config.h"
#include "malloc/heap.h"
#include "report/stats_report.h"
#include "uvmem/malloc.h"
#include "uvmem/uvmem.h"

// Defers the heap's start to this library's constructor (heap.h, AllowHeapStart).
extern "C" const bool uvmem_defer_heap_start = true;

using uvmem::internal::HeapAllocate;
using uvmem::internal::HeapFree;

#define UVMEM_EXPORT extern "C" __attribute__((visibility("default")))

// ---- the C library's names -------------------------------------------------------------

UVMEM_EXPORT void* malloc(size_t size) { return HeapAllocate(size, 16, false); }
UVMEM_EXPORT void free(void* p) { HeapFree(p); }
UVMEM_EXPORT void cfree(void* p) { HeapFree(p); }
UVMEM_EXPORT void* calloc(size_t count, size_t size) { return uvmem_calloc(count, size); }
UVMEM_EXPORT void* realloc(void* p, size_t size) { return uvmem_realloc(p, size); }
UVMEM_EXPORT void* reallocarray(void* p, size_t count, size_t size) {
  return uvmem_reallocarray(p, count, size);
}
UVMEM_EXPORT void* aligned_alloc(size_t alignment, size_t size) {
  return uvmem_aligned_alloc(alignment, size);
}
UVMEM_EXPORT int posix_memalign(void** out, size_t alignment, size_t size) {
  return uvmem_posix_memalign(out, alignment, size);
}
UVMEM_EXPORT void* memalign(size_t alignment, size_t size) {
  return uvmem_memalign(alignment, size);
}
UVMEM_EXPORT void* valloc(size_t size) { return uvmem_valloc(size); }
UVMEM_EXPORT void* pvalloc(size_t size) { return uvmem_pvalloc(size); }
UVMEM_EXPORT size_t malloc_usable_size(void* p) { return uvmem_malloc_usable_size(p); }
// glibc extensions programs call: trimming gives free spans' frames back now; options and
// glibc's own statistics have no meaning here.
UVMEM_EXPORT int malloc_trim(size_t) { return uvmem_malloc_trim() != 0 ? 1 : 0; }
UVMEM_EXPORT int mallopt(int, int) { return 1; }
UVMEM_EXPORT struct mallinfo2 mallinfo2() {
  struct mallinfo2 info = {};
  uvmem_malloc_stats s;
  (void)uvmem_malloc_stats_get(&s);
  info.arena = s.spans_bytes_now;
  info.uordblks = s.spans_bytes_now;
  return info;
}

// ---- C++ operator new and delete ---------------------------------------------------------

namespace {

void* NewSlow(std::size_t size, std::size_t alignment) {
  for (;;) {
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) throw std::bad_alloc();
    handler();
    if (void* p = HeapAllocate(size, alignment, false)) return p;
  }
}

inline void* New(std::size_t size, std::size_t alignment = 16) {
  void* p = HeapAllocate(size, alignment, false);
  return p != nullptr ? p : NewSlow(size, alignment);
}

inline void* NewNothrow(std::size_t size, std::size_t alignment = 16) noexcept {
  try {
    return New(size, alignment);
  } catch (...) {
    return nullptr;
  }
}

}  // namespace

#define UVMEM_CXX_EXPORT __attribute__((visibility("default")))
UVMEM_CXX_EXPORT void* operator new(std::size_t n) { return New(n); }
UVMEM_CXX_EXPORT void* operator new[](std::size_t n) { return New(n); }
UVMEM_CXX_EXPORT void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  return NewNothrow(n);
}
UVMEM_CXX_EXPORT void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  return NewNothrow(n);
}
UVMEM_CXX_EXPORT void* operator new(std::size_t n, std::align_val_t a) {
  return New(n, static_cast<std::size_t>(a));
}
UVMEM_CXX_EXPORT void* operator new[](std::size_t n, std::align_val_t a) {
  return New(n, static_cast<std::size_t>(a));
}
UVMEM_CXX_EXPORT void* operator new(std::size_t n, std::align_val_t a,
                                    const std::nothrow_t&) noexcept {
  return NewNothrow(n, static_cast<std::size_t>(a));
}
UVMEM_CXX_EXPORT void* operator new[](std::size_t n, std::align_val_t a,
                                      const std::nothrow_t&) noexcept {
  return NewNothrow(n, static_cast<std::size_t>(a));
}
UVMEM_CXX_EXPORT void operator delete(void* p) noexcept { HeapFree(p); }
UVMEM_CXX_EXPORT void operator delete[](void* p) noexcept { HeapFree(p); }
UVMEM_CXX_EXPORT void operator delete(void* p, std::size_t) noexcept { HeapFree(p); }
UVMEM_CXX_EXPORT void operator delete[](void* p, std::size_t) noexcept { HeapFree(p); }
UVMEM_CXX_EXPORT void operator delete(void* p, const std::nothrow_t&) noexcept { HeapFree(p); }
UVMEM_CXX_EXPORT void operator delete[](void* p, const std::nothrow_t&) noexcept { HeapFree(p); }
UVMEM_CXX_EXPORT void operator delete(void* p, std::align_val_t) noexcept { HeapFree(p); }
UVMEM_CXX_EXPORT void operator delete[](void* p, std::align_val_t) noexcept { HeapFree(p); }
UVMEM_CXX_EXPORT void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  HeapFree(p);
}
UVMEM_CXX_EXPORT void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  HeapFree(p);
}
UVMEM_CXX_EXPORT void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  HeapFree(p);
}
UVMEM_CXX_EXPORT void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  HeapFree(p);
}

// ---- start and exit --------------------------------------------------------------------

namespace {

uvmem::internal::PreloadConfig* stats_config = nullptr;
// A copy of stderr taken at start-up: programs close fd 2 before exit (coreutils'
// close_stdout), and the report must still get out.
int stats_fd = STDERR_FILENO;

void WriteStatsAtExit() {
  const uvmem::internal::PreloadConfig& c = *stats_config;
  if (c.stats_pid != 0 && c.stats_pid != static_cast<long>(getpid())) return;
  const uvmem::MallocStats stats = uvmem::GetMallocStats();
  using Format = uvmem::internal::PreloadConfig::StatsFormat;
  const std::string text = c.stats == Format::kText ? uvmem::internal::FormatStatsText(stats)
                                                    : uvmem::internal::FormatStatsJson(stats);
  if (c.stats_path.empty()) {
    (void)!write(stats_fd, text.data(), text.size());
    return;
  }
  FILE* f = std::fopen(c.stats_path.c_str(), "w");
  if (f == nullptr) {
    std::fprintf(stderr, "uvmem: cannot write statistics to %s: %s\n", c.stats_path.c_str(),
                 std::strerror(errno));
    return;
  }
  std::fwrite(text.data(), 1, text.size(), f);
  std::fclose(f);
}

}  // namespace

// Runs after every library this one depends on was initialised: the heap may start now.
__attribute__((constructor)) static void UvmemPreloadInit() {
  uvmem::internal::AllowHeapStart();
  auto config = uvmem::internal::ParsePreloadConfig(&getenv);
  if (!config.ok()) return;  // the heap says what was wrong when it starts
  if (config->stats == uvmem::internal::PreloadConfig::StatsFormat::kNone) return;
  stats_config = new uvmem::internal::PreloadConfig(std::move(*config));
  if (stats_config->stats_path.empty()) {
    const int copy = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 100);
    if (copy >= 0) stats_fd = copy;
  }
  std::atexit(&WriteStatsAtExit);
}
