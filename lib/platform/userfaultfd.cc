#include "platform/userfaultfd.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <absl/status/status.h>
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "platform/uffd_abi.h"

namespace uvmem::internal {

// The public enums mirror the kernel's numbers; a mismatch here is a compile error.
static_assert(kUffdFeaturePagefaultFlagWp == UFFD_FEATURE_PAGEFAULT_FLAG_WP);
static_assert(kUffdFeatureEventFork == UFFD_FEATURE_EVENT_FORK);
static_assert(kUffdFeatureEventRemap == UFFD_FEATURE_EVENT_REMAP);
static_assert(kUffdFeatureEventRemove == UFFD_FEATURE_EVENT_REMOVE);
static_assert(kUffdFeatureMissingHugetlbfs == UFFD_FEATURE_MISSING_HUGETLBFS);
static_assert(kUffdFeatureMissingShmem == UFFD_FEATURE_MISSING_SHMEM);
static_assert(kUffdFeatureEventUnmap == UFFD_FEATURE_EVENT_UNMAP);
static_assert(kUffdFeatureSigbus == UFFD_FEATURE_SIGBUS);
static_assert(kUffdFeatureThreadId == UFFD_FEATURE_THREAD_ID);
static_assert(kUffdFeatureMinorHugetlbfs == UFFD_FEATURE_MINOR_HUGETLBFS);
static_assert(kUffdFeatureMinorShmem == UFFD_FEATURE_MINOR_SHMEM);
static_assert(kUffdFeatureExactAddress == UFFD_FEATURE_EXACT_ADDRESS);
static_assert(kUffdFeatureWpHugetlbfsShmem == UFFD_FEATURE_WP_HUGETLBFS_SHMEM);
static_assert(kUffdFeatureWpUnpopulated == UFFD_FEATURE_WP_UNPOPULATED);
static_assert(kUffdFeaturePoison == UFFD_FEATURE_POISON);
static_assert(kUffdFeatureWpAsync == UFFD_FEATURE_WP_ASYNC);
static_assert(kUffdFeatureMove == UFFD_FEATURE_MOVE);
static_assert(UffdRangeIoctls(1ull << _UFFDIO_WAKE).wake());
static_assert(UffdRangeIoctls(1ull << _UFFDIO_COPY).copy());
static_assert(UffdRangeIoctls(1ull << _UFFDIO_ZEROPAGE).zeropage());
static_assert(UffdRangeIoctls(1ull << _UFFDIO_MOVE).move());
static_assert(UffdRangeIoctls(1ull << _UFFDIO_WRITEPROTECT).writeprotect());
static_assert(UffdRangeIoctls(1ull << _UFFDIO_CONTINUE).continue_());
static_assert(UffdRangeIoctls(1ull << _UFFDIO_POISON).poison());

namespace {

constexpr UffdFeatureInfo kFeatureTable[] = {
    {"PAGEFAULT_FLAG_WP", kUffdFeaturePagefaultFlagWp, "5.7",
     "write-protect faults on anonymous memory"},
    {"EVENT_FORK", kUffdFeatureEventFork, "4.11",
     "fork() passes the child's uffd to the handler (needs CAP_SYS_PTRACE)"},
    {"EVENT_REMAP", kUffdFeatureEventRemap, "4.11", "mremap() of a registered range is reported"},
    {"EVENT_REMOVE", kUffdFeatureEventRemove, "4.11",
     "MADV_DONTNEED/MADV_REMOVE of a registered range is reported"},
    {"MISSING_HUGETLBFS", kUffdFeatureMissingHugetlbfs, "4.11", "missing faults on hugetlbfs"},
    {"MISSING_SHMEM", kUffdFeatureMissingShmem, "4.11", "missing faults on shmem/tmpfs"},
    {"EVENT_UNMAP", kUffdFeatureEventUnmap, "4.11", "munmap() of a registered range is reported"},
    {"SIGBUS", kUffdFeatureSigbus, "4.14", "faults raise SIGBUS instead of queueing a message"},
    {"THREAD_ID", kUffdFeatureThreadId, "4.14", "fault messages carry the faulting thread id"},
    {"MINOR_HUGETLBFS", kUffdFeatureMinorHugetlbfs, "5.13",
     "minor faults on hugetlbfs (UFFDIO_CONTINUE)"},
    {"MINOR_SHMEM", kUffdFeatureMinorShmem, "5.14", "minor faults on shmem (UFFDIO_CONTINUE)"},
    {"EXACT_ADDRESS", kUffdFeatureExactAddress, "5.18",
     "fault address is not rounded down to the page"},
    {"WP_HUGETLBFS_SHMEM", kUffdFeatureWpHugetlbfsShmem, "5.19",
     "write-protect on hugetlbfs and shmem"},
    {"WP_UNPOPULATED", kUffdFeatureWpUnpopulated, "6.4",
     "UFFDIO_WRITEPROTECT also marks unpopulated pages"},
    {"POISON", kUffdFeaturePoison, "6.6",
     "UFFDIO_POISON: accesses get SIGBUS (user) or EFAULT (kernel)"},
    {"WP_ASYNC", kUffdFeatureWpAsync, "6.7",
     "the kernel resolves write-protect faults itself (dirty tracking)"},
    {"MOVE", kUffdFeatureMove, "6.8", "UFFDIO_MOVE: move frames between ranges without copying"},
};

constexpr char kPermissionFix[] =
    "run as root, or grant access to /dev/userfaultfd, or set sysctl "
    "vm.unprivileged_userfaultfd=1";

int SysUserfaultfd(int flags) { return static_cast<int>(::syscall(SYS_userfaultfd, flags)); }

std::string ErrnoName(int err) { return fmt::format("{} ({})", std::strerror(err), err); }

struct RawFd {
  int fd;
  UffdMode mode;
  UffdOpenPath path;
};

// The one place that creates a uffd. See Userfaultfd::Open for the order of attempts.
absl::StatusOr<RawFd> OpenRaw(UffdOpenOptions options) {
  const int flags = O_CLOEXEC | (options.nonblocking ? O_NONBLOCK : 0);
  int fd = SysUserfaultfd(flags | (options.user_mode_only ? UFFD_USER_MODE_ONLY : 0));
  if (fd >= 0) {
    return RawFd{fd, options.user_mode_only ? UffdMode::kUserModeOnly : UffdMode::kFull,
                 UffdOpenPath::kSyscall};
  }
  const int syscall_err = errno;
  if (syscall_err == ENOSYS) {
    return absl::UnimplementedError(
        "userfaultfd(2) is not available (ENOSYS): boot a kernel built with "
        "CONFIG_USERFAULTFD=y, or allow the syscall in the seccomp profile");
  }
  if (syscall_err == EMFILE || syscall_err == ENFILE || syscall_err == ENOMEM) {
    return absl::ResourceExhaustedError(
        fmt::format("userfaultfd(2) failed: {}; raise the open-file limit (ulimit -n)",
                    ErrnoName(syscall_err)));
  }
  if (syscall_err != EPERM) {
    return absl::InternalError(fmt::format("userfaultfd(2) failed: {}", ErrnoName(syscall_err)));
  }
  if (options.user_mode_only) {
    return absl::PermissionDeniedError(
        "userfaultfd(UFFD_USER_MODE_ONLY) is not permitted (EPERM): a seccomp filter "
        "(container runtime) may block the syscall; allow userfaultfd(2)");
  }

  // Not privileged for kernel-mode faults: /dev/userfaultfd gives full mode to whoever
  // may open the node, whatever the sysctl says.
  int dev_err = 0;
  int dev = ::open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
  if (dev >= 0) {
    fd = ::ioctl(dev, USERFAULTFD_IOC_NEW, flags);
    dev_err = fd < 0 ? errno : 0;
    ::close(dev);
    if (fd >= 0) return RawFd{fd, UffdMode::kFull, UffdOpenPath::kDevNode};
  } else {
    dev_err = errno;
  }
  const std::string why = fmt::format(
      "userfaultfd(2) returned EPERM (vm.unprivileged_userfaultfd is 0 and the process "
      "lacks CAP_SYS_PTRACE) and /dev/userfaultfd {}",
      dev_err == ENOENT ? std::string("does not exist")
                        : fmt::format("cannot be used: {}", ErrnoName(dev_err)));
  if (!options.allow_user_mode_only) {
    return absl::PermissionDeniedError(
        fmt::format("userfaultfd with kernel-mode fault handling is not permitted: {}; {}", why,
                    kPermissionFix));
  }
  fd = SysUserfaultfd(flags | UFFD_USER_MODE_ONLY);
  if (fd >= 0) return RawFd{fd, UffdMode::kUserModeOnly, UffdOpenPath::kSyscall};
  const int umo_err = errno;
  if (umo_err == EPERM || umo_err == EACCES) {
    return absl::PermissionDeniedError(fmt::format(
        "userfaultfd is not permitted, not even UFFD_USER_MODE_ONLY ({}): {}; a seccomp "
        "filter (container runtime) may block the syscall; {}",
        ErrnoName(umo_err), why, kPermissionFix));
  }
  return absl::InternalError(
      fmt::format("userfaultfd(UFFD_USER_MODE_ONLY) failed: {}", ErrnoName(umo_err)));
}

std::string FeatureNames(UffdFeatures features) {
  std::string out;
  for (const UffdFeatureInfo& info : kFeatureTable) {
    if (!features.has(info.bit)) continue;
    if (!out.empty()) out += ", ";
    out += info.name;
  }
  std::uint64_t unknown = features.bits();
  for (const UffdFeatureInfo& info : kFeatureTable) unknown &= ~info.bit;
  if (unknown != 0) out += fmt::format("{}unknown bits {:#x}", out.empty() ? "" : ", ", unknown);
  return out;
}

// Decodes one fill ioctl (COPY, ZEROPAGE, MOVE, POISON). The kernel writes the out field
// (`out`, pre-set to 0 by the caller) with the bytes done or -errno, then returns 0 when
// all `requested` bytes were done and -EAGAIN after partial progress. When it fails
// before reaching the operation (mappings changing, bad arguments, ESRCH) it leaves the
// field alone, so 0 there means "look at errno".
UffdResult DecodeFill(int rc, int err, std::int64_t out, std::size_t requested) {
  if (rc == 0) return {requested, 0};
  if (out > 0) return {std::min(static_cast<std::size_t>(out), requested), err};
  if (out < 0) return {0, static_cast<int>(-out)};
  return {0, err};
}

// Runs `step(offset)` (one ioctl over [offset, length)) until done, resuming after
// partial progress, so that the result names the reason the operation stopped.
template <typename Step>
UffdResult FillResumable(std::size_t length_bytes, Step step) {
  std::size_t done = 0;
  for (;;) {
    UffdResult r = step(done);
    done += r.bytes_done;
    if (r.error == 0 || done >= length_bytes) return {done, 0};
    if (r.bytes_done == 0 || r.error != EAGAIN) return {done, r.error};
  }
}

std::uint64_t Addr(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

}  // namespace

absl::Span<const UffdFeatureInfo> KnownUffdFeatures() { return kFeatureTable; }

std::string_view UffdModeName(UffdMode mode) {
  return mode == UffdMode::kFull ? "full" : "user-mode-only";
}

std::string_view UffdOpenPathName(UffdOpenPath path) {
  switch (path) {
    case UffdOpenPath::kSyscall:
      return "userfaultfd(2)";
    case UffdOpenPath::kDevNode:
      return "/dev/userfaultfd";
    case UffdOpenPath::kInherited:
      return "fork event";
  }
  return "?";
}

absl::StatusOr<UffdProbe> ProbeUserfaultfd() {
  absl::StatusOr<RawFd> raw = OpenRaw({.nonblocking = true, .allow_user_mode_only = true});
  if (!raw.ok()) return raw.status();
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = 0;  // ask for nothing: the kernel answers with everything it offers
  const int rc = ::ioctl(raw->fd, UFFDIO_API, &api);
  const int err = errno;
  ::close(raw->fd);
  if (rc != 0) {
    return absl::InternalError(fmt::format("UFFDIO_API probe failed: {}", ErrnoName(err)));
  }
  return UffdProbe{UffdFeatures(api.features), raw->mode, raw->path};
}

absl::StatusOr<Userfaultfd> Userfaultfd::Open(UffdFeatures requested, UffdOpenOptions options) {
  absl::StatusOr<RawFd> raw = OpenRaw(options);
  if (!raw.ok()) return raw.status();
  // Owns the fd from here, so every error path below closes it.
  Userfaultfd uffd(raw->fd, raw->mode, raw->path, UffdFeatures());
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = requested.bits();
  if (::ioctl(uffd.fd_, UFFDIO_API, &api) != 0) {
    const int err = errno;
    if (err == EPERM && requested.event_fork()) {
      return absl::PermissionDeniedError(
          "UFFD_FEATURE_EVENT_FORK needs CAP_SYS_PTRACE: run as root, or do not ask for "
          "EVENT_FORK (children then lose their registrations)");
    }
    if (err == EINVAL) {
      absl::StatusOr<UffdProbe> probe = ProbeUserfaultfd();
      const std::string missing =
          probe.ok() ? FeatureNames(requested.Without(probe->features)) : "unknown";
      return absl::InvalidArgumentError(fmt::format(
          "UFFDIO_API refused features [{}]: this kernel lacks [{}]; ask only for features "
          "ProbeUserfaultfd() reports, or run a newer kernel",
          FeatureNames(requested), missing));
    }
    return absl::InternalError(fmt::format("UFFDIO_API failed: {}", ErrnoName(err)));
  }
  // The kernel enables WP_UNPOPULATED along with WP_ASYNC.
  uffd.features_ =
      requested.wp_async() ? requested | UffdFeatures(kUffdFeatureWpUnpopulated) : requested;
  return uffd;
}

Userfaultfd Userfaultfd::Adopt(int fd, UffdMode mode, UffdFeatures features) {
  return Userfaultfd(fd, mode, UffdOpenPath::kInherited, features);
}

Userfaultfd::Userfaultfd(Userfaultfd&& other) noexcept
    : fd_(other.fd_), mode_(other.mode_), path_(other.path_), features_(other.features_) {
  other.fd_ = -1;
}

Userfaultfd& Userfaultfd::operator=(Userfaultfd&& other) noexcept {
  if (this != &other) {
    Close();
    fd_ = other.fd_;
    mode_ = other.mode_;
    path_ = other.path_;
    features_ = other.features_;
    other.fd_ = -1;
  }
  return *this;
}

Userfaultfd::~Userfaultfd() { Close(); }

void Userfaultfd::Close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

int Userfaultfd::Release() {
  const int fd = fd_;
  fd_ = -1;
  return fd;
}

UffdRegisterResult Userfaultfd::Register(void* start, std::size_t length_bytes,
                                         UffdRegisterModes modes) const noexcept {
  uffdio_register reg{};
  reg.range.start = Addr(start);
  reg.range.len = length_bytes;
  reg.mode = (modes.missing ? UFFDIO_REGISTER_MODE_MISSING : 0) |
             (modes.wp ? UFFDIO_REGISTER_MODE_WP : 0) |
             (modes.minor ? UFFDIO_REGISTER_MODE_MINOR : 0);
  if (::ioctl(fd_, UFFDIO_REGISTER, &reg) != 0) return {UffdRangeIoctls(), errno};
  return {UffdRangeIoctls(reg.ioctls), 0};
}

int Userfaultfd::Unregister(void* start, std::size_t length_bytes) const noexcept {
  uffdio_range range{Addr(start), length_bytes};
  return ::ioctl(fd_, UFFDIO_UNREGISTER, &range) == 0 ? 0 : errno;
}

UffdResult Userfaultfd::Copy(void* dst, const void* src, std::size_t length_bytes,
                             UffdCopyMode mode) const noexcept {
  return FillResumable(length_bytes, [&](std::size_t offset) {
    uffdio_copy copy{};
    copy.dst = Addr(dst) + offset;
    copy.src = Addr(src) + offset;
    copy.len = length_bytes - offset;
    copy.mode =
        (mode.dontwake ? UFFDIO_COPY_MODE_DONTWAKE : 0) | (mode.wp ? UFFDIO_COPY_MODE_WP : 0);
    copy.copy = 0;
    const int rc = ::ioctl(fd_, UFFDIO_COPY, &copy);
    return DecodeFill(rc, rc == 0 ? 0 : errno, copy.copy, copy.len);
  });
}

UffdResult Userfaultfd::ZeroPage(void* start, std::size_t length_bytes,
                                 bool dontwake) const noexcept {
  return FillResumable(length_bytes, [&](std::size_t offset) {
    uffdio_zeropage zero{};
    zero.range.start = Addr(start) + offset;
    zero.range.len = length_bytes - offset;
    zero.mode = dontwake ? UFFDIO_ZEROPAGE_MODE_DONTWAKE : 0;
    zero.zeropage = 0;
    const int rc = ::ioctl(fd_, UFFDIO_ZEROPAGE, &zero);
    return DecodeFill(rc, rc == 0 ? 0 : errno, zero.zeropage, zero.range.len);
  });
}

UffdResult Userfaultfd::Move(void* dst, void* src, std::size_t length_bytes,
                             UffdMoveMode mode) const noexcept {
  return FillResumable(length_bytes, [&](std::size_t offset) {
    uffdio_move move{};
    move.dst = Addr(dst) + offset;
    move.src = Addr(src) + offset;
    move.len = length_bytes - offset;
    move.mode = (mode.dontwake ? UFFDIO_MOVE_MODE_DONTWAKE : 0) |
                (mode.allow_src_holes ? UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES : 0);
    move.move = 0;
    const int rc = ::ioctl(fd_, UFFDIO_MOVE, &move);
    return DecodeFill(rc, rc == 0 ? 0 : errno, move.move, move.len);
  });
}

UffdResult Userfaultfd::Poison(void* start, std::size_t length_bytes,
                               bool dontwake) const noexcept {
  return FillResumable(length_bytes, [&](std::size_t offset) {
    uffdio_poison poison{};
    poison.range.start = Addr(start) + offset;
    poison.range.len = length_bytes - offset;
    poison.mode = dontwake ? UFFDIO_POISON_MODE_DONTWAKE : 0;
    poison.updated = 0;
    const int rc = ::ioctl(fd_, UFFDIO_POISON, &poison);
    return DecodeFill(rc, rc == 0 ? 0 : errno, poison.updated, poison.range.len);
  });
}

int Userfaultfd::WriteProtect(void* start, std::size_t length_bytes, bool protect,
                              bool dontwake) const noexcept {
  uffdio_writeprotect wp{};
  wp.range.start = Addr(start);
  wp.range.len = length_bytes;
  wp.mode = (protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0) |
            (dontwake ? UFFDIO_WRITEPROTECT_MODE_DONTWAKE : 0);
  return ::ioctl(fd_, UFFDIO_WRITEPROTECT, &wp) == 0 ? 0 : errno;
}

int Userfaultfd::Wake(void* start, std::size_t length_bytes) const noexcept {
  uffdio_range range{Addr(start), length_bytes};
  return ::ioctl(fd_, UFFDIO_WAKE, &range) == 0 ? 0 : errno;
}

UffdReadResult Userfaultfd::ReadEvents(absl::Span<UffdEvent> out) const noexcept {
  constexpr std::size_t kMaxBatch = 64;  // 2 KiB of stack
  uffd_msg msgs[kMaxBatch];
  const std::size_t want = std::min(out.size(), kMaxBatch);
  if (want == 0) return {0, 0};
  const ssize_t n = ::read(fd_, msgs, want * sizeof(uffd_msg));
  if (n < 0) return {0, errno};
  const std::size_t count = static_cast<std::size_t>(n) / sizeof(uffd_msg);
  for (std::size_t i = 0; i < count; ++i) {
    const uffd_msg& m = msgs[i];
    UffdEvent e;
    e.raw_kind = m.event;
    switch (m.event) {
      case UFFD_EVENT_PAGEFAULT:
        e.kind = UffdEventKind::kPageFault;
        e.address = m.arg.pagefault.address;
        e.write = (m.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE) != 0;
        e.wp = (m.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) != 0;
        e.minor = (m.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR) != 0;
        e.thread_id = m.arg.pagefault.feat.ptid;
        break;
      case UFFD_EVENT_FORK:
        e.kind = UffdEventKind::kFork;
        e.fork_fd = static_cast<int>(m.arg.fork.ufd);
        break;
      case UFFD_EVENT_REMAP:
        e.kind = UffdEventKind::kRemap;
        e.remap_from = m.arg.remap.from;
        e.remap_to = m.arg.remap.to;
        e.remap_length_bytes = m.arg.remap.len;
        break;
      case UFFD_EVENT_REMOVE:
      case UFFD_EVENT_UNMAP:
        e.kind = m.event == UFFD_EVENT_REMOVE ? UffdEventKind::kRemove : UffdEventKind::kUnmap;
        e.range_start = m.arg.remove.start;
        e.range_end = m.arg.remove.end;
        break;
      default:
        e.kind = UffdEventKind::kUnknown;
        break;
    }
    out[i] = e;
  }
  return {count, 0};
}

}  // namespace uvmem::internal
