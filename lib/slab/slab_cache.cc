#include "slab/slab_cache.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <new>

#include "platform/cpu.h"
#include "platform/report.h"
#include "platform/mutex.h"
#include "slab/slab_debug.h"

namespace uvmem::internal {

namespace {

// A descriptor frame holds 64 Slab descriptors; the first slot links the node's
// descriptor frames together, so 63 are usable.
constexpr std::size_t kDescriptorsPerFrame = kPageSize / sizeof(Slab);

// Empty slabs one spare-list flush frees at most; others stay on the partial list.
constexpr std::size_t kMaxDiscardsPerFlush = 64;

std::uint32_t SpareLimit(const SlabLayout& layout, int requested) {
  if (layout.debug) return 0;
  if (requested >= 0) return static_cast<std::uint32_t>(requested);
  const std::size_t by_bytes = (std::size_t{16} << 10) / layout.slot_bytes;
  return static_cast<std::uint32_t>(std::clamp<std::size_t>(by_bytes, 4, 128));
}

void Add(std::atomic<std::uint64_t>& counter) {
  counter.fetch_add(1, std::memory_order_relaxed);
}

std::uint64_t Get(const std::atomic<std::uint64_t>& counter) {
  return counter.load(std::memory_order_relaxed);
}

}  // namespace

// SLUB's kmem_cache_node: one per node of the pool's topology.
struct alignas(64) SlabCache::SlabNode {
  mutable Mutex mu;
  Slab* partial_head ABSL_GUARDED_BY(mu) = nullptr;
  Slab* partial_tail ABSL_GUARDED_BY(mu) = nullptr;
  std::uint64_t nr_partial ABSL_GUARDED_BY(mu) = 0;
  std::uint64_t nr_slabs ABSL_GUARDED_BY(mu) = 0;   // every slab of the node
  std::uint64_t nr_frozen ABSL_GUARDED_BY(mu) = 0;  // threads' active slabs
  Slab* free_descriptors ABSL_GUARDED_BY(mu) = nullptr;
  char* descriptor_frames ABSL_GUARDED_BY(mu) = nullptr;  // linked through their slot 0
  std::uint64_t nr_descriptor_frames ABSL_GUARDED_BY(mu) = 0;

  void AddPartial(Slab* slab, bool to_tail) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    slab->state = SlabState::kPartial;
    if (to_tail) {
      slab->prev = partial_tail;
      slab->next = nullptr;
      (partial_tail != nullptr ? partial_tail->next : partial_head) = slab;
      partial_tail = slab;
    } else {
      slab->prev = nullptr;
      slab->next = partial_head;
      (partial_head != nullptr ? partial_head->prev : partial_tail) = slab;
      partial_head = slab;
    }
    ++nr_partial;
  }

  void RemovePartial(Slab* slab) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    (slab->prev != nullptr ? slab->prev->next : partial_head) = slab->next;
    (slab->next != nullptr ? slab->next->prev : partial_tail) = slab->prev;
    slab->next = slab->prev = nullptr;
    --nr_partial;
  }
};

// Slow-path events (shared atomics), and the fast-path counts of flushed thread slots.
struct SlabCache::Counters {
  std::atomic<std::uint64_t> alloc_fastpath_flushed{0};
  std::atomic<std::uint64_t> free_fastpath_flushed{0};
  std::atomic<std::uint64_t> alloc_slowpath{0};
  std::atomic<std::uint64_t> free_slowpath{0};
  std::atomic<std::uint64_t> alloc_refill{0};
  std::atomic<std::uint64_t> alloc_from_partial{0};
  std::atomic<std::uint64_t> alloc_node_direct{0};
  std::atomic<std::uint64_t> slab_allocs{0};
  std::atomic<std::uint64_t> slab_frees{0};
  std::atomic<std::uint64_t> remote_frees{0};
  std::atomic<std::uint64_t> deactivations{0};
  std::atomic<std::uint64_t> spare_flushes{0};
  std::atomic<std::uint64_t> failed_allocs{0};
};

// ---- creation and destruction --------------------------------------------------------

SlabCache::SlabCache(FramePool* pool, std::string_view name, const SlabLayout& layout,
                     const SlabCacheOptions& options)
    : spare_limit_(SpareLimit(layout, options.thread_cache_objects)),
      free_pointer_offset_(layout.free_pointer_offset_bytes),
      slab_bytes_(layout.slab_bytes()),
      lookup_(*pool),
      pool_(pool),
      name_(name),
      layout_(layout),
      constructor_(options.constructor),
      min_partial_(options.min_partial_slabs >= 0 ? options.min_partial_slabs
                                                  : DefaultMinPartial(layout.slot_bytes)),
      nodes_(new SlabNode[pool->topology().num_nodes()]),
      counters_(std::make_unique<Counters>()) {
  for (int i = 0; i < pool->topology().num_nodes(); ++i) {
    fallback_.push_back(pool->topology().FallbackOrder(i));
  }
}

