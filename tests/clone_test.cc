// Copy-on-write clones (Range::Clone): isolation both ways under concurrent random writes,
// writes racing the Clone call, chains of clones released in any order, frame and swap
// accounting after release, clones under swap pressure and of swapped-out ranges (and of
// pages whose swap slot is older than their bytes), the sharing statistics, a forked child
// of a process holding clones, one side released while threads fault on the other, and the
// edges (empty and one-page ranges, released handles, Discard and Populate on shared
// stretches, MADV_DONTNEED behind the runtime's back). Several run with and without a
// resident budget (swap).
//
// Every check compares bytes against shadow copies (std::vector<uint8_t> per range) page by
// page; a mismatch names the range, the first wrong page and byte, how many pages are
// wrong, how many of them read as zeros and how many hold the other side's bytes.
#include "uvmem/runtime.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

namespace uvmem {
namespace {

constexpr std::size_t kPage = kPageSize;
constexpr std::size_t kMiB = std::size_t{1} << 20;
using Shadow = std::vector<std::uint8_t>;

// ---------------------------------------------------------------------------------------
// Helpers

std::uint64_t Mix(std::uint64_t x) {  // splitmix64's finalizer
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Writes page `page` of the shadow with a pattern of (seed, page) — wrong data, a page of
// another range or another version cannot pass — and copies it into the range.
void WritePage(void* range_data, Shadow& shadow, std::size_t page, std::uint64_t seed) {
  auto* words = reinterpret_cast<std::uint64_t*>(shadow.data() + page * kPage);
  for (std::size_t w = 0; w < kPage / 8; ++w) {
    words[w] = Mix(seed * 0x100000001b3ull ^ (page << 20) ^ w);
  }
  std::memcpy(static_cast<std::uint8_t*>(range_data) + page * kPage, words, kPage);
}

// Writes every page p of the range with pred(p).
void WritePages(void* data, Shadow& shadow, std::uint64_t seed,
                const std::function<bool(std::size_t)>& pred) {
  for (std::size_t p = 0; p < shadow.size() / kPage; ++p) {
    if (pred(p)) WritePage(data, shadow, p, seed);
  }
}

bool AllZero(const std::uint8_t* bytes, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    if (bytes[i] != 0) return false;
  }
  return true;
}

// Empty when the pages p of `data` with pred(p) hold `want`; else a description of what
// is wrong. `other`: the other side's shadow, to say whether wrong pages hold its bytes
// (isolation broken) rather than zeros or garbage.
std::string DiffPages(const void* data, const Shadow& want, const Shadow* other,
                      const std::function<bool(std::size_t)>& pred) {
  const auto* got = static_cast<const std::uint8_t*>(data);
  const std::size_t pages = want.size() / kPage;
  std::size_t wrong = 0, zeros = 0, others = 0, first = pages;
  for (std::size_t p = 0; p < pages; ++p) {
    if (!pred(p)) continue;
    const std::uint8_t* g = got + p * kPage;
    const std::uint8_t* w = want.data() + p * kPage;
    if (std::memcmp(g, w, kPage) == 0) continue;
    ++wrong;
    if (first == pages) first = p;
    if (AllZero(g, kPage)) ++zeros;
    if (other != nullptr && std::memcmp(g, other->data() + p * kPage, kPage) == 0) ++others;
  }
  if (wrong == 0) return "";
  const std::uint8_t* g = got + first * kPage;
  const std::uint8_t* w = want.data() + first * kPage;
  std::size_t byte = 0;
  while (byte < kPage && g[byte] == w[byte]) ++byte;
  char buf[512];
  std::snprintf(buf, sizeof(buf),
                "%zu of %zu pages wrong (%zu read as zeros, %zu hold the other range's "
                "bytes); first: page %zu, byte %zu: got 0x%02x, want 0x%02x (want page "
                "all zero: %d)",
                wrong, pages, zeros, others, first, byte, byte < kPage ? g[byte] : 0,
                byte < kPage ? w[byte] : 0, AllZero(w, kPage) ? 1 : 0);
  return buf;
}

std::string Diff(const void* data, const Shadow& want, const Shadow* other = nullptr) {
  return DiffPages(data, want, other, [](std::size_t) { return true; });
}

// Clones under a budget are opted into (RuntimeOptions::clones_with_budget); the option is
// ignored without one.
std::unique_ptr<Runtime> MakeRuntime(RuntimeOptions options = {.pool_bytes_total = 256 * kMiB}) {
  options.clones_with_budget = true;
  auto runtime = Runtime::Create(options);
  EXPECT_TRUE(runtime.ok()) << runtime.status();
  return runtime.ok() ? std::move(*runtime) : nullptr;
}

struct NodeFrames {
  std::uint64_t free = 0, used = 0;
  bool operator==(const NodeFrames&) const = default;
};
std::vector<NodeFrames> Frames(const Runtime& runtime) {
  std::vector<NodeFrames> out;
  for (const auto& n : runtime.Stats().nodes) out.push_back({n.free_frames, n.used_frames});
  return out;
}
std::string Describe(const std::vector<NodeFrames>& frames) {
  std::string s;
  for (std::size_t i = 0; i < frames.size(); ++i) {
    s += "node " + std::to_string(i) + ": free " + std::to_string(frames[i].free) + " used " +
         std::to_string(frames[i].used) + "; ";
  }
  return s;
}

// Frames held by the runtime's slab caches: the sum over the slabinfo lines of
// <num_slabs> × <pagesperslab>.
std::uint64_t SlabFrames(const std::string& slabinfo) {
  std::istringstream in(slabinfo);
  std::string line;
  std::uint64_t frames = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#' || line.rfind("slabinfo", 0) == 0) continue;
    std::istringstream f(line);
    std::string name, colon, word;
    std::uint64_t active = 0, total = 0, size = 0, per_slab = 0, pages = 0;
    f >> name >> active >> total >> size >> per_slab >> pages;
    std::uint64_t num_slabs = 0, active_slabs = 0;
    while (f >> word) {
      if (word == "slabdata") {
        f >> active_slabs >> num_slabs;
        break;
      }
    }
    frames += num_slabs * pages;
  }
  return frames;
}

// After every range is released: nothing is shared, resident or in swap.
void ExpectNothingLeft(const Runtime& runtime) {
  const RuntimeStats s = runtime.Stats();
  EXPECT_EQ(s.ranges, 0u);
  EXPECT_EQ(s.resident_pages, 0u);
  EXPECT_EQ(s.clone.shared_frames, 0u);
  EXPECT_EQ(s.clone.shared_pages, 0u);
  EXPECT_EQ(s.clone.shared_swap_slots, 0u);
  EXPECT_EQ(s.clone.bytes_saved, 0u);
  EXPECT_EQ(s.swap.slots_used, 0u);
}

#define ASSERT_RESERVE(var, runtime, bytes, name_str)                  \
  auto var##_or = (runtime)->Reserve((bytes), {.name = (name_str)});  \
  ASSERT_TRUE(var##_or.ok()) << var##_or.status();                   \
  Range var = std::move(*var##_or)

#define ASSERT_CLONE(var, source)                                      \
  auto var##_or = (source).Clone();                                    \
  ASSERT_TRUE(var##_or.ok()) << "Clone: " << var##_or.status();        \
  Range var = std::move(*var##_or)

// A hang in the fault path (a thread waiting for a fault nobody serves) would stall the
// whole binary until ctest's timeout: each test gets a watchdog that names it and aborts.
class CloneTest : public ::testing::Test {
 protected:
#if defined(UVMEM_SANITIZER_BUILD)
  static constexpr int kWatchdogSeconds = 480;
#else
  static constexpr int kWatchdogSeconds = 150;
#endif
  void SetUp() override {
    name_ = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    watchdog_ = std::thread([this] {
      std::unique_lock lock(mu_);
      started_ = true;
      cv_.notify_all();
      if (!cv_.wait_for(lock, std::chrono::seconds(kWatchdogSeconds), [this] { return done_; })) {
        std::fprintf(stderr,
                     "WATCHDOG: test %s still running after %d s: a hang (a fault never "
                     "served, a lost wake-up?); aborting\n",
                     name_.c_str(), kWatchdogSeconds);
        std::fflush(stderr);
        std::abort();
      }
    });
    // Tests fork: a thread still starting (inside the sanitizer's allocator, under its
    // lock) at the fork would leave that lock held forever in the child.
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return started_; });
  }
  void TearDown() override { StopWatchdog(); }
  ~CloneTest() override { StopWatchdog(); }
  void StopWatchdog() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    if (watchdog_.joinable()) watchdog_.join();
  }

 private:
  std::string name_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  bool started_ = false;
  std::thread watchdog_;
};

// Records the first few problems seen by worker threads (gtest assertions are for the
// main thread).
class Problems {
 public:
  void Add(std::string what) {
    count_.fetch_add(1);
    std::lock_guard lock(mu_);
    if (first_.size() < 5) first_.push_back(std::move(what));
  }
  int count() const { return count_.load(); }
  std::string Summary() const {
    std::lock_guard lock(mu_);
    std::string s = std::to_string(count_.load()) + " problems; first:";
    for (const auto& f : first_) s += "\n  " + f;
    return s;
  }

 private:
  std::atomic<int> count_{0};
  mutable std::mutex mu_;
  std::vector<std::string> first_;
};

// Random writes (and whole-page checks) by `threads` threads, two sides: thread t works
// on side t % 2 (0 = `a`, 1 = `b`) and owns the pages p with p % (threads / 2) == t / 2 of
// its side, so no two threads write one page. Clone-side threads may first read
// `reads_first` random pages of their own before writing anything.
void RandomWritesBothSides(void* a, Shadow& shadow_a, void* b, Shadow& shadow_b, int threads,
                           int writes_per_thread, int reads_first, std::uint64_t seed,
                           Problems& problems) {
  const std::size_t pages = shadow_a.size() / kPage;
  const std::size_t per_side = threads / 2;
  std::barrier start(threads);
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      const bool side_b = t % 2 == 1;
      auto* data = static_cast<std::uint8_t*>(side_b ? b : a);
      Shadow& shadow = side_b ? shadow_b : shadow_a;
      const std::size_t lane = t / 2;
      std::mt19937_64 rng(seed * 1000 + t);
      auto own_page = [&] { return (rng() % (pages / per_side)) * per_side + lane; };
      auto check = [&](std::size_t page, const char* when) {
        if (std::memcmp(data + page * kPage, shadow.data() + page * kPage, kPage) != 0) {
          problems.Add(std::string(side_b ? "clone" : "source") + " page " +
                       std::to_string(page) + " wrong " + when + " (thread " +
                       std::to_string(t) + ")");
        }
      };
      start.arrive_and_wait();
      if (side_b) {
        for (int i = 0; i < reads_first; ++i) check(own_page(), "on a read before any write");
      }
      std::uint8_t buf[64];
      for (int i = 0; i < writes_per_thread; ++i) {
        const std::size_t page = own_page();
        if (rng() % 8 == 0) check(page, "on a check between writes");
        const std::size_t len = 1 + rng() % 64;
        const std::size_t off = page * kPage + rng() % (kPage - len + 1);
        for (std::size_t j = 0; j < len; ++j) buf[j] = static_cast<std::uint8_t>(rng());
        std::memcpy(shadow.data() + off, buf, len);
        std::memcpy(data + off, buf, len);
      }
    });
  }
  for (auto& w : workers) w.join();
}

