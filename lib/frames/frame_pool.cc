#include "frames/frame_pool.h"

#include <absl/strings/str_cat.h>
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>

#include "platform/cpu.h"
#include "platform/memory_map.h"
#include "platform/report.h"

namespace uvmem::internal {

struct FramePool::Node {
  NodeId id;
  std::uint64_t first_frame = 0;
  std::uint64_t frame_count = 0;
  char* arena = nullptr;  // frame memory, arena_bytes long
  std::size_t arena_bytes = 0;
  FrameDescriptor* descriptors = nullptr;  // frame_count entries
  std::size_t descriptor_bytes = 0;
  Watermarks watermarks;

  // The zone lock: a spin lock, as Linux's zone->lock; sections are a few buddy operations.
  mutable SpinLock mu;
  std::unique_ptr<BuddyAllocator> buddy ABSL_GUARDED_BY(mu);
  std::uint64_t alloc_blocks ABSL_GUARDED_BY(mu) = 0;
  std::uint64_t free_calls ABSL_GUARDED_BY(mu) = 0;
  std::uint64_t buddy_hit ABSL_GUARDED_BY(mu) = 0;
  std::uint64_t buddy_miss ABSL_GUARDED_BY(mu) = 0;
  std::uint64_t failed ABSL_GUARDED_BY(mu) = 0;

