// frame_pool.h — FramePool: the runtime's "physical memory", a buddy pool per NUMA node.
//
// Each node gets one arena: a single reserved VMA, bound to its node with mbind once (on
// a one-node machine: node 0), cut into 4 KiB frames. Frames are numbered globally
// (FrameNumber); node i's frames are [first_i, first_i + frames_i). Every frame has a
// FrameDescriptor (frame.h), stored in a per-node array bound to the same node.
//
// Allocation takes an order (block of 2^order frames, naturally aligned) and a
// preferred node, and falls back to the other nodes in distance order (the kernel's
// zonelist). Order-0 blocks go through per-CPU caches (per_cpu_cache.h), larger ones
// through the node's buddy lists (buddy_allocator.h) under the node's spin lock.
//
// Watermarks (as the kernel's zone watermarks, mm/page_alloc.c): every node has min <
// low < high, in frames. An allocation may not take a node's buddy free count below
// `min` unless it passes kAllocUseReserves (the fault engine's last resort); when the
// count falls below `low` the low-watermark hook fires once, and re-arms when the count
// climbs back above `high` (reclaim hooks in here, as kswapd is woken).
//
// Frame memory is ordinary private anonymous memory: the kernel backs a frame the first
// time it is touched, and the contents of a freed frame are not cleared (callers that
// hand frames to users zero them).
//
// Cost grows with use, not with size: Create() reserves address space for the arenas and
// descriptor arrays (MAP_NORESERVE, one mbind each, neither populates) and writes no
// descriptor, so a pool as large as the machine's RAM costs O(1) time and a few KiB. Each
// node's buddy allocator has a frontier (buddy_allocator.h): when its lists cannot serve
// an allocation, it seeds the next 4 MiB max-order block under the node lock, writing
// that block's 1024 descriptors (32 KiB). Frames past the frontier are free in every
// statistic — free_frames, and free max-order blocks in buddyinfo — and are reported
// separately as NodeFrameStats::untouched_frames. Their arena pages are holes (unless
// prefault backed the whole arena at creation, as it still does); their descriptors read
// as zero until seeded.
//
// Thread-safety: all methods are thread-safe unless marked otherwise. Misuse — an order
// above kMaxOrder, freeing a frame that is not allocated, a double free, a free with the
// wrong order — is reported with the frame number and node and aborts (report.h).
#ifndef UVMEM_FRAMES_FRAME_POOL_H_
#define UVMEM_FRAMES_FRAME_POOL_H_

#include <absl/base/thread_annotations.h>
#include <absl/status/statusor.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "frames/buddy_allocator.h"
#include "frames/frame.h"
#include "frames/per_cpu_cache.h"
#include "platform/numa_topology.h"
#include "uvmem/types.h"

