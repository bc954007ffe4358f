// Tests of SlabCache: objects against a reference model over several configurations,
// thread slabs and cross-thread frees, the partial-list reserve, NUMA placement on a
// synthetic two-node topology, statistics and slabinfo, and destruction.
#include "frame_pool_test_util.h"
#include "slab/slab_cache.h"

#include <absl/random/random.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <barrier>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "platform/numa_topology.h"

namespace uvmem::internal {
namespace {

using testing::ExpectWhole;
using testing::kMiB;
using testing::MakePool;




std::unique_ptr<SlabCache> MakeCache(FramePool* pool, std::string_view name, std::size_t size,
                                     std::size_t align = 0, SlabCacheOptions options = {}) {
  auto cache = SlabCache::Create(pool, name, size, align, options);
  EXPECT_TRUE(cache.ok()) << cache.status();
  return cache.ok() ? std::move(*cache) : nullptr;
}

// The object lies in a slab of `cache`: its frame's descriptor names the cache and a
// slab, whichever frame of the slab block it is in.
void ExpectInSlabOf(const SlabCache& cache, const void* object) {
  FramePool& pool = cache.pool();
  const std::optional<FrameNumber> frame = pool.FrameOf(object);
  ASSERT_TRUE(frame.has_value());
  const FrameDescriptor& d = pool.Descriptor(*frame);
  EXPECT_EQ(d.owner, cache.frame_owner());
  EXPECT_NE(d.private_data, 0u);
  const std::optional<FrameNumber> last =
      pool.FrameOf(static_cast<const char*>(object) + cache.object_size_bytes() - 1);
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(pool.Descriptor(*last).private_data, d.private_data) << "object spans two slabs";
}

// Pins the calling thread to `cpu`; false when the process may not run there.
bool PinToCpu(int cpu) {
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0 || !CPU_ISSET(cpu, &allowed)) {
    return false;
  }
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof(set), &set) == 0;
}

bool CanUseCpus(int a, int b) {
  cpu_set_t allowed;
  return sched_getaffinity(0, sizeof(allowed), &allowed) == 0 && CPU_ISSET(a, &allowed) &&
         CPU_ISSET(b, &allowed);
}

TEST(SlabCacheTest, CreateRejectsBadArguments) {
  auto pool = MakePool(NumaTopology::Detect(), 4 * kMiB);
  ASSERT_NE(pool, nullptr);
  auto code = [&](std::string_view name, std::size_t size, std::size_t align) {
    return SlabCache::Create(pool.get(), name, size, align).status().code();
  };
  EXPECT_EQ(code("zero", 0, 8), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code("align3", 64, 3), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code("align8k", 64, 8192), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code("huge", Order{kMaxOrder}.bytes() + 1, 8), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code("", 64, 8), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(std::string(40, 'x'), 64, 8), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SlabCache::Create(nullptr, "nopool", 64).status().code(),
            absl::StatusCode::kInvalidArgument);
  const absl::Status status = SlabCache::Create(pool.get(), "named", 0).status();
  EXPECT_NE(std::string(status.message()).find("named"), std::string::npos) << status;
  ExpectWhole(*pool);
}

TEST(SlabCacheTest, NoFramesUntilFirstAllocationAndAllBackAfterDestroy) {
  auto pool = MakePool(NumaTopology::Detect(), 4 * kMiB);
  ASSERT_NE(pool, nullptr);
  auto cache = MakeCache(pool.get(), "lazy", 64);
  ExpectWhole(*pool);
  void* p = cache->Allocate();
  ASSERT_NE(p, nullptr);
  ExpectInSlabOf(*cache, p);
  const SlabCacheStats s = cache->Stats();
  EXPECT_EQ(s.total_slabs, 1u);
  EXPECT_EQ(s.active_objects, 1u);
  EXPECT_EQ(s.nodes[0].active_slabs, 1u);
  EXPECT_EQ(s.nodes[0].descriptor_frames, 1u);
  cache->Free(p);
  cache->Free(nullptr);  // ignored
  cache.reset();
  ExpectWhole(*pool);
}

