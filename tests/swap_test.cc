// Swap under a resident budget (issue 6): data written before a swap-out reads back after
// swap-in, from several threads, through system calls, over many eviction cycles; clean
// pages are not written twice; injected write and read failures keep or poison pages as
// documented; the swap file is private and unlinked.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "uvmem/runtime.h"
#include "vm/runtime_impl.h"

// Sanitizers install their own SIGBUS handler; the death tests need the signal to kill
// the process as it does in a plain build.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
extern "C" const char* __asan_default_options() { return "handle_sigbus=0"; }
extern "C" const char* __tsan_default_options() { return "handle_sigbus=0"; }
#endif

namespace {

using uvmem::internal::RuntimeImpl;
using uvmem::internal::SwapDevice;
using uvmem::internal::VmRange;

constexpr std::size_t kPage = 4096;
constexpr std::size_t kMiB = std::size_t{1} << 20;

// A value that depends on the page, the word and a version: wrong data cannot pass.
std::uint64_t Pattern(std::size_t page, std::size_t word, std::uint64_t version) {
  return (page * 0x9e3779b97f4a7c15ull) ^ (word * 0xbf58476d1ce4e5b9ull) ^ (version << 48) ^ 1;
}

void FillPage(std::uint64_t* page_words, std::size_t page, std::uint64_t version) {
  for (std::size_t w = 0; w < kPage / 8; w += 64) page_words[w] = Pattern(page, w, version);
}

bool PageHolds(const std::uint64_t* page_words, std::size_t page, std::uint64_t version) {
  for (std::size_t w = 0; w < kPage / 8; w += 64) {
    if (page_words[w] != Pattern(page, w, version)) return false;
  }
  return true;
}

uvmem::RuntimeOptions SwapOptions(std::size_t budget, std::size_t swap_max = 0) {
  uvmem::RuntimeOptions o;
  o.pool_bytes_total = 256 * kMiB;
  o.budget_bytes = budget;
  o.swap_max_bytes = swap_max;
  return o;
}

std::unique_ptr<RuntimeImpl> MakeRuntime(const uvmem::RuntimeOptions& options) {
  auto rt = RuntimeImpl::Create(options);
  EXPECT_TRUE(rt.ok()) << rt.status();
  return rt.ok() ? std::move(*rt) : nullptr;
}

std::uint64_t* Words(VmRange* range, std::size_t page = 0) {
  return reinterpret_cast<std::uint64_t*>(range->start() + page * kPage);
}

// write(2) of a 4 KiB page into a pipe: 0, or the errno it failed with.
int WriteErrno(const void* page) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  errno = 0;
  const int result = write(fds[1], page, kPage) == static_cast<ssize_t>(kPage) ? 0 : errno;
  close(fds[0]);
  close(fds[1]);
  return result;
}

// A runtime with a budget and one range, released at the end of the test.
class SwapTest : public ::testing::Test {
 protected:
  // Creates the runtime and a range of `range_bytes`; with `fill`, writes every page
  // (version 1), which swaps all but the budget's worth out.
  void Start(std::size_t budget, std::size_t range_bytes, bool fill = true) {
    rt_ = MakeRuntime(SwapOptions(budget));
    ASSERT_NE(rt_, nullptr);
    auto range = rt_->Reserve(range_bytes, {.name = "swapped"});
    ASSERT_TRUE(range.ok()) << range.status();
    range_ = *range;
    pages_ = range_bytes / kPage;
    if (fill) FillAll(1);
  }
  void TearDown() override {
    if (range_ != nullptr) {
      EXPECT_TRUE(rt_->Release(range_).ok());
    }
  }
  std::uint64_t* Page(std::size_t p) const { return Words(range_, p); }
  void FillAll(std::uint64_t version) {
    for (std::size_t p = 0; p < pages_; ++p) FillPage(Page(p), p, version);
  }
  // The first page not holding `version`, or pages_.
  std::size_t FirstWrong(std::uint64_t version) const {
    for (std::size_t p = 0; p < pages_; ++p) {
      if (!PageHolds(Page(p), p, version)) return p;
    }
    return pages_;
  }
  void Release() {
    EXPECT_TRUE(rt_->Release(range_).ok());
    range_ = nullptr;
  }

  std::unique_ptr<RuntimeImpl> rt_;
  VmRange* range_ = nullptr;
  std::size_t pages_ = 0;
};

