// Tests of the runtime: ranges, the fault engine's demand-zero fills, fault-around, the
// MOVE and COPY paths, NUMA placement, release, sparse metadata and exhaustion.
#include "uvmem/runtime.h"

#include <gtest/gtest.h>
#include <numaif.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sys/stat.h>
#include <sstream>
#include <cstring>
#include <thread>
#include <vector>

// Sanitizers install their own SIGBUS handler; the exhaustion test needs the signal to
// kill the child as it does in production.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
extern "C" const char* __asan_default_options() { return "handle_sigbus=0"; }
extern "C" const char* __tsan_default_options() { return "handle_sigbus=0"; }
#endif

namespace uvmem {
namespace {

constexpr std::size_t kMiB = std::size_t{1} << 20;

std::unique_ptr<Runtime> MakeRuntime(RuntimeOptions options = {}) {
  if (options.pool_bytes_total == RuntimeOptions{}.pool_bytes_total) {
    options.pool_bytes_total = 64 * kMiB;
  }
  auto runtime = Runtime::Create(options);
  EXPECT_TRUE(runtime.ok()) << runtime.status();
  return runtime.ok() ? std::move(*runtime) : nullptr;
}

std::uint64_t PoolFree(const Runtime& runtime) {
  std::uint64_t free = 0;
  for (const auto& node : runtime.Stats().nodes) free += node.free_frames;
  return free;
}

// Both fill paths, on every kernel: MOVE where the kernel has it, COPY always.
class FillPathTest : public ::testing::TestWithParam<bool> {
 protected:
  // MOVE moves frames that exist: the Move variant prefaults its pool so every fill is a
  // move; the Copy variant forces UFFDIO_COPY.
  std::unique_ptr<Runtime> Make(RuntimeOptions options = {}) {
    options.use_move = GetParam();
    options.prefault_pool = GetParam();
    auto runtime = MakeRuntime(options);
    if (runtime && GetParam() && !runtime->uses_move()) {
      ADD_FAILURE() << "MOVE requested but not in use";  // kernels < 6.8 skip below
    }
    return runtime;
  }
  void SetUp() override {
    if (GetParam()) {
      auto probe = Runtime::Create({.pool_bytes_total = 8 * kMiB});
      if (probe.ok() && !(*probe)->uses_move()) GTEST_SKIP() << "kernel without UFFDIO_MOVE";
    }
  }
};

TEST_P(FillPathTest, DemandZeroPagesReadZeroAndKeepWrites) {
  auto runtime = Make();
  ASSERT_NE(runtime, nullptr);
  auto range = runtime->Reserve(8 * kMiB, {.name = "demand-zero"});
  ASSERT_TRUE(range.ok()) << range.status();
  auto* bytes = static_cast<unsigned char*>(range->data());
  for (std::size_t off = 0; off < 8 * kMiB; off += 512) ASSERT_EQ(bytes[off], 0) << off;
  for (std::size_t off = 0; off < 8 * kMiB; off += 4096) bytes[off] = static_cast<unsigned char>(off >> 12);
  for (std::size_t off = 0; off < 8 * kMiB; off += 4096) {
    ASSERT_EQ(bytes[off], static_cast<unsigned char>(off >> 12));
  }
  const RangeStats s = range->Stats();
  EXPECT_EQ(s.pages_filled, 2048u);
  EXPECT_EQ(s.resident_pages, 2048u);
  EXPECT_LE(s.faults, 2048u / 64 + 8) << "fault-around 64 should need ~32 faults";
  EXPECT_EQ(GetParam() ? s.pages_moved : s.pages_copied, 2048u);
  EXPECT_EQ(GetParam() ? s.pages_copied : s.pages_moved, 0u);
}

TEST_P(FillPathTest, FaultAroundIsClampedToTheRangeEdges) {
  auto runtime = Make();
  ASSERT_NE(runtime, nullptr);
  // 70 pages: touching page 69 maps the aligned window [64, 70) only.
  auto range = runtime->Reserve(70 * kPageSize, {.name = "edges"});
  ASSERT_TRUE(range.ok());
  auto* bytes = static_cast<unsigned char*>(range->data());
  bytes[69 * kPageSize + 100] = 7;
  RangeStats s = range->Stats();
  EXPECT_EQ(s.faults, 1u);
  EXPECT_EQ(s.pages_filled, 6u);
  EXPECT_EQ(s.fault_around_pages, 5u);
  // Page 10 maps [0, 64).
  bytes[10 * kPageSize] = 1;
  s = range->Stats();
  EXPECT_EQ(s.pages_filled, 70u);
  // Everything present now: no further faults.
  for (std::size_t p = 0; p < 70; ++p) bytes[p * kPageSize + 1] = 2;
  EXPECT_EQ(range->Stats().faults, 2u);
  EXPECT_EQ(bytes[69 * kPageSize + 100], 7);
}

TEST_P(FillPathTest, FaultAroundSkipsPagesAlreadyPresent) {
  RuntimeOptions options;
  options.fault_around_pages = 16;
  options.readahead_pages = 0;
  auto runtime = Make(options);
  ASSERT_NE(runtime, nullptr);
  auto range = runtime->Reserve(64 * kPageSize, {});
  ASSERT_TRUE(range.ok());
  auto* bytes = static_cast<unsigned char*>(range->data());
  bytes[20 * kPageSize] = 1;  // window [16, 32)
  EXPECT_EQ(range->Stats().pages_filled, 16u);
  bytes[40 * kPageSize] = 1;  // window [32, 48)
  bytes[5 * kPageSize] = 1;   // window [0, 16)
  EXPECT_EQ(range->Stats().pages_filled, 48u);
  EXPECT_EQ(range->Stats().faults, 3u);
}

TEST_P(FillPathTest, ManyThreadsFaultingTheSamePagesFillEachOnce) {
  RuntimeOptions options;
  options.fault_threads = 2;
  options.fault_around_pages = 4;
  auto runtime = Make(options);
  ASSERT_NE(runtime, nullptr);
  constexpr int kThreads = 6;
  constexpr std::size_t kPages = 256;
  auto range = runtime->Reserve(kPages * kPageSize, {.name = "contended"});
  ASSERT_TRUE(range.ok());
  auto* words = static_cast<std::atomic<std::uint32_t>*>(range->data());
  std::barrier start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      start.arrive_and_wait();
      for (std::size_t p = 0; p < kPages; ++p) {
        // Every thread adds its bit to word 0 of every page, in a different order.
        const std::size_t page = (p * (2 * t + 1) * 7 + t * 13) % kPages;  // a permutation
        words[page * (kPageSize / 4)].fetch_or(1u << t);
      }
    });
  }
  for (auto& th : threads) th.join();
  for (std::size_t p = 0; p < kPages; ++p) {
    ASSERT_EQ(words[p * (kPageSize / 4)].load(), (1u << kThreads) - 1)
        << "page " << p << " lost a write: it was filled twice";
  }
  const RangeStats s = range->Stats();
  EXPECT_EQ(s.pages_filled, kPages) << "each page must be filled exactly once";
  EXPECT_EQ(s.resident_pages, kPages);
}