TEST(SlabCacheTest, TailFramesOfAMultiFrameSlabPointToTheSlab) {
  auto pool = MakePool(NumaTopology::Detect(), 4 * kMiB);
  ASSERT_NE(pool, nullptr);
  auto cache = MakeCache(pool.get(), "order2", 1024);
  ASSERT_GT(cache->layout().order.value, 0);
  std::vector<void*> objects;
  for (std::uint32_t i = 0; i < cache->layout().objects_per_slab; ++i) {
    objects.push_back(cache->Allocate());
  }
  const FrameNumber head = *pool->FrameOf(objects[0]);
  for (void* p : objects) {
    ExpectInSlabOf(*cache, p);
    const FrameNumber f = *pool->FrameOf(p);
    EXPECT_LT(f.value - head.value, cache->layout().frames_per_slab());
    EXPECT_EQ(pool->Descriptor(f).private_data, pool->Descriptor(head).private_data);
  }
  for (void* p : objects) cache->Free(p);
  cache.reset();
  ExpectWhole(*pool);
}

// ---- randomized operations against a reference model -------------------------------

struct Config {
  const char* name;
  std::size_t size;
  std::size_t align;
  bool debug;
  bool with_constructor;
};

std::atomic<std::uint64_t> constructed{0};
void Construct(void* object) {
  std::memset(object, 0xc7, 8);
  constructed.fetch_add(1, std::memory_order_relaxed);
}

class SlabCacheModelTest : public ::testing::TestWithParam<Config> {};

TEST_P(SlabCacheModelTest, RandomizedAllocFreeAgainstModel) {
  const Config& config = GetParam();
  auto pool = MakePool(NumaTopology::Detect(), 32 * kMiB);
  ASSERT_NE(pool, nullptr);
  SlabCacheOptions options;
  options.debug = config.debug;
  options.min_partial_slabs = 1;  // exercise slab frees
  if (config.with_constructor) options.constructor = Construct;
  auto cache = MakeCache(pool.get(), config.name, config.size, config.align, options);
  ASSERT_NE(cache, nullptr);
  const std::size_t align = cache->layout().alignment_bytes;
  const std::size_t fill = std::min<std::size_t>(config.size, 64);
  absl::BitGen bits(std::seed_seq{11});
  std::map<std::uintptr_t, std::uint8_t> live;  // object -> fill byte
  std::uint64_t peak_slabs = 0;
  const int steps = 12000;
  for (int step = 0; step < steps; ++step) {
    // Phases: grow, shrink to empty, grow again.
    const double p_alloc = (step / 3000) % 2 == 0 ? 0.7 : 0.3;
    if (live.empty() || absl::Bernoulli(bits, p_alloc)) {
      auto* p = static_cast<unsigned char*>(cache->Allocate());
      ASSERT_NE(p, nullptr);
      const auto addr = reinterpret_cast<std::uintptr_t>(p);
      ASSERT_EQ(addr % align, 0u);
      // Distinct and not overlapping any live object.
      auto next = live.lower_bound(addr);
      ASSERT_TRUE(next == live.end() || next->first >= addr + config.size) << "overlap";
      if (next != live.begin()) {
        ASSERT_LE(std::prev(next)->first + config.size, addr) << "overlap";
      }
      ExpectInSlabOf(*cache, p);
      if (config.with_constructor) {
        ASSERT_EQ(p[0], 0xc7) << "constructed state lost";
      }
      const auto tag = static_cast<std::uint8_t>(absl::Uniform<int>(bits, 1, 255));
      std::memset(p + (config.with_constructor ? 8 : 0), tag,
                  fill - (config.with_constructor ? std::min<std::size_t>(fill, 8) : 0));
      live[addr] = tag;
    } else {
      auto it = live.begin();
      std::advance(it, absl::Uniform<long>(bits, 0, static_cast<long>(live.size())));
      auto* p = reinterpret_cast<unsigned char*>(it->first);
      for (std::size_t k = config.with_constructor ? 8 : 0; k < fill; ++k) {
        ASSERT_EQ(p[k], it->second) << "object changed while allocated";
      }
      live.erase(it);
      cache->Free(p);
    }
    if (step % 1000 == 0) {
      cache->CheckInvariants();
      const SlabCacheStats s = cache->Stats();
      EXPECT_EQ(s.active_objects, live.size());
      EXPECT_LE(live.size(), s.total_objects);
      peak_slabs = std::max(peak_slabs, s.total_slabs);
    }
  }
  for (auto& [addr, tag] : live) cache->Free(reinterpret_cast<void*>(addr));
  cache->CheckInvariants();
  const SlabCacheStats s = cache->Stats();
  EXPECT_EQ(s.active_objects, 0u);
  EXPECT_EQ(s.counters.allocs(), s.counters.frees());
  EXPECT_GT(peak_slabs, 1u);
  // Shrink flushes this thread's spares and frees every empty slab: only the active
  // slab (if any) is left.
  cache->Shrink();
  const SlabCacheStats shrunk = cache->Stats();
  EXPECT_LE(shrunk.total_slabs, 1u);
  EXPECT_GT(shrunk.counters.slab_frees, 0u);
  if (!config.debug) {
    EXPECT_GT(s.counters.alloc_fastpath, 0u);
    EXPECT_GT(s.counters.free_fastpath, 0u);
  } else {
    EXPECT_EQ(s.counters.alloc_fastpath, 0u) << "debug caches always take the node lock";
  }
  cache.reset();
  ExpectWhole(*pool);
}