// ---------------------------------------------------------------------------------------
// 1. Isolation both ways

// Param: the range's fault-around window (0: the runtime's 64 pages; 1: every copy is
// one page, so the two sides fault on the same shared pages far more often).
class CloneIsolationTest : public CloneTest, public ::testing::WithParamInterface<std::size_t> {};

TEST_P(CloneIsolationTest, IsolationBothWaysUnderRandomWritesFromFourThreads) {
  auto runtime = MakeRuntime();
  ASSERT_NE(runtime, nullptr);
  constexpr std::size_t kPages = 4096;  // 16 MiB
  auto source_or = runtime->Reserve(
      kPages * kPage, {.name = "iso", .fault_around_pages = GetParam(), .readahead_pages = 0});
  ASSERT_TRUE(source_or.ok()) << source_or.status();
  Range source = std::move(*source_or);
  Shadow shadow_s(kPages * kPage, 0);
  // Every eighth page is never touched before the clone: it is zero on both sides.
  WritePages(source.data(), shadow_s, 1, [](std::size_t p) { return p % 8 != 7; });
  ASSERT_CLONE(clone, source);
  Shadow shadow_c = shadow_s;
  EXPECT_EQ(clone.size(), source.size());
  EXPECT_NE(clone.data(), source.data());
  Problems problems;
  RandomWritesBothSides(source.data(), shadow_s, clone.data(), shadow_c, 4, 20000,
                        /*reads_first=*/500, /*seed=*/1, problems);
  EXPECT_EQ(problems.count(), 0) << problems.Summary();
  EXPECT_EQ(Diff(source.data(), shadow_s, &shadow_c), "") << "source";
  EXPECT_EQ(Diff(clone.data(), shadow_c, &shadow_s), "") << "clone";
  // Again, now that every page of both sides has been touched.
  RandomWritesBothSides(source.data(), shadow_s, clone.data(), shadow_c, 4, 5000, 0, 2,
                        problems);
  EXPECT_EQ(problems.count(), 0) << problems.Summary();
  EXPECT_EQ(Diff(source.data(), shadow_s, &shadow_c), "") << "source, second round";
  EXPECT_EQ(Diff(clone.data(), shadow_c, &shadow_s), "") << "clone, second round";
  ASSERT_TRUE(clone.Release().ok());
  ASSERT_TRUE(source.Release().ok());
  ExpectNothingLeft(*runtime);
}

INSTANTIATE_TEST_SUITE_P(Windows, CloneIsolationTest, ::testing::Values(0, 1),
                         [](const auto& info) {
                           return info.param == 0 ? std::string("FaultAround64")
                                                  : std::string("OnePageWindows");
                         });

// The clone reads everything (in order, then at random) before anyone writes; then each
// side writes and the other does not see it.
TEST_F(CloneTest, CloneReadsBeforeWritesThenEachSideWritesAlone) {
  auto runtime = MakeRuntime();
  ASSERT_NE(runtime, nullptr);
  constexpr std::size_t kPages = 2048;
  ASSERT_RESERVE(source, runtime, kPages * kPage, "rbw");
  Shadow shadow_s(kPages * kPage, 0);
  WritePages(source.data(), shadow_s, 3, [](std::size_t p) { return p % 5 != 0; });
  ASSERT_CLONE(seq, source);
  ASSERT_CLONE(rnd, source);
  const Shadow at_clone = shadow_s;
  EXPECT_EQ(Diff(seq.data(), at_clone), "") << "sequential read of a fresh clone";
  std::vector<std::size_t> order(kPages);
  for (std::size_t p = 0; p < kPages; ++p) order[p] = p;
  std::shuffle(order.begin(), order.end(), std::mt19937_64(5));
  const auto* r = static_cast<const std::uint8_t*>(rnd.data());
  std::size_t random_wrong = 0;
  for (std::size_t p : order) {
    if (std::memcmp(r + p * kPage, at_clone.data() + p * kPage, kPage) != 0) ++random_wrong;
  }
  EXPECT_EQ(random_wrong, 0u) << "random-order read of a fresh clone";
  // The source writes: neither clone sees it.
  WritePages(source.data(), shadow_s, 4, [](std::size_t p) { return p % 3 == 0; });
  EXPECT_EQ(Diff(seq.data(), at_clone, &shadow_s), "");
  EXPECT_EQ(Diff(rnd.data(), at_clone, &shadow_s), "");
  // A clone writes: the source and the other clone do not see it.
  Shadow shadow_seq = at_clone;
  WritePages(seq.data(), shadow_seq, 5, [](std::size_t p) { return p % 2 == 0; });
  EXPECT_EQ(Diff(source.data(), shadow_s, &shadow_seq), "");
  EXPECT_EQ(Diff(rnd.data(), at_clone, &shadow_seq), "");
  EXPECT_EQ(Diff(seq.data(), shadow_seq), "");
}

// A range the program split into several VMAs (madvise flags differ per stretch): every
// userfaultfd request that spans a boundary must be retried per VMA — fills, the clone's
// write-protection and the un-protect of a written window (before Linux 6.5 one
// UFFDIO_WRITEPROTECT must lie in one VMA: the 6.1 guest kernel) — or a writer would
// fault forever. Bytes stay right on both sides and every frame comes back.
TEST_F(CloneTest, ARangeSplitIntoSeveralVmasClonesAndWritesAsOne) {
  auto runtime = MakeRuntime();
  ASSERT_NE(runtime, nullptr);
  constexpr std::size_t kPages = 2048;
  {
    ASSERT_RESERVE(source, runtime, kPages * kPage, "split");
    auto* base = static_cast<char*>(source.data());
    ASSERT_EQ(madvise(base + 500 * kPage, 400 * kPage, MADV_RANDOM), 0);
    ASSERT_EQ(madvise(base + 1500 * kPage, 33 * kPage, MADV_SEQUENTIAL), 0);
    Shadow shadow_s(kPages * kPage, 0);
    WritePages(source.data(), shadow_s, 7, [](std::size_t) { return true; });
    ASSERT_CLONE(clone, source);
    const Shadow at_clone = shadow_s;
    WritePages(source.data(), shadow_s, 8, [](std::size_t p) { return p % 3 == 0; });
    Shadow shadow_c = at_clone;
    WritePages(clone.data(), shadow_c, 9, [](std::size_t p) { return p % 2 == 1; });
    EXPECT_EQ(Diff(source.data(), shadow_s), "");
    EXPECT_EQ(Diff(clone.data(), shadow_c), "");
  }
  ExpectNothingLeft(*runtime);
}