absl::StatusOr<std::unique_ptr<SlabCache>> SlabCache::Create(FramePool* pool,
                                                             std::string_view name,
                                                             std::size_t object_size_bytes,
                                                             std::size_t alignment_bytes,
                                                             const SlabCacheOptions& options) {
  if (name.empty() || name.size() > kMaxNameBytes) {
    return absl::InvalidArgumentError(fmt::format(
        "slab cache '{}': a name of 1..{} bytes is required", name, kMaxNameBytes));
  }
  if (pool == nullptr) {
    return absl::InvalidArgumentError(fmt::format("slab cache '{}': no frame pool", name));
  }
  if (options.thread_cache_objects < -1 ||
      options.thread_cache_objects > kMaxThreadCacheObjects) {
    return absl::InvalidArgumentError(fmt::format(
        "slab cache '{}': thread_cache_objects {} must be -1 (default) or 0..{}", name,
        options.thread_cache_objects, kMaxThreadCacheObjects));
  }
  if (options.min_partial_slabs < -1) {
    return absl::InvalidArgumentError(fmt::format(
        "slab cache '{}': min_partial_slabs {} must be -1 (default) or >= 0", name,
        options.min_partial_slabs));
  }
  absl::StatusOr<SlabLayout> layout =
      ComputeSlabLayout(object_size_bytes, alignment_bytes, options.debug,
                        options.constructor != nullptr, options.min_objects);
  if (!layout.ok()) {
    return absl::Status(layout.status().code(),
                        fmt::format("slab cache '{}': {}", name,
                                    std::string_view(layout.status().message().data(),
                                                     layout.status().message().size())));
  }
  std::unique_ptr<SlabCache> cache(new SlabCache(pool, name, *layout, options));
  cache->id_ = AcquireSlabCacheId(cache.get(), cache->frame_owner());
  if (cache->id_ < 0) {
    return absl::ResourceExhaustedError(fmt::format(
        "slab cache '{}': {} slab caches are alive already; destroy unused caches",
        name, kMaxSlabCaches));
  }
  return cache;
}

SlabCache::~SlabCache() {
  // Every thread's active slab comes home first (SLUB's flush_all in kmem_cache_shutdown).
  if (id_ >= 0) ReleaseSlabCacheId(id_);
  const int num_nodes = pool_->topology().num_nodes();
  std::uint64_t live_objects = 0;
  std::uint64_t live_slabs = 0;
  const void* example = nullptr;
  for (int i = 0; i < num_nodes; ++i) {
    SlabNode& n = node(i);
    MutexLock lock(&n.mu);
    UVMEM_CHECK(n.nr_frozen == 0);
    for (const Slab* s = n.partial_head; s != nullptr; s = s->next) {
      if (s->inuse == 0) continue;
      live_objects += s->inuse;
      ++live_slabs;
      example = s->base;
    }
    const std::uint64_t full = n.nr_slabs - n.nr_partial;
    live_objects += full * layout_.objects_per_slab;
    live_slabs += full;
  }
  if (live_objects > 0 && example != nullptr) {
    ReportFatal("slab cache '{}': destroyed with {} objects remaining in {} slabs (one partial "
                "slab at {}); free every object before destroying its cache",
                name_, live_objects, live_slabs, example);
  }
  if (live_objects > 0) {
    ReportFatal("slab cache '{}': destroyed with {} objects remaining in {} full slabs; free "
                "every object before destroying its cache",
                name_, live_objects, live_slabs);
  }
  for (int i = 0; i < num_nodes; ++i) {
    SlabNode& n = node(i);
    for (;;) {
      SlabFrames frames;
      {
        MutexLock lock(&n.mu);
        if (n.partial_head == nullptr) break;
        frames = Discard(n, n.partial_head);
      }
      ReleaseFrames(frames);
    }
    char* page;
    {
      MutexLock lock(&n.mu);
      UVMEM_CHECK(n.nr_slabs == 0);
      page = n.descriptor_frames;
      n.descriptor_frames = nullptr;
      n.free_descriptors = nullptr;
      n.nr_descriptor_frames = 0;
    }
    while (page != nullptr) {
      char* next;
      std::memcpy(&next, page, sizeof(next));
      const std::optional<FrameNumber> frame = pool_->FrameOf(page);
      UVMEM_CHECK(frame.has_value());
      FrameDescriptor& d = pool_->Descriptor(*frame);
      d.owner = 0;
      d.private_data = 0;
      pool_->Free(*frame, Order{0});
      page = next;
    }
  }
}