INSTANTIATE_TEST_SUITE_P(
    Configs, SlabCacheModelTest,
    ::testing::Values(Config{"c8", 8, 0, false, false}, Config{"c24", 24, 8, false, false},
                      Config{"c100a32", 100, 32, false, false},
                      Config{"c1000a64", 1000, 64, false, false},
                      Config{"c4096a4k", 4096, 4096, false, false},
                      Config{"c20000", 20000, 0, false, false},
                      Config{"c48ctor", 48, 16, false, true},
                      Config{"c40debug", 40, 0, true, false},
                      Config{"c3000debug", 3000, 64, true, false},
                      Config{"c72debugctor", 72, 8, true, true}),
    [](const ::testing::TestParamInfo<Config>& info) { return std::string(info.param.name); });

TEST(SlabCacheTest, ConstructorRunsOncePerObjectWhenItsSlabIsMade) {
  auto pool = MakePool(NumaTopology::Detect(), 4 * kMiB);
  ASSERT_NE(pool, nullptr);
  SlabCacheOptions options;
  options.constructor = Construct;
  constructed = 0;
  auto cache = MakeCache(pool.get(), "ctor", 32, 0, options);
  const std::uint32_t per_slab = cache->layout().objects_per_slab;
  void* p = cache->Allocate();
  EXPECT_EQ(constructed.load(), per_slab);
  cache->Free(p);
  for (int i = 0; i < 100; ++i) cache->Free(cache->Allocate());
  EXPECT_EQ(constructed.load(), per_slab) << "not on every allocation";
  cache.reset();
  ExpectWhole(*pool);
}

TEST(SlabCacheTest, EmptySlabsBeyondTheReserveGoBackToThePool) {
  auto pool = MakePool(NumaTopology::Detect(), 8 * kMiB);
  ASSERT_NE(pool, nullptr);
  SlabCacheOptions options;
  options.min_partial_slabs = 3;
  auto cache = MakeCache(pool.get(), "reserve", 256, 0, options);
  const std::uint32_t per_slab = cache->layout().objects_per_slab;
  std::vector<void*> objects;
  for (std::uint32_t i = 0; i < 20 * per_slab; ++i) objects.push_back(cache->Allocate());
  EXPECT_EQ(cache->Stats().total_slabs, 20u);
  // Free from another thread (no active slab there): every slab becomes partial, then
  // empty; at most 3 partial slabs stay on the node.
  std::thread([&] {
    for (void* p : objects) cache->Free(p);
  }).join();
  SlabCacheStats s = cache->Stats();
  EXPECT_EQ(s.active_objects, 0u);
  EXPECT_EQ(s.nodes[0].active_slabs, 1u) << "this thread's active slab";
  EXPECT_LE(s.nodes[0].partial_slabs, 3u);
  EXPECT_EQ(s.total_slabs, s.nodes[0].partial_slabs + 1);
  EXPECT_GE(s.counters.slab_frees, 16u);
  EXPECT_GT(s.counters.free_slowpath, 0u);
  // Shrink releases the kept empty slabs (not the thread's active one).
  const std::uint64_t released = cache->Shrink();
  EXPECT_EQ(released, s.nodes[0].empty_slabs * cache->layout().frames_per_slab());
  s = cache->Stats();
  EXPECT_EQ(s.nodes[0].partial_slabs, 0u);
  EXPECT_EQ(s.total_slabs, 1u);
  cache.reset();
  ExpectWhole(*pool);
}

