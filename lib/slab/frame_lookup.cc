#include "slab/frame_lookup.h"

#include "platform/report.h"

namespace uvmem::internal {

FrameLookup::FrameLookup(const FramePool& pool) {
  std::uint64_t first = 0;
  int index = 0;
  const std::vector<NodeFrameStats> stats = pool.Stats();
  UVMEM_CHECK(stats.size() <= static_cast<std::size_t>(kMaxArenas));
  for (const NodeFrameStats& node : stats) {
    const std::uint64_t frames = node.total_frames;
    UVMEM_CHECK(frames > 0);
    const FrameNumber head{first};
    const FrameNumber last{first + frames - 1};
    Arena a;
    a.begin = reinterpret_cast<std::uintptr_t>(pool.FrameAddress(head));
    a.bytes = frames * kPageSize;
    a.descriptors = &pool.Descriptor(head);
    // The layout this map assumes (see the banner).
    UVMEM_CHECK(pool.NodeOf(head) == pool.topology().node_id(index));
    UVMEM_CHECK(reinterpret_cast<std::uintptr_t>(pool.FrameAddress(last)) ==
                a.begin + (frames - 1) * kPageSize);
    UVMEM_CHECK(&pool.Descriptor(last) == a.descriptors + (frames - 1));
    arenas_[num_arenas_++] = a;
    first += frames;
    ++index;
  }
}

}  // namespace uvmem::internal