TEST_F(SwapTest, WorkingSetFourTimesTheBudgetFromSeveralThreadsMatchesAShadowCopy) {
  constexpr std::size_t kPages = 32 * kMiB / kPage;  // 4× the budget
  Start(8 * kMiB, kPages * kPage, /*fill=*/false);
  std::vector<std::atomic<std::uint64_t>> shadow(kPages);  // version per page; 0: untouched
  constexpr int kThreads = 4;
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t * 7919 + 1);
      // Each thread owns the pages p with p % kThreads == t (writes never race), and
      // reads any page's first word to check it is some version of that page.
      for (int op = 0; op < 20000; ++op) {
        const std::size_t page = (rng() % (kPages / kThreads)) * kThreads + t;
        std::uint64_t* words = Page(page);
        const std::uint64_t version = shadow[page].load(std::memory_order_relaxed);
        if (rng() % 3 == 0) {
          if (version == 0 ? !PageHolds(words, page, 0) && words[0] != 0 : !PageHolds(words, page, version)) {
            bad.fetch_add(1);
          }
        } else {
          FillPage(words, page, version + 1);
          shadow[page].store(version + 1, std::memory_order_relaxed);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
  std::size_t wrong = 0;
  for (std::size_t p = 0; p < kPages; ++p) {
    const std::uint64_t v = shadow[p].load();
    if (v != 0 && !PageHolds(Page(p), p, v)) ++wrong;
  }
  EXPECT_EQ(wrong, 0u);
  const uvmem::RuntimeStats s = rt_->Stats();
  EXPECT_TRUE(s.swap.enabled);
  EXPECT_GT(s.swap.pages_swapped_out, 0u);
  EXPECT_GT(s.swap.pages_swapped_in, 0u);
  EXPECT_GT(s.swap.bytes_written, 0u);
  EXPECT_EQ(s.swap.checksum_errors, 0u);
  EXPECT_LE(s.resident_pages, 8 * kMiB / kPage);
}

TEST_F(SwapTest, ManyEvictionCyclesOfTheSamePagesKeepTheLatestBytes) {
  constexpr std::size_t kPages = 8 * kMiB / kPage;
  Start(2 * kMiB, kPages * kPage, /*fill=*/false);
  for (std::uint64_t pass = 1; pass <= 6; ++pass) {
    for (std::size_t p = 0; p < kPages; ++p) {
      std::uint64_t* words = Page(p);
      if (pass > 1) {
        ASSERT_TRUE(PageHolds(words, p, pass - 1)) << "pass " << pass << " page " << p;
      }
      FillPage(words, p, pass);
    }
  }
  const uvmem::RangeStats r = rt_->StatsOf(*range_);
  EXPECT_GE(r.pages_swapped_out, 5 * (kPages - 2 * kMiB / kPage));
  EXPECT_GT(r.swapped_pages, 0u);
  EXPECT_LE(r.resident_pages, 2 * kMiB / kPage);
  Release();
  EXPECT_EQ(rt_->Stats().swap.slots_used, 0u) << "released ranges give their slots back";
}

TEST_F(SwapTest, SystemCallsReadAndWriteSwappedOutPages) {
  Start(2 * kMiB, 8 * kMiB);
  ASSERT_GT(rt_->StatsOf(*range_).swapped_pages, 0u);
  // write(2) from the first pages (swapped out by now) into a pipe, read(2) them back
  // into other swapped-out pages: the kernel's own accesses fault and are served.
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  for (std::size_t p = 0; p < 16; ++p) {
    ASSERT_EQ(write(fds[1], Page(p), kPage), static_cast<ssize_t>(kPage));
    ASSERT_EQ(read(fds[0], Page(64 + p), kPage), static_cast<ssize_t>(kPage));
    EXPECT_TRUE(PageHolds(Page(64 + p), p, 1)) << "page " << p;
  }
  close(fds[0]);
  close(fds[1]);
}

TEST_F(SwapTest, CleanPagesAreDroppedWithoutASecondWrite) {
  Start(4 * kMiB, 16 * kMiB);
  // Read-only passes: every page comes back from swap and goes out again unchanged.
  for (int pass = 0; pass < 3; ++pass) ASSERT_EQ(FirstWrong(1), pages_) << "pass " << pass;
  const uvmem::SwapStats after_reads = rt_->Stats().swap;
  EXPECT_GT(after_reads.clean_pages_dropped, pages_) << "read-only pages are not rewritten";
  EXPECT_LT(after_reads.bytes_written, 2 * pages_ * kPage);
  // A write makes a page dirty again: it is written out, and its new bytes come back.
  FillAll(2);
  EXPECT_EQ(FirstWrong(2), pages_);
  EXPECT_GT(rt_->Stats().swap.bytes_written, after_reads.bytes_written);
}

TEST_F(SwapTest, DiscardedSwappedPagesReadZero) {
  Start(2 * kMiB, 8 * kMiB);
  ASSERT_GT(rt_->Stats().swap.slots_used, 0u);
  ASSERT_TRUE(rt_->Discard(*range_, 0, pages_).ok());
  // A batch being written out as Discard ran is dropped by reclaim when its write ends.
  for (int i = 0; i < 100 && rt_->Stats().swap.slots_used != 0; ++i) usleep(10000);
  EXPECT_EQ(rt_->Stats().swap.slots_used, 0u);
  for (std::size_t p = 0; p < pages_; p += 7) EXPECT_EQ(Page(p)[0], 0u) << p;
}

TEST_F(SwapTest, AFailedWriteKeepsPagesResidentAndIsCounted) {
  Start(2 * kMiB, 4 * kMiB, /*fill=*/false);
  rt_->swap_device()->faults().write_error.store(ENOSPC);
  // Into the budget's low watermark (2 MiB = 512 pages; low = 32 free): the background
  // reclaimer tries to write, fails, and must keep every page resident and intact.
  constexpr std::size_t kFilled = 500;
  for (std::size_t p = 0; p < kFilled; ++p) FillPage(Page(p), p, 1);
  for (int i = 0; i < 200 && rt_->Stats().swap.write_errors == 0; ++i) usleep(10000);
  const uvmem::SwapStats s = rt_->Stats().swap;
  EXPECT_GT(s.write_errors, 0u);
  EXPECT_EQ(s.pages_swapped_out, 0u);
  for (std::size_t p = 0; p < kFilled; ++p) ASSERT_TRUE(PageHolds(Page(p), p, 1)) << p;
  rt_->swap_device()->faults().write_error.store(0);
  FillAll(2);
  EXPECT_EQ(FirstWrong(2), pages_);
}

TEST_F(SwapTest, ACorruptSlotPoisonsThePageInsteadOfReturningWrongBytes) {
  Start(2 * kMiB, 8 * kMiB);
  ASSERT_GT(rt_->StatsOf(*range_).swapped_pages, 16u);
  rt_->swap_device()->faults().corrupt_reads.store(true);
  // A system call on the poisoned page fails with EFAULT (user accesses would SIGBUS).
  EXPECT_EQ(WriteErrno(Page(0)), EFAULT);
  EXPECT_GT(rt_->Stats().swap.checksum_errors, 0u);
  rt_->swap_device()->faults().corrupt_reads.store(false);
}

TEST_F(SwapTest, AReadErrorPoisonsThePage) {
  Start(2 * kMiB, 8 * kMiB);
  rt_->swap_device()->faults().read_error.store(EIO);
  EXPECT_EQ(WriteErrno(Page(0)), EFAULT);
  EXPECT_GT(rt_->Stats().swap.read_errors, 0u);
  rt_->swap_device()->faults().read_error.store(0);
}

TEST(SwapDeathTest, TouchingAPoisonedPageRaisesSigbus) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        auto rt = MakeRuntime(SwapOptions(2 * kMiB));
        auto range = rt->Reserve(8 * kMiB, {});
        for (std::size_t p = 0; p < 8 * kMiB / kPage; ++p) FillPage(Words(*range, p), p, 1);
        rt->swap_device()->faults().corrupt_reads.store(true);
        volatile std::uint64_t v = Words(*range, 0)[0];
        (void)v;
        std::_Exit(0);
      },
      ::testing::KilledBySignal(SIGBUS), "checksum mismatch");
}