// Frees that miss the active slab go to the thread's spare list without a lock, up to
// its capacity; a full list is flushed to the slabs in one go; allocation drains it.
TEST(SlabCacheTest, FreesOfOtherSlabsGoToTheThreadsSpareList) {
  auto pool = MakePool(NumaTopology::Detect(), 8 * kMiB);
  ASSERT_NE(pool, nullptr);
  SlabCacheOptions options;
  options.thread_cache_objects = 40;
  options.min_partial_slabs = 0;
  auto cache = MakeCache(pool.get(), "spares", 256, 0, options);
  const std::uint32_t per_slab = cache->layout().objects_per_slab;  // 16
  std::thread([&] {
    std::vector<void*> objects;
    for (std::uint32_t i = 0; i < 4 * per_slab; ++i) objects.push_back(cache->Allocate());
    // Free the first three (full, inactive) slabs' objects: 48 frees, 40 fit.
    for (std::uint32_t i = 0; i < 3 * per_slab; ++i) cache->Free(objects[i]);
    SlabCacheStats s = cache->Stats();
    // Free 41 finds the list full: it flushes the 40 (slabs 1 and 2 become empty, 8
    // objects of slab 3 go back) and starts the list again, where the rest go too.
    EXPECT_EQ(s.counters.free_fastpath, 47u);
    EXPECT_EQ(s.counters.free_slowpath, 1u);
    EXPECT_EQ(s.counters.spare_flushes, 1u);
    // min_partial 0 sends the two empty slabs back to the pool.
    EXPECT_EQ(s.counters.slab_frees, 2u);
    EXPECT_EQ(s.active_objects, per_slab);
    // Allocation takes spares first (the last freed object first).
    void* again = cache->Allocate();
    EXPECT_EQ(again, objects[3 * per_slab - 1]);
    cache->Free(again);
    for (std::uint32_t i = 3 * per_slab; i < 4 * per_slab; ++i) cache->Free(objects[i]);
  }).join();
  const SlabCacheStats s = cache->Stats();
  EXPECT_EQ(s.active_objects, 0u);
  EXPECT_EQ(s.total_slabs, 0u) << "thread exit flushed spares and slab; min_partial 0";
  EXPECT_EQ(s.counters.allocs(), s.counters.frees());
  cache.reset();
  ExpectWhole(*pool);
}

