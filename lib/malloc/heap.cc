#include "malloc/heap.h"

#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <new>
#include <thread>

#include "malloc/heap_area.h"
#include "malloc/heap_options.h"
#include "malloc/internal_alloc.h"
#include "malloc/size_class.h"
#include "malloc/thread_heap.h"
#include "platform/cpu.h"
#include "platform/memory_map.h"
#include "platform/report.h"
#include "platform/spin_lock.h"
#include "platform/thread.h"
#include "vm/runtime_impl.h"

// Defined (true) only by libuvmem_preload.so; a weak reference elsewhere.
extern "C" __attribute__((weak)) const bool uvmem_defer_heap_start;

namespace uvmem::internal {

constinit thread_local ThreadHeap* tls_heap __attribute__((tls_model("initial-exec"))) = nullptr;
constinit thread_local int tls_reentry __attribute__((tls_model("initial-exec"))) = 0;

namespace {

constexpr int kMaxAreas = 65;  // one per node (64 at most) + an interleave area
constexpr int kMaxNodeHeaps = 64;
// Large allocations up to this size are filled at allocation (most are written whole);
// larger ones are left to faults, fault-around and readahead (a big calloc'd table may be
// touched sparsely, and demand paging keeps its untouched pages free).
constexpr std::size_t kPopulateLargeBytes = std::size_t{1} << 20;
// After a realloc moved a buffer, this much past its old end is filled at once.
constexpr std::size_t kReallocFillBytes = 256 * 1024;

enum InitState : int { kNotStarted = 0, kStarting = 1, kReady = 2 };

struct Global {
  std::atomic<int> init{kNotStarted};
  std::atomic<int> num_areas{0};
  HeapArea* areas[kMaxAreas] = {};
  HeapArea* default_area = nullptr;         // bind/preferred/interleave: everyone's area
  HeapArea* node_area[kMaxNodeHeaps] = {};  // by dense node index
  RuntimeImpl* runtime = nullptr;           // never destroyed (design.md: no teardown)
  const NumaTopology* topology = nullptr;
  std::atomic<bool> detached{false};
  char mode[160] = "not started";
  pthread_key_t exit_key{};
  SpinLock registry_lock;  // heaps, abandoned
  ThreadHeap* registry = nullptr;
  ThreadHeap* abandoned = nullptr;
  std::atomic<std::uint64_t> heaps_created{0};
  std::atomic<std::uint64_t> large_spans_now{0};
  std::atomic<std::uint64_t> heapless_frees{0};  // by threads that never allocated
  std::uint64_t purge_delay_ns = 0;
  std::atomic<bool> start_allowed{false};
};
constinit Global g;

// Per-thread state. Initial-exec TLS: no allocation on access, even in a preloaded .so.
struct NodeHeaps {
  ThreadHeap* heaps[kMaxNodeHeaps];
};
constinit thread_local NodeHeaps* tls_node_heaps __attribute__((tls_model("initial-exec"))) =
    nullptr;

[[noreturn]] void InvalidPointer(const char* call, const void* p, const char* why) {
  ReportFatal("{}(): {} {} — aborting (as glibc does)", call, why, p);
}

// An aligned pointer inside a block (or a large span) is marked by the word before it,
// so that free() of any other interior pointer is still caught. The gap before an
// aligned pointer is at least 16 bytes, so the word is the block's own.
constexpr std::uintptr_t kAlignedKey = 0x3c6ef372fe94f82b;
void MarkAligned(std::uintptr_t p) { reinterpret_cast<std::uintptr_t*>(p)[-1] = kAlignedKey ^ p; }
bool IsMarkedAligned(std::uintptr_t p) {
  return reinterpret_cast<const std::uintptr_t*>(p)[-1] == (kAlignedKey ^ p);
}

HeapArea* FindArea(const void* p) {
  const int n = g.num_areas.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) {
    if (g.areas[i]->Contains(p)) return g.areas[i];
  }
  return nullptr;
}

void SetMode(const char* text) {
  std::strncpy(g.mode, text, sizeof(g.mode) - 1);
  g.mode[sizeof(g.mode) - 1] = '\0';
}

// ---- areas -----------------------------------------------------------------------

HeapArea* NewArea(VmRange* range, void* base, std::size_t bytes, NodeId node) {
  void* slot = InternalAllocator::Allocate(sizeof(HeapArea), alignof(HeapArea));
  if (slot == nullptr) return nullptr;
  auto* area = new (slot) HeapArea(g.runtime, range, base, bytes, node, g.purge_delay_ns);
  if (!area->ok()) return nullptr;
  const int i = g.num_areas.load(std::memory_order_relaxed);
  g.areas[i] = area;
  g.num_areas.store(i + 1, std::memory_order_release);
  return area;
}

// An area of plain anonymous memory (no runtime): largest of `bytes`, halving to 1 GiB.
HeapArea* NewPlainArea(std::size_t bytes, NodeId node) {
  for (; bytes >= (std::size_t{1} << 30); bytes /= 2) {
    void* base = ReserveAnonymousNoAlloc(bytes, kSliceBytes);
    if (base != nullptr) return NewArea(nullptr, base, bytes, node);
  }
  return nullptr;
}

HeapArea* NewPagedArea(const HeapOptions& o, NodeId node, NumaPolicy policy, const char* name) {
  RangeOptions ro;
  ro.name = name;
  ro.numa = std::move(policy);  // fill window: the runtime's (UVMEM_FAULT_AROUND/READAHEAD)
  for (std::size_t bytes = o.area_bytes; bytes >= (std::size_t{1} << 30); bytes /= 2) {
    auto range = g.runtime->Reserve(bytes, ro);
    if (range.ok()) {
      return NewArea(*range, reinterpret_cast<void*>((*range)->start()), bytes, node);
    }
  }
  return nullptr;
}

// ---- start-up ----------------------------------------------------------------------

void OnThreadExit(void*);
void PrepareFork();
void ParentAfterFork();
void ChildAfterFork();
void StartPurger();

void StartDetached(const HeapOptions& o, const std::string& why) {
  g.runtime = nullptr;
  g.detached.store(true, std::memory_order_relaxed);
  g.topology = nullptr;
  HeapArea* area = NewPlainArea(o.area_bytes, NodeId{0});
  if (area == nullptr) ReportFatal("cannot reserve address space for the heap");
  g.default_area = area;
  g.node_area[0] = area;
  std::string text = "unpaged: " + why;
  SetMode(text.c_str());
  ReportWarning(
      "the runtime could not start ({}); the heap runs on memory the kernel "
      "pages itself",
      why);
}

void Start() {
  ReentryScope reentry;
  HeapOptions options = LoadHeapOptions();
  g.purge_delay_ns = options.purge_delay_ns;
  if (!options.config_error.empty()) {
    ReportWarning("{} (using the default instead)", options.config_error);
  }
  auto runtime = RuntimeImpl::Create(options.runtime);
  if (!runtime.ok()) {
    StartDetached(options, std::string(runtime.status().message()));
  } else {
    g.runtime = runtime->release();
    g.topology = &g.runtime->topology();
    const NumaTopology& topo = *g.topology;
    bool ok = true;
    const NumaPolicy& numa = options.numa;
    char name[32];
    for (int i = 0; i < topo.num_nodes() && i < kMaxNodeHeaps && ok; ++i) {
      const NodeId node = topo.node_id(i);
      std::snprintf(name, sizeof(name), "heap/node%d", node.value);
      NumaPolicy policy = numa.kind == NumaPolicy::Kind::kBind && numa.nodes[0] == node
                              ? NumaPolicy::Bind(node)
                              : NumaPolicy::Preferred(node);
      g.node_area[i] = NewPagedArea(options, node, policy, name);
      ok = g.node_area[i] != nullptr;
    }
    if (ok) {
      switch (numa.kind) {
        case NumaPolicy::Kind::kLocal:
          break;  // per thread, at attach
        case NumaPolicy::Kind::kBind:
        case NumaPolicy::Kind::kPreferred:
          g.default_area = g.node_area[std::max(0, topo.index_of(numa.nodes[0]))];
          break;
        case NumaPolicy::Kind::kInterleave:
          g.default_area = NewPagedArea(options, numa.nodes[0], numa, "heap/interleave");
          ok = g.default_area != nullptr;
          break;
      }
    }
    if (!ok) {
      ReportFatal(
          "cannot reserve the heap's ranges (check `ulimit -v` and "
          "vm.max_map_count)");
    }
    SetMode("paged");
  }
  pthread_key_create(&g.exit_key, &OnThreadExit);
  pthread_atfork(&PrepareFork, &ParentAfterFork, &ChildAfterFork);
  if (g.runtime != nullptr) StartPurger();
}

// Returns once the heap is ready: the first caller starts it (its own allocations during
// start-up go to pinned memory, see Start's ReentryScope); others wait.
void EnsureStarted() {
  if (g.init.load(std::memory_order_acquire) == kReady) return;
  int expected = kNotStarted;
  if (g.init.compare_exchange_strong(expected, kStarting, std::memory_order_acq_rel)) {
    Start();
    g.init.store(kReady, std::memory_order_release);
    return;
  }
  while (g.init.load(std::memory_order_acquire) != kReady) YieldCpu();
}

// ---- thread heaps ------------------------------------------------------------------

ThreadHeap* AdoptOrCreate(HeapArea* area) {
  {
    SpinLockHolder hold(&g.registry_lock);
    for (ThreadHeap** link = &g.abandoned; *link != nullptr; link = &(*link)->next_abandoned) {
      if ((*link)->area() == area) {
        ThreadHeap* h = *link;
        *link = h->next_abandoned;
        h->next_abandoned = nullptr;
        return h;
      }
    }
  }
  void* slot = InternalAllocator::Allocate(sizeof(ThreadHeap), alignof(ThreadHeap));
  if (slot == nullptr) return nullptr;
  auto* h = new (slot) ThreadHeap(area);
  g.heaps_created.fetch_add(1, std::memory_order_relaxed);
  SpinLockHolder hold(&g.registry_lock);
  h->next_in_registry = g.registry;
  g.registry = h;
  return h;
}

HeapArea* AreaForThisThread() {
  if (g.default_area != nullptr) return g.default_area;
  const int index = g.topology ? g.topology->node_index_of_cpu(CurrentCpu()) : 0;
  return g.node_area[index] != nullptr ? g.node_area[index] : g.node_area[0];
}

// The caller publishes the heap in tls_heap (outside its ReentryScope).
ThreadHeap* AttachThread() {
  ThreadHeap* h = AdoptOrCreate(AreaForThisThread());
  if (h == nullptr) return nullptr;
  pthread_setspecific(g.exit_key, reinterpret_cast<void*>(1));
  return h;
}

void Abandon(ThreadHeap* h) {
  h->ReleaseEmptySpans();
  SpinLockHolder hold(&g.registry_lock);
  h->next_abandoned = g.abandoned;
  g.abandoned = h;
}

void OnThreadExit(void*) {
  ThreadHeap* h = tls_heap;
  tls_heap = nullptr;  // before the scope, which restores what it found
  ReentryScope reentry;
  if (h != nullptr) Abandon(h);
  if (NodeHeaps* n = tls_node_heaps) {
    tls_node_heaps = nullptr;
    for (ThreadHeap* h : n->heaps) {
      if (h != nullptr) Abandon(h);
    }
    InternalAllocator::Free(n);
  }
}

// ---- purging -----------------------------------------------------------------------

// Purges every area (free spans older than the delay, or all of them); returns pages.
std::uint64_t PurgeAll(bool all) {
  ReentryScope reentry;
  const std::uint64_t now = CoarseNowNs();
  std::uint64_t pages = 0;
  const int n = g.num_areas.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) pages += g.areas[i]->Purge(now, all);
  return pages;
}