// Two threads clone one source at once, three times each: six independent copies.
TEST_F(CloneTest, ConcurrentClonesOfOneSource) {
  auto runtime = MakeRuntime();
  ASSERT_NE(runtime, nullptr);
  constexpr std::size_t kPages = 1024;
  ASSERT_RESERVE(source, runtime, kPages * kPage, "multi");
  Shadow shadow(kPages * kPage, 0);
  WritePages(source.data(), shadow, 6, [](std::size_t) { return true; });
  std::vector<Range> clones(6);
  std::vector<absl::Status> errors(6);
  std::barrier start(2);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      start.arrive_and_wait();
      for (int i = 0; i < 3; ++i) {
        auto c = source.Clone();
        if (c.ok()) {
          clones[t * 3 + i] = std::move(*c);
        } else {
          errors[t * 3 + i] = c.status();
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(errors[i].ok()) << errors[i];
  EXPECT_EQ(runtime->Stats().clone.clones, 6u);
  std::vector<Shadow> shadows(6, shadow);
  for (int i = 0; i < 6; ++i) {
    WritePages(clones[i].data(), shadows[i], 100 + i,
               [i](std::size_t p) { return p % 6 == static_cast<std::size_t>(i); });
  }
  for (int i = 0; i < 6; ++i) EXPECT_EQ(Diff(clones[i].data(), shadows[i]), "") << "clone " << i;
  EXPECT_EQ(Diff(source.data(), shadow), "");
}

// ---------------------------------------------------------------------------------------
// 2. Writes racing the Clone call

// Param: the resident budget (0: none; else most pages, slots included, are in swap when
// the call walks them).
class CloneRaceTest : public CloneTest, public ::testing::WithParamInterface<std::size_t> {};

TEST_P(CloneRaceTest, WritesRacingTheCloneCallLandOnTheirSide) {
  const std::size_t budget = GetParam();
  auto runtime = MakeRuntime({.pool_bytes_total = 256 * kMiB, .budget_bytes = budget});
  ASSERT_NE(runtime, nullptr);
  // 32 MiB, all resident: the call walks 8192 entries and write-protects 16 chunks of
  // 2 MiB, long enough for the writers (two: with the main thread, more than this
  // machine's two cores) to land writes while it runs. Under a budget: 16 MiB, 4 in
  // memory.
  const std::size_t kPages = budget == 0 ? 8192 : 4096;
  constexpr int kWriters = 2;
  constexpr std::size_t kSlots = 32;  // per writer, each on its own page, 1 or ½ MiB apart
  auto slot_page = [&](int w, std::size_t k) { return kPages / kSlots * k + 7 * w + 3; };
  const int kIterations = budget == 0 ? 12 : 6;
  std::uint64_t rounds_during_calls = 0;
  for (int iteration = 0; iteration < kIterations; ++iteration) {
    SCOPED_TRACE("iteration " + std::to_string(iteration));
    ASSERT_RESERVE(source, runtime, kPages * kPage, "race");
    Shadow shadow(kPages * kPage, 0);
    WritePages(source.data(), shadow, 50 + iteration, [](std::size_t p) { return p % 16 != 15; });
    const Shadow original = shadow;  // as filled, before the slots were zeroed
    auto* s = static_cast<std::uint8_t*>(source.data());
    auto slot = [&](std::uint8_t* base, int w, std::size_t k) {
      return std::atomic_ref<std::uint64_t>(
          *reinterpret_cast<std::uint64_t*>(base + slot_page(w, k) * kPage));
    };
    for (int w = 0; w < kWriters; ++w) {
      for (std::size_t k = 0; k < kSlots; ++k) {
        slot(s, w, k).store(0);
        std::memset(shadow.data() + slot_page(w, k) * kPage, 0, 8);
      }
    }
    struct Progress {
      std::atomic<std::uint64_t> started{0}, done{0};
    };
    std::vector<Progress> progress(kWriters);
    std::atomic<bool> stop{false};
    Problems lost;
    std::vector<std::thread> writers;
    for (int w = 0; w < kWriters; ++w) {
      writers.emplace_back([&, w] {
        for (std::uint64_t v = 1; !stop.load(std::memory_order_relaxed); ++v) {
          // The writer alone writes its slots: each must still hold its last value.
          for (std::size_t k = 0; k < kSlots; ++k) {
            const std::uint64_t had = slot(s, w, k).load(std::memory_order_acquire);
            if (had != v - 1) {
              lost.Add("writer " + std::to_string(w) + " slot " + std::to_string(k) +
                       " (page " + std::to_string(slot_page(w, k)) + "): wrote " +
                       std::to_string(v - 1) + ", source now holds " + std::to_string(had));
            }
          }
          progress[w].started.store(v);
          for (std::size_t k = 0; k < kSlots; ++k) {
            slot(s, w, k).store(v, std::memory_order_release);
          }
          progress[w].done.store(v);
        }
      });
    }
    auto wait_rounds = [&](const std::vector<std::uint64_t>& at_least) {
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
      for (int w = 0; w < kWriters; ++w) {
        while (progress[w].done.load() < at_least[w]) {
          if (std::chrono::steady_clock::now() > deadline) return false;
          std::this_thread::yield();
        }
      }
      return true;
    };
    const bool warmed = wait_rounds(std::vector<std::uint64_t>(kWriters, 50));
    std::vector<std::uint64_t> before(kWriters), after(kWriters);
    for (int w = 0; w < kWriters; ++w) before[w] = progress[w].done.load();
    auto clone_or = source.Clone();
    for (int w = 0; w < kWriters; ++w) after[w] = progress[w].started.load();
    // Read the clone's slots at once, while the writers go on writing the source.
    std::vector<std::vector<std::uint64_t>> seen(kWriters, std::vector<std::uint64_t>(kSlots));
    if (clone_or.ok()) {
      auto* c = static_cast<std::uint8_t*>(clone_or->data());
      for (int w = 0; w < kWriters; ++w) {
        for (std::size_t k = 0; k < kSlots; ++k) seen[w][k] = slot(c, w, k).load();
      }
    }
    for (int w = 0; w < kWriters; ++w) rounds_during_calls += after[w] - before[w];
    if (getenv("CLONE_TEST_VERBOSE")) {
      for (int w = 0; w < kWriters; ++w) {
        std::fprintf(stderr, "writer %d: done %lu before the call, started %lu at its return\n",
                     w, static_cast<unsigned long>(before[w]), static_cast<unsigned long>(after[w]));
      }
    }
    std::vector<std::uint64_t> more(kWriters);
    for (int w = 0; w < kWriters; ++w) more[w] = after[w] + 200;
    const bool went_on = wait_rounds(more);
    stop = true;
    for (auto& th : writers) th.join();
    ASSERT_TRUE(warmed) << "writers made no progress before the clone (hang?)";
    ASSERT_TRUE(clone_or.ok()) << clone_or.status();
    Range clone = std::move(*clone_or);
    EXPECT_TRUE(went_on) << "writers made no progress after the clone (hang?)";
    EXPECT_EQ(lost.count(), 0) << "writes lost on the source side: " << lost.Summary();
    auto* c = static_cast<std::uint8_t*>(clone.data());
    for (int w = 0; w < kWriters; ++w) {
      const std::uint64_t last = progress[w].done.load();
      for (std::size_t k = 0; k < kSlots; ++k) {
        // A value outside [before, after]: say whose bytes it is (the first word of which
        // page of the range as it was filled, if any).
        auto whose = [&](std::uint64_t value) {
          for (std::size_t p = 0; p < kPages; ++p) {
            std::uint64_t word;
            std::memcpy(&word, original.data() + p * kPage, 8);
            if (word == value && value != 0) {
              return " (the first word of page " + std::to_string(p) + " as filled; this slot " +
                     "is on page " + std::to_string(slot_page(w, k)) + ")";
            }
          }
          return std::string(" (no page of the range ever held it as filled)");
        };
        EXPECT_GE(seen[w][k], before[w])
            << "writer " << w << " slot " << k << ": a write finished before Clone is "
            << "missing from the clone" << whose(seen[w][k]);
        EXPECT_LE(seen[w][k], after[w])
            << "writer " << w << " slot " << k << ": the clone holds a value no write made "
            << "before Clone returned" << whose(seen[w][k]);
        EXPECT_EQ(slot(c, w, k).load(), seen[w][k])
            << "writer " << w << " slot " << k << ": the clone changed after Clone returned "
            << "(a later source write leaked into it)";
        EXPECT_EQ(slot(s, w, k).load(), last)
            << "writer " << w << " slot " << k << ": the source lost the latest write";
      }
    }
    // Every other byte of both ranges: the pattern (the slots' words as the shadow says).
    Shadow want_s = shadow, want_c = shadow;
    for (int w = 0; w < kWriters; ++w) {
      for (std::size_t k = 0; k < kSlots; ++k) {
        const std::uint64_t last = progress[w].done.load();
        std::memcpy(want_s.data() + slot_page(w, k) * kPage, &last, 8);
        std::memcpy(want_c.data() + slot_page(w, k) * kPage, &seen[w][k], 8);
      }
    }
    EXPECT_EQ(Diff(source.data(), want_s), "") << "source";
    EXPECT_EQ(Diff(clone.data(), want_c), "") << "clone";
    if (iteration % 2 == 0) {
      ASSERT_TRUE(clone.Release().ok());
      ASSERT_TRUE(source.Release().ok());
    } else {
      ASSERT_TRUE(source.Release().ok());
      ASSERT_TRUE(clone.Release().ok());
    }
  }
  ExpectNothingLeft(*runtime);
  EXPECT_EQ(runtime->Stats().clone.clones, static_cast<std::uint64_t>(kIterations));
  // Not an assertion (scheduling decides): how much the writers raced the calls.
  RecordProperty("rounds_written_during_clone_calls", std::to_string(rounds_during_calls));
  std::printf("writer rounds begun while Clone ran, over %d calls: %lu\n", kIterations,
              static_cast<unsigned long>(rounds_during_calls));
}

INSTANTIATE_TEST_SUITE_P(Budgets, CloneRaceTest, ::testing::Values(0, 4 * kMiB),
                         [](const auto& info) {
                           return info.param == 0 ? std::string("NoBudget")
                                                  : std::string("WithSwap");
                         });

// ---------------------------------------------------------------------------------------
// 3. Chains

// Release orders of the chain A → B = clone(A) → C = clone(B) → D = clone(C), as indices.
// The second parameter: the resident budget (0: none; 4 MiB: most of the 32 MiB of the
// four levels live in swap, shared frames are evicted and slots shared along the chain).
class CloneChainTest
    : public CloneTest,
      public ::testing::WithParamInterface<std::tuple<std::vector<int>, std::size_t>> {};

TEST_P(CloneChainTest, EachLevelKeepsItsBytesWhateverIsReleasedFirst) {
  auto runtime = MakeRuntime(
      {.pool_bytes_total = 256 * kMiB, .budget_bytes = std::get<1>(GetParam())});
  ASSERT_NE(runtime, nullptr);
  constexpr std::size_t kPages = 2048;
  std::vector<Range> level(4);
  std::vector<Shadow> shadow(4, Shadow(kPages * kPage, 0));
  {
    ASSERT_RESERVE(a, runtime, kPages * kPage, "chain");
    level[0] = std::move(a);
  }
  WritePages(level[0].data(), shadow[0], 10, [](std::size_t p) { return p % 8 != 7; });
  for (int i = 1; i < 4; ++i) {
    auto c = level[i - 1].Clone();
    ASSERT_TRUE(c.ok()) << "clone of level " << i - 1 << ": " << c.status();
    level[i] = std::move(*c);
    shadow[i] = shadow[i - 1];
    // The new level writes its own pages (some of them never touched above: holes); the
    // level it came from writes others after the clone.
    WritePages(level[i].data(), shadow[i], 10 * (i + 1),
               [i](std::size_t p) { return p % 4 == static_cast<std::size_t>(i % 4) && p % 3 != 0; });
    WritePages(level[i - 1].data(), shadow[i - 1], 10 * i + 1,
               [i](std::size_t p) { return p % 16 == static_cast<std::size_t>(i + 8); });
  }
  // Every level reads a few of its pages (its own copies) before anything is released.
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(DiffPages(level[i].data(), shadow[i], nullptr,
                        [i](std::size_t p) { return p % 10 == static_cast<std::size_t>(i); }),
              "")
        << "level " << i << " before any release";
  }
  const std::vector<int>& order = std::get<0>(GetParam());
  std::vector<bool> live(4, true);
  for (std::size_t step = 0; step < order.size(); ++step) {
    const int gone = order[step];
    ASSERT_TRUE(level[gone].Release().ok()) << "level " << gone;
    live[gone] = false;
    const int remaining = static_cast<int>(std::count(live.begin(), live.end(), true));
    for (int i = 0; i < 4; ++i) {
      if (!live[i]) continue;
      // A third of the pages (a different third each step) so later steps still find pages
      // shared; everything when a level is the last one.
      auto pred = [&](std::size_t p) {
        return remaining == 1 || (p + step + i) % 3 == 0;
      };
      EXPECT_EQ(DiffPages(level[i].data(), shadow[i], nullptr, pred), "")
          << "level " << i << " after releasing level " << gone << " (step " << step << ")";
      // And writes a few more pages.
      WritePages(level[i].data(), shadow[i], 1000 + 10 * step + i,
                 [&](std::size_t p) { return (p * 7 + step + i) % 11 == 0; });
    }
    for (int i = 0; i < 4; ++i) {
      if (!live[i]) continue;
      EXPECT_EQ(DiffPages(level[i].data(), shadow[i], nullptr,
                          [&](std::size_t p) { return (p * 7 + step + i) % 11 == 0; }),
                "")
          << "level " << i << " after its writes (step " << step << ")";
    }
  }
  ExpectNothingLeft(*runtime);
}

INSTANTIATE_TEST_SUITE_P(
    Orders, CloneChainTest,
    ::testing::Combine(::testing::Values(std::vector<int>{1, 2, 0, 3},   // middle first
                                         std::vector<int>{2, 1, 3, 0},
                                         std::vector<int>{0, 3, 1, 2},   // root, then leaf
                                         std::vector<int>{3, 2, 1, 0}),  // leaf up
                       ::testing::Values(std::size_t{0}, 4 * kMiB)),
    [](const auto& info) {
      std::string name = "Release";
      for (int i : std::get<0>(info.param)) name += "ABCD"[i];
      return name + (std::get<1>(info.param) == 0 ? "" : "WithSwap");
    });

// ---------------------------------------------------------------------------------------
// 4. Release orders and frame accounting

// Source first: the clone keeps every byte, shared pages included.
void SourceFirst(Runtime& runtime) {
  constexpr std::size_t kPages = 1024;
  auto s_or = runtime.Reserve(kPages * kPage, {.name = "src-first"});
  ASSERT_TRUE(s_or.ok());
  Range source = std::move(*s_or);
  Shadow shadow_s(kPages * kPage, 0);
  WritePages(source.data(), shadow_s, 200, [](std::size_t) { return true; });
  auto c_or = source.Clone();
  ASSERT_TRUE(c_or.ok()) << c_or.status();
  Range clone = std::move(*c_or);
  Shadow shadow_c = shadow_s;
  WritePages(clone.data(), shadow_c, 201, [](std::size_t p) { return p % 5 == 0; });
  WritePages(source.data(), shadow_s, 202, [](std::size_t p) { return p % 7 == 0; });
  EXPECT_EQ(DiffPages(clone.data(), shadow_c, &shadow_s,
                      [](std::size_t p) { return p % 3 == 0; }),
            "");
  ASSERT_TRUE(source.Release().ok());
  EXPECT_EQ(Diff(clone.data(), shadow_c), "") << "clone after its source was released";
  WritePages(clone.data(), shadow_c, 203, [](std::size_t p) { return p % 2 == 0; });
  EXPECT_EQ(Diff(clone.data(), shadow_c), "");
  ASSERT_TRUE(clone.Release().ok());
}

// Clone first: the source keeps its bytes and writes on (its pages no longer shared).
void CloneFirst(Runtime& runtime) {
  constexpr std::size_t kPages = 1024;
  auto s_or = runtime.Reserve(kPages * kPage, {.name = "clone-first"});
  ASSERT_TRUE(s_or.ok());
  Range source = std::move(*s_or);
  Shadow shadow_s(kPages * kPage, 0);
  WritePages(source.data(), shadow_s, 300, [](std::size_t) { return true; });
  auto c_or = source.Clone();
  ASSERT_TRUE(c_or.ok()) << c_or.status();
  Range clone = std::move(*c_or);
  Shadow shadow_c = shadow_s;
  WritePages(clone.data(), shadow_c, 301, [](std::size_t p) { return p % 5 == 1; });
  WritePages(source.data(), shadow_s, 302, [](std::size_t p) { return p % 7 == 1; });
  ASSERT_TRUE(clone.Release().ok());
  EXPECT_EQ(Diff(source.data(), shadow_s), "") << "source after its clone was released";
  WritePages(source.data(), shadow_s, 303, [](std::size_t) { return true; });
  EXPECT_EQ(Diff(source.data(), shadow_s), "");
  ASSERT_TRUE(source.Release().ok());
}

// A source with untouched pages between touched ones, three clones (one of a clone),
// released interleaved; each remaining range keeps its bytes, holes read zero.
void Interleaved(Runtime& runtime) {
  constexpr std::size_t kPages = 1024;
  auto s_or = runtime.Reserve(kPages * kPage, {.name = "interleaved"});
  ASSERT_TRUE(s_or.ok());
  std::vector<Range> r(4);
  std::vector<Shadow> sh(4, Shadow(kPages * kPage, 0));
  r[0] = std::move(*s_or);
  WritePages(r[0].data(), sh[0], 400, [](std::size_t p) { return p % 3 != 2; });
  auto c1 = r[0].Clone();
  ASSERT_TRUE(c1.ok()) << c1.status();
  r[1] = std::move(*c1);
  sh[1] = sh[0];
  WritePages(r[0].data(), sh[0], 401, [](std::size_t p) { return p % 6 == 0; });
  auto c2 = r[0].Clone();
  ASSERT_TRUE(c2.ok()) << c2.status();
  r[2] = std::move(*c2);
  sh[2] = sh[0];
  auto c3 = r[1].Clone();
  ASSERT_TRUE(c3.ok()) << c3.status();
  r[3] = std::move(*c3);
  sh[3] = sh[1];
  WritePages(r[1].data(), sh[1], 402, [](std::size_t p) { return p % 9 == 4; });
  WritePages(r[3].data(), sh[3], 403, [](std::size_t p) { return p % 12 == 5; });  // holes too
  for (int gone : {1, 0, 3, 2}) {
    ASSERT_TRUE(r[gone].Release().ok()) << gone;
    for (int i = 0; i < 4; ++i) {
      if (!r[i].valid()) continue;
      EXPECT_EQ(DiffPages(r[i].data(), sh[i], nullptr,
                          [gone](std::size_t p) { return p % 4 == static_cast<std::size_t>(gone); }),
                "")
          << "range " << i << " after releasing " << gone;
    }
  }
}

TEST_F(CloneTest, ReleaseInAnyOrderGivesEveryFrameBack) {
  auto runtime = MakeRuntime({.pool_bytes_total = 64 * kMiB});
  ASSERT_NE(runtime, nullptr);
  const std::vector<NodeFrames> before_first_reserve = Frames(*runtime);
  const std::uint64_t slab_frames_before = SlabFrames(runtime->Stats().slabinfo);
  // The first pass warms the slab caches of page tables, range descriptors and whatever
  // clones keep (they keep a few empty slabs, as SLUB does: tests/runtime_test.cc,
  // ReleaseWithResidentPagesGivesEveryFrameBack); from then on each scenario must end
  // exactly where it began, to the frame, on every node.
  ASSERT_NO_FATAL_FAILURE(SourceFirst(*runtime));
  ASSERT_NO_FATAL_FAILURE(CloneFirst(*runtime));
  ASSERT_NO_FATAL_FAILURE(Interleaved(*runtime));
  const std::vector<NodeFrames> warm = Frames(*runtime);
  const std::uint64_t warm_slab_frames = SlabFrames(runtime->Stats().slabinfo);
  // What the first pass kept beyond the frames before the first Reserve is the slab
  // caches' kept slabs (and their off-slab descriptors, 63 to a frame): not one page.
  std::uint64_t used_before = 0, used_warm = 0;
  for (const NodeFrames& n : before_first_reserve) used_before += n.used;
  for (const NodeFrames& n : warm) used_warm += n.used;
  EXPECT_GE(used_warm, used_before);
  // Descriptor frames: one per cache (two caches) per node that has slabs.
  const std::uint64_t descriptor_frames = 2 * warm.size();
  EXPECT_LE(used_warm - used_before, warm_slab_frames - slab_frames_before + descriptor_frames)
      << "frames still used after every range was released, beyond the slab caches' kept "
      << "slabs; before the first Reserve: " << Describe(before_first_reserve)
      << " now: " << Describe(warm) << "\n" << runtime->Stats().slabinfo;
  ExpectNothingLeft(*runtime);
  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    ASSERT_NO_FATAL_FAILURE(SourceFirst(*runtime));
    EXPECT_EQ(Frames(*runtime), warm) << "source first: " << Describe(Frames(*runtime))
                                      << " want " << Describe(warm);
    ExpectNothingLeft(*runtime);
    ASSERT_NO_FATAL_FAILURE(CloneFirst(*runtime));
    EXPECT_EQ(Frames(*runtime), warm) << "clone first: " << Describe(Frames(*runtime))
                                      << " want " << Describe(warm);
    ExpectNothingLeft(*runtime);
    ASSERT_NO_FATAL_FAILURE(Interleaved(*runtime));
    EXPECT_EQ(Frames(*runtime), warm) << "interleaved: " << Describe(Frames(*runtime))
                                      << " want " << Describe(warm);
    ExpectNothingLeft(*runtime);
  }
}

