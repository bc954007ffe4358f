// frame_pool_tour — the frame pool at work: reserve a 64 MiB arena per NUMA node, take
// blocks of several orders, show where they live and what /proc/buddyinfo would say.
//
//   build/examples/frame_pool_tour [--bytes-per-node=MiB]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "frames/frame_pool.h"
#include "platform/memory_map.h"

using namespace uvmem;
using namespace uvmem::internal;

int main(int argc, char** argv) {
  std::size_t mib = 64;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--bytes-per-node=", 17) == 0) {
      mib = std::strtoull(argv[i] + 17, nullptr, 10);
    } else {
      std::fprintf(stderr, "usage: %s [--bytes-per-node=MiB]\n", argv[0]);
      return 2;
    }
  }
  const NumaTopology topology = NumaTopology::Detect();
  std::printf("NUMA topology:\n%s\n", topology.ToString().c_str());

  FramePoolOptions options;
  options.bytes_per_node = mib << 20;
  auto pool = FramePool::Create(options, topology);
  if (!pool.ok()) {
    std::fprintf(stderr, "frame pool: %s\n", std::string(pool.status().message()).c_str());
    return 1;
  }
  std::printf("pool: %llu frames (%zu MiB per node), buddyinfo at start:\n%s\n",
              static_cast<unsigned long long>((*pool)->total_frames()), mib,
              (*pool)->BuddyInfo().c_str());

  struct Block {
    FrameNumber head;
    Order order;
  };
  std::vector<Block> blocks;
  for (int order : {0, 0, 0, 1, 3, 5, 9, 10}) {
    for (int i = 0; i < topology.num_nodes(); ++i) {
      auto f = (*pool)->Allocate(Order{order}, topology.node_id(i));
      if (!f) continue;
      void* p = (*pool)->FrameAddress(*f);
      std::memset(p, 0x42, Order{order}.bytes());  // the kernel backs the frames now
      int where = -1;
      (void)QueryPageNodes({&p, 1}, {&where, 1});
      std::printf("order %2d  -> frame %7llu on node %d (kernel says node %d)\n", order,
                  static_cast<unsigned long long>(f->value), (*pool)->NodeOf(*f).value, where);
      blocks.push_back({*f, Order{order}});
    }
  }
  std::printf("\nbuddyinfo with %zu blocks out:\n%s", blocks.size(), (*pool)->BuddyInfo().c_str());
  for (const Block& b : blocks) (*pool)->Free(b.head, b.order);
  (*pool)->DrainPerCpuCaches();
  std::printf("\nbuddyinfo after freeing them (whole again):\n%s", (*pool)->BuddyInfo().c_str());
  for (const NodeFrameStats& s : (*pool)->Stats()) {
    std::printf("node %d: %llu allocations (%llu from per-CPU caches), numa_hit %llu, "
                "numa_miss %llu, watermarks min/low/high %llu/%llu/%llu frames\n",
                s.node.value, static_cast<unsigned long long>(s.alloc_blocks),
                static_cast<unsigned long long>(s.percpu_hits),
                static_cast<unsigned long long>(s.numa_hit),
                static_cast<unsigned long long>(s.numa_miss),
                static_cast<unsigned long long>(s.watermarks.min),
                static_cast<unsigned long long>(s.watermarks.low),
                static_cast<unsigned long long>(s.watermarks.high));
  }
  return 0;
}