void StartPurger() {
  // The purger never touches heap memory: it only reads the side tables and asks the
  // runtime to discard free spans.
  std::thread purger = StartRuntimeThread("uvmem-purge", [] {
    MarkThisThreadAsRuntime();
    const std::uint64_t period = std::max<std::uint64_t>(g.purge_delay_ns / 2, 1'000'000);
    for (;;) {
      timespec ts{static_cast<time_t>(period / 1'000'000'000u),
                  static_cast<long>(period % 1'000'000'000u)};
      nanosleep(&ts, nullptr);
      if (g.detached.load(std::memory_order_relaxed)) return;
      (void)PurgeAll(false);
    }
  });
  purger.detach();
}

// ---- fork ----------------------------------------------------------------------------

void PrepareFork() {
  InternalAllocator::LockForFork();
  g.registry_lock.Lock();
  const int n = g.num_areas.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) g.areas[i]->LockForFork();
}

void ParentAfterFork() {
  const int n = g.num_areas.load(std::memory_order_acquire);
  for (int i = n; i-- > 0;) g.areas[i]->UnlockAfterFork();
  g.registry_lock.Unlock();
  InternalAllocator::UnlockAfterFork();
}

void ChildAfterFork() {
  ParentAfterFork();
  if (g.detached.exchange(true, std::memory_order_relaxed)) return;
  const int n = g.num_areas.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) g.areas[i]->Detach();
  SetMode("detached after fork (pages served by the kernel)");
}

// ---- allocation ------------------------------------------------------------------------

void* AllocatePinned(std::size_t bytes, std::size_t alignment, bool zero) {
  if (alignment > kPageSize) {
    errno = ENOMEM;
    return nullptr;
  }
  void* p = InternalAllocator::Allocate(bytes, alignment);
  if (p != nullptr && zero) std::memset(p, 0, bytes);
  return p;
}

// `populate`: fill the span's pages now when it is small enough (see kPopulateLargeBytes);
// realloc passes false, since it moves the old pages in instead.
void* AllocateLarge(HeapArea* area, std::size_t bytes, std::size_t alignment, bool zero,
                    bool populate = true) {
  const std::size_t extra = alignment > kSliceBytes ? alignment : 0;
  if (bytes > area->bytes() || extra > area->bytes() - bytes) {
    errno = ENOMEM;
    return nullptr;
  }
  const auto slices = static_cast<std::uint32_t>((bytes + extra + kSliceBytes - 1) >> kSliceShift);
  Span* s;
  bool zeroed = false;
  {
    ReentryScope reentry;
    s = area->AllocateSpan(slices, SpanKind::kLarge, &zeroed);
    if (s == nullptr) {
      area->Purge(CoarseNowNs(), true);  // the bins may hold what the frontier lacks
      s = area->AllocateSpan(slices, SpanKind::kLarge, &zeroed);
    }
  }
  if (s == nullptr) {
    errno = ENOMEM;
    return nullptr;
  }
  s->stamp = bytes;
  g.large_spans_now.fetch_add(1, std::memory_order_relaxed);
  const std::uintptr_t p = (s->start + alignment - 1) & ~(alignment - 1);
  if (p != s->start) {
    s->has_aligned.store(true, std::memory_order_relaxed);
    MarkAligned(p);
  }
  if (populate && zeroed && bytes <= kPopulateLargeBytes) {
    ReentryScope reentry;
    area->Populate(s->start, std::size_t{s->slices} << kSliceShift);
  }
  if (zero && !zeroed) std::memset(reinterpret_cast<void*>(p), 0, bytes);
  if (g.runtime == nullptr || g.detached.load(std::memory_order_relaxed)) {
    // No purger thread here: purge on the way.
    ReentryScope reentry;
    area->Purge(CoarseNowNs(), false);
  }
  return reinterpret_cast<void*>(p);
}

void* AllocateFrom(ThreadHeap* h, std::size_t bytes, std::size_t alignment, bool zero) {
  if (alignment <= 16 && bytes <= kMaxSmallBytes) {
    void* p = AllocateClassBlock(h, SizeClassOf(bytes));
    if (p != nullptr && zero) std::memset(p, 0, bytes);
    return p;
  }
  if (alignment <= kPageSize && bytes <= kMaxSmallBytes - alignment) {
    // A class whose blocks are multiples of the alignment hands out aligned blocks
    // (spans are 64 KiB aligned); otherwise over-allocate and point inside the block.
    const int natural = SizeClassOf(std::max(bytes, alignment));
    const bool aligned_class = ClassBlockBytes(natural) % alignment == 0;
    const int c = aligned_class ? natural : SizeClassOf(bytes + alignment - 1);
    void* block = AllocateClassBlock(h, c);
    if (block == nullptr) return nullptr;
    const std::uintptr_t p =
        (reinterpret_cast<std::uintptr_t>(block) + alignment - 1) & ~(alignment - 1);
    if (p != reinterpret_cast<std::uintptr_t>(block)) {
      h->area()->SpanOf(block)->has_aligned.store(true, std::memory_order_relaxed);
      MarkAligned(p);
    }
    if (zero) std::memset(reinterpret_cast<void*>(p), 0, bytes);
    return reinterpret_cast<void*>(p);
  }
  void* p = AllocateLarge(h->area(), bytes, alignment, zero);
  if (p != nullptr) h->CountMalloc();
  return p;
}

bool StartDeferred() {
  return &uvmem_defer_heap_start != nullptr && !g.start_allowed.load(std::memory_order_acquire);
}

// Requests that must not reach the paged heap (internal_alloc.h): inside the heap's own
// paths or the runtime, from the runtime's threads, or before the preload may start it.
bool MustUsePinnedMemory() { return tls_reentry != 0 || IsRuntimeThread() || StartDeferred(); }

// The block of class span `s` holding `p`, checked: aborts on a pointer that is not one
// the heap handed out.
FreeBlock* BlockOf(Span* s, const void* p, const char* call) {
  const std::uintptr_t offset = reinterpret_cast<std::uintptr_t>(p) - s->start;
  const std::uint32_t q = DivideByClass(offset, s->reciprocal);
  const std::uintptr_t block = s->start + std::uintptr_t{q} * s->block_bytes;
  if (q >= s->reserved || (block != reinterpret_cast<std::uintptr_t>(p) &&
                           (!s->has_aligned.load(std::memory_order_relaxed) ||
                            !IsMarkedAligned(reinterpret_cast<std::uintptr_t>(p))))) {
    InvalidPointer(call, p, "invalid pointer (not a block uvmem handed out)");
  }
  return reinterpret_cast<FreeBlock*>(block);
}

void CountFree(ThreadHeap* self) {
  if (self != nullptr) {
    self->CountFree();
  } else {
    g.heapless_frees.fetch_add(1, std::memory_order_relaxed);
  }
}

void FreeClassBlock(Span* s, void* p) {
  FreeBlock* b = BlockOf(s, p, "free");
  // A stale copy of an aligned pointer must not pass for one once the block is reused.
  if (static_cast<void*>(b) != p) reinterpret_cast<std::uintptr_t*>(p)[-1] = 0;
  const std::uintptr_t key = kFreeKey ^ reinterpret_cast<std::uintptr_t>(b);
  if (b->key == key) InvalidPointer("free", p, "double free detected at");
  b->key = key;
  ThreadHeap* self = tls_heap;
  CountFree(self);
  if (self != nullptr && s->heap.load(std::memory_order_relaxed) == self) {
    self->FreeLocal(s, b);
  } else {
    ThreadHeap::FreeRemote(s, b);
  }
}

void FreeLarge(HeapArea* area, Span* s, void* p) {
  const auto addr = reinterpret_cast<std::uintptr_t>(p);
  if (addr != s->start &&
      !(s->has_aligned.load(std::memory_order_relaxed) &&
        addr < s->start + (std::uintptr_t{s->slices} << kSliceShift) && IsMarkedAligned(addr))) {
    InvalidPointer("free", p, "invalid pointer (inside a large allocation)");
  }
  if (addr != s->start) reinterpret_cast<std::uintptr_t*>(addr)[-1] = 0;  // as above
  CountFree(tls_heap);
  g.large_spans_now.fetch_sub(1, std::memory_order_relaxed);
  ReentryScope reentry;
  area->FreeSpan(s);
}

}  // namespace

