// Tests of the swap device: the backing file (O_TMPFILE, existing files, bad paths), the
// cluster slot allocator, reference counts, page I/O with checksums, injected I/O faults,
// and concurrent use.
#include "vm/swap_device.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace uvmem::internal {
namespace {

constexpr std::uint64_t kMiB = std::uint64_t{1} << 20;
constexpr std::size_t kPage = 4096;
constexpr std::uint64_t kCluster = SwapDevice::kClusterSlots;

// A fresh empty directory, removed (with any files left in it) at scope exit.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base != nullptr && base[0] != '\0' ? base : "/tmp") +
                       "/uvmem-swap-test-XXXXXX";
    EXPECT_NE(::mkdtemp(tmpl.data()), nullptr) << std::strerror(errno);
    path_ = tmpl;
  }
  ~TempDir() {
    for (const std::string& name : Entries()) ::unlink((path_ + "/" + name).c_str());
    ::rmdir(path_.c_str());
  }
  const std::string& path() const { return path_; }
  std::vector<std::string> Entries() const {
    std::vector<std::string> names;
    DIR* dir = ::opendir(path_.c_str());
    if (dir == nullptr) return names;
    while (dirent* e = ::readdir(dir)) {
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
        names.push_back(e->d_name);
      }
    }
    ::closedir(dir);
    return names;
  }

 private:
  std::string path_;
};

std::unique_ptr<SwapDevice> OpenDevice(const std::string& dir, std::uint64_t bytes) {
  SwapDeviceOptions options;
  options.path = dir;
  options.max_bytes = bytes;
  absl::StatusOr<std::unique_ptr<SwapDevice>> device = SwapDevice::Open(options);
  EXPECT_TRUE(device.ok()) << device.status();
  return device.ok() ? *std::move(device) : nullptr;
}

// Page-aligned page buffers filled from a seed.
class Pages {
 public:
  explicit Pages(std::size_t count) : count_(count) {
    void* p = nullptr;
    EXPECT_EQ(::posix_memalign(&p, kPage, count * kPage), 0);
    base_ = static_cast<unsigned char*>(p);
    std::memset(base_, 0, count * kPage);
  }
  ~Pages() { std::free(base_); }
  unsigned char* page(std::size_t i) { return base_ + i * kPage; }
  void Fill(std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    for (std::size_t i = 0; i < count_ * kPage; i += 8) {
      const std::uint64_t v = rng();
      std::memcpy(base_ + i, &v, 8);
    }
  }
  std::vector<const void*> ConstPointers() {
    std::vector<const void*> p;
    for (std::size_t i = 0; i < count_; ++i) p.push_back(page(i));
    return p;
  }
  std::vector<void*> Pointers() {
    std::vector<void*> p;
    for (std::size_t i = 0; i < count_; ++i) p.push_back(page(i));
    return p;
  }

 private:
  std::size_t count_;
  unsigned char* base_ = nullptr;
};

class SwapDeviceTest : public ::testing::Test {
 protected:
  TempDir dir_;
};

// ---- the backing file ------------------------------------------------------------------