TEST(SwapDeathTest, ABudgetThatCannotBeMetRaisesSigbusNamingBudgetAndSwap) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        // 2 MiB of budget and 1 MiB of swap cannot hold 8 MiB.
        auto rt = MakeRuntime(SwapOptions(2 * kMiB, 1 * kMiB));
        auto range = rt->Reserve(8 * kMiB, {});
        for (std::size_t p = 0; p < 8 * kMiB / kPage; ++p) FillPage(Words(*range, p), p, 1);
        std::_Exit(0);
      },
      ::testing::KilledBySignal(SIGBUS), "resident budget exhausted.*swap");
}

// The fd of the runtime's swap file, found through /proc/self/fd.
int FindSwapFd(const std::string& dir) {
  DIR* d = opendir("/proc/self/fd");
  int found = -1;
  while (dirent* e = readdir(d)) {
    char target[512] = {};
    const std::string link = std::string("/proc/self/fd/") + e->d_name;
    const ssize_t n = readlink(link.c_str(), target, sizeof(target) - 1);
    if (n > 0 && std::string(target).rfind(dir + "/", 0) == 0) found = std::atoi(e->d_name);
  }
  closedir(d);
  return found;
}

std::set<std::string> List(const std::string& dir) {
  std::set<std::string> names;
  DIR* d = opendir(dir.c_str());
  while (dirent* e = readdir(d)) names.insert(e->d_name);
  closedir(d);
  return names;
}