void* HeapAllocateSlow(std::size_t bytes, std::size_t alignment, bool zero) {
  if (MustUsePinnedMemory()) return AllocatePinned(bytes, alignment, zero);
  EnsureStarted();
  ThreadHeap* h = tls_heap;
  if (h == nullptr) {
    {
      ReentryScope reentry;  // pthread_setspecific may allocate
      h = AttachThread();
    }
    tls_heap = h;
  }
  if (h == nullptr) return AllocatePinned(bytes, alignment, zero);
  return AllocateFrom(h, bytes, alignment, zero);
}

void* HeapAllocateOnNode(std::size_t bytes, NodeId node) {
  if (MustUsePinnedMemory()) return AllocatePinned(bytes, 16, false);
  EnsureStarted();
  int index = g.topology ? g.topology->index_of(node) : (node.value == 0 ? 0 : -1);
  if (index < 0 || index >= kMaxNodeHeaps || g.node_area[index] == nullptr) {
    errno = EINVAL;
    return nullptr;
  }
  if (tls_node_heaps == nullptr) {
    ReentryScope reentry;
    void* slot = InternalAllocator::Allocate(sizeof(NodeHeaps));
    if (slot == nullptr) return nullptr;
    tls_node_heaps = new (slot) NodeHeaps{};
    pthread_setspecific(g.exit_key, reinterpret_cast<void*>(1));
  }
  ThreadHeap*& h = tls_node_heaps->heaps[index];
  if (h == nullptr) {
    ReentryScope reentry;
    h = AdoptOrCreate(g.node_area[index]);
    if (h == nullptr) {
      errno = ENOMEM;
      return nullptr;
    }
  }
  return AllocateFrom(h, bytes, 16, false);
}

