#include "platform/kernel_info.h"

#include "platform/pagemap.h"

#include <fcntl.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <absl/status/status.h>
#include <fmt/format.h>

#include <charconv>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string_view>
#include <system_error>

namespace uvmem::internal {
namespace {

constexpr int kCapSysPtrace = 19;  // linux/capability.h

// The whole of a small /proc or /sys file, or nullopt when it cannot be read.
std::optional<std::string> ReadSmallFile(const char* path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

// Effective capabilities from /proc/self/status ("CapEff:\t000001ffffffffff").
std::optional<std::uint64_t> EffectiveCapabilities() {
  std::optional<std::string> status = ReadSmallFile("/proc/self/status");
  if (!status) return std::nullopt;
  constexpr std::string_view kKey = "\nCapEff:";
  const std::size_t at = status->find(kKey);
  if (at == std::string::npos) return std::nullopt;
  const char* p = status->data() + at + kKey.size();
  const char* end = status->data() + status->size();
  while (p < end && (*p == ' ' || *p == '\t')) ++p;
  std::uint64_t caps = 0;
  if (std::from_chars(p, end, caps, 16).ec != std::errc()) return std::nullopt;
  return caps;
}

// A leading decimal number of `text`, consumed; nullopt when there is none.
std::optional<int> ConsumeNumber(std::string_view& text) {
  int value = 0;
  auto [next, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc()) return std::nullopt;
  text.remove_prefix(static_cast<std::size_t>(next - text.data()));
  return value;
}

}  // namespace

absl::StatusOr<KernelVersion> ParseKernelRelease(std::string_view release) {
  // "6.18.44-fc-v595" -> 6, 18, 44; "5.15" -> 5, 15, 0.
  std::string_view rest = release;
  std::optional<int> major = ConsumeNumber(rest);
  std::optional<int> minor;
  if (major && !rest.empty() && rest.front() == '.') {
    rest.remove_prefix(1);
    minor = ConsumeNumber(rest);
  }
  if (!major || !minor) {
    return absl::InvalidArgumentError(
        fmt::format("kernel release '{}' does not start with major.minor", release));
  }
  KernelVersion v{*major, *minor, 0};
  if (!rest.empty() && rest.front() == '.') {
    rest.remove_prefix(1);
    v.patch = ConsumeNumber(rest).value_or(0);
  }
  return v;
}

std::string ParseSysfsChoice(std::string_view contents) {
  const std::size_t open = contents.find('[');
  if (open == std::string_view::npos) return "";
  const std::size_t close = contents.find(']', open);
  if (close == std::string_view::npos) return "";
  return std::string(contents.substr(open + 1, close - open - 1));
}

std::string_view UffdAccessName(UffdAccess access) {
  switch (access) {
    case UffdAccess::kFull:
      return "full";
    case UffdAccess::kUserModeOnly:
      return "user-mode-only";
    case UffdAccess::kNone:
      return "none";
  }
  return "?";
}

std::string_view UffdAccessMeaning(UffdAccess access) {
  switch (access) {
    case UffdAccess::kFull:
      return "faults from user and kernel mode are trapped: a syscall that writes into a "
             "missing page (read(2), recv into a fresh page) blocks until the handler serves it";
    case UffdAccess::kUserModeOnly:
      return "only the program's own loads and stores are trapped: kernel accesses to missing "
             "pages (read(2), recv into a fresh page) fail with EFAULT";
    case UffdAccess::kNone:
      return "userfaultfd cannot be opened: uvmem cannot page memory in this process";
  }
  return "?";
}

std::optional<KernelVersion> RunningKernelVersion() {
  static const std::optional<KernelVersion> version = []() -> std::optional<KernelVersion> {
    struct utsname uts {};
    if (::uname(&uts) != 0) return std::nullopt;
    absl::StatusOr<KernelVersion> v = ParseKernelRelease(uts.release);
    return v.ok() ? std::optional<KernelVersion>(*v) : std::nullopt;
  }();
  return version;
}

bool KernelInterleaveUses32BitOffset() {
  const std::optional<KernelVersion> v = RunningKernelVersion();
  return v.has_value() && !v->AtLeast(6, 7);
}

KernelReport GatherKernelReport() {
  KernelReport r;
  struct utsname uts {};
  if (::uname(&uts) == 0) {
    r.release = uts.release;
    absl::StatusOr<KernelVersion> v = ParseKernelRelease(r.release);
    if (v.ok()) r.version = *v;
  }

  r.euid = static_cast<unsigned>(::geteuid());
  if (std::optional<std::uint64_t> caps = EffectiveCapabilities()) {
    r.cap_sys_ptrace = ((*caps >> kCapSysPtrace) & 1) != 0;
  }
  if (std::optional<std::string> s = ReadSmallFile("/proc/sys/vm/unprivileged_userfaultfd")) {
    std::string_view text = *s;
    if (std::optional<int> value = ConsumeNumber(text)) r.unprivileged_userfaultfd = *value;
  }
  r.dev_userfaultfd_exists = ::access("/dev/userfaultfd", F_OK) == 0;
  if (r.dev_userfaultfd_exists) {
    const int fd = ::open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    r.dev_userfaultfd_accessible = fd >= 0;
    if (fd >= 0) ::close(fd);
  }

  absl::StatusOr<UffdProbe> probe = ProbeUserfaultfd();
  if (probe.ok()) {
    r.uffd_access = probe->mode == UffdMode::kFull ? UffdAccess::kFull : UffdAccess::kUserModeOnly;
    r.uffd_path = probe->path;
    r.features = probe->features;
  } else {
    r.uffd_access = UffdAccess::kNone;
    r.uffd_error = std::string(probe.status().message());
  }
  const bool can_open = r.uffd_access != UffdAccess::kNone;
  r.move_usable = can_open && r.features.move();
  r.poison_usable = can_open && r.features.poison();
  r.write_protect_usable = can_open && r.features.pagefault_flag_wp();
  r.event_fork_usable = can_open && r.features.event_fork() && r.cap_sys_ptrace;
  r.pagemap_scan_usable = ProbePagemapScan();
  r.dirty_tracking_usable = r.write_protect_usable && r.pagemap_scan_usable;

  if (std::optional<std::string> thp =
          ReadSmallFile("/sys/kernel/mm/transparent_hugepage/enabled")) {
    r.thp_enabled = ParseSysfsChoice(*thp);
  }
  return r;
}

}  // namespace uvmem::internal
