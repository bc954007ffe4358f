// userfaultfd.h — Userfaultfd: the trap that turns page faults into messages.
//
// The only code in uvmem that opens a userfaultfd or issues its ioctls. Three parts:
//
//   UffdFeatures          the feature bitmask of UFFDIO_API, with named accessors.
//   ProbeUserfaultfd()    what this kernel and this process can get (on a throwaway fd,
//                         because UFFDIO_API accepts features once per fd).
//   Userfaultfd           a move-only owner of one uffd: Open() does the real handshake,
//                         then typed, allocation-free wrappers of every ioctl and of
//                         read(2) of fault messages.
//
// Shared rules for the wrappers: addresses and lengths are in bytes, page aligned,
// lengths > 0; ranges are half-open [start, start + length_bytes). They never throw and
// never allocate; failures come back as an errno value (EINVAL for misaligned input,
// checked by the kernel). Hot-path results are [[nodiscard]].
//
// Thread-safety: the ioctls and ReadEvents may be called on one Userfaultfd from any
// number of threads at once (the kernel serializes what it must; each message is read
// by exactly one reader). Moving, assigning or destroying the object is not
// thread-safe with respect to other uses.
#ifndef UVMEM_PLATFORM_USERFAULTFD_H_
#define UVMEM_PLATFORM_USERFAULTFD_H_

#include <absl/status/statusor.h>
#include <absl/types/span.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace uvmem::internal {

// ---- features --------------------------------------------------------------------------

// Bits of uffdio_api.features, as the kernel numbers them (checked in userfaultfd.cc).
enum UffdFeatureBit : std::uint64_t {
  kUffdFeaturePagefaultFlagWp = 1u << 0,    // write-protect faults (UFFDIO_REGISTER_MODE_WP)
  kUffdFeatureEventFork = 1u << 1,          // fork() hands the child's uffd to the handler
  kUffdFeatureEventRemap = 1u << 2,         // mremap() reported
  kUffdFeatureEventRemove = 1u << 3,        // MADV_DONTNEED / MADV_REMOVE reported
  kUffdFeatureMissingHugetlbfs = 1u << 4,   // MISSING mode on hugetlbfs
  kUffdFeatureMissingShmem = 1u << 5,       // MISSING mode on shmem / tmpfs
  kUffdFeatureEventUnmap = 1u << 6,         // munmap() reported
  kUffdFeatureSigbus = 1u << 7,             // faults raise SIGBUS instead of a message
  kUffdFeatureThreadId = 1u << 8,           // messages carry the faulting thread id
  kUffdFeatureMinorHugetlbfs = 1u << 9,     // MINOR mode on hugetlbfs
  kUffdFeatureMinorShmem = 1u << 10,        // MINOR mode on shmem
  kUffdFeatureExactAddress = 1u << 11,      // fault address not rounded down to the page
  kUffdFeatureWpHugetlbfsShmem = 1u << 12,  // WP mode on hugetlbfs and shmem
  kUffdFeatureWpUnpopulated = 1u << 13,     // WRITEPROTECT also marks empty PTEs
  kUffdFeaturePoison = 1u << 14,            // UFFDIO_POISON
  kUffdFeatureWpAsync = 1u << 15,           // the kernel resolves WP faults itself
  kUffdFeatureMove = 1u << 16,              // UFFDIO_MOVE
};

// A set of userfaultfd features. A value type; thread-safe as a value.
class UffdFeatures {
 public:
  constexpr UffdFeatures() = default;
  constexpr explicit UffdFeatures(std::uint64_t bits) : bits_(bits) {}

  constexpr std::uint64_t bits() const { return bits_; }
  constexpr bool has(std::uint64_t bits) const { return (bits_ & bits) == bits; }
  constexpr bool empty() const { return bits_ == 0; }
  constexpr UffdFeatures operator|(UffdFeatures other) const {
    return UffdFeatures(bits_ | other.bits_);
  }
  constexpr UffdFeatures operator&(UffdFeatures other) const {
    return UffdFeatures(bits_ & other.bits_);
  }
  // The features of *this that `other` lacks.
  constexpr UffdFeatures Without(UffdFeatures other) const {
    return UffdFeatures(bits_ & ~other.bits_);
  }
  constexpr bool operator==(const UffdFeatures&) const = default;

