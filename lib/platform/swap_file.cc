#include "platform/swap_file.h"

#include <fcntl.h>
#include <linux/fs.h>  // BLKGETSIZE64
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <absl/status/status.h>
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <utility>

namespace uvmem::internal {

static_assert(SwapFile::kMaxIovecs <= IOV_MAX);

namespace {

// "<what> <path>: <strerror>", with the canonical code the errno calls for.
absl::Status OpenError(int err, std::string_view what, const std::string& path) {
  std::string message = fmt::format("swap file: {} {}: {}", what, path, std::strerror(err));
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(
          message + " (choose a writable directory, file or device for swap)");
    case ENOSPC:
    case EDQUOT:
    case EMFILE:
    case ENFILE:
    case ENOMEM:
    case EFBIG:
      return absl::ResourceExhaustedError(message);
    case EINVAL:
      return absl::InvalidArgumentError(message);
    default:
      return absl::InternalError(message);
  }
}

// Closes an fd on scope exit unless released.
class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() {
    if (fd_ >= 0) ::close(fd_);
  }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

// Sizes a file to exactly `bytes` (sparse when growing).
absl::Status Truncate(int fd, std::uint64_t bytes, const std::string& path) {
  if (::ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    return OpenError(errno, fmt::format("sizing to {} bytes", bytes), path);
  }
  return absl::OkStatus();
}

// A new unlinked file in `dir`: O_TMPFILE, else mkstemp + unlink. Returns the fd and sets
// *how to the way it was made.
absl::StatusOr<int> CreateUnlinked(const std::string& dir, int mode, std::string* how) {
  int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, mode);
  if (fd >= 0) {
    *how = "O_TMPFILE";
  } else {
    const int err = errno;
    // Old kernels / file systems without O_TMPFILE answer EOPNOTSUPP, or EISDIR when
    // O_TMPFILE's O_DIRECTORY half is all they understand.
    if (err != EOPNOTSUPP && err != EISDIR) return OpenError(err, "creating a file in", dir);
    std::string name = dir + (dir.ends_with('/') ? "" : "/") + "uvmem-swap-XXXXXX";
    fd = ::mkostemp(name.data(), O_CLOEXEC);
    if (fd < 0) return OpenError(errno, "creating a file in", dir);
    if (::unlink(name.c_str()) != 0) {
      const int unlink_err = errno;
      ::close(fd);
      return OpenError(unlink_err, "unlinking", name);
    }
    *how = "mkstemp, unlinked";
  }
  // Exactly `mode`, whatever the umask.
  if (::fchmod(fd, static_cast<mode_t>(mode)) != 0) {
    const int err = errno;
    ::close(fd);
    return OpenError(err, "setting the mode of a file in", dir);
  }
  return fd;
}

}  // namespace

absl::StatusOr<SwapFile> SwapFile::Open(const std::string& path_in, std::uint64_t max_bytes,
                                        std::uint64_t default_bytes, int mode) {
  std::string path = path_in;
  if (path.empty()) {
    const char* tmpdir = std::getenv("TMPDIR");
    path = (tmpdir != nullptr && tmpdir[0] != '\0') ? tmpdir : "/tmp";
  }
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return OpenError(errno, "looking up", path);

  std::uint64_t capacity = 0;
  std::string description;
  int fd = -1;
  if (S_ISDIR(st.st_mode)) {
    std::string how;
    absl::StatusOr<int> created = CreateUnlinked(path, mode, &how);
    if (!created.ok()) return created.status();
    fd = *created;
    capacity = (max_bytes != 0 ? max_bytes : default_bytes) & ~(kSwapSlotBytes - 1);
    description = fmt::format("{} ({})", path, how);
  } else if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) {
    fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return OpenError(errno, "opening", path);
    description = path;
  } else {
    return absl::InvalidArgumentError(fmt::format(
        "swap file: {} is not a directory, regular file or block device", path));
  }
  FdCloser closer(fd);

  if (S_ISREG(st.st_mode)) {
    if (::fstat(fd, &st) != 0) return OpenError(errno, "stat of", path);
    const auto size = static_cast<std::uint64_t>(st.st_size);
    capacity = max_bytes != 0 ? max_bytes : size;
    capacity &= ~(kSwapSlotBytes - 1);
    if (size < capacity) {
      if (absl::Status s = Truncate(fd, capacity, path); !s.ok()) return s;
    }
  } else if (S_ISBLK(st.st_mode)) {
    std::uint64_t size = 0;
    if (::ioctl(fd, BLKGETSIZE64, &size) != 0) return OpenError(errno, "BLKGETSIZE64 of", path);
    capacity = (max_bytes != 0 ? std::min(size, max_bytes) : size) & ~(kSwapSlotBytes - 1);
  }
  if (capacity == 0) {
    return absl::InvalidArgumentError(
        fmt::format("swap file: {}: capacity under one 4 KiB slot", description));
  }
  if (S_ISDIR(st.st_mode)) {
    if (absl::Status s = Truncate(fd, capacity, path); !s.ok()) return s;
  }
  // Direct I/O: a swapped page lives on the device, not a second time in the page cache
  // (which would sit outside the budget and in a memory cgroup's limit). Every transfer
  // is whole, aligned pages, as O_DIRECT wants. File systems that refuse it (EINVAL)
  // keep buffered I/O.
  const int flags = ::fcntl(fd, F_GETFL);
  const bool direct = flags >= 0 && ::fcntl(fd, F_SETFL, flags | O_DIRECT) == 0;
  description += direct ? ", direct I/O" : ", buffered I/O";
  return SwapFile(closer.release(), capacity, std::move(description));
}