TEST_P(FillPathTest, ThreadsAcrossManyRanges) {
  RuntimeOptions options;
  options.fault_threads = 2;
  auto runtime = Make(options);
  ASSERT_NE(runtime, nullptr);
  constexpr int kThreads = 4, kRangesPerThread = 12;
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int r = 0; r < kRangesPerThread; ++r) {
        const std::size_t length = (1 + (t * 7 + r) % 5) * 64 * kPageSize + 3 * kPageSize;
        auto range = runtime->Reserve(length, {.name = "multi"});
        if (!range.ok()) {
          bad.fetch_add(1);
          continue;
        }
        auto* bytes = static_cast<unsigned char*>(range->data());
        for (std::size_t off = 0; off < length; off += kPageSize) {
          if (bytes[off] != 0) bad.fetch_add(1);
          bytes[off] = static_cast<unsigned char>(t * 16 + r);
        }
        for (std::size_t off = 0; off < length; off += kPageSize) {
          if (bytes[off] != static_cast<unsigned char>(t * 16 + r)) bad.fetch_add(1);
        }
        if (!range->Release().ok()) bad.fetch_add(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0) << "non-zero recycled bytes, lost writes or failed calls";
  EXPECT_EQ(runtime->Stats().ranges, 0u);
}

TEST_P(FillPathTest, ReadFromAPipeIntoAFreshRangeCompletes) {
  auto runtime = Make();
  ASSERT_NE(runtime, nullptr);
  if (runtime->Stats().uffd_mode != "full") GTEST_SKIP() << "user-mode-only userfaultfd";
  auto range = runtime->Reserve(4 * kPageSize, {.name = "pipe"});
  ASSERT_TRUE(range.ok());
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const char message[] = "kernel-mode fault served by uvmem";
  ASSERT_EQ(write(fds[1], message, sizeof(message)), static_cast<ssize_t>(sizeof(message)));
  char* target = static_cast<char*>(range->data()) + 2 * kPageSize + 10;
  EXPECT_EQ(read(fds[0], target, sizeof(message)), static_cast<ssize_t>(sizeof(message)));
  EXPECT_STREQ(target, message);
  close(fds[0]);
  close(fds[1]);
}