TEST(SwapFileTest, IsPrivateUnlinkedAndGoneWithTheRuntime) {
  char dir_template[] = "/tmp/uvmem-swap-test-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  const std::set<std::string> before = List(dir);
  {
    uvmem::RuntimeOptions o = SwapOptions(2 * kMiB);
    o.swap_path = dir;
    auto rt = MakeRuntime(o);
    ASSERT_NE(rt, nullptr);
    EXPECT_EQ(List(dir), before) << "the swap file has no name in the directory";
    const int fd = FindSwapFd(dir);
    ASSERT_GE(fd, 0) << "no open file under " << dir;
    struct stat st {};
    ASSERT_EQ(fstat(fd, &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    EXPECT_EQ(st.st_nlink, 0u) << "unlinked";
    EXPECT_NE(rt->Stats().swap.device.find(dir), std::string::npos);
  }
  EXPECT_EQ(FindSwapFd(dir), -1) << "closed with the runtime";
  EXPECT_EQ(List(dir), before);
  rmdir(dir.c_str());
}

TEST(SwapOptionsTest, BadBudgetsAndSwapPathsAreRefusedWithReasons) {
  {
    auto rt = RuntimeImpl::Create(SwapOptions(4096));
    ASSERT_FALSE(rt.ok());
    EXPECT_EQ(rt.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(rt.status().message().find("1 MiB"), std::string::npos) << rt.status();
  }
  {
    auto rt = RuntimeImpl::Create(SwapOptions(512 * kMiB));  // pool is 256 MiB
    ASSERT_FALSE(rt.ok());
    EXPECT_NE(rt.status().message().find("pool"), std::string::npos) << rt.status();
  }
  {
    uvmem::RuntimeOptions o = SwapOptions(4 * kMiB);
    o.swap_path = "/nonexistent/uvmem-swap";
    auto rt = RuntimeImpl::Create(o);
    ASSERT_FALSE(rt.ok());
    EXPECT_NE(rt.status().message().find("/nonexistent/uvmem-swap"), std::string::npos)
        << rt.status();
  }
}

TEST_F(SwapTest, AForkedChildSeesTheParentsSwappedOutPages) {
  Start(2 * kMiB, 8 * kMiB);
  ASSERT_GT(rt_->StatsOf(*range_).swapped_pages, pages_ / 2);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The child: every page holds the parent's bytes, swapped ones included, and it can
    // write its own without touching the parent's.
    const bool all_there = FirstWrong(1) == pages_;
    FillAll(7);
    _exit(all_there ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "child died with signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the child read wrong bytes";
  // The parent swaps on (its pages shared at fork were made its own again); its pages
  // keep its own bytes.
  FillAll(2);
  EXPECT_EQ(FirstWrong(2), pages_);
  Release();
  EXPECT_EQ(rt_->Stats().swap.slots_used, 0u) << "held slots were let go";
}

TEST_F(SwapTest, NoBudgetMeansNoSwap) {
  Start(0, 8 * kMiB);
  const uvmem::RuntimeStats s = rt_->Stats();
  EXPECT_FALSE(s.swap.enabled);
  EXPECT_EQ(s.resident_pages, pages_);
}

}  // namespace
