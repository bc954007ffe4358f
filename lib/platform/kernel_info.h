// kernel_info.h — KernelReport: what this kernel offers uvmem and what this process may use.
//
// Gathers, once, the facts `uvmem info` prints and the runtime checks at start-up: the
// kernel release, the userfaultfd privilege situation (euid, CAP_SYS_PTRACE, the
// vm.unprivileged_userfaultfd sysctl, /dev/userfaultfd), the uffd mode obtainable and its
// features, whether UFFDIO_MOVE / WP_ASYNC / UFFDIO_POISON / PAGEMAP_SCAN are usable,
// and the transparent-huge-page mode. Reading them is the only thing this file does;
// deciding what to do about them is policy's job.
//
// Thread-safety: every function is thread-safe; KernelReport is a plain value.
#ifndef UVMEM_PLATFORM_KERNEL_INFO_H_
#define UVMEM_PLATFORM_KERNEL_INFO_H_

#include <absl/status/statusor.h>

#include <compare>
#include <optional>
#include <string>
#include <string_view>

#include "platform/userfaultfd.h"

namespace uvmem::internal {

// A kernel version, as in "6.18.44-fc-v595" -> {6, 18, 44}.
struct KernelVersion {
  int major = 0;
  int minor = 0;
  int patch = 0;
  constexpr auto operator<=>(const KernelVersion&) const = default;
  constexpr bool AtLeast(int want_major, int want_minor) const {
    return *this >= KernelVersion{want_major, want_minor, 0};
  }
};

// Parses the leading "major.minor[.patch]" of a release string (uname -r). A missing
// patch reads as 0. Returns InvalidArgument when there is no "major.minor" prefix.
absl::StatusOr<KernelVersion> ParseKernelRelease(std::string_view release);

// The selected word of a sysfs choice file: "always [madvise] never" -> "madvise".
// Returns "" when no word is bracketed.
std::string ParseSysfsChoice(std::string_view contents);

// Which userfaultfd this process can open (see UffdMode).
enum class UffdAccess { kFull, kUserModeOnly, kNone };

// "full", "user-mode-only", "none".
std::string_view UffdAccessName(UffdAccess access);
// One sentence on what the access level means for the program's syscalls.
std::string_view UffdAccessMeaning(UffdAccess access);

struct KernelReport {
  // The kernel.
  std::string release;                   // uname -r
  std::optional<KernelVersion> version;  // parsed from release; empty when unparsable

  // The privilege situation.
  unsigned euid = 0;
  bool cap_sys_ptrace = false;        // in the effective set: full uffd via the syscall
  int unprivileged_userfaultfd = -1;  // vm.unprivileged_userfaultfd; -1 when unreadable
  bool dev_userfaultfd_exists = false;
  bool dev_userfaultfd_accessible = false;  // this process may open it read-write

  // userfaultfd, as ProbeUserfaultfd() found it.
  UffdAccess uffd_access = UffdAccess::kNone;
  UffdOpenPath uffd_path = UffdOpenPath::kSyscall;  // meaningful unless kNone
  std::string uffd_error;                           // why kNone; empty otherwise
  UffdFeatures features;                            // offered by the kernel

  // Derived: a feature is usable when the kernel offers it and a uffd can be opened.
  bool move_usable = false;          // UFFDIO_MOVE
  bool poison_usable = false;        // UFFDIO_POISON
  bool write_protect_usable = false; // UFFDIO_WRITEPROTECT faults (clones, dirty bits)
  bool event_fork_usable = false;    // EVENT_FORK also needs CAP_SYS_PTRACE
  bool pagemap_scan_usable = false;  // ioctl(PAGEMAP_SCAN) on /proc/self/pagemap
  // Write-protection + PAGEMAP_SCAN (PAGE_IS_WRITTEN): dirty tracking for swap.
  bool dirty_tracking_usable = false;

  // Transparent huge pages: the selected word of .../transparent_hugepage/enabled
  // ("always", "madvise", "never"), or "" when the file is missing.
  std::string thp_enabled;
};

// The running kernel's version (uname), read once; nullopt when unparsable.
std::optional<KernelVersion> RunningKernelVersion();

// True when the running kernel picks an interleaved page's node from the low 32 bits of
// its page offset: before Linux 6.7 mm/mempolicy.c offset_il_node() computed
// `(unsigned int)n % nnodes`; 6.7's rework (interleave_nid(pol, ilx)) takes the whole
// offset. Only visible with a node count that is not a power of two. Unknown versions
// are taken as new.
bool KernelInterleaveUses32BitOffset();

// Gathers the report: uname, /proc and /sys reads, and a userfaultfd probe on a
// throwaway fd. Never fails; facts that cannot be read are left at their defaults and
// the reason, for userfaultfd, goes to uffd_error.
KernelReport GatherKernelReport();

}  // namespace uvmem::internal

#endif  // UVMEM_PLATFORM_KERNEL_INFO_H_