// ---------------------------------------------------------------------------------------
// 5. Clones under swap pressure

TEST_F(CloneTest, ClonesUnderSwapPressureKeepEveryByte) {
  auto runtime = MakeRuntime({.pool_bytes_total = 256 * kMiB, .budget_bytes = 16 * kMiB});
  ASSERT_NE(runtime, nullptr);
  constexpr std::size_t kPages = 24 * kMiB / kPage;
  ASSERT_RESERVE(source, runtime, kPages * kPage, "swap-src");
  Shadow shadow_s(kPages * kPage, 0);
  WritePages(source.data(), shadow_s, 500, [](std::size_t p) { return p % 32 != 31; });
  ASSERT_CLONE(clone, source);
  Shadow shadow_c = shadow_s;
  Problems problems;
  RandomWritesBothSides(source.data(), shadow_s, clone.data(), shadow_c, 4, 4000,
                        /*reads_first=*/200, /*seed=*/7, problems);
  EXPECT_EQ(problems.count(), 0) << problems.Summary();
  EXPECT_EQ(Diff(source.data(), shadow_s, &shadow_c), "") << "source";
  EXPECT_EQ(Diff(clone.data(), shadow_c, &shadow_s), "") << "clone";
  EXPECT_EQ(Diff(source.data(), shadow_s, &shadow_c), "") << "source, second pass";
  const RuntimeStats s = runtime->Stats();
  EXPECT_TRUE(s.swap.enabled);
  EXPECT_GT(s.swap.pages_swapped_out, 0u);
  EXPECT_GT(s.swap.pages_swapped_in, 0u);
  EXPECT_EQ(s.swap.checksum_errors, 0u);
  EXPECT_EQ(s.swap.read_errors, 0u);
  EXPECT_LE(s.resident_pages, 16 * kMiB / kPage);
  ASSERT_TRUE(source.Release().ok());
  EXPECT_EQ(Diff(clone.data(), shadow_c), "") << "clone after the source was released";
  ASSERT_TRUE(clone.Release().ok());
  ExpectNothingLeft(*runtime);
}