void HeapFreeSlow(void* p) {
  if (p == nullptr) return;
  if (HeapArea* area = FindArea(p)) [[likely]] {
    Span* s = area->SpanOf(p);
    const SpanKind kind = s->kind.load(std::memory_order_relaxed);
    if (kind == SpanKind::kClass) [[likely]] {
      FreeClassBlock(s, p);
      return;
    }
    if (kind == SpanKind::kLarge) {
      FreeLarge(area, s, p);
      return;
    }
    InvalidPointer("free", p, "double free or invalid pointer");
  }
  if (InternalAllocator::Owns(p)) {
    InternalAllocator::Free(p);
    return;
  }
  InvalidPointer("free", p, "invalid pointer (not from this heap)");
}

std::size_t HeapUsableSize(const void* p) {
  if (p == nullptr) return 0;
  if (HeapArea* area = FindArea(p)) {
    Span* s = area->SpanOf(p);
    const auto addr = reinterpret_cast<std::uintptr_t>(p);
    const SpanKind kind = s->kind.load(std::memory_order_relaxed);
    if (kind == SpanKind::kClass) {
      const FreeBlock* b = BlockOf(s, p, "malloc_usable_size");
      return s->block_bytes - (addr - reinterpret_cast<std::uintptr_t>(b));
    }
    if (kind == SpanKind::kLarge) {
      return s->start + (std::uintptr_t{s->slices} << kSliceShift) - addr;
    }
    InvalidPointer("malloc_usable_size", p, "pointer to freed memory");
  }
  if (InternalAllocator::Owns(p)) return InternalAllocator::UsableSize(p);
  InvalidPointer("malloc_usable_size", p, "invalid pointer (not from this heap)");
}

