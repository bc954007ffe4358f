// uvmem/malloc.h — the malloc front end for C++ users: statistics and NUMA placement.
//
// The allocation calls themselves are the C API in uvmem/uvmem.h (uvmem_malloc,
// uvmem_free, ...); a program that wants every allocation served by uvmem preloads
// libuvmem_preload.so instead (`uvmem run -- PROGRAM`). This header adds what C++ code
// wants on top: a typed statistics snapshot and an STL allocator for one NUMA node.
//
// The heap: one userfaultfd-registered range per NUMA node (the runtime's ranges, see
// uvmem/runtime.h), carved into 64 KiB slices. Sizes up to 128 KiB come from size-class
// pages (a "page" here is a run of slices holding blocks of one size, as a slab holds
// objects of one size — mimalloc's design); larger sizes get spans of whole slices. Each
// thread allocates from its own heap without a shared lock; a free from another thread
// goes on the owning page's atomic list. Spans that stay free past a delay have their
// frames given back to the pool (resident memory falls), and are demand-zero again.
//
// Units: bytes unless a name says pages (4 KiB) or frames.
// Thread-safety: every function is thread-safe.
#ifndef UVMEM_MALLOC_H_
#define UVMEM_MALLOC_H_

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <new>
#include <stdexcept>
#include <string>

#include "uvmem/runtime.h"
#include "uvmem/uvmem.h"

namespace uvmem {

// A snapshot of the heap's counters and of the runtime under it. Counters are cumulative
// unless a name says "now"; each is exact, the set is not atomic.
struct MallocStats {
  // True when heap pages are served by the runtime's fault engine. False when the heap
  // runs on memory the kernel pages itself: in a child after fork() (the parent's
  // userfaultfd does not follow), or when the runtime could not start (`mode` says why).
  bool paged = false;
  std::string mode;                       // "paged", "detached after fork", or the reason
  std::uint64_t malloc_calls = 0;         // successful allocations, every entry point
  std::uint64_t free_calls = 0;           // frees of non-null pointers
  std::uint64_t thread_heaps = 0;         // per-thread heaps created (reused ones once)
  std::uint64_t small_pages_now = 0;      // size-class pages in use now
  std::uint64_t large_spans_now = 0;      // large allocations live now
  std::uint64_t spans_bytes_now = 0;      // bytes of heap spans in use (pages + large)
  std::uint64_t purged_pages = 0;         // 4 KiB pages given back to the pool after frees
  std::uint64_t heap_reserved_bytes = 0;  // address space of the heap ranges
  std::uint64_t heap_resident_pages = 0;  // heap pages mapped now
  std::uint64_t heap_peak_resident_pages = 0;
  RuntimeStats runtime;  // the whole runtime (empty when !paged)
};

// Never fails; O(threads + ranges + CPUs).
MallocStats GetMallocStats();

// An STL allocator whose memory comes from uvmem's heap on one NUMA node (the kernel's
// node number): std::vector<double, uvmem::NodeAllocator<double>> v(n, {}, {1}).
// allocate() throws std::bad_alloc when the heap is exhausted (or alignof(T) > 16, which
// it does not serve) and std::invalid_argument
// when the node does not exist; deallocate() is uvmem_free (any thread may call it).
// Copies compare equal when they name the same node (memory from one can be freed
// through the other either way: uvmem_free finds any block).
template <typename T>
class NodeAllocator {
 public:
  using value_type = T;

  explicit NodeAllocator(int node = 0) noexcept : node_(node) {}
  template <typename U>
  NodeAllocator(const NodeAllocator<U>& other) noexcept : node_(other.node()) {}

  [[nodiscard]] T* allocate(std::size_t n) {
    if (n > std::size_t(-1) / sizeof(T)) throw std::bad_array_new_length();
    void* p = alignof(T) <= 16 ? uvmem_malloc_onnode(n * sizeof(T), node_) : nullptr;
    if (p == nullptr) {
      if (errno == EINVAL) throw std::invalid_argument("uvmem::NodeAllocator: no such NUMA node");
      throw std::bad_alloc();
    }
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t) noexcept { uvmem_free(p); }

  int node() const noexcept { return node_; }
  template <typename U>
  bool operator==(const NodeAllocator<U>& other) const noexcept {
    return node_ == other.node();
  }

 private:
  int node_;
};

}  // namespace uvmem

#endif  // UVMEM_MALLOC_H_
