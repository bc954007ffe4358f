// thread_state.h — the calling thread's heap pointer and the heap's re-entrancy guard.
//
// While a thread is inside the heap's own slow paths, or inside the runtime (which
// allocates while holding locks its fault threads need), its allocations must come from
// pinned memory: one that faulted on the heap would wait on a fault thread that waits on
// the lock this thread holds. ReentryScope hides the thread's heap for its duration, so
// the inline fast paths (heap.h) fall through to the slow path, which sees the guard and
// uses pinned memory — the fast path pays nothing for it.
//
// Thread-safety: thread-local state.
#ifndef UVMEM_MALLOC_THREAD_STATE_H_
#define UVMEM_MALLOC_THREAD_STATE_H_

namespace uvmem::internal {

class ThreadHeap;

// The calling thread's heap (nullptr before its first allocation, in the runtime's own
// threads, inside a ReentryScope and after thread exit). Initial-exec TLS: no allocation.
extern constinit thread_local ThreadHeap* tls_heap __attribute__((tls_model("initial-exec")));
extern constinit thread_local int tls_reentry __attribute__((tls_model("initial-exec")));

class ReentryScope {
 public:
  ReentryScope() : saved_(tls_heap) {
    tls_heap = nullptr;
    ++tls_reentry;
  }
  ~ReentryScope() {
    --tls_reentry;
    tls_heap = saved_;
  }
  ReentryScope(const ReentryScope&) = delete;
  ReentryScope& operator=(const ReentryScope&) = delete;

 private:
  ThreadHeap* const saved_;
};

}  // namespace uvmem::internal

#endif  // UVMEM_MALLOC_THREAD_STATE_H_
