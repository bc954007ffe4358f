#include "slab/thread_slab.h"

#include <absl/base/thread_annotations.h>

#include "platform/memory_map.h"
#include "platform/report.h"
#include "platform/mutex.h"

namespace uvmem::internal {

constinit thread_local ThreadState* tls_thread_state
    __attribute__((tls_model("initial-exec"))) = nullptr;

namespace {

// The slab layer's only process-wide state (see the header). Constant-initialised: no
// static constructor or destructor runs for it.
constinit Mutex registry_mu;

struct CacheEntry {
  ThreadSlabOwner* owner = nullptr;
  std::uintptr_t frame_owner = 0;
};
CacheEntry cache_ids[kMaxSlabCaches] ABSL_GUARDED_BY(registry_mu);
ThreadState* thread_list ABSL_GUARDED_BY(registry_mu) = nullptr;

// Set once the thread's state has been flushed at exit: later calls (other TLS
// destructors) are served without a thread slab.
constinit thread_local bool tls_thread_exiting __attribute__((tls_model("initial-exec"))) = false;

constexpr std::size_t StateBytes() {
  return (sizeof(ThreadState) + kPageSize - 1) / kPageSize * kPageSize;
}

void Unlink(ThreadState* state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(registry_mu) {
  if (state->prev != nullptr) {
    state->prev->next = state->next;
  } else {
    thread_list = state->next;
  }
  if (state->next != nullptr) state->next->prev = state->prev;
  state->next = state->prev = nullptr;
}

// Hands an initialised slot back to its cache and empties it. Uninitialised slots are
// left alone (reading them maps at most the shared zero page).
void FlushSlot(ThreadSlab& slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(registry_mu) {
  if (slot.owner == nullptr) return;
  slot.owner->FlushThreadSlab(slot);
  slot = ThreadSlab{};
}

// Runs at thread exit (a thread_local with a destructor, registered on first use).
struct ThreadExitFlusher {
  ~ThreadExitFlusher() {
    ThreadState* state = tls_thread_state;
    tls_thread_exiting = true;
    if (state == nullptr) return;
    {
      MutexLock lock(&registry_mu);
      for (int id = 0; id < kMaxSlabCaches; ++id) {
        FlushSlot(state->slabs[id]);
      }
      Unlink(state);
    }
    tls_thread_state = nullptr;
    (void)ReleaseMapping(state, StateBytes());
  }
};

}  // namespace

ThreadSlab* CurrentThreadSlabOrCreate(int id) {
  if (ThreadSlab* slot = CurrentThreadSlab(id)) return slot;
  if (tls_thread_exiting) return nullptr;
  absl::StatusOr<void*> memory = ReserveAnonymous(StateBytes(), kPageSize);
  if (!memory.ok()) return nullptr;
  // Zero-filled pages are empty slots already (ThreadSlab is trivially constructible).
  auto* state = static_cast<ThreadState*>(*memory);
  state->next = state->prev = nullptr;
  static thread_local ThreadExitFlusher flusher;  // registers the exit hook
  (void)&flusher;
  {
    MutexLock lock(&registry_mu);
    state->next = thread_list;
    if (thread_list != nullptr) thread_list->prev = state;
    thread_list = state;
  }
  tls_thread_state = state;
  return &state->slabs[id];
}

int AcquireSlabCacheId(ThreadSlabOwner* owner, std::uintptr_t frame_owner) {
  MutexLock lock(&registry_mu);
  for (int id = 0; id < kMaxSlabCaches; ++id) {
    if (cache_ids[id].owner == nullptr) {
      cache_ids[id] = {owner, frame_owner};
      return id;
    }
  }
  return -1;
}

void ReleaseSlabCacheId(int id) {
  UVMEM_CHECK(id >= 0 && id < kMaxSlabCaches);
  MutexLock lock(&registry_mu);
  for (ThreadState* state = thread_list; state != nullptr; state = state->next) {
    FlushSlot(state->slabs[id]);
  }
  cache_ids[id] = {};
}

void ForEachThreadSlab(int id, absl::FunctionRef<void(const ThreadSlab&)> visit,
                       absl::FunctionRef<void()> then) {
  MutexLock lock(&registry_mu);
  for (ThreadState* state = thread_list; state != nullptr; state = state->next) {
    visit(state->slabs[id]);
  }
  then();
}

std::string_view LiveSlabCacheName(std::uintptr_t frame_owner) {
  if (frame_owner == 0) return {};
  MutexLock lock(&registry_mu);
  for (const CacheEntry& entry : cache_ids) {
    if (entry.owner != nullptr && entry.frame_owner == frame_owner) return entry.owner->name();
  }
  return {};
}

}  // namespace uvmem::internal