TEST_P(FillPathTest, RecvIntoAFreshRangeCompletes) {
  auto runtime = Make();
  ASSERT_NE(runtime, nullptr);
  if (runtime->Stats().uffd_mode != "full") GTEST_SKIP() << "user-mode-only userfaultfd";
  auto range = runtime->Reserve(4 * kPageSize, {.name = "recv"});
  ASSERT_TRUE(range.ok());
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  const char message[] = "a socket writes into a page nobody touched";
  ASSERT_EQ(send(fds[1], message, sizeof(message), 0), static_cast<ssize_t>(sizeof(message)));
  char* target = static_cast<char*>(range->data()) + 3 * kPageSize - 7;  // straddles pages
  EXPECT_EQ(recv(fds[0], target, sizeof(message), MSG_WAITALL),
            static_cast<ssize_t>(sizeof(message)));
  EXPECT_STREQ(target, message);
  close(fds[0]);
  close(fds[1]);
}

TEST_P(FillPathTest, ReleaseWithResidentPagesGivesEveryFrameBack) {
  auto runtime = MakeRuntime(
      {.pool_bytes_total = 32 * kMiB, .use_move = GetParam(), .prefault_pool = GetParam()});
  ASSERT_NE(runtime, nullptr);
  // The first cycle warms the slab caches of page tables and range descriptors (they
  // keep a few empty slabs, as SLUB does); from then on every cycle must end where it
  // began, to the frame.
  std::uint64_t before = 0;
  for (int cycle = 0; cycle < 3; ++cycle) {
    if (cycle == 1) before = PoolFree(*runtime);
    auto range = runtime->Reserve(16 * kMiB, {.name = "release"});
    ASSERT_TRUE(range.ok());
    std::memset(range->data(), 0x5c, 16 * kMiB);
    if (cycle > 0) {
      EXPECT_GE(before - PoolFree(*runtime), 4096u) << "4096 frames in the range";
    }
    ASSERT_TRUE(range->Release().ok());
    if (cycle > 0) {
      EXPECT_EQ(PoolFree(*runtime), before) << "every frame is back in the pool";
    }
    EXPECT_FALSE(range->Release().ok()) << "a second release is an error";
  }
  // The frames come back zeroed for the next range: no byte crosses ranges.
  auto next = runtime->Reserve(16 * kMiB, {.name = "next"});
  ASSERT_TRUE(next.ok());
  const auto* bytes = static_cast<const unsigned char*>(next->data());
  for (std::size_t off = 0; off < 16 * kMiB; off += 64) ASSERT_EQ(bytes[off], 0) << off;
}