TEST_F(SwapDeviceTest, TmpfileIsUnlinkedSparseAndMode0600) {
  absl::StatusOr<SwapFile> file = SwapFile::Open(dir_.path(), 3 * kMiB + 100, 64 * kMiB);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->capacity_bytes(), 3 * kMiB);
  EXPECT_TRUE(file->description().starts_with(dir_.path() + " (O_TMPFILE)") ||
              file->description().starts_with(dir_.path() + " (mkstemp, unlinked)"))
      << file->description();
  struct stat st;
  ASSERT_EQ(::fstat(file->fd(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_nlink, 0u);
  EXPECT_EQ(static_cast<std::uint64_t>(st.st_size), 3 * kMiB);
  EXPECT_EQ(st.st_blocks, 0);  // sparse
  char target[4096];
  const std::string link = "/proc/self/fd/" + std::to_string(file->fd());
  const ssize_t n = ::readlink(link.c_str(), target, sizeof(target) - 1);
  ASSERT_GT(n, 0);
  EXPECT_TRUE(std::string(target, n).ends_with("(deleted)")) << std::string(target, n);
  EXPECT_TRUE(dir_.Entries().empty());
}

TEST_F(SwapDeviceTest, TmpfileTakesModeAndDefaultSize) {
  const mode_t old_umask = ::umask(077);  // the mode must not depend on the umask
  absl::StatusOr<SwapFile> file = SwapFile::Open(dir_.path(), 0, 2 * kMiB, 0640);
  ::umask(old_umask);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->capacity_bytes(), 2 * kMiB);
  struct stat st;
  ASSERT_EQ(::fstat(file->fd(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_TRUE(dir_.Entries().empty());
}

TEST_F(SwapDeviceTest, EmptyPathUsesTmpdir) {
  const char* old = std::getenv("TMPDIR");
  const std::string saved = old != nullptr ? old : "";
  ::setenv("TMPDIR", dir_.path().c_str(), 1);
  absl::StatusOr<SwapFile> file = SwapFile::Open("", 0, kMiB);
  if (old != nullptr) {
    ::setenv("TMPDIR", saved.c_str(), 1);
  } else {
    ::unsetenv("TMPDIR");
  }
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE(file->description().starts_with(dir_.path() + " (")) << file->description();
}

TEST_F(SwapDeviceTest, ExistingFileKeepsOrGrowsItsSize) {
  const std::string path = dir_.path() + "/swapfile";
  const int fd = ::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 2 * kMiB + 100), 0);
  ::close(fd);

  absl::StatusOr<SwapFile> same = SwapFile::Open(path, 0, 64 * kMiB);
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ(same->capacity_bytes(), 2 * kMiB);  // rounded down to slots
  EXPECT_TRUE(same->description().starts_with(path)) << same->description();

  absl::StatusOr<SwapFile> grown = SwapFile::Open(path, 3 * kMiB, 64 * kMiB);
  ASSERT_TRUE(grown.ok()) << grown.status();
  EXPECT_EQ(grown->capacity_bytes(), 3 * kMiB);
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(static_cast<std::uint64_t>(st.st_size), 3 * kMiB);

  // A device on the file, and its data really lands in the file.
  SwapDeviceOptions options;
  options.path = path;
  absl::StatusOr<std::unique_ptr<SwapDevice>> device = SwapDevice::Open(options);
  ASSERT_TRUE(device.ok()) << device.status();
  EXPECT_EQ((*device)->slots_total(), 3 * kMiB / kPage);
  EXPECT_TRUE((*device)->description().starts_with(path)) << (*device)->description();
  SwapSlot slot;
  ASSERT_EQ((*device)->Allocate(1, &slot), 1u);
  Pages page(1);
  page.Fill(7);
  const void* src = page.page(0);
  int error = -1;
  ASSERT_EQ((*device)->Write(&slot, &src, 1, &error), 0u);
  EXPECT_EQ(error, 0);
  std::vector<unsigned char> on_disk(kPage);
  const int rfd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(rfd, 0);
  ASSERT_EQ(::pread(rfd, on_disk.data(), kPage, static_cast<off_t>(slot.value * kPage)),
            static_cast<ssize_t>(kPage));
  ::close(rfd);
  EXPECT_EQ(std::memcmp(on_disk.data(), page.page(0), kPage), 0);
}

TEST_F(SwapDeviceTest, BadPathsAreReported) {
  const std::string missing = dir_.path() + "/no/such/place";
  absl::StatusOr<SwapFile> file = SwapFile::Open(missing, 0, kMiB);
  EXPECT_EQ(file.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(file.status().message().find(missing), std::string::npos) << file.status();

  SwapDeviceOptions options;
  options.path = "/dev/null";  // a character device
  absl::StatusOr<std::unique_ptr<SwapDevice>> device = SwapDevice::Open(options);
  EXPECT_EQ(device.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(device.status().message().find("/dev/null"), std::string::npos) << device.status();

  options.path = missing;
  device = SwapDevice::Open(options);
  EXPECT_EQ(device.status().code(), absl::StatusCode::kNotFound);

  // Under one cluster.
  options.path = dir_.path();
  options.max_bytes = kCluster * kPage - kPage;
  device = SwapDevice::Open(options);
  EXPECT_EQ(device.status().code(), absl::StatusCode::kInvalidArgument) << device.status();
  EXPECT_TRUE(dir_.Entries().empty());
}

TEST_F(SwapDeviceTest, UnwritableDirectoryIsPermissionDenied) {
  if (::geteuid() != 0) {
    ASSERT_EQ(::chmod(dir_.path().c_str(), 0500), 0);
    absl::StatusOr<SwapFile> file = SwapFile::Open(dir_.path(), kMiB, kMiB);
    ::chmod(dir_.path().c_str(), 0700);
    EXPECT_EQ(file.status().code(), absl::StatusCode::kPermissionDenied) << file.status();
    return;
  }
  // Root bypasses permissions: try as nobody, in a child, on the 0700 root-owned directory.
  EXPECT_EXIT(
      {
        if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(2);
        absl::StatusOr<SwapFile> file = SwapFile::Open(dir_.path(), kMiB, kMiB);
        ::_exit(file.status().code() == absl::StatusCode::kPermissionDenied ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST_F(SwapDeviceTest, LongRunsAndReadsPastTheEnd) {
  // More pages than one pwritev takes: the file layer splits and resumes.
  const std::size_t n = 3 * SwapFile::kMaxIovecs + 17;
  absl::StatusOr<SwapFile> file = SwapFile::Open(dir_.path(), n * kPage, 0);
  ASSERT_TRUE(file.ok()) << file.status();
  Pages out(n), in(n);
  out.Fill(11);
  std::vector<const void*> src = out.ConstPointers();
  std::vector<void*> dst = in.Pointers();
  ASSERT_EQ(file->WritePages(0, src.data(), n), 0);
  ASSERT_EQ(file->ReadPages(0, dst.data(), n), 0);
  EXPECT_EQ(std::memcmp(in.page(0), out.page(0), n * kPage), 0);
  // The last slot reads; one beyond it is end of file.
  EXPECT_EQ(file->ReadPages(n - 1, dst.data(), 1), 0);
  EXPECT_EQ(file->ReadPages(n - 1, dst.data(), 2), EIO);
  EXPECT_EQ(file->ReadPages(n, dst.data(), 1), EIO);
}

// ---- the slot allocator ----------------------------------------------------------------

TEST_F(SwapDeviceTest, AllocateFreeReuse) {
  auto device = OpenDevice(dir_.path(), 4 * kMiB);
  ASSERT_NE(device, nullptr);
  EXPECT_EQ(device->slots_total(), 1024u);
  EXPECT_GE(device->metadata_bytes(), 1024u * (8 + 2));
  EXPECT_EQ(device->metadata_bytes() % kPage, 0u);
  SwapSlot slot;
  ASSERT_EQ(device->Allocate(1, &slot), 1u);
  EXPECT_EQ(device->RefCount(slot), 1u);
  EXPECT_EQ(device->Stats().slots_used, 1u);
  device->Unref(slot);
  EXPECT_EQ(device->RefCount(slot), 0u);
  EXPECT_EQ(device->Stats().slots_used, 0u);
  EXPECT_EQ(device->Stats().slots_total, 1024u);
}

TEST_F(SwapDeviceTest, ClustersGiveConsecutiveSlots) {
  auto device = OpenDevice(dir_.path(), 4 * kMiB);
  ASSERT_NE(device, nullptr);
  std::vector<SwapSlot> slots(300);
  ASSERT_EQ(device->Allocate(300, slots.data()), 300u);  // spans two free clusters
  for (std::size_t i = 1; i < slots.size(); ++i) {
    EXPECT_EQ(slots[i].value, slots[0].value + i) << i;
  }
  // The next request continues in the current cluster.
  SwapSlot more[10];
  ASSERT_EQ(device->Allocate(10, more), 10u);
  for (std::size_t i = 0; i < 10; ++i) EXPECT_EQ(more[i].value, slots.back().value + 1 + i);
}

TEST_F(SwapDeviceTest, FullDeviceReturnsZeroAndFreeClustersComeBeforeScanning) {
  auto device = OpenDevice(dir_.path(), 4 * kMiB);
  ASSERT_NE(device, nullptr);
  std::vector<SwapSlot> all(1024);
  ASSERT_EQ(device->Allocate(1000, all.data()), 1000u);
  ASSERT_EQ(device->Allocate(100, all.data() + 1000), 24u);  // only 24 left
  std::set<std::uint64_t> distinct;
  for (SwapSlot s : all) distinct.insert(s.value);
  EXPECT_EQ(distinct.size(), 1024u);
  EXPECT_EQ(*distinct.rbegin(), 1023u);
  SwapSlot slot;
  EXPECT_EQ(device->Allocate(1, &slot), 0u);
  EXPECT_EQ(device->Stats().slots_used, 1024u);

  // Free slot 5 (cluster 0 partly used) and all of cluster 2.
  device->Unref(SwapSlot{5});
  for (std::uint64_t s = 2 * kCluster; s < 3 * kCluster; ++s) device->Unref(SwapSlot{s});
  // The wholly free cluster is used first, sequentially ...
  ASSERT_EQ(device->Allocate(1, &slot), 1u);
  EXPECT_EQ(slot.value, 2 * kCluster);
  std::vector<SwapSlot> rest(kCluster);
  ASSERT_EQ(device->Allocate(kCluster, rest.data()), kCluster);  // 255 + the scan's one
  for (std::size_t i = 0; i + 1 < kCluster; ++i) EXPECT_EQ(rest[i].value, 2 * kCluster + 1 + i);
  // ... and only then the partly used cluster is scanned.
  EXPECT_EQ(rest.back().value, 5u);
  EXPECT_EQ(device->Allocate(1, &slot), 0u);

  // Scattered frees across clusters are all found again.
  const std::set<std::uint64_t> freed = {3, 300, 301, 700, 1023};
  for (std::uint64_t s : freed) device->Unref(SwapSlot{s});
  std::vector<SwapSlot> found(10);
  ASSERT_EQ(device->Allocate(10, found.data()), freed.size());
  std::set<std::uint64_t> got;
  for (std::size_t i = 0; i < freed.size(); ++i) got.insert(found[i].value);
  EXPECT_EQ(got, freed);
}

TEST_F(SwapDeviceTest, ReferenceCounts) {
  auto device = OpenDevice(dir_.path(), 4 * kMiB);
  ASSERT_NE(device, nullptr);
  // Fill the device so that a freed slot is the only one to come back.
  std::vector<SwapSlot> all(1024);
  ASSERT_EQ(device->Allocate(1024, all.data()), 1024u);
  const SwapSlot slot = all[77];
  device->Ref(slot);
  EXPECT_EQ(device->RefCount(slot), 2u);
  device->Unref(slot);
  EXPECT_EQ(device->RefCount(slot), 1u);
  SwapSlot again;
  EXPECT_EQ(device->Allocate(1, &again), 0u);  // still held
  device->Unref(slot);
  EXPECT_EQ(device->RefCount(slot), 0u);
  ASSERT_EQ(device->Allocate(1, &again), 1u);
  EXPECT_EQ(again, slot);
  EXPECT_EQ(device->RefCount(again), 1u);
}

TEST_F(SwapDeviceTest, UnrefOfFreeSlotIsFatal) {
  auto device = OpenDevice(dir_.path(), 4 * kMiB);
  ASSERT_NE(device, nullptr);
  SwapSlot slot;
  ASSERT_EQ(device->Allocate(1, &slot), 1u);
  device->Unref(slot);
  EXPECT_DEATH(device->Unref(slot), "Unref of free swap slot");
  EXPECT_DEATH(device->Ref(slot), "Ref of free swap slot");
  EXPECT_DEATH(device->Unref(SwapSlot{1u << 20}), "beyond the device");
}

// ---- page I/O ----------------------------------------------------------------------------

TEST_F(SwapDeviceTest, WriteReadRoundTripOfRandomPages) {
  auto device = OpenDevice(dir_.path(), 4 * kMiB);
  ASSERT_NE(device, nullptr);
  constexpr std::size_t kAllocated = 700, kUsed = 400;
  std::vector<SwapSlot> slots(kAllocated);
  ASSERT_EQ(device->Allocate(kAllocated, slots.data()), kAllocated);
  // 100 consecutive slots, then 300 scattered ones in random order.
  std::mt19937_64 rng(42);
  std::shuffle(slots.begin() + 100, slots.end(), rng);
  slots.resize(kUsed);
  Pages out(kUsed), in(kUsed);
  out.Fill(1);
  std::vector<const void*> src = out.ConstPointers();
  std::vector<int> errors(kUsed, -1);
  ASSERT_EQ(device->Write(slots.data(), src.data(), kUsed, errors.data()), 0u);
  for (int e : errors) ASSERT_EQ(e, 0);

  // Read back in another order.
  std::vector<std::size_t> order(kUsed);
  for (std::size_t i = 0; i < kUsed; ++i) order[i] = i;
  std::reverse(order.begin(), order.begin() + 50);
  std::shuffle(order.begin() + 200, order.end(), rng);
  std::vector<SwapSlot> read_slots;
  std::vector<void*> dst;
  for (std::size_t i : order) {
    read_slots.push_back(slots[i]);
    dst.push_back(in.page(i));
  }
  std::fill(errors.begin(), errors.end(), -1);
  ASSERT_EQ(device->Read(read_slots.data(), dst.data(), kUsed, errors.data()), 0u);
  for (int e : errors) ASSERT_EQ(e, 0);
  EXPECT_EQ(std::memcmp(in.page(0), out.page(0), kUsed * kPage), 0);

  const SwapDeviceStats stats = device->Stats();
  EXPECT_EQ(stats.bytes_written, kUsed * kPage);
  EXPECT_EQ(stats.bytes_read, kUsed * kPage);
  EXPECT_EQ(stats.write_errors + stats.read_errors + stats.checksum_errors, 0u);
}

TEST_F(SwapDeviceTest, CorruptReadsAreReportedNeverReturnedAsData) {
  auto device = OpenDevice(dir_.path(), 4 * kMiB);
  ASSERT_NE(device, nullptr);
  SwapSlot slots[8];
  ASSERT_EQ(device->Allocate(8, slots), 8u);
  std::swap(slots[2], slots[6]);  // three runs
  Pages out(8), in(8);
  out.Fill(3);
  std::vector<const void*> src = out.ConstPointers();
  std::vector<void*> dst = in.Pointers();
  int errors[8];
  ASSERT_EQ(device->Write(slots, src.data(), 8, errors), 0u);

  device->faults().corrupt_reads = true;
  std::fill(std::begin(errors), std::end(errors), 0);
  EXPECT_EQ(device->Read(slots, dst.data(), 8, errors), 8u);
  for (int e : errors) EXPECT_EQ(e, EBADMSG);
  EXPECT_EQ(device->Stats().checksum_errors, 8u);

  device->faults().corrupt_reads = false;
  EXPECT_EQ(device->Read(slots, dst.data(), 8, errors), 0u);
  EXPECT_EQ(std::memcmp(in.page(0), out.page(0), 8 * kPage), 0);
}

TEST_F(SwapDeviceTest, SlotsWithoutValidDataFailTheChecksum) {
  auto device = OpenDevice(dir_.path(), kMiB);  // one cluster
  ASSERT_NE(device, nullptr);
  std::vector<SwapSlot> all(kCluster);
  ASSERT_EQ(device->Allocate(kCluster, all.data()), kCluster);
  const SwapSlot slot = all[100];
  Pages a(1), b(1), in(1);
  a.Fill(5);
  b.Fill(6);
  void* dst = in.page(0);
  int error = 0;
  // Never written.
  EXPECT_EQ(device->Read(&slot, &dst, 1, &error), 1u);
  EXPECT_EQ(error, EBADMSG);
  // Written, then a failed rewrite: the old contents must not come back as valid.
  const void* src = a.page(0);
  ASSERT_EQ(device->Write(&slot, &src, 1, &error), 0u);
  device->faults().write_error = EIO;
  src = b.page(0);
  EXPECT_EQ(device->Write(&slot, &src, 1, &error), 1u);
  EXPECT_EQ(error, EIO);
  device->faults().write_error = 0;
  EXPECT_EQ(device->Read(&slot, &dst, 1, &error), 1u);
  EXPECT_EQ(error, EBADMSG);
  // Written, freed and allocated again: the previous owner's data is not valid either.
  src = a.page(0);
  ASSERT_EQ(device->Write(&slot, &src, 1, &error), 0u);
  device->Unref(slot);
  SwapSlot again;
  ASSERT_EQ(device->Allocate(1, &again), 1u);
  ASSERT_EQ(again, slot);  // the only free slot
  EXPECT_EQ(device->Read(&again, &dst, 1, &error), 1u);
  EXPECT_EQ(error, EBADMSG);
}

TEST_F(SwapDeviceTest, InjectedWriteErrorsArePerPage) {
  auto device = OpenDevice(dir_.path(), 4 * kMiB);
  ASSERT_NE(device, nullptr);
  SwapSlot slots[10];
  ASSERT_EQ(device->Allocate(10, slots), 10u);
  // Runs: [0..4) consecutive, then 9, 7, 5 alone.
  SwapSlot order[7] = {slots[0], slots[1], slots[2], slots[3], slots[9], slots[7], slots[5]};
  Pages out(7);
  out.Fill(9);
  std::vector<const void*> src = out.ConstPointers();
  int errors[7];

  // Room for the first run (4 pages) and one more page: the disk fills up at the 6th.
  device->faults().writable_pages = 5;
  EXPECT_EQ(device->Write(order, src.data(), 7, errors), 2u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(errors[i], 0) << i;
  EXPECT_EQ(errors[5], ENOSPC);
  EXPECT_EQ(errors[6], ENOSPC);
  device->faults().writable_pages = ~std::uint64_t{0};
  // What was written reads back; what failed does not.
  Pages in(7);
  std::vector<void*> dst = in.Pointers();
  int read_errors[7];
  EXPECT_EQ(device->Read(order, dst.data(), 7, read_errors), 2u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(read_errors[i], 0) << i;
  EXPECT_EQ(read_errors[5], EBADMSG);
  EXPECT_EQ(std::memcmp(in.page(0), out.page(0), 5 * kPage), 0);
  // Failed slots keep their reference.
  EXPECT_EQ(device->RefCount(order[5]), 1u);

  device->faults().write_error = EIO;
  EXPECT_EQ(device->Write(order, src.data(), 7, errors), 7u);
  for (int e : errors) EXPECT_EQ(e, EIO);
  EXPECT_EQ(device->Stats().write_errors, 9u);
  EXPECT_EQ(device->Stats().bytes_written, 5 * kPage);
}

TEST_F(SwapDeviceTest, InjectedReadErrors) {
  auto device = OpenDevice(dir_.path(), 4 * kMiB);
  ASSERT_NE(device, nullptr);
  SwapSlot slots[4];
  ASSERT_EQ(device->Allocate(4, slots), 4u);
  Pages out(4), in(4);
  out.Fill(12);
  std::vector<const void*> src = out.ConstPointers();
  std::vector<void*> dst = in.Pointers();
  int errors[4];
  ASSERT_EQ(device->Write(slots, src.data(), 4, errors), 0u);
  device->faults().read_error = EIO;
  EXPECT_EQ(device->Read(slots, dst.data(), 4, errors), 4u);
  for (int e : errors) EXPECT_EQ(e, EIO);
  EXPECT_EQ(device->Stats().read_errors, 4u);
  EXPECT_EQ(device->Stats().checksum_errors, 0u);
  EXPECT_EQ(device->Stats().bytes_read, 0u);
}

// ---- concurrency -------------------------------------------------------------------------

TEST_F(SwapDeviceTest, ConcurrentAllocateWriteReadUnref) {
  auto device = OpenDevice(dir_.path(), kMiB);  // 256 slots: the threads run it full
  ASSERT_NE(device, nullptr);
  constexpr int kThreads = 4;
  constexpr int kRounds = 300;
  const std::uint64_t total = device->slots_total();
  std::vector<std::atomic<int>> owner(total);
  for (auto& o : owner) o.store(-1);
  std::atomic<int> ready{0};
  std::atomic<std::uint64_t> double_allocations{0}, data_errors{0}, io_errors{0};
  std::atomic<std::uint64_t> full_seen{0};

  auto worker = [&](int id) {
    std::mt19937_64 rng(1000 + id);
    Pages out(64), in(64);
    ready.fetch_add(1);
    while (ready.load() < kThreads) {
    }
    for (int round = 0; round < kRounds; ++round) {
      const std::size_t want = 1 + rng() % 64;
      SwapSlot slots[64];
      const std::size_t n = device->Allocate(want, slots);
      if (n < want) full_seen.fetch_add(1);
      for (std::size_t i = 0; i < n; ++i) {
        int expected = -1;
        if (!owner[slots[i].value].compare_exchange_strong(expected, id)) {
          double_allocations.fetch_add(1);
        }
      }
      out.Fill(rng());
      for (std::size_t i = 0; i < n; ++i) std::memcpy(out.page(i), &slots[i].value, 8);
      std::vector<const void*> src = out.ConstPointers();
      std::vector<void*> dst = in.Pointers();
      int errors[64];
      if (device->Write(slots, src.data(), n, errors) != 0) io_errors.fetch_add(1);
      if (device->Read(slots, dst.data(), n, errors) != 0) io_errors.fetch_add(1);
      if (n != 0 && std::memcmp(in.page(0), out.page(0), n * kPage) != 0) {
        data_errors.fetch_add(1);
      }
      for (std::size_t i = 0; i < n; ++i) {
        // Shared for a moment, as a forked child would.
        if (i % 7 == 0) device->Ref(slots[i]);
        owner[slots[i].value].store(-1);
        if (i % 7 == 0) device->Unref(slots[i]);
        device->Unref(slots[i]);
      }
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back(worker, t);
  for (auto& t : threads) t.join();

  EXPECT_EQ(double_allocations.load(), 0u);
  EXPECT_EQ(data_errors.load(), 0u);
  EXPECT_EQ(io_errors.load(), 0u);
  const SwapDeviceStats stats = device->Stats();
  EXPECT_EQ(stats.slots_used, 0u);
  EXPECT_EQ(stats.bytes_written, stats.bytes_read);
  EXPECT_EQ(stats.checksum_errors, 0u);
  // Everything freed: the whole device can be allocated again, each slot once.
  std::vector<SwapSlot> all(total);
  ASSERT_EQ(device->Allocate(total, all.data()), total);
  std::set<std::uint64_t> distinct;
  for (SwapSlot s : all) distinct.insert(s.value);
  EXPECT_EQ(distinct.size(), total);
}

}  // namespace
}  // namespace uvmem::internal
