// pagemap.h — PagemapScanner: which pages were written since they were write-protected,
// through the PAGEMAP_SCAN ioctl on /proc/self/pagemap (Linux 6.7).
//
// With UFFD_FEATURE_WP_ASYNC, a write to a page the runtime write-protected (UFFDIO_
// WRITEPROTECT) is resolved by the kernel itself — no message — and clears the page's
// uffd-wp bit; PAGEMAP_SCAN reports that as PAGE_IS_WRITTEN. That is the dirty bit user
// space can see (Documentation/admin-guide/mm/pagemap.rst, "PAGEMAP_SCAN").
//
// Thread-safety: Written is thread-safe. Neither function allocates.
#ifndef UVMEM_PLATFORM_PAGEMAP_H_
#define UVMEM_PLATFORM_PAGEMAP_H_

#include <absl/status/statusor.h>

#include <cstdint>

namespace uvmem::internal {

// True when ioctl(PAGEMAP_SCAN) works on /proc/self/pagemap (Linux 6.7+). An ENOTTY or
// EINVAL answer, or an unreadable pagemap, means absent. Thread-safe.
bool ProbePagemapScan();

class PagemapScanner {
 public:
  // Opens /proc/self/pagemap and checks that PAGEMAP_SCAN works. Errors: Unimplemented
  // (the kernel has no PAGEMAP_SCAN: ENOTTY/EINVAL), or the open(2) error.
  static absl::StatusOr<PagemapScanner> Open();
  PagemapScanner() = default;
  PagemapScanner(PagemapScanner&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  PagemapScanner& operator=(PagemapScanner&& other) noexcept;
  ~PagemapScanner();

  // Sets written[i] for each page i of [start, start + pages × 4 KiB) — true when the page
  // was written since it was last write-protected, or was never write-protected. Pages
  // that are not present read false. `start` page aligned; pages ≤ 4096. Returns 0 or
  // the ioctl's errno.
  [[nodiscard]] int Written(const void* start, std::uint64_t pages, bool* written) const;

 private:
  explicit PagemapScanner(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace uvmem::internal

#endif  // UVMEM_PLATFORM_PAGEMAP_H_
