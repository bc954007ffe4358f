// slab_stats.h — a slab cache's statistics and the /proc/slabinfo-style text view.
//
// SlabCacheStats is a snapshot of one cache: its geometry (object size, objects per slab,
// frames per slab), its population (active and total objects, slabs per node) and its
// event counters, named after SLUB's CONFIG_SLUB_STATS (/sys/kernel/slab/<cache>/*).
// FormatSlabInfo prints caches the way /proc/slabinfo (version 2.1) does.
//
// Thread-safety: plain values. Snapshots taken while other threads allocate are racy
// (each counter is exact, their sum may be momentarily off by in-flight operations).
#ifndef UVMEM_SLAB_SLAB_STATS_H_
#define UVMEM_SLAB_SLAB_STATS_H_

#include <absl/types/span.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "uvmem/types.h"

namespace uvmem::internal {

// Cumulative event counts since the cache was created.
struct SlabCounters {
  std::uint64_t alloc_fastpath = 0;  // served from the calling thread's active slab, no
                                     // lock (the "cpu-slab hit", SLUB's ALLOC_FASTPATH)
  std::uint64_t alloc_slowpath = 0;  // successful allocations that took a node lock
  std::uint64_t free_fastpath = 0;   // freed without a lock: into the calling thread's
                                     // active slab or its spare list
  std::uint64_t free_slowpath = 0;   // freed into the owning slab under its node lock
                                     // (another thread's, or a non-active slab)
  std::uint64_t alloc_refill = 0;    // the active slab's freelist refilled from objects
                                     // other threads freed into it (ALLOC_REFILL)
  std::uint64_t alloc_from_partial = 0;  // active slab taken from a partial list
  std::uint64_t alloc_node_direct = 0;   // served straight from a node's lists: an
                                         // explicit other node, debug caches, exiting
                                         // threads
  std::uint64_t slab_allocs = 0;     // slabs taken from the buddy pool (ALLOC_SLAB)
  std::uint64_t slab_frees = 0;      // slabs given back to the buddy pool (FREE_SLAB)
  std::uint64_t remote_frees = 0;    // frees of objects whose slab is on a node other
                                     // than the freeing CPU's
  std::uint64_t deactivations = 0;   // active slabs handed back (DEACTIVATE_*)
  std::uint64_t spare_flushes = 0;   // thread spare lists returned to their slabs
                                     // (SLUB's SHEAF_FLUSH)
  std::uint64_t failed_allocs = 0;   // allocations that returned nullptr

  std::uint64_t allocs() const { return alloc_fastpath + alloc_slowpath; }
  std::uint64_t frees() const { return free_fastpath + free_slowpath; }
};

// One node's share of a cache.
struct NodeSlabStats {
  NodeId node;
  std::uint64_t slabs = 0;           // all slabs whose frames are on this node
  std::uint64_t partial_slabs = 0;   // on the partial list (including empty ones kept)
  std::uint64_t empty_slabs = 0;     // partial slabs with no object in use
  std::uint64_t active_slabs = 0;    // frozen: some thread's active slab
  std::uint64_t partial_free_objects = 0;  // free objects on partial slabs
  std::uint64_t descriptor_frames = 0;     // frames holding slab descriptors
};

struct SlabCacheStats {
  std::string name;
  std::size_t object_size_bytes = 0;  // as asked for
  std::size_t slot_bytes = 0;         // stride, with alignment and debug metadata
  std::uint32_t objects_per_slab = 0;
  std::uint64_t frames_per_slab = 0;
  Order order;
  bool debug = false;
  std::uint64_t active_objects = 0;   // allocated and not freed (allocs - frees)
  std::uint64_t total_objects = 0;    // slabs * objects_per_slab
  std::uint64_t total_slabs = 0;
  SlabCounters counters;
  std::vector<NodeSlabStats> nodes;   // dense node index order
};

// /proc/slabinfo version 2.1: a header, then one line per cache:
//   name <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab>
//     : tunables 0 0 0 : slabdata <active_slabs> <num_slabs> 0
// objsize is the slot size (as the kernel prints s->size); active_slabs counts slabs
// with at least one object in use. Tunables are zero, as SLUB prints them.
std::string FormatSlabInfo(absl::Span<const SlabCacheStats> caches);

}  // namespace uvmem::internal

#endif  // UVMEM_SLAB_SLAB_STATS_H_
