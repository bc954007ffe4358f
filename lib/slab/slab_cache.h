// slab_cache.h — SlabCache: a cache of equal-sized objects on the frame pool (Linux's
// kmem_cache, after SLUB in mm/slub.c).
//
// Memory for the runtime's own metadata (page-table nodes, range descriptors, swap
// bookkeeping) comes from here: it lives in frame-pool frames, which are never paged.
//
//   - A slab is one buddy block of 2^order frames (order from slab_layout.h, tail waste
//     <= 1/8) cut into slots; a free object holds the free pointer to the next one.
//   - Fast path: each thread has, per cache, an active slab and a private freelist
//     (thread_slab.h; SLUB's kmem_cache_cpu, per thread). Allocate pops it; Free pushes
//     onto it when the object is in that slab. A free that misses the active slab, of
//     an object on the thread's node, goes to the thread's bounded spare list (SLUB's
//     percpu sheaves, kernel 6.18), which Allocate drains first; a full spare list is
//     flushed to the objects' own slabs under one node lock. No lock, no atomic
//     read-modify-write on either fast path.
//   - Slow path, per node (SLUB's kmem_cache_node): a mutex, a partial list, and a few
//     empty slabs kept in reserve (min_partial) before they go back to the buddy pool.
//     A free that finds the spare list unusable (an object of another node, a thread
//     without a slot) goes to its slab's own freelist under that slab's node lock.
//   - NUMA: a thread's active slab is taken on the calling CPU's node when it is
//     (re)loaded; Allocate(node) serves a named node. Slabs never change node, and an
//     object freed on another node goes straight back to its slab (spare lists hold
//     only objects of their thread's node).
//   - Object -> slab: the frame descriptor of the object's address (FramePool::FrameOf
//     + Descriptor, through the flat FrameLookup). Every frame of a slab block (head
//     and tails) has owner = this SlabCache*, private_data = Slab*.
//     Frames holding slab descriptors have owner = this and private_data = 0.
//   - Debug mode (slub_debug): redzones, poison, tags (slab_debug.h); every operation
//     takes the node lock and is checked; no thread slab is used.
//
// A constructor, when given, runs once on every object when its slab is created (not
// on each allocation), as SLUB's ctor: objects must be handed back in their
// constructed state. Without one, new objects hold whatever was last there (0x5a in
// debug mode).
//
// Thread-safety: Allocate, Free, Shrink, Stats and CheckInvariants are thread-safe.
// Destruction requires that no other thread uses the cache any more.
// Misuse is fatal through ReportFatal (cache name, address, what was wrong). Debug mode
// catches every double free and every pointer that is not the start of an object of
// this cache (outside the pool, a non-slab frame, another cache's object, the middle of
// an object, a slab's unused tail). Without debug, a free into a spare list checks that
// the frame belongs to this cache; the locked path checks everything but double frees
// of objects that are not the head of the list they go to; a free into the active slab
// checks only that the pointer lies inside that slab.
#ifndef UVMEM_SLAB_SLAB_CACHE_H_
#define UVMEM_SLAB_SLAB_CACHE_H_

#include <absl/base/thread_annotations.h>
#include <absl/status/statusor.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "frames/frame_pool.h"
#include "slab/frame_lookup.h"
#include "slab/slab.h"
#include "slab/slab_layout.h"
#include "slab/slab_stats.h"
#include "slab/thread_slab.h"
#include "uvmem/types.h"

namespace uvmem::internal {

struct SlabCacheOptions {
  // Runs on every object of a new slab (see the banner). nullptr: none.
  void (*constructor)(void* object) = nullptr;
  // Redzones, poison and full checks on every operation (SLUB's slub_debug=FZP).
  bool debug = false;
  // Partial slabs a node keeps before it frees empty slabs; -1: SLUB's default,
  // clamp(ilog2(slot bytes) / 2, 5, 10).
  int min_partial_slabs = -1;
  // Minimum objects per slab for the order calculation; 0: SLUB's default,
  // 4 * (fls(CPUs) + 1).
  unsigned min_objects = 0;
  // Capacity of each thread's spare list, in objects, at most kMaxThreadCacheObjects;
  // -1: 16 KiB worth of slots, clamped to 4..128; 0: none (every free that misses the
  // active slab takes the node lock, as classic SLUB). Ignored in debug mode.
  int thread_cache_objects = -1;
};

class SlabCache final : public ThreadSlabOwner {
 public:
  // Longest name accepted (a /proc/slabinfo column).
  static constexpr std::size_t kMaxNameBytes = 32;
  static constexpr int kMaxThreadCacheObjects = 1024;

  // Creates an empty cache of objects of `object_size_bytes` aligned to
  // `alignment_bytes` (0 = 8; else a power of two <= 4096, raised to at least 8) on
  // `pool`, which must outlive the cache. No frame is taken until the first allocation.
  // Errors: InvalidArgument for a null pool, an empty or too long name, a zero size, a
  // bad alignment, an object too large for an order-10 slab, or a thread_cache_objects
  // outside -1..kMaxThreadCacheObjects; ResourceExhausted when kMaxSlabCaches (512)
  // caches are alive.
  static absl::StatusOr<std::unique_ptr<SlabCache>> Create(FramePool* pool,
                                                           std::string_view name,
                                                           std::size_t object_size_bytes,
                                                           std::size_t alignment_bytes = 0,
                                                           const SlabCacheOptions& options = {});