// The program splits the range's VMA (madvise of a part): a fault-around window that
// crosses the split must still complete — page by page where it must.
TEST_P(FillPathTest, WindowCrossingAVmaSplitInsideTheRangeCompletes) {
  auto runtime = Make();
  ASSERT_NE(runtime, nullptr);
  auto range = runtime->Reserve(128 * kPageSize, {.name = "split"});
  ASSERT_TRUE(range.ok());
  auto* bytes = static_cast<unsigned char*>(range->data());
  ASSERT_EQ(madvise(bytes + 32 * kPageSize, 96 * kPageSize, MADV_NOHUGEPAGE), 0);
  ASSERT_EQ(mprotect(bytes + 40 * kPageSize, 8 * kPageSize, PROT_READ), 0);
  bytes[0] = 1;                 // window [0, 64) spans three VMAs
  bytes[63 * kPageSize] = 2;
  EXPECT_EQ(bytes[45 * kPageSize], 0);  // read-only part reads zero
  for (std::size_t p = 64; p < 128; ++p) bytes[p * kPageSize] = 3;
  EXPECT_EQ(bytes[0], 1);
  EXPECT_EQ(bytes[63 * kPageSize], 2);
  EXPECT_EQ(range->Stats().pages_filled, 128u);
}

// The program drops pages (MADV_DONTNEED): touching them again reads zero and does not
// hang, though uvmem's page table still holds their frames.
TEST_P(FillPathTest, DiscardedPagesReadZeroWhenTouchedAgain) {
  auto runtime = Make();
  ASSERT_NE(runtime, nullptr);
  auto range = runtime->Reserve(64 * kPageSize, {.name = "discard"});
  ASSERT_TRUE(range.ok());
  auto* bytes = static_cast<unsigned char*>(range->data());
  std::memset(bytes, 0x77, 64 * kPageSize);
  ASSERT_EQ(madvise(bytes + 8 * kPageSize, 4 * kPageSize, MADV_DONTNEED), 0);
  for (std::size_t p = 8; p < 12; ++p) EXPECT_EQ(bytes[p * kPageSize + 5], 0) << p;
  bytes[9 * kPageSize] = 0x11;
  EXPECT_EQ(bytes[9 * kPageSize], 0x11);
  EXPECT_EQ(bytes[20 * kPageSize], 0x77) << "other pages keep their bytes";
  const RangeStats s = range->Stats();
  EXPECT_EQ(s.discarded_refills, 4u);
  EXPECT_EQ(s.resident_pages, 64u);
}

TEST_P(FillPathTest, ReleasedFramesComeBackAndFillTheNextRange) {
  RuntimeOptions options;
  options.pool_bytes_total = 16 * kMiB;
  options.use_move = GetParam();  // no prefault: the first fill of each frame is a COPY
  auto runtime = MakeRuntime(options);
  ASSERT_NE(runtime, nullptr);
  for (int cycle = 0; cycle < 3; ++cycle) {
    auto range = runtime->Reserve(4 * kMiB, {.name = "cycle"});
    ASSERT_TRUE(range.ok());
    auto* bytes = static_cast<unsigned char*>(range->data());
    for (std::size_t off = 0; off < 4 * kMiB; off += kPageSize) {
      ASSERT_EQ(bytes[off + 7], 0) << "cycle " << cycle << ": stale byte from the last range";
      bytes[off + 7] = 0xee;
    }
    const RangeStats s = range->Stats();
    EXPECT_EQ(s.pages_filled, 1024u);
    if (GetParam() && cycle > 0) {
      // The pages went back into the pool as frames at release; those frames (most of
      // the next range: the pool also holds never-used holes) now move in.
      EXPECT_GE(s.pages_moved, 512u) << "cycle " << cycle;
    }
    if (!GetParam()) {
      EXPECT_EQ(s.pages_moved, 0u);
    }
    ASSERT_TRUE(range->Release().ok());
  }
}