// ---- small helpers -------------------------------------------------------------------

SlabCache::SlabNode& SlabCache::node(int index) const { return nodes_[index]; }

int SlabCache::LocalNodeIndex() const {
  return pool_->topology().node_index_of_cpu(CurrentCpu());
}

int SlabCache::NodeIndexOf(NodeId node) const { return pool_->topology().index_of(node); }

char* SlabCache::ObjectAt(const Slab* slab, std::uint32_t index) const {
  return slab->base + std::size_t{index} * layout_.slot_bytes + layout_.object_offset_bytes;
}

// ---- fast paths ----------------------------------------------------------------------

void* SlabCache::Allocate() {
  ThreadSlab* slot = CurrentThreadSlab(id_);
  if (slot != nullptr) [[likely]] {
    // Spares first: the most recently freed objects (SLUB allocates from the sheaf
    // before the cpu slab).
    if (void* object = slot->spare) {
      slot->spare = FreePointer(object);
      ++slot->spare_room;
      ThreadSlab::Bump(slot->alloc_fastpath);
      return object;
    }
    if (void* object = slot->freelist) [[likely]] {
      slot->freelist = FreePointer(object);
      ThreadSlab::Bump(slot->alloc_fastpath);
      return object;
    }
  }
  return AllocateSlow(slot, -1);
}

void* SlabCache::Allocate(NodeId node) {
  const int index = NodeIndexOf(node);
  if (index < 0) return Allocate();
  ThreadSlab* slot = CurrentThreadSlab(id_);
  if (slot != nullptr && slot->node_index == index) {
    if (void* object = slot->spare) {
      slot->spare = FreePointer(object);
      ++slot->spare_room;
      ThreadSlab::Bump(slot->alloc_fastpath);
      return object;
    }
    if (void* object = slot->freelist) {
      slot->freelist = FreePointer(object);
      ThreadSlab::Bump(slot->alloc_fastpath);
      return object;
    }
  }
  return AllocateSlow(slot, index);
}

void SlabCache::Free(void* object) {
  ThreadSlab* slot = CurrentThreadSlab(id_);
  if (slot != nullptr) [[likely]] {
    // Inside the active slab? (false for every pointer when slab_end is 0)
    if (slot->slab_end - reinterpret_cast<std::uintptr_t>(object) - 1 < slab_bytes_) [[likely]] {
      if (object == slot->freelist) [[unlikely]] {
        ReportDoubleFree(object);
      }
      SetFreePointer(object, slot->freelist);
      slot->freelist = object;
      ThreadSlab::Bump(slot->free_fastpath);
      return;
    }
    // Another slab of this cache on the thread's node, and room on the spare list?
    // (spare_room is 0 in a slot this cache has not initialised, and in debug mode.)
    if (slot->spare_room != 0) {
      int node_index;
      const FrameDescriptor* d = lookup_.Find(object, &node_index);
      if (d != nullptr && d->owner == frame_owner() && d->private_data != 0 &&
          node_index == slot->node_index) [[likely]] {
        if (object == slot->spare) [[unlikely]] {
          ReportDoubleFree(object);
        }
        SetFreePointer(object, slot->spare);
        slot->spare = object;
        --slot->spare_room;
        ThreadSlab::Bump(slot->free_fastpath);
        return;
      }
    }
  }
  FreeSlow(slot, object);
}

// ---- allocation slow paths -----------------------------------------------------------