TEST_F(CloneTest, CloneOfASwappedOutRangeSharesItsSlots) {
  auto runtime = MakeRuntime({.pool_bytes_total = 256 * kMiB, .budget_bytes = 8 * kMiB});
  ASSERT_NE(runtime, nullptr);
  constexpr std::size_t kBytes = 24 * kMiB;
  constexpr std::size_t kPages = kBytes / kPage;
  ASSERT_RESERVE(source, runtime, kBytes, "swapped-src");
  Shadow shadow(kPages * kPage, 0);
  WritePages(source.data(), shadow, 600, [](std::size_t) { return true; });
  ASSERT_GT(source.Stats().swapped_pages, kPages / 2) << "most of the range is in swap";
  const SwapStats before_clone = runtime->Stats().swap;
  ASSERT_CLONE(clone, source);
  const RuntimeStats after_clone = runtime->Stats();
  EXPECT_GT(after_clone.clone.shared_swap_slots, 0u) << "swapped pages share their slots";
  EXPECT_EQ(after_clone.swap.bytes_read, before_clone.bytes_read) << "cloning reads nothing";
  EXPECT_EQ(after_clone.clone.clones, 1u);
  // The clone reads its whole range: a shared slot is read once for it, not twice.
  EXPECT_EQ(Diff(clone.data(), shadow), "") << "clone of a swapped-out range";
  const SwapStats after_read = runtime->Stats().swap;
  EXPECT_GT(after_read.bytes_read, after_clone.swap.bytes_read);
  EXPECT_LT(after_read.bytes_read - after_clone.swap.bytes_read, 2 * kBytes)
      << "reading the clone once read its bytes from swap twice or more";
  EXPECT_EQ(Diff(source.data(), shadow), "") << "source";
  // Both sides write; both keep their own.
  Shadow shadow_c = shadow;
  WritePages(clone.data(), shadow_c, 601, [](std::size_t p) { return p % 3 == 0; });
  WritePages(source.data(), shadow, 602, [](std::size_t p) { return p % 4 == 0; });
  EXPECT_EQ(Diff(clone.data(), shadow_c, &shadow), "") << "clone after writes";
  EXPECT_EQ(Diff(source.data(), shadow, &shadow_c), "") << "source after writes";
  EXPECT_EQ(runtime->Stats().swap.checksum_errors, 0u);
  ASSERT_TRUE(clone.Release().ok());
  ASSERT_TRUE(source.Release().ok());
  ExpectNothingLeft(*runtime);
}

// No thread races here: pages swapped out, swapped back in by a write (so their bytes
// differ from their slot's), cloned, written by the source (the originals are preserved
// for the clone), then pushed out again by reading the rest of the range. The clone must
// read the bytes of the moment of the call, not the older ones the swap slot holds.
TEST_F(CloneTest, PreservedPagesEvictedAfterTheCloneKeepTheBytesOfTheCall) {
  auto runtime = MakeRuntime({.pool_bytes_total = 256 * kMiB, .budget_bytes = 4 * kMiB});
  ASSERT_NE(runtime, nullptr);
  constexpr std::size_t kPages = 4096;  // 16 MiB: 4× the budget
  ASSERT_RESERVE(source, runtime, kPages * kPage, "stale");
  Shadow shadow(kPages * kPage, 0);
  WritePages(source.data(), shadow, 1400, [](std::size_t) { return true; });
  auto written = [](std::size_t p) { return p % 16 == 0 && p < 1024; };  // long swapped out
  ASSERT_GT(source.Stats().swapped_pages, kPages / 2);
  const Shadow filled = shadow;
  WritePages(source.data(), shadow, 1401, written);  // swapped in by these writes
  ASSERT_CLONE(clone, source);
  const Shadow at_clone = shadow;
  WritePages(source.data(), shadow, 1402, written);  // preserves the originals
  // Read the rest of the source twice: reclaim evicts, preserved frames included.
  for (int pass = 0; pass < 2; ++pass) {
    EXPECT_EQ(Diff(source.data(), shadow), "") << "source, pass " << pass;
  }
  std::size_t as_filled = 0;
  for (std::size_t p = 0; p < kPages; ++p) {
    if (written(p) && std::memcmp(static_cast<const std::uint8_t*>(clone.data()) + p * kPage,
                                  filled.data() + p * kPage, kPage) == 0) {
      ++as_filled;
    }
  }
  EXPECT_EQ(DiffPages(clone.data(), at_clone, &shadow, written), "")
      << "the clone's pages written before the call; " << as_filled << " of them hold the "
      << "older bytes of the fill (a stale swap slot)";
  EXPECT_EQ(Diff(clone.data(), at_clone, &shadow), "") << "the whole clone";
  ASSERT_TRUE(clone.Release().ok());
  ASSERT_TRUE(source.Release().ok());
  ExpectNothingLeft(*runtime);
}

// ---------------------------------------------------------------------------------------
// 6. Statistics