  constexpr bool pagefault_flag_wp() const { return has(kUffdFeaturePagefaultFlagWp); }
  constexpr bool event_fork() const { return has(kUffdFeatureEventFork); }
  constexpr bool event_remap() const { return has(kUffdFeatureEventRemap); }
  constexpr bool event_remove() const { return has(kUffdFeatureEventRemove); }
  constexpr bool missing_hugetlbfs() const { return has(kUffdFeatureMissingHugetlbfs); }
  constexpr bool missing_shmem() const { return has(kUffdFeatureMissingShmem); }
  constexpr bool event_unmap() const { return has(kUffdFeatureEventUnmap); }
  constexpr bool sigbus() const { return has(kUffdFeatureSigbus); }
  constexpr bool thread_id() const { return has(kUffdFeatureThreadId); }
  constexpr bool minor_hugetlbfs() const { return has(kUffdFeatureMinorHugetlbfs); }
  constexpr bool minor_shmem() const { return has(kUffdFeatureMinorShmem); }
  constexpr bool exact_address() const { return has(kUffdFeatureExactAddress); }
  constexpr bool wp_hugetlbfs_shmem() const { return has(kUffdFeatureWpHugetlbfsShmem); }
  constexpr bool wp_unpopulated() const { return has(kUffdFeatureWpUnpopulated); }
  constexpr bool poison() const { return has(kUffdFeaturePoison); }
  constexpr bool wp_async() const { return has(kUffdFeatureWpAsync); }
  constexpr bool move() const { return has(kUffdFeatureMove); }

 private:
  std::uint64_t bits_ = 0;
};

// One known feature: its kernel name without the UFFD_FEATURE_ prefix ("MOVE"), its bit,
// the kernel version that added it, and a one-line meaning.
struct UffdFeatureInfo {
  std::string_view name;
  std::uint64_t bit;
  std::string_view since;
  std::string_view summary;
};

// Every feature uvmem knows, in bit order. Static storage; thread-safe.
absl::Span<const UffdFeatureInfo> KnownUffdFeatures();

// ---- opening and probing ---------------------------------------------------------------

// What the uffd can trap. kFull: faults from user and kernel mode (copy_to_user in
// read(2), recv(2)...) become messages. kUserModeOnly (UFFD_USER_MODE_ONLY): only
// user-mode faults do; a kernel access to a missing page fails that syscall with EFAULT.
enum class UffdMode { kFull, kUserModeOnly };

// How the fd was obtained: the userfaultfd(2) syscall, /dev/userfaultfd with
// USERFAULTFD_IOC_NEW (Linux 6.1+; access governed by the device node's permissions), or
// from a fork event (Adopt).
enum class UffdOpenPath { kSyscall, kDevNode, kInherited };

std::string_view UffdModeName(UffdMode mode);  // "full", "user-mode-only"
// "userfaultfd(2)", "/dev/userfaultfd", "fork event"
std::string_view UffdOpenPathName(UffdOpenPath path);

struct UffdOpenOptions {
  bool nonblocking = true;           // O_NONBLOCK: ReadEvents returns EAGAIN when empty
  bool allow_user_mode_only = true;  // false: fail instead of falling back
  bool user_mode_only = false;       // true: ask for UFFD_USER_MODE_ONLY directly
};

// The result of probing: every feature the kernel offers, and the best mode and path
// this process can open right now.
struct UffdProbe {
  UffdFeatures features;
  UffdMode mode = UffdMode::kFull;
  UffdOpenPath path = UffdOpenPath::kSyscall;
};

// Opens a throwaway uffd (full mode if permitted, else user-mode-only), asks UFFDIO_API
// for every feature, and closes it. Errors: Unimplemented (kernel without userfaultfd),
// PermissionDenied (e.g. a seccomp filter), Internal; messages name cause and fix.
// Thread-safe.
absl::StatusOr<UffdProbe> ProbeUserfaultfd();

// ---- the uffd --------------------------------------------------------------------------

// Register modes (UFFDIO_REGISTER_MODE_*).
struct UffdRegisterModes {
  bool missing = true;  // faults on pages with no PTE
  bool wp = false;      // write faults on write-protected pages
  bool minor = false;   // faults on pages in the page cache but not mapped (shmem/hugetlb)
};