TEST(SlabCacheTest, SpareListsCanBeTurnedOff) {
  auto pool = MakePool(NumaTopology::Detect(), 8 * kMiB);
  ASSERT_NE(pool, nullptr);
  SlabCacheOptions options;
  options.thread_cache_objects = 0;
  auto cache = MakeCache(pool.get(), "nospares", 256, 0, options);
  EXPECT_EQ(SlabCache::Create(pool.get(), "bad", 64, 0, {.thread_cache_objects = -2})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<void*> objects;
  for (int i = 0; i < 64; ++i) objects.push_back(cache->Allocate());
  for (void* p : objects) cache->Free(p);
  const SlabCacheStats s = cache->Stats();
  EXPECT_EQ(s.counters.free_slowpath, 48u) << "three inactive slabs' objects";
  EXPECT_EQ(s.counters.free_fastpath, 16u) << "the active slab's";
  EXPECT_EQ(s.counters.spare_flushes, 0u);
  cache.reset();
  ExpectWhole(*pool);
}

TEST(SlabCacheTest, ExhaustedPoolGivesNullptrAndRecovers) {
  auto pool = MakePool(NumaTopology::Detect(), 4 * kMiB);
  ASSERT_NE(pool, nullptr);
  auto cache = MakeCache(pool.get(), "exhaust", 2048);
  std::vector<void*> objects;
  while (void* p = cache->Allocate()) objects.push_back(p);
  EXPECT_FALSE(objects.empty());
  EXPECT_EQ(cache->Allocate(), nullptr);
  SlabCacheStats s = cache->Stats();
  EXPECT_GE(s.counters.failed_allocs, 2u);
  EXPECT_EQ(s.active_objects, objects.size());
  for (void* p : objects) cache->Free(p);
  void* again = cache->Allocate();
  EXPECT_NE(again, nullptr);
  cache->Free(again);
  cache.reset();
  ExpectWhole(*pool);
}

TEST(SlabCacheTest, ThreadExitHandsTheActiveSlabBack) {
  auto pool = MakePool(NumaTopology::Detect(), 4 * kMiB);
  ASSERT_NE(pool, nullptr);
  auto cache = MakeCache(pool.get(), "exit", 128);
  void* kept = nullptr;
  std::thread([&] {
    kept = cache->Allocate();
    for (int i = 0; i < 10; ++i) cache->Free(cache->Allocate());
  }).join();
  SlabCacheStats s = cache->Stats();
  EXPECT_EQ(s.nodes[0].active_slabs, 0u) << "flushed at thread exit";
  EXPECT_EQ(s.nodes[0].partial_slabs, 1u);
  EXPECT_EQ(s.active_objects, 1u);
  EXPECT_EQ(s.counters.alloc_fastpath, 10u) << "fast-path counts survive the thread";
  EXPECT_EQ(s.counters.free_fastpath, 10u);
  cache->Free(kept);  // a thread that never allocated: slow path, no state created
  EXPECT_EQ(cache->Stats().active_objects, 0u);
  cache.reset();
  ExpectWhole(*pool);
}

TEST(SlabCacheTest, ManyCachesUpToTheLimit) {
  auto pool = MakePool(NumaTopology::Detect(), 4 * kMiB);
  ASSERT_NE(pool, nullptr);
  std::vector<std::unique_ptr<SlabCache>> caches;
  absl::Status last;
  for (int i = 0; i <= kMaxSlabCaches; ++i) {
    auto cache = SlabCache::Create(pool.get(), "many", 16);
    if (!cache.ok()) {
      last = cache.status();
      break;
    }
    caches.push_back(std::move(*cache));
  }
  EXPECT_EQ(last.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_LE(caches.size(), static_cast<std::size_t>(kMaxSlabCaches));
  // Ids are recycled: drop one, create one; objects of a recycled id start clean.
  void* p = caches.back()->Allocate();
  caches.back()->Free(p);
  caches.pop_back();
  auto again = SlabCache::Create(pool.get(), "again", 32);
  ASSERT_TRUE(again.ok()) << again.status();
  void* q = (*again)->Allocate();
  ExpectInSlabOf(**again, q);
  (*again)->Free(q);
  again->reset();
  caches.clear();
  ExpectWhole(*pool);
}

TEST(SlabCacheTest, SlabInfoShowsOneLinePerCache) {
  auto pool = MakePool(NumaTopology::Detect(), 4 * kMiB);
  ASSERT_NE(pool, nullptr);
  auto a = MakeCache(pool.get(), "range_desc", 96);
  auto b = MakeCache(pool.get(), "pte_page", 4096, 4096);
  std::vector<void*> objects;
  for (int i = 0; i < 50; ++i) objects.push_back(a->Allocate());
  void* page = b->Allocate();
  const std::vector<SlabCacheStats> stats = {a->Stats(), b->Stats()};
  EXPECT_EQ(stats[0].active_objects, 50u);
  EXPECT_EQ(stats[0].objects_per_slab, 42u);  // 4096 / 96, order 0
  EXPECT_EQ(stats[0].total_objects, 84u);     // two slabs
  const std::string text = FormatSlabInfo(stats);
  EXPECT_EQ(text.rfind("slabinfo - version: 2.1\n", 0), 0u) << text;
  EXPECT_NE(text.find("range_desc            50     84     96   42    1 : tunables"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("pte_page               1      8   4096    8    8"), std::string::npos)
      << text;
  for (void* p : objects) a->Free(p);
  b->Free(page);
  a.reset();
  b.reset();
  ExpectWhole(*pool);
}

// ---- threads ---------------------------------------------------------------------------

// Threads allocate, keep some, and pass others through a shared queue to be freed by
// whichever thread pops them: frees land in other threads' active slabs, in partial
// and in full slabs. Each object carries its allocator's tag until it is freed.
TEST(SlabCacheThreadTest, CrossThreadFreesUnderStress) {
  auto pool = MakePool(NumaTopology::Detect(), 32 * kMiB);
  ASSERT_NE(pool, nullptr);
  SlabCacheOptions options;
  options.min_partial_slabs = 2;
  auto cache = MakeCache(pool.get(), "xthread", 64, 0, options);
  constexpr int kThreads = 4;
  constexpr int kRounds = 20000;
  std::mutex queue_mu;
  std::deque<std::uint64_t*> queue;
  std::barrier start(kThreads);
  std::atomic<int> corrupt{0};
  std::atomic<int> failed{0};
  auto check = [&](std::uint64_t* p) {
    if (p[1] != (p[0] ^ 0x5a5a5a5a5a5a5a5aULL) ||
        p[2] != reinterpret_cast<std::uintptr_t>(p)) {
      corrupt.fetch_add(1);
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      absl::BitGen bits(std::seed_seq{t + 100});
      std::vector<std::uint64_t*> mine;
      start.arrive_and_wait();
      for (int i = 0; i < kRounds; ++i) {
        const int action = absl::Uniform(bits, 0, 4);
        if (action <= 1) {
          auto* p = static_cast<std::uint64_t*>(cache->Allocate());
          if (p == nullptr) {
            failed.fetch_add(1);
            continue;
          }
          p[0] = (static_cast<std::uint64_t>(t) << 32) | static_cast<std::uint64_t>(i);
          p[1] = p[0] ^ 0x5a5a5a5a5a5a5a5aULL;
          p[2] = reinterpret_cast<std::uintptr_t>(p);
          if (action == 0 && mine.size() < 500) {
            mine.push_back(p);
          } else {
            std::lock_guard<std::mutex> lock(queue_mu);
            queue.push_back(p);
          }
        } else if (action == 2 && !mine.empty()) {
          const std::size_t k = absl::Uniform<std::size_t>(bits, 0, mine.size());
          check(mine[k]);
          cache->Free(mine[k]);
          mine[k] = mine.back();
          mine.pop_back();
        } else {
          std::uint64_t* p = nullptr;
          {
            std::lock_guard<std::mutex> lock(queue_mu);
            if (!queue.empty()) {
              p = queue.front();
              queue.pop_front();
            }
          }
          if (p != nullptr) {
            check(p);
            cache->Free(p);
          }
        }
      }
      for (std::uint64_t* p : mine) {
        check(p);
        cache->Free(p);
      }
    });
  }
  for (auto& th : threads) th.join();
  for (std::uint64_t* p : queue) {
    check(p);
    cache->Free(p);
  }
  EXPECT_EQ(corrupt.load(), 0);
  EXPECT_EQ(failed.load(), 0);
  cache->CheckInvariants();
  const SlabCacheStats s = cache->Stats();
  EXPECT_EQ(s.active_objects, 0u);
  EXPECT_EQ(s.nodes[0].active_slabs, 0u) << "every worker's slab was flushed at exit";
  EXPECT_GT(s.counters.free_slowpath, 0u);
  EXPECT_GT(s.counters.alloc_fastpath, 0u);
  cache.reset();
  ExpectWhole(*pool);
}

// A cache destroyed while other threads still have it in their slots (but no longer
// use it) flushes those slots; a later cache reusing the id starts clean in them.
TEST(SlabCacheThreadTest, DestroyFlushesLiveThreadsSlots) {
  auto pool = MakePool(NumaTopology::Detect(), 8 * kMiB);
  ASSERT_NE(pool, nullptr);
  auto cache = MakeCache(pool.get(), "flushme", 512);
  std::mutex mu;
  std::condition_variable cv;
  int phase = 0;
  std::thread worker([&] {
    void* p = cache->Allocate();  // the worker now has an active slab
    cache->Free(p);
    {
      std::unique_lock<std::mutex> lock(mu);
      phase = 1;
      cv.notify_all();
      cv.wait(lock, [&] { return phase == 2; });
    }
    // A new cache, probably with the recycled id: its slot must not see old state.
    void* q = cache->Allocate();
    ExpectInSlabOf(*cache, q);
    cache->Free(q);
  });
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return phase == 1; });
    EXPECT_EQ(cache->Stats().nodes[0].active_slabs, 1u);
    cache.reset();  // the worker's slot is flushed here
    ExpectWhole(*pool);
    cache = MakeCache(pool.get(), "second", 512);
    phase = 2;
    cv.notify_all();
  }
  worker.join();
  cache.reset();
  ExpectWhole(*pool);
}