TEST_P(FillPathTest, SequentialStreamsAreFilledAhead) {
  RuntimeOptions options;
  options.fault_around_pages = 16;
  options.readahead_pages = 64;
  auto runtime = Make(options);
  ASSERT_NE(runtime, nullptr);
  auto range = runtime->Reserve(8 * kMiB, {.name = "stream"});
  ASSERT_TRUE(range.ok());
  auto* bytes = static_cast<unsigned char*>(range->data());
  // Three windows in order, then stop: the stream's readahead fills at least the next
  // 64 pages after the last fault, in the background (how many faults the stream takes
  // depends on timing; where the fill ends does not).
  for (std::size_t page = 0; page < 48; ++page) bytes[page * kPageSize] = 1;
  std::uint64_t filled = 0;
  for (int i = 0; i < 2000 && filled < 96; ++i) {
    filled = range->Stats().pages_filled;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_GE(filled, 96u) << "without readahead only the 48 touched pages are filled";
  EXPECT_LE(filled, 48u + 64u);
  for (std::size_t off = 0; off < 8 * kMiB; off += kPageSize) bytes[off] = 1;
  EXPECT_EQ(range->Stats().pages_filled, 2048u) << "readahead never passes the range's end";

  auto off_range = runtime->Reserve(8 * kMiB, {.name = "no-readahead"});
  ASSERT_TRUE(off_range.ok());
  // Touch windows backwards: not a forward stream, no readahead.
  auto* back = static_cast<unsigned char*>(off_range->data());
  for (std::size_t w = 128; w-- > 0;) back[w * 16 * kPageSize] = 1;
  EXPECT_EQ(off_range->Stats().pages_filled, 2048u);
  EXPECT_EQ(off_range->Stats().faults, 128u);
}

// Every policy, on this machine's node 0 (a two-node guest checks real spreading: the
// NUMA test issue).
TEST_P(FillPathTest, PagesLandOnTheNodeThePolicyNames) {
  auto runtime = Make();
  ASSERT_NE(runtime, nullptr);
  for (const NumaPolicy& policy : {NumaPolicy::Bind(NodeId{0}), NumaPolicy::Preferred(NodeId{0}),
                                   NumaPolicy::Interleave({NodeId{0}}), NumaPolicy::Local()}) {
    auto range = runtime->Reserve(2 * kMiB, {.name = "placed", .numa = policy});
    ASSERT_TRUE(range.ok()) << range.status();
    std::memset(range->data(), 1, 2 * kMiB);
    std::vector<void*> pages;
    for (std::size_t off = 0; off < 2 * kMiB; off += kPageSize) {
      pages.push_back(static_cast<char*>(range->data()) + off);
    }
    std::vector<int> status(pages.size(), -1);
    ASSERT_EQ(move_pages(0, pages.size(), pages.data(), nullptr, status.data(), 0), 0);
    for (std::size_t i = 0; i < status.size(); ++i) {
      ASSERT_EQ(status[i], 0) << "page " << i << ", policy kind " << static_cast<int>(policy.kind);
    }
  }
}

// uvmem maps 4 KiB frames: khugepaged must not collapse a range into huge pages of its
// own (on a node of its choosing, behind the pool's back). The range's VMA says "nh"
// (VM_NOHUGEPAGE) in /proc/self/smaps.
TEST(RuntimeTest, RangesAreKeptFromKhugepaged) {
  auto runtime = MakeRuntime();
  ASSERT_NE(runtime, nullptr);
  auto range = runtime->Reserve(4 * kMiB, {.name = "no-thp"});
  ASSERT_TRUE(range.ok()) << range.status();
  std::ifstream smaps("/proc/self/smaps");
  const auto start = reinterpret_cast<std::uintptr_t>(range->data());
  std::string line;
  bool in_range = false, checked = false;
  while (std::getline(smaps, line)) {
    unsigned long lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2) {  // a VMA header line
      in_range = start >= lo && start < hi;
    } else if (in_range && line.rfind("VmFlags:", 0) == 0) {
      EXPECT_NE(line.find(" nh"), std::string::npos) << line;
      checked = true;
    }
  }
  EXPECT_TRUE(checked) << "no VmFlags line for the range in /proc/self/smaps";
}