  // Flushes every thread's active slab and spare list, then returns every slab and
  // descriptor frame to the pool. Fatal ("N objects remaining", as SLUB's __kmem_cache_shutdown) when
  // objects are still allocated. REQUIRES: no other thread uses the cache.
  ~SlabCache();
  SlabCache(const SlabCache&) = delete;
  SlabCache& operator=(const SlabCache&) = delete;

  // Returns an object (object_size_bytes, aligned as created), from the calling thread's
  // active slab, else from a partial or new slab on the calling CPU's node, falling back
  // to other nodes. Returns nullptr when the pool has no frames left.
  [[nodiscard]] void* Allocate();
  // As Allocate(), on `node` (another node is used only when `node` has no memory; an
  // unknown node means the local one). Uses the thread's active slab when it is on
  // `node`, else takes the node's lock.
  [[nodiscard]] void* Allocate(NodeId node);

  // Returns `object` (from Allocate on this cache) to its slab. nullptr is ignored.
  // Fatal on misuse (see the banner).
  void Free(void* object);

  // Flushes the calling thread's spare list, then returns the empty slabs kept on
  // partial lists to the pool (kmem_cache_shrink); returns the number of frames
  // released. Other threads' active slabs and spare lists are left alone.
  std::uint64_t Shrink();

  // A snapshot: geometry, population per node, counters.
  SlabCacheStats Stats() const;

  // Walks every partial list and its freelists; checks states, counts, pointers and
  // frame descriptors. Aborts on a broken invariant. O(partial objects).
  void CheckInvariants() const;

  std::string_view name() const override { return name_; }
  const SlabLayout& layout() const { return layout_; }
  std::size_t object_size_bytes() const { return layout_.object_size_bytes; }
  FramePool& pool() const { return *pool_; }
  // FrameDescriptor::owner of this cache's frames.
  std::uintptr_t frame_owner() const { return reinterpret_cast<std::uintptr_t>(this); }

 private:
  struct SlabNode;
  struct Counters;
  struct SlabFrames {  // a slab's block, to free once the node lock is dropped
    FrameNumber head;
    char* base = nullptr;
  };

  SlabCache(FramePool* pool, std::string_view name, const SlabLayout& layout,
            const SlabCacheOptions& options);

  void FlushThreadSlab(ThreadSlab& slot) override;

  void* AllocateSlow(ThreadSlab* slot, int node_index);
  void* AllocateDirect(int node_index);
  void* TakeFromNode(int node_index);
  bool LoadActiveSlab(ThreadSlab& slot, int node_index);
  void FreeSlow(ThreadSlab* slot, void* object);
  bool ReturnObjectLocked(SlabNode& node, Slab* slab, void* object, SlabFrames* discard);
  void FlushSpare(ThreadSlab& slot);
  void Deactivate(ThreadSlab& slot);

  Slab* NewSlab(int node_index);
  Slab* TakeDescriptor(int node_index);
  SlabFrames Discard(SlabNode& node, Slab* slab);
  void ReleaseFrames(const SlabFrames& frames);
  Slab* SlabOf(const void* object) const;
  [[noreturn, gnu::cold, gnu::noinline]] void ReportDoubleFree(const void* object) const;
  void CheckNextFree(const Slab* slab, const void* object, const void* next) const;

  SlabNode& node(int index) const;
  int LocalNodeIndex() const;
  int NodeIndexOf(NodeId node) const;
  // The free pointer of a free object (memcpy: objects may be only 8-byte aligned and
  // the pointer sits at free_pointer_offset_, which is 8-aligned; this is a plain mov).
  void* FreePointer(const void* object) const {
    void* next;
    std::memcpy(&next, static_cast<const char*>(object) + free_pointer_offset_, sizeof(next));
    return next;
  }
  void SetFreePointer(void* object, void* next) const {
    std::memcpy(static_cast<char*>(object) + free_pointer_offset_, &next, sizeof(next));
  }
  char* ObjectAt(const Slab* slab, std::uint32_t index) const;

  // Read on the fast paths.
  int id_ = -1;  // thread-slab slot; set once in Create
  const std::uint32_t spare_limit_;  // thread spare list capacity, objects
  const std::size_t free_pointer_offset_;
  const std::size_t slab_bytes_;
  const FrameLookup lookup_;

  FramePool* const pool_;
  const std::string name_;
  const SlabLayout layout_;
  void (*const constructor_)(void*);
  const int min_partial_;
  std::vector<std::vector<int>> fallback_;  // dense node indices by distance, per node
  std::unique_ptr<SlabNode[]> nodes_;  // by dense node index
  std::unique_ptr<Counters> counters_;
};

}  // namespace uvmem::internal

#endif  // UVMEM_SLAB_SLAB_CACHE_H_