// ---- NUMA (synthetic two-node topology: CPU 0 on node 0, CPU 1 on node 1) ----------------

TEST(SlabCacheNumaTest, NamedNodeAllocationsLiveThereAndFreesGoBackThere) {
  auto pool = MakePool(NumaTopology::TwoNodeForTest(), 8 * kMiB);
  ASSERT_NE(pool, nullptr);
  auto cache = MakeCache(pool.get(), "numa", 200);
  std::thread([&] {
    const bool pinned = PinToCpu(0);  // this thread is "on node 0" when pinned
    std::vector<void*> on1;
    for (int i = 0; i < 100; ++i) {
      void* p = cache->Allocate(NodeId{1});
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(pool->NodeOf(*pool->FrameOf(p)), NodeId{1});
      ExpectInSlabOf(*cache, p);
      on1.push_back(p);
    }
    SlabCacheStats s = cache->Stats();
    const std::uint32_t per_slab = cache->layout().objects_per_slab;
    EXPECT_EQ(s.nodes[1].slabs, (100 + per_slab - 1) / per_slab);
    EXPECT_EQ(s.nodes[0].slabs, 0u);
    for (void* p : on1) cache->Free(p);
    s = cache->Stats();
    EXPECT_EQ(s.active_objects, 0u);
    EXPECT_EQ(s.nodes[0].slabs, 0u) << "freed objects stay with their node-1 slabs";
    EXPECT_EQ(s.nodes[1].partial_free_objects, s.nodes[1].partial_slabs * per_slab);
    EXPECT_EQ(s.counters.free_slowpath, 100u);
    if (pinned) {
      EXPECT_EQ(s.counters.remote_frees, 100u);
    }
    // Unnamed allocations come from the calling CPU's node.
    void* local = cache->Allocate();
    if (pinned) {
      EXPECT_EQ(pool->NodeOf(*pool->FrameOf(local)), NodeId{0});
    }
    cache->Free(local);
  }).join();
  cache.reset();
  ExpectWhole(*pool);
}

