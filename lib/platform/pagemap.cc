#include "platform/pagemap.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstring>

#include <absl/strings/str_cat.h>

#include "platform/uffd_abi.h"

namespace uvmem::internal {

absl::StatusOr<PagemapScanner> PagemapScanner::Open() {
  const int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::ErrnoToStatus(errno, "open /proc/self/pagemap");
  }
  PagemapScanner scanner(fd);
  // Scan the page holding this stack frame: mapped, and present. ENOTTY (no such ioctl)
  // or EINVAL (another layout) means absent.
  bool written = false;
  int on_stack = 0;
  const auto page = reinterpret_cast<std::uintptr_t>(&on_stack) & ~std::uintptr_t{4095};
  if (const int err = scanner.Written(reinterpret_cast<const void*>(page), 1, &written); err != 0) {
    return absl::UnimplementedError(
        absl::StrCat("PAGEMAP_SCAN is not available (Linux 6.7+): ", std::strerror(err)));
  }
  return scanner;
}

bool ProbePagemapScan() { return PagemapScanner::Open().ok(); }

PagemapScanner& PagemapScanner::operator=(PagemapScanner&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

PagemapScanner::~PagemapScanner() {
  if (fd_ >= 0) close(fd_);
}

int PagemapScanner::Written(const void* start, std::uint64_t pages, bool* written) const {
  constexpr std::uint64_t kPage = 4096;
  std::memset(written, 0, pages);
  page_region regions[64];
  std::uint64_t begin = reinterpret_cast<std::uint64_t>(start);
  const std::uint64_t end = begin + pages * kPage;
  while (begin < end) {
    pm_scan_arg arg{};
    arg.size = sizeof(arg);
    arg.start = begin;
    arg.end = end;
    arg.vec = reinterpret_cast<std::uint64_t>(regions);
    arg.vec_len = 64;
    arg.category_mask = PAGE_IS_WRITTEN | PAGE_IS_PRESENT;
    arg.return_mask = PAGE_IS_WRITTEN | PAGE_IS_PRESENT;
    const long n = ioctl(fd_, PAGEMAP_SCAN, &arg);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    for (long i = 0; i < n; ++i) {
      const std::uint64_t first = (regions[i].start - reinterpret_cast<std::uint64_t>(start)) / kPage;
      const std::uint64_t last = (regions[i].end - reinterpret_cast<std::uint64_t>(start)) / kPage;
      for (std::uint64_t p = first; p < last && p < pages; ++p) written[p] = true;
    }
    if (arg.walk_end <= begin) break;
    begin = arg.walk_end;
  }
  return 0;
}

}  // namespace uvmem::internal