  std::atomic<std::uint64_t> free_snapshot{0};  // buddy free frames, for racy readers
  std::uint64_t min_free ABSL_GUARDED_BY(mu) = ~std::uint64_t{0};  // low-water mark
  std::atomic<bool> low_armed{true};
  std::atomic<std::uint64_t> low_events{0};
};

namespace {
constexpr std::size_t kArenaAlignBytes = Order{kMaxOrder}.bytes();  // 4 MiB

// The same status with `where` in front of its message.
absl::Status Annotate(const absl::Status& status, const std::string& where) {
  return absl::Status(status.code(), absl::StrCat(where, ": ", status.message()));
}

// A block head leaving the pool: allocated, one reference, no owner yet.
void PrepareAllocated(FrameDescriptor& d) {
  d.set_state(FrameState::kAllocated);
  d.refcount.store(1, std::memory_order_relaxed);
  d.owner = 0;
  d.private_data = 0;
}

std::size_t RoundUp(std::size_t value, std::size_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}
}  // namespace

FramePool::FramePool(const FramePoolOptions& options, const NumaTopology& topology)
    : options_(options), topology_(topology) {}

absl::StatusOr<std::unique_ptr<FramePool>> FramePool::Create(const FramePoolOptions& options,
                                                             const NumaTopology& topology) {
  if (options.pcp_high != 0 && (options.pcp_batch == 0 || options.pcp_batch > options.pcp_high)) {
    return absl::InvalidArgumentError(fmt::format(
        "frame pool: pcp_batch {} must be in 1..pcp_high ({})", options.pcp_batch,
        options.pcp_high));
  }
  if (options.watermark_min_bp > 2000 || options.watermark_scale_bp > 2000) {
    return absl::InvalidArgumentError(
        "frame pool: watermarks above 20% of a node are not supported");
  }
  std::unique_ptr<FramePool> pool(new FramePool(options, topology));
  const int nn = topology.num_nodes();
  std::uint64_t first = 0;
  for (int i = 0; i < nn; ++i) {
    std::size_t bytes = options.bytes_per_node;
    if (static_cast<std::size_t>(i) < options.bytes_by_node.size() && options.bytes_by_node[i]) {
      bytes = options.bytes_by_node[i];
    }
    if (bytes == 0) {
      return absl::InvalidArgumentError(
          fmt::format("frame pool: node {} has a zero-sized arena", topology.node_id(i).value));
    }
    const std::uint64_t frames = RoundUp(bytes, kArenaAlignBytes) / kPageSize;
    if (frames >= kNoFrame) {
      return absl::InvalidArgumentError(
          fmt::format("frame pool: {} bytes on one node exceeds the 16 TiB arena limit", bytes));
    }
    if (absl::Status s = pool->InitNode(i, first, frames); !s.ok()) return s;
    first += frames;
  }
  pool->total_frames_ = first;
  int max_id = 0;
  for (int i = 0; i < nn; ++i) max_id = std::max(max_id, topology.node_id(i).value);
  pool->index_by_node_id_.assign(static_cast<std::size_t>(max_id) + 1, -1);
  for (int i = 0; i < nn; ++i) pool->index_by_node_id_[topology.node_id(i).value] = i;
  for (int i = 0; i < nn; ++i) pool->fallback_.push_back(topology.FallbackOrder(i));
  pool->cpu_slots_ = std::max(ConfiguredCpuCount(), topology.cpu_limit());
  pool->caches_.reset(new PerCpuFrameCache[static_cast<std::size_t>(pool->cpu_slots_) * nn]);
  return pool;
}

absl::Status FramePool::InitNode(int index, std::uint64_t first_frame, std::uint64_t frame_count) {
  auto node = std::make_unique<Node>();
  node->id = topology_.node_id(index);
  node->first_frame = first_frame;
  node->frame_count = frame_count;
  node->arena_bytes = frame_count * kPageSize;
  node->descriptor_bytes = RoundUp(frame_count * sizeof(FrameDescriptor), kPageSize);
  const auto where = fmt::format("frame pool, node {}", node->id.value);

  auto arena = ReserveAnonymous(node->arena_bytes, kArenaAlignBytes);
  if (!arena.ok()) return Annotate(arena.status(), where);
  node->arena = static_cast<char*>(*arena);
  auto descriptors = ReserveAnonymous(node->descriptor_bytes, kPageSize);
  if (!descriptors.ok()) {
    (void)ReleaseMapping(node->arena, node->arena_bytes);
    return Annotate(descriptors.status(), where + " descriptors");
  }
  node->descriptors = static_cast<FrameDescriptor*>(*descriptors);
  // Keep the node in nodes_ before anything can fail, so the destructor unmaps it.
  Node& n = *node;
  nodes_.push_back(std::move(node));

  if (topology_.real()) {
    // One mbind per VMA, once: frames and their descriptors live on the node.
    if (absl::Status s = BindToNode(n.arena, n.arena_bytes, n.id); !s.ok()) {
      return Annotate(s, where);
    }
    if (absl::Status s = BindToNode(n.descriptors, n.descriptor_bytes, n.id); !s.ok()) {
      return Annotate(s, where + " descriptors");
    }
  }
  // The descriptor array is written block by block as the buddy allocator seeds frames
  // (its frontier), so a huge pool costs a few pages until it is used. Keep it in 4 KiB
  // pages even where THP is "always": one 2 MiB page would back the descriptors of 256
  // MiB of frames at once. Best effort: without THP there is nothing to turn off.
  (void)AdviseHugePages(n.descriptors, n.descriptor_bytes, /*enable=*/false);
  bool zeroed = false;
  if (options_.prefault) {
    const int err = PopulateWrite(n.arena, n.arena_bytes);
    if (err == ENOMEM) {
      return absl::ResourceExhaustedError(fmt::format(
          "{}: cannot back {} MiB of frames now (prefault): shrink the pool or turn "
          "prefault off", where, n.arena_bytes >> 20));
    }
    zeroed = err == 0;
    if (err != 0) TouchPages(n.arena, n.arena_bytes);  // before 5.14: touch them instead
  }
  // A frame past the frontier has never been handed out: its arena page is still a hole,
  // or zero (prefault). The buddy allocator writes these flags when it seeds the block.
  const std::uint16_t initial_flags =
      zeroed ? kFrameZeroed : (options_.prefault ? 0 : kFrameHole);

  Watermarks& wm = n.watermarks;
  wm.min = frame_count * options_.watermark_min_bp / 10000;
  if (options_.watermark_min_bp > 0) wm.min = std::max<std::uint64_t>(wm.min, 1);
  wm.low = wm.min + wm.min / 4 + frame_count * options_.watermark_scale_bp / 10000;
  wm.high = wm.low + (wm.low - wm.min);

  SpinLockHolder lock(&n.mu);
  n.buddy = std::make_unique<BuddyAllocator>(n.descriptors, frame_count, /*flagged=*/zeroed,
                                             initial_flags);
  n.free_snapshot.store(n.buddy->free_frames(), std::memory_order_relaxed);
  return absl::OkStatus();
}

FramePool::~FramePool() {
  for (auto& node : nodes_) {
    if (node->arena) (void)ReleaseMapping(node->arena, node->arena_bytes);
    if (node->descriptors) (void)ReleaseMapping(node->descriptors, node->descriptor_bytes);
  }
}

PerCpuFrameCache& FramePool::CacheFor(int cpu, int node_index) const {
  const int slot = cpu < cpu_slots_ ? cpu : cpu % cpu_slots_;
  return caches_[static_cast<std::size_t>(slot) * nodes_.size() + node_index];
}

int FramePool::NodeIndexOf(FrameNumber frame) const {
  for (std::size_t i = 0; i + 1 < nodes_.size(); ++i) {
    if (frame.value < nodes_[i + 1]->first_frame) return static_cast<int>(i);
  }
  return static_cast<int>(nodes_.size()) - 1;
}

NodeId FramePool::LocalNode() const {
  return topology_.node_id(topology_.node_index_of_cpu(CurrentCpu()));
}

std::optional<FrameNumber> FramePool::Allocate(Order order, NodeId preferred, unsigned flags) {
  bool block_flagged = true;
  std::optional<FrameNumber> frame = AllocateBlock(order, preferred, flags, &block_flagged);
  if (!frame) return frame;
  FrameDescriptor* d = &Descriptor(*frame);
  if (flags & kAllocKeepFrameFlags) {
    d->flags &= ~kFrameBlockFlagged;
  } else if (order.value == 0 || !block_flagged) {
    d->flags = 0;  // no other frame of the block can be kFrameZeroed
  } else {
    for (std::uint64_t k = 0; k < order.frames(); ++k) d[k].flags = 0;
  }
  return frame;
}

std::optional<FrameNumber> FramePool::AllocateBlock(Order order, NodeId preferred,
                                                    unsigned flags, bool* block_flagged) {
  if (!order.valid()) {
    ReportFatal("frame pool: invalid order {} (orders are 0..{}, 4 KiB..4 MiB)", order.value,
                kMaxOrder);
  }
  int preferred_index = NodeIndexFor(preferred);
  if (preferred_index < 0) preferred_index = topology_.node_index_of_cpu(CurrentCpu());
  const bool use_percpu = order.value == 0 && options_.pcp_high != 0 &&
                          !(flags & (kAllocNoPerCpu | kAllocUseReserves));
  // Fast path: the preferred node's per-CPU cache.
  if (use_percpu) {
    if (auto frame = AllocateFromPerCpu(preferred_index, /*miss=*/false)) return frame;
  }
  const std::vector<int>& zonelist = fallback_[preferred_index];
  const std::size_t candidates = (flags & kAllocThisNodeOnly) ? 1 : zonelist.size();
  // Second pass only after draining the per-CPU caches found frames to give back, as
  // the kernel's slow path calls drain_all_pages() before it gives up.
  for (int pass = 0; pass < 2; ++pass) {
    for (std::size_t i = 0; i < candidates; ++i) {
      const int ni = zonelist[i];
      std::optional<FrameNumber> frame;
      if (use_percpu && (i != 0 || pass != 0)) frame = AllocateFromPerCpu(ni, /*miss=*/i != 0);
      if (!frame) frame = AllocateFromBuddy(ni, order, flags, /*miss=*/i != 0, block_flagged);
      if (frame) return frame;
    }
    if (pass == 0 && DrainPerCpuCaches() == 0) break;
  }
  return std::nullopt;
}

std::optional<FrameNumber> FramePool::AllocateFromPerCpu(int node_index, bool miss) {
  Node& n = *nodes_[node_index];
  PerCpuFrameCache& cache = CacheFor(CurrentCpu(), node_index);
  if (!cache.lock.TryLock()) return std::nullopt;  // busy: the caller takes the buddy path
  LocalFrame frame = cache.Pop(n.descriptors);
  std::uint64_t free_after = 0;
  const bool refilled = frame == kNoFrame;
  if (refilled) {
    {
      SpinLockHolder lock(&n.mu);
      for (std::uint32_t k = 0; k < options_.pcp_batch; ++k) {
        if (n.buddy->free_frames() <= n.watermarks.min) break;
        std::optional<LocalFrame> f = n.buddy->Allocate(Order{0});
        if (!f) break;
        cache.Push(n.descriptors, *f);
      }
      free_after = n.buddy->free_frames();
      n.free_snapshot.store(free_after, std::memory_order_relaxed);
      n.min_free = std::min(n.min_free, free_after);
    }
    ++cache.refills;
    frame = cache.Pop(n.descriptors);
  }
  if (frame != kNoFrame) {
    ++cache.hits;
    if (miss) ++cache.misses;
    PrepareAllocated(n.descriptors[frame]);
  }
  cache.lock.Unlock();
  if (refilled) AfterAllocate(node_index, free_after);
  if (frame == kNoFrame) return std::nullopt;
  return FrameNumber{n.first_frame + frame};
}

std::optional<FrameNumber> FramePool::AllocateFromBuddy(int node_index, Order order,
                                                        unsigned flags, bool miss,
                                                        bool* block_flagged) {
  Node& n = *nodes_[node_index];
  const std::uint64_t reserve = (flags & kAllocUseReserves) ? 0 : n.watermarks.min;
  std::optional<LocalFrame> frame;
  std::uint64_t free_after = 0;
  {
    SpinLockHolder lock(&n.mu);
    if (n.buddy->free_frames() >= order.frames() + reserve) {
      frame = n.buddy->Allocate(order, block_flagged);
    }
    if (!frame) {
      ++n.failed;
      return std::nullopt;
    }
    PrepareAllocated(n.descriptors[*frame]);
    ++n.alloc_blocks;
    ++(miss ? n.buddy_miss : n.buddy_hit);
    free_after = n.buddy->free_frames();
    n.free_snapshot.store(free_after, std::memory_order_relaxed);
    n.min_free = std::min(n.min_free, free_after);
  }
  AfterAllocate(node_index, free_after);
  return FrameNumber{n.first_frame + *frame};
}

void FramePool::AfterAllocate(int node_index, std::uint64_t free_after) {
  Node& n = *nodes_[node_index];
  if (free_after >= n.watermarks.low || !n.low_armed.load(std::memory_order_relaxed)) return;
  if (!n.low_armed.exchange(false, std::memory_order_acq_rel)) return;
  n.low_events.fetch_add(1, std::memory_order_relaxed);
  if (low_hook_) low_hook_(n.id);
}

void FramePool::ReportBadFree(FrameNumber head, Order order, const char* what) const {
  if (!Contains(head)) {
    ReportFatal("frame pool: free of frame {} (order {}): {} (the pool has frames 0..{})",
                head.value, order.value, what, total_frames_ - 1);
  }
  ReportFatal("frame pool: free of frame {} (order {}, node {}): {}", head.value, order.value,
              NodeOf(head).value, what);
}

void FramePool::Free(FrameNumber head, Order order) {
  if (!order.valid()) {
    ReportFatal("frame pool: free of frame {} with invalid order {} (orders are 0..{})",
                head.value, order.value, kMaxOrder);
  }
  if (!Contains(head)) ReportBadFree(head, order, "frame is outside the pool");
  const int ni = NodeIndexOf(head);
  Node& n = *nodes_[ni];
  const auto local = static_cast<LocalFrame>(head.value - n.first_frame);
  FrameDescriptor& d = n.descriptors[local];
  // Validation is a plain load: a sequential double free is always caught; two threads
  // racing to free the same frame may not be (mm/page_alloc.c has the same limit).
  switch (d.load_state()) {
    case FrameState::kAllocated:
      break;
    case FrameState::kFree:
    case FrameState::kPerCpu:
      ReportBadFree(head, order, "double free (the frame is already free)");
    case FrameState::kTail:
      ReportBadFree(head, order, "frame is not the head of an allocated block");
  }
  if (d.load_order() != order.value) {
    ReportFatal("frame pool: free of frame {} (node {}) with order {}, but it was allocated "
                "with order {}",
                head.value, n.id.value, order.value, d.load_order());
  }
  d.refcount.store(0, std::memory_order_relaxed);
  d.owner = 0;

  if (order.value == 0 && options_.pcp_high != 0) {
    PerCpuFrameCache& cache = CacheFor(CurrentCpu(), ni);
    if (cache.lock.TryLock()) {
      cache.Push(n.descriptors, local);
      if (cache.count > options_.pcp_high) {
        LocalFrame batch[256];
        std::uint32_t count = 0;
        const std::uint32_t want = std::min<std::uint32_t>(options_.pcp_batch, 256);
        while (count < want) batch[count++] = cache.Pop(n.descriptors);
        ++cache.drains;
        cache.lock.Unlock();
        SpinLockHolder lock(&n.mu);
        for (std::uint32_t k = 0; k < count; ++k) {
          n.buddy->Free(batch[k], Order{0}, n.descriptors[batch[k]].flags & kFrameZeroed);
        }
        n.free_snapshot.store(n.buddy->free_frames(), std::memory_order_relaxed);
        if (n.buddy->free_frames() > n.watermarks.high) n.low_armed.store(true);
        return;
      }
      cache.lock.Unlock();
      return;
    }
  }
  FreeToBuddy(ni, local, order);
}

void FramePool::SplitAllocated(FrameNumber head, Order order) {
  if (!order.valid()) {
    ReportFatal("frame pool: split of frame {} with invalid order {}", head.value, order.value);
  }
  if (!Contains(head)) ReportBadFree(head, order, "split of a frame outside the pool");
  FrameDescriptor& d = Descriptor(head);
  if (d.load_state() != FrameState::kAllocated || d.load_order() != order.value) {
    ReportFatal("frame pool: split of frame {} (order {}): it is {} with order {}", head.value,
                order.value, FrameStateName(d.load_state()), d.load_order());
  }
  for (std::uint64_t k = 0; k < order.frames(); ++k) {
    FrameDescriptor& t = Descriptor(head + k);
    t.set_order(0);
    t.set_state(FrameState::kAllocated);
    t.refcount.store(1, std::memory_order_relaxed);
    t.owner = d.owner;
    t.private_data = 0;
  }
}

void FramePool::FreeToBuddy(int node_index, LocalFrame frame, Order order) {
  Node& n = *nodes_[node_index];
  SpinLockHolder lock(&n.mu);
  // Holders that keep frame flags free order-0 frames (or keep a block's kFrameZeroed in
  // its head), so the head's own flags tell whether the block may hold a zeroed frame.
  n.buddy->Free(frame, order, n.descriptors[frame].flags & kFrameZeroed);
  ++n.free_calls;
  const std::uint64_t free_now = n.buddy->free_frames();
  n.free_snapshot.store(free_now, std::memory_order_relaxed);
  if (free_now > n.watermarks.high && !n.low_armed.load(std::memory_order_relaxed)) {
    n.low_armed.store(true, std::memory_order_relaxed);
  }
}

std::uint64_t FramePool::DrainPerCpuCaches() {
  std::uint64_t drained = 0;
  for (int cpu = 0; cpu < cpu_slots_; ++cpu) {
    for (std::size_t ni = 0; ni < nodes_.size(); ++ni) {
      Node& n = *nodes_[ni];
      PerCpuFrameCache& cache = CacheFor(cpu, static_cast<int>(ni));
      SpinLockHolder hold(&cache.lock);
      if (cache.count == 0) continue;
      ++cache.drains;
      SpinLockHolder lock(&n.mu);
      for (LocalFrame f = cache.Pop(n.descriptors); f != kNoFrame; f = cache.Pop(n.descriptors)) {
        n.buddy->Free(f, Order{0}, n.descriptors[f].flags & kFrameZeroed);
        ++drained;
      }
      n.free_snapshot.store(n.buddy->free_frames(), std::memory_order_relaxed);
      if (n.buddy->free_frames() > n.watermarks.high) n.low_armed.store(true);
    }
  }
  return drained;
}

void* FramePool::FrameAddress(FrameNumber frame) const {
  UVMEM_DCHECK(Contains(frame));
  const Node& n = *nodes_[NodeIndexOf(frame)];
  return n.arena + (frame.value - n.first_frame) * kPageSize;
}

std::optional<FrameNumber> FramePool::FrameOf(const void* address) const {
  const auto* p = static_cast<const char*>(address);
  for (const auto& n : nodes_) {
    if (p >= n->arena && p < n->arena + n->arena_bytes) {
      return FrameNumber{n->first_frame + static_cast<std::uint64_t>(p - n->arena) / kPageSize};
    }
  }
  return std::nullopt;
}

std::vector<FramePool::Arena> FramePool::Arenas() const {
  std::vector<Arena> out;
  for (const auto& n : nodes_) out.push_back({n->id, n->arena, n->arena_bytes, {n->first_frame}});
  return out;
}

NodeId FramePool::NodeOf(FrameNumber frame) const { return nodes_[NodeIndexOf(frame)]->id; }

FrameDescriptor& FramePool::Descriptor(FrameNumber frame) const {
  UVMEM_DCHECK(Contains(frame));
  const Node& n = *nodes_[NodeIndexOf(frame)];
  return n.descriptors[frame.value - n.first_frame];
}

std::uint64_t FramePool::free_frames() const {
  std::uint64_t total = 0;
  for (const NodeFrameStats& s : Stats()) total += s.free_frames + s.percpu_frames;
  return total;
}

std::vector<NodeFrameStats> FramePool::Stats() const {
  std::vector<NodeFrameStats> out;
  for (std::size_t ni = 0; ni < nodes_.size(); ++ni) {
    const Node& n = *nodes_[ni];
    NodeFrameStats s;
    s.node = n.id;
    s.total_frames = n.frame_count;
    s.watermarks = n.watermarks;
    s.low_watermark_events = n.low_events.load(std::memory_order_relaxed);
    std::uint64_t pcp_misses = 0;
    for (int cpu = 0; cpu < cpu_slots_; ++cpu) {
      PerCpuFrameCache& cache = CacheFor(cpu, static_cast<int>(ni));
      SpinLockHolder hold(&cache.lock);
      s.percpu_frames += cache.count;
      s.percpu_hits += cache.hits;
      s.percpu_refills += cache.refills;
      s.percpu_drains += cache.drains;
      pcp_misses += cache.misses;
    }
    SpinLockHolder lock(&n.mu);
    s.free_frames = n.buddy->free_frames();
    s.untouched_frames = n.buddy->untouched_frames();
    for (int o = 0; o <= kMaxOrder; ++o) s.free_blocks[o] = n.buddy->free_blocks(Order{o});
    s.alloc_blocks = n.alloc_blocks + s.percpu_hits;
    s.free_calls = n.free_calls;
    s.numa_hit = n.buddy_hit + s.percpu_hits - pcp_misses;
    s.numa_miss = n.buddy_miss + pcp_misses;
    s.failed = n.failed;
    s.min_free_frames = std::min(n.min_free, s.free_frames);
    out.push_back(s);
  }
  return out;
}

std::string FramePool::BuddyInfo() const {
  std::string out;
  for (const NodeFrameStats& s : Stats()) {
    out += fmt::format("Node {}, pool  ", s.node.value);
    for (std::uint64_t blocks : s.free_blocks) out += fmt::format(" {:6}", blocks);
    out += '\n';
  }
  return out;
}

void FramePool::CheckInvariants() const {
  for (const auto& n : nodes_) {
    SpinLockHolder lock(&n->mu);
    n->buddy->CheckInvariants();
  }
}

}  // namespace uvmem::internal