// A thread on node 1 allocates; a thread on node 0 frees. Objects go back to the slabs
// they came from, on node 1, counted as remote frees.
TEST(SlabCacheNumaTest, RemoteFreesReturnToTheOwningNodesSlabs) {
  if (!CanUseCpus(0, 1)) GTEST_SKIP() << "needs CPUs 0 and 1";
  auto pool = MakePool(NumaTopology::TwoNodeForTest(), 8 * kMiB);
  ASSERT_NE(pool, nullptr);
  SlabCacheOptions options;
  options.min_partial_slabs = 100;  // keep empty slabs, to look at them
  auto cache = MakeCache(pool.get(), "remote", 128, 0, options);
  const std::uint32_t per_slab = cache->layout().objects_per_slab;
  std::vector<void*> objects;
  std::thread([&] {
    ASSERT_TRUE(PinToCpu(1));
    for (std::uint32_t i = 0; i < 3 * per_slab; ++i) objects.push_back(cache->Allocate());
  }).join();
  for (void* p : objects) EXPECT_EQ(pool->NodeOf(*pool->FrameOf(p)), NodeId{1});
  std::thread([&] {
    ASSERT_TRUE(PinToCpu(0));
    cache->Free(cache->Allocate());  // this thread now has a slab and a spare list
    for (void* p : objects) cache->Free(p);
    // Spare lists take only objects of their own node: all went back to node 1.
    EXPECT_EQ(cache->Stats().nodes[1].empty_slabs, 3u);
  }).join();
  const SlabCacheStats s = cache->Stats();
  EXPECT_EQ(s.counters.remote_frees, objects.size());
  EXPECT_EQ(s.nodes[0].slabs, 1u) << "the freeing thread's own slab";
  EXPECT_EQ(s.nodes[1].slabs, 3u);
  EXPECT_EQ(s.nodes[1].partial_slabs, 3u);
  EXPECT_EQ(s.nodes[1].empty_slabs, 3u);
  EXPECT_EQ(s.active_objects, 0u);
  cache->CheckInvariants();
  cache.reset();
  ExpectWhole(*pool);
}