namespace uvmem::internal {

struct FramePoolOptions {
  // Size of each node's arena in bytes, rounded up to a multiple of 4 MiB (one
  // max-order block). Address space is reserved up front; frames are backed on touch.
  std::size_t bytes_per_node = std::size_t{256} << 20;
  // Per-node override of bytes_per_node, by dense node index; 0 keeps the default.
  std::vector<std::size_t> bytes_by_node;
  // Per-CPU caches: refill/drain `pcp_batch` frames at a time; drain above `pcp_high`.
  // pcp_high == 0 disables the per-CPU caches (every allocation takes the node lock).
  std::uint32_t pcp_batch = 31;
  std::uint32_t pcp_high = 186;
  // Watermarks as fractions of a node's frames, in frames per 10000 (basis points):
  // min = max(1, frames * min_bp / 10000); low = min + min / 4 + frames * scale_bp /
  // 10000; high = low + (low - min). Kernel defaults are close to min_bp = 40, scale 10.
  std::uint32_t watermark_min_bp = 40;
  std::uint32_t watermark_scale_bp = 10;
  // Back every frame at creation (MADV_POPULATE_WRITE: zeroed pages, flagged
  // kFrameZeroed) instead of on first use (frames start as kFrameHole).
  bool prefault = false;
};

// Flags for FramePool::Allocate.
enum AllocFlags : unsigned {
  kAllocDefault = 0,
  kAllocThisNodeOnly = 1u << 0,  // no fallback to other nodes
  kAllocUseReserves = 1u << 1,   // may go below the min watermark (down to zero)
  kAllocNoPerCpu = 1u << 2,      // order 0 straight from the buddy lists
  kAllocKeepFrameFlags = 1u << 3,  // keep FrameDescriptor::flags (else cleared: frame.h)
};

// Watermarks of one node, in frames.
struct Watermarks {
  std::uint64_t min = 0;
  std::uint64_t low = 0;
  std::uint64_t high = 0;
};

// A snapshot of one node's state. Counters are cumulative since creation.
struct NodeFrameStats {
  NodeId node;
  std::uint64_t total_frames = 0;
  std::uint64_t free_frames = 0;     // on the buddy lists, or past the frontier
  std::uint64_t percpu_frames = 0;   // free, held in per-CPU caches
  // buddyinfo row; free_blocks[kMaxOrder] includes the untouched blocks.
  std::array<std::uint64_t, kNumOrders> free_blocks{};
  // Free frames past the frontier: never used, descriptors never written. Part of
  // free_frames; (total_frames - untouched_frames) * 32 bytes of descriptors are in use.
  std::uint64_t untouched_frames = 0;
  Watermarks watermarks;
  std::uint64_t alloc_blocks = 0;    // Allocate() successes on this node (any order)
  std::uint64_t free_calls = 0;      // blocks returned to the buddy lists directly
  std::uint64_t percpu_hits = 0;     // order-0 allocations served by a per-CPU cache
  std::uint64_t percpu_refills = 0;  // batches moved buddy -> per-CPU
  std::uint64_t percpu_drains = 0;   // batches moved per-CPU -> buddy
  std::uint64_t numa_hit = 0;        // allocations placed on the preferred node
  std::uint64_t numa_miss = 0;       // allocations placed here though another was preferred
  std::uint64_t failed = 0;          // allocations that found this node too low
  std::uint64_t low_watermark_events = 0;  // times the low hook fired for this node
  // Fewest frames the buddy lists have held (frames in per-CPU caches count as used):
  // total_frames - min_free_frames is the node's peak use.
  std::uint64_t min_free_frames = 0;
};

class FramePool {
 public:
  using LowWatermarkHook = std::function<void(NodeId)>;

  // Reserves one arena per node of `topology` (which the pool copies). Arenas of a real
  // topology are bound with mbind; synthetic ones (tests) are not. Without prefault, O(1)
  // time and memory in the pool size (see the banner). Errors:
  // InvalidArgument for a zero-sized arena or bad watermarks, ResourceExhausted when the
  // address space cannot be reserved, and mbind's error when binding fails.
  static absl::StatusOr<std::unique_ptr<FramePool>> Create(const FramePoolOptions& options,
                                                           const NumaTopology& topology);
  ~FramePool();  // returns the arenas to the system; every frame must be unused by then
  FramePool(const FramePool&) = delete;
  FramePool& operator=(const FramePool&) = delete;

  // Allocates a naturally aligned block of 2^order frames, preferably on `preferred`,
  // else on the nearest node with room. Returns the head frame, or nullopt when no node
  // can give the block, even after draining the per-CPU caches (never crashes when
  // memory runs out). The frames' contents are
  // whatever they held before. The head's refcount is set to 1 and owner to 0; every
  // frame's flags are cleared unless kAllocKeepFrameFlags.
  // REQUIRES: order.valid() (else fatal); `preferred` is a node of the topology (else
  // the local node is used).
  [[nodiscard]] std::optional<FrameNumber> Allocate(Order order, NodeId preferred,
                                                    unsigned flags = kAllocDefault);
  // Allocate() on the node of the calling CPU.
  [[nodiscard]] std::optional<FrameNumber> AllocateLocal(Order order,
                                                         unsigned flags = kAllocDefault) {
    return Allocate(order, LocalNode(), flags);
  }

  // Returns the block headed by `head` of 2^order frames. Fatal when `head` is not the
  // head of an allocated block of exactly that order (double free, tail frame, wrong
  // order, frame outside the pool).
  void Free(FrameNumber head, Order order);

  // Turns an allocated block of 2^order frames into 2^order allocated order-0 frames,
  // each with refcount 1 and owner 0, so they can be freed one by one (Linux's
  // split_page()). Fatal when `head` is not an allocated block of that order.
  void SplitAllocated(FrameNumber head, Order order);

