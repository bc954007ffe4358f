// Placement on real NUMA nodes, checked page by page with move_pages(2). On a one-node
// machine the tests that need several nodes skip (saying so); the QEMU guest
// (tests/numa_guest/run_numa_guest.sh: 2 nodes, and 4 with a distance matrix) runs them
// all and fails if any skips. Every test runs each fill path the kernel has: COPY
// always, MOVE where UFFDIO_MOVE exists (not in the 6.1 guest).
#include <gtest/gtest.h>
#include <numaif.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "platform/kernel_info.h"
#include "platform/numa_topology.h"
#include "uvmem/runtime.h"
#include "uvmem/uvmem.h"

// Sanitizers install their own SIGBUS handler; the bind test needs the signal to kill
// the child as it does in production.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
extern "C" const char* __asan_default_options() { return "handle_sigbus=0"; }
extern "C" const char* __tsan_default_options() { return "handle_sigbus=0"; }
#endif

#ifndef MPOL_F_STATIC_NODES
#define MPOL_F_STATIC_NODES (1 << 15)  // <linux/mempolicy.h>; numaif.h lacks it
#endif

namespace uvmem {
namespace {

using internal::NumaTopology;
constexpr std::size_t kMiB = std::size_t{1} << 20;
constexpr std::size_t kPage = 4096;

const NumaTopology& Topology() {
  static const NumaTopology topology = NumaTopology::Detect();
  return topology;
}
int Nodes() { return Topology().num_nodes(); }
NodeId Node(int index) { return Topology().node_id(index); }

#define REQUIRE_NODES(n)                                                                   \
  if (Nodes() < (n))                                                                       \
  GTEST_SKIP() << "needs " << (n) << " NUMA nodes; this machine has " << Nodes()          \
               << " (tests/numa_guest/run_numa_guest.sh boots a guest that has them)"

// The node of each page of [p, p + bytes), or a negative errno for a page not present.
std::vector<int> NodesOfPages(const void* p, std::size_t bytes) {
  std::vector<void*> pages;
  for (std::size_t off = 0; off < bytes; off += kPage) {
    pages.push_back(const_cast<char*>(static_cast<const char*>(p)) + off);
  }
  std::vector<int> status(pages.size(), -1);
  EXPECT_EQ(move_pages(0, pages.size(), pages.data(), nullptr, status.data(), 0), 0)
      << std::strerror(errno);
  return status;
}

// As NodesOfPages, for memory the kernel's automatic NUMA balancing may scan (local
// ranges have no VMA policy, like the kernel's own local memory): a page it has just
// made PROT_NONE to sample accesses answers -ENOENT until touched, so such pages are read
// once and asked again (at most 3 rounds). Ranges with a VMA policy are exempt from
// balancing and are checked strictly.
std::vector<int> NodesOfPagesUnderBalancing(const void* p, std::size_t bytes) {
  std::vector<int> status = NodesOfPages(p, bytes);
  for (int round = 0; round < 3; ++round) {
    bool again = false;
    for (std::size_t i = 0; i < status.size(); ++i) {
      if (status[i] == -ENOENT) {
        (void)*static_cast<const volatile char*>(static_cast<const char*>(p) + i * kPage);
        again = true;
      }
    }
    if (!again) break;
    status = NodesOfPages(p, bytes);
  }
  return status;
}

std::map<int, std::size_t> CountByNode(const std::vector<int>& status) {
  std::map<int, std::size_t> counts;
  for (int s : status) ++counts[s];
  return counts;
}

// Pages of the runtime's own slabs (page tables, range descriptors), from the
// /proc/slabinfo-format table in RuntimeStats: sum of <num_slabs> * <pagesperslab>, plus
// one frame per cache for its slab descriptors (slab_cache.cc keeps them in frames of
// their own, which slabinfo does not show; one holds 60+). They come from the same pool,
// so per-node used_frames = range pages + these.
std::uint64_t SlabPages(const RuntimeStats& stats) {
  std::uint64_t pages = 0;
  std::size_t at = 0;
  while (at < stats.slabinfo.size()) {
    std::size_t end = stats.slabinfo.find('\n', at);
    if (end == std::string::npos) end = stats.slabinfo.size();
    const std::string line = stats.slabinfo.substr(at, end - at);
    at = end + 1;
    unsigned long active = 0, total = 0, size = 0, per_slab = 0, pages_per_slab = 0;
    unsigned long limit = 0, batch = 0, shared = 0, active_slabs = 0, num_slabs = 0;
    char name[64];
    if (std::sscanf(line.c_str(),
                    "%63s %lu %lu %lu %lu %lu : tunables %lu %lu %lu : slabdata %lu %lu", name,
                    &active, &total, &size, &per_slab, &pages_per_slab, &limit, &batch, &shared,
                    &active_slabs, &num_slabs) == 11) {
      pages += num_slabs * pages_per_slab + (num_slabs > 0 ? 1 : 0);
    }
  }
  return pages;
}

// Runs `fn` on a thread pinned to the CPUs of node `index` (dense index).
void OnNode(int index, const std::function<void()>& fn) {
  std::thread t([&] {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int cpu : Topology().cpus_of(index)) CPU_SET(cpu, &set);
    ASSERT_EQ(sched_setaffinity(0, sizeof(set), &set), 0) << std::strerror(errno);
    sched_yield();  // now running on one of them
    fn();
  });
  t.join();
}

// The fill paths this kernel has: COPY always, MOVE with UFFDIO_MOVE (6.8+).
std::vector<bool> FillPaths() {
  static const std::vector<bool> paths = [] {
    std::vector<bool> p = {false};
    auto probe = Runtime::Create({.pool_bytes_total = 8 * kMiB});
    if (probe.ok() && (*probe)->uses_move()) p.push_back(true);
    return p;
  }();
  return paths;
}
const char* PathName(bool move) { return move ? "MOVE" : "COPY"; }

std::unique_ptr<Runtime> MakeRuntime(bool move, std::size_t pool_per_node = 32 * kMiB) {
  auto runtime = Runtime::Create({.pool_bytes_per_node = pool_per_node, .use_move = move});
  EXPECT_TRUE(runtime.ok()) << runtime.status();
  if (runtime.ok()) {
    EXPECT_EQ((*runtime)->uses_move(), move);
  }
  return runtime.ok() ? std::move(*runtime) : nullptr;
}

// A range of `bytes` under `policy`, written by a thread on node `toucher` (so a policy
// that ignored the node it names would show the toucher's node instead).
std::vector<int> PlaceAndLook(Runtime& runtime, const NumaPolicy& policy, std::size_t bytes,
                              int toucher, Range* keep = nullptr) {
  auto range = runtime.Reserve(bytes, {.name = "placed", .numa = policy});
  EXPECT_TRUE(range.ok()) << range.status();
  if (!range.ok()) return {};
  std::vector<int> nodes;
  OnNode(toucher, [&] {
    std::memset(range->data(), 0x5a, bytes);
    nodes = policy.kind == NumaPolicy::Kind::kLocal
                ? NodesOfPagesUnderBalancing(range->data(), bytes)
                : NodesOfPages(range->data(), bytes);
  });
  if (keep != nullptr) *keep = std::move(*range);
  return nodes;
}

// Bind, and preferred while its node has frames: every page on the node named, though a
// thread on another node writes them all.
TEST(NumaPlacement, BindAndPreferredPutEveryPageOnTheirNode) {
  REQUIRE_NODES(2);
  for (bool move : FillPaths()) {
    auto runtime = MakeRuntime(move);
    ASSERT_NE(runtime, nullptr);
    for (int i = 0; i < Nodes(); ++i) {
      const int toucher = (i + 1) % Nodes();
      for (const NumaPolicy& policy : {NumaPolicy::Bind(Node(i)), NumaPolicy::Preferred(Node(i))}) {
        const auto counts = CountByNode(PlaceAndLook(*runtime, policy, 4 * kMiB, toucher));
        EXPECT_EQ(counts, (std::map<int, std::size_t>{{Node(i).value, 1024}}))
            << PathName(move) << ": " << (policy.kind == NumaPolicy::Kind::kBind ? "bind" : "preferred")
            << " node " << Node(i).value << ", written from node " << Node(toucher).value;
      }
    }
  }
}

// Page p of an interleaved range lives on nodes[(range start / 4 KiB + p) % nodes] (the
// kernel's interleave_nid for anonymous memory; before Linux 6.7 of the low 32 bits of
// that page number), so each node holds its share within one page — here over an odd
// number of pages, which cannot split evenly, and over 3 nodes where there are 4 (the
// 32-bit rule shows only with a node count that is not a power of two).
TEST(NumaPlacement, InterleaveSpreadsPagesByPageNumberWithinOnePage) {
  REQUIRE_NODES(2);
  std::vector<std::vector<NodeId>> sets;
  std::vector<NodeId> all;
  for (int i = 0; i < Nodes(); ++i) all.push_back(Node(i));
  sets.push_back(all);
  sets.push_back({Node(0), Node(Nodes() - 1)});
  if (Nodes() > 2) sets.push_back({Node(1), Node(2), Node(3 % Nodes())});
  constexpr std::size_t kPages = 1023;
  for (bool move : FillPaths()) {
    auto runtime = MakeRuntime(move);
    ASSERT_NE(runtime, nullptr);
    for (const auto& set : sets) {
      Range range;
      const std::vector<int> nodes =
          PlaceAndLook(*runtime, NumaPolicy::Interleave(set), kPages * kPage, 0, &range);
      ASSERT_EQ(nodes.size(), kPages);
      const std::uintptr_t first = reinterpret_cast<std::uintptr_t>(range.data()) / kPage;
      const bool low32 = internal::KernelInterleaveUses32BitOffset();
      std::map<int, std::size_t> counts;
      for (std::size_t p = 0; p < kPages; ++p) {
        const std::uint64_t index = low32 ? static_cast<std::uint32_t>(first + p) : first + p;
        ASSERT_EQ(nodes[p], set[index % set.size()].value)
            << PathName(move) << ": page " << p << " of a range interleaved over "
            << set.size() << " nodes";
        ++counts[nodes[p]];
      }
      ASSERT_EQ(counts.size(), set.size());
      const auto [lo, hi] = std::minmax_element(
          counts.begin(), counts.end(), [](auto& a, auto& b) { return a.second < b.second; });
      EXPECT_LE(hi->second - lo->second, 1u) << PathName(move);
    }
  }
}

// Local: the node of the CPU the faulting thread runs on — not the fault thread's.
TEST(NumaPlacement, LocalFollowsTheFaultingThread) {
  REQUIRE_NODES(2);
  for (bool move : FillPaths()) {
    auto runtime = MakeRuntime(move);
    ASSERT_NE(runtime, nullptr);
    for (int i = 0; i < Nodes(); ++i) {
      const auto counts = CountByNode(PlaceAndLook(*runtime, NumaPolicy::Local(), 4 * kMiB, i));
      EXPECT_EQ(counts, (std::map<int, std::size_t>{{Node(i).value, 1024}}))
          << PathName(move) << ": written from node " << Node(i).value;
    }
  }
}

// Populate fills on the calling thread: a local range's pages land on the caller's node
// even though the caller's own policy says otherwise (here: interleave over every node,
// with MPOL_F_STATIC_NODES), and that policy — mode, flags and mask — comes back as it was.
TEST(NumaPlacement, PopulateOnTheCallerPlacesAndRestoresItsPolicy) {
  REQUIRE_NODES(2);
  for (bool move : FillPaths()) {
    auto runtime = MakeRuntime(move);
    ASSERT_NE(runtime, nullptr);
    const int caller = Nodes() - 1;
    auto range = runtime->Reserve(2 * kMiB, {.name = "populated", .numa = NumaPolicy::Local()});
    ASSERT_TRUE(range.ok()) << range.status();
    OnNode(caller, [&] {
      unsigned long mask[16] = {};
      for (int i = 0; i < Nodes(); ++i) mask[Node(i).value / 64] |= 1UL << (Node(i).value % 64);
      ASSERT_EQ(set_mempolicy(MPOL_INTERLEAVE | MPOL_F_STATIC_NODES, mask, 1025), 0)
          << std::strerror(errno);
      int before = -1, after = -1;
      unsigned long before_mask[16] = {}, after_mask[16] = {};
      ASSERT_EQ(get_mempolicy(&before, before_mask, 1024, nullptr, 0), 0);
      ASSERT_TRUE(range->Populate(0, 2 * kMiB).ok());
      ASSERT_EQ(get_mempolicy(&after, after_mask, 1024, nullptr, 0), 0);
      EXPECT_EQ(after, before) << "Populate left the caller's policy mode changed";
      EXPECT_EQ(std::memcmp(after_mask, before_mask, sizeof(after_mask)), 0)
          << "Populate left the caller's node mask changed";
      (void)set_mempolicy(MPOL_DEFAULT, nullptr, 0);
    });
    EXPECT_EQ(CountByNode(NodesOfPagesUnderBalancing(range->data(), 2 * kMiB)),
              (std::map<int, std::size_t>{{Node(caller).value, 512}}))
        << PathName(move);
  }
}

TEST(NumaPlacement, MallocOnNodePutsTheBlockOnTheNode) {
  REQUIRE_NODES(2);
  for (int i = 0; i < Nodes(); ++i) {
    constexpr std::size_t kBytes = 2 * kMiB;
    auto* p = static_cast<char*>(uvmem_malloc_onnode(kBytes, Node(i).value));
    ASSERT_NE(p, nullptr);
    OnNode((i + 1) % Nodes(), [&] { std::memset(p, 1, kBytes); });
    const std::uintptr_t first = (reinterpret_cast<std::uintptr_t>(p) + kPage - 1) & ~(kPage - 1);
    const std::size_t whole = (reinterpret_cast<std::uintptr_t>(p) + kBytes - first) / kPage;
    const auto counts = CountByNode(NodesOfPages(reinterpret_cast<void*>(first), whole * kPage));
    EXPECT_EQ(counts, (std::map<int, std::size_t>{{Node(i).value, whole}}))
        << "uvmem_malloc_onnode(" << kBytes << ", " << Node(i).value << ")";
    uvmem_free(p);
  }
}

// A node whose frames are used up: a preferred range continues on the nearest node by
// distance (in the 4-node guest node 1's nearest is node 2, not node 0), nowhere else;
// and the runtime's per-node statistics agree with where move_pages finds the pages.
TEST(NumaPlacement, AnExhaustedNodeFallsBackToTheNearestAndStatsAgree) {
  REQUIRE_NODES(2);
  const int home = 1;
  const int nearest = Topology().FallbackOrder(home)[1];
  constexpr std::size_t kPoolPerNode = 8 * kMiB;  // 2048 frames a node
  constexpr std::size_t kBytes = 12 * kMiB;       // 3072 pages: more than one node has
  for (bool move : FillPaths()) {
    auto runtime = MakeRuntime(move, kPoolPerNode);
    ASSERT_NE(runtime, nullptr);
    const RuntimeStats before = runtime->Stats();
    Range range;
    const auto counts = CountByNode(
        PlaceAndLook(*runtime, NumaPolicy::Preferred(Node(home)), kBytes, 0, &range));
    const RuntimeStats after = runtime->Stats();
    std::size_t on_home = counts.count(Node(home).value) ? counts.at(Node(home).value) : 0;
    std::size_t on_nearest =
        counts.count(Node(nearest).value) ? counts.at(Node(nearest).value) : 0;
    EXPECT_GE(on_home, 1536u) << PathName(move) << ": the preferred node was not used up first";
    EXPECT_EQ(on_home + on_nearest, kBytes / kPage)
        << PathName(move) << ": pages landed beyond node " << Node(nearest).value
        << ", the nearest to node " << Node(home).value;
    // used_frames counts range pages and the runtime's own slabs (page tables): allow the
    // slab pages that were added.
    const std::uint64_t metadata_pages = SlabPages(after) - SlabPages(before);
    ASSERT_GT(SlabPages(after), 0u) << "no slab table in RuntimeStats:\n" << after.slabinfo;
    for (int i = 0; i < Nodes(); ++i) {
      const std::uint64_t used = after.nodes[i].used_frames - before.nodes[i].used_frames;
      const std::uint64_t found = counts.count(Node(i).value) ? counts.at(Node(i).value) : 0;
      EXPECT_LE(found, used) << PathName(move) << ": node " << Node(i).value;
      EXPECT_LE(used - std::min(used, found), metadata_pages)
          << PathName(move) << ": node " << Node(i).value << " statistics say " << used
          << " frames more in use, move_pages finds " << found << " pages there";
    }
  }
}

// Per-node statistics against move_pages over an interleaved and a bound range.
TEST(NumaPlacement, PerNodeStatisticsAgreeWithMovePages) {
  REQUIRE_NODES(2);
  for (bool move : FillPaths()) {
    auto runtime = MakeRuntime(move);
    ASSERT_NE(runtime, nullptr);
    const RuntimeStats before = runtime->Stats();
    std::vector<NodeId> all;
    for (int i = 0; i < Nodes(); ++i) all.push_back(Node(i));
    Range a, b;
    auto counts = CountByNode(PlaceAndLook(*runtime, NumaPolicy::Interleave(all), 8 * kMiB, 0, &a));
    for (auto [node, n] : CountByNode(
             PlaceAndLook(*runtime, NumaPolicy::Bind(Node(Nodes() - 1)), 2 * kMiB, 0, &b))) {
      counts[node] += n;
    }
    const RuntimeStats after = runtime->Stats();
    const std::uint64_t metadata_pages = SlabPages(after) - SlabPages(before);
    ASSERT_GT(SlabPages(after), 0u) << "no slab table in RuntimeStats:\n" << after.slabinfo;
    for (int i = 0; i < Nodes(); ++i) {
      const std::uint64_t used = after.nodes[i].used_frames - before.nodes[i].used_frames;
      const std::uint64_t found = counts[Node(i).value];
      EXPECT_GE(used, found) << PathName(move) << ": node " << Node(i).value;
      EXPECT_LE(used - found, metadata_pages) << PathName(move) << ": node " << Node(i).value;
    }
  }
}

// Reads one counter of /proc/vmstat (0 when missing).
std::uint64_t VmStat(const char* name) {
  FILE* f = std::fopen("/proc/vmstat", "r");
  if (f == nullptr) return 0;
  char key[64];
  unsigned long long value = 0;
  std::uint64_t out = 0;
  while (std::fscanf(f, "%63s %llu", key, &value) == 2) {
    if (std::strcmp(key, name) == 0) out = value;
  }
  std::fclose(f);
  return out;
}

// Placement must hold over time, not just after the first touch: khugepaged (THP
// "always" collapses full 2 MiB stretches into huge pages on a node of its choosing) and
// NUMA balancing (which migrates pages toward the threads that use them) both work in
// the background. uvmem ranges are MADV_NOHUGEPAGE and carry an mbind policy, so
// neither may touch them. The guest makes khugepaged scan every 10 ms
// (tests/numa_guest/guest_init.sh); here the test waits 3 s while a thread on another
// node keeps reading the pages, then looks again.
TEST(NumaPlacement, PlacementHoldsWhileKhugepagedAndNumaBalancingRun) {
  REQUIRE_NODES(2);
  auto runtime = MakeRuntime(FillPaths().back());
  ASSERT_NE(runtime, nullptr);
  std::vector<NodeId> all;
  for (int i = 0; i < Nodes(); ++i) all.push_back(Node(i));
  const NodeId far = Node(Nodes() - 1);
  Range interleaved, bound;
  const auto il = CountByNode(
      PlaceAndLook(*runtime, NumaPolicy::Interleave(all), 8 * kMiB, 0, &interleaved));
  const auto bd = CountByNode(PlaceAndLook(*runtime, NumaPolicy::Bind(far), 4 * kMiB, 0, &bound));
  const std::uint64_t collapses = VmStat("thp_collapse_alloc");
  OnNode(0, [&] {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    volatile char sink = 0;
    while (std::chrono::steady_clock::now() < until) {
      for (std::size_t off = 0; off < 8 * kMiB; off += kPage) {
        sink = sink + static_cast<const char*>(interleaved.data())[off];
      }
      for (std::size_t off = 0; off < 4 * kMiB; off += kPage) {
        sink = sink + static_cast<const char*>(bound.data())[off];
      }
    }
  });
  EXPECT_EQ(CountByNode(NodesOfPages(interleaved.data(), 8 * kMiB)), il);
  EXPECT_EQ(CountByNode(NodesOfPages(bound.data(), 4 * kMiB)), bd);
  EXPECT_EQ(bd, (std::map<int, std::size_t>{{far.value, 1024}}));
  std::printf("khugepaged collapsed %llu huge pages elsewhere meanwhile\n",
              static_cast<unsigned long long>(VmStat("thp_collapse_alloc") - collapses));
}

// Bind never falls back: with the node's frames gone, the faulting thread gets SIGBUS
// (preferred, above, moves on instead).
TEST(NumaPlacementDeathTest, BindOnAFullNodeIsSigbus) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const NodeId target = Node(Nodes() - 1);
  EXPECT_EXIT(
      {
        auto runtime = Runtime::Create({.pool_bytes_per_node = 4 * kMiB, .use_move = false});
        if (!runtime.ok()) std::_Exit(3);
        auto range = (*runtime)->Reserve(16 * kMiB, {.numa = NumaPolicy::Bind(target)});
        if (!range.ok()) std::_Exit(4);
        std::memset(range->data(), 1, 16 * kMiB);
        std::_Exit(0);
      },
      ::testing::KilledBySignal(SIGBUS), "");
}

