// Tests of FramePool: buddy + per-CPU caches + nodes + watermarks, on this machine's
// topology and on synthetic 2- and 4-node ones.
#include "frame_pool_test_util.h"
#include "frames/frame_pool.h"

#include <absl/random/random.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cstring>
#include <map>
#include <set>
#include <thread>
#include <vector>

#include "platform/memory_map.h"

namespace uvmem::internal {
namespace {

using testing::ExpectConsistentStats;
using testing::ExpectWhole;
using testing::kGiB;
using testing::kMiB;
using testing::kRssSlackFactor;
using testing::MakePool;
using testing::ResidentBytes;
using testing::ResidentDescriptorPages;




TEST(FramePoolTest, ArenaSizeRoundsUpToMaxOrderBlocks) {
  auto pool = MakePool(NumaTopology::Detect(), 5 * kMiB);
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(pool->Stats()[0].total_frames, 8 * kMiB / kPageSize);
}

TEST(FramePoolTest, RejectsBadOptions) {
  FramePoolOptions options;
  options.bytes_per_node = 0;
  EXPECT_EQ(FramePool::Create(options, NumaTopology::Detect()).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.bytes_per_node = 4 * kMiB;
  options.pcp_batch = 500;
  options.pcp_high = 100;
  EXPECT_EQ(FramePool::Create(options, NumaTopology::Detect()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(FramePoolTest, AddressesRoundTripAndFramesAreWritable) {
  auto pool = MakePool(NumaTopology::Detect(), 8 * kMiB);
  ASSERT_NE(pool, nullptr);
  auto f = pool->Allocate(Order{2}, NodeId{0});
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->value % 4, 0u);
  auto* p = static_cast<unsigned char*>(pool->FrameAddress(*f));
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % (4 * kPageSize), 0u);
  std::memset(p, 0xab, Order{2}.bytes());
  EXPECT_EQ(pool->FrameOf(p + 3 * kPageSize + 17)->value, f->value + 3);
  EXPECT_FALSE(pool->FrameOf(&f).has_value());
  EXPECT_EQ(pool->NodeOf(*f), NodeId{0});
  EXPECT_EQ(pool->Descriptor(*f).refcount.load(), 1u);
  EXPECT_EQ(pool->Descriptor(*f).load_state(), FrameState::kAllocated);
  pool->Free(*f, Order{2});
  ExpectWhole(*pool);
}

// Randomized orders 0..10 through both paths, checked against a model: blocks are
// disjoint, aligned, and carry the tag written at allocation until they are freed.
TEST(FramePoolTest, RandomizedAgainstReferenceModel) {
  auto pool = MakePool(NumaTopology::Detect(), 16 * kMiB);
  ASSERT_NE(pool, nullptr);
  absl::BitGen bits(std::seed_seq{7});
  std::map<std::uint64_t, int> live;  // head -> order
  std::set<std::uint64_t> taken;
  for (int step = 0; step < 6000; ++step) {
    if (live.empty() || absl::Bernoulli(bits, 0.55)) {
      const int order = absl::Bernoulli(bits, 0.7) ? 0 : absl::Uniform(bits, 0, kMaxOrder + 1);
      const unsigned flags = absl::Bernoulli(bits, 0.5) ? kAllocDefault : kAllocNoPerCpu;
      auto f = pool->Allocate(Order{order}, NodeId{0}, flags);
      if (!f) continue;  // fragmentation or watermark: allowed, checked below
      ASSERT_EQ(f->value % (1u << order), 0u);
      for (std::uint64_t k = 0; k < (1u << order); ++k) {
        ASSERT_TRUE(taken.insert(f->value + k).second) << "frame handed out twice";
      }
      *static_cast<std::uint64_t*>(pool->FrameAddress(*f)) = f->value * 31 + order;
      live[f->value] = order;
    } else {
      auto it = live.begin();
      std::advance(it, absl::Uniform<long>(bits, 0, static_cast<long>(live.size())));
      ASSERT_EQ(*static_cast<std::uint64_t*>(pool->FrameAddress(FrameNumber{it->first})),
                it->first * 31 + it->second)
          << "block contents changed while allocated";
      for (std::uint64_t k = 0; k < (1u << it->second); ++k) taken.erase(it->first + k);
      pool->Free(FrameNumber{it->first}, Order{it->second});
      live.erase(it);
    }
  }
  // Free + per-CPU counts add up to everything not live.
  const NodeFrameStats s = pool->Stats()[0];
  EXPECT_EQ(s.free_frames + s.percpu_frames + taken.size(), s.total_frames);
  for (auto& [head, order] : live) pool->Free(FrameNumber{head}, Order{order});
  ExpectWhole(*pool);
}

TEST(FramePoolTest, ExhaustionStopsAtMinThenReservesThenNullopt) {
  auto pool = MakePool(NumaTopology::Detect(), 4 * kMiB);
  ASSERT_NE(pool, nullptr);
  const NodeFrameStats before = pool->Stats()[0];
  ASSERT_GT(before.watermarks.min, 0u);
  std::vector<FrameNumber> frames;
  // Allocate() drains other CPUs' caches before failing, so nothing stays parked.
  while (auto f = pool->Allocate(Order{0}, NodeId{0})) frames.push_back(*f);
  EXPECT_EQ(frames.size(), before.total_frames - before.watermarks.min);
  while (auto f = pool->Allocate(Order{0}, NodeId{0}, kAllocUseReserves)) frames.push_back(*f);
  EXPECT_EQ(frames.size(), before.total_frames) << "reserves give the last min frames";
  EXPECT_FALSE(pool->Allocate(Order{0}, NodeId{0}, kAllocUseReserves).has_value());
  EXPECT_FALSE(pool->Allocate(Order{kMaxOrder}, NodeId{0}).has_value());
  EXPECT_GT(pool->Stats()[0].failed, 0u);
  for (FrameNumber f : frames) pool->Free(f, Order{0});
  ExpectWhole(*pool);
}

TEST(FramePoolTest, LowWatermarkHookFiresOnceAndRearmsAboveHigh) {
  auto pool = MakePool(NumaTopology::Detect(), 4 * kMiB);
  ASSERT_NE(pool, nullptr);
  std::vector<NodeId> fired;
  pool->SetLowWatermarkHook([&](NodeId node) { fired.push_back(node); });
  const Watermarks wm = pool->Stats()[0].watermarks;
  ASSERT_LT(wm.min, wm.low);
  ASSERT_LT(wm.low, wm.high);
  std::vector<FrameNumber> frames;
  const std::uint64_t total = pool->Stats()[0].total_frames;
  // Take frames until the buddy count is below low.
  while (pool->Stats()[0].free_frames >= wm.low) {
    auto f = pool->Allocate(Order{0}, NodeId{0}, kAllocNoPerCpu);
    ASSERT_TRUE(f.has_value());
    frames.push_back(*f);
  }
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0], NodeId{0});
  frames.push_back(*pool->Allocate(Order{0}, NodeId{0}, kAllocNoPerCpu));
  EXPECT_EQ(fired.size(), 1u) << "the hook fires once per crossing";
  // Free back above high: re-armed; dropping below low again fires again.
  while (total - frames.size() <= wm.high) {
    pool->Free(frames.back(), Order{0});
    frames.pop_back();
  }
  pool->DrainPerCpuCaches();
  while (pool->Stats()[0].free_frames >= wm.low) {
    frames.push_back(*pool->Allocate(Order{0}, NodeId{0}, kAllocNoPerCpu));
  }
  EXPECT_EQ(fired.size(), 2u);
  EXPECT_EQ(pool->Stats()[0].low_watermark_events, 2u);
  for (FrameNumber f : frames) pool->Free(f, Order{0});
  ExpectWhole(*pool);
}

// Threads allocate and free through the per-CPU caches; each frame carries its owner's
// tag while held, so two threads holding one frame would be caught.
TEST(FramePoolTest, MultiThreadedStressThroughPerCpuCaches) {
  auto pool = MakePool(NumaTopology::Detect(), 16 * kMiB);
  ASSERT_NE(pool, nullptr);
  constexpr int kThreads = 4;
  const int kRounds = 20000;
  std::barrier start(kThreads);
  std::atomic<int> corrupt{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      absl::BitGen bits(std::seed_seq{t});
      std::vector<FrameNumber> held;
      start.arrive_and_wait();
      for (int i = 0; i < kRounds; ++i) {
        if (held.size() < 300 && (held.empty() || absl::Bernoulli(bits, 0.5))) {
          const int order = absl::Bernoulli(bits, 0.9) ? 0 : absl::Uniform(bits, 1, 4);
          auto f = pool->Allocate(Order{order}, NodeId{0});
          if (!f) continue;
          auto* word = static_cast<std::uint64_t*>(pool->FrameAddress(*f));
          word[0] = (static_cast<std::uint64_t>(t) << 56) | f->value;
          word[1] = static_cast<std::uint64_t>(order);
          pool->Descriptor(*f).owner = static_cast<std::uintptr_t>(t + 1);
          held.push_back(*f);
        } else {
          const std::size_t k = absl::Uniform<std::size_t>(bits, 0, held.size());
          FrameNumber f = held[k];
          held[k] = held.back();
          held.pop_back();
          auto* word = static_cast<std::uint64_t*>(pool->FrameAddress(f));
          if (word[0] != ((static_cast<std::uint64_t>(t) << 56) | f.value) ||
              pool->Descriptor(f).owner != static_cast<std::uintptr_t>(t + 1)) {
            corrupt.fetch_add(1);
          }
          pool->Free(f, Order{static_cast<int>(word[1])});
        }
      }
      for (FrameNumber f : held) {
        pool->Free(f, Order{static_cast<int>(static_cast<std::uint64_t*>(pool->FrameAddress(f))[1])});
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(corrupt.load(), 0);
  const NodeFrameStats s = pool->Stats()[0];
  EXPECT_GT(s.percpu_hits, 0u) << "order-0 traffic should be served by per-CPU caches";
  EXPECT_GT(s.percpu_refills, 0u);
  ExpectWhole(*pool);
}

TEST(FramePoolTest, PerCpuCachesCanBeDisabled) {
  FramePoolOptions options;
  options.pcp_high = 0;
  auto pool = MakePool(NumaTopology::Detect(), 4 * kMiB, options);
  ASSERT_NE(pool, nullptr);
  auto f = pool->Allocate(Order{0}, NodeId{0});
  ASSERT_TRUE(f.has_value());
  pool->Free(*f, Order{0});
  EXPECT_EQ(pool->Stats()[0].percpu_hits, 0u);
  EXPECT_EQ(pool->Stats()[0].free_frames, pool->Stats()[0].total_frames);
}

// ---- synthetic NUMA topologies ------------------------------------------------------

// Takes every frame of `node` (ignoring watermarks) and returns them.
std::vector<FrameNumber> DrainNode(FramePool& pool, NodeId node) {
  std::vector<FrameNumber> frames;
  pool.DrainPerCpuCaches();
  while (auto f = pool.Allocate(Order{0}, node, kAllocThisNodeOnly | kAllocUseReserves)) {
    frames.push_back(*f);
  }
  return frames;
}

TEST(FramePoolNumaTest, TwoNodesAllocateOnPreferredNodeAndCountIt) {
  // 8 MiB: an order-10 block plus the min watermark must fit.
  auto pool = MakePool(NumaTopology::TwoNodeForTest(), 8 * kMiB);
  ASSERT_NE(pool, nullptr);
  ASSERT_EQ(pool->Stats().size(), 2u);
  for (int node = 0; node < 2; ++node) {
    for (int order : {0, 0, 3, 10}) {
      auto f = pool->Allocate(Order{order}, NodeId{node});
      ASSERT_TRUE(f.has_value());
      EXPECT_EQ(pool->NodeOf(*f), NodeId{node});
      pool->Free(*f, Order{order});
    }
  }
  const auto stats = pool->Stats();
  EXPECT_EQ(stats[0].numa_hit, 4u);
  EXPECT_EQ(stats[1].numa_hit, 4u);
  EXPECT_EQ(stats[0].numa_miss + stats[1].numa_miss, 0u);
  // Frame numbers are global: node 1's frames follow node 0's.
  auto f1 = pool->Allocate(Order{0}, NodeId{1}, kAllocNoPerCpu);
  EXPECT_GE(f1->value, stats[0].total_frames);
  pool->Free(*f1, Order{0});
  ExpectWhole(*pool);
}

TEST(FramePoolNumaTest, TwoNodesFallBackWhenPreferredNodeIsFull) {
  auto pool = MakePool(NumaTopology::TwoNodeForTest(), 4 * kMiB);
  ASSERT_NE(pool, nullptr);
  std::vector<FrameNumber> node1 = DrainNode(*pool, NodeId{1});
  EXPECT_EQ(node1.size(), pool->Stats()[1].total_frames);
  auto f = pool->Allocate(Order{0}, NodeId{1});
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(pool->NodeOf(*f), NodeId{0});
  EXPECT_FALSE(pool->Allocate(Order{0}, NodeId{1}, kAllocThisNodeOnly).has_value());
  EXPECT_EQ(pool->Stats()[0].numa_miss, 1u);
  pool->Free(*f, Order{0});
  for (FrameNumber g : node1) pool->Free(g, Order{0});
  ExpectWhole(*pool);
}

TEST(FramePoolNumaTest, FourNodeFallbackFollowsDistanceMatrix) {
  const NumaTopology topology = NumaTopology::FourNodeForTest();
  auto pool = MakePool(topology, 8 * kMiB);
  ASSERT_NE(pool, nullptr);
  // From node 0: itself (10), then 1 and 3 (16, tie broken by number), then 2 (22).
  std::vector<std::vector<FrameNumber>> held;
  for (int expected : {0, 1, 3, 2}) {
    auto f = pool->Allocate(Order{0}, NodeId{0});
    ASSERT_TRUE(f.has_value());
    EXPECT_EQ(pool->NodeOf(*f), NodeId{expected});
    pool->Free(*f, Order{0});
    held.push_back(DrainNode(*pool, NodeId{expected}));
  }
  EXPECT_FALSE(pool->Allocate(Order{0}, NodeId{0}).has_value()) << "every node is empty";
  // Larger orders follow the same order.
  for (FrameNumber f : held[3]) pool->Free(f, Order{0});  // node 2 back
  auto big = pool->Allocate(Order{kMaxOrder}, NodeId{0});
  ASSERT_TRUE(big.has_value());
  EXPECT_EQ(pool->NodeOf(*big), NodeId{2});
  pool->Free(*big, Order{kMaxOrder});
  for (int i = 0; i < 3; ++i) {
    for (FrameNumber f : held[i]) pool->Free(f, Order{0});
  }
  ExpectWhole(*pool);
}

TEST(FramePoolNumaTest, PerNodeAccountingIsIndependent) {
  auto pool = MakePool(NumaTopology::FourNodeForTest(), 4 * kMiB);
  ASSERT_NE(pool, nullptr);
  std::vector<std::pair<FrameNumber, int>> held;
  for (int node = 0; node < 4; ++node) {
    for (int k = 0; k <= node; ++k) {
      auto f = pool->Allocate(Order{4}, NodeId{node});
      ASSERT_TRUE(f.has_value());
      held.push_back({*f, 4});
    }
  }
  const auto stats = pool->Stats();
  for (int node = 0; node < 4; ++node) {
    EXPECT_EQ(stats[node].total_frames - stats[node].free_frames - stats[node].percpu_frames,
              16u * (node + 1))
        << "node " << node;
    EXPECT_EQ(stats[node].alloc_blocks, static_cast<std::uint64_t>(node + 1));
  }
  for (auto [f, order] : held) pool->Free(f, Order{order});
  ExpectWhole(*pool);
}

// ---- the real machine ----------------------------------------------------------------

TEST(FramePoolPlacementTest, FrameOnNodeZeroIsOnNodeZero) {
  const NumaTopology topology = NumaTopology::Detect();
  auto pool = MakePool(topology, 8 * kMiB);
  ASSERT_NE(pool, nullptr);
  for (int i = 0; i < topology.num_nodes(); ++i) {
    const NodeId node = topology.node_id(i);
    auto f = pool->Allocate(Order{0}, node, kAllocThisNodeOnly);
    ASSERT_TRUE(f.has_value());
    void* page = pool->FrameAddress(*f);
    std::memset(page, 1, kPageSize);  // back it
    int status = -1;
    ASSERT_TRUE(QueryPageNodes({&page, 1}, {&status, 1}).ok());
    EXPECT_EQ(status, node.value) << "frame " << f->value << " should live on node "
                                  << node.value;
    pool->Free(*f, Order{0});
  }
}

TEST(FramePoolBuddyInfoTest, ShowsOneRowPerNode) {
  auto pool = MakePool(NumaTopology::TwoNodeForTest(), 8 * kMiB);
  ASSERT_NE(pool, nullptr);
  const std::string info = pool->BuddyInfo();
  EXPECT_NE(info.find("Node 0, pool"), std::string::npos) << info;
  EXPECT_NE(info.find("Node 1, pool"), std::string::npos) << info;
  EXPECT_NE(info.find("      2\n"), std::string::npos) << "two 4 MiB blocks per node: " << info;
}

// ---- cost grows with use: the frontier -------------------------------------------

constexpr std::uint64_t kBlockFrames = std::uint64_t{1} << kMaxOrder;
constexpr std::uint64_t kBlockDescriptorPages = kBlockFrames * sizeof(FrameDescriptor) / kPageSize;

// A pool the size of a large machine's RAM is only address space: creating it writes no
// descriptor and binds (mbind) without populating anything.
TEST(FramePoolFrontierTest, HugePoolCostsNoMemoryUntilUsed) {
  const std::size_t rss_before = ResidentBytes();
  FramePoolOptions options;
  options.bytes_per_node = 64 * kGiB;
  auto created = FramePool::Create(options, NumaTopology::Detect());
  if (!created.ok() && created.status().code() == absl::StatusCode::kResourceExhausted) {
    GTEST_SKIP() << "cannot reserve 64 GiB of address space here: " << created.status();
  }
  ASSERT_TRUE(created.ok()) << created.status();
  FramePool& pool = **created;
  const std::size_t rss_after = ResidentBytes();
  EXPECT_LT(rss_after - std::min(rss_before, rss_after), 4 * kMiB * kRssSlackFactor)
      << "creating a 64 GiB pool must not back its descriptors";
  const NodeFrameStats s = pool.Stats()[0];
  EXPECT_EQ(s.total_frames, 64 * kGiB / kPageSize);
  EXPECT_EQ(s.free_frames, s.total_frames);
  EXPECT_EQ(s.untouched_frames, s.total_frames);
  EXPECT_EQ(s.free_blocks[kMaxOrder], s.total_frames / kBlockFrames);
  EXPECT_EQ(s.watermarks.min, s.total_frames * options.watermark_min_bp / 10000)
      << "watermarks follow the configured size";
  EXPECT_EQ(ResidentDescriptorPages(pool, FrameNumber{0}, s.total_frames), 0u);
  ExpectConsistentStats(pool);

  // Using some of it backs the descriptors of exactly the blocks seeded.
  auto f = pool.Allocate(Order{0}, NodeId{0});
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(ResidentDescriptorPages(pool, FrameNumber{0}, s.total_frames), kBlockDescriptorPages);
  EXPECT_EQ(pool.Stats()[0].untouched_frames, s.total_frames - kBlockFrames);
  EXPECT_EQ(pool.Stats()[0].min_free_frames, pool.Stats()[0].free_frames);
  pool.Free(*f, Order{0});
  pool.CheckInvariants();
}

// Allocating N frames backs about N * 32 bytes of descriptors: the seeded blocks' 32 KiB
// each, nothing else, whichever path (per-CPU or buddy) took them.
TEST(FramePoolFrontierTest, DescriptorMemoryGrowsWithFramesUsed) {
  auto pool = MakePool(NumaTopology::Detect(), 1 * kGiB);
  ASSERT_NE(pool, nullptr);
  const std::uint64_t total = pool->total_frames();
  ASSERT_EQ(ResidentDescriptorPages(*pool, FrameNumber{0}, total), 0u);
  std::vector<FrameNumber> held;
  held.reserve(20000);
  const std::size_t rss_before = ResidentBytes();
  for (std::uint64_t n : {1000u, 5000u, 20000u}) {
    while (held.size() < n) {
      auto f = pool->Allocate(Order{0}, NodeId{0}, held.size() % 3 ? kAllocDefault : kAllocNoPerCpu);
      ASSERT_TRUE(f.has_value());
      held.push_back(*f);
    }
    const NodeFrameStats s = pool->Stats()[0];
    const std::uint64_t seeded = s.total_frames - s.untouched_frames;
    EXPECT_GE(seeded, n);
    EXPECT_LE(seeded, n + kBlockFrames + 64) << "at most one block (and a pcp batch) ahead";
    EXPECT_EQ(ResidentDescriptorPages(*pool, FrameNumber{0}, total),
              seeded * sizeof(FrameDescriptor) / kPageSize);
  }
  const std::size_t rss_after = ResidentBytes();
  const std::size_t rss_growth = rss_after - std::min(rss_before, rss_after);
  EXPECT_LT(rss_growth, (20000 * sizeof(FrameDescriptor) + 2 * kMiB) * kRssSlackFactor)
      << "descriptors of 20000 frames are 625 KiB";
  for (FrameNumber f : held) pool->Free(f, Order{0});
  ExpectWhole(*pool);
  EXPECT_EQ(pool->Stats()[0].untouched_frames, total - 20 * kBlockFrames)
      << "seeded blocks stay seeded (listed) after they are freed";
}

// Allocations of every order cross block boundaries at the frontier; exhaustion comes at
// exactly total_frames; frees merge within each grown block; statistics stay consistent.
TEST(FramePoolFrontierTest, AllocationAcrossTheFrontierUntilExhaustion) {
  auto pool = MakePool(NumaTopology::Detect(), 16 * kMiB);
  ASSERT_NE(pool, nullptr);
  const std::uint64_t total = pool->total_frames();
  ASSERT_EQ(total, 4 * kBlockFrames);
  absl::BitGen bits(std::seed_seq{11});
  std::map<std::uint64_t, int> live;  // head -> order
  std::uint64_t live_frames = 0;
  for (int order = kMaxOrder;; order = absl::Uniform(bits, 0, kMaxOrder + 1)) {
    auto f = pool->Allocate(Order{order}, NodeId{0}, kAllocUseReserves);
    if (!f) {
      if (order == 0) break;  // order 0 fails only when nothing at all is free
      continue;
    }
    ASSERT_EQ(f->value % (std::uint64_t{1} << order), 0u);
    live[f->value] = order;
    live_frames += std::uint64_t{1} << order;
    const NodeFrameStats s = pool->Stats()[0];
    ASSERT_EQ(s.free_frames + s.percpu_frames + live_frames, total);
    ExpectConsistentStats(*pool);
  }
  EXPECT_EQ(live_frames, total) << "every frame, across every block, is handed out";
  EXPECT_EQ(pool->Stats()[0].untouched_frames, 0u);
  EXPECT_EQ(pool->Stats()[0].min_free_frames, 0u);
  EXPECT_FALSE(pool->Allocate(Order{0}, NodeId{0}, kAllocUseReserves).has_value());
  std::set<std::uint64_t> seen;
  for (auto [head, order] : live) {
    for (std::uint64_t k = 0; k < (std::uint64_t{1} << order); ++k) {
      ASSERT_TRUE(seen.insert(head + k).second) << "frame handed out twice";
    }
  }
  // Free in a scrambled order: each grown block merges back whole.
  std::vector<std::pair<std::uint64_t, int>> order_of_free(live.begin(), live.end());
  std::shuffle(order_of_free.begin(), order_of_free.end(), bits);
  for (auto [head, order] : order_of_free) {
    pool->Free(FrameNumber{head}, Order{order});
    ExpectConsistentStats(*pool);
  }
  ExpectWhole(*pool);
}

// Fresh frames past the frontier are holes, or zeroed when the pool was prefaulted (which
// still backs the whole arena at creation).
TEST(FramePoolFrontierTest, FreshFramesCarryTheArenaState) {
  for (bool prefault : {false, true}) {
    FramePoolOptions options;
    options.prefault = prefault;
    auto pool = MakePool(NumaTopology::Detect(), 8 * kMiB, options);
    ASSERT_NE(pool, nullptr);
    // The last frame of the second block: untouched until this allocation seeds it.
    void* last = pool->FrameAddress(FrameNumber{2 * kBlockFrames - 1});
    int status = 0;
    ASSERT_TRUE(QueryPageNodes({&last, 1}, {&status, 1}).ok());
    EXPECT_EQ(status >= 0, prefault) << "prefault backs every frame at creation";
    auto first = pool->Allocate(Order{kMaxOrder}, NodeId{0}, kAllocUseReserves);
    auto second = pool->Allocate(Order{kMaxOrder}, NodeId{0}, kAllocKeepFrameFlags | kAllocUseReserves);
    ASSERT_TRUE(first && second);
    EXPECT_EQ(second->value, kBlockFrames);
    const std::uint16_t expected = prefault ? kFrameZeroed : kFrameHole;
    for (std::uint64_t k = 0; k < kBlockFrames; ++k) {
      ASSERT_EQ(pool->Descriptor(*second + k).flags, expected) << "prefault " << prefault;
    }
    pool->Free(*first, Order{kMaxOrder});
    pool->Free(*second, Order{kMaxOrder});
    ExpectWhole(*pool);
  }
}

// ---- misuse is fatal and says what happened ----------------------------------------

using FramePoolDeathTest = ::testing::Test;

TEST(FramePoolDeathTest, OrderAboveMaxIsFatal) {
  auto pool = MakePool(NumaTopology::Detect(), 4 * kMiB);
  EXPECT_DEATH((void)pool->Allocate(Order{11}, NodeId{0}), "invalid order 11");
  EXPECT_DEATH((void)pool->Allocate(Order{-1}, NodeId{0}), "invalid order -1");
}

TEST(FramePoolDeathTest, DoubleFreeIsFatal) {
  auto pool = MakePool(NumaTopology::Detect(), 4 * kMiB);
  auto f = pool->Allocate(Order{0}, NodeId{0});
  pool->Free(*f, Order{0});  // now in a per-CPU cache
  EXPECT_DEATH(pool->Free(*f, Order{0}), "double free");
  auto g = pool->Allocate(Order{5}, NodeId{0});
  pool->Free(*g, Order{5});  // now on the buddy lists
  EXPECT_DEATH(pool->Free(*g, Order{5}), "double free");
}

TEST(FramePoolDeathTest, FreeOfUnallocatedFrameIsFatal) {
  auto pool = MakePool(NumaTopology::Detect(), 4 * kMiB);
  auto f = pool->Allocate(Order{3}, NodeId{0});
  EXPECT_DEATH(pool->Free(*f + 1, Order{0}), "not the head of an allocated block");
  EXPECT_DEATH(pool->Free(FrameNumber{1u << 30}, Order{0}), "outside the pool");
  EXPECT_DEATH(pool->Free(*f, Order{2}), "allocated with order 3");
  EXPECT_DEATH(pool->Free(*f, Order{12}), "invalid order 12");
  pool->Free(*f, Order{3});
}


TEST(FramePoolSplitTest, SplitBlockFramesAreFreedOneByOne) {
  auto pool = MakePool(NumaTopology::Detect(), 8 * kMiB);
  ASSERT_NE(pool, nullptr);
  auto head = pool->Allocate(Order{4}, NodeId{0});
  ASSERT_TRUE(head.has_value());
  pool->SplitAllocated(*head, Order{4});
  for (std::uint64_t k = 0; k < 16; ++k) {
    EXPECT_EQ(pool->Descriptor(*head + k).load_state(), FrameState::kAllocated);
    EXPECT_EQ(pool->Descriptor(*head + k).load_order(), 0);
  }
  // Free in a scrambled order: the buddy lists must merge them back whole.
  for (std::uint64_t k : {5, 0, 15, 3, 9, 1, 2, 4, 6, 7, 8, 10, 11, 12, 13, 14}) {
    pool->Free(*head + k, Order{0});
  }
  ExpectWhole(*pool);
  auto again = pool->Allocate(Order{2}, NodeId{0});
  EXPECT_DEATH(pool->SplitAllocated(*again, Order{3}), "split of frame");
}


// kFrameZeroed must never outlive its holder: a block allocated without
// kAllocKeepFrameFlags comes back with no frame trusted as zero, however it merged.
TEST(FramePoolFlagsTest, ZeroedFlagNeverReachesAnUnawareHolder) {
  auto pool = MakePool(NumaTopology::Detect(), 4 * kMiB);
  ASSERT_NE(pool, nullptr);
  std::vector<FrameNumber> kept;
  for (int i = 0; i < 40; ++i) {
    auto f = pool->Allocate(Order{0}, NodeId{0}, kAllocKeepFrameFlags);
    ASSERT_TRUE(f.has_value());
    pool->Descriptor(*f).flags = kFrameZeroed;
    kept.push_back(*f);
  }
  for (FrameNumber f : kept) pool->Free(f, Order{0});
  // The whole arena as one block: it holds every frame flagged above.
  auto block = pool->Allocate(Order{kMaxOrder}, NodeId{0}, kAllocUseReserves);
  ASSERT_TRUE(block.has_value());
  for (std::uint64_t k = 0; k < Order{kMaxOrder}.frames(); ++k) {
    ASSERT_FALSE(pool->Descriptor(*block + k).flags & kFrameZeroed) << "frame " << k;
  }
  pool->Free(*block, Order{kMaxOrder});
  // A holder that keeps flags sees them as it left them (here: none, after the clear).
  auto again = pool->Allocate(Order{0}, NodeId{0}, kAllocKeepFrameFlags);
  ASSERT_TRUE(again.has_value());
  EXPECT_FALSE(pool->Descriptor(*again).flags & kFrameZeroed);
  pool->Free(*again, Order{0});
  ExpectWhole(*pool);
}

}  // namespace
}  // namespace uvmem::internal