// Which range ioctls the kernel allows on a registered range (uffdio_register.ioctls).
class UffdRangeIoctls {
 public:
  constexpr UffdRangeIoctls() = default;
  constexpr explicit UffdRangeIoctls(std::uint64_t bits) : bits_(bits) {}
  constexpr std::uint64_t bits() const { return bits_; }
  constexpr bool wake() const { return bits_ & (1u << 0x02); }
  constexpr bool copy() const { return bits_ & (1u << 0x03); }
  constexpr bool zeropage() const { return bits_ & (1u << 0x04); }
  constexpr bool move() const { return bits_ & (1u << 0x05); }
  constexpr bool writeprotect() const { return bits_ & (1u << 0x06); }
  constexpr bool continue_() const { return bits_ & (1u << 0x07); }
  constexpr bool poison() const { return bits_ & (1u << 0x08); }

 private:
  std::uint64_t bits_ = 0;
};

struct UffdRegisterResult {
  UffdRangeIoctls ioctls;  // meaningful when error == 0
  int error = 0;           // 0, or the errno of UFFDIO_REGISTER
};

// Outcome of COPY / ZEROPAGE / MOVE / POISON. bytes_done counts from the start of the
// request; error is why the operation stopped (0 when all bytes were done):
//   EEXIST  the page at dst + bytes_done is already present (another thread filled it:
//           treat it as done, then Wake the range);
//   EAGAIN  the kernel stopped because an event (fork, mremap, MADV_DONTNEED, munmap) is
//           pending or the mappings are changing: read events, then resume at
//           dst + bytes_done;
//   ENOENT  MOVE: hole in the source at src + bytes_done (without allow_src_holes);
//           COPY: the destination is not a registered range of this uffd;
//   EBUSY   MOVE: the source page is shared (e.g. after fork) or pinned;
//   EINVAL  misaligned, wrong VMA kind, or a mode the range does not allow;
//   EFAULT  src not readable; ENOMEM; ESRCH (the process is exiting); EINTR.
struct UffdResult {
  std::size_t bytes_done = 0;
  int error = 0;
  constexpr bool ok() const { return error == 0; }
};

struct UffdCopyMode {
  bool dontwake = false;  // do not wake the faulting threads (batch, then Wake)
  bool wp = false;        // install the pages write-protected (needs WP registration)
};
struct UffdMoveMode {
  bool dontwake = false;
  bool allow_src_holes = false;  // count source holes as moved instead of ENOENT
};

// One message read from the uffd, translated. A plain value; fields not of `kind` are 0.
enum class UffdEventKind : std::uint8_t { kUnknown, kPageFault, kFork, kRemap, kRemove, kUnmap };
struct UffdEvent {
  UffdEventKind kind = UffdEventKind::kUnknown;
  // kPageFault
  std::uintptr_t address = 0;   // page aligned unless the EXACT_ADDRESS feature is on
  bool write = false;           // a write access
  bool wp = false;              // a write to a write-protected page (WP mode)
  bool minor = false;           // a minor fault (MINOR mode)
  std::uint32_t thread_id = 0;  // faulting thread (THREAD_ID feature), else 0
  // kFork: a new uffd (open in this process) for the child's registered ranges. The
  // reader owns it: wrap it with Userfaultfd::Adopt or close it.
  int fork_fd = -1;
  // kRemap: [remap_from, remap_from + remap_length_bytes) moved to remap_to.
  std::uintptr_t remap_from = 0;
  std::uintptr_t remap_to = 0;
  std::size_t remap_length_bytes = 0;
  // kRemove (MADV_DONTNEED/REMOVE) and kUnmap: [range_start, range_end).
  std::uintptr_t range_start = 0;
  std::uintptr_t range_end = 0;
  std::uint8_t raw_kind = 0;  // uffd_msg.event, for kUnknown
};

struct UffdReadResult {
  std::size_t count = 0;  // events written to the front of the span
  int error = 0;          // 0; EAGAIN (non-blocking and empty); EINTR; EBADF...
};

class Userfaultfd {
 public:
  // Opens a uffd and performs the UFFDIO_API handshake enabling exactly `requested`
  // (plus WP_UNPOPULATED when WP_ASYNC is asked for, as the kernel does). Tries, in order:
  // userfaultfd(2) for full mode; on EPERM, /dev/userfaultfd + USERFAULTFD_IOC_NEW; then
  // userfaultfd(UFFD_USER_MODE_ONLY) when options.allow_user_mode_only (only the last
  // with options.user_mode_only). Always O_CLOEXEC.
  // Errors: PermissionDenied with the fix ("run as root, or grant access to
  // /dev/userfaultfd, or set sysctl vm.unprivileged_userfaultfd=1"), InvalidArgument
  // naming the features this kernel lacks, PermissionDenied for EVENT_FORK without
  // CAP_SYS_PTRACE, Unimplemented without kernel support. Thread-safe.
  static absl::StatusOr<Userfaultfd> Open(UffdFeatures requested, UffdOpenOptions options = {});