INSTANTIATE_TEST_SUITE_P(Paths, FillPathTest, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "Move" : "Copy"; });

TEST(RuntimeTest, SparseMetadataForATebibyteRange) {
  auto runtime = MakeRuntime({.readahead_pages = 0});  // exactly what is touched
  ASSERT_NE(runtime, nullptr);
#if defined(__SANITIZE_THREAD__)
  // ThreadSanitizer keeps most of the address space for itself: 64 GiB (still 4 levels).
  constexpr std::size_t kReserve = std::size_t{1} << 36, kAt = std::size_t{40} << 30;
#else
  constexpr std::size_t kReserve = std::size_t{1} << 40, kAt = std::size_t{300} << 30;
#endif
  auto range = runtime->Reserve(kReserve, {.name = "1TiB"});
  ASSERT_TRUE(range.ok()) << range.status();
  EXPECT_EQ(range->Stats().page_table_bytes, 0u) << "nothing touched, no tables";
  auto* bytes = static_cast<unsigned char*>(range->data());
  std::memset(bytes + kAt, 3, kMiB);  // 1 MiB, far into the range
  const RangeStats s = range->Stats();
  EXPECT_EQ(s.resident_pages, 256u);
  EXPECT_LE(s.page_table_bytes, 16u * 1024) << "4 levels, one table each";
  EXPECT_GT(s.page_table_bytes, 0u);
}

