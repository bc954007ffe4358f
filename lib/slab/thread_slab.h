// thread_slab.h — ThreadSlab: a thread's active slab of one cache (SLUB's
// kmem_cache_cpu, per thread instead of per CPU), and the registry that finds them.
//
// Why per thread: user space has no preemption-safe per-CPU operations without rseq.
// A per-CPU slot needs sched_getcpu() plus an atomic TryLock on every call; measured
// here (AMD EPYC VM, 2 CPUs) that costs ~8 ns per alloc+free pair, no better than
// glibc's tcache, while a thread-local freelist costs ~3 ns. So each thread owns, per
// cache, a private freelist of its active slab and a bounded list of spare objects
// from other slabs; both are reached with one initial-exec TLS load and an index, and
// touched by no other thread while the thread runs.
//
// Every thread that has used a cache's slow path has a ThreadState: kMaxSlabCaches
// ThreadSlab slots (one per live cache id), mapped with mmap on first use (never from
// a heap the runtime may be serving), linked on a process-wide registry. The registry
// is the only global state of the slab layer and lives in thread_slab.cc:
//   - cache ids: a SlabCache takes an id at creation and returns it when destroyed;
//   - on thread exit, a TLS destructor hands each active slab and spare list back to
//     its cache (ThreadSlabOwner::FlushThreadSlab) and unmaps the state;
//   - on cache destruction, the cache flushes that slot in every registered thread.
// A thread that is exiting (its state already flushed) gets nullptr from
// CurrentThreadSlabOrCreate and the cache serves it from the node lists directly.
//
// Thread-safety: a slot's fields belong to the owning thread, except that the registry
// lock holder may flush and clear them once the owner has stopped using that cache
// (cache destruction) or is exiting. Counters are written only by the owner (relaxed
// atomic load + store through atomic_ref) and read by anyone. Registry functions are
// thread-safe (one Mutex, mutex.h). Lock order: the registry lock, then a cache's node
// lock, never the reverse.
#ifndef UVMEM_SLAB_THREAD_SLAB_H_
#define UVMEM_SLAB_THREAD_SLAB_H_

#include <absl/functional/function_ref.h>

#include <atomic>
#include <cstdint>
#include <string_view>
#include <type_traits>

#include "slab/slab.h"
#include "uvmem/types.h"

namespace uvmem::internal {

// Live caches at once (process-wide). A thread's state is kMaxSlabCaches * 64 bytes of
// address space (32 KiB), backed page by page as slots are used.
inline constexpr int kMaxSlabCaches = 512;

class ThreadSlabOwner;

// Trivially constructible: a zero-filled slot is a valid empty one, so mmap'd state
// needs no constructor run over it (untouched slots stay unbacked).
struct alignas(64) ThreadSlab {
  void* freelist;               // free objects of `slab`, private to the thread
  // One past the last byte of `slab`; 0 when none. Free's fast-path test
  // `slab_end - p - 1 < slab_bytes` is false for every pointer when 0.
  std::uintptr_t slab_end;
  Slab* slab;                   // the active (frozen) slab, or nullptr
  // Free objects of other slabs of the cache, all on node `node_index` (SLUB's percpu
  // sheaf, as a list): frees that miss the active slab land here without a lock.
  void* spare;
  ThreadSlabOwner* owner;       // the cache that initialised this slot, or nullptr
  int node_index;               // dense node index of `slab` and of every `spare` object
  std::uint32_t spare_room;     // objects `spare` may still take; 0 until initialised
  // Counters: written by the owner only, read by statistics (through atomic_ref).
  std::uint64_t alloc_fastpath;
  std::uint64_t free_fastpath;

  static void Bump(std::uint64_t& counter) {
    std::atomic_ref<std::uint64_t> c(counter);
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  static std::uint64_t Read(const std::uint64_t& counter) {
    return std::atomic_ref<std::uint64_t>(const_cast<std::uint64_t&>(counter))
        .load(std::memory_order_relaxed);
  }
};
static_assert(sizeof(ThreadSlab) == 64);
static_assert(std::is_trivially_default_constructible_v<ThreadSlab>);

// A cache as the registry sees it.
class ThreadSlabOwner {
 public:
  // Hands the slot's active slab, private freelist and spares back to the cache, folds its
  // counters into the cache's totals. Called with the registry lock held, by the
  // exiting owner thread or by the destroying thread; may take the cache's node locks.
  virtual void FlushThreadSlab(ThreadSlab& slot) = 0;
  virtual std::string_view name() const = 0;

 protected:
  ~ThreadSlabOwner() = default;
};

struct ThreadState {
  ThreadSlab slabs[kMaxSlabCaches];
  ThreadState* next;  // registry links, guarded by the registry lock
  ThreadState* prev;
};

// The calling thread's state; nullptr until its first slow-path call and after exit.
// Initial-exec TLS: one %fs-relative load (the preload shim is loaded at program start,
// where static TLS is available).
extern constinit thread_local ThreadState* tls_thread_state
    __attribute__((tls_model("initial-exec")));

// The calling thread's slot `id`, or nullptr when it has no state. Never allocates.
inline ThreadSlab* CurrentThreadSlab(int id) {
  ThreadState* state = tls_thread_state;
  return state != nullptr ? &state->slabs[id] : nullptr;
}

// As CurrentThreadSlab, creating the thread's state on first use (mmap, registry
// insert, TLS destructor). Returns nullptr when the thread is exiting or the state
// cannot be mapped; callers then work without a thread slab.
ThreadSlab* CurrentThreadSlabOrCreate(int id);

// Takes a free cache id for `owner`, whose frames carry `frame_owner` in
// FrameDescriptor::owner; returns -1 when kMaxSlabCaches caches are live.
int AcquireSlabCacheId(ThreadSlabOwner* owner, std::uintptr_t frame_owner);

// For every registered thread: calls owner->FlushThreadSlab on its slot `id` when the
// slot was initialised (slot.owner != nullptr), then zeroes the slot; then frees `id`.
// REQUIRES: no thread uses the cache any more.
void ReleaseSlabCacheId(int id);

// Calls visit(slot) on slot `id` of every registered thread, then `then()`, all under
// the registry lock: what FlushThreadSlab folds into a cache's totals is seen either
// in a slot or in the totals read by `then`, never both or neither.
void ForEachThreadSlab(int id, absl::FunctionRef<void(const ThreadSlab&)> visit,
                       absl::FunctionRef<void()> then);

// The name of the live cache whose frames carry `frame_owner`, or an empty view when no
// live cache does. The view is valid while that cache lives. For error reports.
std::string_view LiveSlabCacheName(std::uintptr_t frame_owner);

}  // namespace uvmem::internal

#endif  // UVMEM_SLAB_THREAD_SLAB_H_