TEST_F(CloneTest, SharingStatisticsCountPagesCopiesAndMoves) {
  auto runtime = MakeRuntime();
  ASSERT_NE(runtime, nullptr);
  constexpr std::size_t kPages = 2048;  // 8 MiB
  ASSERT_RESERVE(source, runtime, kPages * kPage, "stats");
  Shadow shadow(kPages * kPage, 0);
  WritePages(source.data(), shadow, 700, [](std::size_t) { return true; });
  {
    const RuntimeStats s = runtime->Stats();
    EXPECT_EQ(s.clone.clones, 0u);
    EXPECT_EQ(s.clone.shared_frames, 0u);
    EXPECT_EQ(s.clone.bytes_saved, 0u);
    EXPECT_EQ(source.Stats().shared_pages, 0u);
  }
  ASSERT_CLONE(clone, source);
  {
    const RuntimeStats s = runtime->Stats();
    EXPECT_EQ(s.clone.clones, 1u);
    EXPECT_EQ(source.Stats().shared_pages, kPages);
    EXPECT_EQ(clone.Stats().shared_pages, kPages);
    EXPECT_EQ(s.clone.shared_frames, kPages);
    EXPECT_EQ(s.clone.shared_pages, 2 * kPages);
    EXPECT_EQ(source.Stats().shared_pages + clone.Stats().shared_pages, s.clone.shared_pages);
    EXPECT_EQ(s.clone.bytes_saved, (s.clone.shared_pages - s.clone.shared_frames) * kPage);
    EXPECT_EQ(s.clone.bytes_saved, 8 * kMiB);
    EXPECT_EQ(s.clone.cow_copies_clone_side + s.clone.cow_copies_source_side, 0u);
    EXPECT_EQ(clone.Stats().name, "stats-clone");
    EXPECT_EQ(clone.Stats().length_bytes, kPages * kPage);
  }
  // The clone reads every page: each is a clone-side copy (the source still maps them).
  EXPECT_EQ(Diff(clone.data(), shadow), "");
  {
    const RuntimeStats s = runtime->Stats();
    const RangeStats c = clone.Stats();
    EXPECT_EQ(c.cow_copies, kPages);
    EXPECT_EQ(c.cow_moves, 0u);
    EXPECT_EQ(s.clone.cow_copies_clone_side, kPages);
    EXPECT_EQ(s.clone.cow_copies_source_side, 0u);
    EXPECT_EQ(c.shared_pages, 0u);
    EXPECT_EQ(source.Stats().shared_pages, 0u);
    EXPECT_EQ(source.Stats().cow_copies, 0u);
    EXPECT_EQ(s.clone.shared_frames, 0u);
    EXPECT_EQ(s.clone.bytes_saved, 0u);
    EXPECT_EQ(c.resident_pages, kPages);
  }
  ASSERT_TRUE(clone.Release().ok());
  // A second clone; now the source writes 128 pages (two aligned 64-page windows, so the
  // count is the same whether the copy is per page or per window).
  auto named = source.Clone("second");
  ASSERT_TRUE(named.ok()) << named.status();
  Range second = std::move(*named);
  EXPECT_EQ(second.Stats().name, "second");
  const Shadow at_clone = shadow;
  constexpr std::size_t kWritten = 128;
  WritePages(source.data(), shadow, 701, [](std::size_t p) { return p < kWritten; });
  {
    const RuntimeStats s = runtime->Stats();
    EXPECT_EQ(s.clone.clones, 2u);
    EXPECT_EQ(s.clone.cow_copies_source_side, kWritten) << "one preserving copy per page written";
    EXPECT_EQ(source.Stats().cow_copies, kWritten);
    EXPECT_EQ(source.Stats().shared_pages, kPages - kWritten);
    // Per range, shared_pages counts the entries still on a frame from a clone, not yet
    // copied — the preserved pages the second clone is now the last user of included
    // (include/uvmem/runtime.h); the runtime counts frames with two users or more.
    EXPECT_EQ(second.Stats().shared_pages, kPages);
    EXPECT_EQ(s.clone.shared_pages, 2 * (kPages - kWritten));
    EXPECT_EQ(s.clone.shared_frames, kPages - kWritten);
    EXPECT_EQ(s.clone.bytes_saved, (kPages - kWritten) * kPage);
  }
  // The second clone reads everything: the preserved pages are its alone (moved in where
  // the kernel can move), the rest are copies.
  EXPECT_EQ(Diff(second.data(), at_clone, &shadow), "");
  EXPECT_EQ(Diff(source.data(), shadow, &at_clone), "");
  {
    const RuntimeStats s = runtime->Stats();
    const RangeStats c = second.Stats();
    EXPECT_EQ(c.cow_copies + c.cow_moves, kPages);
    if (runtime->uses_move()) {
      EXPECT_EQ(c.cow_moves, kWritten) << "the last sharer of a preserved page receives it";
      EXPECT_EQ(s.clone.cow_moves, kWritten);
    }
    EXPECT_EQ(s.clone.cow_copies_clone_side, kPages + c.cow_copies);
    EXPECT_EQ(s.clone.shared_frames, 0u);
    EXPECT_EQ(s.clone.shared_pages, 0u);
  }
}

// ---------------------------------------------------------------------------------------
// 7. fork() of a process holding a clone

// Param: the resident budget (0: none; else pages are also in swap, shared by slot).
class CloneForkTest : public CloneTest, public ::testing::WithParamInterface<std::size_t> {};

TEST_P(CloneForkTest, AForkedChildSeesTheCloneAndTheSourceEachItsOwn) {
  const std::size_t budget = GetParam();
  auto runtime = MakeRuntime({.pool_bytes_total = 256 * kMiB, .budget_bytes = budget});
  ASSERT_NE(runtime, nullptr);
  const std::size_t kPages = (budget == 0 ? 4 : 16) * kMiB / kPage;
  ASSERT_RESERVE(source, runtime, kPages * kPage, "fork-src");
  Shadow shadow_s(kPages * kPage, 0);
  WritePages(source.data(), shadow_s, 800, [](std::size_t p) { return p % 16 != 15; });
  ASSERT_CLONE(clone, source);
  Shadow shadow_c = shadow_s;
  // Fault-around copies whole 64-page windows, so the clone touches only its first
  // quarter (writes and reads: its own copies) and the source writes only its third
  // (the originals are preserved for the clone); in the second and fourth quarters the
  // clone has touched nothing and the source still holds the shared frames.
  const std::size_t q = kPages / 4;
  WritePages(clone.data(), shadow_c, 801, [q](std::size_t p) { return p < q && p % 4 == 1; });
  EXPECT_EQ(DiffPages(clone.data(), shadow_c, &shadow_s, [q](std::size_t p) { return p < q; }),
            "");
  WritePages(source.data(), shadow_s, 802,
             [q](std::size_t p) { return p >= 2 * q && p < 3 * q && p % 4 == 2; });
  if (budget == 0) {
    EXPECT_GT(clone.Stats().shared_pages, 0u) << "the child must see shared pages";
    EXPECT_GT(runtime->Stats().clone.shared_frames, 0u) << "the child must see shared pages";
  } else {
    EXPECT_GT(runtime->Stats().swap.slots_used, 0u);
  }
  std::fflush(stderr);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    alarm(60);  // a fault nobody serves in the child kills it with SIGALRM, not a hang
    int code = 0;
    const std::string s = Diff(source.data(), shadow_s, &shadow_c);
    if (!s.empty()) {
      std::fprintf(stderr, "child: source: %s\n", s.c_str());
      code |= 1;
    }
    const std::string c = Diff(clone.data(), shadow_c, &shadow_s);
    if (!c.empty()) {
      std::fprintf(stderr, "child: clone: %s\n", c.c_str());
      code |= 2;
    }
    // The child's writes are its own (checked by the parent below).
    std::memset(clone.data(), 0xc5, clone.size());
    std::memset(source.data(), 0x5c, source.size());
    std::fflush(stderr);
    _exit(code);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "child died with signal " << WTERMSIG(status)
                                 << (WTERMSIG(status) == SIGALRM ? " (SIGALRM: a hang)" : "");
  EXPECT_EQ(WEXITSTATUS(status) & 1, 0) << "the child read wrong bytes in the source (stderr)";
  EXPECT_EQ(WEXITSTATUS(status) & 2, 0) << "the child read wrong bytes in the clone (stderr)";
  // The parent keeps its bytes and can write on both sides.
  EXPECT_EQ(Diff(source.data(), shadow_s, &shadow_c), "") << "parent's source after fork";
  EXPECT_EQ(Diff(clone.data(), shadow_c, &shadow_s), "") << "parent's clone after fork";
  WritePages(clone.data(), shadow_c, 803, [](std::size_t p) { return p % 2 == 0; });
  WritePages(source.data(), shadow_s, 804, [](std::size_t p) { return p % 3 == 0; });
  EXPECT_EQ(Diff(source.data(), shadow_s, &shadow_c), "") << "parent's source after writes";
  EXPECT_EQ(Diff(clone.data(), shadow_c, &shadow_s), "") << "parent's clone after writes";
  ASSERT_TRUE(source.Release().ok());
  ASSERT_TRUE(clone.Release().ok());
  ExpectNothingLeft(*runtime);
}

INSTANTIATE_TEST_SUITE_P(Budgets, CloneForkTest, ::testing::Values(0, 4 * kMiB),
                         [](const auto& info) {
                           return info.param == 0 ? std::string("NoBudget")
                                                  : std::string("WithSwap");
                         });

// ---------------------------------------------------------------------------------------
// 8. Edges