void* SlabCache::AllocateSlow(ThreadSlab* slot, int node_index) {
  if (layout_.debug) return AllocateDirect(node_index >= 0 ? node_index : LocalNodeIndex());
  if (slot == nullptr) slot = CurrentThreadSlabOrCreate(id_);
  if (slot == nullptr) {  // exiting thread, or no memory for its state
    return AllocateDirect(node_index >= 0 ? node_index : LocalNodeIndex());
  }
  if (slot->owner == nullptr) {  // first use of this slot by this cache
    slot->owner = this;
    slot->spare_room = spare_limit_;
  }
  if (node_index >= 0) {
    // A named node other than the active slab's (or, with none, than the local node)
    // is served from that node's lists; the thread keeps its slab.
    const int current = slot->slab != nullptr ? slot->node_index : LocalNodeIndex();
    if (current != node_index) return AllocateDirect(node_index);
  }
  // 1. Objects other threads freed into the active slab (SLUB's get_freelist()). If
  //    there are none, the slab is full: unfreeze it, leaving it on no list.
  if (Slab* slab = slot->slab) {
    SlabNode& n = node(slab->node_index);
    void* list;
    {
      MutexLock lock(&n.mu);
      list = slab->freelist;
      slab->freelist = nullptr;
      if (list != nullptr) {
        slab->inuse = layout_.objects_per_slab;
      } else {
        slab->state = SlabState::kFull;
        --n.nr_frozen;
      }
    }
    if (list != nullptr) {
      slot->freelist = list;
      Add(counters_->alloc_refill);
    } else {
      slot->slab = nullptr;
      slot->slab_end = 0;
      Add(counters_->deactivations);
    }
  }
  // 2. A new active slab.
  if (slot->freelist == nullptr &&
      !LoadActiveSlab(*slot, node_index >= 0 ? node_index : LocalNodeIndex())) {
    Add(counters_->failed_allocs);
    return nullptr;
  }
  void* object = slot->freelist;
  slot->freelist = FreePointer(object);
  Add(counters_->alloc_slowpath);
  return object;
}