  // Moves every per-CPU cached frame back to the buddy lists; returns how many. Allocate()
  // calls it before reporting failure, so frames parked on other CPUs are never lost.
  std::uint64_t DrainPerCpuCaches();

  // Address of a frame's first byte, and back. FrameOf returns nullopt for an address
  // outside every arena.
  void* FrameAddress(FrameNumber frame) const;
  std::optional<FrameNumber> FrameOf(const void* address) const;
  // Node holding `frame`. REQUIRES: Contains(frame).
  NodeId NodeOf(FrameNumber frame) const;
  bool Contains(FrameNumber frame) const { return frame.value < total_frames_; }
  // The descriptor of `frame` (the runtime's struct page). REQUIRES: Contains(frame).
  // A frame never handed out may lie past its node's frontier: its descriptor then reads
  // as all zero (kTail, no flags) and reading it backs nothing.
  FrameDescriptor& Descriptor(FrameNumber frame) const;

  // The node of the calling CPU.
  NodeId LocalNode() const;
  const NumaTopology& topology() const { return topology_; }
  std::uint64_t total_frames() const { return total_frames_; }

  // One node's arena: [base, base + bytes) holds frames [first_frame, ...).
  struct Arena {
    NodeId node;
    void* base = nullptr;
    std::size_t bytes = 0;
    FrameNumber first_frame;
  };
  std::vector<Arena> Arenas() const;
  // Free frames (buddy + per-CPU) on all nodes; racy snapshot.
  std::uint64_t free_frames() const;

  // Sets the hook called (outside all pool locks, on the allocating thread) when a node's
  // buddy free count falls below its low watermark. Not thread-safe: call before the pool
  // is shared. The hook must not call Allocate() with the per-CPU cache locked — it
  // never is when the hook runs; it may allocate and free.
  void SetLowWatermarkHook(LowWatermarkHook hook) { low_hook_ = std::move(hook); }

  // Per-node snapshot (dense node index order), and a /proc/buddyinfo-style text:
  // "Node 0, pool       0      0 ...     64" with one column per order.
  std::vector<NodeFrameStats> Stats() const;
  std::string BuddyInfo() const;

  // Checks every node's buddy lists (O(frames used so far)); aborts on a broken invariant.
  void CheckInvariants() const;

 private:
  struct Node;
  FramePool(const FramePoolOptions& options, const NumaTopology& topology);
  absl::Status InitNode(int index, std::uint64_t first_frame, std::uint64_t frame_count);

  std::optional<FrameNumber> AllocateBlock(Order order, NodeId preferred, unsigned flags,
                                           bool* block_flagged);
  std::optional<FrameNumber> AllocateFromPerCpu(int node_index, bool miss);
  std::optional<FrameNumber> AllocateFromBuddy(int node_index, Order order, unsigned flags,
                                               bool miss, bool* block_flagged);
  void FreeToBuddy(int node_index, LocalFrame frame, Order order);
  void AfterAllocate(int node_index, std::uint64_t free_after);
  PerCpuFrameCache& CacheFor(int cpu, int node_index) const;
  int NodeIndexOf(FrameNumber frame) const;
  // Dense index of `node`, or -1 when the topology has no such node.
  int NodeIndexFor(NodeId node) const {
    return node.value >= 0 && static_cast<std::size_t>(node.value) < index_by_node_id_.size()
               ? index_by_node_id_[node.value]
               : -1;
  }
  [[noreturn]] void ReportBadFree(FrameNumber head, Order order, const char* what) const;

  const FramePoolOptions options_;
  const NumaTopology topology_;
  std::vector<std::unique_ptr<Node>> nodes_;          // by dense index
  std::vector<std::vector<int>> fallback_;            // by dense index
  std::vector<int> index_by_node_id_;                 // NodeId -> dense index or -1
  std::uint64_t total_frames_ = 0;
  int cpu_slots_ = 1;
  std::unique_ptr<PerCpuFrameCache[]> caches_;        // cpu_slots_ * num_nodes
  LowWatermarkHook low_hook_;
};

}  // namespace uvmem::internal

#endif  // UVMEM_FRAMES_FRAME_POOL_H_