// `uvmem run --numa POLICY -- program`: a program that knows nothing of uvmem gets its
// heap where the policy says.
struct ProbeResult {
  bool ran = false;
  bool uvmem_heap = false;
  std::size_t pages = 0;
  std::map<int, std::size_t> per_node;
  std::string output;
};

// The preload is not built to be preloaded in sanitizer builds (an instrumented .so
// cannot go into an uninstrumented program): those builds skip the `uvmem run` tests.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define REQUIRE_PRELOAD() GTEST_SKIP() << "uvmem run is tested in the Release build"
#else
#define REQUIRE_PRELOAD() (void)0
#endif

ProbeResult RunProbe(const std::string& numa) {
  namespace fs = std::filesystem;
  const fs::path self = fs::read_symlink("/proc/self/exe").parent_path();
  const fs::path uvmem = self / ".." / "tools" / "uvmem";
  const fs::path probe = self / "numa_probe";
  const std::string command =
      "'" + uvmem.string() + "' run --numa " + numa + " -- '" + probe.string() + "' 16 2>&1";
  ProbeResult r;
  FILE* f = popen(command.c_str(), "r");
  if (f == nullptr) return r;
  char line[256];
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    r.output += line;
    int node = 0;
    std::size_t count = 0;
    char heap[8] = {};
    int blocks = 0;
    if (std::sscanf(line, "numa_probe: blocks=%d pages=%zu uvmem_heap=%7s", &blocks, &r.pages,
                    heap) == 3) {
      r.uvmem_heap = std::string(heap) == "yes";
    } else if (std::sscanf(line, "node %d: %zu", &node, &count) == 2) {
      r.per_node[node] = count;
    }
  }
  r.ran = pclose(f) == 0;
  return r;
}