TEST(RuntimeTest, BadInputIsRejectedClearly) {
  EXPECT_EQ(Runtime::Create({.fault_around_pages = 3}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Runtime::Create({.fault_around_pages = 1024}).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto runtime = MakeRuntime();
  ASSERT_NE(runtime, nullptr);
  EXPECT_EQ(runtime->Reserve(0, {}).status().code(), absl::StatusCode::kInvalidArgument);
  auto missing = runtime->Reserve(kMiB, {.numa = NumaPolicy::Bind(NodeId{42})});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(missing.status().message().find("node 42 does not exist"), std::string::npos)
      << missing.status();
  EXPECT_EQ(runtime->Reserve(kMiB, {.numa = NumaPolicy::Interleave({})}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RuntimeTest, StatisticsAddUpAcrossRanges) {
  auto runtime = MakeRuntime({.fault_around_pages = 1, .readahead_pages = 0});
  ASSERT_NE(runtime, nullptr);
  auto a = runtime->Reserve(10 * kPageSize, {.name = "a"});
  auto b = runtime->Reserve(10 * kPageSize, {.name = "b"});
  for (int p = 0; p < 10; ++p) static_cast<char*>(a->data())[p * kPageSize] = 1;
  for (int p = 0; p < 4; ++p) static_cast<char*>(b->data())[p * kPageSize] = 1;
  RuntimeStats s = runtime->Stats();
  EXPECT_EQ(s.ranges, 2u);
  EXPECT_EQ(s.faults, 14u);
  EXPECT_EQ(s.resident_pages, 14u);
  EXPECT_EQ(s.fault_around_pages, 0u);
  EXPECT_GT(s.fault_latency_p99_ns, 0u);
  EXPECT_GE(s.fault_latency_p99_ns, s.fault_latency_p50_ns);
  ASSERT_TRUE(a->Release().ok());
  s = runtime->Stats();
  EXPECT_EQ(s.faults, 14u) << "released ranges still count";
  EXPECT_EQ(s.resident_pages, 4u);
  EXPECT_EQ(a->Stats().faults, 0u);
}

// The fault threads run with every signal blocked (a handler could touch memory only they
// can fill).
TEST(RuntimeTest, FaultThreadsBlockSignals) {
  auto runtime = MakeRuntime({.fault_threads = 2});
  ASSERT_NE(runtime, nullptr);
  // Fault threads are named and have every signal blocked before Create returns (they are
  // born with the mask): no waiting.
  int found = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(entry.path() / "comm");
    std::string name;
    std::getline(comm, name);
    if (name.rfind("uvmem-fault/", 0) != 0) continue;
    ++found;
    std::ifstream status(entry.path() / "status");
    std::string line;
    std::uint64_t blocked = 0;
    while (std::getline(status, line)) {
      if (line.rfind("SigBlk:", 0) == 0) blocked = std::stoull(line.substr(7), nullptr, 16);
    }
    for (int sig : {SIGINT, SIGTERM, SIGSEGV, SIGBUS, SIGUSR1, SIGALRM, SIGCHLD, SIGPIPE}) {
      EXPECT_TRUE(blocked & (1ull << (sig - 1))) << name << " leaves signal " << sig << " open";
    }
  }
  EXPECT_EQ(found, 2);
  // The creating thread gets its own mask back.
  sigset_t mine;
  ASSERT_EQ(pthread_sigmask(SIG_SETMASK, nullptr, &mine), 0);
  EXPECT_FALSE(sigismember(&mine, SIGUSR1));
  EXPECT_FALSE(sigismember(&mine, SIGTERM));
}

// Without privilege the runtime says what user-mode-only would cost, and accepts it
// only when asked. In a child that drops root.
TEST(RuntimeDeathTest, UnprivilegedCreateExplainsUserModeOnly) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to drop privileges in a child";
  if (access("/dev/userfaultfd", F_OK) == 0) {
    struct stat st = {};
    if (stat("/dev/userfaultfd", &st) == 0 && (st.st_mode & S_IROTH)) {
      GTEST_SKIP() << "/dev/userfaultfd is open to everyone here";
    }
  }
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0) {
          std::_Exit(10);
        }
        auto denied = Runtime::Create({.pool_bytes_total = 8 * kMiB});
        if (denied.ok()) std::_Exit(11);
        const std::string message(denied.status().message());
        if (denied.status().code() != absl::StatusCode::kPermissionDenied) std::_Exit(12);
        if (message.find("EFAULT") == std::string::npos ||
            message.find("allow_user_mode_only") == std::string::npos) {
          std::_Exit(13);
        }
        auto accepted =
            Runtime::Create({.pool_bytes_total = 8 * kMiB, .allow_user_mode_only = true});
        if (!accepted.ok() || (*accepted)->Stats().uffd_mode != "user-mode-only") std::_Exit(14);
        auto range = (*accepted)->Reserve(kMiB, {});
        std::memset(range->data(), 1, kMiB);  // user-mode faults are still served
        (void)range->Release();
        std::_Exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

// After fork() the pool's pages are shared with the child, so UFFDIO_MOVE refuses them
// (EBUSY); the fill falls back to COPY and the data is still right.
TEST(RuntimeTest, MoveRefusedAfterForkFallsBackToCopy) {
  auto runtime = MakeRuntime({.pool_bytes_total = 16 * kMiB, .readahead_pages = 0,
                              .use_move = true, .prefault_pool = true});
  ASSERT_NE(runtime, nullptr);
  if (!runtime->uses_move()) GTEST_SKIP() << "kernel without UFFDIO_MOVE";
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    char byte = 1;
    (void)!write(ready[1], &byte, 1);
    pause();  // keeps every prefaulted arena page shared
    std::_Exit(0);
  }
  char byte = 0;
  ASSERT_EQ(read(ready[0], &byte, 1), 1);
  auto range = runtime->Reserve(64 * kPageSize, {.name = "after-fork"});
  ASSERT_TRUE(range.ok());
  auto* bytes = static_cast<unsigned char*>(range->data());
  for (std::size_t p = 0; p < 64; ++p) {
    ASSERT_EQ(bytes[p * kPageSize + 3], 0);
    bytes[p * kPageSize + 3] = static_cast<unsigned char>(p);
  }
  for (std::size_t p = 0; p < 64; ++p) ASSERT_EQ(bytes[p * kPageSize + 3], p);
  const RangeStats s = range->Stats();
  EXPECT_EQ(s.pages_filled, 64u);
  EXPECT_GT(s.pages_copied, 0u) << "MOVE of a shared page must fall back to COPY";
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  close(ready[0]);
  close(ready[1]);
}

TEST(RuntimeTest, SlabDebugModeCoversTheRuntimesOwnCaches) {
  auto plain = MakeRuntime();
  auto debug = MakeRuntime({.slab_debug = true});
  ASSERT_NE(plain, nullptr);
  ASSERT_NE(debug, nullptr);
  for (Runtime* runtime : {plain.get(), debug.get()}) {
    auto range = runtime->Reserve(4 * kMiB, {.name = "debug"});
    ASSERT_TRUE(range.ok());
    std::memset(range->data(), 3, 4 * kMiB);
    ASSERT_TRUE(range->Release().ok());
  }
  // Redzones make a debug slot larger than the 4096-byte table it holds.
  auto slot_of = [](const std::string& slabinfo) {
    std::istringstream in(slabinfo);
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("uvmem-pgtable", 0) == 0) {
        std::istringstream fields(line);
        std::string name;
        std::uint64_t active = 0, total = 0, slot = 0;
        fields >> name >> active >> total >> slot;
        return slot;
      }
    }
    return std::uint64_t{0};
  };
  EXPECT_EQ(slot_of(plain->Stats().slabinfo), 4096u) << plain->Stats().slabinfo;
  EXPECT_GT(slot_of(debug->Stats().slabinfo), 4096u) << debug->Stats().slabinfo;
}