// Freezes a slab for the calling thread: from the node's partial list
// (get_partial_node), else a new slab, else another node's partial list in distance
// order (get_any_partial). Returns false when all fail.
bool SlabCache::LoadActiveSlab(ThreadSlab& slot, int node_index) {
  Slab* slab = nullptr;
  void* list = nullptr;
  auto freeze = [&](SlabNode& n, Slab* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(n.mu) {
    s->state = SlabState::kFrozen;
    ++n.nr_frozen;
    list = s->freelist;
    s->freelist = nullptr;
    s->inuse = layout_.objects_per_slab;
    slab = s;
  };
  auto take_partial = [&](int index) {
    SlabNode& n = node(index);
    MutexLock lock(&n.mu);
    Slab* s = n.partial_head;
    if (s == nullptr) return false;
    n.RemovePartial(s);
    freeze(n, s);
    return true;
  };
  if (take_partial(node_index)) {
    Add(counters_->alloc_from_partial);
  } else if (Slab* fresh = NewSlab(node_index)) {
    SlabNode& n = node(fresh->node_index);
    MutexLock lock(&n.mu);
    freeze(n, fresh);
  } else {
    for (int other : fallback_[node_index]) {
      if (other != node_index && take_partial(other)) {
        Add(counters_->alloc_from_partial);
        break;
      }
    }
  }
  if (slab == nullptr) return false;
  // Spare objects must stay on the slot's node.
  if (slab->node_index != slot.node_index) FlushSpare(slot);
  slot.slab = slab;
  slot.freelist = list;
  slot.slab_end = reinterpret_cast<std::uintptr_t>(slab->base) + slab_bytes_;
  slot.node_index = slab->node_index;
  return true;
}

// One object from a node's partial list, taken under the node lock; nullptr when the
// list is empty. Debug checks run here.
void* SlabCache::TakeFromNode(int node_index) {
  SlabNode& n = node(node_index);
  MutexLock lock(&n.mu);
  Slab* slab = n.partial_head;
  if (slab == nullptr) return nullptr;
  char* object = static_cast<char*>(slab->freelist);
  void* next = FreePointer(object);
  if (layout_.debug) {
    DebugCheckAllocate(layout_, name_, object);
    CheckNextFree(slab, object, next);
  }
  slab->freelist = next;
  ++slab->inuse;
  if (next == nullptr) {
    n.RemovePartial(slab);
    slab->state = SlabState::kFull;
  }
  return object;
}

// Allocation without a thread slab: the named node's partial list, else a new slab
// put on that list, else other nodes' partial lists.
void* SlabCache::AllocateDirect(int node_index) {
  void* object = TakeFromNode(node_index);
  if (object == nullptr) {
    if (Slab* fresh = NewSlab(node_index)) {
      {
        SlabNode& n = node(fresh->node_index);
        MutexLock lock(&n.mu);
        n.AddPartial(fresh, /*to_tail=*/false);
      }
      // Taken from the list head, where the new slab is unless another thread emptied
      // it already; either way an object of that node.
      object = TakeFromNode(fresh->node_index);
    }
  }
  for (std::size_t k = 0; object == nullptr && k < fallback_[node_index].size(); ++k) {
    if (fallback_[node_index][k] != node_index) object = TakeFromNode(fallback_[node_index][k]);
  }
  if (object == nullptr) {
    Add(counters_->failed_allocs);
    return nullptr;
  }
  Add(counters_->alloc_node_direct);
  Add(counters_->alloc_slowpath);
  return object;
}

// ---- slabs and descriptors -----------------------------------------------------------

Slab* SlabCache::TakeDescriptor(int node_index) {
  SlabNode& n = node(node_index);
  {
    MutexLock lock(&n.mu);
    if (Slab* d = n.free_descriptors) {
      n.free_descriptors = d->next;
      d->next = nullptr;
      ++n.nr_slabs;
      return d;
    }
  }
  // Never call into the pool with a node lock held (its hooks may reclaim into us).
  const std::optional<FrameNumber> frame =
      pool_->Allocate(Order{0}, pool_->topology().node_id(node_index));
  if (!frame) return nullptr;
  FrameDescriptor& fd = pool_->Descriptor(*frame);
  fd.owner = frame_owner();
  fd.private_data = 0;
  char* page = static_cast<char*>(pool_->FrameAddress(*frame));
  Slab* slabs = reinterpret_cast<Slab*>(page);
  for (std::size_t k = 1; k < kDescriptorsPerFrame; ++k) new (&slabs[k]) Slab();
  MutexLock lock(&n.mu);
  std::memcpy(page, &n.descriptor_frames, sizeof(char*));
  n.descriptor_frames = page;
  ++n.nr_descriptor_frames;
  for (std::size_t k = kDescriptorsPerFrame - 1; k >= 2; --k) {
    slabs[k].next = n.free_descriptors;
    n.free_descriptors = &slabs[k];
  }
  ++n.nr_slabs;
  return &slabs[1];
}

// A new slab on `node_index` (or wherever the pool falls back to), its objects linked
// in address order, constructed and debug-initialised; on no list yet, counted in its
// node's nr_slabs. nullptr when the pool is out of frames.
Slab* SlabCache::NewSlab(int node_index) {
  const std::optional<FrameNumber> head =
      pool_->Allocate(layout_.order, pool_->topology().node_id(node_index));
  if (!head) return nullptr;
  const int actual = NodeIndexOf(pool_->NodeOf(*head));
  Slab* slab = TakeDescriptor(actual);
  if (slab == nullptr) {
    pool_->Free(*head, layout_.order);
    return nullptr;
  }
  slab->base = static_cast<char*>(pool_->FrameAddress(*head));
  slab->head = *head;
  slab->node_index = static_cast<std::uint8_t>(actual);
  slab->inuse = 0;
  slab->state = SlabState::kUnused;
  void* next = nullptr;
  for (std::uint32_t i = layout_.objects_per_slab; i-- > 0;) {
    char* object = ObjectAt(slab, i);
    if (layout_.debug) DebugInitFreeObject(layout_, object);
    if (constructor_ != nullptr) constructor_(object);
    SetFreePointer(object, next);
    next = object;
  }
  slab->freelist = next;
  for (std::uint64_t f = 0; f < layout_.frames_per_slab(); ++f) {
    FrameDescriptor& d = pool_->Descriptor(*head + f);
    d.owner = frame_owner();
    d.private_data = reinterpret_cast<std::uintptr_t>(slab);
  }
  Add(counters_->slab_allocs);
  return slab;
}

// Takes `slab` (empty, not frozen) off its node and recycles its descriptor; the
// caller frees the returned block once the lock is dropped.
SlabCache::SlabFrames SlabCache::Discard(SlabNode& n, Slab* slab) {
  if (slab->state == SlabState::kPartial) n.RemovePartial(slab);
  --n.nr_slabs;
  const SlabFrames frames{slab->head, slab->base};
  slab->state = SlabState::kUnused;
  slab->freelist = nullptr;
  slab->base = nullptr;
  slab->next = n.free_descriptors;
  n.free_descriptors = slab;
  return frames;
}

void SlabCache::ReleaseFrames(const SlabFrames& frames) {
  for (std::uint64_t f = 0; f < layout_.frames_per_slab(); ++f) {
    FrameDescriptor& d = pool_->Descriptor(frames.head + f);
    d.owner = 0;
    d.private_data = 0;
  }
  pool_->Free(frames.head, layout_.order);
  Add(counters_->slab_frees);
}

// ---- freeing -------------------------------------------------------------------------

void SlabCache::ReportDoubleFree(const void* object) const {
  ReportFatal("slab cache '{}': double free of object {} (it is already free)", name_, object);
}

Slab* SlabCache::SlabOf(const void* object) const {
  int node_index;
  const FrameDescriptor* d = lookup_.Find(object, &node_index);
  if (d == nullptr) {
    ReportFatal("slab cache '{}': free of {}: not a slab object (outside the frame pool)",
                name_, object);
  }
  if (d->owner != frame_owner()) {
    const std::uint64_t frame = pool_->FrameOf(object)->value;
    const std::string_view other = LiveSlabCacheName(d->owner);
    if (other.empty()) {
      ReportFatal("slab cache '{}': free of {}: not a slab object (frame {} is not part of a "
                  "slab)",
                  name_, object, frame);
    }
    ReportFatal("slab cache '{}': free of {}: not an object of this cache (it belongs to "
                "slab cache '{}')",
                name_, object, other);
  }
  auto* slab = reinterpret_cast<Slab*>(d->private_data);
  if (slab == nullptr) {
    ReportFatal("slab cache '{}': free of {}: not an object (frame {} holds the cache's slab "
                "descriptors)",
                name_, object, pool_->FrameOf(object)->value);
  }
  const auto offset = static_cast<std::size_t>(static_cast<const char*>(object) - slab->base);
  const std::size_t index = offset / layout_.slot_bytes;
  const std::size_t in_slot = offset % layout_.slot_bytes;
  if (index >= layout_.objects_per_slab) {
    ReportFatal("slab cache '{}': free of {}: not an object (it is in the unused tail of the "
                "slab at {})",
                name_, object, static_cast<const void*>(slab->base));
  }
  if (in_slot != layout_.object_offset_bytes) {
    const char* start = ObjectAt(slab, static_cast<std::uint32_t>(index));
    if (in_slot < layout_.object_offset_bytes) {
      ReportFatal("slab cache '{}': free of {}: not the start of an object (it is {} bytes "
                  "before object {}, in its left redzone)",
                  name_, object, layout_.object_offset_bytes - in_slot,
                  static_cast<const void*>(start));
    }
    const std::size_t delta = in_slot - layout_.object_offset_bytes;
    if (delta >= layout_.object_size_bytes) {
      ReportFatal("slab cache '{}': free of {}: not the start of an object (it is {} bytes past "
                  "the end of object {}, size {} bytes)",
                  name_, object, delta - layout_.object_size_bytes,
                  static_cast<const void*>(start), layout_.object_size_bytes);
    }
    ReportFatal("slab cache '{}': free of {}: pointer into the middle of an object (offset {} "
                "of object {}, size {} bytes)",
                name_, object, delta, static_cast<const void*>(start), layout_.object_size_bytes);
  }
  return slab;
}

// Debug mode: a free object's free pointer must be null or another slot of its slab.
void SlabCache::CheckNextFree(const Slab* slab, const void* object, const void* next) const {
  if (next == nullptr) return;
  const auto* p = static_cast<const char*>(next);
  const std::size_t span = std::size_t{layout_.objects_per_slab} * layout_.slot_bytes;
  if (p < slab->base || p >= slab->base + span ||
      static_cast<std::size_t>(p - slab->base) % layout_.slot_bytes !=
          layout_.object_offset_bytes) {
    ReportFatal("slab cache '{}': freelist corrupted: free object {} links to {}, which is not "
                "an object of its slab at {}",
                name_, object, next, static_cast<const void*>(slab->base));
  }
}

// Puts `object` on its slab's freelist (SLUB's __slab_free): a full slab becomes
// partial (added at the tail); an empty partial slab is discarded into *discard when
// the node has more than min_partial partial slabs and `discard` is not null. Returns
// whether it was discarded. Checks for a double free (all of them in debug mode).
bool SlabCache::ReturnObjectLocked(SlabNode& n, Slab* slab, void* object, SlabFrames* discard)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(n.mu) {
  if (layout_.debug) {
    DebugCheckFree(layout_, name_, static_cast<char*>(object));
  } else if (object == slab->freelist || slab->inuse == 0) {
    ReportDoubleFree(object);
  }
  SetFreePointer(object, slab->freelist);
  slab->freelist = object;
  --slab->inuse;
  if (slab->state == SlabState::kFull) n.AddPartial(slab, /*to_tail=*/true);
  if (discard != nullptr && slab->state == SlabState::kPartial && slab->inuse == 0 &&
      n.nr_partial > static_cast<std::uint64_t>(min_partial_)) {
    *discard = Discard(n, slab);
    return true;
  }
  return false;
}

void SlabCache::FreeSlow(ThreadSlab* slot, void* object) {
  if (object == nullptr) return;
  Slab* slab = SlabOf(object);  // fatal unless an object of this cache
  const int node_index = slab->node_index;
  if (slot != nullptr && slot->owner == this && spare_limit_ != 0 &&
      node_index == slot->node_index) {
    // The spare list is full: hand it back to the slabs, then start it again.
    FlushSpare(*slot);
    SetFreePointer(object, slot->spare);
    slot->spare = object;
    --slot->spare_room;
    Add(counters_->free_slowpath);
    return;
  }
  SlabNode& n = node(node_index);
  SlabFrames discard;
  {
    MutexLock lock(&n.mu);
    ReturnObjectLocked(n, slab, object, &discard);
  }
  if (discard.base != nullptr) ReleaseFrames(discard);
  Add(counters_->free_slowpath);
  if (node_index != LocalNodeIndex()) Add(counters_->remote_frees);
}

// Returns every object of the slot's spare list to its slab, under one lock: spare
// objects all live on the slot's node.
void SlabCache::FlushSpare(ThreadSlab& slot) {
  void* list = slot.spare;
  slot.spare = nullptr;
  slot.spare_room = spare_limit_;
  if (list == nullptr) return;
  SlabNode& n = node(slot.node_index);
  SlabFrames discards[kMaxDiscardsPerFlush];
  std::size_t count = 0;
  {
    MutexLock lock(&n.mu);
    while (list != nullptr) {
      void* object = list;
      list = FreePointer(object);
      int node_index = -1;
      const FrameDescriptor* d = lookup_.Find(object, &node_index);
      UVMEM_DCHECK(d != nullptr && d->owner == frame_owner() && node_index == slot.node_index);
      auto* slab = reinterpret_cast<Slab*>(d->private_data);
      if (ReturnObjectLocked(n, slab, object,
                             count < kMaxDiscardsPerFlush ? &discards[count] : nullptr)) {
        ++count;
      }
    }
  }
  for (std::size_t k = 0; k < count; ++k) ReleaseFrames(discards[k]);
  Add(counters_->spare_flushes);
}

// Hands a thread's spare list and active slab back (SLUB's deactivate_slab): the
// private freelist joins the slab's, and the slab goes to the partial list, stays full,
// or is freed when empty and the node has min_partial partial slabs already.
void SlabCache::Deactivate(ThreadSlab& slot) {
  FlushSpare(slot);
  Slab* slab = slot.slab;
  void* list = slot.freelist;
  slot.slab = nullptr;
  slot.freelist = nullptr;
  slot.slab_end = 0;
  if (slab == nullptr) return;
  std::uint32_t count = 0;
  void* tail = nullptr;
  for (void* p = list; p != nullptr; p = FreePointer(p)) {
    tail = p;
    ++count;
  }
  SlabNode& n = node(slab->node_index);
  SlabFrames discard;
  {
    MutexLock lock(&n.mu);
    if (tail != nullptr) {
      SetFreePointer(tail, slab->freelist);
      slab->freelist = list;
    }
    slab->inuse -= count;
    --n.nr_frozen;
    slab->state = SlabState::kFull;
    if (slab->inuse == 0 && n.nr_partial >= static_cast<std::uint64_t>(min_partial_)) {
      discard = Discard(n, slab);
    } else if (slab->freelist != nullptr) {
      n.AddPartial(slab, /*to_tail=*/false);
    }
  }
  if (discard.base != nullptr) ReleaseFrames(discard);
  Add(counters_->deactivations);
}

void SlabCache::FlushThreadSlab(ThreadSlab& slot) {
  Deactivate(slot);
  counters_->alloc_fastpath_flushed.fetch_add(ThreadSlab::Read(slot.alloc_fastpath),
                                              std::memory_order_relaxed);
  counters_->free_fastpath_flushed.fetch_add(ThreadSlab::Read(slot.free_fastpath),
                                             std::memory_order_relaxed);
}

std::uint64_t SlabCache::Shrink() {
  if (ThreadSlab* slot = CurrentThreadSlab(id_); slot != nullptr && slot->owner == this) {
    FlushSpare(*slot);
  }
  std::uint64_t released = 0;
  for (int i = 0; i < pool_->topology().num_nodes(); ++i) {
    SlabNode& n = node(i);
    for (;;) {
      SlabFrames batch[32];
      std::size_t count = 0;
      {
        MutexLock lock(&n.mu);
        for (Slab* s = n.partial_head; s != nullptr && count < std::size(batch);) {
          Slab* next = s->next;
          if (s->inuse == 0) batch[count++] = Discard(n, s);
          s = next;
        }
      }
      for (std::size_t k = 0; k < count; ++k) ReleaseFrames(batch[k]);
      released += count * layout_.frames_per_slab();
      if (count < std::size(batch)) break;
    }
  }
  return released;
}

// ---- statistics and invariants -------------------------------------------------------

SlabCacheStats SlabCache::Stats() const {
  SlabCacheStats s;
  s.name = name_;
  s.object_size_bytes = layout_.object_size_bytes;
  s.slot_bytes = layout_.slot_bytes;
  s.objects_per_slab = layout_.objects_per_slab;
  s.frames_per_slab = layout_.frames_per_slab();
  s.order = layout_.order;
  s.debug = layout_.debug;
  SlabCounters& c = s.counters;
  ForEachThreadSlab(
      id_,
      [&](const ThreadSlab& slot) {
        c.alloc_fastpath += ThreadSlab::Read(slot.alloc_fastpath);
        c.free_fastpath += ThreadSlab::Read(slot.free_fastpath);
      },
      [&] {
        c.alloc_fastpath += Get(counters_->alloc_fastpath_flushed);
        c.free_fastpath += Get(counters_->free_fastpath_flushed);
      });
  c.alloc_slowpath = Get(counters_->alloc_slowpath);
  c.free_slowpath = Get(counters_->free_slowpath);
  c.alloc_refill = Get(counters_->alloc_refill);
  c.alloc_from_partial = Get(counters_->alloc_from_partial);
  c.alloc_node_direct = Get(counters_->alloc_node_direct);
  c.slab_allocs = Get(counters_->slab_allocs);
  c.slab_frees = Get(counters_->slab_frees);
  c.remote_frees = Get(counters_->remote_frees);
  c.deactivations = Get(counters_->deactivations);
  c.spare_flushes = Get(counters_->spare_flushes);
  c.failed_allocs = Get(counters_->failed_allocs);
  s.active_objects = c.allocs() >= c.frees() ? c.allocs() - c.frees() : 0;
  for (int i = 0; i < pool_->topology().num_nodes(); ++i) {
    const SlabNode& n = node(i);
    NodeSlabStats ns;
    ns.node = pool_->topology().node_id(i);
    MutexLock lock(&n.mu);
    ns.slabs = n.nr_slabs;
    ns.partial_slabs = n.nr_partial;
    ns.active_slabs = n.nr_frozen;
    ns.descriptor_frames = n.nr_descriptor_frames;
    for (const Slab* slab = n.partial_head; slab != nullptr; slab = slab->next) {
      if (slab->inuse == 0) ++ns.empty_slabs;
      ns.partial_free_objects += layout_.objects_per_slab - slab->inuse;
    }
    s.total_slabs += ns.slabs;
    s.nodes.push_back(ns);
  }
  s.total_objects = s.total_slabs * layout_.objects_per_slab;
  return s;
}

void SlabCache::CheckInvariants() const {
  for (int i = 0; i < pool_->topology().num_nodes(); ++i) {
    const SlabNode& n = node(i);
    MutexLock lock(&n.mu);
    std::uint64_t count = 0;
    const Slab* prev = nullptr;
    for (const Slab* slab = n.partial_head; slab != nullptr; slab = slab->next) {
      UVMEM_CHECK(slab->state == SlabState::kPartial);
      UVMEM_CHECK(slab->prev == prev);
      UVMEM_CHECK(slab->node_index == i);
      UVMEM_CHECK(slab->inuse < layout_.objects_per_slab);
      std::uint32_t free_objects = 0;
      for (const void* p = slab->freelist; p != nullptr; p = FreePointer(p)) {
        CheckNextFree(slab, slab->freelist, p);
        if (layout_.debug) {
          std::uint64_t tag;
          std::memcpy(&tag, static_cast<const char*>(p) + layout_.tag_offset_bytes, sizeof(tag));
          UVMEM_CHECK(tag == kTagFree);
        }
        UVMEM_CHECK(++free_objects <= layout_.objects_per_slab);
      }
      UVMEM_CHECK(free_objects == layout_.objects_per_slab - slab->inuse);
      for (std::uint64_t f = 0; f < layout_.frames_per_slab(); ++f) {
        const FrameDescriptor& d = pool_->Descriptor(slab->head + f);
        UVMEM_CHECK(d.owner == frame_owner());
        UVMEM_CHECK(d.private_data == reinterpret_cast<std::uintptr_t>(slab));
      }
      prev = slab;
      ++count;
    }
    UVMEM_CHECK(prev == n.partial_tail);
    UVMEM_CHECK(count == n.nr_partial);
    UVMEM_CHECK(n.nr_partial + n.nr_frozen <= n.nr_slabs);
  }
}

}  // namespace uvmem::internal