TEST(NumaPlacement, UvmemRunBindPutsAProgramsHeapOnTheNode) {
  REQUIRE_PRELOAD();
  for (int i = 0; i < Nodes(); ++i) {
    const ProbeResult r = RunProbe("bind:" + std::to_string(Node(i).value));
    ASSERT_TRUE(r.ran) << r.output;
    EXPECT_TRUE(r.uvmem_heap) << r.output;
    EXPECT_EQ(r.per_node, (std::map<int, std::size_t>{{Node(i).value, r.pages}})) << r.output;
  }
}

TEST(NumaPlacement, UvmemRunInterleaveSpreadsAProgramsHeap) {
  REQUIRE_NODES(2);
  REQUIRE_PRELOAD();
  std::string nodes;
  for (int i = 0; i < Nodes(); ++i) nodes += (i ? "," : "") + std::to_string(Node(i).value);
  const ProbeResult r = RunProbe("interleave:" + nodes);
  ASSERT_TRUE(r.ran) << r.output;
  EXPECT_TRUE(r.uvmem_heap) << r.output;
  ASSERT_EQ(r.per_node.size(), static_cast<std::size_t>(Nodes())) << r.output;
  // 16 blocks of whole pages, each balanced within a page.
  for (const auto& [node, count] : r.per_node) {
    const double share = static_cast<double>(r.pages) / Nodes();
    EXPECT_LE(std::abs(static_cast<double>(count) - share), 16.0)
        << "node " << node << "\n" << r.output;
  }
}

}  // namespace
}  // namespace uvmem