TEST_F(CloneTest, CloneOfAnUntouchedRangeReadsZeros) {
  auto runtime = MakeRuntime();
  ASSERT_NE(runtime, nullptr);
  constexpr std::size_t kPages = 1024;
  ASSERT_RESERVE(source, runtime, kPages * kPage, "empty");
  ASSERT_CLONE(clone, source);
  EXPECT_EQ(source.Stats().shared_pages, 0u);
  EXPECT_EQ(runtime->Stats().clone.shared_frames, 0u);
  Shadow zeros(kPages * kPage, 0);
  EXPECT_EQ(Diff(clone.data(), zeros), "");
  Shadow shadow_c = zeros;
  WritePages(clone.data(), shadow_c, 900, [](std::size_t p) { return p % 2 == 0; });
  EXPECT_EQ(Diff(source.data(), zeros, &shadow_c), "") << "the clone's writes leaked";
  Shadow shadow_s = zeros;
  WritePages(source.data(), shadow_s, 901, [](std::size_t p) { return p % 3 == 0; });
  EXPECT_EQ(Diff(clone.data(), shadow_c, &shadow_s), "");
  // A clone of the clone taken now, and one of the source.
  ASSERT_CLONE(clone2, clone);
  EXPECT_EQ(Diff(clone2.data(), shadow_c), "");
  ASSERT_CLONE(clone3, source);
  EXPECT_EQ(Diff(clone3.data(), shadow_s), "");
}

TEST_F(CloneTest, OnePageRange) {
  auto runtime = MakeRuntime();
  ASSERT_NE(runtime, nullptr);
  ASSERT_RESERVE(source, runtime, kPage, "one");
  Shadow shadow_s(kPage, 0);
  WritePage(source.data(), shadow_s, 0, 950);
  ASSERT_CLONE(clone, source);
  EXPECT_EQ(clone.size(), kPage);
  Shadow shadow_c = shadow_s;
  EXPECT_EQ(Diff(clone.data(), shadow_c), "");
  WritePage(clone.data(), shadow_c, 0, 951);
  EXPECT_EQ(Diff(source.data(), shadow_s, &shadow_c), "");
  WritePage(source.data(), shadow_s, 0, 952);
  EXPECT_EQ(Diff(clone.data(), shadow_c, &shadow_s), "");
  // The source writes before the (second) clone reads: the clone gets the original.
  ASSERT_CLONE(again, source);
  const Shadow at_clone = shadow_s;
  WritePage(source.data(), shadow_s, 0, 953);
  EXPECT_EQ(Diff(again.data(), at_clone, &shadow_s), "");
  EXPECT_EQ(Diff(source.data(), shadow_s), "");
}