// Threads on both nodes allocate locally and free each other's objects.
TEST(SlabCacheNumaTest, TwoNodeCrossFreesUnderStress) {
  if (!CanUseCpus(0, 1)) GTEST_SKIP() << "needs CPUs 0 and 1";
  auto pool = MakePool(NumaTopology::TwoNodeForTest(), 16 * kMiB);
  ASSERT_NE(pool, nullptr);
  auto cache = MakeCache(pool.get(), "numa_stress", 48);
  std::mutex mu;
  std::vector<void*> handoff[2];  // objects allocated on node i, to be freed by the other
  std::barrier start(2);
  std::atomic<int> misplaced{0};
  std::vector<std::thread> threads;
  for (int node = 0; node < 2; ++node) {
    threads.emplace_back([&, node] {
      ASSERT_TRUE(PinToCpu(node));
      start.arrive_and_wait();
      for (int i = 0; i < 20000; ++i) {
        void* p = cache->Allocate();
        if (pool->NodeOf(*pool->FrameOf(p)) != NodeId{node}) misplaced.fetch_add(1);
        std::vector<void*> theirs;
        {
          std::lock_guard<std::mutex> lock(mu);
          handoff[node].push_back(p);
          if (handoff[1 - node].size() >= 64) theirs.swap(handoff[1 - node]);
        }
        for (void* q : theirs) cache->Free(q);
      }
    });
  }
  for (auto& th : threads) th.join();
  for (auto& list : handoff) {
    for (void* p : list) cache->Free(p);
  }
  EXPECT_EQ(misplaced.load(), 0);
  const SlabCacheStats s = cache->Stats();
  EXPECT_EQ(s.active_objects, 0u);
  EXPECT_GT(s.counters.remote_frees, 0u);
  EXPECT_GT(s.nodes[0].slabs + s.nodes[1].slabs, 0u);
  cache->CheckInvariants();
  cache.reset();
  ExpectWhole(*pool);
}

// ---- misuse ------------------------------------------------------------------------------

class SlabCacheDeathTest : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(SlabCacheDeathTest, DestroyWithLiveObjectsIsFatal) {
  auto pool = MakePool(NumaTopology::Detect(), 4 * kMiB);
  auto cache = MakeCache(pool.get(), "leaky", 64);
  void* p = cache->Allocate();
  (void)p;
  EXPECT_DEATH(cache.reset(), "slab cache 'leaky': destroyed with 1 objects remaining");
  cache->Free(p);
}

TEST_F(SlabCacheDeathTest, ImmediateDoubleFreeIsFatalWithoutDebug) {
  auto pool = MakePool(NumaTopology::Detect(), 4 * kMiB);
  auto cache = MakeCache(pool.get(), "dfree", 64);
  void* p = cache->Allocate();
  cache->Free(p);
  EXPECT_DEATH(cache->Free(p), "slab cache 'dfree': double free of object");
}

// Without debug, the slow path still checks a pointer (the fast path only for pointers
// in the caller's active slab): free from a thread that has no active slab.
TEST_F(SlabCacheDeathTest, ForeignPointersAreFatalOnTheSlowPath) {
  auto pool = MakePool(NumaTopology::Detect(), 4 * kMiB);
  auto cache = MakeCache(pool.get(), "plain", 64);
  auto other = MakeCache(pool.get(), "other", 64);
  char* p = static_cast<char*>(cache->Allocate());
  void* q = other->Allocate();
  int on_stack = 0;
  auto free_elsewhere = [&](void* ptr) { std::thread([&] { cache->Free(ptr); }).join(); };
  EXPECT_DEATH(free_elsewhere(&on_stack), "'plain': free of .*outside the frame pool");
  EXPECT_DEATH(free_elsewhere(p + 8), "'plain': free of .*pointer into the middle of an object");
  EXPECT_DEATH(free_elsewhere(q), "'plain': free of .*belongs to slab cache 'other'");
  const std::optional<FrameNumber> frame = pool->Allocate(Order{0}, NodeId{0});
  EXPECT_DEATH(free_elsewhere(pool->FrameAddress(*frame)), "not part of a slab");
  pool->Free(*frame, Order{0});
  cache->Free(p);
  other->Free(q);
}

}  // namespace
}  // namespace uvmem::internal
