// Tests of Userfaultfd against the running kernel: open and probe, then every ioctl
// wrapper with real faults served by a handler thread.
//
// Nothing here can hang: faults are always taken on a separate "faulter" thread while
// the test waits with a deadline; if the handler fails to serve, the test fails, closes
// the uffd (which wakes the faulter: its range is then unregistered) and joins.
#include "platform/pagemap.h"
#include "platform/userfaultfd.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "platform/memory_map.h"
#include "uvmem/types.h"

namespace uvmem::internal {
namespace {

using namespace std::chrono_literals;

constexpr auto kDeadline = 30s;  // only a guard against hangs; tests finish in ms

// Opens a uffd with `features`, or skips the test when the kernel lacks any of them.
// Usage: UFFD_OPEN_OR_SKIP(uffd, features) declares `Userfaultfd uffd`.
#define UFFD_OPEN_OR_SKIP(var, feature_bits, ...)                                     \
  absl::StatusOr<UffdProbe> var##_probe = ProbeUserfaultfd();                         \
  if (!var##_probe.ok()) GTEST_SKIP() << "no userfaultfd: " << var##_probe.status();  \
  if (!var##_probe->features.has(feature_bits)) {                                     \
    GTEST_SKIP() << "kernel lacks userfaultfd features "                              \
                 << UffdFeatures(feature_bits).Without(var##_probe->features).bits(); \
  }                                                                                   \
  absl::StatusOr<Userfaultfd> var##_or =                                              \
      Userfaultfd::Open(UffdFeatures(feature_bits), ##__VA_ARGS__);                   \
  ASSERT_TRUE(var##_or.ok()) << var##_or.status();                                    \
  Userfaultfd var = std::move(*var##_or)

// An anonymous reservation of `pages` pages, released at scope exit.
class Region {
 public:
  explicit Region(std::size_t pages) : length_(pages * kPageSize) {
    absl::StatusOr<void*> r = ReserveAnonymous(length_, kPageSize);
    EXPECT_TRUE(r.ok()) << r.status();
    base_ = r.ok() ? static_cast<char*>(*r) : nullptr;
  }
  ~Region() {
    if (base_ != nullptr) {
      EXPECT_TRUE(ReleaseMapping(base_, length_).ok());
    }
  }
  char* page(std::size_t i) const { return base_ + i * kPageSize; }
  char* base() const { return base_; }
  std::size_t length() const { return length_; }

 private:
  char* base_;
  std::size_t length_;
};

// Where the page lives: node >= 0, -ENOENT when not present (move_pages, no touching).
int PageStatus(void* page) {
  void* pages[1] = {page};
  int status[1] = {0};
  EXPECT_TRUE(QueryPageNodes(pages, status).ok());
  return status[0];
}

// A page-aligned source buffer filled with `byte`.
struct SourcePages {
  explicit SourcePages(std::size_t pages, char byte) : bytes(pages * kPageSize + kPageSize) {
    data = reinterpret_cast<char*>(
        (reinterpret_cast<std::uintptr_t>(bytes.data()) + kPageSize - 1) & ~(kPageSize - 1));
    std::memset(data, byte, pages * kPageSize);
  }
  std::vector<char> bytes;
  char* data;
};

// Runs `serve` for every message read from the uffd on a handler thread, while `fault`
// runs on a faulter thread. Returns true when `fault` finished before the deadline.
// Otherwise closes the uffd so the faulter is released, and returns false. `events`
// receives every message read.
bool RunFaults(Userfaultfd& uffd, const std::function<void(const UffdEvent&)>& serve,
               const std::function<void()>& fault, std::vector<UffdEvent>* events = nullptr) {
  std::atomic<bool> stop{false};
  std::atomic<bool> done{false};
  std::mutex mu;
  std::vector<UffdEvent> seen;
  std::thread handler([&] {
    while (!stop.load()) {
      pollfd p{uffd.fd(), POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      UffdEvent batch[16];
      UffdReadResult r = uffd.ReadEvents(batch);
      if (r.error == EAGAIN) continue;
      if (r.error != 0) {
        ADD_FAILURE() << "ReadEvents: " << std::strerror(r.error);
        return;
      }
      for (std::size_t i = 0; i < r.count; ++i) {
        {
          std::lock_guard<std::mutex> lock(mu);
          seen.push_back(batch[i]);
        }
        serve(batch[i]);
      }
    }
  });
  std::thread faulter([&] {
    fault();
    done.store(true);
  });
  const auto deadline = std::chrono::steady_clock::now() + kDeadline;
  while (!done.load() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  const bool finished = done.load();
  stop.store(true);
  handler.join();
  if (!finished) {
    ADD_FAILURE() << "the faulting thread was not served before the deadline";
    uffd = Userfaultfd();  // close: wakes the faulter, which retries unregistered
  }
  faulter.join();
  if (events != nullptr) *events = seen;
  return finished;
}

std::uintptr_t Addr(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

// ---- probe and open ----------------------------------------------------------------------

TEST(UffdFeatures, TableIsCompleteAndOrdered) {
  absl::Span<const UffdFeatureInfo> known = KnownUffdFeatures();
  ASSERT_EQ(known.size(), 17u);  // bits 0..16, up to MOVE
  for (std::size_t i = 0; i < known.size(); ++i) {
    EXPECT_EQ(known[i].bit, std::uint64_t{1} << i) << known[i].name;
    EXPECT_FALSE(known[i].name.empty());
    EXPECT_FALSE(known[i].summary.empty());
  }
  EXPECT_EQ(known.back().name, "MOVE");
  UffdFeatures f(kUffdFeatureMove | kUffdFeatureWpAsync);
  EXPECT_TRUE(f.move());
  EXPECT_TRUE(f.wp_async());
  EXPECT_FALSE(f.poison());
  EXPECT_EQ(f.Without(UffdFeatures(kUffdFeatureMove)).bits(), kUffdFeatureWpAsync);
}

TEST(Userfaultfd, ProbeReportsNewFeatures) {
  absl::StatusOr<UffdProbe> probe = ProbeUserfaultfd();
  ASSERT_TRUE(probe.ok()) << probe.status();
  const UffdFeatures f = probe->features;
  EXPECT_TRUE(f.event_fork() && f.event_remap() && f.event_remove() && f.event_unmap());
  EXPECT_TRUE(f.thread_id());
  if (!f.move()) GTEST_SKIP() << "kernel without UFFD_FEATURE_MOVE (Linux < 6.8)";
  // MOVE came last; a kernel with it has the features added before it.
  EXPECT_TRUE(f.wp_async());
  EXPECT_TRUE(f.poison());
  EXPECT_TRUE(f.wp_unpopulated());
  EXPECT_TRUE(ProbePagemapScan());
}

TEST(Userfaultfd, OpenEnablesWhatWasAsked) {
  UFFD_OPEN_OR_SKIP(uffd, kUffdFeatureThreadId | kUffdFeatureEventRemove);
  EXPECT_TRUE(uffd.valid());
  EXPECT_EQ(uffd.features().bits(), kUffdFeatureThreadId | kUffdFeatureEventRemove);
  EXPECT_EQ(uffd.mode(), uffd_probe->mode);
  // Empty and non-blocking: nothing to read.
  UffdEvent events[4];
  UffdReadResult r = uffd.ReadEvents(events);
  EXPECT_EQ(r.error, EAGAIN);
  EXPECT_EQ(r.count, 0u);
}

TEST(Userfaultfd, WpAsyncImpliesWpUnpopulated) {
  UFFD_OPEN_OR_SKIP(uffd, kUffdFeatureWpAsync);
  EXPECT_TRUE(uffd.features().wp_async());
  EXPECT_TRUE(uffd.features().wp_unpopulated());
}

TEST(Userfaultfd, OpenRejectsFeaturesTheKernelLacks) {
  absl::StatusOr<Userfaultfd> uffd = Userfaultfd::Open(UffdFeatures(std::uint64_t{1} << 40));
  ASSERT_FALSE(uffd.ok());
  EXPECT_EQ(uffd.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(uffd.status().message().find("unknown bits 0x10000000000"), std::string::npos)
      << uffd.status();
}

TEST(Userfaultfd, MoveOnlyOwnership) {
  UFFD_OPEN_OR_SKIP(a, 0);
  const int fd = a.fd();
  Userfaultfd b = std::move(a);
  EXPECT_FALSE(a.valid());  // NOLINT(bugprone-use-after-move): moved-from is empty
  EXPECT_EQ(b.fd(), fd);
  const int released = b.Release();
  EXPECT_EQ(released, fd);
  EXPECT_FALSE(b.valid());
  EXPECT_EQ(::close(released), 0);  // still open: Release did not close it
}

TEST(Userfaultfd, RegisterReportsAllowedIoctlsAndErrors) {
  UFFD_OPEN_OR_SKIP(uffd, 0);
  Region region(4);
  UffdRegisterResult r = uffd.Register(region.base(), region.length(), {.missing = true});
  ASSERT_EQ(r.error, 0) << std::strerror(r.error);
  EXPECT_TRUE(r.ioctls.copy());
  EXPECT_TRUE(r.ioctls.zeropage());
  EXPECT_TRUE(r.ioctls.wake());
  EXPECT_FALSE(r.ioctls.writeprotect());  // not registered for WP
  if (uffd_probe->features.move()) {
    EXPECT_TRUE(r.ioctls.move());
  }
  EXPECT_EQ(uffd.Unregister(region.base(), region.length()), 0);
  EXPECT_EQ(uffd.Register(region.base() + 1, kPageSize, {}).error, EINVAL);
  EXPECT_EQ(uffd.Register(region.base(), kPageSize, {.missing = false}).error, EINVAL);
}

// ---- serving faults ----------------------------------------------------------------------

TEST(Userfaultfd, CopyServesAMissingFault) {
  UFFD_OPEN_OR_SKIP(uffd, kUffdFeatureThreadId);
  Region region(4);
  ASSERT_EQ(uffd.Register(region.base(), region.length(), {}).error, 0);
  SourcePages src(1, 'x');
  std::atomic<int> faulter_tid{0};
  char seen = 0;
  std::vector<UffdEvent> events;
  ASSERT_TRUE(RunFaults(
      uffd,
      [&](const UffdEvent& e) {
        UffdResult r = uffd.Copy(reinterpret_cast<void*>(e.address), src.data, kPageSize);
        EXPECT_TRUE(r.ok()) << std::strerror(r.error);
        EXPECT_EQ(r.bytes_done, kPageSize);
      },
      [&] {
        faulter_tid.store(static_cast<int>(::gettid()));
        seen = *static_cast<volatile char*>(region.page(1) + 123);
      },
      &events));
  EXPECT_EQ(seen, 'x');
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, UffdEventKind::kPageFault);
  EXPECT_EQ(events[0].address, Addr(region.page(1)));  // rounded down to the page
  EXPECT_FALSE(events[0].write);
  EXPECT_FALSE(events[0].wp);
  EXPECT_EQ(events[0].thread_id, static_cast<std::uint32_t>(faulter_tid.load()));
  EXPECT_EQ(PageStatus(region.page(0)), -ENOENT);  // neighbours untouched
}

TEST(Userfaultfd, ZeroPageServesAFaultAndWritesStillWork) {
  UFFD_OPEN_OR_SKIP(uffd, 0);
  Region region(2);
  ASSERT_EQ(uffd.Register(region.base(), region.length(), {}).error, 0);
  char seen = 1;
  std::vector<UffdEvent> events;
  ASSERT_TRUE(RunFaults(
      uffd,
      [&](const UffdEvent& e) {
        UffdResult r = uffd.ZeroPage(reinterpret_cast<void*>(e.address), kPageSize);
        EXPECT_TRUE(r.ok()) << std::strerror(r.error);
      },
      [&] {
        seen = *static_cast<volatile char*>(region.page(0));
        region.page(0)[5] = 7;  // copy-on-write of the zero page: no uffd involvement
      },
      &events));
  EXPECT_EQ(seen, 0);
  EXPECT_EQ(region.page(0)[5], 7);
  EXPECT_EQ(events.size(), 1u);
}

TEST(Userfaultfd, WriteFaultCarriesTheWriteFlag) {
  UFFD_OPEN_OR_SKIP(uffd, 0);
  Region region(1);
  ASSERT_EQ(uffd.Register(region.base(), region.length(), {}).error, 0);
  SourcePages src(1, 0);
  std::vector<UffdEvent> events;
  ASSERT_TRUE(RunFaults(
      uffd,
      [&](const UffdEvent& e) {
        EXPECT_TRUE(uffd.Copy(reinterpret_cast<void*>(e.address), src.data, kPageSize).ok());
      },
      [&] { *static_cast<volatile char*>(region.page(0) + 9) = 'w'; }, &events));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_TRUE(events[0].write);
  EXPECT_EQ(region.page(0)[9], 'w');
}

TEST(Userfaultfd, CopyOntoAPresentPageIsEEXIST) {
  UFFD_OPEN_OR_SKIP(uffd, 0);
  Region region(1);
  ASSERT_EQ(uffd.Register(region.base(), region.length(), {}).error, 0);
  SourcePages a(1, 'a'), b(1, 'b');
  UffdResult first = uffd.Copy(region.page(0), a.data, kPageSize);
  ASSERT_TRUE(first.ok()) << std::strerror(first.error);
  EXPECT_EQ(first.bytes_done, kPageSize);
  UffdResult second = uffd.Copy(region.page(0), b.data, kPageSize);
  EXPECT_EQ(second.error, EEXIST);
  EXPECT_EQ(second.bytes_done, 0u);
  EXPECT_EQ(region.page(0)[0], 'a');  // the first copy stands
}

TEST(Userfaultfd, PartialCopyReportsThePrefixAndWhyItStopped) {
  UFFD_OPEN_OR_SKIP(uffd, 0);
  Region region(4);
  ASSERT_EQ(uffd.Register(region.base(), region.length(), {}).error, 0);
  SourcePages middle(1, 'm'), span(4, 's');
  ASSERT_TRUE(uffd.Copy(region.page(2), middle.data, kPageSize).ok());
  // Pages 0 and 1 are copied, page 2 is present: stop there with EEXIST.
  UffdResult r = uffd.Copy(region.base(), span.data, 4 * kPageSize);
  EXPECT_EQ(r.error, EEXIST);
  EXPECT_EQ(r.bytes_done, 2 * kPageSize);
  EXPECT_EQ(region.page(0)[0], 's');
  EXPECT_EQ(region.page(1)[kPageSize - 1], 's');
  EXPECT_EQ(region.page(2)[0], 'm');
  EXPECT_EQ(PageStatus(region.page(3)), -ENOENT);  // never reached
  // Resuming after the present page finishes the job.
  UffdResult rest = uffd.Copy(region.page(3), span.data + 3 * kPageSize, kPageSize);
  EXPECT_TRUE(rest.ok());
  EXPECT_EQ(region.page(3)[0], 's');
}

TEST(Userfaultfd, PartialMoveReportsThePrefixAndWhyItStopped) {
  UFFD_OPEN_OR_SKIP(uffd, kUffdFeatureMove);
  Region region(4);
  ASSERT_EQ(uffd.Register(region.base(), region.length(), {}).error, 0);
  SourcePages middle(1, 'm');
  ASSERT_TRUE(uffd.Copy(region.page(2), middle.data, kPageSize).ok());
  Region source(4);
  std::memset(source.base(), 'v', 4 * kPageSize);
  // Pages 0 and 1 move, page 2 is present: stop there with EEXIST; the rest of the
  // source stays where it was.
  UffdResult r = uffd.Move(region.base(), source.base(), 4 * kPageSize);
  EXPECT_EQ(r.error, EEXIST);
  EXPECT_EQ(r.bytes_done, 2 * kPageSize);
  EXPECT_EQ(region.page(1)[0], 'v');
  EXPECT_EQ(region.page(2)[0], 'm');
  EXPECT_EQ(PageStatus(source.page(0)), -ENOENT);
  EXPECT_GE(PageStatus(source.page(2)), 0);
  EXPECT_EQ(PageStatus(region.page(3)), -ENOENT);
}

TEST(Userfaultfd, PartialPoisonReportsThePrefixAndWhyItStopped) {
  UFFD_OPEN_OR_SKIP(uffd, kUffdFeaturePoison);
  Region region(3);
  ASSERT_EQ(uffd.Register(region.base(), region.length(), {}).error, 0);
  SourcePages one(1, 'p');
  ASSERT_TRUE(uffd.Copy(region.page(1), one.data, kPageSize).ok());
  UffdResult r = uffd.Poison(region.base(), 3 * kPageSize);
  EXPECT_EQ(r.error, EEXIST);
  EXPECT_EQ(r.bytes_done, kPageSize);
  EXPECT_EQ(region.page(1)[0], 'p') << "the present page is untouched";
}

TEST(Userfaultfd, PartialZeroPageStopsAtAPresentPage) {
  UFFD_OPEN_OR_SKIP(uffd, 0);
  Region region(3);
  ASSERT_EQ(uffd.Register(region.base(), region.length(), {}).error, 0);
  SourcePages one(1, 'p');
  ASSERT_TRUE(uffd.Copy(region.page(1), one.data, kPageSize).ok());
  UffdResult r = uffd.ZeroPage(region.base(), 3 * kPageSize);
  EXPECT_EQ(r.error, EEXIST);
  EXPECT_EQ(r.bytes_done, kPageSize);
}

TEST(Userfaultfd, MoveTakesTheFrameFromTheSource) {
  UFFD_OPEN_OR_SKIP(uffd, kUffdFeatureMove);
  Region region(2);
  ASSERT_EQ(uffd.Register(region.base(), region.length(), {}).error, 0);
  Region source(2);  // not registered: any private anonymous range can be a source
  std::memset(source.page(0), 'v', kPageSize);
  ASSERT_GE(PageStatus(source.page(0)), 0);

  UffdResult r = uffd.Move(region.page(0), source.page(0), kPageSize);
  ASSERT_TRUE(r.ok()) << std::strerror(r.error);
  EXPECT_EQ(r.bytes_done, kPageSize);
  EXPECT_EQ(PageStatus(source.page(0)), -ENOENT);  // the source is gone...
  EXPECT_EQ(region.page(0)[0], 'v');               // ...its bytes arrived
  EXPECT_EQ(region.page(0)[kPageSize - 1], 'v');
  EXPECT_EQ(source.page(0)[0], 0);  // touching the source again gives a fresh zero page

  // Onto a present page: EEXIST. From a hole: ENOENT, unless holes are allowed.
  std::memset(source.page(1), 'w', kPageSize);
  EXPECT_EQ(uffd.Move(region.page(0), source.page(1), kPageSize).error, EEXIST);
  ASSERT_EQ(DiscardPages(source.page(1), kPageSize), 0);
  UffdResult hole = uffd.Move(region.page(1), source.page(1), kPageSize);
  EXPECT_EQ(hole.error, ENOENT);
  EXPECT_EQ(hole.bytes_done, 0u);
  UffdResult allowed =
      uffd.Move(region.page(1), source.page(1), kPageSize, {.allow_src_holes = true});
  EXPECT_TRUE(allowed.ok()) << std::strerror(allowed.error);
  EXPECT_EQ(allowed.bytes_done, kPageSize);
  EXPECT_EQ(PageStatus(region.page(1)), -ENOENT);  // a hole moved is still a hole
}

TEST(Userfaultfd, MoveServesAFault) {
  UFFD_OPEN_OR_SKIP(uffd, kUffdFeatureMove);
  Region region(1);
  ASSERT_EQ(uffd.Register(region.base(), region.length(), {}).error, 0);
  Region source(1);
  std::memset(source.base(), 'q', kPageSize);
  char seen = 0;
  ASSERT_TRUE(RunFaults(
      uffd,
      [&](const UffdEvent& e) {
        UffdResult r = uffd.Move(reinterpret_cast<void*>(e.address), source.base(), kPageSize);
        EXPECT_TRUE(r.ok()) << std::strerror(r.error);
      },
      [&] { seen = *static_cast<volatile char*>(region.base() + 77); }));
  EXPECT_EQ(seen, 'q');
}

TEST(Userfaultfd, WriteProtectFaultsAndUnprotectWakesTheWriter) {
  UFFD_OPEN_OR_SKIP(uffd, kUffdFeaturePagefaultFlagWp);
  Region region(1);
  UffdRegisterResult reg =
      uffd.Register(region.base(), region.length(), {.missing = true, .wp = true});
  ASSERT_EQ(reg.error, 0) << std::strerror(reg.error);
  ASSERT_TRUE(reg.ioctls.writeprotect());
  SourcePages src(1, 'r');
  ASSERT_TRUE(uffd.Copy(region.base(), src.data, kPageSize).ok());
  ASSERT_EQ(uffd.WriteProtect(region.base(), kPageSize, /*protect=*/true), 0);
  EXPECT_EQ(region.base()[0], 'r');  // reads are not trapped

  std::vector<UffdEvent> events;
  ASSERT_TRUE(RunFaults(
      uffd,
      [&](const UffdEvent& e) {
        EXPECT_EQ(uffd.WriteProtect(reinterpret_cast<void*>(e.address), kPageSize,
                                    /*protect=*/false),
                  0);
      },
      [&] { *static_cast<volatile char*>(region.base() + 1) = 'W'; }, &events));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, UffdEventKind::kPageFault);
  EXPECT_TRUE(events[0].wp);
  EXPECT_TRUE(events[0].write);
  EXPECT_EQ(events[0].address, Addr(region.base()));
  EXPECT_EQ(region.base()[0], 'r');
  EXPECT_EQ(region.base()[1], 'W');
}

TEST(Userfaultfd, KernelModeFaultBlocksUntilServedInFullMode) {
  UFFD_OPEN_OR_SKIP(uffd, 0);
  if (uffd.mode() != UffdMode::kFull) GTEST_SKIP() << "needs a full (kernel-mode) uffd";
  Region region(1);
  ASSERT_EQ(uffd.Register(region.base(), region.length(), {}).error, 0);
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  ASSERT_EQ(::write(fds[1], "hello", 5), 5);
  ssize_t got = -1;
  std::vector<UffdEvent> events;
  ASSERT_TRUE(RunFaults(
      uffd,
      [&](const UffdEvent& e) {
        EXPECT_TRUE(uffd.ZeroPage(reinterpret_cast<void*>(e.address), kPageSize).ok());
      },
      [&] { got = ::read(fds[0], region.base() + 100, 5); }, &events));
  EXPECT_EQ(got, 5);
  EXPECT_EQ(std::memcmp(region.base() + 100, "hello", 5), 0);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_TRUE(events[0].write);  // copy_to_user writes
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST(Userfaultfd, UserModeOnlyFailsKernelAccessesWithEFAULT) {
  UFFD_OPEN_OR_SKIP(uffd, 0, UffdOpenOptions{.user_mode_only = true});
  EXPECT_EQ(uffd.mode(), UffdMode::kUserModeOnly);
  Region region(1);
  ASSERT_EQ(uffd.Register(region.base(), region.length(), {}).error, 0);
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  ASSERT_EQ(::write(fds[1], "hello", 5), 5);
  ssize_t got = 0;
  int err = 0;
  std::vector<UffdEvent> events;
  ASSERT_TRUE(RunFaults(
      uffd, [&](const UffdEvent&) { ADD_FAILURE() << "no message expected"; },
      [&] {
        got = ::read(fds[0], region.base(), 5);
        err = errno;
      },
      &events));
  EXPECT_EQ(got, -1);
  EXPECT_EQ(err, EFAULT);
  EXPECT_TRUE(events.empty());
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST(Userfaultfd, PoisonedPageKillsWithSIGBUS) {
  UFFD_OPEN_OR_SKIP(probe_only, kUffdFeaturePoison);
  probe_only = Userfaultfd();
  // In a child: the poisoned access must kill it, and only it.
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::alarm(20);                // never outlive a broken kernel
    ::signal(SIGBUS, SIG_DFL);  // sanitizers install their own handler
    absl::StatusOr<Userfaultfd> uffd = Userfaultfd::Open(UffdFeatures(kUffdFeaturePoison));
    if (!uffd.ok()) ::_exit(10);
    void* page =
        ::mmap(nullptr, kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) ::_exit(11);
    if (uffd->Register(page, kPageSize, {}).error != 0) ::_exit(12);
    UffdResult r = uffd->Poison(page, kPageSize);
    if (!r.ok() || r.bytes_done != kPageSize) ::_exit(13);
    // A kernel access fails with EFAULT instead of killing.
    int fds[2];
    if (::pipe(fds) != 0 || ::write(fds[1], "x", 1) != 1) ::_exit(14);
    if (::read(fds[0], page, 1) != -1 || errno != EFAULT) ::_exit(15);
    // Poisoning a poisoned page: already there.
    if (uffd->Poison(page, kPageSize).error != EEXIST) ::_exit(16);
    (void)*static_cast<volatile char*>(page);  // SIGBUS
    ::_exit(17);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_FALSE(WIFEXITED(status)) << "child exited with code " << WEXITSTATUS(status);
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGBUS);
}

TEST(Userfaultfd, UnregisteredRangeFaultsNormally) {
  UFFD_OPEN_OR_SKIP(uffd, 0);
  Region region(2);
  ASSERT_EQ(uffd.Register(region.base(), region.length(), {}).error, 0);
  ASSERT_EQ(uffd.Unregister(region.base(), region.length()), 0);
  char seen = 1;
  std::vector<UffdEvent> events;
  ASSERT_TRUE(RunFaults(
      uffd, [&](const UffdEvent&) { ADD_FAILURE() << "unregistered range faulted to uffd"; },
      [&] {
        seen = *static_cast<volatile char*>(region.page(1));
        region.page(0)[0] = 3;
      },
      &events));
  EXPECT_EQ(seen, 0);
  EXPECT_EQ(region.page(0)[0], 3);
  EXPECT_TRUE(events.empty());
  // Not registered any more: the fill ioctls refuse it.
  SourcePages src(1, 'z');
  EXPECT_NE(uffd.Copy(region.page(1), src.data, kPageSize).error, 0);
}

TEST(Userfaultfd, RemoveEventReportsTheRange) {
  UFFD_OPEN_OR_SKIP(uffd, kUffdFeatureEventRemove);
  Region region(4);
  ASSERT_EQ(uffd.Register(region.base(), region.length(), {}).error, 0);
  SourcePages src(4, 'd');
  ASSERT_TRUE(uffd.Copy(region.base(), src.data, 4 * kPageSize).ok());
  int discard = -1;
  std::vector<UffdEvent> events;
  // MADV_DONTNEED blocks until the handler has read the REMOVE event.
  ASSERT_TRUE(RunFaults(
      uffd, [](const UffdEvent&) {}, [&] { discard = DiscardPages(region.page(1), 2 * kPageSize); },
      &events));
  EXPECT_EQ(discard, 0);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, UffdEventKind::kRemove);
  EXPECT_EQ(events[0].range_start, Addr(region.page(1)));
  EXPECT_EQ(events[0].range_end, Addr(region.page(3)));
  EXPECT_EQ(PageStatus(region.page(1)), -ENOENT);
  EXPECT_EQ(region.page(0)[0], 'd');
}

TEST(Userfaultfd, ConcurrentFaultsOnOnePageOneCopyWins) {
  UFFD_OPEN_OR_SKIP(uffd, 0);
  Region region(1);
  ASSERT_EQ(uffd.Register(region.base(), region.length(), {}).error, 0);
  SourcePages src(1, 'c');
  std::atomic<int> copied{0}, existed{0};
  char seen[3] = {};
  ASSERT_TRUE(RunFaults(
      uffd,
      [&](const UffdEvent& e) {
        UffdResult r = uffd.Copy(reinterpret_cast<void*>(e.address), src.data, kPageSize);
        if (r.ok()) {
          copied.fetch_add(1);
        } else {
          EXPECT_EQ(r.error, EEXIST);
          existed.fetch_add(1);
          EXPECT_EQ(uffd.Wake(reinterpret_cast<void*>(e.address), kPageSize), 0);
        }
      },
      [&] {
        std::thread readers[3];
        for (int i = 0; i < 3; ++i) {
          readers[i] =
              std::thread([&, i] { seen[i] = *static_cast<volatile char*>(region.base()); });
        }
        for (auto& t : readers) t.join();
      }));
  EXPECT_EQ(copied.load(), 1);
  for (char c : seen) EXPECT_EQ(c, 'c');
}

}  // namespace
}  // namespace uvmem::internal

namespace uvmem::internal {
namespace {

// Runs `body` in a child that has dropped root (to nobody); returns the child's exit code
// (or 100 + signal). `prepare` runs in the child before privileges are dropped.
template <typename Prepare, typename Body>
int InUnprivilegedChild(Prepare prepare, Body body) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::alarm(20);
    if (int rc = prepare(); rc != 0) ::_exit(rc);
    if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) {
      ::_exit(90);
    }
    ::_exit(body());
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
}

// The fallback chain as an unprivileged process meets it: userfaultfd(2) is EPERM
// (vm.unprivileged_userfaultfd=0), /dev/userfaultfd is root's, so the only uffd is
// user-mode-only; and Open without that permission says how to fix it.
TEST(UserfaultfdFallback, UnprivilegedGetsUserModeOnly) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to drop privileges in a child";
  struct stat st = {};
  if (::stat("/dev/userfaultfd", &st) == 0 && (st.st_mode & S_IROTH)) {
    GTEST_SKIP() << "/dev/userfaultfd is open to everyone here";
  }
  const int rc = InUnprivilegedChild([] { return 0; },
                                     [] {
                                       auto strict = Userfaultfd::Open(
                                           UffdFeatures(0), {.allow_user_mode_only = false});
                                       if (strict.ok()) return 1;
                                       if (strict.status().code() !=
                                           absl::StatusCode::kPermissionDenied) {
                                         return 2;
                                       }
                                       auto uffd = Userfaultfd::Open(UffdFeatures(0));
                                       if (!uffd.ok()) return 3;
                                       if (uffd->mode() != UffdMode::kUserModeOnly) return 4;
                                       return 0;
                                     });
  EXPECT_EQ(rc, 0);
}

// With read-write access to /dev/userfaultfd an unprivileged process gets a full uffd
// through USERFAULTFD_IOC_NEW. The access is granted in a private mount namespace (a
// 0666 device node bind-mounted over /dev/userfaultfd), so the machine is untouched.
TEST(UserfaultfdFallback, DevNodeGivesUnprivilegedFullMode) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root for a private mount namespace";
  struct stat st = {};
  if (::stat("/dev/userfaultfd", &st) != 0 || !S_ISCHR(st.st_mode)) {
    GTEST_SKIP() << "no /dev/userfaultfd (kernel < 6.1)";
  }
  const dev_t device = st.st_rdev;
  const int rc = InUnprivilegedChild(
      [device] {
        if (::unshare(CLONE_NEWNS) != 0) return 80;
        if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return 81;
        char path[] = "/tmp/uvmem-uffd-XXXXXX";
        const int fd = ::mkstemp(path);
        if (fd < 0) return 82;
        ::close(fd);
        ::unlink(path);
        if (::mknod(path, S_IFCHR | 0666, device) != 0) return 83;
        ::chmod(path, 0666);
        if (::mount(path, "/dev/userfaultfd", nullptr, MS_BIND, nullptr) != 0) return 84;
        ::unlink(path);
        return 0;
      },
      [] {
        auto uffd = Userfaultfd::Open(UffdFeatures(0), {.allow_user_mode_only = false});
        if (!uffd.ok()) return 1;
        if (uffd->mode() != UffdMode::kFull) return 2;
        if (uffd->path() != UffdOpenPath::kDevNode) return 3;
        return 0;
      });
  if (rc >= 80 && rc < 90) GTEST_SKIP() << "cannot build a private mount namespace here: " << rc;
  EXPECT_EQ(rc, 0);
}

}  // namespace
}  // namespace uvmem::internal