TEST_F(CloneTest, CloneOfAReleasedOrMovedFromHandleIsFailedPrecondition) {
  auto runtime = MakeRuntime();
  ASSERT_NE(runtime, nullptr);
  ASSERT_RESERVE(source, runtime, 64 * kPage, "gone");
  std::memset(source.data(), 7, 64 * kPage);
  ASSERT_TRUE(source.Release().ok());
  auto after_release = source.Clone();
  ASSERT_FALSE(after_release.ok());
  EXPECT_EQ(after_release.status().code(), absl::StatusCode::kFailedPrecondition)
      << after_release.status();
  ASSERT_RESERVE(other, runtime, 64 * kPage, "moved");
  std::memset(other.data(), 9, 64 * kPage);
  Range holder = std::move(other);
  auto moved_from = other.Clone();  // NOLINT(bugprone-use-after-move): on purpose
  ASSERT_FALSE(moved_from.ok());
  EXPECT_EQ(moved_from.status().code(), absl::StatusCode::kFailedPrecondition)
      << moved_from.status();
  auto default_made = Range().Clone();
  EXPECT_EQ(default_made.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(runtime->Stats().clone.clones, 0u) << "failed clones are not counted";
  EXPECT_EQ(runtime->Stats().ranges, 1u);
  // A released clone, then its source is cloned again.
  ASSERT_CLONE(c, holder);
  ASSERT_TRUE(c.Release().ok());
  EXPECT_EQ(c.Clone().status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_CLONE(d, holder);
  EXPECT_EQ(static_cast<unsigned char*>(d.data())[5 * kPage + 5], 9);
  EXPECT_EQ(static_cast<unsigned char*>(holder.data())[5 * kPage + 5], 9);
}

// Param: the resident budget (0: none; 2 MiB: half of the range is in swap, its slots
// shared with the clone).
class CloneDiscardTest : public CloneTest, public ::testing::WithParamInterface<std::size_t> {};

TEST_P(CloneDiscardTest, DiscardOnASharedStretchLeavesTheOtherSideIntact) {
  auto runtime = MakeRuntime({.pool_bytes_total = 256 * kMiB, .budget_bytes = GetParam()});
  ASSERT_NE(runtime, nullptr);
  constexpr std::size_t kPages = 1024;
  ASSERT_RESERVE(source, runtime, kPages * kPage, "discard");
  Shadow shadow_s(kPages * kPage, 0);
  WritePages(source.data(), shadow_s, 1000, [](std::size_t) { return true; });
  ASSERT_CLONE(clone, source);
  Shadow shadow_c = shadow_s;
  // The clone has read (copied) a part of the stretch before the discard, not the rest.
  EXPECT_EQ(DiffPages(clone.data(), shadow_c, nullptr,
                      [](std::size_t p) { return p >= 300 && p < 340; }),
            "");
  // Source discards [256, 512): its stretch reads zero, the clone's keeps its bytes.
  ASSERT_TRUE(source.Discard(256 * kPage, 256 * kPage).ok());
  std::memset(shadow_s.data() + 256 * kPage, 0, 256 * kPage);
  EXPECT_EQ(Diff(clone.data(), shadow_c, &shadow_s), "") << "clone after the source's discard";
  EXPECT_EQ(Diff(source.data(), shadow_s, &shadow_c), "") << "source after its discard";
  // The clone discards [600, 700) of a stretch still shared: the source keeps its bytes.
  ASSERT_TRUE(clone.Discard(600 * kPage, 100 * kPage).ok());
  std::memset(shadow_c.data() + 600 * kPage, 0, 100 * kPage);
  EXPECT_EQ(Diff(source.data(), shadow_s, &shadow_c), "") << "source after the clone's discard";
  EXPECT_EQ(Diff(clone.data(), shadow_c, &shadow_s), "") << "clone after its discard";
  // Both write into the discarded stretches; each keeps its own.
  WritePages(source.data(), shadow_s, 1001, [](std::size_t p) { return p >= 250 && p < 700 && p % 2; });
  WritePages(clone.data(), shadow_c, 1002, [](std::size_t p) { return p >= 250 && p < 700 && p % 3 == 0; });
  EXPECT_EQ(Diff(source.data(), shadow_s, &shadow_c), "");
  EXPECT_EQ(Diff(clone.data(), shadow_c, &shadow_s), "");
  ASSERT_TRUE(source.Release().ok());
  ASSERT_TRUE(clone.Release().ok());
  ExpectNothingLeft(*runtime);
}

INSTANTIATE_TEST_SUITE_P(Budgets, CloneDiscardTest, ::testing::Values(0, 2 * kMiB),
                         [](const auto& info) {
                           return info.param == 0 ? std::string("NoBudget")
                                                  : std::string("WithSwap");
                         });

// Range::Populate fills *missing* pages with zeros; a clone's pages are missing to the
// kernel until touched, but they have bytes: Populate must not zero them.
TEST_F(CloneTest, PopulateOnACloneKeepsItsBytes) {
  auto runtime = MakeRuntime();
  ASSERT_NE(runtime, nullptr);
  constexpr std::size_t kPages = 1024;
  ASSERT_RESERVE(source, runtime, kPages * kPage, "populate");
  Shadow shadow_s(kPages * kPage, 0);
  WritePages(source.data(), shadow_s, 1100, [](std::size_t p) { return p % 4 != 0; });
  ASSERT_CLONE(clone, source);
  Shadow shadow_c = shadow_s;
  ASSERT_TRUE(clone.Populate(0, kPages * kPage).ok());
  ASSERT_TRUE(source.Populate(0, kPages * kPage).ok());
  EXPECT_EQ(Diff(clone.data(), shadow_c), "") << "clone after Populate of the whole range";
  EXPECT_EQ(Diff(source.data(), shadow_s), "") << "source after Populate";
  WritePages(source.data(), shadow_s, 1101, [](std::size_t p) { return p % 3 == 0; });
  WritePages(clone.data(), shadow_c, 1102, [](std::size_t p) { return p % 5 == 0; });
  EXPECT_EQ(Diff(clone.data(), shadow_c, &shadow_s), "");
  EXPECT_EQ(Diff(source.data(), shadow_s, &shadow_c), "");
}

// Runs `body` in a forked child (its own runtime) and returns "" when it exited with 0,
// else what happened: its exit code, its signal, or that it was still running after
// `seconds` (then it is killed). For scenarios that may deadlock the fault threads, so a
// hang fails one test instead of stalling the binary.
std::string RunInChild(const std::function<int()>& body, int seconds) {
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t child = fork();
  if (child < 0) return "fork failed";
  if (child == 0) _exit(body());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  int status = 0;
  for (;;) {
    const pid_t done = waitpid(child, &status, WNOHANG);
    if (done == child) break;
    if (std::chrono::steady_clock::now() > deadline) {
      kill(child, SIGKILL);
      waitpid(child, &status, 0);
      return "still running after " + std::to_string(seconds) + " s: a hang (killed)";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  if (WEXITSTATUS(status) != 0) return "exit code " + std::to_string(WEXITSTATUS(status));
  return "";
}

// The program drops some of the source's shared pages itself (MADV_DONTNEED, as a
// malloc does with freed memory) instead of Range::Discard. docs/design.md ("Limits, said
// plainly") says the clone loses its copy of those pages (it reads zeros there). What
// must hold all the same: nothing hangs (the fault thread must not fault on the dropped
// page it copies from), every other page of both ranges keeps its bytes, a dropped page
// reads zeros or its old bytes — never garbage — and the source reads zeros there. In a
// child with a time limit.
TEST_F(CloneTest, MadviseDontneedOnTheSourceNeitherHangsNorCorruptsTheRest) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "the child starts a runtime (threads) after fork() of a threaded process, "
                  "which ThreadSanitizer does not support";
#endif
  const std::string outcome = RunInChild(
      [] {
        auto runtime = Runtime::Create({.pool_bytes_total = 64 * kMiB});
        if (!runtime.ok()) return 10;
        constexpr std::size_t kPages = 512;
        auto source = (*runtime)->Reserve(kPages * kPage, {.name = "dontneed"});
        if (!source.ok()) return 11;
        Shadow shadow(kPages * kPage, 0);
        WritePages(source->data(), shadow, 1200, [](std::size_t) { return true; });
        auto clone = source->Clone();
        if (!clone.ok()) return 12;
        auto* s = static_cast<std::uint8_t*>(source->data());
        if (madvise(s + 128 * kPage, 128 * kPage, MADV_DONTNEED) != 0) return 13;
        auto dropped = [](std::size_t p) { return p >= 128 && p < 256; };
        const std::string rest =
            DiffPages(clone->data(), shadow, nullptr, [&](std::size_t p) { return !dropped(p); });
        if (!rest.empty()) {
          std::fprintf(stderr, "child: clone outside the dropped stretch: %s\n", rest.c_str());
          return 1;
        }
        const auto* c = static_cast<const std::uint8_t*>(clone->data());
        for (std::size_t p = 128; p < 256; ++p) {
          if (!AllZero(c + p * kPage, kPage) &&
              std::memcmp(c + p * kPage, shadow.data() + p * kPage, kPage) != 0) {
            std::fprintf(stderr, "child: clone page %zu is neither zeros nor its bytes\n", p);
            return 2;
          }
        }
        Shadow source_want = shadow;
        std::memset(source_want.data() + 128 * kPage, 0, 128 * kPage);
        const std::string src = Diff(s, source_want);
        if (!src.empty()) {
          std::fprintf(stderr, "child: source: %s\n", src.c_str());
          return 3;
        }
        std::fflush(stderr);
        _exit(0);  // no teardown: the verdict is in
      },
      30);
  EXPECT_EQ(outcome, "") << "exit 1: the clone's other pages are wrong; 2: a dropped page of "
                            "the clone holds garbage; 3: the source is wrong (stderr)";
}

// One side is released while threads fault on the other (allowed: a range's memory may
// be touched until *it* is released). One-page windows keep many pages shared for long.
TEST_F(CloneTest, ReleasingOneSideWhileTheOtherFaults) {
  auto runtime = MakeRuntime();
  ASSERT_NE(runtime, nullptr);
  constexpr std::size_t kPages = 4096;
  const RangeOptions options{.name = "busy", .fault_around_pages = 1, .readahead_pages = 0};
  // A thread that writes random bytes into (and checks whole pages of) the first `limit`
  // pages of its own shuffled order of the range's pages: the main thread decides how
  // much of the range it has touched (copied) when it releases the other side.
  struct Hammer {
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> ops{0};
    std::atomic<std::size_t> limit{1000};
    std::vector<std::size_t> order;
    std::thread thread;
    void Start(void* data, Shadow& shadow, std::uint64_t seed, Problems& problems,
               std::string who) {
      order.resize(kPages);
      for (std::size_t p = 0; p < kPages; ++p) order[p] = p;
      std::shuffle(order.begin(), order.end(), std::mt19937_64(seed + 77));
      thread = std::thread([this, data, &shadow, seed, &problems, who] {
        auto* bytes = static_cast<std::uint8_t*>(data);
        std::mt19937_64 rng(seed);
        std::uint8_t buf[64];
        while (!stop.load(std::memory_order_relaxed)) {
          const std::size_t page = order[rng() % limit.load(std::memory_order_relaxed)];
          if (rng() % 4 == 0) {
            if (std::memcmp(bytes + page * kPage, shadow.data() + page * kPage, kPage) != 0) {
              problems.Add(who + " page " + std::to_string(page) + " wrong");
            }
          } else {
            const std::size_t len = 1 + rng() % 64;
            const std::size_t off = page * kPage + rng() % (kPage - len + 1);
            for (std::size_t j = 0; j < len; ++j) buf[j] = static_cast<std::uint8_t>(rng());
            std::memcpy(shadow.data() + off, buf, len);
            std::memcpy(bytes + off, buf, len);
          }
          ops.fetch_add(1, std::memory_order_relaxed);
        }
      });
    }
    bool WaitOps(std::uint64_t more) {
      const std::uint64_t target = ops.load() + more;
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
      while (ops.load() < target) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
      return true;
    }
    void Stop() {
      stop = true;
      if (thread.joinable()) thread.join();
    }
    ~Hammer() { Stop(); }
  };
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    auto s_or = runtime->Reserve(kPages * kPage, options);
    ASSERT_TRUE(s_or.ok()) << s_or.status();
    Range source = std::move(*s_or);
    Shadow shadow_s(kPages * kPage, 0);
    WritePages(source.data(), shadow_s, 1300 + round, [](std::size_t p) { return p % 8 != 7; });
    ASSERT_CLONE(keep, source);
    ASSERT_CLONE(drop, source);
    Shadow shadow_k = shadow_s;
    Problems problems;
    {
      Hammer on_source, on_clone;
      on_source.Start(source.data(), shadow_s, 10 * round + 1, problems, "source");
      on_clone.Start(keep.data(), shadow_k, 10 * round + 2, problems, "clone");
      EXPECT_TRUE(on_source.WaitOps(1000) && on_clone.WaitOps(1000)) << "no progress (hang?)";
      // A second clone goes while both sides fault on pages it shares.
      ASSERT_TRUE(drop.Release().ok());
      EXPECT_TRUE(on_source.WaitOps(1000) && on_clone.WaitOps(1000)) << "no progress (hang?)";
      on_source.Stop();
      EXPECT_EQ(Diff(source.data(), shadow_s, &shadow_k), "") << "source";
      EXPECT_GT(runtime->Stats().clone.shared_frames, 2000u)
          << "most pages must still be shared: the test lost its point";
      // The source goes while the clone faults on pages it still shares with it.
      on_clone.limit = 3000;
      ASSERT_TRUE(source.Release().ok());
      EXPECT_TRUE(on_clone.WaitOps(2000)) << "no progress (hang?)";
      on_clone.limit = kPages;
      EXPECT_TRUE(on_clone.WaitOps(2000)) << "no progress (hang?)";
      on_clone.Stop();
    }
    EXPECT_EQ(problems.count(), 0) << problems.Summary();
    EXPECT_EQ(Diff(keep.data(), shadow_k), "") << "clone after its source was released";
    // The other way: the clone goes while the source writes its shared pages.
    ASSERT_CLONE(gone, keep);
    Shadow shadow_g = shadow_k;
    {
      Hammer on_keep;
      on_keep.Start(keep.data(), shadow_k, 10 * round + 3, problems, "source (2)");
      EXPECT_TRUE(on_keep.WaitOps(1000)) << "no progress (hang?)";
      EXPECT_EQ(DiffPages(gone.data(), shadow_g, nullptr, [](std::size_t p) { return p % 9 == 0; }),
                "");
      on_keep.limit = kPages;
      ASSERT_TRUE(gone.Release().ok());
      EXPECT_TRUE(on_keep.WaitOps(2000)) << "no progress (hang?)";
      on_keep.Stop();
    }
    EXPECT_EQ(problems.count(), 0) << problems.Summary();
    EXPECT_EQ(Diff(keep.data(), shadow_k), "") << "source after its clone was released";
    ASSERT_TRUE(keep.Release().ok());
    ExpectNothingLeft(*runtime);
  }
}

// With a budget and no opt-in, swap tracks dirty pages with WP_ASYNC and a clone could not
// keep writes apart: Clone says so and changes nothing.
TEST_F(CloneTest, UnderABudgetCloneNeedsTheOptIn) {
  auto created = Runtime::Create({.pool_bytes_total = 64 * kMiB, .budget_bytes = 16 * kMiB});
  ASSERT_TRUE(created.ok()) << created.status();
  std::unique_ptr<Runtime> runtime = std::move(*created);
  ASSERT_RESERVE(source, runtime, 64 * kPage, "no-opt-in");
  Shadow shadow(64 * kPage, 0);
  WritePages(source.data(), shadow, 1300, [](std::size_t) { return true; });
  auto clone = source.Clone();
  ASSERT_FALSE(clone.ok());
  EXPECT_EQ(clone.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(clone.status().message().find("clones_with_budget"), std::string_view::npos)
      << clone.status();
  EXPECT_EQ(runtime->Stats().clone.clones, 0u);
  EXPECT_EQ(runtime->Stats().ranges, 1u);
  EXPECT_EQ(Diff(source.data(), shadow), "");
}

}  // namespace
}  // namespace uvmem
