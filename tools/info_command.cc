#include "info_command.h"

#include <fmt/format.h>

#include <cstdio>
#include <string_view>

#include "platform/userfaultfd.h"
#include "uvmem/version.h"

namespace uvmem::internal {
namespace {

std::string_view YesNo(bool value) { return value ? "yes" : "no"; }
std::string_view Usable(bool value) { return value ? "usable" : "not usable"; }

constexpr std::size_t kLabelWidth = 34;
constexpr std::size_t kLineWidth = 100;

// "  label      value\n" with the values aligned; long values wrap at word boundaries
// into the value column.
void Line(std::string& out, std::string_view label, std::string_view value) {
  const std::size_t width = kLineWidth - kLabelWidth - 3;
  bool first = true;
  do {
    std::size_t take = value.size();
    if (take > width) {
      take = value.rfind(' ', width);
      if (take == std::string_view::npos || take == 0) take = width;
    }
    fmt::format_to(std::back_inserter(out), "  {:<{}} {}\n", first ? label : "", kLabelWidth,
                   value.substr(0, take));
    value.remove_prefix(take);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    first = false;
  } while (!value.empty());
}

std::string Indent(std::string_view text) {
  std::string out;
  std::size_t begin = 0;
  while (begin < text.size()) {
    std::size_t end = text.find('\n', begin);
    if (end == std::string_view::npos) end = text.size();
    fmt::format_to(std::back_inserter(out), "  {}\n", text.substr(begin, end - begin));
    begin = end + 1;
  }
  return out;
}

}  // namespace

std::string FormatInfo(const KernelReport& r, const NumaTopology& topology, InfoOptions options) {
  std::string out = fmt::format("uvmem {}\n\nkernel\n", UVMEM_VERSION_STRING);
  Line(out, "release", r.release.empty() ? "unknown" : r.release);
  Line(out, "transparent huge pages", r.thp_enabled.empty() ? "unknown" : r.thp_enabled);

  out += "\nprivileges\n";
  Line(out, "effective uid", fmt::format("{}", r.euid));
  Line(out, "CAP_SYS_PTRACE", YesNo(r.cap_sys_ptrace));
  Line(out, "vm.unprivileged_userfaultfd",
       r.unprivileged_userfaultfd < 0 ? std::string("unreadable")
                                      : fmt::format("{}", r.unprivileged_userfaultfd));
  Line(out, "/dev/userfaultfd",
       !r.dev_userfaultfd_exists      ? "absent"
       : r.dev_userfaultfd_accessible ? "present, accessible"
                                      : "present, not accessible to this user");
  if (r.uffd_access == UffdAccess::kNone) {
    Line(out, "userfaultfd", "none");
    Line(out, "", r.uffd_error);
  } else {
    Line(out, "userfaultfd",
         fmt::format("{} (opened with {})", UffdAccessName(r.uffd_access),
                     UffdOpenPathName(r.uffd_path)));
  }
  Line(out, "", UffdAccessMeaning(r.uffd_access));
  if (r.uffd_access == UffdAccess::kUserModeOnly) {
    Line(out, "",
         "for full mode: run as root, or grant access to /dev/userfaultfd, or set "
         "sysctl vm.unprivileged_userfaultfd=1");
  }

  out += "\nuserfaultfd features offered by the kernel\n";
  for (const UffdFeatureInfo& f : KnownUffdFeatures()) {
    if (options.verbose) {
      fmt::format_to(std::back_inserter(out), "  {:<{}} {:<3}  (Linux {}) {}\n", f.name,
                     kLabelWidth, YesNo(r.features.has(f.bit)), f.since, f.summary);
    } else {
      Line(out, f.name, YesNo(r.features.has(f.bit)));
    }
  }

  out += "\nwhat uvmem can use\n";
  Line(out, "UFFDIO_MOVE", Usable(r.move_usable));
  Line(out, "write-protect (CoW clones)", Usable(r.write_protect_usable));
  Line(out, "PAGEMAP_SCAN", Usable(r.pagemap_scan_usable));
  Line(out, "dirty tracking (WP+SCAN)", Usable(r.dirty_tracking_usable));
  Line(out, "UFFDIO_POISON", Usable(r.poison_usable));
  Line(out, "EVENT_FORK (needs CAP_SYS_PTRACE)", Usable(r.event_fork_usable));

  out += fmt::format("\nNUMA topology ({} node{})\n", topology.num_nodes(),
                     topology.num_nodes() == 1 ? "" : "s");
  out += Indent(topology.ToString());
  return out;
}

int RunInfoCommand(InfoOptions options) {
  const KernelReport report = GatherKernelReport();
  const std::string text = FormatInfo(report, NumaTopology::Detect(), options);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
  return report.uffd_access == UffdAccess::kNone ? 1 : 0;
}

}  // namespace uvmem::internal