void* HeapReallocate(void* p, std::size_t bytes) {
  if (p == nullptr) return HeapAllocate(bytes, 16, false);
  if (bytes == 0) {
    HeapFree(p);
    return nullptr;
  }
  const std::size_t usable = HeapUsableSize(p);
  // Keep the block when the new size fits and does not waste more than half of it.
  if (bytes <= usable && bytes >= usable / 2) return p;
  HeapArea* area = FindArea(p);
  Span* span = area != nullptr ? area->SpanOf(p) : nullptr;
  const bool large =
      span != nullptr && span->kind.load(std::memory_order_relaxed) == SpanKind::kLarge;
  if (large && bytes > usable && reinterpret_cast<std::uintptr_t>(p) == span->start &&
      bytes <= area->bytes()) {
    // Grow in place into free slices after the span: no copy.
    const auto slices = static_cast<std::uint32_t>((bytes + kSliceBytes - 1) >> kSliceShift);
    ReentryScope reentry;
    if (area->TryGrow(span, slices)) return p;
  }
  // Growing past the largest class: leave room to grow again in place. Untouched
  // address space costs no memory here — pages are filled when first written.
  std::size_t want = bytes;
  if (bytes > usable && bytes > kMaxSmallBytes && usable <= (SIZE_MAX / 2)) {
    want = std::max(bytes, usable + usable / 2);
  }
  void* q = nullptr;
  if (large && want > kMaxSmallBytes && tls_heap != nullptr && tls_heap->area() == area) {
    q = AllocateLarge(area, want, 16, false, /*populate=*/false);
    if (q != nullptr) tls_heap->CountMalloc();
  }
  if (q == nullptr) q = HeapAllocate(want, 16, false);
  if (q == nullptr && want != bytes) q = HeapAllocate(bytes, 16, false);
  if (q == nullptr) return nullptr;  // p is untouched, as realloc(3) promises
  const std::size_t keep = std::min(bytes, usable);
  std::size_t moved = 0;
  if (large && !span->has_aligned.load(std::memory_order_relaxed) && FindArea(q) == area) {
    // Whole pages change address instead of being copied (mremap's idea): no copy, and
    // the old block's frames are not left behind resident.
    moved = area->MovePages(reinterpret_cast<std::uintptr_t>(p),
                            reinterpret_cast<std::uintptr_t>(q), keep & ~(kPageSize - 1));
  }
  std::memcpy(static_cast<char*>(q) + moved, static_cast<char*>(p) + moved, keep - moved);
  if (moved != 0) {
    // A buffer grown by realloc is written next just past its old end: fill a little of
    // that now, from this thread, rather than fault on it.
    const std::uintptr_t from =
        (reinterpret_cast<std::uintptr_t>(q) + keep + kPageSize - 1) & ~(kPageSize - 1);
    const Span* to = area->SpanOf(q);  // a large span of this area (the pages moved into it)
    const std::uintptr_t end = to->start + (std::uintptr_t{to->slices} << kSliceShift);
    if (from < end) area->Populate(from, std::min<std::size_t>(end - from, kReallocFillBytes));
  }
  // Moved pages are holes in the old block already; the rest waits for the purge delay
  // like any freed span (purging a copied block at once was measured: it costs more in
  // refills than it saves — docs/benchmarks.md).
  HeapFree(p);
  return q;
}