// Statistics read while other threads reserve, touch and release: no torn reads of a
// released range, and cumulative totals never go backwards.
TEST(RuntimeTest, StatsWhileRangesComeAndGo) {
  auto runtime = MakeRuntime();
  ASSERT_NE(runtime, nullptr);
  std::atomic<bool> stop{false};
  std::thread churn([&] {
    for (int i = 0; i < 60; ++i) {
      auto range = runtime->Reserve((1 + i % 4) * 64 * kPageSize, {.name = "churn"});
      if (!range.ok()) continue;
      std::memset(range->data(), 1, range->size());
      (void)range->Release();
    }
    stop = true;
  });
  std::uint64_t last_faults = 0, last_filled = 0, reads = 0;
  while (!stop) {
    const RuntimeStats s = runtime->Stats();
    ASSERT_GE(s.faults, last_faults);
    ASSERT_GE(s.pages_filled, last_filled);
    last_faults = s.faults;
    last_filled = s.pages_filled;
    ++reads;
  }
  churn.join();
  EXPECT_GT(reads, 0u);
  EXPECT_EQ(runtime->Stats().ranges, 0u);
  EXPECT_GE(runtime->Stats().pages_filled, 60u * 64);
}

// The pool runs out and nothing can be reclaimed: SIGBUS and a message that says which
// range, how much it holds and how to raise the limit. In a child process.
TEST(RuntimeDeathTest, ExhaustionIsSigbusWithAMessage) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        auto runtime = Runtime::Create({.pool_bytes_total = 4 * kMiB});
        if (!runtime.ok()) std::_Exit(3);
        auto range = (*runtime)->Reserve(64 * kMiB, {.name = "too-big"});
        if (!range.ok()) std::_Exit(4);
        std::memset(range->data(), 1, 64 * kMiB);
        std::_Exit(0);  // not reached: the pool holds 4 MiB
      },
      ::testing::KilledBySignal(SIGBUS),
      "out of frames: range 'too-big' .* pages .* resident.*SIGBUS.*Raise the pool");
}

}  // namespace
}  // namespace uvmem