  // Takes ownership of an fd that already passed UFFDIO_API (a fork event's fork_fd,
  // which inherits the parent's mode and features).
  static Userfaultfd Adopt(int fd, UffdMode mode, UffdFeatures features);

  Userfaultfd() = default;  // holds no fd
  Userfaultfd(Userfaultfd&& other) noexcept;
  Userfaultfd& operator=(Userfaultfd&& other) noexcept;
  Userfaultfd(const Userfaultfd&) = delete;
  Userfaultfd& operator=(const Userfaultfd&) = delete;
  // Closes the fd: every registered range is unregistered and blocked faulting threads
  // are woken to retry (they then read zeros or fault normally).
  ~Userfaultfd();

  bool valid() const { return fd_ >= 0; }
  int fd() const { return fd_; }  // for poll(2)/epoll; still owned by *this
  UffdMode mode() const { return mode_; }
  UffdOpenPath path() const { return path_; }
  UffdFeatures features() const { return features_; }  // enabled by the handshake
  // Gives up ownership without closing (a runtime that must never tear down its uffd).
  [[nodiscard]] int Release();

  // UFFDIO_REGISTER of [start, start + length_bytes). The range must be mapped; each
  // registration of a sub-range splits VMAs. Returns the ioctls allowed on it, or errno
  // (EINVAL: bad range or mode; EBUSY: registered with another uffd; EPERM).
  [[nodiscard]] UffdRegisterResult Register(void* start, std::size_t length_bytes,
                                            UffdRegisterModes modes) const noexcept;
  // UFFDIO_UNREGISTER. Pending faults in the range are woken. Returns 0 or errno.
  [[nodiscard]] int Unregister(void* start, std::size_t length_bytes) const noexcept;

  // UFFDIO_COPY: fills missing pages at dst with the bytes at src, waking the faulting
  // threads unless mode.dontwake. Resumes by itself after partial progress, so the
  // result says how far it got and why it stopped (see UffdResult).
  [[nodiscard]] UffdResult Copy(void* dst, const void* src, std::size_t length_bytes,
                                UffdCopyMode mode = {}) const noexcept;
  // UFFDIO_ZEROPAGE: maps the shared zero page at the missing pages of the range.
  [[nodiscard]] UffdResult ZeroPage(void* start, std::size_t length_bytes,
                                    bool dontwake = false) const noexcept;
  // UFFDIO_MOVE (MOVE feature): moves the frames under [src, src + len) to empty PTEs at
  // dst; afterwards src is unpopulated. Same process, both private anonymous, dst
  // registered with this uffd. The frames keep their NUMA node.
  [[nodiscard]] UffdResult Move(void* dst, void* src, std::size_t length_bytes,
                                UffdMoveMode mode = {}) const noexcept;
  // UFFDIO_POISON (POISON feature): later user accesses get SIGBUS, kernel accesses EFAULT.
  [[nodiscard]] UffdResult Poison(void* start, std::size_t length_bytes,
                                  bool dontwake = false) const noexcept;
  // UFFDIO_WRITEPROTECT: protect (protect=true) or unprotect the range (WP registration).
  // Unprotecting wakes threads blocked on WP faults unless dontwake. Returns 0 or errno.
  [[nodiscard]] int WriteProtect(void* start, std::size_t length_bytes, bool protect,
                                 bool dontwake = false) const noexcept;
  // UFFDIO_WAKE: wakes threads blocked on faults in the range (after DONTWAKE batches or
  // an EEXIST). Returns 0 or errno.
  [[nodiscard]] int Wake(void* start, std::size_t length_bytes) const noexcept;

  // read(2) of up to out.size() messages (at most 64 per call), translated into `out`.
  // Blocks when the fd is blocking and nothing is queued. Never allocates.
  [[nodiscard]] UffdReadResult ReadEvents(absl::Span<UffdEvent> out) const noexcept;

 private:
  Userfaultfd(int fd, UffdMode mode, UffdOpenPath path, UffdFeatures features)
      : fd_(fd), mode_(mode), path_(path), features_(features) {}
  void Close();

  int fd_ = -1;
  UffdMode mode_ = UffdMode::kFull;
  UffdOpenPath path_ = UffdOpenPath::kSyscall;
  UffdFeatures features_;
};

}  // namespace uvmem::internal

#endif  // UVMEM_PLATFORM_USERFAULTFD_H_