void AllowHeapStart() { g.start_allowed.store(true, std::memory_order_release); }

std::size_t HeapTrim() {
  if (g.init.load(std::memory_order_acquire) != kReady) return 0;
  return PurgeAll(/*all=*/true);
}

MallocStats HeapStats() {
  MallocStats s;
  if (StartDeferred()) return s;
  EnsureStarted();
  // The runtime allocates while it holds locks its fault threads need: its allocations
  // must not fault on the heap (they come from pinned memory).
  ReentryScope reentry;
  s.mode = g.mode;
  s.paged = g.runtime != nullptr && !g.detached.load(std::memory_order_relaxed);
  s.thread_heaps = g.heaps_created.load(std::memory_order_relaxed);
  s.large_spans_now = g.large_spans_now.load(std::memory_order_relaxed);
  s.free_calls = g.heapless_frees.load(std::memory_order_relaxed);
  {
    SpinLockHolder hold(&g.registry_lock);
    for (ThreadHeap* h = g.registry; h != nullptr; h = h->next_in_registry) {
      s.malloc_calls += h->malloc_calls.load(std::memory_order_relaxed);
      s.free_calls += h->free_calls.load(std::memory_order_relaxed);
      s.small_pages_now += h->ClassSpansNow();
    }
  }
  const int n = g.num_areas.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) {
    const HeapArea::Stats a = g.areas[i]->GetStats();
    s.spans_bytes_now += a.spans_bytes_now;
    s.purged_pages += a.purged_pages;
    s.heap_reserved_bytes += g.areas[i]->bytes();
    if (s.paged && g.areas[i]->range() != nullptr) {
      const RangeStats r = g.runtime->StatsOf(*g.areas[i]->range());
      s.heap_resident_pages += r.resident_pages;
      s.heap_peak_resident_pages += r.peak_resident_pages;
    }
  }
  if (s.paged) s.runtime = g.runtime->Stats();
  return s;
}

}  // namespace uvmem::internal