SwapFile::SwapFile(int fd, std::uint64_t capacity_bytes, std::string description)
    : fd_(fd),
      capacity_bytes_(capacity_bytes),
      description_(std::move(description)),
      faults_(std::make_unique<SwapFileFaults>()) {}

SwapFile::SwapFile(SwapFile&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      capacity_bytes_(std::exchange(other.capacity_bytes_, 0)),
      description_(std::move(other.description_)),
      faults_(std::move(other.faults_)) {}

SwapFile& SwapFile::operator=(SwapFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    capacity_bytes_ = std::exchange(other.capacity_bytes_, 0);
    description_ = std::move(other.description_);
    faults_ = std::move(other.faults_);
  }
  return *this;
}

SwapFile::~SwapFile() {
  if (fd_ >= 0) ::close(fd_);
}

namespace {

// pwritev/preadv of `count` 4 KiB pages from byte `offset`, resuming after partial
// transfers and EINTR. Returns 0 or an errno; EIO when a call moves no bytes.
template <bool kWrite, typename Page>
int TransferPages(int fd, std::uint64_t offset, Page* const* pages, std::size_t count) {
  const std::uint64_t total = count * kSwapSlotBytes;
  std::uint64_t done = 0;
  struct iovec iov[SwapFile::kMaxIovecs];
  while (done < total) {
    // Build iovecs from the first unfinished byte: the tail of a partly done page first.
    std::size_t page = done / kSwapSlotBytes;
    std::size_t in_page = done % kSwapSlotBytes;
    int n = 0;
    for (; n < static_cast<int>(SwapFile::kMaxIovecs) && page < count; ++n, ++page) {
      iov[n].iov_base = const_cast<char*>(static_cast<const char*>(pages[page])) + in_page;
      iov[n].iov_len = kSwapSlotBytes - in_page;
      in_page = 0;
    }
    const auto at = static_cast<off_t>(offset + done);
    const ssize_t r = kWrite ? ::pwritev(fd, iov, n, at) : ::preadv(fd, iov, n, at);
    if (r < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (r == 0) return EIO;  // end of file / device, or no progress
    done += static_cast<std::uint64_t>(r);
  }
  return 0;
}

}  // namespace

int SwapFile::WritePages(std::uint64_t first_slot, const void* const* pages, std::size_t count) {
  if (const int err = faults_->write_error.load(std::memory_order_relaxed); err != 0) return err;
  std::uint64_t budget = faults_->writable_pages.load(std::memory_order_relaxed);
  while (budget != ~std::uint64_t{0}) {
    const std::uint64_t left = budget >= count ? budget - count : 0;
    if (faults_->writable_pages.compare_exchange_weak(budget, left, std::memory_order_relaxed)) {
      if (budget < count) return ENOSPC;
      break;
    }
  }
  return TransferPages<true>(fd_, first_slot * kSwapSlotBytes, pages, count);
}

int SwapFile::ReadPages(std::uint64_t first_slot, void* const* pages, std::size_t count) {
  if (const int err = faults_->read_error.load(std::memory_order_relaxed); err != 0) return err;
  const int err = TransferPages<false>(fd_, first_slot * kSwapSlotBytes, pages, count);
  if (err == 0 && faults_->corrupt_reads.load(std::memory_order_relaxed)) {
    for (std::size_t i = 0; i < count; ++i) static_cast<unsigned char*>(pages[i])[1234] ^= 0x5a;
  }
  return err;
}

}  // namespace uvmem::internal
